//! Zones, counting lines and the traffic-jam / crowd / garbage / tamper rules of one site.
//!
//! [`SiteAnalytics::process`] runs once per analytics frame on the frame-loop thread:
//! detections → [`Tracker`] → the zone rules and camera rules → counting lines → reporting
//! intervals, and returns what the wall draws ([`SiteResults`]), the rule decisions for the
//! incident stage ([`RuleEvent`]) and closed counting intervals ([`CountsReport`]). It drives
//! the rules without knowing their kinds: each is a [`rule::ZoneRule`] or [`rule::CameraRule`]
//! built by [`registry`], a pure state machine fed the frame's timestamp ([`hold`]); only
//! garbage and tamper look at pixels (OpenCV). docs/rules.md gives the formulas and defaults.
//!
//! Nothing here panics on outside data: a malformed picture skips the picture-based rules for
//! that frame (logged), odd detections are dropped by the tracker, timestamps that go backwards
//! count as no time passing.

pub mod counts;
pub mod crowd;
pub mod garbage;
pub mod geom;
pub mod hold;
pub mod jam;
pub mod lines;
pub mod registry;
pub mod rule;
pub mod tamper;

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use opencv::core::Mat;

use crate::config::Site;
use crate::model::{
    AnalyticsFrame, CountsReport, Detection, Image, Labels, LineTotals, PixelFormat, RuleEvent,
    Severity, SiteId, SiteResults, Track, TrackId, TrackState, ZoneDwell, ZoneId, ZoneState,
    ZoneWatch,
};
use crate::timing::{self, Stage};
use crate::track::{Tracker, TrackerConfig};
use counts::Counting;
use geom::{GroundScale, Homography, Polygon};
use rule::{
    secs, CameraFrame, CameraRule, CameraSetup, Origin, Picture, Reporter, Throttle, Zone,
    ZoneFrame, ZoneRule, ZoneSetup,
};

pub use counts::DEFAULT_INTERVALS_S;
pub use garbage::LITTER_MIN_SCORE;
pub use jam::SPEED_MIN_AGE_S;

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

/// A zone, its rule, and what every zone keeps whatever its rule.
struct ZoneRt {
    zone: Zone,
    rule: Box<dyn ZoneRule>,
    /// Tracks inside the zone: when they entered, and the frame they were last inside.
    dwell: HashMap<TrackId, (DateTime<Utc>, u64)>,
    state: ZoneState,
    reporter: Reporter,
}

impl ZoneRt {
    /// Dwell of the tracks inside (confirmed or coasting), pruned when they leave or end.
    fn track_dwell(&mut self, tracks: &[Track], at: DateTime<Utc>, frame_no: u64) {
        for t in tracks {
            if t.state != TrackState::Tentative && self.zone.holds(t) {
                self.dwell.entry(t.id).or_insert((at, frame_no)).1 = frame_no;
            }
        }
        self.dwell.retain(|_, (_, seen)| *seen == frame_no);
    }
}

struct CameraRt {
    rule: Box<dyn CameraRule>,
    reporter: Reporter,
}

/// Analytics of one site (camera).
pub struct SiteAnalytics {
    site: SiteId,
    labels: Labels,
    /// The detector's score threshold per class id (empty: every detection is an object).
    thresholds: Vec<f32>,
    /// This frame's detections above their threshold, and those below it.
    strong: Vec<Detection>,
    weak: Vec<Detection>,
    tracker: Tracker,
    zones: Vec<ZoneRt>,
    cameras: Vec<CameraRt>,
    counting: Counting,
    tracks: Vec<Track>,
    frame_no: u64,
    last_at: Option<DateTime<Utc>>,
    bad_image: Throttle,
    cv_error: Throttle,
}

