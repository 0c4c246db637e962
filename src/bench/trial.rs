//! One measured run of N streams: the process the harness starts as `simpang bench --trial`.
//!
//! It runs the pipeline of `simpang run` (`app::run`) on the bench config with the raw-timing
//! recorder installed, tells the harness where the wall is (`ready`), waits for the harness's
//! viewers to attach (`go` on stdin), warms up, measures a window, and prints the result. A
//! process per run, so the CPU time and the peak RSS it reports are this run's alone, and no
//! run inherits another's threads, broker or allocations.
//!
//! Protocol: one JSON object per stdout line, `{"ready": ...}`, `{"window": ...}`,
//! `{"progress": ...}`, `{"result": TrialResult}`; logs go to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::report::{
    judge, Messages, Mode, StageRow, StreamRow, ThreadGroup, TrialResult, WallActivity,
};
use super::setup;
use super::BenchError;
use crate::config::Config;
use crate::metrics;
use crate::procfs;
use crate::timing::{self, Summary};
use crate::wall::meter::series_value;

/// What a trial process is asked to do.
#[derive(Clone, Debug)]
pub struct TrialOptions {
    pub streams: usize,
    pub footage: PathBuf,
    pub mode: Mode,
    pub seconds: f64,
    pub warmup: f64,
    pub source_fps: f64,
    /// Add [`setup::bench_zone`] to every stream.
    pub bench_zone: bool,
    /// `--substreams`: every camera's `detect_stream` plays this file.
    pub detect_footage: Option<PathBuf>,
    /// `--browsers N`: room on the wall for N browser pages, and a wall account to sign in.
    pub browsers: usize,
    /// `--browsers N`: the harness's clock camera, one more site (not in the per-stream rows).
    pub clock_camera: Option<String>,
}

/// The harness's first message from a trial: where to attach viewers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ready {
    pub http: String,
    pub rtsp_port: u16,
    /// The wall device account the harness's viewers sign in with (the wall wants a login).
    pub device: String,
    pub token: String,
    pub sites: Vec<String>,
    pub mjpeg_fps: f64,
    pub mosaic_fps: f64,
    /// A person's wall account for the harness's browsers (`--browsers`), which sign in at
    /// `/login` as an operator does.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The clock camera's site, if the run has one.
    #[serde(default)]
    pub clock_site: Option<String>,
    /// The trial's process id (the harness samples its CPU before "go").
    #[serde(default)]
    pub pid: u32,
}

/// Once a second during the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    pub t: f64,
    pub of: f64,
    pub display_fps: f64,
    pub analytics_fps: f64,
    pub cpu_percent: f64,
}

/// One line of the protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Ready(Ready),
    Window { seconds: f64 },
    Progress(Progress),
    Result(Box<TrialResult>),
}

fn emit(line: &Line) -> Result<(), BenchError> {
    let text = serde_json::to_string(line)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .map_err(|error| BenchError::Io {
            what: "cannot write to the harness".into(),
            error,
        })
}

/// A fresh, empty data dir for the run's outbox and snapshots.
fn fresh_data_dir() -> Result<PathBuf, BenchError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir =
        std::env::temp_dir().join(format!("simpang-bench-{}-{nanos:08x}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|error| BenchError::Io {
        what: format!("cannot create {}", dir.display()),
        error,
    })?;
    Ok(dir)
}

/// Runs one trial in this process and prints its lines. Blocks until the window is over.
pub fn run(base: &Config, opts: &TrialOptions) -> Result<(), BenchError> {
    timing::install();
    let data_dir = fresh_data_dir()?;
    let result = run_in(base, opts, &data_dir);
    if let Err(e) = std::fs::remove_dir_all(&data_dir) {
        warn!(dir = %data_dir.display(), error = %e, "cannot remove the bench data dir");
    }
    result
}

