//! The plain data types that cross stage boundaries. Read these first.
//!
//! ```text
//! ingest ──AnalyticsFrame──▶ detect ──Detection──▶ track ──Track──▶ analytics ──RuleEvent──▶ incident ──IncidentMessage──▶ MQTT ──▶ desk
//!    ├──EncodedFrame (hub::encoded, before decoding)──▶ wall ──▶ browsers (they decode)
//!    └──DisplayFrame (latest slot, on demand)──▶ wall ◀── SiteResults (latest slot: tracks, ZoneState, line counts)
//! ```
//!
//! Encoded frames and analytics results carry the same [`MediaTime`], so a browser draws boxes
//! over the frame they were found in.
//!
//! Geometry is in *normalised* image coordinates (0..1 on both axes, origin top-left), so zones,
//! boxes and tracks mean the same thing at the model's input size, the wall's tile size and the
//! camera's native size. Pixel values are derived only where a person reads them (CLI output,
//! px/s speeds), using the source size carried with each frame.
//!
//! One file on purpose although past ~800 lines: it is the map of everything that crosses a stage
//! boundary, read first and whole; behaviour beyond small accessors lives in the owning stage.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Arc<str>);

        impl $name {
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hash and Eq are the str's (derived over the one `Arc<str>` field), so maps keyed by
        // the id can be looked up with a plain `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }
    };
}

string_id!(
    /// A site (intersection) id from config: `bkb`, `ampera`, `charitas`, ...
    SiteId
);
string_id!(
    /// A zone id, unique within its site.
    ZoneId
);
string_id!(
    /// A counting-line id, unique within its site.
    LineId
);

/// A tracker-assigned object id, unique within one camera for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub u64);

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in normalised image coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box in normalised image coordinates; `(x1, y1)` is the top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    pub const fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self { x1, y1, x2, y2 }
    }
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn center(&self) -> Point {
        Point::new((self.x1 + self.x2) * 0.5, (self.y1 + self.y2) * 0.5)
    }
    /// Where the object touches the ground: the point zones and lines test against.
    pub fn bottom_center(&self) -> Point {
        Point::new((self.x1 + self.x2) * 0.5, self.y2)
    }
    pub fn intersection(&self, o: &BBox) -> f32 {
        let w = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let h = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        w * h
    }
    /// Intersection over union; 0 for disjoint or degenerate boxes.
    pub fn iou(&self, o: &BBox) -> f32 {
        let inter = self.intersection(o);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
    /// Clamps to the unit square.
    pub fn clamped(&self) -> BBox {
        BBox::new(
            self.x1.clamp(0.0, 1.0),
            self.y1.clamp(0.0, 1.0),
            self.x2.clamp(0.0, 1.0),
            self.y2.clamp(0.0, 1.0),
        )
    }
    /// The box in pixels of a `w` x `h` image.
    pub fn to_pixels(&self, w: u32, h: u32) -> [f32; 4] {
        let (w, h) = (w as f32, h as f32);
        [self.x1 * w, self.y1 * h, self.x2 * w, self.y2 * h]
    }
}

/// Index into the detector's class list (see the model manifest).
pub type ClassId = u16;

/// One object found by the detector in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub bbox: BBox,
    pub score: f32,
    pub class_id: ClassId,
}

/// The class names of the detector in use, shared by every stage that turns ids into words.
pub type Labels = Arc<[String]>;

/// Pixel layout of an [`Image`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    /// Packed 8-bit B, G, R (OpenCV's order): `w*h*3` bytes. Analytics frames use it.
    #[default]
    Bgr,
    /// Planar Y, then U and V at half resolution: `w*h*3/2` bytes, `w` and `h` even. Display
    /// frames use it: it is what the decoder gives and what the JPEG and H.264 encoders take.
    I420,
}

/// An 8-bit image with rows stored without padding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub data: Vec<u8>,
}

