//! `traffic_jam`: level of an approach from occupancy and median speed (docs/rules.md).
//!
//! Per frame [`JamZone`] measures the share of the zone covered by vehicle boxes (union, on a
//! grid), the number of vehicles in it, and the speeds of the vehicles tracked for at least a
//! second. Over a sliding window of `window_s`:
//!
//! ```text
//! DS   = max( mean coverage / saturated_occupancy , mean vehicles / capacity_vehicles )
//! slow = median speed < slow_kmh          (zones with a ground scale)
//!        median speed < slow_zone_heights_per_s  (zones without: speed in zone heights/s)
//! macet  if DS ≥ macet_ds and slow (or no speed sample at all: DS alone decides)
//! padat  if DS ≥ padat_ds
//! lancar otherwise
//! ```
//!
//! Levels step up at the band edge and down only `hysteresis_ds` below it; "slow" ends only
//! above 1.25 x the threshold. An incident opens while `macet` holds for `dwell_s`.

use std::collections::VecDeque;

use chrono::{DateTime, TimeDelta, Utc};

use super::geom::CoverageGrid;
use super::hold::{Hold, Step, Timed, Timing, UpdateGate};
use super::rule::{class_name, ClassSet, Judgement, Rule, Zone, ZoneFrame, ZoneRule, ZoneSetup};
use super::AnalyticsError;
use crate::config::JamRule;
use crate::model::{
    Evidence, IncidentKind, Severity, SnapshotBox, Track, TrackState, TrafficLevel, ZoneState,
    ZoneTraffic,
};

/// Tracks younger than this give no speed sample (their velocity estimate is still settling).
pub const SPEED_MIN_AGE_S: f32 = 1.0;

/// Speed histogram resolution: bins of 1/20 of the slow threshold, up to 20x the threshold.
const BINS: usize = 400;
const BINS_PER_THRESHOLD: f32 = 20.0;
/// "Slow" ends only above this multiple of the threshold.
const SLOW_RELEASE: f32 = 1.25;

/// One frame's measurements of a jam zone.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct JamSample {
    pub vehicles: u32,
    /// Share of the zone covered by vehicle boxes, 0..1.
    pub coverage: f32,
}

/// One frame's decision for a jam zone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JamStep {
    pub step: Step,
    pub level: TrafficLevel,
    pub degree_of_saturation: f32,
    /// Mean coverage over the window.
    pub occupancy: f32,
    /// Mean vehicles in the zone over the window.
    pub mean_vehicles: f32,
    /// Median speed over the window in the zone's unit (km/h or zone heights/s); None without
    /// samples.
    pub median_speed: Option<f32>,
    pub update: bool,
    pub severity: Severity,
}

/// Running means of one reporting interval (for Dishub's per-interval congestion figures).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IntervalMeans {
    pub frames: u32,
    pub ds_sum: f64,
    pub vehicles_sum: f64,
}

#[derive(Clone, Debug)]
pub struct Jam {
    rule: JamRule,
    /// Slow threshold in the zone's speed unit.
    slow: f32,
    hold: Hold,
    gate: UpdateGate<TrafficLevel>,
    frames: VecDeque<(DateTime<Utc>, JamSample)>,
    cov_sum: f64,
    veh_sum: f64,
    speeds: VecDeque<(DateTime<Utc>, u16)>,
    hist: Vec<u32>,
    level: TrafficLevel,
    slow_state: bool,
    /// Accumulators per reporting interval length (index = caller's interval index).
    intervals: Vec<IntervalMeans>,
}

impl Jam {
    /// `speed_in_kmh`: the zone has a ground scale, speeds come in km/h; otherwise in zone
    /// heights per second. `intervals`: how many reporting intervals the site keeps.
    pub fn new(rule: JamRule, speed_in_kmh: bool, intervals: usize) -> Self {
        let slow = if speed_in_kmh {
            rule.slow_kmh as f32
        } else {
            rule.slow_zone_heights_per_s as f32
        };
        Self {
            hold: Hold::of(&rule),
            rule,
            slow,
            gate: UpdateGate::default(),
            frames: VecDeque::new(),
            cov_sum: 0.0,
            veh_sum: 0.0,
            speeds: VecDeque::new(),
            hist: vec![0; BINS],
            level: TrafficLevel::Lancar,
            slow_state: false,
            intervals: vec![IntervalMeans::default(); intervals],
        }
    }

    pub fn rule(&self) -> &JamRule {
        &self.rule
    }

