//! Page handlers: parse the request, call the service, render a view. Form posts redirect
//! (303) on success so a reload never repeats a change; on error the page is shown again with
//! the message and a 4xx status.

use axum::extract::{Multipart, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::api::{self, ActionIn, DashQuery, ListQuery};
use super::form::{read_report_form, FormError};
use super::views::{self, FormValues};
use super::{
    login_cookies, session_cookie, AppState, Client, PageError, PageForm, PageSession, Session,
    DEVICE_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use crate::desk::auth::{self, constant_time_eq};
use crate::desk::domain::Role;
use crate::desk::input::normalise_ticket;
use crate::desk::workflow::satisfied_missing;
use crate::desk::{DeskError, FieldError};
use crate::guard::cookie::cookie;

/// What every page handler answers.
type PageResult = Result<Response, PageError>;

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

fn check_csrf(s: &Session, given: &str) -> Result<(), PageError> {
    if constant_time_eq(given, &s.csrf) {
        Ok(())
    } else {
        Err(PageError(DeskError::Forbidden))
    }
}

/// Only same-site paths after login: `next` must not send the browser elsewhere.
fn safe_next(next: &str) -> &str {
    crate::guard::same_site_path(next).unwrap_or("/dashboard")
}

pub async fn home(State(desk): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = match cookie(&headers, SESSION_COOKIE) {
        Some(t) => desk.sessions.session(&t).await.ok().flatten().is_some(),
        None => false,
    };
    see_other(if signed_in { "/dashboard" } else { "/login" })
}

pub async fn not_found() -> Response {
    PageError(DeskError::NotFound).into_response()
}

// ------------------------------------------------------------------------------------------------
// Login

/// Where to go after login (`?next=`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NextQuery {
    next: Option<String>,
}

fn login_response(status: StatusCode, error: Option<&str>, next: &str, username: &str) -> Response {
    let csrf = auth::random_token();
    let page = views::login_page(error, next, &csrf, username);
    let mut res = (status, page).into_response();
    let c =
        format!("{LOGIN_CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

pub async fn login_form(Query(q): Query<NextQuery>) -> Response {
    login_response(
        StatusCode::OK,
        None,
        safe_next(q.next.as_deref().unwrap_or("/dashboard")),
        "",
    )
}

/// The login form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: String,
}

pub async fn login_submit(
    State(desk): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    PageForm(f): PageForm<LoginForm>,
) -> Response {
    let next = safe_next(&f.next).to_string();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f.csrf, &expected) {
        return login_response(
            StatusCode::FORBIDDEN,
            Some("Formulir kedaluwarsa; silakan coba lagi."),
            &next,
            &f.username,
        );
    }
    let device = cookie(&headers, DEVICE_COOKIE);
    match desk
        .sessions
        .login(&f.username, &f.password, &client, device.as_deref())
        .await
    {
        Ok(login) => {
            let mut res = see_other(&next);
            login_cookies(&desk, &mut res, &login);
            res
        }
        Err(DeskError::RateLimited(s)) => login_response(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Terlalu banyak percobaan gagal. Coba lagi dalam {} menit.",
                (s + 59) / 60
            )),
            &next,
            &f.username,
        ),
        Err(DeskError::Invalid(_)) => login_response(
            StatusCode::UNAUTHORIZED,
            Some("Nama akun atau kata sandi salah."),
            &next,
            &f.username,
        ),
        Err(DeskError::Busy) => login_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("Server sedang sibuk; coba lagi sebentar lagi."),
            &next,
            &f.username,
        ),
        Err(e) => PageError(e).into_response(),
    }
}

