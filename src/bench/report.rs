//! The bench report: what a trial measured, the ceilings, the searches and the baseline, as
//! JSON (`--json`) and as the table printed at the end. Both are made from the same structs, so
//! the table cannot say something the JSON does not.
//!
//! This file is the data (the JSON's shape) and the verdict on a trial ([`judge`]); `report/table.rs`
//! prints the same structs.

mod table;

use serde::{Deserialize, Serialize};

pub use table::{table, trial_table, STAGE_NOTES};

use crate::procfs::Machine;
use crate::timing::Summary;

/// How the footage is played.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// At the footage's frame rate, like cameras (display sinks sync to the clock).
    Realtime,
    /// As fast as the machine decodes (nothing syncs): throughput, not real time.
    Max,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Realtime => "realtime",
            Mode::Max => "max",
        }
    }
}

/// The replayed file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Footage {
    pub path: String,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration_s: f64,
}

/// The detector as configured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub manifest: String,
    pub input_width: u32,
    pub input_height: u32,
    pub sessions: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub detect_fps: f64,
}

/// One row of the stage table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageRow {
    pub stage: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// Frames of one camera stream over the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamRow {
    pub site: String,
    /// Frames out of the decoder.
    pub decoded: u64,
    /// Frames of the camera's own video delivered to the wall at the source rate
    /// (`simpang_source_frames_total`: the browser wall plays them without decoding; burned-in
    /// outputs take decoded display frames at their own rate, only while watched).
    pub display_frames: u64,
    /// Burned-in display frames thrown away by the pipeline
    /// (`simpang_display_frames_dropped_total`).
    pub display_dropped: u64,
    /// Display frames due at the source rate over the window that never came (a paced file
    /// that falls behind is late, not dropped: this is how its shortfall shows).
    pub display_missed: u64,
    /// Frames delivered to analytics (at the detect rate).
    pub analytics_frames: u64,
    /// Analytics frames replaced by a newer one before the detector took them.
    pub analytics_dropped: u64,
    /// Analytics frames through detection, tracking and rules.
    pub processed: u64,
    pub decoded_fps: f64,
    pub display_fps: f64,
    pub analytics_fps: f64,
}

/// Wall work done in the window (it works only while watched).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct WallActivity {
    pub frames_rendered: u64,
    pub jpeg_frames: u64,
    pub mosaic_frames: u64,
}

/// Incident-stage messages in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Messages {
    /// Incident messages (new / update / end) committed to the outbox.
    pub incident_messages: u64,
    /// Incident messages the broker acknowledged.
    pub published_incidents: u64,
    /// Counts reports the broker acknowledged.
    pub published_counts: u64,
}

/// CPU of a group of threads (by thread name) over the window; 100 = one core.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ThreadGroup {
    pub group: String,
    pub threads: usize,
    pub cpu_percent: f64,
}

/// The in-process stand-ins for wall viewers, run by the bench harness (not the measured
/// process), and what they received in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Consumers {
    pub mjpeg_url: String,
    pub mjpeg_frames: u64,
    pub mjpeg_fps: f64,
    pub rtsp_url: String,
    pub rtsp_frames: u64,
    pub rtsp_fps: f64,
    /// `--substreams`: the browser page's passthrough tiles (one WebSocket per camera) and the
    /// MP4 fragments they received.
    #[serde(default)]
    pub live_url: String,
    #[serde(default)]
    pub live_viewers: usize,
    #[serde(default)]
    pub live_frames: u64,
    #[serde(default)]
    pub live_fps: f64,
}

