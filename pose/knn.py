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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from posegraph.pose.features import FLIP_X, mlkit_embedding

BUNDLED_SAMPLES = "data/mlkit/fitness_pose_samples.csv"
N_COLUMNS = 2 + 33 * 3


class SamplesError(ValueError):
    """A samples CSV that cannot be used; str() is one line naming the file (and line)."""


@dataclass
class Samples:
    """Pose samples of ML Kit's CSV layout: names, class labels, landmarks (N, 33, 3) in pixels."""

    names: list[str]
    classes: list[str]
    landmarks: np.ndarray
    path: str = ""
    lines: list[int] = field(default_factory=list)

    def __len__(self):
        return len(self.names)


def load_samples(path) -> Samples:
    """Read `name,class,x1,y1,z1,...,x33,y33,z33` rows (pixels, z scaled like x).

    Blank lines are skipped; anything else malformed raises SamplesError("file:line: why").
    """
    path = str(path)
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
    """ML Kit's pose classifier over a samples CSV (see the module doc for the method)."""

    def __init__(self, samples_csv, top_n_by_max: int = 30, top_n_by_mean: int = 10, axes_weights=(1.0, 1.0, 0.2)):
        self.samples = samples_csv if isinstance(samples_csv, Samples) else load_samples(samples_csv)
        if top_n_by_max < 1 or top_n_by_mean < 1:
            raise ValueError("top_n_by_max and top_n_by_mean must be at least 1")
        self.top_n_by_max = int(top_n_by_max)
        self.top_n_by_mean = int(top_n_by_mean)
        self.axes_weights = np.asarray(axes_weights, dtype=np.float64)
        if self.axes_weights.shape != (3,):
            raise ValueError("axes_weights needs three values (x, y, z)")
        n = len(self.samples)
        # (N, 69) C-contiguous: each sample's embedding flattened x0, y0, z0, x1...
        self.embeddings = np.ascontiguousarray(mlkit_embedding(self.samples.landmarks).reshape(n, 69))
        self.mirrored = np.ascontiguousarray(mlkit_embedding(self.samples.landmarks * FLIP_X).reshape(n, 69))
        self.class_names = tuple(dict.fromkeys(self.samples.classes))  # first-appearance order
        lookup = {c: i for i, c in enumerate(self.class_names)}
        self.class_ids = np.array([lookup[c] for c in self.samples.classes], dtype=np.intp)
        self._weights = np.tile(self.axes_weights, 23)
        # Stage 1 runs on a transposed copy, one row per coordinate: x rows (23, N) and
        # y then z rows (46, N). Long contiguous rows make numpy's loops and the max over
        # rows fast, and the split lets a flipped query (x negated, y and z equal) share
        # the y, z work with the query, which is a third less work, with identical values.
        coords = self.embeddings.reshape(n, 23, 3)
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

    def __len__(self):
        return len(self.samples)

    # ----- queries --------------------------------------------------------------------------
    def classify(self, landmarks) -> dict[str, int]:
        """33 x 3 (or 33 x 4) pixel landmarks (x, y, z * width) -> {class: votes among the top 10}."""
        points = np.asarray(landmarks, dtype=np.float64)[:, :3]
        return self.classify_embedding(mlkit_embedding(points), mlkit_embedding(points * FLIP_X))

    def classify_features(self, features: dict) -> dict[str, int]:
        """Votes for one person's features packet of `embed` kind mlkit (posegraph/pose/packets.py).

        A person without depth (COCO-17 landmarks: "depth" False) is compared in x and y
        only: the samples' z weighs 0 for them, as their own z is 0.
        """
        if features.get("kind", "mlkit") != "mlkit" or "embedding" not in features:
            raise ValueError(f"knn needs embed's mlkit features, got kind {features.get('kind')!r}")
        classifier = self
        if not features.get("depth", True):
            if self._without_depth is None:
                wx, wy, _ = self.axes_weights
                self._without_depth = KnnClassifier(self.samples, self.top_n_by_max, self.top_n_by_mean,
                                                    axes_weights=(wx, wy, 0.0))
            classifier = self._without_depth
        return classifier.classify_embedding(features["embedding"], features.get("mirrored"))

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
        """Sample indices of the final top_n_by_mean neighbours, nearest first."""
        q, m = self._q, self._m
        q[:] = np.asarray(embedding, dtype=np.float64).reshape(69)
        if mirrored is None:
            np.multiply(q, np.tile(FLIP_X, 23), out=m)
        else:
            m[:] = np.asarray(mirrored, dtype=np.float64).reshape(69)
        n = len(self.samples)
        valid = n - (exclude is not None)
        if valid <= 0:
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
        np.take(self.embeddings, by_max, axis=0, out=near)
        for query, out in ((q, self._mean_q[:k]), (m, self._mean_m[:k])):
            np.subtract(near, query, out=near_diff)
            np.abs(near_diff, out=near_diff)
            np.multiply(near_diff, w, out=near_diff)
            np.mean(near_diff, axis=1, out=out)
        mean = np.minimum(self._mean_q[:k], self._mean_m[:k])
        order = np.lexsort((by_max, mean))  # by mean distance, then sample index
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
