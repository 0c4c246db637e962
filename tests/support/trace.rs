//! The log of the code under test, in-process, each line with the instant it was written: the
//! failover tests read the phases of a reconnect from it (connection lost, each attempt,
//! CONNACK, SUBACK) relative to the moment they killed a node.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

static LINES: OnceLock<Lines> = OnceLock::new();

/// Where the log goes: a handle on the shared buffer.
#[derive(Clone)]
pub struct Captured {
    lines: Lines,
}

/// Captures this test binary's log at `filter` (an `EnvFilter` directive such as
/// `simpang::desk::mqtt=info`). The first call installs the subscriber; later calls (other tests
/// of the same binary) share it, with the first filter.
pub fn capture(filter: &str) -> Captured {
    let lines = LINES
        .get_or_init(|| {
            let lines: Lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_ansi(false)
                .with_writer(move || Sink(sink.clone()))
                .try_init();
            lines
        })
        .clone();
    Captured { lines }
}

impl Captured {
    /// Lines written after `t`, with their offset from `t`.
    pub fn since(&self, t: Instant) -> Vec<(Duration, String)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(at, l)| (*at - t, l.clone()))
            .collect()
    }

    /// The first line after `t` that contains every one of `needles`, and its offset from `t`.
    pub fn first(&self, t: Instant, needles: &[&str]) -> Option<(Duration, String)> {
        self.since(t)
            .into_iter()
            .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .count()
    }
}

/// One formatted event: `fmt` writes each event with a single `write` of the whole line.
struct Sink(Lines);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let now = Instant::now();
        let mut lines = self.0.lock().unwrap();
        for l in text.lines().filter(|l| !l.is_empty()) {
            lines.push((now, l.to_string()));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `v` sorted: (n, p50, p95, max), for the drills' summaries (nearest rank).
pub fn stats(v: &[Duration]) -> (usize, Option<Duration>, Option<Duration>, Option<Duration>) {
    let mut v = v.to_vec();
    v.sort();
    let rank = |p: f64| {
        (!v.is_empty()).then(|| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1])
    };
    (v.len(), rank(0.50), rank(0.95), v.last().copied())
}

/// `stats` as `n N, p50 X s, p95 Y s, max Z s`.
pub fn describe(v: &[Duration]) -> String {
    let (n, p50, p95, max) = stats(v);
    let s =
        |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
    format!("n {n}, p50 {}, p95 {}, max {}", s(p50), s(p95), s(max))
}
