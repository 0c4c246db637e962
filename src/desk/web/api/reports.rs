//! Reports for staff: the filtered list, one report with everything around it, and the
//! workflow steps by name (shared with the pages' forms).

use axum::extract::{Path, Query, State};
use axum::http::header::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_csrf, iso, ApiResult};
use crate::desk::domain::{self, Colour, Source, Status};
use crate::desk::queries::ReportView;
use crate::desk::store::{ReportFilter, ReportRow};
use crate::desk::web::{ApiJson, ApiSession, AppState};
use crate::desk::workflow::satisfied_missing;
use crate::desk::{Desk, DeskError, FieldError, StaffUser};

/// Filters and page of the report list (`/reports`, `GET /api/reports`).
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct ListQuery {
    /// A status, a colour (`red`, `yellow`, `green`, `grey`) or `open`.
    pub status: Option<String>,
    pub category: Option<String>,
    pub agency: Option<String>,
    pub source: Option<String>,
    pub q: Option<String>,
    pub overdue: Option<String>,
    pub page: Option<i64>,
    pub limit: Option<i64>,
}

pub(crate) fn filter_of(desk: &Desk, q: &ListQuery) -> Result<ReportFilter, DeskError> {
    let bad = |field: &'static str, v: &str| {
        DeskError::Invalid(vec![FieldError {
            field,
            message: format!("nilai {v:?} tidak dikenal"),
        }])
    };
    let statuses = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Vec::new(),
        Some("open") => Status::ALL.into_iter().filter(|s| s.is_open()).collect(),
        Some(c @ ("red" | "yellow" | "green" | "grey")) => Status::ALL
            .into_iter()
            .filter(|s| s.colour().as_str() == c)
            .collect(),
        Some(s) => vec![s.parse::<Status>().map_err(|_| bad("status", s))?],
    };
    let nonempty = |o: &Option<String>| {
        o.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let category = nonempty(&q.category);
    if let Some(c) = &category {
        desk.desk_config()
            .category(c)
            .ok_or_else(|| bad("category", c))?;
    }
    let agency = nonempty(&q.agency);
    if let Some(a) = &agency {
        desk.desk_config()
            .agency(a)
            .ok_or_else(|| bad("agency", a))?;
    }
    let source = match nonempty(&q.source) {
        Some(s) => Some(s.parse::<Source>().map_err(|_| bad("source", &s))?),
        None => None,
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let page = q.page.unwrap_or(1).max(1);
    let overdue = matches!(q.overdue.as_deref(), Some("1" | "true" | "on"));
    Ok(ReportFilter {
        statuses,
        category,
        agency,
        source,
        q: nonempty(&q.q),
        overdue_at: overdue.then(|| desk.clock.now()),
        created_since: None,
        scope_agency: None,
        limit,
        offset: (page - 1) * limit,
    })
}

pub(crate) fn row_json(desk: &Desk, r: &ReportRow, phone_visible: bool) -> Value {
    let status: Option<Status> = r.status.parse().ok();
    let colour = status.map(|s| s.colour()).unwrap_or(Colour::Grey);
    json!({
        "ticket": r.ticket,
        "source": r.source,
        "status": r.status,
        "status_label": status.map(|s| s.label()),
        "colour": colour,
        "category": r.category_id,
        "category_name": desk.labels.category_name(&r.category_id),
        "title": r.title,
        "address": r.address,
        "phone": if phone_visible { r.phone.clone() } else { None },
        "agency": r.agency_id,
        "level": r.level,
        "site": r.site_id,
        "created_at": iso(desk, Some(r.created_at)),
        "due_at": iso(desk, r.due_at),
        "overdue": status.is_some_and(|s| domain::is_overdue(s, r.due_at, desk.clock.now())),
    })
}

pub async fn reports(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let f = filter_of(&desk, &q)?;
    let (page, limit) = (q.page.unwrap_or(1).max(1), f.limit);
    let (rows, total) = desk.queries.list(&s.user, f).await?;
    let sees = s.user.role.sees_contact();
    let items: Vec<Value> = rows.iter().map(|r| row_json(&desk, r, sees)).collect();
    Ok(
        Json(json!({ "total": total, "page": page, "limit": limit, "items": items }))
            .into_response(),
    )
}

pub(crate) fn report_json(desk: &Desk, v: &ReportView, user: &StaffUser) -> Value {
    let r = &v.report;
    let now = desk.clock.now();
    let incident = r.incident_id.as_ref().map(|id| {
        json!({
            "id": id,
            "seq": r.incident_seq,
            "kind": r.incident_kind,
            "level": r.level,
            "site": r.site_id,
            "site_name": r.site_name,
            "camera": r.camera,
            "evidence": r.evidence.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()),
            "started_at": iso(desk, r.incident_started_at),
            "cleared_at": iso(desk, r.cleared_at),
        })
    });
    let attachments: Vec<Value> = v
        .attachments
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "kind": a.kind, "content_type": a.content_type, "width": a.width,
                "height": a.height, "sha256": a.sha256, "url": format!("/attachments/{}", a.id),
                "at": iso(desk, Some(a.created_at)),
            })
        })
        .collect();
    let messages: Vec<Value> = v
        .messages
        .iter()
        .map(|m| {
            json!({
                "at": iso(desk, Some(m.at)), "author_kind": m.author_kind, "author": m.author_name,
                "kind": m.kind, "body": m.body,
            })
        })
        .collect();
    let audit: Vec<Value> = v
        .audit
        .iter()
        .map(|a| json!({
            "at": iso(desk, Some(a.at)), "actor": a.actor, "action": a.action,
            "before": a.before_json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
            "after": a.after_json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
        }))
        .collect();
    json!({
        "ticket": r.ticket,
        "source": v.source,
        "status": v.status,
        "status_label": v.status.label(),
        "colour": v.status.colour(),
        "category": r.category_id,
        "category_name": desk.labels.category_name(&r.category_id),
        "sla_hours": desk.desk_config().category(&r.category_id).map(|c| c.sla_hours),
        "title": r.title,
        "description": r.description,
        "address": r.address,
        "lat": r.lat,
        "lon": r.lon,
        "phone": if user.role.sees_contact() { r.phone.clone() } else { None },
        "agency": r.agency_id,
        "agency_name": r.agency_id.as_deref().map(|a| desk.labels.agency_name(a)),
        "operator": v.operator,
        "officer": v.officer,
        "reject_reason": r.reject_reason,
        "merged_into": v.merged_into,
        "merged": v.merged.iter().map(|m| m.ticket.clone()).collect::<Vec<_>>(),
        "incident": incident,
        "created_at": iso(desk, Some(r.created_at)),
        "updated_at": iso(desk, Some(r.updated_at)),
        "verified_at": iso(desk, r.verified_at),
        "dispositioned_at": iso(desk, r.dispositioned_at),
        "due_at": iso(desk, r.due_at),
        "answered_at": iso(desk, r.answered_at),
        "closed_at": iso(desk, r.closed_at),
        "overdue": domain::is_overdue(v.status, r.due_at, now),
        "attachments": attachments,
        "messages": messages,
        "audit": audit,
    })
}

