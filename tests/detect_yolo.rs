//! The YOLOv8 decoder through the real ONNX Runtime, on tiny models built by the test
//! (tests/support/onnx.rs): known boxes and scores in, exact detections out.

mod support;

use std::path::{Path, PathBuf};

use simpang::detect::{DetectError, DetectOptions, Detector};
use simpang::model::{BBox, Detection, Image, PixelFormat};
use support::onnx::{self, Dim};

const CLASSES: [&str; 3] = ["car", "motorcycle", "garbage_bag"];
const ANCHORS: usize = 5;
const SIZE: u32 = 64;

/// Anchors (cx, cy, w, h in input pixels; best class; score on a black and a white picture):
/// 0: car 0.9 at (16,16) 8x8
/// 1: garbage_bag 0.3 on black, 0.8 on white, at (40,20) 20x10 (its score follows brightness)
/// 2: motorcycle 0.6 at (32,48) 16x16
/// 3: motorcycle 0.55 at (33,48) 16x16: overlaps 2 (IoU 0.88), removed by NMS
/// 4: car 0.45 at (56,56) 8x8: below the default 0.5, above the manifest's car threshold 0.4
fn tables() -> (Vec<f32>, Vec<f32>) {
    let boxes = [
        [16.0, 16.0, 8.0, 8.0],
        [40.0, 20.0, 20.0, 10.0],
        [32.0, 48.0, 16.0, 16.0],
        [33.0, 48.0, 16.0, 16.0],
        [56.0, 56.0, 8.0, 8.0],
    ];
    let scores = [
        [0.9, 0.01, 0.02],
        [0.05, 0.02, 0.3],
        [0.1, 0.6, 0.2],
        [0.1, 0.55, 0.2],
        [0.45, 0.1, 0.1],
    ];
    let rows = 4 + CLASSES.len();
    let mut base = vec![0.0; rows * ANCHORS];
    let mut gain = vec![0.0; rows * ANCHORS];
    for a in 0..ANCHORS {
        for r in 0..4 {
            base[r * ANCHORS + a] = boxes[a][r];
        }
        for c in 0..CLASSES.len() {
            base[(4 + c) * ANCHORS + a] = scores[a][c];
        }
    }
    gain[(4 + 2) * ANCHORS + 1] = 0.5;
    (base, gain)
}

fn transpose(v: &[f32]) -> Vec<f32> {
    let rows = 4 + CLASSES.len();
    (0..ANCHORS)
        .flat_map(|a| (0..rows).map(move |r| (r, a)))
        .map(|(r, a)| v[r * ANCHORS + a])
        .collect()
}

struct Model {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
}

fn make(transposed: bool, batch: Dim, hw: Dim, extra_input: &str) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let (mut base, mut gain) = tables();
    if transposed {
        base = transpose(&base);
        gain = transpose(&gain);
    }
    let bytes = onnx::yolo_like(
        CLASSES.len(),
        ANCHORS,
        transposed,
        &base,
        &gain,
        batch,
        hw.clone(),
        hw,
    );
    std::fs::write(dir.path().join("tiny.onnx"), bytes).unwrap();
    std::fs::write(dir.path().join("labels.txt"), CLASSES.join("\n")).unwrap();
    let manifest = dir.path().join("manifest.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"name = "tiny-yolo"
onnx = "tiny.onnx"
labels = "labels.txt"
decoder = "yolov8"

[input]
width = {SIZE}
height = {SIZE}
color = "rgb"
mean = [0.0, 0.0, 0.0]
std = [255.0, 255.0, 255.0]
{extra_input}

[postprocess]
score_threshold = 0.5
nms_iou = 0.5
[postprocess.class_thresholds]
car = 0.4
"#
        ),
    )
    .unwrap();
    Model {
        _dir: dir,
        manifest,
    }
}

fn load(m: &Model, opts: DetectOptions) -> Result<Detector, DetectError> {
    Detector::from_manifest(&m.manifest, &opts)
}

fn picture(grey: u8) -> Image {
    let mut img = Image::new(SIZE, SIZE);
    img.data.fill(grey);
    img
}

fn det(class_id: u16, score: f32, cx: f32, cy: f32, w: f32, h: f32) -> Detection {
    let s = SIZE as f32;
    Detection {
        bbox: BBox::new(
            (cx - w / 2.0) / s,
            (cy - h / 2.0) / s,
            (cx + w / 2.0) / s,
            (cy + h / 2.0) / s,
        ),
        score,
        class_id,
    }
}

fn expected(white: bool) -> Vec<Detection> {
    let mut v = vec![
        det(0, 0.9, 16.0, 16.0, 8.0, 8.0),
        det(1, 0.6, 32.0, 48.0, 16.0, 16.0),
        det(0, 0.45, 56.0, 56.0, 8.0, 8.0),
    ];
    if white {
        v.insert(1, det(2, 0.8, 40.0, 20.0, 20.0, 10.0));
    }
    v
}

fn assert_dets(got: &[Detection], want: &[Detection]) {
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.class_id, w.class_id, "{got:#?}");
        assert!((g.score - w.score).abs() < 1e-5, "{g:?} vs {w:?}");
        let (a, b) = (g.bbox, w.bbox);
        for (x, y) in [(a.x1, b.x1), (a.y1, b.y1), (a.x2, b.x2), (a.y2, b.y2)] {
            assert!((x - y).abs() < 1e-5, "{g:?} vs {w:?}");
        }
    }
}

