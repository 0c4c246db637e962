//! Support for the MQTT integration tests: a real mosquitto on a free loopback port, a real
//! subscriber, the JSON Schemas, `simpang run` as a child process, and [`analyse`], which checks
//! a whole capture (schemas, snapshots, lifecycle order) and is meant to be reused by the
//! end-to-end test on sample footage once the detector and rules are merged.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use sha2::{Digest, Sha256};
use simpang::incident::message::{CountsMessage, StatusMessage};
use simpang::incident::topics;
use simpang::model::{IncidentEvent, IncidentMessage};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn wait_port(port: u16, up: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let ok =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
                .is_ok();
        if ok == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Server side TLS files for mosquitto.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a CA and a server certificate for `localhost` / 127.0.0.1 with the openssl CLI.
pub fn make_tls(dir: &Path, name: &str) -> TlsFiles {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let s = |p: &PathBuf| p.to_string_lossy().into_owned();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext.cnf"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN=simpang test CA {name}"),
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("ext file");
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    TlsFiles { ca, cert, key }
}

/// How to run mosquitto.
#[derive(Clone, Debug, Default)]
pub struct MosquittoOpts {
    /// With users, anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// Keep subscriptions and queued messages across a clean restart (saved at SIGTERM).
    pub persistence: bool,
    /// The main listener speaks TLS with these files.
    pub tls: Option<TlsFiles>,
    /// A second, plain listener (for a test subscriber next to a TLS listener).
    pub plain_port: Option<u16>,
}

/// A mosquitto broker owned by a test; killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    conf: PathBuf,
    pub log: PathBuf,
}

impl Mosquitto {
    /// Starts mosquitto on `port` with its files in `dir` (kept across restarts).
    pub fn start(port: u16, dir: &Path, opts: &MosquittoOpts) -> Mosquitto {
        std::fs::create_dir_all(dir).expect("broker dir");
        let conf = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        // Root would otherwise switch to the `mosquitto` user, who cannot read a test's files.
        let mut c = String::from("user root\nper_listener_settings false\n");
        c += &format!("listener {port} 127.0.0.1\n");
        if let Some(t) = &opts.tls {
            c += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            );
        }
        if let Some(p) = opts.plain_port {
            c += &format!("listener {p} 127.0.0.1\n");
        }
        if opts.users.is_empty() {
            c += "allow_anonymous true\n";
        } else {
            let pw = dir.join("passwd");
            let _ = std::fs::remove_file(&pw);
            std::fs::write(&pw, "").expect("password file");
            for (u, p) in &opts.users {
                let st = Command::new("mosquitto_passwd")
                    .args(["-b", &pw.to_string_lossy(), u, p])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("mosquitto_passwd runs");
                assert!(st.success(), "mosquitto_passwd failed");
            }
            c += &format!("allow_anonymous false\npassword_file {}\n", pw.display());
        }
        if opts.persistence {
            c += &format!(
                "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                dir.display()
            );
        } else {
            c += "persistence false\n";
        }
        c += &format!(
            "log_dest file {}\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nconnection_messages true\n",
            log.display()
        );
        std::fs::write(&conf, c).expect("mosquitto.conf");
        let mut m = Mosquitto {
            port,
            child: None,
            conf,
            log,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        assert!(
            wait_port(self.port, false, Duration::from_secs(10)),
            "port {} still busy",
            self.port
        );
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto runs (apt-get install mosquitto)");
        self.child = Some(child);
        assert!(
            wait_port(self.port, true, Duration::from_secs(15)),
            "mosquitto did not listen on {}; log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal(c: &Child, sig: i32) {
    // SAFETY: kill(2) on the id of a child we own and have not reaped.
    unsafe {
        libc::kill(c.id() as i32, sig);
    }
}

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
        wait_until(timeout, || c.load(Ordering::SeqCst)).await
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
        wait_until(timeout, || pred(&m.lock().unwrap())).await
    }

    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.task.abort();
    }
}

