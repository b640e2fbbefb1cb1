"""What node code may ask of the engine while it runs: the `ctx` of `open` and `process`.

One class for every place a node runs: a node process of a graph, and the in-process
harness of posegraph.testing. What differs between them (where a frame buffer comes from,
where progress and the graph's live metrics go) is behind a small `services` object.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np


class Services(Protocol):
    """What a Context needs from whoever runs the node."""

    def alloc(self, port: str, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray: ...

    def set_progress(self, done: int, total: int | None) -> None: ...

    def graph_metrics(self) -> dict: ...


class Context:
    """The engine as node code sees it. Per packet: `stream`, `seq`, `capture_ns`, and for
    a kind with keyed state `state` and `key` (see posegraph.node.Node)."""

    def __init__(self, node_id: str, services: Services, replica: int = 0, replicas: int = 1, stream: int = 0,
                 stream_names: dict[int, str] | None = None, wired_inputs=(), graph_file: str = ""):
        self._services = services
        self.node_id = node_id
        self.replica = replica
        self.replicas = replicas
        self.stream = stream
        # stream id -> name of the source node that starts it, for every stream reaching this node
        self.stream_names = dict(stream_names or {})
        self.seq = 0
        self.capture_ns = 0
        self.resume_seq = 0
        self.state: Any = None
        # a source sets this in `open` when its frames come in real time (a camera, a
        # stream, a file paced at its fps): then a `latest` queue downstream drops stale
        # frames. Otherwise (the default) every frame is kept, whatever the queue policy.
        self.live = False
        self.key: tuple[int, int] | None = None
        self.counters: dict[str, int] = {}
        self.status_text = ""  # what `status` last said
        self.wired_inputs = frozenset(wired_inputs)  # for kinds whose inputs are optional
        self.graph_file = graph_file  # the graph's YAML file (e.g. to draw the graph)
        self.logger = logging.getLogger(f"posegraph.node.{node_id}.{replica}")
        self._said: set[str] = set()

    @property
    def stream_name(self) -> str:
        """Name of the current packet's stream: the id of the source node that made it."""
        return self.stream_names.get(self.stream, str(self.stream))

    @property
    def multi_stream(self) -> bool:
        """True when packets of more than one stream reach this node (sinks then write one output each)."""
        return len(self.stream_names) > 1

    def alloc(self, port: str, shape, dtype=np.uint8, name: str = "") -> np.ndarray:
        """A writable array for an output, backed by shared memory when consumers share it.

        Returning it from `process` sends a slot reference instead of copying the frame.
        """
        return self._services.alloc(port, name, tuple(int(d) for d in shape), np.dtype(dtype))

    def progress(self, done: int, total: int | None) -> None:
        """Report how far a finite source is (frames done / total): the runner shows a bar."""
        self._services.set_progress(int(done), int(total) if total else None)

    def graph_metrics(self) -> dict:
        """The runner's live table as data, refreshed once a second:
        {"graph", "machine", "nodes": {id: {fps, frames_in, proc_ms_p50, ...}}, "kinds": {id: kind}}."""
        return self._services.graph_metrics()

    def graph_fps(self) -> dict[str, float]:
        """Frames per second of every node in the graph, as the runner last saw them (for overlays)."""
        return {node: row.get("fps", 0.0) for node, row in (self.graph_metrics().get("nodes") or {}).items()}

    def count(self, name: str, n: int = 1) -> None:
        """Add to a named counter shown in the metrics (e.g. frames without a person)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def status(self, text: str) -> None:
        """A short free-text state of this node for the runner's live table (its `status`
        column, and a line at the end of the run): the answer as it forms, say
        ("squat, 2 reps"). Sent with the metrics once a second; the last one said stands."""
        self.status_text = " ".join(str(text).split())[:200]

    def log(self, message: str, level: int = logging.INFO) -> None:
        """A line on the runner's terminal, prefixed with this node's name."""
        self.logger.log(level, message)

    def warn_once(self, counter: str, message: str) -> None:
        """Count `counter` every time; say `message` the first time only (e.g. a person
        whose keypoints a feature cannot use)."""
        self.count(counter)
        if message not in self._said:
            self._said.add(message)
            self.log(f"warning: {message} (reported once; counted as {counter!r})", logging.WARNING)
