//! Several `simpang desk` instances on one PostgreSQL database (active-active): what one
//! instance commits, the others' dashboards must show at once, and their status publishers
//! may send. Each instance announces a committed change on the channel [`CHANNEL`]
//! (`pg_notify`, after its commit) with its own [`DeskCore::instance`] as the origin; every
//! instance listens, and turns a notice from another origin into a wake-up of its status
//! publisher and a live-feed event built from the committed row (so the notice carries no
//! report data, only the ticket).
//!
//! Delivery is PostgreSQL's: notices reach the listeners connected when the change commits.
//! A listener that lost its connection reconnects (one second apart) and misses what was
//! announced meanwhile: the live feed is a hint to reload, the database stays the truth, and
//! the status publisher also polls the outbox every two seconds. SQLite has one process per
//! file, so nothing is announced there.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::announce::FeedEvent;
use super::core::DeskCore;
use super::store::{self, Backend};

/// The notification channel every desk on a database listens on.
pub const CHANNEL: &str = "simpang_desk";

/// What one instance tells the others: a change to `ticket` committed.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Notice {
    origin: String,
    event: String,
    ticket: String,
    snapshot: Option<i64>,
}

/// The feed's event names, as the `&'static str` [`FeedEvent`] carries.
fn event_name(e: &str) -> Option<&'static str> {
    ["incident_new", "incident_update", "incident_end", "status"]
        .into_iter()
        .find(|k| *k == e)
}

/// Tells the other instances (PostgreSQL only) that `ticket` changed; called after the commit,
/// off the caller's path (a notice that cannot be sent is logged, the change stands).
pub(crate) fn announce(core: &DeskCore, event: &str, ticket: &str, snapshot: Option<i64>) {
    if core.store.backend() != Backend::Postgres {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let notice = Notice {
        origin: core.instance.clone(),
        event: event.into(),
        ticket: ticket.into(),
        snapshot,
    };
    let Ok(payload) = serde_json::to_string(&notice) else {
        return;
    };
    let pool = core.store.pool().clone();
    rt.spawn(async move {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "cannot tell the other desks about a change");
        }
    });
}

/// Listens for the other instances' changes until `cancel`; reconnects on its own.
pub async fn run_listener(core: Arc<DeskCore>, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let mut listener = match PgListener::connect(core.store.url()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "desk peers: cannot connect the change listener");
                if pause(&cancel).await {
                    return;
                }
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "desk peers: cannot LISTEN");
            if pause(&cancel).await {
                return;
            }
            continue;
        }
        tracing::info!(channel = CHANNEL, instance = %core.instance, "desk peers: listening for other desks' changes");
        loop {
            let got = tokio::select! {
                _ = cancel.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match got {
                Ok(Some(n)) => heard(&core, n.payload()).await,
                // The connection dropped; `try_recv` reconnects on the next call, and what was
                // sent in between is gone: say so once.
                Ok(None) => {
                    tracing::warn!(
                        "desk peers: listener connection lost; notices meanwhile are missed"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "desk peers: listener failed");
                    break;
                }
            }
        }
        if pause(&cancel).await {
            return;
        }
    }
}

/// One second, or less if cancelled; true if cancelled.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(Duration::from_secs(1)) => false,
    }
}

/// A notice: from another instance, a wake-up for the status publisher and the committed row
/// as a live-feed event; this instance's own notices were told locally already.
async fn heard(core: &DeskCore, payload: &str) {
    let n: Notice = match serde_json::from_str(payload) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "desk peers: a notice that is not ours, ignored");
            return;
        }
    };
    if n.origin == core.instance {
        return;
    }
    core.outbox_wake.notify_one();
    let Some(event) = event_name(&n.event) else {
        return;
    };
    let row = match core.store.pool().acquire().await {
        Ok(mut c) => store::report_by_ticket(&mut c, &n.ticket).await,
        Err(e) => Err(e.into()),
    };
    match row {
        Ok(Some(r)) => {
            if let Some(ev) = FeedEvent::of(event, &r, n.snapshot, &core.labels) {
                core.tell_feed(ev);
            }
        }
        Ok(None) => {
            tracing::warn!(ticket = %n.ticket, "desk peers: a notice for a ticket that is not in the database")
        }
        Err(e) => tracing::warn!(error = %e, "desk peers: cannot read the changed report"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_only_feed_events_are_named() {
        let n = Notice {
            origin: "simpang-desk-a.0000abcd".into(),
            event: "status".into(),
            ticket: "PLG-7K3QX9".into(),
            snapshot: Some(4),
        };
        let back: Notice = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(back, n);
        assert_eq!(event_name("incident_end"), Some("incident_end"));
        assert_eq!(event_name("drop table"), None);
    }
}
