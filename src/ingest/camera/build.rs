//! Assembling one run of a camera's pipeline from its template: the appsinks of the analytics
//! and display branches, the substream's gate, the tap for the browser wall, and the state the
//! streaming threads share with the supervisor ([`Live`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::Ctx;
use crate::ingest::frames::{copy_frame, RateGate};
use crate::ingest::substream::{gate_decoder, watch_main, StreamRole};
use crate::ingest::tap::{self, TapCounters};
use crate::ingest::{fit_display, Pacing};
use crate::model::{AnalyticsFrame, DisplayFrame, Image};
use crate::timing;

/// State shared between the supervisor and the pipeline's streaming threads.
pub(super) struct Live {
    /// This run's media timeline.
    pub(super) epoch: u64,
    pub(super) started: Instant,
    /// Milliseconds since `started` of the latest decoded frame; 0 = none yet.
    pub(super) last_frame_ms: AtomicU64,
    pub(super) online: AtomicBool,
    pub(super) analytics_seq: AtomicU64,
    pub(super) display_seq: AtomicU64,
    pub(super) source_size: Mutex<(u32, u32)>,
}

impl Live {
    pub(super) fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_frame_ms.store(ms.max(1), Ordering::Relaxed);
    }
}

pub(in crate::ingest) fn element<T: IsA<gst::Element>>(
    pipeline: &gst::Pipeline,
    name: &str,
) -> Result<T, String> {
    pipeline
        .by_name(name)
        .ok_or_else(|| format!("the pipeline template has no element named {name:?}"))?
        .dynamic_cast::<T>()
        .map_err(|_| format!("element {name:?} is not of the expected type"))
}

