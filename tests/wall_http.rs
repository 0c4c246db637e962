//! The web wall over HTTP: MJPEG tiles from a real `simpang run` fed by real sample cameras, the
//! SSE incident feed, offline tiles and the page itself. Counted, not timed: the rate a viewer
//! gets is `simpang bench`'s figure (its MJPEG viewer's fps against `wall.mjpeg_fps`).

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use opencv::core::Rect;
use opencv::prelude::*;
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::model::{
    DisplayFrame, Evidence, Image, Incident, IncidentEvent, IncidentKind, IncidentMessage,
    PixelFormat, Severity, SiteId, SiteResults, Snapshot, ZoneId, ZoneKind, ZoneState,
    INCIDENT_SCHEMA,
};
use simpang::wall::Wall;
use support::metrics::Metrics;
use support::simpang::{Run, Samples};
use support::wait::{eventually, poll};
use support::wall::*;

const MJPEG_FPS: f64 = 10.0;
const HANG: Duration = Duration::from_secs(120);

/// Reads `n` JPEG parts from an MJPEG URL; returns them decoded.
fn read_frames(url: &str, n: usize) -> Vec<Mat> {
    let (ct, body) = open_stream(url);
    assert!(
        ct.starts_with("multipart/x-mixed-replace") && ct.contains("boundary="),
        "{ct}"
    );
    let mut mp = Multipart::new(body);
    (0..n)
        .map(|_| {
            let (h, body) = mp.next_part().expect("part");
            assert!(h
                .iter()
                .any(|(k, v)| k == "content-type" && v == "image/jpeg"));
            decode_jpeg(&body)
        })
        .collect()
}

fn counter(m: &Metrics, name: &str, site: &str) -> f64 {
    m.site(name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}

#[test]
fn mjpeg_tiles_have_the_configured_size_and_one_encode_serves_every_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["charitas", "bkb"];
    let samples = Samples::start(&shipped_config(), &sites, None);
    let cfg = write_config(
        dir.path(),
        samples.port,
        &WallOpts {
            mjpeg_fps: MJPEG_FPS,
            ..Default::default()
        },
    );
    let mut run = Run::start(&cfg, &sites);
    wait_cameras_online(&run, &sites);

    // Nobody watches: nothing is decoded for display, scaled, drawn or encoded while 30 frames
    // per camera go by.
    let m0 = run.metrics();
    eventually("30 frames per camera", HANG, || {
        let m = run.metrics();
        sites.iter().all(|s| {
            counter(&m, "simpang_source_frames_total", s)
                - counter(&m0, "simpang_source_frames_total", s)
                >= 30.0
        })
    });
    for s in sites {
        for name in [
            "simpang_display_decoded_total",
            "simpang_display_frames_total",
            "simpang_wall_frames_rendered_total",
            "simpang_wall_jpeg_frames_total",
        ] {
            assert_eq!(metric(&run, name, s), 0.0, "{s}: {name}");
        }
    }

    // Two viewers of the same tile at once.
    let url = run.url("/stream/charitas.mjpg");
    let before = run.metrics();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || read_frames(&url, 30))
        })
        .collect();
    let results: Vec<_> = readers.into_iter().map(|v| v.join().unwrap()).collect();
    for frames in &results {
        assert_eq!(frames.len(), 30);
        for f in frames {
            assert_eq!((f.cols(), f.rows()), (640, 360), "configured tile size");
        }
        // real picture in the middle of the tile, not a flat fill
        let sd = gray_stddev(&frames[20], Rect::new(200, 100, 240, 200));
        assert!(sd > 12.0, "picture content stddev {sd}");
    }
    eventually("the viewers to be gone", HANG, || {
        viewers(&run, "charitas", "mjpeg") == 0.0
    });
    let after = run.metrics();
    // (A series appears with its first increment: none before is 0.)
    let d = |name: &str| {
        counter(&after, name, "charitas") - before.site(name, "charitas").unwrap_or(0.0)
    };
    let (encodes, sent) = (
        d("simpang_wall_jpeg_frames_total"),
        d("simpang_wall_mjpeg_frames_sent_total"),
    );
    // Every part the viewers read was counted as sent.
    assert!(sent >= 60.0, "{sent} parts counted for 60 read");
    // One encode per frame for both viewers: were it per viewer, there would be one encode per
    // part sent; shared, each encode goes to both (less what a viewer busy elsewhere skips).
    assert!(
        encodes * 1.3 < sent,
        "{encodes} encodes for {sent} parts sent to two viewers"
    );

    // The 4:3 camera is pillarboxed into the 16:9 tile: flat bars, picture in the middle.
    let frames = read_frames(&run.url("/stream/bkb.mjpg"), 10);
    for f in &frames {
        assert_eq!((f.cols(), f.rows()), (640, 360));
    }
    let last = &frames[9];
    let bar = gray_stddev(last, Rect::new(0, 40, 70, 300));
    let pic = gray_stddev(last, Rect::new(200, 60, 240, 280));
    assert!(bar < 4.0 && pic > 12.0, "bar sd {bar}, picture sd {pic}");

    // Viewers gone: the encoder stops (and stays stopped).
    eventually("no MJPEG viewers", HANG, || {
        sites.iter().all(|s| viewers(&run, s, "mjpeg") == 0.0)
    });
    let encoded = || metric(&run, "simpang_wall_jpeg_frames_total", "charitas");
    eventually("JPEG encoding to stop without viewers", HANG, || {
        let a = encoded();
        std::thread::sleep(Duration::from_secs(2));
        a == encoded()
    });
    let a = encoded();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(a, encoded(), "JPEG encoding went on without viewers");

    // A connected viewer does not hold up shutdown (the stream ends, the server stops).
    let (_, mut body) = open_stream(&url);
    let mut first = [0u8; 64];
    std::io::Read::read_exact(&mut body, &mut first).unwrap();
    let status = run.proc.terminate(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "simpang run did not exit cleanly with a viewer connected: {status:?}"
    );
}

