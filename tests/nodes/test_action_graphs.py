"""The shipped action classifiers (LSTM and DTW, trained on the exercise clips) in their real
graphs on the bundled clip, which they never saw: one record per frame, and for the LSTM a
squat. (The DTW templates hold 30 frames/s motion; the bundled clip runs at 5 frames/s, six
times faster per frame, and DTW's band cannot stretch that far: it mostly says "unknown"
there, which the README reports. Its right answers are tested in test_dtw.py.)"""
import collections
import json
import subprocess
import sys


from conftest import ROOT


def run_video_graph(tmp_path, classifier):
    records = tmp_path / "records.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs" / f"video_{classifier}.yaml"), "--no-live",
                           "--set", f"records.path={records}", "--set", f"video.path={tmp_path / 'v.mp4'}",
                           "--metrics", str(tmp_path / "m.json")], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["seq"] for r in rows] == list(range(65))
    metrics = json.loads((tmp_path / "m.json").read_text())["nodes"]
    assert metrics[classifier]["rss_mb"] < 200  # no TensorFlow in the classifier's process
    return [r["label"] for r in rows if r["label"]]


def test_the_shipped_lstm_recognises_the_bundled_squats_it_never_saw(tmp_path):
    answers = run_video_graph(tmp_path, "lstm")
    assert len(answers) >= 50, "the LSTM answers from its 9th frame on, not only once 32 frames are in"
    assert collections.Counter(answers).most_common(1)[0][0] == "squat"


def test_the_shipped_dtw_answers_every_frame_once_it_has_enough(tmp_path):
    answers = run_video_graph(tmp_path, "dtw")
    assert len(answers) == 65 - 14  # min_frames 15: answers from the 15th frame on
    assert set(answers) <= {"squat", "jumping_jack", "plank", "russian_twist", "unknown"}
