//! `simpang eval`: compare detector models on the same footage in one run — load time, latency
//! at each intra-op thread count, agreement with a reference model (recall and precision at
//! IoU 0.5 for persons and for vehicles, person-count error) and the hand-checked person counts
//! of tests/fixtures/detect/vtest-persons.toml. Latencies are taken in interleaved rounds (every
//! model and thread count once per round), so a machine that gets busier or quieter during the
//! run shifts every model alike.
//!
//! Frames go through the same GStreamer decode and scaler as the analytics branch
//! ([`VideoReader`](crate::ingest::reader::VideoReader) at each model's input size), so each
//! model sees what it would see live.
//!
//! Files: `plan` (the command line and what it resolves to), `run` (loading, reading frames,
//! timing), `report` (the numbers worked out of the runs, the table and the JSON).

mod plan;
mod report;
mod run;

use std::process::ExitCode;

use anyhow::Context;

pub use plan::{EvalArgs, ModelSpec};
pub use report::{
    render, FixtureFrame, FixtureReport, FootageUse, GroupReport, Host, Latency, ModelReport,
    Report,
};

/// IoU at which a model's box counts as the reference's box.
pub const MATCH_IOU: f32 = 0.5;
/// The bar a variant must clear to replace the reference (issue 10).
pub const MIN_AGREEMENT: f64 = 0.90;
/// Untimed inferences per detector before the timed rounds.
const WARMUP_RUNS: usize = 3;
/// Loads per model; the reported load time is their median.
const LOADS: usize = 3;

pub fn main(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let plan = plan::plan(&args)?;
    let measured = run::measure(&args, &plan)?;
    let report = report::score(&args, &plan, measured);
    print!("{}", render(&report));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, text + "\n").with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("JSON written to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
