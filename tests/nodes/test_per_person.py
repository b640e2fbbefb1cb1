"""Issue 7: every node after the pose model works per person, so two people side by side
get their own labels and counts.

The scene (tests/support/people_test_nodes.py): the bundled squats clip beside itself 20 frames
later, 1440 x 1280; person 1 is the clip, person 2 the delayed copy. Landmarks come from
Google's reference landmarks of the clip (no pose model), merged into multi-person packets
with posegraph.pose.people.merge; the nodes run in posegraph.testing.NodeHarness (the
engine's Context and per-person keyed state). The last test also runs the multi-person pose
node on the video.
"""
import json

import numpy as np
import pytest

from people_test_nodes import (FRAMES, HEIGHT, SCENE_WIDTH, SHIFT, WIDTH, person_packet, stacked_frames, two_people,
                               write_scene)
from posegraph.pose.people import split
from posegraph.testing import NodeHarness

SAMPLES = "data/mlkit/fitness_pose_samples.csv"


@pytest.fixture(scope="module")
def angles_templates(tmp_path_factory):
    """DTW templates of 2-D joint angles (any layout) from the bundled clip's landmarks: its
    squats in 30-frame pieces, and a person standing still (its first frame held)."""
    from people_test_nodes import clip_points
    from posegraph.pose.dtw import record_templates_from_sequences
    from posegraph.pose.sequences import Sequence

    points = clip_points()
    clips = [Sequence(f"squat/{i}", "squat", "blazepose33", points[i:i + 30], WIDTH, HEIGHT, 30.0) for i in (0, 15, 30)]
    clips.append(Sequence("stand/0", "stand", "blazepose33", np.repeat(points[:1], 30, 0), WIDTH, HEIGHT, 30.0))
    path = tmp_path_factory.mktemp("dtw") / "angles.npz"
    record_templates_from_sequences(clips, "angles").save(path)
    return str(path)


def by_id(packet) -> dict:
    """{person id: that person's packet} of a packet (one person: id 0; None: {})."""
    return dict(split(packet))


def knn_chain():
    from posegraph.nodes.embed import Embed
    from posegraph.nodes.knn import Knn
    from posegraph.nodes.reps import Reps
    from posegraph.nodes.smooth import Smooth

    return [(Embed, {"kind": "mlkit"}, "landmarks", "features"),
            (Knn, {"samples": SAMPLES, "top_n_by_max": 30, "top_n_by_mean": 10}, "features", "votes"),
            (Smooth, {"window": 10, "alpha": 0.2}, "votes", "scores"),
            (Reps, {"class_name": "squats_down", "enter_threshold": 6.0, "exit_threshold": 4.0}, "scores", "count")]


def run(chain, packets, counters=None):
    """Feed landmarks packets through a chain [(kind, params, input port, output port)]
    frame by frame, as a graph would; [{port: packet}] per frame, the input landmarks under
    "source". `counters` (a dict), when given, gets what the nodes counted."""
    nodes = [(NodeHarness(kind, params), port_in, port_out) for kind, params, port_in, port_out in chain]
    outs = []
    try:
        for i, packet in enumerate(packets):
            value, frame = packet, {"source": packet}
            for node, port_in, port_out in nodes:
                value = node.process({port_in: value}, seq=i, capture_ns=1_000_000_000 + i * 200_000_000).get(port_out)
                frame[port_out] = value
            outs.append(frame)
    finally:
        for node, _, _ in nodes:
            node.close()
    if counters is not None:
        for node, _, _ in nodes:
            for name, n in node.counters.items():
                counters[name] = counters.get(name, 0) + n
    return outs


def same(a, b) -> bool:
    """Two single-person packets (dicts of arrays and plain values) hold the same values."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) - {"ids"}
        return keys == set(b) - {"ids"} and all(same(a[k], b[k]) for k in keys)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def assert_as_alone(outs, alone, person, ports):
    """Person `person`'s part of every frame of `outs` equals the run that saw them alone."""
    for i, (got, want) in enumerate(zip(outs, alone)):
        for port in ports:
            mine, theirs = by_id(got[port]).get(person), by_id(want[port]).get(person)
            assert same(mine, theirs), (person, port, i, mine, theirs)


def reps_of(outs, person):
    return [by_id(o["count"]).get(person, {}).get("reps", {}).get("squats_down") for o in outs]


def top(votes):
    return max(votes, key=votes.get) if votes else None


