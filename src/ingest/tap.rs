//! The passthrough tap: the camera's compressed video, parsed but not decoded, into the site's
//! [`EncodedStream`](crate::hub::EncodedStream) for the browser wall.
//!
//! The source template ends in `parsebin name=parse` (depayloaded, demuxed, parsed); the
//! branches template begins with the element `pace` and has the element `encoded` before its
//! decoder. [`link_parsed`] links `parse`'s video to `pace`, through `h264parse` to AVC access
//! units (`stream-format=avc,alignment=au`) when it is H.264: one access unit per buffer, with
//! the decoder configuration in the caps, is what an MP4 fragment carries. [`install`] puts a
//! probe on `encoded`'s sink pad that publishes every access unit with its media time (the
//! buffer's running time, the same value the decoded frame has downstream) and key flag.
//! Nothing is copied: the published bytes are the GStreamer buffer, mapped.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use gstreamer as gst;
use gstreamer::prelude::*;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::h264;
use crate::hub::encoded::{Codec, EncodedFrame, StreamSetup};
use crate::hub::SiteHub;
use crate::model::MediaTime;

/// A frame duration to assume until two frames have been seen (25 fps).
const DEFAULT_FRAME_NS: u64 = 40_000_000;

/// Links the first video stream `parse` exposes to `pace` (H.264 through `h264parse` to AVC
/// access units), and any other stream to a `fakesink`, as the streams appear.
pub fn link_parsed(pipeline: &gst::Pipeline, parse: &gst::Element, pace: &gst::Element) {
    let pipeline = pipeline.downgrade();
    let pace = pace.downgrade();
    parse.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(pace)) = (pipeline.upgrade(), pace.upgrade()) else {
            return;
        };
        if let Err(e) = link_pad(&pipeline, pad, &pace) {
            // Posted on the bus: the supervisor rebuilds the pipeline and reports the reason.
            warn!(error = %e, "cannot link the camera's stream");
            let msg = gst::message::Error::builder(gst::CoreError::Negotiation, &e)
                .src(&pipeline)
                .build();
            let _ = pipeline.post_message(msg);
        }
    });
}

fn link_pad(pipeline: &gst::Pipeline, pad: &gst::Pad, pace: &gst::Element) -> Result<(), String> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let pace_sink = pace
        .static_pad("sink")
        .ok_or("element \"pace\" has no sink pad")?;
    if !name.starts_with("video/") || pace_sink.is_linked() {
        // Audio, metadata or a second video stream: consumed and dropped, so a demuxer never
        // stops on a stream nobody reads.
        debug!(media_type = %name, "stream not used");
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .build()
            .map_err(|e| format!("fakesink: {e}"))?;
        pipeline.add(&sink).map_err(|e| e.to_string())?;
        sink.sync_state_with_parent().map_err(|e| e.to_string())?;
        let sink_pad = sink.static_pad("sink").ok_or("fakesink has no sink pad")?;
        pad.link(&sink_pad)
            .map_err(|e| format!("cannot link {name} to fakesink: {e:?}"))?;
        return Ok(());
    }
    if name == "video/x-h264" {
        let parser = gst::ElementFactory::make("h264parse")
            .build()
            .map_err(|e| format!("h264parse: {e}"))?;
        let filter = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("stream-format", "avc")
                    .field("alignment", "au")
                    .build(),
            )
            .build()
            .map_err(|e| format!("capsfilter: {e}"))?;
        pipeline
            .add_many([&parser, &filter])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&parser, &filter, pace]).map_err(|e| e.to_string())?;
        for e in [&filter, &parser] {
            e.sync_state_with_parent().map_err(|e| e.to_string())?;
        }
        let parser_sink = parser.static_pad("sink").ok_or("h264parse without sink")?;
        pad.link(&parser_sink)
            .map_err(|e| format!("cannot link H.264 to h264parse: {e:?}"))?;
    } else {
        pad.link(&pace_sink)
            .map_err(|e| format!("cannot link {name} to \"pace\": {e:?}"))?;
    }
    debug!(media_type = %name, "camera stream linked");
    Ok(())
}

/// Counters the tap keeps (ingest metrics, one site).
#[derive(Clone)]
pub struct TapCounters {
    pub frames: prometheus::IntCounter,
    pub bytes: prometheus::IntCounter,
    pub errors: prometheus::IntCounter,
}

#[derive(Default)]
struct TapState {
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// The current H.264 setup: avcC and the NAL length size of incoming access units.
    h264: Option<(Bytes, usize)>,
    /// In-band parameter sets of an Annex B stream, until both are known.
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    annexb: bool,
    started: bool,
    width: u32,
    height: u32,
    frame_ns: u64,
    prev_dts: Option<u64>,
    /// The latest frame intervals, newest last.
    deltas: VecDeque<u64>,
    seq: u64,
}

