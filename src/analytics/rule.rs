//! What a rule is to the driver ([`super::SiteAnalytics`]), and the bookkeeping every rule's
//! incidents share.
//!
//! A *zone rule* ([`ZoneRule`]: traffic_jam, crowd, garbage) watches one zone's polygon; a
//! *camera rule* ([`CameraRule`]: camera_tamper) the whole picture. Each is a pure state machine
//! fed one analytics frame at a time with the frame's own timestamp ([`ZoneFrame::at`]), never a
//! clock: live, that is the capture time; a replay feeds media time and gets the same decisions
//! at any speed. Its life cycle (dwell, clear time, cooldown) is [`super::hold::Hold`]; it
//! reports each frame as a [`Judgement`], and a [`Reporter`] per rule turns judgements into
//! [`RuleEvent`]s the same way for every rule. [`super::registry`] builds the rules from config.
//!
//! Room to grow, by adding fields, never by changing a rule that does not use them: a rule that
//! needs more than the shared detections (a detector pass over a crop of its zone at its own
//! rate, a foreground-occupancy estimate) will ask for it in its [`Judgement`] and find the
//! results in a later [`ZoneFrame`]; the driver carries both between the rules and the frame
//! loop. The picture is already there ([`ZoneFrame::picture`]).

use chrono::{DateTime, Utc};
use opencv::boxed_ref::BoxedRef;
use opencv::core::Mat;

use super::geom::{GroundScale, Polygon};
use super::hold::{Step, Timing};
use super::AnalyticsError;
use crate::config;
use crate::model::{
    ClassId, Detection, Evidence, IncidentKind, Labels, Level, RuleEvent, RulePhase, SiteId,
    SnapshotBox, Track, ZoneId, ZoneKind, ZoneState, ZoneTraffic,
};

/// The analytics picture as an OpenCV BGR view over the frame's bytes (no copy).
pub type Picture<'a> = BoxedRef<'a, Mat>;

/// The `reason` of an `end` sent because the camera was lost.
pub const CAMERA_OFFLINE: &str = "camera_offline";

/// A zone from config, where it lies in the picture.
#[derive(Clone, Debug)]
pub struct Zone {
    pub id: ZoneId,
    pub name: String,
    pub kind: ZoneKind,
    pub poly: Polygon,
    /// Ground scale for km/h, where the config gives one.
    pub scale: Option<GroundScale>,
}

impl Zone {
    /// True when the track's ground point (its box's bottom-centre) lies in the zone.
    pub fn holds(&self, t: &Track) -> bool {
        self.poly.contains(t.bbox.bottom_center())
    }
}

/// What one analytics frame gives a zone rule.
pub struct ZoneFrame<'a> {
    pub site: &'a SiteId,
    /// The frame's time: the rule's only clock. Never earlier than the previous frame's.
    pub at: DateTime<Utc>,
    pub zone: &'a Zone,
    /// This frame's tracks in every state (tentative, confirmed, coasting), with km/h where a
    /// zone gives a ground scale. Rules pick the ones in their zone.
    pub tracks: &'a [Track],
    /// The frame's detections above their class's score threshold: objects.
    pub detections: &'a [Detection],
    /// Detections the detector kept below their class's threshold (down to its floor): too
    /// weak to be objects on their own, evidence where something else confirms them (a crowd
    /// zone's foreground).
    pub weak: &'a [Detection],
    /// The frame's picture; `None` when it is unusable this frame (a rule that needs it skips
    /// the frame).
    pub picture: Option<&'a Picture<'a>>,
    /// Native size of the camera picture, for pixel-unit figures.
    pub source: (u32, u32),
    /// The detector's class names.
    pub labels: &'a Labels,
}

/// What one analytics frame gives a camera rule.
pub struct CameraFrame<'a> {
    pub site: &'a SiteId,
    /// The frame's time: the rule's only clock.
    pub at: DateTime<Utc>,
    pub tracks: &'a [Track],
    pub detections: &'a [Detection],
    pub picture: Option<&'a Picture<'a>>,
}

/// One frame's decision of a rule, in the terms every rule shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// Where the rule's life cycle is.
    pub step: Step,
    /// An open incident's evidence changed enough for an `update` event.
    pub update: bool,
    /// The incident's level as of this frame.
    pub level: Level,
    /// What the rule measured in this frame (`dwell_s` is filled in when an event goes out).
    pub evidence: Evidence,
}

