//! Pre-processing: an 8-bit frame → the model's input tensor (normalised f32, or uint8 for a
//! quantised input), written into a buffer that lives as long as the session (no allocation
//! per frame).
//!
//! Fast path: a BGR frame already at the input size (what the analytics branch delivers) is
//! converted in one pass: each pixel is read once and its three channels are written where the
//! layout puts them, as `v * scale + bias` (f32) or through a 256-entry table per channel
//! (uint8: normalise, quantise, clamp), with the channel order of the manifest.
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

/// Input tensors of a session, back to back, in the model's element type.
#[derive(Clone, Debug)]
pub enum InputBuf {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// One image's part of an [`InputBuf`].
pub enum InputSlot<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8]),
}

impl InputBuf {
    /// `len` zero values of the element type `input` asks for.
    pub fn zeros(input: &InputSpec, len: usize) -> InputBuf {
        match input.quantized {
            Some(_) => InputBuf::U8(vec![0; len]),
            None => InputBuf::F32(vec![0.0; len]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            InputBuf::F32(v) => v.len(),
            InputBuf::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values `range` (one image of a batch).
    pub fn slot(&mut self, range: std::ops::Range<usize>) -> InputSlot<'_> {
        match self {
            InputBuf::F32(v) => InputSlot::F32(&mut v[range]),
            InputBuf::U8(v) => InputSlot::U8(&mut v[range]),
        }
    }
}

impl InputSlot<'_> {
    fn len(&self) -> usize {
        match self {
            InputSlot::F32(v) => v.len(),
            InputSlot::U8(v) => v.len(),
        }
    }
}

/// Per-channel affine normalisation in the model's channel order, and the layout it writes.
#[derive(Clone, Debug)]
pub struct Normalizer {
    /// For model channel `c`, the byte of a BGR pixel it reads.
    src: [usize; 3],
    scale: [f32; 3],
    bias: [f32; 3],
    layout: Layout,
    /// For a quantised input: per model channel, the byte each pixel value becomes.
    table: Option<Box<[[u8; 256]; 3]>>,
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
        let table = input.quantized.map(|q| {
            let mut t = Box::new([[0u8; 256]; 3]);
            for (c, row) in t.iter_mut().enumerate() {
                for (v, out) in row.iter_mut().enumerate() {
                    // As the float path computes the value, then ONNX QuantizeLinear.
                    let x = (v as f32 - input.mean[c]) / input.std[c];
                    let q = (x / q.scale).round_ties_even() + q.zero_point as f32;
                    *out = q.clamp(0.0, 255.0) as u8;
                }
            }
            t
        });
        Self {
            src,
            scale,
            bias,
            layout: input.layout,
            table,
        }
    }

    /// Writes the packed BGR picture `bgr` (`w` x `h`) into `out` (`3*w*h` values).
    pub fn run(&self, bgr: &[u8], w: usize, h: usize, out: InputSlot<'_>) {
        match out {
            InputSlot::F32(out) => {
                let [k0, k1, k2] = self.scale;
                let [b0, b1, b2] = self.bias;
                self.write(bgr, w, h, out, |c, v| match c {
                    0 => v as f32 * k0 + b0,
                    1 => v as f32 * k1 + b1,
                    _ => v as f32 * k2 + b2,
                })
            }
            InputSlot::U8(out) => match &self.table {
                Some(t) => {
                    let [t0, t1, t2] = &**t;
                    self.write(bgr, w, h, out, |c, v| match c {
                        0 => t0[v as usize],
                        1 => t1[v as usize],
                        _ => t2[v as usize],
                    })
                }
                // A float manifest never gets a uint8 buffer (InputBuf::zeros); raw bytes are
                // the only sensible reading.
                None => self.write(bgr, w, h, out, |_, v| v),
            },
        }
    }

