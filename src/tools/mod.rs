//! Tools above the stages: commands that drive a stage from outside to inspect or measure it,
//! never part of a running pipeline. Stages never import from here.
//!
//! - [`detect`]: `simpang detect INPUT`, the detector on an image or video file
//! - [`eval`]: `simpang eval`, detector models compared on speed and agreement ([`agreement`])
//!
//! `simpang bench` lives in [`crate::bench`] (it is big enough to be its own folder); what both
//! read from `/proc` is in [`crate::procfs`].

pub mod agreement;
pub mod detect;
pub mod eval;
