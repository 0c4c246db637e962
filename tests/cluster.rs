//! A broker cluster under a crash: three NATS nodes (configs from `scripts/nats-cluster.sh`,
//! logins and topic rights from `simpang mqtt-credentials`), the incident service of `simpang
//! run` in-process fed rule events, and a desk, both given all three URLs. The node the
//! producer is connected to is killed with SIGKILL while incidents flow: every incident must
//! become exactly one report with its last update, and both the producer and the desk must be
//! connected again, to the other nodes; then the node comes back and the desk's node is killed.
//! Counts, not timings: the failover times and each reconnect's phases are printed
//! (`SIMPANG_CLUSTER_KILLS=10`, or scripts/failover-drill.sh, for a drill).
//! And the users `simpang mqtt-credentials` writes for the cluster have the ACL's rights.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use simpang::config::Config;
use simpang::desk::Role;
use simpang::incident::secrets::Credentials;
use simpang::model::{Image, PixelFormat};
use support::desk::{Kind, Opts, TestDesk};
use support::metrics::Metrics;
use support::nats::NatsCluster;
use support::process::Proc;
use support::producer;
use support::wait::poll;

/// The desk's test config knows these two sites (tests/support/desk.rs).
const SITES: [&str; 2] = ["ampera", "bkb"];
const CLIENT_ID: &str = "cluster-run";
/// Generous bounds of a hang; the test ends as soon as each condition holds.
const WAIT: Duration = Duration::from_secs(60);

/// Kills per run: 2 (the producer's node, then the desk's), or `SIMPANG_CLUSTER_KILLS` for a
/// longer drill (docs/deploy.md's figures come from 10).
fn kills() -> usize {
    std::env::var("SIMPANG_CLUSTER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(2)
}

fn metric(r: &Registry, name: &str) -> f64 {
    Metrics::of(r).sum(name, &[]).unwrap_or(0.0)
}

/// (incident id, last seq, cleared) of every camera report, and how many times each incident
/// was created (a second creation would be a duplicate report).
fn desk_reports(t: &TestDesk) -> (HashMap<String, (i64, bool)>, HashMap<String, i64>) {
    t.block_on(async {
        let pool = t.desk.store().pool();
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT incident_id, incident_seq, cleared_at FROM reports WHERE incident_id IS NOT NULL",
        )
        .fetch_all(pool)
        .await
        .expect("reports");
        let created: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.incident_id, COUNT(*) FROM audit_log a JOIN reports r ON a.entity = 'report' \
             AND a.entity_id = r.ticket WHERE r.incident_id IS NOT NULL AND a.action = 'create' \
             GROUP BY r.incident_id",
        )
        .fetch_all(pool)
        .await
        .expect("audit");
        (
            rows.into_iter()
                .map(|(id, seq, cleared)| (id, (seq, cleared.is_some())))
                .collect(),
            created.into_iter().collect(),
        )
    })
}

/// `mosquitto_pub` of one QoS 1 message to node `port` as `user` (no login: anonymous); its
/// exit status and output.
///
/// A node answers a CONNECT only after JetStream requests (the account's MQTT streams, the
/// session record) that fail after `js_api_timeout` (1 s, scripts/nats-cluster.sh); on a
/// loaded host the first of them after a start can fail, and the node closes the connection
/// without a CONNACK ("The connection was lost"). Nothing was published then, so that one case
/// is tried again, as simpang's own clients do; any answer (accepted or refused) is final.
fn publish(port: u16, login: Option<(&str, &str)>, topic: &str, payload: &str) -> (bool, String) {
    let mut tries = Vec::new();
    for _ in 0..20 {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-d"])
            .args(["-t", topic, "-m", payload]);
        if let Some((u, p)) = login {
            cmd.args(["-u", u, "-P", p]);
        }
        let out = cmd
            .output()
            .expect("mosquitto_pub (Debian mosquitto-clients, scripts/setup.sh)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() || text.contains("received CONNACK") {
            tries.push(text);
            return (out.status.success(), tries.join("--- tried again:\n"));
        }
        tries.push(text);
        std::thread::sleep(Duration::from_millis(250));
    }
    (false, tries.join("--- tried again:\n"))
}

