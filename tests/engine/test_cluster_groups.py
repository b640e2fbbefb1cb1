"""Graph -> Ray actor groups (posegraph.cluster.groups), without Ray: `colocate:` joins
nodes, a node with no constraint follows the producer of its first input, resources add up."""
from posegraph.cluster.groups import make_groups
from posegraph.spec import load_graph

GRAPH = """
nodes:
  - {id: cam, uses: capture, resources: {edge: 1}, params: {source: x.mp4}}
  - {id: pose, uses: pose, resources: {cpu: 1, gpu: 0.5}, inputs: {frame: cam/frame}}
  - {id: embed, uses: embed, replicas: 2, resources: {cpu: 0.5}, colocate: [pose], inputs: {landmarks: pose/landmarks}}
  - {id: free, uses: embed, inputs: {landmarks: pose/landmarks}}
  - {id: knn, uses: knn, colocate: [sink], inputs: {features: free/features}}
  - {id: sink, uses: jsonl, resources: {cpu: 0.5}, params: {path: out.jsonl}, inputs: {votes: knn/votes}}
  - {id: cam2, uses: capture, params: {source: y.mp4}}
"""


def test_groups_follow_colocate_resources_and_first_producers(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    groups = {g.name: g for g in make_groups(load_graph(path))}
    assert {name: g.nodes for name, g in groups.items()} == {
        "g-cam": ["cam"], "g-pose": ["pose", "embed", "free"], "g-knn": ["knn", "sink"], "g-cam2": ["cam2"]}
    assert groups["g-pose"].resources == {"cpu": 2.0, "gpu": 0.5}  # embed asks cpu 0.5 per replica, times 2
    assert (groups["g-pose"].num_cpus, groups["g-pose"].num_gpus, groups["g-pose"].custom) == (2.0, 0.5, {})
    assert groups["g-cam"].custom == {"edge": 1.0} and groups["g-cam2"].asked() == "nothing"
    assert groups["g-knn"].asked() == "cpu: 0.5"


def test_draw_writes_under_each_node_the_ray_group_it_shares(tmp_path):
    """A graph placed by `resources:`/`colocate:` is drawn with each node's Ray group: the
    nodes that will run in one actor, so on one Ray node (which one, a run's metrics say:
    `draw --where`, tested on a real cluster in test_ray_cluster.py)."""
    import subprocess
    import sys

    from conftest import ROOT
    from posegraph.cluster.view import planned_groups
    from posegraph.draw import draw_graph

    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    spec = load_graph(path)
    labels = draw_graph(spec, str(tmp_path / "g.png"), planned_groups(spec)).labels
    assert labels["embed"] == "embed\n[embed]\nx2\n@ray group g-pose"
    assert {n: labels[n].splitlines()[-1] for n in ("cam", "free", "knn", "sink")} == {
        "cam": "@ray group g-cam", "free": "@ray group g-pose", "knn": "@ray group g-knn", "sink": "@ray group g-knn"}
    plain = tmp_path / "plain.yaml"
    plain.write_text("nodes:\n  - {id: cam, uses: capture, params: {source: x.mp4}}\n")
    assert planned_groups(load_graph(plain)) == {}, "a graph not placed by resources has no groups to show"
    done = subprocess.run([sys.executable, "-m", "posegraph", "draw", str(path), "-o", str(tmp_path / "cli.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == f"wrote {tmp_path / 'cli.png'}\n", done.stderr
    bad = subprocess.run([sys.executable, "-m", "posegraph", "draw", str(path), "--where", str(path), "-o", str(tmp_path / "x.png")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith(f"error: --where {path}: not a run's metrics file"), bad.stderr
