"""`posegraph train-reps`: fit the learned repetition counter (posegraph.pose.reps) of the `reps` node.

    posegraph train-reps DATA.npz -o models/reps_exercises.json
        [--classes squat,jumping_jack,plank,russian_twist] [--labels data/clip_labels.json] [--no-mirror]

DATA.npz is a sequence data set with world landmarks (`posegraph extract`, benchmarks/clips.py).
--labels gives each clip's true repetitions (a clip labels file: {"clips": [{"path",
"class", "reps"}, ...]}): a class whose clips all have 0 is static and counts nothing;
without it a class is static when its clips barely move. Writes one JSON file.
Exit codes: 0 written, 1 the file could not be written, 2 bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="posegraph train-reps",
                                description="Fit a learned repetition counter (one JSON file) for the reps node.")
    p.add_argument("data", metavar="DATA.npz", help="sequence data set with world landmarks (posegraph extract)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.json", help="the model file to write")
    p.add_argument("--classes", metavar="A,B", help="classes to fit (comma separated; default: every label in DATA)")
    p.add_argument("--labels", metavar="LABELS.json", help="clip labels with true repetitions (static classes: all 0)")
    p.add_argument("--no-mirror", action="store_true", help="do not add the clips seen in a mirror")
    return p


def clip_reps(path) -> dict[str, int]:
    """{clip_id: true repetitions} of a clip labels file; clip_id is class/file name."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
        return {f"{c['class']}/{Path(c['path']).name}": int(c["reps"]) for c in doc["clips"]}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({str(exc).splitlines()[0]})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a clip labels file (each clip needs path, class and reps: {exc})") from None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from posegraph.pose.reps import RepModel, RepModelError
    from posegraph.pose.sequences import SequenceError, load_dataset

    try:
        sequences = load_dataset(args.data)
        labels = sorted({s.label for s in sequences})
        classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else labels
        missing = [c for c in classes if c not in labels]
        if not classes or missing:
            raise ValueError(f"{args.data}: no clips of class {', '.join(missing) or '(none given)'}; "
                             f"it has {', '.join(labels) or 'no clips'}")
        reps = clip_reps(args.labels) if args.labels else None
        model = RepModel.fit(sequences, classes, reps=reps, mirror=not args.no_mirror)
    except (SequenceError, RepModelError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        model.save(args.output)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for name, cm in model.classes.items():
        what = "static (counts nothing)" if cm.static else \
            f"clips move {cm.info['amplitude']:.2f} torso lengths along its axis (median)" + \
            ("" if cm.has_rest else ", no rest end")
        print(f"{name}: {cm.info['clips']} clips, {cm.info['frames']} frames; {what}")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
