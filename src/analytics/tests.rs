use std::path::Path;
use std::sync::Arc;

use chrono::{TimeDelta, TimeZone};

use super::counts::align;
use super::*;
use crate::config::Config;
use crate::model::{BBox, ClassId, Image, IncidentKind, Level, RulePhase, TrafficLevel};
use crate::wall::words::zone_label;

const PERSON: ClassId = 0;
const CAR: ClassId = 2;

pub fn coco() -> Labels {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/nanodet-m-416/coco80.txt"),
    )
    .unwrap();
    let v: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    Arc::from(v)
}

fn site(zones_and_lines: &str) -> Site {
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
{zones_and_lines}
"#
    );
    Config::from_str_at(&text, Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
        .sites
        .remove(0)
}

fn t(s: f64) -> DateTime<Utc> {
    // 12:00:30 UTC: the first 60 s interval is partial (30 s)
    Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 30).unwrap()
        + TimeDelta::milliseconds((s * 1000.0).round() as i64)
}

/// Both clocks at `t(s)`.
fn stamp(s: f64) -> crate::clock::Stamp {
    crate::clock::Stamp {
        rule: t(s),
        wall: t(s),
    }
}

fn frame(s: f64, image: &Image) -> AnalyticsFrame {
    AnalyticsFrame {
        site: SiteId::new("uji"),
        seq: (s * 5.0) as u64,
        captured_at: t(s),
        rule_at: t(s),
        pts: None,
        media_time: None,
        source_width: 1280,
        source_height: 720,
        image: image.clone(),
    }
}

fn det(cx: f32, bottom: f32, w: f32, h: f32, class_id: ClassId) -> Detection {
    Detection {
        bbox: BBox::new(cx - w / 2.0, bottom - h, cx + w / 2.0, bottom),
        score: 0.8,
        class_id,
    }
}

/// Runs frames at 5 fps from 0 to `until` s with detections `dets(time)`; returns all outputs.
fn replay(
    a: &mut SiteAnalytics,
    until: f64,
    image: &Image,
    dets: impl Fn(f64) -> Vec<Detection>,
) -> Vec<AnalyticsOutput> {
    (0..=(until * 5.0) as usize)
        .map(|i| {
            let s = i as f64 * 0.2;
            a.process(&frame(s, image), &dets(s))
        })
        .collect()
}

fn events(outs: &[AnalyticsOutput]) -> Vec<&RuleEvent> {
    outs.iter().flat_map(|o| o.events.iter()).collect()
}

const CROWD: &str = r#"
[sites.tamper]
enabled = false

