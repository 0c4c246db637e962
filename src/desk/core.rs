//! What every desk service shares, and the plumbing of every change: a new ticket number, the
//! audit entry, the status message in the outbox, the guarded update of a report, and the
//! notifications after commit. The services ([`super::workflow`], [`super::intake`],
//! [`super::accounts`], [`super::sessions`], [`super::queries`]) each hold an `Arc` of it.

use std::sync::Arc;

use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;

use super::accounts::StaffUser;
use super::announce::{FeedEvent, StatusMessage};
use super::auth::{DeskKeys, Hasher};
use super::clock::Clock;
use super::domain::Source;
use super::error::DeskError;
use super::labels::Labels;
use super::store::{self, ReportRow, Store, Tx};
use crate::config::Config;
use crate::incident::topics;

/// The desk's shared state: database, configuration, clock, names, live feed, shutdown.
pub struct DeskCore {
    pub store: Store,
    pub cfg: Arc<Config>,
    pub clock: Clock,
    pub labels: Labels,
    /// Every password and PIN check and hash: a bounded pool, outside any transaction.
    pub hasher: Arc<Hasher>,
    pub keys: DeskKeys,
    feed: broadcast::Sender<FeedEvent>,
    /// Wakes the status publisher when a commit has put messages in the outbox.
    pub(crate) outbox_wake: Arc<Notify>,
    /// Cancelled when the desk stops: ends live feeds and the MQTT tasks.
    pub(crate) shutdown: CancellationToken,
    /// This process among the desks on one database: the MQTT client id and a random tag
    /// (claims on status messages, the origin of change notices, see [`super::peers`]).
    pub(crate) instance: String,
}

/// Who makes a change, as the audit log records it.
#[derive(Clone, Debug)]
pub enum Actor {
    Staff(StaffUser),
    /// A citizen, through the web form, the tracker (with the PIN) or SMS.
    Reporter(Source),
    /// The camera pipeline, over MQTT.
    Mqtt,
    /// The command line (`simpang desk user add`) and start-up tasks.
    System,
}

impl Actor {
    fn id(&self) -> Option<i64> {
        match self {
            Actor::Staff(u) => Some(u.id),
            _ => None,
        }
    }
    fn label(&self) -> String {
        match self {
            Actor::Staff(u) => u.username.clone(),
            Actor::Reporter(s) => format!("pelapor ({})", s.as_str()),
            Actor::Mqtt => "mqtt".into(),
            Actor::System => "sistem".into(),
        }
    }
}

/// Ticket alphabet: no 0/O, 1/I/L or U, so a ticket read out over the phone is unambiguous.
const TICKET_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";

impl DeskCore {
    pub fn new(cfg: Arc<Config>, store: Store, clock: Clock, keys: DeskKeys) -> Self {
        let (feed, _) = broadcast::channel(256);
        let d = &cfg.desk;
        let hasher = Hasher::new(
            d.password_checks_parallel as usize,
            d.password_checks_queue as usize,
        )
        .with_debug_delay(std::time::Duration::from_millis(
            d.debug_password_check_delay_ms,
        ));
        Self {
            hasher: Arc::new(hasher),
            keys,
            labels: Labels::new(cfg.clone()),
            store,
            clock,
            feed,
            outbox_wake: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            instance: format!("{}.{:08x}", cfg.desk.mqtt.client_id, rand::random::<u32>()),
            cfg,
        }
    }

    /// The live feed: every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }

    /// A ticket number no report has yet (`PLG-7K3QX9`).
    pub(crate) async fn new_ticket(&self, tx: &mut Tx) -> Result<String, DeskError> {
        use rand::Rng;
        for _ in 0..8 {
            let suffix: String = {
                let mut rng = rand::thread_rng();
                (0..6)
                    .map(|_| char::from(TICKET_ALPHABET[rng.gen_range(0..TICKET_ALPHABET.len())]))
                    .collect()
            };
            let t = format!("{}-{suffix}", self.cfg.desk.ticket_prefix);
            if !store::ticket_exists(tx, &t).await? {
                return Ok(t);
            }
        }
        Err(DeskError::Internal(
            "no free ticket number after 8 tries".into(),
        ))
    }

