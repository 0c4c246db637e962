//! The desk's two MQTT connections: the incident subscriber (intake) and the status publisher
//! (drains the `status_outbox` table). Both reconnect with backoff and never end the service.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Transport};
use tokio_util::sync::CancellationToken;

use super::store;
use super::Desk;
use crate::config::desk::DeskMqtt;

/// A broker setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    #[error("broker URL {0:?}: {1}")]
    Url(String, String),
}

/// Connection options for `cfg.broker` with `client_id`.
pub fn options(cfg: &DeskMqtt, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
    let bad = |m: &str| MqttSetupError::Url(cfg.broker.clone(), m.to_string());
    let u = url::Url::parse(&cfg.broker).map_err(|e| bad(&e.to_string()))?;
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    let (tls, default_port) = match u.scheme() {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" => (true, 8883),
        s => return Err(bad(&format!("unsupported scheme {s:?}"))),
    };
    let mut o = MqttOptions::new(client_id, host, u.port().unwrap_or(default_port));
    if tls {
        o.set_transport(Transport::tls_with_default_config());
    }
    o.set_keep_alive(Duration::from_secs(cfg.keep_alive_s.max(5)));
    o.set_max_packet_size(cfg.max_message_bytes, 256 * 1024);
    if let Some(user) = &cfg.username {
        o.set_credentials(user, cfg.password.clone().unwrap_or_default());
    }
    Ok(o)
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

/// Subscribes to incidents and applies each. The broker keeps the desk's session (fixed client
/// id, no clean session), and a message is acknowledged only once it is stored (or
/// dead-lettered), so incidents published while the desk is down or mid-write are not lost.
pub async fn run_intake(desk: Arc<Desk>, cancel: CancellationToken) {
    let cfg = desk.desk_config().mqtt.clone();
    let mut opts = match options(&cfg, &cfg.client_id) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "incident intake disabled");
            return;
        }
    };
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    let (client, mut events) = AsyncClient::new(opts, 64);
    let mut backoff = Backoff::new(&cfg);
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = events.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                tracing::info!(broker = %cfg.broker, session_present = ack.session_present, "incident intake connected");
                if ack.session_present {
                    desk.intake.set_subscribed(true);
                } else if let Err(e) =
                    client.try_subscribe(cfg.incidents_topic.clone(), QoS::AtLeastOnce)
                {
                    tracing::error!(error = %e, "cannot subscribe to incidents");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                desk.intake.set_subscribed(true);
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
                    Err(e) => tracing::error!(error = %e, topic = %p.topic, "incident not stored"),
                }
            }
            Ok(_) => {}
            Err(e) => {
                desk.intake.set_subscribed(false);
                let wait = backoff.next();
                tracing::warn!(error = %e, retry_in_s = wait.as_secs_f64(), broker = %cfg.broker, "incident intake: broker connection lost");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    desk.intake.set_subscribed(false);
    let _ = client.try_disconnect();
}

/// Publishes queued status messages at QoS 1 and marks each published when the broker
/// acknowledges it. Each connection starts from a fresh client, so the mapping from packet ids
/// to outbox rows never mixes with a previous connection's; unacknowledged rows are sent again.
pub async fn run_status_publisher(desk: Arc<Desk>, cancel: CancellationToken) {
    let cfg = desk.desk_config().mqtt.clone();
    let client_id = format!("{}-status", cfg.client_id);
    let opts = match options(&cfg, &client_id) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "status publishing disabled");
            return;
        }
    };
    let wake = desk.core.outbox_wake.clone();
    let mut backoff = Backoff::new(&cfg);
    while !cancel.is_cancelled() {
        let (client, events) = AsyncClient::new(opts.clone(), 256);
        let connected = publish_session(&desk, &client, events, &wake, &cancel, &mut backoff).await;
        let _ = client.try_disconnect();
        if cancel.is_cancelled() {
            break;
        }
        let wait = backoff.next();
        if connected {
            tracing::warn!(
                retry_in_s = wait.as_secs_f64(),
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
    let mut last_id = 0i64;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut pruned: Option<std::time::Instant> = None;
    loop {
        let mut send = false;
        tokio::select! {
            _ = cancel.cancelled() => return connected,
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
        if send && connected && queued.len() + inflight.len() < 100 {
            let rows = match store::outbox_pending(desk.store().pool(), last_id, 50).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the status outbox");
                    continue;
                }
            };
            for row in rows {
                match client.try_publish(row.topic, QoS::AtLeastOnce, false, row.payload) {
                    Ok(()) => {
                        queued.push_back(row.id);
                        last_id = row.id;
                    }
                    Err(_) => break,
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
        let mut cfg = DeskMqtt::default();
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
            cfg.broker = url.into();
            let got = options(&cfg, "t").ok().map(|o| {
                let (h, p) = o.broker_address();
                (h, p)
            });
            assert_eq!(got.as_ref().map(|(h, p)| (h.as_str(), *p)), want, "{url}");
        }
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
