//! The MQTT settings: `[mqtt]` (how `simpang run` reaches its broker, or runs one) and
//! `[desk.mqtt]` (how the desk does), with their meaning checks. What they guard is in
//! docs/security.md ("MQTT broker", "Incident intake").

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::locate::FieldPath;
use super::Config;

/// MQTT connection of `simpang run`. `broker = "embedded"` runs a managed broker (Mosquitto, a
/// child process) with a login for every client and per-site topic rights.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `embedded`, or a URL: `mqtt://host:1883`, `mqtts://host:8883`.
    pub broker: String,
    /// The nodes of a broker cluster (`mqtt://a:1883`, `mqtt://b:1883`, ...), tried in turn:
    /// on a connection error a site's connection moves to the next one. Instead of `broker`;
    /// once loaded, `broker` holds the first of them.
    pub brokers: Vec<String>,
    /// Plain MQTT listener of the managed broker: loopback only.
    pub embedded_listen: SocketAddr,
    /// MQTT over TLS listener of the managed broker (for other machines), if any.
    pub embedded_tls_listen: Option<SocketAddr>,
    /// The TLS listener's certificate and key (PEM); without them simpang makes a private CA and
    /// a certificate under `{data_dir}/mqtt/tls/`.
    pub embedded_tls_cert: Option<PathBuf>,
    pub embedded_tls_key: Option<PathBuf>,
    /// Host names and addresses the generated certificate is for, besides loopback.
    pub embedded_tls_names: Vec<String>,
    /// The Mosquitto binary the managed broker runs (searched on PATH and in /usr/sbin).
    pub mosquitto: PathBuf,
    /// External broker: every site's login and signing key, as `simpang mqtt-credentials`
    /// writes them (its `credentials.toml` or a site's `clients/site-<id>.toml`).
    pub credentials_file: Option<PathBuf>,
    /// One login for every site on an external broker (instead of a credentials file).
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA bundle for `mqtts://` brokers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Sign every message with the site's key when there is one (docs/mqtt.md, signatures).
    pub sign_messages: bool,
    /// Client id prefix: each site connects as `{client_id}-{site}` (one connection per site, so
    /// each site's last will marks exactly that site offline).
    pub client_id: String,
    pub keep_alive_s: u64,
    /// First wait before reconnecting to the broker; doubles up to `reconnect_max_s`.
    pub reconnect_initial_s: f64,
    pub reconnect_max_s: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: "embedded".into(),
            brokers: Vec::new(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            embedded_tls_listen: None,
            embedded_tls_cert: None,
            embedded_tls_key: None,
            embedded_tls_names: Vec::new(),
            mosquitto: PathBuf::from("mosquitto"),
            credentials_file: None,
            username: None,
            password: None,
            ca_file: None,
            sign_messages: true,
            client_id: "simpang-run".into(),
            keep_alive_s: 15,
            reconnect_initial_s: 0.5,
            reconnect_max_s: 30.0,
        }
    }
}

/// The broker the desk subscribes to for incidents and publishes report statuses on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskMqtt {
    /// `mqtt://host:port`, `mqtts://host:port`, or `none` (no intake, no status messages).
    pub broker: String,
    /// The nodes of a broker cluster, tried in turn (see [`MqttConfig::brokers`]).
    pub brokers: Vec<String>,
    /// The desk's login and the sites' signing keys (`clients/desk.toml` of `simpang
    /// mqtt-credentials`). With keys, every incident must carry its site's signature.
    pub credentials_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA bundle for an `mqtts://` broker with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Fixed so the broker keeps the desk's session (and queues QoS 1 incidents) while it is down.
    pub client_id: String,
    pub incidents_topic: String,
    /// Statuses go to `{status_topic_prefix}/{ticket}/status`.
    pub status_topic_prefix: String,
    pub keep_alive_s: u64,
    /// Largest incident message accepted (inline snapshots make them large).
    pub max_message_bytes: usize,
    /// Largest step of an incident's `seq` accepted past the last one stored (a forged huge
    /// `seq` would make every genuine message after it look stale).
    pub max_seq_jump: u32,
    /// Oldest `updated_at` accepted, seconds before now.
    pub max_age_s: u64,
    /// Latest `updated_at` accepted, seconds after now (clock skew).
    pub max_future_s: u64,
    /// Bytes of a dead-lettered payload kept (the rest is cut, and the reason says so).
    pub dead_letter_keep_bytes: usize,
    /// Dead letters older than this are deleted.
    pub dead_letter_keep_days: u32,
    /// At most this many dead letters are kept (the oldest go first).
    pub dead_letter_max_rows: u64,
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
}

