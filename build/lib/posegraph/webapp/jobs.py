"""The job queue: one worker thread runs the jobs one at a time, each as a real runner
subprocess (its own process group) on the uploaded clip, so uploads queue rather than collide.

A job lives in JOBS_DIR/<32 hex>/: input<ext> (the upload), annotated.mp4, records.jsonl,
metrics.json, runner.log and job.json (its state, so finished jobs survive a restart).
Progress is the number of lines in records.jsonl over the clip's frame count, polled ~4x a
second; a job is done when the runner exits 0, failed with its last error line otherwise.
A done job whose run warned (metrics.json: the video ended early, a node lost frames) is
"done with warnings": its message and `warnings` say what, and its percent is the share
of the clip that was processed, so it never shows as a plain 100 %.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from posegraph.pose.paths import PROJECT_ROOT
from posegraph.webapp.uploads import GRAPHS

JOB_ID = re.compile(r"[0-9a-f]{32}\Z")
# the only files served from a job's folder: name -> content type
RESULT_FILES = {
    "annotated.mp4": "video/mp4",  # H.264, index first: plays in every browser while it downloads
    "records.jsonl": "application/x-ndjson; charset=utf-8",
    "metrics.json": "application/json",
    "runner.log": "text/plain; charset=utf-8",
    "annotated.webm": "video/webm",  # what jobs made before the H.264 video wrote: still served
}
FINAL = ("done", "failed")
STOP_GRACE_S = 6.0  # the runner drains and exits within 5 s of SIGTERM


@dataclass
class Job:
    id: str
    graph: str
    name: str            # the uploaded file's name, for display only
    input: str           # file name of the upload inside the job folder: input<ext>
    frames_total: int    # CAP_PROP_FRAME_COUNT of the upload (0: unknown)
    state: str = "queued"
    frames_done: int = 0
    percent: int = 0
    message: str = ""
    exit_code: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    warnings: list[str] = field(default_factory=list)  # what a done job's run warned of


class JobQueue:
    def __init__(self, jobs_dir: Path, python: str = sys.executable, poll_s: float = 0.25):
        self.dir = Path(jobs_dir).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.poll_s = poll_s
        self.jobs: dict[str, Job] = {}
        self.waiting: list[str] = []       # queued job ids, oldest first
        self.running: str | None = None
        self.version = 0                    # bumped on every change of any job
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.proc: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._worker, name="job-worker", daemon=True)
        self._load()

    # ---- the public side (request threads) ----

    def job_dir(self, job_id: str) -> Path:
        return self.dir / job_id

    def new_dir(self) -> tuple[str, Path]:
        """A fresh, empty folder for a job under a random id."""
        while True:
            job_id = secrets.token_hex(16)
            path = self.dir / job_id
            try:
                path.mkdir(mode=0o700)
                return job_id, path
            except FileExistsError:
                continue

    def submit(self, job: Job) -> dict:
        with self.cond:
            self.jobs[job.id] = job
            self.waiting.append(job.id)
            job.message = self._queued_message(job.id)
            self._changed(job)
            return self._public(job)

    def get(self, job_id: str) -> dict | None:
        with self.cond:
            job = self.jobs.get(job_id) if JOB_ID.match(job_id or "") else None
            return self._public(job) if job else None

    def list_jobs(self) -> list[dict]:
        with self.cond:
            return [self._public(job) for job in sorted(self.jobs.values(), key=lambda j: j.created, reverse=True)]

    def wait_change(self, job_id: str, seen: int, timeout: float) -> tuple[int, dict | None]:
        """(version, the job's state) once anything changed after version `seen`, or at the timeout."""
        with self.cond:
            self.cond.wait_for(lambda: self.version != seen or self.stopping.is_set(), timeout)
            job = self.jobs.get(job_id)
            return self.version, (self._public(job) if job else None)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop the worker; a running job's runner gets SIGTERM, then its process group SIGKILL."""
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        self.thread.join(STOP_GRACE_S + 3)

    # ---- state ----

    def _position(self, job_id: str) -> int | None:
        """How many jobs are ahead of a queued job (the running one included)."""
        if job_id not in self.waiting:
            return None
        return self.waiting.index(job_id) + (1 if self.running else 0)

    def _queued_message(self, job_id: str) -> str:
        ahead = self._position(job_id) or 0
        return f"queued: {ahead} job{'s' if ahead != 1 else ''} ahead" if ahead else "queued: starting"

    def _public(self, job: Job) -> dict:
        data = asdict(job)
        data["position"] = self._position(job.id)
        data["url"] = f"/jobs/{job.id}"
        data["events"] = f"/api/jobs/{job.id}/events"
        data["files"] = {name: f"/jobs/{job.id}/files/{name}" for name in RESULT_FILES
                         if (self.dir / job.id / name).is_file()}
        return data

    def _changed(self, job: Job | None = None, save: bool = True) -> None:
        """Called with the lock held."""
        for other_id in self.waiting:
            self.jobs[other_id].message = self._queued_message(other_id)
        self.version += 1
        self.cond.notify_all()
        if job is not None and save:
            self._save(job)

    def _save(self, job: Job) -> None:
        path = self.dir / job.id / "job.json"
        try:
            tmp = path.with_name("job.json.tmp")
            tmp.write_text(json.dumps(asdict(job)))
            tmp.replace(path)
        except OSError:
            pass  # the folder may have been removed by hand; the job stays in memory

    def _load(self) -> None:
        """Jobs of earlier runs of the server; those that were not finished are marked failed."""
        for folder in sorted(self.dir.iterdir()) if self.dir.is_dir() else []:
            if not JOB_ID.match(folder.name) or not (folder / "job.json").is_file():
                continue
            try:
                job = Job(**json.loads((folder / "job.json").read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if job.id != folder.name:
                continue
            if job.state not in FINAL:
                job.state, job.message, job.finished = "failed", "the server stopped before this job finished", time.time()
                self._save(job)
            self.jobs[job.id] = job

    # ---- the worker ----

    def _worker(self) -> None:
        while not self.stopping.is_set():
            with self.cond:
                self.cond.wait_for(lambda: self.waiting or self.stopping.is_set(), 1.0)
                if self.stopping.is_set() or not self.waiting:
                    continue
                job = self.jobs[self.waiting.pop(0)]
                self.running = job.id
                job.state, job.started, job.message = "running", time.time(), "starting the graph"
                self._changed(job)
            try:
                self._run(job)
            except Exception as exc:  # the worker must survive whatever one job does
                with self.cond:
                    job.state, job.message, job.finished = "failed", f"internal error: {exc}", time.time()
            finally:
                with self.cond:
                    self.running = None
                    self._changed(job)
        with self.cond:  # jobs still waiting will not run in this server
            for job_id in self.waiting:
                job = self.jobs[job_id]
                job.state, job.message, job.finished = "failed", "the server stopped before this job ran", time.time()
                self._save(job)
            self.waiting.clear()
            self._changed()

    def command(self, job: Job) -> list[str]:
        folder = self.dir / job.id

        def value(path: Path) -> str:  # --set values are read as YAML: a JSON string stays a string
            return json.dumps(str(path))

        return [self.python, "-m", "posegraph", str(PROJECT_ROOT / GRAPHS[job.graph][0]), "--no-live",
                "--set", f"camera.source={value(folder / job.input)}",
                "--set", f"video.path={value(folder / 'annotated.mp4')}",
                "--set", "video.codec=h264",
                "--set", f"records.path={value(folder / 'records.jsonl')}",
                "--metrics", str(folder / "metrics.json")]

    def _run(self, job: Job) -> None:
        folder = self.dir / job.id
        records = folder / "records.jsonl"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(folder / "runner.log", "wb") as log:
            proc = subprocess.Popen(self.command(job), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env, start_new_session=True)
            self.proc = proc
            counter = LineCounter(records)
            try:
                while proc.poll() is None:
                    if self.stopping.wait(self.poll_s):
                        self._kill(proc)
                        break
                    done = counter.count()
                    with self.cond:
                        if done != job.frames_done:
                            job.frames_done = done
                            job.percent = min(99, done * 100 // job.frames_total) if job.frames_total else 0
                            job.message = f"frame {done} of {job.frames_total or '?'}"
                            self._changed(job, save=False)
            finally:
                if proc.poll() is None:
                    self._kill(proc)
                self.proc = None
        done = counter.count()
        warnings, lost = run_warnings(folder / "metrics.json", job.frames_total, done)
        with self.cond:
            job.exit_code, job.finished, job.frames_done = proc.returncode, time.time(), done
            if self.stopping.is_set():
                job.state, job.message = "failed", "the server was stopped while this job ran"
            elif proc.returncode == 0 or (proc.returncode == 1 and lost and not error_lines(folder / "runner.log")):
                # exit code 1 without an error line: the run went to its end but lost frames
                job.state, job.warnings = "done", warnings
                if warnings:
                    job.percent = min(100, done * 100 // job.frames_total) if job.frames_total else 100
                    job.message = "done with warnings: " + "; ".join(warnings)
                else:
                    job.percent, job.message = 100, f"done: {done} frames"
            else:
                job.state, job.message = "failed", last_error(folder / "runner.log", proc.returncode)

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        """SIGTERM to the runner (it drains and stops its nodes), then SIGKILL to what is left."""
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(STOP_GRACE_S)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


class LineCounter:
    """Counts the complete lines of a growing file, reading only what is new."""

    def __init__(self, path: Path):
        self.path, self.offset, self.lines = path, 0, 0

    def count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.lines
        if not data:
            return self.lines
        end = data.rfind(b"\n") + 1
        self.lines += data.count(b"\n", 0, end)
        self.offset += end
        return self.lines


def _log_lines(log: Path) -> list[str]:
    try:
        return [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []


def error_lines(log: Path) -> list[str]:
    """The runner's `error:` lines."""
    return [line for line in _log_lines(log) if line.lower().startswith("error")]


def last_error(log: Path, code: int) -> str:
    """The runner's last `error:` line, else its last line, with the exit code."""
    lines = _log_lines(log)
    errors = [line for line in lines if line.lower().startswith("error")]
    text = (errors or lines or ["no output"])[-1]
    return f"{text[:500]} (runner exit code {code})"


def run_warnings(metrics: Path, frames_total: int, frames_done: int) -> tuple[list[str], int]:
    """What a run warned of, read from its metrics file (the runner's log says it only in
    passing): a source whose file ended early (`capture` counts `truncated`), and nodes
    that lost frames. Also the frames lost in all."""
    try:
        nodes = json.loads(metrics.read_text()).get("nodes") or {}
    except (OSError, ValueError, AttributeError):
        return [], 0
    warnings, lost = [], 0
    for node_id, row in nodes.items():
        if not isinstance(row, dict):
            continue
        if (row.get("counters") or {}).get("truncated"):
            read = row.get("frames_out") or frames_done
            of = f" of {frames_total}" if frames_total else ""
            warnings.append(f"the video ended at frame {read}{of} (the file is truncated or corrupt)")
        if row.get("lost"):
            lost += int(row["lost"])
            warnings.append(f"node '{node_id}' lost {row['lost']} frame(s)")
    return warnings, lost
