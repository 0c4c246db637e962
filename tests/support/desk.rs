//! The desk under test: a desk on a loopback port of its own over a real SQLite file or a
//! PostgreSQL cluster started for the test, an HTTP client with a cookie, and builders for
//! citizen reports, incident messages and images. Everything started here stops (and its files
//! go) when the value is dropped.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use simpang::config::Config;
use simpang::desk::store::Backend;
use simpang::desk::{self, Clock, Desk, Role, StaffUser};
use simpang::model::{
    Evidence, Image, Incident, IncidentEvent, IncidentKind, IncidentMessage, Snapshot,
    INCIDENT_SCHEMA,
};

use super::pg::Pg;

/// The database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A number no other call in this process got (MQTT client ids must differ).
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

// ------------------------------------------------------------------------------------------------
// The desk under test

pub const SITES: &str = r#"
[city]
name = "Palembang"
timezone = "Asia/Jakarta"

[[sites]]
id = "ampera"
name = "Jembatan Ampera"
address = "Jembatan Ampera, Jl. Sultan Mahmud Badaruddin II, Palembang"
lat = -2.99170
lon = 104.76360
stream = "rtsp://127.0.0.1:8554/ampera"

[[sites]]
id = "bkb"
name = "Benteng Kuto Besak (BKB)"
address = "Jl. Sultan Mahmud Badaruddin, 19 Ilir, Palembang"
lat = -2.99245
lon = 104.75930
stream = "rtsp://127.0.0.1:8554/bkb"
"#;

/// Options of a test desk.
#[derive(Default)]
pub struct Opts {
    pub broker: Option<String>,
    /// The nodes of a broker cluster (`desk.mqtt.brokers`), instead of `broker`.
    pub brokers: Vec<String>,
    /// Extra TOML appended to the `[desk]` table (before its sub-tables).
    pub desk_toml: String,
    /// Extra TOML appended to the `[desk.mqtt]` table (credentials, CA file).
    pub mqtt_toml: String,
}

/// A running desk: its own runtime, database and listener.
pub struct TestDesk {
    pub rt: tokio::runtime::Runtime,
    pub desk: Arc<Desk>,
    pub base: String,
    pub addr: SocketAddr,
    pub kind: Kind,
    pub db_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pg: Option<Pg>,
    pub dir: tempfile::TempDir,
}

/// Rate limits of the public side for tests that file many reports, SMS and tracker requests
/// from one address to check what they do: off, except sign-in's. A test of the limits
/// themselves sets its own `[desk.limits]` in [`Opts::desk_toml`].
const FUNCTIONAL_LIMITS: &str = "[desk.limits]\nreports_per_ip = { per_hour = 0, burst = 1 }\n\
     per_phone = { per_hour = 0, burst = 1 }\nsms_per_ip = { per_hour = 0, burst = 1 }\n\
     track_per_ip = { per_hour = 0, burst = 1 }\n";

pub fn config(broker: Option<&str>, desk_toml: &str, dir: &Path) -> Config {
    config_with(broker, desk_toml, "", dir)
}

/// [`config`] with extra `[desk.mqtt]` settings.
pub fn config_with(broker: Option<&str>, desk_toml: &str, mqtt_toml: &str, dir: &Path) -> Config {
    let limits = if desk_toml.contains("[desk.limits]") {
        ""
    } else {
        FUNCTIONAL_LIMITS
    };
    let text = format!(
        "data_dir = \"{}\"\n{SITES}\n[desk]\n{desk_toml}\n{limits}[desk.mqtt]\nbroker = \"{}\"\nclient_id = \"desk-test-{}\"\nbackoff_initial_s = 0.2\nbackoff_max_s = 1.0\n{mqtt_toml}\n",
        dir.display(),
        broker.unwrap_or("none"),
        unique()
    );
    Config::from_str_at(&text, &dir.join("test.toml")).expect("test config is valid")
}

