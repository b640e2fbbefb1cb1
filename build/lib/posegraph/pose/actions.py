"""Action classifiers over windows of pose features (the `lstm` and `tcn` kinds): features,
time, windows, the model directory, and live classification that can say "unknown".

Features (`features(points, layout, kind, width, height, world=...)` -> float32 (T, F)):

- `body3d` (51): BlazePose's world landmarks turned into the body's own frame
  (posegraph.pose.body.body_features: hips at the origin, the hip line along x, torso
  lengths, the vertical kept), 17 joints x 3. It does not change when the camera moves
  round the person, which is what makes a model hold on footage from other cameras.
  Needs world landmarks (BlazePose backends).
- `coco_xy` (34): COCO-17 x,y centred on the hips' midpoint and divided by the torso size
  (posegraph.pose.features.normalized_keypoints); any layout. Image coordinates depend on
  the camera, so training renders each clip's world skeleton from many viewpoints.
  A custom layout gives 2 values per COCO-17 point it has (`feature_size`).
- `blazepose_xyzv` (132) and `embed` (69): image-normalised BlazePose landmarks and the ML
  Kit embedding / 100, as the first LSTM models used; blazepose33 only.

Frames with no person (all-NaN rows) take the previous frame's features (carried
forward); frames before the first person get zeros. The model standardises its inputs
with a Normalization layer holding the training windows' mean and variance.

Time: a model with a `rate` (frames per second) sees its window at that rate whatever the
camera's: the frames are resampled by their timestamps (`pts_ms`), so a 10 frames/s GIF
and a 60 frames/s phone clip show the same motion in the same number of frames. Windows
end at the newest frame; early on, the oldest frame is repeated to fill them (training
does the same). Models without a rate (the first LSTM models) take frames as they come
and pad a short window at the end with the newest frame.

"unknown": the model gives an embedding beside its class probabilities; labels.json holds
each known class's prototype (the mean embedding of its training windows) and a distance
threshold calibrated by the training command on held-out clips (posegraph.pose.openset).
A window farther than that from every prototype, or whose most probable class is the
background class "unknown" (trained on clips of other motions), is answered "unknown".

A model directory holds: model.keras, model.tflite (builtin ops only; outputs: class
probabilities and the embedding), labels.json, curves.png, confusion.png, metrics.json.
"""
from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import numpy as np

from posegraph.pose import body
from posegraph.pose import features as emb
from posegraph.pose import landmarks as lm
from posegraph.pose.openset import UNKNOWN, Threshold

FEATURE_KINDS = ("body3d", "angles3d", "coco_xy", "blazepose_xyzv", "embed")
FEATURE_SIZES = {"body3d": len(body.JOINTS) * 3, "angles3d": len(body.ANGLE_NAMES), "coco_xy": 34, "blazepose_xyzv": 132,
                 "embed": 69}
WORLD_KINDS = ("body3d", "angles3d")  # computed from world landmarks
NORMALISATION = {
    "body3d": "BlazePose world landmarks in the body's frame (posegraph.pose.body.body_features): 17 joints x 3",
    "angles3d": "3-D joint angles and the torso's inclination from BlazePose world landmarks (posegraph.pose.body.joint_angles)",
    "coco_xy": "COCO-17 x,y minus the hips' midpoint, divided by the torso size (posegraph.pose.features.normalized_keypoints)",
    "blazepose_xyzv": "BlazePose-33 x / width, y / height, z_px / width, visibility",
    "embed": "ML Kit embedding (posegraph.pose.features.mlkit_embedding, 23 x 3) / 100, flattened",
}
ARCHITECTURES = ("tcn", "lstm")
DEFAULT_WINDOW = 32
DEFAULT_RATE = 15.0
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
def _frame_features(points: np.ndarray, world, layout: str, kind: str, width, height) -> np.ndarray:
    """(n, K, >=3) points (and world) of frames that all have a person -> (n, F) float64."""
    if kind == "coco_xy":
        return emb.normalized_keypoints(points[..., :2], layout)
    if layout != lm.BLAZEPOSE33:
        raise ValueError(f"features {kind!r} need blazepose33 landmarks, got {layout!r} (coco_xy works on any layout)")
    if kind in WORLD_KINDS:
        if world is None or not np.isfinite(np.asarray(world)[..., :3]).all():
            raise ValueError(f"features {kind!r} need world landmarks (a BlazePose backend)")
        return body.body_features(world) if kind == "body3d" else body.joint_angles(world)
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
             previous: np.ndarray | None = None, world: np.ndarray | None = None) -> np.ndarray:
    """(T, K, 4) landmarks [x_px, y_px, z_px, visibility] (and (T, K, 4) world landmarks for
    body3d) -> float32 (T, F).

    No-person frames (NaN rows; for body3d also frames without world landmarks) carry the
    previous frame's features forward; before the first person, `previous` (the node passes
    its person's last features) or zeros.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3:
        raise ValueError(f"points must be (T, K, 4), got {pts.shape}")
    out = np.zeros((pts.shape[0], feature_size(kind, layout)), dtype=np.float32)
    valid = person_mask(pts)
    world_rows = None
    if kind in WORLD_KINDS:
        if world is None:
            raise ValueError(f"features {kind!r} need world landmarks (a BlazePose backend)")
        world_rows = np.asarray(world, dtype=np.float64)
        valid &= np.isfinite(world_rows[..., :3]).all(axis=(-1, -2))
    if valid.any():
        clean = np.nan_to_num(pts[valid], nan=0.0)  # a stray NaN (e.g. visibility) must not poison the model
        out[valid] = _frame_features(clean, None if world_rows is None else world_rows[valid], layout, kind, width, height)
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
    the newest frame repeated (the padding of models without a rate)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[0] >= length:
        return frames[-length:]
    pad = np.repeat(frames[-1:], length - frames.shape[0], axis=0)
    return np.concatenate([frames, pad], axis=0)


def windows(feats: np.ndarray, length: int = DEFAULT_WINDOW, stride: int = 4) -> np.ndarray:
    """(T, F) -> (N, length, F): windows starting every `stride` frames; a clip shorter than
    `length` gives one window padded by repeating its last frame; an empty clip none.
    (Models without a rate.)"""
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


def resample(times: np.ndarray, feats: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(n,) increasing times and (n, F) features -> (len(at), F) linearly interpolated at
    `at`; before the first time the first frame, after the last the last."""
    times = np.asarray(times, dtype=np.float64)
    feats = np.asarray(feats, dtype=np.float64)
    out = np.empty((len(at), feats.shape[1]), dtype=np.float32)
    for j in range(feats.shape[1]):
        out[:, j] = np.interp(at, times, feats[:, j])
    return out


