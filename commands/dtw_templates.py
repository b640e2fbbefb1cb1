"""`posegraph dtw-templates`: record templates for the `dtw` node from clips, an extracted data set, or a webcam.

    posegraph dtw-templates (--clips ROOT | --data DATA.npz | --webcam INDEX --label NAME
                             [--countdown 3] [--seconds 3])
                            -o TEMPLATES.npz [--features angles|embed] [--segment N] [--hop N] [--append]

--clips ROOT: ROOT/<class>/<clip>.mp4, BlazePose on every frame, with a progress bar
(posegraph.pose.training.dtw_templates). --data: a data set written by `posegraph extract`.
--webcam: a countdown (in a window when a display exists, else printed seconds), then
`--seconds` of recording, BlazePose on each frame, one template labelled --label.
Templates are whole clips cut into --segment-frame pieces every --hop frames (default 45
and 15, the dtw node's default window; --segment 0 keeps whole clips, the default for a
webcam recording).
--append adds to an existing templates file (same feature kind).

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
    parser.add_argument("--features", choices=("angles", "embed"), default=None,
                        help="per-frame features: joint angles (default) or the ML Kit embedding")
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
    from posegraph.pose.backends.blazepose import BlazePose
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
        rows, size = [], None
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
                    width=size[1], height=size[0], fps=len(rows) / elapsed if elapsed > 0 else 30.0)


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
    from posegraph.pose.training.dtw_templates import add_templates, clip_sequences, templates_to_extend

    output = Path(args.output)
    if args.webcam is not None and not args.label:
        raise RecordError("--webcam needs --label NAME (the class of the recording)")
    if args.segment is None:
        args.segment = 0 if args.webcam is not None else 45
    if args.segment < 0 or args.hop < 1:
        raise RecordError("--segment must be 0 or more and --hop at least 1")
    if args.webcam is not None and (args.seconds <= 0 or args.countdown < 0):
        raise RecordError("--seconds must be above 0 and --countdown 0 or more")
    try:
        existing = templates_to_extend(output, args.features) if args.append else None
    except TemplatesError as exc:
        raise RecordError(f"--append: {exc}") from None
    kind = args.features or (existing.kind if existing else "angles")
    if output.is_dir():
        raise RecordError(f"{output} is a folder; give a file path")

    if args.webcam is not None:
        sequences = [sequence_from_webcam(args.webcam, args.label, args.countdown, args.seconds, args.complexity)]
    else:
        try:
            sequences = clip_sequences(args.clips, args.complexity) if args.clips else load_dataset(args.data)
        except SequenceError as exc:
            raise RecordError(str(exc)) from None
    try:
        templates, added = add_templates(sequences, kind, args.segment, args.hop, existing)
    except (TemplatesError, ValueError) as exc:
        raise RecordError(str(exc)) from None
    if added == 0:
        raise RecordError("no template recorded (no person found in any clip)", code=1)
    try:
        templates.save(output)
    except OSError as exc:
        raise RecordError(f"cannot write {output}: {exc.strerror or exc}", code=1) from None
    counts = Counter(templates.labels)
    print(f"wrote {output}: {len(templates)} templates ({added} new) of {kind!r} features, "
          + ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
