"""BlazePose through MediaPipe's legacy `solutions.pose` API, as a small library: the reference.

The `pose` kind's default no longer runs this: model blazepose runs the same models and the
same tracking and smoothing on LiteRT (posegraph/pose/backends/blazepose_litert.py,
`LiteRTBlazePose`, the same constructor, `detect()` and packet), since `mp.solutions.pose`
exists only in mediapipe <= 0.10.21 wheels (Python 3.9-3.12). `BlazePose` here stays as the
reference it is compared with (model blazepose-mediapipe, the comparison tests), wherever
mediapipe can be imported.

This module also holds what the BlazePose backends share (MODELS_DIR, LANDMARK_MODELS,
LAYOUT, ModelMissingError, native_stderr_filtered), so it imports nothing heavy: mediapipe
itself is imported only by `import_mediapipe()` (or by creating a `BlazePose`).

Why the legacy API: Google's reference landmarks (data/google_pose_reference) were made
with it, and it keeps tracking state (ROI from the previous frame, landmark smoothing)
inside one object.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from posegraph.pose.paths import PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "models"
LAYOUT = "blazepose33"
NUM_LANDMARKS = 33
# model_complexity -> landmark model file MediaPipe's pose graph loads for it
LANDMARK_MODELS = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}


class ModelMissingError(FileNotFoundError):
    """A landmark model file is neither in mediapipe's package nor in the project's models/."""


class _DeferredModule(types.ModuleType):
    """Stands in for a module mediapipe imports but the pose graph never uses; the real
    module is imported the first time one of its attributes is read."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(importlib.import_module(self.__name__), name)


def import_mediapipe():
    """Import and return `mediapipe` without letting it import TensorFlow.

    Why: mediapipe 0.10.21's `mediapipe.tasks.python.core.optional_dependencies` does
    `from tensorflow.tools.docs import doc_controls` (only for API docs) and falls back to
    a no-op on ModuleNotFoundError. With tensorflow-cpu installed that line alone costs each
    pose process seconds of start-up and hundreds of MB resident. A `None` entry in
    sys.modules makes the import raise ModuleNotFoundError, so mediapipe takes its fallback.
    Likewise `solutions.drawing_utils` imports matplotlib.pyplot (~0.5 s, ~30 MB) for a 3-D
    plot helper: it gets a stand-in that imports the real pyplot on first use. Both are
    lifted right after the import, so the process can still import TensorFlow or matplotlib
    on purpose later; neither is touched when it is already imported.
    """
    module = sys.modules.get("mediapipe")
    if module is not None:
        return module
    saved = {}

    def stand_in(name, value):
        if name not in sys.modules:
            saved[name] = value
            sys.modules[name] = value

    stand_in("tensorflow", None)
    if "matplotlib" not in sys.modules:
        pyplot = _DeferredModule("matplotlib.pyplot")
        matplotlib = _DeferredModule("matplotlib")
        matplotlib.pyplot = pyplot  # so `import matplotlib.pyplot as plt` binds the stand-in
        stand_in("matplotlib", matplotlib)
        stand_in("matplotlib.pyplot", pyplot)
    try:
        import mediapipe
    finally:
        for name, value in saved.items():
            if sys.modules.get(name) is value:
                del sys.modules[name]
    return mediapipe


