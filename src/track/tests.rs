use chrono::{Duration, TimeZone};

use super::*;

const PERSON: ClassId = 0;
const CAR: ClassId = 2;
const TRUCK: ClassId = 7;
const SRC: (u32, u32) = (1000, 1000);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 8, 0, 0).unwrap()
}

fn at(frame: usize) -> DateTime<Utc> {
    // 5 analytics frames per second
    t0() + Duration::milliseconds(200 * frame as i64)
}

fn det(cx: f32, cy: f32, w: f32, h: f32, score: f32, class_id: ClassId) -> Detection {
    Detection {
        bbox: BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0),
        score,
        class_id,
    }
}

fn tracker() -> Tracker {
    Tracker::new(TrackerConfig {
        class_groups: vec![vec![CAR, TRUCK]],
        ..TrackerConfig::default()
    })
}

/// A synthetic object: centre moving at constant velocity (normalised units per frame).
#[derive(Clone, Copy)]
struct Obj {
    start: (f32, f32),
    step: (f32, f32),
    size: (f32, f32),
    class_id: ClassId,
}

impl Obj {
    fn at(&self, f: usize) -> (f32, f32) {
        (
            self.start.0 + self.step.0 * f as f32,
            self.start.1 + self.step.1 * f as f32,
        )
    }
    fn det(&self, f: usize) -> Detection {
        let (x, y) = self.at(f);
        det(x, y, self.size.0, self.size.1, 0.8, self.class_id)
    }
}

/// Runs `frames` frames of `objs`, leaving out detections for which `hide(object, frame)`, and
/// returns for each object the id of the confirmed track nearest to it in every frame where it
/// was detected (after the confirmation frames), or None.
fn run(objs: &[Obj], frames: usize, hide: impl Fn(usize, usize) -> bool) -> Vec<Vec<Option<u64>>> {
    let mut tr = tracker();
    let mut ids = vec![Vec::new(); objs.len()];
    for f in 0..frames {
        let dets: Vec<_> = objs
            .iter()
            .enumerate()
            .filter(|(i, _)| !hide(*i, f))
            .map(|(_, o)| o.det(f))
            .collect();
        let tracks = tr.update(&dets, at(f), SRC).to_vec();
        if f < 3 {
            continue;
        }
        for (i, o) in objs.iter().enumerate() {
            if hide(i, f) {
                continue;
            }
            let gt = o.det(f).bbox;
            let best = tracks
                .iter()
                .filter(|t| t.state == TrackState::Confirmed)
                .max_by(|a, b| a.bbox.iou(&gt).total_cmp(&b.bbox.iou(&gt)))
                .filter(|t| t.bbox.iou(&gt) > 0.5)
                .map(|t| t.id.0);
            ids[i].push(best);
        }
    }
    ids
}

fn assert_stable(name: &str, ids: &[Vec<Option<u64>>]) {
    let mut seen = Vec::new();
    for (i, per_obj) in ids.iter().enumerate() {
        assert!(!per_obj.is_empty(), "{name}: object {i} never checked");
        let first = per_obj[0];
        assert!(
            first.is_some(),
            "{name}: object {i} not tracked: {per_obj:?}"
        );
        assert!(
            per_obj.iter().all(|id| *id == first),
            "{name}: object {i} changed id: {per_obj:?}"
        );
        assert!(
            !seen.contains(&first),
            "{name}: two objects share id {first:?}"
        );
        seen.push(first);
    }
}

#[test]
fn empty_input_gives_no_tracks() {
    let mut tr = tracker();
    for f in 0..5 {
        assert!(tr.update(&[], at(f), SRC).is_empty());
    }
}

#[test]
fn confirms_after_min_hits_and_keeps_id() {
    let mut tr = tracker();
    let d = [det(0.5, 0.5, 0.1, 0.2, 0.9, PERSON)];
    let states: Vec<_> = (0..4)
        .map(|f| {
            let t = tr.update(&d, at(f), SRC);
            assert_eq!(t.len(), 1);
            (t[0].id, t[0].state, t[0].hits)
        })
        .collect();
    assert_eq!(states[0].1, TrackState::Tentative);
    assert_eq!(states[1].1, TrackState::Tentative);
    assert_eq!(states[2].1, TrackState::Confirmed);
    assert_eq!(states[3].2, 4);
    assert!(states.iter().all(|s| s.0 == states[0].0));
}

#[test]
fn tentative_track_dies_on_first_miss_and_low_scores_start_nothing() {
    let mut tr = tracker();
    tr.update(&[det(0.5, 0.5, 0.1, 0.2, 0.9, PERSON)], at(0), SRC);
    assert!(tr.update(&[], at(1), SRC).is_empty());
    // below new_track_score: no track, however often it is seen
    for f in 2..8 {
        assert!(tr
            .update(&[det(0.3, 0.3, 0.1, 0.2, 0.42, PERSON)], at(f), SRC)
            .is_empty());
    }
}

