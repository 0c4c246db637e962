//! Ingest: one GStreamer pipeline per camera, built from a template in `pipelines/`, delivering
//! the camera's own compressed video, before decoding, into the site's encoded stream (the
//! browser wall plays it: [`tap`]), analytics frames (detect rate, model size, BGR) into the
//! [`AnalyticsQueue`], and display frames (tile size, I420) into the site's display slot only
//! while a burned-in output asks for them, at its rate. A supervisor thread per camera rebuilds
//! the pipeline with backoff when the source errors or goes silent, so one camera failing never
//! touches another.
//!
//! [`AnalyticsQueue`]: crate::hub::AnalyticsQueue

pub mod camera;
pub mod decoder;
pub mod frames;
pub mod h264;
pub mod pipeline;
pub mod reader;
pub mod samples;
pub mod substream;
pub mod tap;
mod timing_probes;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Config, Site};
use crate::model::SiteId;
pub use camera::{spawn_camera, CameraHandle};
pub use pipeline::{Source, SourceKind, Templates};
pub use substream::StreamRole;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("pipeline template {file}: {message}")]
    Template { file: PathBuf, message: String },
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("camera {site}: cannot build pipeline: {message}")]
    Build { site: SiteId, message: String },
    #[error("GStreamer element {element:?} (named in {template}) is not installed")]
    MissingElement { template: String, element: String },
    #[error("sample server: {0}")]
    Samples(String),
    #[error("cannot start camera thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Initialises GStreamer once per process.
pub fn init_gstreamer() -> Result<(), IngestError> {
    gstreamer::init().map_err(|e| IngestError::Init(e.to_string()))
}

/// Pushes a copy of `buf` into the appsrc of a live RTSP media, stamped with that media
/// pipeline's running time. Returns false once the appsrc refuses data (its media was shut
/// down), so the caller forgets it; true when pushed, or skipped because the pipeline is not
/// PLAYING.
///
/// Skipping until PLAYING is what keeps a new client's stream alive: while a pipeline goes to
/// PLAYING, its appsrc gets the clock before its base time, and the running time read in that
/// window is the clock's absolute time (hours, since boot). The RTP sender syncs to the clock,
/// so one buffer stamped like that held a client's stream for hours: it connected and got no
/// picture (about one connect in twenty in tests/wall_rtsp.rs). While PAUSED (between a client's
/// DESCRIBE and PLAY) a stamp would also run ahead of the time the pipeline resumes at.
pub fn push_live(src: &gstreamer_app::AppSrc, buf: &gstreamer::Buffer) -> bool {
    use gstreamer::prelude::*;
    if src.current_state() != gstreamer::State::Playing {
        return true;
    }
    let Some(now) = src.current_running_time() else {
        return true;
    };
    let mut b = buf.clone();
    {
        let b = b.make_mut();
        b.set_pts(now);
        b.set_dts(now);
    }
    src.push_buffer(b).is_ok()
}

/// How the display branch paces a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Live source (RTSP, ...): the network paces it; a slow display path drops frames.
    Live,
    /// File at its own frame rate, like a camera: the display sink syncs to the clock.
    Realtime,
    /// File as fast as it decodes (bench ceilings): nothing syncs, nothing drops.
    AsFastAsPossible,
    /// `simpang replay`: a file as fast as the detector takes its frames, none dropped, each
    /// stamped with its media time ([`CameraSettings::media_base`] + its timestamp); the file
    /// plays once, and its end ends the camera.
    Replay,
}

/// What a camera's supervisor needs, cloned out of the config (the camera never reads config
/// again, so a reload cannot change a running pipeline under it). The settings; what changes
/// while it runs (pipeline, backoff, counters, online state) is the supervisor's own, and what
/// others may read of it is the site's [`SiteHub`](crate::hub::SiteHub) status.
#[derive(Clone, Debug)]
pub struct CameraSettings {
    pub site: SiteId,
    pub source: Source,
    pub pacing: Pacing,
    /// The camera's substream for detection (`detect_stream`) and its pacing: when set, the
    /// camera runs two pipelines, `source` for the wall (passthrough, decoded only for
    /// burned-in outputs) and this one for analytics.
    pub detect: Option<(Source, Pacing)>,
    /// Loop a file source at its end.
    pub loop_file: bool,
    /// `ingest.decoder_threads` (0: by pacing, [`decoder::threads_for`]).
    pub decoder_threads: u32,
    pub analytics_width: u32,
    pub analytics_height: u32,
    pub detect_fps: f64,
    /// The display frame fits inside this box, keeping the source's aspect ratio.
    pub tile_width: u32,
    pub tile_height: u32,
    pub rtsp_latency_ms: u32,
    pub silence_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// What media time 0 is on the clock, for [`Pacing::Replay`].
    pub media_base: chrono::DateTime<chrono::Utc>,
    /// A recording played once (`simpang replay`): its end, or a failure, ends the camera
    /// instead of a reconnect.
    pub once: bool,
}

