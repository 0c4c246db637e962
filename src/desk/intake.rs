//! Camera incidents into reports. One message on `simpang/v1/sites/{site}/incidents` is checked
//! whole before anything is stored; a message that fails any check lands in the dead-letter
//! table with the reason, and the report is left as it was.
//!
//! Trust (docs/security.md, "Incident intake"): the desk believes a message only for a site it
//! is configured with, only when it carries that site's signature (once the desk holds signing
//! keys), only with a time within `desk.mqtt.max_age_s` before and `max_future_s` after now,
//! and only with a `seq` at most `max_seq_jump` past the last one stored, so a forged
//! `seq = 4294967295` cannot make the genuine messages that follow look stale.
//!
//! Idempotent by incident id: the first message creates the report (whatever its event, in
//! case the desk missed the `new`), later ones with a higher `seq` update it, and a repeated or
//! older `seq` (a QoS 1 redelivery, an out-of-order retry) changes nothing, except that an
//! `end` still closes a report that is open (an `end` is final, whatever came before it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;

use super::core::{Actor, DeskCore};
use super::domain::Source;
use super::error::DeskError;
use super::photo::{self, sha256_hex};
use super::store::{self, ReportRow, StoreError};
use crate::config::Config;
use crate::incident::sign::{self, SigningKey};
use crate::model::{IncidentEvent, IncidentMessage, INCIDENT_SCHEMA};

/// What became of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntakeOutcome {
    Created(String),
    Updated(String),
    Ended(String),
    /// A `seq` no newer than the one stored: nothing changed.
    Stale(String),
    /// Stored in the dead-letter table with this reason.
    DeadLetter(String),
}

impl IntakeOutcome {
    pub fn ticket(&self) -> Option<&str> {
        match self {
            IntakeOutcome::Created(t)
            | IntakeOutcome::Updated(t)
            | IntakeOutcome::Ended(t)
            | IntakeOutcome::Stale(t) => Some(t),
            IntakeOutcome::DeadLetter(_) => None,
        }
    }
}

/// A snapshot that passed its checks.
struct Snapshot {
    info: photo::ImageInfo,
    bytes: Vec<u8>,
    sha256: String,
}

/// An incident message that passed every check, ready to store.
struct Checked {
    msg: IncidentMessage,
    snapshot: Option<Snapshot>,
    category: String,
}

/// Longest incident id kept; longer ones are refused rather than cut (ids must match exactly).
const MAX_ID: usize = 200;

/// Camera incidents into reports. Fed by the MQTT subscriber ([`super::mqtt::run_intake`]),
/// which also keeps [`Intake::subscribed`] up to date.
pub struct Intake {
    core: Arc<DeskCore>,
    /// The incident subscription is in place on a live broker connection.
    up: AtomicBool,
    /// Each site's signing key; empty: messages are not checked for signatures.
    keys: ArcSwap<HashMap<String, SigningKey>>,
}

impl Intake {
    pub fn new(core: Arc<DeskCore>) -> Self {
        Self {
            core,
            up: AtomicBool::new(false),
            keys: ArcSwap::from_pointee(HashMap::new()),
        }
    }

    /// The sites' signing keys (from `desk.mqtt.credentials_file`); once any is set, every
    /// message must carry a valid signature of its site.
    pub fn set_keys(&self, keys: HashMap<String, SigningKey>) {
        self.keys.store(Arc::new(keys));
    }

    /// How many sites' signing keys the desk holds.
    pub fn signing_keys(&self) -> usize {
        self.keys.load().len()
    }

