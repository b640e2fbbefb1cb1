"""`posegraph label-keypoints INPUT... -o LABELS.json --keypoints A,B,...`: BlazePose pseudo-labels
(a labels file `train-keypoints --labels` takes; see posegraph.pose.training.keypoint_data).

Exit codes: 0 done, 2 bad input or nothing kept.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from posegraph.commands.keypoint_options import add_input_options, error, parse, print_label_report, say
from posegraph.pose.training.keypoint_data import LabelError, parse_keypoints, pseudo_label, write_labels


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegraph label-keypoints",
                                description="Pseudo-label images and clips with BlazePose (a labels JSON for train-keypoints).")
    add_input_options(p)
    p.add_argument("-o", "--output", required=True, metavar="LABELS.json")
    return p


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if args is None:
        return 2
    if not args.inputs:
        return error("give at least one INPUT (image, video or folder)")
    if not args.keypoints:
        return error("--keypoints is required")
    try:
        names = parse_keypoints(args.keypoints)
        samples, report = pseudo_label(args.inputs, names, args.min_visibility, args.every, args.complexity,
                                       progress=not args.quiet)
    except LabelError as exc:
        return error(str(exc))
    print_label_report(report)
    report_path = Path(args.output).with_name(Path(args.output).stem + "_report.json")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))
    if not samples:
        return error(f"no frame kept (see {report_path}); lower --min-visibility or check the inputs show a person")
    write_labels(args.output, names, samples, {"made_with": "blazepose", "min_visibility": args.min_visibility})
    say(f"wrote {args.output} and {report_path}")
    return 0