pub async fn report(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    Path(ticket): Path<String>,
) -> ApiResult {
    let v = desk.queries.report_for_staff(&s.user, &ticket).await?;
    Ok(Json(report_json(&desk, &v, &s.user)).into_response())
}

/// The fields any workflow step may take (each step reads its own).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct ActionIn {
    pub category: Option<String>,
    pub reason: Option<String>,
    pub into: Option<String>,
    pub agency: Option<String>,
    pub note: Option<String>,
    pub text: Option<String>,
    pub satisfied: Option<bool>,
    pub internal: Option<bool>,
}

/// One workflow step by name, shared by the pages and the API.
pub(crate) async fn do_action(
    desk: &Desk,
    user: &StaffUser,
    ticket: &str,
    action: &str,
    a: ActionIn,
) -> Result<(), DeskError> {
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    match action {
        "verify" => desk
            .workflow
            .verify(user, ticket, a.category.as_deref())
            .await
            .map(drop),
        "reject" => desk
            .workflow
            .reject(user, ticket, &s(&a.reason))
            .await
            .map(drop),
        "merge" => desk
            .workflow
            .merge(user, ticket, &s(&a.into))
            .await
            .map(drop),
        "disposition" => desk
            .workflow
            .disposition(
                user,
                ticket,
                &s(&a.agency),
                a.category.as_deref(),
                a.note.as_deref(),
            )
            .await
            .map(drop),
        "answer" => desk
            .workflow
            .answer(user, ticket, &s(&a.text))
            .await
            .map(drop),
        "confirm" => {
            let satisfied = a.satisfied.ok_or_else(satisfied_missing)?;
            desk.workflow
                .confirm_cctv(user, ticket, satisfied, &s(&a.text))
                .await
                .map(drop)
        }
        "messages" | "message" => {
            desk.workflow
                .staff_message(user, ticket, &s(&a.text), a.internal.unwrap_or(false))
                .await
        }
        "claim" => desk.workflow.claim(user, ticket).await.map(drop),
        _ => Err(DeskError::NotFound),
    }
}

pub async fn report_action(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    headers: HeaderMap,
    Path((ticket, action)): Path<(String, String)>,
    body: Result<ApiJson<ActionIn>, Response>,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    let ApiJson(a) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    do_action(&desk, &s.user, &ticket, &action, a).await?;
    let v = desk.queries.report_for_staff(&s.user, &ticket).await?;
    Ok(Json(report_json(&desk, &v, &s.user)).into_response())
}
