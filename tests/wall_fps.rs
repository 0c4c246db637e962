//! The display is not held by a slow detector while the wall is watched (MJPEG tiles, an RTSP
//! client of the mosaic) and the detector is configured slow (`detect.debug_delay_ms`).
//!
//! With 2 s added to every inference, two detector sessions manage at most one frame per
//! second for all three cameras together, far below the 3 x 5 fps asked for. Over a window of
//! 150 display frames per camera the test checks, by counting: analytics fell behind (and kept
//! running) and the frames it could not take were dropped, not queued; every frame the display
//! branch took (at the rate the burned-in outputs ask for: the mosaic's 10 fps here) reached
//! the display or was counted as dropped there; the display advanced far more than a display
//! paced by analytics could; the one MJPEG viewer got every part the wall counted as sent, and
//! nothing else, each a new picture.
//!
//! How close the wall's input stays to the source rate is `simpang bench`'s figure (per stream
//! frames, dropped and late, judged against 99 % of the source rate, with an MJPEG viewer and
//! an RTSP mosaic client attached), not a timed assertion here.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use sha2::{Digest, Sha256};
use support::metrics::Metrics;
use support::simpang::{Run, Samples};
use support::wait::eventually;
use support::wall::*;

const HANG: Duration = Duration::from_secs(180);

/// Parts the MJPEG viewer got per site, in order: (sha256 of the JPEG).
type Parts = Arc<Mutex<BTreeMap<String, Vec<[u8; 32]>>>>;

/// The frame rate a footage file declares (what the sample camera serves).
fn source_fps(site: &str) -> f64 {
    gst::init().unwrap();
    let path = support::root().join(format!("samples/sites/{site}.mp4"));
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse name=parse ! fakesink",
        path.display()
    ))
    .unwrap()
    .dynamic_cast::<gst::Pipeline>()
    .unwrap();
    p.set_state(gst::State::Paused).unwrap();
    let _ = p.state(gst::ClockTime::from_seconds(30));
    let caps = p
        .by_name("parse")
        .and_then(|e| e.static_pad("src"))
        .and_then(|pad| pad.current_caps())
        .expect("caps");
    let _ = p.set_state(gst::State::Null);
    let f = caps
        .structure(0)
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .expect("framerate");
    f.numer() as f64 / f.denom() as f64
}

fn counter(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}

/// A counter that may not exist yet (a series appears with its first increment): 0 then.
fn count(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site).unwrap_or(0.0)
}

