"""`smooth` (EMA over class votes) and `one_euro` (landmark filter): posegraph.pose.smoothing per person."""
from __future__ import annotations

import numpy as np
from posegraph.nodes.per_person import PersonNode, PersonStates
from posegraph.pose.smoothing import EmaDictSmoothing, OneEuroFilter, object_scale

from posegraph import Node, Param


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
