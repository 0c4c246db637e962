//! The typed configuration tree (one TOML file, see `config/palembang.toml` and docs/config.md).
//!
//! Loading is two passes: serde (`deny_unknown_fields` everywhere) for shape, then
//! [`Config::validate`] for meaning. Both report every problem with file, line and field path.
//! Relative paths in the file are relative to the file's own directory.

pub mod desk;
pub mod locate;
pub mod rules;

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use desk::DeskConfig;
use locate::{line_col, FieldPath, Locator};
pub use rules::{CrowdRule, GarbageRule, JamRule, TamperRule};

use crate::model::ZoneKind;
use crate::time::Timezone;

/// The config file every command reads unless told otherwise (`--config`), relative to the
/// working directory: the checkout's own Palembang deployment.
pub const DEFAULT_PATH: &str = "config/palembang.toml";

/// [`DEFAULT_PATH`] as a path, for clap's `default_value_os_t`.
pub fn default_path() -> PathBuf {
    PathBuf::from(DEFAULT_PATH)
}

/// One problem found in a config file, located.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: field `{}`: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // `error`, not `source`: the reason belongs in this message, and a source would print it
    // twice in anyhow's `{:#}` chain.
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// The whole configuration of a simpang deployment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub city: City,
    /// Where incidents, snapshots, the outbox and the desk database live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub detect: DetectConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub incidents: IncidentConfig,
    #[serde(default)]
    pub wall: WallConfig,
    #[serde(default)]
    pub samples: SamplesConfig,
    #[serde(default)]
    pub desk: DeskConfig,
    pub sites: Vec<Site>,
    /// The file this was loaded from; relative paths resolve against its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("../data")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub name: String,
    /// IANA zone name as written; times in messages carry its offset. [`City::tz`] is it
    /// parsed, which is what the stages use.
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// `timezone` parsed, once, by [`Config::from_str_at`] (after validation has checked it).
    #[serde(skip)]
    tz: Timezone,
}

impl City {
    /// The city's time zone: every local time simpang shows is in it.
    pub fn tz(&self) -> Timezone {
        self.tz
    }
}

fn default_tz() -> String {
    "Asia/Jakarta".into()
}

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
        }
    }
}

/// MQTT connection. `broker = "embedded"` runs a broker inside `simpang run`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `embedded`, or a URL: `mqtt://host:1883`, `mqtts://host:8883`.
    pub broker: String,
    /// Listen address of the embedded broker.
    pub embedded_listen: SocketAddr,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA bundle for `mqtts://` brokers with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Client id prefix: each site connects as `{client_id}-{site}` (one connection per site, so
    /// each site's last will marks exactly that site offline).
    pub client_id: String,
    pub keep_alive_s: u64,
    /// First wait before reconnecting to the broker; doubles up to `reconnect_max_s`.
    pub reconnect_initial_s: f64,
    pub reconnect_max_s: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: "embedded".into(),
            embedded_listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            username: None,
            password: None,
            ca_file: None,
            client_id: "simpang-run".into(),
            keep_alive_s: 15,
            reconnect_initial_s: 0.5,
            reconnect_max_s: 30.0,
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
    /// HTTP listen address: wall page, MJPEG streams, SSE events, /metrics.
    pub listen: SocketAddr,
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
    /// Address the RTSP server binds (a wall controller on the LAN needs a LAN address).
    pub rtsp_address: IpAddr,
    /// H.264 bitrate of each per-site annotated stream, kbit/s.
    pub rtsp_bitrate_kbps: u32,
    /// Frame rate of the `/annotated/wall` mosaic (the per-site streams keep the source rate).
    pub mosaic_fps: f64,
    /// H.264 bitrate of the mosaic, kbit/s.
    pub mosaic_bitrate_kbps: u32,
    /// Heading of the web wall.
    pub title: String,
}

impl Default for WallConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
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
        }
    }
}

impl WallConfig {
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

/// One watched intersection and its camera.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Short id: lower-case letters, digits and '-'; used in topics and URLs.
    pub id: String,
    pub name: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    /// True where lat/lon are approximate (placed by hand, not surveyed).
    #[serde(default)]
    pub location_approximate: bool,
    /// Camera id inside the site; defaults to the site id.
    #[serde(default)]
    pub camera: Option<String>,
    /// `rtsp://`, `rtsps://`, `http(s)://`, `file://` URL, or a local file path.
    pub stream: String,
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub lines: Vec<CountLine>,
    #[serde(default)]
    pub tamper: TamperRule,
}

