"""The supervisor: start every node process, watch it, restart it, stop the graph.

It never touches frames. It hears each process over the control channel
(posegraph.control: ready, metrics, error, done), tells them when every node is open
(`go`) and what the whole graph is doing (the live table, once a second), restarts a
process that died (with back-off, up to the node's `max_restarts`), and stops the whole
graph with a one-line cause when it cannot go on. A graph never waits forever on a node
that is gone. What the terminal shows is posegraph.terminal's job; the node processes'
stderr (and, when it is the table's terminal, their stdout) comes to it through a pipe
per process, read in a thread of its own (posegraph.logs.WorkerOutput).

Ctrl-C and SIGTERM are this module's from the moment `run` starts until it returns: a
stop before every node is open kills the processes at once (there is nothing to drain),
a stop during the run drains, a second one stops at once, and one during the clean-up
only hurries it; each says one line, and the run folder and shared memory always go.
A runner killed with SIGKILL cannot clean up, so each run first removes the run folders
and pools of runners that are gone.
"""
from __future__ import annotations

import glob
import json
import logging
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

import networkx as nx
import zmq

from . import control, logs
from .config import Instance
from .logs import runner as log
from .metrics import NODE_FIELDS, summarise
from .plan import build_plan, new_run_id
from .shm import SHM_DIR
from .spec import GraphSpec
from .terminal import Terminal

PUBLISH_SOON = 4        # publishes a second at most, when nodes report new metrics
DRAIN_SECONDS = 3.5      # after Ctrl-C, sources stop and the graph drains for this long
KILL_WAIT_SECONDS = 1.0  # then whatever is left is killed; the total stays under 5 s
RUN_DIR_PREFIX = "pg-"
OWNER_FILE = "runner"    # in a run folder: "pid start-time" of the runner that made it


@dataclass
class Proc:
    """One node process and what the supervisor knows of it."""

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
    last_error: str | None = None
    identity: bytes | None = None  # its control-channel identity (this incarnation's)
    reports: dict = field(default_factory=dict)  # incarnation -> last metrics message

    @property
    def label(self) -> str:
        return f"node '{self.instance.node}'" + (f" replica {self.instance.replica}" if self.instance.config.replicas > 1 else "")

    @property
    def is_source(self) -> bool:
        return self.instance.config.is_source


class GraphFailed(Exception):
    """The graph cannot go on; str() is the one-line cause."""


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), or None when there is no such
    process: with the pid it names one process, even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _start_field(text: str) -> str | None:
    return None if text == "-" else text  # "-": the runner could not read its start time


def _owner_alive(pid: int, start: str | None) -> bool:
    """Whether the runner (pid, start time) still runs; without a start time, any process
    with that pid counts as it (so nothing of a live runner is ever removed)."""
    now = process_start(pid)
    return now is not None and (start is None or now == start)


