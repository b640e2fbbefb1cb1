#!/usr/bin/env python3
"""The learned repetition counter (posegraph.pose.reps) on the labelled clips, by group.

    python benchmarks/reps.py [--data out/clips/landmarks.npz] [--labels data/clip_labels.json]
        [--classes squat,jumping_jack,plank,russian_twist] [--param NAME=VALUE ...] [--no-holdout]
        [--json FILE | --save]

Leave-one-group-out over the clips not held out: for every group (same person or place),
the counter is fitted on the other groups' clips and counts the group's clips frame by
frame through RepModel.count, the same RepCounter the reps node runs; then it is fitted on
every clip not held out and counts the held-out clips (reported apart, never used to
choose anything). A clip is counted as its true class (the classifier is not what is
measured here). Per clip: clip, class, true, counted; per part: MAE (mean over clips with
true > 0 of |counted - true| / true), OBO (share of clips with |counted - true| <= 1) and
how many clips of static classes counted 0. --param sets counter params (CounterParams)
for tuning on the leave-one-group-out part. Results: out/reps.json (--save:
benchmarks/reps.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import saving  # benchmarks/saving.py: out/ unless --save
from clips import LABELS, OUT, load_labels  # benchmarks/clips.py: the labelled clips

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CLASSES = ("squat", "jumping_jack", "plank", "russian_twist", "push_up")


def score(rows: list[dict]) -> dict:
    """MAE over clips with true > 0, OBO over every clip, static clips counted 0 (clips of a
    class no training group had are left out: nothing was learned to count them)."""
    rows = [r for r in rows if r["trained"]]
    moving = [r for r in rows if r["true"] > 0]
    static = [r for r in rows if r["static"]]
    mae = sum(abs(r["counted"] - r["true"]) / r["true"] for r in moving) / len(moving) if moving else None
    obo = sum(abs(r["counted"] - r["true"]) <= 1 for r in rows) / len(rows) if rows else None
    return {"clips": len(rows), "mae": None if mae is None else round(mae, 4), "obo": None if obo is None else round(obo, 4),
            "static_zero": sum(r["counted"] == 0 for r in static), "static_clips": len(static)}


def count_clips(model, clips, truth, part: str) -> list[dict]:
    rows = []
    for seq in clips:
        cm = model.classes.get(seq.label)
        rows.append({"part": part, "clip": seq.clip_id, "group": seq.group, "class": seq.label,
                     "true": truth[seq.clip_id], "counted": model.count(seq) if cm is not None else 0,
                     "static": bool(cm is not None and cm.static), "trained": cm is not None})
    return rows


def evaluate(sequences, labels, classes, params, holdout=True) -> dict:
    from posegraph.pose.reps import RepModel

    truth = {c.clip_id: c.reps for c in labels}
    held = {c.clip_id for c in labels if c.holdout}
    known = [s for s in sequences if s.clip_id in truth and s.label in classes]
    tuning = [s for s in known if s.clip_id not in held]
    rows = []
    for group in sorted({s.group for s in tuning}):
        train = [s for s in tuning if s.group != group]
        test = [s for s in tuning if s.group == group]
        fitted = [c for c in classes if any(s.label == c for s in train)]
        model = RepModel.fit(train, fitted, reps={s.clip_id: truth[s.clip_id] for s in train}, params=params)
        rows += count_clips(model, test, truth, "logo")
    result = {"logo": score([r for r in rows if r["part"] == "logo"])}
    if holdout:
        tests = [s for s in known if s.clip_id in held]
        model = RepModel.fit(tuning, classes, reps={s.clip_id: truth[s.clip_id] for s in tuning}, params=params)
        rows += count_clips(model, tests, truth, "holdout")
        result["holdout"] = score([r for r in rows if r["part"] == "holdout"])
    result["rows"] = rows
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(OUT / "landmarks.npz"))
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a counter param (CounterParams)")
    parser.add_argument("--no-holdout", action="store_true", help="leave-one-group-out only (while tuning)")
    saving.add_arguments(parser, "reps.json")
    args = parser.parse_args(argv)

    from posegraph.pose.reps import CounterParams
    from posegraph.pose.sequences import load_dataset

    params = CounterParams()
    for item in args.param:
        name, _, value = item.partition("=")
        if name not in asdict(params):
            parser.error(f"--param {item}: no counter param {name!r}; params: {', '.join(asdict(params))}")
        setattr(params, name, float(value))
    params.check()
    _, labels = load_labels(Path(args.labels))
    sequences = load_dataset(args.data)
    classes = [c for c in args.classes.split(",") if c]
    started = time.monotonic()
    result = evaluate(sequences, labels, classes, params, holdout=not args.no_holdout)
    seconds = time.monotonic() - started

    print(f"{'part':8s} {'clip':72s} {'class':14s} {'true':>4s} {'counted':>7s}")
    for r in result["rows"]:
        mark = "" if r["trained"] else "  (class not trained: no other group has it)"
        print(f"{r['part']:8s} {r['clip'][:72]:72s} {r['class']:14s} {r['true']:4d} {r['counted']:7d}{mark}")
    for part in ("logo", "holdout"):
        if part in result:
            s = result[part]
            print(f"{part}: {s['clips']} clips, MAE {s['mae']}, OBO {s['obo']}, static classes counted 0: "
                  f"{s['static_zero']} of {s['static_clips']}")
    target = saving.path(args, "reps.json")
    target.write_text(json.dumps({"data": args.data, "labels": args.labels, "classes": classes,
                                  "counter": asdict(params), "seconds": round(seconds, 2), **result}, indent=1) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
