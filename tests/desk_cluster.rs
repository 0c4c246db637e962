//! Two `simpang desk` processes on one PostgreSQL database (active-active), each with its own
//! MQTT client id (`--instance`) and persistent session on a broker with the deployment's
//! logins and rights (`simpang mqtt-credentials`), fed by the incident service of `simpang run`
//! (in-process). Both desks receive every incident message and apply it side by side: each
//! incident must become one report with each step audited once; the status outbox is drained by
//! both, each message published once; a session signed in on one desk is valid on the other; the
//! dashboards' live feed of one desk shows a change made on the other; and after one desk is
//! killed (SIGKILL) the other takes every incident and serves logins. The same two desks on a
//! three-node NATS cluster, each killed in turn (`SIMPANG_DESK_KILLS` times, 1 by default).
//! Counts, not timings.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use simpang::config::Config;
use simpang::incident::secrets::Credentials;
use simpang::incident::IncidentSender;
use support::desk::{Http, SITES};
use support::deskproc::{add_user, Db, DeskProc};
use support::metrics::Metrics;
use support::mosquitto::{Mosquitto, MosquittoOpts};
use support::mqtt::Subscriber;
use support::nats::NatsCluster;
use support::pg::Pg;
use support::producer;
use support::wait::poll;

const SITE_IDS: [&str; 2] = ["ampera", "bkb"];
const CLIENT_ID: &str = "desks-run";
/// Generous bounds of a hang; each wait ends as soon as its condition holds. Claims of a killed
/// desk free themselves after 30 s (src/desk/mqtt.rs `CLAIM_S`), hence more than that.
const WAIT: Duration = Duration::from_secs(90);

/// One desk's config file: its own data folder (as on its own host), the shared broker
/// (`broker = ...`, or `brokers = [...]` for a cluster).
fn desk_config(dir: &Path, broker: &str, creds: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "data_dir = {:?}\n{SITES}\n[desk]\n\
         [desk.mqtt]\n{broker}\nclient_id = \"desk\"\n\
         backoff_initial_s = 0.2\nbackoff_max_s = 1.0\ncredentials_file = {:?}\n",
        dir.join("data"),
        creds.join("clients/desk.toml"),
    );
    let path = dir.join("desk.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn start_desk(cfg: &Path, db: &str, instance: &str) -> DeskProc {
    DeskProc::start(cfg, db, instance, WAIT)
}

fn login(desk: &DeskProc, name: &str) -> Http {
    desk.login(name)
        .unwrap_or_else(|| panic!("login {name} at {}", desk.base))
}

/// The incident service of `simpang run` for the two sites, its broker settings `mqtt` (the
/// `[mqtt]` lines), its config written to `cfg_path`.
fn start_producer(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    cfg_path: &Path,
    mqtt: &str,
) -> (simpang::incident::IncidentService, prometheus::Registry) {
    std::fs::write(cfg_path, producer::config(dir, CLIENT_ID, &SITE_IDS, mqtt)).unwrap();
    let cfg = Config::load(cfg_path).unwrap_or_else(|e| panic!("{e}"));
    producer::start(rt, &cfg)
}

/// Waits for the producer's outbox to drain (every message acknowledged by the broker), then
/// stops the status subscriber and the incident service.
fn drain_and_stop(
    rt: &tokio::runtime::Runtime,
    registry: &prometheus::Registry,
    sub: Subscriber,
    svc: simpang::incident::IncidentService,
) {
    let pending = || {
        Metrics::of(registry)
            .sum("simpang_outbox_pending", &[])
            .unwrap_or(0.0)
    };
    assert!(
        poll(WAIT, || (pending() == 0.0).then_some(())).is_some(),
        "the producer's outbox drains: {} pending",
        pending()
    );
    rt.block_on(async {
        sub.stop().await;
        svc.stop().await;
    });
}

/// `rounds` rounds of incidents on both sites, 100 ms apart; incident id -> (last seq, ended).
fn produce(tx: &IncidentSender, rounds: usize) -> HashMap<String, (i64, bool)> {
    let mut r = producer::Rounds::new(&SITE_IDS);
    for _ in 0..rounds {
        r.next(tx, None);
        std::thread::sleep(Duration::from_millis(100));
    }
    r.produced
}