/// Frame intervals the duration estimate is the median of.
const DELTAS: usize = 9;

impl TapState {
    /// The duration to give the next frame: the median of the latest intervals. A camera's
    /// timestamps jitter a little; a frame given one short interval as its duration would make
    /// the next, normal, interval look like a gap (more than twice the frame's duration), and a
    /// browser drops everything after a gap until the next key frame.
    fn duration(&self) -> u64 {
        if self.deltas.is_empty() {
            return if self.frame_ns > 0 {
                self.frame_ns
            } else {
                DEFAULT_FRAME_NS
            };
        }
        let mut d: Vec<u64> = self.deltas.iter().copied().collect();
        d.sort_unstable();
        d[d.len() / 2]
    }
}

/// Installs the tap on `encoded`'s sink pad for one pipeline run (`epoch`). `on_frame` is called
/// for every access unit (every codec), before anything else: the camera is alive.
pub fn install(
    encoded: &gst::Element,
    site: Arc<SiteHub>,
    epoch: u64,
    counters: TapCounters,
    on_frame: impl Fn() + Send + Sync + 'static,
) -> Result<(), String> {
    let pad = encoded
        .static_pad("sink")
        .ok_or("element \"encoded\" has no sink pad")?;
    let state = Mutex::new(TapState::default());
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_pad, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(buf)) => {
                    on_frame();
                    let now = Utc::now();
                    site.source_frame(now);
                    counters.frames.inc();
                    counters.bytes.inc_by(buf.size() as u64);
                    let mut st = state.lock();
                    if let Err(e) = on_buffer(&mut st, &site, epoch, buf, now) {
                        counters.errors.inc();
                        debug!(error = %e, "access unit not passed through");
                    }
                }
                Some(gst::PadProbeData::Event(ev)) => match ev.view() {
                    gst::EventView::Caps(c) => {
                        let mut st = state.lock();
                        on_caps(&mut st, &site, epoch, c.caps());
                    }
                    gst::EventView::Segment(s) => {
                        state.lock().segment =
                            s.segment().downcast_ref::<gst::ClockTime>().cloned();
                    }
                    _ => {}
                },
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    Ok(())
}

fn on_caps(st: &mut TapState, site: &SiteHub, epoch: u64, caps: &gst::CapsRef) {
    let Some(s) = caps.structure(0) else { return };
    st.width = s.get::<i32>("width").map_or(0, |v| v.max(0) as u32);
    st.height = s.get::<i32>("height").map_or(0, |v| v.max(0) as u32);
    st.frame_ns = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map_or(0, |f| {
            (1_000_000_000u64 * f.denom() as u64) / f.numer() as u64
        });
    if s.name() != "video/x-h264" {
        st.h264 = None;
        st.started = true;
        site.encoded.start(StreamSetup {
            epoch,
            serial: 0,
            codec: Codec::Other {
                media_type: s.name().to_string(),
            },
            width: st.width,
            height: st.height,
            frame_ns: st.frame_ns,
        });
        return;
    }
    let aligned = s.get::<&str>("alignment").is_ok_and(|a| a == "au");
    if !aligned {
        warn!("H.264 arrives in NAL units, not access units: not passed through");
        st.h264 = None;
        return;
    }
    st.annexb = s
        .get::<&str>("stream-format")
        .is_ok_and(|f| f == "byte-stream");
    let avcc = s
        .get::<gst::Buffer>("codec_data")
        .ok()
        .and_then(|b| b.map_readable().ok().map(|m| m.as_slice().to_vec()));
    match avcc {
        Some(avcc) if !st.annexb => match h264::avcc_length_size(&avcc) {
            Ok(len) => {
                let same = st
                    .h264
                    .as_ref()
                    .is_some_and(|(a, l)| a.as_ref() == avcc.as_slice() && *l == len);
                if same && st.started {
                    return;
                }
                // Access units are rewritten with 4-byte lengths when they come with others.
                let record = if len == 4 {
                    Ok(avcc)
                } else {
                    h264::avcc_with_4_byte_lengths(&avcc)
                };
                match record {
                    Ok(record) => start_h264(st, site, epoch, record, len),
                    Err(e) => warn!(error = %e, "H.264 codec_data unusable"),
                }
            }
            Err(e) => warn!(error = %e, "H.264 codec_data unusable"),
        },
        // Annex B: the parameter sets come in-band, before the first key frame.
        _ => st.h264 = None,
    }
}

