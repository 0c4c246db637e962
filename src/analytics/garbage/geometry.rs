//! Where a garbage zone lies in frames of one size: its bounding box cut out of the frame and
//! scaled to at most [`WORK_SIDE`] px (the *work* picture), and the zone's mask in it.

use opencv::core::{Rect, Size};

use super::WORK_SIDE;
use crate::analytics::geom::Polygon;
use crate::model::{BBox, Point};

/// Where the zone sits in frames of one size.
#[derive(Clone, Debug)]
pub(super) struct Geometry {
    pub frame: (i32, i32),
    /// The zone's bounding box in frame pixels.
    pub rect: Rect,
    pub work: Size,
    /// 1 inside the zone, per work pixel.
    pub mask: Vec<u8>,
    pub zone_px: u32,
}

impl Geometry {
    /// The work area of zone `poly` in frames of `fw` x `fh` pixels.
    pub fn new(poly: &Polygon, fw: i32, fh: i32) -> Self {
        let b = poly.bbox().clamped();
        let x0 = ((b.x1 * fw as f32).floor() as i32).clamp(0, fw - 1);
        let y0 = ((b.y1 * fh as f32).floor() as i32).clamp(0, fh - 1);
        let x1 = ((b.x2 * fw as f32).ceil() as i32).clamp(x0 + 1, fw);
        let y1 = ((b.y2 * fh as f32).ceil() as i32).clamp(y0 + 1, fh);
        let rect = Rect::new(x0, y0, x1 - x0, y1 - y0);
        let scale = (WORK_SIDE as f32 / rect.width.max(rect.height) as f32).min(1.0);
        let work = Size::new(
            ((rect.width as f32 * scale).round() as i32).max(1),
            ((rect.height as f32 * scale).round() as i32).max(1),
        );
        let mut mask = vec![0u8; (work.width * work.height) as usize];
        let mut zone_px = 0;
        for y in 0..work.height {
            for x in 0..work.width {
                let p = Point::new(
                    (x0 as f32 + (x as f32 + 0.5) / work.width as f32 * rect.width as f32)
                        / fw as f32,
                    (y0 as f32 + (y as f32 + 0.5) / work.height as f32 * rect.height as f32)
                        / fh as f32,
                );
                if poly.contains(p) {
                    mask[(y * work.width + x) as usize] = 1;
                    zone_px += 1;
                }
            }
        }
        Self {
            frame: (fw, fh),
            rect,
            work,
            mask,
            zone_px,
        }
    }

    /// A normalised box in work pixels (clipped), enlarged by `margin` of its size per side.
    pub fn to_work(&self, b: &BBox, margin: f32) -> Option<Rect> {
        let g = self;
        let (fw, fh) = (g.frame.0 as f32, g.frame.1 as f32);
        let (mw, mh) = (b.width() * margin, b.height() * margin);
        let sx = g.work.width as f32 / g.rect.width as f32;
        let sy = g.work.height as f32 / g.rect.height as f32;
        let x0 = (((b.x1 - mw) * fw - g.rect.x as f32) * sx).floor();
        let y0 = (((b.y1 - mh) * fh - g.rect.y as f32) * sy).floor();
        let x1 = (((b.x2 + mw) * fw - g.rect.x as f32) * sx).ceil();
        let y1 = (((b.y2 + mh) * fh - g.rect.y as f32) * sy).ceil();
        if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            return None;
        }
        let x0 = (x0 as i32).clamp(0, g.work.width);
        let y0 = (y0 as i32).clamp(0, g.work.height);
        let x1 = (x1 as i32).clamp(0, g.work.width);
        let y1 = (y1 as i32).clamp(0, g.work.height);
        (x1 > x0 && y1 > y0).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }

    /// A work-pixel rectangle back in normalised frame coordinates.
    pub fn to_frame(&self, r: &Rect) -> BBox {
        let g = self;
        let sx = g.rect.width as f32 / g.work.width as f32;
        let sy = g.rect.height as f32 / g.work.height as f32;
        let (fw, fh) = (g.frame.0 as f32, g.frame.1 as f32);
        BBox::new(
            (g.rect.x as f32 + r.x as f32 * sx) / fw,
            (g.rect.y as f32 + r.y as f32 * sy) / fh,
            (g.rect.x as f32 + (r.x + r.width) as f32 * sx) / fw,
            (g.rect.y as f32 + (r.y + r.height) as f32 * sy) / fh,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_zone_works_at_160_px() {
        // a zone in the lower right quarter of a 416 x 416 frame works at 160 x 160 at most
        let poly = Polygon::new(&[[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]);
        let g = Geometry::new(&poly, 416, 416);
        assert_eq!(g.rect, Rect::new(208, 208, 208, 208));
        assert_eq!(g.work, Size::new(160, 160));
        assert_eq!(g.zone_px, 160 * 160);
        // boxes to work pixels and back
        let r = g.to_work(&BBox::new(0.75, 0.75, 1.0, 1.0), 0.0).unwrap();
        assert_eq!(r, Rect::new(80, 80, 80, 80));
        let b = g.to_frame(&r);
        assert!(
            (b.x1 - 0.75).abs() < 1e-6 && (b.y2 - 1.0).abs() < 1e-6,
            "{b:?}"
        );
        assert_eq!(g.to_work(&BBox::new(0.0, 0.0, 0.4, 0.4), 0.0), None);
    }
}
