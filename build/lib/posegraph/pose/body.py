"""Pose features that do not depend on where the camera stands.

Why: a squat filmed from the front and from the side are the same motion, but in image
coordinates they are not: seen from the front, a squat's knees and arms move across the
image much like a jumping jack's. Classifiers trained on image coordinates of a few clips
learn the camera, not the exercise.

`body_frame(world)` takes BlazePose's world landmarks (metres, origin between the hips,
axes of the camera: x right, y down, z away) and turns the skeleton about the vertical
axis so the hip line points along +x, then divides by the torso's length. What is left
depends on the body alone, except the vertical, which is kept on purpose: it tells a
plank from standing. A tilted camera (pitch) still shows; training covers it by rotating
skeletons (`rotate`).

For 2-D layouts (COCO-17 backends have no world landmarks) `project` renders a world
skeleton seen from a given yaw and pitch as 2-D keypoints, so a 2-D model can be trained
on every viewpoint of the same recordings (viewpoint augmentation).

Everything works on leading batch axes: (..., 33, >=3).
"""
from __future__ import annotations

import numpy as np

from posegraph.pose import landmarks as lm

LEFT_HIP, RIGHT_HIP = lm.index("left_hip"), lm.index("right_hip")
LEFT_SHOULDER, RIGHT_SHOULDER = lm.index("left_shoulder"), lm.index("right_shoulder")

# the joints the sequence features keep: face, arms, legs (hands' and feet's small points
# add noise, not information, at this scale)
JOINT_NAMES = ("nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
               "left_heel", "right_heel", "left_foot_index", "right_foot_index")
JOINTS = lm.indices(JOINT_NAMES)
MIRROR = lm.mirror_perm(lm.BLAZEPOSE33)

# (name, a, vertex, b): the angle at `vertex` between the limbs to `a` and to `b`, in 3-D
ANGLES = (
    ("left_elbow", "left_shoulder", "left_elbow", "left_wrist"),
    ("right_elbow", "right_shoulder", "right_elbow", "right_wrist"),
    ("left_shoulder", "left_elbow", "left_shoulder", "left_hip"),
    ("right_shoulder", "right_elbow", "right_shoulder", "right_hip"),
    ("left_hip", "left_shoulder", "left_hip", "left_knee"),
    ("right_hip", "right_shoulder", "right_hip", "right_knee"),
    ("left_knee", "left_hip", "left_knee", "left_ankle"),
    ("right_knee", "right_hip", "right_knee", "right_ankle"),
    ("legs_apart", "left_ankle", "hips_mid", "right_ankle"),
    ("arms_apart", "left_wrist", "shoulders_mid", "right_wrist"),
)


def _mid(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return (points[..., a, :] + points[..., b, :]) / 2.0


def torso_length(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) -> (...,) the distance from the hips' midpoint to the shoulders'."""
    xyz = world[..., :3]
    return np.linalg.norm(_mid(xyz, LEFT_SHOULDER, RIGHT_SHOULDER) - _mid(xyz, LEFT_HIP, RIGHT_HIP), axis=-1)


def yaw_of(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) -> (...,) the angle (radians) of the hip line, left to right, about the vertical."""
    hips = world[..., RIGHT_HIP, :3] - world[..., LEFT_HIP, :3]
    return np.arctan2(hips[..., 2], hips[..., 0])


def rotate(xyz: np.ndarray, yaw: np.ndarray | float = 0.0, pitch: np.ndarray | float = 0.0) -> np.ndarray:
    """(..., K, 3) turned by `yaw` about the vertical (y) axis, then by `pitch` about x.

    yaw and pitch are radians, scalars or one per leading index (broadcast over K)."""
    yaw = np.asarray(yaw, dtype=np.float64)[..., None]
    pitch = np.asarray(pitch, dtype=np.float64)[..., None]
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    cy, sy = np.cos(yaw), np.sin(yaw)
    x, z = cy * x + sy * z, -sy * x + cy * z
    cp, sp = np.cos(pitch), np.sin(pitch)
    y, z = cp * y - sp * z, sp * y + cp * z
    return np.stack([x, y, z], axis=-1)


def body_frame(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) world landmarks -> (..., 33, 3): origin at the hips' midpoint, turned
    about the vertical so the hip line is +x, in torso lengths. NaN where the input is."""
    xyz = np.asarray(world, dtype=np.float64)[..., :3]
    centred = xyz - _mid(xyz, LEFT_HIP, RIGHT_HIP)[..., None, :]
    turned = rotate(centred, yaw_of(xyz))
    scale = torso_length(xyz)
    with np.errstate(invalid="ignore", divide="ignore"):
        return turned / np.where(scale > 1e-6, scale, np.nan)[..., None, None]


def mirror_world(world: np.ndarray) -> np.ndarray:
    """The skeleton seen in a mirror: x negated, left and right swapped (any trailing columns kept)."""
    out = np.array(world, dtype=np.float64)[..., MIRROR, :]
    out[..., 0] = -out[..., 0]
    return out


def inclination(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) -> (...,) the torso's angle from upright, radians (0 standing, pi/2 lying)."""
    xyz = world[..., :3]
    up = _mid(xyz, LEFT_SHOULDER, RIGHT_SHOULDER) - _mid(xyz, LEFT_HIP, RIGHT_HIP)
    norm = np.linalg.norm(up, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.arccos(np.clip(-up[..., 1] / norm, -1.0, 1.0))  # y points down


def joint_angles(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) -> (..., len(ANGLES) + 1): the 3-D angles of ANGLES and the torso's
    inclination, radians. Angles do not change when the camera moves."""
    xyz = np.asarray(world, dtype=np.float64)[..., :3]
    named = {"hips_mid": _mid(xyz, LEFT_HIP, RIGHT_HIP), "shoulders_mid": _mid(xyz, LEFT_SHOULDER, RIGHT_SHOULDER)}

    def point(name):
        return named[name] if name in named else xyz[..., lm.index(name), :]

    out = []
    for _, a, vertex, b in ANGLES:
        u, v = point(a) - point(vertex), point(b) - point(vertex)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.sum(u * v, axis=-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
        out.append(np.arccos(np.clip(cos, -1.0, 1.0)))
    out.append(inclination(xyz))
    return np.stack(out, axis=-1)


ANGLE_NAMES = tuple(a[0] for a in ANGLES) + ("torso_inclination",)


def body_features(world: np.ndarray) -> np.ndarray:
    """(..., 33, >=3) -> (..., len(JOINTS) * 3): the kept joints in the body frame, flattened."""
    frame = body_frame(world)[..., JOINTS, :]
    return frame.reshape(*frame.shape[:-2], -1)


def project(world: np.ndarray, yaw: np.ndarray | float = 0.0, pitch: np.ndarray | float = 0.0) -> np.ndarray:
    """(..., 33, >=3) world landmarks -> (..., 33, 2): the skeleton seen by a camera turned
    by `yaw` and `pitch` (orthographic, image axes: x right, y down), in metres."""
    xyz = np.asarray(world, dtype=np.float64)[..., :3]
    return rotate(xyz, yaw, pitch)[..., :2]