def window_times(end: float, length: int, rate: float) -> np.ndarray:
    """The `length` times, `1 / rate` apart, of a window whose last frame is at `end`."""
    return end - (length - 1 - np.arange(length)) / rate


def timed_windows(feats: np.ndarray, fps: float, rate: float, length: int = DEFAULT_WINDOW, stride: int = 2,
                  first: int = 0) -> np.ndarray:
    """(T, F) features of a clip at `fps` -> (N, length, F): windows at `rate` ending every
    `stride` resampled frames from the `first`-th on (the clip's last frame always ends one),
    each filled before the clip's start by repeating its first frame, as the node does."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.shape[0] == 0:
        return np.zeros((0, length, feats.shape[1]), np.float32)
    times = np.arange(feats.shape[0]) / float(fps)
    grid = np.arange(0.0, times[-1] + 1e-9, 1.0 / rate)
    ends = list(range(min(first, len(grid) - 1), len(grid), stride))
    if ends[-1] != len(grid) - 1:
        ends.append(len(grid) - 1)
    return np.stack([resample(times, feats, window_times(grid[e], length, rate)) for e in ends])


class FrameWindow:
    """One person's window for a model without a rate: features of the last `window` frames
    as they came, carried forward over no-person frames; early windows padded at the end
    with the newest frame. `push` returns the window to classify or None (no answer yet:
    no person so far, or fewer than `min_frames` frames)."""

    def __init__(self, kind: str, window: int, min_frames: int = 8):
        self.kind, self.window, self.min_frames = kind, int(window), max(1, int(min_frames))
        self.frames: deque = deque(maxlen=self.window)
        self.last = None  # features of the last frame with a person
        self.seen = 0

    def push(self, feats, t=None):
        """`feats` of this frame (None: nobody); `t` is ignored (frames as they come)."""
        if feats is not None:
            self.last = feats
        if self.last is None:
            self.frames.append(np.zeros(FEATURE_SIZES[self.kind], np.float32))  # as training: zeros first
            return None
        self.frames.append(self.last)
        self.seen += 1
        if self.seen < self.min_frames and len(self.frames) < self.window:
            return None
        return pad_window(np.stack(self.frames), self.window)


class TimedWindow:
    """One person's window for a model with a `rate`: recent frames with their times,
    resampled to the model's rate at every answer (see the module doc)."""

    def __init__(self, kind: str, window: int, rate: float, min_frames: int = 8):
        self.kind, self.window, self.rate, self.min_frames = kind, int(window), float(rate), max(1, int(min_frames))
        self.span = (self.window - 1) / self.rate  # seconds a window covers
        self.times: deque = deque()
        self.frames: deque = deque()
        self.last = None
        self.seen = 0
        self.clock = 0.0  # frames without a time are taken to come at the model's rate

    def push(self, feats, t=None):
        """`feats` of this frame (None: nobody, the last features carry on) at time `t`
        (seconds; None: 1 / rate after the previous frame)."""
        if feats is not None:
            self.last = feats
        if self.last is None:
            return None
        t = self.clock + 1.0 / self.rate if t is None else float(t)
        if self.times and t <= self.times[-1]:
            t = self.times[-1] + 1e-6  # a repeated or backwards timestamp keeps the order
        self.clock = t
        self.times.append(t)
        self.frames.append(self.last)
        while len(self.times) > 2 and self.times[1] <= t - self.span:
            self.times.popleft()
            self.frames.popleft()
        self.seen += 1
        if self.seen < self.min_frames:
            return None
        return resample(np.array(self.times), np.stack(self.frames), window_times(t, self.window, self.rate))


