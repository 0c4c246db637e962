//! `simpang detect INPUT`: run the detector on an image or a video file.

use std::process::ExitCode;

/// Arguments of `simpang detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Image or video file.
    pub input: std::path::PathBuf,
}

pub fn main(_args: DetectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simpang detect is not built yet")
}