@pytest.fixture(scope="module")
def scene_chain():
    return run(knn_chain(), two_people())


# ----- the KNN chain, node by node --------------------------------------------------------------
def test_two_people_through_embed_knn_smooth_reps_are_each_counted_as_if_alone(scene_chain):
    outs = scene_chain
    for port in ("features", "votes", "scores", "count"):
        assert all(list(o[port]["ids"]) == [1, 2] for o in outs), port
    for person in (1, 2):
        assert_as_alone(outs, run(knn_chain(), two_people((person,))), person, ("features", "votes", "scores", "count"))
    # person 1 is exactly the single-person path (no ids, person 0) on the clip
    single = run(knn_chain(), [person_packet(1, i) for i in range(FRAMES)])
    assert "ids" not in single[-1]["count"]
    for i, (got, want) in enumerate(zip(outs, single)):
        for port in ("votes", "scores", "count"):
            assert same(by_id(got[port])[1], want[port]), (port, i)
    # two independent counts: person 2 does what person 1 did, 20 frames later
    first, second = reps_of(outs, 1), reps_of(outs, 2)
    assert first[-1] == 2 and second[-1] == 2
    assert second[SHIFT:] == first[:FRAMES - SHIFT] and second[:SHIFT] == [0] * SHIFT
    assert first[50] == 2 and second[50] == 1  # the delayed person has fewer for a while
    assert by_id(outs[-1]["count"])[1]["entered"] and not by_id(outs[-1]["count"])[2]["entered"]
    # per-person labels: person 2 stands still for the first 20 frames while person 1 squats
    labels = [{p: top(v["scores"]) for p, v in by_id(o["scores"]).items()} for o in outs]
    assert all(l[2] == "squats_up" for l in labels[:SHIFT])
    assert any(l[1] == "squats_down" for l in labels[:SHIFT])
    assert sum(l[1] != l[2] for l in labels) > 15


def test_a_person_missing_for_some_frames_keeps_their_count_and_is_dropped_after_the_timeout():
    from posegraph.nodes.reps import Reps

    gaps = {2: set(range(30, 35))}
    outs = run(knn_chain(), two_people(gaps=gaps))
    for person in (1, 2):
        assert_as_alone(outs, run(knn_chain(), two_people((person,), gaps=gaps)), person, ("votes", "scores", "count"))
    before = by_id(outs[29]["count"])[2]
    for i in range(30, 35):
        assert 2 not in by_id(outs[i]["source"]) and 2 not in by_id(outs[i]["scores"])
        assert by_id(outs[i]["count"])[2] == before  # held while away
    assert_as_alone(outs, run(knn_chain(), two_people()), 1, ("votes", "scores", "count"))  # person 1 untouched
    # gone for good from frame 25: reported (count held) for KEY_TIMEOUT frames, then dropped
    outs = run(knn_chain(), two_people(gaps={2: set(range(25, FRAMES))}))
    timeout = Reps.KEY_TIMEOUT
    assert all(2 in by_id(o["count"]) for o in outs[25:25 + timeout])
    assert all(2 not in by_id(o["count"]) for o in outs[25 + timeout:])
    assert all(list(by_id(o["count"])) in ([1], [1, 2]) for o in outs)


def test_one_euro_lstm_and_dtw_keep_a_window_per_person(angles_templates):
    from posegraph.nodes.dtw import Dtw
    from posegraph.nodes.actions import Lstm
    from posegraph.nodes.smooth import OneEuro

    def chain():
        return [(OneEuro, {"min_cutoff": 1.0, "beta": 0.0, "d_cutoff": 1.0, "fps": 0.0}, "landmarks", "landmarks")]

    def classifiers():
        return [(Lstm, {"model": "models/lstm_coco17", "backend": "tflite", "min_frames": 8}, "landmarks", "votes")], \
               [(Dtw, {"templates": angles_templates, "window": 45, "every": 5, "batch": 4, "band": 10,
                       "threshold": 0.0, "min_frames": 15}, "landmarks", "votes")]

    gaps = {1: {40}, 2: {3, 4}}
    outs = run(chain(), two_people(gaps=gaps))
    for person in (1, 2):
        assert_as_alone(outs, run(chain(), two_people((person,), gaps=gaps)), person, ("landmarks",))
    assert all(list(o["landmarks"]["ids"]) == [1, 2] for i, o in enumerate(outs) if i not in (3, 4, 40))
    assert list(outs[40]["landmarks"]["ids"]) == [2] and list(outs[3]["landmarks"]["ids"]) == [1]
    assert not np.array_equal(by_id(outs[30]["landmarks"])[2]["px"], by_id(outs[30]["source"])[2]["px"])
    assert not np.array_equal(by_id(outs[30]["landmarks"])[1]["px"], by_id(outs[30]["source"])[1]["px"])
    for which in (0, 1):  # lstm, dtw
        outs = run(classifiers()[which], two_people())
        for person in (1, 2):
            assert_as_alone(outs, run(classifiers()[which], two_people((person,))), person, ("votes",))
        assert all(list(o["votes"]["ids"]) == [1, 2] for o in outs[20:])
        assert any(not same(by_id(o["votes"])[1], by_id(o["votes"])[2]) for o in outs[20:])
        if which == 0:  # the shipped 2-D LSTM calls the clip a squat (person 1: the clip as it is)
            labels = [by_id(o["votes"])[1]["label"] for o in outs[7:]]  # answers from the 8th frame
            assert labels.count("squat") > len(labels) / 2, labels