impl Default for DeskMqtt {
    fn default() -> Self {
        Self {
            broker: "mqtt://127.0.0.1:1883".into(),
            brokers: Vec::new(),
            credentials_file: None,
            username: None,
            password: None,
            ca_file: None,
            client_id: "simpang-desk".into(),
            incidents_topic: crate::topics::ALL_INCIDENTS.into(),
            status_topic_prefix: crate::topics::DESK_REPORTS.into(),
            keep_alive_s: 15,
            max_message_bytes: 8 * 1024 * 1024,
            max_seq_jump: 1000,
            max_age_s: 7 * 86_400,
            max_future_s: 300,
            dead_letter_keep_bytes: 64 * 1024,
            dead_letter_keep_days: 30,
            dead_letter_max_rows: 10_000,
            backoff_initial_s: 1.0,
            backoff_max_s: 30.0,
        }
    }
}

/// `brokers` as loaded: the first of them becomes `broker` when `broker` was left at its
/// default (`default`), so code that asks `broker` sees the first node.
fn adopt_first(broker: &mut String, brokers: &[String], default: &str) {
    if let Some(first) = brokers.first() {
        if broker == default {
            *broker = first.clone();
        }
    }
}

/// The URLs to try, in order: `brokers` when it starts with `broker` (as loaded), else
/// `broker` alone (a caller that set `broker` afterwards, like the bench, means that one).
fn urls<'a>(broker: &'a str, brokers: &'a [String]) -> Vec<&'a str> {
    match brokers.first() {
        Some(first) if first == broker => brokers.iter().map(String::as_str).collect(),
        _ => vec![broker],
    }
}

/// Checks of a `brokers` list: URLs only, set instead of `broker` (not beside another one).
fn check_brokers(
    broker: &str,
    brokers: &[String],
    at: &FieldPath,
    section: &str,
    bad: &mut impl FnMut(FieldPath, String),
) {
    let Some(first) = brokers.first() else {
        return;
    };
    if first != broker {
        bad(
            at.key("brokers"),
            format!("is set, and so is {section}.broker = {broker:?}: set one of them (brokers for a cluster)"),
        );
    }
    for (i, url) in brokers.iter().enumerate() {
        if let Err(msg) = check_broker_url(url) {
            bad(at.key("brokers").index(i), msg);
        }
    }
    for (i, url) in brokers.iter().enumerate() {
        if brokers[..i].contains(url) {
            bad(
                at.key("brokers").index(i),
                format!("{url:?} is in the list twice"),
            );
        }
    }
    let tls = brokers.iter().filter(|u| broker_uses_tls(u)).count();
    if tls != 0 && tls != brokers.len() {
        bad(
            at.key("brokers"),
            "mixes mqtts:// and mqtt:// nodes: a cluster's nodes all speak TLS or none does".into(),
        );
    }
}

impl MqttConfig {
    /// The broker URLs `simpang run` connects to, in failover order (`["embedded"]` for the
    /// managed broker).
    pub fn broker_urls(&self) -> Vec<&str> {
        urls(&self.broker, &self.brokers)
    }

    /// After parsing: `broker` becomes the first of `brokers` when only `brokers` was set.
    pub(super) fn adopt_brokers(&mut self) {
        adopt_first(&mut self.broker, &self.brokers, "embedded");
    }
}

impl DeskMqtt {
    /// The broker URLs the desk connects to, in failover order.
    pub fn broker_urls(&self) -> Vec<&str> {
        urls(&self.broker, &self.brokers)
    }

    /// After parsing: `broker` becomes the first of `brokers` when only `brokers` was set.
    pub(super) fn adopt_brokers(&mut self) {
        adopt_first(&mut self.broker, &self.brokers, &Self::default().broker);
    }
}