impl Site {
    pub fn camera_id(&self) -> &str {
        self.camera.as_deref().unwrap_or(&self.id)
    }
}

/// A named polygon watched by one rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub kind: ZoneKind,
    /// Normalised image coordinates `[[x, y], ...]`, at least 3 points, each in [0, 1].
    pub polygon: Vec<[f64; 2]>,
    /// Ground area of the zone in square metres (for densities).
    #[serde(default)]
    pub area_m2: Option<f64>,
    /// Ground scale for speeds in km/h: metres per source pixel at the zone.
    #[serde(default)]
    pub metres_per_pixel: Option<f64>,
    /// Ground scale for speeds in km/h: four image points (normalised) and their ground
    /// positions in metres; wins over `metres_per_pixel`.
    #[serde(default)]
    pub homography: Option<Homography>,
    #[serde(default)]
    pub traffic_jam: Option<JamRule>,
    #[serde(default)]
    pub crowd: Option<CrowdRule>,
    #[serde(default)]
    pub garbage: Option<GarbageRule>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Homography {
    pub image: [[f64; 2]; 4],
    pub ground_m: [[f64; 2]; 4],
}

/// A counting line for traffic engineers: crossings per direction and class.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountLine {
    pub id: String,
    pub name: String,
    /// Two normalised points A → B. "in" is a crossing from the left of A→B to its right.
    pub points: [[f64; 2]; 2],
    /// Names of the two directions, e.g. "ke utara" / "ke selatan".
    #[serde(default = "default_in")]
    pub in_name: String,
    #[serde(default = "default_out")]
    pub out_name: String,
    /// Classes counted (detector class names).
    #[serde(default = "rules::default_vehicle_classes")]
    pub classes: Vec<String>,
    /// Reporting intervals in seconds.
    #[serde(default = "default_intervals")]
    pub intervals_s: Vec<u32>,
}

