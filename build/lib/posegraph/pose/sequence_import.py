"""Import landmark sequences users already have into Sequence objects (posegraph/pose/sequences.py).

    runner.py import-sequences mediapipe-txt FOLDER|FILE.txt -o DATA.npz [--width W --height H --fps F]
    runner.py import-sequences mhad FOLDER|X_FILE.txt -o DATA.npz [--classes A,B,...] [--frames-per-sequence 32]

mediapipe-txt: the per-action text files of the Keras LSTM write-up (MediaPipe Pose, one
    file per action written by pandas `DataFrame(lm_list).to_csv(ACTION + ".txt")`):
    `<ACTION>.txt`, a header row of column numbers, then one row per frame: the frame index
    followed by x, y, z, visibility of each of the 33 landmarks (133 values), MediaPipe's
    normalised coordinates. Separator: comma if the first line holds one, else whitespace.
    Coordinates become pixels for an image `width` x `height` (default 640 x 480): x*width,
    y*height, z*width (ML Kit convention). Consecutive frame indices (i, i+1, ...) form one
    sequence; any other step (a drop or reset of the index, or a jump forward, i.e. missing
    frames) starts a new one, so no sequence spans a gap. Each sequence's label is ACTION
    and its clip_id "<ACTION>.txt#<n>", n counting from 0 within the file.

mhad: the Berkeley MHAD 2-D pose layout of the Detectron2/OpenPose + LSTM write-up:
    `X_<name>.txt`, one frame per row, 18 OpenPose keypoints as 36 comma-separated numbers
    (x, y in pixels), 32 consecutive rows per sequence; `y_<name>.txt`, one class id per
    sequence, 1-based into MHAD_CLASSES (overridable). Keypoints are converted to COCO-17
    (posegraph.pose.landmarks; the neck is dropped): layout "coco17", z 0, visibility 1. OpenPose writes
    (0, 0) for a keypoint it did not find: such a keypoint becomes x, y, z NaN with visibility
    0, and a frame where every keypoint is missing is all NaN (the "no person" convention).
    clip_id "X_<name>.txt#<n>" (n from 0). The files carry no video identity: consecutive
    windows may come from one recording, so keep the files' own train/test split (the clip_id
    prefix says which file a sequence came from) rather than splitting windows at random.
    Image size 640 x 480 (MHAD's cameras) and fps 30 by default; both are parameters.

Malformed rows give one-line errors naming file:line (SequenceError, a ValueError).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from posegraph.pose import landmarks as lmk
from posegraph.pose.sequences import Sequence, SequenceError

MHAD_CLASSES = ("JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS")
MEDIAPIPE_VALUES = 1 + 33 * 4  # frame index + 33 x [x, y, z, visibility]
OPENPOSE_VALUES = 18 * 2
FORMATS = ("mediapipe-txt", "mhad")


def _split(line: str, comma: bool) -> list[str]:
    if comma:
        return [t.strip() for t in line.split(",")]
    return line.split()


def _numbers(tokens: list[str], where: str) -> list[float]:
    values = []
    for token in tokens:
        try:
            values.append(float(token))
        except ValueError:
            raise SequenceError(f"{where}: not a number: {token!r}") from None
    return values


def _is_header(tokens: list[str]) -> bool:
    """A row of column numbers (pandas writes an empty first cell for the index column)."""
    cells = [t for t in tokens if t != ""]
    return bool(cells) and all(t.isdigit() for t in cells) and len(cells) in (MEDIAPIPE_VALUES - 1, MEDIAPIPE_VALUES)


def _text_files(path: Path, pattern: str, what: str) -> list[Path]:
    if not path.exists():
        raise SequenceError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob(pattern) if p.is_file())
    if not files:
        raise SequenceError(f"{path}: no {pattern} files ({what})")
    return files


# ----- MediaPipe per-action text files --------------------------------------------------------
def read_mediapipe_txt_file(path, width: int = 640, height: int = 480, fps: float = 30.0) -> list[Sequence]:
    """The sequences of one `<ACTION>.txt` (see the module docstring)."""
    path = Path(path)
    action = path.stem
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SequenceError(f"{path}: cannot read it as text ({exc})") from None
    scale = np.array([width, height, width, 1.0], dtype=np.float64)
    comma = None
    runs: list[list[np.ndarray]] = []
    last_index = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if comma is None:
            comma = "," in line
            tokens = _split(line, comma)
            if _is_header(tokens):
                continue
        else:
            tokens = _split(line, comma)
        if len(tokens) != MEDIAPIPE_VALUES:
            raise SequenceError(f"{where}: expected {MEDIAPIPE_VALUES} values (frame index + 33 landmarks x "
                                f"[x, y, z, visibility]), got {len(tokens)}")
        values = _numbers(tokens, where)
        index = values[0]
        if not (np.isfinite(index) and index == int(index) and index >= 0):
            raise SequenceError(f"{where}: frame index {tokens[0]!r} is not a whole number >= 0")
        index = int(index)
        if last_index is None or index != last_index + 1:
            runs.append([])
        last_index = index
        runs[-1].append((np.array(values[1:], dtype=np.float64).reshape(33, 4) * scale).astype(np.float32))
    return [Sequence(clip_id=f"{path.name}#{n}", label=action, layout=lmk.BLAZEPOSE33, points=np.stack(rows),
                     width=width, height=height, fps=fps) for n, rows in enumerate(runs)]


def import_mediapipe_txt(path, width: int = 640, height: int = 480, fps: float = 30.0) -> list[Sequence]:
    """Every `<ACTION>.txt` of a folder (or one such file), in file-name order."""
    sequences = []
    for file in _text_files(Path(path), "*.txt", "one <ACTION>.txt per action"):
        sequences.extend(read_mediapipe_txt_file(file, width, height, fps))
    return sequences


# ----- MHAD 2-D pose (OpenPose-18) ------------------------------------------------------------
def _read_rows(path: Path, columns: int, what: str) -> np.ndarray:
    """float64 (rows, columns) of a comma-separated file; one-line error at the first bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SequenceError(f"{path}: cannot read it as text ({exc})") from None
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        return np.zeros((0, columns), dtype=np.float64)
    try:  # fast path (C parser); on any problem, scan the lines to say exactly where
        data = np.loadtxt([line for line in lines if line.strip()], delimiter=",", comments=None,
                          dtype=np.float64, ndmin=2)
        if data.shape[1] == columns or data.size == 0:
            return data.reshape(-1, columns)
    except ValueError:
        pass
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        tokens = _split(line, True)
        where = f"{path}:{number}"
        if len(tokens) != columns:
            raise SequenceError(f"{where}: expected {columns} comma-separated values ({what}), got {len(tokens)}")
        rows.append(_numbers(tokens, where))
    return np.array(rows, dtype=np.float64).reshape(-1, columns)


