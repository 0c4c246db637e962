//! The `reports` table: one row per report, its listings with their filters, and the
//! dashboard's aggregate.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::{Arg, Sql, StoreError};
use crate::desk::domain::{Source, Status};

/// One row of `reports`.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    pub ticket: String,
    pub source: String,
    pub status: String,
    pub category_id: String,
    pub title: String,
    pub description: String,
    pub address: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    #[serde(skip)]
    pub phone: Option<String>,
    #[serde(skip)]
    pub pin_hash: Option<String>,
    pub agency_id: Option<String>,
    pub operator_id: Option<i64>,
    pub officer_id: Option<i64>,
    pub merged_into: Option<i64>,
    pub reject_reason: Option<String>,
    pub incident_id: Option<String>,
    pub incident_seq: Option<i64>,
    pub incident_kind: Option<String>,
    pub level: Option<String>,
    pub site_id: Option<String>,
    pub site_name: Option<String>,
    pub camera: Option<String>,
    pub evidence: Option<String>,
    pub incident_started_at: Option<i64>,
    pub cleared_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub verified_at: Option<i64>,
    pub dispositioned_at: Option<i64>,
    pub due_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub closed_at: Option<i64>,
    #[serde(skip)]
    pub version: i64,
}

impl ReportRow {
    pub fn status(&self) -> Result<Status, StoreError> {
        self.status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("report {}: {e}", self.ticket)))
    }
    pub fn source(&self) -> Result<Source, StoreError> {
        self.source
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("report {}: {e}", self.ticket)))
    }

    /// A report just received, with nothing filled in yet but its ticket, source and time.
    pub fn blank(ticket: &str, source: Source, now: i64) -> ReportRow {
        ReportRow {
            id: 0,
            ticket: ticket.into(),
            source: source.as_str().into(),
            status: Status::Received.as_str().into(),
            category_id: String::new(),
            title: String::new(),
            description: String::new(),
            address: String::new(),
            lat: None,
            lon: None,
            phone: None,
            pin_hash: None,
            agency_id: None,
            operator_id: None,
            officer_id: None,
            merged_into: None,
            reject_reason: None,
            incident_id: None,
            incident_seq: None,
            incident_kind: None,
            level: None,
            site_id: None,
            site_name: None,
            camera: None,
            evidence: None,
            incident_started_at: None,
            cleared_at: None,
            created_at: now,
            updated_at: now,
            verified_at: None,
            dispositioned_at: None,
            due_at: None,
            answered_at: None,
            closed_at: None,
            version: 0,
        }
    }
}

const REPORT_COLUMNS: &str = "id, ticket, source, status, category_id, title, description, \
    address, lat, lon, phone, pin_hash, agency_id, operator_id, officer_id, merged_into, \
    reject_reason, incident_id, incident_seq, incident_kind, level, site_id, site_name, camera, \
    evidence, incident_started_at, cleared_at, created_at, updated_at, verified_at, \
    dispositioned_at, due_at, answered_at, closed_at, version";

