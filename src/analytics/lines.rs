//! Counting lines: crossings per direction and class, for Dishub.
//!
//! A track's ground point (box bottom-centre) is on the "in" side of A → B when it is more than
//! `BAND` to the right of the line, on the "out" side when more than `BAND` to the left, and
//! keeps its last side inside the band. A side change takes effect when the point is seen on the
//! new side in `CONFIRM_FRAMES` consecutive frames (a box jittering across the band every other
//! frame never flips it). A change of side is a crossing, counted when it happens within the
//! segment (not past its ends) and at most once per direction per track: a vehicle wobbling on
//! a stop line counts once.

use std::collections::HashMap;

use super::geom::Segment;
use crate::model::{ClassId, DirCounts, Track, TrackId, TrackState};

/// Half-width of the dead band around the line, normalised units.
pub const BAND: f32 = 0.01;
/// How far past the segment's ends (share of its length) a crossing still counts.
pub const END_MARGIN: f32 = 0.05;
/// Consecutive observations on the new side needed for a side change.
pub const CONFIRM_FRAMES: u8 = 2;

/// Direction of a crossing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

#[derive(Clone, Copy, Debug)]
struct Memo {
    /// -1 out side, +1 in side, 0 not known yet.
    side: i8,
    /// Side seen in the latest frames that differs from `side`, and how many frames in a row.
    pending: i8,
    pending_n: u8,
    /// Bit 0: counted in, bit 1: counted out.
    counted: u8,
    /// Crossings seen while the track was tentative, counted once it is confirmed (a false
    /// positive that never confirms never counts).
    deferred: u8,
    /// Frame number when last seen (for pruning).
    seen: u64,
}

/// One counting line's state.
#[derive(Clone, Debug)]
pub struct LineCounter {
    seg: Segment,
    /// Counted classes, indexed by class id.
    classes: Vec<bool>,
    memo: HashMap<TrackId, Memo>,
    frame: u64,
    pub total: DirCounts,
    /// Per reporting interval, per class id: crossings.
    intervals: Vec<Vec<DirCounts>>,
}

impl LineCounter {
    /// `classes`: the class ids counted; `intervals`: how many reporting intervals to keep
    /// counts for; `n_classes`: size of the label list.
    pub fn new(seg: Segment, classes: &[ClassId], n_classes: usize, intervals: usize) -> Self {
        let mut cls = vec![false; n_classes];
        for &c in classes {
            if let Some(slot) = cls.get_mut(c as usize) {
                *slot = true;
            }
        }
        Self {
            seg,
            classes: cls,
            memo: HashMap::new(),
            frame: 0,
            total: DirCounts::default(),
            intervals: vec![vec![DirCounts::default(); n_classes]; intervals],
        }
    }

    /// Folds in one frame's tracks; calls `on_cross` for every new crossing. Tracks no longer
    /// present are forgotten.
    pub fn update(&mut self, tracks: &[Track], mut on_cross: impl FnMut(&Track, Dir)) {
        self.frame += 1;
        for t in tracks {
            if !self
                .classes
                .get(t.class_id as usize)
                .copied()
                .unwrap_or(false)
            {
                continue;
            }
            let memo = self.memo.entry(t.id).or_insert(Memo {
                side: 0,
                pending: 0,
                pending_n: 0,
                counted: 0,
                deferred: 0,
                seen: 0,
            });
            memo.seen = self.frame;
            // A lost track's box is a prediction: it does not decide sides. When the object
            // is found again on the other side, that crossing counts then.
            if t.state == TrackState::Lost {
                continue;
            }
            let p = t.bbox.bottom_center();
            let mut crossed = 0u8;
            if t.state == TrackState::Confirmed && memo.deferred != 0 {
                crossed = std::mem::take(&mut memo.deferred);
            }
            let d = self.seg.side(p);
            let side = if d > BAND {
                1
            } else if d < -BAND {
                -1
            } else {
                0
            };
            if side != 0 {
                crossed |= observe(memo, side, self.seg.along(p), t.state);
            }
            for (dir, bit) in [(Dir::In, 1u8), (Dir::Out, 2u8)] {
                if crossed & bit == 0 || memo.counted & bit != 0 {
                    continue;
                }
                memo.counted |= bit;
                match dir {
                    Dir::In => self.total.in_count += 1,
                    Dir::Out => self.total.out_count += 1,
                }
                for per in &mut self.intervals {
                    if let Some(c) = per.get_mut(t.class_id as usize) {
                        match dir {
                            Dir::In => c.in_count += 1,
                            Dir::Out => c.out_count += 1,
                        }
                    }
                }
                on_cross(t, dir);
            }
        }
        let frame = self.frame;
        self.memo.retain(|_, m| m.seen == frame);
    }

