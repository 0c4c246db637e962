//! Bad configuration through the real binary: clear errors with file:line and field, non-zero
//! exit, for `simpang check` and `simpang run`.

mod support;

use std::process::Command;

use support::simpang::{base_config, site_block, write};
use support::{bin, root};

fn good(dir: &std::path::Path) -> String {
    let mut c = base_config(dir);
    c += &site_block("bkb", "rtsp://127.0.0.1:8554/bkb");
    c += r#"
[[sites.zones]]
id = "plaza"
name = "Plaza"
kind = "crowd"
polygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]
"#;
    c
}

fn run_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("run simpang");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn bad_configs_fail_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = good(dir.path());
    let dup = format!("{base}{}", site_block("bkb", "rtsp://127.0.0.1:8554/x"));
    // (name, config text, the field the message must name, words it must contain)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("duplicate-id", dup, "sites[1].id", "duplicate site id"),
        (
            "two-point-polygon",
            base.replace(
                "[[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]",
                "[[0.1, 0.1], [0.9, 0.1]]",
            ),
            "sites[0].zones[0].polygon",
            "at least 3 points",
        ),
        (
            "unknown-key",
            base.replace("kind = \"crowd\"", "kind = \"crowd\"\ncolour = \"red\""),
            "sites[0].zones[0].colour",
            "unknown field `colour`",
        ),
        (
            "invalid-url",
            base.replace("rtsp://127.0.0.1:8554/bkb", "rtsp://"),
            "sites[0].stream",
            "URL",
        ),
        (
            "detect-stream-not-a-url",
            base.replace(
                "stream = \"rtsp://127.0.0.1:8554/bkb\"",
                "stream = \"rtsp://127.0.0.1:8554/bkb\"\ndetect_stream = \"gopher://x/sub\"",
            ),
            "sites[0].detect_stream",
            "unsupported scheme",
        ),
        (
            "detect-stream-is-the-main-stream",
            base.replace(
                "stream = \"rtsp://127.0.0.1:8554/bkb\"",
                "stream = \"rtsp://127.0.0.1:8554/bkb\"\ndetect_stream = \"rtsp://127.0.0.1:8554/bkb\"",
            ),
            "sites[0].detect_stream",
            "the site's `stream` itself",
        ),
        (
            "unknown-class",
            format!("{base}[sites.zones.crowd]\nclasses = [\"persom\"]\n"),
            "zones[0].crowd.classes",
            "unknown class \"persom\"",
        ),
        (
            "broken-toml",
            base.replace("name = \"Plaza\"", "name = \"Plaza"),
            "sites[0].zones[0]",
            "",
        ),
    ];
    for (name, text, field, words) in cases {
        let path = write(dir.path(), &format!("{name}.toml"), &text);
        let shown = path.display().to_string();
        for cmd in ["check", "run"] {
            let (code, out) = run_cli(&[cmd, "--config", &shown]);
            assert_ne!(code, 0, "{name}/{cmd} succeeded:\n{out}");
            assert!(
                out.contains(&format!("{shown}:")),
                "{name}/{cmd}: file not named:\n{out}"
            );
            assert!(
                out.contains(&format!("field `{field}")),
                "{name}/{cmd}: field {field} not named:\n{out}"
            );
            assert!(
                out.contains(words),
                "{name}/{cmd}: {words:?} missing:\n{out}"
            );
            assert!(!out.contains("panicked"), "{name}/{cmd}: panic:\n{out}");
            // The line number points at the offending text.
            let line: usize = out
                .split(&format!("{shown}:"))
                .nth(1)
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name}/{cmd}: no line number:\n{out}"));
            assert!(
                line >= 1 && line <= text.lines().count() + 1,
                "{name}: line {line}"
            );
        }
    }
}

#[test]
fn missing_config_file_is_named() {
    let (code, out) = run_cli(&["check", "--config", "/nonexistent/simpang.toml"]);
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/simpang.toml"), "{out}");
    let (code, out) = run_cli(&["run", "--config", "/nonexistent/simpang.toml"]);
    assert_ne!(code, 0);
    assert!(out.contains("/nonexistent/simpang.toml"), "{out}");
}

#[test]
fn check_reports_missing_model_and_passes_on_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = good(dir.path()).replace(
        "models/nanodet-m-int8/manifest.toml",
        "models/nope/manifest.toml",
    );
    let path = write(dir.path(), "nomodel.toml", &text);
    let (code, out) = run_cli(&["check", "--config", &path.display().to_string()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("models/nope/manifest.toml"), "{out}");
    assert!(out.contains("detect.model"), "{out}");

    for shipped in ["config/palembang.toml", "config/palembang-substreams.toml"] {
        let (code, out) = run_cli(&["check", "--config", shipped]);
        assert_eq!(code, 0, "{shipped} fails check:\n{out}");
        assert!(out.contains("GStreamer elements"), "{out}");
    }
}