/// Everything one run of N streams measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrialResult {
    pub streams: usize,
    pub mode: Option<Mode>,
    pub window_s: f64,
    pub warmup_s: f64,
    pub source_fps: f64,
    pub detect_fps: f64,
    pub stages: Vec<StageRow>,
    pub per_stream: Vec<StreamRow>,
    pub total: StreamRow,
    /// Process CPU over the window (user + system, all threads); 100 = one core.
    pub cpu_percent: f64,
    pub cpu_seconds: f64,
    /// Busy CPU of the whole machine over the window (every process; 100 = one core). What
    /// exceeds `cpu_percent` and the harness's is other work that competed with the run.
    pub machine_cpu_percent: f64,
    /// Peak resident set size of the process over its life (VmHWM).
    pub peak_rss_mb: f64,
    /// Media seconds played per wall second, per stream (1.0 = real time).
    pub realtime_factor: f64,
    pub holds: bool,
    pub failures: Vec<String>,
    pub wall: WallActivity,
    pub messages: Messages,
    pub threads: Vec<ThreadGroup>,
    /// Filled by the harness.
    pub consumers: Option<Consumers>,
    /// CPU of the harness process (consumers, progress) over the window; not in `cpu_percent`.
    pub harness_cpu_percent: Option<f64>,
    /// `--browsers N`: the real browsers on the wall page (filled by the harness).
    #[serde(default)]
    pub browsers: Option<BrowserViewers>,
    pub load_end: [f64; 3],
}

/// `--browsers N`: headless Chromium processes on the trial's wall page, what they cost the
/// simpang process and themselves, whether they played, and the glass-to-glass delay.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BrowserViewers {
    pub browsers: usize,
    /// The browsers' niceness (`--browser-nice`).
    #[serde(default)]
    pub nice: u8,
    pub program: String,
    pub url: String,
    /// The simpang process's CPU (100 = one core), sampled by the harness from /proc, over a
    /// phase of the same length as the window before the browsers started (the other viewers
    /// attached, the clock camera playing).
    pub simpang_cpu_percent_without: f64,
    pub without_seconds: f64,
    /// Busy CPU of other processes (not simpang, not the harness) in that phase.
    pub others_cpu_percent_without: f64,
    /// The same process's CPU over the measured window with the N browsers playing.
    pub simpang_cpu_percent_with: f64,
    /// (with - without) / N.
    pub per_viewer_cpu_percent: f64,
    /// All browsers' process trees together over the window (they stand for the operators'
    /// machines: not simpang's cost).
    pub browsers_cpu_percent: f64,
    pub per_browser: Vec<BrowserPlay>,
    /// Every tile of every browser presented frames and advanced its video in the window.
    pub all_played: bool,
    pub glass_to_glass: Option<GlassToGlass>,
}

/// What one browser's page showed over the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BrowserPlay {
    pub index: usize,
    pub tiles: usize,
    /// Tiles playing passthrough video whose `currentTime` advanced and that presented frames.
    pub tiles_playing: usize,
    pub presented_frames: u64,
    /// Frames presented per second by the slowest tile.
    pub min_tile_fps: f64,
    pub cpu_percent: f64,
    /// Tiles not playing, and why (mode, frames, time).
    pub problems: Vec<String>,
}

/// Camera capture (the clock camera's pixel stamp) to the frame presented in the page.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct GlassToGlass {
    pub site: String,
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
    /// Frames the script saw presented on the clock tile in the window (all browsers).
    pub frames_seen: u64,
    /// Frames the script saw whose stamp failed its check (counted, not used).
    pub unreadable: u64,
    pub method: String,
}

impl TrialResult {
    /// CPU of other processes than the trial, the harness and its browsers during the window.
    pub fn others_cpu_percent(&self) -> f64 {
        (self.machine_cpu_percent
            - self.cpu_percent
            - self.harness_cpu_percent.unwrap_or(0.0)
            - self
                .browsers
                .as_ref()
                .map(|b| b.browsers_cpu_percent)
                .unwrap_or(0.0))
        .max(0.0)
    }

    pub fn stage(&self, name: &str) -> Option<&Summary> {
        self.stages
            .iter()
            .find(|s| s.stage == name)
            .map(|s| &s.summary)
    }
}

