//! The JSON messages simpang publishes (docs/mqtt.md, schemas/*.schema.json): incident
//! messages are the shared [`IncidentMessage`] of `model`; status and counts are defined here.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::lifecycle::Emit;
use super::text::{texts, TextInput};
use crate::config::{Config, Site};
use crate::model::{
    CountsReport, Evidence, Incident, IncidentMessage, LineCounts, Point, SiteId, Snapshot, ZoneId,
    ZoneTraffic, INCIDENT_SCHEMA,
};
use crate::time::Timezone;

/// Schema tag of status messages.
pub const STATUS_SCHEMA: &str = "simpang.status/1";
/// Schema tag of counts messages.
pub const COUNTS_SCHEMA: &str = "simpang.counts/1";

/// What a message needs to know about its site, taken from the config once.
#[derive(Clone, Debug)]
pub struct SiteInfo {
    pub id: SiteId,
    pub name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    pub camera: String,
    /// Zone id -> (name, polygon).
    pub zones: HashMap<String, (String, Vec<Point>)>,
}

impl SiteInfo {
    pub fn from_site(s: &Site) -> Self {
        Self {
            id: s.id.clone(),
            name: s.name.clone(),
            address: s.address.clone(),
            lat: s.lat,
            lon: s.lon,
            camera: s.camera_id().to_string(),
            zones: s
                .zones
                .iter()
                .map(|z| {
                    let poly = z
                        .polygon
                        .iter()
                        .map(|p| Point::new(p[0] as f32, p[1] as f32))
                        .collect();
                    (z.id.clone(), (z.name.clone(), poly))
                })
                .collect(),
        }
    }

    pub fn all(cfg: &Config) -> HashMap<SiteId, SiteInfo> {
        cfg.sites
            .iter()
            .map(|s| (s.id.clone(), SiteInfo::from_site(s)))
            .collect()
    }

    pub fn zone_name(&self, zone: Option<&str>) -> Option<String> {
        let z = zone?;
        Some(
            self.zones
                .get(z)
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| z.to_string()),
        )
    }
}

/// Local time as messages write it: the city's zone (from the config), to the millisecond.
#[derive(Clone, Copy, Debug)]
pub struct LocalTime {
    pub tz: Timezone,
}

impl LocalTime {
    /// `t` in local time, to the millisecond (the precision of incident ids).
    pub fn at(&self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        use chrono::SubsecRound;
        self.tz.local(t.trunc_subsecs(3))
    }

    /// "WIB" for Asia/Jakarta; the numeric offset where the zone has no Indonesian letters.
    pub fn abbrev(&self, t: DateTime<Utc>) -> String {
        self.tz.abbrev(t)
    }
}

/// Builds the incident message of one lifecycle decision.
pub fn incident_message(
    emit: &Emit,
    evidence: &Evidence,
    site: &SiteInfo,
    local: &LocalTime,
    snapshot: Option<Snapshot>,
) -> IncidentMessage {
    let zone = emit.key.zone.as_ref().map(ZoneId::to_string);
    let zone_name = site.zone_name(zone.as_deref());
    let tz_abbrev = local.abbrev(emit.at);
    let tx = texts(&TextInput {
        kind: emit.key.kind,
        event: emit.event,
        level: emit.level,
        site_name: &site.name,
        camera: &site.camera,
        zone_name: zone_name.as_deref(),
        evidence,
        started_at: local.at(emit.started_at),
        at: local.at(emit.at),
        tz_abbrev: &tz_abbrev,
        end_reason: emit.end_reason,
        resumed: emit.resumed,
    });
    IncidentMessage {
        schema: INCIDENT_SCHEMA.to_string(),
        event: emit.event,
        incident: Incident {
            id: emit.id.clone(),
            seq: emit.seq,
            site: site.id.to_string(),
            site_name: site.name.clone(),
            camera: site.camera.clone(),
            kind: emit.key.kind,
            level: emit.level,
            title: tx.title,
            title_en: tx.title_en,
            description: tx.description,
            description_en: tx.description_en,
            address: site.address.clone(),
            lat: site.lat,
            lon: site.lon,
            zone,
            zone_name,
            started_at: local.at(emit.started_at),
            updated_at: local.at(emit.at),
            ended_at: emit.ended_at.map(|t| local.at(t)),
            evidence: evidence.clone(),
            snapshot,
        },
    }
}

/// Whether the site's producer is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteState {
    Online,
    Offline,
}

/// Why the status is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusReason {
    /// Published by the running producer (on connect and when the camera changes).
    Running,
    /// Published by the producer as it stops cleanly.
    Shutdown,
    /// The connection's last will: the broker lost the producer without a clean stop.
    ConnectionLost,
}

/// Camera health as the producer sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraHealth {
    pub online: bool,
    /// When `online` last changed.
    pub since: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame_at: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One message on `simpang/v1/sites/{site}/status` (retained).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMessage {
    pub schema: String,
    pub site: String,
    pub site_name: String,
    pub camera: String,
    /// The MQTT client id of the producer's connection for this site.
    pub client_id: String,
    pub state: SiteState,
    pub reason: StatusReason,
    /// When the producer wrote the message. For the last will, the time the connection that
    /// registered it was opened (a will is fixed when the connection starts).
    pub at: DateTime<FixedOffset>,
    /// Absent in the last will (the broker cannot know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_health: Option<CameraHealth>,
    /// The `simpang run --node` node serving the site (absent outside a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// That node's lease on the site: its fencing token, larger for every later holder. Of two
    /// statuses of one site, the one with the smaller lease is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// The wall of the process serving the site (`wall.public_url`, else `http://{wall.listen}`):
    /// where every node's wall plays the site from (docs/deploy.md, "One wall for all nodes").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<String>,
}

/// Which cluster node serves a site, under which lease (src/cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub node: String,
    /// The lease's revision when the node acquired it (the fencing token).
    pub lease: u64,
}

/// One message on `simpang/v1/sites/{site}/counts`: a counting interval's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountsMessage {
    pub schema: String,
    pub site: String,
    pub site_name: String,
    pub camera: String,
    pub interval_s: u32,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    pub lines: Vec<LineCounts>,
    pub zones: Vec<ZoneTraffic>,
}

pub fn counts_message(r: &CountsReport, site: &SiteInfo, local: &LocalTime) -> CountsMessage {
    CountsMessage {
        schema: COUNTS_SCHEMA.to_string(),
        site: site.id.to_string(),
        site_name: site.name.clone(),
        camera: site.camera.clone(),
        interval_s: r.interval_s,
        start: local.at(r.start),
        end: local.at(r.end),
        lines: r.lines.clone(),
        zones: r.zones.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn local_time_abbrev() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let wib = LocalTime {
            tz: Timezone::JAKARTA,
        };
        assert_eq!(wib.abbrev(at), "WIB");
        assert_eq!(wib.at(at).to_rfc3339(), "2026-11-23T17:00:00+07:00");
        let dubai = LocalTime {
            tz: Timezone::parse("Asia/Dubai").unwrap(),
        };
        assert_eq!(dubai.abbrev(at), "UTC+04:00");
    }
}
