//! The incident lifecycle as a pure state machine: rule events in, decisions out.
//!
//! No clock, no I/O: every input carries its own timestamp ([`RuleEvent::at`], or the `now` of
//! [`Lifecycle::tick`]), so tests are tables of events and the service persists what the
//! machine decides ([`Persist`]) in the same transaction as the message it emits.
//!
//! One incident is open per (site, zone, kind) at a time ([`IncidentKey`]). Its id is derived
//! from the key and the condition's start time ([`incident_id`]), so a retried Start, a replayed
//! outbox or a restart never makes a second incident for the same condition.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{IncidentEvent, IncidentKind, Level, RuleEvent, RulePhase, SiteId, ZoneId};

/// What identifies "the same thing": one open incident per site, zone and kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IncidentKey {
    pub site: SiteId,
    pub zone: Option<ZoneId>,
    pub kind: IncidentKind,
}

impl IncidentKey {
    pub fn of(ev: &RuleEvent) -> Self {
        Self {
            site: ev.site.clone(),
            zone: ev.zone.clone(),
            kind: ev.kind,
        }
    }

    /// A stable text form, used as the primary key of the persisted state.
    pub fn as_db_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.site,
            self.zone.as_ref().map_or("", ZoneId::as_str),
            self.kind.as_str()
        )
    }
}

/// The deterministic incident id: `{site}-{kind}-{start, UTC, to the second}-{hash}`, where the
/// hash (8 hex digits of SHA-256) covers site, zone, kind and the start time to the millisecond.
/// Readable in logs and on the desk, unique per condition, equal for equal inputs.
pub fn incident_id(
    site: &str,
    zone: Option<&str>,
    kind: IncidentKind,
    started_at: DateTime<Utc>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"simpang.incident/1\n");
    h.update(site.as_bytes());
    h.update(b"\n");
    h.update(zone.unwrap_or("").as_bytes());
    h.update(b"\n");
    h.update(kind.as_str().as_bytes());
    h.update(b"\n");
    h.update(started_at.timestamp_millis().to_string().as_bytes());
    let digest = h.finalize();
    format!(
        "{site}-{}-{}-{}",
        kind.as_str(),
        started_at.format("%Y%m%dT%H%M%SZ"),
        hex::encode(&digest[..4])
    )
}

/// An open incident, as kept in memory and persisted between restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    pub key: IncidentKey,
    pub started_at: DateTime<Utc>,
    /// `seq` of the last message sent about it.
    pub seq: u32,
    pub level: Level,
    /// `at` of the last message sent (rate limit reference).
    pub last_sent_at: DateTime<Utc>,
    /// Set while restored after a restart and not yet confirmed by a rule.
    #[serde(default)]
    pub restored_at: Option<DateTime<Utc>>,
}

/// Why an incident ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The rule says the condition has cleared.
    Cleared,
    /// A new condition (a Start with another start time) replaced it without an End.
    Superseded,
    /// Restored after a restart and no rule confirmed it within the confirm time.
    NotConfirmed,
}

/// What to do with the persisted lifecycle state, in the same transaction as the message.
#[derive(Clone, Debug, PartialEq)]
pub enum Persist {
    Upsert(OpenIncident),
    Delete(String),
}

/// One message to emit.
#[derive(Clone, Debug, PartialEq)]
pub struct Emit {
    pub event: IncidentEvent,
    pub id: String,
    pub key: IncidentKey,
    pub seq: u32,
    pub level: Level,
    pub started_at: DateTime<Utc>,
    /// The message's `updated_at`.
    pub at: DateTime<Utc>,
    /// Set for `end`.
    pub ended_at: Option<DateTime<Utc>>,
    /// Set for `end`.
    pub end_reason: Option<EndReason>,
    /// Set on the first `update` after a restart: the incident continues across it.
    pub resumed: bool,
    /// True when the emit is the direct result of the rule event passed in (its evidence and
    /// frame belong in the message); false for an end the machine decided on its own.
    pub from_event: bool,
    pub persist: Persist,
}

