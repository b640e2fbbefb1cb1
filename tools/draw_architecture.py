#!/usr/bin/env python3
"""Draw docs/architecture.png: the four packages, who imports whom, and the data path.

Usage: python tools/draw_architecture.py [-o docs/architecture.png]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ENGINE = "#c9d9f0"
APP = "#f6d7a7"
LIB = "#cde8c9"


def box(ax, x, y, w, h, title, lines, colour):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", fc=colour, ec="#333", lw=1.2))
    ax.text(x + w / 2, y + h - 0.18, title, ha="center", va="top", fontsize=11, fontweight="bold")
    for i, line in enumerate(lines):
        ax.text(x + 0.12, y + h - 0.55 - 0.27 * i, line, ha="left", va="top", fontsize=8.2, family="monospace")


def arrow(ax, start, end, text="", dashed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#444",
                                 linestyle="--" if dashed else "-"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.08, text, ha="center", fontsize=8, color="#444")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent.parent / "docs" / "architecture.png"))
    out = parser.parse_args().output
    fig, ax = plt.subplots(figsize=(13, 7.2))
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 7.2)
    ax.axis("off")
    box(ax, 0.3, 2.0, 5.4, 4.8, "posegraph  (the engine)", [
        "node.py     the contract: ports, Param,",
        "            open / process / close,",
        "            new_state, KEYS",
        "context.py  ctx    keyed.py  state per key",
        "",
        "spec.py -> plan.py -> supervisor.py",
        "   -> worker.py -> runtime/process.py",
        "        runtime/inputs.py   (receive, join)",
        "        runtime/outputs.py  (credit, resend)",
        "        runtime/slots.py    (shared memory)",
        "wire.py  shm.py  control.py  terminal.py",
        "registry.py: kinds and commands by entry",
        "             point (never imported)",
        "testing.py: NodeHarness, GraphRun",
    ], ENGINE)
    box(ax, 7.0, 4.5, 5.6, 2.3, "posegraph.nodes  (nodes/)", [
        "one small file per kind: capture, pose,",
        "embed, knn, smooth, reps, lstm, dtw,",
        "render, sinks, web ...",
        "thin adapters: params -> library, ctx",
    ], APP)
    box(ax, 7.0, 0.4, 3.0, 3.5, "posegraph.pose  (pose/)", [
        "landmarks, people",
        "backends/, tracking",
        "features, knn, dtw,",
        "lstm, smoothing, reps",
        "drawing, media,",
        "records, sequences",
        "training/",
    ], LIB)
    box(ax, 10.3, 2.2, 2.3, 1.7, "commands/", ["train-lstm, extract,", "dtw-templates, keys,", "serve ..."], APP)
    box(ax, 10.3, 0.4, 2.3, 1.4, "webapp/", ["upload app,", "live view server"], APP)
    arrow(ax, (7.0, 5.6), (5.75, 5.6), "Node, Param, ctx")
    arrow(ax, (8.5, 4.5), (8.5, 3.95), "uses")
    arrow(ax, (10.3, 3.0), (10.05, 3.0))
    arrow(ax, (10.3, 1.1), (10.05, 1.1))
    arrow(ax, (5.75, 2.6), (7.0, 4.7), dashed=True)
    ax.text(0.4, 1.4, "the engine finds kinds and commands by name (entry points), never by import", fontsize=9, color="#444")
    ax.text(0.3, 7.0, "PoseGraph: four packages under one name; arrows point from importer to imported "
                      "(dashed: found at run time)", fontsize=10)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