    fn bin_width(&self) -> f32 {
        if self.slow > 0.0 {
            self.slow / BINS_PER_THRESHOLD
        } else {
            // no slow threshold: any positive resolution works; speeds are still reported
            0.05
        }
    }

    /// The camera is gone: ends an open incident (its start is returned), forgets the rest.
    pub fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.hold.abandon(at)
    }

    /// Feeds one frame: its sample and the speeds (zone unit) of the vehicles tracked in the
    /// zone. Non-finite or negative speeds are ignored.
    pub fn step(&mut self, at: DateTime<Utc>, sample: JamSample, speeds: &[f32]) -> JamStep {
        let horizon = at - TimeDelta::milliseconds((self.rule.window_s * 1000.0) as i64);
        while let Some((t, s)) = self.frames.front() {
            if *t >= horizon {
                break;
            }
            self.cov_sum -= s.coverage as f64;
            self.veh_sum -= s.vehicles as f64;
            self.frames.pop_front();
        }
        while let Some((t, b)) = self.speeds.front() {
            if *t >= horizon {
                break;
            }
            let b = *b as usize;
            self.hist[b] = self.hist[b].saturating_sub(1);
            self.speeds.pop_front();
        }
        let coverage = if sample.coverage.is_finite() {
            sample.coverage.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = JamSample { coverage, ..sample };
        self.frames.push_back((at, sample));
        self.cov_sum += coverage as f64;
        self.veh_sum += sample.vehicles as f64;
        if self.frames.len() == 1 {
            // re-anchor the running sums: no drift from float subtraction over days
            self.cov_sum = coverage as f64;
            self.veh_sum = sample.vehicles as f64;
        }
        let bw = self.bin_width();
        for &v in speeds {
            if !(v.is_finite() && v >= 0.0) {
                continue;
            }
            let b = ((v / bw) as usize).min(BINS - 1);
            self.hist[b] += 1;
            self.speeds.push_back((at, b as u16));
        }

        let n = self.frames.len().max(1) as f64;
        let occupancy = (self.cov_sum / n).max(0.0) as f32;
        let mean_vehicles = (self.veh_sum / n).max(0.0) as f32;
        let mut ds = occupancy / self.rule.saturated_occupancy as f32;
        if let Some(cap) = self.rule.capacity_vehicles.filter(|c| *c > 0) {
            ds = ds.max(mean_vehicles / cap as f32);
        }
        let median_speed = self.median(bw);

        // slow, with hysteresis; unknown speed leaves DS alone to decide
        self.slow_state = match median_speed {
            None => true,
            Some(v) if self.slow_state => v <= self.slow * SLOW_RELEASE,
            Some(v) => v < self.slow,
        };
        let h = self.rule.hysteresis_ds as f32;
        let macet_edge = self.rule.macet_ds as f32
            - if self.level == TrafficLevel::Macet {
                h
            } else {
                0.0
            };
        let padat_edge = self.rule.padat_ds as f32
            - if self.level >= TrafficLevel::Padat {
                h
            } else {
                0.0
            };
        self.level = if ds >= macet_edge && self.slow_state {
            TrafficLevel::Macet
        } else if ds >= padat_edge {
            TrafficLevel::Padat
        } else {
            TrafficLevel::Lancar
        };

        for i in &mut self.intervals {
            i.frames += 1;
            i.ds_sum += ds as f64;
            i.vehicles_sum += sample.vehicles as f64;
        }

        tracing::trace!(%at, ds, occupancy, mean_vehicles, ?median_speed, level = ?self.level, "jam window");
        let step = self.hold.step(at, self.level == TrafficLevel::Macet);
        let level = self.level;
        // while clearing, a level change is still news
        let update = self.gate.on_step(step, at, level, ds as f64, 0.15, true);
        let severity = step.severity(self.level >= TrafficLevel::Padat);
        JamStep {
            step,
            level: self.level,
            degree_of_saturation: ds,
            occupancy,
            mean_vehicles,
            median_speed,
            update,
            severity,
        }
    }

    /// The level after the latest frame.
    pub fn level(&self) -> TrafficLevel {
        self.level
    }

    /// Median speed over the window, in the zone's unit.
    pub fn median_speed(&self) -> Option<f32> {
        self.median(self.bin_width())
    }

    fn median(&self, bw: f32) -> Option<f32> {
        let total: u32 = self.speeds.len() as u32;
        if total == 0 {
            return None;
        }
        let want = total.div_ceil(2);
        let mut acc = 0;
        for (b, &c) in self.hist.iter().enumerate() {
            acc += c;
            if acc >= want {
                return Some((b as f32 + 0.5) * bw);
            }
        }
        None
    }

    /// Takes (and resets) the accumulators of reporting interval `i`.
    pub fn take_interval(&mut self, i: usize) -> Option<IntervalMeans> {
        self.intervals.get_mut(i).map(std::mem::take)
    }
}

