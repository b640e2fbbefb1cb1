"""Training the LSTM action classifier (posegraph.pose.lstm): augmentation, the Keras model, training, TFLite export."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from posegraph.pose import landmarks as lm
from posegraph.pose.lstm import (DEFAULT_WINDOW, FEATURE_KINDS, FEATURE_SIZES, NORMALISATION, TfliteModel, _quiet_tf,
                                 features, person_mask, windows)


# ----- augmentation --------------------------------------------------------------------------
def mirror_points(points: np.ndarray, layout: str, width: float) -> np.ndarray:
    """(T, K, 4) -> the clip seen in a mirror: left/right landmarks swapped (posegraph.pose.landmarks
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
    from posegraph.pose.sequences import split_by_clip

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
