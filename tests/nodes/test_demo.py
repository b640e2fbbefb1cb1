"""The main job end to end on the bundled clip: capture -> pose -> embed -> KNN -> smoothing
-> repetitions -> render -> video and JSON lines, each node its own process."""
import json
import subprocess
import sys

import cv2

from conftest import ROOT

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"


def run_demo(tmp_path, *extra):
    out = tmp_path / "out"
    args = [sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs" / "demo.yaml"), "--no-live",
            "--set", f"video.path={out / 'demo.mp4'}", "--set", f"records.path={out / 'demo.jsonl'}",
            "--metrics", str(out / "metrics.json"), *extra]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=180)
    return done, out


def test_the_demo_counts_the_squats_and_writes_one_record_and_one_frame_per_input_frame(tmp_path):
    done, out = run_demo(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "demo.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(65))
    assert [r["index"] for r in records] == list(range(65))
    # The woman squats down three times; the clip ends at the bottom of the third squat,
    # and a repetition is counted when she comes back up: two.
    assert records[-1]["reps"] == {"squats_down": 2}
    counts = [r["reps"]["squats_down"] for r in records]
    assert counts == sorted(counts) and counts[0] == 0
    first, second = counts.index(1), counts.index(2)
    assert 14 <= first <= 26 and 38 <= second <= 50, (first, second)  # she is up in frames ~17-27 and ~41-51
    assert all(r["landmarks"] is not None and len(r["landmarks"]) == 33 for r in records)
    assert all(len(p) == 4 for p in records[0]["landmarks"])
    assert set(records[10]["votes"]) <= {"squats_down", "squats_up", "pushups_down", "pushups_up"}
    assert max(records[10]["smoothed"], key=records[10]["smoothed"].get) == "squats_down"  # frame 10: at the bottom
    assert max(records[22]["smoothed"], key=records[22]["smoothed"].get) == "squats_up"    # frame 22: standing
    video = cv2.VideoCapture(str(out / "demo.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 65
    assert (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (720, 1280)
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == 65
    metrics = json.loads((out / "metrics.json").read_text())["nodes"]
    assert metrics["pose"]["frames_out"] == 65 and metrics["pose"]["rss_mb"] < 450  # no TensorFlow in it


def _one_error_and_nothing_left(done):
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(errors) == 1, done.stderr
    assert orphaned_workers() == [], "node processes outlived their runner"
    return errors[0]


def orphaned_workers():
    """Node processes whose runner is gone (re-parented to init): what a clean stop never leaves."""
    pids = subprocess.run(["pgrep", "-f", "posegraph.worker"], capture_output=True, text=True).stdout.split()
    orphans = []
    for pid in pids:
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if "\nPPid:\t1\n" in status:
            orphans.append(int(pid))
    return orphans


def test_a_missing_clip_gives_one_line_naming_node_and_field(tmp_path):
    done, _ = run_demo(tmp_path, "--set", f"camera.source={tmp_path / 'missing.mp4'}")
    error = _one_error_and_nothing_left(done)
    assert error == f"error: node 'camera' field 'params.source': no such file or folder: '{tmp_path / 'missing.mp4'}'"


def test_a_corrupt_clip_gives_one_line_naming_node_and_field(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    data = CLIP.read_bytes()
    corrupt.write_bytes(data[:200] + bytes(len(data) - 200))  # header kept, everything else zeroed
    done, _ = run_demo(tmp_path, "--set", f"camera.source={corrupt}")
    error = _one_error_and_nothing_left(done)
    assert error.startswith("error: node 'camera' field 'params.source': cannot read video file")


def test_the_webcam_graph_without_a_camera_says_how_to_point_it_at_a_file(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs" / "webcam_knn.yaml"), "--no-live",
                           "--set", f"records.path={tmp_path / 'r.jsonl'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    error = _one_error_and_nothing_left(done)
    assert error.startswith("error: node 'camera' field 'params.source': cannot open camera 0")
    assert error.endswith("to run this graph on a file (every frame kept): --set camera.source=path/to/video.mp4, "
                          "or: posegraph run path/to/video.mp4")


def test_the_webcam_graph_on_a_file_with_set_keeps_every_frame_despite_its_latest_queue(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs" / "webcam_knn.yaml"), "--no-live",
                           "--set", f"camera.source={CLIP}", "--set", f"records.path={tmp_path / 'r.jsonl'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "DISPLAY": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(65))  # a file is not live: `latest` drops none of its frames
