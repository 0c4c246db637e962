//! The tracker and the crowd rule on the detector's real output for vtest.mp4 (NanoDet, every
//! second frame = 5 fps; tests/analytics_data/vtest-dets.jsonl), with the real frames.

mod support;

use std::collections::{BTreeMap, HashMap};

use simpang::analytics::SiteAnalytics;
use simpang::model::{Image, IncidentKind, RulePhase, TrackState};
use simpang::track::{Tracker, TrackerConfig};
use support::analytics::*;

/// Frame indexes of the fixture in order, with their times (10 fps file).
fn timeline(dets: &HashMap<u64, Vec<simpang::model::Detection>>) -> Vec<(u64, f64)> {
    let mut idx: Vec<u64> = dets.keys().copied().collect();
    idx.sort_unstable();
    idx.into_iter().map(|i| (i, i as f64 / 10.0)).collect()
}

#[test]
fn tracker_on_real_detections() {
    let dets = vtest_detections();
    let mut tr = Tracker::new(TrackerConfig {
        class_groups: TrackerConfig::default_groups(&coco()),
        ..TrackerConfig::default()
    });
    // per confirmed person track: first and last time seen confirmed
    let mut life: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    let mut covered = 0usize;
    let mut detected_people = 0usize;
    for (i, s) in timeline(&dets) {
        let d = &dets[&i];
        let tracks = tr.update(d, at(s), (768, 576));
        for t in tracks {
            if t.class_id == 0 && t.state == TrackState::Confirmed {
                let e = life.entry(t.id.0).or_insert((s, s));
                e.1 = s;
            }
        }
        for p in d.iter().filter(|d| d.class_id == 0 && d.score >= 0.5) {
            detected_people += 1;
            if tracks
                .iter()
                .any(|t| t.state == TrackState::Confirmed && t.bbox.iou(&p.bbox) > 0.5)
            {
                covered += 1;
            }
        }
    }
    let n = life.len();
    let mut lengths: Vec<f64> = life.values().map(|(a, b)| b - a).collect();
    lengths.sort_by(f64::total_cmp);
    let median = lengths[lengths.len() / 2];
    let long = lengths.iter().filter(|l| **l >= 10.0).count();
    eprintln!(
        "person tracks: {n}, median life {median:.1} s, {long} longer than 10 s; \
         {covered} of {detected_people} person detections >= 0.5 have a confirmed track on them"
    );
    // About 20 people cross the scene in 80 s, several in and out of view behind each other;
    // a tracker that fragments would show hundreds of short tracks.
    assert!((10..=60).contains(&n), "{n} person tracks");
    assert!(
        median >= 5.0,
        "median track life {median:.1} s: {lengths:?}"
    );
    // nearly every confident person detection has a confirmed track on it (each track is
    // tentative for its first two frames)
    assert!(
        covered as f64 >= 0.9 * detected_people as f64,
        "{covered} / {detected_people}"
    );
}

#[test]
fn crowd_on_real_footage_starts_within_dwell_plus_2_s_and_ends_when_empty() {
    // the plaza (paved area) of vtest, a low threshold: 3 persons
    let site = site(
        r#"
[sites.tamper]
enabled = false

[[sites.zones]]
id = "plaza"
name = "Plaza"
kind = "crowd"
polygon = [[0.0, 0.3], [1.0, 0.2], [1.0, 0.75], [0.0, 0.6]]
area_m2 = 400.0
[sites.zones.crowd]
min_persons = 3
dwell_s = 5.0
clear_s = 5.0
"#,
    );
    let mut a = SiteAnalytics::new(&site, coco()).unwrap();
    let dets = vtest_detections();
    let mut events = Vec::new();
    let mut last_s = 0.0;
    let mut labels = Vec::new();
    for f in vtest() {
        let f = f.unwrap();
        let s = f.pts.as_secs_f64();
        let d = dets.get(&f.index).cloned().unwrap_or_default();
        let out = a.process(&frame(s, f.image), &d);
        labels.push(simpang::wall::words::zone_label(&out.results.zones[0]));
        events.extend(out.events);
        last_s = s;
    }
    // the replay stops: the camera now shows an empty scene
    for k in 1..=50 {
        let s = last_s + k as f64 * 0.2;
        events.extend(a.process(&frame(s, Image::new(416, 416)), &[]).events);
    }
    let summary: Vec<(RulePhase, f64, Option<u32>)> = events
        .iter()
        .map(|e| {
            (
                e.phase,
                (e.at - at(0.0)).num_milliseconds() as f64 / 1000.0,
                e.evidence.persons,
            )
        })
        .collect();
    eprintln!("crowd events: {summary:?}");
    eprintln!(
        "labels every 10 s: {:?}",
        labels.iter().step_by(50).collect::<Vec<_>>()
    );
    assert!(events.iter().all(|e| e.kind == IncidentKind::Crowd));
    let first = &summary[0];
    assert_eq!(first.0, RulePhase::Start);
    assert!(first.1 <= 5.0 + 2.0, "start at {} s", first.1);
    assert!(first.2.unwrap() >= 3);
    let last = summary.last().unwrap();
    assert_eq!(last.0, RulePhase::End);
    // after the last frame: lost tracks coast 1.5 s, the 2 s median follows, then clear_s 5 s
    assert!(
        last.1 > last_s && last.1 <= last_s + 1.5 + 2.0 + 5.0 + 0.4,
        "end at {} s, replay ended {last_s}",
        last.1
    );
    // the end reports the crowd as it was, not the empty scene
    assert!(last.2.unwrap() >= 3, "{summary:?}");
    // starts and ends alternate
    for w in summary.windows(2) {
        assert!(
            !(w[0].0 == RulePhase::Start && w[1].0 == RulePhase::Start),
            "{summary:?}"
        );
    }
}
