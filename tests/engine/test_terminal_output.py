"""What a run shows: the node processes' output read by the runner (prefixed, native noise
left out, or to out/<graph>.log with -q), records on stdout untouched, the live table in
a tmux-like terminal (a pty with TERM=screen, replayed by a small terminal emulator), no
table after an error at open, the outputs and the status last. Real runs of
graphs/demo.yaml and of small synthetic graphs."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import fcntl
import time
from pathlib import Path

import pytest

from conftest import ROOT

CLIP = ROOT / "data/google_pose_reference/pose_squats.mp4"
NOISE_SEEN = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
              "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
              "W0000 00:00:1796644948.054481   17249 inference_feedback_manager.cc:114] Feedback manager requires a model "
              "with a single signature inference. Disabling support for feedback tensors.")
WROTE = re.compile(r"^\[video\.0\] wrote 65 frames \(720x1280, 5 fps\) to (\S+)$")


def runner(*args, cwd=ROOT, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "runner.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def demo_outputs(tmp: Path) -> list[str]:
    return ["--set", f"video.path={tmp / 'demo.mp4'}", "--set", f"records.path={tmp / 'demo.jsonl'}"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """graphs/demo.yaml without a terminal, its records on stdout."""
    tmp = tmp_path_factory.mktemp("demo")
    done = runner("graphs/demo.yaml", "--no-live", "--metrics", tmp / "metrics.json", "--set", f"video.path={tmp / 'demo.mp4'}",
                  "--set", "records.path=-")
    assert done.returncode == 0, done.stderr[-3000:]
    return done, tmp


def test_records_on_stdout_pass_through_unprefixed(demo):
    done, _ = demo
    lines = done.stdout.splitlines()
    assert len(lines) == 65, done.stdout[:500]
    assert [json.loads(line)["seq"] for line in lines] == list(range(65))


def test_the_outputs_are_said_last_after_the_table(demo):
    done, tmp = demo
    lines = done.stderr.splitlines()
    assert WROTE.match(lines[-1]) and WROTE.match(lines[-1]).group(1) == str(tmp / "demo.mp4"), lines[-3:]
    assert lines[-2].startswith("status: smooth "), lines[-3:]  # the answer as it stood, between the table and the outputs
    assert lines[-3].startswith("└"), lines[-3:]  # the bottom of the final table


LOUD_NODE = '''
import os
from posegraph import Node, Param

NOISE = NOISE_LINES

class Loud(Node):
    INPUTS = {"frame": "any"}
    OUTPUTS = {"frame": "the same"}
    PARAMS = {"lines": Param(0, min=0), "talk_every": Param(0, min=0)}

    def open(self, ctx):  # straight to file descriptor 2, as a native library writes
        os.write(2, "".join(line + "\\n" for line in NOISE).encode())
        os.write(2, b"a line of its own\\n")
        for start in range(0, self.params["lines"], 1000):
            os.write(2, b"".join(b"line %d of a node that says a lot\\n" % i
                                 for i in range(start, min(start + 1000, self.params["lines"]))))
        os.write(2, b"and a last line without its newline")

    def process(self, inputs, ctx):
        if self.params["talk_every"] and ctx.seq % self.params["talk_every"] == 0:
            os.write(2, b"frame %d\\n" % ctx.seq)  # while the live table is up
        ctx.status(f"seen {ctx.seq + 1}")
        return {"frame": inputs["frame"]}
'''
LOUD_GRAPH = """
name: loud
nodes:
  - id: source
    uses: synthetic
    params: {width: 64, height: 48, count: COUNT, fps: FPS}
  - id: loud
    uses: loud.py:Loud
    params: {lines: LINES}
    inputs: {frame: source/frame}
  - id: sink
    uses: null
    inputs: {frame: loud/frame}
