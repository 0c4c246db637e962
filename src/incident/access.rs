//! Who may use the broker, and for what: the broker's users and their topic rights, derived
//! from the config, written as a Mosquitto password file and ACL file.
//!
//! | user | may publish | may read |
//! |---|---|---|
//! | `site-{id}`, one per site | its own `simpang/v1/sites/{id}/incidents`, `/status`, `/counts` (its last will too) | nothing |
//! | `desk` | `{desk.mqtt.status_topic_prefix}/#` | `desk.mqtt.incidents_topic` |
//! | `viewer` | nothing | `simpang/v1/#` |
//! | `simpang-health` (managed broker only) | nothing | nothing: it proves the broker takes logins |
//! | `simpang-nodes` (NATS cluster only, not an MQTT user) | the JetStream API of simpang's two KV buckets (site leases, open incidents) | its request replies |
//!
//! The same files serve the managed broker of `simpang run` and an external Mosquitto
//! (`simpang mqtt-credentials`). The secrets behind them live in a [`Credentials`] file
//! (`secrets.rs`); the password file holds only salted PBKDF2-SHA512 hashes in Mosquitto's
//! `$7$` format, so it can be handed to a broker host without the passwords.

use std::fmt::Write as _;

use base64::Engine;
use hmac::Hmac;
use sha2::Sha512;

use super::secrets::Credentials;
use super::topics;
use crate::config::Config;

/// The complaint desk's user.
pub const DESK_USER: &str = "desk";
/// The read-only user (dashboards, `mosquitto_sub` by an operator).
pub const VIEWER_USER: &str = "viewer";
/// The managed broker's own health probe: logs in, may do nothing.
pub const HEALTH_USER: &str = "simpang-health";
/// The cluster nodes' NATS user (`simpang run --node`): leases and open incidents.
pub const NODES_USER: &str = "simpang-nodes";
/// The KV buckets the nodes' user may use (src/cluster).
const NODE_BUCKETS: [&str; 2] = ["simpang-leases", "simpang-open-incidents"];
/// PBKDF2 iterations of Mosquitto 2.0's `$7$` hashes (what `mosquitto_passwd` writes).
const PBKDF2_ROUNDS: u32 = 101;
/// Salt length of `mosquitto_passwd`.
const SALT_BYTES: usize = 12;

/// The user a site's producer connects as.
pub fn site_user(site: &str) -> String {
    format!("site-{site}")
}

/// What a user is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserKind {
    /// A site's producer (`simpang run` serving that site).
    Producer {
        site: String,
    },
    Desk,
    Viewer,
    Health,
    /// The cluster nodes' NATS login for the lease and open-incident buckets: its `write` and
    /// `read` are NATS subjects, and it is not a user of Mosquitto.
    Nodes,
}

/// One broker user and its topic rights (MQTT topic filters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUser {
    pub name: String,
    pub kind: UserKind,
    pub read: Vec<String>,
    pub write: Vec<String>,
}

impl BrokerUser {
    /// What the user is for, in words (generated files and `simpang mqtt-credentials`).
    pub fn role(&self) -> String {
        match &self.kind {
            UserKind::Producer { site } => format!("producer of site {site}"),
            UserKind::Desk => "complaint desk".into(),
            UserKind::Viewer => "read-only".into(),
            UserKind::Health => "broker health probe".into(),
            UserKind::Nodes => "cluster nodes' leases (NATS only)".into(),
        }
    }
}

/// The users of a deployment: one producer per configured site, the desk, the viewer; plus the
/// health probe when `managed` (the broker `simpang run` starts).
pub fn broker_users(cfg: &Config, managed: bool) -> Vec<BrokerUser> {
    let mut users: Vec<BrokerUser> = cfg
        .sites
        .iter()
        .map(|s| BrokerUser {
            name: site_user(s.id.as_str()),
            kind: UserKind::Producer {
                site: s.id.to_string(),
            },
            read: Vec::new(),
            write: vec![
                topics::incidents(s.id.as_str()),
                topics::status(s.id.as_str()),
                topics::counts(s.id.as_str()),
            ],
        })
        .collect();
    users.push(BrokerUser {
        name: DESK_USER.into(),
        kind: UserKind::Desk,
        read: vec![cfg.desk.mqtt.incidents_topic.clone()],
        write: vec![format!("{}/#", cfg.desk.mqtt.status_topic_prefix)],
    });
    users.push(BrokerUser {
        name: VIEWER_USER.into(),
        kind: UserKind::Viewer,
        read: vec![topics::ALL.into()],
        write: Vec::new(),
    });
    if managed {
        users.push(BrokerUser {
            name: HEALTH_USER.into(),
            kind: UserKind::Health,
            read: Vec::new(),
            write: Vec::new(),
        });
    }
    users
}

