//! Model manifests: the TOML file beside each ONNX model that says how to feed it and how to read
//! its outputs, so a model can be swapped by config (docs/detector.md describes the format).
//!
//! Loading is the same two passes as the main config: serde (`deny_unknown_fields`) for shape,
//! then [`ManifestFile::validate`] for meaning. Every problem names file, line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::DetectError;
use crate::config::locate::{line_col, FieldPath, Locator};
use crate::config::Problem;
use crate::model::Labels;

/// The file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Human name of the model (defaults to the manifest's folder name).
    #[serde(default)]
    pub name: Option<String>,
    /// The ONNX file, relative to the manifest.
    pub onnx: PathBuf,
    /// The same network encoded for CPUs with AMX-INT8, loaded instead of `onnx` there (unless
    /// `detect.amx = false`). Same inputs and outputs; only the speed differs.
    #[serde(default)]
    pub onnx_amx: Option<PathBuf>,
    /// Class names, one per line in model index order, relative to the manifest.
    pub labels: PathBuf,
    /// Which output decoder to use.
    pub decoder: DecoderFamily,
    pub input: InputSpec,
    #[serde(default)]
    pub postprocess: PostprocessSpec,
    /// Parameters of the `nanodet` decoder (defaults: NanoDet-m/g, see MODEL.md).
    #[serde(default)]
    pub nanodet: Option<NanodetSpec>,
}

/// Output decoder families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderFamily {
    /// NanoDet GFL head: per stride, class scores `[1, N, C]` and box distributions
    /// `[1, N, 4*(reg_max+1)]`, or both concatenated per stride / over all strides.
    Nanodet,
    /// Ultralytics YOLOv8 / YOLO11 ONNX export: one output `[1, 4+C, N]` (cx, cy, w, h in input
    /// pixels, then sigmoid class scores; no objectness).
    Yolov8,
}

impl DecoderFamily {
    pub fn as_str(&self) -> &'static str {
        match self {
            DecoderFamily::Nanodet => "nanodet",
            DecoderFamily::Yolov8 => "yolov8",
        }
    }
}

/// Memory layout of the input tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
    /// 2x2 pixel blocks, NHWC `[N, H/2, W/2, 12]`, in ONNX SpaceToDepth's order: the pixel at
    /// (r, c) of a block in channels `(r*2 + c)*3 ..+3`. What a stem conv rewritten as
    /// SpaceToDepth + 2x2 conv reads (models/make_variants.py).
    Blocks2,
}

impl Layout {
    /// Tensor shape for a batch of `b` at `size` (width, height).
    pub fn shape(self, b: usize, (w, h): (u32, u32)) -> [usize; 4] {
        let (w, h) = (w as usize, h as usize);
        match self {
            Layout::Nchw => [b, 3, h, w],
            Layout::Nhwc => [b, h, w, 3],
            Layout::Blocks2 => [b, h / 2, w / 2, 12],
        }
    }
}

/// A uint8 input: each normalised value `v` is fed as `round(v / scale) + zero_point` (round half
/// to even, clamped to 0..=255), as ONNX QuantizeLinear would.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantized {
    pub scale: f32,
    pub zero_point: u8,
}

/// Channel order the model was trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Bgr,
    Rgb,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name; the model's only input if absent.
    #[serde(default)]
    pub name: Option<String>,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub layout: Layout,
    /// Channel order of the tensor; `mean` and `std` are given in this order.
    pub color: ColorOrder,
    /// Per channel, in `color` order, on 0..255 pixel values: `(pixel - mean) / std`.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The ONNX file accepts other sizes than `width` x `height` (symbolic H/W dims).
    #[serde(default)]
    pub dynamic: bool,
    /// The input tensor is uint8, quantised this way; float32 without it.
    #[serde(default)]
    pub quantized: Option<Quantized>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostprocessSpec {
    /// Score threshold of classes not listed in `class_thresholds`.
    pub score_threshold: f32,
    /// Per class name; wins over `score_threshold`.
    pub class_thresholds: BTreeMap<String, f32>,
    /// Class-aware NMS: a box is dropped when its IoU with a better box of its class is above.
    pub nms_iou: f32,
    /// Candidates kept for NMS (best first); bounds the NMS cost on busy frames.
    pub pre_nms_top_k: usize,
    /// Detections kept per frame after NMS (best first).
    pub max_detections: usize,
}