pub async fn insert_report(c: &mut AnyConnection, r: &ReportRow) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO reports (ticket, source, status, category_id, title, description, address, \
         lat, lon, phone, pin_hash, agency_id, incident_id, incident_seq, incident_kind, level, \
         site_id, site_name, camera, evidence, incident_started_at, cleared_at, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21, $22, $23, $24) RETURNING id",
    )
    .bind(&r.ticket)
    .bind(&r.source)
    .bind(&r.status)
    .bind(&r.category_id)
    .bind(&r.title)
    .bind(&r.description)
    .bind(&r.address)
    .bind(r.lat)
    .bind(r.lon)
    .bind(&r.phone)
    .bind(&r.pin_hash)
    .bind(&r.agency_id)
    .bind(&r.incident_id)
    .bind(r.incident_seq)
    .bind(&r.incident_kind)
    .bind(&r.level)
    .bind(&r.site_id)
    .bind(&r.site_name)
    .bind(&r.camera)
    .bind(&r.evidence)
    .bind(r.incident_started_at)
    .bind(r.cleared_at)
    .bind(r.created_at)
    .bind(r.updated_at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Writes every mutable column if the row still has `version`; false when someone else
/// changed it first.
pub async fn update_report(c: &mut AnyConnection, r: &ReportRow) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE reports SET status = $1, category_id = $2, title = $3, description = $4, \
         address = $5, lat = $6, lon = $7, agency_id = $8, operator_id = $9, officer_id = $10, \
         merged_into = $11, reject_reason = $12, incident_seq = $13, level = $14, evidence = $15, \
         cleared_at = $16, updated_at = $17, verified_at = $18, dispositioned_at = $19, \
         due_at = $20, answered_at = $21, closed_at = $22, version = version + 1 \
         WHERE id = $23 AND version = $24",
    )
    .bind(&r.status)
    .bind(&r.category_id)
    .bind(&r.title)
    .bind(&r.description)
    .bind(&r.address)
    .bind(r.lat)
    .bind(r.lon)
    .bind(&r.agency_id)
    .bind(r.operator_id)
    .bind(r.officer_id)
    .bind(r.merged_into)
    .bind(&r.reject_reason)
    .bind(r.incident_seq)
    .bind(&r.level)
    .bind(&r.evidence)
    .bind(r.cleared_at)
    .bind(r.updated_at)
    .bind(r.verified_at)
    .bind(r.dispositioned_at)
    .bind(r.due_at)
    .bind(r.answered_at)
    .bind(r.closed_at)
    .bind(r.id)
    .bind(r.version)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn report_by_ticket(
    c: &mut AnyConnection,
    ticket: &str,
) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE ticket = $1"
    ))
    .bind(ticket)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn report_by_id(c: &mut AnyConnection, id: i64) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn report_by_incident(
    c: &mut AnyConnection,
    incident_id: &str,
) -> Result<Option<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE incident_id = $1"
    ))
    .bind(incident_id)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn ticket_exists(c: &mut AnyConnection, ticket: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE ticket = $1")
        .bind(ticket)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

/// Reports merged into `id`.
pub async fn merged_into(c: &mut AnyConnection, id: i64) -> Result<Vec<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE merged_into = $1 ORDER BY id"
    ))
    .bind(id)
    .fetch_all(&mut *c)
    .await?)
}

/// Which reports a listing shows.
#[derive(Clone, Debug, Default)]
pub struct ReportFilter {
    pub statuses: Vec<Status>,
    pub category: Option<String>,
    pub agency: Option<String>,
    pub source: Option<Source>,
    /// Words in the ticket, title, description or address.
    pub q: Option<String>,
    /// Only those past their SLA due time (needs `now`).
    pub overdue_at: Option<i64>,
    pub created_since: Option<i64>,
    /// Restricts to reports an agency has been sent (agency officers' view).
    pub scope_agency: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// `s` with LIKE's wildcards and the escape character itself escaped by `\\`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn apply_filter(sql: &mut Sql, f: &ReportFilter) {
    sql.push(" WHERE 1 = 1");
    if !f.statuses.is_empty() {
        sql.push(" AND status IN (");
        for (i, s) in f.statuses.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(s.as_str().into()));
        }
        sql.push(")");
    }
    if let Some(c) = &f.category {
        sql.push(" AND category_id = ").bind(Arg::Text(c.clone()));
    }
    if let Some(a) = &f.agency {
        sql.push(" AND agency_id = ").bind(Arg::Text(a.clone()));
    }
    if let Some(a) = &f.scope_agency {
        sql.push(" AND agency_id = ")
            .bind(Arg::Text(a.clone()))
            .push(" AND status IN ('dispositioned', 'answered', 'reopened', 'done')");
    }
    if let Some(s) = f.source {
        sql.push(" AND source = ")
            .bind(Arg::Text(s.as_str().into()));
    }
    if let Some(q) = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        // The words are matched literally: '%' and '_' typed by a person are not wildcards.
        let like = format!("%{}%", escape_like(&q.to_lowercase()));
        sql.push(" AND (");
        for (i, col) in ["ticket", "title", "description", "address"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push(&format!("LOWER({col}) LIKE "))
                .bind(Arg::Text(like.clone()))
                .push(" ESCAPE '\\'");
        }
        sql.push(")");
    }
    if let Some(now) = f.overdue_at {
        sql.push(" AND status IN ('dispositioned', 'reopened') AND due_at < ")
            .bind(Arg::Int(now));
    }
    if let Some(t) = f.created_since {
        sql.push(" AND created_at >= ").bind(Arg::Int(t));
    }
}