/// Settings of the machine.
#[derive(Clone, Copy, Debug)]
pub struct LifecycleConfig {
    /// At most one `update` per incident per this interval, unless the level changes.
    pub update_interval: Duration,
    /// Restored incidents not confirmed within this time are ended.
    pub restore_confirm: Duration,
}

/// How long the ids of ended incidents are remembered, so that a late retry of their Start
/// does not reopen them.
const ENDED_MEMORY: i64 = 3600;
/// At most this many ended ids are remembered (oldest forgotten first).
const ENDED_MAX: usize = 4096;

/// The state machine.
#[derive(Debug)]
pub struct Lifecycle {
    cfg: LifecycleConfig,
    open: HashMap<IncidentKey, OpenIncident>,
    /// Recently ended ids and when they ended.
    ended: HashMap<String, DateTime<Utc>>,
}

impl Lifecycle {
    pub fn new(cfg: LifecycleConfig) -> Self {
        Self {
            cfg,
            open: HashMap::new(),
            ended: HashMap::new(),
        }
    }

    /// Takes back incidents that were open when the process stopped; they stay open (same id,
    /// seq continuing) if a rule confirms them within the confirm time.
    pub fn restore(
        &mut self,
        incidents: impl IntoIterator<Item = OpenIncident>,
        now: DateTime<Utc>,
    ) {
        for mut inc in incidents {
            inc.restored_at = Some(now);
            self.open.insert(inc.key.clone(), inc);
        }
    }

    /// Takes over the open incidents of a site that moved here from another cluster node
    /// (`incidents`, as that node last saved them): they replace whatever this machine still
    /// had of the site, and stay open, same id and seq continuing, if a rule confirms them
    /// within the confirm time, as after a restart. An incident also known here with a later
    /// `seq` (this node served the site last and the shared copy lags) keeps the later one.
    /// Returns the site's open incidents now, for the local state to match.
    pub fn adopt(
        &mut self,
        site: &SiteId,
        incidents: Vec<OpenIncident>,
        now: DateTime<Utc>,
    ) -> Vec<OpenIncident> {
        let mine: HashMap<IncidentKey, OpenIncident> = self
            .open
            .iter()
            .filter(|(k, _)| &k.site == site)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.open.retain(|k, _| &k.site != site);
        for mut inc in incidents.into_iter().filter(|i| &i.key.site == site) {
            if let Some(local) = mine.get(&inc.key) {
                if local.id == inc.id && local.seq > inc.seq {
                    inc = local.clone();
                }
            }
            inc.restored_at = Some(now);
            self.open.insert(inc.key.clone(), inc);
        }
        self.open_of(site)
    }

