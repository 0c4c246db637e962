//! The MQTT side under attack, on loopback with the real parts: the managed broker (Mosquitto,
//! started by simpang), an external Mosquitto with the files `simpang mqtt-credentials` writes,
//! `simpang run`, and the desk with its database.
//!
//! Mosquitto answers a publish it refuses with a normal PUBACK (MQTT 3.1.1 has no negative
//! acknowledgement), so "refused" is checked where it matters: the message never reaches a
//! subscriber. Each refused publish is followed by a marker the same broker must deliver, and
//! the marker's arrival is the moment the refused message would have arrived too.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::Registry;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, QoS, TlsConfiguration, Transport,
};
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::secrets::Credentials;
use simpang::incident::sign::{self, SigningKey};
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{Evidence, IncidentKind, RuleEvent, RulePhase, SiteId, ZoneId};
use support::desk::{Kind, Opts, TestDesk};
use support::metrics::Metrics;
use support::mosquitto::{make_tls, Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, is_signed, Received, Schemas, Subscriber};
use support::process::Proc;
use support::wait::{poll, poll_async};

const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------------
// Clients

/// An MQTT client of the test's, connected.
struct Client {
    client: AsyncClient,
    el: EventLoop,
}

struct Conn<'a> {
    port: u16,
    id: &'a str,
    login: Option<(&'a str, &'a str)>,
    ca: Option<&'a [u8]>,
    will: Option<LastWill>,
}

impl<'a> Conn<'a> {
    fn new(port: u16, id: &'a str) -> Self {
        Self {
            port,
            id,
            login: None,
            ca: None,
            will: None,
        }
    }
    fn login(mut self, u: &'a str, p: &'a str) -> Self {
        self.login = Some((u, p));
        self
    }
    fn tls(mut self, ca: &'a [u8]) -> Self {
        self.ca = Some(ca);
        self
    }
    fn will(mut self, w: LastWill) -> Self {
        self.will = Some(w);
        self
    }

    /// Connects; the CONNACK, or the error the client got.
    async fn connect(self) -> Result<Client, ConnectionError> {
        let host = if self.ca.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut o = MqttOptions::new(self.id, host, self.port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 24, 1 << 24);
        if let Some((u, p)) = self.login {
            o.set_credentials(u, p);
        }
        if let Some(ca) = self.ca {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: ca.to_vec(),
                alpn: None,
                client_auth: None,
            }));
        }
        if let Some(w) = self.will {
            o.set_last_will(w);
        }
        let (client, mut el) = AsyncClient::new(o, 16);
        let got = tokio::time::timeout(WAIT, async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .expect("a CONNACK or an error within 30 s");
        got.map(|()| Client { client, el })
    }
}

impl Client {
    /// Publishes at QoS 1 and waits for the broker's PUBACK (Mosquitto acknowledges a refused
    /// publish too).
    async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("queued");
        tokio::time::timeout(WAIT, async {
            loop {
                match self.el.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => return,
                    Ok(_) => {}
                    Err(e) => panic!("publish on {topic}: {e}"),
                }
            }
        })
        .await
        .expect("a PUBACK within 30 s");
    }

    /// Subscribes and waits for the SUBACK.
    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queued");
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(Event::Incoming(Incoming::SubAck(_))) = self.el.poll().await {
                    return;
                }
            }
        })
        .await
        .expect("a SUBACK within 30 s");
    }

    /// What arrives within `d`.
    async fn collect(&mut self, d: Duration) -> Vec<String> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(d, async {
            loop {
                if let Ok(Event::Incoming(Incoming::Publish(p))) = self.el.poll().await {
                    got.push(p.topic.clone());
                }
            }
        })
        .await;
        got
    }
}

fn refused(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
        )
    )
}

// ------------------------------------------------------------------------------------------------
// Configs and messages

const AMPERA: &str = r#"
[[sites]]
id = "ampera"
name = "Jembatan Ampera"
address = "Jembatan Ampera, Palembang"
lat = -2.9917
lon = 104.7636
stream = "rtsp://127.0.0.1:1/ampera"
"#;

const BKB: &str = r#"
[[sites]]
id = "bkb"
name = "Benteng Kuto Besak (BKB)"
address = "Jl. Sultan Mahmud Badaruddin, Palembang"
lat = -2.99245
lon = 104.7593
stream = "rtsp://127.0.0.1:1/bkb"
"#;

