//! Cluster nodes: `simpang run --node NAME` takes its sites from the shared config through
//! leases in the broker cluster's NATS JetStream key-value store, so that a site runs on one
//! node at a time and a dead node's sites start elsewhere (docs/deploy.md).
//!
//! ```text
//! node loop ── watch of the bucket (leases, node records) ─▶ view
//!     scan (1 s) / delete marker seen ─▶ placement (least loaded first) ─▶ acquire (CAS + TTL)
//!     every TTL/3 ─▶ renew each held lease (CAS on our revision), heartbeat node.<name>
//! watchdog (own task, 50 ms) ─▶ a lease not renewed by sent + TTL - margin: stop the site
//! actuator (own task) ─▶ start / stop the site's cameras, one change at a time, in order
//! ```
//!
//! Safety does not depend on the network: the server's TTL counts from when it stored the
//! write, which is after the node sent it, so a node that stops its site at `sent + TTL -
//! margin` has stopped before any other node can acquire the key. The lease's revision at
//! acquisition is the fencing token: the site's status messages carry it, and a later holder's
//! is always larger. `wrong last sequence` on a renewal means the key moved on: stop at once.
//!
//! [`lease`] holds the KV operations, [`placement`] the (pure) choice of node, `node.rs` the
//! node's tasks.

pub mod handoff;
pub mod lease;
mod node;
pub mod placement;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::ClusterConfig;
use crate::incident::Holder;
use crate::metrics;
use crate::model::SiteId;
pub use handoff::OpenIncidents;
pub use lease::{KeyState, Leases, NodeRecord, Write, BUCKET};
use node::{actuator, watchdog, NodeLoop};
use placement::NodeLoad;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("`simpang run --node` needs the NATS cluster: set `nats = [\"nats://HOST:PORT\", …]` in the `[cluster]` table of {file}")]
    NoUrls { file: String },
    #[error("{file}: field `cluster.nats[{index}]`: {url:?}: {error}")]
    Url {
        file: String,
        index: usize,
        url: String,
        error: String,
    },
    #[error("--node {0:?}: a node name is letters, digits, '-' and '_' (at most 64)")]
    NodeName(String),
    #[error("--capacity 0: a node must be able to hold at least one site")]
    Capacity,
    #[error("cannot reach the NATS cluster at {urls}: {error}")]
    Connect { urls: String, error: String },
    #[error("JetStream KV bucket {0}")]
    Bucket(String),
    #[error("cluster metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// How a node starts and stops the sites it wins: `simpang run` implements it over its running
/// pipeline (src/app/run.rs); the lease logic needs nothing else of it.
pub trait SiteControl: Send + Sync + 'static {
    /// Starts the site's camera, rules and MQTT connection under `holder`. An error means the
    /// site cannot run here (bad settings): the node gives the lease back.
    fn start_site(
        &self,
        site: &SiteId,
        holder: Holder,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the site's camera, then its MQTT connection. A site not running is a no-op.
    /// `flush`: return only once the connection has published what it can and said `offline`
    /// (a drain, before the lease is released). Otherwise (a lease lost or running out) return
    /// as soon as the camera stopped and let the connection close meanwhile: with the network
    /// gone, its flush would take seconds per site, and every site must stop within the margin.
    fn stop_site(&self, site: &SiteId, flush: bool) -> impl Future<Output = ()> + Send;
}

/// Who this node is and what it may take.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    pub name: String,
    /// Sites it may hold at once; `None` is no limit.
    pub capacity: Option<u32>,
    /// The sites it may take, in the config's order.
    pub sites: Vec<SiteId>,
    pub ttl: Duration,
    /// Stop this long before the lease could run out (the time stopping cameras takes).
    pub margin: Duration,
}

impl NodeSettings {
    /// From `[cluster]`, `--node` and `--capacity` (which wins over `cluster.capacity.NAME`).
    pub fn new(
        cfg: &ClusterConfig,
        name: &str,
        capacity: Option<u32>,
        sites: Vec<SiteId>,
    ) -> Result<Self, ClusterError> {
        if !ClusterConfig::valid_node_name(name) {
            return Err(ClusterError::NodeName(name.to_string()));
        }
        if capacity == Some(0) {
            return Err(ClusterError::Capacity);
        }
        let (ttl, margin) = cfg.lease_times();
        Ok(Self {
            name: name.to_string(),
            capacity: capacity.or_else(|| cfg.capacity.get(name).copied()),
            sites,
            ttl,
            margin,
        })
    }
}

