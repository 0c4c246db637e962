//! `simpang eval`: compare detector models on the same footage in one run — load time, latency
//! at each intra-op thread count, agreement with a reference model (recall and precision at
//! IoU 0.5 for persons and for vehicles, person-count error) and the hand-checked person counts
//! of tests/fixtures/detect/vtest-persons.toml. Latencies are taken in interleaved rounds (every
//! model and thread count once per round), so a machine that gets busier or quieter during the
//! run shifts every model alike.
//!
//! Frames go through the same GStreamer decode and scaler as the analytics branch
//! ([`VideoReader`] at each model's input size), so each model sees what it would see live.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::agreement::{self, Counts, GROUPS};
use crate::config::{Config, DetectConfig, OptimizationLevel};
use crate::detect::{DetectOptions, Detector};
use crate::ingest::reader::{ReadOptions, VideoReader};
use crate::model::{Detection, Image, PixelFormat};
use crate::procfs;

/// IoU at which a model's box counts as the reference's box.
pub const MATCH_IOU: f32 = 0.5;
/// The bar a variant must clear to replace the reference (issue 10).
pub const MIN_AGREEMENT: f64 = 0.90;
/// Untimed inferences per detector before the timed rounds.
const WARMUP_RUNS: usize = 3;
/// Loads per model; the reported load time is their median.
const LOADS: usize = 3;

/// Arguments of `simpang eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Comma-separated model manifests to compare. Options may follow a manifest, each after an
    /// `@`: `opt=disable|basic|extended|layout|all` (graph optimisation), `spin` (intra-op
    /// threads spin), `size=WxH` (input size, for a manifest with `dynamic = true`), `amx=off`
    /// (load the manifest's `onnx`, not its `onnx_amx`, on a CPU with AMX-INT8); e.g.
    /// `models/nanodet-m-int8/manifest.toml@opt=basic`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// The model the others are compared with, same syntax (default: the fp32 416 original,
    /// models/nanodet-m-416/manifest.toml). It is always measured as well.
    #[arg(long)]
    pub reference: Option<String>,
    /// Footage files, comma-separated (default: samples/vtest.mp4,samples/sample.mp4).
    #[arg(long, value_delimiter = ',')]
    pub footage: Vec<PathBuf>,
    /// Frames compared, split equally between the footage files and spread evenly over each.
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    /// Intra-op thread counts each model is timed at (the first is also used for the
    /// agreement runs and for the speed ratio).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Timed inferences per model and thread count.
    #[arg(long, default_value_t = 60)]
    pub runs: usize,
    /// Hand-checked person counts on vtest frames (default:
    /// tests/fixtures/detect/vtest-persons.toml; its frames are read from samples/vtest.mp4).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Also write the results as JSON to this file (the same numbers as the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Config whose `[detect]` gives the ONNX Runtime library, optimisation level and spinning
    /// (default: config/palembang.toml if it exists, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// One model as asked for on the command line: a manifest and how to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub manifest: PathBuf,
    pub optimization: Option<OptimizationLevel>,
    pub spinning: bool,
    pub size: Option<(u32, u32)>,
    /// May load the manifest's `onnx_amx` file (`amx=off` says no).
    pub amx: bool,
}