impl Default for PostprocessSpec {
    fn default() -> Self {
        Self {
            score_threshold: 0.5,
            class_thresholds: BTreeMap::new(),
            nms_iou: 0.6,
            pre_nms_top_k: 1000,
            max_detections: 100,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NanodetSpec {
    /// Feature strides of the head, smallest first.
    pub strides: Vec<u32>,
    /// Distribution bins per box side minus one (`reg_max + 1` bins).
    pub reg_max: u32,
    /// Cell centre offset in cells: 0.5 for NanoDet v0.x (MODEL.md), 0 for NanoDet-Plus.
    pub center_offset: f32,
}

impl Default for NanodetSpec {
    fn default() -> Self {
        Self {
            strides: vec![8, 16, 32],
            reg_max: 10,
            center_offset: 0.5,
        }
    }
}

/// How to decode the outputs, resolved from the manifest.
#[derive(Clone, Debug, PartialEq)]
pub enum DecoderSpec {
    Nanodet {
        strides: Vec<u32>,
        reg_max: u32,
        center_offset: f32,
    },
    Yolov8,
}

impl DecoderSpec {
    pub fn family(&self) -> DecoderFamily {
        match self {
            DecoderSpec::Nanodet { .. } => DecoderFamily::Nanodet,
            DecoderSpec::Yolov8 => DecoderFamily::Yolov8,
        }
    }
}

/// A validated manifest with its paths resolved and its labels read.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    pub name: String,
    /// The ONNX file the detector loads: the manifest's `onnx`, or `onnx_amx` once
    /// [`Manifest::use_amx_file`] chose it.
    pub onnx: PathBuf,
    /// The manifest's `onnx_amx`, resolved.
    pub onnx_amx: Option<PathBuf>,
    pub labels_path: PathBuf,
    pub labels: Labels,
    pub decoder: DecoderSpec,
    pub input: InputSpec,
    /// Score threshold per class id.
    pub thresholds: Arc<[f32]>,
    pub nms_iou: f32,
    pub pre_nms_top_k: usize,
    pub max_detections: usize,
    /// 1-based line of the `onnx` field, for messages about the model file.
    pub onnx_line: usize,
}

impl Manifest {
    /// Reads, parses and validates a manifest; reads its labels file.
    pub fn load(path: &Path) -> Result<Manifest, DetectError> {
        let text = std::fs::read_to_string(path).map_err(|error| DetectError::ManifestRead {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_str_at(&text, path)
    }

    /// Parses and validates `text` as if read from `path` (relative paths resolve against
    /// `path`'s folder; the labels file is read).
    pub fn from_str_at(text: &str, path: &Path) -> Result<Manifest, DetectError> {
        let locator = Locator::new(text);
        let problem = |field: &FieldPath, message: String| {
            let (line, column) = locator
                .span_of(field)
                .map(|s| line_col(text, s.start))
                .unwrap_or((1, 1));
            Problem {
                file: path.to_path_buf(),
                line,
                column,
                field: field.to_string(),
                message,
            }
        };
        let file: ManifestFile = toml::from_str(text).map_err(|e| DetectError::Manifest {
            problems: vec![Problem::from_toml(text, path, &locator, &e)],
        })?;

        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let root = FieldPath::root();
        let labels_path = resolve(&file.labels);
        let labels = match read_labels(&labels_path) {
            Ok(l) => l,
            Err(m) => {
                return Err(DetectError::Manifest {
                    problems: vec![problem(&root.key("labels"), m)],
                })
            }
        };

        let mut issues = file.validate();
        let mut thresholds = vec![file.postprocess.score_threshold; labels.len()];
        for (name, &thr) in &file.postprocess.class_thresholds {
            let field = root.key("postprocess").key("class_thresholds").key(name);
            match labels.iter().position(|l| l == name) {
                Some(i) => thresholds[i] = thr,
                None => issues.push((
                    field.clone(),
                    format!(
                        "no class named {name:?} in {} ({} classes)",
                        labels_path.display(),
                        labels.len()
                    ),
                )),
            }
            if !(0.0..=1.0).contains(&thr) {
                issues.push((field, format!("must be in [0, 1], got {thr}")));
            }
        }
        if !issues.is_empty() {
            return Err(DetectError::Manifest {
                problems: issues.iter().map(|(f, m)| problem(f, m.clone())).collect(),
            });
        }

        let decoder = match file.decoder {
            DecoderFamily::Nanodet => {
                let n = file.nanodet.clone().unwrap_or_default();
                DecoderSpec::Nanodet {
                    strides: n.strides,
                    reg_max: n.reg_max,
                    center_offset: n.center_offset,
                }
            }
            DecoderFamily::Yolov8 => DecoderSpec::Yolov8,
        };
        let name = file.name.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let onnx_line = locator
            .span_of(&root.key("onnx"))
            .map(|s| line_col(text, s.start).0)
            .unwrap_or(1);
        Ok(Manifest {
            path: path.to_path_buf(),
            name,
            onnx: resolve(&file.onnx),
            onnx_amx: file.onnx_amx.as_deref().map(resolve),
            labels_path,
            labels,
            decoder,
            input: file.input,
            thresholds: thresholds.into(),
            nms_iou: file.postprocess.nms_iou,
            pre_nms_top_k: file.postprocess.pre_nms_top_k,
            max_detections: file.postprocess.max_detections,
            onnx_line,
        })
    }

    /// Switches to the `onnx_amx` file, if the manifest names one; true if it did.
    pub fn use_amx_file(&mut self) -> bool {
        match &self.onnx_amx {
            Some(p) => {
                self.onnx = p.clone();
                true
            }
            None => false,
        }
    }

    /// True when the detector runs the `onnx_amx` file.
    pub fn runs_amx_file(&self) -> bool {
        self.onnx_amx.as_ref() == Some(&self.onnx)
    }

    /// `file:line` of the `onnx` field, for messages about the model file.
    pub fn onnx_origin(&self) -> String {
        format!("{}:{}", self.path.display(), self.onnx_line)
    }
}

impl ManifestFile {
    /// Checks meaning; returns every problem with the field it is about.
    pub fn validate(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let root = FieldPath::root();
        let inp = root.key("input");
        for (k, v) in [("width", self.input.width), ("height", self.input.height)] {
            if !(8..=4096).contains(&v) {
                out.push((inp.key(k), format!("must be in 8..=4096, got {v}")));
            }
        }
        for (i, (&m, &s)) in self.input.mean.iter().zip(&self.input.std).enumerate() {
            if !m.is_finite() {
                out.push((inp.key("mean").index(i), "must be a finite number".into()));
            }
            if !s.is_finite() || s.abs() < 1e-6 {
                out.push((
                    inp.key("std").index(i),
                    format!("must be a finite non-zero number, got {s}"),
                ));
            }
        }
        if let Some(q) = &self.input.quantized {
            if !(q.scale.is_finite() && q.scale > 0.0) {
                out.push((
                    inp.key("quantized").key("scale"),
                    format!("must be a finite number above 0, got {}", q.scale),
                ));
            }
        }
        if self.input.layout == Layout::Blocks2 {
            for (k, v) in [("width", self.input.width), ("height", self.input.height)] {
                if v % 2 != 0 {
                    out.push((
                        inp.key(k),
                        format!("must be even for layout \"blocks2\" (2x2 pixel blocks), got {v}"),
                    ));
                }
            }
        }
        if let Some(n) = &self.input.name {
            if n.is_empty() {
                out.push((inp.key("name"), "must not be empty".into()));
            }
        }
        let pp = root.key("postprocess");
        let p = &self.postprocess;
        if !(0.0..=1.0).contains(&p.score_threshold) {
            out.push((
                pp.key("score_threshold"),
                format!("must be in [0, 1], got {}", p.score_threshold),
            ));
        }
        if !(p.nms_iou > 0.0 && p.nms_iou <= 1.0) {
            out.push((
                pp.key("nms_iou"),
                format!("must be in (0, 1], got {}", p.nms_iou),
            ));
        }
        if p.pre_nms_top_k == 0 || p.pre_nms_top_k > 100_000 {
            out.push((pp.key("pre_nms_top_k"), "must be in 1..=100000".into()));
        }
        if p.max_detections == 0 || p.max_detections > 10_000 {
            out.push((pp.key("max_detections"), "must be in 1..=10000".into()));
        }
        match (self.decoder, &self.nanodet) {
            (DecoderFamily::Nanodet, n) => {
                let n = n.clone().unwrap_or_default();
                let nd = root.key("nanodet");
                if n.strides.is_empty() || n.strides.len() > 8 {
                    out.push((nd.key("strides"), "must list 1 to 8 strides".into()));
                }
                for (i, &s) in n.strides.iter().enumerate() {
                    if s == 0 || s > 256 {
                        out.push((nd.key("strides").index(i), "must be in 1..=256".into()));
                    }
                }
                // The grid of each stride must be whole; reported at the input size, which is
                // what a user edits (the strides usually come from the decoder's defaults).
                for (k, v) in [("width", self.input.width), ("height", self.input.height)] {
                    if let Some(s) = n.strides.iter().find(|&&s| s > 0 && v % s != 0) {
                        out.push((
                            inp.key(k),
                            format!("must be a multiple of every nanodet stride; {v} is not a multiple of {s}"),
                        ));
                    }
                }
                if n.strides.windows(2).any(|w| w[0] >= w[1]) {
                    out.push((nd.key("strides"), "must be increasing".into()));
                }
                if n.reg_max == 0 || n.reg_max > 64 {
                    out.push((nd.key("reg_max"), "must be in 1..=64".into()));
                }
                if !(0.0..=1.0).contains(&n.center_offset) {
                    out.push((nd.key("center_offset"), "must be in [0, 1]".into()));
                }
            }
            (DecoderFamily::Yolov8, Some(_)) => out.push((
                root.key("nanodet"),
                "a [nanodet] table needs decoder = \"nanodet\"".into(),
            )),
            (DecoderFamily::Yolov8, None) => {}
        }
        out
    }
}

/// Class names, one per line; surrounding blanks trimmed, empty lines at the end ignored.
fn read_labels(path: &Path) -> Result<Labels, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read labels file {}: {e}", path.display()))?;
    let mut names: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    while names.last().is_some_and(|l| l.is_empty()) {
        names.pop();
    }
    if names.is_empty() {
        return Err(format!("labels file {} has no class names", path.display()));
    }
    if let Some(i) = names.iter().position(|n| n.is_empty()) {
        return Err(format!(
            "labels file {} has an empty name on line {}",
            path.display(),
            i + 1
        ));
    }
    if names.len() > u16::MAX as usize {
        return Err(format!(
            "labels file {} has too many classes",
            path.display()
        ));
    }
    Ok(names.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "test"
onnx = "m.onnx"
labels = "labels.txt"
decoder = "nanodet"

[input]
width = 416
height = 416
color = "bgr"
mean = [103.53, 116.28, 123.675]
std = [57.375, 57.12, 58.395]

[postprocess]
score_threshold = 0.5
nms_iou = 0.6
[postprocess.class_thresholds]
car = 0.4
"#;

    fn dir_with_labels() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("labels.txt"),
            "person\ncar\ntraffic light\n\n",
        )
        .unwrap();
        d
    }

    fn load(text: &str) -> Result<Manifest, DetectError> {
        let d = dir_with_labels();
        Manifest::from_str_at(text, &d.path().join("manifest.toml"))
    }

    #[test]
    fn good_manifest_resolves() {
        let d = dir_with_labels();
        let m = Manifest::from_str_at(GOOD, &d.path().join("manifest.toml")).unwrap();
        assert_eq!(m.name, "test");
        assert_eq!(m.onnx, d.path().join("m.onnx"));
        assert_eq!(&m.labels[..], ["person", "car", "traffic light"]);
        assert_eq!(&m.thresholds[..], [0.5, 0.4, 0.5]);
        assert_eq!(m.onnx_line, 2);
        assert_eq!(
            m.decoder,
            DecoderSpec::Nanodet {
                strides: vec![8, 16, 32],
                reg_max: 10,
                center_offset: 0.5
            }
        );
    }

    /// (edit of GOOD, expected line, expected field, part of the message)
    #[test]
    fn problems_name_line_and_field() {
        let cases: &[(&str, &str, usize, &str, &str)] = &[
            (
                "decoder = \"nanodet\"",
                "decoder = \"ssd\"",
                4,
                "decoder",
                "unknown variant `ssd`",
            ),
            (
                "width = 416",
                "width = 400",
                7,
                "input.width",
                "multiple of 32",
            ),
            ("width = 416", "width = 4", 7, "input.width", "8..=4096"),
            (
                "std = [57.375, 57.12, 58.395]",
                "std = [57.375, 0.0, 58.395]",
                11,
                "input.std[1]",
                "non-zero",
            ),
            (
                "nms_iou = 0.6",
                "nms_iou = 1.5",
                15,
                "postprocess.nms_iou",
                "(0, 1]",
            ),
            (
                "car = 0.4",
                "bus = 0.4",
                17,
                "postprocess.class_thresholds.bus",
                "no class named \"bus\"",
            ),
            (
                "car = 0.4",
                "car = 7.0",
                17,
                "postprocess.class_thresholds.car",
                "[0, 1]",
            ),
            (
                "color = \"bgr\"",
                "color = \"bgr\"\ncolour = \"rgb\"",
                10,
                "input.colour",
                "unknown field",
            ),
            (
                "color = \"bgr\"",
                "color = \"yuv\"",
                9,
                "input.color",
                "unknown variant",
            ),
            (
                "labels = \"labels.txt\"",
                "labels = \"nope.txt\"",
                3,
                "labels",
                "cannot read labels file",
            ),
            (
                "width = 416",
                "width = 416\nlayout = \"blocks3\"",
                8,
                "input.layout",
                "unknown variant `blocks3`",
            ),
            (
                "std = [57.375, 57.12, 58.395]",
                "std = [57.375, 57.12, 58.395]\n[input.quantized]\nscale = 0.0\nzero_point = 114",
                13,
                "input.quantized.scale",
                "above 0",
            ),
            (
                "std = [57.375, 57.12, 58.395]",
                "std = [57.375, 57.12, 58.395]\n[input.quantized]\nscale = 0.02\nzero_point = 300",
                14,
                "input.quantized.zero_point",
                "",
            ),
            (
                "decoder = \"nanodet\"",
                "decoder = \"yolov8\"\n[nanodet]\nreg_max = 7",
                5,
                "nanodet",
                "needs decoder",
            ),
        ];
        for (from, to, line, field, msg) in cases {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let err = load(&text).unwrap_err();
            let DetectError::Manifest { problems } = &err else {
                panic!("{to}: {err}");
            };
            let p = problems
                .iter()
                .find(|p| p.field == *field)
                .unwrap_or_else(|| panic!("{to}: no problem at {field}: {err}"));
            assert_eq!(p.line, *line, "{to}: {err}");
            assert!(p.message.contains(msg), "{to}: {err}");
            assert!(err.to_string().contains("manifest.toml:"), "{err}");
        }
    }

    #[test]
    fn amx_file_and_quantized_input() {
        let text = GOOD
            .replacen(
                "onnx = \"m.onnx\"",
                "onnx = \"m.onnx\"\nonnx_amx = \"m-amx.onnx\"",
                1,
            )
            .replacen(
                "std = [57.375, 57.12, 58.395]",
                "std = [57.375, 57.12, 58.395]\nlayout = \"blocks2\"\n[input.quantized]\nscale = 0.0186\nzero_point = 114",
                1,
            );
        let d = dir_with_labels();
        let mut m = Manifest::from_str_at(&text, &d.path().join("manifest.toml")).unwrap();
        assert_eq!(m.input.layout, Layout::Blocks2);
        assert_eq!(
            m.input.quantized,
            Some(Quantized {
                scale: 0.0186,
                zero_point: 114
            })
        );
        assert_eq!(m.input.layout.shape(2, (416, 320)), [2, 160, 208, 12]);
        assert!(!m.runs_amx_file());
        assert!(m.use_amx_file());
        assert_eq!(m.onnx, d.path().join("m-amx.onnx"));
        assert!(m.runs_amx_file());
        // without onnx_amx nothing changes
        let mut plain = load(GOOD).unwrap();
        assert!(!plain.use_amx_file());
        assert!(plain.onnx.ends_with("m.onnx"));
        // blocks of 2 need even sides
        let odd = text.replacen("width = 416", "width = 417", 1);
        let err = load(&odd).unwrap_err().to_string();
        assert!(err.contains("must be even for layout"), "{err}");
    }

    #[test]
    fn missing_required_field() {
        let err = load(&GOOD.replacen("onnx = \"m.onnx\"\n", "", 1)).unwrap_err();
        assert!(err.to_string().contains("missing field `onnx`"), "{err}");
        assert!(err.to_string().contains("manifest.toml:1"), "{err}");
    }

    #[test]
    fn labels_file_checks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.txt");
        std::fs::write(&p, "a\n\nb\n").unwrap();
        assert!(read_labels(&p).unwrap_err().contains("line 2"));
        std::fs::write(&p, "\n\n").unwrap();
        assert!(read_labels(&p).unwrap_err().contains("no class names"));
        std::fs::write(&p, " a \r\nb\n").unwrap();
        assert_eq!(&read_labels(&p).unwrap()[..], ["a", "b"]);
    }

    #[test]
    fn shipped_manifests_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut n = 0;
        for e in std::fs::read_dir(&root).unwrap() {
            let p = e.unwrap().path().join("manifest.toml");
            if p.is_file() {
                let m = Manifest::load(&p).unwrap();
                assert!(m.onnx.is_file(), "{}", m.onnx.display());
                if let Some(amx) = &m.onnx_amx {
                    assert!(amx.is_file(), "{}", amx.display());
                }
                n += 1;
            }
        }
        assert!(n >= 1);
    }
}
