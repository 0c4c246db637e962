"""Building blocks of the synthetic scenarios: the clean plate of a fixed camera, a ground-plane
model fitted to that camera, sprites (cut-out people and objects with an alpha mask, anchored at
their ground point) and the compositor that draws them back to front.

Everything here is deterministic: no randomness except through the generators the callers pass.
"""
import math

import cv2
import numpy as np


def read_frames(path, indices=None):
    """Decoded BGR frames of a clip, as {index: frame} for `indices` (all when None)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot open this clip")
    want = None if indices is None else set(indices)
    out, i = {}, 0
    last = max(want) if want else None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if want is None or i in want:
            out[i] = frame
        i += 1
        if last is not None and i > last:
            break
    cap.release()
    if want is not None and want - set(out):
        raise RuntimeError(f"{path}: frames {sorted(want - set(out))[:5]} are past the clip's end ({i} frames)")
    return out


def median_plate(path, step=4):
    """Temporal median of every `step`-th frame: the street without the people walking through it."""
    frames = read_frames(path)
    stack = np.stack([frames[i] for i in sorted(frames) if i % step == 0])
    return np.median(stack, axis=0).astype(np.uint8)


class Ground:
    """A flat ground seen by a pinhole camera, fitted from one number per row: the pixel height of a
    1.7 m person standing at image row y is  h(y) = a * y + b  (least squares over confident
    person detections). That fixes the horizon (h = 0) and the camera's height above the ground
    (1.7 / a times the focal length's units cancel out); the focal length `f` (pixels) is assumed.

    Ground coordinates: X metres to the right of the optical axis, Z metres ahead of the camera.
    """

    PERSON_M = 1.7

    def __init__(self, a, b, f, cx):
        self.a, self.b, self.f, self.cx = a, b, f, cx
        self.horizon = -b / a  # image row where h(y) = 0
        self.cam_h = self.PERSON_M / a  # metres: (y - horizon) / h(y) = cam_h / 1.7

    def to_image(self, X, Z):
        y = self.horizon + self.f * self.cam_h / Z
        x = self.cx + self.f * X / Z
        return x, y

    def to_ground(self, x, y):
        Z = self.f * self.cam_h / (y - self.horizon)
        return (x - self.cx) * Z / self.f, Z

    def px_per_m(self, y):
        """Image pixels per metre (width or height of an upright object) at row y."""
        return (self.a * y + self.b) / self.PERSON_M


class Sprite:
    """A cut-out: BGR pixels, alpha 0..1 (float32) and its ground anchor (bottom centre).
    `height_m` is the real height of what it shows (it is scaled by the ground model)."""

    def __init__(self, bgr, alpha, height_m, name=""):
        ys, xs = np.nonzero(alpha > 0.05)
        if ys.size == 0:
            raise ValueError(f"sprite {name!r} has an empty mask")
        y1, y2, x1, x2 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        self.bgr = np.ascontiguousarray(bgr[y1:y2, x1:x2])
        self.alpha = np.ascontiguousarray(alpha[y1:y2, x1:x2].astype(np.float32))
        self.height_m = height_m
        self.name = name
        self._cache = {}

    def flipped(self):
        return Sprite(self.bgr[:, ::-1], self.alpha[:, ::-1], self.height_m, self.name + "~")

    def tinted(self, gains, name):
        """Body colour changed: each channel scaled (a white van becomes a red one)."""
        out = np.clip(self.bgr.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)
        return Sprite(out, self.alpha, self.height_m, name)

    def scaled(self, h_px):
        """(bgr, alpha) resized to `h_px` rows (cached per size: sprites move slowly)."""
        h_px = max(2, int(round(h_px)))
        hit = self._cache.get(h_px)
        if hit is None:
            w = max(1, int(round(self.bgr.shape[1] * h_px / self.bgr.shape[0])))
            interp = cv2.INTER_AREA if h_px < self.bgr.shape[0] else cv2.INTER_LINEAR
            hit = (cv2.resize(self.bgr, (w, h_px), interpolation=interp).astype(np.float32),
                   cv2.resize(self.alpha, (w, h_px), interpolation=cv2.INTER_LINEAR)[..., None])
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[h_px] = hit
        return hit


def person_mask(frame, plate, box, thr=22):
    """Alpha of the one person inside `box` (x1, y1, x2, y2): colour difference to the plate,
    closed, the component that fills most of the box, holes filled, edges feathered.
    Returns (bgr, alpha) cut to a margin around the box."""
    H, W = frame.shape[:2]
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    w, h = x2 - x1, y2 - y1
    X1, X2 = max(0, x1 - w // 3), min(W, x2 + w // 3)
    Y1, Y2 = max(0, y1 - h // 8), min(H, y2 + h // 8)
    fr, pl = frame[Y1:Y2, X1:X2], plate[Y1:Y2, X1:X2]
    blur = lambda a: cv2.GaussianBlur(a, (3, 3), 0).astype(np.int16)  # noqa: E731
    m = (np.abs(blur(fr) - blur(pl)).max(2) > thr).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, lab, _, _ = cv2.connectedComponentsWithStats(m)
    inbox = np.zeros_like(m)
    inbox[y1 - Y1:y2 - Y1, x1 - X1:x2 - X1] = 1
    if n < 2:
        raise ValueError(f"no foreground in box {box}")
    best = max(range(1, n), key=lambda j: int(((lab == j) & (inbox > 0)).sum()))
    m = (lab == best).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, contours, -1, 1, -1)
    alpha = cv2.GaussianBlur(filled.astype(np.float32), (3, 3), 0)
    return fr.copy(), alpha


def grabcut_mask(img, rect, iterations=6):
    """Alpha of the object in `rect` (x, y, w, h) by GrabCut, seeded so the result repeats."""
    cv2.setRNGSeed(7)
    m = np.zeros(img.shape[:2], np.uint8)
    bg, fg = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(img, m, rect, bg, fg, iterations, cv2.GC_INIT_WITH_RECT)
    a = ((m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)).astype(np.uint8)
    a = cv2.morphologyEx(a, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(a.astype(np.float32), (3, 3), 0)


class Placed:
    """One sprite drawn at ground point (x, y) in image pixels, `h_px` tall, x-shifted by `dx`."""

    __slots__ = ("sprite", "x", "y", "h_px")

    def __init__(self, sprite, x, y, h_px):
        self.sprite, self.x, self.y, self.h_px = sprite, x, y, h_px

    def box(self):
        """(x1, y1, x2, y2) of the drawn sprite in image pixels."""
        bgr, _ = self.sprite.scaled(self.h_px)
        h, w = bgr.shape[:2]
        x0 = int(round(self.x - w / 2))
        y0 = int(round(self.y)) - h
        return x0, y0, x0 + w, y0 + h


def compose(plate, placed, out=None):
    """Draws `placed` onto a copy of `plate` (float32 HxWx3), farthest (smallest y) first."""
    img = plate.astype(np.float32) if out is None else out
    H, W = img.shape[:2]
    for p in sorted(placed, key=lambda q: q.y):
        bgr, alpha = p.sprite.scaled(p.h_px)
        x0, y0, x1, y1 = p.box()
        X0, Y0, X1, Y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if X1 <= X0 or Y1 <= Y0:
            continue
        s = (slice(Y0 - y0, Y1 - y0), slice(X0 - x0, X1 - x0))
        a = alpha[s]
        roi = img[Y0:Y1, X0:X1]
        roi += (bgr[s] - roi) * a
    return img


class Grain:
    """Sensor noise: a fixed bank of noise frames, one picked per frame by a seeded generator
    (a static plate without noise looks frozen to a background model)."""

    def __init__(self, shape, sigma, seed, bank=12):
        rng = np.random.default_rng(seed)
        self.bank = [rng.normal(0, sigma, shape).astype(np.float32) for _ in range(bank)]
        self.rng = rng

    def __call__(self, img):
        img += self.bank[int(self.rng.integers(len(self.bank)))]
        return np.clip(img, 0, 255).astype(np.uint8)


def point_in_polygon(x, y, poly):
    """Even-odd test; poly is [(x, y), ...] in the same units as the point."""
    inside = False
    n = len(poly)
    for i in range(n):
        xa, ya = poly[i]
        xb, yb = poly[(i + 1) % n]
        if (ya > y) != (yb > y):
            xc = xa + (y - ya) * (xb - xa) / (yb - ya)
            if x < xc:
                inside = not inside
    return inside


def smoothstep(t):
    t = min(1.0, max(0.0, t))
    return t * t * (3 - 2 * t)


def sway(t, phase, amp_px=1.5, period_s=4.0):
    """Horizontal shift of someone standing: a slow sway."""
    return amp_px * math.sin(2 * math.pi * t / period_s + phase)
