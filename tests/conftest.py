"""Helpers shared by the engine tests: run a real graph through the real CLI."""
import os
import sys
from pathlib import Path

import pytest

from posegraph import testing

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


class GraphRun(testing.GraphRun):
    """A runner on a graph written from text: TESTS and TMP in it name the tests' folder
    and this test's temporary folder; run from the repository root like a user would."""

    def __init__(self, tmp_path: Path, yaml_text: str, args=()):
        graph = tmp_path / "graph.yaml"
        graph.write_text(yaml_text.replace("TESTS", str(TESTS)).replace("TMP", str(tmp_path)))
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
