"""Counting repetitions: ML Kit's counter on one class's score, and a counter learned from clips.

Classic (`RepetitionCounter`, the write-up's): a repetition of, say, a squat is counted when
the pose has been "entered" (the class's smoothed votes rose above enter_threshold) and is
then left (they fell below exit_threshold). Two thresholds (hysteresis) keep a score
wobbling around one value from counting many times. It needs a classifier that tells the
two ends of the motion apart (ML Kit's squats_down / squats_up samples).

Learned (`RepModel`, in the spirit of PoseRAC: two salient key poses per class, a per-frame
score of which one is nearer, hysteresis over it): why: the sequence classifiers only say
"squat", not "down" or "up", and a counter per exercise should come from the same clips.
For each class, from its training clips' frames in view-invariant features
(posegraph.pose.body.body_features of the world landmarks, so the camera's place does not
matter):

- the main axis of motion is the first principal component of the frames, each clip
  centred on its own mean (so differences between people do not pass for motion);
- the two key poses are the mean poses at the axis's ends (each clip's lowest and highest
  END of frames along it, averaged over clips);
- the rest end is the end the clips start at (squats start standing, jumping jacks
  closed); when clips start in the middle or at either end (a Russian twist starts
  upright and twists to both sides) the class has no rest end;
- a class whose clips hold still (labels say 0 repetitions, or, without labels, they
  barely move along the axis) counts nothing.

Per frame (`ClassCounter`): the pose's position along rest -> far key pose (0 at rest,
1 at far), smoothed (EMA, time constant in seconds), then rescaled to the range this
stream has itself covered over the last `window_s` seconds once that range is wide enough
(`min_span` of the trained one), so shallow squats count, while a still person's jitter
never gets blown up to a full range; until then the trained key poses are the range.
Hysteresis: an end is reached when the score passes `enter` (far) or `exit` (rest). With a
rest end, going to the far end and back to rest is one repetition, unless the stream began
already past `enter` (a repetition whose way down is not seen does not count; judged once
the way up is seen, on the stream's own range). Without one, every end reached is a touch
and two touches (a twist to each side) are one repetition.

Everything a counter needs is in one JSON file (`RepModel.save` / `RepModel.load`).
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from posegraph.pose.body import JOINT_NAMES, body_features, mirror_world

FORMAT = "posegraph.reps"
FORMAT_VERSION = 1
FEATURES = "body_features"
END = 0.15            # share of each clip's frames at either end of the axis that make a key pose
START_S = 0.1         # the part of a clip whose position says where it starts
REST_MAJORITY = 2 / 3   # the share of clips that must start nearer one end for it to be the rest end
STATIC_AMPLITUDE = 0.5  # without labels: a class whose clips move less than this (torso lengths) is static


class RepetitionCounter:
    """Counts enter -> exit transitions of one class's confidence (0..10 votes)."""

    def __init__(self, class_name: str, enter_threshold: float = 6.0, exit_threshold: float = 4.0):
        if exit_threshold > enter_threshold:
            raise ValueError("exit_threshold must not be above enter_threshold")
        self.class_name = class_name
        self.enter_threshold = float(enter_threshold)
        self.exit_threshold = float(exit_threshold)
        self.entered = False
        self.count = 0

    def __call__(self, scores: dict) -> int:
        confidence = float((scores or {}).get(self.class_name, 0.0))
        if not self.entered:
            self.entered = confidence > self.enter_threshold
        elif confidence < self.exit_threshold:
            self.count += 1
            self.entered = False
        return self.count

    def packet(self) -> dict:
        """The reps packet (posegraph/pose/packets.py): the count so far and whether the pose is entered."""
        return {"reps": {self.class_name: self.count}, "class": self.class_name, "entered": self.entered}


# ----- the learned counter --------------------------------------------------------------------
class RepModelError(ValueError):
    """A model file or training set the learned counter cannot use; str() is one line."""


