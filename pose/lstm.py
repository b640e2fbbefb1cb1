"""LSTM action classifier over windows of pose features: features, windows, augmentation,
the Keras model, training, TFLite export and clip evaluation (no engine code here).

Features (`features(points, layout, kind, width, height)` -> float32 (T, F)):

- `coco_xy` (34): COCO-17 x,y centred on the hips' midpoint and divided by the torso size
  (the Detectron2 + LSTM write-up's body-normalised keypoints; posegraph.pose.features.normalized_keypoints).
  BlazePose-33 input is converted to COCO-17 through posegraph.pose.landmarks; works on both layouts.
  A custom layout (posegraph/pose/landmarks.py) gives 2 values per COCO-17 point it has
  (`feature_size`), so only a model trained on as many features can take it.
- `blazepose_xyzv` (132): BlazePose-33 x / width, y / height, z / width, visibility (the
  Keras write-up's landmarks normalised by the image size); blazepose33 only.
- `embed` (69): the ML Kit embedding (posegraph.pose.features.mlkit_embedding, 23 x 3) flattened and
  divided by 100 (the embedding is scaled x100; /100 keeps LSTM inputs near unit size);
  blazepose33 only.

Frames with no person (all-NaN rows) take the previous frame's features (carried forward);
frames before the first person get zeros. The `lstm` kind does the same, so what it sees at
run time is what the model saw in training. On top, the model standardises its inputs with
a Normalization layer holding the training windows' per-feature mean and variance, so no
statistics need to travel beside the model.

Windows (`windows(features, length=32, stride)`): every `stride` frames a window of `length`
consecutive frames. A clip shorter than `length` is padded at the end by repeating its last
frame, so it still gives one window. The node's early answers (fewer than `length` frames
seen) use the same rule: the frames so far, then the newest repeated to fill the window, so
a 29-frame clip's window at its last frame is exactly the window it was trained on.

The model: Normalization -> LSTM(hidden, unroll=True) -> Dropout -> Dense softmax. unroll=True
matters: Keras 3's LSTM otherwise becomes a While loop over TensorLists, which TFLite runs
only through Flex (TensorFlow) ops. Unrolled, it converts to builtin ops, so inference needs
only ai_edge_litert. The TFLite export has a fixed batch of 1 (one window per call).

A model directory holds: model.keras, model.tflite, labels.json (classes, feature kind,
window, layout, normalisation), curves.png, confusion.png, metrics.json.
"""
from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import numpy as np
from posegraph.pose import features as emb
from posegraph.pose import landmarks as lm

FEATURE_KINDS = ("coco_xy", "blazepose_xyzv", "embed")
FEATURE_SIZES = {"coco_xy": 34, "blazepose_xyzv": 132, "embed": 69}
NORMALISATION = {
    "coco_xy": "COCO-17 x,y minus the hips' midpoint, divided by the torso size (posegraph.pose.features.normalized_keypoints)",
    "blazepose_xyzv": "BlazePose-33 x / width, y / height, z_px / width, visibility",
    "embed": "ML Kit embedding (posegraph.pose.features.mlkit_embedding, 23 x 3) / 100, flattened",
}
DEFAULT_WINDOW = 32
EMBED_SCALE = 0.01


class ModelDirError(ValueError):
    """A model directory that is missing or unusable; str() is a one-line message."""


def feature_size(kind: str, layout: str = lm.BLAZEPOSE33) -> int:
    """Values per frame of features `kind` on `layout`: FEATURE_SIZES, except coco_xy on a
    custom layout, which has only the COCO-17 points it has (posegraph.pose.features.keypoint_names)."""
    if kind == "coco_xy" and lm.is_custom(layout):
        return len(emb.keypoint_names(layout))
    return FEATURE_SIZES[kind]


# ----- features ------------------------------------------------------------------------------
def _frame_features(points: np.ndarray, layout: str, kind: str, width, height) -> np.ndarray:
    """(n, K, >=3) points of frames that all have a person -> (n, F) float64."""
    if kind == "coco_xy":
        return emb.normalized_keypoints(points[..., :2], layout)
    if layout != lm.BLAZEPOSE33:
        raise ValueError(f"features {kind!r} need blazepose33 landmarks, got {layout!r} (coco_xy works on any layout)")
    if kind == "blazepose_xyzv":
        if not width or not height:
            raise ValueError("features 'blazepose_xyzv' need the image width and height")
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1] < 4:
            pts = np.concatenate([pts, np.ones(pts.shape[:-1] + (1,))], axis=-1)
        scale = np.array([width, height, width, 1.0])
        return (pts[..., :4] / scale).reshape(pts.shape[0], -1)
    if kind == "embed":
        return (emb.mlkit_embedding(points[..., :3]) * EMBED_SCALE).reshape(points.shape[0], -1)
    raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")


