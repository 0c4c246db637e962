//! Getting pictures out of GStreamer buffers, and deciding which frames analytics gets.

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::model::{Image, PixelFormat};

/// Copies a mapped BGR or I420 video frame into `out`, dropping the row padding GStreamer may
/// add (rows are aligned, so `width * 3` is not the stride). Reuses `out`'s allocation.
pub fn copy_frame(
    buffer: &gst::BufferRef,
    info: &gst_video::VideoInfo,
    out: &mut Image,
) -> Result<(), String> {
    let format = match info.format() {
        gst_video::VideoFormat::Bgr => PixelFormat::Bgr,
        gst_video::VideoFormat::I420 => PixelFormat::I420,
        other => return Err(format!("unexpected pixel format {other:?}")),
    };
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, info)
        .map_err(|_| "cannot map video buffer".to_string())?;
    let (w, h) = (info.width(), info.height());
    out.width = w;
    out.height = h;
    out.format = format;
    out.data.clear();
    out.data.reserve(Image::byte_len(w, h, format));
    let planes: &[(u32, usize, usize)] = match format {
        // (plane, bytes per row, rows)
        PixelFormat::Bgr => &[(0, w as usize * 3, h as usize)],
        PixelFormat::I420 => {
            let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
            &[(0, w as usize, h as usize), (1, cw, ch), (2, cw, ch)][..]
        }
    };
    for &(plane, row_bytes, rows) in planes {
        let data = frame
            .plane_data(plane)
            .map_err(|_| format!("plane {plane} missing"))?;
        let stride = frame.plane_stride()[plane as usize] as usize;
        if stride < row_bytes || data.len() < stride * (rows - 1) + row_bytes {
            return Err(format!(
                "plane {plane}: stride {stride} / {} bytes too small for {rows} rows of {row_bytes}",
                data.len()
            ));
        }
        if stride == row_bytes {
            out.data.extend_from_slice(&data[..row_bytes * rows]);
        } else {
            for r in 0..rows {
                out.data
                    .extend_from_slice(&data[r * stride..r * stride + row_bytes]);
            }
        }
    }
    Ok(())
}

/// Decides, by presentation time, which frames go to analytics: the detect rate, evenly spaced,
/// whatever the source rate (a 29.97 fps camera at 5 fps detection keeps every 6th frame or so,
/// drifting correctly). Dropping here, before scaling, means the scaler only sees kept frames.
#[derive(Clone, Debug)]
pub struct RateGate {
    interval_ns: u64,
    next_due: Option<u64>,
}

impl RateGate {
    pub fn new(fps: f64) -> Self {
        Self {
            interval_ns: (1e9 / fps.max(1e-3)) as u64,
            next_due: None,
        }
    }

    /// True if the frame at `pts_ns` should go to analytics.
    pub fn admit(&mut self, pts_ns: u64) -> bool {
        // Accept frames a little early: a 30 fps source at 5 fps would otherwise lose a frame to
        // rounding now and then and deliver 4.8 fps.
        let slack = self.interval_ns / 8;
        match self.next_due {
            Some(due) if pts_ns + slack < due => {
                // Time went backwards (a file looped, a camera restarted its clock): start over.
                if pts_ns + 2 * self.interval_ns < due {
                    self.next_due = Some(pts_ns + self.interval_ns);
                    return true;
                }
                false
            }
            Some(due) => {
                let mut next = due + self.interval_ns;
                if next <= pts_ns {
                    // Fell behind (a gap in the stream): resume the cadence from this frame.
                    next = pts_ns + self.interval_ns;
                }
                self.next_due = Some(next);
                true
            }
            None => {
                self.next_due = Some(pts_ns + self.interval_ns);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(gate: &mut RateGate, fps_in: f64, seconds: f64, start_ns: u64) -> usize {
        let n = (fps_in * seconds) as u64;
        (0..n)
            .filter(|i| gate.admit(start_ns + (*i as f64 * 1e9 / fps_in) as u64))
            .count()
    }

    #[test]
    fn rate_gate_keeps_detect_rate() {
        let cases = [
            (30000.0 / 1001.0, 5.0, 50),
            (25.0, 5.0, 50),
            (10.0, 5.0, 50),
            (10.0, 2.5, 25),
            (3.0, 5.0, 30), // slower source: everything passes
            (25.0, 25.0, 250),
        ];
        for (fps_in, fps_out, want) in cases {
            let mut g = RateGate::new(fps_out);
            let got = admitted(&mut g, fps_in, 10.0, 0);
            assert!(
                (got as i64 - want as i64).abs() <= 1,
                "{fps_in} -> {fps_out}: {got} != {want}"
            );
        }
    }

    #[test]
    fn rate_gate_survives_loop_and_gap() {
        let mut g = RateGate::new(5.0);
        assert_eq!(admitted(&mut g, 25.0, 10.0, 0), 50);
        // file looped: timestamps restart at 0
        assert_eq!(admitted(&mut g, 25.0, 10.0, 0), 50);
        // a 60 s gap then frames again
        assert_eq!(admitted(&mut g, 25.0, 2.0, 70_000_000_000), 10);
    }

    #[test]
    fn copy_bgr_with_padding() {
        gst::init().unwrap();
        // 3x2 BGR: rows of 9 bytes, GStreamer pads them to 12.
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Bgr, 3, 2)
            .build()
            .unwrap();
        assert_eq!(info.stride()[0], 12);
        let mut raw = vec![0u8; info.size()];
        for r in 0..2 {
            for c in 0..9 {
                raw[r * 12 + c] = (r * 9 + c) as u8;
            }
        }
        let buf = gst::Buffer::from_slice(raw);
        let mut img = Image::default();
        copy_frame(&buf, &info, &mut img).unwrap();
        assert_eq!(img.data, (0..18).collect::<Vec<u8>>());
        assert!(img.is_valid());
    }

    #[test]
    fn copy_i420_odd_size() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 6, 4)
            .build()
            .unwrap();
        let buf = gst::Buffer::from_slice(vec![7u8; info.size()]);
        let mut img = Image::default();
        copy_frame(&buf, &info, &mut img).unwrap();
        assert_eq!(img.format, PixelFormat::I420);
        assert_eq!(img.data.len(), 6 * 4 + 2 * 3 * 2);
        assert!(img.is_valid());
        let bad = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgba, 2, 2)
            .build()
            .unwrap();
        let buf = gst::Buffer::from_slice(vec![0u8; bad.size()]);
        assert!(copy_frame(&buf, &bad, &mut img).is_err());
    }
}
