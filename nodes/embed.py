"""`embed`: pose landmarks -> a feature vector for classifiers (pure functions plus the node).

Three features, chosen with the node's `kind` param:

- `mlkit`: ML Kit's / MediaPipe's pose embedding (the "Pose classification" write-up's
  FullBodyPoseEmbedder): landmarks centred on the hips' midpoint, scaled by the pose size
  (max(2.5 x torso, farthest landmark from the hips' midpoint), measured in x,y only) and
  multiplied by 100, then 23 difference vectors between chosen landmark pairs, (23, 3).
  The KNN classifier (`knn` node) consumes these and the embedding of the left/right
  flipped query (`mirrored`).
- `angles`: joint angles between limb vectors (the DTW write-up's features), in radians,
  for the joints of ANGLE_JOINTS; works on BlazePose-33, COCO-17 and OpenPose-18 input.
- `keypoints`: COCO-17 x,y centred on the hips' midpoint and divided by the torso size,
  flattened to 34 values (the Detectron2 + LSTM write-up's body-normalised keypoints).

Every function accepts leading batch axes: (..., 33, 3) -> (..., 23, 3) and so on, so a
whole CSV of samples is embedded in one call.
"""
from __future__ import annotations

import numpy as np

from posegraph import Node, Param

from . import landmarks as lm
from .per_person import PersonNode, skip_person

_B = lm.BLAZEPOSE33
_L_HIP, _R_HIP = lm.index("left_hip"), lm.index("right_hip")
_L_SHOULDER, _R_SHOULDER = lm.index("left_shoulder"), lm.index("right_shoulder")
_HIPS_MID, _SHOULDERS_MID = 33, 34  # virtual landmarks appended after the 33 real ones

TORSO_SIZE_MULTIPLIER = 2.5

# (from, to) pairs of the embedding, in the write-up's order; each vector is to - from.
# The hip->wrist pairs appear twice in the write-up ("four joints" and "five joints"); kept,
# so the embedding has the write-up's 23 rows and the bundled samples' distances match.
MLKIT_PAIRS: tuple[tuple[str, str], ...] = (
    ("hips_mid", "shoulders_mid"),
    # one joint
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("right_hip", "right_knee"),
    ("left_knee", "left_ankle"), ("right_knee", "right_ankle"),
    # two joints
    ("left_shoulder", "left_wrist"), ("right_shoulder", "right_wrist"),
    ("left_hip", "left_ankle"), ("right_hip", "right_ankle"),
    # four joints
    ("left_hip", "left_wrist"), ("right_hip", "right_wrist"),
    # five joints
    ("left_shoulder", "left_ankle"), ("right_shoulder", "right_ankle"),
    ("left_hip", "left_wrist"), ("right_hip", "right_wrist"),
    # cross body
    ("left_elbow", "right_elbow"), ("left_knee", "right_knee"),
    ("left_wrist", "right_wrist"), ("left_ankle", "right_ankle"),
)


def _ext_index(name: str) -> int:
    virtual = {"hips_mid": _HIPS_MID, "shoulders_mid": _SHOULDERS_MID}
    return virtual[name] if name in virtual else lm.index(name)


_FROM = np.array([_ext_index(a) for a, _ in MLKIT_PAIRS], dtype=np.intp)
_TO = np.array([_ext_index(b) for _, b in MLKIT_PAIRS], dtype=np.intp)


