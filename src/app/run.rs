//! `simpang run`: cameras -> detection -> tracking -> rules -> incidents -> MQTT, plus the wall.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use prometheus::Registry;
use tracing::{info, warn};

use super::frameloop::{self, FrameLoop, LoopMetrics};
use super::sites::{SiteSlot, Sites};
use super::AppError;
use crate::analytics::SiteAnalytics;
use crate::cluster;
use crate::config::{Config, Site};
use crate::detect::Detector;
use crate::hub::{AnalyticsQueue, Hub, SiteHub};
use crate::incident::{Holder, IncidentService};
use crate::ingest::{self, CameraSettings, Templates};
use crate::metrics::{self, IngestMetrics};
use crate::model::{Labels, SiteId};
use crate::wall::Wall;

/// Arguments of `simpang run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
    /// Run only these sites (comma-separated ids): shards cameras across machines.
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<SiteId>,
    /// Address of the metrics listener (`/metrics`, `/api/status`; overrides `[metrics]
    /// listen`; port 0 picks one, printed as `metrics: http://ADDR/metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Run as node NAME of a cluster: take sites from the config through leases in the NATS
    /// cluster of `[cluster]`, so each runs on one node and a dead node's sites move
    /// (docs/deploy.md). With `--sites`, only those sites are candidates here.
    #[arg(long)]
    pub node: Option<String>,
    /// Sites this node may hold at once (overrides `cluster.capacity.NAME`); set it from
    /// `simpang bench --find-max` on this machine.
    #[arg(long, requires = "node")]
    pub capacity: Option<u32>,
}

