//! The whole pipeline on real sample footage: a sample RTSP camera (vtest: pedestrians) →
//! `simpang run` (GStreamer ingest, ONNX detector, tracker, crowd rule, incident stage, embedded
//! broker, wall) → an MQTT subscriber and the wall's SSE feed.
//!
//! With a crowd zone over the whole picture and a low threshold, the crowd incident opens no
//! sooner than the dwell after the camera comes online, gets updates, and ends once the replay
//! stops (the camera stays offline past `offline_grace_s`). Every message is checked against the
//! JSON Schemas, and every snapshot decodes as a JPEG. How soon after the dwell it opens depends
//! on the machine (the detector's latency): `simpang bench` reports that (`result_age`,
//! capture -> results, and `publish_incident`).

mod support;

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use simpang::incident::message::SiteState;
use simpang::model::{IncidentEvent, IncidentKind};
use support::mqtt::{analyse, Report, Schemas, Subscriber};
use support::simpang::{point_streams_at, run_config_streams, Run, Samples};
use support::wait::poll_async;
use toml_edit::value;

const DWELL_S: f64 = 4.0;

/// Lines of the wall's SSE feed, read on a thread.
fn sse_lines(url: String) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    let resp = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    std::thread::spawn(move || {
        for line in BufReader::new(resp.into_reader())
            .lines()
            .map_while(Result::ok)
        {
            out.lock().unwrap().push(line);
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowd_incident_from_sample_footage_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let site = "bkb";
    let cfg = run_config_streams(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{}\"\nclient_id = \"e2e\"",
            support::ports::port()
        ),
        "offline_grace_s = 3.0\nupdate_interval_s = 2.0",
        &[(site, "rtsp://127.0.0.1:1/unset".to_string())],
    );
    // A crowd zone over the whole picture; vtest shows 3-9 people at any time.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "\n[[sites.zones]]\nid = \"pelataran\"\nname = \"Pelataran uji\"\nkind = \"crowd\"\n\
         polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\narea_m2 = 400.0\n\
         [sites.zones.crowd]\nmin_persons = 2\ndwell_s = {DWELL_S}\nclear_s = 3.0\ncooldown_s = 60.0\n"
    );
    std::fs::write(&cfg, text).unwrap();
    let footage = support::root().join("samples/vtest.mp4");
    assert!(
        footage.is_file(),
        "{} missing: run scripts/setup.sh",
        footage.display()
    );

    let mut samples = Samples::start(&cfg, &[], Some(&footage));
    point_streams_at(&cfg, samples.port);
    let run = Run::start(&cfg, &[]);
    let sse = sse_lines(run.url("/events"));
    let sub = Subscriber::viewer(run.mqtt_port(), "e2e-sub", &dir.path().join("data"));
    assert!(
        sub.wait_subscribed(Duration::from_secs(30)).await,
        "{}",
        run.log()
    );
    let schemas = Schemas::load();

    let crowd_new = |r: &Report| {
        r.incidents
            .values()
            .find(|ms| ms[0].incident.kind == IncidentKind::Crowd)
            .cloned()
    };
    let opened = sub
        .wait_for(Duration::from_secs(90), |m| {
            crowd_new(&analyse(m, &schemas)).is_some()
        })
        .await;
    assert!(opened, "no crowd incident:\n{}", run.log());
    let report = analyse(&sub.messages(), &schemas);
    let new = crowd_new(&report).unwrap()[0].clone();
    assert_eq!(new.event, IncidentEvent::New);
    let online_since = report
        .statuses
        .iter()
        .filter(|(s, _)| s.site == site && s.state == SiteState::Online)
        .filter_map(|(s, _)| s.camera_health.as_ref())
        .filter(|h| h.online)
        .map(|h| h.since)
        .min()
        .expect("a status with the camera online");
    let delay = (new.incident.updated_at - online_since).num_milliseconds() as f64 / 1000.0;
    assert!(
        delay >= DWELL_S - 0.5,
        "crowd opened {delay:.2} s after the camera came online, before its dwell ({DWELL_S} s)"
    );
    eprintln!("crowd opened {delay:.2} s after the camera came online (dwell {DWELL_S} s)");
    let persons = new.incident.evidence.persons.unwrap_or(0);
    assert!(persons >= 2, "evidence: {:?}", new.incident.evidence);
    assert_eq!(new.incident.zone.as_deref(), Some("pelataran"));
    assert!(
        new.incident.title.starts_with("Kerumunan"),
        "{}",
        new.incident.title
    );
    let id = new.incident.id.clone();

    // Updates while people keep walking through (evidence changes at most every 10 s).
    let updated = sub
        .wait_for(Duration::from_secs(60), |m| {
            analyse(m, &schemas)
                .incidents
                .get(&id)
                .is_some_and(|ms| ms.iter().any(|x| x.event == IncidentEvent::Update))
        })
        .await;
    assert!(updated, "no update for {id}:\n{}", run.log());

    // The wall's live feed carried the same incident.
    let seen = poll_async(Duration::from_secs(60), || {
        sse.lock().unwrap().iter().any(|l| l.contains(&id))
    })
    .await;
    assert!(seen.is_some(), "the wall's /events feed never showed {id}");

    // The replay stops: the camera goes offline, and after the grace period the crowd can no
    // longer be observed, so the incident ends (and a camera_offline incident opens).
    samples.stop();
    let ended = sub
        .wait_for(Duration::from_secs(60), |m| {
            analyse(m, &schemas).complete(1).contains(&id)
        })
        .await;
    let report = analyse(&sub.messages(), &schemas);
    assert!(
        ended,
        "crowd {id} did not end: {:#?}\n{}",
        report.incidents.keys(),
        run.log()
    );
    let ms = &report.incidents[&id];
    let end = &ms.last().unwrap().incident;
    assert_eq!(
        end.evidence.reason.as_deref(),
        Some("camera_offline"),
        "{:?}",
        end.evidence
    );
    assert!(end.ended_at.is_some());
    assert!(ms.iter().all(|m| m.incident.id == id));
    let seqs: Vec<u32> = ms.iter().map(|m| m.incident.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq gaps: {seqs:?}"
    );
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(
        report.snapshots_checked >= 2,
        "snapshots checked: {}",
        report.snapshots_checked
    );
    let offline = sub
        .wait_for(Duration::from_secs(30), |m| {
            analyse(m, &schemas)
                .incidents
                .values()
                .any(|ms| ms[0].incident.kind == IncidentKind::CameraOffline)
        })
        .await;
    assert!(offline, "no camera_offline incident:\n{}", run.log());
    // One crowd incident, not a second one for the same crowd.
    let crowds = report
        .incidents
        .values()
        .filter(|ms| ms[0].incident.kind == IncidentKind::Crowd)
        .count();
    assert_eq!(crowds, 1);
    sub.stop().await;
}