/// Prometheus families of a node (`simpang_cluster_*`).
#[derive(Clone)]
struct ClusterMetrics {
    held: IntGauge,
    capacity: IntGauge,
    site_held: IntGaugeVec,
    lease: IntGaugeVec,
    acquired: IntCounter,
    lost: IntCounterVec,
    released: IntCounter,
    renew_failures: IntCounter,
}

impl ClusterMetrics {
    fn register(r: &Registry, s: &NodeSettings) -> Result<Self, prometheus::Error> {
        let info = metrics::int_gauge_vec(
            r,
            "simpang_cluster_node_info",
            "1: this process is cluster node `node` (simpang run --node)",
            &["node"],
        )?;
        info.with_label_values(&[&s.name]).set(1);
        let m = Self {
            held: metrics::int_gauge(
                r,
                "simpang_cluster_sites_held",
                "Site leases this node holds now",
            )?,
            capacity: metrics::int_gauge(
                r,
                "simpang_cluster_capacity",
                "Sites this node may hold (-1: no limit)",
            )?,
            site_held: metrics::int_gauge_vec(
                r,
                "simpang_cluster_site_held",
                "1 while this node holds the site's lease (its cameras run here)",
                &["site"],
            )?,
            lease: metrics::int_gauge_vec(
                r,
                "simpang_cluster_lease_token",
                "The fencing token (revision at acquisition) of the site's lease held here; 0 when not held",
                &["site"],
            )?,
            acquired: metrics::int_counter(
                r,
                "simpang_cluster_lease_acquired_total",
                "Site leases this node acquired",
            )?,
            lost: metrics::int_counter_vec(
                r,
                "simpang_cluster_lease_lost_total",
                "Site leases this node lost: `taken` (the key moved on), `deadline` (no renewal in time: stopped before it could expire), `failed` (the site would not start)",
                &["reason"],
            )?,
            released: metrics::int_counter(
                r,
                "simpang_cluster_lease_released_total",
                "Site leases this node gave back (drain, shutdown)",
            )?,
            renew_failures: metrics::int_counter(
                r,
                "simpang_cluster_lease_renew_failures_total",
                "Renewals that got no answer or an error that says nothing of the key (retried)",
            )?,
        };
        m.capacity.set(s.capacity.map_or(-1, i64::from));
        for site in &s.sites {
            m.site_held.with_label_values(&[site.as_str()]).set(0);
            m.lease.with_label_values(&[site.as_str()]).set(0);
        }
        Ok(m)
    }
}

/// A lease this node holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    /// The revision at acquisition: the fencing token.
    token: u64,
    /// The revision of the last successful write (the next renewal's expected revision).
    rev: u64,
    /// `sent + TTL - margin` of the last successful write: the site stops then unless renewed.
    valid_until: Instant,
}

enum Action {
    Start(SiteId, Holder),
    /// The site, and whether to wait for its MQTT connection's flush ([`SiteControl::stop_site`]).
    Stop(SiteId, bool),
    /// Answered once every action before it is done.
    Barrier(oneshot::Sender<()>),
}

/// What the node loop, the watchdog and the actuator share.
struct Shared {
    s: NodeSettings,
    held: Mutex<BTreeMap<SiteId, Held>>,
    /// Sites that would not start here, not tried again before the instant.
    failed: Mutex<HashMap<SiteId, Instant>>,
    draining: AtomicBool,
    // Unbounded, yet bounded by the sites: one Start per acquisition and one Stop per loss,
    // and each acquisition needs a server round trip. The watchdog must never wait on it.
    actions: mpsc::UnboundedSender<Action>,
    m: ClusterMetrics,
}

impl Shared {
    fn count(&self) -> u32 {
        u32::try_from(self.held.lock().len()).unwrap_or(u32::MAX)
    }

    fn me(&self) -> NodeLoad {
        NodeLoad {
            name: self.s.name.clone(),
            capacity: self.s.capacity,
            held: self.count(),
        }
    }

    fn record(&self) -> NodeRecord {
        NodeRecord {
            capacity: self.s.capacity,
            held: self.count(),
            accepting: !self.draining.load(Ordering::SeqCst),
        }
    }

