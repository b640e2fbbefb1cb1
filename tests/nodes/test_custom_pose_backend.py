"""The `custom` pose backend (posegraph/pose/backends/custom.py) inside real graphs: `pose` with
`model: custom:PATH` on a model just trained by `runner.py train-keypoints`.

Two tiny models are trained once for the module (in parallel, ~30 s): a COCO-17 one on the
BlazePose detector's crops and an upper-body one (six keypoints) on the whole frame, both
from Google's reference landmarks of pose_squats.mp4. Their accuracy is not the point here
(tests/pose/test_keypoint_training.py measures that): the graphs must carry exactly what the
backend computes in this process, with the right layout, through embed and the sinks; bad
model paths must stop the graph with one line naming node 'pose' and field 'params.model'.

This module also defines the recorder node kind its graph wires in (FeatureRecorder): keep
its imports light, a node process imports it.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from posegraph import Node, Param

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "data" / "google_pose_reference"
VIDEO = REF / "pose_squats.mp4"
DEMO = ROOT / "graphs" / "demo.yaml"
UPPER = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")


class FeatureRecorder(Node):
    """Appends one JSON line per features packet: seq, kind and vector (None when empty)."""

    INPUTS = {"features": "features packet"}
    PARAMS = {"record": Param("")}
    STATEFUL = True

    def open(self, ctx):
        self.out = open(self.params["record"], "a", buffering=1)

    def process(self, inputs, ctx):
        features = inputs["features"]
        row = {"seq": ctx.seq, "kind": None, "vector": None}
        if features is not None:
            row["kind"] = features["kind"]
            row["vector"] = np.asarray(features["vector"], np.float64).tolist()
        self.out.write(json.dumps(row) + "\n")
        return None

    def close(self):
        self.out.close()


# ----- helpers ----------------------------------------------------------------------------------------
def run_cli(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "runner.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def video_frames() -> list[np.ndarray]:
    from posegraph.pose.training.keypoint_data import read_frames

    frames = [image for _, image in read_frames(VIDEO)]
    assert len(frames) == 65
    return frames


def backend_keypoints(model_dir: Path, precision: str = "float") -> list[np.ndarray]:
    """What the backend gives in this process on every frame of the clip: (k, 3) x, y, score
    of the best person."""
    from posegraph.pose.backends.custom import CustomPose

    backend = CustomPose(str(model_dir), precision=precision)
    try:
        out = []
        for image in video_frames():
            people = backend.run(image)
            assert len(people) == 1
            out.append(people[0]["keypoints"].astype(np.float64))
        return out
    finally:
        backend.close()


def assert_records_are_the_backend(records, expected, n_keypoints):
    assert len(records) == len(expected) == 65
    for i, (record, keypoints) in enumerate(zip(records, expected)):
        rows = np.asarray(record["landmarks"], np.float64)
        assert rows.shape == (n_keypoints, 4), (i, rows.shape)
        # jsonl rounds to 2 decimals; z is 0; the score column is the crop's score
        np.testing.assert_allclose(rows[:, :2], keypoints[:, :2], atol=0.011, err_msg=f"frame {i}")
        assert (rows[:, 2] == 0).all()
        np.testing.assert_allclose(rows[:, 3], keypoints[:, 2], atol=0.011)
        assert 0 < rows[0, 3] <= 1
        assert (rows[:, 0] > -100).all() and (rows[:, 0] < 820).all() and (rows[:, 1] > -100).all() \
            and (rows[:, 1] < 1380).all(), "keypoints in image pixels, on the 720 x 1280 frame"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """{"coco": a COCO-17 model on detector crops, "upper": six upper-body keypoints on the
    whole frame}, trained from Google's reference landmarks in two parallel CLI runs."""
    from posegraph.pose import landmarks as lm

    root = tmp_path_factory.mktemp("custom_models")
    ref = np.asarray(json.loads((REF / "pose_squats.full.json").read_text()), float)
    coco = lm.indices(lm.COCO_NAMES)
    labels = root / "labels.json"
    labels.write_text(json.dumps({"keypoints": list(lm.COCO_NAMES), "samples": [
        {"video": os.path.relpath(VIDEO, root), "frame": f, "clip": "first_squat" if f < 33 else "second_squat",
         "points": ref[f, coco, :2].round(3).tolist()} for f in range(65)]}))
    common = ["--labels", labels, "--val-clips", "second_squat", "--width", "0.25", "--batch", "16", "--quiet"]
    runs = {
        "coco": [*common, "-o", root / "coco", "--input-size", "64", "--epochs", "6"],
        "upper": [*common, "-o", root / "upper", "--keypoints", ",".join(UPPER), "--crop", "frame",
                  "--input-size", "32", "--epochs", "4"],
    }
    procs = {name: subprocess.Popen([sys.executable, "runner.py", "train-keypoints", *map(str, args)], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in runs.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    return {name: root / name for name in runs}


# ----- 6. graphs run trained models ----------------------------------------------------------------------
def test_demo_graph_with_a_trained_coco17_model_records_its_keypoints(graph_run, tmp_path, models):
    """graphs/demo.yaml as shipped, only pose.model (and the output paths) set: the records
    carry the backend's 17 COCO keypoints per frame, and ML Kit's embedding and the KNN run
    on them (votes on every frame)."""
    run = graph_run(DEMO.read_text(), "--set", f"pose.model=custom:{models['coco']}",
                    "--set", f"records.path={tmp_path / 'demo.jsonl'}", "--set", f"video.path={tmp_path / 'demo.mp4'}")
    assert run.wait(timeout=180) == 0, run.stderr[-3000:]
    records = run.records("demo.jsonl")
    assert json.loads((models["coco"] / "model.json").read_text())["layout"] == "coco17"
    assert_records_are_the_backend(records, backend_keypoints(models["coco"]), 17)
    for record in records:
        assert "layout" not in record, "COCO-17 records stay as BlazePose's (only custom layouts name theirs)"
        votes = record["votes"]  # the KNN's neighbours per class (classes with none left out)
        assert votes and set(votes) <= {"pushups_down", "pushups_up", "squats_down", "squats_up"}, votes
        assert all(v > 0 for v in votes.values())
    assert (tmp_path / "demo.mp4").stat().st_size > 10_000
    metrics = run.metrics["nodes"]
    assert "wrong_layout" not in metrics["embed"].get("counters", {}), metrics["embed"]
    assert "no_person" not in metrics["pose"].get("counters", {}), metrics["pose"]


def test_int8_and_upper_body_models_run_side_by_side_with_embed_angles(graph_run, tmp_path, models):
    """One camera, two pose nodes: the COCO-17 model's int8 file (custom_precision) on
    detector crops, and the six-keypoint model on the whole frame (its model.json's crop).
    The six keypoints go out as layout custom:<names>; embed's angles use the joints each
    layout has (9 for COCO-17, the two elbows for the upper body) and equal the angles of the
    recorded keypoints."""
    from posegraph.pose import landmarks as lm
    from posegraph.pose.features import angle_names, joint_angles

    run = graph_run(f"""
name: custom_models
nodes:
  - {{id: camera, uses: capture, params: {{source: {VIDEO}}}}}
  - {{id: pose_int8, uses: pose, params: {{model: "custom:{models['coco']}", custom_precision: int8}}, inputs: {{frame: camera/frame}}}}
  - {{id: pose_upper, uses: pose, params: {{model: "custom:{models['upper']}"}}, inputs: {{frame: camera/frame}}}}
  - {{id: angles_int8, uses: embed, params: {{kind: angles}}, inputs: {{landmarks: pose_int8/landmarks}}}}
  - {{id: angles_upper, uses: embed, params: {{kind: angles}}, inputs: {{landmarks: pose_upper/landmarks}}}}
  - {{id: keep_int8, uses: jsonl, params: {{path: TMP/int8.jsonl}}, inputs: {{landmarks: pose_int8/landmarks}}}}
  - {{id: keep_upper, uses: jsonl, params: {{path: TMP/upper.jsonl}}, inputs: {{landmarks: pose_upper/landmarks}}}}
  - {{id: rec_int8, uses: TESTDIR/nodes/test_custom_pose_backend.py:FeatureRecorder, params: {{record: TMP/angles_int8.jsonl}}, inputs: {{features: angles_int8/features}}}}
  - {{id: rec_upper, uses: TESTDIR/nodes/test_custom_pose_backend.py:FeatureRecorder, params: {{record: TMP/angles_upper.jsonl}}, inputs: {{features: angles_upper/features}}}}
""")
    assert run.wait(timeout=180) == 0, run.stderr[-3000:]
    upper_layout = "custom:" + ",".join(UPPER)
    int8 = run.records("int8.jsonl")
    upper = run.records("upper.jsonl")
    assert_records_are_the_backend(int8, backend_keypoints(models["coco"], "int8"), 17)
    assert_records_are_the_backend(upper, backend_keypoints(models["upper"]), len(UPPER))
    assert all("layout" not in r for r in int8)
    assert all(r["layout"] == upper_layout for r in upper)
    assert all(np.asarray(r["landmarks"])[:, 3].tolist() == [1.0] * len(UPPER) for r in upper), "whole frame: score 1"
    float_keypoints = backend_keypoints(models["coco"])
    assert any(np.abs(np.asarray(r["landmarks"])[:, :2] - k[:, :2]).max() > 0.05 for r, k in zip(int8, float_keypoints)), \
        "int8 records differ from the float model's: custom_precision picked the int8 file"

    assert angle_names("coco17") == ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder", "left_hip",
                                     "right_hip", "left_knee", "right_knee", "neck")
    assert angle_names(upper_layout) == ("left_elbow", "right_elbow")
    for name, records, layout, n in (("int8", int8, "coco17", 9), ("upper", upper, upper_layout, 2)):
        angles = read_jsonl(tmp_path / f"angles_{name}.jsonl")
        assert [a["seq"] for a in angles] == list(range(65)), name
        for a, record in zip(angles, records):
            assert a["kind"] == "angles" and len(a["vector"]) == n, (name, a)
            points = np.asarray(record["landmarks"], np.float64)[:, :3]
            expected = joint_angles(points, layout)
            assert np.isfinite(a["vector"]).all()
            np.testing.assert_allclose(a["vector"], expected, atol=2e-3, err_msg=name)
    for node in ("angles_int8", "angles_upper"):
        assert "wrong_layout" not in run.metrics["nodes"][node].get("counters", {}), run.metrics["nodes"][node]
    assert lm.names_of(upper_layout) == UPPER


# ----- 7. bad model paths -------------------------------------------------------------------------------------
def bad_model(case: str, tmp_path: Path, models) -> tuple[str, str]:
    """(model param, words the error must hold) of one broken model path."""
    if case == "missing":
        return "custom:/nonexistent/keypoint_model", "/nonexistent/keypoint_model: no such model folder or file"
    if case == "folder_without_model_json":
        folder = tmp_path / "no_json"
        folder.mkdir()
        shutil.copy(models["coco"] / "model.float.tflite", folder)
        return f"custom:{folder}", f"{folder}: no model.json (train one with runner.py train-keypoints)"
    if case == "tflite_of_another_input_size":
        folder = tmp_path / "resized"
        shutil.copytree(models["coco"], folder)
        info = json.loads((folder / "model.json").read_text())
        info["input_size"] = 32
        (folder / "model.json").write_text(json.dumps(info))
        return (f"custom:{folder / 'model.float.tflite'}",
                f"{folder / 'model.float.tflite'}: input shape (1, 64, 64, 1), model.json says (1, 32, 32, 1)")
    if case in ("model_json_not_json", "model_json_with_an_unknown_name"):
        folder = tmp_path / case
        shutil.copytree(models["coco"], folder)
        if case == "model_json_not_json":
            (folder / "model.json").write_text('{"names": ["nose",')
            return f"custom:{folder}", f"{folder / 'model.json'}: not a keypoint model description (Expecting value"
        info = json.loads((folder / "model.json").read_text())
        info["names"][0] = "nosetip"
        (folder / "model.json").write_text(json.dumps(info))
        return f"custom:{folder}", f"{folder / 'model.json'}: not a keypoint model description (unknown landmark name 'nosetip'"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "folder_without_model_json", "tflite_of_another_input_size",
                                  "model_json_not_json", "model_json_with_an_unknown_name"])
