//! ONNX Runtime: the process-wide environment, session construction, and the binding of a
//! model's outputs to its decoder (found by shape on a warm-up run, checked on every run).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::{TensorElementType, TensorRef, ValueType};

use super::decode::{self, DecodeError, DecodeParams, NanodetLevel, Rows, YoloScratch};
use super::manifest::{DecoderSpec, Layout, Manifest};
use super::preprocess::InputBuf;
use super::{DetectError, DetectOptions};
use crate::config::OptimizationLevel;
use crate::model::Detection;

/// ONNX Runtime allows one environment per process, and `ort` loads one library per process:
/// both are created on first use and kept for the life of the process.
static ENVIRONMENT: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// The library to load: `ORT_DYLIB_PATH` wins over the configured path.
pub fn library_path(configured: Option<&Path>) -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => configured
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("libonnxruntime.so")),
    }
}

/// The process's ONNX Runtime environment, loading `lib` on first use.
pub fn environment(lib: &Path) -> Result<Environment, DetectError> {
    let mut slot = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((env, loaded)) = slot.as_ref() {
        if loaded != lib {
            tracing::warn!(
                loaded = %loaded.display(),
                requested = %lib.display(),
                "ONNX Runtime is already loaded in this process; keeping the loaded library"
            );
        }
        return Ok(env.clone());
    }
    let err = |message: String| DetectError::OrtLibrary {
        path: lib.to_path_buf(),
        message,
    };
    // A bare file name is left to the dynamic loader's search path; a path must exist (the
    // loader's own message for a missing file is less clear than ours).
    if lib.components().count() > 1 && !lib.is_file() {
        return Err(err("file does not exist".into()));
    }
    // `ort` resolves a relative path against the executable's folder first; make it absolute
    // against the working directory so the path we report is the path we load.
    let abs = if lib.is_relative() && lib.components().count() > 1 {
        std::env::current_dir()
            .map(|d| d.join(lib))
            .unwrap_or_else(|_| lib.to_path_buf())
    } else {
        lib.to_path_buf()
    };
    let env = ort::init_from(&abs)
        .map_err(|e| err(e.to_string()))?
        .with_name("simpang")
        .with_telemetry(false)
        .build()
        .map_err(|e| err(e.to_string()))?;
    tracing::debug!(library = %abs.display(), "ONNX Runtime loaded");
    *slot = Some((env.clone(), lib.to_path_buf()));
    Ok(env)
}

fn ort_level(l: OptimizationLevel) -> GraphOptimizationLevel {
    match l {
        OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
        OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
        OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
        OptimizationLevel::Layout => GraphOptimizationLevel::Level3,
        OptimizationLevel::All => GraphOptimizationLevel::All,
    }
}

/// Builds one session of `m` with `opts`.
pub fn build_session(
    env: &Environment,
    m: &Manifest,
    opts: &DetectOptions,
) -> Result<Session, DetectError> {
    let load = |message: String| DetectError::ModelLoad {
        path: m.onnx.clone(),
        message,
    };
    let ort_err =
        |e: ort::Error<ort::session::builder::SessionBuilder>| DetectError::Ort(e.to_string());
    let mut b = Session::builder(env)
        .map_err(|e| DetectError::Ort(e.to_string()))?
        .with_optimization_level(ort_level(opts.optimization))
        .map_err(ort_err)?
        .with_intra_threads(opts.threads)
        .map_err(ort_err)?
        .with_inter_threads(1)
        .map_err(ort_err)?
        // With one intra-op thread there are no pool threads to spin; with more, spinning burns
        // the cores the decoders and the other sessions need, so it is off unless asked for.
        .with_intra_op_spinning(opts.spinning)
        .map_err(ort_err)?
        .with_inter_op_spinning(false)
        .map_err(ort_err)?;
    b.commit_from_file(&m.onnx)
        .map_err(|e| load(e.message().to_string()))
}

/// What the single image input looks like.
#[derive(Clone, Debug)]
pub struct InputInfo {
    pub name: String,
    /// The model takes any batch size (symbolic batch dimension).
    pub dynamic_batch: bool,
}