/// A form that carries only the CSRF token (logout).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    PageForm(f): PageForm<CsrfForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    desk.sessions.logout(&s.token).await?;
    let mut res = see_other("/login");
    if let Ok(v) = HeaderValue::from_str(&session_cookie("", 0, desk.desk_config().cookie_secure)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

// ------------------------------------------------------------------------------------------------
// Staff pages

pub async fn dashboard(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Query(q): Query<DashQuery>,
) -> PageResult {
    let period = q
        .period
        .as_deref()
        .filter(|p| matches!(*p, "today" | "7d" | "30d"))
        .unwrap_or("all");
    let d = desk
        .queries
        .dashboard(&s.user, api::since_of(&desk, Some(period)))
        .await?;
    let overdue = desk.queries.overdue(&s.user, 10).await?;
    let feed = desk.queries.cctv_feed(&s.user, 8).await?;
    Ok(views::dashboard_page(&desk, &s, &d, &overdue, &feed, period).into_response())
}

pub async fn reports(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Query(q): Query<ListQuery>,
) -> PageResult {
    let f = api::filter_of(&desk, &q)?;
    let (page, limit) = (q.page.unwrap_or(1).max(1), f.limit);
    let (rows, total) = desk.queries.list(&s.user, f).await?;
    Ok(views::reports_page(&desk, &s, &rows, total, &q, page, limit).into_response())
}

/// `?ok=` after a redirect: which confirmation to show.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FlashQuery {
    ok: Option<String>,
}

fn flash_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "verify" => "Laporan diverifikasi.",
        "reject" => "Laporan ditolak.",
        "merge" => "Laporan digabung sebagai duplikat.",
        "disposition" => "Laporan didisposisikan; tenggat SLA berjalan.",
        "answer" => "Jawaban terkirim; status menjadi kuning.",
        "confirm" => "Konfirmasi tersimpan.",
        "message" => "Pesan terkirim.",
        "claim" => "Laporan kini Anda tangani.",
        "user" => "Akun dibuat.",
        "deactivate" => "Akun dinonaktifkan dan laporannya dialihkan.",
        "confirmed" => "Terima kasih, konfirmasi Anda tersimpan.",
        "sent" => "Pesan Anda terkirim ke petugas.",
        _ => return None,
    })
}

pub async fn report(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Path(ticket): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult {
    let v = desk.queries.report_for_staff(&s.user, &ticket).await?;
    let flash = q.ok.as_deref().and_then(flash_text);
    Ok(views::report_page(&desk, &s, &v, flash, None).into_response())
}

/// A workflow step's form on the report page.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct ActionForm {
    csrf: String,
    category: String,
    reason: String,
    into: String,
    agency: String,
    note: String,
    text: String,
    satisfied: String,
    internal: String,
}

pub async fn report_action(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Path((ticket, action)): Path<(String, String)>,
    PageForm(f): PageForm<ActionForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let opt = |v: &str| Some(v.to_string()).filter(|v| !v.trim().is_empty());
    let a = ActionIn {
        category: opt(&f.category),
        reason: Some(f.reason.clone()),
        into: Some(f.into.clone()),
        agency: Some(f.agency.clone()),
        note: opt(&f.note),
        text: Some(f.text.clone()),
        satisfied: match f.satisfied.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        },
        internal: Some(f.internal == "1"),
    };
    match api::do_action(&desk, &s.user, &ticket, &action, a).await {
        Ok(()) => {
            let t = normalise_ticket(&ticket);
            let code = if action == "messages" {
                "message"
            } else {
                action.as_str()
            };
            Ok(see_other(&format!(
                "/reports/{t}?ok={}",
                super::url_encode(code)
            )))
        }
        Err(
            e @ (DeskError::Invalid(_)
            | DeskError::NotAllowed(_)
            | DeskError::Conflict
            | DeskError::Forbidden),
        ) => {
            let status = match &e {
                DeskError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                DeskError::Forbidden => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            let v = desk.queries.report_for_staff(&s.user, &ticket).await?;
            Ok((
                status,
                views::report_page(&desk, &s, &v, None, Some(&e.to_string())),
            )
                .into_response())
        }
        Err(e) => Err(PageError(e)),
    }
}

pub async fn attachment(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Path(id): Path<i64>,
) -> PageResult {
    let (meta, bytes) = desk.queries.attachment(&s.user, id).await?;
    let ct = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, ct),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn users_view(
    desk: &AppState,
    s: &Session,
    errors: &[FieldError],
    flash: Option<&str>,
    status: StatusCode,
) -> PageResult {
    let users = desk.accounts.users(&s.user).await?;
    let mut counts = Vec::new();
    for u in users
        .iter()
        .filter(|u| u.active == 1 && u.role != Role::Viewer.as_str())
    {
        counts.push((
            u.id,
            desk.accounts
                .open_items_of(&s.user, &u.username)
                .await?
                .len(),
        ));
    }
    Ok((
        status,
        views::users_page(desk, s, &users, &counts, errors, flash),
    )
        .into_response())
}

