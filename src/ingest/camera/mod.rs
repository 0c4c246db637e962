//! One camera: a supervisor thread that builds the pipeline, watches its bus, and rebuilds it
//! with exponential backoff when the source errors, ends or goes silent.
//!
//! A camera with a substream for detection (`detect_stream`) has two supervisors, one per
//! stream ([`StreamRole`]): the main stream feeds the browser wall by passthrough and is decoded
//! only while a burned-in output asks for display frames (a gate before its decoder, opened at a
//! key frame); the substream is decoded for analytics only. The main stream owns the site's
//! camera state (online, size, reconnects); the substream's results are put on the main
//! stream's media timeline ([`Pair`]) so the browser draws them on the frames they belong to.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use parking_lot::Mutex;
use tracing::{debug, info, info_span, warn};

use super::substream::{Pair, StreamRole};
use super::{CameraSettings, IngestError, Pacing, SourceKind, Templates};
use crate::hub::{AnalyticsQueue, SiteHub};
use crate::metrics::IngestMetrics;

mod build;

pub(super) use build::element;
use build::{build, Live};

/// Numbers the runs of every camera pipeline of the process: a run's media timeline
/// ([`crate::model::MediaTime::epoch`]).
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// A running camera. Dropping it does not stop it; call [`CameraHandle::stop`].
pub struct CameraHandle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CameraHandle {
    /// Asks the supervisor to stop and waits for the pipeline to be torn down.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Asks the supervisor to stop without waiting.
    pub fn signal_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The supervisor has ended: stopped, or (a replayed file) played to its end.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }
}

/// Starts a camera's supervisor thread, two with a substream for detection.
pub fn spawn_camera(
    settings: CameraSettings,
    templates: Arc<Templates>,
    site: Arc<SiteHub>,
    queue: Arc<AnalyticsQueue>,
    metrics: IngestMetrics,
) -> Result<CameraHandle, IngestError> {
    let stop = Arc::new(AtomicBool::new(false));
    let pair = Arc::new(Pair::default());
    let mut streams = Vec::new();
    match settings.detect.clone() {
        None => streams.push((StreamRole::Only, settings)),
        Some((source, pacing)) => {
            let mut sub = settings.clone();
            sub.source = source;
            sub.pacing = pacing;
            sub.detect = None;
            streams.push((StreamRole::Main, settings));
            streams.push((StreamRole::Detect, sub));
        }
    }
    let mut handle = CameraHandle {
        stop: stop.clone(),
        threads: Vec::new(),
    };
    for (role, settings) in streams {
        let (templates, site, queue) = (templates.clone(), site.clone(), queue.clone());
        let (metrics, stop, pair) = (metrics.clone(), stop.clone(), pair.clone());
        let name = match role {
            StreamRole::Detect => format!("cam-{}-d", settings.site),
            _ => format!("cam-{}", settings.site),
        };
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let span = info_span!("camera", site = %settings.site, stream = role.label());
            let _g = span.enter();
            let ctx = Ctx {
                s: &settings,
                role,
                pair: &pair,
                templates: &templates,
                site: &site,
                queue: &queue,
                metrics: &metrics,
            };
            supervise(&ctx, &stop);
        });
        match spawned {
            Ok(t) => handle.threads.push(t),
            Err(e) => {
                // the stream already started must not run on unowned
                handle.stop();
                return Err(e.into());
            }
        }
    }
    Ok(handle)
}

/// What one stream's supervisor works with.
struct Ctx<'a> {
    s: &'a CameraSettings,
    role: StreamRole,
    pair: &'a Arc<Pair>,
    templates: &'a Templates,
    site: &'a Arc<SiteHub>,
    queue: &'a Arc<AnalyticsQueue>,
    metrics: &'a IngestMetrics,
}

/// Why one run of the pipeline ended.
enum Ended {
    Stopped,
    /// A replayed file reached its end: the camera is done.
    Finished,
    Failed {
        reason: String,
        got_frames: bool,
    },
}

