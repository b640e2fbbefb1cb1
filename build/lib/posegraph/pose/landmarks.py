"""Landmark layouts in one place: names, skeletons, conversions and mirror permutations.

Pose estimators disagree on how many keypoints there are and in which order (BlazePose
has 33, COCO 17, OpenPose 18 with a synthetic neck). Features and classifiers index
joints by name through this module, so they work on whichever layout a pose node emits.

Conventions: a landmark array has the landmarks on axis 0 and anything on the trailing
axes ((n, 2), (n, 3), (n, 4) with visibility...). `perm` arrays are "gather" indices:
`converted = points[perm]`.

Custom layouts: a user-trained model may emit any subset of the BlazePose-33 names, in any
order. Its layout string is `"custom:" + ",".join(names)` (`custom_layout(names)`), so the
names travel with every packet and nothing else has to be registered; `names_of`, `index`,
`indices`, `mirror_perm`, `mirror` and `connections_of` read them from the string. Exactly
COCO_NAMES or BLAZEPOSE_NAMES in their order are plain "coco17" / "blazepose33". A count
cannot tell a custom layout apart, so `layout_of` never answers one.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

BLAZEPOSE33 = "blazepose33"
COCO17 = "coco17"
OPENPOSE18 = "openpose18"

BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner", "left_eye", "left_eye_outer",
    "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear",
    "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_pinky", "right_pinky",
    "left_index", "right_index",
    "left_thumb", "right_thumb",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
    "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)

# The same edges as mediapipe.solutions.pose.POSE_CONNECTIONS (index pairs into BLAZEPOSE_NAMES).
BLAZEPOSE_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
)

COCO_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# The COCO keypoint "skeleton" (the dataset lists it 1-based; these are 0-based).
COCO_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

# OpenPose's COCO-18 order (the "neck" is the shoulders' midpoint; r_ = right, l_ = left).
OPENPOSE_NAMES: tuple[str, ...] = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)

OPENPOSE_CONNECTIONS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

NAMES = {BLAZEPOSE33: BLAZEPOSE_NAMES, COCO17: COCO_NAMES, OPENPOSE18: OPENPOSE_NAMES}
CONNECTIONS = {BLAZEPOSE33: BLAZEPOSE_CONNECTIONS, COCO17: COCO_CONNECTIONS, OPENPOSE18: OPENPOSE_CONNECTIONS}
COUNTS = {layout: len(names) for layout, names in NAMES.items()}

_INDEX = {layout: {name: i for i, name in enumerate(names)} for layout, names in NAMES.items()}

CUSTOM_PREFIX = "custom:"
# BlazePose-33 names every custom layout is drawn from (COCO-17's are a subset of them).
CUSTOM_NAMES = frozenset(BLAZEPOSE_NAMES) | frozenset(COCO_NAMES)


def is_custom(layout) -> bool:
    return isinstance(layout, str) and layout.startswith(CUSTOM_PREFIX)


def _check_names(names) -> tuple[str, ...]:
    """`names` as a tuple, or ValueError naming the first bad or repeated name."""
    if isinstance(names, str):
        raise ValueError(f"landmark names must be a sequence of names, not the string {names!r}")
    names = tuple(names)
    if not names:
        raise ValueError("a custom layout needs at least one landmark name")
    seen = set()
    for name in names:
        if not isinstance(name, str) or name not in CUSTOM_NAMES:
            raise ValueError(f"unknown landmark name {name!r}: custom layouts use BlazePose-33 names "
                             f"(posegraph/pose/landmarks.py BLAZEPOSE_NAMES, e.g. 'left_shoulder')")
        if name in seen:
            raise ValueError(f"landmark name {name!r} appears twice in a custom layout")
        seen.add(name)
    return names


def custom_layout(names) -> str:
    """The layout string of a model emitting the landmarks `names` in this order.

    "coco17" / "blazepose33" when `names` are exactly those layouts (so every consumer
    keeps its fast, known path), else "custom:" + ",".join(names). ValueError names the
    first name that is not a BlazePose-33 one, or a repeated one.
    """
    names = _check_names(names)
    if names == COCO_NAMES:
        return COCO17
    if names == BLAZEPOSE_NAMES:
        return BLAZEPOSE33
    return CUSTOM_PREFIX + ",".join(names)


@lru_cache(maxsize=256)
def _custom_names(layout: str) -> tuple[str, ...]:
    return _check_names(layout[len(CUSTOM_PREFIX):].split(","))


def names_of(layout: str) -> tuple[str, ...]:
    """The landmark names of a known or custom layout, in row order (ValueError otherwise)."""
    if layout in NAMES:
        return NAMES[layout]
    if is_custom(layout):
        return _custom_names(layout)
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(NAMES)} or {CUSTOM_PREFIX}name,name,...")


@lru_cache(maxsize=256)
def _custom_index(layout: str) -> dict[str, int]:
    return {name: i for i, name in enumerate(_custom_names(layout))}


def index(name: str, layout: str = BLAZEPOSE33) -> int:
    """Index of a landmark by name in a known or custom layout (KeyError naming the layout
    if the name or layout is unknown; ValueError for a malformed custom layout)."""
    lookup = _custom_index(layout) if is_custom(layout) else _INDEX.get(layout, {})
    try:
        return lookup[name]
    except KeyError:
        raise KeyError(f"no landmark {name!r} in layout {layout!r}") from None


def indices(names, layout: str = BLAZEPOSE33) -> np.ndarray:
    return np.array([index(n, layout) for n in names], dtype=np.intp)


def _openpose_to_common(name: str) -> str:
    if name.startswith("l_"):
        return "left_" + name[2:]
    if name.startswith("r_"):
        return "right_" + name[2:]
    return name


# Gather indices: coco = blazepose[BLAZEPOSE_TO_COCO], coco = openpose[OPENPOSE_TO_COCO].
BLAZEPOSE_TO_COCO = indices(COCO_NAMES, BLAZEPOSE33)
OPENPOSE_TO_COCO = np.array([[_openpose_to_common(n) for n in OPENPOSE_NAMES].index(c) for c in COCO_NAMES], dtype=np.intp)


def _swap_side(name: str) -> str:
    for a, b in (("left", "right"), ("right", "left")):
        if name.startswith(a + "_"):
            return b + name[len(a):]
        if name.endswith("_" + a):
            return name[: -len(a)] + b
    for a, b in (("l_", "r_"), ("r_", "l_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


def _mirror_perm(names) -> np.ndarray:
    lookup = {n: i for i, n in enumerate(names)}
    return np.array([lookup[_swap_side(n)] for n in names], dtype=np.intp)


# mirrored = points[MIRROR[layout]] swaps every left landmark with its right twin.
MIRROR = {layout: _mirror_perm(names) for layout, names in NAMES.items()}


@lru_cache(maxsize=256)
def _custom_mirror(layout: str) -> np.ndarray:
    # a landmark whose twin the model does not emit stays in place (x is still flipped):
    # the best a mirror can do without the other side's point
    lookup = _custom_index(layout)
    perm = np.array([lookup.get(_swap_side(n), i) for i, n in enumerate(_custom_names(layout))], dtype=np.intp)
    perm.setflags(write=False)  # cached and shared
    return perm


def mirror_perm(layout: str) -> np.ndarray:
    """MIRROR[layout] for known and custom layouts (a twinless landmark maps to itself)."""
    if layout in MIRROR:
        return MIRROR[layout]
    if is_custom(layout):
        return _custom_mirror(layout)
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(NAMES)} or {CUSTOM_PREFIX}name,name,...")


@lru_cache(maxsize=256)
def _custom_connections(layout: str) -> tuple[tuple[int, int], ...]:
    lookup = _custom_index(layout)
    pairs = ((BLAZEPOSE_NAMES[a], BLAZEPOSE_NAMES[b]) for a, b in BLAZEPOSE_CONNECTIONS)
    return tuple((lookup[a], lookup[b]) for a, b in pairs if a in lookup and b in lookup)


def connections_of(layout: str) -> tuple[tuple[int, int], ...]:
    """Skeleton edges (index pairs into the layout's rows). A custom layout gets the
    BlazePose edges whose two ends it has: no edge is invented across a missing joint, so
    a drawn line is always a limb the model saw."""
    if layout in CONNECTIONS:
        return CONNECTIONS[layout]
    if is_custom(layout):
        return _custom_connections(layout)
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(NAMES)} or {CUSTOM_PREFIX}name,name,...")


def layout_of(points: np.ndarray) -> str:
    """Guess a layout from the number of landmarks (33, 17 or 18; never a custom one)."""
    n = np.shape(points)[0]
    for layout, count in COUNTS.items():
        if count == n:
            return layout
    raise ValueError(f"{n} landmarks match no known layout (33 blazepose33, 17 coco17, 18 openpose18)")


def blazepose_to_coco(points: np.ndarray) -> np.ndarray:
    """BlazePose-33 (33, ...) -> COCO-17 (17, ...), keeping the trailing axes."""
    points = np.asarray(points)
    if points.shape[0] != 33:
        raise ValueError(f"expected 33 BlazePose landmarks on axis 0, got {points.shape[0]}")
    return points[BLAZEPOSE_TO_COCO]


def openpose_to_coco(points: np.ndarray) -> np.ndarray:
    """OpenPose-18 (18, ...) -> COCO-17 (17, ...): drops the neck, reorders to COCO."""
    points = np.asarray(points)
    if points.shape[0] != 18:
        raise ValueError(f"expected 18 OpenPose landmarks on axis 0, got {points.shape[0]}")
    return points[OPENPOSE_TO_COCO]


def to_coco(points: np.ndarray, layout: str | None = None) -> np.ndarray:
    """Any known layout -> COCO-17 (the common subset every estimator has)."""
    layout = layout or layout_of(points)
    if layout == BLAZEPOSE33:
        return blazepose_to_coco(points)
    if layout == OPENPOSE18:
        return openpose_to_coco(points)
    if layout == COCO17:
        points = np.asarray(points)
        if points.shape[0] != 17:
            raise ValueError(f"expected 17 COCO landmarks on axis 0, got {points.shape[0]}")
        return points
    raise ValueError(f"unknown layout {layout!r}; known: {', '.join(NAMES)}")


def mirror(points: np.ndarray, layout: str | None = None, width: float | None = None) -> np.ndarray:
    """The pose seen in a mirror: left and right landmarks swapped and x flipped.

    x becomes `width - x` for pixel coordinates of an image `width` wide, or `-x` when no
    width is given (coordinates centred on the body). Other axes are unchanged. Custom
    layouts: a landmark whose twin is absent keeps its row (see `mirror_perm`).
    """
    points = np.asarray(points)
    points = points.astype(np.result_type(points.dtype, np.float32))
    layout = layout or layout_of(points)
    out = points[mirror_perm(layout)]
    out[:, 0] = (width - out[:, 0]) if width is not None else -out[:, 0]
    return out
