#!/usr/bin/env python3
"""How fast do 720p frames cross three hops? The engine against three plain baselines.

Every transport runs the same chain, source -> hop -> hop -> sink, one process each:

  graph      the real engine (shared-memory slots, credit-based flow control)
  raw_pyzmq  PUSH/PULL over ipc://, zero-copy sends, the received buffer forwarded as is
  imagezmq   imagezmq ImageSender -> ImageHub (REQ/REP over tcp://127.0.0.1)
  mp_queue   multiprocessing.Queue (pickles each frame)

All four are measured the same way:
  fps            frames / (sink's last frame - sink's first frame), at full speed
  full speed     every measure is the median of FULL_RUNS runs, run round-robin across
                 transports so a burst of load on a shared machine hits one run, not all
  latency        capture (source clock) -> sink, p50/p95 over the sink's last 512 frames
                 (the engine keeps the same ring), at full speed and with a 30 fps source
  CPU ms/frame   user+sys of the 4 processes (getrusage RUSAGE_CHILDREN after they are
                 reaped): a full run's (median) minus a short run's of CPU_BASE_FRAMES
                 frames, over the frame difference, so start-up and teardown cancel out.

Usage: python benchmarks/transport.py [--frames N] [--json FILE | --save]
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import resource
import shlex
import socket
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

import saving  # benchmarks/saving.py: out/ unless --save

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 1280, 720
SHAPE = (HEIGHT, WIDTH, 3)
HOPS = 3                  # links between the 4 processes
PACED_FRAMES = 150        # 5 s at 30 fps
PACED_FPS = 30.0
CPU_BASE_FRAMES = 20      # the short run whose CPU (start-up, teardown) is subtracted
FULL_RUNS = 3             # full-speed runs per transport; each measure's median is reported
LATENCY_WINDOW = 512      # same ring size as the engine's metrics
RING = 8                  # preallocated source frames, so none is reused while queued
ZMQ_HWM = 2               # bounds in-flight messages per link well below RING
QUEUE_SIZE = 4            # the engine's default input queue size
STARTUP_TIMEOUT = 60.0
HEADER = struct.Struct("<QQ")  # seq, capture time_ns
TRANSPORTS = ("graph", "raw_pyzmq", "imagezmq", "mp_queue")

GRAPH_YAML = """\
name: transport-bench
nodes:
  - id: source
    uses: synthetic
    params: {width: %d, height: %d, count: 600, fps: 0}
  - id: hop1
    uses: passthrough
    inputs: {frame: source/frame}
  - id: hop2
    uses: passthrough
    inputs: {frame: hop1/frame}
  - id: sink
    uses: null
    inputs: {frame: hop2/frame}
""" % (WIDTH, HEIGHT)


@dataclass
class Run:
    """What one run of one transport measured."""
    frames: int
    fps: float
    p50_ms: float
    p95_ms: float
    stamp_errors: int
    cpu_s: float = 0.0
    wall_s: float = 0.0


# ----- pieces shared by the baseline processes -------------------------------------------
def make_ring() -> list[np.ndarray]:
    """Source frames, allocated once; filled so copies read real pages, not the zero page."""
    return [np.full(SHAPE, 127, np.uint8) for _ in range(RING)]


def write_stamp(frame: np.ndarray, seq: int) -> None:
    """The seq in the first 8 bytes, exactly what the engine's synthetic source writes."""
    frame.reshape(-1)[:8].view(np.uint64)[0] = seq


def read_stamp(frame) -> int:
    return int(np.frombuffer(frame, dtype=np.uint64, count=1)[0])


class Pacer:
    """Holds a source to `fps` the way the synthetic node does; 0 means full speed."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_time = time.monotonic()

    def wait(self) -> None:
        if not self.period:
            return
        delay = self.next_time - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_time = max(self.next_time + self.period, time.monotonic() - self.period)


def percentiles(latencies_ms: list[float]) -> tuple[float, float]:
    window = np.asarray(latencies_ms[-LATENCY_WINDOW:], dtype=np.float64)
    p50, p95 = np.percentile(window, (50, 95))
    return round(float(p50), 3), round(float(p95), 3)


# ----- raw pyzmq: PUSH/PULL over ipc, zero copy ----------------------------------------------
class ZmqLink:
    """One PUSH -> PULL link over an ipc:// socket file; the reader binds."""

    def __init__(self, mp, tmp: str, index: int):
        self.address = f"ipc://{tmp}/link{index}"

    def reader(self):
        return ZmqReader(self.address)

    def writer(self):
        return ZmqWriter(self.address)