fn run_in(base: &Config, opts: &TrialOptions, data_dir: &Path) -> Result<(), BenchError> {
    let cfg = setup::bench_config(
        base,
        opts.streams,
        &opts.footage,
        opts.mode == Mode::Realtime,
        opts.bench_zone,
        data_dir,
    )?;
    let cfg = match &opts.detect_footage {
        Some(sub) => setup::with_substreams(cfg, sub)?,
        None => cfg,
    };
    let cfg = if opts.browsers > 0 {
        setup::with_browsers(cfg, opts.browsers, opts.clock_camera.as_deref())?
    } else {
        cfg
    };
    let rt = crate::app::runtime().map_err(|error| BenchError::Io {
        what: "cannot start the async runtime".into(),
        error,
    })?;
    // The wall lets nobody watch without an account: the harness's viewers get a device of
    // their own, in this trial's fresh data dir.
    let device = "bench-viewer";
    let token = crate::wall::accounts::add_device(
        &cfg.wall_accounts_path(),
        device,
        crate::wall::accounts::By::Cli,
    )
    .map_err(|e| BenchError::Usage(format!("cannot make the bench's wall device: {e}")))?;
    // The browsers sign in as people do, with a password (fresh per trial).
    let person = if opts.browsers > 0 {
        let user = "bench-operator";
        let password = crate::guard::secret::random_token();
        let hash = crate::guard::secret::hash_password(&password)
            .map_err(|e| BenchError::Usage(format!("cannot hash the bench's password: {e}")))?;
        crate::wall::accounts::add_person(
            &cfg.wall_accounts_path(),
            user,
            hash,
            crate::wall::accounts::By::Cli,
        )
        .map_err(|e| BenchError::Usage(format!("cannot make the bench's wall user: {e}")))?;
        Some((user.to_string(), password))
    } else {
        None
    };
    let clock_site = opts
        .clock_camera
        .as_ref()
        .map(|_| setup::CLOCK_SITE.to_string());
    rt.block_on(async {
        let running = crate::app::run(cfg.clone()).await?;
        let sites: Vec<String> = cfg.sites.iter().map(|s| s.id.to_string()).collect();
        // The clock camera is a tile on the wall, not one of the N streams measured.
        let measured_sites: Vec<String> = sites
            .iter()
            .filter(|&s| Some(s) != clock_site.as_ref())
            .cloned()
            .collect();
        emit(&Line::Ready(Ready {
            http: running.http_addr.to_string(),
            rtsp_port: cfg.wall.rtsp_port,
            device: device.to_string(),
            token: token.clone(),
            sites: sites.clone(),
            mjpeg_fps: cfg.wall.mjpeg_fps,
            mosaic_fps: cfg.wall.mosaic_fps,
            user: person.as_ref().map(|p| p.0.clone()),
            password: person.as_ref().map(|p| p.1.clone()),
            clock_site: clock_site.clone(),
            pid: std::process::id(),
        }))?;
        let measured = async {
            wait_for_go().await?;
            tokio::time::sleep(Duration::from_secs_f64(opts.warmup)).await;
            let registry = running.registry.clone();
            let result = measure(&registry, &measured_sites, opts, cfg.detect.fps).await?;
            emit(&Line::Result(Box::new(result)))
        }
        .await;
        // Stop whatever happened; a teardown that hangs must not keep the harness waiting.
        if tokio::time::timeout(Duration::from_secs(20), running.stop())
            .await
            .is_err()
        {
            warn!("pipeline did not stop within 20 s");
        }
        measured
    })
}

/// How long a trial waits for "go".
const GO_WITHIN_S: u64 = 900;

/// The harness writes `go` once its viewers receive frames.
async fn wait_for_go() -> Result<(), BenchError> {
    let line = tokio::task::spawn_blocking(|| {
        let mut s = String::new();
        std::io::stdin().lock().read_line(&mut s).map(|_| s)
    });
    // Before "go" the harness may measure a phase of its own and start browsers.
    match tokio::time::timeout(Duration::from_secs(GO_WITHIN_S), line).await {
        Ok(Ok(Ok(s))) if s.trim() == "go" => Ok(()),
        Ok(Ok(Ok(s))) => Err(BenchError::Protocol(format!(
            "expected \"go\" from the harness, got {:?}",
            s.trim()
        ))),
        Ok(Ok(Err(error))) => Err(BenchError::Io {
            what: "cannot read from the harness".into(),
            error,
        }),
        Ok(Err(e)) => Err(BenchError::Protocol(e.to_string())),
        Err(_) => Err(BenchError::Protocol(format!(
            "no \"go\" from the harness within {GO_WITHIN_S} s"
        ))),
    }
}

