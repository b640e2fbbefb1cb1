"""Single-person BlazePose, tracked through a video, run with LiteRT: the `pose` kind's default.

A library (no Node). `LiteRTBlazePose` has the constructor and `detect()` of the MediaPipe
reference (posegraph/pose/backends/blazepose.py `BlazePose`, `mp.solutions.pose`) and gives
the same packet, but imports neither mediapipe nor TensorFlow: the models come from the
project's models/ (pose_detection.tflite, pose_landmark_{lite,full,heavy}.tflite) and run
with ai-edge-litert, through the detector and landmark steps of blazepose_multi.py.

What it does per frame, as the single-person pose graph of mediapipe 0.10.21
(pose_landmark_cpu.binarypb and the sub-graphs compiled into the wheel) does:

1. No ROI kept (first frame, last frame lost, or static_image_mode): the person detector on
   the whole frame; its best detection after weighted NMS gives the ROI (keypoints 0/1,
   scale 1.25). Nobody found: None. Otherwise the ROI is the one the last frame left.
2. The landmark model on the ROI's rotated crop. Its pose flag below min_tracking_confidence:
   None, and the next frame starts from the detector again (MediaPipe does not re-detect on
   the frame it lost the person on).
3. Smoothing (PoseLandmarkFiltering), on simulated 30 fps timestamps (33.333 ms a frame, as
   `solutions.pose` feeds its graph), all reset whenever a frame has no person:
   - visibility: low-pass, alpha 0.1 (landmarks and world landmarks);
   - landmarks: one-euro on pixels (x * W, y * H, z * W), min_cutoff 0.05, beta 80,
     derivative cutoff 1, the speed divided by the object scale: the side of the raw aux
     landmarks' alignment box, 2 x |aux34 - aux33| px;
   - world landmarks: one-euro on metres, min_cutoff 0.1, beta 40, derivative cutoff 1, no
     value scaling;
   - aux landmarks 33/34: one-euro min_cutoff 0.01, beta 10, derivative cutoff 1, scaled like
     the landmarks. This one runs even with smooth_landmarks off (it is outside the graph's
     switch), since the next ROI comes from it.
   Landmarks, world landmarks and visibility are smoothed only with smooth_landmarks on and
   static_image_mode off (`solutions.pose` turns smoothing off for still images).
4. The next frame's ROI from the smoothed aux landmarks (PoseLandmarksToRoi: centre aux 33,
   side 2 x 1.25 x |aux34 - aux33|, rotated so aux 34 is straight above).

The filters are written from the algorithm of MediaPipe's OneEuroFilter / LowPassFilter
(one_euro_filter.cc, low_pass_filter.cc: the first sample passes through, speed 0; the
frequency comes from the timestamps after the first one, 30 Hz before) with the constants
read from the wheel's graphs. Segmentation is not computed.

The packet: {"px", "norm", "world", "width", "height", "layout"} exactly as the MediaPipe
reference's (posegraph/pose/packets.py): px float32 33 x 4 [x_px, y_px, z_px = norm z * W,
visibility], norm = px / (W, H, W, 1), world metres hip-centred with the visibility.
`last` holds what the packet does not: the pose flag (presence), each landmark's presence,
the detector score when the detector ran, the ROI and whether it came from the detector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from posegraph.pose.backends.blazepose import LAYOUT
from posegraph.pose.backends.blazepose_multi import ROI_SCALE, MultiBlazePose, Roi, Timing, roi_from_points

# ----- constants of mediapipe 0.10.21's PoseLandmarkFiltering (read from the wheel) -------------
FRAME_US = 33333  # solutions.pose's simulated timestamp step (30 fps)
DEFAULT_FREQUENCY = 30.0  # LandmarksSmoothingCalculatorOptions.OneEuroFilter.frequency default
MIN_OBJECT_SCALE = 1e-6  # ... .min_allowed_object_scale default
VISIBILITY_ALPHA = 0.1
LANDMARK_FILTER = {"min_cutoff": 0.05, "beta": 80.0, "derivate_cutoff": 1.0}
WORLD_FILTER = {"min_cutoff": 0.1, "beta": 40.0, "derivate_cutoff": 1.0}
AUX_FILTER = {"min_cutoff": 0.01, "beta": 10.0, "derivate_cutoff": 1.0}


# ----- filters -----------------------------------------------------------------------------------
class LowPass:
    """Exponential smoothing of an array, element-wise: the first sample passes as it is,
    then out = alpha * value + (1 - alpha) * last out. Keeps the last raw sample too."""

    def __init__(self, alpha: float | None = None):
        self.alpha = alpha
        self.reset()

    def reset(self) -> None:
        self.raw = None
        self.value = None

    def __call__(self, value: np.ndarray, alpha=None) -> np.ndarray:
        value = np.asarray(value, np.float64)
        alpha = self.alpha if alpha is None else alpha
        out = value.copy() if self.value is None else alpha * value + (1.0 - alpha) * self.value
        self.raw, self.value = value.copy(), out
        return out


class OneEuro:
    """One-euro filters over an array, one per element, sharing their timestamps.

    Per call at time t (ns): the sampling frequency is 1 / (t - last t), kept at `frequency`
    for the first call; speed = (value - last raw) * value_scale * frequency (0 the first
    time), low-passed at derivate_cutoff; cutoff = min_cutoff + beta * |smoothed speed|;
    the value low-passed at that cutoff. alpha(cutoff) = 1 / (1 + f / (2 pi cutoff)).
    A timestamp not after the last one returns the value untouched (state unchanged)."""

    def __init__(self, min_cutoff: float, beta: float, derivate_cutoff: float, frequency: float = DEFAULT_FREQUENCY):
        self.min_cutoff, self.beta, self.derivate_cutoff = float(min_cutoff), float(beta), float(derivate_cutoff)
        self.initial_frequency = float(frequency)
        self.reset()

    def reset(self) -> None:
        self.frequency = self.initial_frequency
        self.last_ns = 0
        self.x = LowPass()
        self.dx = LowPass()

    def _alpha(self, cutoff):
        return 1.0 / (1.0 + self.frequency / (2.0 * math.pi * cutoff))

    def __call__(self, value: np.ndarray, t_ns: int, value_scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self.last_ns >= t_ns:
            return value.copy()
        if self.last_ns != 0 and t_ns != 0:
            self.frequency = 1e9 / (t_ns - self.last_ns)
        self.last_ns = t_ns
        speed = np.zeros_like(value) if self.x.raw is None else (value - self.x.raw) * value_scale * self.frequency
        smoothed_speed = self.dx(speed, self._alpha(self.derivate_cutoff))
        cutoff = self.min_cutoff + self.beta * np.abs(smoothed_speed)
        return self.x(value, self._alpha(cutoff))


def alignment_box_side(aux: np.ndarray) -> float:
    """The side in pixels of MediaPipe's alignment box of the aux landmarks (AlignmentPointsRects,
    before the 1.25 scale): 2 x |aux34 - aux33|. The smoothing's object scale."""
    return 2.0 * math.hypot(float(aux[1, 0] - aux[0, 0]), float(aux[1, 1] - aux[0, 1]))


