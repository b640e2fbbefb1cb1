"""DTW classifier (posegraph/pose/dtw.py): the distance against a plain Python reference, bands,
features, the vote rule, the templates file, the dtw-templates command, and the node in
real graphs run through the CLI."""
import io
import json
import math
import zipfile
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from dtw_test_nodes import arm_swing, squat_points, waving
from conftest import ROOT
from posegraph.pose.dtw import UNKNOWN, Templates, TemplatesError, calibrate_templates, classify, dtw_distance, dtw_distances, features, load_templates, record_templates_from_sequences, vote
from posegraph.pose.sequences import Sequence, save_dataset
from posegraph.testing import NodeHarness


def reference_dtw(a, b, band=None):
    """Textbook O(nm) DTW, Euclidean cost, cells with |i - j| <= max(band, |n - m|)."""
    n, m = len(a), len(b)
    w = max(band, abs(n - m)) if band else max(n, m)
    D = [[math.inf] * (m + 1) for _ in range(n + 1)]
    D[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if abs(i - j) > w:
                continue
            cost = math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a[i - 1], b[j - 1])))
            D[i][j] = cost + min(D[i - 1][j], D[i][j - 1], D[i - 1][j - 1])
    return D[n][m]


def squat_angles():
    return features(squat_points(), "blazepose33", "angles")


def seq(clip_id, label, points):
    return Sequence(clip_id=clip_id, label=label, layout="blazepose33", points=points, width=720, height=1280, fps=30.0)


def make_templates(classes=("squat", "waving", "swing")):
    """Two 30-frame templates per class: squat from the real clip, the others made up."""
    a = squat_angles()
    made = {"squat": [a[0:30], a[22:52]],
            "waving": [features(waving(30, p), "blazepose33") for p in (0.0, 1.5)],
            "swing": [features(arm_swing(30, p), "blazepose33") for p in (0.0, 2.0)]}
    t = Templates("angles")
    for c in classes:
        for i, s in enumerate(made[c]):
            t.add(c, s, f"{c}{i}")
    return t


# ----- the distance ----------------------------------------------------------------------
def test_dtw_equals_the_plain_python_reference_with_and_without_band():
    rng = np.random.default_rng(1)
    for _ in range(40):
        n, m, d = rng.integers(1, 13), rng.integers(1, 13), rng.integers(1, 5)
        a, b = rng.normal(size=(n, d)), rng.normal(size=(m, d))
        for band in (None, 1, 2, 4):
            expected = reference_dtw(a, b, band)
            assert dtw_distance(a, b, band=band) == pytest.approx(expected, rel=1e-12, abs=1e-12)
            assert dtw_distance(a, b, band=band, normalized=True) == pytest.approx(expected / (n + m), rel=1e-12)


def test_band_is_a_real_constraint_and_a_wide_band_equals_no_band():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(33, 3))
    unbanded = dtw_distance(a, b)
    assert dtw_distance(a, b, band=40) == unbanded
    assert dtw_distance(a, b, band=1000) == unbanded
    assert dtw_distance(a, b, band=0) == unbanded  # 0: no band
    narrow = dtw_distance(a, b, band=1)  # widened to |n - m| = 7, so a path exists
    assert math.isfinite(narrow) and narrow >= unbanded
    # a shifted copy needs a warp wider than the band
    x = np.sin(np.linspace(0, 6, 60))[:, None]
    assert dtw_distance(x[10:], x[:-10], band=2) > dtw_distance(x[10:], x[:-10]) + 1.0


def test_identical_sequences_have_distance_zero_and_edge_cases():
    a = squat_angles()
    assert dtw_distance(a, a) == 0.0
    assert dtw_distance(a, a, band=1, normalized=True) == 0.0
    assert dtw_distance(np.arange(5.0), np.arange(5.0)) == 0.0  # 1-D input: one feature
    assert dtw_distance(np.zeros((0, 9)), a) == math.inf
    with pytest.raises(ValueError):
        dtw_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    flat = np.concatenate([a[:30], a[10:40]])
    got = dtw_distances(a[5:35], flat, np.array([0, 30, 60]), band=10, normalized=False)
    assert got.tolist() == [dtw_distance(a[5:35], a[:30], 10), dtw_distance(a[5:35], a[10:40], 10)]


def resample(x, length, warp):
    t = np.linspace(0, 1, length)
    u = np.clip(t + warp * np.sin(np.pi * t), 0, 1) * (len(x) - 1)
    return np.stack([np.interp(u, np.arange(len(x)), x[:, k]) for k in range(x.shape[1])], axis=1)