/// What the driver needs of every rule, zone or camera.
pub trait Rule: Send {
    /// The kind of incident the rule raises.
    fn kind(&self) -> IncidentKind;

    /// Its time filters: dwell, clear time, and the cooldown, the window in which a new
    /// incident after an end is marked as the condition coming back.
    fn timing(&self) -> Timing;

    /// The camera is gone: end an open incident (its start time is returned for the `end`) and
    /// forget pending conditions, so each needs its full dwell again once frames are back.
    fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>>;

    /// The evidence of an `end`, from that of the last frame in which the condition held and
    /// that of the ending frame. By default what the incident looked like while it held, not
    /// the empty scene it ended on.
    fn end_evidence(&self, held: Evidence, _now: Evidence) -> Evidence {
        held
    }

    /// The evidence of the `end` sent when the camera is lost with an incident open: by default
    /// what it looked like while it held, with the reason [`CAMERA_OFFLINE`].
    fn lost_evidence(&self, held: Evidence) -> Evidence {
        Evidence {
            reason: Some(CAMERA_OFFLINE.into()),
            ..held
        }
    }
}

/// A rule watching one zone.
pub trait ZoneRule: Rule {
    /// Feeds one frame. Sets the zone's facts in `state` (severity, count, level...) and
    /// returns the frame's judgement; `None` when the rule could not look at this frame (no
    /// usable picture for a picture-based rule): then nothing about the zone changes.
    fn step(&mut self, f: &ZoneFrame<'_>, state: &mut ZoneState) -> Option<Judgement>;

    /// Snapshot boxes of what the rule looks at in frame `f`: the objects behind an event,
    /// built only when one goes out.
    fn boxes(&self, f: &ZoneFrame<'_>) -> Vec<SnapshotBox>;

    /// Takes (and restarts) the zone's figures for reporting interval `i`, for rules that
    /// report per interval (jam zones: Dishub's congestion levels).
    fn take_interval(&mut self, _i: usize, _zone: &Zone) -> Option<ZoneTraffic> {
        None
    }
}

/// A rule watching the whole camera.
pub trait CameraRule: Rule {
    /// Feeds one frame; `None` when the rule could not look at it.
    fn step(&mut self, f: &CameraFrame<'_>) -> Option<Judgement>;
}

/// Where a rule's events come from.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub site: &'a SiteId,
    /// `None` for camera rules.
    pub zone: Option<&'a ZoneId>,
}

/// The bookkeeping every rule's incidents share: the event phase a step means, the level and
/// evidence of the last frame in which the condition held (an `end` reports the incident as it
/// was), how long it held, the [`RuleEvent`] itself.
#[derive(Clone, Debug, Default)]
pub struct Reporter {
    held: Option<(Level, Evidence)>,
    open: bool,
    /// When the rule's last incident ended.
    ended_at: Option<DateTime<Utc>>,
}

fn held_s(at: DateTime<Utc>, started_at: DateTime<Utc>) -> f32 {
    secs(at - started_at)
}

impl Reporter {
    /// An incident of this rule is open (after the latest judgement).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The event one frame's judgement makes, if any; `boxes` is called only then.
    pub fn report<R: Rule + ?Sized>(
        &mut self,
        rule: &R,
        origin: Origin<'_>,
        at: DateTime<Utc>,
        j: Judgement,
        boxes: impl FnOnce() -> Vec<SnapshotBox>,
    ) -> Option<RuleEvent> {
        let Judgement {
            step,
            update,
            level,
            evidence,
        } = j;
        self.open = step.is_open();
        if matches!(
            step,
            Step::Start { .. }
                | Step::Active {
                    clearing: false,
                    ..
                }
        ) {
            self.held = Some((level, evidence.clone()));
        }
        let (phase, started_at) = match step {
            Step::Start { started_at } => (RulePhase::Start, started_at),
            Step::End { started_at } => (RulePhase::End, started_at),
            Step::Active { started_at, .. } if update => (RulePhase::Update, started_at),
            _ => return None,
        };
        let (level, mut evidence) = if phase == RulePhase::End {
            self.ended_at = Some(at);
            // the level and evidence describe the incident, not the empty scene it ended on
            let (l, held) = self.held.take().unwrap_or((level, Evidence::default()));
            (l, rule.end_evidence(held, evidence))
        } else {
            (level, evidence)
        };
        if phase == RulePhase::Start {
            // the condition came back within the cooldown: a new incident, marked as such
            let cooldown = rule.timing().cooldown_s;
            evidence.reopened_after_s = self
                .ended_at
                .map(|e| secs(started_at - e))
                .filter(|gap| *gap >= 0.0 && (*gap as f64) < cooldown);
            if let Some((_, held)) = self.held.as_mut() {
                held.reopened_after_s = evidence.reopened_after_s;
            }
        }
        Some(event(
            rule.kind(),
            origin,
            phase,
            level,
            started_at,
            at,
            evidence,
            boxes(),
        ))
    }

    /// The camera is lost: the rule forgets what it was watching, and an open incident ends
    /// now with the evidence [`Rule::lost_evidence`] gives.
    pub fn lost<R: Rule + ?Sized>(
        &mut self,
        rule: &mut R,
        origin: Origin<'_>,
        at: DateTime<Utc>,
    ) -> Option<RuleEvent> {
        self.open = false;
        let started_at = rule.abandon(at)?;
        self.ended_at = Some(at);
        let (level, held) = self
            .held
            .take()
            .unwrap_or((Level::Sedang, Evidence::default()));
        let evidence = rule.lost_evidence(held);
        Some(event(
            rule.kind(),
            origin,
            RulePhase::End,
            level,
            started_at,
            at,
            evidence,
            Vec::new(),
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn event(
    kind: IncidentKind,
    origin: Origin<'_>,
    phase: RulePhase,
    level: Level,
    started_at: DateTime<Utc>,
    at: DateTime<Utc>,
    mut evidence: Evidence,
    boxes: Vec<SnapshotBox>,
) -> RuleEvent {
    let held = held_s(at, started_at);
    evidence.dwell_s = Some(evidence.dwell_s.map_or(held, |d| d.max(held)));
    RuleEvent {
        site: origin.site.clone(),
        zone: origin.zone.cloned(),
        kind,
        phase,
        level,
        started_at,
        at,
        evidence,
        frame: None,
        boxes,
    }
}

/// What building a zone's rule from config gets (see [`super::registry`]).
pub struct ZoneSetup<'a> {
    pub site: &'a str,
    /// The zone's config; its rule's table is the field named after its kind.
    pub config: &'a config::Zone,
    /// Where the zone sits in its site's config (`zones[2]`), for errors.
    pub path: String,
    pub zone: &'a Zone,
    pub labels: &'a Labels,
    /// Reporting intervals the site keeps.
    pub intervals: usize,
}

impl ZoneSetup<'_> {
    /// Class names of `field` in the rule's table (e.g. `classes`) resolved against the model's
    /// labels: an unknown one is an error naming the field (`zones[0].crowd.classes`).
    pub fn classes(&self, field: &str, names: &[String]) -> Result<ClassSet, AnalyticsError> {
        ClassSet::resolve(
            self.site,
            format!("{}.{}.{field}", self.path, self.config.kind.as_str()),
            names,
            self.labels,
        )
    }
}

/// What building a camera rule from config gets.
pub struct CameraSetup<'a> {
    pub site: &'a config::Site,
    pub labels: &'a Labels,
}

/// Detector classes a rule looks at, as a table by class id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassSet(Vec<bool>);

impl ClassSet {
    /// Resolves class names against the model's labels; an unknown name is an error naming
    /// `field` and listing the model's classes.
    pub fn resolve(
        site: &str,
        field: String,
        names: &[String],
        labels: &[String],
    ) -> Result<Self, AnalyticsError> {
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
        Ok(Self(t))
    }

    pub fn has(&self, c: ClassId) -> bool {
        self.0.get(c as usize).copied().unwrap_or(false)
    }

    /// The class ids in the set, ascending.
    pub fn ids(&self) -> Vec<ClassId> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, on)| **on)
            .map(|(i, _)| i as ClassId)
            .collect()
    }
}

