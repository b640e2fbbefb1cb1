"""What the runner shows on its terminal: the live per-node table, progress bars, peers,
and the output of the node processes.

The supervisor owns the processes and their numbers (`Supervisor.node_metrics()`); this
module only draws them: a rich live table refreshed once a second on a terminal, or,
without one, a line per progress step and per change of a peer's connection, and the
table once at the end.

Every line goes through `say`: on a terminal rich prints it above the live table (nothing
else writes to the terminal while the table is up, so it never tears, in tmux either),
otherwise it is written as it is. The lines of the node processes (`worker_line`: their
stderr, read by posegraph.logs.WorkerOutput) are prefixed with the process's name, and the
native libraries' known noise is left out (posegraph.logs.NOISE; `-v` keeps it). With `-q`
they go to the log file instead (out/<graph>.log), with the runner's own lines, and the
terminal gets only errors, warnings and the end of the run. What the nodes wrote (their
`wrote ...` lines) and the nodes' status (`ctx.status`: the answer as it forms, say) are
said again after the table, so that they are the last thing on the screen.

A node's standard output is data (a `jsonl` sink with `path: -` writes its records there):
it goes to the runner's standard output untouched and unprefixed. Only when that is the
same terminal as the live table is it read through a pipe too, and printed above the table.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from . import logs
from .logs import runner as log

COLUMNS = ("node", "kind", "x", "in", "out", "fps", "proc ms", "latency ms", "drops", "restarts", "MB", "state")
STATUS_WIDTH = 40      # a node's status is cut to this many characters in the table
WROTE = re.compile(r"^wrote ")  # a node's line saying what it wrote: said again at the end


def _ms(a, b) -> str:
    return "-" if a is None else f"{a:.1f}/{b:.1f}"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# columns left out first when the terminal is too narrow for the whole table (an 80-column
# tmux pane, say): what matters most (node, fps, proc ms, state, status) stays
NARROW_DROPS = ("kind", "x", "MB", "restarts", "in", "latency ms", "drops", "out")


def node_table(supervisor, metrics: dict | None = None, width: int | None = None):
    """The per-node table (and the peers on other machines, when there are any), made to
    fit `width` columns when given (less important columns left out, the status cut)."""
    from rich.table import Table

    spec = supervisor.spec
    metrics = metrics if metrics is not None else supervisor.node_metrics()
    elapsed = time.monotonic() - (supervisor.ready_at or supervisor.started_at or time.monotonic())
    where = f"  machine {supervisor.machine}" if supervisor.machine else ""
    columns = list(COLUMNS)
    if len(spec.streams) > 1:
        columns.append("frames per stream")
    if any(m.get("status") for m in metrics.values()):
        columns.append("status")
    rows = []
    for node_id, m in metrics.items():
        procs = supervisor.procs_of(node_id)
        running = any(not p.exited for p in procs)
        rows.append({"node": node_id, "kind": spec.nodes[node_id].uses, "x": str(len(procs)), "in": str(m["frames_in"]),
                     "out": str(m["frames_out"]), "fps": f"{m['fps_now'] if running else m['fps']:.1f}",
                     "proc ms": _ms(m["proc_ms_p50"], m["proc_ms_p95"]),
                     "latency ms": _ms(m["latency_ms_p50"], m["latency_ms_p95"]), "drops": str(m["drops"]),
                     "restarts": str(m["restarts"]), "MB": f"{m['rss_mb']:.0f}", "state": supervisor.node_state(node_id),
                     "frames per stream": " ".join(f"{k} {v}" for k, v in sorted(m["streams"].items())),
                     "status": _cut(m.get("status") or "", STATUS_WIDTH)})

    def needed(col):  # characters the column takes, borders and padding included
        return max([len(col)] + [len(r[col]) for r in rows]) + 3

    if width:
        for col in NARROW_DROPS:
            if sum(needed(c) for c in columns) + 1 <= width:
                break
            columns.remove(col)
    table = Table(title=f"{spec.name}{where}  {elapsed:.0f} s   (ms: p50/p95; latency since capture; MB resident)",
                  title_justify="left")
    for col in columns:
        table.add_column(col, justify="left" if col in ("node", "kind", "state", "frames per stream", "status") else "right",
                         no_wrap=col != "frames per stream", overflow="ellipsis")
    for r in rows:
        table.add_row(*(r[col] for col in columns))
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


def log_path(graph_name: str) -> Path:
    """Where `-q` puts a run's output: out/<graph>.log (relative to the current folder)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", graph_name or "graph").strip("._") or "graph"
    return Path("out") / f"{safe}.log"


