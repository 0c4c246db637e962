//! The `audit_log` table: who changed what, when, before → after.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{Arg, Sql, StoreError};

/// One audit entry; `before_json` / `after_json` hold the changed fields only.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert_audit(
    c: &mut AnyConnection,
    at: i64,
    actor_id: Option<i64>,
    actor: &str,
    action: &str,
    entity: &str,
    entity_id: &str,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor, action, entity, entity_id, before_json, \
         after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(at)
    .bind(actor_id)
    .bind(actor)
    .bind(action)
    .bind(entity)
    .bind(entity_id)
    .bind(before)
    .bind(after)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Whether any entry records `action`.
pub async fn audit_has_action(c: &mut AnyConnection, action: &str) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(&mut *c)
        .await?;
    Ok(n > 0)
}

pub async fn audit_list(
    c: &mut AnyConnection,
    entity: Option<(&str, &str)>,
    limit: i64,
    offset: i64,
) -> Result<Vec<AuditRow>, StoreError> {
    let mut sql = Sql::new(
        "SELECT id, at, actor_id, actor, action, entity, entity_id, before_json, after_json \
         FROM audit_log",
    );
    if let Some((e, id)) = entity {
        sql.push(" WHERE entity = ")
            .bind(Arg::Text(e.into()))
            .push(" AND entity_id = ")
            .bind(Arg::Text(id.into()));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(Arg::Int(limit.clamp(1, 1000)))
        .push(" OFFSET ")
        .bind(Arg::Int(offset.max(0)));
    let rows = sql.query().fetch_all(&mut *c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(<AuditRow as sqlx::FromRow<_>>::from_row(r)?);
    }
    Ok(out)
}
