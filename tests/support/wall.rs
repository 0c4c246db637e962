//! The wall as its viewers see it: a config derived from the shipped one with every listener on
//! loopback, MJPEG and SSE readers, and picture checks on decoded frames.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use opencv::core::{Mat, Vector};
use opencv::imgcodecs;
use opencv::prelude::*;

use super::ports;
use super::simpang::Run;
use super::wait::eventually;

/// Wall settings a test wants.
#[derive(Clone, Debug)]
pub struct WallOpts {
    pub layout: &'static str,
    pub mjpeg_fps: f64,
    pub mosaic_fps: f64,
    /// Annotated RTSP out on a port of its own ([`Run::rtsp_port`] says which); off otherwise.
    pub rtsp: bool,
    pub debug_delay_ms: u64,
}

impl Default for WallOpts {
    fn default() -> Self {
        Self {
            layout: "3x2",
            mjpeg_fps: 10.0,
            mosaic_fps: 10.0,
            rtsp: false,
            debug_delay_ms: 0,
        }
    }
}

/// The shipped config with streams pointed at the sample server on `samples_port`, every
/// listener on loopback (the wall on port 0, the embedded broker and RTSP out on ports of their
/// own), and data in `dir`.
pub fn write_config(dir: &Path, samples_port: u16, o: &WallOpts) -> PathBuf {
    let repo = super::root();
    let text = std::fs::read_to_string(repo.join("config/palembang.toml")).expect("config");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("toml");
    let abs = |p: &str| repo.join("config").join(p).display().to_string();
    doc["data_dir"] = toml_edit::value(dir.join("data").display().to_string());
    doc["detect"]["model"] = toml_edit::value(abs("../models/nanodet-m-416/manifest.toml"));
    doc["detect"]["ort_library"] =
        toml_edit::value(abs("../vendor-lib/onnxruntime/libonnxruntime.so"));
    doc["detect"]["debug_delay_ms"] = toml_edit::value(o.debug_delay_ms as i64);
    doc["samples"]["footage_dir"] = toml_edit::value(abs("../samples"));
    doc["mqtt"]["embedded_listen"] = toml_edit::value(format!("127.0.0.1:{}", ports::port()));
    doc["metrics"]["listen"] = toml_edit::value("127.0.0.1:0");
    let w = &mut doc["wall"];
    w["listen"] = toml_edit::value("127.0.0.1:0");
    w["layout"] = toml_edit::value(o.layout);
    w["tile_width"] = toml_edit::value(640);
    w["tile_height"] = toml_edit::value(360);
    w["mjpeg_fps"] = toml_edit::value(o.mjpeg_fps);
    w["mosaic_fps"] = toml_edit::value(o.mosaic_fps);
    w["rtsp_port"] = toml_edit::value(if o.rtsp { ports::port() as i64 } else { 0 });
    if let Some(sites) = doc["sites"].as_array_of_tables_mut() {
        for s in sites.iter_mut() {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            s["stream"] = toml_edit::value(format!("rtsp://127.0.0.1:{samples_port}/{id}"));
        }
    }
    let path = dir.join("simpang.toml");
    std::fs::write(&path, doc.to_string()).expect("write config");
    path
}

/// The shipped config.
pub fn shipped_config() -> PathBuf {
    super::root().join("config/palembang.toml")
}

/// Waits until every site's camera delivers frames.
pub fn wait_cameras_online(run: &Run, sites: &[&str]) {
    eventually("cameras online", Duration::from_secs(120), || {
        let m = run.metrics();
        sites
            .iter()
            .all(|s| m.site("simpang_camera_online", s) == Some(1.0))
    });
}

/// Viewers of one output (`mjpeg` or `rtsp`) of a site (or of the mosaic, site `wall`).
pub fn viewers(run: &Run, site: &str, output: &str) -> f64 {
    run.metrics()
        .get(
            "simpang_wall_viewers",
            &[("site", site), ("output", output)],
        )
        .unwrap_or_else(|| panic!("no simpang_wall_viewers{{site={site:?},output={output:?}}}"))
}

/// `name{site=SITE}` now, which must exist.
pub fn metric(run: &Run, name: &str, site: &str) -> f64 {
    run.metric(name, site)
        .unwrap_or_else(|| panic!("no {name}{{site={site:?}}} in /metrics"))
}

pub fn get_text(url: &str) -> String {
    ureq::get(url)
        .timeout(Duration::from_secs(10))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_string()
        .expect("body")
}

