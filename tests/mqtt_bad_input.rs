//! Bad settings of the incident stage: `simpang check` and `simpang run` both fail with a
//! message that names the setting (an invalid broker URL, a missing or empty CA file, a data
//! directory that cannot be written).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::root as repo;

struct Case {
    name: &'static str,
    mqtt: String,
    /// `None`: a good data directory.
    data_dir: Option<PathBuf>,
    setting: &'static str,
}

fn write_config(dir: &Path, name: &str, mqtt: &str, data_dir: &Path) -> PathBuf {
    // The real model: `check` and `run` load it before the incident stage's settings matter.
    let model = repo().join("models/nanodet-m-416/manifest.toml");
    let text = format!(
        "data_dir = {data_dir:?}\n[city]\nname = \"Palembang\"\n[detect]\nmodel = {model:?}\nort_library = {:?}\n\
         [mqtt]\n{mqtt}\n[wall]\nlisten = \"127.0.0.1:0\"\nrtsp_port = 0\n\
         [[sites]]\nid = \"uji\"\nname = \"Simpang Uji\"\naddress = \"Jl. Uji\"\nlat = -2.9\nlon = 104.7\nstream = \"rtsp://127.0.0.1:1/uji\"\n",
        repo().join("vendor-lib/onnxruntime/libonnxruntime.so")
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `simpang ARGS`, killing it after `timeout`; (exit code, stdout + stderr).
fn simpang(args: &[&str], config: &Path, timeout: Duration) -> (Option<i32>, String) {
    let out_path = config.with_extension(format!("{}.out", args[0]));
    let out = std::fs::File::create(&out_path).unwrap();
    let err = out.try_clone().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_simpang"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info,rumqttd=warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let code = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&out_path).unwrap_or_default())
}

#[test]
fn bad_settings_are_named_by_check_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let good_data = dir.path().join("data");
    let not_a_dir = dir.path().join("a-file");
    std::fs::write(&not_a_dir, "a file where a folder should be").unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let cases = vec![
        Case {
            name: "url-without-scheme-separator",
            mqtt: "broker = \"mqtt//broker.example:1883\"".into(),
            data_dir: None,
            setting: "mqtt.broker",
        },
        Case {
            name: "url-wrong-scheme",
            mqtt: "broker = \"http://127.0.0.1:1883\"".into(),
            data_dir: None,
            setting: "mqtt.broker",
        },
        Case {
            name: "url-no-host",
            mqtt: "broker = \"mqtt://:1883\"".into(),
            data_dir: None,
            setting: "mqtt.broker",
        },
        Case {
            name: "missing-ca",
            mqtt: format!(
                "broker = \"mqtts://localhost:8883\"\nca_file = {:?}",
                dir.path().join("no-such-ca.pem")
            ),
            data_dir: None,
            setting: "mqtt.ca_file",
        },
        Case {
            name: "ca-not-pem",
            mqtt: format!("broker = \"mqtts://localhost:8883\"\nca_file = {not_pem:?}"),
            data_dir: None,
            setting: "mqtt.ca_file",
        },
        Case {
            name: "unwritable-data-dir",
            mqtt: "broker = \"mqtt://127.0.0.1:1\"".into(),
            data_dir: Some(not_a_dir.join("data")),
            setting: "data_dir",
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let data = c.data_dir.clone().unwrap_or_else(|| good_data.clone());
        let cfg = write_config(dir.path(), c.name, &c.mqtt, &data);

        let (code, out) = simpang(&["check"], &cfg, Duration::from_secs(60));
        let named = out
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains(c.setting));
        if code != Some(1) || !named {
            failures.push(format!("check {}: exit {code:?}, output:\n{out}", c.name));
        }

        let (code, out) = simpang(&["run"], &cfg, Duration::from_secs(60));
        let named = out
            .lines()
            .any(|l| l.contains("error") && l.contains(c.setting));
        if code.is_none() || code == Some(0) || !named {
            failures.push(format!("run {}: exit {code:?}, output:\n{out}", c.name));
        }
    }
    // The same settings, made good, raise nothing about them.
    let cfg = write_config(
        dir.path(),
        "good",
        "broker = \"mqtt://127.0.0.1:1\"",
        &good_data,
    );
    let (_, out) = simpang(&["check"], &cfg, Duration::from_secs(60));
    for setting in ["mqtt.", "data_dir"] {
        if out
            .lines()
            .any(|l| l.starts_with("FAIL") && l.contains(setting))
        {
            failures.push(format!("good config: a FAIL about {setting}:\n{out}"));
        }
    }
    assert!(out.contains("ok   data_dir"), "{out}");
    assert!(
        out.contains("WARN mqtt.broker mqtt://127.0.0.1:1 is not reachable now"),
        "{out}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
