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
//! - [`wall`]: MJPEG/SSE web wall, annotated RTSP out
//! - [`desk`]: the complaint workflow service
//! - [`cluster`]: `simpang run --node`: site leases on the broker cluster's key-value store
//!
//! Neutral ground every stage may use, which imports no stage: [`model`], [`config`], [`hub`]
//! (the site registry and its latest-value slots), [`draw`] (overlays on pictures), [`time`]
//! (the city's time zone), [`clock`] (the rules' monotonic clock beside the wall clock),
//! [`topics`] (every MQTT topic name), [`guard`] (what every listener uses on a hostile
//! network: hardened HTTP serving, rate limits, bounded password hashing, signed tokens),
//! [`metrics`], [`timing`] (raw stage timings the bench collects), [`shutdown`]
//! (SIGINT/SIGTERM) and [`procfs`].
//!
//! Above the stages, importing them and never imported by them:
//!
//! - [`app`]: wiring of the stages for `simpang run`, `demo` and `check`
//! - [`tools`]: `simpang detect` and `simpang eval`
//! - [`bench`]: replay footage as N cameras and measure
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod analytics;
pub mod app;
pub mod bench;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod desk;
pub mod detect;
pub mod draw;
pub mod guard;
pub mod hub;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod procfs;
pub mod shutdown;
pub mod time;
pub mod timing;
pub mod tools;
pub mod topics;
pub mod track;
pub mod wall;
