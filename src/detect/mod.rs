//! The detector: ONNX Runtime sessions, model manifests, pre- and post-processing.
//!
//! ```text
//! Image (BGR at input size) ─preprocess─▶ f32 tensor ─ORT─▶ outputs ─decode─▶ candidates ─NMS─▶ Vec<Detection>
//! ```
//!
//! A [`Detector`] owns a bounded pool of sessions, each with its own input buffer and decode
//! scratch, so the steady state allocates only what it returns. [`Detector::detect_batch`] is
//! thread-safe: it takes a free session (blocking while all are busy) and spreads a batch over
//! any other sessions that are free at that moment. Models with a symbolic batch dimension get
//! several frames per inference call (`max_batch`); docs/detector.md has the measurements that
//! chose the defaults.

pub mod decode;
pub mod manifest;
pub mod nms;
pub mod preprocess;
pub mod runtime;

use std::ops::AddAssign;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use ort::session::Session;

use crate::config::{Config, OptimizationLevel, Problem};
use crate::model::{Detection, Image, Labels};
use decode::{DecodeParams, YoloScratch};
pub use manifest::{DecoderFamily, Manifest};
use preprocess::{InputBuf, Normalizer, SlowPath};
use runtime::{Binding, InputInfo};

/// Why the detector could not load or could not process a frame.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("cannot read model manifest {path}: {error}")]
    ManifestRead {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n"))]
    Manifest { problems: Vec<Problem> },
    #[error("model file {path} does not exist (named by {origin}, field `onnx`)")]
    ModelMissing { path: PathBuf, origin: String },
    #[error("cannot load model {path}: {message}")]
    ModelLoad { path: PathBuf, message: String },
    #[error(
        "cannot load the ONNX Runtime library {path}: {message} (set detect.ort_library in the config, or ORT_DYLIB_PATH)"
    )]
    OrtLibrary { path: PathBuf, message: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("model {model} does not match its manifest {manifest}: {message}")]
    Mismatch {
        model: PathBuf,
        manifest: PathBuf,
        message: String,
    },
    #[error("detector options: {0}")]
    Options(String),
    #[error("frame {index}: {message}")]
    BadFrame { index: usize, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

/// What a pipeline's detector keeps below the class thresholds ([`Detector::load`]): the
/// scores of people in a tight group and of vehicles in a queue (docs/rules.md, "crowd").
pub const PIPELINE_FLOOR: f32 = 0.2;

/// How to run a model (the model itself is described by its manifest).
#[derive(Clone, Debug)]
pub struct DetectOptions {
    /// ONNX Runtime intra-op threads per session.
    pub threads: usize,
    /// Sessions in the pool.
    pub sessions: usize,
    /// Most frames per inference call, for models with a dynamic batch dimension.
    pub max_batch: usize,
    /// `libonnxruntime.so`; `ORT_DYLIB_PATH` wins; the loader's search path if neither.
    pub ort_library: Option<PathBuf>,
    /// Extra latency added to every inference call (testing only).
    pub debug_delay: Duration,
    pub spinning: bool,
    pub optimization: OptimizationLevel,
    /// Run at this (width, height) instead of the manifest's; needs `input.dynamic = true`.
    pub input_size: Option<(u32, u32)>,
    /// One score threshold for every class instead of the manifest's (`simpang detect --score`).
    pub score_threshold: Option<f32>,
    /// Load the manifest's `onnx_amx` file where ONNX Runtime can use AMX-INT8.
    pub amx: bool,
    /// Also keep detections down to this score, below their class's threshold: the tracker's
    /// low-score association and the crowd zones' count use them ([`Detector::thresholds`]
    /// tells them apart). `None`: only detections above the thresholds.
    pub floor: Option<f32>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            sessions: 1,
            max_batch: 1,
            ort_library: None,
            debug_delay: Duration::ZERO,
            spinning: false,
            optimization: OptimizationLevel::All,
            input_size: None,
            score_threshold: None,
            amx: true,
            floor: None,
        }
    }
}

impl DetectOptions {
    /// The options `[detect]` of `cfg` asks for (paths resolved against the config file).
    pub fn from_config(cfg: &Config) -> Self {
        let d = &cfg.detect;
        Self {
            threads: d.threads,
            sessions: d.sessions,
            max_batch: d.max_batch,
            ort_library: Some(cfg.resolve(&d.ort_library)),
            debug_delay: Duration::from_millis(d.debug_delay_ms),
            spinning: d.spinning,
            optimization: d.optimization,
            input_size: d.input_size.map(|[w, h]| (w, h)),
            score_threshold: None,
            amx: d.amx,
            floor: None,
        }
    }
}