#[test]
fn a_tentative_track_bridges_one_weak_frame_but_is_not_confirmed_by_weak_ones() {
    // A vehicle at the edge of the threshold: strong, weak, strong, strong keeps one id and
    // confirms on the third strong hit (the weak frame is no hit).
    let mut tr = tracker();
    let x = |f: usize| 0.2 + 0.03 * f as f32;
    let scores = [0.8, 0.3, 0.8, 0.8];
    let mut seen = Vec::new();
    for (f, &s) in scores.iter().enumerate() {
        let t = tr.update(&[det(x(f), 0.5, 0.1, 0.1, s, CAR)], at(f), SRC);
        assert_eq!(t.len(), 1, "frame {f}: {t:?}");
        seen.push((t[0].id, t[0].state, t[0].hits));
    }
    assert!(seen.iter().all(|s| s.0 == seen[0].0), "{seen:?}");
    assert_eq!(seen[1], (seen[0].0, TrackState::Tentative, 1), "{seen:?}");
    assert_eq!(seen[2].1, TrackState::Tentative, "{seen:?}");
    assert_eq!(seen[3], (seen[0].0, TrackState::Confirmed, 3), "{seen:?}");

    // A false positive living on weak detections: one bridge, then it dies on the second weak
    // frame in a row; weak detections never confirm it.
    let mut tr = tracker();
    tr.update(&[det(0.5, 0.5, 0.1, 0.1, 0.8, PERSON)], at(0), SRC);
    let weak = [det(0.5, 0.5, 0.1, 0.1, 0.3, PERSON)];
    assert_eq!(tr.update(&weak, at(1), SRC).len(), 1);
    assert!(tr.update(&weak, at(2), SRC).is_empty());
}

#[test]
fn a_van_called_car_and_truck_in_one_frame_is_one_detection() {
    // A queue: the van ahead (A) is confirmed, then the detector loses it while the van behind
    // (B) comes out as a strong "truck" and a weak, taller "car" box. The car box overlaps A's
    // prediction (IoU 0.5, over low_match_iou), and without the duplicate rule the low-score
    // association would carry A's id onto B (seen on the jam clip: the vehicle counted going
    // back over the line, the one behind it not counted).
    let mut tr = tracker();
    let a = |f: usize| det(0.5, 0.40 - 0.002 * f as f32, 0.2, 0.2, 0.8, TRUCK);
    let b = |f: usize| det(0.5, 0.52 - 0.002 * f as f32, 0.2, 0.2, 0.8, TRUCK);
    for f in 0..5 {
        tr.update(&[a(f), b(f)], at(f), SRC);
    }
    let ids: Vec<u64> = tr.tracks().iter().map(|t| t.id.0).collect();
    assert_eq!(ids.len(), 2);
    for f in 5..8 {
        let mut car = b(f);
        car.class_id = CAR;
        car.score = 0.3;
        car.bbox.y1 -= 0.08; // taller: it reaches into A's box
        let t = tr.update(&[b(f), car], at(f), SRC);
        let a_track = t
            .iter()
            .find(|t| t.id.0 == ids[0])
            .expect("A's track coasts");
        assert_eq!(a_track.state, TrackState::Lost, "frame {f}: {t:?}");
        let b_track = t.iter().find(|t| t.id.0 == ids[1]).expect("B's track");
        assert_eq!(b_track.state, TrackState::Confirmed, "frame {f}: {t:?}");
        assert_eq!(t.len(), 2, "frame {f}: {t:?}");
    }
}

