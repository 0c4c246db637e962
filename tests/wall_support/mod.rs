//! Shared helpers of the wall tests: real `simpang samples` / `simpang run` processes on free
//! loopback ports, a config derived from the shipped one, MJPEG and SSE readers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simpang")
}

/// A port free right now on 127.0.0.1 (for servers that cannot bind port 0 themselves).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx2.send(l);
            }
        });
        // stderr is drained (a full pipe would block the child) and kept for failure reports.
        let err = child.stderr.take().expect("stderr");
        let log = std::env::temp_dir().join(format!("simpang-test-{name}-{}.log", child.id()));
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(&log).ok();
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(f) = f.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{l}");
                }
            }
        });
        Proc {
            child,
            name,
            lines: rx,
        }
    }

    /// The first stdout line containing `needle`, within `timeout`.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "{} printed no line with {needle:?} within {timeout:?} (stderr in {})",
                    self.name,
                    std::env::temp_dir()
                        .join(format!(
                            "simpang-test-{}-{}.log",
                            self.name,
                            self.child.id()
                        ))
                        .display()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits; the exit status, or None if it had to be killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate(Duration::from_secs(10));
    }
}

/// `simpang samples` for `sites`; returns the process and its RTSP port.
pub fn start_samples(sites: &[&str]) -> (Proc, u16) {
    let mut cmd = Command::new(bin());
    cmd.arg("samples")
        .arg("--config")
        .arg(repo().join("config/palembang.toml"))
        .arg("--port")
        .arg("0")
        .arg("--sites")
        .arg(sites.join(","));
    let mut p = Proc::spawn("samples", cmd);
    let line = p.wait_line("samples: rtsp://", Duration::from_secs(30));
    let port = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (p, port)
}

/// Wall settings a test wants.
#[derive(Clone, Debug)]
pub struct WallOpts {
    pub layout: &'static str,
    pub mjpeg_fps: f64,
    pub mosaic_fps: f64,
    pub rtsp_port: u16,
    pub debug_delay_ms: u64,
}

impl Default for WallOpts {
    fn default() -> Self {
        Self {
            layout: "3x2",
            mjpeg_fps: 10.0,
            mosaic_fps: 10.0,
            rtsp_port: 0,
            debug_delay_ms: 0,
        }
    }
}

/// The shipped config with streams pointed at the sample server, every listener on a free
/// loopback port, and data in `dir`.
pub fn write_config(dir: &Path, samples_port: u16, o: &WallOpts) -> PathBuf {
    let repo = repo();
    let text = std::fs::read_to_string(repo.join("config/palembang.toml")).expect("config");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("toml");
    let abs = |p: &str| repo.join("config").join(p).display().to_string();
    doc["data_dir"] = toml_edit::value(dir.join("data").display().to_string());
    doc["detect"]["model"] = toml_edit::value(abs("../models/nanodet-m-416/manifest.toml"));
    doc["detect"]["ort_library"] =
        toml_edit::value(abs("../vendor-lib/onnxruntime/libonnxruntime.so"));
    doc["detect"]["debug_delay_ms"] = toml_edit::value(o.debug_delay_ms as i64);
    doc["samples"]["footage_dir"] = toml_edit::value(abs("../samples"));
    doc["mqtt"]["embedded_listen"] = toml_edit::value(format!("127.0.0.1:{}", free_port()));
    let w = &mut doc["wall"];
    w["listen"] = toml_edit::value("127.0.0.1:0");
    w["layout"] = toml_edit::value(o.layout);
    w["tile_width"] = toml_edit::value(640);
    w["tile_height"] = toml_edit::value(360);
    w["mjpeg_fps"] = toml_edit::value(o.mjpeg_fps);
    w["mosaic_fps"] = toml_edit::value(o.mosaic_fps);
    w["rtsp_port"] = toml_edit::value(o.rtsp_port as i64);
    if let Some(sites) = doc["sites"].as_array_of_tables_mut() {
        for s in sites.iter_mut() {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            s["stream"] = toml_edit::value(format!("rtsp://127.0.0.1:{samples_port}/{id}"));
        }
    }
    let path = dir.join("simpang.toml");
    std::fs::write(&path, doc.to_string()).expect("write config");
    path
}

