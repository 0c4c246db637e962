//! The JSON API. Staff calls need the session cookie and, for changes, the session's CSRF token
//! in `X-CSRF-Token` (returned by `POST /api/login` and `GET /api/me`).

use std::convert::Infallible;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    api_bad_request, session_cookie, ApiError, ApiJson, ApiSession, AppState, Client, Session,
};
use crate::desk::auth::constant_time_eq;
use crate::desk::domain::{self, Colour, Role, Source, Status};
use crate::desk::service::{
    Desk, DeskError, FeedEvent, FieldError, NewReport, ReportView, StaffUser,
};
use crate::desk::store::{ReportFilter, ReportRow};

type ApiResult = Result<Response, ApiError>;

fn check_csrf(s: &Session, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if constant_time_eq(given, &s.csrf) {
        Ok(())
    } else {
        Err(ApiError(DeskError::Forbidden))
    }
}

pub(super) fn iso(desk: &Desk, t: Option<i64>) -> Option<String> {
    t.map(|t| desk.local(t).to_rfc3339())
}

// ------------------------------------------------------------------------------------------------
// Public: SMS gateway, citizen intake, tracker

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
    if let Some(token) = &desk.desk_config().sms_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.trim(), token) {
            return Err(ApiError(DeskError::Unauthorized));
        }
    }
    let ApiJson(m) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let (ticket, reply) = desk.handle_sms(&m.from, &m.text).await?;
    let status = if ticket.is_some() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "ticket": ticket, "reply": reply }))).into_response())
}

/// A citizen form that could not be taken, with what was read of it (to show it again).
pub(super) struct FormError {
    pub error: DeskError,
    pub partial: NewReport,
}

/// Reads the citizen form (multipart) into a report. A photo over the limit is read to the
/// end of the request (which the body limit keeps bounded) and dropped, so the client gets a
/// clean 413 instead of a connection cut mid-upload; the other fields are kept for the form.
pub(super) async fn read_report_form(
    mut mp: Multipart,
    max_photo: usize,
) -> Result<NewReport, FormError> {
    let mut r = NewReport::default();
    let mut errs: Vec<FieldError> = Vec::new();
    let mut lat = String::new();
    let mut lon = String::new();
    let mut too_large = false;
    let unreadable = |field: &'static str, e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            DeskError::TooLarge { max: max_photo }
        } else {
            DeskError::Invalid(vec![FieldError {
                field,
                message: format!("formulir tidak terbaca: {}", e.body_text()),
            }])
        }
    };
    loop {
        let mut field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return Err(FormError {
                    error: unreadable("form", e),
                    partial: r,
                })
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "photo" {
            let has_name = field.file_name().is_some_and(|n| !n.is_empty());
            let mut bytes = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        if too_large || bytes.len() + c.len() > max_photo {
                            too_large = true;
                            bytes = Vec::new();
                        } else {
                            bytes.extend_from_slice(&c);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        return Err(FormError {
                            error: unreadable("photo", e),
                            partial: r,
                        })
                    }
                }
            }
            // A file input left empty still sends a part, without a name or bytes.
            if !too_large && (has_name || !bytes.is_empty()) {
                r.photo = Some(bytes);
            }
            continue;
        }
        let text = match field.text().await {
            Ok(t) => t,
            Err(e) => {
                return Err(FormError {
                    error: unreadable("form", e),
                    partial: r,
                })
            }
        };
        match name.as_str() {
            "title" => r.title = text,
            "description" => r.description = text,
            "category" => r.category = text,
            "address" => r.address = text,
            "phone" => r.phone = Some(text).filter(|p| !p.trim().is_empty()),
            "lat" => lat = text,
            "lon" => lon = text,
            _ => {}
        }
    }
    let mut coord = |field: &'static str, s: &str| -> Option<f64> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        match s.replace(',', ".").parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => {
                errs.push(FieldError {
                    field,
                    message: format!("{s:?} bukan angka"),
                });
                Some(f64::NAN)
            }
        }
    };
    r.lat = coord("lat", &lat);
    r.lon = coord("lon", &lon);
    if too_large {
        return Err(FormError {
            error: DeskError::TooLarge { max: max_photo },
            partial: r,
        });
    }
    if !errs.is_empty() {
        return Err(FormError {
            error: DeskError::Invalid(errs),
            partial: r,
        });
    }
    Ok(r)
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
    let created = desk.create_web_report(input).await?;
    let url = desk
        .track_url(&created.ticket)
        .unwrap_or_else(|| format!("/track/{}", created.ticket));
    Ok((
        StatusCode::CREATED,
        Json(json!({ "ticket": created.ticket, "pin": created.pin, "track_url": url })),
    )
        .into_response())
}