class PoseSmoother:
    """MediaPipe's PoseLandmarkFiltering for one person: landmarks, world landmarks, visibility
    and the aux landmarks, all on one clock (see the module doc)."""

    def __init__(self):
        self.landmarks = OneEuro(**LANDMARK_FILTER)
        self.world = OneEuro(**WORLD_FILTER)
        self.aux = OneEuro(**AUX_FILTER)
        self.visibility = LowPass(VISIBILITY_ALPHA)
        self.world_visibility = LowPass(VISIBILITY_ALPHA)

    def reset(self) -> None:
        for f in (self.landmarks, self.world, self.aux, self.visibility, self.world_visibility):
            f.reset()

    def smooth_aux(self, aux_px: np.ndarray, t_ns: int, object_scale: float) -> np.ndarray:
        """The aux landmarks (2 x 3 px: x, y, z * ... as px) smoothed; applied on every tracked frame."""
        if object_scale < MIN_OBJECT_SCALE:
            return np.asarray(aux_px, np.float64)
        return self.aux(aux_px, t_ns, 1.0 / object_scale)

    def smooth_person(self, px: np.ndarray, world: np.ndarray, t_ns: int, object_scale: float):
        """(px 33 x 4, world 33 x 4) smoothed: x, y, z by one-euro, column 3 (visibility) low-passed."""
        px, world = np.array(px, np.float64), np.array(world, np.float64)
        px[:, 3] = self.visibility(px[:, 3])
        world[:, 3] = self.world_visibility(world[:, 3])
        if object_scale >= MIN_OBJECT_SCALE:
            px[:, :3] = self.landmarks(px[:, :3], t_ns, 1.0 / object_scale)
        world[:, :3] = self.world(world[:, :3], t_ns, 1.0)
        return px, world


# ----- the tracked single-person backend -------------------------------------------------------
@dataclass
class FrameInfo:
    """What the last `detect()` saw beyond the packet. source: "detection" (the detector gave the
    ROI), "tracking" (the last frame's landmarks did) or "none" (nobody found); presence: the
    landmark model's pose flag (None when it did not run); detection_score: the detector's
    score when it ran and found someone; roi: the crop the landmark model got; next_roi: the
    ROI kept for the next frame (None: the detector runs next); landmark_presence: float32 (33,)."""
    source: str = "none"
    presence: float | None = None
    detection_score: float | None = None
    roi: Roi | None = None
    next_roi: Roi | None = None
    landmark_presence: np.ndarray | None = None


