//! The managed broker: `mqtt.broker = "embedded"` runs Mosquitto 2 as a child process of
//! `simpang run`, with logins for every client, per-topic rights and an optional TLS listener.
//!
//! Why Mosquitto and not an in-process broker: the in-process one available (rumqttd 0.20)
//! checks logins but has no per-topic rights, and "a site may publish only its own topics" is
//! the point. Mosquitto is a Debian package, small (10 MB RSS), and its password and ACL files
//! are the same ones an external Mosquitto takes (`simpang mqtt-credentials`).
//!
//! Files, all under `{data_dir}/mqtt/` (0700; secrets 0600), written at every start:
//!
//! | file | what |
//! |---|---|
//! | `credentials.toml` | every user's password and every site's signing key (kept across starts; users added for new sites) |
//! | `clients/<user>.toml` | what one client needs (the desk: its login and the sites' keys) |
//! | `passwd`, `acl` | Mosquitto's password file (PBKDF2 hashes) and ACL file (`access.rs`) |
//! | `mosquitto.conf` | the broker's config |
//! | `tls/` | `ca.pem` (what clients trust), `server.pem`, keys (`certs.rs`), unless the config names its own |
//! | `store/` | Mosquitto's persistence (the desk's session and its queued incidents across restarts) |
//!
//! Supervision: one thread owns the child. It starts it (in its own process group, so a
//! Ctrl-C reaches simpang, which stops the sites first and the broker last; with a parent-death
//! signal, so a killed simpang does not leave it holding the port), forwards its log to
//! `tracing`, restarts it with backoff when it dies, sends it SIGHUP when users change, and
//! stops it with SIGTERM (then SIGKILL) when simpang stops.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};
use tracing::{debug, error, info, trace, warn};

use super::access::{self, BrokerUser, HEALTH_USER};
use super::broker::{BrokerError, MAX_PACKET};
use super::certs;
use super::secrets::{self, Credentials, Login};
use crate::config::Config;

/// Queued QoS 1 messages the broker keeps per offline persistent session (the desk's while it
/// is down). Beyond it the broker drops new ones for that session.
const MAX_QUEUED: u32 = 10_000;
/// Seconds between saves of the broker's in-memory state (sessions, queued messages, retained).
const AUTOSAVE_S: u32 = 30;
/// How long start-up waits for the broker to take a login.
const START_WAIT: Duration = Duration::from_secs(15);
/// How long a stop waits after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Restart backoff: first wait, longest wait, and how long a run must last to reset it.
const RESTART_BACKOFF: (Duration, Duration, Duration) = (
    Duration::from_secs(1),
    Duration::from_secs(30),
    Duration::from_secs(60),
);
/// Log lines kept to explain a failed start.
const TAIL_LINES: usize = 20;

/// Paths of the managed broker's files (see the module doc).
#[derive(Clone, Debug)]
pub struct EmbeddedFiles {
    pub dir: PathBuf,
    pub credentials: PathBuf,
    pub clients: PathBuf,
    pub passwd: PathBuf,
    pub acl: PathBuf,
    pub conf: PathBuf,
    pub store: PathBuf,
    pub tls_dir: PathBuf,
}

impl EmbeddedFiles {
    /// Where the managed broker of `cfg` keeps its files.
    pub fn of(cfg: &Config) -> Self {
        let dir = cfg.data_dir().join("mqtt");
        Self {
            credentials: dir.join("credentials.toml"),
            clients: dir.join("clients"),
            passwd: dir.join("passwd"),
            acl: dir.join("acl"),
            conf: dir.join("mosquitto.conf"),
            store: dir.join("store"),
            tls_dir: dir.join("tls"),
            dir,
        }
    }

    /// `clients/<user>.toml`.
    pub fn client(&self, user: &str) -> PathBuf {
        self.clients.join(format!("{user}.toml"))
    }

    /// The CA clients trust for the TLS listener (when simpang made the certificate).
    pub fn ca(&self) -> PathBuf {
        certs::TlsFiles::in_dir(&self.tls_dir).ca
    }
}

/// Metrics of the managed broker.
#[derive(Clone)]
pub struct BrokerMetrics {
    pub up: IntGauge,
    pub restarts: IntCounter,
    pub denied: IntCounterVec,
}

