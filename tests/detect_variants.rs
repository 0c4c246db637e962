//! The faster variants of the shipped model (models/make_variants.py, issue 10): each loads
//! through its own manifest with the same detector code and finds the persons counted by eye on
//! the fixture frames; a variant whose manifest does not fit its outputs, and the variant
//! script's calibration-folder errors, are explained with the file at fault.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use simpang::detect::{DetectOptions, Detector};
use simpang::model::Image;

/// Every shipped variant: (manifest, input size, file). Adding or removing one is a conscious
/// change here too (`every_manifest_is_listed` checks the list against models/).
const VARIANTS: &[(&str, (u32, u32), &str)] = &[
    (
        "models/nanodet-m-dyn/manifest-384.toml",
        (384, 384),
        "nanodet-m-dyn.onnx",
    ),
    (
        "models/nanodet-m-int8/manifest.toml",
        (416, 416),
        "nanodet-m-int8.onnx",
    ),
];

#[test]
fn every_manifest_is_listed() {
    let mut found = Vec::new();
    for dir in std::fs::read_dir(support::root().join("models")).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() || dir.ends_with("nanodet-m-416") {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with("manifest") && name.ends_with(".toml") {
                found.push(
                    f.strip_prefix(support::root())
                        .unwrap()
                        .to_string_lossy()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    let mut listed: Vec<String> = VARIANTS.iter().map(|v| v.0.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn every_variant_loads_and_finds_the_persons_one_can_see() {
    let fx = support::detect::persons_fixture();
    let idx = fx.indices();
    let mut by_size: BTreeMap<(u32, u32), BTreeMap<u64, Image>> = BTreeMap::new();
    for (manifest, size, file) in VARIANTS {
        let path = support::root().join(manifest);
        let plain = Detector::from_manifest(&path, &support::detect::options())
            .unwrap_or_else(|e| panic!("{manifest}: {e}"));
        let person = plain
            .labels()
            .iter()
            .position(|l| l == "person")
            .expect("a COCO label list has person");
        let thr = plain.thresholds()[person];
        // The same manifest, also keeping boxes down to the margin below the threshold.
        let opts = DetectOptions {
            floor: Some(thr - support::detect::SCORE_MARGIN),
            ..support::detect::options()
        };
        let d = Detector::from_manifest(&path, &opts).unwrap_or_else(|e| panic!("{manifest}: {e}"));
        assert_eq!(d.input_size(), *size, "{manifest}");
        assert_eq!(d.labels().len(), 80, "{manifest}");
        // on a CPU with AMX-INT8 the manifest's onnx_amx file (tested below)
        let loaded = &d.manifest().onnx;
        assert!(
            loaded.ends_with(file) || Some(loaded) == d.manifest().onnx_amx.as_ref(),
            "{manifest}: {}",
            loaded.display()
        );
        // From the source clip the counts were made on: samples/vtest.mp4 is re-encoded by every
        // setup, and a re-encode moves scores by a few hundredths (docs/detector.md).
        let imgs = by_size.entry(*size).or_insert_with(|| {
            support::detect::frames_of(&support::detect::vtest_source(), &idx, Some(*size))
        });
        let refs: Vec<&Image> = imgs.values().collect();
        let (dets, _) = d.detect_batch(&refs).unwrap();
        // at the manifest's own person threshold, give or take the margin
        let counted = fx.counted();
        support::detect::check_person_counts(manifest, &counted, &dets, person, thr, fx.tolerance);
    }
}

#[test]
fn the_dynamic_variant_runs_at_other_sizes_and_batches() {
    // One file serves every size that is a multiple of 32 (MODEL.md: fully convolutional), and
    // its batch dimension works (the Reshapes were made batch-generic).
    let path = support::root().join("models/nanodet-m-dyn/manifest-384.toml");
    for (size, batch) in [
        ((320, 320), 1),
        ((352, 352), 1),
        ((416, 416), 2),
        ((448, 320), 3),
    ] {
        let d = Detector::from_manifest(
            &path,
            &DetectOptions {
                input_size: Some(size),
                max_batch: batch,
                ..support::detect::options()
            },
        )
        .unwrap_or_else(|e| panic!("{size:?}: {e}"));
        assert_eq!(d.input_size(), size);
        assert_eq!(d.batch_size(), batch);
        let imgs = support::detect::frames(&[200], Some(size));
        let img = &imgs[&200];
        let (dets, _) = d.detect_batch(&[img, img, img]).unwrap();
        assert_eq!(dets.len(), 3);
        assert_eq!(dets[0], dets[2], "{size:?}: same frame, same result");
        assert!(dets[0].len() >= 6, "{size:?}: {:?}", dets[0]);
    }
}

#[test]
fn a_variant_whose_manifest_does_not_fit_its_outputs_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let labels79 = tmp.path().join("coco79.txt");
    let all =
        std::fs::read_to_string(support::root().join("models/nanodet-m-416/coco80.txt")).unwrap();
    std::fs::write(
        &labels79,
        all.lines().take(79).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, Vec<String>)> = vec![
        (
            "79 labels for 80 class scores",
            Box::new({
                let l = labels79.clone();
                move |t: String| {
                    let start = t.find("labels = ").unwrap();
                    let end = start + t[start..].find('\n').unwrap();
                    format!("{}labels = {:?}{}", &t[..start], l, &t[end..])
                }
            }),
            vec!["80 values per cell".into(), "coco79.txt".into()],
        ),
        (
            "yolov8 decoder on a NanoDet head",
            Box::new(|t: String| {
                t.replace("decoder = \"nanodet\"", "decoder = \"yolov8\"")
                    .replace(
                        "[nanodet]\nstrides = [8, 16, 32]\nreg_max = 10\ncenter_offset = 0.5\n",
                        "",
                    )
            }),
            vec!["decoder yolov8 needs an output [1, 4+80, N]".into()],
        ),
        (
            "a uint8 input described as float",
            Box::new(|t: String| {
                let start = t.find("[input.quantized]").unwrap();
                let end = start + t[start..].find("\n[").unwrap() + 1;
                format!("{}{}", &t[..start], &t[end..])
            }),
            vec![
                "element type Uint8".into(),
                "describes a float32 input".into(),
                "[input.quantized]".into(),
            ],
        ),
        (
            "2x2 blocks described as an NCHW picture",
            Box::new(|t: String| t.replace("layout = \"blocks2\"", "layout = \"nchw\"")),
            vec!["input \"blocks\" has shape".into()],
        ),
        (
            "wrong number of box bins",
            Box::new(|t: String| t.replace("reg_max = 10", "reg_max = 7")),
            vec!["does not match its manifest".into()],
        ),
        (
            "strides the head does not have",
            Box::new(|t: String| t.replace("strides = [8, 16, 32]", "strides = [8, 16]")),
            vec!["does not match its manifest".into()],
        ),
    ];
    for (name, edit, wants) in cases {
        let dir = tmp.path().join(name.replace(' ', "_"));
        std::fs::create_dir_all(&dir).unwrap();
        let m = support::detect::edited_int8_manifest(&dir, "manifest.toml", edit);
        let e = match Detector::from_manifest(&m, &support::detect::options()) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&m.display().to_string()) || e.contains("manifest.toml"),
            "{name}: the manifest is not named: {e}"
        );
        assert!(
            e.contains("nanodet-m-int8.onnx"),
            "{name}: the model is not named: {e}"
        );
        for w in &wants {
            assert!(e.contains(w.as_str()), "{name}: {e}");
        }
    }
}

#[test]
fn the_amx_copy_finds_exactly_what_the_plain_file_finds() {
    // make_variants.py only re-encodes weights (w + 1 with zero point 1), so the two files must
    // agree bit for bit on every CPU; on one with AMX-INT8 the copy is what `amx = true` loads.
    let tmp = tempfile::tempdir().unwrap();
    let amx_path = support::root().join("models/nanodet-m-int8/nanodet-m-int8-amx.onnx");
    let amx_manifest = support::detect::edited_int8_manifest(tmp.path(), "amx.toml", |t| {
        let start = t.find("onnx = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}onnx = {:?}{}", &t[..start], amx_path, &t[end..])
    });
    let plain_opts = DetectOptions {
        amx: false,
        ..support::detect::options()
    };
    let shipped = support::root().join("models/nanodet-m-int8/manifest.toml");
    let plain = Detector::from_manifest(&shipped, &plain_opts).unwrap();
    assert!(plain.manifest().onnx.ends_with("nanodet-m-int8.onnx"));
    assert!(!plain.manifest().runs_amx_file());
    let copy = Detector::from_manifest(&amx_manifest, &plain_opts).unwrap();
    assert!(copy.manifest().onnx.ends_with("nanodet-m-int8-amx.onnx"));
    let auto = Detector::from_manifest(&shipped, &support::detect::options()).unwrap();
    assert_eq!(
        auto.manifest().runs_amx_file(),
        simpang::detect::runtime::amx_int8(),
        "amx = true loads the copy exactly where ONNX Runtime can use AMX-INT8"
    );

    let imgs = support::detect::frames(&[0, 100, 200, 400], Some((416, 416)));
    let refs: Vec<&Image> = imgs.values().collect();
    let (a, _) = plain.detect_batch(&refs).unwrap();
    let (b, _) = copy.detect_batch(&refs).unwrap();
    let (c, _) = auto.detect_batch(&refs).unwrap();
    assert!(a.iter().map(Vec::len).sum::<usize>() > 10, "{a:?}");
    assert_eq!(a, b);
    assert_eq!(a, c);
}

fn python() -> PathBuf {
    // scripts/setup.sh makes the venv (scripts/requirements.txt); the script needs its onnx,
    // onnxruntime and OpenCV.
    support::root().join(".venv/bin/python")
}

#[test]
fn the_variant_script_explains_a_calibration_folder_without_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let no_frames = tmp.path().join("notes-only");
    std::fs::create_dir(&no_frames).unwrap();
    std::fs::write(no_frames.join("README.txt"), "frames go here").unwrap();
    let missing = tmp.path().join("missing");
    let out = tmp.path().join("out");
    for (dir, says) in [
        (&empty, "has no frames"),
        (&no_frames, "has no frames"),
        (&missing, "does not exist"),
    ] {
        let r = Command::new(python())
            .arg(support::root().join("models/make_variants.py"))
            .arg("--calib")
            .arg(dir)
            .arg("--out-dir")
            .arg(&out)
            .output()
            .expect("run .venv/bin/python (scripts/setup.sh makes it)");
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{}: {err}", dir.display());
        assert!(
            err.contains(&format!("calibration folder {} {says}", dir.display())),
            "{}: {err}",
            dir.display()
        );
        assert!(!err.contains("Traceback"), "{err}");
        // it failed before writing anything
        assert!(!out.exists(), "{}", dir.display());
    }
}

/// Per-frame absolute errors of the whole-frame person count against the hand count of
/// `tests/fixtures/people-counts.jsonl`, at `thr`.
fn count_errors(
    dets: &[Vec<simpang::model::Detection>],
    truth: &[usize],
    person: usize,
    thr: f32,
) -> Vec<f64> {
    dets.iter()
        .zip(truth)
        .map(|(d, &t)| {
            d.iter()
                .filter(|x| x.class_id as usize == person && x.score > thr)
                .count()
                .abs_diff(t) as f64
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn the_default_model_counts_people_as_well_as_the_original_at_its_best_threshold() {
    // Issue 18, item 5: people counted on ordinary frames by the int8 default, against the
    // original (fp32) at the threshold that suits it best on the same frames. 79 vtest frames
    // counted by hand (tests/fixtures/people-counts.jsonl): set "first", every 20th frame
    // 0..780, on which the manifest's person threshold was chosen, and set "second", the 39
    // frames half-way between them (10..770), counted after that choice and held out from it.
    // Frames are decoded and scaled by simpang's VideoReader (GStreamer, to 416) from the
    // source clip the counts were made on, samples/src/vtest.avi: samples/vtest.mp4 is
    // re-encoded by every setup, and x264 does not give the same file twice (docs/detector.md).
    // No labelled frame, nor any within 10 frames of one, calibrated the int8 model
    // (make_variants.py checks it).
    #[derive(Deserialize)]
    struct Row {
        frame: u64,
        persons: usize,
        set: String,
    }
    let path = support::root().join("tests/fixtures/people-counts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let rows: Vec<Row> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect();
    let in_set =
        |s: &str| -> Vec<usize> { (0..rows.len()).filter(|&i| rows[i].set == s).collect() };
    let (first, second) = (in_set("first"), in_set("second"));
    assert_eq!((first.len(), second.len(), rows.len()), (40, 39, 79));
    let all: Vec<usize> = (0..rows.len()).collect();
    let idx: Vec<u64> = rows.iter().map(|r| r.frame).collect();
    let truth: Vec<usize> = rows.iter().map(|r| r.persons).collect();
    let imgs = support::detect::frames_of(&support::detect::vtest_source(), &idx, Some((416, 416)));
    let refs: Vec<&Image> = idx.iter().map(|i| &imgs[i]).collect();
    let run = |manifest: PathBuf| {
        let d = Detector::from_manifest(
            &manifest,
            &DetectOptions {
                floor: Some(0.25),
                ..support::detect::options()
            },
        )
        .unwrap();
        let person = d.labels().iter().position(|l| l == "person").unwrap();
        let (dets, _) = d.detect_batch(&refs).unwrap();
        (dets, person, d.thresholds()[person])
    };
    let (int8, person, int8_thr) = run(support::root().join("models/nanodet-m-int8/manifest.toml"));
    let (fp32, _, fp32_thr) = run(support::detect::nanodet_manifest());
    let mae = |dets: &[Vec<simpang::model::Detection>], t: f32, on: &[usize]| {
        let errs = count_errors(dets, &truth, person, t);
        mean(&on.iter().map(|&i| errs[i]).collect::<Vec<_>>())
    };
    let grid: Vec<f32> = (30..=60).map(|i| i as f32 * 0.01).collect();
    // A model at its best threshold on `on` (ties: the lowest).
    let best = |dets: &[Vec<simpang::model::Detection>], on: &[usize]| {
        grid.iter()
            .map(|&t| (t, mae(dets, t, on)))
            .fold(
                (f32::NAN, f64::INFINITY),
                |b, x| if x.1 < b.1 { x } else { b },
            )
    };
    let mut report = String::new();
    for (name, on) in [("first", &first), ("second", &second), ("all", &all)] {
        let sweep = |dets: &[Vec<simpang::model::Detection>]| -> String {
            grid.iter()
                .map(|&t| format!("{t:.2}:{:.3}", mae(dets, t, on)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (bt, b) = best(&fp32, on);
        let (it, i) = best(&int8, on);
        report += &format!(
            "{name} ({} frames): int8 at its {int8_thr}: {:.3} (its best {it:.2}: {i:.3}); fp32 \
             at its best {bt:.2}: {b:.3}, at its shipped {fp32_thr}: {:.3}\n  int8 {}\n  fp32 {}\n",
            on.len(),
            mae(&int8, int8_thr, on),
            mae(&fp32, fp32_thr, on),
            sweep(&int8),
            sweep(&fp32)
        );
    }
    eprintln!("person count MAE:\n{report}");
    let (fp32_best_thr, fp32_best) = best(&fp32, &all);
    let int8_all = mae(&int8, int8_thr, &all);
    // The claim (issue 18, item 5): over all 79 frames the int8 default at its manifest's
    // threshold counts at least as well as the original at the original's best threshold,
    // picked on these very frames from 31. Measured on an AMD EPYC (AVX-512): 0.734 each. The
    // allowance is one miscounted frame in 79, for the float kernels of other CPUs moving a
    // score across a threshold (docs/detector.md has this host's figures).
    assert!(
        int8_all <= fp32_best + 1.0 / 79.0 + 1e-9,
        "int8 at {int8_thr}: MAE {int8_all:.3}; the fp32 original at its best {fp32_best_thr:.2}: \
         {fp32_best:.3}\n{report}"
    );
    // On every set (the second was counted after the threshold was chosen) it counts better
    // than the original as shipped.
    for (name, on) in [("first", &first), ("second", &second), ("all", &all)] {
        let (i, f) = (mae(&int8, int8_thr, on), mae(&fp32, fp32_thr, on));
        assert!(
            i < f,
            "{name}: int8 {i:.3}, fp32 as shipped {f:.3}\n{report}"
        );
    }
    // The manifest's threshold is the int8 model's own best, to four miscounted frames in 79.
    let (own_thr, own) = best(&int8, &all);
    assert!(
        int8_all <= own + 4.0 / 79.0 + 1e-9,
        "int8 at {own_thr:.2}: {own:.3} is more than four miscounted frames better than at the \
         manifest's {int8_thr}: {int8_all:.3}\n{report}"
    );
}