    fn holds(&self, site: &SiteId, token: u64) -> bool {
        self.held.lock().get(site).is_some_and(|h| h.token == token)
    }

    /// Records a new lease and queues its start.
    fn won(&self, site: &SiteId, rev: u64, sent: Instant) {
        let valid_until = sent + self.s.ttl - self.s.margin;
        self.held.lock().insert(
            site.clone(),
            Held {
                token: rev,
                rev,
                valid_until,
            },
        );
        self.m.acquired.inc();
        self.m.held.set(i64::from(self.count()));
        self.m.site_held.with_label_values(&[site.as_str()]).set(1);
        self.m
            .lease
            .with_label_values(&[site.as_str()])
            .set(i64::try_from(rev).unwrap_or(i64::MAX));
        info!(site = %site, lease = rev, "lease acquired: starting the site");
        let _ = self.actions.send(Action::Start(
            site.clone(),
            Holder {
                node: self.s.name.clone(),
                lease: rev,
            },
        ));
    }

    /// Forgets the lease `token` of `site` (if it is still the one held) and queues the stop
    /// of its cameras. Returns the lease's last revision when it was held.
    fn drop_lease(&self, site: &SiteId, token: u64, reason: Option<&str>) -> Option<u64> {
        // Only a drain (no reason) waits for the connection's flush.
        let flush = reason.is_none();
        let rev = {
            let mut held = self.held.lock();
            match held.get(site) {
                Some(h) if h.token == token => {
                    let rev = h.rev;
                    held.remove(site);
                    rev
                }
                _ => return None,
            }
        };
        if let Some(r) = reason {
            self.m.lost.with_label_values(&[r]).inc();
        }
        self.m.held.set(i64::from(self.count()));
        self.m.site_held.with_label_values(&[site.as_str()]).set(0);
        self.m.lease.with_label_values(&[site.as_str()]).set(0);
        let _ = self.actions.send(Action::Stop(site.clone(), flush));
        Some(rev)
    }
}

/// What `/api/status` shows of the node: its name, capacity and the leases it holds.
#[derive(Clone)]
pub struct NodeView(Arc<Shared>);

impl NodeView {
    pub fn json(&self) -> serde_json::Value {
        let leases: Vec<_> = self
            .0
            .held
            .lock()
            .iter()
            .map(|(site, h)| serde_json::json!({ "site": site, "lease": h.token, "revision": h.rev }))
            .collect();
        serde_json::json!({
            "node": self.0.s.name,
            "capacity": self.0.s.capacity,
            "draining": self.0.draining.load(Ordering::SeqCst),
            "leases": leases,
        })
    }
}

/// A cluster node connected to the coordination store, not yet taking sites
/// ([`Node::connect`] then [`Node::run`]): the pipeline's status endpoint needs its
/// [`NodeView`] before the node can start sites on the pipeline.
pub struct Node {
    shared: Arc<Shared>,
    leases: Leases,
    open: OpenIncidents,
    actions: mpsc::UnboundedReceiver<Action>,
}

/// A node taking and holding sites; [`RunningNode::drain`] gives them back.
pub struct RunningNode {
    shared: Arc<Shared>,
    leases: Leases,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Connects to the NATS cluster of `[cluster]` and opens (or creates) the lease bucket.
    pub async fn connect(
        cfg: &ClusterConfig,
        file: &str,
        settings: NodeSettings,
        registry: &Registry,
    ) -> Result<Node, ClusterError> {
        if cfg.nats.is_empty() {
            return Err(ClusterError::NoUrls {
                file: file.to_string(),
            });
        }
        let mut urls = Vec::new();
        for (index, u) in cfg.nats.iter().enumerate() {
            let addr: async_nats::ServerAddr =
                u.parse().map_err(|e: std::io::Error| ClusterError::Url {
                    file: file.to_string(),
                    index,
                    url: u.clone(),
                    error: e.to_string(),
                })?;
            urls.push(addr);
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("simpang-node-{}", settings.name))
            .connection_timeout(Duration::from_secs(2))
            // Never give up reconnecting: the watchdog, not the client, decides when to stop.
            .max_reconnects(None);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        let client = opts
            .connect(urls)
            .await
            .map_err(|e| ClusterError::Connect {
                urls: cfg.nats.join(", "),
                error: e.to_string(),
            })?;
        // A request must not outlive a good part of the lease: the watchdog bounds it anyway.
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(settings.ttl / 4)
            .build(client);
        let open = OpenIncidents::open(&js, cfg.replicas.min(3)).await?;
        let leases = Leases::open(js, &settings.name, settings.ttl, cfg.replicas.min(3)).await?;
        let m = ClusterMetrics::register(registry, &settings)?;
        let (tx, rx) = mpsc::unbounded_channel();
        info!(node = %settings.name, capacity = ?settings.capacity, sites = settings.sites.len(), ttl_s = settings.ttl.as_secs_f64(), margin_s = settings.margin.as_secs_f64(), "cluster node connected; lease bucket {BUCKET}");
        Ok(Node {
            shared: Arc::new(Shared {
                s: settings,
                held: Mutex::new(BTreeMap::new()),
                failed: Mutex::new(HashMap::new()),
                draining: AtomicBool::new(false),
                actions: tx,
                m,
            }),
            leases,
            open,
            actions: rx,
        })
    }

