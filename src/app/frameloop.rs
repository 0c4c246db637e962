//! The frame loop: detection workers take the newest analytics frame of each camera
//! round-robin (several cameras per inference when batching is on), run the detector, then that
//! camera's tracker and rules, publish the results for the wall and hand rule events and counts
//! to the incident stage.
//!
//! One worker per detector session: a worker blocks only on inference, and the queue never
//! hands out a second frame of a camera whose previous frame is still in flight, so every
//! camera's tracker sees its frames in order. A camera whose frames arrive faster than the
//! detector takes them loses its oldest frame (counted), never delays another camera, and never
//! delays the display path, which does not pass through here at all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{HistogramVec, IntCounterVec, Registry};
use tracing::{error, warn};

use super::sites::{SiteSlot, Sites};
use crate::analytics::SiteAnalytics;
use crate::config::Config;
use crate::detect::Detector;
use crate::hub::AnalyticsQueue;
use crate::incident::{snapshot, IncidentSender};
use crate::metrics;
use crate::model::{
    AnalyticsFrame, CountsReport, Detection, Image, Picture, RuleEvent, SiteId, SiteResults,
};
use crate::timing::{self, Stage};

/// Metrics of the frame loop.
#[derive(Clone)]
pub struct LoopMetrics {
    /// Seconds per stage: preprocess, inference, postprocess (per batch), analytics (per frame).
    pub stage_latency: HistogramVec,
    /// Seconds from frame capture to published results, per site.
    pub result_age: HistogramVec,
    pub processed: IntCounterVec,
    pub detections: IntCounterVec,
    pub errors: IntCounterVec,
}

impl LoopMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            stage_latency: metrics::latency_vec(
                r,
                "simpang_stage_latency_seconds",
                "Time spent per frame-loop stage (detector stages per batch, analytics per frame)",
                &["stage"],
            )?,
            result_age: metrics::latency_vec(
                r,
                "simpang_result_age_seconds",
                "From frame capture to its analytics results being published",
                &["site"],
            )?,
            processed: metrics::int_counter_vec(
                r,
                "simpang_analytics_processed_total",
                "Analytics frames that went through detection, tracking and rules",
                &["site"],
            )?,
            detections: metrics::int_counter_vec(
                r,
                "simpang_detections_total",
                "Objects detected",
                &["site"],
            )?,
            errors: metrics::int_counter_vec(
                r,
                "simpang_frame_errors_total",
                "Analytics frames that failed (detector error or a recovered analytics fault)",
                &["site"],
            )?,
        })
    }
}

/// Where a frame's rule events and closed counting intervals go: the incident stage for
/// `simpang run` ([`IncidentSender`]), the replay's recorder for `simpang replay`.
pub trait Outlet: Send + Sync {
    fn rule_event(&self, ev: RuleEvent);
    fn counts(&self, report: CountsReport);
    /// Called once a frame's results are published, before its events are handed on (the
    /// replay reads levels and line totals).
    fn frame_done(&self, _frame: &AnalyticsFrame, _results: &SiteResults) {}
}

impl Outlet for IncidentSender {
    fn rule_event(&self, ev: RuleEvent) {
        IncidentSender::rule_event(self, ev);
    }
    fn counts(&self, report: CountsReport) {
        IncidentSender::counts(self, report);
    }
}

/// How the frame loop runs: `simpang run`'s way, or a replay's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopMode {
    /// Cameras that go offline past `incidents.offline_grace_s` end their rules' incidents.
    Live,
    /// Recorded files: a file that ends is not a lost camera (its open incidents stay open, as
    /// at the end of the recording).
    Replay,
}

/// The running workers.
pub struct FrameLoop {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl FrameLoop {
    /// Stops the workers after their current frame (the queue must be closed too, so waiting
    /// workers wake).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

struct Shared {
    detector: Arc<Detector>,
    sites: Arc<Sites>,
    queue: Arc<AnalyticsQueue>,
    incidents: Arc<dyn Outlet>,
    metrics: LoopMetrics,
    mode: LoopMode,
    /// `incidents.offline_grace_s`: how long a camera may be gone before its rules are told.
    offline_grace: chrono::TimeDelta,
    stop: Arc<AtomicBool>,
}

impl LoopMetrics {
    /// Gives a site its series before its first frame, so rates can be read from the start.
    pub fn touch(&self, site: &SiteId) {
        let l = [site.as_str()];
        self.processed.with_label_values(&l);
        self.detections.with_label_values(&l);
        self.errors.with_label_values(&l);
    }
}

/// Starts one worker per detector session, serving whatever sites are in `sites` (they may
/// come and go while it runs; see [`super::sites`]).
pub fn spawn(
    cfg: &Config,
    detector: Arc<Detector>,
    sites: Arc<Sites>,
    queue: Arc<AnalyticsQueue>,
    incidents: Arc<dyn Outlet>,
    metrics: LoopMetrics,
    mode: LoopMode,
) -> std::io::Result<FrameLoop> {
    let stop = Arc::new(AtomicBool::new(false));
    let workers_n = detector.sessions().max(1);
    let shared = Arc::new(Shared {
        detector,
        sites,
        queue,
        incidents,
        metrics,
        mode,
        offline_grace: chrono::TimeDelta::milliseconds(
            (cfg.incidents.offline_grace_s * 1000.0) as i64,
        ),
        stop: stop.clone(),
    });
    let mut workers = Vec::new();
    for n in 0..workers_n {
        let s = shared.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("detect-{n}"))
                .spawn(move || worker(&s))?,
        );
    }
    Ok(FrameLoop { stop, workers })
}

