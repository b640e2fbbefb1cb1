"""Command line: `runner.py GRAPH [options]`, `runner.py check GRAPH`, `runner.py draw GRAPH -o FILE`.

Exit codes: 0 the graph ran to its end (or was stopped and drained), 1 a node failed,
2 the graph file or the command line is wrong.
"""
from __future__ import annotations

import argparse
import sys

from .spec import SpecError, load_graph

USAGE = """runner.py GRAPH [--set ID.PARAM=VALUE ...] [--max-frames N] [--duration S] [--metrics FILE.json]
                [--machine NAME --hosts HOSTS.yaml | --host NAME=ADDR ...] [--keys KEYS_DIR]
       runner.py keys KEYS_DIR [NAME ...]   CURVE key pairs for encrypted, authenticated tcp links
       runner.py check GRAPH [--set ID.PARAM=VALUE ...]
       runner.py draw GRAPH [-o graph.png]
       runner.py kinds [KIND ...]          the built-in node kinds: ports and params
       runner.py knn-samples IMAGES_ROOT -o SAMPLES.csv [--outliers]
       runner.py extract CLIPS_ROOT -o DATA.npz          landmark sequences of labelled clips
       runner.py import-sequences FORMAT PATH -o DATA.npz
       runner.py train-lstm DATA.npz -o MODEL_DIR
       runner.py dtw-templates --clips ROOT -o TEMPLATES.npz
       runner.py label-keypoints INPUT... -o LABELS.json --keypoints A,B,...   BlazePose pseudo-labels
       runner.py train-keypoints INPUT... -o MODEL_DIR (--labels FILE | --label-with blazepose --keypoints A,B,...)
                                          a TFLite keypoint model for `pose` model custom:MODEL_DIR   (see --help of each)
       runner.py serve [--host 127.0.0.1] [--port 8000] [--max-upload-mb 200] [--jobs-dir out/web_jobs]   web app: upload a video, see the result"""

# commands that are tools of the node kinds rather than of the engine: name -> "module:function"
TOOLS = {
    "knn-samples": "nodes.knn_train:main",
    "extract": "nodes.sequences:main",
    "import-sequences": "nodes.sequence_import:main",
    "train-lstm": "nodes.lstm_train:main",
    "dtw-templates": "nodes.dtw_record:main",
    "label-keypoints": "nodes.keypoint_train:label_main",
    "train-keypoints": "nodes.keypoint_train:main",
    "serve": "webapp.server:main",
}


def _parser(prog: str, command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, usage=USAGE, description="Run a PoseGraph dataflow graph.")
    parser.add_argument("graph", help="the graph's YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID.PARAM=VALUE",
                        help="override a node parameter (repeatable)")
    if command == "run":
        parser.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop each source after N frames")
        parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds, draining")
        parser.add_argument("--metrics", default=None, metavar="FILE.json", help="write per-node metrics here at the end")
        parser.add_argument("--no-live", action="store_true", help="no live table, even on a terminal")
        parser.add_argument("--machine", default=None, metavar="NAME", help="start only the nodes placed on this machine")
    if command in ("run", "check"):
        parser.add_argument("--hosts", default=None, metavar="HOSTS.yaml", help="inventory: machine name -> address")
        parser.add_argument("--host", dest="host_flags", action="append", default=[], metavar="NAME=ADDR",
                            help="a machine's address (repeatable; wins over --hosts)")
        parser.add_argument("--keys", default=None, metavar="KEYS_DIR",
                            help="CURVE keys for every tcp link, as `security: {curve: KEYS_DIR}` in the graph")
    if command == "draw":
        parser.add_argument("-o", "--output", default="graph.png", help="picture to write (png, svg or pdf)")
    return parser


def main(argv: list[str] | None = None, prog: str = "runner.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kinds":
        return print_kinds(argv[1:])
    if argv and argv[0] == "keys":
        from .security import make_keys

        return make_keys(argv[1:])
    if argv and argv[0] in TOOLS:
        import importlib

        module, _, function = TOOLS[argv[0]].partition(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    command = argv[0] if argv and argv[0] in ("check", "draw", "run") else "run"
    if argv and argv[0] in ("check", "draw", "run"):
        argv = argv[1:]
    args = _parser(prog, command).parse_args(argv)
    try:
        spec = load_graph(args.graph, args.overrides)
        inventory, keys = (_placement(spec, args) if command != "draw" else ({}, None))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if command == "check":
        print(f"{args.graph}: ok ({len(spec.nodes)} nodes, {sum(n.replicas for n in spec.nodes.values())} processes)")
        for name in spec.machines:
            placed = [n.id for n in spec.nodes.values() if n.machine == name]
            print(f"  machine {name}" + (f" at {inventory[name]}" if name in inventory else "") + f": {', '.join(placed) or 'no nodes'}")
        return 0
    if command == "draw":
        from .draw import draw_graph

        draw_graph(spec, args.output)
        print(f"wrote {args.output}")
        return 0
    if args.max_frames < 0:
        print("error: --max-frames must be 0 or more", file=sys.stderr)
        return 2
    from .supervisor import run_graph

    return run_graph(spec, max_frames=args.max_frames, duration=args.duration, metrics_path=args.metrics,
                     live=False if args.no_live else None, machine=args.machine, inventory=inventory, keys=keys)


def _placement(spec, args):
    """Inventory and keys for this run, all checked before a process starts."""
    from .machines import check_local_address, check_placement, load_inventory
    from .security import Keys, KeysError

    if args.keys:
        spec.security = {"mode": "curve", "dir": args.keys}
    inventory = load_inventory(spec, args.hosts, args.host_flags)
    machine = getattr(args, "machine", None)
    check_placement(spec, machine, inventory)
    keys = None
    if spec.security and spec.security["mode"] == "curve":
        try:
            keys = Keys(spec.security["dir"])
            keys.check_machine(machine or (spec.machines[0] if spec.machines else None))
        except KeysError as exc:
            raise SpecError(str(exc), spec.path, field="security") from None
    if machine:
        check_local_address(machine, inventory[machine])
    return inventory, keys


def print_kinds(names: list[str]) -> int:
    """Ports and typed params of built-in kinds, read from their declarations."""
    from pathlib import Path

    from .kinds import KindError, builtin_kinds, resolve_kind

    for name in names or sorted(builtin_kinds()):
        try:
            kind = resolve_kind(name, Path.cwd())
        except KindError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        doc = (kind.__doc__ or sys.modules[kind.__module__].__doc__ or "").strip().splitlines()
        print(f"{name}" + (" (stateful)" if kind.STATEFUL else "") + (f": {doc[0]}" if doc else ""))
        for port, text in kind.INPUTS.items():
            optional = " (optional)" if port in kind.OPTIONAL_INPUTS else ""
            print(f"  in   {port}{optional}: {text}")
        for port, text in kind.OUTPUTS.items():
            print(f"  out  {port}: {text}")
        for pname, decl in kind.PARAMS.items():
            bounds = "".join([f" min {decl.min}" if decl.min is not None else "", f" max {decl.max}" if decl.max is not None else "",
                              f" one of {list(decl.choices)}" if decl.choices else ""])
            print(f"  param {pname}: {decl.type_name()} = {decl.default!r}{bounds}" + (f"  ({decl.help})" if decl.help else ""))
        print()
    return 0
