//! Ingest hot paths that are ours (the decode and scaling are GStreamer's; `simpang bench`
//! measures those): the copy of each analytics and display frame out of its GStreamer buffer,
//! the detect-rate gate every decoded frame passes, and the analytics queue between the
//! cameras and the detection workers.
//!
//! `cargo bench --bench ingest`; figures in docs/performance.md.

use std::hint::black_box;
use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gstreamer as gst;
use gstreamer_video as gst_video;

use simpang::hub::AnalyticsQueue;
use simpang::ingest::frames::{copy_frame, RateGate};
use simpang::model::{AnalyticsFrame, Image, SiteId};

/// A GStreamer buffer of `format` at `w`x`h`, laid out (strides, padding) as GStreamer lays it.
fn buffer(format: gst_video::VideoFormat, w: u32, h: u32) -> (gst::Buffer, gst_video::VideoInfo) {
    let info = gst_video::VideoInfo::builder(format, w, h)
        .build()
        .expect("video info");
    let data: Vec<u8> = (0..info.size()).map(|i| (i % 251) as u8).collect();
    (gst::Buffer::from_slice(data), info)
}

fn bench_copy(c: &mut Criterion) {
    gst::init().expect("gstreamer");
    let mut g = c.benchmark_group("copy_frame");
    let cases = [
        // the analytics frame: model input, BGR (rows of 1248 bytes, no padding)
        (
            "analytics_bgr_416x416",
            gst_video::VideoFormat::Bgr,
            416,
            416,
        ),
        // a model size whose BGR rows GStreamer pads to 4 bytes: the row-by-row path
        (
            "analytics_bgr_318x318_padded",
            gst_video::VideoFormat::Bgr,
            318,
            318,
        ),
        // the display frame: wall tile, I420
        (
            "display_i420_640x360",
            gst_video::VideoFormat::I420,
            640,
            360,
        ),
    ];
    for (name, format, w, h) in cases {
        let (buf, info) = buffer(format, w, h);
        let mut out = Image::default();
        g.throughput(Throughput::Bytes(info.size() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                copy_frame(black_box(&buf), &info, &mut out).expect("copy");
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_gate(c: &mut Criterion) {
    // One second of a 25 fps camera through the 5 fps gate.
    c.bench_function("rate_gate/25fps_second", |b| {
        let mut gate = RateGate::new(5.0);
        let mut t: u64 = 0;
        b.iter(|| {
            let mut kept = 0;
            for _ in 0..25 {
                t += 40_000_000;
                kept += usize::from(gate.admit(black_box(t)));
            }
            black_box(kept)
        })
    });
}

fn frame(site: &SiteId, seq: u64) -> AnalyticsFrame {
    AnalyticsFrame {
        site: site.clone(),
        seq,
        captured_at: Utc::now(),
        rule_at: Utc::now(),
        pts: None,
        media_time: None,
        source_width: 1920,
        source_height: 1080,
        // The queue moves frames, it never touches pixels: a small image keeps the allocator
        // out of the measurement.
        image: Image::new(4, 4),
    }
}

fn bench_queue(c: &mut Criterion) {
    // Six cameras offer a frame each; a worker takes and completes them one by one.
    let sites: Vec<SiteId> = (0..6).map(|i| SiteId::new(format!("s{i}"))).collect();
    let q = AnalyticsQueue::new(sites.iter().cloned());
    let mut seq = 0;
    c.bench_function("analytics_queue/six_sites_put_take_done", |b| {
        b.iter(|| {
            for s in &sites {
                seq += 1;
                q.put(frame(s, seq));
            }
            for _ in 0..sites.len() {
                for f in q.take(1, Duration::from_millis(1)) {
                    black_box(f.seq);
                    q.done(&f.site);
                }
            }
        })
    });
}

criterion_group!(benches, bench_copy, bench_gate, bench_queue);
criterion_main!(benches);
