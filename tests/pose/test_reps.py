"""The learned repetition counter (posegraph.pose.reps): key poses fitted from real clips,
counting the bundled squats frame by frame, hysteresis against jitter, static classes, the
model file, and the `train-reps` command's answers to bad input."""
import json

import numpy as np
import pytest

from conftest import ROOT
from posegraph.commands import train_reps
from posegraph.pose.body import JOINT_NAMES, body_features
from posegraph.pose.reps import ClassCounter, CounterParams, RepModel, RepModelError
from posegraph.pose.sequences import Sequence, load_dataset, save_dataset

SQUATS_3D = ROOT / "data" / "google_pose_reference" / "pose_squats_3d.full.json"
SHIPPED = ROOT / "models" / "reps_exercises.json"
SHARED = ROOT.parent / "shared" / "data"
CLIPS = ROOT / "out" / "clips" / "landmarks.npz"
LABELS = ROOT / "data" / "clip_labels.json"
KNEE_Y = JOINT_NAMES.index("left_knee") * 3 + 1  # body frame: y points down, in torso lengths


def bundled(label="squat", clip_id="squat/pose_squats.mp4") -> Sequence:
    """Google's world landmarks of pose_squats.mp4 (65 frames, 5 frames/s): she squats three
    times and the clip ends at the bottom of the third."""
    world = np.asarray(json.loads(SQUATS_3D.read_text()), dtype=np.float32)
    world = np.concatenate([world, np.ones((*world.shape[:2], 1), np.float32)], axis=-1)
    return Sequence(clip_id=clip_id, label=label, layout="blazepose33", points=np.zeros_like(world), width=720,
                    height=1280, fps=5.0, world=world)


def standing_still(frames=150, noise_m=0.01, seed=0) -> Sequence:
    """Her first frame (standing) held for `frames` frames at 30 frames/s, each landmark
    jittered by `noise_m` metres, as a tracker's noise on a person who does not move."""
    world = bundled().world[0]
    rng = np.random.default_rng(seed)
    jittered = world[None].repeat(frames, axis=0)
    jittered[..., :3] += rng.normal(0.0, noise_m, jittered[..., :3].shape).astype(np.float32)
    return Sequence(clip_id="still", label="squat", layout="blazepose33", points=np.zeros_like(jittered), width=720,
                    height=1280, fps=30.0, world=jittered)


# ----- fitting ---------------------------------------------------------------------------------
def test_fitting_finds_standing_and_squatting_as_the_two_key_poses():
    model = RepModel.fit([bundled()], ["squat"])
    squat = model.classes["squat"]
    assert not squat.static and squat.has_rest  # the clip starts standing: that end is rest
    # standing, the knee is most of a torso length below the hips; at the bottom it is near their height
    assert squat.rest_pose[KNEE_Y] > 0.6
    assert squat.far_pose[KNEE_Y] < squat.rest_pose[KNEE_Y] - 0.4
    positions = squat.positions(_features(bundled().world))
    assert positions[0] == pytest.approx(0.0, abs=0.15) and positions.max() > 0.8


def _features(world):
    return body_features(np.asarray(world, np.float64))


def test_counter_counts_the_two_finished_squats_of_the_bundled_clip():
    seq = bundled()
    model = RepModel.fit([seq], ["squat"])
    counter = model.counter()
    counts, entered = [], []
    for i, world in enumerate(seq.world):
        counts.append(counter.update(world, i / seq.fps)["squat"])
        entered.append(counter.entered("squat"))
    assert counts[-1] == 2 and entered[-1]  # in the third squat's bottom when the clip ends
    assert counts == sorted(counts) and set(counts) == {0, 1, 2}
    assert model.count(seq) == 2  # the whole-sequence helper runs the same counter


def test_hysteresis_does_not_double_count_jitter_around_the_thresholds():
    params = CounterParams(smooth_s=0.0)  # no smoothing: the hysteresis alone holds the jitter
    counter = ClassCounter(params)
    rng = np.random.default_rng(1)
    trace = []
    for _ in range(3):  # three squats: down to 1, up to 0, each crossing wobbling around both thresholds
        for target in (params.exit, params.enter, 1.0, params.enter, params.exit, 0.0):
            trace += list(target + rng.uniform(-0.08, 0.08, 12))
    counts = [counter.update(p, 1 / 30) for p in trace]
    assert counts[-1] == 3
    assert all(b - a in (0, 1) for a, b in zip(counts, counts[1:]))
    assert sum(b > a for a, b in zip(counts, counts[1:])) == 3


def test_a_still_person_with_tracker_jitter_counts_nothing():
    model = RepModel.fit([bundled()], ["squat"])
    for seed in range(3):
        assert model.count(standing_still(seed=seed)) == 0


def test_shallow_squats_count_once_the_stream_has_shown_its_own_range():
    """The key poses of deep squats, and squats that go down only half as far: counted on
    the stream's own range (the trained range alone would never reach the bottom)."""
    deep = bundled()
    model = RepModel.fit([deep], ["squat"])
    squat = model.classes["squat"]
    stand = deep.world[0]
    bottom = deep.world[int(np.argmax(squat.positions(_features(deep.world))))]
    cycle = np.concatenate([np.linspace(0, 0.5, 8), np.full(4, 0.5), np.linspace(0.5, 0, 8), np.zeros(6)])
    frames = [stand + (bottom - stand) * t for t in np.concatenate([np.zeros(10), np.tile(cycle, 4)])]
    shallow = Sequence(clip_id="shallow", label="squat", layout="blazepose33", points=np.zeros((len(frames), 33, 4)),
                       width=720, height=1280, fps=10.0, world=np.stack(frames))
    assert model.count(shallow) == 4
    trained_only = RepModel(model.classes, CounterParams(min_span=10.0))  # never adapts
    assert trained_only.count(shallow) == 0


