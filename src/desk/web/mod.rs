//! HTTP: server-rendered pages (maud) for staff and citizens, and a JSON API over the same
//! services. Only the login page, the citizen form, the tracker, the SMS webhook and static
//! assets answer without a session.

mod api;
mod assets;
mod form;
mod limits;
mod pages;
mod views;
mod wall;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;

use super::{Desk, DeskError, StaffUser};
use crate::guard::cookie::cookie;

/// What every handler gets: the desk.
pub type AppState = Arc<Desk>;

/// Name of the staff session cookie.
pub const SESSION_COOKIE: &str = "simpang_desk_session";
/// Double-submit cookie guarding the login form before there is a session.
pub const LOGIN_CSRF_COOKIE: &str = "simpang_desk_login";
/// A browser that signed in before: its own count of wrong passwords (see `desk::auth`).
pub const DEVICE_COOKIE: &str = "simpang_desk_device";

pub fn router(desk: AppState) -> Router {
    let photo_limit = desk.desk_config().max_photo_bytes + 64 * 1024;
    let l = &desk.desk_config().limits;
    let (reports, sms, track, login) = (
        limits::Limit::new(&desk, l.reports_per_ip, true),
        limits::Limit::new(&desk, l.sms_per_ip, true),
        limits::Limit::new(&desk, l.track_per_ip, false),
        limits::Limit::new(&desk, l.login_per_ip, true),
    );
    let limited = |r: Router<AppState>, lim| {
        r.route_layer(axum::middleware::from_fn_with_state(lim, limits::limit))
    };
    let intake = limited(
        Router::new()
            .route("/lapor", get(pages::report_form).post(pages::report_submit))
            .route("/api/reports", post(api::report_submit).get(api::reports))
            .layer(axum::extract::DefaultBodyLimit::max(photo_limit)),
        reports,
    );
    let sms = limited(Router::new().route("/api/sms", post(api::sms)), sms);
    let track = limited(
        Router::new()
            .route("/track", get(pages::track_search))
            .route("/track/{ticket}", get(pages::track))
            .route("/track/{ticket}/confirm", post(pages::track_confirm))
            .route("/track/{ticket}/message", post(pages::track_message))
            .route("/api/track/{ticket}", get(api::track))
            .route("/api/track/{ticket}/confirm", post(api::track_confirm))
            .route("/api/track/{ticket}/messages", post(api::track_message)),
        track,
    );
    let login = limited(
        Router::new()
            .route("/login", get(pages::login_form).post(pages::login_submit))
            .route("/api/login", post(api::login)),
        login,
    );
    Router::new()
        .merge(intake)
        .merge(sms)
        .merge(track)
        .merge(login)
        .route("/", get(pages::home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/assets/{*path}", get(assets::serve))
        .route("/logout", post(pages::logout))
        .route("/wall", get(wall::handoff))
        .route("/dashboard", get(pages::dashboard))
        .route("/reports", get(pages::reports))
        .route("/reports/{ticket}", get(pages::report))
        .route("/reports/{ticket}/{action}", post(pages::report_action))
        .route("/attachments/{id}", get(pages::attachment))
        .route("/admin/users", get(pages::users).post(pages::user_create))
        .route(
            "/admin/users/{username}/deactivate",
            post(pages::user_deactivate),
        )
        .route("/audit", get(pages::audit))
        .route("/dead-letters", get(pages::dead_letters))
        .route("/api/logout", post(api::logout))
        .route("/api/me", get(api::me))
        .route("/api/dashboard", get(api::dashboard))
        .route("/api/reports/{ticket}", get(api::report))
        .route("/api/reports/{ticket}/{action}", post(api::report_action))
        .route("/api/audit", get(api::audit))
        .route("/api/dead-letters", get(api::dead_letters))
        .route("/api/users", get(api::users).post(api::user_create))
        .route(
            "/api/users/{username}/deactivate",
            post(api::user_deactivate),
        )
        .route("/api/events", get(api::events))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(desk)
}

/// Headers every response carries: no framing, no MIME sniffing, scripts only from the desk.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "same-origin");
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data: https: http:; connect-src 'self'; frame-ancestors 'none'; \
         form-action 'self'; base-uri 'none'",
    );
    res
}

/// The signed-in staff member of a request.
#[derive(Clone, Debug)]
pub struct Session {
    pub user: StaffUser,
    pub csrf: String,
    pub token: String,
}

async fn session_of(parts: &Parts, desk: &Desk) -> Result<Option<Session>, DeskError> {
    let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    Ok(desk
        .sessions
        .session(&token)
        .await?
        .map(|(user, csrf)| Session { user, csrf, token }))
}

/// A page that needs a session: without one, the browser goes to the login page.
pub struct PageSession(pub Session);