impl Image {
    /// A black BGR image.
    pub fn new(width: u32, height: u32) -> Self {
        Self::with_format(width, height, PixelFormat::Bgr)
    }
    /// A black image of `format` (I420 black is Y=16, U=V=128).
    pub fn with_format(width: u32, height: u32, format: PixelFormat) -> Self {
        let mut data = vec![0; Self::byte_len(width, height, format)];
        if format == PixelFormat::I420 {
            let y = width as usize * height as usize;
            data[..y].fill(16);
            data[y..].fill(128);
        }
        Self {
            width,
            height,
            format,
            data,
        }
    }
    pub fn byte_len(width: u32, height: u32, format: PixelFormat) -> usize {
        let (w, h) = (width as usize, height as usize);
        match format {
            PixelFormat::Bgr => w * h * 3,
            PixelFormat::I420 => w * h + 2 * (w.div_ceil(2) * h.div_ceil(2)),
        }
    }
    /// Bytes per row of the (first) plane.
    pub fn stride(&self) -> usize {
        match self.format {
            PixelFormat::Bgr => self.width as usize * 3,
            PixelFormat::I420 => self.width as usize,
        }
    }
    pub fn is_valid(&self) -> bool {
        self.data.len() == Self::byte_len(self.width, self.height, self.format)
    }
}

/// Where a frame sits on its camera's media timeline: the running time of the frame in one run
/// of the camera's ingest pipeline (`epoch`, new at every reconnect). The camera's own encoded
/// frames that the wall passes to browsers and the analytics results computed on the decoded
/// frame carry the same value, which is how the browser puts boxes on the frame they were found
/// in. Not a wall-clock time: the camera's clock drifts against ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MediaTime {
    pub epoch: u64,
    pub ns: u64,
}

/// A frame for analytics: decimated to the detect rate, scaled to the model's input size, BGR.
#[derive(Clone, Debug)]
pub struct AnalyticsFrame {
    pub site: SiteId,
    /// Counts analytics frames of this camera since the process started (gaps = dropped frames).
    pub seq: u64,
    /// Wall-clock time the frame was captured (arrival at the appsink): what is shown, and
    /// what incident times and ids are in.
    pub captured_at: DateTime<Utc>,
    /// The rules' clock at capture ([`crate::clock`]): live, a monotonic clock that equals the
    /// wall clock until the wall clock steps; in a replay, media time. Dwell and clear times
    /// are measured on it.
    pub rule_at: DateTime<Utc>,
    /// The frame's position in its stream (the raw buffer timestamp), when the source gives
    /// one: a replay's report quotes it as the clip position.
    pub pts: Option<std::time::Duration>,
    /// The frame's place on the camera's media timeline (running time within one pipeline
    /// run), when the pipeline gives one: it keys the browser's overlays to the passthrough
    /// stream. Unlike `pts` it carries the run's epoch and restarts with each pipeline run.
    pub media_time: Option<MediaTime>,
    /// Native size of the camera picture, for pixel-unit outputs.
    pub source_width: u32,
    pub source_height: u32,
    pub image: Image,
}

/// A picture analytics worked on, kept for incident snapshots: the analytics frame (model input
/// size, BGR, stretched to it) with the camera's native size, which undoes the stretch.
#[derive(Clone, Debug)]
pub struct Picture {
    pub image: Image,
    pub source_width: u32,
    pub source_height: u32,
    pub captured_at: DateTime<Utc>,
}

/// A frame for display (burned-in outputs, at the rate they ask for), I420, scaled to fit the
/// wall's tile size with the source's aspect ratio kept.
#[derive(Clone, Debug)]
pub struct DisplayFrame {
    pub site: SiteId,
    pub seq: u64,
    pub captured_at: DateTime<Utc>,
    pub image: Arc<Image>,
}

/// Lifecycle of a tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackState {
    /// Seen, but not often enough yet to be trusted.
    Tentative,
    /// Confirmed and matched in the latest frame.
    Confirmed,
    /// Confirmed earlier, missed in the latest frame(s); kept alive for a short gap.
    Lost,
}

/// A tracked object after the latest update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Track {
    pub id: TrackId,
    pub class_id: ClassId,
    pub bbox: BBox,
    pub score: f32,
    pub state: TrackState,
    /// Velocity of the box centre in normalised units per second.
    pub velocity: Point,
    /// Speed in source pixels per second.
    pub speed_px_s: f32,
    /// Speed in km/h, where the zone the track is in gives a ground scale.
    pub speed_kmh: Option<f32>,
    /// Seconds since the track was first seen.
    pub age_s: f32,
    /// Frames in which it was matched to a detection.
    pub hits: u32,
}

/// What a zone is watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneKind {
    TrafficJam,
    Crowd,
    Garbage,
}

impl ZoneKind {
    pub const ALL: [ZoneKind; 3] = [ZoneKind::TrafficJam, ZoneKind::Crowd, ZoneKind::Garbage];

    pub fn as_str(&self) -> &'static str {
        match self {
            ZoneKind::TrafficJam => "traffic_jam",
            ZoneKind::Crowd => "crowd",
            ZoneKind::Garbage => "garbage",
        }
    }
}

