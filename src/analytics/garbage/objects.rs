//! The objects a garbage zone knows (steps 4 and 5 of [`super`]): which static blobs are new
//! objects rather than ghosts of the ground, and whether known objects are still there.

use chrono::{DateTime, TimeDelta, Utc};
use opencv::core::Rect;

use super::{MIN_FG_SHARE, PRESENT_S, TEMPLATE_MAD};
use crate::model::ClassId;

#[derive(Clone, Debug)]
pub(super) struct Object {
    pub rect: Rect,
    template: Vec<u8>,
    pub first_static: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    pub class_id: Option<ClassId>,
    pub area_px: u32,
}

/// A static blob of one frame: its box and pixel count in work pixels, and the litter class
/// of a detection on it.
pub(super) type Blob = (Rect, u32, Option<ClassId>);

/// One frame's pictures over the zone's work area, row-major, `w` pixels wide.
pub(super) struct View<'a> {
    pub w: i32,
    pub gray: &'a [u8],
    /// MOG2 foreground (255), cleaned.
    pub fg: &'a [u8],
    /// 1 under people and vehicles, 2 under known objects, 0 elsewhere.
    pub excluded: &'a [u8],
    /// The ground model.
    pub ground: &'a [f32],
}

/// The objects found in a zone so far.
#[derive(Clone, Debug, Default)]
pub(super) struct Objects {
    list: Vec<Object>,
    matched: Vec<bool>,
}

impl Objects {
    pub fn clear(&mut self) {
        self.list.clear();
    }

    /// Work-pixel boxes of every known object, present or not.
    pub fn rects(&self) -> impl Iterator<Item = Rect> + '_ {
        self.list.iter().map(|o| o.rect)
    }

    /// Objects seen within [`PRESENT_S`] of `at`.
    pub fn present(&self, at: DateTime<Utc>) -> impl Iterator<Item = &Object> {
        let grace = TimeDelta::milliseconds((PRESENT_S * 1000.0) as i64);
        self.list.iter().filter(move |o| at - o.last_seen <= grace)
    }

    /// Takes one frame's static blobs: known objects they show are seen again, blobs that
    /// differ from the ground become objects (static since `static_since`), objects without a
    /// blob are checked against their template, and objects not seen for `forget` are dropped.
    pub fn track(
        &mut self,
        at: DateTime<Utc>,
        static_since: DateTime<Utc>,
        forget: TimeDelta,
        v: &View<'_>,
        blobs: &[Blob],
    ) {
        let (w, gray) = (v.w, v.gray);
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        matched.resize(self.list.len(), false);
        for &(r, blob_px, class_id) in blobs {
            if fg_share(v.fg, w, &r) < MIN_FG_SHARE {
                // the object that made this blob has left (or become background): the static
                // mask has not caught up yet
                continue;
            }
            let hidden = hidden_share(v.excluded, w, &r) > 0.5;

            if let Some(i) = self
                .list
                .iter()
                .position(|o| iou(&o.rect, &r) > 0.3 || contains(&o.rect, &r))
            {
                let o = &mut self.list[i];
                if hidden || mad(gray, w, &o.rect, &o.template) >= TEMPLATE_MAD {
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
                    o.template = patch(gray, w, &r);
                } else {
                    blend(&mut o.template, gray, w, &o.rect);
                }
                o.last_seen = at;
                o.area_px = blob_px;
                if class_id.is_some() {
                    o.class_id = class_id;
                }
                continue;
            }
            if mad_ground(gray, w, &r, v.ground) < TEMPLATE_MAD {
                // the ground as it was before: a ghost of something that left
                continue;
            }
            if hidden {
                continue;
            }
            self.list.push(Object {
                rect: r,
                template: patch(gray, w, &r),
                first_static: static_since,
                last_seen: at,
                class_id,
                area_px: blob_px,
            });
            matched.push(true);
        }
        // presence of objects without a blob this frame
        for (i, o) in self.list.iter_mut().enumerate() {
            if matched[i] {
                continue;
            }
            if hidden_share(v.excluded, w, &o.rect) > 0.5 {
                // someone stands in front of it: cannot tell, assume it is still there
                o.last_seen = at;
                continue;
            }
            if mad(gray, w, &o.rect, &o.template) < TEMPLATE_MAD {
                o.last_seen = at;
                blend(&mut o.template, gray, w, &o.rect);
            }
        }
        // forget objects long gone
        self.list.retain(|o| at - o.last_seen <= forget);
        self.matched = matched;
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
pub(super) fn overlap(a: &Rect, b: &Rect) -> f32 {
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
    use super::*;

    #[test]
    fn rectangle_and_template_helpers() {
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
