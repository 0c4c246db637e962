//! The wall's Prometheus series (`simpang_wall_*`): what it costs (render and encode latencies,
//! worker CPU time, frames and bytes out) and who watches (viewers per output).

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::metrics::{gauge_vec, int_counter_vec, int_gauge, int_gauge_vec, latency_vec};

#[derive(Clone)]
pub struct WallMetrics {
    /// Viewers per output: `output` is `mjpeg` or `rtsp`; the mosaic's site is `wall`.
    pub viewers: IntGaugeVec,
    pub sse_clients: IntGauge,
    pub frames_rendered: IntCounterVec,
    pub render_seconds: HistogramVec,
    pub jpeg_frames: IntCounterVec,
    pub jpeg_bytes: IntCounterVec,
    pub jpeg_encode_seconds: HistogramVec,
    pub mjpeg_frames_sent: IntCounterVec,
    pub rtsp_frames: IntCounterVec,
    pub rtsp_bytes: IntCounterVec,
    pub rtsp_encode_seconds: HistogramVec,
    pub mosaic_compose_seconds: HistogramVec,
    /// CPU time of the wall's own threads (render, JPEG encode, mosaic compose).
    pub cpu_seconds: prometheus::CounterVec,
    pub display_fps: GaugeVec,
    /// Display frames per second the burned-in outputs ask ingest for (0: none, +Inf: all).
    pub display_demand_fps: GaugeVec,
    /// Browser wall (passthrough) viewers and what they were sent.
    pub live_viewers: IntGaugeVec,
    pub live_joins: IntCounterVec,
    pub live_fragments: IntCounterVec,
    pub live_bytes: IntCounterVec,
    pub live_skipped: IntCounterVec,
    pub live_meta: IntCounterVec,
    pub live_refused: IntCounterVec,
}

impl WallMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let site = &["site"];
        let cpu = prometheus::CounterVec::new(
            prometheus::Opts::new(
                "simpang_wall_cpu_seconds_total",
                "CPU time of the wall's worker threads (overlay drawing, JPEG encoding, mosaic composition); x264 runs in GStreamer threads, see simpang_wall_rtsp_encode_seconds",
            ),
            &["worker"],
        )?;
        r.register(Box::new(cpu.clone()))?;
        Ok(Self {
            viewers: int_gauge_vec(
                r,
                "simpang_wall_viewers",
                "Clients watching an output (mjpeg: HTTP viewers; rtsp: RTSP clients' media, site \"wall\" is the mosaic)",
                &["site", "output"],
            )?,
            sse_clients: int_gauge(
                r,
                "simpang_wall_sse_clients",
                "Browsers connected to the /events feed",
            )?,
            frames_rendered: int_counter_vec(
                r,
                "simpang_wall_frames_rendered_total",
                "Tiles rendered with the overlay (only while someone watches)",
                site,
            )?,
            render_seconds: latency_vec(
                r,
                "simpang_wall_render_seconds",
                "Time to copy a display frame into its tile and draw the overlay",
                site,
            )?,
            jpeg_frames: int_counter_vec(
                r,
                "simpang_wall_jpeg_frames_total",
                "JPEG frames encoded for the MJPEG streams (one encode shared by all viewers)",
                site,
            )?,
            jpeg_bytes: int_counter_vec(
                r,
                "simpang_wall_jpeg_bytes_total",
                "Bytes of JPEG encoded for the MJPEG streams",
                site,
            )?,
            jpeg_encode_seconds: latency_vec(
                r,
                "simpang_wall_jpeg_encode_seconds",
                "Time to encode one tile as JPEG",
                site,
            )?,
            mjpeg_frames_sent: int_counter_vec(
                r,
                "simpang_wall_mjpeg_frames_sent_total",
                "JPEG frames written to MJPEG viewers, summed over viewers",
                site,
            )?,
            rtsp_frames: int_counter_vec(
                r,
                "simpang_wall_rtsp_frames_total",
                "Frames encoded as H.264 for annotated RTSP out (site \"wall\" is the mosaic)",
                site,
            )?,
            rtsp_bytes: int_counter_vec(
                r,
                "simpang_wall_rtsp_bytes_total",
                "Bytes of H.264 produced for annotated RTSP out",
                site,
            )?,
            rtsp_encode_seconds: latency_vec(
                r,
                "simpang_wall_rtsp_encode_seconds",
                "Time x264 takes per frame (encoder input to output) for annotated RTSP out",
                site,
            )?,
            mosaic_compose_seconds: latency_vec(
                r,
                "simpang_wall_mosaic_compose_seconds",
                "Time to compose the mosaic frame from the site tiles",
                &[],
            )?,
            cpu_seconds: cpu,
            display_fps: gauge_vec(
                r,
                "simpang_wall_display_fps",
                "Frames per second arriving from the camera, counted before decoding (5 s window)",
                site,
            )?,
            display_demand_fps: gauge_vec(
                r,
                "simpang_wall_display_demand_fps",
                "Display frames per second the burned-in outputs (MJPEG, annotated RTSP) ask ingest for: 0 while none is watched, +Inf for every frame",
                site,
            )?,
            live_viewers: int_gauge_vec(
                r,
                "simpang_wall_live_viewers",
                "Browser tiles playing the camera's own video over /live/{site}",
                site,
            )?,
            live_joins: int_counter_vec(
                r,
                "simpang_wall_live_joins_total",
                "Connections to /live/{site}",
                site,
            )?,
            live_fragments: int_counter_vec(
                r,
                "simpang_wall_live_fragments_total",
                "MP4 fragments (one per frame) sent to browser tiles, summed over viewers",
                site,
            )?,
            live_bytes: int_counter_vec(
                r,
                "simpang_wall_live_bytes_total",
                "Bytes of video sent to browser tiles, summed over viewers",
                site,
            )?,
            live_skipped: int_counter_vec(
                r,
                "simpang_wall_live_skipped_total",
                "Frames a slow browser tile missed (it resumes at the next key frame)",
                site,
            )?,
            live_meta: int_counter_vec(
                r,
                "simpang_wall_live_analytics_total",
                "Analytics results sent to browser tiles, summed over viewers",
                site,
            )?,
            live_refused: int_counter_vec(
                r,
                "simpang_wall_live_refused_total",
                "Connections to /live/{site} refused: foreign Origin or too many viewers",
                site,
            )?,
        })
    }
}

/// CPU time consumed by the calling thread so far, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Niceness of the wall's threads (workers, mosaic, JPEG and x264 streaming threads). On a box
/// where detection and the wall compete for two cores, the scheduler then favours analytics:
/// viewers cost the wall frames, never the detector its rate.
pub const WALL_NICE: i32 = 5;

thread_local! {
    static DEPRIORITIZED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lowers the calling thread's scheduling priority to [`WALL_NICE`] (Linux: per thread). Cheap
/// to call again on the same thread (pad probes call it on every buffer).
pub fn deprioritize_current_thread() {
    if DEPRIORITIZED.with(|d| d.replace(true)) {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority on our own thread id only changes this
    // thread's niceness. Failure (e.g. a seccomp profile) leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, WALL_NICE);
    }
}