[[sites.zones]]
id = "plaza"
name = "Plaza"
kind = "crowd"
polygon = [[0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [0.0, 1.0]]
area_m2 = 100.0
[sites.zones.crowd]
min_persons = 4
dwell_s = 5.0
clear_s = 5.0
cooldown_s = 30.0
"#;

#[test]
fn crowd_opens_after_the_dwell_and_closes_after_the_clear_time() {
    let mut a = SiteAnalytics::new(&site(CROWD), coco()).unwrap();
    let img = Image::new(64, 64);
    // five people standing in the zone from 2 s to 20 s, one outside all the time
    let outs = replay(&mut a, 40.0, &img, |s| {
        let mut v = vec![det(0.8, 0.9, 0.04, 0.15, PERSON)];
        if (2.0..20.0).contains(&s) {
            v.extend((0..5).map(|k| det(0.05 + 0.08 * k as f32, 0.8, 0.04, 0.15, PERSON)));
        }
        v
    });
    let ev = events(&outs);
    assert_eq!(ev.len(), 2, "{ev:#?}");
    let (start, end) = (ev[0], ev[1]);
    assert_eq!(start.phase, RulePhase::Start);
    assert_eq!(start.kind, IncidentKind::Crowd);
    assert_eq!(start.zone, Some(ZoneId::new("plaza")));
    assert_eq!(start.evidence.persons, Some(5));
    assert_eq!(start.evidence.density_per_m2, Some(0.05));
    assert_eq!(start.boxes.len(), 5);
    assert!(start.frame.is_none());
    // tracks confirm on their 3rd frame (2.4 s), the smoothed count follows at 2.4-3.4 s;
    // the start comes 5 s later
    let held = (start.at - start.started_at).num_milliseconds();
    assert!((5000..5400).contains(&held), "{held}");
    assert!(
        start.started_at >= t(2.0) && start.started_at <= t(3.6),
        "{:?}",
        start.started_at
    );
    assert_eq!(end.phase, RulePhase::End);
    assert_eq!(end.started_at, start.started_at);
    assert!(end.at >= t(25.0) && end.at <= t(27.5), "{:?}", end.at);
    // wall view while open
    let mid = &outs[50].results; // 10 s
    assert_eq!(mid.zones[0].severity, Severity::Alert);
    assert_eq!(zone_label(&mid.zones[0]), "5 orang");
    assert_eq!(mid.zones[0].count, 5);
    assert_eq!(
        mid.open_incidents,
        vec![(IncidentKind::Crowd, Some(ZoneId::new("plaza")))]
    );
    assert_eq!(mid.tracks.len(), 6);
    // dwell: five tracks in the zone, there since ~2.4 s
    assert_eq!(mid.dwell.len(), 5);
    assert!(
        mid.dwell.iter().all(|d| (7.0..8.0).contains(&d.dwell_s)),
        "{:?}",
        mid.dwell
    );
    let last = &outs.last().unwrap().results;
    assert_eq!(last.zones[0].severity, Severity::Normal);
    assert!(last.dwell.is_empty());
    assert!(last.open_incidents.is_empty());
}

/// Issue 16: durations are measured on the rules' clock, so a wall-clock step during a dwell
/// (NTP correcting the RTC, an operator setting the date) neither freezes it (backwards) nor
/// fires it at once (forwards); the events still carry wall-clock times.
#[test]
fn a_wall_clock_step_neither_freezes_nor_fires_a_dwell() {
    let img = Image::new(64, 64);
    let people = |s: f64| {
        if (2.0..20.0).contains(&s) {
            (0..5)
                .map(|k| det(0.05 + 0.08 * k as f32, 0.8, 0.04, 0.15, PERSON))
                .collect()
        } else {
            Vec::new()
        }
    };
    // the wall clock steps by `step_s` at 4 s, inside the crowd's dwell
    let run = |step_s: f64| {
        let mut a = SiteAnalytics::new(&site(CROWD), coco()).unwrap();
        let outs: Vec<_> = (0..=200)
            .map(|i| {
                let s = i as f64 * 0.2;
                let mut f = frame(s, &img);
                if s >= 4.0 {
                    f.captured_at = t(s + step_s);
                }
                a.process(&f, &people(s))
            })
            .collect();
        events(&outs)
            .into_iter()
            .map(|e| (e.phase, e.started_at, e.at))
            .collect::<Vec<_>>()
    };
    let steady = run(0.0);
    assert_eq!(steady.len(), 2, "{steady:?}");
    for step_s in [-3600.0, 3600.0] {
        let stepped = run(step_s);
        let d = TimeDelta::milliseconds((step_s * 1000.0) as i64);
        let want: Vec<_> = steady.iter().map(|&(p, s, a)| (p, s + d, a + d)).collect();
        assert_eq!(stepped, want, "step {step_s} s");
    }
}

const ROAD: &str = r#"
[sites.tamper]
enabled = false

[[sites.zones]]
id = "lajur"
name = "Lajur"
kind = "traffic_jam"
polygon = [[0.0, 0.4], [1.0, 0.4], [1.0, 1.0], [0.0, 1.0]]
metres_per_pixel = 0.05
[sites.zones.traffic_jam]
window_s = 10.0
dwell_s = 10.0
clear_s = 10.0

[[sites.lines]]
id = "garis"
name = "Garis"
points = [[0.0, 0.7], [1.0, 0.7]]
in_name = "ke selatan"
out_name = "ke utara"
intervals_s = [60]
"#;

#[test]
fn cars_crossing_are_counted_per_interval_with_zone_traffic() {
    let mut a = SiteAnalytics::new(&site(ROAD), coco()).unwrap();
    let img = Image::new(64, 64);
    // a car every 10 s drives down the picture in 3 s (0.45 → 0.95), at 0.2 frame/s
    let outs = replay(&mut a, 100.0, &img, |s| {
        let k = (s / 10.0).floor();
        let dt = s - k * 10.0;
        if dt < 3.0 {
            let y = 0.45 + (dt as f32 / 3.0) * 0.5;
            vec![det(0.3 + 0.02 * k as f32, y, 0.1, 0.08, CAR)]
        } else {
            vec![]
        }
    });
    let reports: Vec<&CountsReport> = outs.iter().flat_map(|o| o.counts.iter()).collect();
    // frames from 12:00:30 to 12:02:10: intervals closing at 12:01:00 and 12:02:00
    assert_eq!(reports.len(), 2, "{reports:#?}");
    let (r0, r1) = (reports[0], reports[1]);
    assert_eq!(r0.interval_s, 60);
    assert_eq!((r0.start, r0.end), (t(0.0), t(30.0)));
    assert_eq!((r1.start, r1.end), (t(30.0), t(90.0)));
    let car = |r: &CountsReport| r.lines[0].by_class.get("car").copied().unwrap_or_default();
    // cars start at 0, 10, 20 (first interval) and 30..80 (second); each crosses once, in
    assert_eq!(
        car(r0),
        crate::model::DirCounts {
            in_count: 3,
            out_count: 0
        }
    );
    assert_eq!(
        car(r1),
        crate::model::DirCounts {
            in_count: 6,
            out_count: 0
        }
    );
    assert_eq!(r1.lines[0].in_name, "ke selatan");
    assert_eq!(r1.zones.len(), 1);
    let z = &r1.zones[0];
    assert_eq!(z.level, TrafficLevel::Lancar);
    assert!(z.mean_vehicles > 0.0 && z.mean_vehicles < 0.5, "{z:?}");
    assert!(z.degree_of_saturation < 0.1);
    let totals = &outs.last().unwrap().results.lines[0];
    assert_eq!((totals.in_count, totals.out_count), (10, 0));
    // speeds in km/h from metres_per_pixel: 0.5 of 720 px in 3 s = 120 px/s = 6 m/s = 21.6 km/h
    let moving: Vec<f32> = outs
        .iter()
        .flat_map(|o| o.results.tracks.iter())
        .filter(|t| t.state == TrackState::Confirmed && t.age_s > 1.5)
        .filter_map(|t| t.speed_kmh)
        .collect();
    assert!(!moving.is_empty());
    let mean = moving.iter().sum::<f32>() / moving.len() as f32;
    assert!((mean - 21.6).abs() < 3.0, "{mean}");
}

#[test]
fn stopped_dense_traffic_opens_a_jam_with_evidence() {
    let mut a = SiteAnalytics::new(&site(ROAD), coco()).unwrap();
    let img = Image::new(64, 64);
    // the lane filled with stopped cars from 5 s to 60 s
    let outs = replay(&mut a, 90.0, &img, |s| {
        if (5.0..60.0).contains(&s) {
            (0..5)
                .flat_map(|r| {
                    (0..5).map(move |c| {
                        det(0.1 + 0.2 * c as f32, 0.5 + 0.11 * r as f32, 0.18, 0.1, CAR)
                    })
                })
                .collect()
        } else {
            vec![]
        }
    });
    let ev = events(&outs);
    let kinds: Vec<_> = ev.iter().map(|e| (e.phase, e.level.as_str())).collect();
    assert_eq!(
        kinds.first(),
        Some(&(RulePhase::Start, "macet")),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&(RulePhase::End, "macet")), "{kinds:?}");
    let s = ev[0];
    assert_eq!(s.evidence.vehicle_count, Some(25));
    assert!(s.evidence.degree_of_saturation.unwrap() >= 0.85);
    assert!(s.evidence.occupancy.unwrap() > 0.4);
    assert!(s.evidence.median_speed_kmh.unwrap() < 2.0);
    assert_eq!(s.evidence.median_speed_px_s, None);
    assert_eq!(s.boxes.len(), 25);
    assert!(s.boxes[0].label.starts_with("car "), "{}", s.boxes[0].label);
    let mid = &outs[200].results; // 40 s
    assert_eq!(zone_label(&mid.zones[0]), "macet");
    assert_eq!(mid.zones[0].level, Some(Level::Macet));
    assert_eq!(mid.zones[0].count, 25);
}

