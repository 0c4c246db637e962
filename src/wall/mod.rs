//! The operators' video wall: in the browser, each camera's own H.264 played as it arrived
//! (Media Source Extensions over a WebSocket per tile) with the analytics drawn on a canvas over
//! it, plus the SSE incident feed; and burned-in outputs for wall controllers and VMS software
//! (MJPEG tiles, annotated RTSP per site and as a mosaic).
//!
//! ```text
//! hub.encoded (camera's H.264, before decoding) ─▶ live.rs: fMP4 (fmp4.rs) ─▶ WS /live/{site} ─▶ browser tile
//! hub.results (latest analytics) ────────────────▶ live.rs: JSON keyed by media time ─▶ same WS ─▶ canvas overlay
//!
//! hub.display (I420, only while watched) ─┐
//! hub.results ────────────────────────────┼─▶ site worker (tile.rs): draw on I420 (scene.rs, draw/canvas.rs)
//! hub.status ─────────────────────────────┘      ├─▶ jpegenc once ─▶ watch ─▶ every MJPEG viewer (http.rs)
//!                                                ├─▶ appsrc of /annotated/{site} (shared media, x264)
//!                                                └─▶ tile slot ─▶ mosaic (mosaic.rs) ─▶ /annotated/wall
//! hub.incidents ─▶ feed.rs ─▶ SSE /events (+ status once a second)
//! ```
//!
//! A browser viewer costs the copy of the bytes it is sent. Nothing is decoded for display,
//! scaled, drawn or encoded for a burned-in output nobody watches (the site worker tells ingest
//! the rate its outputs take, 0 without viewers), nothing in the wall ever blocks the camera or
//! analytics threads (it only reads latest-value slots and bounded broadcasts), and each
//! burned-in output is encoded once however many clients share it. Entry point for `simpang
//! run`: [`Wall::start`]; its [`Wall::router`] is every wall route, `/live` WebSocket included,
//! behind the sign-in ([`auth`]; RTSP out checks the same device accounts, [`rtsp_auth`]).
//! docs/wall.md has the URLs, settings and cost figures; docs/security.md who may reach what.
//!
//! One wall for all nodes: a cluster node's wall has a tile for every site of the shared config
//! ([`Deployment`]). The sites this process serves ([`tile::LocalSites`], added and removed as
//! leases come and go: [`Wall::add_site`], [`Wall::remove_site`]) play from here; the others
//! from the node their retained status names ([`directory`]), over that node's `/live/{site}`
//! with a one-site ticket ([`ticket`]).

pub mod accounts;
pub mod auth;
pub mod cli;
pub mod directory;
pub mod feed;
pub mod fmp4;
pub mod http;
pub mod jpeg;
pub mod live;
pub mod meter;
pub mod metrics;
pub mod mosaic;
pub mod rtsp;
pub mod rtsp_auth;
pub mod scene;
pub mod ticket;
pub mod tile;
pub mod words;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::Registry;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, Site};
use crate::hub::{Hub, SiteHub};
use crate::model::Labels;
use crate::time::Timezone;
use directory::{Directory, StatusSource};
use metrics::WallMetrics;
use mosaic::Grid;
use rtsp::{EncoderSettings, RtspOut};
use scene::SiteScene;
use tile::{LocalSites, SiteOutput, Wake, WorkerShared};

#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("wall metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("wall: GStreamer: {0}")]
    Gst(String),
    #[error("wall: annotated RTSP out: {0}")]
    Rtsp(String),
    #[error("wall: cannot start a worker thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("wall: site {0:?} is in the config but not in the hub")]
    UnknownSite(String),
    #[error("wall: must be started inside a tokio runtime")]
    NoRuntime,
    #[error("wall: {0}")]
    Other(String),
}

/// The sites of the deployment the wall shows, and where it learns which process serves the
/// ones this process does not.
pub struct Deployment {
    /// Every site of the shared config, in its order: one tile each.
    pub sites: Vec<Site>,
    /// This process's cluster node name (`run --node`).
    pub node: Option<String>,
    /// The status subscription ([`directory::watch`]); `None`: every site is served here.
    pub status: Option<StatusSource>,
    /// Signing keys by site, for the status messages (`mqtt.sign_messages`).
    pub keys: std::collections::HashMap<String, crate::incident::sign::SigningKey>,
}

impl Deployment {
    /// A single process serving every site of `cfg`.
    pub fn local(cfg: &Config) -> Self {
        Self {
            sites: cfg.sites.clone(),
            node: None,
            status: None,
            keys: Default::default(),
        }
    }
}

/// What starting a site's outputs later needs.
struct SiteMaker {
    labels: Labels,
    tz: Timezone,
    tile: (u32, u32),
    jpeg_quality: u8,
}

