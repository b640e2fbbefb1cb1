"""Landmark layouts (names, conversions, mirrors) and the pose features built on them:
ML Kit's embedding on the bundled samples, joint angles on hand-made skeletons, and
body-normalised keypoints."""
import importlib.util

import numpy as np
import pytest

from conftest import ROOT
from posegraph.pose import landmarks as lm
from posegraph.pose.features import ANGLE_NAMES, MLKIT_PAIRS, body_embedding, body_embeddings, body_motion, features_packet, joint_angles, mlkit_embedding, mlkit_embeddings, mlkit_normalize, normalized_keypoints
from posegraph.nodes.embed import Embed
from posegraph.pose.knn import load_samples
from posegraph.testing import NodeHarness

NEEDS_MEDIAPIPE = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                                     reason="MediaPipe (the reference backend: the [reference] extra) has no wheel for this Python")

SAMPLES = ROOT / "data" / "mlkit" / "fitness_pose_samples.csv"
WORLD = ROOT / "data" / "google_pose_reference" / "pose_squats_3d.full.json"


def squat_world():
    """Google's BlazePose world landmarks of the bundled squat clip: (65, 33, 3) metres."""
    import json

    return np.asarray(json.loads(WORLD.read_text()), dtype=np.float64)


@pytest.fixture(scope="module")
def samples():
    return load_samples(SAMPLES)


# ----- layouts ------------------------------------------------------------------------------
def test_blazepose_to_coco_picks_the_landmarks_with_the_same_names():
    assert len(lm.BLAZEPOSE_NAMES) == 33 and len(lm.COCO_NAMES) == 17
    picked = [lm.BLAZEPOSE_NAMES[i] for i in lm.BLAZEPOSE_TO_COCO]
    assert picked == list(lm.COCO_NAMES)
    # the data moves with the indices, whatever the trailing axes
    points = np.arange(33 * 2 * 4, dtype=float).reshape(33, 2, 4)
    coco = lm.blazepose_to_coco(points)
    assert coco.shape == (17, 2, 4)
    assert np.array_equal(coco[lm.index("left_knee", lm.COCO17)], points[lm.index("left_knee")])
    assert np.array_equal(coco[lm.index("right_wrist", lm.COCO17)], points[16])


def test_openpose18_to_coco17_drops_the_neck_and_reorders():
    ids = np.arange(18)[:, None] * np.ones((1, 3))  # each row carries its OpenPose index
    coco = lm.openpose_to_coco(ids)
    assert coco.shape == (17, 3)
    names = [lm.OPENPOSE_NAMES[int(i)] for i in coco[:, 0]]
    assert "neck" not in names
    expected = [n.replace("left_", "l_").replace("right_", "r_") for n in lm.COCO_NAMES]
    assert names == expected
    assert lm.to_coco(ids).tolist() == coco.tolist()  # layout guessed from the count


def test_mirror_permutations_are_involutions_that_swap_left_and_right():
    for layout, names in lm.NAMES.items():
        perm = lm.MIRROR[layout]
        assert sorted(perm.tolist()) == list(range(len(names))), layout
        assert np.array_equal(perm[perm], np.arange(len(names))), layout
        for i, j in enumerate(perm):
            a, b = names[i], names[j]
            if "left" in a or a.startswith("l_"):
                assert b == a.replace("left", "right") or b == "r_" + a[2:], (a, b)
            elif "right" not in a and not a.startswith("r_"):
                assert i == j, a  # nose, neck stay
    assert lm.BLAZEPOSE_NAMES[lm.MIRROR[lm.BLAZEPOSE33][lm.index("mouth_left")]] == "mouth_right"


def test_mirroring_a_pose_twice_gives_it_back(samples):
    pose = samples.landmarks[0]
    once = lm.mirror(pose, width=1000)
    assert not np.allclose(once, pose)
    assert np.allclose(lm.mirror(once, width=1000), pose)
    # the mirrored left wrist is where the right wrist was, seen in a mirror
    lw, rw = lm.index("left_wrist"), lm.index("right_wrist")
    assert np.allclose(once[lw], [1000 - pose[rw, 0], pose[rw, 1], pose[rw, 2]])


