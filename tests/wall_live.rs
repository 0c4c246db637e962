//! The browser wall's passthrough, against a real `simpang run` and real sample cameras, with a
//! WebSocket client in place of the browser (the browsers themselves: tests/wall_browser.rs):
//!
//! - `/live/{site}` sends a `hello`, an MP4 init segment and one fragment per camera frame,
//!   starting at a key frame; GStreamer decodes them (as a browser's MSE would) into pictures
//!   of the camera's own size that change; a late joiner starts at a key frame too;
//! - analytics results arrive on the same socket keyed by the media time of a frame that was
//!   sent (so a page can put boxes on the frame they were found in);
//! - while only such viewers are connected, nothing is decoded for display, scaled, drawn or
//!   encoded (the wall's counters stay at 0); an MJPEG client starts the display branch at the
//!   MJPEG rate and an annotated-RTSP client at every frame, and their departure stops it;
//! - incidents carry snapshots made from the frames analytics decoded, with no display frame;
//! - a foreign page's origin is refused, an unknown site is 404;
//! - an H.265 camera is not passed through: its `hello` says so, and the page shows its
//!   burned-in tile.

mod support;

use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use opencv::prelude::*;
use serde_json::Value;
use support::live::{decode_fmp4, LiveClient, Received};
use support::metrics::Metrics;
use support::simpang::{base_config, write, Run, Samples};
use support::wait::{eventually, poll};
use support::wall::{decode_jpeg, open_stream, Multipart};

const HANG: Duration = Duration::from_secs(180);

/// Every counter of display work, per site: all must stay put while only browsers watch.
const DISPLAY_WORK: [&str; 5] = [
    "simpang_display_decoded_total",
    "simpang_display_frames_total",
    "simpang_wall_frames_rendered_total",
    "simpang_wall_jpeg_frames_total",
    "simpang_wall_rtsp_frames_total",
];

fn work(m: &Metrics, site: &str) -> Vec<f64> {
    DISPLAY_WORK
        .iter()
        .map(|n| m.site(n, site).unwrap_or(0.0))
        .collect()
}

