//! Drawing directly on I420 pictures.
//!
//! Display frames arrive as I420 and both encoders (jpegenc, x264enc) take I420, so the overlay
//! is drawn on the three planes in place: no BGR round trip (two colour conversions of every
//! frame at the source rate would cost more than the drawing itself). Shapes go to the luma
//! plane at full resolution and to the chroma planes at half resolution; text is drawn in luma
//! only, on a backing whose chroma is filled flat, so it stays sharp (4:2:0 chroma cannot hold
//! one-pixel strokes).

use opencv::core::{Mat, Point as CvPoint, Rect, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use super::overlay::DrawError;
use crate::model::{Image, PixelFormat};

/// A colour in limited-range BT.601 YCbCr, what decoders hand out and encoders expect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Yuv {
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

impl Yuv {
    pub const BLACK: Yuv = Yuv::gray(16);
    pub const WHITE: Yuv = Yuv::gray(235);

    pub const fn gray(y: u8) -> Yuv {
        Yuv { y, u: 128, v: 128 }
    }

    /// From 8-bit RGB.
    pub fn rgb(r: u8, g: u8, b: u8) -> Yuv {
        let (r, g, b) = (r as f32, g as f32, b as f32);
        let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
        let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
        let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
        let c = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        Yuv {
            y: c(y),
            u: c(u),
            v: c(v),
        }
    }

    /// Luma of the text that reads best on this colour: black on light, white on dark.
    pub fn text_on(&self) -> u8 {
        if self.y > 140 {
            16
        } else {
            235
        }
    }
}

/// A mutable view of an I420 picture with OpenCV headers over its three planes.
pub struct Canvas<'a> {
    pub w: i32,
    pub h: i32,
    y: opencv::boxed_ref::BoxedRefMut<'a, Mat>,
    u: opencv::boxed_ref::BoxedRefMut<'a, Mat>,
    v: opencv::boxed_ref::BoxedRefMut<'a, Mat>,
}

fn half(r: Rect) -> Rect {
    let x0 = r.x.div_euclid(2);
    let y0 = r.y.div_euclid(2);
    let x1 = (r.x + r.width + 1).div_euclid(2);
    let y1 = (r.y + r.height + 1).div_euclid(2);
    Rect::new(x0, y0, (x1 - x0).max(1), (y1 - y0).max(1))
}

fn hp(p: CvPoint) -> CvPoint {
    CvPoint::new(p.x.div_euclid(2), p.y.div_euclid(2))
}

fn sc(v: u8) -> Scalar {
    Scalar::all(v as f64)
}