def mediapipe_dir() -> Path:
    """mediapipe's package folder, found without importing it."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("mediapipe is not installed (pip install mediapipe==0.10.21)")
    return Path(list(spec.submodule_search_locations)[0])


def ensure_landmark_model(model_complexity: int) -> Path:
    """Make sure the landmark model for `model_complexity` is where MediaPipe loads it from.

    (MediaPipe reference only; the LiteRT backends read every model from models/ directly.)
    Why: the mediapipe wheel bundles only the full model (complexity 1); for 0 and 2 its
    `Pose` would download the lite/heavy file from Google at run time, which must never
    happen (no network, unpinned bytes). The project ships both in models/; copy the
    needed one into mediapipe's modules/pose_landmark/ (atomically, since several processes
    may open at once). Returns the installed path; raises ModelMissingError saying what to
    do when the file is nowhere.
    """
    if model_complexity not in LANDMARK_MODELS:
        raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
    name = LANDMARK_MODELS[model_complexity]
    target_dir = mediapipe_dir() / "modules" / "pose_landmark"
    target = target_dir / name
    if target.is_file() and target.stat().st_size > 0:
        return target
    source = MODELS_DIR / name
    if not (source.is_file() and source.stat().st_size > 0):
        raise ModelMissingError(
            f"model_complexity {model_complexity} needs {name}, which is neither in {target_dir} nor in {MODELS_DIR}; "
            f"add it to models/ (e.g. `npm pack @mediapipe/pose`, untar, copy package/{name} into {MODELS_DIR}) "
            f"or use model_complexity 1 (the full model bundled with mediapipe)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=target_dir)
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ModelMissingError(
            f"model_complexity {model_complexity} needs {name} in {target_dir}, and copying it there from {source} "
            f"failed ({exc}); copy it there by hand") from exc
    return target


# MediaPipe's C++ side prints these on every start (to fd 2, before any log setting applies);
# they say nothing about the user's graph, so they are filtered out of its terminal.
BENIGN_NATIVE_LOG = ("inference_feedback_manager.cc", "landmark_projection_calculator.cc",
                     "All log messages before absl::InitializeLog()", "Created TensorFlow Lite XNNPACK delegate")


@contextlib.contextmanager
def native_stderr_filtered():
    """Run a block with the process's fd 2 captured; pass on every line but the benign ones."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not any(marker in line for marker in BENIGN_NATIVE_LOG):
                    print(line, file=sys.stderr)


class BlazePose:
    """One MediaPipe Pose solution: BGR image in, landmarks packet (posegraph/pose/packets.py) out.

    With static_image_mode=False it tracks: each result depends on the frames before it
    (ROI from the last landmarks, smoothing over simulated 30 fps timestamps), so one
    instance must see one stream's frames in order.
    """

    def __init__(self, static_image_mode: bool = False, model_complexity: int = 1, smooth_landmarks: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        self._pose = None
        ensure_landmark_model(model_complexity)  # before mediapipe could think of downloading it
        mp = import_mediapipe()
        import cv2

        self._cv2 = cv2
        self._quiet_calls = 3  # MediaPipe builds its models lazily over the first inferences
        with native_stderr_filtered():
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=bool(static_image_mode), model_complexity=int(model_complexity),
                smooth_landmarks=bool(smooth_landmarks), enable_segmentation=False,
                min_detection_confidence=float(min_detection_confidence),
                min_tracking_confidence=float(min_tracking_confidence))

    def detect(self, image_bgr: np.ndarray) -> dict | None:
        """Landmarks of the most prominent person in a uint8 BGR image, or None when there is none.

        Also takes a gray (H x W) or BGRA image. The image is only read.
        """
        cv2 = self._cv2
        if self._pose is None:
            raise RuntimeError("BlazePose is closed")
        image = np.asarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"expected a uint8 BGR image (H x W x 3), got {image.dtype} {image.shape}")
        if not image.flags.c_contiguous:
            image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        if image.ndim == 2 or image.shape[2] == 1:
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        elif image.shape[2] == 4:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)  # the one conversion MediaPipe needs
        rgb.flags.writeable = False  # lets MediaPipe wrap the buffer instead of copying it
        if not self._quiet_calls:
            results = self._pose.process(rgb)
        else:  # the first inferences print MediaPipe's start-up warnings
            with native_stderr_filtered():
                results = self._pose.process(rgb)
            self._quiet_calls -= 1
        if results.pose_landmarks is None:
            return None
        norm = np.array([(p.x, p.y, p.z, p.visibility) for p in results.pose_landmarks.landmark], dtype=np.float64)
        px = norm * (width, height, width, 1.0)  # z scaled like x (ML Kit convention)
        if results.pose_world_landmarks is not None:
            world = np.array([(p.x, p.y, p.z, p.visibility) for p in results.pose_world_landmarks.landmark], dtype=np.float32)
        else:
            world = np.full((NUM_LANDMARKS, 4), np.nan, dtype=np.float32)
        return {"px": px.astype(np.float32), "norm": norm.astype(np.float32), "world": world,
                "width": int(width), "height": int(height), "layout": LAYOUT}

    def close(self) -> None:
        """Stop MediaPipe's graph (its threads and model memory); safe to call twice."""
        if self._pose is not None:
            pose, self._pose = self._pose, None
            pose.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
