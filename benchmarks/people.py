#!/usr/bin/env python3
"""Every person in the frame, per pose backend: how many are found, how fast, how accurate.

For each backend (multi-person BlazePose, PoseNet multi-pose decoding, MoveNet Lightning
and Thunder with their crop pass, MoveNet MultiPose) on:
  - the COCO photos and `street.avi` of ../shared/data/multi_person (development data that
    may not ship: skipped, with the reason saved, when absent): people found per image and
    per frame;
  - `pose_squats.mp4` (bundled): people per frame (one woman: 1 is right) and time per frame;
  - `pose.jpg` (bundled): mean keypoint error in pixels against Google's BlazePose reference
    on the COCO-17 subset (hips are defined differently in the two layouts, so 5-15 px
    there is definition, not error).
Single-person backends (Lightning, Thunder) find at most one person by design.

Run: python benchmarks/people.py [--json FILE | --save] [--street-every 5]
Writes the JSON, annotated PNGs of pose.jpg to benchmarks/people/ and of a COCO photo and a
street.avi frame to out/people/ (those images may not be copied into the project).
Timings are wall-clock per frame of the backend's whole `run` (pre-processing, model,
decoding), median over the frames, on one thread; the machine is shared, so compare the
backends within one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posegraph.pose.backends.blazepose_multi import MultiBlazePose  # noqa: E402
from posegraph.pose.landmarks import BLAZEPOSE_TO_COCO, COCO_CONNECTIONS  # noqa: E402
from posegraph.pose.backends.movenet import MoveNet, MoveNetMultiPose  # noqa: E402
from posegraph.pose.backends.posenet import PoseNet  # noqa: E402

REF = ROOT / "data" / "google_pose_reference"
SHARED = ROOT.parent / "shared" / "data" / "multi_person"
OUT = ROOT / "benchmarks" / "people"       # pictures of bundled data (committed)
OUT_DEV = ROOT / "out" / "people"          # pictures of ../shared data: its licence keeps them out of the project
COLORS = [(66, 135, 245), (245, 135, 66), (80, 200, 120), (200, 80, 200), (40, 200, 220), (220, 220, 60)]


class BlazeAdapter:
    """MultiBlazePose as the other backends: run(image) -> [{keypoints (K,3) x,y,score, score, box}]."""

    def __init__(self, max_people=6, video=False):
        self.model = MultiBlazePose(max_people=max_people)
        self.video = video

    def run(self, image):
        people = self.model.track(image) if self.video else self.model.detect(image)
        return [{"keypoints": np.concatenate([p.px[:, :2], p.px[:, 3:4]], axis=1), "score": float(p.score),
                 "box": tuple(float(v) for v in p.box), "blazepose": True} for p in people]

    def reset(self):
        self.model.reset()


def backends(video=False):
    return {
        "blazepose": lambda: BlazeAdapter(video=video),
        "posenet": lambda: PoseNet(input_size=513),
        "movenet-lightning": lambda: MoveNet("lightning", track=video),
        "movenet-thunder": lambda: MoveNet("thunder", track=video),
        "movenet-multipose": lambda: MoveNetMultiPose(),
    }


def coco_points(person) -> np.ndarray:
    kp = np.asarray(person["keypoints"])
    return kp[BLAZEPOSE_TO_COCO] if person.get("blazepose") else kp


def timed(backend, image):
    start = time.perf_counter()
    people = backend.run(image)
    return people, (time.perf_counter() - start) * 1000.0


def draw(image, people, title):
    out = image.copy()
    for i, person in enumerate(people):
        color = COLORS[i % len(COLORS)]
        kp = coco_points(person)
        for a, b in COCO_CONNECTIONS:
            if kp[a, 2] > 0.2 and kp[b, 2] > 0.2:
                cv2.line(out, tuple(int(v) for v in kp[a, :2]), tuple(int(v) for v in kp[b, :2]), color, 3)
        x0, y0, x1, y1 = (int(v) for v in person["box"])
        cv2.rectangle(out, (x0, y0), (x1, y1), color, 2)
    cv2.putText(out, title, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (0, 0, 255), 2)
    scale = 480 / out.shape[1]
    return cv2.resize(out, (480, int(out.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def expected_coco() -> np.ndarray:
    ref = json.loads((REF / "pose.expected.json").read_text())  # pixels in the 1000x667 image
    return np.asarray(ref["landmarks_xy"], dtype=np.float64)[BLAZEPOSE_TO_COCO]


def read_video(path, every=1, limit=None):
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok or (limit and len(frames) >= limit):
            return frames
        if index % every == 0:
            frames.append(frame)
        index += 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    saving.add_arguments(parser, "people.json")
    parser.add_argument("--street-every", type=int, default=5, help="use every Nth frame of street.avi")
    args = parser.parse_args(argv)
    global OUT
    OUT = OUT if args.save else OUT_DEV  # pictures of bundled data are committed only with --save
    OUT.mkdir(parents=True, exist_ok=True)
    OUT_DEV.mkdir(parents=True, exist_ok=True)
    result = {"command": "python benchmarks/people.py " + " ".join(argv or sys.argv[1:]), "backends": {},
              "shared_data": str(SHARED) if SHARED.exists() else None,
              "skipped": None if SHARED.exists() else f"{SHARED} is absent: COCO photos and street.avi not measured"}
    pose_jpg = cv2.imread(str(REF / "pose.jpg"))
    expected = expected_coco()
    squats = read_video(REF / "pose_squats.mp4")
    photos = sorted(SHARED.glob("coco_*.jpg")) if SHARED.exists() else []
    street = read_video(SHARED / "street.avi", every=args.street_every) if SHARED.exists() else []

    for name, make in backends().items():
        row = {}
        backend = make()
        people, _ = timed(backend, pose_jpg)
        errors = [float(np.linalg.norm(coco_points(p)[:, :2] - expected, axis=1).mean()) for p in people]
        row["pose_jpg_error_px"] = round(min(errors), 2) if errors else None
        cv2.imwrite(str(OUT / f"{name}_pose_jpg.png"), draw(pose_jpg, people, f"{name}: {row['pose_jpg_error_px']} px"))
        row["photos"] = {}
        for photo in photos:
            image = cv2.imread(str(photo))
            found, _ = timed(backend, image)
            row["photos"][photo.stem] = len(found)
            if photo.stem == "coco_val2014_241":
                cv2.imwrite(str(OUT_DEV / f"{name}_{photo.stem}.png"), draw(image, found, f"{name}: {len(found)} people"))
        video_backend = backends(video=True)[name]()
        counts, times = [], []
        for i, frame in enumerate(street):
            found, ms = timed(video_backend, frame)
            counts.append(len(found))
            times.append(ms)
            if i == len(street) // 2:
                cv2.imwrite(str(OUT_DEV / f"{name}_street_{i * args.street_every:03d}.png"), draw(frame, found, f"{name}: {len(found)} people"))
        if street:
            row["street"] = {"frames": len(street), "every": args.street_every, "people_mean": round(statistics.mean(counts), 2),
                             "people_max": max(counts), "ms_per_frame_median": round(statistics.median(times), 1)}
        video_backend = backends(video=True)[name]()
        counts, times = [], []
        for frame in squats:
            found, ms = timed(video_backend, frame)
            counts.append(len(found))
            times.append(ms)
        row["squats"] = {"frames": len(squats), "frames_with_one_person": counts.count(1),
                         "people_mean": round(statistics.mean(counts), 2), "ms_per_frame_median": round(statistics.median(times), 1)}
        result["backends"][name] = row
        print(f"{name:18s} pose.jpg {row['pose_jpg_error_px']} px | squats {row['squats']['ms_per_frame_median']} ms/frame, "
              f"{row['squats']['frames_with_one_person']}/{len(squats)} frames with 1 person"
              + (f" | street {row['street']['people_mean']} people/frame (max {row['street']['people_max']}), "
                 f"{row['street']['ms_per_frame_median']} ms" if street else "")
              + (f" | photos {row['photos']}" if photos else ""), flush=True)
    saving.path(args, "people.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {saving.path(args, 'people.json')}, {OUT}/*.png (pose.jpg) and {OUT_DEV}/*.png (COCO photo 241, a street.avi frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
