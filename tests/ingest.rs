//! Ingest against real sample RTSP cameras on loopback: what reaches analytics and the display
//! per decoded frame, reconnect after an outage, an unreachable camera, and looping file
//! cameras that start without a restart.
//!
//! Everything here is counted, not timed, so a loaded machine changes how long a test takes,
//! not what it finds. The frame rates themselves (decoded, display and analytics fps against the
//! source and detect rates) are `simpang bench`'s figures: per stream, judged against 99 % of
//! the source rate and the detect rate.

mod support;

use std::time::Duration;

use support::metrics::Metrics;
use support::simpang::{base_config, point_streams_at, site_block, write, Run, Samples};
use support::wait::{eventually, poll};

/// Generous: bounds a hang, not a speed.
const HANG: Duration = Duration::from_secs(120);

fn counter(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}

/// A counter that may not exist yet (a series appears with its first increment): 0 then.
fn count(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site).unwrap_or(0.0)
}

/// Both cameras online; then, over at least 10 s of media per camera: analytics gets one frame
/// per 1/detect_fps of media time (the gate decimates by timestamp, so the ratio of analytics
/// to decoded frames is the ratio of the rates, whatever the load), every frame the camera sent
/// was counted before the decoder (the passthrough to browsers), and, nobody watching a
/// burned-in output, nothing reached the display branch.
#[test]
fn analytics_frames_arrive_at_detect_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    cfg += &site_block("bkb", "rtsp://127.0.0.1:1/bkb");
    cfg += &site_block("ampera", "rtsp://127.0.0.1:1/ampera");
    let cfg = write(dir.path(), "rate.toml", &cfg);
    let samples = Samples::start(&cfg, &["bkb", "ampera"], None);
    point_streams_at(&cfg, samples.port);
    let run = Run::start(&cfg, &[]);
    let sites = [("bkb", 10.0), ("ampera", 29.97)];
    let detect_fps = 5.0;

    eventually("both cameras online", HANG, || {
        let m = run.metrics();
        sites
            .iter()
            .all(|(s, _)| m.site("simpang_camera_online", s) == Some(1.0))
    });
    let m0 = run.metrics();
    // 10 s of media per camera, however long the machine takes to decode it.
    let m1 = eventually("10 s of media decoded per camera", HANG * 2, || {
        let m = run.metrics();
        sites
            .iter()
            .all(|(s, fps)| {
                counter(&m, "simpang_frames_decoded_total", s)
                    - counter(&m0, "simpang_frames_decoded_total", s)
                    >= 10.0 * fps
            })
            .then_some(m)
    });
    for (site, source_fps) in sites {
        let d = |name: &str| counter(&m1, name, site) - counter(&m0, name, site);
        let (decoded, analytics, source) = (
            d("simpang_frames_decoded_total"),
            d("simpang_analytics_frames_total"),
            d("simpang_source_frames_total"),
        );
        let dropped = count(&m1, "simpang_decode_dropped_total", site)
            - count(&m0, "simpang_decode_dropped_total", site);
        let want = decoded * detect_fps / source_fps;
        assert!(
            (analytics - want).abs() <= want * 0.2,
            "{site}: {analytics} analytics frames for {decoded} decoded, want {want:.0} ± 20% \
             (5 per media second)"
        );
        // Every frame the decoder got passed the tap first, and none was lost between them
        // unless counted as dropped. At the window's start, frames tapped before it may wait
        // in the decode queue (2 s at most) and in the decoder.
        let in_flight = 2.0 * source_fps + 4.0;
        assert!(
            source + in_flight >= decoded + dropped,
            "{site}: {source} frames tapped, {decoded} decoded, {dropped} dropped before decoding"
        );
        for name in [
            "simpang_display_decoded_total",
            "simpang_display_frames_total",
        ] {
            assert_eq!(
                counter(&m1, name, site),
                0.0,
                "{site}: {name} without a viewer"
            );
        }
    }
    let v: serde_json::Value = serde_json::from_str(
        &ureq::get(&run.ops_url("/api/status"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["sites"].as_array().unwrap().len(), 2);
    assert_eq!(v["sites"][0]["status"]["online"], true);
    assert_eq!(v["sites"][1]["status"]["width"], 640);
}

/// One camera's source goes away and comes back on the same port: it goes offline, comes back
/// at the first or second attempt after the source returns (attempts are `backoff_max_s` = 4 s
/// apart at most, so that is within 10 s whatever the load), the metrics count the reconnect,
/// and the other camera never stops: online at every look, decoding, never reconnecting.
#[test]
fn camera_reconnects_after_outage_while_other_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    cfg += &site_block("bkb", "rtsp://127.0.0.1:1/bkb");
    cfg += &site_block("ampera", "rtsp://127.0.0.1:1/ampera");
    let cfg = write(dir.path(), "fault.toml", &cfg);
    // bkb's camera comes back on its port: one of the tests' own, which nothing else takes.
    let mut server_a = Samples::start_fixed(&cfg, &["bkb"], None);
    let server_b = Samples::start(&cfg, &["ampera"], None);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("rtsp://127.0.0.1:1/bkb", &server_a.url("bkb"))
        .replace("rtsp://127.0.0.1:1/ampera", &server_b.url("ampera"));
    std::fs::write(&cfg, text).unwrap();
    let run = Run::start(&cfg, &[]);
    let online = |m: &Metrics, s: &str| m.site("simpang_camera_online", s) == Some(1.0);
    eventually("both cameras online", HANG, || {
        let m = run.metrics();
        online(&m, "bkb") && online(&m, "ampera")
    });
    let frames = |m: &Metrics, s: &str| counter(m, "simpang_frames_decoded_total", s);
    let reconnects = |m: &Metrics, s: &str| counter(m, "simpang_reconnects_total", s);
    assert_eq!(reconnects(&run.metrics(), "bkb"), 0.0);

    // Outage of camera A's server, for three of bkb's retries (1 + 2 + 4 s of backoff).
    server_a.kill();
    let mut ampera_offline_seen = 0;
    let mut watch = |m: &Metrics| {
        if !online(m, "ampera") {
            ampera_offline_seen += 1;
        }
    };
    let down = eventually("bkb offline after its server died", HANG, || {
        let m = run.metrics();
        watch(&m);
        (!online(&m, "bkb")).then_some(m)
    });
    let b_before = frames(&down, "ampera");
    let r_down = reconnects(&down, "bkb");
    eventually("three reconnect attempts of bkb", HANG, || {
        let m = run.metrics();
        watch(&m);
        assert!(!online(&m, "bkb"), "bkb online without its server");
        reconnects(&m, "bkb") >= r_down + 3.0
    });
    let m = run.metrics();
    watch(&m);
    assert_eq!(
        ampera_offline_seen, 0,
        "ampera went offline during bkb's outage"
    );
    assert!(
        frames(&m, "ampera") > b_before,
        "ampera stopped decoding during bkb's outage"
    );

    // Source back on the same port.
    let _server_a2 = Samples::restart_on(&cfg, &["bkb"], None, server_a.port);
    let r_back = reconnects(&run.metrics(), "bkb");
    let m = poll(HANG, || {
        let m = run.metrics();
        online(&m, "bkb").then_some(m)
    })
    .unwrap_or_else(|| panic!("bkb did not come back\n{}", run.proc.log_tail()));
    let attempts = reconnects(&m, "bkb") - r_back;
    assert!(
        attempts <= 2.0,
        "bkb came back after {attempts} more attempts; the first or second after the source \
         returned should have connected\n{}",
        run.proc.log_tail()
    );
    assert!(reconnects(&m, "bkb") >= 1.0, "reconnect not counted");
    assert_eq!(
        reconnects(&m, "ampera"),
        0.0,
        "the healthy camera reconnected"
    );
    let f = frames(&m, "bkb");
    eventually("bkb decoding after it came back", HANG, || {
        frames(&run.metrics(), "bkb") > f
    });
}

