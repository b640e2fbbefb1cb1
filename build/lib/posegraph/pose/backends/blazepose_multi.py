"""Multi-person BlazePose: MediaPipe's two BlazePose TFLite models, run with ai-edge-litert.

A library (no Node). `MultiBlazePose.detect()` finds every person in one image; `track()`
follows people through a video, running the person detector only when needed.

Why not mediapipe's own graph: `mp.solutions.pose` returns one person only (and exists only
in mediapipe <= 0.10.21, Python <= 3.12). The same models (pose_detection.tflite +
pose_landmark_{lite,full,heavy}.tflite, all shipped in the project's models/) are run here
directly, with the pre/post-processing of mediapipe 0.10.21's pose graphs rewritten in
numpy/OpenCV. The constants are the wheel's (not those of older public .pbtxt copies):
detector score >= 0.5, weighted NMS IoU 0.3, ROI from detector keypoints 0/1 scaled 1.25,
heatmap refinement kernel 9 (see REFINE_KERNEL). On Google's pose.jpg this matches
`mp.solutions.pose` to 0.01 px mean, 0.04 px at worst.

Neither mediapipe nor TensorFlow is imported, nor needed: the models are read from models/
and run by ai_edge_litert's Interpreter. posegraph/pose/backends/blazepose_litert.py builds the
single-person tracked path (MediaPipe's pose graph with its landmark smoothing) on these steps.

Coordinates: `px` is [x_px, y_px, z_px, visibility] with z scaled like x (z_px = norm z * width,
the convention of posegraph/pose/packets.py), `norm` is MediaPipe's normalised units, `world` is
metres, hip-centred; see `PersonLandmarks`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from posegraph.pose.backends import blazepose as _shared  # MODELS_DIR read at call time (tests point it elsewhere)
from posegraph.pose.backends.blazepose import (LANDMARK_MODELS, LAYOUT, NUM_LANDMARKS, ModelMissingError,
                                               native_stderr_filtered)

# ----- constants of mediapipe 0.10.21's pose graphs (read from the wheel) -----------------------
DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_ANCHORS = 2254
ANCHOR_STRIDES = (8, 16, 32, 32, 32)  # SsdAnchors: 5 layers, 2 anchors per cell each, fixed size
NMS_IOU = 0.3  # weighted NMS, intersection over union
ROI_SCALE = 1.25
ROI_TARGET_ANGLE = math.pi / 2
# The wheel's graph text says kernel_size 7 for RefineLandmarksFromHeatmapCalculator, but its
# compiled graph refines as the options' default, 9: measured against mp.solutions.pose 0.10.21,
# kernel 9 matches to 0.01 px mean (0.04 max) on pose.jpg, kernel 7 only to 0.15 (1.03 max).
REFINE_KERNEL = 9
REFINE_MIN_CONFIDENCE = 0.5
NUM_RAW_LANDMARKS = 39  # 33 body + 2 auxiliary (33: hip centre, 34: scale point) + 4 unused


# ----- model files -----------------------------------------------------------------------------
DETECTOR_MODEL = "pose_detection.tflite"


def _bundled(name: str) -> Path | None:
    path = Path(_shared.MODELS_DIR) / name
    return path if path.is_file() and path.stat().st_size > 0 else None


def detector_model_path() -> Path:
    """The person detector, from the project's models/ (the mediapipe package is never needed)."""
    path = _bundled(DETECTOR_MODEL)
    if path is None:
        raise ModelMissingError(f"the BlazePose person detector {DETECTOR_MODEL} is missing from {_shared.MODELS_DIR} "
                                f"(it ships with the repository; restore it with git)")
    return path


def landmark_model_path(model_complexity: int) -> Path:
    """The landmark model for 0 (lite), 1 (full) or 2 (heavy), from the project's models/."""
    if model_complexity not in LANDMARK_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    name = LANDMARK_MODELS[model_complexity]
    path = _bundled(name)
    if path is None:
        raise ModelMissingError(f"model_complexity {model_complexity} needs {name}, which is missing from "
                                f"{_shared.MODELS_DIR} (it ships with the repository; restore it with git)")
    return path


