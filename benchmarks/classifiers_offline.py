#!/usr/bin/env python3
"""How well do the DTW and KNN classifiers do on people and places they never saw? Offline.

The clips' landmarks (out/clips/landmarks.npz, made by benchmarks/clips.py from
data/clip_labels.json) go through the classifiers' own library code frame by frame, as
the graph runs them: the `dtw` node's window (posegraph.pose.dtw.DtwWindow) or `embed`
(kind body) then `knn` (posegraph.pose.knn.KnnClassifier.answer), then the `smooth` kind's
EMA (posegraph.pose.smoothing.EmaDictSmoothing), and a record's class is the argmax of the
smoothed scores. A clip's answer is the majority of its frames' classes; a clip of a
motion outside the classes (a negative) is right when that answer is "unknown".

Two evaluations, never mixed:
  logo     leave one GROUP out on the clips not held out: for each group (same person or
           place), train and calibrate on the other groups only, test on that group's clips.
  holdout  train and calibrate on every clip not held out, test on the held-out clips.

Each fold makes its model with the training code of the commands (`dtw-templates`:
posegraph.pose.training.dtw_templates.build_templates; `knn-samples --data`:
posegraph.pose.training.knn_samples.build_samples), from the fold's training clips only:
the four classes, the other motions as negatives for the "unknown" thresholds.

    python benchmarks/classifiers_offline.py [--classifier dtw|knn|both] [--eval logo|holdout|both]
        [--data out/clips/landmarks.npz] [--labels data/clip_labels.json] [--json FILE | --save]
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CLASSES = ("squat", "jumping_jack", "plank", "russian_twist")
UNKNOWN = "unknown"


# ----- the data ---------------------------------------------------------------------------
def load(data: Path, labels: Path | None):
    """(sequences, ids of held-out clips); groups come from the data set (clips.py writes them)."""
    from posegraph.pose.sequences import load_dataset

    sequences = load_dataset(data)
    holdout = set()
    if labels and labels.exists():
        doc = json.loads(labels.read_text())
        by_id = {f"{c['class']}/{Path(c['path']).name}": c for c in doc["clips"]}
        holdout = {cid for cid, c in by_id.items() if c.get("holdout")}
        sequences = [s for s in sequences if s.clip_id in by_id]  # only clips the labels still name
    return sequences, holdout


def truth(seq) -> str:
    return seq.label if seq.label in CLASSES else UNKNOWN


def packets(seq):
    """The pose node's packets of a clip: None without a person, else px, world and the time."""
    for i in range(len(seq)):
        if not np.isfinite(seq.points[i, :, :2]).all():
            yield None
            continue
        yield {"px": seq.points[i], "world": seq.world[i], "layout": seq.layout, "width": seq.width,
               "height": seq.height, "pts_ms": i * 1000.0 / seq.fps}


def clip_answer(frame_votes) -> tuple[str, collections.Counter]:
    """The graph's answer for a clip from its per-frame votes packets (None: no packet):
    smoothed as the `smooth` kind does, a frame's class is the argmax of the smoothed
    scores (posegraph.pose.drawing.top_class), the clip's the most frequent frame class."""
    from posegraph.pose.drawing import top_class
    from posegraph.pose.smoothing import EmaDictSmoothing

    ema = EmaDictSmoothing()
    classes = collections.Counter()
    for votes in frame_votes:
        if votes is None:
            ema({})
            continue
        name, _ = top_class(ema(votes), votes)
        if name:
            classes[name] += 1
    return (classes.most_common(1)[0][0] if classes else "none"), classes


# ----- DTW --------------------------------------------------------------------------------
def dtw_fold(train, test, kind="body", threshold="per-class", unknown_templates=False, keep=0.9, standardize=True,
             margin=1.5):
    """Templates made from `train` as `posegraph dtw-templates` makes them (the four classes,
    other motions as negatives), then the `dtw` node's window (posegraph.pose.dtw.DtwWindow)
    on every frame of each `test` clip: [(clip, answer, frame classes)], the calibration."""
    from posegraph.pose.dtw import DtwClassifier
    from posegraph.pose.training.dtw_templates import build_templates

    templates, _, calibration = build_templates(train, kind, 45, 15, None, CLASSES, unknown_templates, keep, standardize,
                                                margin)
    limit = {"per-class": None, "overall": calibration.overall.value if calibration else -1, "off": -1}[threshold]
    dtw = DtwClassifier(templates, threshold=limit)
    out = []
    for seq in test:
        window = dtw.new_window()
        pred, classes = clip_answer([None if a is None else a["votes"] for a in map(window.push, packets(seq))])
        out.append((seq, pred, classes))
    return out, calibration


def evaluate_dtw(sequences, holdout, evaluation, log=print, **options) -> dict:
    rows = []
    by_id = {s.clip_id: s for s in sequences}
    started = time.monotonic()
    for name, test, train_ids in folds(sequences, holdout, evaluation):
        answers, calibration = dtw_fold([by_id[c] for c in sorted(train_ids)], test, **options)
        for seq, pred, classes in answers:
            rows.append({"clip": seq.clip_id, "group": seq.group, "truth": truth(seq), "pred": pred,
                         "right": pred == truth(seq), "frames": dict(classes.most_common()),
                         "thresholds": {c: round(t.value, 4) for c, t in calibration.by_class.items()}})
    log(f"dtw {evaluation}: {time.monotonic() - started:.0f} s")
    return {"score": score(rows), "clips": rows}


