"""Graph -> plan: one configuration per process, with every socket address and link.

A link is one (producer output port -> consumer input port, consumer replica) pair. Its
number is the same for every replica of the producer, so an acknowledgement names it
unambiguously. Replicated consumers get the packets whose seq % replicas equals their
index, which keeps joins inside a replica and lets the merge downstream reorder by seq.
"""
from __future__ import annotations

import os
import secrets

import networkx as nx

from .config import InLinkConfig, Instance, InstanceConfig, OutLinkConfig
from .runtime.links import LATEST_SLACK
from .spec import GraphSpec, tcp_ports

MAX_POOL_BYTES = 512 * 1024 * 1024


def new_run_id() -> str:
    return secrets.token_hex(6)


def _route(node) -> str:
    """How packets are spread over a node's replicas: a stateful kind keeps each stream in
    one process (its state follows the stream), a stateless one takes every k-th seq."""
    return "stream" if node.kind.is_stateful() else "seq"


def _addresses(spec: GraphSpec, run_dir: str, inventory: dict[str, str] | None) -> dict[tuple[str, int], dict]:
    """Socket addresses of every instance. Ports come from the instance's position in the
    file (or the node's own `port`), so every machine's runner computes the same ones
    (posegraph.spec.tcp_ports, which the graph check also uses to refuse clashes)."""
    ports = tcp_ports(spec, placed=inventory is not None)
    addresses = {}
    for node in spec.nodes.values():
        for r in range(node.replicas):
            if (node.id, r) in ports:
                host = inventory[node.machine] if inventory is not None else spec.host
                base = ports[node.id, r]
                addresses[node.id, r] = {"inbox": f"tcp://{host}:{base}", "back": f"tcp://{host}:{base + 1}"}
            else:
                addresses[node.id, r] = {"inbox": f"ipc://{run_dir}/{node.id}.{r}.in", "back": f"ipc://{run_dir}/{node.id}.{r}.back"}
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


def _links(spec: GraphSpec) -> dict[tuple, int]:
    """(producer, producer port, consumer, consumer port, consumer replica) -> link number."""
    links = []
    for node in spec.nodes.values():
        for port, inp in node.inputs.items():
            for producer, producer_port in inp.sources:
                for r in range(node.replicas):
                    links.append((producer, producer_port, node.id, port, r))
    return {link: i for i, link in enumerate(links)}


def _same_memory(a, b) -> bool:
    """Shared-memory slots only between processes of one machine, both on ipc."""
    return a.machine == b.machine and a.transport == "ipc" and b.transport == "ipc"


def _outputs(spec: GraphSpec, node, link_ids, addresses, server_key) -> dict[str, list[OutLinkConfig]]:
    outputs: dict[str, list[OutLinkConfig]] = {p: [] for p in node.kind.OUTPUTS}
    for (prod, pport, cons, cport, cr), lid in link_ids.items():
        if prod != node.id:
            continue
        consumer = spec.nodes[cons]
        inp = consumer.inputs[cport]
        outputs[pport].append(OutLinkConfig(
            link=lid, port=pport, consumer=f"{cons}.{cr}", consumer_port=cport, replica=cr, replicas=consumer.replicas,
            inbox=addresses[cons, cr]["inbox"], route=_route(consumer), policy=inp.policy, size=inp.size,
            shm=_same_memory(node, consumer), machine=consumer.machine, server_key=server_key(cons)))
    return outputs


def _inputs(spec: GraphSpec, node, replica: int, link_ids, addresses, server_key) -> dict[str, list[InLinkConfig]]:
    inputs: dict[str, list[InLinkConfig]] = {}
    for port, inp in node.inputs.items():
        inputs[port] = []
        for producer_id, producer_port in inp.sources:
            producer = spec.nodes[producer_id]
            inputs[port].append(InLinkConfig(
                link=link_ids[producer_id, producer_port, node.id, port, replica], port=port, producer=producer_id,
                producer_port=producer_port, producers=[addresses[producer_id, pr]["back"] for pr in range(producer.replicas)],
                policy=inp.policy, size=inp.size, shm=_same_memory(producer, node), producer_route=_route(producer),
                machine=producer.machine, server_key=server_key(producer_id)))
    return inputs


def cpu_placement(spec: GraphSpec, cpu_count: int | None = None) -> dict[str, list[int] | None]:
    """The CPUs each node's processes may run on. A node given `cpus:` gets them to itself:
    nodes without `cpus:` run on the CPUs nobody claimed (unless the claim says
    `cpus_shared: true`, or every CPU is claimed). A node without `cpus:` in a graph
    where nobody claims CPUs is left to the operating system (None)."""
    count = cpu_count or os.cpu_count() or 1
    claimed: dict[str | None, set[int]] = {}  # machine -> CPUs claimed there
    for node in spec.nodes.values():
        if node.cpus and not node.cpus_shared:
            claimed.setdefault(node.machine, set()).update(node.cpus)
    placement = {}
    for node in spec.nodes.values():
        taken = claimed.get(node.machine, set())
        rest = [c for c in range(count) if c not in taken]
        placement[node.id] = node.cpus or (rest if taken and rest else None)
    return placement


def build_plan(spec: GraphSpec, run_id: str, run_dir: str, control: str, max_frames: int = 0,
               inventory: dict[str, str] | None = None, keys=None) -> list[Instance]:
    """Every instance of the graph; with an `inventory` (a multi-machine run) the nodes
    with a neighbour on another machine bind tcp on their machine's address, the rest
    stay on ipc. The caller starts only its own machine's instances."""
    addresses = _addresses(spec, run_dir, inventory)
    link_ids = _links(spec)
    cpus = cpu_placement(spec)

    def server_key(node_id) -> str | None:
        return keys.server_public(spec.nodes[node_id].machine) if keys else None

    instances = []
    for node in spec.nodes.values():
        outputs = _outputs(spec, node, link_ids, addresses, server_key)
        reaching = spec.streams_reaching(node.id)
        for r in range(node.replicas):
            config = InstanceConfig(
                run_id=run_id, run_dir=run_dir, control=control, graph=spec.path, node=node.id, uses=node.uses,
                params=node.params, replica=r, replicas=node.replicas, route=_route(node), is_source=node.is_source,
                stream=spec.streams.get(node.id, 0), streams=reaching,
                stream_names={sid: name for name, sid in spec.streams.items() if sid in reaching},
                max_frames=max_frames if node.is_source else 0,
                inbox=addresses[node.id, r]["inbox"] if node.inputs else None,
                back=addresses[node.id, r]["back"] if any(outputs.values()) else None,
                inputs=_inputs(spec, node, r, link_ids, addresses, server_key), outputs=outputs,
                pool_slots=_pool_slots(spec, node.id), max_pool_bytes=MAX_POOL_BYTES,
                state_file=f"{run_dir}/{node.id}.{r}.state", cpus=cpus[node.id], machine=node.machine,
                security=keys.worker_config(node.machine) if keys else None)
            instances.append(Instance(node.id, r, config))
    return instances