fn default_in() -> String {
    "in".into()
}
fn default_out() -> String {
    "out".into()
}
fn default_intervals() -> Vec<u32> {
    vec![60, 900]
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_str_at(&text, path)
    }

    /// Parses and validates `text` as if read from `path`.
    pub fn from_str_at(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let locator = Locator::new(text);
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let (line, column, field) = match e.span() {
                Some(span) => {
                    let (l, c) = line_col(text, span.start);
                    let mut path = locator.path_at(span.start);
                    if path.0.is_empty() {
                        path = locate::path_in_broken_text(text, span.start);
                    }
                    (l, c, path.to_string())
                }
                None => (1, 1, "(top level)".into()),
            };
            ConfigError::Invalid {
                problems: vec![Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    field,
                    message: e.message().trim().to_string(),
                }],
            }
        })?;
        cfg.source = Some(path.to_path_buf());
        let issues = cfg.validate();
        if issues.is_empty() {
            // validate() has checked the name; this is the one place it becomes a zone.
            if let Ok(tz) = Timezone::parse(&cfg.city.timezone) {
                cfg.city.tz = tz;
            }
            return Ok(cfg);
        }
        let problems = issues
            .into_iter()
            .map(|(field, message)| {
                let (line, column) = locator
                    .span_of(&field)
                    .map(|s| line_col(text, s.start))
                    .unwrap_or((1, 1));
                Problem {
                    file: path.to_path_buf(),
                    line,
                    column,
                    field: field.to_string(),
                    message,
                }
            })
            .collect();
        Err(ConfigError::Invalid { problems })
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            return p.to_path_buf();
        }
        match self.source.as_ref().and_then(|s| s.parent()) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// `file:line:col` of a field (e.g. `sites[2].zones[0].crowd.classes`) in the file this
    /// config was loaded from, for errors found after loading (unknown detector classes...).
    pub fn locate(&self, field: &str) -> Option<String> {
        let file = self.source.as_ref()?;
        let text = std::fs::read_to_string(file).ok()?;
        let span = Locator::new(&text).span_of(&FieldPath::parse(field))?;
        let (line, col) = line_col(&text, span.start);
        Some(format!("{}:{line}:{col}", file.display()))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.data_dir)
    }

    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// Checks meaning; returns every problem with the field it is about.
    pub fn validate(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let root = FieldPath::root();
        let mut bad = |p: FieldPath, m: String| out.push((p, m));

        if self.city.name.trim().is_empty() {
            bad(root.key("city").key("name"), "must not be empty".into());
        }
        if let Err(e) = Timezone::parse(&self.city.timezone) {
            bad(root.key("city").key("timezone"), e.to_string());
        }
        let d = root.key("detect");
        if !(self.detect.fps > 0.0 && self.detect.fps <= 60.0) {
            bad(
                d.key("fps"),
                format!("must be in (0, 60], got {}", self.detect.fps),
            );
        }
        if self.detect.threads == 0 || self.detect.threads > 64 {
            bad(d.key("threads"), "must be between 1 and 64".into());
        }
        if self.detect.sessions == 0 || self.detect.sessions > 32 {
            bad(d.key("sessions"), "must be between 1 and 32".into());
        }
        if self.detect.max_batch == 0 || self.detect.max_batch > 32 {
            bad(d.key("max_batch"), "must be between 1 and 32".into());
        }
        if let Some([w, h]) = self.detect.input_size {
            if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
                bad(
                    d.key("input_size"),
                    format!("sides must be in 32..=4096, got [{w}, {h}]"),
                );
            }
        }
        let ing = root.key("ingest");
        if self.ingest.silence_timeout_s <= 0.0 {
            bad(ing.key("silence_timeout_s"), "must be positive".into());
        }
        if !(self.ingest.backoff_initial_s > 0.0
            && self.ingest.backoff_initial_s <= self.ingest.backoff_max_s)
        {
            bad(
                ing.key("backoff_initial_s"),
                "must be positive and not above backoff_max_s".into(),
            );
        }
        if self.mqtt.broker != "embedded" {
            if let Err(m) = check_broker_url(&self.mqtt.broker) {
                bad(root.key("mqtt").key("broker"), m);
            }
        }
        if self.mqtt.client_id.trim().is_empty() {
            bad(
                root.key("mqtt").key("client_id"),
                "must not be empty".into(),
            );
        }
        self.validate_mqtt_security(&root.key("mqtt"), &mut bad);
        if !(self.mqtt.keep_alive_s >= 5 && self.mqtt.keep_alive_s <= 3600) {
            bad(
                root.key("mqtt").key("keep_alive_s"),
                format!("must be in 5..=3600, got {}", self.mqtt.keep_alive_s),
            );
        }
        if !(self.mqtt.reconnect_initial_s > 0.0
            && self.mqtt.reconnect_initial_s <= self.mqtt.reconnect_max_s)
        {
            bad(
                root.key("mqtt").key("reconnect_initial_s"),
                "must be positive and not above reconnect_max_s".into(),
            );
        }
        let inc = root.key("incidents");
        for (name, v) in [
            ("update_interval_s", self.incidents.update_interval_s),
            ("offline_grace_s", self.incidents.offline_grace_s),
            ("restore_confirm_s", self.incidents.restore_confirm_s),
        ] {
            if v.is_nan() || v <= 0.0 {
                bad(inc.key(name), format!("must be positive, got {v}"));
            }
        }
        if !(1..=100).contains(&self.incidents.snapshot_quality) {
            bad(inc.key("snapshot_quality"), "must be 1..=100".into());
        }
        if !(16..=3840).contains(&self.incidents.snapshot_width) {
            bad(inc.key("snapshot_width"), "must be in 16..=3840".into());
        }
        if self.incidents.outbox_max_messages < 100 {
            bad(
                inc.key("outbox_max_messages"),
                format!(
                    "must be at least 100, got {}",
                    self.incidents.outbox_max_messages
                ),
            );
        }
        let w = root.key("wall");
        if self.wall.grid().is_none() {
            bad(
                w.key("layout"),
                format!(
                    "must look like \"3x2\" (columns x rows), got {:?}",
                    self.wall.layout
                ),
            );
        }
        for (name, v) in [
            ("tile_width", self.wall.tile_width),
            ("tile_height", self.wall.tile_height),
        ] {
            if !(16..=3840).contains(&v) || v % 2 != 0 {
                bad(
                    w.key(name),
                    format!("must be even and in 16..=3840, got {v}"),
                );
            }
        }
        if !(self.wall.mjpeg_fps > 0.0 && self.wall.mjpeg_fps <= 60.0) {
            bad(w.key("mjpeg_fps"), "must be in (0, 60]".into());
        }
        if !(1..=100).contains(&self.wall.jpeg_quality) {
            bad(w.key("jpeg_quality"), "must be 1..=100".into());
        }
        if !(self.wall.mosaic_fps > 0.0 && self.wall.mosaic_fps <= 60.0) {
            bad(w.key("mosaic_fps"), "must be in (0, 60]".into());
        }
        for (name, v) in [
            ("rtsp_bitrate_kbps", self.wall.rtsp_bitrate_kbps),
            ("mosaic_bitrate_kbps", self.wall.mosaic_bitrate_kbps),
        ] {
            if !(100..=100_000).contains(&v) {
                bad(
                    w.key(name),
                    format!("must be in 100..=100000 kbit/s, got {v}"),
                );
            }
        }
        if self.wall.rtsp_port != 0 && self.wall.rtsp_port == self.wall.listen.port() {
            bad(
                w.key("rtsp_port"),
                format!(
                    "{} is also the HTTP port of `listen`; use another port (or 0 to disable RTSP out)",
                    self.wall.rtsp_port
                ),
            );
        }

        if self.sites.is_empty() {
            bad(root.key("sites"), "at least one [[sites]] is needed".into());
        }
        let mut ids = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            let sp = root.key("sites").index(i);
            if !is_slug(&site.id) {
                bad(
                    sp.key("id"),
                    format!(
                        "{:?} is not a valid id (lower-case letters, digits and '-', 1-40 chars)",
                        site.id
                    ),
                );
            } else if !ids.insert(site.id.as_str()) {
                bad(sp.key("id"), format!("duplicate site id {:?}", site.id));
            }
            if site.name.trim().is_empty() {
                bad(sp.key("name"), "must not be empty".into());
            }
            if !(-90.0..=90.0).contains(&site.lat) {
                bad(sp.key("lat"), format!("{} is not a latitude", site.lat));
            }
            if !(-180.0..=180.0).contains(&site.lon) {
                bad(sp.key("lon"), format!("{} is not a longitude", site.lon));
            }
            if let Err(m) = check_stream(&site.stream) {
                bad(sp.key("stream"), m);
            }
            let mut zone_ids = HashSet::new();
            for (j, z) in site.zones.iter().enumerate() {
                let zp = sp.key("zones").index(j);
                if !is_slug(&z.id) {
                    bad(zp.key("id"), format!("{:?} is not a valid id", z.id));
                } else if !zone_ids.insert(z.id.as_str()) {
                    bad(
                        zp.key("id"),
                        format!("duplicate zone id {:?} in site {:?}", z.id, site.id),
                    );
                }
                check_polygon(&z.polygon, &zp.key("polygon"), &mut bad);
                if let Some(a) = z.area_m2 {
                    if a.is_nan() || a <= 0.0 {
                        bad(zp.key("area_m2"), "must be positive".into());
                    }
                }
                if let Some(m) = z.metres_per_pixel {
                    if m.is_nan() || m <= 0.0 {
                        bad(zp.key("metres_per_pixel"), "must be positive".into());
                    }
                }
                if let Some(h) = &z.homography {
                    for (k, p) in h.image.iter().enumerate() {
                        if !in_unit(p) {
                            bad(
                                zp.key("homography").key("image").index(k),
                                format!("point {p:?} is outside [0, 1]"),
                            );
                        }
                    }
                }
                let rule_tables = [
                    (ZoneKind::TrafficJam, "traffic_jam", z.traffic_jam.is_some()),
                    (ZoneKind::Crowd, "crowd", z.crowd.is_some()),
                    (ZoneKind::Garbage, "garbage", z.garbage.is_some()),
                ];
                for (kind, name, present) in rule_tables {
                    if present && kind != z.kind {
                        bad(
                            zp.key(name),
                            format!(
                                "zone kind is {:?} but it has [{name}] settings",
                                z.kind.as_str()
                            ),
                        );
                    }
                }
                if let Some(r) = &z.traffic_jam {
                    r.validate(&zp.key("traffic_jam"), &mut bad);
                }
                if let Some(r) = &z.crowd {
                    r.validate(&zp.key("crowd"), z.area_m2, &mut bad);
                }
                if let Some(r) = &z.garbage {
                    r.validate(&zp.key("garbage"), &mut bad);
                }
            }
            let mut line_ids = HashSet::new();
            for (j, l) in site.lines.iter().enumerate() {
                let lp = sp.key("lines").index(j);
                if !is_slug(&l.id) {
                    bad(lp.key("id"), format!("{:?} is not a valid id", l.id));
                } else if !line_ids.insert(l.id.as_str()) {
                    bad(
                        lp.key("id"),
                        format!("duplicate line id {:?} in site {:?}", l.id, site.id),
                    );
                }
                for (k, p) in l.points.iter().enumerate() {
                    if !in_unit(p) {
                        bad(
                            lp.key("points").index(k),
                            format!("point {p:?} is outside [0, 1]"),
                        );
                    }
                }
                if l.points[0] == l.points[1] {
                    bad(lp.key("points"), "the two points must differ".into());
                }
                if l.classes.is_empty() {
                    bad(lp.key("classes"), "must name at least one class".into());
                }
                if l.intervals_s.is_empty() || l.intervals_s.contains(&0) {
                    bad(lp.key("intervals_s"), "must list positive intervals".into());
                }
            }
            site.tamper.validate(&sp.key("tamper"), &mut bad);
        }
        self.desk.validate(&root.key("desk"), &mut bad);
        out
    }
}

