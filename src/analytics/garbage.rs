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

use chrono::{DateTime, TimeDelta, Utc};
use opencv::core::{self, Mat, Ptr, Rect, Size};
use opencv::imgproc;
use opencv::prelude::*;
use opencv::video::{self, BackgroundSubtractorMOG2};

use super::geom::Polygon;
use super::hold::{Hold, Step, Timing, UpdateGate};
use crate::config::GarbageRule;
use crate::model::{BBox, ClassId, Point, Severity};

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

#[derive(Clone, Debug)]
struct Object {
    rect: Rect,
    template: Vec<u8>,
    first_static: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    class_id: Option<ClassId>,
    area_px: u32,
}

/// Where the zone sits in frames of one size.
#[derive(Clone, Debug)]
struct Geometry {
    frame: (i32, i32),
    /// The zone's bounding box in frame pixels.
    rect: Rect,
    work: Size,
    /// 1 inside the zone, per work pixel.
    mask: Vec<u8>,
    zone_px: u32,
}

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
    blobs: Vec<(Rect, u32, Option<ClassId>)>,
    matched: Vec<bool>,
    objects: Vec<Object>,
    hold: Hold,
    gate: UpdateGate,
    last_at: Option<DateTime<Utc>>,
}

impl Garbage {
    pub fn new(rule: GarbageRule, poly: Polygon) -> Self {
        let timing = Timing {
            dwell_s: rule.dwell_s,
            clear_s: rule.clear_s,
            cooldown_s: rule.cooldown_s,
        };
        Self {
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
            matched: Vec::new(),
            objects: Vec::new(),
            hold: Hold::new(timing),
            gate: UpdateGate::default(),
            last_at: None,
        }
    }

    pub fn rule(&self) -> &GarbageRule {
        &self.rule
    }