/// Checks the session's input against the manifest and the chosen input size.
pub fn check_input(
    session: &Session,
    m: &Manifest,
    size: (u32, u32),
) -> Result<InputInfo, DetectError> {
    let mismatch = |message: String| DetectError::Mismatch {
        model: m.onnx.clone(),
        manifest: m.path.clone(),
        message,
    };
    let inputs = session.inputs();
    let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
    if inputs.len() != 1 {
        return Err(mismatch(format!(
            "the model has {} inputs ({}); simpang feeds exactly one image tensor",
            inputs.len(),
            names.join(", ")
        )));
    }
    let input = &inputs[0];
    if let Some(want) = &m.input.name {
        if want != input.name() {
            return Err(mismatch(format!(
                "the manifest names input {want:?}, the model's input is {:?}",
                input.name()
            )));
        }
    }
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        return Err(mismatch(format!(
            "input {:?} is not a tensor",
            input.name()
        )));
    };
    let want_ty = match m.input.quantized {
        Some(_) => TensorElementType::Uint8,
        None => TensorElementType::Float32,
    };
    if *ty != want_ty {
        return Err(mismatch(format!(
            "input {:?} has element type {ty:?}, but the manifest describes a {} input{}",
            input.name(),
            if m.input.quantized.is_some() {
                "uint8"
            } else {
                "float32"
            },
            if m.input.quantized.is_some() {
                " ([input.quantized])"
            } else {
                " (add [input.quantized] with the input's scale and zero point for a uint8 model)"
            }
        )));
    }
    let dims: &[i64] = shape;
    if dims.len() != 4 {
        return Err(mismatch(format!(
            "input {:?} has shape {dims:?}; expected 4 dimensions",
            input.name()
        )));
    }
    let (c, h, w, want_c, per) = match m.input.layout {
        Layout::Nchw => (dims[1], dims[2], dims[3], 3, 1),
        Layout::Nhwc => (dims[3], dims[1], dims[2], 3, 1),
        Layout::Blocks2 => (dims[3], dims[1], dims[2], 12, 2),
    };
    if c != want_c && c >= 0 {
        return Err(mismatch(format!(
            "input {:?} has shape {dims:?}: {c} channels where the manifest's {:?} layout needs {want_c}",
            input.name(),
            m.input.layout
        )));
    }
    // A blocks2 tensor is half the picture's height and width.
    let (w, h) = (w.saturating_mul(per), h.saturating_mul(per));
    let (want_w, want_h) = size;
    for (what, got, want) in [("width", w, want_w), ("height", h, want_h)] {
        if got >= 0 && got != want as i64 {
            return Err(mismatch(format!(
                "input {:?} has shape {dims:?}: {what} {got}, but {want} is wanted",
                input.name()
            )));
        }
    }
    let dynamic_batch = match dims[0] {
        d if d < 0 => true,
        1 => false,
        d => {
            return Err(mismatch(format!(
            "input {:?} has a fixed batch of {d}; export the model with batch 1 or a dynamic batch",
            input.name()
        )))
        }
    };
    Ok(InputInfo {
        name: input.name().to_string(),
        dynamic_batch,
    })
}

/// Runs `session` on the first `b` images of `input`.
pub fn run<'s>(
    session: &'s mut Session,
    layout: Layout,
    b: usize,
    size: (u32, u32),
    input: &InputBuf,
) -> Result<SessionOutputs<'s>, String> {
    let shape = layout.shape(b, size);
    let n: usize = shape.iter().product();
    let short = || format!("input buffer holds {} values, {n} needed", input.len());
    let tensor = match input {
        InputBuf::F32(v) => TensorRef::from_array_view((shape, v.get(..n).ok_or_else(short)?))
            .map_err(|e| e.to_string())?
            .into_dyn(),
        InputBuf::U8(v) => TensorRef::from_array_view((shape, v.get(..n).ok_or_else(short)?))
            .map_err(|e| e.to_string())?
            .into_dyn(),
    };
    session
        .run(ort::inputs![tensor])
        .map_err(|e| e.message().to_string())
}

