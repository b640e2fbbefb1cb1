"""`runner.py check` and `runner.py draw` through the real command line (a subprocess each)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_graph_validation import MYNODE  # one user node file for both CLI and validation tests

ROOT = Path(__file__).resolve().parents[2]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "runner.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_check_accepts_the_shipped_synthetic_graph():
    result = run_cli("check", "graphs/synthetic.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == "graphs/synthetic.yaml: ok (4 nodes, 4 processes)\n"


def test_check_accepts_a_user_node_file_relative_to_the_graph_file(tmp_path):
    # The node file sits next to the graph, not in the working directory (the project root).
    (tmp_path / "mynode.py").write_text(MYNODE)
    graph = write(tmp_path / "graph.yaml", """
        name: mine
        nodes:
          - id: source
            uses: synthetic
            params: {width: 64, height: 48, count: 5}
          - id: mine
            uses: mynode.py:MyNode
            params: {gain: 2.5}
            replicas: 2
            inputs: {frame: source/frame}
          - id: sink
            uses: null
            inputs: {frame: mine/frame}
        """)
    result = run_cli("check", graph)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == f"{graph}: ok (3 nodes, 4 processes)\n"


def test_check_applies_valid_set_overrides(tmp_path):
    result = run_cli("check", "graphs/synthetic.yaml", "--set", "source.width=320", "--set", "hop1.delay_ms=1")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_of_a_missing_graph_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    result = run_cli("check", missing)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {missing}: graph file not found\n"


def test_draw_writes_a_real_png_of_the_synthetic_graph(tmp_path):
    out = tmp_path / "graph.png"
    result = run_cli("draw", "graphs/synthetic.yaml", "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote {out}\n"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # a drawn picture, not an empty canvas

    import matplotlib.image

    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert 200 <= height <= 4000 and 400 <= width <= 6000
    assert width > height  # four nodes in a row: a wide picture
    assert image[..., :3].min() < 0.5  # something dark (labels, edges) was drawn on the white background


def test_draw_rejects_a_malformed_graph_and_writes_nothing(tmp_path):
    graph = write(tmp_path / "bad.yaml", """
        name: bad
        nodes:
          - id: source
            uses: synthetic
          - id: hop
            uses: pasthrough
            inputs: {frame: source/frame}
        """)
    out = tmp_path / "bad.png"
    result = run_cli("draw", graph, "-o", out)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{graph}:6: node 'hop' field 'uses': unknown kind 'pasthrough' (did you mean 'passthrough'?)" in lines[0]
    assert not out.exists()


# --- malformed graphs through the real command line: `check` and a run refuse them alike ---------

def run_limited(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python runner.py ARGS` with its address space capped at 1 GB: a graph that made the
    loader expand or read without bound fails the test with a MemoryError traceback."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run([sys.executable, "runner.py", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, check=False)


def one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


BILLION_LAUGHS = "name: t\nnodes:\n  - id: source\n    uses: synthetic\n    params:\n" + "".join(
    f"      a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else '"lol"'] * 9) + "]\n" for i in range(9)) + "      width: *a8\n"

MALFORMED = {
    # name: (graph text, files beside it, what the one line says)
    "second_nodes_key": (("name: t\nnodes:\n  - id: source\n    uses: synthetic\n  - id: sink\n    uses: null\n"
                          "    inputs: {frame: source/frame}\nnodes:\n  - id: other\n    uses: synthetic\n"), {},
                         ":8: field 'nodes': 'nodes' is given twice (first on line 2)"),
    "id_with_a_newline": ('name: t\nnodes:\n  - id: "source\\n"\n    uses: synthetic\n', {},
                          r":3: field 'id': id 'source\n' must start with a letter"),
    "billion_laughs": (BILLION_LAUGHS, {}, ":6: YAML anchors and aliases (&name, *name) are not allowed"),
    "nested_20000_deep": ("name: t\nnodes: " + "[" * 20000 + "]" * 20000 + "\n", {}, ":2: YAML nested more than 64 levels deep"),
    "system_exit_at_import": ("name: t\nnodes:\n  - id: source\n    uses: quits.py:Quits\n",
                              {"quits.py": "raise SystemExit(0)\n"},
                              ":4: node 'source' field 'uses': importing 'quits.py' failed: SystemExit: 0"),
    "keyboard_interrupt_at_import": ("name: t\nnodes:\n  - id: source\n    uses: stops.py:Stops\n",
                                     {"stops.py": "raise KeyboardInterrupt\n"},
                                     ":4: node 'source' field 'uses': importing 'stops.py' failed: KeyboardInterrupt"),
    "params_value_not_a_param": (("name: t\nnodes:\n  - id: source\n    uses: synthetic\n  - id: hop\n    uses: mine.py:X\n"
                                  "    inputs: {frame: source/frame}\n"),
                                 {"mine.py": ("from posegraph import Node\n\n\nclass X(Node):\n    INPUTS = {'frame': ''}\n"
                                              "    PARAMS = {'x': 5}\n\n    def process(self, inputs, ctx):\n        return {}\n")},
                                 ":6: node 'hop' field 'uses': class X: param 'x' must be declared as Param(default, ...), got int 5"),
    "nan_param": ("name: t\nnodes:\n  - id: source\n    uses: synthetic\n    params: {fps: .nan}\n", {},
                  ":5: node 'source' field 'params.fps': nan is not a finite number"),
    "two_nodes_on_one_port": (("name: t\ntransport: tcp\nnodes:\n  - id: source\n    uses: synthetic\n    port: 6000\n"
                               "  - id: sink\n    uses: null\n    port: 6000\n    inputs: {frame: source/frame}\n"), {},
                              ":9: node 'sink' field 'port': replica 0 would bind tcp port 6000, which node 'source' binds too"),
}


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_graph_is_one_line_and_exit_2_for_check_and_run(tmp_path, name, command):
    text, files, expected = MALFORMED[name]
    for file_name, code in files.items():
        (tmp_path / file_name).write_text(code)
    graph = tmp_path / "graph.yaml"
    graph.write_text(text)
    args = ["check", graph] if command == "check" else [graph, "--no-live", "--max-frames", "1"]
    line = one_line_exit_2(run_limited(*args))
    assert line.startswith(f"error: {graph}{expected}"), line


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_fifo_as_the_graph_is_refused_without_blocking(tmp_path, command):
    import os

    fifo = tmp_path / "graph.yaml"
    os.mkfifo(fifo)  # nobody writes: reading it would block for ever
    args = ["check", fifo] if command == "check" else [fifo, "--no-live"]
    line = one_line_exit_2(run_limited(*args, timeout=60))
    assert line == f"error: {fifo}: cannot read graph file: it is a FIFO, not a regular file"


def test_check_of_dev_zero_is_refused_before_reading():
    line = one_line_exit_2(run_limited("check", "/dev/zero"))
    assert line == "error: /dev/zero: cannot read graph file: it is a character device, not a regular file"


def test_a_node_file_outside_the_graph_folder_needs_allow_outside(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mynode.py").write_text(MYNODE + "\nopen(__file__ + '.ran', 'w').close()\n")
    graph = write(tmp_path / "graphs" / "graph.yaml", """
        name: mine
        nodes:
          - id: source
            uses: synthetic
          - id: mine
            uses: ../lib/mynode.py:MyNode
            inputs: {frame: source/frame}
        """)
    line = one_line_exit_2(run_limited("check", graph))
    assert line.startswith(f"error: {graph}:6: node 'mine' field 'uses': node file {tmp_path / 'lib' / 'mynode.py'} is outside")
    assert not (tmp_path / "lib" / "mynode.py.ran").exists()  # refused before it ran
    result = run_limited("check", graph, "--allow-outside")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert result.stdout == f"{graph}: ok (2 nodes, 2 processes)\n"
