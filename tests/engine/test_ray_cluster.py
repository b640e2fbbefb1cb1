"""The pose pipeline on a real Ray cluster: a head and three workers (w1 and w3 alike, so
one can take over the other's group), each in its own network namespace, every Ray
process bound to its namespace's address, token auth on (tests/support/ray_netns.py). Placement comes from `resources:` and `colocate:` only; the
graph names no machine and no address.

Needs root (namespaces) and Ray (`pip install 'posegraph[ray]'`); skips with the reason
otherwise. One cluster serves the whole module (it takes ~15 s to start).
"""
import re
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from conftest import ROOT
from machine_runs import MachineRun, read_records
from netns import ThreeHosts, netns_unavailable_reason
from test_multi_host import CLIP, frames_of
from test_security import Attacker, inject

ray = pytest.importorskip("ray")
from ray_netns import RayCluster  # noqa: E402

# w1 and w3 can both take pose: when one is lost, the other takes its group
RESOURCES = {"head": {"edge": 1}, "w1": {"gpu_box": 1}, "w2": {"sink_box": 1}, "w3": {"gpu_box": 1}}
GRAPH = """
name: cluster_pose
nodes:
  - {{id: camera, uses: capture, resources: {{edge: 1}}, params: {{source: {clip}, fps: {fps}}}}}
  - {{id: pose, uses: pose, resources: {{cpu: 1, gpu_box: 1}}, inputs: {{frame: camera/frame}}}}
  - {{id: embed, uses: embed, resources: {{sink_box: 1}}, inputs: {{landmarks: pose/landmarks}}}}
  - {{id: knn, uses: knn, colocate: [embed], inputs: {{features: embed/features}}}}
  - {{id: smooth, uses: smooth, colocate: [embed], inputs: {{votes: knn/votes}}}}
  - {{id: reps, uses: reps, colocate: [embed], params: {{class_name: squats_down}}, inputs: {{scores: smooth/scores}}}}
  - id: render
    uses: render
    colocate: [embed]
    params: {{show_fps: false}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}}
  - {{id: video, uses: video, colocate: [embed], params: {{path: {out}.mp4}}, inputs: {{frame: render/frame}}}}
  - id: records
    uses: jsonl
    colocate: [embed]
    params: {{path: {out}.jsonl}}
    inputs: {{frame: camera/frame, landmarks: pose/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}}
"""


def cluster_graph(tmp_path, name, fps=0, pose_resources="{cpu: 1, gpu_box: 1}"):
    text = GRAPH.format(clip=CLIP, fps=fps, out=tmp_path / name).replace("{cpu: 1, gpu_box: 1}", pose_resources)
    graph = tmp_path / f"{name}.yaml"
    graph.write_text(text)
    return graph


@pytest.fixture(scope="module")
def cluster():
    reason = netns_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with ThreeHosts(names=("head", "w1", "w2", "w3")) as hosts, RayCluster(hosts, "head", RESOURCES) as ray_cluster:
        yield ray_cluster


