//! Settings of `simpang desk`: agencies (OPD), report categories with their SLA and routing,
//! the MQTT connection for incident intake and status publishing, sessions and the map.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::locate::FieldPath;
use crate::model::IncidentKind;
use crate::topics;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskConfig {
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative to the config file) or `postgres://...`; default data_dir/desk.db.
    pub database: Option<String>,
    /// Largest accepted photo upload, bytes.
    pub max_photo_bytes: usize,
    /// Base URL citizens reach the desk at (SMS replies and receipts name the tracking page);
    /// without it replies name only the ticket.
    pub public_url: Option<String>,
    /// Prefix of ticket numbers: `PLG` gives `PLG-7K3QX9`.
    pub ticket_prefix: String,
    /// A staff session ends this many hours after login (one shift).
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (set when the desk is served over HTTPS).
    pub cookie_secure: bool,
    /// Wrong passwords (or PINs) one client address, or one trusted browser, may try on one
    /// account (or ticket) before it waits 1, 2, 4 ... s between tries...
    pub login_max_failures: u32,
    /// ...counted over this many seconds (a sliding window).
    pub login_window_s: u64,
    /// Longest wait between tries once backing off.
    pub login_max_backoff_s: u64,
    /// Wrong passwords from one client address over all accounts before it backs off.
    pub login_client_max_failures: u32,
    /// Wrong passwords on one account from sources it has not seen sign in before; past it
    /// the account takes one such try per `login_account_slowdown_s` (its trusted browsers
    /// keep their own count, so the real user still gets in).
    pub login_account_max_failures: u32,
    pub login_account_slowdown_s: u64,
    /// Password and PIN checks (argon2) running at once, and waiting beyond those; more are
    /// answered "busy" without being checked.
    pub password_checks_parallel: u32,
    pub password_checks_queue: u32,
    /// Tests only: added to every password and PIN check, to watch what happens meanwhile.
    pub debug_password_check_delay_ms: u64,
    /// `POST /api/sms` requires `Authorization: Bearer <token>` (the SMS gateway's). Required
    /// when the desk listens beyond loopback.
    pub sms_token: Option<String>,
    /// The key of trusted-browser cookies (64 hex digits); default `data_dir/desk.key`,
    /// created on first start. Relative to the config file.
    pub key_file: Option<PathBuf>,
    /// Where the wall is (`http://wall-host:8080`): staff whose role is in `[wall.auth]
    /// desk_roles` get a link that signs them in there, with a token signed by the wall's key
    /// (`[wall.auth] key_file`, which this desk must be able to read).
    pub wall_url: Option<String>,
    /// Limits of the desk's HTTP listener.
    pub http: super::HttpConfig,
    /// Rate limits of the public side.
    pub limits: super::DeskLimits,
    pub mqtt: DeskMqtt,
    pub map: MapConfig,
    /// Category of the reports filed from each kind of camera incident.
    pub incident_categories: IncidentCategories,
    pub agencies: Vec<Agency>,
    pub categories: Vec<Category>,
}

/// The broker the desk subscribes to for incidents and publishes report statuses on.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskMqtt {
    /// `mqtt://host:port`, `mqtts://host:port`, or `none` (no intake, no status messages).
    pub broker: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Fixed so the broker keeps the desk's session (and queues QoS 1 incidents) while it is down.
    pub client_id: String,
    pub incidents_topic: String,
    /// Statuses go to `{status_topic_prefix}/{ticket}/status`.
    pub status_topic_prefix: String,
    pub keep_alive_s: u64,
    /// Largest incident message accepted (inline snapshots make them large).
    pub max_message_bytes: usize,
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
}

impl Default for DeskMqtt {
    fn default() -> Self {
        Self {
            broker: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            client_id: "simpang-desk".into(),
            incidents_topic: topics::ALL_INCIDENTS.into(),
            status_topic_prefix: topics::DESK_REPORTS.into(),
            keep_alive_s: 15,
            max_message_bytes: 8 * 1024 * 1024,
            backoff_initial_s: 1.0,
            backoff_max_s: 30.0,
        }
    }
}