def person_mask(points: np.ndarray) -> np.ndarray:
    """(T,) bool: frames where a person was found (some finite x,y)."""
    pts = np.asarray(points)
    return np.isfinite(pts[..., :2]).all(axis=-1).any(axis=-1)


def features(points: np.ndarray, layout: str, kind: str, width: int | None = None, height: int | None = None,
             previous: np.ndarray | None = None) -> np.ndarray:
    """(T, K, 4) landmarks [x_px, y_px, z_px, visibility] -> float32 (T, F).

    No-person frames (NaN rows) carry the previous frame's features forward; before the
    first person, `previous` (the node passes its stream's last features) or zeros.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3:
        raise ValueError(f"points must be (T, K, 4), got {pts.shape}")
    out = np.zeros((pts.shape[0], feature_size(kind, layout)), dtype=np.float32)
    valid = person_mask(pts)
    if valid.any():
        clean = np.nan_to_num(pts[valid], nan=0.0)  # a stray NaN (e.g. visibility) must not poison the model
        out[valid] = _frame_features(clean, layout, kind, width, height)
    last = np.zeros(out.shape[1], np.float32) if previous is None else np.asarray(previous, np.float32)
    for t in range(out.shape[0]):
        if valid[t]:
            last = out[t]
        else:
            out[t] = last
    return out


# ----- windows -------------------------------------------------------------------------------
def pad_window(frames: np.ndarray, length: int) -> np.ndarray:
    """(n, F) with 1 <= n -> (length, F): the last `length` frames, or all of them followed by
    the newest frame repeated (the padding rule of the module docstring)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[0] >= length:
        return frames[-length:]
    pad = np.repeat(frames[-1:], length - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def windows(feats: np.ndarray, length: int = DEFAULT_WINDOW, stride: int = 4) -> np.ndarray:
    """(T, F) -> (N, length, F): windows starting every `stride` frames; a clip shorter than
    `length` gives one window padded by repeating its last frame; an empty clip none."""
    feats = np.asarray(feats, dtype=np.float32)
    if length < 1 or stride < 1:
        raise ValueError("window length and stride must be at least 1")
    t = feats.shape[0]
    if t == 0:
        return np.zeros((0, length, feats.shape[1]), np.float32)
    if t < length:
        return pad_window(feats, length)[None]
    starts = range(0, t - length + 1, stride)
    return np.stack([feats[s:s + length] for s in starts]).astype(np.float32)


# ----- the model -----------------------------------------------------------------------------
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (imported here only: training/export need it)

    return tf


class TfliteModel:
    """One window -> class probabilities through ai_edge_litert (no TensorFlow import)."""

    def __init__(self, path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self.input_index, self.output_index = inp["index"], out["index"]
        self.input_shape = tuple(int(x) for x in inp["shape"])
        self._buffer = np.zeros(self.input_shape, np.float32)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        self._buffer[0] = window
        self.interpreter.set_tensor(self.input_index, self._buffer)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index)[0].copy()


class KerasModel:
    """One window -> class probabilities through the Keras model (imports TensorFlow)."""

    def __init__(self, path):
        _quiet_tf()
        import keras

        self.model = keras.models.load_model(str(path), compile=False)
        self._call = None

    def __call__(self, window: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if self._call is None:
            model = self.model
            self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return np.asarray(self._call(np.asarray(window, np.float32)[None]))[0]


def load_info(model_dir) -> dict:
    """labels.json of a model directory, checked; ModelDirError (one line) otherwise."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: no such model directory (train one with: runner.py train-lstm DATA.npz -o DIR)")
    path = model_dir / "labels.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path}: missing (not a model directory written by train-lstm)") from None
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{path}: unreadable ({exc})") from None
    try:
        ok = (isinstance(info["classes"], list) and info["classes"] and info["features"] in FEATURE_KINDS
              and int(info["window"]) >= 1 and int(info["n_features"]) == FEATURE_SIZES[info["features"]])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelDirError(f"{path}: malformed (needs classes, features, window, n_features)")
    return info


def load_predictor(model_dir, backend: str = "tflite"):
    """(info, predictor) of a model directory; predictor(window (W, F)) -> probabilities (C,)."""
    info = load_info(model_dir)
    name = "model.tflite" if backend == "tflite" else "model.keras"
    path = Path(model_dir) / name
    if not path.is_file():
        raise ModelDirError(f"{path}: missing")
    try:
        predictor = TfliteModel(path) if backend == "tflite" else KerasModel(path)
        probs = predictor(np.zeros((int(info["window"]), int(info["n_features"])), np.float32))
    except Exception as exc:
        raise ModelDirError(f"{path}: cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if probs.shape != (len(info["classes"]),):
        raise ModelDirError(f"{path}: gives {probs.shape[0]} outputs but labels.json lists {len(info['classes'])} classes")
    return info, predictor


class StreamWindow:
    """One person's state in the `lstm` kind (and a clip's in classify_clip): features of the last
    `window` frames, carried-forward features for no-person frames, and the answering rule.

    `push(px, layout, width, height)` (px None for no person) returns the window to classify,
    or None when there is no answer yet: before any person has been seen, or before
    `min_frames` frames (counting no-person frames after the first person) have been seen.
    Early windows are padded by repeating the newest frame (the training padding rule).
    """

    def __init__(self, kind: str, window: int, min_frames: int = 8):
        self.kind, self.window, self.min_frames = kind, int(window), max(1, int(min_frames))
        self.frames: deque = deque(maxlen=self.window)
        self.last = None  # features of the last frame with a person
        self.seen = 0

    def push(self, px, layout=None, width=None, height=None):
        if px is None:
            feats = None if self.last is None else self.last
        else:
            points = np.asarray(px, dtype=np.float32)[None]
            feats = features(points, layout or lm.layout_of(points[0]), self.kind, width, height, previous=self.last)[0]
            if person_mask(points)[0]:
                self.last = feats
        if feats is None:  # no person yet: zeros go into the window, as in training
            feats = np.zeros(FEATURE_SIZES[self.kind], np.float32)
        self.frames.append(feats)
        if self.last is None:
            return None
        self.seen += 1
        if self.seen < self.min_frames and len(self.frames) < self.window:
            return None
        return pad_window(np.stack(self.frames), self.window)


def packet_points(packet) -> tuple:
    """(px, layout, width, height) of a landmarks packet (a dict, or a bare (K, 4) array);
    px None when there is no person, the others None when the packet does not say."""
    if packet is None or not isinstance(packet, dict):
        return packet, None, None, None
    return packet.get("px"), packet.get("layout"), packet.get("width"), packet.get("height")


class LstmClassifier:
    """A model directory loaded for live classification (the `lstm` kind): a `StreamWindow`
    per person (`new_window`), which people it can take (`unusable`), and the answer for a
    window (`answer`)."""

    def __init__(self, model_dir, backend: str = "tflite"):
        self.info, self.predictor = load_predictor(model_dir, backend)
        self.kind = self.info["features"]
        self.classes = list(self.info["classes"])
        self.n_features = int(self.info["n_features"])

    def new_window(self, min_frames: int = 8) -> StreamWindow:
        return StreamWindow(self.kind, int(self.info["window"]), min_frames)

    def unusable(self, px, layout) -> str | None:
        """Why a person (landmarks `px` of `layout`; None: nobody) cannot be fed to this model,
        or None. `blazepose_xyzv` and `embed` need BlazePose-33 points; a custom layout must
        give as many features as the model takes (coco_xy: all 17 COCO points)."""
        if px is None:
            return None
        if self.kind != "coco_xy":
            found = layout or lm.layout_of(px)
            if found != lm.BLAZEPOSE33:
                return (f"features {self.kind!r} need blazepose33 landmarks, got {found!r}: such people get no "
                        "answer (coco_xy models work on any layout)")
        if lm.is_custom(layout):
            size = feature_size(self.kind, layout)
            if size != self.n_features:
                return (f"takes {self.n_features} {self.kind} features per frame, a person of layout {layout!r} "
                        f"gives {size}: such people get no answer")
        return None

    def answer(self, window: np.ndarray) -> dict:
        """The votes packet of one window: {"votes": {class: probability}, "label": the most probable}."""
        probs = self.predictor(window)
        return {"votes": {c: float(p) for c, p in zip(self.classes, probs)}, "label": self.classes[int(probs.argmax())]}

    def close(self) -> None:
        self.predictor = None


def classify_clip(model_dir, sequence, backend: str = "tflite", min_frames: int = 1, predictor=None) -> np.ndarray:
    """Per-frame class probabilities (T, C) of a Sequence, frame by frame exactly as the
    `lstm` node answers (NaN rows where it would not answer yet). Classes: labels.json."""
    if predictor is None:
        info, predictor = load_predictor(model_dir, backend)
    else:
        info = load_info(model_dir)
    stream = StreamWindow(info["features"], int(info["window"]), min_frames)
    probs = np.full((len(sequence.points), len(info["classes"])), np.nan, np.float32)
    mask = person_mask(sequence.points)
    for t, row in enumerate(sequence.points):
        win = stream.push(row if mask[t] else None, sequence.layout, sequence.width, sequence.height)
        if win is not None:
            probs[t] = predictor(win)
    return probs
