"""Custom landmark layouts: a user-trained pose model that emits only some named keypoints.

The packets are cut by name from Google's reference landmarks of the bundled squats clip
(data/google_pose_reference/pose_squats.full.json, 65 frames x 33 BlazePose landmarks in
pixels of the 720 x 1280 pose_squats.mp4), as such a model would send them: px (k, 4)
[x_px, y_px, 0, score], layout "custom:" + the names. What they must give is checked
against the same landmarks as BlazePose-33 / COCO-17, the layouts that already work.
"""
import json
import types

import numpy as np
import pytest

from conftest import ROOT
from posegraph.pose import landmarks as lm
from posegraph.pose import actions as M
from posegraph.pose.training import actions as T
from posegraph.pose.features import ANGLE_NAMES, LayoutError, angle_names, joint_angles, keypoint_names, normalized_keypoints
from posegraph.nodes.embed import Embed
from posegraph.testing import NodeHarness

DATA = ROOT / "data" / "google_pose_reference"
WIDTH, HEIGHT, FRAMES = 720, 1280, 65
UPPER = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
HANDS = ("left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb")
SHUFFLED_COCO = tuple(np.random.default_rng(7).permutation(lm.COCO_NAMES).tolist())


def squat_points() -> np.ndarray:
    """(65, 33, 4) float32 [x_px, y_px, z_px, score 1] of the clip (BlazePose-33)."""
    xyz = np.asarray(json.loads((DATA / "pose_squats.full.json").read_text()), dtype=np.float32)
    assert xyz.shape == (FRAMES, 33, 3)
    return np.concatenate([xyz, np.ones(xyz.shape[:2] + (1,), np.float32)], axis=2)


POINTS = squat_points()


def subset(names, points=POINTS) -> np.ndarray:
    """The landmarks `names` of BlazePose-33 points (..., 33, 4), in that order, depth 0
    (a keypoint model's px)."""
    out = points[..., lm.indices(names), :].copy()
    out[..., 2] = 0.0
    return out


def packet(names, frame: int) -> dict:
    """A custom backend's single-person landmarks packet (posegraph.pose.estimator.coco_packet's form)."""
    px = subset(names, POINTS[frame])
    xy = px[:, :2]
    return {"px": px, "norm": px / np.float32([WIDTH, HEIGHT, 1, 1]), "width": WIDTH, "height": HEIGHT,
            "layout": lm.custom_layout(names), "names": tuple(names), "score": 0.9,
            "box": np.concatenate([xy.min(axis=0), xy.max(axis=0)]).astype(np.float32), "pts_ms": frame * 200.0}


def coco_packet(frame: int) -> dict:
    """The same frame as a COCO-17 backend's packet."""
    out = packet(lm.COCO_NAMES, frame)
    assert out["layout"] == lm.COCO17
    return out


def feed(kind, params, packets):
    """A node of `kind` given the landmarks packets frame by frame: (its outputs, the
    harness, whose `counters` and `logs` say what it counted and logged)."""
    with NodeHarness(kind, params) as node:
        outs = [node.process({"landmarks": p}) for p in packets]
    return outs, node


# ----- posegraph/pose/landmarks.py --------------------------------------------------------------
def test_custom_layout_string_lists_the_names_and_exact_known_orders_stay_known():
    layout = lm.custom_layout(UPPER)
    assert layout == "custom:" + ",".join(UPPER) and layout.startswith(lm.CUSTOM_PREFIX)
    assert lm.names_of(layout) == UPPER
    assert [lm.index(n, layout) for n in UPPER] == list(range(6))
    assert lm.indices(["right_wrist", "left_shoulder"], layout).tolist() == [5, 0]
    with pytest.raises(KeyError, match="nose"):
        lm.index("nose", layout)
    # exactly a known layout's names in its order: that layout, so nothing new is needed
    assert lm.custom_layout(lm.COCO_NAMES) == lm.COCO17 and lm.custom_layout(list(lm.BLAZEPOSE_NAMES)) == lm.BLAZEPOSE33
    assert lm.custom_layout(SHUFFLED_COCO).startswith(lm.CUSTOM_PREFIX)
    for layout in lm.NAMES:  # the known layouts answer as before
        assert lm.names_of(layout) == lm.NAMES[layout] and lm.connections_of(layout) == lm.CONNECTIONS[layout]
        assert lm.mirror_perm(layout) is lm.MIRROR[layout]
    # a count never identifies a custom layout
    with pytest.raises(ValueError, match="no known layout"):
        lm.layout_of(subset(UPPER, POINTS[0]))


