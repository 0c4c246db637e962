//! Reading a video file frame by frame, for tools and tests (`simpang detect`, `simpang eval`,
//! the bench ceilings, test fixtures). Cameras use [`super::camera`] instead.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::frames::{copy_frame, RateGate};
use super::IngestError;
use crate::model::{Image, PixelFormat};

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Scale to this size (no aspect kept: the caller asked for exactly this); native if `None`.
    pub size: Option<(u32, u32)>,
    pub format: PixelFormat,
    /// Keep only this many frames per second of video time (evenly spaced); all if `None`.
    pub fps: Option<f64>,
}

/// A decoded frame and its position in the file.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    pub pts: Duration,
    /// Index among all decoded frames of the file (before `fps` decimation).
    pub index: u64,
    pub image: Image,
}

/// Decodes a file as fast as possible (no clock sync), with back-pressure: nothing is dropped.
pub struct VideoReader {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    gate: Option<RateGate>,
    index: u64,
    path: String,
    done: bool,
}

impl VideoReader {
    pub fn open(path: &Path, opts: &ReadOptions) -> Result<Self, IngestError> {
        super::init_gstreamer()?;
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(IngestError::Samples(format!(
                "video file {shown} does not exist"
            )));
        }
        let format = match opts.format {
            PixelFormat::Bgr => "BGR",
            PixelFormat::I420 => "I420",
        };
        let size = opts
            .size
            .map(|(w, h)| format!(",width={w},height={h},pixel-aspect-ratio=1/1"))
            .unwrap_or_default();
        let line = format!(
            "filesrc location=\"{}\" ! decodebin caps=\"video/x-raw(ANY)\" expose-all-streams=false \
             ! videoconvertscale add-borders=false ! video/x-raw,format={format}{size} \
             ! appsink name=sink sync=false max-buffers=4",
            shown.replace('"', "\\\"")
        );
        let err = |m: String| IngestError::Samples(format!("{shown}: {m}"));
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| err(e.to_string()))?
            .dynamic_cast::<gst::Pipeline>()
            .map_err(|_| err("not a pipeline".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
            .ok_or_else(|| err("no appsink".into()))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| err(format!("cannot play: {e}")))?;
        Ok(Self {
            pipeline,
            sink,
            gate: opts.fps.map(RateGate::new),
            index: 0,
            path: shown,
            done: false,
        })
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<VideoFrame>, IngestError> {
        while !self.done {
            let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            else {
                if self.sink.is_eos() {
                    self.done = true;
                    break;
                }
                self.check_bus()?;
                continue;
            };
            let index = self.index;
            self.index += 1;
            let (Some(buf), Some(caps)) = (sample.buffer(), sample.caps()) else {
                continue;
            };
            let pts = buf.pts().map(|t| t.nseconds()).unwrap_or(0);
            if let Some(g) = self.gate.as_mut() {
                if !g.admit(pts) {
                    continue;
                }
            }
            let info = gst_video::VideoInfo::from_caps(caps)
                .map_err(|e| IngestError::Samples(format!("{}: bad caps: {e}", self.path)))?;
            let mut image = Image::default();
            copy_frame(buf, &info, &mut image)
                .map_err(|e| IngestError::Samples(format!("{}: {e}", self.path)))?;
            return Ok(Some(VideoFrame {
                pts: Duration::from_nanos(pts),
                index,
                image,
            }));
        }
        self.check_bus()?;
        Ok(None)
    }

    fn check_bus(&self) -> Result<(), IngestError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(IngestError::Samples(format!(
                    "{}: cannot decode: {}",
                    self.path,
                    e.error()
                )));
            }
        }
        Ok(())
    }
}

impl Iterator for VideoReader {
    type Item = Result<VideoFrame, IngestError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

impl Drop for VideoReader {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vtest() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/vtest.mp4")
    }

    #[test]
    fn reads_scaled_decimated_frames() {
        let opts = ReadOptions {
            size: Some((320, 240)),
            format: PixelFormat::Bgr,
            fps: Some(2.0),
        };
        let frames: Vec<_> = VideoReader::open(&vtest(), &opts)
            .unwrap()
            .take(6)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(frames.len(), 6);
        for f in &frames {
            assert_eq!((f.image.width, f.image.height), (320, 240));
            assert!(f.image.is_valid());
        }
        // vtest is 10 fps: at 2 fps every 5th frame
        let idx: Vec<_> = frames.iter().map(|f| f.index).collect();
        assert_eq!(idx, vec![0, 5, 10, 15, 20, 25]);
        assert_eq!(frames[1].pts, Duration::from_millis(500));
    }

    #[test]
    fn missing_and_broken_files_are_errors() {
        let err = VideoReader::open(Path::new("/nonexistent.mp4"), &ReadOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent.mp4"), "{err}");
        let d = tempfile::tempdir().unwrap();
        let bad = d.path().join("bad.mp4");
        std::fs::write(&bad, b"this is not a video").unwrap();
        let mut r = VideoReader::open(&bad, &ReadOptions::default()).unwrap();
        let e = r.next_frame().unwrap_err().to_string();
        assert!(e.contains("bad.mp4"), "{e}");
    }
}
