//! Drawing results over BGR pictures: zone polygons, boxes, captions. Used for incident
//! snapshots and `simpang detect`'s annotated output (the wall draws on I420: [`super::canvas`]).

use opencv::core::{self, Mat, Point as CvPoint, Rect, Scalar, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use crate::model::{Image, PixelFormat, Point, Severity, SnapshotBox};

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("image {width}x{height} {format:?} has {len} bytes, expected {expected}")]
    BadImage {
        width: u32,
        height: u32,
        format: PixelFormat,
        len: usize,
        expected: usize,
    },
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
}

/// BGR colour of a severity: green, yellow, red.
pub fn severity_bgr(s: Severity) -> Scalar {
    match s {
        Severity::Normal => Scalar::new(80.0, 200.0, 60.0, 0.0),
        Severity::Elevated => Scalar::new(0.0, 210.0, 255.0, 0.0),
        Severity::Alert => Scalar::new(40.0, 40.0, 230.0, 0.0),
    }
}

/// The picture as an owned BGR `Mat` (I420 is converted).
pub fn to_bgr_mat(img: &Image) -> Result<Mat, DrawError> {
    if !img.is_valid() || img.width == 0 || img.height == 0 {
        return Err(DrawError::BadImage {
            width: img.width,
            height: img.height,
            format: img.format,
            len: img.data.len(),
            expected: Image::byte_len(img.width, img.height, img.format),
        });
    }
    let (w, h) = (img.width as i32, img.height as i32);
    let flat = Mat::from_slice(&img.data)?;
    match img.format {
        PixelFormat::Bgr => Ok(flat.reshape(3, h)?.try_clone()?),
        PixelFormat::I420 => {
            let yuv = flat.reshape(1, h * 3 / 2)?;
            let mut bgr = Mat::default();
            imgproc::cvt_color(&yuv, &mut bgr, imgproc::COLOR_YUV2BGR_I420, 0)?;
            debug_assert_eq!(bgr.cols(), w);
            Ok(bgr)
        }
    }
}

/// A BGR `Mat` back into an [`Image`].
pub fn from_bgr_mat(m: &Mat) -> Result<Image, DrawError> {
    let data = if m.is_continuous() {
        m.data_bytes()?.to_vec()
    } else {
        m.try_clone()?.data_bytes()?.to_vec()
    };
    Ok(Image {
        width: m.cols() as u32,
        height: m.rows() as u32,
        format: PixelFormat::Bgr,
        data,
    })
}

fn px(p: Point, w: i32, h: i32) -> CvPoint {
    CvPoint::new(
        (p.x * w as f32).round() as i32,
        (p.y * h as f32).round() as i32,
    )
}

/// Draws a zone: translucent fill and outline in the severity colour.
pub fn draw_zone(m: &mut Mat, polygon: &[Point], severity: Severity) -> Result<(), DrawError> {
    if polygon.len() < 3 {
        return Ok(());
    }
    let (w, h) = (m.cols(), m.rows());
    let pts: Vector<CvPoint> = polygon.iter().map(|p| px(*p, w, h)).collect();
    let mut polys = Vector::<Vector<CvPoint>>::new();
    polys.push(pts);
    let colour = severity_bgr(severity);
    let mut filled = m.try_clone()?;
    imgproc::fill_poly(
        &mut filled,
        &polys,
        colour,
        imgproc::LINE_AA,
        0,
        CvPoint::new(0, 0),
    )?;
    let mut out = Mat::default();
    core::add_weighted(&filled, 0.25, &*m, 0.75, 0.0, &mut out, -1)?;
    *m = out;
    imgproc::polylines(m, &polys, true, colour, 2, imgproc::LINE_AA, 0)?;
    Ok(())
}

/// Draws a labelled box.
pub fn draw_box(m: &mut Mat, b: &SnapshotBox, colour: Scalar) -> Result<(), DrawError> {
    let (w, h) = (m.cols(), m.rows());
    let [x1, y1, x2, y2] = b.bbox.clamped().to_pixels(w as u32, h as u32);
    let r = Rect::new(
        x1 as i32,
        y1 as i32,
        ((x2 - x1) as i32).max(1),
        ((y2 - y1) as i32).max(1),
    );
    imgproc::rectangle(m, r, colour, 2, imgproc::LINE_8, 0)?;
    if !b.label.is_empty() {
        draw_label(
            m,
            &b.label,
            CvPoint::new(r.x, (r.y - 4).max(12)),
            colour,
            0.45,
        )?;
    }
    Ok(())
}

