"""Labelled keypoint samples for training a custom keypoint model: read, make, crop, split.

Where labels come from:
- a labels file the user wrote (`load_labels`): JSON
      {"keypoints": [name, ...],
       "samples": [{"image": "a.jpg", "points": [[x, y], null, ...]},            # null: not labelled
                   {"video": "clip.mp4", "frame": 12, "clip": "id", "points": {name: [x, y]}}]}
  or CSV with a header `image,frame,clip,<name>_x,<name>_y,...` (frame and clip optional,
  an empty cell is a keypoint not labelled). Paths are relative to the labels file; pixels.
- pseudo-labels (`pseudo_label`): BlazePose (LiteRT, as the pose node runs it) on the user's clips (tracking
  through each video, as the `pose` node does) and images; a frame is dropped when nobody
  is found or a requested keypoint's visibility is below `min_visibility`, and every drop
  is counted per clip and reason in the returned report.
Both give the same `Sample`s, and `write_labels` stores pseudo-labels in the JSON format
above, so a user can inspect or correct them and train again from the file.

Split by clip: frames of one clip look alike, so a validation frame next to a training
frame says nothing about new footage. A video is one clip; images are grouped by their
folder (their "clip" field when the labels file gives one).
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from posegraph.pose import landmarks as lm
from posegraph.pose.backends.blazepose_multi import Roi
from posegraph.pose.backends.crop import box_overlap, crop_image, frame_roi, roi_around, to_crop

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
CONTEXT_ZOOM = 1.5  # stored crops reach this far past the ROI, so shift/scale augmentation sees real pixels


class LabelError(ValueError):
    """Bad labels or inputs; str() is one line naming the file and the field."""


@dataclass
class Sample:
    """One labelled person in one image: where the image is, its keypoints in pixels."""
    source: str            # image or video path
    frame: int | None      # frame number in a video, None for an image
    clip: str              # split unit
    points: np.ndarray     # (k, 2) float64 pixels; NaN rows: not labelled
    roi: Roi | None = None  # the crop (set by attach_crops)
    roi_source: str = ""   # "detector", "labels" (no detection: around the keypoints) or "frame"
    context: np.ndarray | None = field(default=None, repr=False)  # uint8 crop of the ROI x CONTEXT_ZOOM

    @property
    def visible(self) -> np.ndarray:
        return ~np.isnan(self.points[:, 0])

    @property
    def key(self) -> str:
        return self.source if self.frame is None else f"{self.source}#{self.frame}"


# ----- names ----------------------------------------------------------------------------------
def parse_keypoints(text: str | list[str], where: str = "--keypoints") -> tuple[str, ...]:
    """`left_shoulder,right_shoulder` (or a list; `coco17` / `blazepose33` for a whole layout)
    -> names, each checked against BlazePose's 33 names. `where` starts the error message: the
    option, or the labels file and field the names came from."""
    if not isinstance(text, str) and not (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)):
        raise LabelError(f"{where}: expected keypoint names (a list of strings), got {text!r}"[:300])
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    names: list[str] = []
    for item in items:
        names.extend(lm.NAMES[item] if item in (lm.COCO17, lm.BLAZEPOSE33) else [item])
    if not names:
        raise LabelError(f"{where}: no keypoint names given")
    for name in names:
        if name not in lm.BLAZEPOSE_NAMES:
            raise LabelError(f"{where}: unknown keypoint {name!r}; names are BlazePose's: "
                             f"{', '.join(lm.BLAZEPOSE_NAMES)} (or coco17 / blazepose33)")
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise LabelError(f"{where}: {dup[0]!r} is given twice")
    return tuple(names)


# ----- inputs: images and clips ------------------------------------------------------------------
def find_inputs(paths) -> list[tuple[str, Path]]:
    """(clip id, file) for every image and video under the given files and folders, in name
    order. Videos are their own clip (their path relative to the folder given); images are
    grouped by the folder holding them."""
    found: list[tuple[str, Path]] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise LabelError(f"{root}: no such file or directory")
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        base = root.parent if root.is_file() else root
        for path in files:
            suffix = path.suffix.lower()
            rel = path.relative_to(base)
            if suffix in VIDEO_SUFFIXES:
                found.append((str(rel.with_suffix("")), path))
            elif suffix in IMAGE_SUFFIXES:
                found.append((str(rel.parent) if str(rel.parent) != "." else base.name or "images", path))
    if not found:
        raise LabelError(f"{', '.join(map(str, paths))}: no images ({', '.join(IMAGE_SUFFIXES)}) or videos "
                         f"({', '.join(VIDEO_SUFFIXES)}) found")
    return found


def read_frames(path: Path, frames=None):
    """(frame number, BGR image) of a video, all or only `frames` (a set); raises LabelError on a
    file OpenCV cannot decode."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise LabelError(f"{path}: cannot open the video (missing codec or not a video)")
    try:
        index, wanted = 0, None if frames is None else set(frames)
        last = max(wanted) if wanted else None
        while True:
            ok, image = cap.read()
            if not ok:
                break
            if wanted is None or index in wanted:
                yield index, image
            index += 1
            if last is not None and index > last:
                break
        if index == 0:
            raise LabelError(f"{path}: no frame could be decoded (corrupt or empty video)")
    finally:
        cap.release()


