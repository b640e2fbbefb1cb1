#!/usr/bin/env python3
"""The evaluation clips, prepared the way data/clip_labels.json says, and their landmarks.

data/clip_labels.json (committed) names every clip of ../shared/data used for training and
evaluation, with what was decided by looking at it: its class, its group (same person or
place), its repetitions, the part to keep (start_s, end_s) and a crop, and whether it is
held out of all training and tuning. The clips themselves do not ship.

    python benchmarks/clips.py [--labels data/clip_labels.json] [--out out/clips]

writes out/clips/<class>/<name>.mp4 (trimmed and cropped; the untouched file is used
as it is) and out/clips/landmarks.npz: BlazePose landmarks and world landmarks of every
prepared clip (posegraph.pose.sequences), each with its group. Both are made once and
reused: a clip is prepared again only when its labels change.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABELS = ROOT / "data" / "clip_labels.json"
OUT = ROOT / "out" / "clips"


@dataclass(frozen=True)
class Clip:
    path: str          # relative to the labels file's root
    label: str         # the class (or a negative's own name)
    group: str
    reps: int
    start_s: float | None = None
    end_s: float | None = None
    crop: tuple | None = None  # (x0, y0, x1, y1) fractions
    holdout: bool = False
    view: str = ""

    @property
    def clip_id(self) -> str:
        return f"{self.label}/{Path(self.path).name}"

    @property
    def key(self) -> str:
        """What decides the prepared file: the source and how it is cut."""
        return hashlib.sha1(json.dumps([self.path, self.start_s, self.end_s, self.crop]).encode()).hexdigest()[:12]


def load_labels(path: Path = LABELS) -> tuple[Path, list[Clip]]:
    """(root of the clips, every clip of the labels file)."""
    doc = json.loads(Path(path).read_text())
    root = (Path(path).parent / doc.get("root", "../shared/data")).resolve()
    if not root.exists():
        root = (ROOT / doc.get("root", "../shared/data")).resolve()
    clips = [Clip(path=c["path"], label=c["class"], group=c["group"], reps=int(c["reps"]), start_s=c.get("start_s"),
                  end_s=c.get("end_s"), crop=tuple(c["crop"]) if c.get("crop") else None,
                  holdout=bool(c.get("holdout")), view=c.get("view", "")) for c in doc["clips"]]
    return root, clips


def prepare(clip: Clip, root: Path, out: Path) -> Path:
    """The clip as it is used: trimmed and cropped into out/<class>/<name>.mp4 (made once per
    labels), or the source file itself when nothing is cut."""
    source = root / clip.path
    if clip.start_s is None and clip.end_s is None and clip.crop is None:
        return source
    target = out / clip.label / (Path(clip.path).stem + ".mp4")
    stamp = target.with_suffix(".key")
    if target.exists() and stamp.exists() and stamp.read_text() == clip.key:
        return target
    import cv2

    from posegraph.pose.sequences import open_clip

    total, fps, frames = open_clip(source)
    first = int(round((clip.start_s or 0.0) * fps))
    last = int(round(clip.end_s * fps)) if clip.end_s is not None else total
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for index, image in enumerate(frames):
        if index < first:
            continue
        if index >= last:
            break
        if clip.crop:
            h, w = image.shape[:2]
            x0, y0, x1, y1 = clip.crop
            image = image[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]
        if writer is None:
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (image.shape[1], image.shape[0]))
        writer.write(image)
    if writer is None:
        raise SystemExit(f"{clip.path}: nothing left between {clip.start_s} s and {clip.end_s} s")
    writer.release()
    stamp.write_text(clip.key)
    return target


def landmarks(clips: list[Clip], root: Path, out: Path, log=print) -> list:
    """Every clip's Sequence (with world landmarks and its group), extracted once and kept in
    out/landmarks.npz; a clip whose preparation changed is extracted again."""
    from posegraph.pose.sequences import extract_clip, load_dataset, save_dataset

    data = out / "landmarks.npz"
    keys_file = out / "landmarks.keys.json"
    have = {s.clip_id: s for s in load_dataset(data)} if data.exists() else {}
    keys = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    result = []
    for clip in clips:
        seq = have.get(clip.clip_id)
        if seq is None or keys.get(clip.clip_id) != clip.key:
            started = time.monotonic()
            seq = extract_clip(prepare(clip, root, out), clip.label, clip.clip_id)
            keys[clip.clip_id] = clip.key
            log(f"{clip.clip_id}: {len(seq)} frames in {time.monotonic() - started:.0f} s")
        seq.group = clip.group
        have[clip.clip_id] = seq
        result.append(seq)
        save_dataset(data, list(have.values()))
        keys_file.write_text(json.dumps(keys, indent=1))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    root, clips = load_labels(Path(args.labels))
    sequences = landmarks(clips, root, Path(args.out))
    print(f"{len(sequences)} clips, {sum(len(s) for s in sequences)} frames: {Path(args.out) / 'landmarks.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
