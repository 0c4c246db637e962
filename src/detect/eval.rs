//! `simpang eval`: compare detector models (built in its own issue).

use std::process::ExitCode;

/// Arguments of `simpang eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Comma-separated model manifests.
    #[arg(long)]
    pub models: String,
}

pub fn main(_args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simpang eval is not built yet")
}
