"""Pose landmarks -> a feature vector for classifiers: what the `embed` kind computes.

Three features, chosen with `embed`'s `kind` param:

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
- `body`: ML Kit's 23 pair vectors, but of BlazePose's *world* landmarks turned into the
  body frame (posegraph.pose.body.body_frame: hips at the origin, the hip line along +x,
  torso lengths). Why: pixel landmarks describe the camera as much as the pose, so a KNN
  trained on a few clips fails on a camera it never saw; the body frame does not change
  when the camera turns about the person. `mirrored` is the mirror image's embedding, as
  for `mlkit`. Only BlazePose gives world landmarks: other layouts raise LayoutError.

`body_motion` (the `dtw` kind's `body` features, per frame) is the 3-D joint angles and
torso inclination of posegraph.pose.body.joint_angles with the wrists' and ankles'
body-frame positions.

`angles` and `keypoints` also take custom layouts (posegraph/pose/landmarks.py: a model emitting a
subset of the BlazePose names) and use the points they have: fewer values, named by
`angle_names(layout)` / `keypoint_names(layout)`; LayoutError when none can be made.

Every function accepts leading batch axes: (..., 33, 3) -> (..., 23, 3) and so on, so a
whole CSV of samples is embedded in one call.
"""
from __future__ import annotations

import numpy as np
from posegraph.pose import body as body3d
from posegraph.pose import landmarks as lm

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
    return pair_vectors(mlkit_normalize(landmarks))


def pair_vectors(points: np.ndarray) -> np.ndarray:
    """(..., 33, 3) normalised points -> (..., 23, 3): the MLKIT_PAIRS difference vectors."""
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


# ----- view-invariant features of world landmarks ----------------------------------------
# the points whose body-frame position `body_motion` adds to the angles: the ends of the
# limbs, which tell a jumping jack's arms from a squat's and a twist's hands from a crunch's
MOTION_POINTS = ("left_wrist", "right_wrist", "left_ankle", "right_ankle")
_MOTION = lm.indices(MOTION_POINTS)
BODY_MOTION_SIZE = len(body3d.ANGLE_NAMES) + 3 * len(MOTION_POINTS)


def world_of(packet) -> np.ndarray | None:
    """One person's world landmarks (33 x >=3, metres) from a landmarks packet; None when the
    packet has none (COCO-17 and custom backends give none)."""
    if not isinstance(packet, dict):
        return None
    world = packet.get("world")
    if world is None:
        return None
    world = np.asarray(world)
    if world.ndim != 2 or world.shape[0] != 33 or world.shape[1] < 3:
        return None
    return world


def body_embedding(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) world landmarks -> (..., 23, 3): the MLKIT_PAIRS vectors of the body frame
    (torso lengths). NaN where the landmarks are."""
    return pair_vectors(body3d.body_frame(world))


def body_embeddings(world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, mirrored): `body_embedding` of the pose and of its mirror image."""
    frame = body3d.body_frame(world)
    return pair_vectors(frame), pair_vectors(body3d.mirror_world(frame))


