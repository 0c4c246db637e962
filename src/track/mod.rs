//! Multi-object tracker (ByteTrack-style), one per camera.
//!
//! Per frame ([`Tracker::update`]):
//! 1. every track's Kalman filter ([`kalman`]) predicts its box at the frame's timestamp;
//! 2. **high-score** detections are matched to confirmed and lost tracks by IoU with the
//!    predicted box, then the leftovers once more with *buffered* IoU (boxes enlarged by
//!    `buffer`, after C-BIoU, Yang et al. 2023): at ~5 analytics fps a fast object can move
//!    further than its own size between frames, and plain IoU would then be zero;
//! 3. **low-score** detections (ByteTrack's idea: occluded or blurred objects score low, and
//!    are still the same objects) are matched to the confirmed tracks still unmatched;
//! 4. tentative tracks get the remaining high-score detections, then those still unmatched
//!    may *bridge* one frame on a low-score detection (strict IoU; no hit towards `min_hits`,
//!    and the next frame needs a high-score one): an object at the edge of the detector's
//!    threshold, such as a vehicle crossing a counting line in the few frames it takes to
//!    confirm, keeps its id; a tentative track that misses a frame is dropped (it was probably
//!    a false positive);
//! 5. remaining detections scoring at least `new_track_score` start tentative tracks, which
//!    become confirmed after `min_hits` matches; confirmed tracks that miss are *lost* and
//!    coast on their prediction for up to `max_lost_s`, so ids survive short gaps; a track that
//!    was standing still (a vehicle in a queue, detected only in some frames) coasts for up to
//!    `max_lost_still_s`: where it stands, the prediction stays good much longer.
//!
//! Matching is minimum-cost (1 - IoU) assignment ([`assign`]), only between detections and
//! tracks of the same class group: a person never continues a car's track, while a van the
//! detector calls "car" in one frame and "truck" in the next stays one track (the track's class
//! is the one with the highest summed score). A van called both in one frame (the detector's
//! NMS is per class) is one detection for the tracker: the weaker of two overlapping boxes of
//! one group is dropped first (`group_nms_iou`).

pub mod assign;
pub mod kalman;

use chrono::{DateTime, Utc};

use crate::model::{BBox, ClassId, Detection, Point, Track, TrackId, TrackState};
use assign::{Assigner, Edge};
use kalman::{Axis, Noise};

/// Tracker settings. The defaults suit ~5 analytics fps and the NanoDet model's score range
/// (its quality scores run lower than classic confidences).
#[derive(Clone, Debug, PartialEq)]
pub struct TrackerConfig {
    /// Detections at or above this score take part in the first association.
    pub high_score: f32,
    /// Detections between this and `high_score` take part in the second association only.
    pub low_score: f32,
    /// Unmatched detections at or above this start a new track.
    pub new_track_score: f32,
    /// Least IoU (predicted box vs detection) for the first association.
    pub match_iou: f32,
    /// Least IoU for the low-score association (stricter: low scores are less reliable).
    pub low_match_iou: f32,
    /// Least IoU for matching tentative tracks.
    pub tentative_match_iou: f32,
    /// Enlargement of both boxes on each side, as a share of their size, for the buffered-IoU
    /// fallback of the first association; 0 disables the fallback.
    pub buffer: f32,
    /// Matches needed before a track is confirmed.
    pub min_hits: u32,
    /// How long a confirmed track survives without detections, seconds.
    pub max_lost_s: f32,
    /// How long a track that stands still (moving under `still_sizes_per_s`) survives without
    /// detections, seconds.
    pub max_lost_still_s: f32,
    /// A track moving less than this many times its own size per second stands still.
    pub still_sizes_per_s: f32,
    /// Classes that may continue each other's tracks (e.g. car, truck and bus, which detectors
    /// confuse on vans). Classes in no group match only themselves.
    pub class_groups: Vec<Vec<ClassId>>,
    /// Of two detections of different classes in one group overlapping by more than this IoU,
    /// the weaker is the same object and not used; 0 keeps both.
    pub group_nms_iou: f32,
    /// Motion and measurement noise of the Kalman filter.
    pub noise: Noise,
    /// Upper bound on live tracks; beyond it no new track starts (protects the frame loop from a
    /// detector gone wild).
    pub max_tracks: usize,
    /// The detector's score threshold per class id: a detection at or below its class's
    /// threshold (the detector keeps some down to a floor) only continues a confirmed track
    /// (the low-score association), never starts one. Empty: no class threshold.
    pub class_thresholds: Vec<f32>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score: 0.4,
            low_score: 0.15,
            new_track_score: 0.45,
            match_iou: 0.2,
            low_match_iou: 0.4,
            tentative_match_iou: 0.3,
            buffer: 0.3,
            min_hits: 3,
            max_lost_s: 1.5,
            max_lost_still_s: 6.0,
            still_sizes_per_s: 0.25,
            class_groups: Vec::new(),
            group_nms_iou: 0.6,
            noise: Noise::default(),
            max_tracks: 1000,
            class_thresholds: Vec::new(),
        }
    }
}