/// The detector's name of class `c` (`class 7` for an id the model does not list).
pub fn class_name(labels: &Labels, c: ClassId) -> String {
    labels
        .get(c as usize)
        .cloned()
        .unwrap_or_else(|| format!("class {c}"))
}

pub fn secs(d: chrono::TimeDelta) -> f32 {
    d.num_milliseconds() as f32 / 1000.0
}

/// Logs a recurring problem the first time and then every 500th time, so a broken camera does
/// not flood the log.
#[derive(Clone, Debug, Default)]
pub struct Throttle(u64);

impl Throttle {
    pub fn hit(&mut self) -> bool {
        self.0 += 1;
        self.0 == 1 || self.0.is_multiple_of(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::hold::tests::t;

    /// A rule that only reports a kind, for the reporter's bookkeeping.
    struct Fake(Option<DateTime<Utc>>);

    impl Rule for Fake {
        fn kind(&self) -> IncidentKind {
            IncidentKind::Crowd
        }
        fn timing(&self) -> Timing {
            Timing {
                dwell_s: 10.0,
                clear_s: 5.0,
                cooldown_s: 60.0,
            }
        }
        fn abandon(&mut self, _at: DateTime<Utc>) -> Option<DateTime<Utc>> {
            self.0.take()
        }
    }

    fn judged(step: Step, update: bool, level: Level, persons: u32) -> Judgement {
        Judgement {
            step,
            update,
            level,
            evidence: Evidence {
                persons: Some(persons),
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn reporter_phases_and_what_an_end_carries() {
        let site = SiteId::new("uji");
        let zone = ZoneId::new("plaza");
        let o = Origin {
            site: &site,
            zone: Some(&zone),
        };
        let rule = Fake(None);
        let mut r = Reporter::default();
        let s0 = t(0.0);
        let pending = judged(Step::Pending { since: s0 }, false, Level::Sedang, 9);
        assert!(r.report(&rule, o, t(1.0), pending, Vec::new).is_none());
        let start = judged(Step::Start { started_at: s0 }, false, Level::Sedang, 12);
        let ev = r
            .report(&rule, o, t(10.0), start, || {
                vec![SnapshotBox {
                    bbox: Default::default(),
                    label: "orang".into(),
                }]
            })
            .unwrap();
        assert_eq!(
            (ev.phase, ev.level, ev.evidence.persons, ev.evidence.dwell_s),
            (RulePhase::Start, Level::Sedang, Some(12), Some(10.0))
        );
        assert_eq!((ev.zone.as_ref(), ev.boxes.len()), (Some(&zone), 1));
        assert!(r.is_open());
        let active = Step::Active {
            started_at: s0,
            clearing: false,
        };
        // no update asked: no event, but the held evidence follows the frame
        assert!(r
            .report(
                &rule,
                o,
                t(11.0),
                judged(active, false, Level::Tinggi, 25),
                Vec::new
            )
            .is_none());
        let ev = r
            .report(
                &rule,
                o,
                t(12.0),
                judged(active, true, Level::Tinggi, 26),
                Vec::new,
            )
            .unwrap();
        assert_eq!((ev.phase, ev.level), (RulePhase::Update, Level::Tinggi));
        // clearing frames do not count as held
        let clearing = Step::Active {
            started_at: s0,
            clearing: true,
        };
        assert!(r
            .report(
                &rule,
                o,
                t(13.0),
                judged(clearing, false, Level::Sedang, 1),
                Vec::new
            )
            .is_none());
        let end = judged(Step::End { started_at: s0 }, false, Level::Sedang, 0);
        let ev = r.report(&rule, o, t(30.0), end, Vec::new).unwrap();
        assert_eq!(
            (ev.phase, ev.level, ev.evidence.persons, ev.evidence.dwell_s),
            (RulePhase::End, Level::Tinggi, Some(26), Some(30.0))
        );
        assert!(!r.is_open());
    }

    #[test]
    fn reporter_lost_ends_once_with_the_reason() {
        let site = SiteId::new("uji");
        let o = Origin {
            site: &site,
            zone: None,
        };
        let mut rule = Fake(None);
        let mut r = Reporter::default();
        assert!(r.lost(&mut rule, o, t(5.0)).is_none(), "nothing open");
        let start = judged(Step::Start { started_at: t(0.0) }, false, Level::Tinggi, 7);
        r.report(&rule, o, t(3.0), start, Vec::new).unwrap();
        rule.0 = Some(t(0.0));
        let ev = r.lost(&mut rule, o, t(8.0)).unwrap();
        assert_eq!(
            (ev.phase, ev.level, ev.evidence.persons),
            (RulePhase::End, Level::Tinggi, Some(7))
        );
        assert_eq!(ev.evidence.reason.as_deref(), Some(CAMERA_OFFLINE));
        assert_eq!(ev.evidence.dwell_s, Some(8.0));
        assert!(!r.is_open());
        assert!(r.lost(&mut rule, o, t(9.0)).is_none(), "ended twice");
    }
}
