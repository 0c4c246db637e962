#!/usr/bin/env python3
"""Makes the labelled scenario clips of `simpang replay` (SYNTHETIC footage, composited from the
two sample clips; README.md in this folder says how).

Usage: generate.py SAMPLES_DIR [--only NAME,...] [--preview DIR] [--force]
       generate.py --write-config FILE     (the sites of config/scenarios.toml)

Writes SAMPLES_DIR/scenarios/<name>.mp4 (H.264, no B-frames, a keyframe each second),
<name>.labels.jsonl (the incidents an operator expects), <name>.truth.json (per-frame truth) and
a stamp .scenarios-<RECIPE>; does nothing when the stamp is there (bump RECIPE when an output
changes). Deterministic: fixed seeds, fixed cut-outs (survey.json), no detector at run time.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
import tomllib

import cv2
import numpy as np

import scene
from scene import Ground, Placed, Sprite

RECIPE = 2
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FPS = 10
W, H = 768, 576  # vtest's size: every clip is this camera or its plate
F_PX = 700.0  # assumed focal length (pixels): sets only how much depth is foreshortened
ENCODER = "x264enc speed-preset=veryfast bframes=0 key-int-max={fps} bitrate={kbps} threads=1"

# Zones and lines, in vtest pixels (normalised when written).
PLAZA = [(455, 250), (600, 232), (705, 248), (745, 330), (735, 420), (600, 405), (470, 345)]
LAWN = [(30, 330), (310, 315), (400, 370), (420, 560), (30, 560)]
ROAD = [(560, 215), (615, 160), (690, 132), (768, 132), (768, 470), (640, 425), (575, 330)]
ROAD_PATH = [(830, 500), (650, 330), (640, 205), (690, 140), (830, 95)]  # vehicles drive this way
COUNT_LINE = [(768, 262), (548, 240)]  # A -> B: a vehicle driving up the road crosses it "in"


def norm(poly):
    return [[round(x / W, 4), round(y / H, 4)] for x, y in poly]


class Actor:
    """Something drawn on the plate: its ground point in image pixels per frame (NaN = absent)."""

    def __init__(self, kind, sprite, xy, name, bob=False):
        self.kind, self.sprite, self.xy, self.name, self.bob = kind, sprite, xy, name, bob


class Scenario:
    def __init__(self, name, duration_s, notes):
        self.name, self.duration_s, self.notes = name, duration_s, notes
        self.n = int(round(duration_s * FPS))
        self.actors = []
        self.zones = []  # dicts: id, name, kind, poly (px), rule (dict), extra (dict)
        self.lines = []  # dicts: id, name, points (px), in_name, out_name
        self.labels = []
        self.truth_extra = {}
        self.background = None  # frame index -> float32 picture
        self.effect = None  # (frame index, float32 picture) -> float32 picture
        self.kbps = 1500


# --- Sources --------------------------------------------------------------------------------

class Sources:
    def __init__(self, samples):
        vt = os.path.join(samples, "src", "vtest.avi")
        for p in (vt,):
            if not os.path.isfile(p):
                raise SystemExit(f"generate.py: {p} is missing (scripts/setup.sh fetches it)")
        with open(os.path.join(HERE, "survey.json")) as f:
            survey = json.load(f)
        self.vtest = scene.read_frames(vt)
        if len(self.vtest) < 790:
            raise SystemExit(f"generate.py: {vt} has {len(self.vtest)} frames, expected 795")
        stack = np.stack([self.vtest[i] for i in sorted(self.vtest) if i % 4 == 0])
        self.plate = np.median(stack, axis=0).astype(np.uint8)
        del stack
        p = survey["perspective"]
        self.ground = Ground(p["a"], p["b"], F_PX, W / 2)
        self.people = []
        for k, rec in enumerate(survey["people"]):
            bgr, alpha = scene.person_mask(self.vtest[rec["frame"]], self.plate, rec["box"])
            x1, y1, x2, y2 = rec["box"]
            rows = np.nonzero((alpha > 0.05).any(1))[0]
            # Scaled so that its detector-box height matches h(y): the fit was made on boxes.
            height_m = Ground.PERSON_M * (rows[-1] - rows[0] + 1) / (y2 - y1)
            self.people.append(Sprite(bgr, alpha, height_m, f"p{k}@{rec['frame']}"))
        self.vehicles = self._vehicles()
        self.bag = self._bag()

    def _object(self, rect, name):
        """A still object of the plate (parked vehicle, bag) by GrabCut; its real height from
        the ground model at its bottom row."""
        x, y, w, h = rect
        alpha = scene.grabcut_mask(self.plate, rect)
        rows = np.nonzero((alpha > 0.05).any(1))[0]
        bottom = rows[-1]
        height_m = (rows[-1] - rows[0] + 1) / self.ground.px_per_m(bottom)
        return Sprite(self.plate, alpha, height_m, name)

    def _vehicles(self):
        van = self._object((650, 40, 78, 64), "van")
        car = self._object((732, 48, 36, 50), "car")
        # Body colours: the van is white, the car light blue; channel gains in BGR.
        return [van, van.tinted((0.55, 0.55, 0.8), "van-red"), car, van.flipped().tinted((0.75, 0.72, 0.7), "van-grey"),
                car.tinted((0.55, 0.55, 0.6), "car-dark"), van.tinted((0.75, 0.6, 0.45), "van-blue"), van.flipped()]

    def _bag(self):
        """The dark holdall left by the tripod in vtest (x 403-424, y 165-181). The lamp post
        hides its right end, so its visible part is stretched into a whole bag: a rounded
        block with a slightly flattened top."""
        crop = np.ascontiguousarray(self.plate[167:179, 404:425])
        ground = (crop.mean(2) > 75).astype(np.uint8)  # kerb and grass between the bag's folds
        crop = cv2.inpaint(crop, ground, 3, cv2.INPAINT_TELEA)
        h, w = 16, 34
        bgr = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        u, v = (xx - (w - 1) / 2) / (w / 2), (yy - (h - 1) / 2) / (h / 2)
        alpha = (np.abs(u) ** 4 + np.abs(v) ** 3 <= 1.0).astype(np.float32)
        alpha[: h // 4] *= (np.abs(u[: h // 4]) < 0.8)  # flattened, rounded shoulders
        alpha = cv2.GaussianBlur(alpha, (3, 3), 0)
        return Sprite(bgr, alpha, 0.42, "bag")


# --- Motion ---------------------------------------------------------------------------------

def times(n):
    return np.arange(n) / FPS


def waypoints(ground, n, pts):
    """Ground-point track from timed waypoints [(t, X, Z), ...]: straight lines between them,
    absent (NaN) before the first and after the last."""
    t = times(n)
    ts = np.array([p[0] for p in pts])
    X = np.interp(t, ts, [p[1] for p in pts])
    Z = np.interp(t, ts, [p[2] for p in pts])
    x, y = ground.to_image(X, Z)
    xy = np.stack([x, y], 1)
    xy[(t < ts[0]) | (t > ts[-1])] = np.nan
    return xy


def walk_plan(start, end, t0, speed):
    """[(t, X, Z)] of walking straight from start to end at `speed` m/s from t0."""
    d = math.dist(start, end)
    return [(t0, *start), (t0 + d / speed, *end)]


def add_sway(xy, n, rng, t_from, t_to):
    """Someone standing sways a pixel or two."""
    t = times(n)
    amp, per, ph = rng.uniform(0.8, 2.0), rng.uniform(3.0, 6.0), rng.uniform(0, 2 * math.pi)
    on = (t >= t_from) & (t <= t_to)
    xy[on, 0] += amp * np.sin(2 * math.pi * t[on] / per + ph) * np.clip(np.minimum(t[on] - t_from, t_to - t[on]), 0, 1)


def people_pool(src, rng, k):
    idx = rng.permutation(len(src.people))[:k]
    return [src.people[i].flipped() if rng.random() < 0.5 else src.people[i] for i in idx]


def background_walkers(sc, src, rng, starts, avoid):
    """Passers-by on paths that stay out of the zones in `avoid` (px polygons): a street is
    never empty. Each start: (t0, Z, direction +1 left->right / -1)."""
    g = src.ground
    for k, (t0, Z, direction) in enumerate(starts):
        spr = people_pool(src, rng, 1)[0]
        x0, x1 = (-9.0, 14.0) if direction > 0 else (14.0, -9.0)
        plan = walk_plan((x0 * Z / 13, Z), (x1 * Z / 13, Z), t0, rng.uniform(1.2, 1.5))
        xy = waypoints(g, sc.n, plan)
        ok = np.isfinite(xy[:, 0])
        if any(scene.point_in_polygon(x, y, poly) for poly in avoid for x, y in xy[ok][::5]):
            raise AssertionError(f"{sc.name}: background walker {k} enters a zone; move its path")
        sc.actors.append(Actor("person", spr, xy, f"passer-{k}", bob=True))


# --- Scenarios ------------------------------------------------------------------------------

def crowd_rule(min_persons):
    return {"min_persons": min_persons, "dwell_s": 10.0, "clear_s": 15.0, "cooldown_s": 60.0}


def plaza_zone(min_persons):
    return {"id": "plaza", "name": "Plaza (synthetic crowd zone)", "kind": "crowd", "poly": PLAZA,
            "rule": crowd_rule(min_persons), "extra": {"area_m2": 30.0}}


def poisson_disc(rng, n, radius, min_sep):
    """n points in a disc of `radius` metres, at least `min_sep` apart (grows the disc a little
    when it cannot fit them)."""
    for attempt in range(200):
        r = radius * (1 + 0.02 * (attempt // 10))
        pts = []
        for _ in range(4000):
            a, d = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.random())
            p = (d * math.cos(a), d * math.sin(a))
            if all(math.dist(p, q) >= min_sep for q in pts):
                pts.append(p)
                if len(pts) == n:
                    return pts
    raise RuntimeError(f"cannot place {n} people in a {radius} m disc")


def make_crowd(src, n, min_persons, seed):
    """n people walk in over ~8 s, stand together ~50 s swaying, and leave over ~8 s."""
    rng = np.random.default_rng(seed)
    g = src.ground
    sc = Scenario(f"crowd-{n}", 100.0, f"{n} people cut from vtest frames, scaled for perspective, "
                  "arrive 12-20 s, stand together until 68-76 s, leave")
    sc.background = lambda i: src.plate
    sc.zones.append(plaza_zone(min_persons))
    cX, cZ = g.to_ground(588, 322)
    spots = poisson_disc(rng, n, math.sqrt(n / 2.0 / math.pi), 0.55)  # ~2 persons / m²
    sprites = people_pool(src, rng, n)
    arrive = np.sort(rng.uniform(12.0, 20.0, n))
    arrive[-1] = 20.0
    leave = rng.uniform(68.0, 76.0, n)
    order = rng.permutation(n)
    for k in range(n):
        sx, sz = spots[order[k]]
        spot = (cX + sx, cZ + sz)
        side = -1 if sx < 0 else 1
        if rng.random() < 0.25:
            side = -side
        start = (spot[0] + side * rng.uniform(7, 10), spot[1] + rng.uniform(-2, 2))
        exit_side = side if rng.random() < 0.6 else -side
        end = (spot[0] + exit_side * rng.uniform(8, 11), spot[1] + rng.uniform(-2, 2))
        v_in, v_out = rng.uniform(1.2, 1.5), rng.uniform(1.2, 1.5)
        d_in = math.dist(start, spot)
        plan = [(arrive[k] - d_in / v_in, *start), (arrive[k], *spot), (leave[k], *spot)]
        plan += [(leave[k] + math.dist(spot, end) / v_out, *end)]
        xy = waypoints(g, sc.n, plan)
        add_sway(xy, sc.n, rng, arrive[k], leave[k])
        sc.actors.append(Actor("person", sprites[k], xy, f"member-{k}", bob=True))
    background_walkers(sc, src, rng, [(3.0, 21.0, 1), (30.0, 8.6, -1), (52.0, 22.0, -1), (84.0, 9.0, 1)], [PLAZA])
    sc.truth_extra["group_size"] = n
    return sc


def label_crowd(sc):
    """start: the whole group stands in the zone; end: the last member has left it."""
    members = [a for a in sc.actors if a.name.startswith("member-")]
    inside = np.zeros(sc.n, int)
    for a in members:
        ok = np.isfinite(a.xy[:, 0])
        inside += np.array([bool(o) and scene.point_in_polygon(x, y, PLAZA) for o, (x, y) in zip(ok, a.xy)])
    full = np.nonzero(inside == len(members))[0]
    some = np.nonzero(inside > 0)[0]
    sc.labels.append({"site": sc.name, "kind": "crowd", "zone": "plaza", "start_s": round(full[0] / FPS, 1),
                      "end_s": round((some[-1] + 1) / FPS, 1), "persons": len(members)})


def make_walkers(src, seed):
    """Two groups (6 and 9) and three singles walk across the plaza; nobody stops."""
    rng = np.random.default_rng(seed)
    g = src.ground
    sc = Scenario("walkers", 100.0, "a group of 6 (15 s) and of 9 (48 s) walk through the plaza "
                  "zone without stopping, then 3 singles; min_persons 8: nothing to raise")
    sc.background = lambda i: src.plate
    sc.zones.append(plaza_zone(8))
    pool = people_pool(src, rng, 18)
    k = 0
    for t0, size, Zc, direction in ((15.0, 6, 13.0, 1), (48.0, 9, 12.5, -1)):
        base_speed = rng.uniform(1.3, 1.45)
        for j in range(size):
            dz = rng.uniform(-1.4, 1.4)
            dx = rng.uniform(-2.0, 2.0)
            x0, x1 = (-6.0, 13.0) if direction > 0 else (13.0, -6.0)
            speed = base_speed * rng.uniform(0.95, 1.05)
            plan = walk_plan((x0 + dx, Zc + dz), (x1 + dx, Zc + dz), t0, speed)
            sc.actors.append(Actor("person", pool[k], waypoints(g, sc.n, plan), f"walker-{k}", bob=True))
            k += 1
    for t0, (a, b) in ((75.0, ((-5, 16), (11, 10))), (79.0, ((12, 17), (-4, 11))), (84.0, ((2, 20), (6, 8)))):
        plan = walk_plan(a, b, t0, rng.uniform(1.2, 1.5))
        sc.actors.append(Actor("person", pool[k], waypoints(g, sc.n, plan), f"walker-{k}", bob=True))
        k += 1
    return sc


def lawn_zone():
    return {"id": "taman", "name": "Taman (no dumping, synthetic)", "kind": "garbage", "poly": LAWN,
            "rule": {"static_s": 20.0, "dwell_s": 30.0, "clear_s": 20.0, "cooldown_s": 120.0}, "extra": {}}


def make_still_person(src, seed):
    """One person walks onto the lawn, stands still two minutes, walks off; passers-by."""
    rng = np.random.default_rng(seed)
    g = src.ground
    sc = Scenario("still-person", 150.0, "one person stands still on the lawn (no-dumping zone) "
                  "from 12 s to 132 s, passers-by on the plaza; nothing to raise")
    sc.background = lambda i: src.plate
    sc.zones += [lawn_zone(), plaza_zone(8)]
    spr = people_pool(src, rng, 1)[0]
    spot = g.to_ground(250, 440)
    start = (spot[0] - 9.0, spot[1] + 0.5)
    d = math.dist(start, spot)
    plan = [(12.0 - d / 1.3, *start), (12.0, *spot), (132.0, *spot), (132.0 + d / 1.3, *start)]
    xy = waypoints(g, sc.n, plan)
    add_sway(xy, sc.n, rng, 12.0, 132.0)
    sc.actors.append(Actor("person", spr, xy, "stander", bob=True))
    background_walkers(sc, src, rng, [(5.0, 14.5, 1), (40.0, 15.0, -1), (75.0, 16.0, 1), (100.0, 21.0, -1),
                                      (118.0, 14.5, 1)], [LAWN])
    return sc


def make_bag(src, seed):
    """A bag dropped on the lawn at 20 s and picked up at 110 s; people walk past and over it."""
    rng = np.random.default_rng(seed)
    g = src.ground
    sc = Scenario("bag", 150.0, "a bag lies on the lawn (no-dumping zone) from 20 s to 110 s; "
                  "the people who drop and take it and four others walk across it")
    sc.background = lambda i: src.plate
    sc.zones.append(lawn_zone())
    bx, bz = g.to_ground(220, 455)
    pool = people_pool(src, rng, 8)
    # (time the walker is at the bag, Z offset from the bag in metres, direction)
    passes = [(20.0, 0.0, 1), (36.0, -0.4, -1), (53.0, 0.5, 1), (70.0, 0.0, -1), (88.0, -0.3, 1), (110.0, 0.0, -1)]
    for k, (tb, dz, direction) in enumerate(passes):
        speed = rng.uniform(1.2, 1.4)
        a, b = (bx - 9.0 * direction, bz + dz), (bx + 9.0 * direction, bz + dz)
        at = (bx, bz + dz)
        plan = [(tb - math.dist(a, at) / speed, *a), (tb, *at), (tb + math.dist(at, b) / speed, *b)]
        sc.actors.append(Actor("person", pool[k], waypoints(g, sc.n, plan), f"walker-{k}", bob=True))
    bxy = waypoints(g, sc.n, [(20.0, bx, bz + 0.05), (110.0, bx, bz + 0.05)])  # just behind the walker's feet
    sc.actors.append(Actor("object", src.bag, bxy, "bag"))
    background_walkers(sc, src, rng, [(8.0, 14.5, 1), (60.0, 15.0, -1), (96.0, 20.0, 1), (128.0, 16.0, -1)], [LAWN])
    sc.labels.append({"site": sc.name, "kind": "garbage", "zone": "taman", "start_s": 20.0, "end_s": 110.0})
    sc.truth_extra["bag"] = {"dropped_s": 20.0, "taken_s": 110.0, "ground_point_px": [220, 455]}
    return sc


def make_tamper(src):
    """The real vtest footage (played forwards then backwards); lens covered 20-35 s, heavy
    defocus 50-65 s."""
    sc = Scenario("tamper", 90.0, "vtest footage (forwards, then backwards); a hand covers the lens "
                  "20-35 s; heavy defocus (Gaussian blur sigma 8) 50-65 s")
    n_src = len(src.vtest)
    period = 2 * n_src - 2
    frames = src.vtest
    sc.background = lambda i: frames[i % period if i % period < n_src else period - i % period]
    cover, defocus, ramp = (20.0, 35.0), (50.0, 65.0), 0.4
    # The hand: dark, nearly flat, a little lighter at one corner where light leaks in.
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    leak = 10.0 + 8.0 * np.exp(-((xx - 0.85 * W) ** 2 + (yy - 0.1 * H) ** 2) / (2 * (0.25 * W) ** 2))
    hand = np.repeat(leak[..., None], 3, 2) * np.array([0.9, 0.95, 1.1], np.float32)

    def weight(t, span):
        return min(scene.smoothstep((t - span[0]) / ramp), scene.smoothstep((span[1] - t) / ramp))

    def effect(i, img):
        t = i / FPS
        w = weight(t, defocus)
        if w > 0:
            img = cv2.GaussianBlur(img, (0, 0), max(0.3, 8.0 * w))
        w = weight(t, cover)
        if w > 0:
            img = img * (1 - w) + hand * w
        return img

    sc.effect = effect
    for span, reason in ((cover, "covered"), (defocus, "defocused")):
        sc.labels.append({"site": sc.name, "kind": "camera_tamper", "zone": None, "start_s": span[0], "end_s": span[1]})
    sc.truth_extra["tamper"] = [{"reason": "covered", "start_s": cover[0], "end_s": cover[1]},
                                {"reason": "defocused", "start_s": defocus[0], "end_s": defocus[1]}]
    return sc


# --- The jam --------------------------------------------------------------------------------

class RoadPath:
    """The vehicles' lane as a ground polyline; s = metres along it. It begins 3.8 m before the
    first point, below the picture, where vehicles appear; s < 0 is behind the camera's view."""

    def __init__(self, ground, pts_px):
        self.g = ground
        P = np.array([ground.to_ground(x, y) for x, y in pts_px])
        back = (P[0] - P[1]) / np.linalg.norm(P[0] - P[1])
        self.P = np.vstack([P[0] + 3.8 * back, P])
        seg = np.linalg.norm(np.diff(self.P, axis=0), axis=1)
        self.cum = np.concatenate([[0], np.cumsum(seg)])
        self.length = float(self.cum[-1])

    def image(self, s):
        X = np.interp(s, self.cum, self.P[:, 0])
        Z = np.interp(s, self.cum, self.P[:, 1])
        return self.g.to_image(X, Z)


