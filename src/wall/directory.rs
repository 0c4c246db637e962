//! Which process serves each site of the deployment, for a wall that shows every site however
//! many analytics nodes share the config (docs/deploy.md, "One wall for all nodes").
//!
//! Each site's retained status message (`simpang/v1/sites/{site}/status`) names the node that
//! serves it, that node's lease (the fencing token: larger is newer) and that node's wall URL.
//! [`watch`] subscribes to every site's status with a read-only login and feeds each message to
//! [`Directory::apply`]; a status whose lease is smaller than one already seen for the site is
//! stale (a dead node's last will arriving late, a retained message of an older holder) and is
//! ignored, so a tile never moves back to a node that lost the site.
//!
//! Status messages are outside data: a message whose site is not in the deployment, whose
//! topic and body disagree, that fails its signature (where the wall has the site's key) or
//! that is not JSON is dropped with a count; a wall URL that is not a plain `http(s)://host`
//! is not used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus::IntCounterVec;
use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::incident::broker::{BrokerTarget, Failover};
use crate::incident::secrets::Login;
use crate::incident::sign::{self, SigningKey};
use crate::topics;

/// What the latest (non-stale) status of a site says.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The serving node (absent from a process that is not a cluster node).
    pub node: Option<String>,
    pub lease: Option<u64>,
    /// The serving process's wall, `http(s)://host[:port]` (validated).
    pub wall: Option<String>,
    /// The producer is connected (`state = online`).
    pub online: bool,
    /// The camera delivers, by the producer's word (`camera_health.online`).
    pub camera_online: Option<bool>,
    pub last_frame_at: Option<String>,
    pub last_error: Option<String>,
    /// When the producer wrote the message.
    pub at: String,
}

/// The fields of a status message the wall reads. Not `deny_unknown_fields`: a newer producer
/// may add fields without blinding older walls.
#[derive(Deserialize)]
struct Wire {
    site: String,
    state: String,
    at: String,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    lease: Option<u64>,
    #[serde(default)]
    wall: Option<String>,
    #[serde(default)]
    camera_health: Option<WireHealth>,
}

#[derive(Deserialize)]
struct WireHealth {
    online: bool,
    #[serde(default)]
    last_frame_at: Option<String>,
    #[serde(default)]
    last_error: Option<String>,
}

/// What [`Directory::apply`] did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Taken: the site's placement is this message's now.
    Taken,
    /// A smaller lease than one already seen for the site: ignored.
    Stale { seen: u64, got: u64 },
    /// Dropped: not JSON, another site's body, a site outside the deployment, a bad signature.
    Refused(String),
}

/// Every deployment site's latest placement.
pub struct Directory {
    /// The deployment's site ids (the shared config's).
    sites: Vec<String>,
    seen: RwLock<HashMap<String, Placement>>,
    /// Signing keys by site: a site with a key must have its messages signed with it.
    keys: HashMap<String, SigningKey>,
    connected: AtomicBool,
    messages: Option<IntCounterVec>,
}

impl Directory {
    pub fn new(sites: Vec<String>, keys: HashMap<String, SigningKey>) -> Self {
        Self {
            sites,
            seen: RwLock::default(),
            keys,
            connected: AtomicBool::new(false),
            messages: None,
        }
    }

    /// Counts every message by outcome in `simpang_wall_directory_messages_total{outcome}`.
    pub fn with_metrics(mut self, c: IntCounterVec) -> Self {
        for o in ["taken", "stale", "refused"] {
            c.with_label_values(&[o]);
        }
        self.messages = Some(c);
        self
    }

    /// Whether `site` is a site of the deployment.
    pub fn knows(&self, site: &str) -> bool {
        self.sites.iter().any(|s| s == site)
    }

