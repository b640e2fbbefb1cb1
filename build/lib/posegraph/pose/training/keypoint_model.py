"""Train a coordinate-regression keypoint model (Keras) and export it to TFLite.

The model: a person crop (posegraph/pose/backends/crop.py) of `size` x `size`, gray or colour,
0..255 -> 2k numbers, the k keypoints' (x, y) in crop units (0..1 across the crop).
Backbones: `small` (a plain CNN, the default: it trains from scratch on ~1,000 frames on a
CPU), `mobilenetv2`, `resnet50`. ImageNet weights cannot be downloaded here, so the
backbones start from random weights or from a weights file the user has (`weights`).

Training: Adam, a masked mean squared error (keypoints a label file leaves out count for
nothing), augmentation that moves the keypoints with the pixels (mirror with left/right
names swapped, shift, scale, brightness and contrast), ReduceLROnPlateau, EarlyStopping and
a checkpoint of the best validation loss, a progress bar over all batches.

Outputs in the model folder (`train`):
  model.keras          the best checkpoint (load with compile=False)
  model.float.tflite   float32
  model.int8.tflite    int8 weights and activations, uint8 input, float output; calibrated on
                       up to 200 training crops (the representative set)
  model.json           names, input size, channels, crop mode: what the `custom` backend needs
  curves.png           loss and learning rate per epoch
  errors.json/.png     per-keypoint pixel error on the validation frames: Keras, float and int8
                       TFLite, and the mean-position baseline
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from posegraph.pose import landmarks as lm
from posegraph.pose.backends.crop import as_model_input, from_crop
from posegraph.pose.training.keypoint_data import CONTEXT_ZOOM, targets

BACKBONES = ("small", "mobilenetv2", "resnet50")
FORMAT = "posegraph-keypoints/1"
REPRESENTATIVE = 200


class TrainError(RuntimeError):
    """Training cannot go on; str() is one line."""


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


# ----- augmentation -------------------------------------------------------------------------------
def mirror_perm(names) -> np.ndarray | None:
    """Gather indices swapping each left keypoint with its right twin (posegraph/pose/landmarks.py);
    None when a sided keypoint's twin is missing (a mirrored image would then need a label
    nobody gave)."""
    perm = lm.mirror_perm(lm.custom_layout(names))
    sided = np.array([lm._swap_side(n) != n for n in names])
    if np.any(sided & (perm == np.arange(len(names)))):
        return None
    return np.asarray(perm)


def mean_pose_units(samples) -> np.ndarray:
    """The mean labelled pose of samples with context crops, in ROI crop units (k, 2): the
    mean-position baseline, and where the output layer starts. 0.5 for a keypoint never labelled."""
    units, mask = targets(samples)
    mean = view_units(np.nanmean(np.where(mask[..., None], units, np.nan), axis=0))
    return np.where(np.isnan(mean), 0.5, mean)


def view_matrix(size: int, context_size: int, scale: float = 1.0, shift=(0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2x3 forward matrix: context-crop pixel -> model-input pixel, for the ROI shifted by
    `shift` (ROI units) and grown by `scale`, mirrored when `flip`. scale 1, no shift: the
    plain ROI crop the backend makes at run time."""
    a = size * CONTEXT_ZOOM / (context_size * scale)
    bx = size * (0.5 - (0.5 * CONTEXT_ZOOM + shift[0]) / scale)
    by = size * (0.5 - (0.5 * CONTEXT_ZOOM + shift[1]) / scale)
    if flip:
        return np.array([[-a, 0.0, size - bx], [0.0, a, by]])
    return np.array([[a, 0.0, bx], [0.0, a, by]])


def view_units(context_units: np.ndarray, scale=1.0, shift=(0.0, 0.0), flip=False) -> np.ndarray:
    """Keypoints in context units -> units of the augmented view (as view_matrix moves pixels)."""
    u = (np.asarray(context_units, np.float64) - 0.5) * CONTEXT_ZOOM + 0.5
    out = (u - 0.5 - np.asarray(shift)) / scale + 0.5
    if flip:
        out[..., 0] = 1.0 - out[..., 0]
    return out