impl Config {
    /// Meaning checks of `[mqtt]`.
    pub(super) fn validate_mqtt(&self, root: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let m = root.key("mqtt");
        let c = &self.mqtt;
        let embedded = c.broker == "embedded";
        if !embedded && c.brokers.first() != Some(&c.broker) {
            if let Err(msg) = check_broker_url(&c.broker) {
                bad(m.key("broker"), msg);
            }
        }
        // `embedded` beside a list only comes from code that chose the managed broker after
        // loading (a config file's `brokers` has replaced the default): the list is unused.
        if !embedded {
            check_brokers(&c.broker, &c.brokers, &m, "mqtt", bad);
        }
        if c.client_id.trim().is_empty() {
            bad(m.key("client_id"), "must not be empty".into());
        }
        if !(c.keep_alive_s >= 5 && c.keep_alive_s <= 3600) {
            bad(
                m.key("keep_alive_s"),
                format!("must be in 5..=3600, got {}", c.keep_alive_s),
            );
        }
        if !(c.reconnect_initial_s > 0.0 && c.reconnect_initial_s <= c.reconnect_max_s) {
            bad(
                m.key("reconnect_initial_s"),
                "must be positive and not above reconnect_max_s".into(),
            );
        }
        if c.password.is_some() && c.username.is_none() {
            // MQTT 3.1.1 (3.1.2.9) does not allow a password without a user name.
            bad(
                m.key("password"),
                "is set without mqtt.username (MQTT 3.1.1 needs a user name with a password)"
                    .into(),
            );
        }
        if embedded {
            self.validate_embedded(&m, bad);
        } else {
            for (key, set) in [
                ("embedded_tls_listen", c.embedded_tls_listen.is_some()),
                ("embedded_tls_cert", c.embedded_tls_cert.is_some()),
                ("embedded_tls_key", c.embedded_tls_key.is_some()),
            ] {
                if set {
                    bad(
                        m.key(key),
                        "is a setting of the managed broker (mqtt.broker = \"embedded\")".into(),
                    );
                }
            }
        }
        if let Some(p) = &c.credentials_file {
            if embedded {
                bad(
                    m.key("credentials_file"),
                    "is for an external broker: the managed broker makes its own logins in {data_dir}/mqtt/".into(),
                );
            } else if let Err(e) = std::fs::metadata(self.resolve(p)) {
                bad(
                    m.key("credentials_file"),
                    format!(
                        "cannot read {}: {e} (write it with `simpang mqtt-credentials`)",
                        self.resolve(p).display()
                    ),
                );
            }
        }
        if let Some(ca) = &c.ca_file {
            if !broker_uses_tls(&c.broker) {
                bad(
                    m.key("ca_file"),
                    format!(
                        "is set, but mqtt.broker {:?} is not an mqtts:// URL, so TLS is off",
                        c.broker
                    ),
                );
            } else {
                check_pem(self, ca, "CA file", &m.key("ca_file"), bad);
            }
        }
    }

    /// The managed broker's settings. Its plain listener stays on loopback: on the network it
    /// would carry logins and incidents in clear text.
    fn validate_embedded(&self, m: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let c = &self.mqtt;
        if !c.embedded_listen.ip().is_loopback() {
            bad(
                m.key("embedded_listen"),
                format!(
                    "{} is not a loopback address: the plain MQTT listener would carry passwords and incidents unencrypted on the network. Keep it on 127.0.0.1 and set mqtt.embedded_tls_listen (MQTT over TLS) for other machines",
                    c.embedded_listen
                ),
            );
        }
        if c.username.is_some() {
            bad(
                m.key("username"),
                "is for an external broker: the managed broker gives every site its own login"
                    .into(),
            );
        }
        if let Some(t) = c.embedded_tls_listen {
            if t.port() == c.embedded_listen.port() {
                bad(
                    m.key("embedded_tls_listen"),
                    format!("{t} has the port of mqtt.embedded_listen"),
                );
            }
        }
        match (&c.embedded_tls_cert, &c.embedded_tls_key) {
            (Some(cert), Some(key)) => {
                check_pem(self, cert, "certificate", &m.key("embedded_tls_cert"), bad);
                check_pem(self, key, "private key", &m.key("embedded_tls_key"), bad);
            }
            (None, None) => {}
            (Some(_), None) => bad(
                m.key("embedded_tls_key"),
                "is needed with mqtt.embedded_tls_cert".into(),
            ),
            (None, Some(_)) => bad(
                m.key("embedded_tls_cert"),
                "is needed with mqtt.embedded_tls_key".into(),
            ),
        }
        if c.embedded_tls_cert.is_some() && c.embedded_tls_listen.is_none() {
            bad(
                m.key("embedded_tls_cert"),
                "is set, but mqtt.embedded_tls_listen is not: there is no TLS listener".into(),
            );
        }
        for (i, n) in c.embedded_tls_names.iter().enumerate() {
            let ok = n.parse::<std::net::IpAddr>().is_ok()
                || (!n.is_empty()
                    && n.len() <= 253
                    && n.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    }));
            if !ok {
                bad(
                    m.key("embedded_tls_names").index(i),
                    format!("{n:?} is not a host name or an IP address"),
                );
            }
        }
    }
}

