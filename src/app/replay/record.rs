//! What a replay keeps of each site: the incidents the lifecycle made of the rule events (with
//! the very messages `simpang run` would publish), and, per frame, the zones' counts and levels
//! and the counting lines' totals.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use serde::Serialize;

use super::super::frameloop::Outlet;
use crate::config::Config;
use crate::incident::lifecycle::{Emit, EndReason};
use crate::incident::message::{incident_message, LocalTime, SiteInfo};
use crate::incident::{Lifecycle, LifecycleConfig};
use crate::model::{
    AnalyticsFrame, CountsReport, Evidence, IncidentEvent, IncidentKind, IncidentMessage, Level,
    LineTotals, RuleEvent, SiteResults,
};

/// Frames whose `captured_at - pts` give a site's media origin (their median).
const ORIGIN_FRAMES: usize = 25;

/// One incident of a replay, its times in media seconds from the recording's start.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayIncident {
    pub site: String,
    pub kind: IncidentKind,
    pub zone: Option<String>,
    pub id: String,
    /// When its condition began (the start of the dwell).
    pub condition_s: f64,
    /// When it was raised: its `new` message, the alarm.
    pub opened_s: f64,
    /// Its `end` message; `None`: still open when the recording ended.
    pub ended_s: Option<f64>,
    /// Its levels in the order they were reported.
    pub levels: Vec<Level>,
    /// The evidence of the `new` message.
    pub evidence: Evidence,
    /// The evidence of the `end` message.
    pub end_evidence: Option<Evidence>,
    /// Why it ended (`cleared`, `superseded`, `not_confirmed`).
    pub end_reason: Option<String>,
    /// The messages, as `simpang run` publishes them.
    pub messages: Vec<IncidentMessage>,
}

/// Per frame of a site: each zone's count and level (`--series`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Series {
    /// Media seconds of the frames.
    pub t: Vec<f64>,
    /// Zone id -> count per frame.
    pub counts: BTreeMap<String, Vec<u32>>,
}

/// What a replay keeps of one site.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SiteRecord {
    pub site: String,
    /// Analytics frames processed.
    pub frames: u64,
    /// Media time of the last frame, seconds.
    pub media_s: f64,
    pub incidents: Vec<ReplayIncident>,
    /// Zone id -> each change of its graded level (jam zones), `(media s, level)`.
    pub levels: BTreeMap<String, Vec<(f64, Level)>>,
    /// The counting lines' totals at the end.
    pub lines: Vec<LineTotals>,
    /// Counting intervals closed during the replay.
    pub counts_reports: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
}

struct SiteRec {
    info: SiteInfo,
    offsets: Vec<TimeDelta>,
    origin: Option<DateTime<Utc>>,
    out: SiteRecord,
    /// Incident id -> index in `out.incidents`.
    open: HashMap<String, usize>,
}

impl SiteRec {
    fn secs(&self, t: DateTime<Utc>) -> f64 {
        let origin = self.origin.unwrap_or(t);
        (t - origin).num_milliseconds() as f64 / 1000.0
    }
}

struct State {
    lifecycle: Lifecycle,
    sites: HashMap<String, SiteRec>,
}

/// The replay's [`Outlet`]: the incident lifecycle and messages of the incident stage, without
/// the outbox and MQTT.
pub struct Recorder {
    local: LocalTime,
    series: bool,
    state: Mutex<State>,
}

impl Recorder {
    pub fn new(cfg: &Config, series: bool) -> Self {
        let ms = |s: f64| TimeDelta::milliseconds((s * 1000.0) as i64);
        let lifecycle = Lifecycle::new(LifecycleConfig {
            update_interval: ms(cfg.incidents.update_interval_s),
            restore_confirm: ms(cfg.incidents.restore_confirm_s),
        });
        let sites = cfg
            .sites
            .iter()
            .map(|s| {
                let rec = SiteRec {
                    info: SiteInfo::from_site(s),
                    offsets: Vec::new(),
                    origin: None,
                    out: SiteRecord {
                        site: s.id.to_string(),
                        series: series.then(Series::default),
                        ..SiteRecord::default()
                    },
                    open: HashMap::new(),
                };
                (s.id.to_string(), rec)
            })
            .collect();
        Self {
            local: LocalTime { tz: cfg.city.tz() },
            series,
            state: Mutex::new(State { lifecycle, sites }),
        }
    }