# ----- KNN --------------------------------------------------------------------------------
class KnnData:
    """Every clip's per-frame features packets (the `embed` kind's code), made once."""

    def __init__(self, sequences, kind="body", log=print):
        from posegraph.pose.features import features_packet

        self.kind = kind
        started = time.monotonic()
        self.features = {}
        for seq in sequences:
            self.features[seq.clip_id] = [None if p is None else features_packet(p, kind) for p in packets(seq)]
        log(f"knn: features of {len(sequences)} clips in {time.monotonic() - started:.0f} s")

    def classifier(self, train, every=3, keep=0.9, unknown_samples=False, step=2, threshold="per-class", standardize=True,
                   margin=1.5):
        from posegraph.pose.knn import KnnClassifier
        from posegraph.pose.training.knn_samples import build_samples

        samples, calibration = build_samples(train, CLASSES, self.kind, every, keep, unknown_samples, step,
                                             standardize=standardize, margin=margin)
        limit = {"per-class": None, "overall": calibration.overall.value, "off": -1}[threshold]
        return KnnClassifier(samples, threshold=limit), calibration

    def answer(self, seq, classifier):
        frame_votes = []
        for features in self.features[seq.clip_id]:
            frame_votes.append(None if features is None else classifier.answer(features)["votes"])
        return clip_answer(frame_votes)


def evaluate_knn(data: KnnData, sequences, holdout, evaluation, **options) -> dict:
    rows = []
    by_id = {s.clip_id: s for s in sequences}
    for name, test, train_ids in folds(sequences, holdout, evaluation):
        classifier, calibration = data.classifier([by_id[c] for c in sorted(train_ids)], **options)
        for seq in test:
            pred, classes = data.answer(seq, classifier)
            rows.append({"clip": seq.clip_id, "group": seq.group, "truth": truth(seq), "pred": pred,
                         "right": pred == truth(seq), "frames": dict(classes.most_common()),
                         "threshold": round(calibration.overall.value, 4)})
    return {"score": score(rows), "clips": rows}


# ----- folds --------------------------------------------------------------------------------
def folds(sequences, holdout: set, evaluation: str):
    """(name, test sequences, ids of the clips training may use)."""
    pool = [s for s in sequences if s.clip_id not in holdout]
    if evaluation == "logo":
        for group in sorted({s.group for s in pool}):
            test = [s for s in pool if s.group == group]
            yield group, test, {s.clip_id for s in pool if s.group != group}
    else:
        test = [s for s in sequences if s.clip_id in holdout]
        # a held-out clip's group may also have training clips: they stay out of training too
        groups = {s.group for s in test}
        yield "holdout", test, {s.clip_id for s in pool if s.group not in groups}


def score(rows: list[dict]) -> dict:
    known = [r for r in rows if r["truth"] != UNKNOWN]
    negatives = [r for r in rows if r["truth"] == UNKNOWN]
    return {"known_right": sum(r["right"] for r in known), "known": len(known),
            "negatives_unknown": sum(r["right"] for r in negatives), "negatives": len(negatives),
            "failures": [f"{r['clip']}: {r['truth']} -> {r['pred']}" for r in rows if not r["right"]]}


def print_result(title: str, result: dict) -> None:
    s = result["score"]
    print(f"{title}: known clips right {s['known_right']}/{s['known']}, negatives answered unknown "
          f"{s['negatives_unknown']}/{s['negatives']}")
    for failure in s["failures"]:
        print(f"    wrong: {failure}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "out" / "clips" / "landmarks.npz"))
    parser.add_argument("--labels", default=str(ROOT / "data" / "clip_labels.json"))
    parser.add_argument("--classifier", choices=("dtw", "knn", "both"), default="both")
    parser.add_argument("--eval", choices=("logo", "holdout", "both"), default="logo")
    parser.add_argument("--dtw-features", default="body")
    parser.add_argument("--dtw-threshold", choices=("per-class", "overall", "off"), default="per-class")
    parser.add_argument("--dtw-unknown-templates", action="store_true", help="negatives' templates vote 'unknown'")
    parser.add_argument("--knn-every", type=int, default=3, help="a sample every N frames")
    parser.add_argument("--knn-threshold", choices=("per-class", "overall", "off"), default="per-class")
    parser.add_argument("--knn-unknown-samples", action="store_true", help="negatives' frames vote 'unknown'")
    parser.add_argument("--json", help="write the results here (default out/classifiers_offline.json)")
    parser.add_argument("--save", action="store_true", help="write benchmarks/classifiers_offline.json")
    args = parser.parse_args(argv)
    import saving

    sequences, holdout = load(Path(args.data), Path(args.labels))
    print(f"{len(sequences)} clips, {len({s.group for s in sequences})} groups, {len(holdout)} held out")
    evaluations = ("logo", "holdout") if args.eval == "both" else (args.eval,)
    results = {"command": "python benchmarks/classifiers_offline.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.classifier in ("dtw", "both"):
        for evaluation in evaluations:
            result = evaluate_dtw(sequences, holdout, evaluation, kind=args.dtw_features, threshold=args.dtw_threshold,
                                  unknown_templates=args.dtw_unknown_templates)
            print_result(f"dtw {evaluation}", result)
            results[f"dtw_{evaluation}"] = result
    if args.classifier in ("knn", "both"):
        data = KnnData(sequences)
        for evaluation in evaluations:
            result = evaluate_knn(data, sequences, holdout, evaluation, every=args.knn_every,
                                  threshold=args.knn_threshold, unknown_samples=args.knn_unknown_samples)
            print_result(f"knn {evaluation}", result)
            results[f"knn_{evaluation}"] = result
    out = saving.path(args, "classifiers_offline.json")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
