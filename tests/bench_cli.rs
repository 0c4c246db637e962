//! `simpang bench` as a user runs it: a short run of two streams on the small sample footage,
//! through the real binary (trial process, embedded broker, wall viewers, all on loopback).
//! It checks that the report is produced, complete and self-consistent; speed is reported by
//! the bench, never asserted here (CI machines differ and share their cores).

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{bin, root};

fn bench(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("bench")
        .args(args)
        .current_dir(root())
        .env(
            "ORT_DYLIB_PATH",
            root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
        )
        .output()
        .expect("run simpang bench")
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing or not a number in {v}"))
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{path} missing or not a count in {v}"))
}

#[test]
fn two_streams_report_is_complete_and_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let out = bench(&[
        "--config",
        "config/palembang.toml",
        "--streams",
        "2",
        "--footage",
        "samples/sample.mp4",
        "--seconds",
        "8",
        "--warmup",
        "2",
        "--ceiling-seconds",
        "1",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(r["schema"], "simpang.bench/1");
    assert!(!r["machine"]["cpu_model"].as_str().unwrap().is_empty());
    assert!(u(&r, "/machine/cpus") >= 1);

    // the footage as the bench probed it
    assert_eq!(u(&r, "/footage/width"), 640);
    assert_eq!(u(&r, "/footage/height"), 360);
    assert!((f(&r, "/footage/fps") - 29.97).abs() < 0.01);

    // ceilings, and the limit made of them
    let c = &r["ceilings"];
    let (dfps, ifps) = (f(c, "/decode/fps"), f(c, "/inference/fps"));
    assert!(dfps > 0.0 && ifps > 0.0, "{c}");
    let detect_fps = f(&r, "/model/detect_fps");
    let want_limit = 1.0 / (f(&r, "/footage/fps") / dfps + detect_fps / ifps);
    assert!((f(c, "/limit_streams") - want_limit).abs() < 1e-6 * want_limit);

    // the run: two streams, every stage of the table present
    let run = &r["run"];
    assert_eq!(u(run, "/streams"), 2);
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for want in [
        "decode",
        "preprocess",
        "inference",
        "tracking",
        "rules",
        "overlay",
        "jpeg",
        "x264_mosaic",
        "publish_incident",
    ] {
        assert!(stages.contains(&want), "stage {want} missing: {stages:?}");
    }
    let stage = |name: &str| {
        run["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["stage"] == name)
            .unwrap()
            .clone()
    };
    for name in ["decode", "inference", "tracking", "rules", "overlay"] {
        let s = stage(name);
        assert!(u(&s, "/count") > 0, "no samples of {name}: {s}");
        let (p50, p95, p99) = (f(&s, "/p50_ms"), f(&s, "/p95_ms"), f(&s, "/p99_ms"));
        assert!(0.0 <= p50 && p50 <= p95 && p95 <= p99, "{name}: {s}");
    }
    // one inference per processed analytics frame (batch 1)
    assert_eq!(u(&stage("inference"), "/count"), u(run, "/total/processed"));

    // per stream rows and their total
    let rows = run["per_stream"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mut display = 0;
    for row in rows {
        assert!(u(row, "/display_frames") > 0, "{row}");
        assert!(f(row, "/analytics_fps") > 0.0, "{row}");
        display += u(row, "/display_frames");
    }
    assert_eq!(u(run, "/total/display_frames"), display);
    assert!(f(run, "/cpu_percent") > 0.0);
    assert!(f(run, "/peak_rss_mb") > 10.0);
    assert!(f(run, "/realtime_factor") > 0.0);
    assert!(u(run, "/wall/jpeg_frames") > 0 && u(run, "/wall/mosaic_frames") > 0);
    assert!(u(run, "/consumers/mjpeg_frames") > 0 && u(run, "/consumers/rtsp_frames") > 0);
    // a verdict either way, with reasons when it did not hold
    let holds = run["holds"].as_bool().unwrap();
    assert_eq!(holds, run["failures"].as_array().unwrap().is_empty());
    assert_eq!(r["sustained"].as_u64(), holds.then_some(2));

    // the table says what the JSON says
    for want in [
        "ceilings (same run):".to_string(),
        format!("{:.2} streams = 1 / (", f(c, "/limit_streams")),
        "2 streams, realtime mode".into(),
        format!("peak RSS {:.0} MB", f(run, "/peak_rss_mb")),
        format!("real-time factor {:.3}", f(run, "/realtime_factor")),
    ] {
        assert!(stdout.contains(&want), "{want:?} not in:\n{stdout}");
    }
    for name in &stages {
        assert!(
            stdout.contains(&format!("\n  {name} ")),
            "{name} row missing:\n{stdout}"
        );
    }
}

#[test]
fn missing_footage_is_named() {
    let out = bench(&[
        "--config",
        "config/palembang.toml",
        "--streams",
        "2",
        "--footage",
        "samples/no-such-footage.mp4",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-footage.mp4") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report on bad input");
}

/// `--substreams`: every camera a main stream by passthrough and a substream for detection,
/// the wall attached as browser tiles. Counts only: the substream is what is decoded (its 5
/// fps, not the main stream's 29.97), the browser tiles got the main stream, nothing burned in.
#[test]
fn substreams_decode_only_the_substream_and_feed_browser_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let out = bench(&[
        "--config",
        "config/palembang.toml",
        "--substreams",
        "--streams",
        "2",
        "--footage",
        "samples/sample.mp4",
        "--seconds",
        "6",
        "--warmup",
        "2",
        "--ceiling-seconds",
        "1",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert!(
        r["wall_consumers"]
            .as_str()
            .is_some_and(|w| w.contains("sample.sub.mp4")),
        "{}",
        r["wall_consumers"]
    );
    assert!(r["efficiency"].is_null(), "no limit-based efficiency");
    let run = &r["run"];
    for row in run["per_stream"].as_array().unwrap() {
        let (decoded, display) = (u(row, "/decoded"), u(row, "/display_frames"));
        assert!(display > 0 && decoded > 0, "{row}");
        // 5 fps decoded against 29.97 fps passed through: the main stream is not decoded
        assert!(
            decoded * 3 < display,
            "more decoded than the substream has: {row}"
        );
        assert!(u(row, "/processed") > 0, "{row}");
    }
    assert_eq!(u(run, "/wall/jpeg_frames"), 0, "nothing burned in");
    assert_eq!(u(run, "/wall/mosaic_frames"), 0);
    assert!(u(run, "/consumers/live_frames") > 0);
    assert_eq!(u(run, "/consumers/live_viewers"), 2);
    assert!(stdout.contains("2 browser tiles"), "{stdout}");
}

#[test]
fn substreams_without_substream_footage_is_named() {
    let out = bench(&[
        "--config",
        "config/palembang.toml",
        "--substreams",
        "--footage",
        "samples/sample.mp4",
        "--detect-footage",
        "samples/no-such-sub.mp4",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-sub.mp4") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report on bad input");
}