@NEEDS_MEDIAPIPE
def test_skeletons_connect_named_joints_like_mediapipe_and_coco():
    from posegraph.pose.backends.blazepose import import_mediapipe

    mp = import_mediapipe()
    assert set(lm.BLAZEPOSE_CONNECTIONS) == set(mp.solutions.pose.POSE_CONNECTIONS)
    assert [p.name.lower() for p in mp.solutions.pose.PoseLandmark] == list(lm.BLAZEPOSE_NAMES)
    coco_edges = {frozenset((lm.COCO_NAMES[a], lm.COCO_NAMES[b])) for a, b in lm.COCO_CONNECTIONS}
    assert len(coco_edges) == 19
    for edge in (("left_shoulder", "left_elbow"), ("left_hip", "right_hip"), ("right_knee", "right_ankle"), ("nose", "left_eye")):
        assert frozenset(edge) in coco_edges


# ----- the ML Kit embedding ----------------------------------------------------------------------
def test_mlkit_normalisation_centres_the_hips_and_scales_the_pose_to_100(samples):
    for pose in samples.landmarks[::100]:
        norm = mlkit_normalize(pose)
        hips = (norm[lm.index("left_hip")] + norm[lm.index("right_hip")]) / 2
        assert np.allclose(hips, 0, atol=1e-9)
        shoulders = (norm[lm.index("left_shoulder")] + norm[lm.index("right_shoulder")]) / 2
        torso = np.linalg.norm(shoulders[:2])
        farthest = np.linalg.norm(norm[:, :2], axis=1).max()
        assert max(torso * 2.5, farthest) == pytest.approx(100.0)


def test_mlkit_embedding_has_the_write_ups_23_vectors(samples):
    pose = samples.landmarks[3]
    emb = mlkit_embedding(pose)
    assert emb.shape == (23, 3) and len(MLKIT_PAIRS) == 23
    assert MLKIT_PAIRS.count(("left_hip", "left_wrist")) == 2  # the write-up's duplicate, kept
    norm = mlkit_normalize(pose)
    shoulders = (norm[11] + norm[12]) / 2
    assert np.allclose(emb[0], shoulders)  # hips' midpoint (the origin) -> shoulders' midpoint
    assert np.allclose(emb[1], norm[lm.index("left_elbow")] - norm[lm.index("left_shoulder")])
    assert np.allclose(emb[22], norm[lm.index("right_ankle")] - norm[lm.index("left_ankle")])
    # a batch of poses embeds like one pose at a time
    assert np.array_equal(mlkit_embedding(samples.landmarks[:4])[3], emb)


def test_mlkit_embedding_ignores_where_the_person_is_and_how_big(samples):
    pose = samples.landmarks[500]
    moved = pose * 0.37 + np.array([250.0, -80.0, 40.0])
    assert np.allclose(mlkit_embedding(moved), mlkit_embedding(pose), atol=1e-9)


def test_mlkit_embedding_of_a_mirrored_pose_is_the_embedding_mirrored(samples):
    """Mirroring the person swaps left/right rows and negates x; cross-body rows also flip sign."""
    pose = samples.landmarks[42]
    emb = mlkit_embedding(pose)
    mirrored = mlkit_embedding(lm.mirror(pose, width=1000))
    swap = {name: lm.BLAZEPOSE_NAMES[j] for name, j in zip(lm.BLAZEPOSE_NAMES, lm.MIRROR[lm.BLAZEPOSE33])}
    for row, (a, b) in enumerate(MLKIT_PAIRS):
        twin = (swap.get(a, a), swap.get(b, b))
        sign = -1 if twin not in MLKIT_PAIRS else 1
        source = MLKIT_PAIRS.index(twin if sign == 1 else twin[::-1])
        assert np.allclose(mirrored[row], sign * emb[source] * [-1, 1, 1], atol=1e-9), (a, b)
    # the flipped query of the write-up (x negated, no swap) is the embedding with x negated
    plain, flipped = mlkit_embeddings(pose)
    assert np.allclose(flipped, plain * [-1, 1, 1])