/// Every produced incident is one report in its last state, each step audited once.
fn check_reports(db: &Db, produced: &HashMap<String, (i64, bool)>, when: &str) {
    let all_in = poll(WAIT, || {
        let r = db.reports();
        produced
            .iter()
            .all(|(id, want)| r.get(id).map(|(_, s, c)| (*s, *c)) == Some(*want))
            .then_some(())
    });
    let reports = db.reports();
    let missing: Vec<_> = produced
        .iter()
        .filter(|(id, want)| reports.get(*id).map(|(_, s, c)| (*s, *c)) != Some(**want))
        .collect();
    assert!(
        all_in.is_some(),
        "{when}: every incident reaches the database in its last state; not: {missing:?}"
    );
    let audit = db.audit();
    for (id, (seq, ended)) in produced {
        let (ticket, _, _) = &reports[id];
        let actions = &audit[ticket];
        let count = |a: &str| actions.iter().filter(|x| *x == a).count() as i64;
        assert_eq!(count("create"), 1, "{when}: {id} created once: {actions:?}");
        // seq 2 and 3 are updates, 4 the end: each applied by one desk only.
        assert_eq!(
            count("incident_update"),
            (seq - 1).min(2),
            "{when}: {id} updated once per update: {actions:?}"
        );
        assert_eq!(
            count("incident_end"),
            i64::from(*ended),
            "{when}: {id} ended once: {actions:?}"
        );
    }
    assert_eq!(db.dead_letters(), 0, "{when}: no dead letters");
}

/// Every status message in the outbox published, and received exactly once.
fn check_statuses(db: &Db, sub: &Subscriber, when: &str) -> HashMap<String, usize> {
    let drained = poll(WAIT, || (db.outbox().1 == 0).then_some(()));
    assert!(
        drained.is_some(),
        "{when}: the status outbox drains ({} pending)",
        db.outbox().1
    );
    let (rows, _) = db.outbox();
    let want = rows.len();
    let arrived = poll(Duration::from_secs(20), || {
        let n = status_messages(sub).len();
        (n >= want).then_some(())
    });
    let got = status_messages(sub);
    assert!(
        arrived.is_some(),
        "{when}: {} of {want} status messages arrived",
        got.len()
    );
    let mut expected: HashMap<String, i64> = HashMap::new();
    for (p, _) in &rows {
        *expected.entry(p.clone()).or_default() += 1;
    }
    let mut received: HashMap<String, i64> = HashMap::new();
    for p in got {
        *received.entry(p).or_default() += 1;
    }
    let dup: Vec<_> = received
        .iter()
        .filter(|(p, n)| expected.get(*p) != Some(n))
        .map(|(p, n)| format!("{n}x {p}"))
        .collect();
    assert!(
        dup.is_empty(),
        "{when}: each status message published once; differing: {dup:?}"
    );
    let mut by: HashMap<String, usize> = HashMap::new();
    for (_, c) in rows {
        let who = c.unwrap_or_default();
        let instance = who.split('.').next().unwrap_or_default().to_string();
        *by.entry(instance).or_default() += 1;
    }
    by
}

fn status_messages(sub: &Subscriber) -> Vec<String> {
    sub.messages()
        .into_iter()
        .filter(|r| r.topic.starts_with("simpang/v1/desk/") && r.topic.ends_with("/status"))
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

/// The live feed (`/api/events`) of the desk at `base` as `who` sees it: its lines, collected
/// by a thread until the test ends.
fn follow_feed(h: &Http) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(600))
        .build();
    let res = agent
        .get(&format!("{}/api/events", h.base))
        .set("cookie", h.cookie.as_deref().unwrap_or_default())
        .call()
        .expect("the live feed answers");
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(res.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            l.lock().unwrap().push(line);
        }
    });
    lines
}

