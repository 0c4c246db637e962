//! The typed configuration tree (one TOML file, see `config/palembang.toml` and docs/config.md).
//!
//! Loading is two passes: serde (`deny_unknown_fields` everywhere) for shape, then
//! [`Config::validate`] for meaning. Both report every problem with file, line and field path.
//! Relative paths in the file are relative to the file's own directory.
//!
//! Files: `load` (reading, the located [`Problem`] and [`ConfigError`]), `sections` (the
//! `[detect]`, `[ingest]`, `[incidents]`, `[wall]`, `[samples]` tables), `mqtt` (`[mqtt]` and
//! `[desk.mqtt]`, with their checks), `site`
//! (sites, zones, counting lines), `rules` (the per-zone rule tables), `desk` (`[desk]`),
//! `cluster` (`[cluster]`: leases of `run --node`), `access` (listener limits, the wall's sign-in, `[metrics]`, the desk's public rate limits),
//! `validate` (meaning checks), `locate` (TOML text positions of field paths).

pub mod access;
mod cluster;
pub mod desk;
mod load;
pub mod locate;
mod mqtt;
pub mod rules;
mod sections;
mod site;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use access::{DeskLimits, HttpConfig, MetricsConfig, Rate, WallAuthConfig};
pub use cluster::ClusterConfig;
pub use desk::DeskConfig;
pub use load::{ConfigError, Problem};
use locate::{line_col, FieldPath, Locator};
pub use mqtt::{broker_uses_tls, check_broker_url, DeskMqtt, MqttConfig};
pub use rules::{CrowdRule, GarbageRule, JamRule, TamperRule};
pub use sections::{
    DetectConfig, IncidentConfig, IngestConfig, OptimizationLevel, SamplesConfig, WallConfig,
};
pub use site::{CountLine, Homography, Site, Zone};
pub use validate::check_stream;

use crate::time::Timezone;

/// The config file every command reads unless told otherwise (`--config`), relative to the
/// working directory: the checkout's own Palembang deployment.
pub const DEFAULT_PATH: &str = "config/palembang.toml";

/// [`DEFAULT_PATH`] as a path, for clap's `default_value_os_t`.
pub fn default_path() -> PathBuf {
    PathBuf::from(DEFAULT_PATH)
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
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `simpang run --node` nodes: leases, capacity (src/cluster).
    #[serde(default)]
    pub cluster: ClusterConfig,
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

impl Config {
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
}

#[cfg(test)]
mod tests;
