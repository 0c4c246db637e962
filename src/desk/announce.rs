//! What the desk tells others once a change is committed: the status message for MQTT (written
//! to the outbox in the change's own transaction, published by [`super::mqtt`]) and the event
//! for the dashboards' live feed.

use serde::Serialize;

use super::domain::{self, Colour, Source, Status};
use super::labels::Labels;
use super::store::{ReportRow, StoreError};

/// Schema tag of [`StatusMessage`].
pub const STATUS_SCHEMA: &str = "simpang.desk.status/1";

/// The message published on `{status_topic_prefix}/{ticket}/status`
/// (`crate::incident::topics::desk_report_status`).
#[derive(Clone, Debug, Serialize)]
pub struct StatusMessage {
    pub schema: &'static str,
    pub ticket: String,
    pub status: Status,
    pub status_label: &'static str,
    pub colour: Colour,
    pub source: Source,
    pub category: String,
    pub agency: Option<String>,
    pub incident_id: Option<String>,
    pub due_at: Option<String>,
    pub overdue: bool,
    pub at: String,
}

impl StatusMessage {
    /// The message for `r` as it is at `now`.
    pub fn of(r: &ReportRow, labels: &Labels, now: i64) -> Result<Self, StoreError> {
        let status = r.status()?;
        Ok(StatusMessage {
            schema: STATUS_SCHEMA,
            ticket: r.ticket.clone(),
            status,
            status_label: status.label(),
            colour: status.colour(),
            source: r.source()?,
            category: r.category_id.clone(),
            agency: r.agency_id.clone(),
            incident_id: r.incident_id.clone(),
            due_at: r.due_at.map(|t| labels.local(t).to_rfc3339()),
            overdue: domain::is_overdue(status, r.due_at, now),
            at: labels.local(now).to_rfc3339(),
        })
    }
}

/// A change other pages want to hear about at once (the dashboard's live feed).
#[derive(Clone, Debug, Serialize)]
pub struct FeedEvent {
    /// `incident_new`, `incident_update`, `incident_end` or `status`.
    pub event: &'static str,
    pub ticket: String,
    pub title: String,
    pub source: Source,
    pub status: Status,
    pub status_label: &'static str,
    pub colour: Colour,
    pub category_name: String,
    pub site_name: Option<String>,
    pub level: Option<String>,
    pub at: i64,
    /// `at` as the desk shows times ("24 Nov 2026, 17.05 WIB").
    pub at_label: String,
    /// Snapshot attachment id, for `/attachments/{id}`.
    pub snapshot: Option<i64>,
    /// The agency the report is with (the feed is filtered per agency officer).
    pub agency_id: Option<String>,
}

impl FeedEvent {
    /// The event for `r` just committed; None for a row whose status or source is damaged.
    pub fn of(
        event: &'static str,
        r: &ReportRow,
        snapshot: Option<i64>,
        labels: &Labels,
    ) -> Option<Self> {
        let (Ok(status), Ok(source)) = (r.status(), r.source()) else {
            return None;
        };
        Some(FeedEvent {
            event,
            ticket: r.ticket.clone(),
            title: r.title.clone(),
            source,
            status,
            status_label: status.label(),
            colour: status.colour(),
            category_name: labels.category_name(&r.category_id),
            site_name: r.site_name.clone(),
            level: r.level.clone(),
            at: r.updated_at,
            at_label: labels.time(r.updated_at),
            snapshot,
            agency_id: r.agency_id.clone(),
        })
    }
}