impl DeskMqtt {
    /// Meaning checks of `[desk.mqtt]`.
    pub(super) fn validate(&self, m: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        if self.broker != "none" && self.brokers.first() != Some(&self.broker) {
            if let Err(msg) = check_broker_url(&self.broker) {
                bad(m.key("broker"), format!("{msg} (or \"none\")"));
            }
        }
        check_brokers(&self.broker, &self.brokers, m, "desk.mqtt", bad);
        if self.client_id.trim().is_empty() {
            bad(m.key("client_id"), "must not be empty".into());
        }
        if self.incidents_topic.trim().is_empty() {
            bad(m.key("incidents_topic"), "must not be empty".into());
        }
        let prefix = &self.status_topic_prefix;
        if prefix.trim().is_empty() || prefix.contains(['+', '#']) || prefix.ends_with('/') {
            bad(
                m.key("status_topic_prefix"),
                format!("{prefix:?} must be a topic without wildcards or a trailing '/'"),
            );
        }
        for (key, topic) in [
            ("incidents_topic", &self.incidents_topic),
            ("status_topic_prefix", &self.status_topic_prefix),
        ] {
            if topic.chars().any(|c| c.is_whitespace() || c == '\0') {
                bad(
                    m.key(key),
                    format!("{topic:?} holds a space or a control character"),
                );
            }
        }
        if self.max_message_bytes < 1024 {
            bad(m.key("max_message_bytes"), "must be at least 1024".into());
        }
        if self.password.is_some() && self.username.is_none() && self.credentials_file.is_none() {
            bad(
                m.key("password"),
                "is set without desk.mqtt.username (MQTT 3.1.1 needs a user name with a password)"
                    .into(),
            );
        }
        if self.ca_file.is_some() && !broker_uses_tls(&self.broker) {
            bad(
                m.key("ca_file"),
                format!(
                    "is set, but desk.mqtt.broker {:?} is not an mqtts:// URL, so TLS is off",
                    self.broker
                ),
            );
        }
        // `credentials_file` may be written after the desk starts (by the managed broker's first
        // start): the desk reads it when it connects, and retries.
        if self.max_seq_jump == 0 {
            bad(m.key("max_seq_jump"), "must be at least 1".into());
        }
        if self.max_age_s < 60 {
            bad(m.key("max_age_s"), "must be at least 60".into());
        }
        if self.dead_letter_keep_bytes < 256 {
            bad(
                m.key("dead_letter_keep_bytes"),
                "must be at least 256".into(),
            );
        }
        if self.dead_letter_keep_days == 0 {
            bad(m.key("dead_letter_keep_days"), "must be at least 1".into());
        }
        if self.dead_letter_max_rows == 0 {
            bad(m.key("dead_letter_max_rows"), "must be at least 1".into());
        }
        if !(self.backoff_initial_s > 0.0 && self.backoff_initial_s <= self.backoff_max_s) {
            bad(
                m.key("backoff_initial_s"),
                "must be positive and not above backoff_max_s".into(),
            );
        }
    }
}

