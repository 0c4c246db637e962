//! The shipped NanoDet model on real footage, through the real ONNX Runtime: person counts
//! verified by eye, one box checked by hand, agreement with the verified Python reference, and
//! the errors a bad model setup gives.

mod support;

use std::path::Path;
use std::sync::OnceLock;

use serde::Deserialize;
use simpang::detect::{DetectError, DetectOptions, Detector};
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{Detection, Image, PixelFormat};

fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| {
        Detector::from_manifest(
            &support::detect::nanodet_manifest(),
            &DetectOptions {
                sessions: 2,
                ..support::detect::options()
            },
        )
        .unwrap()
    })
}

fn persons(dets: &[Detection], min_score: f32) -> usize {
    let labels = detector().labels();
    dets.iter()
        .filter(|d| labels[d.class_id as usize] == "person" && d.score > min_score)
        .count()
}

#[test]
fn finds_the_persons_one_can_see() {
    let fx = support::detect::persons_fixture();
    let idx = fx.indices();
    let thr = 0.5;
    // Also boxes just under the threshold, which count either way (support::detect::SCORE_MARGIN).
    let d = Detector::from_manifest(
        &support::detect::nanodet_manifest(),
        &DetectOptions {
            floor: Some(thr - support::detect::SCORE_MARGIN),
            ..support::detect::options()
        },
    )
    .unwrap();
    let person = d.labels().iter().position(|l| l == "person").unwrap();
    assert_eq!(
        d.thresholds()[person],
        thr,
        "the original's person threshold"
    );
    // Both paths: frames scaled by GStreamer to the input size (what the frame loop gets), and
    // native frames that the detector resizes itself.
    for size in [Some(d.input_size()), None] {
        let imgs = support::detect::frames(&idx, size);
        let refs: Vec<&Image> = imgs.values().collect();
        let (dets, _) = d.detect_batch(&refs).unwrap();
        let counted = fx.counted();
        support::detect::check_person_counts(
            &format!("original ({size:?})"),
            &counted,
            &dets,
            person,
            thr,
            fx.tolerance,
        );
    }
}

#[test]
fn box_checked_by_hand_is_where_the_man_is() {
    let fx = support::detect::persons_fixture().hand_box;
    let img = support::detect::frames(&[fx.frame], None)
        .remove(&fx.frame)
        .unwrap();
    let (w, h) = (img.width, img.height);
    let (dets, _) = detector().detect_batch(&[&img]).unwrap();
    let labels = detector().labels();
    let [hx1, hy1, hx2, hy2] = fx.bbox;
    let (hcx, hcy) = ((hx1 + hx2) / 2.0, (hy1 + hy2) / 2.0);
    let best = dets[0]
        .iter()
        .filter(|d| labels[d.class_id as usize] == fx.class)
        .map(|d| (d, d.bbox.to_pixels(w, h)))
        .min_by(|a, b| {
            let dist = |p: &[f32; 4]| {
                ((p[0] + p[2]) / 2.0 - hcx).powi(2) + ((p[1] + p[3]) / 2.0 - hcy).powi(2)
            };
            dist(&a.1).total_cmp(&dist(&b.1))
        })
        .expect("no person found");
    for (got, want) in best.1.iter().zip(fx.bbox) {
        assert!(
            (got - want).abs() <= fx.max_error_px,
            "box {:?} vs hand-measured {:?}",
            best.1,
            fx.bbox
        );
    }
    assert!(best.0.score > 0.7, "{:?}", best.0);
}

#[derive(Deserialize)]
struct Reference {
    score_threshold: f32,
    frames: Vec<RefFrame>,
}

#[derive(Deserialize)]
struct RefFrame {
    index: u64,
    detections: Vec<RefDet>,
}