def _openpose_frames_to_coco(xy: np.ndarray) -> np.ndarray:
    """(T, 18, 2) OpenPose pixels -> (T, 17, 4) COCO [x, y, z=0, visibility]; (0, 0) or NaN = missing."""
    t = xy.shape[0]
    points = np.zeros((t, 18, 4), dtype=np.float32)
    points[..., :2] = xy
    points[..., 3] = 1.0
    missing = ((xy[..., 0] == 0) & (xy[..., 1] == 0)) | ~np.isfinite(xy).all(axis=-1)
    points[missing] = (np.nan, np.nan, np.nan, 0.0)
    points[missing.all(axis=1)] = np.nan
    return np.ascontiguousarray(lmk.openpose_to_coco(points.transpose(1, 0, 2)).transpose(1, 0, 2))


def read_mhad_pair(x_path, y_path, classes=MHAD_CLASSES, frames_per_sequence: int = 32,
                   width: int = 640, height: int = 480, fps: float = 30.0) -> list[Sequence]:
    """The sequences of one X_*.txt / y_*.txt pair (see the module docstring)."""
    x_path, y_path = Path(x_path), Path(y_path)
    classes = tuple(classes)
    for p in (x_path, y_path):
        if not p.is_file():
            raise SequenceError(f"{p}: no such file")
    x = _read_rows(x_path, OPENPOSE_VALUES, "18 OpenPose keypoints as x,y pixels")
    y_lines = y_path.read_text(encoding="utf-8-sig").splitlines()
    ids = []
    for number, line in enumerate(y_lines, start=1):
        if not line.strip():
            continue
        text = line.strip()
        try:
            value = float(text)
        except ValueError:
            raise SequenceError(f"{y_path}:{number}: not a class id: {text!r}") from None
        if value != int(value) or not 1 <= int(value) <= len(classes):
            raise SequenceError(f"{y_path}:{number}: class id {text} is not a whole number in 1..{len(classes)} "
                                f"({', '.join(classes)})")
        ids.append(int(value))
    if x.shape[0] != frames_per_sequence * len(ids):
        raise SequenceError(f"{x_path}: {x.shape[0]} rows, but {y_path.name} has {len(ids)} sequences, which need "
                            f"{frames_per_sequence} x {len(ids)} = {frames_per_sequence * len(ids)} rows")
    points = _openpose_frames_to_coco(x.reshape(-1, 18, 2))
    return [Sequence(clip_id=f"{x_path.name}#{n}", label=classes[c - 1], layout=lmk.COCO17,
                     points=points[n * frames_per_sequence:(n + 1) * frames_per_sequence],
                     width=width, height=height, fps=fps) for n, c in enumerate(ids)]


def import_mhad(path, classes=MHAD_CLASSES, frames_per_sequence: int = 32,
                width: int = 640, height: int = 480, fps: float = 30.0) -> list[Sequence]:
    """Every X_<name>.txt of a folder (or one X file) with its y_<name>.txt, in file-name order."""
    sequences = []
    for x_path in _text_files(Path(path), "X_*.txt", "X_<name>.txt with y_<name>.txt beside it"):
        if not x_path.name.startswith("X_"):
            raise SequenceError(f"{x_path}: expected a file named X_<name>.txt")
        y_path = x_path.with_name("y_" + x_path.name[2:])
        if not y_path.is_file():
            raise SequenceError(f"{x_path}: its labels file {y_path.name} is missing")
        sequences.extend(read_mhad_pair(x_path, y_path, classes, frames_per_sequence, width, height, fps))
    return sequences