def _run_dir_owner(path: str) -> tuple[int, str | None] | None:
    """(pid, start) of the runner that made the run folder `path`, or None when `path` is
    not recognisably one (then it is left alone)."""
    try:
        pid, start = Path(path, OWNER_FILE).read_text().split()
        return int(pid), _start_field(start)
    except (OSError, ValueError):
        pass
    for config in glob.glob(os.path.join(path, "*.json")):  # folders of runners before the owner file
        try:
            data = json.loads(Path(config).read_text())
            if data.get("run_dir") == path and data.get("run_id") and int(data["runner_pid"]) > 0:
                return int(data["runner_pid"]), None
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    return None


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
                 machine: str | None = None, inventory: dict[str, str] | None = None, keys=None,
                 verbosity: int | None = None, inventory_file: str | None = None):
        self.spec = spec
        # a JSON file whose "hosts" may change during the run (a cluster group rescheduled on
        # another node): watched once a second, and the links follow (posegraph.cluster)
        self.inventory_file, self.inventory_seen, self.next_move_check = inventory_file, None, 0.0
        self.machine = machine      # None: the whole graph on this computer
        self.inventory = inventory  # machine -> address, for a multi-machine run
        self.keys = keys
        self.max_frames = max_frames
        self.duration = duration
        self.metrics_path = metrics_path
        self.out = out
        self.terminal = Terminal(self, out, out.isatty() if live is None else live, verbosity)
        self.output = logs.WorkerOutput(self.terminal.worker_line)
        self.run_id = new_run_id()
        self.run_dir: str | None = None  # made in run(), once Ctrl-C is ours to handle
        self.procs: dict[tuple[str, int], Proc] = {}
        self.zctx: zmq.Context | None = None
        self.control: control.ControlServer | None = None
        self.stop_reason: str | None = None
        self.stop_started: float | None = None
        self.interrupts = 0
        self.said_interrupts = 0        # how many of them the terminal was told of
        self.started_at: float | None = None
        self.ready_at: float | None = None
        self.next_publish = 0.0
        self.last_publish = 0.0
        self.metrics_changed = False  # a node reported since the last publish

    # ----- processes -------------------------------------------------------------------
    def _spawn(self, proc: Proc) -> None:
        proc.ready = proc.done = proc.exited = False
        proc.identity = None
        name = proc.instance.name
        ends = [self.output.pipe(name, "stderr")]  # read by the runner: prefixed, filtered, above the table
        if self.terminal.captures_stdout:
            ends.append(self.output.pipe(name, "stdout"))
        try:
            # a process group of its own: a terminal's Ctrl-C reaches the runner only, which
            # stops the graph in order (a node still importing would die with a traceback)
            proc.popen = subprocess.Popen([sys.executable, "-m", "posegraph.worker", proc.config_path, str(proc.incarnation)],
                                          stdin=subprocess.DEVNULL, stderr=ends[0], stdout=ends[1] if len(ends) > 1 else None,
                                          process_group=0)
        finally:
            for end in ends:  # the process has its copies; the reader sees the end when it exits
                os.close(end)

    def _claim_run(self) -> None:
        """Make this run's folder and mark it and its pools as ours, after removing what
        runners that are gone left behind: a runner killed with SIGKILL cannot clean up after
        itself, so the next one on this computer does. Only runners whose process is gone
        (pid and start time) lose their things; a live runner's are never touched."""
        self._remove_leftovers()
        me = f"{os.getpid()} {process_start(os.getpid()) or '-'}"
        self.run_dir = tempfile.mkdtemp(prefix=RUN_DIR_PREFIX)
        Path(self.run_dir, OWNER_FILE).write_text(me + "\n")
        try:  # the pools' owner (its pid, as ever), and beside it "pid start run-folder"
            Path(SHM_DIR, f"pg-{self.run_id}.owner").write_text(str(os.getpid()))
            Path(SHM_DIR, f"pg-{self.run_id}.run").write_text(f"{me} {self.run_dir}\n")
        except OSError:
            pass

    @staticmethod
    def _remove_leftovers() -> None:
        if process_start(os.getpid()) is None:
            return  # no /proc: whether a runner is alive cannot be told, so nothing is removed
        for owner in glob.glob(os.path.join(SHM_DIR, "pg-*.owner")):
            try:
                pid = int(Path(owner).read_text())
            except (OSError, ValueError):
                continue
            run_id = os.path.basename(owner)[3:-len(".owner")]
            run = os.path.join(SHM_DIR, f"pg-{run_id}.run")
            start = run_dir = None
            try:  # "pid start run-folder" (runs of earlier versions have none)
                fields = Path(run).read_text().rstrip("\n").split(" ", 2)
                if int(fields[0]) == pid:
                    start, run_dir = _start_field(fields[1]), fields[2]
            except (OSError, ValueError, IndexError):
                pass
            if pid == os.getpid() or _owner_alive(pid, start):
                continue
            if run_dir and os.path.basename(run_dir).startswith(RUN_DIR_PREFIX) and _run_dir_owner(run_dir) == (pid, start):
                shutil.rmtree(run_dir, ignore_errors=True)
            for path in glob.glob(os.path.join(SHM_DIR, f"pg-{run_id}-*")) + [owner, run]:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        for run_dir in glob.glob(os.path.join(tempfile.gettempdir(), f"{RUN_DIR_PREFIX}*")):
            owner = _run_dir_owner(run_dir) if os.path.isdir(run_dir) and not os.path.islink(run_dir) else None
            if owner is not None and owner[0] != os.getpid() and not _owner_alive(*owner):
                shutil.rmtree(run_dir, ignore_errors=True)

    def _start_all(self) -> None:
        self._claim_run()
        address = f"ipc://{self.run_dir}/control"
        self.zctx = zmq.Context()
        self.control = control.ControlServer(self.zctx, address)
        instances = build_plan(self.spec, self.run_id, self.run_dir, address, self.max_frames,
                               self.inventory if self.machine else None, self.keys)
        if self.machine:
            instances = [i for i in instances if self.spec.nodes[i.node].machine == self.machine]
        base_dir = str(Path(self.spec.path).resolve().parent)
        # unique across runs, so the peers of a restarted machine see new incarnations and resend
        first_incarnation = secrets.randbelow(1 << 19) << 10
        order = {n: i for i, n in enumerate(self.spec.topological_order())}
        for inst in sorted(instances, key=lambda i: -order[i.node]):  # consumers first
            if self.stop_reason is not None:  # Ctrl-C while starting: start no more
                break
            inst.config.runner_pid, inst.config.base_dir = os.getpid(), base_dir
            path = os.path.join(self.run_dir, f"{inst.name}.json")
            inst.config.save(path)
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

    # ----- the control channel ------------------------------------------------------------
    def _on_control(self) -> None:
        for identity, msg in self.control.receive():
            try:
                proc = self.procs[msg["n"], msg["r"]]
                kind = msg["t"]
            except (KeyError, TypeError):
                continue  # not from one of our nodes
            if msg.get("i") != proc.incarnation:
                if kind == control.METRICS:
                    proc.reports[msg.get("i")] = msg
                continue
            proc.identity = identity
            if kind == control.READY:
                proc.ready = True
                if self.ready_at is not None:  # a process restarted after the start: it may go at once
                    self.control.send(identity, control.GO)
            elif kind == control.METRICS:
                proc.reports[proc.incarnation] = msg
                self.metrics_changed = True
            elif kind == control.DONE:
                proc.done = True
            elif kind == control.ERROR:
                self._on_error(proc, msg)

    def _on_error(self, proc: Proc, msg: dict) -> None:
        field = msg.get("field")
        where = proc.label + (f" field '{field}'" if field else "")
        if msg.get("phase") == "open":
            if msg.get("exc") == "NodeOpenError":  # the node's own precise message
                raise GraphFailed(f"{where}: {msg.get('msg')}")
            raise GraphFailed(f"{where}: open failed: {msg.get('exc')}: {msg.get('msg')}")
        proc.last_error = msg.get("msg")
        log.warning(f"warning: {where}: {msg.get('msg')}")

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
            self._restart_later(proc, proc.last_error or _describe_exit(code), now)

    def _restart_later(self, proc: Proc, cause: str, now: float) -> None:
        if proc.restart_policy == "never" or proc.restarts >= proc.max_restarts:
            used = "restart: never" if proc.restart_policy == "never" else f"its {proc.max_restarts} restarts are used up"
            raise GraphFailed(f"{proc.label} died ({cause}) and {used}; stopping the graph")
        proc.restarts += 1
        delay = 0.1 * 2 ** (proc.restarts - 1)
        proc.restart_at = now + delay
        proc.last_error = None
        log.warning(f"warning: {proc.label} died ({cause}); restarting ({proc.restarts}/{proc.max_restarts}) in {delay:.1f} s")

    # ----- metrics ---------------------------------------------------------------------------
    def local_nodes(self) -> list[str]:
        return [n for n, node in self.spec.nodes.items() if self.machine is None or node.machine == self.machine]

    def procs_of(self, node_id: str) -> list[Proc]:
        return [p for p in self.procs.values() if p.instance.node == node_id]

    def node_state(self, node_id: str) -> str:
        procs = self.procs_of(node_id)
        if all(p.done for p in procs):
            return "done"
        if any(p.restart_at for p in procs):
            return "restarting"
        return "running" if all(p.ready for p in procs) else "starting"

    def node_metrics(self) -> dict:
        """node id -> its row: every replica's latest report (and earlier incarnations') combined."""
        nodes = {}
        names = {str(sid): name for name, sid in self.spec.streams.items()}
        for node_id in self.local_nodes():
            procs = self.procs_of(node_id)
            reports = [dict(report, live=(inc == p.incarnation)) for p in procs for inc, report in p.reports.items()]
            nodes[node_id] = summarise(reports, sum(p.restarts for p in procs))
            nodes[node_id]["streams"] = {names.get(k, k): v for k, v in nodes[node_id]["streams"].items()}
        return nodes

    def progress_rows(self) -> list[tuple[str, int, int | None]]:
        """(instance, done, total) of every source that reports how far it is."""
        rows = []
        for proc in self.procs.values():
            report = proc.reports.get(proc.incarnation) or {}
            if report.get("progress"):
                done, total = report["progress"]
                rows.append((proc.instance.name, done, total))
        return rows

    def _publish(self) -> None:
        """The live table to every process (ctx.graph_metrics, e.g. the fps a `render` node
        draws) and to the terminal: once a second, and soon after nodes report (at most
        PUBLISH_SOON times a second), so that a node hears new numbers without waiting
        another second."""
        self.metrics_changed = False
        nodes = self.node_metrics()
        table = {"graph": self.spec.name, "machine": self.machine, "nodes": nodes,
                 "kinds": {n: self.spec.nodes[n].uses for n in nodes}}
        for proc in self.procs.values():
            if proc.identity is not None and not proc.exited:
                self.control.send(proc.identity, control.GRAPH, table=table)
        self.terminal.update(nodes)
        self.write_metrics()  # during the run too: a cluster actor's driver, or a user, reads it as it goes

    def write_metrics(self) -> None:
        if not self.metrics_path:
            return
        seconds = time.monotonic() - (self.ready_at or self.started_at or time.monotonic())
        nodes = self.node_metrics()
        doc = {"graph": self.spec.name, "seconds": round(seconds, 3), "machine": self.machine,
               "nodes": {n: {k: m[k] for k in NODE_FIELDS} | {"bad_messages": m["bad_messages"], "lost": m["lost"],
                                                               "counters": m["counters"], "streams": m["streams"],
                                                               "peers": m["peers"]}
                         | ({"status": m["status"]} if m["status"] else {})
                         for n, m in nodes.items()}}
        path = Path(self.metrics_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fresh.write_text(json.dumps(doc, indent=2))
        fresh.replace(path)  # whole: a reader never sees half a file

    # ----- the loop ------------------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_started = time.monotonic()
            self._signal([p for p in self.procs.values() if p.is_source], signal.SIGTERM)

    def _on_signal(self, signum, frame) -> None:
        """Only notes the signal (the loop acts on it and says so): it may come at any
        moment, in the middle of logging or of the clean-up."""
        self.interrupts += 1
        self.request_stop(signal.Signals(signum).name)

    def _say_interrupts(self) -> None:
        """One line per Ctrl-C / SIGTERM not yet told of."""
        while self.said_interrupts < self.interrupts:
            self.said_interrupts += 1
            if self.ready_at is None:
                if self.said_interrupts == 1:
                    log.warning(f"stopped ({self.stop_reason}) before the graph started")
            elif self.said_interrupts == 1:
                log.warning(f"stopping ({self.stop_reason}): the sources stop and the graph drains for at most "
                            f"{DRAIN_SECONDS:g} s; Ctrl-C again stops it at once")
            elif self.said_interrupts == 2:
                log.warning("stopping at once (interrupted again)")

    def _runner_line(self, line: str, level: int) -> None:
        """A line of the runner's own log: on the terminal (with -q, info lines only in the log file)."""
        if self.terminal.quiet and level < logging.WARNING:
            self.terminal.to_log_file(line)
        else:
            self.terminal.note(line)

    def run(self) -> int:
        """Run the graph to the end; return the process exit code."""
        handler = logs.setup(write=self._runner_line)
        # from here until the end, Ctrl-C / SIGTERM only ask for a stop: never an exception
        # in the middle of starting or cleaning up
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            self.terminal.start()
            try:
                try:
                    self._start_all()
                    self.terminal.show()
                    self._loop()
                    self._on_control()
                except GraphFailed as exc:
                    where = self.terminal.log_path
                    log.error(f"error: {exc}" + (f" (the nodes' output: {where})" if where else ""))
                    code = 1
                    self._signal(self.procs.values(), signal.SIGTERM)
                    time.sleep(0.2)
                    self._kill_all()
                finally:
                    try:
                        if self.procs:
                            self._kill_all()
                            self.write_metrics()
                        self.output.close()  # what the nodes said last comes before the final table
                        self.terminal.stop(ran=self.ready_at is not None, ok=code == 0)
                    finally:
                        self._cleanup()
                if code == 0:
                    self._report_drops()
                    code = self._check_losses()
            finally:
                self.terminal.finish(self.node_metrics() if self.procs else None)
        finally:
            for s, previous in old.items():
                signal.signal(s, previous)
            logs.remove(handler)
        return code

    def _lossless(self, node_id: str) -> bool:
        """Whether every queue on the way to `node_id` is `block` (drops are by design otherwise)."""
        nodes = nx.ancestors(self.spec.graph, node_id) | {node_id}
        return all(i.policy == "block" for n in nodes for i in self.spec.nodes[n].inputs.values())

    def _report_drops(self) -> None:
        """A line for every node whose `latest` queue dropped frames of a live source, so a
        run that skipped frames by design still says so at its end."""
        for node_id, m in self.node_metrics().items():
            if m["drops"]:
                log.warning(f"note: node '{node_id}' dropped {m['drops']} frame(s) of a live source to keep up "
                            f"(a `latest` queue); what comes after it lacks them")

    def _check_losses(self) -> int:
        """A warning line for every lossless node that lost frames, and exit code 1 then:
        a run whose outputs lack frames must not look like a clean one."""
        code = 0
        for node_id, m in self.node_metrics().items():
            if m["lost"] and self._lossless(node_id):
                log.warning(f"warning: node '{node_id}' lost {m['lost']} frame(s): its output lacks them "
                            f"(see its warnings above); exit code 1")
                code = 1
        return code

    def _loop(self) -> None:
        """Until every process has exited for good, or the stop drained (or timed out)."""
        while True:
            self._say_interrupts()
            if self.stop_reason is not None and self.ready_at is None:
                self._kill_all()  # not every node is open yet: nothing ran, nothing to drain
                return
            if self.control.poll(100):
                self._on_control()
            self._check_processes()
            now = time.monotonic()
            if self.ready_at is None and all(p.ready for p in self.procs.values()):
                self._go(now)
            if all(p.exited and p.restart_at is None for p in self.procs.values()):
                return
            if self.duration is not None and self.ready_at and now - self.ready_at >= self.duration:
                self.request_stop("duration")
            if self.stop_reason is not None and (self.interrupts > 1 or now - self.stop_started > DRAIN_SECONDS):
                self._stop_by_force()
                return
            if self.inventory_file and now >= self.next_move_check:  # its own clock: publishing soon keeps moving next_publish
                self.next_move_check = now + 1.0
                self._follow_moves()
            if now >= self.next_publish or (self.metrics_changed and now >= self.last_publish + 1.0 / PUBLISH_SOON):
                self._publish()
                self.last_publish = now
                self.next_publish = now + 1.0

    def _follow_moves(self) -> None:
        """Machines now at another address: tell every live process to reconnect its links
        there, and rewrite the processes' configurations so that a restart uses it too."""
        try:
            stat = os.stat(self.inventory_file)
            if (stat.st_mtime_ns, stat.st_size) == self.inventory_seen:
                return
            self.inventory_seen = (stat.st_mtime_ns, stat.st_size)
            hosts = json.loads(Path(self.inventory_file).read_text()).get("hosts") or {}
        except (OSError, ValueError):
            return
        moves = {m: a for m, a in hosts.items() if self.inventory and m in self.inventory and self.inventory[m] != a
                 and m != self.machine}
        if not moves:
            return
        for machine, new in moves.items():
            old = self.inventory[machine]
            self.terminal.say(f"machine '{machine}' moved from {old} to {new}: links follow")
            for proc in self.procs.values():
                if proc.identity is not None and not proc.exited:
                    self.control.send(proc.identity, control.MOVE, old=old, new=new, machine=machine)
            self.inventory[machine] = new
        plan = {(i.node, i.replica): i.config for i in build_plan(
            self.spec, self.run_id, self.run_dir, f"ipc://{self.run_dir}/control", self.max_frames, self.inventory, self.keys)}
        for key, proc in self.procs.items():
            fresh = plan[key]
            proc.instance.config.inputs, proc.instance.config.outputs = fresh.inputs, fresh.outputs
            proc.instance.config.save(proc.config_path)

    def _go(self, now: float) -> None:
        """Every node is open: sources may start."""
        self.ready_at = now
        for proc in self.procs.values():
            if proc.identity is not None:
                self.control.send(proc.identity, control.GO)
        if self.terminal.live is None:
            where = f" on machine '{self.machine}'" if self.machine else ""
            log.info(f"graph '{self.spec.name}' running{where}: {len(self.procs)} processes")

    def _stop_by_force(self) -> None:
        """The drain took too long (or Ctrl-C came twice): SIGTERM everyone, then SIGKILL."""
        self._say_interrupts()
        self._signal(self.procs.values(), signal.SIGTERM)
        deadline = time.monotonic() + KILL_WAIT_SECONDS
        while time.monotonic() < deadline and any(p.popen.poll() is None for p in self.procs.values()):
            time.sleep(0.02)
        self._kill_all()

    def _cleanup(self) -> None:
        if self.control is not None:
            self.control.close()
        if self.zctx is not None:
            self.zctx.destroy(linger=0)
        for path in glob.glob(os.path.join(SHM_DIR, f"pg-{self.run_id}-*")) + [os.path.join(SHM_DIR, f"pg-{self.run_id}.{end}")
                                                                               for end in ("owner", "run")]:
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def run_graph(spec: GraphSpec, **options) -> int:
    return Supervisor(spec, **options).run()
