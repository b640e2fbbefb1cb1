"""Running graphs from Python: `posegraph.run(source)` yields the records of the real
multi-process graph as they are written; `posegraph.run_graph(path)` runs a graph file.

Both start the command line (`python -m posegraph run ...`) in a child process: the graph's
processes, signals and shared memory then belong to it, not to the caller's interpreter
(a notebook keeps working after a Ctrl-C or a failed run).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

POLL_S = 0.05


class RunError(RuntimeError):
    """The run failed: str() is its one-line error; `code` the command's exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class RunResult:
    """A finished graph run: its exit code and per-node metrics (the runner's --metrics document)."""

    code: int
    metrics: dict = field(default_factory=dict)


def _overrides(values: dict | None) -> list[str]:
    args = []
    for key, value in (values or {}).items():
        text = json.dumps(value) if not isinstance(value, str) else value
        args += ["--set", f"{key}={text}"]
    return args


def _error_line(log_path: str, code: int) -> str:
    lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [f"exit code {code}"])[-1]


def _follow(path: Path, process: subprocess.Popen) -> Iterator[dict]:
    """The complete lines of `path` as they are appended, until `process` has exited and
    the file has no more."""
    handle = None
    partial = ""
    while True:
        exited = process.poll() is not None
        if handle is None and path.exists():
            handle = open(path, encoding="utf-8")
        if handle is not None:
            chunk = handle.read()
            if chunk:
                partial += chunk
                *lines, partial = partial.split("\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
                continue
        if exited:
            break
        time.sleep(POLL_S)
    if handle is not None:
        handle.close()


def run(source: str | int, classifier: str | None = None, people: int = 1, model: str | None = None,
        output: str | None = None, video: bool = False, max_frames: int = 0, set: dict | None = None) -> Iterator[dict]:
    """Run `posegraph run SOURCE` and yield one record per frame, in order, as the graph writes
    them (the fields of docs/records.md).

    source      a video file, a folder of images, a camera index or a stream URL (a folder of
                videos: each video in turn)
    classifier  dtw, tcn, knn or lstm (default: the command's default, the best measured)
    output      folder for the outputs (default: a temporary folder, removed at the end)
    video       also write the annotated video (default False: records only)
    set         {"node.param": value} overrides of the built graph

    Raises RunError when the run fails. Leaving the loop early stops the graph cleanly."""
    from posegraph.pose.recipes import output_stem, source_kind

    source = str(source)
    if source_kind(source) == "folder":
        from posegraph.commands.run_source import inputs_of

        files = inputs_of(source)
        if files != [source]:
            for each in files:
                yield from run(each, classifier, people, model, output, video, max_frames, set)
            return
    scratch = tempfile.mkdtemp(prefix="posegraph-api-")
    out_dir = output or scratch
    records = Path(out_dir) / f"{output_stem(source)}.jsonl"
    if records.exists():
        records.unlink()  # a run before this one's: its lines must not be taken for these
    log_path = os.path.join(scratch, "run.log")
    command = [sys.executable, "-m", "posegraph", "run", source, "--no-live", "-o", out_dir, "--people", str(people)]
    command += (["--classifier", classifier] if classifier else []) + (["--model", model] if model else [])
    command += ([] if video else ["--no-video"]) + (["--max-frames", str(max_frames)] if max_frames else [])
    command += _overrides(set)
    process = None
    try:
        with open(log_path, "w") as log, open(os.devnull, "w") as quiet:
            process = subprocess.Popen(command, stdout=quiet, stderr=log)
            yield from _follow(records, process)
        code = process.wait()
        if code != 0:
            raise RunError(_error_line(log_path, code), code)
    finally:
        if process is not None and process.poll() is None:  # the caller left the loop early
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def run_graph(path: str | os.PathLike, set: dict | None = None, max_frames: int = 0) -> RunResult:
    """Run a graph file to its end, as `posegraph run PATH` does; the result holds its
    metrics. Raises RunError when the run fails (the graph's one-line error)."""
    scratch = tempfile.mkdtemp(prefix="posegraph-api-")
    try:
        metrics_path = os.path.join(scratch, "metrics.json")
        log_path = os.path.join(scratch, "run.log")
        command = [sys.executable, "-m", "posegraph", "run", str(path), "--no-live", "--metrics", metrics_path]
        command += _overrides(set) + (["--max-frames", str(max_frames)] if max_frames else [])
        with open(log_path, "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise RunError(_error_line(log_path, code), code)
        metrics = json.loads(Path(metrics_path).read_text()) if os.path.exists(metrics_path) else {}
        return RunResult(code, metrics)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