#[derive(Deserialize)]
struct RefDet {
    class: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

/// The Python reference and the Rust detector (slow path: the same cv2 bilinear resize of the
/// native frame) see the same pixels (the fixture script decodes with the same GStreamer
/// pipeline as VideoReader), so they must find the same objects: every reference detection
/// clearly above the threshold is matched by class within 1 px and 0.01 score (the match is
/// exact to the reference's 4 decimals on the hosts tried; the slack covers rounding only), and
/// nothing clearly above it is extra. The reference is made here, on this host, by the setup's
/// venv: a committed one failed on another host, whose own transcode of the footage and whose
/// AVX2 kernels moved a score by 0.014.
#[test]
fn agrees_with_the_python_reference() {
    let root = support::root();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vtest-reference.json");
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg("tests/fixtures/detect/make_reference.py")
        .arg(&p)
        .current_dir(root)
        .output()
        .expect("the setup's venv (.venv/bin/python) runs");
    assert!(
        out.status.success(),
        "make_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Reference = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let d = Detector::from_manifest(
        &support::detect::nanodet_manifest(),
        &DetectOptions {
            score_threshold: Some(r.score_threshold),
            ..support::detect::options()
        },
    )
    .unwrap();
    let labels = d.labels();
    let idx: Vec<u64> = r.frames.iter().map(|f| f.index).collect();
    let imgs = support::detect::frames(&idx, None);
    let (mut matched, mut worst_score, mut worst_px) = (0, 0.0f32, 0.0f32);
    let margin = 0.03;
    for f in &r.frames {
        let img = &imgs[&f.index];
        let (dets, _) = d.detect_batch(&[img]).unwrap();
        let got: Vec<(&str, f32, [f32; 4])> = dets[0]
            .iter()
            .map(|x| {
                (
                    labels[x.class_id as usize].as_str(),
                    x.score,
                    x.bbox.to_pixels(img.width, img.height),
                )
            })
            .collect();
        let edge_err = |a: &[f32; 4], b: &[f32; 4]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        for want in f
            .detections
            .iter()
            .filter(|w| w.score > r.score_threshold + margin)
        {
            let best = got
                .iter()
                .filter(|g| g.0 == want.class)
                .min_by(|a, b| edge_err(&a.2, &want.bbox).total_cmp(&edge_err(&b.2, &want.bbox)));
            let Some((_, s, b)) = best else {
                panic!(
                    "frame {}: reference {} {} {:?} not found in {got:?}",
                    f.index, want.class, want.score, want.bbox
                );
            };
            let (ds, dp) = ((s - want.score).abs(), edge_err(b, &want.bbox));
            assert!(
                ds <= 0.01 && dp <= 1.0,
                "frame {}: {} {} {:?} vs reference {} {:?}",
                f.index,
                want.class,
                s,
                b,
                want.score,
                want.bbox
            );
            worst_score = worst_score.max(ds);
            worst_px = worst_px.max(dp);
            matched += 1;
        }
        for (c, s, b) in got.iter().filter(|g| g.1 > r.score_threshold + margin) {
            let known = f
                .detections
                .iter()
                .any(|w| w.class == *c && edge_err(&w.bbox, b) <= 1.0);
            assert!(known, "frame {}: extra {c} {s} {b:?}", f.index);
        }
    }
    println!("{matched} reference detections matched; worst score diff {worst_score:.4}, worst edge {worst_px:.2} px");
    assert!(
        matched >= 40,
        "only {matched} reference detections compared"
    );
}

#[test]
fn interface_facts() {
    let d = detector();
    assert_eq!(d.input_size(), (416, 416));
    assert_eq!(d.labels().len(), 80);
    assert_eq!(&d.labels()[0], "person");
    assert_eq!(d.input_name(), "input_1:0");
    // the shipped file has a fixed batch of 1
    assert_eq!(d.batch_size(), 1);
    let (none, t) = d.detect_batch(&[]).unwrap();
    assert!(none.is_empty() && t.total().is_zero());
}

#[test]
fn a_black_frame_has_nothing() {
    let img = Image::new(416, 416);
    let (dets, t) = detector().detect_batch(&[&img]).unwrap();
    assert!(dets[0].is_empty(), "{:?}", dets[0]);
    assert!(!t.inference.is_zero());
}

#[test]
fn bad_frame_fails_alone() {
    let good = support::detect::frames(&[200], Some((416, 416)))
        .remove(&200)
        .unwrap();
    let bad = Image {
        width: 416,
        height: 416,
        format: PixelFormat::Bgr,
        data: vec![0; 1000],
    };
    let e = detector().detect_batch(&[&good, &bad]).unwrap_err();
    assert!(matches!(e, DetectError::BadFrame { index: 1, .. }), "{e}");
    assert!(e.to_string().contains("1000 bytes"), "{e}");
    let (each, _) = detector().detect_each(&[&good, &bad, &good]);
    assert!(matches!(
        each[1],
        Err(DetectError::BadFrame { index: 1, .. })
    ));
    let a = each[0].as_ref().unwrap();
    assert_eq!(a, each[2].as_ref().unwrap());
    assert!(persons(a, 0.5) >= 6);
}

#[test]
fn i420_frames_are_converted() {
    // the same picture as BGR and as I420 finds the same persons
    let opts = ReadOptions {
        size: Some((416, 416)),
        format: PixelFormat::I420,
        fps: None,
    };
    let i420 = VideoReader::open(&support::detect::vtest(), &opts)
        .unwrap()
        .map(|f| f.unwrap())
        .find(|f| f.index == 200)
        .unwrap()
        .image;
    let bgr = support::detect::frames(&[200], Some((416, 416)))
        .remove(&200)
        .unwrap();
    let (d, _) = detector().detect_batch(&[&i420, &bgr]).unwrap();
    assert!(persons(&d[0], 0.5).abs_diff(persons(&d[1], 0.5)) <= 1);
    assert!(persons(&d[0], 0.5) >= 6);
}

#[test]
fn concurrent_callers_share_the_pool() {
    let imgs = support::detect::frames(&[0, 100, 200, 300], Some((416, 416)));
    let refs: Vec<&Image> = imgs.values().collect();
    let (alone, _) = detector().detect_batch(&refs).unwrap();
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| detector().detect_batch(&refs).unwrap().0))
            .collect();
        for h in hs {
            assert_eq!(h.join().unwrap(), alone);
        }
    });
}

