//! The dashboard's numbers: counts by colour and by stage, SLA compliance, and tables by
//! category and by agency. [`tally`] is pure: it folds the database's grouped counts
//! ([`StatRow`]) into a [`Dashboard`]; [`super::queries::Queries::dashboard`] does the reading.

use std::collections::BTreeMap;

use serde::Serialize;

use super::domain::{Colour, Status};
use super::store::{StatRow, StoreError};
use crate::config::DeskConfig;

/// Counts of one category or agency on the dashboard.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GroupStat {
    pub id: String,
    pub name: String,
    pub total: i64,
    pub open: i64,
    pub done: i64,
    pub overdue: i64,
    pub on_time: i64,
    pub answered: i64,
}

/// What the dashboard shows for one period.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Dashboard {
    /// Received in the period (everything filed).
    pub total: i64,
    /// Still being handled.
    pub open: i64,
    /// Confirmed solved.
    pub done: i64,
    /// Rejected or merged.
    pub closed_other: i64,
    pub red: i64,
    pub yellow: i64,
    pub green: i64,
    pub grey: i64,
    pub overdue: i64,
    /// Answers on time over all judged (answered, or overdue without an answer), percent.
    pub sla_compliance: Option<f64>,
    pub sla_on_time: i64,
    pub sla_judged: i64,
    pub by_category: Vec<GroupStat>,
    pub by_agency: Vec<GroupStat>,
    pub by_source: BTreeMap<String, i64>,
}

/// Folds grouped counts into the dashboard. Categories and agencies come in config order (the
/// order people know), then any no longer configured, under their ids.
pub fn tally(rows: &[StatRow], cfg: &DeskConfig) -> Result<Dashboard, StoreError> {
    let mut d = Dashboard::default();
    let mut cats: BTreeMap<String, GroupStat> = BTreeMap::new();
    let mut ags: BTreeMap<String, GroupStat> = BTreeMap::new();
    for row in rows {
        let status: Status = row
            .status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
        d.total += row.n;
        match status.colour() {
            Colour::Red => d.red += row.n,
            Colour::Yellow => d.yellow += row.n,
            Colour::Green => d.green += row.n,
            Colour::Grey => d.grey += row.n,
        }
        if status.is_open() {
            d.open += row.n;
        } else if status == Status::Done {
            d.done += row.n;
        } else {
            d.closed_other += row.n;
        }
        d.overdue += row.overdue;
        d.sla_on_time += row.on_time;
        d.sla_judged += row.answered + row.overdue;
        let add = |g: &mut GroupStat| {
            g.total += row.n;
            if status.is_open() {
                g.open += row.n;
            }
            if status == Status::Done {
                g.done += row.n;
            }
            g.overdue += row.overdue;
            g.on_time += row.on_time;
            g.answered += row.answered;
        };
        add(cats.entry(row.category_id.clone()).or_default());
        if let Some(a) = &row.agency_id {
            add(ags.entry(a.clone()).or_default());
        }
    }
    if d.sla_judged > 0 {
        d.sla_compliance = Some(100.0 * d.sla_on_time as f64 / d.sla_judged as f64);
    }
    let named = cfg.categories.iter().map(|c| (&c.id, &c.name));
    d.by_category = in_config_order(cats, named);
    let named = cfg.agencies.iter().map(|a| (&a.id, &a.name));
    d.by_agency = in_config_order(ags, named);
    Ok(d)
}

/// The groups in the order of `configured` (id, name), then the rest named by their ids.
fn in_config_order<'a>(
    mut groups: BTreeMap<String, GroupStat>,
    configured: impl Iterator<Item = (&'a String, &'a String)>,
) -> Vec<GroupStat> {
    let mut out = Vec::new();
    for (id, name) in configured {
        if let Some(mut g) = groups.remove(id) {
            g.id = id.clone();
            g.name = name.clone();
            out.push(g);
        }
    }
    for (id, mut g) in groups {
        g.name = id.clone();
        g.id = id;
        out.push(g);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cat: &str, agency: Option<&str>, status: &str, n: i64) -> StatRow {
        StatRow {
            category_id: cat.into(),
            agency_id: agency.map(str::to_string),
            status: status.into(),
            n,
            overdue: 0,
            on_time: 0,
            answered: 0,
        }
    }

    #[test]
    fn empty_period() {
        let d = tally(&[], &DeskConfig::default()).unwrap();
        assert_eq!((d.total, d.open, d.done, d.closed_other), (0, 0, 0, 0));
        assert_eq!(d.sla_compliance, None);
        assert!(d.by_category.is_empty() && d.by_agency.is_empty());
    }

    #[test]
    fn counts_by_colour_stage_and_group() {
        let cfg = DeskConfig::default();
        let mut late = row("traffic", Some("dishub"), "dispositioned", 2);
        late.overdue = 1;
        let mut answered = row("traffic", Some("dishub"), "answered", 3);
        answered.answered = 3;
        answered.on_time = 2;
        let rows = [
            row("garbage", None, "received", 4),
            late,
            answered,
            row("traffic", Some("dishub"), "done", 1),
            row("traffic", None, "rejected", 1),
            row("retired", Some("gone"), "merged", 1),
        ];
        let d = tally(&rows, &cfg).unwrap();
        assert_eq!(d.total, 12);
        assert_eq!((d.red, d.yellow, d.green, d.grey), (6, 3, 1, 2));
        assert_eq!((d.open, d.done, d.closed_other), (9, 1, 2));
        assert_eq!((d.overdue, d.sla_on_time, d.sla_judged), (1, 2, 4));
        assert_eq!(d.sla_compliance, Some(50.0));
        let ids: Vec<&str> = d.by_category.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(
            ids,
            ["traffic", "garbage", "retired"],
            "config order, then the rest"
        );
        assert_eq!(d.by_category[2].name, "retired");
        let traffic = &d.by_category[0];
        assert_eq!((traffic.total, traffic.open, traffic.done), (7, 5, 1));
        let ags: Vec<&str> = d.by_agency.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ags, ["dishub", "gone"]);
    }

    #[test]
    fn damaged_status_is_an_error() {
        let rows = [row("traffic", None, "lost", 1)];
        assert!(tally(&rows, &DeskConfig::default()).is_err());
    }
}
