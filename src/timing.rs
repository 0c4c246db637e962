//! Raw per-event stage timings, for `simpang bench` (exact percentiles).
//!
//! The Prometheus histograms (`simpang_stage_latency_seconds`, ...) have coarse buckets: fine for
//! dashboards, useless for a p99. The bench installs a [`Recorder`] once per process; every
//! stage then also pushes its raw durations here. Nothing is installed in `simpang run`, and
//! then a recording point costs one atomic load ([`OnceLock::get`]) and records nothing; the
//! decoder and scaler probes that only the bench needs are not even added (see [`enabled`]).

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

/// A stage whose durations are recorded. The names are the bench report's row names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Decoder chain: a compressed frame in to the next picture out (per decoded frame).
    Decode,
    /// Display branch: colour conversion and scaling to the tile size (per display frame).
    ScaleDisplay,
    /// Analytics branch: scaling to the model's input size, BGR (per analytics frame).
    ScaleAnalytics,
    /// Detector pre-processing (per inference call).
    Preprocess,
    /// ONNX Runtime inference (per inference call).
    Inference,
    /// Detector decode + NMS (per inference call).
    Postprocess,
    /// Tracker of one camera (per analytics frame).
    Tracking,
    /// Zone and line rules, intervals and incident decisions of one camera, after the tracker
    /// (per analytics frame).
    Rules,
    /// From an analytics frame's capture to its results being published (per analytics frame).
    ResultAge,
    /// Wall: copy + overlay drawing of one tile.
    Overlay,
    /// Wall: JPEG of one tile (MJPEG viewers).
    Jpeg,
    /// Wall: x264 of one frame of a per-site annotated RTSP stream.
    X264Site,
    /// Wall: x264 of one frame of the mosaic (`/annotated/wall`).
    X264Mosaic,
    /// Wall: composition of one mosaic frame.
    Mosaic,
    /// A rule event reaching the incident service to the broker's PUBACK of its message.
    PublishIncident,
    /// The same for a counts report.
    PublishCounts,
}

impl Stage {
    pub const ALL: [Stage; 16] = [
        Stage::Decode,
        Stage::ScaleDisplay,
        Stage::ScaleAnalytics,
        Stage::Preprocess,
        Stage::Inference,
        Stage::Postprocess,
        Stage::Tracking,
        Stage::Rules,
        Stage::ResultAge,
        Stage::Overlay,
        Stage::Jpeg,
        Stage::X264Site,
        Stage::X264Mosaic,
        Stage::Mosaic,
        Stage::PublishIncident,
        Stage::PublishCounts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::ScaleDisplay => "scale_display",
            Stage::ScaleAnalytics => "scale_analytics",
            Stage::Preprocess => "preprocess",
            Stage::Inference => "inference",
            Stage::Postprocess => "postprocess",
            Stage::Tracking => "tracking",
            Stage::Rules => "rules",
            Stage::ResultAge => "result_age",
            Stage::Overlay => "overlay",
            Stage::Jpeg => "jpeg",
            Stage::X264Site => "x264_site",
            Stage::X264Mosaic => "x264_mosaic",
            Stage::Mosaic => "mosaic",
            Stage::PublishIncident => "publish_incident",
            Stage::PublishCounts => "publish_counts",
        }
    }

    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Samples kept per stage; beyond it samples are counted but not stored (a 10-minute run of
/// 16 streams decodes 240 000 frames, well under it).
const CAP: usize = 2_000_000;

/// Collected durations, seconds as f32 (microsecond resolution up to minutes is plenty).
pub struct Recorder {
    stages: [Mutex<StageSamples>; Stage::ALL.len()],
    /// Read by a unit of work whose samples and counters must fall on one side of a window's
    /// edge ([`unit`]); written by the bench while it cuts the window ([`Recorder::cut`]).
    cut: RwLock<()>,
}

#[derive(Default)]
struct StageSamples {
    values: Vec<f32>,
    overflow: u64,
}

/// What [`Recorder::take`] returns for one stage.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Durations in seconds, in arrival order.
    pub values: Vec<f32>,
    /// Samples not stored because the stage was at its cap.
    pub overflow: u64,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// Installs the process-wide recorder (idempotent) and returns it.
pub fn install() -> &'static Recorder {
    RECORDER.get_or_init(Recorder::new)
}

/// The recorder, if the bench installed one.
pub fn recorder() -> Option<&'static Recorder> {
    RECORDER.get()
}

/// True when a recorder is installed: stages that need extra work to measure (pad probes) only
/// do it then.
#[inline]
pub fn enabled() -> bool {
    RECORDER.get().is_some()
}

/// Held by a frame-loop worker from recording a batch's inference to counting its frames as
/// processed: the bench's window edges ([`Recorder::cut`]) then never fall between the two, and
/// the report's inference count equals its processed count. `None` (no cost) without a recorder.
#[inline]
pub fn unit() -> Option<RwLockReadGuard<'static, ()>> {
    RECORDER.get().map(Recorder::unit)
}

/// Records one duration of `stage` (nothing without a recorder).
#[inline]
pub fn record(stage: Stage, d: Duration) {
    if let Some(r) = RECORDER.get() {
        r.push(stage, d.as_secs_f64());
    }
}