    fn geometry(&self, fw: i32, fh: i32) -> Geometry {
        let b = self.poly.bbox().clamped();
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
                if self.poly.contains(p) {
                    mask[(y * work.width + x) as usize] = 1;
                    zone_px += 1;
                }
            }
        }
        Geometry {
            frame: (fw, fh),
            rect,
            work,
            mask,
            zone_px,
        }
    }

    /// A normalised box in work pixels (clipped), enlarged by `margin` of its size per side.
    fn to_work(&self, g: &Geometry, b: &BBox, margin: f32) -> Option<Rect> {
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
    fn to_frame(g: &Geometry, r: &Rect) -> BBox {
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
            let g = self.geometry(fw, fh);
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
        for o in &self.objects {
            let r = o.rect;
            for y in r.y..r.y + r.height {
                let row = y as usize * w;
                self.excluded[row + r.x as usize..row + (r.x + r.width) as usize].fill(2);
            }
        }
        for b in exclude {
            if let Some(r) = self.to_work(g, b, EXCLUDE_MARGIN) {
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
                .filter_map(|l| self.to_work(g, &l.bbox, 0.0).map(|lr| (lr, l.class_id)))
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

    fn track_objects(
        &mut self,
        at: DateTime<Utc>,
        g: &Geometry,
        blobs: &[(Rect, u32, Option<ClassId>)],
    ) -> GarbageStep {
        // filled in step_with (same size as the zone mask)
        let gray = std::mem::take(&mut self.gray_buf);
        let w = g.work.width;
        let static_since = at - TimeDelta::milliseconds((self.rule.static_s * 1000.0) as i64);
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        matched.resize(self.objects.len(), false);
        for &(r, blob_px, class_id) in blobs {
            if fg_share(&self.fg_buf, w, &r) < MIN_FG_SHARE {
                // the object that made this blob has left (or become background): the static
                // mask has not caught up yet
                continue;
            }
            let hidden = hidden_share(&self.excluded, w, &r) > 0.5;

            if let Some(i) = self
                .objects
                .iter()
                .position(|o| iou(&o.rect, &r) > 0.3 || contains(&o.rect, &r))
            {
                let o = &mut self.objects[i];
                if hidden || mad(&gray, w, &o.rect, &o.template) >= TEMPLATE_MAD {
                    // Hidden: someone stands in front of it. Not matching: foreground where the
                    // object was, but not the object — the bare ground after it was taken away
                    // (MOG2 had learned the object). The presence check below decides both.
                    continue;
                }
                matched[i] = true;
                if iou(&o.rect, &r) < 0.8 && inter(&o.rect, &r) as f32 >= 0.8 * area(&o.rect) as f32
                {
                    // more was dumped next to it: take a new picture of the whole
                    o.rect = r;
                    o.template = patch(&gray, w, &r);
                } else {
                    blend(&mut o.template, &gray, w, &o.rect);
                }
                o.last_seen = at;
                o.area_px = blob_px;
                if class_id.is_some() {
                    o.class_id = class_id;
                }
                continue;
            }
            if mad_ground(&gray, w, &r, &self.ground) < TEMPLATE_MAD {
                // the ground as it was before: a ghost of something that left
                continue;
            }
            if hidden {
                continue;
            }
            self.objects.push(Object {
                rect: r,
                template: patch(&gray, w, &r),
                first_static: static_since,
                last_seen: at,
                class_id,
                area_px: blob_px,
            });
            matched.push(true);
        }
        // presence of objects without a blob this frame
        for (i, o) in self.objects.iter_mut().enumerate() {
            if matched[i] {
                continue;
            }
            if hidden_share(&self.excluded, w, &o.rect) > 0.5 {
                // someone stands in front of it: cannot tell, assume it is still there
                o.last_seen = at;
                continue;
            }
            if mad(&gray, w, &o.rect, &o.template) < TEMPLATE_MAD {
                o.last_seen = at;
                blend(&mut o.template, &gray, w, &o.rect);
            }
        }
        // forget objects long gone
        let forget = TimeDelta::milliseconds((self.rule.clear_s.max(5.0) * 1000.0) as i64);
        self.objects.retain(|o| at - o.last_seen <= forget);
        self.gray_buf = gray;
        self.matched = matched;
        let present = self.present(at).count() as u32;
        self.decide(at, g, present)
    }

    fn present(&self, at: DateTime<Utc>) -> impl Iterator<Item = &Object> {
        let grace = TimeDelta::milliseconds((PRESENT_S * 1000.0) as i64);
        self.objects
            .iter()
            .filter(move |o| at - o.last_seen <= grace)
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
        let update = match step {
            Step::Start { .. } => {
                self.gate.reported(at, "sedang", present as f64);
                false
            }
            Step::Active {
                clearing: false, ..
            } => self.gate.check(at, "sedang", present as f64, 1.0),
            _ => false,
        };
        let severity = if step.is_open() {
            Severity::Alert
        } else if present > 0 {
            Severity::Elevated
        } else {
            Severity::Normal
        };
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
            .map(|o| (Self::to_frame(g, &o.rect), o.class_id))
            .collect()
    }
}

fn area(r: &Rect) -> i64 {
    r.width.max(0) as i64 * r.height.max(0) as i64
}

fn inter(a: &Rect, b: &Rect) -> i64 {
    let w = (a.x + a.width).min(b.x + b.width) - a.x.max(b.x);
    let h = (a.y + a.height).min(b.y + b.height) - a.y.max(b.y);
    w.max(0) as i64 * h.max(0) as i64
}

fn iou(a: &Rect, b: &Rect) -> f32 {
    let i = inter(a, b);
    let u = area(a) + area(b) - i;
    if u > 0 {
        i as f32 / u as f32
    } else {
        0.0
    }
}

/// Intersection over the smaller rectangle.
fn overlap(a: &Rect, b: &Rect) -> f32 {
    let m = area(a).min(area(b));
    if m > 0 {
        inter(a, b) as f32 / m as f32
    } else {
        0.0
    }
}

fn contains(outer: &Rect, inner: &Rect) -> bool {
    inter(outer, inner) == area(inner) && area(inner) > 0
}

fn hidden_share(excluded: &[u8], w: i32, r: &Rect) -> f32 {
    let mut n = 0u32;
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        n += excluded[row + r.x as usize..row + (r.x + r.width) as usize]
            .iter()
            .filter(|&&e| e == 1)
            .count() as u32;
    }
    n as f32 / area(r).max(1) as f32
}

fn fg_share(fg: &[u8], w: i32, r: &Rect) -> f32 {
    let mut n = 0u32;
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        n += fg[row + r.x as usize..row + (r.x + r.width) as usize]
            .iter()
            .filter(|&&v| v == 255)
            .count() as u32;
    }
    n as f32 / area(r).max(1) as f32
}

/// Moves a template 1/16 of the way towards the current picture (follows slow light changes).
fn blend(template: &mut [u8], gray: &[u8], w: i32, r: &Rect) {
    if template.len() != area(r) as usize {
        return;
    }
    let mut k = 0;
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        for &v in &gray[row + r.x as usize..row + (r.x + r.width) as usize] {
            template[k] = ((template[k] as u16 * 15 + v as u16) / 16) as u8;
            k += 1;
        }
    }
}

