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
//! 4. **Presence**: MOG2 eventually learns any object into the background (after roughly
//!    0.7 / learning_rate frames), and a person may stand in front of it. So once found, an
//!    object stays present while its picture (a grey template taken from the blob, refreshed
//!    slowly for light changes) still matches the frame, or while it is hidden by an excluded
//!    box; it is gone when the ground shows again.
//! 5. **Ghosts**: when an object is gone, MOG2 — if it had learned the object — now sees the bare
//!    ground as foreground. The ground picture of each removed object is kept, and a blob that
//!    shows that same ground is not a new object.
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
/// Excluded boxes are enlarged by this share of their size on each side (limbs, shadows).
pub const EXCLUDE_MARGIN: f32 = 0.15;
/// Mean absolute grey difference under which a template still matches.
pub const TEMPLATE_MAD: f32 = 14.0;
/// An object counts as present if seen within this many seconds.
pub const PRESENT_S: f64 = 1.0;
/// Remembered ground pictures are forgotten after this long without a blob on them.
pub const GHOST_FORGET_S: f64 = 30.0;
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

#[derive(Clone, Debug)]
struct Ghost {
    rect: Rect,
    ground: Vec<u8>,
    last_blob: DateTime<Utc>,
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
    gray_buf: Vec<u8>,
    blobs: Vec<(Rect, u32, Option<ClassId>)>,
    matched: Vec<bool>,
    objects: Vec<Object>,
    ghosts: Vec<Ghost>,
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
            gray_buf: Vec::new(),
            blobs: Vec::new(),
            matched: Vec::new(),
            objects: Vec::new(),
            ghosts: Vec::new(),
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
            self.objects.clear();
            self.ghosts.clear();
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
        if !warm {
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

        // 2. exclusions and the accumulator
        self.excluded.iter_mut().for_each(|e| *e = 0);
        let w = g.work.width as usize;
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
        let static_s = self.rule.static_s as f32;
        for i in 0..self.acc.len() {
            if g.mask[i] == 0 {
                self.acc[i] = 0.0;
                continue;
            }
            let a = &mut self.acc[i];
            if self.excluded[i] != 0 {
                // covered by a person or vehicle: never gains; loses as if background
                *a = (*a - dt).max(0.0);
            } else if fg[i] == 255 {
                *a += dt;
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
        let mut gray = std::mem::take(&mut self.gray_buf);
        gray.clear();
        match self.gray.data_bytes() {
            Ok(b) if b.len() == g.mask.len() => gray.extend_from_slice(b),
            _ => return self.decide(at, g, 0),
        }
        let w = g.work.width;
        let static_since = at - TimeDelta::milliseconds((self.rule.static_s * 1000.0) as i64);
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        matched.resize(self.objects.len(), false);
        for &(r, area, class_id) in blobs {
            let hidden = hidden_share(&self.excluded, w, &r) > 0.5;
            if let Some(i) = self
                .objects
                .iter()
                .position(|o| iou(&o.rect, &r) > 0.3 || contains(&o.rect, &r))
            {
                let o = &mut self.objects[i];
                matched[i] = true;
                o.last_seen = at;
                o.area_px = area;
                if class_id.is_some() {
                    o.class_id = class_id;
                }
                if !hidden {
                    o.rect = r;
                    o.template = patch(&gray, w, &r);
                }
                continue;
            }
            if let Some(gh) = self
                .ghosts
                .iter_mut()
                .find(|gh| iou(&gh.rect, &r) > 0.3 || contains(&gh.rect, &r))
            {
                if mad(&gray, w, &gh.rect, &gh.ground) < TEMPLATE_MAD {
                    // the bare ground where an object was: MOG2 still remembers the object
                    gh.last_blob = at;
                    continue;
                }
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
                area_px: area,
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
                // follow slow light changes
                let fresh = patch(&gray, w, &o.rect);
                for (t, f) in o.template.iter_mut().zip(fresh) {
                    *t = ((*t as u16 * 15 + f as u16) / 16) as u8;
                }
            }
        }
        // forget objects long gone, remembering the ground they leave
        let forget = TimeDelta::milliseconds((self.rule.clear_s.max(5.0) * 1000.0) as i64);
        let mut i = 0;
        while i < self.objects.len() {
            if at - self.objects[i].last_seen > forget {
                let o = self.objects.swap_remove(i);
                self.ghosts.push(Ghost {
                    rect: o.rect,
                    ground: patch(&gray, w, &o.rect),
                    last_blob: at,
                });
            } else {
                i += 1;
            }
        }
        let ghost_forget = TimeDelta::milliseconds((GHOST_FORGET_S * 1000.0) as i64);
        self.ghosts.retain(|gh| at - gh.last_blob <= ghost_forget);
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
            .map(|&e| e as u32)
            .sum::<u32>();
    }
    n as f32 / area(r).max(1) as f32
}

fn patch(gray: &[u8], w: i32, r: &Rect) -> Vec<u8> {
    let mut out = Vec::with_capacity(area(r) as usize);
    for y in r.y..r.y + r.height {
        let row = (y * w) as usize;
        out.extend_from_slice(&gray[row + r.x as usize..row + (r.x + r.width) as usize]);
    }
    out
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