#[test]
fn two_desks_on_one_database_apply_each_incident_once_and_share_sessions_feed_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::required();
    let db_url = pg.url();
    // The deployment's users and rights, as an operator makes them.
    let cfg_path = dir.path().join("simpang.toml");
    std::fs::write(
        &cfg_path,
        producer::config(dir.path(), CLIENT_ID, &SITE_IDS, ""),
    )
    .unwrap();
    let creds = producer::credentials(&cfg_path, &dir.path().join("mqtt"));
    let broker = Mosquitto::start_with(&MosquittoOpts {
        auth_files: Some((creds.join("passwd"), creds.join("acl"))),
        ..Default::default()
    });
    let port = broker.port;
    let c = Credentials::load(&creds.join("credentials.toml")).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sub = {
        let _g = rt.enter();
        Subscriber::start(
            port,
            "desks-viewer",
            true,
            Some(("viewer", c.password("viewer").unwrap())),
        )
    };
    assert!(
        rt.block_on(sub.wait_subscribed(WAIT)),
        "the viewer subscribes"
    );

    // Two desks, one database: the first migrates it, the second finds it migrated.
    let broker_toml = format!("broker = \"mqtt://127.0.0.1:{port}\"");
    let cfg_a = desk_config(&dir.path().join("desk-a"), &broker_toml, &creds);
    let cfg_b = desk_config(&dir.path().join("desk-b"), &broker_toml, &creds);
    let mut a = start_desk(&cfg_a, &db_url, "a");
    let b = start_desk(&cfg_b, &db_url, "b");
    add_user(&cfg_a, &db_url, "operator", "operator");

    // A session signed in on one desk is valid on the other.
    let on_a = login(&a, "operator");
    let mut on_b = Http::new(&b.base);
    on_b.cookie = on_a.cookie.clone();
    on_b.csrf = on_a.csrf.clone();
    let me = on_b.get("/api/me");
    assert_eq!(
        me.status,
        200,
        "the session from desk a on desk b: {}",
        me.text()
    );
    assert_eq!(me.json()["user"]["username"], "operator", "{}", me.text());
    let feed_b = follow_feed(&on_b);

    // The producer.
    let mqtt = format!(
        "broker = \"mqtt://127.0.0.1:{port}\"\ncredentials_file = {:?}\n",
        creds.join("credentials.toml")
    );
    let (svc, registry) = start_producer(&rt, dir.path(), &cfg_path, &mqtt);
    let tx = svc.sender();
    let db = Db::open(&db_url);

    // Both desks take every message.
    let produced = produce(&tx, 24);
    check_reports(&db, &produced, "both desks");
    let by = check_statuses(&db, &sub, "both desks");
    println!("status messages published, by desk: {by:?}");

    // A desk that lost a race to the other read again instead of failing the message (which
    // would stay unacknowledged until its next connection).
    for (name, d) in [("a", &a), ("b", &b)] {
        assert!(
            !d.proc.log().contains("incident not stored"),
            "desk {name} failed to store an incident:\n{}",
            d.proc.log_tail()
        );
    }

    // A change made on desk a reaches desk b's live feed.
    let reports = db.reports();
    let (ticket, _, _) = reports.values().next().unwrap().clone();
    let r = on_a.act(&ticket, "verify", json!({}));
    assert!(r.status < 300, "verify {ticket} on desk a: {}", r.text());
    let seen = poll(Duration::from_secs(30), || {
        // The verify is the ticket's first `status` event (intake's are `incident_*`).
        let lines = feed_b.lock().unwrap();
        lines
            .windows(2)
            .any(|w| w[0] == "event: status" && w[1].starts_with("data:") && w[1].contains(&ticket))
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "desk b's live feed shows the change made on desk a: {:?}\n{}",
        feed_b.lock().unwrap(),
        b.proc.log_tail()
    );

    // Desk a dies; desk b takes every incident alone and serves logins.
    a.proc.kill();
    let after = produce(&tx, 16);
    check_reports(&db, &after, "desk a killed");
    check_statuses(&db, &sub, "desk a killed");
    let h = login(&b, "operator");
    assert_eq!(h.get("/api/me").status, 200);

    // A rolling restart while incidents flow: desk a comes back (its persistent session hands
    // it what it missed, all applied already), then b and a are each stopped and started again.
    let a = start_desk(&cfg_a, &db_url, "a");
    let flow = {
        let tx = tx.clone();
        std::thread::spawn(move || produce(&tx, 40))
    };
    let mut b = b;
    b.proc.terminate(Duration::from_secs(10));
    let b = start_desk(&cfg_b, &db_url, "b");
    let mut a = a;
    a.proc.terminate(Duration::from_secs(10));
    let a = start_desk(&cfg_a, &db_url, "a");
    let rolled = flow.join().unwrap();
    check_reports(&db, &rolled, "rolling restart");
    check_statuses(&db, &sub, "rolling restart");
    for (name, d) in [("a", &a), ("b", &b)] {
        assert!(
            !d.proc.log().contains("incident not stored"),
            "desk {name} failed to store an incident:\n{}",
            d.proc.log_tail()
        );
    }
    drain_and_stop(&rt, &registry, sub, svc);
    drop((a, b));
    drop(pg);
}