def test_time_warped_copies_are_closer_than_a_different_motion():
    a = squat_angles()[:45]
    other = features(waving(45), "blazepose33")
    for length, warp in ((45, 0.25), (60, -0.2), (35, 0.15)):
        warped = resample(a, length, warp)
        d_warped = dtw_distance(a, warped, normalized=True)
        assert d_warped < 0.25 * dtw_distance(a, other, normalized=True)
        # DTW absorbs the warp that a frame-by-frame comparison cannot
        if length == 45:
            assert d_warped < 0.5 * np.linalg.norm(a - warped, axis=1).sum() / 90


# ----- features --------------------------------------------------------------------------
def test_features_carry_missing_frames_forward_and_drop_leading_ones():
    pts = squat_points()
    pts[[0, 1, 30, 31]] = np.nan
    f = features(pts, "blazepose33", "angles")
    clean = features(squat_points(), "blazepose33", "angles")
    assert f.shape == (63, 9) and np.isfinite(f).all()
    assert np.array_equal(f[0], clean[2])
    assert np.array_equal(f[28], clean[29]) and np.array_equal(f[29], clean[29])  # frames 30, 31 = frame 29
    assert np.array_equal(f[30], clean[32])
    e = features(squat_points(), "blazepose33", "embed")
    assert e.shape == (65, 69)
    assert features(np.full((4, 33, 4), np.nan), "blazepose33").shape == (0, 9)
    coco = squat_points()[:, :17]
    with pytest.raises(ValueError):
        features(coco, "coco17", "embed")
    assert features(coco, "coco17", "angles").shape == (65, 9)


# ----- the vote --------------------------------------------------------------------------
def test_vote_rule_half_of_the_batch_or_unknown():
    label, votes, best = vote(["A", "B", "A", "C", "D"], np.array([0.1, 0.2, 0.3, 0.4, 0.5]), batch=4)
    assert (label, votes, best) == ("A", {"A": 0.5, "B": 0.25, "C": 0.25}, 0.1)
    label, votes, _ = vote(["A", "B", "C", "D", "A"], np.array([0.1, 0.2, 0.3, 0.4, 0.5]), batch=4)
    assert label == UNKNOWN and votes == {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}
    # the closest one's class must hold half: 1 B then 3 A -> unknown
    assert vote(["B", "A", "A", "A"], np.array([0.1, 0.2, 0.3, 0.4]), batch=4)[0] == UNKNOWN
    assert vote(["A", "A", "A", "B"], np.array([0.1, 0.2, 0.3, 0.4]), batch=4)[0] == "A"
    # threshold on the best distance
    assert vote(["A", "A", "B", "B"], np.array([0.5, 0.6, 0.7, 0.8]), batch=4, threshold=0.4)[0] == UNKNOWN
    assert vote(["A", "A", "B", "B"], np.array([0.5, 0.6, 0.7, 0.8]), batch=4, threshold=0.5)[0] == "A"
    # fewer templates than the batch; none at all
    assert vote(["A"], np.array([3.0]), batch=4) == ("A", {"A": 1.0}, 3.0)
    assert vote([], np.array([]), batch=4)[0] == UNKNOWN


def test_classify_finds_the_class_of_a_similar_segment():
    t = make_templates()
    a = squat_angles()
    label, votes, distances = classify(a[25:55], t, batch=4, band=10)
    assert label == "squat" and votes["squat"] == 0.5 and len(distances) == 6
    assert classify(features(waving(40, 0.7), "blazepose33"), t, band=10)[0] == "waving"
    answer = classify(a[25:55], make_templates(("waving", "swing")), threshold=1.0)
    assert answer.label == UNKNOWN and answer.best > 1.0


# ----- templates -------------------------------------------------------------------------
def test_templates_round_trip_without_pickle(tmp_path):
    t = make_templates()
    t.params = {"segment": 30}
    path = tmp_path / "t.npz"
    t.save(path)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
        assert z["labels"].dtype.kind == "U" and z["features"].shape == (180, 9)
        assert z["offsets"].tolist() == [0, 30, 60, 90, 120, 150, 180]
    back = load_templates(path)
    assert back.kind == "angles" and back.labels == t.labels and back.clip_ids == t.clip_ids
    assert back.params == {"segment": 30}
    assert all(np.array_equal(x, y) for x, y in zip(back.sequences, t.sequences))
    # broken files: one-line TemplatesError
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        for name in ("format", "version", "kind", "labels", "clip_ids", "offsets", "features", "params"):
            z.writestr(name + ".npy", buf.getvalue())
    for name in ("junk.npz", "other.npz", "pickled.npz", "missing.npz"):
        with pytest.raises(TemplatesError) as err:
            Templates.load(tmp_path / name)
        assert "\n" not in str(err.value) and name in str(err.value)


