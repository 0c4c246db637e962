#!/usr/bin/env python3
"""How to count people in a crowd zone: the measurement behind scripts/scenarios/STUDY.md.

Runs the project's detector exactly as simpang feeds it (det.py) on
  * the first 40 hand-labelled vtest frames of tests/fixtures/people-counts.jsonl (whole-frame counts,
    int8 default vs fp32 original, thresholds 0.25-0.6), and
  * the synthetic clips crowd-8/16/24, walkers and still-person (samples/scenarios/, with
    per-frame truth), counting the plaza zone by
      (a) the full frame at a threshold,
      (b) a crop around the zone (one 416x416 inference) or 2x2 tiles of it (SAHI-style), with a
          per-zone threshold,
      (c) foreground occupancy: zone foreground against a learned background, divided by the
          area a person covers at that image row (perspective from confident detections),
      (d) combinations,
and times each per zone evaluation on one thread.

Usage: study.py [--samples samples] [--out results.json] [--fps 2]
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import cv2
import numpy as np

import det
import scene

HERE = os.path.dirname(os.path.abspath(__file__))
THRESHOLDS = [0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
CLIPS = ["crowd-8", "crowd-16", "crowd-24", "walkers", "still-person"]
W, H = 768, 576


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def persons(dets, thr, offset=(0, 0)):
    b, s, c = dets
    keep = (c == det.PERSON) & (s >= thr)
    return b[keep] + np.array([offset[0], offset[1]] * 2, np.float32), s[keep]


def in_zone(boxes, poly):
    return [scene.point_in_polygon((x1 + x2) / 2, y2, poly) for x1, y1, x2, y2 in boxes]


def merge(boxes, scores, iou=0.5, ios=0.7):
    """Greedy merge of tile detections: a box overlapping a better one by IoU > iou, or lying
    mostly inside it (intersection over the smaller > ios: a person cut by a tile edge), goes."""
    order = np.argsort(-scores)
    kept = []
    for i in order:
        b = boxes[i]
        ok = True
        for j in kept:
            o = boxes[j]
            iw = max(0.0, min(b[2], o[2]) - max(b[0], o[0]))
            ih = max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
            inter = iw * ih
            a1 = (b[2] - b[0]) * (b[3] - b[1])
            a2 = (o[2] - o[0]) * (o[3] - o[1])
            if inter / (a1 + a2 - inter + 1e-9) > iou or inter / (min(a1, a2) + 1e-9) > ios:
                ok = False
                break
        if ok:
            kept.append(i)
    return boxes[kept], scores[kept]


class ZoneGeometry:
    """The crowd zone, the crop and tiles around it, and the per-row person model."""

    def __init__(self, poly, ground_a, ground_b, fill):
        self.poly = poly
        self.a, self.b = ground_a, ground_b
        self.fill = fill
        xs = [p[0] for p in poly]
        ys = [p[1] for p in poly]
        top = min(ys)
        # The crop: the zone's box, raised by a person's height at its top edge (their heads)
        # and widened by half a person's width at its bottom edge on each side.
        hb = self.h(max(ys))
        x0 = max(0, int(min(xs) - 0.25 * hb))
        x1 = min(W, int(max(xs) + 0.25 * hb))
        y0 = max(0, int(top - 1.05 * self.h(top)))
        y1 = min(H, int(max(ys) + 4))
        self.crop = (x0, y0, x1, y1)
        cw, ch = x1 - x0, y1 - y0
        tw, th = int(math.ceil(cw / 1.8)), int(math.ceil(ch / 1.8))
        self.tiles = [(x0 + dx, y0 + dy, x0 + dx + tw, y0 + dy + th) for dy in (0, ch - th) for dx in (0, cw - tw)]
        # Body region: pixels that belong to someone whose feet are in the zone (the zone, and
        # above it by the person's height), and per pixel the foot row that person would have.
        mask = np.zeros((H, W), np.uint8)
        cv2.fillPoly(mask, [np.array(poly, np.int32)], 1)
        self.zone_mask = mask
        body = np.zeros((H, W), np.uint8)
        foot = np.zeros((H, W), np.float32)
        rows = np.arange(H, dtype=np.float32)
        for x in range(W):
            zr = np.nonzero(mask[:, x])[0]
            if zr.size == 0:
                continue
            ztop, zbot = zr[0], zr[-1]
            r0 = max(0, int(ztop - self.h(ztop)))
            body[r0:zbot + 1, x] = 1
            guess = rows[r0:zbot + 1] + 0.5 * self.h(rows[r0:zbot + 1])
            foot[r0:zbot + 1, x] = np.clip(guess, ztop, zbot)
        self.body = body[y0:y1, x0:x1].astype(bool)
        foot = foot[y0:y1, x0:x1]
        # Persons per foreground pixel: 1 / (fill x box area) of a person standing at that foot row.
        area = self.fill * 0.41 * self.h(foot) ** 2
        self.weight = np.where(self.body, 1.0 / np.maximum(area, 1.0), 0.0).astype(np.float32)

    def h(self, y):
        return self.a * np.asarray(y, np.float32) + self.b


class Occupancy:
    """Zone foreground against a background, in persons (sum of per-pixel weights).

    kind 'selective': a running average that learns (time constant 30 s) only where the
    picture matches it, so people who stand still are never learned (like the garbage rule's
    ground model); 'mog2': OpenCV MOG2 with the garbage rule's settings (history 25, variance
    16, shadows as background, learning rate 0.0005 per frame at 5 fps after 25 frames)."""

    def __init__(self, geom, kind, fps, init=None):
        self.g, self.kind, self.fps = geom, kind, fps
        self.bg = None if init is None else init.astype(np.float32)
        self.n = 0
        if kind == "mog2":
            self.mog = cv2.createBackgroundSubtractorMOG2(history=25, varThreshold=16, detectShadows=True)
            self.lr = 0.0005 * 5.0 / fps
        self.alpha = 1.0 / (30.0 * fps)

    def update(self, frame):
        x0, y0, x1, y1 = self.g.crop
        roi = cv2.GaussianBlur(frame[y0:y1, x0:x1], (3, 3), 0)
        if self.kind == "mog2":
            fg = self.mog.apply(roi, learningRate=-1 if self.n < 25 else self.lr)
            fg = (fg == 255).astype(np.uint8)
        else:
            f = roi.astype(np.float32)
            if self.bg is None:
                self.bg = f.copy()
            d = cv2.absdiff(f, self.bg).max(2)
            fg = (d > 25).astype(np.uint8)
            cv2.accumulateWeighted(f, self.bg, self.alpha, mask=1 - fg)
        self.n += 1
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        self.fg = fg
        return float((fg * self.g.weight).sum())

    def unexplained(self, boxes):
        """Persons' worth of foreground not under any of `boxes` (frame pixels)."""
        x0, y0, x1, y1 = self.g.crop
        left = self.fg.copy()
        for bx0, by0, bx1, by1 in boxes:
            w, h = bx1 - bx0, by1 - by0
            a0, b0 = int(max(0, bx0 - 0.1 * w - x0)), int(max(0, by0 - 0.05 * h - y0))
            a1, b1 = int(min(x1 - x0, bx1 + 0.1 * w - x0)), int(min(y1 - y0, by1 + 0.05 * h - y0))
            if a1 > a0 and b1 > b0:
                left[b0:b1, a0:a1] = 0
        return float((left * self.g.weight).sum())