# Traffic phases (seconds): free flow, dense, a queue held at a gate, free flow again.
DENSE_FROM, GATE_FROM, GATE_OPEN = 35.0, 55.0, 140.0
STOP_GAP_M = 1.5  # bumper to bumper when stopped


def simulate_traffic(n, rng, length, gate_s):
    """Vehicles on one lane, 10 steps a second, in lane order (no overtaking). Returns positions
    [vehicle, frame] in metres along the lane (NaN: not on the visible lane), speeds (m/s) and
    spawn times. From GATE_FROM a gate past the zone's top lets one vehicle through every 10 s,
    so a queue forms and crawls stop-and-go; at GATE_OPEN it opens and the queue drives off.
    A stopped driver moves off only once the vehicle ahead has pulled 1.5 m away."""
    spawns = [(t, 6.0) for t in (2.0, 9.0, 16.0, 23.0, 30.0)]
    spawns += [(DENSE_FROM + 2.5 * k, 3.8) for k in range(8)]
    spawns += [(GATE_FROM + 6.0 * k, 4.5) for k in range(13)]
    spawns += [(150.0 + 8.0 * k, 6.0) for k in range(6)]  # free flow again, until the clip ends
    releases = [62.0 + 10.0 * k for k in range(8)]
    nv = len(spawns)
    lengths = rng.uniform(4.6, 5.4, nv)
    pos = np.full((nv, n), np.nan)
    vel = np.full((nv, n), np.nan)
    queued = np.zeros((nv, n), bool)
    inq = np.zeros(nv, bool)  # has stopped behind the gate and not yet driven off
    s = np.zeros(nv)
    v = np.zeros(nv)
    state = np.zeros(nv, int)  # 0 not yet, 1 on the lane, 2 gone
    passed = 0
    dt = 1.0 / FPS
    for i in range(n):
        t = i * dt
        tokens = sum(r <= t for r in releases) - passed
        closed = GATE_FROM <= t < GATE_OPEN
        leader = None
        for k in range(nv):
            if state[k] == 0 and t >= spawns[k][0]:
                state[k], s[k], v[k] = 1, -10.0, spawns[k][1]
            if state[k] != 1:
                continue
            vd = 6.0 if t >= GATE_OPEN else spawns[k][1]
            v_new = min(vd, v[k] + 2.0 * dt) if v[k] < vd else max(vd, v[k] - 3.0 * dt)
            limit = np.inf
            if leader is not None:
                gap = s[leader] - lengths[leader] - s[k]
                limit = s[k] if (v[k] < 0.05 and gap < STOP_GAP_M + 1.5) else s[leader] - lengths[leader] - STOP_GAP_M
            if closed and s[k] <= gate_s and tokens <= 0:
                limit = min(limit, gate_s)
            room = max(0.0, limit - s[k])
            v_new = min(v_new, math.sqrt(2 * 3.0 * room), room / dt)
            if closed and s[k] <= gate_s < s[k] + v_new * dt:
                passed += 1
                tokens -= 1
            if closed and v_new < 0.3:
                inq[k] = True
            if inq[k] and (s[k] > gate_s or (t >= GATE_OPEN and v_new > 4.0)):
                inq[k] = False
            s[k] += v_new * dt
            v[k] = v_new
            leader = k
            if s[k] > length + 8.0:
                state[k] = 2
            elif s[k] >= 0:
                pos[k, i], vel[k, i], queued[k, i] = s[k], v[k], inq[k]
    return pos, vel, queued, [sp[0] for sp in spawns]


