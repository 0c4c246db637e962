//! Brokers that check who connects: a password file (wrong password -> a clear error and
//! retries, no crash; right password -> delivery of what waited), the last will turning the
//! status offline when the process is killed, and TLS with a private CA.

mod support;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use prometheus::Registry;
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::message::{SiteState, StatusReason};
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{Evidence, IncidentEvent, IncidentKind, RuleEvent, RulePhase, SiteId};
use support::metrics::Metrics;
use support::mosquitto::{make_tls, Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, Schemas, Subscriber};
use support::simpang::{run_config, Run};
use support::wait::poll_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_reported_and_retried_right_one_delivers_and_will_marks_offline() {
    let dir = tempfile::tempdir().unwrap();
    let opts = MosquittoOpts {
        users: vec![
            ("simpang".into(), "kata-sandi-benar".into()),
            ("desk".into(), "desk-pw".into()),
        ],
        ..Default::default()
    };
    let broker = Mosquitto::start_with(&opts);
    let port = broker.port;
    let sub = Subscriber::start(port, "auth-sub", true, Some(("desk", "desk-pw")));
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    let mqtt = |pw: &str| {
        format!(
            "broker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"auth\"\nusername = \"simpang\"\npassword = \"{pw}\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0"
        )
    };
    let incidents = "offline_grace_s = 1.0\nupdate_interval_s = 600.0";

    // Wrong password: refused, said clearly, retried, and the process keeps running.
    let cfg = run_config(dir.path(), &mqtt("salah"), incidents, &["uji-a"]);
    let mut first = Run::start(&cfg, &[]);
    let refusals = |r: &Run| r.log().matches("refused the connection").count();
    poll_async(Duration::from_secs(120), || {
        refusals(&first) >= 3 && first.total("simpang_outbox_pending").unwrap_or(0.0) >= 1.0
    })
    .await;
    let log = first.log();
    assert!(
        refusals(&first) >= 3,
        "no repeated refusal in the log:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("refused the connection"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("mqtt://127.0.0.1:{port}")),
        "names the broker: {line}"
    );
    assert!(
        line.contains("mqtt.username") && line.contains("mqtt.password"),
        "names the settings: {line}"
    );
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        first.proc.is_running(),
        "a refused login must not stop simpang"
    );
    assert!(
        first
            .total("simpang_mqtt_connect_failures_total")
            .unwrap_or(0.0)
            >= 3.0
    );
    assert_eq!(first.total("simpang_mqtt_connected").unwrap_or(-1.0), 0.0);
    let first_run_ended = Utc::now();
    let st = first
        .proc
        .terminate(Duration::from_secs(20))
        .expect("stops on SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(
        sub.messages().is_empty(),
        "nothing got through with the wrong password"
    );

    // Right password, same data: what waited is delivered, the status goes online.
    let cfg = run_config(dir.path(), &mqtt("kata-sandi-benar"), incidents, &["uji-a"]);
    let mut second = Run::start(&cfg, &[]);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| {
            let r = analyse(m, &schemas);
            r.incidents.values().any(|ms| {
                ms[0].event == IncidentEvent::New
                    && ms[0].incident.updated_at.to_utc() < first_run_ended
            }) && r
                .last_status("uji-a")
                .is_some_and(|s| s.state == SiteState::Online)
        })
        .await,
        "run 2 log:\n{}",
        second.log()
    );
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(!second.log().contains("refused the connection"));

    // Killed: the broker publishes the will, the retained status says connection_lost.
    second.proc.kill();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| {
            analyse(m, &schemas).last_status("uji-a").is_some_and(|s| {
                s.state == SiteState::Offline && s.reason == StatusReason::ConnectionLost
            })
        })
        .await,
        "the last will did not mark the site offline"
    );
    // And a newcomer sees it retained.
    let late = Subscriber::start(port, "late-sub", true, Some(("desk", "desk-pw")));
    assert!(late.wait_subscribed(Duration::from_secs(20)).await);
    assert!(
        late.wait_for(Duration::from_secs(10), |m| {
            m.iter().any(|x| x.retain)
                && analyse(m, &schemas)
                    .last_status("uji-a")
                    .is_some_and(|s| s.state == SiteState::Offline)
        })
        .await
    );
    late.stop().await;
    sub.stop().await;
}

