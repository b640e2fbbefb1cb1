#!/usr/bin/env python3
"""Does a classifier recognise people and places it never saw? The real graphs on labelled clips.

The clips are those of data/clip_labels.json (../shared/data, prepared by benchmarks/clips.py:
trimmed and cropped as the labels say); each has a class, a group (same person or place),
a repetition count and whether it is held out of all training and tuning.

Protocols (--protocol):
  logo     leave one group out, over the clips not held out: for each group, every model the
           graph needs (the classifier and the repetition counter) is trained on the other
           groups with the project's own commands, then the real graph runs on the group's
           clips. No person or room is ever both trained on and tested. --folds K deals the
           groups into K folds instead (leave groups out: fewer trainings, same guarantee).
  holdout  the models trained on every clip not held out; the graph runs on the held-out
           clips (never looked at while tuning).
  shipped  the shipped models (models/) on every clip. They were trained on all the clips,
           so this is not a measure of anything new: a smoke test.

For each clip the real graph (graphs/video_<classifier>.yaml: capture -> pose -> classifier ->
smoothing -> repetitions -> sinks, one process per node) runs on it; the clip's answer is the
majority of the per-frame answers users see (the record's "class": the top smoothed score,
"unknown" included); its repetitions are the final count of that class. A clip of a class the
models do not know (another motion) is right when answered "unknown".
--offline classifies the extracted landmarks with the same code the node runs (tcn, lstm
only; no graph, no repetitions): for quick checks while developing.

Reports per clip {path, label, group, holdout, pred, right, reps, true_reps}, and: clips
right of the known classes, other motions answered "unknown", and for counting the mean
absolute error relative to the true count (clips with repetitions) and the off-by-one share.

Usage:
  python benchmarks/accuracy.py --classifier tcn|lstm|dtw|knn [--protocol logo|holdout|shipped]
      [--folds K] [--labels data/clip_labels.json] [--offline] [--json FILE | --save]
"""
from __future__ import annotations

import argparse
import collections
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
import clips as labelled  # noqa: E402  (benchmarks/clips.py)

CLASSES = ("jumping_jack", "plank", "russian_twist", "squat")
SHIPPED = {"tcn": ROOT / "models" / "tcn_exercises", "lstm": ROOT / "models" / "lstm_exercises",
           "dtw": ROOT / "models" / "dtw_exercises.npz", "knn": ROOT / "models" / "knn_exercises.csv",
           "reps": ROOT / "models" / "reps_exercises.json"}
MODEL_PARAM = {"tcn": "tcn.model", "lstm": "lstm.model", "dtw": "dtw.templates", "knn": "knn.samples", "reps": "reps.model"}