impl FromRequestParts<AppState> for PageSession {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, desk: &AppState) -> Result<Self, Response> {
        match session_of(parts, desk).await {
            Ok(Some(s)) => Ok(PageSession(s)),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/dashboard");
                let target = format!("/login?next={}", url_encode(next));
                Err(Redirect::to(&target).into_response())
            }
            Err(e) => Err(PageError(e).into_response()),
        }
    }
}

/// An API call that needs a session: without one, 401.
pub struct ApiSession(pub Session);

impl FromRequestParts<AppState> for ApiSession {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, desk: &AppState) -> Result<Self, ApiError> {
        match session_of(parts, desk).await {
            Ok(Some(s)) => Ok(ApiSession(s)),
            Ok(None) => Err(ApiError(DeskError::Unauthorized)),
            Err(e) => Err(ApiError(e)),
        }
    }
}

/// The peer's address key (an IPv6 /64 counts as one), for rate limits and backoff.
pub fn client_of(parts_ext: &axum::http::Extensions) -> String {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| crate::guard::client_key(c.0.ip()))
        .unwrap_or_else(|| "unknown".into())
}

/// The client's address key, for rate limits and backoff.
pub struct Client(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(client_of(&parts.extensions)))
    }
}

fn status_of(e: &DeskError) -> StatusCode {
    match e {
        DeskError::NotFound => StatusCode::NOT_FOUND,
        DeskError::Forbidden => StatusCode::FORBIDDEN,
        DeskError::Unauthorized => StatusCode::UNAUTHORIZED,
        DeskError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DeskError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DeskError::NotAllowed(_) | DeskError::Conflict => StatusCode::CONFLICT,
        DeskError::RateLimited(_) | DeskError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        DeskError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        DeskError::NotDemoDatabase { .. } => StatusCode::CONFLICT,
        DeskError::Store(_) | DeskError::Auth(_) | DeskError::Key(_) | DeskError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn public_message(e: &DeskError) -> String {
    match e {
        // Details of storage failures go to the log, not to the browser.
        DeskError::Store(_) | DeskError::Auth(_) | DeskError::Key(_) | DeskError::Internal(_) => {
            tracing::error!(error = %e, "request failed");
            "Terjadi kesalahan pada server; silakan coba lagi.".into()
        }
        other => other.to_string(),
    }
}

/// An error answered as JSON: `{"error": "...", "fields": [{"field", "message"}]}`.
#[derive(Debug)]
pub struct ApiError(pub DeskError);

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let fields = match &self.0 {
            DeskError::Invalid(f) => f.clone(),
            _ => Vec::new(),
        };
        let body = serde_json::json!({ "error": public_message(&self.0), "fields": fields });
        let mut res = (status, axum::Json(body)).into_response();
        retry_after(&self.0, &mut res);
        res
    }
}

/// A plain 4xx for malformed requests (bad JSON, wrong content type), in the API's shape.
pub fn api_bad_request(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message, "fields": [] })),
    )
        .into_response()
}

/// An error answered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub DeskError);

impl From<DeskError> for PageError {
    fn from(e: DeskError) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let msg = public_message(&self.0);
        let mut res = (status, views::error_page(status, &msg)).into_response();
        retry_after(&self.0, &mut res);
        res
    }
}

/// `Retry-After` on answers that say "later".
pub fn retry_after(e: &DeskError, res: &mut Response) {
    let wait = match e {
        DeskError::RateLimited(s) | DeskError::TooMany(s) => (*s).max(1),
        DeskError::Busy => 1,
        _ => return,
    };
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// `axum::Json` with malformed input answered in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let status = rej.status();
                Err(api_bad_request(
                    status,
                    format!("permintaan JSON tidak valid: {}", rej.body_text()),
                ))
            }
        }
    }
}

/// `axum::Form` with malformed input answered as an HTML error page.
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(PageForm(v)),
            Err(rej) => {
                let status = rej.status();
                Err((status, views::error_page(status, &rej.body_text())).into_response())
            }
        }
    }
}

pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The `Set-Cookie` value for a session (or its removal with an empty token).
pub fn session_cookie(token: &str, max_age_s: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value of the trusted-device cookie (a year; only sent to the desk itself).
pub fn device_cookie(value: &str, secure: bool) -> String {
    format!(
        "{DEVICE_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=31536000{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The login's cookies: the session and the trusted device.
pub fn login_cookies(desk: &Desk, res: &mut Response, login: &super::sessions::Login) {
    let d = desk.desk_config();
    let max_age = i64::from(d.session_hours) * 3600;
    for c in [
        session_cookie(&login.token, max_age, d.cookie_secure),
        device_cookie(&login.device, d.cookie_secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_is_httponly_samesite() {
        let c = session_cookie("t", 60, false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && !c.contains("Secure"));
        assert!(session_cookie("t", 60, true).ends_with("; Secure"));
    }
}
