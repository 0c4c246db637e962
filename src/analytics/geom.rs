//! Zones and lines as plain geometry (supervision's PolygonZone / LineZone, in normalised image
//! coordinates): point in polygon, how much of a zone boxes cover, which side of a line a point
//! is on, and the image → ground mapping for speeds in km/h.

use crate::model::{BBox, Point};

/// A zone polygon with its bounding box and area precomputed.
#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    pts: Vec<Point>,
    bbox: BBox,
    area: f32,
}

impl Polygon {
    pub fn new(pts: &[[f64; 2]]) -> Self {
        let pts: Vec<Point> = pts
            .iter()
            .map(|p| Point::new(p[0] as f32, p[1] as f32))
            .collect();
        let mut bbox = BBox::new(f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for p in &pts {
            bbox.x1 = bbox.x1.min(p.x);
            bbox.y1 = bbox.y1.min(p.y);
            bbox.x2 = bbox.x2.max(p.x);
            bbox.y2 = bbox.y2.max(p.y);
        }
        if pts.is_empty() {
            bbox = BBox::default();
        }
        let mut a = 0.0;
        for k in 0..pts.len() {
            let (p, q) = (pts[k], pts[(k + 1) % pts.len()]);
            a += p.x * q.y - q.x * p.y;
        }
        Self {
            pts,
            bbox,
            area: (a * 0.5).abs(),
        }
    }

    pub fn points(&self) -> &[Point] {
        &self.pts
    }
    pub fn bbox(&self) -> BBox {
        self.bbox
    }
    /// Area in normalised units (share of the picture).
    pub fn area(&self) -> f32 {
        self.area
    }

    /// Even-odd rule; points on the boundary may fall either way.
    pub fn contains(&self, p: Point) -> bool {
        if !(p.x >= self.bbox.x1
            && p.x <= self.bbox.x2
            && p.y >= self.bbox.y1
            && p.y <= self.bbox.y2)
        {
            return false;
        }
        let mut inside = false;
        let n = self.pts.len();
        let mut j = n.wrapping_sub(1);
        for i in 0..n {
            let (a, b) = (self.pts[i], self.pts[j]);
            if (a.y > p.y) != (b.y > p.y) {
                let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
                if p.x < x {
                    inside = !inside;
                }
            }
            j = i;
        }
        inside
    }
}

/// Measures the share of a zone covered by the union of boxes, on a 64 x 64 grid laid over the
/// zone's bounding box: one `u64` per grid row, so marking a box is one OR per row and counting
/// is a popcount. Overlapping boxes (vehicles occluding each other in perspective) count once.
#[derive(Clone, Debug)]
pub struct CoverageGrid {
    bbox: BBox,
    zone: [u64; 64],
    zone_cells: u32,
    marks: [u64; 64],
}

impl CoverageGrid {
    pub fn new(poly: &Polygon) -> Self {
        let bbox = poly.bbox();
        let mut zone = [0u64; 64];
        let mut zone_cells = 0;
        let (cw, ch) = (bbox.width() / 64.0, bbox.height() / 64.0);
        for (r, row) in zone.iter_mut().enumerate() {
            for c in 0..64 {
                let p = Point::new(
                    bbox.x1 + (c as f32 + 0.5) * cw,
                    bbox.y1 + (r as f32 + 0.5) * ch,
                );
                if poly.contains(p) {
                    *row |= 1 << c;
                    zone_cells += 1;
                }
            }
        }
        Self {
            bbox,
            zone,
            zone_cells,
            marks: [0; 64],
        }
    }

    pub fn clear(&mut self) {
        self.marks = [0; 64];
    }

    /// Marks the cells whose centres lie in `b`.
    pub fn mark(&mut self, b: &BBox) {
        let (w, h) = (self.bbox.width(), self.bbox.height());
        if !(w > 0.0 && h > 0.0) || [b.x1, b.y1, b.x2, b.y2].iter().any(|v| v.is_nan()) {
            return;
        }
        let cell = |v: f32, lo: f32, span: f32| (v - lo) / span * 64.0 - 0.5;
        let c0 = cell(b.x1, self.bbox.x1, w).ceil().max(0.0);
        let c1 = cell(b.x2, self.bbox.x1, w).floor().min(63.0);
        let r0 = cell(b.y1, self.bbox.y1, h).ceil().max(0.0);
        let r1 = cell(b.y2, self.bbox.y1, h).floor().min(63.0);
        if !(c0 <= c1 && r0 <= r1) {
            return;
        }
        let (c0, c1, r0, r1) = (c0 as u32, c1 as u32, r0 as usize, r1 as usize);
        let n = c1 - c0 + 1;
        let bits = if n >= 64 {
            u64::MAX
        } else {
            ((1u64 << n) - 1) << c0
        };
        for row in &mut self.marks[r0..=r1] {
            *row |= bits;
        }
    }

