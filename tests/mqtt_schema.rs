//! The documented examples (docs/mqtt-examples/*.json, shown in docs/mqtt.md) are real
//! messages: this test captures them again from real brokers, checks they have exactly the
//! same shape as the committed files, validates both against the JSON Schemas and the Rust
//! types, and shows the schemas reject broken messages.
//!
//! `SIMPANG_WRITE_MQTT_EXAMPLES=1 cargo test --test mqtt_schema` rewrites the example files
//! from the capture.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::Registry;
use serde_json::Value;
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::message::{CountsMessage, SiteState, StatusMessage, StatusReason};
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{
    BBox, CountsReport, DirCounts, Evidence, Image, IncidentEvent, IncidentKind, IncidentMessage,
    LineCounts, LineId, PixelFormat, RuleEvent, RulePhase, SiteId, SnapshotBox, TrafficLevel,
    ZoneId, ZoneTraffic,
};
use support::mosquitto::Mosquitto;
use support::mqtt::{analyse, check_snapshot, Schemas, Subscriber};
use support::simpang::{run_config, Run};

fn examples_dir() -> PathBuf {
    support::root().join("docs/mqtt-examples")
}

fn schema_for(name: &str) -> &'static str {
    if name.starts_with("incident") {
        "simpang/v1/sites/x/incidents"
    } else if name.starts_with("status") {
        "simpang/v1/sites/x/status"
    } else {
        "simpang/v1/sites/x/counts"
    }
}

fn committed() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(examples_dir()).expect("docs/mqtt-examples exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.insert(name, v);
        }
    }
    out
}

const NAMES: [&str; 8] = [
    "incident-new",
    "incident-update",
    "incident-end",
    "incident-camera-offline",
    "status-online",
    "status-shutdown",
    "status-will",
    "counts",
];

