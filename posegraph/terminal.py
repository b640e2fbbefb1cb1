"""What the runner shows on its terminal: the live per-node table, progress bars, peers.

The supervisor owns the processes and their numbers (`Supervisor.node_metrics()`); this
module only draws them: a rich live table refreshed once a second on a terminal, or,
without one, a line per progress step and per change of a peer's connection, and the
table once at the end.
"""
from __future__ import annotations

import time

from .logs import runner as log

COLUMNS = ("node", "kind", "x", "in", "out", "fps", "proc ms", "latency ms", "drops", "restarts", "MB", "state")


def _ms(a, b) -> str:
    return "-" if a is None else f"{a:.1f}/{b:.1f}"


def node_table(supervisor, metrics: dict | None = None):
    """The per-node table (and the peers on other machines, when there are any)."""
    from rich.table import Table

    spec = supervisor.spec
    metrics = metrics if metrics is not None else supervisor.node_metrics()
    elapsed = time.monotonic() - (supervisor.ready_at or supervisor.started_at or time.monotonic())
    where = f"  machine {supervisor.machine}" if supervisor.machine else ""
    table = Table(title=f"{spec.name}{where}  {elapsed:.0f} s   (ms: p50/p95; latency since capture; MB resident)",
                  title_justify="left")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("node", "kind", "state") else "right")
    multi = len(spec.streams) > 1
    if multi:
        table.add_column("frames per stream", justify="left")
    for node_id, m in metrics.items():
        procs = supervisor.procs_of(node_id)
        running = any(not p.exited for p in procs)
        table.add_row(node_id, spec.nodes[node_id].uses, str(len(procs)), str(m["frames_in"]), str(m["frames_out"]),
                      f"{m['fps_now'] if running else m['fps']:.1f}", _ms(m["proc_ms_p50"], m["proc_ms_p95"]),
                      _ms(m["latency_ms_p50"], m["latency_ms_p95"]), str(m["drops"]), str(m["restarts"]),
                      f"{m['rss_mb']:.0f}", supervisor.node_state(node_id),
                      *([" ".join(f"{k} {v}" for k, v in sorted(m["streams"].items()))] if multi else []))
    peers = peer_states(metrics)
    if not peers:
        return table
    from rich.console import Group

    peer_table = Table(title="peers on other machines", title_justify="left")
    for col in ("node", "peer", "state"):
        peer_table.add_column(col)
    for (node_id, peer), state in sorted(peers.items()):
        peer_table.add_row(node_id, peer, state)
    return Group(table, peer_table)


def peer_states(metrics: dict) -> dict[tuple[str, str], str]:
    """(local node, "machine: remote node") -> its connection state, from the nodes' monitors."""
    return {(n, peer): state for n, m in metrics.items() for peer, state in m["peers"].items()}


class Terminal:
    """The live view of one run, or its plain-line fallback when there is no terminal."""

    def __init__(self, supervisor, out, live: bool):
        self.supervisor = supervisor
        self.out = out
        self.live_wanted = live
        self.live = None
        self.peers_seen: dict[tuple[str, str], str] = {}
        self.next_progress_line = 0.0

    def start(self) -> None:
        if self.live_wanted:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(node_table(self.supervisor), console=Console(file=self.out), refresh_per_second=1, transient=False)
            self.live.start()

    def update(self, metrics: dict) -> None:
        """Once a second: the live table with progress bars, or lines for what changed."""
        progress = self.supervisor.progress_rows()
        if self.live is not None:
            self.live.update(self._with_bars(node_table(self.supervisor, metrics), progress))
            return
        for key, state in peer_states(metrics).items():
            if self.peers_seen.get(key) != state:
                log.info(f"peer: {key[0]} -> {key[1]}: {state}")
                self.peers_seen[key] = state
        if progress and time.monotonic() >= self.next_progress_line:
            self.next_progress_line = time.monotonic() + 5.0
            text = ", ".join(f"{n} {d}/{t} frames" if t else f"{n} {d} frames" for n, d, t in progress)
            log.info(f"progress: {text}")

    @staticmethod
    def _with_bars(table, progress):
        if not progress:
            return table
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        bars = Table.grid(padding=(0, 1))
        for name, done, total in progress:
            bars.add_row(name, ProgressBar(total=total or None, completed=done, width=40), f"{done}/{total}" if total else f"{done}")
        return Group(table, bars)

    def stop(self, show_table: bool) -> None:
        """End the live view; without one, print the final table (when the run went well)."""
        if self.live is not None:
            self.live.update(node_table(self.supervisor))
            self.live.stop()
        elif show_table:
            from rich.console import Console

            Console(file=self.out, width=160).print(node_table(self.supervisor))
