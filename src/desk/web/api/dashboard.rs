//! The dashboard's data: its numbers for a period, and the live feed of committed changes
//! (server-sent events).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use super::reports::row_json;
use super::ApiResult;
use crate::desk::announce::FeedEvent;
use crate::desk::domain::Role;
use crate::desk::web::{ApiSession, AppState};
use crate::desk::{Desk, StaffUser};

/// `?period=` of the dashboard.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DashQuery {
    /// `today`, `7d`, `30d` or `all` (default).
    pub period: Option<String>,
}

/// The first second of `period` (`today` from local midnight); None for all time.
pub(crate) fn since_of(desk: &Desk, period: Option<&str>) -> Option<i64> {
    let now = desk.clock.now();
    match period {
        Some("today") => {
            let local = desk.labels.local(now);
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
        .queries
        .dashboard(&s.user, since_of(&desk, q.period.as_deref()))
        .await?;
    let overdue = desk.queries.overdue(&s.user, 20).await?;
    let sees = s.user.role.sees_contact();
    let overdue: Vec<Value> = overdue.iter().map(|r| row_json(&desk, r, sees)).collect();
    let mut v = serde_json::to_value(&d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("overdue_reports".into(), overdue.into());
    }
    Ok(Json(v).into_response())
}

/// Whether `user` may see the report behind an event.
pub(crate) fn event_visible(user: &StaffUser, ev: &FeedEvent) -> bool {
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
