//! Crash: `simpang run` is killed with SIGKILL while messages wait in its outbox (the broker is
//! down); after a restart with the broker up, every one of them is delivered, and the incident
//! continues under the same id instead of a second one being opened.

mod support;

use std::time::Duration;

use simpang::incident::message::{SiteState, StatusReason};
use simpang::model::{IncidentEvent, IncidentKind};
use support::mosquitto::{Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, Schemas, Subscriber};
use support::simpang::{run_config, Run};
use support::wait::poll_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // The broker comes up later on the port the config names: one of the tests' own.
    let port = support::ports::port();
    let cfg = run_config(
        dir.path(),
        &format!(
            "broker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"crash\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0"
        ),
        "offline_grace_s = 1.0\nupdate_interval_s = 1.0",
        &["uji-a", "uji-b"],
    );

    // First run: no broker. The unreachable cameras raise camera_offline and its updates,
    // which pile up in the outbox.
    let mut first = Run::start(&cfg, &[]);
    let pending = |r: &Run| r.total("simpang_outbox_pending").unwrap_or(0.0);
    poll_async(Duration::from_secs(180), || pending(&first) >= 6.0).await;
    let before_kill = pending(&first);
    assert!(
        before_kill >= 6.0,
        "outbox pending {before_kill}; log:\n{}",
        first.log()
    );
    assert_eq!(first.total("simpang_mqtt_connected").unwrap_or(-1.0), 0.0);
    let killed_at = chrono::Utc::now();
    first.proc.kill();

    // The broker comes up, a subscriber listens, simpang starts again on the same data.
    let _broker = Mosquitto::start_on(port, &MosquittoOpts::default());
    let sub = Subscriber::start(port, "crash-sub", true, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);
    let mut second = Run::start(&cfg, &[]);

    let schemas = Schemas::load();
    let min_seq = before_kill as u32 / 2; // per site, at least this many were waiting
    let delivered = sub
        .wait_for(Duration::from_secs(90), |m| {
            let r = analyse(m, &schemas);
            ["uji-a", "uji-b"].iter().all(|site| {
                r.incidents.values().any(|ms| {
                    ms[0].incident.site == *site
                        // everything from before the kill, and something from after it
                        && ms.iter().any(|x| x.incident.updated_at.to_utc() > killed_at)
                        && ms.len() as u32 > min_seq
                })
            })
        })
        .await;
    let report = analyse(&sub.messages(), &schemas);
    assert!(
        delivered,
        "pending messages not delivered: {:#?}\nrun2 log:\n{}",
        report
            .incidents
            .values()
            .map(|m| m.len())
            .collect::<Vec<_>>(),
        second.log()
    );
    // analyse() checks each id starts with new #1 and its seq never skips: nothing that was
    // pending before the kill went missing.
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    for site in ["uji-a", "uji-b"] {
        let ids: Vec<_> = report
            .incidents
            .values()
            .filter(|ms| ms[0].incident.site == site)
            .collect();
        assert_eq!(
            ids.len(),
            1,
            "{site}: one camera_offline incident across the restart, got {}",
            ids.len()
        );
        let ms = ids[0];
        assert_eq!(ms[0].incident.kind, IncidentKind::CameraOffline);
        assert_eq!(ms[0].event, IncidentEvent::New);
        assert!(ms[0].incident.started_at.to_utc() < killed_at);
        assert_eq!(
            ms[0].incident.title,
            format!("Kamera {} tidak aktif", ms[0].incident.site_name)
        );
        // The first message after the restart says the incident continues.
        let resumed = ms
            .iter()
            .find(|x| x.incident.updated_at.to_utc() > killed_at)
            .expect("a message from the second run");
        assert_eq!(resumed.event, IncidentEvent::Update);
        assert!(
            resumed.incident.description.contains("dinyalakan ulang"),
            "{}",
            resumed.incident.description
        );
    }
    assert!(second.log().contains("outbox holds messages from before"));

    // A clean stop: the retained status of each site says shutdown.
    let status = second
        .proc
        .terminate(Duration::from_secs(20))
        .expect("simpang stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| {
            let r = analyse(m, &schemas);
            ["uji-a", "uji-b"].iter().all(|s| {
                r.last_status(s).is_some_and(|st| {
                    st.state == SiteState::Offline && st.reason == StatusReason::Shutdown
                })
            })
        })
        .await
    );
    sub.stop().await;
}
