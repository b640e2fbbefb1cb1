"""Draw a graph as a picture: nodes in columns by depth, edges labelled with their ports.

A small layered ("Sugiyama") layout in pure Python, so that `draw` needs no Graphviz:

- each node goes in the column of its depth (its longest path from a source); between two
  node columns lies a column of edge labels;
- an edge crossing several columns becomes a chain of points, one per column, with its
  label in the column just before its consumer, so that edges go around boxes and labels
  rather than through them;
- the order inside each column is chosen by barycenter sweeps (the one with the fewest
  crossings is kept), and the heights by an exact least-squares fit under the rule that
  nothing in a column overlaps (pool adjacent violators);
- sizes are measured from the text itself, in inches, and the figure is made as large as
  the drawing plus a margin, so every box and label lies inside the picture.

`draw_graph` returns where each node's box ended up, in the PNG's pixels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import networkx as nx

from .spec import GraphSpec

NODE_FONT = 9.0  # points
LABEL_FONT = 7.5
TITLE_FONT = 11.0
LINE = 1.2  # line height, in font sizes (matplotlib's default linespacing)
BOX_PAD = (0.14, 0.09)  # inches around a node's text (x, y)
LABEL_PAD = 0.03  # inches around an edge label's text
NODE_GAP = 0.3  # inches between two items of a column when one is a box or a label
POINT_GAP = 0.12  # inches between two bare edge points
COLUMN_GAP = 0.28  # inches between columns
MARGIN = 0.25  # inches around the drawing
MIN_HEIGHT = 2.0  # inches: a single row of nodes is not drawn as a thin strip
MAX_LABEL = 48  # characters of a name or `uses` shown in a box
MAX_PIXELS = 16000  # the picture's longer side at most (the dpi drops for huge graphs)
DPI = 110
COLOURS = {"source": "#cde8c9", "sink": "#f6d7a7", "node": "#c9d9f0"}


@dataclass
class Drawing:
    """What `draw_graph` drew: the picture's size and, per node id, the pixel extent
    (left, top, right, bottom; origin at the top left) of its box and of its text, and
    the text itself."""

    width: int
    height: int
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    texts: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class _Item:
    """One thing in a column: a node's box, an edge's label, or a bare point of an edge."""

    key: object
    column: int
    width: float = 0.0
    height: float = 0.0
    text: str = ""
    kind: str = "point"  # "node", "label" or "point"
    x: float = 0.0
    y: float = 0.0


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 3] + "..."


def _text_size(text: str, size: float) -> tuple[float, float]:
    """(width, height) in inches of `text` drawn at `size` points (one box per line)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    prop = FontProperties(size=size)
    t2p = TextToPath()
    lines = text.split("\n")
    width = max(t2p.get_text_width_height_descent(line or " ", prop, ismath=False)[0] for line in lines)
    return width / 72.0, size * LINE * len(lines) / 72.0


def _layout(spec: GraphSpec, where: dict[str, str] | None = None) -> tuple[dict, list[list[_Item]], list[tuple[str, str, list]]]:
    """Items per column, placed (x, y in inches, y down), and the chains of the edges.
    `where`: node id -> where it runs (a machine, a Ray node), written under its kind."""
    layer = {}
    for depth, nodes in enumerate(nx.topological_generations(spec.graph)):
        for node_id in nodes:
            layer[node_id] = depth
    order = {node_id: i for i, node_id in enumerate(spec.nodes)}  # file order: the first ordering
    items: dict[object, _Item] = {}
    for node_id, node in spec.nodes.items():
        place = (where or {}).get(node_id) or node.machine
        extra = (f"\nx{node.replicas}" if node.replicas > 1 else "") + (f"\n@{_cut(place)}" if place else "")
        text = f"{_cut(node_id)}\n[{_cut(node.uses)}]{extra}"
        w, h = _text_size(text, NODE_FONT)
        items[node_id] = _Item(node_id, 2 * layer[node_id], w + 2 * BOX_PAD[0], h + 2 * BOX_PAD[1], text, "node")
    labels: dict[tuple[str, str], list[str]] = {}
    for producer, consumer, port, data in spec.graph.edges(keys=True, data=True):
        inp = spec.nodes[consumer].inputs[port]
        text = f"{data['producer_port']} -> {port}" + (f"\n{inp.policy} {inp.size}" if inp.policy != "block" else "")
        labels.setdefault((producer, consumer), []).append(text)
    chains = []  # (producer, consumer, [item keys between them])
    for (producer, consumer), texts in labels.items():
        first, last = items[producer].column, items[consumer].column
        keys = []
        for column in range(first + 1, last):
            key = ("edge", producer, consumer, column)
            if column == last - 1:
                text = "\n".join(texts)
                w, h = _text_size(text, LABEL_FONT)
                items[key] = _Item(key, column, w + 2 * LABEL_PAD, h + 2 * LABEL_PAD, text, "label")
            else:
                items[key] = _Item(key, column)
            keys.append(key)
        chains.append((producer, consumer, keys))

    columns: list[list[_Item]] = [[] for _ in range(1 + max(i.column for i in items.values()))]
    for item in sorted(items.values(), key=lambda i: order.get(i.key, len(order))):
        columns[item.column].append(item)
    preds: dict[object, list] = {k: [] for k in items}
    succs: dict[object, list] = {k: [] for k in items}
    for producer, consumer, keys in chains:
        path = [producer, *keys, consumer]
        for a, b in pairwise(path):
            succs[a].append(b)
            preds[b].append(a)
    _order(columns, preds, succs)
    _heights(columns, preds, succs)
    x = MARGIN
    for column in columns:
        width = max([i.width for i in column] + [0.2])
        for item in column:
            item.x = x + width / 2
        x += width + COLUMN_GAP
    return items, columns, chains


