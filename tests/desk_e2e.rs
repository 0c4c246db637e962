//! End to end through a real Mosquitto broker: camera incidents become reports with their
//! snapshots, updates change the same report, the workflow runs to green, every step is in the
//! audit log, and each status change goes out on MQTT.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use simpang::desk::Role;
use simpang::model::{IncidentEvent, IncidentKind};
use support::desk::{incident, jpeg, to_bytes, Http, Kind, Opts, TestDesk};
use support::mosquitto::Mosquitto;
use support::ports;
use support::wait::poll;

const WAIT: Duration = Duration::from_secs(20);

fn desk_on(broker: &Mosquitto) -> TestDesk {
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(broker.url()),
            ..Default::default()
        },
    );
    t.user("operator", Role::Operator, None);
    t.user("dishub1", Role::Agency, Some("dishub"));
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "the desk subscribes to incidents"
    );
    t
}

fn cctv_reports(op: &Http) -> Vec<Value> {
    op.get("/api/reports?source=cctv").json()["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn report(op: &Http, ticket: &str) -> Value {
    let r = op.get(&format!("/api/reports/{ticket}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn snapshots(op: &Http, v: &Value) -> Vec<Vec<u8>> {
    v["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "snapshot")
        .map(|a| {
            let r = op.get(a["url"].as_str().unwrap());
            assert_eq!(r.header("content-type"), Some("image/jpeg"));
            r.body
        })
        .collect()
}

#[test]
fn camera_incident_runs_through_the_workflow_to_green() {
    let broker = Mosquitto::start();
    let status = broker.subscribe("simpang/v1/desk/reports/+/status");
    let t = desk_on(&broker);
    let op = t.login("operator");
    let topic = "simpang/v1/sites/ampera/incidents";
    let id = "ampera-lajur-traffic_jam-20261123T170000";
    let (a, b, c) = (jpeg(320, 180, 1), jpeg(320, 180, 2), jpeg(320, 180, 3));
    let msg = |seq, ev, level, snap: Option<&[u8]>| {
        to_bytes(&incident(
            id,
            seq,
            ev,
            "ampera",
            IncidentKind::TrafficJam,
            level,
            snap,
        ))
    };

    // 1. `new` becomes a report with the snapshot, the site's address and coordinates.
    broker.publish(topic, &msg(1, IncidentEvent::New, "macet", Some(&a)));
    let ticket = poll(WAIT, || {
        cctv_reports(&op)
            .first()
            .map(|r| r["ticket"].as_str().unwrap().to_string())
    })
    .expect("the incident became a report");
    let v = report(&op, &ticket);
    assert_eq!(
        (
            v["source"].as_str(),
            v["status"].as_str(),
            v["colour"].as_str()
        ),
        (Some("cctv"), Some("received"), Some("red"))
    );
    assert_eq!(
        (v["category"].as_str(), v["title"].as_str()),
        (Some("traffic"), Some("Kemacetan di Jembatan Ampera"))
    );
    assert_eq!(
        v["address"],
        "Jembatan Ampera, Jl. Sultan Mahmud Badaruddin II, Palembang"
    );
    assert_eq!(
        (v["lat"].as_f64(), v["lon"].as_f64()),
        (Some(-2.9917), Some(104.7636))
    );
    assert_eq!(
        (
            v["incident"]["id"].as_str(),
            v["incident"]["level"].as_str(),
            v["incident"]["site"].as_str()
        ),
        (Some(id), Some("macet"), Some("ampera"))
    );
    assert_eq!(v["incident"]["evidence"]["vehicle_count"], 11);
    assert_eq!(
        snapshots(&op, &v),
        vec![a.clone()],
        "the stored snapshot is the published JPEG"
    );

    // 2. A redelivered `new` and an `update` change the same report: no second one.
    broker.publish(topic, &msg(1, IncidentEvent::New, "macet", Some(&a)));
    broker.publish(topic, &msg(2, IncidentEvent::Update, "padat", Some(&b)));
    poll(WAIT, || {
        (report(&op, &ticket)["incident"]["seq"] == 2).then_some(())
    })
    .expect("update applied");
    // A stale retry (seq 1 again, other level) is ignored; seq 3 goes through.
    broker.publish(topic, &msg(1, IncidentEvent::Update, "lancar", None));
    broker.publish(topic, &msg(3, IncidentEvent::Update, "macet", Some(&c)));
    let v = poll(WAIT, || {
        Some(report(&op, &ticket)).filter(|v| v["incident"]["seq"] == 3)
    })
    .expect("seq 3 applied");
    assert_eq!(v["incident"]["level"], "macet");
    assert_eq!(v["incident"]["evidence"]["vehicle_count"], 13);
    assert_eq!(
        cctv_reports(&op).len(),
        1,
        "still one report for one incident"
    );
    assert_eq!(
        snapshots(&op, &v),
        vec![a.clone(), c.clone()],
        "first and latest snapshot kept"
    );

    // 3. A malformed message lands in the dead-letter table; the report is untouched.
    broker.publish(topic, b"{\"schema\":\"simpang.incident/1\",\"event\":");
    let dl = poll(WAIT, || {
        let items = op.get("/api/dead-letters").json()["items"]
            .as_array()
            .unwrap()
            .clone();
        items.first().cloned()
    })
    .expect("dead letter");
    assert_eq!(dl["topic"], topic);
    assert!(dl["reason"].as_str().unwrap().contains("malformed JSON"));

    // 4. The operator dispositions it; Dishub answers (yellow).
    let r = op.act(&ticket, "verify", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = op.act(
        &ticket,
        "disposition",
        json!({ "agency": "dishub", "note": "Kirim petugas ke ujung jembatan" }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let officer = t.login("dishub1");
    let v = officer
        .act(
            &ticket,
            "answer",
            json!({ "text": "Dua petugas Dishub mengatur arus di ujung jembatan sejak 17.20." }),
        )
        .json();
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("answered"), Some("yellow"))
    );
    // The officer sees the snapshot of their agency's report.
    assert_eq!(snapshots(&officer, &v).len(), 2);

    // 5. The camera reports the condition cleared.
    broker.publish(topic, &msg(4, IncidentEvent::End, "lancar", None));
    let v = poll(WAIT, || {
        Some(report(&op, &ticket)).filter(|v| v["incident"]["cleared_at"].is_string())
    })
    .expect("end applied");
    assert!(v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["body"].as_str().unwrap().contains("kembali normal")));
    assert_eq!(
        v["status"], "answered",
        "the camera clearing does not close the report by itself"
    );

    // 6. The operator confirms in place of a reporter: green.
    let v = op
        .act(
            &ticket,
            "confirm",
            json!({ "satisfied": true, "text": "Arus lancar terlihat di kamera." }),
        )
        .json();
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("done"), Some("green"))
    );

    // 7. The audit log holds every step, in order, with who did it.
    assert_eq!(
        t.audit_actions(&ticket),
        vec![
            "create",
            "incident_update",
            "incident_update",
            "verify",
            "disposition",
            "answer",
            "incident_end",
            "confirm_satisfied"
        ]
    );
    let audit = report(&op, &ticket)["audit"].as_array().unwrap().clone();
    let actors: Vec<&str> = audit
        .iter()
        .rev()
        .map(|a| a["actor"].as_str().unwrap())
        .collect();
    assert_eq!(
        actors,
        vec!["mqtt", "mqtt", "mqtt", "operator", "operator", "dishub1", "mqtt", "operator"]
    );
    let disposition = audit.iter().find(|a| a["action"] == "disposition").unwrap();
    assert_eq!(
        (
            disposition["before"]["status"].as_str(),
            disposition["after"]["status"].as_str()
        ),
        (Some("verified"), Some("dispositioned"))
    );
    assert_eq!(disposition["after"]["agency_id"], "dishub");

    // 8. Every status change went out on MQTT, in order, and the outbox is drained.
    let want = [
        ("received", "red"),
        ("verified", "red"),
        ("dispositioned", "red"),
        ("answered", "yellow"),
        ("done", "green"),
    ];
    let got = poll(WAIT, || {
        let seen: Vec<(String, String)> = status
            .messages()
            .into_iter()
            .filter(|(topic, _)| topic == &format!("simpang/v1/desk/reports/{ticket}/status"))
            .map(|(_, v)| {
                (
                    v["status"].as_str().unwrap().to_string(),
                    v["colour"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (seen.len() >= want.len()).then_some(seen)
    })
    .expect("status messages");
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, c)| (s.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    // The subscriber can have a status before the desk has the broker's PUBACK for it.
    let pending = || -> i64 {
        t.block_on(async {
            sqlx::query_scalar("SELECT COUNT(*) FROM status_outbox WHERE published_at IS NULL")
                .fetch_one(t.desk.store().pool())
                .await
                .unwrap()
        })
    };
    assert!(
        poll(WAIT, || (pending() == 0).then_some(())).is_some(),
        "acknowledged messages are marked published: {} pending",
        pending()
    );
    // The dashboard's feed lists the camera report with its snapshot.
    let dash = op.get("/dashboard").text();
    assert!(dash.contains(&format!("data-ticket=\"{ticket}\"")) && dash.contains("/attachments/"));
}

#[test]
fn intake_and_status_publishing_survive_a_broker_restart() {
    let mut broker = Mosquitto::start();
    let t = desk_on(&broker);
    let op = t.login("operator");
    let topic = "simpang/v1/sites/bkb/incidents";
    broker.publish(
        topic,
        &to_bytes(&incident(
            "bkb-plaza-crowd-1",
            1,
            IncidentEvent::New,
            "bkb",
            IncidentKind::Crowd,
            "tinggi",
            Some(&jpeg(160, 90, 9)),
        )),
    );
    let first = poll(WAIT, || {
        cctv_reports(&op)
            .first()
            .map(|r| r["ticket"].as_str().unwrap().to_string())
    })
    .expect("first report");

    // The broker goes away: the desk keeps serving; a status change waits in the outbox.
    broker.kill();
    assert!(
        poll(WAIT, || (!t.desk.intake_subscribed()).then_some(())).is_some(),
        "the desk notices"
    );
    assert_eq!(
        op.act(&first, "disposition", json!({ "agency": "satpolpp" }))
            .status,
        200
    );
    assert_eq!(op.get("/api/me").status, 200);

    let published_at = || -> Option<i64> {
        t.block_on(async {
            let rows: Vec<(String, Option<i64>)> =
                sqlx::query_as("SELECT payload, published_at FROM status_outbox ORDER BY id")
                    .fetch_all(t.desk.store().pool())
                    .await
                    .unwrap();
            rows.into_iter()
                .find(|(p, _)| p.contains(&first) && p.contains("\"dispositioned\""))
                .and_then(|(_, at)| at)
        })
    };
    assert_eq!(published_at(), None, "queued while the broker is down");

    // It comes back on the same port: the desk reconnects by itself (with backoff).
    broker.restart();
    assert!(
        poll(Duration::from_secs(30), || t
            .desk
            .intake_subscribed()
            .then_some(()))
        .is_some(),
        "resubscribed"
    );
    broker.publish(
        topic,
        &to_bytes(&incident(
            "bkb-plaza-crowd-2",
            1,
            IncidentEvent::New,
            "bkb",
            IncidentKind::Crowd,
            "sedang",
            None,
        )),
    );
    let second = poll(WAIT, || {
        cctv_reports(&op)
            .into_iter()
            .map(|r| r["ticket"].as_str().unwrap().to_string())
            .find(|tk| tk != &first)
    });
    assert!(
        second.is_some(),
        "an incident after the restart became a report"
    );
    assert!(
        poll(WAIT, published_at).is_some(),
        "the status change made while the broker was down was acknowledged by it after it came back"
    );
}

/// Another broker implementation (rumqttd, in-process) behind an external-broker URL: the desk's
/// persistent, manually acknowledged session must work there too. (rumqttd's sample config caps
/// payloads at 20 KB; inline snapshots need more, so this broker allows 4 MiB.)
#[test]
fn works_with_the_embedded_rumqttd_broker() {
    // rumqttd takes a fixed address: a port from the tests' own range.
    let port = ports::port();
    let cfg: rumqttd::Config = toml::from_str(&format!(
        r#"
id = 0
[router]
id = 0
max_connections = 100
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 4194304
max_inflight_count = 100
dynamic_filters = true
"#
    ))
    .expect("rumqttd config");
    // The broker lives as long as the test process; it has no stop call.
    std::thread::spawn(move || {
        let _ = rumqttd::Broker::new(cfg).start();
    });
    assert!(
        poll(WAIT, || std::net::TcpStream::connect(("127.0.0.1", port))
            .ok())
        .is_some()
    );
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(format!("mqtt://127.0.0.1:{port}")),
            ..Default::default()
        },
    );
    t.user("operator", Role::Operator, None);
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "subscribed on rumqttd"
    );
    let op = t.login("operator");

    let mut opts = rumqttc::MqttOptions::new("desk-test-pub", "127.0.0.1", port);
    opts.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
    let (client, mut conn) = rumqttc::Client::new(opts, 10);
    let snap = jpeg(640, 360, 5);
    let m = incident(
        "ampera-emb-traffic_jam-1",
        1,
        IncidentEvent::New,
        "ampera",
        IncidentKind::TrafficJam,
        "macet",
        Some(&snap),
    );
    client
        .publish(
            "simpang/v1/sites/ampera/incidents",
            rumqttc::QoS::AtLeastOnce,
            false,
            to_bytes(&m),
        )
        .expect("publish");
    let acked = conn
        .iter()
        .take(20)
        .any(|ev| matches!(ev, Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))));
    assert!(acked, "rumqttd acknowledged the incident");
    let ticket = poll(WAIT, || {
        cctv_reports(&op)
            .first()
            .map(|r| r["ticket"].as_str().unwrap().to_string())
    })
    .expect("report from rumqttd");
    let v = report(&op, &ticket);
    assert_eq!(snapshots(&op, &v), vec![snap]);
    let drained = poll(WAIT, || {
        let pending: i64 = t.block_on(async {
            sqlx::query_scalar("SELECT COUNT(*) FROM status_outbox WHERE published_at IS NULL")
                .fetch_one(t.desk.store().pool())
                .await
                .unwrap()
        });
        (pending == 0).then_some(())
    });
    assert!(drained.is_some(), "status messages acknowledged by rumqttd");
}
