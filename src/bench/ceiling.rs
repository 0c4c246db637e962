//! The two ceilings of this machine, measured in the same run as the pipeline: how fast the
//! cameras' own GStreamer decode runs with nothing after it, and how many frames per second the
//! detector pool serves with nothing else running. Together they give the number of streams the
//! machine could serve if the rest (scaling, tracking, rules, wall, MQTT) were free.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use super::report::{DecodeCeiling, Footage, InferenceCeiling};
use super::setup;
use super::BenchError;
use crate::config::Config;
use crate::detect::Detector;
use crate::ingest::reader::{ReadOptions, VideoReader};
use crate::ingest::{CameraSettings, SourceKind, Templates};
use crate::model::{Image, PixelFormat};
use crate::procfs;

/// What decodes the compressed video of the cameras' source templates (`parse`), as their
/// branches do.
const DECODE: &str =
    "parse. ! decodebin name=dec caps=\"video/x-raw(ANY)\" expose-all-streams=false";

/// The launch line of the cameras' file template (source + parser) and a decoder, ending in
/// `branches`.
fn decode_line(base: &Config, footage: &Path, branches: &str) -> Result<String, BenchError> {
    let templates = Templates::load(
        base.ingest
            .pipelines_dir
            .as_ref()
            .map(|p| base.resolve(p))
            .as_deref(),
    )?;
    // The same template parameters a bench camera gets (only the head's are used here).
    let cfg = setup::bench_config(base, 1, footage, false, false, &std::env::temp_dir())?;
    let params = CameraSettings::from_config(&cfg, (416, 416))
        .into_iter()
        .next()
        .ok_or_else(|| BenchError::Usage("no camera in the bench config".into()))?
        .template_params();
    Ok(templates.render_with_branches(
        SourceKind::File,
        &params,
        &format!("{DECODE}\n{branches}"),
    )?)
}

fn launch(line: &str) -> Result<gst::Pipeline, BenchError> {
    crate::ingest::init_gstreamer()?;
    gst::parse::launch(line)
        .map_err(|e| BenchError::Gst(format!("{e}: {line}")))?
        .dynamic_cast::<gst::Pipeline>()
        .map_err(|_| BenchError::Gst(format!("not a pipeline: {line}")))
}

/// Pops errors off a pipeline's bus; seeks back to the start at the end of the file.
fn pump_bus(p: &gst::Pipeline) -> Result<(), BenchError> {
    let Some(bus) = p.bus() else {
        return Ok(());
    };
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Error(e) => {
                return Err(BenchError::Gst(format!(
                    "{} ({})",
                    e.error(),
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default()
                )))
            }
            gst::MessageView::Eos(_) => {
                p.seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                    gst::ClockTime::ZERO,
                )
                .map_err(|e| BenchError::Gst(format!("cannot loop the footage: {e}")))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Size, frame rate and length of the footage, through the cameras' decode.
pub fn probe_footage(base: &Config, footage: &Path) -> Result<Footage, BenchError> {
    let line = decode_line(base, footage, "dec. ! fakesink name=sink sync=false")?;
    let p = launch(&line)?;
    let result = (|| {
        p.set_state(gst::State::Paused)
            .map_err(|e| BenchError::Gst(format!("cannot open {}: {e}", footage.display())))?;
        let bus = p
            .bus()
            .ok_or_else(|| BenchError::Gst("pipeline has no bus".into()))?;
        let msg = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::AsyncDone, gst::MessageType::Error],
        );
        if let Some(m) = &msg {
            if let gst::MessageView::Error(e) = m.view() {
                return Err(BenchError::Gst(format!(
                    "cannot decode {}: {}",
                    footage.display(),
                    e.error()
                )));
            }
        } else {
            return Err(BenchError::Gst(format!(
                "{} did not preroll within 20 s",
                footage.display()
            )));
        }
        let caps = p
            .by_name("sink")
            .and_then(|s| s.static_pad("sink"))
            .and_then(|pad| pad.current_caps())
            .ok_or_else(|| BenchError::Gst("no caps on the decoded stream".into()))?;
        let info = gst_video::VideoInfo::from_caps(&caps)
            .map_err(|e| BenchError::Gst(format!("not a video stream: {e}")))?;
        let fps = info.fps();
        let fps = if fps.denom() > 0 && fps.numer() > 0 {
            fps.numer() as f64 / fps.denom() as f64
        } else {
            0.0
        };
        let duration = p
            .query_duration::<gst::ClockTime>()
            .map(|d| d.nseconds() as f64 / 1e9)
            .unwrap_or(0.0);
        if fps <= 0.0 {
            return Err(BenchError::Usage(format!(
                "{} has no fixed frame rate; the bench needs one to know what real time is",
                footage.display()
            )));
        }
        Ok(Footage {
            path: footage.display().to_string(),
            width: info.width(),
            height: info.height(),
            fps,
            duration_s: duration,
        })
    })();
    let _ = p.set_state(gst::State::Null);
    result
}

