//! The shared config of a cluster of `simpang run --node` processes on the six sample cameras
//! (each node with its own `data_dir`, as machines would have); the nodes themselves are
//! [`super::node::Node`].

use std::path::{Path, PathBuf};

/// The sample cameras' site ids.
pub const SITES: [&str; 6] = [
    "ampera",
    "bkb",
    "charitas",
    "kapten-rivai",
    "masjid-agung",
    "simpang-lima",
];

/// The shared config of the nodes, with node `node`'s `data_dir`; `extra` is appended before
/// the sites (a `[wall.auth]` table, say). Streams point at port 1 until
/// [`super::simpang::point_streams_at`] moves them.
pub fn node_config(
    dir: &Path,
    node: &str,
    mqtt: &[String],
    nats: &[String],
    extra: &str,
) -> PathBuf {
    let r = super::root();
    let mut text = format!(
        r#"data_dir = "{data}"

[city]
name = "Palembang"
timezone = "Asia/Jakarta"

[detect]
model = "{r}/models/nanodet-m-int8/manifest.toml"
ort_library = "{r}/vendor-lib/onnxruntime/libonnxruntime.so"
fps = 2.0

[ingest]
silence_timeout_s = 3.0
backoff_initial_s = 1.0
backoff_max_s = 4.0

[mqtt]
brokers = {mqtt:?}
client_id = "wall-nodes-test"
reconnect_initial_s = 0.2
reconnect_max_s = 1.0

[wall]
listen = "127.0.0.1:0"
rtsp_port = 0

[samples]
footage_dir = "{r}/samples"

[cluster]
nats = {nats:?}
lease_ttl_s = 20

{extra}
"#,
        data = dir.join(format!("data-{node}")).display(),
        r = r.display(),
    );
    for s in SITES {
        text += &format!(
            r#"
[[sites]]
id = "{s}"
name = "Simpang {s}"
address = "Jl. {s}, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:1/{s}"
"#
        );
    }
    let p = dir.join(format!("node-{node}.toml"));
    std::fs::write(&p, text).expect("write config");
    p
}
