//! Ports for the listeners a test must name before their process starts.
//!
//! Whatever can bind port 0 does, and reports what it got: `simpang run` prints
//! `wall: http://ADDR/`, `simpang samples --port 0` prints `samples: rtsp://127.0.0.1:PORT/..`,
//! `simpang desk --listen 127.0.0.1:0` prints `desk: http://ADDR/`, chromedriver `--port=0`
//! prints its port and Firefox writes `MarionetteActivePort` into its profile. This module is
//! for the rest, which take a fixed port: mosquitto (`listener 0` is a unix socket there),
//! PostgreSQL, the embedded rumqttd broker (a `SocketAddr` in its config), annotated RTSP out
//! (`wall.rtsp_port = 0` means "off"), and a server that must come back on the port it had.
//!
//! [`port`] picks below Linux's ephemeral range (32768-60999, `ip_local_port_range`), so no
//! port the kernel hands out (a `bind(0)`, the source port of any outgoing connection) can take
//! it between the pick and the child's bind; in a slice of that space chosen by this process
//! id, so concurrent test binaries pick different ports; never twice in one process; and only
//! one that binds on 127.0.0.1 right now. What can still clash (another program that uses a
//! fixed port there) shows as the child failing to bind, and [`retry_on_clash`] starts it again
//! on new ports.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// First port of the space [`port`] picks from.
const BASE: u32 = 20_000;
/// Ports per process slice.
const SLICE: u32 = 96;
/// Slices below 32768.
const SLICES: u32 = (32_768 - BASE) / SLICE;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A port on 127.0.0.1 for a child that must be told its port (see the module doc).
pub fn port() -> u16 {
    let first = BASE + (std::process::id() % SLICES) * SLICE;
    // Every port of this process's slice, then the whole space, before giving up.
    for _ in 0..(SLICES * SLICE) {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = if n < SLICE {
            first + n
        } else {
            BASE + (first - BASE + n) % (SLICES * SLICE)
        };
        let p = p as u16;
        // TCP for every listener here; UDP too, since an RTSP server may offer it.
        if TcpListener::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p)).is_ok()
        {
            return p;
        }
    }
    panic!("no free port in 127.0.0.1:{BASE}-32767");
}

/// Words in a child's output that say it could not bind its port.
pub fn is_bind_clash(output: &str) -> bool {
    [
        "Address already in use",
        "address already in use",
        "could not bind",
        "cannot listen on",
        "port in use",
    ]
    .iter()
    .any(|w| output.contains(w))
}

/// Starts something that binds fixed ports: `start` picks its ports (with [`port`]) on every
/// call and returns `Err(output)` when its process failed to bind one ([`is_bind_clash`]);
/// then it is called again, up to five times. Any other failure should panic in `start`.
pub fn retry_on_clash<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut clashes = Vec::new();
    for _ in 0..5 {
        match start() {
            Ok(v) => return v,
            Err(output) => clashes.push(output),
        }
    }
    panic!(
        "{what}: every port tried was taken by another program:\n{}",
        clashes.join("\n---\n")
    );
}
