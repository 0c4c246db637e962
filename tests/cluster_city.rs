//! The deployment of issue 17 on one machine, everything real on loopback: three NATS nodes
//! (MQTT for simpang and the desks, JetStream for the leases and open incidents) with the users
//! and rights of `simpang mqtt-credentials`, `simpang samples` with the six sample cameras, two
//! `simpang run --node` analytics nodes sharing the six sites, and two `simpang desk` processes
//! (`--instance`) on one PostgreSQL. While incidents flow:
//!
//! 1. node `a` is killed with SIGKILL: its sites run on `b`;
//! 2. one broker node is killed with SIGKILL, then started again;
//! 3. desk `d1` is killed with SIGKILL: `d2` goes on taking incidents and serving logins;
//! 4. rolling restart: `a` and `d1` start again, then `b` drains on SIGTERM (its sites move).
//!
//! At the end every incident on the MQTT stream is **exactly one report** in the desks'
//! database, in its last state (the report's `incident_seq` is the highest `seq` sent), no
//! report names an incident that was never sent, and no condition has two incidents open (the
//! sites that moved took their open incidents along). Counts, not timings.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use simpang::incident::secrets::Credentials;
use support::deskproc::{add_user, Db, DeskProc};
use support::nats::NatsCluster;
use support::node::{node_config, Node, Sub, SITES};
use support::pg::Pg;
use support::simpang::{point_streams_at, Samples};
use support::wait::poll;

/// Bounds of a hang; each wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(120);