#[test]
fn unusable_input_never_panics() {
    let mut a = SiteAnalytics::new(
        &site(&format!(
            "{CROWD}\n[[sites.zones]]\nid = \"taman\"\nname = \"Taman\"\nkind = \"garbage\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n"
        ).replace("enabled = false", "enabled = true")),
        coco(),
    )
    .unwrap();
    let bad_images = [
        Image::default(),
        Image {
            width: 64,
            height: 64,
            format: PixelFormat::Bgr,
            data: vec![0; 10],
        },
        Image::with_format(64, 64, PixelFormat::I420),
        Image::new(1, 1),
        Image::new(3, 2000),
    ];
    let junk = vec![
        Detection {
            bbox: BBox::new(f32::NAN, 0.1, 0.2, f32::INFINITY),
            score: f32::NAN,
            class_id: u16::MAX,
        },
        det(0.5, 0.5, -0.1, 0.2, PERSON),
    ];
    for (i, img) in bad_images.iter().enumerate() {
        let mut f = frame(i as f64, img);
        f.source_width = 0;
        let out = a.process(&f, &junk);
        assert_eq!(out.results.captured_at, Some(t(i as f64)));
    }
    // time going backwards
    let out = a.process(&frame(0.0, &Image::new(64, 64)), &[]);
    assert_eq!(out.results.captured_at, Some(t(4.0)));
}

