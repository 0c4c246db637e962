//! Output decoders: raw tensors of one image → candidate detections (before NMS), in normalised
//! coordinates. Pure functions over slices, so they are tested on synthetic tensors.

use crate::model::{BBox, Detection};

/// An output did not hold what the binding promised (never expected after the load-time check,
/// but a frame-loop error rather than a panic if it happens).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// Rows of a 2-D view into an output tensor: row `i` is `data[i*row_len + offset ..][..width]`.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub row_len: usize,
    pub offset: usize,
}

impl Rows<'_> {
    fn check(&self, rows: usize, width: usize, what: &str) -> Result<(), DecodeError> {
        let need = if rows == 0 {
            0
        } else {
            (rows - 1) * self.row_len + self.offset + width
        };
        if self.offset + width > self.row_len || self.data.len() < need {
            return Err(DecodeError(format!(
                "{what}: {} values cannot hold {rows} rows of {width} (row length {}, offset {})",
                self.data.len(),
                self.row_len,
                self.offset
            )));
        }
        Ok(())
    }
}

/// One stride of a NanoDet GFL head, for one image.
#[derive(Clone, Copy, Debug)]
pub struct NanodetLevel<'a> {
    pub stride: u32,
    pub grid_w: usize,
    pub grid_h: usize,
    /// Class scores (already sigmoid), `num_classes` per cell, cells row-major.
    pub cls: Rows<'a>,
    /// Box side distributions, `4 * (reg_max + 1)` logits per cell in order left, top, right,
    /// bottom.
    pub reg: Rows<'a>,
}

/// Fixed decoding parameters of a model.
#[derive(Clone, Copy, Debug)]
pub struct DecodeParams<'a> {
    /// Score threshold per class id; a candidate is kept when its score is above its class's.
    pub thresholds: &'a [f32],
    /// The smallest of `thresholds`: cells whose best score is not above it are skipped early.
    pub min_threshold: f32,
    /// Network input size in pixels (boxes are divided by it).
    pub input_w: f32,
    pub input_h: f32,
}

impl<'a> DecodeParams<'a> {
    pub fn new(thresholds: &'a [f32], input_w: u32, input_h: u32) -> Self {
        let min_threshold = thresholds.iter().copied().fold(f32::INFINITY, f32::min);
        Self {
            thresholds,
            min_threshold,
            input_w: input_w as f32,
            input_h: input_h as f32,
        }
    }

    /// Appends a box given in input pixels as `[x1, y1, x2, y2]`, normalised and clamped.
    fn push(&self, out: &mut Vec<Detection>, b: [f32; 4], score: f32, c: usize) {
        out.push(Detection {
            bbox: BBox::new(
                b[0] / self.input_w,
                b[1] / self.input_h,
                b[2] / self.input_w,
                b[3] / self.input_h,
            )
            .clamped(),
            score,
            class_id: c as u16,
        });
    }
}

/// Index and value of the largest element (the first one on ties).
#[inline]
fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    best
}

/// Largest element (NEG_INFINITY for none; NaN never wins). Eight running maxima, so the
/// compiler turns the loop into vector max instructions: most cells of a frame are background
/// and are rejected by this pass alone, which is ~5x faster than the index-tracking argmax.
#[inline]
fn max_of(v: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let chunks = v.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for k in 0..8 {
            m[k] = if c[k] > m[k] { c[k] } else { m[k] };
        }
    }
    let mut best = f32::NEG_INFINITY;
    for &x in m.iter().chain(rest) {
        if x > best {
            best = x;
        }
    }
    best
}

/// Expected bin of a softmax over `logits` (the GFL "integral" of the distribution).
#[inline]
fn softmax_expectation(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut weighted) = (0.0f32, 0.0f32);
    for (k, &l) in logits.iter().enumerate() {
        let e = (l - max).exp();
        sum += e;
        weighted += e * k as f32;
    }
    weighted / sum
}

