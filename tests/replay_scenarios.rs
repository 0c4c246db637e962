//! `simpang replay` on the labelled scenario footage (samples/scenarios, made by
//! scripts/scenarios/generate.py from the sample clips; the footage is synthetic): the rules
//! raise what an operator would expect, the same as a real-time run, and the labels files'
//! errors name file and line.
//!
//! One replay of all eight clips serves the scenario tests ([`replayed`]); the real-time run
//! takes 100 s of wall time (the clips' length) and starts once that replay is done.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::{bin, root};

const CONFIG: &str = "config/scenarios.toml";

/// `simpang replay ARGS --json` from the repository root; the parsed report.
fn replay_json(args: &[&str]) -> Value {
    let footage = root().join("samples/scenarios/crowd-16.mp4");
    assert!(
        footage.is_file(),
        "{} is missing: scripts/setup.sh makes the scenario footage (scripts/scenarios/generate.py)",
        footage.display()
    );
    let out = Command::new(bin())
        .current_dir(root())
        .args(["replay", "--config", CONFIG, "--json"])
        .args(args)
        .output()
        .expect("simpang replay runs");
    assert!(
        out.status.success(),
        "simpang replay {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "replay --json is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The one replay of every scenario, with their labels, shared by the tests of this file.
fn replayed() -> &'static Value {
    static RUN: OnceLock<Value> = OnceLock::new();
    RUN.get_or_init(|| replay_json(&["--labels", "samples/scenarios", "--series"]))
}

fn site<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["replay"]["sites"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["site"] == id))
        .unwrap_or_else(|| panic!("no site {id} in the replay"))
}

fn incidents<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    site(report, id)["incidents"]
        .as_array()
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The label of a clip (its one line).
fn label(clip: &str) -> Value {
    let text =
        std::fs::read_to_string(root().join(format!("samples/scenarios/{clip}.labels.jsonl")))
            .unwrap();
    serde_json::from_str(text.lines().next().expect("a label")).unwrap()
}

/// The crowd zone's `(dwell_s, min_persons)` of a clip's site in the scenarios' config.
fn crowd_rule(clip: &str) -> (f64, u32) {
    let cfg = simpang::config::Config::load(&root().join(CONFIG)).unwrap();
    let site = cfg.site(clip).unwrap();
    let c = site.zones[0].crowd.as_ref().unwrap();
    (c.dwell_s, c.min_persons)
}

#[test]
fn a_standing_crowd_raises_one_incident_within_dwell_plus_5_s_and_ends_after_it_leaves() {
    let r = replayed();
    for clip in ["crowd-16", "crowd-24", "crowd-8"] {
        let inc = incidents(r, clip);
        assert_eq!(inc.len(), 1, "{clip}: {inc:#?}");
        let (l, i) = (label(clip), inc[0]);
        assert_eq!(i["kind"], "crowd");
        let (dwell, min_persons) = crowd_rule(clip);
        let opened = f(&i["opened_s"]) - f(&l["start_s"]);
        assert!(
            (0.0..=dwell + 5.0).contains(&opened),
            "{clip}: raised {opened:.1} s after the group arrived"
        );
        let ended = i["ended_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("{clip}: still open at the end of the clip"));
        assert!(
            ended >= f(&l["end_s"]),
            "{clip}: ended {ended} before they left"
        );
        // the count is evidence: at least the threshold, not far above the truth, said how
        let ev = &i["evidence"];
        let persons = f(&ev["persons"]);
        let truth = f(&l["persons"]);
        assert!(
            persons >= f64::from(min_persons) && persons <= truth * 1.5,
            "{clip}: {ev} of {truth}"
        );
        assert_eq!(ev["count_method"], "boxes+foreground", "{clip}");
    }
}

#[test]
fn people_walking_through_and_one_standing_still_raise_nothing() {
    let r = replayed();
    for clip in ["walkers", "still-person"] {
        assert!(
            incidents(r, clip).is_empty(),
            "{clip}: {:#?}",
            incidents(r, clip)
        );
    }
}

#[test]
fn cover_then_defocus_15_s_later_are_two_incidents_each_with_its_reason() {
    let r = replayed();
    let inc = incidents(r, "tamper");
    assert_eq!(inc.len(), 2, "{inc:#?}");
    for (i, reason, start) in [(inc[0], "covered", 20.0), (inc[1], "defocused", 50.0)] {
        assert_eq!(i["kind"], "camera_tamper");
        let opened = f(&i["opened_s"]);
        assert!((start..start + 10.0).contains(&opened), "{i:#}");
        assert!(i["ended_s"].is_number(), "{i:#}");
        // every message of the incident, its end too, names its own reason
        for m in i["messages"].as_array().unwrap() {
            assert_eq!(m["incident"]["evidence"]["reason"], reason, "{m:#}");
        }
    }
    // the second came back within the cooldown: said so
    assert!(
        inc[1]["evidence"]["reopened_after_s"].is_number(),
        "{:#}",
        inc[1]
    );
}

#[test]
fn the_bag_left_on_the_lawn_is_one_garbage_incident() {
    let r = replayed();
    let inc = incidents(r, "bag");
    assert_eq!(inc.len(), 1, "{inc:#?}");
    assert_eq!(inc[0]["kind"], "garbage");
    assert_eq!(inc[0]["zone"], "taman");
}

#[test]
fn the_queue_reads_lancar_padat_macet_lancar_and_the_line_counts_the_vehicles() {
    let r = replayed();
    let s = site(r, "jam");
    let levels: Vec<&str> = s["levels"]["jalan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_str().unwrap())
        .collect();
    // in order (the window's mean may pass through padat on the way down)
    let mut want = ["lancar", "padat", "macet", "lancar"]
        .into_iter()
        .peekable();
    for l in &levels {
        if want.peek() == Some(l) {
            want.next();
        }
    }
    assert!(want.next().is_none(), "levels {levels:?}");
    assert_eq!(levels.last(), Some(&"lancar"), "{levels:?}");
    let inc = incidents(r, "jam");
    assert_eq!(inc.len(), 1, "{inc:#?}");
    let (i, l) = (inc[0], label("jam"));
    assert_eq!(i["kind"], "traffic_jam");
    assert_eq!(i["levels"][0], "macet");
    // opens while the queue is there, ends once it has gone
    assert!(f(&i["opened_s"]) < f(&l["end_s"]), "{i:#}");
    let ended = f(&i["ended_s"]);
    assert!(ended > f(&l["end_s"]), "{i:#}");
    // 32 vehicles cross the line, all the same way
    let truth: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("samples/scenarios/jam.truth.json")).unwrap(),
    )
    .unwrap();
    let line = &s["lines"][0];
    let crossed = f(&truth["crossings_in"]);
    assert!(
        f(&line["in_count"]) >= crossed - 2.0 && f(&line["in_count"]) <= crossed,
        "{line} of {crossed}"
    );
    assert_eq!(line["out_count"], 0);
}

