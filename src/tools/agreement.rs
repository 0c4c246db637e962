//! How far a model's detections agree with a reference model's on the same frames: recall and
//! precision at an IoU threshold within a class group, and the per-frame person-count error.
//! Pure functions over detections; `simpang eval` feeds them.

use serde::Serialize;

use crate::model::Detection;

/// Classes compared as one: a box of any class of the group matches a box of any class of the
/// same group (a van seen as "truck" by one model and "car" by the other still agrees).
#[derive(Clone, Debug)]
pub struct ClassGroup {
    pub name: &'static str,
    pub classes: &'static [&'static str],
}

/// The groups `simpang eval` reports.
pub const GROUPS: [ClassGroup; 2] = [
    ClassGroup {
        name: "person",
        classes: &["person"],
    },
    ClassGroup {
        name: "vehicle",
        classes: &["car", "motorcycle", "bus", "truck"],
    },
];

impl ClassGroup {
    /// Class ids of the group in a labels list (names missing from the labels are ignored).
    pub fn ids(&self, labels: &[String]) -> Vec<usize> {
        labels
            .iter()
            .enumerate()
            .filter(|(_, l)| self.classes.contains(&l.as_str()))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Matched counts summed over frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Reference boxes (the denominator of recall).
    pub reference: usize,
    /// The model's boxes (the denominator of precision).
    pub detected: usize,
    /// One-to-one matches at IoU >= the threshold.
    pub matched: usize,
}

impl Counts {
    /// `None` when there is nothing to recall.
    pub fn recall(&self) -> Option<f64> {
        (self.reference > 0).then(|| self.matched as f64 / self.reference as f64)
    }
    /// `None` when the model found nothing.
    pub fn precision(&self) -> Option<f64> {
        (self.detected > 0).then(|| self.matched as f64 / self.detected as f64)
    }
    pub fn add(&mut self, o: Counts) {
        self.reference += o.reference;
        self.detected += o.detected;
        self.matched += o.matched;
    }
}

/// One frame: greedy one-to-one matching within a class group (`ref_ids` in the reference's
/// labels, `det_ids` in the model's). The model's boxes are taken best score first; each takes
/// the unmatched reference box with the highest IoU, if that IoU is at least `iou` (the usual
/// detection-benchmark rule).
pub fn match_frame(
    reference: &[Detection],
    ref_ids: &[usize],
    detected: &[Detection],
    det_ids: &[usize],
    iou: f32,
) -> Counts {
    let refs: Vec<&Detection> = reference
        .iter()
        .filter(|d| ref_ids.contains(&(d.class_id as usize)))
        .collect();
    let mut dets: Vec<&Detection> = detected
        .iter()
        .filter(|d| det_ids.contains(&(d.class_id as usize)))
        .collect();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; refs.len()];
    let mut matched = 0;
    for d in &dets {
        let best = refs
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(i, r)| (i, d.bbox.iou(&r.bbox)))
            .filter(|(_, v)| *v >= iou)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, _)) = best {
            taken[i] = true;
            matched += 1;
        }
    }
    Counts {
        reference: refs.len(),
        detected: dets.len(),
        matched,
    }
}

/// `regions` (x1, y1, x2, y2) given in pixels of a `frame_size` frame, as fractions of it.
pub fn fractions_of(regions: &[[f32; 4]], frame_size: [f32; 2]) -> Vec<[f32; 4]> {
    let [w, h] = frame_size;
    regions
        .iter()
        .map(|r| [r[0] / w, r[1] / h, r[2] / w, r[3] / h])
        .collect()
}

/// True when the centre of `b` lies in one of `regions` (x1, y1, x2, y2, fractions of the frame).
pub fn centre_in_any(b: &crate::model::BBox, regions: &[[f32; 4]]) -> bool {
    let (cx, cy) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
    regions
        .iter()
        .any(|r| cx >= r[0] && cx <= r[2] && cy >= r[1] && cy <= r[3])
}

