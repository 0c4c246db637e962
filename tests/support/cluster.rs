//! Analytics nodes for tests: the shared config of a cluster of `simpang run --node` processes
//! (each with its own `data_dir`, as machines would have) and a node as a child process with
//! its wall and metrics URLs and the sites it holds (by its metrics).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::metrics::Metrics;
use super::process::Proc;
use super::simpang::START;

/// The sample cameras' site ids.
pub const SITES: [&str; 6] = [
    "ampera",
    "bkb",
    "charitas",
    "kapten-rivai",
    "masjid-agung",
    "simpang-lima",
];

/// The shared config of the nodes, with node `node`'s `data_dir`; `extra` is appended before
/// the sites (a `[wall.auth]` table, say). Streams point at port 1 until
/// [`super::simpang::point_streams_at`] moves them.
pub fn node_config(
    dir: &Path,
    node: &str,
    mqtt: &[String],
    nats: &[String],
    extra: &str,
) -> PathBuf {
    let r = super::root();
    let mut text = format!(
        r#"data_dir = "{data}"

[city]
name = "Palembang"
timezone = "Asia/Jakarta"

[detect]
model = "{r}/models/nanodet-m-int8/manifest.toml"
ort_library = "{r}/vendor-lib/onnxruntime/libonnxruntime.so"
fps = 2.0

[ingest]
silence_timeout_s = 3.0
backoff_initial_s = 1.0
backoff_max_s = 4.0

[mqtt]
brokers = {mqtt:?}
client_id = "wall-nodes-test"
reconnect_initial_s = 0.2
reconnect_max_s = 1.0

[wall]
listen = "127.0.0.1:0"
rtsp_port = 0

[samples]
footage_dir = "{r}/samples"

[cluster]
nats = {nats:?}
lease_ttl_s = 20

{extra}
"#,
        data = dir.join(format!("data-{node}")).display(),
        r = r.display(),
    );
    for s in SITES {
        text += &format!(
            r#"
[[sites]]
id = "{s}"
name = "Simpang {s}"
address = "Jl. {s}, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:1/{s}"
"#
        );
    }
    let p = dir.join(format!("node-{node}.toml"));
    std::fs::write(&p, text).expect("write config");
    p
}

/// `simpang run --node NAME` as a child.
pub struct Node {
    pub name: String,
    pub proc: Proc,
    /// `http://ADDR` of the metrics listener.
    pub ops: String,
    /// `http://ADDR` of the wall.
    pub wall: String,
}

impl Node {
    pub fn start(config: &Path, name: &str, capacity: Option<u32>) -> Node {
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
        let mut proc = Proc::simpang(&format!("node-{name}"), &args, &[]);
        let url = |line: String, what: &str| {
            line.trim()
                .trim_start_matches(what)
                .trim_end_matches('/')
                .trim_end_matches("/metrics")
                .to_string()
        };
        let wall = url(proc.wait_line("wall: http://", START), "wall: ");
        let ops = url(proc.wait_line("metrics: http://", START), "metrics: ");
        Node {
            name: name.to_string(),
            proc,
            ops,
            wall,
        }
    }

    /// The sites this node holds now, with their lease token; `None` when it does not answer.
    pub fn held(&self) -> Option<BTreeMap<String, u64>> {
        let m = self.metrics()?;
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

    pub fn metrics(&self) -> Option<Metrics> {
        Metrics::scrape(&format!("{}/metrics", self.ops))
    }
}