impl TestDesk {
    /// Starts a desk. On PostgreSQL, a test fails when the cluster cannot start ([`Pg::required`]).
    pub fn start(kind: Kind, opts: Opts) -> TestDesk {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db_url, pg) = match kind {
            Kind::Sqlite => (
                format!("sqlite://{}", dir.path().join("desk.db").display()),
                None,
            ),
            Kind::Postgres => {
                let pg = Pg::required();
                (pg.url(), Some(pg))
            }
        };
        let (broker, mqtt_toml) = match opts.brokers.first() {
            None => (opts.broker.clone(), opts.mqtt_toml.clone()),
            Some(first) => (
                Some(first.clone()),
                format!("brokers = {:?}\n{}", opts.brokers, opts.mqtt_toml),
            ),
        };
        let cfg = Arc::new(config_with(
            broker.as_deref(),
            &opts.desk_toml,
            &mqtt_toml,
            dir.path(),
        ));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let desk = rt
            .block_on(desk::open(cfg, &db_url, Clock::default()))
            .expect("desk opens its database");
        let want = match kind {
            Kind::Sqlite => Backend::Sqlite,
            Kind::Postgres => Backend::Postgres,
        };
        assert_eq!(desk.store().backend(), want, "the desk runs on {db_url}");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = {
            let d = desk.clone();
            rt.spawn(desk::serve(listener, d, async move {
                let _ = rx.await;
            }))
        };
        let tasks = {
            let _g = rt.enter();
            desk::spawn_mqtt(&desk)
        };
        TestDesk {
            base: format!("http://{addr}"),
            rt,
            desk,
            addr,
            kind,
            db_url,
            stop: Some(tx),
            server: Some(server),
            tasks,
            pg,
            dir,
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Creates an account (password `rahasia-<name>-123`).
    pub fn user(&self, name: &str, role: Role, agency: Option<&str>) -> StaffUser {
        self.block_on(self.desk.accounts.create_user(
            None,
            name,
            &format!("{name} (uji)"),
            role,
            agency,
            &password(name),
        ))
        .expect("create user")
    }

    pub fn anon(&self) -> Http {
        Http::new(&self.base)
    }

    /// Signs in through the JSON API; the client then carries the cookie and CSRF token.
    pub fn login(&self, name: &str) -> Http {
        self.login_with(name, &password(name))
    }

    pub fn login_with(&self, name: &str, password: &str) -> Http {
        let mut h = Http::new(&self.base);
        let r = h.post_json(
            "/api/login",
            &json!({ "username": name, "password": password }),
        );
        assert_eq!(r.status, 200, "login {name}: {}", r.text());
        h.take_cookie(&r);
        h.csrf = r.json()["csrf"].as_str().map(str::to_string);
        h
    }

    /// Row counts of the tables a bad input must leave alone.
    pub fn counts(&self) -> Counts {
        let q = |t: &str| {
            let sql = format!("SELECT COUNT(*) FROM {t}");
            self.block_on(async {
                let n: i64 = sqlx::query_scalar(&sql)
                    .fetch_one(self.desk.store().pool())
                    .await
                    .expect("count");
                n
            })
        };
        Counts {
            reports: q("reports"),
            attachments: q("attachments"),
            messages: q("messages"),
            audit: q("audit_log"),
            dead_letters: q("dead_letters"),
        }
    }

    /// The audit actions recorded for a ticket, oldest first.
    pub fn audit_actions(&self, ticket: &str) -> Vec<String> {
        self.block_on(async {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT action FROM audit_log WHERE entity = 'report' AND entity_id = $1 ORDER BY id",
            )
            .bind(ticket)
            .fetch_all(self.desk.store().pool())
            .await
            .expect("audit");
            rows.into_iter().map(|r| r.0).collect()
        })
    }
}

impl Drop for TestDesk {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
        }
        for t in self.tasks.drain(..) {
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), t).await });
        }
        let store = self.desk.store().clone();
        self.rt.block_on(store.close());
        // The cluster goes after the pool is closed.
        self.pg.take();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub reports: i64,
    pub attachments: i64,
    pub messages: i64,
    pub audit: i64,
    pub dead_letters: i64,
}

pub fn password(name: &str) -> String {
    format!("rahasia-{name}-123")
}