    /// True while the desk is subscribed to incidents on a connected broker.
    pub fn subscribed(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_subscribed(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Applies one incident message (from MQTT, or a test). Errors are storage failures only;
    /// a bad message is an `Ok(DeadLetter)`.
    ///
    /// Several desks on one database each receive every message and apply it side by side.
    /// The one that loses a race (the incident's report created by the other first: a unique
    /// `incident_id`; the report changed under it: a version conflict) reads again, and then
    /// finds the message already applied (`Stale`) or applies what is still new.
    pub async fn apply_incident(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<IntakeOutcome, DeskError> {
        let mut lost = 0;
        loop {
            match self.apply_once(topic, payload).await {
                Err(e) if lost < 3 && lost_race(&e) => {
                    lost += 1;
                    tracing::debug!(error = %e, lost, "another desk applied this incident first; reading again");
                }
                done => return done,
            }
        }
    }

    async fn apply_once(&self, topic: &str, payload: &[u8]) -> Result<IntakeOutcome, DeskError> {
        let now = self.core.clock.now();
        let checked = match check_incident(&self.core.cfg, &self.keys.load(), topic, payload, now) {
            Ok(c) => c,
            Err(reason) => return self.dead_letter(topic, payload, reason).await,
        };
        let inc = &checked.msg.incident;
        let event = checked.msg.event;
        let max_jump = i64::from(self.core.cfg.desk.mqtt.max_seq_jump);
        let seq = i64::from(inc.seq);
        let mut tx = self.core.store.begin().await?;
        let existing = store::report_by_incident(&mut tx, &inc.id).await?;
        let last = existing.as_ref().map_or(0, |r| r.incident_seq.unwrap_or(0));
        if seq - last > max_jump {
            tx.rollback().await?;
            let reason = format!(
                "seq {seq} jumps more than desk.mqtt.max_seq_jump ({max_jump}) past {} of incident {}",
                if existing.is_some() {
                    format!("the last one stored ({last})")
                } else {
                    "the start (none stored)".into()
                },
                inc.id
            );
            return self.dead_letter(topic, payload, reason).await;
        }
        let evidence = serde_json::to_string(&inc.evidence).ok();
        let cleared = match event {
            IncidentEvent::End => Some(inc.ended_at.unwrap_or(inc.updated_at).timestamp()),
            _ => None,
        };
        let (report, outcome, feed) = match existing {
            // An `end` closes an open report even after a higher seq: nothing follows an end.
            Some(before)
                if before.incident_seq.unwrap_or(-1) >= seq
                    && !(event == IncidentEvent::End && before.cleared_at.is_none()) =>
            {
                tracing::debug!(incident = %inc.id, seq = inc.seq, "stale incident message ignored");
                return Ok(IntakeOutcome::Stale(before.ticket));
            }
            Some(before) => {
                let mut r = before.clone();
                r.incident_seq = Some(before.incident_seq.unwrap_or(0).max(seq));
                r.level = Some(inc.level.as_str().to_string());
                r.evidence = evidence;
                r.title = inc.title.clone();
                r.description = inc.description.clone();
                if cleared.is_some() {
                    r.cleared_at = cleared;
                }
                let action = if event == IncidentEvent::End {
                    "incident_end"
                } else {
                    "incident_update"
                };
                self.core
                    .save(&mut tx, &Actor::Mqtt, action, &before, &mut r)
                    .await?;
                if let Some(t) = cleared.filter(|_| before.cleared_at.is_none()) {
                    let when = self.core.labels.local(t).format("%d/%m/%Y %H:%M");
                    store::insert_message(
                        &mut tx,
                        r.id,
                        now,
                        "system",
                        None,
                        "system",
                        &format!("Kamera: kondisi sudah kembali normal sejak {when}."),
                    )
                    .await?;
                }
                let t = r.ticket.clone();
                let (o, f) = if event == IncidentEvent::End {
                    (IntakeOutcome::Ended(t), "incident_end")
                } else {
                    (IntakeOutcome::Updated(t), "incident_update")
                };
                (r, o, f)
            }
            None => {
                let r = self
                    .create_cctv(&mut tx, &checked, evidence, cleared, now)
                    .await?;
                let t = r.ticket.clone();
                (r, IntakeOutcome::Created(t), "incident_new")
            }
        };
        let mut snap_id = None;
        if let Some(s) = &checked.snapshot {
            if !matches!(outcome, IntakeOutcome::Created(_)) {
                store::prune_snapshots(&mut tx, report.id).await?;
            }
            snap_id = Some(
                store::insert_attachment(
                    &mut tx,
                    &store::NewAttachment {
                        report_id: report.id,
                        kind: "snapshot",
                        content_type: s.info.content_type,
                        sha256: &s.sha256,
                        width: s.info.width,
                        height: s.info.height,
                        bytes: &s.bytes,
                        at: now,
                    },
                )
                .await?,
            );
        }
        tx.commit().await?;
        tracing::info!(incident = %inc.id, seq = inc.seq, ticket = %report.ticket, event = event.as_str(), "incident applied");
        self.core.after_commit(feed, &report, snap_id);
        Ok(outcome)
    }

    /// Stores a message that failed a check, with the reason; the broker gets its ack after
    /// this commit, so nothing is lost and nothing is applied.
    async fn dead_letter(
        &self,
        topic: &str,
        payload: &[u8],
        reason: String,
    ) -> Result<IntakeOutcome, DeskError> {
        tracing::warn!(topic, %reason, "incident message dead-lettered");
        let cfg = &self.core.cfg.desk.mqtt;
        let now = self.core.clock.now();
        let mut tx = self.core.store.begin().await?;
        store::insert_dead_letter(
            &mut tx,
            now,
            topic,
            payload,
            &reason,
            cfg.dead_letter_keep_bytes,
        )
        .await?;
        store::prune_dead_letters(
            &mut tx,
            now - i64::from(cfg.dead_letter_keep_days) * 86_400,
            cfg.dead_letter_max_rows,
        )
        .await?;
        tx.commit().await?;
        Ok(IntakeOutcome::DeadLetter(reason))
    }

    async fn create_cctv(
        &self,
        tx: &mut store::Tx,
        c: &Checked,
        evidence: Option<String>,
        cleared: Option<i64>,
        now: i64,
    ) -> Result<ReportRow, DeskError> {
        let inc = &c.msg.incident;
        let ticket = self.core.new_ticket(tx).await?;
        let mut r = ReportRow::blank(&ticket, Source::Cctv, now);
        r.category_id = c.category.clone();
        r.title = inc.title.clone();
        r.description = inc.description.clone();
        r.address = if inc.address.trim().is_empty() {
            self.core
                .cfg
                .site(&inc.site)
                .map(|s| s.address.clone())
                .unwrap_or_default()
        } else {
            inc.address.clone()
        };
        r.lat = Some(inc.lat);
        r.lon = Some(inc.lon);
        r.incident_id = Some(inc.id.clone());
        r.incident_seq = Some(i64::from(inc.seq));
        r.incident_kind = Some(inc.kind.as_str().into());
        r.level = Some(inc.level.as_str().to_string());
        r.site_id = Some(inc.site.clone());
        r.site_name = Some(inc.site_name.clone());
        r.camera = Some(inc.camera.clone());
        r.evidence = evidence;
        r.incident_started_at = Some(inc.started_at.timestamp());
        r.cleared_at = cleared;
        let facts = [("snapshot", c.snapshot.is_some().into())];
        self.core
            .insert_new(tx, &Actor::Mqtt, &mut r, &facts)
            .await?;
        Ok(r)
    }
}

/// A write that failed because another transaction got there first.
fn lost_race(e: &DeskError) -> bool {
    match e {
        DeskError::Conflict => true,
        DeskError::Store(StoreError::Db(sqlx::Error::Database(d))) => d.is_unique_violation(),
        _ => false,
    }
}

/// Every check of one message that needs no database: size, signature, JSON and schema, the
/// fields, the site, the time bounds, the snapshot. Pure (the keys and `now` are given), so it
/// is property-tested on arbitrary bytes.
fn check_incident(
    config: &Config,
    keys: &HashMap<String, SigningKey>,
    topic: &str,
    payload: &[u8],
    now: i64,
) -> Result<Checked, String> {
    let cfg = &config.desk.mqtt;
    let max = cfg.max_message_bytes;
    if payload.len() > max {
        return Err(format!("message of {} bytes exceeds {max}", payload.len()));
    }
    // The signature, if any, is the last field; what is parsed is what it covers.
    let split = sign::split(payload).map_err(|e| format!("signature: {e}"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&split.signed).map_err(|e| format!("malformed JSON: {e}"))?;
    if let Some(s) = value.get("schema").and_then(|s| s.as_str()) {
        if s != INCIDENT_SCHEMA {
            return Err(format!(
                "unknown schema {s:?} (expected {INCIDENT_SCHEMA:?})"
            ));
        }
    }
    let msg: IncidentMessage = serde_json::from_value(value)
        .map_err(|e| format!("not a {INCIDENT_SCHEMA} message: {e}"))?;
    let inc = &msg.incident;
    if inc.id.trim().is_empty() || inc.id.len() > MAX_ID {
        return Err(format!("incident id must be 1 to {MAX_ID} characters"));
    }
    if inc.site.trim().is_empty() {
        return Err("incident.site is empty".into());
    }
    let parts: Vec<&str> = topic.split('/').collect();
    if let [.., "sites", site, "incidents"] = parts.as_slice() {
        if *site != inc.site {
            return Err(format!(
                "topic site {site:?} differs from incident.site {:?}",
                inc.site
            ));
        }
    }
    if config.site(&inc.site).is_none() {
        return Err(format!(
            "site {:?} is not a site of this desk's config",
            inc.site
        ));
    }
    if !keys.is_empty() {
        let key = keys.get(&inc.site).ok_or_else(|| {
            format!(
                "signature: no signing key for site {:?} (the desk checks signatures: its credentials hold keys of other sites)",
                inc.site
            )
        })?;
        sign::verify(key, payload).map_err(|e| format!("signature: {e}"))?;
    }
    let at = inc.updated_at.timestamp();
    if now - at > cfg.max_age_s as i64 {
        return Err(format!(
            "updated_at {} is {} s old, more than desk.mqtt.max_age_s ({})",
            inc.updated_at.to_rfc3339(),
            now - at,
            cfg.max_age_s
        ));
    }
    if at - now > cfg.max_future_s as i64 {
        return Err(format!(
            "updated_at {} is {} s ahead of the desk's clock, more than desk.mqtt.max_future_s ({})",
            inc.updated_at.to_rfc3339(),
            at - now,
            cfg.max_future_s
        ));
    }
    if inc.title.trim().is_empty() {
        return Err("incident.title is empty".into());
    }
    let lat_ok = inc.lat.is_finite() && (-90.0..=90.0).contains(&inc.lat);
    let lon_ok = inc.lon.is_finite() && (-180.0..=180.0).contains(&inc.lon);
    if !(lat_ok && lon_ok) {
        return Err(format!(
            "coordinates ({}, {}) out of range",
            inc.lat, inc.lon
        ));
    }
    let snapshot = match &inc.snapshot {
        None => None,
        Some(s) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.data_base64.as_bytes())
                .map_err(|e| format!("snapshot is not base64: {e}"))?;
            let info = photo::sniff(&bytes).map_err(|e| format!("snapshot: {e}"))?;
            let sha256 = sha256_hex(&bytes);
            if !sha256.eq_ignore_ascii_case(s.sha256.trim()) {
                return Err(format!(
                    "snapshot sha256 {} does not match its bytes ({sha256})",
                    s.sha256
                ));
            }
            Some(Snapshot {
                info,
                bytes,
                sha256,
            })
        }
    };
    let category = config
        .desk
        .incident_categories
        .for_kind(inc.kind)
        .to_string();
    Ok(Checked {
        msg,
        snapshot,
        category,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone, Utc};
    use proptest::prelude::*;

    use crate::model::{Evidence, Incident, IncidentKind, Level};

    fn config() -> Config {
        Config::from_str_at(
            r#"
[city]
name = "P"
[[sites]]
id = "ampera"
name = "Ampera"
address = "Jl. A"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:1/a"
[[sites]]
id = "bkb"
name = "BKB"
address = "Jl. B"
lat = -2.99
lon = 104.75
stream = "rtsp://127.0.0.1:1/b"
"#,
            std::path::Path::new("/tmp/t.toml"),
        )
        .unwrap()
    }

    const NOW: i64 = 1_800_000_000;

    fn message(site: &str, seq: u32, at: i64) -> Vec<u8> {
        let wib = FixedOffset::east_opt(7 * 3600).unwrap();
        let t = wib.from_utc_datetime(&Utc.timestamp_opt(at, 0).unwrap().naive_utc());
        let m = IncidentMessage {
            schema: INCIDENT_SCHEMA.into(),
            event: if seq == 1 {
                IncidentEvent::New
            } else {
                IncidentEvent::Update
            },
            incident: Incident {
                id: format!("{site}-traffic_jam-1"),
                seq,
                site: site.into(),
                site_name: "S".into(),
                camera: site.into(),
                kind: IncidentKind::TrafficJam,
                level: Level::Macet,
                title: "Kemacetan".into(),
                title_en: "Jam".into(),
                description: "d".into(),
                description_en: "d".into(),
                address: "Jl.".into(),
                lat: -2.99,
                lon: 104.76,
                zone: Some("z".into()),
                zone_name: Some("Z".into()),
                started_at: t,
                updated_at: t,
                ended_at: None,
                evidence: Evidence::default(),
                snapshot: None,
            },
        };
        serde_json::to_vec(&m).unwrap()
    }

    fn keys() -> HashMap<String, SigningKey> {
        ["ampera", "bkb"]
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    SigningKey::from_hex(&format!("{:02x}", s.len()).repeat(32)).unwrap(),
                )
            })
            .collect()
    }