impl Config {
    /// Credentials and TLS settings of `[mqtt]`: what can be checked without connecting.
    fn validate_mqtt_security(&self, m: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let tls = broker_uses_tls(&self.mqtt.broker);
        if self.mqtt.password.is_some() && self.mqtt.username.is_none() {
            // MQTT 3.1.1 (3.1.2.9) does not allow a password without a user name.
            bad(
                m.key("password"),
                "is set without mqtt.username (MQTT 3.1.1 needs a user name with a password)"
                    .into(),
            );
        }
        if let Some(ca) = &self.mqtt.ca_file {
            if !tls {
                bad(
                    m.key("ca_file"),
                    format!(
                        "is set, but mqtt.broker {:?} is not an mqtts:// URL, so TLS is off",
                        self.mqtt.broker
                    ),
                );
            } else {
                let path = self.resolve(ca);
                match std::fs::read(&path) {
                    Err(e) => bad(
                        m.key("ca_file"),
                        format!("cannot read CA file {}: {e}", path.display()),
                    ),
                    Ok(bytes)
                        if !String::from_utf8_lossy(&bytes)
                            .contains("-----BEGIN CERTIFICATE-----") =>
                    {
                        bad(
                            m.key("ca_file"),
                            format!("{} holds no PEM certificate", path.display()),
                        )
                    }
                    Ok(_) => {}
                }
            }
        }
    }
}

