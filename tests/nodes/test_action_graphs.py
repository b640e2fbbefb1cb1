"""The shipped classifiers (TCN, LSTM, DTW, KNN, trained on the exercise clips) with the
shipped repetition model in their real graphs on the bundled clip, which none of them saw:
one record per frame, the clip called a squat, and its two squats counted."""
import collections
import json
import subprocess
import sys

import pytest

from conftest import ROOT


def run_video_graph(tmp_path, classifier):
    records = tmp_path / "records.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs" / f"video_{classifier}.yaml"), "--no-live",
                           "--set", f"records.path={records}", "--set", f"video.path={tmp_path / 'v.mp4'}",
                           "--metrics", str(tmp_path / "m.json")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["seq"] for r in rows] == list(range(65))
    metrics = json.loads((tmp_path / "m.json").read_text())["nodes"]
    assert metrics[classifier]["rss_mb"] < 300  # no TensorFlow (about 570 MB alone) in the classifier's process; DTW's numba JIT takes 150-210 MB
    return rows


@pytest.mark.parametrize("classifier", ["tcn", "lstm", "dtw", "knn"])
def test_the_shipped_models_call_the_bundled_clip_squats_and_count_two(tmp_path, classifier):
    rows = run_video_graph(tmp_path, classifier)
    answers = [r["class"] for r in rows if r.get("class")]
    assert len(answers) >= 40, f"{classifier} answered only {len(answers)} of 65 frames"
    assert collections.Counter(answers).most_common(1)[0][0] == "squat", collections.Counter(answers)
    assert rows[-1]["reps"]["squat"] == 2, rows[-1]["reps"]