/// Counters and clocks at one instant.
struct Snapshot {
    at: Instant,
    cpu_s: f64,
    machine_s: f64,
    metrics: String,
    threads: BTreeMap<u32, (String, f64)>,
}

impl Snapshot {
    fn take(registry: &prometheus::Registry, with_threads: bool) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu_s: procfs::cpu_seconds(None).unwrap_or(0.0),
            machine_s: procfs::machine_busy_seconds().unwrap_or(0.0),
            metrics: metrics::render(registry),
            threads: if with_threads {
                procfs::thread_cpu()
            } else {
                BTreeMap::new()
            },
        }
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        series_value(&self.metrics, name, labels).unwrap_or(0.0) as u64
    }

    /// The sum of every series of `name` that carries `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.metrics
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, have) = match series.split_once('{') {
                    Some((m, rest)) => (m, rest.trim_end_matches('}')),
                    None => (series, ""),
                };
                let have: Vec<&str> = have.split(',').collect();
                (metric == name && want.iter().all(|w| have.contains(&w.as_str())))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum::<f64>() as u64
    }
}

async fn measure(
    registry: &prometheus::Registry,
    sites: &[String],
    opts: &TrialOptions,
    detect_fps: f64,
) -> Result<TrialResult, BenchError> {
    let start = match timing::recorder() {
        Some(r) => r.cut(|| {
            r.clear();
            Snapshot::take(registry, true)
        }),
        None => Snapshot::take(registry, true),
    };
    emit(&Line::Window {
        seconds: opts.seconds,
    })?;
    info!(streams = sites.len(), seconds = opts.seconds, "measuring");
    let end_at = start.at + Duration::from_secs_f64(opts.seconds);
    let mut prev = Snapshot::take(registry, false);
    loop {
        let now = Instant::now();
        if now >= end_at {
            break;
        }
        tokio::time::sleep((end_at - now).min(Duration::from_secs(1))).await;
        let cur = Snapshot::take(registry, false);
        let dt = (cur.at - prev.at).as_secs_f64().max(1e-6);
        let n = sites.len().max(1) as f64;
        let delta =
            |name: &str| cur.sum(name, &[]).saturating_sub(prev.sum(name, &[])) as f64 / dt / n;
        emit(&Line::Progress(Progress {
            t: (cur.at - start.at).as_secs_f64(),
            of: opts.seconds,
            display_fps: delta("simpang_source_frames_total"),
            analytics_fps: delta("simpang_analytics_processed_total"),
            cpu_percent: (cur.cpu_s - prev.cpu_s) / dt * 100.0,
        }))?;
        prev = cur;
    }
    let (end, samples) = match timing::recorder() {
        Some(r) => r.cut(|| (Snapshot::take(registry, true), r.take())),
        None => (Snapshot::take(registry, true), Vec::new()),
    };
    Ok(result_of(&start, &end, samples, sites, opts, detect_fps))
}