def test_embed_node_emits_float32_features_and_nothing_without_a_person(samples):
    px = np.concatenate([samples.landmarks[7], np.ones((33, 1))], axis=1).astype(np.float32)
    packet = {"px": px, "norm": px / 1000, "world": px, "width": 1000, "height": 1000, "layout": "blazepose33"}
    with NodeHarness(Embed, {"kind": "mlkit"}) as node:
        features = node.process({"landmarks": packet})["features"]
        assert node.process({"landmarks": None}) == {}
    assert features["kind"] == "mlkit" and features["vector"].dtype == np.float32 and features["vector"].shape == (69,)
    assert features["embedding"].shape == features["mirrored"].shape == (23, 3)
    assert np.allclose(features["embedding"], mlkit_embedding(px), atol=1e-3)
    assert np.array_equal(features["mirrored"], features["embedding"] * np.float32([-1, 1, 1]))
    for kind, size in (("angles", len(ANGLE_NAMES)), ("keypoints", 34)):
        with NodeHarness(Embed, {"kind": kind}) as other:
            out = other.process({"landmarks": packet})["features"]
        assert out["kind"] == kind and out["vector"].shape == (size,) and np.isfinite(out["vector"]).all()


# ----- joint angles ----------------------------------------------------------------------------
def _coco_skeleton():
    """A standing figure in image coordinates (y down): arms straight down, legs straight."""
    p = {"nose": (0, -60), "left_eye": (5, -65), "right_eye": (-5, -65), "left_ear": (10, -62), "right_ear": (-10, -62),
         "left_shoulder": (20, -40), "right_shoulder": (-20, -40), "left_elbow": (20, -10), "right_elbow": (-20, -10),
         "left_wrist": (20, 20), "right_wrist": (-20, 20), "left_hip": (20, 0), "right_hip": (-20, 0),
         "left_knee": (20, 40), "right_knee": (-20, 40), "left_ankle": (20, 80), "right_ankle": (-20, 80)}
    return np.array([p[n] for n in lm.COCO_NAMES], dtype=float)


def _angles(points, layout=None):
    return dict(zip(ANGLE_NAMES, joint_angles(points, layout, degrees=True)))


def test_joint_angles_are_180_for_straight_limbs_and_90_for_a_right_angle():
    coco = _coco_skeleton()
    a = _angles(coco)
    for joint in ("left_elbow", "right_elbow", "left_knee", "right_knee", "neck"):
        assert a[joint] == pytest.approx(180.0), joint
    coco[lm.index("left_wrist", lm.COCO17)] = (50, -10)  # forearm bent sideways: 90 degrees at the elbow
    coco[lm.index("right_elbow", lm.COCO17)] = (-50, -40)  # upper arm raised sideways: 90 at the shoulder
    coco[lm.index("right_wrist", lm.COCO17)] = (-80, -40)
    a = _angles(coco)
    assert a["left_elbow"] == pytest.approx(90.0)
    assert a["right_shoulder"] == pytest.approx(90.0)
    assert a["right_elbow"] == pytest.approx(180.0)
    assert np.allclose(joint_angles(coco), np.radians(joint_angles(coco, degrees=True)))


def test_a_zero_length_limb_gives_angle_0_not_nan():
    coco = _coco_skeleton()
    coco[lm.index("left_wrist", lm.COCO17)] = coco[lm.index("left_elbow", lm.COCO17)]
    coco[lm.index("right_knee", lm.COCO17)] = coco[lm.index("right_hip", lm.COCO17)]
    angles = joint_angles(coco)
    assert np.isfinite(angles).all()
    a = _angles(coco)
    assert a["left_elbow"] == 0.0 and a["right_knee"] == 0.0 and a["right_hip"] == 0.0
    assert np.isfinite(joint_angles(np.zeros((17, 2)))).all()  # everything collapsed


