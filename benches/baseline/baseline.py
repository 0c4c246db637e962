#!/usr/bin/env python3
"""The plain-Python baseline of `simpang bench --baseline`.

The loop people write first for "N cameras, detect, track": a thread per camera that reads
every frame with OpenCV's VideoCapture at camera pace, runs the ONNX model (onnxruntime) on a
frame every 1/detect_fps seconds of video, and feeds a simple IoU tracker. Same model, same
pre-processing (stretch to the model size, mean/std from the manifest), same decoder and NMS as
simpang, same detect rate. It does less than simpang: no display scaling, no overlay, no wall
encode, no rules, no MQTT.

Two setups (--setup):
  per_stream  (a) one onnxruntime session per stream, intra_op_num_threads=1: the strongest
              simple setup (no thread oversubscription, sessions run in parallel);
  shared      (b) one session shared by every stream thread, onnxruntime's default settings.

Usage (what `simpang bench --baseline` runs, with .venv/bin/python):
  baseline.py --footage F --manifest M --setup per_stream --streams N --seconds S \
              [--warmup W] [--detect-fps 5] [--input-size W H]

Prints one JSON object per line on stdout: {"progress": {...}} once a second during the
measured window, then {"result": {...}}.
"""
import argparse
import json
import os
import resource
import sys
import threading
import time
import tomllib

import cv2
import numpy as np
import onnxruntime as ort


def load_manifest(path, input_size=None):
    with open(path, "rb") as f:
        m = tomllib.load(f)
    base = os.path.dirname(os.path.abspath(path))
    with open(os.path.join(base, m["labels"])) as f:
        labels = [l.strip() for l in f if l.strip()]
    inp = m.get("input", {})
    w, h = input_size or (inp["width"], inp["height"])
    post = m.get("postprocess", {})
    thr = np.full(len(labels), post.get("score_threshold", 0.5), np.float32)
    for name, v in post.get("class_thresholds", {}).items():
        thr[labels.index(name)] = v
    nd = m.get("nanodet", {})
    return {
        "onnx": os.path.join(base, m["onnx"]),
        "decoder": m.get("decoder", "nanodet"),
        "labels": labels,
        "width": w,
        "height": h,
        "layout": inp.get("layout", "nchw"),
        "color": inp.get("color", "bgr"),
        "quantized": (float(inp["quantized"]["scale"]), int(inp["quantized"]["zero_point"]))
        if "quantized" in inp else None,
        "mean": np.array(inp.get("mean", [0, 0, 0]), np.float32),
        "std": np.array(inp.get("std", [1, 1, 1]), np.float32),
        "thresholds": thr,
        "nms_iou": post.get("nms_iou", 0.6),
        "max_detections": post.get("max_detections", 100),
        "strides": nd.get("strides", [8, 16, 32]),
        "reg_max": nd.get("reg_max", 7),
        "center_offset": nd.get("center_offset", 0.0),
    }


def nms(boxes, scores, classes, iou_thr):
    """Class-wise greedy NMS; kept indices, best first."""
    keep = []
    for c in np.unique(classes):
        idx = np.where(classes == c)[0]
        idx = idx[np.argsort(-scores[idx])]
        while idx.size:
            i = idx[0]
            keep.append(i)
            if idx.size == 1:
                break
            b, o = boxes[i], boxes[idx[1:]]
            ix1 = np.maximum(b[0], o[:, 0])
            iy1 = np.maximum(b[1], o[:, 1])
            ix2 = np.minimum(b[2], o[:, 2])
            iy2 = np.minimum(b[3], o[:, 3])
            inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
            area_b = (b[2] - b[0]) * (b[3] - b[1])
            area_o = (o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1])
            iou = inter / (area_b + area_o - inter + 1e-9)
            idx = idx[1:][iou <= iou_thr]
    keep = np.array(keep, dtype=np.int64)
    return keep[np.argsort(-scores[keep])] if keep.size else keep


