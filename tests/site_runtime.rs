//! Sites started and stopped while the pipeline runs (`Running::add_site`, `remove_site`): the
//! real pipeline (GStreamer on the sample footage, the ONNX detector, tracker and rules, the
//! incident stage with its embedded broker), one site coming and going while another goes on.
//!
//! Checked: a site added at run time gets its camera, analytics results, hub slots, its place in
//! `/api/status` and its retained MQTT status (online); a removed site's camera stops, it leaves
//! the hub and `/api/status`, and its status turns offline (`shutdown`) while the other site keeps
//! being analysed; a removed site can come back; bad sites and unknown ids are refused, named.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use simpang::app::Running;
use simpang::config::{Config, Site};
use simpang::incident::message::{SiteState, StatusMessage, StatusReason};
use simpang::incident::topics;
use simpang::model::SiteId;

fn repo() -> PathBuf {
    support::root().to_path_buf()
}

fn config(dir: &Path, mqtt_port: u16) -> Config {
    let text = format!(
        "data_dir = {data:?}\n\n[city]\nname = \"Palembang\"\n\n\
         [detect]\nmodel = {model:?}\nort_library = {ort:?}\nfps = 5.0\n\n\
         [ingest]\nfiles_realtime = true\nfiles_loop = true\n\n\
         [mqtt]\nbroker = \"embedded\"\nembedded_listen = \"127.0.0.1:{mqtt_port}\"\nclient_id = \"runtime\"\n\n\
         [wall]\nlisten = \"127.0.0.1:0\"\nrtsp_port = 0\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n\
         [[sites]]\nid = \"bkb\"\nname = \"Benteng Kuto Besak\"\naddress = \"Jl. Rumah Bari\"\n\
         lat = -2.99\nlon = 104.76\nstream = {footage:?}\n",
        data = dir.join("data"),
        model = repo().join("models/nanodet-m-int8/manifest.toml"),
        ort = repo().join("vendor-lib/onnxruntime/libonnxruntime.so"),
        footage = repo().join("samples/vtest.mp4"),
    );
    let path = dir.join("simpang.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap()
}

/// A second site on the same footage, as a config's `[[sites]]` would give it.
fn site(cfg: &Config, id: &str) -> Site {
    let mut s = cfg.sites[0].clone();
    s.id = SiteId::new(id);
    s.name = format!("Simpang {id}");
    s
}

/// Waits up to `secs` for `cond`.
async fn eventually(secs: u64, cond: impl FnMut() -> bool) -> bool {
    support::wait::poll_async(Duration::from_secs(secs), cond)
        .await
        .is_some()
}

/// Analytics frames processed for `site` so far (the frame loop's counter).
fn processed(running: &Running, site: &str) -> u64 {
    running
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "simpang_analytics_processed_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "site" && l.value() == site)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

fn status_sites(running: &Running) -> Vec<String> {
    let v: serde_json::Value = ureq::get(&format!("http://{}/api/status", running.metrics_addr))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    v["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"].as_str().unwrap().to_string())
        .collect()
}

/// Every status message the broker passes on, in order.
type Statuses = Arc<Mutex<Vec<StatusMessage>>>;

fn watch_status(port: u16) -> Statuses {
    let seen: Statuses = Arc::default();
    let out = seen.clone();
    let mut o = MqttOptions::new("runtime-watch", "127.0.0.1", port);
    o.set_max_packet_size(1 << 24, 1 << 24);
    let (client, mut events) = AsyncClient::new(o, 64);
    tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.subscribe(topics::ALL_STATUS, QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(m) = serde_json::from_slice::<StatusMessage>(&p.payload) {
                        out.lock().unwrap().push(m);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    });
    seen
}

fn last_status(seen: &Statuses, site: &str) -> Option<(SiteState, StatusReason)> {
    seen.lock()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m.site == site)
        .map(|m| (m.state, m.reason))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_start_and_stop_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let mqtt = support::ports::port();
    let cfg = config(dir.path(), mqtt);
    let running = simpang::app::run(cfg.clone())
        .await
        .expect("pipeline starts");
    let statuses = watch_status(mqtt);
    let online = (SiteState::Online, StatusReason::Running);

    assert!(
        eventually(90, || processed(&running, "bkb") > 0).await,
        "bkb is analysed"
    );
    assert_eq!(status_sites(&running), ["bkb"]);

    // A second site joins while bkb runs.
    running.add_site(site(&cfg, "ampera")).await.unwrap();
    assert_eq!(
        running
            .site_ids()
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
        ["bkb", "ampera"]
    );
    assert!(running.hub.site("ampera").is_some());
    assert_eq!(status_sites(&running), ["bkb", "ampera"]);
    assert!(
        eventually(90, || processed(&running, "ampera") > 0).await,
        "the added site is analysed"
    );
    assert!(
        running
            .hub
            .site("ampera")
            .is_some_and(|h| h.results.load().captured_at.is_some()),
        "its results reach its hub slot"
    );
    assert!(
        eventually(30, || last_status(&statuses, "ampera") == Some(online)).await,
        "its own MQTT connection says it is online: {:?}",
        last_status(&statuses, "ampera")
    );

    // Refused, and named: a running id, a bad site, an unknown id.
    let e = running.add_site(site(&cfg, "ampera")).await.unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    let mut bad = site(&cfg, "Bad Id");
    bad.lat = 123.0;
    let e = running.add_site(bad).await.unwrap_err().to_string();
    assert!(e.contains("field `id`") && e.contains("field `lat`"), "{e}");
    assert!(!e.contains("sites[0]"), "fields are the site's own: {e}");
    let e = running.remove_site("nowhere").await.unwrap_err();
    assert!(e.to_string().contains("\"nowhere\" is not running"), "{e}");
    assert_eq!(running.site_ids().len(), 2);

    // bkb leaves; ampera goes on.
    running.remove_site("bkb").await.unwrap();
    assert!(running.hub.site("bkb").is_none());
    assert!(running.site("bkb").is_none());
    assert_eq!(status_sites(&running), ["ampera"]);
    assert!(
        eventually(30, || last_status(&statuses, "bkb")
            == Some((SiteState::Offline, StatusReason::Shutdown)))
        .await,
        "a removed site's status says it stopped: {:?}",
        last_status(&statuses, "bkb")
    );
    let (bkb_then, ampera_then) = (processed(&running, "bkb"), processed(&running, "ampera"));
    assert!(
        eventually(60, || processed(&running, "ampera") >= ampera_then + 5).await,
        "the other site is still analysed"
    );
    assert!(
        processed(&running, "bkb") <= bkb_then + 1,
        "no more frames of the removed site (one may have been in the detector)"
    );

    // And it can come back.
    running.add_site(cfg.sites[0].clone()).await.unwrap();
    let again = processed(&running, "bkb");
    assert!(
        eventually(90, || processed(&running, "bkb") > again).await,
        "a site started again is analysed again"
    );
    assert!(
        eventually(30, || last_status(&statuses, "bkb") == Some(online)).await,
        "and online again: {:?}",
        last_status(&statuses, "bkb")
    );
    assert_eq!(status_sites(&running), ["ampera", "bkb"]);

    tokio::time::timeout(Duration::from_secs(60), running.stop())
        .await
        .expect("the pipeline stops");
}
