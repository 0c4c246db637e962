//! `simpang replay`: recorded clips played as cameras through the code of `simpang run`, as
//! fast as the machine allows, and the incidents scored against labels.
//!
//! ```text
//! each site's file ─ ingest (Pacing::Replay: every analytics frame, stamped with media time)
//!   ─▶ lossless AnalyticsQueue ─▶ frame loop: detector, tracker, rules (the run's, unchanged)
//!   ─▶ Recorder: the incident lifecycle and messages of the incident stage (no outbox, no MQTT)
//!   ─▶ incidents (JSON) ─▶ scores against the labels (text table or --json)
//! ```
//!
//! Only the clock and the pacing differ from `simpang run`: the rules' clock is the file's
//! timestamps, so a 150 s clip takes seconds and its dwell and clear times mean the same as
//! live; the decoder waits for the detector instead of frames being dropped. `--realtime` plays
//! the files at their own rate on the live clock instead, exactly as `simpang run` plays a file
//! camera (frames dropped when the detector falls behind): the same clip through both must give
//! the same incidents (tests/replay_scenarios.rs).

pub mod labels;
pub mod record;
pub mod score;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound, Utc};
use prometheus::Registry;
use serde::Serialize;
use tracing::info;

use super::frameloop::{self, LoopMetrics, LoopMode};
use super::run::select_sites;
use super::sites::{SiteSlot, Sites};
use super::AppError;
use crate::analytics::SiteAnalytics;
use crate::config::Config;
use crate::detect::Detector;
use crate::hub::{AnalyticsQueue, SiteHub};
use crate::ingest::{self, CameraHandle, CameraSettings, Source, SourceKind, Templates};
use crate::model::SiteId;
use record::{Recorder, SiteRecord};

/// Arguments of `simpang replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The config whose sites are replayed: each site's `stream` must be a recorded file.
    #[arg(long, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
    /// Replay only these sites (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<SiteId>,
    /// Labels to score against: a `*.labels.jsonl` file, or a folder of them (repeatable).
    #[arg(long)]
    pub labels: Vec<PathBuf>,
    /// Write every incident as one JSON line here (with the messages `simpang run` would
    /// publish).
    #[arg(long)]
    pub incidents: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Keep each zone's count per frame in the JSON report.
    #[arg(long)]
    pub series: bool,
    /// Play the files at their own rate on the live clock, as `simpang run` does.
    #[arg(long)]
    pub realtime: bool,
}

/// How to replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayOptions {
    pub realtime: bool,
    pub series: bool,
}

/// What a replay gives.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayRun {
    pub sites: Vec<SiteRecord>,
    /// Seconds the replay took, from the detector loaded to the last frame.
    pub wall_s: f64,
    /// Seconds of footage replayed, all sites together.
    pub footage_s: f64,
    /// `footage_s / wall_s`.
    pub speed: f64,
    pub realtime: bool,
}

/// The JSON report of `simpang replay --json`.
#[derive(Serialize)]
struct Report<'a> {
    schema: &'static str,
    replay: &'a ReplayRun,
    #[serde(skip_serializing_if = "Option::is_none")]
    scores: Option<score::Scores>,
}

pub fn replay_main(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&args.config)?;
    // labels are checked against every site of the config; those of sites not replayed now
    // are left out of the scores
    let labels = if args.labels.is_empty() {
        None
    } else {
        Some(labels::load(&args.labels, &cfg)?)
    };
    select_sites(&mut cfg, &args.sites)?;
    let run = replay(
        &cfg,
        ReplayOptions {
            realtime: args.realtime,
            series: args.series,
        },
    )?;
    if let Some(path) = &args.incidents {
        write_incidents(path, &run)?;
    }
    let scores = labels.as_ref().map(|l| score::score(l, &run.sites));
    if args.json {
        let report = Report {
            schema: "simpang.replay/1",
            replay: &run,
            scores,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&run));
        if let Some(s) = &scores {
            println!();
            print!("{}", score::text(s));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_incidents(path: &std::path::Path, run: &ReplayRun) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path)
            .map_err(|e| anyhow::anyhow!("--incidents {}: {e}", path.display()))?,
    );
    for inc in run.sites.iter().flat_map(|s| &s.incidents) {
        serde_json::to_writer(&mut f, inc)?;
        f.write_all(b"\n")?;
    }
    f.flush()?;
    Ok(())
}

/// The replay in a few lines: speed, and per site its incidents, levels and line totals.
pub fn summary(run: &ReplayRun) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "replayed {:.0} s of footage in {:.1} s: {:.1} s of footage per second{}",
        run.footage_s,
        run.wall_s,
        run.speed,
        if run.realtime { " (real time)" } else { "" }
    );
    for s in &run.sites {
        let _ = writeln!(
            o,
            "{}: {} frames, {:.1} s, {} incident(s)",
            s.site,
            s.frames,
            s.media_s,
            s.incidents.len()
        );
        for i in &s.incidents {
            let levels: Vec<&str> = i.levels.iter().map(|l| l.as_str()).collect();
            let _ = writeln!(
                o,
                "  {} {} {:.1}-{} s (condition from {:.1} s) {} {}",
                i.kind.as_str(),
                i.zone.as_deref().unwrap_or("-"),
                i.opened_s,
                i.ended_s.map_or("open".into(), |e| format!("{e:.1}")),
                i.condition_s,
                levels.join(" > "),
                i.evidence
                    .reason
                    .as_deref()
                    .or(i.end_evidence.as_ref().and_then(|e| e.reason.as_deref()))
                    .unwrap_or("")
            );
        }
        for (zone, changes) in &s.levels {
            let seq: Vec<String> = changes
                .iter()
                .map(|(t, l)| format!("{} ({t:.1} s)", l.as_str()))
                .collect();
            let _ = writeln!(o, "  zone {zone}: {}", seq.join(" -> "));
        }
        for l in &s.lines {
            let _ = writeln!(
                o,
                "  line {}: in {}, out {}",
                l.line.as_ref().map_or("-", |l| l.as_str()),
                l.in_count,
                l.out_count
            );
        }
    }
    o
}

