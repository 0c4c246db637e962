//! The `attachments` table: citizens' photos and camera snapshots, bytes in the database.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::reports::{list_reports, ReportFilter, ReportRow};
use super::StoreError;
use crate::desk::domain::Source;

/// An attachment without its bytes (listed with a report; the bytes load on their own).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AttachmentMeta {
    pub id: i64,
    pub report_id: i64,
    pub kind: String,
    pub content_type: String,
    pub sha256: String,
    pub width: i64,
    pub height: i64,
    pub created_at: i64,
}

/// An attachment about to be stored.
pub struct NewAttachment<'a> {
    pub report_id: i64,
    pub kind: &'a str,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: &'a [u8],
    pub at: i64,
}

pub async fn insert_attachment(
    c: &mut AnyConnection,
    a: &NewAttachment<'_>,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO attachments (report_id, kind, content_type, sha256, width, height, bytes, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(a.report_id)
    .bind(a.kind)
    .bind(a.content_type)
    .bind(a.sha256)
    .bind(i64::from(a.width))
    .bind(i64::from(a.height))
    .bind(a.bytes.to_vec())
    .bind(a.at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn attachments_of(
    c: &mut AnyConnection,
    report_id: i64,
) -> Result<Vec<AttachmentMeta>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, report_id, kind, content_type, sha256, width, height, created_at \
         FROM attachments WHERE report_id = $1 ORDER BY id",
    )
    .bind(report_id)
    .fetch_all(&mut *c)
    .await?)
}

pub async fn attachment_bytes(
    c: &mut AnyConnection,
    id: i64,
) -> Result<Option<(AttachmentMeta, Vec<u8>)>, StoreError> {
    let row = sqlx::query(
        "SELECT id, report_id, kind, content_type, sha256, width, height, created_at, bytes \
         FROM attachments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let meta = <AttachmentMeta as sqlx::FromRow<_>>::from_row(&row)?;
    let bytes: Vec<u8> = row.try_get("bytes")?;
    Ok(Some((meta, bytes)))
}

/// Keeps the first snapshot of a camera report (how it began) and drops the later ones, before
/// the newest is added: two pictures per incident however long it lasts.
pub async fn prune_snapshots(c: &mut AnyConnection, report_id: i64) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM attachments WHERE report_id = $1 AND kind = 'snapshot' AND id > \
         (SELECT MIN(id) FROM attachments WHERE report_id = $1 AND kind = 'snapshot')",
    )
    .bind(report_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Newest snapshot of each of the latest camera reports, for the live feed.
pub async fn latest_cctv(
    c: &mut AnyConnection,
    limit: i64,
    scope_agency: Option<&str>,
) -> Result<Vec<(ReportRow, Option<i64>)>, StoreError> {
    let mut f = ReportFilter {
        source: Some(Source::Cctv),
        limit,
        ..Default::default()
    };
    f.scope_agency = scope_agency.map(str::to_string);
    let (rows, _) = list_reports(c, &f).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let snap: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(id) FROM attachments WHERE report_id = $1 AND kind = 'snapshot'",
        )
        .bind(r.id)
        .fetch_one(&mut *c)
        .await?;
        out.push((r, snap));
    }
    Ok(out)
}