impl ModelSpec {
    /// Parses `PATH[@opt=LEVEL][@spin][@size=WxH][@amx=off]`.
    pub fn parse(text: &str) -> Result<ModelSpec, String> {
        let mut parts = text.split('@');
        let path = parts.next().unwrap_or_default().trim();
        if path.is_empty() {
            return Err(format!("{text:?}: no manifest path"));
        }
        let mut spec = ModelSpec {
            manifest: PathBuf::from(path),
            optimization: None,
            spinning: false,
            size: None,
            amx: true,
        };
        for opt in parts {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (opt.trim(), None),
            };
            match (key, value) {
                ("opt", Some(v)) => {
                    spec.optimization = Some(match v {
                        "disable" => OptimizationLevel::Disable,
                        "basic" => OptimizationLevel::Basic,
                        "extended" => OptimizationLevel::Extended,
                        "layout" => OptimizationLevel::Layout,
                        "all" => OptimizationLevel::All,
                        _ => {
                            return Err(format!(
                            "{text:?}: opt={v}: expected disable, basic, extended, layout or all"
                        ))
                        }
                    })
                }
                ("spin", None) => spec.spinning = true,
                ("amx", Some("off")) => spec.amx = false,
                ("amx", Some(v)) => {
                    return Err(format!(
                        "{text:?}: amx={v}: only amx=off is an option (the AMX file is used where the CPU has AMX-INT8)"
                    ))
                }
                ("size", Some(v)) => {
                    let parsed = v
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
                    match parsed {
                        Some((w, h)) if w > 0 && h > 0 => spec.size = Some((w, h)),
                        _ => {
                            return Err(format!(
                                "{text:?}: size={v}: expected WIDTHxHEIGHT, e.g. 352x352"
                            ))
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "{text:?}: unknown option {opt:?} (known: opt=LEVEL, spin, size=WxH, amx=off)"
                    ))
                }
            }
        }
        Ok(spec)
    }

    /// The options part, as written after the model's name in the table.
    fn options_text(&self) -> String {
        let mut o = Vec::new();
        if let Some(l) = self.optimization {
            o.push(format!("opt={}", level_name(l)));
        }
        if self.spinning {
            o.push("spin".to_string());
        }
        if let Some((w, h)) = self.size {
            o.push(format!("size={w}x{h}"));
        }
        if !self.amx {
            o.push("amx=off".to_string());
        }
        o.join(" ")
    }
}

fn level_name(l: OptimizationLevel) -> &'static str {
    match l {
        OptimizationLevel::Disable => "disable",
        OptimizationLevel::Basic => "basic",
        OptimizationLevel::Extended => "extended",
        OptimizationLevel::Layout => "layout",
        OptimizationLevel::All => "all",
    }
}

#[derive(Deserialize)]
struct FixtureFile {
    tolerance: usize,
    frames: Vec<FixtureSpec>,
}

#[derive(Deserialize)]
struct FixtureSpec {
    index: u64,
    visible: usize,
}

/// Where everything comes from, after defaults and the config are applied.
struct Plan {
    base: DetectOptions,
    reference: ModelSpec,
    models: Vec<ModelSpec>,
    footage: Vec<PathBuf>,
    fixtures_path: PathBuf,
    fixture_footage: PathBuf,
    fixtures: FixtureFile,
}