fn result_of(
    start: &Snapshot,
    end: &Snapshot,
    samples: Vec<(timing::Stage, timing::Samples)>,
    sites: &[String],
    opts: &TrialOptions,
    detect_fps: f64,
) -> TrialResult {
    let window = (end.at - start.at).as_secs_f64().max(1e-6);
    let d = |name: &str, labels: &[(&str, &str)]| {
        end.value(name, labels)
            .saturating_sub(start.value(name, labels))
    };
    let ds = |name: &str, labels: &[(&str, &str)]| {
        end.sum(name, labels)
            .saturating_sub(start.sum(name, labels))
    };
    let want_display = (opts.source_fps * window).round();
    let per_stream: Vec<StreamRow> = sites
        .iter()
        .map(|s| {
            let l = [("site", s.as_str())];
            // The wall's input at the source rate: the camera's own frames, which the browser
            // wall plays as they are (burned-in outputs take decoded frames at their own rate).
            let display = d("simpang_source_frames_total", &l);
            let decoded = d("simpang_frames_decoded_total", &l);
            let processed = d("simpang_analytics_processed_total", &l);
            StreamRow {
                site: s.clone(),
                decoded,
                display_frames: display,
                display_dropped: d("simpang_display_frames_dropped_total", &l),
                display_missed: match opts.mode {
                    Mode::Realtime => (want_display - display as f64).max(0.0) as u64,
                    Mode::Max => 0,
                },
                analytics_frames: d("simpang_analytics_frames_total", &l),
                analytics_dropped: d("simpang_analytics_frames_dropped_total", &l),
                processed,
                decoded_fps: decoded as f64 / window,
                display_fps: display as f64 / window,
                analytics_fps: processed as f64 / window,
            }
        })
        .collect();
    let total = total_row(&per_stream, window);
    let failures = judge(&per_stream, opts.mode, opts.source_fps, detect_fps, window);
    let media_frames = match opts.mode {
        Mode::Realtime => total.display_frames,
        Mode::Max => total.decoded,
    };
    let stages = samples
        .into_iter()
        .map(|(stage, mut s)| StageRow {
            stage: stage.name().to_string(),
            summary: Summary::of_seconds(&mut s.values, s.overflow),
        })
        .collect();
    let cpu_s = (end.cpu_s - start.cpu_s).max(0.0);
    TrialResult {
        streams: sites.len(),
        mode: Some(opts.mode),
        window_s: window,
        warmup_s: opts.warmup,
        source_fps: opts.source_fps,
        detect_fps,
        stages,
        per_stream,
        total,
        cpu_percent: cpu_s / window * 100.0,
        cpu_seconds: cpu_s,
        machine_cpu_percent: (end.machine_s - start.machine_s).max(0.0) / window * 100.0,
        peak_rss_mb: procfs::peak_rss_bytes(None).unwrap_or(0) as f64 / 1e6,
        realtime_factor: media_frames as f64
            / (opts.source_fps * window * sites.len().max(1) as f64),
        holds: failures.is_empty(),
        failures,
        wall: WallActivity {
            frames_rendered: ds("simpang_wall_frames_rendered_total", &[]),
            jpeg_frames: ds("simpang_wall_jpeg_frames_total", &[]),
            mosaic_frames: d(
                "simpang_wall_rtsp_frames_total",
                &[("site", crate::wall::rtsp::MOSAIC)],
            ),
        },
        messages: Messages {
            incident_messages: ds("simpang_incident_messages_total", &[]),
            published_incidents: ds("simpang_mqtt_published_total", &[("kind", "incident")]),
            published_counts: ds("simpang_mqtt_published_total", &[("kind", "counts")]),
        },
        threads: thread_groups(&start.threads, &end.threads, window),
        consumers: None,
        harness_cpu_percent: None,
        browsers: None,
        load_end: procfs::load_average(),
    }
}

fn total_row(rows: &[StreamRow], window: f64) -> StreamRow {
    let sum = |f: fn(&StreamRow) -> u64| rows.iter().map(f).sum::<u64>();
    let n = rows.len().max(1) as f64;
    let decoded = sum(|r| r.decoded);
    let display = sum(|r| r.display_frames);
    let processed = sum(|r| r.processed);
    StreamRow {
        site: "all".into(),
        decoded,
        display_frames: display,
        display_dropped: sum(|r| r.display_dropped),
        display_missed: sum(|r| r.display_missed),
        analytics_frames: sum(|r| r.analytics_frames),
        analytics_dropped: sum(|r| r.analytics_dropped),
        processed,
        decoded_fps: decoded as f64 / window / n,
        display_fps: display as f64 / window / n,
        analytics_fps: processed as f64 / window / n,
    }
}