def test_coco17_people_work_with_every_classifier(angles_templates):
    """COCO-17 landmarks (17 x 4, no world): embed angles / keypoints, lstm coco_xy and dtw
    angles answer exactly as on the BlazePose landmarks they came from; embed mlkit (and so
    knn) works on them in x and y."""
    from posegraph.nodes.dtw import Dtw
    from posegraph.nodes.embed import Embed
    from posegraph.nodes.actions import Lstm

    blaze, coco = two_people(), two_people(layout="coco17")
    assert by_id(coco[0])[2]["px"].shape == (17, 4) and "world" not in by_id(coco[0])[2]
    makers = [lambda: [(Embed, {"kind": "angles"}, "landmarks", "features")],
              lambda: [(Embed, {"kind": "keypoints"}, "landmarks", "features")],
              lambda: [(Lstm, {"model": "models/lstm_coco17", "backend": "tflite", "min_frames": 8}, "landmarks", "votes")],
              lambda: [(Dtw, {"templates": angles_templates, "window": 45, "every": 5, "batch": 4, "band": 10,
                              "threshold": 0.0, "min_frames": 15}, "landmarks", "votes")]]
    for make in makers:
        port = make()[0][3]
        a, b = run(make(), blaze), run(make(), coco)
        assert list(a[-1][port]["ids"]) == [1, 2]
        for i, (x, y) in enumerate(zip(a, b)):
            for person in (1, 2):
                px, py = by_id(x[port]).get(person), by_id(y[port]).get(person)
                assert (px is None) == (py is None), i
                if px is None:
                    continue
                if "vector" in px:
                    np.testing.assert_allclose(px["vector"], py["vector"], atol=1e-5)
                else:
                    assert px["label"] == py["label"]
                    assert px["votes"] == pytest.approx(py["votes"], abs=1e-4)
    # embed mlkit (and so the KNN) on COCO-17: the 23 distances need only joints COCO-17 has;
    # depth is 0, so the KNN compares x and y only; each person is still counted on their own
    counters = {}
    outs, blaze_outs = run(knn_chain(), coco, counters), run(knn_chain(), blaze)
    assert "wrong_layout" not in counters
    assert all(set(by_id(o["votes"])) == {1, 2} for o in outs)
    assert all(by_id(o["features"])[1]["depth"] is False for o in outs)
    for person in (1, 2):
        same = sum(top(by_id(o["votes"])[person]["votes"]) == top(by_id(b["votes"])[person]["votes"]) for o, b in zip(outs, blaze_outs))
        assert same >= 0.9 * FRAMES, (person, same)  # x, y alone give the same class on nearly every frame
        assert reps_of(outs, person)[-1] == reps_of(blaze_outs, person)[-1]


# ----- render and jsonl ----------------------------------------------------------------------------
def render(inputs) -> np.ndarray:
    """The image a fresh render node draws for one packet of `inputs`."""
    from posegraph.nodes.render import Render

    with NodeHarness(Render, {"visibility_threshold": 0.5, "max_score": 10.0, "show_fps": False, "scale": 1.0}) as node:
        return node.process(inputs)["frame"]["image"]


