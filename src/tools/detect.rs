//! `simpang detect INPUT`: run the detector on an image or a video file, print what it finds
//! and optionally write an annotated copy. The first thing to run on a new camera's footage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use opencv::core::{Point as CvPoint, Scalar, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

use crate::config::{Config, DetectConfig};
use crate::detect::{DetectOptions, DetectTimings, Detector};
use crate::draw::overlay;
use crate::ingest::reader::{ReadOptions, VideoReader};
use crate::model::{Detection, Image, Labels, PixelFormat, SnapshotBox};

/// Arguments of `simpang detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// Image (JPEG, PNG, ...) or video file.
    pub input: PathBuf,
    /// Config file whose `[detect]` section is used (default: config/palembang.toml if it
    /// exists, else built-in defaults relative to the working directory).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model manifest, instead of the config's `detect.model`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Print one JSON object per frame (JSON lines) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write an annotated copy: an image for image input, an .mp4 for video input.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (default: the config's `detect.threads`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the detector on every Nth video frame only (the annotated video keeps every frame,
    /// drawn with the latest results, as the wall does).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub every: u64,
    /// Stop after this many detected frames.
    #[arg(long)]
    pub limit: Option<u64>,
    /// One score threshold for all classes instead of the manifest's (e.g. 0.3 to see what
    /// the model almost finds).
    #[arg(long)]
    pub score: Option<f32>,
}

const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "pgm", "ppm",
];

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The `[detect]` settings and the directory its relative paths are relative to.
fn detect_settings(args: &DetectArgs) -> anyhow::Result<(Option<Config>, DetectOptions, PathBuf)> {
    let default = crate::config::default_path();
    let path = match &args.config {
        Some(p) => Some(p.clone()),
        None if default.is_file() => Some(default),
        None => None,
    };
    let (cfg, mut opts, model) = match path {
        Some(p) => {
            let cfg = Config::load(&p)?;
            let opts = DetectOptions::from_config(&cfg);
            let model = cfg.resolve(&cfg.detect.model);
            (Some(cfg), opts, model)
        }
        None => {
            // No config: the repository layout, from the working directory.
            let d = DetectConfig::default();
            let strip = |p: &Path| {
                p.strip_prefix("..")
                    .map(Path::to_path_buf)
                    .unwrap_or(p.into())
            };
            let opts = DetectOptions {
                threads: d.threads,
                ort_library: Some(strip(&d.ort_library)),
                ..DetectOptions::default()
            };
            (None, opts, strip(&d.model))
        }
    };
    // One caller, one frame at a time: one session is all this command can use.
    opts.sessions = 1;
    opts.max_batch = 1;
    // A user looking at the output wants it now, not an artificial delay.
    opts.debug_delay = Duration::ZERO;
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        opts.threads = t;
    }
    opts.score_threshold = args.score;
    let model = args.model.clone().unwrap_or(model);
    Ok((cfg, opts, model))
}

pub fn main(args: DetectArgs) -> anyhow::Result<ExitCode> {
    if !args.input.is_file() {
        bail!("input {} does not exist", args.input.display());
    }
    // Input problems first: they are quicker to find than loading a model.
    let image = if is_image(&args.input) {
        Some(read_image(&args.input)?)
    } else {
        if let Some(p) = &args.out {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !ext.eq_ignore_ascii_case("mp4") {
                bail!(
                    "--out for a video input must end in .mp4, got {}",
                    p.display()
                );
            }
        }
        None
    };
    let (_cfg, opts, manifest) = detect_settings(&args)?;
    let t0 = Instant::now();
    // Its errors name the file at fault (manifest, model, library).
    let det = Detector::from_manifest(&manifest, &opts)?;
    let (iw, ih) = det.input_size();
    let m = det.manifest();
    eprintln!(
        "model {} ({} decoder, {iw}x{ih} input, {} classes) loaded in {} ms",
        m.name,
        m.decoder.family().as_str(),
        m.labels.len(),
        t0.elapsed().as_millis()
    );
    let mut out = Output::new(args.json, det.labels());
    if let Some(img) = image {
        run_image(&args, &img, &det, &mut out)?;
    } else {
        run_video(&args, &det, &mut out)?;
    }
    out.summary();
    Ok(ExitCode::SUCCESS)
}

