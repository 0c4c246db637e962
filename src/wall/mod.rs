//! Overlay drawing, the MJPEG/SSE web wall and annotated RTSP out.
//!
//! Entry point for `simpang run`: [`Wall::start`]; its [`Wall::router`] is served on the same
//! HTTP listener as `/metrics`.

pub mod overlay;

use std::sync::Arc;

use prometheus::Registry;

use crate::config::Config;
use crate::hub::Hub;
use crate::model::Labels;

#[derive(Debug, thiserror::Error)]
pub enum WallError {
    #[error("wall: {0}")]
    Other(String),
}

/// The running wall outputs.
pub struct Wall {
    _hub: Arc<Hub>,
}

impl Wall {
    pub fn start(
        _cfg: &Config,
        hub: Arc<Hub>,
        _labels: Labels,
        _registry: &Registry,
    ) -> Result<Self, WallError> {
        Ok(Self { _hub: hub })
    }

    /// HTTP routes of the wall (page, MJPEG streams, SSE events).
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }

    pub fn stop(self) {}
}
