//! One site's wall output: a worker thread that turns display frames into annotated tiles and
//! hands them to whoever watches (MJPEG viewers, RTSP clients of the site's mount, the mosaic).
//!
//! Demand-driven: with nobody watching, the worker sleeps, asks ingest for no display frames
//! ([`SiteHub::set_display_demand`]), and nothing is decoded for display, scaled, drawn or
//! encoded. While someone watches, it asks for the rate they take (the MJPEG rate, the mosaic
//! rate, or every frame for a per-site RTSP client). The display slot is a latest-value slot
//! (see [`crate::hub`]), so the worker never holds up the camera or analytics: it reads the
//! newest frame, draws the newest results over it, and if it falls behind it simply skips
//! frames. Each output is produced once per frame and shared: one JPEG for all MJPEG viewers,
//! one pushed buffer per RTSP media (shared by all its clients). Browser wall viewers are not
//! its business: they play the camera's own video ([`super::live`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use chrono::Utc;
use gstreamer as gst;
use gstreamer_app as gst_app;
use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn};

use super::jpeg::{i420_buffer, JpegEncoder};
use super::live::LiveSite;
use super::metrics::{thread_cpu_seconds, WallMetrics};
use super::scene::{SceneInput, SiteScene};
use crate::hub::SiteHub;
use crate::ingest::frames::RateGate;
use crate::model::{Image, SiteId};
use crate::timing::{self, Stage};

/// A frame older than this means the camera stopped delivering: the tile turns into the
/// offline tile (the supervisor declares the camera offline only after its silence timeout).
pub const STALE_FRAME: Duration = Duration::from_secs(2);

/// Whether a frame that arrived at `at` is recent at `now` (a time "in the future", after a
/// clock step, counts as recent).
pub fn is_fresh(at: chrono::DateTime<Utc>, now: chrono::DateTime<Utc>) -> bool {
    (now - at)
        .to_std()
        .map(|age| age < STALE_FRAME)
        .unwrap_or(true)
}
/// How often the offline tile is refreshed (its clock ticks; RTSP clients keep getting frames).
const OFFLINE_REFRESH: Duration = Duration::from_millis(200);
/// How often an active worker looks for a new display frame. The hub slot has no wake-up, and
/// 4 ms is well under a frame interval (33 ms at 30 fps), so this adds at most 4 ms of latency
/// for a few cheap atomic loads per poll.
const POLL: Duration = Duration::from_millis(4);

/// Wakes sleeping workers when demand appears (a viewer joins, an RTSP client plays, stop).
#[derive(Default)]
pub struct Wake {
    gen: Mutex<u64>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        *self.gen.lock() += 1;
        self.cv.notify_all();
    }

    /// Sleeps until notified or `d` passes.
    pub fn wait(&self, d: Duration) {
        let mut g = self.gen.lock();
        let seen = *g;
        let deadline = Instant::now() + d;
        while *g == seen {
            if self.cv.wait_until(&mut g, deadline).timed_out() {
                break;
            }
        }
    }
}

/// One encoded JPEG tile, shared by every MJPEG viewer of the site.
#[derive(Clone, Debug)]
pub struct JpegFrame {
    pub seq: u64,
    pub data: Bytes,
    pub at: Instant,
}

/// The RTSP media currently fed (their appsrcs); shared media, so one per mount at most in
/// practice, each serving any number of clients.
pub type RtspSinks = Mutex<Vec<gst_app::AppSrc>>;

/// Everything about one site's outputs that the HTTP handlers, the RTSP server and the mosaic
/// share with the worker.
pub struct SiteOutput {
    pub id: SiteId,
    pub name: String,
    pub hub: Arc<SiteHub>,
    /// MJPEG viewers (and snapshot requests waiting for a frame).
    pub mjpeg_viewers: AtomicUsize,
    pub jpeg: watch::Sender<Option<JpegFrame>>,
    pub rtsp: RtspSinks,
    /// The newest annotated tile, published while the mosaic needs it.
    pub tile: ArcSwapOption<Image>,
    /// Frames per second from the camera, as measured by the wall's meter (f64 bits).
    pub display_fps: AtomicU64,
    /// What the browser tiles of the site are told (`/live/{site}`).
    pub live: LiveSite,
    /// Cancelled when this process stops serving the site (a cluster node lost its lease): its
    /// worker ends, its live sockets and MJPEG streams close, so the page finds where the site
    /// went.
    pub gone: CancellationToken,
}

