//! The incident service in-process, fed synthetic rule events, against real brokers on free
//! loopback ports (mosquitto, and the embedded rumqttd): every message a subscriber gets is
//! checked against the JSON Schemas, snapshots decode as JPEG, the lifecycle arrives complete.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::Registry;
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{
    BBox, CountsReport, DirCounts, Evidence, Image, IncidentEvent, IncidentKind, LineCounts,
    LineId, PixelFormat, RuleEvent, RulePhase, SiteId, SnapshotBox, TrafficLevel, ZoneId,
    ZoneTraffic,
};
use support::metrics::Metrics;
use support::mosquitto::{Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, Schemas, Subscriber};
use support::wait::poll_async;

const SITES: &str = r#"
[[sites]]
id = "charitas"
name = "Simpang Charitas"
address = "Jl. Jend. Sudirman, 20 Ilir D. I, Kec. Ilir Tim. I, Kota Palembang, Sumatera Selatan"
lat = -2.97610
lon = 104.75330
stream = "rtsp://127.0.0.1:1/charitas"

[[sites.zones]]
id = "sudirman"
name = "Jl. Jend. Sudirman (arah Km 5)"
kind = "traffic_jam"
polygon = [[0.05, 0.45], [0.6, 0.4], [0.95, 0.95], [0.05, 0.95]]

[[sites.zones]]
id = "halte"
name = "Halte Charitas"
kind = "crowd"
polygon = [[0.6, 0.2], [0.95, 0.2], [0.95, 0.5], [0.6, 0.5]]

[[sites]]
id = "bkb"
name = "Benteng Kuto Besak (BKB)"
address = "Jl. Sultan Mahmud Badaruddin, 19 Ilir, Kota Palembang"
lat = -2.99245
lon = 104.75930
stream = "rtsp://127.0.0.1:1/bkb"
"#;

fn config(dir: &Path, mqtt: &str, incidents: &str) -> Config {
    let text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n[mqtt]\n{mqtt}\n[incidents]\n{incidents}\n{SITES}",
        dir.join("data")
    );
    let path = dir.join("simpang.toml");
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).unwrap()
}

/// A 640x360 I420 picture with some structure (so the JPEG is not trivially small).
fn frame() -> Arc<Image> {
    let mut img = Image::with_format(640, 360, PixelFormat::I420);
    for y in 0..360usize {
        for x in 0..640usize {
            img.data[y * 640 + x] = ((x / 8 + y / 8) % 2 * 120 + x * 100 / 640) as u8;
        }
    }
    Arc::new(img)
}