/// The location picker on the citizen form. Without tile access the form keeps plain
/// latitude/longitude fields, so an offline desk still works.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapConfig {
    pub tile_url: String,
    pub attribution: String,
    /// `[lat, lon]` the map opens on.
    pub center: [f64; 2],
    pub zoom: u8,
}

impl Default for MapConfig {
    fn default() -> Self {
        Self {
            tile_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".into(),
            attribution: "&copy; OpenStreetMap contributors".into(),
            center: [-2.9761, 104.7754],
            zoom: 13,
        }
    }
}

/// Incident kind -> category id.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentCategories {
    pub traffic_jam: String,
    pub crowd: String,
    pub garbage: String,
    pub camera_offline: String,
    pub camera_tamper: String,
}

impl Default for IncidentCategories {
    fn default() -> Self {
        Self {
            traffic_jam: "traffic".into(),
            crowd: "crowd".into(),
            garbage: "garbage".into(),
            camera_offline: "camera_fault".into(),
            camera_tamper: "camera_fault".into(),
        }
    }
}

impl IncidentCategories {
    pub fn for_kind(&self, kind: IncidentKind) -> &str {
        match kind {
            IncidentKind::TrafficJam => &self.traffic_jam,
            IncidentKind::Crowd => &self.crowd,
            IncidentKind::Garbage => &self.garbage,
            IncidentKind::CameraOffline => &self.camera_offline,
            IncidentKind::CameraTamper => &self.camera_tamper,
        }
    }
}

/// A government agency (OPD) that receives dispositions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    pub id: String,
    pub name: String,
    /// Short name for tables and badges ("Dishub"); defaults to the id upper-cased.
    #[serde(default)]
    pub short_name: Option<String>,
}

impl Agency {
    pub fn short(&self) -> String {
        self.short_name
            .clone()
            .unwrap_or_else(|| self.id.to_uppercase())
    }
}

/// A report category with its service level and the agencies it routes to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name: String,
    /// Hours from disposition to the agency's answer (24, 48 or 72 in the seed services).
    pub sla_hours: u32,
    /// Agency ids, the first being the default recipient.
    pub agencies: Vec<String>,
    /// Offered on the citizen form (camera faults are filed by the cameras only).
    #[serde(default = "yes")]
    pub public: bool,
}

fn yes() -> bool {
    true
}

fn agency(id: &str, short: &str, name: &str) -> Agency {
    Agency {
        id: id.into(),
        name: name.into(),
        short_name: Some(short.into()),
    }
}

