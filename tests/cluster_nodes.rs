//! Cameras that move between analytics nodes (docs/deploy.md, "Analytics nodes"): three NATS
//! nodes (MQTT + JetStream, the lease store), `simpang samples` with the six sample cameras, and
//! two `simpang run --node` processes on one config (each with its own `data_dir`, as two
//! machines would have). Counts, not timings, except the 30 s takeover bound (twice the
//! ~14 s measured).
//!
//! - node `a` (`--capacity 2`) and node `b` share the six sites; `a` never holds more than 2;
//! - `a` is killed with SIGKILL: its sites run on `b` within 30 s;
//! - sampled every ~0.2 s from both nodes' metrics, no site is ever held by two nodes, and the
//!   retained status of every site names the node holding it and that node's lease;
//! - `a` comes back and takes nothing held; `b` gets SIGTERM and drains: it stops each site and
//!   releases its lease, and `a` takes two of them (its capacity), not more;
//! - the MQTT incident stream has no (id, seq) twice.
//!
//! A network partition (fencing) is in `partitioned_node_stops_before_another_starts` below.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::metrics::Metrics;
use support::nats::NatsCluster;
use support::node::{last_status, logs, node_config, Node, Sub, SITES};
use support::simpang::{point_streams_at, Samples};
use support::wait::poll;

/// Bounds of a hang; each wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(90);
/// The requirement for a killed node's sites (FINDINGS B measured ~14 s at TTL 20 s).
const TAKEOVER: Duration = Duration::from_secs(30);

/// What a [`Sampler`] saw: the most sites each node held, every "site on two nodes" sample,
/// and how many samples it took.
type Sampled = (HashMap<String, usize>, Vec<String>, usize);

/// Samples every node's holdings every ~0.2 s on its own thread: the largest number of sites
/// each node held, and every sample where a site was held by two nodes.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Sampled>>,
}

impl Sampler {
    fn start(nodes: Vec<(String, String)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max: HashMap<String, usize> = HashMap::new();
            let mut twice = Vec::new();
            let mut samples = 0;
            while !s.load(Ordering::SeqCst) {
                let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (name, ops) in &nodes {
                    let Some(m) = Metrics::scrape(&format!("{ops}/metrics")) else {
                        continue;
                    };
                    let held: Vec<String> = m
                        .series("simpang_cluster_site_held", &[])
                        .filter(|s| s.value == 1.0)
                        .filter_map(|s| s.labels.iter().find(|(k, _)| k == "site"))
                        .map(|(_, v)| v.clone())
                        .collect();
                    let e = max.entry(name.clone()).or_insert(0);
                    *e = (*e).max(held.len());
                    for site in held {
                        holders.entry(site).or_default().push(name.clone());
                    }
                }
                for (site, by) in holders {
                    if by.len() > 1 {
                        twice.push(format!("{site} held by {by:?}"));
                    }
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            (max, twice, samples)
        });
        Sampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Sampled {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .map(|t| t.join().expect("sampler"))
            .unwrap_or_default()
    }
}

#[test]
fn killed_node_sites_move_within_30_s_and_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start(3, None);
    let (mqtt, nurls) = (nats.urls(), nats.nats_urls());
    let cfg_a = node_config(dir.path(), "a", &mqtt, &nurls, "");
    let cfg_b = node_config(dir.path(), "b", &mqtt, &nurls, "");
    let samples = Samples::start(&cfg_a, &[], None);
    point_streams_at(&cfg_a, samples.port);
    point_streams_at(&cfg_b, samples.port);
    let port = nats.mqtt_ports[1];
    let incidents = Sub::start(port, "simpang/v1/sites/+/incidents", "nodes-test-incidents");

    let mut a = Node::start(&cfg_a, "a", Some(2));
    let got = poll(WAIT, || (a.count() == 2).then_some(()));
    assert!(got.is_some(), "a holds 2 sites:\n{}", logs(&[&a], &nats));
    let b = Node::start(&cfg_b, "b", None);
    let sampler = Sampler::start(vec![
        ("a".into(), a.ops.clone()),
        ("b".into(), b.ops.clone()),
    ]);
    let all = poll(WAIT, || (b.count() == 4).then_some(()));
    assert!(
        all.is_some(),
        "b takes the 4 free sites:\n{}",
        logs(&[&a, &b], &nats)
    );
    let held_a = a.held().expect("a answers");
    let held_b = b.held().expect("b answers");
    assert_eq!(held_a.len() + held_b.len(), SITES.len());