fn event(
    site: &str,
    zone: Option<&str>,
    kind: IncidentKind,
    phase: RulePhase,
    level: &str,
    started_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> RuleEvent {
    RuleEvent {
        site: SiteId::new(site),
        zone: zone.map(ZoneId::new),
        kind,
        phase,
        level: level.parse().unwrap(),
        started_at,
        at,
        evidence: Evidence {
            vehicle_count: Some(21),
            median_speed_kmh: Some(4.5),
            occupancy: Some(0.62),
            dwell_s: Some((at - started_at).num_milliseconds() as f32 / 1000.0),
            ..Default::default()
        },
        frame: Some(frame()),
        boxes: vec![
            SnapshotBox {
                bbox: BBox::new(0.2, 0.5, 0.35, 0.7),
                label: "car".into(),
            },
            SnapshotBox {
                bbox: BBox::new(0.4, 0.55, 0.5, 0.8),
                label: "motorcycle".into(),
            },
        ],
    }
}

fn secs(s: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((s * 1000.0) as i64)
}

/// `name{site=SITE}` in the registry (0 while there is no such series).
fn metric(r: &Registry, name: &str, site: &str) -> f64 {
    Metrics::of(r).sum(name, &[("site", site)]).unwrap_or(0.0)
}

fn hub_for(cfg: &Config) -> Arc<Hub> {
    let hub = Hub::new(cfg.sites.iter().map(|s| SiteId::new(&s.id)));
    // Cameras "online", so the offline watcher stays out of these tests.
    for s in hub.sites() {
        s.update_status(|st| st.online = true);
    }
    hub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_reaches_a_subscriber_valid_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_with(&MosquittoOpts::default());
    let port = broker.port;
    let sub = Subscriber::start(port, "test-sub", true, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);

    let cfg = config(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"flow\""),
        "update_interval_s = 10.0",
    );
    let hub = hub_for(&cfg);
    let mut feed = hub.incidents.subscribe();
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub.clone(), &registry)
        .await
        .expect("service starts");
    let tx = svc.sender();

    let t0 = Utc::now() - secs(120.0);
    let jam = |phase, level: &str, at: f64| {
        event(
            "charitas",
            Some("sudirman"),
            IncidentKind::TrafficJam,
            phase,
            level,
            t0,
            t0 + secs(at),
        )
    };
    // new; update with a level change (bypasses the rate limit); an update 2 s later at the
    // same level (rate-limited away); one 12 s later (due); end.
    tx.rule_event(jam(RulePhase::Start, "padat", 0.0));
    tx.rule_event(jam(RulePhase::Update, "macet", 1.0));
    tx.rule_event(jam(RulePhase::Update, "macet", 3.0));
    tx.rule_event(jam(RulePhase::Update, "macet", 12.0));
    tx.rule_event(jam(RulePhase::End, "macet", 30.0));
    let crowd_start = t0 + secs(5.0);
    tx.rule_event(event(
        "charitas",
        Some("halte"),
        IncidentKind::Crowd,
        RulePhase::Start,
        "tinggi",
        crowd_start,
        crowd_start,
    ));
    let mut crowd_end = event(
        "charitas",
        Some("halte"),
        IncidentKind::Crowd,
        RulePhase::End,
        "tinggi",
        crowd_start,
        crowd_start + secs(40.0),
    );
    crowd_end.frame = None;
    tx.rule_event(crowd_end);
    let mut by_class = std::collections::BTreeMap::new();
    by_class.insert(
        "car".to_string(),
        DirCounts {
            in_count: 12,
            out_count: 9,
        },
    );
    by_class.insert(
        "motorcycle".to_string(),
        DirCounts {
            in_count: 40,
            out_count: 37,
        },
    );
    tx.counts(CountsReport {
        site: SiteId::new("charitas"),
        interval_s: 60,
        start: t0,
        end: t0 + secs(60.0),
        lines: vec![LineCounts {
            line: LineId::new("garis-sudirman"),
            name: "Garis Sudirman".into(),
            in_name: "ke utara".into(),
            out_name: "ke selatan".into(),
            by_class,
        }],
        zones: vec![ZoneTraffic {
            zone: ZoneId::new("sudirman"),
            name: "Jl. Jend. Sudirman".into(),
            level: TrafficLevel::Macet,
            degree_of_saturation: 0.93,
            mean_vehicles: 17.5,
            median_speed_kmh: Some(6.0),
        }],
    });

    let got = sub
        .wait_for(Duration::from_secs(30), |m| {
            m.iter().filter(|r| r.topic.ends_with("/incidents")).count() >= 6
                && m.iter().any(|r| r.topic.ends_with("/counts"))
        })
        .await;
    let msgs = sub.messages();
    assert!(
        got,
        "not everything arrived: {:#?}",
        msgs.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    let schemas = Schemas::load();
    let report = analyse(&msgs, &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);

    let jam_id = incident_id("charitas", Some("sudirman"), IncidentKind::TrafficJam, t0);
    let crowd_id = incident_id("charitas", Some("halte"), IncidentKind::Crowd, crowd_start);
    let events = |id: &str| -> Vec<(IncidentEvent, u32, String)> {
        report.incidents[id]
            .iter()
            .map(|m| (m.event, m.incident.seq, m.incident.level.to_string()))
            .collect()
    };
    use IncidentEvent::*;
    assert_eq!(
        events(&jam_id),
        vec![
            (New, 1, "padat".into()),
            (Update, 2, "macet".into()),
            (Update, 3, "macet".into()),
            (End, 4, "macet".into())
        ]
    );
    assert_eq!(
        events(&crowd_id),
        vec![(New, 1, "tinggi".into()), (End, 2, "tinggi".into())]
    );
    assert_eq!(report.incidents.len(), 2);
    assert!(report.complete(1).contains(&jam_id));

    let jam_msgs = &report.incidents[&jam_id];
    let first = &jam_msgs[0].incident;
    assert_eq!(first.title, "Kemacetan di Simpang Charitas");
    assert_eq!(
        first.zone_name.as_deref(),
        Some("Jl. Jend. Sudirman (arah Km 5)")
    );
    assert_eq!((first.lat, first.lon), (-2.97610, 104.75330));
    assert!(first.started_at.to_rfc3339().ends_with("+07:00"));
    assert_eq!(first.evidence.vehicle_count, Some(21));
    assert!(
        first.description.contains("21 kendaraan"),
        "{}",
        first.description
    );
    assert_eq!(
        jam_msgs[3].incident.ended_at.map(|t| t.to_utc()),
        Some(chrono::SubsecRound::trunc_subsecs(t0 + secs(30.0), 3))
    );
    // Every message built from a frame carries a snapshot that decodes, stored on disk too.
    assert_eq!(
        report.snapshots_checked, 5,
        "4 jam messages + the crowd's new"
    );
    for m in jam_msgs {
        let s = m.incident.snapshot.as_ref().expect("snapshot");
        let on_disk = std::fs::read(cfg.data_dir().join(&s.path)).expect("snapshot file");
        assert!(on_disk.len() > 1000 && on_disk.starts_with(&[0xFF, 0xD8]));
    }
    assert!(report.incidents[&crowd_id][1].incident.snapshot.is_none());
    // Counts and the retained status.
    assert_eq!(report.counts.len(), 1);
    assert_eq!(
        report.counts[0].lines[0].by_class["motorcycle"].in_count,
        40
    );
    let st = report.last_status("charitas").expect("status of charitas");
    assert_eq!(st.state, simpang::incident::message::SiteState::Online);
    assert_eq!(st.client_id, "flow-charitas");
    assert!(st.camera_health.as_ref().is_some_and(|h| h.online));
    assert!(report.last_status("bkb").is_some(), "one status per site");
    // The wall's feed got the same incident messages.
    let mut fed = Vec::new();
    while let Ok(m) = feed.try_recv() {
        fed.push((m.incident.id.clone(), m.event, m.incident.seq));
    }
    assert_eq!(fed.len(), 6);
    assert!(report.keys().iter().all(|k| fed.contains(k)));

    assert!(poll_async(Duration::from_secs(10), || metric(
        &registry,
        "simpang_outbox_pending",
        "charitas"
    ) == 0.0)
    .await
    .is_some());
    assert_eq!(metric(&registry, "simpang_mqtt_connected", "charitas"), 1.0);

    // A clean stop marks every site offline (retained), with no will on top.
    let before = sub.messages().len();
    svc.stop().await;
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| {
            let r = analyse(&m[before..], &schemas);
            ["charitas", "bkb"].iter().all(|s| {
                r.last_status(s).is_some_and(|st| {
                    st.state == simpang::incident::message::SiteState::Offline
                        && st.reason == simpang::incident::message::StatusReason::Shutdown
                })
            })
        })
        .await,
        "offline status after stop"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = analyse(&sub.messages()[before..], &schemas);
    assert!(after.errors.is_empty(), "{:#?}", after.errors);
    assert_eq!(
        after.statuses.len(),
        2,
        "exactly one offline status per site, no will"
    );
    sub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_delivers_incidents_and_retained_status() {
    let dir = tempfile::tempdir().unwrap();
    // The managed broker takes a fixed address: a port from the tests' own range.
    let port = support::ports::port();
    let cfg = config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"emb\""
        ),
        "",
    );
    let hub = hub_for(&cfg);
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub, &registry)
        .await
        .expect("service starts");
    // The status was published before anyone subscribed: it must come back retained.
    assert!(poll_async(Duration::from_secs(20), || metric(
        &registry,
        "simpang_mqtt_connected",
        "bkb"
    ) == 1.0)
    .await
    .is_some());
    // Once a first subscriber has seen both statuses, the broker holds them: a later one must
    // get them retained.
    let schemas = Schemas::load();
    let probe = Subscriber::viewer(port, "emb-probe", &cfg.data_dir());
    assert!(probe.wait_subscribed(Duration::from_secs(60)).await);
    assert!(
        probe
            .wait_for(Duration::from_secs(60), |m| {
                let r = analyse(m, &schemas);
                r.last_status("bkb").is_some() && r.last_status("charitas").is_some()
            })
            .await,
        "the status of both sites reached the embedded broker"
    );
    probe.stop().await;
    let sub = Subscriber::viewer(port, "emb-sub", &cfg.data_dir());
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| {
            let r = analyse(m, &schemas);
            m.iter().any(|x| x.retain)
                && r.last_status("bkb").is_some()
                && r.last_status("charitas").is_some()
        })
        .await,
        "retained status from the embedded broker"
    );
    let start = Utc::now();
    svc.sender().rule_event(event(
        "bkb",
        None,
        IncidentKind::CameraTamper,
        RulePhase::Start,
        "tinggi",
        start,
        start,
    ));
    assert!(
        sub.wait_for(Duration::from_secs(20), |m| m
            .iter()
            .any(|r| r.topic == "simpang/v1/sites/bkb/incidents"))
            .await
    );
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let id = incident_id("bkb", None, IncidentKind::CameraTamper, start);
    let m = &report.incidents[&id][0];
    assert_eq!(
        m.incident.title,
        "Kamera Benteng Kuto Besak (BKB) terhalang/dirusak"
    );
    assert!(m.incident.zone.is_none());
    assert_eq!(report.snapshots_checked, 1);
    sub.stop().await;
    svc.stop().await;
}