class DriverRun:
    """`posegraph run GRAPH --cluster ...` inside the head's namespace, with the run's token."""

    def __init__(self, cluster, graph, *extra, address=None, metrics=None):
        self.log_path = graph.with_suffix(".driver.log")
        self.metrics_path = metrics or graph.with_suffix(".metrics.json")
        argv = [sys.executable, "-m", "posegraph", "run", str(graph), "--cluster", address or cluster.address,
                "--no-live", "--metrics", str(self.metrics_path), *extra]
        self.log = open(self.log_path, "w")
        self.started = time.monotonic()
        self.proc = cluster.hosts[cluster.head].popen(argv, cwd=ROOT, env=cluster.env, stdout=self.log,
                                                      stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout=240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.seconds = time.monotonic() - self.started
            self.log.flush()

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    @property
    def errors(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("error:")]


def test_the_pose_graph_on_the_ray_cluster_gives_the_single_machine_output(tmp_path, cluster):
    run = DriverRun(cluster, cluster_graph(tmp_path, "ray"))
    assert run.wait() == 0, run.output
    single = MachineRun(tmp_path, cluster_graph(tmp_path, "single"), None, None)  # the same file, no --cluster
    assert single.wait(timeout=180) == 0, single.output

    on_ray, alone = read_records(tmp_path / "ray.jsonl"), read_records(tmp_path / "single.jsonl")
    assert [r["seq"] for r in on_ray] == list(range(65))
    assert sum(r["landmarks"] is not None for r in on_ray) >= 60
    for a, b in zip(on_ray, alone, strict=True):
        assert (a["seq"], a["class"], a["reps"]) == (b["seq"], b["class"], b["reps"])
        if a["landmarks"] is None or b["landmarks"] is None:
            assert a["landmarks"] == b["landmarks"]
        else:
            assert np.abs(np.array(a["landmarks"]) - np.array(b["landmarks"])).max() < 1e-3
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(tmp_path / "ray.mp4"), frames_of(tmp_path / "single.mp4"), strict=True))
    # placed by resources: each group on the one Ray node that has its custom resource
    metrics = run.metrics = __import__("json").loads(run.metrics_path.read_text())
    where = {n: m["ray_node"] for n, m in metrics["nodes"].items()}
    hosts = cluster.hosts
    assert where["camera"] == hosts["head"].addr and where["pose"] in (hosts["w1"].addr, hosts["w3"].addr)
    assert {where[n] for n in ("embed", "knn", "render", "video", "records")} == {hosts["w2"].addr}
    # frames crossed CURVE tcp links between the namespaces, shm/ipc inside a group
    assert metrics["nodes"]["pose"]["peers"].keys() == {"g-camera: camera.0", "g-embed: embed.0", "g-embed: render.0",
                                                          "g-embed: records.0"}
    assert "knn.0" not in str(metrics["nodes"]["embed"]["peers"])
    assert f"camera on Ray node {hosts['head'].addr}" in run.output and f"pose on Ray node {where['pose']}" in run.output
    # the final table names each node's Ray node, and so does `draw --where` with the run's metrics
    rows = table_rows(run.output)
    assert set(rows) == set(metrics["nodes"]), run.output
    for node_id, row in rows.items():
        assert row["ray node"].startswith(where[node_id]) and row["out"] == str(metrics["nodes"][node_id]["frames_out"]), row
    from posegraph.cluster.view import where_from_metrics
    from posegraph.draw import draw_graph
    from posegraph.spec import load_graph

    labels = draw_graph(load_graph(tmp_path / "ray.yaml"), str(tmp_path / "ray.png"), where_from_metrics(metrics)).labels
    assert all(labels[n].splitlines()[-1].startswith(f"@{where[n]}") for n in metrics["nodes"]), labels
    drawn = subprocess.run([sys.executable, "-m", "posegraph", "draw", str(tmp_path / "ray.yaml"), "--where", str(run.metrics_path),
                            "-o", str(tmp_path / "where.png")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr


def table_rows(text: str) -> dict[str, dict]:
    """node -> {column: cell} of the cluster table in `text` (the last one drawn)."""
    lines = text.splitlines()
    header_at = max(i for i, line in enumerate(lines) if line.startswith("┃ node"))
    columns = [c.strip() for c in lines[header_at].strip("┃").split("┃")]
    rows = {}
    for line in lines[header_at + 2:]:
        if not line.startswith("│"):
            break
        cells = [c.strip() for c in line.strip("│").split("│")]
        rows[cells[0]] = dict(zip(columns, cells))
    return rows


def test_the_live_table_on_a_terminal_shows_each_node_on_its_ray_node(tmp_path, cluster):
    """The driver in a terminal (a pty in the head's namespace): a live table while the
    groups run, redrawn in place (one table on the screen at the end, none left behind),
    every node's row naming the Ray node its group runs on and counting its frames."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from test_terminal_output import Screen, read_pty

    graph = cluster_graph(tmp_path, "live", fps=10)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 150, 0, 0))
    env = dict(cluster.env, TERM="screen")
    metrics_path = tmp_path / "live.metrics.json"
    proc = cluster.hosts[cluster.head].popen([sys.executable, "-m", "posegraph", "run", str(graph), "--cluster", cluster.address,
                                              "--metrics", str(metrics_path)],
                                             cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    text = read_pty(master, proc, timeout=240).decode("utf-8", "replace")
    assert proc.wait(timeout=10) == 0, text
    screen = Screen(60, 150)
    screen.feed(text)
    lines = screen.text()
    assert sum("┃ node" in line and "ray node" in line for line in lines) == 1, "\n".join(lines)
    assert text.count("cluster_pose on Ray") >= 3, "the table was drawn while the run went on"
    metrics = __import__("json").loads(metrics_path.read_text())
    rows = table_rows("\n".join(lines))
    assert set(rows) == set(metrics["nodes"]), "\n".join(lines)
    for node_id, row in rows.items():
        assert row["ray node"].startswith(metrics["nodes"][node_id]["ray_node"]), row
        assert row["out"] == str(metrics["nodes"][node_id]["frames_out"]), row


def test_without_cluster_ray_is_not_imported(tmp_path):
    graph = cluster_graph(tmp_path, "plain")
    code = ("import sys; from posegraph.cli import main; code = main(['check', sys.argv[1]]); "
            "from posegraph.spec import load_graph; from posegraph.plan import build_plan; "
            "build_plan(load_graph(sys.argv[1]), 'x', '/tmp/x', 'ipc:///tmp/x/c'); "
            "assert code == 0 and not any(m == 'ray' or m.startswith('ray.') for m in sys.modules), sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(graph)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_an_unreachable_cluster_is_one_line_within_the_timeout(tmp_path, cluster):
    nobody = f"ray://{cluster.hosts['w2'].addr}:10001"  # a host with no Ray client server
    run = DriverRun(cluster, cluster_graph(tmp_path, "unreachable"), "--cluster-timeout", "5", address=nobody)
    assert run.wait(timeout=60) == 1, run.output
    assert run.seconds < 15
    assert len(run.errors) == 1 and run.errors[0].startswith(f"error: cannot reach the Ray cluster at {nobody}"), run.output


def test_a_node_asking_for_what_no_ray_node_has_is_one_line_within_the_timeout(tmp_path, cluster):
    graph = cluster_graph(tmp_path, "lacking", pose_resources="{cpu: 1, tpu: 2}")
    run = DriverRun(cluster, graph, "--cluster-timeout", "8")
    assert run.wait(timeout=90) == 1, run.output
    assert run.seconds < 40
    assert len(run.errors) == 1, run.output
    assert re.match(r"error: no room on the Ray cluster for node\(s\) pose, asking cpu: 1, tpu: 2, after 8 s "
                    r"\(no node of the cluster has that much; the cluster has CPU: 4, edge: 1, gpu_box: 2, sink_box: 1\)$",
                    run.errors[0]), run.errors[0]
    assert not (tmp_path / "lacking.jsonl").exists()  # no group started while one had no room


def test_a_peer_outside_the_run_cannot_inject_frames_between_ray_nodes(tmp_path, cluster):
    run = DriverRun(cluster, cluster_graph(tmp_path, "secure", fps=10))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not re.search(r"tcp ports from (\d+)", run.output):
        assert run.proc.poll() is None, run.output
        time.sleep(0.2)
    base = int(re.search(r"tcp ports from (\d+)", run.output).group(1))
    while time.monotonic() < deadline and len(read_records(tmp_path / "secure.jsonl")) < 5:
        assert run.proc.poll() is None, run.output
        time.sleep(0.1)
    # pose is node #1 in the file: its inbox is base + 2, on its Ray node's address; the attackers sit outside the run
    pose_at = re.search(r"pose on Ray node (\S+)", run.output).group(1)
    address = f"tcp://{pose_at}:{base + 2}"
    plain = Attacker(zmq.PUSH, address)
    curve = Attacker(zmq.PUSH, address, curve_server_key=zmq.curve_keypair()[0])  # a key pair of its own
    inject(plain)
    inject(curve)
    time.sleep(0.5)
    events = plain.events() | curve.events()
    plain.close()
    curve.close()
    assert run.wait() == 0, run.output
    assert [r["seq"] for r in read_records(tmp_path / "secure.jsonl")] == list(range(65))
    metrics = __import__("json").loads(run.metrics_path.read_text())
    assert metrics["nodes"]["pose"]["bad_messages"] == 0
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
    assert "secret-key" not in (tmp_path / "secure.yaml").read_text()


SHIPPED_NODE = '''
import json, os
from posegraph import Node, Param
from posegraph.nodes.synthetic import read_stamp


class Where(Node):
    """Writes, per frame, its seq and where this node file and the process were."""

    INPUTS = {"frame": "frame"}
    OUTPUTS = {}
    PARAMS = {"record": Param("")}

    def open(self, ctx):
        self.out = open(self.params["record"], "a", buffering=1)

    def process(self, inputs, ctx):
        self.out.write(json.dumps({"seq": read_stamp(inputs["frame"]), "file": __file__, "cwd": os.getcwd(),
                                   "model": open("models/tiny.bin").read()}) + "\\n")
        return {}
'''


def test_a_working_dir_ships_the_graph_its_node_files_and_models_through_ray(tmp_path, cluster):
    ship = tmp_path / "ship"
    (ship / "models").mkdir(parents=True)
    (ship / "where.py").write_text(SHIPPED_NODE)
    (ship / "models/tiny.bin").write_text("weights v1")
    record = tmp_path / "where.jsonl"
    graph = ship / "shipped.yaml"
    graph.write_text(f"""
nodes:
  - {{id: source, uses: synthetic, resources: {{edge: 1}}, params: {{count: 20, width: 64, height: 48, live: false}}}}
  - {{id: where, uses: where.py:Where, resources: {{sink_box: 1}}, params: {{record: {record}}}, inputs: {{frame: source/frame}}}}
""")
    run = DriverRun(cluster, graph, "--working-dir", str(ship), metrics=tmp_path / "shipped.metrics.json")
    assert run.wait() == 0, run.output
    rows = read_records(record)
    assert [r["seq"] for r in rows] == list(range(20))
    # the node file was imported from Ray's copy of the folder, on w2, which also read the model from it
    assert all(r["model"] == "weights v1" for r in rows)
    assert str(ship) not in rows[0]["file"] and "runtime_resources" in rows[0]["file"], rows[0]
    assert rows[0]["cwd"] == str(Path(rows[0]["file"]).parent)
    # Ray names its copy by the folder's content hash: the same folder again is the same copy
    # (nothing sent again); a changed model is a new one
    shipped_at = rows[0]["cwd"]
    for model, same in (("weights v1", True), ("weights v2", False)):
        (ship / "models/tiny.bin").write_text(model)
        record.unlink()
        again = DriverRun(cluster, graph, "--working-dir", str(ship), metrics=tmp_path / "again.metrics.json")
        assert again.wait() == 0, again.output
        rows = read_records(record)
        assert [r["seq"] for r in rows] == list(range(20)) and rows[0]["model"] == model
        assert (rows[0]["cwd"] == shipped_at) is same, (rows[0]["cwd"], shipped_at)


def test_a_lost_ray_node_s_nodes_move_to_another_and_every_frame_comes_once_in_order(tmp_path, cluster):
    """The raylet of the Ray node running pose is killed mid-stream: Ray has room on the
    other gpu_box node, pose's group starts there, the other groups' links follow it to
    its new address, and it rejoins mid-stream (SYNC): every seq once, in order."""
    run = DriverRun(cluster, cluster_graph(tmp_path, "lost", fps=5))  # real time: 13 s of clip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(read_records(tmp_path / "lost.jsonl")) < 8:
        assert run.proc.poll() is None, run.output
        time.sleep(0.1)
    pose_at = re.search(r"pose on Ray node (\S+)", run.output).group(1)
    lost = next(h for h in cluster.hosts if h.addr == pose_at)
    other = next(h for h in cluster.hosts if h.name in ("w1", "w3") and h is not lost)
    cluster.kill_raylet(lost.name)
    done_before = len(read_records(tmp_path / "lost.jsonl"))
    assert done_before < 65
    assert run.wait(timeout=240) == 0, run.output
    assert f"the Ray node at {pose_at} was lost; pose now on Ray node {other.addr}" in run.output, run.output
    records = read_records(tmp_path / "lost.jsonl")
    assert [r["seq"] for r in records] == list(range(65))  # every frame exactly once, in order
    assert len(frames_of(tmp_path / "lost.mp4")) == 65
