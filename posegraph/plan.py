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


def _addresses(spec: GraphSpec, run_dir: str) -> dict[tuple[str, int], dict]:
    addresses = {}
    index = 0
    for node in spec.nodes.values():
        for r in range(node.replicas):
            if node.transport == "tcp":
                base = (node.port or spec.base_port + 2 * index) + (2 * r if node.port else 0)
                addresses[node.id, r] = {"inbox": f"tcp://{spec.host}:{base}", "back": f"tcp://{spec.host}:{base + 1}"}
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


def build_plan(spec: GraphSpec, run_id: str, run_dir: str, control: str, max_frames: int = 0) -> list[Instance]:
    addresses = _addresses(spec, run_dir)
    links = []  # (producer, producer_port, consumer, consumer_port, consumer_replica)
    for node in spec.nodes.values():
        for port, inp in node.inputs.items():
            for r in range(node.replicas):
                links.append((inp.producer, inp.producer_port, node.id, port, r))
    link_ids = {link: i for i, link in enumerate(links)}
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
                "replicas": consumer.replicas, "inbox": addresses[cons, cr]["inbox"],
                "policy": inp.policy, "size": inp.size,
                "shm": node.transport == "ipc" and consumer.transport == "ipc",
            })
        for r in range(node.replicas):
            inputs = {}
            for port, inp in node.inputs.items():
                producer = spec.nodes[inp.producer]
                inputs[port] = {
                    "link": link_ids[inp.producer, inp.producer_port, node.id, port, r],
                    "producer": inp.producer, "producer_port": inp.producer_port,
                    "producers": [addresses[inp.producer, pr]["back"] for pr in range(producer.replicas)],
                    "policy": inp.policy, "size": inp.size,
                }
            config = {
                "run_id": run_id, "run_dir": run_dir, "control": control, "graph": spec.path,
                "node": node.id, "uses": node.uses, "params": node.params, "replica": r, "replicas": node.replicas,
                "is_source": node.is_source, "stream": spec.streams.get(node.id, 0),
                "streams": spec.streams_reaching(node.id), "max_frames": max_frames if node.is_source else 0,
                "inbox": addresses[node.id, r]["inbox"] if node.inputs else None,
                "back": addresses[node.id, r]["back"] if any(outputs.values()) else None,
                "inputs": inputs, "outputs": outputs, "pool_slots": _pool_slots(spec, node.id),
                "max_pool_bytes": MAX_POOL_BYTES, "state_file": f"{run_dir}/{node.id}.{r}.state",
                "cpus": node.cpus,
            }
            instances.append(Instance(node.id, r, config))
    return instances