def side_of(line, x, y):
    (ax, ay), (bx, by) = line
    return (bx - ax) * (y - ay) - (by - ay) * (x - ax)


def make_jam(src, seed):
    rng = np.random.default_rng(seed)
    g = src.ground
    sc = Scenario("jam", 210.0, "vehicles (vtest's parked van and car, cut out, re-coloured and "
                  "scaled for perspective) drive up the road: free flow, dense, a queue that crawls "
                  "(one vehicle through every 10 s at a gate past the zone), then free flow")
    sc.background = lambda i: src.plate
    road = RoadPath(g, ROAD_PATH)
    gate_s = road.cum[-2] - 1.0  # just before the bend at the top of the road, inside the zone
    pos, vel, queued, spawn_t = simulate_traffic(sc.n, rng, road.length, gate_s)
    looks = src.vehicles
    for k in range(pos.shape[0]):
        x, y = road.image(np.nan_to_num(pos[k], nan=0.0))
        xy = np.stack([x, y], 1)
        xy[np.isnan(pos[k])] = np.nan
        sc.actors.append(Actor("vehicle", looks[k % len(looks)], xy, f"vehicle-{k}"))
    # Ground truth from the simulation: speeds, vehicles in the zone, crossings of the line.
    inzone = np.zeros(sc.n, int)
    slow_inzone = np.zeros(sc.n, int)
    crossings = []
    for k, a in enumerate(sc.actors):
        prev = None
        for i in range(sc.n):
            x, y = a.xy[i]
            if not np.isfinite(x):
                continue
            if scene.point_in_polygon(x, y, ROAD):
                inzone[i] += 1
                if queued[k, i]:
                    slow_inzone[i] += 1
            sd = side_of(COUNT_LINE, x, y)
            if prev is not None and prev < 0 <= sd:
                crossings.append({"vehicle": a.name, "t_s": round(i / FPS, 1), "direction": "in"})
            elif prev is not None and prev >= 0 > sd:
                crossings.append({"vehicle": a.name, "t_s": round(i / FPS, 1), "direction": "out"})
            prev = sd
    # The jam: from when queued vehicles fill the zone (3 of the ~4 it holds) until, after the
    # gate opens, at most one queued vehicle is left in it.
    full = np.nonzero(slow_inzone >= 3)[0]
    start = full[0] / FPS
    after = np.nonzero((np.arange(sc.n) >= GATE_OPEN * FPS) & (slow_inzone <= 1))[0]
    end = after[0] / FPS
    sc.labels.append({"site": sc.name, "kind": "traffic_jam", "zone": "jalan", "start_s": round(start, 1),
                      "end_s": round(end, 1)})
    sc.zones.append({"id": "jalan", "name": "Jalan (synthetic queue)", "kind": "traffic_jam", "poly": ROAD,
                     "rule": {"window_s": 20.0, "capacity_vehicles": 3, "dwell_s": 20.0, "clear_s": 20.0,
                              "cooldown_s": 60.0},
                     "extra": {"homography": homography(g)}})
    sc.lines.append({"id": "garis", "name": "Garis hitung (synthetic)", "points": COUNT_LINE,
                     "in_name": "naik", "out_name": "turun"})
    sc.truth_extra.update({
        "vehicles_in_zone": inzone.tolist(),
        "queued_in_zone": slow_inzone.tolist(),
        "crossings": crossings,
        "crossings_in": sum(c["direction"] == "in" for c in crossings),
        "crossings_out": sum(c["direction"] == "out" for c in crossings),
        "vehicles": len(spawn_t),
        "phases": [{"level": "lancar", "start_s": 0.0, "end_s": DENSE_FROM},
                   {"level": "padat", "start_s": DENSE_FROM, "end_s": round(start, 1)},
                   {"level": "macet", "start_s": round(start, 1), "end_s": round(end, 1)},
                   {"level": "lancar", "start_s": round(end, 1), "end_s": sc.duration_s}],
        "speeds_kmh": {"free": 21.6, "dense": 13.7,
                       "queue_mean": round(float(np.nanmean(vel[:, int(start * FPS):int(end * FPS)])) * 3.6, 1)},
    })
    return sc