/// A `traffic_jam` zone: [`Jam`] fed the vehicles in the zone, measured on the zone's
/// coverage grid.
pub struct JamZone {
    jam: Jam,
    classes: ClassSet,
    grid: Box<CoverageGrid>,
    speeds: Vec<f32>,
}

/// Builds a jam zone's rule from its `[sites.zones.traffic_jam]` table.
pub fn build(s: &ZoneSetup<'_>) -> Result<Box<dyn ZoneRule>, AnalyticsError> {
    let rule: JamRule = s.config.traffic_jam.clone().unwrap_or_default();
    let classes = s.classes("classes", &rule.classes)?;
    Ok(Box::new(JamZone {
        jam: Jam::new(rule, s.zone.scale.is_some(), s.intervals),
        classes,
        grid: Box::new(CoverageGrid::new(&s.zone.poly)),
        speeds: Vec::new(),
    }))
}

/// Confirmed or coasting vehicles of `classes` in the zone.
fn counts(classes: &ClassSet, zone: &Zone, t: &Track) -> bool {
    t.state != TrackState::Tentative && classes.has(t.class_id) && zone.holds(t)
}

impl Rule for JamZone {
    fn kind(&self) -> IncidentKind {
        IncidentKind::TrafficJam
    }

    fn timing(&self) -> Timing {
        self.jam.rule().timing()
    }

    fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.jam.abandon(at)
    }
}

impl ZoneRule for JamZone {
    fn step(&mut self, f: &ZoneFrame<'_>, state: &mut ZoneState) -> Option<Judgement> {
        let z = f.zone;
        self.grid.clear();
        self.speeds.clear();
        let zone_h_px = z.poly.bbox().height() * f.source.1 as f32;
        let mut vehicles = 0;
        for t in f.tracks.iter().filter(|t| counts(&self.classes, z, t)) {
            vehicles += 1;
            self.grid.mark(&t.bbox);
            if t.state == TrackState::Confirmed && t.age_s >= SPEED_MIN_AGE_S {
                let v = match (z.scale, t.speed_kmh) {
                    (Some(_), Some(k)) => Some(k),
                    (Some(_), None) => None,
                    (None, _) if zone_h_px > 0.0 => Some(t.speed_px_s / zone_h_px),
                    (None, _) => None,
                };
                self.speeds.extend(v);
            }
        }
        let r = self.jam.step(
            f.at,
            JamSample {
                vehicles,
                coverage: self.grid.coverage(),
            },
            &self.speeds,
        );
        state.severity = r.severity;
        state.level = Some(r.level.into());
        state.count = vehicles;
        let (kmh, px) = match (z.scale, r.median_speed) {
            (Some(_), Some(v)) => (Some(v), None),
            (None, Some(v)) => (None, Some(v * zone_h_px)),
            _ => (None, None),
        };
        Some(Judgement {
            step: r.step,
            update: r.update,
            level: r.level.into(),
            evidence: Evidence {
                vehicle_count: Some(vehicles),
                occupancy: Some(r.occupancy),
                degree_of_saturation: Some(r.degree_of_saturation),
                median_speed_kmh: kmh,
                median_speed_px_s: px,
                ..Evidence::default()
            },
        })
    }

    fn boxes(&self, f: &ZoneFrame<'_>) -> Vec<SnapshotBox> {
        f.tracks
            .iter()
            .filter(|t| counts(&self.classes, f.zone, t))
            .map(|t| {
                let name = class_name(f.labels, t.class_id);
                SnapshotBox {
                    bbox: t.bbox,
                    label: match t.speed_kmh {
                        Some(k) => format!("{name} {k:.0} km/j"),
                        None => name,
                    },
                }
            })
            .collect()
    }