def test_custom_layout_rejects_unknown_repeated_or_no_names_naming_the_bad_one():
    with pytest.raises(ValueError, match="'left_tail'"):
        lm.custom_layout(["left_shoulder", "left_tail"])
    with pytest.raises(ValueError, match="'left_wrist' appears twice"):
        lm.custom_layout(["left_wrist", "right_wrist", "left_wrist"])
    with pytest.raises(ValueError, match="at least one"):
        lm.custom_layout([])
    with pytest.raises(ValueError, match="'neck'"):
        lm.names_of("custom:nose,neck")  # an OpenPose name is not a BlazePose one
    with pytest.raises(ValueError, match="unknown layout"):
        lm.names_of("halpe26")


def test_mirror_of_custom_layout_swaps_twins():
    names = ("nose", "left_wrist", "right_wrist", "left_elbow")  # right_elbow: not emitted
    layout = lm.custom_layout(names)
    assert lm.mirror_perm(layout).tolist() == [0, 2, 1, 3]  # a twinless landmark keeps its row
    pts = subset(names, POINTS[30])
    once = lm.mirror(pts, layout, width=WIDTH)
    assert np.allclose(once[1], [WIDTH - pts[2, 0], pts[2, 1], 0, 1])  # left wrist: where the right one was, mirrored
    assert np.allclose(once[3], [WIDTH - pts[3, 0], pts[3, 1], 0, 1])
    assert np.allclose(lm.mirror(once, layout, width=WIDTH), pts)
    # with every twin there, a custom mirror is the COCO-17 mirror, row for row by name
    coco = subset(lm.COCO_NAMES, POINTS[30])
    custom = lm.mirror(subset(SHUFFLED_COCO, POINTS[30]), lm.custom_layout(SHUFFLED_COCO), width=WIDTH)
    assert np.array_equal(custom, lm.mirror(coco, lm.COCO17, width=WIDTH)[lm.indices(SHUFFLED_COCO, lm.COCO17)])
    # LSTM augmentation mirrors clips with the same permutation
    clip = subset(names)
    assert np.allclose(T.mirror_points(clip, layout, WIDTH), [lm.mirror(p, layout, width=WIDTH) for p in clip])


