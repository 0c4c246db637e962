//! `simpang desk`: the complaint workflow service (built in its own issue).

use std::process::ExitCode;

/// Arguments of `simpang desk`.
#[derive(clap::Args, Debug)]
pub struct DeskArgs {
    #[arg(long, default_value = "config/palembang.toml")]
    pub config: std::path::PathBuf,
}

pub fn main(_args: DeskArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simpang desk is not built yet")
}
