//! The desk's two MQTT connections: the incident subscriber (intake) and the status publisher
//! (drains the `status_outbox` table). Both reconnect with backoff and never end the service.
//!
//! How they connect ([`DeskClient`]): `desk.mqtt.broker` with `desk.mqtt.ca_file` for TLS, the
//! login `desk.mqtt.username` / `password` or the `desk` user of `desk.mqtt.credentials_file`,
//! whose `signing_key`s switch signature checks on. When the broker is the managed one of
//! `simpang run` on the same config (`mqtt.broker = "embedded"` and this URL points at its
//! listener), the files it generated are used without being named: `{data_dir}/mqtt/clients/
//! desk.toml` and, for its TLS listener, `{data_dir}/mqtt/tls/ca.pem`. Settings are read again
//! at every connection attempt after a refusal, so rotated credentials are picked up.
//!
//! With `desk.mqtt.brokers` (the nodes of a broker cluster) each connection starts on a node
//! picked by its client id, a connection error moves it to the next node at once, and a full
//! round of failures waits 250 ms while failing over, the backoff otherwise ([`Failover`]).
//! The log says how long each failover took (`outage_ms`, `attempts`, `connack_ms`). The
//! intake's persistent session lives in the cluster, not in one node, so on another node it
//! resumes (`session_present`) and gets what was not acknowledged again; intake is idempotent
//! by incident id and `seq`, so those repeats change nothing.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use tokio_util::sync::CancellationToken;

use super::store;
use super::Desk;
use crate::config::desk::DeskMqtt;
use crate::config::Config;
use crate::incident::access::DESK_USER;
use crate::incident::broker::Failover;
use crate::incident::broker::MAX_PACKET;
use crate::incident::secrets::{Credentials, Login};
use crate::incident::sign::SigningKey;
use crate::incident::{BrokerTarget, EmbeddedFiles};

/// A broker setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error(transparent)]
    Broker(#[from] crate::incident::BrokerError),
    #[error("desk.mqtt.credentials_file: {0}")]
    Credentials(String),
}

/// How the desk connects: the broker, its login, the sites' signing keys.
#[derive(Clone, Debug)]
pub struct DeskClient {
    /// The broker, or the nodes of a broker cluster in failover order (never empty).
    pub targets: Vec<BrokerTarget>,
    pub login: Option<Login>,
    /// Each site's signing key; empty: signatures are not checked.
    pub keys: HashMap<String, SigningKey>,
    /// Where the login came from, for logs.
    pub source: String,
}

impl DeskClient {
    /// Resolves `[desk.mqtt]` (see the module doc).
    pub fn from_config(cfg: &Config) -> Result<Self, MqttSetupError> {
        let d = &cfg.desk.mqtt;
        let urls = d.broker_urls();
        // A cluster is never the managed (single) broker of `simpang run`.
        let managed = urls.len() == 1 && points_at_managed_broker(cfg, &d.broker);
        let files = EmbeddedFiles::of(cfg);
        let creds_path: Option<PathBuf> = match (&d.credentials_file, managed) {
            (Some(p), _) => Some(cfg.resolve(p)),
            (None, true) if d.username.is_none() => Some(files.client(DESK_USER)),
            _ => None,
        };
        let ca = match (&d.ca_file, managed) {
            (Some(p), _) => Some(cfg.resolve(p)),
            (None, true) if cfg.mqtt.embedded_tls_cert.is_none() => Some(files.ca()),
            _ => None,
        };
        let keep_alive = Duration::from_secs(d.keep_alive_s.max(5));
        let targets = BrokerTarget::from_urls(&urls, ca.as_deref(), keep_alive, "desk.mqtt")?;
        let creds = match &creds_path {
            Some(p) => Some(Credentials::load(p).map_err(|e| {
                MqttSetupError::Credentials(if managed && d.credentials_file.is_none() {
                    format!("{e} (the managed broker of `simpang run` writes it at its start)")
                } else {
                    e.to_string()
                })
            })?),
            None => None,
        };
        let user = d
            .username
            .clone()
            .or_else(|| creds.as_ref().map(|_| DESK_USER.to_string()));
        let login = match user {
            None => None,
            Some(u) => {
                let password = match (&d.password, &creds) {
                    (Some(p), _) => p.clone(),
                    (None, Some(c)) => c.password(&u).map(str::to_string).ok_or_else(|| {
                        MqttSetupError::Credentials(format!(
                            "no password for user {u:?} in {}",
                            creds_path
                                .as_deref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default()
                        ))
                    })?,
                    (None, None) => String::new(),
                };
                Some(Login {
                    username: u,
                    password,
                })
            }
        };
        let keys = match &creds {
            Some(c) => c
                .signing_keys()
                .map_err(|e| MqttSetupError::Credentials(e.to_string()))?,
            None => HashMap::new(),
        };
        Ok(Self {
            targets,
            login,
            keys,
            source: match &creds_path {
                Some(p) => p.display().to_string(),
                None if d.username.is_some() => "desk.mqtt.username".into(),
                None => "anonymous".into(),
            },
        })
    }

