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