/// Where the time of one call went. With several frames (or sessions working in parallel) the
/// figures are sums over frames and sessions, i.e. CPU-side work, not wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DetectTimings {
    pub preprocess: Duration,
    /// `Session::run` (plus `debug_delay`).
    pub inference: Duration,
    /// Decoding and NMS.
    pub postprocess: Duration,
}

impl DetectTimings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.inference + self.postprocess
    }
}

impl AddAssign for DetectTimings {
    fn add_assign(&mut self, o: Self) {
        self.preprocess += o.preprocess;
        self.inference += o.inference;
        self.postprocess += o.postprocess;
    }
}

/// One session and the buffers it reuses from frame to frame.
struct Worker {
    session: Session,
    /// `max_batch` input tensors back to back.
    input: InputBuf,
    slow: SlowPath,
    candidates: Vec<Detection>,
    kept: Vec<Detection>,
    yolo: YoloScratch,
    /// Which images of the current chunk went into which batch slot.
    slots: Vec<usize>,
}

/// A bounded pool: a worker is taken out of the channel while in use and put back on drop.
struct Pool {
    tx: Sender<Box<Worker>>,
    rx: Receiver<Box<Worker>>,
}

struct Lease<'a> {
    worker: Option<Box<Worker>>,
    pool: &'a Pool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            // The pool's channel holds every worker it ever had, so this never blocks; it only
            // fails if the detector is gone, and then the worker may go too.
            let _ = self.pool.tx.send(w);
        }
    }
}

impl Pool {
    fn acquire(&self) -> Result<Lease<'_>, DetectError> {
        let w = self
            .rx
            .recv()
            .map_err(|_| DetectError::Inference("session pool closed".into()))?;
        Ok(Lease {
            worker: Some(w),
            pool: self,
        })
    }
    fn try_acquire(&self) -> Option<Lease<'_>> {
        self.rx.try_recv().ok().map(|w| Lease {
            worker: Some(w),
            pool: self,
        })
    }
}

/// Immutable per-model state shared by every call.
struct Model {
    manifest: Manifest,
    size: (u32, u32),
    norm: Normalizer,
    binding: Binding,
    /// Frames per inference call.
    batch: usize,
    debug_delay: Duration,
    per_image: usize,
    /// Score threshold per class id.
    thresholds: Vec<f32>,
    /// What decoding keeps per class id: the threshold, or the floor below it.
    keep: Vec<f32>,
}

/// An ONNX object detector: a bounded pool of ORT sessions. `Send + Sync`.
pub struct Detector {
    model: Model,
    pool: Pool,
    sessions: usize,
    input: InputInfo,
}

type FrameResult = Result<Vec<Detection>, DetectError>;

impl Detector {
    /// The detector `[detect]` of `cfg` describes, as a pipeline runs it: keeping detections
    /// down to [`PIPELINE_FLOOR`] for the tracker and the crowd zones.
    pub fn load(cfg: &Config) -> Result<Detector, DetectError> {
        Self::from_manifest(
            &cfg.resolve(&cfg.detect.model),
            &DetectOptions {
                floor: Some(PIPELINE_FLOOR),
                ..DetectOptions::from_config(cfg)
            },
        )
    }

