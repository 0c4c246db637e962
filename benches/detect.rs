//! Detector benchmarks: pre-processing, decoding + NMS, full detection at 1 and 2 intra-op
//! threads, and six cameras' frames through a pool of sessions vs. batched inference.
//!
//! `cargo bench --bench detect` (filter with e.g. `-- pool`). Numbers and the decisions they
//! support are in docs/detector.md. The batched variants need a dynamic-batch copy of the model,
//! made once into target/bench-models/ with `.venv/bin/python` (onnx); without it they are left
//! out with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use simpang::config::OptimizationLevel;
use simpang::detect::decode::{DecodeParams, YoloScratch};
use simpang::detect::manifest::Manifest;
use simpang::detect::preprocess::{preprocess, InputBuf, Normalizer, SlowPath};
use simpang::detect::runtime::{self, Binding};
use simpang::detect::{nms, DetectOptions, Detector};
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{Detection, Image, PixelFormat};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> PathBuf {
    root().join("models/nanodet-m-416/manifest.toml")
}

fn options(threads: usize, sessions: usize, max_batch: usize) -> DetectOptions {
    DetectOptions {
        threads,
        sessions,
        max_batch,
        ort_library: Some(root().join("vendor-lib/onnxruntime/libonnxruntime.so")),
        ..DetectOptions::default()
    }
}

/// Six different vtest frames (six "cameras"), BGR at `size` (native if `None`).
fn frames(size: Option<(u32, u32)>) -> Vec<Image> {
    let opts = ReadOptions {
        size,
        format: PixelFormat::Bgr,
        fps: None,
    };
    VideoReader::open(&root().join("samples/vtest.mp4"), &opts)
        .expect("samples/vtest.mp4")
        .map(|f| f.expect("decode"))
        .filter(|f| f.index % 100 == 0)
        .take(6)
        .map(|f| f.image)
        .collect()
}

fn bench_preprocess(c: &mut Criterion) {
    let m = Manifest::load(&manifest()).expect("manifest");
    let norm = Normalizer::new(&m.input);
    let mut slow = SlowPath::default();
    let mut out = InputBuf::zeros(&m.input, 3 * 416 * 416);
    let n = out.len();
    let at_size = frames(Some((416, 416))).remove(0);
    let native = frames(None).remove(0);
    let mut g = c.benchmark_group("detect/preprocess");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bgr416_fast_path", |b| {
        b.iter(|| preprocess(&at_size, 416, 416, &norm, &mut slow, out.slot(0..n)).expect("pre"))
    });
    g.bench_function("bgr768x576_resize", |b| {
        b.iter(|| preprocess(&native, 416, 416, &norm, &mut slow, out.slot(0..n)).expect("pre"))
    });
    g.finish();
}

/// Raw outputs of the model on a vtest frame, copied out, and the binding that reads them.
fn captured_outputs() -> (Manifest, Binding, Vec<Vec<f32>>) {
    let m = Manifest::load(&manifest()).expect("manifest");
    let opts = options(1, 1, 1);
    let env = runtime::environment(&runtime::library_path(opts.ort_library.as_deref()))
        .expect("ORT library");
    let mut session = runtime::build_session(&env, &m, &opts).expect("session");
    let img = frames(Some((416, 416))).remove(2); // frame 200: 7 persons and more
    let mut input = InputBuf::zeros(&m.input, 3 * 416 * 416);
    let n = input.len();
    Normalizer::new(&m.input).run(&img.data, 416, 416, input.slot(0..n));
    let names: Vec<String> = session
        .outputs()
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    let out = runtime::run(&mut session, m.input.layout, 1, (416, 416), &input).expect("run");
    let mut shapes = Vec::new();
    let mut data = Vec::new();
    for i in 0..out.len() {
        let (s, d) = out[i].try_extract_tensor::<f32>().expect("f32 output");
        shapes.push(s.to_vec());
        data.push(d.to_vec());
    }
    let kind =
        runtime::bind(&m.decoder, m.labels.len(), (416, 416), &names, &shapes).expect("bind");
    let binding = Binding {
        kind,
        per_image: shapes.iter().map(|s| s[1..].to_vec()).collect(),
        names,
    };
    (m, binding, data)
}

fn bench_decode(c: &mut Criterion) {
    let (m, binding, data) = captured_outputs();
    let views: Vec<&[f32]> = data.iter().map(|v| v.as_slice()).collect();
    let mut yolo = YoloScratch::default();
    let mut cand: Vec<Detection> = Vec::with_capacity(1024);
    let mut kept = Vec::with_capacity(100);
    let mut g = c.benchmark_group("detect/decode_nms");
    g.throughput(Throughput::Elements(1));
    for (name, thr) in [("manifest_thresholds", None), ("all_at_0.3", Some(0.3f32))] {
        let thresholds: Vec<f32> = match thr {
            Some(t) => vec![t; m.labels.len()],
            None => m.thresholds.to_vec(),
        };
        let params = DecodeParams::new(&thresholds, 416, 416);
        g.bench_function(name, |b| {
            b.iter(|| {
                cand.clear();
                runtime::decode_image(&binding, &views, 0, &params, &mut yolo, &mut cand)
                    .expect("decode");
                nms::nms(
                    &mut cand,
                    m.nms_iou,
                    m.pre_nms_top_k,
                    m.max_detections,
                    &mut kept,
                );
                kept.len()
            })
        });
    }
    g.finish();
}

