//! `garbage`: a new static object in a no-dumping zone that is not a person or vehicle.
//!
//! Per frame, on the zone's bounding box cut out of the analytics frame (at most
//! [`WORK_SIDE`] px on its longer side):
//!
//! 1. **Long-term background**: OpenCV MOG2 with a slow learning rate (`learning_rate` per
//!    frame): a dumped object stays foreground for minutes, a passer-by for a second. Shadows
//!    count as background.
//! 2. **Static-foreground accumulator**: per pixel, seconds of foreground, decaying
//!    [`DECAY`] times as fast when background. Pixels under a person / vehicle (tracks of the
//!    `ignore_classes`, including lost ones, and their raw detections, enlarged by
//!    [`EXCLUDE_MARGIN`]) never gain: a person standing still for an hour is not garbage. Pixels
//!    at `static_s` or more are *static*.
//! 3. **Blobs**: connected static regions inside the zone of at least `min_area` of the zone
//!    become objects — a quarter of that when a litter-class detection (bottle, bag...) overlaps
//!    the blob, which also names it.
//! 4. **Ground check**: a blob only becomes an object if the picture there differs from the
//!    remembered *ground*: a grey background that learns (time constant [`GROUND_TAU_S`]) only
//!    where nothing is in front of it — not under people and vehicles, not under foreground, not
//!    under known objects. MOG2 learns whatever stays long enough, so when a person who sat for
//!    ten minutes, a parked car, or a removed bag leaves, MOG2 sees the bare ground as new
//!    foreground (a "ghost"); the ground model still knows that ground, and the ghost is
//!    ignored.
//! 5. **Presence**: once found, an object stays present while its picture (a grey template
//!    taken from the blob, blended slowly towards the frame for light changes) still matches, or
//!    while it is hidden behind an excluded box; MOG2 having learned it does not matter. It is
//!    gone when the picture no longer matches.
//!
//! MOG2 learns a still object into its background after about `ln(1/0.9) / learning_rate`
//! frames (OpenCV's background ratio is 0.9): ~210 frames, 42 s at 5 fps, for the default
//! 0.0005. That must stay above `static_s` (20 s), or objects vanish before they are found.
//!
//! The zone's condition is "an object is present"; [`Hold`] gives dwell (counted from when the
//! object became static, so it stays `static_s + dwell_s` before an incident), clear time and
//! cooldown.

mod geometry;
mod objects;

use chrono::{DateTime, TimeDelta, Utc};
use opencv::core::{self, Mat, Ptr, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::video::{self, BackgroundSubtractorMOG2};

use super::geom::Polygon;
use super::hold::{Hold, Step, Timed, Timing, UpdateGate};
use super::rule::{
    class_name, ClassSet, Judgement, Rule, Throttle, ZoneFrame, ZoneRule, ZoneSetup,
};
use super::AnalyticsError;
use crate::config::GarbageRule;
use crate::model::{
    BBox, ClassId, Evidence, IncidentKind, Level, Severity, SnapshotBox, ZoneState,
};
use geometry::Geometry;
use objects::{overlap, Blob, Object, Objects, View};

/// Longer side of the working picture of a zone, pixels.
pub const WORK_SIDE: i32 = 160;
/// Frames of quick background learning at start (or after a size change), before any judgment.
pub const WARMUP_FRAMES: u32 = 25;
/// Accumulator decay rate (per second of background) relative to its growth.
pub const DECAY: f32 = 4.0;
/// The accumulator stops this many seconds above `static_s`: it only has to tell "static", and a
/// low ceiling lets a removed object's pixels drop out within half a second.
pub const ACC_HEADROOM_S: f32 = 2.0;
/// Share of a blob that must be foreground in the current frame for the blob to show its object
/// now (the static mask lags the picture by the accumulator's decay).
pub const MIN_FG_SHARE: f32 = 0.3;
/// Excluded boxes are enlarged by this share of their size on each side (limbs, shadows).
pub const EXCLUDE_MARGIN: f32 = 0.15;
/// Mean absolute grey difference under which a template still matches.
pub const TEMPLATE_MAD: f32 = 14.0;
/// An object counts as present if seen within this many seconds.
pub const PRESENT_S: f64 = 1.0;
/// Time constant of the ground model where it may learn, seconds.
pub const GROUND_TAU_S: f32 = 30.0;
/// Blobs covering more than this share of the zone are a global change (light, camera shake),
/// not an object.
pub const MAX_BLOB_SHARE: f32 = 0.5;
/// Litter-class detections below this score are ignored.
pub const LITTER_MIN_SCORE: f32 = 0.3;

/// One frame's decision for a garbage zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GarbageStep {
    pub step: Step,
    /// Objects present now.
    pub objects: u32,
    /// Share of the zone they cover.
    pub static_area: f32,
    /// Seconds since the oldest present object became static.
    pub oldest_s: f32,
    pub update: bool,
    pub severity: Severity,
}