/// An incident-stage config in `dir` with the given `[mqtt]` body and the two sites.
fn stage_config(dir: &Path, mqtt: &str) -> Config {
    stage_config_sites(dir, mqtt, &format!("{AMPERA}{BKB}"))
}

/// [`stage_config`] with the given `[[sites]]` tables.
fn stage_config_sites(dir: &Path, mqtt: &str, sites: &str) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n[mqtt]\n{mqtt}\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n\
         [incidents]\nupdate_interval_s = 600.0\n{sites}",
        dir.join("data")
    );
    let p = dir.join("simpang.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn hub() -> Arc<Hub> {
    let h = Hub::new([SiteId::new("ampera"), SiteId::new("bkb")]);
    for s in h.sites() {
        s.update_status(|s| s.online = true);
    }
    h
}

fn jam(site: &str, phase: RulePhase, level: &str, start: chrono::DateTime<Utc>) -> RuleEvent {
    RuleEvent {
        site: SiteId::new(site),
        zone: Some(ZoneId::new("lajur")),
        kind: IncidentKind::TrafficJam,
        phase,
        level: level.parse().unwrap(),
        started_at: start,
        at: Utc::now(),
        evidence: Evidence {
            vehicle_count: Some(30),
            ..Default::default()
        },
        frame: None,
        boxes: vec![],
    }
}

