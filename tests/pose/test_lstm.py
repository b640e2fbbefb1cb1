"""The LSTM classifier: features and windows, augmentation, real TensorFlow training through
the train-lstm command on clips cut from Google's squat landmarks, the TFLite export against
Keras, a held-out repetition, and the `lstm` node in a real graph."""
import json
from pathlib import Path

import numpy as np
import pytest

from lstm_test_nodes import HEIGHT, WIDTH, squat_points, squat_world  # noqa: E402

from posegraph.pose import landmarks as lm  # noqa: E402
from posegraph.pose import actions as M  # noqa: E402
from posegraph.pose.training import actions as T  # noqa: E402
from posegraph.pose.sequences import Sequence, save_dataset  # noqa: E402

POINTS = squat_points()
WORLD = squat_world()
# She is down in frames ~6-14, 30-39, 54-64 and up in 0-4, 17-27, 41-51. Training and
# validation clips come from the first two repetitions; the third is held out entirely.
TRAIN_CLIPS = {"down": [(6, 14), (6, 10), (10, 14), (30, 35)], "up": [(0, 4), (17, 21), (22, 27)]}
VAL_CLIPS = {"down": [(36, 39)], "up": [(24, 27)]}
HELD_OUT = {"down": (54, 64), "up": (41, 51)}


def clip(label, a, b, points=POINTS):
    return Sequence(f"{label}/{a}-{b}", label, "blazepose33", points[a:b + 1], WIDTH, HEIGHT, 30.0, world=WORLD[a:b + 1])