pub async fn list_reports(
    c: &mut AnyConnection,
    f: &ReportFilter,
) -> Result<(Vec<ReportRow>, i64), StoreError> {
    let mut count = Sql::new("SELECT COUNT(*) FROM reports");
    apply_filter(&mut count, f);
    let total: i64 = count.query().fetch_one(&mut *c).await?.try_get(0)?;
    let mut sql = Sql::new(&format!("SELECT {REPORT_COLUMNS} FROM reports"));
    apply_filter(&mut sql, f);
    if f.overdue_at.is_some() {
        sql.push(" ORDER BY due_at ASC, id ASC");
    } else {
        sql.push(" ORDER BY created_at DESC, id DESC");
    }
    sql.push(" LIMIT ")
        .bind(Arg::Int(f.limit.clamp(1, 500)))
        .push(" OFFSET ")
        .bind(Arg::Int(f.offset.max(0)));
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<ReportRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok((out, total))
}

/// One group of the dashboard aggregate.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StatRow {
    pub category_id: String,
    pub agency_id: Option<String>,
    pub status: String,
    pub n: i64,
    pub overdue: i64,
    pub on_time: i64,
    pub answered: i64,
}

pub async fn stats(
    c: &mut AnyConnection,
    now: i64,
    scope_agency: Option<&str>,
    since: Option<i64>,
) -> Result<Vec<StatRow>, StoreError> {
    let mut sql = Sql::new(
        "SELECT category_id, agency_id, status, COUNT(*) AS n, \
         COUNT(CASE WHEN status IN ('dispositioned', 'reopened') AND due_at < ",
    );
    sql.bind(Arg::Int(now)).push(
        " THEN 1 END) AS overdue, \
         COUNT(CASE WHEN answered_at IS NOT NULL AND due_at IS NOT NULL AND answered_at <= due_at \
         THEN 1 END) AS on_time, \
         COUNT(CASE WHEN answered_at IS NOT NULL THEN 1 END) AS answered \
         FROM reports WHERE 1 = 1",
    );
    if let Some(a) = scope_agency {
        sql.push(" AND agency_id = ")
            .bind(Arg::Text(a.into()))
            .push(" AND status IN ('dispositioned', 'answered', 'reopened', 'done')");
    }
    if let Some(t) = since {
        sql.push(" AND created_at >= ").bind(Arg::Int(t));
    }
    sql.push(" GROUP BY category_id, agency_id, status");
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<StatRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok(out)
}

/// Open reports a user is in charge of, as operator or as agency officer.
pub async fn open_items_of(
    c: &mut AnyConnection,
    user_id: i64,
) -> Result<Vec<ReportRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {REPORT_COLUMNS} FROM reports WHERE (operator_id = $1 OR officer_id = $1) \
         AND status NOT IN ('done', 'rejected', 'merged') ORDER BY id"
    ))
    .bind(user_id)
    .fetch_all(&mut *c)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_escapes() {
        let cases = [
            ("", ""),
            ("jalan", "jalan"),
            ("100%", "100\\%"),
            ("a_b", "a\\_b"),
            ("c:\\x", "c:\\\\x"),
            ("' OR 1=1 --", "' OR 1=1 --"),
        ];
        for (s, want) in cases {
            assert_eq!(escape_like(s), want, "{s:?}");
        }
    }
}