impl TrackerConfig {
    /// Groups of mutually confusable classes looked up by name in `labels` (names not in the
    /// model are skipped): vehicles with four or more wheels, and two-wheelers.
    pub fn default_groups(labels: &[String]) -> Vec<Vec<ClassId>> {
        let find = |names: &[&str]| -> Vec<ClassId> {
            names
                .iter()
                .filter_map(|n| labels.iter().position(|l| l == n))
                .map(|i| i as ClassId)
                .collect()
        };
        [
            find(&["car", "truck", "bus"]),
            find(&["bicycle", "motorcycle"]),
        ]
        .into_iter()
        .filter(|g| g.len() > 1)
        .collect()
    }
}

/// A detection in source pixels, with its match group.
#[derive(Clone, Copy, Debug)]
struct Det {
    b: [f32; 4],
    score: f32,
    class_id: ClassId,
    group: u32,
    /// At or above `high_score` and above its class's threshold: takes part in the first
    /// association and may start a track.
    strong: bool,
}

#[derive(Clone, Debug)]
struct Trk {
    id: u64,
    class_id: ClassId,
    group: u32,
    /// Centre x, centre y, width, height in source pixels.
    kf: [Axis; 4],
    score: f32,
    state: TrackState,
    hits: u32,
    first_t: f64,
    last_hit_t: f64,
    matched: bool,
    /// A tentative track whose last match was a weak detection (a bridge): the next frame
    /// needs a strong one.
    bridged: bool,
    /// Summed detection score per class seen on this track; the best one names the track.
    votes: [(ClassId, f32); 4],
}

impl Trk {
    fn size(&self) -> f32 {
        self.kf[2].pos.max(self.kf[3].pos).max(1.0)
    }
    fn bbox_px(&self) -> [f32; 4] {
        let (cx, cy) = (self.kf[0].pos, self.kf[1].pos);
        let (w, h) = (self.kf[2].pos.max(1.0), self.kf[3].pos.max(1.0));
        [cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5]
    }
    fn vote(&mut self, class_id: ClassId, score: f32) {
        if let Some(v) = self.votes.iter_mut().find(|v| v.0 == class_id && v.1 > 0.0) {
            v.1 += score;
        } else if let Some(v) = self.votes.iter_mut().min_by(|a, b| a.1.total_cmp(&b.1)) {
            *v = (class_id, score);
        }
        if let Some(best) = self.votes.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
            self.class_id = best.0;
        }
    }
}