/// True for `mqtts://` and `ssl://` broker URLs.
pub fn broker_uses_tls(broker: &str) -> bool {
    let b = broker.trim_start().to_ascii_lowercase();
    b.starts_with("mqtts://") || b.starts_with("ssl://")
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

fn in_unit(p: &[f64; 2]) -> bool {
    p.iter().all(|v| (0.0..=1.0).contains(v))
}

fn check_polygon(poly: &[[f64; 2]], path: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if poly.len() < 3 {
        bad(
            path.clone(),
            format!(
                "a polygon needs at least 3 points, this one has {}",
                poly.len()
            ),
        );
        return;
    }
    for (k, p) in poly.iter().enumerate() {
        if !in_unit(p) {
            bad(
                path.index(k),
                format!("point {p:?} is outside [0, 1] (coordinates are normalised)"),
            );
        }
    }
    // Shoelace area: a zero-area polygon (all points on a line) can contain nothing.
    let mut a = 0.0;
    for k in 0..poly.len() {
        let (p, q) = (poly[k], poly[(k + 1) % poly.len()]);
        a += p[0] * q[1] - q[0] * p[1];
    }
    if (a * 0.5).abs() < 1e-6 {
        bad(path.clone(), "the polygon has no area".into());
    }
}

/// Checks a camera stream location.
pub fn check_stream(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if !s.contains("://") {
        // A local path; existence is checked at run time (a camera may be a file that appears later).
        return Ok(());
    }
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    match u.scheme() {
        "rtsp" | "rtsps" | "rtspt" | "http" | "https" | "udp" | "srt" => {
            if u.host_str().is_none_or(|h| h.is_empty()) {
                return Err(format!("{s:?} is not a usable camera URL: it has no host"));
            }
            Ok(())
        }
        "file" => Ok(()),
        other => Err(format!(
            "unsupported scheme {other:?} in {s:?} (use rtsp, rtsps, http, https, udp, srt or file)"
        )),
    }
}

/// Checks an MQTT broker URL.
pub fn check_broker_url(s: &str) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| {
        format!("{s:?} is not \"embedded\" nor a valid URL like mqtt://host:1883: {e}")
    })?;
    match u.scheme() {
        "mqtt" | "tcp" | "mqtts" | "ssl" => {}
        other => {
            return Err(format!(
                "unsupported scheme {other:?} in {s:?} (use mqtt:// or mqtts://)"
            ))
        }
    }
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("{s:?} has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
