"""`posegraph knn-samples ROOT -o OUT.csv`: a KNN samples CSV (ML Kit's layout) from images, one sub-folder per class.

    posegraph knn-samples ROOT -o OUT.csv [--complexity N] [--outliers [--outliers-out F.csv]]

ROOT/<class>/*.jpg|*.jpeg|*.png -> BlazePose's landmarks of each image as one row
(posegraph.pose.training.knn_samples), for the `knn` node's `samples` param. Images where
BlazePose finds no person are dropped and listed. With --outliers the new samples are
checked the write-up's way: every sample is classified (leave-one-out) against the others,
and those landing in another class are reported, as candidates to delete or relabel
before using the samples.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from posegraph.pose.training.knn_samples import SampleError, find_images, row_class, sample_rows, write_outliers, write_rows


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posegraph knn-samples",
        description="Build a KNN samples CSV (ML Kit layout) from ROOT/<class>/*.jpg|*.jpeg|*.png with BlazePose.")
    parser.add_argument("root", metavar="ROOT", help="folder with one sub-folder of images per class")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="samples CSV to write")
    parser.add_argument("--complexity", type=int, choices=(0, 1, 2), default=1, help="BlazePose model: 0 lite, 1 full (default), 2 heavy")
    parser.add_argument("--outliers", action="store_true", help="report samples the KNN (leave-one-out) puts in another class")
    parser.add_argument("--outliers-out", metavar="F.csv", help="also write the outliers to this CSV (implies --outliers)")
    parser.add_argument("--top-n-by-max", type=int, default=30, metavar="N", help="KNN setting for the outlier check (default 30, as the knn node)")
    parser.add_argument("--top-n-by-mean", type=int, default=10, metavar="N", help="KNN setting for the outlier check (default 10, as the knn node)")
    return parser


def main(argv: list[str]) -> int:
    """The command; returns the exit code (0 done, 1 failed while running, 2 bad input)."""
    from rich.console import Console

    args = _parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True)
    root, output = Path(args.root), Path(args.output)
    try:
        images = find_images(root)
    except SampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = sorted({c for c, _ in images})
    out.print(f"{len(images)} images in {len(classes)} classes: {', '.join(classes)}")
    try:
        from posegraph.pose.backends.blazepose import BlazePose

        detector = BlazePose(static_image_mode=True, model_complexity=args.complexity)
    except Exception as exc:  # a missing model or mediapipe: one line, not a traceback
        print(f"error: cannot start BlazePose (model_complexity {args.complexity}): {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    try:
        rows, dropped = sample_rows(images, detector, err)
    except SampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        detector.close()

    if dropped:
        out.print(f"dropped {len(dropped)} of {len(images)} images:")
        for path, why in dropped:
            out.print(f"  {path}: {why}")
    if not rows:
        print(f"error: {root}: no pose found in any image; nothing written", file=sys.stderr)
        return 1
    write_rows(output, rows)
    counts = Counter(row_class(row) for row in rows)
    out.print(f"wrote {len(rows)} samples to {output} ({', '.join(f'{c}: {n}' for c, n in sorted(counts.items()))}); "
              f"dropped {len(dropped)}")
    if args.outliers or args.outliers_out:
        return _report_outliers(args, output, len(rows), counts, out)
    return 0


def _report_outliers(args, samples: Path, count: int, counts: Counter, out) -> int:
    """--outliers: the leave-one-out check of the samples just written."""
    from posegraph.pose.knn import KnnClassifier, find_outliers

    if count < 2:
        out.print("outliers: need at least 2 samples; skipped")
        return 0
    if args.top_n_by_max < 1 or args.top_n_by_mean < 1:
        print("error: --top-n-by-max and --top-n-by-mean must be at least 1", file=sys.stderr)
        return 2
    smallest = min(counts, key=counts.get)
    if counts[smallest] * 2 <= args.top_n_by_mean:
        out.print(f"note: class {smallest} has {counts[smallest]} samples; with top_n_by_mean {args.top_n_by_mean} "
                  f"its samples can hardly win a majority of the votes (lower --top-n-by-mean or add samples)")
    outliers = find_outliers(KnnClassifier(samples, args.top_n_by_max, args.top_n_by_mean))
    out.print(f"outliers: {len(outliers)} of {count} samples (leave-one-out KNN votes do not pick their class alone)")
    for o in outliers:
        votes = ", ".join(f"{c}: {n}" for c, n in o.votes.items())
        out.print(f"  {o.name}  labelled {o.class_name}  predicted {'|'.join(o.predicted) or '-'}  votes {{{votes}}}")
    if args.outliers_out:
        write_outliers(Path(args.outliers_out), outliers)
        out.print(f"wrote {len(outliers)} outliers to {args.outliers_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
