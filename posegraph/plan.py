"""Graph -> plan: one configuration per process, with every socket address and link.

A link is one (producer output port -> consumer input port, consumer replica) pair. Its
number is the same for every replica of the producer, so an acknowledgement names it
unambiguously. Replicated consumers get the packets whose seq % replicas equals their
index, which keeps joins inside a replica and lets the merge downstream reorder by seq.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import networkx as nx

from .runtime import LATEST_SLACK
from .spec import GraphSpec

MAX_POOL_BYTES = 512 * 1024 * 1024


@dataclass
class Instance:
    node: str
    replica: int
    config: dict

    @property
    def name(self) -> str:
        return f"{self.node}.{self.replica}"


def new_run_id() -> str:
    return secrets.token_hex(6)


def _route(node) -> str:
    """How packets are spread over a node's replicas: a stateful kind keeps each stream in
    one process (its state follows the stream), a stateless one takes every k-th seq."""
    return "stream" if node.kind.is_stateful() else "seq"


def _neighbours(spec: GraphSpec, node_id: str) -> set[str]:
    return set(spec.graph.predecessors(node_id)) | set(spec.graph.successors(node_id))


def _addresses(spec: GraphSpec, run_dir: str, inventory: dict[str, str] | None) -> dict[tuple[str, int], dict]:
    """Socket addresses of every instance. Ports come from the instance's position in the
    file (or the node's own `port`), so every machine's runner computes the same ones."""
    addresses = {}
    index = 0
    for node in spec.nodes.values():
        remote = inventory is not None and any(spec.nodes[n].machine != node.machine for n in _neighbours(spec, node.id))
        for r in range(node.replicas):
            if node.transport == "tcp" or remote:
                host = inventory[node.machine] if inventory is not None else spec.host
                base = (node.port or spec.base_port + 2 * index) + (2 * r if node.port else 0)
                addresses[node.id, r] = {"inbox": f"tcp://{host}:{base}", "back": f"tcp://{host}:{base + 1}"}
            else:
                addresses[node.id, r] = {"inbox": f"ipc://{run_dir}/{node.id}.{r}.in", "back": f"ipc://{run_dir}/{node.id}.{r}.back"}
            index += 1
    return addresses


def _pool_slots(spec: GraphSpec, node_id: str) -> int:
    """Slots an output pool needs so back-pressure, not pool exhaustion, sets the pace.

    A slot is held until every node downstream is done with that seq, so it must cover a
    consumer's queue plus what is in flight along the longest path below it. All
    consumers share the same slot for a seq, so the largest path counts, not their sum.
    A smaller pool would only make the producer wait; it cannot deadlock.
    """
    below = spec.graph.subgraph(nx.descendants(spec.graph, node_id) | {node_id})
    depth = max(1, nx.dag_longest_path_length(below))
    per_consumer = [i.size + 2 + (LATEST_SLACK if i.policy == "latest" else 0) for _, i in spec.consumers(node_id)]
    return max(4, min(64, max(per_consumer or [0]) * depth + 2))


def build_plan(spec: GraphSpec, run_id: str, run_dir: str, control: str, max_frames: int = 0,
               inventory: dict[str, str] | None = None, keys=None) -> list[Instance]:
    """Every instance of the graph; with an `inventory` (a multi-machine run) the nodes
    with a neighbour on another machine bind tcp on their machine's address, the rest
    stay on ipc. The caller starts only its own machine's instances."""
    addresses = _addresses(spec, run_dir, inventory)
    links = []  # (producer, producer_port, consumer, consumer_port, consumer_replica)
    for node in spec.nodes.values():
        for port, inp in node.inputs.items():
            for producer, producer_port in inp.sources:
                for r in range(node.replicas):
                    links.append((producer, producer_port, node.id, port, r))
    link_ids = {link: i for i, link in enumerate(links)}

    def same_memory(a, b) -> bool:  # shared-memory slots only between processes of one machine
        return a.machine == b.machine and a.transport == "ipc" and b.transport == "ipc"

    def server_key(node_id) -> str | None:
        return keys.server_public(spec.nodes[node_id].machine) if keys else None

    instances = []
    for node in spec.nodes.values():
        outputs: dict[str, list] = {p: [] for p in node.kind.OUTPUTS}
        for (prod, pport, cons, cport, cr), lid in link_ids.items():
            if prod != node.id:
                continue
            consumer = spec.nodes[cons]
            inp = consumer.inputs[cport]
            outputs[pport].append({
                "link": lid, "consumer": f"{cons}.{cr}", "consumer_port": cport, "replica": cr,
                "replicas": consumer.replicas, "inbox": addresses[cons, cr]["inbox"], "route": _route(consumer),
                "policy": inp.policy, "size": inp.size, "shm": same_memory(node, consumer),
                "machine": consumer.machine, "server_key": server_key(cons),
            })
        for r in range(node.replicas):
            inputs = {}
            for port, inp in node.inputs.items():
                inputs[port] = []
                for producer_id, producer_port in inp.sources:
                    producer = spec.nodes[producer_id]
                    inputs[port].append({
                        "link": link_ids[producer_id, producer_port, node.id, port, r],
                        "producer": producer_id, "producer_port": producer_port,
                        "producers": [addresses[producer_id, pr]["back"] for pr in range(producer.replicas)],
                        "policy": inp.policy, "size": inp.size, "shm": same_memory(producer, node),
                        "producer_route": _route(producer),
                        "machine": producer.machine, "server_key": server_key(producer_id),
                    })
            config = {
                "run_id": run_id, "run_dir": run_dir, "control": control, "graph": spec.path,
                "node": node.id, "uses": node.uses, "params": node.params, "replica": r, "replicas": node.replicas,
                "route": _route(node),
                "is_source": node.is_source, "stream": spec.streams.get(node.id, 0),
                "streams": spec.streams_reaching(node.id),
                "stream_names": {str(sid): name for name, sid in spec.streams.items() if sid in spec.streams_reaching(node.id)}, "max_frames": max_frames if node.is_source else 0,
                "inbox": addresses[node.id, r]["inbox"] if node.inputs else None,
                "back": addresses[node.id, r]["back"] if any(outputs.values()) else None,
                "inputs": inputs, "outputs": outputs, "pool_slots": _pool_slots(spec, node.id),
                "max_pool_bytes": MAX_POOL_BYTES, "state_file": f"{run_dir}/{node.id}.{r}.state",
                "cpus": node.cpus, "machine": node.machine,
                "security": keys.worker_config(node.machine) if keys else None,
            }
            instances.append(Instance(node.id, r, config))
    return instances
