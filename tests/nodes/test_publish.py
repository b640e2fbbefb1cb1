"""Results out to other programs, live: the `zmq` sink, `jsonl` with `path: -` (stdout) and
the `coco` sink.

One real run of the bundled clip (capture -> pose, each node its own process) feeds all
three at once, with the README's subscriber example (the very code block of README.md,
"Results to your own program") running as a program of its own against the `zmq` sink.
The other tests use the `synthetic` source (fast) or the library alone.
"""
import json
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq
import zmq.auth

from conftest import ROOT, GraphRun

from posegraph.pose import coco
from posegraph.pose import landmarks as lm
from posegraph.pose.publish import Publisher

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"  # 65 frames, 720x1280
FRAMES, WIDTH, HEIGHT = 65, 720, 1280


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_subscriber() -> str:
    """The Python block that follows the line saying "subscriber example" in README.md."""
    text = (ROOT / "README.md").read_text()
    at = next(i for i, line in enumerate(text.splitlines()) if "subscriber example" in line)
    rest = "\n".join(text.splitlines()[at:])
    found = re.search(r"```python\n(.*?)```", rest, re.DOTALL)
    assert found, "no ```python block after the subscriber example line"
    return found.group(1)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# ----- one real run feeds the three ------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("publish")
    address = f"tcp://127.0.0.1:{free_port()}"
    subscriber_file = tmp / "subscriber.py"
    subscriber_file.write_text(readme_subscriber())
    # the subscriber starts first and waits; the graph waits for it (wait_for) in turn
    subscriber = subprocess.Popen([sys.executable, str(subscriber_file), address], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
    run = GraphRun(tmp, f"""
name: results-out
nodes:
  - id: camera
    uses: capture
    params: {{source: {CLIP}}}
  - id: pose
    uses: pose
    inputs: {{frame: camera/frame}}
  - id: records
    uses: jsonl
    params: {{path: "-"}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks}}
  - id: publish
    uses: zmq
    params: {{address: "{address}", wait_for: 1, wait_s: 30}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks}}
  - id: coco
    uses: coco
    params: {{path: TMP/coco.json}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks}}
""")
    try:
        code = run.wait(timeout=90)
        heard, said = subscriber.communicate(timeout=20)
    finally:
        run.kill()
        if subscriber.poll() is None:
            subscriber.kill()
    assert code == 0, run.stderr
    assert subscriber.returncode == 0, said
    return {"run": run, "heard": heard, "tmp": tmp}


def test_the_readme_subscriber_receives_every_record_in_order_then_the_end(clip_run):
    messages = [json.loads(line) for line in clip_run["heard"].splitlines()]
    records, end = messages[:-1], messages[-1]
    assert [r["seq"] for r in records] == list(range(FRAMES))
    assert end == {"stream": 0, "source": "camera", "end": True, "records": FRAMES}
    assert all(len(r["landmarks"]) == 33 for r in records)  # the pose found her in every frame
    # the same records as the jsonl sink's, field for field
    assert records == [json.loads(line) for line in clip_run["run"].stdout.splitlines()]
    assert clip_run["run"].metrics["nodes"]["publish"]["lost"] == 0


def test_jsonl_to_stdout_gives_one_line_per_frame_and_nothing_else(clip_run):
    lines = clip_run["run"].stdout.splitlines()
    assert len(lines) == FRAMES
    records = [json.loads(line) for line in lines]  # every line is a record: no runner output mixed in
    assert [r["seq"] for r in records] == list(range(FRAMES))
    assert {r["source"] for r in records} == {"camera"}
    assert "graph 'results-out'" in clip_run["run"].stderr  # the runner's own lines went to stderr
    assert not list(clip_run["tmp"].glob("-*")), "a file named '-' was written"


def test_coco_results_have_17_pixel_keypoints_per_person_and_an_image_id_per_frame(clip_run):
    results = json.loads((clip_run["tmp"] / "coco.json").read_text())
    assert [r["image_id"] for r in results] == list(range(FRAMES))  # one person in each frame
    assert not list(clip_run["tmp"].glob(".coco.json*")), "the journal was left behind"
    first = json.loads(clip_run["run"].stdout.splitlines()[0])
    for entry in results:
        assert set(entry) == {"image_id", "category_id", "keypoints", "score"}
        assert entry["category_id"] == 1 and 0 <= entry["score"] <= 1
        points = np.array(entry["keypoints"], dtype=float).reshape(17, 3)
        assert (points[:, 0] >= 0).all() and (points[:, 0] < WIDTH).all()
        assert (points[:, 1] >= 0).all() and (points[:, 1] < HEIGHT).all()
        assert ((points[:, 2] >= 0) & (points[:, 2] <= 1)).all()
    # BlazePose's 33 became COCO-17 by name: frame 0's nose and left wrist are the record's
    blaze = np.array(first["landmarks"], dtype=float)
    points = np.array(results[0]["keypoints"]).reshape(17, 3)
    for name in ("nose", "left_wrist", "right_ankle"):
        assert points[lm.COCO_NAMES.index(name), :2] == pytest.approx(blaze[lm.BLAZEPOSE_NAMES.index(name), :2], abs=0.01)


# ----- errors ------------------------------------------------------------------------------------
def synthetic_graph(params: str, count: int = 5) -> str:
    return f"""
name: publish-errors
nodes:
  - id: source
    uses: synthetic
    params: {{width: 32, height: 24, count: {count}}}
  - id: publish
    uses: zmq
    params: {params}
    inputs: {{frame: source/frame}}
"""


def test_an_address_that_cannot_be_bound_is_one_line_naming_the_node_and_field(tmp_path):
    run = GraphRun(tmp_path, synthetic_graph('{address: "tcp://192.0.2.1:5560"}'))  # not this computer's
    assert run.wait(timeout=30) == 1
    errors = error_lines(run.stderr)
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith("error: node 'publish' field 'params.address': cannot bind 'tcp://192.0.2.1:5560'"), errors
    # a malformed address is refused by `check`, before anything starts
    run = GraphRun(tmp_path, synthetic_graph('{address: "localhost:5560"}'))
    assert run.wait(timeout=30) == 2
    errors = error_lines(run.stderr)
    assert len(errors) == 1 and "node 'publish' field 'params.address'" in errors[0] and "tcp://HOST:PORT" in errors[0]


def test_nobody_subscribing_within_wait_s_is_one_line_naming_wait_for(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    run = GraphRun(tmp_path, synthetic_graph(f'{{address: "{address}", wait_for: 1, wait_s: 0.5}}'))
    assert run.wait(timeout=30) == 1
    errors = error_lines(run.stderr)
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith("error: node 'publish' field 'params.wait_for': 0 of 1 subscriber(s)"), errors


# ----- CURVE ---------------------------------------------------------------------------------------
def _listen(sock, got: list, stop: threading.Event) -> None:
    while not stop.is_set():
        if sock.poll(50):
            got.append(json.loads(sock.recv()))


def test_with_curve_only_a_subscriber_holding_a_known_key_receives_anything(tmp_path):
    from posegraph.commands import keys as keys_command

    keys = tmp_path / "keys"
    assert keys_command.main([str(keys)]) == 0 and keys_command.main([str(keys), "client"]) == 0
    assert keys_command.main([str(tmp_path / "other"), "stranger"]) == 0  # a pair the graph does not know
    server_public, _ = zmq.auth.load_certificate(str(keys / "public" / "graph.key"))
    address = f"tcp://127.0.0.1:{free_port()}"
    zctx = zmq.Context()
    subscribers = {}
    for name, secret_file in (("client", keys / "private" / "client.key_secret"),
                              ("stranger", tmp_path / "other" / "private" / "stranger.key_secret"), ("plain", None)):
        sock = zctx.socket(zmq.SUB)
        if secret_file is not None:
            sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(str(secret_file))
            sock.curve_serverkey = server_public
        sock.connect(address)
        sock.subscribe(b"")
        subscribers[name] = (sock, [])
    stop = threading.Event()
    threads = [threading.Thread(target=_listen, args=(sock, got, stop), daemon=True) for sock, got in subscribers.values()]
    for thread in threads:
        thread.start()
    try:
        run = GraphRun(tmp_path, synthetic_graph(f'{{address: "{address}", wait_for: 1, wait_s: 20, curve: {keys}}}', 20))
        assert run.wait(timeout=60) == 0, run.stderr
        deadline = time.monotonic() + 10
        while not subscribers["client"][1] or not subscribers["client"][1][-1].get("end"):
            assert time.monotonic() < deadline, "the keyed subscriber did not get the end of the stream"
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(2)
        zctx.destroy(linger=0)
    client = subscribers["client"][1]
    assert [r["seq"] for r in client[:-1]] == list(range(20)) and client[-1]["end"] is True
    assert subscribers["stranger"][1] == [] and subscribers["plain"][1] == []


# ----- the library alone -----------------------------------------------------------------------
def test_a_full_subscriber_makes_sends_fail_loudly_never_silently():
    publisher = Publisher(f"tcp://127.0.0.1:{free_port()}", hwm=2, send_timeout_ms=0)
    zctx = zmq.Context()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 2)
    sub.connect(publisher.address)
    sub.subscribe(b"")
    try:
        assert publisher.wait_for(1, 5)
        big = {"stream": 0, "seq": 0, "blob": "x" * 100_000}
        outcomes = [publisher.send(big) for _ in range(200)]  # nobody reads: queues and kernel buffers fill
        assert outcomes[0] == "sent" and "dropped" in outcomes
    finally:
        zctx.destroy(linger=0)
        publisher.close(linger_ms=0)


def test_coco17_from_each_layout():
    blaze = np.random.default_rng(1).uniform(0, 500, (33, 4))
    blaze[:, 3] = 0.5
    converted = coco.coco17(blaze, "blazepose33")
    assert converted[:, :2] == pytest.approx(blaze[lm.BLAZEPOSE_TO_COCO, :2]) and (converted[:, 2] == 0.5).all()
    assert coco.coco17(blaze) == pytest.approx(converted)  # guessed from the count
    assert coco.coco17(blaze[lm.BLAZEPOSE_TO_COCO], "coco17") == pytest.approx(converted)  # MoveNet, PoseNet
    # a custom layout: the COCO points it lacks are [0, 0, 0]; non-finite points too
    names = ("left_shoulder", "right_shoulder", "left_hip")
    custom = np.array([[10, 20, 0, 0.9], [30, 40, 0, 1.5], [np.nan, 5, 0, 1.0]])
    out = coco.coco17(custom, lm.custom_layout(names))
    assert out[lm.COCO_NAMES.index("left_shoulder")].tolist() == [10, 20, 0.9]
    assert out[lm.COCO_NAMES.index("right_shoulder")].tolist() == [30, 40, 1.0]  # confidence clipped to 0..1
    assert out[lm.COCO_NAMES.index("left_hip")].tolist() == [0, 0, 0]
    assert out[lm.COCO_NAMES.index("nose")].tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        coco.coco17(np.zeros((20, 4)))


def test_several_people_give_one_entry_each_and_nobody_gives_none():
    from posegraph.pose.people import merge

    def person(x, score):
        px = np.zeros((17, 4), np.float32)
        px[:, 0], px[:, 3] = x, 0.8
        return {"px": px, "width": 640, "height": 480, "layout": "coco17", "score": score}

    packet = merge([(3, person(100, 0.9)), (7, person(200, None))])
    entries = coco.frame_results(packet, 12)
    assert [e["image_id"] for e in entries] == [12, 12]
    assert [e["keypoints"][0] for e in entries] == [100, 200]
    assert [e["score"] for e in entries] == [0.9, 0.8]  # no model score: the keypoints' mean confidence
    assert coco.frame_results(None, 13) == []


def test_a_results_file_resumed_mid_stream_keeps_each_frame_once(tmp_path):
    path = str(tmp_path / "r.json")
    first = coco.ResultsFile(path, 0, 0)
    for seq in range(5):
        first.add(0, seq, [{"image_id": seq}])
    first.journal.out.flush()  # killed here: never closed
    again = coco.ResultsFile(path, 0, 3)  # restarted at seq 3
    assert again.written == 4
    assert [again.add(0, seq, [{"image_id": seq}]) for seq in range(3, 7)] == [False, False, True, True]
    again.close()
    assert [e["image_id"] for e in json.loads((tmp_path / "r.json").read_text())] == list(range(7))
    assert not (tmp_path / ".r.json.partial").exists()