/// Decodes one NanoDet level (MODEL.md, "Decoding"): per cell the best class, kept when above its
/// threshold; box sides are the softmax expectation of each side's distribution times the
/// stride, measured from the cell centre `(col + center_offset, row + center_offset) * stride`.
pub fn decode_nanodet_level(
    level: &NanodetLevel<'_>,
    reg_max: u32,
    center_offset: f32,
    p: &DecodeParams<'_>,
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    let nc = p.thresholds.len();
    let bins = reg_max as usize + 1;
    let cells = level.grid_w * level.grid_h;
    level.cls.check(cells, nc, "class scores")?;
    level.reg.check(cells, 4 * bins, "box distributions")?;
    let s = level.stride as f32;
    for i in 0..cells {
        let start = i * level.cls.row_len + level.cls.offset;
        let scores = &level.cls.data[start..start + nc];
        if max_of(scores) <= p.min_threshold {
            continue;
        }
        let (c, score) = argmax(scores);
        if score <= p.thresholds[c] {
            continue;
        }
        let start = i * level.reg.row_len + level.reg.offset;
        let reg = &level.reg.data[start..start + 4 * bins];
        let d = |side: usize| softmax_expectation(&reg[side * bins..(side + 1) * bins]) * s;
        let cx = ((i % level.grid_w) as f32 + center_offset) * s;
        let cy = ((i / level.grid_w) as f32 + center_offset) * s;
        p.push(out, [cx - d(0), cy - d(1), cx + d(2), cy + d(3)], score, c);
    }
    Ok(())
}

/// Reused per-anchor buffers of the YOLO decoder.
#[derive(Debug, Default)]
pub struct YoloScratch {
    best: Vec<f32>,
    class: Vec<u16>,
}