/// The users of `simpang mqtt-credentials` on the cluster: a login for each, no anonymous or
/// wrong-password client, and the Mosquitto ACL's rights across nodes (a site writes only its
/// own topics, the viewer only reads, the desk writes its status topics).
#[test]
fn the_cluster_enforces_each_users_rights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("simpang.toml");
    std::fs::write(
        &cfg_path,
        producer::config(dir.path(), CLIENT_ID, &SITES, ""),
    )
    .unwrap();
    let creds = producer::credentials(&cfg_path, &dir.path().join("mqtt"));
    let nats = NatsCluster::start(3, Some(&creds.join("nats-users.conf")));
    let secrets = Credentials::load(&creds.join("credentials.toml")).unwrap();
    let pw = |u: &str| secrets.password(u).expect("a password").to_string();
    let (site, viewer, desk) = (pw("site-ampera"), pw("viewer"), pw("desk"));
    let port = |i: usize| nats.mqtt_ports[i];

    // The viewer reads everything, on node 3; the writers are on nodes 1 and 2.
    // Line-buffered: mosquitto_sub's debug lines (the SUBACK) are not flushed into a pipe.
    let mut cmd = Command::new("stdbuf");
    cmd.args(["-oL", "mosquitto_sub"])
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port(2).to_string(),
            "-q",
            "1",
            "-v",
            "-d",
        ])
        .args(["-u", "viewer", "-P", &viewer, "-t", "simpang/v1/#"]);
    let mut sub = Proc::spawn("viewer", cmd);
    sub.wait_line("SUBACK", WAIT);

    let refused = [
        publish(port(0), None, "simpang/v1/sites/ampera/status", "anonymous"),
        publish(
            port(0),
            Some(("site-ampera", "not-the-password")),
            "simpang/v1/sites/ampera/status",
            "wrong-password",
        ),
    ];
    for (ok, out) in &refused {
        assert!(!ok, "a client without a valid login is refused: {out}");
    }
    // Refused publishes still get a PUBACK (MQTT 3.1.1), and are dropped.
    for (port, user, password, topic, payload) in [
        (
            port(0),
            "site-ampera",
            &site,
            "simpang/v1/sites/bkb/incidents",
            "forged-site",
        ),
        (
            port(1),
            "site-ampera",
            &site,
            "simpang/v1/desk/reports/T1/status",
            "forged-desk",
        ),
        (
            port(1),
            "viewer",
            &viewer,
            "simpang/v1/sites/bkb/status",
            "viewer-write",
        ),
        (
            port(0),
            "desk",
            &desk,
            "simpang/v1/sites/ampera/incidents",
            "desk-forged-site",
        ),
    ] {
        let (ok, out) = publish(port, Some((user, password)), topic, payload);
        assert!(ok, "{user} publishes (and is dropped, not refused): {out}");
    }
    for (port, user, password, topic, payload) in [
        (
            port(0),
            "site-ampera",
            &site,
            "simpang/v1/sites/ampera/incidents",
            "own-incident",
        ),
        (
            port(1),
            "desk",
            &desk,
            "simpang/v1/desk/reports/T1/status",
            "desk-status",
        ),
    ] {
        let (ok, out) = publish(port, Some((user, password)), topic, payload);
        assert!(ok, "{user} publishes its own topic: {out}");
    }
    // Both allowed messages arrive (published after the refused ones, by clients that waited
    // for each PUBACK, so nothing refused can still be on its way).
    sub.wait_line("simpang/v1/sites/ampera/incidents own-incident", WAIT);
    sub.wait_line("simpang/v1/desk/reports/T1/status desk-status", WAIT);
    let got: Vec<String> = sub
        .stdout_lines()
        .into_iter()
        .filter(|l| l.starts_with("simpang/"))
        .collect();
    assert_eq!(
        got,
        [
            "simpang/v1/sites/ampera/incidents own-incident",
            "simpang/v1/desk/reports/T1/status desk-status"
        ],
        "only the allowed messages reach the viewer:\n{}",
        nats.logs()
    );
}