def command(*args) -> None:
    """One of the project's commands, as a user runs it; stops the benchmark with its error."""
    done = subprocess.run([sys.executable, "-m", "posegraph", *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"posegraph {' '.join(map(str, args[:2]))} failed:\n{done.stderr[-3000:]}")


def train_models(classifier: str, sequences, work: Path, reps: bool = True) -> dict[str, Path]:
    """The classifier's model and (with `reps`) the repetition counter, trained on `sequences` only."""
    from posegraph.pose.sequences import save_dataset

    work.mkdir(parents=True, exist_ok=True)
    data = work / "train.npz"
    save_dataset(data, sequences)
    classes = ",".join(CLASSES)
    models = {}
    if classifier in ("tcn", "lstm"):
        models[classifier] = work / classifier
        command(f"train-{classifier}", data, "-o", models[classifier], "--classes", classes, "--quiet")
    elif classifier == "dtw":
        models["dtw"] = work / "dtw.npz"
        command("dtw-templates", "--data", data, "-o", models["dtw"], "--classes", classes, "--unknown-templates")
    else:
        models["knn"] = work / "knn.csv"
        command("knn-samples", "--data", data, "-o", models["knn"], "--classes", classes, "--unknown-samples", "--every", "3")
    if reps:
        models["reps"] = work / "reps.json"
        command("train-reps", data, "-o", models["reps"], "--classes", classes)
    return models


def run_graph(classifier: str, clip: Path, models: dict[str, Path], work: Path) -> list[dict]:
    """Every record the real graph writes for one clip."""
    from posegraph.spec import load_graph
    from posegraph.supervisor import Supervisor

    records = work / "records.jsonl"
    records.unlink(missing_ok=True)
    spec = load_graph(ROOT / "graphs" / f"video_{classifier}.yaml", [])
    overrides = [f"camera.source={clip}", f"records.path={records}", f"video.path={work / 'video.mp4'}"]
    overrides += [f"{MODEL_PARAM[name]}={path}" for name, path in models.items() if MODEL_PARAM[name].split(".")[0] in spec.nodes]
    spec = load_graph(ROOT / "graphs" / f"video_{classifier}.yaml", overrides)
    with open(os.devnull, "w") as quiet:
        code = Supervisor(spec, live=False, out=quiet).run()
    if code != 0:
        raise SystemExit(f"the {classifier} graph failed on {clip} (exit {code})")
    return [json.loads(line) for line in records.read_text().splitlines() if line.strip()]


def offline_answers(classifier: str, sequence, models: dict[str, Path]) -> list[dict]:
    """Records as the graph would give them, from the extracted landmarks (tcn and lstm)."""
    from posegraph.pose.actions import ActionClassifier, classify_clip
    from posegraph.pose.smoothing import EmaDictSmoothing

    if classifier not in ("tcn", "lstm"):
        raise SystemExit("--offline works for tcn and lstm only")
    smoothing = EmaDictSmoothing()
    records = []
    for answer in classify_clip(ActionClassifier(models[classifier]), sequence, min_frames=8):
        scores = smoothing(answer["votes"] if answer else {})
        records.append({"class": max(scores, key=scores.get) if answer and scores else None})
    return records


def clip_result(clip, records: list[dict]) -> dict:
    answers = [r["class"] for r in records if r.get("class")]
    pred = collections.Counter(answers).most_common(1)[0][0] if answers else "none"
    right = pred == clip.label if clip.label in CLASSES else pred == "unknown"
    last = next((r for r in reversed(records) if r.get("reps")), None)
    reps = last["reps"].get(pred) if last and pred in CLASSES else None
    return {"path": clip.path, "label": clip.label, "group": clip.group, "holdout": clip.holdout, "pred": pred,
            "right": right, "frames_answered": len(answers), "reps": reps,
            "true_reps": clip.reps if clip.label in CLASSES else None}


def summary(rows: list[dict]) -> dict:
    """Clips right, other motions answered unknown, and repetition errors."""
    known = [r for r in rows if r["label"] in CLASSES]
    other = [r for r in rows if r["label"] not in CLASSES]
    counted = [r for r in known if r["true_reps"] and r["right"] and r["reps"] is not None]
    moving = [r for r in known if r["true_reps"]]
    out = {"clips": len(known), "right": sum(r["right"] for r in known),
           "accuracy": round(sum(r["right"] for r in known) / len(known), 4) if known else None,
           "other_motions": len(other), "other_answered_unknown": sum(r["right"] for r in other)}
    if moving and any(r["reps"] is not None for r in rows):  # --offline counts nothing
        errors = [abs((r["reps"] or 0) - r["true_reps"]) for r in moving]
        out["reps_clips"] = len(moving)
        out["reps_mae"] = round(sum(e / r["true_reps"] for e, r in zip(errors, moving)) / len(moving), 4)
        out["reps_obo"] = round(sum(e <= 1 for e in errors) / len(moving), 4)
        out["reps_counted_on_recognised_clips"] = len(counted)
    return out


def evaluate(args, clips, root: Path, sequences: dict, work: Path) -> list[dict]:
    """Per-clip results under the chosen protocol."""
    rows = []
    if args.protocol == "shipped":
        folds = [(shipped_models(args.classifier), clips)]
    elif args.protocol == "holdout":
        train = [sequences[c.clip_id] for c in clips if not c.holdout]
        folds = [(lambda: train_models(args.classifier, train, work / "holdout", not args.offline),
                  [c for c in clips if c.holdout])]
    else:
        pool = [c for c in clips if not c.holdout]
        folds = []
        for index, held in enumerate(group_folds(sorted({c.group for c in pool}), args.folds)):
            train = [sequences[c.clip_id] for c in pool if c.group not in held]
            folds.append((lambda train=train, index=index: train_models(args.classifier, train, work / f"fold_{index}",
                                                                        not args.offline),
                          [c for c in pool if c.group in held]))
    for index, (models, test) in enumerate(folds):
        started = time.monotonic()
        models = models() if callable(models) else models
        for clip in test:
            if args.offline:
                records = offline_answers(args.classifier, sequences[clip.clip_id], models)
            else:
                records = run_graph(args.classifier, labelled.prepare(clip, root, labelled.OUT), models, work)
            row = clip_result(clip, records)
            rows.append(row)
            print(f"  [{index + 1}/{len(folds)}] {clip.path}: {row['pred']} ({'right' if row['right'] else 'WRONG'}), "
                  f"reps {row['reps']} of {row['true_reps']}", file=sys.stderr, flush=True)
        print(f"fold {index + 1}/{len(folds)} done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def group_folds(groups: list[str], folds: int) -> list[set[str]]:
    """Each group its own fold (folds 0), or the groups dealt at random (seed 0) into `folds` folds."""
    if folds <= 0 or folds >= len(groups):
        return [{g} for g in groups]
    import random

    order = list(groups)
    random.Random(0).shuffle(order)
    return [set(order[i::folds]) for i in range(folds)]


def shipped_models(classifier: str) -> dict[str, Path]:
    models = {classifier: SHIPPED[classifier]}
    if SHIPPED["reps"].exists():
        models["reps"] = SHIPPED["reps"]
    return models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", required=True, choices=("tcn", "lstm", "dtw", "knn"))
    parser.add_argument("--protocol", default="logo", choices=("logo", "holdout", "shipped"))
    parser.add_argument("--labels", default=str(labelled.LABELS))
    parser.add_argument("--folds", type=int, default=0,
                        help="logo: deal the groups into this many folds, whole groups held out together (0: one group per fold)")
    parser.add_argument("--offline", action="store_true", help="classify extracted landmarks, no graph (tcn, lstm)")
    saving.add_arguments(parser, "accuracy.json")
    args = parser.parse_args(argv)
    root, clips = labelled.load_labels(Path(args.labels))
    if not root.exists():
        raise SystemExit(f"{root}: the clips are not on this machine (they do not ship)")
    sequences = {s.clip_id: s for s in labelled.landmarks(clips, root, labelled.OUT, log=lambda line: print(line, file=sys.stderr))}
    work = Path(tempfile.mkdtemp(prefix="pg-accuracy-"))
    started = time.monotonic()
    rows = evaluate(args, clips, root, sequences, work)
    result = {"command": "python benchmarks/accuracy.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "classifier": args.classifier, "protocol": args.protocol, "offline": args.offline,
              "seconds": round(time.monotonic() - started, 1), "summary": summary(rows), "per_clip": rows}
    folds = f"{args.folds}folds" if args.protocol == "logo" and args.folds else ""
    name = f"accuracy_{args.classifier}_{args.protocol}{folds}{'_offline' if args.offline else ''}.json"
    target = saving.path(args, name)
    target.write_text(json.dumps(result, indent=2) + "\n")
    s = result["summary"]
    print(f"{args.classifier} ({args.protocol}{', offline' if args.offline else ''}): {s['right']}/{s['clips']} clips right, "
          f"{s['other_answered_unknown']}/{s['other_motions']} other motions answered unknown"
          + (f", reps MAE {s['reps_mae']:.3f} OBO {s['reps_obo']:.3f} on {s['reps_clips']} clips" if "reps_mae" in s else "")
          + f"; wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