class _Model:
    """One TFLite model, its input and its outputs looked up by tensor name."""

    def __init__(self, path: Path, threads: int, outputs: tuple[str, ...]):
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_filtered():  # "Created TensorFlow Lite XNNPACK delegate" noise
            self.interpreter = Interpreter(model_path=str(path), num_threads=int(threads))
            self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        by_name = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        missing = [name for name in outputs if name not in by_name]
        if missing:
            raise ValueError(f"{path.name}: no output tensor named {missing} (has {sorted(by_name)})")
        self.output_index = {name: by_name[name] for name in outputs}

    def __call__(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(index) for name, index in self.output_index.items()}


# ----- detector: anchors, decode, weighted NMS ----------------------------------------------------
def ssd_anchors(input_size: int = DETECTOR_SIZE, strides=ANCHOR_STRIDES) -> np.ndarray:
    """Anchor centres (N x 2, normalised) in the order of SsdAnchorsCalculator: layers with the
    same stride are merged; per group loop y, then x, then 2 anchors per merged layer."""
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)  # aspect ratio 1.0 + the interpolated one, per layer
        fm = math.ceil(input_size / strides[layer])
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres).astype(np.float64)


@dataclass
class Detection:
    """One detector result in normalised coordinates of the image (or of the letterboxed
    square before `remove_letterbox`). box = (xmin, ymin, xmax, ymax); keypoints 4 x 2
    (0: mid-hip, 1: scale point above it, 2/3: unused by the ROI)."""
    score: float
    box: np.ndarray
    keypoints: np.ndarray


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
                      min_score: float = 0.5, input_size: int = DETECTOR_SIZE) -> list[Detection]:
    """TensorsToDetections: x before y (reverse_output_order), offsets relative to the anchor
    centre in input pixels, fixed anchor size 1, sigmoid(clip(logit, +-100)) >= min_score."""
    raw_boxes = np.asarray(raw_boxes, np.float64).reshape(-1, 12)
    logits = np.clip(np.asarray(raw_scores, np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.nonzero(scores >= min_score)[0]
    out = []
    for i in keep:
        r = raw_boxes[i] / input_size
        ax, ay = anchors[i]
        cx, cy, w, h = r[0] + ax, r[1] + ay, r[2], r[3]
        if w < 0 or h < 0:
            continue
        kps = r[4:12].reshape(4, 2) + (ax, ay)
        out.append(Detection(float(scores[i]), np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]), kps))
    return out


def box_iou(a, b) -> float:
    """Intersection over union of two (xmin, ymin, xmax, ymax) boxes; 0 when they do not meet."""
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def weighted_nms(detections: list[Detection], iou_threshold: float = NMS_IOU) -> list[Detection]:
    """mediapipe's WEIGHTED non-max suppression: take the best remaining detection, group every
    remaining one with IoU > threshold against it (itself included), output the score-weighted
    mean box and keypoints with the best score; repeat. Result in descending score order."""
    remaining = sorted(detections, key=lambda d: -d.score)
    out = []
    while remaining:
        best = remaining[0]
        group = [d for d in remaining if box_iou(d.box, best.box) > iou_threshold]
        rest = [d for d in remaining if box_iou(d.box, best.box) <= iou_threshold]
        if not group:  # cannot happen (IoU with itself is 1) unless the box is empty
            group, rest = [best], remaining[1:]
        weights = np.array([d.score for d in group])
        total = weights.sum()
        box = sum(w * d.box for w, d in zip(weights, group)) / total
        kps = sum(w * d.keypoints for w, d in zip(weights, group)) / total
        out.append(Detection(best.score, box, kps))
        remaining = rest
    return out


