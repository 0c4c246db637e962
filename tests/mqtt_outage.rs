//! Broker outage: mosquitto is stopped while incidents keep coming and started again after 50
//! rounds of them (at least 10 s). Every incident message produced before, during and after the
//! outage must reach the subscriber: none missing, nothing unexpected, repeats only as the same
//! id + event + seq.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::Registry;
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{
    Evidence, Image, IncidentEvent, IncidentKind, PixelFormat, RuleEvent, RulePhase, SiteId, ZoneId,
};
use support::metrics::Metrics;
use support::mosquitto::{Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, Schemas, Subscriber};
use support::wait::poll_async;

const SITES: [&str; 3] = ["charitas", "bkb", "ampera"];

fn config(dir: &std::path::Path, port: u16) -> Config {
    let mut text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n\
         [mqtt]\nbroker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"outage\"\n\
         reconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n\
         [incidents]\nupdate_interval_s = 30.0\n",
        dir.join("data")
    );
    for s in SITES {
        text += &format!(
            "[[sites]]\nid = \"{s}\"\nname = \"Simpang {s}\"\naddress = \"Jl. {s}\"\nlat = -2.98\nlon = 104.75\n\
             stream = \"rtsp://127.0.0.1:1/{s}\"\n\
             [[sites.zones]]\nid = \"zona\"\nname = \"Zona {s}\"\nkind = \"crowd\"\n\
             polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]\n"
        );
    }
    let p = dir.join("simpang.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).unwrap()
}

/// The sum of every series of `name` in the registry (0 while there is none).
fn metric(r: &Registry, name: &str) -> f64 {
    Metrics::of(r).sum(name, &[]).unwrap_or(0.0)
}

/// Per site: incident after incident, each Start (new #1), two updates with a level change
/// (update #2, #3, so the rate limit lets them through), End (end #4).
struct Script {
    step: usize,
    start: chrono::DateTime<Utc>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_produced_during_a_broker_outage_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // The subscriber's session and queue survive the broker's restart (saved at SIGTERM), so
    // what it receives is exactly what the broker accepted from simpang.
    let opts = MosquittoOpts {
        persistence: true,
        ..Default::default()
    };
    let mut broker = Mosquitto::start_with(&opts);
    let port = broker.port;
    let sub = Subscriber::start(port, "outage-sub", false, None);
    assert!(sub.wait_subscribed(Duration::from_secs(20)).await);

    let cfg = config(dir.path(), port);
    let hub = Hub::new(cfg.sites.iter().map(|s| SiteId::new(&s.id)));
    for s in hub.sites() {
        s.update_status(|st| st.online = true);
    }
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub, &registry).await.unwrap();
    let tx = svc.sender();
    let frame = Arc::new(Image::with_format(640, 360, PixelFormat::I420));

    let mut scripts: Vec<Script> = SITES
        .iter()
        .map(|_| Script {
            step: 0,
            start: Utc::now(),
        })
        .collect();
    let mut expected: HashSet<(String, IncidentEvent, u32)> = HashSet::new();
    let mut during_outage: HashSet<(String, IncidentEvent, u32)> = HashSet::new();
    // Rounds of one event per site, 200 ms apart: the outage is counted in rounds, so a loaded
    // machine makes it longer, never shorter than 10 s, and its message count is fixed.
    let (before, outage, after) = (20, 50, 20);
    let mut broker_down = false;
    let mut saw_pending_while_down = 0.0f64;
    let mut saw_disconnected = false;
    for round in 0..before + outage + after {
        if round == before {
            broker.stop();
            broker_down = true;
        }
        if round == before + outage {
            broker.restart();
            broker_down = false;
        }
        let now = Utc::now();
        for (i, site) in SITES.iter().enumerate() {
            let sc = &mut scripts[i];
            let (phase, event, level) = match sc.step % 4 {
                0 => {
                    sc.start = now;
                    (RulePhase::Start, IncidentEvent::New, "sedang")
                }
                1 => (RulePhase::Update, IncidentEvent::Update, "tinggi"),
                2 => (RulePhase::Update, IncidentEvent::Update, "sedang"),
                _ => (RulePhase::End, IncidentEvent::End, "sedang"),
            };
            let seq = (sc.step % 4) as u32 + 1;
            let id = incident_id(site, Some("zona"), IncidentKind::Crowd, sc.start);
            tx.rule_event(RuleEvent {
                site: SiteId::new(site),
                zone: Some(ZoneId::new("zona")),
                kind: IncidentKind::Crowd,
                phase,
                level: level.parse().unwrap(),
                started_at: sc.start,
                at: now,
                evidence: Evidence {
                    persons: Some(12 + sc.step as u32 % 7),
                    ..Default::default()
                },
                frame: (phase == RulePhase::Start).then(|| frame.clone()),
                boxes: vec![],
            });
            expected.insert((id.clone(), event, seq));
            if broker_down {
                during_outage.insert((id, event, seq));
            }
            sc.step += 1;
        }
        if broker_down {
            saw_pending_while_down =
                saw_pending_while_down.max(metric(&registry, "simpang_outbox_pending"));
            saw_disconnected |= metric(&registry, "simpang_mqtt_connected") == 0.0;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!broker_down);

    let schemas = Schemas::load();
    let all_in = sub
        .wait_for(Duration::from_secs(120), |m| {
            let r = analyse(m, &schemas);
            expected.iter().all(|k| r.keys().contains(k))
        })
        .await;
    // A moment for late repeats to show up in the counts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = analyse(&sub.messages(), &schemas);
    let got = report.keys();
    let missing: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&expected).collect();
    println!(
        "outage test: produced {} incident messages ({} during the outage); received {} distinct, {} exact repeats, {} missing, {} unexpected; outbox peaked at {} pending while the broker was down",
        expected.len(),
        during_outage.len(),
        got.len(),
        report.duplicates,
        missing.len(),
        unexpected.len(),
        saw_pending_while_down
    );
    assert!(all_in && missing.is_empty(), "missing: {missing:?}");
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    assert!(
        during_outage.len() >= 100,
        "the outage produced {} messages",
        during_outage.len()
    );
    // (150 by construction: 50 rounds of three sites.)
    assert!(
        saw_disconnected,
        "simpang_mqtt_connected went to 0 during the outage"
    );
    assert!(
        saw_pending_while_down >= 50.0,
        "the outbox held the outage's messages"
    );
    assert!(poll_async(Duration::from_secs(60), || metric(
        &registry,
        "simpang_outbox_pending"
    ) == 0.0)
    .await
    .is_some());
    assert!(poll_async(Duration::from_secs(60), || metric(
        &registry,
        "simpang_mqtt_connected"
    ) == SITES.len() as f64)
    .await
    .is_some());
    svc.stop().await;
    sub.stop().await;
}