// ------------------------------------------------------------------------------------------------
// HTTP

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A form or multipart field.
pub enum Part<'a> {
    Text(&'a str),
    File {
        name: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    },
}

/// A client that keeps the session cookie and sends the CSRF header on changes. Redirects
/// are not followed, so tests see them.
pub struct Http {
    agent: ureq::Agent,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            // No connection reuse: a server that answers before reading a body (a 401 to a
            // POST) closes the connection, and ureq does not retry a POST on a stale one.
            agent: ureq::AgentBuilder::new()
                .max_idle_connections(0)
                .redirects(0)
                .timeout(Duration::from_secs(30))
                .build(),
            base: base.to_string(),
            cookie: None,
            csrf: None,
        }
    }

    /// Keeps the session cookie a response sets.
    pub fn take_cookie(&mut self, r: &Resp) {
        for c in r.headers_named("set-cookie") {
            if let Some(v) = c.strip_prefix("simpang_desk_session=") {
                let token = v.split(';').next().unwrap_or_default();
                self.cookie = (!token.is_empty()).then(|| format!("simpang_desk_session={token}"));
            }
        }
    }

    fn finish(res: Result<ureq::Response, ureq::Error>) -> Resp {
        let r = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("HTTP transport error: {e}"),
        };
        let status = r.status();
        let headers = r
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                r.all(&n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).expect("read body");
        Resp {
            status,
            headers,
            body,
        }
    }

    fn req(&self, method: &str, path: &str) -> ureq::Request {
        let mut r = self.agent.request(method, &format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            r = r.set("cookie", c);
        }
        if let Some(t) = &self.csrf {
            r = r.set("x-csrf-token", t);
        }
        r
    }

    pub fn get(&self, path: &str) -> Resp {
        Self::finish(self.req("GET", path).call())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        Self::finish(
            self.req("POST", path)
                .set("content-type", "application/json")
                .send_bytes(body.to_string().as_bytes()),
        )
    }

    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        Self::finish(
            self.req("POST", path)
                .set("content-type", content_type)
                .send_bytes(body),
        )
    }

    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.post_raw(path, "application/x-www-form-urlencoded", body.as_bytes())
    }

    pub fn post_multipart(&self, path: &str, fields: &[(&str, Part)]) -> Resp {
        let (ct, body) = multipart(fields);
        self.post_raw(path, &ct, &body)
    }

    /// A staff action through the JSON API.
    pub fn act(&self, ticket: &str, action: &str, body: Value) -> Resp {
        self.post_json(&format!("/api/reports/{ticket}/{action}"), &body)
    }
}

pub fn multipart(fields: &[(&str, Part)]) -> (String, Vec<u8>) {
    let boundary = "----simpang-desk-test-7d3f9a";
    let mut b = Vec::new();
    for (name, part) in fields {
        b.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(v) => {
                b.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                b.extend_from_slice(v.as_bytes());
            }
            Part::File {
                name: file,
                content_type,
                bytes,
            } => {
                b.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                b.extend_from_slice(bytes);
            }
        }
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

/// Files a citizen report through `POST /api/reports`; returns (ticket, pin).
pub fn file_report(h: &Http, title: &str, category: &str, phone: Option<&str>) -> (String, String) {
    let mut fields = vec![
        ("title", Part::Text(title)),
        ("category", Part::Text(category)),
        (
            "description",
            Part::Text("Sudah tiga hari belum ada penanganan dari petugas."),
        ),
        ("address", Part::Text("Jl. Merdeka, 19 Ilir, Palembang")),
        ("lat", Part::Text("-2.9875")),
        ("lon", Part::Text("104.7570")),
    ];
    if let Some(p) = phone {
        fields.push(("phone", Part::Text(p)));
    }
    let r = h.post_multipart("/api/reports", &fields);
    assert_eq!(r.status, 201, "file report: {}", r.text());
    let j = r.json();
    (
        j["ticket"].as_str().expect("ticket").to_string(),
        j["pin"].as_str().expect("pin").to_string(),
    )
}

// ------------------------------------------------------------------------------------------------
// Images and incident messages

/// A real JPEG (OpenCV's encoder through the wall's helper): a gradient with a box; `seed`
/// changes the picture.
pub fn jpeg(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let mut img = Image::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let i = ((y * w + x) * 3) as usize;
            img.data[i] = (x * 255 / w) as u8 ^ seed;
            img.data[i + 1] = (y * 255 / h) as u8;
            img.data[i + 2] = if (w / 3..w / 2).contains(&x) && (h / 3..h / 2).contains(&y) {
                255
            } else {
                seed.wrapping_mul(3)
            };
        }
    }
    simpang::draw::overlay::encode_jpeg(&img, 85).expect("encode jpeg")
}