def _crossings(columns: list[list[_Item]], succs: dict) -> int:
    """Edge crossings between neighbouring columns (each pair of edges counted once)."""
    total = 0
    for left, right in pairwise(columns):
        pos_right = {item.key: i for i, item in enumerate(right)}
        pairs = [(i, pos_right[b]) for i, item in enumerate(left) for b in succs[item.key] if b in pos_right]
        total += sum(1 for i, (a, b) in enumerate(pairs) for c, d in pairs[i + 1:] if (a - c) * (b - d) < 0)
    return total


def _order(columns: list[list[_Item]], preds: dict, succs: dict) -> None:
    """Barycenter sweeps, down and up; the ordering with the fewest crossings is kept."""
    def sweep(indices, neighbours):
        for c in indices:
            others = columns[c - 1] if neighbours is preds else columns[c + 1]
            pos = {other.key: i for i, other in enumerate(others)}
            current = {item.key: i for i, item in enumerate(columns[c])}

            def centre(item, pos=pos, current=current):
                linked = [pos[k] for k in neighbours[item.key] if k in pos]
                return (sum(linked) / len(linked) if linked else current[item.key], current[item.key])

            columns[c].sort(key=centre)

    best = [list(c) for c in columns], _crossings(columns, succs)
    for _ in range(6):
        if best[1] == 0:
            break
        sweep(range(1, len(columns)), preds)
        sweep(range(len(columns) - 2, -1, -1), succs)
        count = _crossings(columns, succs)
        if count < best[1]:
            best = [list(c) for c in columns], count
    columns[:] = best[0]


def _gap(a: _Item, b: _Item) -> float:
    return (a.height + b.height) / 2 + (POINT_GAP if a.kind == b.kind == "point" else NODE_GAP)