    /// Loads the model of the manifest at `path`: builds `opts.sessions` sessions, checks the
    /// model's input and outputs against the manifest on a warm-up run, and fails with an error
    /// naming the file at fault.
    pub fn from_manifest(path: &Path, opts: &DetectOptions) -> Result<Detector, DetectError> {
        let t0 = Instant::now();
        if opts.threads == 0 || opts.sessions == 0 || opts.max_batch == 0 {
            return Err(DetectError::Options(
                "threads, sessions and max_batch must be at least 1".into(),
            ));
        }
        if let Some(t) = opts.score_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(DetectError::Options(format!(
                    "score threshold must be in [0, 1], got {t}"
                )));
            }
        }
        if let Some(t) = opts.floor {
            if !(0.0..=1.0).contains(&t) {
                return Err(DetectError::Options(format!(
                    "score floor must be in [0, 1], got {t}"
                )));
            }
        }
        let mut m = Manifest::load(path)?;
        choose_model_file(&mut m, opts.amx);
        let size = match opts.input_size {
            None => (m.input.width, m.input.height),
            Some(s) => {
                check_input_size(&m, s)?;
                s
            }
        };
        let env = runtime::environment(&runtime::library_path(opts.ort_library.as_deref()))?;
        if !m.onnx.is_file() {
            return Err(DetectError::ModelMissing {
                path: m.onnx.clone(),
                origin: m.onnx_origin(),
            });
        }
        let mismatch = |message: String| DetectError::Mismatch {
            model: m.onnx.clone(),
            manifest: m.path.clone(),
            message,
        };

        let mut first = runtime::build_session(&env, &m, opts)?;
        let input = runtime::check_input(&first, &m, size)?;
        let batch = if input.dynamic_batch {
            opts.max_batch
        } else {
            if opts.max_batch > 1 {
                tracing::info!(
                    model = %m.onnx.display(),
                    "the model has a fixed batch of 1: frames go through one per inference call"
                );
            }
            1
        };
        let per_image = 3 * size.0 as usize * size.1 as usize;
        let zeros = InputBuf::zeros(&m.input, per_image * batch.max(2));
        let names: Vec<String> = first
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let shapes = {
            let out = runtime::run(&mut first, m.input.layout, 1, size, &zeros)
                .map_err(|e| mismatch(format!("warm-up run failed: {e}")))?;
            let mut shapes = Vec::new();
            for i in 0..out.len() {
                let (shape, _) = out[i].try_extract_tensor::<f32>().map_err(|e| {
                    mismatch(format!(
                        "output {} is not a float32 tensor: {}",
                        names[i],
                        e.message()
                    ))
                })?;
                shapes.push(shape.to_vec());
            }
            shapes
        };
        let kind = runtime::bind(&m.decoder, m.labels.len(), size, &names, &shapes)
            .map_err(|e| mismatch(format!("{e} (labels: {})", m.labels_path.display())))?;
        let binding = Binding {
            kind,
            per_image: shapes.iter().map(|s| s[1..].to_vec()).collect(),
            names,
        };
        if batch > 1 {
            // A symbolic batch dimension does not prove the graph handles batches (exports often
            // hard-code 1 in a Reshape); check that two frames give twice the outputs.
            let out = runtime::run(&mut first, m.input.layout, 2, size, &zeros)
                .map_err(|e| mismatch(format!("a batch of 2 failed: {e}")))?;
            let mut views = Vec::new();
            runtime::output_views(&out, &binding, 2, &mut views).map_err(|e| {
                mismatch(format!(
                    "the input batch dimension is symbolic, but a batch of 2 does not work: {e}; set detect.max_batch = 1"
                ))
            })?;
        }

        let (tx, rx) = crossbeam_channel::bounded(opts.sessions);
        let make_worker = |session: Session| Worker {
            session,
            input: InputBuf::zeros(&m.input, per_image * batch),
            slow: SlowPath::default(),
            candidates: Vec::with_capacity(m.pre_nms_top_k.min(4096)),
            kept: Vec::with_capacity(m.max_detections),
            yolo: YoloScratch::default(),
            slots: Vec::with_capacity(batch),
        };
        let _ = tx.send(Box::new(make_worker(first)));
        for _ in 1..opts.sessions {
            let mut s = runtime::build_session(&env, &m, opts)?;
            // The first run of a session is several times slower than the rest: pay it here.
            runtime::run(&mut s, m.input.layout, 1, size, &zeros)
                .map_err(|e| mismatch(format!("warm-up run failed: {e}")))?;
            let _ = tx.send(Box::new(make_worker(s)));
        }
        let thresholds = match opts.score_threshold {
            Some(t) => vec![t; m.labels.len()],
            None => m.thresholds.to_vec(),
        };
        let keep = thresholds
            .iter()
            .map(|&t| opts.floor.map_or(t, |f| f.min(t)))
            .collect();
        tracing::debug!(
            model = %m.name,
            file = %m.onnx.display(),
            amx_file = m.runs_amx_file(),
            decoder = m.decoder.family().as_str(),
            input = %format!("{}x{}", size.0, size.1),
            sessions = opts.sessions,
            threads = opts.threads,
            batch,
            load_ms = t0.elapsed().as_millis() as u64,
            "detector ready"
        );
        Ok(Detector {
            model: Model {
                norm: Normalizer::new(&m.input),
                manifest: m,
                size,
                binding,
                batch,
                debug_delay: opts.debug_delay,
                per_image,
                thresholds,
                keep,
            },
            pool: Pool { tx, rx },
            sessions: opts.sessions,
            input,
        })
    }

    /// The score threshold of each class id: a detection is an object when it scores above
    /// it; those below (down to [`DetectOptions::floor`]) are hints for the tracker and crowd
    /// counts.
    pub fn thresholds(&self) -> Vec<f32> {
        self.model.thresholds.clone()
    }

    /// (width, height) the analytics branch should scale frames to.
    pub fn input_size(&self) -> (u32, u32) {
        self.model.size
    }

    pub fn labels(&self) -> Labels {
        self.model.manifest.labels.clone()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.model.manifest
    }

    /// Frames per inference call (1 unless the model has a dynamic batch and `max_batch` > 1).
    pub fn batch_size(&self) -> usize {
        self.model.batch
    }

    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Name of the model's input tensor.
    pub fn input_name(&self) -> &str {
        &self.input.name
    }

    /// Detects objects in each image. Images should be BGR at [`Self::input_size`]; other
    /// sizes and I420 are converted first (slower). A malformed image fails the call with
    /// [`DetectError::BadFrame`] naming its index before any work is done; use
    /// [`Self::detect_each`] to get the other frames' results anyway.
    pub fn detect_batch(
        &self,
        images: &[&Image],
    ) -> Result<(Vec<Vec<Detection>>, DetectTimings), DetectError> {
        for (index, img) in images.iter().enumerate() {
            preprocess::check_image(img).map_err(|e| DetectError::BadFrame {
                index,
                message: e.to_string(),
            })?;
        }
        let (results, t) = self.detect_each(images);
        let dets = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok((dets, t))
    }

    /// Like [`Self::detect_batch`], with a result per image: a bad frame fails alone.
    pub fn detect_each(&self, images: &[&Image]) -> (Vec<FrameResult>, DetectTimings) {
        let n = images.len();
        let mut timings = DetectTimings::default();
        if n == 0 {
            return (Vec::new(), timings);
        }
        let first = match self.pool.acquire() {
            Ok(l) => l,
            Err(e) => {
                let m = e.to_string();
                return (
                    (0..n)
                        .map(|_| Err(DetectError::Inference(m.clone())))
                        .collect(),
                    timings,
                );
            }
        };
        // Spread the frames over the sessions free right now (never wait for a second one).
        let mut leases = vec![first];
        while leases.len() < n.min(self.sessions) {
            match self.pool.try_acquire() {
                Some(l) => leases.push(l),
                None => break,
            }
        }
        let chunk = n.div_ceil(leases.len()).min(self.model.batch);
        let chunks: Vec<(usize, &[&Image])> = images
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| (i * chunk, c))
            .collect();
        let mut results: Vec<Option<FrameResult>> = (0..n).map(|_| None).collect();
        if leases.len() == 1 {
            let mut lease = leases.pop();
            if let Some(w) = lease.as_mut().and_then(|l| l.worker.as_deref_mut()) {
                for (start, imgs) in &chunks {
                    let out = &mut results[*start..*start + imgs.len()];
                    timings += self.model.process(w, *start, imgs, out);
                }
            }
        } else {
            // Work sharing: each session takes the next unprocessed chunk until none is left.
            // The calling thread works too, so frames are processed even if no helper thread
            // can be started (a failed spawn drops its lease, which goes back to the pool).
            let next = AtomicUsize::new(0);
            let shared = Mutex::new((&mut results, &mut timings));
            let work = |mut lease: Lease<'_>| {
                let Some(w) = lease.worker.as_deref_mut() else {
                    return;
                };
                let mut mine = Vec::new();
                while let Some((start, imgs)) = chunks.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut local: Vec<Option<FrameResult>> = Vec::new();
                    local.resize_with(imgs.len(), || None);
                    let t = self.model.process(w, *start, imgs, &mut local);
                    mine.push((*start, local, t));
                }
                let mut g = shared.lock().unwrap_or_else(|p| p.into_inner());
                for (start, rs, t) in mine {
                    for (k, r) in rs.into_iter().enumerate() {
                        g.0[start + k] = r;
                    }
                    *g.1 += t;
                }
            };
            std::thread::scope(|s| {
                let mut leases = leases.into_iter();
                let mine = leases.next();
                for lease in leases {
                    let spawned = std::thread::Builder::new()
                        .name("detect".into())
                        .spawn_scoped(s, || work(lease));
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start a detector thread; fewer sessions work on this batch");
                    }
                }
                if let Some(l) = mine {
                    work(l);
                }
            });
        }
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(DetectError::Inference("frame was not processed".into())))
            })
            .collect();
        (results, timings)
    }
}

