//! Camera incidents into reports. One message on `simpang/v1/sites/{site}/incidents` is checked
//! whole before anything is stored; a message that fails any check lands in the dead-letter
//! table with the reason, and the report is left as it was.
//!
//! Idempotent by incident id: the first message creates the report (whatever its event, in
//! case the desk missed the `new`), later ones with a higher `seq` update it, and a repeated or
//! older `seq` (a QoS 1 redelivery, an out-of-order retry) changes nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine;

use super::core::{Actor, DeskCore};
use super::domain::Source;
use super::error::DeskError;
use super::photo::{self, sha256_hex};
use super::store::{self, ReportRow};
use crate::model::{IncidentEvent, IncidentMessage, INCIDENT_SCHEMA};

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntakeOutcome {
    Created(String),
    Updated(String),
    Ended(String),
    /// A `seq` no newer than the one stored: nothing changed.
    Stale(String),
    /// Stored in the dead-letter table with this reason.
    DeadLetter(String),
}

impl IntakeOutcome {
    pub fn ticket(&self) -> Option<&str> {
        match self {
            IntakeOutcome::Created(t)
            | IntakeOutcome::Updated(t)
            | IntakeOutcome::Ended(t)
            | IntakeOutcome::Stale(t) => Some(t),
            IntakeOutcome::DeadLetter(_) => None,
        }
    }
}

/// A snapshot that passed its checks.
struct Snapshot {
    info: photo::ImageInfo,
    bytes: Vec<u8>,
    sha256: String,
}

/// An incident message that passed every check, ready to store.
struct Checked {
    msg: IncidentMessage,
    snapshot: Option<Snapshot>,
    category: String,
}

/// Longest incident id kept; longer ones are refused rather than cut (ids must match exactly).
const MAX_ID: usize = 200;

/// Camera incidents into reports. Fed by the MQTT subscriber ([`super::mqtt::run_intake`]),
/// which also keeps [`Intake::subscribed`] up to date.
pub struct Intake {
    core: Arc<DeskCore>,
    /// The incident subscription is in place on a live broker connection.
    up: AtomicBool,
}

impl Intake {
    pub fn new(core: Arc<DeskCore>) -> Self {
        Self {
            core,
            up: AtomicBool::new(false),
        }
    }