class Detector:
    def __init__(self, m, session):
        self.m = m
        self.sess = session
        self.input = session.get_inputs()[0].name
        self.run_ms = []

    def detect(self, bgr):
        """Boxes (normalised x1 y1 x2 y2), scores and classes of one BGR frame."""
        m = self.m
        img = cv2.resize(bgr, (m["width"], m["height"]), interpolation=cv2.INTER_LINEAR)
        if m["color"] == "rgb":
            img = img[:, :, ::-1]
        x = (img.astype(np.float32) - m["mean"]) / m["std"]
        if m["quantized"]:
            scale, zero_point = m["quantized"]
            x = np.clip(np.rint(x / np.float32(scale)) + zero_point, 0, 255).astype(np.uint8)
        if m["layout"] == "nchw":
            x = x.transpose(2, 0, 1)
        elif m["layout"] == "blocks2":
            # 2x2 pixel blocks as ONNX SpaceToDepth lays them out, NHWC (docs/detector.md)
            h, w = x.shape[:2]
            x = x.reshape(h // 2, 2, w // 2, 2, 3).transpose(0, 2, 1, 3, 4).reshape(h // 2, w // 2, 12)
        x = np.ascontiguousarray(x[None])
        t = time.perf_counter()
        outs = self.sess.run(None, {self.input: x})
        self.run_ms.append((time.perf_counter() - t) * 1000.0)
        if m["decoder"] == "yolov8":
            boxes, scores, classes = self.decode_yolo(outs[0][0])
        else:
            boxes, scores, classes = self.decode_nanodet([o[0] for o in outs])
        keep = nms(boxes, scores, classes, m["nms_iou"])[: m["max_detections"]]
        scale = np.array([m["width"], m["height"]] * 2, np.float32)
        return boxes[keep] / scale, scores[keep], classes[keep]

    def keep_best(self, cls_scores):
        cid = cls_scores.argmax(1)
        sc = cls_scores[np.arange(len(cid)), cid]
        keep = np.where(sc > self.m["thresholds"][cid])[0]
        return keep, sc, cid

    def decode_yolo(self, out):
        n_cls = len(self.m["labels"])
        if out.shape[0] != 4 + n_cls:
            out = out.T
        keep, sc, cid = self.keep_best(out[4:].T)
        cx, cy, w, h = out[0, keep], out[1, keep], out[2, keep], out[3, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        return boxes, sc[keep], cid[keep]

    def decode_nanodet(self, outs):
        m = self.m
        n_cls, bins = len(m["labels"]), m["reg_max"] + 1
        cells = [(m["width"] // s) * (m["height"] // s) for s in m["strides"]]
        # Outputs bound by shape, like simpang: score blocks, box blocks or both concatenated,
        # per stride or all strides in one.
        cls_all, reg_all = {}, {}
        for o in outs:
            n, k = o.shape
            parts = []
            if k == n_cls:
                parts = [("cls", o)]
            elif k == 4 * bins:
                parts = [("reg", o)]
            elif k == n_cls + 4 * bins:
                parts = [("cls", o[:, :n_cls]), ("reg", o[:, n_cls:])]
            for kind, a in parts:
                target = cls_all if kind == "cls" else reg_all
                if n in cells:
                    target[cells.index(n)] = a
                elif n == sum(cells):
                    start = 0
                    for i, c in enumerate(cells):
                        target[i] = a[start : start + c]
                        start += c
        all_b, all_s, all_c = [], [], []
        for i, stride in enumerate(m["strides"]):
            cls, reg = cls_all[i], reg_all[i]
            w = m["width"] // stride
            keep, sc, cid = self.keep_best(cls)
            if keep.size == 0:
                continue
            r = reg[keep].reshape(-1, 4, bins)
            r = np.exp(r - r.max(-1, keepdims=True))
            r /= r.sum(-1, keepdims=True)
            dist = (r * np.arange(bins, dtype=np.float32)).sum(-1) * stride
            cx = (keep % w + m["center_offset"]) * stride
            cy = (keep // w + m["center_offset"]) * stride
            b = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
            all_b.append(np.clip(b, 0, [m["width"], m["height"], m["width"], m["height"]]))
            all_s.append(sc[keep])
            all_c.append(cid[keep])
        if not all_b:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        return np.concatenate(all_b), np.concatenate(all_s), np.concatenate(all_c)


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class IouTracker:
    """Greedy IoU matching of detections to tracks of the same class; tracks die after
    max_age missed updates."""

    def __init__(self, iou_thr=0.3, max_age=10):
        self.iou_thr, self.max_age = iou_thr, max_age
        self.tracks = {}  # id -> [box, class, age]
        self.next_id = 1

    def update(self, boxes, classes):
        unmatched = set(range(len(boxes)))
        for tid, tr in list(self.tracks.items()):
            best, best_iou = None, self.iou_thr
            for j in unmatched:
                if classes[j] != tr[1]:
                    continue
                v = iou(tr[0], boxes[j])
                if v > best_iou:
                    best, best_iou = j, v
            if best is None:
                tr[2] += 1
                if tr[2] > self.max_age:
                    del self.tracks[tid]
            else:
                tr[0], tr[2] = boxes[best], 0
                unmatched.discard(best)
        for j in unmatched:
            self.tracks[self.next_id] = [boxes[j], classes[j], 0]
            self.next_id += 1
        return self.tracks


class Stream:
    def __init__(self):
        self.frames = 0
        self.detections = 0
        self.lag = 0.0
        self.error = None


def run_stream(path, detector, detect_fps, stop, st):
    try:
        cap = cv2.VideoCapture(path)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        interval = 1.0 / detect_fps
        tracker = IouTracker()
        t0 = time.perf_counter()
        i, next_detect = 0, 0.0
        while not stop.is_set():
            ok, frame = cap.read()
            if not ok:  # end of the file: play it again, like a camera that never stops
                cap.release()
                cap = cv2.VideoCapture(path)
                continue
            video_t = i / fps
            if video_t + 1e-6 >= next_detect:
                boxes, scores, classes = detector.detect(frame)
                tracker.update(boxes, classes)
                st.detections += 1
                next_detect = max(next_detect + interval, video_t + interval / 8)
            i += 1
            st.frames += 1
            # camera pace: frame i is due i/fps after the start
            delay = t0 + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            st.lag = max(0.0, -delay)
    except Exception as e:  # reported, not swallowed: the harness fails the run
        st.error = repr(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--footage", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--setup", choices=["per_stream", "shared"], required=True)
    ap.add_argument("--streams", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--detect-fps", type=float, default=5.0)
    ap.add_argument("--input-size", type=int, nargs=2, default=None)
    ap.add_argument("--onnx", default=None,
                    help="the model file simpang loads (the manifest's onnx_amx on an AMX CPU)")
    a = ap.parse_args()

    m = load_manifest(a.manifest, a.input_size)
    if a.onnx:
        m["onnx"] = a.onnx
    providers = ["CPUExecutionProvider"]
    if a.setup == "shared":
        shared = Detector(m, ort.InferenceSession(m["onnx"], providers=providers))
        detectors = [shared] * a.streams
    else:
        detectors = []
        for _ in range(a.streams):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            detectors.append(Detector(m, ort.InferenceSession(m["onnx"], so, providers=providers)))
    cap = cv2.VideoCapture(a.footage)
    source_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.release()

    stop = threading.Event()
    streams = [Stream() for _ in range(a.streams)]
    threads = [
        threading.Thread(target=run_stream, args=(a.footage, d, a.detect_fps, stop, s), daemon=True)
        for d, s in zip(detectors, streams)
    ]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    for d in detectors:
        d.run_ms.clear()
    f0 = [(s.frames, s.detections) for s in streams]
    c0, t0 = time.process_time(), time.perf_counter()
    end = t0 + a.seconds
    prev_frames, prev_t, prev_c = sum(s.frames for s in streams), t0, c0
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        time.sleep(min(1.0, end - now))
        now, c = time.perf_counter(), time.process_time()
        frames = sum(s.frames for s in streams)
        dt = max(now - prev_t, 1e-6)
        print(json.dumps({"progress": {
            "t": now - t0, "of": a.seconds,
            "fps": (frames - prev_frames) / dt / a.streams,
            "cpu_percent": (c - prev_c) / dt * 100.0,
        }}), flush=True)
        prev_frames, prev_t, prev_c = frames, now, c
    window = time.perf_counter() - t0
    cpu = time.process_time() - c0
    f1 = [(s.frames, s.detections, s.lag) for s in streams]
    stop.set()
    for t in threads:
        t.join(timeout=10)
    errors = [s.error for s in streams if s.error]
    if errors:
        print("baseline stream failed: " + errors[0], file=sys.stderr)
        sys.exit(1)
    run_ms = sorted(v for d in {id(d): d for d in detectors}.values() for v in d.run_ms)
    per_stream = []
    for (a0, d0), (a1, d1, lag) in zip(f0, f1):
        per_stream.append({
            "frames": a1 - a0,
            "detections": d1 - d0,
            "fps": (a1 - a0) / window,
            "detect_fps": (d1 - d0) / window,
            "lag_s": lag,
        })
    print(json.dumps({"result": {
        "setup": a.setup,
        "streams": a.streams,
        "window_s": window,
        "source_fps": source_fps,
        "detect_fps": a.detect_fps,
        "per_stream": per_stream,
        "cpu_percent": cpu / window * 100.0,
        # ru_maxrss is in KiB on Linux
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
        "inference_ms_p50": run_ms[len(run_ms) // 2] if run_ms else None,
    }}), flush=True)


if __name__ == "__main__":
    main()