/// The cluster nodes' NATS user: JetStream requests on simpang's two KV buckets only (create
/// and read them, get and put keys, the watch's ordered consumer and its flow control), and
/// the replies to its requests. Not the MQTT streams, not other buckets.
pub fn nodes_user() -> BrokerUser {
    let mut write = vec!["$JS.API.INFO".to_string()];
    for b in NODE_BUCKETS {
        let stream = format!("KV_{b}");
        write.extend([
            format!("$JS.API.STREAM.*.{stream}"),
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}"),
            format!("$JS.API.DIRECT.GET.{stream}.>"),
            format!("$JS.API.CONSUMER.*.{stream}"),
            format!("$JS.API.CONSUMER.*.{stream}.>"),
            format!("$JS.FC.{stream}.>"),
            format!("$KV.{b}.>"),
        ]);
    }
    BrokerUser {
        name: NODES_USER.into(),
        kind: UserKind::Nodes,
        read: vec!["_INBOX.>".into()],
        write,
    }
}

/// Why a user or topic cannot go into Mosquitto's line-based files.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("user {user:?}: topic {topic:?} cannot go into an ACL file (empty, or holds a space, a newline or a NUL)")]
    Topic { user: String, topic: String },
    #[error("user name {0:?} cannot go into a password file (empty, or holds ':', a space or a newline)")]
    User(String),
    #[error("no password for user {0:?} in the credentials")]
    NoPassword(String),
}

fn line_safe(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '\0')
}

/// Mosquitto's ACL file for `users`: each user may publish its `write` filters and receive its
/// `read` filters, nothing else (anonymous clients are refused by the broker config).
pub fn acl_file(users: &[BrokerUser], header: &str) -> Result<String, AccessError> {
    let mut out = String::new();
    for l in header.lines() {
        let _ = writeln!(out, "# {l}");
    }
    for u in users {
        if !line_safe(&u.name) || u.name.contains(':') {
            return Err(AccessError::User(u.name.clone()));
        }
        let _ = writeln!(out, "\n# {}\nuser {}", u.role(), u.name);
        for (dir, topics) in [("write", &u.write), ("read", &u.read)] {
            for t in topics {
                if !line_safe(t) {
                    return Err(AccessError::Topic {
                        user: u.name.clone(),
                        topic: t.clone(),
                    });
                }
                let _ = writeln!(out, "topic {dir} {t}");
            }
        }
    }
    Ok(out)
}