"""


def loud_graph(tmp_path: Path, lines: int = 0, count: int = 5, fps: int = 0, talk_every: int = 0) -> Path:
    """synthetic -> loud -> null; `loud` writes the native noise of NOISE_SEEN, "a line of
    its own" and `lines` numbered lines to its file descriptor 2 as it opens, "frame N"
    every `talk_every` frames, and says "seen N" as its status."""
    (tmp_path / "loud.py").write_text(LOUD_NODE.replace("NOISE_LINES", repr(NOISE_SEEN)))
    graph = tmp_path / "loud.yaml"
    graph.write_text(LOUD_GRAPH.replace("COUNT", str(count)).replace("FPS", str(fps)).replace("LINES", str(lines))
                     .replace("{lines:", f"{{talk_every: {talk_every}, lines:"))
    return graph


def test_native_noise_is_left_out_and_node_lines_are_prefixed(tmp_path):
    done = runner(loud_graph(tmp_path), "--no-live")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[loud.0] a line of its own" in done.stderr.splitlines()
    for noise in NOISE_SEEN:
        assert noise not in done.stderr, done.stderr


def test_verbose_shows_the_native_lines_with_their_node(tmp_path):
    done = runner("-v", loud_graph(tmp_path), "--no-live")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert [f"[loud.0] {noise}" in lines for noise in NOISE_SEEN] == [True] * len(NOISE_SEEN), done.stderr


def test_quiet_says_only_errors_and_the_end_and_logs_the_rest_to_out_graph_log(tmp_path):
    done = runner("-q", loud_graph(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == ""
    assert done.stderr == "status: loud seen 5\n"
    log = (tmp_path / "out" / "loud.log").read_text().splitlines()
    assert [f"[loud.0] {noise}" in log for noise in NOISE_SEEN] == [True] * len(NOISE_SEEN)  # everything, noise too
    assert "[loud.0] a line of its own" in log and "graph 'loud' running: 3 processes" in log
    failed = runner("-q", loud_graph(tmp_path), "--set", "loud.lines=-1", cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ")


def test_a_node_writing_a_lot_neither_blocks_nor_loses_a_line(tmp_path):
    lines = 40000  # about 1.4 MB, twenty times what a pipe holds
    started = time.monotonic()
    done = runner(loud_graph(tmp_path, lines), "--no-live", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("[loud.0] ")]
    assert said[0] == "[loud.0] a line of its own"
    said = said[1:]
    assert said[:lines] == [f"[loud.0] line {i} of a node that says a lot" for i in range(lines)]
    assert said[lines:] == ["[loud.0] and a last line without its newline"]
    assert time.monotonic() - started < 30


# ----- a terminal ------------------------------------------------------------------------------------
class Screen:
    """Just enough of a VT100 to replay what rich's live display writes: printable text,
    CR, LF (scrolling into the scrollback at the bottom), cursor up/down/column, erase in
    line and display. As in tmux, the cursor cannot go above the top of the screen: a
    display that loses count of its lines leaves stale copies behind in the scrollback."""

    CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\x1b\][^\x07]*\x07")

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        self.lines = [[" "] * cols for _ in range(rows)]
        self.scrollback: list[str] = []
        self.r = self.c = 0
        self.wrap = False

    def _newline(self) -> None:
        if self.r == self.rows - 1:
            self.scrollback.append("".join(self.lines.pop(0)).rstrip())
            self.lines.append([" "] * self.cols)
        else:
            self.r += 1

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            m = self.CONTROL.match(text, i)
            if m:
                i = m.end()
                if m.group(2) and not m.group(1).startswith("?"):
                    self._csi([int(x) for x in m.group(1).split(";") if x], m.group(2))
                continue
            ch, i = text[i], i + 1
            if ch == "\r":
                self.c, self.wrap = 0, False
            elif ch == "\n":
                self._newline()
                self.wrap = False
            elif ch >= " ":
                if self.wrap:
                    self.c, self.wrap = 0, False
                    self._newline()
                self.lines[self.r][self.c] = ch
                if self.c == self.cols - 1:
                    self.wrap = True
                else:
                    self.c += 1

    def _csi(self, nums: list[int], cmd: str) -> None:
        n = (nums[0] if nums else 0) or 1
        self.wrap = False
        if cmd == "A":
            self.r = max(0, self.r - n)
        elif cmd == "B":
            self.r = min(self.rows - 1, self.r + n)
        elif cmd == "G":
            self.c = min(self.cols - 1, n - 1)
        elif cmd == "K":
            mode = nums[0] if nums else 0
            span = range(self.c, self.cols) if mode == 0 else range(0, self.c + 1) if mode == 1 else range(self.cols)
            for k in span:
                self.lines[self.r][k] = " "
        elif cmd == "J" and (nums[0] if nums else 0) == 0:
            self._csi([0], "K")
            for k in range(self.r + 1, self.rows):
                self.lines[k] = [" "] * self.cols

    def text(self) -> list[str]:
        screen = ["".join(line).rstrip() for line in self.lines]
        while screen and not screen[-1]:
            screen.pop()
        return self.scrollback + screen


def in_a_terminal(args, rows: int = 30, cols: int = 100, cwd=ROOT, timeout: float = 120) -> tuple[int, list[str]]:
    """Run the runner in a pty of rows x cols with TERM=screen (tmux's): (exit code, every
    line the terminal ends with, scrollback first)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"TERM": "screen"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), *map(str, args)], cwd=cwd, stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    data = read_pty(master, proc, timeout)
    screen = Screen(rows, cols)
    screen.feed(data.decode("utf-8", "replace"))
    return proc.wait(timeout=10), screen.text()


