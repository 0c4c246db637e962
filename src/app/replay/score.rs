//! Scoring a replay's incidents against labels: per incident kind, hits, misses and false
//! alarms, and how late the alarm came and the incident ended.
//!
//! A label and an incident *match* when they are of the same site, kind and zone and the
//! incident, from its alarm (its `new` message) to its end (or the end of the recording), overlaps
//! the labelled condition. Labels are matched in order of their start, each to the earliest
//! unmatched incident that matches it. A label without an incident is a **miss**; an incident of
//! a labelled site without a label is a **false alarm** (so is an alarm raised only after the
//! condition ended: it matches nothing). The **alarm delay** is the alarm's time minus the
//! label's start, the **end delay** the incident's end minus the label's end.

use std::fmt::Write as _;

use serde::Serialize;

use super::labels::Labels;
use super::record::SiteRecord;
use crate::model::IncidentKind;

/// One label's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct LabelResult {
    /// `file:line` of the label.
    pub source: String,
    pub site: String,
    pub kind: IncidentKind,
    pub zone: Option<String>,
    pub start_s: f64,
    pub end_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persons: Option<u32>,
    /// The incident that matched it.
    pub incident: Option<String>,
    pub opened_s: Option<f64>,
    pub ended_s: Option<f64>,
    pub alarm_delay_s: Option<f64>,
    /// `None` when missed, or when the incident was still open at the end of the recording.
    pub end_delay_s: Option<f64>,
}

/// An incident no label explains.
#[derive(Clone, Debug, Serialize)]
pub struct FalseAlarm {
    pub site: String,
    pub kind: IncidentKind,
    pub zone: Option<String>,
    pub incident: String,
    pub opened_s: f64,
    pub ended_s: Option<f64>,
}

/// Median and largest of some delays, seconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Delays {
    pub n: usize,
    pub median_s: Option<f64>,
    pub max_s: Option<f64>,
}

impl Delays {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self {
            n: v.len(),
            median_s: (!v.is_empty()).then(|| {
                let m = v.len() / 2;
                if v.len() % 2 == 1 {
                    v[m]
                } else {
                    round((v[m - 1] + v[m]) / 2.0)
                }
            }),
            max_s: v.last().copied(),
        }
    }

    fn text(&self) -> String {
        match (self.median_s, self.max_s) {
            (Some(m), Some(x)) => format!("{m:+.1} / {x:+.1}"),
            _ => "-".into(),
        }
    }
}

/// The scores of one incident kind.
#[derive(Clone, Debug, Serialize)]
pub struct KindScore {
    pub kind: IncidentKind,
    pub labels: usize,
    pub hits: usize,
    pub misses: usize,
    pub false_alarms: usize,
    pub alarm_delay: Delays,
    pub end_delay: Delays,
    /// Hits still open when the recording ended (no end delay).
    pub open_at_end: usize,
}

/// Everything a scoring gives.
#[derive(Clone, Debug, Serialize)]
pub struct Scores {
    pub by_kind: Vec<KindScore>,
    pub labels: Vec<LabelResult>,
    pub false_alarms: Vec<FalseAlarm>,
    /// Sites whose incidents were scored.
    pub sites: Vec<String>,
}

impl Scores {
    /// True when every label was hit and nothing else was raised.
    pub fn perfect(&self) -> bool {
        self.by_kind
            .iter()
            .all(|k| k.misses == 0 && k.false_alarms == 0)
    }
}