/// Traffic level of an approach, after PKJI 2023's degree-of-saturation bands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrafficLevel {
    /// Free flow.
    Lancar,
    /// Dense.
    Padat,
    /// Jammed.
    Macet,
}

impl TrafficLevel {
    pub fn as_str(&self) -> &'static str {
        Level::from(*self).as_str()
    }
}

/// The level of an incident or a zone's condition, as it travels (MQTT `incident.level`, the
/// desk's stored value): a jam's traffic level, or how high another rule's condition is. Typed
/// from the rule to the wire; the words people read are made where they are shown (incident
/// texts, the wall).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Traffic flows freely (jam zones).
    Lancar,
    /// Dense traffic (jam zones).
    Padat,
    /// Jammed (jam zones).
    Macet,
    /// Moderate: the rule's condition holds (crowd, garbage).
    Sedang,
    /// High: the condition holds strongly (a crowd at twice its threshold), or a camera problem.
    Tinggi,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Lancar,
        Level::Padat,
        Level::Macet,
        Level::Sedang,
        Level::Tinggi,
    ];

    /// The wire word (what serde writes).
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Lancar => "lancar",
            Level::Padat => "padat",
            Level::Macet => "macet",
            Level::Sedang => "sedang",
            Level::Tinggi => "tinggi",
        }
    }
}

impl From<TrafficLevel> for Level {
    fn from(l: TrafficLevel) -> Self {
        match l {
            TrafficLevel::Lancar => Level::Lancar,
            TrafficLevel::Padat => Level::Padat,
            TrafficLevel::Macet => Level::Macet,
        }
    }
}

/// A word that is not a [`Level`]'s wire word.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {0:?}; levels are lancar, padat, macet, sedang, tinggi")]
pub struct UnknownLevel(pub String);

impl std::str::FromStr for Level {
    type Err = UnknownLevel;

    /// Parses a wire word (exact, lower case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| UnknownLevel(s.to_string()))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Three-colour condition of a zone, as the wall paints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Green: nothing to do.
    Normal,
    /// Yellow: above normal, below the incident threshold, or not yet held long enough.
    Elevated,
    /// Red: an incident is open.
    Alert,
}

/// Whether a zone's facts are current.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneWatch {
    /// The rule has not measured the zone yet (a picture-based rule without a usable picture).
    #[default]
    Waiting,
    /// The facts are from the latest frame the rule could use.
    Live,
    /// The camera was lost: nothing is measured until a frame the rule can use arrives.
    CameraOffline,
}

/// A zone's condition after the latest analytics frame, as typed facts; the wall words them
/// ("macet", "14 orang", "sampah 3 mnt", `wall::words`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneState {
    pub zone: ZoneId,
    pub kind: ZoneKind,
    pub severity: Severity,
    pub watch: ZoneWatch,
    /// The zone's level where its rule grades one every frame (a jam zone's traffic level).
    pub level: Option<Level>,
    /// Objects of interest currently inside the zone (vehicles, persons, static objects).
    pub count: u32,
    /// Seconds since the oldest static object in the zone became static (no-dumping zones,
    /// while objects are present).
    pub oldest_static_s: Option<f32>,
}

impl ZoneState {
    /// A zone nothing has been measured in yet.
    pub fn new(zone: ZoneId, kind: ZoneKind) -> Self {
        Self {
            zone,
            kind,
            severity: Severity::Normal,
            watch: ZoneWatch::Waiting,
            level: None,
            count: 0,
            oldest_static_s: None,
        }
    }
}

/// Totals of one counting line: crossings per direction and class since start.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct LineTotals {
    pub line: Option<LineId>,
    /// Crossings in the line's "in" direction (left to right when walking from point A to B).
    pub in_count: u64,
    pub out_count: u64,
}

/// Everything the wall needs to draw a site: the latest analytics results.
#[derive(Clone, Debug, Default)]
pub struct SiteResults {
    pub captured_at: Option<DateTime<Utc>>,
    /// The analytics frame's place on the media timeline (the browser wall keys boxes by it).
    pub media_time: Option<MediaTime>,
    pub tracks: Vec<Track>,
    pub zones: Vec<ZoneState>,
    pub lines: Vec<LineTotals>,
    /// Zones (and `None` for camera-level) with an open incident.
    pub open_incidents: Vec<(IncidentKind, Option<ZoneId>)>,
    /// How long each tracked object has been inside each zone (confirmed and coasting tracks).
    pub dwell: Vec<ZoneDwell>,
}

