"""Temporal smoothing: `smooth` (EMA over class votes) and `one_euro` (landmark jitter filter).

`smooth` is the write-up's EMADictSmoothing: per-frame KNN votes flicker between classes
near a pose boundary, and the repetition counter needs a steadier signal. `one_euro` is the
One Euro filter (Casiez, Roussel, Vogel, CHI 2012) on every landmark coordinate: strong
smoothing while a landmark is still, little lag when it moves fast; `LandmarksFilter` applies
it to one person's landmarks packets.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np


class EmaDictSmoothing:
    """Exponential moving average of {class: value} dicts over a sliding window.

    For each class seen anywhere in the window: sum_k w_k * v_k / sum_k w_k over the last
    `window` frames, newest first, with w_k = (1 - alpha)^k (the newest has weight 1) and
    v_k = 0 for a frame that lacks the class. An empty dict is a frame too (no person):
    it pulls every class towards 0 and keeps the window's timing right.
    """

    def __init__(self, window: int = 10, alpha: float = 0.2):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.alpha = float(alpha)
        self.frames: deque[dict] = deque(maxlen=int(window))

    def __call__(self, values: dict) -> dict[str, float]:
        self.frames.appendleft(dict(values or {}))
        classes = sorted({c for frame in self.frames for c in frame})
        result = {}
        for c in classes:
            factor, top, bottom = 1.0, 0.0, 0.0
            for frame in self.frames:
                top += factor * float(frame.get(c, 0.0))
                bottom += factor
                factor *= 1.0 - self.alpha
            result[c] = top / bottom
        return result

    def reset(self) -> None:
        self.frames.clear()


# ----- One Euro ------------------------------------------------------------------------------
def smoothing_factor(cutoff, dt):
    """alpha of a first-order low-pass filter with cutoff frequency `cutoff` (Hz) at step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One Euro filter over an array of values (every element filtered independently).

    Per step (Casiez et al. 2012): dx = (x - x_hat_prev) / dt, low-passed with cutoff
    d_cutoff; cutoff = min_cutoff + beta * |dx_hat|; x_hat = low-pass of x with that cutoff.
    With `scale`, derivatives are divided by it first (as MediaPipe's landmark smoothing
    does with the body's size), so `beta` does not depend on the units or the person's
    distance from the camera.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self.x_hat = None
        self.dx_hat = None

    def __call__(self, x: np.ndarray, dt: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():  # e.g. world landmarks a model could not give: pass on, start over
            self.reset()
            return x.copy()
        if self.x_hat is None or self.x_hat.shape != x.shape:
            self.x_hat = x.copy()
            self.dx_hat = np.zeros_like(x)
            return self.x_hat.copy()
        dx = (x - self.x_hat) / (dt * (scale if scale > 0 else 1.0))
        a_d = smoothing_factor(self.d_cutoff, dt)
        self.dx_hat += a_d * (dx - self.dx_hat)
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx_hat)
        a = smoothing_factor(cutoff, dt)
        self.x_hat += a * (x - self.x_hat)
        return self.x_hat.copy()


def object_scale(points: np.ndarray) -> float:
    """The body's size for scaling derivatives: mean of the x and y extents (MediaPipe's choice)."""
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent.mean())


class LandmarksFilter:
    """One Euro filtering of one person's landmarks packets (posegraph/pose/packets.py), with
    that person's own frame clock: the state `one_euro` keeps per (stream, person id).

    px and world are filtered (x, y, z; visibility passes through) with derivatives measured
    in body sizes per second (`object_scale`); norm is then recomputed from px (norm = px /
    [width, height, width]) so the two stay consistent, or filtered on its own when the
    packet has no width and height. dt is the spacing of the capture times given to
    `__call__`, or 1 / fps when `fps` > 0 (for files replayed faster than real time); equal
    or missing times keep the last step. A frame without the person resets the filters: the
    next person starts fresh instead of being dragged from where the last one was.
    """

    def __init__(self, min_cutoff: float = 0.05, beta: float = 80.0, d_cutoff: float = 1.0, fps: float = 0.0):
        self.px_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.world_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.norm_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.fps = float(fps)
        self.last_ns = None
        self.last_dt = 1.0 / 30.0

    def reset(self) -> None:
        self.px_filter.reset()
        self.world_filter.reset()
        self.norm_filter.reset()
        self.last_ns = None

    def _dt(self, capture_ns: int) -> float:
        if self.fps > 0:
            return 1.0 / self.fps
        if self.last_ns is not None and capture_ns and capture_ns > self.last_ns:
            self.last_dt = (capture_ns - self.last_ns) / 1e9
        self.last_ns = capture_ns or self.last_ns
        return self.last_dt

    def __call__(self, packet: dict | None, capture_ns: int = 0) -> dict | None:
        """The packet with px, norm and world filtered; None (and a reset) for no person."""
        if packet is None or packet.get("px") is None:
            self.reset()
            return None
        dt = self._dt(capture_ns)
        out = dict(packet)
        px = np.asarray(packet["px"], dtype=np.float32)
        new_px = px.copy()
        new_px[:, :3] = self.px_filter(px[:, :3], dt, object_scale(px))
        out["px"] = new_px
        width, height = packet.get("width"), packet.get("height")
        if packet.get("norm") is not None:
            norm = np.array(packet["norm"], dtype=np.float32)
            if width and height:
                norm[:, :3] = new_px[:, :3] / np.array([width, height, width], dtype=np.float32)
            else:
                norm[:, :3] = self.norm_filter(norm[:, :3], dt, object_scale(norm))
            out["norm"] = norm
        if packet.get("world") is not None:
            world = np.array(packet["world"], dtype=np.float32)
            world[:, :3] = self.world_filter(world[:, :3], dt, object_scale(world))
            out["world"] = world
        return out
