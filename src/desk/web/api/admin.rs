//! The Command Center's records and the admin's accounts: audit log, dead letters, users.

use axum::extract::{Path, Query, State};
use axum::http::header::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_csrf, iso, ApiResult};
use crate::desk::domain::Role;
use crate::desk::web::{ApiJson, ApiSession, AppState};
use crate::desk::{DeskError, FieldError};

/// Paging of the audit log and dead letters (`?limit=&offset=`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

pub async fn audit(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    Query(q): Query<PageQuery>,
) -> ApiResult {
    let rows = desk
        .queries
        .audit_log(&s.user, q.limit.unwrap_or(100), q.offset.unwrap_or(0))
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|a| json!({
            "at": iso(&desk, Some(a.at)), "actor": a.actor, "action": a.action, "entity": a.entity,
            "entity_id": a.entity_id,
            "before": a.before_json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
            "after": a.after_json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
        }))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn dead_letters(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    Query(q): Query<PageQuery>,
) -> ApiResult {
    let rows = desk
        .queries
        .dead_letters(&s.user, q.limit.unwrap_or(100))
        .await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|d| json!({ "id": d.id, "at": iso(&desk, Some(d.at)), "topic": d.topic, "size": d.size, "reason": d.reason, "preview": d.preview }))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

pub async fn users(State(desk): State<AppState>, ApiSession(s): ApiSession) -> ApiResult {
    let rows = desk.accounts.users(&s.user).await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

/// `POST /api/users`: a new account.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserIn {
    username: String,
    #[serde(default)]
    display_name: String,
    role: String,
    #[serde(default)]
    agency: Option<String>,
    password: String,
}

pub async fn user_create(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    headers: HeaderMap,
    body: Result<ApiJson<UserIn>, Response>,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let role: Role = b.role.parse().map_err(|_| {
        DeskError::Invalid(vec![FieldError {
            field: "role",
            message: format!(
                "peran {:?} tidak dikenal (admin, operator, agency, viewer)",
                b.role
            ),
        }])
    })?;
    let u = desk
        .accounts
        .create_user(
            Some(&s.user),
            &b.username,
            &b.display_name,
            role,
            b.agency.as_deref(),
            &b.password,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({ "user": u }))).into_response())
}

/// `POST /api/users/{name}/deactivate`: who takes over the open reports.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DeactivateIn {
    reassign_to: Option<String>,
}

pub async fn user_deactivate(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: Result<ApiJson<DeactivateIn>, Response>,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let n = desk
        .accounts
        .deactivate_user(&s.user, &username, b.reassign_to.as_deref())
        .await?;
    Ok(Json(json!({ "username": username, "active": false, "reassigned": n })).into_response())
}
