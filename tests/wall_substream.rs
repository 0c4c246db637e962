//! A camera with a substream for detection (`detect_stream`), against a real `simpang run` and
//! real sample cameras (`simpang samples` serves each site's footage as `/<site>` and, from the
//! `X.sub.mp4` that scripts/make-footage.sh makes, `/<site>/sub`):
//!
//! - analytics decodes only the substream: the per-stream metrics count analytics frames and
//!   decoded frames of `stream="detect"` and none of `stream="main"`;
//! - the browser tile (`/live/{site}`) plays the main stream (its own size), and the analytics
//!   results on it are on the main stream's timeline (its epoch, times among its frames);
//! - an incident carries a snapshot, made from the substream frames analytics decoded;
//! - an MJPEG viewer makes the main stream decoded (for display only, never for analytics) and
//!   its departure stops that again.

mod support;

use std::time::{Duration, Instant};

use opencv::prelude::*;
use support::live::{LiveClient, Received};
use support::simpang::{base_config, write, Run, Samples};
use support::wait::{eventually, poll};
use support::wall::{decode_jpeg, open_stream, Multipart};

const HANG: Duration = Duration::from_secs(180);

/// bkb: main 768x576 at 10 fps, sub 480x360 at 5 fps; a crowd zone one person fills.
fn config(dir: &std::path::Path, samples: u16) -> std::path::PathBuf {
    let mut t = base_config(dir);
    t += &format!(
        r#"
[[sites]]
id = "bkb"
name = "Benteng Kuto Besak"
address = "Jl. Sultan Mahmud Badaruddin, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:{samples}/bkb"
detect_stream = "rtsp://127.0.0.1:{samples}/bkb/sub"

[[sites.zones]]
id = "pelataran"
name = "Pelataran"
kind = "crowd"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
[sites.zones.crowd]
min_persons = 1
smoothing_s = 0.5
dwell_s = 1.0
"#
    );
    write(dir, "simpang.toml", &t)
}

fn stream_metric(run: &Run, name: &str, stream: &str) -> f64 {
    run.metrics()
        .get(name, &[("site", "bkb"), ("stream", stream)])
        .unwrap_or_else(|| panic!("no {name}{{site=bkb,stream={stream}}} in /metrics"))
}

