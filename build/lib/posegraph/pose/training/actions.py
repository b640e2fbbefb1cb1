"""Training the action classifiers (posegraph.pose.actions): a TCN or an LSTM over windows
of pose features, with augmentation for other people and cameras, "unknown" calibrated on
held-out clips, and a TFLite export (builtin ops only, run by ai_edge_litert).

Splits are by group (who or where a clip was recorded: `Sequence.group`), never by window:
the validation clips, which set early stopping and the "unknown" threshold, show no person
or room the model was fitted on.

Augmentation (training clips only): the mirror image; for `body3d` the world skeleton
tilted by a camera pitch of up to +-20 degrees; for `coco_xy` the world skeleton rendered
from yaw up to +-70 and pitch up to +-20 degrees (viewpoint augmentation) beside the
clip's own image keypoints; a random speed (x0.75-x1.35) and jitter for every copy; in 3 of
10 copies the arms held still in one frame's pose (people squat with their hands on a bar,
on their hips or in front). When the model has a background class, clips of moving
classes also give copies of one of their frames held still, as negatives: standing
between repetitions is no exercise.

Clips whose label is not one of `classes` are negatives (other motions): they train a
background class "unknown" and show how many windows of other motions the threshold
turns away.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np

from posegraph.pose import body
from posegraph.pose import features as emb
from posegraph.pose import landmarks as lm
from posegraph.pose.actions import (ARCHITECTURES, DEFAULT_RATE, DEFAULT_WINDOW, FEATURE_KINDS, FEATURE_SIZES,
                                    NORMALISATION, WORLD_KINDS, ActionClassifier, TfliteModel, _quiet_tf, features,
                                    person_mask, timed_windows, windows)
from posegraph.pose.openset import UNKNOWN, calibrate

EMBEDDING = 32
MIN_CALIBRATION = 20  # held-out windows of known classes needed to set the "unknown" threshold
TCN_DILATIONS = (1, 2, 4)


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
    """(points, sequence) pairs for image-coordinate features: each original, its mirror (if
    `mirror`), and `copies` variants of each with a random time stretch in `stretch` and
    Gaussian jitter of `jitter_frac` x the image's larger side (in pixels)."""
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


ARM_JOINTS = lm.indices(("left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky",
                         "left_index", "right_index", "left_thumb", "right_thumb"))
ARM_SHOULDER = lm.indices(("left_shoulder", "right_shoulder", "left_shoulder", "right_shoulder", "left_shoulder",
                           "right_shoulder", "left_shoulder", "right_shoulder", "left_shoulder", "right_shoulder"))


