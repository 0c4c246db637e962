//! MQTT as a consumer sees it: a real subscriber (rumqttc) on `simpang/v1/#`, the JSON Schemas
//! of schemas/, and [`analyse`], which checks a whole capture (schemas, snapshots, lifecycle
//! order).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use sha2::{Digest, Sha256};
use simpang::incident::message::{CountsMessage, StatusMessage};
use simpang::incident::secrets::Credentials;
use simpang::incident::{sign, topics};
use simpang::model::{IncidentEvent, IncidentMessage};

use super::wait::poll_async;

/// One message as the subscriber got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

/// A real MQTT subscriber on `simpang/v1/#` (QoS 1), reconnecting on its own.
pub struct Subscriber {
    msgs: Arc<Mutex<Vec<Received>>>,
    connected: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    client: AsyncClient,
}

impl Subscriber {
    pub fn start(
        port: u16,
        client_id: &str,
        clean_session: bool,
        credentials: Option<(&str, &str)>,
    ) -> Subscriber {
        let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(clean_session)
            .set_max_packet_size(64 << 20, 64 << 20);
        if let Some((u, p)) = credentials {
            o.set_credentials(u, p);
        }
        Subscriber::start_with(o)
    }

    /// The `viewer` of the managed broker whose files are under `data_dir` (what `simpang run`
    /// with `mqtt.broker = "embedded"` generated).
    pub fn viewer(port: u16, client_id: &str, data_dir: &std::path::Path) -> Subscriber {
        let (u, p) = embedded_login(data_dir, "viewer");
        Subscriber::start(port, client_id, true, Some((&u, &p)))
    }

    /// With options of the caller's (TLS, another host), subscribed to `simpang/v1/#`.
    pub fn start_with(o: MqttOptions) -> Subscriber {
        let (client, mut el) = AsyncClient::new(o, 100);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let connected = Arc::new(AtomicBool::new(false));
        let (m, c, cl) = (msgs.clone(), connected.clone(), client.clone());
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        if !ack.session_present {
                            let _ = cl.subscribe(topics::ALL, QoS::AtLeastOnce).await;
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => c.store(true, Ordering::SeqCst),
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        m.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => {
                        c.store(false, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Subscriber {
            msgs,
            connected,
            task,
            client,
        }
    }

    /// Waits for the first subscription to be acknowledged.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let c = self.connected.clone();
        poll_async(timeout, || c.load(Ordering::SeqCst))
            .await
            .is_some()
    }

    pub fn is_subscribed(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.msgs.lock().unwrap().clone()
    }

    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&[Received]) -> bool,
    ) -> bool {
        let m = self.msgs.clone();
        poll_async(timeout, || pred(&m.lock().unwrap()))
            .await
            .is_some()
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

/// (user, password) of `user` in the managed broker's credentials under `data_dir`.
pub fn embedded_login(data_dir: &std::path::Path, user: &str) -> (String, String) {
    let path = data_dir.join("mqtt/credentials.toml");
    let creds = Credentials::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let pw = creds
        .password(user)
        .unwrap_or_else(|| panic!("no {user} in {}", path.display()));
    (user.to_string(), pw.to_string())
}

/// The payload without its signature field (a signed message's JSON is exactly the unsigned
/// message plus `"sig"`; a consumer parses what the signature covers).
pub fn unsigned(payload: &[u8]) -> Vec<u8> {
    sign::split(payload)
        .map(|s| s.signed.into_owned())
        .unwrap_or_else(|_| payload.to_vec())
}

/// True when the payload ends in a well-formed signature field.
pub fn is_signed(payload: &[u8]) -> bool {
    sign::split(payload).is_ok_and(|s| s.mac_hex.is_some())
}

/// The three JSON Schemas of schemas/, compiled.
pub struct Schemas {
    pub incident: jsonschema::Validator,
    pub status: jsonschema::Validator,
    pub counts: jsonschema::Validator,
}

impl Schemas {
    pub fn load() -> Schemas {
        let load = |name: &str| {
            let p = super::root().join("schemas").join(name);
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let v: Value = serde_json::from_str(&text).expect("schema is JSON");
            jsonschema::draft202012::new(&v).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        Schemas {
            incident: load("incident.schema.json"),
            status: load("status.schema.json"),
            counts: load("counts.schema.json"),
        }
    }

    /// Validates a message against the schema its topic calls for.
    pub fn check(&self, topic: &str, payload: &[u8]) -> Result<(), String> {
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| format!("{topic}: not JSON: {e}"))?;
        let leaf = topics::parse(topic).map(|(_, l)| l).unwrap_or("");
        let validator = match leaf {
            topics::INCIDENTS => &self.incident,
            topics::STATUS => &self.status,
            topics::COUNTS => &self.counts,
            _ => return Err(format!("unexpected topic {topic}")),
        };
        let errs: Vec<String> = validator
            .iter_errors(&v)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("{topic}: {}", errs.join("; ")))
        }
    }
}

/// Decodes a snapshot the way a consumer would and checks what the message says about it.
pub fn check_snapshot(s: &simpang::model::Snapshot) -> Result<(), String> {
    use opencv::core::{Mat, Vector};
    use opencv::prelude::*;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&s.data_base64)
        .map_err(|e| format!("snapshot base64: {e}"))?;
    if hex::encode(Sha256::digest(&bytes)) != s.sha256 {
        return Err("snapshot sha256 does not match its bytes".into());
    }
    let buf = Vector::<u8>::from_slice(&bytes);
    let img: Mat = opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_COLOR)
        .map_err(|e| format!("imdecode: {e}"))?;
    if img.empty() {
        return Err("snapshot does not decode as an image".into());
    }
    if (img.cols() as u32, img.rows() as u32) != (s.width, s.height) {
        return Err(format!(
            "snapshot is {}x{}, message says {}x{}",
            img.cols(),
            img.rows(),
            s.width,
            s.height
        ));
    }
    Ok(())
}