impl<'a> Canvas<'a> {
    /// Views `img`, which must be a valid I420 image with even dimensions.
    pub fn new(img: &'a mut Image) -> Result<Canvas<'a>, DrawError> {
        if img.format != PixelFormat::I420
            || !img.is_valid()
            || img.width < 2
            || img.height < 2
            || !img.width.is_multiple_of(2)
            || !img.height.is_multiple_of(2)
        {
            return Err(DrawError::BadImage {
                width: img.width,
                height: img.height,
                format: img.format,
                len: img.data.len(),
                expected: Image::byte_len(img.width, img.height, PixelFormat::I420),
            });
        }
        let (w, h) = (img.width as i32, img.height as i32);
        let ys = (w * h) as usize;
        let cs = ys / 4;
        let (yp, rest) = img.data.split_at_mut(ys);
        let (up, vp) = rest.split_at_mut(cs);
        Ok(Canvas {
            w,
            h,
            y: Mat::new_rows_cols_with_data_mut::<u8>(h, w, yp)?,
            u: Mat::new_rows_cols_with_data_mut::<u8>(h / 2, w / 2, up)?,
            v: Mat::new_rows_cols_with_data_mut::<u8>(h / 2, w / 2, &mut vp[..cs])?,
        })
    }

    fn clip(&self, r: Rect) -> Option<Rect> {
        let x0 = r.x.max(0);
        let y0 = r.y.max(0);
        let x1 = (r.x + r.width).min(self.w);
        let y1 = (r.y + r.height).min(self.h);
        (x1 > x0 && y1 > y0).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }

    /// Raw access to a plane's rows for the per-pixel loops below.
    fn plane_rows(
        m: &mut impl MatTrait,
        r: Rect,
        mut f: impl FnMut(&mut [u8]),
    ) -> Result<(), DrawError> {
        let step = m.cols() as usize;
        let data = m.data_bytes_mut()?;
        for row in r.y..r.y + r.height {
            let start = row as usize * step + r.x as usize;
            if let Some(s) = data.get_mut(start..start + r.width as usize) {
                f(s);
            }
        }
        Ok(())
    }

    /// Fills a rectangle with a colour.
    pub fn fill_rect(&mut self, r: Rect, c: Yuv) -> Result<(), DrawError> {
        let Some(r) = self.clip(r) else {
            return Ok(());
        };
        let hr = half(r);
        Self::plane_rows(&mut self.y, r, |s| s.fill(c.y))?;
        let hr = Rect::new(
            hr.x,
            hr.y,
            hr.width.min(self.w / 2 - hr.x),
            hr.height.min(self.h / 2 - hr.y),
        );
        Self::plane_rows(&mut self.u, hr, |s| s.fill(c.u))?;
        Self::plane_rows(&mut self.v, hr, |s| s.fill(c.v))?;
        Ok(())
    }

    /// Blends a colour over a rectangle; `alpha` in 0..=256 (256 = opaque).
    pub fn blend_rect(&mut self, r: Rect, c: Yuv, alpha: u32) -> Result<(), DrawError> {
        let Some(r) = self.clip(r) else {
            return Ok(());
        };
        let a = alpha.min(256);
        let mix = move |s: &mut [u8], v: u8| {
            for p in s {
                *p = ((*p as u32 * (256 - a) + v as u32 * a) >> 8) as u8;
            }
        };
        Self::plane_rows(&mut self.y, r, |s| mix(s, c.y))?;
        let hr = half(r);
        let hr = Rect::new(
            hr.x,
            hr.y,
            hr.width.min(self.w / 2 - hr.x),
            hr.height.min(self.h / 2 - hr.y),
        );
        Self::plane_rows(&mut self.u, hr, |s| mix(s, c.u))?;
        Self::plane_rows(&mut self.v, hr, |s| mix(s, c.v))?;
        Ok(())
    }

    /// Blends a colour over precomputed luma row spans (a filled polygon, see [`Spans`]).
    pub fn blend_spans(&mut self, spans: &Spans, c: Yuv, alpha: u32) -> Result<(), DrawError> {
        let a = alpha.min(256);
        let (w, h) = (self.w as usize, self.h as usize);
        let mix = move |p: &mut u8, v: u8| {
            *p = ((*p as u32 * (256 - a) + v as u32 * a) >> 8) as u8;
        };
        {
            let ystep = self.y.cols() as usize;
            let yd = self.y.data_bytes_mut()?;
            for &(row, x0, x1) in &spans.rows {
                let (row, x0, x1) = (row as usize, x0 as usize, (x1 as usize).min(w));
                if row >= h || x0 >= x1 {
                    continue;
                }
                for p in &mut yd[row * ystep + x0..row * ystep + x1] {
                    mix(p, c.y);
                }
            }
        }
        // Chroma: one chroma row per pair of luma rows; the even luma row's span stands for it.
        for (plane, val) in [(&mut self.u, c.u), (&mut self.v, c.v)] {
            let step = plane.cols() as usize;
            let d = plane.data_bytes_mut()?;
            for &(row, x0, x1) in spans.rows.iter().filter(|s| s.0 % 2 == 0) {
                let cr = row as usize / 2;
                let (cx0, cx1) = (x0 as usize / 2, (x1 as usize).div_ceil(2).min(w / 2));
                if cr >= h / 2 || cx0 >= cx1 {
                    continue;
                }
                for p in &mut d[cr * step + cx0..cr * step + cx1] {
                    mix(p, val);
                }
            }
        }
        Ok(())
    }

    /// Scales the picture's contrast towards black and its colour towards gray (for a frozen,
    /// "no longer live" look): `keep` of 256 keeps it unchanged.
    pub fn dim(&mut self, keep: u32) -> Result<(), DrawError> {
        let k = keep.min(256);
        let full = Rect::new(0, 0, self.w, self.h);
        Self::plane_rows(&mut self.y, full, |s| {
            for p in s {
                *p = (16 + (((*p as i32 - 16).max(0) as u32 * k) >> 8)) as u8;
            }
        })?;
        let hr = Rect::new(0, 0, self.w / 2, self.h / 2);
        for m in [&mut self.u, &mut self.v] {
            Self::plane_rows(m, hr, |s| {
                for p in s {
                    *p = (128 + ((*p as i32 - 128) * k as i32 / 1024)) as u8;
                }
            })?;
        }
        Ok(())
    }

    /// A rectangle outline `t` luma pixels thick.
    pub fn rect(&mut self, r: Rect, c: Yuv, t: i32) -> Result<(), DrawError> {
        imgproc::rectangle(&mut self.y, r, sc(c.y), t, imgproc::LINE_8, 0)?;
        let ht = (t / 2).max(1);
        let hr = half(r);
        imgproc::rectangle(&mut self.u, hr, sc(c.u), ht, imgproc::LINE_8, 0)?;
        imgproc::rectangle(&mut self.v, hr, sc(c.v), ht, imgproc::LINE_8, 0)?;
        Ok(())
    }

    /// A straight line `t` luma pixels thick.
    pub fn line(&mut self, a: CvPoint, b: CvPoint, c: Yuv, t: i32) -> Result<(), DrawError> {
        imgproc::line(&mut self.y, a, b, sc(c.y), t, imgproc::LINE_AA, 0)?;
        let ht = (t / 2).max(1);
        imgproc::line(&mut self.u, hp(a), hp(b), sc(c.u), ht, imgproc::LINE_8, 0)?;
        imgproc::line(&mut self.v, hp(a), hp(b), sc(c.v), ht, imgproc::LINE_8, 0)?;
        Ok(())
    }

    /// An arrow from `a` to `b`.
    pub fn arrow(&mut self, a: CvPoint, b: CvPoint, c: Yuv, t: i32) -> Result<(), DrawError> {
        let tip = 0.35;
        imgproc::arrowed_line(&mut self.y, a, b, sc(c.y), t, imgproc::LINE_AA, 0, tip)?;
        let ht = (t / 2).max(1);
        for (m, v) in [(&mut self.u, c.u), (&mut self.v, c.v)] {
            imgproc::arrowed_line(m, hp(a), hp(b), sc(v), ht, imgproc::LINE_8, 0, tip)?;
        }
        Ok(())
    }

    /// A polygon outline.
    pub fn polyline(
        &mut self,
        pts: &[CvPoint],
        closed: bool,
        c: Yuv,
        t: i32,
    ) -> Result<(), DrawError> {
        if pts.len() < 2 {
            return Ok(());
        }
        let full: Vector<Vector<CvPoint>> =
            std::iter::once(pts.iter().copied().collect()).collect();
        imgproc::polylines(&mut self.y, &full, closed, sc(c.y), t, imgproc::LINE_AA, 0)?;
        let halfp: Vector<Vector<CvPoint>> =
            std::iter::once(pts.iter().map(|p| hp(*p)).collect()).collect();
        let ht = (t / 2).max(1);
        imgproc::polylines(&mut self.u, &halfp, closed, sc(c.u), ht, imgproc::LINE_8, 0)?;
        imgproc::polylines(&mut self.v, &halfp, closed, sc(c.v), ht, imgproc::LINE_8, 0)?;
        Ok(())
    }

    /// A filled circle.
    pub fn dot(&mut self, at: CvPoint, radius: i32, c: Yuv) -> Result<(), DrawError> {
        imgproc::circle(&mut self.y, at, radius, sc(c.y), -1, imgproc::LINE_AA, 0)?;
        let hr = (radius / 2).max(1);
        imgproc::circle(&mut self.u, hp(at), hr, sc(c.u), -1, imgproc::LINE_8, 0)?;
        imgproc::circle(&mut self.v, hp(at), hr, sc(c.v), -1, imgproc::LINE_8, 0)?;
        Ok(())
    }

    /// Text in luma only, baseline-left at `org`.
    pub fn text(&mut self, s: &str, org: CvPoint, font: Font, luma: u8) -> Result<(), DrawError> {
        imgproc::put_text(
            &mut self.y,
            s,
            org,
            font.face,
            font.scale,
            sc(luma),
            font.thickness,
            imgproc::LINE_AA,
            false,
        )?;
        Ok(())
    }

    /// A label on a filled backing ("pill"), top-left at `at`; returns the backing rectangle.
    pub fn label(
        &mut self,
        s: &str,
        at: CvPoint,
        font: Font,
        bg: Yuv,
        fg: u8,
    ) -> Result<Rect, DrawError> {
        let (tw, th, base) = font.size(s)?;
        let pad = font.pad();
        let r = Rect::new(at.x, at.y, tw + 2 * pad, th + base + 2 * pad);
        self.fill_rect(r, bg)?;
        self.text(s, CvPoint::new(at.x + pad, at.y + pad + th), font, fg)?;
        Ok(r)
    }
}

/// A Hershey font at a size.
#[derive(Clone, Copy, Debug)]
pub struct Font {
    pub face: i32,
    pub scale: f64,
    pub thickness: i32,
}

impl Font {
    pub const fn simplex(scale: f64, thickness: i32) -> Font {
        Font {
            face: imgproc::FONT_HERSHEY_SIMPLEX,
            scale,
            thickness,
        }
    }
    pub const fn duplex(scale: f64, thickness: i32) -> Font {
        Font {
            face: imgproc::FONT_HERSHEY_DUPLEX,
            scale,
            thickness,
        }
    }
    /// (width, height above baseline, baseline depth) of `s`.
    pub fn size(&self, s: &str) -> Result<(i32, i32, i32), DrawError> {
        let mut base = 0;
        let sz = imgproc::get_text_size(s, self.face, self.scale, self.thickness, &mut base)?;
        Ok((sz.width, sz.height, base))
    }
    fn pad(&self) -> i32 {
        (self.scale * 6.0).round().max(2.0) as i32
    }
}

/// The inside of a polygon as luma row spans `(row, x_start, x_end_exclusive)`, computed once
/// per zone and picture geometry so per-frame filling is a tight loop over memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spans {
    pub rows: Vec<(u16, u16, u16)>,
    /// Centre of the filled area, for the zone's label.
    pub centroid: (i32, i32),
}