pub fn run_main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&args.config)?;
    select_sites(&mut cfg, &args.sites)?;
    if let Some(a) = args.metrics_listen {
        cfg.metrics.listen = a;
    }
    if let Some(node) = &args.node {
        return run_node(cfg, &args.config, node, args.capacity);
    }
    let rt = super::runtime()?;
    rt.block_on(async {
        let running = run(cfg).await?;
        println!("wall: http://{}/", running.http_addr);
        println!("metrics: http://{}/metrics", running.metrics_addr);
        crate::shutdown::signal().await;
        info!("shutting down");
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `simpang run --node NAME`: the pipeline starts with no site; the cluster node starts and
/// stops sites as it wins and loses their leases. SIGINT/SIGTERM drains: every site stops and
/// its lease is given back (so other nodes take it at once), then the pipeline stops.
fn run_node(
    mut cfg: Config,
    file: &std::path::Path,
    name: &str,
    capacity: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let sites: std::collections::HashMap<SiteId, Site> = cfg
        .sites
        .iter()
        .map(|s| (s.id.clone(), s.clone()))
        .collect();
    let order: Vec<SiteId> = cfg.sites.iter().map(|s| s.id.clone()).collect();
    // The wall shows every site of the shared config, served here or not.
    let shown = WallNode {
        name: name.to_string(),
        sites: cfg.sites.clone(),
    };
    cfg.sites.clear();
    let settings = cluster::NodeSettings::new(&cfg.cluster, name, capacity, order)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let registry = Registry::new();
        let node = cluster::Node::connect(
            &cluster_login(&cfg)?,
            &file.display().to_string(),
            settings,
            &registry,
        )
        .await
        .map_err(AppError::from)?;
        let take_wait = cfg.cluster.lease_times().0 / 4;
        let running = Arc::new(start(cfg, registry, Some(node.view()), Some(shown)).await?);
        println!("wall: http://{}/", running.http_addr);
        println!("metrics: http://{}/metrics", running.metrics_addr);
        // What this node stored before it died and never sent goes out first, before any
        // site's lease is taken (a site served here drains its own rows).
        match running.incidents.replay_unserved(REPLAY_WAIT).await {
            Ok(0) => {}
            Ok(n) => info!(
                messages = n,
                "messages left from before sent for sites served elsewhere"
            ),
            Err(e) => warn!(error = %e, "cannot read the outbox for messages left from before"),
        }
        let open = node.open_incidents();
        running
            .incidents
            .share_open_incidents(Arc::new(open.clone()));
        let control = Arc::new(NodeSites {
            running: running.clone(),
            open,
            take_wait,
            sites,
            closing: parking_lot::Mutex::new(std::collections::HashMap::new()),
        });
        let node = node.run(control.clone());
        crate::shutdown::signal().await;
        info!("draining: giving this node's sites back");
        node.drain().await;
        let closing: Vec<_> = control.closing.lock().drain().map(|(_, h)| h).collect();
        for h in closing {
            let _ = h.await;
        }
        drop(control);
        match Arc::try_unwrap(running) {
            Ok(r) => r.stop().await,
            Err(_) => tracing::error!(
                "the pipeline is still in use after the drain; exiting without its orderly stop"
            ),
        }
        info!("node stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `[cluster]` with its login: `cluster.username`/`password` when set, else the nodes' user
/// (`simpang-nodes`) from `mqtt.credentials_file` when that file has it (`simpang
/// mqtt-credentials` writes it with the cluster's users), else none (a cluster without users).
fn cluster_login(cfg: &Config) -> anyhow::Result<crate::config::ClusterConfig> {
    let mut c = cfg.cluster.clone();
    if c.username.is_some() {
        return Ok(c);
    }
    if let Some(path) = &cfg.mqtt.credentials_file {
        let creds = crate::incident::secrets::Credentials::load(path)
            .map_err(|e| anyhow::anyhow!("mqtt.credentials_file {}: {e}", path.display()))?;
        if let Some(l) = creds.login(crate::incident::access::NODES_USER) {
            c.username = Some(l.username);
            c.password = Some(l.password);
        }
    }
    Ok(c)
}

/// How long a node coming back may spend sending the messages it left unsent for sites that
/// other nodes serve now, before it takes sites itself.
const REPLAY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The running pipeline as the cluster node drives it: the config's sites by id.
struct NodeSites {
    running: Arc<Running>,
    /// The cluster's open incidents per site, taken over before a site starts here.
    open: cluster::OpenIncidents,
    /// How long taking them may hold up the start (a quarter of the lease).
    take_wait: std::time::Duration,
    sites: std::collections::HashMap<SiteId, Site>,
    /// MQTT connections still closing after a lost lease, by site: a site starts again only
    /// once its old connection is gone.
    closing: parking_lot::Mutex<std::collections::HashMap<SiteId, tokio::task::JoinHandle<()>>>,
}

impl cluster::SiteControl for NodeSites {
    async fn start_site(&self, site: &SiteId, holder: Holder) -> Result<(), String> {
        let Some(s) = self.sites.get(site) else {
            return Err(format!("site {site} is not in the config"));
        };
        let closing = self.closing.lock().remove(site);
        if let Some(h) = closing {
            let _ = h.await;
        }
        // The incidents its last node left open go on here if the rules confirm them; without
        // the store the site still starts (and may open such an incident a second time).
        let adopted = match tokio::time::timeout(self.take_wait, self.open.take(site, &holder))
            .await
        {
            Ok(Ok(open)) => Some(open),
            Ok(Err(e)) => {
                warn!(site = %site, error = %e, "cannot take over the site's open incidents; starting without them");
                None
            }
            Err(_) => {
                warn!(site = %site, "the site's open incidents did not come in time; starting without them");
                None
            }
        };
        self.running
            .add_site_held(s.clone(), Some(holder), adopted)
            .await
            .map_err(|e| e.to_string())
    }

    async fn stop_site(&self, site: &SiteId, flush: bool) {
        // Not running (it never started, or stopped already): nothing to do.
        if self.running.stop_camera(site.as_str()).await.is_err() {
            return;
        }
        if flush {
            self.running.stop_link(site.as_str()).await;
        } else {
            let (r, id) = (self.running.clone(), site.clone());
            let h = tokio::spawn(async move { r.stop_link(id.as_str()).await });
            self.closing.lock().insert(site.clone(), h);
        }
    }
}

/// Keeps only the named sites (all when `ids` is empty).
pub fn select_sites(cfg: &mut Config, ids: &[SiteId]) -> Result<(), AppError> {
    if ids.is_empty() {
        return Ok(());
    }
    for id in ids {
        if cfg.site(id.as_str()).is_none() {
            return Err(AppError::Other(format!(
                "--sites names {:?}, which is not a site in the config",
                id.as_str()
            )));
        }
    }
    cfg.sites.retain(|s| ids.contains(&s.id));
    Ok(())
}

/// Shared state of the HTTP endpoints of `run`.
#[derive(Clone)]
pub struct HttpState {
    pub registry: Registry,
    pub hub: Arc<Hub>,
    /// The cluster node's name and leases (`run --node`).
    pub node: Option<cluster::NodeView>,
}

/// What starting a site needs besides the site itself: the node's settings and the stages'
/// shared parts. Kept for the life of the pipeline, so a site can start while the others run.
struct Wiring {
    /// The node's config as loaded: ingest, detect, wall and incident settings for every site.
    cfg: Config,
    labels: Labels,
    /// The detector's score threshold per class id.
    thresholds: Vec<f32>,
    analytics_size: (u32, u32),
    templates: Arc<Templates>,
    ingest_metrics: IngestMetrics,
    loop_metrics: LoopMetrics,
    hub: Arc<Hub>,
    sites: Arc<Sites>,
    queue: Arc<AnalyticsQueue>,
}

impl Wiring {
    /// Makes a site's slot and registers it with the hub, the analytics queue and the frame
    /// loop, without its camera yet. `at` says where the site's settings came from, for errors.
    fn register(
        &self,
        site: &Site,
        at: &dyn Fn(&str) -> String,
    ) -> Result<Arc<SiteSlot>, AppError> {
        let id = site.id.clone();
        if self.sites.get(id.as_str()).is_some() {
            return Err(AppError::Other(format!("site {id} is already running")));
        }
        let analytics = SiteAnalytics::new(site, self.labels.clone())
            .map_err(|e| AppError::Other(format!("{}{e}", at(e.field()))))?
            .with_thresholds(self.thresholds.clone());
        let hub = Arc::new(SiteHub::new(id.clone(), Utc::now()));
        let slot = Arc::new(SiteSlot::new(
            Arc::new(site.clone()),
            hub.clone(),
            analytics,
        ));
        self.sites
            .insert(id.clone(), slot.clone())
            .map_err(|_| AppError::Other(format!("site {id} is already running")))?;
        if self.hub.insert(hub).is_err() {
            self.sites.remove(id.as_str());
            return Err(AppError::Other(format!("site {id} is already in the hub")));
        }
        self.loop_metrics.touch(&id);
        self.queue.add(id);
        Ok(slot)
    }

    fn start_camera(&self, slot: &SiteSlot) -> Result<(), AppError> {
        let settings = CameraSettings::for_site(&self.cfg, &slot.config, self.analytics_size);
        slot.set_camera(ingest::spawn_camera(
            settings,
            self.templates.clone(),
            slot.hub.clone(),
            self.queue.clone(),
            self.ingest_metrics.clone(),
        )?);
        Ok(())
    }

    /// Takes a site out of the hub, the queue and the registry (its camera is the caller's to
    /// stop).
    fn unregister(&self, id: &str) -> Option<Arc<SiteSlot>> {
        let slot = self.sites.remove(id)?;
        self.queue.remove(&slot.id);
        self.hub.remove(id);
        Some(slot)
    }
}

/// A running pipeline; [`Running::stop`] tears it down.
pub struct Running {
    /// The wall (behind its sign-in).
    pub http_addr: SocketAddr,
    /// `/metrics`, `/api/status`, `/healthz` (no sign-in; loopback by default).
    pub metrics_addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub registry: Registry,
    wiring: Wiring,
    /// Sites start and stop one at a time.
    changes: tokio::sync::Mutex<()>,
    frame_loop: FrameLoop,
    incidents: IncidentService,
    wall: Wall,
    http: Vec<tokio::task::JoinHandle<()>>,
    http_stop: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// The ids of the sites running now, in the order they started.
    pub fn site_ids(&self) -> Vec<SiteId> {
        self.wiring.sites.ids()
    }

    /// The slot of a running site.
    pub fn site(&self, id: &str) -> Option<Arc<SiteSlot>> {
        self.wiring.sites.get(id)
    }

    /// The managed MQTT broker (`mqtt.broker = "embedded"`): its files and logins.
    pub fn managed_broker(&self) -> Option<Arc<crate::incident::ManagedBroker>> {
        self.incidents.managed_broker()
    }

    /// Starts a site while the others run: its camera, tracker and rules, its slots in the hub,
    /// its incidents, status and counts over its own MQTT connection, and its wall outputs. The
    /// site is checked as a config file's `[[sites]]` would be; an id already running is
    /// refused.
    ///
    /// The wall's page, grid and RTSP mounts are laid out at start: a cluster node's page has a
    /// tile for every site of the shared config from the start, and a site started later plays
    /// in it from this node (browser tile, MJPEG, snapshot); the RTSP mounts and the mosaic keep
    /// the sites served at start (docs/wall.md).
    pub async fn add_site(&self, site: Site) -> Result<(), AppError> {
        self.add_site_held(site, None, None).await
    }

    /// [`Running::add_site`] for a site this process serves as a cluster node under a lease
    /// (`holder`): its status messages name the node and carry the lease's fencing token.
    pub async fn add_site_held(
        &self,
        site: Site,
        holder: Option<Holder>,
        adopted: Option<Vec<crate::incident::OpenIncident>>,
    ) -> Result<(), AppError> {
        let _one = self.changes.lock().await;
        let mut probe = self.wiring.cfg.clone();
        probe.sites = vec![site.clone()];
        let problems: Vec<String> = probe
            .validate()
            .into_iter()
            .map(|(field, message)| {
                let field = field.to_string();
                let field = field.strip_prefix("sites[0].").unwrap_or(&field);
                format!("field `{field}`: {message}")
            })
            .collect();
        if !problems.is_empty() {
            return Err(AppError::Other(format!(
                "site {:?}: {}",
                site.id,
                problems.join("; ")
            )));
        }
        let slot = self.wiring.register(&site, &|field| {
            format!("site {:?}: field `{field}`: ", site.id)
        })?;
        if let Err(e) = self
            .incidents
            .add_site_held(&site, Some(slot.hub.clone()), holder, adopted)
            .await
        {
            self.wiring.unregister(site.id.as_str());
            return Err(e.into());
        }
        if let Err(e) = self.wiring.start_camera(&slot) {
            self.wiring.unregister(site.id.as_str());
            self.incidents.remove_site(site.id.as_str()).await;
            return Err(e);
        }
        // The site runs without its wall outputs rather than not at all.
        if let Err(e) = self.wall.add_site(&site, slot.hub.clone()) {
            tracing::error!(site = %slot.id, error = %e, "the site runs, but its wall outputs did not start");
        }
        info!(site = %slot.id, "site started");
        Ok(())
    }

    /// Stops a running site while the others go on: its camera is torn down, its tracker and
    /// rules are dropped, a frame of it still in the detector is let go, it leaves the hub, and
    /// its MQTT connection flushes and says the site is offline (`shutdown`).
    pub async fn remove_site(&self, id: &str) -> Result<(), AppError> {
        let _one = self.changes.lock().await;
        self.camera_off(id).await?;
        self.incidents.remove_site(id).await;
        info!(site = %id, "site stopped");
        Ok(())
    }

    /// The first half of [`Running::remove_site`]: the camera, tracker and rules stop and the
    /// site leaves the hub; its MQTT connection stays for [`Running::stop_link`]. A cluster
    /// node that lost a lease stops every camera at once this way.
    pub async fn stop_camera(&self, id: &str) -> Result<(), AppError> {
        let _one = self.changes.lock().await;
        self.camera_off(id).await
    }

    /// The second half: the site's MQTT connection flushes (for a few seconds at most) and says
    /// offline. Not under the start/stop lock, so a slow flush holds up no other site; the
    /// caller must not start the site again before this returns.
    pub async fn stop_link(&self, id: &str) {
        if self.incidents.remove_site(id).await {
            info!(site = %id, "site stopped");
        }
    }

    async fn camera_off(&self, id: &str) -> Result<(), AppError> {
        let slot = self
            .wiring
            .unregister(id)
            .ok_or_else(|| AppError::Other(format!("site {id:?} is not running")))?;
        // Its viewers are let go at once, so their tiles find where the site goes.
        self.wall.remove_site(id);
        if let Some(camera) = slot.take_camera() {
            // Joining the supervisor waits for its pipeline to reach NULL: off the async threads.
            let _ = tokio::task::spawn_blocking(move || camera.stop()).await;
        }
        // A cluster node's fencing is judged by this line's time (tests/cluster_nodes.rs).
        info!(site = %slot.id, "camera stopped");
        Ok(())
    }

    pub async fn stop(self) {
        self.wiring.queue.close();
        let slots = self.wiring.sites.all();
        let frame_loop = self.frame_loop;
        let _ = tokio::task::spawn_blocking(move || {
            frame_loop.stop();
            let cams: Vec<_> = slots.iter().filter_map(|s| s.take_camera()).collect();
            for c in &cams {
                c.signal_stop();
            }
            for c in cams {
                c.stop();
            }
        })
        .await;
        let _ = self.http_stop.send(true);
        // The wall's MJPEG and SSE responses never end by themselves: stop the wall first so a
        // graceful HTTP shutdown is not held open by a connected viewer.
        self.wall.stop();
        for h in self.http {
            let _ = h.await;
        }
        self.incidents.stop().await;
    }
}

/// Starts every stage for the sites of `cfg` and returns once they are running.
pub async fn run(cfg: Config) -> Result<Running, AppError> {
    start(cfg, Registry::new(), None, None).await
}

/// A cluster node's wall: its name and every site of the shared config.
struct WallNode {
    name: String,
    sites: Vec<Site>,
}

/// The wall's view of the deployment: a cluster node shows every site of the shared config
/// and reads each site's status (with the broker's read-only `viewer` login) to play the ones
/// other nodes serve from there.
fn deployment(
    cfg: &Config,
    node: Option<WallNode>,
    managed: Option<Arc<crate::incident::ManagedBroker>>,
) -> Result<crate::wall::Deployment, AppError> {
    let Some(node) = node else {
        return Ok(crate::wall::Deployment::local(cfg));
    };
    let targets = crate::incident::BrokerTarget::from_config(cfg)
        .map_err(|e| AppError::Other(e.to_string()))?;
    let (login, keys) = crate::wall::directory::status_login(cfg, managed.as_deref());
    Ok(crate::wall::Deployment {
        sites: node.sites,
        status: Some(crate::wall::directory::StatusSource {
            targets,
            login,
            // `_` after the prefix: never a site connection's `{client_id}-{site}` (NATS takes
            // no `.` in MQTT client ids).
            client_id: format!("{}_wall_{}", cfg.mqtt.client_id, node.name),
            reconnect: (
                std::time::Duration::from_secs_f64(cfg.mqtt.reconnect_initial_s),
                std::time::Duration::from_secs_f64(cfg.mqtt.reconnect_max_s),
            ),
        }),
        node: Some(node.name),
        keys,
    })
}

/// [`run`] with the metrics registry given (a cluster node registers its own families first),
/// the node's view for `/api/status` and, for a cluster node, the sites its wall shows.
async fn start(
    mut cfg: Config,
    registry: Registry,
    node: Option<cluster::NodeView>,
    wall_node: Option<WallNode>,
) -> Result<Running, AppError> {
    ingest::init_gstreamer()?;
    // The wall's listener first: its address (port 0 picks one) is the wall URL every site's
    // status message carries.
    let (listener, http_addr) = bind(cfg.wall.listen).await?;
    cfg.wall.listen = http_addr;
    let ingest_metrics = IngestMetrics::register(&registry)?;
    let loop_metrics = LoopMetrics::register(&registry)?;
    let templates = Arc::new(Templates::load(
        cfg.ingest
            .pipelines_dir
            .as_ref()
            .map(|p| cfg.resolve(p))
            .as_deref(),
    )?);

    // The detector first: its input size is what the analytics branch scales to, its class
    // names are what the rules and the overlay speak. A bad model stops here, named, before any
    // camera starts.
    let detector = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || Detector::load(&cfg))
            .await
            .map_err(|e| AppError::Other(format!("detector loading failed: {e}")))??
    };
    let wiring = Wiring {
        labels: detector.labels(),
        thresholds: detector.thresholds(),
        analytics_size: detector.input_size(),
        templates,
        ingest_metrics,
        loop_metrics: loop_metrics.clone(),
        hub: Hub::new([]),
        sites: Arc::new(Sites::default()),
        queue: AnalyticsQueue::new([]),
        cfg,
    };
    let cfg = &wiring.cfg;
    // Every site's slot before any stage starts: the incident stage and the wall find them in
    // the hub by id.
    for (i, site) in cfg.sites.iter().enumerate() {
        wiring.register(site, &|field| {
            cfg.locate(&format!("sites[{i}].{field}"))
                .map(|a| a + ": ")
                .unwrap_or_default()
        })?;
    }
    let hub = wiring.hub.clone();

    // Incidents: lifecycle, snapshots, outbox, MQTT (src/incident).
    let incidents = IncidentService::start(cfg, hub.clone(), &registry).await?;
    // Wall: MJPEG tiles, SSE feed, annotated RTSP out (src/wall).
    let shown = deployment(cfg, wall_node, incidents.managed_broker())?;
    let wall = Wall::start_for(cfg, hub.clone(), wiring.labels.clone(), &registry, shown)?;

    let (metrics_listener, metrics_addr) = bind(cfg.metrics.listen).await?;

    // Detection workers -> tracker and rules per camera -> hub and incident stage.
    let frame_loop = frameloop::spawn(
        cfg,
        Arc::new(detector),
        wiring.sites.clone(),
        wiring.queue.clone(),
        Arc::new(incidents.sender()),
        loop_metrics,
        frameloop::LoopMode::Live,
    )
    .map_err(|e| AppError::Other(format!("cannot start detection workers: {e}")))?;

    for slot in wiring.sites.all() {
        wiring.start_camera(&slot)?;
    }

    let state = HttpState {
        registry: registry.clone(),
        hub: hub.clone(),
        node,
    };
    // Operations: open, so on its own listener (loopback unless `[metrics] listen` says
    // otherwise); the wall's listener serves only the wall, behind its sign-in.
    let ops = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/status", get(status_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
    let (http_stop, stop_rx) = tokio::sync::watch::channel(false);
    let serve = |listener, app, limits: &crate::config::HttpConfig, what: &'static str| {
        let mut stop = stop_rx.clone();
        let limits = crate::guard::Limits::from(limits);
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::guard::serve(listener, app, limits, stopped).await {
                tracing::error!(error = %e, listener = what, "HTTP server failed");
            }
        })
    };
    let http = vec![
        serve(listener, wall.router(), &cfg.wall.http, "wall"),
        serve(metrics_listener, ops, &cfg.metrics.http, "metrics"),
    ];
    info!(%http_addr, %metrics_addr, sites = wiring.sites.len(), "simpang running");
    Ok(Running {
        http_addr,
        metrics_addr,
        hub,
        registry,
        wiring,
        changes: tokio::sync::Mutex::new(()),
        frame_loop,
        incidents,
        wall,
        http,
        http_stop,
    })
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), AppError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| AppError::Listen { addr, source })?;
    Ok((listener, local))
}

async fn metrics_handler(State(st): State<HttpState>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        metrics::render(&st.registry),
    )
}

async fn status_handler(State(st): State<HttpState>) -> impl IntoResponse {
    let sites: Vec<_> = st
        .hub
        .sites()
        .iter()
        .map(|s| {
            let status = s.status.load();
            // The analytics' current view, for tools that take counts out without MQTT: each
            // zone's level and count, each counting line's running totals since start.
            let results = s.results.load();
            let zones: Vec<_> = results
                .zones
                .iter()
                .map(|z| serde_json::json!({ "zone": z.zone, "level": z.level, "count": z.count }))
                .collect();
            let lines: Vec<_> = results
                .lines
                .iter()
                .map(
                    |l| serde_json::json!({ "line": l.line, "in": l.in_count, "out": l.out_count }),
                )
                .collect();
            serde_json::json!({
                "site": s.id,
                "status": **status,
                "zones": zones,
                "lines": lines,
            })
        })
        .collect();
    match &st.node {
        Some(n) => Json(serde_json::json!({ "sites": sites, "cluster": n.json() })),
        None => Json(serde_json::json!({ "sites": sites })),
    }
}