def body_motion(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) world landmarks -> (..., BODY_MOTION_SIZE): the ten 3-D joint angles and
    the torso's inclination (radians, posegraph.pose.body.joint_angles), then x, y, z of
    MOTION_POINTS in the body frame (torso lengths). NaN where the landmarks are."""
    world = np.asarray(world, dtype=np.float64)
    positions = body3d.body_frame(world)[..., _MOTION, :]
    with np.errstate(invalid="ignore"):
        angles = body3d.joint_angles(world)
    return np.concatenate([angles, positions.reshape(*positions.shape[:-2], -1)], axis=-1)


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


class LayoutError(ValueError):
    """A (custom) layout without the points a feature needs: nodes skip such a person as
    `wrong_layout` instead of stopping, since another person or model may be fine."""


class _Plan:
    """How one layout becomes the points the angle and keypoint features use, worked out
    once per layout: the COCO-17 points it has (COCO order), then the virtual hips_mid and
    shoulders_mid when both of their ends are there ("ext" rows)."""

    def __init__(self, layout: str):
        self.names = lm.names_of(layout)
        if layout in lm.NAMES:  # every known layout has all 17 (lm.to_coco gathers them)
            self.coco, self.gather = lm.COCO_NAMES, None
        else:
            self.coco = tuple(n for n in lm.COCO_NAMES if n in self.names)
            self.gather = np.array([self.names.index(n) for n in self.coco], dtype=np.intp)
        where = {n: i for i, n in enumerate(self.coco)}
        self.mids = tuple((mid, where[a], where[b]) for mid, a, b in (("hips_mid", "left_hip", "right_hip"),
                                                                     ("shoulders_mid", "left_shoulder", "right_shoulder"))
                          if a in where and b in where)
        for mid, _, _ in self.mids:
            where[mid] = len(where)
        self.hips_mid, self.shoulders_mid = where.get("hips_mid"), where.get("shoulders_mid")
        joints = [j for j in ANGLE_JOINTS if all(n in where for n in j[1:])]
        self.angle_names = tuple(j[0] for j in joints)
        self.ang_a, self.ang_v, self.ang_c = (np.array([where[j[k]] for j in joints], dtype=np.intp) for k in (1, 2, 3))
        self.keypoint_names = tuple(f"{n}.{axis}" for n in self.coco for axis in "xy")


_PLANS: dict[str, _Plan] = {}


def _plan(layout: str) -> _Plan:
    plan = _PLANS.get(layout)
    if plan is None:
        if len(_PLANS) >= 256:  # layouts come from packets: keep the cache bounded
            _PLANS.clear()
        plan = _PLANS[layout] = _Plan(layout)
    return plan


def angle_names(layout: str) -> tuple[str, ...]:
    """What each element of `joint_angles(points, layout)` is: the ANGLE_NAMES whose three
    points the layout has (all nine for the known layouts; empty when none)."""
    return _plan(layout).angle_names


def keypoint_names(layout: str) -> tuple[str, ...]:
    """What each element of `normalized_keypoints(points, layout)` is: "name.x", "name.y"
    of the COCO-17 points the layout has, in COCO order (empty when none)."""
    return _plan(layout).keypoint_names


def _coco_with_mids(points: np.ndarray, layout: str | None, dims: int) -> tuple[np.ndarray, _Plan]:
    points = np.asarray(points, dtype=np.float64)
    layout = layout or lm.layout_of(np.moveaxis(points, -2, 0))
    plan = _plan(layout)
    if layout in lm.NAMES:
        coco = np.moveaxis(lm.to_coco(np.moveaxis(points, -2, 0), layout), 0, -2)[..., :dims]
    else:
        if points.shape[-2] != len(plan.names):
            raise ValueError(f"expected {len(plan.names)} landmarks of layout {layout!r} on axis -2, got {points.shape[-2]}")
        coco = points[..., plan.gather, :dims]
    mids = [((coco[..., a, :] + coco[..., b, :]) * 0.5)[..., None, :] for _, a, b in plan.mids]
    return np.concatenate([coco, *mids], axis=-2), plan


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
    A custom layout gives only the angles whose three points it has, in ANGLE_JOINTS
    order (`angle_names(layout)`); LayoutError when it has none.
    """
    ext, plan = _coco_with_mids(points, layout, dims)
    if not plan.angle_names:
        raise LayoutError(f"layout {layout!r} has no joint angle: each needs its three points "
                          f"(e.g. left_shoulder, left_elbow, left_wrist for left_elbow)")
    angles = angle_between(ext[..., plan.ang_a, :] - ext[..., plan.ang_v, :], ext[..., plan.ang_c, :] - ext[..., plan.ang_v, :])
    return np.degrees(angles) if degrees else angles