fn patch(gray: &[u8], w: i32, r: &Rect) -> Vec<u8> {
    let mut out = Vec::with_capacity(area(r) as usize);
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        out.extend_from_slice(&gray[row + r.x as usize..row + (r.x + r.width) as usize]);
    }
    out
}

/// Mean absolute difference between the grey picture and the ground model at `r`.
fn mad_ground(gray: &[u8], w: i32, r: &Rect, ground: &[f32]) -> f32 {
    if ground.len() != gray.len() || area(r) == 0 {
        return f32::INFINITY;
    }
    let mut sum = 0.0f32;
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        for i in row + r.x as usize..row + (r.x + r.width) as usize {
            sum += (gray[i] as f32 - ground[i]).abs();
        }
    }
    sum / area(r) as f32
}

/// Mean absolute difference between the grey picture at `r` and `template`.
fn mad(gray: &[u8], w: i32, r: &Rect, template: &[u8]) -> f32 {
    if template.len() != area(r) as usize || template.is_empty() {
        return f32::INFINITY;
    }
    let mut sum = 0u64;
    let mut k = 0;
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        for &v in &gray[row + r.x as usize..row + (r.x + r.width) as usize] {
            sum += (v as i32 - template[k] as i32).unsigned_abs() as u64;
            k += 1;
        }
    }
    sum as f32 / template.len() as f32
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

    #[test]
    fn geometry_and_helpers() {
        // a zone in the lower right quarter of a 416 x 416 frame works at 160 x 160 at most
        let poly = Polygon::new(&[[0.5, 0.5], [1.0, 0.5], [1.0, 1.0], [0.5, 1.0]]);
        let g = Garbage::new(rule(), poly).geometry(416, 416);
        assert_eq!(g.rect, Rect::new(208, 208, 208, 208));
        assert_eq!(g.work, Size::new(160, 160));
        assert_eq!(g.zone_px, 160 * 160);
        let r = Rect::new(1, 1, 2, 2);
        let gray = vec![10u8; 16];
        assert_eq!(mad(&gray, 4, &r, &[10, 10, 10, 10]), 0.0);
        assert_eq!(mad(&gray, 4, &r, &[20, 20, 20, 20]), 10.0);
        assert_eq!(mad(&gray, 4, &r, &[1]), f32::INFINITY);
        assert!((iou(&Rect::new(0, 0, 2, 2), &Rect::new(1, 0, 2, 2)) - 1.0 / 3.0).abs() < 1e-6);
        assert!(contains(&Rect::new(0, 0, 4, 4), &r));
        assert!(!contains(&r, &Rect::new(0, 0, 4, 4)));
        assert_eq!(overlap(&r, &Rect::new(10, 10, 1, 1)), 0.0);
    }
}
