//! Cluster analytics nodes as the tests drive them: `simpang run --node NAME` as a child with
//! its metrics ([`Node`]), and `mosquitto_sub` as a background reader of a topic ([`Sub`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::metrics::Metrics;
use super::nats::NatsCluster;
use super::process::Proc;
use super::simpang::START;

/// The six sites of the shipped config, by id.
pub const SITES: [&str; 6] = [
    "ampera",
    "bkb",
    "charitas",
    "kapten-rivai",
    "masjid-agung",
    "simpang-lima",
];

/// The start every node config of the tests shares: the node's own data folder under `dir`, the
/// city, the shipped detector at 2 detections/s.
pub fn head(dir: &Path, node: &str) -> String {
    let r = super::root();
    format!(
        r#"data_dir = "{data}"

[city]
name = "Palembang"
timezone = "Asia/Jakarta"

[detect]
model = "{r}/models/nanodet-m-int8/manifest.toml"
ort_library = "{r}/vendor-lib/onnxruntime/libonnxruntime.so"
fps = 2.0
"#,
        data = dir.join(format!("data-{node}")).display(),
        r = r.display(),
    )
}

/// The shared config of the nodes: the six sites (a crowd zone over the whole picture, one
/// person enough: incidents flow), `mqtt` the brokers, `nats` the cluster; `data_dir` is each
/// node's own (on one machine they would share the outbox file otherwise). `extra`: TOML put
/// at the end of the `[mqtt]` table (a credentials file), before the other tables.
pub fn node_config(
    dir: &Path,
    node: &str,
    mqtt: &[String],
    nats: &[String],
    extra: &str,
) -> PathBuf {
    let r = super::root();
    let mut text = head(dir, node);
    text += &format!(
        r#"
[ingest]
silence_timeout_s = 3.0
backoff_initial_s = 1.0
backoff_max_s = 4.0

[mqtt]
brokers = {mqtt:?}
client_id = "nodes-test"
reconnect_initial_s = 0.2
reconnect_max_s = 1.0
{extra}

[incidents]
update_interval_s = 5.0

[wall]
listen = "127.0.0.1:0"
rtsp_port = 0

[samples]
footage_dir = "{r}/samples"

[cluster]
nats = {nats:?}
lease_ttl_s = 20
"#,
        r = r.display(),
    );
    for s in SITES {
        // A crowd zone over the whole picture with a low threshold: incidents flow.
        text += &format!(
            r#"
[[sites]]
id = "{s}"
name = "Simpang {s}"
address = "Jl. {s}, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:1/{s}"

[[sites.zones]]
id = "pelataran"
name = "Pelataran {s}"
kind = "crowd"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
area_m2 = 400.0
[sites.zones.crowd]
min_persons = 1
dwell_s = 2.0
clear_s = 3.0
cooldown_s = 10.0
"#
        );
    }
    let p = dir.join(format!("node-{node}.toml"));
    std::fs::write(&p, text).expect("write config");
    p
}

/// The last lines of every node's log and the broker nodes' logs, for a failed assertion.
pub fn logs(nodes: &[&Node], nats: &NatsCluster) -> String {
    let mut s = String::new();
    for n in nodes {
        s += &format!("--- node {}\n{}\n", n.name, n.proc.log_tail());
    }
    s + &nats.logs()
}

/// `simpang run --node NAME` as a child.
pub struct Node {
    pub name: String,
    pub proc: Proc,
    /// `http://ADDR` of its metrics listener.
    pub ops: String,
    /// `http://ADDR` of its wall (printed before the metrics line).
    pub wall: String,
}

impl Node {
    pub fn start(config: &Path, name: &str, capacity: Option<u32>) -> Node {
        Node::start_with(None, config, name, capacity)
    }