def test_features_windows_and_short_clip_padding():
    for kind, size in M.FEATURE_SIZES.items():
        f = M.features(POINTS, "blazepose33", kind, WIDTH, HEIGHT, world=WORLD)
        assert f.shape == (65, size) and f.dtype == np.float32 and np.isfinite(f).all()
        assert M.windows(f, 32, 4).shape == (1 + (65 - 32) // 4, 32, size)
        short = M.windows(f[:29], 32, 4)  # shorter than a window: one, padded with its last frame
        assert short.shape == (1, 32, size)
        np.testing.assert_array_equal(short[0, :29], f[:29])
        np.testing.assert_array_equal(short[0, 29:], np.repeat(f[28:29], 3, axis=0))
    xyzv = M.features(POINTS[:1], "blazepose33", "blazepose_xyzv", WIDTH, HEIGHT).reshape(33, 4)
    np.testing.assert_allclose(xyzv, POINTS[0] / [WIDTH, HEIGHT, WIDTH, 1], rtol=1e-6)
    # COCO-17 input works for coco_xy and gives the same features as the BlazePose it came from
    coco = POINTS[:, lm.BLAZEPOSE_TO_COCO]
    np.testing.assert_allclose(M.features(coco, "coco17", "coco_xy"), M.features(POINTS, "blazepose33", "coco_xy"), atol=1e-6)
    with pytest.raises(ValueError, match="blazepose33"):
        M.features(coco, "coco17", "embed")
    # no person: carried forward, zeros before the first person
    gappy = POINTS[:12].copy()
    gappy[[0, 1, 7]] = np.nan
    f = M.features(gappy, "blazepose33", "coco_xy")
    assert not f[:2].any() and np.array_equal(f[7], f[6]) and f[2].any()


def test_mirroring_swaps_left_and_right_and_time_stretch():
    mirrored = T.mirror_points(POINTS, "blazepose33", WIDTH)
    left, right = lm.index("left_wrist"), lm.index("right_wrist")
    np.testing.assert_allclose(mirrored[:, left, 0], WIDTH - POINTS[:, right, 0])
    np.testing.assert_allclose(mirrored[:, left, 1:], POINTS[:, right, 1:])
    np.testing.assert_allclose(T.mirror_points(mirrored, "blazepose33", WIDTH), POINTS, atol=1e-4)
    # body-normalised COCO features of the mirror: x negated, left and right swapped
    f, g = (M.features(p, "blazepose33", "coco_xy").reshape(65, 17, 2) for p in (POINTS, mirrored))
    np.testing.assert_allclose(g[:, lm.MIRROR["coco17"]] * [-1, 1], f, atol=1e-5)
    assert len(T.time_stretch(POINTS, 1.25)) == 52 and len(T.time_stretch(POINTS, 0.8)) == 81
    gappy = POINTS.copy()
    gappy[10:13] = np.nan
    stretched = T.time_stretch(gappy, 0.8)
    assert np.isnan(stretched).all(axis=(1, 2)).sum() >= 3 and not np.isnan(stretched[~np.isnan(stretched).all(axis=(1, 2))]).any()
    items = T.augment([clip("down", 6, 14)], copies=2, seed=1)
    assert len(items) == 6  # original, mirror, 2 variants of each


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model trained by the train-lstm command (real TensorFlow, a few epochs)."""
    from posegraph.commands.train_lstm import main

    tmp = tmp_path_factory.mktemp("lstm")
    seqs = [clip(label, a, b) for group in (TRAIN_CLIPS, VAL_CLIPS) for label, ranges in group.items() for a, b in ranges]
    save_dataset(tmp / "squats.npz", seqs)
    val = ",".join(f"{label}/{a}-{b}" for label, ranges in VAL_CLIPS.items() for a, b in ranges)
    # image features, frames as they come: the first LSTM models' recipe, still supported
    assert main([str(tmp / "squats.npz"), "-o", str(tmp / "model"), "--epochs", "15", "--val-clips", val,
                 "--features", "coco_xy", "--rate", "0", "--stride", "4", "--seed", "3", "--quiet"]) == 0
    return tmp / "model"


def test_train_lstm_writes_the_model_and_tflite_matches_keras(model_dir):
    for name in ("model.keras", "model.tflite", "labels.json", "curves.png", "confusion.png", "metrics.json"):
        assert (model_dir / name).is_file() and (model_dir / name).stat().st_size > 0, name
    info = json.loads((model_dir / "labels.json").read_text())
    assert info["classes"] == ["down", "up"] and info["features"] == "coco_xy" and info["window"] == 32
    assert info["n_features"] == 34 and info["layout"] == "blazepose33"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["clips"]["val"] == ["down/36-39", "up/24-27"] and len(metrics["clips"]["train"]) == 7
    assert 1 <= metrics["epochs"] <= 15 and metrics["val_accuracy"] is not None
    assert metrics["tflite_max_abs_diff"] <= 1e-3
    # independently: the exported model against Keras on the held-out windows, both outputs
    import keras

    keras_model = keras.models.load_model(model_dir / "model.keras", compile=False)
    lite = M.TfliteModel(model_dir / "model.tflite", n_classes=2)
    wins = np.concatenate([M.windows(M.features(POINTS[a:b + 1], "blazepose33", "coco_xy"), 32, 4)
                           for a, b in HELD_OUT.values()] + [M.windows(M.features(POINTS, "blazepose33", "coco_xy"), 32, 4)])
    probs, codes = keras_model.predict(wins, verbose=0)
    np.testing.assert_allclose(np.stack([lite(w)[0] for w in wins]), probs, atol=1e-4)
    np.testing.assert_allclose(np.stack([lite(w)[1] for w in wins]), codes, atol=1e-3)


def votes_of(answers, classes) -> np.ndarray:
    """(T, C) probabilities of classify_clip's answers (NaN where it does not answer yet)."""
    return np.array([[a["votes"].get(c, 0.0) for c in classes] if a else [np.nan] * len(classes) for a in answers])


def test_model_beats_chance_on_the_held_out_repetition(model_dir):
    classifier = M.ActionClassifier(model_dir)
    for label, (a, b) in HELD_OUT.items():
        probs = votes_of(M.classify_clip(classifier, clip(label, a, b)), ["down", "up"])
        assert probs.shape == (b - a + 1, 2) and np.isfinite(probs).all()
        mean = probs.mean(axis=0)
        assert ["down", "up"][int(mean.argmax())] == label and mean[["down", "up"].index(label)] > 0.6, (label, mean)


GRAPH = """
name: lstm
nodes:
  - {id: source, uses: TESTS/lstm_test_nodes.py:SquatClip, params: {gaps: [0, 1, 40, 41]}}
  - {id: lstm, uses: ROOT/nodes/actions.py:Lstm, params: {model: MODEL}, inputs: {landmarks: source/landmarks}}
  - {id: sink, uses: TESTS/lstm_test_nodes.py:RecordVotes, params: {path: TMP/votes.jsonl}, inputs: {votes: lstm/votes}}
"""


def test_lstm_node_in_a_graph_answers_every_frame_as_classify_clip(graph_run, model_dir):
    run = graph_run(GRAPH.replace("ROOT", str(Path(M.__file__).resolve().parent.parent)).replace("MODEL", str(model_dir)))
    assert run.wait(timeout=90) == 0, run.stderr
    records = run.records("votes.jsonl")
    assert [r["seq"] for r in records] == list(range(65))
    # no person in 0-1; the first person at 2; answers from its 8th frame (min_frames 8) on, gaps included
    assert all(r["votes"] is None for r in records[:9])
    gappy = POINTS.copy()
    gappy[[0, 1, 40, 41]] = np.nan
    expected = votes_of(M.classify_clip(M.ActionClassifier(model_dir), Sequence("all", "x", "blazepose33", gappy, WIDTH,
                                                                                 HEIGHT, 30.0, world=WORLD), min_frames=8),
                        ["down", "up"])
    assert np.isnan(expected[:9]).all() and np.isfinite(expected[9:]).all()
    for r, want in zip(records[9:], expected[9:]):
        votes = r["votes"]["votes"]
        assert sum(votes.values()) == pytest.approx(1.0, abs=1e-5)
        assert r["votes"]["label"] in (max(votes, key=votes.get), "unknown")
        np.testing.assert_allclose([votes["down"], votes["up"]], want, atol=1e-5)
    nodes = run.metrics["nodes"]
    assert nodes["lstm"]["counters"].get("no_person") == 4
    assert nodes["lstm"]["rss_mb"] < 200, nodes["lstm"]["rss_mb"]


def test_lstm_node_with_a_missing_model_stops_with_one_line(graph_run, tmp_path):
    run = graph_run(GRAPH.replace("ROOT", str(Path(M.__file__).resolve().parent.parent)).replace("MODEL", str(tmp_path / "nope")))
    assert run.wait(timeout=60) == 1
    assert "params.model" in run.stderr and "no such file: " in run.stderr and "(looked in " in run.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "labels.json").write_text("{not json")
    with pytest.raises(M.ModelDirError, match="labels.json"):
        M.load_predictor(broken)


