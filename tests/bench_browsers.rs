//! `simpang bench --browsers` with a real headless Chromium (Debian package chromium): the
//! browser signs in, plays every tile of the wall page by passthrough, and the clock camera's
//! tile gives glass-to-glass samples. Counts only; the figures are the bench's to report. A
//! missing Chromium fails the bench, and so this test (no skip).

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{bin, root};

fn bench(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin())
        .arg("bench")
        .args(args)
        .current_dir(root())
        .env(
            "ORT_DYLIB_PATH",
            root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
        )
        .envs(env.iter().copied())
        .output()
        .expect("run simpang bench")
}

fn short_run(json: &str, browsers: &str, seconds: &str) -> Vec<String> {
    [
        "--config",
        "config/palembang.toml",
        "--streams",
        "1",
        "--footage",
        "samples/sample.mp4",
        "--seconds",
        seconds,
        "--warmup",
        "1",
        "--ceiling-seconds",
        "1",
        "--browsers",
        browsers,
        // Counts, not speed: on a busy test machine a low-priority browser may present nothing.
        "--browser-nice",
        "0",
        "--json",
        json,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn one_browser_plays_the_wall_and_measures_glass_to_glass() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let args = short_run(json_path.to_str().unwrap(), "1", "6");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = bench(&args, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench --browsers 1 failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let b = &r["run"]["browsers"];
    assert_eq!(b["browsers"], 1, "{b}");
    assert!(b["program"].as_str().unwrap().contains("chromium"), "{b}");
    // one camera plus the clock camera: two tiles, both played in the window
    let p = &b["per_browser"][0];
    assert_eq!(p["tiles"], 2, "{b}");
    assert_eq!(p["tiles_playing"], 2, "{b}");
    assert!(p["presented_frames"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(b["all_played"], true, "{b}");
    // the browser is a real process tree that used CPU; simpang's CPU both ways
    assert!(p["cpu_percent"].as_f64().unwrap() > 0.0, "{b}");
    assert!(
        b["simpang_cpu_percent_without"].as_f64().unwrap() > 0.0,
        "{b}"
    );
    assert!(b["simpang_cpu_percent_with"].as_f64().unwrap() > 0.0, "{b}");
    // glass-to-glass: stamps read from presented frames, each a delay of a real path
    let g = &b["glass_to_glass"];
    let n = g["n"].as_u64().unwrap();
    assert!(n > 0, "{g}");
    assert!(g["frames_seen"].as_u64().unwrap() >= n, "{g}");
    let (p50, p95, max) = (
        g["p50_ms"].as_f64().unwrap(),
        g["p95_ms"].as_f64().unwrap(),
        g["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= max, "{g}");
    // the measured streams leave the clock camera out
    assert_eq!(r["run"]["per_stream"].as_array().unwrap().len(), 1);
    assert!(stdout.contains("glass-to-glass (bench-clock)"), "{stdout}");
    assert!(
        stdout.contains("every tile of every browser played"),
        "{stdout}"
    );
}

#[test]
fn a_browser_that_cannot_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("bench.json");
    let args = short_run(json_path.to_str().unwrap(), "1", "1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = bench(&args, &[("SIMPANG_CHROMIUM", "/nonexistent/chromium")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot start browser 0") && stderr.contains("/nonexistent/chromium"),
        "{stderr}"
    );
    assert!(!json_path.exists());
}