def remove_letterbox(detection: Detection, pad_x: float, pad_y: float) -> Detection:
    scale = np.array([1 - 2 * pad_x, 1 - 2 * pad_y])
    pad = np.array([pad_x, pad_y])
    box = ((detection.box.reshape(2, 2) - pad) / scale).ravel()
    return Detection(detection.score, box, (detection.keypoints - pad) / scale)


# ----- ROI, crop, landmark decode ---------------------------------------------------------------
@dataclass
class Roi:
    """A square region in image pixels: centre, side, rotation in radians (0 = upright person)."""
    cx: float
    cy: float
    side: float
    rotation: float

    def box(self) -> tuple[float, float, float, float]:
        """The axis-aligned square (rotation ignored), as mediapipe's rect association uses it."""
        h = self.side / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


def normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def roi_from_points(centre, scale_point, scale: float = ROI_SCALE) -> Roi:
    """AlignmentPointsRects + RectTransformation (square_long): centre = the first point, side =
    2 x distance x scale, rotation so that the scale point is straight above the centre."""
    x0, y0 = float(centre[0]), float(centre[1])
    x1, y1 = float(scale_point[0]), float(scale_point[1])
    side = 2.0 * math.hypot(x1 - x0, y1 - y0) * scale
    rotation = normalize_radians(ROI_TARGET_ANGLE - math.atan2(-(y1 - y0), x1 - x0))
    return Roi(x0, y0, side, rotation)


def _inverse_map(cx, cy, side_x, side_y, rotation, size) -> np.ndarray:
    """2x3 matrix taking tensor pixel (u, v) in [0, size]^2 to the image point
    c + R(rotation) . ((u/size - .5) side_x, (v/size - .5) side_y) (for WARP_INVERSE_MAP)."""
    c, s = math.cos(rotation), math.sin(rotation)
    ax, ay = side_x / size, side_y / size
    return np.array([[c * ax, -s * ay, cx - 0.5 * (c * side_x - s * side_y)],
                     [s * ax, c * ay, cy - 0.5 * (s * side_x + c * side_y)]], np.float64)


