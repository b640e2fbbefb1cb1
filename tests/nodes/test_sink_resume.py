"""Sinks killed mid-stream and restarted resume their files in place: `video`, `images` and
`jsonl` each hold every frame once and in order, and what a sink could not keep is counted
as `lost`, which ends the run with a warning and exit code 1.

Real runs of the real clip through `capture`, each node its own process; a sink is killed
with SIGKILL while frames flow. sink_test_nodes.py:Stamp marks every frame with its seq, so
the frames read back from the files say which they are.
"""
import json
import os
import signal
import time

import cv2
import numpy as np

from conftest import ROOT
from sink_test_nodes import stamp_of

from posegraph.testing import NodeHarness

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"  # 65 frames, 720x1280
FRAMES = 65

GRAPH = f"""
name: sink-resume
nodes:
  - id: camera
    uses: capture
    params: {{source: {CLIP}, fps: 12}}
  - id: stamp
    uses: TESTS/sink_test_nodes.py:Stamp
    inputs: {{frame: camera/frame}}
  - id: video
    uses: video
    params: {{path: TMP/out/clip.mp4}}
    inputs: {{frame: stamp/frame}}
  - id: images
    uses: images
    params: {{path: TMP/out/frames, pattern: "{{seq:06d}}.jpg"}}
    inputs: {{frame: stamp/frame}}
  - id: records
    uses: jsonl
    params: {{path: TMP/out/records.jsonl}}
    inputs: {{frame: camera/frame}}
"""


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def wait_for_lines(run, count, name="out/records.jsonl"):
    path = run.dir / name
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        assert run.proc.poll() is None, f"the runner ended early: {run.proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} records after 60 s")


def kill(run, instance):
    pid, _ = run.worker_pid(instance)
    os.kill(pid, signal.SIGKILL)


def test_sinks_killed_mid_stream_keep_every_frame_once_and_in_order(graph_run):
    run = graph_run(GRAPH)
    for lines, instance in ((15, "video.0"), (30, "images.0"), (45, "records.0")):
        wait_for_lines(run, lines)
        kill(run, instance)
    assert run.wait(timeout=120) == 0, run.stderr
    for node in ("video", "images", "records"):
        assert f"node '{node}' died (killed by SIGKILL); restarting (1/3)" in run.stderr
    assert "lost" not in run.stderr, run.stderr
    assert "[video.0] resuming" in run.stderr and f"wrote {FRAMES} frames" in run.stderr
    nodes = run.metrics["nodes"]
    assert {n: (nodes[n]["restarts"], nodes[n]["lost"]) for n in ("video", "images", "records")} == \
        dict.fromkeys(("video", "images", "records"), (1, 0))

    out = run.dir / "out"
    frames = read_video(out / "clip.mp4")
    assert [stamp_of(f) for f in frames] == list(range(FRAMES))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".journal")], "the journal outlived the finished video"
    names = sorted(p.name for p in (out / "frames").iterdir())
    assert names == [f"{seq:06d}.jpg" for seq in range(FRAMES)]
    assert [stamp_of(cv2.imread(str(out / "frames" / name))) for name in names] == list(range(FRAMES))
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(FRAMES))


