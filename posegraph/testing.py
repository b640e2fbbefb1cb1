"""One official way to run node kinds and graphs in tests (as MediaPipe's CalculatorRunner).

`NodeHarness` runs one kind in this process on packets you give it, with the engine's real
`Context` and keyed state (posegraph.keyed), so a test sees what a node process would: the
same params checking and defaults, the same per-stream and per-key state, the same checks
of what `process` returns. `GraphRun` starts a real runner on a graph file, each node in its
own process, for tests end to end.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .context import Context
from .keyed import KeyedState
from .kinds import resolve_kind
from .node import EndOfStream, Node, resolve_params


class LocalServices:
    """A Context's services for a node run in this process: plain arrays, progress kept."""

    def __init__(self):
        self.progress: tuple[int, int | None] | None = None
        self.metrics: dict = {}

    def alloc(self, port: str, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def set_progress(self, done: int, total: int | None) -> None:
        self.progress = (done, total)

    def graph_metrics(self) -> dict:
        return self.metrics


class _Collect(logging.Handler):
    def __init__(self, into: list[str]):
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class NodeHarness:
    """One node of a kind, opened in this process.

        with NodeHarness("smooth", {"window": 5}) as node:
            out = node.process({"votes": {"votes": {"a": 10}}})

    `kind` is a Node subclass or the name of an installed kind; `params` are checked and
    completed with defaults as a graph file's would be. `process` takes {port: value} and
    returns {port: value}; `stream` and `seq` (the next one of that stream by default)
    describe the packet. `logs` holds what the node said, `counters` what it counted.
    """

    def __init__(self, kind: type[Node] | str, params: dict[str, Any] | None = None, *, node_id: str | None = None,
                 stream_names: dict[int, str] | None = None, wired_inputs=None, graph_file: str = "", base_dir: str = "."):
        self.kind = resolve_kind(kind, Path(base_dir)) if isinstance(kind, str) else kind
        self.params = resolve_params(self.kind, dict(params or {}))
        self.node = self.kind(dict(self.params))
        self.services = LocalServices()
        self.ctx = Context(node_id or (kind if isinstance(kind, str) else self.kind.__name__.lower()), self.services,
                           stream_names=stream_names, graph_file=graph_file,
                           wired_inputs=self.kind.INPUTS if wired_inputs is None else wired_inputs)
        self.keyed = KeyedState(self.node)
        self.logs: list[str] = []
        self._handler = _Collect(self.logs)
        self.ctx.logger.addHandler(self._handler)
        self.ctx.logger.setLevel(logging.INFO)  # `logs` holds what a node process would print
        self._next_seq: dict[int, int] = {}
        self.opened = False

    @property
    def counters(self) -> dict[str, int]:
        return self.ctx.counters

    def open(self) -> "NodeHarness":
        self.node.open(self.ctx)
        self.opened = True
        return self

    def process(self, inputs: dict[str, Any] | None = None, *, stream: int = 0, seq: int | None = None,
                capture_ns: int = 0) -> dict[str, Any]:
        """One packet through the node; its outputs ({} when it has none)."""
        if not self.opened:
            self.open()
        seq = self._next_seq.get(stream, 0) if seq is None else seq
        self._next_seq[stream] = seq + 1
        ctx = self.ctx
        ctx.stream, ctx.seq, ctx.capture_ns = stream, seq, capture_ns
        results = self.keyed.call(dict(inputs or {}), ctx)
        unknown = sorted(set(results) - set(self.kind.OUTPUTS))
        if unknown:
            raise ValueError(f"process returned undeclared output port(s) {unknown}; OUTPUTS declares {sorted(self.kind.OUTPUTS)}")
        return results

    def run(self, packets: list[dict[str, Any]], stream: int = 0) -> list[dict[str, Any]]:
        """Every packet of one stream in order; the outputs of each."""
        return [self.process(inputs, stream=stream) for inputs in packets]

    def source(self, max_frames: int | None = None, stream: int = 0) -> list[dict[str, Any]]:
        """A source's packets until it raises EndOfStream (or max_frames)."""
        out = []
        while max_frames is None or len(out) < max_frames:
            try:
                out.append(self.process({}, stream=stream))
            except EndOfStream:
                break
        return out

    def end_stream(self, stream: int = 0) -> None:
        """The stream ended: its keyed states are retired, as in a graph."""
        self.keyed.end_stream(stream)

    def close(self) -> None:
        try:
            self.keyed.close()
        finally:
            self.node.close()
            self.ctx.logger.removeHandler(self._handler)

    def __enter__(self) -> "NodeHarness":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def run_node(kind: type[Node] | str, packets: list[dict[str, Any]], params: dict[str, Any] | None = None,
             **options) -> list[dict[str, Any]]:
    """Open a node, feed it one stream of packets, end the stream, close it; its outputs."""
    with NodeHarness(kind, params, **options) as node:
        outputs = node.run(packets)
        node.end_stream(0)
    return outputs


class GraphRun:
    """A real runner started on a graph file (each node its own process), with its metrics
    and JSON-lines records at hand. Stop it with `kill()`; `wait()` returns its exit code."""

    def __init__(self, graph: str | Path, args=(), directory: str | Path | None = None, cwd: str | Path | None = None):
        self.graph = Path(graph)
        self.dir = Path(directory) if directory is not None else self.graph.parent
        self.metrics_path = self.dir / "metrics.json"
        command = [sys.executable, "-m", "posegraph", str(self.graph), "--metrics", str(self.metrics_path), "--no-live", *args]
        self.proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = self.stderr = ""

    def wait(self, timeout: float = 60) -> int:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    @property
    def metrics(self) -> dict:
        return json.loads(self.metrics_path.read_text())

    def records(self, name: str = "sink.jsonl") -> list[dict]:
        """The JSON lines written so far to `name` in the run's folder: only whole lines,
        as the one a sink is writing now has no newline yet."""
        path = self.dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]

    def wait_for_records(self, count: int, name: str = "sink.jsonl", timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.records(name)) >= count:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited early: {self.proc.stderr.read()}")
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} records after {timeout} s")

    def workers(self) -> dict[int, Path]:
        """pid -> config file of every node process of this runner still alive."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
            if ppid == self.proc.pid and b"posegraph.worker" in cmd:
                found[int(entry.name)] = Path(cmd[cmd.index(b"posegraph.worker") + 1].decode())
        return found

    def worker_pid(self, instance: str) -> tuple[int, Path]:
        """pid and config file of the node process `instance` ("node.replica")."""
        for pid, config in self.workers().items():
            if config.name == f"{instance}.json":
                return pid, config
        raise AssertionError(f"no process for {instance}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