/// Identity through gaps and crossings: a table of scenes.
#[test]
fn ids_are_stable_through_gaps_and_crossings() {
    let walker = |x: f32, y: f32, dx: f32, dy: f32| Obj {
        start: (x, y),
        step: (dx, dy),
        size: (0.05, 0.15),
        class_id: PERSON,
    };
    type Hide = Box<dyn Fn(usize, usize) -> bool>;
    let cases: Vec<(&str, Vec<Obj>, usize, Hide)> = vec![
        (
            "single walker",
            vec![walker(0.1, 0.5, 0.02, 0.0)],
            30,
            Box::new(|_, _| false),
        ),
        (
            "2-frame detection gap",
            vec![walker(0.1, 0.5, 0.02, 0.0)],
            30,
            Box::new(|_, f| f == 10 || f == 11),
        ),
        (
            "gap of max_lost_s minus one frame (6 frames at 5 fps)",
            vec![walker(0.1, 0.5, 0.01, 0.0)],
            30,
            Box::new(|_, f| (10..16).contains(&f)),
        ),
        (
            "head-on crossing, one row apart",
            vec![walker(0.1, 0.5, 0.03, 0.0), walker(0.9, 0.53, -0.03, 0.0)],
            28,
            Box::new(|_, _| false),
        ),
        (
            "head-on crossing, the back one hidden while they overlap",
            vec![walker(0.1, 0.5, 0.03, 0.0), walker(0.9, 0.5, -0.03, 0.0)],
            28,
            // they meet around frame 13; NMS would keep one box of the pair
            Box::new(|i, f| i == 1 && (12..=14).contains(&f)),
        ),
        (
            "X crossing, diagonal paths",
            vec![walker(0.1, 0.1, 0.03, 0.03), walker(0.9, 0.1, -0.03, 0.03)],
            26,
            Box::new(|_, _| false),
        ),
        (
            "overtaking in the same lane",
            vec![walker(0.1, 0.5, 0.035, 0.0), walker(0.3, 0.51, 0.01, 0.0)],
            24,
            Box::new(|_, _| false),
        ),
        (
            "person crossing in front of a car",
            vec![
                walker(0.5, 0.2, 0.0, 0.03),
                Obj {
                    start: (0.2, 0.5),
                    step: (0.02, 0.0),
                    size: (0.2, 0.12),
                    class_id: CAR,
                },
            ],
            25,
            Box::new(|_, _| false),
        ),
        (
            "fast car: moves more than half its length per frame",
            vec![Obj {
                start: (0.1, 0.5),
                step: (0.06, 0.0),
                size: (0.1, 0.06),
                class_id: CAR,
            }],
            14,
            Box::new(|_, _| false),
        ),
    ];
    for (name, objs, frames, hide) in cases {
        let ids = run(&objs, frames, hide);
        assert_stable(name, &ids);
    }
}

#[test]
fn gap_longer_than_max_lost_gives_a_new_id() {
    // a walker (a third of its height per second): lost for 2 s > max_lost_s = 1.5 s
    let walker = Obj {
        start: (0.2, 0.5),
        step: (0.01, 0.0),
        size: (0.05, 0.15),
        class_id: PERSON,
    };
    // standing still: coasts up to max_lost_still_s = 6 s, so 2 s keep its id and 7 s do not
    let still = Obj {
        step: (0.0, 0.0),
        ..walker
    };
    for (name, o, gap, same) in [
        ("walker, 2 s", walker, 10, false),
        ("still, 2 s", still, 10, true),
        ("still, 7 s", still, 35, false),
    ] {
        let mut tr = tracker();
        for f in 0..5 {
            tr.update(&[o.det(f)], at(f), SRC);
        }
        let first = tr.tracks()[0].id;
        for f in 5..5 + gap {
            tr.update(&[], at(f), SRC);
        }
        assert_eq!(tr.tracks().is_empty(), !same, "{name}: {:?}", tr.tracks());
        for f in 5 + gap..9 + gap {
            tr.update(&[o.det(f)], at(f), SRC);
        }
        assert_eq!(tr.tracks().len(), 1, "{name}");
        assert_eq!(tr.tracks()[0].id == first, same, "{name}");
    }
}

#[test]
fn lost_tracks_coast_and_are_reported_as_lost() {
    let o = Obj {
        start: (0.2, 0.5),
        step: (0.02, 0.0),
        size: (0.05, 0.15),
        class_id: PERSON,
    };
    let mut tr = tracker();
    for f in 0..8 {
        tr.update(&[o.det(f)], at(f), SRC);
    }
    let t = tr.update(&[], at(8), SRC)[0].clone();
    assert_eq!(t.state, TrackState::Lost);
    // predicted forward, near where the object is now
    assert!((t.bbox.center().x - o.at(8).0).abs() < 0.01, "{t:?}");
}

#[test]
fn classes_are_kept_apart_but_groups_merge() {
    // a person detection where a car track is: separate tracks
    let mut tr = tracker();
    for f in 0..4 {
        tr.update(&[det(0.5, 0.5, 0.2, 0.1, 0.9, CAR)], at(f), SRC);
    }
    let car = tr.tracks()[0].id;
    let t = tr.update(&[det(0.5, 0.5, 0.2, 0.1, 0.9, PERSON)], at(4), SRC);
    assert_eq!(t.len(), 2);
    let car_t = t.iter().find(|t| t.id == car).unwrap();
    assert_eq!(car_t.state, TrackState::Lost);
    assert_eq!(car_t.class_id, CAR);
    // car ↔ truck flicker: one track, named after the class seen with the most score
    let mut tr = tracker();
    let seq = [CAR, TRUCK, CAR, CAR, TRUCK, CAR];
    for (f, c) in seq.iter().enumerate() {
        tr.update(&[det(0.5, 0.5, 0.2, 0.1, 0.9, *c)], at(f), SRC);
    }
    assert_eq!(tr.tracks().len(), 1);
    assert_eq!(tr.tracks()[0].class_id, CAR);
    assert_eq!(tr.tracks()[0].hits, 6);
}

