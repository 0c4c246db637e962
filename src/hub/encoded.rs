//! A camera's own compressed video, as it arrived, for viewers that decode it themselves (the
//! browser wall plays it through Media Source Extensions): no decode, scale or encode on the
//! server, whatever the number of viewers.
//!
//! Ingest taps the parsed access units before its decoder and [`EncodedStream::publish`]es each
//! one; viewers [`EncodedStream::join`] and get, atomically, the stream's current codec setup and
//! every access unit since the last key frame (so a late joiner's decoder can start at once),
//! then a receiver of the live [`EncodedEvent`]s. The live channel is a bounded broadcast: a
//! viewer that cannot keep up lags, learns how much it missed, and resumes at the next key
//! frame; the camera never waits for anyone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::model::MediaTime;

/// Live events a viewer's receiver holds before it lags (one per access unit, about four
/// seconds of a 30 fps camera).
pub const LIVE_CAPACITY: usize = 128;
/// The late-joiner cache stops growing past this many bytes or access units: a camera with a
/// very long key-frame interval then makes late joiners wait for its next key frame instead of
/// holding megabytes per site.
pub const GOP_MAX_BYTES: usize = 16 << 20;
pub const GOP_MAX_FRAMES: usize = 600;

/// The compression of a camera's video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Codec {
    /// H.264 with its decoder configuration record (`avcC`: profile, level, SPS and PPS), as
    /// an MP4 `avc1` sample entry carries it. Access units are AVC: 4-byte big-endian lengths
    /// before each NAL unit.
    H264 { avcc: Bytes },
    /// Anything else (H.265, MJPEG, MPEG-4 ...), by its GStreamer media type: not passed
    /// through, the wall shows its burned-in tile instead.
    Other { media_type: String },
}

/// How one run of a camera's stream is coded. A new value starts a new stream for viewers
/// (their decoder is set up afresh): at every reconnect, and when the camera changes its
/// parameters mid-stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSetup {
    /// The camera pipeline run ([`MediaTime::epoch`]).
    pub epoch: u64,
    /// Counts setups over the life of the site, so a viewer can tell two apart.
    pub serial: u64,
    pub codec: Codec,
    /// Picture size, 0 when the stream did not say.
    pub width: u32,
    pub height: u32,
    /// Frame duration the stream declares, nanoseconds, 0 when unknown.
    pub frame_ns: u64,
}

/// One access unit (one picture) of the camera's compressed video.
#[derive(Clone, Debug)]
pub struct EncodedFrame {
    /// Presentation time on the media timeline (what analytics results are keyed by).
    pub media: MediaTime,
    /// Decode time minus presentation time, nanoseconds (negative with B-frames; 0 without).
    pub decode_offset_ns: i64,
    /// Time until the next frame in decode order, nanoseconds, as far as it is known at arrival
    /// (the previous frame's interval: a camera's frame rate is regular).
    pub duration_ns: u64,
    /// A key frame (IDR): decoding may start here.
    pub key: bool,
    /// Counts access units within the stream setup, from 1.
    pub seq: u64,
    /// Wall-clock arrival at ingest, before decoding.
    pub arrived_at: DateTime<Utc>,
    /// The access unit's bytes, in the format of [`Codec`].
    pub data: Bytes,
}

/// What viewers receive, in order.
#[derive(Clone, Debug)]
pub enum EncodedEvent {
    /// A new stream begins: set the decoder up for it; frames that follow belong to it.
    Start(Arc<StreamSetup>),
    Frame(Arc<EncodedFrame>),
    /// The camera's pipeline stopped (camera lost, site stopped): no frames until a `Start`.
    End,
}

#[derive(Default)]
struct State {
    setup: Option<Arc<StreamSetup>>,
    /// Access units since the last key frame of the current setup, while within bounds.
    gop: VecDeque<Arc<EncodedFrame>>,
    gop_bytes: usize,
    /// The cache overflowed: it stays empty until the next key frame.
    gop_overflow: bool,
}

/// What a joining viewer starts from.
pub struct Joined {
    /// The stream now, or `None` while the camera delivers nothing.
    pub setup: Option<Arc<StreamSetup>>,
    /// Every access unit since the last key frame, key frame first (may be empty: the viewer
    /// then waits for the next key frame).
    pub gop: Vec<Arc<EncodedFrame>>,
    /// Everything published after `gop`.
    pub live: broadcast::Receiver<EncodedEvent>,
}

/// One site's compressed video, shared by ingest (one publisher) and any number of viewers.
pub struct EncodedStream {
    state: Mutex<State>,
    tx: broadcast::Sender<EncodedEvent>,
    serial: AtomicU64,
}

impl Default for EncodedStream {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            tx: broadcast::channel(LIVE_CAPACITY).0,
            serial: AtomicU64::new(0),
        }
    }
}

impl EncodedStream {
    /// Starts a new stream setup (the `serial` field is filled in here); returns it.
    pub fn start(&self, mut setup: StreamSetup) -> Arc<StreamSetup> {
        setup.serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let setup = Arc::new(setup);
        let mut st = self.state.lock();
        st.setup = Some(setup.clone());
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_overflow = false;
        // Sent under the lock, so a viewer joining meanwhile sees either the old state and
        // this event, or the new state and nothing twice. No receivers is not an error.
        let _ = self.tx.send(EncodedEvent::Start(setup.clone()));
        setup
    }