def video_frame_count(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()


def read_image(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise LabelError(f"{path}: cannot read the image (missing, corrupt or not an image)")
    return image


# ----- labels files ------------------------------------------------------------------------------
def _points_from(entry, names, where: str) -> np.ndarray:
    points = np.full((len(names), 2), np.nan)
    if isinstance(entry, dict):
        unknown = [k for k in entry if k not in names]
        if unknown:
            raise LabelError(f"{where}: field 'points': {unknown[0]!r} is not one of the file's keypoints")
        items = [(names.index(k), v) for k, v in entry.items()]
    elif isinstance(entry, list):
        if len(entry) != len(names):
            raise LabelError(f"{where}: field 'points': {len(entry)} points for {len(names)} keypoints")
        items = list(enumerate(entry))
    else:
        raise LabelError(f"{where}: field 'points' must be a list or an object of name -> [x, y]")
    for i, value in items:
        if value is None:
            continue
        try:
            x, y = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            raise LabelError(f"{where}: field 'points': {names[i]!r} must be [x, y] or null, got {value!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise LabelError(f"{where}: field 'points': {names[i]!r} is not finite")
        points[i] = (x, y)
    return points


def load_labels(path) -> tuple[tuple[str, ...], list[Sample]]:
    """(keypoint names, samples) of a JSON or CSV labels file (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: labels file not found")
    base = path.parent
    samples: list[Sample] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            if "image" not in header:
                raise LabelError(f"{path}: line 1: the header needs an 'image' column")
            names = tuple(h[:-2] for h in header if h.endswith("_x"))
            for name in names:
                if f"{name}_y" not in header:
                    raise LabelError(f"{path}: line 1: column {name}_x has no {name}_y")
            names = parse_keypoints(list(names), f"{path}: line 1: header")
            for line, row in enumerate(reader, start=2):
                where = f"{path}: line {line}"
                points = np.full((len(names), 2), np.nan)
                for i, name in enumerate(names):
                    x, y = row.get(f"{name}_x", ""), row.get(f"{name}_y", "")
                    if (x or "").strip() and (y or "").strip():
                        try:
                            points[i] = (float(x), float(y))
                        except ValueError:
                            raise LabelError(f"{where}: field '{name}_x/_y': not a number") from None
                frame = row.get("frame") or ""
                samples.append(_sample(base, row["image"], frame.strip() or None, row.get("clip"), points, where))
        return names, samples
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(doc, dict) or "keypoints" not in doc or "samples" not in doc:
        raise LabelError(f"{path}: expected an object with fields 'keypoints' and 'samples'")
    names = parse_keypoints(doc["keypoints"], f"{path}: field 'keypoints'")
    if not isinstance(doc["samples"], list):
        raise LabelError(f"{path}: field 'samples' must be a list")
    for i, entry in enumerate(doc["samples"]):
        where = f"{path}: samples[{i}]"
        if not isinstance(entry, dict) or ("image" in entry) == ("video" in entry):
            raise LabelError(f"{where}: needs exactly one of 'image' or 'video'")
        if "video" in entry and "frame" not in entry:
            raise LabelError(f"{where}: field 'frame' is required with 'video'")
        points = _points_from(entry.get("points"), names, where)
        samples.append(_sample(base, entry.get("image") or entry["video"], entry.get("frame"), entry.get("clip"),
                               points, where))
    return names, samples


def _sample(base: Path, rel: str, frame, clip, points, where: str) -> Sample:
    source = Path(rel) if Path(rel).is_absolute() else base / rel
    if frame is not None:
        try:
            frame = int(frame)
        except (TypeError, ValueError):
            raise LabelError(f"{where}: field 'frame' must be a whole number, got {frame!r}") from None
        if frame < 0:
            raise LabelError(f"{where}: field 'frame' must be >= 0")
    if not clip:
        clip = str(Path(rel).with_suffix("")) if frame is not None else (str(Path(rel).parent) if str(Path(rel).parent) != "." else Path(rel).stem)
    return Sample(str(source), frame, str(clip), points)


def write_labels(path, names, samples, extra: dict | None = None) -> None:
    """Samples -> the JSON labels format (atomically: a crash leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    rows = []
    for s in samples:
        rel = os.path.relpath(Path(s.source).resolve(), base)
        row = {"video": rel, "frame": s.frame} if s.frame is not None else {"image": rel}
        row["clip"] = s.clip
        row["points"] = [None if np.isnan(p[0]) else [round(float(p[0]), 2), round(float(p[1]), 2)] for p in s.points]
        rows.append(row)
    doc = {"keypoints": list(names), "samples": rows, **(extra or {})}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, indent=0)
    os.replace(tmp, path)


# ----- pseudo-labels ---------------------------------------------------------------------------------
def pseudo_label(inputs, names, min_visibility: float = 0.5, every: int = 1, model_complexity: int = 1,
                 progress: bool = True) -> tuple[list[Sample], dict]:
    """BlazePose labels for `names` on every `every`-th frame of the clips (and every image)
    under `inputs`. Returns (samples, report): report = {"kept", "dropped": {reason: n},
    "per_clip": {clip: {"kept", "no_person", "low_visibility": {name: n}}}}."""
    from posegraph.pose.backends.blazepose_litert import LiteRTBlazePose as BlazePose

    files = find_inputs(inputs)
    index = np.array([lm.index(n) for n in names])
    per_clip: dict[str, dict] = defaultdict(lambda: {"kept": 0, "no_person": 0, "low_frames": 0,
                                                       "low_visibility": Counter(), "unreadable": 0})
    samples: list[Sample] = []
    total = sum(max(1, math.ceil(video_frame_count(p) / every)) if p.suffix.lower() in VIDEO_SUFFIXES else 1
                for _, p in files)
    def record(clip, path, frame, found):
        stats = per_clip[clip]
        if found is None:
            stats["no_person"] += 1
            return
        low = [names[j] for j in np.flatnonzero(found["px"][index, 3] < min_visibility)]
        if low:
            stats["low_frames"] += 1
            stats["low_visibility"].update(low)
            return
        stats["kept"] += 1
        samples.append(Sample(str(path), frame, clip, found["px"][index, :2].astype(np.float64)))

    with _progress(progress, "labelling with BlazePose", total) as advance:
        for clip, path in files:
            is_video = path.suffix.lower() in VIDEO_SUFFIXES
            pose = BlazePose(static_image_mode=not is_video, model_complexity=model_complexity)
            try:
                if is_video:  # tracks through every frame (BlazePose's ROI follows); labels every `every`-th
                    for frame, image in read_frames(path):
                        found = pose.detect(image)
                        if frame % every == 0:
                            record(clip, path, frame, found)
                            advance(1)
                else:
                    record(clip, path, None, pose.detect(read_image(path)))
                    advance(1)
            except LabelError:
                per_clip[clip]["unreadable"] += 1
                advance(1)
            finally:
                pose.close()
    report = summarise(per_clip, len(samples))
    return samples, report


def summarise(per_clip, kept: int) -> dict:
    """The drop report: totals by reason, low-visibility counts by keypoint, and per clip."""
    dropped, low_by_name, clips = Counter(), Counter(), {}
    for clip, stats in sorted(per_clip.items()):
        clips[clip] = {"kept": stats["kept"], "no_person": stats["no_person"], "unreadable": stats["unreadable"],
                       "low_visibility": stats["low_frames"], "low_visibility_by_keypoint": dict(stats["low_visibility"])}
        dropped["no_person"] += stats["no_person"]
        dropped["low_visibility"] += stats["low_frames"]
        dropped["unreadable"] += stats["unreadable"]
        low_by_name.update(stats["low_visibility"])
    return {"kept": kept, "dropped": dict(dropped), "low_visibility_by_keypoint": dict(low_by_name.most_common()),
            "per_clip": clips}


class _progress:
    """A rich progress bar on stderr (nothing when disabled): `with _progress(on, text, total) as advance`."""

    def __init__(self, enabled: bool, text: str, total: int):
        self.enabled, self.text, self.total = enabled, text, total

    def __enter__(self):
        if not self.enabled:
            return lambda n=1: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True))
        self.bar.__enter__()
        task = self.bar.add_task(self.text, total=self.total)
        return lambda n=1: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)