/// Two sites: charitas (640x360, 29.97 fps) and bkb (768x576, 10 fps, people walking) with a
/// crowd zone over the whole picture that one person fills, so incidents come quickly.
fn config(dir: &std::path::Path, samples: u16, rtsp_port: u16) -> std::path::PathBuf {
    let mut t = base_config(dir).replace(
        "rtsp_port = 0",
        &format!("rtsp_port = {rtsp_port}\nrtsp_address = \"127.0.0.1\""),
    );
    t += &format!(
        r#"
[[sites]]
id = "charitas"
name = "Simpang Charitas"
address = "Jl. Jenderal Sudirman, Palembang"
lat = -2.97
lon = 104.75
stream = "rtsp://127.0.0.1:{samples}/charitas"

[[sites]]
id = "bkb"
name = "Benteng Kuto Besak"
address = "Jl. Sultan Mahmud Badaruddin, Palembang"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:{samples}/bkb"

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

fn text_of(r: &Received) -> Option<&Value> {
    match r {
        Received::Text(v) => Some(v),
        _ => None,
    }
}

/// Reads the start of a live stream: the `hello`, then the init segment.
fn hello_and_init(c: &mut LiveClient) -> (Value, Vec<u8>) {
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
    match c.next() {
        Received::Binary(b) if b.kind == 1 => (hello, b.mp4),
        other => panic!("after the hello, the init segment: {other:?}"),
    }
}

#[test]
fn browser_tiles_get_the_cameras_own_h264_and_cost_no_display_work() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["charitas", "bkb"];
    let samples = Samples::start(&support::wall::shipped_config(), &sites, None);
    let cfg = config(dir.path(), samples.port, support::ports::port());
    let run = Run::start(&cfg, &sites);
    support::wall::wait_cameras_online(&run, &sites);

    // A tile per site, as the wall page opens them.
    let mut streams = Vec::new();
    for site in sites {
        let mut c = LiveClient::connect(&run.base, site, Some(&run.base)).unwrap();
        let (hello, init) = hello_and_init(&mut c);
        assert_eq!(hello["site"], site);
        assert!(
            hello["codecs"]
                .as_str()
                .is_some_and(|c| c.starts_with("avc1.64")),
            "the camera's own High profile: {hello}"
        );
        assert_eq!(hello["timescale"], 90_000);
        // 60 frames: 2 s of charitas, 6 s of bkb.
        let got = c.read_fragments(60, HANG);
        streams.push((site, c, hello, init, got));
    }

    for (site, _, hello, init, got) in &streams {
        let frags: Vec<_> = got
            .iter()
            .filter_map(|r| match r {
                Received::Binary(b) if b.kind == 2 => Some(b),
                _ => None,
            })
            .collect();
        assert!(frags[0].key, "{site}: a viewer starts at a key frame");
        let seqs: Vec<u32> = frags.iter().map(|f| f.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{site}: every frame, in order: {seqs:?}"
        );
        let times: Vec<u64> = frags.iter().map(|f| f.decode_time()).collect();
        assert!(
            times.windows(2).all(|w| w[1] > w[0]),
            "{site}: decode times increase"
        );
        // The camera's own timeline, not arrival times: every interval is a whole number of
        // frames. A frame the transport lost on a loaded machine (RTSP drops late packets)
        // leaves a gap of whole frames, which players bridge; arrival jitter would not.
        let frame = 90_000.0 * hello["frame_ms"].as_f64().unwrap() / 1000.0;
        let deltas: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            deltas.iter().all(|d| {
                let k = (*d as f64 / frame).round();
                k >= 1.0 && (*d as f64 - k * frame).abs() < 0.25 * frame
            }),
            "{site}: decode times off the camera's frame clock {deltas:?}"
        );
        assert!(
            frags.iter().all(|f| f.arrived_ms > 1.6e12),
            "{site}: arrival stamps"
        );

        // What a browser's MSE gets decodes: every frame, at the camera's own size.
        let mut mp4 = init.clone();
        for f in &frags {
            mp4.extend_from_slice(&f.mp4);
        }
        let (n, w, h, means) = decode_fmp4(&mp4, dir.path());
        assert_eq!(n, frags.len(), "{site}: frames decoded from the fragments");
        let want = if *site == "bkb" {
            (768, 576)
        } else {
            (640, 360)
        };
        assert_eq!((w, h), want, "{site}");
        assert_eq!(
            (hello["width"].as_u64(), hello["height"].as_u64()),
            (Some(want.0 as u64), Some(want.1 as u64))
        );
        let spread = means.iter().cloned().fold(f64::MIN, f64::max)
            - means.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.0, "{site}: the picture changes over the frames");
    }

    // Analytics results come on the same socket, keyed by the media time of a frame sent on
    // it: the page finds the frame a result belongs to.
    for (site, c, hello, _, got) in &mut streams {
        let mut sent: std::collections::HashSet<u64> = got
            .iter()
            .filter_map(|r| match r {
                Received::Binary(b) if b.kind == 2 => Some(b.decode_time()),
                _ => None,
            })
            .collect();
        let mut keyed = 0;
        let end = Instant::now() + HANG;
        while keyed < 3 {
            assert!(
                Instant::now() < end,
                "{site}: analytics keyed by sent frames: {keyed}"
            );
            match c.next() {
                Received::Binary(b) if b.kind == 2 => {
                    sent.insert(b.decode_time());
                }
                Received::Text(v) if v["type"] == "analytics" => {
                    assert_eq!(v["epoch"], hello["epoch"], "{site}: {v}");
                    let t = v["t"].as_u64().expect("a media time");
                    // A result can only be for a frame already sent (analytics decodes the
                    // frames the tap passed on).
                    assert!(
                        sent.contains(&t),
                        "{site}: result at {t} matches no sent frame"
                    );
                    assert!(
                        v["zones"].is_array() && v["tracks"].is_array() && v["lines"].is_array()
                    );
                    keyed += 1;
                }
                _ => {}
            }
        }
    }

    // An incident with its snapshot, made from the frames analytics decoded: nobody watches a
    // burned-in output, so there is no display frame to take it from.
    support::wall::check_crowd_snapshot(&run, "bkb", HANG);

    // All this without any display work, at either site.
    let m = run.metrics();
    for site in sites {
        assert_eq!(
            work(&m, site),
            vec![0.0; 5],
            "{site}: display work {DISPLAY_WORK:?}"
        );
        assert_eq!(m.site("simpang_wall_display_demand_fps", site), Some(0.0));
        assert!(m.site("simpang_wall_live_fragments_total", site).unwrap() >= 60.0);
        assert!(m.site("simpang_source_frames_total", site).unwrap() > 60.0);
        assert_eq!(m.site("simpang_wall_live_viewers", site), Some(1.0));
    }

    // A late joiner starts at a key frame too (the frames since the last one, then live).
    let mut late = LiveClient::connect(&run.base, "charitas", None).unwrap();
    let _ = hello_and_init(&mut late);
    let first = late
        .read_fragments(1, HANG)
        .into_iter()
        .find_map(|r| match r {
            Received::Binary(b) if b.kind == 2 => Some(b),
            _ => None,
        })
        .unwrap();
    assert!(first.key, "a late joiner starts at a key frame");
    drop(late);

    // An MJPEG viewer starts the display branch, at its rate, at its site only...
    let before = run.metrics();
    let (_, mjpeg) = open_stream(&run.url("/stream/charitas.mjpg"));
    let mut parts = Multipart::new(mjpeg);
    for _ in 0..5 {
        let (_, jpeg) = parts.next_part().expect("an MJPEG part");
        let img = decode_jpeg(&jpeg);
        assert_eq!((img.cols(), img.rows()), (640, 360));
    }
    let during = run.metrics();
    assert_eq!(
        during.site("simpang_wall_display_demand_fps", "charitas"),
        Some(10.0)
    );
    let grew = |name: &str| {
        during.site(name, "charitas").unwrap_or(0.0) > before.site(name, "charitas").unwrap_or(0.0)
    };
    for name in [
        "simpang_display_decoded_total",
        "simpang_display_frames_total",
        "simpang_wall_frames_rendered_total",
        "simpang_wall_jpeg_frames_total",
    ] {
        assert!(grew(name), "{name} did not grow with an MJPEG viewer");
    }
    assert_eq!(
        work(&during, "bkb"),
        vec![0.0; 5],
        "bkb has no burned-in viewer"
    );
    // ... and its departure stops it.
    drop(parts);
    stops(&run, "charitas");

    // An annotated-RTSP client takes every frame: the display branch runs at the source rate
    // while it plays, and stops when it leaves.
    gst::init().unwrap();
    let before = run.metrics();
    let client = gst::parse::launch(&format!(
        "rtspsrc location={} protocols=tcp latency=100 \
         ! rtph264depay ! fakesink sync=false",
        run.rtsp_url("/annotated/bkb")
    ))
    .unwrap();
    client.set_state(gst::State::Playing).unwrap();
    eventually("the RTSP client's frames encoded", HANG, || {
        run.metric("simpang_wall_rtsp_frames_total", "bkb")
            .unwrap_or(0.0)
            > before
                .site("simpang_wall_rtsp_frames_total", "bkb")
                .unwrap_or(0.0)
                + 10.0
    });
    let m = run.metrics();
    assert_eq!(
        m.site("simpang_wall_display_demand_fps", "bkb"),
        Some(f64::INFINITY),
        "a per-site RTSP stream takes every frame"
    );
    client.set_state(gst::State::Null).unwrap();
    stops(&run, "bkb");

    // The passthrough viewers were never disturbed.
    for (site, c, ..) in &mut streams {
        let more = c.read_fragments(10, HANG);
        assert!(
            more.iter()
                .any(|r| matches!(r, Received::Binary(b) if b.kind == 2)),
            "{site}"
        );
    }
    drop(streams);
    eventually("live viewers gone", HANG, || {
        let m = run.metrics();
        sites
            .iter()
            .all(|s| m.site("simpang_wall_live_viewers", s) == Some(0.0))
    });
}

