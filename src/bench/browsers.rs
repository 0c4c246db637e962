//! Real browser viewers for `simpang bench --browsers N`: headless Chromium processes on the
//! trial's wall page, driven over the Chrome DevTools protocol (a WebSocket per browser, JSON
//! commands `{id, method, params, sessionId}`), as an operator's browser would play it.
//!
//! Each browser gets a fresh temporary profile, signs in with the bench's wall account through
//! the page's own form, opens the wall and is checked to play: every tile passthrough, its
//! video's `currentTime` advancing and frames presented. The bench then reads the page's own
//! counters (`window.wallLive()`), the glass-to-glass samples of the clock camera's tile (the
//! script [`G2G_JS`], injected here, not shipped in the product) and each browser's CPU (its
//! whole process tree, from /proc).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::BenchError;
use crate::procfs;

/// The program the bench starts (Debian's `chromium`; `SIMPANG_CHROMIUM` overrides it).
pub fn chromium_program() -> String {
    std::env::var("SIMPANG_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

fn err(msg: impl Into<String>) -> BenchError {
    BenchError::Child(msg.into())
}

/// One DevTools connection: the browser's endpoint, with one page session attached (flat mode,
/// so page commands go over the same socket with their `sessionId`).
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
}

impl Cdp {
    fn connect(port: u16, path: &str) -> Result<Cdp, BenchError> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|e| err(format!("DevTools on port {port}: {e}")))?;
        // A browser kept at low priority on a busy host can take long to answer.
        stream
            .set_read_timeout(Some(Duration::from_secs(180)))
            .map_err(|e| err(format!("DevTools socket: {e}")))?;
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|e| err(format!("DevTools handshake with {url}: {e}")))?;
        Ok(Cdp {
            ws,
            next_id: 0,
            session: None,
        })
    }

    /// Sends a command (to the page session where `page`) and waits for its answer; events in
    /// between are skipped (the bench enables no domain, so they are few).
    fn call(&mut self, method: &str, params: Value, page: bool) -> Result<Value, BenchError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if page {
            if let Some(s) = &self.session {
                msg["sessionId"] = json!(s);
            }
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .map_err(|e| err(format!("DevTools {method}: {e}")))?;
        loop {
            let m = self
                .ws
                .read()
                .map_err(|e| err(format!("DevTools {method}: no answer: {e}")))?;
            let tungstenite::Message::Text(t) = m else {
                continue;
            };
            let v: Value = serde_json::from_str(t.as_str())?;
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(err(format!("DevTools {method}: {e}")));
            }
            return Ok(v["result"].clone());
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value.
    fn eval(&mut self, expr: &str) -> Result<Value, BenchError> {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
            true,
        )?;
        if let Some(x) = r.get("exceptionDetails") {
            let text = x["exception"]["description"]
                .as_str()
                .or(x["text"].as_str())
                .unwrap_or("?");
            return Err(err(format!("script in the page failed: {text}")));
        }
        Ok(r["result"]["value"].clone())
    }
}

/// A headless Chromium on a temporary profile, killed (and the profile removed) on drop.
pub struct Browser {
    pub index: usize,
    child: Child,
    profile: PathBuf,
    cdp: Cdp,
}