    // Every site's retained status names the node holding it and that node's lease.
    let status = Sub::start(port, "simpang/v1/sites/+/status", "nodes-test-status");
    let named = poll(WAIT, || {
        let last = last_status(&status);
        let ok = held_a
            .iter()
            .map(|(s, t)| (s, t, "a"))
            .chain(held_b.iter().map(|(s, t)| (s, t, "b")))
            .all(|(site, token, node)| {
                last.get(site.as_str()).is_some_and(|v| {
                    v["state"] == "online" && v["node"] == node && v["lease"] == *token
                })
            });
        ok.then_some(())
    });
    assert!(
        named.is_some(),
        "statuses {:#?} vs a {held_a:?}, b {held_b:?}",
        last_status(&status)
    );
    drop(status);

    // A crash: a's sites start on b.
    let killed = Instant::now();
    a.proc.kill();
    let moved = poll(WAIT, || {
        (b.count() == SITES.len()).then(|| killed.elapsed())
    });
    let moved =
        moved.unwrap_or_else(|| panic!("b does not take a's sites:\n{}", logs(&[&b], &nats)));
    eprintln!("takeover after kill -9: {:.1} s", moved.as_secs_f64());
    if std::env::var_os("SIMPANG_TEST_SHOW_LOG").is_some() {
        for l in b.proc.log().lines().filter(|l| l.contains("cluster")) {
            eprintln!("b: {l}");
        }
    }
    assert!(
        moved <= TAKEOVER,
        "a's sites started on b after {moved:?}, over {TAKEOVER:?}"
    );
    let after_kill = b.held().expect("b answers");
    for (site, token) in &held_a {
        assert!(
            after_kill[site] > *token,
            "{site}: b's lease {} is not newer than a's {token}",
            after_kill[site]
        );
    }