    /// The records, in `order` (site ids).
    pub fn finish(self, order: &[String]) -> Vec<SiteRecord> {
        let mut st = self.state.into_inner();
        order
            .iter()
            .filter_map(|id| st.sites.remove(id).map(|r| r.out))
            .collect()
    }

    fn record(&self, rec: &mut SiteRec, emit: &Emit, ev: &RuleEvent) {
        let evidence = if emit.from_event {
            ev.evidence.clone()
        } else {
            Evidence::default()
        };
        let msg = incident_message(emit, &evidence, &rec.info, &self.local, None);
        match emit.event {
            IncidentEvent::New => {
                let i = rec.out.incidents.len();
                rec.out.incidents.push(ReplayIncident {
                    site: emit.key.site.to_string(),
                    kind: emit.key.kind,
                    zone: emit.key.zone.as_ref().map(|z| z.to_string()),
                    id: emit.id.clone(),
                    condition_s: rec.secs(emit.started_at),
                    opened_s: rec.secs(emit.at),
                    ended_s: None,
                    levels: vec![emit.level],
                    evidence,
                    end_evidence: None,
                    end_reason: None,
                    messages: vec![msg],
                });
                rec.open.insert(emit.id.clone(), i);
            }
            IncidentEvent::Update | IncidentEvent::End => {
                let ended_s = rec.secs(emit.at);
                let Some(&i) = rec.open.get(&emit.id) else {
                    return;
                };
                let inc = &mut rec.out.incidents[i];
                if inc.levels.last() != Some(&emit.level) {
                    inc.levels.push(emit.level);
                }
                inc.messages.push(msg);
                if emit.event == IncidentEvent::End {
                    inc.ended_s = Some(ended_s);
                    inc.end_evidence = Some(evidence);
                    inc.end_reason = emit.end_reason.map(|r| {
                        match r {
                            EndReason::Cleared => "cleared",
                            EndReason::Superseded => "superseded",
                            EndReason::NotConfirmed => "not_confirmed",
                        }
                        .to_string()
                    });
                    rec.open.remove(&emit.id);
                }
            }
        }
    }
}

impl Outlet for Recorder {
    fn rule_event(&self, ev: RuleEvent) {
        let st = &mut *self.state.lock();
        let emits = st.lifecycle.on_event(&ev);
        let Some(rec) = st.sites.get_mut(ev.site.as_str()) else {
            return;
        };
        for emit in emits {
            self.record(rec, &emit, &ev);
        }
    }

    fn counts(&self, report: CountsReport) {
        if let Some(rec) = self.state.lock().sites.get_mut(report.site.as_str()) {
            rec.out.counts_reports += 1;
        }
    }

    fn frame_done(&self, frame: &AnalyticsFrame, results: &SiteResults) {
        let mut st = self.state.lock();
        let Some(rec) = st.sites.get_mut(frame.site.as_str()) else {
            return;
        };
        // the media origin: where pts 0 is on the events' clock (exact in a replay, where the
        // frames are stamped with media time; the median of the first frames' when live)
        let pts = frame.pts.unwrap_or_default();
        if rec.offsets.len() < ORIGIN_FRAMES {
            let pts = TimeDelta::from_std(pts).unwrap_or_default();
            rec.offsets
                .push(frame.captured_at - pts - DateTime::UNIX_EPOCH);
            let mut o = rec.offsets.clone();
            o.sort();
            rec.origin = Some(DateTime::UNIX_EPOCH + o[o.len() / 2]);
        }
        rec.out.frames += 1;
        let t = pts.as_secs_f64();
        rec.out.media_s = rec.out.media_s.max(t);
        for z in &results.zones {
            let Some(level) = z.level else { continue };
            let changes = rec.out.levels.entry(z.zone.to_string()).or_default();
            if changes.last().map(|(_, l)| *l) != Some(level) {
                changes.push((t, level));
            }
        }
        rec.out.lines = results.lines.clone();
        if self.series {
            if let Some(s) = rec.out.series.as_mut() {
                s.t.push(t);
                for z in &results.zones {
                    s.counts
                        .entry(z.zone.to_string())
                        .or_default()
                        .push(z.count);
                }
            }
        }
    }
}
