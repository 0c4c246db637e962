//! How the desk names things for people: times in the city's zone, category and agency names,
//! the public tracker's address. Pure functions of the config; no database.

use std::sync::Arc;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use crate::config::Config;

/// Names and times as pages, SMS replies, the live feed and status messages show them.
#[derive(Clone)]
pub struct Labels {
    cfg: Arc<Config>,
}

impl Labels {
    pub fn new(cfg: Arc<Config>) -> Self {
        Self { cfg }
    }

    /// `ts` in the city's time zone.
    pub fn local(&self, ts: i64) -> DateTime<FixedOffset> {
        let utc = Utc.timestamp_opt(ts, 0).single().unwrap_or_default();
        self.cfg.city.tz().local(utc)
    }

    /// A time as people read it on the desk: "24 Nov 2026, 17.05 WIB".
    pub fn time(&self, ts: i64) -> String {
        use chrono::{Datelike, Timelike};
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des",
        ];
        let t = self.local(ts);
        let zone = match t.offset().local_minus_utc() {
            25_200 => "WIB".to_string(),
            28_800 => "WITA".to_string(),
            32_400 => "WIT".to_string(),
            s => format!("UTC{:+}", s / 3600),
        };
        format!(
            "{} {} {}, {:02}.{:02} {zone}",
            t.day(),
            MONTHS[t.month0() as usize],
            t.year(),
            t.hour(),
            t.minute()
        )
    }

    /// The category's name from the config, or its id when it is no longer configured.
    pub fn category_name(&self, id: &str) -> String {
        self.cfg
            .desk
            .category(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The agency's name from the config, or its id when it is no longer configured.
    pub fn agency_name(&self, id: &str) -> String {
        self.cfg
            .desk
            .agency(id)
            .map(|a| a.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// `{public_url}/track/{ticket}`, when the desk knows its public address.
    pub fn track_url(&self, ticket: &str) -> Option<String> {
        self.cfg
            .desk
            .public_url
            .as_ref()
            .map(|u| format!("{}/track/{ticket}", u.trim_end_matches('/')))
    }
}
