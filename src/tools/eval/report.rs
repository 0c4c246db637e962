//! The numbers `simpang eval` reports, worked out of what the runs measured, and the two forms
//! they take: the printed table and the JSON (the same numbers, rounded alike).

use serde::Serialize;

use super::plan::{EvalArgs, Plan};
use super::run::Measured;
use super::{LOADS, MATCH_IOU, MIN_AGREEMENT};
use crate::procfs;
use crate::tools::agreement::{self, Counts, GROUPS};

/// Host facts every figure needs beside it.
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub cpu_model: String,
    pub avx512f: bool,
    pub avx512_vnni: bool,
    pub logical_cpus: usize,
    pub load_1m_start: Option<f64>,
    pub load_1m_end: Option<f64>,
}

/// Rounds to `d` decimals: the JSON carries exactly the numbers the table shows.
fn round(v: f64, d: i32) -> f64 {
    let k = 10f64.powi(d);
    (v * k).round() / k
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub host: Host,
    pub footage: Vec<FootageUse>,
    pub frames: usize,
    pub reference: String,
    pub reference_persons: usize,
    pub reference_vehicles: usize,
    pub threads: Vec<usize>,
    pub runs: usize,
    pub fixtures: String,
    pub models: Vec<ModelReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FootageUse {
    pub file: String,
    pub frames_in_file: u64,
    pub sampled: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub label: String,
    pub name: String,
    pub manifest: String,
    /// The ONNX file loaded.
    pub onnx: String,
    pub options: String,
    pub reference: bool,
    pub input: [u32; 2],
    /// Median of the loads (session build + warm-up run), ms.
    pub load_ms: f64,
    pub latency: Vec<Latency>,
    /// Median latency at the first thread count over the reference's.
    pub time_vs_reference: Option<f64>,
    pub person: GroupReport,
    pub vehicle: GroupReport,
    pub person_count_mae: Option<f64>,
    pub fixtures: FixtureReport,
    /// Recall and precision >= 0.90 for both groups and every fixture frame within tolerance.
    pub meets_bar: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub threads: usize,
    /// Wall time of one `detect_batch` call on one frame (pre-processing, inference, decode, NMS).
    pub median_ms: f64,
    pub p95_ms: f64,
    /// Process CPU time per call (all threads), mean.
    pub cpu_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub recall: Option<f64>,
    pub precision: Option<f64>,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Clone, Debug, Serialize)]
pub struct FixtureReport {
    pub passed: usize,
    pub total: usize,
    pub tolerance: usize,
    pub frames: Vec<FixtureFrame>,
}

#[derive(Clone, Debug, Serialize)]
pub struct FixtureFrame {
    pub index: u64,
    pub visible: usize,
    pub found: usize,
    pub pass: bool,
}

/// The report of a run: agreement with the reference, latency, fixtures, the bar.
pub(super) fn score(args: &EvalArgs, plan: &Plan, measured: Measured) -> Report {
    let Measured {
        rows,
        fixtures: fixture_results,
        footage: footage_use,
        machine,
        load_start,
    } = measured;
    let threads = &args.threads;
    let n_frames: usize = footage_use.iter().map(|f| f.sampled).sum();
    let reference = &rows[0];
    let ref_groups: Vec<Vec<usize>> = GROUPS.iter().map(|g| g.ids(&reference.labels)).collect();
    let ref_person = reference.labels.iter().position(|l| l == "person");
    let ref_counts: Vec<usize> = reference
        .detections
        .iter()
        .map(|d| ref_person.map_or(0, |p| agreement::count_class(d, p, f32::NEG_INFINITY)))
        .collect();
    let ref_median = reference.timings[0].iter().map(|t| t.0).collect::<Vec<_>>();
    let ref_median = agreement::median_p95(&ref_median).map(|m| m.0);
    let mut models = Vec::new();
    for (r, fx) in rows.iter().zip(fixture_results) {
        let groups: Vec<GroupReport> = GROUPS
            .iter()
            .zip(&ref_groups)
            .map(|(g, ref_ids)| {
                let ids = g.ids(&r.labels);
                let mut c = Counts::default();
                for (rd, d) in reference.detections.iter().zip(&r.detections) {
                    c.add(agreement::match_frame(rd, ref_ids, d, &ids, MATCH_IOU));
                }
                GroupReport {
                    recall: c.recall().map(|v| round(v, 3)),
                    precision: c.precision().map(|v| round(v, 3)),
                    counts: c,
                }
            })
            .collect();
        let person = r.labels.iter().position(|l| l == "person");
        let counts: Vec<usize> = r
            .detections
            .iter()
            .map(|d| person.map_or(0, |p| agreement::count_class(d, p, f32::NEG_INFINITY)))
            .collect();
        let latency: Vec<Latency> = threads
            .iter()
            .zip(&r.timings)
            .map(|(&t, samples)| {
                let wall: Vec<f64> = samples.iter().map(|s| s.0).collect();
                let (m, p) = agreement::median_p95(&wall).unwrap_or((f64::NAN, f64::NAN));
                let cpu = samples.iter().map(|s| s.1).sum::<f64>() / samples.len().max(1) as f64;
                Latency {
                    threads: t,
                    median_ms: round(m, 2),
                    p95_ms: round(p, 2),
                    cpu_ms: round(cpu, 2),
                }
            })
            .collect();
        let loads = agreement::median_p95(&r.load_ms)
            .map(|m| m.0)
            .unwrap_or(f64::NAN);
        let own = agreement::median_p95(&r.timings[0].iter().map(|t| t.0).collect::<Vec<_>>())
            .map(|m| m.0);
        let time_vs_reference = match (own, ref_median) {
            (Some(o), Some(rm)) if rm > 0.0 => Some(round(o / rm, 3)),
            _ => None,
        };
        let passed = fx.iter().filter(|f| f.pass).count();
        let total = fx.len();
        let mut g = groups.into_iter();
        let (pg, vg) = (
            g.next().unwrap_or_else(empty_group),
            g.next().unwrap_or_else(empty_group),
        );
        let ok = |g: &GroupReport| {
            g.recall.is_some_and(|v| v >= MIN_AGREEMENT)
                && g.precision.is_some_and(|v| v >= MIN_AGREEMENT)
        };
        models.push(ModelReport {
            label: r.label(),
            name: r.name.clone(),
            manifest: r.spec.manifest.display().to_string(),
            onnx: r.onnx.display().to_string(),
            options: r.spec.options_text(),
            reference: r.is_reference,
            input: [r.size.0, r.size.1],
            load_ms: round(loads, 0),
            latency,
            time_vs_reference,
            meets_bar: ok(&pg) && ok(&vg) && passed == total,
            person: pg,
            vehicle: vg,
            person_count_mae: agreement::mean_abs_error(&counts, &ref_counts).map(|v| round(v, 3)),
            fixtures: FixtureReport {
                passed,
                total,
                tolerance: plan.fixtures.tolerance,
                frames: fx,
            },
        });
    }
    let ref_vehicles = models
        .first()
        .map(|m| m.vehicle.counts.reference)
        .unwrap_or(0);
    let ref_persons = models
        .first()
        .map(|m| m.person.counts.reference)
        .unwrap_or(0);
    Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        host: Host {
            avx512f: machine.avx512,
            avx512_vnni: machine.avx512_flags.iter().any(|f| f == "avx512_vnni"),
            cpu_model: machine.cpu_model,
            logical_cpus: machine.cpus,
            load_1m_start: load_start,
            load_1m_end: procfs::load_1m(),
        },
        footage: footage_use,
        frames: n_frames,
        reference: rows[0].label(),
        reference_persons: ref_persons,
        reference_vehicles: ref_vehicles,
        threads: threads.clone(),
        runs: args.runs,
        fixtures: plan.fixtures_path.display().to_string(),
        models,
    }
}

