//! What the integration tests share, one module for all of them (`mod support;`): real
//! processes on loopback ports they pick and report ([`ports`], [`process`], [`simpang`]),
//! waiting for conditions instead of sleeping ([`wait`]), one Prometheus parser ([`metrics`]),
//! and the real servers and clients the tests drive: PostgreSQL ([`pg`]), Mosquitto
//! ([`mosquitto`]), a NATS broker cluster ([`nats`]) and the cluster nodes on it ([`node`]), MQTT subscribers and the message schemas
//! ([`mqtt`]), the desk ([`desk`], as a process on PostgreSQL: [`deskproc`]), browsers ([`browser`]), the wall's streams ([`wall`],
//! [`live`]), footage and models ([`analytics`], [`detect`], [`onnx`]).
//!
//! Nothing here skips a test: a part that is missing (PostgreSQL, mosquitto, a browser, a
//! GStreamer element) fails the test that needs it with a message naming it.
#![allow(dead_code)]

pub mod analytics;
pub mod browser;
pub mod desk;
pub mod deskproc;
pub mod detect;
pub mod live;
pub mod metrics;
pub mod mosquitto;
pub mod mqtt;
pub mod nats;
pub mod node;
pub mod onnx;
pub mod pg;
pub mod ports;
pub mod process;
pub mod producer;
pub mod simpang;
pub mod trace;
pub mod wait;
pub mod wall;

use std::path::Path;

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `simpang` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simpang")
}