#[test]
fn unknown_classes_name_their_field() {
    let cases = [
        (
            CROWD.replace("min_persons = 4", "min_persons = 4\nclasses = [\"orang\"]"),
            "zones[0].crowd.classes",
            "orang",
        ),
        (
            ROAD.replace("intervals_s = [60]", "classes = [\"car\", \"angkot\"]"),
            "lines[0].classes",
            "angkot",
        ),
        (
            ROAD.replace("window_s = 10.0", "classes = [\"bajaj\"]"),
            "zones[0].traffic_jam.classes",
            "bajaj",
        ),
        (
            "[[sites.zones]]\nid = \"t\"\nname = \"T\"\nkind = \"garbage\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.garbage]\nlitter_classes = [\"plastic bag\"]\n".to_string(),
            "zones[0].garbage.litter_classes",
            "plastic bag",
        ),
    ];
    for (text, field, class) in cases {
        let err = SiteAnalytics::new(&site(&text), coco())
            .err()
            .expect("should fail");
        let msg = err.to_string();
        assert!(
            msg.contains(field) && msg.contains(class) && msg.contains("\"uji\""),
            "{msg}"
        );
        assert!(msg.contains("person, bicycle, car"), "{msg}");
    }
    // a model with other classes: the defaults themselves may be unknown
    let labels: Labels = Arc::from(vec!["sampah".to_string()]);
    let err = SiteAnalytics::new(&site(CROWD), labels)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("zones[0].crowd.classes") && err.contains("\"person\""),
        "{err}"
    );
    // degenerate homography
    let text = ROAD.replace(
        "metres_per_pixel = 0.05",
        "[sites.zones.homography]\nimage = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3], [0.4, 0.4]]\nground_m = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]",
    );
    let err = SiteAnalytics::new(&site(&text), coco())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("zones[0].homography"), "{err}");
}

#[test]
fn align_to_interval_boundaries() {
    let at = Utc.with_ymd_and_hms(2026, 5, 4, 12, 7, 31).unwrap();
    assert_eq!(
        align(at, 60),
        Utc.with_ymd_and_hms(2026, 5, 4, 12, 7, 0).unwrap()
    );
    assert_eq!(
        align(at, 900),
        Utc.with_ymd_and_hms(2026, 5, 4, 12, 0, 0).unwrap()
    );
    assert_eq!(align(at, 0), at);
}

#[test]
fn site_analytics_can_move_to_the_frame_loop_thread() {
    fn send<T: Send>() {}
    send::<SiteAnalytics>();
    send::<AnalyticsOutput>();
}

#[test]
fn camera_lost_ends_open_incidents_once_and_dwell_restarts() {
    let mut a = SiteAnalytics::new(&site(CROWD), coco()).unwrap();
    let img = Image::new(64, 64);
    let five = |_s: f64| {
        (0..5)
            .map(|k| det(0.05 + 0.08 * k as f32, 0.8, 0.04, 0.15, PERSON))
            .collect::<Vec<_>>()
    };
    let outs = replay(&mut a, 12.0, &img, five);
    let ev = events(&outs);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    let started_at = ev[0].started_at;

    // nothing open, nothing to end: an idle site gives no events
    let mut idle = SiteAnalytics::new(&site(CROWD), coco()).unwrap();
    assert!(idle.camera_lost(stamp(1.0)).is_empty());

    let lost = a.camera_lost(stamp(30.0));
    assert_eq!(lost.len(), 1, "{lost:#?}");
    let end = &lost[0];
    assert_eq!(end.phase, RulePhase::End);
    assert_eq!(end.kind, IncidentKind::Crowd);
    assert_eq!(end.started_at, started_at);
    assert_eq!(end.evidence.reason.as_deref(), Some("camera_offline"));
    assert_eq!(
        end.evidence.persons,
        Some(5),
        "the end carries what the incident was"
    );
    assert!(a.camera_lost(stamp(31.0)).is_empty(), "ended twice");

    // the camera is back with the same crowd: a new incident only after the full dwell
    let back: Vec<AnalyticsOutput> = (0..=50)
        .map(|i| {
            let s = 40.0 + i as f64 * 0.2;
            a.process(&frame(s, &img), &five(s))
        })
        .collect();
    let ev = events(&back);
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0].phase, RulePhase::Start);
    assert!(ev[0].started_at >= t(40.0), "{:?}", ev[0].started_at);
    assert!((ev[0].at - ev[0].started_at).num_milliseconds() >= 5000);
}