fn plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--threads must list thread counts of at least 1");
    }
    let default_cfg = crate::config::default_path();
    let cfg_path = match &args.config {
        Some(p) => Some(p.clone()),
        None if default_cfg.is_file() => Some(default_cfg),
        None => None,
    };
    // Repository files the defaults name, from the config's folder like its own paths, or
    // from the working directory without a config.
    type RepoPath = Box<dyn Fn(&str) -> PathBuf>;
    let (base, repo): (DetectOptions, RepoPath) = match cfg_path {
        Some(p) => {
            let cfg = Config::load(&p).with_context(|| format!("config {}", p.display()))?;
            let opts = DetectOptions::from_config(&cfg);
            (
                opts,
                Box::new(move |rel| tidy(&cfg.resolve(&Path::new("..").join(rel)))),
            )
        }
        None => {
            let d = DetectConfig::default();
            let lib = d
                .ort_library
                .strip_prefix("..")
                .map(Path::to_path_buf)
                .unwrap_or(d.ort_library);
            let opts = DetectOptions {
                ort_library: Some(lib),
                optimization: d.optimization,
                spinning: d.spinning,
                ..DetectOptions::default()
            };
            (opts, Box::new(|rel| PathBuf::from(rel)))
        }
    };
    let base = DetectOptions {
        sessions: 1,
        max_batch: 1,
        // eval measures the model, not an artificial delay
        debug_delay: Duration::ZERO,
        input_size: None,
        score_threshold: None,
        ..base
    };
    let reference = match &args.reference {
        Some(r) => ModelSpec::parse(r).map_err(anyhow::Error::msg)?,
        None => ModelSpec {
            manifest: repo("models/nanodet-m-416/manifest.toml"),
            optimization: None,
            spinning: false,
            size: None,
            amx: true,
        },
    };
    let models = args
        .models
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| ModelSpec::parse(m).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if models.is_empty() {
        bail!("--models names no model");
    }
    for m in std::iter::once(&reference).chain(&models) {
        if !m.manifest.is_file() {
            bail!("model manifest {} does not exist", m.manifest.display());
        }
    }
    let footage = if args.footage.is_empty() {
        vec![repo("samples/vtest.mp4"), repo("samples/sample.mp4")]
    } else {
        args.footage.clone()
    };
    for f in &footage {
        if !f.is_file() {
            bail!("footage {} does not exist", f.display());
        }
    }
    if args.frames < footage.len() {
        bail!(
            "--frames {} is fewer than the {} footage files (at least one frame each)",
            args.frames,
            footage.len()
        );
    }
    let fixtures_path = args
        .fixtures
        .clone()
        .unwrap_or_else(|| repo("tests/fixtures/detect/vtest-persons.toml"));
    let text = std::fs::read_to_string(&fixtures_path)
        .with_context(|| format!("cannot read fixtures file {}", fixtures_path.display()))?;
    let fixtures: FixtureFile = toml::from_str(&text)
        .with_context(|| format!("fixtures file {}", fixtures_path.display()))?;
    let fixture_footage = repo("samples/vtest.mp4");
    if !fixtures.frames.is_empty() && !fixture_footage.is_file() {
        bail!(
            "footage {} (the frames of {}) does not exist",
            fixture_footage.display(),
            fixtures_path.display()
        );
    }
    Ok(Plan {
        base,
        reference,
        models,
        footage,
        fixtures_path,
        fixture_footage,
        fixtures,
    })
}

/// A model under test, loaded once per thread count.
struct Row {
    spec: ModelSpec,
    name: String,
    /// The ONNX file loaded (the manifest's `onnx`, or `onnx_amx` on an AMX CPU).
    onnx: PathBuf,
    /// It is the manifest's `onnx_amx`.
    amx_file: bool,
    is_reference: bool,
    size: (u32, u32),
    labels: Vec<String>,
    /// (threads, detector), in `--threads` order.
    detectors: Vec<(usize, Detector)>,
    load_ms: Vec<f64>,
    /// Per sampled frame, in the order of `Frames::order`.
    detections: Vec<Vec<Detection>>,
    /// (wall ms, process CPU ms) per timed call, per thread count.
    timings: Vec<Vec<(f64, f64)>>,
}

impl Row {
    fn label(&self) -> String {
        let mut s = self.name.clone();
        if self.amx_file {
            s.push_str(" [amx]");
        }
        let o = self.spec.options_text();
        if !o.is_empty() {
            s.push(' ');
            s.push_str(&o);
        }
        if self.is_reference {
            s.push_str(" (ref)");
        }
        s
    }
}

fn options_for(base: &DetectOptions, spec: &ModelSpec, threads: usize) -> DetectOptions {
    DetectOptions {
        threads,
        optimization: spec.optimization.unwrap_or(base.optimization),
        spinning: spec.spinning || base.spinning,
        input_size: spec.size,
        amx: spec.amx && base.amx,
        ..base.clone()
    }
}

fn load(base: &DetectOptions, spec: &ModelSpec, threads: usize) -> anyhow::Result<(Detector, f64)> {
    let t0 = Instant::now();
    let d = Detector::from_manifest(&spec.manifest, &options_for(base, spec, threads))
        .with_context(|| format!("loading model {}", spec.manifest.display()))?;
    Ok((d, t0.elapsed().as_secs_f64() * 1e3))
}