pub async fn users(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Query(q): Query<FlashQuery>,
) -> PageResult {
    let flash = q.ok.as_deref().and_then(flash_text);
    users_view(&desk, &s, &[], flash, StatusCode::OK).await
}

/// The new-account form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct UserForm {
    csrf: String,
    username: String,
    display_name: String,
    role: String,
    agency: String,
    password: String,
}

pub async fn user_create(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    PageForm(f): PageForm<UserForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let role: Role = match f.role.parse() {
        Ok(r) => r,
        Err(_) => {
            let e = [FieldError {
                field: "role",
                message: format!("peran {:?} tidak dikenal", f.role),
            }];
            return users_view(&desk, &s, &e, None, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
    };
    let agency = Some(f.agency.as_str()).filter(|a| !a.is_empty());
    match desk
        .accounts
        .create_user(
            Some(&s.user),
            &f.username,
            &f.display_name,
            role,
            agency,
            &f.password,
        )
        .await
    {
        Ok(_) => Ok(see_other("/admin/users?ok=user")),
        Err(DeskError::Invalid(errs)) => {
            users_view(&desk, &s, &errs, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(PageError(e)),
    }
}

/// The deactivate-and-hand-over form.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeactivateForm {
    csrf: String,
    reassign_to: String,
}

pub async fn user_deactivate(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Path(username): Path<String>,
    PageForm(f): PageForm<DeactivateForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let to = Some(f.reassign_to.as_str()).filter(|t| !t.is_empty());
    match desk.accounts.deactivate_user(&s.user, &username, to).await {
        Ok(_) => Ok(see_other("/admin/users?ok=deactivate")),
        Err(DeskError::Invalid(errs)) => {
            users_view(&desk, &s, &errs, None, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(e) => Err(PageError(e)),
    }
}

/// `?page=` of the audit page.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageNo {
    page: Option<i64>,
}

pub async fn audit(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
    Query(q): Query<PageNo>,
) -> PageResult {
    let page = q.page.unwrap_or(1).max(1);
    let rows = desk
        .queries
        .audit_log(&s.user, 100, (page - 1) * 100)
        .await?;
    let names = desk.queries.user_names(&s.user).await?;
    Ok(views::audit_page(&desk, &s, &rows, &names, page).into_response())
}

pub async fn dead_letters(State(desk): State<AppState>, PageSession(s): PageSession) -> PageResult {
    let rows = desk.queries.dead_letters(&s.user, 200).await?;
    Ok(views::dead_letters_page(&desk, &s, &rows).into_response())
}

// ------------------------------------------------------------------------------------------------
// Citizens

pub async fn report_form(State(desk): State<AppState>) -> Response {
    views::report_form_page(&desk, &FormValues::default(), &[]).into_response()
}

pub async fn report_submit(
    State(desk): State<AppState>,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> PageResult {
    let mp = match mp {
        Ok(m) => m,
        Err(rej) => {
            return Ok((
                rej.status(),
                views::error_page(rej.status(), &rej.body_text()),
            )
                .into_response())
        }
    };
    let max = desk.desk_config().max_photo_bytes;
    let (input, early) = match read_report_form(mp, max).await {
        Ok(i) => (i, None),
        Err(FormError { error, partial }) => (partial, Some(error)),
    };
    let values = FormValues {
        title: input.title.clone(),
        description: input.description.clone(),
        category: input.category.clone(),
        address: input.address.clone(),
        lat: input
            .lat
            .filter(|v| v.is_finite())
            .map(|v| v.to_string())
            .unwrap_or_default(),
        lon: input
            .lon
            .filter(|v| v.is_finite())
            .map(|v| v.to_string())
            .unwrap_or_default(),
        phone: input.phone.clone().unwrap_or_default(),
    };
    let result = match early {
        None => desk.workflow.create_web_report(input).await,
        Some(e) => Err(e),
    };
    match result {
        Ok(created) => Ok((StatusCode::CREATED, views::receipt_page(&created)).into_response()),
        Err(DeskError::Invalid(errs)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            views::report_form_page(&desk, &values, &errs),
        )
            .into_response()),
        Err(DeskError::TooLarge { max }) => {
            let errs = [FieldError {
                field: "photo",
                message: format!("Foto terlalu besar (maksimal {} KB)", max / 1024),
            }];
            Ok((
                StatusCode::PAYLOAD_TOO_LARGE,
                views::report_form_page(&desk, &values, &errs),
            )
                .into_response())
        }
        Err(e) => Err(PageError(e)),
    }
}

/// The tracker's search box (`?ticket=`).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TrackQuery {
    ticket: Option<String>,
}

pub async fn track_search(State(desk): State<AppState>, Query(q): Query<TrackQuery>) -> Response {
    let t = q
        .ticket
        .as_deref()
        .map(normalise_ticket)
        .unwrap_or_default();
    if t.is_empty() {
        return views::track_search_page(None, "").into_response();
    }
    match desk.queries.report_for_public(&t).await {
        Ok(_) => see_other(&format!("/track/{}", super::url_encode(&t))),
        Err(DeskError::NotFound) => (
            StatusCode::NOT_FOUND,
            views::track_search_page(Some("Nomor tiket tidak ditemukan."), &t),
        )
            .into_response(),
        Err(e) => PageError(e).into_response(),
    }
}

pub async fn track(
    State(desk): State<AppState>,
    Path(ticket): Path<String>,
    Query(q): Query<FlashQuery>,
) -> PageResult {
    let v = desk.queries.report_for_public(&ticket).await?;
    let flash = q.ok.as_deref().and_then(flash_text);
    Ok(views::track_page(&desk, &v, flash, None).into_response())
}

/// The reporter's confirm and message forms on the tracker.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TrackForm {
    pin: String,
    text: String,
    satisfied: String,
}

async fn track_error(desk: &AppState, ticket: &str, e: DeskError) -> PageResult {
    let status = match &e {
        DeskError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeskError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        DeskError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        DeskError::NotAllowed(_) | DeskError::Conflict => StatusCode::CONFLICT,
        _ => return Err(PageError(e)),
    };
    let v = desk.queries.report_for_public(ticket).await?;
    let mut res = (
        status,
        views::track_page(desk, &v, None, Some(&e.to_string())),
    )
        .into_response();
    super::retry_after(&e, &mut res);
    Ok(res)
}

pub async fn track_confirm(
    State(desk): State<AppState>,
    Client(client): Client,
    Path(ticket): Path<String>,
    PageForm(f): PageForm<TrackForm>,
) -> PageResult {
    let satisfied = match f.satisfied.as_str() {
        "1" => true,
        "0" => false,
        _ => return track_error(&desk, &ticket, satisfied_missing()).await,
    };
    match desk
        .workflow
        .confirm_with_pin(&ticket, &f.pin, &client, satisfied, &f.text)
        .await
    {
        Ok(r) => Ok(see_other(&format!("/track/{}?ok=confirmed", r.ticket))),
        Err(e) => track_error(&desk, &ticket, e).await,
    }
}

pub async fn track_message(
    State(desk): State<AppState>,
    Client(client): Client,
    Path(ticket): Path<String>,
    PageForm(f): PageForm<TrackForm>,
) -> PageResult {
    match desk
        .workflow
        .reporter_message(&ticket, &f.pin, &client, &f.text)
        .await
    {
        Ok(()) => Ok(see_other(&format!(
            "/track/{}?ok=sent",
            normalise_ticket(&ticket)
        ))),
        Err(e) => track_error(&desk, &ticket, e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_site() {
        let cases = [
            ("/reports/PLG-1", "/reports/PLG-1"),
            ("/", "/"),
            ("", "/dashboard"),
            ("//evil.example", "/dashboard"),
            ("/\\evil.example", "/dashboard"),
            ("https://evil.example", "/dashboard"),
            ("javascript:alert(1)", "/dashboard"),
            ("/\t/evil.example", "/dashboard"),
        ];
        for (n, want) in cases {
            assert_eq!(safe_next(n), want, "{n:?}");
        }
    }
}
