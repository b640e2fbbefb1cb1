"""The capture node on real video: files, folders, resizing, flipping, skipping, looping,
and the one-line errors for sources that cannot be read."""
import json

import cv2
import numpy as np
import pytest

from conftest import ROOT

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"  # 65 frames, 720x1280, 5 fps

GRAPH = """
name: capture-test
nodes:
  - id: camera
    uses: capture
    params: {params}
  - id: probe
    uses: TESTS/capture_test_nodes.py:FrameProbe
    params: {{record: TMP/frames.jsonl}}
    inputs: {{frame: camera/frame}}
"""


def run_capture(graph_run, params, *args):
    run = graph_run(GRAPH.format(params=json.dumps(params)), *args)
    code = run.wait()
    return run, code, run.records("frames.jsonl")


def clip_frames():
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def halves(image):
    w = image.shape[1] // 2
    return int(image[:, :w].astype(np.int64).sum()), int(image[:, w:].astype(np.int64).sum())


def test_a_file_gives_every_frame_in_order_with_its_timestamps(graph_run):
    run, code, frames = run_capture(graph_run, {"source": str(CLIP)})
    assert code == 0, run.stderr
    assert [f["index"] for f in frames] == list(range(65))
    assert [f["pts_ms"] for f in frames] == pytest.approx([i * 200.0 for i in range(65)])  # 5 fps
    assert all(f["shape"] == [1280, 720, 3] for f in frames)
    reference = clip_frames()
    assert [(f["left"], f["right"]) for f in frames] == [halves(r) for r in reference]


def test_resize_flip_and_skip_change_the_frames_as_asked(graph_run):
    run, code, frames = run_capture(graph_run, {"source": str(CLIP), "width": 360, "flip": True, "skip": 2})
    assert code == 0, run.stderr
    assert [f["index"] for f in frames] == list(range(0, 65, 3))
    assert all(f["shape"] == [640, 360, 3] for f in frames)
    reference = clip_frames()
    for f in frames[:5]:
        expected = cv2.flip(cv2.resize(reference[f["index"]], (360, 640), interpolation=cv2.INTER_AREA), 1)
        assert (f["left"], f["right"]) == halves(expected)


def test_loop_starts_the_file_again_with_timestamps_that_keep_rising(graph_run):
    run, code, frames = run_capture(graph_run, {"source": str(CLIP), "loop": True}, "--max-frames", "150")
    assert code == 0, run.stderr
    assert [f["index"] for f in frames] == [i % 65 for i in range(150)]
    pts = [f["pts_ms"] for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:]))


def test_a_folder_of_images_is_read_in_name_order_and_unreadable_files_are_skipped(graph_run, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    reference = clip_frames()
    for i in range(5):
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), reference[i * 10])
    (folder / "img_02b.png").write_bytes(b"not an image")
    run, code, frames = run_capture(graph_run, {"source": str(folder), "fps": 0})
    assert code == 0, run.stderr
    assert [(f["left"], f["right"]) for f in frames] == [halves(reference[i * 10]) for i in range(5)]
    assert "1 unreadable image(s) skipped: img_02b.png" in run.stderr


def test_a_truncated_file_ends_the_stream_with_a_warning_not_a_hang(graph_run, tmp_path):
    reference = clip_frames()[:30]
    avi = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (720, 1280))
    for frame in reference:
        writer.write(frame)
    writer.release()
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    run, code, frames = run_capture(graph_run, {"source": str(cut)})
    assert code == 0, run.stderr
    assert 5 < len(frames) < 30
    assert f"the file ended after {len(frames)} of 30 frames (truncated or corrupt)" in run.stderr


