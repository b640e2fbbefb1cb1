"""Command line: `runner.py GRAPH [options]`, `runner.py check GRAPH`, `runner.py draw GRAPH -o FILE`.

Exit codes: 0 the graph ran to its end (or was stopped with Ctrl-C / SIGTERM), 1 a node
failed or a lossless node lost frames, 2 the graph file or the command line is wrong.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from .spec import SpecError, load_graph

USAGE = """runner.py GRAPH [--set ID.PARAM=VALUE ...] [--max-frames N] [--duration S] [--metrics FILE.json]
                [--machine NAME --hosts HOSTS.yaml | --host NAME=ADDR ...] [--keys KEYS_DIR] [--allow-outside]
       runner.py check GRAPH [--set ID.PARAM=VALUE ...] [--allow-outside]
       runner.py draw GRAPH [-o graph.png] [--allow-outside]
       runner.py kinds [KIND ...]          the installed node kinds: ports and params
       runner.py COMMAND ...               an installed command (see below; --help of each)"""

ENGINE_COMMANDS = ("run", "check", "draw", "kinds")


def _usage() -> str:
    """The engine's usage, then every installed command with the first line of its docstring."""
    from . import registry

    try:
        commands = registry.commands()
    except registry.NotInstalled as exc:
        return f"{USAGE}\n\n{exc}"
    lines = [USAGE, "", "commands:"]
    for name, reference in sorted(commands.items()):
        try:
            module = importlib.import_module(reference.partition(":")[0])
            summary = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
        except Exception:  # a command that cannot even import still gets listed
            summary = ""
        lines.append(f"  {name:18s} {summary}")
    return "\n".join(lines)


def _parser(prog: str, command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, usage=USAGE, description="Run a PoseGraph dataflow graph.")
    parser.add_argument("graph", help="the graph's YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID.PARAM=VALUE",
                        help="override a node parameter (repeatable)")
    parser.add_argument("--allow-outside", action="store_true",
                        help="let `uses:` import node files outside the graph file's folder and the current directory")
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
        _interrupts_as_python_has_them()
        return print_kinds(argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv and argv[0] not in ENGINE_COMMANDS:
        command = _installed_command(argv[0])
        if command is not None:
            _interrupts_as_python_has_them()
            return command(argv[1:])
    command = argv[0] if argv and argv[0] in ("check", "draw", "run") else "run"
    if argv and argv[0] in ("check", "draw", "run"):
        argv = argv[1:]
    if command == "run":
        _stop_quietly_until_running()
    else:
        _interrupts_as_python_has_them()
    args = _parser(prog, command).parse_args(argv)
    try:
        spec = load_graph(args.graph, args.overrides, allow_outside=args.allow_outside)
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

    code = run_graph(spec, max_frames=args.max_frames, duration=args.duration, metrics_path=args.metrics,
                     live=False if args.no_live else None, machine=args.machine, inventory=inventory, keys=keys)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the run is over and cleaned up: its exit code stands
        signal.signal(sig, signal.SIG_IGN)
    return code


def _stop_before_start(signum, frame) -> None:
    """Ctrl-C / SIGTERM before the supervisor has started anything (it takes both over
    then): nothing was made yet, so stop at once with one line. Exit code 0, as for any
    stop asked for (README, "Running")."""
    sys.stderr.write(f"stopped ({signal.Signals(signum).name}) before the graph started\n")
    sys.stderr.flush()
    os._exit(0)


def _stop_quietly_until_running() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop_before_start)


def _interrupts_as_python_has_them() -> None:
    """runner.py (and `python -m posegraph`) stop quietly on Ctrl-C while Python imports
    this module (their handler is marked `posegraph_starting`); every command but `run`
    (which takes them over) gets Python's usual KeyboardInterrupt and SIGTERM back."""
    for sig, usual in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)):
        if getattr(signal.getsignal(sig), "posegraph_starting", False):
            signal.signal(sig, usual)


def _installed_command(name: str):
    """The `main` of the installed command `name`, or None (then `name` is a graph file)."""
    from . import registry

    try:
        reference = registry.commands().get(name)
    except registry.NotInstalled:
        return None
    return registry.load(reference) if reference else None


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
        print(f"{name}" + (" (stateful)" if kind.is_stateful() else "") + (f": {doc[0]}" if doc else ""))
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