/// The ground scale of a zone from its config, for km/h.
fn ground_scale(
    sid: &str,
    zp: &str,
    z: &crate::config::Zone,
) -> Result<Option<GroundScale>, AnalyticsError> {
    Ok(match (&z.homography, z.metres_per_pixel) {
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
    })
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
        let zones_report = site
            .zones
            .iter()
            .any(|z| registry::zone_rule(z.kind).is_some_and(|e| e.per_interval));
        let intervals = counts::intervals_of(site, zones_report);
        let mut zones = Vec::new();
        for (j, z) in site.zones.iter().enumerate() {
            let path = format!("zones[{j}]");
            let zone = Zone {
                id: ZoneId::new(&z.id),
                name: z.name.clone(),
                kind: z.kind,
                poly: Polygon::new(&z.polygon),
                scale: ground_scale(sid, &path, z)?,
            };
            let rule = registry::build_zone_rule(&ZoneSetup {
                site: sid,
                config: z,
                path,
                zone: &zone,
                labels: &labels,
                intervals: intervals.len(),
            })?;
            zones.push(ZoneRt {
                state: ZoneState::new(zone.id.clone(), zone.kind),
                zone,
                rule,
                dwell: HashMap::new(),
                reporter: Reporter::default(),
            });
        }
        let counting = Counting::new(site, &labels, &intervals)?;
        let cameras = registry::build_camera_rules(&CameraSetup {
            site,
            labels: &labels,
        })?
        .into_iter()
        .map(|rule| CameraRt {
            rule,
            reporter: Reporter::default(),
        })
        .collect();
        Ok(Self {
            site: SiteId::new(sid),
            tracker: Tracker::new(tracker),
            zones,
            cameras,
            counting,
            labels,
            thresholds: Vec::new(),
            strong: Vec::new(),
            weak: Vec::new(),
            tracks: Vec::new(),
            frame_no: 0,
            last_at: None,
            bad_image: Throttle::default(),
            cv_error: Throttle::default(),
        })
    }

    pub fn site(&self) -> &SiteId {
        &self.site
    }

    /// Tells detections from hints: the detector's score threshold per class id
    /// ([`crate::detect::Detector::thresholds`]). Detections at or below it (a pipeline's
    /// detector keeps some, down to its floor) continue tracks and count in crowd zones where
    /// the picture confirms them; nothing else sees them. Without thresholds every detection
    /// is an object.
    pub fn with_thresholds(mut self, thresholds: Vec<f32>) -> Self {
        self.tracker = Tracker::new(TrackerConfig {
            class_thresholds: thresholds.clone(),
            ..self.tracker.config().clone()
        });
        self.thresholds = thresholds;
        self
    }

    /// Runs one analytics frame through tracker, rules, lines and intervals. The frame's
    /// `rule_at` is the rules' clock ([`crate::clock`]: monotonic live, media time in a replay);
    /// the times of the events and counts that come out are wall-clock times, `rule_at` moved
    /// by how far the wall clock is from it at this frame (`captured_at - rule_at`, zero unless
    /// the wall clock stepped), so a wall-clock step neither freezes nor fires a timer.
    pub fn process(&mut self, frame: &AnalyticsFrame, detections: &[Detection]) -> AnalyticsOutput {
        let at = match self.last_at {
            Some(l) if frame.rule_at < l => l,
            _ => frame.rule_at,
        };
        self.last_at = Some(at);
        let out = self.process_at(at, frame, detections);
        to_wall(out, frame.captured_at - frame.rule_at)
    }

    fn process_at(
        &mut self,
        at: DateTime<Utc>,
        frame: &AnalyticsFrame,
        detections: &[Detection],
    ) -> AnalyticsOutput {
        self.frame_no += 1;
        let src = (frame.source_width.max(1), frame.source_height.max(1));
        let mut out = AnalyticsOutput::default();

        self.strong.clear();
        self.weak.clear();
        for d in detections {
            let over = self
                .thresholds
                .get(d.class_id as usize)
                .is_none_or(|t| d.score > *t);
            if over {
                self.strong.push(*d);
            } else {
                self.weak.push(*d);
            }
        }

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
                z.zone
                    .scale
                    .filter(|_| z.zone.poly.contains(p))
                    .and_then(|s| s.speed_kmh(p, t.velocity, t.speed_px_s))
            });
        }

        // intervals close before this frame's counts go in
        let zones = &mut self.zones;
        self.counting.close(at, &mut out.counts, |ci| {
            zones
                .iter_mut()
                .filter_map(|z| z.rule.take_interval(ci, &z.zone))
                .collect()
        });

        // the picture, for the rules that look at pixels
        let view = self.picture(&frame.image);
        let picture = match &view {
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                if self.cv_error.hit() {
                    tracing::warn!(site = %self.site, error = %e, "cannot wrap the analytics picture");
                }
                None
            }
            None => None,
        };

        for z in &mut self.zones {
            z.track_dwell(&self.tracks, at, self.frame_no);
            let f = ZoneFrame {
                site: &self.site,
                at,
                zone: &z.zone,
                tracks: &self.tracks,
                detections: &self.strong,
                weak: &self.weak,
                picture,
                source: src,
                labels: &self.labels,
            };
            let Some(j) = z.rule.step(&f, &mut z.state) else {
                continue;
            };
            z.state.watch = ZoneWatch::Live;
            let origin = Origin {
                site: &self.site,
                zone: Some(&z.zone.id),
            };
            let rule = &z.rule;
            out.events
                .extend(z.reporter.report(&**rule, origin, at, j, || rule.boxes(&f)));
        }
        let f = CameraFrame {
            site: &self.site,
            at,
            tracks: &self.tracks,
            detections: &self.strong,
            picture,
        };
        for c in &mut self.cameras {
            let Some(j) = c.rule.step(&f) else {
                continue;
            };
            let origin = Origin {
                site: &self.site,
                zone: None,
            };
            out.events
                .extend(c.reporter.report(&*c.rule, origin, at, j, Vec::new));
        }

        let lines = self.counting.update(&self.tracks);
        out.results = self.results(at, lines);
        out.results.media_time = frame.media_time;
        timing::record(Stage::Rules, t_rules.elapsed());
        out
    }

    /// The frame's picture as an OpenCV view, when it is one the rules can use (logged, once
    /// per 500, when it is not).
    fn picture<'i>(&mut self, img: &'i Image) -> Option<opencv::Result<Picture<'i>>> {
        let ok =
            img.is_valid() && img.format == PixelFormat::Bgr && img.width >= 8 && img.height >= 8;
        if !ok {
            if self.bad_image.hit() {
                tracing::warn!(
                    site = %self.site,
                    width = img.width,
                    height = img.height,
                    format = ?img.format,
                    bytes = img.data.len(),
                    "analytics frame picture unusable; the picture-based rules skip it"
                );
            }
            return None;
        }
        let (w, h) = (
            i32::try_from(img.width).ok()?,
            i32::try_from(img.height).ok()?,
        );
        Some(Mat::new_rows_cols_with_bytes::<opencv::core::Vec3b>(
            h, w, &img.data,
        ))
    }

    fn results(&self, at: DateTime<Utc>, lines: Vec<LineTotals>) -> SiteResults {
        let mut open = Vec::new();
        let mut dwell = Vec::new();
        for z in &self.zones {
            if z.reporter.is_open() {
                open.push((z.rule.kind(), Some(z.zone.id.clone())));
            }
            for (id, (since, _)) in &z.dwell {
                dwell.push(ZoneDwell {
                    zone: z.zone.id.clone(),
                    track: *id,
                    dwell_s: secs(at - *since),
                });
            }
        }
        for c in &self.cameras {
            if c.reporter.is_open() {
                open.push((c.rule.kind(), None));
            }
        }
        dwell.sort_by(|a, b| (&a.zone, a.track).cmp(&(&b.zone, b.track)));
        SiteResults {
            captured_at: Some(at),
            media_time: None,
            tracks: self.tracks.clone(),
            zones: self.zones.iter().map(|z| z.state.clone()).collect(),
            lines,
            open_incidents: open,
            dwell,
        }
    }

    /// The camera stopped delivering frames (offline past its grace period): nothing can be
    /// observed any more, so every open zone and camera incident ends now (zones with the
    /// reason `camera_offline`), pending conditions are forgotten, and each rule must see its
    /// condition for a full dwell again once the camera is back. Calling it again does nothing.
    /// `now` is read from the same clock as the frames' (`rule` for the rules, `wall` for the
    /// events).
    pub fn camera_lost(&mut self, now: crate::clock::Stamp) -> Vec<RuleEvent> {
        let offset = now.wall - now.rule;
        let at = now.rule;
        let at = self.last_at.map_or(at, |l| l.max(at));
        let mut events = Vec::new();
        for z in &mut self.zones {
            let origin = Origin {
                site: &self.site,
                zone: Some(&z.zone.id),
            };
            events.extend(z.reporter.lost(&mut *z.rule, origin, at));
            z.dwell.clear();
            z.state.severity = Severity::Normal;
            z.state.count = 0;
            z.state.oldest_static_s = None;
            z.state.watch = ZoneWatch::CameraOffline;
        }
        for c in &mut self.cameras {
            let origin = Origin {
                site: &self.site,
                zone: None,
            };
            events.extend(c.reporter.lost(&mut *c.rule, origin, at));
        }
        self.last_at = Some(at);
        for ev in &mut events {
            event_to_wall(ev, offset);
        }
        events
    }
}

/// Moves a rule event's times from the rules' clock to the wall clock.
fn event_to_wall(ev: &mut RuleEvent, offset: TimeDelta) {
    ev.started_at += offset;
    ev.at += offset;
}

/// Moves what a frame produced from the rules' clock to the wall clock ([`SiteAnalytics::process`]).
fn to_wall(mut out: AnalyticsOutput, offset: TimeDelta) -> AnalyticsOutput {
    if offset.is_zero() {
        return out;
    }
    for ev in &mut out.events {
        event_to_wall(ev, offset);
    }
    for c in &mut out.counts {
        c.start += offset;
        c.end += offset;
    }
    out.results.captured_at = out.results.captured_at.map(|t| t + offset);
    out
}

#[cfg(test)]
mod tests;