impl BrokerMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            up: crate::metrics::int_gauge(
                r,
                "simpang_mqtt_broker_up",
                "1 while the managed MQTT broker (mosquitto child of simpang run) is running",
            )?,
            restarts: crate::metrics::int_counter(
                r,
                "simpang_mqtt_broker_restarts_total",
                "Times the managed MQTT broker died and was started again",
            )?,
            denied: crate::metrics::int_counter_vec(
                r,
                "simpang_mqtt_broker_denied_total",
                "What the managed broker refused: login (wrong or no credentials), publish (a topic the user may not write)",
                &["what"],
            )?,
        })
    }
}

/// What the supervisor thread and the handle share.
struct Shared {
    stop: AtomicBool,
    hup: AtomicBool,
    /// Pid of the running child, 0 when none.
    pid: AtomicU32,
    metrics: BrokerMetrics,
    /// The last lines the broker logged (to explain a failed start).
    tail: Mutex<std::collections::VecDeque<String>>,
}

/// The running managed broker. Stop it with [`ManagedBroker::stop`] after the sites' links.
pub struct ManagedBroker {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    files: EmbeddedFiles,
    /// The config's users and secrets, kept to add a site's user while running.
    state: Mutex<(Config, Credentials)>,
    /// `mqtt://127.0.0.1:PORT` (and `mqtts://...`), for logs and the demo banner.
    pub display: String,
}

