//! `[cluster]`: the coordination engine `simpang run --node` nodes share (NATS JetStream KV on
//! the broker cluster, docs/deploy.md), the lease time, and each node's capacity.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::locate::FieldPath;

/// Shortest lease: renewals must survive one JetStream leader election (4-9 s, hard-coded in
/// nats-server) plus a request timeout; FINDINGS B measured spurious stops at 10 s, none at 20 s.
pub const MIN_LEASE_TTL_S: f64 = 6.0;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS client URLs of the broker cluster (`nats://host:4222`, `tls://host:4222`); the
    /// client also learns the other members from the server and fails over between them.
    pub nats: Vec<String>,
    /// Login on the NATS cluster, when it has users (the user needs `$KV.simpang-leases.>` and
    /// `$JS.API.>` rights).
    pub username: Option<String>,
    pub password: Option<String>,
    /// A site's lease lives this long without a renewal; a dead node's sites move after about
    /// this long. Renewed every third of it.
    pub lease_ttl_s: f64,
    /// Sites each node may hold, by node name (`simpang run --node NAME`); `--capacity`
    /// overrides it. Set it from `simpang bench --find-max` on that node's CPU. A node not
    /// listed takes as many as it is given.
    pub capacity: BTreeMap<String, u32>,
    /// JetStream replicas of the lease bucket when simpang creates it (the cluster size, up to 3).
    pub replicas: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats: Vec::new(),
            username: None,
            password: None,
            lease_ttl_s: 20.0,
            capacity: BTreeMap::new(),
            replicas: 3,
        }
    }
}

impl ClusterConfig {
    /// Whether a node name can be a KV key token (`node.<name>`) and a metric label.
    pub fn valid_node_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    pub(super) fn validate(&self, root: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let c = root.key("cluster");
        for (i, url) in self.nats.iter().enumerate() {
            let ok = ["nats://", "tls://"]
                .iter()
                .any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                bad(
                    c.key("nats").index(i),
                    format!(
                        "{url:?} is not a NATS client URL (nats://HOST:PORT or tls://HOST:PORT)"
                    ),
                );
            } else if self.nats[..i].contains(url) {
                bad(c.key("nats").index(i), format!("{url:?} is listed twice"));
            }
        }
        if self.password.is_some() && self.username.is_none() {
            bad(c.key("password"), "is set without cluster.username".into());
        }
        if !(self.lease_ttl_s >= MIN_LEASE_TTL_S && self.lease_ttl_s <= 600.0) {
            bad(
                c.key("lease_ttl_s"),
                format!(
                    "must be in {MIN_LEASE_TTL_S}..=600 seconds (renewals must outlast a JetStream leader election), got {}",
                    self.lease_ttl_s
                ),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            bad(
                c.key("replicas"),
                format!("must be 1..=5, got {}", self.replicas),
            );
        }
        for (name, n) in &self.capacity {
            if !Self::valid_node_name(name) {
                bad(
                    c.key("capacity").key(name),
                    "node names are letters, digits, '-' and '_' (at most 64)".into(),
                );
            }
            if *n == 0 {
                bad(
                    c.key("capacity").key(name),
                    "must be at least 1 (a node that should take no site is not started)".into(),
                );
            }
        }
    }

    /// The lease's length and the safety margin: a node stops a site this long before the
    /// server could let its lease run out (the time stopping cameras takes).
    pub fn lease_times(&self) -> (std::time::Duration, std::time::Duration) {
        let ttl = std::time::Duration::from_secs_f64(self.lease_ttl_s.max(MIN_LEASE_TTL_S));
        let margin = (ttl.mul_f64(0.15)).min(std::time::Duration::from_secs(3));
        (ttl, margin)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    const SITE: &str = "[city]\nname = \"Palembang\"\n[[sites]]\nid = \"bkb\"\nname = \"BKB\"\naddress = \"Jl. X\"\nlat = -2.99\nlon = 104.76\nstream = \"rtsp://127.0.0.1:8554/bkb\"\n";

    fn load(cluster: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_str_at(
            &format!("{SITE}[cluster]\n{cluster}\n"),
            Path::new("/etc/simpang/nodes.toml"),
        )
    }

    #[test]
    fn defaults_and_a_good_table() {
        let c = load("").unwrap();
        assert!(c.cluster.nats.is_empty());
        assert_eq!(c.cluster.lease_ttl_s, 20.0);
        let (ttl, margin) = c.cluster.lease_times();
        assert_eq!((ttl.as_secs(), margin.as_secs()), (20, 3));
        let c = load(
            "nats = [\"nats://n1:4222\", \"tls://n2:4222\"]\nlease_ttl_s = 30\n[cluster.capacity]\nnode-1 = 8\n",
        )
        .unwrap();
        assert_eq!(c.cluster.capacity.get("node-1"), Some(&8));
        // A short lease keeps its margin well inside it.
        let c = load("lease_ttl_s = 6").unwrap();
        let (ttl, margin) = c.cluster.lease_times();
        assert!(margin < ttl / 3, "{margin:?} of {ttl:?}");
    }

    #[test]
    fn bad_values_name_file_line_and_field() {
        let cases = [
            (
                "nats = [\"mqtt://n1:1883\"]",
                "cluster.nats[0]",
                "not a NATS client URL",
            ),
            (
                "nats = [\"nats://a:1\", \"nats://a:1\"]",
                "cluster.nats[1]",
                "twice",
            ),
            ("lease_ttl_s = 2", "cluster.lease_ttl_s", "must be in 6"),
            (
                "password = \"x\"",
                "cluster.password",
                "without cluster.username",
            ),
            (
                "[cluster.capacity]\n\"bad name\" = 2",
                "cluster.capacity.bad name",
                "node names",
            ),
            (
                "[cluster.capacity]\nn1 = 0",
                "cluster.capacity.n1",
                "at least 1",
            ),
            ("nodes = 3", "cluster.nodes", "unknown field"),
        ];
        for (text, field, msg) in cases {
            let err = load(text).expect_err(text);
            let p = &err.problems()[0];
            assert_eq!(err.problems().len(), 1, "{text}: {err}");
            assert_eq!(p.field, field, "{text}: {err}");
            assert!(p.message.contains(msg), "{text}: {}", p.message);
            assert_eq!(p.file, Path::new("/etc/simpang/nodes.toml"));
            assert!(p.line > 10, "{text}: line {}", p.line);
        }
    }
}