class LiteRTBlazePose:
    """One person's BlazePose landmarks from BGR frames, tracked and smoothed like MediaPipe's
    `solutions.pose`, on LiteRT (see the module doc).

    static_image_mode: detector on every frame, no smoothing (unrelated images);
    model_complexity: 0 lite, 1 full, 2 heavy landmark model (models/);
    smooth_landmarks: filter landmarks, world landmarks and visibility across frames;
    min_detection_confidence: detector score threshold;
    min_tracking_confidence: the landmark model's pose flag below which the person is lost;
    threads: LiteRT threads per model.

    With static_image_mode off, each result depends on the frames before it (ROI and
    filters), so one instance must see one stream's frames in order; `reset()` starts a new
    stream.
    """

    def __init__(self, static_image_mode: bool = False, model_complexity: int = 1, smooth_landmarks: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5, threads: int = 1):
        self.static_image_mode = bool(static_image_mode)
        self.smooth_landmarks = bool(smooth_landmarks) and not self.static_image_mode
        self.model_complexity = int(model_complexity)
        self._pose = MultiBlazePose(max_people=1, min_detection_confidence=float(min_detection_confidence),
                                    min_presence=float(min_tracking_confidence), model_complexity=self.model_complexity,
                                    detect_every=0, threads=int(threads))
        self._cv2 = self._pose._cv2
        self.smoother = PoseSmoother()
        self.frames = 0
        self.detector_runs = 0
        self.reset()

    def reset(self) -> None:
        """Forget the tracked ROI and the filters (start of a new stream)."""
        self._roi = None
        self._t_us = 0
        self.smoother.reset()
        self.last = FrameInfo()

    def use_roi(self, roi: Roi | None) -> None:
        """Start the next frame from this ROI (pixels) instead of the one the last frame left
        (None: from the detector). For an outside person detector, and for comparing the
        per-frame steps with MediaPipe's graph on MediaPipe's own ROIs."""
        self._roi = roi

    def _bgr(self, image_bgr) -> np.ndarray:
        if self._pose is None:
            raise RuntimeError("LiteRTBlazePose is closed")
        image = np.asarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"expected a uint8 BGR image (H x W x 3), got {image.dtype} {image.shape}")
        cv2 = self._cv2
        if image.ndim == 2 or image.shape[2] == 1:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image if image.flags.c_contiguous else np.ascontiguousarray(image)

    def _lost(self, source: str, **info) -> None:
        """Nobody this frame: no ROI kept, filters reset, None returned."""
        self._roi = None
        self.smoother.reset()  # MediaPipe resets every filter on a frame without landmarks
        self.last = FrameInfo(source=source, **info)

    def detect(self, image_bgr: np.ndarray) -> dict | None:
        """Landmarks of the most prominent person in a uint8 BGR image (gray and BGRA work too),
        or None when there is none. The image is only read."""
        image = self._bgr(image_bgr)
        self._pose.timing = Timing()  # this frame's detector / landmark milliseconds
        self.frames += 1
        self._t_us += FRAME_US
        t_ns = self._t_us * 1000
        height, width = image.shape[:2]
        detection_score = None
        if self.static_image_mode or self._roi is None:
            self.detector_runs += 1
            rois = self._pose.detect_rois(image, bgr=True)
            if not rois:
                self._lost("none")
                return None
            detection_score, roi = rois[0]  # the best detection after weighted NMS, as the graph's split 0..1
            source = "detection"
        else:
            roi, source = self._roi, "tracking"
        person = self._pose._landmarks(image, roi, bgr=True)
        if person is None:
            self._lost("none", detection_score=detection_score, roi=roi)
            return None
        px, world = person.px, person.world
        object_scale = alignment_box_side(person.aux)  # from the raw aux landmarks, as OBJECT_SCALE_ROI
        if self.static_image_mode:
            next_roi = None
        else:
            aux = self.smoother.smooth_aux(person.aux[:, :3], t_ns, object_scale)
            next_roi = roi_from_points(aux[0, :2], aux[1, :2], ROI_SCALE)
            if not (next_roi.side > 0 and math.isfinite(next_roi.side)):
                next_roi = None
        if self.smooth_landmarks:
            px, world = self.smoother.smooth_person(px, world, t_ns, object_scale)
        self._roi = next_roi
        self.last = FrameInfo(source=source, presence=person.presence, detection_score=detection_score, roi=roi,
                              next_roi=next_roi, landmark_presence=person.landmark_presence)
        px = np.asarray(px, np.float64)
        norm = px / (width, height, width, 1.0)
        return {"px": px.astype(np.float32), "norm": norm.astype(np.float32),
                "world": np.asarray(world, np.float32), "width": int(width), "height": int(height), "layout": LAYOUT}

    def close(self) -> None:
        """Drop the models; safe to call twice."""
        if self._pose is not None:
            pose, self._pose = self._pose, None
            pose.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

