"""The packets that pose-pipeline nodes exchange, in one place.

frame      (capture/frame, render/frame)
           {"image": uint8 H x W x 3 BGR, "pts_ms": float (the source's timestamp),
            "index": int (frame number in the source)}; a bare uint8 array is accepted too
landmarks  (pose/landmarks, one_euro/landmarks), None when no person was found
           {"px": float32 33 x 4 [x_px, y_px, z_px, visibility] (z scaled like x: z * width,
                  the ML Kit convention),
            "norm": float32 33 x 4 [x, y, z, visibility] in MediaPipe's normalised units,
            "world": float32 33 x 4 [x, y, z in metres (hip-centred), visibility],
            "width": int, "height": int, "layout": "blazepose33",
            "pts_ms": float (the frame's source timestamp, when the frame packet had one)}
features   (embed/features), None when no person
           {"vector": float32 (the chosen feature, flattened), "kind": "mlkit"|"angles"|"keypoints",
            and for "mlkit" also "embedding": float32 23 x 3 and "mirrored": float32 23 x 3
            (the embedding of the landmarks mirrored left/right, for the KNN's flipped query)}
votes      (knn/votes), None when no person: {"votes": {class: count of the top 10}}
scores     (smooth/scores), None when no person: {"scores": {class: EMA-smoothed votes}}
reps       (reps/count), never empty: {"reps": {class: repetitions so far}, "class": name,
            "entered": bool}

Several people: any of these (but frame) may be a multi-person packet (posegraph/pose/people.py):
the first person's packet plus "ids", "people_<field>" and "people_meta". embed, knn,
smooth, one_euro, reps, lstm and dtw keep their state per (stream, person id) and answer
for every person (their kinds set KEYS = BY_PERSON, posegraph.pose.people); render draws every person and jsonl writes a
"people" list. COCO-17 landmarks ("layout": "coco17", px 17 x 4, no world) work with
embed's angles and keypoints, lstm's coco_xy and dtw's angles; the BlazePose-only
features (embed mlkit, hence knn; lstm blazepose_xyzv and embed; dtw embed) skip such
people per frame and count `wrong_layout`. A custom keypoint model (pose model custom:PATH)
emits its own keypoints: "coco17" when they are COCO-17's, else "layout":
"custom:<name>,<name>,..." with px k x 4 and "names"; embed's angles and keypoints use the
joints present (posegraph/pose/landmarks.names_of), and a classifier built for another feature size
skips the person (`wrong_layout`).
"""
from __future__ import annotations

import numpy as np


def image_of(value) -> np.ndarray | None:
    """The image of a frame packet, whether it came as a dict or as a bare array."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value
    return value.get("image")