class FrameBackground:
    """Whole-frame 'selective' background (as Occupancy's): learns only where the picture
    matches it, so people who stand still stay foreground and static clutter (cones, signs)
    stays background."""

    def __init__(self, init, fps):
        self.bg = cv2.GaussianBlur(init, (3, 3), 0).astype(np.float32)
        self.alpha = 1.0 / (30.0 * fps)

    def update(self, frame):
        f = cv2.GaussianBlur(frame, (3, 3), 0).astype(np.float32)
        fg = (cv2.absdiff(f, self.bg).max(2) > 25).astype(np.uint8)
        cv2.accumulateWeighted(f, self.bg, self.alpha, mask=1 - fg)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        return cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))


def fg_fraction(fg, boxes):
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes, np.float32).reshape(-1, 4):
        a0, b0, a1, b1 = int(max(0, x1)), int(max(0, y1)), int(min(W, x2)), int(min(H, y2))
        out.append(round(float(fg[b0:b1, a0:a1].mean()), 3) if a1 > a0 and b1 > b0 else 0.0)
    return out


def fg_gated(boxes, scores, zin, fgfrac, hi, lo, min_fg=0.25):
    """Boxes at >= hi, plus boxes between lo and hi with foreground under at least min_fg of
    them: a low score counts only where something differs from the learned background."""
    n = 0
    for b, s, z, f in zip(np.asarray(boxes).reshape(-1, 4), scores, zin, fgfrac):
        if z and (s >= hi or (s >= lo and f >= min_fg)):
            n += 1
    return n