    /// The open incidents of one site, in key order.
    pub fn open_of(&self, site: &SiteId) -> Vec<OpenIncident> {
        let mut out: Vec<OpenIncident> = self
            .open
            .values()
            .filter(|i| &i.key.site == site)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    pub fn open_incidents(&self) -> impl Iterator<Item = &OpenIncident> {
        self.open.values()
    }

    pub fn is_open(&self, key: &IncidentKey) -> bool {
        self.open.contains_key(key)
    }

    /// Decides what a rule event means.
    pub fn on_event(&mut self, ev: &RuleEvent) -> Vec<Emit> {
        self.forget_ended(ev.at);
        let key = IncidentKey::of(ev);
        match ev.phase {
            RulePhase::Start | RulePhase::Update => self.on_active(key, ev),
            RulePhase::End => match self.open.remove(&key) {
                Some(inc) => vec![self.end(inc, ev.at, EndReason::Cleared, true)],
                // An End for nothing open: the Start was never seen (or was ended already).
                None => Vec::new(),
            },
        }
    }

    /// Time-driven decisions: ends restored incidents nobody confirmed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Emit> {
        self.forget_ended(now);
        let expired: Vec<IncidentKey> = self
            .open
            .iter()
            .filter(|(_, inc)| {
                inc.restored_at
                    .is_some_and(|r| now - r >= self.cfg.restore_confirm)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in expired {
            if let Some(inc) = self.open.remove(&key) {
                out.push(self.end(inc, now, EndReason::NotConfirmed, false));
            }
        }
        out
    }

    fn on_active(&mut self, key: IncidentKey, ev: &RuleEvent) -> Vec<Emit> {
        let mut out = Vec::new();
        if let Some(inc) = self.open.get_mut(&key) {
            if inc.restored_at.take().is_some() {
                // The condition survived the restart: continue the same incident, and say so
                // at once (not rate-limited) so the desk sees it is still current.
                return vec![Self::update(inc, ev, true)];
            }
            if ev.phase == RulePhase::Start && inc.started_at != ev.started_at {
                // A new condition while one is open: the rule missed an End. Close the old one
                // so the new one gets its own id.
                if let Some(old) = self.open.remove(&key) {
                    out.push(self.end(old, ev.at, EndReason::Superseded, false));
                }
            } else {
                // An Update, or a Start repeated for the same condition (a retry).
                let level_changed = inc.level != ev.level;
                let due = ev.at - inc.last_sent_at >= self.cfg.update_interval;
                if level_changed || due {
                    out.push(Self::update(inc, ev, false));
                }
                return out;
            }
        }
        let id = incident_id(
            key.site.as_str(),
            key.zone.as_ref().map(ZoneId::as_str),
            key.kind,
            ev.started_at,
        );
        if self.ended.contains_key(&id) {
            // A late retry of a Start whose incident has ended already.
            return out;
        }
        let inc = OpenIncident {
            id: id.clone(),
            key: key.clone(),
            started_at: ev.started_at,
            seq: 1,
            level: ev.level,
            last_sent_at: ev.at,
            restored_at: None,
        };
        out.push(Emit {
            event: IncidentEvent::New,
            id,
            key: key.clone(),
            seq: 1,
            level: ev.level,
            started_at: ev.started_at,
            at: ev.at,
            ended_at: None,
            end_reason: None,
            resumed: false,
            from_event: true,
            persist: Persist::Upsert(inc.clone()),
        });
        self.open.insert(key, inc);
        out
    }

    fn update(inc: &mut OpenIncident, ev: &RuleEvent, resumed: bool) -> Emit {
        inc.seq += 1;
        inc.level = ev.level;
        inc.last_sent_at = ev.at;
        Emit {
            event: IncidentEvent::Update,
            id: inc.id.clone(),
            key: inc.key.clone(),
            seq: inc.seq,
            level: inc.level,
            started_at: inc.started_at,
            at: ev.at,
            ended_at: None,
            end_reason: None,
            resumed,
            from_event: true,
            persist: Persist::Upsert(inc.clone()),
        }
    }

    fn end(
        &mut self,
        inc: OpenIncident,
        at: DateTime<Utc>,
        reason: EndReason,
        from_event: bool,
    ) -> Emit {
        // Never end before the start, whatever clock the caller used.
        let at = at.max(inc.started_at);
        self.ended.insert(inc.id.clone(), at);
        Emit {
            event: IncidentEvent::End,
            id: inc.id.clone(),
            key: inc.key.clone(),
            seq: inc.seq + 1,
            level: inc.level,
            started_at: inc.started_at,
            at,
            ended_at: Some(at),
            end_reason: Some(reason),
            resumed: false,
            from_event,
            persist: Persist::Delete(inc.key.as_db_key()),
        }
    }

    fn forget_ended(&mut self, now: DateTime<Utc>) {
        self.ended
            .retain(|_, at| now - *at < Duration::seconds(ENDED_MEMORY));
        if self.ended.len() > ENDED_MAX {
            let mut by_age: BTreeMap<DateTime<Utc>, Vec<String>> = BTreeMap::new();
            for (id, at) in &self.ended {
                by_age.entry(*at).or_default().push(id.clone());
            }
            let excess = self.ended.len() - ENDED_MAX;
            for id in by_age.into_values().flatten().take(excess) {
                self.ended.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, SiteId, ZoneId};
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn ev(
        zone: Option<&str>,
        kind: IncidentKind,
        phase: RulePhase,
        level: &str,
        start: i64,
        at: i64,
    ) -> RuleEvent {
        RuleEvent {
            site: SiteId::new("charitas"),
            zone: zone.map(ZoneId::new),
            kind,
            phase,
            level: level.parse().unwrap(),
            started_at: t(start),
            at: t(at),
            evidence: Evidence::default(),
            frame: None,
            boxes: Vec::new(),
        }
    }

    fn jam(phase: RulePhase, level: &str, start: i64, at: i64) -> RuleEvent {
        ev(
            Some("sudirman"),
            IncidentKind::TrafficJam,
            phase,
            level,
            start,
            at,
        )
    }

    fn machine() -> Lifecycle {
        Lifecycle::new(LifecycleConfig {
            update_interval: Duration::seconds(30),
            restore_confirm: Duration::seconds(600),
        })
    }

    /// (event, seq) of each emit.
    fn short(out: &[Emit]) -> Vec<(IncidentEvent, u32)> {
        out.iter().map(|e| (e.event, e.seq)).collect()
    }

    use IncidentEvent::{End, New, Update};
    use RulePhase as P;

    #[test]
    fn id_is_deterministic_and_distinguishes_inputs() {
        let k = IncidentKind::TrafficJam;
        let a = incident_id("charitas", Some("sudirman"), k, t(0));
        assert_eq!(a, incident_id("charitas", Some("sudirman"), k, t(0)));
        assert!(
            a.starts_with("charitas-traffic_jam-20261123T100000Z-"),
            "{a}"
        );
        let others = [
            incident_id("bkb", Some("sudirman"), k, t(0)),
            incident_id("charitas", None, k, t(0)),
            incident_id("charitas", Some("other"), k, t(0)),
            incident_id("charitas", Some("sudirman"), IncidentKind::Crowd, t(0)),
            incident_id(
                "charitas",
                Some("sudirman"),
                k,
                t(0) + Duration::milliseconds(1),
            ),
        ];
        for o in &others {
            assert_ne!(&a, o);
        }
    }

    /// A table of event sequences and the messages they must produce.
    #[test]
    fn lifecycle_table() {
        struct Case {
            name: &'static str,
            events: Vec<RuleEvent>,
            want: Vec<(IncidentEvent, u32)>,
        }
        let cases = vec![
            Case {
                name: "empty",
                events: vec![],
                want: vec![],
            },
            Case {
                name: "start update end",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::Update, "macet", 0, 45),
                    jam(P::End, "macet", 0, 90),
                ],
                want: vec![(New, 1), (Update, 2), (End, 3)],
            },
            Case {
                name: "updates inside the interval are dropped",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::Update, "macet", 0, 11),
                    jam(P::Update, "macet", 0, 39),
                    jam(P::Update, "macet", 0, 40), // exactly 30 s after the new: due
                    jam(P::Update, "macet", 0, 41),
                ],
                want: vec![(New, 1), (Update, 2)],
            },
            Case {
                name: "a level change bypasses the rate limit",
                events: vec![
                    jam(P::Start, "padat", 0, 10),
                    jam(P::Update, "macet", 0, 11),
                    jam(P::Update, "macet", 0, 12),
                    jam(P::Update, "padat", 0, 13),
                ],
                want: vec![(New, 1), (Update, 2), (Update, 3)],
            },
            Case {
                name: "a repeated start is a retry, not a second incident",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::Start, "macet", 0, 11),
                    jam(P::Start, "macet", 0, 50),
                ],
                want: vec![(New, 1), (Update, 2)],
            },
            Case {
                name: "end without start is ignored, end twice once",
                events: vec![
                    jam(P::End, "macet", 0, 5),
                    jam(P::Start, "macet", 0, 10),
                    jam(P::End, "macet", 0, 20),
                    jam(P::End, "macet", 0, 21),
                ],
                want: vec![(New, 1), (End, 2)],
            },
            Case {
                name: "an update with nothing open opens the incident",
                events: vec![jam(P::Update, "macet", 0, 10)],
                want: vec![(New, 1)],
            },
            Case {
                name: "a late retry of an ended start does not reopen it",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::End, "macet", 0, 20),
                    jam(P::Start, "macet", 0, 21),
                ],
                want: vec![(New, 1), (End, 2)],
            },
            Case {
                name: "a new condition after the end is a new incident",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::End, "macet", 0, 20),
                    jam(P::Start, "macet", 100, 110),
                ],
                want: vec![(New, 1), (End, 2), (New, 1)],
            },
            Case {
                name: "a start with another start time supersedes the open one",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    jam(P::Start, "macet", 100, 110),
                ],
                want: vec![(New, 1), (End, 2), (New, 1)],
            },
            Case {
                name: "kinds and zones are separate incidents",
                events: vec![
                    jam(P::Start, "macet", 0, 10),
                    ev(
                        Some("sudirman"),
                        IncidentKind::Crowd,
                        P::Start,
                        "tinggi",
                        0,
                        10,
                    ),
                    ev(
                        Some("lain"),
                        IncidentKind::TrafficJam,
                        P::Start,
                        "macet",
                        0,
                        10,
                    ),
                    ev(None, IncidentKind::CameraOffline, P::Start, "tinggi", 0, 10),
                ],
                want: vec![(New, 1), (New, 1), (New, 1), (New, 1)],
            },
        ];
        for c in cases {
            let mut m = machine();
            let mut got = Vec::new();
            for e in &c.events {
                got.extend(short(&m.on_event(e)));
            }
            assert_eq!(got, c.want, "case {:?}", c.name);
        }
    }

    #[test]
    fn ids_are_stable_across_the_lifecycle_and_times_are_kept() {
        let mut m = machine();
        let mut all = Vec::new();
        for e in [
            jam(P::Start, "padat", 0, 10),
            jam(P::Update, "macet", 0, 20),
            jam(P::End, "macet", 0, 90),
        ] {
            all.extend(m.on_event(&e));
        }
        let id = incident_id("charitas", Some("sudirman"), IncidentKind::TrafficJam, t(0));
        assert!(all.iter().all(|e| e.id == id));
        assert!(all.iter().all(|e| e.started_at == t(0)));
        assert_eq!(all[1].level, Level::Macet);
        assert_eq!(all[2].ended_at, Some(t(90)));
        assert_eq!(all[2].end_reason, Some(EndReason::Cleared));
        assert_eq!(
            all[0].persist,
            Persist::Upsert(OpenIncident {
                id: id.clone(),
                key: all[0].key.clone(),
                started_at: t(0),
                seq: 1,
                level: Level::Padat,
                last_sent_at: t(10),
                restored_at: None,
            })
        );
        assert_eq!(
            all[2].persist,
            Persist::Delete("charitas|sudirman|traffic_jam".into())
        );
        assert!(!m.is_open(&all[0].key));
    }

    #[test]
    fn restored_incident_continues_when_confirmed() {
        let mut first = machine();
        let out = first.on_event(&jam(P::Start, "macet", 0, 10));
        let Persist::Upsert(saved) = out[0].persist.clone() else {
            panic!("new must persist");
        };
        // The process restarts; the rule re-detects the jam with a new start time.
        let mut m = machine();
        m.restore([saved], t(500));
        let out = m.on_event(&jam(P::Start, "macet", 480, 510));
        assert_eq!(short(&out), vec![(Update, 2)]);
        assert_eq!(
            out[0].id,
            incident_id("charitas", Some("sudirman"), IncidentKind::TrafficJam, t(0))
        );
        assert!(out[0].resumed);
        // Confirmed: the confirm timer no longer applies.
        assert!(m.tick(t(5000)).is_empty());
        assert_eq!(
            short(&m.on_event(&jam(P::End, "macet", 480, 5001))),
            vec![(End, 3)]
        );
    }

    #[test]
    fn restored_incident_ends_when_not_confirmed() {
        let mut m = machine();
        m.restore(
            [OpenIncident {
                id: "x".into(),
                key: IncidentKey {
                    site: "charitas".into(),
                    zone: None,
                    kind: IncidentKind::CameraOffline,
                },
                started_at: t(0),
                seq: 4,
                level: Level::Tinggi,
                last_sent_at: t(100),
                restored_at: None,
            }],
            t(1000),
        );
        assert!(m.tick(t(1599)).is_empty());
        let out = m.tick(t(1600));
        assert_eq!(short(&out), vec![(End, 5)]);
        assert_eq!(out[0].end_reason, Some(EndReason::NotConfirmed));
        assert!(!out[0].from_event);
        assert!(m.tick(t(1700)).is_empty());
    }

    #[test]
    fn adopted_incidents_replace_the_sites_own_and_continue_when_confirmed() {
        // Node b served charitas first: its jam is open here with seq 1.
        let mut here = machine();
        here.on_event(&jam(P::Start, "macet", 0, 10));
        here.on_event(&ev(None, IncidentKind::Crowd, P::Start, "tinggi", 0, 10));
        let mut bkb = jam(P::Start, "padat", 5, 12);
        bkb.site = SiteId::new("bkb");
        here.on_event(&bkb);
        // The site moved to node a, which sent two updates and ended the crowd, then moved
        // back: a's saved copy (jam at seq 3, no crowd) wins over what is left here.
        let mut there = machine();
        there.on_event(&jam(P::Start, "macet", 0, 10));
        there.on_event(&jam(P::Update, "padat", 0, 100));
        there.on_event(&jam(P::Update, "macet", 0, 200));
        let saved = there.open_of(&SiteId::new("charitas"));
        assert_eq!(saved.len(), 1);
        let now = here.adopt(&SiteId::new("charitas"), saved, t(300));
        assert_eq!(now.len(), 1, "the crowd incident is gone: {now:?}");
        assert_eq!(now[0].seq, 3);
        assert!(
            here.is_open(&IncidentKey::of(&bkb)),
            "other sites are untouched"
        );
        // The rule here sees the jam again, with its own start time: the same incident goes on.
        let out = here.on_event(&jam(P::Start, "macet", 290, 310));
        assert_eq!(short(&out), vec![(Update, 4)]);
        assert!(out[0].resumed);
        assert_eq!(
            out[0].id,
            incident_id("charitas", Some("sudirman"), IncidentKind::TrafficJam, t(0))
        );
        // A copy that lags behind what this node sent itself keeps the later seq.
        let mut lagging = here.open_of(&SiteId::new("charitas"));
        lagging[0].seq = 2;
        let now = here.adopt(&SiteId::new("charitas"), lagging, t(400));
        assert_eq!(now[0].seq, 4);
        // Not confirmed: it ends after the confirm time like a restored incident.
        let out = here.tick(t(1000));
        assert_eq!(short(&out), vec![(End, 5)]);
        assert_eq!(out[0].end_reason, Some(EndReason::NotConfirmed));
    }

    #[test]
    fn end_is_never_before_start() {
        let mut m = machine();
        m.on_event(&jam(P::Start, "macet", 100, 110));
        let out = m.on_event(&jam(P::End, "macet", 100, 50));
        assert_eq!(out[0].ended_at, Some(t(100)));
    }

    #[test]
    fn ended_ids_are_forgotten_after_an_hour() {
        let mut m = machine();
        m.on_event(&jam(P::Start, "macet", 0, 10));
        m.on_event(&jam(P::End, "macet", 0, 20));
        assert_eq!(m.ended.len(), 1);
        m.tick(t(20 + ENDED_MEMORY));
        assert!(m.ended.is_empty());
    }
}
