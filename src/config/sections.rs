//! The stage sections of the file: `[detect]`, `[ingest]`, `[mqtt]`, `[incidents]`, `[wall]`,
//! `[samples]`. Each has defaults for every field; `validate.rs` checks their meaning.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// Detector settings; the model is described by its manifest (see models/*/manifest.toml).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Path of the model manifest.
    pub model: PathBuf,
    /// Analytics frames per second per camera.
    pub fps: f64,
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
    /// Sessions in the pool (each serves one inference at a time).
    pub sessions: usize,
    /// Largest number of frames from different cameras combined into one inference call.
    pub max_batch: usize,
    /// `libonnxruntime.so`; `ORT_DYLIB_PATH` overrides it.
    pub ort_library: PathBuf,
    /// Artificial extra latency per inference (ms), to test that a slow detector never slows
    /// the display. 0 in production.
    pub debug_delay_ms: u64,
    /// Let ONNX Runtime's intra-op threads spin while waiting for work. Off: with two cores
    /// shared by decoders and sessions, spinning takes CPU from them (docs/detector.md).
    pub spinning: bool,
    /// ONNX Runtime graph optimisation level.
    pub optimization: OptimizationLevel,
    /// Run the model at this `[width, height]` instead of the manifest's size; needs a model
    /// whose manifest says `dynamic = true` (sides a multiple of the largest stride).
    pub input_size: Option<[u32; 2]>,
    /// Load the manifest's `onnx_amx` file where the CPU has AMX-INT8 (same results, faster
    /// there). `false` always loads `onnx`.
    pub amx: bool,
}

/// ONNX Runtime graph optimisation levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizationLevel {
    Disable,
    Basic,
    Extended,
    Layout,
    #[default]
    All,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            model: PathBuf::from("../models/nanodet-m-int8/manifest.toml"),
            fps: 5.0,
            threads: 1,
            sessions: 2,
            max_batch: 1,
            ort_library: PathBuf::from("../vendor-lib/onnxruntime/libonnxruntime.so"),
            debug_delay_ms: 0,
            spinning: false,
            optimization: OptimizationLevel::All,
            input_size: None,
            amx: true,
        }
    }
}

/// How cameras are read.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Folder of pipeline templates overriding the built-in ones (`rtsp.pipeline`, ...).
    pub pipelines_dir: Option<PathBuf>,
    /// RTSP jitter buffer, milliseconds.
    pub rtsp_latency_ms: u32,
    /// No frame for this long counts as a lost stream.
    pub silence_timeout_s: f64,
    pub backoff_initial_s: f64,
    pub backoff_max_s: f64,
    /// Play local files at their own frame rate (like a camera) rather than as fast as possible.
    pub files_realtime: bool,
    /// Loop local files at EOS (sample footage as a camera).
    pub files_loop: bool,
    /// Worker threads of each camera's software decoder; 0: one for a camera (or a file played
    /// like one), libav's default for a file decoded as fast as possible
    /// ([`crate::ingest::decoder`]).
    pub decoder_threads: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            pipelines_dir: None,
            rtsp_latency_ms: 200,
            silence_timeout_s: 5.0,
            backoff_initial_s: 1.0,
            backoff_max_s: 30.0,
            files_realtime: true,
            files_loop: true,
            decoder_threads: 0,
        }
    }
}

/// Incident lifecycle and outbox.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// At most one `update` per incident per this many seconds, unless the level changes.
    pub update_interval_s: f64,
    /// A camera offline for longer than this raises `camera_offline`.
    pub offline_grace_s: f64,
    /// Outbox bound: beyond it, queued `counts` messages are dropped oldest first; incidents
    /// are never dropped (the producer logs and keeps them).
    pub outbox_max_messages: u64,
    /// JPEG quality of snapshots.
    pub snapshot_quality: u8,
    /// Width of the snapshot (height follows the frame's aspect).
    pub snapshot_width: u32,
    /// Local snapshot files (day folders) older than this many days are deleted; 0 keeps them
    /// forever. Messages carry their own copy, so this only bounds the disk.
    pub snapshot_keep_days: u32,
    /// Incidents still open when the process stopped are restored at start; one that no rule
    /// confirms (a new Start or Update for the same site, zone and kind) within this many seconds
    /// is ended, so a crash never leaves an incident open forever.
    pub restore_confirm_s: f64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            update_interval_s: 30.0,
            offline_grace_s: 60.0,
            outbox_max_messages: 100_000,
            snapshot_quality: 80,
            snapshot_width: 640,
            snapshot_keep_days: 30,
            restore_confirm_s: 600.0,
        }
    }
}