/// Whether streams held real time, and if not why: every stream must show at least 99% of its
/// display frames at the source rate (drops and shortfall together under 1%) and process
/// analytics frames at the detect rate (one frame or 1% of counting slack at the window's
/// edges).
pub fn judge(
    rows: &[StreamRow],
    mode: Mode,
    source_fps: f64,
    detect_fps: f64,
    window_s: f64,
) -> Vec<String> {
    let mut failures = Vec::new();
    let want_display = source_fps * window_s;
    let want_analytics = detect_fps.min(source_fps) * window_s;
    for r in rows {
        match mode {
            Mode::Realtime => {
                let lost = r.display_dropped + r.display_missed;
                if lost as f64 >= 0.01 * want_display {
                    failures.push(format!(
                        "{}: display {:.2} fps, {} of {:.0} frames dropped or late (>= 1%)",
                        r.site, r.display_fps, lost, want_display
                    ));
                }
            }
            Mode::Max => {
                if r.decoded_fps < 0.99 * source_fps {
                    failures.push(format!(
                        "{}: decodes {:.2} fps, under the source's {:.2}",
                        r.site, r.decoded_fps, source_fps
                    ));
                }
            }
        }
        let slack = (0.01 * want_analytics).max(1.0);
        if (r.processed as f64) < want_analytics - slack {
            failures.push(format!(
                "{}: analytics {:.2} fps, under the detect rate {:.2} ({} of {:.0} frames, {} dropped)",
                r.site, r.analytics_fps, detect_fps, r.processed, want_analytics, r.analytics_dropped
            ));
        }
    }
    failures
}

/// The same-run ceilings of this machine.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DecodeCeiling {
    /// Decode pipelines run side by side (one per core).
    pub pipelines: usize,
    pub frames: u64,
    pub seconds: f64,
    /// Frames per second, all pipelines together.
    pub fps: f64,
    pub cpu_percent: f64,
    /// CPU milliseconds per frame.
    pub cpu_ms_per_frame: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct InferenceCeiling {
    pub sessions: usize,
    pub threads: usize,
    pub max_batch: usize,
    pub frames: u64,
    pub seconds: f64,
    /// Frames per second through the pool, all sessions busy.
    pub fps: f64,
    pub cpu_percent: f64,
    pub cpu_ms_per_frame: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Ceilings {
    pub decode: DecodeCeiling,
    pub inference: InferenceCeiling,
    /// Streams the decoders alone could keep up with.
    pub decode_limit_streams: f64,
    /// Streams the detector alone could serve at the detect rate.
    pub inference_limit_streams: f64,
    /// Streams this machine can serve with decode and inference sharing it and nothing else:
    /// `1 / (source_fps / decode_fps + detect_fps / inference_fps)`.
    pub limit_streams: f64,
}

impl Ceilings {
    pub fn new(
        decode: DecodeCeiling,
        inference: InferenceCeiling,
        source_fps: f64,
        detect_fps: f64,
    ) -> Ceilings {
        let per = |fps: f64, need: f64| if need > 0.0 { fps / need } else { 0.0 };
        let d = per(decode.fps, source_fps);
        let i = per(inference.fps, detect_fps.min(source_fps));
        let limit = if d > 0.0 && i > 0.0 {
            1.0 / (1.0 / d + 1.0 / i)
        } else {
            0.0
        };
        Ceilings {
            decode,
            inference,
            decode_limit_streams: d,
            inference_limit_streams: i,
            limit_streams: limit,
        }
    }
}

/// One step of a search for the largest N that holds real time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchStep {
    pub streams: usize,
    pub holds: bool,
    pub failures: Vec<String>,
    pub cpu_percent: f64,
    /// Busy CPU of other processes during the run (see [`TrialResult::machine_cpu_percent`]).
    #[serde(default)]
    pub others_cpu_percent: f64,
    pub peak_rss_mb: f64,
    pub min_display_fps: f64,
    pub min_analytics_fps: f64,
}

