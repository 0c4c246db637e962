//! Where the MQTT connections go and how they log in: [`BrokerTarget`] (one broker address,
//! TLS, keep-alive: the client connection settings, in one struct so a list of brokers can
//! join it) and [`ProducerAuth`] (each site's login and signing key). The broker itself, when
//! simpang runs it, is in `mosquitto.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::access::site_user;
use super::mosquitto::{self, ManagedBroker};
use super::secrets::{Credentials, Login};
use super::sign::SigningKey;
use crate::config::{broker_uses_tls, Config};

/// Largest message we publish or accept (inline JPEG snapshots are ~100 KB as base64).
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Publishes rumqttc lets one connection have unacknowledged (its packet ids run 1..=INFLIGHT).
/// A link keeps fewer rows than this in flight (`link::WINDOW`), so its status messages never
/// wait behind rows.
pub const INFLIGHT: u16 = 64;

/// System CA bundles tried for `mqtts://` without a CA file (Debian/Ubuntu, then Fedora).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{setting}: {message}")]
    Url { setting: String, message: String },
    #[error("{setting}: cannot read CA file {path}: {error}")]
    CaFile {
        setting: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{setting}: {url} uses TLS but no CA file is set and no system CA bundle was found (looked for {looked})")]
    NoSystemCa {
        setting: String,
        url: String,
        looked: String,
    },
    #[error("{setting}: cannot listen on {addr} for the managed MQTT broker: {error}")]
    EmbeddedListen {
        setting: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("mqtt.broker = \"embedded\": the managed MQTT broker (mosquitto) did not start on {addr}; its last log lines:\n{log}")]
    ManagedStart { addr: SocketAddr, log: String },
    #[error("mqtt.broker = \"embedded\" runs Mosquitto, but {} was not found: install the Debian package mosquitto (scripts/setup.sh does) or set mqtt.mosquitto to its path", .0.display())]
    MosquittoMissing(PathBuf),
    #[error("mqtt.mosquitto: {} is Mosquitto {version}; the managed broker needs Mosquitto 2.0 or newer", binary.display())]
    MosquittoVersion { binary: PathBuf, version: String },
    #[error("managed MQTT broker: {0}")]
    Files(String),
    #[error("{setting}: {message}")]
    Credentials { setting: String, message: String },
}

/// A broker to connect to: address, TLS trust, keep-alive.
#[derive(Clone, Debug)]
pub struct BrokerTarget {
    pub host: String,
    pub port: u16,
    /// `mqtt://host:port` or `mqtts://host:port`: what logs name (never the credentials).
    pub display: String,
    tls: Option<Vec<u8>>,
    keep_alive: Duration,
}

impl BrokerTarget {
    /// Resolves `[mqtt]` for `simpang run`: the brokers in failover order (never empty). With
    /// the managed broker, its loopback listener.
    pub fn from_config(cfg: &Config) -> Result<Vec<Self>, BrokerError> {
        let m = &cfg.mqtt;
        let keep_alive = Duration::from_secs(m.keep_alive_s.max(5));
        if m.broker == "embedded" {
            let addr = mosquitto::loopback(m.embedded_listen);
            return Ok(vec![Self {
                display: format!("embedded mqtt://{addr}"),
                host: addr.ip().to_string(),
                port: addr.port(),
                tls: None,
                keep_alive,
            }]);
        }
        let ca = m.ca_file.as_ref().map(|p| cfg.resolve(p));
        Self::from_urls(&m.broker_urls(), ca.as_deref(), keep_alive, "mqtt")
    }