def test_joint_angles_agree_across_blazepose_coco_and_openpose_layouts():
    coco = _coco_skeleton()
    blaze = np.zeros((33, 3))
    blaze[lm.BLAZEPOSE_TO_COCO, :2] = coco
    openpose = np.zeros((18, 2))
    openpose[lm.OPENPOSE_TO_COCO] = coco
    openpose[lm.index("neck", lm.OPENPOSE18)] = (0, -40)
    expected = joint_angles(coco)
    assert np.allclose(joint_angles(blaze), expected)
    assert np.allclose(joint_angles(openpose), expected)
    assert np.allclose(joint_angles(np.stack([blaze, blaze])), [expected, expected])  # batches


def test_normalised_keypoints_are_hip_centred_in_torso_units_and_invariant(samples):
    coco = _coco_skeleton()
    kp = normalized_keypoints(coco).reshape(17, 2)
    hips = (kp[lm.index("left_hip", lm.COCO17)] + kp[lm.index("right_hip", lm.COCO17)]) / 2
    shoulders = (kp[lm.index("left_shoulder", lm.COCO17)] + kp[lm.index("right_shoulder", lm.COCO17)]) / 2
    assert np.allclose(hips, 0) and np.linalg.norm(shoulders) == pytest.approx(1.0)
    assert np.allclose(normalized_keypoints(coco * 3.5 + 17), normalized_keypoints(coco))
    pose = samples.landmarks[100]
    assert np.allclose(normalized_keypoints(pose), normalized_keypoints(lm.blazepose_to_coco(pose)))
    assert np.isfinite(normalized_keypoints(np.zeros((17, 2)))).all()


# ----- view-invariant features of world landmarks --------------------------------------------------
def test_body_features_do_not_change_when_the_camera_turns_about_the_person():
    """The same squats seen from cameras turned 0-180 degrees about the vertical (and the
    person standing elsewhere): the 3-D angles, body-frame positions and body embedding stay
    the same, while the 2-D image angles the old DTW used do not."""
    from posegraph.pose.body import rotate

    world = squat_world()
    motion, embedding = body_motion(world), body_embedding(world)
    assert motion.shape == (65, 23) and embedding.shape == (65, 23, 3) and np.isfinite(motion).all()
    for yaw in np.radians([35, 90, 140, 180]):
        turned = rotate(world, yaw) + [0.3, 0.0, 1.5]
        assert np.allclose(body_motion(turned), motion, atol=1e-9)
        assert np.allclose(body_embedding(turned), embedding, atol=1e-9)
        if yaw < np.pi:  # (turned half round, the image is a mirror image: the same unsigned angles)
            image_angles = joint_angles(turned, "blazepose33")  # x, y: what a camera there would see
            assert np.abs(image_angles - joint_angles(world, "blazepose33")).max() > 0.3
    # a taller or shorter person: positions in torso lengths, angles unchanged
    assert np.allclose(body_motion(world * 1.3), motion, atol=1e-9)


def test_body_embedding_mirrored_is_the_mirror_images_embedding():
    from posegraph.pose.body import mirror_world

    world = squat_world()[20]
    plain, mirrored = body_embeddings(world)
    assert np.allclose(plain, body_embedding(world)) and np.allclose(mirrored, body_embedding(mirror_world(world)))
    assert not np.allclose(plain, mirrored)


def test_embed_body_kind_needs_world_landmarks():
    world = np.concatenate([squat_world()[10], np.ones((33, 1))], axis=1).astype(np.float32)
    packet = {"px": world * 500, "world": world, "layout": "blazepose33", "width": 720, "height": 1280}
    with NodeHarness(Embed, {"kind": "body"}) as node:
        features = node.process({"landmarks": packet})["features"]
        coco = {"px": np.ones((17, 4), np.float32), "layout": "coco17"}
        assert node.process({"landmarks": coco}) == {}  # skipped: no world landmarks
        assert node.counters["wrong_layout"] == 1 and "world landmarks" in " ".join(node.logs)
    assert features["kind"] == "body" and features["vector"].shape == (69,) and features["vector"].dtype == np.float32
    assert np.allclose(features["embedding"], body_embedding(world), atol=1e-5)
    assert features_packet({**packet, "world": np.full((33, 4), np.nan, np.float32)}, "body") is None