fn creds(data: &Path) -> Credentials {
    Credentials::load(&data.join("mqtt/credentials.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn password(c: &Credentials, user: &str) -> String {
    c.password(user)
        .unwrap_or_else(|| panic!("no password for {user}"))
        .to_string()
}

/// A unique marker payload on `site`'s counts topic, published by that site's producer.
async fn marker(producer: &mut Client, site: &str, n: usize) -> String {
    let text = format!("marker-{n}");
    producer
        .publish(
            &format!("simpang/v1/sites/{site}/counts"),
            text.clone().into_bytes(),
            false,
        )
        .await;
    text
}

async fn seen(sub: &Subscriber, text: &str) -> bool {
    sub.wait_for(WAIT, |m| m.iter().any(|r| r.payload == text.as_bytes()))
        .await
}

fn arrived(sub: &Subscriber, text: &str) -> bool {
    sub.messages().iter().any(|r| r.payload == text.as_bytes())
}

// ------------------------------------------------------------------------------------------------
// Rights

/// The attacks on logins and topic rights, on a broker at `port` whose users are in `c`. The
/// viewer subscription `sub` (simpang/v1/#) watches. Returns (attacks tried, refused).
async fn rights_attacks(port: u16, c: &Credentials, sub: &Subscriber, tag: &str) -> (usize, usize) {
    let (pa, pb) = (password(c, "site-ampera"), password(c, "site-bkb"));
    let (pd, pv) = (password(c, "desk"), password(c, "viewer"));
    let mut tried = 0;
    let mut refused_n = 0;
    let mut ampera = Conn::new(port, &format!("{tag}-ampera"))
        .login("site-ampera", &pa)
        .connect()
        .await
        .expect("site-ampera logs in");

    // 1-3. Logins: none, a wrong password, a made-up user.
    for (what, login) in [
        ("anonymous", None),
        ("wrong password", Some(("viewer", "not-the-password"))),
        ("unknown user", Some(("mallory", "x"))),
    ] {
        tried += 1;
        let id = format!("{tag}-login-{tried}");
        let mut conn = Conn::new(port, &id);
        if let Some((u, p)) = login {
            conn = conn.login(u, p);
        }
        match conn.connect().await {
            Err(e) if refused(&e) => refused_n += 1,
            Err(e) => panic!("{what}: refused with an unexpected error {e:?}"),
            Ok(_) => panic!("{what}: the broker let it in"),
        }
    }

    // 4-8. Publishes outside the user's rights: never delivered.
    let forged = |n: usize| format!("{{\"forged\":{n}}}").into_bytes();
    let cases: Vec<(&str, &str, &str, &str, bool)> = vec![
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/bkb/incidents",
            "a site writes another's incidents",
            false,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/bkb/status",
            "a site overwrites another's retained status",
            true,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/desk/reports/PLG-X/status",
            "a site writes the desk's topics",
            false,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/ampera/other",
            "a site writes outside its three topics",
            false,
        ),
        (
            "desk",
            &pd,
            "simpang/v1/sites/ampera/incidents",
            "the desk forges a site's incident",
            false,
        ),
        (
            "viewer",
            &pv,
            "simpang/v1/sites/ampera/incidents",
            "a read-only client publishes",
            false,
        ),
        (
            "simpang-health",
            c.password("simpang-health").unwrap_or("none"),
            "simpang/v1/sites/ampera/status",
            "the health probe publishes",
            false,
        ),
    ];
    for (user, pw, topic, what, retain) in cases {
        if user == "simpang-health" && c.password(user).is_none() {
            continue; // an external broker has no health user
        }
        tried += 1;
        let payload = forged(tried);
        let mut attacker = Conn::new(port, &format!("{tag}-attack-{tried}"))
            .login(user, pw)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{user} logs in: {e:?}"));
        attacker.publish(topic, payload.clone(), retain).await;
        // The PUBACK came: the broker has handled it. A marker sent after it must arrive, and
        // the forged message, had it been let through, before it.
        let m = marker(&mut ampera, "ampera", tried).await;
        assert!(seen(sub, &m).await, "{what}: the marker never arrived");
        let text = String::from_utf8(payload).unwrap();
        assert!(
            !arrived(sub, &text),
            "{what}: {user} published on {topic} and it was delivered"
        );
        refused_n += 1;
    }

    // 9. A will on another site's status: never published.
    tried += 1;
    let will_text = format!("{{\"forged-will\":{tried}}}");
    match Conn::new(port, &format!("{tag}-will"))
        .login("site-ampera", &pa)
        .will(LastWill::new(
            "simpang/v1/sites/bkb/status",
            will_text.clone(),
            QoS::AtLeastOnce,
            true,
        ))
        .connect()
        .await
    {
        Err(e) if refused(&e) => refused_n += 1,
        Err(e) => panic!("will: unexpected error {e:?}"),
        Ok(c) => {
            // Gone without a DISCONNECT: the broker would publish the will now.
            drop(c);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let m = marker(&mut ampera, "ampera", tried).await;
            assert!(seen(sub, &m).await);
            assert!(!arrived(sub, &will_text), "a forged will was published");
            refused_n += 1;
        }
    }

    // 10. A producer reads nothing: subscribed to everything, it gets none of another site's
    // messages (delivered to the viewer meanwhile).
    tried += 1;
    let mut nosy = Conn::new(port, &format!("{tag}-nosy"))
        .login("site-ampera", &pa)
        .connect()
        .await
        .unwrap();
    nosy.subscribe("simpang/v1/#").await;
    let mut bkb = Conn::new(port, &format!("{tag}-bkb"))
        .login("site-bkb", &pb)
        .connect()
        .await
        .unwrap();
    let m = marker(&mut bkb, "bkb", tried).await;
    assert!(seen(sub, &m).await, "site-bkb may publish its own counts");
    let got = nosy.collect(Duration::from_millis(500)).await;
    assert!(got.is_empty(), "a producer read {got:?}");
    refused_n += 1;
    (tried, refused_n)
}

/// The managed broker refuses strangers and keeps every user to its topics, and the messages of
/// the real producer still all arrive, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_broker_refuses_strangers_and_keeps_each_user_to_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"abuse\""
        ),
    );
    let data = cfg.data_dir();
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub(), &registry)
        .await
        .expect("starts with its broker");
    let c = creds(&data);
    let sub = Subscriber::viewer(port, "abuse-viewer", &data);
    assert!(
        sub.wait_subscribed(WAIT).await,
        "the viewer logs in and subscribes"
    );
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| {
            let r = analyse(m, &schemas);
            r.last_status("ampera").is_some() && r.last_status("bkb").is_some()
        })
        .await,
        "both sites' statuses arrive"
    );

    let (tried, refused_n) = rights_attacks(port, &c, &sub, "managed").await;
    eprintln!("managed broker: {tried} attacks, {refused_n} refused");
    assert_eq!(tried, refused_n);
    assert_eq!(tried, 12);
    let m = Metrics::of(&registry);
    assert!(
        m.sum("simpang_mqtt_broker_denied_total", &[("what", "login")])
            .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        m.sum("simpang_mqtt_broker_denied_total", &[("what", "publish")])
            .unwrap_or(0.0)
            >= 7.0
    );

    // The genuine producer: an incident, its update and end, all delivered and all signed with
    // the site's key.
    let start = Utc::now();
    let tx = svc.sender();
    tx.rule_event(jam("ampera", RulePhase::Start, "padat", start));
    tx.rule_event(jam("ampera", RulePhase::Update, "macet", start));
    tx.rule_event(jam("ampera", RulePhase::End, "macet", start));
    let id = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start);
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).complete(1).contains(&id))
            .await,
        "the genuine incident arrives whole"
    );
    let key = c.signing_key("ampera").unwrap().expect("ampera has a key");
    let genuine: Vec<Received> = sub
        .messages()
        .into_iter()
        .filter(|r| r.topic == "simpang/v1/sites/ampera/incidents")
        .collect();
    assert_eq!(genuine.len(), 3);
    for r in &genuine {
        sign::verify(&key, &r.payload).expect("signed with the site's key");
    }
    // Everything else the producer sent is valid (the test's own markers aside).
    let real: Vec<Received> = sub
        .messages()
        .into_iter()
        .filter(|r| !r.payload.starts_with(b"marker-"))
        .collect();
    let report = analyse(&real, &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    sub.stop().await;
    svc.stop().await;
}

