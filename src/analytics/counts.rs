//! Counting lines and the site's reporting intervals: running totals for the wall, and a
//! [`CountsReport`] each time an interval closes (docs/rules.md, "Counting lines").

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use super::geom::Segment;
use super::lines::LineCounter;
use super::rule::{class_name, ClassSet};
use super::AnalyticsError;
use crate::config::Site;
use crate::model::{
    CountsReport, Labels, LineCounts, LineId, LineTotals, SiteId, Track, ZoneTraffic,
};

/// Reporting intervals when a site has zones that report per interval (jam zones) but no
/// counting lines.
pub const DEFAULT_INTERVALS_S: [u32; 2] = [60, 900];

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

pub(super) fn align(at: DateTime<Utc>, len_s: u32) -> DateTime<Utc> {
    let len = len_s.max(1) as i64;
    let s = at.timestamp().div_euclid(len) * len;
    DateTime::from_timestamp(s, 0).unwrap_or(at)
}

/// The interval lengths of a site: the union of its lines' `intervals_s`; without lines, the
/// defaults when a zone reports per interval (`zones_report`), else none.
pub fn intervals_of(site: &Site, zones_report: bool) -> Vec<u32> {
    let mut v: Vec<u32> = site
        .lines
        .iter()
        .flat_map(|l| l.intervals_s.iter().copied())
        .filter(|s| *s > 0)
        .collect();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() && zones_report {
        DEFAULT_INTERVALS_S.to_vec()
    } else {
        v
    }
}

/// The counting side of one site.
pub struct Counting {
    site: SiteId,
    labels: Labels,
    lines: Vec<LineRt>,
    clocks: Vec<Clock>,
}

impl Counting {
    /// The site's lines, counting the classes they name (an unknown one is an error naming the
    /// field), reporting over `intervals` ([`intervals_of`]).
    pub fn new(site: &Site, labels: &Labels, intervals: &[u32]) -> Result<Self, AnalyticsError> {
        let mut lines = Vec::new();
        for (j, l) in site.lines.iter().enumerate() {
            let ids = ClassSet::resolve(
                site.id.as_str(),
                format!("lines[{j}].classes"),
                &l.classes,
                labels,
            )?
            .ids();
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
            site: SiteId::new(&site.id),
            labels: labels.clone(),
            lines,
            clocks: intervals
                .iter()
                .map(|&len_s| Clock {
                    len_s,
                    start: None,
                    data_from: None,
                })
                .collect(),
        })
    }

    /// Reports every interval that closed before `at`; `zones(i)` gives the zones' figures for
    /// interval `i`.
    pub fn close(
        &mut self,
        at: DateTime<Utc>,
        out: &mut Vec<CountsReport>,
        mut zones: impl FnMut(usize) -> Vec<ZoneTraffic>,
    ) {
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
            let lines = self.take_lines(ci);
            out.push(CountsReport {
                site: self.site.clone(),
                interval_s: len_s,
                start: data_from,
                end,
                lines,
                zones: zones(ci),
            });
            let next = align(at, len_s);
            self.clocks[ci].start = Some(next);
            // contiguous: the new interval is covered from its start; after a gap, from now
            self.clocks[ci].data_from = Some(if next == end { next } else { at });
        }
    }

    fn take_lines(&mut self, ci: usize) -> Vec<LineCounts> {
        let mut lines = Vec::new();
        for l in &mut self.lines {
            let taken = l.counter.take_interval(ci);
            if !l.reports_in.contains(&ci) {
                continue;
            }
            let mut by_class = BTreeMap::new();
            for (c, d) in taken {
                by_class.insert(class_name(&self.labels, c), d);
            }
            lines.push(LineCounts {
                line: l.id.clone(),
                name: l.name.clone(),
                in_name: l.in_name.clone(),
                out_name: l.out_name.clone(),
                by_class,
            });
        }
        lines
    }

    /// Feeds this frame's tracks to the lines; returns their running totals.
    pub fn update(&mut self, tracks: &[Track]) -> Vec<LineTotals> {
        let mut totals = Vec::with_capacity(self.lines.len());
        for l in &mut self.lines {
            l.counter.update(tracks, |_, _| {});
            totals.push(LineTotals {
                line: Some(l.id.clone()),
                in_count: l.counter.total.in_count,
                out_count: l.counter.total.out_count,
            });
        }
        totals
    }
}
