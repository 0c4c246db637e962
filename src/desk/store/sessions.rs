//! The `sessions` table: signed-in staff, by the SHA-256 of their cookie's token.

use sqlx::{AnyConnection, Row};

use super::users::UserRow;
use super::StoreError;

pub async fn insert_session(
    c: &mut AnyConnection,
    token_hash: &str,
    user_id: i64,
    csrf: &str,
    at: i64,
    expires_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(csrf)
    .bind(at)
    .bind(expires_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The live session with this token hash and its (active) user.
pub async fn session(
    c: &mut AnyConnection,
    token_hash: &str,
    now: i64,
) -> Result<Option<(UserRow, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT u.id, u.username, u.display_name, u.role, u.agency_id, u.password_hash, \
         u.active, u.created_at, u.deactivated_at, s.csrf FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active = 1",
    )
    .bind(token_hash)
    .bind(now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let user = <UserRow as sqlx::FromRow<_>>::from_row(&row)?;
    let csrf: String = row.try_get("csrf")?;
    Ok(Some((user, csrf)))
}

pub async fn delete_session(c: &mut AnyConnection, token_hash: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_sessions_of(c: &mut AnyConnection, user_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn purge_sessions(c: &mut AnyConnection, now: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *c)
        .await?
        .rows_affected())
}