/// Time a tracked object has spent inside a zone so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneDwell {
    pub zone: ZoneId,
    pub track: TrackId,
    pub dwell_s: f32,
}

/// Kind of incident, as it travels over MQTT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    TrafficJam,
    Crowd,
    Garbage,
    CameraOffline,
    CameraTamper,
}

impl IncidentKind {
    pub const ALL: [IncidentKind; 5] = [
        IncidentKind::TrafficJam,
        IncidentKind::Crowd,
        IncidentKind::Garbage,
        IncidentKind::CameraOffline,
        IncidentKind::CameraTamper,
    ];
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentKind::TrafficJam => "traffic_jam",
            IncidentKind::Crowd => "crowd",
            IncidentKind::Garbage => "garbage",
            IncidentKind::CameraOffline => "camera_offline",
            IncidentKind::CameraTamper => "camera_tamper",
        }
    }
}

impl From<ZoneKind> for IncidentKind {
    fn from(k: ZoneKind) -> Self {
        match k {
            ZoneKind::TrafficJam => IncidentKind::TrafficJam,
            ZoneKind::Crowd => IncidentKind::Crowd,
            ZoneKind::Garbage => IncidentKind::Garbage,
        }
    }
}

/// Phase of a rule's condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RulePhase {
    /// The condition has held for its dwell time: open an incident.
    Start,
    /// The condition still holds; evidence or level changed.
    Update,
    /// The condition has been clear for its clear time: close the incident.
    End,
}

/// Measured evidence behind an incident. Fields that do not apply to a kind are absent.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vehicle_count: Option<u32>,
    /// Share of the zone covered by vehicle boxes, 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occupancy: Option<f32>,
    /// Degree of saturation estimate (PKJI-style), 0..>1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degree_of_saturation: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_speed_kmh: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_speed_px_s: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persons: Option<u32>,
    /// Crowd: how `persons` was counted (`boxes+foreground`: confident person boxes, and
    /// low-scoring ones where the picture differs from the zone's background; `boxes`: without
    /// a usable picture, confident boxes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count_method: Option<String>,
    /// Crowd: how many of `persons` came from low-scoring boxes on foreground.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persons_low_score: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density_per_m2: Option<f32>,
    /// How long the condition has held, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f32>,
    /// Static objects found in a no-dumping zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects: Option<u32>,
    /// Share of the zone covered by new static foreground, 0..1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_area: Option<f32>,
    /// Detector classes seen on the static objects (e.g. "bottle", "suitcase").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Camera health figures for tamper / offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharpness_ratio: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub histogram_distance: Option<f32>,
    /// Camera tamper: how far the view moved from the reference, 0 (same) .. 0.5 (unrelated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_distance: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline_s: Option<f32>,
    /// Free-form reason, e.g. "covered", "defocused", "turned_away", "stream error: ...".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The same rule's previous incident here ended this many seconds before this one's
    /// condition began, within the rule's `cooldown_s`: the condition came back, and is
    /// reported as a new incident (docs/rules.md, "cooldown").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopened_after_s: Option<f32>,
}

/// A box to draw on an incident snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotBox {
    pub bbox: BBox,
    pub label: String,
}

/// A rule's decision, emitted by analytics and consumed by the incident stage.
#[derive(Clone, Debug)]
pub struct RuleEvent {
    pub site: SiteId,
    /// The zone the rule watches; `None` for camera-level rules (offline, tamper).
    pub zone: Option<ZoneId>,
    pub kind: IncidentKind,
    pub phase: RulePhase,
    /// The incident's level: lancar / padat / macet for jams, sedang / tinggi for the others.
    pub level: Level,
    /// When the condition began (dwell start). Stable across updates: part of the incident id.
    pub started_at: DateTime<Utc>,
    /// When this event was decided.
    pub at: DateTime<Utc>,
    pub evidence: Evidence,
    /// The best picture at hand when the event was decided, for the snapshot.
    pub frame: Option<Arc<Image>>,
    /// Boxes of the objects behind the decision.
    pub boxes: Vec<SnapshotBox>,
}

/// Crossings of one counting line in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirCounts {
    #[serde(rename = "in")]
    pub in_count: u64,
    #[serde(rename = "out")]
    pub out_count: u64,
}

/// A counting line's crossings over one reporting interval, per detector class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineCounts {
    pub line: LineId,
    pub name: String,
    pub in_name: String,
    pub out_name: String,
    /// Class name -> crossings; classes with no crossing are absent.
    pub by_class: std::collections::BTreeMap<String, DirCounts>,
}

