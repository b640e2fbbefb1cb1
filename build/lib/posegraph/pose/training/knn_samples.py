"""KNN samples (ML Kit's CSV layout) from a folder of labelled images, or from sequences.

ROOT/<class>/*.jpg|*.jpeg|*.png -> rows `name,class,x1,y1,z1,...,x33,y33,z33` with
BlazePose's landmarks in pixels (z scaled like x: z * width), the layout of ML Kit's
fitness_pose_samples.csv, so the result loads into posegraph.pose.knn.KnnClassifier and
the `knn` node's `samples` param. `posegraph knn-samples` is the command around it.

From a sequence data set (posegraph.pose.sequences, e.g. `posegraph extract`):
`samples_from_sequences` takes every N-th frame with a person of each clip, as world
landmarks (kind `body`, view-invariant) or pixels (kind `mlkit`); `build_samples` also
measures the "unknown" thresholds (posegraph.pose.knn.calibrate_samples, each sample
against other groups of its class, checked on the clips of other motions) and writes the
CSV with its JSON sidecar.
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
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a samples file is an ordinary file
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


# ----- from sequences ----------------------------------------------------------------------------
def samples_from_sequences(sequences, kind: str = "body", every: int = 1, per_clip: int = 0):
    """(Samples of every `every`-th frame with a person of each BlazePose clip, {clip_id: group}).

    `per_clip` > 0 keeps at most that many of a clip's frames, evenly spread (why: a long
    clip would otherwise outvote the short clips of other people in the KNN's top 10).
    Kind body keeps the world landmarks (metres) and needs them finite with a body frame;
    kind mlkit keeps the pixels. Names are "CLIP_ID#FRAME"."""
    from posegraph.pose.body import torso_length
    from posegraph.pose.knn import Samples

    names, classes, points, groups = [], [], [], {}
    for seq in sequences:
        if seq.layout != "blazepose33":
            continue
        source = seq.world if kind == "body" else seq.points
        xyz = np.asarray(source[:, :, :3], dtype=np.float64)
        ok = np.isfinite(xyz).all(axis=(1, 2))
        if kind == "body":
            with np.errstate(invalid="ignore"):
                ok &= torso_length(xyz) > 1e-6
        frames = np.flatnonzero(ok)[::max(1, int(every))]
        if per_clip and frames.size > per_clip:
            frames = frames[np.linspace(0, frames.size - 1, per_clip).round().astype(int)]
        if not frames.size:
            continue
        if "," in seq.clip_id or "\n" in seq.clip_id:
            raise SampleError(f"{seq.clip_id!r}: a clip id with a comma or newline cannot go in the CSV")
        groups[seq.clip_id] = seq.group
        names += [f"{seq.clip_id}#{i}" for i in frames]
        classes += [seq.label] * len(frames)
        points.append(xyz[frames])
    if not names:
        raise SampleError("no frame with a person (and, for kind body, world landmarks) in the sequences")
    return Samples(names, classes, np.concatenate(points), kind=kind, meta={"groups": groups}), groups


def build_samples(sequences, classes=None, kind: str = "body", every: int = 1, keep: float | None = None,
                  unknown_samples: bool = False, calibration_step: int = 1, source: str = "", standardize: bool = True,
                  per_clip: int = 0, margin: float | None = None):
    """Samples of the classes `classes` (default: every label) from sequences, with their
    calibrated "unknown" thresholds in `meta`: (Samples to write, the calibration).

    Clips of other labels are the negatives the thresholds are checked on; with
    `unknown_samples` their frames are kept too, as class "unknown" (a query near them then
    votes "unknown"). With `standardize` the embedding's coordinates are weighted by 1 / their
    spread within a class (posegraph.pose.knn.feature_weights), kept as "weights"."""
    from posegraph.pose.knn import DEFAULT_AXES_WEIGHTS, UNKNOWN, calibrate_samples, feature_weights

    everything, groups = samples_from_sequences(sequences, kind, every, per_clip)
    classes = sorted(set(classes) if classes else set(everything.classes) - {UNKNOWN})
    missing = [c for c in classes if c not in everything.classes]
    if missing:
        raise SampleError(f"no frames of class {', '.join(missing)} in the sequences")
    if standardize:
        everything.meta["weights"] = feature_weights(everything, classes).tolist()
    sample_groups = everything.groups()
    calibration = calibrate_samples(everything, sample_groups, classes, keep, calibration_step, margin=margin)
    known = np.isin(everything.classes, classes)
    if unknown_samples:
        everything.classes = [c if c in classes else UNKNOWN for c in everything.classes]
        chosen = everything
    else:
        chosen = everything.subset(known)
    kept = {name.rsplit("#", 1)[0] for name in chosen.names}
    meta = {"kind": kind, "axes_weights": list(DEFAULT_AXES_WEIGHTS[kind]), "top_n_by_max": 30, "top_n_by_mean": 10,
            "classes": classes, "groups": {clip: g for clip, g in groups.items() if clip in kept}, "every": int(every),
            "per_clip": int(per_clip), "source": str(source),
            "unknown_samples": bool(unknown_samples)}
    if standardize:
        meta["weights"] = everything.meta["weights"]
    calibration.store(meta, {"keep": calibration.overall.keep, "step": int(calibration_step),
                             "known_groups": len({g for g, k in zip(sample_groups, known) if k})})
    chosen.meta = meta
    return chosen, calibration