fn read_image(path: &Path) -> anyhow::Result<Image> {
    let shown = path.display();
    let s = path
        .to_str()
        .with_context(|| format!("{shown}: path is not UTF-8"))?;
    let m = imgcodecs::imread(s, imgcodecs::IMREAD_COLOR)
        .with_context(|| format!("cannot read {shown}"))?;
    if m.empty() {
        bail!("cannot read {shown}: not an image OpenCV can decode");
    }
    Ok(overlay::from_bgr_mat(&m)?)
}

fn run_image(
    args: &DetectArgs,
    img: &Image,
    det: &Detector,
    out: &mut Output,
) -> anyhow::Result<()> {
    let (dets, t) = det.detect_batch(&[img])?;
    out.frame(0, None, img, &dets[0], &t)?;
    if let Some(path) = &args.out {
        let annotated = annotate(
            img,
            &dets[0],
            &det.labels(),
            &args.input.display().to_string(),
        )?;
        let m = overlay::to_bgr_mat(&annotated)?;
        let s = path
            .to_str()
            .with_context(|| format!("{}: path is not UTF-8", path.display()))?;
        let ok = imgcodecs::imwrite(s, &m, &Vector::new())
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !ok {
            bail!("cannot write {} (use .jpg or .png)", path.display());
        }
        eprintln!("annotated image written to {}", path.display());
    }
    Ok(())
}

fn run_video(args: &DetectArgs, det: &Detector, out: &mut Output) -> anyhow::Result<()> {
    let reader = VideoReader::open(
        &args.input,
        &ReadOptions {
            size: None,
            format: PixelFormat::Bgr,
            fps: None,
        },
    )?;
    let mut writer: Option<Mp4Writer> = None;
    let mut latest: Vec<Detection> = Vec::new();
    let mut processed = 0u64;
    let labels = det.labels();
    let name = args.input.display().to_string();
    for frame in reader {
        let frame = frame?;
        if frame.index % args.every == 0 {
            let (dets, t) = det.detect_batch(&[&frame.image])?;
            latest = dets.into_iter().next().unwrap_or_default();
            out.frame(frame.index, Some(frame.pts), &frame.image, &latest, &t)?;
            processed += 1;
        }
        if let Some(path) = &args.out {
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(Mp4Writer::open(
                    path,
                    frame.image.width,
                    frame.image.height,
                )?),
            };
            let caption = format!("{name}  frame {}", frame.index);
            let annotated = annotate(&frame.image, &latest, &labels, &caption)?;
            w.push(annotated.data, frame.pts)?;
        }
        if args.limit.is_some_and(|l| processed >= l) {
            break;
        }
    }
    if processed == 0 {
        bail!("{}: no video frames decoded", args.input.display());
    }
    if let (Some(w), Some(path)) = (writer, &args.out) {
        w.finish()?;
        eprintln!("annotated video written to {}", path.display());
    }
    Ok(())
}

/// Colour per class, spread around the hue circle so neighbours differ (BGR).
fn class_colour(class_id: u16) -> Scalar {
    const PALETTE: [(f64, f64, f64); 10] = [
        (80.0, 220.0, 60.0),
        (0.0, 160.0, 255.0),
        (255.0, 120.0, 40.0),
        (60.0, 60.0, 240.0),
        (230.0, 60.0, 230.0),
        (0.0, 230.0, 230.0),
        (255.0, 220.0, 0.0),
        (140.0, 80.0, 255.0),
        (40.0, 200.0, 160.0),
        (200.0, 200.0, 200.0),
    ];
    let (b, g, r) = PALETTE[class_id as usize % PALETTE.len()];
    Scalar::new(b, g, r, 0.0)
}

/// The picture with labelled boxes and a caption, BGR at its own size.
fn annotate(
    img: &Image,
    dets: &[Detection],
    labels: &Labels,
    caption: &str,
) -> anyhow::Result<Image> {
    let mut m = overlay::to_bgr_mat(img)?;
    // Lowest score first, so the best box of a cluster is drawn on top.
    for d in dets.iter().rev() {
        let name = labels
            .get(d.class_id as usize)
            .map(String::as_str)
            .unwrap_or("?");
        let b = SnapshotBox {
            bbox: d.bbox,
            label: format!("{name} {:.2}", d.score),
        };
        overlay::draw_box(&mut m, &b, class_colour(d.class_id))?;
    }
    let text = format!("{caption}  {} objects", dets.len());
    overlay::draw_label(
        &mut m,
        &text,
        CvPoint::new(6, 20),
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        0.5,
    )?;
    Ok(overlay::from_bgr_mat(&m)?)
}

