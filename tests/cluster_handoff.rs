//! Open incidents move with their site (docs/deploy.md, "What moves with a site"): three NATS
//! nodes (MQTT, and JetStream for the leases and the open incidents) with the users and rights
//! of `simpang mqtt-credentials` (the nodes log in to JetStream as `simpang-nodes`, taken from
//! the credentials file), one site whose camera never answers (its `camera_offline` incident
//! opens after `offline_grace_s`, on whichever node serves the site), and two `simpang run
//! --node` processes with their own data directories.
//!
//! - node `a` serves the site but cannot reach the MQTT broker: the incident's `new` waits in
//!   its outbox (its open state is saved to the cluster first);
//! - `a` is killed with SIGKILL; node `b` takes the site, finds the camera still down and goes
//!   on with **the same incident** (an `update`, seq 2), not a second one;
//! - `a` comes back, able to reach the broker now: before taking any site it sends the `new` it
//!   stored before it died, without touching the site's retained status (which names `b`);
//! - on the incident stream: one incident id for the condition, each (id, seq) once.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use simpang::incident::secrets::Credentials;
use support::metrics::Metrics;
use support::nats::NatsCluster;
use support::node::{last_status, Node, Sub};
use support::wait::poll;

const SITE: &str = "ampera";
/// Bounds of a hang; each wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(90);

/// A node's config: one site whose camera refuses at once; `mqtt` the brokers it is given,
/// `creds` the credentials file of the deployment (none before it is made).
fn config(
    dir: &Path,
    node: &str,
    mqtt: &[String],
    nats: &[String],
    creds: Option<&Path>,
) -> PathBuf {
    let creds = creds
        .map(|c| format!("credentials_file = {:?}\n", c.display().to_string()))
        .unwrap_or_default();
    let text = support::node::head(dir, node)
        + &format!(
            r#"
[ingest]
backoff_initial_s = 1.0
backoff_max_s = 2.0

[mqtt]
brokers = {mqtt:?}
client_id = "handoff-test"
reconnect_initial_s = 0.2
reconnect_max_s = 1.0
{creds}
[incidents]
offline_grace_s = 1.0
update_interval_s = 5.0
restore_confirm_s = 120.0

[wall]
listen = "127.0.0.1:0"
rtsp_port = 0

[cluster]
nats = {nats:?}
lease_ttl_s = 6

[[sites]]
id = "{SITE}"
name = "Jembatan Ampera"
address = "Jl. Ampera, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:1/{SITE}"
"#
        );
    let p = dir.join(format!("{node}.toml"));
    std::fs::write(&p, text).expect("write config");
    p
}

/// `simpang_incident_messages_total` of the site's camera_offline incident for `event`.
fn stored(node: &Node, event: &str) -> f64 {
    Metrics::scrape(&format!("{}/metrics", node.ops))
        .map(|m| {
            m.series("simpang_incident_messages_total", &[])
                .filter(|s| {
                    s.labels
                        .iter()
                        .any(|(k, v)| k == "kind" && v == "camera_offline")
                        && s.labels.iter().any(|(k, v)| k == "event" && v == event)
                })
                .map(|s| s.value)
                .sum()
        })
        .unwrap_or(0.0)
}

