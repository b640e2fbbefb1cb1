"""Helpers shared by the engine tests: run a real graph through the real CLI."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


class GraphRun:
    """A runner process started on a graph file, with its metrics and records at hand."""

    def __init__(self, tmp_path: Path, yaml_text: str, args=()):
        self.dir = tmp_path
        self.graph = tmp_path / "graph.yaml"
        self.graph.write_text(yaml_text.replace("TESTS", str(TESTS)).replace("TMP", str(tmp_path)))
        self.metrics_path = tmp_path / "metrics.json"
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), str(self.graph), "--metrics", str(self.metrics_path), "--no-live", *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = self.stderr = ""

    def wait(self, timeout=60):
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    @property
    def metrics(self):
        return json.loads(self.metrics_path.read_text())

    def records(self, name="sink.jsonl"):
        path = self.dir / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for_records(self, count, name="sink.jsonl", timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.records(name)) >= count:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited early: {self.proc.stderr.read()}")
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} records after {timeout} s")

    def workers(self):
        """pid -> config file name of every node process of this runner still alive."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
                status = (entry / "status").read_text()
            except OSError:
                continue
            ppid = int(next(l for l in status.splitlines() if l.startswith("PPid:")).split()[1])
            if ppid == self.proc.pid and b"posegraph.worker" in cmd:
                found[int(entry.name)] = Path(cmd[cmd.index(b"posegraph.worker") + 1].decode())
        return found

    def worker_pid(self, instance):
        for pid, config in self.workers().items():
            if config.name == f"{instance}.json":
                return pid, config
        raise AssertionError(f"no process for {instance}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


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