/// The running wall outputs.
pub struct Wall {
    shared: Arc<WorkerShared>,
    http: http::HttpState,
    auth: Arc<auth::WallAuth>,
    workers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    maker: SiteMaker,
    rtsp: Option<RtspOut>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cancel: CancellationToken,
}

/// A site as `/api/wall` describes it to the page.
fn page_site(s: &Site, live: bool) -> serde_json::Value {
    json!({
        "id": s.id,
        "name": s.name,
        "address": s.address,
        "mjpeg": format!("/stream/{}.mjpg", s.id),
        "live": live.then(|| format!("/live/{}", s.id)),
        "resolve": live.then(|| format!("/api/live/{}", s.id)),
        "zones": s.zones.iter().map(|z| json!({"id": z.id, "name": z.name, "kind": z.kind})).collect::<Vec<_>>(),
        "lines": s.lines.iter().map(|l| json!({"id": l.id, "name": l.name, "in_name": l.in_name, "out_name": l.out_name})).collect::<Vec<_>>(),
    })
}

/// Series exist from the start, so dashboards show 0 rather than "no data".
fn touch_series(metrics: &WallMetrics, site: &str) {
    for out in ["mjpeg", "rtsp"] {
        metrics.viewers.with_label_values(&[site, out]);
    }
    let id = [site];
    for c in [
        &metrics.jpeg_frames,
        &metrics.frames_rendered,
        &metrics.rtsp_frames,
        &metrics.live_joins,
        &metrics.live_fragments,
        &metrics.live_bytes,
        &metrics.live_skipped,
        &metrics.live_meta,
        &metrics.live_refused,
    ] {
        c.with_label_values(&id);
    }
    metrics.live_viewers.with_label_values(&id);
    metrics.display_demand_fps.with_label_values(&id);
}

impl Wall {
    /// Starts the site workers (idle until someone watches), the RTSP server (unless
    /// `wall.rtsp_port` is 0), the incident feed and the status ticker, for a process that
    /// serves every site of `cfg`. Call inside a tokio runtime.
    pub fn start(
        cfg: &Config,
        hub: Arc<Hub>,
        labels: Labels,
        registry: &Registry,
    ) -> Result<Self, WallError> {
        Self::start_for(cfg, hub, labels, registry, Deployment::local(cfg))
    }