# ----- crops -------------------------------------------------------------------------------------
def attach_crops(samples, crop: str, size: int, progress: bool = True, detector=None) -> dict:
    """Give every sample its ROI (`crop` = detector or frame) and a context crop (the ROI times
    CONTEXT_ZOOM at size x CONTEXT_ZOOM pixels, BGR) for augmentation. Samples whose image
    cannot be read are removed (counted in the returned {"unreadable": n, "roi": {source: n}})."""
    if crop not in ("detector", "frame"):
        raise LabelError(f"crop must be 'detector' or 'frame', got {crop!r}")
    own_detector = detector is None and crop == "detector"
    if own_detector:
        from posegraph.pose.backends.blazepose_multi import MultiBlazePose

        detector = MultiBlazePose(max_people=10)
    context_size = int(round(size * CONTEXT_ZOOM))
    by_source: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s)
    unreadable, sources = [], Counter()
    def crop_one(s, image):
        s.roi, s.roi_source = choose_roi(image, s.points[s.visible], crop, detector)
        sources[s.roi_source] += 1
        s.context = crop_image(image, s.roi, context_size, CONTEXT_ZOOM)

    try:
        with _progress(progress, "cropping", len(samples)) as advance:
            for source, group in by_source.items():
                try:
                    if group[0].frame is None:  # an image: its samples all crop from it
                        image = read_image(Path(source))
                        for s in group:
                            crop_one(s, image)
                        advance(len(group))
                        continue
                    by_frame = defaultdict(list)
                    for s in group:
                        by_frame[s.frame].append(s)
                    for frame, image in read_frames(Path(source), set(by_frame)):  # streams: one frame in memory
                        for s in by_frame.pop(frame):
                            crop_one(s, image)
                            advance(1)
                    for missing in by_frame.values():  # frames past the end of the video
                        unreadable.extend(missing)
                        advance(len(missing))
                except LabelError:
                    unreadable.extend(s for s in group if s.context is None)
                    advance(sum(1 for s in group if s.context is None))
    finally:
        if own_detector:
            detector.close()
    dropped = {id(s) for s in unreadable}
    samples[:] = [s for s in samples if id(s) not in dropped]
    return {"unreadable": len(unreadable), "unreadable_examples": [s.key for s in unreadable[:5]], "roi": dict(sources)}