/// config/scenarios.toml with only its `jam` site, the clip played once in real time, paths made
/// absolute, data in `dir`, the counts reported every 5 s.
fn jam_config(dir: &std::path::Path) -> std::path::PathBuf {
    let root = support::root();
    let mut doc: toml_edit::DocumentMut =
        std::fs::read_to_string(root.join("config/scenarios.toml"))
            .unwrap()
            .parse()
            .unwrap();
    doc["data_dir"] = value(dir.join("data").display().to_string());
    doc["detect"]["model"] = value(
        root.join("models/nanodet-m-int8/manifest.toml")
            .display()
            .to_string(),
    );
    doc["detect"]["ort_library"] = value(support::detect::ort_library().display().to_string());
    doc["ingest"]["files_realtime"] = value(true);
    doc["ingest"]["files_loop"] = value(false);
    let mut mqtt = toml_edit::Table::new();
    mqtt["embedded_listen"] = value(format!("127.0.0.1:{}", support::ports::port()));
    mqtt["client_id"] = value("e2e-jam");
    doc["mqtt"] = toml_edit::Item::Table(mqtt);
    let mut wall = toml_edit::Table::new();
    wall["listen"] = value("127.0.0.1:0");
    wall["rtsp_port"] = value(0);
    doc["wall"] = toml_edit::Item::Table(wall);
    let sites = doc["sites"].as_array_of_tables_mut().unwrap();
    sites.retain(|s| s["id"].as_str() == Some("jam"));
    assert_eq!(sites.len(), 1, "config/scenarios.toml has no jam site");
    let jam = sites.get_mut(0).unwrap();
    jam["stream"] = value(root.join("samples/scenarios/jam.mp4").display().to_string());
    let lines = jam["lines"].as_array_of_tables_mut().unwrap();
    for l in lines.iter_mut() {
        let mut every = toml_edit::Array::new();
        every.push(5);
        l["intervals_s"] = value(every);
    }
    let p = dir.join("jam.toml");
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_on_video_is_macet_over_mqtt_and_the_line_counts_its_vehicles() {
    let footage = support::root().join("samples/scenarios/jam.mp4");
    assert!(
        footage.is_file(),
        "{} is missing: scripts/setup.sh makes the scenario footage (scripts/scenarios/generate.py)",
        footage.display()
    );
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::root().join("samples/scenarios/jam.truth.json")).unwrap(),
    )
    .unwrap();
    let crossed = truth["crossings_in"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = jam_config(dir.path());
    let run = Run::start(&cfg, &["jam"]);
    let sub = Subscriber::viewer(run.mqtt_port(), "e2e-jam-sub", &dir.path().join("data"));
    assert!(
        sub.wait_subscribed(Duration::from_secs(30)).await,
        "{}",
        run.log()
    );
    let schemas = Schemas::load();
    let jam_ended = |r: &Report| {
        r.incidents.values().any(|ms| {
            ms[0].incident.kind == IncidentKind::TrafficJam
                && ms.last().map(|m| m.event) == Some(IncidentEvent::End)
        })
    };
    // The counts carry the zone's level every 5 s: the queue builds up and clears.
    let levels = |r: &Report| -> Vec<String> {
        r.counts
            .iter()
            .flat_map(|c| c.zones.iter())
            .filter(|z| z.zone.as_str() == "jalan")
            .map(|z| {
                serde_json::to_value(z.level)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let went_through = |levels: &[String]| {
        let mut want = ["lancar", "padat", "macet", "lancar"]
            .into_iter()
            .peekable();
        for l in levels {
            if want.peek() == Some(&l.as_str()) {
                want.next();
            }
        }
        want.next().is_none()
    };
    // The clip is 210 s; the queue clears at 143 s, the incident ends after the zone's clear_s
    // (20 s) and the level falls to lancar once the window (20 s) has no queue in it.
    let done = sub
        .wait_for(Duration::from_secs(300), |m| {
            let r = analyse(m, &schemas);
            jam_ended(&r) && went_through(&levels(&r))
        })
        .await;
    let report = analyse(&sub.messages(), &schemas);
    assert!(
        done,
        "traffic_jam incidents {:#?}, levels in the counts messages {:?}\n{}",
        report
            .incidents
            .values()
            .map(|ms| (ms[0].incident.kind, ms.last().map(|m| m.event)))
            .collect::<Vec<_>>(),
        levels(&report),
        run.log()
    );
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    let jams: Vec<_> = report
        .incidents
        .values()
        .filter(|ms| ms[0].incident.kind == IncidentKind::TrafficJam)
        .collect();
    assert_eq!(jams.len(), 1, "one queue, one incident: {jams:#?}");
    let ms = jams[0];
    assert_eq!(ms[0].event, IncidentEvent::New);
    let level =
        |m: &simpang::model::IncidentMessage| serde_json::to_value(m.incident.level).unwrap();
    assert_eq!(level(&ms[0]), "macet", "{:#?}", ms[0].incident);
    let end = &ms.last().unwrap().incident;
    // ended because the queue cleared, not because the clip (camera) stopped
    assert_ne!(
        end.evidence.reason.as_deref(),
        Some("camera_offline"),
        "{end:#?}"
    );
    // When, on the clip's timeline (the camera came online at its start).
    let online_at = report
        .statuses
        .iter()
        .filter_map(|(s, _)| s.camera_health.as_ref())
        .filter(|h| h.online)
        .map(|h| h.since)
        .min()
        .expect("a status with the camera online");
    let secs = |t: chrono::DateTime<chrono::FixedOffset>| {
        (t - online_at).num_milliseconds() as f64 / 1000.0
    };
    eprintln!(
        "jam: opened at {:.1} s, ended at {:.1} s of the clip (label 57.3-143.0 s); levels every 5 s: {:?}",
        secs(ms[0].incident.updated_at),
        secs(end.ended_at.expect("an end time")),
        levels(&report)
    );

    // The line: the running total (`/api/status`) once the clip has played out, and the counts messages
    // (every closed 5 s interval; the last one stays open when the clip ends).
    let status = || -> serde_json::Value {
        serde_json::from_str(&support::wall::get_text(&run.ops_url("/api/status"))).unwrap()
    };
    let played = poll_async(Duration::from_secs(120), || {
        status()["sites"][0]["status"]["online"] == false
    })
    .await;
    assert!(played.is_some(), "the clip did not end:\n{}", run.log());
    let wall_in = status()["sites"][0]["lines"][0]["in"].as_u64();
    let counted: u64 = report
        .counts
        .iter()
        .flat_map(|c| c.lines.iter())
        .flat_map(|l| l.by_class.values())
        .map(|d| d.in_count)
        .sum();
    eprintln!(
        "line: {wall_in:?} in /api/status, {counted} in the counts so far, {crossed} crossed"
    );
    assert!(
        wall_in.is_some_and(|n| n + 2 >= crossed && n <= crossed),
        "the line's total {wall_in:?} of {crossed}: {}",
        status()
    );
    assert!(
        counted <= wall_in.unwrap_or(0) && counted + 8 >= crossed,
        "{counted} of {crossed}"
    );
    sub.stop().await;
}