    /// The broker at `at` of the list (wrapping), for logs.
    pub fn broker(&self, at: usize) -> &str {
        &self.targets[at % self.targets.len()].display
    }

    /// Options for one of the desk's connections, to the broker at `at` of the list.
    pub fn options(&self, cfg: &DeskMqtt, at: usize, client_id: &str) -> MqttOptions {
        let target = &self.targets[at % self.targets.len()];
        let mut o = target.options(client_id, self.login.as_ref());
        // A message over `max_message_bytes` must still arrive so that intake dead-letters
        // and acknowledges it: a packet the client refuses drops the connection, and the
        // broker would send the same packet again at every reconnect. So the client takes
        // what the managed broker lets through (an external broker should set the same
        // `max_packet_size`, docs/security.md).
        let incoming = cfg.max_message_bytes.max(MAX_PACKET) + 1024;
        o.set_max_packet_size(incoming, 256 * 1024);
        o
    }
}

/// True when `url` is the managed broker of `simpang run` on this config: `mqtt.broker =
/// "embedded"` and the URL's host and port are one of its listeners (loopback names match a
/// wildcard or loopback listen address).
fn points_at_managed_broker(cfg: &Config, url: &str) -> bool {
    if cfg.mqtt.broker != "embedded" {
        return false;
    }
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let tls = crate::config::broker_uses_tls(url);
    let port = u.port().unwrap_or(if tls { 8883 } else { 1883 });
    let host = u.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let ip: Option<IpAddr> = if host == "localhost" {
        Some([127, 0, 0, 1].into())
    } else {
        host.parse().ok()
    };
    let listen: Option<SocketAddr> = if tls {
        cfg.mqtt.embedded_tls_listen
    } else {
        Some(cfg.mqtt.embedded_listen)
    };
    match (ip, listen) {
        (Some(ip), Some(l)) if l.port() == port => {
            // A socket bound to 127.0.0.1 takes neither ::1 nor 127.0.0.2; a wildcard one takes
            // the loopback address of its own family.
            ip == l.ip()
                || (l.ip().is_unspecified() && ip.is_loopback() && ip.is_ipv4() == l.is_ipv4())
        }
        _ => false,
    }
}

/// Reconnect delay: doubles from `backoff_initial_s` to `backoff_max_s`, resets on connect.
struct Backoff {
    now: f64,
    initial: f64,
    max: f64,
}

impl Backoff {
    fn new(cfg: &DeskMqtt) -> Self {
        Self {
            now: cfg.backoff_initial_s,
            initial: cfg.backoff_initial_s,
            max: cfg.backoff_max_s,
        }
    }
    fn reset(&mut self) {
        self.now = self.initial;
    }
    fn next(&mut self) -> Duration {
        let d = Duration::from_secs_f64(self.now);
        self.now = (self.now * 2.0).min(self.max);
        d
    }
}

