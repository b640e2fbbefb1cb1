"""What `train-tcn` and `train-lstm` share: their options, checks, and the run itself."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from posegraph.pose.actions import DEFAULT_RATE, DEFAULT_WINDOW, FEATURE_KINDS


def parser(command: str, arch: str, hidden: int, dropout: float) -> argparse.ArgumentParser:
    name = arch.upper()
    p = argparse.ArgumentParser(prog=f"posegraph {command}",
                                description=f"Train a {name} action classifier on a sequence data set (.npz from posegraph "
                                            "extract) or a folder of labelled clips; it can answer \"unknown\".")
    p.add_argument("data", metavar="DATA.npz|CLIPS_DIR", help="sequence data set (posegraph extract), or a folder of "
                   "<class>/<clip> videos, extracted first into MODEL_DIR/landmarks.npz (resumable)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="directory to write the model into")
    p.add_argument("--classes", metavar="A,B,...", help="the classes to recognise (default: every label); clips of "
                   "other labels are negatives: a background class \"unknown\" and a check of the threshold")
    p.add_argument("--features", choices=FEATURE_KINDS, default="body3d",
                   help="body3d (BlazePose world landmarks in the body's frame: the camera does not matter; default), "
                        "coco_xy (2-D, any pose backend; trained from many viewpoints), blazepose_xyzv, embed")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help=f"frames per window (default {DEFAULT_WINDOW})")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE,
                   help=f"frames per second the window is resampled to (default {DEFAULT_RATE:g}; 0: frames as they come)")
    p.add_argument("--stride", type=int, default=2, help="frames between training windows")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--hidden", type=int, default=hidden, help=f"{'LSTM units' if arch == 'lstm' else 'filters per layer'}")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--dropout", type=float, default=dropout, help="dropout before the output layer (0: none)")
    p.add_argument("--keep", type=float, default=0.99, help="share of held-out windows of known classes the "
                   "\"unknown\" threshold keeps (default 0.99)")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-clips", metavar="ID,ID", help="clip ids to validate on (their whole groups are held out)")
    val.add_argument("--val-fraction", type=float, default=0.25, help="share of each class's groups to validate on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no mirroring, viewpoints, speed changes or jitter")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def _problem(args) -> str | None:
    for name in ("epochs", "hidden", "window", "stride", "batch"):
        if getattr(args, name) < 1:
            return f"--{name} must be at least 1"
    if not 0.0 <= args.val_fraction < 1.0:
        return "--val-fraction must be in [0, 1)"
    if not 0.0 <= args.dropout < 1.0:
        return "--dropout must be in [0, 1)"
    if args.rate < 0:
        return "--rate must be 0 or more"
    if not 0.5 <= args.keep < 1.0:
        return "--keep must be in [0.5, 1)"
    return None


def _sequences(args):
    from posegraph.pose.sequences import extract, load_dataset

    if Path(args.data).is_dir():  # a folder of labelled clips: extract first (resumable), then train
        data = Path(args.output) / "landmarks.npz"
        Path(args.output).mkdir(parents=True, exist_ok=True)
        return extract(args.data, data, progress=not args.quiet)
    return load_dataset(args.data)


def run(argv: list[str], command: str, arch: str, hidden: int, dropout: float) -> int:
    """Parse, check, train; the exit code (0 trained, 1 training or export failed, 2 bad input)."""
    args = parser(command, arch, hidden, dropout).parse_args(argv)
    problem = _problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from posegraph.pose.sequences import SequenceError
    from posegraph.pose.training import actions

    try:
        sequences = _sequences(args)
    except SequenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    val_clips = [c.strip() for c in args.val_clips.split(",") if c.strip()] if args.val_clips else None
    started = time.monotonic()
    try:
        metrics = actions.train(
            sequences, args.output, arch=arch, kind=args.features, classes=classes, window=args.window, rate=args.rate,
            stride=args.stride, hidden=args.hidden, epochs=args.epochs, batch=args.batch, val_clips=val_clips,
            val_fraction=args.val_fraction, seed=args.seed, dropout=args.dropout, keep=args.keep,
            augment_copies=-1 if args.no_augment else 3, verbose=0 if args.quiet else 2,
            log=lambda line: print(line, file=sys.stderr))
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
          f"{'n/a (no validation clips)' if val is None else f'{val:.3f}'} on {len(metrics['clips']['val'])} clips of "
          f"other groups; wrote {args.output}/model.keras, model.tflite, labels.json, curves.png, confusion.png, metrics.json")
    return 0