/// Desk kills per run of the NATS test: 1, or `SIMPANG_DESK_KILLS` for a drill
/// (scripts/failover-drill.sh runs 10).
fn desk_kills() -> usize {
    std::env::var("SIMPANG_DESK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// True when the database holds any of `events` (incident id, seq): its report is at that seq
/// or past it.
fn stored_any(db: &Db, events: &[(String, i64)]) -> bool {
    let reports = db.reports();
    events
        .iter()
        .any(|(id, seq)| reports.get(id).is_some_and(|(_, s, _)| s >= seq))
}

/// The two desks of the test above, on a three-node NATS cluster instead of one Mosquitto (each
/// desk, the producer and a viewer given the nodes' URLs): while incidents flow, one desk and
/// then the other is killed (SIGKILL) and started again; the survivor takes every incident and
/// serves logins, every incident is one report with each step applied once, and every status
/// message is published once. Prints what the cluster's processes cost in CPU while incidents
/// flow, and the time from each kill to the first incident made after it being stored.
#[test]
fn two_desks_on_the_nats_cluster_take_every_incident_while_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pg = Pg::required();
    let db_url = pg.url();
    let cfg_path = dir.path().join("simpang.toml");
    std::fs::write(
        &cfg_path,
        producer::config(dir.path(), CLIENT_ID, &SITE_IDS, ""),
    )
    .unwrap();
    let creds = producer::credentials(&cfg_path, &dir.path().join("mqtt"));
    let nats = NatsCluster::start(3, Some(&creds.join("nats-users.conf")));
    let urls = nats.urls();
    let c = Credentials::load(&creds.join("credentials.toml")).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The viewer on the node no desk kill touches (desks are killed, nodes are not).
    let sub = {
        let _g = rt.enter();
        Subscriber::start(
            nats.mqtt_ports[2],
            "desks-viewer",
            true,
            Some(("viewer", c.password("viewer").unwrap())),
        )
    };
    assert!(
        rt.block_on(sub.wait_subscribed(WAIT)),
        "the viewer subscribes"
    );

    let brokers = format!("brokers = {urls:?}");
    let cfgs = [
        desk_config(&dir.path().join("desk-a"), &brokers, &creds),
        desk_config(&dir.path().join("desk-b"), &brokers, &creds),
    ];
    let names = ["a", "b"];
    let mut desks = [
        start_desk(&cfgs[0], &db_url, names[0]),
        start_desk(&cfgs[1], &db_url, names[1]),
    ];
    add_user(&cfgs[0], &db_url, "operator", "operator");

    let mqtt = format!(
        "brokers = {urls:?}\ncredentials_file = {:?}\n",
        creds.join("credentials.toml")
    );
    let (svc, registry) = start_producer(&rt, dir.path(), &cfg_path, &mqtt);
    let tx = svc.sender();
    let db = Db::open(&db_url);

    // Steady flow, both desks up: what each process of the cluster costs (CPU from /proc).
    let mut procs: Vec<(String, u32)> = nats
        .pids()
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (format!("nats n{}", i + 1), p)))
        .collect();
    procs.extend(
        names
            .iter()
            .zip(&desks)
            .map(|(n, d)| (format!("desk {n}"), d.proc.id())),
    );
    let cpu = || -> Vec<Option<f64>> {
        procs
            .iter()
            .map(|(_, p)| simpang::procfs::cpu_seconds(Some(*p)))
            .collect()
    };
    let (cpu_before, t) = (cpu(), std::time::Instant::now());
    let produced = produce(&tx, 100);
    let (cpu_after, wall) = (cpu(), t.elapsed().as_secs_f64());
    let shares: Vec<String> = procs
        .iter()
        .zip(cpu_before.iter().zip(&cpu_after))
        .map(|((name, _), (a, b))| match (a, b) {
            (Some(a), Some(b)) => format!("{name} {:.1} %", (b - a) / wall * 100.0),
            _ => format!("{name} -"),
        })
        .collect();
    println!(
        "failover cpu: {} incident messages in {wall:.1} s ({:.0}/s, 2 desks, 3 nodes; load {:.2}): {} of one core",
        produced.values().map(|(s, _)| *s).sum::<i64>(),
        produced.values().map(|(s, _)| *s).sum::<i64>() as f64 / wall,
        simpang::procfs::load_1m().unwrap_or(f64::NAN),
        shares.join(", ")
    );
    check_reports(&db, &produced, "both desks on the cluster");

    // Each desk in turn is killed while incidents flow, and started again.
    let mut rounds = producer::Rounds::new(&SITE_IDS);
    let mut times = Vec::new();
    for k in 0..desk_kills() {
        let (victim, survivor) = if k % 2 == 0 { (0, 1) } else { (1, 0) };
        for _ in 0..5 {
            rounds.next(&tx, None);
            std::thread::sleep(Duration::from_millis(100));
        }
        desks[victim].proc.kill();
        let killed_at = std::time::Instant::now();
        let was = rounds.produced.clone();
        rounds.next(&tx, None);
        let first_after: Vec<(String, i64)> = rounds
            .produced
            .iter()
            .filter(|(id, v)| was.get(*id) != Some(*v))
            .map(|(id, (seq, _))| (id.clone(), *seq))
            .collect();
        let mut stored = None;
        for _ in 0..30 {
            let next = std::time::Instant::now() + Duration::from_millis(100);
            while std::time::Instant::now() < next {
                if stored.is_none() && stored_any(&db, &first_after) {
                    stored = Some(killed_at.elapsed());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            rounds.next(&tx, None);
        }
        let stored = stored.or_else(|| {
            poll(WAIT, || {
                stored_any(&db, &first_after).then(|| killed_at.elapsed())
            })
        });
        assert!(
            stored.is_some(),
            "desk kill {}: desk {} stores incidents alone:\n{}",
            k + 1,
            names[survivor],
            desks[survivor].proc.log_tail()
        );
        let h = login(&desks[survivor], "operator");
        assert_eq!(
            h.get("/api/me").status,
            200,
            "desk kill {}: desk {} serves logins",
            k + 1,
            names[survivor]
        );
        check_reports(&db, &rounds.produced, &format!("desk kill {}", k + 1));
        assert!(
            !desks[survivor].proc.log().contains("incident not stored"),
            "desk {} failed to store an incident:\n{}",
            names[survivor],
            desks[survivor].proc.log_tail()
        );
        println!(
            "desk kill {}: desk {} killed; desk {} stored the first incident made after the kill in {:.2} s",
            k + 1,
            names[victim],
            names[survivor],
            stored.unwrap_or_default().as_secs_f64()
        );
        times.extend(stored);
        // Back on its persistent session: what it missed arrives, all applied already.
        desks[victim] = start_desk(&cfgs[victim], &db_url, names[victim]);
    }
    println!(
        "failover: the other desk stores a new incident, a desk killed: {}",
        support::trace::describe(&times)
    );
    check_statuses(&db, &sub, "after the desk kills");
    drain_and_stop(&rt, &registry, sub, svc);
    drop(desks);
    drop(pg);
}
