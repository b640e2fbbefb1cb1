"""`dtw`: landmarks -> DTW votes against recorded templates (posegraph.pose.dtw), per person."""
from __future__ import annotations

from collections import deque

import numpy as np
from posegraph.nodes.per_person import PersonNode, PersonStates, skip_person
from posegraph.pose.dtw import (
    DEFAULT_TEMPLATES,
    Templates,
    TemplatesError,
    classify,
    feature_size,
    frame_features,
    frame_ok,
    resample_at,
)
from posegraph.pose.paths import resolve_path

from posegraph import Node, NodeOpenError, Param


# ----- the node --------------------------------------------------------------------------
class _Stream:
    def __init__(self, window: int):
        self.frames: deque = deque(maxlen=window * 8)  # enough history for a camera up to 8x the templates' rate
        self.times: deque = deque(maxlen=window * 8)   # their source timestamps (s), or None
        self.seen = 0           # frames appended (people seen, plus carried-forward gaps)
        self.last_answer = None
        self.since = 0          # frames since the last classification


class Dtw(PersonNode, Node):
    """Landmarks -> DTW votes against recorded templates, over a sliding window per person (stateful)."""

    INPUTS = {"landmarks": "landmarks packet (nodes/packets.py), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: fraction of the batch}, 'label': class or 'unknown', 'distance': best "
                        "normalised DTW distance}, per person; None before min_frames frames with a person"}
    PARAMS = {
        "templates": Param(DEFAULT_TEMPLATES, help="templates .npz (runner.py dtw-templates); relative: from the current directory, else the project root"),
        "window": Param(45, min=2, max=10000, help="query length in frames (the last N frames)"),
        "every": Param(5, min=1, max=10000, help="classify every N frames; the frames between repeat the last answer"),
        "batch": Param(4, min=1, max=1000, help="closest templates that vote; the closest one's class wins if it has at least half"),
        "band": Param(10, min=0, max=100000, help="Sakoe-Chiba band half-width in frames (widened to the length difference); 0: no band"),
        "threshold": Param(0.0, min=0.0, help="best normalised distance above which the answer is 'unknown'; 0: off"),
        "min_frames": Param(15, min=1, max=10000, help="answer once this many frames were seen (the window fills up to `window`)"),
    }
    STATEFUL = True

    def open(self, ctx):
        path = resolve_path(self.params["templates"])
        try:
            self.templates = Templates.load(path)
        except TemplatesError as exc:
            raise NodeOpenError(str(exc), field="params.templates") from None
        if len(self.templates) == 0:
            raise NodeOpenError(f"{path}: holds no templates", field="params.templates")
        self.kind = self.templates.kind
        self.size = self.templates.sequences[0].shape[1]  # features per frame the templates hold
        self.sizes: dict[str, int] = {}  # layout -> features per frame it gives
        self.streams: dict = PersonStates()  # (stream id, person id) -> their window
        p = self.params
        self.window, self.every, self.batch, self.band = p["window"], p["every"], p["batch"], p["band"]
        self.threshold = p["threshold"] or None
        self.min_frames = min(p["min_frames"], p["window"])
        self.rate = float(self.templates.params.get("fps") or 0.0)  # 0: templates of an older file, frames as they come
        classify(np.zeros((2, self.templates.sequences[0].shape[1])), self.templates, 1, self.band)  # compile now

    def _vector(self, packet):
        from posegraph.pose.features import landmarks_of

        found = landmarks_of(packet)
        if found is None:
            return None
        px, layout = found
        px = np.asarray(px)[None]
        with np.errstate(invalid="ignore"):
            vector = frame_features(px, layout, self.kind)
        return vector[0] if frame_ok(px, vector, self.kind)[0] else None

    def _query(self, state: _Stream) -> np.ndarray:
        """The last `window` frames at the templates' rate, by the frames' own timestamps.

        Without timestamps (or templates without a rate) the last `window` frames as they came.
        """
        times = list(state.times)
        if not self.rate or any(t is None for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            return np.array(list(state.frames)[-self.window:])
        span = (self.window - 1) / self.rate
        at = times[-1] - span + np.arange(self.window) / self.rate
        at = at[at >= times[0]]  # a stream younger than the window: what there is
        return resample_at(np.array(times), np.array(state.frames), at)

    def retire_person(self, key):
        self.streams.pop(key, None)

    def _wrong_layout(self, packet) -> str | None:
        """Why the templates cannot use this person's layout (None when usable or no person)."""
        from posegraph.pose.features import landmarks_of

        if not isinstance(packet, (dict, np.ndarray)):
            return None
        found = landmarks_of(packet)
        if found is None:
            return None
        px, layout = found
        if self.kind == "embed":
            if layout == "blazepose33" and np.shape(px)[0] == 33:
                return None
            return (f"templates of features 'embed' need blazepose33 landmarks, got {layout!r}: such people get no "
                    "answer (angles templates work on any layout)")
        size = self.sizes.get(layout)
        if size is None:
            try:
                size = feature_size(self.kind, layout)
            except ValueError:  # not a layout at all: left to the features, as before
                return None
            self.sizes[layout] = size
        if size != self.size:
            return (f"templates {self.params['templates']!r} hold {self.size} {self.kind} features per frame, a person of "
                    f"layout {layout!r} gives {size}: such people get no answer")
        return None

    def process_person(self, inputs, ctx, key):
        problem = self._wrong_layout(inputs["landmarks"])
        if problem is not None:
            skip_person(self, ctx, "wrong_layout", problem)
            return {}
        state = self.streams.get(key)
        if state is None:
            state = self.streams[key] = _Stream(self.window)
        vector = self._vector(inputs["landmarks"])
        if vector is None:
            if not state.frames:
                return {}  # nobody seen yet: nothing to carry forward
            vector = state.frames[-1]  # no person: carried forward
            ctx.count("carried")
        state.frames.append(vector)
        packet = inputs["landmarks"]
        pts = packet.get("pts_ms") if isinstance(packet, dict) else None
        state.times.append(pts / 1000.0 if pts is not None else None)
        state.seen += 1
        if state.seen < self.min_frames:
            return {}
        state.since += 1
        if state.last_answer is None or state.since >= self.every:
            state.since = 0
            answer = classify(self._query(state), self.templates, self.batch, self.band, self.threshold)
            state.last_answer = {"votes": answer.votes, "label": answer.label, "distance": answer.best}
            ctx.count("classified")
        return {"votes": dict(state.last_answer)}
