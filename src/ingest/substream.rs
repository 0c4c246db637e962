//! A camera with a substream for detection (a site's `detect_stream`, Frigate's `detect`
//! role): what its two pipelines ([`StreamRole`]) share, and what the main stream's pipeline
//! does differently from a one-stream camera's.
//!
//! The main stream feeds the browser wall by passthrough and is decoded only while a burned-in
//! output (MJPEG, annotated RTSP) asks for display frames: [`gate_decoder`] drops its compressed
//! frames before the decoder otherwise, and opens at a key frame. The substream is decoded for
//! analytics only. The two streams' timestamps are unrelated (each has its own RTP clock or
//! file timeline), so the substream's frames are put on the main stream's media timeline by
//! arrival ([`Pair`]): the browser keys boxes to the main stream's frames by that time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use parking_lot::Mutex;

use super::camera::element;
use crate::hub::SiteHub;
use crate::model::MediaTime;

/// What one pipeline of a camera does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRole {
    /// The camera's one stream: passthrough, analytics and display.
    Only,
    /// The main stream of a camera with a substream: passthrough, and display frames decoded
    /// only while a burned-in output asks; never analytics.
    Main,
    /// The substream: analytics only (not passed through, never displayed).
    Detect,
}

impl StreamRole {
    /// The `stream` label of the per-stream metrics.
    pub fn label(self) -> &'static str {
        match self {
            StreamRole::Only | StreamRole::Main => "main",
            StreamRole::Detect => "detect",
        }
    }

    /// Whether this stream's supervisor reports the site's camera state.
    pub(super) fn owns_status(self) -> bool {
        self != StreamRole::Detect
    }
}

/// What the two pipelines of a camera with a substream share.
#[derive(Default)]
pub(super) struct Pair {
    /// The main stream's picture size (from its parsed caps, before decoding): analytics of the
    /// substream reports it as the source size, so pixel-unit settings (`metres_per_pixel`) and
    /// the status mean the main stream's pixels whichever stream was decoded.
    pub(super) main_size: Mutex<(u32, u32)>,
    /// The latest access unit of the main stream: its media time and when it arrived. A
    /// substream frame arriving `d` later is placed at that media time + `d` (the two streams'
    /// timestamps are unrelated; the camera sends both at capture).
    pub(super) anchor: Mutex<Option<(MediaTime, Instant)>>,
}

impl Pair {
    /// A substream frame arriving now, on the main stream's timeline; none while the main
    /// stream is silent.
    pub(super) fn main_media_time(&self) -> Option<MediaTime> {
        let (t, at) = (*self.anchor.lock())?;
        let since = at.elapsed();
        (since < Duration::from_secs(2)).then(|| MediaTime {
            epoch: t.epoch,
            ns: t.ns + since.as_nanos() as u64,
        })
    }
}

/// Main stream only: its picture size from the parsed caps and, per access unit, the anchor
/// that puts the substream's results on this stream's media timeline.
pub(super) fn watch_main(
    encoded: &gst::Element,
    epoch: u64,
    pair: &Arc<Pair>,
    on_size: impl Fn((u32, u32)) + Send + Sync + 'static,
) -> Result<(), String> {
    let pad = encoded
        .static_pad("sink")
        .ok_or("element \"encoded\" has no sink pad")?;
    let pair = pair.clone();
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    let segment = pad
                        .sticky_event::<gst::event::Segment>(0)
                        .and_then(|e| e.segment().downcast_ref::<gst::ClockTime>().cloned());
                    let ns = buf
                        .pts()
                        .zip(segment)
                        .and_then(|(pts, seg)| seg.to_running_time(pts));
                    if let Some(ns) = ns {
                        let t = MediaTime {
                            epoch,
                            ns: ns.nseconds(),
                        };
                        *pair.anchor.lock() = Some((t, Instant::now()));
                    }
                }
                Some(gst::PadProbeData::Event(ev)) => {
                    if let gst::EventView::Caps(c) = ev.view() {
                        let size = c.caps().structure(0).and_then(|st| {
                            Some((st.get::<i32>("width").ok()?, st.get::<i32>("height").ok()?))
                        });
                        if let Some((w, h)) = size.filter(|(w, h)| *w > 0 && *h > 0) {
                            let size = (w as u32, h as u32);
                            *pair.main_size.lock() = size;
                            on_size(size);
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    Ok(())
}

/// Main stream only: compressed frames reach the decoder only while a burned-in output asks for
/// display frames, starting at a key frame (marked as a discontinuity); otherwise they are
/// dropped before the decoder queue, so the main stream costs nothing to decode.
pub(super) fn gate_decoder(pipeline: &gst::Pipeline, site: &Arc<SiteHub>) -> Result<(), String> {
    let q: gst::Element = element(pipeline, "decode_queue")?;
    let pad = q.static_pad("sink").ok_or("decode_queue has no sink pad")?;
    let site = site.clone();
    let open = AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buf)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        if site.display_demand() <= 0.0 {
            open.store(false, Ordering::Relaxed);
            // `Handled`, not `Drop`: see the analytics gate in `build`.
            return gst::PadProbeReturn::Handled;
        }
        if open.load(Ordering::Relaxed) {
            return gst::PadProbeReturn::Ok;
        }
        if buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Handled;
        }
        open.store(true, Ordering::Relaxed);
        if let Some(buf) = info.buffer_mut() {
            buf.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substream_frames_land_on_the_main_timeline() {
        let pair = Pair::default();
        assert_eq!(pair.main_media_time(), None, "no main stream yet");
        let t = MediaTime {
            epoch: 7,
            ns: 5_000_000_000,
        };
        let at = Instant::now() - Duration::from_millis(300);
        *pair.anchor.lock() = Some((t, at));
        let m = pair.main_media_time().expect("on the main timeline");
        assert_eq!(m.epoch, 7);
        assert!(
            m.ns >= 5_300_000_000 && m.ns < 6_000_000_000,
            "the main stream's time plus the 0.3 s since: {}",
            m.ns
        );
        // a main stream silent for more than 2 s gives no time
        let stale = Instant::now() - Duration::from_secs(3);
        *pair.anchor.lock() = Some((t, stale));
        assert_eq!(pair.main_media_time(), None);
    }

    #[test]
    fn roles() {
        assert_eq!(StreamRole::Only.label(), "main");
        assert_eq!(StreamRole::Main.label(), "main");
        assert_eq!(StreamRole::Detect.label(), "detect");
        assert!(StreamRole::Main.owns_status() && !StreamRole::Detect.owns_status());
    }
}