@dataclass
class CounterParams:
    """How a position along the axis becomes a count (the same for every class of a model)."""

    smooth_s: float = 0.1     # EMA time constant of the position, seconds
    enter: float = 0.7        # the far end is reached above this score
    exit: float = 0.3         # the rest end is reached below this score
    window_s: float = 6.0     # the stream's own range is taken over this many seconds
    quantile: float = 0.05    # ... from this quantile to 1 - quantile of its positions
    min_span: float = 0.35    # ... once it spans this share of the trained key poses' distance
    default_fps: float = 30.0  # frame rate assumed when frames carry no time

    def check(self) -> "CounterParams":
        if not 0.0 <= self.exit < self.enter <= 1.0:
            raise RepModelError(f"counter thresholds must satisfy 0 <= exit < enter <= 1, got exit {self.exit}, "
                                f"enter {self.enter}")
        if self.smooth_s < 0 or self.window_s <= 0 or not 0 <= self.quantile < 0.5 or self.min_span <= 0 \
                or self.default_fps <= 0:
            raise RepModelError(f"counter params out of range: {asdict(self)}")
        return self


@dataclass
class ClassModel:
    """One class's key poses (features of posegraph.pose.body.body_features), or static."""

    name: str
    static: bool
    rest_pose: np.ndarray | None = None   # the key pose at the rest end (or the first end, without one)
    far_pose: np.ndarray | None = None    # the key pose at the other end
    has_rest: bool = True                 # False: clips start anywhere (e.g. a twist to either side)
    info: dict = field(default_factory=dict)  # what it was fitted on (clips, frames, axis share, ...)

    def positions(self, features: np.ndarray) -> np.ndarray:
        """(..., D) features -> (...,) where each pose lies between the key poses: 0 rest, 1 far."""
        delta = self.far_pose - self.rest_pose
        return (np.asarray(features, dtype=np.float64) - self.rest_pose) @ delta / float(delta @ delta)


class ClassCounter:
    """One class's repetitions on one stream (see the module docstring): smoothed position,
    the stream's own range once it is wide enough, hysteresis between the ends."""

    def __init__(self, params: CounterParams, has_rest: bool = True):
        self.params = params
        self.has_rest = has_rest
        self.smoothed: float | None = None
        self.history: deque = deque()   # (time, smoothed position) of the last window_s seconds
        self.time = 0.0
        self.score = math.nan
        self.first: float | None = None  # the stream's first position
        self.end: int | None = None     # 0 at the rest end, 1 at the far end, None before either
        self.armed = False              # with a rest end: gone down, so the way up counts
        self.from_start = False         # ... and that way down began with the stream
        self.touches = 0                # without one: ends reached
        self.count = 0

    @property
    def entered(self) -> bool:
        """At the far end (a squat's bottom), as the classic counter's `entered`."""
        return self.end == 1

    def range(self) -> tuple[float, float]:
        """(low, high) positions that map to scores 0 and 1: the stream's own, or the key poses'."""
        p = self.params
        if len(self.history) >= 3:
            values = np.fromiter((v for _, v in self.history), dtype=np.float64, count=len(self.history))
            low, high = np.quantile(values, [p.quantile, 1.0 - p.quantile])
            if high - low >= p.min_span:
                return float(low), float(high)
        return 0.0, 1.0

    def update(self, position: float | None, dt: float) -> int:
        """One frame: its position along the class's axis (None: no person; the count holds)."""
        p = self.params
        self.time += max(0.0, float(dt))
        if position is None or not math.isfinite(position):
            return self.count
        if self.smoothed is None or p.smooth_s <= 0:
            self.smoothed = float(position)
        else:
            alpha = 1.0 - math.exp(-max(dt, 1e-6) / p.smooth_s)
            self.smoothed += alpha * (float(position) - self.smoothed)
        self.history.append((self.time, self.smoothed))
        while self.history and self.history[0][0] < self.time - p.window_s:
            self.history.popleft()
        low, high = self.range()
        self.score = (self.smoothed - low) / (high - low)
        if self.first is None:
            self.first = self.smoothed
        at = 1 if self.score >= p.enter else 0 if self.score <= p.exit else None
        if at is None or at == self.end:
            return self.count
        first, self.end = self.end is None, at
        if not self.has_rest:
            self.touches += 1
            self.count = self.touches // 2
        elif at == 1:
            self.armed, self.from_start = True, first
        elif self.armed:
            # back at rest: one repetition, unless the stream began already at the far end (its
            # way down not seen), judged on the range known now that the way up is seen too
            if not self.from_start or (self.first - low) / (high - low) < p.enter:
                self.count += 1
            self.armed = False
        return self.count


