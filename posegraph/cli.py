"""The command line: `posegraph COMMAND ...` (also `runner.py COMMAND ...` and
`python -m posegraph COMMAND ...`).

    posegraph run SOURCE ...        a video, folder, camera index or URL (the installed
                                    command `run-source`, with options of its own)
    posegraph [run] GRAPH.yaml ...  run a graph file (the verb may be left out)
    posegraph check GRAPH.yaml      validate only
    posegraph draw GRAPH.yaml       a picture of the graph
    posegraph kinds [KIND ...]      the installed node kinds: ports and params
    posegraph NAME ...              an installed command (`posegraph.commands` entry points)

Global options (before the command, or after it for run, check, draw and kinds):
`--version`, `-v` (also the native libraries' log lines a run hides by default) and `-q`
(only errors and the final answer; the node processes' output goes to out/<graph>.log).

Exit codes: 0 the graph ran to its end (or was stopped with Ctrl-C / SIGTERM), 1 a node
failed or a lossless node lost frames, 2 the graph file or the command line is wrong. A
reader that goes away (`posegraph kinds | head -3`) ends the command quietly, with the
exit code of a program killed by SIGPIPE (141).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from . import logs
from .spec import SpecError, load_graph

ENGINE_COMMANDS = {
    "run": "run a graph file, or a video, folder, camera index or URL",
    "check": "validate a graph file without running it",
    "draw": "draw a graph file as a picture",
    "kinds": "the installed node kinds: ports and params",
}
GRAPH_SUFFIXES = (".yaml", ".yml")
SOURCE_COMMAND = "run-source"  # the installed command that runs a media source (posegraph run VIDEO)
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")
VERBOSITY_FLAGS = ("-v", "--verbose", "-q", "--quiet")
CLOSED_PIPE_EXIT = 128 + signal.SIGPIPE  # as a program killed by SIGPIPE


def program_name() -> str:
    """How the command was called, for usage lines: `posegraph`, `runner.py`..."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "posegraph"
    return "python -m posegraph" if name == "__main__.py" else name or "posegraph"


def version() -> str:
    """The installed package's version, else the one setup.cfg declares (a source tree)."""
    from importlib import metadata

    try:
        return metadata.version("posegraph")
    except metadata.PackageNotFoundError:
        import configparser

        config = configparser.ConfigParser()
        config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
        return config.get("metadata", "version", fallback="unknown")


# ----- parsers -------------------------------------------------------------------------------------
def _verbosity_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """-v / -q: on the top parser with defaults, on each engine command without (so that
    `posegraph -q check G` and `posegraph check G -q` mean the same)."""
    group = parser.add_mutually_exclusive_group()
    default = {} if top else {"default": argparse.SUPPRESS}
    group.add_argument("-v", "--verbose", action="count", help="say more: also the native libraries' log lines "
                                                               "a run hides by default", **({"default": 0} if top else default))
    group.add_argument("-q", "--quiet", action="store_true", help="only errors and the final answer; the node processes' "
                                                                  "output goes to out/<graph>.log", **default)


def _graph_options(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("graph", metavar="GRAPH.yaml", help="the graph's YAML file")
    if command != "draw":
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="ID.PARAM=VALUE",
                            help="override a node parameter (repeatable; values are read as YAML)")
    else:
        parser.set_defaults(overrides=[])
    parser.add_argument("--allow-outside", action="store_true",
                        help="let `uses:` import node files outside the graph file's folder and the current directory")
    if command == "run":
        parser.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop each source after N frames")
        parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds, draining")
        parser.add_argument("--metrics", default=None, metavar="FILE.json", help="write per-node metrics here (rewritten once a second during the run, complete at the end)")
        parser.add_argument("--no-live", action="store_true", help="no live table, even on a terminal")
        parser.add_argument("--machine", default=None, metavar="NAME", help="start only the nodes placed on this machine")
        parser.add_argument("--cluster", default=None, metavar="ray://HOST:PORT",
                            help="run the graph's processes inside Ray actors on this Ray cluster ('auto': RAY_ADDRESS); "
                                 "nodes are placed by their `resources:` and `colocate:` (needs posegraph[ray])")
        parser.add_argument("--cluster-timeout", type=float, default=60.0, metavar="S",
                            help="with --cluster: how long to wait for the cluster and for room for every node (default 60)")
        parser.add_argument("--working-dir", default=None, metavar="DIR",
                            help="with --cluster: ship DIR (holding the graph, its node files and models) to every Ray node "
                                 "through Ray's runtime environment; the groups run in Ray's copy of it")
        parser.add_argument("--placement", default=None, help=argparse.SUPPRESS)  # a cluster actor's part: set by posegraph.cluster
    if command in ("run", "check"):
        parser.add_argument("--hosts", default=None, metavar="HOSTS.yaml", help="inventory: machine name -> address")
        parser.add_argument("--host", dest="host_flags", action="append", default=[], metavar="NAME=ADDR",
                            help="a machine's address (repeatable; wins over --hosts)")
        parser.add_argument("--keys", default=None, metavar="KEYS_DIR",
                            help="CURVE keys for every tcp link, as `security: {curve: KEYS_DIR}` in the graph")
    if command == "draw":
        parser.add_argument("-o", "--output", default="graph.png", help="picture to write: png, svg or pdf (default graph.png)")
        parser.add_argument("--where", default=None, metavar="METRICS.json",
                            help="write under each node where it ran, from that run's --metrics file (a cluster run: "
                                 "its Ray node); without it, a graph placed by resources/colocate shows its Ray groups")


def _installed_summaries() -> dict[str, str]:
    """Installed command -> the first line of its module's docstring ('' when it cannot be read)."""
    from . import registry

    try:
        commands = registry.commands()
    except registry.NotInstalled:
        return {}
    summaries = {}
    for name, reference in sorted(commands.items()):
        if name == SOURCE_COMMAND:
            continue  # reached as `run SOURCE`
        try:
            module = importlib.import_module(reference.partition(":")[0])
            first = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
            if first.startswith("`") and "`: " in first:  # "`posegraph NAME ...`: what it does": the usage is NAME --help's
                first = first.split("`: ", 1)[1]
            summaries[name] = first
        except Exception:  # noqa: BLE001 - a command that cannot even import is still listed
            summaries[name] = ""
    return summaries