def _fit(column: list[_Item], wanted: list[float], weights: list[float]) -> None:
    """The heights closest (weighted least squares) to `wanted` that keep the column's
    order with its gaps: isotonic regression of wanted - offset (pool adjacent violators)."""
    offsets = [0.0]
    for a, b in pairwise(column):
        offsets.append(offsets[-1] + _gap(a, b))
    blocks: list[list[float]] = []  # [mean, weight, count]
    for target, weight in zip((w - o for w, o in zip(wanted, offsets)), weights):
        blocks.append([target, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    i = 0
    for mean, _, count in blocks:
        for _ in range(count):
            column[i].y = mean + offsets[i]
            i += 1


def _heights(columns: list[list[_Item]], preds: dict, succs: dict) -> None:
    """Heights (y, down) that straighten edges: each item is pulled to the mean height of
    its neighbours, column by column, down and up, a few rounds."""
    for column in columns:
        y = 0.0
        for i, item in enumerate(column):
            if i:
                y += _gap(column[i - 1], item)
            item.y = y
        shift = y / 2
        for item in column:
            item.y -= shift
    by_key = {item.key: item for column in columns for item in column}
    for round_ in range(12):
        for indices in (range(len(columns)), range(len(columns) - 1, -1, -1)):
            for c in indices:
                column = columns[c]
                wanted, weights = [], []
                for item in column:
                    linked = [by_key[k].y for k in preds[item.key] + succs[item.key]]
                    wanted.append(sum(linked) / len(linked) if linked else item.y)
                    weights.append(1.0 if item.kind == "point" else 2.0)
                _fit(column, wanted, weights)
    top = min(item.y - item.height / 2 for column in columns for item in column)
    for column in columns:
        for item in column:
            item.y -= top


def _ports(node: _Item, others: list[_Item]) -> dict:
    """Where each edge meets a box's side: spread along it in the order of the other ends."""
    ranked = sorted(others, key=lambda o: o.y)
    if len(ranked) < 2:
        return {o.key: 0.0 for o in ranked}
    step = min(0.12, 0.7 * node.height / (len(ranked) - 1))
    return {o.key: (i - (len(ranked) - 1) / 2) * step for i, o in enumerate(ranked)}


def _edge_path(points: list[tuple[float, float]], level: set[int]):
    """A smooth path through `points` (left to right) of cubic curves: horizontal at the
    indices in `level` (where it leaves or meets a box or a label), elsewhere along the
    line between the neighbouring points (a Catmull-Rom spline, in x)."""
    from matplotlib.path import Path as MPath

    slopes = []
    for i, (x, y) in enumerate(points):
        if i in level or i == 0 or i == len(points) - 1:
            slopes.append(0.0)
        else:
            (xa, ya), (xb, yb) = points[i - 1], points[i + 1]
            slopes.append((yb - ya) / (xb - xa) if xb - xa > 1e-9 else 0.0)
    vertices, codes = [points[0]], [MPath.MOVETO]
    for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(points)):
        third = (x1 - x0) / 3
        vertices += [(x0 + third, y0 + slopes[i] * third), (x1 - third, y1 - slopes[i + 1] * third), (x1, y1)]
        codes += [MPath.CURVE4] * 3
    return MPath(vertices, codes)


def draw_graph(spec: GraphSpec, path: str, where: dict[str, str] | None = None) -> Drawing:
    """Draw `spec` to the picture file `path` (its extension picks the format: .png, .svg,
    .pdf...); returns what was drawn where, in pixels of a PNG. `where`: node id -> the
    place to write under it (default: its `machine:`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    items, _, chains = _layout(spec, where)
    title = f"{spec.name}  ({spec.path})"
    title_w, title_h = _text_size(title, TITLE_FONT)
    content_w = max(i.x + i.width / 2 for i in items.values()) + MARGIN
    content_h = max(i.y + i.height / 2 for i in items.values())
    width = max(content_w, title_w + 2 * MARGIN)
    top = MARGIN + title_h + 0.15
    height = top + content_h + MARGIN
    if height < MIN_HEIGHT:  # centre a short graph under its title
        top += (MIN_HEIGHT - height) / 2
        height = MIN_HEIGHT
    if width > content_w:  # a title wider than the graph: centre the graph under it
        for item in items.values():
            item.x += (width - content_w) / 2
    dpi = min(DPI, MAX_PIXELS / max(width, height))

    fig = plt.figure(figsize=(width, height), dpi=dpi)
    try:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)  # inches, y down
        ax.axis("off")
        ax.text(width / 2, MARGIN, title, ha="center", va="top", fontsize=TITLE_FONT, parse_math=False)

        for item in items.values():
            item.y += top
        incoming = {k: [] for k in spec.nodes}
        outgoing = {k: [] for k in spec.nodes}
        for producer, consumer, keys in chains:
            outgoing[producer].append(items[keys[0]] if keys else items[consumer])
            incoming[consumer].append(items[keys[-1]] if keys else items[producer])
        out_ports = {n: _ports(items[n], outgoing[n]) for n in spec.nodes}
        in_ports = {n: _ports(items[n], incoming[n]) for n in spec.nodes}
        for producer, consumer, keys in chains:
            a, b = items[producer], items[consumer]
            first = items[keys[0]] if keys else b
            last = items[keys[-1]] if keys else a
            points = [(a.x + a.width / 2, a.y + out_ports[producer][first.key])]
            level = set()
            for key in keys:
                item = items[key]
                if item.kind == "label":
                    level |= {len(points), len(points) + 1}
                    points += [(item.x - item.width / 2, item.y), (item.x + item.width / 2, item.y)]
                else:
                    points.append((item.x, item.y))
            points.append((b.x - b.width / 2, b.y + in_ports[consumer][last.key]))
            ax.add_patch(FancyArrowPatch(path=_edge_path(points, level), arrowstyle="-|>", mutation_scale=11, color="#555",
                                         linewidth=1.0, zorder=1))
        for item in items.values():
            if item.kind == "label":
                ax.text(item.x, item.y, item.text, ha="center", va="center", fontsize=LABEL_FONT, parse_math=False,
                        zorder=3, bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})

        patches, texts = {}, {}
        for node_id, node in spec.nodes.items():
            item = items[node_id]
            role = "source" if node.is_source else "sink" if not spec.graph.out_degree(node_id) else "node"
            patches[node_id] = ax.add_patch(FancyBboxPatch(
                (item.x - item.width / 2, item.y - item.height / 2), item.width, item.height, zorder=4,
                boxstyle="round,pad=0,rounding_size=0.05", facecolor=COLOURS[role], edgecolor="#333", linewidth=1.0))
            texts[node_id] = ax.text(item.x, item.y, item.text, ha="center", va="center", fontsize=NODE_FONT,
                                     parse_math=False, zorder=5)

        fig.canvas.draw()
        px_w, px_h = fig.canvas.get_width_height()
        renderer = fig.canvas.get_renderer()

        def extent(artist) -> tuple[float, float, float, float]:
            box = artist.get_window_extent(renderer)
            return box.x0, px_h - box.y1, box.x1, px_h - box.y0

        drawing = Drawing(px_w, px_h, {n: extent(p) for n, p in patches.items()}, {n: extent(t) for n, t in texts.items()},
                          {n: t.get_text() for n, t in texts.items()})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, facecolor="white")
    finally:
        plt.close(fig)
    return drawing
