//! One MQTT connection per site: drains the site's outbox rows in id order, deletes each row when
//! its PUBACK arrives, keeps the site's retained status, and reconnects with backoff.
//!
//! Why one connection per site: a last will belongs to a connection, and the contract wants each
//! site's own `status` topic to turn `offline` when its producer dies. One connection per site
//! gives exactly that (client id `{mqtt.client_id}-{site}`), keeps one site's backlog from
//! delaying another's, and moves with the site when sites are sharded across machines.
//!
//! Matching acks to rows: rumqttc assigns packet ids inside its event loop and does not return
//! them from `publish`, but it reports `Outgoing::Publish(pkid)` for every QoS 1 publish in the
//! order the requests left the channel. So every request we put in the channel is also pushed on
//! `queued` (under the same lock), and each `Outgoing::Publish(pkid)` moves the front of `queued`
//! to `inflight[pkid]`; `PubAck(pkid)` then names the row. On a connection error everything not
//! acked is forgotten on our side (the rows stay in the outbox) and, with a clean session, on
//! rumqttc's side too: the next connection starts again from the oldest row, in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use parking_lot::Mutex;
use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    Outgoing, QoS,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn, Instrument};

use super::broker::{BrokerTarget, Failover, INFLIGHT};
use super::message::{SiteState, StatusMessage, StatusReason};
use super::outbox::{MsgKind, Outbox, Row};
use super::secrets::Login;
use super::sign::{self, SigningKey};
use super::topics;
use crate::model::SiteId;
use crate::timing::{self, Stage};

/// Publishes in flight per connection (sent, not yet acked). Large enough to keep a slow link
/// busy, small enough that rumqttc's packet ids (1..=INFLIGHT) never wrap onto an unacked one.
pub const WINDOW: usize = 32;
// rumqttc's own limit (set with the connection options) stays above WINDOW, so status messages
// never wait behind rows.
const _: () = assert!(WINDOW < INFLIGHT as usize);
/// How long a clean stop waits for the backlog and the offline status to be acknowledged.
pub const STOP_FLUSH: Duration = Duration::from_secs(5);

/// Metrics a link updates.
#[derive(Clone)]
pub struct LinkMetrics {
    pub connected: IntGaugeVec,
    pub pending: IntGaugeVec,
    pub latency: HistogramVec,
    pub published: IntCounterVec,
    pub connect_failures: IntCounterVec,
}

/// What a site's connection is: who it is and where its outbox rows start.
#[derive(Clone, Debug)]
pub struct LinkSettings {
    pub site: SiteId,
    /// MQTT client id, `{mqtt.client_id}-{site}`.
    pub client_id: String,
    /// The site's login (`site-{id}` on a broker with simpang's users).
    pub login: Option<Login>,
    /// Signs the status messages and the will (rows in the outbox are signed already).
    pub key: Option<SigningKey>,
    /// The site's highest outbox id at start.
    pub last_id: i64,
    /// (first, longest) wait between connection attempts.
    pub reconnect: (Duration, Duration),
    /// Publish the retained status again this often while connected (a site served under a
    /// cluster lease: the will of a node cut off from the broker fires after its keep-alive,
    /// possibly after the next node said `online`, and would otherwise stay the retained
    /// status; the refresh puts the serving node's back). `None`: only on changes.
    pub status_refresh: Option<Duration>,
}

/// Builds a status message for the site (state, reason) at the current time.
pub type StatusFn = Arc<dyn Fn(SiteState, StatusReason) -> StatusMessage + Send + Sync>;

/// Something put in the request channel.
#[derive(Clone, Copy, Debug)]
enum Sent {
    Row {
        id: i64,
        created_ms: i64,
        kind: MsgKind,
    },
    Status,
}