/// Publish latency (rule event -> message at a subscriber, which mosquitto sends as it acks)
/// and the service's own histogram (rule event -> PUBACK). Prints the numbers; fails when a
/// message waits for something other than the broker, such as the first keep-alive tick (60 s
/// here), which no load on the machine explains. How low the latency is on a given machine is
/// `simpang bench`'s figure (its `publish_incident` row: rule event -> PUBACK), not a test's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_latency_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start_with(&MosquittoOpts::default());
    let port = broker.port;
    let sub = Subscriber::start(port, "lat-sub", true, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    // keep_alive 60 s: a message stuck until the next ping would show as a huge latency.
    const KEEP_ALIVE_S: f64 = 60.0;
    let cfg = config(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{port}\"\nkeep_alive_s = {KEEP_ALIVE_S}"),
        "",
    );
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub_for(&cfg), &registry)
        .await
        .unwrap();
    assert!(poll_async(Duration::from_secs(20), || metric(
        &registry,
        "simpang_mqtt_connected",
        "charitas"
    ) == 1.0)
    .await
    .is_some());
    let tx = svc.sender();
    let n = 60;
    let mut sent = std::collections::HashMap::new();
    for i in 0..n {
        let start = Utc::now() + secs(i as f64);
        let id = incident_id(
            "charitas",
            Some("sudirman"),
            IncidentKind::TrafficJam,
            start,
        );
        sent.insert(id, Instant::now());
        tx.rule_event(event(
            "charitas",
            Some("sudirman"),
            IncidentKind::TrafficJam,
            RulePhase::Start,
            "macet",
            start,
            start,
        ));
        // Let the link go idle between events: the case where a message could wait.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| m
            .iter()
            .filter(|r| r.topic.ends_with("/incidents"))
            .count()
            >= 2 * n - 1)
            .await
    );
    let schemas = Schemas::load();
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let msgs = sub.messages();
    let mut lat: Vec<f64> = Vec::new();
    for r in msgs.iter().filter(|r| r.topic.ends_with("/incidents")) {
        let m: simpang::model::IncidentMessage = serde_json::from_slice(&r.payload).unwrap();
        if m.event == IncidentEvent::New {
            lat.push((r.at - sent[&m.incident.id]).as_secs_f64() * 1000.0);
        }
    }
    assert_eq!(lat.len(), n);
    lat.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    let hist = Metrics::of(&registry);
    let acked = |part: &str| {
        hist.get(
            &format!("simpang_publish_latency_seconds_{part}"),
            &[("kind", "incident")],
        )
        .expect("latency histogram")
    };
    let mean_ack_ms = acked("sum") / acked("count") * 1000.0;
    println!(
        "publish latency, rule event -> subscriber, {n} new incidents with 640x360 snapshots: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms; rule event -> PUBACK mean {:.1} ms over {} messages",
        p(0.5),
        p(0.95),
        p(1.0),
        mean_ack_ms,
        acked("count")
    );
    // Sent within 6 s of connecting on an otherwise idle link: messages held until the first
    // keep-alive tick (60 s after connecting) would arrive 54-60 s late.
    assert!(
        p(0.95) < KEEP_ALIVE_S * 1000.0 / 2.0,
        "p95 {:.0} ms: messages waited for something other than the broker (keep-alive {KEEP_ALIVE_S} s)",
        p(0.95)
    );
    svc.stop().await;
    sub.stop().await;
}

