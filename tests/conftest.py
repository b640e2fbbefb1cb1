"""What every test folder shares: the repository root, tests/support (node files the
tests wire into graphs, and test harnesses) on the import path, and `graph_run`, a real
runner on a graph written from text.

    tests/engine   the engine: spec, runtime, supervisor, machines, security, keyed state
    tests/pose     the pose library: layouts, features, classifiers, backends, training
    tests/nodes    node kinds, alone (posegraph.testing) and in real graphs
    tests/webapp   the upload app and the live view, over HTTP and in a browser
"""
import os
import sys
from pathlib import Path

import pytest

from posegraph import testing

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"
sys.path.insert(0, str(SUPPORT))


def video_frames(path) -> list:
    """Every frame of a video file, as OpenCV decodes it (BGR arrays)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


class GraphRun(testing.GraphRun):
    """A runner on a graph written from text: TESTS, TESTDIR and TMP in it name
    tests/support, tests/ and this test's temporary folder; run from the repository root
    like a user would."""

    def __init__(self, tmp_path: Path, yaml_text: str, args=()):
        graph = tmp_path / "graph.yaml"
        text = yaml_text.replace("TESTDIR", str(SUPPORT.parent)).replace("TESTS", str(SUPPORT))
        graph.write_text(text.replace("TMP", str(tmp_path)))
        super().__init__(graph, args, directory=tmp_path, cwd=ROOT)


@pytest.fixture
def graph_run(tmp_path):
    runs = []

    def start(yaml_text, *args):
        run = GraphRun(tmp_path, yaml_text, args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def processes_with(text: str) -> list[int]:
    """pids whose command line mentions `text` (to prove nothing was left behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids
