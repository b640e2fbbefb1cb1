"""The Ray side of a cluster run: one actor per group, each running its group's runner.

Steps, each bounded by --cluster-timeout with one line when it cannot be done:
1. reach the cluster (a tcp probe, then `ray.init` in a thread);
2. one actor per group with the group's resources; each reports its Ray node (address,
   id) and which tcp ports it could bind there; a group no node has room for is named
   with what it asked for;
3. per-run CURVE keys (never on disk outside the actors' private folders), the inventory
   and the placement go to the actors through Ray; each starts
   `posegraph run GRAPH --machine GROUP --host ... --keys ... --placement ...`;
4. wait for every group; a lost actor (its Ray node gone) stops the run with one line.
"""
from __future__ import annotations

import json
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from ..spec import GraphSpec, tcp_ports
from .groups import Group, make_groups

SHIP_EXCLUDES = (".venv", ".venv-*", ".git", "out", "__pycache__", "*.pyc", "keys")  # never shipped with --working-dir


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def _endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) to probe for `ray://HOST:PORT` or `HOST:PORT`; None for what Ray finds itself."""
    if address in ("auto", "local"):
        return None
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname:
        return None
    return parsed.hostname, parsed.port or (10001 if address.startswith("ray://") else 6379)


class GroupWorker:
    """A Ray actor: one group of the graph, run by a PoseGraph runner in a child process."""

    def __init__(self, group: str):
        import tempfile

        self.group = group
        self.folder = Path(tempfile.gettempdir()) / f"pgcluster-{group}-{os.getpid()}-{os.urandom(4).hex()}"
        self.proc = None  # the folder is made by `run` and removed when it ends: an actor that never runs leaves none

    def where(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        return {"address": ray.util.get_node_ip_address(), "node_id": context.get_node_id(),
                "hostname": socket.gethostname(), "pid": os.getpid()}

    def progress(self) -> dict | None:
        """The group's runner's metrics as it last wrote them (once a second), or None yet."""
        try:
            return json.loads((self.folder / "metrics.json").read_text())
        except (OSError, ValueError):
            return None

    def busy_ports(self, address: str, ports: list[int]) -> list[int]:
        busy = []
        for port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((address, port))
                except OSError:
                    busy.append(port)
        return busy

    def move(self, hosts: dict) -> None:
        """Groups now at other addresses: the runner watches the placement file and its links follow."""
        path = self.folder / "placement.json"
        placement = json.loads(path.read_text())
        placement["hosts"] = hosts
        fresh = self.folder / "placement.json.new"
        fresh.write_text(json.dumps(placement))
        fresh.replace(path)

    def run(self, argv: list[str], cwd: str | None, placement: dict, public: str, secret: str) -> dict:
        """Write the run's keys and placement into this actor's private folder, run the
        group's runner until it ends; its exit code, output and metrics."""
        import signal
        import subprocess

        self.folder.mkdir(mode=0o700)
        keys = self.folder / "keys"
        (keys / "public").mkdir(parents=True, exist_ok=True)
        (keys / "private").mkdir(parents=True, exist_ok=True)
        os.chmod(keys / "private", 0o700)
        certificate = '#   ZeroMQ CURVE certificate, made for one PoseGraph cluster run\nmetadata\ncurve\n    public-key = "{}"\n'
        (keys / "public/graph.key").write_text(certificate.format(public))
        secret_file = keys / "private/graph.key_secret"
        secret_file.touch(mode=0o600)
        secret_file.write_text(certificate.format(public) + f'    secret-key = "{secret}"\n')
        (self.folder / "placement.json").write_text(json.dumps(placement))
        metrics = self.folder / "metrics.json"
        log = self.folder / "runner.log"
        argv = [sys.executable, "-m", "posegraph", "run", *argv, "--keys", str(keys), "--placement",
                str(self.folder / "placement.json"), "--metrics", str(metrics), "--no-live"]
        here = cwd if cwd and os.path.isdir(cwd) else None  # None: the actor's own folder (Ray's copy of --working-dir)

        def die_with_actor():  # the runner gets SIGTERM (and drains) when this actor's process dies
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

        try:
            with open(log, "w") as out:
                self.proc = subprocess.Popen(argv, cwd=here, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=die_with_actor)
                code = self.proc.wait()
            return {"code": code, "output": log.read_text(errors="replace"),
                    "metrics": json.loads(metrics.read_text()) if metrics.exists() else None}
        finally:  # the run's secret key goes with it
            import shutil

            shutil.rmtree(self.folder, ignore_errors=True)


def _init_ray(address: str, timeout: float, runtime_env: dict | None) -> str | None:
    """ray.init within `timeout`; None when connected, else why not (one line)."""
    import ray

    result: dict = {}

    def connect():
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, runtime_env=runtime_env,
                     namespace="posegraph")
            result["ok"] = True
        except Exception as exc:  # noqa: BLE001 - any failure is one line for the user
            result["error"] = (str(exc).strip().splitlines() or [type(exc).__name__])[0]

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return f"no answer from the Ray cluster at {address} within {timeout:g} s (--cluster-timeout)"
    return None if result.get("ok") else f"cannot connect to the Ray cluster at {address}: {result.get('error')}"


def _cluster_has(ray) -> str:
    total = ray.cluster_resources()
    shown = {k: v for k, v in total.items() if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
    return ", ".join(f"{k}: {v:g}" for k, v in sorted(shown.items())) or "nothing"


def _fits_somewhere(ray, group: Group) -> bool:
    """Whether some live Ray node has, in total, everything the group asks for."""
    want = {"CPU": group.num_cpus, "GPU": group.num_gpus, **group.custom}
    for node in ray.nodes():
        if node.get("Alive") and all(node.get("Resources", {}).get(k, 0.0) >= v for k, v in want.items() if v > 0):
            return True
    return False


def _pick_base_port(spec: GraphSpec) -> int:
    count = sum(n.replicas for n in spec.nodes.values())
    return random.randrange(20000, 60000 - 2 * count, 2)


def run(spec: GraphSpec, args) -> int:
    started = time.monotonic()
    timeout = args.cluster_timeout
    address = args.cluster
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or ""
        if not address:
            return _fail("--cluster auto needs RAY_ADDRESS (e.g. ray://HEAD:10001)", 2)
    try:
        import ray
    except ImportError:
        return _fail("--cluster needs Ray: pip install 'posegraph[ray]'", 2)
    import zmq

    endpoint = _endpoint(address)
    if endpoint:
        try:
            socket.create_connection(endpoint, timeout=min(timeout, 10.0)).close()
        except OSError as exc:
            return _fail(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}")
    groups = make_groups(spec)
    graph_path, cwd, runtime_env = os.path.abspath(spec.path), os.getcwd(), None
    if args.working_dir:  # code and models go through Ray: content-hashed, so an unchanged folder is not sent again
        folder = Path(args.working_dir).resolve()
        if not folder.is_dir():
            return _fail(f"--working-dir {args.working_dir!r} is not a folder", 2)
        try:
            graph_path = str(Path(graph_path).resolve().relative_to(folder))
        except ValueError:
            return _fail(f"the graph {spec.path} is not inside --working-dir {folder}", 2)
        runtime_env, cwd = {"working_dir": str(folder), "excludes": list(SHIP_EXCLUDES)}, None
    why = _init_ray(address, timeout, runtime_env)
    if why:
        print(f"error: {why}", file=sys.stderr, flush=True)
        os._exit(1)  # a Ray client stuck connecting cannot be stopped more gently
    actors = {}
    try:
        remote = ray.remote(GroupWorker)
        for group in groups:
            actors[group.name] = remote.options(
                num_cpus=group.num_cpus, num_gpus=group.num_gpus, resources=group.custom or None,
                max_restarts=0, max_concurrency=3).remote(group.name)  # 3: `move` and `progress` while `run` waits
        refs = {actors[g.name].where.remote(): g for g in groups}
        where: dict[str, dict] = {}
        deadline = started + timeout
        pending = list(refs)
        while pending and time.monotonic() < deadline:
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            for ref in done:
                where[refs[ref].name] = ray.get(ref)
        if pending:
            missing = [refs[r] for r in pending]
            first = missing[0]
            reason = "no node of the cluster has that much" if not _fits_somewhere(ray, first) else "the cluster is full"
            return _fail(f"no room on the Ray cluster for node(s) {', '.join(first.nodes)}, asking {first.asked()}, "
                         f"after {timeout:g} s ({reason}; the cluster has {_cluster_has(ray)})"
                         + (f"; {len(missing) - 1} more group(s) waiting" if len(missing) > 1 else ""))
        inventory = {name: info["address"] for name, info in where.items()}
        placement = {"machines": [g.name for g in groups], "nodes": {n: g.name for g in groups for n in g.nodes}}
        for _attempt in range(5):  # a base port whose tcp ports are free on every actor's node
            placement["base_port"] = _pick_base_port(spec)
            for node_id, group in placement["nodes"].items():
                spec.nodes[node_id].machine = group
            spec.machines, spec.base_port = placement["machines"], placement["base_port"]
            ports = tcp_ports(spec, placed=True)
            wanted: dict[str, list[int]] = {}
            for (node_id, _r), port in ports.items():
                wanted.setdefault(placement["nodes"][node_id], []).extend([port, port + 1])
            busy = ray.get([actors[g].busy_ports.remote(inventory[g], p) for g, p in wanted.items()])
            if not any(busy):
                break
        else:
            return _fail("could not find free tcp ports on the cluster's nodes after 5 tries")
        for group in groups:
            info = where[group.name]
            print(f"cluster: {', '.join(group.nodes)} on Ray node {info['address']} ({info['hostname']}, "
                  f"node {info['node_id'][:8]}), asking {group.asked()}", flush=True)
        public, secret = (k.decode() for k in zmq.curve_keypair())  # this run's keys: through Ray, never in the graph
        common = [graph_path]
        for override in args.overrides:
            common += ["--set", override]
        if args.allow_outside:
            common.append("--allow-outside")
        if args.max_frames:
            common += ["--max-frames", str(args.max_frames)]
        if args.duration is not None:
            common += ["--duration", str(args.duration)]
        placement["hosts"] = dict(inventory)

        def start(group: Group):
            flags = [f"--host={g}={a}" for g, a in inventory.items()]
            return actors[group.name].run.remote([*common, *flags, "--machine", group.name], cwd, placement, public, secret)

        runs = {start(g): g for g in groups}
        print(f"cluster: {len(groups)} group(s) started in {time.monotonic() - started:.1f} s, "
              f"tcp ports from {placement['base_port']}", flush=True)

        def replace(group: Group) -> str | None:
            """The group's Ray node is gone: a new actor where Ray has room, the same ports
            there, the other groups' links moved to it; None, or why it cannot be done."""
            lost = where[group.name]["address"]
            actors[group.name] = remote.options(num_cpus=group.num_cpus, num_gpus=group.num_gpus,
                                                resources=group.custom or None, max_restarts=0,
                                                max_concurrency=3).remote(group.name)
            ready, _ = ray.wait([ref := actors[group.name].where.remote()], timeout=timeout)
            if not ready:
                reason = "no live node has that much" if not _fits_somewhere(ray, group) else "the cluster is full"
                return (f"the Ray node at {lost} running {', '.join(group.nodes)} was lost and no Ray node took them "
                        f"within {timeout:g} s: they ask {group.asked()} ({reason}; the cluster has {_cluster_has(ray)})")
            where[group.name] = info = ray.get(ref)
            busy = ray.get(actors[group.name].busy_ports.remote(info["address"], wanted.get(group.name, [])))
            if busy:
                return (f"the Ray node at {lost} running {', '.join(group.nodes)} was lost, and on {info['address']}, "
                        f"where Ray put them again, tcp port(s) {busy} are taken")
            inventory[group.name] = info["address"]
            placement["hosts"] = dict(inventory)
            ray.get([actors[g.name].move.remote(dict(inventory)) for g in groups if g is not group])
            print(f"cluster: the Ray node at {lost} was lost; {', '.join(group.nodes)} now on Ray node {info['address']} "
                  f"({info['hostname']}, node {info['node_id'][:8]})", flush=True)
            return None

        return _wait(ray, runs, where, spec, args, started, start, replace, actors)
    finally:
        for actor in actors.values():
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _live_view(args):
    """A rich Live on stderr when it is a terminal and --no-live was not given; else None."""
    from .. import logs

    if args.no_live or logs.verbosity() < 0 or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.live import Live

    live = Live(console=Console(file=sys.stderr), auto_refresh=False)
    live.start()
    return live


def _progress(ray, actors: dict, groups: dict) -> dict:
    """Each group's metrics so far (None where an actor does not answer within 2 s)."""
    refs = {name: actors[name].progress.remote() for name in groups}
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
    got = {}
    for name, ref in refs.items():
        try:
            got[name] = ray.get(ref) if ref in ready else None
        except Exception:  # noqa: BLE001 - a lost actor: the run loop handles it
            got[name] = None
    return got


def _wait(ray, runs: dict, where: dict, spec: GraphSpec, args, started: float, start, replace, actors) -> int:
    """Every group's run to its end, a live table meanwhile (on a terminal), then the
    final table with the Ray node of each node, and the run's metrics file."""
    from .. import logs
    from .view import cluster_table, render_text

    groups = {g.name: list(g.nodes) for g in runs.values()}
    results: dict[str, dict] = {}
    live = _live_view(args)
    code = 1
    try:
        code = _collect(ray, runs, results, where, spec, start, replace, actors, groups, live, started)
    finally:
        final = None
        if code == 0 and len(results) == len(groups) and logs.verbosity() >= 0:
            final = cluster_table(spec.name, time.monotonic() - started, groups, where,
                                  {name: result.get("metrics") for name, result in results.items()})
        if live is not None:
            live.update(final if final is not None else "", refresh=True)  # the final table stays on screen
            live.stop()
        elif final is not None:
            print(render_text(final), end="", file=sys.stderr, flush=True)
    if args.metrics:
        _write_metrics(args.metrics, spec, results, where, groups)
    return code


def _collect(ray, runs, results, where, spec, start, replace, actors, groups, live, started) -> int:
    """Wait for every group's runner (a lost actor's group started again where Ray has
    room), printing each one's output as it ends; the first non-zero exit code, or 0."""
    from .view import cluster_table

    pending = list(runs)
    code = 0
    while pending:
        if live is not None:
            live.update(cluster_table(spec.name, time.monotonic() - started, groups, where,
                                      _progress(ray, actors, groups)), refresh=True)
        done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        for ref in done:
            group = runs[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError:
                why = replace(group)  # rescheduled: the new processes rejoin mid-stream (SYNC), as a restarted machine's
                if why:
                    print(f"error: {why}", file=sys.stderr, flush=True)
                    return 1
                fresh = start(group)
                runs[fresh] = group
                pending.append(fresh)
                continue
            results[group.name] = result
            lines = [f"[{group.name}] {line}" for line in result["output"].splitlines()] or [f"[{group.name}] (no output)"]
            if live is not None:  # above the live table
                live.console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
            else:
                print("\n".join(lines), flush=True)
            if result["code"] != 0 and code == 0:
                code = result["code"]
    return code


def _write_metrics(path: str, spec: GraphSpec, results: dict, where: dict, groups: dict) -> None:
    """One file for the whole run: every node's numbers with the Ray node and group that ran it."""
    nodes, seconds = {}, 0.0
    for name, result in results.items():
        metrics = result.get("metrics") or {}
        seconds = max(seconds, metrics.get("seconds", 0.0))
        for node_id, values in metrics.get("nodes", {}).items():
            nodes[node_id] = values | {"ray_node": where[name]["address"], "hostname": where[name]["hostname"],
                                       "group": name}
    doc = {"graph": spec.name, "seconds": seconds, "cluster": {
        name: {"ray_node": info["address"], "node_id": info["node_id"], "hostname": info["hostname"],
               "nodes": groups.get(name, [])}
        for name, info in where.items()}, "nodes": nodes}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2))
