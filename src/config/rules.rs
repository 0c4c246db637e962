//! Per-zone rule settings. Every rule has a dwell (how long the condition must hold before an
//! incident opens), a clear time (how long it must be gone before it ends) and a cooldown (how
//! long after an end before the same zone may open again). docs/rules.md explains the defaults.

use serde::Deserialize;

use super::locate::FieldPath;

pub fn default_vehicle_classes() -> Vec<String> {
    ["car", "motorcycle", "bus", "truck"]
        .into_iter()
        .map(String::from)
        .collect()
}

fn default_person_classes() -> Vec<String> {
    vec!["person".into()]
}

fn default_litter_classes() -> Vec<String> {
    [
        "bottle", "cup", "handbag", "suitcase", "backpack", "bowl", "umbrella", "vase",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

fn positive(v: f64, path: FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if v.is_nan() || v <= 0.0 {
        bad(path, format!("must be positive, got {v}"));
    }
}

fn non_negative(v: f64, path: FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if v.is_nan() || v < 0.0 {
        bad(path, format!("must not be negative, got {v}"));
    }
}

fn fraction(v: f64, path: FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if !(0.0..=1.0).contains(&v) {
        bad(path, format!("must be in [0, 1], got {v}"));
    }
}

fn classes(v: &[String], path: FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if v.is_empty() {
        bad(path, "must name at least one class".into());
    }
}

/// The time filters every rule has, seconds: how long its condition must hold before an
/// incident opens, be gone before it ends, and how long after an end before the next start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub dwell_s: f64,
    pub clear_s: f64,
    pub cooldown_s: f64,
}

/// A rule's settings table: it carries `dwell_s`, `clear_s` and `cooldown_s`.
pub trait Timed {
    fn timing(&self) -> Timing;

    /// Checks the time filters (none may be negative).
    fn validate_timing(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let t = self.timing();
        non_negative(t.dwell_s, p.key("dwell_s"), bad);
        non_negative(t.clear_s, p.key("clear_s"), bad);
        non_negative(t.cooldown_s, p.key("cooldown_s"), bad);
    }
}

macro_rules! timed {
    ($($rule:ty),*) => {$(
        impl Timed for $rule {
            fn timing(&self) -> Timing {
                Timing {
                    dwell_s: self.dwell_s,
                    clear_s: self.clear_s,
                    cooldown_s: self.cooldown_s,
                }
            }
        }
    )*};
}

timed!(JamRule, CrowdRule, GarbageRule, TamperRule);

/// `traffic_jam`: level from occupancy and median speed (see docs/rules.md).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JamRule {
    pub classes: Vec<String>,
    /// Sliding window for occupancy and speed, seconds.
    pub window_s: f64,
    /// Vehicles the zone holds when full (bumper to bumper). When absent, box-area occupancy
    /// alone measures saturation.
    pub capacity_vehicles: Option<u32>,
    /// Share of the zone covered by vehicle boxes that counts as saturated (DS = 1).
    pub saturated_occupancy: f64,
    /// Degree of saturation from which the level is at least `padat`.
    pub padat_ds: f64,
    /// Degree of saturation from which the level is `macet` when traffic is also slow.
    pub macet_ds: f64,
    /// Median speed under which traffic is slow, km/h (zones with a ground scale).
    pub slow_kmh: f64,
    /// Median speed under which traffic is slow, in zone heights per second (zones without a
    /// ground scale).
    pub slow_zone_heights_per_s: f64,
    /// Hysteresis: the level steps down only when DS drops this far below a band's edge.
    pub hysteresis_ds: f64,
    pub dwell_s: f64,
    pub clear_s: f64,
    pub cooldown_s: f64,
}

