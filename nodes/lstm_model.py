"""LSTM action classifier over windows of pose features: features, windows, augmentation,
the Keras model, training, TFLite export and clip evaluation (no engine code here).

Features (`features(points, layout, kind, width, height)` -> float32 (T, F)):

- `coco_xy` (34): COCO-17 x,y centred on the hips' midpoint and divided by the torso size
  (the Detectron2 + LSTM write-up's body-normalised keypoints; nodes.embed.normalized_keypoints).
  BlazePose-33 input is converted to COCO-17 through nodes.landmarks; works on both layouts.
  A custom layout (nodes/landmarks.py) gives 2 values per COCO-17 point it has
  (`feature_size`), so only a model trained on as many features can take it.
- `blazepose_xyzv` (132): BlazePose-33 x / width, y / height, z / width, visibility (the
  Keras write-up's landmarks normalised by the image size); blazepose33 only.
- `embed` (69): the ML Kit embedding (nodes.embed.mlkit_embedding, 23 x 3) flattened and
  divided by 100 (the embedding is scaled x100; /100 keeps LSTM inputs near unit size);
  blazepose33 only.

Frames with no person (all-NaN rows) take the previous frame's features (carried forward);
frames before the first person get zeros. The `lstm` node does the same, so what it sees at
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

import contextlib
import io
import json
import os
from collections import deque
from pathlib import Path

import numpy as np

from . import embed as emb
from . import landmarks as lm

FEATURE_KINDS = ("coco_xy", "blazepose_xyzv", "embed")
FEATURE_SIZES = {"coco_xy": 34, "blazepose_xyzv": 132, "embed": 69}
NORMALISATION = {
    "coco_xy": "COCO-17 x,y minus the hips' midpoint, divided by the torso size (nodes.embed.normalized_keypoints)",
    "blazepose_xyzv": "BlazePose-33 x / width, y / height, z_px / width, visibility",
    "embed": "ML Kit embedding (nodes.embed.mlkit_embedding, 23 x 3) / 100, flattened",
}
DEFAULT_WINDOW = 32
EMBED_SCALE = 0.01


class ModelDirError(ValueError):
    """A model directory that is missing or unusable; str() is a one-line message."""


def feature_size(kind: str, layout: str = lm.BLAZEPOSE33) -> int:
    """Values per frame of features `kind` on `layout`: FEATURE_SIZES, except coco_xy on a
    custom layout, which has only the COCO-17 points it has (nodes.embed.keypoint_names)."""
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


# ----- augmentation --------------------------------------------------------------------------
def mirror_points(points: np.ndarray, layout: str, width: float) -> np.ndarray:
    """(T, K, 4) -> the clip seen in a mirror: left/right landmarks swapped (nodes.landmarks
    mirror permutation; custom layouts too) and x -> width - x. NaN rows stay NaN."""
    out = np.array(points, dtype=np.float32)[:, lm.mirror_perm(layout)]
    out[..., 0] = width - out[..., 0]
    return out


def time_stretch(points: np.ndarray, factor: float) -> np.ndarray:
    """Resample a clip in time: `factor` > 1 plays it faster (fewer frames), < 1 slower.
    Linear interpolation between neighbouring frames; where either neighbour has no person
    the nearest frame is taken, so no-person frames stay no-person."""
    pts = np.asarray(points, dtype=np.float32)
    t = pts.shape[0]
    if t < 2:
        return pts.copy()
    n = max(1, int(round(t / factor)))
    pos = np.linspace(0.0, t - 1, n)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo)[:, None, None].astype(np.float32)
    out = pts[lo] * (1 - w) + pts[hi] * w
    bad = ~person_mask(out) | ~person_mask(pts[lo]) | ~person_mask(pts[hi])
    nearest = np.rint(pos).astype(int)
    out[bad] = pts[nearest[bad]]
    return out


def jitter(points: np.ndarray, sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of `sigma_px` pixels on x, y, z (visibility untouched)."""
    out = np.array(points, dtype=np.float32)
    out[..., :3] += rng.normal(0.0, sigma_px, size=out[..., :3].shape).astype(np.float32)
    return out


