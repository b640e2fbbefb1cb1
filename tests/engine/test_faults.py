"""Faults injected into real runs: node processes SIGKILLed at random moments, alone and in
pairs, in the demo graph and in the two-stream graph. Every run must end by itself with
exit 0 and give exactly the output of a run nobody touched: every record once, in order,
equal field for field (repetition counts and smoothed scores included: keyed state is
kept across a restart, posegraph.runtime.checkpoints), and a video with every frame once.

The pose node runs in static-image mode here: its tracker's state (the previous frame's
region) is not kept across a restart, and a restarted tracker finds slightly different
landmarks (README, "Reliability"); static mode makes each frame's landmarks depend on
that frame alone, so any difference left is the engine's.

The moments are random; the seed is printed on failure. POSEGRAPH_FAULT_ROUNDS=N runs
every case N times (default 1; CI keeps 1).
"""
import os
import random
import signal
import subprocess
import time

import cv2
import pytest

from conftest import ROOT
from posegraph.testing import GraphRun

ROUNDS = int(os.environ.get("POSEGRAPH_FAULT_ROUNDS", "1"))
SEED = int(os.environ.get("POSEGRAPH_FAULT_SEED", str(random.randrange(1 << 30))))
FRAMES = 65  # pose_squats.mp4
STATIC = ["--set", "pose.static_image_mode=true"]

DEMO = {"graph": "demo", "records": ["demo.jsonl"], "videos": ["demo.mp4"],
        "set": ["records.path={dir}/demo.jsonl", "video.path={dir}/demo.mp4"]}
TWO_STREAMS = {"graph": "multi_stream", "records": ["multi.cam_a.jsonl", "multi.cam_b.jsonl"],
               "videos": ["multi.cam_a.mp4", "multi.cam_b.mp4"],
               "set": ["records.path={dir}/multi.jsonl", "video.path={dir}/multi.mp4"]}


def start(graph: dict, directory) -> GraphRun:
    args = [*STATIC]
    for item in graph["set"]:
        args += ["--set", item.format(dir=directory)]
    return GraphRun(ROOT / "graphs" / f"{graph['graph']}.yaml", args, directory=directory, cwd=ROOT)


def video_frames(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def outputs(run: GraphRun, graph: dict) -> dict:
    found = {name: run.records(name) for name in graph["records"]}
    found.update({name: video_frames(run.dir / name) for name in graph["videos"]})
    return found


@pytest.fixture(scope="module")
def untouched(tmp_path_factory):
    """The output of each graph run once with nobody killed."""
    found = {}
    for graph in (DEMO, TWO_STREAMS):
        directory = tmp_path_factory.mktemp(graph["graph"])
        run = start(graph, directory)
        assert run.wait(timeout=180) == 0, run.stderr[-2000:]
        found[graph["graph"]] = outputs(run, graph)
        for name in graph["records"]:
            assert [r["seq"] for r in found[graph["graph"]][name]] == list(range(FRAMES))
        for name in graph["videos"]:
            assert found[graph["graph"]][name] == FRAMES
    return found


def where_it_stood(run: GraphRun, graph: dict) -> str:
    """A hung run, stopped with SIGTERM so it writes its metrics: how far each output and
    node got, and the end of what the runner said (what a hang is diagnosed from)."""
    run.proc.send_signal(signal.SIGTERM)
    try:
        _, stderr = run.proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        run.kill()
        stderr = ""
    lines = [f"{name}: {len(run.records(name))} records" for name in graph["records"]]
    try:
        lines += [f"{node}: in {m['frames_in']} out {m['frames_out']} restarts {m['restarts']} lost {m['lost']}"
                  for node, m in run.metrics["nodes"].items()]
    except (OSError, ValueError, KeyError):
        lines.append("no metrics written")
    return "\n".join(lines) + "\n" + (stderr or "")[-4000:]


def wait_for_the_leading_stream(run: GraphRun, names: list[str], count: int, timeout: float = 120) -> None:
    """Until one of the record files holds `count` records. The stream furthest along sets
    the moment, so no stream is complete yet, and a source's process lives until its
    stream is released downstream: every victim is still there to be killed. (Waiting on
    one stream's file let the other stream, ahead on a busy machine, end first.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if max(len(run.records(name)) for name in names) >= count:
            return
        if run.proc.poll() is not None:
            raise AssertionError(f"runner exited early: {run.proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} records in any of {names} within {timeout:g} s")


def kill_and_compare(untouched, graph: dict, victims: list[str], tmp_path, rng: random.Random) -> None:
    """Run `graph`, SIGKILL every process of `victims` at the same moment (after a random
    number of records), and compare what the run left with the untouched run's."""
    for round_ in range(ROUNDS):
        directory = tmp_path / f"round{round_}"
        directory.mkdir()
        at = rng.randint(5, FRAMES - 15)
        run = start(graph, directory)
        try:
            wait_for_the_leading_stream(run, graph["records"], at)
            pids = [run.worker_pid(victim)[0] for victim in victims]
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            code = run.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{graph['graph']}: killing {victims} after {at} records hung (seed {SEED}, round {round_})\n"
                        + where_it_stood(run, graph))
        finally:
            run.kill()
        where = f"{graph['graph']}: killed {victims} after {at} records (seed {SEED})"
        assert code == 0, f"{where}: exit {code}\n{run.stderr[-3000:]}"
        got = outputs(run, graph)
        for name in graph["videos"]:
            assert got[name] == FRAMES, f"{where}: {name} holds {got[name]} of {FRAMES} frames"
        for name in graph["records"]:
            expected = untouched[graph["graph"]][name]
            assert [r["seq"] for r in got[name]] == list(range(FRAMES)), f"{where}: {name} seqs"
            for mine, theirs in zip(got[name], expected):
                assert mine == theirs, f"{where}: {name} seq {mine['seq']} differs: " + ", ".join(
                    k for k in theirs if mine.get(k) != theirs.get(k))


DEMO_NODES = ["camera", "pose", "embed", "knn", "smooth", "reps", "render", "video", "records"]
DEMO_PAIRS = [["camera", "pose"], ["camera", "render"], ["camera", "records"],  # the source and each consumer
              ["render", "records"], ["pose", "render"],                         # two consumers
              ["camera", "pose", "embed", "render", "records"]]                   # five at once


@pytest.mark.parametrize("node", DEMO_NODES)
def test_any_node_of_the_demo_killed_mid_stream_changes_nothing(untouched, node, tmp_path):
    kill_and_compare(untouched, DEMO, [f"{node}.0"], tmp_path, random.Random(SEED + DEMO_NODES.index(node)))


@pytest.mark.parametrize("nodes", DEMO_PAIRS, ids=["+".join(p) for p in DEMO_PAIRS])
def test_nodes_of_the_demo_killed_together_change_nothing(untouched, nodes, tmp_path):
    kill_and_compare(untouched, DEMO, [f"{n}.0" for n in nodes], tmp_path, random.Random(SEED + len(nodes)))


STREAM_PAIRS = [["cam_a.0", "pose.0"], ["cam_b.0", "pose.1"],   # a source and its consumer
                ["pose.0", "pose.1"],                             # a node and its replica
                ["cam_a.0", "cam_b.0"], ["smooth.0", "records.0"]]


@pytest.mark.parametrize("victims", STREAM_PAIRS, ids=["+".join(p) for p in STREAM_PAIRS])
def test_nodes_of_the_two_stream_graph_killed_together_change_nothing(untouched, victims, tmp_path):
    kill_and_compare(untouched, TWO_STREAMS, victims, tmp_path, random.Random(SEED + 100 + STREAM_PAIRS.index(victims)))