impl ManagedBroker {
    /// Writes the files and starts the broker; returns once it takes logins. Blocking (it
    /// waits for the child): call from a blocking thread.
    pub fn start(cfg: &Config, metrics: BrokerMetrics) -> Result<Self, BrokerError> {
        let m = &cfg.mqtt;
        let binary = find_binary(&m.mosquitto)?;
        check_version(&binary)?;
        let files = EmbeddedFiles::of(cfg);
        let creds = write_files(cfg, &files)?;
        for (addr, setting) in listeners(cfg) {
            // Binding first turns "address in use" into an error that names the setting.
            if let Err(error) = TcpListener::bind(addr) {
                return Err(BrokerError::EmbeddedListen {
                    setting,
                    addr,
                    error,
                });
            }
        }
        let health = creds
            .login(HEALTH_USER)
            .ok_or_else(|| BrokerError::Files(format!("no password for {HEALTH_USER}")))?;
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            hup: AtomicBool::new(false),
            pid: AtomicU32::new(0),
            metrics,
            tail: Mutex::new(Default::default()),
        });
        let display = match m.embedded_tls_listen {
            Some(t) => format!(
                "managed mosquitto mqtt://{} mqtts://{}",
                m.embedded_listen, t
            ),
            None => format!("managed mosquitto mqtt://{}", m.embedded_listen),
        };
        let thread = {
            let shared = shared.clone();
            let conf = files.conf.clone();
            std::thread::Builder::new()
                .name("mqtt-broker".into())
                .spawn(move || supervise(binary, conf, shared))
                .map_err(|e| BrokerError::Files(format!("cannot start a thread: {e}")))?
        };
        let broker = ManagedBroker {
            shared,
            thread: Mutex::new(Some(thread)),
            files,
            state: Mutex::new((cfg.clone(), creds)),
            display,
        };
        let probe = loopback(m.embedded_listen);
        let deadline = Instant::now() + START_WAIT;
        loop {
            if mqtt_login(&probe, &health) {
                info!(broker = %broker.display, dir = %broker.files.dir.display(), "managed MQTT broker up: logins required, per-site topic rights");
                return Ok(broker);
            }
            let gone = broker
                .thread
                .lock()
                .as_ref()
                .is_none_or(|t| t.is_finished());
            if gone || Instant::now() > deadline {
                let log = broker
                    .shared
                    .tail
                    .lock()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>();
                broker.stop_blocking();
                return Err(BrokerError::ManagedStart {
                    addr: m.embedded_listen,
                    log: log.join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn files(&self) -> &EmbeddedFiles {
        &self.files
    }

    /// The broker process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.shared.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// The login of `user` (e.g. `site-bkb`), from the generated credentials.
    pub fn login(&self, user: &str) -> Option<Login> {
        self.state.lock().1.login(user)
    }

    /// Every secret (for `simpang demo`'s banner and for signing).
    pub fn credentials(&self) -> Credentials {
        self.state.lock().1.clone()
    }

    /// Adds users for a site started while running (a new password and key if it has none),
    /// rewrites the password and ACL files and tells the broker to reload them.
    pub fn add_site(&self, site: &crate::config::Site) -> Result<(), BrokerError> {
        let mut st = self.state.lock();
        if st.0.site(site.id.as_str()).is_none() {
            st.0.sites.push(site.clone());
        }
        let creds = write_files(&st.0, &self.files)?;
        st.1 = creds;
        drop(st);
        self.shared.hup.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Stops the broker (SIGTERM, then SIGKILL after a few seconds) and its supervisor.
    pub async fn stop(&self) {
        let me = self.shared.clone();
        let thread = self.thread.lock().take();
        let _ = tokio::task::spawn_blocking(move || {
            me.stop.store(true, Ordering::SeqCst);
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }

    fn stop_blocking(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for ManagedBroker {
    fn drop(&mut self) {
        self.stop_blocking();
    }
}

/// The listeners of the managed broker, with the setting each comes from.
fn listeners(cfg: &Config) -> Vec<(SocketAddr, &'static str)> {
    let mut v = vec![(cfg.mqtt.embedded_listen, "mqtt.embedded_listen")];
    if let Some(t) = cfg.mqtt.embedded_tls_listen {
        v.push((t, "mqtt.embedded_tls_listen"));
    }
    v
}

/// A wildcard listen address is reached through loopback.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip: std::net::IpAddr = if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}

/// Credentials (kept, completed), client files, TLS files, password file, ACL file and the
/// broker config, in `files.dir`. Returns the credentials.
fn write_files(cfg: &Config, files: &EmbeddedFiles) -> Result<Credentials, BrokerError> {
    let io = |what: &Path, e: std::io::Error| {
        BrokerError::Files(format!("cannot write {}: {e}", what.display()))
    };
    secrets::private_dir(&files.dir).map_err(|e| io(&files.dir, e))?;
    secrets::private_dir(&files.clients).map_err(|e| io(&files.clients, e))?;
    std::fs::create_dir_all(&files.store).map_err(|e| io(&files.store, e))?;
    let users = access::broker_users(cfg, true);
    let creds = super::credentials::write_bundle(
        &users,
        &files.dir,
        &files.credentials,
        &files.clients,
        false,
        &format!(
            "for the managed broker of {}",
            cfg.source
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "simpang run".into())
        ),
    )?;
    let tls = match cfg.mqtt.embedded_tls_listen {
        None => None,
        Some(_) => Some(
            match (&cfg.mqtt.embedded_tls_cert, &cfg.mqtt.embedded_tls_key) {
                (Some(cert), Some(key)) => certs::TlsFiles {
                    ca: cfg.resolve(cert),
                    cert: cfg.resolve(cert),
                    key: cfg.resolve(key),
                },
                _ => {
                    let (f, made) = certs::ensure(&files.tls_dir, &tls_names(cfg))
                        .map_err(|e| BrokerError::Files(e.to_string()))?;
                    if made {
                        info!(ca = %f.ca.display(), names = ?tls_names(cfg), "made a TLS certificate for the managed broker; clients trust its CA file");
                    }
                    f
                }
            },
        ),
    };
    let conf = broker_conf(cfg, files, tls.as_ref());
    secrets::write_private(&files.conf, conf.as_bytes()).map_err(|e| io(&files.conf, e))?;
    Ok(creds)
}

/// The names the generated server certificate is for: loopback, the TLS listen address when it
/// is a specific one, and `mqtt.embedded_tls_names`.
pub fn tls_names(cfg: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Some(t) = cfg.mqtt.embedded_tls_listen {
        if !t.ip().is_unspecified() && !t.ip().is_loopback() {
            names.push(t.ip().to_string());
        }
    }
    for n in &cfg.mqtt.embedded_tls_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

fn broker_conf(cfg: &Config, files: &EmbeddedFiles, tls: Option<&certs::TlsFiles>) -> String {
    let mut c = String::from(
        "# Written by simpang run at every start; edits here are lost (see docs/security.md).\n",
    );
    // As root, mosquitto would switch to the `mosquitto` user, who cannot read these files;
    // it runs as whoever runs simpang (which should be an unprivileged service user).
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        c += "user root\n";
    }
    c += &format!(
        "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
         persistence true\npersistence_location {}/\nautosave_interval {AUTOSAVE_S}\n\
         max_queued_messages {MAX_QUEUED}\nmax_packet_size {}\n\
         log_dest stderr\nlog_type all\nlog_timestamp false\nconnection_messages true\n",
        files.passwd.display(),
        files.acl.display(),
        files.store.display(),
        MAX_PACKET + 1024,
    );
    let l = cfg.mqtt.embedded_listen;
    c += &format!(
        "\n# plain MQTT (loopback only)\nlistener {} {}\n",
        l.port(),
        l.ip()
    );
    if let (Some(t), Some(f)) = (cfg.mqtt.embedded_tls_listen, tls) {
        c += &format!(
            "\n# MQTT over TLS\nlistener {} {}\ncertfile {}\nkeyfile {}\ntls_version tlsv1.2\n",
            t.port(),
            t.ip(),
            f.cert.display(),
            f.key.display()
        );
    }
    c
}

/// The Mosquitto binary `mqtt.mosquitto` names, found and of version 2 or newer
/// (`simpang check`).
pub fn check_binary(cfg: &Config) -> Result<PathBuf, BrokerError> {
    let b = find_binary(&cfg.mqtt.mosquitto)?;
    check_version(&b)?;
    Ok(b)
}

/// `mqtt.mosquitto` as a path: as given when it names a folder, else searched on `PATH` and in
/// the sbin folders Debian installs it to (often not on a service user's `PATH`).
fn find_binary(name: &Path) -> Result<PathBuf, BrokerError> {
    let missing = || BrokerError::MosquittoMissing(name.to_path_buf());
    if name.components().count() > 1 {
        return name
            .is_file()
            .then(|| name.to_path_buf())
            .ok_or_else(missing);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(missing)
}

/// Mosquitto 1.x has other password hashes and rules: refuse it by name.
fn check_version(binary: &Path) -> Result<(), BrokerError> {
    let out = Command::new(binary)
        .arg("-h")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| BrokerError::Files(format!("cannot run {}: {e}", binary.display())))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let version = text
        .split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("")
        .to_string();
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 2 {
        return Err(BrokerError::MosquittoVersion {
            binary: binary.to_path_buf(),
            version: if version.is_empty() {
                "unknown".into()
            } else {
                version
            },
        });
    }
    Ok(())
}

/// The supervisor thread: start, watch, restart, reload, stop.
fn supervise(binary: PathBuf, conf: PathBuf, shared: Arc<Shared>) {
    let mut backoff = RESTART_BACKOFF.0;
    let mut first = true;
    while !shared.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let mut child = match spawn(&binary, &conf, &shared) {
            Ok(c) => c,
            Err(e) => {
                error!(binary = %binary.display(), error = %e, "cannot start the MQTT broker");
                shared
                    .tail
                    .lock()
                    .push_back(format!("cannot start {}: {e}", binary.display()));
                if first {
                    return;
                }
                if sleep_unless_stopped(&shared, backoff) {
                    break;
                }
                backoff = (backoff * 2).min(RESTART_BACKOFF.1);
                continue;
            }
        };
        if !first {
            info!(pid = child.id(), "MQTT broker started again");
        }
        first = false;
        shared.pid.store(child.id(), Ordering::SeqCst);
        shared.metrics.up.set(1);
        let status = loop {
            if shared.stop.load(Ordering::SeqCst) {
                signal(child.id(), libc::SIGTERM);
                let deadline = Instant::now() + STOP_WAIT;
                let st = loop {
                    match child.try_wait() {
                        Ok(Some(st)) => break Some(st),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            warn!("MQTT broker did not stop on SIGTERM; killing it");
                            let _ = child.kill();
                            break child.wait().ok();
                        }
                    }
                };
                shared.pid.store(0, Ordering::SeqCst);
                shared.metrics.up.set(0);
                debug!(status = ?st, "MQTT broker stopped");
                return;
            }
            if shared.hup.swap(false, Ordering::SeqCst) {
                signal(child.id(), libc::SIGHUP);
                info!("MQTT broker reloads its users and rights");
            }
            match child.try_wait() {
                Ok(Some(st)) => break st.to_string(),
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => break format!("cannot wait for it: {e}"),
            }
        };
        shared.pid.store(0, Ordering::SeqCst);
        shared.metrics.up.set(0);
        shared.metrics.restarts.inc();
        if started.elapsed() > RESTART_BACKOFF.2 {
            backoff = RESTART_BACKOFF.0;
        }
        let last = shared.tail.lock().back().cloned().unwrap_or_default();
        error!(status = %status, last_log = %last, retry_in_s = backoff.as_secs_f64(), "MQTT broker died; starting it again (sites reconnect and resend from their outboxes)");
        if sleep_unless_stopped(&shared, backoff) {
            break;
        }
        backoff = (backoff * 2).min(RESTART_BACKOFF.1);
    }
}

/// Sleeps `d`, waking early for a stop; true when stopping.
fn sleep_unless_stopped(shared: &Shared, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if shared.stop.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.stop.load(Ordering::SeqCst)
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: kill only sends a signal; the pid is our own unreaped child.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

fn spawn(binary: &Path, conf: &Path, shared: &Arc<Shared>) -> std::io::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Its own process group: a Ctrl-C at the terminal goes to simpang, which stops the
            // sites (publishing their offline status) before it stops the broker.
            libc::setpgid(0, 0);
            // Dies with the thread that started it if simpang is killed.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    if let Some(err) = child.stderr.take() {
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("mqtt-broker-log".into())
            .spawn(move || forward_log(err, &shared));
    }
    Ok(child)
}

/// Mosquitto's log into `tracing`: refused logins and publishes as warnings (and counted),
/// errors as errors, connection chatter at debug, per-packet lines at trace.
fn forward_log(stream: impl Read, shared: &Shared) {
    let mut users: HashMap<String, String> = HashMap::new();
    let mut last_peer = String::new();
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        {
            let mut t = shared.tail.lock();
            t.push_back(line.clone());
            while t.len() > TAIL_LINES {
                t.pop_front();
            }
        }
        match classify(&line) {
            LogLine::Packet => trace!(target: "simpang::mosquitto", "{line}"),
            LogLine::NewConnection(peer) => {
                last_peer = peer;
                debug!(target: "simpang::mosquitto", "{line}");
            }
            LogLine::Connected { client, user } => {
                users.insert(client, user);
                debug!(target: "simpang::mosquitto", "{line}");
            }
            LogLine::Disconnected(client) => {
                users.remove(&client);
                debug!(target: "simpang::mosquitto", "{line}");
            }
            LogLine::LoginRefused => {
                shared.metrics.denied.with_label_values(&["login"]).inc();
                warn!(target: "simpang::mosquitto", peer = %last_peer, "MQTT broker refused a login from {last_peer} (wrong or no user name and password)");
            }
            LogLine::PublishDenied { client, topic } => {
                shared.metrics.denied.with_label_values(&["publish"]).inc();
                let user = users.get(&client).map(String::as_str).unwrap_or("?");
                warn!(target: "simpang::mosquitto", user, client = %client, topic = %topic, "MQTT broker dropped a publish: user {user} may not write {topic}");
            }
            LogLine::Error => error!(target: "simpang::mosquitto", "{line}"),
            LogLine::Warning => warn!(target: "simpang::mosquitto", "{line}"),
            LogLine::Info => info!(target: "simpang::mosquitto", "{line}"),
            LogLine::Debug => debug!(target: "simpang::mosquitto", "{line}"),
        }
    }
}

/// What a Mosquitto 2.0 log line says.
#[derive(Debug, PartialEq, Eq)]
enum LogLine {
    Packet,
    NewConnection(String),
    Connected { client: String, user: String },
    Disconnected(String),
    LoginRefused,
    PublishDenied { client: String, topic: String },
    Error,
    Warning,
    Info,
    Debug,
}

fn classify(line: &str) -> LogLine {
    if let Some(rest) = line.strip_prefix("Denied PUBLISH from ") {
        let client = rest.split(" (").next().unwrap_or_default().to_string();
        let topic = rest.split('\'').nth(1).unwrap_or_default().to_string();
        return LogLine::PublishDenied { client, topic };
    }
    if line.contains("disconnected, not authorised") {
        return LogLine::LoginRefused;
    }
    if let Some(rest) = line.strip_prefix("New connection from ") {
        return LogLine::NewConnection(rest.split(' ').next().unwrap_or_default().to_string());
    }
    if let Some(rest) = line.strip_prefix("New client connected from ") {
        let client = rest
            .split(" as ")
            .nth(1)
            .and_then(|r| r.split(" (").next())
            .unwrap_or_default()
            .to_string();
        let user = rest
            .split("u'")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .unwrap_or_default()
            .to_string();
        return LogLine::Connected { client, user };
    }
    if let Some(rest) = line.strip_prefix("Client ") {
        if rest.contains(" disconnected") || rest.contains(" closed its connection") {
            return LogLine::Disconnected(rest.split(' ').next().unwrap_or_default().to_string());
        }
    }
    let lower = line.to_ascii_lowercase();
    if lower.starts_with("error") || lower.contains(" error") {
        return LogLine::Error;
    }
    if lower.starts_with("warning") {
        return LogLine::Warning;
    }
    const PACKET: &[&str] = &[
        "Received ",
        "Sending ",
        "No will message",
        "\t",
        "Saving in-memory database",
    ];
    // "<client> <qos> <filter>": a subscription being recorded.
    if PACKET.iter().any(|p| line.starts_with(p)) || line.split(' ').count() == 3 {
        LogLine::Packet
    } else if line.starts_with("mosquitto version") || line.starts_with("Opening ") {
        LogLine::Info
    } else {
        LogLine::Debug
    }
}

/// True when an MQTT broker at `addr` accepts `login`: CONNECT (MQTT 3.1.1, clean session,
/// user name and password), CONNACK accepted, DISCONNECT.
pub fn mqtt_login(addr: &SocketAddr, login: &Login) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(1000)));
    let _ = s.set_write_timeout(Some(Duration::from_millis(1000)));
    let id = format!("simpang-health-{}", std::process::id());
    let field = |b: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    };
    // Variable header: protocol name, level 4, flags (user name, password, clean session),
    // keep-alive 10 s; then the payload: client id, user name, password.
    let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xC2, 0x00, 0x0A];
    field(id.as_bytes(), &mut body);
    field(login.username.as_bytes(), &mut body);
    field(login.password.as_bytes(), &mut body);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        packet.push(b);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    let mut ack = [0u8; 4];
    let ok = s.write_all(&packet).is_ok()
        && s.read_exact(&mut ack).is_ok()
        && ack[0] == 0x20
        && ack[3] == 0x00;
    let _ = s.write_all(&[0xE0, 0x00]);
    ok
}