#[test]
fn analytics_decodes_only_the_substream_and_the_wall_plays_the_main_stream() {
    let sub = support::root().join("samples/sites/bkb.sub.mp4");
    assert!(
        sub.is_file(),
        "{} is missing: scripts/setup.sh makes it",
        sub.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let samples = Samples::start(&support::wall::shipped_config(), &["bkb"], None);
    let cfg = config(dir.path(), samples.port);
    let run = Run::start(&cfg, &["bkb"]);
    support::wall::wait_cameras_online(&run, &["bkb"]);

    // The browser tile plays the main stream, the camera's own size.
    let mut c = LiveClient::connect(&run.base, "bkb", Some(&run.base)).unwrap();
    let end = Instant::now() + HANG;
    let hello = loop {
        assert!(Instant::now() < end, "no hello");
        if let Received::Text(v) = c.next() {
            if v["type"] == "hello" {
                break v;
            }
        }
    };
    assert_eq!(hello["passthrough"], true, "{hello}");
    assert_eq!(
        (hello["width"].as_u64(), hello["height"].as_u64()),
        (Some(768), Some(576)),
        "the main stream, not the 480x360 substream: {hello}"
    );

    // Analytics results on the same socket, on the main stream's timeline: its epoch, and
    // times among the main stream's frames (the substream's own timestamps start elsewhere).
    let mut sent: Vec<u64> = Vec::new();
    let mut keyed = Vec::new();
    while keyed.len() < 5 {
        assert!(
            Instant::now() < end,
            "analytics on the main timeline: {keyed:?}"
        );
        match c.next() {
            Received::Binary(b) if b.kind == 2 => sent.push(b.decode_time()),
            // A result of a substream frame that arrived before the main stream's first frame
            // has no place on its timeline (the page draws it on no frame); once the main
            // stream flows, every result has one.
            Received::Text(v) if v["type"] == "analytics" && v["epoch"].is_null() => {
                assert!(keyed.is_empty(), "a result off the main timeline: {v}");
            }
            Received::Text(v) if v["type"] == "analytics" && !sent.is_empty() => {
                assert_eq!(v["epoch"], hello["epoch"], "{v}");
                let t = v["t"].as_u64().expect("a media time on the main stream");
                keyed.push(t);
            }
            _ => {}
        }
    }
    let (first, last) = (sent[0], *sent.last().unwrap());
    for t in &keyed {
        // 90 kHz ticks: within a second of the frames sent around it
        assert!(
            *t + 90_000 >= first && *t <= last + 90_000,
            "result at {t}, main frames sent {first}..{last}"
        );
    }

    // Only the substream is decoded, and only it feeds analytics.
    eventually("substream analytics frames", HANG, || {
        stream_metric(&run, "simpang_stream_analytics_frames_total", "detect") >= 10.0
    });
    assert!(stream_metric(&run, "simpang_stream_frames_decoded_total", "detect") >= 10.0);
    assert_eq!(
        stream_metric(&run, "simpang_stream_frames_decoded_total", "main"),
        0.0,
        "the main stream is decoded with no burned-in viewer"
    );
    assert_eq!(
        stream_metric(&run, "simpang_stream_analytics_frames_total", "main"),
        0.0
    );
    assert_eq!(stream_metric(&run, "simpang_stream_online", "detect"), 1.0);
    assert_eq!(stream_metric(&run, "simpang_stream_online", "main"), 1.0);
    // The main stream (10 fps) may have connected after the substream: wait for its frames.
    eventually("main stream frames reach the wall", HANG, || {
        run.metrics()
            .site("simpang_source_frames_total", "bkb")
            .unwrap_or(0.0)
            > 10.0
    });
    let m = run.metrics();
    assert_eq!(m.site("simpang_display_decoded_total", "bkb"), Some(0.0));

    // An incident with its snapshot, from the substream frames analytics decoded.
    support::wall::check_crowd_snapshot(&run, "bkb", HANG);
    assert_eq!(
        stream_metric(&run, "simpang_stream_frames_decoded_total", "main"),
        0.0
    );

    // A burned-in viewer has the main stream decoded, for display only...
    let (_, mjpeg) = open_stream(&run.url("/stream/bkb.mjpg"));
    let mut parts = Multipart::new(mjpeg);
    for _ in 0..5 {
        let (_, jpeg) = parts.next_part().expect("an MJPEG part");
        let img = decode_jpeg(&jpeg);
        assert_eq!((img.cols(), img.rows()), (640, 360), "the wall tile size");
    }
    assert!(stream_metric(&run, "simpang_stream_frames_decoded_total", "main") > 0.0);
    assert!(run.metric("simpang_display_decoded_total", "bkb").unwrap() > 0.0);
    assert_eq!(
        stream_metric(&run, "simpang_stream_analytics_frames_total", "main"),
        0.0,
        "the main stream never feeds analytics"
    );
    // ... and its departure stops decoding it (two readings a second apart agree).
    drop(parts);
    eventually("display demand back to 0", HANG, || {
        run.metric("simpang_wall_display_demand_fps", "bkb") == Some(0.0)
    });
    let settled = poll(HANG, || {
        let a = stream_metric(&run, "simpang_stream_frames_decoded_total", "main");
        std::thread::sleep(Duration::from_secs(1));
        let b = stream_metric(&run, "simpang_stream_frames_decoded_total", "main");
        (a == b).then_some(b)
    });
    assert!(settled.is_some(), "the main stream is still decoded");

    // The browser tile played on throughout.
    let more = c.read_fragments(10, HANG);
    assert!(more
        .iter()
        .any(|r| matches!(r, Received::Binary(b) if b.kind == 2)));
}