/// With the broker down, a backlog builds in the outbox; when it comes up the backlog drains
/// complete and in order. Prints insert and drain rates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_drains_in_order_when_the_broker_appears() {
    let dir = tempfile::tempdir().unwrap();
    // A persistent subscriber session first, so the broker queues everything for the
    // subscriber from the moment it comes back, whoever connects first then.
    let persist = MosquittoOpts {
        persistence: true,
        ..Default::default()
    };
    let mut broker = Mosquitto::start_with(&persist);
    let port = broker.port;
    let sub = Subscriber::start(port, "drain-sub", false, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    sub.stop().await;
    broker.stop();

    let cfg = config(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{port}\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 0.5"),
        "",
    );
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub_for(&cfg), &registry)
        .await
        .unwrap();
    let tx = svc.sender();
    let n = 400;
    let t0 = Utc::now();
    let started = Instant::now();
    for i in 0..n {
        tx.counts(CountsReport {
            site: SiteId::new(if i % 2 == 0 { "charitas" } else { "bkb" }),
            interval_s: 60,
            start: t0 + secs(60.0 * i as f64),
            end: t0 + secs(60.0 * (i + 1) as f64),
            lines: vec![],
            zones: vec![],
        });
    }
    let pending = |r: &Registry| {
        metric(r, "simpang_outbox_pending", "charitas") + metric(r, "simpang_outbox_pending", "bkb")
    };
    assert!(
        poll_async(Duration::from_secs(120), || pending(&registry) >= n as f64)
            .await
            .is_some()
    );
    let insert_rate = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(metric(&registry, "simpang_mqtt_connected", "charitas"), 0.0);

    broker.restart();
    let drain_start = Instant::now();
    let sub = Subscriber::start(port, "drain-sub", false, None);
    assert!(
        poll_async(Duration::from_secs(120), || pending(&registry) == 0.0)
            .await
            .is_some(),
        "backlog drained"
    );
    let drain_rate = n as f64 / drain_start.elapsed().as_secs_f64();
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| m
            .iter()
            .filter(|r| r.topic.ends_with("/counts"))
            .count()
            >= n)
            .await,
        "subscriber got {} counts messages of {n}",
        sub.messages()
            .iter()
            .filter(|r| r.topic.ends_with("/counts"))
            .count()
    );
    let schemas = Schemas::load();
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(report.counts.len(), n);
    for site in ["charitas", "bkb"] {
        let ends: Vec<_> = report
            .counts
            .iter()
            .filter(|c| c.site == site)
            .map(|c| c.end)
            .collect();
        assert_eq!(ends.len(), n / 2);
        assert!(
            ends.windows(2).all(|w| w[0] < w[1]),
            "{site} drained out of order"
        );
    }
    println!(
        "outbox: {n} counts messages stored at {insert_rate:.0}/s (fsync'd); drained to the broker at {drain_rate:.0}/s, all {n} in order"
    );
    svc.stop().await;
    sub.stop().await;
}