class RepCounter:
    """Every class of a model counted on one person's frames (one ClassCounter each)."""

    def __init__(self, model: "RepModel", fps: float | None = None):
        self.model = model
        self.frame_s = 1.0 / (fps or model.params.default_fps)  # the step when frames carry no time
        self.counters = {name: ClassCounter(model.params, cm.has_rest)
                         for name, cm in model.classes.items() if not cm.static}
        self.last_t: float | None = None

    def update(self, world: np.ndarray | None, t: float | None = None) -> dict[str, int]:
        """One frame: world landmarks (33, >=3) or None (no person, or none in metres); `t`
        its time in seconds (None: one frame at `fps` after the last). Counts of every class."""
        dt = self.frame_s
        if t is not None:
            if self.last_t is not None and 0.0 < t - self.last_t < 5.0:
                dt = t - self.last_t
            self.last_t = t
        features = None
        if world is not None:
            world = np.asarray(world, dtype=np.float64)
            if np.isfinite(world[:, :3]).all():
                features = body_features(world)
                if not np.isfinite(features).all():
                    features = None
        for name, counter in self.counters.items():
            position = None if features is None else float(self.model.classes[name].positions(features))
            counter.update(position, dt)
        return self.counts()

    def counts(self) -> dict[str, int]:
        """{class: repetitions so far} for every class of the model (static ones: 0)."""
        return {name: (self.counters[name].count if name in self.counters else 0) for name in self.model.classes}

    def entered(self, name: str) -> bool:
        counter = self.counters.get(name)
        return bool(counter and counter.entered)


def _features(world: np.ndarray) -> np.ndarray:
    """(T, 33, >=3) -> (T', D) body features of the frames with a whole skeleton."""
    feats = body_features(np.asarray(world, dtype=np.float64))
    return feats[np.isfinite(feats).all(axis=1)]


def _fit_class(name: str, clips: list[tuple[np.ndarray, float]], static: bool | None) -> ClassModel:
    """Key poses of one class from its clips' features [(frames x D, fps)]; `static` from the
    labels (None: decided by how far the clips move)."""
    clips = [(x, fps) for x, fps in clips if len(x) >= 3]
    if not clips:
        raise RepModelError(f"class {name!r}: no training clip with at least 3 frames of world landmarks")
    # within-clip scatter, every clip weighing the same: the motion, not who moves
    cov = sum((x - x.mean(0)).T @ (x - x.mean(0)) / len(x) for x, _ in clips) / len(clips)
    values, vectors = np.linalg.eigh(cov)
    axis = vectors[:, -1]
    lows, highs, starts, amplitudes = [], [], [], []
    for x, fps in clips:
        q = x @ axis
        lo, hi = np.quantile(q, [END, 1.0 - END])
        lows.append(x[q <= lo].mean(0))
        highs.append(x[q >= hi].mean(0))
        amplitudes.append(float(hi - lo))
        head = q[:max(1, int(round(START_S * fps)))]
        starts.append(float((np.median(head) - lo) / (hi - lo)) if hi > lo else 0.5)
    amplitude = float(np.median(amplitudes))
    info = {"axis_share": round(float(values[-1] / values.sum()), 4), "amplitude": round(amplitude, 4)}
    if static is None:
        static = amplitude < STATIC_AMPLITUDE
    if static:
        return ClassModel(name, static=True, info=info)
    low, high = np.mean(lows, axis=0), np.mean(highs, axis=0)
    # the rest end: the end most clips start nearer to (squats start standing); when that
    # is not a clear majority (a twist starts upright or at either side), there is none
    near_high = float(np.mean(np.array(starts) > 0.5))
    has_rest = max(near_high, 1.0 - near_high) >= REST_MAJORITY
    info.update(starts_far_half=round(near_high, 3))
    if near_high > 0.5:
        low, high = high, low
    return ClassModel(name, static=False, rest_pose=low, far_pose=high, has_rest=has_rest, info=info)


