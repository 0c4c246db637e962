//! `[[sites]]`: one camera per site, its zones and counting lines.

use serde::Deserialize;

use super::rules::{self, CrowdRule, GarbageRule, JamRule, TamperRule};
use crate::model::{SiteId, ZoneKind};

/// One watched intersection and its camera.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Short id: lower-case letters, digits and '-'; used in topics and URLs.
    pub id: SiteId,
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
    /// The camera's second, smaller stream for detection (Frigate's `detect` role), same
    /// kinds of location as `stream`. When set, analytics decodes only this one; `stream` goes
    /// to the browser wall by passthrough and is decoded only while a burned-in output (MJPEG,
    /// annotated RTSP) is watched.
    #[serde(default)]
    pub detect_stream: Option<String>,
    #[serde(default)]
    pub zones: Vec<Zone>,
    #[serde(default)]
    pub lines: Vec<CountLine>,
    #[serde(default)]
    pub tamper: TamperRule,
}

impl Site {
    pub fn camera_id(&self) -> &str {
        self.camera.as_deref().unwrap_or(self.id.as_str())
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
