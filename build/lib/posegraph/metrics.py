"""Cheap per-node measurements: counters and rolling percentiles over a fixed ring.

A node's `lost` is what never reached its output: packets that never completed a join
(the runtime's count) plus what the node's own code counted with ctx.count("lost") (a
sink's seqs missing from its files). The runner ends with a warning and exit code 1 when
a lossless node lost any (posegraph.supervisor)."""
from __future__ import annotations

import os
import threading
import time

import numpy as np

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
LOST_COUNTER = "lost"  # ctx.count(LOST_COUNTER) adds to the node's `lost`, not to its counters


class Ring:
    """The last `size` values, for p50/p95 without keeping history or allocating per sample."""

    def __init__(self, size: int = 512):
        self.values = np.zeros(size, dtype=np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        self.values[self.count % len(self.values)] = value
        self.count += 1

    def percentiles(self) -> tuple[float | None, float | None]:
        n = min(self.count, len(self.values))
        if not n:
            return None, None
        p50, p95 = np.percentile(self.values[:n], (50, 95))
        return round(float(p50), 3), round(float(p95), 3)


class Meter:
    """What one node instance counts and times; `report()` is its metrics message."""

    def __init__(self):
        self.frames_in = self.frames_out = self.drops = self.bad = self.lost = 0
        self.stream_out: dict[int, int] = {}  # frames processed per stream
        self.proc = Ring()  # ms in the node's process()
        self.lat = Ring()   # ms since capture
        self.t_first = self.t_last = 0.0
        self._last_rate = (0, time.monotonic())
        self.slept = 0.0        # seconds the node slept in time.sleep (counted for sources: count_sleeps)
        self._slept_before = 0.0

    def count_sleeps(self) -> None:
        """Count the seconds this process's main thread sleeps in `time.sleep`, so that a
        call of process() is timed without them. For a source: its process() waits there
        for its next frame to be due (a file or synthetic frames paced at `fps`), which is
        not work: its `proc ms` is the time to make the frame, as for every other node.
        The node code keeps calling time.sleep as ever (posegraph.pose.media's pacing too)."""
        real_sleep = time.sleep
        if getattr(real_sleep, "posegraph_counted", False):
            return
        main = threading.get_ident()

        def sleep(seconds):
            if threading.get_ident() != main:
                return real_sleep(seconds)
            start = time.perf_counter()
            try:
                return real_sleep(seconds)
            finally:
                self.slept += time.perf_counter() - start

        sleep.posegraph_counted = True
        time.sleep = sleep

    def starting(self) -> None:
        """A call of process() begins (the first one starts the fps clock)."""
        if not self.t_first:
            self.t_first = time.time()
        self._slept_before = self.slept

    def processed(self, stream: int, seconds: float) -> None:
        """A call of process() for `stream` took `seconds` (less what it slept, for a source)."""
        self.t_last = time.time()
        seconds = max(0.0, seconds - (self.slept - self._slept_before))
        self.proc.add(seconds * 1000.0)
        self.frames_out += 1
        self.stream_out[stream] = self.stream_out.get(stream, 0) + 1

    def latency(self, capture_ns: int) -> None:
        self.lat.add((time.time_ns() - capture_ns) / 1e6)

    def report(self) -> dict:
        now = time.monotonic()
        last_count, last_time = self._last_rate
        fps_now = (self.frames_out - last_count) / (now - last_time) if now > last_time else 0.0
        self._last_rate = (self.frames_out, now)
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "fps_now": round(fps_now, 2),
                "drops": self.drops, "bad": self.bad, "lost": self.lost,
                "proc": self.proc.percentiles(), "lat": self.lat.percentiles(), "rss_mb": rss_mb(),
                "t_first": self.t_first, "t_last": self.t_last,
                "streams": {str(s): n for s, n in self.stream_out.items()}}


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MB, read from /proc (no psutil needed)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return round(int(f.read().split()[1]) * PAGE_MB, 1)
    except (OSError, IndexError, ValueError):
        return 0.0


NODE_FIELDS = ("frames_in", "frames_out", "fps", "proc_ms_p50", "proc_ms_p95", "latency_ms_p50",
               "latency_ms_p95", "drops", "restarts", "rss_mb")


def summarise(reports: list[dict], restarts: int) -> dict:
    """Combine the latest report of each replica (and earlier incarnations) into one row."""
    def total(key):
        return sum(r.get(key, 0) for r in reports)

    firsts = [r["t_first"] for r in reports if r.get("t_first")]
    lasts = [r["t_last"] for r in reports if r.get("t_last")]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    processed = total("frames_out")
    live = [r for r in reports if r.get("live", True)]

    def worst(key, index):
        values = [r[key][index] for r in live if r.get(key) and r[key][index] is not None]
        return max(values) if values else None

    counters: dict[str, int] = {}
    streams: dict[str, int] = {}
    for r in reports:
        for k, v in (r.get("counters") or {}).items():
            counters[k] = counters.get(k, 0) + v
        for k, v in (r.get("streams") or {}).items():
            streams[k] = streams.get(k, 0) + v
    peers: dict[str, str] = {}
    for r in live:
        peers.update(r.get("peers") or {})
    statuses = list(dict.fromkeys(r["status"] for r in live if isinstance(r.get("status"), str) and r["status"]))
    return {
        "fps_now": round(sum(r.get("fps_now", 0.0) for r in live), 2),
        "frames_in": total("frames_in"),
        "frames_out": processed,
        "fps": round(processed / span, 2) if span > 0 else 0.0,
        "proc_ms_p50": worst("proc", 0), "proc_ms_p95": worst("proc", 1),
        "latency_ms_p50": worst("lat", 0), "latency_ms_p95": worst("lat", 1),
        "drops": total("drops"),
        "restarts": restarts,
        "rss_mb": round(sum(r.get("rss_mb", 0.0) for r in live), 1),
        "bad_messages": total("bad"),
        "lost": total("lost") + counters.pop(LOST_COUNTER, 0),
        "counters": counters,
        "streams": streams,  # stream id (as text) -> frames processed
        "peers": peers,      # "machine: node" -> connected / waiting / disconnected / refused
        "status": " | ".join(statuses),  # what the node said with ctx.status (each replica's, when they differ)
    }