    fn take_interval(&mut self, i: usize, zone: &Zone) -> Option<ZoneTraffic> {
        let m = self.jam.take_interval(i).filter(|m| m.frames > 0)?;
        Some(ZoneTraffic {
            zone: zone.id.clone(),
            name: zone.name.clone(),
            level: self.jam.level(),
            degree_of_saturation: (m.ds_sum / m.frames as f64) as f32,
            mean_vehicles: (m.vehicles_sum / m.frames as f64) as f32,
            median_speed_kmh: zone.scale.and(self.jam.median_speed()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::hold::tests::{r1, t};

    fn rule() -> JamRule {
        JamRule {
            window_s: 20.0,
            saturated_occupancy: 0.5,
            padat_ds: 0.6,
            macet_ds: 0.85,
            slow_kmh: 10.0,
            hysteresis_ds: 0.1,
            dwell_s: 30.0,
            clear_s: 20.0,
            cooldown_s: 60.0,
            ..JamRule::default()
        }
    }

    /// `f(time, frame)` gives (coverage, vehicles, speed km/h) at 5 fps; returns the events and
    /// the level at the end.
    fn run(
        rule: JamRule,
        until: f64,
        f: impl Fn(f64, usize) -> (f32, u32, Option<f32>),
    ) -> (Vec<(&'static str, f64)>, TrafficLevel) {
        let mut j = Jam::new(rule, true, 0);
        let mut out = Vec::new();
        let mut level = TrafficLevel::Lancar;
        for i in 0..=(until * 5.0) as usize {
            let s = i as f64 * 0.2;
            let (coverage, vehicles, speed) = f(s, i);
            let speeds: Vec<f32> = speed.into_iter().collect();
            let r = j.step(t(s), JamSample { vehicles, coverage }, &speeds);
            level = r.level;
            match r.step {
                Step::Start { .. } => out.push(("start", r1(s))),
                Step::End { .. } => out.push(("end", r1(s))),
                _ if r.update => out.push((r.level.as_str(), r1(s))),
                _ => {}
            }
        }
        (out, level)
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn cases() {
        type F = Box<dyn Fn(f64, usize) -> (f32, u32, Option<f32>)>;
        let jam_from = |from: f64| -> F {
            Box::new(move |s, _| {
                if s >= from {
                    (0.5, 12, Some(3.0))
                } else {
                    (0.1, 2, Some(40.0))
                }
            })
        };
        let cases: Vec<(&str, JamRule, f64, F, Vec<(&str, f64)>, TrafficLevel)> = vec![
            (
                "empty road",
                rule(),
                120.0,
                Box::new(|_, _| (0.0, 0, None)),
                vec![],
                TrafficLevel::Lancar,
            ),
            (
                "dense but moving is padat, never macet",
                rule(),
                200.0,
                Box::new(|_, _| (0.5, 12, Some(30.0))),
                vec![],
                TrafficLevel::Padat,
            ),
            (
                "slow but sparse (a few cars at a red light) stays lancar",
                rule(),
                200.0,
                Box::new(|_, _| (0.15, 3, Some(0.0))),
                vec![],
                TrafficLevel::Lancar,
            ),
            (
                // from 10 s: window mean DS (0.2 before, 1.0 jammed) reaches 0.85 when 81% of the 20 s
                // window is jammed (26.4 s); the median speed is under 10 km/h from 20 s
                "jam starts only after the dwell",
                rule(),
                100.0,
                jam_from(10.0),
                vec![("start", 56.4)],
                TrafficLevel::Macet,
            ),
            (
                "short jam: no incident",
                rule(),
                100.0,
                Box::new(|s, _| {
                    if (10.0..45.0).contains(&s) {
                        (0.5, 12, Some(3.0))
                    } else {
                        (0.1, 2, Some(40.0))
                    }
                }),
                vec![],
                TrafficLevel::Lancar,
            ),
            (
                "ends after the clear time",
                rule(),
                200.0,
                Box::new(|s, _| {
                    if (10.0..100.0).contains(&s) {
                        (0.5, 12, Some(3.0))
                    } else {
                        (0.1, 2, Some(40.0))
                    }
                }),
                // DS falls from 1.0 as the window empties of jammed frames: an update at
                // 103.6 (DS moved 0.15), padat under 0.75 (106.2), lancar under 0.5 (112.6),
                // end 20 s after macet ceased
                vec![
                    ("start", 56.4),
                    ("macet", 103.6),
                    ("padat", 106.2),
                    ("lancar", 112.6),
                    ("end", 126.2),
                ],
                TrafficLevel::Lancar,
            ),
            (
                "capacity in vehicles counts too",
                JamRule {
                    capacity_vehicles: Some(10),
                    ..rule()
                },
                100.0,
                Box::new(|_, _| (0.1, 10, Some(2.0))),
                vec![("start", 30.0)],
                TrafficLevel::Macet,
            ),
            (
                "no speed samples: DS alone decides",
                rule(),
                100.0,
                Box::new(|_, _| (0.6, 12, None)),
                vec![("start", 30.0)],
                TrafficLevel::Macet,
            ),
        ];
        for (name, rule, until, f, want, level) in cases {
            let (got, got_level) = run(rule, until, f);
            assert_eq!(got, want, "{name}");
            assert_eq!(got_level, level, "{name}");
        }
    }

    #[test]
    fn wobbling_at_the_macet_edge_does_not_flap() {
        // Window-mean DS drifts 0.85 ± 0.04 (a 30 s swing) with ±0.05 frame-to-frame noise on
        // top, for 5 minutes: one start once it first holds, then hysteresis keeps it macet.
        let (ev, level) = run(rule(), 300.0, |s, i| {
            let mean = 0.425 + 0.02 * (s * std::f64::consts::TAU / 30.0).sin() as f32;
            let noise = if i % 2 == 0 { 0.025 } else { -0.025 };
            (mean + noise, 11, Some(4.0))
        });
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].0, "start");
        assert_eq!(level, TrafficLevel::Macet);
        // the same wobble around the padat edge never reaches macet
        let (ev, level) = run(rule(), 300.0, |s, i| {
            let mean = 0.3 + 0.02 * (s * std::f64::consts::TAU / 30.0).sin() as f32;
            let noise = if i % 2 == 0 { 0.025 } else { -0.025 };
            (mean + noise, 8, Some(4.0))
        });
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(level, TrafficLevel::Padat);
    }

    #[test]
    fn a_jam_back_within_the_cooldown_is_reported_after_its_dwell() {
        // jam, clear, jam again during the cooldown: a new incident once the window and the
        // dwell say so, not held back to the cooldown's end
        let (ev, _) = run(
            JamRule {
                window_s: 2.0,
                dwell_s: 5.0,
                clear_s: 5.0,
                cooldown_s: 60.0,
                ..rule()
            },
            200.0,
            |s, _| {
                if !(20.0..40.0).contains(&s) {
                    (0.6, 12, Some(1.0))
                } else {
                    (0.0, 0, Some(50.0))
                }
            },
        );
        let starts: Vec<_> = ev.iter().filter(|e| e.0 == "start").map(|e| e.1).collect();
        let ends: Vec<_> = ev.iter().filter(|e| e.0 == "end").map(|e| e.1).collect();
        assert_eq!(starts.len(), 2, "{ev:?}");
        assert_eq!(ends.len(), 1, "{ev:?}");
        assert!(starts[0] <= 6.0, "{ev:?}");
        assert!(starts[1] > 40.0 && starts[1] <= 40.0 + 2.0 + 5.0, "{ev:?}");
        assert!(starts[1] < ends[0] + 60.0, "{ev:?}");
    }

    #[test]
    fn window_numbers_and_intervals() {
        let mut j = Jam::new(rule(), false, 2);
        let mut last = None;
        for i in 0..10 {
            let speeds = [0.1 * i as f32];
            last = Some(j.step(
                t(i as f64),
                JamSample {
                    vehicles: i,
                    coverage: 0.05 * i as f32,
                },
                &speeds,
            ));
        }
        let r = last.unwrap();
        assert!((r.mean_vehicles - 4.5).abs() < 1e-4);
        assert!((r.occupancy - 0.225).abs() < 1e-4);
        assert!((r.degree_of_saturation - 0.45).abs() < 1e-4);
        // speeds 0.0 .. 0.9 zone heights/s: median 0.4 or 0.5, within one bin (0.0075)
        let m = r.median_speed.unwrap();
        assert!((0.39..=0.51).contains(&m), "{m}");
        let i0 = j.take_interval(0).unwrap();
        assert_eq!(i0.frames, 10);
        assert!((i0.vehicles_sum - 45.0).abs() < 1e-9);
        assert_eq!(j.take_interval(0).unwrap().frames, 0);
        assert_eq!(j.take_interval(1).unwrap().frames, 10);
        assert!(j.take_interval(2).is_none());
        // junk values
        let r = j.step(
            t(11.0),
            JamSample {
                vehicles: 0,
                coverage: f32::NAN,
            },
            &[f32::NAN, -1.0, f32::INFINITY],
        );
        assert!(r.degree_of_saturation.is_finite());
    }
}
