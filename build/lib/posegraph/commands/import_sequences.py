"""`posegraph import-sequences FORMAT PATH -o DATA.npz`: landmark sequences from other tools' files (posegraph.pose.sequence_import)."""
from __future__ import annotations

import argparse
import sys

from posegraph.pose.sequence_import import FORMATS, MHAD_CLASSES, import_mediapipe_txt, import_mhad
from posegraph.pose.sequences import SequenceError, save_dataset


# ----- command --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posegraph import-sequences",
        description="Import landmark sequences from another tool's files into a sequence data set (.npz).")
    parser.add_argument("format", choices=FORMATS, metavar="FORMAT",
                        help="mediapipe-txt (folder of <ACTION>.txt, MediaPipe Pose, normalised) or "
                             "mhad (X_*.txt + y_*.txt, OpenPose-18 pixels, 32 frames per sequence)")
    parser.add_argument("path", metavar="PATH", help="folder (or one file) to import")
    parser.add_argument("-o", "--output", required=True, metavar="DATA.npz", help="data set to write (replaced)")
    parser.add_argument("--width", type=int, default=640, help="image width in pixels (default 640)")
    parser.add_argument("--height", type=int, default=480, help="image height in pixels (default 480)")
    parser.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument("--classes", default=",".join(MHAD_CLASSES),
                        help="mhad: class names for ids 1, 2, ... (default: %(default)s)")
    parser.add_argument("--frames-per-sequence", type=int, default=32, help="mhad: rows per sequence (default 32)")
    return parser


def main(argv: list[str]) -> int:
    """0 written, 2 bad input (one line on stderr)."""
    args = _parser().parse_args(argv)
    if args.width < 1 or args.height < 1 or not args.fps > 0 or args.frames_per_sequence < 1:
        print("error: --width, --height, --fps and --frames-per-sequence must be positive", file=sys.stderr)
        return 2
    try:
        if args.format == "mediapipe-txt":
            sequences = import_mediapipe_txt(args.path, args.width, args.height, args.fps)
        else:
            classes = tuple(c.strip() for c in args.classes.split(",") if c.strip())
            if not classes:
                raise SequenceError("--classes: no class names")
            sequences = import_mhad(args.path, classes, args.frames_per_sequence, args.width, args.height, args.fps)
        if not sequences:
            raise SequenceError(f"{args.path}: no frames found; nothing written")
    except SequenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_dataset(args.output, sequences)
    counts: dict[str, int] = {}
    for s in sequences:
        counts[s.label] = counts.get(s.label, 0) + 1
    frames = sum(len(s) for s in sequences)
    print(f"wrote {len(sequences)} sequences ({frames} frames, layout {sequences[0].layout}) to {args.output}: "
          + ", ".join(f"{label}: {n}" for label, n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