#[test]
fn documented_examples_are_valid_and_typed() {
    let schemas = Schemas::load();
    let ex = committed();
    let doc = std::fs::read_to_string(support::root().join("docs/mqtt.md")).expect("docs/mqtt.md");
    for name in NAMES {
        let v = ex
            .get(name)
            .unwrap_or_else(|| panic!("docs/mqtt-examples/{name}.json missing"));
        // docs/mqtt.md shows these very files (its copies carry the same times).
        let stamp = [&v["incident"]["updated_at"], &v["at"], &v["end"]]
            .into_iter()
            .find_map(|x| x.as_str())
            .unwrap_or_else(|| panic!("{name}: no time"));
        assert!(
            doc.contains(&format!("{stamp:?}")),
            "docs/mqtt.md does not show docs/mqtt-examples/{name}.json"
        );
        let bytes = serde_json::to_vec(v).unwrap();
        schemas
            .check(schema_for(name), &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The consumers' Rust types read them (IncidentMessage denies unknown fields).
        if name.starts_with("incident") {
            let m: IncidentMessage = serde_json::from_value(v.clone()).unwrap();
            if let Some(s) = &m.incident.snapshot {
                check_snapshot(s).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        } else if name.starts_with("status") {
            serde_json::from_value::<StatusMessage>(v.clone()).unwrap();
        } else {
            serde_json::from_value::<CountsMessage>(v.clone()).unwrap();
        }
    }
}

/// The committed files are what the Rust types write, byte for byte: typed levels and kinds
/// serialise to the documented words, fields in the order they are sent.
#[test]
fn examples_are_what_the_types_write() {
    for name in NAMES {
        let path = examples_dir().join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let again = if name.starts_with("incident") {
            serde_json::to_string_pretty(&serde_json::from_str::<IncidentMessage>(&text).unwrap())
        } else if name.starts_with("status") {
            serde_json::to_string_pretty(&serde_json::from_str::<StatusMessage>(&text).unwrap())
        } else {
            serde_json::to_string_pretty(&serde_json::from_str::<CountsMessage>(&text).unwrap())
        }
        .unwrap()
            + "\n";
        assert!(again == text, "{name}: the types write\n{again}");
    }
}

#[test]
fn schemas_reject_broken_messages() {
    let schemas = Schemas::load();
    let ex = committed();
    type Mutation = fn(&mut Value);
    let cases: Vec<(&str, &str, Mutation)> = vec![
        ("incident-new", "no id", |v| {
            v["incident"].as_object_mut().unwrap().remove("id");
        }),
        ("incident-new", "seq 0", |v| v["incident"]["seq"] = 0.into()),
        ("incident-new", "new with seq 2", |v| {
            v["incident"]["seq"] = 2.into()
        }),
        ("incident-new", "unknown event", |v| {
            v["event"] = "opened".into()
        }),
        ("incident-new", "unknown kind", |v| {
            v["incident"]["kind"] = "fire".into()
        }),
        ("incident-new", "unknown level", |v| {
            v["incident"]["level"] = "parah".into()
        }),
        ("incident-new", "ended_at on new", |v| {
            v["incident"]["ended_at"] = v["incident"]["started_at"].clone()
        }),
        ("incident-end", "end without ended_at", |v| {
            v["incident"].as_object_mut().unwrap().remove("ended_at");
        }),
        ("incident-new", "UTC instead of local time", |v| {
            v["incident"]["started_at"] = "2026-11-23T10:00:00Z".into()
        }),
        ("incident-new", "extra field", |v| {
            v["incident"]["colour"] = "red".into()
        }),
        ("incident-new", "latitude out of range", |v| {
            v["incident"]["lat"] = 100.0.into()
        }),
        ("incident-new", "zone without name", |v| {
            v["incident"].as_object_mut().unwrap().remove("zone_name");
        }),
        ("incident-new", "bad sha256", |v| {
            v["incident"]["snapshot"]["sha256"] = "xyz".into()
        }),
        ("incident-new", "negative count", |v| {
            v["incident"]["evidence"]["vehicle_count"] = (-1).into()
        }),
        ("incident-new", "wrong schema tag", |v| {
            v["schema"] = "simpang.incident/2".into()
        }),
        ("status-online", "online but shutting down", |v| {
            v["reason"] = "shutdown".into()
        }),
        ("status-will", "will with camera health", |v| {
            v["camera_health"] =
                serde_json::json!({"online": true, "since": "2026-11-23T17:00:00+07:00"})
        }),
        ("counts", "negative crossing", |v| {
            v["lines"][0]["by_class"]["car"]["in"] = (-3).into()
        }),
        ("counts", "unknown level", |v| {
            v["zones"][0]["level"] = "parah".into()
        }),
    ];
    for (name, what, mutate) in cases {
        let mut v = ex[name].clone();
        assert!(
            schemas
                .check(schema_for(name), &serde_json::to_vec(&v).unwrap())
                .is_ok(),
            "{name} must be valid before the mutation"
        );
        mutate(&mut v);
        assert!(
            schemas
                .check(schema_for(name), &serde_json::to_vec(&v).unwrap())
                .is_err(),
            "{name}: {what} must be rejected"
        );
    }
}

/// Every object key path of a JSON value (array items as `[]`), for shape comparison.
fn shape(v: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                shape(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                shape(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn frame() -> Arc<Image> {
    let mut img = Image::with_format(640, 360, PixelFormat::I420);
    for y in 0..360usize {
        for x in 0..640usize {
            img.data[y * 640 + x] = (40 + (x * 150 / 640) + (y * 40 / 360)) as u8;
        }
    }
    Arc::new(img)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn examples_match_what_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start();
    let port = broker.port;
    let sub = Subscriber::start(port, "examples-sub", true, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    let schemas = Schemas::load();
    let mut captured: BTreeMap<String, Value> = BTreeMap::new();

    // Part 1, in-process: a traffic jam's new, update and end with snapshots, and counts.
    let text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:{port}\"\n\
         [incidents]\nsnapshot_width = 160\nsnapshot_quality = 60\n\
         [[sites]]\nid = \"charitas\"\nname = \"Simpang Charitas\"\n\
         address = \"Jl. Jend. Sudirman, 20 Ilir D. I, Kec. Ilir Tim. I, Kota Palembang, Sumatera Selatan\"\n\
         lat = -2.97610\nlon = 104.75330\nstream = \"rtsp://127.0.0.1:8554/charitas\"\n\
         [[sites.zones]]\nid = \"sudirman\"\nname = \"Jl. Jend. Sudirman (arah Km 5)\"\nkind = \"traffic_jam\"\n\
         polygon = [[0.05, 0.45], [0.6, 0.4], [0.95, 0.95], [0.05, 0.95]]\n",
        dir.path().join("data")
    );
    let cfg_path = dir.path().join("lib.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let cfg = Config::load(&cfg_path).unwrap();
    let hub = Hub::new([SiteId::new("charitas")]);
    hub.sites()[0].update_status(|s| s.online = true);
    let svc = IncidentService::start(&cfg, hub, &Registry::new())
        .await
        .unwrap();
    let t0 = Utc::now() - chrono::Duration::seconds(600);
    let jam = |phase, level: &str, at: i64, vehicles: u32, speed: f32| RuleEvent {
        site: SiteId::new("charitas"),
        zone: Some(ZoneId::new("sudirman")),
        kind: IncidentKind::TrafficJam,
        phase,
        level: level.parse().unwrap(),
        started_at: t0,
        at: t0 + chrono::Duration::seconds(at),
        evidence: Evidence {
            vehicle_count: Some(vehicles),
            occupancy: Some(0.71),
            degree_of_saturation: Some(0.94),
            median_speed_kmh: Some(speed),
            dwell_s: Some(at as f32 + 90.0),
            ..Default::default()
        },
        frame: Some(frame()),
        boxes: vec![
            SnapshotBox {
                bbox: BBox::new(0.2, 0.5, 0.35, 0.7),
                label: "car".into(),
            },
            SnapshotBox {
                bbox: BBox::new(0.45, 0.6, 0.55, 0.85),
                label: "motorcycle".into(),
            },
        ],
    };
    let tx = svc.sender();
    tx.rule_event(jam(RulePhase::Start, "padat", 0, 17, 9.5));
    tx.rule_event(jam(RulePhase::Update, "macet", 45, 24, 3.8));
    tx.rule_event(jam(RulePhase::End, "lancar", 540, 6, 22.0));
    let mut by_class = BTreeMap::new();
    by_class.insert(
        "car".to_string(),
        DirCounts {
            in_count: 48,
            out_count: 41,
        },
    );
    by_class.insert(
        "motorcycle".to_string(),
        DirCounts {
            in_count: 212,
            out_count: 187,
        },
    );
    tx.counts(CountsReport {
        site: SiteId::new("charitas"),
        interval_s: 900,
        start: t0,
        end: t0 + chrono::Duration::seconds(900),
        lines: vec![LineCounts {
            line: LineId::new("garis-sudirman"),
            name: "Garis Jl. Sudirman".into(),
            in_name: "ke utara".into(),
            out_name: "ke selatan".into(),
            by_class,
        }],
        zones: vec![ZoneTraffic {
            zone: ZoneId::new("sudirman"),
            name: "Jl. Jend. Sudirman (arah Km 5)".into(),
            level: TrafficLevel::Macet,
            degree_of_saturation: 0.94,
            mean_vehicles: 21.5,
            median_speed_kmh: Some(4.2),
        }],
    });
    let id = incident_id("charitas", Some("sudirman"), IncidentKind::TrafficJam, t0);
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| {
            let r = analyse(m, &schemas);
            r.incidents.get(&id).is_some_and(|x| x.len() == 3) && !r.counts.is_empty()
        })
        .await
    );
    svc.stop().await;
    for r in sub.messages() {
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        if r.topic.ends_with("/incidents") {
            let ev = v["event"].as_str().unwrap().to_string();
            captured.insert(format!("incident-{ev}"), v);
        } else if r.topic.ends_with("/counts") {
            captured.insert("counts".into(), v);
        }
    }

    // Part 2, `simpang run`: a camera that is unreachable raises camera_offline; the site's
    // status goes online, then shutdown on SIGTERM; a second run killed leaves the will.
    let cfg = run_config(
        dir.path(),
        &format!("broker = \"mqtt://127.0.0.1:{port}\""),
        "offline_grace_s = 2.0",
        &["kapten-rivai"],
    );
    let before = sub.messages().len();
    let mut run = Run::start(&cfg, &[]);
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| {
            analyse(&m[before..], &schemas)
                .incidents
                .values()
                .any(|x| x[0].incident.kind == IncidentKind::CameraOffline)
        })
        .await,
        "{}",
        run.log()
    );
    assert!(run
        .proc
        .terminate(Duration::from_secs(20))
        .is_some_and(|s| s.success()));
    let before2 = sub.messages().len();
    let mut run = Run::start(&cfg, &[]);
    // Connected (its online status is through) before it is killed, or there is no will.
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| {
            analyse(&m[before2..], &schemas)
                .statuses
                .iter()
                .any(|(s, _)| s.state == SiteState::Online)
        })
        .await
    );
    run.proc.kill();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| {
            analyse(&m[before..], &schemas)
                .statuses
                .iter()
                .any(|(s, _)| s.reason == StatusReason::ConnectionLost)
        })
        .await
    );
    for r in &sub.messages()[before..] {
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        if r.topic.ends_with("/incidents") && v["event"] == "new" {
            captured
                .entry("incident-camera-offline".into())
                .or_insert(v);
        } else if r.topic.ends_with("/status") {
            let name = match (v["state"].as_str(), v["reason"].as_str()) {
                (Some("online"), _) => "status-online",
                (_, Some("shutdown")) => "status-shutdown",
                _ => "status-will",
            };
            captured.entry(name.into()).or_insert(v);
        }
    }
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(report.incidents[&id][0].event, IncidentEvent::New);
    for name in NAMES {
        assert!(captured.contains_key(name), "{name} not captured");
    }

    if std::env::var_os("SIMPANG_WRITE_MQTT_EXAMPLES").is_some() {
        std::fs::create_dir_all(examples_dir()).unwrap();
        for (name, v) in &captured {
            // Through the Rust types, so the file lists fields in the order they are sent.
            let text = if name.starts_with("incident") {
                serde_json::to_string_pretty(
                    &serde_json::from_value::<IncidentMessage>(v.clone()).unwrap(),
                )
            } else if name.starts_with("status") {
                serde_json::to_string_pretty(
                    &serde_json::from_value::<StatusMessage>(v.clone()).unwrap(),
                )
            } else {
                serde_json::to_string_pretty(
                    &serde_json::from_value::<CountsMessage>(v.clone()).unwrap(),
                )
            }
            .unwrap()
                + "\n";
            std::fs::write(examples_dir().join(format!("{name}.json")), text).unwrap();
        }
    }
    let ex = committed();
    for name in NAMES {
        let (mut a, mut b) = (Default::default(), Default::default());
        shape(&captured[name], "", &mut a);
        shape(&ex[name], "", &mut b);
        assert_eq!(a, b, "{name}: docs/mqtt-examples/{name}.json no longer has the shape of what is published (rerun with SIMPANG_WRITE_MQTT_EXAMPLES=1 and update docs/mqtt.md)");
    }
    sub.stop().await;
}