    /// `wrap`: a command to run it under (`ip netns exec NS`).
    pub fn start_with(
        wrap: Option<&[&str]>,
        config: &Path,
        name: &str,
        capacity: Option<u32>,
    ) -> Node {
        let cap = capacity.map(|c| c.to_string());
        let cfg = config.display().to_string();
        let mut args = vec![
            "run",
            "--config",
            cfg.as_str(),
            "--node",
            name,
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        if let Some(c) = &cap {
            args.extend(["--capacity", c.as_str()]);
        }
        let mut proc = match wrap {
            None => Proc::simpang(&format!("node-{name}"), &args, &[]),
            Some(w) => {
                let mut cmd = Command::new(w[0]);
                cmd.args(&w[1..])
                    .arg(super::bin())
                    .args(&args)
                    .current_dir(super::root())
                    .env(
                        "ORT_DYLIB_PATH",
                        super::root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
                    )
                    .env("RUST_LOG", "info,sqlx=warn");
                Proc::spawn(&format!("node-{name}"), cmd)
            }
        };
        let wall = proc
            .wait_line("wall: http://", START)
            .trim()
            .trim_start_matches("wall: ")
            .trim_end_matches('/')
            .to_string();
        let line = proc.wait_line("metrics: http://", START);
        let ops = line
            .trim()
            .trim_start_matches("metrics: ")
            .trim_end_matches("/metrics")
            .to_string();
        Node {
            name: name.to_string(),
            proc,
            ops,
            wall,
        }
    }

    /// The sites this node holds now, with their lease token; `None` when it does not answer.
    pub fn held(&self) -> Option<BTreeMap<String, u64>> {
        let m = Metrics::scrape(&format!("{}/metrics", self.ops))?;
        let mut out = BTreeMap::new();
        for s in m.series("simpang_cluster_site_held", &[]) {
            if s.value == 1.0 {
                let site = s
                    .labels
                    .iter()
                    .find(|(k, _)| k == "site")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let token = m.site("simpang_cluster_lease_token", &site).unwrap_or(0.0);
                out.insert(site, token as u64);
            }
        }
        Some(out)
    }

    pub fn count(&self) -> usize {
        self.held().map_or(0, |h| h.len())
    }

    /// Its metrics now; `None` when it does not answer.
    pub fn metrics(&self) -> Option<Metrics> {
        Metrics::scrape(&format!("{}/metrics", self.ops))
    }
}

/// `mosquitto_sub` on `topic` (retained included) as a background reader: every (topic,
/// payload) line it prints.
pub struct Sub {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<(Instant, String, String)>>>,
}

impl Sub {
    pub fn start(port: u16, topic: &str, client_id: &str) -> Sub {
        Sub::start_as(port, topic, client_id, None)
    }

    /// With a login (user, password) on a broker that has users.
    pub fn start_as(port: u16, topic: &str, client_id: &str, login: Option<(&str, &str)>) -> Sub {
        let mut cmd = Command::new("mosquitto_sub");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-v"])
            .args(["-i", client_id, "-t", topic]);
        if let Some((u, p)) = login {
            cmd.args(["-u", u, "-P", p]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub (Debian mosquitto-clients, scripts/setup.sh)");
        let out = child.stdout.take().expect("stdout");
        let lines: Arc<Mutex<Vec<(Instant, String, String)>>> = Arc::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((t, p)) = line.split_once(' ') {
                    l.lock()
                        .unwrap()
                        .push((Instant::now(), t.to_string(), p.to_string()));
                }
            }
        });
        Sub { child, lines }
    }

    /// Every (topic, payload) so far, in arrival order.
    pub fn lines(&self) -> Vec<(String, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t, p)| (t.clone(), p.clone()))
            .collect()
    }

    /// Every (arrival, topic, payload) so far.
    pub fn lines_at(&self) -> Vec<(Instant, String, String)> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last status of each site (payload JSON), from a status subscription.
pub fn last_status(sub: &Sub) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for (topic, payload) in sub.lines() {
        let site = topic.split('/').nth(3).unwrap_or_default().to_string();
        if let Ok(v) = serde_json::from_str::<Value>(&payload) {
            out.insert(site, v);
        }
    }
    out
}

/// The conditions with more than one incident still open (no `end`) among the incident
/// messages `lines` (topic, payload): per (site, zone, kind) at most one may be. A site that
/// moved without its open incidents would leave its old node's incident open forever beside
/// the one its new node opened.
pub fn open_twice(lines: &[(String, String)]) -> Vec<((String, String, String), Vec<String>)> {
    let mut by_key: BTreeMap<(String, String, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    let mut ended = std::collections::BTreeSet::new();
    for (_, payload) in lines {
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            continue;
        };
        let i = &v["incident"];
        let id = i["id"].as_str().unwrap_or_default().to_string();
        if v["event"] == "end" {
            ended.insert(id.clone());
        }
        let key = (
            i["site"].as_str().unwrap_or_default().to_string(),
            i["zone"].as_str().unwrap_or_default().to_string(),
            i["kind"].as_str().unwrap_or_default().to_string(),
        );
        by_key.entry(key).or_default().insert(id);
    }
    by_key
        .into_iter()
        .map(|(k, ids)| {
            (
                k,
                ids.into_iter()
                    .filter(|i| !ended.contains(i))
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, ids)| ids.len() > 1)
        .collect()
}