/// `simpang mqtt-credentials` writes files an external Mosquitto enforces the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_mosquitto_with_the_generated_files_enforces_the_same_rights() {
    let dir = tempfile::tempdir().unwrap();
    // The config names the broker only later; the users come from the sites.
    let cfg = stage_config(&dir.path().join("gen"), "broker = \"mqtt://127.0.0.1:1\"");
    let out = dir.path().join("creds");
    let run = std::process::Command::new(support::bin())
        .args(["mqtt-credentials", "--config"])
        .arg(cfg.source.as_ref().unwrap())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("simpang runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let c = Credentials::load(&out.join("credentials.toml")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "credentials.toml",
        "passwd",
        "acl",
        "clients/site-ampera.toml",
        "clients/desk.toml",
    ] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let passwd = std::fs::read_to_string(out.join("passwd")).unwrap();
    assert!(
        !passwd.contains(c.password("site-ampera").unwrap()),
        "the password file holds hashes only"
    );
    // A site's client file: its own login and key, nothing of the others.
    let site = Credentials::load(&out.join("clients/site-ampera.toml")).unwrap();
    assert_eq!(site.users.keys().collect::<Vec<_>>(), ["site-ampera"]);
    // Running it again keeps every secret.
    let again = std::process::Command::new(support::bin())
        .args(["mqtt-credentials", "--config"])
        .arg(cfg.source.as_ref().unwrap())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(Credentials::load(&out.join("credentials.toml")).unwrap(), c);

    let broker = Mosquitto::start_with(&MosquittoOpts {
        auth_files: Some((out.join("passwd"), out.join("acl"))),
        ..Default::default()
    });
    let port = broker.port;
    let sub = Subscriber::start(
        port,
        "ext-viewer",
        true,
        Some(("viewer", c.password("viewer").unwrap())),
    );
    assert!(sub.wait_subscribed(WAIT).await);
    let (tried, refused_n) = rights_attacks(port, &c, &sub, "external").await;
    eprintln!("external mosquitto: {tried} attacks, {refused_n} refused");
    // The same attacks less the health probe's (an external broker has no such user).
    assert_eq!((tried, refused_n), (11, 11));

    // simpang run's stage with the credentials file: logs in per site, signs, delivers.
    let cfg = stage_config(
        &dir.path().join("run"),
        &format!(
            "broker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"ext\"\ncredentials_file = {:?}",
            out.join("credentials.toml")
        ),
    );
    let svc = IncidentService::start(&cfg, hub(), &Registry::new())
        .await
        .unwrap();
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "padat", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).incidents.contains_key(&id))
            .await
    );
    let key = c.signing_key("bkb").unwrap().unwrap();
    let msg = sub
        .messages()
        .into_iter()
        .find(|r| r.topic == "simpang/v1/sites/bkb/incidents")
        .unwrap();
    sign::verify(&key, &msg.payload).expect("signed with bkb's key");
    sub.stop().await;
    svc.stop().await;
}

// ------------------------------------------------------------------------------------------------
// Intake

/// Dead letters with their reasons, oldest first.
fn dead_letters(t: &TestDesk) -> Vec<String> {
    t.block_on(async {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT reason FROM dead_letters ORDER BY id")
            .fetch_all(t.desk.store().pool())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    })
}

/// (seq, cleared) of the report of an incident.
fn report_of(t: &TestDesk, incident: &str) -> Option<(i64, bool)> {
    t.block_on(async {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT incident_seq, cleared_at FROM reports WHERE incident_id = $1")
                .bind(incident)
                .fetch_optional(t.desk.store().pool())
                .await
                .unwrap();
        row.map(|(s, c)| (s.unwrap_or(0), c.is_some()))
    })
}