/// A two-site wall config with its data (accounts, key) in `dir`.
fn small_config(rtsp_port: u16, dir: &std::path::Path) -> Config {
    let text = format!(
        r#"
data_dir = {data:?}
[city]
name = "Palembang"
[wall]
listen = "127.0.0.1:0"
rtsp_port = {rtsp_port}
layout = "2x1"
tile_width = 320
tile_height = 180
[[sites]]
id = "charitas"
name = "Simpang Charitas"
address = "Jl. Jend. Sudirman"
lat = -2.97
lon = 104.75
stream = "rtsp://127.0.0.1:9/none"
[[sites.zones]]
id = "sudirman"
name = "Pendekat Sudirman"
kind = "traffic_jam"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]
[[sites]]
id = "bkb"
name = "BKB"
address = "Jl. Sultan Mahmud Badaruddin"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:9/none"
"#,
        data = dir.display().to_string(),
    );
    Config::from_str_at(&text, &dir.join("wall-test.toml")).unwrap()
}

/// A wall on a hub the test controls (no cameras), served on a free port the way `simpang run`
/// serves it; `base` signs in as a wall device account.
struct LibWall {
    rt: tokio::runtime::Runtime,
    hub: Arc<Hub>,
    wall: Option<Wall>,
    base: String,
    _dir: tempfile::TempDir,
}

impl LibWall {
    fn start() -> LibWall {
        let dir = tempfile::tempdir().unwrap();
        let cfg = &small_config(0, dir.path());
        let device = support::simpang::wall_device_of(cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let hub = Hub::new(cfg.sites.iter().map(|s| SiteId::new(&s.id)));
        let registry = prometheus::Registry::new();
        let (wall, base) = rt.block_on(async {
            let wall = Wall::start(cfg, hub.clone(), Arc::from(Vec::new()), &registry).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = wall.router();
            tokio::spawn(simpang::guard::serve(
                listener,
                app,
                simpang::guard::Limits::default(),
                std::future::pending(),
            ));
            let base = support::simpang::with_login(&format!("http://{addr}"), &device);
            (wall, base)
        });
        LibWall {
            rt,
            hub,
            wall: Some(wall),
            base,
            _dir: dir,
        }
    }
}

impl Drop for LibWall {
    fn drop(&mut self) {
        if let Some(w) = self.wall.take() {
            w.stop();
        }
        let _ = &self.rt;
    }
}

fn jpeg_of(w: u32, h: u32) -> Vec<u8> {
    let mut img = Image::with_format(w, h, PixelFormat::I420);
    for (i, p) in img.data[..(w * h) as usize].iter_mut().enumerate() {
        *p = 16 + (i % w as usize * 200 / w as usize) as u8;
    }
    simpang::draw::overlay::encode_jpeg(&img, 80).unwrap()
}

fn incident(id: &str, event: IncidentEvent, seq: u32, snapshot: Option<&[u8]>) -> IncidentMessage {
    use base64::Engine;
    let now = Utc::now().fixed_offset();
    IncidentMessage {
        schema: INCIDENT_SCHEMA.into(),
        event,
        incident: Incident {
            id: id.into(),
            seq,
            site: "charitas".into(),
            site_name: "Simpang Charitas".into(),
            camera: "charitas".into(),
            kind: IncidentKind::TrafficJam,
            level: simpang::model::Level::Macet,
            title: "Kemacetan di Simpang Charitas".into(),
            title_en: "Traffic jam at Simpang Charitas".into(),
            description: "Antrean kendaraan di pendekat Jl. Sudirman".into(),
            description_en: "Queue on the Jl. Sudirman approach".into(),
            address: "Jl. Jend. Sudirman".into(),
            lat: -2.97,
            lon: 104.75,
            zone: Some("sudirman".into()),
            zone_name: Some("Pendekat Sudirman".into()),
            started_at: now,
            updated_at: now,
            ended_at: (event == IncidentEvent::End).then_some(now),
            evidence: Evidence {
                vehicle_count: Some(23),
                median_speed_kmh: Some(4.0),
                ..Default::default()
            },
            snapshot: snapshot.map(|j| Snapshot {
                content_type: "image/jpeg".into(),
                width: 64,
                height: 36,
                sha256: String::new(),
                path: "snapshots/x.jpg".into(),
                data_base64: base64::engine::general_purpose::STANDARD.encode(j),
            }),
        },
    }
}

/// Reads SSE events (name, data) until `pred` accepts one or `timeout` passes.
fn next_event(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    timeout: Duration,
    mut pred: impl FnMut(&str, &serde_json::Value) -> bool,
) -> (String, serde_json::Value) {
    let end = Instant::now() + timeout;
    let (mut name, mut data) = (String::new(), String::new());
    while Instant::now() < end {
        let line = lines.next().expect("SSE stream ended").expect("SSE read");
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        } else if line.is_empty() && !data.is_empty() {
            let v: serde_json::Value = serde_json::from_str(&data).expect("event JSON");
            if pred(&name, &v) {
                return (name, v);
            }
            name.clear();
            data.clear();
        }
    }
    panic!("no matching SSE event within {timeout:?}");
}

