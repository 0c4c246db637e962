//! JPEG encoding of I420 tiles with GStreamer's `jpegenc` (libjpeg-turbo).
//!
//! `jpegenc` takes the planar YCbCr as it is (libjpeg's raw-data path): no colour conversion,
//! unlike OpenCV's `imencode`, which wants BGR and converts it back to YCbCr internally.

use axum::body::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::WallError;
use crate::model::{Image, PixelFormat};

/// A small `appsrc ! jpegenc ! appsink` pipeline used synchronously: push one tile, pull one
/// JPEG.
pub struct JpegEncoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
    size: Option<(u32, u32)>,
    n: u64,
}

impl JpegEncoder {
    pub fn new(quality: u8) -> Result<Self, WallError> {
        let line = format!(
            "appsrc name=src format=time is-live=false block=false \
             ! jpegenc quality={} ! appsink name=sink sync=false max-buffers=4 drop=false",
            quality.clamp(1, 100)
        );
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| WallError::Gst(format!("JPEG encoder: {e}")))?
            .dynamic_cast::<gst::Pipeline>()
            .map_err(|_| WallError::Gst("JPEG encoder is not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| WallError::Gst("JPEG encoder has no appsrc".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .ok_or_else(|| WallError::Gst("JPEG encoder has no appsink".into()))?;
        // jpegenc runs on the appsrc's streaming thread: lower its priority with the wall's.
        if let Some(pad) = pipeline.by_name("src").and_then(|e| e.static_pad("src")) {
            pad.add_probe(gst::PadProbeType::BUFFER, |_, _| {
                super::metrics::deprioritize_current_thread();
                gst::PadProbeReturn::Ok
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| WallError::Gst(format!("JPEG encoder cannot start: {e}")))?;
        Ok(Self {
            pipeline,
            src,
            sink,
            size: None,
            n: 0,
        })
    }

    /// Encodes one I420 image.
    pub fn encode(&mut self, img: &Image) -> Result<Bytes, WallError> {
        if img.format != PixelFormat::I420 || !img.is_valid() {
            return Err(WallError::Gst(format!(
                "JPEG encoder takes valid I420, got {}x{} {:?}",
                img.width, img.height, img.format
            )));
        }
        if self.size != Some((img.width, img.height)) {
            let info =
                gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, img.width, img.height)
                    .fps(gst::Fraction::new(0, 1))
                    .build()
                    .map_err(|e| WallError::Gst(format!("JPEG caps: {e}")))?;
            let caps = info
                .to_caps()
                .map_err(|e| WallError::Gst(format!("JPEG caps: {e}")))?;
            self.src.set_caps(Some(&caps));
            self.size = Some((img.width, img.height));
        }
        let buf = i420_buffer(img, gst::ClockTime::from_mseconds(self.n * 40))?;
        self.n += 1;
        self.src
            .push_buffer(buf)
            .map_err(|e| WallError::Gst(format!("JPEG encoder refused a frame: {e:?}")))?;
        let sample = self
            .sink
            .try_pull_sample(gst::ClockTime::from_seconds(2))
            .ok_or_else(|| WallError::Gst("JPEG encoder produced nothing in 2 s".into()))?;
        let out = sample
            .buffer()
            .ok_or_else(|| WallError::Gst("JPEG sample without buffer".into()))?
            .map_readable()
            .map_err(|_| WallError::Gst("cannot map JPEG buffer".into()))?;
        Ok(Bytes::copy_from_slice(out.as_slice()))
    }
}

/// A GStreamer buffer holding a copy of an I420 image, stamped `pts`.
///
/// Our [`Image`] rows are unpadded; GStreamer's default I420 layout pads rows to 4 bytes, so the
/// real layout travels as a video meta rather than assuming the two agree.
pub fn i420_buffer(img: &Image, pts: gst::ClockTime) -> Result<gst::Buffer, WallError> {
    let mut buf = gst::Buffer::from_slice(img.data.clone());
    let b = buf
        .get_mut()
        .ok_or_else(|| WallError::Gst("new buffer not writable".into()))?;
    b.set_pts(pts);
    b.set_dts(pts);
    let (w, h) = (img.width, img.height);
    let ys = (w * h) as usize;
    let cw = w.div_ceil(2);
    gst_video::VideoMeta::add_full(
        b,
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::I420,
        w,
        h,
        &[0, ys, ys + (cw * h.div_ceil(2)) as usize],
        &[w as i32, cw as i32, cw as i32],
    )
    .map_err(|e| WallError::Gst(format!("video meta: {e}")))?;
    Ok(buf)
}

impl Drop for JpegEncoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::prelude::*;

    #[test]
    fn encodes_i420_and_decodes_back_same_size() {
        gst::init().unwrap();
        let mut enc = JpegEncoder::new(80).unwrap();
        // 642 wide: the chroma rows (321) are not 4-byte aligned, GStreamer's default would be.
        for (w, h) in [(640, 360), (642, 362), (640, 360)] {
            let mut img = Image::with_format(w, h, PixelFormat::I420);
            for (i, p) in img.data[..(w * h) as usize].iter_mut().enumerate() {
                *p = ((i as u32 % w) * 200 / w) as u8 + 16;
            }
            let jpeg = enc.encode(&img).unwrap();
            assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
            let v = opencv::core::Vector::<u8>::from_slice(&jpeg);
            let m = opencv::imgcodecs::imdecode(&v, opencv::imgcodecs::IMREAD_GRAYSCALE).unwrap();
            assert_eq!((m.cols(), m.rows()), (w as i32, h as i32));
            // the horizontal ramp survives: left dark, right bright, no row shear
            let l = *m.at_2d::<u8>(h as i32 / 2, 5).unwrap();
            let r = *m.at_2d::<u8>(h as i32 / 2, w as i32 - 5).unwrap();
            let r_top = *m.at_2d::<u8>(5, w as i32 - 5).unwrap();
            assert!(l < 40 && r > 180 && r_top > 180, "{l} {r} {r_top}");
        }
        let bad = Image::new(4, 4);
        assert!(enc.encode(&bad).is_err());
    }
}
