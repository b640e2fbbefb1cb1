"""`posegraph train-lstm DATA.npz|CLIPS_DIR -o MODEL_DIR`: train the `lstm` kind's model.

    posegraph train-lstm DATA.npz|CLIPS_DIR -o MODEL_DIR [--classes A,B,...] [--features body3d|coco_xy|...]
        [--window 32] [--rate 15] [--epochs N] [--hidden 50] [--val-clips ID,ID | --val-fraction 0.25] [--no-augment]

The same training as `train-tcn` (posegraph.pose.training.actions) with an LSTM: validation by
group, "unknown" calibrated on it. Exit codes: 0 trained, 1 training or export failed, 2 bad input.
"""
from __future__ import annotations

import sys

from posegraph.commands.action_options import run


def main(argv: list[str]) -> int:
    return run(argv, "train-lstm", "lstm", hidden=50, dropout=0.2)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
