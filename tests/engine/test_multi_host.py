"""The pose pipeline spread over three hosts: network namespaces joined by veth links, each
with its own network stack, one runner per host, on the bundled real clip.

capture runs on `edge`, BlazePose on `gpu`, features, classifier, counters and sinks on
`sink`. Needs root (to make namespaces); skips with the reason where that is not possible.
"""
import time

import cv2
import numpy as np
import pytest
import zmq
import zmq.auth

from conftest import ROOT
from machine_runs import MachineRun, read_records, wait_for_lines, write_hosts
from netns import three_hosts  # noqa: F401  (the fixture)
from test_security import HOP1_INBOX, Attacker, inject, make_keys

CLIP = ROOT / "data/google_pose_reference/pose_squats.mp4"  # 65 frames, 5 frames/s
GRAPH = """
name: spread_pose
machines: [edge, gpu, sink]
base_port: {port}
{security}
nodes:
  - {{id: camera, uses: capture, machine: edge, params: {{source: {clip}, fps: {fps}}}}}
  - {{id: pose, uses: pose, machine: gpu, inputs: {{frame: camera/frame}}}}
  - {{id: embed, uses: embed, machine: sink, inputs: {{landmarks: pose/landmarks}}}}
  - {{id: knn, uses: knn, machine: sink, inputs: {{features: embed/features}}}}
  - {{id: smooth, uses: smooth, machine: sink, inputs: {{votes: knn/votes}}}}
  - {{id: reps, uses: reps, machine: sink, params: {{class_name: squats_down}}, inputs: {{scores: smooth/scores}}}}
  - id: render
    uses: render
    machine: sink
    params: {{show_fps: false}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}}
  - {{id: video, uses: video, machine: sink, params: {{path: {out}.mp4}}, inputs: {{frame: render/frame}}}}
  - id: records
    uses: jsonl
    machine: sink
    params: {{path: {out}.jsonl}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}}
"""


def pose_graph(tmp_path, name, port=47800, fps=0, security="security: none"):
    graph = tmp_path / f"{name}.yaml"
    graph.write_text(GRAPH.format(port=port, clip=CLIP, fps=fps, out=tmp_path / name, security=security))
    return graph


def frames_of(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def start_hosts(tmp_path, hosts, graph, order=("sink", "gpu", "edge"), tag=""):
    inventory = write_hosts(tmp_path / "hosts.yaml", hosts.inventory())
    return {m: MachineRun(tmp_path, graph, m, inventory, launch=hosts[m].popen, tag=tag) for m in order}


def test_three_hosts_give_the_single_machine_output_frame_for_frame(tmp_path, three_hosts):
    runs = start_hosts(tmp_path, three_hosts, pose_graph(tmp_path, "spread"))
    assert [r.wait(timeout=180) for r in runs.values()] == [0, 0, 0], "\n".join(r.output for r in runs.values())
    single = MachineRun(tmp_path, pose_graph(tmp_path, "single"), None, None)
    assert single.wait(timeout=180) == 0, single.output

    spread, alone = read_records(tmp_path / "spread.jsonl"), read_records(tmp_path / "single.jsonl")
    assert [r["seq"] for r in spread] == list(range(65))
    assert sum(r["landmarks"] is not None for r in spread) >= 60
    for a, b in zip(spread, alone):
        assert (a["seq"], a["class"], a["reps"]) == (b["seq"], b["class"], b["reps"])
        if a["landmarks"] is None or b["landmarks"] is None:
            assert a["landmarks"] == b["landmarks"]
        else:
            assert np.abs(np.array(a["landmarks"]) - np.array(b["landmarks"])).max() < 1e-3
    spread_video, single_video = frames_of(tmp_path / "spread.mp4"), frames_of(tmp_path / "single.mp4")
    assert len(spread_video) == len(single_video) == 65
    assert all(np.array_equal(a, b) for a, b in zip(spread_video, single_video))
    # the frames crossed real tcp links between the hosts' own addresses
    assert runs["gpu"].metrics["nodes"]["pose"]["peers"].keys() == {"edge: camera.0", "sink: embed.0", "sink: render.0", "sink: records.0"}


def test_restarting_the_middle_host_mid_stream_loses_and_duplicates_no_frame(tmp_path, three_hosts):
    graph = pose_graph(tmp_path, "restart", port=47830, fps=5)  # real time: 13 s of clip
    runs = start_hosts(tmp_path, three_hosts, graph)
    wait_for_lines(tmp_path / "restart.jsonl", 15, runs.values(), timeout=90)
    runs["gpu"].kill()
    time.sleep(1.0)
    done_before = len(read_records(tmp_path / "restart.jsonl"))
    assert done_before < 65
    inventory = write_hosts(tmp_path / "hosts.yaml", three_hosts.inventory())
    again = MachineRun(tmp_path, graph, "gpu", inventory, launch=three_hosts["gpu"].popen, tag="-again")
    finals = [runs["sink"].wait(timeout=180), runs["edge"].wait(timeout=180), again.wait(timeout=180)]
    assert finals == [0, 0, 0], runs["sink"].output + runs["edge"].output + again.output
    records = read_records(tmp_path / "restart.jsonl")
    assert [r["seq"] for r in records] == list(range(65))  # every frame exactly once, in order
    assert len(frames_of(tmp_path / "restart.mp4")) == 65
    assert sum(r["landmarks"] is not None for r in records[done_before:]) >= len(records[done_before:]) - 3


def test_a_host_without_the_keys_can_neither_connect_nor_send(tmp_path, three_hosts):
    keys = make_keys(tmp_path / "keys")
    graph = pose_graph(tmp_path, "secure", port=47860, fps=10, security=f"security: {{curve: {keys}}}")
    runs = start_hosts(tmp_path, three_hosts, graph)
    wait_for_lines(tmp_path / "secure.jsonl", 5, runs.values(), timeout=90)
    # from outside every namespace (the bridge's own address), against pose's inbox on gpu
    address = f"tcp://{three_hosts['gpu'].addr}:{47860 + HOP1_INBOX}"
    server_key = zmq.auth.load_certificate(str(keys / "public/graph.key"))[0]
    plain = Attacker(zmq.PUSH, address)
    curve = Attacker(zmq.PUSH, address, curve_server_key=server_key)
    inject(plain)
    inject(curve)
    time.sleep(0.5)
    plain_events, curve_events = plain.events(), curve.events()
    plain.close()
    curve.close()
    assert [r.wait(timeout=180) for r in runs.values()] == [0, 0, 0], "\n".join(r.output for r in runs.values())
    assert [r["seq"] for r in read_records(tmp_path / "secure.jsonl")] == list(range(65))
    assert runs["gpu"].metrics["nodes"]["pose"]["bad_messages"] == 0
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in plain_events | curve_events
    assert zmq.EVENT_HANDSHAKE_FAILED_AUTH in curve_events


@pytest.mark.parametrize("machine", ["gpu"])
def test_a_runner_refuses_an_address_of_another_host(tmp_path, three_hosts, machine):
    """`--machine gpu` started on the edge host: its address is not there, one line says so."""
    graph = pose_graph(tmp_path, "wrong")
    inventory = write_hosts(tmp_path / "hosts.yaml", three_hosts.inventory())
    run = MachineRun(tmp_path, graph, machine, inventory, launch=three_hosts["edge"].popen)
    assert run.wait(timeout=60) == 2
    assert f"machine 'gpu' is at {three_hosts['gpu'].addr}, which is not an address of this computer" in run.output
