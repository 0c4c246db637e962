//! The wall's per-frame work: drawing the overlay on a tile, its JPEG, composing the mosaic.
//!
//! `cargo bench --bench wall`; figures in docs/performance.md (and the running costs in
//! docs/wall.md).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};

use simpang::config::Config;
use simpang::hub::{CameraStatus, Hub};
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{
    BBox, DisplayFrame, Image, PixelFormat, Point, SiteId, SiteResults, Track, TrackId, TrackState,
};
use simpang::wall::jpeg::JpegEncoder;
use simpang::wall::mosaic::{compose, Grid};
use simpang::wall::scene::{SceneInput, SiteScene};
use simpang::wall::tile::SiteOutput;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A 640x360 I420 tile of the bench footage (a real picture: JPEG cost depends on content).
fn tile() -> Image {
    VideoReader::open(
        &root().join("samples/bench-1080p25.mp4"),
        &ReadOptions {
            size: Some((640, 360)),
            format: PixelFormat::I420,
            fps: Some(1.0),
        },
    )
    .expect("samples/bench-1080p25.mp4")
    .nth(5)
    .expect("a frame")
    .expect("decode")
    .image
}

fn labels() -> simpang::model::Labels {
    let text = std::fs::read_to_string(root().join("models/nanodet-m-416/coco80.txt"))
        .expect("coco80.txt");
    Arc::from(
        text.lines()
            .map(|l| l.trim().to_string())
            .collect::<Vec<_>>(),
    )
}

/// `n` confirmed tracks spread over the picture, half people, half cars.
fn tracks(n: usize) -> Vec<Track> {
    (0..n)
        .map(|i| {
            let x = (i % 5) as f32 * 0.18 + 0.02;
            let y = (i / 5) as f32 * 0.2 + 0.1;
            Track {
                id: TrackId(i as u64 + 1),
                class_id: if i % 2 == 0 { 0 } else { 2 },
                bbox: BBox::new(x, y, x + 0.08, y + 0.15),
                score: 0.8,
                state: TrackState::Confirmed,
                velocity: Point::new(0.05, 0.0),
                speed_px_s: 40.0,
                speed_kmh: Some(18.0),
                age_s: 3.0,
                hits: 10,
            }
        })
        .collect()
}

fn bench_overlay(c: &mut Criterion) {
    let cfg = Config::load(&root().join("config/palembang.toml")).expect("config");
    // Kapten A. Rivai: two zones and a counting line, the busiest overlay of the six sites.
    let site = cfg.site("kapten-rivai").expect("site").clone();
    let mut scene = SiteScene::new(&site, labels(), cfg.city.tz(), 640, 360);
    let now = Utc::now();
    let frame = DisplayFrame {
        site: SiteId::new("kapten-rivai"),
        seq: 1,
        captured_at: now,
        image: Arc::new(tile()),
    };
    let status = CameraStatus::starting(now);
    let mut g = c.benchmark_group("overlay");
    for n in [0usize, 10, 20] {
        let results = SiteResults {
            captured_at: Some(now),
            tracks: tracks(n),
            ..Default::default()
        };
        let mut out = Image::default();
        g.bench_function(format!("render_tile_{n}_tracks"), |b| {
            b.iter(|| {
                scene
                    .render(
                        &mut out,
                        &SceneInput {
                            frame: Some(&frame),
                            live: true,
                            results: &results,
                            status: &status,
                            now,
                            uptime_s: 100.0,
                        },
                    )
                    .expect("render");
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_jpeg(c: &mut Criterion) {
    simpang::ingest::init_gstreamer().expect("gstreamer");
    let img = tile();
    let mut enc = JpegEncoder::new(75).expect("jpeg encoder");
    c.bench_function("jpeg/tile_640x360_q75", |b| {
        b.iter(|| black_box(enc.encode(&img).expect("encode")))
    });
}

fn bench_mosaic(c: &mut Criterion) {
    let ids: Vec<SiteId> = (0..6).map(|i| SiteId::new(format!("s{i}"))).collect();
    let hub = Hub::new(ids.clone());
    let t = Arc::new(tile());
    let sites: Vec<Arc<SiteOutput>> = hub
        .sites()
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let s = Arc::new(SiteOutput::new(
                h,
                format!("site {i}"),
                simpang::wall::live::LiveSite::default(),
            ));
            s.tile.store(Some(t.clone()));
            s
        })
        .collect();
    let grid = Grid::fit(3, 2, sites.len(), 640, 360);
    let mut out = Image::default();
    c.bench_function("mosaic/compose_3x2", |b| {
        b.iter(|| {
            compose(&mut out, grid, &sites).expect("compose");
            black_box(&out);
        })
    });
}

criterion_group!(benches, bench_overlay, bench_jpeg, bench_mosaic);
criterion_main!(benches);