/// A camera nobody serves: reported offline with the reason, retried with backoff, never a crash.
#[test]
fn unreachable_camera_is_offline_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // A port of the tests' own range that nothing listens on.
    let dead = support::ports::port();
    let mut cfg = base_config(dir.path());
    cfg += &site_block("ghost", &format!("rtsp://127.0.0.1:{dead}/nothing"));
    cfg += &site_block("nofile", "/nonexistent/clip.mp4");
    let cfg = write(dir.path(), "dead.toml", &cfg);
    let mut run = Run::start(&cfg, &[]);
    let retried = poll(HANG, || {
        let m = run.metrics();
        m.site("simpang_reconnects_total", "ghost").unwrap_or(0.0) >= 2.0
            && m.site("simpang_reconnects_total", "nofile").unwrap_or(0.0) >= 2.0
    });
    assert!(retried.is_some(), "no retries\n{}", run.proc.log_tail());
    for s in ["ghost", "nofile"] {
        assert_eq!(run.metric("simpang_camera_online", s), Some(0.0));
    }
    let v: serde_json::Value = serde_json::from_str(
        &ureq::get(&run.ops_url("/api/status"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let err = v["sites"][1]["status"]["last_error"].as_str().unwrap_or("");
    assert!(
        !err.is_empty(),
        "no error reported for the missing file: {v}"
    );
    assert!(run.proc.is_running(), "process died");
    let st = run.proc.terminate(Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {st:?}"
    );
    let log = run.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// Looping file cameras come up on their first start. Their pipeline pauses, learns the
/// file's length and seeks to play it in segments; that flushing seek once reached decodebin
/// while it was still plugging the decoder, the demuxer stopped (not-linked) and about every
/// second camera went offline at start and came back after the backoff.
#[test]
fn looping_file_cameras_start_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let footage = support::root().join("samples/sample.mp4");
    let footage = footage.to_str().unwrap();
    let mut cfg = base_config(dir.path());
    let sites = ["f1", "f2", "f3", "f4"];
    for s in sites {
        cfg += &site_block(s, footage);
    }
    let cfg = write(dir.path(), "files.toml", &cfg);
    let run = Run::start(&cfg, &[]);
    eventually("every file camera online and decoding", HANG, || {
        let m = run.metrics();
        sites.iter().all(|s| {
            m.site("simpang_camera_online", s) == Some(1.0)
                && count(&m, "simpang_frames_decoded_total", s) >= 50.0
        })
    });
    let m = run.metrics();
    for s in sites {
        assert_eq!(
            count(&m, "simpang_reconnects_total", s),
            0.0,
            "camera {s} was restarted:\n{}",
            run.proc.log_tail()
        );
    }
    assert!(
        !run.proc.log().contains("camera offline"),
        "{}",
        run.proc.log_tail()
    );
}