def held_arms(world: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip with its arms held still in the pose of one random frame (carried with the
    shoulders): people hold their arms every way while they squat or twist (on a bar, on
    their hips, in front), and a model must not learn one person's habit as the exercise."""
    out = np.array(world, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(out[..., :3]).all(axis=(-1, -2)))
    if not len(valid):
        return out
    t0 = rng.choice(valid)
    offset = out[t0, ARM_JOINTS, :3] - out[t0, ARM_SHOULDER, :3]
    out[:, ARM_JOINTS, :3] = out[:, ARM_SHOULDER, :3] + offset
    return out


def _world_view_features(world: np.ndarray, kind: str, yaw: float, pitch: float) -> np.ndarray:
    """(T, 33, 4) world landmarks seen by a camera at `yaw`, `pitch` -> (T, F) features,
    NaN rows where there is no person (carried forward later)."""
    if kind in WORLD_KINDS:
        tilted = body.rotate(np.asarray(world, np.float64)[..., :3], 0.0, pitch)
        return body.body_features(tilted) if kind == "body3d" else body.joint_angles(tilted)
    flat = body.project(world, yaw, pitch)  # coco_xy: what a 2-D pose model would see from there
    return emb.normalized_keypoints(flat, lm.BLAZEPOSE33)


def _carry_forward(feats: np.ndarray) -> np.ndarray:
    """NaN rows take the previous row's values (zeros before the first)."""
    out = np.zeros(feats.shape, np.float32)
    last = np.zeros(feats.shape[1], np.float32)
    for t, row in enumerate(feats):
        if np.isfinite(row).all():
            last = row
        out[t] = last
    return out


def clip_features(seq, kind: str, rng: np.random.Generator | None = None, mirror: bool = False,
                  hold_arms: float = 0.0) -> np.ndarray:
    """(T, F) features of one clip: as the node computes them (rng None), or one augmented
    view of it (a random pitch, and for coco_xy a random yaw, from its world skeleton;
    `mirror` for its mirror image)."""
    has_world = np.isfinite(seq.world[..., :3]).all(axis=(-1, -2)).any()
    if rng is None or kind not in WORLD_KINDS + ("coco_xy",) or not has_world:
        points, world = seq.points, seq.world
        if mirror:
            points = mirror_points(points, seq.layout, seq.width)
            world = body.mirror_world(world) if has_world else world
        return features(points, seq.layout, kind, seq.width, seq.height, world=world if kind in WORLD_KINDS else None)
    world = body.mirror_world(seq.world) if mirror else np.asarray(seq.world, np.float64)
    if rng.uniform() < hold_arms:
        world = held_arms(world, rng)
    yaw = np.radians(rng.uniform(-70.0, 70.0))
    pitch = np.radians(rng.uniform(-20.0, 20.0))
    valid = person_mask(seq.points) & np.isfinite(world[..., :3]).all(axis=(-1, -2))
    feats = np.full((len(world), FEATURE_SIZES[kind]), np.nan, np.float32)
    if valid.any():
        feats[valid] = _world_view_features(world[valid], kind, yaw, pitch)
    return _carry_forward(feats)


# ----- windows of a data set ---------------------------------------------------------------
def dataset_windows(items, kind: str, window: int, stride: int, classes: list[str], rate: float = 0.0):
    """(X (N, window, F), y (N,), clip ids (N,)) from (points, sequence) pairs, (features,
    sequence, fps) triples or Sequences; windows at `rate` (0: frames as they come)."""
    xs, ys, ids = [], [], []
    for item in items:
        if isinstance(item, tuple) and len(item) == 3:
            feats, seq, fps = item
        else:
            points, seq = item if isinstance(item, tuple) else (item.points, item)
            world = seq.world if kind in WORLD_KINDS else None
            feats, fps = features(points, seq.layout, kind, seq.width, seq.height, world=world), seq.fps
        w = timed_windows(feats, fps, rate, window, stride, first=window // 4) if rate > 0 else windows(feats, window, stride)
        xs.append(w)
        ys += [classes.index(seq.label if seq.label in classes else UNKNOWN)] * len(w)
        ids += [seq.clip_id] * len(w)
    n_features = xs[0].shape[-1] if xs else FEATURE_SIZES[kind]
    x = np.concatenate(xs) if xs else np.zeros((0, window, n_features), np.float32)
    return x.astype(np.float32), np.array(ys, dtype=np.int64), np.array(ids)


STILL_SPEED = 1.5  # features per second (torso lengths/s) below which a class is a held pose, not a motion
STILL_COPIES = 1    # held-still views per clip of a moving class (beside its 2 x (1 + copies) views)
STILL = "still"     # the label of held-still copies: not a class, so they train the background class


def motion_speed(seq, kind: str) -> float:
    """How fast a clip moves: the median over frames of the change of its features per
    second (body3d when it has world landmarks, else `kind`'s). A person holding a pose
    gives the landmarks' jitter only (under 1 on the exercise clips: planks, a yoga pose);
    squats, jumping jacks and twists give 2.5 and more."""
    has_world = np.isfinite(seq.world[..., :3]).all(axis=(-1, -2)).any()
    use = "body3d" if has_world else kind
    feats = features(seq.points, seq.layout, use, seq.width, seq.height, world=seq.world if use in WORLD_KINDS else None)
    feats = feats[np.isfinite(feats).all(axis=1)]
    if len(feats) < 3 or not seq.fps:
        return 0.0
    return float(np.median(np.linalg.norm(np.diff(feats, axis=0), axis=1)) * seq.fps)


def moving_classes(sequences, kind: str) -> set[str]:
    """The labels whose clips move (median clip `motion_speed` >= STILL_SPEED)."""
    speeds: dict[str, list[float]] = {}
    for seq in sequences:
        speeds.setdefault(seq.label, []).append(motion_speed(seq, kind))
    return {label for label, values in speeds.items() if np.median(values) >= STILL_SPEED}


def held_still(seq, rng: np.random.Generator):
    """The clip's person holding one of its frames for the clip's length, as a Sequence
    labelled STILL: someone standing between squats, or paused at the bottom, is not doing
    the exercise, and a model that never saw stillness calls it whatever class is nearest."""
    from dataclasses import replace

    valid = np.flatnonzero(person_mask(seq.points) & np.isfinite(seq.world[..., :3]).all(axis=(-1, -2)))
    if not len(valid):
        valid = np.flatnonzero(person_mask(seq.points))
    if not len(valid):
        return None
    t0 = rng.choice(valid)
    frames = len(seq.points)
    return replace(seq, label=STILL, clip_id=f"{seq.clip_id}#still", points=np.repeat(seq.points[t0:t0 + 1], frames, 0),
                   world=np.repeat(seq.world[t0:t0 + 1], frames, 0))


def augmented_items(sequences, kind: str, copies: int, seed: int, stretch=(0.75, 1.35), noise: float = 0.02,
                    hold_arms: float = 0.3, still: int = 0) -> list:
    """(features, sequence, fps) triples of the training clips: each clip as it is, its
    mirror image, and `copies` augmented views of each (module doc); `noise` in the features'
    own units (torso lengths for body3d and coco_xy). Each clip of a moving class also gives
    `still` augmented views of `held_still` copies of it, negatives."""
    rng = np.random.default_rng(seed)
    moving = moving_classes(sequences, kind) if still else set()
    out = []

    def view(source, mirror):
        feats = clip_features(source, kind, rng, mirror, hold_arms)
        feats = feats + rng.normal(0.0, noise, size=feats.shape).astype(np.float32)
        return feats, source, source.fps * float(rng.uniform(*stretch))  # faster or slower

    for seq in sequences:
        for mirror in (False, True):
            out.append((clip_features(seq, kind, None, mirror), seq, seq.fps))
            out += [view(seq, mirror) for _ in range(copies)]
        if seq.label in moving:
            held = (held_still(seq, rng) for _ in range(still))
            out += [view(copy, bool(rng.integers(2))) for copy in held if copy is not None]
    return out


# ----- the model -----------------------------------------------------------------------------
def build_model(window: int, n_features: int, n_classes: int, hidden: int = 50, dropout: float = 0.2,
                mean=None, variance=None, batch_size: int | None = None, arch: str = "lstm",
                embedding: int = EMBEDDING):
    """A Keras model with two outputs, class probabilities ("classes") and an embedding
    ("embedding"): Normalization (fixed mean/variance) -> either LSTM(hidden, unroll=True)
    (its output is the embedding) or a temporal convolution (three Conv1D of `hidden`
    filters, kernel 5, dilations 1, 2, 4, batch norm, ReLU; global average pooling; Dense
    `embedding`) -> Dropout -> Dense softmax."""
    _quiet_tf()
    import keras

    mean = np.zeros(n_features) if mean is None else np.asarray(mean, dtype=np.float64)
    variance = np.ones(n_features) if variance is None else np.asarray(variance, dtype=np.float64)
    inputs = keras.Input((window, n_features), batch_size=batch_size, name="window")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="standardise")(inputs)
    if arch == "lstm":
        x = keras.layers.LSTM(hidden, unroll=True, name="lstm")(x)
        code = keras.layers.Activation("linear", name="embedding")(x)
    elif arch == "tcn":
        for i, rate in enumerate(TCN_DILATIONS):
            x = keras.layers.Conv1D(hidden, 5, padding="same", dilation_rate=rate, name=f"conv{i}")(x)
            x = keras.layers.BatchNormalization(name=f"norm{i}")(x)
            x = keras.layers.ReLU(name=f"relu{i}")(x)
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        code = keras.layers.Dense(embedding, activation="relu", name="embedding")(x)
    else:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    y = keras.layers.Dropout(dropout, name="dropout")(code) if dropout > 0 else code
    classes = keras.layers.Dense(n_classes, activation="softmax", name="classes")(y)
    return keras.Model(inputs, [classes, code], name=f"{arch}_classifier")


def export_tflite(model, path, arch: str = "lstm") -> bytes:
    """float32 TFLite with builtin ops only and a fixed batch of 1; written to `path`."""
    tf = _quiet_tf()

    window, n_features = model.input_shape[1:]
    norm = model.get_layer("standardise").get_config()  # mean/variance are constants, not weights
    hidden = model.get_layer("lstm").units if arch == "lstm" else model.get_layer("conv0").filters
    size = model.get_layer("embedding").output.shape[-1]
    one = build_model(window, n_features, model.outputs[0].shape[-1], hidden, 0.0, norm["mean"], norm["variance"],
                      batch_size=1, arch=arch, embedding=size)
    one.set_weights(model.get_weights())  # Dropout has no weights, so leaving it out changes nothing
    converter = tf.lite.TFLiteConverter.from_keras_model(one)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the temporary SavedModel's signature
        data = converter.convert()
    Path(path).write_bytes(data)
    return data


# ----- splits --------------------------------------------------------------------------------
def choose_val_groups(sequences, fraction: float, seed: int) -> list[str]:
    """Groups for validation: about `fraction` of each class's groups (at least one where a
    class has two or more, never all of a class's groups), chosen with `seed`."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for s in sequences:
        groups = by_class.setdefault(s.label, [])
        if s.group not in groups:
            groups.append(s.group)
    chosen: set[str] = set()
    for label in sorted(by_class):
        groups = sorted(by_class[label])
        left = [g for g in groups if g not in chosen]
        if fraction <= 0 or len(groups) < 2:
            continue
        k = min(len(left) - 1, max(1, int(round(fraction * len(groups)))) - (len(groups) - len(left)))
        if k > 0:
            chosen |= {left[i] for i in sorted(rng.choice(len(left), size=k, replace=False))}
    return sorted(chosen)


def choose_val_clips(sequences, fraction: float, seed: int) -> list[str]:
    """Clip ids of the validation groups (`choose_val_groups`)."""
    groups = set(choose_val_groups(sequences, fraction, seed))
    return sorted({s.clip_id for s in sequences if s.group in groups})


# ----- reports -------------------------------------------------------------------------------
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


# ----- training ------------------------------------------------------------------------------
def _check(sequences, kind: str, arch: str, classes) -> tuple[list[str], list]:
    """(the model's classes, the sequences), or ValueError saying what is wrong."""
    sequences = list(sequences)
    if not sequences:
        raise ValueError("no sequences to train on")
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; one of {', '.join(FEATURE_KINDS)}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    layouts = sorted({s.layout for s in sequences})
    if kind != "coco_xy" and layouts != [lm.BLAZEPOSE33]:
        raise ValueError(f"features {kind!r} need blazepose33 clips; the data set has {', '.join(layouts)} (use coco_xy)")
    if kind in WORLD_KINDS and not all(np.isfinite(s.world[..., :3]).all(axis=(-1, -2)).any() for s in sequences):
        bad = next(s.clip_id for s in sequences if not np.isfinite(s.world[..., :3]).all(axis=(-1, -2)).any())
        raise ValueError(f"features {kind!r} need world landmarks; clip {bad!r} has none (extract it again, or use coco_xy)")
    known = sorted({s.label for s in sequences}) if classes is None else list(classes)
    if UNKNOWN in known:
        raise ValueError(f"{UNKNOWN!r} cannot be a class: it is the answer for everything else")
    missing = [c for c in known if not any(s.label == c for s in sequences)]
    if missing:
        raise ValueError(f"class(es) {', '.join(missing)} have no clip in the data set")
    if len(known) < 2:
        raise ValueError(f"need at least 2 classes, got {len(known)}: {', '.join(known)}")
    negatives = any(s.label not in known for s in sequences)
    return known + ([UNKNOWN] if negatives else []), sequences


def _fit(model_classes, x_train, y_train, x_val, y_val, options: dict, out_dir: Path, log):
    """The Keras model, trained; (model, history)."""
    import keras

    flat = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    mean, variance = flat.mean(axis=0), np.maximum(flat.var(axis=0), 1e-6)
    full = build_model(x_train.shape[1], x_train.shape[-1], len(model_classes), options["hidden"], options["dropout"],
                       mean, variance, arch=options["arch"], embedding=options["embedding"])
    trainable = keras.Model(full.inputs, full.outputs[0])
    trainable.compile(optimizer=keras.optimizers.Adam(options["learning_rate"]), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    counts = np.bincount(y_train, minlength=len(model_classes))
    class_weight = {i: float(len(y_train) / (len(model_classes) * c)) for i, c in enumerate(counts) if c}
    monitor = "val_loss" if len(x_val) else "loss"
    patience = options["patience"]
    callbacks = [
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(2, patience // 3), min_lr=1e-5),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
    ]
    history = trainable.fit(x_train, y_train, validation_data=(x_val, y_val) if len(x_val) else None,
                            epochs=options["epochs"], batch_size=options["batch"], shuffle=True,
                            class_weight=class_weight, callbacks=callbacks, verbose=options["verbose"])
    full.save(str(out_dir / "model.keras"))
    return full, {k: [float(v) for v in vals] for k, vals in history.history.items()}, monitor


def _prototypes_and_threshold(full, model_classes, x_train, y_train, x_val, y_val, keep: float):
    """(prototypes, threshold or None): each known class's mean training embedding (unit
    length), and the distance to the prototype of the class a window is answered as that
    keeps `keep` of the known classes' validation windows (clips of other groups), checked
    on the validation windows of other motions."""
    known = [i for i, c in enumerate(model_classes) if c != UNKNOWN]
    codes = full.predict(x_train, verbose=0, batch_size=256)[1]
    protos = []
    for i in known:
        mean = codes[y_train == i].mean(axis=0)
        protos.append(mean / max(np.linalg.norm(mean), 1e-12))
    protos = np.array(protos)
    if not len(x_val):
        return protos, None
    val = full.predict(x_val, verbose=0, batch_size=256)
    unit = val[1] / np.maximum(np.linalg.norm(val[1], axis=1, keepdims=True), 1e-12)
    predicted = np.argmax(val[0], axis=1)
    own = np.full(len(x_val), np.nan)  # each window's distance to the prototype of the class it is answered as
    for k, i in enumerate(known):
        sel = predicted == i
        own[sel] = 1.0 - unit[sel] @ protos[k]
    in_class = np.isin(y_val, known) & np.isfinite(own)
    if in_class.sum() < MIN_CALIBRATION:  # too few held-out windows to say where "unlike" starts
        return protos, None
    negatives = own[~np.isin(y_val, known)]
    return protos, calibrate(own[in_class], negatives if negatives.size else None, keep)


def _windows_for(sequences, items, kind, options, model_classes):
    rate, window, stride = options["rate"], options["window"], options["stride"]
    if items is None:
        return dataset_windows(sequences, kind, window, stride, model_classes, rate)
    return dataset_windows(items, kind, window, stride, model_classes, rate)


def _check_export(full, tflite_path, x_check, n_classes) -> float:
    """The TFLite export must agree with Keras (probabilities and embedding) on real windows."""
    keras_out = full.predict(x_check, verbose=0)
    lite = TfliteModel(tflite_path, n_classes)
    lite_out = [lite(w) for w in x_check]
    diff = max(float(np.abs(keras_out[0] - np.stack([o[0] for o in lite_out])).max()),
               float(np.abs(keras_out[1] - np.stack([o[1] for o in lite_out])).max()))
    if diff > 1e-3:
        raise RuntimeError(f"the TFLite export disagrees with Keras by {diff:.2e} (> 1e-3)")
    return diff


def train(sequences, out_dir, *, arch: str = "tcn", kind: str = "body3d", classes=None, window: int = DEFAULT_WINDOW,
          rate: float = DEFAULT_RATE, stride: int = 2, hidden: int = 64, embedding: int = EMBEDDING, epochs: int = 100,
          batch: int = 64, val_clips=None, val_fraction: float = 0.25, seed: int = 0, dropout: float = 0.3,
          learning_rate: float = 1e-3, patience: int = 15, augment_copies: int = 3, keep: float = 0.99,
          verbose: int = 2, log=print) -> dict:
    """Train, calibrate, export and evaluate; returns the metrics (also out_dir/metrics.json).

    Validation is by group: the groups of `val_clips` if given, else `choose_val_groups`;
    no window of a validation group is trained on. `classes` (default: every label) are
    the classes to recognise; clips of other labels are negatives (module doc).
    `augment_copies` -1: no augmentation at all (not even the mirror)."""
    from posegraph.pose.sequences import split_by_clip

    model_classes, sequences = _check(sequences, kind, arch, classes)
    if val_clips is None:
        val_clips = choose_val_clips(sequences, val_fraction, seed)
    train_seqs, val_seqs = split_by_clip(sequences, val_clips)
    empty = [c for c in model_classes if c != UNKNOWN and not any(s.label == c for s in train_seqs)]
    if empty:
        raise ValueError(f"no training clip left for class(es) {', '.join(empty)} after the validation split")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _quiet_tf()
    import keras

    keras.utils.set_random_seed(seed)
    options = dict(arch=arch, hidden=hidden, dropout=dropout, embedding=embedding, learning_rate=learning_rate,
                   epochs=epochs, batch=batch, patience=patience, verbose=verbose, rate=rate, window=window, stride=stride)
    items = None if augment_copies < 0 else augmented_items(train_seqs, kind, augment_copies, seed,
                                                                   still=STILL_COPIES if UNKNOWN in model_classes else 0)
    x_train, y_train, _ = _windows_for(train_seqs, items, kind, options, model_classes)
    x_plain, y_plain, _ = _windows_for(train_seqs, None, kind, options, model_classes)
    x_val, y_val, val_ids = _windows_for(val_seqs, None, kind, options, model_classes)
    log(f"training a {kind} {arch.upper()} on {len(train_seqs)} clips ({len(x_train)} windows with augmentation), "
        f"validating on {len(val_seqs)} clips of other groups ({len(x_val)} windows); classes: {', '.join(model_classes)}")
    full, hist, monitor = _fit(model_classes, x_train, y_train, x_val, y_val, options, out_dir, log)
    protos, threshold = _prototypes_and_threshold(full, model_classes, x_plain, y_plain, x_val, y_val, keep)
    tflite_path = out_dir / "model.tflite"
    export_tflite(full, tflite_path, arch)
    check = np.concatenate([x_val[:16], x_plain[:16]]) if len(x_val) else x_plain[:32]
    max_diff = _check_export(full, tflite_path, check, len(model_classes))
    info = _info(model_classes, kind, arch, x_train.shape[-1], window, rate, hidden, stride, protos, threshold,
                 sorted({s.label for s in sequences if s.label not in model_classes}))
    layouts = sorted({s.layout for s in sequences})
    info["layout"] = layouts[0] if len(layouts) == 1 else layouts
    (out_dir / "labels.json").write_text(json.dumps(info, indent=1))
    metrics = _evaluate(out_dir, full, model_classes, x_plain, y_plain, x_val, y_val, val_ids, hist, monitor, info,
                        train_seqs, val_seqs, max_diff, seed)
    if threshold is None:
        log(f"no \"unknown\" threshold: fewer than {MIN_CALIBRATION} held-out windows of known classes to set it from"
            + (" (only the background class of the negatives answers \"unknown\")" if UNKNOWN in model_classes else ""))
    else:
        log(f"unknown above distance {threshold.value:.4f}: keeps {threshold.known_kept:.1%} of {threshold.known} "
            f"held-out windows of known classes" + (f", turns away {threshold.negatives_rejected:.1%} of "
                                                   f"{threshold.negatives} windows of other motions" if threshold.negatives else ""))
    return metrics


def _info(model_classes, kind, arch, n_features, window, rate, hidden, stride, protos, threshold, negatives) -> dict:
    """labels.json: what the node needs to run the model, and how it was made."""
    unknown = {"distance": "cosine distance of the embedding to the prototype of the class it is answered as",
               "prototypes": protos.round(6).tolist(),
               "threshold": threshold.as_dict() if threshold is not None else None,
               "background_class": UNKNOWN in model_classes, "negatives": negatives}
    return {
        "model": arch, "classes": model_classes, "features": kind, "n_features": int(n_features), "window": int(window),
        "rate": float(rate), "embedding": int(protos.shape[1]), "hidden": int(hidden), "stride": int(stride),
        "normalisation": NORMALISATION[kind],
        "standardisation": "inside the model (Normalization layer: training windows' per-feature mean/variance)",
        "no_person": "features carried forward from the previous frame; zeros before the first person",
        "padding": ("windows at `rate` frames/s by the frames' timestamps, the oldest frame repeated before a clip's "
                    "start" if rate > 0 else "windows shorter than `window` repeat their newest frame at the end"),
        "unknown": unknown,
    }


def _evaluate(out_dir, full, model_classes, x_plain, y_plain, x_val, y_val, val_ids, hist, monitor, info, train_seqs,
              val_seqs, max_diff, seed) -> dict:
    """metrics.json, curves.png and confusion.png, with the answers as the node gives them
    ("unknown" included) on the validation windows."""
    train_pred = np.argmax(full.predict(x_plain, verbose=0)[0], axis=1) if len(x_plain) else np.zeros(0, int)
    val_pred = np.zeros(0, int)
    if len(x_val):
        classifier = ActionClassifier(out_dir)
        answers = [classifier.answer(w)["label"] for w in x_val]
        labels = list(model_classes) + ([UNKNOWN] if UNKNOWN not in model_classes else [])
        val_pred = np.array([labels.index(a) for a in answers])
    shown = list(model_classes) + ([UNKNOWN] if len(x_val) and UNKNOWN not in model_classes else [])
    matrix = confusion_matrix(y_val, val_pred, len(shown)) if len(x_val) else confusion_matrix(y_plain, train_pred, len(shown))
    _plot_curves(hist, out_dir / "curves.png")
    _plot_confusion(matrix, shown, out_dir / "confusion.png",
                    "validation windows (answers as the node gives them)" if len(x_val) else "training windows (no validation clips)")
    metrics = {
        "train_accuracy": float((train_pred == y_plain).mean()) if len(x_plain) else None,
        "val_accuracy": float((val_pred == y_val).mean()) if len(x_val) else None,
        "per_class_val": _per_class(y_val, val_pred, shown) if len(x_val) else None,
        "confusion": matrix.tolist(), "confusion_classes": shown, "confusion_of": "validation" if len(x_val) else "training",
        "epochs": len(hist["loss"]), "best_epoch": int(np.argmin(hist[monitor])) + 1, "history": hist,
        "clips": {"train": sorted({s.clip_id for s in train_seqs}), "val": sorted({s.clip_id for s in val_seqs})},
        "groups": {"train": sorted({s.group for s in train_seqs}), "val": sorted({s.group for s in val_seqs})},
        "windows": {"train": int(len(x_plain)), "val": int(len(x_val))},
        "unknown": info["unknown"]["threshold"], "tflite_max_abs_diff": max_diff, "features": info["features"],
        "model": info["model"], "window": info["window"], "rate": info["rate"], "seed": int(seed),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