def normalized_keypoints(points: np.ndarray, layout: str | None = None) -> np.ndarray:
    """(..., n, k) landmarks -> (..., 34): COCO-17 x,y minus the hips' midpoint, divided by
    the torso size (hips' midpoint to shoulders' midpoint), flattened x0, y0, x1, y1...

    Why torso: it is the body's most rigid length, so the result does not depend on where
    the person stands or how far from the camera. A zero torso falls back to the farthest
    keypoint's distance (then to 1), so the output is always finite.

    A custom layout gives the COCO-17 points it has (`keypoint_names(layout)`, 2 values
    each), centred on the hips' midpoint when it has both hips, else on the points' mean,
    and scaled by the torso when it has both hips and shoulders, else by the farthest
    point; LayoutError when it has no COCO-17 point.
    """
    ext, plan = _coco_with_mids(points, layout, 2)
    k = len(plan.coco)
    if not k:
        raise LayoutError(f"layout {layout!r} has none of the COCO-17 keypoints 'keypoints' features are made of")
    centre = ext[..., plan.hips_mid, :] if plan.hips_mid is not None else ext[..., :k, :].mean(axis=-2)
    centred = ext[..., :k, :] - centre[..., None, :]
    if plan.hips_mid is not None and plan.shoulders_mid is not None:
        torso = np.linalg.norm(ext[..., plan.shoulders_mid, :] - ext[..., plan.hips_mid, :], axis=-1)
    else:
        torso = np.zeros(centred.shape[:-2])
    farthest = np.linalg.norm(centred, axis=-1).max(axis=-1)
    scale = np.where(torso > 1e-9, torso, np.where(farthest > 1e-9, farthest, 1.0))
    out = centred / scale[..., None, None]
    return out.reshape(*out.shape[:-2], 2 * k)


# ----- one person's packet ----------------------------------------------------------------
FEATURE_KINDS = ("mlkit", "angles", "keypoints", "body")


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


def features_packet(packet, kind: str) -> dict | None:
    """The features packet (posegraph/pose/packets.py) of one person's landmarks packet;
    None when there is no person. LayoutError when the person's layout cannot give `kind`.

    `mlkit` takes BlazePose-33 and COCO-17 (`coco_as_blazepose`: no depth, so the packet
    says `depth: False` and the KNN weighs z 0 for that person); `angles` and `keypoints`
    take any layout, custom ones giving the shorter vector their points allow; `body`
    needs world landmarks (BlazePose), and gives None when they are not finite.
    """
    found = landmarks_of(packet)
    if found is None:
        return None
    px, layout = found
    if kind == "body":
        world = world_of(packet)
        if world is None:
            raise LayoutError(f"needs world landmarks (BlazePose), layout {layout!r} has none (kinds angles and "
                              "keypoints work on any layout)")
        with np.errstate(invalid="ignore", divide="ignore"):
            embedding, mirrored = body_embeddings(world)
        if not (np.isfinite(embedding).all() and np.isfinite(mirrored).all()):
            return None
        embedding = embedding.astype(np.float32)
        return {"vector": embedding.reshape(-1), "kind": "body", "embedding": embedding,
                "mirrored": mirrored.astype(np.float32)}
    if kind == "mlkit":
        depth = True
        if layout == lm.COCO17 and np.shape(px)[0] == 17:
            px, depth = coco_as_blazepose(px), False
        elif layout != lm.BLAZEPOSE33 or np.shape(px)[0] != 33:
            raise LayoutError(f"needs blazepose33 or coco17 landmarks, got {layout!r} (kinds angles and keypoints "
                              "work on any layout, custom ones included)")
        embedding, mirrored = mlkit_embeddings(px)
        embedding = embedding.astype(np.float32)
        return {"vector": embedding.reshape(-1), "kind": "mlkit", "depth": depth,
                "embedding": embedding, "mirrored": mirrored.astype(np.float32)}
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")
    vector = joint_angles(px, layout) if kind == "angles" else normalized_keypoints(px, layout)
    return {"vector": vector.astype(np.float32), "kind": kind}