/// A litter-like detection, for naming and boosting blobs.
#[derive(Clone, Copy, Debug)]
pub struct Litter {
    pub bbox: BBox,
    pub class_id: ClassId,
}

pub struct Garbage {
    rule: GarbageRule,
    poly: Polygon,
    geo: Option<Geometry>,
    mog: Option<Ptr<BackgroundSubtractorMOG2>>,
    frames: u32,
    crop: Mat,
    gray: Mat,
    fg: Mat,
    fg_clean: Mat,
    kernel: Mat,
    static_mask: Mat,
    labels: Mat,
    stats: Mat,
    centroids: Mat,
    acc: Vec<f32>,
    excluded: Vec<u8>,
    /// The ground as last seen uncovered, grey, per work pixel.
    ground: Vec<f32>,
    gray_buf: Vec<u8>,
    fg_buf: Vec<u8>,
    blobs: Vec<Blob>,
    objects: Objects,
    hold: Hold,
    gate: UpdateGate<Level>,
    last_at: Option<DateTime<Utc>>,
}

impl Garbage {
    pub fn new(rule: GarbageRule, poly: Polygon) -> Self {
        Self {
            hold: Hold::of(&rule),
            rule,
            poly,
            geo: None,
            mog: None,
            frames: 0,
            crop: Mat::default(),
            gray: Mat::default(),
            fg: Mat::default(),
            fg_clean: Mat::default(),
            kernel: Mat::default(),
            static_mask: Mat::default(),
            labels: Mat::default(),
            stats: Mat::default(),
            centroids: Mat::default(),
            acc: Vec::new(),
            excluded: Vec::new(),
            ground: Vec::new(),
            gray_buf: Vec::new(),
            fg_buf: Vec::new(),
            blobs: Vec::new(),
            objects: Objects::default(),
            gate: UpdateGate::default(),
            last_at: None,
        }
    }

    pub fn rule(&self) -> &GarbageRule {
        &self.rule
    }