def test_a_class_labelled_with_no_repetitions_is_static_and_counts_nothing():
    plank = bundled(label="plank", clip_id="plank/squats_called_plank")
    model = RepModel.fit([bundled(), plank], ["squat", "plank"], reps={plank.clip_id: 0, "squat/pose_squats.mp4": 2})
    assert model.classes["plank"].static and not model.classes["squat"].static
    assert model.count(plank) == 0 and model.count(plank, "squat") == 2
    # without labels, a class whose clips do not move is static
    still = RepModel.fit([standing_still()], ["squat"])
    assert still.classes["squat"].static and still.count(bundled()) == 0


# ----- the file ----------------------------------------------------------------------------------
def test_model_round_trips_through_one_json_file(tmp_path):
    model = RepModel.fit([bundled(), bundled("plank", "plank/x")], ["squat", "plank"], reps={"plank/x": 0})
    path = tmp_path / "reps.json"
    model.save(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "posegraph.reps" and set(doc["classes"]) == {"squat", "plank"}
    loaded = RepModel.load(path)
    assert np.allclose(loaded.classes["squat"].far_pose, model.classes["squat"].far_pose, atol=1e-6)
    assert loaded.classes["plank"].static and loaded.params == model.params
    assert loaded.count(bundled()) == 2


@pytest.mark.parametrize("text, message", [
    ("not json", "not a JSON repetition model"),
    ('{"format": "something else"}', "not a repetition model"),
    ('{"format": "posegraph.reps", "version": 1, "features": "body_features", "joints": %s, '
     '"classes": {"squat": {"static": false, "rest_pose": [0, 1], "far_pose": [1, 0]}}}' % json.dumps(list(JOINT_NAMES)),
     "needs two distinct key poses of 51 numbers"),
])
def test_a_bad_model_file_is_one_line_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(RepModelError) as err:
        RepModel.load(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RepModelError, match="no such file"):
        RepModel.load(tmp_path / "missing.json")


# ----- the command ---------------------------------------------------------------------------------
def test_train_reps_writes_a_model_that_counts(tmp_path, capsys):
    data = tmp_path / "data.npz"
    save_dataset(data, [bundled(), bundled("plank", "plank/x.mp4")])
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"clips": [{"path": "a/x.mp4", "class": "plank", "reps": 0},
                                            {"path": "b/pose_squats.mp4", "class": "squat", "reps": 2}]}))
    out = tmp_path / "models" / "reps.json"
    assert train_reps.main([str(data), "-o", str(out), "--classes", "squat,plank", "--labels", str(labels)]) == 0
    assert "plank: " in capsys.readouterr().out
    model = RepModel.load(out)
    assert model.classes["plank"].static and model.count(bundled()) == 2


@pytest.mark.parametrize("args, message", [
    (["missing.npz"], "missing.npz: no such file"),
    (["DATA", "--classes", "squat,lunge"], "no clips of class lunge"),
    (["DATA", "--labels", "nolabels.json"], "nolabels.json: no such file"),
    (["DATA", "--labels", "BADLABELS"], "not a clip labels file"),
])
def test_train_reps_says_what_is_wrong_in_one_line_and_exits_2(tmp_path, capsys, args, message):
    data = tmp_path / "data.npz"
    save_dataset(data, [bundled()])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"clips": [{"class": "squat"}]}))
    args = [str(data) if a == "DATA" else str(bad) if a == "BADLABELS" else a for a in args]
    assert train_reps.main([*args, "-o", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "m.json").exists()


# ----- the shipped model, and the real clips ------------------------------------------------------
def test_shipped_model_counts_the_bundled_squats_it_never_saw():
    model = RepModel.load(SHIPPED)
    assert {"squat", "jumping_jack", "plank", "russian_twist"} <= set(model.classes)
    assert model.classes["plank"].static and not model.classes["squat"].static
    assert "squat/pose_squats.mp4" not in model.info.get("clips", [])
    assert model.count(bundled()) == 2
    counter = model.counter()
    for world in standing_still().world:
        counts = counter.update(world)
    assert counts == {name: 0 for name in model.classes}


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data (the labelled clips) is not here")
@pytest.mark.skipif(not (CLIPS.exists() and LABELS.exists()),
                    reason="out/clips/landmarks.npz or data/clip_labels.json missing: run benchmarks/clips.py")
def test_shipped_model_counts_static_clips_zero_and_moving_clips_within_one():
    labels = {f"{c['class']}/{c['path'].rsplit('/', 1)[-1]}": c for c in json.loads(LABELS.read_text())["clips"]}
    model = RepModel.load(SHIPPED)
    seen = 0
    for seq in load_dataset(CLIPS):
        label = labels.get(seq.clip_id)
        if label is None or seq.label not in model.classes:
            continue
        seen += 1
        counted = model.count(seq)
        if model.classes[seq.label].static:
            assert counted == 0, seq.clip_id
        else:  # fitted on these very clips: within one of the truth
            assert abs(counted - label["reps"]) <= 1, (seq.clip_id, counted, label["reps"])
    assert seen >= 20