def warp_roi(image: np.ndarray, cx: float, cy: float, width: float, height: float, rotation: float, size: int,
             border: int) -> np.ndarray:
    """The rotated rectangle (centre, width x height px, rotation rad) of `image` resampled onto
    a size x size crop, bilinear, as MediaPipe's ImageToTensorCalculator (OpenCV converter) does
    it: the rectangle's float32 corners (cv2.boxPoints) -> getPerspectiveTransform onto the
    crop's corners -> warpPerspective. Same geometry as `_inverse_map` + warpAffine, but the
    same fixed-point sample positions as MediaPipe: it brings the landmarks from 0.04 px to
    0.01 px of mp.solutions.pose on pose.jpg, and keeps tracked ROIs from drifting apart."""
    import cv2

    f32 = np.float32
    rect = ((float(f32(cx)), float(f32(cy))), (float(f32(width)), float(f32(height))),
            float(f32(rotation * 180.0 / math.pi)))
    corners = cv2.boxPoints(rect).astype(np.float32)
    target = np.float32([[0, size], [0, 0], [size, 0], [size, size]])  # boxPoints' order: bottom-left first
    matrix = cv2.getPerspectiveTransform(corners, target)
    return cv2.warpPerspective(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = REFINE_KERNEL,
                        min_confidence: float = REFINE_MIN_CONFIDENCE) -> np.ndarray:
    """RefineLandmarksFromHeatmap: per landmark, the sigmoid-weighted mean cell of the kernel
    window around int(x*64), int(y*64). int() truncation and no +0.5 cell centre, as mediapipe."""
    hm_h, hm_w = heatmap.shape[:2]
    out = xy.copy()
    offset = (kernel - 1) // 2
    for k in range(xy.shape[0]):
        col, row = int(xy[k, 0] * hm_w), int(xy[k, 1] * hm_h)
        if col < 0 or col >= hm_w or row < 0 or row >= hm_h:
            continue
        r0, r1 = max(0, row - offset), min(hm_h, row + offset + 1)
        c0, c1 = max(0, col - offset), min(hm_w, col + offset + 1)
        w = 1.0 / (1.0 + np.exp(-heatmap[r0:r1, c0:c1, k].astype(np.float64)))
        total = w.sum()
        if w.max() >= min_confidence and total > 0:
            out[k, 0] = (w.sum(axis=0) @ np.arange(c0, c1)) / hm_w / total
            out[k, 1] = (w.sum(axis=1) @ np.arange(r0, r1)) / hm_h / total
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@dataclass
class PersonLandmarks:
    """One person. px: float32 33 x 4 [x_px, y_px, z_px (= norm z * width, scaled like x), visibility];
    norm: float32 33 x 4 MediaPipe normalised [x/W, y/H, z * side / W, visibility];
    world: float32 33 x 4 [x, y, z metres hip-centred, visibility];
    score: the detector score when this frame's ROI came from the detector, else the presence;
    presence: the landmark model's pose flag; box: (x0, y0, x1, y1) px, min/max of the 33
    landmarks (not clipped to the image); roi: the crop used; next_roi: the ROI for the next
    frame from aux landmarks 33/34; track_id: stable across `track()` calls; aux: float64 2 x 4,
    the raw aux landmarks 33 (hip centre) and 34 (scale point) as px rows; landmark_presence:
    float32 (33,), each landmark's presence probability (MediaPipe's `presence`)."""
    px: np.ndarray
    norm: np.ndarray
    world: np.ndarray
    score: float
    presence: float
    box: tuple[float, float, float, float]
    roi: Roi
    next_roi: Roi
    width: int
    height: int
    detection_score: float | None = None
    track_id: int = -1
    source: str = "detection"  # or "tracking"
    aux: np.ndarray | None = None
    landmark_presence: np.ndarray | None = None

    def packet(self) -> dict:
        """This person as a landmarks packet (posegraph/pose/packets.py)."""
        return {"px": self.px, "norm": self.norm, "world": self.world, "width": self.width,
                "height": self.height, "layout": LAYOUT}


@dataclass
class _Track:
    roi: Roi
    track_id: int


@dataclass
class Timing:
    """Milliseconds of the last call: detector (None when it did not run), landmarks per person."""
    detector_ms: float | None = None
    landmark_ms: list = field(default_factory=list)


