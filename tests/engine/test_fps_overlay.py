"""The per-node fps overlay `render` draws into the video (show_fps): a node's rate once it
is measured, nothing before it (never "pose 0.0 fps"), and real numbers within the first
seconds of graphs/demo.yaml. Why it used to show nothing or 0.0: the runner's table reached
`render` once a second, published on the runner's own clock, so the first measured rates
came seconds into the run (most of the bundled clip), and a node not yet measured was drawn
as 0.0 as soon as any other one was."""
from __future__ import annotations

import math
import subprocess
import sys

from posegraph.pose.drawing import Overlay, fps_lines

from conftest import ROOT


def test_fps_lines_leave_out_nodes_not_yet_measured():
    assert fps_lines(None) == [] and fps_lines({}) == []
    assert fps_lines({"camera": 0.0, "pose": 0.0}) == []
    assert fps_lines({"camera": 17.04, "pose": 0.0, "render": math.nan, "video": 16.96}) == ["camera 17.0 fps", "video 17.0 fps"]


def test_the_overlay_says_what_it_drew():
    import numpy as np

    overlay = Overlay()
    image = np.zeros((360, 640, 3), np.uint8)
    overlay.draw(image, {}, 0, {"camera": 0.0, "pose": 0.0})
    assert overlay.fps_drawn == [] and not image.any()
    overlay.draw(image, {}, 0, {"camera": 20.0, "pose": 0.0})
    assert overlay.fps_drawn == ["camera 20.0 fps"] and image.any()


def test_the_demo_video_shows_measured_rates_from_its_first_seconds(tmp_path):
    metrics = tmp_path / "metrics.json"
    done = subprocess.run([sys.executable, "runner.py", "graphs/demo.yaml", "--no-live", "--metrics", str(metrics),
                           "--set", f"video.path={tmp_path / 'demo.mp4'}", "--set", f"records.path={tmp_path / 'demo.jsonl'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    render = json.loads(metrics.read_text())["nodes"]["render"]
    assert render["frames_out"] == 65
    # rates are known about a second in (a node's first report, then the table a quarter of
    # a second later): well before the end of the clip, whatever the pace of this machine
    assert render["counters"].get("fps_shown", 0) >= 10, render
