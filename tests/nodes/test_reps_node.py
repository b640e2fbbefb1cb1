"""The `reps` kind's learned mode (posegraph.pose.reps.RepModel): every class counted per
person from world landmarks, the current class from the scores, the open errors, people
without world landmarks; in posegraph.testing.NodeHarness and in a real graph from the
bundled video (capture -> pose -> reps). Classic mode: tests/nodes/test_smoothing_and_reps.py."""
import json

import numpy as np
import pytest

from conftest import ROOT
from posegraph import NodeOpenError
from posegraph.nodes.reps import Reps
from posegraph.pose.people import merge
from posegraph.pose.reps import RepModel
from posegraph.pose.sequences import Sequence
from posegraph.testing import NodeHarness

SQUATS_3D = ROOT / "data" / "google_pose_reference" / "pose_squats_3d.full.json"
SHIPPED = ROOT / "models" / "reps_exercises.json"
WIDTH, HEIGHT = 720, 1280


def world_frames() -> np.ndarray:
    """Google's world landmarks of pose_squats.mp4 (65 x 33 x 4, visibility 1): three
    squats at 5 frames/s, the clip ending at the bottom of the third."""
    world = np.asarray(json.loads(SQUATS_3D.read_text()), dtype=np.float32)
    return np.concatenate([world, np.ones((*world.shape[:2], 1), np.float32)], axis=-1)


def landmarks(world, i) -> dict:
    """The pose kind's packet of frame i (pixels do not matter here: the counter reads world)."""
    return {"px": np.zeros((33, 4), np.float32), "norm": np.zeros((33, 4), np.float32), "world": world,
            "width": WIDTH, "height": HEIGHT, "layout": "blazepose33", "pts_ms": i * 200.0}


@pytest.fixture
def model_file(tmp_path):
    """A model of squat (fitted on the clip) and plank (static), in one JSON file."""
    world = world_frames()
    squat = Sequence("squat/pose_squats.mp4", "squat", "blazepose33", np.zeros_like(world), WIDTH, HEIGHT, 5.0, world)
    plank = Sequence("plank/held.mp4", "plank", "blazepose33", np.zeros_like(world), WIDTH, HEIGHT, 5.0, world)
    path = tmp_path / "reps.json"
    RepModel.fit([squat, plank], ["squat", "plank"], reps={"plank/held.mp4": 0}).save(path)
    return path


def test_learned_mode_counts_every_class_and_reports_the_recognised_one(model_file):
    world = world_frames()
    outs = []
    with NodeHarness(Reps, {"model": str(model_file)}) as node:
        for i, frame in enumerate(world):
            # the classifier says nothing for the first 9 frames, "unknown" until frame 20, then "squat"
            scores = None if i < 9 else {"scores": {"unknown": 8.0, "squat": 2.0} if i < 20 else
                                         {"unknown": 1.0, "squat": 9.0}}
            outs.append(node.process({"scores": scores, "landmarks": landmarks(frame, i)})["count"])
    assert outs[0] == {"reps": {"squat": 0, "plank": 0}, "class": "unknown", "entered": False, "recognised": []}
    assert outs[19]["class"] == "unknown" and outs[19]["reps"]["squat"] == 1  # counted before it was recognised
    assert outs[-1] == {"reps": {"squat": 2, "plank": 0}, "class": "squat", "entered": True, "recognised": ["squat"]}


def test_learned_mode_keeps_counts_without_a_person_and_people_apart(model_file):
    world = world_frames()
    still = world[0]
    with NodeHarness(Reps, {"model": str(model_file)}) as node:
        for i, frame in enumerate(world):
            if i in (30, 31):  # nobody in view: counts hold
                out = node.process({"scores": None, "landmarks": None})
                assert out["count"]["reps"]["squat"] == 1
                continue
            people = merge([(1, landmarks(frame, i)), (2, landmarks(still, i))])
            scores = merge([(1, {"scores": {"squat": 9.0}}), (2, {"scores": {"plank": 9.0}})])
            out = node.process({"scores": scores, "landmarks": people})
    one, two = out["count"], out["count"]["people_meta"][1]
    assert one["reps"] == {"squat": 2, "plank": 0} and one["class"] == "squat"
    assert two == {"reps": {"squat": 0, "plank": 0}, "class": "plank", "entered": False, "recognised": ["plank"]}