    /// The deployment's sites, in config order.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    pub fn get(&self, site: &str) -> Option<Placement> {
        self.seen.read().get(site).cloned()
    }

    /// Whether the status subscription is up (the page says when placements may be old).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: &str) {
        if let Some(c) = &self.messages {
            c.with_label_values(&[outcome]).inc();
        }
    }

    /// Takes one status message from `topic`.
    pub fn apply(&self, topic: &str, payload: &[u8]) -> Applied {
        let r = self.apply_inner(topic, payload);
        match &r {
            Applied::Taken => self.count("taken"),
            Applied::Stale { .. } => self.count("stale"),
            Applied::Refused(why) => {
                self.count("refused");
                debug!(%topic, why, "status message not used by the wall");
            }
        }
        r
    }

    fn apply_inner(&self, topic: &str, payload: &[u8]) -> Applied {
        let Some(site) = topic
            .strip_prefix(topics::SITES)
            .and_then(|t| t.strip_prefix('/'))
            .and_then(|t| t.strip_suffix(topics::STATUS))
            .and_then(|t| t.strip_suffix('/'))
        else {
            return Applied::Refused("not a status topic".into());
        };
        if !self.knows(site) {
            return Applied::Refused(format!("site {site:?} is not in this deployment's config"));
        }
        if payload.is_empty() {
            // A retained message cleared by an operator: nothing to learn.
            return Applied::Refused("empty payload".into());
        }
        let body = match self.keys.get(site) {
            Some(key) => match sign::verify(key, payload) {
                Ok(b) => b,
                Err(e) => return Applied::Refused(format!("signature: {e}")),
            },
            None => match sign::split(payload) {
                Ok(s) => s.signed.into_owned(),
                Err(e) => return Applied::Refused(format!("signature field: {e}")),
            },
        };
        let w: Wire = match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => return Applied::Refused(format!("not a status message: {e}")),
        };
        if w.site != site {
            return Applied::Refused(format!("body names site {:?}", w.site));
        }
        let mut seen = self.seen.write();
        if let (Some(old), Some(got)) = (seen.get(site).and_then(|p| p.lease), w.lease) {
            if got < old {
                return Applied::Stale { seen: old, got };
            }
        }
        let health = w.camera_health;
        seen.insert(
            site.to_string(),
            Placement {
                node: w.node.filter(|n| n.len() <= 64),
                lease: w.lease,
                wall: w.wall.as_deref().and_then(wall_url),
                online: w.state == "online",
                camera_online: health.as_ref().map(|h| h.online),
                last_frame_at: health.as_ref().and_then(|h| h.last_frame_at.clone()),
                last_error: health.and_then(|h| h.last_error),
                at: w.at,
            },
        );
        Applied::Taken
    }
}

/// `url` when it is a plain `http(s)://host[:port]` (a trailing `/` dropped): what a browser
/// may be sent to with a ticket. Anything else (a path, a query, credentials, another scheme).
pub fn wall_url(url: &str) -> Option<String> {
    if url.len() > 512 {
        return None;
    }
    let u = url::Url::parse(url).ok()?;
    let ok = matches!(u.scheme(), "http" | "https")
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && (u.path() == "/" || u.path().is_empty())
        && u.query().is_none()
        && u.fragment().is_none();
    ok.then(|| url.trim_end_matches('/').to_string())
}

/// The WebSocket URL of `/live/{site}` on the wall at `base` (`http` -> `ws`, `https` -> `wss`).
pub fn live_ws_url(base: &str, site: &str, ticket: &str) -> Option<String> {
    let rest = base
        .strip_prefix("https://")
        .map(|r| ("wss", r))
        .or_else(|| base.strip_prefix("http://").map(|r| ("ws", r)))?;
    Some(format!(
        "{}://{}/live/{}?ticket={}",
        rest.0,
        rest.1,
        super::feed::url_escape(site),
        super::feed::url_escape(ticket)
    ))
}

/// Where the wall reads status messages: the brokers (cluster nodes in failover order), the
/// read-only login, the MQTT client id.
pub struct StatusSource {
    pub targets: Vec<BrokerTarget>,
    pub login: Option<Login>,
    pub client_id: String,
    pub reconnect: (Duration, Duration),
}

