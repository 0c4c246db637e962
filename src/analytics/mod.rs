//! Zones, counting lines and the traffic-jam / crowd / garbage / tamper rules of one site.
//!
//! [`SiteAnalytics::process`] runs once per analytics frame on the frame-loop thread:
//! detections → [`Tracker`] → per-zone rules → counting lines → reporting intervals, and returns
//! what the wall draws ([`SiteResults`]), the rule decisions for the incident stage
//! ([`RuleEvent`]) and closed counting intervals ([`CountsReport`]). Every rule is a pure state
//! machine fed the frame's timestamp ([`hold`]); only garbage and tamper look at pixels
//! (OpenCV). docs/rules.md gives the formulas and defaults.
//!
//! Nothing here panics on outside data: a malformed picture skips the picture-based rules for
//! that frame (logged), odd detections are dropped by the tracker, timestamps that go backwards
//! count as no time passing.

pub mod crowd;
pub mod garbage;
pub mod geom;
pub mod hold;
pub mod jam;
pub mod lines;
pub mod tamper;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use opencv::boxed_ref::BoxedRef;
use opencv::core::Mat;

use crate::config::{CrowdRule, GarbageRule, JamRule, Site};
use crate::model::{
    AnalyticsFrame, BBox, ClassId, CountsReport, Detection, Evidence, Image, IncidentKind, Labels,
    LineCounts, LineId, LineTotals, PixelFormat, RuleEvent, RulePhase, Severity, SiteId,
    SiteResults, SnapshotBox, Track, TrackId, TrackState, ZoneDwell, ZoneId, ZoneKind, ZoneState,
    ZoneTraffic,
};
use crate::timing::{self, Stage};
use crate::track::{Tracker, TrackerConfig};
use crowd::Crowd;
use garbage::{Garbage, Litter};
use geom::{CoverageGrid, GroundScale, Homography, Polygon, Segment};
use hold::Step;
use jam::{Jam, JamSample};
use lines::LineCounter;
use tamper::{Tamper, TamperMeter};

/// Tracks younger than this give no speed sample (their velocity estimate is still settling).
pub const SPEED_MIN_AGE_S: f32 = 1.0;
/// Litter-class detections below this score are ignored.
pub const LITTER_MIN_SCORE: f32 = 0.3;
/// Reporting intervals when a site has jam zones but no counting lines.
pub const DEFAULT_INTERVALS_S: [u32; 2] = [60, 900];

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(
        "site {site:?}: field `{field}`: unknown class {class:?}; the model's classes are: {known}"
    )]
    UnknownClass {
        site: String,
        field: String,
        class: String,
        known: String,
    },
    #[error("site {site:?}: field `{field}`: {message}")]
    Invalid {
        site: String,
        field: String,
        message: String,
    },
}

impl AnalyticsError {
    /// The field the error is about, relative to its site (`zones[1].crowd.classes`).
    pub fn field(&self) -> &str {
        match self {
            AnalyticsError::UnknownClass { field, .. } | AnalyticsError::Invalid { field, .. } => {
                field
            }
        }
    }
}

/// What one analytics frame produced.
#[derive(Clone, Debug, Default)]
pub struct AnalyticsOutput {
    pub results: SiteResults,
    pub events: Vec<RuleEvent>,
    pub counts: Vec<CountsReport>,
}

enum RuleRt {
    Jam {
        jam: Jam,
        classes: Vec<bool>,
        grid: Box<CoverageGrid>,
    },
    Crowd {
        crowd: Crowd,
        classes: Vec<bool>,
    },
    Garbage {
        garbage: Box<Garbage>,
        ignore: Vec<bool>,
        litter: Vec<bool>,
    },
}

struct ZoneRt {
    id: ZoneId,
    name: String,
    kind: ZoneKind,
    poly: Polygon,
    scale: Option<GroundScale>,
    rule: RuleRt,
    /// Tracks inside the zone: when they entered, and the frame they were last inside.
    dwell: HashMap<TrackId, (DateTime<Utc>, u64)>,
    state: ZoneState,
    /// Evidence and boxes of the latest frame, for End events.
    last_evidence: Evidence,
}