    /// One audit entry: who did `action` to `entity` `entity_id`, the fields before and after.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        action: &str,
        entity: &str,
        entity_id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> Result<(), DeskError> {
        let b = before.map(|v| v.to_string());
        let a = after.map(|v| v.to_string());
        store::insert_audit(
            tx,
            self.clock.now(),
            actor.id(),
            &actor.label(),
            action,
            entity,
            entity_id,
            b.as_deref(),
            a.as_deref(),
        )
        .await?;
        Ok(())
    }

    /// Puts the report's status message in the outbox, in the caller's transaction.
    pub(crate) async fn enqueue_status(&self, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let now = self.clock.now();
        let msg = StatusMessage::of(r, &self.labels, now)?;
        let payload =
            serde_json::to_string(&msg).map_err(|e| DeskError::Internal(e.to_string()))?;
        let topic = topics::desk_report_status(&self.cfg.desk.mqtt.status_topic_prefix, &r.ticket);
        store::insert_outbox(tx, now, &topic, &payload).await?;
        Ok(())
    }

    /// Stores a new report (ticket already drawn) with its `create` audit entry (the row plus
    /// `extra` facts such as "a photo came with it") and its first status message.
    pub(crate) async fn insert_new(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        r: &mut ReportRow,
        extra: &[(&str, serde_json::Value)],
    ) -> Result<(), DeskError> {
        r.id = store::insert_report(tx, r).await?;
        let mut after = serde_json::to_value(&*r).unwrap_or_default();
        if let Some(obj) = after.as_object_mut() {
            for (k, v) in extra {
                obj.insert((*k).into(), v.clone());
            }
        }
        self.audit(tx, actor, "create", "report", &r.ticket, None, Some(after))
            .await?;
        self.enqueue_status(tx, r).await
    }

    /// Writes a changed report (if nobody changed it meanwhile), its audit entry and, when the
    /// status or agency moved, its status message.
    pub(crate) async fn save(
        &self,
        tx: &mut Tx,
        actor: &Actor,
        action: &str,
        before: &ReportRow,
        after: &mut ReportRow,
    ) -> Result<(), DeskError> {
        after.updated_at = self.clock.now();
        if !store::update_report(tx, after).await? {
            return Err(DeskError::Conflict);
        }
        after.version += 1;
        let (b, a) = diff(before, after);
        self.audit(tx, actor, action, "report", &after.ticket, b, a)
            .await?;
        if before.status != after.status || before.agency_id != after.agency_id {
            self.enqueue_status(tx, after).await?;
        }
        Ok(())
    }

    /// After a commit: wake the status publisher, tell the live feed and the other desks on
    /// the same database.
    pub(crate) fn after_commit(&self, event: &'static str, r: &ReportRow, snapshot: Option<i64>) {
        self.outbox_wake.notify_one();
        if let Some(ev) = FeedEvent::of(event, r, snapshot, &self.labels) {
            self.tell_feed(ev);
        }
        super::peers::announce(self, event, &r.ticket, snapshot);
    }

    /// One event for this instance's live feeds.
    pub(crate) fn tell_feed(&self, ev: FeedEvent) {
        let _ = self.feed.send(ev);
    }
}

/// Changed fields only, as JSON objects (before, after); the change stamp itself is left out.
pub(crate) fn diff(
    before: &ReportRow,
    after: &ReportRow,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let (Ok(serde_json::Value::Object(b)), Ok(serde_json::Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return (None, None);
    };
    let mut bo = serde_json::Map::new();
    let mut ao = serde_json::Map::new();
    for (k, av) in &a {
        if k == "updated_at" {
            continue;
        }
        let bv = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
        if &bv != av {
            bo.insert(k.clone(), bv);
            ao.insert(k.clone(), av.clone());
        }
    }
    (
        Some(serde_json::Value::Object(bo)),
        Some(serde_json::Value::Object(ao)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_keeps_changed_fields_only() {
        let a = ReportRow::blank("PLG-A", Source::Web, 10);
        let mut b = a.clone();
        b.status = "verified".into();
        b.updated_at = 99;
        b.verified_at = Some(50);
        let (before, after) = diff(&a, &b);
        assert_eq!(
            before,
            Some(serde_json::json!({"status": "received", "verified_at": null}))
        );
        assert_eq!(
            after,
            Some(serde_json::json!({"status": "verified", "verified_at": 50}))
        );
        let (before, after) = diff(&a, &a);
        assert_eq!(before, Some(serde_json::json!({})));
        assert_eq!(after, Some(serde_json::json!({})));
    }
}
