"""`dtw`: action recognition by dynamic time warping against recorded templates.

The method of the DTW write-up: a recorded action is a *template*, a sequence of per-frame
feature vectors (joint angles, or ML Kit pose embeddings); a live query is the last
`window` frames. The query's DTW distance to every template is computed, the templates
are sorted by distance and the closest `batch` (4) vote: the answer is the class of the
closest template when at least half of the batch shares that class, else "unknown".
An optional absolute threshold on the best distance also answers "unknown" (a motion
unlike every template).

Pieces, in order:

- `features(points, layout, kind)`: (T, K, >=2) landmarks -> (T, D) float64.
  `angles`: posegraph.pose.features.joint_angles (9 angles in radians, x,y only; a
  zero-length limb gives 0, not NaN; a custom layout gives the angles its points allow,
  `feature_size`). `embed`: posegraph.pose.features.mlkit_embedding flattened to 69 values
  (BlazePose-33 only). A frame with no person (all-NaN landmarks, or any non-finite
  feature) takes the features of the frame before it (carried forward: a dropped
  detection is most likely the same pose as a moment ago); frames before the first person
  have nothing to carry and are dropped, so the result may have fewer rows than T.
- `dtw_distance(a, b, band)`: exact DTW, frame cost = Euclidean distance, steps
  (1,0), (0,1), (1,1), compiled with numba (O(n*m) time, O(m) memory). `band` is a
  Sakoe-Chiba band half-width in frames: only cells with |i - j| <= max(band, |n - m|)
  are used; widening it to |n - m| for unequal lengths keeps a path from (0, 0) to
  (n-1, m-1) inside the band. band None or 0: no band.
  `normalized=True` divides by n + m (the longest possible warping path has n + m - 1
  steps, so this makes sequences of different lengths comparable: about "mean cost per
  frame of either sequence", halved). The classifier and the node use the normalised
  distance, so thresholds do not depend on the window or template lengths.
- `Templates`: labels, clip ids and feature sequences of one feature kind, saved as one
  .npz without pickle (labels as unicode arrays, features concatenated with offsets, the
  parameters as a JSON string). `record_templates_from_sequences` builds them from
  posegraph.pose.sequences.Sequence objects (any object with label, clip_id, layout, points).
- `classify(query, templates, batch, band, threshold)`: the vote rule above.
- `DtwClassifier` and `DtwWindow`: live classification (the `dtw` kind). A `DtwWindow`
  is one person's sliding query window (the last frames' features and source times);
  every `every` frames its last `window` frames, resampled by their timestamps to the
  templates' rate, are classified. `angles` templates work on every layout
  (BlazePose-33, COCO-17, OpenPose-18); `embed` templates need BlazePose-33 points:
  `DtwClassifier.unusable` says why a person of another layout cannot be used, and so
  for a layout giving another number of features than the templates hold (a custom
  layout with fewer angles, or templates recorded from one).
"""
from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_TEMPLATES = "models/dtw_exercises.npz"
TEMPLATE_FPS = 30.0  # templates are stored at this frame rate; queries are resampled to it
FEATURE_KINDS = ("angles", "embed")
UNKNOWN = "unknown"
FORMAT = "posegraph-dtw-templates"
VERSION = 1


# ----- features --------------------------------------------------------------------------
def frame_features(points: np.ndarray, layout: str, kind: str) -> np.ndarray:
    """(..., K, >=2) landmarks -> (..., D) features, no gap filling (NaN stays NaN)."""
    from posegraph.pose.features import (  # absolute: this file also loads by path
        joint_angles,
        mlkit_embedding,
    )

    points = np.asarray(points, dtype=np.float64)
    if kind == "angles":
        return joint_angles(points, layout)
    if kind == "embed":
        if layout != "blazepose33" or points.shape[-2] != 33:
            raise ValueError(f"features 'embed' need blazepose33 landmarks, got layout {layout!r} with {points.shape[-2]} points")
        if points.shape[-1] < 3:
            raise ValueError("features 'embed' need x, y and z")
        embedding = mlkit_embedding(points[..., :3])
        return embedding.reshape(*embedding.shape[:-2], -1)
    raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")


def feature_size(kind: str, layout: str = "blazepose33") -> int:
    """Values per frame of features `kind` on `layout` (9 angles, fewer on a custom layout
    without every joint; 69 for embed)."""
    if kind == "angles":
        from posegraph.pose.features import angle_names

        return len(angle_names(layout))
    return {"embed": 69}[kind]