/// State shared by the driver task and the producer (under one mutex, never held across await).
struct Shared {
    /// The driver has a connection (ConnAck seen, no error since).
    connected: bool,
    /// Counts connections, so work prepared for an old one is not applied to a new one.
    generation: u64,
    queued: VecDeque<Sent>,
    inflight: HashMap<u16, Sent>,
    /// Lowest outbox id of this site not yet sent on the current connection.
    cursor: i64,
    /// Highest committed outbox id of this site.
    last_enqueued: i64,
    stopping: bool,
    offline_sent: bool,
}

impl Shared {
    fn outstanding(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }
    fn backlog(&self) -> bool {
        self.cursor <= self.last_enqueued
    }
}

/// Handle to a site's connection.
pub struct Link {
    site: SiteId,
    shared: Arc<Mutex<Shared>>,
    client: AsyncClient,
    stop: Arc<Notify>,
    /// `None`: a replay connection (see [`Link::spawn`]).
    status: Option<StatusFn>,
    key: Option<SigningKey>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    /// Starts the site's connection to one of `targets` (the nodes of a broker cluster, picked
    /// by the client id: [`Failover::spread`], or the one broker); a connection error moves it
    /// to the next.
    ///
    /// `status: None` makes a **replay** connection: it only publishes the site's rows left in
    /// this machine's outbox, with no retained status and no will, so that a cluster node
    /// coming back sends what it could not send before it died without speaking for a site
    /// another node serves now.
    pub fn spawn(
        settings: LinkSettings,
        targets: &[BrokerTarget],
        outbox: Outbox,
        status: Option<StatusFn>,
        metrics: LinkMetrics,
    ) -> Link {
        let LinkSettings {
            site,
            client_id,
            login,
            key,
            last_id,
            reconnect,
            status_refresh,
        } = settings;
        let targets = targets.to_vec();
        let failover = Failover::spread(targets.len(), &client_id);
        let opts = options(&targets[failover.current()], &client_id, login.as_ref());
        let (client, eventloop) = AsyncClient::new(opts, WINDOW + 16);
        let shared = Arc::new(Mutex::new(Shared {
            connected: false,
            generation: 0,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            cursor: 0,
            last_enqueued: last_id,
            stopping: false,
            offline_sent: false,
        }));
        let stop = Arc::new(Notify::new());
        metrics.connected.with_label_values(&[&site]).set(0);
        let driver = Driver {
            site: site.clone(),
            failover,
            targets,
            login,
            client_id,
            shared: shared.clone(),
            client: client.clone(),
            outbox,
            stop: stop.clone(),
            status: status.clone(),
            key: key.clone(),
            metrics,
            reconnect,
            status_refresh,
        };
        let span = tracing::info_span!("mqtt", site = %site);
        let task = tokio::spawn(driver.run(eventloop).instrument(span));
        Link {
            site,
            shared,
            client,
            stop,
            status,
            key,
            task: Mutex::new(Some(task)),
        }
    }

    pub fn site(&self) -> &str {
        self.site.as_str()
    }

    /// A row was committed to the outbox: publish it now if it is next in line and the window
    /// has room; otherwise the driver picks it up from the outbox.
    pub fn offer(&self, row: Row) {
        let mut sh = self.shared.lock();
        let no_backlog = !sh.backlog();
        sh.last_enqueued = sh.last_enqueued.max(row.id);
        if !(no_backlog && sh.connected && sh.outstanding() < WINDOW) {
            return;
        }
        let sent = Sent::Row {
            id: row.id,
            created_ms: row.created_ms,
            kind: row.kind,
        };
        match self
            .client
            .try_publish(row.topic, QoS::AtLeastOnce, row.retain, row.payload)
        {
            Ok(()) => {
                sh.queued.push_back(sent);
                sh.cursor = row.id + 1;
            }
            // Left to the driver, which reads the outbox after its next event.
            Err(e) => debug!(error = %e, "request channel busy; row left to the drain"),
        }
    }

