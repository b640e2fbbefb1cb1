"""`posegraph extract ROOT -o DATA.npz`: landmark sequences of labelled clips (posegraph.pose.sequences)."""
from __future__ import annotations

import argparse
import sys
import time

from posegraph.pose.sequences import SequenceError, run_extract


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posegraph extract",
        description="BlazePose landmarks of every clip of ROOT/<class>/<clip>.(mp4|avi|mov|gif) into a sequence "
                    "data set (.npz); clips already in the output are skipped, so an interrupted run resumes.")
    parser.add_argument("root", metavar="ROOT", help="folder with one sub-folder of clips per class")
    parser.add_argument("-o", "--output", required=True, metavar="DATA.npz", help="data set to write (or complete)")
    parser.add_argument("--complexity", type=int, choices=(0, 1, 2), default=1,
                        help="BlazePose model: 0 lite, 1 full (default), 2 heavy")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str]) -> int:
    """The command; 0 done (unreadable clips are warned about and skipped), 1 the pose model
    could not start, 2 bad input (missing root, no clips, unreadable output file)."""
    args = _parser().parse_args(argv)
    started = time.monotonic()

    def log(line):
        print(line, file=sys.stderr if line.startswith("warning") else sys.stdout, flush=True)

    try:
        report = run_extract(args.root, args.output, args.complexity, progress=not args.no_progress, log=log)
    except SequenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; the clips done so far are in {args.output} (run again to resume)", file=sys.stderr)
        return 130
    except Exception as exc:  # mediapipe or a model missing: one line, not a traceback
        print(f"error: cannot extract landmarks: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    frames = sum(n for _, n, _ in report.done)
    seconds = time.monotonic() - started
    print(f"extracted {len(report.done)} clips ({frames} frames, {frames / seconds if seconds else 0:.1f} frames/s), "
          f"skipped {len(report.skipped)} already done, {len(report.failed)} unreadable; "
          f"{args.output} holds {len(report.sequences)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