    /// The camera is gone: ends an open incident (its start is returned), forgets the rest.
    pub fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.hold.abandon(at)
    }

    /// Processes one frame (BGR, any size). `exclude`: boxes of people and vehicles;
    /// `litter`: litter-class detections.
    pub fn step(
        &mut self,
        at: DateTime<Utc>,
        frame: &(impl MatTraitConst + core::ToInputArray),
        exclude: &[BBox],
        litter: &[Litter],
    ) -> opencv::Result<GarbageStep> {
        let (fw, fh) = (frame.cols(), frame.rows());
        if fw < 2 || fh < 2 {
            return Err(opencv::Error::new(
                core::StsBadSize,
                format!("frame {fw}x{fh} too small"),
            ));
        }
        if self.geo.as_ref().is_none_or(|g| g.frame != (fw, fh)) {
            if self.geo.is_some() {
                tracing::info!(
                    width = fw,
                    height = fh,
                    "analytics frame size changed; garbage model restarted"
                );
            }
            let g = Geometry::new(&self.poly, fw, fh);
            let n = g.mask.len();
            self.acc = vec![0.0; n];
            self.excluded = vec![0; n];
            self.ground = vec![0.0; n];
            self.objects.clear();
            self.geo = Some(g);
            self.mog = None;
            self.frames = 0;
        }
        let Some(g) = self.geo.take() else {
            return Err(opencv::Error::new(core::StsError, "no geometry"));
        };
        let out = self.step_with(at, frame, exclude, litter, &g);
        self.geo = Some(g);
        out
    }

    fn step_with(
        &mut self,
        at: DateTime<Utc>,
        frame: &(impl MatTraitConst + core::ToInputArray),
        exclude: &[BBox],
        litter: &[Litter],
        g: &Geometry,
    ) -> opencv::Result<GarbageStep> {
        let dt = self
            .last_at
            .map(|l| (at - l).num_milliseconds() as f32 / 1000.0)
            .unwrap_or(0.0)
            .clamp(0.0, 2.0);
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));

        // 1. cut-out, background model
        let roi = Mat::roi(frame, g.rect)?;
        imgproc::resize(&roi, &mut self.crop, g.work, 0.0, 0.0, imgproc::INTER_AREA)?;
        imgproc::cvt_color(&self.crop, &mut self.gray, imgproc::COLOR_BGR2GRAY, 0)?;
        if self.mog.is_none() {
            let mut m = video::create_background_subtractor_mog2(WARMUP_FRAMES as i32, 16.0, true)?;
            m.set_shadow_value(127)?;
            self.mog = Some(m);
            self.kernel = imgproc::get_structuring_element(
                imgproc::MORPH_ELLIPSE,
                Size::new(3, 3),
                core::Point::new(-1, -1),
            )?;
        }
        let warm = self.frames >= WARMUP_FRAMES;
        // During warm-up MOG2 picks its own fast rate (1 / frames seen), so people in the first
        // frame do not stay as ghosts for the life of the slow model.
        let rate = if warm { self.rule.learning_rate } else { -1.0 };
        if let Some(m) = self.mog.as_mut() {
            BackgroundSubtractorMOG2Trait::apply(m, &self.crop, &mut self.fg, rate)?;
        }
        self.frames = self.frames.saturating_add(1);
        let gray = self.gray.data_bytes()?;
        if gray.len() != self.ground.len() {
            return Err(opencv::Error::new(core::StsBadSize, "grey picture size"));
        }
        self.gray_buf.clear();
        self.gray_buf.extend_from_slice(gray);
        if !warm {
            let a = 1.0 / self.frames as f32;
            for (gr, &v) in self.ground.iter_mut().zip(&self.gray_buf) {
                *gr += a * (v as f32 - *gr);
            }
            return Ok(self.decide(at, g, 0));
        }
        imgproc::morphology_ex(
            &self.fg,
            &mut self.fg_clean,
            imgproc::MORPH_OPEN,
            &self.kernel,
            core::Point::new(-1, -1),
            1,
            core::BORDER_CONSTANT,
            imgproc::morphology_default_border_value()?,
        )?;

        // 2. exclusions (1: people and vehicles, 2: known objects) and the accumulator
        self.excluded.iter_mut().for_each(|e| *e = 0);
        let w = g.work.width as usize;
        for r in self.objects.rects() {
            for y in r.y..r.y + r.height {
                let row = y as usize * w;
                self.excluded[row + r.x as usize..row + (r.x + r.width) as usize].fill(2);
            }
        }
        for b in exclude {
            if let Some(r) = g.to_work(b, EXCLUDE_MARGIN) {
                for y in r.y..r.y + r.height {
                    let row = y as usize * w;
                    self.excluded[row + r.x as usize..row + (r.x + r.width) as usize].fill(1);
                }
            }
        }
        let fg = self.fg_clean.data_bytes()?;
        if fg.len() != self.acc.len() {
            return Err(opencv::Error::new(core::StsBadSize, "foreground mask size"));
        }
        self.fg_buf.clear();
        self.fg_buf.extend_from_slice(fg);
        let fg = &self.fg_buf;
        let static_s = self.rule.static_s as f32;
        let ground_rate = (dt / GROUND_TAU_S).min(1.0);
        let pixels = self
            .acc
            .iter_mut()
            .zip(self.ground.iter_mut())
            .zip(g.mask.iter().zip(&self.excluded))
            .zip(fg.iter().zip(&self.gray_buf));
        for (((a, gr), (&inside, &excl)), (&f, &v)) in pixels {
            if inside == 0 {
                *a = 0.0;
                continue;
            }
            if excl == 0 && f != 255 {
                *gr += ground_rate * (v as f32 - *gr);
            }
            if excl == 1 {
                // covered by a person or vehicle: never gains; loses as if background
                *a = (*a - dt).max(0.0);
            } else if f == 255 {
                *a = (*a + dt).min(static_s + ACC_HEADROOM_S);
            } else {
                *a = (*a - DECAY * dt).max(0.0);
            }
        }
        // static mask
        if self.static_mask.size()? != g.work {
            self.static_mask = Mat::new_rows_cols_with_default(
                g.work.height,
                g.work.width,
                core::CV_8UC1,
                core::Scalar::all(0.0),
            )?;
        }
        {
            let sm = self.static_mask.data_bytes_mut()?;
            for (s, a) in sm.iter_mut().zip(&self.acc) {
                *s = if *a >= static_s { 255 } else { 0 };
            }
        }

        // 3. blobs
        let n = imgproc::connected_components_with_stats(
            &self.static_mask,
            &mut self.labels,
            &mut self.stats,
            &mut self.centroids,
            8,
            core::CV_32S,
        )?;
        let min_px = (self.rule.min_area as f32 * g.zone_px as f32).max(1.0);
        let mut blobs = std::mem::take(&mut self.blobs);
        blobs.clear();
        for k in 1..n {
            let area = *self.stats.at_2d::<i32>(k, imgproc::CC_STAT_AREA)? as u32;
            let r = Rect::new(
                *self.stats.at_2d::<i32>(k, imgproc::CC_STAT_LEFT)?,
                *self.stats.at_2d::<i32>(k, imgproc::CC_STAT_TOP)?,
                *self.stats.at_2d::<i32>(k, imgproc::CC_STAT_WIDTH)?,
                *self.stats.at_2d::<i32>(k, imgproc::CC_STAT_HEIGHT)?,
            );
            if area as f32 > MAX_BLOB_SHARE * g.zone_px as f32 {
                tracing::debug!(
                    area,
                    "static region too large for an object (light change?)"
                );
                continue;
            }
            let class_id = litter
                .iter()
                .filter_map(|l| g.to_work(&l.bbox, 0.0).map(|lr| (lr, l.class_id)))
                .find(|(lr, _)| overlap(lr, &r) > 0.3)
                .map(|(_, c)| c);
            let needed = if class_id.is_some() {
                min_px / 4.0
            } else {
                min_px
            };
            if area as f32 >= needed {
                blobs.push((r, area, class_id));
            }
        }
        let out = self.track_objects(at, g, &blobs);
        self.blobs = blobs;
        Ok(out)
    }

    fn track_objects(&mut self, at: DateTime<Utc>, g: &Geometry, blobs: &[Blob]) -> GarbageStep {
        let static_since = at - TimeDelta::milliseconds((self.rule.static_s * 1000.0) as i64);
        let forget = TimeDelta::milliseconds((self.rule.clear_s.max(5.0) * 1000.0) as i64);
        // the pictures were filled in step_with (same size as the zone mask)
        let view = View {
            w: g.work.width,
            gray: &self.gray_buf,
            fg: &self.fg_buf,
            excluded: &self.excluded,
            ground: &self.ground,
        };
        self.objects.track(at, static_since, forget, &view, blobs);
        let present = self.present(at).count() as u32;
        self.decide(at, g, present)
    }

    fn present(&self, at: DateTime<Utc>) -> impl Iterator<Item = &Object> {
        self.objects.present(at)
    }

    fn decide(&mut self, at: DateTime<Utc>, g: &Geometry, present: u32) -> GarbageStep {
        let (mut area, mut oldest) = (0u32, 0.0f32);
        for o in self.present(at) {
            area += o.area_px;
            oldest = oldest.max((at - o.first_static).num_milliseconds() as f32 / 1000.0);
        }
        let static_area = if g.zone_px > 0 {
            (area as f32 / g.zone_px as f32).min(1.0)
        } else {
            0.0
        };
        let step = self.hold.step(at, present > 0);
        let update = self
            .gate
            .on_step(step, at, Level::Sedang, present as f64, 1.0, false);
        let severity = step.severity(present > 0);
        GarbageStep {
            step,
            objects: present,
            static_area,
            oldest_s: oldest,
            update,
            severity,
        }
    }

    /// Boxes (normalised) and litter classes of the objects present at `at`.
    pub fn present_boxes(&self, at: DateTime<Utc>) -> Vec<(BBox, Option<ClassId>)> {
        let Some(g) = self.geo.as_ref() else {
            return Vec::new();
        };
        self.present(at)
            .map(|o| (g.to_frame(&o.rect), o.class_id))
            .collect()
    }
}