/// As [`record`], with the duration in seconds.
#[inline]
pub fn record_secs(stage: Stage, seconds: f64) {
    if let Some(r) = RECORDER.get() {
        r.push(stage, seconds);
    }
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            stages: std::array::from_fn(|_| Mutex::new(StageSamples::default())),
            cut: RwLock::new(()),
        }
    }

    /// See [`unit`].
    pub fn unit(&self) -> RwLockReadGuard<'_, ()> {
        self.cut.read()
    }

    /// Runs `f` (clearing or taking the samples, reading the counters) while no [`unit`] is
    /// under way, so both see the same set of finished units.
    pub fn cut<R>(&self, f: impl FnOnce() -> R) -> R {
        let _edge = self.cut.write();
        f()
    }

    pub fn push(&self, stage: Stage, seconds: f64) {
        let mut s = self.stages[stage.index()].lock();
        if s.values.len() < CAP {
            s.values.push(seconds as f32);
        } else {
            s.overflow += 1;
        }
    }

    /// Forgets everything recorded so far (the start of a measurement window).
    pub fn clear(&self) {
        for s in &self.stages {
            let mut s = s.lock();
            s.values.clear();
            s.overflow = 0;
        }
    }

    /// Takes the samples of every stage, leaving the recorder empty.
    pub fn take(&self) -> Vec<(Stage, Samples)> {
        Stage::ALL
            .into_iter()
            .map(|st| {
                let mut s = self.stages[st.index()].lock();
                let out = Samples {
                    values: std::mem::take(&mut s.values),
                    overflow: s.overflow,
                };
                s.overflow = 0;
                (st, out)
            })
            .collect()
    }
}

/// p50/p95/p99 and friends of a set of durations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    /// Milliseconds; `None` without samples.
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// Nearest-rank percentile (`q` in 0..=1) of sorted values.
pub fn percentile(sorted: &[f32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted
        .get(rank.min(sorted.len()) - 1)
        .map(|v| f64::from(*v))
}

impl Summary {
    /// Summarises durations in seconds (sorted in place).
    pub fn of_seconds(values: &mut [f32], overflow: u64) -> Summary {
        values.sort_unstable_by(|a, b| a.total_cmp(b));
        let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
        let mean = (!values.is_empty())
            .then(|| values.iter().map(|v| f64::from(*v)).sum::<f64>() / values.len() as f64);
        Summary {
            count: values.len() as u64 + overflow,
            mean_ms: ms(mean),
            p50_ms: ms(percentile(values, 0.50)),
            p95_ms: ms(percentile(values, 0.95)),
            p99_ms: ms(percentile(values, 0.99)),
            max_ms: ms(values.last().map(|v| f64::from(*v))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let cases: [(&[f32], f64, Option<f64>); 6] = [
            (&[], 0.5, None),
            (&[3.0], 0.99, Some(3.0)),
            (&[1.0, 2.0, 3.0, 4.0], 0.5, Some(2.0)),
            (&[1.0, 2.0, 3.0, 4.0], 0.75, Some(3.0)),
            (&[1.0, 2.0, 3.0, 4.0], 1.0, Some(4.0)),
            (&[1.0, 2.0, 3.0, 4.0], 0.0, Some(1.0)),
        ];
        for (v, q, want) in cases {
            assert_eq!(percentile(v, q), want, "{v:?} q={q}");
        }
        let mut hundred: Vec<f32> = (1..=100).rev().map(|v| v as f32 / 1000.0).collect();
        let s = Summary::of_seconds(&mut hundred, 5);
        assert_eq!(s.count, 105);
        assert!((s.p50_ms.unwrap() - 50.0).abs() < 1e-3);
        assert!((s.p95_ms.unwrap() - 95.0).abs() < 1e-3);
        assert!((s.p99_ms.unwrap() - 99.0).abs() < 1e-3);
        assert!((s.max_ms.unwrap() - 100.0).abs() < 1e-3);
        assert!((s.mean_ms.unwrap() - 50.5).abs() < 1e-3);
        assert_eq!(Summary::of_seconds(&mut [], 0), Summary::default());
    }

    #[test]
    fn stage_names_round_trip() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_name(s.name()), Some(s));
            assert_eq!(Stage::ALL[s.index()], s);
        }
        assert_eq!(Stage::from_name("nope"), None);
    }

    #[test]
    fn recorder_collects_clears_and_takes() {
        // The process-wide recorder is shared by the tests of this binary: use a private one.
        let r = Recorder::new();
        r.push(Stage::Decode, 0.004);
        r.clear();
        r.push(Stage::Decode, 0.005);
        r.push(Stage::Jpeg, 0.001);
        let taken = r.take();
        assert_eq!(taken.len(), Stage::ALL.len());
        let get = |s: Stage| &taken.iter().find(|(st, _)| *st == s).unwrap().1;
        assert_eq!(get(Stage::Decode).values, vec![0.005f32]);
        assert_eq!(get(Stage::Jpeg).values.len(), 1);
        assert!(get(Stage::Inference).values.is_empty());
        assert!(r.take().iter().all(|(_, s)| s.values.is_empty()));
    }

    #[test]
    fn a_cut_waits_for_the_unit_under_way() {
        // A worker records an inference, then (later) counts its frame: a cut must see both or
        // neither.
        let r = std::sync::Arc::new(Recorder::new());
        let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let worker = {
            let (r, counted) = (r.clone(), counted.clone());
            std::thread::spawn(move || {
                let _unit = r.unit();
                r.push(Stage::Inference, 0.01);
                held_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100));
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
        };
        held_rx.recv().unwrap();
        let (samples, count) = r.cut(|| {
            let taken = r.take();
            let n = taken
                .iter()
                .find(|(st, _)| *st == Stage::Inference)
                .map_or(0, |(_, s)| s.values.len());
            (n as u64, counted.load(std::sync::atomic::Ordering::SeqCst))
        });
        worker.join().unwrap();
        assert_eq!((samples, count), (1, 1));
    }
}
