//! Camera tamper on real footage, with the shipped defaults (dwell 5 s, clear 10 s): covering the
//! lens (black frames), heavy blur (OpenCV Gaussian blur of the real frames) and turning the
//! camera away (another scene) raise an event with the right reason; the untouched footage — the
//! static vtest camera, and the moving street camera of sample.mp4 with the view check off
//! as in config/palembang.toml — raises none.

mod support;

use opencv::core::{self, Mat, Size, Vec3b};
use opencv::imgproc;
use opencv::prelude::*;
use simpang::analytics::SiteAnalytics;
use simpang::ingest::reader::{ReadOptions, VideoReader};
use simpang::model::{Image, IncidentKind, PixelFormat, RulePhase};
use support::analytics::*;
use support::root;

fn blur(img: &Image) -> Image {
    let src =
        Mat::new_rows_cols_with_bytes::<Vec3b>(img.height as i32, img.width as i32, &img.data)
            .unwrap();
    let mut dst = Mat::default();
    imgproc::gaussian_blur(
        &src,
        &mut dst,
        Size::new(21, 21),
        8.0,
        8.0,
        core::BORDER_DEFAULT,
    )
    .unwrap();
    Image {
        data: dst.data_bytes().unwrap().to_vec(),
        ..img.clone()
    }
}

/// (phase, seconds, reason) of the tamper events of one run.
type Events = Vec<(RulePhase, f64, String)>;

fn run(
    path: &str,
    tamper_toml: &str,
    until: f64,
    alter: impl Fn(f64, Image, &mut Option<VideoReader>) -> Image,
) -> Events {
    let site = site(&format!("[sites.tamper]\n{tamper_toml}\n"));
    let mut a = SiteAnalytics::new(&site, coco()).unwrap();
    let opts = ReadOptions {
        size: Some((416, 416)),
        format: PixelFormat::Bgr,
        fps: Some(5.0),
    };
    let reader = VideoReader::open(&root().join(path), &opts).unwrap();
    // a second scene, for "turned away"
    let mut other = Some(VideoReader::open(&root().join("samples/sample.mp4"), &opts).unwrap());
    let mut out = Vec::new();
    for f in reader {
        let f = f.unwrap();
        let s = f.pts.as_secs_f64();
        if s > until {
            break;
        }
        let img = alter(s, f.image, &mut other);
        for e in a.process(&frame(s, img), &[]).events {
            assert_eq!(e.kind, IncidentKind::CameraTamper);
            assert!(e.zone.is_none());
            out.push((
                e.phase,
                (e.at - at(0.0)).num_milliseconds() as f64 / 1000.0,
                e.evidence.reason.unwrap_or_default(),
            ));
        }
    }
    out
}

fn during(a: f64, b: f64, s: f64) -> bool {
    (a..b).contains(&s)
}

#[test]
fn tamper_on_real_footage() {
    let vtest = "samples/vtest.mp4";
    let untouched = run(vtest, "", 79.0, |_, img, _| img);
    assert!(untouched.is_empty(), "untouched vtest: {untouched:?}");

    let covered = run(vtest, "", 60.0, |s, img, _| {
        if during(20.0, 40.0, s) {
            Image::new(img.width, img.height)
        } else {
            img
        }
    });
    eprintln!("covered: {covered:?}");
    assert_eq!(covered.len(), 2, "{covered:?}");
    assert_eq!(
        (covered[0].0, covered[0].2.as_str()),
        (RulePhase::Start, "covered")
    );
    assert!((25.0..=26.0).contains(&covered[0].1), "{covered:?}");
    assert_eq!(
        (covered[1].0, covered[1].2.as_str()),
        (RulePhase::End, "covered")
    );
    assert!((50.0..=52.0).contains(&covered[1].1), "{covered:?}");

    let blurred = run(vtest, "", 60.0, |s, img, _| {
        if during(20.0, 40.0, s) {
            blur(&img)
        } else {
            img
        }
    });
    eprintln!("blurred: {blurred:?}");
    assert_eq!(blurred.len(), 2, "{blurred:?}");
    assert_eq!(
        (blurred[0].0, blurred[0].2.as_str()),
        (RulePhase::Start, "defocused")
    );
    assert!((25.0..=26.0).contains(&blurred[0].1), "{blurred:?}");
    assert_eq!(blurred[1].0, RulePhase::End);

    let turned = run(vtest, "", 60.0, |s, img, other| {
        if during(20.0, 40.0, s) {
            other
                .as_mut()
                .and_then(|r| r.next_frame().ok().flatten())
                .map(|f| f.image)
                .unwrap_or(img)
        } else {
            img
        }
    });
    eprintln!("turned: {turned:?}");
    assert_eq!(
        turned.first().map(|e| (e.0, e.2.as_str())),
        Some((RulePhase::Start, "turned_away")),
        "{turned:?}"
    );

    // the moving street camera, as configured for the sample sites
    let moving = run(
        "samples/sample.mp4",
        "max_view_distance = 1.0",
        60.0,
        |_, img, _| img,
    );
    assert!(moving.is_empty(), "sample.mp4: {moving:?}");
}