impl Browser {
    /// Starts Chromium and attaches to its page. A missing program or a browser that does not
    /// open its DevTools port is an error naming it, with the end of its log.
    /// `nice` (0-19) is the browser's scheduling niceness: on the bench host the browsers stand
    /// for the operators' machines and must not take the CPU the measured process needs.
    pub fn start(index: usize, nice: u8) -> Result<Browser, BenchError> {
        let profile = std::env::temp_dir().join(format!(
            "simpang-bench-chromium-{}-{index}-{:08x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&profile).map_err(|error| BenchError::Io {
            what: format!("cannot create {}", profile.display()),
            error,
        })?;
        let log = std::fs::File::create(profile.join("chromium.log")).map_err(|error| {
            BenchError::Io {
                what: "cannot create the browser's log".into(),
                error,
            }
        })?;
        let program = chromium_program();
        // Flags: /work/shared/SETUP-NOTES.md (headless as root); no throttling of a page that
        // nobody looks at, and video plays without a click.
        // `nice` execs the browser: the child's pid is the browser's.
        let child = Command::new("nice")
            .args(["-n", &nice.min(19).to_string()])
            .arg(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--autoplay-policy=no-user-gesture-required",
                "--mute-audio",
                "--window-size=1600,900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&profile);
                err(format!(
                    "cannot start browser {index} ({program}: {e}); the bench's viewers are \
                     headless Chromium (Debian package chromium, scripts/setup.sh installs it)"
                ))
            })?;
        let mut b = Starting {
            child: Some(child),
            profile: profile.clone(),
        };
        // Chromium writes the port it took and the browser endpoint's path here.
        let active = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(60);
        let (port, path) = loop {
            if let Some(st) = b.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(err(format!(
                    "cannot start browser {index} ({program} exited with {st} before it opened \
                     DevTools; the bench's viewers are headless Chromium, Debian package \
                     chromium); its log:\n{}",
                    log_tail(&profile)
                )));
            }
            if let Ok(text) = std::fs::read_to_string(&active) {
                let mut lines = text.lines();
                if let (Some(p), Some(path)) = (lines.next(), lines.next()) {
                    if let Ok(port) = p.trim().parse::<u16>() {
                        break (port, path.trim().to_string());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "browser {index} ({program}) opened no DevTools port within 60 s; its \
                     log:\n{}",
                    log_tail(&profile)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut cdp = Cdp::connect(port, &path)?;
        let targets = cdp.call("Target.getTargets", json!({}), false)?;
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .map(str::to_string);
        let page = match page {
            Some(p) => p,
            None => cdp.call(
                "Target.createTarget",
                json!({ "url": "about:blank" }),
                false,
            )?["targetId"]
                .as_str()
                .ok_or_else(|| err("DevTools: no page target"))?
                .to_string(),
        };
        let att = cdp.call(
            "Target.attachToTarget",
            json!({ "targetId": page, "flatten": true }),
            false,
        )?;
        cdp.session = Some(
            att["sessionId"]
                .as_str()
                .ok_or_else(|| err("DevTools: attaching to the page gave no session"))?
                .to_string(),
        );
        Ok(Browser {
            index,
            child: b.child.take().ok_or_else(|| err("browser lost"))?,
            profile: std::mem::take(&mut b.profile),
            cdp,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn navigate(&mut self, url: &str) -> Result<(), BenchError> {
        self.cdp
            .call("Page.navigate", json!({ "url": url }), true)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // The old document may still answer right after the command: wait for the new one.
            if let Ok(v) = self.cdp.eval("[document.readyState, location.href]") {
                if v[0] == "complete" && v[1].as_str().is_some_and(|h| h.starts_with(url)) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(err(format!(
                    "browser {}: {url} did not load within 60 s",
                    self.index
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Signs in at the wall's `/login` form with `user`/`password` (the form's own fields and
    /// CSRF token) and opens the wall.
    pub fn open_wall(
        &mut self,
        http: SocketAddr,
        user: &str,
        password: &str,
    ) -> Result<(), BenchError> {
        let base = format!("http://{http}");
        self.navigate(&format!("{base}/login?next=/"))?;
        let status = self.cdp.eval(&format!(
            "(() => {{ const f = document.getElementById('login'); \
               if (!f) return 'no sign-in form at ' + location.pathname; \
               f.username.value = {u}; f.password.value = {p}; \
               return fetch('/login', {{method: 'POST', body: new URLSearchParams(new FormData(f)), \
                 credentials: 'same-origin', redirect: 'manual'}}) \
                 .then(r => r.type === 'opaqueredirect' ? 303 : r.status); }})()",
            u = json!(user),
            p = json!(password),
        ))?;
        if status != json!(303) {
            return Err(err(format!(
                "browser {}: signing in to the wall gave {status} (want 303)",
                self.index
            )));
        }
        self.navigate(&format!("{base}/"))?;
        let at = self.cdp.eval("location.pathname")?;
        if at != json!("/") {
            return Err(err(format!(
                "browser {}: signed in, but the wall page went to {at}",
                self.index
            )));
        }
        Ok(())
    }

    /// The page's tiles (`window.wallLive()`).
    pub fn tiles(&mut self) -> Result<Vec<TileState>, BenchError> {
        let v = self.cdp.eval(
            "(window.wallLive ? window.wallLive() : []).map(t => ({site: t.site, mode: t.mode, \
             current_time: t.currentTime || 0, presented: t.presented || 0, \
             passthrough: !!t.passthrough, errors: (t.errors || []).length, \
             stalls: t.stalls || 0}))",
        )?;
        Ok(serde_json::from_value(v)?)
    }

    /// Injects the glass-to-glass script for the tile of `site`.
    pub fn inject_g2g(&mut self, site: &str) -> Result<(), BenchError> {
        let js = G2G_JS.replace("__SITE__", &json!(site).to_string());
        self.cdp.eval(&js).map(|_| ())
    }

    /// The glass-to-glass samples since the last call (ms) and the frames the script saw and
    /// could not read.
    pub fn take_g2g(&mut self) -> Result<G2gTake, BenchError> {
        let v = self.cdp.eval(
            "(() => { const g = window.__simpangG2g; if (!g) return null; \
             const r = {samples: g.samples, frames: g.frames, unreadable: g.unreadable, \
             error: g.error}; g.samples = []; g.frames = 0; g.unreadable = 0; return r; })()",
        )?;
        if v.is_null() {
            return Err(err(format!(
                "browser {}: the glass-to-glass script is not in the page",
                self.index
            )));
        }
        Ok(serde_json::from_value(v)?)
    }

    /// CPU seconds of the browser's whole process tree (browser, GPU/utility, renderers).
    pub fn cpu_seconds(&self) -> f64 {
        tree_cpu_seconds(self.pid())
    }
}

/// What [`Browser::take_g2g`] returns.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct G2gTake {
    pub samples: Vec<f64>,
    pub frames: u64,
    pub unreadable: u64,
    pub error: Option<String>,
}

/// One tile of the page as the bench reads it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TileState {
    pub site: String,
    pub mode: Option<String>,
    pub current_time: f64,
    pub presented: u64,
    pub passthrough: bool,
    pub errors: u64,
    pub stalls: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.cdp.call("Browser.close", json!({}), false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A browser until it is attached: killed and its profile removed if starting fails.
struct Starting {
    child: Option<Child>,
    profile: PathBuf,
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.profile.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

fn log_tail(profile: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(profile.join("chromium.log")) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().rev().take(15).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// `pid` and every process below it (from /proc: parents from each `stat`).
pub fn tree_pids(pid: u32) -> Vec<u32> {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in dir.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // after "(comm) ": state ppid ...
        let Some(rest) = text.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if let Some(pp) = rest.split(' ').nth(1).and_then(|x| x.parse::<u32>().ok()) {
            parent.insert(p, pp);
        }
    }
    let mut out: Vec<u32> = parent
        .keys()
        .copied()
        .filter(|&p| {
            let mut cur = p;
            for _ in 0..64 {
                if cur == pid {
                    return true;
                }
                match parent.get(&cur) {
                    Some(&pp) if pp != 0 && pp != cur => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect();
    out.sort_unstable();
    out
}

/// CPU seconds of `pid` and every process below it.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    tree_pids(pid)
        .into_iter()
        .filter_map(|p| procfs::cpu_seconds(Some(p)))
        .sum()
}

/// Sets every thread of `pid`'s process tree to niceness `nice`, and the scheduler autogroup of
/// any of its processes that left this process's session (Chromium's zygotes call `setsid`)
/// too. Chromium sets its own processes' priorities (as root the browser process raises itself
/// to -8), and Linux keeps a niceness per thread, so the bench repeats this while the browsers
/// run. Failures are ignored: the browsers then compete at their own priority, which the
/// report's CPU figures show.
pub fn deprioritise(pid: u32, nice: i32) {
    let own_group = std::fs::read_to_string("/proc/self/autogroup")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string));
    for p in tree_pids(pid) {
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                    // SAFETY: setpriority takes plain integers and touches no memory of ours.
                    unsafe {
                        libc::setpriority(libc::PRIO_PROCESS, tid, nice);
                    }
                }
            }
        }
        let path = format!("/proc/{p}/autogroup");
        let group = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.split_whitespace().next().map(str::to_string));
        if group.is_some() && group != own_group {
            let _ = std::fs::write(&path, nice.to_string());
        }
    }
}

/// Decodes the clock camera's pixel stamp ([`super::clockcam`]) of every frame the tile's video
/// presents and records presentation time (wall clock) minus capture time (the stamp). Runs in
/// the page; `__SITE__` is replaced by the site id. The video element is looked up again each
/// second, as the player replaces it after a reconnect.
pub const G2G_JS: &str = r#"(() => {
  const SITE = __SITE__, COLS = 16, ROWS = 3, BITS = COLS * ROWS;
  const g = window.__simpangG2g = window.__simpangG2g ||
    { samples: [], frames: 0, unreadable: 0, error: null, video: null };
  const c = document.createElement("canvas");
  const x = c.getContext("2d", { willReadFrequently: true });
  const onFrame = (v) => (now, md) => {
    if (g.video !== v) return;
    v.requestVideoFrameCallback(onFrame(v));
    // The frame's presentation on the wall clock: the page's monotonic clock mapped to Date.
    const shownPerf = md.expectedDisplayTime || now;
    const wall = Date.now() - performance.now() + shownPerf;
    g.frames++;
    try {
      const w = md.width || v.videoWidth, h = md.height || v.videoHeight;
      if (!w || !h) return;
      if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
      x.drawImage(v, 0, 0, w, h);
      const bw = w / COLS, bh = h * 40 / 360; // 40x40 blocks on a 640x360 picture
      const d = x.getImageData(0, 0, w, Math.ceil(bh * ROWS)).data;
      const bits = [];
      for (let i = 0; i < BITS; i++) {
        const cx = Math.floor((i % COLS + 0.5) * bw), cy = Math.floor((Math.floor(i / COLS) + 0.5) * bh);
        let sum = 0, n = 0;
        for (let dy = -3; dy <= 3; dy++) for (let dx = -3; dx <= 3; dx++) {
          sum += d[((cy + dy) * w + (cx + dx)) * 4 + 1]; n++;
        }
        bits.push(sum / n > 128 ? 1 : 0);
      }
      // 40 bits of Unix milliseconds (most significant first), then their byte-wise XOR.
      let ms = 0, check = 0;
      for (let i = 0; i < 40; i++) ms = ms * 2 + bits[i];
      for (let i = 40; i < 48; i++) check = check * 2 + bits[i];
      let want = 0, t = ms;
      for (let k = 0; k < 5; k++) { want ^= t % 256; t = Math.floor(t / 256); }
      if (want !== check) { g.unreadable++; return; }
      const span = 2 ** 40;
      const delay = ((Math.round(wall) % span) - ms + span) % span;
      if (delay > 60000) { g.unreadable++; return; }
      g.samples.push(delay);
      if (g.samples.length > 20000) g.samples.shift();
    } catch (e) { g.error = String(e); }
  };
  const attach = () => {
    const v = document.querySelector(`.tile[data-site="${SITE}"] video`);
    if (v && v !== g.video && "requestVideoFrameCallback" in v) {
      g.video = v;
      v.requestVideoFrameCallback(onFrame(v));
    }
  };
  attach();
  if (!g.timer) g.timer = setInterval(attach, 1000);
  return true;
})()"#;

/// Nearest-rank percentile of `xs` (sorted here); 0 for none.
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(percentile(&xs, 50.0), 50.0);
        assert_eq!(percentile(&xs, 95.0), 95.0);
        assert_eq!(percentile(&xs, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }

    #[test]
    fn own_process_tree_has_cpu() {
        // this test process has used some CPU; its tree includes itself
        let me = std::process::id();
        assert!(tree_cpu_seconds(me) > 0.0);
        assert_eq!(tree_cpu_seconds(u32::MAX), 0.0);
    }
}