def test_what_a_restarted_sink_cannot_recover_is_lost_and_the_run_says_so(graph_run):
    """The video's journal and the records file are removed while their sinks run, then
    the sinks are killed: the restarted ones cannot have the earlier frames back. Each
    counts them as lost, and the run ends with a warning line per node and exit code 1."""
    run = graph_run(GRAPH)
    wait_for_lines(run, 20)
    (run.dir / "out" / ".clip.mp4.journal").unlink()
    kill(run, "video.0")
    wait_for_lines(run, 35)
    (run.dir / "out" / "records.jsonl").unlink()
    kill(run, "records.0")
    assert run.wait(timeout=120) == 1, run.stderr
    nodes = run.metrics["nodes"]
    assert nodes["video"]["lost"] > 0 and nodes["records"]["lost"] > 0 and nodes["images"]["lost"] == 0
    warnings = [line for line in run.stderr.strip().splitlines()[-8:] if line.startswith("warning: node ")]
    assert warnings == [f"warning: node '{n}' lost {nodes[n]['lost']} frame(s): its output lacks them (see its warnings "
                        "above); exit code 1" for n in ("video", "records")]  # at the end, with the outputs written
    frames = read_video(run.dir / "out" / "clip.mp4")
    assert len(frames) + nodes["video"]["lost"] == FRAMES  # the frames after the restart, each once
    assert [stamp_of(f) for f in frames] == list(range(nodes["video"]["lost"], FRAMES))
    records = [json.loads(line) for line in (run.dir / "out" / "records.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(nodes["records"]["lost"], FRAMES))


def test_a_torn_journal_record_is_cut_and_frames_already_kept_are_not_written_twice(tmp_path):
    """A writer killed in the middle of a journal record: the record is cut off, and the
    frames the journal kept are taken as written (sent again, they are skipped)."""
    from posegraph.pose.media import ResumableVideo, VideoJournal

    path = str(tmp_path / "v.avi")
    images = [np.full((64, 96, 3), 20 * i, np.uint8) for i in range(8)]
    first = ResumableVideo(path, "MJPG", 10.0, print, stream=0, seq=0, owner="runner-a")
    for seq in range(5):
        first.add(seq, images[seq], 100.0 * seq)
    first.journal.close()  # killed: the video is never finished
    journal = VideoJournal(path).path
    with open(journal, "ab") as f:
        f.write(VideoJournal.RECORD.pack(b"FRM1", 5, 500.0, 1000) + b"\0" * 10)  # torn

    second = ResumableVideo(path, "MJPG", 10.0, print, stream=0, seq=4, owner="runner-b")
    assert (second.kept, second.last, second.lost) == (5, 4, 0)
    assert second.add(4, images[4], 400.0) is None  # sent again: already in the file
    for seq in range(5, 8):
        assert second.add(seq, images[seq], 100.0 * seq) is False
    second.close()
    frames = read_video(path)
    assert [round(float(f.mean()) / 20) for f in frames] == list(range(8))
    assert not os.path.exists(journal)


def test_an_image_the_folder_sink_cannot_write_counts_as_lost(tmp_path):
    from posegraph.nodes.sinks import ImageFolder

    with NodeHarness(ImageFolder, {"path": str(tmp_path / "f"), "pattern": "{seq}.png"}) as node:
        node.process({"frame": np.zeros((4, 4, 3), np.uint8)}, seq=0)
        node.process({"frame": np.zeros((4, 4, 3), np.float32)}, seq=1)
        node.process({"frame": None}, seq=2)
        counters = dict(node.counters)
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["0.png"]
    assert counters == {"bad_frames": 1, "lost": 1, "empty_frames": 1}


def test_a_video_without_a_journal_keeps_no_copy_and_a_restart_counts_what_it_lost(graph_run):
    """`journal: false` (a long live recording would fill the disk with the journal): no
    file beside the video, and a restarted sink starts the file again, counting the
    frames before as lost (exit code 1), so nothing is lost silently."""
    run = graph_run(GRAPH.replace("params: {path: TMP/out/clip.mp4}", "params: {path: TMP/out/clip.mp4, journal: false}"))
    wait_for_lines(run, 20)
    assert not (run.dir / "out" / ".clip.mp4.journal").exists()
    kill(run, "video.0")
    assert run.wait(timeout=120) == 1, run.stderr
    lost = run.metrics["nodes"]["video"]["lost"]
    frames = read_video(run.dir / "out" / "clip.mp4")
    assert lost > 0 and len(frames) + lost == FRAMES
    assert [stamp_of(f) for f in frames] == list(range(lost, FRAMES))