/// Decode-only throughput: `pipelines` copies of the cameras' decode into fakesinks, as fast
/// as they go, side by side; frames counted over `seconds` after a second of warm-up. Each
/// decoder has the threads a camera's gets (not those of a file decoded as fast as possible):
/// the ceiling is the cost of the run's decoding.
pub fn decode(
    base: &Config,
    footage: &Path,
    pipelines: usize,
    seconds: f64,
    tick: &dyn Fn(f64),
) -> Result<DecodeCeiling, BenchError> {
    let line = decode_line(
        base,
        footage,
        "dec. ! fakesink name=ceiling_sink sync=false async=false",
    )?;
    let counter = Arc::new(AtomicU64::new(0));
    let mut ps = Vec::new();
    let threads = crate::ingest::decoder::threads_for(
        base.ingest.decoder_threads,
        crate::ingest::Pacing::Realtime,
    );
    for _ in 0..pipelines.max(1) {
        let p = launch(&line)?;
        crate::ingest::decoder::limit_threads(p.upcast_ref(), threads);
        let c = counter.clone();
        let pad = p
            .by_name("ceiling_sink")
            .and_then(|s| s.static_pad("sink"))
            .ok_or_else(|| BenchError::Gst("the ceiling sink has no pad".into()))?;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        ps.push(p);
    }
    let result = (|| {
        for p in &ps {
            p.set_state(gst::State::Playing)
                .map_err(|e| BenchError::Gst(format!("cannot play the footage: {e}")))?;
        }
        let pump = |until: Instant| -> Result<(), BenchError> {
            while Instant::now() < until {
                for p in &ps {
                    pump_bus(p)?;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        };
        pump(Instant::now() + Duration::from_secs(1))?;
        let (t0, f0, c0) = (
            Instant::now(),
            counter.load(Ordering::Relaxed),
            procfs::cpu_seconds(None).unwrap_or(0.0),
        );
        let end = t0 + Duration::from_secs_f64(seconds);
        while Instant::now() < end {
            pump((Instant::now() + Duration::from_millis(250)).min(end))?;
            tick(t0.elapsed().as_secs_f64());
        }
        let (dt, frames, cpu) = (
            t0.elapsed().as_secs_f64(),
            counter.load(Ordering::Relaxed) - f0,
            procfs::cpu_seconds(None).unwrap_or(0.0) - c0,
        );
        Ok(DecodeCeiling {
            pipelines: ps.len(),
            frames,
            seconds: dt,
            fps: frames as f64 / dt,
            cpu_percent: cpu / dt * 100.0,
            cpu_ms_per_frame: if frames > 0 {
                cpu * 1000.0 / frames as f64
            } else {
                0.0
            },
        })
    })();
    for p in &ps {
        let _ = p.set_state(gst::State::Null);
    }
    result
}

/// Model-only throughput of the detector pool as configured: one caller per session (as the
/// frame loop has), each sending frames of the footage at the model's input size, for
/// `seconds` after a second of warm-up.
pub fn inference(
    cfg: &Config,
    footage: &Path,
    seconds: f64,
    tick: &dyn Fn(f64),
) -> Result<InferenceCeiling, BenchError> {
    let det = Detector::load(cfg)?;
    let (w, h) = det.input_size();
    let frames: Vec<Image> = VideoReader::open(
        footage,
        &ReadOptions {
            size: Some((w, h)),
            format: PixelFormat::Bgr,
            fps: Some(1.0),
        },
    )?
    .take(8)
    .map(|f| f.map(|f| f.image))
    .collect::<Result<_, _>>()?;
    if frames.is_empty() {
        return Err(BenchError::Usage(format!(
            "{} has no frames",
            footage.display()
        )));
    }
    let batch = det.batch_size().max(1);
    let callers = det.sessions().max(1);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let failed: parking_lot::Mutex<Option<String>> = parking_lot::Mutex::new(None);
    let measured = std::thread::scope(|scope| {
        for k in 0..callers {
            let (det, frames, done, stop, failed) = (&det, &frames, &done, &stop, &failed);
            scope.spawn(move || {
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let imgs: Vec<&Image> = (0..batch)
                        .map(|j| &frames[(i + j) % frames.len()])
                        .collect();
                    i += batch;
                    match det.detect_batch(&imgs) {
                        Ok(_) => {
                            done.fetch_add(imgs.len() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *failed.lock() = Some(e.to_string());
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        let (t0, f0, c0) = (
            Instant::now(),
            done.load(Ordering::Relaxed),
            procfs::cpu_seconds(None).unwrap_or(0.0),
        );
        let end = t0 + Duration::from_secs_f64(seconds);
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(250)));
            tick(t0.elapsed().as_secs_f64());
        }
        let r = (
            t0.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed) - f0,
            procfs::cpu_seconds(None).unwrap_or(0.0) - c0,
        );
        stop.store(true, Ordering::Relaxed);
        r
    });
    if let Some(e) = failed.lock().take() {
        return Err(BenchError::Protocol(format!("inference ceiling: {e}")));
    }
    let (dt, n, cpu) = measured;
    Ok(InferenceCeiling {
        sessions: det.sessions(),
        threads: cfg.detect.threads,
        max_batch: batch,
        frames: n,
        seconds: dt,
        fps: n as f64 / dt,
        cpu_percent: cpu / dt * 100.0,
        cpu_ms_per_frame: if n > 0 { cpu * 1000.0 / n as f64 } else { 0.0 },
    })
}