class ZmqReader:
    def __init__(self, address: str):
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, ZMQ_HWM)
        self.sock.bind(address)

    def recv(self):
        parts = self.sock.recv_multipart(copy=False)
        return parts if len(parts) == 2 else None  # a lone part marks the end

    @staticmethod
    def decode(parts):
        seq, capture_ns = HEADER.unpack(parts[0].bytes)
        return seq, capture_ns, parts[1].buffer

    def close(self):
        self.sock.close(linger=0)


class ZmqWriter:
    def __init__(self, address: str):
        self.sock = zmq.Context.instance().socket(zmq.PUSH)
        self.sock.setsockopt(zmq.SNDHWM, ZMQ_HWM)
        self.sock.connect(address)

    def send(self, seq: int, capture_ns: int, frame: np.ndarray) -> None:
        self.sock.send_multipart([HEADER.pack(seq, capture_ns), frame], copy=False)

    def forward(self, parts) -> None:
        self.sock.send_multipart(parts, copy=False)  # the received zmq frames, not copied

    def end(self) -> None:
        self.sock.send(b"end")

    def close(self):
        self.sock.close(linger=5000)  # zero-copy sends must be flushed before teardown


# ----- imagezmq: REQ/REP over tcp ------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ImageZmqLink:
    """One ImageSender (REQ) -> ImageHub (REP) link on a free localhost port."""

    def __init__(self, mp, tmp: str, index: int):
        self.address = f"tcp://127.0.0.1:{free_port()}"

    def reader(self):
        return ImageZmqReader(self.address)

    def writer(self):
        return ImageZmqWriter(self.address)


class ImageZmqReader:
    def __init__(self, address: str):
        import imagezmq

        self.hub = imagezmq.ImageHub(open_port=address)

    def recv(self):
        text, image = self.hub.recv_image()
        self.hub.send_reply(b"OK")  # reply first, so the upstream sender is free at once
        return None if text == "end" else (text, image)

    @staticmethod
    def decode(msg):
        seq, capture_ns = map(int, msg[0].split())
        return seq, capture_ns, msg[1]

    def close(self):
        self.hub.close()


class ImageZmqWriter:
    def __init__(self, address: str):
        import imagezmq

        self.sender = imagezmq.ImageSender(connect_to=address)

    def send(self, seq: int, capture_ns: int, frame: np.ndarray) -> None:
        self.sender.send_image(f"{seq} {capture_ns}", frame)

    def forward(self, msg) -> None:
        self.sender.send_image(*msg)

    def end(self) -> None:
        self.sender.send_image("end", np.zeros(8, np.uint8))

    def close(self):
        self.sender.close()


# ----- multiprocessing.Queue -----------------------------------------------------------------
class QueueLink:
    """A bounded multiprocessing.Queue carrying (seq, capture_ns, frame)."""

    def __init__(self, mp, tmp: str, index: int):
        self.queue = mp.Queue(maxsize=QUEUE_SIZE)

    def reader(self):
        return QueueReader(self.queue)

    def writer(self):
        return QueueWriter(self.queue)


class QueueReader:
    def __init__(self, queue):
        self.queue = queue

    def recv(self):
        return self.queue.get()  # None marks the end

    @staticmethod
    def decode(item):
        return item

    def close(self):
        pass


class QueueWriter:
    def __init__(self, queue):
        self.queue = queue

    def send(self, seq: int, capture_ns: int, frame: np.ndarray) -> None:
        self.queue.put((seq, capture_ns, frame))

    def forward(self, item) -> None:
        self.queue.put(item)

    def end(self) -> None:
        self.queue.put(None)

    def close(self):
        self.queue.close()
        self.queue.join_thread()  # the feeder thread has written everything


LINKS = {"raw_pyzmq": ZmqLink, "imagezmq": ImageZmqLink, "mp_queue": QueueLink}


# ----- the three roles, the same for every baseline ----------------------------------------
def run_source(out, frames: int, fps: float) -> None:
    ring = make_ring()
    pacer = Pacer(fps)
    for seq in range(frames):
        pacer.wait()
        frame = ring[seq % RING]
        write_stamp(frame, seq)
        out.send(seq, time.time_ns(), frame)
    out.end()