    pub fn view(&self) -> NodeView {
        NodeView(self.shared.clone())
    }

    /// The cluster's open incidents per site: the pipeline saves to it, and takes a site's
    /// over before the site starts here (src/incident/handoff.rs).
    pub fn open_incidents(&self) -> OpenIncidents {
        self.open.clone()
    }

    /// Starts taking sites: the node loop, the watchdog and the actuator on their own tasks.
    pub fn run<C: SiteControl>(self, control: Arc<C>) -> RunningNode {
        let span = tracing::info_span!("node", node = %self.shared.s.name);
        let cancel = CancellationToken::new();
        let dog = {
            let (sh, cancel) = (self.shared.clone(), cancel.clone());
            tokio::spawn(watchdog(sh, cancel).instrument(span.clone()))
        };
        let act = tokio::spawn(
            actuator(
                self.shared.clone(),
                self.leases.clone(),
                control,
                self.actions,
            )
            .instrument(span.clone()),
        );
        let main = {
            let l = NodeLoop::new(self.shared.clone(), self.leases.clone());
            tokio::spawn(l.run(cancel.clone()).instrument(span))
        };
        RunningNode {
            shared: self.shared,
            leases: self.leases,
            cancel,
            tasks: vec![main, dog, act],
        }
    }
}

impl RunningNode {
    pub fn view(&self) -> NodeView {
        NodeView(self.shared.clone())
    }

    /// Gives every site back, one by one: its cameras stop, then its lease is deleted (only
    /// while still ours), so another node takes it at once instead of after the TTL. Renewals
    /// go on meanwhile. Then the node's record goes and its tasks end.
    pub async fn drain(mut self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.leases.write_node(&self.shared.record()).await;
        // Whatever start is queued happens first, so nothing starts after its stop.
        let (tx, rx) = oneshot::channel();
        if self.shared.actions.send(Action::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
        let sites: Vec<(SiteId, u64)> = self
            .shared
            .held
            .lock()
            .iter()
            .map(|(s, h)| (s.clone(), h.token))
            .collect();
        info!(
            sites = sites.len(),
            "draining: stopping each site, then giving its lease back"
        );
        for (site, token) in sites {
            if let Some(rev) = self.shared.drop_lease(&site, token, None) {
                // The Stop just queued runs before this barrier answers.
                let (tx, rx) = oneshot::channel();
                if self.shared.actions.send(Action::Barrier(tx)).is_ok() {
                    let _ = rx.await;
                }
                if self.leases.release(site.as_str(), rev).await {
                    self.shared.m.released.inc();
                    info!(site = %site, "lease released");
                } else {
                    warn!(site = %site, "could not release the lease (it runs out by itself)");
                }
            }
        }
        self.leases.forget_node().await;
        self.cancel.cancel();
        // The actuator ends when the last sender goes: the loop's and the watchdog's copies go
        // with their tasks, this one with `shared`'s after the join below.
        let main_and_dog: Vec<_> = self.tasks.drain(..2).collect();
        for t in main_and_dog {
            let _ = t.await;
        }
        let (tx, rx) = oneshot::channel();
        if self.shared.actions.send(Action::Barrier(tx)).is_ok() {
            let _ = rx.await;
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}