/// True when the desk stored any of `events` (incident id, seq): its report is at that seq or
/// past it.
fn stored_any(t: &TestDesk, events: &[(String, i64)]) -> bool {
    let (reports, _) = desk_reports(t);
    events
        .iter()
        .any(|(id, seq)| reports.get(id).is_some_and(|(s, _)| s >= seq))
}

/// Failover times of a drill, from the kill: [producer CONNACK, producer's first PUBACK, desk
/// CONNACK, first incident made after the kill stored by the desk], for kills of the client's
/// own node and for every kill (a node that leads an MQTT stream stalls clients on the others).
#[derive(Default)]
struct Measured {
    own_producer: Vec<[Option<Duration>; 2]>,
    own_desk: Vec<[Option<Duration>; 2]>,
    all: Vec<[Option<Duration>; 4]>,
}

impl Measured {
    fn add(&mut self, producers_node: bool, desks_node: bool, t: [Option<Duration>; 4]) {
        if producers_node {
            self.own_producer.push([t[0], t[1]]);
        }
        if desks_node {
            self.own_desk.push([t[2], t[3]]);
        }
        self.all.push(t);
    }

    /// One line per figure, `failover: WHAT: n N, p50 X s, p95 Y s, max Z s`
    /// (scripts/failover-drill.sh collects them).
    fn print(&self) {
        let col = |rows: &[[Option<Duration>; 2]], i: usize| -> Vec<Duration> {
            rows.iter().filter_map(|r| r[i]).collect()
        };
        let all = |i: usize| -> Vec<Duration> { self.all.iter().filter_map(|r| r[i]).collect() };
        for (what, v) in [
            (
                "producer CONNACK, its node killed",
                col(&self.own_producer, 0),
            ),
            (
                "producer first PUBACK, its node killed",
                col(&self.own_producer, 1),
            ),
            ("producer first PUBACK, any node killed", all(1)),
            ("desk CONNACK, its node killed", col(&self.own_desk, 0)),
            (
                "desk stores a new incident, its node killed",
                col(&self.own_desk, 1),
            ),
            ("desk stores a new incident, any node killed", all(3)),
        ] {
            println!("failover: {what}: {}", support::trace::describe(&v));
        }
    }
}

