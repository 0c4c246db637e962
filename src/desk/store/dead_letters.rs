//! The `dead_letters` table: incident messages that failed a check, with the reason. Bounded:
//! a payload is kept up to `desk.mqtt.dead_letter_keep_bytes` (the reason says when it was
//! cut; `size` is the whole message's), and rows go after `dead_letter_keep_days` or beyond the
//! newest `dead_letter_max_rows`, so a flood of bad messages cannot fill the disk.

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

/// Longest topic kept (topics come from the broker, which allows 64 KiB).
const MAX_TOPIC: usize = 512;

/// Stores a message that failed a check, its payload cut to `keep_bytes`.
pub async fn insert_dead_letter(
    c: &mut AnyConnection,
    at: i64,
    topic: &str,
    payload: &[u8],
    reason: &str,
    keep_bytes: usize,
) -> Result<(), StoreError> {
    let kept = &payload[..payload.len().min(keep_bytes)];
    let reason = if kept.len() < payload.len() {
        format!(
            "{reason} [payload cut: {} of {} bytes kept]",
            kept.len(),
            payload.len()
        )
    } else {
        reason.to_string()
    };
    let topic: String = topic.chars().take(MAX_TOPIC).collect();
    sqlx::query(
        "INSERT INTO dead_letters (at, topic, payload, size, reason) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(topic)
    .bind(kept.to_vec())
    .bind(payload.len() as i64)
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Deletes dead letters stored before `before` (Unix seconds) and all but the newest
/// `keep_rows`. Returns how many went.
pub async fn prune_dead_letters(
    c: &mut AnyConnection,
    before: i64,
    keep_rows: u64,
) -> Result<u64, StoreError> {
    let keep = i64::try_from(keep_rows).unwrap_or(i64::MAX);
    let old = sqlx::query("DELETE FROM dead_letters WHERE at < $1")
        .bind(before)
        .execute(&mut *c)
        .await?
        .rows_affected();
    // The id of the newest row beyond the bound, if there is one; it and all older go.
    let over = sqlx::query(
        "DELETE FROM dead_letters WHERE id <= \
         (SELECT id FROM dead_letters ORDER BY id DESC LIMIT 1 OFFSET $1)",
    )
    .bind(keep)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(old + over)
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