/// After the last burned-in viewer of `site` leaves: the demand returns to 0 and the display
/// work stops (two readings a second apart agree).
fn stops(run: &Run, site: &str) {
    eventually(&format!("{site}: display demand back to 0"), HANG, || {
        run.metric("simpang_wall_display_demand_fps", site) == Some(0.0)
    });
    let settled = poll(HANG, || {
        let a = work(&run.metrics(), site);
        std::thread::sleep(Duration::from_secs(1));
        let b = work(&run.metrics(), site);
        (a == b).then_some(b)
    });
    assert!(
        settled.is_some(),
        "{site}: display work goes on without viewers"
    );
}

#[test]
fn foreign_origins_and_unknown_sites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let samples = Samples::start(&support::wall::shipped_config(), &["charitas"], None);
    let cfg = config(dir.path(), samples.port, 0);
    // Only charitas: bkb's camera is not served, and does not need to be for this.
    let run = Run::start(&cfg, &["charitas"]);
    let err = LiveClient::connect(&run.base, "charitas", Some("http://evil.example"))
        .err()
        .expect("a foreign origin is refused");
    assert!(err.contains("403"), "{err}");
    let err = LiveClient::connect(&run.base, "nope", None)
        .err()
        .expect("an unknown site");
    assert!(err.contains("404"), "{err}");
    assert_eq!(
        run.metric("simpang_wall_live_refused_total", "charitas"),
        Some(1.0)
    );
    let api: Value = ureq::get(&run.url("/api/wall"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(api["sites"][0]["live"], "/live/charitas");
}

/// An H.265 camera (a file encoded here with x265) is not passed through: browsers cannot all
/// play it. Its `hello` says what it is, and the page shows its burned-in tile instead.
#[test]
fn an_h265_camera_is_not_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    gst::init().unwrap();
    let clip = dir.path().join("h265.mp4");
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=50 pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! x265enc speed-preset=ultrafast key-int-max=10 ! h265parse ! mp4mux ! filesink location=\"{}\"",
        clip.display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the H.265 clip is written");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    p.set_state(gst::State::Null).unwrap();

    let mut t = base_config(dir.path());
    t = t.replace(
        "[ingest]\n",
        "[ingest]\nfiles_realtime = true\nfiles_loop = true\n",
    );
    t += &support::simpang::site_block("hevc", &clip.display().to_string());
    let cfg = write(dir.path(), "simpang.toml", &t);
    let run = Run::start(&cfg, &[]);
    let mut c = LiveClient::connect(&run.base, "hevc", None).unwrap();
    let end = Instant::now() + HANG;
    let hello = loop {
        assert!(Instant::now() < end, "no hello");
        if let Some(v) = text_of(&c.next()) {
            if v["type"] == "hello" {
                break v.clone();
            }
        }
    };
    assert_eq!(hello["passthrough"], false, "{hello}");
    assert_eq!(hello["media_type"], "video/x-h265", "{hello}");
    assert!(hello["reason"].is_string());
    // The burned-in tile works for it (it is what the page shows).
    let (_, body) = open_stream(&run.url("/stream/hevc.mjpg"));
    let (_, jpeg) = Multipart::new(body).next_part().expect("an MJPEG part");
    let img = decode_jpeg(&jpeg);
    assert_eq!((img.cols(), img.rows()), (640, 360));
}
