//! The `dead_letters` table: incident messages that failed a check, kept whole with the reason.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::StoreError;

/// A dead-lettered message as staff see it listed.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeadLetterRow {
    pub id: i64,
    pub at: i64,
    pub topic: String,
    pub size: i64,
    pub reason: String,
    /// The first bytes of the payload, as text (lossy), for the operator's eye.
    pub preview: String,
}

pub async fn insert_dead_letter(
    c: &mut AnyConnection,
    at: i64,
    topic: &str,
    payload: &[u8],
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dead_letters (at, topic, payload, size, reason) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(topic)
    .bind(payload.to_vec())
    .bind(payload.len() as i64)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn dead_letters(
    c: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<DeadLetterRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, at, topic, size, reason, payload FROM dead_letters ORDER BY id DESC LIMIT $1",
    )
    .bind(limit.clamp(1, 1000))
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let payload: Vec<u8> = r.try_get("payload")?;
        let head = &payload[..payload.len().min(300)];
        out.push(DeadLetterRow {
            id: r.try_get("id")?,
            at: r.try_get("at")?,
            topic: r.try_get("topic")?,
            size: r.try_get("size")?,
            reason: r.try_get("reason")?,
            preview: String::from_utf8_lossy(head).into_owned(),
        });
    }
    Ok(out)
}