def read_pty(master: int, proc, timeout: float) -> bytes:
    """Everything `proc` writes to the pty whose master end is `master`, until it exits
    (or `timeout`); closes `master` and kills `proc` if it is still running."""
    data, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the last end of the pty closed
                    break
                if not chunk:
                    break
                data += chunk
            elif proc.poll() is not None and not select.select([master], [], [], 0.3)[0]:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return data


def test_the_live_table_in_a_tmux_terminal_is_drawn_once_with_the_outputs_below(tmp_path):
    code, lines = in_a_terminal([ROOT / "graphs/demo.yaml", "--set", f"camera.source={CLIP}", "--set", "video.path=demo.mp4",
                                 "--set", "records.path=demo.jsonl"], rows=30, cols=100, cwd=tmp_path)
    assert code == 0, "\n".join(lines)
    headers = [line for line in lines if "┃ node" in line]
    assert len(headers) == 1, "\n".join(lines)  # no stale copies of the table piled up
    assert WROTE.match(lines[-1]), "\n".join(lines)
    assert lines[-2].startswith("status: "), "\n".join(lines)
    assert lines[-3].startswith("└"), "\n".join(lines)
    assert max(len(line) for line in lines) <= 100


def test_a_narrow_terminal_gets_a_table_that_fits():
    code, lines = in_a_terminal(["graphs/synthetic.yaml", "--set", "source.count=30"], rows=20, cols=60)
    assert code == 0, "\n".join(lines)
    header = next(line for line in lines if "┃ node" in line)
    assert "fps" in header and "proc ms" in header and "…" not in "".join(lines), "\n".join(lines)
    assert max(len(line) for line in lines) <= 60


def test_an_error_at_open_shows_the_error_and_no_table(tmp_path):
    code, lines = in_a_terminal(["graphs/demo.yaml", "--set", "camera.source=nowhere.mp4", *demo_outputs(tmp_path)])
    assert code == 1
    assert lines == ["error: node 'camera' field 'params.source': no such file or folder: 'nowhere.mp4'"], "\n".join(lines)


def test_lines_written_while_the_table_is_up_go_above_it_and_the_status_is_a_column(tmp_path):
    code, lines = in_a_terminal([loud_graph(tmp_path, count=40, fps=20, talk_every=10)], rows=30, cols=120)
    assert code == 0, "\n".join(lines)
    headers = [i for i, line in enumerate(lines) if "┃ node" in line]
    assert len(headers) == 1, "\n".join(lines)  # the lines did not tear through the table
    said = [line for line in lines if line.startswith("[loud.0] ")]
    assert said[-3:] == [f"[loud.0] frame {n}" for n in (10, 20, 30)], "\n".join(lines)
    assert lines.index(said[-1]) < headers[0]
    assert not any(noise in line for line in lines for noise in NOISE_SEEN), "\n".join(lines)
    header = lines[headers[0]]
    assert header.rstrip("┃ ").endswith("status"), header
    row = next(line for line in lines if line.startswith("│ loud"))
    assert "seen 40" in row, row
    assert lines[-1] == "status: loud seen 40", "\n".join(lines)
