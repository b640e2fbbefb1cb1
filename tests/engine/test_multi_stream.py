"""Several sources in one graph: the nodes below them take every stream on one port, keep
each stream's packets in order and apart, and shard stateful replicas by stream."""
import subprocess
import sys

import pytest

from conftest import ROOT

TWO_STREAMS = """
name: two_streams
nodes:
  - {id: cam_a, uses: synthetic, params: {width: 320, height: 240, count: 120, fps: 0}}
  - {id: cam_b, uses: synthetic, params: {width: 160, height: 120, count: 80, fps: 0}}
  - {id: hop, uses: passthrough, replicas: 2, inputs: {frame: [cam_a/frame, cam_b/frame]}}
  - {id: log, uses: TESTS/engine_test_nodes.py:StreamLog, replicas: REPLICAS, params: {record: TMP/log.jsonl}, inputs: {frame: hop/frame}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl}, inputs: {frame: log/frame}}
"""


def by_stream(records):
    streams = {}
    for r in records:
        streams.setdefault(r["stream"], []).append(r)
    return streams


def test_two_sources_share_the_nodes_below_each_stream_whole_and_in_order(graph_run):
    run = graph_run(TWO_STREAMS.replace("REPLICAS", "1"))
    assert run.wait() == 0, run.stderr
    log = by_stream(run.records("log.jsonl"))
    assert [r["seq"] for r in log["cam_a"]] == list(range(120))
    assert [r["seq"] for r in log["cam_b"]] == list(range(80))
    assert all(r["in_order"] and r["stamp"] == r["seq"] for r in log["cam_a"] + log["cam_b"])
    assert {r["shape"][1] for r in log["cam_a"]} == {320} and {r["shape"][1] for r in log["cam_b"]} == {160}
    sink = by_stream(run.records())  # the null sink records stream ids
    assert [r["seq"] for r in sink[0]] == list(range(120)) and [r["seq"] for r in sink[1]] == list(range(80))
    # metrics per node and per stream
    assert run.metrics["nodes"]["sink"]["streams"] == {"cam_a": 120, "cam_b": 80}
    assert run.metrics["nodes"]["hop"]["streams"] == {"cam_a": 120, "cam_b": 80}


def test_stateful_replicas_each_own_whole_streams(graph_run):
    run = graph_run(TWO_STREAMS.replace("REPLICAS", "2"))
    assert run.wait() == 0, run.stderr
    log = by_stream(run.records("log.jsonl"))
    pid_a = {r["pid"] for r in log["cam_a"]}
    pid_b = {r["pid"] for r in log["cam_b"]}
    assert len(pid_a) == 1 and len(pid_b) == 1 and pid_a != pid_b  # one process per stream, both at work
    assert [r["seq"] for r in log["cam_a"]] == list(range(120)) and all(r["in_order"] for r in log["cam_a"] + log["cam_b"])
    assert [r["seq"] for r in log["cam_b"]] == list(range(80))


def check(tmp_path, text):
    graph = tmp_path / "g.yaml"
    graph.write_text(text)
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", str(graph)], capture_output=True, text=True, cwd=ROOT)
    return done.returncode, done.stderr.strip()


@pytest.mark.parametrize("inputs, message", [
    ("{frame: [cam_a/frame, cam_a/frame]}", "node 'hop' field 'inputs.frame': 'cam_a' is listed twice"),
    ("{frame: []}", "node 'hop' field 'inputs.frame': an empty list; give producer_id/output_port or a list of them (one per stream)"),
    ("{frame: [cam_a/frame, mid/frame]}", "node 'hop' field 'inputs.frame': 'cam_a' and 'mid' both carry stream 'cam_a'; "
                                          "producers merged on one port must carry different streams"),
])
def test_merged_producers_must_carry_different_streams(tmp_path, inputs, message):
    code, err = check(tmp_path, f"""
name: t
nodes:
  - {{id: cam_a, uses: synthetic}}
  - {{id: mid, uses: passthrough, inputs: {{frame: cam_a/frame}}}}
  - {{id: hop, uses: passthrough, inputs: {inputs}}}
""")
    assert code == 2 and err.endswith(message), err


