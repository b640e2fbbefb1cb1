"""`posegraph train-keypoints`: turn images or clips into a TFLite keypoint model with one command.

    posegraph train-keypoints INPUT... -o MODEL_DIR (--labels FILE | --label-with blazepose --keypoints A,B,...)
        [--backbone small|mobilenetv2|resnet50] [--input-size 128] [--color] [--width 1.0] [--weights FILE]
        [--crop detector|frame] [--epochs 100] [--batch 32] [--patience 12] [--val-clips ID,ID | --val-fraction 0.2]
        [--every N] [--min-visibility 0.5] [--seed S] [--no-augment] [--quiet]
    posegraph label-keypoints INPUT... -o LABELS.json --keypoints A,B,... [--every N] [--min-visibility 0.5]

INPUT: image files, videos, or folders of them (videos are clips; images are grouped into
clips by folder). With --labels the labels file (JSON or CSV, see
posegraph.pose.training.keypoint_data) names its images and no INPUT is needed. With
--label-with blazepose the pseudo-labels and the drop report are written to
MODEL_DIR/labels.json and labels_report.json first, so a second run can start from
`--labels MODEL_DIR/labels.json`.

Exit codes: 0 done, 1 training or export failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from posegraph.commands.keypoint_options import add_input_options, error, parse, print_label_report, say
from posegraph.pose.training.keypoint_data import (LabelError, attach_crops, load_labels, parse_keypoints, pseudo_label,
                                                   split_by_clip, write_labels)
from posegraph.pose.training.keypoint_model import BACKBONES


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegraph train-keypoints",
                                description="Train a keypoint model (Keras -> TFLite float and int8) on labelled or "
                                            "BlazePose-labelled images and clips.")
    add_input_options(p)
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR", help="folder to write the model into")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", metavar="FILE", help="a JSON or CSV labels file (see posegraph.pose.training.keypoint_data)")
    src.add_argument("--label-with", choices=("blazepose",), help="make pseudo-labels with BlazePose (needs --keypoints)")
    p.add_argument("--backbone", choices=BACKBONES, default="small", help="network (default small; ImageNet weights "
                   "cannot be downloaded: random start, or --weights)")
    p.add_argument("--weights", metavar="FILE", help="start from this weights file: a Keras application's no-top .h5 "
                   "for mobilenetv2 / resnet50 (ImageNet files are 3-channel: add --color; --width must match the "
                   "file's alpha), or a model.keras / .weights.h5 of the same small model")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (small; mobilenetv2's alpha)")
    p.add_argument("--input-size", type=int, default=128, help="square input side in pixels (default 128)")
    p.add_argument("--color", action="store_true", help="colour input (default grayscale)")
    p.add_argument("--crop", choices=("detector", "frame"), default="detector",
                   help="what the model sees: the BlazePose detector's person crop (default) or the whole frame")
    p.add_argument("--epochs", type=int, default=100, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patience", type=int, default=12, help="epochs without a better validation loss before stopping")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    val = p.add_mutually_exclusive_group()
    val.add_argument("--val-clips", metavar="ID,ID", help="clips to validate on (comma separated)")
    val.add_argument("--val-fraction", type=float, default=0.2, help="share of the clips to validate on (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no mirroring, shift, scale or brightness changes")
    return p


def main(argv: list[str]) -> int:
    args = parse(_train_parser(), argv)
    if args is None:
        return 2
    out = Path(args.output)
    started = time.monotonic()
    try:
        if args.labels:
            if args.inputs:
                return error("with --labels the labels file names the images; give no INPUT")
            names, samples = load_labels(args.labels)
            if args.keypoints:  # train on a subset of the file's keypoints
                wanted = parse_keypoints(args.keypoints)
                missing = [n for n in wanted if n not in names]
                if missing:
                    return error(f"--keypoints: {missing[0]!r} is not in {args.labels}")
                idx = [names.index(n) for n in wanted]
                for s in samples:
                    s.points = s.points[idx]
                names = wanted
            report = {"kept": len(samples), "dropped": {}, "source": str(args.labels)}
        else:
            if not args.keypoints:
                return error("--label-with blazepose needs --keypoints (e.g. left_shoulder,right_shoulder or coco17)")
            if not args.inputs:
                return error("give at least one INPUT (image, video or folder) to label")
            names = parse_keypoints(args.keypoints)
            samples, report = pseudo_label(args.inputs, names, args.min_visibility, args.every, args.complexity,
                                           progress=not args.quiet)
            print_label_report(report)
            out.mkdir(parents=True, exist_ok=True)
            write_labels(out / "labels.json", names, samples, {"made_with": "blazepose", "min_visibility": args.min_visibility})
        empty = [s for s in samples if not s.visible.any()]
        if empty:
            say(f"dropped {len(empty)} samples without any labelled keypoint (e.g. {empty[0].key})")
            samples = [s for s in samples if s.visible.any()]
            report["dropped"]["no_keypoint_labelled"] = len(empty)
        if len(samples) < 2:
            return error(f"only {len(samples)} usable labelled frame(s): need at least 2 to train")
        crops = attach_crops(samples, args.crop, args.input_size, progress=not args.quiet)
        report["crops"] = crops
        if crops["unreadable"]:
            say(f"dropped {crops['unreadable']} samples whose image or frame cannot be read "
                 f"(e.g. {', '.join(crops['unreadable_examples'])})")
        out.mkdir(parents=True, exist_ok=True)
        (out / "labels_report.json").write_text(json.dumps(report, indent=1))
        val_clips = [c.strip() for c in args.val_clips.split(",") if c.strip()] if args.val_clips else None
        train, val, how = split_by_clip(samples, val_clips, args.val_fraction, args.seed)
        if how.startswith("one clip"):
            say(f"warning: {how}")
    except LabelError as exc:
        return error(str(exc))
    from posegraph.pose.training.keypoint_model import TrainError
    from posegraph.pose.training.keypoint_model import train as train_model

    try:
        info = train_model(train, val, names, out, size=args.input_size, color=args.color, backbone=args.backbone,
                           width=args.width, weights=args.weights, crop=args.crop, epochs=args.epochs, batch=args.batch,
                           learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
                           augment=not args.no_augment, progress=not args.quiet, split=how, log=say,
                           extra_info={"labels": "blazepose" if args.label_with else str(args.labels)})
    except TrainError as exc:
        return error(str(exc))
    except Exception as exc:  # TensorFlow or the export failed
        first = str(exc).splitlines()[0] if str(exc) else ""
        return error(f"training failed: {type(exc).__name__}: {first}", 1)
    err = info["errors"]
    print(f"trained in {time.monotonic() - started:.0f} s ({info['training']['epochs']} epochs); validation mean error "
          f"{err['float'].get('mean_px')} px (int8 {err['int8'].get('mean_px')} px, mean-position baseline "
          f"{err['mean_baseline'].get('mean_px')} px); wrote {out}/model.keras, model.float.tflite, model.int8.tflite, "
          f"model.json, curves.png, errors.png, errors.json; run it with `pose` params {{model: 'custom:{out}'}}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
