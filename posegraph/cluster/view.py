"""What a cluster run shows: one table of every node with the Ray node that runs it.

Each group's runner (inside its actor) rewrites its metrics file once a second; the driver
asks the actors for it and joins the groups' rows here. Without Ray: the inputs are plain
dicts, so the table is made (and tested) from a finished run's metrics too.
"""
from __future__ import annotations


def ray_node_label(info: dict) -> str:
    """`10.0.0.2 (w1)`: the Ray node's address and host name, as `where` reported them."""
    address, hostname = info.get("address", "?"), info.get("hostname")
    return f"{address} ({hostname})" if hostname and hostname != address else address


def _ms(a, b) -> str:
    return "-" if a is None else f"{a:.1f}/{b:.1f}"


def cluster_rows(groups: dict[str, list[str]], where: dict[str, dict], metrics: dict[str, dict | None]) -> list[dict]:
    """One row per node, in the groups' order: its group, Ray node and numbers (blank
    until the group's runner has reported)."""
    rows = []
    for group, nodes in groups.items():
        reported = (metrics.get(group) or {}).get("nodes", {})
        for node_id in nodes:
            m = reported.get(node_id)
            rows.append({"node": node_id, "group": group,
                         "ray node": ray_node_label(where[group]) if group in where else "(placing)",
                         "in": str(m["frames_in"]) if m else "", "out": str(m["frames_out"]) if m else "",
                         "fps": f"{m['fps']:.1f}" if m else "", "proc ms": _ms(m["proc_ms_p50"], m["proc_ms_p95"]) if m else "",
                         "restarts": str(m["restarts"]) if m else "", "MB": f"{m['rss_mb']:.0f}" if m else ""})
    return rows


COLUMNS = ("node", "ray node", "group", "in", "out", "fps", "proc ms", "restarts", "MB")


def cluster_table(graph: str, seconds: float, groups: dict[str, list[str]], where: dict[str, dict],
                  metrics: dict[str, dict | None]):
    """A rich Table of `cluster_rows`."""
    from rich.table import Table

    table = Table(title=f"{graph} on Ray  {seconds:.0f} s   (ms: p50/p95; MB resident)", title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("node", "ray node", "group") else "right", no_wrap=True)
    for row in cluster_rows(groups, where, metrics):
        table.add_row(*(row[col] for col in COLUMNS))
    return table


def render_text(table, width: int = 160) -> str:
    """The table as plain text (what a log or a test reads)."""
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(table)
    return buffer.getvalue()


def where_from_metrics(doc: dict) -> dict[str, str]:
    """node id -> where it ran, from a run's metrics file: the Ray node of a cluster run,
    the machine of a `--machine` run; {} when the file says neither."""
    where = {}
    for node_id, m in (doc.get("nodes") or {}).items():
        if m.get("ray_node"):
            where[node_id] = ray_node_label({"address": m["ray_node"], "hostname": m.get("hostname")})
        elif doc.get("machine"):
            where[node_id] = str(doc["machine"])
    return where


def planned_groups(spec) -> dict[str, str]:
    """node id -> `ray group g-NAME` for a graph placed by `resources:`/`colocate:` (the
    nodes that will share one Ray actor, so one Ray node); {} for any other graph."""
    from .groups import make_groups

    if spec.machines or not any(n.resources or n.colocate for n in spec.nodes.values()):
        return {}
    return {node_id: f"ray group {group.name}" for group in make_groups(spec) for node_id in group.nodes}
