"""posegraph.pose.sequences and posegraph.pose.sequence_import: the sequence data set, its
splits, the importers (on files written here in each format) and extraction with the real
BlazePose model on the bundled real clip (data/google_pose_reference/pose_squats.mp4)."""
import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from posegraph.pose import landmarks as lmk  # noqa: E402
from posegraph.pose import sequence_import as si  # noqa: E402
from posegraph.commands.extract import main as extract_main  # noqa: E402
from posegraph.commands.import_sequences import main as import_main  # noqa: E402
from posegraph.pose import sequences as sq  # noqa: E402
from posegraph.pose.sequences import Sequence  # noqa: E402

REF = ROOT / "data" / "google_pose_reference"
VIDEO = REF / "pose_squats.mp4"


def make_seq(clip_id, label="a", layout="blazepose33", frames=3, seed=0, nan_rows=()):
    k = lmk.COUNTS[layout]
    points = np.random.default_rng(seed).random((frames, k, 4), dtype=np.float32) * 100
    for r in nan_rows:
        points[r] = np.nan
    return Sequence(clip_id=clip_id, label=label, layout=layout, points=points, width=640, height=480, fps=30.0)


# ----- data set file --------------------------------------------------------------------------
def test_save_load_round_trip_has_no_object_arrays(tmp_path):
    seqs = [make_seq("squat/squat_001.mp4", "squat", frames=5, seed=1, nan_rows=(0, 3)),
            make_seq("jumping/ünïcødé clip #2.avi", "jumping — ünïcødé", "coco17", frames=4, seed=2),
            make_seq("empty/none.mp4", "empty", frames=0),
            make_seq("x", "squat", "coco17", frames=1, seed=3, nan_rows=(0,))]
    seqs[1].fps, seqs[1].width, seqs[1].height = 22.5, 1280, 720
    path = tmp_path / "sub" / "data.npz"
    sq.save_dataset(path, seqs)
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.npz"], "temporary file left behind"

    with np.load(path, allow_pickle=False) as data:
        for name in data.files:
            assert data[name].dtype.kind != "O", name
        assert data["points"].dtype == np.float32 and data["points"].shape == ((5 + 0) * 33 + 4 * 17 + 1 * 17, 4)
    with zipfile.ZipFile(path) as z:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist())

    back = sq.load_dataset(path)
    assert len(back) == len(seqs)
    for a, b in zip(seqs, back):
        assert (a.clip_id, a.label, a.layout, a.width, a.height, a.fps) == (b.clip_id, b.label, b.layout, b.width, b.height, b.fps)
        assert b.points.dtype == np.float32 and b.points.shape == a.points.shape
        np.testing.assert_array_equal(a.points, b.points)  # NaN rows compare equal here
    assert np.isnan(back[0].points[[0, 3]]).all() and not np.isnan(back[0].points[[1, 2, 4]]).any()

    sq.save_dataset(path, [])
    assert sq.load_dataset(path) == []


