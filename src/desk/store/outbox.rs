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

/// Claims up to `limit` status messages for instance `me` until `until` (seconds) and returns
/// them oldest first. A message is claimable when nobody holds an unexpired claim on it and
/// every older message of the same topic is published, so one report's statuses go out in
/// order even when several desks drain one outbox. On PostgreSQL the candidates are locked
/// with `FOR UPDATE SKIP LOCKED`: two desks claiming at once take different rows instead of
/// waiting on each other; SQLite has one writer at a time anyway.
pub async fn outbox_claim(
    store: &super::Store,
    me: &str,
    now: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let lock = match store.backend() {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let mut rows: Vec<OutboxRow> = sqlx::query_as(&format!(
        "UPDATE status_outbox SET claimed_by = $1, claimed_until = $2 WHERE id IN ( \
         SELECT o.id FROM status_outbox o WHERE o.published_at IS NULL \
         AND (o.claimed_until IS NULL OR o.claimed_until < $3) \
         AND NOT EXISTS (SELECT 1 FROM status_outbox p WHERE p.topic = o.topic \
         AND p.published_at IS NULL AND p.id < o.id) \
         ORDER BY o.id LIMIT $4{lock}) RETURNING id, topic, payload"
    ))
    .bind(me)
    .bind(until)
    .bind(now)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Gives back `me`'s claims on unpublished messages (`ids`, or all of them): what a connection
/// that ended took but did not get acknowledged, for whichever desk publishes next.
pub async fn outbox_release(
    pool: &AnyPool,
    me: &str,
    ids: Option<&[i64]>,
) -> Result<u64, StoreError> {
    let base = "UPDATE status_outbox SET claimed_by = NULL, claimed_until = NULL \
                WHERE claimed_by = $1 AND published_at IS NULL";
    let mut n = 0;
    match ids {
        None => {
            n += sqlx::query(base)
                .bind(me)
                .execute(pool)
                .await?
                .rows_affected()
        }
        Some(ids) => {
            for id in ids {
                n += sqlx::query(&format!("{base} AND id = $2"))
                    .bind(me)
                    .bind(*id)
                    .execute(pool)
                    .await?
                    .rows_affected();
            }
        }
    }
    Ok(n)
}

/// Extends `me`'s claims on the messages it sent and waits to hear acknowledged.
pub async fn outbox_renew(pool: &AnyPool, me: &str, until: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE status_outbox SET claimed_until = $2 WHERE claimed_by = $1 AND published_at IS NULL",
    )
    .bind(me)
    .bind(until)
    .execute(pool)
    .await?
    .rows_affected())
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
