"""`posegraph run SOURCE`: pose, exercise and repetitions of a video, a folder, a camera or a stream, no YAML needed.

SOURCE is a video file, a folder (each video in it, or its images as one sequence), a
camera index (0) or a stream URL. The command builds the graph a user could write
(posegraph.pose.recipes; `--print-graph` prints it), runs it, and prints the answer:
the class over time, repetitions per class, frames without a person or dropped, and the
frames per second of every node. Outputs are named after the input: DIR/<stem>.mp4 (the
annotated video), DIR/<stem>.jsonl (one record per frame, docs/records.md) and
DIR/<stem>.summary.json (what is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from posegraph.pose.media import IMAGE_SUFFIXES, display_problem
from posegraph.pose.recipes import CLASSIFIERS, DEFAULT_CLASSIFIER, build_graph, graph_yaml, output_stem, source_kind
from posegraph.pose.summary import read_records, summarize, summary_text

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")


def parser(prog: str = "posegraph run") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.strip().splitlines()[0],
                                epilog="A graph file instead of SOURCE runs that graph: posegraph run graphs/demo.yaml")
    p.add_argument("source", help="video file, folder of videos or images, camera index (0) or stream URL")
    p.add_argument("--classifier", choices=CLASSIFIERS, default=DEFAULT_CLASSIFIER,
                   help=f"exercise classifier (default {DEFAULT_CLASSIFIER}: the best measured on unseen people)")
    p.add_argument("--people", type=int, default=1, metavar="N", help="people to follow at once (default 1)")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="the classifier's trained model (train-tcn, train-lstm, dtw-templates, knn-samples); default: the shipped one")
    p.add_argument("-o", "--output", default="out", metavar="DIR", help="folder for the outputs (default out/)")
    p.add_argument("--show", action="store_true", help="show the annotated video live: a window, or the web view without a display")
    p.add_argument("--no-video", action="store_true", help="write no annotated video (records and summary only)")
    p.add_argument("--print-graph", action="store_true", help="print the graph's YAML and exit (a start for your own graph)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID.PARAM=VALUE",
                   help="override a node parameter of the built graph (repeatable)")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames of each input")
    p.add_argument("--no-live", action="store_true", help="no live table, even on a terminal")
    return p


def inputs_of(source: str) -> list[str]:
    """The runs SOURCE makes: each video of a folder (sorted), or the folder itself when it
    holds only images (one sequence); any other SOURCE is one run."""
    if source_kind(source) != "folder":
        return [source]
    folder = Path(source).expanduser()
    videos = sorted(str(p) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if videos:
        return videos
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file()):
        return [source]
    return []


def _check_source(source: str) -> str | None:
    kind = source_kind(source)
    if kind in ("camera", "stream"):
        return None
    path = Path(source).expanduser()
    if not path.exists():
        return f"no such file or folder: {source!r}"
    if kind == "file" and path.suffix.lower() in (".yaml", ".yml"):
        return None
    if kind == "folder" and not inputs_of(source):
        return (f"folder {source!r} holds no videos ({', '.join(VIDEO_SUFFIXES)}) "
                f"and no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return None


def _show_mode(wanted: bool) -> str | None:
    if not wanted:
        return None
    problem = display_problem()
    if problem:
        print(f"no window ({problem}): shown in a browser instead (the web node says where: 'live view at http://...')",
              file=sys.stderr)
        return "web"
    return "window"


def _unique_stems(sources: list[str]) -> list[str]:
    """Output names, one per input: the stem, then stem-2, stem-3... for repeats."""
    seen: dict[str, int] = {}
    stems = []
    for source in sources:
        stem = output_stem(source)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def run_one(source: str, stem: str, args, show: str | None) -> tuple[int, dict | None, bool]:
    """Build, check and run the graph of one input: (exit code, its summary, stopped by the user)."""
    from posegraph.spec import SpecError, build_spec, load_yaml
    from posegraph.supervisor import Supervisor

    out_dir = args.output
    doc = build_graph(source, args.classifier, args.people, args.model, out_dir, stem, not args.no_video, show)
    text = graph_yaml(doc, f"posegraph run {source}")
    try:
        spec = build_spec(load_yaml(text), f"<posegraph run {source}>", Path.cwd(), args.overrides)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None, False
    records_path = next(n["params"]["path"] for n in doc["nodes"] if n["id"] == "records")
    with tempfile.TemporaryDirectory(prefix="posegraph-run-") as scratch:
        metrics_path = os.path.join(scratch, "metrics.json")
        supervisor = Supervisor(spec, max_frames=args.max_frames, metrics_path=metrics_path,
                                live=False if args.no_live else None)
        code = supervisor.run()
        metrics = json.loads(Path(metrics_path).read_text()) if os.path.exists(metrics_path) else None
    stopped = supervisor.interrupts > 0
    if not os.path.exists(records_path):
        return code or 1, None, stopped
    summary = summarize(read_records(records_path), metrics, source)
    summary_path = os.path.join(out_dir, f"{stem}.summary.json")
    Path(summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    outputs = [n["params"]["path"] for n in doc["nodes"] if n["id"] in ("video", "records")] + [summary_path]
    print("\n".join(summary_text(summary, [p for p in outputs if os.path.exists(p)])), flush=True)
    return code, summary, stopped


def _table(rows: list[tuple[str, dict | None, int]]) -> list[str]:
    """One line per input of a folder: answer, reps, frames."""
    width = max(len(Path(s).name) for s, _, _ in rows)
    lines = [f"{'input':{width}}  {'answer':14}  {'reps':24}  frames  exit"]
    for source, summary, code in rows:
        if summary is None:
            lines.append(f"{Path(source).name:{width}}  {'(failed)':14}  {'':24}  {'':6}  {code}")
            continue
        reps = ", ".join(f"{k} {v}" for k, v in summary["reps"].items() if v) or "-"
        lines.append(f"{Path(source).name:{width}}  {summary['answer'] or '-':14}  {reps:24}  {summary['frames']:6}  {code}")
    return lines


def main(argv: list[str] | None = None, prog: str = "posegraph run") -> int:
    args = parser(prog).parse_args(argv)
    if args.people < 1:
        print("error: --people must be 1 or more", file=sys.stderr)
        return 2
    if args.max_frames < 0:
        print("error: --max-frames must be 0 or more", file=sys.stderr)
        return 2
    problem = _check_source(args.source)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    sources = inputs_of(args.source)
    stems = _unique_stems(sources)
    if args.print_graph:
        for source, stem in zip(sources, stems):
            doc = build_graph(source, args.classifier, args.people, args.model, args.output, stem, not args.no_video,
                              "window" if args.show else None)
            sys.stdout.write(graph_yaml(doc, f"posegraph run {source}"))
        return 0
    show = _show_mode(args.show)
    rows, worst = [], 0
    for source, stem in zip(sources, stems):
        if len(sources) > 1:
            print(f"[{len(rows) + 1}/{len(sources)}] {source}", file=sys.stderr, flush=True)
        code, summary, stopped = run_one(source, stem, args, show)
        rows.append((source, summary, code))
        worst = max(worst, code)
        if stopped or code == 2:
            break
    if len(sources) > 1:
        print("\n".join(_table(rows)))
    return worst