def run_hop(inp, out) -> None:
    while (msg := inp.recv()) is not None:
        out.forward(msg)
    out.end()


def run_sink(inp) -> Run:
    latencies, errors, first, last = [], 0, 0.0, 0.0
    while (msg := inp.recv()) is not None:
        seq, capture_ns, frame = inp.decode(msg)
        now_ns = time.time_ns()
        last = time.perf_counter()
        first = first or last
        latencies.append((now_ns - capture_ns) / 1e6)
        errors += read_stamp(frame) != seq
    n = len(latencies)
    p50, p95 = percentiles(latencies)
    return Run(n, round(n / (last - first), 2) if last > first else 0.0, p50, p95, errors)


def stage(link_in, link_out, frames: int, fps: float, barrier, result) -> None:
    """One process of a baseline chain: source (no input), hop, or sink (no output)."""
    inp = out = None
    try:
        inp = link_in.reader() if link_in else None
        barrier.wait(STARTUP_TIMEOUT)  # every reader is bound before a writer connects, so
        out = link_out.writer() if link_out else None  # no connect waits out zmq's 100 ms retry
        barrier.wait(STARTUP_TIMEOUT)  # and every link is up before the first frame
        if inp is None:
            run_source(out, frames, fps)
        elif out is None:
            result.send(run_sink(inp))
        else:
            run_hop(inp, out)
    finally:
        for end in (inp, out):
            if end is not None:
                end.close()
        if zmq.Context._instance is not None:
            zmq.Context.instance().term()


def wait_for_result(conn, procs, timeout: float):
    """The sink's Run, or an error as soon as any process fails or time runs out."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        failed = [p for p in procs if p.exitcode not in (None, 0)]
        if failed:
            raise RuntimeError(f"a {failed[0].name} process exited with code {failed[0].exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result after {timeout:.0f} s")
    return conn.recv()


def run_baseline(name: str, frames: int, fps: float) -> Run:
    mp = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        links = [LINKS[name](mp, tmp, i) for i in range(HOPS)]
        barrier = mp.Barrier(HOPS + 1)
        result_in, result_out = mp.Pipe(duplex=False)
        roles = ["source"] + [f"hop{i}" for i in range(1, HOPS)] + ["sink"]
        procs = [mp.Process(target=stage, name=f"{name} {role}", args=(i, o, frames, fps, barrier, result_out))
                 for role, i, o in zip(roles, [None, *links], [*links, None])]
        try:
            for p in procs:
                p.start()
            run = wait_for_result(result_in, procs, STARTUP_TIMEOUT + frames / 5)
            for p in procs:
                p.join(STARTUP_TIMEOUT)
            codes = [p.exitcode for p in procs]
            if any(codes):
                raise RuntimeError(f"{name}: exit codes {codes}")
            return run
        finally:
            for p in procs:
                if p.pid is not None:
                    if p.is_alive():
                        p.kill()
                    p.join()
            result_in.close()
            result_out.close()


# ----- the engine ------------------------------------------------------------------------------
def run_graph(frames: int, fps: float) -> Run:
    """The real engine, in this process: its node processes are our children."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from posegraph.spec import load_graph
    from posegraph.supervisor import Supervisor

    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        path = os.path.join(tmp, "transport.yaml")
        Path(path).write_text(GRAPH_YAML)
        spec = load_graph(path, overrides=[f"source.count={frames}", f"source.fps={fps}"])
        metrics_path = os.path.join(tmp, "metrics.json")
        log = io.StringIO()
        code = Supervisor(spec, metrics_path=metrics_path, live=False, out=log).run()
        if code:
            raise RuntimeError(f"graph exited with code {code}:\n{log.getvalue()}")
        sink = json.loads(Path(metrics_path).read_text())["nodes"]["sink"]
    if sink["frames_in"] != frames:
        raise RuntimeError(f"graph sink got {sink['frames_in']} of {frames} frames")
    return Run(sink["frames_in"], sink["fps"], sink["latency_ms_p50"], sink["latency_ms_p95"],
               sink["counters"].get("stamp_mismatch", 0))