def mlkit_normalize(landmarks: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) pixel landmarks -> (..., 33, 3) hip-centred, pose-size-normalised x 100.

    Why 2D for the size: z from BlazePose is noisy and on another scale, so the write-up
    measures the torso and the farthest landmark in the image plane only.
    """
    points = np.asarray(landmarks, dtype=np.float64)[..., :3]
    if points.shape[-2] != 33:
        raise ValueError(f"the ML Kit embedding needs 33 BlazePose landmarks, got {points.shape[-2]}")
    center = (points[..., _L_HIP, :] + points[..., _R_HIP, :]) * 0.5
    points = points - center[..., None, :]
    shoulders = (points[..., _L_SHOULDER, :2] + points[..., _R_SHOULDER, :2]) * 0.5
    hips = (points[..., _L_HIP, :2] + points[..., _R_HIP, :2]) * 0.5  # ~0 after centring, as in the write-up
    torso = np.linalg.norm(shoulders - hips, axis=-1)
    farthest = np.linalg.norm(points[..., :2] - hips[..., None, :], axis=-1).max(axis=-1)
    size = np.maximum(torso * TORSO_SIZE_MULTIPLIER, farthest)
    size = np.where(size > 0, size, 1.0)  # a degenerate pose (all points equal) stays all zeros
    points /= size[..., None, None]
    points *= 100.0
    return points


_COCO_IN_BLAZEPOSE = lm.indices(lm.COCO_NAMES, lm.BLAZEPOSE33)
_L_HIP_C, _R_HIP_C = lm.index("left_hip", lm.COCO17), lm.index("right_hip", lm.COCO17)


def coco_as_blazepose(px: np.ndarray) -> np.ndarray:
    """COCO-17 (x, y, ...) -> 33 x 3 BlazePose-ordered points with depth 0, for the ML Kit
    embedding. Its 23 distances use only shoulders, elbows, wrists, hips, knees and ankles,
    which COCO-17 has; the 16 points it lacks (hands, feet, face details) are put on the
    hip centre, so they change neither the distances nor the pose size."""
    coco = np.asarray(px, dtype=np.float64)[:, :2]
    points = np.zeros((33, 3))
    points[:, :2] = (coco[_L_HIP_C] + coco[_R_HIP_C]) * 0.5
    points[_COCO_IN_BLAZEPOSE, :2] = coco
    return points


def mlkit_embedding(landmarks: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) pixel landmarks (x, y, z * width) -> (..., 23, 3) ML Kit embedding (float64)."""
    points = mlkit_normalize(landmarks)
    hips = (points[..., _L_HIP, :] + points[..., _R_HIP, :]) * 0.5
    shoulders = (points[..., _L_SHOULDER, :] + points[..., _R_SHOULDER, :]) * 0.5
    ext = np.concatenate([points, hips[..., None, :], shoulders[..., None, :]], axis=-2)
    return ext[..., _TO, :] - ext[..., _FROM, :]


FLIP_X = np.array([-1.0, 1.0, 1.0])


def mlkit_embeddings(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, mirrored): the second is the embedding of `landmarks * [-1, 1, 1]`,
    the write-up's flipped query, so a KNN also matches a pose done facing the other way."""
    points = np.asarray(landmarks, dtype=np.float64)[..., :3]
    return mlkit_embedding(points), mlkit_embedding(points * FLIP_X)


# ----- joint angles ----------------------------------------------------------------------
# (joint, a, vertex, c): the angle at `vertex` between vertex->a and vertex->c. Names are
# COCO-17's plus the virtual "hips_mid" and "shoulders_mid", so every layout has them.
ANGLE_JOINTS: tuple[tuple[str, str, str, str], ...] = (
    ("left_elbow", "left_shoulder", "left_elbow", "left_wrist"),
    ("right_elbow", "right_shoulder", "right_elbow", "right_wrist"),
    ("left_shoulder", "left_elbow", "left_shoulder", "left_hip"),
    ("right_shoulder", "right_elbow", "right_shoulder", "right_hip"),
    ("left_hip", "left_shoulder", "left_hip", "left_knee"),
    ("right_hip", "right_shoulder", "right_hip", "right_knee"),
    ("left_knee", "left_hip", "left_knee", "left_ankle"),
    ("right_knee", "right_hip", "right_knee", "right_ankle"),
    ("neck", "hips_mid", "shoulders_mid", "nose"),
)
ANGLE_NAMES = tuple(j[0] for j in ANGLE_JOINTS)


def _coco_ext_index(name: str) -> int:
    return {"hips_mid": 17, "shoulders_mid": 18}[name] if name.endswith("_mid") else lm.index(name, lm.COCO17)


_ANG_A, _ANG_V, _ANG_C = (np.array([_coco_ext_index(j[k]) for j in ANGLE_JOINTS], dtype=np.intp) for k in (1, 2, 3))
_C_LHIP, _C_RHIP = lm.index("left_hip", lm.COCO17), lm.index("right_hip", lm.COCO17)
_C_LSH, _C_RSH = lm.index("left_shoulder", lm.COCO17), lm.index("right_shoulder", lm.COCO17)


def _coco_with_mids(points: np.ndarray, layout: str | None, dims: int) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    layout = layout or lm.layout_of(np.moveaxis(points, -2, 0))
    coco = np.moveaxis(lm.to_coco(np.moveaxis(points, -2, 0), layout), 0, -2)[..., :dims]
    hips = (coco[..., _C_LHIP, :] + coco[..., _C_RHIP, :]) * 0.5
    shoulders = (coco[..., _C_LSH, :] + coco[..., _C_RSH, :]) * 0.5
    return np.concatenate([coco, hips[..., None, :], shoulders[..., None, :]], axis=-2)