/// True when ONNX Runtime can use AMX-INT8 in this process: the CPU has it (CPUID leaf 7:
/// AMX-TILE and AMX-INT8) and Linux grants the process the AMX tile state. The second check
/// is the request MLAS itself makes (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`);
/// where it is refused (an old kernel, a VM without the state) MLAS falls back to AVX-512
/// VNNI, and so does the choice of model file. Checked once per process.
pub fn amx_int8() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(amx_int8_uncached)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_int8_uncached() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID is always there on x86_64; leaf 7 only when the maximum leaf reaches it.
    #[allow(unused_unsafe)]
    let (max_leaf, edx7) = unsafe { (__cpuid(0).eax, __cpuid_count(7, 0).edx) };
    let (tile, int8) = (edx7 & (1 << 24) != 0, edx7 & (1 << 25) != 0);
    if max_leaf < 7 || !tile || !int8 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with these arguments only asks for a permission; it reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    rc == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_int8_uncached() -> bool {
    false
}

/// Where a decoder finds one view of rows in the outputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowsBind {
    pub output: usize,
    pub first_row: usize,
    pub row_len: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LevelBind {
    pub stride: u32,
    pub grid_w: usize,
    pub grid_h: usize,
    pub cls: RowsBind,
    pub reg: RowsBind,
}

