#!/usr/bin/env python3
"""Derives the generator's fixed inputs from vtest.avi with the project's fp32 detector, once, by
hand: which people to cut out (frame index and box) and the camera's perspective (person height
in pixels against image row). Writes scripts/scenarios/survey.json, which is committed, so
generate.py never runs the detector (its output would then depend on the CPU's float kernels).

Usage: .venv/bin/python scripts/scenarios/survey.py [--samples samples]
"""
import argparse
import json
import os

import numpy as np

import det
import scene

HERE = os.path.dirname(os.path.abspath(__file__))
# Things in the plate that a cut-out must not overlap (lamp post, tripod, sign): a person behind
# them would carry a hole where the post was.
OBSTACLES = [(420, 0, 442, 400), (450, 330, 530, 490), (405, 195, 450, 250)]


def overlaps(a, b):
    return a[0] < b[2] and a[2] > b[0] and a[1] < b[3] and a[3] > b[1]


def grow(b, k):
    w, h = b[2] - b[0], b[3] - b[1]
    return (b[0] - k * w, b[1] - k * h, b[2] + k * w, b[3] + k * h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default=os.path.join(det.ROOT, "samples"))
    args = ap.parse_args()
    src = os.path.join(args.samples, "src", "vtest.avi")
    d = det.Detector("fp32", floor=0.3)
    frames = scene.read_frames(src)
    plate = scene.median_plate(src)
    dets = {}
    for i in sorted(frames):
        if i % 5:
            continue
        b, s, c = d(frames[i])
        dets[i] = [(tuple(float(v) for v in bb), float(ss)) for bb, ss, cc in zip(b, s, c) if cc == det.PERSON]

    # Perspective: box height against the box bottom, confident and whole (not at the edges).
    ys, hs = [], []
    for i, ds in dets.items():
        for b, s in ds:
            if s >= 0.6 and b[1] > 2 and b[3] < 574:
                ys.append(b[3])
                hs.append(b[3] - b[1])
    A = np.vstack([ys, np.ones(len(ys))]).T
    (a, b0), *_ = np.linalg.lstsq(A, np.array(hs), rcond=None)
    resid = float(np.std(np.array(hs) - A @ np.array([a, b0])))

    # Cut-outs: confident, alone (no other person within a quarter box), whole, clear of the
    # obstacles, feet on the plaza (rows >= 240, big enough to scale down), spread over time and
    # place so the same walker is not taken twice from neighbouring frames.
    cands = []
    for i, ds in sorted(dets.items()):
        for b, s in ds:
            if s < 0.65 or b[3] < 240 or b[1] < 5 or b[0] < 5 or b[2] > 763 or b[3] > 570:
                continue
            if any(o is not b and overlaps(grow(b, 0.25), o) for o, _ in ds if o != b):
                continue
            if any(overlaps(b, q) for q in OBSTACLES):
                continue
            cands.append((i, s, b))
    picked = []
    for i, s, b in cands:
        cx = (b[0] + b[2]) / 2
        if any(abs(i - j) < 30 and abs(cx - (q[0] + q[2]) / 2) < 60 for j, _, q in picked):
            continue
        try:
            _, alpha = scene.person_mask(frames[i], plate, b)
        except ValueError:
            continue
        fill = float((alpha > 0.5).sum()) / ((b[2] - b[0]) * (b[3] - b[1]))
        rows = np.nonzero((alpha > 0.5).any(1))[0]
        if not (0.3 <= fill <= 0.95) or rows.size == 0 or (rows[-1] - rows[0]) < 0.8 * (b[3] - b[1]):
            continue
        picked.append((i, s, b))
    out = {
        "about": "made by scripts/scenarios/survey.py from samples/src/vtest.avi with models/nanodet-m-416 (fp32)",
        "perspective": {"a": round(float(a), 5), "b": round(float(b0), 3), "resid_px": round(resid, 2),
                        "n": len(ys), "meaning": "person box height px = a * box bottom row + b (vtest, 768x576)"},
        "people": [{"frame": i, "score": round(s, 3), "box": [round(v, 1) for v in b]} for i, s, b in picked],
    }
    path = os.path.join(HERE, "survey.json")
    with open(path, "w") as f:  # one person a line, so a diff shows what changed
        f.write('{\n "about": %s,\n "perspective": %s,\n "people": [\n'
                % (json.dumps(out["about"]), json.dumps(out["perspective"])))
        f.write(",\n".join("  " + json.dumps(p) for p in out["people"]))
        f.write("\n ]\n}\n")
    print(f"{path}: {len(picked)} people, h = {a:.4f} y + {b0:.2f} (resid {resid:.1f} px, n {len(ys)})")


if __name__ == "__main__":
    main()