class MultiBlazePose:
    """Every person in a BGR image: pose detector -> one ROI per person -> landmark model.

    max_people: most people returned (the detector's best first);
    min_detection_confidence: detector score threshold (mediapipe's default 0.5);
    min_presence: the landmark model's pose flag threshold (mediapipe's min_tracking_confidence);
    model_complexity: 0 lite, 1 full, 2 heavy (all in models/);
    detect_every: in `track()`, rerun the detector at least every this many frames even when
        max_people are tracked (0: only when fewer are tracked or one was lost);
    association_iou: in `track()`, a fresh detection whose ROI overlaps a tracked ROI by more
        than this (axis-aligned IoU) is the same person and is dropped;
    threads: TFLite threads per model.
    """

    def __init__(self, max_people: int = 5, min_detection_confidence: float = 0.5, min_presence: float = 0.5,
                 model_complexity: int = 1, detect_every: int = 30, threads: int = 1,
                 association_iou: float = 0.5):
        import cv2

        if max_people < 1:
            raise ValueError(f"max_people must be >= 1, got {max_people!r}")
        self._cv2 = cv2
        self.max_people = int(max_people)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_presence = float(min_presence)
        self.detect_every = int(detect_every)
        self.association_iou = float(association_iou)
        self.model_complexity = int(model_complexity)
        # the landmark model first: when files are missing, the error names the param that picks it
        self.landmarker = _Model(landmark_model_path(self.model_complexity), threads,
                                 ("Identity", "Identity_1", "Identity_3", "Identity_4"))
        self.detector = _Model(detector_model_path(), threads, ("Identity", "Identity_1"))
        self.anchors = ssd_anchors()
        assert len(self.anchors) == NUM_ANCHORS
        self.timing = Timing()
        self.frames = 0  # track() calls
        self.detector_runs = 0  # detector invocations over detect() and track()
        self.reset()

    # ----- public API ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget tracked people (start of a new video)."""
        self._tracks: list[_Track] = []
        self._since_detect = 0
        self._lost = False
        self._next_id = 0

    def detect(self, image_bgr: np.ndarray) -> list[PersonLandmarks]:
        """Every person in one image (static: no state kept), best detector score first."""
        rgb = self._rgb(image_bgr)
        self.timing = Timing()
        people = []
        for det_score, roi in self.detect_rois(rgb)[: self.max_people]:
            person = self._landmarks(rgb, roi)
            if person is not None:
                person.detection_score = person.score = det_score
                person.track_id = -1
                people.append(person)
        return people

    def track(self, image_bgr: np.ndarray) -> list[PersonLandmarks]:
        """Every person in the next frame of one video. Tracked people keep their ROI from the
        last frame's aux landmarks; the detector runs only when fewer than max_people are
        tracked, when one was lost, or every `detect_every` frames."""
        rgb = self._rgb(image_bgr)
        self.timing = Timing()
        self.frames += 1
        candidates = [(None, t.roi, t.track_id) for t in self._tracks]
        periodic = self.detect_every > 0 and self._since_detect >= self.detect_every
        if len(self._tracks) < self.max_people or self._lost or periodic:
            self._since_detect = 0
            for det_score, roi in self.detect_rois(rgb):
                candidates.append((det_score, roi, None))
        self._since_detect += 1
        kept = []  # association: the first of overlapping ROIs wins (tracked ones come first)
        for det_score, roi, track_id in candidates:
            if any(box_iou(roi.box(), other.box()) > self.association_iou for _, other, _ in kept):
                continue
            kept.append((det_score, roi, track_id))
        kept = kept[: self.max_people]
        people, tracks, self._lost = [], [], False
        for det_score, roi, track_id in kept:
            person = self._landmarks(rgb, roi)
            if person is None:
                self._lost = True
                continue
            if track_id is None:
                track_id, self._next_id = self._next_id, self._next_id + 1
                person.detection_score = person.score = det_score
            else:
                person.source = "tracking"
            person.track_id = track_id
            people.append(person)
            tracks.append(_Track(person.next_roi, track_id))
        self._tracks = tracks
        return people

    def close(self) -> None:
        self.detector = self.landmarker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- steps ---------------------------------------------------------------------------------
    def _rgb(self, image_bgr) -> np.ndarray:
        cv2 = self._cv2
        if self.detector is None:
            raise RuntimeError("MultiBlazePose is closed")
        image = np.asarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"expected a uint8 BGR image (H x W x 3), got {image.dtype} {image.shape}")
        if image.ndim == 2 or image.shape[2] == 1:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def detect_rois(self, rgb: np.ndarray, bgr: bool = False) -> list[tuple[float, Roi]]:
        """(detector score, ROI in pixels) per detected person of an RGB image, best first.
        bgr=True: the image is BGR; only the small warped crop is turned to RGB (the same
        tensor, since the bilinear warp treats each channel alone)."""
        cv2 = self._cv2
        t0 = time.perf_counter()
        height, width = rgb.shape[:2]
        long_side = max(width, height)
        # letterbox: the whole image padded to a centred square, corners onto the tensor corners
        crop = warp_roi(rgb, width / 2, height / 2, long_side, long_side, 0.0, DETECTOR_SIZE, cv2.BORDER_CONSTANT)
        if bgr:
            crop = crop[..., ::-1]
        tensor = (crop.astype(np.float32) / 127.5 - 1.0)[None]
        out = self.detector(tensor)
        self.detector_runs += 1
        detections = decode_detections(out["Identity"][0], out["Identity_1"][0], self.anchors,
                                       self.min_detection_confidence)
        pad_x, pad_y = (1 - width / long_side) / 2, (1 - height / long_side) / 2
        rois = []
        for det in weighted_nms(detections):
            det = remove_letterbox(det, pad_x, pad_y)
            kps = det.keypoints * (width, height)
            rois.append((det.score, roi_from_points(kps[0], kps[1])))
        self.timing.detector_ms = (time.perf_counter() - t0) * 1000
        return rois

    def _landmarks(self, rgb: np.ndarray, roi: Roi, bgr: bool = False) -> PersonLandmarks | None:
        """The landmark model on one ROI; None when its pose flag is below min_presence.
        bgr=True: the image is BGR (see detect_rois)."""
        cv2 = self._cv2
        t0 = time.perf_counter()
        height, width = rgb.shape[:2]
        try:
            if not (roi.side > 0 and math.isfinite(roi.side) and math.isfinite(roi.cx) and math.isfinite(roi.cy)):
                return None
            crop = warp_roi(rgb, roi.cx, roi.cy, roi.side, roi.side, roi.rotation, LANDMARK_SIZE, cv2.BORDER_REPLICATE)
            if bgr:
                crop = crop[..., ::-1]
            out = self.landmarker((crop.astype(np.float32) / 255.0)[None])
            presence = float(out["Identity_1"].reshape(-1)[0])  # already a probability
            if presence < self.min_presence:
                return None
            raw = out["Identity"].reshape(NUM_RAW_LANDMARKS, 5).astype(np.float64)
            xyz = raw[:, :3] / LANDMARK_SIZE
            visibility = _sigmoid(raw[:, 3])
            xyz[:, :2] = refine_from_heatmap(xyz[:, :2], out["Identity_3"][0])
            c, s = math.cos(roi.rotation), math.sin(roi.rotation)
            dx, dy = xyz[:, 0] - 0.5, xyz[:, 1] - 0.5
            px = np.empty((NUM_RAW_LANDMARKS, 4))
            px[:, 0] = roi.cx + (c * dx - s * dy) * roi.side
            px[:, 1] = roi.cy + (s * dx + c * dy) * roi.side
            px[:, 2] = xyz[:, 2] * roi.side
            px[:, 3] = visibility
            next_roi = roi_from_points(px[33, :2], px[34, :2])
            aux = px[33:35].copy()
            landmark_presence = _sigmoid(raw[:NUM_LANDMARKS, 4]).astype(np.float32)
            px = px[:NUM_LANDMARKS]
            norm = px / (width, height, width, 1.0)
            w = out["Identity_4"].reshape(NUM_RAW_LANDMARKS, 3)[:NUM_LANDMARKS].astype(np.float64)
            world = np.empty((NUM_LANDMARKS, 4))
            world[:, 0] = c * w[:, 0] - s * w[:, 1]
            world[:, 1] = s * w[:, 0] + c * w[:, 1]
            world[:, 2] = w[:, 2]
            world[:, 3] = visibility[:NUM_LANDMARKS]  # mediapipe copies visibility onto world landmarks
            box = (float(px[:, 0].min()), float(px[:, 1].min()), float(px[:, 0].max()), float(px[:, 1].max()))
            return PersonLandmarks(px.astype(np.float32), norm.astype(np.float32), world.astype(np.float32),
                                   score=presence, presence=presence, box=box, roi=roi, next_roi=next_roi,
                                   width=int(width), height=int(height), aux=aux,
                                   landmark_presence=landmark_presence)
        finally:
            self.timing.landmark_ms.append((time.perf_counter() - t0) * 1000)
