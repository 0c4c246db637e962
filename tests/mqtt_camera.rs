//! End to end through `simpang run` with the embedded broker and a real (sample) RTSP camera:
//! the camera goes away, `camera_offline` opens with the last picture as its snapshot, updates
//! follow, the camera comes back, the incident ends; the retained status follows the camera.
//!
//! This is the path that exists before the detector and rules are merged; the "normal flow on
//! sample footage" test (crowd incidents) plugs into the same helpers (`Run`,
//! `Subscriber`, `analyse`, `Report::complete`) with a low crowd threshold in the config.

mod support;

use std::time::Duration;

use simpang::incident::message::{SiteState, StatusReason};
use simpang::model::{IncidentEvent, IncidentKind};
use support::mqtt::{analyse, Report, Schemas, Subscriber};
use support::simpang::{point_streams_at, run_config_streams, Run, Samples};

fn camera_online(r: &Report, site: &str) -> Option<bool> {
    r.last_status(site)
        .filter(|s| s.state == SiteState::Online)
        .and_then(|s| s.camera_health.as_ref())
        .map(|h| h.online)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_outage_is_an_incident_with_its_last_picture() {
    let dir = tempfile::tempdir().unwrap();
    let site = "charitas";
    let cfg = run_config_streams(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{}\"\nclient_id = \"cam\"",
            support::ports::port()
        ),
        "offline_grace_s = 2.0\nupdate_interval_s = 2.0",
        &[(site, "rtsp://127.0.0.1:1/unset".to_string())],
    );
    let footage = support::root().join("samples/sample.mp4");
    assert!(
        footage.is_file(),
        "{} missing: run scripts/setup.sh",
        footage.display()
    );
    // The camera comes back on the same port: one of the tests' own.
    let mut samples = Samples::start_fixed(&cfg, &[], Some(&footage));
    let rtsp = samples.port;
    point_streams_at(&cfg, rtsp);
    let mut run = Run::start(&cfg, &[]);
    let mqtt = run.mqtt_port();
    let sub = Subscriber::viewer(mqtt, "cam-sub", &dir.path().join("data"));
    assert!(
        sub.wait_subscribed(Duration::from_secs(30)).await,
        "{}",
        run.log()
    );
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| camera_online(
            &analyse(m, &schemas),
            site
        ) == Some(true))
            .await,
        "the status never showed the camera online:\n{}",
        run.log()
    );

    // The camera goes away.
    samples.stop();
    let opened = sub
        .wait_for(Duration::from_secs(60), |m| {
            let r = analyse(m, &schemas);
            r.incidents.values().any(|ms| {
                ms[0].incident.kind == IncidentKind::CameraOffline
                    && ms.iter().any(|x| x.event == IncidentEvent::Update)
            }) && camera_online(&r, site) == Some(false)
        })
        .await;
    assert!(opened, "no camera_offline with updates:\n{}", run.log());

    // It comes back.
    let _samples = Samples::restart_on(&cfg, &[], Some(&footage), rtsp);
    let ended = sub
        .wait_for(Duration::from_secs(90), |m| {
            let r = analyse(m, &schemas);
            !r.complete(1).is_empty() && camera_online(&r, site) == Some(true)
        })
        .await;
    let report = analyse(&sub.messages(), &schemas);
    assert!(
        ended,
        "the incident did not end: {:#?}\n{}",
        report.incidents.keys(),
        run.log()
    );
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert_eq!(report.incidents.len(), 1, "one outage, one incident");
    let ms = report.incidents.values().next().unwrap();
    let new = &ms[0].incident;
    assert_eq!(new.title, "Kamera Simpang Uji 0 tidak aktif");
    assert!(new.evidence.offline_s.is_some_and(|s| s >= 2.0));
    // The last picture before the loss, at the wall's tile width, decoded by analyse().
    let snap = new
        .snapshot
        .as_ref()
        .expect("the last picture as the snapshot");
    assert_eq!(snap.width, 640);
    assert!(report.snapshots_checked >= 1);
    let end = &ms.last().unwrap().incident;
    assert!(
        end.ended_at.is_some() && end.description.contains("aktif kembali"),
        "{}",
        end.description
    );

    let st = run
        .proc
        .terminate(Duration::from_secs(20))
        .expect("stops on SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| {
            analyse(m, &schemas)
                .last_status(site)
                .is_some_and(|s| s.reason == StatusReason::Shutdown)
        })
        .await
    );
    sub.stop().await;
}
