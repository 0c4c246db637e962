//! Drawing results over pictures, for every stage that shows them: zone polygons, counting
//! lines, boxes and labels, on BGR pictures ([`overlay`], incident snapshots and `simpang
//! detect`) and in place on I420 display frames ([`canvas`], the wall's tiles and mosaic).
//!
//! Neutral ground: it knows pictures and plain geometry from [`crate::model`], never a stage,
//! so the wall and the incident stage both draw with it without depending on each other.

pub mod canvas;
pub mod overlay;

pub use overlay::DrawError;