    /// Share of the zone covered by the marked boxes, 0..1.
    pub fn coverage(&self) -> f32 {
        if self.zone_cells == 0 {
            return 0.0;
        }
        let hit: u32 = self
            .zone
            .iter()
            .zip(&self.marks)
            .map(|(z, m)| (z & m).count_ones())
            .sum();
        hit as f32 / self.zone_cells as f32
    }
}

/// A counting line A → B.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub a: Point,
    pub b: Point,
}

impl Segment {
    pub fn new(p: &[[f64; 2]; 2]) -> Self {
        Self {
            a: Point::new(p[0][0] as f32, p[0][1] as f32),
            b: Point::new(p[1][0] as f32, p[1][1] as f32),
        }
    }

    /// Signed distance of `p` from the line through A and B (normalised units): positive on the
    /// right of A → B as seen on screen (y down), which is the "in" side.
    pub fn side(&self, p: Point) -> f32 {
        let (dx, dy) = (self.b.x - self.a.x, self.b.y - self.a.y);
        let len = (dx * dx + dy * dy).sqrt();
        if len <= 0.0 {
            return 0.0;
        }
        (dx * (p.y - self.a.y) - dy * (p.x - self.a.x)) / len
    }

    /// Position of `p`'s projection along A → B: 0 at A, 1 at B.
    pub fn along(&self, p: Point) -> f32 {
        let (dx, dy) = (self.b.x - self.a.x, self.b.y - self.a.y);
        let l2 = dx * dx + dy * dy;
        if l2 <= 0.0 {
            return 0.0;
        }
        ((p.x - self.a.x) * dx + (p.y - self.a.y) * dy) / l2
    }
}

/// A projective map from normalised image coordinates to ground metres.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Homography {
    h: [f64; 9],
}

