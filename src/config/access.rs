//! Who may reach what, and how much of it: the limits of every HTTP listener (`[wall.http]`,
//! `[desk.http]`), the wall's sign-in (`[wall.auth]`), the metrics listener (`[metrics]`) and
//! the desk's public rate limits (`[desk.limits]`). docs/security.md explains the choices.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::locate::FieldPath;
use super::Config;

impl Config {
    /// `[wall.auth] key_file`, else `data_dir/wall.key` (the wall and a desk that sends staff
    /// there read the same file).
    pub fn wall_key_path(&self) -> PathBuf {
        match &self.wall.auth.key_file {
            Some(p) => self.resolve(p),
            None => self.data_dir().join("wall.key"),
        }
    }

    /// `[wall.auth] accounts`, else `data_dir/wall-accounts.toml`.
    pub fn wall_accounts_path(&self) -> PathBuf {
        match &self.wall.auth.accounts {
            Some(p) => self.resolve(p),
            None => self.data_dir().join("wall-accounts.toml"),
        }
    }

    /// `[desk] key_file`, else `data_dir/desk.key`.
    pub fn desk_key_path(&self) -> PathBuf {
        match &self.desk.key_file {
            Some(p) => self.resolve(p),
            None => self.data_dir().join("desk.key"),
        }
    }
}

/// Limits of one HTTP listener (see `guard::serve`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request head (and the next one on a kept-alive connection) must arrive within this.
    pub header_timeout_s: f64,
    /// A handler must answer within this (reading an upload counts; a stream's body does not).
    pub request_timeout_s: f64,
    /// A client that reads nothing of a response for this long is disconnected.
    pub write_stall_timeout_s: f64,
    /// Connections open at once, in all...
    pub max_connections: u32,
    /// ...and from one address (an IPv6 /64 counts as one).
    pub max_connections_per_ip: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_timeout_s: 10.0,
            request_timeout_s: 60.0,
            write_stall_timeout_s: 30.0,
            max_connections: 512,
            max_connections_per_ip: 64,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        for (name, v) in [
            ("header_timeout_s", self.header_timeout_s),
            ("request_timeout_s", self.request_timeout_s),
            ("write_stall_timeout_s", self.write_stall_timeout_s),
        ] {
            if !(v > 0.0 && v <= 3600.0) {
                bad(
                    p.key(name),
                    format!("must be in (0, 3600] seconds, got {v}"),
                );
            }
        }
        if self.max_connections == 0 {
            bad(p.key("max_connections"), "must be positive".into());
        }
        if self.max_connections_per_ip == 0 || self.max_connections_per_ip > self.max_connections {
            bad(
                p.key("max_connections_per_ip"),
                format!(
                    "must be between 1 and max_connections ({}), got {}",
                    self.max_connections, self.max_connections_per_ip
                ),
            );
        }
    }
}

/// Desk roles a wall accepts from the desk's hand-off.
pub const DESK_ROLES: &[&str] = &["admin", "operator", "agency", "viewer"];

/// Sign-in to the wall and to annotated RTSP out (`[wall.auth]`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WallAuthConfig {
    /// The wall's accounts (people and devices), managed with `simpang wall user|device ...`;
    /// default `data_dir/wall-accounts.toml`. Relative to the config file.
    pub accounts: Option<PathBuf>,
    /// The HMAC key of wall sessions and of the desk's hand-off tokens (64 hex digits);
    /// default `data_dir/wall.key`, created on first start. A desk that sends its staff to the
    /// wall needs the same file.
    pub key_file: Option<PathBuf>,
    /// A browser session lasts this many hours (one shift).
    pub session_hours: u32,
    /// Mark the session cookie `Secure` (set when the wall is served over HTTPS).
    pub cookie_secure: bool,
    /// The desk's address: the wall's sign-in page offers "sign in with the desk" there.
    pub desk_url: Option<String>,
    /// Desk roles whose staff the wall lets in through the desk.
    pub desk_roles: Vec<String>,
    /// Responses (streams, pages, API calls) one signed-in client may have open at once.
    pub max_streams_per_client: u32,
    /// Annotated RTSP out: clients at once, in all and from one address.
    pub rtsp_max_clients: u32,
    pub rtsp_max_clients_per_ip: u32,
}

impl Default for WallAuthConfig {
    fn default() -> Self {
        Self {
            accounts: None,
            key_file: None,
            session_hours: 12,
            cookie_secure: false,
            desk_url: None,
            desk_roles: vec!["admin".into(), "operator".into(), "viewer".into()],
            max_streams_per_client: 32,
            rtsp_max_clients: 64,
            rtsp_max_clients_per_ip: 16,
        }
    }
}

