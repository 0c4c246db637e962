//! Pre-processing: an 8-bit frame → the model's normalised f32 input tensor, written into a
//! buffer that lives as long as the session (no allocation per frame).
//!
//! Fast path: a BGR frame already at the input size (what the analytics branch delivers) is
//! converted in one pass: each pixel is read once and its three channels are written to their
//! planes as `v * scale + bias`, with the channel order of the manifest.
//! Slow path: other sizes and I420 frames go through OpenCV (convert, bilinear resize) into a
//! reused `Mat` first.

use opencv::core::{Mat, Size};
use opencv::imgproc;
use opencv::prelude::*;

use super::manifest::{ColorOrder, InputSpec, Layout};
use crate::model::{Image, PixelFormat};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("bad frame: {0}")]
    BadFrame(String),
    #[error("resizing the frame: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// Per-channel affine normalisation in the model's channel order.
#[derive(Clone, Debug)]
pub struct Normalizer {
    /// For model channel `c`, the byte of a BGR pixel it reads.
    src: [usize; 3],
    scale: [f32; 3],
    bias: [f32; 3],
    layout: Layout,
}

impl Normalizer {
    pub fn new(input: &InputSpec) -> Self {
        let src = match input.color {
            ColorOrder::Bgr => [0, 1, 2],
            ColorOrder::Rgb => [2, 1, 0],
        };
        let mut scale = [0.0; 3];
        let mut bias = [0.0; 3];
        for c in 0..3 {
            // (v - mean) / std, folded into one multiply-add
            scale[c] = 1.0 / input.std[c];
            bias[c] = -input.mean[c] / input.std[c];
        }
        Self {
            src,
            scale,
            bias,
            layout: input.layout,
        }
    }

    /// Writes `bgr` (packed, `out.len() / 3` pixels) normalised into `out`.
    pub fn run(&self, bgr: &[u8], out: &mut [f32]) {
        let hw = out.len() / 3;
        let bgr = &bgr[..hw * 3];
        let [s0, s1, s2] = self.src;
        let [k0, k1, k2] = self.scale;
        let [b0, b1, b2] = self.bias;
        match self.layout {
            Layout::Nchw => {
                let (p0, rest) = out.split_at_mut(hw);
                let (p1, p2) = rest.split_at_mut(hw);
                for (((px, a), b), c) in bgr.chunks_exact(3).zip(p0).zip(p1).zip(p2) {
                    *a = px[s0] as f32 * k0 + b0;
                    *b = px[s1] as f32 * k1 + b1;
                    *c = px[s2] as f32 * k2 + b2;
                }
            }
            Layout::Nhwc => {
                for (px, o) in bgr.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                    o[0] = px[s0] as f32 * k0 + b0;
                    o[1] = px[s1] as f32 * k1 + b1;
                    o[2] = px[s2] as f32 * k2 + b2;
                }
            }
        }
    }
}

/// Reused intermediate pictures of the slow path.
#[derive(Default)]
pub struct SlowPath {
    bgr: Mat,
    resized: Mat,
}

/// Checks that `img` is a well-formed picture.
pub fn check_image(img: &Image) -> Result<(), PreprocessError> {
    if img.width == 0 || img.height == 0 {
        return Err(PreprocessError::BadFrame(format!(
            "empty {}x{} picture",
            img.width, img.height
        )));
    }
    if !img.is_valid() {
        return Err(PreprocessError::BadFrame(format!(
            "{}x{} {:?} picture has {} bytes, expected {}",
            img.width,
            img.height,
            img.format,
            img.data.len(),
            Image::byte_len(img.width, img.height, img.format)
        )));
    }
    if img.format == PixelFormat::I420
        && (!img.width.is_multiple_of(2) || !img.height.is_multiple_of(2))
    {
        return Err(PreprocessError::BadFrame(format!(
            "I420 picture {}x{} must have even sides",
            img.width, img.height
        )));
    }
    Ok(())
}

/// Whether `img` takes the one-pass fast path for a `w` x `h` input.
pub fn is_fast(img: &Image, w: u32, h: u32) -> bool {
    img.format == PixelFormat::Bgr && img.width == w && img.height == h
}