#[test]
fn a_killed_broker_node_loses_no_incident_and_both_sides_fail_over() {
    // The clients' reconnect phases, and the desk's ignored repeats (at-least-once delivery).
    let log = support::trace::capture(
        "simpang::desk::mqtt=info,simpang::desk::intake=debug,simpang::incident::link=info",
    );
    let dir = tempfile::tempdir().unwrap();
    // The deployment's users and rights, as an operator makes them.
    let cfg_path = dir.path().join("simpang.toml");
    std::fs::write(
        &cfg_path,
        producer::config(dir.path(), CLIENT_ID, &SITES, ""),
    )
    .unwrap();
    let creds = producer::credentials(&cfg_path, &dir.path().join("mqtt"));
    let mut nats = NatsCluster::start(3, Some(&creds.join("nats-users.conf")));
    let urls = nats.urls();

    // The desk first, so its persistent session exists before the first incident.
    let desk = TestDesk::start(
        Kind::Sqlite,
        Opts {
            brokers: urls.clone(),
            mqtt_toml: format!("credentials_file = {:?}\n", creds.join("clients/desk.toml")),
            ..Default::default()
        },
    );
    desk.user("operator", Role::Operator, None);
    assert!(
        poll(WAIT, || desk.desk.intake_subscribed()).is_some(),
        "the desk subscribes to incidents on the cluster:\n{}",
        nats.logs()
    );
    let desk_id = desk.desk.desk_config().mqtt.client_id.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mqtt = format!(
        "brokers = {urls:?}\ncredentials_file = {:?}\n",
        creds.join("credentials.toml")
    );
    std::fs::write(
        &cfg_path,
        producer::config(dir.path(), CLIENT_ID, &SITES, &mqtt),
    )
    .unwrap();
    let cfg = Config::load(&cfg_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.mqtt.broker_urls().len(), 3);
    let (svc, registry) = producer::start(&rt, &cfg);
    assert!(
        poll(WAIT, || metric(&registry, "simpang_mqtt_connected")
            == SITES.len() as f64)
        .is_some(),
        "every site connects to the cluster:\n{}",
        nats.logs()
    );
    let producer_client = format!("{CLIENT_ID}-{}", SITES[0]);
    let tx = svc.sender();
    let frame = Arc::new(Image::with_format(640, 360, PixelFormat::I420));
    let mut rounds = producer::Rounds::new(&SITES);
    let mut after_kills = 0usize;
    let published = || {
        Metrics::of(&registry)
            .sum("simpang_mqtt_published_total", &[("site", SITES[0])])
            .unwrap_or(0.0)
    };
    let mut m = Measured::default();
    let kills = kills();
    for k in 0..kills {
        // In turn the node of the producer and the node of the desk (often the same one).
        let (whose, client) = if k % 2 == 0 {
            ("producer", producer_client.as_str())
        } else {
            ("desk", desk_id.as_str())
        };
        let victim = poll(WAIT, || nats.node_of(client))
            .unwrap_or_else(|| panic!("{client} is on no node:\n{}", nats.logs()));
        let desk_node = nats.node_of(&desk_id);
        let producer_node = nats.node_of(&producer_client);
        // Per site, incident after incident: new (seq 1), two updates with a level change (2,
        // 3), end (4); one event per site per round, 200 ms apart. The kill comes after
        // `before` rounds; rounds are counted, so a loaded machine stretches the run, never
        // shortens it. Between rounds both sides are sampled every 20 ms.
        let (before, after) = (8, 60);
        let mut killed_at: Option<Instant> = None;
        let mut acked_before = 0.0;
        // The rule events of the first round after the kill: (incident id, seq).
        let mut first_after: Vec<(String, i64)> = Vec::new();
        let (mut producer_ack, mut desk_stored) = (None, None);
        for r in 0..before + after {
            if r == before {
                acked_before = published();
                nats.kill(victim);
                killed_at = Some(Instant::now());
            }
            let was = rounds.produced.clone();
            rounds.next(&tx, Some(&frame));
            if r == before {
                first_after = rounds
                    .produced
                    .iter()
                    .filter(|(id, v)| was.get(*id) != Some(*v))
                    .map(|(id, (seq, _))| (id.clone(), *seq))
                    .collect();
            }
            if killed_at.is_some() {
                after_kills += SITES.len();
            }
            let next_round = Instant::now() + Duration::from_millis(200);
            while Instant::now() < next_round {
                if let Some(t) = killed_at {
                    // A PUBACK after the kill: the dead node sends none.
                    if producer_ack.is_none() && published() > acked_before {
                        producer_ack = Some(t.elapsed());
                    }
                    // An incident event made after the kill, stored by the desk: the end of
                    // the outage as a user of the desk sees it (producer and desk together).
                    if desk_stored.is_none() && stored_any(&desk, &first_after) {
                        desk_stored = Some(t.elapsed());
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if producer_ack.is_some() && desk_stored.is_some() && r >= before + 15 {
                break;
            }
        }
        let killed_at = killed_at.unwrap();
        let producer_ack = producer_ack.or_else(|| {
            poll(WAIT, || {
                (published() > acked_before).then(|| killed_at.elapsed())
            })
        });
        let desk_stored = desk_stored.or_else(|| {
            poll(WAIT, || {
                stored_any(&desk, &first_after).then(|| killed_at.elapsed())
            })
        });
        // The phases, from the clients' own log lines.
        let producer_id = format!("client_id={producer_client}");
        let producer_connack = log
            .first(killed_at, &[&producer_id, "after losing the connection"])
            .map(|(d, _)| d);
        let desk_connack = log
            .first(killed_at, &["incident intake connected again"])
            .map(|(d, _)| d);
        let secs = |d: Option<Duration>| {
            d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        println!(
            "kill {}: node {} ({whose}'s; producer on {:?}, desk on {:?}): producer CONNACK {}, \
             first PUBACK {}; desk CONNACK {}, first incident made after the kill stored {}",
            k + 1,
            victim + 1,
            producer_node.map(|n| n + 1),
            desk_node.map(|n| n + 1),
            secs(producer_connack),
            secs(producer_ack),
            secs(desk_connack),
            secs(desk_stored),
        );
        for (d, line) in log.since(killed_at) {
            if d > Duration::from_secs(20) {
                break;
            }
            // The connections' lines (not each incident applied), with the offset from the
            // kill in place of the clock.
            let Some((_, text)) = line.split_once(" simpang::") else {
                continue;
            };
            if text.starts_with("desk::mqtt") || text.starts_with("incident::link") {
                println!("  +{:>6.3} s {text}", d.as_secs_f64());
            }
        }
        assert!(
            producer_ack.is_some(),
            "kill {}: the producer's messages are acknowledged again:\n{}",
            k + 1,
            nats.logs()
        );
        assert!(
            desk_stored.is_some(),
            "kill {}: the desk stores incidents again:\n{}",
            k + 1,
            nats.logs()
        );
        m.add(
            producer_node == Some(victim),
            desk_node == Some(victim),
            [producer_connack, producer_ack, desk_connack, desk_stored],
        );
        // The killed node comes back and catches up before the next kill.
        nats.restart(victim);
    }

    // Every message acknowledged by the cluster (the outbox keeps a row until its PUBACK).
    let drained = poll(WAIT, || metric(&registry, "simpang_outbox_pending") == 0.0);
    // And every incident at the desk in its last state.
    let all_in = poll(WAIT, || {
        let (reports, _) = desk_reports(&desk);
        rounds
            .produced
            .iter()
            .all(|(id, want)| reports.get(id) == Some(want))
    });
    let (reports, created) = desk_reports(&desk);
    let counts = desk.counts();
    let redelivered = log.count("stale incident message ignored");
    println!(
        "cluster test: {kills} kills; {} incidents, {after_kills} rule events after a kill; \
         reports {}, dead letters {}, messages delivered again and ignored {redelivered}",
        rounds.produced.len(),
        reports.len(),
        counts.dead_letters,
    );
    m.print();
    assert!(
        drained.is_some(),
        "the outbox drains: {} pending",
        metric(&registry, "simpang_outbox_pending")
    );
    let missing: Vec<_> = rounds
        .produced
        .iter()
        .filter(|(id, want)| reports.get(*id) != Some(want))
        .map(|(id, want)| (id, want, reports.get(id)))
        .collect();
    assert!(
        all_in.is_some() && missing.is_empty(),
        "incidents not at the desk in their last state (id, produced, at the desk): {missing:?}"
    );
    // One report per incident: nothing else, nothing twice.
    assert_eq!(reports.len(), rounds.produced.len(), "{reports:?}");
    assert!(
        created.values().all(|&n| n == 1) && created.len() == rounds.produced.len(),
        "each incident created one report: {created:?}"
    );
    assert_eq!(
        counts.dead_letters, 0,
        "no message was refused (signatures, rights)"
    );
    assert_eq!(
        metric(&registry, "simpang_mqtt_connected"),
        SITES.len() as f64
    );
    rt.block_on(svc.stop());
}