fn supervise(ctx: &Ctx, stop: &AtomicBool) {
    let (s, site, metrics) = (ctx.s, ctx.site, ctx.metrics);
    let owns_status = ctx.role.owns_status();
    let label = [s.site.as_str()];
    let stream_label = [s.site.as_str(), ctx.role.label()];
    metrics
        .stream_online
        .with_label_values(&stream_label)
        .set(0);
    metrics.stream_decoded.with_label_values(&stream_label);
    metrics
        .stream_analytics_frames
        .with_label_values(&stream_label);
    if owns_status {
        metrics.camera_online.with_label_values(&label).set(0);
    }
    // Touch the counters so every camera has series from the start, even before its first frame.
    for c in [
        &metrics.frames_decoded,
        &metrics.source_frames,
        &metrics.source_bytes,
        &metrics.passthrough_errors,
        &metrics.decode_dropped,
        &metrics.analytics_frames,
        &metrics.analytics_dropped,
        &metrics.display_decoded,
        &metrics.display_frames,
        &metrics.display_dropped,
        &metrics.reconnects,
    ] {
        c.with_label_values(&label);
    }
    let mut backoff = s.backoff_initial;
    let mut attempt: u64 = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if attempt > 0 && owns_status {
            metrics.reconnects.with_label_values(&label).inc();
            site.update_status(|st| st.reconnects += 1);
        }
        attempt += 1;
        let ended = run_once(ctx, stop);
        metrics
            .stream_online
            .with_label_values(&stream_label)
            .set(0);
        if owns_status {
            metrics.camera_online.with_label_values(&label).set(0);
        }
        // The substream's state is its own: the site is online while its main stream is.
        let update_status = |f: &dyn Fn(&mut crate::hub::CameraStatus)| {
            if owns_status {
                site.update_status(f);
            }
        };
        match ended {
            Ended::Stopped | Ended::Finished => {
                let why = if matches!(ended, Ended::Finished) {
                    "end of file"
                } else {
                    "stopped"
                };
                update_status(&|st| {
                    if st.online {
                        st.online = false;
                        st.since = Utc::now();
                    }
                    st.last_error = Some(why.into());
                });
                break;
            }
            Ended::Failed { reason, .. } if s.once => {
                warn!(%reason, "the recording cannot be played");
                update_status(&|st| {
                    st.online = false;
                    st.last_error = Some(reason.clone());
                });
                break;
            }
            Ended::Failed { reason, got_frames } => {
                if got_frames {
                    backoff = s.backoff_initial;
                }
                warn!(%reason, retry_in_s = backoff.as_secs_f64(), "camera offline");
                update_status(&|st| {
                    if st.online {
                        st.online = false;
                        st.since = Utc::now();
                    }
                    st.last_error = Some(reason.clone());
                });
                if sleep_unless_stopped(backoff, stop) {
                    break;
                }
                backoff = (backoff * 2).min(s.backoff_max);
            }
        }
    }
    debug!("camera supervisor ended");
}

/// Sleeps in small steps; true if asked to stop meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
    stop.load(Ordering::SeqCst)
}

/// Runs the pipeline until it fails, ends, goes silent, or `stop` is set.
fn run_once(ctx: &Ctx, stop: &AtomicBool) -> Ended {
    let live = Arc::new(Live {
        epoch: EPOCH.fetch_add(1, Ordering::Relaxed) + 1,
        started: Instant::now(),
        last_frame_ms: AtomicU64::new(0),
        online: AtomicBool::new(false),
        analytics_seq: AtomicU64::new(0),
        display_seq: AtomicU64::new(0),
        source_size: Mutex::new((0, 0)),
    });
    let pipeline = match build(ctx, &live) {
        Ok(p) => p,
        Err(reason) => {
            return Ended::Failed {
                reason,
                got_frames: false,
            }
        }
    };
    let ended = watch(ctx, &pipeline, &live, stop);
    let _ = pipeline.set_state(gst::State::Null);
    if ctx.role != StreamRole::Detect {
        // Browser viewers learn the stream ended (and show the camera offline) at once.
        ctx.site.encoded.end();
    }
    if ctx.role == StreamRole::Main {
        // this run's timeline is gone: the substream's results wait for the next one
        *ctx.pair.anchor.lock() = None;
    }
    ended
}