/// The message as JSON (without its signature), to forge from.
fn json_of(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(&support::mqtt::unsigned(payload)).unwrap()
}

fn signed(key: &SigningKey, v: &serde_json::Value) -> Vec<u8> {
    sign::sign(key, &serde_json::to_vec(v).unwrap()).unwrap()
}

/// A compromised site (its login and its signing key in the attacker's hands) and a broken
/// one send forged messages; each goes to the dead letters with its reason, none changes the
/// report, and the genuine update and `end` still apply.
#[test]
fn forged_incidents_go_to_dead_letters_and_the_genuine_end_closes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"forge\""
        ),
    );
    let data = cfg.data_dir();
    // The producer's runtime: the stage and the test's clients run on it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let svc = rt
        .block_on(IncidentService::start(&cfg, hub(), &Registry::new()))
        .expect("starts");
    let c = creds(&data);
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(format!("mqtt://127.0.0.1:{port}")),
            mqtt_toml: format!(
                "credentials_file = {:?}\nmax_message_bytes = {MAX_MESSAGE}\ndead_letter_keep_bytes = {KEEP_BYTES}\ndead_letter_max_rows = {MAX_ROWS}\n",
                data.join("mqtt/clients/desk.toml")
            ),
            ..Default::default()
        },
    );
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "the desk logs in with its generated login"
    );
    assert_eq!(
        t.desk.intake.signing_keys(),
        2,
        "and checks both sites' signatures"
    );
    let sub = rt.block_on(async {
        let s = Subscriber::viewer(port, "forge-viewer", &data);
        assert!(s.wait_subscribed(WAIT).await);
        s
    });

    // The genuine `new`.
    let start = Utc::now() - chrono::Duration::seconds(60);
    let id = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start);
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Start, "padat", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| r.0 == 1)).is_some(),
        "the genuine new became a report"
    );
    let genuine_new = rt
        .block_on(async {
            sub.wait_for(WAIT, |m| {
                m.iter().any(|r| r.topic.ends_with("ampera/incidents"))
            })
            .await;
            sub.messages()
        })
        .into_iter()
        .find(|r| r.topic.ends_with("ampera/incidents"))
        .unwrap();
    assert!(is_signed(&genuine_new.payload));

    let key_a = c.signing_key("ampera").unwrap().unwrap();
    let key_b = c.signing_key("bkb").unwrap().unwrap();
    let pa = password(&c, "site-ampera");
    let base = json_of(&genuine_new.payload);
    let mut forged: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // Holding only the login (a wrong or no key):
    let mut v = base.clone();
    v["incident"]["title"] = "Jembatan Ampera ditutup".into();
    let mut tampered = genuine_new.payload.clone();
    let at = tampered.windows(5).position(|w| w == b"title").unwrap();
    tampered[at + 9] ^= 0x01; // a byte of the signed title changed, the signature kept
    forged.push((
        "a byte changed under the signature",
        tampered,
        "does not match",
    ));
    forged.push((
        "no signature",
        serde_json::to_vec(&v).unwrap(),
        "not signed",
    ));
    forged.push((
        "signed with another site's key",
        signed(&key_b, &v),
        "does not match",
    ));
    // Holding the key too (a stolen site box):
    let mut jump = base.clone();
    jump["event"] = "update".into();
    jump["incident"]["seq"] = 4_294_967_295u32.into();
    forged.push(("seq 4294967295", signed(&key_a, &jump), "max_seq_jump"));
    let mut fake = base.clone();
    fake["incident"]["site"] = "palsu".into();
    fake["incident"]["id"] = "palsu-traffic_jam-1".into();
    forged.push((
        "a site that does not exist",
        signed(&key_a, &fake),
        "differs from incident.site",
    ));
    let mut old = base.clone();
    old["incident"]["id"] = "ampera-old-1".into();
    old["incident"]["updated_at"] = "2025-01-01T10:00:00+07:00".into();
    old["incident"]["started_at"] = "2025-01-01T09:00:00+07:00".into();
    forged.push(("a month-old message", signed(&key_a, &old), "max_age_s"));

    // The desk's store is read on the desk's own runtime, so the waits run outside `rt`.
    let mut attacker = rt.block_on(async {
        Conn::new(port, "forge-attacker")
            .login("site-ampera", &pa)
            .connect()
            .await
            .unwrap()
    });
    for (what, payload, _) in &forged {
        let before = dead_letters(&t).len();
        rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", payload.clone(), false));
        assert!(
            poll(WAIT, || (dead_letters(&t).len() > before).then_some(())).is_some(),
            "{what}: not dead-lettered"
        );
    }
    rt.block_on(async {
        // On the fake site's own topic the broker drops it before the desk.
        attacker
            .publish(
                "simpang/v1/sites/palsu/incidents",
                signed(&key_a, &fake),
                false,
            )
            .await;
        // A replay of the genuine new, byte for byte: a repeat, nothing changes.
        attacker
            .publish(
                "simpang/v1/sites/ampera/incidents",
                genuine_new.payload.clone(),
                false,
            )
            .await;
    });
    let reasons = dead_letters(&t);
    assert_eq!(reasons.len(), forged.len(), "{reasons:#?}");
    for ((what, _, why), reason) in forged.iter().zip(&reasons) {
        assert!(reason.contains(why), "{what}: {reason}");
    }
    assert_eq!(
        report_of(&t, &id),
        Some((1, false)),
        "no forged message changed the report"
    );
    assert_eq!(
        t.counts().reports,
        1,
        "no report for a forged site or incident"
    );

    // The genuine update and end still apply.
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Update, "macet", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| r.0 == 2)).is_some(),
        "the genuine update applied after the forged seq"
    );
    svc.sender()
        .rule_event(jam("ampera", RulePhase::End, "macet", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| *r == (3, true))).is_some(),
        "the genuine end closed the report: {:?}",
        report_of(&t, &id)
    );
    assert_eq!(
        dead_letters(&t).len(),
        forged.len(),
        "nothing genuine was dead-lettered"
    );
    let actions = t.audit_actions(&t.block_on(async {
        let (tk,): (String,) = sqlx::query_as("SELECT ticket FROM reports WHERE incident_id = $1")
            .bind(&id)
            .fetch_one(t.desk.store().pool())
            .await
            .unwrap();
        tk
    }));
    assert!(
        actions.ends_with(&["incident_update".to_string(), "incident_end".to_string()]),
        "{actions:?}"
    );
    eprintln!(
        "intake: {} forged messages + 1 dropped by the broker + 1 replay; {} dead letters, 1 report, 0 genuine lost",
        forged.len(),
        reasons.len()
    );

    // Oversized, signed with the right key: dead-lettered (the desk takes it off the broker
    // rather than looping on it), and only its first KEEP_BYTES are kept.
    let mut big = base.clone();
    big["incident"]["id"] = "ampera-big-1".into();
    big["incident"]["description"] = "x".repeat(4 * MAX_MESSAGE).into();
    let big = signed(&key_a, &big);
    // A fresh connection: the first one's keep-alive went unserved while the test waited.
    let mut attacker = rt.block_on(async {
        Conn::new(port, "forge-attacker-2")
            .login("site-ampera", &pa)
            .connect()
            .await
            .unwrap()
    });
    let before = dead_letters(&t).len();
    rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", big.clone(), false));
    assert!(
        poll(WAIT, || (dead_letters(&t).len() > before).then_some(())).is_some(),
        "the oversized message was not dead-lettered"
    );
    let (reason, kept, size) = last_dead_letter(&t);
    assert!(
        reason.contains(&format!("exceeds {MAX_MESSAGE}")),
        "{reason}"
    );
    assert!(reason.contains("payload cut"), "{reason}");
    assert_eq!((kept, size), (KEEP_BYTES, big.len()));

    // A flood of junk: the table keeps the newest MAX_ROWS, intake keeps up, and the genuine
    // incident that follows becomes a report.
    const FLOOD: usize = 400;
    for n in 0..FLOOD {
        let junk = format!("flood {n} {}", "z".repeat(900)).into_bytes();
        rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", junk, false));
    }
    assert!(
        poll(WAIT, || last_dead_letter(&t)
            .0
            .contains("malformed JSON")
            .then(|| dead_letters_preview(&t))
            .filter(|p| p.starts_with(&format!("flood {}", FLOOD - 1))))
        .is_some(),
        "the flood's last message was not dead-lettered"
    );
    assert_eq!(dead_letters(&t).len(), MAX_ROWS, "dead letters bounded");
    let start2 = Utc::now() - chrono::Duration::seconds(5);
    let id2 = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start2);
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Start, "padat", start2));
    assert!(
        poll(WAIT, || report_of(&t, &id2)).is_some(),
        "a genuine incident after the flood became a report"
    );
    eprintln!(
        "intake: 1 oversized ({} bytes, {KEEP_BYTES} kept) + {FLOOD} junk messages: {} dead letters kept, genuine incident after the flood stored",
        big.len(),
        dead_letters(&t).len()
    );
    rt.block_on(async {
        sub.stop().await;
        svc.stop().await;
    });
    drop(t);
}

