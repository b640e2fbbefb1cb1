#!/usr/bin/env python3
"""How many clips does a classifier get right? The real pipeline on every clip of a folder.

For each clip under CLIPS/<class>/ the real graph (graphs/video_<classifier>.yaml:
capture -> pose -> classifier -> smoothing -> sinks, one process per node) runs on it; the
clip's answer is the majority of the per-frame answers. A class folder the model does not
know counts as right when the answer is "unknown". Clips shorter than the classifier's
window still get answers (the nodes answer early on a padded window).

  --loo   leave one clip out: for each clip, train on all the other clips (the LSTM, the
          DTW templates, or the KNN samples from their frames), then run the pipeline on
          it. This is the honest measure on a small set: the answer never saw the clip.
  without --loo: the given (or default) model on every clip.

Usage:
  python benchmarks/accuracy.py --clips DIR --classifier lstm|dtw|knn [--loo] [--json FILE | --save]
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_MODELS = {"lstm": ROOT / "models" / "lstm_exercises", "dtw": ROOT / "models" / "dtw_exercises.npz", "knn": None}
MODEL_PARAM = {"lstm": "lstm.model", "dtw": "dtw.templates", "knn": "knn.samples"}


def runner(*args) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"runner.py {' '.join(map(str, args[:2]))} failed:\n{done.stderr[-2000:]}")


def write_knn_samples(sequences, path: Path) -> None:
    """ML Kit's CSV layout from every frame with a person of the training clips."""
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        for seq in sequences:
            if seq.layout != "blazepose33":
                continue
            for i, frame in enumerate(seq.points):
                if not (frame == frame).all():  # NaN: no person
                    continue
                out.writerow([f"{seq.clip_id}#{i}", seq.label, *frame[:, :3].reshape(-1).round(3).tolist()])


def train(classifier: str, sequences, work: Path) -> Path:
    """A model trained on `sequences` only, made with the project's own commands."""
    from posegraph.pose.sequences import save_dataset

    data = work / "train.npz"
    save_dataset(data, sequences)
    if classifier == "lstm":
        model = work / "lstm"
        runner("train-lstm", data, "-o", model)
    elif classifier == "dtw":
        model = work / "dtw.npz"
        runner("dtw-templates", "--data", data, "-o", model)
    else:
        model = work / "knn.csv"
        write_knn_samples(sequences, model)
    return model


def known_classes(classifier: str, model: Path) -> set[str]:
    if classifier == "lstm":
        labels = json.loads((model / "labels.json").read_text())
        return set(labels["classes"] if isinstance(labels, dict) else labels)
    if classifier == "dtw":
        from posegraph.pose.dtw import load_templates

        return set(load_templates(model).classes)
    with open(model) as f:
        return {row[1] for row in csv.reader(f) if len(row) > 1}


def run_clip(classifier: str, clip: Path, model: Path, work: Path) -> list[str]:
    """Per-frame answers of the real graph on one clip."""
    from posegraph.spec import load_graph
    from posegraph.supervisor import Supervisor

    records = work / "records.jsonl"
    overrides = [f"camera.source={clip}", f"{MODEL_PARAM[classifier]}={model}", f"records.path={records}",
                 f"video.path={work / 'video.mp4'}"]
    spec = load_graph(ROOT / "graphs" / f"video_{classifier}.yaml", overrides)
    with open(os.devnull, "w") as quiet:
        code = Supervisor(spec, live=False, out=quiet).run()
    if code != 0:
        raise SystemExit(f"the {classifier} graph failed on {clip} (exit {code})")
    answers = []
    for line in records.read_text().splitlines():
        record = json.loads(line)
        answer = record.get("label") or record.get("class")
        if answer:
            answers.append(answer)
    return answers


def confusion_png(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = sorted({r["label"] for r in rows} | {r["pred"] for r in rows})
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), int)
    for r in rows:
        matrix[index[r["label"]], index[r["pred"]]] += 1
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 1.2 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("answer")
    ax.set_ylabel("clip's class")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", required=True, help="folder of <class>/<clip> videos")
    parser.add_argument("--classifier", required=True, choices=("lstm", "dtw", "knn"))
    parser.add_argument("--loo", action="store_true", help="leave one clip out (train on the others)")
    parser.add_argument("--model", help="model to evaluate without --loo (default: the shipped one; knn needs a samples CSV)")
    parser.add_argument("--data", help="landmark dataset of --clips (made with runner.py extract; cached here by default)")
    parser.add_argument("--json", help="write the results here (default out/accuracy_<classifier>[_loo].json)")
    parser.add_argument("--save", action="store_true", help="write benchmarks/accuracy_<classifier>[_loo].json, the results README quotes")
    args = parser.parse_args(argv)
    from posegraph.pose.sequences import leave_one_clip_out, list_clips, load_dataset

    clips_root = Path(args.clips)
    clips = list_clips(clips_root)
    suffix = "_loo" if args.loo else ""
    out_json = saving.path(args, f"accuracy_{args.classifier}{suffix}.json")
    work = Path(tempfile.mkdtemp(prefix="pg-accuracy-"))
    rows = []
    start = time.monotonic()
    if args.loo:
        data = Path(args.data or ROOT / "out" / f"{clips_root.resolve().name}.landmarks.npz")
        data.parent.mkdir(parents=True, exist_ok=True)
        runner("extract", clips_root, "-o", data)  # resumable: only new clips are extracted
        by_id = {s.clip_id: s for s in load_dataset(data)}
        for held_out, train_set in leave_one_clip_out(list(by_id.values())):
            clip = clips_root / held_out.clip_id
            model = train(args.classifier, train_set, work)
            known = {s.label for s in train_set}
            rows.append(score(args.classifier, clip, held_out.label, model, known, work))
    else:
        model = Path(args.model) if args.model else DEFAULT_MODELS[args.classifier]
        if model is None:
            raise SystemExit("knn needs --model SAMPLES.csv (or --loo, which builds samples from the other clips)")
        known = known_classes(args.classifier, model)
        for clip, label in clips:
            rows.append(score(args.classifier, clip, label, model, known, work))
    right = sum(r["correct"] for r in rows)
    accuracy = right / len(rows) if rows else 0.0
    png = out_json.with_suffix(".png")
    confusion_png(rows, png)
    result = {"command": "python benchmarks/accuracy.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "classifier": args.classifier, "leave_one_clip_out": args.loo, "clips": len(rows),
              "correct": right, "accuracy": round(accuracy, 4), "seconds": round(time.monotonic() - start, 1),
              "confusion_png": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
              "per_clip": rows}
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.classifier}{' (leave one clip out)' if args.loo else ''}: {right}/{len(rows)} clips right, "
          f"accuracy {accuracy:.3f}; saved {out_json} and {png}")
    return 0


def score(classifier, clip: Path, label: str, model: Path, known: set, work: Path) -> dict:
    answers = run_clip(classifier, clip, model, work)
    pred = collections.Counter(answers).most_common(1)[0][0] if answers else "none"
    correct = pred == label if label in known else pred == "unknown"
    print(f"  {clip.parent.name}/{clip.name}: {pred} ({'right' if correct else 'wrong'}; {len(answers)} frames answered)", file=sys.stderr)
    return {"path": f"{clip.parent.name}/{clip.name}", "label": label, "pred": pred, "correct": correct,
            "frames_answered": len(answers)}


if __name__ == "__main__":
    sys.exit(main())
