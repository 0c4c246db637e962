//! `simpang bench`: replays recorded footage as N cameras through the code of `simpang run`
//! and measures it against this machine's ceilings and a plain-Python baseline.
//!
//! ```text
//! harness (this command)                         trial process (simpang bench --trial)
//!   ceilings: decode-only, model-only              app::run(bench config): N file cameras,
//!   spawn trial ───────── stdout JSON lines ───▶     detector, tracker, rules, incidents
//!   attach viewers: /tiles.mjpg + RTSP mosaic        (outbox + embedded broker), wall, HTTP
//!   "go" ───────────────── stdin ─────────────▶     warm-up, window: counters, raw stage
//!   table + --json ◀──────── result ───────────     timings, /proc CPU and peak RSS
//!   --find-max: more trials; --baseline: benches/baseline/baseline.py the same way
//! ```
//!
//! A process per trial: its CPU time and peak RSS are that run's alone, and every run starts
//! as `simpang run` does. docs/performance.md has the figures and how to reproduce them.

pub mod baseline;
pub mod browsers;
pub mod ceiling;
pub mod clockcam;
pub mod consumers;
pub mod report;
pub mod setup;
pub mod trial;
mod viewers;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::procfs;
use report::{
    Baseline, BaselineSetup, Ceilings, Consumers, Mode, ModelInfo, Report, Search, SearchStep,
    TrialResult,
};