/// One part of a multipart body: lower-cased headers and the bytes.
pub type Part = (Vec<(String, String)>, Vec<u8>);

/// Reads parts of a `multipart/x-mixed-replace` body: (headers, body) per part.
pub struct Multipart<R: Read> {
    r: BufReader<R>,
}

impl<R: Read> Multipart<R> {
    pub fn new(r: R) -> Self {
        Self {
            r: BufReader::new(r),
        }
    }

    pub fn next_part(&mut self) -> std::io::Result<Part> {
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                if headers.is_empty() {
                    continue; // the CRLF after a part body
                }
                break;
            }
            if l.starts_with("--") {
                continue; // boundary
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| std::io::Error::other("part without Content-Length"))?;
        let mut body = vec![0; len];
        self.r.read_exact(&mut body)?;
        Ok((headers, body))
    }
}

/// Opens an HTTP stream (MJPEG, SSE) and returns its body reader.
pub fn open_stream(url: &str) -> (String, Box<dyn Read + Send>) {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(10))
        .timeout_read(Duration::from_secs(60))
        .build();
    let resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let ct = resp.header("content-type").unwrap_or("").to_string();
    (ct, Box::new(resp.into_reader()))
}

/// Decodes a JPEG with OpenCV (BGR).
pub fn decode_jpeg(bytes: &[u8]) -> Mat {
    let v = Vector::<u8>::from_slice(bytes);
    let m = imgcodecs::imdecode(&v, imgcodecs::IMREAD_COLOR).expect("imdecode");
    assert!(!m.empty(), "not a decodable JPEG ({} bytes)", bytes.len());
    m
}

/// Standard deviation of the gray levels of `m` inside `r` (picture content vs a flat fill).
pub fn gray_stddev(m: &Mat, r: opencv::core::Rect) -> f64 {
    let roi = Mat::roi(m, r).expect("roi");
    let mut gray = Mat::default();
    let src = if m.channels() == 1 {
        roi.try_clone().expect("clone")
    } else {
        opencv::imgproc::cvt_color(&roi, &mut gray, opencv::imgproc::COLOR_BGR2GRAY, 0)
            .expect("gray");
        gray
    };
    let (mut mean, mut sd) = (Mat::default(), Mat::default());
    opencv::core::mean_std_dev(&src, &mut mean, &mut sd, &opencv::core::no_array())
        .expect("stddev");
    *sd.at::<f64>(0).expect("sd")
}

/// The next `incident` event of a wall's SSE feed (`lines`) that `pred` accepts, within `hang`.
pub fn next_incident(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    hang: Duration,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = std::time::Instant::now() + hang;
    let (mut name, mut data) = (String::new(), String::new());
    while std::time::Instant::now() < end {
        let line = lines.next().expect("SSE stream ended").expect("SSE read");
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        } else if line.is_empty() && !data.is_empty() {
            if name == "incident" {
                let v: serde_json::Value = serde_json::from_str(&data).expect("incident JSON");
                if pred(&v) {
                    return v;
                }
            }
            name.clear();
            data.clear();
        }
    }
    panic!("no matching incident within {hang:?}");
}

/// Waits (up to `hang`) for a crowd incident of `site` on the wall's feed and checks its
/// snapshot: a JPEG of the camera's 4:3 picture (not the model's square input) with content.
pub fn check_crowd_snapshot(run: &Run, site: &str, hang: Duration) {
    let (_, body) = open_stream(&run.url("/events"));
    let mut lines = BufReader::new(body).lines();
    let inc = next_incident(&mut lines, hang, |v| {
        v["site"] == site && v["kind"] == "crowd" && v["snapshot_url"].is_string()
    });
    let url = run.url(inc["snapshot_url"].as_str().expect("snapshot_url"));
    let mut jpeg = Vec::new();
    ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .into_reader()
        .read_to_end(&mut jpeg)
        .expect("snapshot body");
    let snap = decode_jpeg(&jpeg);
    let aspect = snap.cols() as f64 / snap.rows() as f64;
    assert!(
        (aspect - 4.0 / 3.0).abs() < 0.02,
        "the snapshot has the camera's 4:3 aspect, not the model's square: {}x{}",
        snap.cols(),
        snap.rows()
    );
    assert!(
        gray_stddev(
            &snap,
            opencv::core::Rect::new(0, 0, snap.cols(), snap.rows())
        ) > 15.0,
        "the snapshot shows the picture"
    );
}
