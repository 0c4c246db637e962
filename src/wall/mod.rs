//! The operators' video wall: annotated tiles in the browser (MJPEG + SSE incident feed) and
//! annotated RTSP out (per site and a mosaic) for wall controllers and VMS software.
//!
//! ```text
//! hub.display (I420, source rate) ──┐
//! hub.results (latest analytics) ───┼─▶ site worker (tile.rs): draw on I420 (scene.rs, draw/canvas.rs)
//! hub.status ───────────────────────┘      ├─▶ jpegenc once ─▶ watch ─▶ every MJPEG viewer (http.rs)
//!                                          ├─▶ appsrc of /annotated/{site} (shared media, x264)
//!                                          └─▶ tile slot ─▶ mosaic (mosaic.rs) ─▶ /annotated/wall
//! hub.incidents ─▶ feed.rs ─▶ SSE /events (+ status once a second)
//! ```
//!
//! Nothing is drawn or encoded for an output nobody watches, nothing in the wall ever blocks the
//! camera or analytics threads (it only reads latest-value slots), and each output is encoded
//! once however many clients share it. Entry point for `simpang run`: [`Wall::start`]; its
//! [`Wall::router`] is served on the same HTTP listener as `/metrics`. docs/wall.md has the URLs,
//! settings and cost figures.

pub mod feed;
pub mod http;
pub mod jpeg;
pub mod meter;
pub mod metrics;
pub mod mosaic;
pub mod rtsp;
pub mod scene;
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

use crate::config::Config;
use crate::hub::Hub;
use crate::model::Labels;
use metrics::WallMetrics;
use mosaic::Grid;
use rtsp::{EncoderSettings, RtspOut};
use scene::SiteScene;
use tile::{SiteOutput, Wake, WorkerShared};

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

/// The running wall outputs.
pub struct Wall {
    shared: Arc<WorkerShared>,
    http: http::HttpState,
    workers: Vec<std::thread::JoinHandle<()>>,
    rtsp: Option<RtspOut>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Wall {
    /// Starts the site workers (idle until someone watches), the RTSP server (unless
    /// `wall.rtsp_port` is 0), the incident feed and the status ticker. Call inside a tokio
    /// runtime.
    pub fn start(
        cfg: &Config,
        hub: Arc<Hub>,
        labels: Labels,
        registry: &Registry,
    ) -> Result<Self, WallError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| WallError::NoRuntime)?;
        crate::ingest::init_gstreamer().map_err(|e| WallError::Gst(e.to_string()))?;
        let w = &cfg.wall;
        let metrics = WallMetrics::register(registry)?;
        let mut sites = Vec::with_capacity(cfg.sites.len());
        for s in &cfg.sites {
            let h = hub
                .site(s.id.as_str())
                .ok_or_else(|| WallError::UnknownSite(s.id.to_string()))?;
            // Series exist from the start, so dashboards show 0 rather than "no data".
            for out in ["mjpeg", "rtsp"] {
                metrics.viewers.with_label_values(&[s.id.as_str(), out]);
            }
            metrics.jpeg_frames.with_label_values(&[s.id.as_str()]);
            metrics.frames_rendered.with_label_values(&[s.id.as_str()]);
            metrics.rtsp_frames.with_label_values(&[s.id.as_str()]);
            sites.push(Arc::new(SiteOutput::new(h, s.name.clone())));
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
        let grid = Grid::fit(cols, rows, sites.len(), w.tile_width, w.tile_height);

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
                rtsp_out = Some(RtspOut::start(
                    w.rtsp_address,
                    w.rtsp_port,
                    &sites,
                    &shared,
                    site_enc,
                    mosaic_enc,
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
        let tasks = vec![
            rt.spawn(feed::run_incidents(
                hub.incidents.subscribe(),
                feed.clone(),
                cancel.clone(),
            )),
            rt.spawn(feed::run_status(
                sites.clone(),
                shared.metrics.clone(),
                status_tx,
                cancel.clone(),
            )),
        ];
        let page = json!({
            "title": w.title,
            "city": cfg.city.name,
            "timezone": cfg.city.tz().name(),
            "cols": grid.cols,
            "rows": grid.rows,
            "tile_width": w.tile_width,
            "tile_height": w.tile_height,
            "mjpeg_fps": w.mjpeg_fps,
            "sites": cfg.sites.iter().map(|s| json!({
                "id": s.id,
                "name": s.name,
                "address": s.address,
                "mjpeg": format!("/stream/{}.mjpg", s.id),
                "zones": s.zones.iter().map(|z| json!({"id": z.id, "name": z.name, "kind": z.kind})).collect::<Vec<_>>(),
                "lines": s.lines.iter().map(|l| json!({"id": l.id, "name": l.name, "in_name": l.in_name, "out_name": l.out_name})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        let rtsp_addr = rtsp_out.as_ref().map(|r| (w.rtsp_address, r.port()));
        let http = http::HttpState(Arc::new(http::HttpInner {
            sites,
            shared: shared.clone(),
            feed,
            status: status_rx,
            cancel: cancel.clone(),
            page,
            rtsp: rtsp_addr,
        }));
        info!(
            sites = cfg.sites.len(),
            grid = %format!("{}x{}", grid.cols, grid.rows),
            rtsp = ?rtsp_addr,
            "wall ready"
        );
        Ok(Wall {
            shared,
            http,
            workers,
            rtsp: rtsp_out,
            tasks,
            cancel,
        })
    }

    /// HTTP routes of the wall (page, MJPEG streams, SSE events).
    pub fn router(&self) -> axum::Router {
        http::router(self.http.clone())
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
            std::mem::take(&mut self.workers),
            self.rtsp.take(),
        );
        for s in &self.http.0.sites {
            s.rtsp.lock().clear();
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