/// The operators' video wall and annotated RTSP out.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WallConfig {
    /// HTTP listen address: wall page, MJPEG streams, SSE events (all behind sign-in).
    pub listen: SocketAddr,
    /// The URL browsers reach this wall at (`https://wall-2.example`, a reverse proxy's): each
    /// site's status message carries it, so the other nodes' walls play the site from here
    /// (docs/deploy.md, "One wall for all nodes"). Unset: `http://{listen}`, with this
    /// machine's host name for a wildcard address.
    pub public_url: Option<String>,
    /// Grid as "COLSxROWS".
    pub layout: String,
    /// Size of the display frames (per site tile).
    pub tile_width: u32,
    pub tile_height: u32,
    /// MJPEG frame rate per viewer stream.
    pub mjpeg_fps: f64,
    pub jpeg_quality: u8,
    /// Annotated RTSP out; 0 disables it.
    pub rtsp_port: u16,
    /// Address the RTSP server binds (a wall controller on the LAN needs a LAN address; clients
    /// sign in with a wall device account either way).
    pub rtsp_address: IpAddr,
    /// H.264 bitrate of each per-site annotated stream, kbit/s.
    pub rtsp_bitrate_kbps: u32,
    /// Frame rate of the `/annotated/wall` mosaic (the per-site streams keep the source rate).
    pub mosaic_fps: f64,
    /// H.264 bitrate of the mosaic, kbit/s.
    pub mosaic_bitrate_kbps: u32,
    /// Heading of the web wall.
    pub title: String,
    /// Sign-in and per-client limits of the wall and of RTSP out.
    pub auth: super::WallAuthConfig,
    /// Limits of the wall's HTTP listener.
    pub http: super::HttpConfig,
    /// The wall page plays each H.264 camera's own video (passthrough over `/live/{site}`);
    /// off, every tile is the burned-in MJPEG.
    pub live: bool,
    /// How far behind the newest frame the page plays, ms: 0 is the live edge (boxes are moved
    /// by their velocity to the frame shown); 300-400 puts every box on its own frame.
    pub live_delay_ms: u32,
    /// Browser tiles that may play at once, over all sites (each is one WebSocket).
    pub live_max_viewers: u32,
}

impl Default for WallConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            layout: "3x2".into(),
            tile_width: 640,
            tile_height: 360,
            mjpeg_fps: 10.0,
            jpeg_quality: 75,
            rtsp_port: 8555,
            rtsp_address: IpAddr::from([127, 0, 0, 1]),
            rtsp_bitrate_kbps: 1500,
            mosaic_fps: 15.0,
            mosaic_bitrate_kbps: 4000,
            title: "Command Center".into(),
            auth: super::WallAuthConfig::default(),
            http: super::HttpConfig::default(),
            live: true,
            live_delay_ms: 0,
            live_max_viewers: 64,
        }
    }
}

impl WallConfig {
    /// Where other nodes' walls (and their browsers) reach this wall: `public_url` without a
    /// trailing `/`, else `http://{listen}`; a wildcard listen address is replaced by this
    /// machine's host name, which a browser can dial where 0.0.0.0 means nothing.
    pub fn advertised_url(&self) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let ip = self.listen.ip();
        let host = if ip.is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into())
        } else if ip.is_ipv6() {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        format!("http://{host}:{}", self.listen.port())
    }

    /// (columns, rows) of the layout string.
    pub fn grid(&self) -> Option<(u32, u32)> {
        let (c, r) = self.layout.split_once(['x', 'X'])?;
        let (c, r) = (c.trim().parse().ok()?, r.trim().parse().ok()?);
        (c > 0 && r > 0).then_some((c, r))
    }
}

/// The sample-camera server (`simpang samples`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplesConfig {
    /// Footage folder: `<dir>/sites/<site-id>.mp4` per site, else `default_footage`.
    pub footage_dir: PathBuf,
    pub default_footage: String,
    pub port: u16,
}

impl Default for SamplesConfig {
    fn default() -> Self {
        Self {
            footage_dir: PathBuf::from("../samples"),
            default_footage: "sample.mp4".into(),
            port: 8554,
        }
    }
}
