//! The bench's clock camera: a live RTSP camera whose pictures carry their own capture time, for
//! the wall's glass-to-glass delay (`simpang bench --browsers N`).
//!
//! `videotestsrc is-live` makes 640x360 pictures at 25 fps on the pipeline clock; as each leaves
//! the source, a pad probe writes the wall clock (Unix milliseconds, [`stamp`]) into the top of the
//! picture as 48 black/white 40x40 blocks; x264 (zerolatency, ultrafast, one key frame a second)
//! encodes it and gst-rtsp-server serves it on loopback like a camera. The trial's site for it
//! reads it over RTSP as any camera; the browsers decode the blocks of each presented frame
//! ([`super::browsers::G2G_JS`]). Both ends read the same machine clock, so the difference is the
//! whole path: encoder, RTSP, ingest, passthrough fMP4 over the WebSocket, MSE, decode, display.
//!
//! It runs in the harness, not in the measured process: its encoder's CPU is the harness's.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tracing::warn;

use super::BenchError;

/// Picture size and rate of the clock camera.
pub const WIDTH: u32 = 640;
pub const HEIGHT: u32 = 360;
pub const FPS: u32 = 25;
/// Blocks per row and rows of the stamp; each block is [`BLOCK`] pixels square.
pub const COLS: usize = 16;
pub const ROWS: usize = 3;
pub const BLOCK: usize = 40;
/// The RTSP path.
pub const PATH: &str = "/clock";

/// The 48 bits of the stamp for `unix_ms`: its low 40 bits, most significant first, then the
/// XOR of those five bytes (a frame the encoder smeared fails the check instead of giving a
/// wrong time).
pub fn stamp_bits(unix_ms: u64) -> [bool; COLS * ROWS] {
    let ms = unix_ms & ((1 << 40) - 1);
    let check = (0..5).fold(0u64, |c, k| c ^ ((ms >> (8 * k)) & 0xff));
    let mut bits = [false; COLS * ROWS];
    for (i, b) in bits.iter_mut().enumerate().take(40) {
        *b = (ms >> (39 - i)) & 1 == 1;
    }
    for i in 0..8 {
        bits[40 + i] = (check >> (7 - i)) & 1 == 1;
    }
    bits
}

/// The inverse of [`stamp_bits`]; `None` if the check fails.
pub fn read_stamp(bits: &[bool; COLS * ROWS]) -> Option<u64> {
    let ms = bits[..40]
        .iter()
        .fold(0u64, |v, &b| (v << 1) | u64::from(b));
    let check = bits[40..]
        .iter()
        .fold(0u64, |v, &b| (v << 1) | u64::from(b));
    let want = (0..5).fold(0u64, |c, k| c ^ ((ms >> (8 * k)) & 0xff));
    (want == check).then_some(ms)
}