@dataclass
class RepModel:
    """A learned counter for every class: key poses per class and the counter's params."""

    classes: dict[str, ClassModel]
    params: CounterParams = field(default_factory=CounterParams)
    info: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, sequences, classes=None, reps: dict[str, int] | None = None, params: CounterParams | None = None,
            mirror: bool = True) -> "RepModel":
        """Key poses of every class in `classes` (None: every label) from the sequences of
        that label. `reps` ({clip_id: true count}): a class whose clips all count 0 is
        static; without it, a class that barely moves is. `mirror` adds every clip seen in
        a mirror (a twist to the left is one to the right)."""
        sequences = [s for s in sequences if s.layout == "blazepose33"]
        names = list(dict.fromkeys(classes if classes is not None else [s.label for s in sequences]))
        if not names:
            raise RepModelError("no classes to fit")
        models = {}
        for name in names:
            own = [s for s in sequences if s.label == name]
            if not own:
                raise RepModelError(f"class {name!r}: no training clip")
            clips, frames = [], 0
            for s in own:
                clips.append((_features(s.world), s.fps))
                frames += len(clips[-1][0])
                if mirror:
                    clips.append((_features(mirror_world(s.world)), s.fps))
            static = None
            if reps is not None:
                known = [reps[s.clip_id] for s in own if s.clip_id in reps]
                static = all(r == 0 for r in known) if known else None
            models[name] = _fit_class(name, clips, static)
            models[name].info = {"clips": len(own), "frames": frames, **models[name].info}
        return cls(models, (params or CounterParams()).check(),
                   {"clips": sorted({s.clip_id for s in sequences if s.label in names}), "mirror": bool(mirror),
                    "static_from": "labels" if reps is not None else "amplitude"})

    def counter(self, fps: float | None = None) -> RepCounter:
        """A fresh counter of every class for one person; `fps`: the frame rate assumed
        when frames carry no time (None: the model's default_fps)."""
        return RepCounter(self, fps)

    def count(self, sequence, name: str | None = None) -> int:
        """The count of class `name` (default: its label) over a whole sequence, frame by
        frame through the same RepCounter the reps node runs."""
        name = name or sequence.label
        counter = self.counter()
        fps = sequence.fps if sequence.fps > 0 else self.params.default_fps
        for i, world in enumerate(sequence.world):
            counter.update(world, i / fps)
        return counter.counts().get(name, 0)

    # ----- the file -------------------------------------------------------------------
    def as_dict(self) -> dict:
        def pose(values):
            return None if values is None else [round(float(v), 6) for v in values]

        return {
            "format": FORMAT, "version": FORMAT_VERSION, "features": FEATURES, "joints": list(JOINT_NAMES),
            "counter": asdict(self.params),
            "classes": {name: {"static": cm.static, "has_rest": cm.has_rest, "rest_pose": pose(cm.rest_pose),
                               "far_pose": pose(cm.far_pose), "info": cm.info}
                        for name, cm in self.classes.items()},
            "info": self.info,
        }

    def save(self, path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, doc: dict, where: str = "model") -> "RepModel":
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RepModelError(f"{where}: not a repetition model (no \"format\": \"{FORMAT}\")")
        if doc.get("version") != FORMAT_VERSION or doc.get("features") != FEATURES \
                or list(doc.get("joints") or []) != list(JOINT_NAMES):
            raise RepModelError(f"{where}: made for other features or another version "
                                f"(version {doc.get('version')}, features {doc.get('features')!r})")
        known = {f.name for f in fields(CounterParams)}
        try:
            params = CounterParams(**{k: float(v) for k, v in (doc.get("counter") or {}).items() if k in known}).check()
        except (TypeError, ValueError) as exc:
            raise RepModelError(f"{where}: bad counter params: {exc}") from None
        size = len(JOINT_NAMES) * 3
        classes = {}
        for name, c in (doc.get("classes") or {}).items():
            static = bool(c.get("static"))
            poses = [c.get("rest_pose"), c.get("far_pose")]
            if not static:
                try:
                    poses = [np.asarray(p, dtype=np.float64) for p in poses]
                except (TypeError, ValueError):
                    poses = [np.zeros(0), np.zeros(0)]
                if any(p.shape != (size,) or not np.isfinite(p).all() for p in poses) or np.allclose(*poses):
                    raise RepModelError(f"{where}: class {name!r} needs two distinct key poses of {size} numbers")
            else:
                poses = [None, None]
            classes[str(name)] = ClassModel(str(name), static, poses[0], poses[1], bool(c.get("has_rest", True)),
                                            dict(c.get("info") or {}))
        if not classes:
            raise RepModelError(f"{where}: no classes")
        return cls(classes, params, dict(doc.get("info") or {}))

    @classmethod
    def load(cls, path) -> "RepModel":
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise RepModelError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepModelError(f"{path}: not a JSON repetition model ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(doc, str(path))