impl Model {
    /// One inference call for up to `batch` images, frames `start..` of the caller's list;
    /// `out[i]` gets the result of `imgs[i]`.
    fn process(
        &self,
        w: &mut Worker,
        start: usize,
        imgs: &[&Image],
        out: &mut [Option<FrameResult>],
    ) -> DetectTimings {
        let mut t = DetectTimings::default();
        let t0 = Instant::now();
        w.slots.clear();
        for (i, img) in imgs.iter().enumerate() {
            let slot = w.slots.len();
            let buf = w
                .input
                .slot(slot * self.per_image..(slot + 1) * self.per_image);
            match preprocess::preprocess(
                img,
                self.size.0,
                self.size.1,
                &self.norm,
                &mut w.slow,
                buf,
            ) {
                Ok(()) => w.slots.push(i),
                Err(e) => {
                    out[i] = Some(Err(DetectError::BadFrame {
                        index: start + i,
                        message: e.to_string(),
                    }))
                }
            }
        }
        t.preprocess = t0.elapsed();
        let b = w.slots.len();
        if b == 0 {
            return t;
        }
        let t1 = Instant::now();
        let layout = self.manifest.input.layout;
        let run = runtime::run(&mut w.session, layout, b, self.size, &w.input);
        if !self.debug_delay.is_zero() {
            std::thread::sleep(self.debug_delay);
        }
        t.inference = t1.elapsed();
        let outputs = match run {
            Ok(o) => o,
            Err(e) => {
                for &i in &w.slots {
                    out[i] = Some(Err(DetectError::Inference(e.clone())));
                }
                return t;
            }
        };
        let t2 = Instant::now();
        let mut views = Vec::with_capacity(self.binding.per_image.len());
        if let Err(e) = runtime::output_views(&outputs, &self.binding, b, &mut views) {
            for &i in &w.slots {
                out[i] = Some(Err(DetectError::Inference(e.clone())));
            }
            return t;
        }
        let params = DecodeParams::new(&self.keep, self.size.0, self.size.1);
        for (j, &i) in w.slots.iter().enumerate() {
            w.candidates.clear();
            let r = runtime::decode_image(
                &self.binding,
                &views,
                j,
                &params,
                &mut w.yolo,
                &mut w.candidates,
            )
            .map(|()| {
                nms::nms(
                    &mut w.candidates,
                    self.manifest.nms_iou,
                    self.manifest.pre_nms_top_k,
                    self.manifest.max_detections,
                    &mut w.kept,
                );
                w.kept.clone()
            })
            .map_err(|e| DetectError::Inference(e.to_string()));
            out[i] = Some(r);
        }
        t.postprocess = t2.elapsed();
        t
    }
}

