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
or the packets the previous stage made), warm, after one untimed pass. The pose kind alone
is timed again in every round, beside the graph: `graph_vs_pose_alone` says how close the
graph comes to its slowest stage's own speed (the graph gives pose a CPU of its own).

Usage: python benchmarks/nodes.py [--frames N] [--rounds R] [--json FILE | --save]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import saving  # noqa: E402  (benchmarks/saving.py)
from posegraph.testing import NodeHarness  # noqa: E402

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"


def make(kind_name: str, params: dict, out_dir: Path) -> NodeHarness:
    """Open a node of a built-in kind with its defaults plus `params`, in this process
    (posegraph.testing: the engine's own Context and keyed state)."""
    return NodeHarness(kind_name, params).open()


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
        return self.stages[name].process(inputs, seq=seq)

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
        for stage in self.stages.values():
            stage.close()


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


def clip_frames() -> list[dict]:
    """The bundled clip's frames as capture packets, decoded once."""
    import cv2

    capture = cv2.VideoCapture(str(CLIP))
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    return [{"image": image, "pts_ms": i * 200.0, "index": i} for i, image in enumerate(images)]


def pose_alone_fps(frames: list[dict]) -> float:
    """The pose kind's own speed: its process() on the clip in this process, warm (the
    first pass untimed), as the graph runs it (default params)."""
    with NodeHarness("pose", {}) as pose:
        for timed in (False, True):
            start = time.perf_counter()
            for seq, frame in enumerate(frames):
                pose.process({"frame": frame}, seq=seq)
        return len(frames) / (time.perf_counter() - start)


def node_kinds_alone(out_dir: Path, frames: list[dict]) -> dict[str, float]:
    """Each kind's process() alone on the clip (65 frames, twice: the first pass warms up)."""
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of pose alone, graph and loop; medians reported")
    saving.add_arguments(parser, "nodes.json")
    args = parser.parse_args(argv)
    target = saving.path(args, "nodes.json")
    out_dir = Path(tempfile.mkdtemp(prefix="pg-bench-nodes-"))
    frames = clip_frames()
    print(f"each node kind alone on {CLIP.name} (65 frames, 720x1280, warm):", file=sys.stderr)
    alone = node_kinds_alone(out_dir, frames)
    for name, fps in alone.items():
        print(f"  {name:8s} {fps:9.1f} frames/s", file=sys.stderr)
    rounds = [run_round(r, out_dir, frames, args.frames) for r in range(args.rounds)]
    graph_nodes = rounds[-1]["nodes"]
    # each round runs all three back to back, so a burst of load on this shared machine
    # hits them alike: ratios are taken per round, then the median of those
    ratio = statistics.median(r["graph"] / r["loop"] for r in rounds)
    vs_pose = statistics.median(r["graph"] / r["pose"] for r in rounds)
    result = {
        "command": "python benchmarks/nodes.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "frames": args.frames, "rounds": args.rounds,
        "graph_fps": round(statistics.median(r["graph"] for r in rounds), 2),
        "loop_fps": round(statistics.median(r["loop"] for r in rounds), 2),
        "pose_alone_fps": round(statistics.median(r["pose"] for r in rounds), 2),
        "graph_vs_loop": round(ratio, 3), "graph_vs_pose_alone": round(vs_pose, 3),
        "graph_runs_fps": [round(r["graph"], 2) for r in rounds], "loop_runs_fps": [round(r["loop"], 2) for r in rounds],
        "pose_alone_runs_fps": [round(r["pose"], 2) for r in rounds],
        "node_kinds_alone_fps": alone,
        "graph_nodes": {n: {k: m[k] for k in ("fps", "proc_ms_p50", "proc_ms_p95", "latency_ms_p50", "rss_mb")} for n, m in graph_nodes.items()},
    }
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"demo graph {result['graph_fps']:.1f} frames/s, single-process loop {result['loop_fps']:.1f}, pose alone "
          f"{result['pose_alone_fps']:.1f} (medians); graph/loop {ratio:.2f}x, graph/pose alone {vs_pose:.2f}x "
          f"(medians of {args.rounds} rounds, {args.frames} frames each); wrote {target}")
    return 0


def run_round(index: int, out_dir: Path, frames: list[dict], count: int) -> dict:
    """Pose alone, the demo graph and the single-process loop, one after the other."""
    pose = pose_alone_fps(frames)
    graph, nodes = graph_fps(out_dir, count)
    pipeline = Pipeline(out_dir, count)
    loop = pipeline.run()
    pipeline.close()
    print(f"round {index + 1}: pose alone {pose:.1f} frames/s, graph {graph:.1f}, single-process loop {loop:.1f}", file=sys.stderr)
    return {"pose": pose, "graph": graph, "loop": loop, "nodes": nodes}


if __name__ == "__main__":
    sys.exit(main())