/// Decodes an Ultralytics YOLOv8/11 output of one image: `4 + C` rows of `anchors` values
/// (`transposed`: `anchors` rows of `4 + C`). Rows 0..4 are cx, cy, w, h in input pixels, the rest
/// class scores after sigmoid; a candidate takes its best class.
pub fn decode_yolov8(
    data: &[f32],
    anchors: usize,
    transposed: bool,
    p: &DecodeParams<'_>,
    scratch: &mut YoloScratch,
    out: &mut Vec<Detection>,
) -> Result<(), DecodeError> {
    let nc = p.thresholds.len();
    let need = (4 + nc) * anchors;
    if data.len() < need {
        return Err(DecodeError(format!(
            "YOLO output has {} values, expected {} ({} rows of {anchors})",
            data.len(),
            need,
            4 + nc
        )));
    }
    let data = &data[..need];
    let mut keep = |c: usize, score: f32, b: [f32; 4]| {
        if score > p.min_threshold && score > p.thresholds[c] {
            let [cx, cy, w, h] = b;
            p.push(
                out,
                [cx - w * 0.5, cy - h * 0.5, cx + w * 0.5, cy + h * 0.5],
                score,
                c,
            );
        }
    };
    if transposed {
        for row in data.chunks_exact(4 + nc) {
            let (c, score) = argmax(&row[4..]);
            keep(c, score, [row[0], row[1], row[2], row[3]]);
        }
        return Ok(());
    }
    // Channel-major: walk the class rows in memory order, keeping a running best per anchor, so
    // the 80×8400 scores are read once, sequentially.
    scratch.best.clear();
    scratch.best.resize(anchors, f32::NEG_INFINITY);
    scratch.class.clear();
    scratch.class.resize(anchors, 0);
    for c in 0..nc {
        let row = &data[(4 + c) * anchors..(5 + c) * anchors];
        for ((b, k), &v) in scratch
            .best
            .iter_mut()
            .zip(scratch.class.iter_mut())
            .zip(row)
        {
            if v > *b {
                *b = v;
                *k = c as u16;
            }
        }
    }
    for n in 0..anchors {
        let score = scratch.best[n];
        if score <= p.min_threshold {
            continue;
        }
        let b = [
            data[n],
            data[anchors + n],
            data[2 * anchors + n],
            data[3 * anchors + n],
        ];
        keep(scratch.class[n] as usize, score, b);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NC: usize = 3;
    const BINS: usize = 11;

    /// A 4x4 grid at stride 8 (32x32 input): every score 0.01 except one cell, every
    /// distribution uniform except that cell's, which is one-hot at `sides` bins.
    fn level_data(
        cell: usize,
        class: usize,
        score: f32,
        sides: [usize; 4],
    ) -> (Vec<f32>, Vec<f32>) {
        let mut cls = vec![0.01; 16 * NC];
        cls[cell * NC + class] = score;
        let mut reg = vec![0.0; 16 * 4 * BINS];
        for (side, &bin) in sides.iter().enumerate() {
            reg[cell * 4 * BINS + side * BINS + bin] = 60.0;
        }
        (cls, reg)
    }

    fn decode(
        cls: &[f32],
        reg: &[f32],
        thr: &[f32],
        offset: f32,
    ) -> Result<Vec<Detection>, DecodeError> {
        let level = NanodetLevel {
            stride: 8,
            grid_w: 4,
            grid_h: 4,
            cls: Rows {
                data: cls,
                row_len: NC,
                offset: 0,
            },
            reg: Rows {
                data: reg,
                row_len: 4 * BINS,
                offset: 0,
            },
        };
        let mut out = Vec::new();
        decode_nanodet_level(
            &level,
            10,
            offset,
            &DecodeParams::new(thr, 32, 32),
            &mut out,
        )?;
        Ok(out)
    }

    fn close(a: BBox, b: [f32; 4]) -> bool {
        let a = [a.x1, a.y1, a.x2, a.y2];
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn nanodet_one_hot_cell_gives_known_box() {
        // cell 6 = row 1, col 2: centre (2.5*8, 1.5*8) = (20, 12)
        let (cls, reg) = level_data(6, 1, 0.9, [2, 1, 1, 2]);
        let out = decode(&cls, &reg, &[0.5; NC], 0.5).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].class_id, 1);
        assert_eq!(out[0].score, 0.9);
        // l=16, t=8, r=8, b=16 → (4, 4, 28, 28) px of 32
        assert!(
            close(
                out[0].bbox,
                [4.0 / 32.0, 4.0 / 32.0, 28.0 / 32.0, 28.0 / 32.0]
            ),
            "{:?}",
            out[0]
        );
        // NanoDet-Plus convention: centre at the cell corner
        let out = decode(&cls, &reg, &[0.5; NC], 0.0).unwrap();
        assert!(
            close(out[0].bbox, [0.0, 0.0, 24.0 / 32.0, 24.0 / 32.0]),
            "{:?}",
            out[0]
        );
    }

    #[test]
    fn nanodet_uniform_distribution_is_the_middle_bin() {
        let (cls, mut reg) = level_data(0, 0, 0.8, [0, 0, 0, 0]);
        reg.iter_mut().for_each(|v| *v = 0.0);
        let out = decode(&cls, &reg, &[0.5; NC], 0.5).unwrap();
        // centre (4, 4), each side 5 bins * 8 px = 40 → clipped to the image
        assert!(close(out[0].bbox, [0.0, 0.0, 1.0, 1.0]), "{:?}", out[0]);
    }

    #[test]
    fn nanodet_per_class_thresholds() {
        let (cls, reg) = level_data(5, 2, 0.45, [1, 1, 1, 1]);
        assert!(decode(&cls, &reg, &[0.5, 0.5, 0.5], 0.5)
            .unwrap()
            .is_empty());
        assert_eq!(decode(&cls, &reg, &[0.5, 0.5, 0.4], 0.5).unwrap().len(), 1);
        // a low threshold on another class does not let this one through
        assert!(decode(&cls, &reg, &[0.1, 0.5, 0.5], 0.5)
            .unwrap()
            .is_empty());
        // strictly above: a score equal to the threshold is dropped
        assert!(decode(&cls, &reg, &[0.5, 0.5, 0.45], 0.5)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn nanodet_concatenated_rows() {
        // NanoDet-Plus export layout: one row per cell = scores then distributions
        let (cls, reg) = level_data(9, 0, 0.7, [1, 2, 3, 4]);
        let row = NC + 4 * BINS;
        let mut both = Vec::new();
        for i in 0..16 {
            both.extend_from_slice(&cls[i * NC..(i + 1) * NC]);
            both.extend_from_slice(&reg[i * 4 * BINS..(i + 1) * 4 * BINS]);
        }
        let level = NanodetLevel {
            stride: 8,
            grid_w: 4,
            grid_h: 4,
            cls: Rows {
                data: &both,
                row_len: row,
                offset: 0,
            },
            reg: Rows {
                data: &both,
                row_len: row,
                offset: NC,
            },
        };
        let mut out = Vec::new();
        decode_nanodet_level(
            &level,
            10,
            0.5,
            &DecodeParams::new(&[0.5; NC], 32, 32),
            &mut out,
        )
        .unwrap();
        let separate = decode(&cls, &reg, &[0.5; NC], 0.5).unwrap();
        assert_eq!(out, separate);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nanodet_short_tensor_is_an_error() {
        let (cls, reg) = level_data(0, 0, 0.9, [1, 1, 1, 1]);
        let e = decode(&cls[..10], &reg, &[0.5; NC], 0.5).unwrap_err();
        assert!(e.0.contains("class scores"), "{e}");
        let e = decode(&cls, &reg[..100], &[0.5; NC], 0.5).unwrap_err();
        assert!(e.0.contains("box distributions"), "{e}");
    }

    fn yolo_data(transposed: bool) -> Vec<f32> {
        // 3 anchors, 2 classes; anchor 1: class 1 at 0.8, box cx 32 cy 16 w 20 h 10;
        // anchor 2: class 0 at 0.3 (below threshold); anchor 0: nothing.
        let rows: [[f32; 3]; 6] = [
            [5.0, 32.0, 40.0],  // cx
            [5.0, 16.0, 40.0],  // cy
            [2.0, 20.0, 8.0],   // w
            [2.0, 10.0, 8.0],   // h
            [0.01, 0.10, 0.30], // class 0
            [0.02, 0.80, 0.05], // class 1
        ];
        if transposed {
            (0..3)
                .flat_map(|n| rows.iter().map(move |r| r[n]))
                .collect()
        } else {
            rows.iter().flatten().copied().collect()
        }
    }

    #[test]
    fn yolov8_decodes_both_layouts() {
        for transposed in [false, true] {
            let mut out = Vec::new();
            let p = DecodeParams::new(&[0.25, 0.25], 64, 64);
            decode_yolov8(
                &yolo_data(transposed),
                3,
                transposed,
                &p,
                &mut YoloScratch::default(),
                &mut out,
            )
            .unwrap();
            assert_eq!(out.len(), 2, "{out:?}");
            let d = out.iter().find(|d| d.class_id == 1).unwrap();
            assert_eq!(d.score, 0.8);
            assert!(
                close(d.bbox, [22.0 / 64.0, 11.0 / 64.0, 42.0 / 64.0, 21.0 / 64.0]),
                "{d:?}"
            );
            let d = out.iter().find(|d| d.class_id == 0).unwrap();
            assert!(
                close(d.bbox, [36.0 / 64.0, 36.0 / 64.0, 44.0 / 64.0, 44.0 / 64.0]),
                "{d:?}"
            );
            let p = DecodeParams::new(&[0.5, 0.5], 64, 64);
            decode_yolov8(
                &yolo_data(transposed),
                3,
                transposed,
                &p,
                &mut YoloScratch::default(),
                &mut out,
            )
            .unwrap();
            assert_eq!(out.len(), 3); // appended: the 0.8 one only
        }
    }

    #[test]
    fn yolov8_short_output_is_an_error() {
        let mut out = Vec::new();
        let p = DecodeParams::new(&[0.25, 0.25], 64, 64);
        let e = decode_yolov8(
            &yolo_data(false)[..17],
            3,
            false,
            &p,
            &mut YoloScratch::default(),
            &mut out,
        );
        assert!(e.is_err());
    }

    #[test]
    fn max_of_cases() {
        assert_eq!(max_of(&[]), f32::NEG_INFINITY);
        assert_eq!(max_of(&[0.3]), 0.3);
        let mut v: Vec<f32> = (0..80).map(|i| (i % 7) as f32 * 0.1).collect();
        assert!((max_of(&v) - 0.6).abs() < 1e-6);
        v[79] = 2.0; // in the remainder-free tail
        assert_eq!(max_of(&v), 2.0);
        v[3] = f32::NAN;
        assert_eq!(max_of(&v), 2.0);
        assert_eq!(
            max_of(&[0.1, 0.2, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95]),
            0.95
        );
    }

    #[test]
    fn softmax_expectation_cases() {
        assert!((softmax_expectation(&[0.0; 11]) - 5.0).abs() < 1e-5);
        let mut v = [0.0; 11];
        v[7] = 80.0;
        assert!((softmax_expectation(&v) - 7.0).abs() < 1e-5);
        // two equal peaks: halfway
        v[3] = 80.0;
        assert!((softmax_expectation(&v) - 5.0).abs() < 1e-5);
    }
}