/// A real PNG of `w` x `h`.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    use opencv::core::{Vector, VectorToVec};
    let mut img = Image::new(w, h);
    for (i, b) in img.data.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let m = simpang::draw::overlay::to_bgr_mat(&img).expect("mat");
    let mut buf = Vector::<u8>::new();
    opencv::imgcodecs::imencode(".png", &m, &mut buf, &Vector::new()).expect("encode png");
    buf.to_vec()
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(b))
}

/// An incident message built from the crate's own model types (the MQTT contract).
pub fn incident(
    id: &str,
    seq: u32,
    event: IncidentEvent,
    site: &str,
    kind: IncidentKind,
    level: &str,
    snapshot: Option<&[u8]>,
) -> IncidentMessage {
    // An hour ago (the desk refuses messages older than a week or from the future), on the
    // minute, in the city's offset.
    let now = chrono::Utc::now().timestamp();
    let t0 = chrono::DateTime::from_timestamp(now - now % 60 - 3600, 0)
        .expect("time")
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).expect("offset"));
    let at = t0 + chrono::Duration::seconds(i64::from(seq) * 30);
    let (name, address, lat, lon) = match site {
        "bkb" => (
            "Benteng Kuto Besak (BKB)",
            "Jl. Sultan Mahmud Badaruddin, 19 Ilir, Palembang",
            -2.99245,
            104.7593,
        ),
        _ => (
            "Jembatan Ampera",
            "Jembatan Ampera, Jl. Sultan Mahmud Badaruddin II, Palembang",
            -2.9917,
            104.7636,
        ),
    };
    let title = match kind {
        IncidentKind::TrafficJam => format!("Kemacetan di {name}"),
        IncidentKind::Crowd => format!("Kerumunan di {name}"),
        IncidentKind::Garbage => format!("Sampah di {name}"),
        IncidentKind::CameraOffline => format!("Kamera {name} terputus"),
        IncidentKind::CameraTamper => format!("Kamera {name} terganggu"),
    };
    IncidentMessage {
        schema: INCIDENT_SCHEMA.into(),
        event,
        incident: Incident {
            id: id.into(),
            seq,
            site: site.into(),
            site_name: name.into(),
            camera: site.into(),
            kind,
            level: level.parse().unwrap(),
            title: title.clone(),
            title_en: title,
            description: format!("Terdeteksi otomatis oleh kamera {name}."),
            description_en: "Detected by the camera.".into(),
            address: address.into(),
            lat,
            lon,
            zone: Some("lajur".into()),
            zone_name: Some("Lajur utama".into()),
            started_at: t0,
            updated_at: at,
            ended_at: (event == IncidentEvent::End).then_some(at),
            evidence: Evidence {
                vehicle_count: Some(10 + seq),
                median_speed_kmh: Some(5.0),
                dwell_s: Some(60.0 * seq as f32),
                ..Default::default()
            },
            snapshot: snapshot.map(|b| Snapshot {
                content_type: "image/jpeg".into(),
                width: 320,
                height: 180,
                sha256: sha256_hex(b),
                path: format!("snapshots/{id}-{seq}.jpg"),
                data_base64: base64::engine::general_purpose::STANDARD.encode(b),
            }),
        },
    }
}

pub fn to_bytes(m: &IncidentMessage) -> Vec<u8> {
    serde_json::to_vec(m).expect("serialise incident")
}

/// Where browser screenshots go: `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let d = super::root().join("target").join("screenshots");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}