const MAX_MESSAGE: usize = 65_536;
const KEEP_BYTES: usize = 4096;
const MAX_ROWS: usize = 50;

/// (reason, bytes kept, size) of the newest dead letter.
fn last_dead_letter(t: &TestDesk) -> (String, usize, usize) {
    t.block_on(async {
        let (reason, payload, size): (String, Vec<u8>, i64) = sqlx::query_as(
            "SELECT reason, payload, size FROM dead_letters ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(t.desk.store().pool())
        .await
        .unwrap();
        (reason, payload.len(), size as usize)
    })
}

/// The newest dead letter's payload as text.
fn dead_letters_preview(t: &TestDesk) -> String {
    t.block_on(async {
        let (payload,): (Vec<u8>,) =
            sqlx::query_as("SELECT payload FROM dead_letters ORDER BY id DESC LIMIT 1")
                .fetch_one(t.desk.store().pool())
                .await
                .unwrap();
        String::from_utf8_lossy(&payload).into_owned()
    })
}

// ------------------------------------------------------------------------------------------------
// TLS, start-up

/// `simpang run` with the managed broker's TLS listener; the desk over mqtts with the CA simpang
/// generated; a remote site's producer over mqtts; a client with another CA fails.
#[test]
fn tls_end_to_end_with_the_generated_ca_and_a_wrong_ca_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, tls0) = (support::ports::port(), support::ports::port());
    let cfg_path = support::simpang::run_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{plain}\"\nembedded_tls_listen = \"127.0.0.1:{tls0}\"\nclient_id = \"tls\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0"
        ),
        "offline_grace_s = 1.0\nupdate_interval_s = 600.0",
        &["ampera", "bkb"],
    );
    let run = support::simpang::Run::start(&cfg_path, &[]);
    // The ports the run got (new ones if another program had taken them).
    let tls = run.mqtt_tls_port();
    let data = dir.path().join("data");
    let ca_path = data.join("mqtt/tls/ca.pem");
    let ca = std::fs::read(&ca_path).expect("simpang made a CA");
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));

    // The desk over mqtts with the generated CA and its generated login.
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(format!("mqtts://localhost:{tls}")),
            mqtt_toml: format!(
                "ca_file = {:?}\ncredentials_file = {:?}\n",
                ca_path,
                data.join("mqtt/clients/desk.toml")
            ),
            ..Default::default()
        },
    );
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "the desk connected over TLS"
    );
    // The camera is unreachable: camera_offline from simpang run reaches the desk.
    let cctv = || {
        t.block_on(async {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT site_id, incident_kind FROM reports WHERE site_id IS NOT NULL",
            )
            .fetch_all(t.desk.store().pool())
            .await
            .unwrap();
            rows
        })
    };
    assert!(
        poll(Duration::from_secs(60), || cctv()
            .iter()
            .any(|(s, k)| s == "ampera" && k == "camera_offline")
            .then_some(()))
        .is_some(),
        "run -> broker -> desk over mqtts; run log:\n{}",
        run.log()
    );

    // A site on another machine: its producer connects over mqtts with the CA and its own
    // client file.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let remote = stage_config_sites(
        &dir.path().join("remote"),
        &format!(
            "broker = \"mqtts://localhost:{tls}\"\nca_file = {:?}\ncredentials_file = {:?}\nclient_id = \"remote\"",
            ca_path,
            data.join("mqtt/clients/site-bkb.toml")
        ),
        BKB,
    );
    let registry = Registry::new();
    let svc = rt
        .block_on(IncidentService::start(&remote, hub(), &registry))
        .expect("remote stage starts");
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "macet", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    assert!(
        poll(WAIT, || report_of(&t, &id)).is_some(),
        "remote site -> broker -> desk, all over mqtts"
    );

    // Another CA: the handshake fails, nothing is let in.
    let other = make_tls(dir.path(), "other");
    let other_ca = std::fs::read(&other.ca).unwrap();
    let v = support::mqtt::embedded_login(&data, "viewer");
    rt.block_on(async {
        match Conn::new(tls, "wrong-ca")
            .login(&v.0, &v.1)
            .tls(&other_ca)
            .connect()
            .await
        {
            Err(ConnectionError::Tls(e)) => eprintln!("wrong CA refused: {e}"),
            Err(e) => panic!("wrong CA: expected a TLS error, got {e:?}"),
            Ok(_) => panic!("a client trusting another CA connected"),
        }
        // Plain MQTT on the TLS port: no CONNACK.
        assert!(Conn::new(tls, "plain-on-tls")
            .login(&v.0, &v.1)
            .connect()
            .await
            .is_err());
        // And the right CA for the viewer works.
        Conn::new(tls, "right-ca")
            .login(&v.0, &v.1)
            .tls(&ca)
            .connect()
            .await
            .expect("the generated CA is trusted");
        svc.stop().await;
    });
    drop(t);
    drop(run);
}