class Terminal:
    """The live view of one run, or its plain-line fallback when there is no terminal."""

    def __init__(self, supervisor, out, live: bool, verbosity: int | None = None):
        self.supervisor = supervisor
        self.out = out
        self.verbosity = logs.verbosity() if verbosity is None else verbosity
        self.quiet = self.verbosity < 0
        self.live_wanted = live and not self.quiet
        self.live = None
        self.console = None
        self.lock = threading.RLock()
        self.log_file = None
        self.log_path: Path | None = None
        self.wrote: list[str] = []  # the nodes' `wrote ...` lines, said again at the end
        self.peers_seen: dict[tuple[str, str], str] = {}
        self.next_progress_line = 0.0

    @property
    def captures_stdout(self) -> bool:
        """Whether node processes' stdout must come through the runner (it is the live table's terminal)."""
        import sys

        try:
            return self.live_wanted and sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    # ----- lines ---------------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        """One line for the user: above the live table when there is one. Thread-safe."""
        with self.lock:
            if self.live is not None:
                from rich.text import Text

                self.console.print(Text(line), soft_wrap=False, overflow="fold")
                return
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (ValueError, OSError):  # closed under us (an embedding program), or its reader went: the run goes on
                pass

    def note(self, line: str) -> None:
        """A runner line: on the terminal, and in the log file with -q."""
        self.to_log_file(line)
        self.say(line)

    def to_log_file(self, line: str) -> None:
        with self.lock:
            if self.log_file is not None:
                self.log_file.write(line + "\n")
                self.log_file.flush()

    def worker_line(self, name: str, stream: str, text: str) -> None:
        """One line a node process wrote (called from the reading thread)."""
        if stream == "stdout":  # data: as it is (only read when stdout is the table's terminal)
            self.say(text)
            return
        prefix = f"[{name}]"
        line = text if text.startswith(prefix + " ") or text == prefix else f"{prefix} {text}"
        if self.quiet:
            self.to_log_file(line)
        elif self.verbosity < 1 and logs.is_noise(text):
            return
        if WROTE.match(line[len(prefix) + 1:]):
            with self.lock:
                self.wrote.append(line)  # said after the table, where it stays in sight
        elif not self.quiet:
            self.say(line)

    # ----- the run -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Before the first node starts: the log file with -q."""
        if self.quiet:
            self.log_path = log_path(self.supervisor.spec.name)
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                self.log_file = open(self.log_path, "w", encoding="utf-8", errors="replace")
            except OSError as exc:
                self.log_path = None
                log.warning(f"warning: cannot write the run's log file ({exc}): the node processes' output is lost")

    def show(self) -> None:
        """The live table, once every node process is started."""
        if self.live_wanted and self.live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.out)
            live = Live(node_table(self.supervisor, width=console.width), console=console, refresh_per_second=1, transient=False,
                        redirect_stdout=False, redirect_stderr=True)
            with self.lock:
                self.console = console
                live.start()
                self.live = live

    def update(self, metrics: dict) -> None:
        """Once a second: the live table with progress bars, or lines for what changed."""
        progress = self.supervisor.progress_rows()
        if self.live is not None:
            self.live.update(self._with_bars(node_table(self.supervisor, metrics, self.console.width), progress))
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

    def stop(self, ran: bool, ok: bool) -> None:
        """End the live view: its final table stays when the graph ran, and is erased when it
        never did (an error at open: no table of zeros after the error). Without a live view,
        the final table is printed when the run went well (not with -q)."""
        with self.lock:
            live, self.live = self.live, None
        if live is not None:
            if ran:
                live.update(node_table(self.supervisor, width=self.console.width))
            else:
                live.update("")
                live.transient = True
            live.stop()
        elif ran and ok and not self.quiet:
            from rich.console import Console

            try:
                Console(file=self.out, width=160).print(node_table(self.supervisor))
            except OSError:  # the reader of stderr went: the run's outcome stands
                pass

    def finish(self, metrics: dict | None) -> None:
        """After the table: what the nodes wrote and their status, the last lines on screen."""
        with self.lock:
            wrote, self.wrote = self.wrote, []
        statuses = [(n, m["status"]) for n, m in (metrics or {}).items() if m.get("status")]
        if statuses:
            self.note("status: " + "; ".join(f"{n} {text}" for n, text in statuses))
        for line in wrote:  # the output paths last, where they stay in sight
            self.say(line)
        if self.log_file is not None:
            with self.lock:
                self.log_file.close()
                self.log_file = None