    /// Every URL of a broker list (`broker`, or the nodes of `brokers`), in order. Errors name
    /// `{section}.broker` for a single URL and `{section}.brokers[i]` in a list.
    pub fn from_urls(
        urls: &[&str],
        ca_file: Option<&Path>,
        keep_alive: Duration,
        section: &str,
    ) -> Result<Vec<Self>, BrokerError> {
        if urls.len() <= 1 {
            let url = urls.first().copied().unwrap_or_default();
            return Ok(vec![Self::from_url(url, ca_file, keep_alive, section)?]);
        }
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                Self::parse(
                    url,
                    ca_file,
                    keep_alive,
                    section,
                    format!("{section}.brokers[{i}]"),
                )
            })
            .collect()
    }

    /// `url` (`mqtt://`, `mqtts://`), trusting `ca_file` (PEM) or the system CAs for TLS.
    /// `section` names the config section in errors (`mqtt`, `desk.mqtt`).
    pub fn from_url(
        url: &str,
        ca_file: Option<&Path>,
        keep_alive: Duration,
        section: &str,
    ) -> Result<Self, BrokerError> {
        Self::parse(
            url,
            ca_file,
            keep_alive,
            section,
            format!("{section}.broker"),
        )
    }

    fn parse(
        url: &str,
        ca_file: Option<&Path>,
        keep_alive: Duration,
        section: &str,
        setting: String,
    ) -> Result<Self, BrokerError> {
        let bad = |message: String| BrokerError::Url {
            setting: setting.clone(),
            message,
        };
        let parsed =
            url::Url::parse(url).map_err(|e| bad(format!("{url:?} is not a valid URL: {e}")))?;
        let tls = broker_uses_tls(url);
        match parsed.scheme() {
            "mqtt" | "tcp" | "mqtts" | "ssl" => {}
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?} in {url:?} (use mqtt:// or mqtts://)"
                )))
            }
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(format!("{url:?} has no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
        let display = format!(
            "{}://{}:{port}",
            if tls { "mqtts" } else { "mqtt" },
            parsed.host_str().unwrap_or(&host)
        );
        let tls = if tls {
            Some(load_ca(ca_file, &display, section)?)
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            display,
            tls,
            keep_alive,
        })
    }

    /// True when this target speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connection options for one client id; `clean_session` so that the outbox, not the
    /// broker's session, is what carries unacknowledged messages across reconnects (the desk
    /// turns it off for its persistent session).
    pub fn options(&self, client_id: &str, login: Option<&Login>) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(INFLIGHT);
        if let Some(l) = login {
            o.set_credentials(l.username.clone(), l.password.clone());
        }
        if let Some(ca) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: None,
            }));
        }
        o
    }
}