impl CameraSettings {
    /// Settings for every site of `cfg`, in config order, for a model of the given input size.
    pub fn from_config(cfg: &Config, analytics_size: (u32, u32)) -> Vec<CameraSettings> {
        cfg.sites
            .iter()
            .map(|site| CameraSettings::for_site(cfg, site, analytics_size))
            .collect()
    }

    /// Settings for the camera of `site` under `cfg`'s ingest, detect and wall settings (the
    /// site need not be one of `cfg.sites`: a site started while running).
    pub fn for_site(cfg: &Config, site: &Site, analytics_size: (u32, u32)) -> CameraSettings {
        let source_of = |stream: &str| {
            let mut source = Source::parse(stream);
            if source.kind == SourceKind::File {
                source.target = cfg
                    .resolve(std::path::Path::new(&source.target))
                    .display()
                    .to_string();
            }
            let pacing = match (source.is_live(), cfg.ingest.files_realtime) {
                (true, _) => Pacing::Live,
                (false, true) => Pacing::Realtime,
                (false, false) => Pacing::AsFastAsPossible,
            };
            (source, pacing)
        };
        let (source, pacing) = source_of(&site.stream);
        CameraSettings {
            site: SiteId::new(&site.id),
            source,
            pacing,
            detect: site.detect_stream.as_deref().map(source_of),
            loop_file: cfg.ingest.files_loop,
            decoder_threads: cfg.ingest.decoder_threads,
            analytics_width: analytics_size.0,
            analytics_height: analytics_size.1,
            detect_fps: cfg.detect.fps,
            tile_width: cfg.wall.tile_width,
            tile_height: cfg.wall.tile_height,
            rtsp_latency_ms: cfg.ingest.rtsp_latency_ms,
            silence_timeout: Duration::from_secs_f64(cfg.ingest.silence_timeout_s),
            backoff_initial: Duration::from_secs_f64(cfg.ingest.backoff_initial_s),
            backoff_max: Duration::from_secs_f64(cfg.ingest.backoff_max_s),
            media_base: chrono::DateTime::UNIX_EPOCH,
            once: false,
        }
    }

    /// The settings of a replayed file: [`Pacing::Replay`], played once, media time 0 at
    /// `media_base`.
    pub fn replay(mut self, media_base: chrono::DateTime<chrono::Utc>) -> Self {
        self.pacing = Pacing::Replay;
        self.media_base = media_base;
        self.once = true;
        self.loop_file = false;
        // a recording is one stream: analytics decodes it
        self.detect = None;
        self
    }

    /// The settings of a recording played once at its own rate on the live clock, exactly as
    /// `simpang run` plays a file with `files_realtime` (`simpang replay --realtime`).
    pub fn realtime_once(mut self) -> Self {
        self.pacing = Pacing::Realtime;
        self.once = true;
        self.loop_file = false;
        self.detect = None;
        self
    }