def test_train_lstm_command_errors_are_one_line(tmp_path, capsys):
    from posegraph.commands.train_lstm import main

    assert main([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "m")]) == 2
    save_dataset(tmp_path / "one.npz", [clip("down", 6, 14), clip("down", 30, 39)])
    assert main([str(tmp_path / "one.npz"), "-o", str(tmp_path / "m")]) == 2
    save_dataset(tmp_path / "coco.npz", [Sequence("a", "down", "coco17", POINTS[6:15, lm.BLAZEPOSE_TO_COCO], WIDTH, HEIGHT, 30),
                                         Sequence("b", "up", "coco17", POINTS[17:28, lm.BLAZEPOSE_TO_COCO], WIDTH, HEIGHT, 30)])
    assert main([str(tmp_path / "coco.npz"), "-o", str(tmp_path / "m"), "--features", "embed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "no such file" in err[0] and "2 classes" in err[1] and "blazepose33" in err[2]


def test_train_lstm_takes_a_folder_of_clips_in_one_command(tmp_path):
    import cv2

    from posegraph.commands import train_lstm as lstm_train

    clip = Path(__file__).resolve().parents[2] / "data" / "google_pose_reference" / "pose_squats.mp4"
    for label, flip in (("upright", None), ("upside_down", 0)):
        (tmp_path / "clips" / label).mkdir(parents=True)
        capture = cv2.VideoCapture(str(clip))
        writer = cv2.VideoWriter(str(tmp_path / "clips" / label / "c.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (720, 1280))
        for _ in range(20):
            ok, frame = capture.read()
            writer.write(frame if flip is None else cv2.flip(frame, flip))
        writer.release()
    model = tmp_path / "model"
    assert lstm_train.main([str(tmp_path / "clips"), "-o", str(model), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((model / "labels.json").read_text())["classes"] == ["upright", "upside_down"]
    assert (model / "landmarks.npz").exists() and (model / "model.tflite").exists()
