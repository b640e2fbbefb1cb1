"""`posegraph dtw-templates`: record templates for the `dtw` node from clips, an extracted data set, or a webcam.

    posegraph dtw-templates (--clips ROOT | --data DATA.npz | --webcam INDEX --label NAME
                             [--countdown 3] [--seconds 3])
                            -o TEMPLATES.npz [--features body|angles|embed] [--segment N] [--hop N] [--append]
                            [--classes A,B,...] [--keep 0.9] [--margin 1.5] [--unknown-templates]

--clips ROOT: ROOT/<class>/<clip>.mp4, BlazePose on every frame, with a progress bar
(posegraph.pose.training.dtw_templates). --data: a data set written by `posegraph extract`
(or benchmarks/clips.py, whose clips carry their group: same person or place).
--webcam: a countdown (in a window when a display exists, else printed seconds), then
`--seconds` of recording, BlazePose on each frame, one template labelled --label.
Templates are whole clips cut into --segment-frame pieces every --hop frames (default 45
and 15, the dtw node's default window; --segment 0 keeps whole clips, the default for a
webcam recording).
--features: `body` (the default for new files): 3-D joint angles, torso inclination and
the wrists' and ankles' body-frame positions from BlazePose's world landmarks, the same
from any camera; `angles` / `embed`: 2-D, from pixels (the only ones COCO-17 pose models
can use).
New files are standardized (posegraph.pose.dtw.Templates.standardize): each feature is
weighed by 1 / its spread within a class, so features that vary within a class (the arms
in a squat) count less; the weights are stored and live queries get the same.
"unknown": the templates are calibrated (posegraph.pose.dtw.calibrate_templates): each
template's best distance to templates of its class from OTHER groups (other clips when
the data has no groups) gives one threshold per class: the --keep quantile of them times
--margin (a person never seen is further from the groups at hand than they are from each
other; posegraph.pose.dtw.calibrate_distances says how the default was measured); clips whose
label is not in --classes (default: every label) are negatives the thresholds are checked
on, left out of the file unless --unknown-templates keeps them as templates of class
"unknown" (which then vote "unknown"). A class recorded by one group only takes the
overall threshold; with no two groups of a class at all, the file has no threshold.
--append adds to an existing templates file (same feature kind) and calibrates again.

Exit codes: 0 written, 1 failed while running (camera, pose model), 2 bad input.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np


class RecordError(Exception):
    """A one-line reason the command cannot go on; `code` is the exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posegraph dtw-templates",
                                     description="Record DTW templates (one .npz) for the dtw node.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--clips", metavar="ROOT", help="folder of clips: ROOT/<class>/<clip>.mp4")
    source.add_argument("--data", metavar="DATA.npz", help="data set written by `posegraph extract`")
    source.add_argument("--webcam", metavar="INDEX", type=int, help="record one template from this camera")
    parser.add_argument("--label", help="class name of the webcam recording (required with --webcam)")
    parser.add_argument("--countdown", type=float, default=3.0, metavar="S", help="seconds before recording (webcam; default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, metavar="S", help="seconds recorded (webcam; default 3)")
    parser.add_argument("-o", "--output", required=True, metavar="TEMPLATES.npz", help="templates file to write")
    parser.add_argument("--features", choices=("body", "angles", "embed"), default=None,
                        help="per-frame features: body (default: 3-D, view-invariant, from world landmarks), 2-D joint "
                             "angles or the ML Kit embedding")
    parser.add_argument("--classes", metavar="A,B,...", help="classes to answer (default: every label); clips of other "
                                                             "labels are negatives")
    parser.add_argument("--keep", type=float, default=0.9, help="quantile of the held-out known distances the 'unknown' "
                                                                 "thresholds start from (default 0.9)")
    parser.add_argument("--margin", type=float, default=1.5, help="the thresholds are that quantile times this (default 1.5)")
    parser.add_argument("--unknown-templates", action="store_true", help="keep the negatives as templates of class 'unknown'")
    parser.add_argument("--segment", type=int, default=None, metavar="N",
                        help="cut clips longer than N frames into N-frame templates (default 45, webcam 0; 0: whole clips)")
    parser.add_argument("--hop", type=int, default=15, metavar="N", help="frames between segment starts (default 15)")
    parser.add_argument("--append", action="store_true", help="add to the existing output file instead of replacing it")
    parser.add_argument("--complexity", type=int, choices=(0, 1, 2), default=1, help="BlazePose model (0 lite, 1 full, 2 heavy)")
    return parser


# ----- the webcam ------------------------------------------------------------------------
def open_camera(index: int):
    """An opened cv2.VideoCapture giving frames, or RecordError(code 1) in one line."""
    from posegraph.pose.media import quiet_cv2

    cv2 = quiet_cv2()
    cap = cv2.VideoCapture(index)
    ok = cap.isOpened()
    if ok:
        ok, frame = cap.read()
        ok = ok and frame is not None
    if not ok:
        cap.release()
        raise RecordError(f"cannot open camera {index} (no such device, or it gives no frames); "
                          f"record from files instead: --clips ROOT or --data DATA.npz", code=1)
    return cv2, cap


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("darwin", "win32")


def sequence_from_webcam(index: int, label: str, countdown: float, seconds: float, complexity: int):
    from posegraph.pose.backends.blazepose_litert import LiteRTBlazePose as BlazePose
    from posegraph.pose.sequences import Sequence

    cv2, cap = open_camera(index)
    window = "dtw-templates" if _has_display() else None
    try:
        if window:
            try:
                cv2.namedWindow(window)
            except cv2.error:
                window = None
        # countdown: live picture with the seconds left, or printed seconds
        end = time.monotonic() + countdown
        shown = None
        while (left := end - time.monotonic()) > 0:
            ok, frame = cap.read()
            if window and ok:
                cv2.putText(frame, f"{label}: {int(left) + 1}", (30, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (0, 0, 255), 5)
                cv2.imshow(window, frame)
                cv2.waitKey(1)
            elif int(left) + 1 != shown:
                shown = int(left) + 1
                print(f"recording {label!r} in {shown}...", flush=True)
                if not window:
                    time.sleep(min(left, 0.05))
        print(f"recording {label!r} for {seconds:g} s", flush=True)
        rows, worlds, size = [], [], None
        nan = np.full((33, 4), np.nan, np.float32)
        start = time.monotonic()
        with BlazePose(static_image_mode=False, model_complexity=complexity) as pose:
            while time.monotonic() - start < seconds:
                ok, frame = cap.read()
                if not ok:
                    raise RecordError(f"camera {index} stopped giving frames", code=1)
                size = frame.shape[:2]
                packet = pose.detect(frame)
                rows.append(nan if packet is None else packet["px"])
                worlds.append(nan if packet is None else packet["world"])
                if window:
                    cv2.putText(frame, f"REC {label}", (30, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.5, (0, 0, 255), 5)
                    cv2.imshow(window, frame)
                    cv2.waitKey(1)
        elapsed = time.monotonic() - start
    finally:
        cap.release()
        if window:
            cv2.destroyAllWindows()
    if not rows:
        raise RecordError("no frame recorded", code=1)
    clip_id = f"{label}/webcam-{time.strftime('%Y%m%d-%H%M%S')}"
    return Sequence(clip_id=clip_id, label=label, layout="blazepose33", points=np.stack(rows),
                    width=size[1], height=size[0], fps=len(rows) / elapsed if elapsed > 0 else 30.0, world=np.stack(worlds))


# ----- the command -----------------------------------------------------------------------
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 1
    except Exception as exc:  # mediapipe or a model missing, a codec failing: one line, not a traceback
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from posegraph.pose.dtw import TemplatesError
    from posegraph.pose.sequences import SequenceError, load_dataset
    from posegraph.pose.training.dtw_templates import build_templates, clip_sequences, templates_to_extend

    output = Path(args.output)
    if args.webcam is not None and not args.label:
        raise RecordError("--webcam needs --label NAME (the class of the recording)")
    if args.segment is None:
        args.segment = 0 if args.webcam is not None else 45
    if args.segment < 0 or args.hop < 1:
        raise RecordError("--segment must be 0 or more and --hop at least 1")
    if args.webcam is not None and (args.seconds <= 0 or args.countdown < 0):
        raise RecordError("--seconds must be above 0 and --countdown 0 or more")
    if not 0.5 <= args.keep < 1.0 or args.margin <= 0:
        raise RecordError("--keep must be in [0.5, 1) and --margin above 0")
    try:
        existing = templates_to_extend(output, args.features) if args.append else None
    except TemplatesError as exc:
        raise RecordError(f"--append: {exc}") from None
    kind = args.features or (existing.kind if existing else "body")
    if output.is_dir():
        raise RecordError(f"{output} is a folder; give a file path")

    if args.webcam is not None:
        sequences = [sequence_from_webcam(args.webcam, args.label, args.countdown, args.seconds, args.complexity)]
    else:
        try:
            sequences = clip_sequences(args.clips, args.complexity) if args.clips else load_dataset(args.data)
        except SequenceError as exc:
            raise RecordError(str(exc)) from None
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    try:
        templates, added, calibration = build_templates(sequences, kind, args.segment, args.hop, existing, classes,
                                                        args.unknown_templates, args.keep, margin=args.margin)
    except (TemplatesError, ValueError) as exc:
        raise RecordError(str(exc)) from None
    if added == 0:
        raise RecordError("no template recorded (no person found in any clip"
                          + (", or no world landmarks for 'body' features: use --features angles)" if kind == "body" else ")"),
                          code=1)
    try:
        templates.save(output)
    except OSError as exc:
        raise RecordError(f"cannot write {output}: {exc.strerror or exc}", code=1) from None
    counts = Counter(templates.labels)
    print(f"wrote {output}: {len(templates)} templates ({added} new) of {kind!r} features, "
          + ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())))
    if calibration is None:
        print("no 'unknown' threshold: no class has templates of two groups (clips) to measure it on")
    else:
        t = calibration.overall
        rejected = calibration.negatives_rejected_per_class
        print(f"unknown thresholds (best normalised DTW distance, {args.keep:g} quantile x {args.margin:g}): overall "
              f"{t.value:.4g}, keeping {t.known_kept:.1%} of {t.known} held-out distances; per class "
              + ", ".join(f"{c} {v.value:.4g}" for c, v in calibration.by_class.items())
              + (f"; negatives turned away: {rejected:.1%} of {calibration.negatives}" if rejected is not None
                 else "; no negatives to check them on"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