def test_record_templates_from_sequences_cuts_segments():
    pts = squat_points()
    sequences = [seq("squat/a.mp4", "squat", pts), seq("waving/b.mp4", "waving", waving(30)),
                 seq("none/c.mp4", "none", np.full((10, 33, 4), np.nan, np.float32))]
    t = record_templates_from_sequences(sequences, "angles", segment=45, hop=15)
    assert t.labels == ["squat"] * 3 + ["waving"]
    assert t.clip_ids == ["squat/a.mp4@0", "squat/a.mp4@15", "squat/a.mp4@20", "waving/b.mp4"]
    assert [len(s) for s in t.sequences] == [45, 45, 45, 30]
    whole = record_templates_from_sequences(sequences, "embed")
    assert whole.kind == "embed" and [len(s) for s in whole.sequences] == [65, 30]
    with pytest.raises(TemplatesError):
        record_templates_from_sequences(sequences, "embed", templates=t)


# ----- the command -----------------------------------------------------------------------
def run_cli(argv):
    from posegraph.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_dtw_templates_command_from_a_data_set_and_append(tmp_path):
    data = tmp_path / "data.npz"
    save_dataset(data, [seq("squat/a.mp4", "squat", squat_points()), seq("waving/b.mp4", "waving", waving(50))])
    out = tmp_path / "t.npz"
    code, stdout, stderr = run_cli(["dtw-templates", "--data", str(data), "-o", str(out), "--features", "angles"])
    assert code == 0, stderr
    t = Templates.load(out)
    assert t.labels == ["squat", "squat", "squat", "waving", "waving"] and t.kind == "angles"
    assert "5 templates" in stdout
    more = tmp_path / "more.npz"
    save_dataset(more, [seq("swing/c.mp4", "swing", arm_swing(40))])
    code, _, stderr = run_cli(["dtw-templates", "--data", str(more), "-o", str(out), "--append", "--segment", "0"])
    assert code == 0, stderr
    assert Templates.load(out).labels == ["squat"] * 3 + ["waving"] * 2 + ["swing"]
    code, _, stderr = run_cli(["dtw-templates", "--data", str(more), "-o", str(out), "--append", "--features", "embed"])
    assert code == 2 and "holds 'angles' features" in stderr
    code, _, stderr = run_cli(["dtw-templates", "--data", str(tmp_path / "nope.npz"), "-o", str(out)])
    assert code == 2 and stderr.count("\n") == 1 and "nope.npz" in stderr


def test_dtw_templates_webcam_without_a_camera_is_one_clear_line(tmp_path):
    out = tmp_path / "t.npz"
    code, _, stderr = run_cli(["dtw-templates", "--webcam", "57", "--label", "squat", "--countdown", "0", "-o", str(out)])
    assert code == 1
    assert stderr.startswith("error: cannot open camera 57") and stderr.count("\n") == 1
    assert not out.exists()
    code, _, stderr = run_cli(["dtw-templates", "--webcam", "0", "-o", str(out)])
    assert code == 2 and "--label" in stderr


# ----- the node in real graphs -----------------------------------------------------------
GRAPH = """
name: dtw
nodes:
  - {id: source, uses: TESTS/dtw_test_nodes.py:Landmarks, params: {clip: squat, gaps: [0, 1, 30, 31]}}
  - id: all
    uses: dtw
    params: {templates: TMP/all.npz, window: 30, every: 5, min_frames: 15, batch: 4, band: 10}
    inputs: {landmarks: source/landmarks}
  - id: others
    uses: dtw
    params: {templates: TMP/others.npz, window: 30, threshold: 1.0}
    inputs: {landmarks: source/landmarks}
  - {id: rec_all, uses: TESTS/dtw_test_nodes.py:Record, params: {path: TMP/all.jsonl}, inputs: {votes: all/votes}}
  - {id: rec_others, uses: TESTS/dtw_test_nodes.py:Record, params: {path: TMP/others.jsonl}, inputs: {votes: others/votes}}
"""