# ----- the model -----------------------------------------------------------------------------
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (imported here only: training/export need it)

    return tf


def _split_outputs(outputs: list[np.ndarray], n_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities, embedding or None) of a model's outputs, told apart by size."""
    probs = next(o for o in outputs if o.shape[-1] == n_classes)
    embedding = next((o for o in outputs if o.shape[-1] != n_classes), None)
    return probs, embedding


class TfliteModel:
    """One window -> (class probabilities, embedding or None) through ai_edge_litert (no TensorFlow)."""

    def __init__(self, path, n_classes: int | None = None, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.outputs = [o["index"] for o in self.interpreter.get_output_details()]
        self.input_index = inp["index"]
        self.input_shape = tuple(int(x) for x in inp["shape"])
        self.n_classes = n_classes
        self._buffer = np.zeros(self.input_shape, np.float32)

    def __call__(self, window: np.ndarray):
        self._buffer[0] = window
        self.interpreter.set_tensor(self.input_index, self._buffer)
        self.interpreter.invoke()
        outputs = [self.interpreter.get_tensor(i)[0].copy() for i in self.outputs]
        if self.n_classes is None:
            return outputs[0], None
        return _split_outputs(outputs, self.n_classes)


class KerasModel:
    """One window -> (class probabilities, embedding or None) through the Keras model (imports TensorFlow)."""

    def __init__(self, path, n_classes: int):
        _quiet_tf()
        import keras

        self.model = keras.models.load_model(str(path), compile=False)
        self.n_classes = n_classes
        self._call = None

    def __call__(self, window: np.ndarray):
        import tensorflow as tf

        if self._call is None:
            model = self.model
            self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        result = self._call(np.asarray(window, np.float32)[None])
        outputs = [np.asarray(o)[0] for o in (result if isinstance(result, (list, tuple)) else [result])]
        return _split_outputs(outputs, self.n_classes)


def load_info(model_dir) -> dict:
    """labels.json of a model directory, checked; ModelDirError (one line) otherwise."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelDirError(f"{model_dir}: no such model directory (train one with: posegraph train-tcn DATA.npz -o DIR)")
    path = model_dir / "labels.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelDirError(f"{path}: missing (not a model directory written by train-tcn or train-lstm)") from None
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{path}: unreadable ({exc})") from None
    try:
        ok = (isinstance(info["classes"], list) and info["classes"] and info["features"] in FEATURE_KINDS
              and int(info["window"]) >= 1 and int(info["n_features"]) >= 1
              and float(info.get("rate", 0.0)) >= 0.0)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ModelDirError(f"{path}: malformed (needs classes, features, window, n_features)")
    return info


def load_predictor(model_dir, backend: str = "tflite"):
    """(info, predictor) of a model directory; predictor(window (W, F)) -> (probabilities (C,), embedding or None)."""
    info = load_info(model_dir)
    name = "model.tflite" if backend == "tflite" else "model.keras"
    path = Path(model_dir) / name
    if not path.is_file():
        raise ModelDirError(f"{path}: missing")
    n_classes = len(info["classes"])
    try:
        if backend == "tflite":
            predictor = TfliteModel(path, n_classes if info.get("embedding") else None)
        else:
            predictor = KerasModel(path, n_classes)
        probs, _ = predictor(np.zeros((int(info["window"]), int(info["n_features"])), np.float32))
    except Exception as exc:
        raise ModelDirError(f"{path}: cannot load it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if probs.shape != (n_classes,):
        raise ModelDirError(f"{path}: gives {probs.shape[0]} outputs but labels.json lists {n_classes} classes")
    return info, predictor


def packet_points(packet) -> tuple:
    """(px, layout, width, height, world, t) of a landmarks packet (a dict, or a bare (K, 4)
    array); px None when there is no person, the others None when the packet does not say
    (t: seconds, from the packet's pts_ms)."""
    if packet is None or not isinstance(packet, dict):
        return packet, None, None, None, None, None
    pts = packet.get("pts_ms")
    return (packet.get("px"), packet.get("layout"), packet.get("width"), packet.get("height"), packet.get("world"),
            None if pts is None else float(pts) / 1000.0)


class ActionClassifier:
    """A model directory loaded for live classification (the `lstm` and `tcn` kinds): a
    window per person (`new_window`), which people it can take (`unusable`), the features of
    a person (`frame`), and the answer for a window (`answer`, "unknown" included)."""

    def __init__(self, model_dir, backend: str = "tflite"):
        self.info, self.predictor = load_predictor(model_dir, backend)
        self.kind = self.info["features"]
        self.classes = list(self.info["classes"])
        self.n_features = int(self.info["n_features"])
        self.rate = float(self.info.get("rate", 0.0))
        unknown = self.info.get("unknown") or {}
        self.known = [c for c in self.classes if c != UNKNOWN]
        self.prototypes = np.asarray(unknown["prototypes"], np.float64) if unknown.get("prototypes") else None
        self.threshold = Threshold.from_dict(unknown["threshold"]).value if unknown.get("threshold") else None


    def new_window(self, min_frames: int = 8):
        if self.rate > 0:
            return TimedWindow(self.kind, int(self.info["window"]), self.rate, min_frames)
        return FrameWindow(self.kind, int(self.info["window"]), min_frames)

    def unusable(self, px, layout, world=None) -> str | None:
        """Why a person (landmarks `px` of `layout`; None: nobody) cannot be fed to this model,
        or None. `body3d` needs world landmarks; `blazepose_xyzv` and `embed` BlazePose-33
        points; a custom layout must give as many features as the model takes."""
        if px is None:
            return None
        found = layout or lm.layout_of(px)
        if self.kind != "coco_xy" and found != lm.BLAZEPOSE33:
            return (f"features {self.kind!r} need blazepose33 landmarks, got {found!r}: such people get no "
                    "answer (coco_xy models work on any layout)")
        if self.kind in WORLD_KINDS and (world is None or not np.isfinite(np.asarray(world)[:, :3]).all()):
            return f"features {self.kind!r} need world landmarks (a BlazePose backend): such people get no answer"
        if lm.is_custom(layout):
            size = feature_size(self.kind, layout)
            if size != self.n_features:
                return (f"takes {self.n_features} {self.kind} features per frame, a person of layout {layout!r} "
                        f"gives {size}: such people get no answer")
        return None

    def frame(self, px, layout=None, width=None, height=None, world=None):
        """One person's features for this frame (None: nobody, or no world landmarks for body3d)."""
        if px is None:
            return None
        points = np.asarray(px, dtype=np.float32)[None]
        if not person_mask(points)[0]:
            return None
        worlds = None if world is None else np.asarray(world, dtype=np.float32)[None]
        if self.kind in WORLD_KINDS and (worlds is None or not np.isfinite(worlds[..., :3]).all()):
            return None
        return features(points, layout or lm.layout_of(points[0]), self.kind, width, height, world=worlds)[0]

    def distance(self, embedding: np.ndarray, label: str) -> float | None:
        """Cosine distance of an embedding to the prototype of class `label` (None: no prototypes)."""
        if self.prototypes is None or embedding is None or label not in self.known:
            return None
        e = np.asarray(embedding, np.float64)
        norm = np.linalg.norm(e)
        if norm < 1e-12:
            return 1.0
        return float(1.0 - self.prototypes[self.known.index(label)] @ (e / norm))

    def answer(self, window: np.ndarray) -> dict:
        """The votes packet of one window: {"votes": {class: probability}, "label": the answer,
        "distance": to the answered class's prototype}; a rejected window puts every vote on "unknown"."""
        probs, embedding = self.predictor(window)
        label = self.classes[int(probs.argmax())]
        distance = self.distance(embedding, label)
        if self.threshold is not None and distance is not None and distance > self.threshold:
            label = UNKNOWN
        votes = {c: float(p) for c, p in zip(self.classes, probs)}
        if label == UNKNOWN:
            votes = {c: 0.0 for c in self.classes if c != UNKNOWN} | {UNKNOWN: 1.0}
        packet = {"votes": votes, "label": label}
        if distance is not None:
            packet["distance"] = round(distance, 5)
        return packet

    def close(self) -> None:
        self.predictor = None


def classify_clip(classifier: ActionClassifier, sequence, min_frames: int = 1) -> list:
    """Per-frame votes packets of a Sequence, frame by frame exactly as the node answers
    (None where it would not answer yet)."""
    window = classifier.new_window(min_frames)
    answers = []
    mask = person_mask(sequence.points)
    for t in range(len(sequence.points)):
        feats = None
        if mask[t]:
            feats = classifier.frame(sequence.points[t], sequence.layout, sequence.width, sequence.height, sequence.world[t])
        win = window.push(feats, t / sequence.fps)
        answers.append(None if win is None else classifier.answer(win))
    return answers