def frame_ok(points: np.ndarray, feats: np.ndarray, kind: str) -> np.ndarray:
    """Frames with a person: every coordinate used (x, y; and z for embed) and every
    feature finite. (The angle code maps NaN limbs to 0, so the landmarks are checked too.)"""
    dims = 3 if kind == "embed" else 2
    return np.isfinite(points[..., :dims]).all(axis=(-2, -1)) & np.isfinite(feats).all(axis=-1)


def features(points: np.ndarray, layout: str, kind: str = "angles") -> np.ndarray:
    """(T, K, >=2) landmarks of a clip -> (T', D) float64, missing frames carried forward
    and leading missing frames dropped (see the module doc)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3:
        raise ValueError(f"expected (T, K, C) landmarks, got shape {points.shape}")
    with np.errstate(invalid="ignore"):
        feats = frame_features(points, layout, kind)
    ok = frame_ok(points, feats, kind)
    if not ok.any():
        return np.zeros((0, feats.shape[1]), dtype=np.float64)
    # index of the last good frame at or before each frame (-1 before the first one)
    last = np.maximum.accumulate(np.where(ok, np.arange(len(ok)), -1))
    keep = last >= 0
    return np.ascontiguousarray(feats[last[keep]])


# ----- DTW (numba) -----------------------------------------------------------------------
try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is a dependency; keep the module importable
    njit = None


def _dtw_core(a, b, band):
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    inf = np.inf
    if n == 0 or m == 0:
        return inf
    w = max(band, abs(n - m)) if band > 0 else max(n, m)
    prev = np.full(m + 1, inf)
    curr = np.full(m + 1, inf)
    prev[0] = 0.0
    for i in range(1, n + 1):
        curr[:] = inf
        lo = max(1, i - w)
        hi = min(m, i + w)
        for j in range(lo, hi + 1):
            s = 0.0
            for k in range(d):
                diff = a[i - 1, k] - b[j - 1, k]
                s += diff * diff
            best = prev[j - 1]
            if prev[j] < best:
                best = prev[j]
            if curr[j - 1] < best:
                best = curr[j - 1]
            curr[j] = np.sqrt(s) + best
        prev, curr = curr, prev
    return prev[m]


def _dtw_many_core(query, flat, offsets, band, normalized, out):
    n = query.shape[0]
    for t in range(offsets.shape[0] - 1):
        b = flat[offsets[t]:offsets[t + 1]]
        dist = _dtw_kernel(query, b, band)
        if normalized:
            dist = dist / (n + b.shape[0])
        out[t] = dist
    return out


def _compile(fn):
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location at all: compile at each start instead
        return njit(cache=False, nogil=True)(fn)


if njit is not None:
    _dtw_kernel = _compile(_dtw_core)
    _dtw_many_kernel = _compile(_dtw_many_core)
else:  # pragma: no cover
    _dtw_kernel, _dtw_many_kernel = _dtw_core, _dtw_many_core


def _as_seq(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"a sequence is (T, D) feature vectors, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _band(band) -> int:
    return 0 if band is None else max(0, int(band))


def dtw_distance(a, b, band: int | None = None, normalized: bool = False) -> float:
    """Exact DTW distance between (n, D) and (m, D) sequences (1-D input: D = 1).

    Euclidean frame cost; band: Sakoe-Chiba half-width in frames (None/0: none), widened
    to |n - m|; normalized: divided by n + m. Empty input: inf.
    """
    a, b = _as_seq(a), _as_seq(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    dist = float(_dtw_kernel(a, b, _band(band)))
    if normalized and np.isfinite(dist):
        dist /= a.shape[0] + b.shape[0]
    return dist


def dtw_distances(query, flat: np.ndarray, offsets: np.ndarray, band: int | None = None,
                  normalized: bool = True) -> np.ndarray:
    """DTW distance of `query` to each of the sequences flat[offsets[t]:offsets[t+1]],
    in one compiled loop (no per-template Python overhead)."""
    query = _as_seq(query)
    flat = _as_seq(flat)
    if len(offsets) > 1 and query.shape[1] != flat.shape[1]:
        raise ValueError(f"feature sizes differ: query {query.shape[1]}, templates {flat.shape[1]}")
    out = np.empty(max(len(offsets) - 1, 0), dtype=np.float64)
    return _dtw_many_kernel(query, flat, np.ascontiguousarray(offsets, dtype=np.int64), _band(band), bool(normalized), out)


# ----- templates -------------------------------------------------------------------------
class TemplatesError(ValueError):
    """A templates file that cannot be used; str() is one line naming the file."""


@dataclass
class Templates:
    """Labelled feature sequences of one feature kind (see the module doc)."""

    kind: str = "angles"
    labels: list[str] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    sequences: list[np.ndarray] = field(default_factory=list)
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise TemplatesError(f"unknown feature kind {self.kind!r}; known: {', '.join(FEATURE_KINDS)}")
        self.sequences = [_as_seq(s) for s in self.sequences]
        if not self.clip_ids:
            self.clip_ids = [f"t{i}" for i in range(len(self.labels))]
        if not (len(self.labels) == len(self.clip_ids) == len(self.sequences)):
            raise TemplatesError("labels, clip_ids and sequences differ in length")
        self._packed = None

    def __len__(self):
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def add(self, label: str, sequence, clip_id: str = "") -> None:
        seq = _as_seq(sequence)
        if len(seq) == 0:
            raise TemplatesError(f"template {clip_id or label!r} has no frames")
        if self.sequences and seq.shape[1] != self.sequences[0].shape[1]:
            raise TemplatesError(f"template {clip_id or label!r} has {seq.shape[1]} features, the others {self.sequences[0].shape[1]}")
        self.labels.append(str(label))
        self.clip_ids.append(str(clip_id or f"t{len(self.labels) - 1}"))
        self.sequences.append(seq)
        self._packed = None

    def extend(self, other: "Templates") -> None:
        if other.kind != self.kind:
            raise TemplatesError(f"cannot mix feature kinds {self.kind!r} and {other.kind!r}")
        for label, clip_id, seq in zip(other.labels, other.clip_ids, other.sequences):
            self.add(label, seq, clip_id)

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat (sum T, D) float64, offsets (N + 1,) int64), cached."""
        if self._packed is None:
            lengths = [len(s) for s in self.sequences]
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            dim = self.sequences[0].shape[1] if self.sequences else feature_size(self.kind)
            flat = np.concatenate(self.sequences) if self.sequences else np.zeros((0, dim))
            self._packed = (np.ascontiguousarray(flat, dtype=np.float64), offsets)
        return self._packed

    def save(self, path) -> None:
        """Write one .npz (atomically: a crash leaves no half file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        flat, offsets = self.packed()
        tmp = path.with_name(f".{path.name}.tmp.npz")
        try:
            np.savez(tmp, format=np.array(FORMAT), version=np.array(VERSION, dtype=np.int64),
                     kind=np.array(self.kind), labels=np.array(self.labels, dtype=np.str_).reshape(-1),
                     clip_ids=np.array(self.clip_ids, dtype=np.str_).reshape(-1), offsets=offsets,
                     features=flat.astype(np.float64), params=np.array(json.dumps(self.params, sort_keys=True)))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def load(cls, path) -> "Templates":
        path = Path(path)
        if not path.exists():
            raise TemplatesError(f"{path}: no such templates file")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    raise TemplatesError(f"{path}: not a DTW templates file (make one with `runner.py dtw-templates`)")
                version = int(z["version"])
                if version > VERSION:
                    raise TemplatesError(f"{path}: templates format version {version} is newer than this code's {VERSION}")
                kind = str(z["kind"])
                labels = [str(s) for s in z["labels"]]
                clip_ids = [str(s) for s in z["clip_ids"]]
                offsets = z["offsets"].astype(np.int64)
                flat = z["features"].astype(np.float64)
                params = json.loads(str(z["params"]))
        except TemplatesError:
            raise
        except Exception as exc:  # zip, npy or JSON damage, missing arrays, pickled objects
            raise TemplatesError(f"{path}: unreadable templates file ({type(exc).__name__}: {exc})") from None
        if (flat.ndim != 2 or offsets.ndim != 1 or len(offsets) != len(labels) + 1 or offsets[0] != 0
                or offsets[-1] != len(flat) or np.any(np.diff(offsets) <= 0) or len(clip_ids) != len(labels)):
            raise TemplatesError(f"{path}: inconsistent templates file (labels, offsets and features disagree)")
        if not np.isfinite(flat).all():
            raise TemplatesError(f"{path}: templates hold non-finite features")
        if kind not in FEATURE_KINDS:
            raise TemplatesError(f"{path}: unknown feature kind {kind!r}")
        seqs = [flat[offsets[i]:offsets[i + 1]] for i in range(len(labels))]
        return cls(kind=kind, labels=labels, clip_ids=clip_ids, sequences=seqs, params=params)


def load_templates(path) -> Templates:
    """Templates.load(path) (TemplatesError, a ValueError, for a missing or broken file)."""
    return Templates.load(path)


def segments(n: int, length: int, hop: int) -> list[tuple[int, int]]:
    """[start, end) windows of `length` frames every `hop` frames covering n frames; the
    last one ends at n; n <= length (or length 0) gives the whole range."""
    if length <= 0 or n <= length:
        return [(0, n)] if n else []
    hop = max(1, hop)
    starts = list(range(0, n - length + 1, hop))
    if starts[-1] != n - length:
        starts.append(n - length)
    return [(s, s + length) for s in starts]


def record_templates_from_sequences(sequences, kind: str = "angles", segment: int = 0, hop: int = 0,
                                    templates: Templates | None = None) -> Templates:
    """Templates from Sequence objects (label, clip_id, layout, points (T, K, 4)).

    segment 0: one template per clip (its whole length). segment N: clips longer than N
    frames are cut into N-frame templates every `hop` frames (default N // 2), so long
    recordings match a query window of about N frames. Clips with no person are skipped.
    Appends to `templates` when given.
    """
    out = templates if templates is not None else Templates(kind=kind, params={"segment": segment, "hop": hop, "fps": TEMPLATE_FPS})
    if out.kind != kind:
        raise TemplatesError(f"cannot add {kind!r} features to {out.kind!r} templates")
    hop = hop or max(1, segment // 2)
    for seq in sequences:
        feats = at_rate(features(seq.points, seq.layout, kind), seq.fps, TEMPLATE_FPS)
        for start, end in segments(len(feats), segment, hop):
            clip_id = seq.clip_id if (start, end) == (0, len(feats)) else f"{seq.clip_id}@{start}"
            out.add(seq.label, feats[start:end], clip_id)
    return out


def at_rate(feats: np.ndarray, fps: float, rate: float) -> np.ndarray:
    """Features resampled (linear interpolation in time) from `fps` to `rate` frames/s.

    Why: DTW stretches time only so far (the band), so a 5 frames/s clip, six times faster
    per frame than 30 frames/s templates, would never match them. Templates are kept at one
    rate and queries are brought to it.
    """
    if not fps or abs(fps - rate) < 0.5 or len(feats) < 2:
        return feats
    times = np.arange(len(feats)) / fps
    return resample_at(times, feats, np.arange(0.0, times[-1] + 1e-9, 1.0 / rate))


def resample_at(times: np.ndarray, feats: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Each feature column interpolated at the times `at` (seconds)."""
    return np.stack([np.interp(at, times, feats[:, j]) for j in range(feats.shape[1])], axis=1)


# ----- classification --------------------------------------------------------------------
class Answer(tuple):
    """(label, votes, distances), with the same as attributes plus `best` (the best distance)."""

    def __new__(cls, label: str, votes: dict, distances: np.ndarray, best: float):
        self = super().__new__(cls, (label, votes, distances))
        self.label, self.votes, self.distances, self.best = label, votes, distances, best
        return self


def vote(labels: list[str], distances: np.ndarray, batch: int = 4, threshold: float | None = None) -> tuple[str, dict, float]:
    """The write-up's rule on precomputed distances: (label, {class: fraction of the
    batch}, best distance). Ties in distance keep template order (stable sort)."""
    if len(distances) == 0:
        return UNKNOWN, {}, float("inf")
    order = np.argsort(distances, kind="stable")[:max(1, min(batch, len(distances)))]
    top = [labels[i] for i in order]
    counts: dict[str, int] = {}
    for label in top:
        counts[label] = counts.get(label, 0) + 1
    votes = {label: count / len(top) for label, count in counts.items()}
    best = float(distances[order[0]])
    label = top[0] if counts[top[0]] * 2 >= len(top) else UNKNOWN
    if threshold and not best <= threshold:  # also unknown for a NaN/inf best distance
        label = UNKNOWN
    return label, votes, best


def classify(query, templates: Templates, batch: int = 4, band: int | None = 10,
             threshold: float | None = None, normalized: bool = True) -> Answer:
    """DTW distance of the query (T, D) to every template, then `vote`. Returns an Answer
    that unpacks as (label, votes, distances)."""
    flat, offsets = templates.packed()
    distances = dtw_distances(query, flat, offsets, band, normalized)
    label, votes, best = vote(templates.labels, distances, batch, threshold)
    return Answer(label, votes, distances, best)


# ----- live classification -----------------------------------------------------------------
def _uncounted(name: str) -> None:
    """A `count` that keeps nothing."""


class DtwClassifier:
    """Templates set up for live classification, one `DtwWindow` per person (`new_window`).

    `window` frames make a query (fewer until that many were seen), answered once
    `min_frames` were seen and then every `every` frames (the frames between repeat the
    last answer); `batch`, `band` and `threshold` (None or 0: off) are `classify`'s.
    `name` names the templates in the reasons `unusable` gives.
    """

    def __init__(self, templates: Templates, window: int = 45, every: int = 5, batch: int = 4, band: int | None = 10,
                 threshold: float | None = None, min_frames: int = 15, name: str = "templates"):
        if len(templates) == 0:
            raise TemplatesError(f"{name}: holds no templates")
        self.templates, self.name, self.kind = templates, name, templates.kind
        self.window, self.every, self.batch, self.band = int(window), int(every), int(batch), band
        self.threshold = threshold or None
        self.min_frames = min(int(min_frames), self.window)
        self.size = templates.sequences[0].shape[1]  # features per frame the templates hold
        self.sizes: dict[str, int] = {}  # layout -> features per frame it gives
        self.rate = float(templates.params.get("fps") or 0.0)  # 0: templates of an older file, frames as they come

    def warm_up(self) -> None:
        """Compile the DTW kernel now rather than on the first query."""
        classify(np.zeros((2, self.size)), self.templates, 1, self.band)

    def new_window(self) -> "DtwWindow":
        return DtwWindow(self)

    def unusable(self, packet) -> str | None:
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
            except ValueError:  # not a layout at all: left to the features
                return None
            self.sizes[layout] = size
        if size != self.size:
            return (f"templates {self.name!r} hold {self.size} {self.kind} features per frame, a person of "
                    f"layout {layout!r} gives {size}: such people get no answer")
        return None

    def vector(self, packet) -> np.ndarray | None:
        """One frame's features of a landmarks packet; None when it has no usable person."""
        from posegraph.pose.features import landmarks_of

        found = landmarks_of(packet)
        if found is None:
            return None
        px, layout = found
        px = np.asarray(px)[None]
        with np.errstate(invalid="ignore"):
            vector = frame_features(px, layout, self.kind)
        return vector[0] if frame_ok(px, vector, self.kind)[0] else None


class DtwWindow:
    """One person's sliding query window for a `DtwClassifier` (see its doc)."""

    def __init__(self, classifier: DtwClassifier):
        self.classifier = classifier
        self.frames: deque = deque(maxlen=classifier.window * 8)  # history for a camera up to 8x the templates' rate
        self.times: deque = deque(maxlen=classifier.window * 8)   # their source timestamps (s), or None
        self.seen = 0           # frames appended (people seen, plus carried-forward gaps)
        self.last_answer = None
        self.since = 0          # frames since the last classification

    def push(self, packet, count: Callable[[str], None] = _uncounted) -> dict | None:
        """Add one frame (a landmarks packet; None or no usable person: the last frame's
        features carried forward) and return the votes packet, or None before `min_frames`.
        `count` is told "carried" for a carried-forward frame and "classified" for a query."""
        c = self.classifier
        vector = c.vector(packet)
        if vector is None:
            if not self.frames:
                return None  # nobody seen yet: nothing to carry forward
            vector = self.frames[-1]
            count("carried")
        self.frames.append(vector)
        pts = packet.get("pts_ms") if isinstance(packet, dict) else None
        self.times.append(pts / 1000.0 if pts is not None else None)
        self.seen += 1
        if self.seen < c.min_frames:
            return None
        self.since += 1
        if self.last_answer is None or self.since >= c.every:
            self.since = 0
            answer = classify(self.query(), c.templates, c.batch, c.band, c.threshold)
            self.last_answer = {"votes": answer.votes, "label": answer.label, "distance": answer.best}
            count("classified")
        return dict(self.last_answer)

    def query(self) -> np.ndarray:
        """The last `window` frames at the templates' rate, by the frames' own timestamps.

        Without timestamps (or templates without a rate) the last `window` frames as they came.
        """
        c = self.classifier
        times = list(self.times)
        if not c.rate or any(t is None for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            return np.array(list(self.frames)[-c.window:])
        span = (c.window - 1) / c.rate
        at = times[-1] - span + np.arange(c.window) / c.rate
        at = at[at >= times[0]]  # a stream younger than the window: what there is
        return resample_at(np.array(times), np.array(self.frames), at)