impl WallAuthConfig {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        if self.session_hours == 0 || self.session_hours > 24 * 7 {
            bad(
                p.key("session_hours"),
                format!("must be between 1 and 168, got {}", self.session_hours),
            );
        }
        if let Some(u) = &self.desk_url {
            check_http_url(u, &p.key("desk_url"), bad);
        }
        for (i, r) in self.desk_roles.iter().enumerate() {
            if !DESK_ROLES.contains(&r.as_str()) {
                bad(
                    p.key("desk_roles").index(i),
                    format!("unknown desk role {r:?} (use {})", DESK_ROLES.join(", ")),
                );
            }
        }
        for (name, v) in [
            ("max_streams_per_client", self.max_streams_per_client),
            ("rtsp_max_clients", self.rtsp_max_clients),
            ("rtsp_max_clients_per_ip", self.rtsp_max_clients_per_ip),
        ] {
            if v == 0 {
                bad(p.key(name), "must be positive".into());
            }
        }
    }
}

/// The operations listener of `simpang run` (`[metrics]`): `/metrics`, `/api/status`,
/// `/healthz`, without sign-in, so it stays on loopback unless a scraper elsewhere needs it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
    pub http: HttpConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            http: HttpConfig {
                max_connections: 32,
                max_connections_per_ip: 16,
                ..HttpConfig::default()
            },
        }
    }
}

/// A rate: `burst` at once, then `per_hour` spread over the hour (0 turns it off).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_hour: u32,
    pub burst: u32,
}

const fn rate(per_hour: u32, burst: u32) -> Rate {
    Rate { per_hour, burst }
}

/// Rate limits of the desk's public side (`[desk.limits]`), per client address (an IPv6 /64
/// counts as one) and per phone number.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeskLimits {
    /// Citizen reports (`POST /lapor`, `POST /api/reports`) from one address.
    pub reports_per_ip: Rate,
    /// Reports and SMS commands from one phone number (web form with a phone, SMS).
    pub per_phone: Rate,
    /// `POST /api/sms` from one address (the gateway's: high).
    pub sms_per_ip: Rate,
    /// Tracker pages and PIN posts (`/track/...`, `/api/track/...`) from one address.
    pub track_per_ip: Rate,
    /// Sign-in posts from one address (besides the backoff of wrong passwords).
    pub login_per_ip: Rate,
}

impl Default for DeskLimits {
    fn default() -> Self {
        Self {
            reports_per_ip: rate(30, 10),
            per_phone: rate(20, 5),
            sms_per_ip: rate(7200, 200),
            track_per_ip: rate(600, 30),
            login_per_ip: rate(600, 30),
        }
    }
}

impl DeskLimits {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        for (name, r) in [
            ("reports_per_ip", self.reports_per_ip),
            ("per_phone", self.per_phone),
            ("sms_per_ip", self.sms_per_ip),
            ("track_per_ip", self.track_per_ip),
            ("login_per_ip", self.login_per_ip),
        ] {
            if r.per_hour > 0 && r.burst == 0 {
                bad(
                    p.key(name).key("burst"),
                    "must be at least 1 when per_hour is set".into(),
                );
            }
        }
    }
}

pub(crate) fn check_http_url(u: &str, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    match url::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        _ => bad(
            p.clone(),
            format!("{u:?} is not an http:// or https:// URL"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: impl FnOnce(&mut dyn FnMut(FieldPath, String))) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut |p, m| out.push(format!("{p}: {m}")));
        out
    }

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        let root = FieldPath::root();
        assert!(
            problems(|b| HttpConfig::default().validate(&root, &mut |p, m| b(p, m))).is_empty()
        );
        assert!(
            problems(|b| WallAuthConfig::default().validate(&root, &mut |p, m| b(p, m))).is_empty()
        );
        let h = HttpConfig {
            header_timeout_s: 0.0,
            max_connections_per_ip: 1000,
            ..HttpConfig::default()
        };
        let p = problems(|b| h.validate(&root.key("desk").key("http"), &mut |p, m| b(p, m)));
        assert!(p[0].starts_with("desk.http.header_timeout_s:"), "{p:?}");
        assert!(
            p[1].starts_with("desk.http.max_connections_per_ip:"),
            "{p:?}"
        );
        let a = WallAuthConfig {
            desk_roles: vec!["admin".into(), "boss".into()],
            desk_url: Some("ftp://x".into()),
            ..WallAuthConfig::default()
        };
        let p = problems(|b| a.validate(&root.key("wall").key("auth"), &mut |p, m| b(p, m)));
        assert!(
            p.iter().any(|m| m.starts_with("wall.auth.desk_url:")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with("wall.auth.desk_roles[1]:")),
            "{p:?}"
        );
    }
}
