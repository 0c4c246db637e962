//! Tracker and rules per analytics frame.
//!
//! `cargo bench --bench track` (numbers in the analytics report / docs/rules.md).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use chrono::{TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use opencv::core::{Mat, Vec3b};
use opencv::video;

use simpang::analytics::garbage::Garbage;
use simpang::analytics::geom::Polygon;
use simpang::analytics::tamper::TamperMeter;
use simpang::analytics::SiteAnalytics;
use simpang::config::{Config, GarbageRule};
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{AnalyticsFrame, BBox, Detection, Image, Labels, PixelFormat, SiteId};
use simpang::track::{Tracker, TrackerConfig};

fn labels() -> Labels {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nanodet-m-416/coco80.txt"),
    )
    .expect("coco80.txt");
    Arc::from(
        text.lines()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>(),
    )
}

/// `n` objects on a grid, each drifting a little per frame, alternating person and car.
fn scene(n: usize, frame: usize) -> Vec<Detection> {
    let side = (n as f32).sqrt().ceil() as usize;
    let cell = 1.0 / side as f32;
    (0..n)
        .map(|i| {
            let (r, c) = (i / side, i % side);
            let dx = ((frame + i) % 20) as f32 * 0.001;
            let x = c as f32 * cell + cell * 0.2 + dx;
            let y = r as f32 * cell + cell * 0.2;
            Detection {
                bbox: BBox::new(x, y, x + cell * 0.5, y + cell * 0.6),
                score: if i % 7 == 0 { 0.3 } else { 0.8 },
                class_id: if i % 2 == 0 { 0 } else { 2 },
            }
        })
        .collect()
}

fn t(frame: usize) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::milliseconds(200 * frame as i64)
}

fn bench_tracker(c: &mut Criterion) {
    let mut g = c.benchmark_group("tracker_update");
    for n in [10usize, 100] {
        let frames: Vec<Vec<Detection>> = (0..64).map(|f| scene(n, f)).collect();
        let mut tr = Tracker::new(TrackerConfig::default());
        let mut f = 0usize;
        for _ in 0..10 {
            tr.update(&frames[f % 64], t(f), (1920, 1080));
            f += 1;
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let out = tr.update(black_box(&frames[f % 64]), t(f), (1920, 1080));
                f += 1;
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// 16 consecutive analytics frames (5 fps, 416 x 416) of vtest.mp4: real pictures with people
/// walking, so MOG2 and the garbage step do their usual work.
fn vtest_frames() -> Vec<Vec<u8>> {
    let opts = ReadOptions {
        size: Some((416, 416)),
        format: PixelFormat::Bgr,
        fps: Some(5.0),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/vtest.mp4");
    VideoReader::open(&path, &opts)
        .expect("samples/vtest.mp4 (scripts/setup.sh makes it)")
        .skip(50)
        .take(16)
        .map(|f| f.expect("decode").image.data)
        .collect()
}

fn bench_rules(c: &mut Criterion) {
    let text = r#"
[city]
name = "Bench"

[[sites]]
id = "bench"
name = "Bench"
address = "-"
lat = 0.0
lon = 0.0
stream = "rtsp://127.0.0.1/x"
[sites.tamper]
enabled = false

[[sites.zones]]
id = "lajur"
name = "Lajur"
kind = "traffic_jam"
polygon = [[0.0, 0.3], [1.0, 0.3], [1.0, 1.0], [0.0, 1.0]]
metres_per_pixel = 0.05

[[sites.zones]]
id = "trotoar"
name = "Trotoar"
kind = "crowd"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.6], [0.0, 0.6]]

[[sites.lines]]
id = "garis"
name = "Garis"
points = [[0.0, 0.6], [1.0, 0.6]]
"#;
    let site = Config::from_str_at(text, Path::new("bench.toml"))
        .expect("bench config")
        .sites
        .remove(0);
    let mut g = c.benchmark_group("site_process_no_picture_rules");
    for n in [10usize, 100] {
        let mut a = SiteAnalytics::new(&site, labels()).expect("site");
        let frames: Vec<Vec<Detection>> = (0..64).map(|f| scene(n, f)).collect();
        let mut frame = AnalyticsFrame {
            site: SiteId::new("bench"),
            seq: 0,
            captured_at: t(0),
            rule_at: t(0),
            pts: None,
            media_time: None,
            source_width: 1920,
            source_height: 1080,
            image: Image::new(416, 416),
        };
        let mut f = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                frame.seq = f as u64;
                frame.captured_at = t(f);
                frame.rule_at = t(f);
                let out = a.process(&frame, black_box(&frames[f % 64]));
                f += 1;
                black_box(out.events.len())
            })
        });
    }
    g.finish();
}

fn bench_pictures(c: &mut Criterion) {
    let frames = vtest_frames();
    let n = frames.len();
    let mats: Vec<_> = frames
        .iter()
        .map(|b| Mat::new_rows_cols_with_bytes::<Vec3b>(416, 416, b).expect("mat"))
        .collect();
    let mut g = c.benchmark_group("pictures_416");

    // MOG2 alone at full analytics size vs the half-size cut-out the garbage rule uses
    for side in [416, 208, 160] {
        let mut small = Vec::new();
        for m in &mats {
            let mut s = Mat::default();
            opencv::imgproc::resize(
                m,
                &mut s,
                opencv::core::Size::new(side, side),
                0.0,
                0.0,
                opencv::imgproc::INTER_AREA,
            )
            .expect("resize");
            small.push(s);
        }
        let mut mog = video::create_background_subtractor_mog2(25, 16.0, true).expect("mog2");
        let mut fg = Mat::default();
        let mut k = 0;
        g.bench_function(BenchmarkId::new("mog2_apply", side), |b| {
            b.iter(|| {
                video::BackgroundSubtractorMOG2Trait::apply(
                    &mut mog,
                    &small[k % n],
                    &mut fg,
                    0.0005,
                )
                .expect("apply");
                k += 1;
            })
        });
    }

    // the whole garbage step on a zone of half the picture (cut out, 160 px work size)
    let poly = Polygon::new(&[[0.0, 0.5], [1.0, 0.5], [1.0, 1.0], [0.0, 1.0]]);
    let mut gb = Garbage::new(GarbageRule::default(), poly);
    let exclude = [BBox::new(0.1, 0.5, 0.2, 0.8), BBox::new(0.5, 0.6, 0.6, 0.9)];
    let mut k = 0usize;
    for _ in 0..30 {
        gb.step(t(k), &mats[k % n], &exclude, &[]).expect("garbage");
        k += 1;
    }
    g.bench_function("garbage_step_half_frame_zone", |b| {
        b.iter(|| {
            let r = gb.step(t(k), &mats[k % n], &exclude, &[]).expect("garbage");
            k += 1;
            black_box(r.objects)
        })
    });

    let mut meter = TamperMeter::new();
    g.bench_function("tamper_measure", |b| {
        b.iter(|| {
            let s = meter.measure(&mats[k % n]).expect("tamper");
            k += 1;
            black_box(s.sharpness)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_tracker, bench_rules, bench_pictures);
criterion_main!(benches);