struct LineRt {
    id: LineId,
    name: String,
    in_name: String,
    out_name: String,
    /// Site interval indexes this line reports in.
    reports_in: Vec<usize>,
    counter: LineCounter,
}

/// A reporting interval clock (aligned to multiples of its length since the Unix epoch).
struct Clock {
    len_s: u32,
    /// Start of the running interval.
    start: Option<DateTime<Utc>>,
    /// First frame time in it (later than `start` for the first interval or after a gap).
    data_from: Option<DateTime<Utc>>,
}

fn align(at: DateTime<Utc>, len_s: u32) -> DateTime<Utc> {
    let len = len_s.max(1) as i64;
    let s = at.timestamp().div_euclid(len) * len;
    DateTime::from_timestamp(s, 0).unwrap_or(at)
}

/// Logs a recurring problem the first time and then every 500th time, so a broken camera does
/// not flood the log.
#[derive(Default)]
struct Throttle(u64);

impl Throttle {
    fn hit(&mut self) -> bool {
        self.0 += 1;
        self.0 == 1 || self.0.is_multiple_of(500)
    }
}

/// Analytics of one site (camera).
pub struct SiteAnalytics {
    site: SiteId,
    labels: Labels,
    tracker: Tracker,
    zones: Vec<ZoneRt>,
    lines: Vec<LineRt>,
    clocks: Vec<Clock>,
    tamper: Option<(Tamper, TamperMeter)>,
    /// The reason of the open tamper incident, for its end event.
    tamper_reason: &'static str,
    tracks: Vec<Track>,
    frame_no: u64,
    last_at: Option<DateTime<Utc>>,
    bad_image: Throttle,
    cv_error: Throttle,
    // scratch
    speeds: Vec<f32>,
    exclude: Vec<BBox>,
    litter: Vec<Litter>,
}