def render_view(context_bgr: np.ndarray, size: int, channel_order: str, scale=1.0, shift=(0.0, 0.0),
                flip=False, brightness=1.0, offset=0.0) -> np.ndarray:
    """The model input (uint8, size x size x channels) of one context crop under one augmentation."""
    import cv2

    matrix = view_matrix(size, context_bgr.shape[0], scale, shift, flip)
    view = cv2.warpAffine(context_bgr, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if brightness != 1.0 or offset != 0.0:
        view = np.clip(view.astype(np.float32) * brightness + offset, 0, 255).astype(np.uint8)
    pixels = as_model_input(view, channel_order)
    return pixels if pixels.ndim == 3 else pixels[..., None]


class Augment:
    """Random views of the training crops: the same geometry moves the pixels and the targets."""

    def __init__(self, max_scale: float = 0.2, max_shift: float = 0.1, flip: bool = True,
                 max_brightness: float = 0.3, max_offset: float = 25.0):
        self.max_scale, self.max_shift, self.flip = max_scale, max_shift, flip
        self.max_brightness, self.max_offset = max_brightness, max_offset

    def draw(self, rng: np.random.Generator) -> dict:
        return {"scale": float(np.exp(rng.uniform(-1, 1) * np.log1p(self.max_scale))),
                "shift": tuple(rng.uniform(-self.max_shift, self.max_shift, 2)),
                "flip": bool(self.flip and rng.random() < 0.5),
                "brightness": float(1 + rng.uniform(-self.max_brightness, self.max_brightness)),
                "offset": float(rng.uniform(-self.max_offset, self.max_offset))}


def make_batch(idx, contexts, units, mask, size, channel_order, perm, augment: Augment | None, rng):
    """(x float32 pixels, y = [x, y units..., mask...]) of the crops `idx`, each under a fresh
    random augmentation (none when `augment` is None)."""
    xs, ys = [], []
    for i in idx:
        params = augment.draw(rng) if augment is not None else {}
        xs.append(render_view(contexts[i], size, channel_order, **params))
        target, visible = view_units(units[i], params.get("scale", 1.0), params.get("shift", (0, 0)),
                                     params.get("flip", False)), mask[i]
        if params.get("flip"):
            target, visible = target[perm], visible[perm]
        ys.append(np.concatenate([target.reshape(-1), visible.astype(np.float64)]))
    return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


# ----- the network --------------------------------------------------------------------------------
def build_model(n_keypoints: int, size: int = 128, channels: int = 1, backbone: str = "small", width: float = 1.0,
                weights: str | None = None, mean_units=None):
    """Keras functional model: uint8-range pixels (size, size, channels) -> 2k crop units.

    The output layer starts at the mean training pose (`mean_units`, (k, 2)) with tiny
    weights, so training starts from the mean-position baseline instead of every keypoint
    at the crop's corner; BatchNormalization uses momentum 0.9, because a few hundred
    frames give few steps and the default 0.99 leaves validation statistics far behind."""
    _tf()
    import keras
    from keras import layers

    if backbone not in BACKBONES:
        raise TrainError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    inputs = keras.Input((size, size, channels), name="pixels")
    if backbone == "resnet50":  # "caffe" preprocessing: BGR minus ImageNet's mean, as its weights expect
        means = [103.939, 116.779, 123.68] if channels == 3 else [114.8]
        x = layers.Normalization(mean=means, variance=[1.0] * channels, name="caffe_mean")(inputs)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    if backbone == "small":
        for i, filters in enumerate((32, 64, 128, 256)):
            f = max(8, int(round(filters * width)))
            x = layers.Conv2D(f, 3, strides=2, padding="same", use_bias=False, name=f"down{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"down{i}_bn")(x)
            x = layers.ReLU(name=f"down{i}_relu")(x)
            x = layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"conv{i}_bn")(x)
            x = layers.ReLU(name=f"conv{i}_relu")(x)
    else:
        apps = keras.applications
        build = apps.MobileNetV2 if backbone == "mobilenetv2" else apps.ResNet50
        kwargs = {"alpha": width} if backbone == "mobilenetv2" else {}
        try:
            net = build(input_shape=(size, size, channels), include_top=False, weights=weights, **kwargs)
        except ValueError as exc:
            raise TrainError(f"--weights {weights}: {exc}".replace("\n", " ")) from None
        for layer in net.layers:  # the applications' 0.99 lags far behind on a few hundred steps from scratch
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        x = net(x)
    x = layers.Conv2D(max(16, int(round(64 * min(width, 1.0)))), 1, activation="relu", name="squeeze")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(256, activation="relu", name="dense")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    bias = np.full(2 * n_keypoints, 0.5) if mean_units is None else np.asarray(mean_units, np.float64).reshape(-1)
    outputs = layers.Dense(2 * n_keypoints, name="keypoints",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
                           bias_initializer=keras.initializers.Constant(bias))(x)
    model = keras.Model(inputs, outputs, name=f"keypoints_{backbone}")
    if weights and backbone == "small":
        try:
            model.load_weights(weights)
        except Exception as exc:  # noqa: BLE001 (Keras raises several types for a bad file)
            raise TrainError(f"--weights {weights}: cannot load into the small backbone: {exc}".replace("\n", " ")) from None
    return model


def masked_mse(y_true, y_pred):
    """Mean squared error over labelled keypoints only: y_true = [units (2k), mask (k)]."""
    from keras import ops

    k2 = ops.shape(y_pred)[-1]
    units, mask = y_true[:, :k2], y_true[:, k2:]
    mask2 = ops.repeat(mask, 2, axis=-1)
    return ops.sum(mask2 * ops.square(units - y_pred), axis=-1) / ops.maximum(ops.sum(mask2, axis=-1), 1.0)


# ----- export ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _converter_quiet():
    """The TFLite converter prints a dozen MLIR lines on fd 2 per export: hide them unless it fails."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace")[-4000:])


def export_tflite(model, path, representative: np.ndarray | None = None) -> bytes:
    """float32 TFLite, or int8 (uint8 input, float output) when a representative set is given."""
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if representative is not None:
        def examples():
            for x in representative:
                yield [x[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = examples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    with _converter_quiet():
        data = converter.convert()
    Path(path).write_bytes(data)
    return data


# ----- progress -------------------------------------------------------------------------------------
def progress_callback(epochs: int, steps: int, enabled: bool):
    """A Keras callback drawing one rich progress bar over every batch of every epoch, with the
    epoch, losses and learning rate in its label."""
    import keras

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = None
            if not enabled:
                return
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=Console(stderr=True))
            self.bar.__enter__()
            self.task = self.bar.add_task("epoch 1", total=epochs * steps)
            self.last = ""

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.advance(self.task)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.last = (f"epoch {epoch + 1}/{epochs} loss {logs.get('loss', float('nan')):.5f} "
                         f"val {logs.get('val_loss', float('nan')):.5f} lr {lr:.1e}")
            if self.bar is not None:
                self.bar.update(self.task, description=self.last, completed=(epoch + 1) * steps)
                if not self.bar.console.is_terminal:  # a log file gets one line per epoch, not a frozen bar
                    print(self.last, file=sys.stderr, flush=True)

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.update(self.task, total=self.bar.tasks[0].completed)
                self.bar.__exit__(None, None, None)

    return RichProgress()


# ----- reports ----------------------------------------------------------------------------------------
def pixel_errors(pred_units: np.ndarray, samples) -> np.ndarray:
    """(n, k) distances in image pixels between predictions (n, k, 2 ROI units) and the labels
    (NaN where a keypoint has no label)."""
    out = np.full((len(samples), pred_units.shape[1]), np.nan)
    for i, s in enumerate(samples):
        px = from_crop(pred_units[i], s.roi)
        d = np.linalg.norm(px - s.points, axis=1)
        out[i] = np.where(s.visible, d, np.nan)
    return out


def error_table(errors: np.ndarray, names) -> dict:
    """Per keypoint and overall: mean, median and 90th percentile pixel error."""
    def stats(v):
        v = v[~np.isnan(v)]
        if not len(v):
            return {"n": 0}
        return {"mean_px": round(float(v.mean()), 2), "median_px": round(float(np.median(v)), 2),
                "p90_px": round(float(np.percentile(v, 90)), 2), "n": int(len(v))}

    return {"per_keypoint": {n: stats(errors[:, i]) for i, n in enumerate(names)}, "all": stats(errors.reshape(-1))}


def plot_errors(report: dict, names, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("mean_baseline", "keras", "float", "int8") if k in report]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names) * len(kinds) / 2 + 3), 4.5))
    width = 0.8 / len(kinds)
    xs = np.arange(len(names))
    for j, kind in enumerate(kinds):
        vals = [report[kind]["per_keypoint"][n].get("mean_px", np.nan) for n in names]
        ax.bar(xs + (j - (len(kinds) - 1) / 2) * width, vals, width, label=f"{kind} (all: {report[kind]['all'].get('mean_px', float('nan')):.1f})")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean error (image pixels)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(history: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax1.plot(epochs, history["loss"], label="training (augmented)")
    if "val_loss" in history:
        ax1.plot(epochs, history["val_loss"], label="validation")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("masked MSE (crop units²)")
    ax1.legend()
    if "learning_rate" in history:
        ax2.plot(epochs, history["learning_rate"])
        ax2.set_yscale("log")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("learning rate")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----- training -----------------------------------------------------------------------------------------
def train(train_samples, val_samples, names, out_dir, *, size: int = 128, color: bool = False, backbone: str = "small",
          width: float = 1.0, weights: str | None = None, crop: str = "detector", epochs: int = 100, batch: int = 32,
          learning_rate: float = 1e-3, patience: int = 12, seed: int = 0, augment: bool = True, progress: bool = True,
          split: str = "", log=print, extra_info: dict | None = None) -> dict:
    """Train on samples with context crops (keypoint_data.attach_crops), write the model folder
    (module doc), return the info written to model.json."""
    _tf()
    import keras
    from posegraph.pose.backends.custom import KeypointModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not train_samples:
        raise TrainError("no training samples left (see the label report)")
    names = tuple(names)
    channel_order = ("bgr" if backbone == "resnet50" else "rgb") if color else "gray"
    channels = 3 if color else 1
    perm = mirror_perm(names)
    aug = Augment(flip=perm is not None) if augment else None
    if augment and perm is None:
        log("no mirroring: some keypoints have no left/right twin among the keypoints")
    keras.utils.set_random_seed(seed)

    def arrays(samples):
        contexts = [s.context for s in samples]
        units, mask = targets(samples)
        return contexts, units, mask

    tr_ctx, tr_units, tr_mask = arrays(train_samples)
    va_ctx, va_units, va_mask = arrays(val_samples) if val_samples else ([], None, None)

    def plain_inputs(contexts):
        return np.stack([render_view(c, size, channel_order) for c in contexts]).astype(np.float32)

    x_val = plain_inputs(va_ctx) if val_samples else None
    y_val = (np.concatenate([view_units(va_units).reshape(len(va_ctx), -1), va_mask.astype(np.float64)], axis=1)
             .astype(np.float32) if val_samples else None)

    mean_units = mean_pose_units(train_samples)
    model = build_model(len(names), size, channels, backbone, width, weights, mean_units)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=masked_mse)
    steps = int(np.ceil(len(tr_ctx) / batch))

    class EpochData(keras.utils.PyDataset):
        """A fresh shuffle and augmentation of the training crops each epoch, made batch by
        batch (memory stays at one batch whatever the data set's size); seeded per (epoch,
        batch), so a run is repeatable."""

        def __init__(self):
            super().__init__()
            self.epoch = -1
            self.on_epoch_end()

        def __len__(self):
            return steps

        def __getitem__(self, i):
            idx = self.order[i * batch:(i + 1) * batch]
            return make_batch(idx, tr_ctx, tr_units, tr_mask, size, channel_order, perm, aug,
                              np.random.default_rng([seed, self.epoch, i]))

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(tr_ctx))

    monitor = "val_loss" if val_samples else "loss"
    best = out_dir / "model.keras"
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(best), monitor=monitor, save_best_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(2, patience // 3), min_lr=1e-5),
        progress_callback(epochs, steps, progress),
    ]
    log(f"training a {backbone} keypoint model ({size}x{size} {channel_order}, {len(names)} keypoints) on "
        f"{len(train_samples)} frames of {len({s.clip for s in train_samples})} clips, validating on "
        f"{len(val_samples)} frames ({split or 'no validation'})")
    t0 = time.perf_counter()
    history = model.fit(EpochData(), validation_data=(x_val, y_val) if val_samples else None, epochs=epochs,
                        callbacks=callbacks, verbose=0)
    train_s = time.perf_counter() - t0
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    model = keras.models.load_model(str(best), compile=False)
    log(f"trained {len(hist['loss'])} epochs in {train_s:.0f} s; best {monitor} {min(hist[monitor]):.5f} "
        f"(epoch {int(np.argmin(hist[monitor])) + 1})")

    plain_train = plain_inputs(tr_ctx[:REPRESENTATIVE])
    export_tflite(model, out_dir / "model.float.tflite")
    export_tflite(model, out_dir / "model.int8.tflite", representative=plain_train)
    info = {
        "format": FORMAT, "names": list(names), "layout": lm.custom_layout(names),
        "input_size": int(size), "channels": channels, "channel_order": channel_order, "crop": crop,
        "output": "2k values: (x, y) per keypoint in crop units (0..1 across the crop)",
        "backbone": backbone, "width": width, "weights": str(weights) if weights else None,
        "files": {"keras": "model.keras", "float": "model.float.tflite", "int8": "model.int8.tflite"},
        "training": {"train_frames": len(train_samples), "val_frames": len(val_samples),
                     "train_clips": sorted({s.clip for s in train_samples}),
                     "val_clips": sorted({s.clip for s in val_samples}), "split": split,
                     "epochs": len(hist["loss"]), "best_epoch": int(np.argmin(hist[monitor])) + 1,
                     "seconds": round(train_s, 1), "augment": bool(augment), "mirror": perm is not None,
                     "learning_rate": learning_rate, "batch": batch, "seed": seed},
        **(extra_info or {}),
    }
    (out_dir / "model.json").write_text(json.dumps(info, indent=1))
    plot_curves(hist, out_dir / "curves.png")

    # Exports must agree with Keras; the error report compares all of them on the validation frames.
    check_x = x_val if val_samples else plain_train
    check_samples = val_samples if val_samples else train_samples[:len(plain_train)]
    keras_units = model.predict(check_x, verbose=0).reshape(len(check_x), -1, 2)
    lite = {kind: KeypointModel(out_dir, precision=kind) for kind in ("float", "int8")}
    lite_units = {kind: np.stack([m.predict_units(x.astype(np.uint8)) for x in check_x]) for kind, m in lite.items()}
    diff = float(np.abs(lite_units["float"] - keras_units).max())
    if diff > 1e-3:
        raise TrainError(f"the float TFLite export disagrees with Keras by {diff:.2e} crop units (> 1e-3)")
    report = {"frames": "validation" if val_samples else "training (no validation frames)",
              "mean_baseline": error_table(pixel_errors(np.repeat(mean_units[None], len(check_x), 0), check_samples), names),
              "keras": error_table(pixel_errors(keras_units, check_samples), names)}
    for kind in ("float", "int8"):
        report[kind] = error_table(pixel_errors(lite_units[kind], check_samples), names)
    report["float_vs_keras_max_units"] = diff
    report["history"] = hist
    (out_dir / "errors.json").write_text(json.dumps(report, indent=1))
    plot_errors(report, names, out_dir / "errors.png",
                f"per-keypoint error on {len(check_samples)} {report['frames']} frames")
    info["errors"] = {k: report[k]["all"] for k in ("mean_baseline", "keras", "float", "int8")}
    (out_dir / "model.json").write_text(json.dumps(info, indent=1))
    log(f"validation error (mean px): model {report['float']['all'].get('mean_px')}, int8 "
        f"{report['int8']['all'].get('mean_px')}, mean-position baseline {report['mean_baseline']['all'].get('mean_px')}")
    return info