def test_a_bad_model_path_stops_the_graph_with_one_line_naming_pose_and_params_model(graph_run, tmp_path, models, case):
    model, words = bad_model(case, tmp_path, models)
    run = graph_run(f"""
name: bad_custom_model
nodes:
  - {{id: camera, uses: capture, params: {{source: {VIDEO}}}}}
  - {{id: pose, uses: pose, params: {{model: "{model}"}}, inputs: {{frame: camera/frame}}}}
  - {{id: sink, uses: null, inputs: {{frame: pose/landmarks}}}}
""")
    assert run.wait(timeout=60) == 1, run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith("error: node 'pose' field 'params.model': "), errors[0]
    assert words in errors[0], errors[0]
    assert "Traceback" not in run.stderr


def test_check_lists_custom_path_among_the_models_for_an_unknown_one(tmp_path):
    def graph(model):
        path = tmp_path / f"graph_{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(f"""name: check_model
nodes:
  - {{id: camera, uses: capture, params: {{source: {VIDEO}}}}}
  - {{id: pose, uses: pose, params: {{model: {model}}}, inputs: {{frame: camera/frame}}}}
  - {{id: sink, uses: null, inputs: {{frame: pose/landmarks}}}}
""")
        return path

    cases = (([graph("bogus")], "'bogus' is not one of blazepose, blazepose-mediapipe, posenet, movenet-lightning, movenet-thunder, "
                                "movenet-multipose or custom:PATH"),
             ([graph("posenet"), "--set", "pose.model=bogus"], "'bogus' is not one of"),
             ([graph("'custom: '")], "custom: needs a path, e.g. custom:models/my_keypoints"))
    for args, words in cases:
        result = run_cli("check", *args)
        assert result.returncode == 2, result.stderr
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "node 'pose'" in lines[0] and "field 'params.model'" in lines[0] and words in lines[0], lines[0]
    # the path itself is only opened when the graph runs (then it is the error above)
    ok = run_cli("check", graph("custom:/anything/not/opened/by/check"))
    assert ok.returncode == 0, ok.stderr
