"""The supervisor: start every node process, watch it, restart it, stop the graph.

It never touches frames. It listens on one control socket for each process's ready,
metrics, error and done messages, restarts a process that died (with back-off, up to the
node's `max_restarts`), and stops the whole graph with a one-line cause when it cannot go
on. A graph never waits forever on a node that is gone.
"""
from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import zmq

from .metrics import NODE_FIELDS, summarise
from .plan import Instance, build_plan, new_run_id
from .shm import SHM_DIR
from .spec import GraphSpec

DRAIN_SECONDS = 3.5      # after Ctrl-C, sources stop and the graph drains for this long
KILL_WAIT_SECONDS = 1.0  # then whatever is left is killed; the total stays under 5 s


@dataclass
class Proc:
    instance: Instance
    config_path: str
    max_restarts: int
    restart_policy: str
    popen: subprocess.Popen | None = None
    incarnation: int = 0
    restarts: int = 0
    ready: bool = False
    done: bool = False
    exited: bool = False
    restart_at: float | None = None
    reports: dict = field(default_factory=dict)  # incarnation -> last metrics message

    @property
    def label(self) -> str:
        return f"node '{self.instance.node}'" + (f" replica {self.instance.replica}" if self.instance.config["replicas"] > 1 else "")


class GraphFailed(Exception):
    """The graph cannot go on; str() is the one-line cause."""


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(self, spec: GraphSpec, max_frames: int = 0, duration: float | None = None,
                 metrics_path: str | None = None, live: bool | None = None, out=sys.stderr,
                 machine: str | None = None, inventory: dict[str, str] | None = None, keys=None):
        self.spec = spec
        self.machine = machine      # None: the whole graph on this computer
        self.inventory = inventory  # machine -> address, for a multi-machine run
        self.keys = keys
        self.max_frames = max_frames
        self.duration = duration
        self.metrics_path = metrics_path
        self.out = out
        self.live = out.isatty() if live is None else live
        self.run_id = new_run_id()
        self.run_dir = tempfile.mkdtemp(prefix="pg-")
        self.stop_reason: str | None = None
        self.stop_started: float | None = None
        self.interrupts = 0
        self.started_at = None
        self.ready_at = None

    # ----- processes -------------------------------------------------------------------
    def _spawn(self, proc: Proc) -> None:
        proc.ready = proc.done = proc.exited = False
        proc.popen = subprocess.Popen([sys.executable, "-m", "posegraph.worker", proc.config_path, str(proc.incarnation)],
                                      stdin=subprocess.DEVNULL)

    def _claim_shared_memory(self) -> None:
        """Mark this run's pools as ours (a pid file), and remove the pools of earlier runs
        whose runner is gone: a runner killed with SIGKILL (a machine restarted) cannot
        clean up after itself, so the next one on this computer does."""
        for owner in glob.glob(os.path.join(SHM_DIR, "pg-*.owner")):
            try:
                pid = int(Path(owner).read_text())
            except (OSError, ValueError):
                continue
            if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
                run_id = os.path.basename(owner)[3:-len(".owner")]
                for path in glob.glob(os.path.join(SHM_DIR, f"pg-{run_id}-*")) + [owner]:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        try:
            Path(SHM_DIR, f"pg-{self.run_id}.owner").write_text(str(os.getpid()))
        except OSError:
            pass

    def _start_all(self) -> None:
        self._claim_shared_memory()
        control = f"ipc://{self.run_dir}/control"
        self.zctx = zmq.Context()
        self.control = self.zctx.socket(zmq.PULL)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.bind(control)
        instances = build_plan(self.spec, self.run_id, self.run_dir, control, self.max_frames,
                               self.inventory if self.machine else None, self.keys)
        if self.machine:
            instances = [i for i in instances if self.spec.nodes[i.node].machine == self.machine]
        base_dir = str(Path(self.spec.path).resolve().parent)
        self.procs: dict[tuple[str, int], Proc] = {}
        # unique across runs, so the peers of a restarted machine see new incarnations and resend
        first_incarnation = secrets.randbelow(1 << 19) << 10
        order = {n: i for i, n in enumerate(self.spec.topological_order())}
        for inst in sorted(instances, key=lambda i: -order[i.node]):  # consumers first
            inst.config.update(runner_pid=os.getpid(), base_dir=base_dir)
            path = os.path.join(self.run_dir, f"{inst.name}.json")
            Path(path).write_text(json.dumps(inst.config))
            node = self.spec.nodes[inst.node]
            proc = Proc(inst, path, node.max_restarts, node.restart, incarnation=first_incarnation)
            self.procs[inst.node, inst.replica] = proc
            self._spawn(proc)
        self.started_at = time.monotonic()

    def _signal(self, procs, sig) -> None:
        for proc in procs:
            if proc.popen and proc.popen.poll() is None:
                try:
                    proc.popen.send_signal(sig)
                except ProcessLookupError:
                    pass

    def _kill_all(self) -> None:
        self._signal(self.procs.values(), signal.SIGKILL)
        for proc in self.procs.values():
            if proc.popen:
                try:
                    proc.popen.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass

    # ----- control messages ----------------------------------------------------------------
    def _on_control(self) -> None:
        while True:
            try:
                raw = self.control.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = msgpack.unpackb(raw, raw=False, max_bin_len=0, max_ext_len=0)
                proc = self.procs[msg["n"], msg["r"]]
                kind = msg["t"]
            except Exception:
                continue  # not from one of our nodes
            if msg.get("i") != proc.incarnation:
                if kind == "metrics":
                    proc.reports[msg.get("i")] = msg
                continue
            if kind == "ready":
                proc.ready = True
            elif kind == "metrics":
                proc.reports[proc.incarnation] = msg
            elif kind == "done":
                proc.done = True
            elif kind == "error":
                field = msg.get("field")
                where = proc.label + (f" field '{field}'" if field else "")
                if msg.get("phase") == "open":
                    if msg.get("exc") == "NodeOpenError":  # the node's own precise message
                        raise GraphFailed(f"{where}: {msg.get('msg')}")
                    raise GraphFailed(f"{where}: open failed: {msg.get('exc')}: {msg.get('msg')}")
                proc.last_error = msg.get("msg")
                print(f"warning: {where}: {msg.get('msg')}", file=self.out, flush=True)

    def _check_processes(self) -> None:
        now = time.monotonic()
        for proc in self.procs.values():
            if proc.restart_at is not None:
                if now >= proc.restart_at:
                    proc.restart_at = None
                    proc.incarnation += 1
                    self._spawn(proc)
                continue
            if proc.exited or proc.popen is None:
                continue
            code = proc.popen.poll()
            if code is None:
                continue
            proc.exited = True
            if proc.done and code == 0 or self.stop_reason is not None:
                continue
            cause = getattr(proc, "last_error", None) or _describe_exit(code)
            if proc.restart_policy == "never" or proc.restarts >= proc.max_restarts:
                used = "restart: never" if proc.restart_policy == "never" else f"its {proc.max_restarts} restarts are used up"
                raise GraphFailed(f"{proc.label} died ({cause}) and {used}; stopping the graph")
            proc.restarts += 1
            delay = 0.1 * 2 ** (proc.restarts - 1)
            proc.restart_at = now + delay
            proc.last_error = None
            print(f"warning: {proc.label} died ({cause}); restarting ({proc.restarts}/{proc.max_restarts}) in {delay:.1f} s",
                  file=self.out, flush=True)

    # ----- metrics ---------------------------------------------------------------------------
    def local_nodes(self) -> list[str]:
        return [n for n, node in self.spec.nodes.items() if self.machine is None or node.machine == self.machine]

    def stream_names(self) -> dict[str, str]:
        return {str(sid): name for name, sid in self.spec.streams.items()}

    def node_metrics(self) -> dict:
        nodes = {}
        names = self.stream_names()
        for node_id in self.local_nodes():
            procs = [p for p in self.procs.values() if p.instance.node == node_id]
            reports = []
            for p in procs:
                for inc, report in p.reports.items():
                    reports.append(dict(report, live=(inc == p.incarnation)))
            nodes[node_id] = summarise(reports, sum(p.restarts for p in procs))
            nodes[node_id]["streams"] = {names.get(k, k): v for k, v in nodes[node_id]["streams"].items()}
        return nodes

    def _table(self):
        from rich.table import Table

        elapsed = time.monotonic() - (self.ready_at or self.started_at)
        where = f"  machine {self.machine}" if self.machine else ""
        table = Table(title=f"{self.spec.name}{where}  {elapsed:.0f} s   (ms: p50/p95; latency since capture; MB resident)",
                      title_justify="left")
        for col in ("node", "kind", "x", "in", "out", "fps", "proc ms", "latency ms", "drops", "restarts", "MB", "state"):
            table.add_column(col, justify="left" if col in ("node", "kind", "state") else "right")

        def ms(a, b):
            return "-" if a is None else f"{a:.1f}/{b:.1f}"

        metrics = self.node_metrics()
        multi = len(self.spec.streams) > 1
        if multi:
            table.add_column("frames per stream", justify="left")
        for node_id, m in metrics.items():
            procs = [p for p in self.procs.values() if p.instance.node == node_id]
            state = "done" if all(p.done for p in procs) else "restarting" if any(p.restart_at for p in procs) else \
                "running" if all(p.ready for p in procs) else "starting"
            running = any(not p.exited for p in procs)
            table.add_row(node_id, self.spec.nodes[node_id].uses, str(len(procs)), str(m["frames_in"]), str(m["frames_out"]),
                          f"{m['fps_now'] if running else m['fps']:.1f}", ms(m["proc_ms_p50"], m["proc_ms_p95"]), ms(m["latency_ms_p50"], m["latency_ms_p95"]),
                          str(m["drops"]), str(m["restarts"]), f"{m['rss_mb']:.0f}", state,
                          *([" ".join(f"{k} {v}" for k, v in sorted(m["streams"].items()))] if multi else []))
        peers = self.peer_states(metrics)
        if not peers:
            return table
        from rich.console import Group

        peer_table = Table(title="peers on other machines", title_justify="left")
        for col in ("node", "peer", "state"):
            peer_table.add_column(col)
        for (node_id, peer), state in sorted(peers.items()):
            peer_table.add_row(node_id, peer, state)
        return Group(table, peer_table)

    def peer_states(self, metrics: dict | None = None) -> dict[tuple[str, str], str]:
        """(local node, "machine: remote node") -> its connection state, from the nodes' monitors."""
        metrics = metrics if metrics is not None else self.node_metrics()
        return {(n, peer): state for n, m in metrics.items() for peer, state in m["peers"].items()}

    def _announce_peers(self) -> None:
        """Without a live table, print each change of a peer's connection state once."""
        seen = getattr(self, "_peer_seen", {})
        for (node_id, peer), state in self.peer_states().items():
            if seen.get((node_id, peer)) != state:
                print(f"peer: {node_id} -> {peer}: {state}", file=self.out, flush=True)
                seen[node_id, peer] = state
        self._peer_seen = seen

    def _progress(self) -> list[tuple[str, int, int | None]]:
        rows = []
        for proc in self.procs.values():
            report = proc.reports.get(proc.incarnation) or {}
            if report.get("progress"):
                done, total = report["progress"]
                rows.append((proc.instance.name, done, total))
        return rows

    def _publish(self, live) -> None:
        """Once a second: the live view, progress lines without one, fps for overlays."""
        nodes = self.node_metrics()
        tmp = Path(self.run_dir, "fps.json.tmp")
        tmp.write_text(json.dumps({n: m["fps"] for n, m in nodes.items()}))  # steadier than the last second
        tmp.replace(Path(self.run_dir, "fps.json"))
        tmp = Path(self.run_dir, "metrics.live.json.tmp")  # the whole table, for nodes that show it (web)
        tmp.write_text(json.dumps({"graph": self.spec.name, "machine": self.machine, "nodes": nodes,
                                   "kinds": {n: self.spec.nodes[n].uses for n in nodes}}))
        tmp.replace(Path(self.run_dir, "metrics.live.json"))
        progress = self._progress()
        if live is not None:
            from rich.console import Group
            from rich.progress_bar import ProgressBar
            from rich.table import Table

            bars = Table.grid(padding=(0, 1))
            for name, done, total in progress:
                bars.add_row(name, ProgressBar(total=total or None, completed=done, width=40),
                             f"{done}/{total}" if total else f"{done}")
            live.update(Group(self._table(), bars) if progress else self._table())
        else:
            self._announce_peers()
        if live is None and progress and time.monotonic() >= getattr(self, "_next_progress_line", 0.0):
            self._next_progress_line = time.monotonic() + 5.0
            text = ", ".join(f"{n} {d}/{t} frames" if t else f"{n} {d} frames" for n, d, t in progress)
            print(f"progress: {text}", file=self.out, flush=True)

    def write_metrics(self) -> None:
        if not self.metrics_path:
            return
        seconds = time.monotonic() - (self.ready_at or self.started_at or time.monotonic())
        nodes = self.node_metrics()
        doc = {"graph": self.spec.name, "seconds": round(seconds, 3),
               "machine": self.machine,
               "nodes": {n: {k: m[k] for k in NODE_FIELDS} | {"bad_messages": m["bad_messages"], "lost": m["lost"], "counters": m["counters"],
                                                               "streams": m["streams"], "peers": m["peers"]}
                         for n, m in nodes.items()}}
        Path(self.metrics_path).parent.mkdir(parents=True, exist_ok=True)
        Path(self.metrics_path).write_text(json.dumps(doc, indent=2))

    # ----- the loop ------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_started = time.monotonic()
            self._signal([p for p in self.procs.values() if p.instance.config["is_source"]], signal.SIGTERM)

    def _on_signal(self, signum, frame) -> None:
        self.interrupts += 1
        self.request_stop(signal.Signals(signum).name)

    def run(self) -> int:
        """Run the graph to the end; return the process exit code."""
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        live = None
        code = 0
        try:
            self._start_all()
            if self.live:
                from rich.console import Console
                from rich.live import Live

                live = Live(self._table(), console=Console(file=self.out), refresh_per_second=1, transient=False)
                live.start()
            next_table = 0.0
            while True:
                if self.control.poll(100):
                    self._on_control()
                self._check_processes()
                now = time.monotonic()
                if self.ready_at is None and all(p.ready for p in self.procs.values()):
                    self.ready_at = now
                    Path(self.run_dir, "go").touch()  # sources start only once every node is open
                    if not self.live:
                        where = f" on machine '{self.machine}'" if self.machine else ""
                        print(f"graph '{self.spec.name}' running{where}: {len(self.procs)} processes", file=self.out, flush=True)
                if all(p.exited and p.restart_at is None for p in self.procs.values()):
                    break
                if self.duration is not None and self.ready_at and now - self.ready_at >= self.duration:
                    self.request_stop("duration")
                if self.stop_reason is not None and (self.interrupts > 1 or now - self.stop_started > DRAIN_SECONDS):
                    self._signal(self.procs.values(), signal.SIGTERM)
                    deadline = time.monotonic() + KILL_WAIT_SECONDS
                    while time.monotonic() < deadline and any(p.popen.poll() is None for p in self.procs.values()):
                        time.sleep(0.02)
                    self._kill_all()
                    break
                if now >= next_table:
                    self._publish(live)
                    next_table = now + 1.0
            self._on_control()
        except GraphFailed as exc:
            print(f"error: {exc}", file=self.out, flush=True)
            code = 1
            self._signal(self.procs.values(), signal.SIGTERM)
            time.sleep(0.2)
            self._kill_all()
        finally:
            if live is not None:
                live.update(self._table())
                live.stop()
            for s, handler in old.items():
                signal.signal(s, handler)
            if getattr(self, "procs", None):
                self._kill_all()
                self.write_metrics()
            self._cleanup()
        if code == 0 and not self.live:
            from rich.console import Console

            Console(file=self.out, width=160).print(self._table())
        return code

    def _cleanup(self) -> None:
        if getattr(self, "zctx", None):
            self.zctx.destroy(linger=0)
        for path in glob.glob(os.path.join(SHM_DIR, f"pg-{self.run_id}-*")) + [os.path.join(SHM_DIR, f"pg-{self.run_id}.owner")]:
            try:
                os.unlink(path)
            except OSError:
                pass
        shutil.rmtree(self.run_dir, ignore_errors=True)


def run_graph(spec: GraphSpec, **options) -> int:
    return Supervisor(spec, **options).run()