/// A file that must hold a PEM block with `marker`.
fn check_pem(
    cfg: &Config,
    p: &std::path::Path,
    what: &str,
    at: &FieldPath,
    bad: &mut impl FnMut(FieldPath, String),
) {
    let path = cfg.resolve(p);
    let (marker, noun) = if what.contains("key") {
        ("PRIVATE KEY-----", "private key")
    } else {
        ("-----BEGIN CERTIFICATE-----", "certificate")
    };
    match std::fs::read(&path) {
        Err(e) => bad(
            at.clone(),
            format!("cannot read {what} {}: {e}", path.display()),
        ),
        Ok(bytes) if !String::from_utf8_lossy(&bytes).contains(marker) => bad(
            at.clone(),
            format!("{} holds no PEM {noun}", path.display()),
        ),
        Ok(_) => {}
    }
}

/// True for `mqtts://` and `ssl://` broker URLs.
pub fn broker_uses_tls(broker: &str) -> bool {
    let b = broker.trim_start().to_ascii_lowercase();
    b.starts_with("mqtts://") || b.starts_with("ssl://")
}

/// Checks an MQTT broker URL.
pub fn check_broker_url(s: &str) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| {
        format!("{s:?} is not \"embedded\" nor a valid URL like mqtt://host:1883: {e}")
    })?;
    match u.scheme() {
        "mqtt" | "tcp" | "mqtts" | "ssl" => {}
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {s:?} (use mqtt:// or mqtts://)"
            ))
        }
    }
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use crate::config::Config;

    const SITE: &str = "[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://127.0.0.1:1/a\"\n";

    const MQTT_KEYS: &[&str] = &[
        "broker",
        "brokers",
        "embedded_listen",
        "embedded_tls_listen",
        "embedded_tls_cert",
        "embedded_tls_key",
        "embedded_tls_names",
        "mosquitto",
        "credentials_file",
        "username",
        "password",
        "ca_file",
        "sign_messages",
        "client_id",
        "keep_alive_s",
        "reconnect_initial_s",
        "reconnect_max_s",
    ];
    const DESK_KEYS: &[&str] = &[
        "broker",
        "brokers",
        "credentials_file",
        "username",
        "password",
        "ca_file",
        "client_id",
        "incidents_topic",
        "status_topic_prefix",
        "keep_alive_s",
        "max_message_bytes",
        "max_seq_jump",
        "max_age_s",
        "max_future_s",
        "dead_letter_keep_bytes",
        "dead_letter_keep_days",
        "dead_letter_max_rows",
        "backoff_initial_s",
        "backoff_max_s",
    ];

    /// A TOML value of any type, with the awkward cases over-represented.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| if v.is_finite() {
                format!("{v:?}")
            } else {
                "nan".into()
            }),
            any::<bool>().prop_map(|v| v.to_string()),
            // Strings: URLs, addresses, paths and junk; escaped for TOML by Debug.
            prop_oneof![
                Just("embedded".to_string()),
                Just("mqtts://[::1]:0".to_string()),
                Just("0.0.0.0:0".to_string()),
                Just("127.0.0.1:65535".to_string()),
                "[a-z]{1,6}://[a-z0-9.:\\[\\]]{0,20}".prop_map(String::from),
                "[ -~]{0,30}".prop_map(String::from),
                ".{0,20}".prop_map(String::from),
            ]
            .prop_map(|s| format!("{s:?}")),
            proptest::collection::vec("[ -~]{0,12}", 0..4).prop_map(|v| format!("{v:?}")),
        ]
    }

    fn table(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::collection::btree_map(proptest::sample::select(keys), value(), 0..6)
            .prop_map(|m| m.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any values of any type in `[mqtt]` and `[desk.mqtt]`: a config or located problems,
        /// never a panic.
        #[test]
        fn mqtt_sections_never_panic(mqtt in table(MQTT_KEYS), desk in table(DESK_KEYS)) {
            let text = format!("[city]\nname = \"P\"\n[mqtt]\n{mqtt}\n{SITE}\n[desk.mqtt]\n{desk}");
            match Config::from_str_at(&text, std::path::Path::new("/nonexistent/simpang.toml")) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
