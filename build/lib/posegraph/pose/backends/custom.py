"""The `custom` pose backend: a keypoint model trained with `runner.py train-keypoints`.

`pose` with `model: custom:PATH` runs it. PATH is the model folder (model.json plus the
TFLite files; `custom_precision` picks model.float.tflite or model.int8.tflite) or one
.tflite file with model.json beside it. Library only (no Node class); posegraph/pose/estimator.py makes it.

Per frame: the person crops (posegraph/pose/backends/crop.py, the way the model was trained: the
BlazePose person detector's ROIs, best first, or the whole frame), the model on each, the
crop units mapped back to image pixels. A regression model gives no per-keypoint
confidence, so every keypoint's score is the crop's: the detector's score (1.0 for whole-
frame crops). Each person is {"keypoints": (k, 3) x_px, y_px, score, "score", "box"}, the
shape the other single-frame backends return.

Everything here runs through ai_edge_litert: no TensorFlow in the pose process.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from posegraph.pose import landmarks as lm
from posegraph.pose.backends.crop import CROP_MODES, as_model_input, crop_image, frame_roi, from_crop
from posegraph.pose.paths import resolve_path

PRECISIONS = ("float", "int8")


class CustomModelError(FileNotFoundError):
    """The model folder or file is missing or does not fit its model.json; str() is one line."""


def model_files(path: str, precision: str = "float") -> tuple[Path, Path]:
    """(model.json, the .tflite to run) for a model folder or a .tflite file."""
    if precision not in PRECISIONS:
        raise CustomModelError(f"precision must be float or int8, got {precision!r}")
    where = resolve_path(path)
    if where.is_dir():
        meta = where / "model.json"
        if not meta.is_file():
            raise CustomModelError(f"{where}: no model.json (train one with runner.py train-keypoints)")
        try:
            info = json.loads(meta.read_text())
            tflite = where / info.get("files", {}).get(precision, f"model.{precision}.tflite")
        except (ValueError, AttributeError, TypeError) as exc:  # not JSON, or not the object train-keypoints writes
            raise CustomModelError(f"{meta}: not a keypoint model description ({exc})") from None
    elif where.is_file():
        if where.suffix != ".tflite":
            raise CustomModelError(f"{where}: expected a model folder or a .tflite file")
        meta, tflite = where.parent / "model.json", where
        if not meta.is_file():
            raise CustomModelError(f"{where}: no model.json beside it (it says the keypoints and the crop)")
    else:
        raise CustomModelError(f"{where}: no such model folder or file")
    if not tflite.is_file():
        raise CustomModelError(f"{tflite}: model file not found")
    return meta, tflite


class KeypointModel:
    """One TFLite keypoint model and its model.json: uint8 pixels in, crop units out."""

    def __init__(self, path, precision: str = "float", threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter
        from posegraph.pose.backends.blazepose import native_stderr_filtered

        meta, tflite = model_files(str(path), precision)
        try:
            info = json.loads(meta.read_text())
            self.names = tuple(info["names"])
            self.size = int(info["input_size"])
            self.channels = int(info["channels"])
            self.channel_order = str(info["channel_order"])
            self.crop = str(info.get("crop", "detector"))
            self.layout = lm.custom_layout(self.names)  # ValueError naming an unknown or repeated name
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CustomModelError(f"{meta}: not a keypoint model description ({exc})") from None
        if self.crop not in CROP_MODES:
            raise CustomModelError(f"{meta}: field 'crop' must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        self.info, self.path = info, tflite
        try:
            with native_stderr_filtered():
                self.interpreter = Interpreter(model_path=str(tflite), num_threads=int(threads))
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise CustomModelError(f"{tflite}: not a TFLite model ({str(exc).splitlines()[0]})") from None
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        want = (1, self.size, self.size, self.channels)
        if tuple(int(v) for v in inp["shape"]) != want:
            raise CustomModelError(f"{tflite}: input shape {tuple(int(d) for d in inp['shape'])}, model.json says {want}")
        if int(np.prod(out["shape"])) != 2 * len(self.names):
            raise CustomModelError(f"{tflite}: {int(np.prod(out['shape']))} outputs for {len(self.names)} keypoints")
        self.input_index, self.output_index = inp["index"], out["index"]
        self.input_dtype = inp["dtype"]
        self.input_quant = inp.get("quantization", (0.0, 0))
        self.output_quant = out.get("quantization", (0.0, 0))
        self.output_dtype = out["dtype"]
        self.invoke_ms: list[float] = []

    def predict_units(self, pixels: np.ndarray) -> np.ndarray:
        """(size, size, channels) uint8 -> (k, 2) keypoints in crop units."""
        x = np.asarray(pixels, np.float32)[None]
        if self.input_dtype != np.float32:
            scale, zero = self.input_quant
            info = np.iinfo(self.input_dtype)
            x = np.clip(np.round(x / (scale or 1.0) + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input_index, x.astype(self.input_dtype))
        t0 = time.perf_counter()
        self.interpreter.invoke()
        self.invoke_ms.append((time.perf_counter() - t0) * 1000)
        y = self.interpreter.get_tensor(self.output_index).astype(np.float64).reshape(-1)
        if self.output_dtype != np.float32:
            scale, zero = self.output_quant
            y = (y - zero) * scale
        return y.reshape(-1, 2)

    def on_roi(self, image_bgr: np.ndarray, roi) -> np.ndarray:
        """(k, 2) image pixels of the keypoints in one ROI of a BGR image."""
        pixels = as_model_input(crop_image(image_bgr, roi, self.size), self.channel_order)
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        return from_crop(self.predict_units(pixels), roi)


class CustomPose:
    """The backend: crops (detector or whole frame) -> keypoint model -> people in pixels.

    crop None: the crop the model was trained with (model.json); min_detection_confidence and
    max_people apply to the detector.
    """

    def __init__(self, path: str, precision: str = "float", crop: str | None = None, max_people: int = 1,
                 min_detection_confidence: float = 0.5, threads: int = 1):
        self.model = KeypointModel(path, precision, threads)
        self.crop = crop or self.model.crop
        if self.crop not in CROP_MODES:
            raise CustomModelError(f"crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        self.max_people = int(max_people)
        self.detector = None
        if self.crop == "detector":
            from posegraph.pose.backends.blazepose_multi import MultiBlazePose

            self.detector = MultiBlazePose(max_people=self.max_people,
                                           min_detection_confidence=min_detection_confidence, threads=threads)
        self.names, self.layout = self.model.names, self.model.layout

    def crops(self, image_bgr: np.ndarray) -> list[tuple[float, object]]:
        """(score, ROI) per person to run the model on, best first."""
        height, width = image_bgr.shape[:2]
        if self.detector is None:
            return [(1.0, frame_roi(height, width))]
        import cv2

        return self.detector.detect_rois(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))[: self.max_people]

    def run(self, image_bgr: np.ndarray) -> list[dict]:
        image = np.asarray(image_bgr)
        if image.ndim == 2:
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        people = []
        for score, roi in self.crops(image):
            xy = self.model.on_roi(image, roi)
            keypoints = np.concatenate([xy, np.full((len(xy), 1), score)], axis=1).astype(np.float32)
            box = (float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max()))
            people.append({"keypoints": keypoints, "score": float(score), "box": box, "roi": roi})
        return people

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
        self.detector = None
