"""`dtw`: action recognition by dynamic time warping against recorded templates.

The method of the DTW write-up: a recorded action is a *template*, a sequence of per-frame
feature vectors (joint angles, or ML Kit pose embeddings); a live query is the last
`window` frames. The query's DTW distance to every template is computed, the templates
are sorted by distance and the closest `batch` (4) vote: the answer is the class of the
closest template when at least half of the batch shares that class, else "unknown".
A threshold on the best distance also answers "unknown" (a motion unlike every
template): measured from data when the templates are recorded (`calibrate_templates`)
and stored in the templates file, one per class.

Why `body` features: 2-D joint angles in image coordinates depend on where the camera
stands (seen from the front, a squat's knees and elbows move across the image much like
a jumping jack's), so templates of a few clips fail on a camera they never saw. `body`
is computed from BlazePose's world landmarks and does not change when the camera turns
about the person.

Pieces, in order:

- `features(points, layout, kind)`: (T, K, >=2) landmarks -> (T, D) float64.
  `body` (from world landmarks, BlazePose only; `sequence_features` picks them):
  posegraph.pose.features.body_motion, 23 values: ten 3-D joint angles and the torso's
  inclination (radians), the wrists' and ankles' body-frame positions (torso lengths).
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
- `Templates`: labels, clip ids, groups and feature sequences of one feature kind, saved
  as one .npz without pickle (labels as unicode arrays, features concatenated with
  offsets, the parameters, thresholds included, as a JSON string). Version 1 files (no
  groups, no thresholds) still load. `record_templates_from_sequences` builds them from
  posegraph.pose.sequences.Sequence objects (any object with label, clip_id, layout, points;
  world and group when there are). Templates of class "unknown" (other motions, when the
  recording chose to keep them) vote like a class, so a batch led by them says "unknown".
- `calibrate_templates` / `calibrate_distances`: the thresholds, from each template's best
  distance to templates of its class recorded by OTHER groups (people, places),
  posegraph.pose.openset.calibrate per class, checked on negatives.
- `classify(query, templates, batch, band, threshold)`: the vote rule above; `threshold`
  is one value or {class: value} (the closest template's class decides).
- `DtwClassifier` and `DtwWindow`: live classification (the `dtw` kind). A `DtwWindow`
  is one person's sliding query window (the last frames' features and source times);
  every `every` frames its last `window` frames, resampled by their timestamps to the
  templates' rate, are classified. An "unknown" answer votes {"unknown": 1.0}. `angles`
  templates work on every layout (BlazePose-33, COCO-17, OpenPose-18); `embed` templates
  need BlazePose-33 points and `body` templates world landmarks:
  `DtwClassifier.unusable` says why a person cannot be used, and so for a layout giving
  another number of features than the templates hold (a custom layout with fewer angles,
  or templates recorded from one).
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
FEATURE_KINDS = ("angles", "embed", "body")
WORLD_KINDS = ("body",)  # computed from world landmarks (metres): BlazePose only
UNKNOWN = "unknown"
FORMAT = "posegraph-dtw-templates"
VERSION = 2  # 2 added `groups` (version 1 files still load)


# ----- features --------------------------------------------------------------------------
def frame_features(points: np.ndarray, layout: str, kind: str) -> np.ndarray:
    """(..., K, >=2) landmarks -> (..., D) features, no gap filling (NaN stays NaN).

    For the world kinds (WORLD_KINDS) `points` are world landmarks (metres), not pixels."""
    from posegraph.pose.features import (  # absolute: this file also loads by path
        body_motion,
        joint_angles,
        mlkit_embedding,
    )

    points = np.asarray(points, dtype=np.float64)
    if kind == "angles":
        return joint_angles(points, layout)
    if kind in ("embed", "body"):
        if layout != "blazepose33" or points.shape[-2] != 33:
            raise ValueError(f"features {kind!r} need blazepose33 landmarks, got layout {layout!r} with {points.shape[-2]} points")
        if points.shape[-1] < 3:
            raise ValueError(f"features {kind!r} need x, y and z")
        if kind == "body":
            return body_motion(points)
        embedding = mlkit_embedding(points[..., :3])
        return embedding.reshape(*embedding.shape[:-2], -1)
    raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")


def feature_size(kind: str, layout: str = "blazepose33") -> int:
    """Values per frame of features `kind` on `layout` (9 angles, fewer on a custom layout
    without every joint; 69 for embed; 23 for body)."""
    if kind == "angles":
        from posegraph.pose.features import angle_names

        return len(angle_names(layout))
    if kind == "body":
        from posegraph.pose.features import BODY_MOTION_SIZE

        return BODY_MOTION_SIZE
    return {"embed": 69}[kind]


def frame_ok(points: np.ndarray, feats: np.ndarray, kind: str) -> np.ndarray:
    """Frames with a person: every coordinate used (x, y; and z for embed and body) and every
    feature finite. (The angle code maps NaN limbs to 0, so the landmarks are checked too.)"""
    dims = 3 if kind in ("embed", "body") else 2
    return np.isfinite(points[..., :dims]).all(axis=(-2, -1)) & np.isfinite(feats).all(axis=-1)


def features(points: np.ndarray, layout: str, kind: str = "angles") -> np.ndarray:
    """(T, K, >=2) landmarks of a clip (world landmarks for WORLD_KINDS) -> (T', D) float64,
    missing frames carried forward and leading missing frames dropped (see the module doc)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3:
        raise ValueError(f"expected (T, K, C) landmarks, got shape {points.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        feats = frame_features(points, layout, kind)
    ok = frame_ok(points, feats, kind)
    if not ok.any():
        return np.zeros((0, feats.shape[1]), dtype=np.float64)
    # index of the last good frame at or before each frame (-1 before the first one)
    last = np.maximum.accumulate(np.where(ok, np.arange(len(ok)), -1))
    keep = last >= 0
    return np.ascontiguousarray(feats[last[keep]])


def sequence_features(seq, kind: str) -> np.ndarray:
    """`features` of a posegraph.pose.sequences.Sequence: its world landmarks for the world
    kinds, its pixel landmarks for the others."""
    return features(seq.world if kind in WORLD_KINDS else seq.points, seq.layout, kind)


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
    """Labelled feature sequences of one feature kind (see the module doc).

    `groups` says who or where each template was recorded (its clip id when not known), so
    the "unknown" threshold is measured between templates of different people
    (`calibrate_templates`). `params` holds how they were made ("segment", "hop", "fps")
    and, once calibrated, "threshold": a posegraph.pose.openset.Threshold as a dict, with
    "class_thresholds": {class: Threshold dict}.
    """

    kind: str = "angles"
    labels: list[str] = field(default_factory=list)
    clip_ids: list[str] = field(default_factory=list)
    sequences: list[np.ndarray] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise TemplatesError(f"unknown feature kind {self.kind!r}; known: {', '.join(FEATURE_KINDS)}")
        self.sequences = [_as_seq(s) for s in self.sequences]
        if not self.clip_ids:
            self.clip_ids = [f"t{i}" for i in range(len(self.labels))]
        if not self.groups:
            self.groups = [_clip_of(c) for c in self.clip_ids]
        if not (len(self.labels) == len(self.clip_ids) == len(self.sequences) == len(self.groups)):
            raise TemplatesError("labels, clip_ids, groups and sequences differ in length")
        self._packed = None

    def __len__(self):
        return len(self.labels)

    @property
    def classes(self) -> list[str]:
        """The classes the templates answer (a class "unknown" of negatives' templates is not one)."""
        return sorted(set(self.labels) - {UNKNOWN})

    def add(self, label: str, sequence, clip_id: str = "", group: str = "") -> None:
        seq = _as_seq(sequence)
        if len(seq) == 0:
            raise TemplatesError(f"template {clip_id or label!r} has no frames")
        if self.sequences and seq.shape[1] != self.sequences[0].shape[1]:
            raise TemplatesError(f"template {clip_id or label!r} has {seq.shape[1]} features, the others {self.sequences[0].shape[1]}")
        self.labels.append(str(label))
        self.clip_ids.append(str(clip_id or f"t{len(self.labels) - 1}"))
        self.groups.append(str(group or _clip_of(self.clip_ids[-1])))
        self.sequences.append(seq)
        self._packed = None

    def extend(self, other: "Templates") -> None:
        if other.kind != self.kind:
            raise TemplatesError(f"cannot mix feature kinds {self.kind!r} and {other.kind!r}")
        for label, clip_id, seq, group in zip(other.labels, other.clip_ids, other.sequences, other.groups):
            self.add(label, seq, clip_id, group)

    def subset(self, keep) -> "Templates":
        """The templates at the indices (or boolean mask) `keep`, same kind and params."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.intp)
        return Templates(kind=self.kind, labels=[self.labels[i] for i in index], clip_ids=[self.clip_ids[i] for i in index],
                         sequences=[self.sequences[i] for i in index], params=dict(self.params),
                         groups=[self.groups[i] for i in index])

    @property
    def scale(self) -> np.ndarray | None:
        """Per-feature weights the stored features were multiplied by (`standardize`); None: none."""
        found = self.params.get("scale")
        return None if found is None else np.asarray(found, dtype=np.float64)

    def standardize(self) -> np.ndarray:
        """Weigh every feature by 1 / its spread within a class, and keep the weights.

        Why: a feature that varies a lot among templates of one class (the arms during a
        squat: forward, on the hips, behind the head) says little about the class but
        dominates the distance, and so the thresholds: a lunge then passes for a squat.
        The spread is the within-class standard deviation over every frame of the known
        classes' templates, pooled over the classes; the weights average 1, so distances
        keep their size. Applied once: the features are stored weighted, `params["scale"]`
        holds the weights, and new templates (`record_templates_from_sequences`) and live
        queries (`DtwClassifier.vector`) are weighted the same.
        """
        if self.scale is not None:
            raise TemplatesError("templates are standardized already")
        labels = np.array(self.labels)
        variances = []
        for c in self.classes:
            frames = np.concatenate([s for s, lab in zip(self.sequences, labels) if lab == c])
            if len(frames) > 1:
                variances.append(frames.var(axis=0))
        if not variances:
            raise TemplatesError("no class with frames to measure the features' spread on")
        spread = np.sqrt(np.mean(variances, axis=0))
        weights = 1.0 / np.maximum(spread, 1e-3 * max(float(spread.max()), 1e-12))
        weights = np.round(weights / weights.mean(), 8)  # stored as written, so queries match exactly
        self.sequences = [s * weights for s in self.sequences]
        self.params["scale"] = weights.tolist()
        self._packed = None
        return weights

    @property
    def threshold(self) -> float | dict | None:
        """The calibrated "unknown" threshold: {class: value} when the file holds one per class,
        else one value; None when the templates were never calibrated."""
        per_class = self.params.get("class_thresholds")
        if per_class:
            return {c: float(t["value"]) for c, t in per_class.items()}
        found = self.params.get("threshold")
        return float(found["value"]) if found else None

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
        """Write one compressed .npz (atomically: a crash leaves no half file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        flat, offsets = self.packed()
        tmp = path.with_name(f".{path.name}.tmp.npz")
        try:
            np.savez_compressed(tmp, format=np.array(FORMAT), version=np.array(VERSION, dtype=np.int64),
                     kind=np.array(self.kind), labels=np.array(self.labels, dtype=np.str_).reshape(-1),
                     clip_ids=np.array(self.clip_ids, dtype=np.str_).reshape(-1),
                     groups=np.array(self.groups, dtype=np.str_).reshape(-1), offsets=offsets,
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
                groups = [str(s) for s in z["groups"]] if "groups" in z.files else []
                offsets = z["offsets"].astype(np.int64)
                flat = z["features"].astype(np.float64)
                params = json.loads(str(z["params"]))
        except TemplatesError:
            raise
        except Exception as exc:  # zip, npy or JSON damage, missing arrays, pickled objects
            raise TemplatesError(f"{path}: unreadable templates file ({type(exc).__name__}: {exc})") from None
        if (flat.ndim != 2 or offsets.ndim != 1 or len(offsets) != len(labels) + 1 or offsets[0] != 0
                or offsets[-1] != len(flat) or np.any(np.diff(offsets) <= 0) or len(clip_ids) != len(labels)
                or (groups and len(groups) != len(labels))):
            raise TemplatesError(f"{path}: inconsistent templates file (labels, offsets and features disagree)")
        if not np.isfinite(flat).all():
            raise TemplatesError(f"{path}: templates hold non-finite features")
        if kind not in FEATURE_KINDS:
            raise TemplatesError(f"{path}: unknown feature kind {kind!r}")
        if kind in WORLD_KINDS and flat.shape[1] != feature_size(kind):
            raise TemplatesError(f"{path}: {kind!r} templates of {flat.shape[1]} features, this code makes {feature_size(kind)}")
        seqs = [flat[offsets[i]:offsets[i + 1]] for i in range(len(labels))]
        return cls(kind=kind, labels=labels, clip_ids=clip_ids, sequences=seqs, params=params, groups=groups)


def _clip_of(template_id: str) -> str:
    """The clip a template id names ("clip@start" for a piece of a clip)."""
    return template_id.rsplit("@", 1)[0]


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
    """Templates from Sequence objects (label, clip_id, layout, points (T, K, 4), and world
    and group when they have them).

    segment 0: one template per clip (its whole length). segment N: clips longer than N
    frames are cut into N-frame templates every `hop` frames (default N // 2), so long
    recordings match a query window of about N frames. Clips with no person (for the world
    kinds: no world landmarks) are skipped. Appends to `templates` when given (weighted by
    their `scale` when they were standardized).
    """
    out = templates if templates is not None else Templates(kind=kind, params={"segment": segment, "hop": hop, "fps": TEMPLATE_FPS})
    if out.kind != kind:
        raise TemplatesError(f"cannot add {kind!r} features to {out.kind!r} templates")
    hop = hop or max(1, segment // 2)
    scale = out.scale
    for seq in sequences:
        if kind in WORLD_KINDS and getattr(seq, "world", None) is None:
            continue
        feats = at_rate(sequence_features(seq, kind), seq.fps, TEMPLATE_FPS)
        if scale is not None:
            feats = feats * scale
        group = getattr(seq, "group", "") or seq.clip_id
        for start, end in segments(len(feats), segment, hop):
            clip_id = seq.clip_id if (start, end) == (0, len(feats)) else f"{seq.clip_id}@{start}"
            out.add(seq.label, feats[start:end], clip_id, group)
    return out


def template_distances(templates: Templates, band: int | None = 10) -> np.ndarray:
    """(N, N) normalised DTW distances between every pair of templates (row: the query)."""
    flat, offsets = templates.packed()
    return np.stack([dtw_distances(seq, flat, offsets, band, True) for seq in templates.sequences]) if len(templates) \
        else np.zeros((0, 0))


@dataclass
class Calibration:
    """What `calibrate_distances` found: the overall threshold, one per class, and the
    share of negatives each way turns away."""

    overall: object                       # posegraph.pose.openset.Threshold (value: with the margin)
    by_class: dict                        # class -> Threshold
    negatives: int = 0
    negatives_rejected_per_class: float | None = None
    margin: float = 1.0                   # the thresholds are the `keep` quantile times this

    def store(self, params: dict, extra: dict | None = None) -> None:
        params["threshold"] = self.overall.as_dict()
        params["class_thresholds"] = {c: t.as_dict() for c, t in self.by_class.items()}
        params["calibration"] = {"negatives": self.negatives, "margin": self.margin,
                                 "negatives_rejected_per_class": self.negatives_rejected_per_class, **(extra or {})}

    def limits(self) -> dict:
        """{class: threshold value}, what `vote` takes."""
        return {c: t.value for c, t in self.by_class.items()}


KEEP = 0.9     # the share of held-out known distances the threshold is set at (before the margin)
MARGIN = 1.5   # how far beyond that a group never seen may still be (see calibrate_distances)


def margin_threshold(known, negatives=None, keep: float = KEEP, margin: float = MARGIN):
    """posegraph.pose.openset.calibrate's threshold (the `keep` quantile of the `known`
    distances) times `margin`, with what it keeps and turns away measured again."""
    from posegraph.pose.openset import calibrate

    threshold = calibrate(known, negatives, keep)
    known = np.asarray(known, dtype=np.float64)
    known = known[np.isfinite(known)]
    threshold.value *= float(margin)
    threshold.known_kept = float(np.mean(known <= threshold.value))
    if negatives is not None and threshold.negatives:
        negatives = np.asarray(negatives, dtype=np.float64)
        threshold.negatives_rejected = float(np.mean(negatives[np.isfinite(negatives)] > threshold.value))
    return threshold


def calibrate_distances(distances: np.ndarray, labels, groups, classes=None, keep: float | None = None,
                        margin: float | None = None, min_per_class: int = 5) -> Calibration:
    """The "unknown" thresholds from a (N, N) template distance matrix (`template_distances`).

    Known distances: for every template of a known class, its best distance to templates
    of the same class from OTHER groups (a person the threshold never saw, as a live query
    will be); a class recorded by one group only gives none. Each class gets its own
    threshold (a squat's variety is far larger than a plank's) from its own distances, or
    the overall one when it has fewer than `min_per_class`: the `keep` quantile (KEEP,
    0.9) times `margin` (MARGIN, 1.5). Why a margin: the groups at hand are few, and a new
    one is further from all of them than they are from each other (left out in turn on 25
    groups of people and places, a group's windows came up to 1.4 times beyond the
    others' quantile: a barbell squat among body-weight squats, a tightly framed plank).
    Negatives (templates whose label is not in `classes`, default all but "unknown") are
    checked with their best distance to known templates of other groups, against the
    threshold of that template's class (what the node does) and against the overall one.
    """
    keep = KEEP if keep is None else keep
    margin = MARGIN if margin is None else margin
    labels, groups = np.asarray(labels), np.asarray(groups)
    known_classes = sorted(set(classes) if classes else set(labels.tolist()) - {UNKNOWN})
    known = np.isin(labels, known_classes)
    other_group = groups[:, None] != groups[None, :]
    best = np.full(len(labels), np.nan)
    nearest = np.full(len(labels), -1)
    for i in range(len(labels)):
        pool = other_group[i] & known & ((labels == labels[i]) if known[i] else True)
        if pool.any():
            candidates = np.flatnonzero(pool)
            j = candidates[int(np.argmin(distances[i, candidates]))]
            best[i], nearest[i] = distances[i, j], j
    negatives = best[~known]
    overall = margin_threshold(best[known], negatives if negatives.size else None, keep, margin)
    by_class = {}
    for c in known_classes:
        mine = best[labels == c]
        by_class[c] = margin_threshold(mine, None, keep, margin) if np.isfinite(mine).sum() >= min_per_class else overall
    rejected = [best[i] > by_class[labels[nearest[i]]].value for i in np.flatnonzero(~known) if nearest[i] >= 0]
    return Calibration(overall, by_class, int((~known).sum()), float(np.mean(rejected)) if rejected else None, margin)


def calibrate_templates(templates: Templates, classes=None, band: int | None = 10, keep: float | None = None,
                        margin: float | None = None) -> Calibration:
    """Measure the templates' "unknown" thresholds (`calibrate_distances`) and store them in
    `templates.params`."""
    calibration = calibrate_distances(template_distances(templates, band), templates.labels, templates.groups, classes,
                                      keep, margin)
    calibration.store(templates.params, {"band": _band(band), "keep": calibration.overall.keep})
    return calibration


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


def vote(labels: list[str], distances: np.ndarray, batch: int = 4, threshold: float | dict | None = None) -> tuple[str, dict, float]:
    """The write-up's rule on precomputed distances: (label, {class: fraction of the
    batch}, best distance). Ties in distance keep template order (stable sort).

    `threshold`: a best distance above it answers "unknown"; a dict {class: value} takes the
    value of the closest template's class. Templates of class "unknown" (negatives) vote
    like any class, so a batch led by them answers "unknown" too."""
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
    limit = threshold.get(top[0]) if isinstance(threshold, dict) else threshold
    if limit and not best <= limit:  # also unknown for a NaN/inf best distance
        label = UNKNOWN
    return label, votes, best


def classify(query, templates: Templates, batch: int = 4, band: int | None = 10,
             threshold: float | dict | None = None, normalized: bool = True) -> Answer:
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
    last answer); `batch` and `band` are `classify`'s. `threshold`: None takes the
    templates' calibrated one (none in an uncalibrated or old file: off), a value above 0
    replaces it, 0 or below turns it off. `name` names the templates in the reasons
    `unusable` gives.
    """

    def __init__(self, templates: Templates, window: int = 45, every: int = 5, batch: int = 4, band: int | None = 10,
                 threshold: float | None = None, min_frames: int = 15, name: str = "templates"):
        if len(templates) == 0:
            raise TemplatesError(f"{name}: holds no templates")
        self.templates, self.name, self.kind = templates, name, templates.kind
        self.window, self.every, self.batch, self.band = int(window), int(every), int(batch), band
        self.threshold = templates.threshold if threshold is None else (threshold if threshold > 0 else None)
        self.min_frames = min(int(min_frames), self.window)
        self.size = templates.sequences[0].shape[1]  # features per frame the templates hold
        self.sizes: dict[str, int] = {}  # layout -> features per frame it gives
        self.rate = float(templates.params.get("fps") or 0.0)  # 0: templates of an older file, frames as they come
        self.scale = templates.scale  # the features' weights (standardized templates), or None

    def warm_up(self) -> None:
        """Compile the DTW kernel now rather than on the first query."""
        classify(np.zeros((2, self.size)), self.templates, 1, self.band)

    def new_window(self) -> "DtwWindow":
        return DtwWindow(self)

    def unusable(self, packet) -> str | None:
        """Why the templates cannot use this person (None when usable or no person): a
        layout they cannot use, or no world landmarks for templates of a world kind."""
        from posegraph.pose.features import landmarks_of, world_of

        if not isinstance(packet, (dict, np.ndarray)):
            return None
        found = landmarks_of(packet)
        if found is None:
            return None
        px, layout = found
        if self.kind in WORLD_KINDS:
            if layout == "blazepose33" and world_of(packet) is not None:
                return None
            return (f"templates {self.name!r} of features {self.kind!r} need world landmarks (BlazePose), a person of "
                    f"layout {layout!r} has none: such people get no answer (record 'angles' templates for them)")
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
        from posegraph.pose.features import landmarks_of, world_of

        found = landmarks_of(packet)
        if found is None:
            return None
        px, layout = found
        if self.kind in WORLD_KINDS:
            px = world_of(packet)
            if px is None:
                return None
        px = np.asarray(px)[None]
        with np.errstate(invalid="ignore", divide="ignore"):
            vector = frame_features(px, layout, self.kind)
        if not frame_ok(px, vector, self.kind)[0]:
            return None
        return vector[0] if self.scale is None else vector[0] * self.scale


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
        due = self.add(packet, count)
        if due is None:
            return None
        if due:
            c = self.classifier
            answer = classify(self.query(), c.templates, c.batch, c.band, c.threshold)
            self.answered(answer.label, answer.votes, answer.best)
            count("classified")
        return dict(self.last_answer)

    def add(self, packet, count: Callable[[str], None] = _uncounted) -> bool | None:
        """Add one frame; None before `min_frames`, else whether a query is due now
        (`push` is `add`, then `classify` of `query` and `answered` when one is)."""
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
            return True
        return False

    def answered(self, label: str, votes: dict, best: float) -> None:
        """Keep a query's answer as the votes packet the frames until the next one repeat;
        an "unknown" answer votes for "unknown" alone, so smoothing counts it like a class."""
        votes = {UNKNOWN: 1.0} if label == UNKNOWN else votes
        self.last_answer = {"votes": votes, "label": label, "distance": best}

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
