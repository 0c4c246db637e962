//! For the analytics tests: real footage, the detector's output on it, and a site config.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use simpang::config::{Config, Site};
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{AnalyticsFrame, BBox, Detection, Image, Labels, PixelFormat, SiteId};

use super::root;

pub fn coco() -> Labels {
    let text = std::fs::read_to_string(root().join("models/nanodet-m-416/coco80.txt")).unwrap();
    Arc::from(
        text.lines()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>(),
    )
}

/// vtest.mp4 at the model's input size, 5 frames per second.
pub fn vtest() -> VideoReader {
    VideoReader::open(
        &root().join("samples/vtest.mp4"),
        &ReadOptions {
            size: Some((416, 416)),
            format: PixelFormat::Bgr,
            fps: Some(5.0),
        },
    )
    .unwrap()
}

/// NanoDet's detections on vtest (tests/analytics_data/make_dets.py), by frame index.
pub fn vtest_detections() -> HashMap<u64, Vec<Detection>> {
    let text =
        std::fs::read_to_string(root().join("tests/analytics_data/vtest-dets.jsonl")).unwrap();
    let mut out = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let index = v["index"].as_u64().unwrap();
        let dets = v["dets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let f = |i: usize| d[i].as_f64().unwrap() as f32;
                Detection {
                    class_id: d[0].as_u64().unwrap() as u16,
                    score: f(1),
                    bbox: BBox::new(f(2), f(3), f(4), f(5)),
                }
            })
            .collect();
        out.insert(index, dets);
    }
    out
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 1, 0, 0).unwrap()
}

pub fn at(s: f64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds((s * 1000.0).round() as i64)
}

pub fn frame(s: f64, image: Image) -> AnalyticsFrame {
    AnalyticsFrame {
        site: SiteId::new("uji"),
        seq: (s * 5.0) as u64,
        captured_at: at(s),
        rule_at: at(s),
        pts: None,
        media_time: None,
        source_width: 768,
        source_height: 576,
        image,
    }
}

/// A site with the given zones / tamper tables (TOML).
pub fn site(tables: &str) -> Site {
    let text = format!(
        r#"
[city]
name = "Palembang"

[[sites]]
id = "uji"
name = "Uji"
address = "Jl. Uji"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:8554/uji"
{tables}
"#
    );
    Config::from_str_at(&text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .sites
        .remove(0)
}

/// Copies `src` (BGR, `sw` x `sh`) into `img` with its top-left at (x, y), clipped.
pub fn paste(img: &mut Image, x: i32, y: i32, src: &[u8], sw: i32, sh: i32) {
    let (w, h) = (img.width as i32, img.height as i32);
    for r in 0..sh {
        for c in 0..sw {
            let (tx, ty) = (x + c, y + r);
            if tx < 0 || ty < 0 || tx >= w || ty >= h {
                continue;
            }
            let d = ((ty * w + tx) * 3) as usize;
            let s = ((r * sw + c) * 3) as usize;
            img.data[d..d + 3].copy_from_slice(&src[s..s + 3]);
        }
    }
}

/// Cuts a `w` x `h` patch at (x, y) out of a BGR image.
pub fn cut(img: &Image, x: i32, y: i32, w: i32, h: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for r in y..y + h {
        let row = ((r * img.width as i32 + x) * 3) as usize;
        out.extend_from_slice(&img.data[row..row + (w * 3) as usize]);
    }
    out
}