/// Thread names with their digits folded (`detect-0`, `detect-1` -> `detect-#`), so the CPU of
/// the decoders, scalers, detector sessions and wall workers adds up per kind of work.
fn group_name(comm: &str) -> String {
    let mut out = String::with_capacity(comm.len());
    let mut last_hash = false;
    for c in comm.chars() {
        if c.is_ascii_digit() {
            if !last_hash {
                out.push('#');
            }
            last_hash = true;
        } else {
            out.push(c);
            last_hash = false;
        }
    }
    out
}

/// CPU per thread group over the window, largest first; a thread born in the window counts
/// whole, one that ended in it is lost (rare: the pipeline's threads live for the run).
fn thread_groups(
    start: &BTreeMap<u32, (String, f64)>,
    end: &BTreeMap<u32, (String, f64)>,
    window: f64,
) -> Vec<ThreadGroup> {
    let mut groups: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for (tid, (name, cpu)) in end {
        let before = start.get(tid).map(|(_, c)| *c).unwrap_or(0.0);
        let g = groups.entry(group_name(name)).or_default();
        g.0 += 1;
        g.1 += (cpu - before).max(0.0);
    }
    let mut v: Vec<ThreadGroup> = groups
        .into_iter()
        .map(|(group, (threads, cpu))| ThreadGroup {
            group,
            threads,
            cpu_percent: cpu / window * 100.0,
        })
        .filter(|g| g.cpu_percent >= 0.05)
        .collect();
    v.sort_by(|a, b| b.cpu_percent.total_cmp(&a.cpu_percent));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_fold_digits() {
        let cases = [
            ("detect-0", "detect-#"),
            ("detect-12", "detect-#"),
            ("multiqueue0:src", "multiqueue#:src"),
            ("wall-bkb", "wall-bkb"),
            ("", ""),
        ];
        for (name, want) in cases {
            assert_eq!(group_name(name), want, "{name}");
        }
    }

    #[test]
    fn thread_groups_add_up_and_sort() {
        let start: BTreeMap<u32, (String, f64)> = [
            (1, ("detect-0".to_string(), 1.0)),
            (2, ("detect-1".to_string(), 2.0)),
            (3, ("idle".to_string(), 5.0)),
        ]
        .into_iter()
        .collect();
        let mut end = start.clone();
        end.insert(1, ("detect-0".into(), 3.0));
        end.insert(2, ("detect-1".into(), 3.0));
        end.insert(4, ("wall-a".into(), 0.5)); // born in the window
        let g = thread_groups(&start, &end, 10.0);
        assert_eq!(g[0].group, "detect-#");
        assert_eq!(g[0].threads, 2);
        assert!((g[0].cpu_percent - 30.0).abs() < 1e-9);
        assert_eq!(g[1].group, "wall-a");
        assert!(g.iter().all(|x| x.group != "idle"));
    }

    #[test]
    fn totals_are_sums_and_per_stream_rates() {
        let rows = vec![
            StreamRow {
                site: "a".into(),
                decoded: 250,
                display_frames: 250,
                processed: 50,
                ..Default::default()
            },
            StreamRow {
                site: "b".into(),
                decoded: 240,
                display_frames: 240,
                processed: 40,
                display_missed: 10,
                ..Default::default()
            },
        ];
        let t = total_row(&rows, 10.0);
        assert_eq!((t.decoded, t.display_frames, t.processed), (490, 490, 90));
        assert_eq!(t.display_missed, 10);
        assert!((t.display_fps - 24.5).abs() < 1e-9);
        assert!((t.analytics_fps - 4.5).abs() < 1e-9);
    }

    #[test]
    fn protocol_lines_round_trip() {
        let line = Line::Progress(Progress {
            t: 1.0,
            of: 10.0,
            display_fps: 25.0,
            analytics_fps: 5.0,
            cpu_percent: 150.0,
        });
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with("{\"progress\":"), "{text}");
        assert!(matches!(
            serde_json::from_str::<Line>(&text).unwrap(),
            Line::Progress(_)
        ));
        let text = serde_json::to_string(&Line::Window { seconds: 3.0 }).unwrap();
        assert!(matches!(
            serde_json::from_str::<Line>(&text).unwrap(),
            Line::Window { .. }
        ));
    }
}
