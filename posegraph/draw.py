"""Draw a graph as a picture: nodes in columns by depth, edges labelled with their ports."""
from __future__ import annotations

from pathlib import Path

import networkx as nx

from .spec import GraphSpec


def draw_graph(spec: GraphSpec, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    graph = nx.DiGraph()
    for layer, nodes in enumerate(nx.topological_generations(spec.graph)):
        for node_id in nodes:
            graph.add_node(node_id, layer=layer)
    labels = {}
    for producer, consumer, port, data in spec.graph.edges(keys=True, data=True):
        graph.add_edge(producer, consumer)
        inp = spec.nodes[consumer].inputs[port]
        text = f"{data['producer_port']} -> {port}" + (f"\n{inp.policy} {inp.size}" if inp.policy != "block" else "")
        labels[producer, consumer] = "\n".join(filter(None, [labels.get((producer, consumer)), text]))
    pos = nx.multipartite_layout(graph, subset_key="layer")
    layers = 1 + max(d["layer"] for _, d in graph.nodes(data=True))
    height = max(len(g) for g in nx.topological_generations(spec.graph))
    fig, ax = plt.subplots(figsize=(max(6, 3.2 * layers), max(3, 1.8 * height)))
    node_labels = {}
    for node_id, node in spec.nodes.items():
        extra = (f"\nx{node.replicas}" if node.replicas > 1 else "") + (f"\n@{node.machine}" if node.machine else "")
        node_labels[node_id] = f"{node_id}\n[{node.uses}]{extra}"
    nx.draw_networkx_edges(graph, pos, ax=ax, arrows=True, arrowsize=18, node_size=4200, edge_color="#555")
    nx.draw_networkx_edge_labels(graph, pos, edge_labels=labels, ax=ax, font_size=8)
    colors = ["#cde8c9" if spec.nodes[n].is_source else "#f6d7a7" if not spec.graph.out_degree(n) else "#c9d9f0" for n in graph]
    nx.draw_networkx_nodes(graph, pos, ax=ax, node_color=colors, node_shape="s", node_size=4200, edgecolors="#333")
    nx.draw_networkx_labels(graph, pos, labels=node_labels, ax=ax, font_size=9)
    ax.set_title(f"{spec.name}  ({spec.path})")
    ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