/// A traffic-jam zone's condition over one reporting interval (for Dishub's congestion levels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZoneTraffic {
    pub zone: ZoneId,
    pub name: String,
    /// Level at the end of the interval.
    pub level: TrafficLevel,
    /// Mean degree of saturation over the interval.
    pub degree_of_saturation: f32,
    /// Mean number of vehicles in the zone.
    pub mean_vehicles: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median_speed_kmh: Option<f32>,
}

/// Per-interval counts of one site, emitted by analytics when an interval closes and published
/// on `simpang/v1/sites/{site}/counts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountsReport {
    pub site: SiteId,
    /// Length of the interval in seconds (60 and 900 by default).
    pub interval_s: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub lines: Vec<LineCounts>,
    pub zones: Vec<ZoneTraffic>,
}

/// What happened to an incident in one MQTT message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentEvent {
    New,
    Update,
    End,
}

impl IncidentEvent {
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentEvent::New => "new",
            IncidentEvent::Update => "update",
            IncidentEvent::End => "end",
        }
    }
}

/// The schema tag every incident message carries.
pub const INCIDENT_SCHEMA: &str = "simpang.incident/1";

/// One message on `simpang/v1/sites/{site}/incidents` (see docs/mqtt.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentMessage {
    pub schema: String,
    pub event: IncidentEvent,
    pub incident: Incident,
}

/// An auto-generated incident report, as filed into the complaint workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Deterministic: derived from site, zone, kind and start time.
    pub id: String,
    /// Increases by one with every message about this incident, so consumers can drop stale ones.
    pub seq: u32,
    pub site: String,
    pub site_name: String,
    pub camera: String,
    pub kind: IncidentKind,
    pub level: Level,
    /// Indonesian title, e.g. "Kemacetan di Simpang Charitas".
    pub title: String,
    pub title_en: String,
    pub description: String,
    pub description_en: String,
    pub address: String,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
    pub started_at: DateTime<FixedOffset>,
    pub updated_at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<FixedOffset>>,
    pub evidence: Evidence,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

/// A JPEG of the scene with boxes and zone drawn, carried inline in the message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
    /// Where the producer stored it, relative to its data directory.
    pub path: String,
    /// The JPEG bytes, base64 (standard alphabet, padded).
    pub data_base64: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_cases() {
        let a = BBox::new(0.0, 0.0, 0.5, 0.5);
        let cases = [
            (a, a, 1.0),
            (a, BBox::new(0.5, 0.5, 1.0, 1.0), 0.0),
            (a, BBox::new(0.25, 0.0, 0.75, 0.5), 1.0 / 3.0),
            (a, BBox::new(0.2, 0.2, 0.2, 0.2), 0.0),
            (BBox::default(), BBox::default(), 0.0),
        ];
        for (x, y, want) in cases {
            assert!((x.iou(&y) - want).abs() < 1e-6, "{x:?} {y:?}");
            assert!((y.iou(&x) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn levels_round_trip_every_wire_word() {
        let words = ["lancar", "padat", "macet", "sedang", "tinggi"];
        assert_eq!(Level::ALL.len(), words.len());
        for (l, w) in Level::ALL.into_iter().zip(words) {
            assert_eq!(l.as_str(), w);
            assert_eq!(l.to_string(), w);
            assert_eq!(serde_json::to_string(&l).unwrap(), format!("\"{w}\""));
            assert_eq!(
                serde_json::from_str::<Level>(&format!("\"{w}\"")).unwrap(),
                l
            );
            assert_eq!(w.parse::<Level>(), Ok(l));
        }
        for bad in ["", "Macet", "parah", " macet"] {
            let e = bad.parse::<Level>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            assert!(serde_json::from_str::<Level>(&format!("{bad:?}")).is_err());
        }
        for t in [
            TrafficLevel::Lancar,
            TrafficLevel::Padat,
            TrafficLevel::Macet,
        ] {
            assert_eq!(Level::from(t).as_str(), t.as_str());
            assert_eq!(
                serde_json::to_string(&Level::from(t)).unwrap(),
                serde_json::to_string(&t).unwrap()
            );
        }
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let s = serde_json::to_string(&SiteId::new("bkb")).unwrap();
        assert_eq!(s, "\"bkb\"");
        assert_eq!(serde_json::to_string(&TrackId(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&IncidentKind::CameraOffline).unwrap(),
            "\"camera_offline\""
        );
    }
}
