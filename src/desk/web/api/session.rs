//! Signing in and out over the API: the session cookie is set here, the CSRF token returned.

use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{check_csrf, ApiResult};
use crate::desk::web::{
    login_cookies, session_cookie, ApiJson, ApiSession, AppState, Client, DEVICE_COOKIE,
};
use crate::guard::cookie::cookie;

/// `POST /api/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    username: String,
    password: String,
}

pub async fn login(
    State(desk): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Result<ApiJson<LoginIn>, Response>,
) -> ApiResult {
    let ApiJson(b) = match body {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let device = cookie(&headers, DEVICE_COOKIE);
    let login = desk
        .sessions
        .login(&b.username, &b.password, &client, device.as_deref())
        .await?;
    let mut res = Json(json!({ "user": login.user, "csrf": login.csrf })).into_response();
    login_cookies(&desk, &mut res, &login);
    Ok(res)
}

pub async fn logout(
    State(desk): State<AppState>,
    ApiSession(s): ApiSession,
    headers: HeaderMap,
) -> ApiResult {
    check_csrf(&s, &headers)?;
    desk.sessions.logout(&s.token).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie("", 0, desk.desk_config().cookie_secure)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

pub async fn me(ApiSession(s): ApiSession) -> ApiResult {
    Ok(Json(json!({ "user": s.user, "csrf": s.csrf })).into_response())
}
