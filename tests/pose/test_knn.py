"""ML Kit's two-stage KNN on ML Kit's own 812 samples: accuracy, agreement with the
write-up's per-sample loop, outliers, the samples loader's errors, the node, and the
knn-samples training command on frames of the bundled squat clip; view-invariant samples
of world landmarks made from sequences, with their calibrated "unknown" threshold.

Run as a script (`python tests/pose/test_knn.py`) for the speed benchmark: ms per query of the
vectorised classifier against the reference loop below.
"""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import video_frames


from posegraph.nodes.embed import Embed
from posegraph.pose.features import mlkit_embedding, mlkit_embeddings  # noqa: E402
from posegraph.pose import landmarks as lm  # noqa: E402
from posegraph.nodes.knn import Knn
from posegraph.pose.knn import KnnClassifier, SamplesError, find_outliers, leave_one_out_accuracy, load_samples, top_classes
from posegraph import NodeOpenError  # noqa: E402
from posegraph.testing import NodeHarness

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "mlkit" / "fitness_pose_samples.csv"
SQUATS = ROOT / "data" / "google_pose_reference"


@pytest.fixture(scope="module")
def classifier():
    return KnnClassifier(SAMPLES)


def reference_votes(clf: KnnClassifier, embedding, mirrored, exclude=None, top_max=30, top_mean=10):
    """The write-up's PoseClassifier, one sample at a time, in plain Python; ties are broken
    by sample index, the documented rule of the vectorised version."""
    w = np.array([1.0, 1.0, 0.2])
    query = np.asarray(embedding, dtype=np.float64).reshape(23, 3)
    flipped = np.asarray(mirrored, dtype=np.float64).reshape(23, 3)
    samples = clf.embeddings.reshape(-1, 23, 3)
    by_max = []
    for i, sample in enumerate(samples):
        if i == exclude:
            continue
        d = min(np.max(np.abs(sample - query) * w), np.max(np.abs(sample - flipped) * w))
        by_max.append((d, i))
    by_max = sorted(by_max)[:top_max]
    by_mean = []
    for _, i in by_max:
        sample = samples[i]
        d = min(np.mean(np.abs(sample - query) * w), np.mean(np.abs(sample - flipped) * w))
        by_mean.append((d, i))
    by_mean = sorted(by_mean)[:top_mean]
    names = [clf.samples.classes[i] for _, i in by_mean]
    return {c: names.count(c) for c in set(names)}


def squat_frames():
    return np.asarray(json.loads((SQUATS / "pose_squats.full.json").read_text()))


# ----- the classifier -----------------------------------------------------------------------
def test_samples_csv_loads_812_samples_of_4_classes(classifier):
    assert len(classifier) == 812
    assert sorted(classifier.class_names) == ["pushups_down", "pushups_up", "squats_down", "squats_up"]
    assert classifier.samples.landmarks.shape == (812, 33, 3)


def test_leave_one_out_accuracy_on_mlkit_samples_is_at_least_99_percent(classifier):
    accuracy = leave_one_out_accuracy(classifier)
    print(f"leave-one-out accuracy on {len(classifier)} samples: {accuracy:.4f}")
    assert accuracy >= 0.99


def test_vectorised_knn_gives_exactly_the_votes_of_the_per_sample_loop(classifier):
    # 25 held-out samples (each against the other 811) and 25 frames of the squat clip
    for i in range(0, 812, 33):
        e, m = classifier.embeddings[i], classifier.mirrored[i]
        assert classifier.classify_embedding(e, m, exclude=i) == reference_votes(classifier, e, m, exclude=i), i
    for frame in squat_frames()[::2][:25]:
        e, m = mlkit_embeddings(frame)
        assert classifier.classify_embedding(e, m) == reference_votes(classifier, e, m)
        assert classifier.classify(frame) == reference_votes(classifier, e, m)
    # a "mirrored" query that is not just x negated (the true left/right mirror) takes
    # the general path of stage 1
    for frame in squat_frames()[1:10:3]:
        e, m = mlkit_embedding(frame), mlkit_embedding(lm.mirror(frame, width=720))
        assert classifier.classify_embedding(e, m) == reference_votes(classifier, e, m)


def test_outliers_are_the_samples_the_classifier_puts_elsewhere(classifier):
    outliers = find_outliers(classifier)
    print(f"outliers among the bundled samples: {len(outliers)}: "
          + "; ".join(f"{o.name} ({o.class_name}) {o.votes}" for o in outliers))
    misses = round(len(classifier) * (1 - leave_one_out_accuracy(classifier)))
    assert len(outliers) == misses  # same rule: the label is not the single top class
    assert len(outliers) <= 8
    for o in outliers:
        assert top_classes(o.votes) != [o.class_name]
        assert o.name == classifier.samples.names[o.index] and o.line == o.index + 1