    /// True while the desk is subscribed to incidents on a connected broker.
    pub fn subscribed(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_subscribed(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    fn check_incident(&self, topic: &str, payload: &[u8]) -> Result<Checked, String> {
        let max = self.core.cfg.desk.mqtt.max_message_bytes;
        if payload.len() > max {
            return Err(format!("message of {} bytes exceeds {max}", payload.len()));
        }
        let value: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("malformed JSON: {e}"))?;
        if let Some(s) = value.get("schema").and_then(|s| s.as_str()) {
            if s != INCIDENT_SCHEMA {
                return Err(format!(
                    "unknown schema {s:?} (expected {INCIDENT_SCHEMA:?})"
                ));
            }
        }
        let msg: IncidentMessage = serde_json::from_value(value)
            .map_err(|e| format!("not a {INCIDENT_SCHEMA} message: {e}"))?;
        let inc = &msg.incident;
        if inc.id.trim().is_empty() || inc.id.len() > MAX_ID {
            return Err(format!("incident id must be 1 to {MAX_ID} characters"));
        }
        if inc.site.trim().is_empty() {
            return Err("incident.site is empty".into());
        }
        let parts: Vec<&str> = topic.split('/').collect();
        if let [.., "sites", site, "incidents"] = parts.as_slice() {
            if *site != inc.site {
                return Err(format!(
                    "topic site {site:?} differs from incident.site {:?}",
                    inc.site
                ));
            }
        }
        if inc.title.trim().is_empty() {
            return Err("incident.title is empty".into());
        }
        let lat_ok = inc.lat.is_finite() && (-90.0..=90.0).contains(&inc.lat);
        let lon_ok = inc.lon.is_finite() && (-180.0..=180.0).contains(&inc.lon);
        if !(lat_ok && lon_ok) {
            return Err(format!(
                "coordinates ({}, {}) out of range",
                inc.lat, inc.lon
            ));
        }
        let snapshot = match &inc.snapshot {
            None => None,
            Some(s) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.data_base64.as_bytes())
                    .map_err(|e| format!("snapshot is not base64: {e}"))?;
                let info = photo::sniff(&bytes).map_err(|e| format!("snapshot: {e}"))?;
                let sha256 = sha256_hex(&bytes);
                if !sha256.eq_ignore_ascii_case(s.sha256.trim()) {
                    return Err(format!(
                        "snapshot sha256 {} does not match its bytes ({sha256})",
                        s.sha256
                    ));
                }
                Some(Snapshot {
                    info,
                    bytes,
                    sha256,
                })
            }
        };
        let category = self
            .core
            .cfg
            .desk
            .incident_categories
            .for_kind(inc.kind)
            .to_string();
        Ok(Checked {
            msg,
            snapshot,
            category,
        })
    }

    /// Applies one incident message (from MQTT, or a test). Errors are storage failures only;
    /// a bad message is an `Ok(DeadLetter)`.
    pub async fn apply_incident(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<IntakeOutcome, DeskError> {
        let checked = match self.check_incident(topic, payload) {
            Ok(c) => c,
            Err(reason) => {
                tracing::warn!(topic, %reason, "incident message dead-lettered");
                let mut tx = self.core.store.begin().await?;
                store::insert_dead_letter(&mut tx, self.core.clock.now(), topic, payload, &reason)
                    .await?;
                tx.commit().await?;
                return Ok(IntakeOutcome::DeadLetter(reason));
            }
        };
        let inc = &checked.msg.incident;
        let event = checked.msg.event;
        let now = self.core.clock.now();
        let mut tx = self.core.store.begin().await?;
        let existing = store::report_by_incident(&mut tx, &inc.id).await?;
        let evidence = serde_json::to_string(&inc.evidence).ok();
        let cleared = match event {
            IncidentEvent::End => Some(inc.ended_at.unwrap_or(inc.updated_at).timestamp()),
            _ => None,
        };
        let (report, outcome, feed) = match existing {
            Some(before) if before.incident_seq.unwrap_or(-1) >= i64::from(inc.seq) => {
                tracing::debug!(incident = %inc.id, seq = inc.seq, "stale incident message ignored");
                return Ok(IntakeOutcome::Stale(before.ticket));
            }
            Some(before) => {
                let mut r = before.clone();
                r.incident_seq = Some(i64::from(inc.seq));
                r.level = Some(inc.level.as_str().to_string());
                r.evidence = evidence;
                r.title = inc.title.clone();
                r.description = inc.description.clone();
                if cleared.is_some() {
                    r.cleared_at = cleared;
                }
                let action = if event == IncidentEvent::End {
                    "incident_end"
                } else {
                    "incident_update"
                };
                self.core
                    .save(&mut tx, &Actor::Mqtt, action, &before, &mut r)
                    .await?;
                if let Some(t) = cleared.filter(|_| before.cleared_at.is_none()) {
                    let when = self.core.labels.local(t).format("%d/%m/%Y %H:%M");
                    store::insert_message(
                        &mut tx,
                        r.id,
                        now,
                        "system",
                        None,
                        "system",
                        &format!("Kamera: kondisi sudah kembali normal sejak {when}."),
                    )
                    .await?;
                }
                let t = r.ticket.clone();
                let (o, f) = if event == IncidentEvent::End {
                    (IntakeOutcome::Ended(t), "incident_end")
                } else {
                    (IntakeOutcome::Updated(t), "incident_update")
                };
                (r, o, f)
            }
            None => {
                let r = self
                    .create_cctv(&mut tx, &checked, evidence, cleared, now)
                    .await?;
                let t = r.ticket.clone();
                (r, IntakeOutcome::Created(t), "incident_new")
            }
        };
        let mut snap_id = None;
        if let Some(s) = &checked.snapshot {
            if !matches!(outcome, IntakeOutcome::Created(_)) {
                store::prune_snapshots(&mut tx, report.id).await?;
            }
            snap_id = Some(
                store::insert_attachment(
                    &mut tx,
                    &store::NewAttachment {
                        report_id: report.id,
                        kind: "snapshot",
                        content_type: s.info.content_type,
                        sha256: &s.sha256,
                        width: s.info.width,
                        height: s.info.height,
                        bytes: &s.bytes,
                        at: now,
                    },
                )
                .await?,
            );
        }
        tx.commit().await?;
        tracing::info!(incident = %inc.id, seq = inc.seq, ticket = %report.ticket, event = event.as_str(), "incident applied");
        self.core.after_commit(feed, &report, snap_id);
        Ok(outcome)
    }

    async fn create_cctv(
        &self,
        tx: &mut store::Tx,
        c: &Checked,
        evidence: Option<String>,
        cleared: Option<i64>,
        now: i64,
    ) -> Result<ReportRow, DeskError> {
        let inc = &c.msg.incident;
        let ticket = self.core.new_ticket(tx).await?;
        let mut r = ReportRow::blank(&ticket, Source::Cctv, now);
        r.category_id = c.category.clone();
        r.title = inc.title.clone();
        r.description = inc.description.clone();
        r.address = if inc.address.trim().is_empty() {
            self.core
                .cfg
                .site(&inc.site)
                .map(|s| s.address.clone())
                .unwrap_or_default()
        } else {
            inc.address.clone()
        };
        r.lat = Some(inc.lat);
        r.lon = Some(inc.lon);
        r.incident_id = Some(inc.id.clone());
        r.incident_seq = Some(i64::from(inc.seq));
        r.incident_kind = Some(inc.kind.as_str().into());
        r.level = Some(inc.level.as_str().to_string());
        r.site_id = Some(inc.site.clone());
        r.site_name = Some(inc.site_name.clone());
        r.camera = Some(inc.camera.clone());
        r.evidence = evidence;
        r.incident_started_at = Some(inc.started_at.timestamp());
        r.cleared_at = cleared;
        let facts = [("snapshot", c.snapshot.is_some().into())];
        self.core
            .insert_new(tx, &Actor::Mqtt, &mut r, &facts)
            .await?;
        Ok(r)
    }
}