/// A `garbage` zone: [`Garbage`] fed the frame's picture, the boxes of people and vehicles
/// (never garbage) and the litter-class detections.
pub struct GarbageZone {
    garbage: Garbage,
    ignore: ClassSet,
    litter: ClassSet,
    exclude: Vec<BBox>,
    found: Vec<Litter>,
    cv_error: Throttle,
}

/// Builds a garbage zone's rule from its `[sites.zones.garbage]` table.
pub fn build(s: &ZoneSetup<'_>) -> Result<Box<dyn ZoneRule>, AnalyticsError> {
    let rule: GarbageRule = s.config.garbage.clone().unwrap_or_default();
    let ignore = s.classes("ignore_classes", &rule.ignore_classes)?;
    let litter = s.classes("litter_classes", &rule.litter_classes)?;
    Ok(Box::new(GarbageZone {
        garbage: Garbage::new(rule, s.zone.poly.clone()),
        ignore,
        litter,
        exclude: Vec::new(),
        found: Vec::new(),
        cv_error: Throttle::default(),
    }))
}

impl Rule for GarbageZone {
    fn kind(&self) -> IncidentKind {
        IncidentKind::Garbage
    }

    fn timing(&self) -> Timing {
        self.garbage.rule().timing()
    }

    fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.garbage.abandon(at)
    }
}

