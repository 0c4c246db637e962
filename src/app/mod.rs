//! Wiring of the stages into the commands `simpang run`, `simpang replay`, `simpang demo` and
//! `simpang check`.

mod check;
mod demo;
mod frameloop;
pub mod replay;
mod run;
mod sites;

use std::process::ExitCode;

pub use check::{check_main, CheckArgs};
pub use demo::{demo_main, DemoArgs};
pub use replay::{replay, replay_main, ReplayArgs, ReplayOptions, ReplayRun};
pub use run::{run, run_main, RunArgs, Running};
pub use sites::{SiteSlot, Sites};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr} (the wall or the metrics listener): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Detect(#[from] crate::detect::DetectError),
    #[error(transparent)]
    Analytics(#[from] crate::analytics::AnalyticsError),
    #[error(transparent)]
    Incident(#[from] crate::incident::IncidentError),
    #[error(transparent)]
    Wall(#[from] crate::wall::WallError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{0}")]
    Other(String),
}

/// The async runtime a simpang process runs its pipeline on: two workers named `simpang-rt`
/// (`simpang bench` reports CPU by thread name, and counts them under it).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("simpang-rt")
        .enable_all()
        .build()
}

/// Logs to stderr; `RUST_LOG` filters. The managed broker's own log comes through as target
/// `simpang::mosquitto` (its packet lines at trace).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Exit code for a command that found problems.
pub(crate) fn failure() -> ExitCode {
    ExitCode::from(1)
}
