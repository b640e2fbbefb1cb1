"""Landmark sequences of whole clips: the data set the sequence classifiers (LSTM, DTW) train on.

    runner.py extract ROOT -o DATA.npz [--complexity N]

A `Sequence` is one clip's landmarks, frame by frame: `points` float32 (T, K, 4) holding
x_px, y_px, z_px (z scaled like x: z * width, the ML Kit convention of posegraph/pose/packets.py;
0 for 2-D data) and visibility, and `world` float32 (T, K, 4): BlazePose's world landmarks
(x, y, z in metres, hip-centred, and visibility), all NaN where a model gives none (COCO-17
imports). A frame where nobody was found is all NaN, so T is always the clip's frame count
and time stays regular.

A data set is ONE compressed .npz written by `save_dataset` (no pickle anywhere):

    version     int64 ()        format version (2; version 1 files, without world, still read)
    clip_id     <U (N,)         e.g. "squat/squat_001.mp4" (class folder / file name)
    label       <U (N,)         class name
    layout      <U (N,)         "blazepose33" or "coco17"
    frames      int64 (N,)      T of each clip
    width, height int64 (N,)    image size in pixels
    fps         float64 (N,)
    offsets     int64 (N + 1,)  clip i's landmarks are points[offsets[i]:offsets[i + 1]]
    points      float32 (sum T*K, 4)  every clip's (T, K, 4) flattened to (T*K, 4), concatenated
    world       float32 (sum T*K, 4)  the world landmarks, laid out like points
    group       <U (N,)         who or where each clip was recorded (its clip_id when not known)

(flattened because clips of different layouts have different K). The file is written to a
temporary name next to the target and renamed over it, so a crash never leaves half a file.

Extraction (`extract`, `extract_clip`): ROOT/<class>/<clip>.(mp4|avi|mov|gif) -> BlazePose on
every frame with the pose node's own code and default params (posegraph.pose.backends.blazepose_litert.LiteRTBlazePose in
tracking mode, exactly what the pose kind runs), a fresh tracker per clip so no state
leaks from one clip into the next. A clip that cannot be read (not a video, corrupt, no
frames) gets one warning line and is skipped; the run goes on. The data set is saved after
every clip (spaced out only when a save gets slow: at most a tenth of the run goes to
rewriting the file; on Ctrl-C or an error what is done is saved), and a re-run skips the
clip_ids the output file already holds, so an
interrupted extraction resumes where it stopped (clips that failed are tried again).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from posegraph.pose import landmarks as lmk

FORMAT_VERSION = 2
LAYOUTS = (lmk.BLAZEPOSE33, lmk.COCO17)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".gif")
DEFAULT_FPS = 30.0
_KEYS = ("version", "clip_id", "label", "layout", "frames", "width", "height", "fps", "offsets", "points")


class SequenceError(ValueError):
    """Bad input for this module (file, folder, data set); str() is a one-line message."""


@dataclass(eq=False)
class Sequence:
    """One clip's landmarks: points float32 (T, K, 4) [x_px, y_px, z_px, visibility], NaN rows = no person."""

    clip_id: str
    label: str
    layout: str
    points: np.ndarray
    width: int
    height: int
    fps: float
    world: np.ndarray | None = None  # (T, K, 4) metres; None: all NaN
    group: str = ""  # who or where it was recorded (clips of one group never split apart); "": its own clip_id

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise SequenceError(f"clip {self.clip_id!r}: layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        self.points = np.asarray(self.points, dtype=np.float32)
        k = lmk.COUNTS[self.layout]
        if self.points.ndim != 3 or self.points.shape[1:] != (k, 4):
            raise SequenceError(f"clip {self.clip_id!r}: points must be (T, {k}, 4) for {self.layout}, "
                                f"got {self.points.shape}")
        if self.world is None:
            self.world = np.full(self.points.shape, np.nan, dtype=np.float32)
        self.world = np.asarray(self.world, dtype=np.float32)
        if self.world.shape != self.points.shape:
            raise SequenceError(f"clip {self.clip_id!r}: world must be shaped like points {self.points.shape}, "
                                f"got {self.world.shape}")
        self.clip_id, self.label = str(self.clip_id), str(self.label)
        self.group = str(self.group or self.clip_id)
        self.width, self.height, self.fps = int(self.width), int(self.height), float(self.fps)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __repr__(self) -> str:
        return (f"Sequence({self.clip_id!r}, label={self.label!r}, layout={self.layout!r}, "
                f"points={self.points.shape}, {self.width}x{self.height}, fps={self.fps:g})")


# ----- the data set file ----------------------------------------------------------------------
def _str_array(values: list[str]) -> np.ndarray:
    """Fixed-width unicode array (never object); <U1 for an empty list."""
    return np.array(list(values) or [], dtype=f"<U{max([1] + [len(v) for v in values])}")


def save_dataset(path, sequences: list[Sequence]) -> None:
    """Write `sequences` to ONE compressed .npz (layout in the module docstring), atomically."""
    path = Path(path)
    sequences = list(sequences)
    for s in sequences:
        if not isinstance(s, Sequence):
            raise TypeError(f"save_dataset takes Sequence objects, got {type(s).__name__}")
    counts = [s.points.shape[0] * s.points.shape[1] for s in sequences]
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    points = (np.concatenate([s.points.reshape(-1, 4) for s in sequences]) if sequences
              else np.zeros((0, 4), np.float32)).astype(np.float32, copy=False)
    world = (np.concatenate([s.world.reshape(-1, 4) for s in sequences]) if sequences
             else np.zeros((0, 4), np.float32)).astype(np.float32, copy=False)
    arrays = {
        "version": np.int64(FORMAT_VERSION),
        "clip_id": _str_array([s.clip_id for s in sequences]),
        "label": _str_array([s.label for s in sequences]),
        "group": _str_array([s.group for s in sequences]),
        "layout": _str_array([s.layout for s in sequences]),
        "frames": np.array([len(s) for s in sequences], dtype=np.int64),
        "width": np.array([s.width for s in sequences], dtype=np.int64),
        "height": np.array([s.height for s in sequences], dtype=np.int64),
        "fps": np.array([s.fps for s in sequences], dtype=np.float64),
        "offsets": offsets,
        "points": points,
        "world": world,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez_compressed(out, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a data set is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_dataset(path) -> list[Sequence]:
    """Read a file written by `save_dataset`; SequenceError (a ValueError) naming the path otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _KEYS if k not in data.files]
            if missing:
                raise SequenceError(f"{path}: not a sequence data set (missing {', '.join(missing)})")
            a = {k: data[k] for k in _KEYS}
            a["world"] = data["world"] if "world" in data.files else None
            a["group"] = data["group"] if "group" in data.files else a["clip_id"]
    except SequenceError:
        raise
    except Exception as exc:  # not a zip, truncated, object arrays (pickle refused)...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SequenceError(f"{path}: not a readable sequence data set ({reason})") from None
    if int(a["version"]) not in (1, FORMAT_VERSION):
        raise SequenceError(f"{path}: data set format version {int(a['version'])}, this code reads 1 and {FORMAT_VERSION}")
    if a["world"] is not None and a["world"].shape != a["points"].shape:
        raise SequenceError(f"{path}: malformed sequence data set (world and points disagree)")
    n = a["clip_id"].shape[0]
    shapes_ok = (all(a[k].shape == (n,) for k in ("clip_id", "label", "layout", "frames", "width", "height", "fps"))
                 and a["offsets"].shape == (n + 1,) and a["points"].ndim == 2 and a["points"].shape[1] == 4
                 and all(a[k].dtype.kind == "U" for k in ("clip_id", "label", "layout")))
    if not shapes_ok:
        raise SequenceError(f"{path}: malformed sequence data set (array shapes or types disagree)")
    sequences = []
    for i in range(n):
        layout = str(a["layout"][i])
        start, stop, frames = int(a["offsets"][i]), int(a["offsets"][i + 1]), int(a["frames"][i])
        k = lmk.COUNTS.get(layout)
        if layout not in LAYOUTS or stop - start != frames * k or stop > a["points"].shape[0] or start < 0:
            raise SequenceError(f"{path}: malformed sequence data set (clip {i} {str(a['clip_id'][i])!r}: "
                                f"layout {layout!r}, {frames} frames, offsets {start}..{stop})")
        world = None if a["world"] is None else a["world"][start:stop].reshape(frames, k, 4).copy()
        sequences.append(Sequence(clip_id=str(a["clip_id"][i]), label=str(a["label"][i]), layout=layout,
                                  points=a["points"][start:stop].reshape(frames, k, 4).copy(),
                                  width=int(a["width"][i]), height=int(a["height"][i]), fps=float(a["fps"][i]),
                                  world=world, group=str(a["group"][i])))
    return sequences


# ----- splits ---------------------------------------------------------------------------------
def split_by_clip(sequences, test_clip_ids) -> tuple[list, list]:
    """(train, test): the sequences whose clip_id is in `test_clip_ids` go to test, the rest to
    train, so windows cut from one clip can never land on both sides. Order is kept. An id
    that matches no sequence is an error (a typo would otherwise silently empty the test side).
    """
    ids = {test_clip_ids} if isinstance(test_clip_ids, str) else set(test_clip_ids)
    sequences = list(sequences)
    unknown = ids - {s.clip_id for s in sequences}
    if unknown:
        raise SequenceError(f"test clip ids not in the sequences: {', '.join(sorted(unknown)[:5])}"
                            + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    train = [s for s in sequences if s.clip_id not in ids]
    test = [s for s in sequences if s.clip_id in ids]
    return train, test


def leave_one_clip_out(sequences) -> Iterator[tuple[Sequence, list[Sequence]]]:
    """Yield (held_out, train) for every sequence; train leaves out every sequence sharing the
    held-out clip_id (should a list hold several pieces of one clip)."""
    sequences = list(sequences)
    for held in sequences:
        yield held, [s for s in sequences if s.clip_id != held.clip_id]


# ----- reading clips --------------------------------------------------------------------------
def list_clips(root) -> list[tuple[Path, str]]:
    """(clip path, class) for root/<class>/<clip>.(mp4|avi|mov|gif) (any case), sorted by class then name."""
    root = Path(root)
    if not root.exists():
        raise SequenceError(f"{root}: no such directory")
    if not root.is_dir():
        raise SequenceError(f"{root}: not a directory (expected ROOT/<class>/<clip>.mp4|avi|mov|gif)")
    clips = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in VIDEO_SUFFIXES:
                clips.append((path, class_dir.name))
    if not clips:
        raise SequenceError(f"{root}: no clips found (expected ROOT/<class>/<clip>.mp4|avi|mov|gif)")
    return clips


def _plausible_fps(fps) -> float:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        return DEFAULT_FPS
    return fps if np.isfinite(fps) and 0.0 < fps <= 1000.0 else DEFAULT_FPS


def _open_cv2(path: Path):
    """(frame count or 0, fps, frame iterator) through OpenCV, or None when it yields no frame."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        return None
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        return None
    total = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    fps = _plausible_fps(cap.get(cv2.CAP_PROP_FPS))

    def frames():
        try:
            yield first
            while True:
                ok, image = cap.read()
                if not ok:
                    return
                yield image
        finally:
            cap.release()

    return total, fps, frames()


def _open_pil(path: Path):
    """(frame count, fps, BGR frame iterator) through Pillow (animated gif), or None."""
    from PIL import Image, ImageSequence

    try:
        image = Image.open(path)
        image.seek(0)
    except Exception:
        return None
    total = int(getattr(image, "n_frames", 1))
    duration = image.info.get("duration") or 0
    fps = _plausible_fps(1000.0 / duration) if duration else DEFAULT_FPS

    def frames():
        with image:
            for frame in ImageSequence.Iterator(image):
                rgb = np.asarray(frame.convert("RGB"))
                yield np.ascontiguousarray(rgb[:, :, ::-1])

    return total, fps, frames()


def open_clip(path) -> tuple[int, float, Iterator[np.ndarray]]:
    """(frame count, 0 when unknown; fps, 30 when unknown; iterator of uint8 BGR frames).

    OpenCV first; for a .gif it cannot read, Pillow. SequenceError when neither gives a frame.
    """
    path = Path(path)
    if not path.is_file():
        raise SequenceError(f"{path}: no such file")
    opened = _open_cv2(path)
    if opened is None and path.suffix.lower() == ".gif":
        opened = _open_pil(path)
    if opened is None:
        raise SequenceError(f"{path}: cannot read it as a video (not a video, corrupt, or no frames)")
    return opened


def _pose_params(complexity: int) -> dict:
    """The pose kind's own defaults (posegraph.pose.estimator.PoseOptions), tracking, with the chosen model."""
    from posegraph.pose.estimator import PoseOptions

    defaults = PoseOptions()
    own = ("static_image_mode", "model_complexity", "smooth_landmarks", "min_detection_confidence", "min_tracking_confidence")
    params = {name: getattr(defaults, name) for name in own}  # the single-person BlazePose path's params only
    params.update(static_image_mode=False, model_complexity=int(complexity))
    return params


def _extract_clip(path, label, clip_id, complexity=1, on_start: Callable | None = None,
                  on_frame: Callable | None = None) -> Sequence:
    from posegraph.pose.backends.blazepose_litert import LiteRTBlazePose as BlazePose

    total, fps, frames = open_clip(path)
    if on_start:
        on_start(total)
    nan = np.full((lmk.COUNTS[lmk.BLAZEPOSE33], 4), np.nan, dtype=np.float32)
    rows, worlds, size = [], [], None
    with BlazePose(**_pose_params(complexity)) as pose:
        for image in frames:
            if size is None:
                size = image.shape[:2]
            packet = pose.detect(image)
            rows.append(nan if packet is None else packet["px"])
            worlds.append(nan if packet is None else packet["world"])
            if on_frame:
                on_frame()
    height, width = size
    return Sequence(clip_id=clip_id, label=label, layout=lmk.BLAZEPOSE33, points=np.stack(rows),
                    width=width, height=height, fps=fps, world=np.stack(worlds))


def extract_clip(path, label, clip_id, complexity=1) -> Sequence:
    """BlazePose landmarks of every frame of one clip (a fresh tracker); NaN frames where nobody is found."""
    return _extract_clip(path, label, clip_id, complexity)


@dataclass
class ExtractReport:
    sequences: list          # everything now in the output file
    done: list               # (clip_id, frames, frames without a person) extracted in this run
    skipped: list            # clip_ids already in the output file
    failed: list             # (path, why) clips that could not be read


def _no_person(seq: Sequence) -> int:
    return int(np.isnan(seq.points).all(axis=(1, 2)).sum())


def run_extract(root, out_path, complexity=1, progress=True, log: Callable[[str], None] | None = None) -> ExtractReport:
    """`extract` with the details: what was done, skipped and failed. `log` gets one line per
    clip (and per warning); default: warnings to stderr."""
    clips = list_clips(root)
    out_path = Path(out_path)
    sequences = load_dataset(out_path) if out_path.exists() else []
    have = {s.clip_id for s in sequences}
    if log is None:
        def log(line):
            if line.startswith("warning"):
                print(line, file=sys.stderr)
    report = ExtractReport(sequences, [], [], [])
    todo = []
    for path, label in clips:
        clip_id = f"{label}/{path.name}"
        if clip_id in have:
            report.skipped.append(clip_id)
            log(f"{clip_id}: already in {out_path}, skipped")
        else:
            todo.append((path, label, clip_id))

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn())
    unsaved, saved_at, save_cost = 0, time.monotonic(), 0.0

    def save():
        nonlocal unsaved, saved_at, save_cost
        began = time.monotonic()
        save_dataset(out_path, sequences)
        saved_at = time.monotonic()
        save_cost, unsaved = saved_at - began, 0

    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        clips_task = bar.add_task("clips", total=len(todo))
        frames_task = None

        def on_start(total):
            nonlocal frames_task
            if frames_task is not None:
                bar.remove_task(frames_task)
            frames_task = bar.add_task("frames", total=total or None)  # None: count unknown

        try:
            for path, label, clip_id in todo:
                bar.update(clips_task, description=f"clips {clip_id}"[-48:])
                try:
                    seq = _extract_clip(path, label, clip_id, complexity, on_start=on_start,
                                        on_frame=lambda: bar.advance(frames_task))
                except SequenceError as exc:
                    report.failed.append((path, str(exc)))
                    log(f"warning: {exc}; clip skipped")
                else:
                    sequences.append(seq)
                    unsaved += 1
                    # Saved after every clip, so an interrupted run keeps its work; only once a
                    # save costs more than a tenth of the time since the last one (a big data set)
                    # are saves spaced out, so rewriting the file never dominates the run.
                    if time.monotonic() - saved_at >= 10 * save_cost:
                        save()
                    report.done.append((clip_id, len(seq), _no_person(seq)))
                    log(f"{clip_id}: {len(seq)} frames, {_no_person(seq)} without a person")
                bar.advance(clips_task)
        finally:  # also on Ctrl-C or an unexpected error: keep every clip done
            if unsaved:
                save()
    return report


def extract(root, out_path, complexity=1, progress=True) -> list[Sequence]:
    """Landmarks of every clip of root/<class>/<clip>.(mp4|avi|mov|gif) into the data set
    `out_path`; returns everything now in it. Clips already there (same clip_id) are skipped;
    unreadable clips get a warning line on stderr and are skipped."""
    return run_extract(root, out_path, complexity, progress).sequences
