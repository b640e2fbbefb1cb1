"""`posegraph run SOURCE` on the bundled real clip: the graph it builds, the answer it
prints, the outputs named after the input, folders, bad sources; and the Python API of
README ("From Python"), run as it is written."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"


def run_command(*args, cwd=ROOT, timeout=240):
    return subprocess.run([sys.executable, str(ROOT / "runner.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_run_on_a_video_prints_the_answer_and_writes_outputs_named_after_it(tmp_path):
    done = run_command("run", CLIP, "-o", tmp_path, "--no-live")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose_squats.jsonl", "pose_squats.mp4", "pose_squats.summary.json"]
    summary = json.loads((tmp_path / "pose_squats.summary.json").read_text())
    assert set(summary) >= {"source", "frames", "classes", "answer", "reps", "dropped", "fps", "no_person", "warming_up"}
    assert summary["frames"] == 65 and summary["answer"] == "squat" and summary["reps"]["squat"] == 2
    assert summary["dropped"] == 0 and summary["no_person"] == 0
    assert all(s["start_s"] < s["end_s"] <= 13.2 for s in summary["classes"])
    assert any(s["class"] == "squat" for s in summary["classes"])
    assert set(summary["fps"]) == {"camera", "pose", "dtw", "smooth", "reps", "render", "video", "records"}
    records = [json.loads(line) for line in (tmp_path / "pose_squats.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(65))
    # the answer is the last thing printed, on stdout, with the paths written
    out = done.stdout.strip().splitlines()
    assert out[0].startswith(f"{CLIP}: squat") and "reps: squat 2" in out[0]
    assert "65 frames, 0 without a person" in done.stdout and "0 dropped" in done.stdout
    assert out[-1] == f"  wrote {tmp_path}/pose_squats.mp4, {tmp_path}/pose_squats.jsonl, {tmp_path}/pose_squats.summary.json"


def test_a_source_alone_on_the_command_line_runs_like_run_and_each_classifier_can_be_chosen(tmp_path):
    done = run_command(CLIP, "-o", tmp_path, "--no-live", "--classifier", "lstm", "--no-video", "--max-frames", "40")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pose_squats.jsonl", "pose_squats.summary.json"]
    summary = json.loads((tmp_path / "pose_squats.summary.json").read_text())
    assert summary["frames"] == 40 and set(summary["fps"]) == {"camera", "pose", "lstm", "smooth", "reps", "records"}


def test_a_folder_gives_one_set_of_outputs_per_video_and_a_table(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("first.mp4", "second.mov"):
        os.symlink(CLIP, clips / name)
    (clips / "notes.txt").write_text("not a video")
    done = run_command("run", clips, "-o", tmp_path / "out", "--no-live", "--no-video", "--max-frames", "20")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "first.jsonl", "first.summary.json", "second.jsonl", "second.summary.json"]
    table = done.stdout.strip().splitlines()[-3:]
    assert table[0].split()[:2] == ["input", "answer"]
    assert table[1].startswith("first.mp4") and table[2].startswith("second.mov")
    assert all(re.search(r"\s20\s+0$", row) for row in table[1:]), table


def test_print_graph_gives_a_graph_file_that_checks_and_runs_the_same(tmp_path):
    done = run_command("run", CLIP, "--print-graph", "--classifier", "knn", "-o", tmp_path)
    assert done.returncode == 0, done.stderr
    doc = yaml.safe_load(done.stdout)
    assert [n["id"] for n in doc["nodes"]] == ["camera", "pose", "embed", "knn", "smooth", "reps", "render", "video", "records"]
    assert "queue" not in doc["nodes"][1]  # a file: nothing may drop its frames
    graph = tmp_path / "mine.yaml"
    graph.write_text(done.stdout)
    checked = run_command("check", graph)
    assert checked.returncode == 0 and "ok (9 nodes" in checked.stdout, checked.stderr
    camera = run_command("run", "3", "--print-graph")
    pose = yaml.safe_load(camera.stdout)["nodes"][1]
    assert pose["queue"] == {"frame": {"size": 1, "policy": "latest"}}  # a camera is live: the newest frame


@pytest.mark.parametrize("args, message", [
    (["run", "no_such_clip.mp4"], "error: no such file or folder: 'no_such_clip.mp4'"),
    (["run", "EMPTY_DIR"], "error: folder 'EMPTY_DIR' holds no videos"),
    (["run", "CLIP", "--people", "0"], "error: --people must be 1 or more"),
    (["run", "CLIP", "--set", "pose.nope=1"], "error: --set: node 'pose' field 'params.nope': unknown param"),
])
def test_a_bad_source_or_option_is_one_line_and_exit_2(tmp_path, args, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [str(empty) if a == "EMPTY_DIR" else str(CLIP) if a == "CLIP" else a for a in args]
    done = run_command(*args, "-o", tmp_path, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert message.replace("EMPTY_DIR", str(empty)) in lines[0]


def test_a_camera_that_is_not_there_stops_with_the_capture_error(tmp_path):
    done = run_command("run", "7", "-o", tmp_path, "--no-live")
    assert done.returncode == 1
    assert "error: node 'camera' field 'params.source': cannot open camera 7" in done.stderr


def test_the_python_example_of_the_readme_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    records = [line for line in lines if re.match(r"^\d+ ", line)]
    assert [int(line.split()[0]) for line in records] == list(range(65))  # every record, in order
    assert records[-1].split()[1] == "squat" and "'squat': 2" in records[-1]
    assert float(lines[-2]) > 0  # pose fps from run_graph's metrics
    assert lines[-1] == "blazepose33 (33, 4)"
    (ROOT / "out" / "api_demo.mp4").unlink(missing_ok=True)


def test_the_python_run_raises_the_runs_one_line_error_and_stops_the_graph_when_left_early(tmp_path):
    import posegraph

    with pytest.raises(posegraph.RunError, match="no such file or folder") as failed:
        list(posegraph.run(tmp_path / "missing.mp4"))
    assert failed.value.code == 2
    records = posegraph.run(CLIP, output=str(tmp_path), classifier="tcn")
    first = [next(records) for _ in range(5)]
    records.close()  # leaves the loop early: the graph stops cleanly
    assert [r["seq"] for r in first] == list(range(5))
    lines = (tmp_path / "pose_squats.jsonl").read_text().splitlines()
    assert 5 <= len(lines) <= 65 and all(line.endswith("}") for line in lines)


def test_estimate_finds_the_person_of_one_image_as_the_pose_node_does():
    import numpy as np

    import posegraph.pose

    expected = json.loads((ROOT / "data" / "google_pose_reference" / "pose.expected.json").read_text())
    person = posegraph.pose.estimate(str(ROOT / "data" / "google_pose_reference" / "pose.jpg"))
    assert person["layout"] == "blazepose33" and person["px"].shape == (33, 4) and person["world"].shape[0] == 33
    reference = np.asarray(expected["landmarks_xy"], np.float32)
    assert np.abs(person["px"][:, :2] - reference).max() < expected["tolerance_px"]  # Google's own test tolerance
    assert posegraph.pose.estimate(np.zeros((240, 320, 3), np.uint8)) is None
    with pytest.raises(ValueError, match="uint8 H x W x 3"):
        posegraph.pose.estimate(np.zeros((240, 320), np.float32))


def test_show_without_a_display_serves_the_live_view_in_a_browser_and_the_run_completes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "run", str(CLIP), "--show", "--no-video", "--max-frames", "15",
                           "-o", str(tmp_path), "--no-live"], cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no window (no display" in done.stderr and "shown in a browser instead" in done.stderr
    assert re.search(r"\[web\.0\] live view at http://127\.0\.0\.1:\d+/", done.stderr), done.stderr[-2000:]
    assert json.loads((tmp_path / "pose_squats.summary.json").read_text())["frames"] == 15