def test_people_without_world_landmarks_are_skipped_and_said_once(model_file):
    coco = {"px": np.ones((17, 4), np.float32), "width": WIDTH, "height": HEIGHT, "layout": "coco17"}
    with NodeHarness(Reps, {"model": str(model_file)}) as node:
        for _ in range(5):
            out = node.process({"scores": {"scores": {"squat": 9.0}}, "landmarks": coco})
    assert out["count"] == {"reps": {"squat": 0, "plank": 0}, "class": "squat", "entered": False, "recognised": ["squat"]}
    assert node.counters["no_world"] == 5
    assert sum("without world landmarks" in line for line in node.logs) == 1


def test_learned_mode_without_landmarks_wired_stops_at_open_naming_the_input(model_file):
    with pytest.raises(NodeOpenError) as err:
        NodeHarness(Reps, {"model": str(model_file)}, wired_inputs={"scores"}).open()
    assert err.value.field == "inputs.landmarks" and "wire inputs.landmarks" in str(err.value)
    # classic mode does not need them
    with NodeHarness(Reps, {"class_name": "squats_down"}, wired_inputs={"scores"}) as node:
        out = node.process({"scores": {"scores": {"squats_down": 9.0}}})
    assert out["count"] == {"reps": {"squats_down": 0}, "class": "squats_down", "entered": True}


def test_a_model_that_cannot_be_read_stops_at_open_naming_the_param(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for path, message in ((tmp_path / "missing.json", "no such file"), (bad, "not a repetition model")):
        with pytest.raises(NodeOpenError) as err:
            NodeHarness(Reps, {"model": str(path)}).open()
        assert err.value.field == "params.model" and message in str(err.value)


GRAPH = """
name: learned_reps
nodes:
  - id: camera
    uses: capture
    params: {source: data/google_pose_reference/pose_squats.mp4}
  - {id: pose, uses: pose, inputs: {frame: camera/frame}}
  - {id: classifier, uses: TMP/says.py:Says, params: {name: squat}, inputs: {landmarks: pose/landmarks}}
  - id: reps
    uses: reps
    params: {model: models/reps_exercises.json}
    inputs: {scores: classifier/scores, landmarks: pose/landmarks}
  - id: records
    uses: jsonl
    params: {path: TMP/reps.jsonl}
    inputs: {landmarks: pose/landmarks, scores: classifier/scores, reps: reps/count}
"""

SAYS = '''
from posegraph import Node, Param


class Says(Node):
    """A classifier that always answers `name` when somebody is in view."""

    INPUTS = {"landmarks": "landmarks packet"}
    OUTPUTS = {"scores": "scores packet"}
    PARAMS = {"name": Param("squat")}

    def process(self, inputs, ctx):
        return {} if inputs["landmarks"] is None else {"scores": {"scores": {self.params["name"]: 10.0}}}
'''


def test_the_bundled_video_counts_two_squats_through_pose_and_the_shipped_model(graph_run, tmp_path):
    """capture -> pose (BlazePose) -> reps with the shipped model, each its own process: she
    squats three times and the clip ends at the bottom of the third, so 2."""
    (tmp_path / "says.py").write_text(SAYS)
    run = graph_run(GRAPH)
    assert run.wait(timeout=120) == 0, run.stderr
    records = run.records("reps.jsonl")
    assert len(records) == 65
    counts = [r["reps"]["squat"] for r in records]
    assert counts[-1] == 2 and counts == sorted(counts)
    assert records[-1]["reps"]["plank"] == 0 and records[-1]["class"] == "squat"