def test_equal_distances_are_broken_by_sample_order(tmp_path):
    pose = load_samples(SAMPLES).landmarks[0]
    row = ",".join(f"{v:.4f}" for v in pose.reshape(-1))
    csv = tmp_path / "ties.csv"
    csv.write_text("".join(f"s{i},{'b' if i < 12 else 'a'},{row}\n" for i in range(24)))
    clf = KnnClassifier(csv)
    assert clf.classify(pose) == {"b": 10}  # all 24 tie; the first 10 rows win
    assert list(clf.nearest(mlkit_embedding(pose))) == list(range(10))


def test_fewer_samples_than_top_n_still_classify(tmp_path):
    samples = load_samples(SAMPLES)
    lines = SAMPLES.read_text().splitlines()
    small = tmp_path / "small.csv"
    small.write_text("\n".join(lines[:3] + lines[-2:]) + "\n")
    clf = KnnClassifier(small)
    votes = clf.classify(samples.landmarks[0])
    assert sum(votes.values()) == 5
    assert sum(clf.classify_embedding(clf.embeddings[0], clf.mirrored[0], exclude=0).values()) == 4


# ----- the loader's errors --------------------------------------------------------------------
def test_missing_samples_file_is_one_line(tmp_path):
    with pytest.raises(SamplesError) as err:
        load_samples(tmp_path / "nope.csv")
    assert str(err.value) == f"{tmp_path / 'nope.csv'}: no such file"


def test_malformed_rows_are_reported_with_file_and_line(tmp_path):
    good = SAMPLES.read_text().splitlines()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{good}\n\n{good}\nshort,row,1,2,3\n")
    with pytest.raises(SamplesError, match=rf"^{bad}:4: expected 101 columns .* got 5$"):
        load_samples(bad)
    cells = good.split(",")
    cells[7] = "abc"
    bad.write_text(f"{good}\n{','.join(cells)}\n")
    with pytest.raises(SamplesError, match=rf"^{bad}:2: column 8: 'abc' is not a number$"):
        load_samples(bad)
    bad.write_text("")
    with pytest.raises(SamplesError, match="no samples"):
        load_samples(bad)


# ----- the node -----------------------------------------------------------------------------
def test_knn_node_finds_the_bundled_samples_from_any_directory_and_votes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frame = squat_frames()[0].astype(np.float32)
    px = np.concatenate([frame, np.ones((33, 1), np.float32)], axis=1)
    with NodeHarness(Embed, {"kind": "mlkit"}) as embed:
        features = embed.process({"landmarks": {"px": px, "layout": "blazepose33"}})["features"]
    with NodeHarness(Knn, {"samples": "data/mlkit/fitness_pose_samples.csv", "top_n_by_max": 30, "top_n_by_mean": 10}) as node:
        votes = node.process({"features": features})["votes"]["votes"]
        assert votes == {"squats_up": 10}  # the clip starts standing
        assert node.process({"features": None}) == {}


def test_mlkit_samples_keep_the_votes_packet_they_always_gave():
    frame = squat_frames()[0].astype(np.float32)
    px = np.concatenate([frame, np.ones((33, 1), np.float32)], axis=1)
    with NodeHarness(Embed, {"kind": "mlkit"}) as embed:
        features = embed.process({"landmarks": {"px": px, "layout": "blazepose33"}})["features"]
    with NodeHarness(Knn, {}) as node:
        assert node.process({"features": features}) == {"votes": {"votes": {"squats_up": 10}}}  # no label, no distance
    assert load_samples(SAMPLES).kind == "mlkit" and KnnClassifier(SAMPLES).threshold is None


