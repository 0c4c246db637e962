"""The project's detector, fed exactly as simpang feeds it (stretch to the model input,
manifest normalisation, uint8 2x2 blocks for the int8 file, NanoDet decode, class-wise NMS).

Reuses benches/baseline/baseline.py (the bench's plain-Python loop), which mirrors
src/detect/preprocess.rs and decode.rs; only the score thresholds are ours to set.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benches", "baseline"))
import baseline  # noqa: E402

MODELS = {
    "int8": os.path.join(ROOT, "models", "nanodet-m-int8", "manifest.toml"),
    "fp32": os.path.join(ROOT, "models", "nanodet-m-416", "manifest.toml"),
}
PERSON = 0
VEHICLES = (2, 3, 5, 7)  # car, motorcycle, bus, truck


class Detector:
    """One ONNX Runtime session, single-threaded (what simpang's detect.threads = 1 runs)."""

    def __init__(self, which="int8", floor=0.2, threads=1, input_size=None):
        import onnxruntime as ort

        m = baseline.load_manifest(MODELS[which], input_size)
        # Decode everything above `floor`; callers filter by their own threshold.
        m["thresholds"] = np.full(len(m["labels"]), floor, np.float32)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(m["onnx"], so, providers=["CPUExecutionProvider"])
        self.m = m
        self.inner = baseline.Detector(m, sess)
        self.labels = m["labels"]

    def __call__(self, bgr):
        """Boxes in the picture's pixels (x1 y1 x2 y2), scores, classes."""
        b, s, c = self.inner.detect(bgr)
        h, w = bgr.shape[:2]
        return b * np.array([w, h, w, h], np.float32), s, c

    @property
    def last_ms(self):
        return self.inner.run_ms[-1] if self.inner.run_ms else None