def test_every_input_of_a_node_must_carry_the_same_streams(tmp_path):
    code, err = check(tmp_path, """
name: t
nodes:
  - {id: cam_a, uses: synthetic}
  - {id: cam_b, uses: synthetic}
  - {id: pair, uses: TESTS/engine_test_nodes.py:Pair, inputs: {left: [cam_a/frame, cam_b/frame], right: cam_a/frame}}
""".replace("TESTS", str(ROOT / "tests" / "support")))
    assert code == 2
    assert err.endswith("node 'pair' field 'inputs.right': inputs 'left' and 'right' carry different streams (only one has cam_b); "
                        "every input of a node must carry the same streams, or its joins never complete"), err


def _demo_run(tmp_path, graph, name, *sets):
    """Run a shipped graph through the CLI with its outputs moved into tmp_path."""
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(ROOT / graph), "--no-live",
                           "--set", f"records.path={tmp_path / name}.jsonl", "--set", f"video.path={tmp_path / name}.mp4", *sets],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def _records(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_different_inputs_through_the_multi_stream_graph_equal_each_run_alone(tmp_path):
    """graphs/multi_stream.yaml (the clip as recorded, and mirrored, through one pose node
    with a replica per stream and one chain below) against the demo graph on each alone."""
    import cv2
    import numpy as np

    _demo_run(tmp_path, "graphs/multi_stream.yaml", "multi")
    _demo_run(tmp_path, "graphs/demo.yaml", "alone_a")
    _demo_run(tmp_path, "graphs/demo.yaml", "alone_b", "--set", "camera.flip=true")
    for stream, alone in (("cam_a", "alone_a"), ("cam_b", "alone_b")):
        together, single = _records(tmp_path / f"multi.{stream}.jsonl"), _records(tmp_path / f"{alone}.jsonl")
        assert [r["seq"] for r in together] == list(range(65)) and {r["source"] for r in together} == {stream}
        for a, b in zip(together, single):
            assert (a["class"], a["reps"], a["votes"]) == (b["class"], b["reps"], b["votes"]), (stream, a["seq"])
            assert (a["landmarks"] is None) == (b["landmarks"] is None)
            if a["landmarks"] is not None:
                assert np.abs(np.array(a["landmarks"]) - np.array(b["landmarks"])).max() < 1e-3
        video = cv2.VideoCapture(str(tmp_path / f"multi.{stream}.mp4"))
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 65
    mirrored = _records(tmp_path / "multi.cam_b.jsonl")
    assert mirrored[-1]["reps"] == _records(tmp_path / "multi.cam_a.jsonl")[-1]["reps"] == {"squats_down": 2}


TIGHT = """
name: two_streams_tight
nodes:
  - {id: cam_a, uses: synthetic, params: {width: 64, height: 48, count: 60, fps: 0}}
  - {id: cam_b, uses: synthetic, params: {width: 32, height: 24, count: 60, fps: 0}}
  - {id: hop, uses: passthrough, replicas: 2, inputs: {frame: [cam_a/frame, cam_b/frame]}}
  - {id: log, uses: TESTS/engine_test_nodes.py:StreamLog, queue: {frame: {size: 1}}, params: {record: TMP/log.jsonl}, inputs: {frame: hop/frame}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl}, inputs: {frame: log/frame}}
"""


@pytest.mark.parametrize("attempt", range(4))
def test_two_streams_through_replicas_into_a_one_slot_queue_never_deadlock(graph_run, attempt):
    """Two streams through two replicas into one consumer keep moving. The consumer holds a
    stream's packets until that stream's next seq comes from the other replica. Before,
    (1) one credit window per link, and (2) a replica blocking on one stream's credit while
    it had another stream's work ready, let replica 0 wait on stream B and replica 1 on
    stream A for ever. That was seen in about 1 of 15 runs of a graph like this with queue
    size 4, and in 1 to 2 of 4 runs of this one-slot queue with only (1) fixed. Now credit
    is per (link, stream), and a node fires a stream that has credit."""
    run = graph_run(TIGHT)
    assert run.wait(timeout=60) == 0, run.stderr
    log = by_stream(run.records("log.jsonl"))
    assert [r["seq"] for r in log["cam_a"]] == list(range(60)) and [r["seq"] for r in log["cam_b"]] == list(range(60))