def test_dtw_node_in_a_graph_answers_the_class_or_unknown(graph_run, tmp_path):
    make_templates().save(tmp_path / "all.npz")
    make_templates(("waving", "swing")).save(tmp_path / "others.npz")
    run = graph_run(GRAPH)
    assert run.wait(timeout=90) == 0, run.stderr
    for name in ("all.jsonl", "others.jsonl"):
        records = run.records(name)
        assert [r["seq"] for r in records] == list(range(65)), name  # one packet per frame
        # frames 0, 1: nobody yet; frame 2 is the first person, 15 frames later the first answer
        assert all(r["votes"] is None for r in records[:16]), name
        assert all(r["votes"] is not None for r in records[16:]), name
    answers = [r["votes"] for r in run.records("all.jsonl")[16:]]
    assert all(a["label"] == "squat" and a["votes"]["squat"] >= 0.5 for a in answers)
    # classified every 5 frames (seq 16, 21, ...): the frames between repeat the answer
    for start in range(0, len(answers), 5):
        block = answers[start:start + 5]
        assert all(b == block[0] for b in block)
    assert len({a["distance"] for a in answers}) > 3
    others = [r["votes"] for r in run.records("others.jsonl")[16:]]
    assert all(a["label"] == UNKNOWN and a["distance"] > 1.0 and a["votes"] == {UNKNOWN: 1.0} for a in others)
    counters = run.metrics["nodes"]["all"]["counters"]
    assert counters["carried"] == 2 and counters["classified"] == 10


def test_dtw_node_with_a_missing_templates_file_stops_the_graph_with_one_line(graph_run, tmp_path):
    run = graph_run(GRAPH)
    assert run.wait(timeout=60) == 1
    line = next(l for l in run.stderr.splitlines() if l.startswith("error"))
    assert "params.templates" in line and "no such file: " in line and "(looked in " in line


def test_a_slow_camera_is_brought_to_the_templates_frame_rate_by_its_timestamps(tmp_path):
    """Templates are kept at 30 frames/s; a 5 frames/s stream's query is resampled by its
    timestamps to the same rate, so it covers the same 1.5 s of motion as a template
    (raw, its 45 frames would span 9 s, six times more motion than any template)."""
    from posegraph.pose.dtw import TEMPLATE_FPS, at_rate
    from posegraph.nodes.dtw import Dtw

    def motion(fps, seconds):
        t = np.arange(0, seconds, 1.0 / fps)
        return np.stack([np.sin(2 * np.pi * t / 1.5), np.cos(2 * np.pi * t / 1.5)], axis=1)

    assert len(at_rate(motion(5, 3.0), 5, TEMPLATE_FPS)) == len(motion(30, 3.0)) - 5  # up to the last sample's time
    templates = Templates(kind="angles", params={"fps": TEMPLATE_FPS}, labels=["a"], sequences=[motion(30, 1.5)])
    path = tmp_path / "t.npz"
    templates.save(path)
    with NodeHarness(Dtw, {"templates": str(path), "window": 45, "every": 1, "batch": 1, "band": 10, "threshold": 0.0,
                           "min_frames": 8}) as node:
        node.node.dtw.vector = lambda packet: packet["vector"]  # the motion is given as features directly
        for i, vector in enumerate(motion(5, 12.0)):  # 60 frames at 5 frames/s
            node.process({"landmarks": {"vector": vector, "pts_ms": i * 200.0}})
        query = node.keyed.states[0, 0].query()  # the window of stream 0's one person (id 0)
    end = round(11.8 * 30)  # the last frame's time, 11.8 s, at 30 frames/s
    truth = motion(30, 12.0)[end - 44:end + 1]  # the same 1.5 s of motion
    assert query.shape == (45, 2)
    assert np.abs(query - truth).max() < 0.15  # linear interpolation of 5 frames/s samples


# ----- view-invariant templates and "unknown" from data ----------------------------------------
WORLD = ROOT / "data" / "google_pose_reference" / "pose_squats_3d.full.json"
SHARED = ROOT.parent / "shared" / "data" / "exercise_clips"


def world_squats() -> np.ndarray:
    """Google's BlazePose world landmarks of the bundled clip: (65, 33, 4) metres, visibility 1."""
    xyz = np.asarray(json.loads(WORLD.read_text()), dtype=np.float32)
    return np.concatenate([xyz, np.ones((65, 33, 1), np.float32)], axis=2)


