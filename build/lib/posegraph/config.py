"""What the plan hands a node process: typed, and written as JSON beside the run.

The plan (posegraph.plan) fills these; the supervisor writes one `InstanceConfig` per
process into the run folder; the worker reads it back (`InstanceConfig.load`) and the
runtime reads fields, never string keys.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class InLinkConfig:
    """One input link: (producer port -> this instance's input port), all producer replicas."""

    link: int
    port: str                # this node's input port
    producer: str            # producer node id
    producer_port: str
    producers: list[str]     # back-channel address of each producer replica
    policy: str              # "block" or "latest"
    size: int
    shm: bool                # same machine, both on ipc: slot references are allowed
    producer_route: str      # "stream": the producer's replicas own whole streams; "seq": every k-th seq
    machine: str | None = None
    server_key: str | None = None  # CURVE public key of the producer's machine

    def producer_of(self, stream: int, seq: int) -> int:
        """Which producer replica sends (stream, seq) on this link."""
        return (stream if self.producer_route == "stream" else seq) % len(self.producers)


@dataclass
class OutLinkConfig:
    """One output link: (this node's output port -> one consumer replica's input port)."""

    link: int
    port: str                # this node's output port
    consumer: str            # consumer instance, "node.replica"
    consumer_port: str
    replica: int
    replicas: int
    inbox: str               # the consumer replica's inbox address
    route: str               # "stream" (a stateful consumer) or "seq"
    policy: str
    size: int
    shm: bool
    machine: str | None = None
    server_key: str | None = None

    def carries(self, stream: int, seq: int) -> bool:
        """Whether (stream, seq) goes to this link's consumer replica."""
        if self.replicas == 1:
            return True
        return (stream if self.route == "stream" else seq) % self.replicas == self.replica


@dataclass
class InstanceConfig:
    """Everything one node process needs: who it is, its params, its sockets and links."""

    run_id: str
    run_dir: str
    control: str             # the supervisor's control socket
    graph: str               # the graph file
    node: str
    uses: str
    params: dict[str, Any]
    replica: int
    replicas: int
    route: str               # how packets reach this node's replicas: "stream" or "seq"
    is_source: bool
    stream: int              # a source's stream id
    streams: list[int]       # every stream reaching this node
    stream_names: dict[int, str]
    max_frames: int
    inbox: str | None
    back: str | None
    inputs: dict[str, list[InLinkConfig]]
    outputs: dict[str, list[OutLinkConfig]]
    pool_slots: int
    max_pool_bytes: int
    state_file: str          # per-stream progress that survives a restart
    cpus: list[int] | None = None
    machine: str | None = None
    security: dict | None = None
    runner_pid: int = 0
    base_dir: str = "."

    @property
    def name(self) -> str:
        return f"{self.node}.{self.replica}"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "InstanceConfig":
        raw = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["inputs"] = {port: [InLinkConfig(**link) for link in links] for port, links in raw["inputs"].items()}
        values["outputs"] = {port: [OutLinkConfig(**link) for link in links] for port, links in raw["outputs"].items()}
        values["stream_names"] = {int(k): v for k, v in raw["stream_names"].items()}
        return cls(**values)


@dataclass
class Instance:
    """One process of the graph: a node's replica and its configuration."""

    node: str
    replica: int
    config: InstanceConfig = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.node}.{self.replica}"