def choose_roi(image, labelled_px, crop: str, detector) -> tuple[Roi, str]:
    """The crop of one labelled person: the detector's ROI that fits the labels best, or around
    the labels when the detector finds nobody there; the whole frame for crop 'frame'."""
    height, width = image.shape[:2]
    if crop == "frame":
        return frame_roi(height, width), "frame"
    import cv2

    rois = [roi for _, roi in detector.detect_rois(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))]
    if len(labelled_px) == 0:
        return (rois[0], "detector") if rois else (frame_roi(height, width), "frame")
    scored = [(box_overlap(roi, labelled_px), i) for i, roi in enumerate(rois)]
    best = max(scored, default=(0.0, -1))
    if best[0] >= 1.0:  # most labels inside and a size that fits
        return rois[best[1]], "detector"
    return roi_around(labelled_px, 2.0), "labels"


def targets(samples) -> tuple[np.ndarray, np.ndarray]:
    """(k, 2) keypoints in context-crop units per sample, and the (k,) labelled mask."""
    units = np.stack([to_crop(np.nan_to_num(s.points), s.roi, CONTEXT_ZOOM) for s in samples])
    mask = np.stack([s.visible for s in samples])
    return units, mask


# ----- split ---------------------------------------------------------------------------------------
def split_by_clip(samples, val_clips=None, val_fraction: float = 0.2, seed: int = 0) -> tuple[list, list, str]:
    """(train, val, how): validation = the named clips, or `val_fraction` of the clips (at least
    one) chosen with `seed`. With a single clip, its last val_fraction of frames (said in `how`)."""
    clips = sorted({s.clip for s in samples})
    if val_clips:
        unknown = [c for c in val_clips if c not in clips]
        if unknown:
            raise LabelError(f"--val-clips: no clip {unknown[0]!r}; clips are {', '.join(clips[:20])}")
        chosen = set(val_clips)
    elif len(clips) >= 2:
        rng = np.random.default_rng(seed)
        n = min(len(clips) - 1, max(1, int(round(len(clips) * val_fraction))))
        chosen = set(rng.choice(clips, size=n, replace=False).tolist())
    else:
        ordered = sorted(samples, key=lambda s: (s.frame if s.frame is not None else 0, s.source))
        cut = max(1, int(round(len(ordered) * (1 - val_fraction))))
        return (ordered[:cut], ordered[cut:],
                f"one clip ({clips[0]}): validating on its last {len(ordered) - cut} frames, not on another clip")
    train = [s for s in samples if s.clip not in chosen]
    val = [s for s in samples if s.clip in chosen]
    if not train:
        raise LabelError("--val-clips: every clip is a validation clip; nothing is left to train on")
    return train, val, f"by clip: validating on {', '.join(sorted(chosen))}"