# ----- measuring -------------------------------------------------------------------------------
def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(name: str, label: str, frames: int, fps: float) -> Run:
    """One run with its children's CPU; every child is reaped before it returns."""
    cpu, start = children_cpu(), time.monotonic()
    run = run_graph(frames, fps) if name == "graph" else run_baseline(name, frames, fps)
    run.cpu_s, run.wall_s = children_cpu() - cpu, time.monotonic() - start
    pace = f" @{fps:g} fps" if fps else ""
    print(f"[{name:9s}] {label:6s} {frames:4d} frames{pace}: {run.fps:8.1f} fps  latency p50 {run.p50_ms:.2f} ms"
          f"  p95 {run.p95_ms:.2f} ms  cpu {run.cpu_s:.2f} s  wall {run.wall_s:.1f} s", file=sys.stderr, flush=True)
    if run.frames != frames or run.stamp_errors:
        print(f"[{name:9s}] warning: {run.frames}/{frames} frames, {run.stamp_errors} stamp errors", file=sys.stderr)
    return run


def summary(base: Run, full: Run, paced: Run, frames: int) -> dict:
    cpu_ms = (full.cpu_s - base.cpu_s) / (frames - CPU_BASE_FRAMES) * 1000.0
    return {"fps": full.fps, "p50_ms": full.p50_ms, "p95_ms": full.p95_ms,
            "p50_ms_paced": paced.p50_ms, "p95_ms_paced": paced.p95_ms,
            "cpu_ms_per_frame": round(cpu_ms, 3)}


def median_run(runs: list[Run]) -> Run:
    """Each measure's median over the runs, so one disturbed run moves none of them."""
    def mid(field):
        return statistics.median(getattr(r, field) for r in runs)

    return Run(runs[0].frames, mid("fps"), mid("p50_ms"), mid("p95_ms"), max(r.stamp_errors for r in runs),
               mid("cpu_s"), mid("wall_s"))


def bench_all(frames: int) -> dict:
    """Full-speed runs go round-robin and each measure takes its median: on a shared
    machine a burst of someone else's load then hits one run of one transport, not the result."""
    base = {n: measured(n, "base", CPU_BASE_FRAMES, 0) for n in TRANSPORTS}
    fulls: dict[str, list[Run]] = {n: [] for n in TRANSPORTS}
    for i in range(FULL_RUNS):
        for n in TRANSPORTS:
            fulls[n].append(measured(n, f"full{i + 1}", frames, 0))
    paced = {n: measured(n, "paced", PACED_FRAMES, PACED_FPS) for n in TRANSPORTS}
    return {n: summary(base[n], median_run(fulls[n]), paced[n], frames) for n in TRANSPORTS}


def ratios(results: dict) -> dict:
    graph = results["graph"]["fps"]
    return {f"graph_vs_{b}": round(graph / results[b]["fps"], 2) if results[b]["fps"] else None
            for b in ("raw_pyzmq", "mp_queue", "imagezmq")}


def print_table(results: dict, rates: dict, frames: int) -> None:
    print(f"{WIDTH}x{HEIGHT}x3 uint8, source -> hop -> hop -> sink; {frames} frames full speed, "
          f"{PACED_FRAMES} frames at {PACED_FPS:g} fps")
    print(f"{'transport':10s} {'fps':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p50 @30':>8s} {'p95 @30':>8s} {'CPU ms/frame':>13s}")
    for name, r in results.items():
        print(f"{name:10s} {r['fps']:8.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['p50_ms_paced']:8.2f} "
              f"{r['p95_ms_paced']:8.2f} {r['cpu_ms_per_frame']:13.2f}")
    print(f"full speed: each measure is the median of {FULL_RUNS} runs, run round-robin across transports")
    print(f"CPU ms/frame: user+sys of all 4 processes, ({frames}-frame run - {CPU_BASE_FRAMES}-frame run) / "
          f"{frames - CPU_BASE_FRAMES} frames (start-up excluded)")
    for key, value in rates.items():
        print(f"{key}: {value:.2f}x fps" if value is not None else f"{key}: n/a")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames per full-speed run (default 600)")
    saving.add_arguments(parser, "transport.json")
    args = parser.parse_args(argv)
    if args.frames <= 2 * CPU_BASE_FRAMES:
        parser.error(f"--frames must be more than {2 * CPU_BASE_FRAMES}")
    results = bench_all(args.frames)
    rates = ratios(results)
    print_table(results, rates, args.frames)
    doc = {"transports": results, "ratios": rates, "frames": args.frames,
           "command": shlex.join(["python", *sys.argv])}
    target = saving.path(args, "transport.json")
    target.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