#[test]
fn low_score_detections_keep_confirmed_tracks_alive() {
    let mut tr = tracker();
    for f in 0..4 {
        tr.update(&[det(0.5, 0.5, 0.1, 0.2, 0.9, PERSON)], at(f), SRC);
    }
    let id = tr.tracks()[0].id;
    // occluded: the detector still sees it, at 0.2
    for f in 4..20 {
        let t = tr.update(&[det(0.5, 0.5, 0.1, 0.2, 0.2, PERSON)], at(f), SRC);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].id, id);
        assert_eq!(t[0].state, TrackState::Confirmed, "frame {f}");
    }
}

#[test]
fn velocity_in_normalised_units_and_pixels() {
    // 0.02 of a 1000x500 frame per 0.2 s frame = 0.1/s normalised = 100 px/s horizontally
    let mut tr = tracker();
    let mut last = None;
    for f in 0..15 {
        let x = 0.1 + 0.02 * f as f32;
        last =
            Some(tr.update(&[det(x, 0.5, 0.05, 0.2, 0.9, PERSON)], at(f), (1000, 500))[0].clone());
    }
    let t = last.unwrap();
    assert!((t.velocity.x - 0.1).abs() < 0.01, "{t:?}");
    assert!(t.velocity.y.abs() < 0.01, "{t:?}");
    assert!((t.speed_px_s - 100.0).abs() < 8.0, "{t:?}");
    assert!((t.age_s - 2.8).abs() < 1e-3);
    assert_eq!(t.speed_kmh, None);
}

#[test]
fn bad_input_never_panics() {
    let mut tr = tracker();
    let junk = [
        Detection {
            bbox: BBox::new(f32::NAN, 0.0, 1.0, 1.0),
            score: 0.9,
            class_id: 0,
        },
        Detection {
            bbox: BBox::new(0.5, 0.5, 0.4, 0.4),
            score: 0.9,
            class_id: 0,
        },
        Detection {
            bbox: BBox::new(0.1, 0.1, 0.2, 0.2),
            score: f32::INFINITY,
            class_id: 0,
        },
        Detection {
            bbox: BBox::new(-5.0, -5.0, 9.0, 9.0),
            score: 0.9,
            class_id: u16::MAX,
        },
    ];
    tr.update(&junk, at(5), SRC);
    // time going backwards, zero size source, duplicates
    tr.update(&junk, at(1), (0, 0));
    tr.update(&[junk[3], junk[3]], at(1), SRC);
    let t = tr.update(&[junk[3]], at(0), SRC);
    assert!(t.iter().all(|t| t.bbox.x1 >= 0.0 && t.bbox.x2 <= 1.0));
    assert!(t.iter().all(|t| t.age_s >= 0.0 && t.speed_px_s.is_finite()));
}

#[test]
fn state_is_pruned_when_objects_leave() {
    let mut tr = tracker();
    for f in 0..10 {
        let dets: Vec<_> = (0..50)
            .map(|i| det(0.05 + 0.018 * i as f32, 0.5, 0.01, 0.03, 0.9, PERSON))
            .collect();
        tr.update(&dets, at(f), SRC);
    }
    assert_eq!(tr.tracks().len(), 50);
    // still objects coast up to max_lost_still_s (6 s): 7 s without them
    for f in 10..45 {
        tr.update(&[], at(f), SRC);
    }
    assert!(tr.tracks().is_empty());
    assert!(tr.tracks.is_empty());
}

#[test]
fn max_tracks_bounds_state() {
    let mut tr = Tracker::new(TrackerConfig {
        max_tracks: 10,
        ..TrackerConfig::default()
    });
    let dets: Vec<_> = (0..40)
        .map(|i| det(0.02 + 0.024 * i as f32, 0.5, 0.01, 0.03, 0.9, PERSON))
        .collect();
    assert_eq!(tr.update(&dets, at(0), SRC).len(), 10);
}

#[test]
fn default_groups_from_labels() {
    let labels: Vec<String> = [
        "person",
        "bicycle",
        "car",
        "motorcycle",
        "airplane",
        "bus",
        "train",
        "truck",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(
        TrackerConfig::default_groups(&labels),
        vec![vec![2, 7, 5], vec![1, 3]]
    );
    assert!(TrackerConfig::default_groups(&[]).is_empty());
}