/// Scores the incidents of `records` against `labels` (only the sites the labels cover, and
/// that were replayed).
pub fn score(labels: &Labels, records: &[SiteRecord]) -> Scores {
    let mut results = Vec::new();
    let mut false_alarms = Vec::new();
    let mut sites = Vec::new();
    for rec in records.iter().filter(|r| labels.sites.contains(&r.site)) {
        sites.push(rec.site.clone());
        let mut used = vec![false; rec.incidents.len()];
        let mut mine: Vec<_> = labels
            .labels
            .iter()
            .filter(|l| l.site == rec.site)
            .collect();
        mine.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
        for l in mine {
            let found = rec.incidents.iter().enumerate().find(|(i, inc)| {
                !used[*i]
                    && inc.kind == l.kind
                    && inc.zone == l.zone
                    && inc.opened_s <= l.end_s
                    && inc.ended_s.is_none_or(|e| e >= l.start_s)
            });
            let mut r = LabelResult {
                source: l.source.clone(),
                site: l.site.clone(),
                kind: l.kind,
                zone: l.zone.clone(),
                start_s: l.start_s,
                end_s: l.end_s,
                persons: l.persons,
                incident: None,
                opened_s: None,
                ended_s: None,
                alarm_delay_s: None,
                end_delay_s: None,
            };
            if let Some((i, inc)) = found {
                used[i] = true;
                r.incident = Some(inc.id.clone());
                r.opened_s = Some(inc.opened_s);
                r.ended_s = inc.ended_s;
                r.alarm_delay_s = Some(round(inc.opened_s - l.start_s));
                r.end_delay_s = inc.ended_s.map(|e| round(e - l.end_s));
            }
            results.push(r);
        }
        for (inc, _) in rec.incidents.iter().zip(&used).filter(|(_, u)| !**u) {
            false_alarms.push(FalseAlarm {
                site: inc.site.clone(),
                kind: inc.kind,
                zone: inc.zone.clone(),
                incident: inc.id.clone(),
                opened_s: inc.opened_s,
                ended_s: inc.ended_s,
            });
        }
    }
    let mut kinds: Vec<IncidentKind> = results
        .iter()
        .map(|r| r.kind)
        .chain(false_alarms.iter().map(|f| f.kind))
        .collect();
    kinds.sort();
    kinds.dedup();
    let by_kind = kinds
        .into_iter()
        .map(|kind| {
            let rs: Vec<&LabelResult> = results.iter().filter(|r| r.kind == kind).collect();
            let hits: Vec<&&LabelResult> = rs.iter().filter(|r| r.incident.is_some()).collect();
            KindScore {
                kind,
                labels: rs.len(),
                hits: hits.len(),
                misses: rs.len() - hits.len(),
                false_alarms: false_alarms.iter().filter(|f| f.kind == kind).count(),
                alarm_delay: Delays::of(hits.iter().filter_map(|r| r.alarm_delay_s).collect()),
                end_delay: Delays::of(hits.iter().filter_map(|r| r.end_delay_s).collect()),
                open_at_end: hits.iter().filter(|r| r.ended_s.is_none()).count(),
            }
        })
        .collect();
    Scores {
        by_kind,
        labels: results,
        false_alarms,
        sites,
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn span(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a:.1}-{b:.1}"),
        (Some(a), None) => format!("{a:.1}-open"),
        _ => "-".into(),
    }
}