def test_connections_of_custom_layout_are_the_blazepose_edges_between_present_points():
    layout = lm.custom_layout(UPPER)
    edges = {frozenset((UPPER[a], UPPER[b])) for a, b in lm.connections_of(layout)}
    assert edges == {frozenset(e) for e in (("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
                                            ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"),
                                            ("right_elbow", "right_wrist"))}
    # no edge across a missing joint: shoulder and wrist without the elbow stay apart
    assert lm.connections_of(lm.custom_layout(["left_shoulder", "left_wrist"])) == ()


# ----- posegraph/pose/features.py and embed ------------------------------------------------------------------
def test_angles_on_full_coco_subset_equal_coco17_angles():
    layout = lm.custom_layout(SHUFFLED_COCO)
    assert angle_names(layout) == ANGLE_NAMES
    expected = joint_angles(subset(lm.COCO_NAMES), lm.COCO17)
    assert expected.shape == (FRAMES, 9)
    np.testing.assert_allclose(joint_angles(subset(SHUFFLED_COCO), layout), expected, atol=1e-12)
    np.testing.assert_allclose(joint_angles(POINTS, lm.BLAZEPOSE33), expected, atol=1e-12)


def test_keypoints_on_full_coco_subset_equal_coco17_keypoints_in_coco_order():
    layout = lm.custom_layout(SHUFFLED_COCO)
    assert keypoint_names(layout) == tuple(f"{n}.{a}" for n in lm.COCO_NAMES for a in "xy")
    np.testing.assert_allclose(normalized_keypoints(subset(SHUFFLED_COCO), layout),
                               normalized_keypoints(POINTS, lm.BLAZEPOSE33), atol=1e-12)


def test_upper_body_subset_gives_only_arm_angles():
    layout = lm.custom_layout(UPPER)
    assert angle_names(layout) == ("left_elbow", "right_elbow")
    full = joint_angles(POINTS, lm.BLAZEPOSE33)
    angles = joint_angles(subset(UPPER), layout)
    assert angles.shape == (FRAMES, 2)
    np.testing.assert_allclose(angles, full[:, [ANGLE_NAMES.index("left_elbow"), ANGLE_NAMES.index("right_elbow")]], atol=1e-12)
    # hips make the shoulder angles computable; the neck needs the nose as well
    with_hips = UPPER + ("left_hip", "right_hip")
    assert angle_names(lm.custom_layout(with_hips)) == ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder")
    assert angle_names(lm.custom_layout(with_hips + ("nose",)))[-1] == "neck"
    with_nose = joint_angles(subset(with_hips + ("nose",)), lm.custom_layout(with_hips + ("nose",)))
    np.testing.assert_allclose(with_nose[:, -1], full[:, ANGLE_NAMES.index("neck")], atol=1e-12)


def test_keypoints_without_hips_are_centred_on_their_mean_and_scaled_by_the_farthest():
    layout = lm.custom_layout(UPPER)
    kp = normalized_keypoints(subset(UPPER), layout)
    assert kp.shape == (FRAMES, 12) and len(keypoint_names(layout)) == 12
    xy = kp.reshape(FRAMES, 6, 2)
    np.testing.assert_allclose(xy.mean(axis=1), 0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(xy, axis=2).max(axis=1), 1.0)
    moved = subset(UPPER)
    moved[..., :2] = moved[..., :2] * 0.5 + 100  # elsewhere and smaller in the image
    np.testing.assert_allclose(normalized_keypoints(moved, layout), kp, atol=1e-5)  # float32 pixels
    # with both hips and shoulders: the COCO-17 centre and torso, so the same numbers as coco17's
    names = ("right_hip", "left_wrist", "left_hip", "left_shoulder", "right_shoulder")
    coco = normalized_keypoints(POINTS, lm.BLAZEPOSE33).reshape(FRAMES, 17, 2)
    present = [n for n in lm.COCO_NAMES if n in names]
    np.testing.assert_allclose(normalized_keypoints(subset(names), lm.custom_layout(names)).reshape(FRAMES, 5, 2),
                               coco[:, lm.indices(present, lm.COCO17)], atol=1e-12)


def test_a_layout_without_coco_points_or_angles_raises_a_clear_layout_error():
    hands = lm.custom_layout(HANDS)
    assert angle_names(hands) == () and keypoint_names(hands) == ()
    with pytest.raises(LayoutError, match="none of the COCO-17 keypoints"):
        normalized_keypoints(subset(HANDS), hands)
    with pytest.raises(LayoutError, match="no joint angle"):
        joint_angles(subset(HANDS), hands)
    nose = lm.custom_layout(["nose", "left_pinky"])  # one COCO point: keypoints (0, 0), no angle
    assert normalized_keypoints(subset(["nose", "left_pinky"]), nose).tolist() == [[0.0, 0.0]] * FRAMES
    with pytest.raises(LayoutError):
        joint_angles(subset(["nose", "left_pinky"]), nose)
    with pytest.raises(ValueError, match="expected 6 landmarks"):
        joint_angles(subset(UPPER)[:, :5], lm.custom_layout(UPPER))


def test_embed_node_gives_the_angles_and_keypoints_a_custom_layout_has():
    for kind, expected in (("angles", joint_angles), ("keypoints", normalized_keypoints)):
        outs, node = feed(Embed, {"kind": kind}, [packet(UPPER, i) for i in range(5)])
        for i, out in enumerate(outs):
            vector = out["features"]["vector"]
            assert vector.dtype == np.float32
            np.testing.assert_allclose(vector, expected(subset(UPPER, POINTS[i]), lm.custom_layout(UPPER)), atol=1e-6)
        assert node.counters == {}


def test_embed_node_skips_custom_layout_without_coco_names():
    for kind, says in (("angles", "no joint angle"), ("keypoints", "none of the COCO-17 keypoints")):
        outs, node = feed(Embed, {"kind": kind}, [packet(HANDS, i) for i in range(3)])
        assert outs == [{}, {}, {}]
        assert node.counters == {"wrong_layout": 3}
        assert len(node.logs) == 1 and says in node.logs[0] and lm.custom_layout(HANDS) in node.logs[0]
    # mlkit needs BlazePose-33 or COCO-17: skipped too, and the message says which kinds work
    outs, node = feed(Embed, {"kind": "mlkit"}, [packet(SHUFFLED_COCO, 0)])
    assert outs == [{}] and node.counters == {"wrong_layout": 1}
    assert "angles and keypoints work on any layout" in node.logs[0]


# ----- DTW and LSTM ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def angles_templates(tmp_path_factory):
    """DTW templates of the 9 BlazePose-33 joint angles (work on any layout with those
    joints) from the clip: its squats in 30-frame pieces, and the first frame held still."""
    from posegraph.pose.dtw import record_templates_from_sequences

    clips = [types.SimpleNamespace(label="squat", clip_id=f"squat{i}", layout="blazepose33", points=POINTS[i:i + 30],
                                   fps=30.0) for i in (0, 15, 30)]
    clips.append(types.SimpleNamespace(label="stand", clip_id="stand", layout="blazepose33",
                                       points=np.repeat(POINTS[:1], 30, 0), fps=30.0))
    path = tmp_path_factory.mktemp("dtw") / "angles.npz"
    record_templates_from_sequences(clips, "angles").save(path)
    return path


def dtw_node(templates):
    """(the dtw kind, its params) for `feed`."""
    from posegraph.nodes.dtw import Dtw

    return Dtw, {"templates": str(templates), "window": 45, "every": 5, "batch": 4, "band": 10, "threshold": 0.0,
                 "min_frames": 15}


def test_dtw_node_skips_a_custom_layout_with_fewer_angles_than_the_templates(angles_templates):
    from posegraph.pose.dtw import feature_size, features

    layout = lm.custom_layout(UPPER)
    assert feature_size("angles", layout) == 2 and feature_size("angles") == 9
    assert features(subset(UPPER), layout, "angles").shape == (FRAMES, 2)
    outs, node = feed(*dtw_node(angles_templates), [packet(UPPER, i) for i in range(FRAMES)])
    assert all(o == {} for o in outs) and node.counters == {"wrong_layout": FRAMES}
    assert len(node.logs) == 1 and "hold 9 angles features" in node.logs[0] and "gives 2" in node.logs[0]
    # every COCO-17 point, in any order: the same answers as the COCO-17 packets
    custom, _ = feed(*dtw_node(angles_templates), [packet(SHUFFLED_COCO, i) for i in range(FRAMES)])
    coco, _ = feed(*dtw_node(angles_templates), [coco_packet(i) for i in range(FRAMES)])
    assert sum(bool(o) for o in coco) == FRAMES - 14
    for a, b in zip(custom, coco):
        assert a.keys() == b.keys()
        if a:
            assert a["votes"]["label"] == b["votes"]["label"] and a["votes"]["votes"] == b["votes"]["votes"]
            assert a["votes"]["distance"] == pytest.approx(b["votes"]["distance"], abs=1e-9)


def test_dtw_templates_recorded_from_a_custom_layout_answer_it_and_skip_blazepose(tmp_path):
    from posegraph.pose.dtw import record_templates_from_sequences

    layout = lm.custom_layout(UPPER)
    clips = [types.SimpleNamespace(label=label, clip_id=f"{label}{a}", layout=layout, points=subset(UPPER)[a:b], fps=30.0)
             for label, a, b in (("down", 6, 15), ("up", 17, 28), ("down", 30, 40), ("up", 41, 52))]
    templates = record_templates_from_sequences(clips, "angles")
    assert templates.sequences[0].shape[1] == 2
    templates.save(tmp_path / "arms.npz")
    outs, node = feed(*dtw_node(tmp_path / "arms.npz"), [packet(UPPER, i) for i in range(FRAMES)])
    assert node.counters.get("wrong_layout", 0) == 0 and outs[-1]["votes"]["label"] in ("down", "up", "unknown")
    outs, node = feed(*dtw_node(tmp_path / "arms.npz"), [{**coco_packet(i)} for i in range(3)])
    assert outs == [{}, {}, {}] and node.counters == {"wrong_layout": 3}
    assert "hold 2 angles features" in node.logs[0] and "'coco17' gives 9" in node.logs[0]


def lstm_node():
    """(the lstm kind, its params) for `feed`."""
    from posegraph.nodes.actions import Lstm

    return Lstm, {"model": "models/lstm_coco17", "backend": "tflite", "min_frames": 8}


def test_lstm_node_skips_a_custom_layout_with_fewer_keypoints_than_the_model():
    layout = lm.custom_layout(UPPER)
    assert M.feature_size("coco_xy", layout) == 12 and M.feature_size("coco_xy", lm.COCO17) == 34
    assert M.features(subset(UPPER), layout, "coco_xy").shape == (FRAMES, 12)
    outs, node = feed(*lstm_node(), [packet(UPPER, i) for i in range(20)])
    assert all(o == {} for o in outs) and node.counters == {"wrong_layout": 20}
    assert len(node.logs) == 1 and "takes 34 coco_xy features" in node.logs[0] and "gives 12" in node.logs[0]
    # every COCO-17 point, in any order: the same probabilities as the COCO-17 packets
    custom, node = feed(*lstm_node(), [packet(SHUFFLED_COCO, i) for i in range(FRAMES)])
    coco, _ = feed(*lstm_node(), [coco_packet(i) for i in range(FRAMES)])
    assert node.counters.get("wrong_layout", 0) == 0 and sum(bool(o) for o in coco) == FRAMES - 7
    for a, b in zip(custom, coco):
        assert a.keys() == b.keys()
        if a:
            assert a["votes"]["label"] == b["votes"]["label"]
            assert a["votes"]["votes"] == pytest.approx(b["votes"]["votes"], abs=1e-5)


# ----- render and jsonl --------------------------------------------------------------------
def clip_frame(index: int) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(DATA / "pose_squats.mp4"))
    try:
        for _ in range(index + 1):
            ok, image = capture.read()
            assert ok
    finally:
        capture.release()
    assert image.shape == (HEIGHT, WIDTH, 3)
    return image


