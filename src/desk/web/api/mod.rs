//! The JSON API. Staff calls need the session cookie and, for changes, the session's CSRF token
//! in `X-CSRF-Token` (returned by `POST /api/login` and `GET /api/me`). One file per family of
//! endpoints: [`public`] (SMS gateway, citizen form, tracker), [`session`], [`reports`],
//! [`dashboard`] (with the live feed), [`admin`] (audit log, dead letters, accounts).

mod admin;
mod dashboard;
mod public;
mod reports;
mod session;

pub use admin::*;
pub use dashboard::*;
pub use public::*;
pub use reports::*;
pub use session::*;

use axum::http::header::HeaderMap;
use axum::response::Response;

use super::{ApiError, Session};
use crate::desk::auth::constant_time_eq;
use crate::desk::{Desk, DeskError};

/// What every API handler answers.
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

pub(crate) fn iso(desk: &Desk, t: Option<i64>) -> Option<String> {
    t.map(|t| desk.labels.local(t).to_rfc3339())
}
