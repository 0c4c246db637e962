//! `simpang bench`: replays footage as N cameras and measures (built in its own issue).

use std::process::ExitCode;

/// Arguments of `simpang bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "config/palembang.toml")]
    pub config: std::path::PathBuf,
}

pub fn main(_args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simpang bench is not built yet")
}
