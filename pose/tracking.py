"""Person ids that stay the same from frame to frame: `PeopleTracker`.

A library (no Node). Each stream's posegraph.pose.estimator.PoseStream keeps one and calls
`update` with the people of each frame; it returns one id per person. Ids are ints from 1 up,
never reused (0 is the single-person path's id, see posegraph/pose/people.py).

Association, per frame: a cost for every (tracked person, found person) pair,

    cost = iou_weight * (1 - IoU of the boxes) + (1 - iou_weight) * min(distance / max_distance, 1)

where `distance` is the mean distance between the keypoints both scored >= keypoint_threshold
(the box centres when fewer than 3 such pairs), in person sizes (a box's size is the geometric
mean of its sides; the two boxes' sizes are averaged the same way). The tracked person is
first moved by its velocity (the smoothed mean shift of its confident keypoints, pixels per
frame, capped at max_speed sizes) times the frames since it was last seen. Pairs farther
apart than `max_distance` sizes (the gate grows by `miss_growth` per missed frame) are
impossible. The rest is an assignment problem (scipy.optimize.linear_sum_assignment) in
which leaving a track or a person unmatched costs max_cost / 2 each, so a pair is made only
when it costs less than max_cost: a far, costly pair is never forced just to fill the matrix.

A found person no track takes starts a new id. A tracked person nobody matches keeps its id
through up to `max_missed` missed frames (matchable again on any of them) and is retired
after that. A track is tentative until it was found `min_hits` frames in a row (the people
of a stream's first frame are confirmed at once): a tentative track missed once is retired,
as in SORT and ByteTrack. A detector that finds one person twice for a frame (PoseNet does
on a half-hidden person) so leaves no stray track behind that takes that person's next
detection away from their own id a few frames later.

`hints`: a backend that follows people itself (MultiBlazePose's ROI `track_id`) passes its
own id; a pair whose hint equals the one the track had last frame costs `hint_weight` times
as much (the backend's continuity wins ties, the gate still applies). When the backend loses
someone and its detector re-finds them under a new id of its own, geometry alone matches
them back to their old id here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from posegraph.pose.backends.blazepose_multi import box_iou

IMPOSSIBLE = 1e6


@dataclass
class Track:
    """One tracked person: its id, last box (x0, y0, x1, y1) and keypoints (n, 3) x, y, score,
    velocity (px/frame), frames missed since last seen, the backend's last id for it (hint)."""
    track_id: int
    box: np.ndarray
    keypoints: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    missed: int = 0
    hint: object = None
    hits: int = 1
    confirmed: bool = False

    def predicted(self) -> tuple[np.ndarray, np.ndarray]:
        """(box, keypoints) moved by the velocity over the frames since last seen + this one."""
        shift = self.velocity * (self.missed + 1)
        box = self.box + np.concatenate([shift, shift])
        kps = self.keypoints.copy()
        kps[:, :2] += shift
        return box, kps


def _size(box) -> float:
    return float(np.sqrt(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0)))


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def as_keypoints(points) -> np.ndarray:
    """(n, 2) or (n, >=3) points -> float64 (n, 3) x, y, score (the last column; 1 when (n, 2))."""
    points = np.asarray(points, np.float64)
    out = np.ones((len(points), 3))
    out[:, :2] = points[:, :2]
    if points.shape[1] >= 3:
        out[:, 2] = points[:, -1]  # (n, 3) score, (n, 4) BlazePose visibility
    return out


