//! `crowd`: persons whose box bottom-centre lies in the zone, above a count or a density.
//!
//! **Counting people in a group.** A small COCO detector scores people low where they overlap:
//! in a tight group of 16 it finds half of them at 0.5 (scripts/scenarios/STUDY.md). So the
//! count of a frame is every person box in the zone scoring at least `confident_score`, plus
//! those scoring `low_score` up to it whose box is at least `min_foreground` foreground
//! against the zone's background ([`foreground`]): a low score counts only where the picture
//! shows someone, never on static clutter. The detector keeps boxes below its thresholds for
//! this ([`crate::detect::PIPELINE_FLOOR`]); no extra inference.
//!
//! The per-frame count is smoothed by its lower median over `smoothing_s`; the smoothed count
//! enters "crowded" at the threshold and leaves it only below `release_ratio` of it
//! (hysteresis); [`Hold`] adds dwell, clear time and the cooldown's re-open window.

pub mod foreground;

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::hold::{Hold, Step, Timed, Timing, UpdateGate};
use super::rule::{ClassSet, Judgement, Rule, Throttle, ZoneFrame, ZoneRule, ZoneSetup};
use super::AnalyticsError;
use crate::config::CrowdRule;
use crate::model::{
    BBox, Detection, Evidence, IncidentKind, Level, Severity, SnapshotBox, ZoneState,
};
use foreground::Foreground;

/// One frame's decision for a crowd zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrowdStep {
    pub step: Step,
    /// Median count over the smoothing window.
    pub persons: u32,
    /// Of those, counted from low-scoring boxes (in the frame whose count the median is).
    pub persons_low_score: u32,
    pub density_per_m2: Option<f32>,
    /// Tinggi from twice the threshold (down again below `release_ratio` of that), else
    /// sedang.
    pub level: Level,
    /// An open incident's evidence changed enough for an update event.
    pub update: bool,
    pub severity: Severity,
}

#[derive(Clone, Debug)]
pub struct Crowd {
    rule: CrowdRule,
    area_m2: Option<f64>,
    hold: Hold,
    gate: UpdateGate<Level>,
    /// (time, count, of which low-scoring) per frame of the smoothing window.
    window: VecDeque<(DateTime<Utc>, u32, u32)>,
    scratch: Vec<u32>,
    crowded: bool,
    high: bool,
}

impl Crowd {
    pub fn new(rule: CrowdRule, area_m2: Option<f64>) -> Self {
        Self {
            hold: Hold::of(&rule),
            rule,
            area_m2,
            gate: UpdateGate::default(),
            window: VecDeque::new(),
            scratch: Vec::new(),
            crowded: false,
            high: false,
        }
    }

    pub fn rule(&self) -> &CrowdRule {
        &self.rule
    }

    /// The camera is gone: ends an open incident (its start is returned), forgets the rest.
    pub fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.hold.abandon(at)
    }

    /// Feeds the number of persons in the zone in the frame taken at `at`.
    pub fn step(&mut self, at: DateTime<Utc>, persons_now: u32) -> CrowdStep {
        self.step_counted(at, persons_now, 0)
    }

    /// As [`Crowd::step`], saying how many of the persons came from low-scoring boxes.
    pub fn step_counted(&mut self, at: DateTime<Utc>, persons_now: u32, low_now: u32) -> CrowdStep {
        let horizon = at - chrono::TimeDelta::milliseconds((self.rule.smoothing_s * 1000.0) as i64);
        while self.window.front().is_some_and(|(t, _, _)| *t < horizon) {
            self.window.pop_front();
        }
        // Frames that arrive out of order are folded in at the newest time.
        self.window
            .push_back((at, persons_now, low_now.min(persons_now)));
        self.scratch.clear();
        self.scratch.extend(self.window.iter().map(|(_, n, _)| *n));
        // Lower median: a single flicker up in a 2-frame window does not count.
        let mid = (self.scratch.len() - 1) / 2;
        let persons = *self.scratch.select_nth_unstable(mid).1;
        let persons_low_score = self
            .window
            .iter()
            .rev()
            .find(|(_, n, _)| *n == persons)
            .map_or(0, |(_, _, l)| *l);

        let r = &self.rule;
        let density = self
            .area_m2
            .filter(|a| *a > 0.0)
            .map(|a| (persons as f64 / a) as f32);
        let over = |ratio: f64| {
            persons as f64 >= r.min_persons as f64 * ratio
                || matches!((density, r.max_density_per_m2), (Some(d), Some(max)) if d as f64 >= max * ratio)
        };
        if !self.crowded && over(1.0) {
            self.crowded = true;
        } else if self.crowded && !over(r.release_ratio) {
            self.crowded = false;
        }
        // the level word has its own hysteresis, or a count at twice the threshold flaps it
        if !self.high && over(2.0) {
            self.high = true;
        } else if self.high && !over(2.0 * r.release_ratio) {
            self.high = false;
        }
        let level = if self.high {
            Level::Tinggi
        } else {
            Level::Sedang
        };
        let step = self.hold.step(at, self.crowded);
        let min_change = (self.gate_base() * 0.25).max(2.0);
        let update = self
            .gate
            .on_step(step, at, level, persons as f64, min_change, false);
        let severity = step.severity(self.crowded || over(r.release_ratio));
        CrowdStep {
            step,
            persons,
            persons_low_score,
            density_per_m2: density,
            level,
            update,
            severity,
        }
    }

    fn gate_base(&self) -> f64 {
        self.rule.min_persons as f64
    }
}