fn category(id: &str, name: &str, sla_hours: u32, agencies: &[&str]) -> Category {
    Category {
        id: id.into(),
        name: name.into(),
        sla_hours,
        agencies: agencies.iter().map(|s| s.to_string()).collect(),
        public: true,
    }
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            database: None,
            max_photo_bytes: 5 * 1024 * 1024,
            public_url: None,
            ticket_prefix: "PLG".into(),
            session_hours: 12,
            cookie_secure: false,
            login_max_failures: 5,
            login_window_s: 900,
            login_max_backoff_s: 900,
            login_client_max_failures: 30,
            login_account_max_failures: 20,
            login_account_slowdown_s: 10,
            password_checks_parallel: 2,
            password_checks_queue: 16,
            debug_password_check_delay_ms: 0,
            sms_token: None,
            key_file: None,
            wall_url: None,
            http: super::HttpConfig::default(),
            limits: super::DeskLimits::default(),
            mqtt: DeskMqtt::default(),
            map: MapConfig::default(),
            incident_categories: IncidentCategories::default(),
            agencies: vec![
                agency("dishub", "Dishub", "Dinas Perhubungan"),
                agency("satlantas", "Satlantas", "Satlantas Polrestabes Palembang"),
                agency("dlh", "DLHK", "Dinas Lingkungan Hidup dan Kebersihan"),
                agency("satpolpp", "Satpol PP", "Satuan Polisi Pamong Praja"),
                agency("pupr", "PUPR", "Dinas Pekerjaan Umum dan Penataan Ruang"),
                agency("perkim", "Perkim", "Dinas Perumahan dan Kawasan Permukiman"),
                agency("bpbd", "BPBD", "Badan Penanggulangan Bencana Daerah"),
                agency(
                    "diskominfo",
                    "Diskominfo",
                    "Dinas Komunikasi dan Informatika",
                ),
            ],
            categories: vec![
                category("traffic", "Lalu lintas", 24, &["dishub", "satlantas"]),
                category("garbage", "Sampah dan kebersihan", 48, &["dlh"]),
                category("crowd", "Kerumunan dan ketertiban umum", 24, &["satpolpp"]),
                category("roads", "Jalan rusak", 72, &["pupr"]),
                category(
                    "street_lights",
                    "Penerangan jalan",
                    72,
                    &["dishub", "perkim"],
                ),
                category("flood", "Banjir dan genangan", 24, &["pupr", "bpbd"]),
                Category {
                    public: false,
                    ..category("camera_fault", "Gangguan kamera CCTV", 48, &["diskominfo"])
                },
                category("other", "Lainnya", 72, &["diskominfo"]),
            ],
        }
    }
}

impl DeskConfig {
    /// Why the desk may not listen on `addr` without an SMS token: anyone who reaches it could
    /// post SMS as any phone (and confirm someone else's report). `None` on loopback.
    pub fn needs_sms_token(&self, addr: SocketAddr) -> Option<String> {
        (self.sms_token.is_none() && !addr.ip().is_loopback()).then(|| {
            format!(
                "is required when the desk listens beyond loopback ({addr}): without it anyone \
                 on the network can post SMS with any sender; set a random token of at least \
                 16 characters and give it to the SMS gateway"
            )
        })
    }