class PeopleTracker:
    """Stable ids for the people of consecutive frames of one stream (see the module doc).

    max_missed: frames an id is kept while nobody matches it; iou_weight: share of the box
    IoU in the cost (the rest is the keypoint distance); max_distance: gate, in person sizes;
    miss_growth: the gate grows by this share per missed frame; keypoint_threshold: keypoints
    scoring below it are left out of the distance; hint_weight: cost factor when the backend's
    own id agrees; velocity_smoothing: weight of the old velocity in its running mean.
    """

    def __init__(self, max_missed: int = 15, iou_weight: float = 0.5, max_distance: float = 1.0,
                 max_cost: float = 0.8, miss_growth: float = 0.05, keypoint_threshold: float = 0.3,
                 hint_weight: float = 0.1, velocity_smoothing: float = 0.7, max_speed: float = 0.1,
                 min_hits: int = 3):
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed!r}")
        if not 0.0 <= iou_weight <= 1.0:
            raise ValueError(f"iou_weight must be in [0, 1], got {iou_weight!r}")
        self.max_missed = int(max_missed)
        self.iou_weight = float(iou_weight)
        self.max_distance = float(max_distance)
        self.miss_growth = float(miss_growth)
        self.keypoint_threshold = float(keypoint_threshold)
        self.hint_weight = float(hint_weight)
        self.velocity_smoothing = float(velocity_smoothing)
        self.max_cost = float(max_cost)
        self.max_speed = float(max_speed)
        if min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {min_hits!r}")
        self.min_hits = int(min_hits)
        self.reset()

    def reset(self) -> None:
        self.tracks: list[Track] = []
        self.next_id = 1
        self.frames = 0

    @property
    def ids(self) -> list[int]:
        """Ids currently kept (seen this frame or missed for at most max_missed frames)."""
        return [t.track_id for t in self.tracks]

    # ----- cost ------------------------------------------------------------------------------
    def _pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
        """Mask of the keypoints confident in both (n, 3) arrays; None when they have different
        layouts (the box centres stand in)."""
        if len(a) != len(b):
            return None
        return (a[:, 2] >= self.keypoint_threshold) & (b[:, 2] >= self.keypoint_threshold)

    def distance(self, track: Track, box, keypoints) -> float:
        """Mean keypoint distance (box centres when < 3 keypoints are confident in both)
        against the track's predicted position, in person sizes (the geometric mean of the
        two boxes' sizes, a box's size being the geometric mean of its sides)."""
        pbox, pkps = track.predicted()
        both = self._pairs(pkps, keypoints)
        if both is not None and both.sum() >= 3:
            d = float(np.linalg.norm(pkps[both, :2] - keypoints[both, :2], axis=1).mean())
        else:
            d = float(np.linalg.norm(_centre(pbox) - _centre(box)))
        return d / np.sqrt(_size(pbox) * _size(box))

    def cost_matrix(self, boxes, keypoints, hints) -> np.ndarray:
        """Tracks x people; IMPOSSIBLE where the gate rules a pair out."""
        cost = np.full((len(self.tracks), len(boxes)), IMPOSSIBLE)
        for i, track in enumerate(self.tracks):
            pbox = track.predicted()[0]
            gate = self.max_distance * (1.0 + self.miss_growth * track.missed)
            for j, (box, kps, hint) in enumerate(zip(boxes, keypoints, hints)):
                d = self.distance(track, box, kps)
                if d > gate:
                    continue
                near = min(d / self.max_distance, 1.0)
                c = self.iou_weight * (1.0 - box_iou(pbox, box)) + (1.0 - self.iou_weight) * near
                if hint is not None and hint == track.hint:
                    c *= self.hint_weight
                cost[i, j] = c
        return cost

    def assign(self, cost: np.ndarray) -> list[tuple[int, int]]:
        """(track, person) pairs of least total cost, where leaving a track or a person
        unmatched costs max_cost / 2 each: a pair is only made when it costs less than the
        two leftovers it replaces (so a far, costly pair is never forced to fill the matrix)."""
        from scipy.optimize import linear_sum_assignment

        t, p = cost.shape
        leftover = self.max_cost / 2
        big = np.full((t + p, p + t), IMPOSSIBLE)
        big[:t, :p] = cost
        big[:t, p:][np.diag_indices(t)] = leftover
        big[t:, :p][np.diag_indices(p)] = leftover
        big[t:, p:] = 0.0
        rows, cols = linear_sum_assignment(big)
        return [(i, j) for i, j in zip(rows, cols) if i < t and j < p and cost[i, j] < self.max_cost]

    # ----- per frame -------------------------------------------------------------------------
    def update(self, boxes, keypoints, hints=None) -> list[int]:
        """The ids of this frame's people, in their order. boxes: (x0, y0, x1, y1) per person;
        keypoints: (n, 2) or (n, 3+) x, y[, ..., score] per person (the same layout for
        everyone); hints: the backend's own id per person, or None."""
        boxes = [np.asarray(b, np.float64).reshape(4) for b in boxes]
        keypoints = [as_keypoints(k) for k in keypoints]
        hints = list(hints) if hints is not None else [None] * len(boxes)
        if not (len(boxes) == len(keypoints) == len(hints)):
            raise ValueError("boxes, keypoints and hints must have one entry per person")
        ids: list[int | None] = [None] * len(boxes)
        matched = set()
        if self.tracks and boxes:
            for i, j in self.assign(self.cost_matrix(boxes, keypoints, hints)):
                self._follow(self.tracks[i], boxes[j], keypoints[j], hints[j])
                ids[j] = self.tracks[i].track_id
                matched.add(i)
        kept = []
        for i, track in enumerate(self.tracks):
            if i not in matched:
                track.missed += 1
                if track.missed > self.max_missed or not track.confirmed:
                    continue  # retired
            kept.append(track)
        for j, box in enumerate(boxes):
            if ids[j] is None:
                track = Track(self.next_id, box, keypoints[j], hint=hints[j],
                              confirmed=self.frames == 0 or self.min_hits <= 1)
                self.next_id += 1
                kept.append(track)
                ids[j] = track.track_id
        self.tracks = kept
        self.frames += 1
        return [int(i) for i in ids]

    def _follow(self, track: Track, box, keypoints, hint) -> None:
        """Move a track to its match; velocity from the mean shift of the keypoints confident
        in both (box centres otherwise), per frame, capped at max_speed sizes per frame."""
        both = self._pairs(track.keypoints, keypoints)
        if both is not None and both.sum() >= 3:
            shift = (keypoints[both, :2] - track.keypoints[both, :2]).mean(axis=0)
        else:
            shift = _centre(box) - _centre(track.box)
        step = shift / (track.missed + 1)
        cap = self.max_speed * np.sqrt(_size(track.box) * _size(box))
        norm = float(np.linalg.norm(step))
        if norm > cap:
            step = step * (cap / norm)
        a = self.velocity_smoothing
        track.velocity = a * track.velocity + (1 - a) * step
        track.box, track.keypoints, track.hint = box, keypoints, hint
        track.missed, track.hits = 0, track.hits + 1
        track.confirmed = track.confirmed or track.hits >= self.min_hits
