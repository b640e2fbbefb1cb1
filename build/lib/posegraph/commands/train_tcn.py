"""`posegraph train-tcn DATA.npz|CLIPS_DIR -o MODEL_DIR`: train the `tcn` kind's model.

    posegraph train-tcn DATA.npz|CLIPS_DIR -o MODEL_DIR [--classes A,B,...] [--features body3d|coco_xy|...]
        [--window 32] [--rate 15] [--epochs N] [--hidden 64] [--val-clips ID,ID | --val-fraction 0.25] [--no-augment]

A temporal convolutional network over windows of view-invariant pose features
(posegraph.pose.training.actions): validation by group, clips of labels outside --classes
as negatives, "unknown" calibrated on the validation groups. Writes MODEL_DIR/model.keras,
model.tflite, labels.json, curves.png, confusion.png, metrics.json.
Exit codes: 0 trained, 1 training or export failed, 2 bad input.
"""
from __future__ import annotations

import sys

from posegraph.commands.action_options import run


def main(argv: list[str]) -> int:
    return run(argv, "train-tcn", "tcn", hidden=64, dropout=0.3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
