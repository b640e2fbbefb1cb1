"""`posegraph train-lstm`: train the `lstm` node's model from a sequence data set (posegraph.pose.sequences).

    posegraph train-lstm DATA.npz|CLIPS_DIR -o MODEL_DIR [--features coco_xy|blazepose_xyzv|embed]
        [--epochs N] [--hidden 50] [--stride 4] [--window 32] [--batch 32]
        [--val-clips ID,ID | --val-fraction 0.2] [--seed S] [--no-augment]

Validation is by clip (no window of a validation clip is trained on). Writes MODEL_DIR/
model.keras, model.tflite, labels.json, curves.png, confusion.png, metrics.json (see
posegraph.pose.training.lstm). Exit codes: 0 trained, 1 training or export failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
import time

from posegraph.pose import lstm as lstm_model
from posegraph.pose.training import lstm as lstm_training


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegraph train-lstm",
                                description="Train an LSTM action classifier on a sequence data set (.npz from posegraph extract).")
    p.add_argument("data", metavar="DATA.npz|CLIPS_DIR", help="sequence data set (posegraph extract), or a folder of "
                   "<class>/<clip> videos, extracted first into MODEL_DIR/landmarks.npz (resumable)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="directory to write the model into")
    p.add_argument("--features", choices=lstm_model.FEATURE_KINDS, default="coco_xy",
                   help="coco_xy (body-normalised COCO x,y; any layout), blazepose_xyzv, embed (blazepose33 only)")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--hidden", type=int, default=50, help="LSTM units")
    p.add_argument("--window", type=int, default=lstm_model.DEFAULT_WINDOW, help="frames per window")
    p.add_argument("--stride", type=int, default=4, help="frames between training windows")
    p.add_argument("--batch", type=int, default=32, help="batch size")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout after the LSTM (0: none)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-clips", metavar="ID,ID", help="clip ids to validate on (comma separated)")
    val.add_argument("--val-fraction", type=float, default=0.2, help="share of each class's clips to validate on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no mirroring, time stretching or jitter")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    for name in ("epochs", "hidden", "window", "stride", "batch"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be at least 1", file=sys.stderr)
            return 2
    if not 0.0 <= args.val_fraction < 1.0:
        print("error: --val-fraction must be in [0, 1)", file=sys.stderr)
        return 2
    if not 0.0 <= args.dropout < 1.0:
        print("error: --dropout must be in [0, 1)", file=sys.stderr)
        return 2
    from pathlib import Path

    from posegraph.pose.sequences import SequenceError, extract, load_dataset

    try:
        if Path(args.data).is_dir():  # a folder of labelled clips: extract first (resumable), then train
            data = Path(args.output) / "landmarks.npz"
            Path(args.output).mkdir(parents=True, exist_ok=True)
            sequences = extract(args.data, data, progress=not args.quiet)
        else:
            sequences = load_dataset(args.data)
    except SequenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    val_clips = [c.strip() for c in args.val_clips.split(",") if c.strip()] if args.val_clips else None
    started = time.monotonic()
    try:
        metrics = lstm_training.train(
            sequences, args.output, kind=args.features, window=args.window, stride=args.stride, hidden=args.hidden,
            epochs=args.epochs, batch=args.batch, val_clips=val_clips, val_fraction=args.val_fraction, seed=args.seed,
            dropout=args.dropout, augment_copies=-1 if args.no_augment else 2, mirror=not args.no_augment,
            verbose=0 if args.quiet else 2)
    except (ValueError, SequenceError) as exc:  # bad data for this training: one line
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    except Exception as exc:  # TensorFlow or the export failed
        print(f"error: training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    val = metrics["val_accuracy"]
    print(f"trained in {time.monotonic() - started:.0f} s, {metrics['epochs']} epochs (best {metrics['best_epoch']}): "
          f"train accuracy {metrics['train_accuracy']:.3f}, validation accuracy "
          f"{'n/a (no validation clips)' if val is None else f'{val:.3f}'} on {len(metrics['clips']['val'])} clips; "
          f"wrote {args.output}/model.keras, model.tflite, labels.json, curves.png, confusion.png, metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