impl Default for JamRule {
    fn default() -> Self {
        Self {
            classes: default_vehicle_classes(),
            window_s: 60.0,
            capacity_vehicles: None,
            saturated_occupancy: 0.45,
            padat_ds: 0.6,
            macet_ds: 0.85,
            slow_kmh: 10.0,
            slow_zone_heights_per_s: 0.15,
            hysteresis_ds: 0.1,
            dwell_s: 60.0,
            clear_s: 60.0,
            cooldown_s: 120.0,
        }
    }
}

impl JamRule {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        classes(&self.classes, p.key("classes"), bad);
        positive(self.window_s, p.key("window_s"), bad);
        if self.capacity_vehicles == Some(0) {
            bad(p.key("capacity_vehicles"), "must be positive".into());
        }
        fraction(self.saturated_occupancy, p.key("saturated_occupancy"), bad);
        positive(self.saturated_occupancy, p.key("saturated_occupancy"), bad);
        positive(self.padat_ds, p.key("padat_ds"), bad);
        if self.macet_ds <= self.padat_ds {
            bad(
                p.key("macet_ds"),
                format!(
                    "must be above padat_ds ({}), got {}",
                    self.padat_ds, self.macet_ds
                ),
            );
        }
        non_negative(self.slow_kmh, p.key("slow_kmh"), bad);
        non_negative(
            self.slow_zone_heights_per_s,
            p.key("slow_zone_heights_per_s"),
            bad,
        );
        non_negative(self.hysteresis_ds, p.key("hysteresis_ds"), bad);
        self.validate_timing(p, bad);
    }
}

/// `crowd`: persons (box bottom-centre inside the zone) above a count or a density.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CrowdRule {
    pub classes: Vec<String>,
    /// Count at or above which the zone is crowded.
    pub min_persons: u32,
    /// Density (persons per m²) at or above which the zone is crowded; needs the zone's area_m2.
    pub max_density_per_m2: Option<f64>,
    /// Hysteresis: the crowd counts as gone only below this share of the threshold.
    pub release_ratio: f64,
    /// Count is the median over this window, seconds (smooths detector flicker).
    pub smoothing_s: f64,
    /// Person boxes scoring at least this count as persons.
    pub confident_score: f64,
    /// Person boxes scoring from this up to `confident_score` count where at least
    /// `min_foreground` of the box differs from the zone's background (people in a tight group
    /// score low; static clutter does not differ from the background).
    pub low_score: f64,
    /// Share of a low-scoring box that must be foreground for it to count.
    pub min_foreground: f64,
    pub dwell_s: f64,
    pub clear_s: f64,
    pub cooldown_s: f64,
}

impl Default for CrowdRule {
    fn default() -> Self {
        Self {
            classes: default_person_classes(),
            min_persons: 10,
            max_density_per_m2: None,
            release_ratio: 0.7,
            smoothing_s: 2.0,
            confident_score: 0.45,
            low_score: 0.3,
            min_foreground: 0.25,
            dwell_s: 10.0,
            clear_s: 15.0,
            cooldown_s: 60.0,
        }
    }
}

impl CrowdRule {
    pub fn validate(
        &self,
        p: &FieldPath,
        area_m2: Option<f64>,
        bad: &mut impl FnMut(FieldPath, String),
    ) {
        classes(&self.classes, p.key("classes"), bad);
        if self.min_persons == 0 {
            bad(p.key("min_persons"), "must be at least 1".into());
        }
        if let Some(d) = self.max_density_per_m2 {
            positive(d, p.key("max_density_per_m2"), bad);
            if area_m2.is_none() {
                bad(
                    p.key("max_density_per_m2"),
                    "a density threshold needs the zone's area_m2".into(),
                );
            }
        }
        if !(self.release_ratio > 0.0 && self.release_ratio <= 1.0) {
            bad(p.key("release_ratio"), "must be in (0, 1]".into());
        }
        non_negative(self.smoothing_s, p.key("smoothing_s"), bad);
        fraction(self.confident_score, p.key("confident_score"), bad);
        if !(0.2..=1.0).contains(&self.low_score) {
            bad(
                p.key("low_score"),
                format!(
                    "must be in [0.2, 1] (the detector keeps boxes down to 0.2), got {}",
                    self.low_score
                ),
            );
        }
        fraction(self.min_foreground, p.key("min_foreground"), bad);
        self.validate_timing(p, bad);
    }
}