fn start_h264(st: &mut TapState, site: &SiteHub, epoch: u64, avcc: Vec<u8>, len: usize) {
    let avcc = Bytes::from(avcc);
    st.h264 = Some((avcc.clone(), len));
    st.started = true;
    st.seq = 0;
    st.prev_dts = None;
    st.deltas.clear();
    site.encoded.start(StreamSetup {
        epoch,
        serial: 0,
        codec: Codec::H264 { avcc },
        width: st.width,
        height: st.height,
        frame_ns: st.frame_ns,
    });
}

fn on_buffer(
    st: &mut TapState,
    site: &SiteHub,
    epoch: u64,
    buf: &gst::Buffer,
    now: chrono::DateTime<Utc>,
) -> Result<(), String> {
    if st.annexb {
        // Watch for parameter sets, and set the stream up once both are known (or changed).
        let map = buf.map_readable().map_err(|_| "cannot map buffer")?;
        let nals = h264::annexb_nals(map.as_slice());
        let mut changed = false;
        for n in &nals {
            let slot = match h264::nal_type(n) {
                h264::NAL_SPS => &mut st.sps,
                h264::NAL_PPS => &mut st.pps,
                _ => continue,
            };
            if slot.as_deref() != Some(*n) {
                *slot = Some(n.to_vec());
                changed = true;
            }
        }
        if changed || st.h264.is_none() {
            if let (Some(sps), Some(pps)) = (&st.sps, &st.pps) {
                let avcc = h264::avcc_from(sps, pps).map_err(|e| e.to_string())?;
                start_h264(st, site, epoch, avcc, 4);
            }
        }
    }
    let Some((_, len)) = st.h264.clone() else {
        return Ok(()); // not H.264, or not set up yet
    };
    let segment = st.segment.as_ref().ok_or("access unit before a segment")?;
    let pts = buf
        .pts()
        .or(buf.dts())
        .ok_or("access unit without a timestamp")?;
    let pts_rt = segment
        .to_running_time(pts)
        .ok_or("access unit outside its segment")?
        .nseconds();
    let dts_rt = buf
        .dts()
        .and_then(|d| segment.to_running_time(d))
        .map_or(pts_rt, |d| d.nseconds());
    // Pass-through bytes: the mapped buffer itself when it is already AVC with 4-byte lengths.
    let (data, key) = if st.annexb {
        let map = buf.map_readable().map_err(|_| "cannot map buffer")?;
        let nals = h264::annexb_nals(map.as_slice());
        let key = h264::has_idr(&nals);
        (Bytes::from(h264::to_avc(nals)), key)
    } else {
        let mapped = buf
            .clone()
            .into_mapped_buffer_readable()
            .map_err(|_| "cannot map buffer")?;
        let nals = h264::avc_nals(mapped.as_slice(), len).map_err(|e| e.to_string())?;
        let key = h264::has_idr(&nals);
        if len == 4 {
            (Bytes::from_owner(mapped), key)
        } else {
            (Bytes::from(h264::to_avc(nals)), key)
        }
    };
    if st.seq == 0 && !key {
        // A decoder needs a key frame first; viewers get the stream from the next one.
        return Ok(());
    }
    if let Some(prev) = st.prev_dts {
        if dts_rt > prev {
            st.deltas.push_back(dts_rt - prev);
            if st.deltas.len() > DELTAS {
                st.deltas.pop_front();
            }
        }
    }
    st.prev_dts = Some(dts_rt);
    let duration = st.duration();
    st.seq += 1;
    site.encoded.publish(EncodedFrame {
        media: MediaTime { epoch, ns: pts_rt },
        decode_offset_ns: dts_rt as i64 - pts_rt as i64,
        duration_ns: duration,
        key,
        seq: st.seq,
        arrived_at: now,
        data,
    });
    Ok(())
}

/// The media time of a decoded frame: its running time in the segment it came with. Decoders
/// keep timestamps, so this equals the tapped access unit's [`MediaTime`].
pub fn media_time(sample: &gst::Sample, epoch: u64) -> Option<MediaTime> {
    let buf = sample.buffer()?;
    let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    let pts = buf.pts()?;
    Some(MediaTime {
        epoch,
        ns: segment.to_running_time(pts)?.nseconds(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_is_the_median_interval() {
        let mut st = TapState::default();
        assert_eq!(st.duration(), DEFAULT_FRAME_NS);
        st.frame_ns = 33_366_666;
        assert_eq!(st.duration(), 33_366_666);
        // A jittery camera: one short interval does not make the next look like a gap.
        for d in [33, 34, 12, 54, 33, 33, 34] {
            st.deltas.push_back(d);
        }
        assert_eq!(st.duration(), 33);
    }
}
