"""`posegraph knn-samples`: a KNN samples CSV from images (one sub-folder per class) or from landmark sequences.

    posegraph knn-samples ROOT -o OUT.csv [--complexity N] [--outliers [--outliers-out F.csv]]
    posegraph knn-samples --data DATA.npz -o OUT.csv [--classes A,B,...] [--every N] [--kind body|mlkit]
                          [--keep 0.9] [--margin 1.5] [--unknown-samples]

Images: ROOT/<class>/*.jpg|*.jpeg|*.png -> BlazePose's pixel landmarks of each image as one
row of ML Kit's layout (posegraph.pose.training.knn_samples), for the `knn` node's `samples`
param with embed kind mlkit. Images where BlazePose finds no person are dropped and listed.
With --outliers the new samples are checked the write-up's way: every sample is classified
(leave-one-out) against the others, and those landing in another class are reported, as
candidates to delete or relabel before using the samples.

Sequences: --data, a data set of `posegraph extract` (or benchmarks/clips.py, with groups):
every N-th frame with a person of each clip of --classes (default: every label) becomes a
sample of its world landmarks (kind body, the default: view-invariant, for embed kind
body) or pixels (kind mlkit). Clips of other labels are negatives: the "unknown" thresholds
(posegraph.pose.knn.calibrate_samples: each sample against the other groups' samples of its
class; per class the --keep quantile of those distances times --margin) are checked on them, and with --unknown-samples their
frames are kept as class "unknown". The thresholds, the kind and the groups go into the
sidecar OUT.csv.json (format in posegraph.pose.knn).
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
    parser.add_argument("root", metavar="ROOT", nargs="?", help="folder with one sub-folder of images per class")
    parser.add_argument("--data", metavar="DATA.npz", help="sequence data set instead of images (posegraph extract)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.csv", help="samples CSV to write")
    parser.add_argument("--classes", metavar="A,B,...", help="--data: the classes to answer (default: every label); "
                                                             "clips of other labels are negatives")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="--data: a sample every N frames (default 1)")
    parser.add_argument("--kind", choices=("body", "mlkit"), default="body",
                        help="--data: world landmarks, view-invariant (body, the default), or pixels (mlkit)")
    parser.add_argument("--keep", type=float, default=0.9, help="--data: quantile of the held-out known distances the "
                                                                 "'unknown' thresholds start from (default 0.9)")
    parser.add_argument("--margin", type=float, default=1.5, help="--data: the thresholds are that quantile times this "
                                                                  "(default 1.5)")
    parser.add_argument("--unknown-samples", action="store_true", help="--data: keep the negatives' frames as class 'unknown'")
    parser.add_argument("--complexity", type=int, choices=(0, 1, 2), default=1, help="BlazePose model: 0 lite, 1 full (default), 2 heavy")
    parser.add_argument("--outliers", action="store_true", help="report samples the KNN (leave-one-out) puts in another class")
    parser.add_argument("--outliers-out", metavar="F.csv", help="also write the outliers to this CSV (implies --outliers)")
    parser.add_argument("--top-n-by-max", type=int, default=30, metavar="N", help="KNN setting for the outlier check (default 30, as the knn node)")
    parser.add_argument("--top-n-by-mean", type=int, default=10, metavar="N", help="KNN setting for the outlier check (default 10, as the knn node)")
    return parser


def main(argv: list[str]) -> int:
    """The command; returns the exit code (0 done, 1 failed while running, 2 bad input)."""
    from rich.console import Console

    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True, highlight=False)
    out = Console(highlight=False, soft_wrap=True)
    if (args.root is None) == (args.data is None):
        print("error: give either ROOT (a folder of images) or --data DATA.npz (sequences), not both", file=sys.stderr)
        return 2
    if args.data is not None:
        return _from_sequences(args, out)
    root, output = Path(args.root), Path(args.output)
    try:
        images = find_images(root)
    except SampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = sorted({c for c, _ in images})
    out.print(f"{len(images)} images in {len(classes)} classes: {', '.join(classes)}")
    try:
        from posegraph.pose.backends.blazepose_litert import LiteRTBlazePose as BlazePose

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


def _from_sequences(args, out) -> int:
    """--data: samples of the sequences with their calibrated thresholds."""
    from posegraph.pose.knn import save_samples
    from posegraph.pose.sequences import SequenceError, load_dataset
    from posegraph.pose.training.knn_samples import build_samples

    if args.every < 1 or not 0.5 <= args.keep < 1.0 or args.margin <= 0:
        print("error: --every must be at least 1, --keep in [0.5, 1) and --margin above 0", file=sys.stderr)
        return 2
    try:
        sequences = load_dataset(args.data)
    except SequenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        samples, calibration = build_samples(sequences, classes, args.kind, args.every, args.keep, args.unknown_samples,
                                             source=args.data, margin=args.margin)
    except (SampleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = Path(args.output)
    try:
        save_samples(output, samples.names, samples.classes, samples.landmarks, samples.meta)
    except OSError as exc:
        print(f"error: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    counts = Counter(samples.classes)
    out.print(f"wrote {len(samples)} samples of kind {args.kind!r} to {output} "
              f"({', '.join(f'{c}: {n}' for c, n in sorted(counts.items()))}) and {output}.json")
    t = calibration.overall
    rejected = calibration.negatives_rejected_per_class
    out.print(f"unknown threshold {t.value:.4g} ({args.keep:g} quantile x {args.margin:g}: keeps {t.known_kept:.1%} of "
              f"{t.known} held-out distances); per class "
              + ", ".join(f"{c} {v.value:.4g}" for c, v in calibration.by_class.items())
              + (f"; negatives turned away: {rejected:.1%} of {calibration.negatives}" if rejected is not None
                 else "; no negatives to check it on"))
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