#[test]
fn every_label_is_hit_and_nothing_else_is_raised() {
    let r = replayed();
    let scores = &r["scores"];
    for k in scores["by_kind"].as_array().unwrap() {
        assert_eq!(k["misses"], 0, "{scores:#}");
        assert_eq!(k["false_alarms"], 0, "{scores:#}");
    }
    assert_eq!(scores["labels"].as_array().unwrap().len(), 7);
    assert_eq!(scores["sites"].as_array().unwrap().len(), 8);
    // media time, not wall time: 1000 s of footage
    assert!(f(&r["replay"]["footage_s"]) > 990.0);
}

/// The incidents of a report as (kind, opened, ended) per site.
fn timeline(report: &Value, sites: &[&str]) -> Vec<(String, String, f64, Option<f64>)> {
    let mut out = Vec::new();
    for s in sites {
        for i in incidents(report, s) {
            out.push((
                s.to_string(),
                i["kind"].as_str().unwrap().to_string(),
                f(&i["opened_s"]),
                i["ended_s"].as_f64(),
            ));
        }
    }
    out
}

#[test]
fn replay_gives_the_incidents_of_a_real_time_run() {
    let sites = ["tamper", "crowd-16"];
    // the fast replay first: the real-time run must not share the CPU with it
    let fast = timeline(replayed(), &sites);
    let live = replay_json(&["--realtime", "--sites", &sites.join(",")]);
    assert_eq!(live["replay"]["realtime"], true);
    // it took the clips' length (100 s), the replay a fraction of it
    assert!(
        f(&live["replay"]["wall_s"]) > 90.0,
        "{}",
        live["replay"]["wall_s"]
    );
    let slow = timeline(&live, &sites);
    assert_eq!(
        fast.len(),
        slow.len(),
        "replay {fast:?}\nreal time {slow:?}"
    );
    for (a, b) in fast.iter().zip(&slow) {
        assert_eq!(
            (&a.0, &a.1),
            (&b.0, &b.1),
            "replay {fast:?}\nreal time {slow:?}"
        );
        assert!((a.2 - b.2).abs() <= 1.0, "opened: {a:?} vs {b:?}");
        let (ea, eb) = (a.3.expect("ended"), b.3.expect("ended"));
        assert!((ea - eb).abs() <= 1.0, "ended: {a:?} vs {b:?}");
    }
}

/// `simpang replay --labels FILE` with `text` in FILE: its stderr (it must fail).
fn labels_error(dir: &Path, name: &str, text: &str) -> (PathBuf, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let out = Command::new(bin())
        .current_dir(root())
        .args(["replay", "--config", CONFIG, "--labels"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{name}: accepted");
    (file, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn labels_errors_name_the_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    let ok =
        r#"{"site": "crowd-16", "kind": "crowd", "zone": "plaza", "start_s": 18.2, "end_s": 78.3}"#;
    let cases = [
        (
            "site.labels.jsonl",
            format!("{ok}\n{}\n", ok.replace("crowd-16", "bkb")),
            2,
            "unknown site \"bkb\"",
        ),
        (
            "order.labels.jsonl",
            format!("{ok}\n\n{}\n", ok.replace("78.3", "10")),
            3,
            "end_s (10) is before start_s (18.2)",
        ),
        (
            "json.labels.jsonl",
            format!("{}\n", &ok[..40]),
            1,
            "not a label",
        ),
    ];
    for (name, text, line, what) in cases {
        let (file, err) = labels_error(d.path(), name, &text);
        let at = format!("{}:{line}: ", file.display());
        assert!(err.contains(&at), "{name}: want {at:?} in\n{err}");
        assert!(err.contains(what), "{name}: want {what:?} in\n{err}");
    }
}
