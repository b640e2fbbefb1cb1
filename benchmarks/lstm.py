#!/usr/bin/env python3
"""How fast is one LSTM(50) window, and how small is a process that only runs the TFLite model?

The `lstm` node's model (posegraph/pose/training/actions.py: Normalization -> LSTM(50, unroll=True) ->
Dropout -> Dense softmax, and the LSTM's output as the embedding) on 32 x 34 windows
(coco_xy features), 4 classes, untrained
weights (speed does not depend on them), timed in one invocation three ways:

  predict      keras model.predict(window) (batch 1), what a naive Keras loop does
  tf.function  the Keras model called inside a tf.function traced once for (1, 32, 34)
  tflite       the exported model.tflite (builtin ops, batch 1) through ai_edge_litert,
               one thread, via posegraph.pose.actions.TfliteModel (copy in, invoke, copy out):
               what the node does per frame

Each is the median over ROUNDS rounds of the mean time per window in a round (warm).
Then a fresh subprocess loads only the TFLite model through ai_edge_litert (no TensorFlow,
no project code), times it the same way and reads its resident memory from /proc/self/statm;
a second one does the same through posegraph.pose.actions.TfliteModel (the node's imports and
per-frame call, without the engine). Those are the numbers that matter for the node, whose
process never imports TensorFlow.

Usage: python benchmarks/lstm.py [--json FILE | --save]
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

import saving  # benchmarks/saving.py: out/ unless --save

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW, FEATURES, CLASSES, HIDDEN = 32, 34, 4, 50
ROUNDS = 5

RSS_BARE = r"""
import os, sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=1)
it.allocate_tensors()
i = it.get_input_details()[0]["index"]
o = next(d["index"] for d in it.get_output_details() if d["shape"][-1] == 4)  # the class probabilities
x = np.random.default_rng(0).normal(size=(1, 32, 34)).astype(np.float32)
import statistics, time
rounds = []
for _ in range(5):
    start = time.perf_counter()
    for _ in range(5000):
        it.set_tensor(i, x); it.invoke(); p = it.get_tensor(o)
    rounds.append((time.perf_counter() - start) / 5)
assert abs(float(p.sum()) - 1.0) < 1e-4
pages = int(open("/proc/self/statm").read().split()[1])
print(statistics.median(rounds), pages * os.sysconf("SC_PAGE_SIZE") / 2**20, "tensorflow" in sys.modules)
"""

RSS_NODE = r"""
import os, sys, numpy as np
sys.path.insert(0, sys.argv[2])
from posegraph.pose.actions import TfliteModel
model = TfliteModel(sys.argv[1], n_classes=4)
x = np.random.default_rng(0).normal(size=(32, 34)).astype(np.float32)
import statistics, time
rounds = []
for _ in range(5):
    start = time.perf_counter()
    for _ in range(5000):
        p = model(x)[0]
    rounds.append((time.perf_counter() - start) / 5)