/// `simpang run` on `config` for `sites`; returns the process and the wall's base URL.
pub fn start_run(config: &Path, sites: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--sites")
        .arg(sites.join(","))
        // SIMPANG_TEST_LOG: a RUST_LOG for the run when chasing a failure (e.g. with
        // simpang::wall=debug, which logs each RTSP media's start and end).
        .env(
            "RUST_LOG",
            std::env::var("SIMPANG_TEST_LOG").unwrap_or_else(|_| "info,simpang=info".into()),
        );
    let mut p = Proc::spawn("run", cmd);
    let line = p.wait_line("wall: http://", Duration::from_secs(60));
    let url = line
        .trim()
        .trim_start_matches("wall: ")
        .trim_end_matches('/')
        .to_string();
    (p, url)
}

pub fn get_text(url: &str) -> String {
    ureq::get(url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("body")
}

/// The value of `name{site=..}`, or None while the series does not exist yet.
pub fn try_metric(base: &str, name: &str, site: &str) -> Option<f64> {
    let text = get_text(&format!("{base}/metrics"));
    simpang::wall::meter::counter_value(&text, name, site)
}

/// Waits until every site's camera delivers frames.
pub fn wait_cameras_online(base: &str, sites: &[&str]) {
    wait_until("cameras online", Duration::from_secs(40), || {
        sites
            .iter()
            .all(|s| try_metric(base, "simpang_camera_online", s) == Some(1.0))
    });
}

pub fn metric(base: &str, name: &str, site: &str) -> f64 {
    let text = get_text(&format!("{base}/metrics"));
    simpang::wall::meter::counter_value(&text, name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}

/// The value of the `name` series with all of `labels`.
pub fn metric_with(base: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = get_text(&format!("{base}/metrics"));
    simpang::wall::meter::series_value(&text, name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics"))
}

/// Viewers of one output (`mjpeg` or `rtsp`) of a site (or of the mosaic, site `wall`).
pub fn viewers(base: &str, site: &str, output: &str) -> f64 {
    metric_with(
        base,
        "simpang_wall_viewers",
        &[("site", site), ("output", output)],
    )
}

/// Waits until `f` holds, polling; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// One part of a multipart body: lower-cased headers and the bytes.
pub type Part = (Vec<(String, String)>, Vec<u8>);

/// Reads parts of a `multipart/x-mixed-replace` body: (headers, body) per part.
pub struct Multipart<R: Read> {
    r: BufReader<R>,
}

impl<R: Read> Multipart<R> {
    pub fn new(r: R) -> Self {
        Self {
            r: BufReader::new(r),
        }
    }

    pub fn next_part(&mut self) -> std::io::Result<Part> {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                if headers.is_empty() {
                    continue; // the CRLF after a part body
                }
                break;
            }
            if l.starts_with("--") {
                continue; // boundary
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("part without Content-Length"))?;
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok((headers, body))
    }
}

/// Opens an HTTP stream (MJPEG, SSE) and returns its body reader.
pub fn open_stream(url: &str) -> (String, Box<dyn Read + Send>) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout_read(Duration::from_secs(15))
        .build();
    let resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let ct = resp.header("content-type").unwrap_or("").to_string();
    (ct, Box::new(resp.into_reader()))
}

/// Decodes a JPEG with OpenCV (BGR).
pub fn decode_jpeg(bytes: &[u8]) -> Mat {
    let v = Vector::<u8>::from_slice(bytes);
    let m = imgcodecs::imdecode(&v, imgcodecs::IMREAD_COLOR).expect("imdecode");
    assert!(!m.empty(), "not a decodable JPEG ({} bytes)", bytes.len());
    m
}

/// Standard deviation of the gray levels of `m` inside `r` (picture content vs a flat fill).
pub fn gray_stddev(m: &Mat, r: opencv::core::Rect) -> f64 {
    let roi = Mat::roi(m, r).expect("roi");
    let mut gray = Mat::default();
    let src = if m.channels() == 1 {
        roi.try_clone().expect("clone")
    } else {
        opencv::imgproc::cvt_color(&roi, &mut gray, opencv::imgproc::COLOR_BGR2GRAY, 0)
            .expect("gray");
        gray
    };
    let (mut mean, mut sd) = (Mat::default(), Mat::default());
    opencv::core::mean_std_dev(&src, &mut mean, &mut sd, &opencv::core::no_array())
        .expect("stddev");
    *sd.at::<f64>(0).expect("sd")
}