#[test]
fn events_deliver_published_incidents_with_snapshots_and_backlog() {
    use std::io::BufRead;
    let lw = LibWall::start();
    let (ct, body) = open_stream(&format!("{}/events", lw.base));
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut lines = std::io::BufReader::new(body).lines();
    // The first status line proves the stream (and its subscription) is live.
    let (_, status) = next_event(&mut lines, HANG, |n, _| n == "status");
    assert_eq!(status["sites"].as_array().map(|a| a.len()), Some(2));
    assert_eq!(status["sites"][0]["id"], "charitas");
    assert_eq!(status["sites"][0]["live"], false);

    let jpeg = jpeg_of(64, 36);
    lw.hub
        .incidents
        .send(incident(
            "charitas-jam-1",
            IncidentEvent::New,
            1,
            Some(&jpeg),
        ))
        .unwrap();
    let (_, inc) = next_event(&mut lines, HANG, |n, _| n == "incident");
    assert_eq!(inc["id"], "charitas-jam-1");
    assert_eq!(inc["event"], "new");
    assert_eq!(inc["open"], true);
    assert_eq!(inc["level"], "macet");
    assert_eq!(inc["evidence"]["vehicle_count"], 23);
    assert!(inc.get("snapshot").is_none(), "base64 must not be pushed");
    let snap_url = inc["snapshot_url"].as_str().expect("snapshot_url");
    let got = ureq::get(&format!("{}{snap_url}", lw.base)).call().unwrap();
    assert_eq!(got.header("content-type"), Some("image/jpeg"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut got.into_reader(), &mut bytes).unwrap();
    assert_eq!(bytes, jpeg);

    // The end of the incident reaches the open stream...
    lw.hub
        .incidents
        .send(incident("charitas-jam-1", IncidentEvent::End, 2, None))
        .unwrap();
    let (_, end) = next_event(&mut lines, HANG, |n, _| n == "incident");
    assert_eq!(
        (end["event"].as_str(), end["open"].as_bool()),
        (Some("end"), Some(false))
    );
    // ... keeping the snapshot it had.
    assert!(end["snapshot_url"].is_string());

    // A browser opening the wall later starts with the recent incidents.
    let (_, body2) = open_stream(&format!("{}/events", lw.base));
    let mut lines2 = std::io::BufReader::new(body2).lines();
    let (_, replay) = next_event(&mut lines2, HANG, |n, _| n == "incident");
    assert_eq!(replay["id"], "charitas-jam-1");
    assert_eq!(replay["event"], "end");

    let missing = ureq::get(&format!("{}/incidents/nope/snapshot.jpg", lw.base)).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
}

fn red_pixels(m: &Mat) -> usize {
    let mut n = 0;
    for y in 0..m.rows() {
        for x in 0..m.cols() {
            let p = m.at_2d::<opencv::core::Vec3b>(y, x).unwrap();
            if p[2] > 150 && p[1] < 90 && p[0] < 90 {
                n += 1;
            }
        }
    }
    n
}

/// One annotated tile as JPEG, also saved as target/screenshots/tile-{name}.jpg to look at.
fn snapshot(base: &str, site: &str, name: &str) -> Mat {
    let resp = ureq::get(&format!("{base}/snapshot/{site}.jpg"))
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap();
    assert_eq!(resp.header("content-type"), Some("image/jpeg"));
    let mut b = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut b).unwrap();
    let dir = support::root().join("target/screenshots");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("tile-{name}.jpg")), &b);
    decode_jpeg(&b)
}