impl ZoneRule for GarbageZone {
    fn step(&mut self, f: &ZoneFrame<'_>, state: &mut ZoneState) -> Option<Judgement> {
        let m = f.picture?;
        // tracks of the ignored classes in any state, and their raw detections
        self.exclude.clear();
        self.exclude.extend(
            f.tracks
                .iter()
                .filter(|t| self.ignore.has(t.class_id))
                .map(|t| t.bbox),
        );
        self.exclude.extend(
            f.detections
                .iter()
                .filter(|d| self.ignore.has(d.class_id) && d.score.is_finite())
                .map(|d| d.bbox),
        );
        self.found.clear();
        self.found.extend(
            f.detections
                .iter()
                .filter(|d| self.litter.has(d.class_id) && d.score >= LITTER_MIN_SCORE)
                .map(|d| Litter {
                    bbox: d.bbox,
                    class_id: d.class_id,
                }),
        );
        let r = match self.garbage.step(f.at, m, &self.exclude, &self.found) {
            Ok(r) => r,
            Err(e) => {
                if self.cv_error.hit() {
                    tracing::warn!(site = %f.site, zone = %f.zone.id, error = %e, "garbage rule skipped a frame");
                }
                return None;
            }
        };
        let mut classes: Vec<String> = self
            .garbage
            .present_boxes(f.at)
            .iter()
            .filter_map(|(_, c)| c.map(|c| class_name(f.labels, c)))
            .collect();
        classes.sort();
        classes.dedup();
        // since the oldest object became static, not since the dwell began
        let oldest = (r.objects > 0).then_some(r.oldest_s);
        state.severity = r.severity;
        state.level = None;
        state.count = r.objects;
        state.oldest_static_s = oldest;
        Some(Judgement {
            step: r.step,
            update: r.update,
            level: Level::Sedang,
            evidence: Evidence {
                objects: Some(r.objects),
                static_area: Some(r.static_area),
                classes,
                dwell_s: oldest,
                ..Evidence::default()
            },
        })
    }