@pytest.mark.parametrize("source, message", [
    ("MISSING", "no such file or folder: 'MISSING'"),
    ("CORRUPT", "cannot read video file 'CORRUPT' (not a video, corrupt or truncated)"),
    (7, "cannot open camera 7 (no such device, or it gives no frames); to run this graph on a file (every frame kept): --set camera.source=path/to/video.mp4, or: posegraph run path/to/video.mp4"),
    ("rtsp://127.0.0.1:9/none", "cannot open stream 'rtsp://127.0.0.1:9/none'"),
    ("EMPTYDIR", "folder 'EMPTYDIR' holds no images"),
])
def test_a_source_that_cannot_be_opened_stops_the_graph_with_one_line(graph_run, tmp_path, source, message):
    paths = {"MISSING": str(tmp_path / "nope.mp4"), "CORRUPT": str(tmp_path / "corrupt.mp4"), "EMPTYDIR": str(tmp_path / "empty")}
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    (tmp_path / "empty").mkdir()
    source = paths.get(source, source)
    message = message.replace("MISSING", paths["MISSING"]).replace("CORRUPT", paths["CORRUPT"]).replace("EMPTYDIR", paths["EMPTYDIR"])
    run, code, frames = run_capture(graph_run, {"source": source, "timeout_ms": 2000})
    assert code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: node 'camera' field 'params.source': ")
    assert message in errors[0]
    assert run.workers() == {}


def test_a_paced_file_shows_its_progress(graph_run):
    run, code, frames = run_capture(graph_run, {"source": str(CLIP), "fps": 20})
    assert code == 0, run.stderr
    assert len(frames) == 65
    assert "progress: camera.0 " in run.stderr and "/65 frames" in run.stderr


def test_a_stream_url_is_read_like_a_file(graph_run, tmp_path):
    """An http URL goes through OpenCV's FFmpeg reader; served here from 127.0.0.1. (The
    clip is served as MJPG AVI, which plays while it downloads: Python's test server
    cannot serve the byte ranges an mp4 with its index at the end needs.)"""
    import functools
    import http.server
    import threading

    reference = clip_frames()
    served = tmp_path / "served"
    served.mkdir()
    writer = cv2.VideoWriter(str(served / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (720, 1280))
    for frame in reference:
        writer.write(frame)
    writer.release()
    expected = []
    local = cv2.VideoCapture(str(served / "clip.avi"))
    while True:
        ok, frame = local.read()
        if not ok:
            break
        expected.append(halves(frame))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        run, code, frames = run_capture(graph_run, {"source": url, "timeout_ms": 5000})
    finally:
        server.shutdown()
    assert code == 0, run.stderr
    assert [(f["left"], f["right"]) for f in frames] == expected  # every frame, as decoded from the file


def test_a_capture_killed_mid_file_resumes_at_the_frame_the_stream_reached(graph_run):
    """SIGKILL of the capture process: its restart seeks to where the stream stands, so
    every seq still carries its own frame of the file, once."""
    import os
    import signal

    run = graph_run(GRAPH.format(params=json.dumps({"source": str(CLIP), "fps": 20})))
    run.wait_for_records(20, "frames.jsonl")
    pid, _ = run.worker_pid("camera.0")
    os.kill(pid, signal.SIGKILL)
    assert run.wait() == 0, run.stderr
    frames = run.records("frames.jsonl")
    assert [f["seq"] for f in frames] == list(range(65))
    assert [f["index"] for f in frames] == list(range(65))
    assert "resuming at frame" in run.stderr
    reference = clip_frames()
    assert [(f["left"], f["right"]) for f in frames] == [halves(r) for r in reference]


@pytest.mark.parametrize("size, params, field, message", [
    ((1, 1), {}, "params.source", "video file 'SOURCE' has frames of 1x1 pixels, too small to hold a person; "
                                  "frames must be at least 2x2 pixels (width x height)"),
    ((64, 48), {"width": 1}, "params.width", "width 1 and height 0 resize the 64x48 frames of 'SOURCE' to 1x1 pixels, "
                                             "too small to hold a person; frames must be at least 2x2 pixels (width x height)"),
])
def test_frames_too_small_to_hold_a_person_stop_the_graph_saying_so(graph_run, tmp_path, size, params, field, message):
    """A 1x1 video used to run, and render said its frames were not `H x W x 3`, which
    they were; the fault is their size, and capture says so at open."""
    path = tmp_path / "tiny.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(10):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    run, code, frames = run_capture(graph_run, {"source": str(path), **params})
    assert code == 1 and frames == []
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: node 'camera' field '{field}': {message.replace('SOURCE', str(path))}"]