#[test]
fn decodes_known_boxes_and_classes() {
    for transposed in [false, true] {
        let m = make(transposed, Dim::Fixed(1), Dim::Fixed(SIZE as i64), "");
        let d = load(&m, support::detect::options()).unwrap();
        assert_eq!(d.input_size(), (SIZE, SIZE));
        assert_eq!(&d.labels()[..], CLASSES);
        let (black, white) = (picture(0), picture(255));
        let (out, _) = d.detect_batch(&[&black, &white]).unwrap();
        assert_dets(&out[0], &expected(false));
        assert_dets(&out[1], &expected(true));
        // a mid-grey picture: 0.3 + 0.5 * 128/255 = 0.551 → above 0.5
        let (out, _) = d.detect_batch(&[&picture(128)]).unwrap();
        let bag = out[0].iter().find(|x| x.class_id == 2).unwrap();
        assert!(
            (bag.score - (0.3 + 0.5 * 128.0 / 255.0)).abs() < 1e-4,
            "{bag:?}"
        );
    }
}

#[test]
fn dynamic_batch_runs_several_frames_per_call() {
    let m = make(false, Dim::Sym("batch"), Dim::Fixed(SIZE as i64), "");
    let d = load(
        &m,
        DetectOptions {
            max_batch: 4,
            ..support::detect::options()
        },
    )
    .unwrap();
    assert_eq!(d.batch_size(), 4);
    let pics: Vec<Image> = [0u8, 255, 0, 255, 255, 0]
        .iter()
        .map(|&g| picture(g))
        .collect();
    let refs: Vec<&Image> = pics.iter().collect();
    let (out, _) = d.detect_batch(&refs).unwrap();
    for (o, g) in out.iter().zip([false, true, false, true, true, false]) {
        assert_dets(o, &expected(g));
    }
    // a bad frame in the middle of a batch fails alone, the others keep their slots
    let bad = Image {
        width: SIZE,
        height: SIZE,
        format: PixelFormat::Bgr,
        data: vec![0; 3],
    };
    let (each, _) = d.detect_each(&[refs[1], &bad, refs[0]]);
    assert_dets(each[0].as_ref().unwrap(), &expected(true));
    assert!(matches!(
        each[1],
        Err(DetectError::BadFrame { index: 1, .. })
    ));
    assert_dets(each[2].as_ref().unwrap(), &expected(false));
}

#[test]
fn other_sizes_and_formats_take_the_slow_path() {
    let m = make(false, Dim::Fixed(1), Dim::Fixed(SIZE as i64), "");
    let d = load(&m, support::detect::options()).unwrap();
    let mut big = Image::new(200, 120);
    big.data.fill(255);
    let mut yuv = Image::with_format(64, 64, PixelFormat::I420);
    yuv.data[..64 * 64].fill(235); // white in video range
    let (out, _) = d.detect_batch(&[&big, &yuv]).unwrap();
    assert_dets(&out[0], &expected(true));
    assert_eq!(out[1].len(), 4, "{:?}", out[1]);
}

#[test]
fn input_size_override_on_a_dynamic_model() {
    let m = make(false, Dim::Fixed(1), Dim::Sym("side"), "dynamic = true");
    let d = load(
        &m,
        DetectOptions {
            input_size: Some((128, 128)),
            ..support::detect::options()
        },
    )
    .unwrap();
    assert_eq!(d.input_size(), (128, 128));
    // boxes are in input pixels: at 128 the same numbers are half as large, normalised
    let (out, _) = d.detect_batch(&[&picture(0)]).unwrap();
    let car = out[0][0];
    assert_eq!(car.class_id, 0);
    assert!((car.bbox.x1 - 12.0 / 128.0).abs() < 1e-5, "{car:?}");
    // without `dynamic = true` the override is refused, naming the manifest
    let m = make(false, Dim::Fixed(1), Dim::Sym("side"), "");
    let e = load(
        &m,
        DetectOptions {
            input_size: Some((128, 128)),
            ..support::detect::options()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("dynamic = true") && e.contains("manifest.toml"),
        "{e}"
    );
}

#[test]
fn class_count_mismatch_is_explained() {
    let m = make(false, Dim::Fixed(1), Dim::Fixed(SIZE as i64), "");
    std::fs::write(
        m.manifest.parent().unwrap().join("labels.txt"),
        "car\nmotorcycle\n",
    )
    .unwrap();
    let e = load(&m, support::detect::options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("tiny.onnx does not match its manifest")
            && e.contains("[1, 4+2, N]")
            && e.contains("output0 [1, 7, 5]"),
        "{e}"
    );
}

#[test]
fn fixed_input_size_mismatch_is_explained() {
    let m = make(false, Dim::Fixed(1), Dim::Fixed(32), "");
    let e = load(&m, support::detect::options())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("width 32, but 64 is wanted")
            && e.contains(&*Path::new("tiny.onnx").to_string_lossy()),
        "{e}"
    );
}

#[test]
fn debug_delay_is_added_to_every_inference() {
    let m = make(false, Dim::Fixed(1), Dim::Fixed(SIZE as i64), "");
    let d = load(
        &m,
        DetectOptions {
            debug_delay: std::time::Duration::from_millis(40),
            ..support::detect::options()
        },
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let (_, t) = d.detect_batch(&[&picture(0), &picture(0)]).unwrap();
    assert!(t.inference >= std::time::Duration::from_millis(80), "{t:?}");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(80));
}