/// The login the wall reads status messages with, and the sites' signing keys (when
/// `mqtt.sign_messages`): the broker's read-only `viewer` user, from the managed broker's
/// credentials or `mqtt.credentials_file` (a site producer's login may not read; `simpang
/// mqtt-credentials` gives `viewer` read access to `simpang/v1/#`), else `mqtt.username`.
pub fn status_login(
    cfg: &crate::config::Config,
    managed: Option<&crate::incident::ManagedBroker>,
) -> (Option<Login>, HashMap<String, SigningKey>) {
    use crate::incident::access::VIEWER_USER;
    let fixed = cfg.mqtt.username.as_ref().map(|u| Login {
        username: u.clone(),
        password: cfg.mqtt.password.clone().unwrap_or_default(),
    });
    let creds = match (managed, &cfg.mqtt.credentials_file) {
        (Some(b), _) => Some(b.credentials()),
        (None, Some(p)) => match crate::incident::secrets::Credentials::load(&cfg.resolve(p)) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "wall: cannot read mqtt.credentials_file for the viewer login; using mqtt.username");
                None
            }
        },
        (None, None) => None,
    };
    let Some(creds) = creds else {
        return (fixed, HashMap::new());
    };
    let keys = if cfg.mqtt.sign_messages {
        creds.signing_keys().unwrap_or_else(|e| {
            warn!(error = %e, "wall: the sites' signing keys cannot be read; status messages are taken unchecked");
            HashMap::new()
        })
    } else {
        HashMap::new()
    };
    (creds.login(VIEWER_USER).or(fixed), keys)
}