fn empty_group() -> GroupReport {
    GroupReport {
        recall: None,
        precision: None,
        counts: Counts::default(),
    }
}

fn opt(v: Option<f64>, d: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.d$}"))
}

/// The table `simpang eval` prints (tests parse it back and compare it with the JSON).
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let h = &r.host;
    let _ = writeln!(
        s,
        "host: {}, {} logical CPUs, AVX-512: {}{}; load (1 min) {} at start, {} at end",
        h.cpu_model,
        h.logical_cpus,
        if h.avx512f { "yes" } else { "no" },
        if h.avx512_vnni { " (with VNNI)" } else { "" },
        opt(h.load_1m_start, 2),
        opt(h.load_1m_end, 2)
    );
    let fs: Vec<String> = r
        .footage
        .iter()
        .map(|f| format!("{} {} of {}", f.file, f.sampled, f.frames_in_file))
        .collect();
    let _ = writeln!(s, "frames: {} ({})", r.frames, fs.join(", "));
    let _ = writeln!(
        s,
        "reference: {}: {} persons, {} vehicles on those frames; matches at IoU >= {MATCH_IOU}",
        r.reference, r.reference_persons, r.reference_vehicles
    );
    let _ = writeln!(
        s,
        "latency: one detect call per frame (pre-processing + inference + decode + NMS), {} interleaved rounds; fixtures: {}",
        r.runs, r.fixtures
    );
    let _ = writeln!(s);
    let name_w = r
        .models
        .iter()
        .map(|m| m.label.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut head = format!("{:name_w$}  {:>7}  {:>5}", "model", "input", "load");
    for t in &r.threads {
        head.push_str(&format!("  {:>17}", format!("{t} thr p50/p95 ms")));
    }
    head.push_str(&format!(
        "  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>5}  {:>3}",
        "x ref", "pers R", "pers P", "veh R", "veh P", "cntMAE", "fixt", "bar"
    ));
    let _ = writeln!(s, "{head}");
    for m in &r.models {
        let mut line = format!(
            "{:name_w$}  {:>7}  {:>5}",
            m.label,
            format!("{}x{}", m.input[0], m.input[1]),
            format!("{:.0}", m.load_ms)
        );
        for l in &m.latency {
            line.push_str(&format!(
                "  {:>17}",
                format!("{:.2} / {:.2}", l.median_ms, l.p95_ms)
            ));
        }
        line.push_str(&format!(
            "  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>5}  {:>3}",
            opt(m.time_vs_reference, 3),
            opt(m.person.recall, 3),
            opt(m.person.precision, 3),
            opt(m.vehicle.recall, 3),
            opt(m.vehicle.precision, 3),
            opt(m.person_count_mae, 3),
            format!("{}/{}", m.fixtures.passed, m.fixtures.total),
            if m.meets_bar { "yes" } else { "no" }
        ));
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "\nload: ms (session build + warm-up run, median of {LOADS}); x ref: median at {} thread(s) over the reference's; R/P: recall/precision against the reference; cntMAE: person count mean absolute error per frame; fixt: hand-checked frames within tolerance; bar: R and P >= {MIN_AGREEMENT:.2} for persons and vehicles and all fixtures pass",
        r.threads.first().copied().unwrap_or(1)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding() {
        assert_eq!(round(0.12345, 3), 0.123);
        assert_eq!(round(26.126, 2), 26.13);
        assert_eq!(round(141.6, 0), 142.0);
    }
}
