"""The person crop a custom keypoint model sees, shared by training and running.

Why one module: a coordinate-regression model only works when it is run on crops made
exactly like those it was trained on. Training (posegraph/pose/training/keypoint_data.py,
posegraph/pose/training/keypoint_model.py) and the `custom` pose backend
(posegraph/pose/backends/custom.py) both call
these functions, so the two can never drift apart.

A crop is a `Roi` (posegraph/pose/backends/blazepose_multi.py): centre, side and rotation in image pixels.
Two ways to get one:
- `detector`: the BlazePose person detector's ROI, the one MediaPipe's landmark model gets
  (centred on the hips, side 2.5 x hip-to-scale-point distance, rotated so the body stands
  upright); several people give several crops;
- `frame`: the whole frame letterboxed into a centred square (one crop, rotation 0).
Keypoints are regressed in crop units: (0, 0) the crop's top-left corner, (1, 1) its
bottom-right, whatever the input size.
"""
from __future__ import annotations

import math

import numpy as np
from posegraph.pose.backends.blazepose_multi import Roi, _inverse_map

CROP_MODES = ("detector", "frame")


def frame_roi(height: int, width: int) -> Roi:
    """The whole frame letterboxed into a centred square."""
    return Roi(width / 2.0, height / 2.0, float(max(width, height)), 0.0)


def roi_around(points_px: np.ndarray, scale: float = 1.25) -> Roi:
    """An upright square around some keypoints (their box's long side x scale): the crop of a
    labelled image in which the detector finds nobody."""
    pts = np.asarray(points_px, np.float64)[:, :2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return Roi((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * scale, 0.0)


def crop_matrix(roi: Roi, size: int, zoom: float = 1.0) -> np.ndarray:
    """2x3 matrix for cv2.warpAffine(..., WARP_INVERSE_MAP): crop pixel -> image pixel, for the
    square `roi.side * zoom` around the ROI's centre drawn at size x size."""
    side = roi.side * zoom
    return _inverse_map(roi.cx, roi.cy, side, side, roi.rotation, size)


def crop_image(image: np.ndarray, roi: Roi, size: int, zoom: float = 1.0) -> np.ndarray:
    """The ROI (times zoom) cut from `image` at size x size; pixels past the image's edge repeat
    its border (as MediaPipe's landmark crop does)."""
    import cv2

    return cv2.warpAffine(image, crop_matrix(roi, size, zoom), (size, size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def to_crop(points_px: np.ndarray, roi: Roi, zoom: float = 1.0) -> np.ndarray:
    """Image pixels (n, >=2) -> crop units (n, 2) of the ROI times zoom."""
    pts = np.asarray(points_px, np.float64)[:, :2]
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    dx, dy = pts[:, 0] - roi.cx, pts[:, 1] - roi.cy
    side = roi.side * zoom
    return np.stack([(c * dx + s * dy) / side + 0.5, (-s * dx + c * dy) / side + 0.5], axis=1)


def from_crop(units: np.ndarray, roi: Roi, zoom: float = 1.0) -> np.ndarray:
    """Crop units (n, 2) of the ROI times zoom -> image pixels (n, 2); inverse of to_crop."""
    u = np.asarray(units, np.float64).reshape(-1, 2)
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    side = roi.side * zoom
    dx, dy = (u[:, 0] - 0.5) * side, (u[:, 1] - 0.5) * side
    return np.stack([roi.cx + c * dx - s * dy, roi.cy + s * dx + c * dy], axis=1)


def as_model_input(crop_bgr: np.ndarray, channel_order: str) -> np.ndarray:
    """A BGR crop -> the model's pixel layout: gray (H, W, 1), rgb or bgr (H, W, 3), uint8."""
    import cv2

    if channel_order == "gray":
        return cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)[..., None]
    if channel_order == "rgb":
        return cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB)
    if channel_order == "bgr":
        return crop_bgr
    raise ValueError(f"unknown channel order {channel_order!r} (gray, rgb or bgr)")


def box_overlap(roi: Roi, points_px: np.ndarray) -> float:
    """Share of the points inside the ROI's square, plus how well the square's size fits them:
    picks, among several detections, the person some labels belong to."""
    units = to_crop(points_px, roi)
    inside = float(np.mean(np.all((units >= 0) & (units <= 1), axis=1)))
    pts = np.asarray(points_px, np.float64)[:, :2]
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 1.0)
    fit = min(extent, roi.side) / max(extent, roi.side)
    return inside + 0.5 * fit
