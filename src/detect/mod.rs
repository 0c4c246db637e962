//! The detector: ONNX Runtime sessions, model manifests, pre- and post-processing.

pub mod cli;
pub mod eval;