def calibrate_fill(src_frames, plate, dets_of, a, b):
    """Share of a confident, isolated person's box that is foreground (vtest, real footage),
    measured with the same foreground test as Occupancy('selective')."""
    fills = []
    for i, frame in src_frames.items():
        boxes, scores = persons(dets_of(i), 0.6)
        d = np.abs(cv2.GaussianBlur(frame, (3, 3), 0).astype(np.float32)
                   - cv2.GaussianBlur(plate, (3, 3), 0).astype(np.float32)).max(2)
        fg = (d > 25).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            if y1 < 2 or x1 < 2 or x2 > W - 2 or y2 > H - 2 or y2 < 200:
                continue
            others = [o for j, o in enumerate(boxes) if j != k]
            if any(o[0] < x2 + 10 and o[2] > x1 - 10 and o[1] < y2 and o[3] > y1 for o in others):
                continue
            hb = a * y2 + b  # the fitted height, as the occupancy weights use
            area = 0.41 * hb * hb
            fills.append(fg[int(y1):int(y2), int(x1):int(x2)].sum() / area)
    return float(np.median(fills)), len(fills)


def add_fg(path, rows, fps):
    """Foreground share of each full-frame detection box (both models), replaying the clip's
    whole-frame background at 5 fps from its first frame."""
    want = {r["i"]: r for r in rows}
    cap = cv2.VideoCapture(path)
    step = max(1, int(round(fps / 5.0)))
    bgm, i = None, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if bgm is None:
            bgm = FrameBackground(frame, fps / step)
        if i % step == 0 or i in want:
            fg = bgm.update(frame)
            if i in want:
                for m in ("int8", "fp32"):
                    want[i][f"fgfrac_{m}"] = fg_fraction(fg, want[i][f"fullboxes_{m}"])
        i += 1


def letterboxed(d, img, scale):
    """Detections of `img` resized by `scale` and placed at the top-left of a model-sized
    canvas (no stretch), in `img` pixels: the zone at a chosen pixel scale."""
    size = d.m["width"]
    h, w = img.shape[:2]
    nw, nh = min(size, int(w * scale)), min(size, int(h * scale))
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (int(w * scale), int(h * scale)))[:nh, :nw]
    b, s, c = d(canvas)
    keep = c == det.PERSON
    return b[keep] / scale, s[keep]


def timeit(fn, n=20):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(ts), 2), "min_ms": round(min(ts), 2)}


def stats(est, truth):
    e = np.asarray(est, np.float64) - np.asarray(truth, np.float64)
    return {"mae": round(float(np.abs(e).mean()), 2), "bias": round(float(e.mean()), 2), "n": int(e.size)}


