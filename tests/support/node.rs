//! Cluster analytics nodes as the tests drive them: `simpang run --node NAME` as a child with
//! its metrics ([`Node`]), and `mosquitto_sub` as a background reader of a topic ([`Sub`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

use super::metrics::Metrics;
use super::process::Proc;
use super::simpang::START;

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
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-v"])
            .args(["-i", client_id, "-t", topic])
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