def homography(g):
    """Four image points of the road and their ground positions (metres): the zone's exact
    ground scale, so speeds come out in km/h."""
    img = [(560, 300), (760, 300), (600, 160), (740, 160)]
    ground = [g.to_ground(x, y) for x, y in img]
    return {"image": norm(img), "ground_m": [[round(X, 3), round(Z, 3)] for X, Z in ground]}


# --- Output ---------------------------------------------------------------------------------

def scenarios(src):
    out = [make_crowd(src, 8, 8, 108), make_crowd(src, 16, 12, 116), make_crowd(src, 24, 12, 124),
           make_walkers(src, 200), make_still_person(src, 300), make_bag(src, 400), make_tamper(src),
           make_jam(src, 600)]
    for sc in out:
        if sc.name.startswith("crowd-"):
            label_crowd(sc)
    return out


def truth_of(sc):
    """Per-frame truth from the actors' tracks."""
    persons_zone = {z["id"]: [0] * sc.n for z in sc.zones}
    persons_frame = [0] * sc.n
    boxes = [[] for _ in range(sc.n)]
    g = SRC.ground
    for a in sc.actors:
        if a.kind != "person":
            continue
        for i in range(sc.n):
            x, y = a.xy[i]
            if not np.isfinite(x):
                continue
            h = g.px_per_m(y) * Ground.PERSON_M
            w = 0.41 * h  # the detector's median person box aspect on vtest
            x1, y1, x2, y2 = x - w / 2, y - h, x + w / 2, y
            vis = max(0.0, min(x2, W) - max(x1, 0)) * max(0.0, min(y2, H) - max(y1, 0)) / (w * h)
            if vis < 0.5:
                continue
            persons_frame[i] += 1
            zin = []
            for z in sc.zones:
                if scene.point_in_polygon(x, y, z["poly"]):
                    persons_zone[z["id"]][i] += 1
                    zin.append(z["id"])
            boxes[i].append([round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), zin[0] if zin else None])
    return {
        "persons_in_frame": persons_frame,
        "persons_in_zone": persons_zone,
        "person_boxes": boxes,
    }


