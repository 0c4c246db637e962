//! The `messages` table: a report's thread (answers, chat, internal notes, system lines).

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::StoreError;

/// One line of a report's thread, with its staff author's name joined in.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub report_id: i64,
    pub at: i64,
    /// `reporter`, `operator`, `agency`, `system`.
    pub author_kind: String,
    #[serde(skip)]
    pub author_user_id: Option<i64>,
    /// `answer`, `chat`, `note` (staff only), `system`.
    pub kind: String,
    pub body: String,
    /// Display name of the staff author, joined in.
    #[serde(skip)]
    pub author_name: Option<String>,
    #[serde(skip)]
    pub author_agency: Option<String>,
}

pub async fn insert_message(
    c: &mut AnyConnection,
    report_id: i64,
    at: i64,
    author_kind: &str,
    author_user_id: Option<i64>,
    kind: &str,
    body: &str,
) -> Result<i64, StoreError> {
    let row = sqlx::query(
        "INSERT INTO messages (report_id, at, author_kind, author_user_id, kind, body) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(report_id)
    .bind(at)
    .bind(author_kind)
    .bind(author_user_id)
    .bind(kind)
    .bind(body)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub async fn messages_of(
    c: &mut AnyConnection,
    report_id: i64,
) -> Result<Vec<MessageRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT m.id, m.report_id, m.at, m.author_kind, m.author_user_id, m.kind, m.body, \
         u.display_name AS author_name, u.agency_id AS author_agency \
         FROM messages m LEFT JOIN users u ON u.id = m.author_user_id \
         WHERE m.report_id = $1 ORDER BY m.at, m.id",
    )
    .bind(report_id)
    .fetch_all(&mut *c)
    .await?)
}