fn tls_config(dir: &Path, port: u16, ca: &Path, client_id: &str) -> Config {
    let text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n\
         [mqtt]\nbroker = \"mqtts://localhost:{port}\"\nca_file = {:?}\nclient_id = \"{client_id}\"\n\
         reconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n\
         [[sites]]\nid = \"uji-tls\"\nname = \"Simpang TLS\"\naddress = \"Jl. TLS\"\nlat = -2.9\nlon = 104.7\nstream = \"rtsp://127.0.0.1:1/x\"\n",
        dir.join("data"),
        ca
    );
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("simpang.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).unwrap()
}

/// The sum of every series of `name` in the registry (0 when there is none yet).
fn gauge(r: &Registry, name: &str) -> f64 {
    Metrics::of(r).sum(name, &[]).unwrap_or(0.0)
}

fn tamper(start: chrono::DateTime<Utc>) -> RuleEvent {
    RuleEvent {
        site: SiteId::new("uji-tls"),
        zone: None,
        kind: IncidentKind::CameraTamper,
        phase: RulePhase::Start,
        level: simpang::model::Level::Tinggi,
        started_at: start,
        at: start,
        evidence: Evidence {
            reason: Some("covered".into()),
            sharpness_ratio: Some(0.08),
            ..Default::default()
        },
        frame: None,
        boxes: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_delivers_and_a_wrong_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_tls(dir.path(), "good");
    let other = make_tls(dir.path(), "other");
    let opts = MosquittoOpts {
        tls: Some(good.clone()),
        plain_listener: true,
        ..Default::default()
    };
    let broker = Mosquitto::start_with(&opts);
    let (port, plain) = (broker.port, broker.plain_port.expect("a plain listener"));
    let sub = Subscriber::start(plain, "tls-sub", true, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);

    let hub = || {
        let h = Hub::new([SiteId::new("uji-tls")]);
        h.sites()[0].update_status(|s| s.online = true);
        h
    };
    // The right CA: connected over TLS, the message arrives.
    let reg_ok = Registry::new();
    let ok = IncidentService::start(
        &tls_config(&dir.path().join("ok"), port, &good.ca, "tls-ok"),
        hub(),
        &reg_ok,
    )
    .await
    .expect("starts");
    let start = Utc::now();
    ok.sender().rule_event(tamper(start));
    let id = incident_id("uji-tls", None, IncidentKind::CameraTamper, start);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(Duration::from_secs(30), |m| analyse(m, &schemas)
            .incidents
            .contains_key(&id))
            .await,
        "nothing over TLS"
    );
    assert_eq!(gauge(&reg_ok, "simpang_mqtt_connected"), 1.0);

    // Another CA: the handshake fails, it is retried, nothing is published.
    let reg_bad = Registry::new();
    let bad = IncidentService::start(
        &tls_config(&dir.path().join("bad"), port, &other.ca, "tls-bad"),
        hub(),
        &reg_bad,
    )
    .await
    .expect("starts: a broker problem is not a start-up error");
    let start2 = start + chrono::Duration::seconds(1);
    bad.sender().rule_event(tamper(start2));
    let id2 = incident_id("uji-tls", None, IncidentKind::CameraTamper, start2);
    assert!(poll_async(Duration::from_secs(30), || gauge(
        &reg_bad,
        "simpang_mqtt_connect_failures_total"
    ) >= 3.0)
    .await
    .is_some());
    assert_eq!(gauge(&reg_bad, "simpang_mqtt_connected"), 0.0);
    assert_eq!(
        gauge(&reg_bad, "simpang_outbox_pending"),
        1.0,
        "kept in the outbox"
    );
    assert!(!analyse(&sub.messages(), &schemas)
        .incidents
        .contains_key(&id2));
    let report = analyse(&sub.messages(), &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    bad.stop().await;
    ok.stop().await;
    sub.stop().await;
}