/// A damaged outbox.db is moved aside with its time and `simpang run` starts, saying so.
#[test]
fn a_corrupt_outbox_is_moved_aside_and_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg_path = support::simpang::run_config(
        dir.path(),
        &format!("broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"corrupt\""),
        "",
        &["ampera"],
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("outbox.db"),
        b"this is not a database, it is a broken disk".repeat(200),
    )
    .unwrap();
    let run = support::simpang::Run::start(&cfg_path, &[]);
    let port = run.mqtt_port();
    let kept: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("outbox.db.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "moved aside: {kept:?}");
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains("damaged"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(
        line.contains("WARN")
            && line.contains("outbox.db")
            && line.contains(&*kept[0].file_name().unwrap().to_string_lossy()),
        "{line}"
    );
    // And it works: the site's status reaches the broker.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sub = Subscriber::viewer(port, "corrupt-viewer", &data);
        let schemas = Schemas::load();
        assert!(
            sub.wait_for(WAIT, |m| analyse(m, &schemas)
                .last_status("ampera")
                .is_some())
                .await
        );
        sub.stop().await;
    });
    drop(run);
}

/// A plain listener on the network, or a missing Mosquitto, stops `simpang run` with an error
/// that names the setting.
#[test]
fn unsafe_or_impossible_broker_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "network",
            format!("broker = \"embedded\"\nembedded_listen = \"0.0.0.0:{}\"", support::ports::port()),
            "mqtt.embedded_listen",
        ),
        (
            "mosquitto",
            format!(
                "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{}\"\nmosquitto = \"/nonexistent/mosquitto\"",
                support::ports::port()
            ),
            "/nonexistent/mosquitto",
        ),
    ];
    for (name, mqtt, want) in cases {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let cfg_path = support::simpang::run_config(&sub, &mqtt, "", &["ampera"]);
        let mut p = Proc::simpang(
            "run",
            &["run", "--config", &cfg_path.display().to_string()],
            &[],
        );
        assert!(
            poll(Duration::from_secs(120), || !p.is_running()).is_some(),
            "{name}: still running"
        );
        let st = p.terminate(Duration::ZERO).expect("exited");
        assert!(!st.success(), "{name}: started");
        let log = p.log();
        assert!(log.contains(want), "{name}: {log}");
    }
}

