//! The `users` table: staff accounts.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::StoreError;
use crate::desk::domain::Role;

/// One staff account (`active` is 1 or 0; the hash never leaves the desk).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub agency_id: Option<String>,
    #[serde(skip)]
    pub password_hash: String,
    pub active: i64,
    pub created_at: i64,
    pub deactivated_at: Option<i64>,
}

impl UserRow {
    pub fn role(&self) -> Result<Role, StoreError> {
        self.role
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("user {}: {e}", self.username)))
    }
}

const USER_COLUMNS: &str =
    "id, username, display_name, role, agency_id, password_hash, active, created_at, deactivated_at";

pub async fn insert_user(
    c: &mut AnyConnection,
    username: &str,
    display_name: &str,
    role: Role,
    agency_id: Option<&str>,
    password_hash: &str,
    at: i64,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO users (username, display_name, role, agency_id, password_hash, active, \
         created_at) VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING id",
    )
    .bind(username)
    .bind(display_name)
    .bind(role.as_str())
    .bind(agency_id)
    .bind(password_hash)
    .bind(at)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn user_by_name(
    c: &mut AnyConnection,
    username: &str,
) -> Result<Option<UserRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(&mut *c)
    .await?)
}

pub async fn user_by_id(c: &mut AnyConnection, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(
        sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *c)
            .await?,
    )
}

pub async fn users(c: &mut AnyConnection) -> Result<Vec<UserRow>, StoreError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY active DESC, role, username"
    ))
    .fetch_all(&mut *c)
    .await?)
}

/// Every account's id and display name (a small table), for naming people in the audit trail.
pub async fn user_names(c: &mut AnyConnection) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(sqlx::query_as("SELECT id, display_name FROM users")
        .fetch_all(&mut *c)
        .await?)
}

pub async fn set_user_password(
    c: &mut AnyConnection,
    id: i64,
    hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn set_user_active(
    c: &mut AnyConnection,
    id: i64,
    active: bool,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET active = $1, deactivated_at = $2 WHERE id = $3")
        .bind(i64::from(active))
        .bind(if active { None } else { Some(at) })
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}
