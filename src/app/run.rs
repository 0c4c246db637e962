//! `simpang run`: cameras -> detection -> tracking -> rules -> incidents -> MQTT, plus the wall.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use tracing::info;

use super::frameloop::{self, FrameLoop, LoopMetrics};
use super::AppError;
use crate::analytics::SiteAnalytics;
use crate::config::Config;
use crate::detect::Detector;
use crate::hub::{AnalyticsQueue, Hub};
use crate::incident::IncidentService;
use crate::ingest::{self, CameraHandle, CameraSettings, Templates};
use crate::metrics::{self, IngestMetrics};
use crate::model::{Labels, SiteId};
use crate::wall::Wall;

/// Arguments of `simpang run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(long, default_value_os_t = super::default_config())]
    pub config: PathBuf,
    /// Run only these sites (comma-separated ids): shards cameras across machines.
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<String>,
}

pub fn run_main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&args.config)?;
    select_sites(&mut cfg, &args.sites)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("simpang-rt")
        .enable_all()
        .build()?;
    rt.block_on(async {
        let running = run(cfg).await?;
        println!("wall: http://{}/", running.http_addr);
        println!("metrics: http://{}/metrics", running.http_addr);
        super::shutdown_signal().await;
        info!("shutting down");
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Keeps only the named sites (all when `ids` is empty).
pub fn select_sites(cfg: &mut Config, ids: &[String]) -> Result<(), AppError> {
    if ids.is_empty() {
        return Ok(());
    }
    for id in ids {
        if cfg.site(id).is_none() {
            return Err(AppError::Other(format!(
                "--sites names {id:?}, which is not a site in the config"
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
}

/// A running pipeline; [`Running::stop`] tears it down.
pub struct Running {
    pub http_addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub registry: Registry,
    cameras: Vec<CameraHandle>,
    queue: Arc<AnalyticsQueue>,
    frame_loop: FrameLoop,
    incidents: IncidentService,
    wall: Wall,
    http: tokio::task::JoinHandle<()>,
    http_stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    pub async fn stop(self) {
        self.queue.close();
        let cams = self.cameras;
        let frame_loop = self.frame_loop;
        let _ = tokio::task::spawn_blocking(move || {
            frame_loop.stop();
            for c in &cams {
                c.signal_stop();
            }
            for c in cams {
                c.stop();
            }
        })
        .await;
        let _ = self.http_stop.send(());
        // The wall's MJPEG and SSE responses never end by themselves: stop the wall first so a
        // graceful HTTP shutdown is not held open by a connected viewer.
        self.wall.stop();
        let _ = self.http.await;
        self.incidents.stop().await;
    }
}

/// Starts every stage for the sites of `cfg` and returns once they are running.
pub async fn run(cfg: Config) -> Result<Running, AppError> {
    ingest::init_gstreamer()?;
    let registry = Registry::new();
    let ingest_metrics = IngestMetrics::register(&registry)?;
    let hub = Hub::new(cfg.sites.iter().map(|s| SiteId::new(&s.id)));
    let queue = AnalyticsQueue::new(cfg.sites.len());
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
    let analytics_size = detector.input_size();
    let labels: Labels = detector.labels();
    let mut site_analytics = Vec::new();
    for (i, site) in cfg.sites.iter().enumerate() {
        let a = SiteAnalytics::new(site, labels.clone()).map_err(|e| {
            let at = cfg.locate(&format!("sites[{i}].{}", e.field()));
            AppError::Other(format!("{}{e}", at.map(|a| a + ": ").unwrap_or_default()))
        })?;
        site_analytics.push(a);
    }

    // Incidents: lifecycle, snapshots, outbox, MQTT (src/incident).
    let incidents = IncidentService::start(&cfg, hub.clone(), &registry).await?;
    // Wall: MJPEG tiles, SSE feed, annotated RTSP out (src/wall).
    let wall = Wall::start(&cfg, hub.clone(), labels.clone(), &registry)?;

    let listener = tokio::net::TcpListener::bind(cfg.wall.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: cfg.wall.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| AppError::Listen {
        addr: cfg.wall.listen,
        source,
    })?;

    // Detection workers -> tracker and rules per camera -> hub and incident stage.
    let frame_loop = frameloop::spawn(
        &cfg,
        Arc::new(detector),
        site_analytics,
        hub.clone(),
        queue.clone(),
        incidents.sender(),
        LoopMetrics::register(&registry)?,
    )
    .map_err(|e| AppError::Other(format!("cannot start detection workers: {e}")))?;

    let mut cameras = Vec::new();
    for settings in CameraSettings::from_config(&cfg, analytics_size) {
        let site = hub.sites[settings.index].clone();
        cameras.push(ingest::spawn_camera(
            settings,
            templates.clone(),
            site,
            queue.clone(),
            ingest_metrics.clone(),
        )?);
    }

    let state = HttpState {
        registry: registry.clone(),
        hub: hub.clone(),
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/api/status", get(status_handler))
        .with_state(state)
        .merge(wall.router());
    let (http_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stop_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    info!(%http_addr, sites = cfg.sites.len(), "simpang running");
    Ok(Running {
        http_addr,
        hub,
        registry,
        cameras,
        queue,
        frame_loop,
        incidents,
        wall,
        http,
        http_stop,
    })
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
        .sites
        .iter()
        .map(|s| {
            let status = s.status.load();
            serde_json::json!({ "site": s.id, "status": **status })
        })
        .collect();
    Json(serde_json::json!({ "sites": sites }))
}