    /// The camera's health changed: republish the retained status (when connected).
    pub fn status_changed(&self) {
        let Some(status) = &self.status else {
            return;
        };
        let mut sh = self.shared.lock();
        if !sh.connected || sh.stopping {
            return;
        }
        let msg = status(SiteState::Online, StatusReason::Running);
        publish_status(&self.client, &mut sh, &msg, self.key.as_ref());
    }

    /// Connected, and every row of the site up to the last one known is acknowledged.
    pub fn drained(&self) -> bool {
        let sh = self.shared.lock();
        sh.connected && !sh.backlog() && sh.outstanding() == 0
    }

    /// Stops the connection: publishes the offline status, drains what it can within
    /// [`STOP_FLUSH`], disconnects.
    pub async fn stop(&self) {
        {
            let mut sh = self.shared.lock();
            sh.stopping = true;
            if let Some(status) = self
                .status
                .as_ref()
                .filter(|_| sh.connected && !sh.offline_sent)
            {
                let msg = status(SiteState::Offline, StatusReason::Shutdown);
                publish_status(&self.client, &mut sh, &msg, self.key.as_ref());
                sh.offline_sent = true;
            }
        }
        self.stop.notify_one();
        let task = self.task.lock().take();
        if let Some(mut task) = task {
            if tokio::time::timeout(STOP_FLUSH + Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                warn!(site = %self.site, "MQTT link did not stop in time; dropping the connection");
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// A site connection's options for one broker.
fn options(target: &BrokerTarget, client_id: &str, login: Option<&Login>) -> rumqttc::MqttOptions {
    let mut opts = target.options(client_id, login);
    // The request channel holds at most WINDOW rows plus a few status messages; a little
    // slack means try_publish never fails for lack of room.
    opts.set_request_channel_capacity(WINDOW + 16);
    opts
}

fn publish_status(
    client: &AsyncClient,
    sh: &mut Shared,
    msg: &StatusMessage,
    key: Option<&SigningKey>,
) {
    let payload = match sign::encode(msg, key) {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "cannot serialise status");
            return;
        }
    };
    match client.try_publish(topics::status(&msg.site), QoS::AtLeastOnce, true, payload) {
        Ok(()) => sh.queued.push_back(Sent::Status),
        Err(e) => warn!(error = %e, "status not published: request channel busy"),
    }
}

struct Driver {
    site: SiteId,
    /// The brokers (cluster nodes) in failover order, never empty.
    targets: Vec<BrokerTarget>,
    failover: Failover,
    login: Option<Login>,
    client_id: String,
    shared: Arc<Mutex<Shared>>,
    client: AsyncClient,
    outbox: Outbox,
    stop: Arc<Notify>,
    status: Option<StatusFn>,
    key: Option<SigningKey>,
    metrics: LinkMetrics,
    reconnect: (Duration, Duration),
    status_refresh: Option<Duration>,
}

impl Driver {
    /// The broker the connection uses (or tries) now, for logs.
    fn broker(&self) -> &str {
        &self.targets[self.failover.current()].display
    }

    async fn run(mut self, mut el: EventLoop) {
        let mut backoff = self.reconnect.0;
        let mut up = false;
        let mut failures: u64 = 0;
        let mut flush_deadline: Option<tokio::time::Instant> = None;
        let mut disconnect_sent = false;
        let mut status_at = tokio::time::Instant::now();
        // When the current connection attempt began (the phases of a failover, in the logs).
        let mut attempt_start = std::time::Instant::now();
        loop {
            if !up {
                attempt_start = std::time::Instant::now();
            }
            if let Some(status) = self.status.as_ref().filter(|_| !up) {
                // The will is fixed per connection: refresh its time for the next attempt.
                let will = status(SiteState::Offline, StatusReason::ConnectionLost);
                if let Ok(payload) = sign::encode(&will, self.key.as_ref()) {
                    el.mqtt_options.set_last_will(LastWill::new(
                        topics::status(self.site.as_str()),
                        payload,
                        QoS::AtLeastOnce,
                        true,
                    ));
                }
            }
            let polled = if up {
                // Never cancel poll() while connected: it may be half-way through writing a
                // packet, which would leave rumqttc's state out of step with the wire.
                Some(el.poll().await)
            } else {
                // While (re)connecting nothing is on the wire yet: safe to give up for stop.
                tokio::select! {
                    r = el.poll() => Some(r),
                    _ = self.stop.notified() => None,
                }
            };
            let Some(polled) = polled else {
                if self.shared.lock().stopping {
                    break;
                }
                continue;
            };
            match polled {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    up = true;
                    backoff = self.reconnect.0;
                    let outage = self.failover.connected();
                    let broker = self.broker();
                    let connack_ms = attempt_start.elapsed().as_millis() as u64;
                    if let Some((lost, attempts)) = outage {
                        let outage_ms = lost.as_millis() as u64;
                        info!(broker = %broker, client_id = %self.client_id, outage_ms, attempts, connack_ms, "connected to MQTT broker {broker} {outage_ms} ms after losing the connection ({attempts} attempt(s))");
                    } else if failures > 0 {
                        info!(broker = %broker, client_id = %self.client_id, "connected to MQTT broker {broker} after {failures} failed attempt(s)");
                    } else {
                        info!(broker = %broker, client_id = %self.client_id, "connected to MQTT broker {broker}");
                    }
                    failures = 0;
                    self.metrics
                        .connected
                        .with_label_values(&[&self.site])
                        .set(1);
                    let mut sh = self.shared.lock();
                    sh.connected = true;
                    sh.generation += 1;
                    sh.cursor = 0;
                    sh.queued.clear();
                    sh.inflight.clear();
                    if let Some(status) = &self.status {
                        let msg = if sh.stopping {
                            sh.offline_sent = true;
                            status(SiteState::Offline, StatusReason::Shutdown)
                        } else {
                            status(SiteState::Online, StatusReason::Running)
                        };
                        publish_status(&self.client, &mut sh, &msg, self.key.as_ref());
                        status_at = tokio::time::Instant::now();
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let in_step = {
                        let mut sh = self.shared.lock();
                        match sh.queued.pop_front() {
                            Some(s) if !sh.inflight.contains_key(&pkid) => {
                                sh.inflight.insert(pkid, s);
                                true
                            }
                            _ => false,
                        }
                    };
                    if !in_step {
                        // Cannot happen with a broker that acks in order; if it does, the
                        // mapping is no longer trustworthy: start a fresh connection rather
                        // than risk deleting a row that was not acknowledged.
                        error!(pkid, "packet ids out of step; reconnecting");
                        let acked = self.forget_connection(&mut el);
                        for s in acked {
                            self.acked(s).await;
                        }
                        self.metrics
                            .connected
                            .with_label_values(&[&self.site])
                            .set(0);
                        up = false;
                        continue;
                    }
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    let sent = self.shared.lock().inflight.remove(&ack.pkid);
                    match sent {
                        Some(s) => self.acked(s).await,
                        None => warn!(pkid = ack.pkid, "PUBACK for nothing in flight"),
                    }
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    debug!("disconnect sent");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    let acked = self.forget_connection(&mut el);
                    for s in acked {
                        self.acked(s).await;
                    }
                    self.metrics
                        .connected
                        .with_label_values(&[&self.site])
                        .set(0);
                    if self.shared.lock().stopping {
                        break;
                    }
                    // Another node of a cluster is tried at once; a full round of failures
                    // waits (with one broker: every failure, as it always did).
                    let failed_from = self.failover.current();
                    if up {
                        self.failover.lost();
                    }
                    let round_over = self.failover.failed();
                    let wait = if up {
                        let broker = &self.targets[failed_from].display;
                        warn!(broker = %broker, error = %e, "lost the connection to MQTT broker {broker}; reconnecting");
                        if round_over {
                            self.reconnect.0
                        } else {
                            Duration::ZERO
                        }
                    } else {
                        failures += 1;
                        self.metrics
                            .connect_failures
                            .with_label_values(&[&self.site])
                            .inc();
                        // Failing over between cluster nodes: a short steady pause (the new
                        // stream leader answers only CONNECTs sent after its election).
                        let pause = self.failover.pause();
                        let wait = if round_over {
                            pause.unwrap_or(backoff)
                        } else {
                            Duration::ZERO
                        };
                        debug!(broker = %self.targets[failed_from].display, attempt_ms = attempt_start.elapsed().as_millis() as u64, since_loss_ms = self.failover.since_loss().map(|d| d.as_millis() as u64), error = %e, "connection attempt failed");
                        self.log_connect_error(&e, failed_from, failures, wait);
                        if round_over && pause.is_none() {
                            backoff = (backoff * 2).min(self.reconnect.1);
                        }
                        wait
                    };
                    if self.targets.len() > 1 {
                        let next = &self.targets[self.failover.current()];
                        debug!(broker = %next.display, "trying MQTT broker {} next", next.display);
                        // The event loop (and the request channel the producer holds) stays;
                        // only where it connects changes. The will is set again above.
                        el.mqtt_options = options(next, &self.client_id, self.login.as_ref());
                    }
                    up = false;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.notified() => {
                            if self.shared.lock().stopping {
                                break;
                            }
                        }
                    }
                    continue;
                }
            }
            if !up {
                continue;
            }
            let stopping = self.shared.lock().stopping;
            if !stopping {
                // The event loop wakes at least once per keep-alive (its ping), so the refresh
                // comes within `status_refresh` + keep-alive.
                if let (Some(every), Some(status)) = (self.status_refresh, &self.status) {
                    if status_at.elapsed() >= every {
                        let msg = status(SiteState::Online, StatusReason::Running);
                        publish_status(
                            &self.client,
                            &mut self.shared.lock(),
                            &msg,
                            self.key.as_ref(),
                        );
                        status_at = tokio::time::Instant::now();
                    }
                }
                self.top_up().await;
                continue;
            }
            // Stopping: keep draining until the backlog is gone or the flush time is over, then
            // disconnect cleanly once nothing is in flight, so the broker does not fire the
            // will on top of the shutdown status.
            let deadline =
                *flush_deadline.get_or_insert_with(|| tokio::time::Instant::now() + STOP_FLUSH);
            if tokio::time::Instant::now() < deadline {
                self.top_up().await;
            }
            let idle = self.shared.lock().outstanding() == 0;
            if idle && !disconnect_sent {
                disconnect_sent = self.client.try_disconnect().is_ok();
            }
        }
        self.metrics
            .connected
            .with_label_values(&[&self.site])
            .set(0);
        self.shared.lock().connected = false;
    }

    /// After a connection error: forget what was in flight (the rows stay in the outbox) and
    /// empty rumqttc's queues, which a clean session would discard at the next connect anyway.
    /// Returns acks that arrived before the error and were still buffered.
    fn forget_connection(&self, el: &mut EventLoop) -> Vec<Sent> {
        let mut sh = self.shared.lock();
        sh.connected = false;
        let mut acked = Vec::new();
        // Events rumqttc read before the error but has not handed out yet.
        while let Some(ev) = el.state.events.pop_front() {
            match ev {
                Event::Outgoing(Outgoing::Publish(pkid)) => {
                    if let Some(s) = sh.queued.pop_front() {
                        sh.inflight.insert(pkid, s);
                    }
                }
                Event::Incoming(Incoming::PubAck(ack)) => {
                    if let Some(s) = sh.inflight.remove(&ack.pkid) {
                        acked.push(s);
                    }
                }
                _ => {}
            }
        }
        // poll() already moved unacked publishes and the channel's requests to `pending`; a
        // request the producer sent after that is still in the channel: clean() takes it too.
        el.clean();
        el.pending.clear();
        sh.queued.clear();
        sh.inflight.clear();
        sh.cursor = 0;
        acked
    }

    fn log_connect_error(&self, e: &ConnectionError, at: usize, attempt: u64, retry: Duration) {
        let retry_s = retry.as_secs_f64();
        let broker = &self.targets[at].display;
        match e {
            ConnectionError::ConnectionRefused(
                code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
            ) => error!(
                broker = %broker,
                client_id = %self.client_id,
                attempt,
                retry_in_s = retry_s,
                "MQTT broker {broker} refused the connection ({code:?}): check mqtt.username and mqtt.password",
            ),
            ConnectionError::ConnectionRefused(code) => error!(
                broker = %broker,
                attempt,
                retry_in_s = retry_s,
                "MQTT broker {broker} refused the connection ({code:?})",
            ),
            ConnectionError::Tls(t) => error!(
                broker = %broker,
                attempt,
                retry_in_s = retry_s,
                "TLS with MQTT broker {broker} failed: {t} (check mqtt.ca_file and the broker's certificate)",
            ),
            other => {
                // An unreachable broker is an outage, not a misconfiguration: say it once
                // loudly, then quietly while retrying.
                if attempt <= 1 || attempt.is_multiple_of(10) {
                    warn!(broker = %broker, attempt, retry_in_s = retry_s, error = %other, "cannot reach MQTT broker {broker}; messages wait in the outbox");
                } else {
                    debug!(broker = %broker, attempt, error = %other, "cannot reach MQTT broker");
                }
            }
        }
    }

    async fn acked(&self, s: Sent) {
        let Sent::Row {
            id,
            created_ms,
            kind,
        } = s
        else {
            return;
        };
        let latency = (Utc::now().timestamp_millis() - created_ms).max(0) as f64 / 1000.0;
        self.metrics
            .latency
            .with_label_values(&[kind.as_str()])
            .observe(latency);
        timing::record_secs(
            match kind {
                MsgKind::Incident => Stage::PublishIncident,
                MsgKind::Counts => Stage::PublishCounts,
            },
            latency,
        );
        self.metrics
            .published
            .with_label_values(&[self.site.as_str(), kind.as_str()])
            .inc();
        match self.outbox.delete(id).await {
            Ok(true) => self.metrics.pending.with_label_values(&[&self.site]).dec(),
            Ok(false) => {}
            // The row stays and will be sent again after a restart: a duplicate, never a loss.
            Err(e) => error!(id, error = %e, "cannot delete an acknowledged outbox row"),
        }
    }

    /// Sends outbox rows while the window has room and rows are waiting.
    async fn top_up(&self) {
        loop {
            let (generation, from, to, room) = {
                let sh = self.shared.lock();
                let room = WINDOW.saturating_sub(sh.outstanding());
                if !sh.connected || room == 0 || !sh.backlog() {
                    return;
                }
                (sh.generation, sh.cursor, sh.last_enqueued, room)
            };
            let rows = match self
                .outbox
                .read_site(self.site.as_str(), from, to, room)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "cannot read the outbox");
                    return;
                }
            };
            let mut sh = self.shared.lock();
            if sh.generation != generation || !sh.connected {
                return;
            }
            let n = rows.len();
            for row in rows {
                let sent = Sent::Row {
                    id: row.id,
                    created_ms: row.created_ms,
                    kind: row.kind,
                };
                let id = row.id;
                if let Err(e) =
                    self.client
                        .try_publish(row.topic, QoS::AtLeastOnce, row.retain, row.payload)
                {
                    debug!(error = %e, "request channel busy");
                    return;
                }
                sh.queued.push_back(sent);
                sh.cursor = id + 1;
            }
            if n < room {
                // Every row up to `to` was read: the rest of the range belongs to other sites
                // (ids are global) or was evicted.
                sh.cursor = sh.cursor.max(to + 1);
            }
        }
    }
}
