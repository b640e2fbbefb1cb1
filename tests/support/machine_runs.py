"""Start one real runner per machine of a graph, as a user does on each box."""
import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT


class MachineRun:
    """`runner.py GRAPH --machine NAME --hosts FILE` in its own process (optionally inside a
    network namespace, through `launch`), with its output in a log file."""

    def __init__(self, workdir: Path, graph: Path, machine: str | None, hosts: Path | None, *extra: str, launch=None, tag: str = ""):
        self.machine = machine
        name = (machine or "single") + tag
        self.log_path = workdir / f"{name}.log"
        self.metrics_path = workdir / f"{name}.metrics.json"
        argv = [sys.executable, str(ROOT / "runner.py"), str(graph), "--no-live", "--metrics", str(self.metrics_path), *extra]
        if machine:
            argv += ["--machine", machine]
        if hosts:
            argv += ["--hosts", str(hosts)]
        self.log = open(self.log_path, "w")
        self.proc = (launch or subprocess.Popen)(argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def wait(self, timeout=90) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log.flush()

    @property
    def output(self) -> str:
        return self.log_path.read_text()

    @property
    def metrics(self) -> dict:
        return json.loads(self.metrics_path.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_hosts(path: Path, inventory: dict) -> Path:
    path.write_text("".join(f"{name}: {address}\n" for name, address in inventory.items()))
    return path


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_lines(path: Path, count: int, runs, timeout=60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(read_records(path)) >= count:
            return
        for run in runs:
            if run.proc.poll() not in (None, 0):
                raise AssertionError(f"runner of {run.machine} exited early:\n{run.output}")
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} records in {path} after {timeout} s")
