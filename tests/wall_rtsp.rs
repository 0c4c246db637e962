//! Annotated RTSP out from a real `simpang run`: a GStreamer client receives and decodes the
//! per-site mount and the mosaic; clients of one mount share one encode; no client, no encode.
//! Counted, not timed: how fast the encoder keeps up is `simpang bench`'s figure (its RTSP
//! mosaic client's fps and the `x264_site` / `x264_mosaic` stage rows).

mod support;

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video::prelude::*;
use support::metrics::Metrics;
use support::simpang::{Run, Samples};
use support::wait::eventually;
use support::wall::*;

const HANG: Duration = Duration::from_secs(180);

/// Waits until these counters stop: equal over 2 s, and again over the next 2 s.
fn wait_still(run: &Run, what: &str, read: impl Fn(&Metrics) -> Vec<f64>) {
    let sample = || {
        let a = read(&run.metrics());
        std::thread::sleep(Duration::from_secs(2));
        (a, read(&run.metrics()))
    };
    eventually(what, HANG, || {
        let (a, b) = sample();
        (a == b).then_some(())
    });
    let (a, b) = sample();
    assert_eq!(a, b, "{what}: it started again");
}

/// Decoded I420 frames from an RTSP URL: (width, height, luma stddev of the frame) per frame.
struct Client {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Client {
    fn open(url: &str) -> Client {
        gst::init().unwrap();
        let p = gst::parse::launch(&format!(
            "rtspsrc location={url} protocols=tcp latency=200 \
             ! decodebin ! videoconvert ! video/x-raw,format=I420 \
             ! appsink name=sink sync=false max-buffers=4 drop=true"
        ))
        .unwrap()
        .dynamic_cast::<gst::Pipeline>()
        .unwrap();
        let sink = p
            .by_name("sink")
            .unwrap()
            .dynamic_cast::<gst_app::AppSink>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        Client { pipeline: p, sink }
    }

    /// Pulls `n` frames; panics if they do not come within `timeout`.
    fn frames(&self, n: usize, timeout: Duration) -> Vec<(u32, u32, f64, Vec<u8>)> {
        let end = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "got {} of {n} frames in {timeout:?}",
                out.len()
            );
            let Some(s) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(left.as_millis() as u64))
            else {
                continue;
            };
            let caps = s.caps().unwrap();
            let info = gstreamer_video::VideoInfo::from_caps(caps).unwrap();
            let buf = s.buffer().unwrap();
            let frame =
                gstreamer_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).unwrap();
            let (w, h) = (info.width(), info.height());
            let stride = frame.plane_stride()[0] as usize;
            let data = frame.plane_data(0).unwrap();
            let mut y = Vec::with_capacity((w * h) as usize);
            for r in 0..h as usize {
                y.extend_from_slice(&data[r * stride..r * stride + w as usize]);
            }
            let sd = stddev(&y);
            out.push((w, h, sd, y));
        }
        out
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn stddev(v: &[u8]) -> f64 {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// Luma stddev of a rectangle of a `w`-wide luma plane.
fn region_sd(y: &[u8], w: u32, x0: u32, y0: u32, rw: u32, rh: u32) -> f64 {
    let mut v = Vec::new();
    for r in y0..y0 + rh {
        let s = (r * w + x0) as usize;
        v.extend_from_slice(&y[s..s + rw as usize]);
    }
    stddev(&v)
}

#[test]
fn annotated_rtsp_site_and_mosaic_decode_share_one_encode_and_stop_without_clients() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["charitas", "bkb"];
    let samples = Samples::start(&shipped_config(), &sites, None);
    let cfg = write_config(
        dir.path(),
        samples.port,
        &WallOpts {
            layout: "2x1",
            mosaic_fps: 10.0,
            rtsp: true,
            ..Default::default()
        },
    );
    let mut run = Run::start(&cfg, &sites);
    wait_cameras_online(&run, &sites);
    assert_eq!(
        metric(&run, "simpang_wall_rtsp_frames_total", "charitas"),
        0.0
    );

    // Per-site mount: tile size, real picture.
    let url = run.rtsp_url("/annotated/charitas");
    let a = Client::open(&url);
    let frames = a.frames(15, HANG);
    for (w, h, sd, _) in &frames {
        assert_eq!((*w, *h), (640, 360));
        assert!(*sd > 12.0, "flat frame (luma sd {sd})");
    }
    assert_eq!(viewers(&run, "charitas", "rtsp"), 1.0);

    // A second client of the same mount shares the encoder: over 60 display frames, no more
    // frames are encoded than displayed (two encoders would encode each twice).
    let b = Client::open(&url);
    b.frames(5, HANG);
    assert_eq!(viewers(&run, "charitas", "rtsp"), 2.0);
    let count = |m: &Metrics| {
        (
            metric_of(m, "simpang_wall_rtsp_frames_total", "charitas"),
            metric_of(m, "simpang_display_frames_total", "charitas"),
        )
    };
    let (f0, d0) = count(&run.metrics());
    let (f1, d1) = eventually("60 display frames with two clients", HANG, || {
        let c = count(&run.metrics());
        (c.1 - d0 >= 60.0).then_some(c)
    });
    let (enc, disp) = (f1 - f0, d1 - d0);
    assert_eq!(viewers(&run, "charitas", "rtsp"), 2.0);
    assert!(
        enc > 0.0 && enc <= disp * 1.1 + 1.0,
        "two clients: {enc} encoded frames for {disp} display frames"
    );
    // Both clients still get pictures from it.
    a.frames(3, HANG);
    b.frames(3, HANG);
    drop(a);
    drop(b);

    // Mosaic: both sites side by side in one picture.
    let m = Client::open(&run.rtsp_url("/annotated/wall"));
    let frames = m.frames(10, HANG);
    let (w, h, _, y) = frames.last().unwrap();
    assert_eq!((*w, *h), (1280, 360));
    let left = region_sd(y, *w, 200, 80, 240, 220);
    let right = region_sd(y, *w, 640 + 200, 80, 240, 220);
    assert!(left > 12.0 && right > 12.0, "cells: {left:.1} {right:.1}");
    assert_eq!(viewers(&run, "wall", "rtsp"), 1.0);
    drop(m);

    // No client left: no encoding, no drawing.
    eventually("RTSP clients gone", HANG, || {
        ["charitas", "wall"]
            .iter()
            .all(|s| viewers(&run, s, "rtsp") == 0.0)
    });
    wait_still(&run, "drawing and encoding to stop without clients", |m| {
        vec![
            metric_of(m, "simpang_wall_rtsp_frames_total", "charitas"),
            metric_of(m, "simpang_wall_rtsp_frames_total", "wall"),
            metric_of(m, "simpang_wall_frames_rendered_total", "bkb"),
        ]
    });

    // A connected RTSP client does not hold up shutdown.
    let c = Client::open(&url);
    c.frames(3, HANG);
    let status = run.proc.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "simpang run did not exit cleanly with an RTSP client connected: {status:?}"
    );
}

fn metric_of(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}