/// Errors of the bench (the CLI edge wraps them in anyhow).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("bench protocol: {0}")]
    Protocol(String),
    #[error("{0}")]
    Child(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Arguments of `simpang bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Config whose sites (zones, lines, rules), detector and wall settings the streams use.
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Camera streams to replay (default: the config's number of sites).
    #[arg(long)]
    pub streams: Option<usize>,
    /// The footage every stream plays (looped).
    #[arg(long, default_value = "samples/bench-1080p25.mp4")]
    pub footage: PathBuf,
    /// Measured seconds per run, after the warm-up.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Seconds between the viewers attaching and the measured window.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,
    /// realtime: streams at the footage's rate, like cameras; max: as fast as it decodes.
    #[arg(long, value_enum, default_value_t = Mode::Realtime)]
    pub mode: Mode,
    /// Search the largest number of streams that holds real time.
    #[arg(long)]
    pub find_max: bool,
    /// Upper bound of the searches.
    #[arg(long, default_value_t = 24)]
    pub max_streams: usize,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the plain-Python baseline (both setups) and compare.
    #[arg(long)]
    pub baseline: bool,
    /// Python of the baseline (the venv scripts/setup.sh makes).
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    /// The baseline script.
    #[arg(long, default_value = "benches/baseline/baseline.py")]
    pub baseline_script: PathBuf,
    /// Measured seconds of each ceiling.
    #[arg(long, default_value_t = 10.0)]
    pub ceiling_seconds: f64,
    /// Leave out the bench's low-threshold crowd zone (then the footage may file no incident,
    /// and the publish latency of incidents goes unmeasured).
    #[arg(long)]
    pub no_bench_zone: bool,
    /// Each camera as a main stream by passthrough plus a substream for detection (a site's
    /// `detect_stream`): `--footage` is the main stream, `--detect-footage` the substream, and
    /// the wall viewers are the browser page's passthrough tiles (one `/live/{site}` WebSocket
    /// per camera) instead of MJPEG and the RTSP mosaic, which would decode the main streams.
    #[arg(long)]
    pub substreams: bool,
    /// The substream footage of `--substreams` (default: the footage's `X.sub.mp4`, which
    /// scripts/setup.sh makes: 640x360, 5 fps).
    #[arg(long)]
    pub detect_footage: Option<PathBuf>,
    /// Attach N real browsers (headless Chromium, `chromium` or $SIMPANG_CHROMIUM) to the wall
    /// page of every run, in place of the harness's MJPEG reader or passthrough WebSockets; with
    /// a clock camera for the glass-to-glass delay. The report gives simpang's CPU with and
    /// without them, their own CPU, whether they played, and the delay.
    #[arg(long, default_value_t = 0)]
    pub browsers: usize,
    /// Niceness (0-19) of the `--browsers`: they stand for the operators' machines, and on the
    /// bench host they must not take the CPU the measured process needs (0: same priority).
    #[arg(long, default_value_t = 10)]
    pub browser_nice: u8,
    /// Internal: the harness's clock camera (`--browsers`).
    #[arg(long, hide = true)]
    pub clock_camera: Option<String>,
    /// Internal: run one trial in this process and talk to the harness on stdin/stdout.
    #[arg(long, hide = true)]
    pub trial: bool,
    /// Internal: the footage's frame rate, as the harness measured it.
    #[arg(long, hide = true)]
    pub source_fps: Option<f64>,
}

pub fn main(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let base = Config::load(&args.config)?;
    let footage = std::path::absolute(&args.footage)
        .with_context(|| format!("footage {}", args.footage.display()))?;
    if !footage.is_file() {
        anyhow::bail!(
            "footage {} does not exist (scripts/setup.sh makes samples/bench-1080p25.mp4)",
            footage.display()
        );
    }
    if !(args.seconds > 0.0 && args.warmup >= 0.0 && args.ceiling_seconds > 0.0) {
        anyhow::bail!("--seconds and --ceiling-seconds must be > 0, --warmup >= 0");
    }
    let streams = args.streams.unwrap_or(base.sites.len()).max(1);
    let detect_footage = if args.substreams || args.detect_footage.is_some() {
        let f = args
            .detect_footage
            .clone()
            .unwrap_or_else(|| crate::ingest::samples::sub_footage(&footage));
        let f = std::path::absolute(&f).with_context(|| format!("footage {}", f.display()))?;
        if !f.is_file() {
            anyhow::bail!(
                "substream footage {} does not exist (scripts/setup.sh makes X.sub.mp4 beside \
                 each footage file)",
                f.display()
            );
        }
        Some(f)
    } else {
        None
    };
    if args.trial {
        let source_fps = args
            .source_fps
            .context("--trial needs --source-fps (it is started by simpang bench)")?;
        trial::run(
            &base,
            &trial::TrialOptions {
                streams,
                footage,
                mode: args.mode,
                seconds: args.seconds,
                warmup: args.warmup,
                source_fps,
                bench_zone: !args.no_bench_zone,
                detect_footage,
                browsers: args.browsers,
                clock_camera: args.clock_camera.clone(),
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.find_max && args.mode != Mode::Realtime {
        anyhow::bail!("--find-max searches what holds real time: use it with --mode realtime");
    }
    let report = harness(&args, &base, &footage, detect_footage.as_deref(), streams)?;
    print!("{}", report::table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos:>3}/{len:3} s  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

fn harness(
    args: &BenchArgs,
    base: &Config,
    footage: &Path,
    detect_footage: Option<&Path>,
    streams: usize,
) -> anyhow::Result<Report> {
    let started_at = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let load_start = procfs::load_average();
    let machine = procfs::Machine::read();
    let foot = ceiling::probe_footage(base, footage)?;

    let pb = bar(args.ceiling_seconds.ceil() as u64, "decode ceiling");
    let decode = ceiling::decode(base, footage, machine.cpus, args.ceiling_seconds, &|t| {
        pb.set_position(t as u64)
    })?;
    pb.finish_and_clear();
    let pb = bar(args.ceiling_seconds.ceil() as u64, "inference ceiling");
    let inference = ceiling::inference(base, footage, args.ceiling_seconds, &|t| {
        pb.set_position(t as u64)
    })?;
    pb.finish_and_clear();
    let ceilings = Ceilings::new(decode, inference, foot.fps, base.detect.fps);
    let model = model_info(base)?;

    let mut report = Report {
        schema: report::SCHEMA.into(),
        started_at,
        machine,
        load_start,
        model,
        mode: Some(args.mode),
        seconds: args.seconds,
        warmup_s: args.warmup,
        wall_consumers: match &detect_footage {
            _ if args.browsers > 0 => format!(
                "on: {} headless Chromium on the wall page (every tile passthrough, boxes drawn \
                 in the page){}, plus the harness's clock camera as one more site for the \
                 glass-to-glass delay; simpang's CPU is also measured for as long before the \
                 browsers start",
                args.browsers,
                if detect_footage.is_some() {
                    ""
                } else {
                    " and one RTSP client on /annotated/wall (the burned-in mosaic)"
                }
            ),
            Some(sub) => format!(
                "on (substreams: every camera's main stream by passthrough, analytics on {}): \
                 the harness opens the wall page's browser tiles, one /live/{{site}} WebSocket \
                 per camera (the cameras' own H.264 and the analytics results), no burned-in \
                 output",
                sub.display()
            ),
            None => format!(
                "on: the harness reads /tiles.mjpg (every tile over one connection, MJPEG at {} \
                 fps, as the wall page does) and pulls /annotated/wall over RTSP (the mosaic of \
                 all tiles, H.264 at {} fps); per-site RTSP streams are not pulled",
                base.wall.mjpeg_fps, base.wall.mosaic_fps
            ),
        },
        bench_zone: !args.no_bench_zone,
        ceilings,
        ..Default::default()
    };
    report.footage = foot.clone();

    let mut trial = |n: usize| -> anyhow::Result<TrialResult> {
        run_trial(args, detect_footage, n, foot.fps)
            .with_context(|| format!("bench run with {n} streams"))
    };
    if args.find_max {
        let start = args.streams.unwrap_or_else(|| {
            (report.ceilings.limit_streams.floor() as usize).clamp(1, args.max_streams)
        });
        let (search, runs) = find_max(start, args.max_streams, &mut trial)?;
        report.sustained = Some(search.sustained);
        report.find_max = Some(search);
        report.find_max_runs = runs.clone();
        report.run = best_run(runs);
    } else {
        let t = trial(streams)?;
        report.sustained = t.holds.then_some(t.streams);
        report.run = Some(t);
    }
    // The limit counts decoding every frame of the footage: not what a substream run does.
    report.efficiency = report
        .sustained
        .filter(|_| report.ceilings.limit_streams > 0.0 && detect_footage.is_none())
        .map(|n| n as f64 / report.ceilings.limit_streams);

    if args.baseline {
        report.baseline = Some(run_baselines(args, base, footage, &report)?);
    }
    report.load_end = procfs::load_average();
    Ok(report)
}

fn model_info(cfg: &Config) -> anyhow::Result<ModelInfo> {
    let path = cfg.resolve(&cfg.detect.model);
    let manifest = crate::detect::manifest::Manifest::load(&path)
        .with_context(|| format!("model manifest {}", path.display()))?;
    let (w, h) = match cfg.detect.input_size {
        Some([w, h]) => (w, h),
        None => (manifest.input.width, manifest.input.height),
    };
    Ok(ModelInfo {
        name: manifest.name.clone(),
        manifest: path.display().to_string(),
        input_width: w,
        input_height: h,
        sessions: cfg.detect.sessions,
        threads: cfg.detect.threads,
        max_batch: cfg.detect.max_batch,
        detect_fps: cfg.detect.fps,
    })
}

/// Searches the largest N in `1..=max` for which a run holds, starting at `start` and stepping
/// by one (the answer is usually within a step or two of the ceilings' estimate, and each step
/// costs a full run). Returns the search and every run in the order made.
pub fn find_max<T: HoldsLike>(
    start: usize,
    max: usize,
    run: &mut dyn FnMut(usize) -> anyhow::Result<T>,
) -> anyhow::Result<(Search, Vec<T>)> {
    let max = max.max(1);
    let mut n = start.clamp(1, max);
    let mut tried: std::collections::BTreeMap<usize, bool> = Default::default();
    let mut runs: Vec<T> = Vec::new();
    let (sustained, capped) = loop {
        let r = run(n)?;
        let holds = r.holds();
        tried.insert(n, holds);
        runs.push(r);
        if holds {
            if n >= max {
                break (n, true);
            }
            if tried.get(&(n + 1)) == Some(&false) {
                break (n, false);
            }
            n += 1;
        } else {
            if n == 1 {
                break (0, false);
            }
            if tried.get(&(n - 1)) == Some(&true) {
                break (n - 1, false);
            }
            n -= 1;
        }
    };
    Ok((
        Search {
            steps: runs.iter().map(HoldsLike::step).collect(),
            sustained,
            capped,
        },
        runs,
    ))
}

/// The run to show in detail: the largest that held, else the smallest that did not.
fn best_run<T: HoldsLike>(runs: Vec<T>) -> Option<T> {
    let mut held: Vec<T> = Vec::new();
    let mut failed: Vec<T> = Vec::new();
    for r in runs {
        if r.holds() {
            held.push(r);
        } else {
            failed.push(r);
        }
    }
    held.into_iter()
        .max_by_key(|r| r.streams())
        .or_else(|| failed.into_iter().min_by_key(|r| r.streams()))
}

/// What [`find_max`] needs of a run's result.
pub trait HoldsLike {
    fn holds(&self) -> bool;
    fn streams(&self) -> usize;
    fn step(&self) -> SearchStep;
}

impl HoldsLike for TrialResult {
    fn holds(&self) -> bool {
        self.holds
    }
    fn streams(&self) -> usize {
        self.streams
    }
    fn step(&self) -> SearchStep {
        SearchStep::of(self)
    }
}

impl HoldsLike for report::BaselineRun {
    fn holds(&self) -> bool {
        self.holds
    }
    fn streams(&self) -> usize {
        self.streams
    }
    fn step(&self) -> SearchStep {
        let min = |f: fn(&report::BaselineStream) -> f64| {
            self.per_stream.iter().map(f).fold(f64::INFINITY, f64::min)
        };
        SearchStep {
            streams: self.streams,
            holds: self.holds,
            failures: self.failures.clone(),
            cpu_percent: self.cpu_percent,
            others_cpu_percent: self.others_cpu_percent,
            peak_rss_mb: self.peak_rss_mb,
            min_display_fps: min(|s| s.fps),
            min_analytics_fps: min(|s| s.detect_fps),
        }
    }
}

/// One trial: a `simpang bench --trial` process, with the viewers attached from here.
fn run_trial(
    args: &BenchArgs,
    detect_footage: Option<&Path>,
    streams: usize,
    source_fps: f64,
) -> anyhow::Result<TrialResult> {
    let exe = std::env::current_exe().context("cannot find the simpang binary")?;
    let log_path = std::env::temp_dir().join(format!(
        "simpang-bench-{}-{streams}.log",
        std::process::id()
    ));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    // The clock camera lives as long as the trial; its encoder is the harness's CPU.
    let clock = if args.browsers > 0 {
        Some(clockcam::ClockCamera::start().context("cannot start the clock camera")?)
    } else {
        None
    };
    let mut child = Command::new(exe)
        .arg("bench")
        .arg("--trial")
        .arg("--config")
        .arg(&args.config)
        .args(["--streams", &streams.to_string()])
        .arg("--footage")
        .arg(&args.footage)
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--mode", args.mode.as_str()])
        .args(["--source-fps", &source_fps.to_string()])
        .args(args.no_bench_zone.then_some("--no-bench-zone"))
        .args(["--browsers", &args.browsers.to_string()])
        .args(
            clock
                .as_ref()
                .map(|c| vec!["--clock-camera".to_string(), c.url()])
                .unwrap_or_default(),
        )
        .args(
            detect_footage
                .map(|f| vec!["--detect-footage".into(), f.as_os_str().to_owned()])
                .unwrap_or_default(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start the trial process")?;
    let result = drive_trial(&mut child, args, detect_footage.is_some(), streams);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait();
    match (result, status) {
        (Ok(r), _) => {
            let _ = std::fs::remove_file(&log_path);
            Ok(r)
        }
        (Err(e), status) => {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            Err(e.context(format!(
                "trial process {:?}; last lines of its log ({}):\n{}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                log_path.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )))
        }
    }
}

fn drive_trial(
    child: &mut std::process::Child,
    args: &BenchArgs,
    substreams: bool,
    streams: usize,
) -> anyhow::Result<TrialResult> {
    let stdout = child.stdout.take().context("trial has no stdout")?;
    let mut stdin = child.stdin.take().context("trial has no stdin")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut next = || -> anyhow::Result<trial::Line> {
        loop {
            let line = lines
                .next()
                .context("the trial process ended early")?
                .context("cannot read the trial's output")?;
            match serde_json::from_str::<trial::Line>(&line) {
                Ok(l) => return Ok(l),
                Err(_) => tracing::debug!(line, "trial output"),
            }
        }
    };
    let trial::Line::Ready(ready) = next()? else {
        anyhow::bail!("the trial did not start with \"ready\"");
    };
    let http: std::net::SocketAddr = ready.http.parse().context("trial's HTTP address")?;
    let total = (args.warmup + args.seconds).ceil() as u64;
    let pb = bar(total, &format!("{streams} streams"));
    pb.set_message("attaching viewers");

    let login = (ready.device.as_str(), ready.token.as_str());
    if args.browsers > 0 {
        return viewers::drive_browser_trial(
            &mut next, &mut stdin, &pb, http, &ready, total, args, substreams,
        );
    }
    if substreams {
        return drive_live_trial(&mut next, &mut stdin, &pb, http, &ready, total);
    }
    // The wall's viewers: the page's one MJPEG connection, and a mosaic RTSP client.
    let mjpeg = consumers::MjpegReader::start(http, "/tiles.mjpg", login)?;
    let rtsp_url = format!("rtsp://127.0.0.1:{}/annotated/wall", ready.rtsp_port);
    let rtsp = consumers::RtspClient::start(&rtsp_url, login)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while mjpeg.frames() == 0 || rtsp.frames() == 0 {
        if let Some(e) = rtsp.error() {
            anyhow::bail!("RTSP client of {rtsp_url}: {e}");
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the wall sent nothing within 60 s (MJPEG frames {}, RTSP frames {})",
                mjpeg.frames(),
                rtsp.frames()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut r, window) = follow_trial(&mut next, &mut stdin, &pb, total, "display", || {
        (mjpeg.frames(), rtsp.frames())
    })?;
    if let Some(w) = window {
        let dt = w.seconds();
        let (m, rt) = (mjpeg.frames() - w.start.0, rtsp.frames() - w.start.1);
        r.consumers = Some(Consumers {
            mjpeg_url: mjpeg.url.clone(),
            mjpeg_frames: m,
            mjpeg_fps: m as f64 / dt,
            rtsp_url: rtsp.url.clone(),
            rtsp_frames: rt,
            rtsp_fps: rt as f64 / dt,
            ..Default::default()
        });
        r.harness_cpu_percent = Some(w.harness_cpu_percent());
    }
    mjpeg.stop();
    rtsp.stop();
    drop(stdin);
    Ok(r)
}

/// The rest of [`drive_trial`] with the browser page's passthrough tiles as the wall's viewers.
fn drive_live_trial(
    next: &mut dyn FnMut() -> anyhow::Result<trial::Line>,
    stdin: &mut std::process::ChildStdin,
    pb: &ProgressBar,
    http: std::net::SocketAddr,
    ready: &trial::Ready,
    total: u64,
) -> anyhow::Result<TrialResult> {
    let login = (ready.device.as_str(), ready.token.as_str());
    let live = consumers::LiveViewers::start(http, &ready.sites, login)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // every tile has had frames (a fragment per site at least)
    while live.frames() < ready.sites.len() as u64 {
        if let Some(e) = live.error() {
            anyhow::bail!("live viewer: {e}");
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the wall's /live tiles sent {} frames within 60 s",
                live.frames()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (mut r, window) = follow_trial(next, stdin, pb, total, "passthrough", || live.frames())?;
    if let Some(w) = window {
        let dt = w.seconds();
        let f = live.frames() - w.start;
        r.consumers = Some(Consumers {
            live_url: live.url.clone(),
            live_viewers: ready.sites.len(),
            live_frames: f,
            live_fps: f as f64 / dt,
            ..Default::default()
        });
        r.harness_cpu_percent = Some(w.harness_cpu_percent());
    }
    live.stop();
    Ok(r)
}

/// The harness's counters and CPU time when the trial's measured window opened.
pub(crate) struct Window<S> {
    opened: Instant,
    start: S,
    cpu_s: f64,
}

impl<S> Window<S> {
    pub(crate) fn seconds(&self) -> f64 {
        self.opened.elapsed().as_secs_f64().max(1e-6)
    }

    /// The harness's own CPU over the window, % of one core.
    pub(crate) fn harness_cpu_percent(&self) -> f64 {
        (procfs::cpu_seconds(None).unwrap_or(0.0) - self.cpu_s) / self.seconds() * 100.0
    }
}

/// Tells a trial whose viewers are attached to go and follows it to its result, sampling the
/// viewers' counters (`sample`) when its measured window opens. `shown` names what the progress
/// line's frame rate is (display frames or passthrough frames).
pub(crate) fn follow_trial<S>(
    next: &mut dyn FnMut() -> anyhow::Result<trial::Line>,
    stdin: &mut std::process::ChildStdin,
    pb: &ProgressBar,
    total: u64,
    shown: &str,
    sample: impl Fn() -> S,
) -> anyhow::Result<(TrialResult, Option<Window<S>>)> {
    writeln!(stdin, "go").context("cannot tell the trial to go")?;
    stdin.flush().context("cannot tell the trial to go")?;
    let go_at = Instant::now();
    pb.set_message("warming up");
    let mut window = None;
    let result = loop {
        pb.set_position(go_at.elapsed().as_secs().min(total));
        match next()? {
            trial::Line::Window { .. } => {
                window = Some(Window {
                    opened: Instant::now(),
                    start: sample(),
                    cpu_s: procfs::cpu_seconds(None).unwrap_or(0.0),
                });
            }
            trial::Line::Progress(p) => pb.set_message(format!(
                "{shown} {:.1} fps, analytics {:.2} fps per stream, CPU {:.0} %",
                p.display_fps, p.analytics_fps, p.cpu_percent
            )),
            trial::Line::Result(r) => break r,
            trial::Line::Ready(_) => anyhow::bail!("the trial said \"ready\" twice"),
        }
    };
    pb.finish_and_clear();
    Ok((*result, window))
}

fn run_baselines(
    args: &BenchArgs,
    base: &Config,
    footage: &Path,
    report: &Report,
) -> anyhow::Result<Baseline> {
    let manifest = base.resolve(&base.detect.model);
    // The same file simpang's detector runs on this CPU (the AMX copy where it applies).
    let mut m = crate::detect::manifest::Manifest::load(&manifest)?;
    crate::detect::choose_model_file(&mut m, base.detect.amx);
    let opts = baseline::BaselineOptions {
        python: baseline::locate(&args.python),
        script: baseline::locate(&args.baseline_script),
        footage: footage.to_path_buf(),
        onnx: m.onnx,
        manifest,
        input_size: base.detect.input_size,
        detect_fps: base.detect.fps,
        seconds: args.seconds,
        warmup: args.warmup,
    };
    let mut setups = Vec::new();
    for setup in [baseline::Setup::PerStream, baseline::Setup::Shared] {
        let mut run = |n: usize| -> anyhow::Result<report::BaselineRun> {
            let total = (args.warmup + args.seconds).ceil() as u64;
            let pb = bar(total, &format!("python ({}) {n}", setup.arg()));
            let t0 = Instant::now();
            let r = baseline::run(&opts, setup, n, &|v| {
                pb.set_position(t0.elapsed().as_secs().min(total));
                pb.set_message(format!(
                    "{:.1} fps per stream, CPU {:.0} %",
                    v.get("fps").and_then(|x| x.as_f64()).unwrap_or(0.0),
                    v.get("cpu_percent").and_then(|x| x.as_f64()).unwrap_or(0.0)
                ));
            });
            pb.finish_and_clear();
            r.with_context(|| format!("Python baseline ({}) with {n} streams", setup.arg()))
        };
        let (search, runs) = find_max(1, args.max_streams, &mut run)?;
        setups.push(BaselineSetup {
            setup: setup.arg().into(),
            description: setup.description().into(),
            runs,
            sustained: search.sustained,
            capped: search.capped,
        });
    }
    let out = setups;
    let best = out.iter().map(|s| s.sustained).max().unwrap_or(0);
    let (ours, basis) = match (&report.find_max, report.sustained) {
        (Some(s), _) => (Some(s.sustained), format!("{} (find-max)", s.sustained)),
        (None, Some(n)) => (Some(n), format!("{n} (held in the run; at least)")),
        (None, None) => (None, "unknown (the run did not hold)".into()),
    };
    Ok(Baseline {
        python: opts.python.display().to_string(),
        setups: out,
        best_sustained: best,
        ratio: ours.filter(|_| best > 0).map(|n| n as f64 / best as f64),
        simpang_basis: basis,
    })
}