/// The sites this process serves now, in the order they started: what the wall's streams are
/// made from. A cluster node's sites come and go while it runs.
#[derive(Default)]
pub struct LocalSites(RwLock<Vec<Arc<SiteOutput>>>);

impl LocalSites {
    pub fn new(sites: Vec<Arc<SiteOutput>>) -> Self {
        Self(RwLock::new(sites))
    }

    pub fn all(&self) -> Vec<Arc<SiteOutput>> {
        self.0.read().clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<SiteOutput>> {
        self.0.read().iter().find(|s| s.id.as_str() == id).cloned()
    }

    /// Adds `site` unless one of its id is served already (false then).
    pub fn insert(&self, site: Arc<SiteOutput>) -> bool {
        let mut v = self.0.write();
        if v.iter().any(|s| s.id == site.id) {
            return false;
        }
        v.push(site);
        true
    }

    pub fn remove(&self, id: &str) -> Option<Arc<SiteOutput>> {
        let mut v = self.0.write();
        let i = v.iter().position(|s| s.id.as_str() == id)?;
        Some(v.remove(i))
    }
}

impl SiteOutput {
    pub fn new(hub: Arc<SiteHub>, name: String, live: LiveSite) -> Self {
        Self {
            id: hub.id.clone(),
            name,
            live,
            hub,
            mjpeg_viewers: AtomicUsize::new(0),
            jpeg: watch::channel(None).0,
            rtsp: Mutex::new(Vec::new()),
            tile: ArcSwapOption::empty(),
            display_fps: AtomicU64::new(0f64.to_bits()),
            gone: CancellationToken::new(),
        }
    }