/// The names of a broker list for logs: `mqtt://a:1883, mqtt://b:1883`.
pub fn describe(targets: &[BrokerTarget]) -> String {
    targets
        .iter()
        .map(|t| t.display.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long after losing an established connection to a cluster node the client keeps going
/// round the nodes with [`FAILOVER_PAUSE`] between rounds instead of its growing backoff.
///
/// Why: on a NATS cluster every MQTT CONNECT (and every QoS 1 PUBLISH) is a JetStream request
/// to the leader of the MQTT streams. When the killed node led one of them, requests sent before
/// the survivors elect a new leader get no answer (Raft election timeout 4-9 s plus a campaign of
/// 0.1-0.8 s, hard-coded in nats-server); the server closes such a connection after its
/// `mqtt.js_api_timeout` (1 s in `scripts/nats-cluster.sh`). Only a CONNECT sent after the
/// election succeeds, so the client must keep trying at a short, steady pace: a doubling
/// backoff put the next try seconds after the new leader was there. 30 s covers the longest
/// election with margin; past it the cluster is down, not failing over, and the backoff grows.
pub const FAILOVER_WINDOW: Duration = Duration::from_secs(30);
/// Pause after a full round of failures while failing over (see [`FAILOVER_WINDOW`]). A node
/// that answers takes `js_api_timeout` to fail a CONNECT; a dead one refuses at once.
pub const FAILOVER_PAUSE: Duration = Duration::from_millis(250);

/// Which broker of a list a connection uses, and when it must wait before trying again: after
/// a connection error (lost, or never made) it moves on to the next broker at once, as a
/// cluster client should, and only a full round of failures in a row waits: [`FAILOVER_PAUSE`]
/// within [`FAILOVER_WINDOW`] of losing a connection to a cluster, else the caller's backoff.
/// With one broker every failure waits the backoff, as before there were lists.
#[derive(Debug)]
pub struct Failover {
    len: usize,
    at: usize,
    failed: usize,
    /// When the last established connection was lost (`None` while connected, or before the
    /// first connection).
    lost_at: Option<Instant>,
    /// Failures since then (the loss, then each failed try).
    attempts: u32,
}

impl Failover {
    pub fn new(len: usize) -> Self {
        Self {
            len: len.max(1),
            at: 0,
            failed: 0,
            lost_at: None,
            attempts: 0,
        }
    }

    /// Like [`Failover::new`], but the first broker is picked by a stable hash of `key` (the
    /// client id), so the clients of a deployment spread over the cluster's nodes, as NATS's
    /// own clients do by shuffling their server list. Besides the load, it keeps every node
    /// ready for a failover: a NATS node sets up an account's MQTT session manager at its first
    /// MQTT client, one client at a time, and during an election each try waits the whole
    /// `js_api_timeout` (measured: the fifth client to reach a fresh node waited 5 s).
    pub fn spread(len: usize, key: &str) -> Self {
        let mut f = Self::new(len);
        // FNV-1a: the same node for the same client id on every run and every build.
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        f.at = (h % f.len as u64) as usize;
        f
    }

    /// Index of the broker to connect to next.
    pub fn current(&self) -> usize {
        self.at
    }

    /// A connection was made: a new round starts with the next error. Returns how long the
    /// client was without a connection and how many tries it took (this one included), when it
    /// had lost one.
    pub fn connected(&mut self) -> Option<(Duration, u32)> {
        self.failed = 0;
        // `attempts` counted the loss itself and each failed try: as many as the tries.
        let outage = self.lost_at.take().map(|t| (t.elapsed(), self.attempts));
        self.attempts = 0;
        outage
    }

    /// An established connection broke (call before [`Failover::failed`]).
    pub fn lost(&mut self) {
        self.lost_at = Some(Instant::now());
        self.attempts = 0;
    }

    /// A connection error: moves on to the next broker. True when every broker of this round
    /// has failed, so the caller waits ([`Failover::pause`] or its backoff) before the next try.
    pub fn failed(&mut self) -> bool {
        self.at = (self.at + 1) % self.len;
        self.failed += 1;
        if self.lost_at.is_some() {
            self.attempts += 1;
        }
        if self.failed >= self.len {
            self.failed = 0;
            true
        } else {
            false
        }
    }

    /// Time since the last established connection was lost (while it is not back).
    pub fn since_loss(&self) -> Option<Duration> {
        self.lost_at.map(|t| t.elapsed())
    }

    /// The wait after a full round while failing over between the nodes of a cluster; `None`
    /// when the caller's backoff applies (one broker, never connected, or past the window).
    pub fn pause(&self) -> Option<Duration> {
        (self.len > 1 && self.since_loss().is_some_and(|d| d < FAILOVER_WINDOW))
            .then_some(FAILOVER_PAUSE)
    }
}

fn load_ca(ca_file: Option<&Path>, display: &str, section: &str) -> Result<Vec<u8>, BrokerError> {
    if let Some(path) = ca_file {
        return std::fs::read(path).map_err(|error| BrokerError::CaFile {
            setting: format!("{section}.ca_file"),
            path: path.to_path_buf(),
            error,
        });
    }
    for p in SYSTEM_CA_BUNDLES {
        if let Ok(b) = std::fs::read(p) {
            return Ok(b);
        }
    }
    Err(BrokerError::NoSystemCa {
        setting: format!("{section}.broker"),
        url: display.to_string(),
        looked: SYSTEM_CA_BUNDLES.join(", "),
    })
}

/// Where each site's producer gets its login and its signing key.
#[derive(Clone)]
pub enum ProducerAuth {
    /// The managed broker's generated credentials (`site-{id}`, a key per site).
    Managed(Arc<ManagedBroker>),
    /// `mqtt.credentials_file`, read again for every site started; `mqtt.username` /
    /// `mqtt.password` for sites the file has no login for.
    File {
        path: PathBuf,
        fallback: Option<Login>,
    },
    /// `mqtt.username` / `mqtt.password` for every site (or none), no signing.
    Fixed(Option<Login>),
}

impl ProducerAuth {
    /// From `[mqtt]`, with the managed broker when there is one.
    pub fn from_config(cfg: &Config, managed: Option<Arc<ManagedBroker>>) -> Self {
        let m = &cfg.mqtt;
        let fixed = m.username.as_ref().map(|u| Login {
            username: u.clone(),
            password: m.password.clone().unwrap_or_default(),
        });
        match (managed, &m.credentials_file) {
            (Some(b), _) => ProducerAuth::Managed(b),
            (None, Some(p)) => ProducerAuth::File {
                path: cfg.resolve(p),
                fallback: fixed,
            },
            (None, None) => ProducerAuth::Fixed(fixed),
        }
    }

    /// The login and (when `sign`) the signing key of `site`'s connection.
    pub fn for_site(
        &self,
        site: &str,
        sign: bool,
    ) -> Result<(Option<Login>, Option<SigningKey>), BrokerError> {
        let user = site_user(site);
        let (creds, fallback, setting) = match self {
            ProducerAuth::Fixed(l) => return Ok((l.clone(), None)),
            ProducerAuth::Managed(b) => (b.credentials(), None, "mqtt.broker"),
            ProducerAuth::File { path, fallback } => (
                Credentials::load(path).map_err(|e| BrokerError::Credentials {
                    setting: "mqtt.credentials_file".into(),
                    message: e.to_string(),
                })?,
                fallback.clone(),
                "mqtt.credentials_file",
            ),
        };
        let login = creds.login(&user).or(fallback).ok_or_else(|| {
            BrokerError::Credentials {
                setting: setting.into(),
                message: format!(
                    "no password for user {user:?} (site {site:?}): run `simpang mqtt-credentials` again for this config, or set mqtt.username and mqtt.password"
                ),
            }
        })?;
        let key = if sign {
            creds
                .signing_key(site)
                .map_err(|e| BrokerError::Credentials {
                    setting: setting.into(),
                    message: e.to_string(),
                })?
        } else {
            None
        };
        Ok((Some(login), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(mut v: Vec<BrokerTarget>) -> BrokerTarget {
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn broker_lists() {
        let t = BrokerTarget::from_config(&cfg(
            "[mqtt]\nbrokers = [\"mqtt://n1:1881\", \"mqtt://n2:1882\", \"mqtt://n3\"]",
        ))
        .unwrap();
        let got: Vec<_> = t.iter().map(|t| (t.host.as_str(), t.port)).collect();
        assert_eq!(got, [("n1", 1881), ("n2", 1882), ("n3", 1883)]);
        assert_eq!(
            describe(&t),
            "mqtt://n1:1881, mqtt://n2:1882, mqtt://n3:1883"
        );
        let e = BrokerTarget::from_urls(
            &["mqtt://a", "http://b"],
            None,
            Duration::from_secs(5),
            "desk.mqtt",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("desk.mqtt.brokers[1]: unsupported scheme"),
            "{e}"
        );
    }

    #[test]
    fn failover_moves_on_at_once_and_waits_after_a_full_round() {
        let mut f = Failover::new(3);
        assert_eq!(f.current(), 0);
        // Connected to 0, then lost it: 1 and 2 are tried without a wait; 0 again after one.
        f.connected();
        assert!(!f.failed());
        assert_eq!(f.current(), 1);
        assert!(!f.failed());
        assert_eq!(f.current(), 2);
        assert!(f.failed());
        assert_eq!(f.current(), 0);
        // A connection resets the round: the next loss moves on without a wait.
        assert!(!f.failed());
        f.connected();
        assert!(!f.failed());
        assert_eq!(f.current(), 2);
        // One broker: every failure waits, on the same broker.
        let mut one = Failover::new(1);
        assert!(one.failed());
        assert!(one.failed());
        assert_eq!(one.current(), 0);
    }

    #[test]
    fn failover_pauses_briefly_only_after_losing_a_cluster_connection() {
        let mut f = Failover::new(3);
        // Never connected (a cluster still starting, a wrong URL): the caller's backoff.
        for _ in 0..3 {
            f.failed();
        }
        assert_eq!(f.pause(), None);
        assert_eq!(f.connected(), None, "no outage before the first connection");
        // Lost: short pauses between rounds, and the outage is counted until the next CONNACK.
        f.lost();
        assert_eq!(f.since_loss().map(|d| d < FAILOVER_WINDOW), Some(true));
        for _ in 0..5 {
            f.failed();
        }
        assert_eq!(f.pause(), Some(FAILOVER_PAUSE));
        let (outage, attempts) = f.connected().expect("an outage");
        assert!(outage < FAILOVER_WINDOW);
        assert_eq!(
            attempts, 5,
            "the loss and four failed tries, then the try that connected"
        );
        assert_eq!(f.pause(), None, "connected again");
        assert_eq!(f.since_loss(), None);
        // Past the window the broker is down, not failing over: the backoff again.
        f.lost_at = Some(Instant::now() - FAILOVER_WINDOW);
        assert_eq!(f.pause(), None);
        // Clients spread over the nodes, each on the same node every time.
        let starts: std::collections::HashSet<usize> = (0..12)
            .map(|i| Failover::spread(3, &format!("simpang-run-site{i}")).current())
            .collect();
        assert_eq!(starts.len(), 3, "{starts:?}");
        assert_eq!(
            Failover::spread(3, "desk").current(),
            Failover::spread(3, "desk").current()
        );
        assert_eq!(Failover::spread(1, "desk").current(), 0);
        // One broker never pauses briefly: its restart is not an election.
        let mut one = Failover::new(1);
        one.lost();
        one.failed();
        assert_eq!(one.pause(), None);
    }

    fn cfg(mqtt: &str) -> Config {
        let text = format!(
            "{mqtt}\n[city]\nname = \"P\"\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://127.0.0.1:1/a\"\n"
        );
        Config::from_str_at(&text, Path::new("/tmp/t.toml")).unwrap()
    }

    #[test]
    fn targets() {
        let t = one(BrokerTarget::from_config(&cfg("")).unwrap());
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1883));
        assert!(t.display.starts_with("embedded"));
        let t = one(BrokerTarget::from_config(&cfg(
            "[mqtt]\nbroker = \"mqtt://broker.example:1999\"\nusername = \"u\"\npassword = \"p\"",
        ))
        .unwrap());
        assert_eq!((t.host.as_str(), t.port), ("broker.example", 1999));
        assert_eq!(t.display, "mqtt://broker.example:1999");
        assert!(t.tls.is_none());
        let t = one(BrokerTarget::from_config(&cfg("[mqtt]\nbroker = \"mqtt://[::1]\"")).unwrap());
        assert_eq!((t.host.as_str(), t.port), ("::1", 1883));
        let login = Login {
            username: "u".into(),
            password: "p".into(),
        };
        let o = t.options("simpang-run-a", Some(&login));
        assert!(o.clean_session());
        assert_eq!(o.client_id(), "simpang-run-a");
        let got = o.credentials().expect("a login");
        assert_eq!((got.username.as_str(), got.password.as_str()), ("u", "p"));
        let e = BrokerTarget::from_url("http://x", None, Duration::from_secs(5), "desk.mqtt")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("desk.mqtt.broker: unsupported scheme"), "{e}");
        let e = BrokerTarget::from_url(
            "mqtts://x",
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(5),
            "desk.mqtt",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("desk.mqtt.ca_file: cannot read CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
