#!/usr/bin/env python3
"""Frames per second of each pose-pipeline node kind alone, and of the whole demo graph
against one process doing the same work frame after frame, in the same invocation.

The graph runs `graphs/demo.yaml` (capture -> pose -> embed -> knn -> smooth -> reps ->
render -> video + jsonl, one process per node). The baseline is the loop users write
by hand: the very same node classes called one after the other in this one process
(read, pose, embed, KNN, EMA, reps, draw, write video and JSON lines). Both handle the
bundled clip looped to FRAMES frames; both are timed from their first to their last frame,
so model loading and process start-up are left out of both.

Each node kind alone: its `process` called in this process on the clip's data (frames,
or the packets the previous stage made), warm, after one untimed pass.

Usage: python benchmarks/nodes.py [--frames N] [--rounds R] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"


class LoopContext:
    """What a node may ask of the engine, for nodes called directly in one process."""

    def __init__(self, node_id: str, inputs=()):
        self.node_id, self.replica, self.replicas = node_id, 0, 1
        self.stream, self.seq, self.capture_ns, self.resume_seq = 0, 0, 0, 0
        self.counters: dict[str, int] = {}
        self.wired_inputs = frozenset(inputs)

    def alloc(self, port, shape, dtype=np.uint8, name=""):
        return np.empty(shape, dtype)

    def count(self, name, n=1):
        self.counters[name] = self.counters.get(name, 0) + n

    def progress(self, done, total):
        pass

    def graph_fps(self):
        return {}

    def log(self, message):
        print(f"[{self.node_id}] {message}", file=sys.stderr)


def make(kind_name: str, params: dict, out_dir: Path):
    """Open a node of a built-in kind with its defaults plus `params`, in this process."""
    from posegraph.kinds import resolve_kind

    kind = resolve_kind(kind_name, ROOT)
    values = {name: decl.default for name, decl in kind.PARAMS.items()} | params
    node = kind(values)
    ctx = LoopContext(kind_name, kind.INPUTS)
    node.open(ctx)
    return node, ctx


class Pipeline:
    """The demo graph's work, node after node, in one process."""

    def __init__(self, out_dir: Path, frames: int):
        self.stages = {
            "capture": make("capture", {"source": str(CLIP), "loop": True}, out_dir),
            "pose": make("pose", {}, out_dir),
            "embed": make("embed", {}, out_dir),
            "knn": make("knn", {}, out_dir),
            "smooth": make("smooth", {}, out_dir),
            "reps": make("reps", {"class_name": "squats_down"}, out_dir),
            "render": make("render", {}, out_dir),
            "video": make("video", {"path": str(out_dir / "loop.mp4")}, out_dir),
            "records": make("jsonl", {"path": str(out_dir / "loop.jsonl")}, out_dir),
        }
        self.frames = frames

    def call(self, name, inputs, seq):
        node, ctx = self.stages[name]
        ctx.seq = seq
        return node.process(inputs, ctx) or {}

    def step(self, seq: int) -> None:
        frame = self.call("capture", {}, seq)["frame"]
        landmarks = self.call("pose", {"frame": frame}, seq).get("landmarks")
        features = self.call("embed", {"landmarks": landmarks}, seq).get("features")
        votes = self.call("knn", {"features": features}, seq).get("votes")
        scores = self.call("smooth", {"votes": votes}, seq).get("scores")
        reps = self.call("reps", {"scores": scores}, seq).get("count")
        packets = {"frame": frame, "landmarks": landmarks, "votes": votes, "scores": scores, "reps": reps}
        drawn = self.call("render", packets, seq).get("frame")
        self.call("video", {"frame": drawn}, seq)
        self.call("records", packets, seq)

    def run(self) -> float:
        """Frames per second from the first frame's start to the last frame's end."""
        start = time.perf_counter()
        for seq in range(self.frames):
            self.step(seq)
        return (self.frames - 1) / (time.perf_counter() - start) if self.frames > 1 else 0.0

    def close(self) -> None:
        for node, _ in self.stages.values():
            node.close()


def graph_fps(out_dir: Path, frames: int) -> tuple[float, dict]:
    from posegraph.spec import load_graph
    from posegraph.supervisor import Supervisor

    metrics = out_dir / "graph.metrics.json"
    spec = load_graph(ROOT / "graphs" / "demo.yaml", [
        f"camera.source={CLIP}", "camera.loop=true",
        f"video.path={out_dir / 'graph.mp4'}", f"records.path={out_dir / 'graph.jsonl'}"])
    with open(os.devnull, "w") as quiet:
        code = Supervisor(spec, max_frames=frames, metrics_path=str(metrics), live=False, out=quiet).run()
    if code != 0:
        raise SystemExit(f"the demo graph failed (exit {code})")
    nodes = json.loads(metrics.read_text())["nodes"]
    return nodes["records"]["fps"], nodes