assert abs(float(p.sum()) - 1.0) < 1e-4
pages = int(open("/proc/self/statm").read().split()[1])
print(statistics.median(rounds), pages * os.sysconf("SC_PAGE_SIZE") / 2**20, "tensorflow" in sys.modules)
"""


def per_window_ms(call, n: int, rounds: int = ROUNDS) -> tuple[float, list[float]]:
    call()  # warm
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            call()
        times.append((time.perf_counter() - start) * 1000.0 / n)
    return statistics.median(times), times


def fresh_process(script: str, model_path: Path) -> tuple[float, float, bool]:
    """(ms per window, resident MB, TensorFlow imported?) of a fresh process running `script`."""
    out = subprocess.run([sys.executable, "-c", script, str(model_path), str(ROOT)], capture_output=True, text=True,
                         check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    ms, rss, tf_loaded = out.stdout.split()[-3:]
    return float(ms), float(rss), tf_loaded == "True"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    saving.add_arguments(parser, "lstm.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from posegraph.pose import actions as lstm_model
    from posegraph.pose.training import actions as lstm_training

    import tensorflow as tf

    model = lstm_training.build_model(WINDOW, FEATURES, CLASSES, HIDDEN, dropout=0.2)
    window = np.random.default_rng(0).normal(size=(WINDOW, FEATURES)).astype(np.float32)
    batch = window[None]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        lstm_training.export_tflite(model, path)
        lite = lstm_model.TfliteModel(path, n_classes=CLASSES)
        fn = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((1, WINDOW, FEATURES), tf.float32)])
        want = model.predict(batch, verbose=0)[0][0]
        diff = float(np.abs(want - lite(window)[0]).max())

        predict_ms, predict_rounds = per_window_ms(lambda: model.predict(batch, verbose=0), 50)
        fn_ms, fn_rounds = per_window_ms(lambda: fn(batch)[0].numpy(), 500)
        lite_ms, lite_rounds = per_window_ms(lambda: lite(window), 5000)
        interp = lite.interpreter
        invoke_ms, _ = per_window_ms(interp.invoke, 5000)
        ops = len(interp._get_ops_details())
        fresh_bare_ms, rss_bare, tf_bare = fresh_process(RSS_BARE, path)
        fresh_node_ms, rss_node, tf_node = fresh_process(RSS_NODE, path)
        size = path.stat().st_size

    result = {
        "model": f"Normalization -> LSTM({HIDDEN}, unroll=True) -> Dropout -> Dense({CLASSES}) softmax; window {WINDOW} x {FEATURES}",
        "ms_per_window": {"keras_predict": round(predict_ms, 4), "tf_function": round(fn_ms, 4),
                          "tflite": round(lite_ms, 4), "tflite_invoke_only": round(invoke_ms, 4),
                          "tflite_fresh_process_ai_edge_litert_only": round(fresh_bare_ms, 4),
                          "tflite_fresh_process_via_nodes_lstm_model": round(fresh_node_ms, 4)},
        "rounds_ms": {"keras_predict": [round(t, 4) for t in predict_rounds], "tf_function": [round(t, 4) for t in fn_rounds],
                      "tflite": [round(t, 4) for t in lite_rounds]},
        "speedup_tflite": {"vs_predict": round(predict_ms / lite_ms, 1), "vs_tf_function": round(fn_ms / lite_ms, 1)},
        "tflite_ops": ops, "tflite_bytes": size, "tflite_vs_keras_max_abs_diff": diff,
        "rss_mb": {"ai_edge_litert_only": round(rss_bare, 1), "via_nodes_lstm_model": round(rss_node, 1)},
        "tensorflow_imported": {"ai_edge_litert_only": tf_bare, "via_nodes_lstm_model": tf_node},
        "targets": {"tflite_ms_per_window": 0.1, "rss_mb_below": 200},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "tensorflow": tf.__version__},
    }
    target = saving.path(args, "lstm.json")
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ms per window: keras predict {predict_ms:.3f}, tf.function {fn_ms:.3f}, TFLite {lite_ms:.4f} "
          f"(invoke alone {invoke_ms:.4f}); TFLite is {predict_ms / lite_ms:.0f}x predict and {fn_ms / lite_ms:.1f}x tf.function")
    print(f"fresh process without TensorFlow (as the node runs): TFLite {fresh_bare_ms:.4f} ms per window "
          f"(ai_edge_litert alone), {fresh_node_ms:.4f} ms through posegraph.pose.actions.TfliteModel")
    print(f"fresh process running the TFLite model: {rss_bare:.1f} MB resident with ai_edge_litert alone, "
          f"{rss_node:.1f} MB through posegraph.pose.actions (TensorFlow imported: {tf_bare or tf_node}); "
          f"{ops} ops, {size} bytes, max |TFLite - Keras| {diff:.1e}; saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