pub(super) fn build(ctx: &Ctx, live: &Arc<Live>) -> Result<gst::Pipeline, String> {
    let (s, site, queue, metrics) = (ctx.s, ctx.site, ctx.queue, ctx.metrics);
    let role = ctx.role;
    let line = ctx
        .templates
        .render(s.source.kind, &s.template_params())
        .map_err(|e| e.to_string())?;
    debug!(pipeline = %line, "building pipeline");
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| format!("cannot parse pipeline: {e}"))?
        .dynamic_cast::<gst::Pipeline>()
        .map_err(|_| "the template is not a pipeline".to_string())?;
    crate::ingest::decoder::limit_threads(
        pipeline.upcast_ref(),
        crate::ingest::decoder::threads_for(s.decoder_threads, s.pacing),
    );
    let label = s.site.as_str();
    let stream_label = [label, role.label()];

    // The camera's video reaches the branches through `pace`; the passthrough tap watches
    // every access unit at `encoded`, before the decoder (not the substream's: the wall plays
    // the main stream).
    let parse: gst::Element = element(&pipeline, "parse")?;
    let pace: gst::Element = element(&pipeline, "pace")?;
    tap::link_parsed(&pipeline, &parse, &pace);
    let encoded: gst::Element = element(&pipeline, "encoded")?;
    if role != StreamRole::Detect {
        let live_tap = live.clone();
        tap::install(
            &encoded,
            site.clone(),
            live.epoch,
            TapCounters {
                frames: metrics.source_frames.with_label_values(&[label]),
                bytes: metrics.source_bytes.with_label_values(&[label]),
                errors: metrics.passthrough_errors.with_label_values(&[label]),
            },
            move || {
                live_tap.touch();
                // decoded only on demand: the stream is alive when its frames arrive
                if role == StreamRole::Main && !live_tap.online.load(Ordering::Relaxed) {
                    live_tap.online.store(true, Ordering::Relaxed);
                }
            },
        )?;
    }
    if role == StreamRole::Main {
        let live_size = live.clone();
        watch_main(&encoded, live.epoch, ctx.pair, move |size| {
            *live_size.source_size.lock() = size;
        })?;
        gate_decoder(&pipeline, site)?;
        // Nothing reaches the analytics appsink: it must not hold a file pipeline in preroll.
        element::<gst::Element>(&pipeline, "analytics")?.set_property("async", false);
    }
    if let Ok(q) = element::<gst::Element>(&pipeline, "decode_queue") {
        let dropped = metrics.decode_dropped.with_label_values(&[label]);
        q.connect("overrun", false, move |_| {
            dropped.inc();
            None
        });
    }

    // Every decoded frame passes the tee: count it, mark the camera alive, and size the display
    // branch from the first caps.
    let tee: gst::Element = element(&pipeline, "decoded")?;
    let display_caps: gst::Element = element(&pipeline, "display_caps")?;
    let decoded = metrics.frames_decoded.with_label_values(&[label]);
    let stream_decoded = metrics.stream_decoded.with_label_values(&stream_label);
    let (tile_w, tile_h) = (s.tile_width, s.tile_height);
    let live_probe = live.clone();
    let sink_pad = tee
        .static_pad("sink")
        .ok_or_else(|| "tee has no sink pad".to_string())?;
    sink_pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => {
                    decoded.inc();
                    stream_decoded.inc();
                    live_probe.touch();
                    if !live_probe.online.load(Ordering::Relaxed) {
                        live_probe.online.store(true, Ordering::Relaxed);
                    }
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Caps(c) = ev.view() {
                        if let Ok(vi) = gst_video::VideoInfo::from_caps(c.caps()) {
                            let par = vi.par();
                            let (w, h) = fit_display(
                                vi.width(),
                                vi.height(),
                                (par.numer(), par.denom()),
                                tile_w,
                                tile_h,
                            );
                            *live_probe.source_size.lock() = (vi.width(), vi.height());
                            let caps = gst_video::VideoCapsBuilder::new()
                                .format(gst_video::VideoFormat::I420)
                                .width(w as i32)
                                .height(h as i32)
                                .pixel_aspect_ratio(gst::Fraction::new(1, 1))
                                .build();
                            display_caps.set_property("caps", &caps);
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );

    // Display frames only while a burned-in output asks for them, at its rate: dropped here,
    // before the queue, nothing is scaled or copied for nobody.
    let display_gate: gst::Element = element(&pipeline, "display_gate")?;
    let display_pad = display_gate
        .static_pad("sink")
        .ok_or_else(|| "display_gate has no sink pad".to_string())?;
    let site_demand = site.clone();
    let taken = metrics.display_decoded.with_label_values(&[label]);
    let display_rate = Mutex::new((0.0f64, RateGate::new(1.0)));
    display_pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        // the substream is never displayed
        let fps = match role {
            StreamRole::Detect => 0.0,
            _ => site_demand.display_demand(),
        };
        let admit = if fps <= 0.0 {
            false
        } else if fps.is_infinite() {
            true
        } else {
            let mut g = display_rate.lock();
            if g.0 != fps {
                *g = (fps, RateGate::new(fps));
            }
            buf.pts()
                .or(buf.dts())
                .is_none_or(|t| g.1.admit(t.nseconds()))
        };
        if admit {
            taken.inc();
            gst::PadProbeReturn::Ok
        } else {
            // `Handled`, not `Drop`: see the analytics gate below.
            gst::PadProbeReturn::Handled
        }
    });

    // Decimate to the detect rate before any scaling work.
    let gate: gst::Element = element(&pipeline, "analytics_gate")?;
    let gate_pad = gate
        .static_pad("sink")
        .ok_or_else(|| "analytics_gate has no sink pad".to_string())?;
    let rate = Mutex::new(RateGate::new(s.detect_fps));
    gate_pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        if role == StreamRole::Main {
            // decoded for display only: analytics takes the substream
            return gst::PadProbeReturn::Handled;
        }
        let Some(pts) = buf.pts().or(buf.dts()) else {
            return gst::PadProbeReturn::Ok;
        };
        if rate.lock().admit(pts.nseconds()) {
            gst::PadProbeReturn::Ok
        } else {
            // Not `Drop`: gstreamer-rs 0.25 already owns (and frees) the buffer, and GStreamer
            // 1.22's core would then unref a NULL pointer. `Handled` leaves the core out of it.
            gst::PadProbeReturn::Handled
        }
    });

    // Analytics frames into the queue (newest wins).
    let analytics: gst_app::AppSink = element(&pipeline, "analytics")?;
    let site_id = s.site.clone();
    let a_frames = metrics.analytics_frames.with_label_values(&[label]);
    let a_stream = metrics
        .stream_analytics_frames
        .with_label_values(&stream_label);
    let pair = (role == StreamRole::Detect).then(|| ctx.pair.clone());
    let a_dropped = metrics.analytics_dropped.with_label_values(&[label]);
    let live_a = live.clone();
    let queue = queue.clone();
    let replay = (s.pacing == Pacing::Replay).then_some(s.media_base);
    analytics.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let mut image = Image::default();
                let Some(sample) = pull_into(sink, &mut image, "analytics")? else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let pts = sample
                    .buffer()
                    .and_then(|b| b.pts().or(b.dts()))
                    .map(|t| Duration::from_nanos(t.nseconds()));
                let (mut sw, mut sh) = *live_a.source_size.lock();
                let mut media_time = tap::media_time(&sample, live_a.epoch);
                if let Some(pair) = &pair {
                    // in the main stream's pixels and on its timeline (what the wall shows)
                    let main = *pair.main_size.lock();
                    if main.0 > 0 && main.1 > 0 {
                        (sw, sh) = main;
                    }
                    media_time = pair.main_media_time();
                }
                // the rules' clock: media time in a replay, else the monotonic clock
                let (captured_at, rule_at) = match replay {
                    Some(base) => {
                        let t = base
                            + chrono::TimeDelta::from_std(pts.unwrap_or_default())
                                .unwrap_or_default();
                        (t, t)
                    }
                    None => {
                        let now = crate::clock::now();
                        (now.wall, now.rule)
                    }
                };
                let frame = AnalyticsFrame {
                    site: site_id.clone(),
                    seq: live_a.analytics_seq.fetch_add(1, Ordering::Relaxed),
                    captured_at,
                    rule_at,
                    pts,
                    media_time,
                    source_width: sw,
                    source_height: sh,
                    image,
                };
                a_frames.inc();
                a_stream.inc();
                if queue.put(frame) {
                    a_dropped.inc();
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    // Display frames into the site's slot, recycling buffers nobody holds any more.
    let display: gst_app::AppSink = element(&pipeline, "display")?;
    let d_frames = metrics.display_frames.with_label_values(&[label]);
    let site_hub = site.clone();
    let live_d = live.clone();
    let mut pool: Vec<Arc<Image>> = Vec::new();
    let site_for_status = s.site.clone();
    display.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let mut slot = match pool.iter_mut().position(|a| Arc::strong_count(a) == 1) {
                    Some(i) => pool.swap_remove(i),
                    None => Arc::new(Image::default()),
                };
                let Some(img) = Arc::get_mut(&mut slot) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                if pull_into(sink, img, "display")?.is_none() {
                    return Ok(gst::FlowSuccess::Ok);
                }
                let now = Utc::now();
                site_hub.publish_display(DisplayFrame {
                    site: site_for_status.clone(),
                    seq: live_d.display_seq.fetch_add(1, Ordering::Relaxed),
                    captured_at: now,
                    image: slot.clone(),
                });
                if pool.len() < 4 {
                    pool.push(slot);
                }
                d_frames.inc();
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );

    if timing::enabled() {
        crate::ingest::timing_probes::add(&pipeline, &gate);
    }

    // Frames a slow display path throws away (live sources only: files are paced instead).
    if s.pacing == Pacing::Live {
        if let Ok(q) = element::<gst::Element>(&pipeline, "display_queue") {
            let dropped = metrics.display_dropped.with_label_values(&[label]);
            q.connect("overrun", false, move |_| {
                dropped.inc();
                None
            });
        }
    }
    Ok(pipeline)
}

/// Pulls the appsink's sample into `out` (reusing its allocation) and gives the sample back (its
/// timestamp and segment). `None` when the sample has no usable picture (logged for a bad
/// copy); an error only when the sink is shutting down.
fn pull_into(
    sink: &gst_app::AppSink,
    out: &mut Image,
    branch: &str,
) -> Result<Option<gst::Sample>, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let (Some(buf), Some(caps)) = (sample.buffer(), sample.caps()) else {
        return Ok(None);
    };
    let Ok(info) = gst_video::VideoInfo::from_caps(caps) else {
        return Ok(None);
    };
    match copy_frame(buf, &info, out) {
        Ok(()) => Ok(Some(sample)),
        Err(e) => {
            warn!(error = %e, branch, "frame skipped");
            Ok(None)
        }
    }
}
