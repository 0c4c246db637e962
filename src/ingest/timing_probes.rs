//! Bench only (a [`timing`] recorder is installed): per-frame times of a camera pipeline's
//! decoder and conversions, recorded as [`Stage`]s.

use std::sync::Arc;
use std::time::Instant;

use gstreamer as gst;
use gstreamer::prelude::*;
use parking_lot::Mutex;

use crate::timing::{self, Stage};

/// Bench only (a [`timing`] recorder is installed): per-frame time in the video decoder and in
/// the two branches' conversions. The decoder is created by decodebin once the stream is typed,
/// hence the deep-element-added hook; a branch's conversion is whatever the template puts
/// between `analytics_gate` (or `display_queue`) and its appsink, timed from the buffer leaving
/// the one to it reaching the other (one streaming thread, so that is the work in between).
pub(super) fn add(pipeline: &gst::Pipeline, gate: &gst::Element) {
    pipeline.connect_deep_element_added(|_, _, element| {
        if super::decoder::is_video_decoder(element) {
            if let (Some(sink), Some(src)) = (element.static_pad("sink"), element.static_pad("src"))
            {
                time_between(&sink, &src, Stage::Decode);
            }
        }
    });
    let sink_pad = |name: &str| pipeline.by_name(name).and_then(|e| e.static_pad("sink"));
    if let (Some(from), Some(to)) = (gate.static_pad("src"), sink_pad("analytics")) {
        time_between(&from, &to, Stage::ScaleAnalytics);
    }
    let queue_src = pipeline
        .by_name("display_queue")
        .and_then(|q| q.static_pad("src"));
    if let (Some(from), Some(to)) = (queue_src, sink_pad("display")) {
        time_between(&from, &to, Stage::ScaleDisplay);
    }
}

/// Records, per buffer reaching `to`, the time since the buffer that passed `from` before it:
/// for work done inside one chain call (converters) that is its time per frame; for a decoder,
/// the time from a compressed frame in to the next picture out (for a frame-threaded decoder,
/// how long the streaming thread waited for that picture).
fn time_between(from: &gst::Pad, to: &gst::Pad, stage: Stage) {
    let entered: Arc<Mutex<Option<Instant>>> = Arc::default();
    let e_in = entered.clone();
    from.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        *e_in.lock() = Some(Instant::now());
        gst::PadProbeReturn::Ok
    });
    to.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        if let Some(t) = entered.lock().take() {
            timing::record(stage, t.elapsed());
        }
        gst::PadProbeReturn::Ok
    });
}