fn write_manifest(dir: &Path, onnx: &str, labels: &str, decoder: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(support::detect::nanodet_manifest())
        .unwrap()
        .replace("onnx = \"nanodet-m-416.onnx\"", &format!("onnx = {onnx:?}"))
        .replace("labels = \"coco80.txt\"", &format!("labels = {labels:?}"))
        .replace("decoder = \"nanodet\"", &format!("decoder = {decoder:?}"));
    // the [nanodet] table belongs to the nanodet decoder only
    let text = if decoder == "nanodet" {
        text
    } else {
        let start = text.find("[nanodet]").unwrap();
        let end = text.find("[postprocess]").unwrap();
        format!("{}{}", &text[..start], &text[end..])
    };
    let p = dir.join("manifest.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn load_err(manifest: &Path) -> String {
    match Detector::from_manifest(manifest, &support::detect::options()) {
        Ok(_) => panic!("{} loaded", manifest.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_model_setups_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    let models = support::root().join("models/nanodet-m-416");
    let onnx = models.join("nanodet-m-416.onnx");
    let coco = models.join("coco80.txt");
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // missing model file: names the file and the manifest line that names it
    let m = write_manifest(d.path(), "gone.onnx", &s(&coco), "nanodet");
    let e = load_err(&m);
    assert!(
        e.contains("gone.onnx") && e.contains("does not exist") && e.contains("manifest.toml:4"),
        "{e}"
    );

    // corrupt model file
    let bad = d.path().join("corrupt.onnx");
    std::fs::write(&bad, b"\x08\x07this is not a protobuf model").unwrap();
    let m = write_manifest(d.path(), "corrupt.onnx", &s(&coco), "nanodet");
    let e = load_err(&m);
    assert!(
        e.starts_with("cannot load model") && e.contains("corrupt.onnx"),
        "{e}"
    );

    // truncated model file (a download cut short)
    let bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(d.path().join("cut.onnx"), &bytes[..bytes.len() / 2]).unwrap();
    let m = write_manifest(d.path(), "cut.onnx", &s(&coco), "nanodet");
    let e = load_err(&m);
    assert!(e.contains("cut.onnx"), "{e}");

    // outputs do not match the manifest: 79 class names for an 80-class model
    let names = std::fs::read_to_string(&coco).unwrap();
    let short: Vec<&str> = names.lines().take(79).collect();
    std::fs::write(d.path().join("coco79.txt"), short.join("\n")).unwrap();
    let m = write_manifest(d.path(), &s(&onnx), "coco79.txt", "nanodet");
    let e = load_err(&m);
    assert!(
        e.contains("does not match its manifest")
            && e.contains("nanodet-m-416.onnx")
            && e.contains("manifest.toml"),
        "{e}"
    );
    assert!(
        e.contains("80 values per cell") && e.contains("coco79.txt"),
        "{e}"
    );

    // a NanoDet model declared as YOLO
    let m = write_manifest(d.path(), &s(&onnx), &s(&coco), "yolov8");
    let e = load_err(&m);
    assert!(
        e.contains("decoder yolov8 needs an output [1, 4+80, N]")
            && e.contains("Identity:0 [1, 2704, 80]"),
        "{e}"
    );

    // unknown decoder: the manifest's line
    let m = write_manifest(d.path(), &s(&onnx), &s(&coco), "ssd");
    let e = load_err(&m);
    assert!(
        e.contains("manifest.toml:6")
            && e.contains("unknown variant `ssd`")
            && e.contains("expected `nanodet` or `yolov8`"),
        "{e}"
    );

    // a manifest that is not there
    let e = load_err(&d.path().join("nope/manifest.toml"));
    assert!(
        e.contains("cannot read model manifest") && e.contains("nope/manifest.toml"),
        "{e}"
    );

    // the input size does not match the model's fixed input
    let text = std::fs::read_to_string(support::detect::nanodet_manifest())
        .unwrap()
        .replace(
            "onnx = \"nanodet-m-416.onnx\"",
            &format!("onnx = {:?}", s(&onnx)),
        )
        .replace(
            "labels = \"coco80.txt\"",
            &format!("labels = {:?}", s(&coco)),
        )
        .replace("width = 416", "width = 320");
    let m = d.path().join("small.toml");
    std::fs::write(&m, text).unwrap();
    let e = load_err(&m);
    assert!(e.contains("width 416, but 320 is wanted"), "{e}");
}

#[test]
fn input_size_override_needs_a_dynamic_model() {
    let e = Detector::from_manifest(
        &support::detect::nanodet_manifest(),
        &DetectOptions {
            input_size: Some((320, 320)),
            ..support::detect::options()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("dynamic = true"), "{e}");
}