/// An MQTT topic filter as a NATS subject (NATS's MQTT listener maps `/` to `.`, `+` to `*`,
/// `#` to `>`). A filter ending in `/#` also matches its parent in MQTT, so it becomes two
/// subjects. `None` for what NATS would map differently (a `.`, a space, an empty level).
fn nats_subjects(filter: &str) -> Option<Vec<String>> {
    if filter.is_empty() || filter.contains(['.', ' ', '\0', '"', '\\']) {
        return None;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    if levels.iter().any(|l| l.is_empty()) {
        return None;
    }
    let mapped: Vec<&str> = levels
        .iter()
        .map(|l| match *l {
            "+" => "*",
            "#" => ">",
            other => other,
        })
        .collect();
    let subject = mapped.join(".");
    Some(match subject.strip_suffix(".>") {
        Some(parent) => vec![parent.to_string(), subject.clone()],
        None => vec![subject],
    })
}

/// The `authorization` block of a NATS server (the nodes of a broker cluster include it) for
/// `users`, with the same rights as the Mosquitto ACL: each user may publish its `write`
/// filters and subscribe to its `read` filters, nothing else. Passwords from `creds` in clear
/// text (NATS takes bcrypt hashes too; the file is private like the credentials file).
pub fn nats_authorization(
    users: &[BrokerUser],
    creds: &Credentials,
) -> Result<String, AccessError> {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let list = |user: &BrokerUser, filters: &[String]| -> Result<String, AccessError> {
        let mut out = Vec::new();
        if user.kind == UserKind::Nodes {
            return Ok(filters.iter().map(|f| q(f)).collect::<Vec<_>>().join(", "));
        }
        for f in filters {
            let subjects = nats_subjects(f).ok_or_else(|| AccessError::Topic {
                user: user.name.clone(),
                topic: f.clone(),
            })?;
            out.extend(subjects.iter().map(|s| q(s)));
        }
        Ok(out.join(", "))
    };
    let mut out = String::from(
        "# NATS authorization for simpang's MQTT users (written by simpang mqtt-credentials).\n\
         # SECRET: passwords in clear text; readable by its owner only.\n\
         authorization {\n  users = [\n",
    );
    for u in users {
        if !line_safe(&u.name) || u.name.contains(['"', '\\']) {
            return Err(AccessError::User(u.name.clone()));
        }
        let pw = creds
            .password(&u.name)
            .ok_or_else(|| AccessError::NoPassword(u.name.clone()))?;
        let rights = |allowed: String| {
            if allowed.is_empty() {
                "deny: [\">\"]".to_string()
            } else {
                format!("allow: [{allowed}]")
            }
        };
        let _ = writeln!(
            out,
            "    # {}\n    {{ user: {}, password: {}, permissions: {{ publish: {{ {} }}, subscribe: {{ {} }} }} }}",
            u.role(),
            q(&u.name),
            q(pw),
            rights(list(u, &u.write)?),
            rights(list(u, &u.read)?),
        );
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// Mosquitto's password file for `users`, passwords from `creds` (fresh salts every time).
pub fn passwd_file(users: &[BrokerUser], creds: &Credentials) -> Result<String, AccessError> {
    let mut out = String::new();
    for u in users {
        if !line_safe(&u.name) || u.name.contains(':') {
            return Err(AccessError::User(u.name.clone()));
        }
        let pw = creds
            .password(&u.name)
            .ok_or_else(|| AccessError::NoPassword(u.name.clone()))?;
        let _ = writeln!(out, "{}:{}", u.name, mosquitto_hash(pw, &random_salt()));
    }
    Ok(out)
}

fn random_salt() -> [u8; SALT_BYTES] {
    use rand::RngCore;
    let mut s = [0u8; SALT_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

/// `$7$101$<salt>$<hash>`: PBKDF2-HMAC-SHA512, 101 rounds, 64-byte hash, standard base64, as
/// Mosquitto 2.0's `mosquitto_passwd` writes and its broker checks.
pub fn mosquitto_hash(password: &str, salt: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let hash = pbkdf2_sha512(password.as_bytes(), salt, PBKDF2_ROUNDS);
    format!(
        "$7${PBKDF2_ROUNDS}${}${}",
        b64.encode(salt),
        b64.encode(hash)
    )
}

/// True when `password` matches a `$7$` line hash (used by tests against `mosquitto_passwd`).
pub fn mosquitto_hash_matches(password: &str, hash: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let parts: Vec<&str> = hash.split('$').collect();
    let ["", "7", rounds, salt, want] = parts.as_slice() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(want)) =
        (rounds.parse::<u32>(), b64.decode(salt), b64.decode(want))
    else {
        return false;
    };
    if rounds == 0 || rounds > 1_000_000 {
        return false;
    }
    let got = pbkdf2_sha512(password.as_bytes(), &salt, rounds);
    got.len() == want.len() && got.iter().zip(&want).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

/// PBKDF2 (RFC 8018) with HMAC-SHA512, one 64-byte block: all Mosquitto uses.
fn pbkdf2_sha512(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    use hmac::Mac;
    let prf = <Hmac<Sha512> as Mac>::new_from_slice(password).unwrap_or_else(|_| unreachable!());
    let mut u = {
        let mut m = prf.clone();
        m.update(salt);
        m.update(&1u32.to_be_bytes());
        m.finalize().into_bytes()
    };
    let mut t = [0u8; 64];
    t.copy_from_slice(&u);
    for _ in 1..rounds {
        let mut m = prf.clone();
        m.update(&u);
        u = m.finalize().into_bytes();
        for (a, b) in t.iter_mut().zip(u.iter()) {
            *a ^= b;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg() -> Config {
        Config::from_str_at(
            r#"
[city]
name = "P"
[[sites]]
id = "bkb"
name = "BKB"
address = "x"
lat = 0.0
lon = 0.0
stream = "rtsp://127.0.0.1:1/a"
[[sites]]
id = "ampera"
name = "Ampera"
address = "x"
lat = 0.0
lon = 0.0
stream = "rtsp://127.0.0.1:1/b"
"#,
            Path::new("/tmp/t.toml"),
        )
        .unwrap()
    }

    #[test]
    fn users_and_rights() {
        let users = broker_users(&cfg(), false);
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["site-bkb", "site-ampera", "desk", "viewer"]);
        assert_eq!(
            users[0].write,
            [
                "simpang/v1/sites/bkb/incidents",
                "simpang/v1/sites/bkb/status",
                "simpang/v1/sites/bkb/counts"
            ]
        );
        assert!(users[0].read.is_empty());
        assert_eq!(users[2].read, ["simpang/v1/sites/+/incidents"]);
        assert_eq!(users[2].write, ["simpang/v1/desk/reports/#"]);
        assert_eq!(users[3].read, ["simpang/v1/#"]);
        assert!(users[3].write.is_empty());
        assert_eq!(broker_users(&cfg(), true).last().unwrap().name, HEALTH_USER);
    }

    #[test]
    fn acl_text() {
        let users = broker_users(&cfg(), false);
        let acl = acl_file(&users, "generated for a test").unwrap();
        assert!(acl.starts_with("# generated for a test\n"), "{acl}");
        assert!(acl.contains("user site-ampera\ntopic write simpang/v1/sites/ampera/incidents\n"));
        assert!(acl.contains("user viewer\ntopic read simpang/v1/#\n"));
        let mut bad = users.clone();
        bad[2].read = vec!["a b".into()];
        assert!(matches!(acl_file(&bad, ""), Err(AccessError::Topic { .. })));
        bad[2].name = "de:sk".into();
        assert!(matches!(acl_file(&bad, ""), Err(AccessError::User(_))));
    }

    /// RFC 6070-style check of the PBKDF2 core against a vector computed with Python's
    /// `hashlib.pbkdf2_hmac('sha512', b'password', b'salt', 1)`.
    #[test]
    fn pbkdf2_known_answer() {
        let got = hex::encode(pbkdf2_sha512(b"password", b"salt", 1));
        assert_eq!(
            got,
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
        let h = mosquitto_hash("rahasia", b"0123456789ab");
        assert!(h.starts_with("$7$101$MDEyMzQ1Njc4OWFi$"), "{h}");
        assert!(mosquitto_hash_matches("rahasia", &h));
        assert!(!mosquitto_hash_matches("salah", &h));
        assert!(!mosquitto_hash_matches("rahasia", "$6$x$y"));
        // A line `mosquitto_passwd -b FILE u rahasia` (2.0.11) wrote.
        let theirs = "$7$101$4Avi91AIWuEmXZTY$PiiPd/YPAm4NNRFa0gw95lqkrtzE1W3a/0nR5qZ++m4A5KdVd0hWxh8F9+N8zCrIQ2E1X2YzurFEl0W+/ZF5Cw==";
        assert!(mosquitto_hash_matches("rahasia", theirs));
        assert!(!mosquitto_hash_matches("Rahasia", theirs));
    }

    #[test]
    fn the_nodes_user_reaches_simpangs_buckets_only() {
        let mut users = broker_users(&cfg(), false);
        users.push(nodes_user());
        let mut creds = Credentials::default();
        creds.ensure(&users, false);
        let conf = nats_authorization(&users, &creds).unwrap();
        let line = conf
            .lines()
            .find(|l| l.contains("\"simpang-nodes\""))
            .expect("the nodes' user is in the NATS users");
        for s in [
            "\"$KV.simpang-leases.>\"",
            "\"$KV.simpang-open-incidents.>\"",
            "\"$JS.API.STREAM.*.KV_simpang-leases\"",
            "\"_INBOX.>\"",
        ] {
            assert!(line.contains(s), "{s} in {line}");
        }
        // No MQTT topic, no JetStream API beyond its buckets' streams.
        assert!(!line.contains("simpang.v1"), "{line}");
        assert!(!line.contains("\"$JS.API.>\""), "{line}");
        assert!(!line.contains("$MQTT"), "{line}");
        // And it is not a Mosquitto user.
        assert!(!acl_file(&broker_users(&cfg(), false), "")
            .unwrap()
            .contains(NODES_USER));
    }

    #[test]
    fn nats_subjects_follow_natss_mqtt_mapping() {
        assert_eq!(
            nats_subjects("simpang/v1/sites/a/incidents").unwrap(),
            ["simpang.v1.sites.a.incidents"]
        );
        assert_eq!(
            nats_subjects("simpang/v1/sites/+/incidents").unwrap(),
            ["simpang.v1.sites.*.incidents"]
        );
        assert_eq!(
            nats_subjects("simpang/v1/#").unwrap(),
            ["simpang.v1", "simpang.v1.>"]
        );
        for bad in ["", "a.b/c", "a//b", "/a", "a b"] {
            assert!(nats_subjects(bad).is_none(), "{bad:?}");
        }
    }
}