/// How the outputs of a run map to the decoder, plus the per-image shapes to check each run.
#[derive(Clone, Debug)]
pub struct Binding {
    pub kind: BindingKind,
    /// Shape of each output for one image, without the batch dimension.
    pub per_image: Vec<Vec<i64>>,
    pub names: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BindingKind {
    Nanodet {
        levels: Vec<LevelBind>,
        reg_max: u32,
        center_offset: f32,
    },
    Yolov8 {
        output: usize,
        anchors: usize,
        transposed: bool,
    },
}

/// Finds the decoder's tensors among `shapes` (outputs of a batch-1 run, in session order).
pub fn bind(
    decoder: &DecoderSpec,
    num_classes: usize,
    size: (u32, u32),
    names: &[String],
    shapes: &[Vec<i64>],
) -> Result<BindingKind, String> {
    let described = || {
        names
            .iter()
            .zip(shapes)
            .map(|(n, s)| format!("{n} {s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match decoder {
        DecoderSpec::Yolov8 => {
            let want = 4 + num_classes as i64;
            let mut found = None;
            for (i, s) in shapes.iter().enumerate() {
                if s.len() == 3 && s[0] == 1 && s[2] > 0 {
                    if s[1] == want {
                        found = Some((i, s[2] as usize, false));
                        break;
                    }
                    if s[2] == want && s[1] > 0 {
                        found = found.or(Some((i, s[1] as usize, true)));
                    }
                }
            }
            let (output, anchors, transposed) = found.ok_or_else(|| {
                format!(
                    "decoder yolov8 needs an output [1, 4+{num_classes}, N] (4 box values plus one score per class in the labels file); the model has {}",
                    described()
                )
            })?;
            Ok(BindingKind::Yolov8 {
                output,
                anchors,
                transposed,
            })
        }
        DecoderSpec::Nanodet {
            strides,
            reg_max,
            center_offset,
        } => {
            let (w, h) = (size.0 as usize, size.1 as usize);
            let nc = num_classes;
            let nreg = 4 * (*reg_max as usize + 1);
            if nc == nreg {
                return Err(format!(
                    "{nc} classes and 4*(reg_max+1) = {nreg} box bins cannot be told apart by shape"
                ));
            }
            let grids: Vec<(usize, usize)> = strides
                .iter()
                .map(|&s| (w / s as usize, h / s as usize))
                .collect();
            let cells: Vec<usize> = grids.iter().map(|(gw, gh)| gw * gh).collect();
            let total: usize = cells.iter().sum();
            let mut cls: Vec<Option<RowsBind>> = vec![None; strides.len()];
            let mut reg: Vec<Option<RowsBind>> = vec![None; strides.len()];
            for (o, s) in shapes.iter().enumerate() {
                let name = &names[o];
                if s.len() != 3 || s[0] != 1 || s[1] <= 0 || s[2] <= 0 {
                    return Err(format!(
                        "output {name} has shape {s:?}; decoder nanodet expects [1, cells, values]"
                    ));
                }
                let (n, k) = (s[1] as usize, s[2] as usize);
                let (has_cls, has_reg) = match k {
                    k if k == nc => (true, false),
                    k if k == nreg => (false, true),
                    k if k == nc + nreg => (true, true),
                    _ => {
                        return Err(format!(
                            "output {name} has {k} values per cell; expected {nc} class scores (labels file), {nreg} box bins (4*(reg_max+1)) or both ({})",
                            nc + nreg
                        ))
                    }
                };
                // Which levels the rows cover: one stride, or all of them in stride order.
                let spans: Vec<(usize, usize)> = if let Some(l) = cells.iter().position(|&c| c == n)
                {
                    vec![(l, 0)]
                } else if n == total {
                    let mut first = 0;
                    (0..strides.len())
                        .map(|l| {
                            let r = (l, first);
                            first += cells[l];
                            r
                        })
                        .collect()
                } else {
                    return Err(format!(
                        "output {name} has {n} cells; a {w}x{h} input at strides {strides:?} gives {cells:?} cells per stride ({total} in all)"
                    ));
                };
                for (l, first_row) in spans {
                    let rows = |offset| RowsBind {
                        output: o,
                        first_row,
                        row_len: k,
                        offset,
                    };
                    for (want, slot, offset, what) in [
                        (has_cls, &mut cls[l], 0, "class-score"),
                        (has_reg, &mut reg[l], if has_cls { nc } else { 0 }, "box"),
                    ] {
                        if want {
                            if slot.is_some() {
                                return Err(format!(
                                    "two {what} outputs for stride {}: {}",
                                    strides[l],
                                    described()
                                ));
                            }
                            *slot = Some(rows(offset));
                        }
                    }
                }
            }
            let mut levels = Vec::new();
            for (l, &stride) in strides.iter().enumerate() {
                let (Some(c), Some(r)) = (cls[l], reg[l]) else {
                    return Err(format!(
                        "no {} output for stride {stride} ({} cells); the model has {}",
                        if cls[l].is_none() {
                            "class-score"
                        } else {
                            "box"
                        },
                        cells[l],
                        described()
                    ));
                };
                levels.push(LevelBind {
                    stride,
                    grid_w: grids[l].0,
                    grid_h: grids[l].1,
                    cls: c,
                    reg: r,
                });
            }
            Ok(BindingKind::Nanodet {
                levels,
                reg_max: *reg_max,
                center_offset: *center_offset,
            })
        }
    }
}

/// Shapes and data of a run's outputs, checked against the binding for a batch of `b`.
pub fn output_views<'a>(
    outputs: &'a SessionOutputs<'_>,
    binding: &Binding,
    b: usize,
    views: &mut Vec<&'a [f32]>,
) -> Result<(), String> {
    views.clear();
    if outputs.len() != binding.per_image.len() {
        return Err(format!(
            "the model returned {} outputs, {} expected",
            outputs.len(),
            binding.per_image.len()
        ));
    }
    for (i, want) in binding.per_image.iter().enumerate() {
        let (shape, data) = outputs[i]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("output {}: {}", binding.names[i], e.message()))?;
        let dims: &[i64] = shape;
        if dims.first() != Some(&(b as i64)) || dims[1..] != want[..] {
            return Err(format!(
                "output {} has shape {dims:?} for a batch of {b}; expected [{b}, {}]",
                binding.names[i],
                want.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        views.push(data);
    }
    Ok(())
}

/// Decodes image `j` of a batch into `out` (appended).
pub fn decode_image(
    binding: &Binding,
    views: &[&[f32]],
    j: usize,
    params: &DecodeParams<'_>,
    yolo: &mut YoloScratch,
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    let image = |o: usize| {
        let per: usize = binding.per_image[o].iter().map(|&d| d as usize).product();
        &views[o][j * per..(j + 1) * per]
    };
    match &binding.kind {
        BindingKind::Yolov8 {
            output,
            anchors,
            transposed,
        } => decode::decode_yolov8(image(*output), *anchors, *transposed, params, yolo, out),
        BindingKind::Nanodet {
            levels,
            reg_max,
            center_offset,
        } => {
            for l in levels {
                let rows = |r: &RowsBind| {
                    let data = image(r.output);
                    Rows {
                        data: data.get(r.first_row * r.row_len..).unwrap_or(&[]),
                        row_len: r.row_len,
                        offset: r.offset,
                    }
                };
                let level = NanodetLevel {
                    stride: l.stride,
                    grid_w: l.grid_w,
                    grid_h: l.grid_h,
                    cls: rows(&l.cls),
                    reg: rows(&l.reg),
                };
                decode::decode_nanodet_level(&level, *reg_max, *center_offset, params, out)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("o{i}")).collect()
    }

    fn nanodet() -> DecoderSpec {
        DecoderSpec::Nanodet {
            strides: vec![8, 16, 32],
            reg_max: 10,
            center_offset: 0.5,
        }
    }

    #[test]
    fn binds_nanodet_outputs_by_shape_in_any_order() {
        // the order the shipped model returns them in (MODEL.md)
        let shapes = vec![
            vec![1, 169, 80],
            vec![1, 169, 44],
            vec![1, 676, 80],
            vec![1, 2704, 80],
            vec![1, 676, 44],
            vec![1, 2704, 44],
        ];
        let BindingKind::Nanodet { levels, .. } =
            bind(&nanodet(), 80, (416, 416), &names(6), &shapes).unwrap()
        else {
            panic!()
        };
        let got: Vec<_> = levels
            .iter()
            .map(|l| (l.stride, l.grid_w, l.cls.output, l.reg.output))
            .collect();
        assert_eq!(got, [(8, 52, 3, 5), (16, 26, 2, 4), (32, 13, 0, 1)]);
    }

    #[test]
    fn binds_single_concatenated_output() {
        // NanoDet-Plus style: [1, 3549, 80 + 44]
        let BindingKind::Nanodet { levels, .. } =
            bind(&nanodet(), 80, (416, 416), &names(1), &[vec![1, 3549, 124]]).unwrap()
        else {
            panic!()
        };
        assert_eq!(levels[1].cls.first_row, 2704);
        assert_eq!(levels[2].reg.first_row, 2704 + 676);
        assert_eq!(levels[2].reg.offset, 80);
        assert_eq!(levels[0].cls.row_len, 124);
    }

    #[test]
    fn nanodet_mismatches_are_explained() {
        let cases: &[(&[Vec<i64>], usize, &str)] = &[
            (
                &[vec![1, 169, 80], vec![1, 169, 44]],
                80,
                "no class-score output for stride 8",
            ),
            (&[vec![1, 2704, 79]], 80, "79 values per cell"),
            (&[vec![1, 2700, 80]], 80, "2700 cells"),
            (
                &[vec![1, 2704, 80], vec![1, 2704, 80]],
                80,
                "two class-score outputs",
            ),
            (&[vec![2704, 80]], 80, "expects [1, cells, values]"),
            (&[vec![1, 2704, 44]], 44, "cannot be told apart"),
        ];
        for (shapes, nc, want) in cases {
            let e = bind(&nanodet(), *nc, (416, 416), &names(shapes.len()), shapes).unwrap_err();
            assert!(e.contains(want), "{shapes:?}: {e}");
        }
    }

    #[test]
    fn binds_yolov8_either_way_round() {
        let y = DecoderSpec::Yolov8;
        assert_eq!(
            bind(&y, 80, (640, 640), &names(1), &[vec![1, 84, 8400]]).unwrap(),
            BindingKind::Yolov8 {
                output: 0,
                anchors: 8400,
                transposed: false
            }
        );
        assert_eq!(
            bind(
                &y,
                80,
                (640, 640),
                &names(2),
                &[vec![1, 32, 160], vec![1, 8400, 84]]
            )
            .unwrap(),
            BindingKind::Yolov8 {
                output: 1,
                anchors: 8400,
                transposed: true
            }
        );
        let e = bind(&y, 3, (640, 640), &names(1), &[vec![1, 84, 8400]]).unwrap_err();
        assert!(
            e.contains("[1, 4+3, N]") && e.contains("o0 [1, 84, 8400]"),
            "{e}"
        );
    }
}