    /// [`Wall::start`] for one process of a deployment: a tile for each of `deployment.sites`,
    /// those of `cfg.sites` served here from the start, the others played from the process that
    /// serves them.
    pub fn start_for(
        cfg: &Config,
        hub: Arc<Hub>,
        labels: Labels,
        registry: &Registry,
        deployment: Deployment,
    ) -> Result<Self, WallError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| WallError::NoRuntime)?;
        crate::ingest::init_gstreamer().map_err(|e| WallError::Gst(e.to_string()))?;
        let w = &cfg.wall;
        let metrics = WallMetrics::register(registry)?;
        let auth = auth::WallAuth::start(cfg, registry)?;
        let mut sites = Vec::with_capacity(cfg.sites.len());
        for s in &cfg.sites {
            let h = hub
                .site(s.id.as_str())
                .ok_or_else(|| WallError::UnknownSite(s.id.to_string()))?;
            touch_series(&metrics, s.id.as_str());
            sites.push(Arc::new(SiteOutput::new(
                h,
                s.name.clone(),
                live::LiveSite::new(s, labels.clone()),
            )));
        }
        // The page shows every site of the deployment (this process's and the others').
        let mut shown: Vec<Site> = deployment.sites.clone();
        for s in &cfg.sites {
            if !shown.iter().any(|d| d.id == s.id) {
                shown.push(s.clone());
            }
        }
        metrics.viewers.with_label_values(&[rtsp::MOSAIC, "rtsp"]);
        metrics.rtsp_frames.with_label_values(&[rtsp::MOSAIC]);
        let shared = Arc::new(WorkerShared {
            stop: AtomicBool::new(false),
            wake: Wake::default(),
            metrics,
            mjpeg_fps: w.mjpeg_fps,
            mosaic_fps: w.mosaic_fps,
            mosaic_sinks: Mutex::new(Vec::new()),
            started: Instant::now(),
        });
        let (cols, rows) = w.grid().unwrap_or((3, 2));
        // The mosaic holds the sites served at start (its picture size is fixed then).
        let grid = Grid::fit(cols, rows, sites.len(), w.tile_width, w.tile_height);
        let page_grid = Grid::fit(cols, rows, shown.len(), w.tile_width, w.tile_height);

        let mut workers = Vec::new();
        let mut rtsp_out = None;
        let started = (|| {
            for (s, cfg_site) in sites.iter().zip(&cfg.sites) {
                let scene = SiteScene::new(
                    cfg_site,
                    labels.clone(),
                    cfg.city.tz(),
                    w.tile_width,
                    w.tile_height,
                );
                workers.push(tile::spawn_worker(
                    s.clone(),
                    scene,
                    shared.clone(),
                    w.jpeg_quality,
                )?);
            }
            workers.push(mosaic::spawn(
                sites.clone(),
                shared.clone(),
                grid,
                w.mosaic_fps,
            )?);
            if w.rtsp_port != 0 {
                let site_enc = EncoderSettings {
                    width: w.tile_width,
                    height: w.tile_height,
                    bitrate_kbps: w.rtsp_bitrate_kbps,
                    key_int_max: 30,
                    threads: 1,
                };
                let mosaic_enc = EncoderSettings {
                    width: grid.width(),
                    height: grid.height(),
                    bitrate_kbps: w.mosaic_bitrate_kbps,
                    // about two seconds between key frames
                    key_int_max: (w.mosaic_fps * 2.0).round().max(1.0) as u32,
                    threads: 2,
                };
                let guard = rtsp_auth::Guard {
                    accounts: auth.accounts(),
                    max_clients: w.auth.rtsp_max_clients as usize,
                    max_clients_per_ip: w.auth.rtsp_max_clients_per_ip as usize,
                };
                rtsp_out = Some(RtspOut::start(
                    w.rtsp_address,
                    w.rtsp_port,
                    &sites,
                    &shared,
                    site_enc,
                    mosaic_enc,
                    guard,
                )?);
            }
            Ok::<_, WallError>(())
        })();
        if let Err(e) = started {
            stop_threads(&shared, workers, rtsp_out);
            return Err(e);
        }

        let feed = Arc::new(feed::Feed::default());
        let (status_tx, status_rx) = tokio::sync::watch::channel(Arc::<str>::from(""));
        let cancel = CancellationToken::new();
        let rtsp_sites: Vec<String> = sites.iter().map(|s| s.id.to_string()).collect();
        let local = Arc::new(LocalSites::new(sites.clone()));
        let directory = match &deployment.status {
            Some(_) => {
                let c = prometheus::IntCounterVec::new(
                    prometheus::Opts::new(
                        "simpang_wall_directory_messages_total",
                        "Site status messages the wall read to find each site's serving node: taken, stale (a smaller lease than one seen), refused (bad data)",
                    ),
                    &["outcome"],
                )?;
                registry.register(Box::new(c.clone()))?;
                Some(Arc::new(
                    Directory::new(
                        shown.iter().map(|s| s.id.to_string()).collect(),
                        deployment.keys.clone(),
                    )
                    .with_metrics(c),
                ))
            }
            None => None,
        };
        let names: Vec<(String, String)> = shown
            .iter()
            .map(|s| (s.id.to_string(), s.name.clone()))
            .collect();
        let mut tasks = vec![
            rt.spawn(feed::run_incidents(
                hub.incidents.subscribe(),
                feed.clone(),
                cancel.clone(),
            )),
            rt.spawn(feed::run_status(
                feed::StatusSources {
                    sites: names,
                    local: local.clone(),
                    directory: directory.clone(),
                    node: deployment.node.clone(),
                },
                shared.metrics.clone(),
                status_tx,
                cancel.clone(),
            )),
        ];
        if let (Some(dir), Some(src)) = (&directory, deployment.status) {
            tasks.push(rt.spawn(directory::watch(dir.clone(), src, cancel.clone())));
        }
        let page = json!({
            "title": w.title,
            "city": cfg.city.name,
            "timezone": cfg.city.tz().name(),
            "node": deployment.node.clone(),
            "cols": page_grid.cols,
            "rows": page_grid.rows,
            "tile_width": w.tile_width,
            "tile_height": w.tile_height,
            "mjpeg_fps": w.mjpeg_fps,
            "live_delay_ms": w.live_delay_ms,
            "sites": shown.iter().map(|s| page_site(s, w.live)).collect::<Vec<_>>(),
        });
        let rtsp_addr = rtsp_out.as_ref().map(|r| (w.rtsp_address, r.port()));
        let live = Arc::new(live::LiveCtx {
            enabled: w.live,
            delay_ms: w.live_delay_ms,
            max_viewers: w.live_max_viewers as usize,
            viewers: Default::default(),
            metrics: shared.metrics.clone(),
            cancel: cancel.clone(),
        });
        let http = http::HttpState(Arc::new(http::HttpInner {
            local,
            live,
            shared: shared.clone(),
            feed,
            status: status_rx,
            cancel: cancel.clone(),
            page,
            rtsp: rtsp_addr,
            rtsp_sites,
            auth: auth.clone(),
            directory,
            node: deployment.node.clone(),
            own_url: w.advertised_url(),
            added: Default::default(),
        }));
        info!(
            sites = cfg.sites.len(),
            shown = shown.len(),
            grid = %format!("{}x{}", page_grid.cols, page_grid.rows),
            rtsp = ?rtsp_addr,
            url = %w.advertised_url(),
            "wall ready"
        );
        Ok(Wall {
            shared,
            http,
            auth,
            workers: Mutex::new(workers),
            maker: SiteMaker {
                labels,
                tz: cfg.city.tz(),
                tile: (w.tile_width, w.tile_height),
                jpeg_quality: w.jpeg_quality,
            },
            rtsp: rtsp_out,
            tasks,
            cancel,
        })
    }

    /// A site this process started serving while it runs (a cluster node won its lease): its
    /// browser tile plays from here from now on (`/live/{site}`), as do its MJPEG tile and
    /// snapshot. The RTSP mounts and the mosaic keep the sites served at start (docs/wall.md).
    pub fn add_site(&self, site: &Site, hub: Arc<SiteHub>) -> Result<(), WallError> {
        if self.http.0.local.get(site.id.as_str()).is_some() {
            return Ok(());
        }
        let m = &self.maker;
        touch_series(&self.shared.metrics, site.id.as_str());
        let out = Arc::new(SiteOutput::new(
            hub,
            site.name.clone(),
            live::LiveSite::new(site, m.labels.clone()),
        ));
        let scene = SiteScene::new(site, m.labels.clone(), m.tz, m.tile.0, m.tile.1);
        let worker = tile::spawn_worker(out.clone(), scene, self.shared.clone(), m.jpeg_quality)?;
        if !self.http.0.local.insert(out.clone()) {
            out.gone.cancel();
        }
        // A site outside the page's list (`Running::add_site` without a cluster) is listed
        // from now on; the page shows it after a reload.
        let mut added = self.http.0.added.write();
        if !added.iter().any(|(id, _)| *id == site.id.as_str()) {
            added.push((
                site.id.to_string(),
                page_site(site, self.http.0.live.enabled),
            ));
        }
        drop(added);
        let mut workers = self.workers.lock();
        // Workers of sites that went away have ended: forget them.
        workers.retain(|w| !w.is_finished());
        workers.push(worker);
        info!(site = %site.id, "wall: site served here now");
        Ok(())
    }

    /// A site this process no longer serves (a lost lease, a stop): its worker ends and its
    /// live sockets and MJPEG streams close, so each browser tile asks where the site is now.
    pub fn remove_site(&self, id: &str) {
        if let Some(s) = self.http.0.local.remove(id) {
            s.gone.cancel();
            s.rtsp.lock().clear();
            s.hub.set_display_demand(0.0);
            self.shared.wake.notify();
            info!(site = %id, "wall: site no longer served here");
        }
    }

    /// HTTP routes of the wall (page, MJPEG streams, SSE events), every one behind the
    /// sign-in, with the sign-in routes beside them. A route added to the wall is added to
    /// `http::router` (or merged here before `protect`), never after.
    pub fn router(&self) -> axum::Router {
        auth::protect(http::router(self.http.clone()), self.auth.clone())
    }

    /// The port annotated RTSP out listens on, if enabled.
    pub fn rtsp_port(&self) -> Option<u16> {
        self.rtsp.as_ref().map(|r| r.port())
    }

    /// Ends the streams (MJPEG, SSE: so a graceful HTTP shutdown is not held open by viewers),
    /// the workers and the RTSP server.
    pub fn stop(mut self) {
        self.cancel.cancel();
        for t in self.tasks.drain(..) {
            t.abort();
        }
        stop_threads(
            &self.shared,
            std::mem::take(&mut *self.workers.lock()),
            self.rtsp.take(),
        );
        for s in &self.http.0.local.all() {
            s.rtsp.lock().clear();
            // Nobody is left to draw for: ingest stops making display frames.
            s.hub.set_display_demand(0.0);
        }
    }
}

/// Stops the workers, the mosaic and the RTSP server, and forgets fed media.
fn stop_threads(
    shared: &WorkerShared,
    workers: Vec<std::thread::JoinHandle<()>>,
    rtsp: Option<RtspOut>,
) {
    shared.stop.store(true, Ordering::SeqCst);
    shared.wake.notify();
    if let Some(r) = rtsp {
        r.stop();
    }
    for w in workers {
        if w.join().is_err() {
            warn!("a wall worker panicked");
        }
    }
    // Media still registered would keep their pipelines alive; drop our references.
    shared.mosaic_sinks.lock().clear();
}