def render(sc, i):
    placed = []
    t = i / FPS
    for a in sc.actors:
        x, y = a.xy[i]
        if not np.isfinite(x):
            continue
        h = SRC.ground.px_per_m(y) * a.sprite.height_m
        yd = y
        if a.bob and i > 0 and np.isfinite(a.xy[i - 1, 0]) and abs(a.xy[i - 1, 0] - x) + abs(a.xy[i - 1, 1] - y) > 0.3:
            yd = y - 0.012 * h * abs(math.sin(2 * math.pi * 1.9 * t))  # steps: a small bob
        placed.append(Placed(a.sprite, x, yd, h))
    img = sc.background(i).astype(np.float32)
    img = scene.compose(img, placed, out=img)
    if sc.effect is not None:
        img = sc.effect(i, img)
    return img


def encode(sc, path, grain):
    tmp = path + ".tmp"
    pipeline = (f"fdsrc fd=0 ! rawvideoparse format=bgr width={W} height={H} framerate={FPS}/1 ! videoconvert ! "
                f"video/x-raw,format=I420 ! {ENCODER.format(fps=FPS, kbps=sc.kbps)} ! video/x-h264,profile=high ! "
                f"h264parse ! mp4mux ! filesink location={tmp}")
    gst = shutil.which("gst-launch-1.0")
    if gst is None:
        raise SystemExit("generate.py: gst-launch-1.0 is not installed (scripts/setup.sh installs gstreamer1.0-tools)")
    proc = subprocess.Popen([gst, "-q", "-e", *pipeline.split()], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        for i in range(sc.n):
            proc.stdin.write(grain(render(sc, i)).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    if proc.wait() != 0:
        raise SystemExit(f"generate.py: gst-launch-1.0 failed on {path} (exit {proc.returncode})")
    os.replace(tmp, path)


def site_toml(sc):
    lines = ["[[sites]]", f'id = "{sc.name}"', f'name = "Scenario {sc.name} (synthetic footage)"',
             f'address = "samples/scenarios/{sc.name}.mp4: {sc.notes}"', "lat = -2.99245", "lon = 104.75930",
             "location_approximate = true", f'stream = "../samples/scenarios/{sc.name}.mp4"']
    for z in sc.zones:
        lines += ["", "[[sites.zones]]", f'id = "{z["id"]}"', f'name = "{z["name"]}"', f'kind = "{z["kind"]}"',
                  f"polygon = {json.dumps(norm(z['poly']))}"]
        for k, v in z["extra"].items():
            if k == "homography":
                lines.append(f"homography = {{ image = {json.dumps(v['image'])}, ground_m = {json.dumps(v['ground_m'])} }}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
        lines.append(f"[sites.zones.{z['kind']}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in z["rule"].items()]
    for ln in sc.lines:
        lines += ["", "[[sites.lines]]", f'id = "{ln["id"]}"', f'name = "{ln["name"]}"',
                  f"points = {json.dumps(norm(ln['points']))}", f'in_name = "{ln["in_name"]}"',
                  f'out_name = "{ln["out_name"]}"']
    return "\n".join(lines) + "\n"


CONFIG_HEAD = """# The labelled scenarios of `simpang replay`: one site per clip of samples/scenarios/.
# THE FOOTAGE IS SYNTHETIC: people, a bag and vehicles cut from the sample clips and composited
# onto a clean plate of the vtest camera (scripts/scenarios/README.md). Made by
# `scripts/scenarios/generate.py --write-config config/scenarios.toml` (recipe {recipe}); the
# zones and lines must match the footage, which generate.py checks. Rule settings may be tuned.
# Relative paths are relative to this file's folder.

data_dir = "../data/scenarios"

[city]
name = "Palembang (scenarios)"
timezone = "Asia/Jakarta"

[detect]
model = "../models/nanodet-m-int8/manifest.toml"
fps = 5.0

[ingest]
files_realtime = false
files_loop = false
"""


def config_text(scs):
    return CONFIG_HEAD.format(recipe=RECIPE) + "".join("\n" + site_toml(sc) for sc in scs)


def check_config(scs, path):
    """The committed config's zones and lines must be the footage's."""
    if not os.path.isfile(path):
        print(f"generate.py: note: {path} not found; zones not checked", file=sys.stderr)
        return
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    sites = {s["id"]: s for s in cfg.get("sites", [])}
    for sc in scs:
        s = sites.get(sc.name)
        if s is None:
            raise SystemExit(f"generate.py: {path}: no site \"{sc.name}\" (rerun with --write-config)")
        for z in sc.zones:
            cz = next((c for c in s.get("zones", []) if c["id"] == z["id"]), None)
            if cz is None or cz["polygon"] != norm(z["poly"]):
                raise SystemExit(f"generate.py: {path}: site \"{sc.name}\" zone \"{z['id']}\" differs from the "
                                 "footage's (rerun with --write-config)")
        for ln in sc.lines:
            cl = next((c for c in s.get("lines", []) if c["id"] == ln["id"]), None)
            if cl is None or cl["points"] != norm(ln["points"]):
                raise SystemExit(f"generate.py: {path}: site \"{sc.name}\" line \"{ln['id']}\" differs from the footage's")


SRC = None


def main(argv=None):
    global SRC
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("samples", nargs="?", default=os.path.join(ROOT, "samples"))
    ap.add_argument("--only", default="", help="comma-separated clip names")
    ap.add_argument("--preview", help="write PNG frames every 10 s to this folder instead of encoding")
    ap.add_argument("--force", action="store_true", help="rebuild even when the stamp is there")
    ap.add_argument("--write-config", metavar="FILE", help="write the scenario sites' config and exit")
    args = ap.parse_args(argv)
    out_dir = os.path.join(args.samples, "scenarios")
    stamp = os.path.join(out_dir, f".scenarios-{RECIPE}")
    if os.path.isfile(stamp) and not (args.force or args.preview or args.write_config or args.only):
        return 0
    t_start = time.monotonic()
    SRC = Sources(args.samples)
    scs = scenarios(SRC)
    if args.write_config:
        with open(args.write_config, "w") as f:
            f.write(config_text(scs))
        print(f"wrote {args.write_config}")
        return 0
    check_config(scs, os.path.join(ROOT, "config", "scenarios.toml"))
    only = set(filter(None, args.only.split(",")))
    os.makedirs(out_dir, exist_ok=True)
    for sc in scs:
        if only and sc.name not in only:
            continue
        t0 = time.monotonic()
        if args.preview:
            os.makedirs(args.preview, exist_ok=True)
            for i in range(0, sc.n, FPS * 10):
                cv2.imwrite(os.path.join(args.preview, f"{sc.name}-{i // FPS:03d}s.png"), np.clip(render(sc, i), 0, 255).astype(np.uint8))
            continue
        grain = scene.Grain((H, W, 3), 1.6, seed=hash_name(sc.name))
        encode(sc, os.path.join(out_dir, f"{sc.name}.mp4"), grain)
        truth = {"clip": f"{sc.name}.mp4", "synthetic": True, "recipe": RECIPE, "notes": sc.notes,
                 "fps": FPS, "width": W, "height": H, "frames": sc.n, "duration_s": sc.duration_s,
                 "zones": [{"id": z["id"], "kind": z["kind"], "polygon": norm(z["poly"])} for z in sc.zones],
                 "lines": [{"id": ln["id"], "points": norm(ln["points"])} for ln in sc.lines],
                 "labels": sc.labels, **sc.truth_extra, **truth_of(sc)}
        with open(os.path.join(out_dir, f"{sc.name}.truth.json"), "w") as f:
            json.dump(truth, f, separators=(",", ":"))
        with open(os.path.join(out_dir, f"{sc.name}.labels.jsonl"), "w") as f:
            for lab in sc.labels:
                f.write(json.dumps(lab) + "\n")
        print(f"setup: scenarios/{sc.name}.mp4 ({sc.duration_s:.0f} s, {time.monotonic() - t0:.1f} s to make)", file=sys.stderr)
    if not (args.preview or only):
        for old in os.listdir(out_dir):
            if old.startswith(".scenarios-"):
                os.remove(os.path.join(out_dir, old))
        open(stamp, "w").close()
        print(f"setup: scenarios made in {time.monotonic() - t_start:.0f} s", file=sys.stderr)
    return 0


def hash_name(name):
    return sum((i + 1) * ord(c) for i, c in enumerate(name))


if __name__ == "__main__":
    sys.exit(main())