/// A `crowd` zone: [`Crowd`] fed the persons counted in the zone (module docs).
pub struct CrowdZone {
    crowd: Crowd,
    classes: ClassSet,
    fg: Foreground,
    /// The boxes counted in the latest frame, for a snapshot.
    counted: Vec<BBox>,
    persons: Vec<Detection>,
    boxes: Vec<BBox>,
    cv_error: Throttle,
}

/// Builds a crowd zone's rule from its `[sites.zones.crowd]` table.
pub fn build(s: &ZoneSetup<'_>) -> Result<Box<dyn ZoneRule>, AnalyticsError> {
    let rule: CrowdRule = s.config.crowd.clone().unwrap_or_default();
    let classes = s.classes("classes", &rule.classes)?;
    Ok(Box::new(CrowdZone {
        crowd: Crowd::new(rule, s.config.area_m2),
        classes,
        fg: Foreground::new(s.zone.poly.bbox()),
        counted: Vec::new(),
        persons: Vec::new(),
        boxes: Vec::new(),
        cv_error: Throttle::default(),
    }))
}

/// How a frame's persons were counted (evidence `count_method`).
pub const WITH_FOREGROUND: &str = "boxes+foreground";
pub const BOXES_ONLY: &str = "boxes";

impl CrowdZone {
    /// Counts the frame's persons in the zone: `(count, of which low-scoring, method)`.
    fn count(&mut self, f: &ZoneFrame<'_>) -> (u32, u32, &'static str) {
        let r = self.crowd.rule();
        let (low, confident) = (r.low_score as f32, r.confident_score as f32);
        self.persons.clear();
        self.boxes.clear();
        for d in f.detections.iter().chain(f.weak) {
            if self.classes.has(d.class_id) {
                self.boxes.push(d.bbox);
                if d.score >= low && f.zone.poly.contains(d.bbox.bottom_center()) {
                    self.persons.push(*d);
                }
            }
        }
        let gated = match f.picture {
            Some(p) => match self.fg.update(f.at, p, &self.boxes) {
                Ok(()) => true,
                Err(e) => {
                    if self.cv_error.hit() {
                        tracing::warn!(site = %f.site, zone = %f.zone.id, error = %e, "crowd foreground skipped a frame");
                    }
                    false
                }
            },
            None => false,
        };
        let min_fg = r.min_foreground as f32;
        self.counted.clear();
        let mut low_n = 0;
        for d in &self.persons {
            let counts = if d.score >= confident {
                true
            } else if gated && self.fg.share(&d.bbox) >= min_fg {
                low_n += 1;
                true
            } else {
                false
            };
            if counts {
                self.counted.push(d.bbox);
            }
        }
        let method = if gated { WITH_FOREGROUND } else { BOXES_ONLY };
        (self.counted.len() as u32, low_n, method)
    }
}

impl Rule for CrowdZone {
    fn kind(&self) -> IncidentKind {
        IncidentKind::Crowd
    }

    fn timing(&self) -> Timing {
        self.crowd.rule().timing()
    }

    fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.crowd.abandon(at)
    }
}

impl ZoneRule for CrowdZone {
    fn step(&mut self, f: &ZoneFrame<'_>, state: &mut ZoneState) -> Option<Judgement> {
        let (n, low, method) = self.count(f);
        let r = self.crowd.step_counted(f.at, n, low);
        state.severity = r.severity;
        state.level = None;
        state.count = r.persons;
        Some(Judgement {
            step: r.step,
            update: r.update,
            level: r.level,
            evidence: Evidence {
                persons: Some(r.persons),
                persons_low_score: Some(r.persons_low_score),
                count_method: Some(method.to_string()),
                density_per_m2: r.density_per_m2,
                ..Evidence::default()
            },
        })
    }

