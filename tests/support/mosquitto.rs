//! A real Mosquitto broker for a test, on a loopback port of its own, with the options the
//! tests need (users, persistence, TLS, a second plain listener), the real `mosquitto_pub` /
//! `mosquitto_sub` clients, and stop / restart on the same port for outage tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::ports;
use super::process::Proc;
use super::wait::poll;

/// Server side TLS files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
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
    pub plain_listener: bool,
    /// A password file and an ACL file made elsewhere (`simpang mqtt-credentials`), in place of
    /// `users`.
    pub auth_files: Option<(PathBuf, PathBuf)>,
}

/// A mosquitto broker owned by a test; killed when dropped.
pub struct Mosquitto {
    pub port: u16,
    /// The second, plain listener's port ([`MosquittoOpts::plain_listener`]).
    pub plain_port: Option<u16>,
    proc: Option<Proc>,
    conf: PathBuf,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

impl Mosquitto {
    /// An anonymous broker without persistence.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(&MosquittoOpts::default())
    }

    pub fn start_with(opts: &MosquittoOpts) -> Mosquitto {
        let mut dir = Some(broker_dir());
        ports::retry_on_clash("mosquitto", || {
            let port = ports::port();
            let plain = opts.plain_listener.then(ports::port);
            let d = dir.take().expect("one broker dir");
            let conf = write_conf(d.path(), port, plain, opts);
            let mut m = Mosquitto {
                port,
                plain_port: plain,
                proc: None,
                log: d.path().join("mosquitto.log"),
                conf,
                dir: d,
            };
            match m.spawn() {
                Ok(()) => Ok(m),
                Err(log) => {
                    let Mosquitto { dir: d, .. } = m;
                    dir = Some(d);
                    Err(log)
                }
            }
        })
    }

    /// On `port`, which a config already names (from [`ports::port`]); a clash fails.
    pub fn start_on(port: u16, opts: &MosquittoOpts) -> Mosquitto {
        assert!(!opts.plain_listener, "start_on has one listener");
        let dir = broker_dir();
        let mut m = Mosquitto {
            port,
            plain_port: None,
            proc: None,
            log: dir.path().join("mosquitto.log"),
            conf: write_conf(dir.path(), port, None, opts),
            dir,
        };
        if let Err(log) = m.spawn() {
            panic!("port {port} was taken before the broker could use it:\n{log}");
        }
        m
    }

    /// `Err(log)` when a port was taken.
    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new("mosquitto");
        cmd.arg("-c").arg(&self.conf);
        let mut proc = Proc::spawn("mosquitto", cmd);
        let up = poll(Duration::from_secs(30), || {
            if !proc.is_running() {
                return Some(false);
            }
            (port_open(self.port) && self.plain_port.is_none_or(port_open)).then_some(true)
        });
        match up {
            Some(true) => {
                self.proc = Some(proc);
                Ok(())
            }
            Some(false) if ports::is_bind_clash(&self.log_text()) => Err(self.log_text()),
            Some(false) => panic!(
                "mosquitto exited (is it installed? Debian package mosquitto); log:\n{}\n{}",
                self.log_text(),
                proc.log_tail()
            ),
            None => panic!(
                "mosquitto did not listen on {} within 30 s; log:\n{}",
                self.port,
                self.log_text()
            ),
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
    }

    /// SIGKILL: the broker is gone at once, saving nothing.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again on the same ports, with the same files.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn() {
            panic!(
                "port {} was taken while the broker was down:\n{log}",
                self.port
            );
        }
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes one message at QoS 1 with the real `mosquitto_pub` client.
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        let mut c = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-t", topic, "-s"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub (Debian package mosquitto-clients)");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(payload)
            .expect("payload to mosquitto_pub");
        let st = c.wait().expect("mosquitto_pub exit");
        assert!(st.success(), "mosquitto_pub failed");
    }

    /// Collects every message on `filter` (lines of "topic payload") with the real
    /// `mosquitto_sub` client, from the moment it is subscribed: it returns once a probe
    /// published on a topic of its own has come back through the subscription.
    pub fn subscribe(&self, filter: &str) -> Subscription {
        static N: AtomicU32 = AtomicU32::new(0);
        let probe = format!(
            "simpang-test/probe/{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-q", "1", "-v", "-t", filter, "-t", &probe])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian package mosquitto-clients)");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        // Killed on drop from here on, also when the wait below fails.
        let sub = Subscription {
            child,
            lines,
            probe,
        };
        let back = |l: &String| l.starts_with(&format!("{} ", sub.probe));
        poll(Duration::from_secs(30), || {
            self.publish(&sub.probe, b"probe");
            poll(Duration::from_millis(500), || {
                sub.lines.lock().unwrap().iter().any(back)
            })
        })
        .expect("mosquitto_sub subscribed within 30 s");
        sub.lines.lock().unwrap().retain(|l| !back(l));
        sub
    }
}

fn broker_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("simpang-mosquitto")
        .tempdir()
        .expect("broker dir")
}

fn write_conf(dir: &Path, port: u16, plain: Option<u16>, opts: &MosquittoOpts) -> PathBuf {
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
    if let Some(p) = plain {
        c += &format!("listener {p} 127.0.0.1\n");
    }
    if let Some((passwd, acl)) = &opts.auth_files {
        c += &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        );
    } else if opts.users.is_empty() {
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
    conf
}

/// Messages collected by `mosquitto_sub`; the client is killed when dropped.
pub struct Subscription {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The topic [`Mosquitto::subscribe`] checked the subscription with.
    probe: String,
}

impl Subscription {
    /// (topic, payload JSON) pairs received so far.
    pub fn messages(&self) -> Vec<(String, Value)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let (t, p) = l.split_once(' ')?;
                if t == self.probe {
                    return None;
                }
                Some((t.to_string(), serde_json::from_str(p).ok()?))
            })
            .collect()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let subj = format!("/CN=simpang test CA {name}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subj,
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