/// (id, seq, event) of every camera_offline message on the stream, in arrival order.
fn offline_messages(sub: &Sub) -> Vec<(String, u64, String)> {
    sub.lines()
        .iter()
        .filter_map(|(_, p)| serde_json::from_str::<Value>(p).ok())
        .filter(|v| v["incident"]["kind"] == "camera_offline")
        .map(|v| {
            (
                v["incident"]["id"].as_str().unwrap_or_default().to_string(),
                v["incident"]["seq"].as_u64().unwrap_or(0),
                v["event"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_open_incident_moves_with_its_site_and_a_dead_nodes_outbox_is_sent_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    // The deployment's users and rights, as an operator makes them.
    let plain = config(dir.path(), "users", &[], &[], None);
    let out = support::producer::credentials(&plain, &dir.path().join("mqtt"));
    let creds_file = out.join("credentials.toml");
    let creds = Credentials::load(&creds_file).expect("credentials");
    let viewer = creds.login("viewer").expect("the viewer's login");
    let login = Some((viewer.username.as_str(), viewer.password.as_str()));
    let nats = NatsCluster::start(3, Some(&out.join("nats-users.conf")));
    let (mqtt, nurls) = (nats.urls(), nats.nats_urls());
    let cfg =
        |node: &str, mqtt: &[String]| config(dir.path(), node, mqtt, &nurls, Some(&creds_file));
    // Nothing listens there: a's messages stay in its outbox.
    let nowhere = vec![format!("mqtt://127.0.0.1:{}", support::ports::port())];
    let cfg_a_cut = cfg("a", &nowhere);
    let incidents = Sub::start_as(
        nats.mqtt_ports[0],
        &format!("simpang/v1/sites/{SITE}/incidents"),
        "handoff-test-incidents",
        login,
    );

    let mut a = Node::start(&cfg_a_cut, "a", None);
    let opened = poll(WAIT, || (stored(&a, "new") == 1.0).then_some(()));
    assert!(
        opened.is_some(),
        "a opens the camera_offline incident (in its outbox):\n{}",
        a.proc.log_tail()
    );
    assert!(
        offline_messages(&incidents).is_empty(),
        "a cannot reach the broker, yet its message arrived"
    );
    let by_a = (stored(&a, "new") + stored(&a, "update")) as u64;
    a.proc.kill();

    let cfg_b = cfg("b", &mqtt);
    let b = Node::start(&cfg_b, "b", None);
    let took = poll(WAIT, || (b.count() == 1).then_some(()));
    assert!(took.is_some(), "b takes the site:\n{}", b.proc.log_tail());
    // b's lease client is logged in as the nodes' user (the cluster refuses anonymous ones).
    let as_nodes_user = (0..3).any(|i| {
        nats.monitor(i, "/connz?auth=1").is_some_and(|v| {
            v["connections"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["name"] == "simpang-node-b" && c["authorized_user"] == "simpang-nodes"
                })
            })
        })
    });
    assert!(as_nodes_user, "b's NATS client is user simpang-nodes");
    let resumed = poll(WAIT, || {
        let m = offline_messages(&incidents);
        (!m.is_empty()).then_some(m)
    })
    .unwrap_or_else(|| panic!("b says nothing of the incident:\n{}", b.proc.log_tail()));
    let (id, seq, event) = resumed[0].clone();
    // a may have stored one more update between the count and the kill.
    assert!(
        event == "update" && (seq == by_a + 1 || seq == by_a + 2),
        "b goes on with a's incident {id} after a's {by_a} message(s) instead of opening one: {resumed:?}\n{}",
        b.proc.log_tail()
    );
    assert_eq!(stored(&b, "new"), 0.0, "b opened an incident of its own");

    // a comes back with the broker in reach: it sends what it stored, takes nothing.
    let cfg_a = cfg("a", &mqtt);
    let a = Node::start(&cfg_a, "a", None);
    let replayed = poll(WAIT, || {
        offline_messages(&incidents)
            .iter()
            .any(|(i, s, e)| i == &id && *s == 1 && e == "new")
            .then_some(())
    });
    assert!(
        replayed.is_some(),
        "a sends the `new` it stored before it died: {:?}\n{}",
        offline_messages(&incidents),
        a.proc.log_tail()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a.count(), 0, "a took the site b holds");

    let all = offline_messages(&incidents);
    let ids: std::collections::BTreeSet<&String> = all.iter().map(|(i, _, _)| i).collect();
    assert_eq!(ids.len(), 1, "one incident for one condition: {all:?}");
    let mut keys: Vec<(String, u64)> = all.iter().map(|(i, s, _)| (i.clone(), *s)).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "an (id, seq) twice: {all:?}");

    // The replay spoke only on the incident topic: the site's status still names b.
    let status = Sub::start_as(
        nats.mqtt_ports[1],
        &format!("simpang/v1/sites/{SITE}/status"),
        "handoff-test-status",
        login,
    );
    let named_b = poll(WAIT, || {
        last_status(&status)
            .get(SITE)
            .filter(|v| v["node"] == "b" && v["state"] == "online")
            .map(|_| ())
    });
    assert!(
        named_b.is_some(),
        "the status names b: {:?}",
        last_status(&status)
    );
}