impl Homography {
    /// Solves for the map taking each `image[i]` to `ground[i]`; `None` when the points are
    /// degenerate (three on a line, repeated points).
    pub fn from_points(image: &[[f64; 2]; 4], ground: &[[f64; 2]; 4]) -> Option<Self> {
        // Unknowns h0..h7 (h8 = 1): for each pair,
        //   X = (h0 x + h1 y + h2) / (h6 x + h7 y + 1),  Y = (h3 x + h4 y + h5) / (h6 x + h7 y + 1)
        let mut m = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let ([x, y], [gx, gy]) = (image[i], ground[i]);
            m[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -gx * x, -gx * y, gx];
            m[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -gy * x, -gy * y, gy];
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..8 {
            let piv = (col..8).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
            if m[piv][col].abs() < 1e-10 {
                return None;
            }
            m.swap(col, piv);
            let pivot_row = m[col];
            for (r, row) in m.iter_mut().enumerate() {
                if r != col {
                    let f = row[col] / pivot_row[col];
                    for (x, p) in row.iter_mut().zip(pivot_row).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
        let mut h = [0.0; 9];
        for (i, row) in m.iter().enumerate() {
            h[i] = row[8] / row[i];
        }
        h[8] = 1.0;
        let out = Self { h };
        // Reject maps that send one of their own points to infinity.
        image
            .iter()
            .all(|p| out.map(Point::new(p[0] as f32, p[1] as f32)).is_some())
            .then_some(out)
    }

    /// Ground position in metres of an image point; `None` on the horizon line or beyond.
    pub fn map(&self, p: Point) -> Option<(f64, f64)> {
        let (x, y) = (p.x as f64, p.y as f64);
        let h = &self.h;
        let w = h[6] * x + h[7] * y + h[8];
        if w.abs() < 1e-9 || !w.is_finite() {
            return None;
        }
        Some((
            (h[0] * x + h[1] * y + h[2]) / w,
            (h[3] * x + h[4] * y + h[5]) / w,
        ))
    }
}

/// How a zone turns image motion into ground speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GroundScale {
    /// Metres per source pixel.
    MetresPerPixel(f32),
    Homography(Homography),
}

impl GroundScale {
    /// Ground speed in km/h of an object whose ground point is `p` (normalised) moving at
    /// `velocity` (normalised units per second) and `speed_px_s` source pixels per second.
    pub fn speed_kmh(&self, p: Point, velocity: Point, speed_px_s: f32) -> Option<f32> {
        match self {
            GroundScale::MetresPerPixel(m) => Some(speed_px_s * m * 3.6),
            GroundScale::Homography(h) => {
                // Difference over a short step: the map is not linear, so use the local slope.
                const STEP_S: f32 = 0.2;
                let q = Point::new(p.x - velocity.x * STEP_S, p.y - velocity.y * STEP_S);
                let (a, b) = (h.map(p)?, h.map(q)?);
                let d = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                let v = (d / STEP_S as f64 * 3.6) as f32;
                v.is_finite().then_some(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygon_contains_cases() {
        let tri = Polygon::new(&[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]);
        let cases = [
            (Point::new(0.5, 0.3), true),
            (Point::new(0.5, 0.05), false),
            (Point::new(0.15, 0.8), false),
            (Point::new(0.89, 0.11), true),
            (Point::new(f32::NAN, 0.5), false),
        ];
        for (p, want) in cases {
            assert_eq!(tri.contains(p), want, "{p:?}");
        }
        assert!((tri.area() - 0.32).abs() < 1e-6);
        let empty = Polygon::new(&[]);
        assert!(!empty.contains(Point::new(0.0, 0.0)));
        assert_eq!(empty.area(), 0.0);
    }

    #[test]
    fn coverage_cases() {
        let sq = Polygon::new(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]);
        let mut g = CoverageGrid::new(&sq);
        let cases: Vec<(&str, Vec<BBox>, f32)> = vec![
            ("none", vec![], 0.0),
            ("left half", vec![BBox::new(0.0, 0.0, 0.25, 0.5)], 0.5),
            (
                "whole and beyond",
                vec![BBox::new(-1.0, -1.0, 2.0, 2.0)],
                1.0,
            ),
            (
                "overlapping boxes count once",
                vec![
                    BBox::new(0.0, 0.0, 0.25, 0.5),
                    BBox::new(0.0, 0.0, 0.25, 0.5),
                ],
                0.5,
            ),
            ("outside", vec![BBox::new(0.6, 0.6, 0.9, 0.9)], 0.0),
            ("NaN", vec![BBox::new(f32::NAN, 0.0, 0.3, 0.3)], 0.0),
            ("quarter", vec![BBox::new(0.25, 0.25, 0.5, 0.5)], 0.25),
        ];
        for (name, boxes, want) in cases {
            g.clear();
            for b in &boxes {
                g.mark(b);
            }
            assert!(
                (g.coverage() - want).abs() < 0.02,
                "{name}: {}",
                g.coverage()
            );
        }
        // a triangle: half of its bounding box
        let tri = Polygon::new(&[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]);
        let mut g = CoverageGrid::new(&tri);
        g.mark(&BBox::new(0.0, 0.0, 0.5, 0.5));
        // the box is 0.25 of the picture, the zone 0.5: covers half of the zone
        assert!((g.coverage() - 0.5).abs() < 0.03, "{}", g.coverage());
    }

    #[test]
    fn line_sides() {
        // A → B left to right: "in" (positive) is below on screen
        let s = Segment::new(&[[0.0, 0.5], [1.0, 0.5]]);
        assert!(s.side(Point::new(0.5, 0.6)) > 0.0);
        assert!(s.side(Point::new(0.5, 0.4)) < 0.0);
        assert!((s.side(Point::new(0.3, 0.7)) - 0.2).abs() < 1e-6);
        assert!((s.along(Point::new(0.25, 0.9)) - 0.25).abs() < 1e-6);
        let degenerate = Segment::new(&[[0.5, 0.5], [0.5, 0.5]]);
        assert_eq!(degenerate.side(Point::new(0.1, 0.1)), 0.0);
        assert_eq!(degenerate.along(Point::new(0.1, 0.1)), 0.0);
    }

    #[test]
    fn homography_maps_its_points_and_rejects_degenerate_ones() {
        // a road trapezoid in the picture, 10 m wide and 40 m long on the ground
        let img = [[0.4, 0.4], [0.6, 0.4], [0.9, 1.0], [0.1, 1.0]];
        let ground = [[0.0, 40.0], [10.0, 40.0], [10.0, 0.0], [0.0, 0.0]];
        let h = Homography::from_points(&img, &ground).unwrap();
        for (p, g) in img.iter().zip(ground) {
            let (x, y) = h.map(Point::new(p[0] as f32, p[1] as f32)).unwrap();
            assert!((x - g[0]).abs() < 1e-3 && (y - g[1]).abs() < 1e-3, "{p:?}");
        }
        let line = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.9, 0.1]];
        assert!(Homography::from_points(&line, &ground).is_none());
        let same = [[0.1, 0.1], [0.1, 0.1], [0.3, 0.5], [0.9, 0.1]];
        assert!(Homography::from_points(&same, &ground).is_none());
        // speed: moving from the near edge up the picture
        let scale = GroundScale::Homography(h);
        let p = Point::new(0.5, 1.0);
        let v = scale.speed_kmh(p, Point::new(0.0, -0.1), 0.0).unwrap();
        assert!(v > 1.0 && v.is_finite(), "{v}");
        // an affine case, where the answer is exact: the whole picture is 20 m x 40 m
        let sq = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let g = [[0.0, 0.0], [20.0, 0.0], [20.0, 40.0], [0.0, 40.0]];
        let flat = GroundScale::Homography(Homography::from_points(&sq, &g).unwrap());
        let v = flat
            .speed_kmh(Point::new(0.5, 0.5), Point::new(0.0, 0.1), 0.0)
            .unwrap();
        assert!((v - 14.4).abs() < 1e-3, "{v}");
        let m = GroundScale::MetresPerPixel(0.05);
        assert!((m.speed_kmh(p, Point::default(), 100.0).unwrap() - 18.0).abs() < 1e-4);
    }
}