/// The broker is a supervised child: killed, it is started again and the sites reconnect;
/// stopped with the stage, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_is_restarted_when_it_dies_and_stopped_with_simpang() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"sup\""
        ),
    );
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub(), &registry)
        .await
        .unwrap();
    let broker = svc.managed_broker().expect("managed");
    let pid = broker.pid().expect("running");
    // SAFETY: a signal to the broker child this test's stage started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let metric = |name: &str| Metrics::of(&registry).sum(name, &[]).unwrap_or(0.0);
    assert!(
        poll_async(WAIT, || metric("simpang_mqtt_broker_restarts_total") >= 1.0
            && broker.pid().is_some_and(|p| p != pid))
        .await
        .is_some(),
        "started again"
    );
    assert!(
        poll_async(WAIT, || metric("simpang_mqtt_connected") >= 2.0)
            .await
            .is_some(),
        "both sites reconnected"
    );
    let data = cfg.data_dir();
    let sub = Subscriber::viewer(port, "sup-viewer", &data);
    assert!(sub.wait_subscribed(WAIT).await);
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "padat", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).incidents.contains_key(&id))
            .await
    );
    sub.stop().await;
    let pid = broker.pid().unwrap();
    svc.stop().await;
    assert!(
        poll(WAIT, || (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(()))
        .is_some(),
        "the broker stopped with the stage"
    );
}