fn worker(s: &Shared) {
    let max_batch = s.detector.batch_size().max(1);
    let mut last_error_log: Option<Instant> = None;
    let mut last_status_check = Instant::now();
    while !s.stop.load(Ordering::SeqCst) {
        if s.mode == LoopMode::Live && last_status_check.elapsed() >= Duration::from_secs(1) {
            last_status_check = Instant::now();
            check_lost_cameras(s);
        }
        let batch = s.queue.take(max_batch, Duration::from_millis(200));
        if batch.is_empty() {
            continue;
        }
        let images: Vec<&Image> = batch.iter().map(|f| &f.image).collect();
        let result = s.detector.detect_batch(&images);
        let (detections, timings) = match result {
            Ok(r) => r,
            Err(e) => {
                // One log line per few seconds: a broken model would otherwise flood the log at
                // the detect rate of every camera.
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    error!(error = %e, "detector failed on a batch");
                    last_error_log = Some(Instant::now());
                }
                for f in &batch {
                    s.metrics.errors.with_label_values(&[f.site.as_str()]).inc();
                    s.queue.done(&f.site);
                }
                continue;
            }
        };
        // Until the batch's frames are counted as processed (the bench's window edge).
        let _unit = timing::unit();
        for (stage, raw, d) in [
            ("preprocess", Stage::Preprocess, timings.preprocess),
            ("inference", Stage::Inference, timings.inference),
            ("postprocess", Stage::Postprocess, timings.postprocess),
        ] {
            s.metrics
                .stage_latency
                .with_label_values(&[stage])
                .observe(d.as_secs_f64());
            timing::record(raw, d);
        }
        for (frame, dets) in batch.into_iter().zip(detections) {
            let site = frame.site.clone();
            // A site stopped while its frame was in flight has no slot: the frame is let go.
            if let Some(slot) = s.sites.get(site.as_str()) {
                process(s, &slot, frame, &dets);
            }
            s.queue.done(&site);
        }
    }
}

/// One camera's frame through its tracker and rules, and the results out to the hub and the
/// incident stage.
fn process(s: &Shared, slot: &SiteSlot, frame: AnalyticsFrame, dets: &[Detection]) {
    let site = frame.site.as_str();
    let t = Instant::now();
    let out = {
        let mut analytics = slot.analytics.lock();
        match catch_unwind(AssertUnwindSafe(|| analytics.process(&frame, dets))) {
            Ok(out) => Some(out),
            Err(_) => {
                // A bug in one camera's rules must not stop the others: start that camera's
                // analytics afresh and carry on.
                error!(site, "analytics panicked; its state was reset");
                s.metrics.errors.with_label_values(&[site]).inc();
                match SiteAnalytics::new(&slot.config, s.detector.labels()) {
                    Ok(fresh) => *analytics = fresh.with_thresholds(s.detector.thresholds()),
                    Err(e) => warn!(site, error = %e, "cannot reset analytics"),
                }
                None
            }
        }
    };
    s.metrics
        .stage_latency
        .with_label_values(&["analytics"])
        .observe(t.elapsed().as_secs_f64());
    let Some(out) = out else {
        return;
    };
    s.metrics
        .detections
        .with_label_values(&[site])
        .inc_by(dets.len() as u64);
    s.incidents.frame_done(&frame, &out.results);
    slot.hub.publish_results(out.results);
    let age = (Utc::now() - frame.captured_at)
        .to_std()
        .unwrap_or_default();
    // The snapshot shows the picture the decision was made on: this analytics frame, its
    // stretch to the model's input undone. Nothing is decoded for display unless a burned-in
    // output is watched, so there may be no display frame at all.
    let picture = Arc::new(Picture {
        image: frame.image,
        source_width: frame.source_width,
        source_height: frame.source_height,
        captured_at: frame.captured_at,
    });
    let mut shown: Option<Arc<Image>> = None;
    for mut ev in out.events {
        if ev.frame.is_none() {
            if shown.is_none() {
                match snapshot::picture_image(&picture) {
                    Ok(img) => shown = Some(Arc::new(img)),
                    Err(e) => warn!(site, error = %e, "no snapshot picture"),
                }
            }
            ev.frame = shown.clone();
        }
        s.incidents.rule_event(ev);
    }
    slot.hub.picture.store(Some(picture));
    for c in out.counts {
        s.incidents.counts(c);
    }
    s.metrics.processed.with_label_values(&[site]).inc();
    s.metrics
        .result_age
        .with_label_values(&[site])
        .observe(age.as_secs_f64());
    timing::record(Stage::ResultAge, age);
}

/// A camera offline for longer than `incidents.offline_grace_s` (when `camera_offline` opens)
/// can no longer show whether its crowd, jam or litter is still there: its open zone and tamper
/// incidents end with the reason `camera_offline`. A shorter outage (a reconnect) leaves them
/// alone, so a flaky link does not make incidents flap.
fn check_lost_cameras(s: &Shared) {
    let stamp = crate::clock::now();
    let now = stamp.wall;
    for slot in s.sites.all() {
        let status = slot.hub.status.load();
        if status.online {
            slot.lost.store(false, Ordering::Relaxed);
            continue;
        }
        // `since` is when it went offline (or the process start, for a camera never seen).
        if now - status.since < s.offline_grace || slot.lost.swap(true, Ordering::Relaxed) {
            continue;
        }
        let events = slot.analytics.lock().camera_lost(stamp);
        for ev in events {
            s.incidents.rule_event(ev);
        }
    }
}
