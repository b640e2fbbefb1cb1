#!/usr/bin/env python3
"""What one TCN window costs the `tcn` node, against an LSTM's, and how small its process is.

Both models of posegraph.pose.training.actions on the node's windows (32 x 51 body3d
features at 15 frames/s), 5 outputs (four classes and "unknown"), exported to TFLite
(builtin ops, batch 1) and run through posegraph.pose.actions.TfliteModel with one thread,
in this one invocation, rounds interleaved:

  tcn   the temporal convolution (3 x Conv1D 64, kernel 5, dilations 1/2/4; pooling; Dense 32)
  lstm  LSTM(50, unroll=True), the baseline

and, for the TCN, what the node does per frame: the person's features (world landmarks
in the body's frame), the window resampled by time, the model and the "unknown" check
(posegraph.pose.actions.ActionClassifier.frame / TimedWindow.push / answer), on the
bundled clip's world landmarks. Each figure is the median over rounds of the mean time
per call in a round (warm). A fresh process that loads only posegraph.pose.actions and
runs the TCN gives the resident memory the node's process needs (it never imports
TensorFlow). Targets: <= 0.2 ms per window, a process well under 200 MB.

Usage: python benchmarks/tcn.py [--json FILE | --save]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import saving  # benchmarks/saving.py: out/ unless --save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW, FEATURES, CLASSES, RATE = 32, 51, 5, 15.0
ROUNDS = 7

FRESH = r"""
import os, sys, json, time, statistics, numpy as np
from posegraph.pose.actions import ActionClassifier
model = ActionClassifier(sys.argv[1])
def load(path):
    xyz = np.asarray(json.load(open(path)), np.float32)
    return np.concatenate([xyz, np.ones(xyz.shape[:2] + (1,), np.float32)], axis=2)
px, w4 = load(sys.argv[3]), load(sys.argv[2])
window = model.new_window(1)
rounds = []
for _ in range(5):
    start = time.perf_counter()
    for i in range(2000):
        t = i / 30.0
        win = window.push(model.frame(px[i % 65], "blazepose33", 720, 1280, w4[i % 65]), t)
        model.answer(win)
    rounds.append((time.perf_counter() - start) / 2)
pages = int(open("/proc/self/statm").read().split()[1])
print(statistics.median(rounds), pages * os.sysconf("SC_PAGE_SIZE") / 2**20, "tensorflow" in sys.modules)
"""


def per_call_ms(call, n: int) -> list[float]:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - start) * 1000.0 / n)
    return times


def model_dir(arch: str, tmp: Path) -> Path:
    """An exported model directory of `arch` with untrained weights (speed does not depend on them)."""
    from posegraph.pose.actions import NORMALISATION
    from posegraph.pose.training import actions as training

    hidden = 50 if arch == "lstm" else 64
    model = training.build_model(WINDOW, FEATURES, CLASSES, hidden, dropout=0.2, arch=arch)
    out = tmp / arch
    out.mkdir()
    training.export_tflite(model, out / "model.tflite", arch)
    size = model.get_layer("embedding").output.shape[-1]
    protos = np.random.default_rng(0).normal(size=(CLASSES - 1, size))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    info = {"model": arch, "classes": ["jumping_jack", "plank", "russian_twist", "squat", "unknown"], "features": "body3d",
            "n_features": FEATURES, "window": WINDOW, "rate": RATE, "embedding": int(size), "normalisation": NORMALISATION["body3d"],
            "unknown": {"prototypes": protos.tolist(), "threshold": {"value": 0.5, "keep": 0.95, "known": 1, "known_kept": 1.0}}}
    (out / "labels.json").write_text(json.dumps(info))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    saving.add_arguments(parser, "tcn.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from posegraph.pose.actions import ActionClassifier

    reference = ROOT / "data" / "google_pose_reference"
    world_file, px_file = reference / "pose_squats_3d.full.json", reference / "pose_squats.full.json"

    def load(path):  # Google's landmarks of the bundled clip, visibility 1
        xyz = np.asarray(json.loads(path.read_text()), np.float32)
        return np.concatenate([xyz, np.ones(xyz.shape[:2] + (1,), np.float32)], axis=2)

    w4, px = load(world_file), load(px_file)
    window = np.random.default_rng(0).normal(size=(WINDOW, FEATURES)).astype(np.float32)
    rounds: dict[str, list[float]] = {"tcn": [], "lstm": [], "tcn_per_frame": []}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {arch: model_dir(arch, Path(tmp)) for arch in ("tcn", "lstm")}
        models = {arch: ActionClassifier(d) for arch, d in dirs.items()}
        tcn = models["tcn"]
        state = tcn.new_window(1)
        clock = iter(range(10 ** 9))

        def per_frame():
            i = next(clock)
            win = state.push(tcn.frame(px[i % 65], "blazepose33", 720, 1280, w4[i % 65]), i / 30.0)
            tcn.answer(win)

        for arch in ("tcn", "lstm"):
            models[arch].predictor(window)  # warm
        per_frame()
        for _ in range(3):  # interleaved: a burst of load hits all three alike
            rounds["tcn"] += per_call_ms(lambda: models["tcn"].predictor(window), 2000)
            rounds["lstm"] += per_call_ms(lambda: models["lstm"].predictor(window), 2000)
            rounds["tcn_per_frame"] += per_call_ms(per_frame, 1000)
        sizes = {arch: (d / "model.tflite").stat().st_size for arch, d in dirs.items()}
        ops = {arch: len(m.predictor.interpreter._get_ops_details()) for arch, m in models.items()}
        fresh = subprocess.run([sys.executable, "-c", FRESH, str(dirs["tcn"]), str(world_file), str(px_file)], capture_output=True,
                               text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        fresh_ms, rss, tf_loaded = fresh.stdout.split()[-3:]
    ms = {name: round(statistics.median(values), 4) for name, values in rounds.items()}
    result = {
        "windows": f"{WINDOW} x {FEATURES} (body3d at {RATE:g} frames/s), {CLASSES} outputs, batch 1, one thread",
        "ms_per_window": {"tcn": ms["tcn"], "lstm": ms["lstm"]},
        "tcn_vs_lstm": round(ms["lstm"] / ms["tcn"], 2),
        "ms_per_frame_tcn_node_work": ms["tcn_per_frame"],
        "fresh_process": {"ms_per_frame": round(float(fresh_ms), 4), "rss_mb": round(float(rss), 1),
                          "tensorflow_imported": tf_loaded == "True"},
        "tflite_bytes": sizes, "tflite_ops": ops,
        "rounds_ms": {k: [round(v, 4) for v in vals] for k, vals in rounds.items()},
        "targets": {"ms_per_window": 0.2, "rss_mb_below": 200},
        "command": "python benchmarks/tcn.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    target = saving.path(args, "tcn.json")
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ms per window: TCN {ms['tcn']:.4f}, LSTM {ms['lstm']:.4f} (the TCN is {result['tcn_vs_lstm']}x faster); "
          f"the node's work per frame with the TCN {ms['tcn_per_frame']:.4f} ms; a fresh process without TensorFlow: "
          f"{float(fresh_ms):.4f} ms per frame, {float(rss):.0f} MB resident; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