/// Normalises `img` into `out` (`3*w*h` values), resizing (bilinear, no aspect kept: the same
/// stretch the analytics branch applies) and converting I420 first where needed.
pub fn preprocess(
    img: &Image,
    w: u32,
    h: u32,
    norm: &Normalizer,
    slow: &mut SlowPath,
    out: &mut [f32],
) -> Result<(), PreprocessError> {
    check_image(img)?;
    debug_assert_eq!(out.len(), 3 * w as usize * h as usize);
    if is_fast(img, w, h) {
        norm.run(&img.data, out);
        return Ok(());
    }
    let ih = img.height as i32;
    let size = Size::new(w as i32, h as i32);
    let flat = Mat::from_slice(&img.data)?;
    match img.format {
        PixelFormat::Bgr => {
            let bgr = flat.reshape(3, ih)?;
            imgproc::resize(
                &bgr,
                &mut slow.resized,
                size,
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )?;
        }
        PixelFormat::I420 => {
            let yuv = flat.reshape(1, ih * 3 / 2)?;
            imgproc::cvt_color(&yuv, &mut slow.bgr, imgproc::COLOR_YUV2BGR_I420, 0)?;
            if (img.width, img.height) == (w, h) {
                norm.run(slow.bgr.data_bytes()?, out);
                return Ok(());
            }
            imgproc::resize(
                &slow.bgr,
                &mut slow.resized,
                size,
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )?;
        }
    }
    norm.run(slow.resized.data_bytes()?, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(color: ColorOrder, layout: Layout) -> InputSpec {
        InputSpec {
            name: None,
            width: 2,
            height: 1,
            layout,
            color,
            mean: [10.0, 20.0, 30.0],
            std: [2.0, 4.0, 5.0],
            dynamic: false,
        }
    }

    // two pixels: (B,G,R) = (12, 24, 35) and (0, 255, 30)
    const PX: [u8; 6] = [12, 24, 35, 0, 255, 30];

    #[test]
    fn nchw_bgr() {
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Bgr, Layout::Nchw)).run(&PX, &mut out);
        let want = [1.0, -5.0, 1.0, 58.75, 1.0, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn nchw_rgb_reads_channels_swapped() {
        // model channel 0 = R with mean 10 / std 2, channel 2 = B with mean 30 / std 5
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Rgb, Layout::Nchw)).run(&PX, &mut out);
        let want = [12.5, 10.0, 1.0, 58.75, -3.6, -6.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn nhwc_bgr() {
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Bgr, Layout::Nhwc)).run(&PX, &mut out);
        let want = [1.0, 1.0, 1.0, -5.0, 58.75, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn slow_path_resizes_and_converts() {
        let norm = Normalizer::new(&InputSpec {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..spec(ColorOrder::Bgr, Layout::Nchw)
        });
        let mut slow = SlowPath::default();
        // uniform BGR (50, 100, 150) at 8x6 → 4x4
        let mut img = Image::new(8, 6);
        for px in img.data.chunks_exact_mut(3) {
            px.copy_from_slice(&[50, 100, 150]);
        }
        let mut out = vec![0.0; 3 * 16];
        preprocess(&img, 4, 4, &norm, &mut slow, &mut out).unwrap();
        assert!(out[..16].iter().all(|&v| v == 50.0));
        assert!(out[32..].iter().all(|&v| v == 150.0));
        // I420 mid-grey (Y=128, U=V=128) at the input size → grey BGR
        let mut yuv = Image::with_format(4, 4, PixelFormat::I420);
        yuv.data[..16].fill(128);
        preprocess(&yuv, 4, 4, &norm, &mut slow, &mut out).unwrap();
        assert!(out.iter().all(|&v| (v - 130.0).abs() < 4.0), "{out:?}");
    }

    #[test]
    fn bad_frames_are_errors() {
        let norm = Normalizer::new(&spec(ColorOrder::Bgr, Layout::Nchw));
        let mut slow = SlowPath::default();
        let mut out = vec![0.0; 6];
        let short = Image {
            width: 2,
            height: 1,
            format: PixelFormat::Bgr,
            data: vec![0; 5],
        };
        let empty = Image::new(0, 0);
        let odd = Image {
            width: 3,
            height: 3,
            format: PixelFormat::I420,
            data: vec![0; Image::byte_len(3, 3, PixelFormat::I420)],
        };
        for img in [short, empty, odd] {
            let e = preprocess(&img, 2, 1, &norm, &mut slow, &mut out).unwrap_err();
            assert!(matches!(e, PreprocessError::BadFrame(_)), "{e}");
        }
    }
}