fn watch(ctx: &Ctx, pipeline: &gst::Pipeline, live: &Live, stop: &AtomicBool) -> Ended {
    let (s, site, metrics) = (ctx.s, ctx.site, ctx.metrics);
    let owns_status = ctx.role.owns_status();
    let got = || live.last_frame_ms.load(Ordering::Relaxed) > 0;
    let fail = |reason: String| Ended::Failed {
        reason,
        got_frames: live.last_frame_ms.load(Ordering::Relaxed) > 0,
    };
    let Some(bus) = pipeline.bus() else {
        return fail("pipeline has no bus".into());
    };
    // A looping file plays in segments: at the end the demuxer posts SEGMENT_DONE instead of
    // EOS and a non-flushing seek back to 0 continues the running time, so the media timeline
    // (what browsers play and boxes are keyed by) never goes back. Without it, a flushing seek
    // on EOS, which restarts the timeline (browsers then set up a new stream).
    let segment_loop = s.source.kind == SourceKind::File
        && s.loop_file
        && match start_segment_loop(pipeline, &bus) {
            Ok(started) => started,
            Err(reason) => return fail(reason),
        };
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        let detail = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|m| match m.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| e.to_string());
        return fail(format!("cannot start: {detail}"));
    }
    // A source that has not produced a first frame gets longer: RTSP setup takes a moment.
    let connect_timeout = s.silence_timeout.max(Duration::from_secs(10));
    let mut reported_online = false;
    let mut status_refreshed = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ended::Stopped;
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            match msg.view() {
                gst::MessageView::Error(err) => {
                    let src = err
                        .src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default();
                    return fail(format!("{} ({src})", err.error()));
                }
                gst::MessageView::SegmentDone(_) if segment_loop => {
                    debug!("end of file, looping");
                    if pipeline
                        .seek_simple(gst::SeekFlags::SEGMENT, gst::ClockTime::ZERO)
                        .is_err()
                    {
                        return fail("end of file and cannot seek back to loop".into());
                    }
                }
                gst::MessageView::Eos(_) => {
                    if s.once {
                        debug!("end of the recording");
                        return Ended::Finished;
                    }
                    if s.source.kind == SourceKind::File && s.loop_file {
                        debug!("end of file, looping");
                        if pipeline
                            .seek_simple(
                                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                                gst::ClockTime::ZERO,
                            )
                            .is_err()
                        {
                            return fail("end of file and cannot seek back to loop".into());
                        }
                    } else {
                        return fail("end of stream".into());
                    }
                }
                gst::MessageView::Latency(_) => {
                    let _ = pipeline.recalculate_latency();
                }
                gst::MessageView::Warning(w) => {
                    debug!(warning = %w.error(), "pipeline warning");
                }
                _ => {}
            }
        }
        if !reported_online && live.online.load(Ordering::Relaxed) {
            reported_online = true;
            let (w, h) = *live.source_size.lock();
            info!(width = w, height = h, "camera online");
            metrics
                .stream_online
                .with_label_values(&[s.site.as_str(), ctx.role.label()])
                .set(1);
            if owns_status {
                metrics
                    .camera_online
                    .with_label_values(&[s.site.as_str()])
                    .set(1);
                site.update_status(|st| {
                    st.online = true;
                    st.since = Utc::now();
                    st.last_error = None;
                    st.width = w;
                    st.height = h;
                });
            }
        }
        let now_ms = live.started.elapsed().as_millis() as u64;
        let last = live.last_frame_ms.load(Ordering::Relaxed);
        if got() {
            // a replayed file is held back by the detector, not silent
            let silent = now_ms.saturating_sub(last) > s.silence_timeout.as_millis() as u64;
            if silent && s.pacing != Pacing::Replay {
                return fail(format!(
                    "no frames for {:.1} s",
                    s.silence_timeout.as_secs_f64()
                ));
            }
            if owns_status
                && reported_online
                && status_refreshed.elapsed() >= Duration::from_secs(1)
            {
                status_refreshed = Instant::now();
                site.update_status(|st| {
                    st.last_frame_at = Some(Utc::now());
                });
            }
        } else if now_ms > connect_timeout.as_millis() as u64 {
            return fail(format!(
                "no frames within {:.0} s of connecting",
                connect_timeout.as_secs_f64()
            ));
        }
    }
}

/// Waits until the decoder decodebin (`dec`) plugs is in PAUSED with its output linked, and a
/// moment more for decodebin to finish the chain, or until `deadline` (a template without
/// `dec`, or a decoder that never appears: the caller goes on as before).
fn wait_decoder_plugged(pipeline: &gst::Pipeline, deadline: Instant) {
    let Some(dec) = pipeline
        .by_name("dec")
        .and_then(|d| d.downcast::<gst::Bin>().ok())
    else {
        return;
    };
    let plugged = || {
        dec.iterate_recurse().into_iter().flatten().any(|e| {
            crate::ingest::decoder::is_video_decoder(&e)
                && e.current_state() >= gst::State::Paused
                && e.static_pad("src").is_some_and(|p| p.is_linked())
        })
    };
    while !plugged() {
        if Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(50));
}

/// Pauses a file pipeline until its length is known (the demuxer has read the file's index) and
/// starts it as a segment from 0. `Ok(false)` when the file cannot be played in segments (it is
/// then looped with a flushing seek at its end); `Err` on a pipeline error meanwhile.
fn start_segment_loop(pipeline: &gst::Pipeline, bus: &gst::Bus) -> Result<bool, String> {
    if pipeline.set_state(gst::State::Paused).is_err() {
        return Ok(false);
    }
    // Asked at the demuxer's side of `pace`, not through the sinks: a `pace` that syncs to the
    // clock makes the pipeline live, so in PAUSED no buffer passes it, the decoder never
    // exposes its pads, and a query or seek sent from the sinks never reaches the demuxer.
    let pace_sink = pipeline.by_name("pace").and_then(|p| p.static_pad("sink"));
    let upstream = || pace_sink.as_ref().and_then(|p| p.peer());
    let duration = || match upstream() {
        Some(pad) => pad.query_duration::<gst::ClockTime>(),
        None if pace_sink.is_none() => pipeline.query_duration::<gst::ClockTime>(),
        None => None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while duration().is_none() {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(20),
            &[gst::MessageType::Error],
        ) {
            if let gst::MessageView::Error(err) = msg.view() {
                return Err(format!("cannot open: {}", err.error()));
            }
        }
    }
    // The flushing seek must not reach decodebin while it is still plugging the decoder (it
    // does so on the stream's caps, in PAUSED too): a flush in the middle left it unable to set
    // its parser to PAUSED ("New pad in a chain that is already complete"), the demuxer stopped
    // with not-linked, and every file camera failed its first start.
    wait_decoder_plugged(pipeline, Instant::now() + Duration::from_secs(2));
    let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT;
    Ok(match upstream() {
        Some(pad) => pad.send_event(gst::event::Seek::new(
            1.0,
            flags,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::None,
            gst::ClockTime::NONE,
        )),
        None => pipeline.seek_simple(flags, gst::ClockTime::ZERO).is_ok(),
    })
}