/// `garbage`: a new static object that is not a person or vehicle, staying in a no-dumping zone.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GarbageRule {
    /// Detector classes that look like litter; seeing one on a static blob raises confidence.
    pub litter_classes: Vec<String>,
    /// Classes whose boxes never count as garbage (people standing still, parked vehicles).
    pub ignore_classes: Vec<String>,
    /// Smallest static blob that counts, as a share of the zone's area.
    pub min_area: f64,
    /// Background model learning rate (MOG2); slow so that a dumped object stays foreground.
    pub learning_rate: f64,
    /// Seconds a pixel must stay foreground to count as static.
    pub static_s: f64,
    pub dwell_s: f64,
    pub clear_s: f64,
    pub cooldown_s: f64,
}

impl Default for GarbageRule {
    fn default() -> Self {
        Self {
            litter_classes: default_litter_classes(),
            ignore_classes: [
                "person",
                "bicycle",
                "car",
                "motorcycle",
                "bus",
                "truck",
                "dog",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            min_area: 0.002,
            learning_rate: 0.0005,
            static_s: 20.0,
            dwell_s: 300.0,
            clear_s: 60.0,
            cooldown_s: 300.0,
        }
    }
}

impl GarbageRule {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        fraction(self.min_area, p.key("min_area"), bad);
        if !(self.learning_rate > 0.0 && self.learning_rate < 1.0) {
            bad(p.key("learning_rate"), "must be in (0, 1)".into());
        }
        positive(self.static_s, p.key("static_s"), bad);
        self.validate_timing(p, bad);
    }
}

/// `camera_tamper`: view blocked, covered, defocused or turned away, per camera.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TamperRule {
    pub enabled: bool,
    /// Sharpness below this share of the reference counts as defocused.
    pub min_sharpness_ratio: f64,
    /// Mean brightness under this (0-255) with little texture (std under 2 x `flat_std`) counts
    /// as covered.
    pub dark_level: f64,
    /// Brightness standard deviation (0-255) under which the picture is flat: covered, whatever
    /// its brightness (tape, paint, a hand, a cloth).
    pub flat_std: f64,
    /// View distance `(1 - NCC) / 2` of a grey thumbnail against the reference (0 same view,
    /// 0.5 unrelated) above this counts as turned away. Set to 1 to disable for cameras that
    /// move (PTZ, vehicle-mounted).
    pub max_view_distance: f64,
    /// The reference adapts over this many seconds, so lighting changes are not tamper.
    pub reference_s: f64,
    pub dwell_s: f64,
    pub clear_s: f64,
    pub cooldown_s: f64,
}

impl Default for TamperRule {
    fn default() -> Self {
        Self {
            enabled: true,
            min_sharpness_ratio: 0.35,
            dark_level: 25.0,
            flat_std: 6.0,
            max_view_distance: 0.25,
            reference_s: 600.0,
            dwell_s: 5.0,
            clear_s: 10.0,
            cooldown_s: 60.0,
        }
    }
}

impl TamperRule {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        fraction(self.min_sharpness_ratio, p.key("min_sharpness_ratio"), bad);
        if !(0.0..=255.0).contains(&self.dark_level) {
            bad(p.key("dark_level"), "must be in [0, 255]".into());
        }
        if !(0.0..=128.0).contains(&self.flat_std) {
            bad(p.key("flat_std"), "must be in [0, 128]".into());
        }
        fraction(self.max_view_distance, p.key("max_view_distance"), bad);
        positive(self.reference_s, p.key("reference_s"), bad);
        self.validate_timing(p, bad);
    }
}