/// Encodes BGR frames to H.264 in MP4 through GStreamer.
struct Mp4Writer {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    path: PathBuf,
    /// The latest frame, held back until the next one gives its duration: without a duration
    /// the muxer drops the last frame of the file.
    pending: Option<(Vec<u8>, Duration)>,
    last_duration: Duration,
}

impl Mp4Writer {
    fn open(path: &Path, width: u32, height: u32) -> anyhow::Result<Self> {
        crate::ingest::init_gstreamer()?;
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            bail!("cannot encode {width}x{height} video: H.264 needs even sides");
        }
        let shown = path.display().to_string();
        let line = format!(
            "appsrc name=src format=time block=true \
               caps=video/x-raw,format=BGR,width={width},height={height},framerate=0/1 \
             ! videoconvert ! video/x-raw,format=I420 \
             ! x264enc speed-preset=veryfast \
             ! mp4mux ! filesink location=\"{}\"",
            shown.replace('"', "\\\"")
        );
        let pipeline = gst::parse::launch(&line)
            .context("cannot build the video encoder (are gstreamer1.0-plugins-ugly and -good installed?)")?
            .dynamic_cast::<gst::Pipeline>()
            .map_err(|_| anyhow::anyhow!("encoder is not a pipeline"))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok())
            .context("encoder has no appsrc")?;
        pipeline
            .set_state(gst::State::Playing)
            .with_context(|| format!("cannot start writing {shown}"))?;
        Ok(Self {
            pipeline,
            src,
            path: path.to_path_buf(),
            pending: None,
            // until two frames tell: 25 fps
            last_duration: Duration::from_millis(40),
        })
    }

    fn push(&mut self, bgr: Vec<u8>, pts: Duration) -> anyhow::Result<()> {
        if let Some((prev, prev_pts)) = self.pending.take() {
            if pts > prev_pts {
                self.last_duration = pts - prev_pts;
            }
            self.send(prev, prev_pts, self.last_duration)?;
        }
        self.pending = Some((bgr, pts));
        Ok(())
    }

    fn send(&self, bgr: Vec<u8>, pts: Duration, duration: Duration) -> anyhow::Result<()> {
        let mut buf = gst::Buffer::from_mut_slice(bgr);
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
            b.set_duration(gst::ClockTime::from_nseconds(duration.as_nanos() as u64));
        }
        self.src
            .push_buffer(buf)
            .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", self.path.display()))?;
        Ok(())
    }

    /// Ends the stream and waits for the file to be complete.
    fn finish(mut self) -> anyhow::Result<()> {
        if let Some((last, pts)) = self.pending.take() {
            self.send(last, pts, self.last_duration)?;
        }
        let _ = self.src.end_of_stream();
        let bus = self.pipeline.bus().context("encoder has no bus")?;
        let result = match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gst::MessageView::Error(e) => Err(anyhow::anyhow!(
                    "writing {}: {}",
                    self.path.display(),
                    e.error()
                )),
                _ => Ok(()),
            },
            None => Err(anyhow::anyhow!(
                "writing {}: the encoder did not finish within 60 s",
                self.path.display()
            )),
        };
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

impl Drop for Mp4Writer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// One line of `--json` output: a frame and what was found in it, boxes in source pixels.
#[derive(serde::Serialize)]
struct FrameLine<'a> {
    frame: u64,
    /// Seconds into the video; `null` for an image.
    pts: Option<f64>,
    width: u32,
    height: u32,
    detections: Vec<DetLine<'a>>,
    ms: Ms,
}

#[derive(serde::Serialize)]
struct DetLine<'a> {
    class: &'a str,
    class_id: u16,
    score: f64,
    /// x1, y1, x2, y2 in source pixels.
    #[serde(rename = "box")]
    bbox: [f64; 4],
}

