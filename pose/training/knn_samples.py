"""KNN samples (ML Kit's CSV layout) from a folder of labelled images.

ROOT/<class>/*.jpg|*.jpeg|*.png -> rows `name,class,x1,y1,z1,...,x33,y33,z33` with
BlazePose's landmarks in pixels (z scaled like x: z * width), the layout of ML Kit's
fitness_pose_samples.csv, so the result loads into posegraph.pose.knn.KnnClassifier and
the `knn` node's `samples` param. `posegraph knn-samples` is the command around it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class SampleError(Exception):
    """A problem with the images or names given; str() is the one-line message."""


def find_images(root: Path) -> list[tuple[str, Path]]:
    """(class, image path) for ROOT/<class>/<image>, classes and files in name order."""
    root = Path(root)
    if not root.exists():
        raise SampleError(f"{root}: no such directory")
    if not root.is_dir():
        raise SampleError(f"{root}: not a directory (expected ROOT/<class>/*.jpg|*.jpeg|*.png)")
    images = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append((class_dir.name, path))
    if not images:
        raise SampleError(f"{root}: no images found (expected ROOT/<class>/*.jpg|*.jpeg|*.png)")
    return images


def format_row(name: str, class_name: str, landmarks_px: np.ndarray) -> str:
    """One CSV row; each value is the shortest text that reads back as the same float32."""
    if "," in name or "\n" in name:
        raise SampleError(f"{name!r}: a file name with a comma or newline cannot go in the CSV")
    values = np.asarray(landmarks_px, dtype=np.float32)[:, :3].reshape(-1)
    return ",".join([name, class_name] + [np.format_float_positional(v, unique=True, trim="0") for v in values])


def row_class(row: str) -> str:
    """The class column of a samples row."""
    return row.split(",", 2)[1]


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


def sample_rows(images: list[tuple[str, Path]], detector, console=None) -> tuple[list[str], list[tuple[Path, str]]]:
    """Run `detector.detect` (a BGR image -> a landmarks packet or None) on every image,
    with a progress bar on the rich `console`: (CSV rows, [(dropped image, why)])."""
    import cv2
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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
    """name,class,predicted,votes (votes as class=count separated by spaces), for the
    outliers posegraph.pose.knn.find_outliers found."""
    lines = ["name,class,predicted,votes"]
    for o in outliers:
        votes = " ".join(f"{c}={n}" for c, n in o.votes.items())
        lines.append(f"{o.name},{o.class_name},{'|'.join(o.predicted)},{votes}")
    write_rows(path, lines)
