#!/usr/bin/env python3
"""What a keypoint model trained here on about 1,000 frames achieves: accuracy and speed.

1. Pseudo-labels: BlazePose (tracking, model_complexity 1) on every frame of the 19
   exercise clips in ../shared/data/exercise_clips (development data: the clips may not
   ship, a model trained on them may), COCO-17 keypoints, frames dropped when a keypoint's
   visibility is below 0.2 (0.5 would drop the side-view squats and planks almost whole).
2. Split by clip: four clips, one per exercise, are held out (never trained or validated
   on); two more validate (best checkpoint, early stopping, learning rate); the rest train.
3. Training: the defaults of `runner.py train-keypoints` (small CNN, 128 x 128 gray,
   BlazePose detector crop, augmentation), unless --backbone / --input-size / --color.
4. Accuracy, per keypoint, in image pixels, through the real `custom` backend
   (posegraph/pose/backends/custom.py: detector crop -> TFLite), float and int8, beside the error of
   predicting the mean training position through the same crops:
     - held-out clips, against BlazePose's labels there;
     - pose_squats.mp4 (bundled, never used for training), against Google's reference;
     - pose.jpg (bundled), against Google's reference.
5. Speed per frame, float vs int8 (the model's invoke alone, and the backend's whole run
   with the detector), interleaved rounds in this one process; the ratio is what to read,
   the machine is shared and noisy.

Run: python benchmarks/keypoints.py [--epochs 100] [--ship models/keypoints_coco17]
Writes benchmarks/keypoints.json and keypoints.png; --ship copies the trained model's
TFLite files, model.json and report pictures into the project.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from posegraph.pose import landmarks as lm  # noqa: E402
from posegraph.pose.backends.custom import CustomPose  # noqa: E402
from posegraph.pose.backends.crop import from_crop  # noqa: E402
from posegraph.pose.training.keypoint_data import attach_crops, load_labels, pseudo_label, read_frames, split_by_clip, write_labels  # noqa: E402
from posegraph.pose.training.keypoint_model import error_table, mean_pose_units  # noqa: E402

CLIPS = ROOT.parent / "shared" / "data" / "exercise_clips"
REF = ROOT / "data" / "google_pose_reference"
WORK = ROOT / "out" / "keypoints_bench"
TEST_CLIPS = ("jumping_jack/jumping_jack_003", "plank/plank_001", "russian_twist/russian_twist_001", "squat/squat_009")
VAL_CLIPS = ("plank/plank_002", "squat/squat_002")
NAMES = lm.COCO_NAMES
MIN_VISIBILITY = 0.2


def best_match(people, labels_px):
    """The person whose keypoints are nearest the labels (clips with two people)."""
    if not people:
        return None
    return min(people, key=lambda p: float(np.nanmean(np.linalg.norm(p["keypoints"][:, :2] - labels_px, axis=1))))


def evaluate(backends: dict, mean_units: np.ndarray, items) -> dict:
    """items: (image, labels (k, 2) px). Errors (n, k) per backend and for the mean baseline
    (mean crop-unit pose through the float backend's chosen ROI); missed frames counted."""
    errors = {name: [] for name in list(backends) + ["mean_baseline"]}
    missed = {name: 0 for name in backends}
    for image, labels in items:
        for name, backend in backends.items():
            person = best_match(backend.run(image), labels)
            if person is None:
                missed[name] += 1
                errors[name].append(np.full(len(labels), np.nan))
                continue
            errors[name].append(np.linalg.norm(person["keypoints"][:, :2] - labels, axis=1))
            if name == "float":
                base = from_crop(mean_units, person["roi"])
                errors["mean_baseline"].append(np.linalg.norm(base - labels, axis=1))
        if len(errors["mean_baseline"]) < len(errors["float"]):
            errors["mean_baseline"].append(np.full(len(labels), np.nan))
    out = {name: error_table(np.array(v), NAMES) for name, v in errors.items()}
    out["frames"] = len(items)
    out["missed"] = missed
    return out


def clip_items(samples, clips):
    """(frame image, labels) of the labelled frames of some clips, read from the videos."""
    items = []
    for clip in clips:
        group = {s.frame: s for s in samples if s.clip == clip}
        if not group:
            continue
        source = next(iter(group.values())).source
        for frame, image in read_frames(Path(source), set(group)):
            items.append((image, group[frame].points))
    return items


def timing(backends: dict, images, rounds: int = 3) -> dict:
    """Median ms per frame: model invoke alone and the whole backend run, interleaved rounds."""
    whole = {name: [] for name in backends}
    invoke = {name: [] for name in backends}
    for _ in range(rounds):
        for name, backend in backends.items():
            backend.model.invoke_ms.clear()
            for image in images:
                t0 = time.perf_counter()
                backend.run(image)
                whole[name].append((time.perf_counter() - t0) * 1000)
            invoke[name].extend(backend.model.invoke_ms)
    out = {name: {"invoke_ms": round(statistics.median(invoke[name]), 3),
                  "run_ms": round(statistics.median(whole[name]), 2)} for name in backends}
    out["int8_vs_float_invoke"] = round(out["float"]["invoke_ms"] / out["int8"]["invoke_ms"], 2)
    out["int8_vs_float_run"] = round(out["float"]["run_ms"] / out["int8"]["run_ms"], 2)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("held_out_clips", "held-out clips vs BlazePose"), ("pose_squats", "pose_squats.mp4 vs Google"),
            ("pose_jpg", "pose.jpg vs Google")]
    fig, axes = plt.subplots(len(sets), 1, figsize=(11, 9), sharex=True)
    xs = np.arange(len(NAMES))
    for ax, (key, title) in zip(axes, sets):
        res = results[key]
        for j, kind in enumerate(("mean_baseline", "float", "int8")):
            vals = [res[kind]["per_keypoint"][n].get("mean_px", np.nan) for n in NAMES]
            ax.bar(xs + (j - 1) * 0.27, vals, 0.27, label=f"{kind} (all {res[kind]['all'].get('mean_px', float('nan')):.1f} px)")
        ax.set_title(f"{title} ({res['frames']} frames)", fontsize=10)
        ax.set_ylabel("mean error (px)")
        ax.legend(fontsize=8)
    axes[-1].set_xticks(xs)
    axes[-1].set_xticklabels(NAMES, rotation=50, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--color", action="store_true")
    ap.add_argument("--patience", type=int, default=12)
    ap.add_argument("--relabel", action="store_true", help="label the clips again even if out/keypoints_bench has them")
    ap.add_argument("--ship", default=None, metavar="DIR", help="copy the trained model here (e.g. models/keypoints_coco17)")
    saving.add_arguments(ap, "keypoints.json")
    args = ap.parse_args()
    if not CLIPS.is_dir():
        print(f"skipped: {CLIPS} is absent (development clips that do not ship)", file=sys.stderr)
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    labels_path = WORK / "labels.json"
    t0 = time.perf_counter()
    if labels_path.is_file() and not args.relabel:
        _, samples = load_labels(labels_path)
        report = json.loads((WORK / "labels_report.json").read_text())
    else:
        samples, report = pseudo_label([CLIPS], NAMES, MIN_VISIBILITY)
        write_labels(labels_path, NAMES, samples)
        (WORK / "labels_report.json").write_text(json.dumps(report, indent=1))
    label_s = time.perf_counter() - t0
    test = [s for s in samples if s.clip in TEST_CLIPS]
    rest = [s for s in samples if s.clip not in TEST_CLIPS]
    attach_crops(rest, "detector", args.input_size)
    train_set, val_set, how = split_by_clip(rest, list(VAL_CLIPS))
    print(f"{len(samples)} labelled frames: train {len(train_set)}, validation {len(val_set)}, held out {len(test)}",
          file=sys.stderr)

    from posegraph.pose.training.keypoint_model import train

    model_dir = WORK / f"model_{args.backbone}_{args.input_size}{'_color' if args.color else ''}"
    info = train(train_set, val_set, NAMES, model_dir, size=args.input_size, color=args.color, backbone=args.backbone,
                 epochs=args.epochs, patience=args.patience, split=how, log=lambda m: print(m, file=sys.stderr),
                 extra_info={"labels": f"BlazePose pseudo-labels, min visibility {MIN_VISIBILITY}, exercise clips"})
    mean_units = mean_pose_units(train_set)

    backends = {kind: CustomPose(str(model_dir), precision=kind, max_people=2) for kind in ("float", "int8")}
    results = {"labels": {"frames": len(samples), "min_visibility": MIN_VISIBILITY, "seconds": round(label_s, 1),
                          "dropped": report["dropped"], "low_visibility_by_keypoint": report.get("low_visibility_by_keypoint")},
               "split": {"train_frames": len(train_set), "val_frames": len(val_set), "test_frames": len(test),
                         "train_clips": sorted({s.clip for s in train_set}), "val_clips": list(VAL_CLIPS),
                         "test_clips": list(TEST_CLIPS)},
               "model": {k: info[k] for k in ("backbone", "input_size", "channel_order", "crop", "training")}}
    results["model"]["float_kb"] = round((model_dir / "model.float.tflite").stat().st_size / 1024)
    results["model"]["int8_kb"] = round((model_dir / "model.int8.tflite").stat().st_size / 1024)
    print("evaluating on held-out clips ...", file=sys.stderr)
    results["held_out_clips"] = evaluate(backends, mean_units, clip_items(test, TEST_CLIPS))
    results["held_out_clips"]["per_clip"] = {
        clip: evaluate(backends, mean_units, clip_items(test, [clip]))["float"]["all"] for clip in TEST_CLIPS}

    ref = np.array(json.loads((REF / "pose_squats.full.json").read_text()))
    coco = lm.indices(NAMES)
    squats = [(image, ref[i, coco, :2]) for i, image in read_frames(REF / "pose_squats.mp4")]
    results["pose_squats"] = evaluate(backends, mean_units, squats)
    import cv2

    jpg = json.loads((REF / "pose.expected.json").read_text())
    image = cv2.imread(str(REF / "pose.jpg"))
    results["pose_jpg"] = evaluate(backends, mean_units, [(image, np.array(jpg["landmarks_xy"], float)[coco])])
    results["speed"] = timing(backends, [img for img, _ in squats[:40]])
    results["command"] = " ".join(["python benchmarks/keypoints.py"] + sys.argv[1:])
    target = saving.path(args, "keypoints.json")
    target.write_text(json.dumps(results, indent=1))
    plot(results, target.with_suffix(".png"))
    for key in ("held_out_clips", "pose_squats", "pose_jpg"):
        r = results[key]
        print(f"{key}: float {r['float']['all'].get('mean_px')} px, int8 {r['int8']['all'].get('mean_px')} px, "
              f"mean-position baseline {r['mean_baseline']['all'].get('mean_px')} px ({r['frames']} frames)")
    print(f"speed: {results['speed']}")
    if args.ship:
        ship = Path(args.ship)
        ship.mkdir(parents=True, exist_ok=True)
        for name in ("model.float.tflite", "model.int8.tflite", "model.json", "curves.png", "errors.png", "errors.json"):
            shutil.copy2(model_dir / name, ship / name)
        print(f"shipped to {ship}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
