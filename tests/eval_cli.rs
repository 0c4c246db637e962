//! `simpang eval`, the real binary: a complete, self-consistent table on two models and a few
//! frames (the reference against itself agrees perfectly; the JSON carries the table's numbers),
//! and bad input named in the error.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simpang"))
        .arg("eval")
        .args(args)
        .current_dir(support::root())
        .env("ORT_DYLIB_PATH", support::detect::ort_library())
        .output()
        .unwrap()
}

/// Table cells of a row: columns are separated by at least two spaces.
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// `v` printed with `d` decimals, as the table does.
fn fixed(v: &Value, d: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.d$}"),
        None => num(v),
    }
}

#[test]
fn two_models_give_a_complete_consistent_table() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("eval.json");
    let out = eval(&[
        "--models",
        "models/nanodet-m-416/manifest.toml,models/nanodet-m-int8/manifest.toml",
        "--frames",
        "6",
        "--runs",
        "4",
        "--threads",
        "1,2",
        "--config",
        "config/palembang.toml",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    // The header facts.
    assert!(stdout.starts_with("host: "), "{stdout}");
    let host = &j["host"];
    assert!(!host["cpu_model"].as_str().unwrap().is_empty());
    let avx = if host["avx512f"].as_bool().unwrap() {
        "AVX-512: yes"
    } else {
        "AVX-512: no"
    };
    assert!(stdout.lines().next().unwrap().contains(avx), "{stdout}");
    assert_eq!(j["frames"], 6);
    let footage = j["footage"].as_array().unwrap();
    assert_eq!(footage.len(), 2, "default footage: vtest and sample");
    assert_eq!(footage[0]["sampled"], 3);
    assert_eq!(footage[1]["sampled"], 3);
    assert_eq!(footage[0]["frames_in_file"], 795);
    assert_eq!(j["threads"], serde_json::json!([1, 2]));

    // The reference listed in --models is measured once.
    let models = j["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{stdout}");
    let r = &models[0];
    assert_eq!(r["reference"], true);
    assert_eq!(r["name"], "nanodet-m-416");
    for g in ["person", "vehicle"] {
        assert_eq!(r[g]["recall"], 1.0, "{g}");
        assert_eq!(r[g]["precision"], 1.0, "{g}");
        assert_eq!(r[g]["matched"], r[g]["reference"], "{g}");
    }
    assert_eq!(r["person_count_mae"], 0.0);
    assert_eq!(r["time_vs_reference"], 1.0);
    assert!(r["person"]["reference"].as_u64().unwrap() > 0);
    assert_eq!(j["reference_persons"], r["person"]["reference"]);
    assert_eq!(j["reference_vehicles"], r["vehicle"]["reference"]);
    // the shipped model passes its own fixtures
    assert_eq!(r["fixtures"]["passed"], 6);
    assert_eq!(r["fixtures"]["total"], 6);

    // Every number of every row is there, and the table shows exactly the JSON's numbers.
    let header = stdout
        .lines()
        .position(|l| l.starts_with("model "))
        .expect("table header");
    let rows: Vec<Vec<String>> = stdout
        .lines()
        .skip(header + 1)
        .take_while(|l| !l.trim().is_empty())
        .map(cells)
        .collect();
    assert_eq!(rows.len(), models.len(), "{stdout}");
    for (row, m) in rows.iter().zip(models) {
        assert_eq!(row.len(), 13, "{row:?}");
        let lat = m["latency"].as_array().unwrap();
        assert_eq!(lat.len(), 2);
        for l in lat {
            for k in ["median_ms", "p95_ms", "cpu_ms"] {
                assert!(l[k].as_f64().unwrap() > 0.0, "{k}: {m}");
            }
            assert!(l["p95_ms"].as_f64() >= l["median_ms"].as_f64());
        }
        let want = vec![
            m["label"].as_str().unwrap().to_string(),
            format!("{}x{}", m["input"][0], m["input"][1]),
            fixed(&m["load_ms"], 0),
            format!(
                "{} / {}",
                fixed(&lat[0]["median_ms"], 2),
                fixed(&lat[0]["p95_ms"], 2)
            ),
            format!(
                "{} / {}",
                fixed(&lat[1]["median_ms"], 2),
                fixed(&lat[1]["p95_ms"], 2)
            ),
            fixed(&m["time_vs_reference"], 3),
            fixed(&m["person"]["recall"], 3),
            fixed(&m["person"]["precision"], 3),
            fixed(&m["vehicle"]["recall"], 3),
            fixed(&m["vehicle"]["precision"], 3),
            fixed(&m["person_count_mae"], 3),
            format!("{}/{}", m["fixtures"]["passed"], m["fixtures"]["total"]),
            (if m["meets_bar"].as_bool().unwrap() {
                "yes"
            } else {
                "no"
            })
            .to_string(),
        ];
        assert_eq!(row, &want, "{stdout}");
        for g in ["person", "vehicle"] {
            for k in ["recall", "precision"] {
                assert!(m[g][k].is_number(), "{g} {k} missing: {m}");
            }
            // the ratios are the counts'
            let c = |k: &str| m[g][k].as_f64().unwrap();
            let recall = c("matched") / c("reference");
            assert!((c("recall") - recall).abs() <= 0.0005, "{m}");
        }
        let frames = m["fixtures"]["frames"].as_array().unwrap();
        assert_eq!(frames.len(), 6);
        let passed = frames.iter().filter(|f| f["pass"] == true).count();
        assert_eq!(m["fixtures"]["passed"], passed);
    }
    let int8 = &models[1];
    assert_eq!(int8["name"], "nanodet-m-int8-416");
    assert_eq!(int8["reference"], false);
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    // a manifest whose decoder does not fit the model's outputs
    let wrong = support::detect::edited_int8_manifest(tmp.path(), "wrong-manifest.toml", |t| {
        t.replace("reg_max = 10", "reg_max = 7")
    });
    let wrong = wrong.to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--models", "models/nope/manifest.toml"],
            vec!["model manifest models/nope/manifest.toml does not exist"],
        ),
        (
            vec![
                "--models",
                "models/nanodet-m-int8/manifest.toml",
                "--reference",
                "gone.toml",
            ],
            vec!["model manifest gone.toml does not exist"],
        ),
        (
            vec!["--models", &wrong, "--frames", "2", "--runs", "1"],
            vec![
                "wrong-manifest.toml",
                "nanodet-m-int8.onnx",
                "does not match its manifest",
            ],
        ),
        (
            vec![
                "--models",
                "models/nanodet-m-int8/manifest.toml",
                "--footage",
                "samples/missing.mp4",
            ],
            vec!["footage samples/missing.mp4 does not exist"],
        ),
        (
            vec!["--models", "models/nanodet-m-int8/manifest.toml@opt=max"],
            vec!["opt=max"],
        ),
        (
            vec![
                "--models",
                "models/nanodet-m-int8/manifest.toml",
                "--frames",
                "0",
            ],
            vec!["--frames must be at least 1"],
        ),
        (
            vec![
                "--models",
                "models/nanodet-m-int8/manifest.toml",
                "--threads",
                "0",
            ],
            vec!["--threads"],
        ),
        (
            vec![
                "--models",
                "models/nanodet-m-int8/manifest.toml",
                "--fixtures",
                "tests/fixtures/detect/none.toml",
            ],
            vec!["fixtures file tests/fixtures/detect/none.toml"],
        ),
    ];
    for (args, wants) in cases {
        let out = eval(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        for w in wants {
            assert!(err.contains(w), "{args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(Path::new(&wrong).is_file());
}