    pub fn fps(&self) -> f64 {
        f64::from_bits(self.display_fps.load(Ordering::Relaxed))
    }
}

/// Settings and shared state every worker reads.
pub struct WorkerShared {
    pub stop: AtomicBool,
    pub wake: Wake,
    pub metrics: WallMetrics,
    pub mjpeg_fps: f64,
    pub mosaic_fps: f64,
    /// Appsrcs of the mosaic's RTSP media; non-empty = the mosaic needs every site's tiles.
    pub mosaic_sinks: RtspSinks,
    pub started: Instant,
}

/// Counts an MJPEG viewer for as long as it lives.
pub struct ViewerGuard {
    site: Arc<SiteOutput>,
    shared: Arc<WorkerShared>,
}

impl ViewerGuard {
    pub fn new(site: Arc<SiteOutput>, shared: Arc<WorkerShared>) -> Self {
        site.mjpeg_viewers.fetch_add(1, Ordering::SeqCst);
        shared
            .metrics
            .viewers
            .with_label_values(&[site.id.as_str(), "mjpeg"])
            .inc();
        shared.wake.notify();
        Self { site, shared }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.site.mjpeg_viewers.fetch_sub(1, Ordering::SeqCst);
        self.shared
            .metrics
            .viewers
            .with_label_values(&[self.site.id.as_str(), "mjpeg"])
            .dec();
    }
}

/// Pushes `buf` into each media's appsrc ([`crate::ingest::push_live`]: stamped with that
/// media's running time, skipped until its pipeline plays); forgets appsrcs that refuse data
/// (their media was shut down). Returns how many are left.
pub fn push_to_sinks(sinks: &RtspSinks, buf: &gst::Buffer) -> usize {
    let mut list = sinks.lock();
    list.retain(|src| crate::ingest::push_live(src, buf));
    list.len()
}

/// Starts the worker thread of one site.
pub fn spawn_worker(
    site: Arc<SiteOutput>,
    scene: SiteScene,
    shared: Arc<WorkerShared>,
    jpeg_quality: u8,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wall-{}", site.id))
        .spawn(move || {
            let span = info_span!("wall", site = %site.id);
            let _g = span.enter();
            super::metrics::deprioritize_current_thread();
            Worker {
                site,
                scene,
                shared,
                jpeg_quality,
                jpeg: None,
                out: Image::default(),
                pool: Vec::new(),
                seq: 0,
            }
            .run();
        })
}

struct Worker {
    site: Arc<SiteOutput>,
    scene: SiteScene,
    shared: Arc<WorkerShared>,
    jpeg_quality: u8,
    jpeg: Option<JpegEncoder>,
    out: Image,
    /// Tiles handed to the mosaic, reused once the mosaic has let go of them.
    pool: Vec<Arc<Image>>,
    seq: u64,
}

impl Worker {
    fn run(mut self) {
        let id = self.site.id.to_string();
        let m = self.shared.metrics.clone();
        let cpu = m.cpu_seconds.with_label_values(&[&format!("site:{id}")]);
        let rendered = m.frames_rendered.with_label_values(&[&id]);
        let render_s = m.render_seconds.with_label_values(&[&id]);
        let jpeg_frames = m.jpeg_frames.with_label_values(&[&id]);
        let jpeg_bytes = m.jpeg_bytes.with_label_values(&[&id]);
        let jpeg_s = m.jpeg_encode_seconds.with_label_values(&[&id]);
        let rtsp_frames = m.rtsp_frames.with_label_values(&[&id]);
        let demand_gauge = m.display_demand_fps.with_label_values(&[&id]);
        let mut cpu_prev = thread_cpu_seconds();
        let t0 = Instant::now();
        let mut last_seen = u64::MAX;
        let mut last_render: Option<Instant> = None;
        let mut jpeg_gate = RateGate::new(self.shared.mjpeg_fps);
        let mut active_since: Option<Instant> = None;
        let mut jpeg_failures = 0u32;
        loop {
            if self.shared.stop.load(Ordering::SeqCst) || self.site.gone.is_cancelled() {
                break;
            }
            let want_mjpeg = self.site.mjpeg_viewers.load(Ordering::SeqCst) > 0;
            let want_rtsp = !self.site.rtsp.lock().is_empty();
            let want_mosaic = !self.shared.mosaic_sinks.lock().is_empty();
            // Display frames at the rate the outputs take: every frame for a per-site RTSP
            // stream (it keeps the source rate), else the fastest of MJPEG and the mosaic.
            let demand = if want_rtsp {
                f64::INFINITY
            } else {
                f64::max(
                    if want_mjpeg {
                        self.shared.mjpeg_fps
                    } else {
                        0.0
                    },
                    if want_mosaic {
                        self.shared.mosaic_fps
                    } else {
                        0.0
                    },
                )
            };
            if self.site.hub.display_demand() != demand {
                self.site.hub.set_display_demand(demand);
                demand_gauge.set(demand);
            }
            if demand <= 0.0 {
                if active_since.take().is_some() {
                    debug!("no viewers: wall output idle");
                    // A viewer arriving later must not be shown a picture from long ago.
                    self.site.jpeg.send_replace(None);
                    self.site.tile.store(None);
                    self.site.hub.display.store(None);
                    let now_cpu = thread_cpu_seconds();
                    cpu.inc_by((now_cpu - cpu_prev).max(0.0));
                    cpu_prev = now_cpu;
                }
                self.shared.wake.wait(Duration::from_millis(250));
                last_seen = u64::MAX;
                continue;
            }
            let since = *active_since.get_or_insert_with(Instant::now);
            let n = self.site.hub.display_frames.load(Ordering::Acquire);
            let frame = self.site.hub.display.load_full();
            let now = Utc::now();
            let fresh = frame.as_ref().is_some_and(|f| is_fresh(f.captured_at, now));
            // Display frames start flowing once asked for: while the camera delivers, wait for
            // the first instead of drawing the offline tile.
            let camera_live = self
                .site
                .hub
                .last_source_at()
                .is_some_and(|t| is_fresh(t, now));
            if !fresh && camera_live && since.elapsed() < STALE_FRAME {
                std::thread::sleep(POLL);
                continue;
            }
            let due = if fresh {
                n != last_seen
            } else {
                last_render.is_none_or(|t| t.elapsed() >= OFFLINE_REFRESH)
            };
            if !due {
                std::thread::sleep(POLL);
                continue;
            }
            last_seen = n;
            let mono_ns = t0.elapsed().as_nanos() as u64;
            last_render = Some(Instant::now());
            let t = Instant::now();
            let results = self.site.hub.results.load();
            let status = self.site.hub.status.load();
            let input = SceneInput {
                frame: frame.as_deref(),
                live: fresh,
                results: &results,
                status: &status,
                now,
                uptime_s: self.shared.started.elapsed().as_secs_f64(),
            };
            if let Err(e) = self.scene.render(&mut self.out, &input) {
                warn!(error = %e, "cannot draw tile");
                continue;
            }
            rendered.inc();
            let spent = t.elapsed();
            render_s.observe(spent.as_secs_f64());
            timing::record(Stage::Overlay, spent);

            if want_rtsp {
                match i420_buffer(&self.out, gst::ClockTime::ZERO) {
                    Ok(buf) => {
                        if push_to_sinks(&self.site.rtsp, &buf) > 0 {
                            rtsp_frames.inc();
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot wrap tile for RTSP"),
                }
            }
            if want_mosaic {
                self.publish_tile();
            }
            if want_mjpeg && (!fresh || jpeg_gate.admit(mono_ns)) {
                let t = Instant::now();
                match self.encode_jpeg() {
                    Ok(data) => {
                        jpeg_failures = 0;
                        let spent = t.elapsed();
                        jpeg_s.observe(spent.as_secs_f64());
                        timing::record(Stage::Jpeg, spent);
                        jpeg_frames.inc();
                        jpeg_bytes.inc_by(data.len() as u64);
                        self.seq += 1;
                        self.site.jpeg.send_replace(Some(JpegFrame {
                            seq: self.seq,
                            data,
                            at: Instant::now(),
                        }));
                    }
                    Err(e) => {
                        jpeg_failures += 1;
                        // A wedged encoder is rebuilt; the log says so once per streak.
                        if jpeg_failures == 1 {
                            warn!(error = %e, "JPEG encode failed; rebuilding the encoder");
                        }
                        self.jpeg = None;
                    }
                }
            }
            let now_cpu = thread_cpu_seconds();
            cpu.inc_by((now_cpu - cpu_prev).max(0.0));
            cpu_prev = now_cpu;
        }
        debug!("wall worker ended");
    }

    fn encode_jpeg(&mut self) -> Result<Bytes, super::WallError> {
        if self.jpeg.is_none() {
            self.jpeg = Some(JpegEncoder::new(self.jpeg_quality)?);
        }
        match self.jpeg.as_mut() {
            Some(enc) => enc.encode(&self.out),
            None => Err(super::WallError::Gst("no JPEG encoder".into())),
        }
    }

    fn publish_tile(&mut self) {
        let mut slot = match self.pool.iter().position(|a| Arc::strong_count(a) == 1) {
            Some(i) => self.pool.swap_remove(i),
            None => Arc::new(Image::default()),
        };
        match Arc::get_mut(&mut slot) {
            Some(img) => {
                // Field by field so the pixel buffer's allocation is reused.
                img.width = self.out.width;
                img.height = self.out.height;
                img.format = self.out.format;
                img.data.clear();
                img.data.extend_from_slice(&self.out.data);
            }
            None => slot = Arc::new(self.out.clone()),
        }
        self.site.tile.store(Some(slot.clone()));
        if self.pool.len() < 3 {
            self.pool.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_returns_on_notify_and_on_timeout() {
        let w = Arc::new(Wake::default());
        let t = Instant::now();
        w.wait(Duration::from_millis(30));
        assert!(t.elapsed() >= Duration::from_millis(25));
        let w2 = w.clone();
        let h = std::thread::spawn(move || {
            let t = Instant::now();
            w2.wait(Duration::from_secs(10));
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        w.notify();
        assert!(h.join().unwrap() < Duration::from_secs(5));
    }
}