    pub fn agency(&self, id: &str) -> Option<&Agency> {
        self.agencies.iter().find(|a| a.id == id)
    }

    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.agencies.iter().enumerate() {
            if !is_id(&a.id) || !seen.insert(a.id.as_str()) {
                bad(
                    p.key("agencies").index(i).key("id"),
                    format!(
                        "agency id {:?} is empty, repeated or not lower-case letters, digits, '-' and '_'",
                        a.id
                    ),
                );
            }
            if a.name.trim().is_empty() {
                bad(
                    p.key("agencies").index(i).key("name"),
                    "must not be empty".into(),
                );
            }
        }
        if self.agencies.is_empty() {
            bad(p.key("agencies"), "at least one agency is needed".into());
        }
        let mut cats = std::collections::HashSet::new();
        for (i, c) in self.categories.iter().enumerate() {
            let cp = p.key("categories").index(i);
            if !is_id(&c.id) || !cats.insert(c.id.as_str()) {
                bad(
                    cp.key("id"),
                    format!(
                        "category id {:?} is empty, repeated or not lower-case letters, digits, '-' and '_'",
                        c.id
                    ),
                );
            }
            if c.name.trim().is_empty() {
                bad(cp.key("name"), "must not be empty".into());
            }
            if c.sla_hours == 0 || c.sla_hours > 24 * 365 {
                bad(
                    cp.key("sla_hours"),
                    format!("must be between 1 and 8760, got {}", c.sla_hours),
                );
            }
            if c.agencies.is_empty() {
                bad(cp.key("agencies"), "must name at least one agency".into());
            }
            for (j, a) in c.agencies.iter().enumerate() {
                if !seen.contains(a.as_str()) {
                    bad(
                        cp.key("agencies").index(j),
                        format!("unknown agency {a:?} (not in [[desk.agencies]])"),
                    );
                }
            }
        }
        if self.categories.is_empty() {
            bad(
                p.key("categories"),
                "at least one category is needed".into(),
            );
        }
        if !self.categories.iter().any(|c| c.public) {
            bad(
                p.key("categories"),
                "at least one category must be public (offered on the citizen form)".into(),
            );
        }
        let ic = p.key("incident_categories");
        for kind in IncidentKind::ALL {
            let id = self.incident_categories.for_kind(kind);
            if !cats.contains(id) {
                bad(
                    ic.key(kind.as_str()),
                    format!("unknown category {id:?} (not in [[desk.categories]])"),
                );
            }
        }
        if self.max_photo_bytes == 0 || self.max_photo_bytes > 50 * 1024 * 1024 {
            bad(
                p.key("max_photo_bytes"),
                format!(
                    "must be between 1 and 52428800 (50 MiB), got {}",
                    self.max_photo_bytes
                ),
            );
        }
        let prefix_ok = (1..=6).contains(&self.ticket_prefix.len())
            && self.ticket_prefix.bytes().all(|b| b.is_ascii_uppercase());
        if !prefix_ok {
            bad(
                p.key("ticket_prefix"),
                format!(
                    "must be 1 to 6 upper-case letters A-Z, got {:?}",
                    self.ticket_prefix
                ),
            );
        }
        if self.session_hours == 0 || self.session_hours > 24 * 7 {
            bad(
                p.key("session_hours"),
                format!("must be between 1 and 168, got {}", self.session_hours),
            );
        }
        if self.login_max_failures == 0 {
            bad(p.key("login_max_failures"), "must be positive".into());
        }
        if self.login_window_s == 0 {
            bad(p.key("login_window_s"), "must be positive".into());
        }
        if let Some(u) = &self.public_url {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => bad(
                    p.key("public_url"),
                    format!("{u:?} is not an http:// or https:// URL"),
                ),
            }
        }
        if let Some(t) = &self.sms_token {
            if t.trim().len() < 16 {
                bad(
                    p.key("sms_token"),
                    "must be at least 16 characters (it guards the SMS webhook)".into(),
                );
            }
        } else if let Some(why) = self.needs_sms_token(self.listen) {
            bad(p.key("sms_token"), why);
        }
        for (name, v) in [
            ("login_max_backoff_s", self.login_max_backoff_s),
            ("login_account_slowdown_s", self.login_account_slowdown_s),
            (
                "login_client_max_failures",
                u64::from(self.login_client_max_failures),
            ),
            (
                "login_account_max_failures",
                u64::from(self.login_account_max_failures),
            ),
            (
                "password_checks_parallel",
                u64::from(self.password_checks_parallel),
            ),
        ] {
            if v == 0 {
                bad(p.key(name), "must be positive".into());
            }
        }
        if let Some(u) = &self.wall_url {
            super::access::check_http_url(u, &p.key("wall_url"), bad);
        }
        self.http.validate(&p.key("http"), bad);
        self.limits.validate(&p.key("limits"), bad);
        let m = p.key("mqtt");
        if self.mqtt.broker != "none" {
            if let Err(msg) = super::check_broker_url(&self.mqtt.broker) {
                bad(m.key("broker"), format!("{msg} (or \"none\")"));
            }
        }
        if self.mqtt.client_id.trim().is_empty() {
            bad(m.key("client_id"), "must not be empty".into());
        }
        if self.mqtt.incidents_topic.trim().is_empty() {
            bad(m.key("incidents_topic"), "must not be empty".into());
        }
        let prefix = &self.mqtt.status_topic_prefix;
        if prefix.trim().is_empty() || prefix.contains(['+', '#']) || prefix.ends_with('/') {
            bad(
                m.key("status_topic_prefix"),
                format!("{prefix:?} must be a topic without wildcards or a trailing '/'"),
            );
        }
        if self.mqtt.max_message_bytes < 1024 {
            bad(m.key("max_message_bytes"), "must be at least 1024".into());
        }
        if !(self.mqtt.backoff_initial_s > 0.0
            && self.mqtt.backoff_initial_s <= self.mqtt.backoff_max_s)
        {
            bad(
                m.key("backoff_initial_s"),
                "must be positive and not above backoff_max_s".into(),
            );
        }
        let mp = p.key("map");
        if !(-90.0..=90.0).contains(&self.map.center[0])
            || !(-180.0..=180.0).contains(&self.map.center[1])
        {
            bad(
                mp.key("center"),
                format!("{:?} is not [lat, lon]", self.map.center),
            );
        }
        if !(1..=19).contains(&self.map.zoom) {
            bad(mp.key("zoom"), "must be between 1 and 19".into());
        }
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &DeskConfig) -> Vec<String> {
        let mut out = Vec::new();
        c.validate(&FieldPath::root().key("desk"), &mut |p, m| {
            out.push(format!("{p}: {m}"))
        });
        out
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems(&DeskConfig::default()), Vec::<String>::new());
    }

    #[test]
    fn bad_values_name_their_field() {
        type Edit = fn(&mut DeskConfig);
        let cases: &[(Edit, &str)] = &[
            (|c| c.ticket_prefix = String::new(), "desk.ticket_prefix"),
            (|c| c.ticket_prefix = "plg".into(), "desk.ticket_prefix"),
            (|c| c.ticket_prefix = "ABCDEFG".into(), "desk.ticket_prefix"),
            (|c| c.session_hours = 0, "desk.session_hours"),
            (|c| c.session_hours = 169, "desk.session_hours"),
            (|c| c.max_photo_bytes = 0, "desk.max_photo_bytes"),
            (|c| c.login_max_failures = 0, "desk.login_max_failures"),
            (|c| c.public_url = Some("ftp://x".into()), "desk.public_url"),
            (|c| c.sms_token = Some("short".into()), "desk.sms_token"),
            (
                |c| c.listen = SocketAddr::from(([0, 0, 0, 0], 8090)),
                "desk.sms_token",
            ),
            (|c| c.wall_url = Some("wall:8080".into()), "desk.wall_url"),
            (|c| c.http.max_connections = 0, "desk.http.max_connections"),
            (
                |c| c.limits.per_phone.burst = 0,
                "desk.limits.per_phone.burst",
            ),
            (
                |c| c.password_checks_parallel = 0,
                "desk.password_checks_parallel",
            ),
            (|c| c.mqtt.broker = "http://x".into(), "desk.mqtt.broker"),
            (
                |c| c.mqtt.status_topic_prefix = "a/+/b".into(),
                "desk.mqtt.status_topic_prefix",
            ),
            (
                |c| c.mqtt.max_message_bytes = 10,
                "desk.mqtt.max_message_bytes",
            ),
            (|c| c.map.zoom = 0, "desk.map.zoom"),
            (|c| c.map.center = [95.0, 0.0], "desk.map.center"),
            (
                |c| c.incident_categories.garbage = "nope".into(),
                "desk.incident_categories.garbage",
            ),
            (
                |c| c.categories[0].sla_hours = 0,
                "desk.categories[0].sla_hours",
            ),
            (
                |c| c.categories[1].agencies = vec!["nobody".into()],
                "desk.categories[1].agencies[0]",
            ),
            (
                |c| c.agencies[1].id = "dishub".into(),
                "desk.agencies[1].id",
            ),
            (
                |c| c.agencies[0].id = "Dishub".into(),
                "desk.agencies[0].id",
            ),
        ];
        for (edit, field) in cases {
            let mut c = DeskConfig::default();
            edit(&mut c);
            let p = problems(&c);
            assert!(
                p.iter().any(|m| m.starts_with(&format!("{field}:"))),
                "{field}: {p:?}"
            );
        }
    }

    #[test]
    fn broker_none_disables_mqtt_without_complaint() {
        let mut c = DeskConfig::default();
        c.mqtt.broker = "none".into();
        assert!(problems(&c).is_empty());
    }
}