def smoothed(counts, fps, window_s=2.0):
    """The crowd rule's count: lower median over the last window_s."""
    k = max(1, int(round(window_s * fps)))
    out = []
    for i in range(len(counts)):
        w = sorted(counts[max(0, i - k + 1):i + 1])
        out.append(w[(len(w) - 1) // 2])
    return out


def opens(counts, times, min_persons, dwell_s=10.0, release=0.7):
    """When the crowd rule (count >= min for dwell_s, leaving below release x min) would open
    and close, from smoothed counts; [] when never."""
    out, state, since = [], "idle", None
    for c, t in zip(counts, times):
        if state == "idle":
            if c >= min_persons:
                state, since = "pending", t
        elif state == "pending":
            if c < min_persons:
                state = "idle"
            elif t - since >= dwell_s:
                state = "active"
                out.append([round(t, 1), None])
        elif state == "active":
            if c < release * min_persons:
                state = "idle"
                out[-1][1] = round(t, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", default=os.path.join(det.ROOT, "samples"))
    ap.add_argument("--out", default=os.path.join(HERE, "study-results.json"))
    ap.add_argument("--fps", type=float, default=2.0, help="detector samples per second of clip")
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--cache", default="/tmp/simpang-study", help="per-clip detections, for --reuse")
    ap.add_argument("--reuse", action="store_true", help="evaluate the cached detections again")
    ap.add_argument("--series", action="store_true", help="keep per-frame counts in the results file")
    ap.add_argument("--report", metavar="RESULTS", help="print the markdown tables of a results file and exit")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            print(report(json.load(f)))
        return 0
    cv2.setNumThreads(1)
    res = {"cpu": cpu_model(), "threads": 1}
    models = {k: det.Detector(k, floor=0.2) for k in ("int8", "fp32")}
    with open(os.path.join(HERE, "survey.json")) as f:
        persp = json.load(f)["perspective"]
    a, b = persp["a"], persp["b"]

    # 1. Hand-labelled ordinary frames: whole-frame counts.
    # The first 40 (every 20th frame, 0-780): what STUDY.md measured; the second set came later.
    labels = [json.loads(l) for l in open(os.path.join(det.ROOT, "tests", "fixtures", "people-counts.jsonl"))]
    labels = [r for r in labels if r.get("set", "first") == "first"]
    vt = scene.read_frames(os.path.join(args.samples, "src", "vtest.avi"))
    full = {m: {r["frame"]: models[m](vt[r["frame"]]) for r in labels} for m in models}
    truth = [r["persons"] for r in labels]
    res["ordinary"] = {}
    for m in models:
        per = {}
        for thr in THRESHOLDS:
            est = [len(persons(full[m][r["frame"]], thr)[0]) for r in labels]
            per[str(thr)] = stats(est, truth)
        best = min(per, key=lambda k: (per[k]["mae"], abs(per[k]["bias"])))  # plain thresholds only
        res["ordinary"][m] = {"by_threshold": per, "best": best}
    for m in models:
        for hi, lo in TWO_TIERS:
            est = []
            for r in labels:
                bb, ss = persons(full[m][r["frame"]], lo)
                est.append(two_tier(bb, ss, [True] * len(ss), hi, lo))
            res["ordinary"][m]["by_threshold"][f"twotier {hi}/{lo}"] = stats(est, truth)
    # Foreground on the labelled frames: the background starts as the median of the first 20 s
    # (a camera's first minutes) and learns at 5 fps from there.
    first = np.median(np.stack([vt[i] for i in range(0, 200, 4)]), axis=0).astype(np.uint8)
    bgm = FrameBackground(first, 5.0)
    fg_at = {}
    want = {r["frame"] for r in labels}
    for i in range(0, max(want) + 1, 2):
        fg = bgm.update(vt[i])
        if i in want:
            fg_at[i] = fg
    for m in models:
        for hi, lo in FG_GATES:
            est = []
            for r in labels:
                bb, ss = persons(full[m][r["frame"]], lo)
                est.append(fg_gated(bb, ss, [True] * len(ss), fg_fraction(fg_at[r["frame"]], bb), hi, lo))
            res["ordinary"][m]["by_threshold"][f"fg-gated {hi}/{lo}"] = stats(est, truth)
    counts = {(m, thr): [len(persons(full[m][r["frame"]], thr)[0]) for r in labels] for m in models for thr in THRESHOLDS}
    fb = float(res["ordinary"]["fp32"]["best"])
    res["ordinary"]["mae_diff_ci"] = {
        f"int8@{thr}) - MAE(fp32@{fb}": bootstrap_mae_diff(counts[("int8", thr)], counts[("fp32", fb)], truth)
        for thr in (0.4, 0.45, 0.5)}
    res["ordinary"]["per_frame"] = {f"{m}@{thr}": v for (m, thr), v in counts.items() if thr in (0.4, 0.5)}
    res["ordinary"]["truth"] = truth
    print("ordinary frames:", json.dumps(res["ordinary"], indent=None)[:2000], flush=True)

    # 2. Calibration of the occupancy (real vtest, every 10th frame, fp32 >= 0.6, isolated).
    plate = scene.median_plate(os.path.join(args.samples, "src", "vtest.avi"))
    calib = {i: vt[i] for i in range(0, len(vt), 10)}
    cal_dets = {i: models["fp32"](f) for i, f in calib.items()}
    fill, n_fill = calibrate_fill(calib, plate, lambda i: cal_dets[i], a, b)
    res["occupancy_fill"] = {"fill": round(fill, 3), "n": n_fill,
                             "meaning": "foreground share of a fitted 0.41 h x h person box, real vtest"}
    print("fill", fill, n_fill, flush=True)

    # 3. The synthetic clips.
    res["clips"] = {}
    geom = None
    for name in args.clips.split(","):
        with open(os.path.join(args.samples, "scenarios", f"{name}.truth.json")) as f:
            tr = json.load(f)
        zone = next(z for z in tr["zones"] if z["id"] == "plaza")
        poly = [(x * W, y * H) for x, y in zone["polygon"]]
        geom = ZoneGeometry(poly, a, b, fill)
        fps = tr["fps"]
        step_bg = max(1, int(round(fps / 5.0)))  # background models run at 5 fps like the rules
        step_det = max(1, int(round(fps / args.fps)))
        occ = {"selective": Occupancy(geom, "selective", fps / step_bg), "mog2": Occupancy(geom, "mog2", fps / step_bg)}
        cache = os.path.join(args.cache, f"{name}.rows.json")
        rows = []
        if args.reuse and os.path.isfile(cache):
            with open(cache) as f:
                rows = json.load(f)
            if "fgfrac_int8" not in rows[0]:
                add_fg(os.path.join(args.samples, "scenarios", f"{name}.mp4"), rows, fps)
                with open(cache, "w") as f:
                    json.dump(rows, f)
            res["clips"][name] = evaluate(name, rows, tr, poly)
            print(name, "(cached rows)", flush=True)
            continue
        cap = cv2.VideoCapture(os.path.join(args.samples, "scenarios", f"{name}.mp4"))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step_bg == 0:
                occ_now = {k: o.update(frame) for k, o in occ.items()}
            if i % step_det == 0:
                r = {"i": i, "t": i / fps, "truth": tr["persons_in_zone"]["plaza"][i]}
                x0, y0, x1, y1 = geom.crop
                fboxes = {}
                for m, d in models.items():
                    fb, fs = persons(d(frame), 0.2)
                    r[f"full_{m}"] = list(zip(in_zone(fb, poly), fs.tolist()))
                    r[f"fullboxes_{m}"] = np.round(fb, 1).tolist()
                    fboxes[m] = (fb, fs)
                cb, cs = persons(models["int8"](frame[y0:y1, x0:x1]), 0.2, (x0, y0))
                r["crop_int8"] = list(zip(in_zone(cb, poly), cs.tolist()))
                lb, ls = letterboxed(models["int8"], frame[y0:y1, x0:x1], 1.0)
                lb, ls = persons((lb, ls, np.zeros(len(ls), np.int64)), 0.2, (x0, y0))
                r["crop1x_int8"] = list(zip(in_zone(lb, poly), ls.tolist()))
                tb, ts = [], []
                for (tx0, ty0, tx1, ty1) in geom.tiles:
                    bb, ss = persons(models["int8"](frame[ty0:ty1, tx0:tx1]), 0.2, (tx0, ty0))
                    tb.append(bb)
                    ts.append(ss)
                tb, ts = np.concatenate(tb), np.concatenate(ts)
                r["tiles_boxes"] = tb.tolist()
                r["tiles_scores"] = ts.tolist()
                for k, o in occ.items():
                    r[f"occ_{k}"] = occ_now[k]
                    # Foreground left over once the full-frame int8 detections are accounted for.
                    fb, fs = fboxes["int8"]
                    for thr in (0.4, 0.5):
                        r[f"unexpl_{k}@{thr}"] = o.unexplained(fb[fs >= thr])
                rows.append(r)
            i += 1
        add_fg(os.path.join(args.samples, "scenarios", f"{name}.mp4"), rows, fps)
        os.makedirs(args.cache, exist_ok=True)
        with open(cache, "w") as f:
            json.dump(rows, f)
        res["clips"][name] = evaluate(name, rows, tr, poly)
        print(name, json.dumps(res["clips"][name]["summary"])[:3000], flush=True)

    # 4. Cost per zone evaluation, one thread, on a crowd-24 frame.
    cap = cv2.VideoCapture(os.path.join(args.samples, "scenarios", "crowd-24.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 400)
    ok, frame = cap.read()
    x0, y0, x1, y1 = geom.crop
    o = Occupancy(geom, "selective", 5.0)
    om = Occupancy(geom, "mog2", 5.0)
    zb = FrameBackground(np.ascontiguousarray(frame[y0:y1, x0:x1]), 5.0)
    fb = FrameBackground(frame, 5.0)
    res["cost"] = {
        "full_frame_int8": timeit(lambda: models["int8"](frame)),
        "full_frame_fp32": timeit(lambda: models["fp32"](frame)),
        "zone_crop_int8": timeit(lambda: models["int8"](frame[y0:y1, x0:x1])),
        "zone_tiles_2x2_int8": timeit(lambda: [models["int8"](frame[t[1]:t[3], t[0]:t[2]]) for t in geom.tiles], n=8),
        "occupancy_selective": timeit(lambda: o.update(frame), n=50),
        "occupancy_mog2": timeit(lambda: om.update(frame), n=50),
        "fg_gate_zone_crop": timeit(lambda: fg_fraction(zb.update(np.ascontiguousarray(frame[y0:y1, x0:x1])),
                                                        [[10, 10, 60, 150]] * 20), n=50),
        "fg_gate_full_frame": timeit(lambda: fg_fraction(fb.update(frame), [[10, 10, 60, 150]] * 20), n=50),
        "crop_px": [x1 - x0, y1 - y0],
    }
    print("cost", res["cost"], flush=True)
    if not args.series:
        for c in res["clips"].values():
            c.pop("series", None)
        res["ordinary"].pop("per_frame", None)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print("wrote", args.out)


def evaluate(name, rows, tr, poly):
    """Per method: counts against the truth over all sampled frames, over the frames where
    the whole group stands in the zone, on frames with nobody in the zone, and when the crowd
    rule (2 s median, dwell 10 s) would open."""
    truth = [r["truth"] for r in rows]
    times = [r["t"] for r in rows]
    fps = 1.0 / (times[1] - times[0])
    group = tr.get("group_size")
    methods = {}
    for m in ("int8", "fp32"):
        for thr in THRESHOLDS:
            methods[f"a_full_{m}@{thr}"] = [sum(1 for z, s in r[f"full_{m}"] if z and s >= thr) for r in rows]
    for v in ("crop", "crop1x"):
        for thr in THRESHOLDS:
            methods[f"b_{v}_int8@{thr}"] = [sum(1 for z, s in r[f"{v}_int8"] if z and s >= thr) for r in rows]
    for thr in THRESHOLDS:
        cnt = []
        for r in rows:
            bb, ss = np.array(r["tiles_boxes"], np.float32).reshape(-1, 4), np.array(r["tiles_scores"], np.float32)
            keep = ss >= thr
            mb, _ = merge(bb[keep], ss[keep])
            cnt.append(sum(in_zone(mb, poly)))
        methods[f"b_tiles_int8@{thr}"] = cnt
    for m in ("int8", "fp32"):
        for hi, lo in TWO_TIERS:
            methods[f"d_twotier_{m}@{hi}/{lo}"] = [two_tier_row(r, m, hi, lo) for r in rows]
    for m in ("int8", "fp32"):
        for hi, lo in FG_GATES:
            methods[f"d_fggated_{m}@{hi}/{lo}"] = [
                fg_gated(r[f"fullboxes_{m}"], [s for _, s in r[f"full_{m}"]], [z for z, _ in r[f"full_{m}"]],
                         r[f"fgfrac_{m}"], hi, lo) for r in rows]
    for k in ("selective", "mog2"):
        methods[f"c_occ_{k}"] = [round(r[f"occ_{k}"], 2) for r in rows]
        for thr in (0.4, 0.5):
            full = methods[f"a_full_int8@{thr}"]
            methods[f"d_max_full_int8@{thr}_occ_{k}"] = [max(c, o) for c, o in zip(full, methods[f"c_occ_{k}"])]
            methods[f"d_full_int8@{thr}_plus_unexplained_{k}"] = [c + r[f"unexpl_{k}@{thr}"] for c, r in zip(full, rows)]
    out = {"summary": {}, "series": {"t": times, "truth": truth}}
    standing = [i for i, t in enumerate(truth) if group and t == group]
    empty = [i for i, t in enumerate(truth) if t == 0]
    min_persons = {"crowd-8": 8, "crowd-16": 12, "crowd-24": 12}.get(name, 8)
    for k, est in methods.items():
        s = {"all": stats(est, truth)}
        if standing:
            s["standing"] = stats([est[i] for i in standing], [truth[i] for i in standing])
        occupied = [i for i, t in enumerate(truth) if t > 0]
        if not group and occupied:
            s["occupied"] = stats([est[i] for i in occupied], [truth[i] for i in occupied])
        if empty:
            s["empty_mean"] = round(float(np.mean([est[i] for i in empty])), 2)
            s["empty_max"] = round(float(np.max([est[i] for i in empty])), 2)
        sm = smoothed([math.floor(e + 0.5) for e in est], fps)
        s["rule_opens"] = opens(sm, times, min_persons)
        s["max_smoothed"] = max(sm)
        out["summary"][k] = s
        out["series"][k] = est
    out["labels"] = tr["labels"]
    out["min_persons"] = min_persons
    return out


def two_tier(boxes, scores, zin, hi, lo):
    """Boxes at >= hi, plus boxes between lo and hi that are not mostly inside (intersection
    over the smaller > 0.5) a box at >= hi: in a crowd the hidden people score low, in a
    sparse scene the low-scoring boxes are mostly parts of people already counted."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32)
    strong = boxes[scores >= hi]
    n = 0
    for b, s, z in zip(boxes, scores, zin):
        if not z or s < lo:
            continue
        if s >= hi:
            n += 1
            continue
        dup = False
        for o in strong:
            iw = max(0.0, min(b[2], o[2]) - max(b[0], o[0]))
            ih = max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
            small = min((b[2] - b[0]) * (b[3] - b[1]), (o[2] - o[0]) * (o[3] - o[1]))
            if iw * ih / (small + 1e-9) > 0.5:
                dup = True
                break
        n += not dup
    return n


def two_tier_row(r, m, hi, lo):
    return two_tier(r[f"fullboxes_{m}"], [s for _, s in r[f"full_{m}"]], [z for z, _ in r[f"full_{m}"]], hi, lo)


TWO_TIERS = ((0.45, 0.3), (0.5, 0.3), (0.45, 0.35), (0.4, 0.3))
FG_GATES = ((0.5, 0.3), (0.45, 0.3), (0.4, 0.3), (0.5, 0.25), (0.45, 0.25))


def bootstrap_mae_diff(est_a, est_b, truth, n=4000, seed=1):
    """95 % interval of MAE(a) - MAE(b) over frames resampled with replacement (paired)."""
    rng = np.random.default_rng(seed)
    ea = np.abs(np.asarray(est_a) - np.asarray(truth))
    eb = np.abs(np.asarray(est_b) - np.asarray(truth))
    idx = rng.integers(0, len(truth), (n, len(truth)))
    d = ea[idx].mean(1) - eb[idx].mean(1)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


KEY_METHODS = [
    "a_full_int8@0.5", "a_full_int8@0.4", "a_full_int8@0.35", "a_full_int8@0.3",
    "a_full_fp32@0.5", "a_full_fp32@0.4", "a_full_fp32@0.3",
    "b_crop_int8@0.3", "b_crop1x_int8@0.35", "b_crop1x_int8@0.3", "b_tiles_int8@0.45", "b_tiles_int8@0.3",
    "c_occ_selective", "c_occ_mog2",
    "d_max_full_int8@0.4_occ_selective", "d_full_int8@0.4_plus_unexplained_selective",
    "d_twotier_int8@0.45/0.3", "d_fggated_int8@0.45/0.3", "d_fggated_fp32@0.45/0.3",
]


def compact(res):
    """One table: the methods that matter, every clip, the rule's openings."""
    cl = res["clips"]
    out = ["| method | crowd-8 | crowd-16 | crowd-24 | walkers (occupied frames) | opens: 8 / 16 / 24 / walkers / still |",
           "|---|---|---|---|---|---|"]
    for k in KEY_METHODS:
        cells = []
        for n in ("crowd-8", "crowd-16", "crowd-24", "walkers"):
            s = cl[n]["summary"][k]
            p = s.get("standing", s.get("occupied", s["all"]))
            cells.append(f"{p['mae']:.2f} / {p['bias']:+.2f}")
        ev = []
        for n in ("crowd-8", "crowd-16", "crowd-24", "walkers", "still-person"):
            o = cl[n]["summary"][k]["rule_opens"]
            ev.append(", ".join(f"{a:g}" for a, _ in o) or "-")
        out.append(f"| {k} | " + " | ".join(cells) + " | " + " / ".join(ev) + " |")
    return "\n".join(out)


def report(res):
    """Markdown tables of a results file (for STUDY.md)."""
    out = [compact(res), ""]
    o = res["ordinary"]
    out.append("| threshold | int8 MAE | int8 bias | fp32 MAE | fp32 bias |")
    out.append("|---|---|---|---|---|")
    for thr in THRESHOLDS:
        a, b = o["int8"]["by_threshold"][str(thr)], o["fp32"]["by_threshold"][str(thr)]
        out.append(f"| {thr} | {a['mae']:.2f} | {a['bias']:+.2f} | {b['mae']:.2f} | {b['bias']:+.2f} |")
    for k in o["int8"]["by_threshold"]:
        if k.startswith(("twotier", "fg-gated")):
            a, b = o["int8"]["by_threshold"][k], o["fp32"]["by_threshold"][k]
            out.append(f"| {k} | {a['mae']:.2f} | {a['bias']:+.2f} | {b['mae']:.2f} | {b['bias']:+.2f} |")
    out.append(f"\nbest: int8 {o['int8']['best']}, fp32 {o['fp32']['best']}")
    if "mae_diff_ci" in o:
        for k, v in o["mae_diff_ci"].items():
            out.append(f"- MAE({k}) 95 % interval: {v[0]:+.2f} .. {v[1]:+.2f}")
    cl = res["clips"]
    names = [n for n in CLIPS if n in cl]
    keys = list(cl[names[0]]["summary"])
    out.append("\n| method | " + " | ".join(
        f"{n} standing MAE / bias" if n.startswith("crowd") else f"{n} occupied MAE / bias" for n in names) + " |")
    out.append("|---|" + "---|" * len(names))
    for k in keys:
        cells = []
        for n in names:
            s = cl[n]["summary"][k]
            part = s.get("standing", s.get("occupied", s["all"]))
            cells.append(f"{part['mae']:.2f} / {part['bias']:+.2f}")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out.append("\n| method | " + " | ".join(f"{n}: rule opens (close) [max 2 s median]" for n in names) + " |")
    out.append("|---|" + "---|" * len(names))
    for k in keys:
        cells = []
        for n in names:
            s = cl[n]["summary"][k]
            ev = ", ".join(f"{a}" + (f"-{b}" if b is not None else "-") for a, b in s["rule_opens"]) or "none"
            cells.append(f"{ev} [{s['max_smoothed']}]")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out.append("\n| method | " + " | ".join(f"{n}: empty frames mean / max" for n in names if not n.startswith("crowd")) + " |")
    out.append("|---|" + "---|" * len([n for n in names if not n.startswith("crowd")]))
    for k in keys:
        cells = []
        for n in names:
            if n.startswith("crowd"):
                continue
            s = cl[n]["summary"][k]
            cells.append(f"{s.get('empty_mean', 0):.2f} / {s.get('empty_max', 0):.0f}")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out.append("\ncost (ms, one thread, " + res["cpu"] + "): " + json.dumps(res["cost"]))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