def test_render_draws_every_person_with_their_id_label_and_count(scene_chain):
    from posegraph.pose.drawing import PERSON_COLOURS

    i = 50
    image = next(f for n, f in enumerate(stacked_frames()) if n == i)
    frame = {"image": image, "pts_ms": i * 200.0, "index": i}
    outs = scene_chain[i]
    multi = {"frame": frame, "landmarks": outs["source"], "votes": outs["votes"], "scores": outs["scores"],
             "reps": outs["count"]}
    first = {"frame": frame, **{port: by_id(multi[port])[1] for port in ("landmarks", "votes", "scores", "reps")}}
    drawn = render(multi)
    alone = render(first)  # the single-person render of person 1
    # around person 2 (right half) the two differ: their skeleton, box and tag; the panel is the same
    box2 = by_id(outs["source"])[2]["box"].astype(int)
    x0, y0, x1, y1 = box2
    assert not np.array_equal(drawn[y0:y1, x0:x1], alone[y0:y1, x0:x1])
    assert (np.abs(drawn[:, WIDTH:].astype(int) - image[:, WIDTH:]).sum(axis=2) > 60).sum() > 3000
    assert np.array_equal(alone[:, WIDTH:], image[:, WIDTH:])
    assert np.array_equal(drawn[:100, :400], alone[:100, :400])  # the panel: person 1's, as for one person
    # each person's tag, in their colour, sits at the top of their box (below the panel if it is in the way)
    for person in (1, 2):
        bx0, by0, bx1, _ = by_id(outs["source"])[person]["box"].astype(int)
        band = drawn[max(0, by0 - 80):by0 + 80, max(0, bx0 - 10):bx1 + 200]
        colour = np.array(PERSON_COLOURS[person % len(PERSON_COLOURS)])
        assert (np.abs(band.astype(int) - colour).sum(axis=2) < 40).sum() > 50, person
    # COCO-17 people are drawn too
    coco = render({"frame": frame, "landmarks": two_people(layout="coco17")[i]})
    assert (np.abs(coco[:, WIDTH:].astype(int) - image[:, WIDTH:]).sum(axis=2) > 60).sum() > 2000


def test_jsonl_records_carry_a_people_list(tmp_path, scene_chain):
    from posegraph.nodes.sinks import JsonLines

    with NodeHarness(JsonLines, {"path": str(tmp_path / "r.jsonl")}) as node:
        for i in (10, 50):
            o = scene_chain[i]
            node.process({"landmarks": o["source"], "votes": o["votes"], "scores": o["scores"], "reps": o["count"]}, seq=i)
        node.process({"landmarks": person_packet(1, 51), "votes": {"votes": {"squats_up": 10}}, "reps": None}, seq=51)
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    r = records[1]
    assert [p["id"] for p in r["people"]] == [1, 2]
    keys = ["id", "landmarks", "votes", "smoothed", "class", "label", "reps", "score", "box"]
    assert all(list(p) == keys for p in r["people"])
    for p in r["people"]:
        votes = by_id(scene_chain[50]["votes"])[p["id"]]["votes"]
        scores = by_id(scene_chain[50]["scores"])[p["id"]]["scores"]
        assert p["votes"] == votes and p["smoothed"] == pytest.approx(scores, abs=1e-4)
        assert p["class"] == top(scores) and p["label"] is None
        assert len(p["landmarks"]) == 33 and p["score"] == (0.9 if p["id"] == 1 else 0.8)
        assert p["box"] == pytest.approx(list(by_id(scene_chain[50]["source"])[p["id"]]["box"]), abs=0.01)
    assert [p["reps"] for p in r["people"]] == [{"squats_down": 2}, {"squats_down": 1}]
    assert r["people"][1]["box"][0] >= WIDTH > r["people"][0]["box"][2]
    for key in ("landmarks", "votes", "smoothed", "class", "label", "reps"):  # the first person at the top
        assert r[key] == r["people"][0][key], key
    assert "people" not in records[2] and records[2]["votes"] == {"squats_up": 10}  # one person: as before


# ----- as a real graph ----------------------------------------------------------------------------
GRAPH = """
name: two_people
nodes:
  - id: scene
    uses: TESTS/people_test_nodes.py:TwoPeople
    params: {video: TMP/scene.mp4}
  - {id: embed, uses: embed, inputs: {landmarks: scene/landmarks}, replicas: 2}
  - {id: knn, uses: knn, inputs: {features: embed/features}}
  - {id: smooth, uses: smooth, inputs: {votes: knn/votes}}
  - {id: reps, uses: reps, params: {class_name: squats_down}, inputs: {scores: smooth/scores}}
  - id: render
    uses: render
    params: {show_fps: false}
    inputs: {frame: scene/frame, landmarks: scene/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}
  - {id: video, uses: video, params: {path: TMP/out/scene.mp4}, inputs: {frame: render/frame}}
  - id: records
    uses: jsonl
    params: {path: TMP/out/scene.jsonl}
    inputs: {frame: scene/frame, landmarks: scene/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}
"""


