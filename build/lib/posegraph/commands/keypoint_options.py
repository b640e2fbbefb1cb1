"""What `train-keypoints` and `label-keypoints` share: the input options, number checks and messages."""
from __future__ import annotations

import argparse
import sys


def add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="images, videos or folders of them")
    p.add_argument("--keypoints", metavar="A,B,...", help="keypoints to label (BlazePose names, or coco17 / blazepose33)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="label every N-th frame of a video (default 1)")
    p.add_argument("--min-visibility", type=float, default=0.5,
                   help="drop a frame when BlazePose's visibility of a requested keypoint is below this (default 0.5)")
    p.add_argument("--complexity", type=int, default=1, choices=(0, 1, 2), help="BlazePose model for labelling (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def error(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def say(text: str) -> None:
    print(text, file=sys.stderr)


def print_label_report(report: dict) -> None:
    dropped = report["dropped"]
    low = report.get("low_visibility_by_keypoint", {})
    worst = ", ".join(f"{n} {c}" for n, c in list(low.items())[:5])
    say(f"labelled {report['kept']} frames; dropped {dropped.get('no_person', 0)} with no person, "
         f"{dropped.get('low_visibility', 0)} with a requested keypoint of low visibility"
         f"{f' ({worst})' if worst else ''}, {dropped.get('unreadable', 0)} unreadable files")


def check_numbers(args) -> str | None:
    if args.every < 1:
        return "--every must be at least 1"
    if not 0.0 <= args.min_visibility <= 1.0:
        return "--min-visibility must be in [0, 1]"
    for name in ("epochs", "batch", "patience"):
        if hasattr(args, name) and getattr(args, name) < 1:
            return f"--{name} must be at least 1"
    if hasattr(args, "input_size") and not 16 <= args.input_size <= 1024:
        return "--input-size must be in [16, 1024]"
    if hasattr(args, "backbone") and args.backbone == "resnet50" and args.input_size < 32:
        return "--input-size must be at least 32 for resnet50"
    if hasattr(args, "val_fraction") and not 0.0 < args.val_fraction < 1.0:
        return "--val-fraction must be in (0, 1)"
    if hasattr(args, "width") and not 0.05 <= args.width <= 4:
        return "--width must be in [0.05, 4]"
    return None


def parse(parser: argparse.ArgumentParser, argv: list[str]):
    """The command's arguments, or None after saying which number is out of range."""
    args = parser.parse_args(argv)
    problem = check_numbers(args)
    if problem:
        error(problem)
        return None
    return args