    /// Crossings per class id in interval `i` since it was last taken; resets them.
    pub fn take_interval(&mut self, i: usize) -> Vec<(ClassId, DirCounts)> {
        let Some(per) = self.intervals.get_mut(i) else {
            return Vec::new();
        };
        let out = per
            .iter()
            .enumerate()
            .filter(|(_, c)| c.in_count + c.out_count > 0)
            .map(|(k, c)| (k as ClassId, *c))
            .collect();
        per.iter_mut().for_each(|c| *c = DirCounts::default());
        out
    }

    /// Tracks remembered (for tests of pruning).
    pub fn remembered(&self) -> usize {
        self.memo.len()
    }
}

/// Folds one observation of the track's side into its memo; returns the crossing bits (1 in,
/// 2 out) to count now. A crossing by a tentative track is deferred into the memo.
fn observe(memo: &mut Memo, side: i8, along: f32, state: TrackState) -> u8 {
    if memo.side == 0 || memo.side == side {
        memo.side = side;
        memo.pending = 0;
        memo.pending_n = 0;
        return 0;
    }
    if memo.pending == side {
        memo.pending_n = memo.pending_n.saturating_add(1);
    } else {
        memo.pending = side;
        memo.pending_n = 1;
    }
    if memo.pending_n < CONFIRM_FRAMES {
        return 0;
    }
    memo.side = side;
    memo.pending = 0;
    memo.pending_n = 0;
    if !(-END_MARGIN..=1.0 + END_MARGIN).contains(&along) {
        return 0;
    }
    let bit = if side > 0 { 1 } else { 2 };
    if state == TrackState::Confirmed {
        bit
    } else {
        memo.deferred |= bit;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BBox, Point};

    const CAR: ClassId = 2;
    const PERSON: ClassId = 0;

    fn track(id: u64, class_id: ClassId, x: f32, y_bottom: f32, state: TrackState) -> Track {
        Track {
            id: TrackId(id),
            class_id,
            bbox: BBox::new(x - 0.03, y_bottom - 0.05, x + 0.03, y_bottom),
            score: 0.9,
            state,
            velocity: Point::default(),
            speed_px_s: 0.0,
            speed_kmh: None,
            age_s: 1.0,
            hits: 5,
        }
    }

    fn counter() -> LineCounter {
        // horizontal line at y = 0.5 from x 0.1 to 0.9: "in" is downwards on screen
        LineCounter::new(Segment::new(&[[0.1, 0.5], [0.9, 0.5]]), &[CAR], 80, 1)
    }

    /// Replays one track's bottom y positions (Confirmed unless given); returns (in, out).
    fn replay(ys: &[(f32, TrackState)], x: f32) -> (u64, u64) {
        let mut c = counter();
        for &(y, st) in ys {
            c.update(&[track(1, CAR, x, y, st)], |_, _| {});
        }
        (c.total.in_count, c.total.out_count)
    }

    fn conf(ys: &[f32]) -> Vec<(f32, TrackState)> {
        ys.iter().map(|&y| (y, TrackState::Confirmed)).collect()
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn crossing_cases() {
        use TrackState::*;
        let cases: Vec<(&str, Vec<(f32, TrackState)>, f32, (u64, u64))> = vec![
            ("no frames", vec![], 0.5, (0, 0)),
            ("stays above", conf(&[0.2, 0.3, 0.4]), 0.5, (0, 0)),
            (
                "clean crossing down = in",
                conf(&[0.3, 0.4, 0.6, 0.7]),
                0.5,
                (1, 0),
            ),
            (
                "clean crossing up = out",
                conf(&[0.7, 0.6, 0.4, 0.3]),
                0.5,
                (0, 1),
            ),
            (
                "one frame past the line is not yet a crossing",
                conf(&[0.3, 0.4, 0.6]),
                0.5,
                (0, 0),
            ),
            (
                "jitter inside the band counts once",
                conf(&[0.3, 0.495, 0.505, 0.495, 0.505, 0.495, 0.7, 0.7]),
                0.5,
                (1, 0),
            ),
            (
                "jitter across the band every frame counts once",
                conf(&[0.3, 0.52, 0.48, 0.52, 0.48, 0.52, 0.7, 0.7]),
                0.5,
                (1, 0),
            ),
            (
                "wobbling on the line after crossing counts once",
                conf(&[0.3, 0.6, 0.6, 0.48, 0.52, 0.47, 0.53, 0.6, 0.6]),
                0.5,
                (1, 0),
            ),
            (
                "crossing, then really back: once per direction",
                conf(&[0.3, 0.6, 0.6, 0.3, 0.3, 0.6, 0.6, 0.3, 0.3]),
                0.5,
                (1, 1),
            ),
            (
                "starting on the line, then down: no crossing seen",
                conf(&[0.5, 0.5, 0.7, 0.7]),
                0.5,
                (0, 0),
            ),
            (
                "past the end of the segment",
                conf(&[0.3, 0.7, 0.7]),
                0.97,
                (0, 0),
            ),
            (
                "within the end margin",
                conf(&[0.3, 0.7, 0.7]),
                0.93,
                (1, 0),
            ),
            (
                "crossing while lost counts when found again",
                vec![
                    (0.3, Confirmed),
                    (0.45, Lost),
                    (0.55, Lost),
                    (0.7, Confirmed),
                    (0.75, Confirmed),
                ],
                0.5,
                (1, 0),
            ),
            (
                "tentative positions are remembered, counted once confirmed",
                vec![(0.3, Tentative), (0.7, Tentative), (0.7, Confirmed)],
                0.5,
                (1, 0),
            ),
            (
                "crossing while tentative counts when confirmed",
                vec![
                    (0.3, Tentative),
                    (0.7, Tentative),
                    (0.7, Tentative),
                    (0.75, Confirmed),
                ],
                0.5,
                (1, 0),
            ),
            (
                "a tentative crossing alone does not count",
                vec![(0.3, Tentative), (0.7, Tentative), (0.7, Tentative)],
                0.5,
                (0, 0),
            ),
        ];
        for (name, ys, x, want) in cases {
            assert_eq!(replay(&ys, x), want, "{name}");
        }
    }

    #[test]
    fn classes_intervals_and_pruning() {
        let mut c = LineCounter::new(Segment::new(&[[0.1, 0.5], [0.9, 0.5]]), &[CAR, 7], 80, 2);
        let mut seen = Vec::new();
        for (i, y) in [0.3, 0.7, 0.7].into_iter().enumerate() {
            let tracks = [
                track(1, CAR, 0.3, y, TrackState::Confirmed),
                track(2, PERSON, 0.5, y, TrackState::Confirmed),
                track(3, 7, 0.7, 1.0 - y, TrackState::Confirmed),
                // unknown class id: never counted, never panics
                track(4, u16::MAX, 0.6, y, TrackState::Confirmed),
            ];
            c.update(&tracks, |t, d| seen.push((t.id.0, d, i)));
        }
        assert_eq!(seen, vec![(1, Dir::In, 2), (3, Dir::Out, 2)]);
        assert_eq!(
            c.take_interval(0),
            vec![
                (
                    CAR,
                    DirCounts {
                        in_count: 1,
                        out_count: 0
                    }
                ),
                (
                    7,
                    DirCounts {
                        in_count: 0,
                        out_count: 1
                    }
                ),
            ]
        );
        assert!(c.take_interval(0).is_empty());
        assert_eq!(c.take_interval(1).len(), 2);
        assert!(c.take_interval(9).is_empty());
        assert_eq!(c.remembered(), 2);
        c.update(&[], |_, _| {});
        assert_eq!(c.remembered(), 0);
        assert_eq!((c.total.in_count, c.total.out_count), (1, 1));
    }
}