def test_two_people_in_a_real_graph_get_their_own_counts_labels_records_and_drawing(graph_run, tmp_path, scene_chain):
    import cv2

    write_scene(tmp_path / "scene.mp4")
    run = graph_run(GRAPH)
    assert run.wait(timeout=120) == 0, run.stderr
    records = run.records("out/scene.jsonl")
    assert [r["seq"] for r in records] == list(range(FRAMES))
    for record, expected in zip(records, scene_chain):
        assert [p["id"] for p in record["people"]] == [1, 2]
        for p in record["people"]:
            assert p["votes"] == by_id(expected["votes"])[p["id"]]["votes"], (record["seq"], p["id"])
            assert p["reps"] == by_id(expected["count"])[p["id"]]["reps"], (record["seq"], p["id"])
        assert record["reps"] == record["people"][0]["reps"]
    counts = {p["id"]: p["reps"]["squats_down"] for p in records[50]["people"]}
    assert counts == {1: 2, 2: 1}
    assert {p["id"]: p["reps"]["squats_down"] for p in records[-1]["people"]} == {1: 2, 2: 2}
    capture = cv2.VideoCapture(str(tmp_path / "out" / "scene.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == FRAMES
    capture.set(cv2.CAP_PROP_POS_FRAMES, 50)
    ok, drawn = capture.read()
    capture.release()
    raw = next(f for n, f in enumerate(stacked_frames()) if n == 50)
    assert ok and drawn.shape == (HEIGHT, SCENE_WIDTH, 3)
    # the second person is drawn on too (compression noise is far below a skeleton's change)
    x0, y0, x1, y1 = (int(v) for v in records[50]["people"][1]["box"])
    assert np.abs(drawn[y0:y1, x0:x1].astype(int) - raw[y0:y1, x0:x1]).sum(axis=2).max() > 200


# ----- with the pose model ----------------------------------------------------------------------------
POSE_GRAPH = """
name: two_people_pose
nodes:
  - {id: camera, uses: capture, params: {source: TMP/scene.mp4}}
  - {id: pose, uses: pose, params: {model: blazepose, max_people: 2}, inputs: {frame: camera/frame}}
  - {id: embed, uses: embed, inputs: {landmarks: pose/landmarks}}
  - {id: knn, uses: knn, inputs: {features: embed/features}}
  - {id: smooth, uses: smooth, inputs: {votes: knn/votes}}
  - {id: reps, uses: reps, params: {class_name: squats_down}, inputs: {scores: smooth/scores}}
  - id: records
    uses: jsonl
    params: {path: TMP/out/pose.jsonl}
    inputs: {frame: camera/frame, landmarks: pose/landmarks, votes: knn/votes, scores: smooth/scores, reps: reps/count}
"""


def test_the_multi_person_pose_node_on_the_two_person_clip_counts_each_person(graph_run, tmp_path):
    """The whole pipeline from pixels: the pose node finds both people, and each one's count
    is their own (the left one as the clip: 2; the delayed one no more than that)."""
    write_scene(tmp_path / "scene.mp4")
    run = graph_run(POSE_GRAPH)
    assert run.wait(timeout=300) == 0, run.stderr
    records = run.records("out/pose.jsonl")
    assert len(records) == FRAMES
    both = [r for r in records if r.get("people") and len(r["people"]) == 2]
    assert len(both) >= FRAMES - 5
    final = {}
    for record in records:
        for p in record.get("people") or []:
            side = "left" if (p["box"][0] + p["box"][2]) / 2 < WIDTH else "right"
            final[side] = (p["id"], p["reps"]["squats_down"])
    assert final["left"][0] != final["right"][0]
    assert final["left"][1] == 2 and final["right"][1] <= 2
    left_at_50 = [p for p in records[50]["people"] if p["box"][2] < WIDTH + 100]
    right_at_50 = [p for p in records[50]["people"] if p["box"][0] > WIDTH - 100]
    assert left_at_50 and right_at_50
    assert left_at_50[0]["reps"]["squats_down"] > right_at_50[0]["reps"]["squats_down"]