/// Resolves class names to a per-class-id flag table.
fn class_table(
    site: &str,
    field: String,
    names: &[String],
    labels: &[String],
) -> Result<Vec<bool>, AnalyticsError> {
    let mut t = vec![false; labels.len()];
    for n in names {
        match labels.iter().position(|l| l == n) {
            Some(i) => t[i] = true,
            None => {
                let mut known: Vec<&str> = labels.iter().take(12).map(|s| s.as_str()).collect();
                if labels.len() > 12 {
                    known.push("...");
                }
                return Err(AnalyticsError::UnknownClass {
                    site: site.to_string(),
                    field,
                    class: n.clone(),
                    known: if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
    }
    Ok(t)
}

fn has(table: &[bool], c: ClassId) -> bool {
    table.get(c as usize).copied().unwrap_or(false)
}

fn secs(d: TimeDelta) -> f32 {
    d.num_milliseconds() as f32 / 1000.0
}

impl SiteAnalytics {
    /// Builds the analytics of `site` for a detector with class names `labels`. Class names in
    /// the site's rules and lines that the model does not know are an error naming the field.
    pub fn new(site: &Site, labels: Labels) -> Result<Self, AnalyticsError> {
        let cfg = TrackerConfig {
            class_groups: TrackerConfig::default_groups(&labels),
            ..TrackerConfig::default()
        };
        Self::with_tracker(site, labels, cfg)
    }

    /// As [`SiteAnalytics::new`], with explicit tracker settings.
    pub fn with_tracker(
        site: &Site,
        labels: Labels,
        tracker: TrackerConfig,
    ) -> Result<Self, AnalyticsError> {
        let sid = site.id.as_str();
        let lines_have: Vec<u32> = {
            let mut v: Vec<u32> = site
                .lines
                .iter()
                .flat_map(|l| l.intervals_s.iter().copied())
                .filter(|s| *s > 0)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let has_jam = site.zones.iter().any(|z| z.kind == ZoneKind::TrafficJam);
        let intervals: Vec<u32> = if !lines_have.is_empty() {
            lines_have
        } else if has_jam {
            DEFAULT_INTERVALS_S.to_vec()
        } else {
            Vec::new()
        };

        let mut zones = Vec::new();
        for (j, z) in site.zones.iter().enumerate() {
            let zp = format!("zones[{j}]");
            let poly = Polygon::new(&z.polygon);
            let scale = match (&z.homography, z.metres_per_pixel) {
                (Some(h), _) => Some(GroundScale::Homography(
                    Homography::from_points(&h.image, &h.ground_m).ok_or_else(|| {
                        AnalyticsError::Invalid {
                            site: sid.into(),
                            field: format!("{zp}.homography"),
                            message: format!(
                                "zone {:?}: the four points do not define a ground plane (three on a line, or repeated)",
                                z.id
                            ),
                        }
                    })?,
                )),
                (None, Some(m)) if m > 0.0 => Some(GroundScale::MetresPerPixel(m as f32)),
                _ => None,
            };
            let rule = match z.kind {
                ZoneKind::TrafficJam => {
                    let r: JamRule = z.traffic_jam.clone().unwrap_or_default();
                    let classes = class_table(
                        sid,
                        format!("{zp}.traffic_jam.classes"),
                        &r.classes,
                        &labels,
                    )?;
                    RuleRt::Jam {
                        jam: Jam::new(r, scale.is_some(), intervals.len()),
                        classes,
                        grid: Box::new(CoverageGrid::new(&poly)),
                    }
                }
                ZoneKind::Crowd => {
                    let r: CrowdRule = z.crowd.clone().unwrap_or_default();
                    let classes =
                        class_table(sid, format!("{zp}.crowd.classes"), &r.classes, &labels)?;
                    RuleRt::Crowd {
                        crowd: Crowd::new(r, z.area_m2),
                        classes,
                    }
                }
                ZoneKind::Garbage => {
                    let r: GarbageRule = z.garbage.clone().unwrap_or_default();
                    let ignore = class_table(
                        sid,
                        format!("{zp}.garbage.ignore_classes"),
                        &r.ignore_classes,
                        &labels,
                    )?;
                    let litter = class_table(
                        sid,
                        format!("{zp}.garbage.litter_classes"),
                        &r.litter_classes,
                        &labels,
                    )?;
                    RuleRt::Garbage {
                        garbage: Box::new(Garbage::new(r, poly.clone())),
                        ignore,
                        litter,
                    }
                }
            };
            let id = ZoneId::new(&z.id);
            zones.push(ZoneRt {
                state: ZoneState {
                    zone: id.clone(),
                    kind: z.kind,
                    severity: Severity::Normal,
                    label: String::new(),
                    level: None,
                    count: 0,
                },
                id,
                name: z.name.clone(),
                kind: z.kind,
                poly,
                scale,
                rule,
                dwell: HashMap::new(),
                last_evidence: Evidence::default(),
            });
        }

        let mut lines = Vec::new();
        for (j, l) in site.lines.iter().enumerate() {
            let table = class_table(sid, format!("lines[{j}].classes"), &l.classes, &labels)?;
            let ids: Vec<ClassId> = table
                .iter()
                .enumerate()
                .filter(|(_, on)| **on)
                .map(|(i, _)| i as ClassId)
                .collect();
            lines.push(LineRt {
                id: LineId::new(&l.id),
                name: l.name.clone(),
                in_name: l.in_name.clone(),
                out_name: l.out_name.clone(),
                reports_in: intervals
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| l.intervals_s.contains(s))
                    .map(|(i, _)| i)
                    .collect(),
                counter: LineCounter::new(
                    Segment::new(&l.points),
                    &ids,
                    labels.len(),
                    intervals.len(),
                ),
            });
        }

        Ok(Self {
            site: SiteId::new(sid),
            tracker: Tracker::new(tracker),
            zones,
            lines,
            clocks: intervals
                .iter()
                .map(|&len_s| Clock {
                    len_s,
                    start: None,
                    data_from: None,
                })
                .collect(),
            tamper: site
                .tamper
                .enabled
                .then(|| (Tamper::new(site.tamper.clone()), TamperMeter::new())),
            tamper_reason: "",
            labels,
            tracks: Vec::new(),
            frame_no: 0,
            last_at: None,
            bad_image: Throttle::default(),
            cv_error: Throttle::default(),
            speeds: Vec::new(),
            exclude: Vec::new(),
            litter: Vec::new(),
        })
    }

    pub fn site(&self) -> &SiteId {
        &self.site
    }

    fn class_name(&self, c: ClassId) -> String {
        self.labels
            .get(c as usize)
            .cloned()
            .unwrap_or_else(|| format!("class {c}"))
    }

    /// Runs one analytics frame through tracker, rules, lines and intervals.
    pub fn process(&mut self, frame: &AnalyticsFrame, detections: &[Detection]) -> AnalyticsOutput {
        let at = match self.last_at {
            Some(l) if frame.captured_at < l => l,
            _ => frame.captured_at,
        };
        self.last_at = Some(at);
        self.frame_no += 1;
        let src = (frame.source_width.max(1), frame.source_height.max(1));
        let mut out = AnalyticsOutput::default();

        // tracks, with km/h where a zone gives a ground scale
        let t_track = std::time::Instant::now();
        self.tracks.clear();
        self.tracks
            .extend_from_slice(self.tracker.update(detections, at, src));
        let t_rules = std::time::Instant::now();
        timing::record(Stage::Tracking, t_rules - t_track);
        for t in &mut self.tracks {
            let p = t.bbox.bottom_center();
            t.speed_kmh = self.zones.iter().find_map(|z| {
                z.scale
                    .filter(|_| z.poly.contains(p))
                    .and_then(|s| s.speed_kmh(p, t.velocity, t.speed_px_s))
            });
        }

        // intervals close before this frame's counts go in
        self.close_intervals(at, &mut out.counts);

        // picture, for garbage and tamper
        let image_ok = frame.image.is_valid()
            && frame.image.format == PixelFormat::Bgr
            && frame.image.width >= 8
            && frame.image.height >= 8;
        if !image_ok && self.bad_image.hit() {
            tracing::warn!(
                site = %self.site,
                width = frame.image.width,
                height = frame.image.height,
                format = ?frame.image.format,
                bytes = frame.image.data.len(),
                "analytics frame picture unusable; garbage and tamper rules skip it"
            );
        }
        let view = if image_ok {
            bgr_view(&frame.image)
        } else {
            None
        };
        let mat: Option<&BoxedRef<Mat>> = match &view {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                if self.cv_error.hit() {
                    tracing::warn!(site = %self.site, error = %e, "cannot wrap the analytics picture");
                }
                None
            }
            None => None,
        };

        for zi in 0..self.zones.len() {
            self.zone_step(zi, at, src, detections, mat, &mut out.events);
        }
        if let Some(m) = mat {
            self.tamper_step(at, m, &mut out.events);
        }

        // lines
        let mut totals = Vec::with_capacity(self.lines.len());
        for l in &mut self.lines {
            l.counter.update(&self.tracks, |_, _| {});
            totals.push(LineTotals {
                line: Some(l.id.clone()),
                in_count: l.counter.total.in_count,
                out_count: l.counter.total.out_count,
            });
        }

        // results
        let mut open = Vec::new();
        let mut dwell = Vec::new();
        for z in &self.zones {
            if z.state.severity == Severity::Alert {
                open.push((IncidentKind::from(z.kind), Some(z.id.clone())));
            }
            for (id, (since, _)) in &z.dwell {
                dwell.push(ZoneDwell {
                    zone: z.id.clone(),
                    track: *id,
                    dwell_s: secs(at - *since),
                });
            }
        }
        if self.tamper.as_ref().is_some_and(|(t, _)| t.is_open()) {
            open.push((IncidentKind::CameraTamper, None));
        }
        dwell.sort_by(|a, b| (&a.zone, a.track).cmp(&(&b.zone, b.track)));
        out.results = SiteResults {
            captured_at: Some(at),
            tracks: self.tracks.clone(),
            zones: self.zones.iter().map(|z| z.state.clone()).collect(),
            lines: totals,
            open_incidents: open,
            dwell,
        };
        timing::record(Stage::Rules, t_rules.elapsed());
        out
    }

    fn zone_step(
        &mut self,
        zi: usize,
        at: DateTime<Utc>,
        src: (u32, u32),
        detections: &[Detection],
        mat: Option<&BoxedRef<Mat>>,
        events: &mut Vec<RuleEvent>,
    ) {
        let frame_no = self.frame_no;
        let site = self.site.clone();
        let labels = self.labels.clone();
        let name_of = |c: ClassId| {
            labels
                .get(c as usize)
                .cloned()
                .unwrap_or_else(|| format!("class {c}"))
        };
        let z = &mut self.zones[zi];

        // dwell of the tracks inside (confirmed or coasting), pruned when they leave or end
        for t in &self.tracks {
            if t.state != TrackState::Tentative && z.poly.contains(t.bbox.bottom_center()) {
                z.dwell.entry(t.id).or_insert((at, frame_no)).1 = frame_no;
            }
        }
        z.dwell.retain(|_, (_, seen)| *seen == frame_no);

        let inside = |t: &Track, classes: &[bool]| {
            has(classes, t.class_id) && z.poly.contains(t.bbox.bottom_center())
        };
        let (step, level, update, evidence): (Step, String, bool, Evidence) = match &mut z.rule {
            RuleRt::Jam { jam, classes, grid } => {
                grid.clear();
                self.speeds.clear();
                let zone_h_px = z.poly.bbox().height() * src.1 as f32;
                let mut vehicles = 0;
                for t in self
                    .tracks
                    .iter()
                    .filter(|t| t.state != TrackState::Tentative)
                {
                    if !inside(t, classes) {
                        continue;
                    }
                    vehicles += 1;
                    grid.mark(&t.bbox);
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
                let r = jam.step(
                    at,
                    JamSample {
                        vehicles,
                        coverage: grid.coverage(),
                    },
                    &self.speeds,
                );
                z.state.severity = r.severity;
                z.state.level = Some(r.level);
                z.state.label = r.level.as_str().to_string();
                z.state.count = vehicles;
                let (kmh, px) = match (z.scale, r.median_speed) {
                    (Some(_), Some(v)) => (Some(v), None),
                    (None, Some(v)) => (None, Some(v * zone_h_px)),
                    _ => (None, None),
                };
                let ev = Evidence {
                    vehicle_count: Some(vehicles),
                    occupancy: Some(r.occupancy),
                    degree_of_saturation: Some(r.degree_of_saturation),
                    median_speed_kmh: kmh,
                    median_speed_px_s: px,
                    ..Evidence::default()
                };
                (r.step, r.level.as_str().to_string(), r.update, ev)
            }
            RuleRt::Crowd { crowd, classes } => {
                let n = self
                    .tracks
                    .iter()
                    .filter(|t| t.state != TrackState::Tentative && inside(t, classes))
                    .count() as u32;
                let r = crowd.step(at, n);
                z.state.severity = r.severity;
                z.state.level = None;
                z.state.label = format!("{} orang", r.persons);
                z.state.count = r.persons;
                let ev = Evidence {
                    persons: Some(r.persons),
                    density_per_m2: r.density_per_m2,
                    ..Evidence::default()
                };
                (r.step, r.level.to_string(), r.update, ev)
            }
            RuleRt::Garbage {
                garbage,
                ignore,
                litter,
            } => {
                let Some(m) = mat else {
                    return;
                };
                self.exclude.clear();
                self.exclude.extend(
                    self.tracks
                        .iter()
                        .filter(|t| has(ignore, t.class_id))
                        .map(|t| t.bbox),
                );
                self.exclude.extend(
                    detections
                        .iter()
                        .filter(|d| has(ignore, d.class_id) && d.score.is_finite())
                        .map(|d| d.bbox),
                );
                self.litter.clear();
                self.litter.extend(
                    detections
                        .iter()
                        .filter(|d| has(litter, d.class_id) && d.score >= LITTER_MIN_SCORE)
                        .map(|d| Litter {
                            bbox: d.bbox,
                            class_id: d.class_id,
                        }),
                );
                let r = match garbage.step(at, m, &self.exclude, &self.litter) {
                    Ok(r) => r,
                    Err(e) => {
                        if self.cv_error.hit() {
                            tracing::warn!(site = %site, zone = %z.id, error = %e, "garbage rule skipped a frame");
                        }
                        return;
                    }
                };
                let mut classes: Vec<String> = garbage
                    .present_boxes(at)
                    .iter()
                    .filter_map(|(_, c)| c.map(&name_of))
                    .collect();
                classes.sort();
                classes.dedup();
                z.state.severity = r.severity;
                z.state.level = None;
                z.state.label = if r.objects > 0 {
                    format!("sampah {} mnt", (r.oldest_s / 60.0).floor() as u32)
                } else {
                    "bersih".into()
                };
                z.state.count = r.objects;
                let ev = Evidence {
                    objects: Some(r.objects),
                    static_area: Some(r.static_area),
                    classes,
                    // since the oldest object became static, not since the dwell began
                    dwell_s: (r.objects > 0).then_some(r.oldest_s),
                    ..Evidence::default()
                };
                (r.step, "sedang".to_string(), r.update, ev)
            }
        };
        let kind = IncidentKind::from(z.kind);
        let phase = match step {
            Step::Start { started_at } => Some((RulePhase::Start, started_at)),
            Step::End { started_at } => Some((RulePhase::End, started_at)),
            Step::Active { started_at, .. } if update => Some((RulePhase::Update, started_at)),
            _ => None,
        };
        if matches!(
            step,
            Step::Start { .. }
                | Step::Active {
                    clearing: false,
                    ..
                }
        ) {
            z.last_evidence = evidence.clone();
        }
        if let Some((phase, started_at)) = phase {
            // an end reports what the incident looked like while it held
            let mut evidence = if phase == RulePhase::End {
                std::mem::take(&mut z.last_evidence)
            } else {
                evidence
            };
            let held = secs(at - started_at);
            evidence.dwell_s = Some(evidence.dwell_s.map_or(held, |d| d.max(held)));
            let level = if phase == RulePhase::End && z.kind == ZoneKind::TrafficJam {
                // the word describes the incident, not the lancar it ended on
                "macet".to_string()
            } else {
                level
            };
            let zone = Some(z.id.clone());
            // the objects behind the decision, built only when an event goes out
            let boxes = self.boxes(zi, at, &name_of);
            events.push(RuleEvent {
                site,
                zone,
                kind,
                phase,
                level,
                started_at,
                at,
                evidence,
                frame: None,
                boxes,
            });
        }
    }

    /// Snapshot boxes of what a zone's rule looks at now.
    fn boxes(
        &self,
        zi: usize,
        at: DateTime<Utc>,
        name_of: &dyn Fn(ClassId) -> String,
    ) -> Vec<SnapshotBox> {
        let z = &self.zones[zi];
        let inside = |t: &&Track, classes: &[bool]| {
            t.state != TrackState::Tentative
                && has(classes, t.class_id)
                && z.poly.contains(t.bbox.bottom_center())
        };
        match &z.rule {
            RuleRt::Jam { classes, .. } => self
                .tracks
                .iter()
                .filter(|t| inside(t, classes))
                .map(|t| SnapshotBox {
                    bbox: t.bbox,
                    label: match t.speed_kmh {
                        Some(k) => format!("{} {:.0} km/j", name_of(t.class_id), k),
                        None => name_of(t.class_id),
                    },
                })
                .collect(),
            RuleRt::Crowd { classes, .. } => self
                .tracks
                .iter()
                .filter(|t| inside(t, classes))
                .map(|t| SnapshotBox {
                    bbox: t.bbox,
                    label: "orang".into(),
                })
                .collect(),
            RuleRt::Garbage { garbage, .. } => garbage
                .present_boxes(at)
                .into_iter()
                .map(|(bbox, c)| SnapshotBox {
                    bbox,
                    label: c.map(name_of).unwrap_or_else(|| "sampah".into()),
                })
                .collect(),
        }
    }

    /// The camera stopped delivering frames (offline past its grace period): nothing can be
    /// observed any more, so every open zone and tamper incident ends now with the reason
    /// `camera_offline`, pending conditions are forgotten, and each rule must see its condition
    /// for a full dwell again once the camera is back. Calling it again does nothing.
    pub fn camera_lost(&mut self, at: DateTime<Utc>) -> Vec<RuleEvent> {
        let at = self.last_at.map_or(at, |l| l.max(at));
        let mut events = Vec::new();
        for z in &mut self.zones {
            let started = match &mut z.rule {
                RuleRt::Jam { jam, .. } => jam.abandon(at),
                RuleRt::Crowd { crowd, .. } => crowd.abandon(at),
                RuleRt::Garbage { garbage, .. } => garbage.abandon(at),
            };
            z.dwell.clear();
            z.state.severity = Severity::Normal;
            z.state.count = 0;
            z.state.label = "kamera offline".into();
            let Some(started_at) = started else { continue };
            let mut evidence = std::mem::take(&mut z.last_evidence);
            evidence.reason = Some("camera_offline".into());
            evidence.dwell_s = Some(evidence.dwell_s.unwrap_or(0.0).max(secs(at - started_at)));
            events.push(RuleEvent {
                site: self.site.clone(),
                zone: Some(z.id.clone()),
                kind: IncidentKind::from(z.kind),
                phase: RulePhase::End,
                level: if z.kind == ZoneKind::TrafficJam {
                    "macet".into()
                } else {
                    "sedang".into()
                },
                started_at,
                at,
                evidence,
                frame: None,
                boxes: Vec::new(),
            });
        }
        if let Some((tamper, _)) = self.tamper.as_mut() {
            if let Some(started_at) = tamper.abandon(at) {
                events.push(RuleEvent {
                    site: self.site.clone(),
                    zone: None,
                    kind: IncidentKind::CameraTamper,
                    phase: RulePhase::End,
                    level: "tinggi".into(),
                    started_at,
                    at,
                    evidence: Evidence {
                        reason: Some(self.tamper_reason.to_string()),
                        dwell_s: Some(secs(at - started_at)),
                        ..Evidence::default()
                    },
                    frame: None,
                    boxes: Vec::new(),
                });
            }
        }
        self.last_at = Some(at);
        events
    }

    fn tamper_step(&mut self, at: DateTime<Utc>, m: &BoxedRef<Mat>, events: &mut Vec<RuleEvent>) {
        let Some((tamper, meter)) = self.tamper.as_mut() else {
            return;
        };
        let sample = match meter.measure(m) {
            Ok(s) => s,
            Err(e) => {
                if self.cv_error.hit() {
                    tracing::warn!(site = %self.site, error = %e, "tamper check skipped a frame");
                }
                return;
            }
        };
        let r = tamper.step(at, &sample);
        if let (Some(why), true) = (r.reason, r.step.is_open()) {
            self.tamper_reason = why.as_str();
        }
        let phase = match r.step {
            Step::Start { started_at } => Some((RulePhase::Start, started_at)),
            Step::End { started_at } => Some((RulePhase::End, started_at)),
            Step::Active { started_at, .. } if r.update => Some((RulePhase::Update, started_at)),
            _ => None,
        };
        if let Some((phase, started_at)) = phase {
            events.push(RuleEvent {
                site: self.site.clone(),
                zone: None,
                kind: IncidentKind::CameraTamper,
                phase,
                level: "tinggi".into(),
                started_at,
                at,
                evidence: Evidence {
                    sharpness_ratio: r.sharpness_ratio,
                    view_distance: r.view_distance,
                    // an end reports what the incident was about
                    reason: Some(
                        r.reason
                            .map_or(self.tamper_reason, |x| x.as_str())
                            .to_string(),
                    ),
                    dwell_s: Some(secs(at - started_at)),
                    ..Evidence::default()
                },
                frame: None,
                boxes: Vec::new(),
            });
        }
    }

    fn close_intervals(&mut self, at: DateTime<Utc>, out: &mut Vec<CountsReport>) {
        for ci in 0..self.clocks.len() {
            let len_s = self.clocks[ci].len_s;
            let len = TimeDelta::seconds(len_s as i64);
            let Some(start) = self.clocks[ci].start else {
                self.clocks[ci].start = Some(align(at, len_s));
                self.clocks[ci].data_from = Some(at);
                continue;
            };
            let end = start + len;
            if at < end {
                continue;
            }
            let data_from = self.clocks[ci].data_from.unwrap_or(start).max(start);
            out.push(self.report(ci, data_from, end));
            let next = align(at, len_s);
            self.clocks[ci].start = Some(next);
            // contiguous: the new interval is covered from its start; after a gap, from now
            self.clocks[ci].data_from = Some(if next == end { next } else { at });
        }
    }

    fn report(&mut self, ci: usize, start: DateTime<Utc>, end: DateTime<Utc>) -> CountsReport {
        let len_s = self.clocks[ci].len_s;
        let mut lines = Vec::new();
        for li in 0..self.lines.len() {
            let taken = self.lines[li].counter.take_interval(ci);
            if !self.lines[li].reports_in.contains(&ci) {
                continue;
            }
            let mut by_class = BTreeMap::new();
            for (c, d) in taken {
                by_class.insert(self.class_name(c), d);
            }
            let l = &self.lines[li];
            lines.push(LineCounts {
                line: l.id.clone(),
                name: l.name.clone(),
                in_name: l.in_name.clone(),
                out_name: l.out_name.clone(),
                by_class,
            });
        }
        let mut zones = Vec::new();
        for z in &mut self.zones {
            if let RuleRt::Jam { jam, .. } = &mut z.rule {
                let Some(m) = jam.take_interval(ci).filter(|m| m.frames > 0) else {
                    continue;
                };
                zones.push(ZoneTraffic {
                    zone: z.id.clone(),
                    name: z.name.clone(),
                    level: z.state.level.unwrap_or(crate::model::TrafficLevel::Lancar),
                    degree_of_saturation: (m.ds_sum / m.frames as f64) as f32,
                    mean_vehicles: (m.vehicles_sum / m.frames as f64) as f32,
                    median_speed_kmh: z.scale.and(jam.median_speed()),
                });
            }
        }
        CountsReport {
            site: self.site.clone(),
            interval_s: len_s,
            start,
            end,
            lines,
            zones,
        }
    }
}

/// A BGR `Mat` over the image's bytes, without copying.
fn bgr_view(img: &Image) -> Option<opencv::Result<BoxedRef<'_, Mat>>> {
    let (w, h) = (
        i32::try_from(img.width).ok()?,
        i32::try_from(img.height).ok()?,
    );
    Some(Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
        h, w, &img.data,
    ))
}

#[cfg(test)]
mod tests;
