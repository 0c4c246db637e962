//! The `status_outbox` table: status messages written in the same transaction as the change,
//! published to MQTT afterwards and marked when the broker acknowledges them.

use sqlx::{AnyConnection, AnyPool};

use super::StoreError;

pub async fn insert_outbox(
    c: &mut AnyConnection,
    at: i64,
    topic: &str,
    payload: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO status_outbox (at, topic, payload) VALUES ($1, $2, $3)")
        .bind(at)
        .bind(topic)
        .bind(payload)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// A status message waiting to be published.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub topic: String,
    pub payload: String,
}

pub async fn outbox_pending(
    pool: &AnyPool,
    after_id: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, topic, payload FROM status_outbox WHERE published_at IS NULL AND id > $1 \
         ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Drops published status messages older than `before` (they have served their purpose).
pub async fn outbox_prune(pool: &AnyPool, before: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "DELETE FROM status_outbox WHERE published_at IS NOT NULL AND published_at < $1",
    )
    .bind(before)
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn outbox_done(pool: &AnyPool, id: i64, at: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE status_outbox SET published_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