impl SearchStep {
    pub fn of(t: &TrialResult) -> SearchStep {
        let min = |f: fn(&StreamRow) -> f64| {
            t.per_stream
                .iter()
                .map(f)
                .fold(f64::INFINITY, f64::min)
                .min(1e9)
        };
        SearchStep {
            streams: t.streams,
            holds: t.holds,
            failures: t.failures.clone(),
            cpu_percent: t.cpu_percent,
            others_cpu_percent: t.others_cpu_percent(),
            peak_rss_mb: t.peak_rss_mb,
            min_display_fps: if t.per_stream.is_empty() {
                0.0
            } else {
                min(|r| r.display_fps)
            },
            min_analytics_fps: if t.per_stream.is_empty() {
                0.0
            } else {
                min(|r| r.analytics_fps)
            },
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Search {
    pub steps: Vec<SearchStep>,
    /// The largest N that held (0 if even one stream did not).
    pub sustained: usize,
    /// True when the search stopped at `--max-streams` while still holding.
    pub capped: bool,
}

/// One stream of the Python baseline over its window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BaselineStream {
    pub frames: u64,
    pub detections: u64,
    pub fps: f64,
    pub detect_fps: f64,
    /// How far behind camera pace the loop was at the end of the window, seconds.
    pub lag_s: f64,
}

/// What one run of the Python baseline printed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BaselineRun {
    pub setup: String,
    pub streams: usize,
    pub window_s: f64,
    pub source_fps: f64,
    pub detect_fps: f64,
    pub per_stream: Vec<BaselineStream>,
    pub cpu_percent: f64,
    /// Busy CPU of other processes over about the window (read by the harness between the
    /// baseline's first progress line and its result).
    #[serde(default)]
    pub others_cpu_percent: f64,
    pub peak_rss_mb: f64,
    pub inference_ms_p50: Option<f64>,
    /// Set by the harness with [`judge`].
    #[serde(default)]
    pub holds: bool,
    #[serde(default)]
    pub failures: Vec<String>,
}

impl BaselineRun {
    /// The streams as rows [`judge`] reads (frames read at camera pace are its display).
    pub fn rows(&self) -> Vec<StreamRow> {
        let want = (self.source_fps * self.window_s).round();
        self.per_stream
            .iter()
            .enumerate()
            .map(|(i, s)| StreamRow {
                site: format!("py-{i}"),
                decoded: s.frames,
                display_frames: s.frames,
                display_missed: (want - s.frames as f64).max(0.0) as u64,
                analytics_frames: s.detections,
                processed: s.detections,
                decoded_fps: s.fps,
                display_fps: s.fps,
                analytics_fps: s.detect_fps,
                ..StreamRow::default()
            })
            .collect()
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BaselineSetup {
    /// `per_stream` (a) or `shared` (b).
    pub setup: String,
    pub description: String,
    pub runs: Vec<BaselineRun>,
    pub sustained: usize,
    pub capped: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub python: String,
    pub setups: Vec<BaselineSetup>,
    /// The better of the two setups' sustained streams.
    pub best_sustained: usize,
    /// simpang's sustained streams / `best_sustained` (None when either is unknown or zero).
    pub ratio: Option<f64>,
    /// What simpang's figure in the ratio is: the searched maximum, or N of a run that held.
    pub simpang_basis: String,
}

/// The whole report (`--json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    pub started_at: String,
    pub machine: Machine,
    pub load_start: [f64; 3],
    pub load_end: [f64; 3],
    pub model: ModelInfo,
    pub footage: Footage,
    pub mode: Option<Mode>,
    pub seconds: f64,
    pub warmup_s: f64,
    pub wall_consumers: String,
    /// True when every stream had the bench's low-threshold crowd zone (see `bench::setup`).
    pub bench_zone: bool,
    pub ceilings: Ceilings,
    /// The run of `--streams N`; with `--find-max`, the largest run that held (or the last one).
    pub run: Option<TrialResult>,
    pub find_max: Option<Search>,
    /// Every run of the search, in the order made.
    pub find_max_runs: Vec<TrialResult>,
    /// Streams known to hold real time: the search's result, or N of a run that held.
    pub sustained: Option<usize>,
    /// `sustained / ceilings.limit_streams`.
    pub efficiency: Option<f64>,
    pub baseline: Option<Baseline>,
}

pub const SCHEMA: &str = "simpang.bench/1";

#[cfg(test)]
mod tests {
    use super::*;