    fn boxes(&self, f: &ZoneFrame<'_>) -> Vec<SnapshotBox> {
        self.garbage
            .present_boxes(f.at)
            .into_iter()
            .map(|(bbox, c)| SnapshotBox {
                bbox,
                label: c
                    .map(|c| class_name(f.labels, c))
                    .unwrap_or_else(|| "sampah".into()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use opencv::core::Vec3b;

    use super::*;
    use crate::analytics::hold::tests::{r1, t};

    const W: i32 = 200;

    /// A textured background with a little sensor noise per frame, and optionally a dark
    /// 24 x 20 object at (90, 120).
    fn frame(i: usize, object: bool) -> Vec<u8> {
        let mut v = vec![0u8; (W * W * 3) as usize];
        let mut seed = 99u32;
        let mut noise = (i as u32).wrapping_mul(2654435761);
        for y in 0..W {
            for x in 0..W {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                noise = noise.wrapping_mul(1103515245).wrapping_add(12345);
                let base = 90 + ((seed >> 16) % 60) as i32 + ((x / 10 + y / 10) % 2) * 20;
                let n = ((noise >> 16) % 5) as i32 - 2;
                let mut px = [base + n, base + 10 + n, base - 10 + n];
                if object && (90..114).contains(&x) && (120..140).contains(&y) {
                    let k = (x * 7 + y * 13) % 11;
                    px = [25 + k + n, 25 + k + n, 30 + k + n];
                }
                let o = ((y * W + x) * 3) as usize;
                for c in 0..3 {
                    v[o + c] = px[c].clamp(0, 255) as u8;
                }
            }
        }
        v
    }

    fn rule() -> GarbageRule {
        GarbageRule {
            // MOG2 learns a still object in ln(1/0.9)/0.007 = 15 frames (3 s): after it is
            // found (static_s 1 s), long before it leaves
            learning_rate: 0.007,
            static_s: 1.0,
            dwell_s: 2.0,
            clear_s: 2.0,
            cooldown_s: 1.0,
            min_area: 0.005,
            ..GarbageRule::default()
        }
    }

    /// Runs 5 fps frames; `object(time)` says when the object is there, `exclude(time)` gives
    /// boxes of people. Returns ("start"/"end", time).
    fn run(
        rule: GarbageRule,
        until: f64,
        object: impl Fn(f64) -> bool,
        exclude: impl Fn(f64) -> Vec<BBox>,
    ) -> Vec<(&'static str, f64)> {
        let poly = Polygon::new(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]);
        let mut g = Garbage::new(rule, poly);
        let mut out = Vec::new();
        for i in 0..=(until * 5.0) as usize {
            let s = i as f64 * 0.2;
            let bytes = frame(i, object(s));
            let m = Mat::new_rows_cols_with_bytes::<Vec3b>(W, W, &bytes).unwrap();
            let r = g.step(t(s), &m, &exclude(s), &[]).unwrap();
            match r.step {
                Step::Start { .. } => out.push(("start", r1(s))),
                Step::End { .. } => out.push(("end", r1(s))),
                _ => {}
            }
        }
        out
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn cases() {
        type F = Box<dyn Fn(f64) -> bool>;
        type X = Box<dyn Fn(f64) -> Vec<BBox>>;
        let cases: Vec<(&str, f64, F, X, Vec<(&str, f64)>)> = vec![
            (
                "empty scene",
                60.0,
                Box::new(|_| false),
                Box::new(|_| vec![]),
                vec![],
            ),
            (
                // MOG2 learns the object after 3 s; the template keeps it present for the full
                // 80 s. By then MOG2 has forgotten the ground (after ln(0.1)/ln(1-0.007) = 330
                // frames), so after removal the bare ground is foreground to it: the ground
                // model recognises it, no new object.
                "stays open after the background learns it; no ghost after removal",
                140.0,
                Box::new(|s| (10.0..90.0).contains(&s)),
                Box::new(|_| vec![]),
                vec![("start", 12.8), ("end", 93.0)],
            ),
            // found at 10.8, last seen 11.4, counted present for PRESENT_S more: 12.4 < 12.8
            (
                "gone before static + dwell",
                60.0,
                Box::new(|s| (10.0..11.6).contains(&s)),
                Box::new(|_| vec![]),
                vec![],
            ),
            (
                // and when they leave after MOG2 forgot the ground, their ghost is not garbage
                "a person standing on the spot is excluded",
                140.0,
                Box::new(|s| (10.0..90.0).contains(&s)),
                Box::new(|s| {
                    if (10.0..90.0).contains(&s) {
                        vec![BBox::new(
                            85.0 / 200.0,
                            100.0 / 200.0,
                            120.0 / 200.0,
                            142.0 / 200.0,
                        )]
                    } else {
                        vec![]
                    }
                }),
                vec![],
            ),
            (
                "a passer-by hiding it for 3 s keeps it open",
                60.0,
                Box::new(|s| (10.0..50.0).contains(&s)),
                Box::new(|s| {
                    if (25.0..28.0).contains(&s) {
                        vec![BBox::new(0.4, 0.5, 0.62, 0.75)]
                    } else {
                        vec![]
                    }
                }),
                vec![("start", 12.8), ("end", 53.0)],
            ),
        ];
        for (name, until, object, exclude, want) in cases {
            assert_eq!(run(rule(), until, object, exclude), want, "{name}");
        }
    }
}