/// The scores as text tables: each label, the false alarms, then per kind.
pub fn text(s: &Scores) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<14} {:<14} {:<8} {:>13} {:>13} {:>8} {:>8}",
        "site", "kind", "zone", "label s", "incident s", "alarm", "end"
    );
    for r in &s.labels {
        let delay = |d: Option<f64>| d.map_or("-".to_string(), |d| format!("{d:+.1}"));
        let _ = writeln!(
            o,
            "{:<14} {:<14} {:<8} {:>13} {:>13} {:>8} {:>8}{}",
            r.site,
            r.kind.as_str(),
            r.zone.as_deref().unwrap_or("-"),
            span(Some(r.start_s), Some(r.end_s)),
            if r.incident.is_some() {
                span(r.opened_s, r.ended_s)
            } else {
                "MISSED".into()
            },
            delay(r.alarm_delay_s),
            delay(r.end_delay_s),
            r.persons
                .map_or(String::new(), |p| format!("  ({p} persons)")),
        );
    }
    for f in &s.false_alarms {
        let _ = writeln!(
            o,
            "{:<14} {:<14} {:<8} {:>13} {:>13} FALSE ALARM",
            f.site,
            f.kind.as_str(),
            f.zone.as_deref().unwrap_or("-"),
            "-",
            span(Some(f.opened_s), f.ended_s),
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "{:<14} {:>6} {:>5} {:>7} {:>13} {:>22} {:>22}",
        "kind",
        "labels",
        "hits",
        "misses",
        "false alarms",
        "alarm delay med/max s",
        "end delay med/max s"
    );
    for k in &s.by_kind {
        let _ = writeln!(
            o,
            "{:<14} {:>6} {:>5} {:>7} {:>13} {:>22} {:>22}{}",
            k.kind.as_str(),
            k.labels,
            k.hits,
            k.misses,
            k.false_alarms,
            k.alarm_delay.text(),
            k.end_delay.text(),
            if k.open_at_end > 0 {
                format!("  ({} open at the end)", k.open_at_end)
            } else {
                String::new()
            }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::labels::Label;
    use super::super::record::ReplayIncident;
    use super::*;
    use crate::model::{Evidence, Level};

    fn label(site: &str, kind: IncidentKind, start_s: f64, end_s: f64) -> Label {
        Label {
            site: site.into(),
            kind,
            zone: (kind != IncidentKind::CameraTamper).then(|| "z".to_string()),
            start_s,
            end_s,
            persons: None,
            note: None,
            source: "l:1".into(),
        }
    }

    fn inc(site: &str, kind: IncidentKind, opened_s: f64, ended_s: Option<f64>) -> ReplayIncident {
        ReplayIncident {
            site: site.into(),
            kind,
            zone: (kind != IncidentKind::CameraTamper).then(|| "z".to_string()),
            id: format!("{site}-{opened_s}"),
            condition_s: opened_s - 5.0,
            opened_s,
            ended_s,
            levels: vec![Level::Sedang],
            evidence: Evidence::default(),
            end_evidence: None,
            end_reason: None,
            messages: Vec::new(),
        }
    }

    fn record(site: &str, incidents: Vec<ReplayIncident>) -> SiteRecord {
        SiteRecord {
            site: site.into(),
            incidents,
            ..SiteRecord::default()
        }
    }

    #[test]
    fn hits_misses_false_alarms_and_delays() {
        use IncidentKind::*;
        let labels = Labels {
            labels: vec![
                label("a", CameraTamper, 20.0, 35.0),
                label("a", CameraTamper, 50.0, 65.0),
                label("b", Crowd, 18.0, 78.0),
                label("c", TrafficJam, 57.0, 143.0),
            ],
            sites: ["a", "b", "c", "d"]
                .map(String::from)
                .into_iter()
                .collect::<BTreeSet<_>>(),
        };
        let records = vec![
            // both tamper conditions raised; the second still open at the end
            record(
                "a",
                vec![
                    inc("a", CameraTamper, 25.2, Some(45.0)),
                    inc("a", CameraTamper, 55.4, None),
                ],
            ),
            // the crowd raised twice: the second is a false alarm
            record(
                "b",
                vec![
                    inc("b", Crowd, 28.0, Some(93.0)),
                    inc("b", Crowd, 100.0, Some(120.0)),
                ],
            ),
            // the jam raised only once the queue had cleared: a miss and a false alarm
            record("c", vec![inc("c", TrafficJam, 150.0, Some(170.0))]),
            // nothing labelled, something raised
            record("d", vec![inc("d", Crowd, 30.0, Some(40.0))]),
            // not labelled at all: not scored
            record("e", vec![inc("e", Crowd, 30.0, Some(40.0))]),
        ];
        let s = score(&labels, &records);
        let k = |kind| s.by_kind.iter().find(|k| k.kind == kind).unwrap();
        let t = k(CameraTamper);
        assert_eq!(
            (t.labels, t.hits, t.misses, t.false_alarms, t.open_at_end),
            (2, 2, 0, 0, 1)
        );
        assert_eq!(t.alarm_delay.median_s, Some(5.3));
        assert_eq!(
            t.end_delay,
            Delays {
                n: 1,
                median_s: Some(10.0),
                max_s: Some(10.0)
            }
        );
        let c = k(Crowd);
        assert_eq!((c.labels, c.hits, c.misses, c.false_alarms), (1, 1, 0, 2));
        let j = k(TrafficJam);
        assert_eq!((j.labels, j.hits, j.misses, j.false_alarms), (1, 0, 1, 1));
        assert!(!s.perfect());
        assert_eq!(s.sites, ["a", "b", "c", "d"]);
        let table = text(&s);
        assert!(table.contains("MISSED"), "{table}");
        assert!(table.contains("FALSE ALARM"), "{table}");
        assert!(table.contains("(1 open at the end)"), "{table}");
    }
}