fn bench_full(c: &mut Criterion) {
    let img = frames(Some((416, 416))).remove(2);
    let variants: Vec<(&str, Detector)> = vec![
        (
            "threads/1",
            Detector::from_manifest(&manifest(), &options(1, 1, 1)).expect("detector"),
        ),
        (
            "threads/2",
            Detector::from_manifest(&manifest(), &options(2, 1, 1)).expect("detector"),
        ),
        (
            // Spinning intra-op threads: faster hand-off, but they burn the other core while
            // they wait.
            "threads/2_spinning",
            Detector::from_manifest(
                &manifest(),
                &DetectOptions {
                    spinning: true,
                    ..options(2, 1, 1)
                },
            )
            .expect("detector"),
        ),
        (
            "threads/1_opt_basic",
            Detector::from_manifest(
                &manifest(),
                &DetectOptions {
                    optimization: OptimizationLevel::Basic,
                    ..options(1, 1, 1)
                },
            )
            .expect("detector"),
        ),
    ];
    let mut g = c.benchmark_group("detect/full_416");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    for (name, d) in &variants {
        g.bench_function(*name, |b| {
            b.iter(|| d.detect_batch(&[&img]).expect("detect"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("detect/full_416_cpu");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    for (name, d) in &variants {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let t0 = process_cpu();
                for _ in 0..iters {
                    d.detect_batch(&[&img]).expect("detect");
                }
                process_cpu() - t0
            })
        });
    }
    g.finish();
}

/// A dynamic-batch copy of the model and a manifest for it, made once under target/.
fn batch_manifest() -> Option<PathBuf> {
    let dir = root().join("target/bench-models");
    let onnx = dir.join("nanodet-m-416-batch.onnx");
    let src = root().join("models/nanodet-m-416");
    if !onnx.is_file() {
        std::fs::create_dir_all(&dir).ok()?;
        let python = root().join(".venv/bin/python");
        let status = Command::new(&python)
            .arg(root().join("tests/fixtures/detect/make_batch_model.py"))
            .arg(src.join("nanodet-m-416.onnx"))
            .arg(&onnx)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "batched variants left out: {} could not make a dynamic-batch model ({status:?})",
                python.display()
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(manifest()).ok()?;
    let text = text
        .replace(
            "onnx = \"nanodet-m-416.onnx\"",
            &format!("onnx = {:?}", onnx.to_string_lossy()),
        )
        .replace(
            "labels = \"coco80.txt\"",
            &format!("labels = {:?}", src.join("coco80.txt").to_string_lossy()),
        );
    let m = dir.join("manifest-batch.toml");
    std::fs::write(&m, text).ok()?;
    Some(m)
}

/// CPU time used by the whole process so far (all threads, including ORT's pools).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Six cameras' frames per call: how to spend two cores. Wall time (`detect/six_frames`) is
/// what a quiet machine delivers; CPU time (`detect/six_frames_cpu`) is what the detector takes
/// away from the decoders and encoders sharing the cores, and is far less disturbed when other
/// work runs on the host during the measurement.
fn bench_pool_vs_batch(c: &mut Criterion) {
    let six = frames(Some((416, 416)));
    let refs: Vec<&Image> = six.iter().collect();
    let mut g = c.benchmark_group("detect/six_frames");
    g.sample_size(15).measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(six.len() as u64));
    let mut variants: Vec<(String, Detector)> = vec![
        (
            "1_session_x_1_thread".into(),
            Detector::from_manifest(&manifest(), &options(1, 1, 1)).expect("detector"),
        ),
        (
            "1_session_x_2_threads".into(),
            Detector::from_manifest(&manifest(), &options(2, 1, 1)).expect("detector"),
        ),
        (
            "pool_2_sessions_x_1_thread".into(),
            Detector::from_manifest(&manifest(), &options(1, 2, 1)).expect("detector"),
        ),
    ];
    if let Some(bm) = batch_manifest() {
        for (name, threads, sessions, batch) in [
            ("batch_6_x_1_thread", 1, 1, 6),
            ("batch_6_x_2_threads", 2, 1, 6),
            ("pool_2_sessions_x_batch_3", 1, 2, 3),
        ] {
            let d = Detector::from_manifest(&bm, &options(threads, sessions, batch))
                .expect("batch detector");
            assert_eq!(d.batch_size(), batch);
            variants.push((name.into(), d));
        }
    }
    for (name, d) in &variants {
        g.bench_function(name.as_str(), |b| {
            b.iter(|| d.detect_batch(&refs).expect("detect"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("detect/six_frames_cpu");
    g.sample_size(15).measurement_time(Duration::from_secs(12));
    g.throughput(Throughput::Elements(six.len() as u64));
    for (name, d) in &variants {
        g.bench_function(name.as_str(), |b| {
            b.iter_custom(|iters| {
                let t0 = process_cpu();
                for _ in 0..iters {
                    d.detect_batch(&refs).expect("detect");
                }
                process_cpu() - t0
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_preprocess,
    bench_decode,
    bench_full,
    bench_pool_vs_batch
);
criterion_main!(benches);