/// Writes [`stamp_bits`] of `unix_ms` into an I420 frame: white (Y 235) or black (Y 16) blocks
/// with neutral chroma.
pub fn stamp(frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>, unix_ms: u64) {
    let bits = stamp_bits(unix_ms);
    let strides: Vec<usize> = frame
        .plane_stride()
        .iter()
        .map(|&s| s.max(0) as usize)
        .collect();
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    for (plane, sub) in [(0u32, 1usize), (1, 2), (2, 2)] {
        let stride = strides.get(plane as usize).copied().unwrap_or(0);
        let Ok(data) = frame.plane_data_mut(plane) else {
            continue;
        };
        for (i, &bit) in bits.iter().enumerate() {
            let (x0, y0) = ((i % COLS) * BLOCK / sub, (i / COLS) * BLOCK / sub);
            let value = match (plane, bit) {
                (0, true) => 235,
                (0, false) => 16,
                _ => 128,
            };
            for y in y0..(y0 + BLOCK / sub).min(h / sub) {
                let start = y * stride + x0;
                let end = (start + BLOCK / sub).min(y * stride + w / sub);
                if let Some(row) = data.get_mut(start..end) {
                    row.fill(value);
                }
            }
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A running clock camera, `rtsp://127.0.0.1:PORT/clock`; stopped on drop.
pub struct ClockCamera {
    port: u16,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClockCamera {
    pub fn start() -> Result<ClockCamera, BenchError> {
        gst::init().map_err(|e| BenchError::Gst(e.to_string()))?;
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service("0");
        let mounts = server
            .mount_points()
            .ok_or_else(|| BenchError::Gst("RTSP server has no mount points".into()))?;
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&format!(
            "( videotestsrc is-live=true pattern=ball \
             ! video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1 \
             ! identity name=stamp \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={FPS} bitrate=1500 \
             ! video/x-h264,profile=constrained-baseline \
             ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        ));
        factory.set_shared(true);
        factory.connect_media_configure(|_, media| {
            let pad = media
                .element()
                .dynamic_cast_ref::<gst::Bin>()
                .and_then(|b| b.by_name("stamp"))
                .and_then(|e| e.static_pad("sink"));
            let Some(pad) = pad else {
                warn!("clock camera media has no stamp element");
                return;
            };
            let Ok(info) =
                gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, WIDTH, HEIGHT).build()
            else {
                return;
            };
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, probe| {
                if let Some(gst::PadProbeData::Buffer(ref mut buffer)) = probe.data {
                    let b = buffer.make_mut();
                    if let Ok(mut frame) =
                        gst_video::VideoFrameRef::from_buffer_ref_writable(b, &info)
                    {
                        stamp(&mut frame, unix_ms());
                    }
                }
                gst::PadProbeReturn::Ok
            });
        });
        mounts.add_factory(PATH, factory);
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let source_id = ctx
            .with_thread_default(|| server.attach(Some(&ctx)))
            .map_err(|e| BenchError::Gst(format!("clock camera: main context: {e}")))?
            .map_err(|e| BenchError::Gst(format!("clock camera: cannot listen: {e}")))?;
        let bound = server.bound_port();
        if bound <= 0 {
            return Err(BenchError::Gst("clock camera: no port".into()));
        }
        let ml = main_loop.clone();
        let thread = std::thread::Builder::new()
            .name("clock-camera".into())
            .spawn(move || {
                let _keep = (server, source_id);
                if ctx.with_thread_default(|| ml.run()).is_err() {
                    warn!("clock camera's main loop could not own its context");
                }
            })
            .map_err(|error| BenchError::Io {
                what: "cannot start the clock camera".into(),
                error,
            })?;
        Ok(ClockCamera {
            port: bound as u16,
            main_loop,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{PATH}", self.port)
    }
}

impl Drop for ClockCamera {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back_and_catch_a_flipped_block() {
        for ms in [0u64, 1, 1_765_000_000_123, (1 << 40) - 1] {
            let bits = stamp_bits(ms);
            // only the low 40 bits travel (Unix ms today are past 2^40)
            assert_eq!(read_stamp(&bits), Some(ms & ((1 << 40) - 1)), "{ms}");
            for flip in [0, 17, 39, 47] {
                let mut b = bits;
                b[flip] = !b[flip];
                assert_eq!(read_stamp(&b), None, "{ms} with block {flip} flipped");
            }
        }
        // only the low 40 bits travel
        assert_eq!(read_stamp(&stamp_bits((1 << 40) + 5)), Some(5));
    }

    #[test]
    fn stamp_paints_blocks_into_an_i420_frame() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, WIDTH, HEIGHT)
            .build()
            .unwrap();
        let mut buffer = gst::Buffer::with_size(info.size()).unwrap();
        let ms = 1_765_000_000_777u64;
        {
            let b = buffer.get_mut().unwrap();
            let mut f = gst_video::VideoFrameRef::from_buffer_ref_writable(b, &info).unwrap();
            stamp(&mut f, ms);
        }
        let f = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), &info).unwrap();
        let y = f.plane_data(0).unwrap();
        let stride = f.plane_stride()[0] as usize;
        let mut bits = [false; COLS * ROWS];
        for (i, b) in bits.iter_mut().enumerate() {
            let (cx, cy) = (
                (i % COLS) * BLOCK + BLOCK / 2,
                (i / COLS) * BLOCK + BLOCK / 2,
            );
            *b = y[cy * stride + cx] > 128;
        }
        assert_eq!(read_stamp(&bits), Some(ms & ((1 << 40) - 1)));
    }
}
