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
