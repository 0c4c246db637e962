"""Writes detector output for sample footage as JSON lines, for the analytics tests and tools.

The tracker and rule tests replay these detections instead of running the detector (which is
another stage, with its own tests). They come from the reference NanoDet implementation in
models/nanodet-m-416/nanodet_infer.py, on every `step`-th frame, so they are what the real model
sees on the real footage.

    .venv/bin/python tests/analytics_data/make_dets.py samples/vtest.mp4 2 tests/analytics_data/vtest-dets.jsonl

Each line: {"index": frame index in the file, "t": seconds, "w": width, "h": height,
            "dets": [[class_id, score, x1, y1, x2, y2], ...]} with boxes normalised to [0, 1].
"""
import json
import os
import sys

import cv2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "models", "nanodet-m-416"))
from nanodet_infer import NanoDet  # noqa: E402

src, step, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
det = NanoDet(os.path.join(HERE, "..", "..", "models", "nanodet-m-416", "nanodet-m-416.onnx"), threads=1)
cap = cv2.VideoCapture(src)
fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
i = 0
n = 0
with open(out, "w") as f:
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if i % step == 0:
            h, w = img.shape[:2]
            b, s, c = det.detect(img, score_thr=0.25)
            dets = [
                [int(cc), round(float(ss), 3)] + [round(float(v), 4) for v in (bb[0] / w, bb[1] / h, bb[2] / w, bb[3] / h)]
                for bb, ss, cc in zip(b, s, c)
            ]
            f.write(json.dumps({"index": i, "t": round(i / fps, 3), "w": w, "h": h, "dets": dets}, separators=(",", ":")) + "\n")
            n += 1
            if limit and n >= limit:
                break
        i += 1
print(f"{n} frames written to {out}", file=sys.stderr)