/// Who wrote a message, as the public sees it: a role or an agency, never a person's name.
pub(super) fn public_author(desk: &Desk, author_kind: &str, agency: Option<&str>) -> String {
    match author_kind {
        "reporter" => "Pelapor".into(),
        "agency" => agency
            .map(|a| desk.agency_name(a))
            .unwrap_or_else(|| "OPD".into()),
        "operator" => "Operator Command Center".into(),
        _ => "Sistem".into(),
    }
}

/// The public view of a report: status, category, agency, times and answers. No phone, no
/// PIN, no description (it may carry the reporter's own details), no staff names.
pub(super) fn track_json(desk: &Desk, v: &ReportView) -> Value {
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
        "category_name": desk.category_name(&r.category_id),
        "title": r.title,
        "address": r.address,
        "agency": r.agency_id,
        "agency_name": r.agency_id.as_deref().map(|a| desk.agency_name(a)),
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
    let v = desk.report_for_public(&ticket).await?;
    Ok(Json(track_json(&desk, &v)).into_response())
}

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
    Path(ticket): Path<String>,
    body: Result<ApiJson<ConfirmIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    desk.confirm_with_pin(&ticket, &b.pin, b.satisfied, &b.text)
        .await?;
    let v = desk.report_for_public(&ticket).await?;
    Ok(Json(track_json(&desk, &v)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackMessageIn {
    pin: String,
    text: String,
}

pub async fn track_message(
    State(desk): State<AppState>,
    Path(ticket): Path<String>,
    body: Result<ApiJson<TrackMessageIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    desk.reporter_message(&ticket, &b.pin, &b.text).await?;
    let v = desk.report_for_public(&ticket).await?;
    Ok((StatusCode::CREATED, Json(track_json(&desk, &v))).into_response())
}

// ------------------------------------------------------------------------------------------------
// Sessions

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    username: String,
    password: String,
}

pub async fn login(
    State(desk): State<AppState>,
    Client(client): Client,
    body: Result<ApiJson<LoginIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let (token, csrf, user) = desk.login(&b.username, &b.password, &client).await?;
    let max_age = i64::from(desk.desk_config().session_hours) * 3600;
    let mut res = Json(json!({ "user": user, "csrf": csrf })).into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(
        &token,
        max_age,
        desk.desk_config().cookie_secure,
    )) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

pub async fn logout(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    headers: HeaderMap,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    desk.logout(&s.token).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie("", 0, desk.desk_config().cookie_secure)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

pub async fn me(ApiSession(s): ApiSession) -> ApiResult {
    Ok(Json(json!({ "user": s.user, "csrf": s.csrf })).into_response())
}

// ------------------------------------------------------------------------------------------------
// Staff: reading

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

pub(super) fn filter_of(desk: &Desk, q: &ListQuery) -> Result<ReportFilter, DeskError> {
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

pub(super) fn row_json(desk: &Desk, r: &ReportRow, phone_visible: bool) -> Value {
    let status: Option<Status> = r.status.parse().ok();
    let colour = status.map(|s| s.colour()).unwrap_or(Colour::Grey);
    json!({
        "ticket": r.ticket,
        "source": r.source,
        "status": r.status,
        "status_label": status.map(|s| s.label()),
        "colour": colour,
        "category": r.category_id,
        "category_name": desk.category_name(&r.category_id),
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
    let (rows, total) = desk.list(&s.user, f).await?;
    let sees = s.user.role.sees_contact();
    let items: Vec<Value> = rows.iter().map(|r| row_json(&desk, r, sees)).collect();
    Ok(
        Json(json!({ "total": total, "page": page, "limit": limit, "items": items }))
            .into_response(),
    )
}

pub(super) fn report_json(desk: &Desk, v: &ReportView, user: &StaffUser) -> Value {
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
        "category_name": desk.category_name(&r.category_id),
        "sla_hours": desk.desk_config().category(&r.category_id).map(|c| c.sla_hours),
        "title": r.title,
        "description": r.description,
        "address": r.address,
        "lat": r.lat,
        "lon": r.lon,
        "phone": if user.role.sees_contact() { r.phone.clone() } else { None },
        "agency": r.agency_id,
        "agency_name": r.agency_id.as_deref().map(|a| desk.agency_name(a)),
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
    let v = desk.report_for_staff(&s.user, &ticket).await?;
    Ok(Json(report_json(&desk, &v, &s.user)).into_response())
}

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
pub(super) async fn do_action(
    desk: &Desk,
    user: &StaffUser,
    ticket: &str,
    action: &str,
    a: ActionIn,
) -> Result<(), DeskError> {
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    match action {
        "verify" => desk
            .verify(user, ticket, a.category.as_deref())
            .await
            .map(drop),
        "reject" => desk.reject(user, ticket, &s(&a.reason)).await.map(drop),
        "merge" => desk.merge(user, ticket, &s(&a.into)).await.map(drop),
        "disposition" => desk
            .disposition(
                user,
                ticket,
                &s(&a.agency),
                a.category.as_deref(),
                a.note.as_deref(),
            )
            .await
            .map(drop),
        "answer" => desk.answer(user, ticket, &s(&a.text)).await.map(drop),
        "confirm" => {
            let satisfied = a.satisfied.ok_or_else(|| {
                DeskError::Invalid(vec![FieldError {
                    field: "satisfied",
                    message: "pilih puas atau belum puas".into(),
                }])
            })?;
            desk.confirm_cctv(user, ticket, satisfied, &s(&a.text))
                .await
                .map(drop)
        }
        "messages" | "message" => {
            desk.staff_message(user, ticket, &s(&a.text), a.internal.unwrap_or(false))
                .await
        }
        "claim" => desk.claim(user, ticket).await.map(drop),
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
    let v = desk.report_for_staff(&s.user, &ticket).await?;
    Ok(Json(report_json(&desk, &v, &s.user)).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DashQuery {
    /// `today`, `7d`, `30d` or `all` (default).
    pub period: Option<String>,
}

pub(super) fn since_of(desk: &Desk, period: Option<&str>) -> Option<i64> {
    let now = desk.clock.now();
    match period {
        Some("today") => {
            let local = desk.local(now);
            let midnight = local.date_naive().and_hms_opt(0, 0, 0)?;
            let offset = i64::from(local.offset().local_minus_utc());
            Some(midnight.and_utc().timestamp() - offset)
        }
        Some("7d") => Some(now - 7 * 86_400),
        Some("30d") => Some(now - 30 * 86_400),
        _ => None,
    }
}

pub async fn dashboard(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    Query(q): Query<DashQuery>,
) -> ApiResult {
    let d = desk
        .dashboard(&s.user, since_of(&desk, q.period.as_deref()))
        .await?;
    let overdue = desk.overdue(&s.user, 20).await?;
    let sees = s.user.role.sees_contact();
    let overdue: Vec<Value> = overdue.iter().map(|r| row_json(&desk, r, sees)).collect();
    let mut v = serde_json::to_value(&d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("overdue_reports".into(), overdue.into());
    }
    Ok(Json(v).into_response())
}

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
    let rows = desk.dead_letters(&s.user, q.limit.unwrap_or(100)).await?;
    let items: Vec<Value> = rows
        .iter()
        .map(|d| json!({ "id": d.id, "at": iso(&desk, Some(d.at)), "topic": d.topic, "size": d.size, "reason": d.reason, "preview": d.preview }))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

// ------------------------------------------------------------------------------------------------
// Accounts

pub async fn users(State(desk): State<AppState>, ApiSession(s): ApiSession) -> ApiResult {
    let rows = desk.users(&s.user).await?;
    Ok(Json(json!({ "items": rows })).into_response())
}

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
        .deactivate_user(&s.user, &username, b.reassign_to.as_deref())
        .await?;
    Ok(Json(json!({ "username": username, "active": false, "reassigned": n })).into_response())
}

// ------------------------------------------------------------------------------------------------
// Live feed

/// Whether `user` may see the report behind an event.
pub(super) fn event_visible(user: &StaffUser, ev: &FeedEvent) -> bool {
    match user.role {
        Role::Agency => {
            ev.agency_id.is_some() && ev.agency_id == user.agency_id && ev.status.is_with_agency()
        }
        _ => true,
    }
}

/// Server-sent events: new and updated camera incidents and status changes, as they commit.
pub async fn events(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = desk.subscribe();
    let cancel = desk.shutdown_token();
    let stream = futures::stream::unfold(
        (rx, cancel, s.user),
        |(mut rx, cancel, user)| async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    r = rx.recv() => match r {
                        Ok(ev) if event_visible(&user, &ev) => {
                            let data = serde_json::to_string(&ev).unwrap_or_default();
                            let e = Event::default().event(ev.event).data(data);
                            return Some((Ok(e), (rx, cancel, user)));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    // Firefox fires the EventSource's `open` only once body bytes arrive, so without a first
    // line the dashboard would say "connecting" until the first keep-alive (15 s). `retry`
    // also sets how soon a browser reconnects after the desk restarts.
    let hello = futures::stream::once(async {
        Ok(Event::default()
            .retry(std::time::Duration::from_secs(3))
            .comment("simpang desk live feed"))
    });
    Sse::new(hello.chain(stream)).keep_alive(KeepAlive::default())
}