#[test]
fn display_keeps_the_source_rate_while_the_wall_is_watched_and_detection_is_slow() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["charitas", "bkb", "ampera"];
    let samples = Samples::start(&shipped_config(), &sites, None);
    let delay_ms = 2000;
    let cfg = write_config(
        dir.path(),
        samples.port,
        &WallOpts {
            rtsp: true,
            debug_delay_ms: delay_ms,
            ..Default::default()
        },
    );
    let run = Run::start(&cfg, &sites);
    wait_cameras_online(&run, &sites);

    // Load: every tile over one MJPEG connection and an RTSP client of the mosaic.
    let sent0 = run.metrics();
    let stop = Arc::new(AtomicBool::new(false));
    let parts: Parts = Arc::default();
    let tiles = {
        let (url, stop, parts) = (run.url("/tiles.mjpg"), stop.clone(), parts.clone());
        std::thread::spawn(move || {
            let (_, body) = open_stream(&url);
            let mut mp = Multipart::new(body);
            while !stop.load(Ordering::Relaxed) {
                let Ok((headers, jpeg)) = mp.next_part() else {
                    break;
                };
                let site = headers
                    .iter()
                    .find(|(k, _)| k == "x-site")
                    .map(|(_, v)| v.clone())
                    .expect("a tiles part names its site (X-Site)");
                let hash: [u8; 32] = Sha256::digest(&jpeg).into();
                parts.lock().unwrap().entry(site).or_default().push(hash);
            }
        })
    };
    gst::init().unwrap();
    let client = gst::parse::launch(&format!(
        "rtspsrc location={} protocols=tcp latency=200 \
         ! decodebin ! fakesink sync=false",
        run.rtsp_url("/annotated/wall")
    ))
    .unwrap();
    client.set_state(gst::State::Playing).unwrap();
    eventually("mosaic encoding", HANG, || {
        metric(&run, "simpang_wall_rtsp_frames_total", "wall") > 0.0
    });

    // The window: 150 display frames per camera (5 to 15 s of media), however long it takes.
    let window = 150.0;
    let m0 = run.metrics();
    let m1 = eventually("150 display frames per camera", HANG, || {
        let m = run.metrics();
        sites
            .iter()
            .all(|s| {
                counter(&m, "simpang_display_frames_total", s)
                    - counter(&m0, "simpang_display_frames_total", s)
                    >= window
            })
            .then_some(m)
    });
    let d = |name: &str, s: &str| count(&m1, name, s) - count(&m0, name, s);

    // The viewer got every part the wall counted as sent to it (it is the only MJPEG viewer),
    // and never one the wall had not counted yet.
    let received = |p: &Parts, s: &str| p.lock().unwrap().get(s).map_or(0, Vec::len) as f64;
    let sent = |m: &Metrics, s: &str| {
        m.site("simpang_wall_mjpeg_frames_sent_total", s)
            .unwrap_or(0.0)
            - sent0
                .site("simpang_wall_mjpeg_frames_sent_total", s)
                .unwrap_or(0.0)
    };
    let counted = run.metrics();
    eventually(
        "the viewer to receive every part the wall sent",
        HANG,
        || {
            sites
                .iter()
                .all(|s| received(&parts, s) >= sent(&counted, s))
        },
    );
    let got: Vec<f64> = sites.iter().map(|s| received(&parts, s)).collect();
    let later = run.metrics();
    for (s, n) in sites.iter().zip(&got) {
        assert!(
            *n <= sent(&later, s),
            "{s}: the viewer got {n} parts, the wall counted {} sent",
            sent(&later, s)
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = client.set_state(gst::State::Null);
    tiles.join().unwrap();
    let parts = parts.lock().unwrap().clone();
    let total: usize = parts.values().map(Vec::len).sum();
    assert!(total > 50, "the MJPEG viewer got only {total} parts");
    for s in sites {
        let hashes = parts.get(s).map(Vec::as_slice).unwrap_or_default();
        assert!(!hashes.is_empty(), "{s}: no MJPEG part");
        // Each part is a new picture, not the last one again.
        let repeats = hashes.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(repeats, 0, "{s}: {repeats} parts repeated the part before");
    }

    let mut report = Vec::new();
    for s in sites {
        let (display, dropped_display, taken, decoded) = (
            d("simpang_display_frames_total", s),
            d("simpang_display_frames_dropped_total", s),
            d("simpang_display_decoded_total", s),
            d("simpang_frames_decoded_total", s),
        );
        let (delivered, processed, dropped) = (
            d("simpang_analytics_frames_total", s),
            d("simpang_analytics_processed_total", s),
            d("simpang_analytics_frames_dropped_total", s),
        );
        report.push(format!(
            "{s}: display {display} of {taken} taken, decoded {decoded}, analytics {delivered} \
             delivered {processed} processed {dropped} dropped"
        ));
        // Every frame the display branch took reached the display or was counted as dropped
        // there (frames in the display queue at the window's edges aside): nothing on the
        // display path waited for analytics, which has no queue of its own to hold them in.
        assert!(
            display + dropped_display >= taken - 4.0,
            "{s}: frames lost on the display path: {report:?}"
        );
        // It took frames at the rate its outputs ask for, not every decoded frame (bkb's 10 fps
        // camera is no faster than that rate).
        assert!(taken <= decoded + 4.0, "{s}: {report:?}");
        // Analytics ran, fell behind, and dropped what it could not take instead of queueing
        // it: one frame per site may wait and one be in the detector at each edge.
        assert!(processed > 0.0, "{s}: analytics stopped: {report:?}");
        assert!(
            processed < delivered && dropped > 0.0,
            "{s}: a {delay_ms} ms detector kept up with 3 cameras: {report:?}"
        );
        assert!(
            (delivered - processed - dropped).abs() <= 2.0,
            "{s}: analytics frames neither processed nor dropped (queued): {report:?}"
        );
        // A display paced by analytics would show at most source/detect frames per processed
        // one (the gate passes one frame in source/detect): twice that is far below a display
        // that keeps going.
        let per_processed = source_fps(s) / 5.0;
        assert!(
            display > 2.0 * per_processed * (processed + 2.0),
            "{s}: the display kept pace with analytics, not the camera: {report:?}"
        );
    }
    // The wall's own meter sees frames (its arithmetic is tested in wall::feed's unit tests;
    // its agreement with the source rate is the bench's display fps).
    for s in sites {
        assert!(
            metric(&run, "simpang_wall_display_fps", s) > 0.0,
            "{s}: the wall's display fps gauge says 0"
        );
    }
    eprintln!("over the window: {report:?}");
}