def lying(world: np.ndarray) -> np.ndarray:
    """The same motion done lying on the back (the skeleton pitched 90 degrees): unlike a squat."""
    from posegraph.pose.body import rotate

    return np.concatenate([rotate(world[..., :3], 0.0, np.pi / 2), world[..., 3:]], axis=-1).astype(np.float32)


def world_seq(clip_id, label, world, group, fps=5.0):
    return Sequence(clip_id=clip_id, label=label, layout="blazepose33", points=squat_points()[:len(world)],
                    width=720, height=1280, fps=fps, world=world, group=group)


def squat_reps_and_a_lying_negative():
    """The bundled clip's three squats as three groups (as if three people), and the clip's
    motion lying down as a negative (a label outside the classes)."""
    w = world_squats()
    reps = [world_seq(f"squat/rep{i}", "squat", w[a:b], f"person{i}") for i, (a, b) in enumerate(((0, 22), (22, 44), (44, 65)))]
    return reps, world_seq("leg_press/lying", "leg_press", lying(w), "floor")


def world_packets(world, fps=5.0):
    return [{"px": p, "world": w, "layout": "blazepose33", "width": 720, "height": 1280, "pts_ms": i * 1000.0 / fps}
            for i, (p, w) in enumerate(zip(squat_points(), world))]


def test_dtw_templates_store_a_calibrated_threshold_and_the_node_answers_unknown_above_it(tmp_path):
    from posegraph.nodes.dtw import Dtw

    reps, negative = squat_reps_and_a_lying_negative()
    data, out = tmp_path / "data.npz", tmp_path / "t.npz"
    save_dataset(data, reps + [negative])
    code, stdout, stderr = run_cli(["dtw-templates", "--data", str(data), "-o", str(out), "--classes", "squat"])
    assert code == 0, stderr
    assert "negatives turned away: 100.0%" in stdout
    t = Templates.load(out)
    assert t.kind == "body" and set(t.labels) == {"squat"} and set(t.groups) == {"person0", "person1", "person2"}
    stored = t.params["class_thresholds"]["squat"]
    assert stored["value"] > 0 and stored["known"] == len(t) and t.threshold == {"squat": stored["value"]}
    assert t.params["calibration"]["negatives_rejected_per_class"] == 1.0
    params = {"templates": str(out), "window": 45, "every": 5, "batch": 4, "band": 10, "min_frames": 15}
    answers = {}
    for name, world, threshold in (("squats", world_squats(), 0.0), ("lying", lying(world_squats()), 0.0),
                                   ("lying, threshold off", lying(world_squats()), -1.0)):
        with NodeHarness(Dtw, {**params, "threshold": threshold}) as node:
            outs = [node.process({"landmarks": p}) for p in world_packets(world)]
        answers[name] = [o["votes"] for o in outs if o]
    # squats: squat wherever the best distance is within the threshold (a window across the
    # cut between two groups' pieces matches none of them that well, and may say unknown)
    assert all(a["label"] == "squat" for a in answers["squats"] if a["distance"] <= stored["value"])
    assert sum(a["label"] == "squat" for a in answers["squats"]) >= 0.8 * len(answers["squats"])
    assert all(a["label"] == UNKNOWN and a["votes"] == {UNKNOWN: 1.0} and a["distance"] > stored["value"]
               for a in answers["lying"])
    assert all(a["label"] == "squat" for a in answers["lying, threshold off"])  # the threshold said unknown


def test_negatives_kept_as_unknown_templates_vote_unknown(tmp_path):
    reps, negative = squat_reps_and_a_lying_negative()
    data, out = tmp_path / "data.npz", tmp_path / "t.npz"
    save_dataset(data, reps + [negative])
    code, _, stderr = run_cli(["dtw-templates", "--data", str(data), "-o", str(out), "--classes", "squat",
                               "--unknown-templates"])
    assert code == 0, stderr
    t = Templates.load(out)
    assert set(t.labels) == {"squat", UNKNOWN} and t.classes == ["squat"] and t.params["unknown_templates"]
    query = features(lying(world_squats())[20:40], "blazepose33", "body")
    answer = classify(query, t)
    assert answer.label == UNKNOWN and answer.votes == {UNKNOWN: 1.0}