/// Text with a dark backing so it reads on any picture.
pub fn draw_label(
    m: &mut Mat,
    text: &str,
    at: CvPoint,
    colour: Scalar,
    scale: f64,
) -> Result<(), DrawError> {
    let mut base = 0;
    let size = imgproc::get_text_size(text, imgproc::FONT_HERSHEY_SIMPLEX, scale, 1, &mut base)?;
    let bg = Rect::new(
        at.x - 1,
        at.y - size.height - 3,
        size.width + 4,
        size.height + base + 4,
    );
    imgproc::rectangle(
        m,
        bg,
        Scalar::new(20.0, 20.0, 20.0, 0.0),
        -1,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        m,
        text,
        CvPoint::new(at.x + 1, at.y),
        imgproc::FONT_HERSHEY_SIMPLEX,
        scale,
        colour,
        1,
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

/// An incident snapshot: the picture with the zone, the boxes behind the decision and a caption,
/// scaled to `width` (aspect kept; never upscaled), as BGR.
pub fn render_snapshot(
    img: &Image,
    zone: Option<&[Point]>,
    boxes: &[SnapshotBox],
    severity: Severity,
    caption: &str,
    width: u32,
) -> Result<Image, DrawError> {
    let mut m = to_bgr_mat(img)?;
    if width > 0 && (m.cols() as u32) < width {
        // small source: draw at native size
    } else if width > 0 && m.cols() as u32 > width {
        let h = (m.rows() as f64 * width as f64 / m.cols() as f64).round() as i32;
        let mut scaled = Mat::default();
        imgproc::resize(
            &m,
            &mut scaled,
            core::Size::new(width as i32, h.max(2)),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        m = scaled;
    }
    if let Some(z) = zone {
        draw_zone(&mut m, z, severity)?;
    }
    let colour = severity_bgr(severity);
    for b in boxes {
        draw_box(&mut m, b, colour)?;
    }
    if !caption.is_empty() {
        draw_label(
            &mut m,
            caption,
            CvPoint::new(6, 20),
            Scalar::new(255.0, 255.0, 255.0, 0.0),
            0.55,
        )?;
    }
    from_bgr_mat(&m)
}

/// The picture (BGR or I420) resized to `width` x `height`, BGR: a stretched analytics frame
/// back to its camera's aspect, for instance.
pub fn resized(img: &Image, width: u32, height: u32) -> Result<Image, DrawError> {
    let m = to_bgr_mat(img)?;
    if m.cols() as u32 == width && m.rows() as u32 == height {
        return from_bgr_mat(&m);
    }
    let mut out = Mat::default();
    let shrink = (width as i32) < m.cols() && (height as i32) < m.rows();
    imgproc::resize(
        &m,
        &mut out,
        core::Size::new(width.max(2) as i32, height.max(2) as i32),
        0.0,
        0.0,
        if shrink {
            imgproc::INTER_AREA
        } else {
            imgproc::INTER_LINEAR
        },
    )?;
    from_bgr_mat(&out)
}

/// JPEG bytes of an image (BGR or I420) at `quality` (1-100).
pub fn encode_jpeg(img: &Image, quality: u8) -> Result<Vec<u8>, DrawError> {
    let m = to_bgr_mat(img)?;
    let mut buf = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, quality as i32]);
    imgcodecs::imencode(".jpg", &m, &mut buf, &params)?;
    Ok(buf.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BBox;

    #[test]
    fn snapshot_from_i420_draws_and_encodes() {
        let img = Image::with_format(64, 48, PixelFormat::I420);
        let zone = [
            Point::new(0.1, 0.1),
            Point::new(0.9, 0.1),
            Point::new(0.5, 0.9),
        ];
        let boxes = [SnapshotBox {
            bbox: BBox::new(0.2, 0.2, 0.5, 0.6),
            label: "person".into(),
        }];
        let out = render_snapshot(&img, Some(&zone), &boxes, Severity::Alert, "test", 640).unwrap();
        assert_eq!(
            (out.width, out.height, out.format),
            (64, 48, PixelFormat::Bgr)
        );
        assert!(out.is_valid());
        // the red box edge is drawn where the box is
        let at = |x: usize, y: usize| &out.data[(y * 64 + x) * 3..(y * 64 + x) * 3 + 3];
        let edge = at((0.2f32 * 64.0) as usize, 27);
        assert!(edge[2] > 150 && edge[1] < 120, "{edge:?}");
        let jpeg = encode_jpeg(&out, 80).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    }

    #[test]
    fn bad_image_is_an_error() {
        let img = Image {
            width: 10,
            height: 10,
            format: PixelFormat::Bgr,
            data: vec![0; 7],
        };
        assert!(matches!(
            render_snapshot(&img, None, &[], Severity::Normal, "", 0),
            Err(DrawError::BadImage { .. })
        ));
    }

    #[test]
    fn resized_to_any_size() {
        let img = Image::new(416, 416);
        let out = resized(&img, 740, 416).unwrap();
        assert_eq!(
            (out.width, out.height, out.format),
            (740, 416, PixelFormat::Bgr)
        );
        assert!(out.is_valid());
        assert_eq!(resized(&img, 416, 416).unwrap(), img);
    }

    #[test]
    fn scales_down_to_width() {
        let img = Image::new(1280, 720);
        let out = render_snapshot(&img, None, &[], Severity::Normal, "x", 640).unwrap();
        assert_eq!((out.width, out.height), (640, 360));
    }
}
