"""`draw` fits the whole graph in its picture: every node's box, and its text inside the box,
lies within the PNG with a margin, no two boxes overlap, and the picture's border rows and
columns are background, for every bundled graph and for graphs made to be awkward (a
column of many nodes, long names, a title wider than the graph)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT


def load(path: Path):
    from posegraph.spec import build_spec, load_yaml

    doc = load_yaml(path.read_text())
    doc.pop("security", None)  # spread.yaml's keys are made by `runner.py keys`; the drawing does not need them
    return build_spec(doc, str(path), path.parent, [])


def assert_fits(spec, out: Path) -> None:
    import matplotlib.image

    from posegraph.draw import draw_graph

    drawing = draw_graph(spec, str(out))
    image = matplotlib.image.imread(out)
    height, width = image.shape[:2]
    assert (drawing.width, drawing.height) == (width, height)
    assert set(drawing.boxes) == set(spec.nodes)
    for node_id, (left, top, right, bottom) in drawing.boxes.items():
        assert 5 <= left < right <= width - 5 and 5 <= top < bottom <= height - 5, (node_id, drawing.boxes[node_id], width, height)
        tl, tt, tr, tb = drawing.texts[node_id]
        assert left <= tl and tr <= right and top <= tt and tb <= bottom, (node_id, "text outside its box")
    boxes = list(drawing.boxes.items())
    for i, (a, (al, at, ar, ab)) in enumerate(boxes):
        for b, (bl, bt, br, bb) in boxes[i + 1:]:
            assert ar <= bl or br <= al or ab <= bt or bb <= at, f"boxes of {a} and {b} overlap"
    rgb = image[..., :3]
    border = np.concatenate([rgb[:3].reshape(-1, 3), rgb[-3:].reshape(-1, 3), rgb[:, :3].reshape(-1, 3), rgb[:, -3:].reshape(-1, 3)])
    assert border.min() > 0.99, "something was drawn on the picture's edge"
    assert rgb.min() < 0.5  # and something dark (text, edges) inside


@pytest.mark.parametrize("path", sorted((ROOT / "graphs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_graph_fits_its_picture(path, tmp_path):
    assert_fits(load(path), tmp_path / f"{path.stem}.png")


def test_an_awkward_graph_fits_too(tmp_path):
    sources = [f"source_{i}" for i in range(12)]
    long_id = "a_node_with_a_rather_long_identifier_indeed"
    path = tmp_path / "awkward.yaml"
    path.write_text("name: a graph whose name is much much longer than the graph itself is wide, to say the least\n"
                    "nodes:\n"
                    + "".join(f"  - {{id: {s}, uses: synthetic, params: {{count: 1}}}}\n" for s in sources)
                    + f"  - id: {long_id}\n    uses: passthrough\n    replicas: 3\n"
                    + f"    inputs: {{frame: [{', '.join(s + '/frame' for s in sources)}]}}\n"
                    + "    queue: {frame: {size: 2, policy: latest}}\n"
                    + f"  - {{id: sink, uses: null, inputs: {{frame: {long_id}/frame}}}}\n")
    assert_fits(load(path), tmp_path / "awkward.png")


def test_draw_writes_a_picture_through_the_command_line(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "sub" / "demo.png"
    done = subprocess.run([sys.executable, "runner.py", "draw", "graphs/demo.yaml", "-o", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {out}\n"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