/// Frames of one footage file at chosen indices, at `size`.
fn read_frames(
    path: &Path,
    size: (u32, u32),
    wanted: &BTreeSet<u64>,
) -> anyhow::Result<BTreeMap<u64, Image>> {
    let mut out = BTreeMap::new();
    let Some(&last) = wanted.iter().next_back() else {
        return Ok(out);
    };
    let opts = ReadOptions {
        size: Some(size),
        format: PixelFormat::Bgr,
        fps: None,
    };
    let reader =
        VideoReader::open(path, &opts).with_context(|| format!("footage {}", path.display()))?;
    for f in reader {
        let f = f.with_context(|| format!("decoding footage {}", path.display()))?;
        if wanted.contains(&f.index) {
            out.insert(f.index, f.image);
        }
        if f.index >= last {
            break;
        }
    }
    if out.len() != wanted.len() {
        bail!(
            "footage {} ended before frame {last} ({} of {} wanted frames read)",
            path.display(),
            out.len(),
            wanted.len()
        );
    }
    Ok(out)
}

fn count_frames(path: &Path) -> anyhow::Result<u64> {
    let opts = ReadOptions {
        // decoding dominates; a tiny output keeps the copies cheap
        size: Some((64, 64)),
        format: PixelFormat::Bgr,
        fps: None,
    };
    let mut n = 0;
    for f in
        VideoReader::open(path, &opts).with_context(|| format!("footage {}", path.display()))?
    {
        f.with_context(|| format!("decoding footage {}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        bail!("footage {} has no video frames", path.display());
    }
    Ok(n)
}

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

pub fn main(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(&args)?;
    let report = run(&args, &plan)?;
    print!("{}", render(&report));
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, text + "\n").with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("JSON written to {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: &EvalArgs, plan: &Plan) -> anyhow::Result<Report> {
    let machine = procfs::Machine::read();
    let load_start = procfs::load_1m();
    let threads = &args.threads;

    let mut specs = vec![(plan.reference.clone(), true)];
    for m in &plan.models {
        if !specs.iter().any(|(s, _)| s == m) {
            specs.push((m.clone(), false));
        }
    }
    let per_footage: Vec<usize> = (0..plan.footage.len())
        .map(|i| {
            args.frames / plan.footage.len() + usize::from(i < args.frames % plan.footage.len())
        })
        .collect();
    let fixture_idx: BTreeSet<u64> = plan.fixtures.frames.iter().map(|f| f.index).collect();

    // Rough step counts, for the bar only.
    let n_rows = specs.len() as u64;
    let steps = n_rows * (threads.len() + LOADS - 1) as u64
        + plan.footage.len() as u64
        + n_rows * (args.frames + fixture_idx.len()) as u64
        + n_rows * threads.len() as u64 * (args.runs + WARMUP_RUNS) as u64;
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:32}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );

    // 1. Load every model at every thread count; then reload at the first count for the timing.
    bar.set_message("loading models");
    let mut rows = Vec::new();
    for (spec, is_reference) in &specs {
        let mut detectors = Vec::new();
        let mut load_ms = Vec::new();
        for &t in threads {
            let (d, ms) = load(&plan.base, spec, t)?;
            if t == threads[0] {
                load_ms.push(ms);
            }
            detectors.push((t, d));
            bar.inc(1);
        }
        let first = &detectors[0].1;
        rows.push(Row {
            name: first.manifest().name.clone(),
            onnx: first.manifest().onnx.clone(),
            amx_file: first.manifest().runs_amx_file(),
            size: first.input_size(),
            labels: first.labels().to_vec(),
            spec: spec.clone(),
            is_reference: *is_reference,
            detectors,
            load_ms,
            detections: Vec::new(),
            timings: vec![Vec::new(); threads.len()],
        });
    }
    for _ in 1..LOADS {
        for r in rows.iter_mut() {
            let (_, ms) = load(&plan.base, &r.spec, threads[0])?;
            r.load_ms.push(ms);
            bar.inc(1);
        }
    }

    // 2. Frames: sampled evenly per footage file, decoded and scaled once per input size.
    bar.set_message("reading footage");
    let mut footage_use = Vec::new();
    let mut wanted: Vec<BTreeSet<u64>> = Vec::new();
    for (f, &n) in plan.footage.iter().zip(&per_footage) {
        let count = count_frames(f)?;
        let picks: BTreeSet<u64> = agreement::even_indices(count, n).into_iter().collect();
        footage_use.push(FootageUse {
            file: f.display().to_string(),
            frames_in_file: count,
            sampled: picks.len(),
        });
        wanted.push(picks);
        bar.inc(1);
    }
    let sizes: BTreeSet<(u32, u32)> = rows.iter().map(|r| r.size).collect();
    // per size: the sampled frames in order (footage, index), and the fixture frames
    let mut frames: BTreeMap<(u32, u32), Vec<Image>> = BTreeMap::new();
    let mut fixture_frames: BTreeMap<(u32, u32), BTreeMap<u64, Image>> = BTreeMap::new();
    for &size in &sizes {
        let mut list = Vec::new();
        let mut fixture_done = false;
        for (f, picks) in plan.footage.iter().zip(&wanted) {
            let same = same_file(f, &plan.fixture_footage);
            let mut all = picks.clone();
            if same {
                all.extend(&fixture_idx);
            }
            let mut got = read_frames(f, size, &all)?;
            if same && !fixture_done {
                let fx = fixture_idx
                    .iter()
                    .filter_map(|i| got.get(i).map(|img| (*i, img.clone())))
                    .collect();
                fixture_frames.insert(size, fx);
                fixture_done = true;
            }
            list.extend(picks.iter().filter_map(|i| got.remove(i)));
        }
        if !fixture_done {
            fixture_frames.insert(
                size,
                read_frames(&plan.fixture_footage, size, &fixture_idx)?,
            );
        }
        frames.insert(size, list);
    }
    let n_frames: usize = footage_use.iter().map(|f| f.sampled).sum();

    // 3. Agreement runs and fixture counts, at the first thread count.
    let mut fixture_results = Vec::new();
    for r in rows.iter_mut() {
        bar.set_message(format!("detecting: {}", r.name));
        let det = &r.detectors[0].1;
        let imgs = frames.get(&r.size).map(Vec::as_slice).unwrap_or_default();
        for img in imgs {
            let (mut d, _) = det
                .detect_batch(&[img])
                .with_context(|| format!("model {}", r.name))?;
            r.detections.push(d.pop().unwrap_or_default());
            bar.inc(1);
        }
        let person = r.labels.iter().position(|l| l == "person");
        let mut fx = Vec::new();
        let empty = BTreeMap::new();
        let fimgs = fixture_frames.get(&r.size).unwrap_or(&empty);
        for spec in &plan.fixtures.frames {
            let Some(img) = fimgs.get(&spec.index) else {
                continue;
            };
            let (mut d, _) = det
                .detect_batch(&[img])
                .with_context(|| format!("model {}", r.name))?;
            let d = d.pop().unwrap_or_default();
            // at the manifest's own person threshold, as the detector runs live (0.5 for the
            // original, the threshold the fixture counts were checked at)
            let found = person.map_or(0, |p| agreement::count_class(&d, p, f32::NEG_INFINITY));
            fx.push(FixtureFrame {
                index: spec.index,
                visible: spec.visible,
                found,
                pass: found.abs_diff(spec.visible) <= plan.fixtures.tolerance,
            });
            bar.inc(1);
        }
        fixture_results.push(fx);
    }

    // 4. Latency: interleaved rounds, each starting at a different model.
    for r in rows.iter() {
        for (_, det) in &r.detectors {
            if let Some(img) = frames.get(&r.size).and_then(|f| f.first()) {
                for _ in 0..WARMUP_RUNS {
                    det.detect_batch(&[img])
                        .with_context(|| format!("model {}", r.name))?;
                    bar.inc(1);
                }
            }
        }
    }
    bar.set_message("timing");
    let nrows = rows.len();
    for round in 0..args.runs {
        for k in 0..nrows {
            let r = &mut rows[(round + k) % nrows];
            let Some(list) = frames.get(&r.size) else {
                continue;
            };
            if list.is_empty() {
                continue;
            }
            let img = &list[round % list.len()];
            for (ti, (_, det)) in r.detectors.iter().enumerate() {
                let c0 = procfs::self_cpu_time();
                let t0 = Instant::now();
                det.detect_batch(&[img])
                    .with_context(|| format!("model {}", r.name))?;
                let wall = t0.elapsed().as_secs_f64() * 1e3;
                let cpu = procfs::self_cpu_time().saturating_sub(c0).as_secs_f64() * 1e3;
                r.timings[ti].push((wall, cpu));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    // 5. Numbers.
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
    Ok(Report {
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
    })
}

fn empty_group() -> GroupReport {
    GroupReport {
        recall: None,
        precision: None,
        counts: Counts::default(),
    }
}

/// `config/../samples/x.mp4` → `samples/x.mp4` (lexically; for readable paths in the report).
fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
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
    fn model_specs() {
        let ok = |text: &str, opt, spin, size| {
            assert_eq!(
                ModelSpec::parse(text).unwrap(),
                ModelSpec {
                    manifest: PathBuf::from("m/x.toml"),
                    optimization: opt,
                    spinning: spin,
                    size,
                    amx: true,
                },
                "{text}"
            )
        };
        ok("m/x.toml", None, false, None);
        ok(
            "m/x.toml@opt=basic",
            Some(OptimizationLevel::Basic),
            false,
            None,
        );
        ok("m/x.toml@spin", None, true, None);
        assert!(!ModelSpec::parse("m/x.toml@amx=off").unwrap().amx);
        ok("m/x.toml@size=352x320", None, false, Some((352, 320)));
        ok(
            "m/x.toml@opt=disable@spin@size=32x32",
            Some(OptimizationLevel::Disable),
            true,
            Some((32, 32)),
        );
        for (bad, says) in [
            ("", "no manifest path"),
            ("@spin", "no manifest path"),
            ("m/x.toml@opt=max", "opt=max"),
            ("m/x.toml@opt", "unknown option"),
            ("m/x.toml@spin=yes", "unknown option"),
            ("m/x.toml@size=352", "size=352"),
            ("m/x.toml@size=0x320", "size=0x320"),
            ("m/x.toml@fast", "unknown option \"fast\""),
            ("m/x.toml@amx=on", "only amx=off"),
        ] {
            let e = ModelSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn options_text_round_trips() {
        for text in [
            "m.toml",
            "m.toml@opt=basic",
            "m.toml@spin",
            "m.toml@opt=all@spin@size=320x320",
            "m.toml@amx=off",
            "m.toml@spin@amx=off",
        ] {
            let s = ModelSpec::parse(text).unwrap();
            let again = if s.options_text().is_empty() {
                "m.toml".to_string()
            } else {
                format!("m.toml@{}", s.options_text().replace(' ', "@"))
            };
            assert_eq!(ModelSpec::parse(&again).unwrap(), s, "{text}");
        }
    }

    #[test]
    fn tidy_paths() {
        for (p, want) in [
            ("config/../samples/v.mp4", "samples/v.mp4"),
            ("/r/config/../models/m.toml", "/r/models/m.toml"),
            ("../samples/v.mp4", "../samples/v.mp4"),
            ("a/./b/../../c", "c"),
            ("a/..", "."),
        ] {
            assert_eq!(tidy(Path::new(p)), PathBuf::from(want), "{p}");
        }
    }

    #[test]
    fn rounding() {
        assert_eq!(round(0.12345, 3), 0.123);
        assert_eq!(round(26.126, 2), 26.13);
        assert_eq!(round(141.6, 0), 142.0);
    }
}
