"""Temporal smoothing: `smooth` (EMA over class votes) and `one_euro` (landmark jitter filter).

`smooth` is the write-up's EMADictSmoothing: per-frame KNN votes flicker between classes
near a pose boundary, and the repetition counter needs a steadier signal. `one_euro` is the
One Euro filter (Casiez, Roussel, Vogel, CHI 2012) on every landmark coordinate: strong
smoothing while a landmark is still, little lag when it moves fast.
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