#[derive(serde::Serialize)]
struct Ms {
    preprocess: f64,
    inference: f64,
    postprocess: f64,
}

/// Prints per-frame results and keeps totals for the summary.
struct Output {
    json: bool,
    labels: Labels,
    frames: u64,
    per_class: Vec<u64>,
    timings: DetectTimings,
    started: Instant,
}

impl Output {
    fn new(json: bool, labels: Labels) -> Self {
        Self {
            json,
            per_class: vec![0; labels.len()],
            labels,
            frames: 0,
            timings: DetectTimings::default(),
            started: Instant::now(),
        }
    }

    fn name(&self, class_id: u16) -> &str {
        self.labels
            .get(class_id as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    fn frame(
        &mut self,
        index: u64,
        pts: Option<Duration>,
        img: &Image,
        dets: &[Detection],
        t: &DetectTimings,
    ) -> anyhow::Result<()> {
        self.frames += 1;
        self.timings += *t;
        for d in dets {
            if let Some(c) = self.per_class.get_mut(d.class_id as usize) {
                *c += 1;
            }
        }
        let (w, h) = (img.width, img.height);
        // f64 so that the rounded values print as written (0.8476, not 0.847599983215332)
        let round = |v: f64, k: f64| (v * k).round() / k;
        let ms = |d: Duration| round(d.as_secs_f64() * 1000.0, 100.0);
        let stdout = std::io::stdout();
        let mut o = stdout.lock();
        if self.json {
            let line = FrameLine {
                frame: index,
                pts: pts.map(|p| p.as_secs_f64()),
                width: w,
                height: h,
                detections: dets
                    .iter()
                    .map(|d| DetLine {
                        class: self.name(d.class_id),
                        class_id: d.class_id,
                        score: round(d.score as f64, 10_000.0),
                        bbox: d.bbox.to_pixels(w, h).map(|v| round(v as f64, 10.0)),
                    })
                    .collect(),
                ms: Ms {
                    preprocess: ms(t.preprocess),
                    inference: ms(t.inference),
                    postprocess: ms(t.postprocess),
                },
            };
            let line = serde_json::to_string(&line)?;
            writeln!(o, "{line}")?;
        } else {
            let at = pts
                .map(|p| format!(" @ {:.3}s", p.as_secs_f64()))
                .unwrap_or_default();
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for d in dets {
                let n = self.name(d.class_id);
                match counts.iter_mut().find(|(c, _)| *c == n) {
                    Some((_, k)) => *k += 1,
                    None => counts.push((n, 1)),
                }
            }
            let what = counts
                .iter()
                .map(|(c, k)| format!("{k} {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                o,
                "frame {index}{at}: {} objects{}{what}   [{:.1} ms]",
                dets.len(),
                if what.is_empty() { "" } else { ": " },
                t.total().as_secs_f64() * 1000.0
            )?;
            for d in dets {
                let [x1, y1, x2, y2] = d.bbox.to_pixels(w, h);
                writeln!(
                    o,
                    "    {:<14} {:.2}   x {:>4.0}..{:<4.0}  y {:>4.0}..{:.0}",
                    self.name(d.class_id),
                    d.score,
                    x1,
                    x2,
                    y1,
                    y2
                )?;
            }
        }
        Ok(())
    }

    fn summary(&self) {
        if self.frames == 0 {
            return;
        }
        let n = self.frames as f64;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / n;
        let t = &self.timings;
        let mut classes: Vec<(usize, u64)> = self
            .per_class
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, k)| *k > 0)
            .collect();
        classes.sort_by_key(|c| std::cmp::Reverse(c.1));
        let classes = classes
            .iter()
            .map(|(c, k)| format!("{} {k}", self.name(*c as u16)))
            .collect::<Vec<_>>()
            .join(", ");
        eprintln!(
            "{} frames in {:.1} s; per frame {:.1} ms (preprocess {:.1}, inference {:.1}, postprocess {:.2}); objects: {}",
            self.frames,
            self.started.elapsed().as_secs_f64(),
            ms(t.total()),
            ms(t.preprocess),
            ms(t.inference),
            ms(t.postprocess),
            if classes.is_empty() { "none".to_string() } else { classes }
        );
    }
}
