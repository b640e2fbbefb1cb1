"""The action classifiers' machinery (posegraph.pose.actions and its training) on the bundled
clip's real landmarks: view-invariant features, windows by time, a TCN trained by the real
command, its TFLite export, the "unknown" threshold it calibrates, and the `tcn` node in a
real graph answering exactly as classify_clip."""
import json
from pathlib import Path

import numpy as np
import pytest

from lstm_test_nodes import HEIGHT, WIDTH, squat_points, squat_world
from posegraph.pose import actions as A
from posegraph.pose import body
from posegraph.pose.sequences import Sequence, save_dataset

POINTS, WORLD = squat_points(), squat_world()
FPS = 5.0  # pose_squats.mp4 is 5 frames/s
UPPER = body.lm.indices(("nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                         "right_wrist"))


def twist(frames: int, seconds_per_twist: float = 1.6) -> tuple[np.ndarray, np.ndarray]:
    """(px, world) of a made-up motion from the clip's first (standing) skeleton: the upper
    body turning left and right about the vertical, 40 degrees each way."""
    world = np.repeat(WORLD[:1], frames, axis=0).copy()
    angle = np.radians(40.0) * np.sin(2 * np.pi * np.arange(frames) / (seconds_per_twist * FPS))
    world[:, UPPER, :3] = body.rotate(world[:, UPPER, :3], angle, 0.0)
    px = np.concatenate([world[..., :2] * 600 + [WIDTH / 2, HEIGHT / 2], world[..., 2:3] * 600, world[..., 3:]], axis=2)
    return px.astype(np.float32), world.astype(np.float32)


def sequences() -> list[Sequence]:
    """Two classes from the bundled clip: its squats (sliding pieces) and the made-up twist,
    each piece its own group so validation holds out whole pieces."""
    out = []
    for i, start in enumerate(range(0, 40, 5)):
        out.append(Sequence(f"squat/{i}", "squat", "blazepose33", POINTS[start:start + 25], WIDTH, HEIGHT, FPS,
                            world=WORLD[start:start + 25]))
        px, world = twist(25 + i)
        out.append(Sequence(f"twist/{i}", "twist", "blazepose33", px, WIDTH, HEIGHT, FPS, world=world))
    return out


def test_body3d_features_do_not_change_when_the_camera_turns_round_the_person():
    for yaw in (0.4, -1.2, 2.9):
        turned = WORLD.copy()
        turned[..., :3] = body.rotate(WORLD[..., :3], yaw)
        np.testing.assert_allclose(A.features(POINTS, "blazepose33", "body3d", world=turned),
                                   A.features(POINTS, "blazepose33", "body3d", world=WORLD), atol=1e-5)
    # the mirror image is a left-right swapped, x-negated body
    mirrored = A.features(POINTS, "blazepose33", "body3d", world=body.mirror_world(WORLD)).reshape(65, -1, 3)
    plain = A.features(POINTS, "blazepose33", "body3d", world=WORLD).reshape(65, -1, 3)
    assert not np.allclose(mirrored, plain, atol=1e-3)


def test_windows_are_taken_at_the_models_rate_whatever_the_cameras():
    feats = A.features(POINTS, "blazepose33", "body3d", world=WORLD)
    slow = A.timed_windows(feats, FPS, 15.0, 32, stride=1000)[-1]  # the window ending at the clip's last frame
    # the same motion filmed at 30 frames/s (interpolated) gives the same window
    times = np.arange(65) / FPS
    fast_times = np.arange(0, times[-1] + 1e-9, 1 / 30.0)
    fast = A.resample(times, feats, fast_times)
    np.testing.assert_allclose(A.timed_windows(fast, 30.0, 15.0, 32, stride=1000)[-1], slow, atol=1e-4)
    # the node's window, fed frame by frame with timestamps, is the training window
    window = A.TimedWindow("body3d", 32, 15.0, min_frames=1)
    for i, row in enumerate(feats):
        last = window.push(row, i / FPS)
    np.testing.assert_allclose(last, slow, atol=1e-5)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A TCN trained by the train-tcn command (real TensorFlow, a few epochs)."""
    from posegraph.commands.train_tcn import main

    tmp = tmp_path_factory.mktemp("tcn")
    save_dataset(tmp / "data.npz", sequences())
    val = "squat/1,squat/6,twist/2,twist/5"
    assert main([str(tmp / "data.npz"), "-o", str(tmp / "model"), "--epochs", "12", "--val-clips", val,
                 "--seed", "1", "--quiet"]) == 0
    return tmp / "model"


def test_train_tcn_writes_a_model_whose_tflite_export_matches_keras(model_dir):
    for name in ("model.keras", "model.tflite", "labels.json", "curves.png", "confusion.png", "metrics.json"):
        assert (model_dir / name).is_file() and (model_dir / name).stat().st_size > 0, name
    info = json.loads((model_dir / "labels.json").read_text())
    assert info["model"] == "tcn" and info["classes"] == ["squat", "twist"] and info["features"] == "body3d"
    assert info["window"] == 32 and info["rate"] == 15.0 and info["n_features"] == 51
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert sorted(metrics["groups"]["val"]) == ["squat/1", "squat/6", "twist/2", "twist/5"]
    assert metrics["tflite_max_abs_diff"] <= 1e-3
    import keras

    keras_model = keras.models.load_model(model_dir / "model.keras", compile=False)
    lite = A.TfliteModel(model_dir / "model.tflite", n_classes=2)
    wins = A.timed_windows(A.features(POINTS, "blazepose33", "body3d", world=WORLD), FPS, 15.0, 32, stride=3)
    probs, codes = keras_model.predict(wins, verbose=0)
    np.testing.assert_allclose(np.stack([lite(w)[0] for w in wins]), probs, atol=1e-4)
    np.testing.assert_allclose(np.stack([lite(w)[1] for w in wins]), codes, atol=1e-3)


def test_the_calibrated_threshold_keeps_the_held_out_windows_and_answers_unknown_beyond_it(model_dir):
    info = json.loads((model_dir / "labels.json").read_text())
    overall = info["unknown"]["threshold"]
    assert overall is not None and overall["keep"] == 0.99 and overall["known"] >= 20 and overall["known_kept"] >= 0.9
    classifier = A.ActionClassifier(model_dir)
    windows = np.concatenate([A.timed_windows(A.features(s.points, "blazepose33", "body3d", world=s.world), FPS, 15.0, 32)
                              for s in sequences()])
    rejected = 0
    for window in windows:
        probs, embedding = classifier.predictor(window)
        raw = classifier.classes[int(probs.argmax())]
        beyond = classifier.distance(embedding, raw) > overall["value"]
        answer = classifier.answer(window)
        assert answer["label"] == ("unknown" if beyond else raw)
        assert answer["votes"][answer["label"]] == max(answer["votes"].values())
        rejected += beyond
    assert rejected < len(windows) / 4  # these are the classes it knows: most are kept


def test_the_trained_tcn_tells_the_two_motions_apart_on_pieces_it_held_out(model_dir):
    classifier = A.ActionClassifier(model_dir)
    held_out = [s for s in sequences() if s.clip_id in ("squat/1", "squat/6", "twist/2", "twist/5")]
    for seq in held_out:
        answers = [a["label"] for a in A.classify_clip(classifier, seq, min_frames=1) if a]
        assert max(set(answers), key=answers.count) == seq.label, (seq.clip_id, answers)


GRAPH = """
name: tcn
nodes:
  - {id: source, uses: TESTS/lstm_test_nodes.py:SquatClip, params: {gaps: [0, 1, 40, 41]}}
  - {id: tcn, uses: tcn, params: {model: MODEL}, inputs: {landmarks: source/landmarks}}
  - {id: sink, uses: TESTS/lstm_test_nodes.py:RecordVotes, params: {path: TMP/votes.jsonl}, inputs: {votes: tcn/votes}}
"""


def test_the_tcn_node_in_a_graph_answers_every_frame_as_classify_clip(graph_run, model_dir):
    run = graph_run(GRAPH.replace("MODEL", str(model_dir)))
    assert run.wait(timeout=90) == 0, run.stderr
    records = run.records("votes.jsonl")
    assert [r["seq"] for r in records] == list(range(65))
    gappy = POINTS.copy()
    gappy[[0, 1, 40, 41]] = np.nan
    # SquatClip sends no timestamps: the node takes its frames at the model's rate, as here
    expected = A.classify_clip(A.ActionClassifier(model_dir),
                               Sequence("all", "x", "blazepose33", gappy, WIDTH, HEIGHT, 15.0, world=WORLD), min_frames=8)
    for record, want in zip(records, expected):
        if want is None:
            assert record["votes"] is None
            continue
        assert record["votes"]["label"] == want["label"]
        np.testing.assert_allclose([record["votes"]["votes"][c] for c in want["votes"]], list(want["votes"].values()), atol=1e-5)
    nodes = run.metrics["nodes"]
    assert nodes["tcn"]["counters"].get("no_person") == 4
    assert nodes["tcn"]["rss_mb"] < 200, nodes["tcn"]["rss_mb"]


def test_train_tcn_errors_are_one_line(tmp_path, capsys):
    from posegraph.commands.train_tcn import main

    assert main([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "m")]) == 2
    flat = [Sequence("a", "squat", "blazepose33", POINTS[:20], WIDTH, HEIGHT, FPS)]  # no world landmarks
    save_dataset(tmp_path / "flat.npz", flat + [Sequence("b", "other", "blazepose33", POINTS[20:40], WIDTH, HEIGHT, FPS)])
    assert main([str(tmp_path / "flat.npz"), "-o", str(tmp_path / "m")]) == 2
    save_dataset(tmp_path / "ok.npz", sequences())
    assert main([str(tmp_path / "ok.npz"), "-o", str(tmp_path / "m"), "--classes", "squat,unknown"]) == 2
    assert main([str(tmp_path / "ok.npz"), "-o", str(tmp_path / "m"), "--keep", "1.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err), err
    assert "no such file" in err[0] and "world landmarks" in err[1] and "'unknown' cannot be a class" in err[2]
    assert "--keep" in err[3]


def test_still_copies_come_only_from_classes_that_move_and_hold_one_frame():
    from posegraph.pose.training import actions as T

    moving = Sequence("squat/0", "squat", "blazepose33", POINTS, WIDTH, HEIGHT, FPS, world=WORLD)
    held = Sequence("hold/0", "hold", "blazepose33", np.repeat(POINTS[:1], 40, 0), WIDTH, HEIGHT, FPS,
                    world=np.repeat(WORLD[:1], 40, 0))
    assert T.motion_speed(moving, "body3d") > T.STILL_SPEED > T.motion_speed(held, "body3d")
    assert T.moving_classes([moving, held], "body3d") == {"squat"}
    still = T.held_still(moving, np.random.default_rng(0))
    assert still.label == T.STILL and len(still.points) == len(POINTS)
    assert np.array_equal(still.world, np.repeat(still.world[:1], len(POINTS), 0))
    items = T.augmented_items([moving, held], "body3d", copies=2, seed=0, still=3)
    labels = [seq.label for _, seq, _ in items]
    assert labels.count(T.STILL) == 3 and labels.count("hold") == 2 * 3  # (plain + 2 views) x mirror; hold: no still