def augment(sequences, copies: int = 2, mirror: bool = True, stretch=(0.8, 1.2), jitter_frac: float = 0.005,
            seed: int = 0) -> list[tuple[np.ndarray, object]]:
    """(points, sequence) pairs: each original, its mirror (if `mirror`), and `copies` variants
    of each of those with a random time stretch in `stretch` and Gaussian jitter of
    `jitter_frac` x the image's larger side (in pixels)."""
    rng = np.random.default_rng(seed)
    out = []
    for seq in sequences:
        bases = [seq.points]
        if mirror:
            bases.append(mirror_points(seq.points, seq.layout, seq.width))
        for base in bases:
            out.append((base, seq))
            for _ in range(copies):
                pts = time_stretch(base, float(rng.uniform(*stretch)))
                pts = jitter(pts, jitter_frac * max(seq.width, seq.height), rng)
                out.append((pts, seq))
    return out


# ----- the model -----------------------------------------------------------------------------
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # noqa: F401  (imported here only: training/export need it)

    return tf


def build_model(window: int, n_features: int, n_classes: int, hidden: int = 50, dropout: float = 0.2,
                mean=None, variance=None, batch_size: int | None = None):
    """Keras Sequential: Normalization (fixed mean/variance) -> LSTM(hidden, unroll=True) ->
    Dropout (if > 0) -> Dense softmax."""
    _quiet_tf()
    import keras

    mean = np.zeros(n_features) if mean is None else np.asarray(mean, dtype=np.float64)
    variance = np.ones(n_features) if variance is None else np.asarray(variance, dtype=np.float64)
    layers = [keras.Input((window, n_features), batch_size=batch_size, name="window"),
              keras.layers.Normalization(mean=mean, variance=variance, name="standardise"),
              keras.layers.LSTM(hidden, unroll=True, name="lstm")]
    if dropout > 0:
        layers.append(keras.layers.Dropout(dropout, name="dropout"))
    layers.append(keras.layers.Dense(n_classes, activation="softmax", name="classes"))
    return keras.Sequential(layers, name="lstm_classifier")


def export_tflite(model, path) -> bytes:
    """float32 TFLite with builtin ops only and a fixed batch of 1; written to `path`."""
    tf = _quiet_tf()

    window, n_features = model.input_shape[1:]
    lstm = model.get_layer("lstm")
    norm = model.get_layer("standardise").get_config()  # mean/variance are constants, not weights
    one = build_model(window, n_features, model.output_shape[-1], lstm.units, 0.0, norm["mean"], norm["variance"],
                      batch_size=1)
    one.set_weights(model.get_weights())  # Dropout has no weights, so leaving it out changes nothing
    converter = tf.lite.TFLiteConverter.from_keras_model(one)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the temporary SavedModel's signature
        data = converter.convert()
    Path(path).write_bytes(data)
    return data


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
    """The per-stream state of the `lstm` node (and of classify_clip): features of the last
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


# ----- training ------------------------------------------------------------------------------
def dataset_windows(items, kind: str, window: int, stride: int, classes: list[str]):
    """(X (N, window, F), y (N,), clip ids (N,)) from (points, sequence) pairs or Sequences."""
    xs, ys, ids = [], [], []
    for item in items:
        points, seq = item if isinstance(item, tuple) else (item.points, item)
        w = windows(features(points, seq.layout, kind, seq.width, seq.height), window, stride)
        xs.append(w)
        ys += [classes.index(seq.label)] * len(w)
        ids += [seq.clip_id] * len(w)
    n_features = FEATURE_SIZES[kind]
    x = np.concatenate(xs) if xs else np.zeros((0, window, n_features), np.float32)
    return x.astype(np.float32), np.array(ys, dtype=np.int64), np.array(ids)


def choose_val_clips(sequences, fraction: float, seed: int) -> list[str]:
    """Clip ids for validation: about `fraction` of each class's clips (at least one when the
    class has two or more, never all of a class's clips), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    chosen = []
    by_class: dict[str, list[str]] = {}
    for s in sequences:
        ids = by_class.setdefault(s.label, [])
        if s.clip_id not in ids:
            ids.append(s.clip_id)
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        if fraction <= 0 or len(ids) < 2:
            continue
        k = min(len(ids) - 1, max(1, int(round(fraction * len(ids)))))
        chosen += [ids[i] for i in sorted(rng.choice(len(ids), size=k, replace=False))]
    return chosen