/// Detections of class `id` scoring above `min_score`.
pub fn count_class(dets: &[Detection], id: usize, min_score: f32) -> usize {
    dets.iter()
        .filter(|d| d.class_id as usize == id && d.score > min_score)
        .count()
}

/// Mean absolute difference of per-frame counts; `None` for no frames.
pub fn mean_abs_error(a: &[usize], b: &[usize]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let sum: usize = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).sum();
    Some(sum as f64 / a.len() as f64)
}

/// Median and 95th percentile (nearest rank) of `samples`, in the samples' unit.
pub fn median_p95(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    // nearest rank: the smallest value with at least 95% of the samples at or below it
    let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n);
    Some((median, s[rank - 1]))
}

/// `n` indices spread evenly over `0..len` (the middle of `n` equal parts); all of them if
/// `n >= len`.
pub fn even_indices(len: u64, n: usize) -> Vec<u64> {
    if len == 0 || n == 0 {
        return Vec::new();
    }
    let n = (n as u64).min(len);
    (0..n).map(|j| (2 * j + 1) * len / (2 * n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BBox;

    fn det(class_id: u16, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            class_id: class_id as _,
        }
    }

    fn labels() -> Vec<String> {
        [
            "person",
            "bicycle",
            "car",
            "motorcycle",
            "airplane",
            "bus",
            "train",
            "truck",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn a_box_is_ignored_by_its_centre() {
        let region = [[0.1, 0.1, 0.3, 0.3]];
        // centre (0.2, 0.2) inside; a box reaching into the region with its centre outside is
        // kept; no regions ignore nothing
        assert!(centre_in_any(&BBox::new(0.15, 0.15, 0.25, 0.25), &region));
        assert!(!centre_in_any(&BBox::new(0.25, 0.25, 0.45, 0.45), &region));
        assert!(!centre_in_any(&BBox::new(0.15, 0.15, 0.25, 0.25), &[]));
    }

    #[test]
    fn group_ids_follow_the_labels() {
        let l = labels();
        assert_eq!(GROUPS[0].ids(&l), vec![0]);
        assert_eq!(GROUPS[1].ids(&l), vec![2, 3, 5, 7]);
        assert_eq!(GROUPS[1].ids(&[]), Vec::<usize>::new());
    }

    #[test]
    fn matching_cases() {
        let a = det(0, 0.9, 0.0, 0.0, 0.2, 0.4);
        let b = det(0, 0.8, 0.5, 0.5, 0.7, 0.9);
        // IoU exactly 0.5 in binary floating point: the left half of a box (area 1/2 of it)
        let whole = det(0, 0.9, 0.0, 0.0, 0.5, 0.5);
        let half = det(0, 0.7, 0.0, 0.0, 0.25, 0.5);
        let car = det(2, 0.6, 0.0, 0.0, 0.2, 0.4);
        let truck = det(7, 0.6, 0.0, 0.0, 0.2, 0.4);
        let p = [0usize];
        let v = [2usize, 3, 5, 7];
        let c = |reference, detected, matched| Counts {
            reference,
            detected,
            matched,
        };
        type Case<'a> = (&'a str, Vec<Detection>, Vec<Detection>, &'a [usize], Counts);
        let cases: Vec<Case> = vec![
            ("both empty", vec![], vec![], &p, c(0, 0, 0)),
            ("nothing detected", vec![a], vec![], &p, c(1, 0, 0)),
            ("nothing to find", vec![], vec![a], &p, c(0, 1, 0)),
            ("identical", vec![a, b], vec![b, a], &p, c(2, 2, 2)),
            ("one of two", vec![a, b], vec![a], &p, c(2, 1, 1)),
            (
                "duplicate matches once",
                vec![a],
                vec![a, a],
                &p,
                c(1, 2, 1),
            ),
            ("IoU 0.5 counts", vec![whole], vec![half], &p, c(1, 1, 1)),
            ("other group ignored", vec![a], vec![car], &p, c(1, 0, 0)),
            ("car vs truck agree", vec![car], vec![truck], &v, c(1, 1, 1)),
        ];
        for (name, r, d, ids, want) in cases {
            assert_eq!(match_frame(&r, ids, &d, ids, 0.5), want, "{name}");
        }
        // just below 0.5 does not match
        let below = det(0, 0.7, 0.07, 0.0, 0.27, 0.4);
        assert!(below.bbox.iou(&a.bbox) < 0.5);
        assert_eq!(match_frame(&[a], &p, &[below], &p, 0.5), c(1, 1, 0));
        // labels in a different order: the model's person is class 3
        let moved = det(3, 0.9, 0.0, 0.0, 0.2, 0.4);
        assert_eq!(match_frame(&[a], &p, &[moved], &[3], 0.5), c(1, 1, 1));
    }

    #[test]
    fn greedy_takes_the_best_scoring_box_first() {
        // The high-scoring box overlaps both reference boxes and takes the one it overlaps most
        // (IoU 0.67 over 0.54); the low-scoring box then finds its only partner taken. An optimal
        // assignment would match both: the greedy rule is the benchmark convention, and this
        // pins it down.
        let r1 = det(0, 0.9, 0.0, 0.0, 0.5, 0.5);
        let r2 = det(0, 0.9, 0.25, 0.0, 0.75, 0.5);
        let high = det(0, 0.95, 0.15, 0.0, 0.65, 0.5);
        let low = det(0, 0.55, 0.3, 0.0, 0.8, 0.5);
        let c = match_frame(&[r1, r2], &[0], &[low, high], &[0], 0.5);
        assert_eq!((c.reference, c.detected, c.matched), (2, 2, 1));
        // alone, the low-scoring box matches
        assert_eq!(match_frame(&[r1, r2], &[0], &[low], &[0], 0.5).matched, 1);
    }

    #[test]
    fn ratios_and_empty_denominators() {
        let c = Counts {
            reference: 4,
            detected: 5,
            matched: 4,
        };
        assert_eq!(c.recall(), Some(1.0));
        assert_eq!(c.precision(), Some(0.8));
        assert_eq!(Counts::default().recall(), None);
        assert_eq!(Counts::default().precision(), None);
    }

    #[test]
    fn mae_cases() {
        for (a, b, want) in [
            (vec![], vec![], None),
            (vec![1], vec![1, 2], None),
            (vec![3, 5], vec![3, 5], Some(0.0)),
            (vec![3, 5, 0], vec![4, 3, 0], Some(1.0)),
        ] {
            assert_eq!(mean_abs_error(&a, &b), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn percentiles() {
        assert_eq!(median_p95(&[]), None);
        assert_eq!(median_p95(&[7.0]), Some((7.0, 7.0)));
        assert_eq!(median_p95(&[2.0, 1.0]), Some((1.5, 2.0)));
        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(median_p95(&hundred), Some((50.5, 95.0)));
        let twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_p95(&twenty), Some((10.5, 19.0)));
    }

    #[test]
    fn even_spread() {
        for (len, n, want) in [
            (0u64, 3usize, vec![]),
            (10, 0, vec![]),
            (10, 1, vec![5]),
            (10, 2, vec![2, 7]),
            (4, 10, vec![0, 1, 2, 3]),
            (795, 4, vec![99, 298, 496, 695]),
        ] {
            assert_eq!(even_indices(len, n), want, "{len} {n}");
        }
    }

    #[test]
    fn counting_uses_a_strict_threshold() {
        let d = [
            det(0, 0.5, 0.0, 0.0, 1.0, 1.0),
            det(0, 0.51, 0.0, 0.0, 1.0, 1.0),
            det(2, 0.9, 0.0, 0.0, 1.0, 1.0),
        ];
        assert_eq!(count_class(&d, 0, 0.5), 1);
        assert_eq!(count_class(&d, 0, 0.0), 2);
        assert_eq!(count_class(&d, 2, 0.5), 1);
    }
}