#[test]
fn tiles_show_connecting_offline_and_live_states() {
    let lw = LibWall::start();
    let site = lw.hub.site("charitas").unwrap().clone();

    // Never connected, just started: amber "connecting" banner, tile size.
    let m = snapshot(&lw.base, "charitas", "connecting");
    assert_eq!((m.cols(), m.rows()), (320, 180));
    assert!(
        red_pixels(&m) < 60,
        "connecting is amber, not red: {}",
        red_pixels(&m)
    );

    // Was online, now lost: "KAMERA OFFLINE sejak ..." on red.
    site.update_status(|st| {
        st.online = false;
        st.since = Utc::now() - chrono::Duration::minutes(5);
        st.last_frame_at = Some(st.since);
        st.last_error = Some("no frames for 5.0 s".into());
        st.reconnects = 2;
    });
    let m = poll(HANG, || {
        let m = snapshot(&lw.base, "charitas", "offline");
        (red_pixels(&m) > 800).then_some(m)
    });
    assert!(
        m.is_some(),
        "offline banner: {} red px",
        red_pixels(&snapshot(&lw.base, "charitas", "offline"))
    );

    // Live frame with the zone in alert: picture shown, lower half tinted red.
    let mut img = Image::with_format(320, 180, PixelFormat::I420);
    img.data[..320 * 180].fill(110);
    site.results.store(Arc::new(SiteResults {
        captured_at: Some(Utc::now()),
        zones: vec![ZoneState {
            severity: Severity::Alert,
            watch: simpang::model::ZoneWatch::Live,
            level: Some(simpang::model::Level::Macet),
            count: 20,
            ..ZoneState::new(ZoneId::new("sudirman"), ZoneKind::TrafficJam)
        }],
        ..Default::default()
    }));
    // A live camera at 25 fps until the tile shows it.
    let live = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (site, live) = (site.clone(), live.clone());
        std::thread::spawn(move || {
            let mut seq = 0;
            while live.load(Ordering::Relaxed) {
                site.publish_display(DisplayFrame {
                    site: site.id.clone(),
                    seq,
                    captured_at: Utc::now(),
                    image: Arc::new(img.clone()),
                });
                seq += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    let pixels = |m: &Mat| {
        (
            *m.at_2d::<opencv::core::Vec3b>(60, 100).unwrap(),
            *m.at_2d::<opencv::core::Vec3b>(150, 100).unwrap(),
        )
    };
    // Once the live picture is drawn: gray outside the zone, red inside.
    let outside_gray = |u: &opencv::core::Vec3b| u[0].abs_diff(u[2]) < 12;
    let inside_red = |l: &opencv::core::Vec3b| l[2] as i32 - l[0] as i32 > 25;
    let shown = poll(HANG, || {
        let m = snapshot(&lw.base, "charitas", "alert");
        let (upper, lower) = pixels(&m);
        (outside_gray(&upper) && inside_red(&lower)).then_some(m)
    });
    let m = shown.unwrap_or_else(|| snapshot(&lw.base, "charitas", "alert"));
    live.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    let (upper, lower) = pixels(&m);
    assert!(
        outside_gray(&upper),
        "outside the zone stays gray: {upper:?}"
    );
    assert!(
        inside_red(&lower),
        "inside the alert zone tinted red: {lower:?}"
    );
}

#[test]
fn page_api_and_unknown_sites() {
    let lw = LibWall::start();
    let html = get_text(&format!("{}/", lw.base));
    assert!(html.contains("id=\"incident-feed\"") && html.contains("/wall.js"));
    assert!(get_text(&format!("{}/wall.js", lw.base)).contains("EventSource"));
    let api: serde_json::Value =
        serde_json::from_str(&get_text(&format!("{}/api/wall", lw.base))).unwrap();
    assert_eq!(
        (api["cols"].as_u64(), api["rows"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(api["sites"][1]["mjpeg"], "/stream/bkb.mjpg");
    assert_eq!(api["timezone"], "Asia/Jakarta");
    for path in [
        "/stream/nope.mjpg",
        "/stream/charitas.jpg",
        "/snapshot/nope.jpg",
        "/tiles.mjpg?sites=charitas,nope",
    ] {
        let r = ureq::get(&format!("{}{path}", lw.base)).call();
        assert!(matches!(r, Err(ureq::Error::Status(404, _))), "{path}");
    }
}
