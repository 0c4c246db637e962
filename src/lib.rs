//! simpang: CCTV video analytics for a city command center.
//!
//! Stages, each in its own module, joined by plain data ([`model`]) over bounded channels and
//! latest-value slots ([`hub`]):
//!
//! - [`ingest`]: GStreamer pipelines per camera (reconnect, backoff), sample RTSP cameras
//! - [`detect`]: ONNX Runtime detector, model manifests, pre/post-processing
//! - [`track`]: multi-object tracker (ByteTrack-style)
//! - [`analytics`]: zones, counting lines, traffic-jam / crowd / garbage / tamper rules
//! - [`incident`]: incident lifecycle, snapshots, on-disk outbox, MQTT
//! - [`wall`]: overlay drawing, MJPEG/SSE web wall, annotated RTSP out
//! - [`desk`]: the complaint workflow service
//! - [`bench`]: replay footage as N cameras and measure
//! - [`timing`]: raw stage timings the bench collects (off in `run`)
//! - [`app`]: wiring of the stages for `simpang run`, `demo` and `check`
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod analytics;
pub mod app;
pub mod bench;
pub mod config;
pub mod desk;
pub mod detect;
pub mod hub;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod time;
pub mod timing;
pub mod track;
pub mod wall;