def test_knn_node_that_cannot_load_its_samples_names_the_param(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    node = NodeHarness(Knn, {"samples": "missing.csv", "top_n_by_max": 30, "top_n_by_mean": 10})
    with pytest.raises(NodeOpenError) as err:
        node.open()
    node.close()
    assert err.value.field == "params.samples" and str(err.value).startswith("no such file: 'missing.csv' (looked in ")


# ----- the training command ------------------------------------------------------------------
def test_knn_samples_command_builds_a_csv_from_images_and_drops_the_no_pose_one(tmp_path, capsys):
    import cv2

    from posegraph.commands.knn_samples import main

    root = tmp_path / "images"
    frames = video_frames(SQUATS / "pose_squats.mp4")
    # hips' height in the reference landmarks: standing ~580 px, squatting ~760 px
    for name, picks in (("up", (0, 2, 22, 44)), ("down", (10, 33, 34, 59))):
        (root / name).mkdir(parents=True)
        for i in picks:
            cv2.imwrite(str(root / name / f"frame{i:02d}.jpg"), frames[i])
    cv2.imwrite(str(root / "down" / "black.png"), np.zeros((240, 320, 3), np.uint8))
    out = tmp_path / "samples.csv"
    outliers = tmp_path / "outliers.csv"
    code = main([str(root), "-o", str(out), "--outliers", "--top-n-by-mean", "3", "--outliers-out", str(outliers)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert f"{root / 'down' / 'black.png'}: no pose found" in printed
    assert "wrote 8 samples" in printed and "dropped 1" in printed
    samples = load_samples(out)
    assert sorted(samples.names) == sorted(f"frame{i:02d}.jpg" for i in (0, 2, 22, 44, 10, 33, 34, 59))
    assert samples.classes.count("up") == samples.classes.count("down") == 4
    clf = KnnClassifier(out, top_n_by_max=5, top_n_by_mean=3)
    assert top_classes(clf.classify(squat_frames()[12])) == ["down"]  # a held-out squatting frame
    assert top_classes(clf.classify(squat_frames()[50])) == ["up"]
    assert outliers.read_text().splitlines()[0] == "name,class,predicted,votes"


def test_knn_samples_command_rejects_a_missing_or_empty_root(tmp_path, capsys):
    from posegraph.commands.knn_samples import main

    assert main([str(tmp_path / "none"), "-o", str(tmp_path / "x.csv")]) == 2
    (tmp_path / "empty" / "up").mkdir(parents=True)
    assert main([str(tmp_path / "empty"), "-o", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {tmp_path / 'none'}: no such directory",
                   f"error: {tmp_path / 'empty'}: no images found (expected ROOT/<class>/*.jpg|*.jpeg|*.png)"]
    assert not (tmp_path / "x.csv").exists()


# ----- benchmark (not a test) -------------------------------------------------------------------
def benchmark(repeat: int = 2000) -> None:
    clf = KnnClassifier(SAMPLES)
    queries = [mlkit_embeddings(f) for f in squat_frames()]
    for e, m in queries:  # warm up
        clf.classify_embedding(e, m)
    start = time.perf_counter()
    for k in range(repeat):
        clf.classify_embedding(*queries[k % len(queries)])
    fast = (time.perf_counter() - start) / repeat * 1e3
    start = time.perf_counter()
    for e, m in queries[:20]:
        reference_votes(clf, e, m)
    slow = (time.perf_counter() - start) / 20 * 1e3
    print(f"{len(clf)} samples: vectorised {fast:.3f} ms/query, per-sample loop {slow:.2f} ms/query ({slow / fast:.0f}x)")


if __name__ == "__main__":
    benchmark()


# ----- view-invariant samples from sequences, and "unknown" ------------------------------------------
SHARED = ROOT.parent / "shared" / "data" / "exercise_clips"


def world_squats() -> np.ndarray:
    """Google's BlazePose world landmarks of the bundled clip: (65, 33, 4) metres, visibility 1."""
    xyz = np.asarray(json.loads((SQUATS / "pose_squats_3d.full.json").read_text()), dtype=np.float32)
    return np.concatenate([xyz, np.ones((65, 33, 1), np.float32)], axis=2)


def lying(world):
    """The skeleton pitched 90 degrees: the same limbs, lying on the back."""
    from posegraph.pose.body import rotate

    return np.concatenate([rotate(world[..., :3], 0.0, np.pi / 2), world[..., 3:]], axis=-1).astype(np.float32)


def body_samples(tmp_path, capsys):
    """knn-samples --data on the bundled squats as three groups (one per squat) and, as a
    negative, the same motion lying down."""
    from posegraph.commands.knn_samples import main
    from posegraph.pose.sequences import Sequence, save_dataset

    w, px = world_squats(), np.concatenate([squat_frames(), np.ones((65, 33, 1))], axis=2)

    def seq(clip_id, label, a, b, world, group):
        return Sequence(clip_id, label, "blazepose33", px[a:b], 720, 1280, 5.0, world=world[a:b], group=group)

    data = tmp_path / "data.npz"
    save_dataset(data, [seq(f"squat/rep{i}", "squat", a, b, w, f"person{i}") for i, (a, b) in enumerate(((0, 22), (22, 44), (44, 65)))]
                 + [seq("leg_press/lying", "leg_press", 0, 65, lying(w), "floor")])
    out = tmp_path / "samples.csv"
    code = main(["--data", str(data), "-o", str(out), "--classes", "squat"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    return out, printed.out


def test_knn_samples_from_sequences_hold_world_landmarks_and_a_calibrated_threshold(tmp_path, capsys):
    out, printed = body_samples(tmp_path, capsys)
    assert "wrote 65 samples of kind 'body'" in printed and "negatives turned away: 100.0% of 65" in printed
    samples = load_samples(out)
    assert samples.kind == "body" and samples.classes == ["squat"] * 65  # the negative is not a sample
    assert samples.names[:2] == ["squat/rep0#0", "squat/rep0#1"]
    assert np.allclose(samples.landmarks[0], world_squats()[0, :, :3], atol=1e-6)  # metres, not pixels
    side = json.loads((tmp_path / "samples.csv.json").read_text())
    assert side["format"] == "posegraph-knn-samples" and side["kind"] == "body" and side["classes"] == ["squat"]
    assert side["groups"] == {"squat/rep0": "person0", "squat/rep1": "person1", "squat/rep2": "person2"}
    squat = side["class_thresholds"]["squat"]
    assert squat["value"] > 0 and squat["known"] == 65 and side["calibration"]["negatives_rejected_per_class"] == 1.0
    assert KnnClassifier(out).threshold == {"squat": squat["value"]}


def test_knn_node_on_body_samples_answers_unknown_for_an_unlike_pose(tmp_path, capsys):
    out, _ = body_samples(tmp_path, capsys)
    limit = KnnClassifier(out).threshold["squat"]

    def answers(world, threshold=0.0):
        with NodeHarness(Embed, {"kind": "body"}) as embed, \
                NodeHarness(Knn, {"samples": str(out), "top_n_by_max": 30, "top_n_by_mean": 10, "threshold": threshold}) as knn:
            return [knn.process(embed.process({"landmarks": {"px": np.zeros((33, 4), np.float32), "world": w,
                                                             "layout": "blazepose33"}}))["votes"] for w in world]

    squats = answers(world_squats())
    assert all(a["label"] == "squat" and a["votes"] == {"squat": 10} and a["distance"] <= limit for a in squats)
    for a in answers(lying(world_squats())):
        assert a["label"] == "unknown" and a["votes"] == {"unknown": 10} and a["distance"] > limit
    assert {a["label"] for a in answers(lying(world_squats()), threshold=-1.0)} == {"squat"}  # the threshold decided


def test_knn_node_on_body_samples_skips_features_of_another_kind_once_said(tmp_path, capsys):
    out, _ = body_samples(tmp_path, capsys)
    e, m = mlkit_embeddings(squat_frames()[0])
    with NodeHarness(Knn, {"samples": str(out), "top_n_by_max": 30, "top_n_by_mean": 10}) as node:
        for _ in range(2):
            assert node.process({"features": {"kind": "mlkit", "embedding": e, "mirrored": m}}) == {}
        assert node.counters["wrong_features"] == 2
        assert sum("embed node's kind: body" in line for line in node.logs) == 1


@pytest.mark.skipif(not SHARED.exists(), reason=f"needs the real exercise clips in {SHARED}")
def test_on_real_clips_of_other_people_body_samples_answer_the_class_and_unknown_for_a_plank():
    """Samples of squat and jumping-jack clips (BlazePose on the real clips), calibrated between
    clips; another squat clip is a squat, a plank (not a class) unknown, frame by frame."""
    from posegraph.pose.features import features_packet
    from posegraph.pose.knn import save_samples
    from posegraph.pose.sequences import extract_clip
    from posegraph.pose.training.knn_samples import build_samples

    def clip(name):
        label = name.rsplit("_", 1)[0]
        return extract_clip(SHARED / label / name, label, f"{label}/{name}")

    train = [clip(n) for n in ("squat_001.avi", "squat_002.avi", "squat_004.mp4", "jumping_jack_001.mp4",
                                "jumping_jack_002.mp4", "jumping_jack_003.mp4")]
    samples, calibration = build_samples(train, ["squat", "jumping_jack"])
    assert set(calibration.by_class) == {"squat", "jumping_jack"}
    knn = KnnClassifier(samples)
    for test, expected in ((clip("squat_006.mp4"), "squat"), (clip("plank_001.mp4"), "unknown")):
        labels = []
        for p, w in zip(test.points, test.world):
            features = features_packet({"px": p, "world": w, "layout": "blazepose33"}, "body")
            if features is not None:
                labels.append(knn.answer(features)["label"])
        assert max(set(labels), key=labels.count) == expected, (test.clip_id, labels)