def angle_between(u: np.ndarray, v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Angle in radians between vectors on the last axis; 0 where either has zero length
    (a collapsed limb carries no direction, and NaN would poison a classifier)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    norms = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    ok = norms > eps
    cos = np.einsum("...i,...i->...", u, v) / np.where(ok, norms, 1.0)
    return np.where(ok, np.arccos(np.clip(cos, -1.0, 1.0)), 0.0)


def joint_angles(points: np.ndarray, layout: str | None = None, degrees: bool = False, dims: int = 2) -> np.ndarray:
    """(..., n, k) landmarks of any known layout -> (..., 9) angles at ANGLE_JOINTS.

    Radians unless `degrees`. `dims` = 2 uses x,y only (the default: COCO keypoints have
    no depth and BlazePose's z is the noisiest axis); 3 uses x,y,z when present.
    """
    ext = _coco_with_mids(points, layout, dims)
    angles = angle_between(ext[..., _ANG_A, :] - ext[..., _ANG_V, :], ext[..., _ANG_C, :] - ext[..., _ANG_V, :])
    return np.degrees(angles) if degrees else angles


def normalized_keypoints(points: np.ndarray, layout: str | None = None) -> np.ndarray:
    """(..., n, k) landmarks -> (..., 34): COCO-17 x,y minus the hips' midpoint, divided by
    the torso size (hips' midpoint to shoulders' midpoint), flattened x0, y0, x1, y1...

    Why torso: it is the body's most rigid length, so the result does not depend on where
    the person stands or how far from the camera. A zero torso falls back to the farthest
    keypoint's distance (then to 1), so the output is always finite.
    """
    ext = _coco_with_mids(points, layout, 2)
    hips, shoulders = ext[..., 17, :], ext[..., 18, :]
    centred = ext[..., :17, :] - hips[..., None, :]
    torso = np.linalg.norm(shoulders - hips, axis=-1)
    farthest = np.linalg.norm(centred, axis=-1).max(axis=-1)
    scale = np.where(torso > 1e-9, torso, np.where(farthest > 1e-9, farthest, 1.0))
    out = centred / scale[..., None, None]
    return out.reshape(*out.shape[:-2], 34)


# ----- the node --------------------------------------------------------------------------
def landmarks_of(packet) -> tuple[np.ndarray, str] | None:
    """(pixel landmarks, layout) of a landmarks packet (a dict, or a bare (n, k) array)."""
    if packet is None:
        return None
    if isinstance(packet, np.ndarray):
        return packet, lm.layout_of(packet)
    px = packet.get("px")
    if px is None:
        return None
    return px, packet.get("layout") or lm.layout_of(px)


class Embed(PersonNode, Node):
    """Landmarks -> features (see the module doc); stateless, so it can be replicated.

    Per person (nodes/people.py): a multi-person landmarks packet gives a multi-person
    features packet with the same ids; one person (no "ids") works exactly as before.

    Layouts: `angles` and `keypoints` work on every layout (BlazePose-33, COCO-17,
    OpenPose-18: they use the COCO-17 points all of them have). `mlkit` works on
    BlazePose-33 and on COCO-17 (its distances use only joints COCO-17 has; depth is 0 and
    the features say `depth: False`, so the KNN ignores z for that person). Another layout
    is skipped on that frame (no features), counted as `wrong_layout` and reported once in
    the log; the upstream layout is not known at open, so this is checked per frame.
    """

    INPUTS = {"landmarks": "landmarks packet (nodes/packets.py), one or several people; None when no person"}
    OUTPUTS = {"features": "{'vector': float32, 'kind': str, mlkit: 'embedding' and 'mirrored' float32 23 x 3}, per person"}
    PARAMS = {"kind": Param("mlkit", choices=("mlkit", "angles", "keypoints"),
                            help="mlkit: ML Kit embedding (for knn, blazepose33 only); angles: joint angles in radians; "
                                 "keypoints: body-normalised COCO x,y (angles and keypoints: any layout)")}
    STATEFUL = False

    def open(self, ctx):
        self.kind = self.params["kind"]

    def process_person(self, inputs, ctx, key):
        found = landmarks_of(inputs["landmarks"])
        if found is None:
            return {}
        px, layout = found
        if self.kind == "mlkit":
            depth = True
            if layout == lm.COCO17 and np.shape(px)[0] == 17:
                px, depth = coco_as_blazepose(px), False  # no depth: the KNN then weighs z 0
            elif layout != lm.BLAZEPOSE33 or np.shape(px)[0] != 33:
                skip_person(self, ctx, "wrong_layout", f"embed kind 'mlkit' needs blazepose33 or coco17 landmarks, got {layout!r}: "
                                                       "such people get no features (kinds angles and keypoints work on any layout)")
                return {}
            embedding, mirrored = mlkit_embeddings(px)
            embedding = embedding.astype(np.float32)
            return {"features": {"vector": embedding.reshape(-1), "kind": "mlkit", "depth": depth,
                                 "embedding": embedding, "mirrored": mirrored.astype(np.float32)}}
        if self.kind == "angles":
            vector = joint_angles(px, layout)
        else:
            vector = normalized_keypoints(px, layout)
        return {"features": {"vector": vector.astype(np.float32), "kind": self.kind}}