/// The per-camera tracker. See the module docs for the algorithm.
#[derive(Debug)]
pub struct Tracker {
    cfg: TrackerConfig,
    /// Class id → match group (index = class id); classes past the end are their own group.
    groups: Vec<u32>,
    tracks: Vec<Trk>,
    next_id: u64,
    epoch: Option<DateTime<Utc>>,
    last_t: f64,
    source: (u32, u32),
    out: Vec<Track>,
    // scratch, kept between frames
    dets: Vec<Det>,
    det_used: Vec<bool>,
    rows: Vec<u32>,
    cols: Vec<u32>,
    edges: Vec<Edge>,
    pairs: Vec<(u32, u32)>,
    live: Vec<(u32, [f32; 4])>,
    /// Detection indices, strongest first, and those kept (cross-class duplicates).
    order: Vec<u32>,
    kept: Vec<u32>,
    assigner: Assigner,
    warned_full: bool,
}

/// What a match in a pass counts as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hit {
    /// A hit towards `min_hits`.
    Count,
    /// Keeps a tentative track alive for this frame only.
    Bridge,
}

/// Which IoU a pass uses.
#[derive(Clone, Copy)]
struct Gate {
    min_iou: f32,
    buffer: f32,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        let mut groups: Vec<u32> = Vec::new();
        for g in &cfg.class_groups {
            let Some(&leader) = g.iter().min() else {
                continue;
            };
            for &c in g {
                let c = c as usize;
                if groups.len() <= c {
                    let len = groups.len();
                    groups.extend((len..=c).map(|i| i as u32));
                }
                groups[c] = leader as u32;
            }
        }
        Self {
            cfg,
            groups,
            tracks: Vec::new(),
            next_id: 1,
            epoch: None,
            last_t: 0.0,
            source: (0, 0),
            out: Vec::new(),
            dets: Vec::new(),
            det_used: Vec::new(),
            rows: Vec::new(),
            cols: Vec::new(),
            edges: Vec::new(),
            pairs: Vec::new(),
            live: Vec::new(),
            order: Vec::new(),
            kept: Vec::new(),
            assigner: Assigner::default(),
            warned_full: false,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// The tracks after the latest update (tentative, confirmed and lost), ordered by id.
    pub fn tracks(&self) -> &[Track] {
        &self.out
    }

    fn group(&self, c: ClassId) -> u32 {
        self.groups.get(c as usize).copied().unwrap_or(c as u32)
    }

    /// Folds in one frame's detections (normalised boxes) taken at `at` from a picture of
    /// `source_size` pixels, and returns the tracks. Timestamps going backwards are treated as
    /// no time passing; detections with non-finite or empty boxes are ignored.
    pub fn update(
        &mut self,
        dets: &[Detection],
        at: DateTime<Utc>,
        source_size: (u32, u32),
    ) -> &[Track] {
        let source = (source_size.0.max(1), source_size.1.max(1));
        if self.source != source {
            // Pixel-space state means nothing at another resolution: start over (ids keep
            // counting up, so they stay unique for the life of the process).
            if self.source != (0, 0) && !self.tracks.is_empty() {
                tracing::info!(
                    from = ?self.source,
                    to = ?source,
                    "source size changed; tracks restarted"
                );
            }
            self.tracks.clear();
            self.source = source;
        }
        let epoch = *self.epoch.get_or_insert(at);
        let t =
            ((at - epoch).num_microseconds().unwrap_or(i64::MAX) as f64 * 1e-6).max(self.last_t);
        let dt = (t - self.last_t) as f32;
        self.last_t = t;
        let (sw, sh) = (source.0 as f32, source.1 as f32);
        let noise = self.cfg.noise;

        // 1. predict
        for tr in &mut self.tracks {
            tr.matched = false;
            let size = tr.size();
            for a in &mut tr.kf {
                a.predict(dt, size, &noise);
            }
        }

        // detections in pixels
        self.dets.clear();
        for d in dets {
            let b = d.bbox;
            if !b.x1.is_finite()
                || !b.y1.is_finite()
                || !b.x2.is_finite()
                || !b.y2.is_finite()
                || !d.score.is_finite()
                || d.score < self.cfg.low_score
            {
                continue;
            }
            let b = b.clamped();
            let px = [b.x1 * sw, b.y1 * sh, b.x2 * sw, b.y2 * sh];
            if px[2] - px[0] < 0.5 || px[3] - px[1] < 0.5 {
                continue;
            }
            let over_class = self
                .cfg
                .class_thresholds
                .get(d.class_id as usize)
                .is_none_or(|t| d.score > *t);
            self.dets.push(Det {
                b: px,
                score: d.score,
                class_id: d.class_id,
                group: self.group(d.class_id),
                strong: d.score >= self.cfg.high_score && over_class,
            });
        }
        self.det_used.clear();
        self.det_used.resize(self.dets.len(), false);
        self.drop_cross_class_duplicates();

        // 2. high-score detections vs confirmed and lost tracks: IoU, then buffered IoU
        let plain = Gate {
            min_iou: self.cfg.match_iou,
            buffer: 0.0,
        };
        self.pass(
            t,
            |tr| tr.state != TrackState::Tentative,
            |d| d.strong,
            plain,
            Hit::Count,
        );
        if self.cfg.buffer > 0.0 {
            let buffered = Gate {
                min_iou: self.cfg.match_iou,
                buffer: self.cfg.buffer,
            };
            self.pass(
                t,
                |tr| tr.state != TrackState::Tentative,
                |d| d.strong,
                buffered,
                Hit::Count,
            );
        }
        // 3. low-score detections vs confirmed tracks not matched yet
        let low = Gate {
            min_iou: self.cfg.low_match_iou,
            buffer: 0.0,
        };
        self.pass(
            t,
            |tr| tr.state == TrackState::Confirmed,
            |d| !d.strong,
            low,
            Hit::Count,
        );
        // 4. tentative tracks vs remaining high-score detections
        let tent = Gate {
            min_iou: self.cfg.tentative_match_iou,
            buffer: self.cfg.buffer,
        };
        self.pass(
            t,
            |tr| tr.state == TrackState::Tentative,
            |d| d.strong,
            tent,
            Hit::Count,
        );
        // 4b. a tentative track not matched yet may bridge one frame on a weak detection (an
        // object at the edge of the detector's threshold, e.g. a vehicle crossing a counting
        // line in the two or three frames it takes to confirm); it is no hit, so a false
        // positive living on weak detections is never confirmed.
        self.pass(
            t,
            |tr| tr.state == TrackState::Tentative && !tr.bridged,
            |d| !d.strong,
            low,
            Hit::Bridge,
        );

        // 5. misses: tentative tracks die, confirmed ones coast as lost until max_lost_s
        let max_lost = self.cfg.max_lost_s as f64;
        let max_lost_still = (self.cfg.max_lost_still_s as f64).max(max_lost);
        let still_rate = self.cfg.still_sizes_per_s;
        for tr in &mut self.tracks {
            if tr.matched {
                continue;
            }
            match tr.state {
                // dropped by the retain below
                TrackState::Tentative => {}
                TrackState::Confirmed | TrackState::Lost => {
                    if tr.state == TrackState::Confirmed {
                        // size is not a motion; do not let it drift while coasting
                        tr.kf[2].vel = 0.0;
                        tr.kf[3].vel = 0.0;
                    }
                    tr.state = TrackState::Lost;
                }
            }
        }
        self.tracks.retain(|tr| {
            let b = tr.bbox_px();
            let visible = b[2] > 0.0 && b[3] > 0.0 && b[0] < sw && b[1] < sh;
            match tr.state {
                TrackState::Tentative => tr.matched,
                TrackState::Confirmed => true,
                TrackState::Lost => {
                    let still = tr.kf[0].vel.hypot(tr.kf[1].vel) < still_rate * tr.size();
                    let limit = if still { max_lost_still } else { max_lost };
                    t - tr.last_hit_t <= limit && visible
                }
            }
        });
        // A lost track sitting on a live one of the same group is a duplicate (the object was
        // picked up again by a new track): drop it, as ByteTrack does, so it cannot steal later.
        if self.tracks.iter().any(|t| t.state == TrackState::Lost) {
            let mut live = std::mem::take(&mut self.live);
            live.clear();
            live.extend(
                self.tracks
                    .iter()
                    .filter(|t| t.matched)
                    .map(|t| (t.group, t.bbox_px())),
            );
            self.tracks.retain(|tr| {
                tr.state != TrackState::Lost
                    || !live
                        .iter()
                        .any(|(g, b)| *g == tr.group && iou(b, &tr.bbox_px(), 0.0) > 0.85)
            });
            self.live = live;
        }

        // 6. new tracks
        for (i, d) in self.dets.iter().enumerate() {
            if self.det_used[i] || !d.strong || d.score < self.cfg.new_track_score {
                continue;
            }
            if self.tracks.len() >= self.cfg.max_tracks {
                if !self.warned_full {
                    tracing::warn!(
                        max = self.cfg.max_tracks,
                        "track limit reached; new objects are not tracked"
                    );
                    self.warned_full = true;
                }
                break;
            }
            let (w, h) = (d.b[2] - d.b[0], d.b[3] - d.b[1]);
            let size = w.max(h);
            let kf = [
                Axis::new((d.b[0] + d.b[2]) * 0.5, size, &noise),
                Axis::new((d.b[1] + d.b[3]) * 0.5, size, &noise),
                Axis::new(w, size, &noise),
                Axis::new(h, size, &noise),
            ];
            let state = if self.cfg.min_hits <= 1 {
                TrackState::Confirmed
            } else {
                TrackState::Tentative
            };
            self.tracks.push(Trk {
                id: self.next_id,
                class_id: d.class_id,
                group: d.group,
                kf,
                score: d.score,
                state,
                hits: 1,
                first_t: t,
                last_hit_t: t,
                matched: true,
                bridged: false,
                votes: [(d.class_id, d.score), (0, 0.0), (0, 0.0), (0, 0.0)],
            });
            self.next_id += 1;
        }

        // 7. output
        self.out.clear();
        for tr in &self.tracks {
            let b = tr.bbox_px();
            let (vx, vy) = (tr.kf[0].vel, tr.kf[1].vel);
            let bbox = BBox::new(b[0] / sw, b[1] / sh, b[2] / sw, b[3] / sh).clamped();
            self.out.push(Track {
                id: TrackId(tr.id),
                class_id: tr.class_id,
                bbox,
                score: tr.score,
                state: tr.state,
                velocity: Point::new(vx / sw, vy / sh),
                speed_px_s: (vx * vx + vy * vy).sqrt(),
                speed_kmh: None,
                age_s: (t - tr.first_t) as f32,
                hits: tr.hits,
            });
        }
        &self.out
    }

    /// The detector suppresses overlapping boxes within a class only, so one van can come out
    /// as a "car" and a "truck" box. For the tracker they are one object: the weaker box of two
    /// in the same group but of different classes that overlap by more than
    /// `group_nms_iou` is not used. Left in, it could continue another track (in a queue, that
    /// of the vehicle ahead when its own box is missing for a frame).
    fn drop_cross_class_duplicates(&mut self) {
        let thr = self.cfg.group_nms_iou;
        if thr <= 0.0 || self.dets.len() < 2 {
            return;
        }
        // greedy, strongest first: only a box that is kept suppresses
        let dets = &self.dets;
        self.order.clear();
        self.order.extend(0..dets.len() as u32);
        self.order
            .sort_by(|&i, &j| dets[j as usize].score.total_cmp(&dets[i as usize].score));
        self.kept.clear();
        for &i in &self.order {
            let a = &dets[i as usize];
            let duplicate = self.kept.iter().any(|&j| {
                let b = &dets[j as usize];
                b.group == a.group && b.class_id != a.class_id && iou(&a.b, &b.b, 0.0) > thr
            });
            if duplicate {
                self.det_used[i as usize] = true;
            } else {
                self.kept.push(i);
            }
        }
    }

    /// One association pass between the tracks accepted by `take_track` and the unused
    /// detections accepted by `take_det`.
    fn pass(
        &mut self,
        t: f64,
        take_track: impl Fn(&Trk) -> bool,
        take_det: impl Fn(&Det) -> bool,
        gate: Gate,
        hit: Hit,
    ) {
        self.rows.clear();
        self.rows.extend(
            self.tracks
                .iter()
                .enumerate()
                .filter(|(_, tr)| !tr.matched && take_track(tr))
                .map(|(i, _)| i as u32),
        );
        self.cols.clear();
        self.cols.extend(
            self.dets
                .iter()
                .enumerate()
                .filter(|(i, d)| !self.det_used[*i] && take_det(d))
                .map(|(i, _)| i as u32),
        );
        if self.rows.is_empty() || self.cols.is_empty() {
            return;
        }
        self.edges.clear();
        for (r, &ti) in self.rows.iter().enumerate() {
            let tr = &self.tracks[ti as usize];
            let tb = tr.bbox_px();
            // quick reject on x: boxes that do not overlap even when grown by the buffer
            let grow = gate.buffer * (tb[2] - tb[0]);
            for (c, &di) in self.cols.iter().enumerate() {
                let d = &self.dets[di as usize];
                if d.group != tr.group {
                    continue;
                }
                let dgrow = gate.buffer * (d.b[2] - d.b[0]);
                if d.b[0] - dgrow > tb[2] + grow || d.b[2] + dgrow < tb[0] - grow {
                    continue;
                }
                let v = iou(&tb, &d.b, gate.buffer);
                if v >= gate.min_iou && v > 0.0 {
                    self.edges.push(Edge {
                        row: r as u32,
                        col: c as u32,
                        cost: 1.0 - v,
                    });
                }
            }
        }
        self.pairs.clear();
        self.assigner.solve(
            self.rows.len(),
            self.cols.len(),
            &self.edges,
            &mut self.pairs,
        );
        let noise = self.cfg.noise;
        for &(r, c) in &self.pairs {
            let (ti, di) = (
                self.rows[r as usize] as usize,
                self.cols[c as usize] as usize,
            );
            let d = self.dets[di];
            self.det_used[di] = true;
            let tr = &mut self.tracks[ti];
            let (w, h) = (d.b[2] - d.b[0], d.b[3] - d.b[1]);
            let size = w.max(h);
            let z = [(d.b[0] + d.b[2]) * 0.5, (d.b[1] + d.b[3]) * 0.5, w, h];
            for (a, z) in tr.kf.iter_mut().zip(z) {
                a.update(z, size, &noise);
            }
            tr.matched = true;
            tr.score = d.score;
            tr.last_hit_t = t;
            tr.vote(d.class_id, d.score);
            if hit == Hit::Bridge {
                tr.bridged = true;
                continue;
            }
            tr.bridged = false;
            tr.hits = tr.hits.saturating_add(1);
            tr.state = match tr.state {
                TrackState::Tentative if tr.hits < self.cfg.min_hits => TrackState::Tentative,
                _ => TrackState::Confirmed,
            };
        }
    }
}

/// IoU of two pixel boxes, each first enlarged by `buffer` times its width and height on every
/// side (buffered IoU; 0 = plain IoU).
fn iou(a: &[f32; 4], b: &[f32; 4], buffer: f32) -> f32 {
    let grow = |x: &[f32; 4]| {
        let (bw, bh) = ((x[2] - x[0]) * buffer, (x[3] - x[1]) * buffer);
        [x[0] - bw, x[1] - bh, x[2] + bw, x[3] + bh]
    };
    let (a, b) = if buffer > 0.0 {
        (grow(a), grow(b))
    } else {
        (*a, *b)
    };
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