/// A capture, checked.
#[derive(Debug, Default)]
pub struct Report {
    /// Incident messages per id, in arrival order, exact repeats (same id, event, seq) removed.
    pub incidents: BTreeMap<String, Vec<IncidentMessage>>,
    /// Exact repeats seen (at-least-once delivery).
    pub duplicates: usize,
    pub statuses: Vec<(StatusMessage, bool)>,
    pub counts: Vec<CountsMessage>,
    pub snapshots_checked: usize,
    /// Messages that carried a signature field.
    pub signed: usize,
    /// Everything wrong: schema violations, bad snapshots, lifecycle violations.
    pub errors: Vec<String>,
}

impl Report {
    /// Ids with a `new`, at least `min_updates` updates and an `end`.
    pub fn complete(&self, min_updates: usize) -> Vec<String> {
        self.incidents
            .iter()
            .filter(|(_, ms)| {
                ms.first().map(|m| m.event) == Some(IncidentEvent::New)
                    && ms.last().map(|m| m.event) == Some(IncidentEvent::End)
                    && ms
                        .iter()
                        .filter(|m| m.event == IncidentEvent::Update)
                        .count()
                        >= min_updates
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every (id, event, seq) received.
    pub fn keys(&self) -> std::collections::HashSet<(String, IncidentEvent, u32)> {
        self.incidents
            .values()
            .flatten()
            .map(|m| (m.incident.id.clone(), m.event, m.incident.seq))
            .collect()
    }

    pub fn last_status(&self, site: &str) -> Option<&StatusMessage> {
        self.statuses
            .iter()
            .rev()
            .map(|(s, _)| s)
            .find(|s| s.site == site)
    }
}

/// Checks every message of a capture: JSON Schema, snapshot decoding, and per incident id the
/// lifecycle a consumer relies on (starts with `new` seq 1, seq grows by one, nothing after
/// `end`, the same site/kind/start in every message). Exact repeats are allowed (QoS 1 is
/// at-least-once) and counted.
pub fn analyse(msgs: &[Received], schemas: &Schemas) -> Report {
    let mut r = Report::default();
    let mut seen = std::collections::HashSet::new();
    for m in msgs {
        if let Err(e) = schemas.check(&m.topic, &m.payload) {
            r.errors.push(e);
            continue;
        }
        let leaf = topics::parse(&m.topic).map(|(_, l)| l).unwrap_or("");
        if is_signed(&m.payload) {
            r.signed += 1;
        }
        let payload = unsigned(&m.payload);
        match leaf {
            topics::STATUS => match serde_json::from_slice::<StatusMessage>(&payload) {
                Ok(s) => r.statuses.push((s, m.retain)),
                Err(e) => r.errors.push(format!("status: {e}")),
            },
            topics::COUNTS => match serde_json::from_slice::<CountsMessage>(&payload) {
                Ok(c) => r.counts.push(c),
                Err(e) => r.errors.push(format!("counts: {e}")),
            },
            topics::INCIDENTS => {
                let msg: IncidentMessage = match serde_json::from_slice(&payload) {
                    Ok(x) => x,
                    Err(e) => {
                        r.errors.push(format!("incident: {e}"));
                        continue;
                    }
                };
                if topics::parse(&m.topic).map(|(s, _)| s) != Some(msg.incident.site.as_str()) {
                    r.errors
                        .push(format!("{} published on {}", msg.incident.id, m.topic));
                }
                let key = (msg.incident.id.clone(), msg.event, msg.incident.seq);
                if !seen.insert(key) {
                    r.duplicates += 1;
                    continue;
                }
                if let Some(s) = &msg.incident.snapshot {
                    match check_snapshot(s) {
                        Ok(()) => r.snapshots_checked += 1,
                        Err(e) => r.errors.push(format!("{}: {e}", msg.incident.id)),
                    }
                }
                r.incidents
                    .entry(msg.incident.id.clone())
                    .or_default()
                    .push(msg);
            }
            _ => r.errors.push(format!("unexpected topic {}", m.topic)),
        }
    }
    for (id, ms) in &r.incidents {
        let first = &ms[0];
        if first.event != IncidentEvent::New || first.incident.seq != 1 {
            r.errors.push(format!(
                "{id}: first message is {:?} #{}",
                first.event, first.incident.seq
            ));
        }
        for w in ms.windows(2) {
            let (a, b) = (&w[0].incident, &w[1].incident);
            if b.seq != a.seq + 1 {
                r.errors
                    .push(format!("{id}: seq {} follows {}", b.seq, a.seq));
            }
            if w[0].event == IncidentEvent::End {
                r.errors.push(format!("{id}: a message follows its end"));
            }
            if (a.site.as_str(), a.kind, a.started_at) != (b.site.as_str(), b.kind, b.started_at) {
                r.errors.push(format!("{id}: site, kind or start changed"));
            }
            if b.updated_at < a.updated_at {
                r.errors.push(format!("{id}: updated_at went back"));
            }
        }
    }
    r
}
