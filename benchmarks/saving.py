"""Where a benchmark writes its results: out/ by default, benchmarks/ with --save.

The machines are shared and noisy, so a run is a measurement, not a record: only a run
asked to save (`--save`) replaces the results docs/benchmarks.md and docs/accuracy.md quote.
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAVED = ROOT / "benchmarks"
SCRATCH = ROOT / "out"


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--json FILE (default out/NAME) and --save (benchmarks/NAME, the results docs/benchmarks.md and docs/accuracy.md quote)."""
    parser.add_argument("--json", default=None, metavar="FILE", help=f"where to write the results (default out/{name})")
    parser.add_argument("--save", action="store_true", help=f"write benchmarks/{name}, the results docs/benchmarks.md and docs/accuracy.md quote")


def path(args: argparse.Namespace, name: str) -> Path:
    """The results file this run writes (its folder made)."""
    target = SAVED / name if args.save else Path(args.json) if args.json else SCRATCH / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