def test_an_unknown_answer_is_smoothed_like_a_class_and_becomes_the_records_class(tmp_path):
    from posegraph.nodes.dtw import Dtw
    from posegraph.nodes.smooth import Smooth
    from posegraph.pose.records import person_fields

    reps, _ = squat_reps_and_a_lying_negative()
    t = record_templates_from_sequences(reps, "body", segment=45, hop=15)
    calibrate_templates(t, ["squat"])
    t.save(tmp_path / "t.npz")
    packets = world_packets(world_squats())[:30] + world_packets(lying(world_squats()))[30:]
    with NodeHarness(Dtw, {"templates": str(tmp_path / "t.npz")}) as dtw, NodeHarness(Smooth, {}) as smooth:
        records = []
        for p in packets:
            votes = dtw.process({"landmarks": p}).get("votes")
            scores = smooth.process({"votes": votes}).get("scores")
            records.append(person_fields(p, votes, scores, None, False))
    classes = [r["class"] for r in records]
    assert classes[14] == "squat" and classes[-1] == UNKNOWN  # squatting, then lying down
    assert records[-1]["smoothed"][UNKNOWN] > records[-1]["smoothed"].get("squat", 0.0)


def test_body_templates_skip_a_person_without_world_landmarks_once_said():
    from posegraph.nodes.dtw import Dtw

    reps, _ = squat_reps_and_a_lying_negative()
    t = record_templates_from_sequences(reps, "body", segment=45, hop=15)
    coco = {"px": squat_points()[0][:17], "layout": "coco17"}
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t.save(f"{tmp}/t.npz")
        with NodeHarness(Dtw, {"templates": f"{tmp}/t.npz"}) as node:
            assert node.process({"landmarks": coco}) == {} and node.process({"landmarks": coco}) == {}
            assert node.counters["wrong_layout"] == 2
            said = [line for line in node.logs if "world landmarks" in line]
    assert len(said) == 1 and "'angles' templates" in said[0]


def test_version_1_angles_templates_without_groups_or_threshold_still_load_and_answer(tmp_path):
    """A templates file as the previous code wrote it (format version 1, 2-D angles)."""
    from posegraph.pose.dtw import DtwClassifier

    a = squat_angles()
    sequences = [a[0:45], a[20:65]]
    flat = np.concatenate(sequences)
    path = tmp_path / "old.npz"
    np.savez(path, format=np.array("posegraph-dtw-templates"), version=np.array(1, dtype=np.int64), kind=np.array("angles"),
             labels=np.array(["squat", "squat"]), clip_ids=np.array(["squat/a@0", "squat/a@20"]),
             offsets=np.array([0, 45, 90], dtype=np.int64), features=flat, params=np.array('{"fps": 30.0}'))
    t = Templates.load(path)
    assert t.kind == "angles" and t.groups == ["squat/a", "squat/a"] and t.threshold is None
    window = DtwClassifier(t, window=30, every=1, min_frames=5).new_window()
    answers = [window.push({"px": p, "layout": "blazepose33", "pts_ms": i * 33.3}) for i, p in enumerate(squat_points())]
    assert answers[-1]["label"] == "squat"


@pytest.mark.skipif(not SHARED.exists(), reason=f"needs the real exercise clips in {SHARED}")
def test_on_real_clips_of_other_people_body_templates_answer_the_class_and_unknown_for_a_plank(tmp_path):
    """Templates of squat and jumping-jack clips (BlazePose on the real clips), calibrated
    between clips; another squat clip is a squat, a plank (not a class) is unknown."""
    from posegraph.pose.dtw import DtwClassifier
    from posegraph.pose.sequences import extract_clip
    from posegraph.pose.training.dtw_templates import build_templates

    def clip(name):
        label = name.rsplit("_", 1)[0]
        return extract_clip(SHARED / label / name, label, f"{label}/{name}")

    train = [clip(n) for n in ("squat_001.avi", "squat_002.avi", "squat_004.mp4", "squat_005.mp4", "jumping_jack_001.mp4",
                                "jumping_jack_002.mp4", "jumping_jack_003.mp4")]
    t, _, calibration = build_templates(train, "body", classes=["squat", "jumping_jack"])
    assert set(calibration.by_class) == {"squat", "jumping_jack"} and t.scale is not None
    dtw = DtwClassifier(t)
    for test, expected in ((clip("squat_006.mp4"), "squat"), (clip("plank_001.mp4"), UNKNOWN)):
        window = dtw.new_window()
        answers = [window.push({"px": p, "world": w, "layout": "blazepose33", "pts_ms": i * 1000 / test.fps})
                   for i, (p, w) in enumerate(zip(test.points, test.world))]
        labels = [a["label"] for a in answers if a]
        assert max(set(labels), key=labels.count) == expected, (test.clip_id, labels)
