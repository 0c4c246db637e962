//! The public JSON endpoints: the SMS gateway's webhook, the citizen form (multipart) and the
//! tracker, with what the public may see of a report.

use axum::extract::{Multipart, Path, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{iso, ApiResult};
use crate::desk::auth::constant_time_eq;
use crate::desk::domain;
use crate::desk::queries::ReportView;
use crate::desk::web::form::read_report_form;
use crate::desk::web::{api_bad_request, ApiError, ApiJson, AppState, Client};
use crate::desk::{Desk, DeskError};

/// One incoming SMS as the gateway posts it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsIn {
    from: String,
    text: String,
}

pub async fn sms(
    State(desk): State<AppState>,
    headers: HeaderMap,
    body: Result<ApiJson<SmsIn>, Response>,
) -> ApiResult {
    match &desk.desk_config().sms_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or_default();
            if !constant_time_eq(given.trim(), token) {
                return Err(ApiError(DeskError::Unauthorized));
            }
        }
        // Without a token the desk listens on loopback only (checked at start), but a reverse
        // proxy on the same machine would still pass the world's requests on: those say so.
        None if ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .any(|h| headers.contains_key(*h)) =>
        {
            tracing::warn!("SMS webhook called through a proxy without [desk] sms_token; refused");
            return Err(ApiError(DeskError::Unauthorized));
        }
        None => {}
    }
    let ApiJson(m) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let (ticket, reply) = desk.workflow.handle_sms(&m.from, &m.text).await?;
    let status = if ticket.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "ticket": ticket, "reply": reply }))).into_response())
}

pub async fn report_submit(
    State(desk): State<AppState>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult {
    let mp = match mp {
        Ok(m) => m,
        Err(rej) => {
            return Ok(api_bad_request(
                rej.status(),
                format!("permintaan harus multipart/form-data: {}", rej.body_text()),
            ))
        }
    };
    let input = read_report_form(mp, desk.desk_config().max_photo_bytes)
        .await
        .map_err(|e| e.error)?;
    let created = desk.workflow.create_web_report(input).await?;
    let url = desk
        .labels
        .track_url(&created.ticket)
        .unwrap_or_else(|| format!("/track/{}", created.ticket));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ticket": created.ticket, "pin": created.pin, "track_url": url })),
    )
        .into_response())
}

/// Who wrote a message, as the public sees it: a role or an agency, never a person's name.
pub(crate) fn public_author(desk: &Desk, author_kind: &str, agency: Option<&str>) -> String {
    match author_kind {
        "reporter" => "Pelapor".into(),
        "agency" => agency
            .map(|a| desk.labels.agency_name(a))
            .unwrap_or_else(|| "OPD".into()),
        "operator" => "Operator Command Center".into(),
        _ => "Sistem".into(),
    }
}

/// The public view of a report: status, category, agency, times and answers. No phone, no
/// PIN, no description (it may carry the reporter's own details), no staff names.
pub(crate) fn track_json(desk: &Desk, v: &ReportView) -> Value {
    let r = &v.report;
    let now = desk.clock.now();
    let thread: Vec<Value> = v
        .messages
        .iter()
        .filter(|m| m.kind != "note")
        .map(|m| {
            json!({
                "at": iso(desk, Some(m.at)),
                "from": public_author(desk, &m.author_kind, m.author_agency.as_deref()),
                "kind": m.kind,
                "body": m.body,
            })
        })
        .collect();
    json!({
        "ticket": r.ticket,
        "status": v.status,
        "status_label": v.status.label(),
        "colour": v.status.colour(),
        "colour_label": v.status.colour().label(),
        "source": v.source,
        "category": r.category_id,
        "category_name": desk.labels.category_name(&r.category_id),
        "title": r.title,
        "address": r.address,
        "agency": r.agency_id,
        "agency_name": r.agency_id.as_deref().map(|a| desk.labels.agency_name(a)),
        "created_at": iso(desk, Some(r.created_at)),
        "verified_at": iso(desk, r.verified_at),
        "dispositioned_at": iso(desk, r.dispositioned_at),
        "due_at": iso(desk, r.due_at),
        "answered_at": iso(desk, r.answered_at),
        "closed_at": iso(desk, r.closed_at),
        "cleared_at": iso(desk, r.cleared_at),
        "overdue": domain::is_overdue(v.status, r.due_at, now),
        "merged_into": v.merged_into,
        "thread": thread,
    })
}

pub async fn track(State(desk): State<AppState>, Path(ticket): Path<String>) -> ApiResult {
    let v = desk.queries.report_for_public(&ticket).await?;
    Ok(Json(track_json(&desk, &v)).into_response())
}

/// `POST /api/track/{ticket}/confirm`: the reporter's verdict, with the PIN.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmIn {
    pin: String,
    satisfied: bool,
    #[serde(default)]
    text: String,
}

pub async fn track_confirm(
    State(desk): State<AppState>,
    Client(client): Client,
    Path(ticket): Path<String>,
    body: Result<ApiJson<ConfirmIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    desk.workflow
        .confirm_with_pin(&ticket, &b.pin, &client, b.satisfied, &b.text)
        .await?;
    let v = desk.queries.report_for_public(&ticket).await?;
    Ok(Json(track_json(&desk, &v)).into_response())
}

/// `POST /api/track/{ticket}/messages`: the reporter's message, with the PIN.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackMessageIn {
    pin: String,
    text: String,
}

pub async fn track_message(
    State(desk): State<AppState>,
    Client(client): Client,
    Path(ticket): Path<String>,
    body: Result<ApiJson<TrackMessageIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    desk.workflow
        .reporter_message(&ticket, &b.pin, &client, &b.text)
        .await?;
    let v = desk.queries.report_for_public(&ticket).await?;
    Ok((StatusCode::CREATED, Json(track_json(&desk, &v))).into_response())
}