/// Reads the connection settings, retrying with backoff while they cannot be read (a
/// credentials or CA file not there yet). `None` when cancelled.
async fn load_settings(
    desk: &Desk,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
    who: &str,
) -> Option<DeskClient> {
    let mut failures = 0u32;
    loop {
        match DeskClient::from_config(desk.config()) {
            Ok(c) => {
                tracing::debug!(broker = %crate::incident::broker::describe(&c.targets), login = %c.source, signing_keys = c.keys.len(), "{who}: connection settings");
                return Some(c);
            }
            Err(e) => {
                failures += 1;
                let wait = backoff.next();
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::error!(error = %e, retry_in_s = wait.as_secs_f64(), "{who}: cannot connect to the MQTT broker yet");
                }
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// A refusal that new settings could cure: the login, or the broker's certificate.
fn is_refusal(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized
        ) | ConnectionError::Tls(_)
    )
}

/// Subscribes to incidents and applies each. The broker keeps the desk's session (fixed client
/// id, no clean session), and a message is acknowledged only once it is stored (or
/// dead-lettered) and that commit is on disk, so incidents published while the desk is down
/// or mid-write are not lost.
pub async fn run_intake(desk: Arc<Desk>, cancel: CancellationToken) {
    let cfg = desk.desk_config().mqtt.clone();
    let mut backoff = Backoff::new(&cfg);
    let mut failover: Option<Failover> = None;
    while let Some(settings) = load_settings(&desk, &cancel, &mut backoff, "incident intake").await
    {
        desk.intake.set_keys(settings.keys.clone());
        let failover = failover
            .get_or_insert_with(|| Failover::spread(settings.targets.len(), &cfg.client_id));
        let intake_options = |at: usize| {
            let mut opts = settings.options(&cfg, at, &cfg.client_id);
            opts.set_clean_session(false);
            opts.set_manual_acks(true);
            opts
        };
        let (client, mut events) = AsyncClient::new(intake_options(failover.current()), 64);
        // The phases of a failover, for the logs: when this connection attempt began, and when
        // the connection came back (until the SUBACK).
        let mut up = false;
        let mut attempt_start = std::time::Instant::now();
        let mut reconnected: Option<(std::time::Instant, Duration)> = None;
        let reload = loop {
            if !up {
                attempt_start = std::time::Instant::now();
            }
            let ev = tokio::select! {
                _ = cancel.cancelled() => break false,
                ev = events.poll() => ev,
            };
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    up = true;
                    backoff.reset();
                    let outage = failover.connected();
                    let connack_ms = attempt_start.elapsed().as_millis() as u64;
                    let broker = settings.broker(failover.current());
                    if let Some((lost, attempts)) = outage {
                        reconnected = Some((std::time::Instant::now(), lost));
                        tracing::info!(broker = %broker, session_present = ack.session_present, outage_ms = lost.as_millis() as u64, attempts, connack_ms, "incident intake connected again");
                    } else {
                        tracing::info!(broker = %broker, login = %settings.source, signing_keys = settings.keys.len(), session_present = ack.session_present, connack_ms, "incident intake connected");
                    }
                    if ack.session_present {
                        desk.intake.set_subscribed(true);
                        tracing::info!(topic = %cfg.incidents_topic, "incident intake subscribed (the broker kept the session)");
                    } else if let Err(e) =
                        client.try_subscribe(cfg.incidents_topic.clone(), QoS::AtLeastOnce)
                    {
                        tracing::error!(error = %e, "cannot subscribe to incidents");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    desk.intake.set_subscribed(true);
                    let since_loss_ms = reconnected
                        .take()
                        .map(|(at, lost)| (lost + at.elapsed()).as_millis() as u64);
                    tracing::info!(topic = %cfg.incidents_topic, since_loss_ms, "incident intake subscribed");
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    match desk.intake.apply_incident(&p.topic, &p.payload).await {
                        Ok(outcome) => {
                            tracing::debug!(?outcome, "incident message handled");
                            if let Err(e) = client.try_ack(&p) {
                                tracing::warn!(error = %e, "cannot acknowledge incident message");
                            }
                        }
                        // Not acknowledged: the broker redelivers it on the next connection.
                        Err(e) => {
                            tracing::error!(error = %e, topic = %p.topic, "incident not stored")
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    desk.intake.set_subscribed(false);
                    let broker = settings.broker(failover.current()).to_string();
                    let was_up = std::mem::replace(&mut up, false);
                    reconnected = None;
                    if was_up {
                        failover.lost();
                    }
                    // The next node of a cluster at once; a full round of failures waits: a
                    // short pause while failing over (a new stream leader is being elected,
                    // broker.rs FAILOVER_WINDOW), else the backoff.
                    let wait = if failover.failed() {
                        failover.pause().unwrap_or_else(|| backoff.next())
                    } else {
                        Duration::ZERO
                    };
                    let refused = is_refusal(&e);
                    let attempt_ms = attempt_start.elapsed().as_millis() as u64;
                    if refused {
                        tracing::error!(error = %e, retry_in_s = wait.as_secs_f64(), broker = %broker, login = %settings.source, "incident intake: the broker refused the connection (check desk.mqtt.credentials_file, username, password, ca_file)");
                    } else if was_up {
                        tracing::warn!(error = %e, retry_in_s = wait.as_secs_f64(), broker = %broker, next = %settings.broker(failover.current()), "incident intake: broker connection lost");
                    } else if failover.since_loss().is_some() {
                        // Failing over: each try of the round, quietly.
                        tracing::info!(error = %e, attempt_ms, since_loss_ms = failover.since_loss().map(|d| d.as_millis() as u64), retry_in_s = wait.as_secs_f64(), broker = %broker, next = %settings.broker(failover.current()), "incident intake: connection attempt failed");
                    } else {
                        tracing::warn!(error = %e, attempt_ms, retry_in_s = wait.as_secs_f64(), broker = %broker, next = %settings.broker(failover.current()), "incident intake: cannot connect to the broker");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => break false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    if refused {
                        break true;
                    }
                    // Same event loop (its pending SUBSCRIBE and session state), next broker.
                    events.mqtt_options = intake_options(failover.current());
                }
            }
        };
        desk.intake.set_subscribed(false);
        let _ = client.try_disconnect();
        if !reload {
            break;
        }
    }
}

/// How long a claim on a status message holds (seconds) unless renewed: a desk killed while
/// publishing leaves its claims to expire, then another desk sends those messages.
const CLAIM_S: i64 = 30;

/// Publishes queued status messages at QoS 1 and marks each published when the broker
/// acknowledges it. Each connection starts from a fresh client, so the mapping from packet ids
/// to outbox rows never mixes with a previous connection's; unacknowledged rows are sent again.
/// Several desks on one database share the outbox: each message is claimed by one of them
/// ([`store::outbox_claim`]) before it is sent, so none is sent twice while its claimant lives.
pub async fn run_status_publisher(desk: Arc<Desk>, cancel: CancellationToken) {
    let cfg = desk.desk_config().mqtt.clone();
    let client_id = format!("{}-status", cfg.client_id);
    let wake = desk.core.outbox_wake.clone();
    let mut backoff = Backoff::new(&cfg);
    let mut failover: Option<Failover> = None;
    while !cancel.is_cancelled() {
        let Some(settings) = load_settings(&desk, &cancel, &mut backoff, "status publisher").await
        else {
            break;
        };
        let failover =
            failover.get_or_insert_with(|| Failover::spread(settings.targets.len(), &client_id));
        let opts = settings.options(&cfg, failover.current(), &client_id);
        let (client, events) = AsyncClient::new(opts, 256);
        let connected = publish_session(&desk, &client, events, &wake, &cancel, &mut backoff).await;
        let _ = client.try_disconnect();
        // What this connection claimed and the broker did not acknowledge goes back to the
        // outbox for whichever desk publishes next (this one after a reconnect).
        if let Err(e) = store::outbox_release(desk.store().pool(), &desk.core.instance, None).await
        {
            tracing::warn!(error = %e, "cannot release claimed status messages (they free themselves in {CLAIM_S} s)");
        }
        if cancel.is_cancelled() {
            break;
        }
        if connected {
            failover.connected();
            failover.lost();
        }
        let broker = settings.broker(failover.current()).to_string();
        // The next node of a cluster at once; a full round of failures waits (briefly while
        // failing over, as the intake).
        let wait = if failover.failed() {
            failover.pause().unwrap_or_else(|| backoff.next())
        } else {
            Duration::ZERO
        };
        if connected {
            tracing::warn!(
                retry_in_s = wait.as_secs_f64(),
                broker = %broker,
                next = %settings.broker(failover.current()),
                "status publisher: broker connection lost"
            );
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One connection's life; true if it got connected at all.
async fn publish_session(
    desk: &Desk,
    client: &AsyncClient,
    mut events: EventLoop,
    wake: &tokio::sync::Notify,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> bool {
    let mut connected = false;
    // Outbox ids handed to the client, in order, waiting for their packet id.
    let mut queued: VecDeque<i64> = VecDeque::new();
    let mut inflight: HashMap<u16, i64> = HashMap::new();
    let me = desk.core.instance.as_str();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut pruned: Option<std::time::Instant> = None;
    // Set when the desk stops: what was sent waits for its acknowledgement until then (another
    // desk would send an unacknowledged message again once the claim is released).
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        if drain_until.is_some() && queued.is_empty() && inflight.is_empty() {
            return connected;
        }
        let mut send = false;
        tokio::select! {
            _ = cancel.cancelled(), if drain_until.is_none() => {
                drain_until = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                continue;
            }
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(tokio::time::Instant::now)), if drain_until.is_some() => {
                return connected;
            }
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    backoff.reset();
                    send = true;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(id) = queued.pop_front() {
                        inflight.insert(pkid, id);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(id) = inflight.remove(&ack.pkid) {
                        if let Err(e) = store::outbox_done(desk.store().pool(), id, desk.clock.now()).await {
                            tracing::error!(error = %e, "cannot mark status message published");
                        }
                    }
                    send = true;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "status publisher connection error");
                    return connected;
                }
            },
            _ = wake.notified(), if connected => send = true,
            _ = tick.tick(), if connected => {
                send = true;
                // Messages waiting for their acknowledgement stay ours.
                if !queued.is_empty() || !inflight.is_empty() {
                    let until = desk.clock.now() + CLAIM_S;
                    if let Err(e) = store::outbox_renew(desk.store().pool(), me, until).await {
                        tracing::warn!(error = %e, "cannot renew claims on status messages");
                    }
                }
                // Published rows are kept a week for inspection, then dropped (hourly check).
                if pruned.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                    pruned = Some(std::time::Instant::now());
                    let week_ago = desk.clock.now() - 7 * 86_400;
                    if let Err(e) = store::outbox_prune(desk.store().pool(), week_ago).await {
                        tracing::warn!(error = %e, "cannot prune the status outbox");
                    }
                }
            }
        }
        if send && connected && drain_until.is_none() && queued.len() + inflight.len() < 100 {
            let now = desk.clock.now();
            let rows = match store::outbox_claim(desk.store(), me, now, now + CLAIM_S, 50).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim from the status outbox");
                    continue;
                }
            };
            let mut unsent = Vec::new();
            for row in rows {
                if !unsent.is_empty() {
                    unsent.push(row.id);
                    continue;
                }
                let id = row.id;
                match client.try_publish(row.topic, QoS::AtLeastOnce, false, row.payload) {
                    Ok(()) => queued.push_back(id),
                    Err(_) => unsent.push(id),
                }
            }
            if !unsent.is_empty() {
                if let Err(e) = store::outbox_release(desk.store().pool(), me, Some(&unsent)).await
                {
                    tracing::warn!(error = %e, "cannot release unsent status messages");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let mut cfg = Config::from_str_at(
            "[city]\nname = \"P\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:1\"\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://127.0.0.1:1/a\"\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap();
        let cases = [
            ("mqtt://127.0.0.1:1883", Some(("127.0.0.1", 1883))),
            ("mqtt://broker.local", Some(("broker.local", 1883))),
            ("tcp://10.0.0.5:11883", Some(("10.0.0.5", 11883))),
            (
                "mqtts://broker.example:8884",
                Some(("broker.example", 8884)),
            ),
            ("http://x:80", None),
            ("not a url", None),
            ("mqtt://", None),
        ];
        for (url, want) in cases {
            cfg.desk.mqtt.broker = url.into();
            let got = DeskClient::from_config(&cfg).ok().map(|c| {
                let o = c.options(&cfg.desk.mqtt, 0, "t");
                o.broker_address()
            });
            assert_eq!(got.as_ref().map(|(h, p)| (h.as_str(), *p)), want, "{url}");
        }
    }

    /// The desk finds the managed broker's files by itself only when its URL is that broker.
    #[test]
    fn managed_broker_is_recognised_by_its_listeners() {
        let cfg = Config::from_str_at(
            "[city]\nname = \"P\"\n[mqtt]\nembedded_listen = \"127.0.0.1:18830\"\nembedded_tls_listen = \"0.0.0.0:18831\"\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://127.0.0.1:1/a\"\n",
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap();
        let cases = [
            ("mqtt://127.0.0.1:18830", true),
            ("mqtt://localhost:18830", true),
            ("mqtt://127.0.0.1:1883", false),
            ("mqtts://localhost:18831", true),
            ("mqtts://127.0.0.1:18830", false),
            ("mqtt://10.0.0.5:18830", false),
            ("mqtt://[::1]:18830", false),
        ];
        for (url, want) in cases {
            assert_eq!(points_at_managed_broker(&cfg, url), want, "{url}");
        }
        // Then the desk's login comes from the generated client file (missing here: a clear
        // error naming it and who writes it).
        let mut cfg = cfg;
        cfg.desk.mqtt.broker = "mqtt://127.0.0.1:18830".into();
        cfg.data_dir = std::path::PathBuf::from("/nonexistent-simpang-data");
        let e = DeskClient::from_config(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("clients/desk.toml") && e.contains("simpang run"),
            "{e}"
        );
    }

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let cfg = DeskMqtt {
            backoff_initial_s: 1.0,
            backoff_max_s: 4.0,
            ..Default::default()
        };
        let mut b = Backoff::new(&cfg);
        let got: Vec<u64> = (0..5).map(|_| b.next().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 4, 4]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }
}
