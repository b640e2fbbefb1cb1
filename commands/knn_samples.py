"""Build a KNN samples CSV (ML Kit's layout) from a folder of images, one sub-folder per class.

    runner.py knn-samples ROOT -o OUT.csv [--complexity N] [--outliers [--outliers-out F.csv]]

ROOT/<class>/*.jpg|*.jpeg|*.png -> rows `name,class,x1,y1,z1,...,x33,y33,z33` with
BlazePose's landmarks in pixels (z scaled like x: z * width), the layout of ML Kit's
fitness_pose_samples.csv, so the result loads into nodes.knn.KnnClassifier and the `knn`
node's `samples` param. Images where BlazePose finds no person are dropped and listed.
With --outliers the new samples are checked the write-up's way: every sample is classified
(leave-one-out) against the others, and those landing in another class are reported, as
candidates to delete or relabel before using the samples.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class TrainError(Exception):
    """A problem with the command's input; str() is the one-line message."""


def find_images(root: Path) -> list[tuple[str, Path]]:
    """(class, image path) for ROOT/<class>/<image>, classes and files in name order."""
    if not root.exists():
        raise TrainError(f"{root}: no such directory")
    if not root.is_dir():
        raise TrainError(f"{root}: not a directory (expected ROOT/<class>/*.jpg|*.jpeg|*.png)")
    images = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append((class_dir.name, path))
    if not images:
        raise TrainError(f"{root}: no images found (expected ROOT/<class>/*.jpg|*.jpeg|*.png)")
    return images


def format_row(name: str, class_name: str, landmarks_px: np.ndarray) -> str:
    """One CSV row; each value is the shortest text that reads back as the same float32."""
    if "," in name or "\n" in name:
        raise TrainError(f"{name!r}: a file name with a comma or newline cannot go in the CSV")
    values = np.asarray(landmarks_px, dtype=np.float32)[:, :3].reshape(-1)
    return ",".join([name, class_name] + [np.format_float_positional(v, unique=True, trim="0") for v in values])


def write_rows(path: Path, rows: list[str]) -> None:
    """Write the CSV atomically: a crash never leaves half a samples file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(row + "\n" for row in rows))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def extract(images: list[tuple[str, Path]], detector, console=None) -> tuple[list[str], list[tuple[Path, str]]]:
    """Run `detector.detect` on every image: (CSV rows, [(dropped image, why)])."""
    import cv2
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    rows, dropped = [], []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("pose", total=len(images))
        for class_name, path in images:
            progress.update(task, description=f"{class_name}/{path.name}"[-40:])
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                dropped.append((path, "unreadable image"))
            else:
                packet = detector.detect(image)
                if packet is None:
                    dropped.append((path, "no pose found"))
                else:
                    rows.append(format_row(path.name, class_name, packet["px"]))
            progress.advance(task)
        progress.update(task, description="pose")
    return rows, dropped


def write_outliers(path: Path, outliers) -> None:
    """name,class,predicted,votes (votes as class=count separated by spaces)."""
    lines = ["name,class,predicted,votes"]
    for o in outliers:
        votes = " ".join(f"{c}={n}" for c, n in o.votes.items())
        lines.append(f"{o.name},{o.class_name},{'|'.join(o.predicted)},{votes}")
    write_rows(path, lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner.py knn-samples",
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
    except TrainError as exc:
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
        rows, dropped = extract(images, detector, err)
    except TrainError as exc:
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
    counts = {}
    for row in rows:
        c = row.split(",", 2)[1]
        counts[c] = counts.get(c, 0) + 1
    out.print(f"wrote {len(rows)} samples to {output} ({', '.join(f'{c}: {n}' for c, n in sorted(counts.items()))}); "
              f"dropped {len(dropped)}")

    if args.outliers or args.outliers_out:
        from posegraph.pose.knn import KnnClassifier, find_outliers

        if len(rows) < 2:
            out.print("outliers: need at least 2 samples; skipped")
            return 0
        if args.top_n_by_max < 1 or args.top_n_by_mean < 1:
            print("error: --top-n-by-max and --top-n-by-mean must be at least 1", file=sys.stderr)
            return 2
        smallest = min(counts, key=counts.get)
        if counts[smallest] * 2 <= args.top_n_by_mean:
            out.print(f"note: class {smallest} has {counts[smallest]} samples; with top_n_by_mean {args.top_n_by_mean} "
                      f"its samples can hardly win a majority of the votes (lower --top-n-by-mean or add samples)")
        outliers = find_outliers(KnnClassifier(output, args.top_n_by_max, args.top_n_by_mean))
        out.print(f"outliers: {len(outliers)} of {len(rows)} samples (leave-one-out KNN votes do not pick their class alone)")
        for o in outliers:
            votes = ", ".join(f"{c}: {n}" for c, n in o.votes.items())
            out.print(f"  {o.name}  labelled {o.class_name}  predicted {'|'.join(o.predicted) or '-'}  votes {{{votes}}}")
        if args.outliers_out:
            write_outliers(Path(args.outliers_out), outliers)
            out.print(f"wrote {len(outliers)} outliers to {args.outliers_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