def node_kinds_alone(out_dir: Path) -> dict[str, float]:
    """Each kind's process() alone on the clip (65 frames, twice: the first pass warms up)."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    frames = [{"image": image, "pts_ms": i * 200.0, "index": i} for i, image in enumerate(images)]
    pipeline = Pipeline(out_dir, 0)
    packets = {name: [] for name in ("landmarks", "features", "votes", "scores", "reps", "drawn")}
    for seq, frame in enumerate(frames):  # the packets each stage gets, made once
        lm = pipeline.call("pose", {"frame": frame}, seq).get("landmarks")
        ft = pipeline.call("embed", {"landmarks": lm}, seq).get("features")
        vt = pipeline.call("knn", {"features": ft}, seq).get("votes")
        sc = pipeline.call("smooth", {"votes": vt}, seq).get("scores")
        rp = pipeline.call("reps", {"scores": sc}, seq).get("count")
        dr = pipeline.call("render", {"frame": frame, "landmarks": lm, "votes": vt, "scores": sc, "reps": rp}, seq).get("frame")
        for name, value in zip(packets, (lm, ft, vt, sc, rp, dr)):
            packets[name].append(value)
    inputs = {
        "capture": lambda i: {},
        "pose": lambda i: {"frame": frames[i]},
        "embed": lambda i: {"landmarks": packets["landmarks"][i]},
        "knn": lambda i: {"features": packets["features"][i]},
        "smooth": lambda i: {"votes": packets["votes"][i]},
        "reps": lambda i: {"scores": packets["scores"][i]},
        "render": lambda i: {"frame": frames[i], "landmarks": packets["landmarks"][i], "votes": packets["votes"][i],
                             "scores": packets["scores"][i], "reps": packets["reps"][i]},
        "video": lambda i: {"frame": packets["drawn"][i]},
        "records": lambda i: {"frame": frames[i], "landmarks": packets["landmarks"][i], "votes": packets["votes"][i],
                              "scores": packets["scores"][i], "reps": packets["reps"][i]},
    }
    rates = {}
    n = len(frames)
    for name, make_inputs in inputs.items():
        for timed in (False, True):
            start = time.perf_counter()
            for i in range(n):
                pipeline.call(name, make_inputs(i), i)
            if timed:
                rates[name] = round(n / (time.perf_counter() - start), 1)
    pipeline.close()
    return rates


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=260, help="frames per run (the 65-frame clip, looped)")
    parser.add_argument("--rounds", type=int, default=3, help="graph and loop runs, alternating; medians reported")
    parser.add_argument("--json", default=str(Path(__file__).with_name("nodes.json")))
    args = parser.parse_args(argv)
    out_dir = Path(tempfile.mkdtemp(prefix="pg-bench-nodes-"))
    print(f"each node kind alone on {CLIP.name} (65 frames, 720x1280, warm):", file=sys.stderr)
    alone = node_kinds_alone(out_dir)
    for name, fps in alone.items():
        print(f"  {name:8s} {fps:9.1f} frames/s", file=sys.stderr)
    graph_runs, loop_runs, graph_nodes = [], [], {}
    for round_ in range(args.rounds):
        fps, graph_nodes = graph_fps(out_dir, args.frames)
        graph_runs.append(fps)
        pipeline = Pipeline(out_dir, args.frames)
        loop_runs.append(pipeline.run())
        pipeline.close()
        print(f"round {round_ + 1}: graph {graph_runs[-1]:.1f} frames/s, single-process loop {loop_runs[-1]:.1f} frames/s", file=sys.stderr)
    graph, loop = statistics.median(graph_runs), statistics.median(loop_runs)
    # each round runs both back to back, so a burst of load on this shared machine hits
    # both alike: the ratio is taken per round, then the median of those
    ratio = statistics.median(g / l for g, l in zip(graph_runs, loop_runs))
    result = {
        "command": "python benchmarks/nodes.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "frames": args.frames, "rounds": args.rounds,
        "graph_fps": round(graph, 2), "loop_fps": round(loop, 2), "graph_vs_loop": round(ratio, 3),
        "graph_runs_fps": [round(x, 2) for x in graph_runs], "loop_runs_fps": [round(x, 2) for x in loop_runs],
        "node_kinds_alone_fps": alone,
        "graph_nodes": {n: {k: m[k] for k in ("fps", "proc_ms_p50", "proc_ms_p95", "latency_ms_p50", "rss_mb")} for n, m in graph_nodes.items()},
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"demo graph {graph:.1f} frames/s vs single-process loop {loop:.1f} frames/s (medians); "
          f"graph/loop {ratio:.2f}x (median of {args.rounds} paired rounds, {args.frames} frames each); saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
