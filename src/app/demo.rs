//! `simpang demo`: the whole system on embedded defaults (built up as the stages land).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `simpang demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value_os_t = super::default_config())]
    pub config: PathBuf,
}

pub fn demo_main(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simpang demo is not wired yet")
}
