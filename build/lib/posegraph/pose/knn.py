"""`knn`: ML Kit's two-stage k-nearest-neighbours pose classifier, vectorised.

The method (ML Kit's PoseClassifier, MediaPipe's "Pose classification" write-up): each
sample and the query are ML Kit embeddings (23 x 3, posegraph/pose/features.py). For every sample,

  max distance  = min over (query, mirrored query) of max(|sample - q| * axes_weights)
  keep the top_n_by_max (30) samples with the smallest max distance; among them
  mean distance = min over (query, mirrored query) of mean(|sample - q| * axes_weights)
  keep the top_n_by_mean (10) with the smallest mean distance; votes = count per class.

The max distance first throws out samples that are wrong in any single joint, the mean
then ranks the survivors by overall likeness. Axes weights (1, 1, 0.2) trust BlazePose's
depth less than x and y.

Ties (equal distances, e.g. duplicated samples) are broken by sample index (the CSV row
order), in both stages: a stable sort by (distance, index). The write-up's Python sort is
stable too, but in the second stage it keeps the first stage's order among equal mean
distances; the two differ only when two samples have bit-identical mean distances but
different max distances.

Speed: the per-sample Python loop of the write-up costs milliseconds per query; here each
stage is a handful of numpy calls writing into buffers allocated once (fresh N x 69
temporaries would page-fault on every query).

Feature kinds. ML Kit's samples hold pixel landmarks and use the `mlkit` embedding. Pixel
landmarks describe the camera as much as the pose, so samples of a few clips fail on a
camera they never saw; samples of kind `body` hold BlazePose's world landmarks (metres)
instead and use posegraph.pose.features.body_embedding: the same 23 pair vectors, of the
skeleton turned into its body frame (view-invariant about the vertical). The kind, and
what else the classifier needs, is in a JSON sidecar beside the CSV (`SAMPLES.csv.json`):

    {"format": "posegraph-knn-samples", "version": 1,
     "kind": "body",                       # "mlkit" (pixels) or "body" (world metres)
     "axes_weights": [1, 1, 1], "top_n_by_max": 30, "top_n_by_mean": 10,
     "classes": [...],                     # the classes it answers
     "threshold": {...},                   # posegraph.pose.openset.Threshold as a dict
     "class_thresholds": {class: {...}},   # one per class, used for answers of that class
     "calibration": {...},                 # how the thresholds were measured
     "groups": {clip_id: group}, "every": N, "source": "DATA.npz"}

A CSV without a sidecar is ML Kit's layout of pixel landmarks (kind `mlkit`, no threshold):
the bundled fitness_pose_samples.csv loads exactly as before. Sample names made from
sequences are "CLIP_ID#FRAME".

Saying "unknown": `answer` also measures how far the query is from what it matched, the
mean over the final neighbours of their (stage 2) mean distance; above the threshold of
the answer's class the answer is "unknown" and all votes go to it. The thresholds are
measured by `calibrate_samples`: each sample against the samples of its class from OTHER
groups (a person never seen), checked on negatives (samples of other motions).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from posegraph.pose.features import FLIP_X, body_embeddings, mlkit_embedding

BUNDLED_SAMPLES = "data/mlkit/fitness_pose_samples.csv"
N_COLUMNS = 2 + 33 * 3
KINDS = ("mlkit", "body")
UNKNOWN = "unknown"
SIDECAR_FORMAT = "posegraph-knn-samples"
SIDECAR_VERSION = 1
DEFAULT_AXES_WEIGHTS = {"mlkit": (1.0, 1.0, 0.2), "body": (1.0, 1.0, 1.0)}


class SamplesError(ValueError):
    """A samples CSV that cannot be used; str() is one line naming the file (and line)."""


@dataclass
class Samples:
    """Pose samples of ML Kit's CSV layout: names, class labels, landmarks (N, 33, 3): pixels
    for kind mlkit, world metres for kind body; `meta` is the sidecar (empty without one)."""

    names: list[str]
    classes: list[str]
    landmarks: np.ndarray
    path: str = ""
    lines: list[int] = field(default_factory=list)
    kind: str = "mlkit"
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.names)

    def subset(self, keep) -> "Samples":
        """The samples at the indices (or boolean mask) `keep`."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.intp)
        return Samples([self.names[i] for i in index], [self.classes[i] for i in index], self.landmarks[index],
                       self.path, [self.lines[i] for i in index] if self.lines else [], self.kind, self.meta)

    def groups(self) -> list[str]:
        """Who or where each sample was recorded: the sidecar's group of its clip ("CLIP#FRAME"
        names), else its clip."""
        by_clip = self.meta.get("groups") or {}
        clips = [name.rsplit("#", 1)[0] for name in self.names]
        return [by_clip.get(clip, clip) for clip in clips]