    /// The layouts' loops, shared by both element types; `val(c, v)` is model channel `c`'s
    /// value for byte `v` (a `match` on a constant `c` that the compiler resolves).
    #[inline(always)]
    fn write<T: Copy>(
        &self,
        bgr: &[u8],
        w: usize,
        h: usize,
        out: &mut [T],
        val: impl Fn(usize, u8) -> T,
    ) {
        let hw = (out.len() / 3).min(w * h);
        let bgr = &bgr[..hw * 3];
        let [s0, s1, s2] = self.src;
        match self.layout {
            Layout::Nchw => {
                let (p0, rest) = out.split_at_mut(hw);
                let (p1, p2) = rest.split_at_mut(hw);
                for (((px, a), b), c) in bgr.chunks_exact(3).zip(p0).zip(p1).zip(p2) {
                    *a = val(0, px[s0]);
                    *b = val(1, px[s1]);
                    *c = val(2, px[s2]);
                }
            }
            Layout::Nhwc => {
                for (px, o) in bgr.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                    o[0] = val(0, px[s0]);
                    o[1] = val(1, px[s1]);
                    o[2] = val(2, px[s2]);
                }
            }
            Layout::Blocks2 => {
                // Row pair `by` of the picture is row `by` of blocks; within a block, pixel
                // (r, c) takes channels (r*2 + c)*3 ..+3 of the block's 12.
                let row_len = w * 3;
                let blocks_row = (w / 2) * 12;
                for (y, row) in bgr.chunks_exact(row_len).enumerate().take(h / 2 * 2) {
                    let Some(dst) = out.get_mut((y / 2) * blocks_row..(y / 2 + 1) * blocks_row)
                    else {
                        break;
                    };
                    let r = (y % 2) * 6;
                    for (pair, block) in row.chunks_exact(6).zip(dst.chunks_exact_mut(12)) {
                        let o = &mut block[r..r + 6];
                        o[0] = val(0, pair[s0]);
                        o[1] = val(1, pair[s1]);
                        o[2] = val(2, pair[s2]);
                        o[3] = val(0, pair[3 + s0]);
                        o[4] = val(1, pair[3 + s1]);
                        o[5] = val(2, pair[3 + s2]);
                    }
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
    out: InputSlot<'_>,
) -> Result<(), PreprocessError> {
    check_image(img)?;
    debug_assert_eq!(out.len(), 3 * w as usize * h as usize);
    let (wu, hu) = (w as usize, h as usize);
    if is_fast(img, w, h) {
        norm.run(&img.data, wu, hu, out);
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
                norm.run(slow.bgr.data_bytes()?, wu, hu, out);
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
    norm.run(slow.resized.data_bytes()?, wu, hu, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::manifest::Quantized;

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
            quantized: None,
        }
    }

    // two pixels: (B,G,R) = (12, 24, 35) and (0, 255, 30)
    const PX: [u8; 6] = [12, 24, 35, 0, 255, 30];

    #[test]
    fn nchw_bgr() {
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Bgr, Layout::Nchw)).run(
            &PX,
            2,
            1,
            InputSlot::F32(&mut out),
        );
        let want = [1.0, -5.0, 1.0, 58.75, 1.0, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn nchw_rgb_reads_channels_swapped() {
        // model channel 0 = R with mean 10 / std 2, channel 2 = B with mean 30 / std 5
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Rgb, Layout::Nchw)).run(
            &PX,
            2,
            1,
            InputSlot::F32(&mut out),
        );
        let want = [12.5, 10.0, 1.0, 58.75, -3.6, -6.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn nhwc_bgr() {
        let mut out = [0.0; 6];
        Normalizer::new(&spec(ColorOrder::Bgr, Layout::Nhwc)).run(
            &PX,
            2,
            1,
            InputSlot::F32(&mut out),
        );
        let want = [1.0, 1.0, 1.0, -5.0, 58.75, 0.0];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{out:?}");
        }
    }

    /// ONNX SpaceToDepth(blocksize 2, DCR) of an NCHW tensor, then to NHWC: the reference the
    /// blocks2 layout must equal.
    fn space_to_depth_nhwc(nchw: &[f32], w: usize, h: usize) -> Vec<f32> {
        let (bw, bh) = (w / 2, h / 2);
        let mut out = vec![0.0; nchw.len()];
        for by in 0..bh {
            for bx in 0..bw {
                for r in 0..2 {
                    for c in 0..2 {
                        for ch in 0..3 {
                            let v = nchw[ch * w * h + (2 * by + r) * w + 2 * bx + c];
                            let oc = (r * 2 + c) * 3 + ch;
                            out[(by * bw + bx) * 12 + oc] = v;
                        }
                    }
                }
            }
        }
        out
    }

    fn picture(w: usize, h: usize) -> Vec<u8> {
        (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()
    }

    #[test]
    fn blocks2_is_space_to_depth_of_nchw() {
        let (w, h) = (6, 4);
        let px = picture(w, h);
        for color in [ColorOrder::Bgr, ColorOrder::Rgb] {
            let base = InputSpec {
                width: w as u32,
                height: h as u32,
                ..spec(color, Layout::Nchw)
            };
            let mut nchw = vec![0.0; w * h * 3];
            Normalizer::new(&base).run(&px, w, h, InputSlot::F32(&mut nchw));
            let mut blocks = vec![0.0; w * h * 3];
            Normalizer::new(&InputSpec {
                layout: Layout::Blocks2,
                ..base.clone()
            })
            .run(&px, w, h, InputSlot::F32(&mut blocks));
            assert_eq!(blocks, space_to_depth_nhwc(&nchw, w, h), "{color:?}");
        }
    }

    #[test]
    fn quantised_input_rounds_like_quantize_linear() {
        let (w, h) = (4, 2);
        let px = picture(w, h);
        let q = Quantized {
            scale: 0.25,
            zero_point: 100,
        };
        for layout in [Layout::Nchw, Layout::Nhwc, Layout::Blocks2] {
            let float = InputSpec {
                width: w as u32,
                height: h as u32,
                ..spec(ColorOrder::Bgr, layout)
            };
            let mut f = vec![0.0; w * h * 3];
            Normalizer::new(&float).run(&px, w, h, InputSlot::F32(&mut f));
            let mut u = vec![0u8; w * h * 3];
            Normalizer::new(&InputSpec {
                quantized: Some(q),
                ..float.clone()
            })
            .run(&px, w, h, InputSlot::U8(&mut u));
            for (x, got) in f.iter().zip(&u) {
                let want = ((x / q.scale).round_ties_even() + 100.0).clamp(0.0, 255.0) as u8;
                assert_eq!(*got, want, "{layout:?}: {x}");
            }
        }
        // half-way values go to the even step, far values clamp
        let spec1 = InputSpec {
            mean: [0.0; 3],
            std: [1.0; 3],
            quantized: Some(Quantized {
                scale: 2.0,
                zero_point: 10,
            }),
            ..spec(ColorOrder::Bgr, Layout::Nhwc)
        };
        let mut u = [0u8; 6];
        // 1 / 2 = 0.5 -> 0; 3 / 2 = 1.5 -> 2; 5 / 2 = 2.5 -> 2; 255 / 2 -> 128 + 10 -> 138
        Normalizer::new(&spec1).run(&[1, 3, 5, 255, 0, 7], 2, 1, InputSlot::U8(&mut u));
        assert_eq!(u, [10, 12, 12, 138, 10, 14]);
        let clamp = InputSpec {
            quantized: Some(Quantized {
                scale: 0.5,
                zero_point: 200,
            }),
            ..spec1
        };
        Normalizer::new(&clamp).run(&[255, 0, 1, 2, 3, 4], 2, 1, InputSlot::U8(&mut u));
        assert_eq!(u, [255, 200, 202, 204, 206, 208]);
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
        preprocess(&img, 4, 4, &norm, &mut slow, InputSlot::F32(&mut out)).unwrap();
        assert!(out[..16].iter().all(|&v| v == 50.0));
        assert!(out[32..].iter().all(|&v| v == 150.0));
        // I420 mid-grey (Y=128, U=V=128) at the input size → grey BGR
        let mut yuv = Image::with_format(4, 4, PixelFormat::I420);
        yuv.data[..16].fill(128);
        preprocess(&yuv, 4, 4, &norm, &mut slow, InputSlot::F32(&mut out)).unwrap();
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
            let e = preprocess(&img, 2, 1, &norm, &mut slow, InputSlot::F32(&mut out)).unwrap_err();
            assert!(matches!(e, PreprocessError::BadFrame(_)), "{e}");
        }
    }
}