/// The recorded file of a site, or why it cannot be replayed.
fn recording(cfg: &Config, site: &crate::config::Site) -> Result<PathBuf, AppError> {
    let src = Source::parse(&site.stream);
    if src.kind != SourceKind::File {
        return Err(AppError::Other(format!(
            "site {:?}: replay plays recorded files, and its stream {:?} is not one",
            site.id, site.stream
        )));
    }
    let path = cfg.resolve(std::path::Path::new(&src.target));
    if !path.is_file() {
        return Err(AppError::Other(format!(
            "site {:?}: the recording {} does not exist",
            site.id,
            path.display()
        )));
    }
    Ok(path)
}

/// Replays every site of `cfg` and returns what each raised.
pub fn replay(cfg: &Config, opts: ReplayOptions) -> Result<ReplayRun, AppError> {
    if cfg.sites.is_empty() {
        return Err(AppError::Other("the config has no sites to replay".into()));
    }
    for s in &cfg.sites {
        recording(cfg, s)?;
    }
    ingest::init_gstreamer()?;
    let templates = Arc::new(Templates::load(
        cfg.ingest
            .pipelines_dir
            .as_ref()
            .map(|p| cfg.resolve(p))
            .as_deref(),
    )?);
    let detector = Detector::load(cfg)?;
    let labels = detector.labels();
    let thresholds = detector.thresholds();
    let size = detector.input_size();
    let sites = Arc::new(Sites::default());
    let queue = if opts.realtime {
        AnalyticsQueue::new([])
    } else {
        AnalyticsQueue::lossless([])
    };
    // media time 0 of every recording, on the rules' clock: now, to the second
    let base: DateTime<Utc> = Utc::now().trunc_subsecs(0);
    for (i, site) in cfg.sites.iter().enumerate() {
        let at = |field: &str| {
            cfg.locate(&format!("sites[{i}].{field}"))
                .map(|a| a + ": ")
                .unwrap_or_default()
        };
        let analytics = SiteAnalytics::new(site, labels.clone())
            .map_err(|e| AppError::Other(format!("{}{e}", at(e.field()))))?
            .with_thresholds(thresholds.clone());
        let id = SiteId::new(&site.id);
        let hub = Arc::new(SiteHub::new(id.clone(), base));
        let slot = Arc::new(SiteSlot::new(Arc::new(site.clone()), hub, analytics));
        sites
            .insert(id.clone(), slot)
            .map_err(|_| AppError::Other(format!("site {id} appears twice")))?;
        queue.add(id);
    }
    let recorder = Arc::new(Recorder::new(cfg, opts.series));
    let loop_metrics = LoopMetrics::register(&Registry::new())?;
    let ingest_metrics = crate::metrics::IngestMetrics::register(&Registry::new())?;
    let started = Instant::now();
    let frame_loop = frameloop::spawn(
        cfg,
        Arc::new(detector),
        sites.clone(),
        queue.clone(),
        recorder.clone(),
        loop_metrics,
        LoopMode::Replay,
    )
    .map_err(|e| AppError::Other(format!("cannot start detection workers: {e}")))?;
    let mut cameras: Vec<(String, CameraHandle, Arc<SiteHub>)> = Vec::new();
    for slot in sites.all() {
        let settings = CameraSettings::for_site(cfg, &slot.config, size);
        let settings = if opts.realtime {
            settings.realtime_once()
        } else {
            settings.replay(base)
        };
        let cam = ingest::spawn_camera(
            settings,
            templates.clone(),
            slot.hub.clone(),
            queue.clone(),
            ingest_metrics.clone(),
        );
        match cam {
            Ok(c) => cameras.push((slot.id.to_string(), c, slot.hub.clone())),
            Err(e) => {
                queue.close();
                frame_loop.stop();
                for (_, c, _) in cameras {
                    c.stop();
                }
                return Err(e.into());
            }
        }
    }
    info!(sites = cameras.len(), realtime = opts.realtime, "replaying");
    // every file to its end, then every frame through the rules
    while cameras.iter().any(|(_, c, _)| !c.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    while !queue.is_idle() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall_s = started.elapsed().as_secs_f64();
    queue.close();
    frame_loop.stop();
    let mut failed = Vec::new();
    for (id, cam, hub) in cameras {
        cam.stop();
        let st = hub.status.load();
        match st.last_error.as_deref() {
            Some("end of file") => {}
            other => failed.push(format!(
                "site {id:?}: the recording could not be played to its end: {}",
                other.unwrap_or("no reason given")
            )),
        }
    }
    if !failed.is_empty() {
        return Err(AppError::Other(failed.join("; ")));
    }
    let order: Vec<String> = cfg.sites.iter().map(|s| s.id.to_string()).collect();
    let recorder = Arc::try_unwrap(recorder)
        .map_err(|_| AppError::Other("the frame loop still holds the recorder".into()))?;
    let records = recorder.finish(&order);
    let footage_s: f64 = records
        .iter()
        .map(|r| r.media_s + 1.0 / cfg.detect.fps.max(0.1))
        .sum();
    Ok(ReplayRun {
        speed: footage_s / wall_s.max(1e-3),
        sites: records,
        wall_s,
        footage_s,
        realtime: opts.realtime,
    })
}