    fn row(site: &str, display: u64, processed: u64, window: f64) -> StreamRow {
        StreamRow {
            site: site.into(),
            decoded: display,
            display_frames: display,
            display_missed: (25.0 * window - display as f64).max(0.0) as u64,
            analytics_frames: processed,
            processed,
            display_fps: display as f64 / window,
            analytics_fps: processed as f64 / window,
            decoded_fps: display as f64 / window,
            ..StreamRow::default()
        }
    }

    #[test]
    fn judge_cases() {
        // (display frames, processed) in 10 s at 25 fps / 5 fps; holds?
        let cases = [
            ((250, 50), true),
            ((248, 49), true), // 2 frames short (< 1%), one analytics frame at the edge
            ((247, 50), false), // 3 frames = 1.2%
            ((250, 48), false), // two analytics frames short
            ((0, 0), false),
        ];
        for ((d, p), holds) in cases {
            let f = judge(&[row("a", d, p, 10.0)], Mode::Realtime, 25.0, 5.0, 10.0);
            assert_eq!(f.is_empty(), holds, "{d} {p}: {f:?}");
        }
        let mut r = row("a", 250, 50, 10.0);
        r.display_dropped = 3;
        assert_eq!(
            judge(&[r], Mode::Realtime, 25.0, 5.0, 10.0).len(),
            1,
            "counted drops fail like missing frames"
        );
        let mut fast = row("a", 600, 50, 10.0);
        fast.decoded_fps = 60.0;
        assert!(judge(&[fast.clone()], Mode::Max, 25.0, 5.0, 10.0).is_empty());
        fast.decoded_fps = 20.0;
        assert!(!judge(&[fast], Mode::Max, 25.0, 5.0, 10.0).is_empty());
    }

    #[test]
    fn limit_combines_both_ceilings() {
        let d = DecodeCeiling {
            fps: 500.0,
            ..Default::default()
        };
        let i = InferenceCeiling {
            fps: 50.0,
            ..Default::default()
        };
        let c = Ceilings::new(d, i, 25.0, 5.0);
        assert!((c.decode_limit_streams - 20.0).abs() < 1e-9);
        assert!((c.inference_limit_streams - 10.0).abs() < 1e-9);
        // each stream needs 1/20 + 1/10 of the machine
        assert!((c.limit_streams - 1.0 / 0.15).abs() < 1e-9);
        let none = Ceilings::new(
            DecodeCeiling::default(),
            InferenceCeiling::default(),
            25.0,
            5.0,
        );
        assert_eq!(none.limit_streams, 0.0);
    }

    #[test]
    fn baseline_rows_count_missing_frames() {
        let run = BaselineRun {
            streams: 1,
            window_s: 10.0,
            source_fps: 25.0,
            detect_fps: 5.0,
            per_stream: vec![BaselineStream {
                frames: 200,
                detections: 40,
                fps: 20.0,
                detect_fps: 4.0,
                lag_s: 2.0,
            }],
            ..Default::default()
        };
        let rows = run.rows();
        assert_eq!(rows[0].display_missed, 50);
        assert_eq!(judge(&rows, Mode::Realtime, 25.0, 5.0, 10.0).len(), 2);
    }
}
