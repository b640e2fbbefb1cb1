"""README's "Writing a node" example, run as it is written: its node file and its graph,
taken from README.md between the writing-a-node-example markers, checked and run with the
real runner on the bundled clip, and its video compared with the clip made brighter."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

MARKER = "<!-- writing-a-node-example"
CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"
CLIP_FRAMES = 65


def readme_blocks() -> tuple[str, str]:
    """The ```python and ```yaml blocks between the writing-a-node-example markers."""
    text = (ROOT / "README.md").read_text()
    start = text.find(MARKER)
    assert start >= 0, f"README.md has no {MARKER} marker"
    end = text.find("<!-- writing-a-node-example end -->", start)
    assert end > start, "README.md has no end marker after the writing-a-node-example one"
    code = re.findall(r"```python\n(.*?)```", text[start:end], re.DOTALL)
    graph = re.findall(r"```yaml\n(.*?)```", text[start:end], re.DOTALL)
    assert len(code) == 1 and len(graph) == 1, "expected one python and one yaml block between the markers"
    return code[0], graph[0]


def file_name(block: str) -> str:
    """The file a block says it is, on its first line (`# my_nodes.py`)."""
    first = block.splitlines()[0]
    assert first.startswith("# "), f"the block's first line should name its file: {first!r}"
    return first[2:].strip()


def frames_of(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example written out as the README names its files, checked, then run."""
    folder = tmp_path_factory.mktemp("readme_node")
    code, graph = readme_blocks()
    (folder / file_name(code)).write_text(code)
    graph_file = folder / file_name(graph)
    graph_file.write_text(graph)
    # run from the folder holding both, as the README says; the clip path is then the bundled one
    checked = subprocess.run([sys.executable, str(ROOT / "runner.py"), "check", graph_file.name], cwd=folder,
                             capture_output=True, text=True, timeout=120)
    ran = subprocess.run([sys.executable, str(ROOT / "runner.py"), graph_file.name, "--no-live"], cwd=folder,
                         capture_output=True, text=True, timeout=300)
    return folder, checked, ran


def test_the_readme_example_checks_without_a_warning(example):
    _, checked, _ = example
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""  # its declared port types match capture's frame packet
    assert "ok (3 nodes, 3 processes)" in checked.stdout


def test_the_readme_example_runs_on_the_bundled_clip_and_writes_brighter_frames(example):
    folder, _, ran = example
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "Traceback" not in ran.stderr and "error" not in ran.stderr.lower(), ran.stderr[-3000:]
    out = folder / "out" / "brighter.mp4"
    assert out.is_file(), f"no {out}: {ran.stderr[-2000:]}"
    written, source = frames_of(out), frames_of(CLIP)
    assert len(source) == CLIP_FRAMES and len(written) == CLIP_FRAMES  # every frame, once
    assert written[0].shape == source[0].shape
    gain = 1.5  # the graph block's param
    table = np.clip(np.arange(256) * gain, 0, 255).astype(np.uint8)
    for i, (got, clip) in enumerate(zip(written, source)):
        expected = table[clip]
        assert got.mean() > clip.mean() + 10, f"frame {i} is not brighter"
        # H.264 is lossy: each frame's mean within 2 levels, pixels within a few on average
        assert abs(float(got.mean()) - float(expected.mean())) < 2.0, i
        assert np.abs(got.astype(np.int16) - expected).mean() < 4.0, i