def test_load_dataset_errors_are_one_line_with_the_path(tmp_path):
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    other = tmp_path / "other.npz"
    np.savez_compressed(other, a=np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{k: np.array([{"x": 1}], dtype=object) for k in sq._KEYS})
    for path in (tmp_path / "missing.npz", text, other, pickled, tmp_path):
        with pytest.raises(ValueError) as info:
            sq.load_dataset(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, message


def test_sequence_checks_its_shape():
    with pytest.raises(ValueError, match="points must be"):
        Sequence("c", "l", "coco17", np.zeros((2, 33, 4)), 1, 1, 30.0)
    with pytest.raises(ValueError, match="layout"):
        Sequence("c", "l", "openpose18", np.zeros((2, 18, 4)), 1, 1, 30.0)


# ----- splits ---------------------------------------------------------------------------------
def test_split_by_clip_and_leave_one_clip_out_never_share_a_clip():
    # several windows per clip (same clip_id), as a classifier may cut them
    seqs = [make_seq(f"c{i % 4}", label=f"l{i % 2}", frames=2, seed=i) for i in range(12)]
    train, test = sq.split_by_clip(seqs, ["c1", "c3"])
    assert {s.clip_id for s in test} == {"c1", "c3"} and len(test) == 6
    assert {s.clip_id for s in train} == {"c0", "c2"} and len(train) == 6
    assert not {s.clip_id for s in train} & {s.clip_id for s in test}
    train, test = sq.split_by_clip(seqs, "c0")  # one id as a plain string
    assert {s.clip_id for s in test} == {"c0"}
    with pytest.raises(ValueError, match="nope"):
        sq.split_by_clip(seqs, ["c0", "nope"])

    folds = list(sq.leave_one_clip_out(seqs))
    assert len(folds) == len(seqs)
    for held, train in folds:
        assert held.clip_id not in {s.clip_id for s in train}
        assert len(train) == 9


# ----- importers ------------------------------------------------------------------------------
def mp_row(index, rng, sep):
    values = rng.random(132).round(6)
    return sep.join([str(index)] + [repr(float(v)) for v in values]), values


def test_mediapipe_txt_import(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mp"
    folder.mkdir()
    # pandas-style, comma separated: header ",0,...,131"; indices 0..4 then reset 0..2
    lines, wave = [",".join([""] + [str(i) for i in range(132)])], []
    for index in [0, 1, 2, 3, 4, 0, 1, 2]:
        line, values = mp_row(index, rng, ",")
        lines.append(line)
        wave.append(values)
    (folder / "WAVE.txt").write_text("\n".join(lines) + "\n")
    # whitespace separated, header with the index column's number too; a jump forward 3 -> 7
    lines = [" ".join(str(i) for i in range(133))]
    for index in [0, 1, 2, 3, 7, 8]:
        lines.append(mp_row(index, rng, "  ")[0])
    (folder / "SQUAT.txt").write_text("\n".join(lines) + "\n\n")
    (folder / "notes.md").write_text("ignored")

    seqs = si.import_mediapipe_txt(folder, width=640, height=480)
    assert [(s.clip_id, s.label, len(s)) for s in seqs] == [
        ("SQUAT.txt#0", "SQUAT", 4), ("SQUAT.txt#1", "SQUAT", 2),
        ("WAVE.txt#0", "WAVE", 5), ("WAVE.txt#1", "WAVE", 3)]
    w0 = seqs[2]
    assert w0.layout == "blazepose33" and w0.points.shape == (5, 33, 4) and (w0.width, w0.height, w0.fps) == (640, 480, 30.0)
    expected = np.asarray(wave[:5]).reshape(5, 33, 4) * [640, 480, 640, 1]
    np.testing.assert_allclose(w0.points, expected, rtol=1e-6, atol=1e-3)
    assert len(si.import_mediapipe_txt(folder / "WAVE.txt", 1280, 720)) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    good_line = mp_row(0, rng, ",")[0]
    (bad / "JUMP.txt").write_text("\n".join([",".join(str(i) for i in range(132)), good_line, good_line.rsplit(",", 1)[0]]))
    with pytest.raises(ValueError) as info:
        si.import_mediapipe_txt(bad)
    assert f"{bad / 'JUMP.txt'}:3:" in str(info.value) and "got 132" in str(info.value), str(info.value)
    (bad / "JUMP.txt").write_text("\n".join([good_line, good_line.replace(",", ",abc,", 1).rsplit(",", 1)[0]]))
    with pytest.raises(ValueError, match=r"JUMP\.txt:2: not a number: 'abc'"):
        si.import_mediapipe_txt(bad)


def openpose_frame(rng, missing=()):
    xy = (rng.random((18, 2)) * [640, 480] + 1).round(3)
    for m in missing:
        xy[m] = 0
    return xy


def test_mhad_import(tmp_path, capsys):
    rng = np.random.default_rng(1)
    frames = [openpose_frame(rng, missing=(3, 16) if i == 5 else ()) for i in range(96)]
    frames[40] = np.zeros((18, 2))  # nobody found in this frame
    folder = tmp_path / "mhad"
    folder.mkdir()
    (folder / "X_train.txt").write_text("".join(",".join(f"{v:.3f}" for v in f.reshape(-1)) + "\n" for f in frames))
    (folder / "y_train.txt").write_text(" 1\n6\n3\n")

    seqs = si.import_mhad(folder)
    assert [(s.clip_id, s.label, s.layout, s.points.shape) for s in seqs] == [
        ("X_train.txt#0", "JUMPING", "coco17", (32, 17, 4)), ("X_train.txt#1", "CLAPPING_HANDS", "coco17", (32, 17, 4)),
        ("X_train.txt#2", "BOXING", "coco17", (32, 17, 4))]
    s0 = seqs[0]
    op = lmk.OPENPOSE_NAMES
    for coco_i, name in enumerate(lmk.COCO_NAMES):
        op_name = name.replace("left_", "l_").replace("right_", "r_")
        np.testing.assert_allclose(s0.points[0, coco_i, :2], frames[0][op.index(op_name)], atol=1e-3)
    assert (s0.points[0, :, 2] == 0).all() and (s0.points[0, :, 3] == 1).all()
    # frame 5: r_elbow (3) and r_ear (16) at (0, 0) -> missing
    for name in ("right_elbow", "right_ear"):
        i = lmk.index(name, "coco17")
        assert np.isnan(s0.points[5, i, :3]).all() and s0.points[5, i, 3] == 0
    assert (s0.points[5, :, 3] == 1).sum() == 15
    assert np.isnan(seqs[1].points[40 - 32]).all(), "a frame with every keypoint missing is all NaN"

    named = si.import_mhad(folder / "X_train.txt", classes=["a", "b", "c", "d", "e", "f"], width=1280, height=720, fps=22)
    assert [s.label for s in named] == ["a", "f", "c"] and (named[0].width, named[0].fps) == (1280, 22.0)

    # the command writes a data set that loads back
    out = tmp_path / "mhad.npz"
    assert import_main(["mhad", str(folder), "-o", str(out)]) == 0
    assert "wrote 3 sequences" in capsys.readouterr().out
    assert [s.label for s in sq.load_dataset(out)] == ["JUMPING", "CLAPPING_HANDS", "BOXING"]

    # row count mismatch: 96 rows, 4 labels
    (folder / "y_train.txt").write_text("1\n2\n3\n4\n")
    with pytest.raises(ValueError) as info:
        si.import_mhad(folder)
    message = str(info.value)
    assert "X_train.txt" in message and "96 rows" in message and "4 sequences" in message and "128" in message, message
    assert import_main(["mhad", str(folder), "-o", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1

    # a malformed row (35 values) and a bad class id: file:line
    lines = (folder / "X_train.txt").read_text().splitlines()
    lines[9] = lines[9].rsplit(",", 1)[0]
    (folder / "X_train.txt").write_text("\n".join(lines) + "\n")
    (folder / "y_train.txt").write_text("1\n2\n3\n")
    with pytest.raises(ValueError, match=r"X_train\.txt:10: expected 36 comma-separated values .*got 35"):
        si.import_mhad(folder)
    lines[9] = lines[10].replace(",", ",x", 1)
    (folder / "X_train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"X_train\.txt:10: not a number"):
        si.import_mhad(folder)
    lines[9] = lines[10]
    (folder / "X_train.txt").write_text("\n".join(lines) + "\n")
    (folder / "y_train.txt").write_text("1\n7\n3\n")
    with pytest.raises(ValueError, match=r"y_train\.txt:2: class id 7 is not a whole number in 1\.\.6"):
        si.import_mhad(folder)
    (folder / "y_train.txt").unlink()
    with pytest.raises(ValueError, match="y_train.txt is missing"):
        si.import_mhad(folder)


def test_import_command_errors(tmp_path, capsys):
    assert import_main(["mediapipe-txt", str(tmp_path / "nope"), "-o", str(tmp_path / "o.npz")]) == 2
    assert import_main(["mediapipe-txt", str(tmp_path), "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "no such file" in err[0] and "no *.txt files" in err[1], err
    assert not (tmp_path / "o.npz").exists()


# ----- extraction with the real model ---------------------------------------------------------
def write_avi(path, frames=10):
    import cv2

    cap = cv2.VideoCapture(str(VIDEO))
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (image.shape[1], image.shape[0]))
            assert writer.isOpened()
        writer.write(image)
    writer.release()
    cap.release()


def test_extract_folder_matches_reference_and_resumes(tmp_path, capsys):
    root = tmp_path / "root"
    (root / "squat").mkdir(parents=True)
    shutil.copy(VIDEO, root / "squat" / "a.mp4")
    write_avi(root / "squat" / "b.avi")
    (root / "squat" / "c.mp4").write_text("this is a text file, not a video\n")
    (root / "squat" / "notes.txt").write_text("not a clip")
    out = tmp_path / "data.npz"
    assert [(p.name, c) for p, c in sq.list_clips(root)] == [("a.mp4", "squat"), ("b.avi", "squat"), ("c.mp4", "squat")]

    started = time.monotonic()
    assert extract_main([str(root), "-o", str(out)]) == 0
    first_seconds = time.monotonic() - started
    captured = capsys.readouterr()
    print(captured.out)
    assert "squat/a.mp4: 65 frames, 0 without a person" in captured.out
    assert "squat/b.avi: 10 frames" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "c.mp4: cannot read it as a video" in warnings[0] and "skipped" in warnings[0], captured.err

    seqs = {s.clip_id: s for s in sq.load_dataset(out)}
    assert sorted(seqs) == ["squat/a.mp4", "squat/b.avi"]
    a, b = seqs["squat/a.mp4"], seqs["squat/b.avi"]
    assert (a.label, a.layout, a.points.shape, a.width, a.height) == ("squat", "blazepose33", (65, 33, 4), 720, 1280)
    assert a.fps == pytest.approx(5.0) and b.fps == pytest.approx(10.0)  # from the files
    expected = np.asarray(json.loads((REF / "pose_squats.full.json").read_text()))
    distance = float(np.linalg.norm(a.points[..., :2] - expected[..., :2], axis=-1).mean())
    print(f"a.mp4 vs Google's reference: mean distance {distance:.2f} px")
    assert distance < 5.0
    assert b.points.shape == (10, 33, 4) and not np.isnan(b.points).any()
    # the MJPG copy of the first 10 frames gives nearly the same landmarks
    assert float(np.linalg.norm(b.points[..., :2] - a.points[:10, :, :2], axis=-1).mean()) < 5.0

    started = time.monotonic()
    assert extract_main([str(root), "-o", str(out), "--no-progress"]) == 0
    second_seconds = time.monotonic() - started
    captured = capsys.readouterr()
    assert "extracted 0 clips" in captured.out and "skipped 2 already done, 1 unreadable" in captured.out, captured.out
    assert second_seconds < first_seconds / 3, (first_seconds, second_seconds)
    again = sq.extract(root, out, progress=False)
    assert [s.clip_id for s in again] == ["squat/a.mp4", "squat/b.avi"]
    np.testing.assert_array_equal(again[0].points, a.points)

    # a dropped clip is extracted again, the others are kept as they were
    sq.save_dataset(out, [b])
    assert [s.clip_id for s in sq.extract(root, out, progress=False)] == ["squat/b.avi", "squat/a.mp4"]

    capsys.readouterr()
    assert extract_main([str(tmp_path / "missing"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing'}: no such directory"], err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no clips found"):
        sq.list_clips(tmp_path / "empty")


def test_gif_through_opencv_and_pillow(tmp_path):
    import cv2
    from PIL import Image

    cap = cv2.VideoCapture(str(VIDEO))
    images = []
    for _ in range(3):
        ok, frame = cap.read()
        images.append(Image.fromarray(cv2.cvtColor(cv2.resize(frame, (360, 640)), cv2.COLOR_BGR2RGB)))
    cap.release()
    gif = tmp_path / "clip.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)

    total, fps, frames = sq._open_pil(gif)  # the fallback for gifs OpenCV cannot read
    frames = list(frames)
    assert total == 3 and fps == pytest.approx(10.0) and len(frames) == 3
    assert frames[0].shape == (640, 360, 3) and frames[0].dtype == np.uint8

    seq = sq.extract_clip(gif, "squat", "squat/clip.gif")
    assert seq.points.shape == (3, 33, 4) and (seq.width, seq.height) == (360, 640)
    assert not np.isnan(seq.points).any(), "the person is found in the gif's frames"
