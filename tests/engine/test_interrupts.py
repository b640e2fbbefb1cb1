"""Stopping a run at any moment, and what a killed runner leaves behind.

Real runners (`python runner.py GRAPH`) in their own session, signalled as a terminal
does: Ctrl-C goes to the runner's whole process group. At every moment (Python still
importing, the graph being loaded, nodes opening, the run, the clean-up, twice, SIGTERM)
the runner says one line, exits 0 (README, "Running": a stop asked for) within 5 s, and
leaves no process, run folder or shared memory behind. Each runner gets its own TMPDIR, so
its run folders are known.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SUPPORT, processes_with

SHM = Path("/dev/shm")
ENDLESS = """
name: endless
nodes:
  - id: source
    uses: synthetic
    params: {width: 320, height: 240, count: COUNT, fps: 60}
  - id: hop
    uses: passthrough
    inputs: {frame: source/frame}
  - id: sink
    uses: null
    params: {record: TMP/sink.jsonl}
    inputs: {frame: hop/frame}
"""


class Runner:
    """`python runner.py GRAPH --no-live` with its own TMPDIR, in a session of its own."""

    def __init__(self, folder: Path, graph_text: str, *args: str):
        self.dir = folder
        self.tmp = folder / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        graph = folder / "graph.yaml"
        graph.write_text(graph_text.replace("TESTS", str(SUPPORT)).replace("TMP", str(folder)))
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), str(graph), "--no-live", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, TMPDIR=str(self.tmp)), start_new_session=True)
        self.started = time.monotonic()
        self.run_ids: set[str] = set()
        self.stderr = ""

    def note_run_ids(self) -> None:
        """The run ids whose shared-memory owner file names this runner."""
        for owner in SHM.glob("pg-*.owner"):
            try:
                if owner.read_text().split()[0] == str(self.proc.pid):
                    self.run_ids.add(owner.name[3:-len(".owner")])
            except (OSError, IndexError):
                pass

    def ctrl_c(self, sig=signal.SIGINT) -> None:
        """As a terminal's Ctrl-C: to every process of the runner's foreground group."""
        self.note_run_ids()
        os.killpg(self.proc.pid, sig)

    def lines(self) -> int:
        path = self.dir / "sink.jsonl"
        return path.read_bytes().count(b"\n") if path.exists() else 0

    def wait_until(self, condition, timeout=60) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.note_run_ids()
            assert self.proc.poll() is None, f"the runner ended early: {self.proc.communicate()}"
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.01)

    def workers(self) -> list[int]:
        return processes_with(str(self.tmp))

    def run_dirs(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if p.name.startswith("pg-"))

    def wait(self, timeout=30) -> int:
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def runners(tmp_path):
    made = []

    def start(graph_text, *args, name="run"):
        runner = Runner(tmp_path / name, graph_text, *args)
        made.append(runner)
        return runner

    yield start
    for runner in made:
        runner.kill()


def assert_stopped_cleanly(runner: Runner, signalled_at: float, message: str) -> None:
    code = runner.wait()
    took = time.monotonic() - signalled_at
    assert code == 0, runner.stderr
    assert "Traceback" not in runner.stderr and "KeyboardInterrupt" not in runner.stderr, runner.stderr
    assert [line for line in runner.stderr.splitlines() if line.startswith(message)], runner.stderr
    assert took < 5.0, f"the stop took {took:.1f} s"
    assert runner.workers() == [], "a node process outlived the runner"
    assert runner.run_dirs() == [], "the run folder was left behind"
    left = [p.name for run_id in runner.run_ids for p in SHM.glob(f"pg-{run_id}*")]
    assert left == [], f"shared memory left behind: {left}"


@pytest.mark.parametrize("moment", [0.1, 0.3], ids=["at-0.1s", "at-0.3s"])
def test_ctrl_c_while_the_runner_starts_says_one_line(runners, moment):
    runner = runners(ENDLESS.replace("COUNT", "0"))
    time.sleep(max(0.0, runner.started + moment - time.monotonic()))
    signalled = time.monotonic()
    runner.ctrl_c()
    assert_stopped_cleanly(runner, signalled, "stopped (SIGINT)")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_nodes_open_kills_them_at_once(runners, sig):
    """The node processes exist but not every node is open: nothing ran, nothing to drain."""
    runner = runners(ENDLESS.replace("COUNT", "0"))
    runner.wait_until(lambda: runner.workers())
    signalled = time.monotonic()
    runner.ctrl_c(sig)
    assert_stopped_cleanly(runner, signalled, f"stopped ({sig.name}) before the graph started")


def test_a_stop_while_the_pose_model_loads_is_quick(runners):
    """The demo graph's pose node takes seconds to open; a stop then used to wait out the
    whole drain (4.6 s of the promised 5) for sources that never started."""
    runner = runners((ROOT / "graphs" / "demo.yaml").read_text().replace("out/demo", str(Path("TMP") / "demo")))
    runner.wait_until(lambda: any(b"pose.0.json" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in runner.workers()))
    signalled = time.monotonic()
    runner.ctrl_c()
    assert_stopped_cleanly(runner, signalled, "stopped (SIGINT) before the graph started")
    assert time.monotonic() - signalled < 3.0


def test_ctrl_c_during_the_run_drains_and_says_one_line(runners):
    runner = runners(ENDLESS.replace("COUNT", "0"))
    runner.wait_until(lambda: runner.lines() >= 20)
    signalled = time.monotonic()
    runner.ctrl_c()
    assert_stopped_cleanly(runner, signalled, "stopping (SIGINT): the sources stop and the graph drains")
    records = (runner.dir / "sink.jsonl").read_text().splitlines()
    assert len(records) >= 20


def test_ctrl_c_twice_stops_at_once(runners):
    """The sink takes 0.3 s a frame, so the drain would take seconds: the second Ctrl-C
    comes during it."""
    runner = runners(ENDLESS.replace("COUNT", "0").replace("{record: TMP/sink.jsonl}", "{record: TMP/sink.jsonl, delay_ms: 300}"))
    runner.wait_until(lambda: runner.lines() >= 5)
    signalled = time.monotonic()
    runner.ctrl_c()
    time.sleep(0.05)
    runner.ctrl_c()
    assert_stopped_cleanly(runner, signalled, "stopping at once (interrupted again)")


def test_ctrl_c_again_and_again_through_the_clean_up(runners):
    """A finite run near its end is interrupted every 30 ms until the runner has gone:
    through the drain, the kill and the clean-up, never a traceback, never a pool left."""
    runner = runners(ENDLESS.replace("COUNT", "150"))
    runner.wait_until(lambda: runner.lines() >= 140)
    signalled = time.monotonic()
    while runner.proc.poll() is None and time.monotonic() - signalled < 10:
        try:
            runner.ctrl_c()
        except ProcessLookupError:
            break
        time.sleep(0.03)
    assert_stopped_cleanly(runner, signalled, "stop")


def later_run(tmp_path: Path, tmpdir: Path) -> subprocess.CompletedProcess:
    """A short run to its end with TMPDIR `tmpdir`."""
    graph = tmp_path / "later.yaml"
    graph.write_text(ENDLESS.replace("COUNT", "30").replace("TMP", str(tmp_path)))
    return subprocess.run([sys.executable, str(ROOT / "runner.py"), str(graph), "--no-live"], cwd=ROOT,
                          env=dict(os.environ, TMPDIR=str(tmpdir)), capture_output=True, text=True, timeout=60)


def test_a_later_run_removes_what_a_killed_runner_left_behind_but_not_a_live_ones(runners, tmp_path):
    killed = runners(ENDLESS.replace("COUNT", "0"), name="killed")
    live = runners(ENDLESS.replace("COUNT", "0"), name="live")
    for runner in (killed, live):
        runner.wait_until(lambda: runner.lines() >= 10)
    children = killed.workers()
    os.kill(killed.proc.pid, signal.SIGKILL)
    for pid in children:  # they would also die with their runner (PR_SET_PDEATHSIG)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed.wait()
    left = killed.run_dirs()
    assert len(left) == 1 and len(list((killed.tmp / left[0]).iterdir())) > 5, "nothing was left to clean"
    assert [p for run_id in killed.run_ids for p in SHM.glob(f"pg-{run_id}*")], "no pool was left to clean"
    live_dir = live.run_dirs()

    # a later run with the killed one's TMPDIR, then one with the live one's
    first = later_run(tmp_path, killed.tmp)
    assert first.returncode == 0, first.stderr
    assert killed.run_dirs() == [], "the killed runner's run folder is still there"
    assert [p.name for run_id in killed.run_ids for p in SHM.glob(f"pg-{run_id}*")] == []

    second = later_run(tmp_path, live.tmp)
    assert second.returncode == 0, second.stderr
    assert live.run_dirs() == live_dir, "a live runner's run folder was removed"
    before = live.lines()
    live.wait_until(lambda: live.lines() > before + 10)  # and it goes on
    signalled = time.monotonic()
    live.ctrl_c()
    assert_stopped_cleanly(live, signalled, "stopping (SIGINT)")
