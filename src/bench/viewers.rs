//! The harness's side of a `--browsers N` trial: a phase without browsers, then N real
//! Chromium pages on the wall through the trial's measured window.
//!
//! ```text
//! ready ─▶ RTSP mosaic client (not with --substreams) ─▶ warm-up ─▶ phase 0: simpang CPU, no
//! browsers ─▶ N browsers sign in, open the wall, every tile plays ─▶ glass-to-glass script ─▶
//! "go" ─▶ trial warm-up ─▶ window: simpang CPU, browsers' CPU, frames presented, delay samples
//! ```

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::ProgressBar;

use super::browsers::{self, Browser, TileState};
use super::report::{BrowserPlay, BrowserViewers, Consumers, GlassToGlass, TrialResult};
use super::{consumers, follow_trial, trial, BenchArgs};
use crate::procfs;

/// What the harness reads at each end of the window.
struct Sample {
    trial_cpu_s: f64,
    browsers_cpu_s: Vec<f64>,
    tiles: Vec<Vec<TileState>>,
    rtsp_frames: u64,
    error: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn drive_browser_trial(
    next: &mut dyn FnMut() -> anyhow::Result<trial::Line>,
    stdin: &mut std::process::ChildStdin,
    pb: &ProgressBar,
    http: SocketAddr,
    ready: &trial::Ready,
    total: u64,
    args: &BenchArgs,
    substreams: bool,
) -> anyhow::Result<TrialResult> {
    let login = (ready.device.as_str(), ready.token.as_str());
    let (Some(user), Some(password)) = (ready.user.as_deref(), ready.password.as_deref()) else {
        anyhow::bail!("the trial made no wall account for the browsers");
    };
    // The burned-in viewer of the issue's target: one annotated RTSP client on the mosaic (not
    // with substreams, whose point is that nothing decodes the main streams).
    let rtsp = if substreams {
        None
    } else {
        let url = format!("rtsp://127.0.0.1:{}/annotated/wall", ready.rtsp_port);
        let c = consumers::RtspClient::start(&url, login)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.frames() == 0 {
            if let Some(e) = c.error() {
                anyhow::bail!("RTSP client of {url}: {e}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("the wall's RTSP mosaic sent nothing within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(c)
    };

    // Phase 0: the same run without browsers, as long as the window.
    pb.set_message("without browsers: warming up");
    std::thread::sleep(Duration::from_secs_f64(args.warmup));
    pb.set_message(format!("without browsers: {:.0} s", args.seconds));
    let pid = ready.pid;
    let t0 = Instant::now();
    let (c0, m0, h0) = (
        procfs::cpu_seconds(Some(pid)).context("the trial's /proc/PID/stat")?,
        procfs::machine_busy_seconds().unwrap_or(0.0),
        procfs::cpu_seconds(None).unwrap_or(0.0),
    );
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    let dt0 = t0.elapsed().as_secs_f64().max(1e-6);
    let c1 = procfs::cpu_seconds(Some(pid)).context("the trial's /proc/PID/stat")?;
    let (m1, h1) = (
        procfs::machine_busy_seconds().unwrap_or(0.0),
        procfs::cpu_seconds(None).unwrap_or(0.0),
    );
    let without = (c1 - c0) / dt0 * 100.0;
    let others_without = ((m1 - m0) - (c1 - c0) - (h1 - h0)).max(0.0) / dt0 * 100.0;

    // The browsers: each signs in and opens the wall; all tiles must play before "go".
    pb.set_message(format!("starting {} browsers", args.browsers));
    let mut list = Vec::new();
    for i in 0..args.browsers {
        let mut b = Browser::start(i, args.browser_nice)
            .with_context(|| format!("browser {i} of {}", args.browsers))?;
        b.open_wall(http, user, password)
            .with_context(|| format!("browser {i}: the wall page"))?;
        list.push(b);
    }
    let tiles_want = ready.sites.len();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut waiting = Vec::new();
        for b in &mut list {
            let tiles = b.tiles()?;
            let playing = tiles.iter().filter(|t| t.presented > 0).count();
            if tiles.len() < tiles_want || playing < tiles.len() {
                waiting.push(format!(
                    "browser {}: {playing}/{} tiles playing ({})",
                    b.index,
                    tiles.len(),
                    tiles
                        .iter()
                        .filter(|t| t.presented == 0)
                        .map(|t| format!("{} {}", t.site, t.mode.as_deref().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the browsers' tiles did not all play within 90 s: {}",
                waiting.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // Keep the browsers below the measured process (see browsers::deprioritise).
    let _nice = (args.browser_nice > 0).then(|| {
        Renicer::start(
            list.iter().map(Browser::pid).collect(),
            i32::from(args.browser_nice.min(19)),
        )
    });
    if let Some(site) = &ready.clock_site {
        for b in &mut list {
            b.inject_g2g(site)?;
        }
    }

    let list = RefCell::new(list);
    // The delay samples before the window are dropped once, when it opens.
    let dropped_early = std::cell::Cell::new(false);
    let sample = || -> Sample {
        let mut s = Sample {
            trial_cpu_s: procfs::cpu_seconds(Some(pid)).unwrap_or(0.0),
            browsers_cpu_s: Vec::new(),
            tiles: Vec::new(),
            rtsp_frames: rtsp.as_ref().map(|r| r.frames()).unwrap_or(0),
            error: None,
        };
        let mut l = list.borrow_mut();
        for b in l.iter_mut() {
            s.browsers_cpu_s.push(b.cpu_seconds());
            match b.tiles() {
                Ok(t) => s.tiles.push(t),
                Err(e) => s.error = Some(format!("browser {}: {e}", b.index)),
            }
            if ready.clock_site.is_some() && !dropped_early.get() {
                if let Err(e) = b.take_g2g() {
                    s.error = Some(format!("browser {}: {e}", b.index));
                }
            }
        }
        dropped_early.set(true);
        s
    };
    let (mut r, window) = follow_trial(next, stdin, pb, total, "display", || {
        (sample(), Instant::now())
    })?;
    let Some(w) = window else {
        return Ok(r);
    };
    let (start, _) = &w.start;
    let dt = w.seconds();
    let end = sample();
    if let Some(e) = start.error.as_ref().or(end.error.as_ref()) {
        anyhow::bail!("reading the browsers: {e}");
    }
    let mut g2g = Vec::new();
    let (mut unreadable, mut frames_seen) = (0, 0);
    if ready.clock_site.is_some() {
        for b in list.borrow_mut().iter_mut() {
            let t = b.take_g2g()?;
            if let Some(e) = t.error {
                anyhow::bail!("browser {}: glass-to-glass script: {e}", b.index);
            }
            g2g.extend(t.samples);
            unreadable += t.unreadable;
            frames_seen += t.frames;
        }
    }
    let per_browser: Vec<BrowserPlay> = (0..list.borrow().len())
        .map(|i| {
            play_of(i, &start.tiles[i], &end.tiles[i], dt, {
                (end.browsers_cpu_s[i] - start.browsers_cpu_s[i]) / dt * 100.0
            })
        })
        .collect();
    let with = (end.trial_cpu_s - start.trial_cpu_s) / dt * 100.0;
    let n = args.browsers as f64;
    r.browsers = Some(BrowserViewers {
        browsers: args.browsers,
        nice: args.browser_nice,
        program: browsers::chromium_program(),
        url: format!("http://{http}/"),
        simpang_cpu_percent_without: without,
        without_seconds: dt0,
        others_cpu_percent_without: others_without,
        simpang_cpu_percent_with: with,
        per_viewer_cpu_percent: (with - without) / n,
        browsers_cpu_percent: per_browser.iter().map(|p| p.cpu_percent).sum(),
        all_played: per_browser
            .iter()
            .all(|p| p.tiles_playing == p.tiles && p.tiles > 0),
        per_browser,
        glass_to_glass: ready.clock_site.as_ref().map(|site| GlassToGlass {
            site: site.clone(),
            n: g2g.len(),
            p50_ms: browsers::percentile(&g2g, 50.0),
            p95_ms: browsers::percentile(&g2g, 95.0),
            max_ms: g2g.iter().copied().fold(0.0, f64::max),
            min_ms: g2g.iter().copied().reduce(f64::min).unwrap_or(0.0),
            frames_seen,
            unreadable,
            method: METHOD.into(),
        }),
    });
    if let Some(rt) = &rtsp {
        let f = end.rtsp_frames - start.rtsp_frames;
        r.consumers = Some(Consumers {
            rtsp_url: rt.url.clone(),
            rtsp_frames: f,
            rtsp_fps: f as f64 / dt,
            ..Default::default()
        });
    }
    r.harness_cpu_percent = Some(w.harness_cpu_percent());
    drop(list);
    if let Some(rt) = rtsp {
        rt.stop();
    }
    Ok(r)
}

/// Re-applies [`browsers::deprioritise`] twice a second until dropped.
struct Renicer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Renicer {
    fn start(pids: Vec<u32>, nice: i32) -> Renicer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-renice".into())
            .spawn(move || {
                while !s.load(Ordering::SeqCst) {
                    for &p in &pids {
                        browsers::deprioritise(p, nice);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
            .ok();
        Renicer { stop, thread }
    }
}

impl Drop for Renicer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the delay is measured, for the report.
const METHOD: &str = "the harness's clock camera (640x360 25 fps videotestsrc, its wall-clock \
     capture time written into the picture as 48 black/white blocks, x264 zerolatency, served \
     over RTSP) is one more site of the trial; in each browser a script injected over DevTools \
     decodes the blocks of every frame requestVideoFrameCallback presents on that tile and \
     records expectedDisplayTime (on the wall clock) minus the stamp; same machine clock";

/// One browser's tiles over the window.
fn play_of(
    index: usize,
    start: &[TileState],
    end: &[TileState],
    dt: f64,
    cpu_percent: f64,
) -> BrowserPlay {
    let mut p = BrowserPlay {
        index,
        tiles: end.len(),
        cpu_percent,
        min_tile_fps: f64::INFINITY,
        ..Default::default()
    };
    for t in end {
        let s = start.iter().find(|s| s.site == t.site);
        let frames = t
            .presented
            .saturating_sub(s.map(|s| s.presented).unwrap_or(0));
        // A player that rebuilt its media (a stall, a reconnect) starts again near 0: moving is
        // what counts, a frozen picture keeps its time.
        let advanced = s.is_some_and(|s| t.current_time != s.current_time);
        p.presented_frames += frames;
        p.min_tile_fps = p.min_tile_fps.min(frames as f64 / dt);
        let live = t.mode.as_deref() == Some("live") && t.passthrough;
        if frames > 0 && advanced && live {
            p.tiles_playing += 1;
        } else {
            p.problems.push(format!(
                "{}: mode {}, passthrough {}, {frames} frames, currentTime {:.1} -> {:.1}",
                t.site,
                t.mode.as_deref().unwrap_or("?"),
                t.passthrough,
                s.map(|s| s.current_time).unwrap_or(0.0),
                t.current_time
            ));
        }
    }
    if !p.min_tile_fps.is_finite() {
        p.min_tile_fps = 0.0;
    }
    p
}