def sidecar_path(path) -> Path:
    """Where the JSON sidecar of a samples CSV lives: beside it, `.json` appended."""
    return Path(f"{path}.json")


def load_samples(path) -> Samples:
    """Read `name,class,x1,y1,z1,...,x33,y33,z33` rows (pixels, z scaled like x; world metres
    for kind body) and the sidecar when there is one.

    Blank lines are skipped; anything else malformed raises SamplesError("file:line: why").
    """
    samples = _read_csv(str(path))
    side = sidecar_path(path)
    if side.exists():
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SamplesError(f"{side}: unreadable samples sidecar ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
            raise SamplesError(f"{side}: not a KNN samples sidecar (format {SIDECAR_FORMAT!r})")
        if int(meta.get("version", 0)) > SIDECAR_VERSION:
            raise SamplesError(f"{side}: sidecar version {meta.get('version')} is newer than this code's {SIDECAR_VERSION}")
        if meta.get("kind", "mlkit") not in KINDS:
            raise SamplesError(f"{side}: unknown samples kind {meta.get('kind')!r}; known: {', '.join(KINDS)}")
        samples.kind, samples.meta = meta.get("kind", "mlkit"), meta
    return samples


def save_samples(path, names, classes, landmarks, meta: dict) -> None:
    """Write the CSV (one row per sample, 7 significant digits) and its sidecar, each atomically."""
    from posegraph.pose.training.knn_samples import format_row, write_rows

    rows = [format_row(n, c, p) for n, c, p in zip(names, classes, landmarks)]
    write_rows(Path(path), rows)
    meta = {"format": SIDECAR_FORMAT, "version": SIDECAR_VERSION, **meta}
    write_rows(sidecar_path(path), [json.dumps(meta, indent=1, sort_keys=True)])


def _read_csv(path: str) -> Samples:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise SamplesError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SamplesError(f"{path}: is a directory, not a samples CSV") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"{path}: cannot read: {exc}") from None
    names, classes, rows, lines = [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != N_COLUMNS:
            raise SamplesError(f"{path}:{number}: expected {N_COLUMNS} columns (name, class, 33 x (x, y, z)), got {len(cells)}")
        if not cells[1]:
            raise SamplesError(f"{path}:{number}: empty class name")
        try:
            values = [float(c) for c in cells[2:]]
        except ValueError:
            bad = next(j for j, c in enumerate(cells[2:], start=3) if not _is_float(c))
            raise SamplesError(f"{path}:{number}: column {bad}: {cells[bad - 1]!r} is not a number") from None
        if not all(math.isfinite(v) for v in values):
            bad = next(j for j, v in enumerate(values, start=3) if not math.isfinite(v))
            raise SamplesError(f"{path}:{number}: column {bad}: {cells[bad - 1]!r} is not a finite number")
        names.append(cells[0])
        classes.append(cells[1])
        rows.append(values)
        lines.append(number)
    if not rows:
        raise SamplesError(f"{path}: no samples in the file")
    return Samples(names, classes, np.array(rows, dtype=np.float64).reshape(-1, 33, 3), path, lines)


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def top_classes(votes: dict) -> list[str]:
    """The classes with the highest vote count (several when tied, none for no votes)."""
    if not votes:
        return []
    best = max(votes.values())
    return sorted(c for c, n in votes.items() if n == best)


class KnnClassifier:
    """ML Kit's pose classifier over a samples CSV (see the module doc for the method).

    `axes_weights` None: the sidecar's, else (1, 1, 0.2) for mlkit samples (BlazePose's pixel
    depth is the noisiest axis) and (1, 1, 1) for body samples. `threshold`: None takes the
    sidecar's calibrated thresholds (none: never "unknown"), a value above 0 replaces them,
    0 or below turns them off.
    """

    def __init__(self, samples_csv, top_n_by_max: int = 30, top_n_by_mean: int = 10, axes_weights=None,
                 threshold: float | None = None):
        self.samples = samples_csv if isinstance(samples_csv, Samples) else load_samples(samples_csv)
        if top_n_by_max < 1 or top_n_by_mean < 1:
            raise ValueError("top_n_by_max and top_n_by_mean must be at least 1")
        self.kind = self.samples.kind
        self.top_n_by_max = int(top_n_by_max)
        self.top_n_by_mean = int(top_n_by_mean)
        if axes_weights is None:
            axes_weights = self.samples.meta.get("axes_weights") or DEFAULT_AXES_WEIGHTS[self.kind]
        self.axes_weights = np.asarray(axes_weights, dtype=np.float64)
        if self.axes_weights.shape != (3,):
            raise ValueError("axes_weights needs three values (x, y, z)")
        self.threshold = sample_threshold(self.samples.meta) if threshold is None else (threshold if threshold > 0 else None)
        n = len(self.samples)
        # (N, 69) C-contiguous: each sample's embedding flattened x0, y0, z0, x1...
        if self.kind == "body":
            embeddings, mirrored = body_embeddings(self.samples.landmarks)
            if not (np.isfinite(embeddings).all() and np.isfinite(mirrored).all()):
                raise SamplesError(f"{self.samples.path}: body samples whose world landmarks give no body frame "
                                   "(hips or shoulders on one point)")
            self.embeddings = np.ascontiguousarray(embeddings.reshape(n, 69))
            self.mirrored = np.ascontiguousarray(mirrored.reshape(n, 69))
        else:
            self.embeddings = np.ascontiguousarray(mlkit_embedding(self.samples.landmarks).reshape(n, 69))
            self.mirrored = np.ascontiguousarray(mlkit_embedding(self.samples.landmarks * FLIP_X).reshape(n, 69))
        # per-coordinate weights of standardized body samples (sidecar "weights", `feature_weights`):
        # the classifier works on weighted copies and weighs each query the same way
        found = self.samples.meta.get("weights")
        self.feature_weights = None if found is None else np.asarray(found, dtype=np.float64).reshape(69)
        self._stored = self.embeddings if self.feature_weights is None else \
            np.ascontiguousarray(self.embeddings * self.feature_weights)
        self.class_names = tuple(dict.fromkeys(self.samples.classes))  # first-appearance order
        lookup = {c: i for i, c in enumerate(self.class_names)}
        self.class_ids = np.array([lookup[c] for c in self.samples.classes], dtype=np.intp)
        self._weights = np.tile(self.axes_weights, 23)
        # Stage 1 runs on a transposed copy, one row per coordinate: x rows (23, N) and
        # y then z rows (46, N). Long contiguous rows make numpy's loops and the max over
        # rows fast, and the split lets a flipped query (x negated, y and z equal) share
        # the y, z work with the query, which is a third less work, with identical values.
        coords = self._stored.reshape(n, 23, 3)
        self._ex = np.ascontiguousarray(coords[:, :, 0].T)
        self._eyz = np.ascontiguousarray(np.concatenate([coords[:, :, 1].T, coords[:, :, 2].T]))
        # buffers written by every query: nothing of size N is allocated per call
        k = min(self.top_n_by_max, n)
        self._dx = np.empty((23, n))
        self._dyz = np.empty((46, n))
        self._x_q, self._x_m = np.empty(n), np.empty(n)
        self._yz_q, self._yz_m = np.empty(n), np.empty(n)
        self._dist = np.empty(n)
        self._near = np.empty((k, 69))
        self._near_diff = np.empty((k, 69))
        self._mean_q = np.empty(k)
        self._mean_m = np.empty(k)
        self._q = np.empty(69)
        self._m = np.empty(69)
        self._without_depth: KnnClassifier | None = None  # made for the first person without depth
        self.last_distance = float("nan")  # the last query's neighbour distance (`nearest`)

    def __len__(self):
        return len(self.samples)

    # ----- queries --------------------------------------------------------------------------
    def classify(self, landmarks) -> dict[str, int]:
        """33 x 3 (or 33 x 4) landmarks (pixels, x, y, z * width; world metres for body
        samples) -> {class: votes among the top 10}."""
        points = np.asarray(landmarks, dtype=np.float64)[:, :3]
        if self.kind == "body":
            return self.classify_embedding(*body_embeddings(points))
        return self.classify_embedding(mlkit_embedding(points), mlkit_embedding(points * FLIP_X))

    def embed(self, landmarks) -> tuple[np.ndarray, np.ndarray]:
        """(N, 69) embeddings and mirrored embeddings of (N, 33, >=3) landmarks of the samples' kind."""
        points = np.asarray(landmarks, dtype=np.float64)[..., :3]
        n = points.shape[0]
        if self.kind == "body":
            e, m = body_embeddings(points)
        else:
            e, m = mlkit_embedding(points), mlkit_embedding(points * FLIP_X)
        return e.reshape(n, 69), m.reshape(n, 69)

    def answer(self, features: dict) -> dict:
        """The votes packet for one person's features packet: {"votes", "label", "distance"}.

        "distance" is the neighbour distance (`nearest`); above the threshold of the top
        class (the sidecar's per-class one, or a single value) the answer is "unknown" and
        every vote goes to it: {"unknown": top_n_by_mean}. Otherwise "label" is the class
        with the most votes (ties: the first by name)."""
        votes = self.classify_features(features)
        distance = self.last_distance
        label = next(iter(votes), UNKNOWN)
        limit = self.threshold.get(label) if isinstance(self.threshold, dict) else self.threshold
        if limit and not distance <= limit:
            votes, label = {UNKNOWN: sum(votes.values()) or self.top_n_by_mean}, UNKNOWN
        return {"votes": votes, "label": label, "distance": round(float(distance), 6)}

    def classify_features(self, features: dict) -> dict[str, int]:
        """Votes for one person's features packet of `embed` kind mlkit (posegraph/pose/packets.py).

        A person without depth (COCO-17 landmarks: "depth" False) is compared in x and y
        only: the samples' z weighs 0 for them, as their own z is 0.
        """
        if features.get("kind", "mlkit") != self.kind or "embedding" not in features:
            raise ValueError(f"knn samples of kind {self.kind!r} need embed's {self.kind!r} features, got kind "
                             f"{features.get('kind')!r}")
        classifier = self
        if not features.get("depth", True) and self.kind == "mlkit":
            if self._without_depth is None:
                wx, wy, _ = self.axes_weights
                self._without_depth = KnnClassifier(self.samples, self.top_n_by_max, self.top_n_by_mean,
                                                    axes_weights=(wx, wy, 0.0), threshold=-1)
            classifier = self._without_depth
        votes = classifier.classify_embedding(features["embedding"], features.get("mirrored"))
        self.last_distance = classifier.last_distance
        return votes

    def classify_embedding(self, embedding, mirrored=None, exclude: int | None = None) -> dict[str, int]:
        """Votes for an embedding (23 x 3) and its flipped twin (default: x negated).

        `exclude` leaves one sample out (leave-one-out evaluation of the samples themselves).
        Votes are ordered by count, then class name; classes with no vote are left out.
        """
        nearest = self.nearest(embedding, mirrored, exclude)
        counts = np.bincount(self.class_ids[nearest], minlength=len(self.class_names))
        found = [(self.class_names[i], int(counts[i])) for i in np.flatnonzero(counts)]
        found.sort(key=lambda item: (-item[1], item[0]))
        return dict(found)

    def nearest(self, embedding, mirrored=None, exclude: int | None = None) -> np.ndarray:
        """Sample indices of the final top_n_by_mean neighbours, nearest first; their mean
        (stage 2) distance to the query goes to `last_distance` (the neighbour distance)."""
        q, m = self._q, self._m
        q[:] = np.asarray(embedding, dtype=np.float64).reshape(69)
        if mirrored is None:
            np.multiply(q, np.tile(FLIP_X, 23), out=m)
        else:
            m[:] = np.asarray(mirrored, dtype=np.float64).reshape(69)
        if self.feature_weights is not None:
            q *= self.feature_weights
            m *= self.feature_weights
        n = len(self.samples)
        valid = n - (exclude is not None)
        if valid <= 0:
            self.last_distance = float("inf")
            return np.empty(0, dtype=np.intp)
        # stage 1: max over coordinates of |sample - query| * weight, the smaller of the
        # query's and the mirrored query's; same operations, in the same order, as the
        # write-up's per-sample loop, so the distances are bit for bit the same
        wx, wy, wz = self.axes_weights
        x_q = self._max_abs_diff(self._ex, q[0::3], wx, None, self._dx, self._x_q)
        x_m = self._max_abs_diff(self._ex, m[0::3], wx, None, self._dx, self._x_m)
        q_yz = np.concatenate([q[1::3], q[2::3]])
        m_yz = np.concatenate([m[1::3], m[2::3]])
        yz_q = self._max_abs_diff(self._eyz, q_yz, wy, wz, self._dyz, self._yz_q)
        dist = self._dist
        if np.array_equal(q_yz, m_yz):  # the usual flipped query: only x differs
            np.minimum(x_q, x_m, out=dist)
            np.maximum(dist, yz_q, out=dist)
        else:
            yz_m = self._max_abs_diff(self._eyz, m_yz, wy, wz, self._dyz, self._yz_m)
            np.maximum(x_q, yz_q, out=dist)
            np.maximum(x_m, yz_m, out=x_m)
            np.minimum(dist, x_m, out=dist)
        if exclude is not None:
            dist[exclude] = np.inf
        k = min(self.top_n_by_max, valid)
        by_max = _smallest(dist, k)
        # stage 2: mean of the same differences over the survivors
        near, near_diff, w = self._near[:k], self._near_diff[:k], self._weights
        np.take(self._stored, by_max, axis=0, out=near)
        for query, out in ((q, self._mean_q[:k]), (m, self._mean_m[:k])):
            np.subtract(near, query, out=near_diff)
            np.abs(near_diff, out=near_diff)
            np.multiply(near_diff, w, out=near_diff)
            np.mean(near_diff, axis=1, out=out)
        mean = np.minimum(self._mean_q[:k], self._mean_m[:k])
        order = np.lexsort((by_max, mean))  # by mean distance, then sample index
        self.last_distance = float(mean[order[: self.top_n_by_mean]].mean())
        return by_max[order[: self.top_n_by_mean]]

    @staticmethod
    def _max_abs_diff(rows, values, w_first, w_second, diff, out):
        """out[j] = max_i |rows[i, j] - values[i]| * w, w_first for the first 23 rows and
        w_second for the next 23; a weight of 1 is skipped (multiplying by 1 is exact)."""
        np.subtract(rows, values[:, None], out=diff)
        np.abs(diff, out=diff)
        for part, w in ((diff[:23], w_first), (diff[23:], w_second)):
            if w is not None and w != 1.0 and part.size:
                np.multiply(part, w, out=part)
        return np.max(diff, axis=0, out=out)

    def predict(self, embedding, mirrored=None, exclude: int | None = None) -> str | None:
        """The single class with the most votes, or None when the top is tied."""
        best = top_classes(self.classify_embedding(embedding, mirrored, exclude))
        return best[0] if len(best) == 1 else None


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest values ordered by (value, index): a stable top k.

    argpartition finds the k-th value; everything below it is in, and equal values are
    taken in index order, so ties never depend on the partition's internal order.
    """
    if k >= len(values):
        return np.argsort(values, kind="stable")
    kth = values[np.argpartition(values, k - 1)[k - 1]]
    below = np.flatnonzero(values < kth)
    ties = np.flatnonzero(values == kth)[: k - len(below)]
    chosen = np.concatenate([below, ties])
    return chosen[np.lexsort((chosen, values[chosen]))]


@dataclass
class Outlier:
    """A sample its own classifier puts elsewhere: row index, file name, label, votes."""

    index: int
    name: str
    class_name: str
    votes: dict
    line: int = 0

    @property
    def predicted(self) -> list[str]:
        return top_classes(self.votes)


def find_outliers(classifier: KnnClassifier) -> list[Outlier]:
    """Samples whose own class is not the single class with the most votes.

    The write-up's rule (a tie for the top also makes an outlier), evaluated leave-one-out:
    each sample is classified against all the others, since against itself it would
    always find its own exact copy.
    """
    outliers = []
    samples = classifier.samples
    for i in range(len(samples)):
        votes = classifier.classify_embedding(classifier.embeddings[i], classifier.mirrored[i], exclude=i)
        if top_classes(votes) != [samples.classes[i]]:
            line = samples.lines[i] if samples.lines else 0
            outliers.append(Outlier(i, samples.names[i], samples.classes[i], votes, line))
    return outliers


def leave_one_out_accuracy(classifier: KnnClassifier) -> float:
    """Share of samples whose single top class (against the other samples) is their label."""
    hits = sum(classifier.predict(classifier.embeddings[i], classifier.mirrored[i], exclude=i) == c
               for i, c in enumerate(classifier.samples.classes))
    return hits / len(classifier)


def feature_weights(samples: Samples, classes) -> np.ndarray:
    """(69,) weights for standardized samples: 1 / each embedding coordinate's spread within a
    class (the standard deviation over the samples of each of `classes`, pooled), averaging 1.

    Why: a coordinate that varies a lot within a class (the arms during a squat) says little
    about the class but dominates the distance, so a person who holds the arms otherwise
    is far from every sample of it."""
    probe = KnnClassifier(samples, threshold=-1)
    labels = np.asarray(samples.classes)
    variances = [probe.embeddings[labels == c].var(axis=0) for c in classes if (labels == c).sum() > 1]
    if not variances:
        raise SamplesError("no class with two samples to measure the embedding's spread on")
    spread = np.sqrt(np.mean(variances, axis=0))
    weights = 1.0 / np.maximum(spread, 1e-3 * max(float(spread.max()), 1e-12))
    return np.round(weights / weights.mean(), 8)


# ----- saying "unknown" ------------------------------------------------------------------------
def sample_threshold(meta: dict) -> float | dict | None:
    """The calibrated threshold of a samples sidecar: {class: value} when it holds one per
    class, else one value; None when it holds none (ML Kit's samples)."""
    per_class = meta.get("class_thresholds")
    if per_class:
        return {c: float(t["value"]) for c, t in per_class.items()}
    found = meta.get("threshold")
    return float(found["value"]) if found else None


@dataclass
class KnnCalibration:
    """What `calibrate_samples` found: the overall threshold, one per class, and what they turn away."""

    overall: object               # posegraph.pose.openset.Threshold
    by_class: dict                # class -> Threshold
    negatives: int = 0
    negatives_rejected_per_class: float | None = None
    distances: dict = field(default_factory=dict)  # class (or "negatives") -> measured distances
    margin: float = 1.0           # the thresholds are the `keep` quantile times this

    def store(self, meta: dict, extra: dict | None = None) -> None:
        meta["threshold"] = self.overall.as_dict()
        meta["class_thresholds"] = {c: t.as_dict() for c, t in self.by_class.items()}
        meta["calibration"] = {"negatives": self.negatives, "margin": self.margin,
                               "negatives_rejected_per_class": self.negatives_rejected_per_class, **(extra or {})}

    def limits(self) -> dict:
        return {c: t.value for c, t in self.by_class.items()}


KEEP = 0.9     # the share of held-out known distances the threshold is set at (before the margin)
MARGIN = 1.5   # how far beyond that a group never seen may still be (see calibrate_samples)


def calibrate_samples(samples: Samples, groups: list[str], classes=None, keep: float | None = None, step: int = 1,
                      top_n_by_max: int = 30, top_n_by_mean: int = 10, axes_weights=None,
                      min_per_class: int = 20, margin: float | None = None) -> KnnCalibration:
    """The "unknown" thresholds of `samples` from held-out neighbour distances.

    Known distances: every `step`-th sample of a known class, classified against the
    samples of the same class from OTHER groups only (a person the samples never saw, as a
    live query will be); its neighbour distance (`KnnClassifier.nearest`). Each class gets
    its own threshold, the `keep` quantile (KEEP, 0.9) of its distances times `margin`
    (MARGIN, 1.5), or the overall one with fewer than `min_per_class` distances. Why a
    margin: the groups at hand are few, and a new one is further from all of them than
    they are from each other (left out in turn, 25 groups of people and places: a barbell
    squat among body-weight squats is 1.3 to 1.5 times beyond the others' quantile). Negatives (samples of classes not in `classes`, default all
    but "unknown") are classified against the known samples of other groups and checked
    against the threshold of the class they are answered: the share turned away is
    reported. Samples of class "unknown" are negatives too.
    """
    from posegraph.pose.dtw import margin_threshold  # the same rule as the DTW templates' (numba loads here only)

    keep = KEEP if keep is None else keep
    margin = MARGIN if margin is None else margin
    labels, groups = np.asarray(samples.classes), np.asarray(groups)
    known_classes = sorted(set(classes) if classes else set(labels.tolist()) - {UNKNOWN})
    known = np.isin(labels, known_classes)
    picked = np.zeros(len(labels), bool)
    picked[::max(1, int(step))] = True
    measured: dict[str, list] = {c: [] for c in known_classes}
    negative_answers = []
    for group in sorted(set(groups.tolist())):
        mine, others = groups == group, groups != group
        for c in known_classes:
            queries = np.flatnonzero(mine & picked & (labels == c))
            reference = others & (labels == c)
            if queries.size and reference.any():
                measured[c] += _distances(samples, reference, queries, top_n_by_max, top_n_by_mean, axes_weights)[0]
        queries = np.flatnonzero(mine & picked & ~known)
        reference = others & known
        if queries.size and reference.any():
            distances, answers = _distances(samples, reference, queries, top_n_by_max, top_n_by_mean, axes_weights)
            negative_answers += list(zip(distances, answers))
    known_distances = np.concatenate([np.asarray(v, float) for v in measured.values()]) if measured else np.zeros(0)
    negatives = np.array([d for d, _ in negative_answers], float)
    overall = margin_threshold(known_distances, negatives if negatives.size else None, keep, margin)
    by_class = {c: margin_threshold(measured[c], None, keep, margin) if len(measured[c]) >= min_per_class else overall
                for c in known_classes}
    rejected = [d > by_class[a].value for d, a in negative_answers if a in by_class]
    return KnnCalibration(overall, by_class, len(negative_answers), float(np.mean(rejected)) if rejected else None,
                          {**measured, "negatives": negatives.tolist()}, margin)



def _distances(samples: Samples, reference: np.ndarray, queries: np.ndarray, top_n_by_max, top_n_by_mean,
               axes_weights) -> tuple[list, list]:
    """(neighbour distance, top class) of each sample of `queries` against the samples `reference` (a mask)."""
    classifier = KnnClassifier(samples.subset(reference), top_n_by_max, top_n_by_mean, axes_weights, threshold=-1)
    distances, answers = [], []
    for e, m in zip(*classifier.embed(samples.landmarks[queries])):
        votes = classifier.classify_embedding(e, m)
        distances.append(classifier.last_distance)
        answers.append(next(iter(votes), UNKNOWN))
    return distances, answers