    const TOPIC: &str = "simpang/v1/sites/ampera/incidents";

    /// (case, keys, topic, payload, Ok or the words of the reason)
    type Case<'a> = (
        &'a str,
        &'a HashMap<String, SigningKey>,
        &'a str,
        Vec<u8>,
        Option<&'a str>,
    );

    #[test]
    fn trust_checks() {
        let cfg = config();
        let none = HashMap::new();
        let k = keys();
        let good = message("ampera", 1, NOW - 60);
        let signed = sign::sign(&k["ampera"], &good).unwrap();
        // (case, keys, topic, payload, Ok or the words of the reason)
        let cases: Vec<Case> = vec![
            ("unsigned, no keys", &none, TOPIC, good.clone(), None),
            (
                "signed, no keys: the signature is ignored",
                &none,
                TOPIC,
                signed.clone(),
                None,
            ),
            ("signed with its key", &k, TOPIC, signed.clone(), None),
            (
                "unsigned, keys",
                &k,
                TOPIC,
                good.clone(),
                Some("not signed"),
            ),
            (
                "another site's key",
                &k,
                TOPIC,
                sign::sign(&k["bkb"], &good).unwrap(),
                Some("does not match"),
            ),
            (
                "unknown site",
                &none,
                "simpang/v1/sites/palsu/incidents",
                message("palsu", 1, NOW),
                Some("not a site of this desk"),
            ),
            (
                "topic and site differ",
                &none,
                "simpang/v1/sites/bkb/incidents",
                good.clone(),
                Some("differs"),
            ),
            (
                "a week and a day old",
                &none,
                TOPIC,
                message("ampera", 1, NOW - 8 * 86_400),
                Some("max_age_s"),
            ),
            (
                "an hour ahead",
                &none,
                TOPIC,
                message("ampera", 1, NOW + 3600),
                Some("max_future_s"),
            ),
            (
                "four minutes ahead: clock skew",
                &none,
                TOPIC,
                message("ampera", 1, NOW + 240),
                None,
            ),
            (
                "a malformed signature field",
                &none,
                TOPIC,
                {
                    let mut b = signed.clone();
                    let n = b.len();
                    b[n - 3] = b'X';
                    b
                },
                Some("malformed"),
            ),
        ];
        for (name, keys, topic, payload, want) in cases {
            let got = check_incident(&cfg, keys, topic, &payload, NOW);
            match (got, want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.contains(w), "{name}: {e}"),
                (Ok(_), Some(w)) => panic!("{name}: accepted, expected {w}"),
                (Err(e), None) => panic!("{name}: {e}"),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any bytes on any topic: an answer, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..2048), topic in ".{0,80}") {
            let cfg = config();
            let _ = check_incident(&cfg, &keys(), &topic, &payload, NOW);
            let _ = check_incident(&cfg, &HashMap::new(), &topic, &payload, NOW);
        }

        /// A valid signed message with bytes changed, cut or inserted: never a panic, and with
        /// keys never accepted unless it is the original.
        #[test]
        fn mutated_messages_never_panic_nor_pass(
            seq in 1u32..5000,
            at in (NOW - 10 * 86_400)..(NOW + 86_400),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let cfg = config();
            let k = keys();
            let original = sign::sign(&k["ampera"], &message("ampera", seq, at)).unwrap();
            let mut b = original.clone();
            for (pos, byte, op) in edits {
                let i = pos % (b.len() + 1);
                match op {
                    0 if i < b.len() => b[i] = byte,
                    1 if i < b.len() => { b.remove(i); }
                    _ => b.insert(i, byte),
                }
            }
            let got = check_incident(&cfg, &k, TOPIC, &b, NOW);
            if b != original {
                // A change the signature covers fails; only trailing whitespace is not covered.
                let trimmed = |x: &[u8]| x.iter().rposition(|c| !c.is_ascii_whitespace()).map(|i| x[..=i].to_vec());
                if trimmed(&b) != trimmed(&original) {
                    prop_assert!(got.is_err(), "a changed message passed");
                }
            }
        }

        /// Any JSON value where the incident is: a reason, never a panic.
        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let cfg = config();
            let msg = serde_json::json!({"schema": INCIDENT_SCHEMA, "event": "new", "incident": v});
            let bytes = serde_json::to_vec(&msg).unwrap();
            let _ = check_incident(&cfg, &HashMap::new(), TOPIC, &bytes, NOW);
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("seq".to_string()),
                        Just("site".to_string()),
                        Just("updated_at".to_string()),
                        Just("snapshot".to_string()),
                        ".{0,8}".prop_map(String::from)
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