impl Spans {
    /// Rasterises `pts` (pixels) inside a `w` x `h` picture.
    pub fn of_polygon(pts: &[CvPoint], w: i32, h: i32) -> Result<Spans, DrawError> {
        if pts.len() < 3 || w <= 0 || h <= 0 {
            return Ok(Spans::default());
        }
        let mut mask = Mat::zeros(h, w, opencv::core::CV_8UC1)?.to_mat()?;
        let polys: Vector<Vector<CvPoint>> =
            std::iter::once(pts.iter().copied().collect()).collect();
        imgproc::fill_poly(
            &mut mask,
            &polys,
            Scalar::all(255.0),
            imgproc::LINE_8,
            0,
            CvPoint::new(0, 0),
        )?;
        let step = mask.cols() as usize;
        let data = mask.data_bytes()?;
        let mut rows = Vec::new();
        let (mut sx, mut sy, mut n) = (0i64, 0i64, 0i64);
        for r in 0..h as usize {
            let line = &data[r * step..r * step + w as usize];
            let mut x = 0;
            while x < line.len() {
                if line[x] == 0 {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < line.len() && line[x] != 0 {
                    x += 1;
                }
                rows.push((r as u16, start as u16, x as u16));
                let len = (x - start) as i64;
                sx += (start as i64 * 2 + len - 1) * len / 2;
                sy += r as i64 * len;
                n += len;
            }
        }
        let centroid = if n > 0 {
            ((sx / n) as i32, (sy / n) as i32)
        } else {
            (0, 0)
        };
        Ok(Spans { rows, centroid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(img: &Image, x: usize, y: usize) -> (u8, u8, u8) {
        let (w, h) = (img.width as usize, img.height as usize);
        let ys = w * h;
        let c = (y / 2) * (w / 2) + x / 2;
        (
            img.data[y * w + x],
            img.data[ys + c],
            img.data[ys + ys / 4 + c],
        )
    }

    #[test]
    fn colours_convert_like_bt601() {
        let cases = [
            ((0, 0, 0), Yuv::BLACK),
            ((255, 255, 255), Yuv::WHITE),
            (
                (255, 0, 0),
                Yuv {
                    y: 82,
                    u: 90,
                    v: 240,
                },
            ),
        ];
        for (rgb, want) in cases {
            assert_eq!(Yuv::rgb(rgb.0, rgb.1, rgb.2), want, "{rgb:?}");
        }
    }

    #[test]
    fn fill_and_blend_touch_all_planes() {
        let mut img = Image::with_format(32, 16, PixelFormat::I420);
        let red = Yuv::rgb(255, 0, 0);
        {
            let mut c = Canvas::new(&mut img).unwrap();
            c.fill_rect(Rect::new(4, 4, 8, 4), red).unwrap();
            c.blend_rect(Rect::new(20, 0, 100, 100), Yuv::WHITE, 128)
                .unwrap(); // clipped, no panic
            c.fill_rect(Rect::new(-10, -10, 5, 5), red).unwrap(); // fully outside
        }
        assert_eq!(px(&img, 5, 5), (red.y, red.u, red.v));
        assert_eq!(px(&img, 0, 0), (16, 128, 128));
        let b = px(&img, 25, 10);
        assert_eq!(b.0, ((16u32 * 128 + 235 * 128) >> 8) as u8);
    }

    #[test]
    fn spans_fill_polygon_and_centroid() {
        let pts = [
            CvPoint::new(2, 2),
            CvPoint::new(11, 2),
            CvPoint::new(11, 9),
            CvPoint::new(2, 9),
        ];
        let s = Spans::of_polygon(&pts, 16, 12).unwrap();
        assert_eq!(s.rows.len(), 8);
        assert!(s.rows.iter().all(|r| r.1 == 2 && r.2 == 12));
        assert_eq!(s.centroid, (6, 5));
        let mut img = Image::with_format(16, 12, PixelFormat::I420);
        Canvas::new(&mut img)
            .unwrap()
            .blend_spans(&s, Yuv::WHITE, 256)
            .unwrap();
        assert_eq!(px(&img, 6, 5).0, 235);
        assert_eq!(px(&img, 13, 5).0, 16);
        assert!(Spans::of_polygon(&pts[..2], 16, 12)
            .unwrap()
            .rows
            .is_empty());
    }

    #[test]
    fn bad_images_are_errors() {
        let mut odd = Image::with_format(3, 3, PixelFormat::I420);
        assert!(Canvas::new(&mut odd).is_err());
        let mut bgr = Image::new(4, 4);
        assert!(Canvas::new(&mut bgr).is_err());
    }

    #[test]
    fn text_and_label_draw_luma() {
        let mut img = Image::with_format(120, 40, PixelFormat::I420);
        let r = {
            let mut c = Canvas::new(&mut img).unwrap();
            c.label(
                "KAMERA",
                CvPoint::new(2, 2),
                Font::simplex(0.5, 1),
                Yuv::BLACK,
                235,
            )
            .unwrap()
        };
        let bright = (r.y..r.y + r.height)
            .flat_map(|y| (r.x..r.x + r.width).map(move |x| (x, y)))
            .filter(|&(x, y)| px(&img, x as usize, y as usize).0 > 200)
            .count();
        assert!(bright > 20, "{bright}");
    }
}
