//! A crowd zone's foreground: what differs from a background of the zone that learns only
//! where nobody stands, so a group that stands still for minutes stays foreground (OpenCV's
//! MOG2 learns it within a minute: scripts/scenarios/STUDY.md), and the static clutter a small
//! detector mistakes for people at low scores (cones, signs, a rock) stays background.
//!
//! Per frame, on the zone's bounding box (stretched upwards by [`HEAD_ROOM`] of the picture, for
//! the bodies of people whose feet are in it) cut out of the analytics picture:
//!
//! 1. 3x3 Gaussian blur; a pixel is foreground where any colour channel differs from the
//!    background by more than [`DIFF`] grey levels; opened (3x3) and closed (5x5);
//! 2. the background learns with time constant [`TAU_S`] everywhere except where the pixel is
//!    foreground *and* under a person box (at any score the detector kept): the people in the
//!    first frame, or who walked off, leave no lasting "ghost", and people stay out of it;
//! 3. a box's foreground share is the share of its pixels (inside the cut-out) that are
//!    foreground.
//!
//! Cost: about 0.3 ms per zone and frame on one core for a zone a third of the picture wide
//! (docs/rules.md, "crowd").

use chrono::{DateTime, Utc};
use opencv::core::{self, Mat, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;

use crate::model::BBox;

/// Grey-level difference from the background that makes a pixel foreground.
pub const DIFF: f32 = 25.0;
/// Time constant of the background where it may learn, seconds.
pub const TAU_S: f32 = 30.0;
/// The cut-out reaches this share of the picture's height above the zone.
pub const HEAD_ROOM: f32 = 0.25;

/// The foreground of one zone.
pub struct Foreground {
    /// The zone's bounding box, normalised.
    zone: BBox,
    /// The cut-out in picture pixels, for the picture size it was made for.
    rect: Option<(Rect, (i32, i32))>,
    bg: Vec<f32>,
    fg: Vec<u8>,
    under: Vec<bool>,
    blur: Mat,
    opened: Mat,
    closed: Mat,
    k3: Mat,
    k5: Mat,
    last_at: Option<DateTime<Utc>>,
}

impl Foreground {
    pub fn new(zone: BBox) -> Self {
        Self {
            zone,
            rect: None,
            bg: Vec::new(),
            fg: Vec::new(),
            under: Vec::new(),
            blur: Mat::default(),
            opened: Mat::default(),
            closed: Mat::default(),
            k3: Mat::default(),
            k5: Mat::default(),
            last_at: None,
        }
    }

    /// Folds in the frame `picture` (BGR) taken at `at`; `persons` are the frame's person
    /// boxes at any score (normalised), under which people are never learned.
    pub fn update(
        &mut self,
        at: DateTime<Utc>,
        picture: &(impl MatTraitConst + core::ToInputArray),
        persons: &[BBox],
    ) -> opencv::Result<()> {
        let (w, h) = (picture.cols(), picture.rows());
        if self.rect.is_none_or(|(_, size)| size != (w, h)) {
            let z = self.zone;
            let x0 = ((z.x1 - 0.05).max(0.0) * w as f32).floor() as i32;
            let x1 = ((z.x2 + 0.05).min(1.0) * w as f32).ceil() as i32;
            let y0 = ((z.y1 - HEAD_ROOM).max(0.0) * h as f32).floor() as i32;
            let y1 = (z.y2.min(1.0) * h as f32).ceil() as i32;
            let r = Rect::new(x0.clamp(0, w - 1), y0.clamp(0, h - 1), 1, 1);
            let r = Rect::new(r.x, r.y, (x1.min(w) - r.x).max(1), (y1.min(h) - r.y).max(1));
            self.rect = Some((r, (w, h)));
            self.bg.clear();
            self.k3 = imgproc::get_structuring_element(
                imgproc::MORPH_RECT,
                Size::new(3, 3),
                core::Point::new(-1, -1),
            )?;
            self.k5 = imgproc::get_structuring_element(
                imgproc::MORPH_RECT,
                Size::new(5, 5),
                core::Point::new(-1, -1),
            )?;
        }
        let Some((r, _)) = self.rect else {
            return Ok(());
        };
        let dt = self
            .last_at
            .map(|l| (at - l).num_milliseconds() as f32 / 1000.0)
            .unwrap_or(0.0)
            .clamp(0.0, 2.0);
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        let roi = Mat::roi(picture, r)?;
        imgproc::gaussian_blur(
            &roi,
            &mut self.blur,
            Size::new(3, 3),
            0.0,
            0.0,
            core::BORDER_DEFAULT,
        )?;
        let px = self.blur.data_bytes()?;
        let n = (r.width * r.height) as usize;
        if px.len() != n * 3 {
            return Err(opencv::Error::new(core::StsBadSize, "cut-out size"));
        }
        if self.bg.len() != n * 3 {
            self.bg = px.iter().map(|&v| v as f32).collect();
            self.fg = vec![0; n];
        }
        // under a person box
        self.under.clear();
        self.under.resize(n, false);
        let (rw, rh) = (r.width as usize, r.height as usize);
        for b in persons {
            if let Some((a0, b0, a1, b1)) = self.cells(b, (w, h)) {
                for y in b0..b1 {
                    self.under[y * rw + a0..y * rw + a1].fill(true);
                }
            }
        }
        let rate = (dt / TAU_S).min(1.0);
        for (i, f) in self.fg.iter_mut().enumerate() {
            let (p, g) = (&px[i * 3..i * 3 + 3], &mut self.bg[i * 3..i * 3 + 3]);
            let d = (0..3).fold(0.0f32, |m, c| m.max((p[c] as f32 - g[c]).abs()));
            let is_fg = d > DIFF;
            *f = if is_fg { 255 } else { 0 };
            if !(is_fg && self.under[i]) {
                for c in 0..3 {
                    g[c] += rate * (p[c] as f32 - g[c]);
                }
            }
        }
        let mask = Mat::new_rows_cols_with_data(rh as i32, rw as i32, &self.fg)?;
        let anchor = core::Point::new(-1, -1);
        let border = imgproc::morphology_default_border_value()?;
        imgproc::morphology_ex(
            &mask,
            &mut self.opened,
            imgproc::MORPH_OPEN,
            &self.k3,
            anchor,
            1,
            core::BORDER_CONSTANT,
            border,
        )?;
        imgproc::morphology_ex(
            &self.opened,
            &mut self.closed,
            imgproc::MORPH_CLOSE,
            &self.k5,
            anchor,
            1,
            core::BORDER_CONSTANT,
            border,
        )?;
        Ok(())
    }

    /// The cells of the cut-out a box covers: `(x0, y0, x1, y1)`, ends exclusive.
    fn cells(&self, b: &BBox, (w, h): (i32, i32)) -> Option<(usize, usize, usize, usize)> {
        let (r, _) = self.rect?;
        let x0 = ((b.x1 * w as f32).floor() as i32 - r.x).clamp(0, r.width);
        let x1 = ((b.x2 * w as f32).ceil() as i32 - r.x).clamp(0, r.width);
        let y0 = ((b.y1 * h as f32).floor() as i32 - r.y).clamp(0, r.height);
        let y1 = ((b.y2 * h as f32).ceil() as i32 - r.y).clamp(0, r.height);
        (x1 > x0 && y1 > y0).then_some((x0 as usize, y0 as usize, x1 as usize, y1 as usize))
    }

    /// Share of the box (its part inside the cut-out) that is foreground now; 0 before the
    /// first frame or for a box outside the cut-out.
    pub fn share(&self, b: &BBox) -> f32 {
        let Some((_, size)) = self.rect else {
            return 0.0;
        };
        let Some((x0, y0, x1, y1)) = self.cells(b, size) else {
            return 0.0;
        };
        let Ok(fg) = self.closed.data_bytes() else {
            return 0.0;
        };
        let rw = self.rect.map_or(0, |(r, _)| r.width as usize);
        if fg.len() < y1 * rw {
            return 0.0;
        }
        let on: usize = (y0..y1)
            .map(|y| {
                fg[y * rw + x0..y * rw + x1]
                    .iter()
                    .filter(|v| **v != 0)
                    .count()
            })
            .sum();
        on as f32 / ((x1 - x0) * (y1 - y0)) as f32
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::analytics::hold::tests::t;

    const W: i32 = 200;
    const H: i32 = 160;

    /// A textured grey ground with dark "people" boxes (pixel rects) on it.
    fn picture(people: &[(i32, i32, i32, i32)]) -> Mat {
        let mut m =
            Mat::new_rows_cols_with_default(H, W, core::CV_8UC3, core::Scalar::all(0.0)).unwrap();
        let data = m.data_bytes_mut().unwrap();
        for y in 0..H {
            for x in 0..W {
                let i = ((y * W + x) * 3) as usize;
                let v = 120 + ((x / 4 + y / 4) % 2) as u8 * 10;
                data[i..i + 3].fill(v);
                if people
                    .iter()
                    .any(|&(x0, y0, x1, y1)| (x0..x1).contains(&x) && (y0..y1).contains(&y))
                {
                    data[i..i + 3].copy_from_slice(&[40, 30, 60]);
                }
            }
        }
        m
    }

    fn norm(r: (i32, i32, i32, i32)) -> BBox {
        BBox::new(
            r.0 as f32 / W as f32,
            r.1 as f32 / H as f32,
            r.2 as f32 / W as f32,
            r.3 as f32 / H as f32,
        )
    }

    #[test]
    fn people_who_stand_stay_foreground_and_what_leaves_is_learned() {
        let zone = BBox::new(0.2, 0.4, 0.9, 0.95);
        let mut f = Foreground::new(zone);
        let person = (60, 60, 80, 110);
        let empty = picture(&[]);
        let with = picture(&[person]);
        // an empty start, then a person who stands for two minutes, with their box on them
        f.update(t(0.0), &empty, &[]).unwrap();
        for i in 1..=600 {
            f.update(t(i as f64 * 0.2), &with, &[norm(person)]).unwrap();
        }
        assert!(f.share(&norm(person)) > 0.9, "{}", f.share(&norm(person)));
        // a box on empty ground is no foreground
        assert!(f.share(&norm((120, 60, 140, 110))) < 0.05);
        // without a box on it, a person who stands is learned within a few time constants
        let mut g = Foreground::new(zone);
        g.update(t(0.0), &empty, &[]).unwrap();
        let mut at = t(0.0);
        for _ in 0..((4.0 * TAU_S * 5.0) as usize) {
            at += TimeDelta::milliseconds(200);
            g.update(at, &with, &[]).unwrap();
        }
        assert!(g.share(&norm(person)) < 0.1, "{}", g.share(&norm(person)));
        // the first frame had someone in it who walks off: the ghost fades too
        let mut k = Foreground::new(zone);
        k.update(t(0.0), &with, &[]).unwrap();
        let mut at = t(0.0);
        for _ in 0..((4.0 * TAU_S * 5.0) as usize) {
            at += TimeDelta::milliseconds(200);
            k.update(at, &empty, &[]).unwrap();
        }
        assert!(k.share(&norm(person)) < 0.1);
        // outside the cut-out: nothing
        assert_eq!(k.share(&BBox::new(0.0, 0.0, 0.05, 0.05)), 0.0);
    }
}
