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

from posegraph import Node, Param

from .per_person import PersonNode, PersonStates


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


class Smooth(PersonNode, Node):
    """Votes -> EMA-smoothed scores (same scale as the votes: 0..top_n_by_mean).

    One window per person of each stream (key (ctx.stream, person id), nodes/people.py):
    with several cameras, or several people in one camera, a shared window would average
    one person's votes into another's. A person missing from a frame ages their window as
    a frame without a person does; one person (no "ids") is person 0, as before.
    """

    INPUTS = {"votes": "votes packet of knn, one or several people; None when no person"}
    OUTPUTS = {"scores": "{'scores': {class: smoothed votes}}, per person; None when no person"}
    PARAMS = {
        "window": Param(10, min=1, max=10000, help="frames in the averaging window"),
        "alpha": Param(0.2, min=0.0, max=1.0, help="weight decay per frame back: (1 - alpha)^k"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.filters: dict = PersonStates()  # (stream id, person id) -> their window

    def process_person(self, inputs, ctx, key):
        ema = self.filters.get(key)
        if ema is None:
            ema = self.filters[key] = EmaDictSmoothing(self.params["window"], self.params["alpha"])
        packet = inputs["votes"]
        if packet is None:
            ema({})  # as the write-up: no person still ages the window
            return {}
        return {"scores": {"scores": ema(packet.get("votes") or {})}}

    def retire_person(self, key):
        self.filters.pop(key, None)


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


class _OneEuroStream:
    """One stream's One Euro state: filters for px, world and norm, and its frame clock."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float):
        self.px_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.world_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.norm_filter = OneEuroFilter(min_cutoff, beta, d_cutoff)  # only without width/height
        self.last_ns = None
        self.last_dt = 1.0 / 30.0

    def reset(self) -> None:
        self.px_filter.reset()
        self.world_filter.reset()
        self.norm_filter.reset()
        self.last_ns = None


class OneEuro(PersonNode, Node):
    """Landmarks -> the same packet with px, norm and world One-Euro filtered.

    px and world are filtered (x, y, z; visibility passes through) with derivatives
    measured in body sizes per second; norm is then recomputed from px (norm = px / [width,
    height, width]) so the two stay consistent. dt comes from the packets' capture times
    (ctx.capture_ns), or is 1 / fps when `fps` > 0 (for files replayed faster than real
    time). A frame without a person resets the filter: the next person starts fresh
    instead of being dragged from where the last one was. Filters and frame times are kept
    per stream (ctx.stream): one camera's landmarks must not pull another's, and dt is the
    spacing of that stream's own frames, not of frames interleaved from other streams.
    With several people (nodes/people.py) filters and clock are kept per (stream, person
    id); a person missing from a frame is reset like a frame without a person. Any layout
    (BlazePose-33, COCO-17 without world, ...) is filtered.
    Defaults are MediaPipe's pose landmark filter (min_cutoff 0.05 Hz, beta 80, d_cutoff 1 Hz).
    """

    INPUTS = {"landmarks": "landmarks packet, one or several people; None when no person"}
    OUTPUTS = {"landmarks": "the landmarks packet, filtered, per person; None when no person"}
    PARAMS = {
        "min_cutoff": Param(0.05, min=1e-6, help="cutoff (Hz) when still: lower = smoother, more lag"),
        "beta": Param(80.0, min=0.0, help="cutoff increase per unit of speed (body sizes / s): higher = less lag"),
        "d_cutoff": Param(1.0, min=1e-6, help="cutoff (Hz) of the speed estimate"),
        "fps": Param(0.0, min=0.0, help="fixed frame rate for dt; 0: use the capture times"),
    }
    STATEFUL = True

    def open(self, ctx):
        self.streams: dict = PersonStates()  # (stream id, person id) -> their filters and clock

    def _stream(self, key) -> "_OneEuroStream":
        state = self.streams.get(key)
        if state is None:
            p = self.params
            state = self.streams[key] = _OneEuroStream(p["min_cutoff"], p["beta"], p["d_cutoff"])
        return state

    def retire_person(self, key):
        self.streams.pop(key, None)

    def _dt(self, state: "_OneEuroStream", capture_ns: int) -> float:
        if self.params["fps"] > 0:
            return 1.0 / self.params["fps"]
        if state.last_ns is not None and capture_ns and capture_ns > state.last_ns:
            state.last_dt = (capture_ns - state.last_ns) / 1e9
        state.last_ns = capture_ns or state.last_ns
        return state.last_dt  # equal or missing times: keep the last step

    def process_person(self, inputs, ctx, key):
        state = self._stream(key)
        packet = inputs["landmarks"]
        if packet is None or packet.get("px") is None:
            state.reset()
            return {}
        dt = self._dt(state, ctx.capture_ns)
        out = dict(packet)
        px = np.asarray(packet["px"], dtype=np.float32)
        new_px = px.copy()
        new_px[:, :3] = state.px_filter(px[:, :3], dt, object_scale(px))
        out["px"] = new_px
        width, height = packet.get("width"), packet.get("height")
        if packet.get("norm") is not None:
            norm = np.array(packet["norm"], dtype=np.float32)
            if width and height:
                norm[:, :3] = new_px[:, :3] / np.array([width, height, width], dtype=np.float32)
            else:
                norm[:, :3] = state.norm_filter(norm[:, :3], dt, object_scale(norm))
            out["norm"] = norm
        if packet.get("world") is not None:
            world = np.array(packet["world"], dtype=np.float32)
            world[:, :3] = state.world_filter(world[:, :3], dt, object_scale(world))
            out["world"] = world
        return {"landmarks": out}