    /// The stream as it is now.
    pub fn setup(&self) -> Option<Arc<StreamSetup>> {
        self.state.lock().setup.clone()
    }

    /// Publishes an access unit of the current setup. Never blocks on viewers.
    pub fn publish(&self, frame: EncodedFrame) {
        let frame = Arc::new(frame);
        let mut st = self.state.lock();
        if frame.key {
            st.gop.clear();
            st.gop_bytes = 0;
            st.gop_overflow = false;
        }
        if !st.gop_overflow {
            st.gop_bytes += frame.data.len();
            st.gop.push_back(frame.clone());
            if st.gop_bytes > GOP_MAX_BYTES || st.gop.len() > GOP_MAX_FRAMES {
                st.gop.clear();
                st.gop_bytes = 0;
                st.gop_overflow = true;
            }
        }
        let _ = self.tx.send(EncodedEvent::Frame(frame));
    }

    /// The camera's pipeline stopped: viewers are told, late joiners get nothing to decode.
    pub fn end(&self) {
        let mut st = self.state.lock();
        if st.setup.take().is_none() {
            return;
        }
        st.gop.clear();
        st.gop_bytes = 0;
        st.gop_overflow = false;
        let _ = self.tx.send(EncodedEvent::End);
    }

    /// A new viewer: the current setup and GOP, and the live events after them.
    pub fn join(&self) -> Joined {
        let st = self.state.lock();
        Joined {
            setup: st.setup.clone(),
            gop: st.gop.iter().cloned().collect(),
            live: self.tx.subscribe(),
        }
    }

    /// Viewers subscribed now.
    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(epoch: u64) -> StreamSetup {
        StreamSetup {
            epoch,
            serial: 0,
            codec: Codec::H264 {
                avcc: Bytes::from_static(&[1, 0x64, 0, 0x1e]),
            },
            width: 640,
            height: 360,
            frame_ns: 40_000_000,
        }
    }

    fn frame(seq: u64, key: bool, len: usize) -> EncodedFrame {
        EncodedFrame {
            media: MediaTime {
                epoch: 1,
                ns: seq * 40_000_000,
            },
            decode_offset_ns: 0,
            duration_ns: 40_000_000,
            key,
            seq,
            arrived_at: Utc::now(),
            data: Bytes::from(vec![0u8; len]),
        }
    }

    fn seqs(frames: &[Arc<EncodedFrame>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn late_joiner_gets_the_gop_since_the_last_key_frame_then_live() {
        let s = EncodedStream::default();
        let j = s.join();
        assert!(j.setup.is_none() && j.gop.is_empty());
        let first = s.start(setup(1));
        assert_eq!(first.serial, 1);
        for (seq, key) in [(1, true), (2, false), (3, true), (4, false), (5, false)] {
            s.publish(frame(seq, key, 10));
        }
        let mut j = s.join();
        assert_eq!(j.setup.as_ref().map(|s| s.epoch), Some(1));
        assert_eq!(seqs(&j.gop), [3, 4, 5]);
        s.publish(frame(6, false, 10));
        match j.live.try_recv() {
            Ok(EncodedEvent::Frame(f)) => assert_eq!(f.seq, 6),
            other => panic!("{other:?}"),
        }
        s.end();
        assert!(matches!(j.live.try_recv(), Ok(EncodedEvent::End)));
        let after = s.join();
        assert!(after.setup.is_none() && after.gop.is_empty());
        s.end(); // twice: no second End
        assert!(j.live.try_recv().is_err());
        assert_eq!(s.start(setup(2)).serial, 2);
        assert!(matches!(j.live.try_recv(), Ok(EncodedEvent::Start(st)) if st.epoch == 2));
    }

    #[test]
    fn oversized_gop_is_dropped_until_the_next_key_frame() {
        let s = EncodedStream::default();
        s.start(setup(1));
        s.publish(frame(1, true, 10));
        for seq in 2..=(GOP_MAX_FRAMES as u64 + 1) {
            s.publish(frame(seq, false, 10));
        }
        assert!(s.join().gop.is_empty(), "over the frame bound");
        s.publish(frame(1000, false, 10));
        assert!(s.join().gop.is_empty(), "stays empty until a key frame");
        s.publish(frame(1001, true, 10));
        assert_eq!(seqs(&s.join().gop), [1001]);
        s.publish(frame(1002, false, GOP_MAX_BYTES));
        assert!(s.join().gop.is_empty(), "over the byte bound");
    }

    /// A viewer that does not read lags instead of holding the camera: the publisher goes on,
    /// and the viewer learns how many events it missed.
    #[test]
    fn slow_viewer_lags_and_never_blocks() {
        let s = EncodedStream::default();
        s.start(setup(1));
        let mut j = s.join();
        for seq in 1..=(LIVE_CAPACITY as u64 * 3) {
            s.publish(frame(seq, seq % 30 == 1, 100));
        }
        match j.live.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                assert_eq!(n, LIVE_CAPACITY as u64 * 2)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.viewers(), 1);
        drop(j);
        assert_eq!(s.viewers(), 0);
    }
}