def build_parser(prog: str, installed: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; `installed` (command -> summary) lists the installed
    commands in --help (they parse their own arguments: `posegraph NAME --help`)."""
    top = argparse.ArgumentParser(
        prog=prog, description="PoseGraph: pose and action recognition as a graph of processes.",
        epilog=f"`{prog} GRAPH.yaml` (no command) runs the graph; `{prog} COMMAND --help` tells more of each command.")
    top.add_argument("--version", action="version", version=f"posegraph {version()}")
    _verbosity_options(top, top=True)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                                  help="one of these (or a graph file, GRAPH.yaml, to run it):")
    run = commands.add_parser(
        "run", help=ENGINE_COMMANDS["run"], usage=f"{prog} run GRAPH.yaml [options]\n       {prog} run SOURCE [options]",
        description="Run a graph file: each node in its own process, a live table on a terminal.",
        epilog=f"With a video, folder, camera index or URL instead of a graph file, `run` builds the graph itself "
               f"and prints the answer; its options: {prog} run SOURCE --help (e.g. {prog} run clip.mp4 --help).")
    check = commands.add_parser("check", help=ENGINE_COMMANDS["check"], description="Validate a graph file: "
                                "one line naming the file, line, node and field of each mistake, exit code 2.")
    draw = commands.add_parser("draw", help=ENGINE_COMMANDS["draw"], description="Draw a graph file (png, svg or pdf).")
    kinds = commands.add_parser("kinds", help=ENGINE_COMMANDS["kinds"],
                                description="The ports and typed params of the installed node kinds (all of them, "
                                            "or those named).")
    for name, parser in (("run", run), ("check", check), ("draw", draw)):
        _graph_options(parser, name)
    kinds.add_argument("kinds", nargs="*", metavar="KIND", help="kinds to describe (default: every installed kind)")
    for parser in (run, check, draw, kinds):
        _verbosity_options(parser, top=False)
    for name, summary in (installed or {}).items():
        commands.add_parser(name, help=summary or "(an installed command)", add_help=False)
    return top


# ----- the entry point -----------------------------------------------------------------------------
def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or program_name()
    try:
        code = _dispatch(argv, prog)
        sys.stdout.flush()  # inside the try: a reader gone before the last flush is a closed pipe too
        return code
    except BrokenPipeError:
        _silence_closed_pipes()
        return CLOSED_PIPE_EXIT
    except SystemExit as exc:  # argparse's --help, --version and usage errors: their code, nothing escapes
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _silence_closed_pipes() -> None:
    """The reader of stdout (or stderr) went away: point the closed stream(s) at /dev/null
    so that nothing more, not even Python's final flush, complains of it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass
        except OSError:
            pass
    os.close(devnull)


def _split_globals(argv: list[str]) -> tuple[list[str], int]:
    """(the options before the command, the command's index: len(argv) when there is none)."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        i += 1
    return argv[:i], i


def _dispatch(argv: list[str], prog: str) -> int:
    leading, at = _split_globals(argv)
    word = argv[at] if at < len(argv) else None
    if word is None or any(a in ("-h", "--help", "--version") for a in leading):
        _interrupts_as_python_has_them()
        helping = any(a in ("-h", "--help") for a in leading)
        parser = build_parser(prog, _installed_summaries() if helping else {})
        parser.parse_args(leading)  # --help and --version exit here, as does an unknown option
        parser.error("a command or a graph file is needed")
    verbosity = _verbosity(leading, prog)
    if word not in ENGINE_COMMANDS:
        command = _installed_command(word)
        if command is not None:
            logs.set_verbosity(verbosity)
            _interrupts_as_python_has_them()
            return command(argv[at + 1:])
        if not _runnable(word):
            _interrupts_as_python_has_them()
            from .hints import did_you_mean

            names = sorted(ENGINE_COMMANDS) + sorted(_installed_summaries())
            print(f"error: unknown command '{word}'{did_you_mean(word, names)}: not a command, a graph file "
                  f"(*.yaml) or a video, folder, camera index or URL; commands: {', '.join(names)} "
                  f"(see {prog} --help)", file=sys.stderr)
            return 2
        argv = [*leading, "run", *argv[at:]]  # `posegraph GRAPH.yaml` / `posegraph clip.mp4`: run it
        word = "run"
    if word == "run":
        source_args = _source_run(argv[at + 1:])
        if source_args is not None:
            command = _installed_command(SOURCE_COMMAND)
            if command is not None:
                flags = [a for a in source_args if a in VERBOSITY_FLAGS or _is_short_verbose(a)]
                logs.set_verbosity(_verbosity(leading + flags, prog))
                _stop_quietly_until_running()
                return command([a for a in source_args if a not in flags], prog=f"{prog} run")
        _stop_quietly_until_running()  # Ctrl-C from here until the supervisor runs: one line, exit 0
    else:
        _interrupts_as_python_has_them()
    args = build_parser(prog).parse_args(argv)
    verbosity = -1 if getattr(args, "quiet", False) else args.verbose or 0
    logs.set_verbosity(verbosity)
    if args.command == "kinds":
        return print_kinds(args.kinds)
    return _graph_command(args)


def _is_short_verbose(arg: str) -> bool:
    return len(arg) > 2 and arg[0] == "-" and set(arg[1:]) == {"v"}  # -vv


def _verbosity(flags: list[str], prog: str) -> int:
    """-1 quiet, 0 normal, 1+ verbose, from the global flags (checked by argparse)."""
    known = [a for a in flags if a in VERBOSITY_FLAGS or _is_short_verbose(a)]
    if len(known) != len(flags) or ({"-q", "--quiet"} & set(flags) and len(known) > 1):
        build_parser(prog).parse_args(flags + ["kinds"])  # an unknown or conflicting option: argparse says so
    if "-q" in flags or "--quiet" in flags:
        return -1
    return sum(1 if a in ("-v", "--verbose") else len(a) - 1 for a in known)


def _runnable(word: str) -> bool:
    """Whether `word`, where a command was expected, is something `run` takes."""
    return (word.lower().endswith(GRAPH_SUFFIXES) or word.isdigit() or word.lower().startswith(STREAM_PREFIXES)
            or os.path.exists(word))


def _graph_command(args) -> int:
    command = args.command
    try:
        spec = load_graph(args.graph, args.overrides, allow_outside=args.allow_outside)
        if getattr(args, "placement", None):
            _apply_placement(spec, args.placement)
        if command == "run" and args.cluster:
            if args.machine or args.hosts or args.host_flags:
                raise SpecError("--cluster places the nodes itself: leave out --machine, --hosts and --host", "--cluster")
            from .cluster import run_on_cluster  # Ray is imported there, and only with --cluster

            return run_on_cluster(spec, args)
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
        import json

        from .cluster.view import planned_groups, where_from_metrics
        from .draw import draw_graph

        where = planned_groups(spec)
        if args.where:
            try:
                where = where_from_metrics(json.loads(Path(args.where).read_text()))
            except (OSError, ValueError, AttributeError) as exc:
                print(f"error: --where {args.where}: not a run's metrics file ({exc})", file=sys.stderr)
                return 2
        draw_graph(spec, args.output, where)
        print(f"wrote {args.output}")
        return 0
    if args.max_frames < 0:
        print("error: --max-frames must be 0 or more", file=sys.stderr)
        return 2
    from .supervisor import run_graph

    code = run_graph(spec, max_frames=args.max_frames, duration=args.duration, metrics_path=args.metrics,
                     live=False if args.no_live else None, machine=args.machine, inventory=inventory, keys=keys,
                     inventory_file=args.placement)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the run is over and cleaned up: its exit code stands
        signal.signal(sig, signal.SIG_IGN)
    return code


# options of `run GRAPH` and of `run SOURCE` that take a value (the next argument, unless given with "=")
VALUE_OPTIONS = frozenset({"--set", "--max-frames", "--duration", "--metrics", "--machine", "--hosts", "--host", "--keys",
                           "--cluster", "--cluster-timeout", "--placement", "--working-dir",
                           "--classifier", "--people", "--model", "-o", "--output"})


def _source_run(rest: list[str]) -> list[str] | None:
    """The arguments for SOURCE_COMMAND when `run REST` runs something that is not a graph
    file (`run clip.mp4`, `run 0`, `run rtsp://...`), else None."""
    target, i = None, 0
    while i < len(rest):
        if not rest[i].startswith("-") or rest[i] == "-":
            target = rest[i]
            break
        i += 2 if rest[i] in VALUE_OPTIONS else 1
    if target is None or target.lower().endswith(GRAPH_SUFFIXES):
        return None
    return rest


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


def _apply_placement(spec, path: str) -> None:
    """A cluster actor's view of the graph: the machines (actor groups) the cluster driver
    made, each node's group and the run's base port (posegraph.cluster writes the file)."""
    import json

    placement = json.loads(Path(path).read_text())
    spec.machines = list(placement["machines"])
    spec.base_port = int(placement["base_port"])
    for node_id, machine in placement["nodes"].items():
        spec.nodes[node_id].machine = machine


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
