//! Class-aware greedy non-maximum suppression.

use std::cmp::Ordering;

use crate::model::Detection;

/// Best first; ties broken by class and box so that the result does not depend on the order the
/// decoder produced candidates in (an unstable sort, which does not allocate, stays
/// deterministic).
fn better(a: &Detection, b: &Detection) -> Ordering {
    b.score
        .total_cmp(&a.score)
        .then(a.class_id.cmp(&b.class_id))
        .then(a.bbox.x1.total_cmp(&b.bbox.x1))
        .then(a.bbox.y1.total_cmp(&b.bbox.y1))
        .then(a.bbox.x2.total_cmp(&b.bbox.x2))
        .then(a.bbox.y2.total_cmp(&b.bbox.y2))
}

/// Greedy NMS per class: candidates are visited best first (only the best `top_k`); one is kept
/// unless a kept box of the same class overlaps it with IoU above `iou`. At most `max_keep`
/// detections are written to `out` (cleared first), best first. `candidates` is reordered.
///
/// Allocation-free once `out` has grown to `max_keep`.
pub fn nms(
    candidates: &mut [Detection],
    iou: f32,
    top_k: usize,
    max_keep: usize,
    out: &mut Vec<Detection>,
) {
    out.clear();
    if candidates.is_empty() || max_keep == 0 {
        return;
    }
    let n = candidates.len().min(top_k.max(1));
    if n < candidates.len() {
        // Only the best `n` matter: partition them to the front, then sort just those.
        candidates.select_nth_unstable_by(n - 1, better);
    }
    let best = &mut candidates[..n];
    best.sort_unstable_by(better);
    for c in best.iter() {
        let suppressed = out
            .iter()
            .any(|k| k.class_id == c.class_id && k.bbox.iou(&c.bbox) > iou);
        if !suppressed {
            out.push(*c);
            if out.len() == max_keep {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BBox;

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, score: f32, class_id: u16) -> Detection {
        Detection {
            bbox: BBox::new(x1, y1, x2, y2),
            score,
            class_id,
        }
    }

    fn run(mut c: Vec<Detection>, iou: f32) -> Vec<Detection> {
        let mut out = Vec::new();
        nms(&mut c, iou, 1000, 100, &mut out);
        out
    }

    #[test]
    fn empty_input_gives_nothing() {
        assert!(run(vec![], 0.5).is_empty());
    }

    #[test]
    fn overlapping_same_class_keeps_the_best() {
        let a = det(0.10, 0.10, 0.30, 0.50, 0.7, 0);
        let b = det(0.11, 0.10, 0.31, 0.50, 0.9, 0); // IoU with a ~0.9
        let c = det(0.60, 0.60, 0.70, 0.80, 0.6, 0); // disjoint
        assert_eq!(run(vec![a, b, c], 0.6), vec![b, c]);
    }

    #[test]
    fn different_classes_do_not_suppress_each_other() {
        let a = det(0.1, 0.1, 0.3, 0.5, 0.8, 0);
        let b = det(0.1, 0.1, 0.3, 0.5, 0.6, 2);
        assert_eq!(run(vec![b, a], 0.6), vec![a, b]);
    }

    #[test]
    fn identical_boxes_keep_one() {
        let a = det(0.2, 0.2, 0.4, 0.4, 0.5, 1);
        let out = run(vec![a, a, a], 0.6);
        assert_eq!(out, vec![a]);
        // even at the loosest setting an identical box (IoU 1) is not above 1.0: all kept
        assert_eq!(run(vec![a, a], 1.0).len(), 2);
    }

    #[test]
    fn iou_up_to_the_threshold_is_kept() {
        // b overlaps a by 1/3 (half-shifted box of equal size)
        let a = det(0.0, 0.0, 0.5, 0.5, 0.9, 0);
        let b = det(0.25, 0.0, 0.75, 0.5, 0.8, 0);
        assert_eq!(run(vec![a, b], 0.5).len(), 2);
        assert_eq!(run(vec![a, b], a.bbox.iou(&b.bbox)).len(), 2);
        assert_eq!(run(vec![a, b], 0.3).len(), 1);
    }

    #[test]
    fn chain_is_resolved_greedily() {
        // a suppresses b, b would have suppressed c, but b is gone so c stays
        let a = det(0.00, 0.0, 0.40, 0.4, 0.9, 0);
        let b = det(0.10, 0.0, 0.50, 0.4, 0.8, 0);
        let c = det(0.20, 0.0, 0.60, 0.4, 0.7, 0);
        assert!(a.bbox.iou(&b.bbox) > 0.5 && b.bbox.iou(&c.bbox) > 0.5);
        assert!(a.bbox.iou(&c.bbox) < 0.5);
        assert_eq!(run(vec![c, b, a], 0.5), vec![a, c]);
    }

    #[test]
    fn top_k_and_max_keep_bound_the_work() {
        let mut c: Vec<_> = (0..50)
            .map(|i| {
                let x = i as f32 * 0.02;
                det(x, 0.0, x + 0.01, 0.1, i as f32 / 100.0, 0)
            })
            .collect();
        let mut out = Vec::new();
        nms(&mut c, 0.5, 10, 100, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(out[0].score, 0.49);
        assert_eq!(out[9].score, 0.40);
        nms(&mut c, 0.5, 1000, 3, &mut out);
        assert_eq!(
            out.iter().map(|d| d.score).collect::<Vec<_>>(),
            [0.49, 0.48, 0.47]
        );
    }

    #[test]
    fn order_of_candidates_does_not_matter() {
        let a = det(0.1, 0.1, 0.3, 0.3, 0.5, 0);
        let b = det(0.12, 0.1, 0.32, 0.3, 0.5, 0); // same score, overlapping
        assert_eq!(run(vec![a, b], 0.5), run(vec![b, a], 0.5));
    }
}