/// The three JSON Schemas of schemas/, compiled.
pub struct Schemas {
    pub incident: jsonschema::Validator,
    pub status: jsonschema::Validator,
    pub counts: jsonschema::Validator,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Schemas {
    pub fn load() -> Schemas {
        let load = |name: &str| {
            let p = repo().join("schemas").join(name);
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
        match leaf {
            topics::STATUS => match serde_json::from_slice::<StatusMessage>(&m.payload) {
                Ok(s) => r.statuses.push((s, m.retain)),
                Err(e) => r.errors.push(format!("status: {e}")),
            },
            topics::COUNTS => match serde_json::from_slice::<CountsMessage>(&m.payload) {
                Ok(c) => r.counts.push(c),
                Err(e) => r.errors.push(format!("counts: {e}")),
            },
            topics::INCIDENTS => {
                let msg: IncidentMessage = match serde_json::from_slice(&m.payload) {
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

/// `simpang run` as a child process.
pub struct SimpangRun {
    child: Option<Child>,
    pub metrics_url: String,
    pub stderr_path: PathBuf,
}

impl SimpangRun {
    /// Starts `simpang run --config FILE`, stderr to `stderr_path`, and waits for its HTTP
    /// address.
    pub fn start(config: &Path, stderr_path: &Path) -> SimpangRun {
        let err = std::fs::File::create(stderr_path).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_simpang"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rumqttd=warn,sqlx=warn")
            .env(
                "ORT_DYLIB_PATH",
                repo().join("vendor-lib/onnxruntime/libonnxruntime.so"),
            )
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("simpang runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(u) = line.strip_prefix("metrics: ") {
                    let _ = tx.send(u.trim().to_string());
                }
            }
        });
        let metrics_url = match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(u) => u,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "simpang run did not start; stderr:\n{}",
                    std::fs::read_to_string(stderr_path).unwrap_or_default()
                );
            }
        };
        SimpangRun {
            child: Some(child),
            metrics_url,
            stderr_path: stderr_path.to_path_buf(),
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sum of a metric's series whose label text contains `labels` (e.g. `site="a"`).
    pub fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let body = ureq::get(&self.metrics_url)
            .timeout(Duration::from_secs(5))
            .call()
            .ok()?
            .into_string()
            .ok()?;
        let mut sum = None;
        for line in body.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) || !rest.contains(labels) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *sum.get_or_insert(0.0) += v;
            }
        }
        sum
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (a clean stop); the exit status.
    pub fn term(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for SimpangRun {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A config for `simpang run` in `dir`: sites whose cameras are unreachable (so the camera
/// offline path produces incidents), the wall on a free port, no RTSP out, the given `[mqtt]`
/// body and `[incidents]` body.
pub fn run_config(dir: &Path, mqtt: &str, incidents: &str, sites: &[&str]) -> PathBuf {
    // Port 1 on loopback refuses at once: the camera stays offline.
    let streams: Vec<(&str, String)> = sites
        .iter()
        .map(|s| (*s, format!("rtsp://127.0.0.1:1/{s}")))
        .collect();
    run_config_streams(dir, mqtt, incidents, &streams)
}

/// [`run_config`] with each site's stream given.
pub fn run_config_streams(
    dir: &Path,
    mqtt: &str,
    incidents: &str,
    sites: &[(&str, String)],
) -> PathBuf {
    let data = dir.join("data");
    let mut t = format!(
        "data_dir = {data:?}\n\n[city]\nname = \"Palembang\"\ntimezone = \"Asia/Jakarta\"\n\n\
         [detect]\nmodel = {model:?}\nort_library = {ort:?}\n\n\
         [ingest]\nbackoff_initial_s = 1.0\nbackoff_max_s = 2.0\nsilence_timeout_s = 2.0\n\n\
         [mqtt]\n{mqtt}\n\n[incidents]\n{incidents}\n\n\
         [wall]\nlisten = \"127.0.0.1:0\"\nrtsp_port = 0\n",
        model = repo().join("models/nanodet-m-416/manifest.toml"),
        ort = repo().join("vendor-lib/onnxruntime/libonnxruntime.so"),
    );
    for (i, (s, stream)) in sites.iter().enumerate() {
        t += &format!(
            "\n[[sites]]\nid = \"{s}\"\nname = \"Simpang Uji {i}\"\naddress = \"Jl. Uji No. {i}, Palembang\"\nlat = -2.99\nlon = 104.75\nstream = \"{stream}\"\n"
        );
    }
    let p = dir.join("simpang.toml");
    std::fs::write(&p, t).expect("config file");
    p
}

/// `simpang samples` serving `footage` for the config's sites on `port`.
pub struct Samples {
    child: Option<Child>,
}

impl Samples {
    pub fn start(config: &Path, footage: &Path, port: u16, log: &Path) -> Samples {
        let err = std::fs::File::create(log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_simpang"))
            .args(["samples", "--config"])
            .arg(config)
            .arg("--footage")
            .arg(footage)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("simpang samples runs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("samples: rtsp://") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "simpang samples did not start:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        Samples { child: Some(child) }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Samples {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
