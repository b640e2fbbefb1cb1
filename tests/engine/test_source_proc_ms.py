"""A source's `proc ms` is the time it takes to make a frame, not the time it waits for the
next one to be due: a source paced at `fps` sleeps in its process() (synthetic frames, a
file read by `capture`), and the engine times those sleeps apart (posegraph.metrics.Meter)."""
from __future__ import annotations

import pytest

from conftest import ROOT

PACED = """
name: paced
nodes:
  - id: source
    uses: SOURCE
    params: PARAMS
  - id: sink
    uses: null
    inputs: {frame: source/frame}
"""


@pytest.mark.parametrize("kind, params", [
    ("synthetic", "{width: 320, height: 240, count: 30, fps: 20}"),
    ("capture", f"{{source: {ROOT / 'data/google_pose_reference/pose_squats.mp4'}, fps: 20}}"),
], ids=["synthetic", "capture"])
def test_a_source_paced_at_20_fps_shows_its_work_not_its_50_ms_sleep(graph_run, kind, params):
    run = graph_run(PACED.replace("SOURCE", kind).replace("PARAMS", params), "--max-frames", "30")
    assert run.wait(timeout=60) == 0, run.stderr[-2000:]
    source = run.metrics["nodes"]["source"]
    assert source["frames_out"] == 30
    # paced all the same: unpaced, it makes frames hundreds of times faster. Loose bounds, as
    # a busy machine delays the first frame and the pacer then catches up with its schedule
    assert 10 <= source["fps"] <= 30, source
    assert source["proc_ms_p50"] < 15, source  # the sleep is 50 ms a frame
    assert source["proc_ms_p95"] < 40, source


def test_a_consumer_that_sleeps_still_counts_it_as_work(graph_run):
    """Only a source's sleep is its pacing: `passthrough`'s delay_ms stands for work."""
    run = graph_run("""
name: slow
nodes:
  - id: source
    uses: synthetic
    params: {width: 64, height: 48, count: 10}
  - id: hop
    uses: passthrough
    params: {delay_ms: 20}
    inputs: {frame: source/frame}
  - id: sink
    uses: null
    inputs: {frame: hop/frame}
""")
    assert run.wait(timeout=60) == 0, run.stderr[-2000:]
    assert run.metrics["nodes"]["hop"]["proc_ms_p50"] >= 19
