"""Saying "unknown": a threshold on a distance, set from data and stored with the model.

Every classifier here has a distance that grows as a query gets unlike what it was trained
on: an embedding's distance to the nearest class prototype (LSTM, TCN), the best DTW
distance to a template (DTW), the mean distance to the nearest samples (KNN). A training
command measures that distance on examples of the known classes the model did not fit
(held-out clips, or each clip against the others), keeps `keep` of them below the
threshold (train-tcn / train-lstm: 0.99 of held-out windows; dtw-templates and knn-samples:
0.9 of the distances from other groups, times a margin of 1.5), and reports how many
examples of other motions (negatives, when it has some) the threshold turns away. The threshold and that report go
into the model's files; nodes answer "unknown" above it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

UNKNOWN = "unknown"
DEFAULT_KEEP = 0.95


@dataclass
class Threshold:
    """A calibrated distance threshold and what it was measured on."""

    value: float               # distances above this answer "unknown"
    keep: float                # the share of known examples it was set to keep
    known: int                 # known examples it was measured on
    known_kept: float          # the share of them at or below `value`
    negatives: int = 0         # examples of other motions, when there were any
    negatives_rejected: float | None = None  # the share of them above `value`

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "Threshold":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def calibrate(known: np.ndarray, negatives: np.ndarray | None = None, keep: float = DEFAULT_KEEP) -> Threshold:
    """The threshold that keeps `keep` of the `known` distances, and how it treats `negatives`.

    `known` are distances of held-out examples of the known classes (never ones the model
    was fitted to: those are too close); NaN entries are ignored."""
    known = np.asarray(known, dtype=np.float64)
    known = known[np.isfinite(known)]
    if known.size == 0:
        raise ValueError("no held-out distances of the known classes to set the threshold from")
    if not 0.5 <= keep < 1.0:
        raise ValueError(f"keep must be in [0.5, 1), got {keep}")
    value = float(np.quantile(known, keep))
    threshold = Threshold(value=value, keep=keep, known=int(known.size), known_kept=float(np.mean(known <= value)))
    if negatives is not None:
        negatives = np.asarray(negatives, dtype=np.float64)
        negatives = negatives[np.isfinite(negatives)]
        if negatives.size:
            threshold.negatives = int(negatives.size)
            threshold.negatives_rejected = float(np.mean(negatives > value))
    return threshold
