//! Ingest against real sample RTSP cameras on loopback: frame rates, reconnect after an outage,
//! and an unreachable camera.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Both cameras online, then analytics frames at the detect rate (5 fps) within ±20%, display
/// frames at the source rate.
#[test]
fn analytics_frames_arrive_at_detect_rate() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cfg = base_config(dir.path());
    cfg += &site_block("bkb", &format!("rtsp://127.0.0.1:{port}/bkb"));
    cfg += &site_block("ampera", &format!("rtsp://127.0.0.1:{port}/ampera"));
    let cfg = write(dir.path(), "rate.toml", &cfg);
    let _samples = start_samples(&cfg, &["bkb", "ampera"], port, dir.path());
    let (run, addr) = start_run(&cfg, dir.path(), "run-rate");

    let online = wait_until(Duration::from_secs(30), || {
        ["bkb", "ampera"]
            .iter()
            .all(|s| site_metric(&addr, "simpang_camera_online", s) == Some(1.0))
    });
    assert!(online.is_some(), "cameras not online\n{}", run.stderr());
    // Let the RTSP jitter buffers settle, then measure over 10 s.
    std::thread::sleep(Duration::from_secs(2));
    let read = |name: &str, site: &str| site_metric(&addr, name, site).unwrap_or(-1.0);
    let t0 = Instant::now();
    let a0: Vec<f64> = ["bkb", "ampera"]
        .iter()
        .map(|s| read("simpang_analytics_frames_total", s))
        .collect();
    let d0: Vec<f64> = ["bkb", "ampera"]
        .iter()
        .map(|s| read("simpang_display_frames_total", s))
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let secs = t0.elapsed().as_secs_f64();
    for (i, (site, source_fps)) in [("bkb", 10.0), ("ampera", 29.97)].iter().enumerate() {
        let a = (read("simpang_analytics_frames_total", site) - a0[i]) / secs;
        let d = (read("simpang_display_frames_total", site) - d0[i]) / secs;
        assert!(
            (4.0..=6.0).contains(&a),
            "{site}: analytics {a:.2} fps, want 5 ± 20%"
        );
        assert!(
            d >= source_fps * 0.8 && d <= source_fps * 1.2,
            "{site}: display {d:.2} fps, want about {source_fps}"
        );
    }
    let status = http_get(&addr, "/api/status").unwrap();
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(v["sites"].as_array().unwrap().len(), 2);
    assert_eq!(v["sites"][0]["status"]["online"], true);
    assert_eq!(v["sites"][1]["status"]["width"], 640);
}

/// One camera's source goes away for a few seconds and comes back: it reconnects within 10 s of
/// the source returning, the metrics count the reconnect, and the other camera never stops.
#[test]
fn camera_reconnects_after_outage_while_other_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let mut cfg = base_config(dir.path());
    cfg += &site_block("bkb", &format!("rtsp://127.0.0.1:{port_a}/bkb"));
    cfg += &site_block("ampera", &format!("rtsp://127.0.0.1:{port_b}/ampera"));
    let cfg = write(dir.path(), "fault.toml", &cfg);
    let mut server_a = start_samples(&cfg, &["bkb"], port_a, dir.path());
    let _server_b = start_samples(&cfg, &["ampera"], port_b, dir.path());
    let (run, addr) = start_run(&cfg, dir.path(), "run-fault");
    let online = |s: &str| site_metric(&addr, "simpang_camera_online", s) == Some(1.0);
    assert!(
        wait_until(Duration::from_secs(30), || online("bkb")
            && online("ampera"))
        .is_some(),
        "cameras not online\n{}",
        run.stderr()
    );
    let frames = |s: &str| site_metric(&addr, "simpang_frames_decoded_total", s).unwrap_or(0.0);
    let reconnects = |s: &str| site_metric(&addr, "simpang_reconnects_total", s).unwrap_or(-1.0);
    assert_eq!(reconnects("bkb"), 0.0);

    // Outage of camera A's server.
    server_a.kill();
    let outage_start = Instant::now();
    let b_before = frames("ampera");
    assert!(
        wait_until(Duration::from_secs(15), || !online("bkb")).is_some(),
        "bkb still online after its server died"
    );
    // Keep it down for a few seconds; meanwhile B must keep decoding at its source rate.
    while outage_start.elapsed() < Duration::from_secs(6) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let b_rate = (frames("ampera") - b_before) / outage_start.elapsed().as_secs_f64();
    assert!(
        b_rate > 20.0,
        "ampera slowed to {b_rate:.1} fps during bkb's outage"
    );
    assert!(online("ampera"));

    // Source back on the same port.
    let _server_a2 = start_samples(&cfg, &["bkb"], port_a, dir.path());
    let back = Instant::now();
    let took = wait_until(Duration::from_secs(20), || online("bkb"));
    assert!(
        took.is_some() && back.elapsed() <= Duration::from_secs(10) + Duration::from_millis(500),
        "bkb did not reconnect within 10 s of the source returning (took {:?})\n{}",
        took,
        run.stderr()
    );
    assert!(reconnects("bkb") >= 1.0, "reconnect not counted");
    assert_eq!(reconnects("ampera"), 0.0, "the healthy camera reconnected");
    let f = frames("bkb");
    std::thread::sleep(Duration::from_secs(2));
    assert!(frames("bkb") > f, "bkb online but not decoding");
}

/// A camera nobody serves: reported offline with the reason, retried with backoff, never a crash.
#[test]
fn unreachable_camera_is_offline_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let mut cfg = base_config(dir.path());
    cfg += &site_block("ghost", &format!("rtsp://127.0.0.1:{dead}/nothing"));
    cfg += &site_block("nofile", "/nonexistent/clip.mp4");
    let cfg = write(dir.path(), "dead.toml", &cfg);
    let (mut run, addr) = start_run(&cfg, dir.path(), "run-dead");
    let retried = wait_until(Duration::from_secs(20), || {
        site_metric(&addr, "simpang_reconnects_total", "ghost").unwrap_or(0.0) >= 2.0
            && site_metric(&addr, "simpang_reconnects_total", "nofile").unwrap_or(0.0) >= 2.0
    });
    assert!(retried.is_some(), "no retries\n{}", run.stderr());
    for s in ["ghost", "nofile"] {
        assert_eq!(site_metric(&addr, "simpang_camera_online", s), Some(0.0));
    }
    let v: serde_json::Value =
        serde_json::from_str(&http_get(&addr, "/api/status").unwrap()).unwrap();
    let err = v["sites"][1]["status"]["last_error"].as_str().unwrap_or("");
    assert!(
        !err.is_empty(),
        "no error reported for the missing file: {v}"
    );
    assert!(run.child.try_wait().unwrap().is_none(), "process died");
    let st = run.terminate(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {st:?}"
    );
    let log = std::fs::read_to_string(&run.stderr_path).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