/// The users of the managed broker for `cfg` (tests and the demo banner read these).
pub fn users(cfg: &Config) -> Vec<BrokerUser> {
    access::broker_users(cfg, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines() {
        let cases = [
            ("Denied PUBLISH from auto-D247 (d0, q1, r0, m1, 'simpang/v1/sites/b/incidents', ... (6 bytes))",
             LogLine::PublishDenied { client: "auto-D247".into(), topic: "simpang/v1/sites/b/incidents".into() }),
            ("Client <unknown> disconnected, not authorised.", LogLine::LoginRefused),
            ("New connection from 127.0.0.1:54832 on port 18990.", LogLine::NewConnection("127.0.0.1:54832".into())),
            ("New client connected from 127.0.0.1:54808 as simpang-run-bkb (p2, c1, k15, u'site-bkb').",
             LogLine::Connected { client: "simpang-run-bkb".into(), user: "site-bkb".into() }),
            ("Client simpang-run-bkb disconnected.", LogLine::Disconnected("simpang-run-bkb".into())),
            ("Client simpang-run-bkb closed its connection.", LogLine::Disconnected("simpang-run-bkb".into())),
            ("Received PUBLISH from x (d0, q1, r0, m1, 't', ... (2 bytes))", LogLine::Packet),
            ("Sending PUBACK to x (m1, rc0)", LogLine::Packet),
            ("\tsimpang/# (QoS 0)", LogLine::Packet),
            ("desk 1 simpang/v1/sites/+/incidents", LogLine::Packet),
            ("mosquitto version 2.0.11 running", LogLine::Info),
            ("Error: Address already in use", LogLine::Error),
            ("Warning: Mosquitto should not be run as root/administrator.", LogLine::Warning),
            ("Config loaded from /x/mosquitto.conf.", LogLine::Debug),
        ];
        for (line, want) in cases {
            assert_eq!(classify(line), want, "{line}");
        }
    }
}