def _plot_curves(history: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    a.plot(epochs, history["loss"], label="train")
    if "val_loss" in history:
        a.plot(epochs, history["val_loss"], label="validation")
    a.set(title="loss", xlabel="epoch")
    a.legend()
    b.plot(epochs, history["accuracy"], label="train")
    if "val_accuracy" in history:
        b.plot(epochs, history["val_accuracy"], label="validation")
    b.set(title="accuracy", xlabel="epoch", ylim=(0, 1.02))
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def confusion_matrix(y_true, y_pred, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def _plot_confusion(matrix: np.ndarray, classes: list[str], path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.8 * n, 1.6 + 0.8 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if top and matrix[i, j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _per_class(y_true, y_pred, classes) -> dict:
    out = {}
    for i, c in enumerate(classes):
        sel = y_true == i
        out[c] = {"windows": int(sel.sum()), "accuracy": float((y_pred[sel] == i).mean()) if sel.any() else None}
    return out


def train(sequences, out_dir, kind: str = "coco_xy", window: int = DEFAULT_WINDOW, stride: int = 4, hidden: int = 50,
          epochs: int = 100, batch: int = 32, val_clips=None, val_fraction: float = 0.2, seed: int = 0,
          dropout: float = 0.2, learning_rate: float = 1e-3, patience: int = 15, augment_copies: int = 2,
          mirror: bool = True, verbose: int = 2, log=print) -> dict:
    """Train, export and evaluate; returns the metrics (also written to out_dir/metrics.json).

    Validation is by clip: `val_clips` (ids) if given, else `choose_val_clips(val_fraction)`;
    no window of a validation clip is trained on. Augmentation (mirror, time stretch, jitter)
    applies to the training clips only. Adam, ReduceLROnPlateau and EarlyStopping on the
    validation loss (the training loss when there is no validation clip), best weights kept.
    """
    from .sequences import split_by_clip

    sequences = list(sequences)
    if not sequences:
        raise ValueError("no sequences to train on")
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")
    layouts = sorted({s.layout for s in sequences})
    if kind != "coco_xy" and layouts != [lm.BLAZEPOSE33]:
        raise ValueError(f"features {kind!r} need blazepose33 clips; the data set has {', '.join(layouts)} (use coco_xy)")
    classes = sorted({s.label for s in sequences})
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes, the data set has {len(classes)}: {', '.join(classes)}")
    val_ids = list(val_clips) if val_clips is not None else choose_val_clips(sequences, val_fraction, seed)
    train_seqs, val_seqs = split_by_clip(sequences, val_ids)
    missing = [c for c in classes if not any(s.label == c for s in train_seqs)]
    if missing:
        raise ValueError(f"no training clip left for class(es) {', '.join(missing)} after the validation split")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tf = _quiet_tf()
    import keras

    keras.utils.set_random_seed(seed)
    items = augment(train_seqs, copies=augment_copies, mirror=mirror, seed=seed) if augment_copies >= 0 else train_seqs
    x_train, y_train, _ = dataset_windows(items, kind, window, stride, classes)
    x_val, y_val, _ = dataset_windows(val_seqs, kind, window, stride, classes)
    flat = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean, variance = flat.mean(axis=0), np.maximum(flat.var(axis=0), 1e-6)
    model = build_model(window, x_train.shape[-1], len(classes), hidden, dropout, mean, variance)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    counts = np.bincount(y_train, minlength=len(classes))
    class_weight = {i: float(len(y_train) / (len(classes) * c)) for i, c in enumerate(counts) if c}
    monitor = "val_loss" if len(x_val) else "loss"
    best_path = out_dir / "model.keras"
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(2, patience // 3), min_lr=1e-5),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(str(best_path), monitor=monitor, save_best_only=True),
    ]
    log(f"training {kind} LSTM({hidden}) on {len(train_seqs)} clips ({len(x_train)} windows incl. augmentation), "
        f"validating on {len(val_seqs)} clips ({len(x_val)} windows); classes: {', '.join(classes)}")
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val) if len(x_val) else None, epochs=epochs,
                        batch_size=batch, shuffle=True, class_weight=class_weight, callbacks=callbacks,
                        verbose=verbose)
    model = keras.models.load_model(str(best_path), compile=False)  # the best checkpoint
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}

    tflite_path = out_dir / "model.tflite"
    export_tflite(model, tflite_path)
    # The export must agree with Keras on real windows.
    check = np.concatenate([x_val[:16], x_train[:16]]) if len(x_val) else x_train[:32]
    keras_probs = model.predict(check, verbose=0)
    lite = TfliteModel(tflite_path)
    lite_probs = np.stack([lite(w) for w in check])
    max_diff = float(np.abs(keras_probs - lite_probs).max())
    if max_diff > 1e-4:
        raise RuntimeError(f"the TFLite export disagrees with Keras by {max_diff:.2e} (> 1e-4)")

    info = {
        "classes": classes, "features": kind, "n_features": int(x_train.shape[-1]), "window": int(window),
        "layout": layouts[0] if len(layouts) == 1 else layouts, "normalisation": NORMALISATION[kind],
        "standardisation": "inside the model (Normalization layer: training windows' per-feature mean/variance)",
        "no_person": "features carried forward from the previous frame; zeros before the first person",
        "padding": "windows shorter than `window` repeat their newest frame at the end",
        "hidden": int(hidden), "stride": int(stride),
    }
    (out_dir / "labels.json").write_text(json.dumps(info, indent=1))

    train_pred = np.argmax(model.predict(x_train, verbose=0), axis=1) if len(x_train) else np.zeros(0, int)
    val_pred = np.argmax(model.predict(x_val, verbose=0), axis=1) if len(x_val) else np.zeros(0, int)
    matrix = confusion_matrix(y_val, val_pred, len(classes)) if len(x_val) else confusion_matrix(y_train, train_pred, len(classes))
    _plot_curves(hist, out_dir / "curves.png")
    _plot_confusion(matrix, classes, out_dir / "confusion.png",
                    "validation windows" if len(x_val) else "training windows (no validation clips)")
    metrics = {
        "train_accuracy": float((train_pred == y_train).mean()) if len(x_train) else None,
        "val_accuracy": float((val_pred == y_val).mean()) if len(x_val) else None,
        "per_class_val": _per_class(y_val, val_pred, classes) if len(x_val) else None,
        "per_class_train": _per_class(y_train, train_pred, classes),
        "confusion": matrix.tolist(), "confusion_of": "validation" if len(x_val) else "training",
        "epochs": len(hist["loss"]), "best_epoch": int(np.argmin(hist[monitor])) + 1, "history": hist,
        "clips": {"train": sorted({s.clip_id for s in train_seqs}), "val": sorted({s.clip_id for s in val_seqs})},
        "windows": {"train": int(len(x_train)), "val": int(len(x_val))},
        "tflite_max_abs_diff": max_diff, "features": kind, "window": int(window), "hidden": int(hidden),
        "seed": int(seed),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    del tf
    return metrics
