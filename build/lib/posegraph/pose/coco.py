"""COCO keypoint results from landmarks packets (what the `coco` sink writes).

A COCO keypoint-results file is a JSON list with one entry per detected person per image:

    {"image_id": int, "category_id": 1 (person), "keypoints": [x, y, v] * 17, "score": float}

in COCO-17 order (posegraph.pose.landmarks.COCO_NAMES), x and y in pixels of the image,
the form pycocotools' `COCO.loadRes` and COCOeval take. Whatever layout the pose model
gives is converted by name (posegraph.pose.landmarks): BlazePose-33 through
BLAZEPOSE_TO_COCO, OpenPose-18 without its neck, COCO-17 (MoveNet, PoseNet, COCO-17
custom models) as it is, and a custom layout by the names it has; a COCO keypoint the
layout lacks, or whose coordinates are not finite, is [0, 0, 0]. `v` is the keypoint's
confidence as the model gives it (BlazePose's visibility, MoveNet's and PoseNet's
keypoint score), clipped to 0..1, or 1 when the model gives none (as Detectron2 writes
its results). `score` is the person's score from the model, else the mean of the
keypoints' confidences. Coordinates are the model's own: a point it places outside the
image keeps them. Nothing here knows of the engine.

`ResultsFile` writes one such file per stream: a hidden journal beside it (`.NAME.partial`,
one JSON line per frame, posegraph.pose.records.RecordsFile, so a writer restarted
mid-stream goes on after the last whole frame) until `close`, which writes the list
(atomically) and removes the journal.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from . import landmarks as lm
from .people import split
from .records import RecordsFile

PERSON_CATEGORY = 1
COCO_COUNT = len(lm.COCO_NAMES)


def coco17(points, layout: str | None = None) -> np.ndarray:
    """A person's landmarks (n x [x, y, ...(, confidence)] pixels; layout by name, or
    guessed from n) as a COCO-17 17 x [x, y, v] float64 array (module doc for v).
    ValueError for a layout or count that cannot be converted."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 2:
        raise ValueError(f"landmarks must be n x [x, y, ...], got shape {points.shape}")
    if lm.is_custom(layout):
        names = lm.names_of(layout)
        if len(names) != len(points):
            raise ValueError(f"{len(points)} landmarks for a layout of {len(names)} names")
        where = {name: i for i, name in enumerate(names)}
        rows = [where.get(name) for name in lm.COCO_NAMES]
        picked = np.full((COCO_COUNT, points.shape[1]), np.nan)
        for row, found in enumerate(rows):
            if found is not None:
                picked[row] = points[found]
    else:
        picked = lm.to_coco(points, layout or None)
    out = np.zeros((COCO_COUNT, 3))
    xy = picked[:, :2]
    confidence = picked[:, 3] if picked.shape[1] >= 4 else np.ones(COCO_COUNT)
    usable = np.isfinite(xy).all(axis=1)
    out[usable, :2] = xy[usable]
    v = np.where(np.isfinite(confidence), np.clip(confidence, 0.0, 1.0), 0.0)
    out[usable, 2] = v[usable]
    return out


def _score(person: dict, keypoints: np.ndarray) -> float:
    score = person.get("score")
    try:
        value = float(np.asarray(score, dtype=np.float64).reshape(-1)[0]) if score is not None else math.nan
    except (TypeError, ValueError, IndexError):
        value = math.nan
    if not math.isfinite(value):
        value = float(keypoints[:, 2].mean())
    return round(value, 4)


def frame_results(packet, image_id: int) -> list[dict]:
    """The results entries of one frame: one per person of a landmarks packet (single or
    several people, posegraph.pose.people); [] when nobody is in it."""
    entries = []
    shared_layout = packet.get("layout") if isinstance(packet, dict) else None
    for _, person in split(packet):
        if not isinstance(person, dict) or person.get("px") is None:
            continue
        keypoints = coco17(person["px"], person.get("layout") or shared_layout)
        entries.append({
            "image_id": int(image_id),
            "category_id": PERSON_CATEGORY,
            "keypoints": [round(float(v), 2) if i % 3 != 2 else round(float(v), 4)
                          for i, v in enumerate(keypoints.reshape(-1))],
            "score": _score(person, keypoints),
        })
    return entries


def journal_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.partial")


def write_results(path: str, entries: list[dict]) -> None:
    """Write a results list to `path` at once (a reader never sees half a file)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        json.dump(entries, out, separators=(",", ":"), allow_nan=False)
        out.write("\n")
    os.replace(temporary, path)


def read_journal(path: str) -> list[dict]:
    """Every entry of a journal, in the order its frames were written."""
    entries = []
    with open(path, encoding="utf-8") as journal:
        for line in journal:
            try:
                entries.extend(json.loads(line)["results"])
            except (ValueError, KeyError, TypeError):
                continue  # a half-written last line
    return entries


class ResultsFile:
    """The COCO results file of one stream (module doc): `add` each frame, `close` at the end."""

    def __init__(self, path: str, stream: int, first_seq: int):
        self.path = path
        self.journal = RecordsFile(journal_path(path), stream, first_seq)
        self.written = self.journal.written  # the last seq a predecessor journalled (-1: none)
        self.frames = 0
        self.closed = False

    def add(self, stream: int, seq: int, entries: list[dict]) -> bool:
        """Keep one frame's entries; False when the journal already had that frame."""
        kept = self.journal.write({"stream": stream, "seq": seq, "results": entries})
        self.frames += kept
        return kept

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.journal.close()
        write_results(self.path, read_journal(self.journal.path))
        os.remove(self.journal.path)
