//! How many worker threads each camera's software decoder gets.
//!
//! libav's H.264 decoder (`avdec_h264`) spawns one frame thread per core by default. Frame
//! threads let one stream decode faster than one core could, at a price per frame: on the bench
//! host (AMD EPYC, 2 vCPUs) six 1080p25 decoders flat out cost 3.87-3.91 CPU-ms per frame with
//! the default against 3.71-3.78 with one thread each, two cost 4.05 against 3.39, one 4.13
//! against 3.57 (docs/performance.md, "Decoder threads"). A camera never needs more than its own
//! frame rate, which one thread of that host decodes ten times over for 1080p25, so a paced
//! stream (a camera, a file played like one) gets one thread: every core then serves more
//! cameras, and the decoder adds no frame-threading delay to the burned-in outputs. A file
//! decoded as fast as possible (`simpang replay`) keeps libav's default, because there one
//! stream's speed is the point. `ingest.decoder_threads` overrides both.

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::debug;

use super::Pacing;

/// The decoder threads of a stream paced as `pacing` under `configured` (`ingest.
/// decoder_threads`; 0 = by pacing). 0 in the result means libav's own choice (one per core).
pub fn threads_for(configured: u32, pacing: Pacing) -> u32 {
    if configured > 0 {
        return configured;
    }
    match pacing {
        Pacing::Live | Pacing::Realtime => 1,
        Pacing::AsFastAsPossible | Pacing::Replay => 0,
    }
}

/// Whether `element` is a video decoder (what decodebin plugs for the camera's codec).
pub fn is_video_decoder(element: &gst::Element) -> bool {
    element.factory().is_some_and(|f| {
        let klass = f.klass();
        klass.contains("Decoder") && klass.contains("Video")
    })
}

/// Gives every decoder that appears in `bin` (decodebin makes them once the stream is typed)
/// `threads` worker threads, where it has the `max-threads` setting (the libav decoders;
/// hardware decoders have none and are left as they are). `threads` 0 leaves libav's default.
pub fn limit_threads(bin: &gst::Bin, threads: u32) {
    if threads == 0 {
        return;
    }
    bin.connect_deep_element_added(move |_, _, element| {
        let Some(spec) = element.find_property("max-threads") else {
            return;
        };
        if spec.value_type() != i32::static_type() {
            return;
        }
        let n = i32::try_from(threads).unwrap_or(i32::MAX);
        element.set_property("max-threads", n);
        debug!(decoder = %element.name(), threads = n, "decoder threads");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_streams_get_one_thread_unless_configured() {
        assert_eq!(threads_for(0, Pacing::Live), 1);
        assert_eq!(threads_for(0, Pacing::Realtime), 1);
        assert_eq!(threads_for(0, Pacing::Replay), 0);
        assert_eq!(threads_for(0, Pacing::AsFastAsPossible), 0);
        assert_eq!(threads_for(3, Pacing::Live), 3);
        assert_eq!(threads_for(2, Pacing::Replay), 2);
    }

    /// The setting reaches the decoder decodebin picks (a real H.264 stream through a real
    /// decodebin), and 0 leaves libav's default.
    #[test]
    fn decodebin_decoder_gets_the_threads() {
        crate::ingest::init_gstreamer().unwrap();
        for (threads, want) in [(1u32, 1i32), (3, 3), (0, 0)] {
            let p = gst::parse::launch(
                "videotestsrc num-buffers=10 ! video/x-raw,width=160,height=120 \
                 ! x264enc ! h264parse ! decodebin name=dec ! fakesink",
            )
            .unwrap()
            .dynamic_cast::<gst::Pipeline>()
            .unwrap();
            limit_threads(p.upcast_ref(), threads);
            p.set_state(gst::State::Playing).unwrap();
            let bus = p.bus().unwrap();
            let msg = bus
                .timed_pop_filtered(
                    gst::ClockTime::from_seconds(30),
                    &[gst::MessageType::Eos, gst::MessageType::Error],
                )
                .expect("the pipeline ends");
            assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
            let dec: gst::Bin = p.by_name("dec").unwrap().downcast().unwrap();
            let decoder = dec
                .iterate_elements()
                .into_iter()
                .flatten()
                .find(|e| e.find_property("max-threads").is_some())
                .expect("decodebin made a libav decoder");
            assert_eq!(decoder.property::<i32>("max-threads"), want, "{threads}");
            p.set_state(gst::State::Null).unwrap();
        }
    }
}