    fn boxes(&self, _f: &ZoneFrame<'_>) -> Vec<SnapshotBox> {
        self.counted
            .iter()
            .map(|b| SnapshotBox {
                bbox: *b,
                label: "orang".into(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::hold::tests::{r1, t};

    fn rule() -> CrowdRule {
        CrowdRule {
            min_persons: 10,
            release_ratio: 0.7,
            smoothing_s: 2.0,
            dwell_s: 10.0,
            clear_s: 15.0,
            cooldown_s: 60.0,
            ..CrowdRule::default()
        }
    }

    /// Runs counts given as a function of time at 5 fps; returns (phase, time) of starts,
    /// updates and ends.
    fn run(
        rule: CrowdRule,
        area: Option<f64>,
        until: f64,
        count: impl Fn(f64, usize) -> u32,
    ) -> Vec<(&'static str, f64)> {
        let mut c = Crowd::new(rule, area);
        let mut out = Vec::new();
        for i in 0..=(until * 5.0) as usize {
            let s = i as f64 * 0.2;
            let r = c.step(t(s), count(s, i));
            match r.step {
                Step::Start { .. } => out.push(("start", r1(s))),
                Step::End { .. } => out.push(("end", r1(s))),
                _ if r.update => out.push(("update", r1(s))),
                _ => {}
            }
        }
        out
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn cases() {
        type Count = Box<dyn Fn(f64, usize) -> u32>;
        let cases: Vec<(&str, Option<f64>, CrowdRule, f64, Count, Vec<(&str, f64)>)> = vec![
            ("empty zone", None, rule(), 60.0, Box::new(|_, _| 0), vec![]),
            (
                "below threshold",
                None,
                rule(),
                60.0,
                Box::new(|_, _| 9),
                vec![],
            ),
            // 12 persons from t=5: the 2 s median reaches 12 at 6.0; start after 10 s dwell
            (
                "starts only after the dwell",
                None,
                rule(),
                30.0,
                Box::new(|s, _| if s >= 5.0 { 12 } else { 0 }),
                vec![("start", 16.0)],
            ),
            (
                "detector flicker: every other frame 0",
                None,
                rule(),
                30.0,
                Box::new(|s, i| if s >= 5.0 && i % 2 == 0 { 12 } else { 0 }),
                // the lower median of alternating 12/0 is 0: not a crowd, whatever the dwell
                vec![],
            ),
            (
                "one missed frame in three is smoothed away",
                None,
                rule(),
                30.0,
                Box::new(|s, i| if s >= 5.0 && i % 3 != 0 { 12 } else { 0 }),
                vec![("start", 16.4)],
            ),
            (
                "noisy count at the threshold does not flap",
                None,
                rule(),
                120.0,
                // 9, 10, 11 wobbling from t=5 to 60, then 0
                Box::new(|s, i| {
                    if (5.0..60.0).contains(&s) {
                        9 + (i % 3) as u32
                    } else {
                        0
                    }
                }),
                vec![("start", 16.4), ("end", 76.0)],
            ),
            (
                "ends after the clear time, not before",
                None,
                rule(),
                60.0,
                Box::new(|s, _| if s < 20.0 { 12 } else { 5 }),
                // smoothed count drops under 7 at 21.0 (lower median of 11 frames); clear 15 s later
                vec![("start", 10.0), ("end", 36.0)],
            ),
            (
                "dip above the release level keeps it open",
                None,
                rule(),
                60.0,
                Box::new(|s, _| if (20.0..40.0).contains(&s) { 8 } else { 12 }),
                // no end; the changes of 4 persons are updates (10 s apart at least)
                vec![("start", 10.0), ("update", 21.0), ("update", 41.0)],
            ),
            (
                "a crowd back within the cooldown is a new incident after its dwell",
                None,
                rule(),
                200.0,
                Box::new(|s, _| if (20.0..40.0).contains(&s) { 0 } else { 12 }),
                // start 10, end 36 (cleared from 21), back since 40 (median 12 from 41):
                // reported at 51, not held back to the cooldown's end (96)
                vec![("start", 10.0), ("end", 36.0), ("start", 51.0)],
            ),
            (
                "growth reported as an update",
                None,
                rule(),
                40.0,
                Box::new(|s, _| if s < 25.0 { 12 } else { 25 }),
                // 25 ≥ 2x threshold: level "tinggi" at once, at 26.0 (when the median reaches 25)
                vec![("start", 10.0), ("update", 26.0)],
            ),
            (
                "level word does not flap at twice the threshold",
                None,
                rule(),
                80.0,
                Box::new(|s, i| if s < 20.0 { 12 } else { 19 + (i % 3) as u32 }),
                // 21.0: the count grew by 7 (10 s after the start); 21.4: "tinggi" once the
                // median reaches 20; then nothing for a minute of wobbling (release at 14)
                vec![("start", 10.0), ("update", 21.0), ("update", 21.4)],
            ),
            (
                "density threshold",
                Some(10.0),
                CrowdRule {
                    min_persons: 100,
                    max_density_per_m2: Some(0.5),
                    ..rule()
                },
                30.0,
                Box::new(|_, _| 5),
                vec![("start", 10.0)],
            ),
        ];
        for (name, area, rule, until, count, want) in cases {
            assert_eq!(run(rule, area, until, count), want, "{name}");
        }
    }

    #[test]
    fn severity_and_numbers() {
        let mut c = Crowd::new(rule(), Some(20.0));
        let r = c.step(t(0.0), 3);
        assert_eq!(
            (r.severity, r.persons, r.level),
            (Severity::Normal, 3, Level::Sedang)
        );
        assert_eq!(r.density_per_m2, Some(0.15));
        let r = c.step(t(0.2), 8);
        // median of [3, 8] is 3 (lower median)
        assert_eq!(r.persons, 3);
        let r = c.step(t(0.4), 8);
        assert_eq!((r.severity, r.persons), (Severity::Elevated, 8));
        for i in 3..60 {
            c.step(t(i as f64 * 0.2), 12);
        }
        let r = c.step(t(12.0), 12);
        assert_eq!(r.severity, Severity::Alert);
    }
}