    /// The template parameters of this camera.
    pub fn template_params(&self) -> std::collections::BTreeMap<&'static str, String> {
        // A file is paced once, at `pace`, before the branches: the passthrough, analytics and
        // display all follow it. Nothing drops frames of a file played as fast as it decodes.
        // A replay runs as fast as the detector takes frames: the display (nobody's concern
        // there) must never hold the decoder.
        let (pace_sync, decode_leaky, display_leaky, display_drop) = match self.pacing {
            Pacing::Live => ("false", "downstream", "downstream", "true"),
            Pacing::Realtime => ("true", "no", "downstream", "true"),
            Pacing::AsFastAsPossible => ("false", "no", "no", "false"),
            Pacing::Replay => ("false", "no", "downstream", "true"),
        };
        // analytics frames: the newest wins, except in a replay, which takes every one
        let (a_leaky, a_drop) = match self.pacing {
            Pacing::Replay => ("no", "false"),
            _ => ("downstream", "true"),
        };
        [
            ("uri", self.source.target.replace('"', "%22")),
            ("location", self.source.target.replace('"', "\\\"")),
            ("latency_ms", self.rtsp_latency_ms.to_string()),
            ("analytics_width", self.analytics_width.to_string()),
            ("analytics_height", self.analytics_height.to_string()),
            ("pace_sync", pace_sync.to_string()),
            ("decode_leaky", decode_leaky.to_string()),
            ("display_leaky", display_leaky.to_string()),
            ("display_drop", display_drop.to_string()),
            ("analytics_leaky", a_leaky.to_string()),
            ("analytics_drop", a_drop.to_string()),
            // Templates written before the display was paced upstream may still name it.
            ("display_sync", "false".to_string()),
        ]
        .into_iter()
        .collect()
    }
}

/// The display size for a `src_w` x `src_h` picture (pixel aspect `par`) in a tile: as large as
/// fits, aspect kept, never upscaled, even dimensions (I420 needs them).
pub fn fit_display(
    src_w: u32,
    src_h: u32,
    par: (i32, i32),
    tile_w: u32,
    tile_h: u32,
) -> (u32, u32) {
    let par = if par.0 > 0 && par.1 > 0 {
        par.0 as f64 / par.1 as f64
    } else {
        1.0
    };
    let w = (src_w.max(2) as f64) * par;
    let h = src_h.max(2) as f64;
    let scale = (tile_w as f64 / w).min(tile_h as f64 / h).min(1.0);
    let even = |v: f64| ((v.round() as u32) & !1).max(2);
    (even(w * scale), even(h * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cases() {
        let cases = [
            ((1920, 1080, (1, 1)), (640, 360)),
            ((768, 576, (1, 1)), (480, 360)),
            ((640, 360, (1, 1)), (640, 360)),
            ((320, 240, (1, 1)), (320, 240)),   // never upscaled
            ((720, 576, (16, 15)), (480, 360)), // anamorphic PAL: 768x576 on screen
            ((1081, 1921, (1, 1)), (202, 360)),
            ((0, 0, (0, 0)), (2, 2)),
        ];
        for ((w, h, par), want) in cases {
            assert_eq!(fit_display(w, h, par, 640, 360), want, "{w}x{h} {par:?}");
        }
    }

    /// The window the stalled RTSP clients came from: an appsrc that has its pipeline's clock but
    /// is not PLAYING yet reads the clock's absolute time as its running time. Nothing may be
    /// pushed then; once PLAYING, frames go in stamped with the (small) running time.
    #[test]
    fn push_live_waits_for_playing() {
        use gstreamer as gst;
        use gstreamer::prelude::*;
        gst::init().unwrap();
        let pipeline = gst::Pipeline::new();
        let src = gstreamer_app::AppSrc::builder()
            .is_live(true)
            .format(gst::Format::Time)
            .build();
        let sink = gst::ElementFactory::make("appsink")
            .property("sync", false)
            .build()
            .unwrap();
        pipeline.add_many([src.upcast_ref(), &sink]).unwrap();
        src.link(&sink).unwrap();
        let buf = gst::Buffer::with_size(16).unwrap();

        pipeline.set_state(gst::State::Paused).unwrap();
        src.set_clock(Some(&gst::SystemClock::obtain())).unwrap();
        assert!(
            src.current_running_time().is_some(),
            "the clock without a base time gives a running time"
        );
        assert!(push_live(&src, &buf), "kept while not PLAYING");
        assert_eq!(
            src.current_level_bytes(),
            0,
            "nothing pushed before PLAYING"
        );

        pipeline.set_state(gst::State::Playing).unwrap();
        let t = std::time::Instant::now();
        while src.current_state() != gst::State::Playing {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "appsrc never PLAYING"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(push_live(&src, &buf), "pushed once PLAYING");
        let appsink = sink.dynamic_cast::<gstreamer_app::AppSink>().unwrap();
        let sample = appsink
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .expect("the pushed frame arrives");
        let pts = sample.buffer().and_then(|b| b.pts()).expect("stamped");
        assert!(
            pts < gst::ClockTime::from_seconds(10),
            "stamped with the pipeline's running time, not the clock's: {pts}"
        );
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