/// Subscribes to every site's status and feeds [`Directory::apply`] until cancelled; reconnects
/// (the next broker of a cluster at once, a full round of failures after a backoff) and, as the
/// session is clean, gets every retained status again on each connection.
pub async fn watch(dir: Arc<Directory>, src: StatusSource, cancel: CancellationToken) {
    if src.targets.is_empty() {
        return;
    }
    let mut failover = Failover::new(src.targets.len());
    let options = |at: usize| src.targets[at].options(&src.client_id, src.login.as_ref());
    let (client, mut events) = AsyncClient::new(options(failover.current()), 16);
    let mut backoff = src.reconnect.0;
    let mut failures = 0u64;
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => break,
            ev = events.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failover.connected();
                backoff = src.reconnect.0;
                failures = 0;
                info!(broker = %src.targets[failover.current()].display, "wall: reading every site's status");
                if let Err(e) = client.try_subscribe(topics::ALL_STATUS, QoS::AtLeastOnce) {
                    error!(error = %e, "wall: cannot subscribe to site status");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                let refused = ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure));
                if refused {
                    error!(topic = topics::ALL_STATUS, "wall: the broker refused the status subscription: the wall's login (the `viewer` user of `simpang mqtt-credentials`, or mqtt.username) must be allowed to read it; other nodes' sites show no video");
                } else {
                    dir.connected.store(true, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Applied::Stale { seen, got } = dir.apply(&p.topic, &p.payload) {
                    debug!(topic = %p.topic, seen, got, "stale site status ignored");
                }
            }
            Ok(_) => {}
            Err(e) => {
                dir.connected.store(false, Ordering::Relaxed);
                failures += 1;
                let wait = if failover.failed() {
                    let w = backoff;
                    backoff = (backoff * 2).min(src.reconnect.1);
                    w
                } else {
                    Duration::ZERO
                };
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(error = %e, retry_in_s = wait.as_secs_f64(), "wall: status subscription lost");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                events.mqtt_options = options(failover.current());
            }
        }
    }
    let _ = client.try_disconnect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(site: &str, node: &str, lease: u64, state: &str, wall: &str) -> Vec<u8> {
        serde_json::json!({
            "schema": "simpang.status/1", "site": site, "site_name": "S", "camera": site,
            "client_id": format!("x-{site}"), "state": state,
            "reason": if state == "online" { "running" } else { "connection_lost" },
            "at": "2026-12-07T10:00:00+07:00", "node": node, "lease": lease, "wall": wall,
            "camera_health": { "online": true, "since": "2026-12-07T10:00:00+07:00" },
            "some_future_field": 1,
        })
        .to_string()
        .into_bytes()
    }

    fn dir() -> Directory {
        Directory::new(vec!["a".into(), "b".into()], HashMap::new())
    }

    #[test]
    fn a_smaller_lease_is_stale_and_does_not_move_the_site_back() {
        let d = dir();
        let t = topics::status("a");
        assert_eq!(
            d.apply(&t, &status("a", "n1", 5, "online", "http://n1:8080")),
            Applied::Taken
        );
        assert_eq!(
            d.apply(&t, &status("a", "n2", 9, "online", "http://n2:8080/")),
            Applied::Taken
        );
        let p = d.get("a").unwrap();
        assert_eq!(
            (p.node.as_deref(), p.lease, p.wall.as_deref()),
            (Some("n2"), Some(9), Some("http://n2:8080"))
        );
        // n1's last will, late: stale.
        assert_eq!(
            d.apply(&t, &status("a", "n1", 5, "offline", "http://n1:8080")),
            Applied::Stale { seen: 9, got: 5 }
        );
        assert_eq!(d.get("a").unwrap().node.as_deref(), Some("n2"));
        assert!(d.get("a").unwrap().online);
        // The same lease going offline is the holder's own news.
        assert_eq!(
            d.apply(&t, &status("a", "n2", 9, "offline", "http://n2:8080")),
            Applied::Taken
        );
        assert!(!d.get("a").unwrap().online);
    }

    #[test]
    fn outside_data_is_refused() {
        let d = dir();
        let t = topics::status("a");
        for (topic, payload) in [
            (t.clone(), b"not json".to_vec()),
            (t.clone(), Vec::new()),
            (t.clone(), status("b", "n1", 1, "online", "http://n1")),
            (
                topics::status("zz"),
                status("zz", "n1", 1, "online", "http://n1"),
            ),
            (
                "simpang/v1/sites/a/counts".into(),
                status("a", "n", 1, "online", "http://n"),
            ),
        ] {
            assert!(
                matches!(d.apply(&topic, &payload), Applied::Refused(_)),
                "{topic} {}",
                String::from_utf8_lossy(&payload)
            );
        }
        assert!(d.get("a").is_none());
        // A wall URL a browser must not be sent to is not kept; the placement is.
        for bad in [
            "javascript:alert(1)",
            "http://n1/path",
            "http://u:p@n1",
            "ftp://n1",
            "http://n1/?q=1",
        ] {
            assert_eq!(
                d.apply(&t, &status("a", "n1", 1, "online", bad)),
                Applied::Taken
            );
            assert_eq!(d.get("a").unwrap().wall, None, "{bad}");
        }
    }

    #[test]
    fn signed_sites_need_their_signature() {
        let key = SigningKey::generate();
        let d = Directory::new(
            vec!["a".into()],
            HashMap::from([("a".to_string(), key.clone())]),
        );
        let t = topics::status("a");
        let plain = status("a", "n1", 3, "online", "http://n1:1");
        assert!(matches!(d.apply(&t, &plain), Applied::Refused(_)));
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        let signed = sign::encode(&v, Some(&key)).unwrap();
        assert_eq!(d.apply(&t, &signed), Applied::Taken);
        let other = sign::encode(&v, Some(&SigningKey::generate())).unwrap();
        assert!(matches!(d.apply(&t, &other), Applied::Refused(_)));
    }

    #[test]
    fn ws_urls() {
        assert_eq!(
            live_ws_url("http://10.0.0.2:8080", "bkb", "a.b-c").as_deref(),
            Some("ws://10.0.0.2:8080/live/bkb?ticket=a.b-c")
        );
        assert_eq!(
            live_ws_url("https://wall-2.example", "x y", "t").as_deref(),
            Some("wss://wall-2.example/live/x%20y?ticket=t")
        );
        assert_eq!(live_ws_url("ftp://x", "a", "t"), None);
        assert_eq!(
            wall_url("http://[::1]:80/").as_deref(),
            Some("http://[::1]:80")
        );
    }
}
