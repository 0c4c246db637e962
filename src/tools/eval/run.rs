//! The measuring part of `simpang eval`: every model loaded at every thread count, the sampled
//! frames decoded once per input size, the agreement and fixture detections, then the timed
//! rounds. No number is worked out here (`report.rs` does that).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use super::plan::{EvalArgs, ModelSpec, Plan};
use super::report::{FixtureFrame, FootageUse};
use super::{LOADS, WARMUP_RUNS};
use crate::detect::{DetectOptions, Detector};
use crate::ingest::reader::{ReadOptions, VideoReader};
use crate::model::{Detection, Image, PixelFormat};
use crate::procfs;
use crate::tools::agreement;

/// A model under test, loaded once per thread count.
pub(super) struct Row {
    pub spec: ModelSpec,
    pub name: String,
    /// The ONNX file loaded (the manifest's `onnx`, or `onnx_amx` on an AMX CPU).
    pub onnx: PathBuf,
    /// It is the manifest's `onnx_amx`.
    pub amx_file: bool,
    pub is_reference: bool,
    pub size: (u32, u32),
    pub labels: Vec<String>,
    /// (threads, detector), in `--threads` order.
    pub detectors: Vec<(usize, Detector)>,
    pub load_ms: Vec<f64>,
    /// Per sampled frame, in the order of `Frames::order`.
    pub detections: Vec<Vec<Detection>>,
    /// (wall ms, process CPU ms) per timed call, per thread count.
    pub timings: Vec<Vec<(f64, f64)>>,
}

impl Row {
    pub(super) fn label(&self) -> String {
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

/// What the runs measured, before any number is worked out of it.
pub(super) struct Measured {
    /// The reference first, then the other models in `--models` order.
    pub rows: Vec<Row>,
    /// Per row, the hand-checked frames and what the model found on them.
    pub fixtures: Vec<Vec<FixtureFrame>>,
    pub footage: Vec<FootageUse>,
    pub machine: procfs::Machine,
    pub load_start: Option<f64>,
}

pub(super) fn measure(args: &EvalArgs, plan: &Plan) -> anyhow::Result<Measured> {
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
            // original, the threshold the fixture counts were checked at); boxes in the frame's
            // ignore regions (things that are not persons) are not counted
            let ignore = plan.fixtures.ignore_of(spec);
            let d: Vec<_> = d
                .into_iter()
                .filter(|x| !agreement::centre_in_any(&x.bbox, &ignore))
                .collect();
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
    Ok(Measured {
        rows,
        fixtures: fixture_results,
        footage: footage_use,
        machine,
        load_start,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