/// A desk's config: the deployment's sites, its own data folder, the broker cluster.
fn desk_config(dir: &Path, name: &str, mqtt: &[String], nats: &[String], creds: &Path) -> PathBuf {
    let p = node_config(dir, name, mqtt, nats, "");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text += &format!(
        "\n[desk]\n[desk.mqtt]\nbrokers = {mqtt:?}\nclient_id = \"desk\"\n\
         backoff_initial_s = 0.2\nbackoff_max_s = 1.0\ncredentials_file = {:?}\n",
        creds.join("clients/desk.toml").display().to_string(),
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The last `seq` of every incident on the stream, by id.
fn sent(sub: &Sub) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (_, payload) in sub.lines() {
        let Ok(v) = serde_json::from_str::<Value>(&payload) else {
            continue;
        };
        let id = v["incident"]["id"].as_str().unwrap_or_default().to_string();
        let seq = v["incident"]["seq"].as_u64().unwrap_or(0);
        let e = out.entry(id).or_insert(0);
        *e = (*e).max(seq);
    }
    out
}

/// Every incident sent is one report at its last seq; nothing else. `Err` says what differs.
fn reports_match(db: &Db, sent: &BTreeMap<String, u64>) -> Result<(), String> {
    let reports: HashMap<String, (i64, i64)> = db.incident_reports();
    let mut wrong = Vec::new();
    for (id, seq) in sent {
        match reports.get(id) {
            Some((1, s)) if *s as u64 == *seq => {}
            other => wrong.push(format!(
                "{id}: sent seq {seq}, reports (count, seq) {other:?}"
            )),
        }
    }
    for id in reports.keys().filter(|id| !sent.contains_key(*id)) {
        wrong.push(format!("{id}: a report of an incident never sent"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

fn tails(nodes: &[&Node], desks: &[&DeskProc], nats: &NatsCluster) -> String {
    let mut s = String::new();
    for n in nodes {
        s += &format!("--- node {}\n{}\n", n.name, n.proc.log_tail());
    }
    for d in desks {
        s += &format!("--- desk {}\n{}\n", d.base, d.proc.log_tail());
    }
    s + &nats.logs()
}

#[test]
fn a_city_on_one_machine_loses_and_repeats_nothing_when_nodes_brokers_and_desks_die() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::required();
    let db_url = pg.url();

    // The deployment's users and rights, as an operator makes them.
    let plain = node_config(dir.path(), "users", &[], &[], "");
    let out = support::producer::credentials(&plain, &dir.path().join("mqtt"));
    let creds_file = out.join("credentials.toml");
    let creds = Credentials::load(&creds_file).expect("credentials");
    let viewer = creds.login("viewer").expect("the viewer's login");
    let mut nats = NatsCluster::start(3, Some(&out.join("nats-users.conf")));
    let (mqtt, nurls) = (nats.urls(), nats.nats_urls());
    let creds_toml = format!(
        "credentials_file = {:?}\n",
        creds_file.display().to_string()
    );
    let cfg_a = node_config(dir.path(), "a", &mqtt, &nurls, &creds_toml);
    let cfg_b = node_config(dir.path(), "b", &mqtt, &nurls, &creds_toml);
    let samples = Samples::start(&cfg_a, &[], None);
    point_streams_at(&cfg_a, samples.port);
    point_streams_at(&cfg_b, samples.port);
    let incidents = Sub::start_as(
        nats.mqtt_ports[2],
        "simpang/v1/sites/+/incidents",
        "city-test-incidents",
        Some((viewer.username.as_str(), viewer.password.as_str())),
    );

    // The desks first: their persistent sessions exist before the first incident.
    let cfg_d1 = desk_config(dir.path(), "d1", &mqtt, &nurls, &out);
    let cfg_d2 = desk_config(dir.path(), "d2", &mqtt, &nurls, &out);
    add_user(&cfg_d1, &db_url, "operator", "operator");
    let mut d1 = DeskProc::start(&cfg_d1, &db_url, "d1", WAIT);
    let d2 = DeskProc::start(&cfg_d2, &db_url, "d2", WAIT);
    let db = Db::open(&db_url);

    let mut a = Node::start(&cfg_a, "a", Some(3));
    assert!(
        poll(WAIT, || (a.count() == 3).then_some(())).is_some(),
        "a holds 3 sites:\n{}",
        tails(&[&a], &[], &nats)
    );
    let b = Node::start(&cfg_b, "b", None);
    assert!(
        poll(WAIT, || (b.count() == 3).then_some(())).is_some(),
        "b takes the other 3:\n{}",
        tails(&[&a, &b], &[], &nats)
    );
    // Incidents flow (a crowd zone over every picture, one person enough).
    // Counted in messages: the sample crowds stay, so their incidents are long (updates).
    let flowing = |n: usize| poll(WAIT, || (incidents.lines().len() >= n).then_some(()));
    assert!(
        flowing(6).is_some(),
        "incidents flow:\n{}",
        tails(&[&a, &b], &[&d1, &d2], &nats)
    );

    // 1. An analytics node dies.
    a.proc.kill();
    assert!(
        poll(WAIT, || (b.count() == SITES.len()).then_some(())).is_some(),
        "b takes a's sites:\n{}",
        tails(&[&b], &[], &nats)
    );

    // 2. A broker node dies while incidents flow, and comes back.
    let before = incidents.lines().len();
    nats.kill(0);
    assert!(
        flowing(before + 2).is_some(),
        "incidents go on with a broker node down:\n{}",
        tails(&[&b], &[&d1, &d2], &nats)
    );
    nats.restart(0);
    nats.wait_healthy(0);

    // 3. A desk dies: the other takes the incidents and the logins.
    d1.proc.kill();
    // What the desks applied: the sum of every report's last seq grows with each message.
    let applied = || -> i64 { db.incident_reports().values().map(|(_, s)| s).sum() };
    let applied_before = applied();
    assert!(
        poll(WAIT, || (applied() > applied_before).then_some(())).is_some(),
        "d2 takes new incidents after d1 died:\n{}",
        tails(&[&b], &[&d2], &nats)
    );
    assert!(d2.login("operator").is_some(), "d2 serves logins");

    // 4. Rolling restart: a and d1 come back, then b drains and its sites move to a.
    let a = Node::start(&cfg_a, "a", Some(3));
    d1 = DeskProc::start(&cfg_d1, &db_url, "d1", WAIT);
    assert!(d1.login("operator").is_some(), "d1 serves logins again");
    let mut b = b;
    b.proc.signal(libc::SIGTERM);
    assert!(
        poll(WAIT, || (a.count() == 3).then_some(())).is_some(),
        "a takes 3 of b's sites:\n{}",
        tails(&[&a, &b], &[], &nats)
    );
    assert!(
        b.proc.terminate(WAIT).is_some_and(|s| s.success()),
        "b drains and exits:\n{}",
        b.proc.log_tail()
    );
    assert!(
        flowing(incidents.lines().len() + 1).is_some(),
        "incidents flow from a"
    );

    // Quiet: a drains too, flushing its outbox; then the desks must hold exactly the stream.
    let mut a = a;
    a.proc.signal(libc::SIGTERM);
    assert!(
        a.proc.terminate(WAIT).is_some_and(|s| s.success()),
        "a drains and exits:\n{}",
        a.proc.log_tail()
    );
    std::thread::sleep(Duration::from_secs(2));
    let last = sent(&incidents);
    let settled = poll(WAIT, || reports_match(&db, &last).ok());
    if settled.is_none() {
        panic!(
            "the desks' reports differ from the incidents sent ({} incidents):\n{}\n{}",
            last.len(),
            reports_match(&db, &last).unwrap_err(),
            tails(&[], &[&d1, &d2], &nats)
        );
    }
    // Conditions still present when their site moved stayed one incident each.
    let twice = support::node::open_twice(&incidents.lines());
    assert!(
        twice.is_empty(),
        "two incidents open for one condition: {twice:?}"
    );
    eprintln!(
        "incidents sent: {}, messages: {}; each one report at its last seq",
        last.len(),
        incidents.lines().len()
    );
}