/// Points `m.onnx` at the file to load on this CPU: the manifest's `onnx_amx` where ONNX
/// Runtime can use AMX-INT8 and `amx` allows it, else `onnx`.
pub fn choose_model_file(m: &mut Manifest, amx: bool) {
    if amx && m.onnx_amx.is_some() && runtime::amx_int8() && m.use_amx_file() {
        tracing::debug!(file = %m.onnx.display(), "the CPU has AMX-INT8: loading the manifest's onnx_amx");
    }
}

/// A size other than the manifest's needs a model that accepts it.
fn check_input_size(m: &Manifest, (w, h): (u32, u32)) -> Result<(), DetectError> {
    if (w, h) == (m.input.width, m.input.height) {
        return Ok(());
    }
    if !m.input.dynamic {
        return Err(DetectError::Options(format!(
            "input size {w}x{h} differs from {}x{} and {} does not say `dynamic = true` under [input]",
            m.input.width,
            m.input.height,
            m.path.display()
        )));
    }
    if let manifest::DecoderSpec::Nanodet { strides, .. } = &m.decoder {
        if let Some(s) = strides.iter().find(|&&s| w % s != 0 || h % s != 0) {
            return Err(DetectError::Options(format!(
                "input size {w}x{h} is not a multiple of stride {s} of {}",
                m.path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Detector>();
    }
}