def test_render_draws_a_custom_packet_on_a_real_frame_at_its_keypoints():
    from posegraph.nodes.render import Render

    i = 30
    image = clip_frame(i)
    names = UPPER + ("nose",)
    pkt = packet(names, i)
    short = dict(pkt, px=pkt["px"][:3])  # rows that do not match the layout
    with NodeHarness(Render, {"visibility_threshold": 0.5, "max_score": 10.0, "show_fps": False, "scale": 1.0}) as node:
        drawn = node.process({"frame": {"image": image, "pts_ms": 0.0, "index": i}, "landmarks": pkt})["frame"]["image"]
        assert node.counters == {} and node.logs == []
        out = node.process({"frame": {"image": image, "pts_ms": 0.0, "index": i}, "landmarks": short})["frame"]["image"]
    changed = np.abs(drawn.astype(int) - image).sum(axis=2) > 60
    for x, y in pkt["px"][:, :2].round().astype(int):  # every keypoint gets its dot
        assert changed[y - 2:y + 3, x - 2:x + 3].any(), (x, y)
    layout = lm.custom_layout(names)
    for a, b in lm.connections_of(layout):  # and every edge its line
        x, y = ((pkt["px"][a, :2] + pkt["px"][b, :2]) / 2).round().astype(int)
        assert changed[y - 2:y + 3, x - 2:x + 3].any(), (names[a], names[b])
    # only there: the legs, which the model does not emit, stay as they were
    knees = POINTS[i, lm.indices(["left_knee", "right_knee", "left_ankle", "right_ankle"]), :2].round().astype(int)
    for x, y in knees:
        assert not changed[y - 8:y + 9, x - 8:x + 9].any()
    # a packet whose rows do not match its layout is not drawn (warned once, counted)
    assert np.array_equal(out, image) and node.counters == {"bad_landmarks": 1}


def test_jsonl_records_name_the_points_of_a_custom_layout(tmp_path):
    from posegraph.pose.people import merge
    from posegraph.nodes.sinks import JsonLines

    with NodeHarness(JsonLines, {"path": str(tmp_path / "r.jsonl")}) as node:
        node.process({"landmarks": packet(UPPER, 0)})
        node.process({"landmarks": coco_packet(1)})
        node.process({"landmarks": merge([(1, packet(UPPER, 2)), (2, packet(UPPER, 3))])})
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    layout = lm.custom_layout(UPPER)
    assert records[0]["layout"] == layout and len(records[0]["landmarks"]) == 6
    assert records[0]["landmarks"][4][:2] == pytest.approx(POINTS[0, lm.index("left_wrist"), :2].tolist(), abs=0.01)
    assert "layout" not in records[1] and len(records[1]["landmarks"]) == 17  # known layouts: records as before
    assert [p["layout"] for p in records[2]["people"]] == [layout, layout] and records[2]["layout"] == layout