    // a comes back: everything is held, so it takes nothing; b drains on SIGTERM.
    let a = Node::start(&cfg_a, "a", Some(2));
    let sampler2 = Sampler::start(vec![
        ("a".into(), a.ops.clone()),
        ("b".into(), b.ops.clone()),
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.count(),
        0,
        "a took a held site:\n{}",
        logs(&[&a, &b], &nats)
    );
    let mut b = b;
    b.proc.signal(libc::SIGTERM);
    let took = poll(WAIT, || (a.count() == 2).then_some(()));
    assert!(
        took.is_some(),
        "a takes 2 of b's released sites:\n{}",
        logs(&[&a, &b], &nats)
    );
    let st = b.proc.terminate(WAIT);
    assert!(
        st.is_some_and(|s| s.success()),
        "b exits cleanly after its drain:\n{}",
        b.proc.log_tail()
    );
    let released = b.proc.log().matches("lease released").count();
    assert_eq!(
        released,
        SITES.len(),
        "b released every lease:\n{}",
        b.proc.log_tail()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.count(), 2, "a stays at its capacity");

    let (max1, twice1, n1) = sampler.finish();
    let (max2, twice2, n2) = sampler2.finish();
    eprintln!("samples: {n1} + {n2}; most held: {max1:?} then {max2:?}");
    assert!(n1 + n2 > 20, "the sampler ran ({n1} + {n2} samples)");
    assert!(
        twice1.is_empty() && twice2.is_empty(),
        "a site on two nodes: {twice1:?} {twice2:?}"
    );
    assert!(
        max1.get("a").copied().unwrap_or(0) <= 2 && max2.get("a").copied().unwrap_or(0) <= 2,
        "a held more than its capacity: {max1:?} {max2:?}"
    );

    // No incident message twice on the stream.
    let mut seen = BTreeSet::new();
    let mut dups = Vec::new();
    let lines = incidents.lines();
    for (_, payload) in &lines {
        let Ok(v) = serde_json::from_str::<Value>(payload) else {
            continue;
        };
        let key = (
            v["incident"]["id"].as_str().unwrap_or_default().to_string(),
            v["incident"]["seq"].as_u64().unwrap_or(0),
        );
        if !seen.insert(key.clone()) {
            dups.push(key);
        }
    }
    eprintln!(
        "incident messages: {} ({} distinct)",
        lines.len(),
        seen.len()
    );
    assert!(dups.is_empty(), "incident messages twice: {dups:?}");

    // A condition open when its site moved stays one incident.
    let twice = support::node::open_twice(&lines);
    assert!(
        twice.is_empty(),
        "two incidents open for one condition: {twice:?}"
    );
}

/// A network namespace with a veth pair to this machine (`ip netns`, as root): the host side
/// `10.231.N.1/30`, the namespace side `10.231.N.2/30`. Deleted (with its veth) when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_addr: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?} failed (the partition test needs root and iproute2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id();
        let n = id % 250 + 1;
        let name = format!("spg{id}");
        let (host_if, ns_if) = (format!("vh{id}"), format!("vn{id}"));
        let (host_addr, ns_addr) = (format!("10.231.{n}.1"), format!("10.231.{n}.2"));
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            host_if: host_if.clone(),
            host_addr: host_addr.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_addr}/30"),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &name, "link", "set", &ns_if, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts the link: nothing passes between the namespace and this machine.
    fn cut(&self) {
        ip(&["link", "set", &self.host_if, "down"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// (time, site) of every stderr line of `log` that contains `what` (tracing's fmt lines start
/// with an RFC 3339 UTC time; fields follow as `site=ID`).
fn events(log: &str, what: &str) -> Vec<(chrono::DateTime<chrono::Utc>, String)> {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| {
            let clean: String = strip_ansi(l);
            let t = clean.split_whitespace().next()?;
            let t = chrono::DateTime::parse_from_rfc3339(t)
                .ok()?
                .with_timezone(&chrono::Utc);
            let site = clean
                .split_whitespace()
                .find_map(|w| w.strip_prefix("site="))?
                .to_string();
            Some((t, site))
        })
        .collect()
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        match (esc, c) {
            (false, '\u{1b}') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

/// Fencing with a real partition: node `p` runs in a network namespace and reaches the NATS
/// cluster (leases and MQTT) over a veth pair; the link is cut. `p` must stop each site's
/// camera before node `q` (on this machine) starts it, by the two processes' log times (one
/// machine clock).
#[test]
fn partitioned_node_stops_before_another_starts() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsCluster::start_on(3, None, &ns.host_addr);
    let (mqtt, nurls) = (nats.urls(), nats.nats_urls());
    // No cameras needed: a site under a lease runs (and stops) whether its camera answers.
    let cfg_p = node_config(dir.path(), "p", &mqtt, &nurls, "");
    let cfg_q = node_config(dir.path(), "q", &mqtt, &nurls, "");
    let wrap = ["ip", "netns", "exec", ns.name.as_str()];
    let mut p = Node::start_with(Some(&wrap), &cfg_p, "p", None);
    let all = poll(WAIT, || {
        (events(&p.proc.log(), "lease acquired").len() == SITES.len()).then_some(())
    });
    assert!(all.is_some(), "p takes every site:\n{}", logs(&[&p], &nats));
    let q = Node::start(&cfg_q, "q", None);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        q.count(),
        0,
        "q took a site p holds:\n{}",
        logs(&[&p, &q], &nats)
    );

    let cut = chrono::Utc::now();
    ns.cut();
    let moved = poll(WAIT, || (q.count() == SITES.len()).then_some(()));
    assert!(
        moved.is_some(),
        "q takes every site after the cut:\n{}",
        logs(&[&p, &q], &nats)
    );
    let started = events(&q.proc.log(), "lease acquired");
    let plog = p.proc.log();
    let deadline = events(&plog, "lease not renewed in time");
    let stopped = events(&plog, "camera stopped");
    let mut gaps = Vec::new();
    for site in SITES {
        let start = started
            .iter()
            .find(|(_, s)| s == site)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("q never started {site}:\n{}", q.proc.log_tail()));
        let stop = stopped
            .iter()
            .find(|(_, s)| s == site)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("p never stopped {site}'s camera:\n{}", p.proc.log_tail()));
        assert!(
            deadline.iter().any(|(_, s)| s == site),
            "p stopped {site} by its watchdog:\n{}",
            p.proc.log_tail()
        );
        assert!(
            stop < start,
            "{site}: p stopped its camera at {stop}, after q started it at {start}"
        );
        gaps.push((
            site,
            (stop - cut).num_milliseconds(),
            (start - cut).num_milliseconds(),
        ));
    }
    eprintln!("after the cut (ms): (site, p stopped its camera, q started it) {gaps:?}");
    p.proc.kill();
}
