"""`runner.py check` and `runner.py draw` through the real command line (a subprocess each)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

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
