//! Rate limits of the public side, per client address (an IPv6 /64 counts as one): citizen
//! reports, the SMS webhook, the tracker and its PIN posts, sign-in posts (`[desk.limits]`).
//! A request over its rate is answered `429` with `Retry-After` before any work is done.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{client_of, views, AppState};
use crate::config::Rate;
use crate::guard::Buckets;

/// One family of public endpoints and its buckets.
pub struct Limit {
    desk: AppState,
    buckets: Buckets,
    /// Count only changes (posts): reading the form is free.
    posts_only: bool,
}

impl Limit {
    pub fn new(desk: &AppState, rate: Rate, posts_only: bool) -> Arc<Self> {
        Arc::new(Self {
            desk: desk.clone(),
            buckets: Buckets::per_hour(rate.per_hour, rate.burst),
            posts_only,
        })
    }
}

/// The middleware: a token from the client's bucket, or `429`.
pub async fn limit(State(l): State<Arc<Limit>>, req: Request, next: Next) -> Response {
    if l.posts_only && req.method() == Method::GET {
        return next.run(req).await;
    }
    let client = client_of(req.extensions());
    match l.buckets.take(&client, l.desk.clock.now()) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::debug!(%client, path = %req.uri().path(), wait, "rate limited");
            too_many(req.uri().path().starts_with("/api/"), wait)
        }
    }
}

/// `429` with `Retry-After`, as JSON for the API and as a page otherwise.
pub fn too_many(api: bool, wait: i64) -> Response {
    let msg = format!("Terlalu banyak permintaan; coba lagi dalam {wait} detik.");
    let mut res = if api {
        (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({ "error": msg, "fields": [] })),
        )
            .into_response()
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            views::error_page(StatusCode::TOO_MANY_REQUESTS, &msg),
        )
            .into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&wait.max(1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}
