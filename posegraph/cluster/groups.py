"""Graph -> actor groups for a Ray cluster run, without Ray.

A group is what one Ray actor runs: a "machine" of the static multi-machine mode
(docs/machines.md), named by the cluster driver instead of the graph. Nodes listed in each
other's `colocate:` share a group (links between them stay ipc/shm); a node with neither
`resources:` nor `colocate:` joins the group of the producer of its first input, so
unconstrained chains stay together; a source with no constraint gets a group of its own,
which Ray puts wherever it has room. A group asks Ray for the sum of its nodes'
resources (each node's amount times its replicas).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..spec import GraphSpec

RAY_NAMES = {"cpu": "CPU", "gpu": "GPU"}  # resources: {cpu: 1} is Ray's num_cpus; other names are custom resources


@dataclass
class Group:
    name: str
    nodes: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)  # graph names: cpu, gpu, custom

    @property
    def num_cpus(self) -> float:
        return self.resources.get("cpu", 0.0)

    @property
    def num_gpus(self) -> float:
        return self.resources.get("gpu", 0.0)

    @property
    def custom(self) -> dict[str, float]:
        return {k: v for k, v in self.resources.items() if k not in RAY_NAMES}

    def asked(self) -> str:
        """`cpu: 1, gpu_box: 1` (or `nothing`), as an error line names them."""
        return ", ".join(f"{k}: {v:g}" for k, v in self.resources.items()) or "nothing"


def make_groups(spec: GraphSpec) -> list[Group]:
    """The actor groups of a graph, in file order of their first node."""
    parent = {n: n for n in spec.nodes}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            order = list(spec.nodes)
            first, second = sorted((ra, rb), key=order.index)
            parent[second] = first

    for node in spec.nodes.values():
        for other in node.colocate:
            union(node.id, other)
    constrained = {n for n, node in spec.nodes.items() if node.resources or node.colocate}
    for node_id in spec.topological_order():  # a free node follows the producer of its first input
        node = spec.nodes[node_id]
        if node_id in constrained or not node.inputs:
            continue
        first_input = next(iter(node.inputs.values()))
        if first_input.sources:
            union(first_input.sources[0][0], node_id)
    groups: dict[str, Group] = {}
    for node in spec.nodes.values():
        root = find(node.id)
        group = groups.setdefault(root, Group(name=f"g-{root}"))
        group.nodes.append(node.id)
        for name, amount in node.resources.items():
            group.resources[name] = group.resources.get(name, 0.0) + amount * node.replicas
    return list(groups.values())
