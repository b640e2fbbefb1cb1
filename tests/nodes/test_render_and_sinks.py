"""`render` and the sinks (`video`, `images`, `jsonl`, `window`) in real graphs run through
the CLI, plus direct calls (posegraph.testing.NodeHarness) for the corner cases a graph
cannot easily produce.

The source is render_test_nodes.py:ClipSource: the bundled squats clip (65 frames,
720x1280 portrait) with its reference landmarks and made-up votes, scores and repetitions,
so every value a sink writes is known here.
"""
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import GraphRun, processes_with
from render_test_nodes import DATA, votes_at

from posegraph.testing import NodeHarness, run_node

FRAMES, WIDTH, HEIGHT = 65, 720, 1280
NO_PERSON = [10, 11, 12]
EMPTY = [0, 20, 21]  # empty frame packets: one before any image, two in the middle
REFERENCE = np.array(json.loads((DATA / "pose_squats.full.json").read_text()), dtype=np.float32)  # 65 x 33 x 3
CLIP = "uses: TESTS/render_test_nodes.py:ClipSource"
RENDER_INPUTS = "inputs: {frame: clip/frame, landmarks: clip/landmarks, votes: clip/votes, scores: clip/scores, reps: clip/reps}"

# Each render node here has one consumer (a second render feeds the PNG folder); a render
# fanned out to two sinks is test_a_render_with_two_consumers_drains.
PIPELINE = f"""
name: render-and-sinks
nodes:
  - id: clip
    {CLIP}
    params: {{no_person: {NO_PERSON}, empty_frames: {EMPTY}}}
  - id: render
    uses: render
    {RENDER_INPUTS}
  - id: video
    uses: video
    params: {{path: "TMP/out/{{stream}}/annotated.mp4"}}
    inputs: {{frame: render/frame}}
  - id: render_png
    uses: render
    {RENDER_INPUTS}
  - id: pngs
    uses: images
    params: {{path: TMP/rendered, pattern: "{{seq:06d}}.png"}}
    inputs: {{frame: render_png/frame}}
  - id: records
    uses: jsonl
    params: {{path: TMP/out/records.jsonl}}
    inputs: {{landmarks: clip/landmarks, votes: clip/votes, scores: clip/scores, reps: clip/reps, frame: clip/frame}}
"""


def source_frames(*indices):
    """Frames of the clip as the source node decodes them (same OpenCV, same bytes)."""
    capture = cv2.VideoCapture(str(DATA / "pose_squats.mp4"))
    frames, index = {}, 0
    while len(frames) < len(indices):
        ok, image = capture.read()
        assert ok, f"the clip ended before frame {index}"
        if index in indices:
            frames[index] = image
        index += 1
    capture.release()
    return [frames[i] for i in indices]


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    header = (capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return header, frames


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One run of the whole pipeline; several tests check what it wrote."""
    run = GraphRun(tmp_path_factory.mktemp("pipeline"), PIPELINE)
    try:
        code = run.wait(timeout=90)
    finally:
        run.kill()
    assert code == 0, run.stderr
    return run


@pytest.fixture
def run_tmpdir(monkeypatch):
    """A short TMPDIR for the runner, so its private run folder (named in every worker's
    command line) is known and a test can prove no worker outlived the run."""
    folder = tempfile.mkdtemp(prefix="pgt-", dir="/tmp")
    monkeypatch.setenv("TMPDIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=[None, ":99"], ids=["no-DISPLAY", "unreachable-DISPLAY"])
def headless(request, monkeypatch):
    """No display: DISPLAY unset, or set to a display with no X server behind it (where
    OpenCV's Qt would abort the whole process if the window sink did not probe first)."""
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if request.param is None:
        monkeypatch.delenv("DISPLAY", raising=False)
    else:
        if Path("/tmp/.X11-unix/X99").exists():
            pytest.skip("an X server runs on :99")
        monkeypatch.setenv("DISPLAY", request.param)
    return request.param


def error_lines(run):
    return [line for line in run.stderr.splitlines() if line.startswith("error:")]


# ----- the pipeline ------------------------------------------------------------------------------
def test_video_has_one_frame_per_input_frame_even_for_empty_packets(pipeline):
    path = pipeline.dir / "out" / "0" / "annotated.mp4"  # {stream} -> 0, folders created
    (count, fps), frames = read_video(path)
    assert count == FRAMES and len(frames) == FRAMES
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in frames)
    assert fps == pytest.approx(5.0)  # from the frames' pts_ms spacing (200 ms)
    assert frames[0].max() <= 16  # empty before any image: black
    step = lambda a, b: np.abs(frames[a].astype(np.int16) - frames[b]).mean()
    assert step(19, 20) < 1.0 and step(20, 21) < 1.0  # empty packets repeat the previous image
    assert step(18, 19) > 2.0 and step(21, 22) > 2.0  # (while real neighbours differ)
    assert pipeline.metrics["nodes"]["video"]["counters"]["empty_frames"] == len(EMPTY)
    assert f"wrote {FRAMES} frames (720x1280, 5 fps)" in pipeline.stderr


def test_jsonl_has_one_record_per_frame_in_order_with_the_packets_values(pipeline):
    records = pipeline.records("out/records.jsonl")
    assert [r["seq"] for r in records] == list(range(FRAMES))
    reps_so_far = 0
    for r in records:
        seq = r["seq"]
        assert {"stream", "seq", "pts_ms", "landmarks", "votes", "smoothed", "reps"} <= set(r)
        assert r["stream"] == 0 and r["source"] == "clip"  # the stream's name: its source node
        assert r["pts_ms"] is None if seq in EMPTY else r["pts_ms"] == pytest.approx(200.0 * seq)
        if seq in NO_PERSON:
            assert r["landmarks"] is None and r["votes"] is None and r["smoothed"] is None
        else:
            points = np.array(r["landmarks"], dtype=np.float64)
            assert points.shape == (33, 4)
            np.testing.assert_allclose(points[:, :3], REFERENCE[seq], atol=0.006)
            assert (points[:, 3] == 1.0).all()
            assert points[:, :3].tolist() == np.round(points[:, :3], 2).tolist()
            assert r["votes"] == {"squats_down": votes_at(seq), "squats_up": 10 - votes_at(seq)}
            assert set(r["smoothed"]) == {"squats_down", "squats_up"}
            assert r["class"] == max(r["smoothed"], key=r["smoothed"].get)
        assert set(r["reps"]) == {"squats_down"} and r["reps"]["squats_down"] >= reps_so_far
        reps_so_far = r["reps"]["squats_down"]
    assert reps_so_far == 4


def test_render_draws_pose_and_panel_and_leaves_the_rest_untouched(pipeline):
    nodes = pipeline.metrics["nodes"]
    assert nodes["render"]["frames_out"] == FRAMES and nodes["render_png"]["frames_out"] == FRAMES
    names = sorted(p.name for p in (pipeline.dir / "rendered").iterdir())
    assert names == [f"{i:06d}.png" for i in range(FRAMES) if i not in EMPTY]  # empty: no file
    assert nodes["pngs"]["counters"]["empty_frames"] == len(EMPTY)

    # Look at it: <pytest tmp>/pipeline0/rendered/000030.png
    source, source_nobody = source_frames(30, 11)
    rendered = cv2.imread(str(pipeline.dir / "rendered" / "000030.png"))
    assert rendered.shape == source.shape
    changed = np.abs(rendered.astype(np.int16) - source).max(axis=2) > 40
    points = REFERENCE[30, :, :2]
    for x, y in np.rint(points).astype(int):
        assert changed[y - 2:y + 3, x - 2:x + 3].any(), f"nothing drawn at landmark ({x}, {y})"
    from posegraph.pose.drawing import pose_connections

    for a, b in pose_connections():
        x, y = np.rint((points[a] + points[b]) / 2).astype(int)
        assert changed[y - 1:y + 2, x - 1:x + 2].any(), f"no edge {a}-{b} drawn"
    assert changed[14:60, 14:300].mean() > 0.2  # the class panel in the top-left corner
    below_feet = int(points[:, 1].max()) + 60
    above_head = int(points[:, 1].min()) - 60
    assert np.array_equal(rendered[below_feet:, WIDTH // 2:], source[below_feet:, WIDTH // 2:])
    assert np.array_equal(rendered[:above_head, int(WIDTH * 0.6):], source[:above_head, int(WIDTH * 0.6):])

    # frame 11 has no person: no skeleton anywhere (nothing stale), "no person" in the panel
    nobody = cv2.imread(str(pipeline.dir / "rendered" / "000011.png"))
    lower = slice(HEIGHT // 5, HEIGHT)
    assert np.array_equal(nobody[lower, WIDTH // 3:], source_nobody[lower, WIDTH // 3:])
    assert (np.abs(nobody[14:60, 14:300].astype(np.int16) - source_nobody[14:60, 14:300]) > 40).any()


# ----- image folder and window ---------------------------------------------------------------------
def test_image_folder_writes_one_jpeg_per_frame_with_the_default_pattern(graph_run, tmp_path):
    run = graph_run(f"""
name: images
nodes:
  - id: clip
    {CLIP}
  - id: jpegs
    uses: images
    params: {{path: TMP/frames}}
    inputs: {{frame: clip/frame}}
""")
    assert run.wait() == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"0_{i:06d}.jpg" for i in range(FRAMES)]
    (source,) = source_frames(40)
    image = cv2.imread(str(tmp_path / "frames" / "0_000040.jpg"))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(image.astype(np.int16) - source).mean() < 3.0  # quality 90


def test_window_without_a_display_warns_once_and_discards_frames(graph_run, headless):
    run = graph_run(f"""
name: headless
nodes:
  - id: clip
    {CLIP}
  - id: win
    uses: window
    inputs: {{frame: clip/frame}}
""")
    assert run.wait() == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("[win.0] warning:")]
    assert len(warnings) == 1, run.stderr
    assert ("no display" if headless is None else "cannot open a window on display ':99'") in warnings[0]
    assert run.metrics["nodes"]["win"]["frames_in"] == FRAMES


def test_window_requiring_a_display_stops_the_graph_with_one_line(graph_run, headless, run_tmpdir):
    run = graph_run(f"""
name: needs-display
nodes:
  - id: clip
    {CLIP}
  - id: win
    uses: window
    params: {{require_display: true}}
    inputs: {{frame: clip/frame}}
""")
    assert run.wait(timeout=30) == 1
    errors = error_lines(run)
    assert len(errors) == 1 and errors[0].startswith("error: node 'win' field 'params.require_display': "), run.stderr
    assert ("no display" if headless is None else "cannot open a window on display ':99'") in errors[0]
    assert processes_with(run_tmpdir) == []


# ----- paths that cannot be written ---------------------------------------------------------------------
@pytest.mark.parametrize("kind, params, make", [
    ("video", "{path: TMP/taken}", "dir"),                   # the video path is an existing folder
    ("video", '{path: "TMP/out/clip.mkv", codec: "XXXX"}', None),  # an encoder that does not exist
    ("jsonl", "{path: TMP/taken}", "dir"),
    ("images", "{path: TMP/taken}", "file"),                 # the folder path is an existing file
])
def test_unwritable_paths_stop_the_graph_at_open_with_one_line(graph_run, tmp_path, run_tmpdir, kind, params, make):
    taken = tmp_path / "taken"
    if make == "dir":
        taken.mkdir()
    elif make == "file":
        taken.write_text("a file")
    run = graph_run(f"""
name: unwritable
nodes:
  - id: clip
    {CLIP}
  - id: out
    uses: {kind}
    params: {params}
    inputs: {{frame: clip/frame}}
""")
    assert run.wait(timeout=30) == 1
    errors = error_lines(run)
    field = "params.codec" if "XXXX" in params else "params.path"
    assert len(errors) == 1 and errors[0].startswith(f"error: node 'out' field '{field}': "), run.stderr
    assert processes_with(run_tmpdir) == []
    leftovers = [p.name for p in tmp_path.rglob("*") if "probe" in p.name]
    assert leftovers == []


# ----- direct calls (posegraph.testing.NodeHarness): corner cases and speed -----------------------------
RENDER_PARAMS = {"visibility_threshold": 0.5, "max_score": 10.0, "show_fps": True, "scale": 1.0}
TWO_CAMERAS = {0: "cam1", 1: "cam2"}


def read_only(array):
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def test_render_corner_cases_and_speed_at_720x1280():
    from posegraph.nodes.render import Render

    node = NodeHarness(Render, RENDER_PARAMS).open()
    node.services.metrics = {"nodes": {"clip": {"fps": 5.0}, "render": {"fps": 250.0}}}  # what graph_fps() shows
    (image,) = source_frames(30)
    image = read_only(image)
    before = image.copy()
    px = np.concatenate([REFERENCE[30], np.ones((33, 1), np.float32)], axis=1)
    px[16, 3] = 0.1           # hidden: not drawn
    px[15, :2] = np.nan       # broken coordinates: skipped, no crash
    px[27, :2] = [1e12, -1e12]  # far outside: clipped, no crash
    inputs = {"frame": {"image": image, "pts_ms": 6000.0, "index": 30},
              "landmarks": {"px": read_only(px), "width": WIDTH, "height": HEIGHT},
              "votes": {"votes": {"squats_down": 3, "squats_up": 7}},
              "scores": {"scores": {"squats_down": float("nan"), "squats_up": 6.5}},
              "reps": {"reps": {"squats_down": 2}, "class": "squats_down", "entered": False}}
    out = node.process(inputs)["frame"]
    assert out["pts_ms"] == 6000.0 and out["index"] == 30 and out["image"].shape == (HEIGHT, WIDTH, 3)
    assert np.array_equal(image, before)  # inputs are never written
    hidden_x, hidden_y = np.rint(REFERENCE[30, 16, :2]).astype(int)
    assert np.array_equal(out["image"][hidden_y - 1:hidden_y + 2, hidden_x - 1:hidden_x + 2],
                          image[hidden_y - 1:hidden_y + 2, hidden_x - 1:hidden_x + 2])
    fps_corner = out["image"][HEIGHT - 80:HEIGHT - 14, 14:200]  # the graph's fps in the bottom-left corner
    assert (np.abs(fps_corner.astype(np.int16) - image[HEIGHT - 80:HEIGHT - 14, 14:200]) > 40).any()

    assert node.process({"frame": None}) == {}  # an empty frame stays empty
    gray = node.process({"frame": read_only(image[:, :, 1])}, seq=7)["frame"]  # bare gray array: BGR out
    assert gray["image"].shape == (HEIGHT, WIDTH, 3) and gray["index"] == 7 and gray["pts_ms"] is None
    small = node.process({"frame": {"image": read_only(cv2.resize(image, (640, 480))), "pts_ms": 0.0, "index": 0},
                          "landmarks": inputs["landmarks"]})["frame"]  # landmarks mapped to 640x480
    assert small["image"].shape == (480, 640, 3)
    assert node.process({"frame": read_only(np.zeros((4, 4, 3), np.float32))}) == {}
    assert node.counters["bad_frames"] == 1 and node.counters["fps_shown"] >= 1 and len(node.logs) == 1

    start, rounds = time.perf_counter(), 100
    for _ in range(rounds):
        node.process(inputs)
    per_frame = (time.perf_counter() - start) / rounds * 1000
    node.close()
    print(f"render: {per_frame:.2f} ms per 720x1280 frame")
    assert per_frame < 25  # about 2 ms here; generous for a loaded CI machine


def test_video_and_jsonl_corner_cases(tmp_path):
    from posegraph.nodes.sinks import JsonLines, VideoFile

    run_node(VideoFile, [{"frame": read_only(np.full((99, 161, 3), 200, np.uint8))}],  # odd size, no pts
             {"path": str(tmp_path / "one.mp4"), "fps": 0.0, "codec": "mp4v"})
    (count, fps), frames = read_video(tmp_path / "one.mp4")
    assert (count, fps, len(frames), frames[0].shape) == (1, 30.0, 1, (98, 160, 3))

    with NodeHarness(VideoFile, {"path": str(tmp_path / "mixed.avi"), "fps": 12.0, "codec": "MJPG"}) as mixed:
        for i, shape in enumerate([(48, 64, 3), (96, 128, 3), (48, 64), None, (48, 64, 4)]):
            frame = None if shape is None else read_only(np.full(shape, 50 * i, np.uint8))
            mixed.process({"frame": frame}, seq=i)
        counters = dict(mixed.counters)
    (count, fps), frames = read_video(tmp_path / "mixed.avi")
    assert (count, fps, len(frames)) == (5, 12.0, 5) and all(f.shape == (48, 64, 3) for f in frames)
    assert counters["resized_frames"] == 1 and abs(int(frames[3].mean()) - 100) <= 3  # repeat of frame 2

    px = np.ones((33, 4), np.float32) * 1.23456
    px[0, 0] = np.nan
    run_node(JsonLines, [{"landmarks": {"px": read_only(px)}, "votes": None}], {"path": str(tmp_path / "deep" / "r.jsonl")})
    (line,) = (tmp_path / "deep" / "r.jsonl").read_text().splitlines()
    record = json.loads(line)  # strict JSON: no NaN
    assert record["landmarks"][0][0] is None and record["landmarks"][1] == [1.23, 1.23, 1.23, 1.23]
    assert record["votes"] is None and record["reps"] is None and record["pts_ms"] is None


def top_level_atoms(path):
    """The MP4 boxes at the top of the file, in order: (type, size)."""
    atoms, data = [], Path(path).read_bytes()
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8].decode("latin-1")
        if size == 1:  # 64-bit size
            size = int.from_bytes(data[at + 8:at + 16], "big")
        atoms.append((kind, size))
        if size < 8:
            break
        at += size
    return atoms


def test_video_writes_h264_yuv420p_mp4_with_its_index_first_and_every_frame(tmp_path):
    """The default codec: an MP4 that browsers play (H.264, yuv420p, moov before mdat so it
    starts before it has downloaded), one frame per input, lasting frames / fps."""
    import av
    from posegraph.nodes.sinks import VideoFile
    from posegraph.pose.media import WriteError, check_video_writer

    frames = 65
    levels = [30 + (37 * i) % 200 for i in range(frames)]  # each frame's gray level says which it is
    path = tmp_path / "plays.mp4"
    with NodeHarness(VideoFile, {"path": str(path)}) as node:  # default codec and fps 0
        for seq, level in enumerate(levels):
            frame = None if seq == 30 else read_only(np.full((121, 161, 3), level, np.uint8))  # odd size
            node.process({"frame": {"image": frame, "pts_ms": 200.0 * seq, "index": seq}}, seq=seq)
    kinds = [kind for kind, _ in top_level_atoms(path)]
    assert kinds[0] == "ftyp" and "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        assert (context.name, context.format.name, context.width, context.height) == ("h264", "yuv420p", 160, 120)
        assert stream.frames == frames and float(stream.average_rate) == pytest.approx(5.0)
        assert float(stream.duration * stream.time_base) == pytest.approx(13.0)  # 65 frames at 5 fps
        decoded = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    levels[30] = levels[29]  # the empty packet repeats the frame before
    assert len(decoded) == frames
    assert [round(float(image.mean())) for image in decoded] == pytest.approx(levels, abs=3)

    with pytest.raises(WriteError) as wrong:  # H.264 does not go in WebM
        check_video_writer(str(tmp_path / "x.webm"), "h264")
    assert wrong.value.param == "codec" and "\n" not in str(wrong.value)
    check_video_writer(str(tmp_path / "x.webm"), "vp9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plays.mp4"]  # no probe, no journal left


# ----- several streams into one sink: one output each ----------------------------------------------
def test_stream_path_gives_each_stream_its_own_path_and_keeps_single_stream_paths():
    from posegraph.pose.media import stream_path

    # one stream: the path as written, placeholders filled in
    assert stream_path("out/demo.mp4", 0, "camera") == "out/demo.mp4"
    assert stream_path("out/{stream}/a.mp4", 0, "camera") == "out/0/a.mp4"
    assert stream_path("out/{source}.jsonl", 2, "cam2") == "out/cam2.jsonl"
    assert stream_path("out/frames", 0, "camera", folder=True) == "out/frames"
    # several streams: placeholders choose; without them the source's name is added
    assert stream_path("out/demo.mp4", 1, "cam1", multi=True) == "out/demo.cam1.mp4"
    assert stream_path("out/records.jsonl", 4, "cam4", multi=True) == "out/records.cam4.jsonl"
    assert stream_path("out/{stream}_{source}.mp4", 1, "cam1", multi=True) == "out/1_cam1.mp4"
    assert stream_path("out/{stream}.mp4", 1, "cam1", multi=True) == "out/1.mp4"
    assert stream_path("out/frames", 1, "cam1", multi=True, folder=True) == "out/frames/cam1"
    assert stream_path("out/{source}", 1, "cam1", multi=True, folder=True) == "out/cam1"
    assert stream_path("~/x.mp4", 1, "cam1", multi=True) == str(Path.home() / "x.cam1.mp4")
    assert stream_path("out/demo.mp4", 3) == "out/demo.mp4" and stream_path("{source}.mp4", 3) == "3.mp4"


def _two_streams(count=6):
    """The clip's first frames (stream 0, 'cam1') and the same frames flipped (stream 1, 'cam2'),
    at 640x360 to keep the files small, with the clip's 200 ms frame spacing."""
    frames = [cv2.resize(f, (360, 640)) for f in source_frames(*range(count))]
    return {0: frames, 1: [np.ascontiguousarray(f[:, ::-1]) for f in frames]}


def test_jsonl_writes_one_file_per_stream(tmp_path):
    from posegraph.nodes.sinks import JsonLines

    (tmp_path / "records.cam2.jsonl").write_text("an older run's line\n" * 50)
    with NodeHarness(JsonLines, {"path": str(tmp_path / "records.jsonl")}, stream_names=TWO_CAMERAS) as node:
        for seq in range(8):  # interleaved as the engine delivers them; stream 1 has 5 frames
            for stream in (0, 1) if seq < 5 else (0,):
                px = np.concatenate([REFERENCE[seq + 10 * stream], np.ones((33, 1), np.float32)], axis=1)
                node.process({"landmarks": {"px": read_only(px)}, "votes": {"votes": {"squats_down": votes_at(seq)}},
                              "frame": {"image": None, "pts_ms": 200.0 * seq, "index": seq}}, stream=stream, seq=seq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.cam1.jsonl", "records.cam2.jsonl"]
    for stream, name, count in ((0, "cam1", 8), (1, "cam2", 5)):
        records = [json.loads(l) for l in (tmp_path / f"records.{name}.jsonl").read_text().splitlines()]
        assert [r["seq"] for r in records] == list(range(count))  # truncated: no older line left
        assert {(r["stream"], r["source"]) for r in records} == {(stream, name)}
        for r in records:
            np.testing.assert_allclose(np.array(r["landmarks"])[:, :3], REFERENCE[r["seq"] + 10 * stream], atol=0.006)
            assert r["pts_ms"] == 200.0 * r["seq"] and r["votes"] == {"squats_down": votes_at(r["seq"])}


def test_jsonl_checks_every_streams_file_at_open(tmp_path):
    from posegraph.nodes.sinks import JsonLines
    from posegraph import NodeOpenError

    (tmp_path / "out.cam2.jsonl").mkdir()  # cam2's file cannot be written: a folder is in the way
    node = NodeHarness(JsonLines, {"path": str(tmp_path / "out.jsonl")}, stream_names=TWO_CAMERAS)
    with pytest.raises(NodeOpenError) as caught:
        node.open()
    assert caught.value.field == "params.path" and "out.cam2.jsonl" in str(caught.value)
    node.close()


def test_video_writes_one_file_per_stream(tmp_path):
    from posegraph.nodes.sinks import VideoFile

    streams = _two_streams()
    params = {"path": str(tmp_path / "demo.mp4"), "fps": 0.0, "codec": "mp4v"}
    with NodeHarness(VideoFile, params, stream_names=TWO_CAMERAS) as node:
        for seq in range(6):
            for stream, frames in streams.items():
                node.process({"frame": {"image": read_only(frames[seq]), "pts_ms": 200.0 * seq, "index": seq}},
                             stream=stream, seq=seq)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.cam1.mp4", "demo.cam2.mp4"]
    for stream, name in ((0, "cam1"), (1, "cam2")):
        (count, fps), frames = read_video(tmp_path / f"demo.{name}.mp4")
        assert (count, fps, len(frames)) == (6, 5.0, 6)
        for got, sent, other in zip(frames, streams[stream], streams[1 - stream]):
            own = np.abs(got.astype(np.int16) - sent).mean()
            assert own < 4.0 and own < np.abs(got.astype(np.int16) - other).mean() / 3, name


def test_a_streams_video_and_records_are_finished_when_that_stream_ends(tmp_path):
    """The sinks keep each stream's file as its keyed state: the engine retires it at the
    end of its stream, so one camera's files are complete while another still runs."""
    from posegraph.nodes.sinks import JsonLines, VideoFile

    streams = _two_streams(4)
    video = NodeHarness(VideoFile, {"path": str(tmp_path / "v.mp4"), "fps": 0.0, "codec": "mp4v"},
                        stream_names=TWO_CAMERAS).open()
    records = NodeHarness(JsonLines, {"path": str(tmp_path / "r.jsonl")}, stream_names=TWO_CAMERAS).open()
    for seq in range(4):
        for stream in (0, 1) if seq < 2 else (0,):
            frame = {"image": read_only(streams[stream][seq]), "pts_ms": 200.0 * seq, "index": seq}
            video.process({"frame": frame}, stream=stream, seq=seq)
            records.process({"frame": frame}, stream=stream, seq=seq)
    video.end_stream(1)
    records.end_stream(1)
    (count, fps), frames = read_video(tmp_path / "v.cam2.mp4")  # readable while stream 0 goes on
    assert (count, fps, len(frames)) == (2, 5.0, 2)
    assert [json.loads(l)["seq"] for l in (tmp_path / "r.cam2.jsonl").read_text().splitlines()] == [0, 1]
    video.close()
    records.close()
    assert read_video(tmp_path / "v.cam1.mp4")[0] == (4, 5.0)
    assert len((tmp_path / "r.cam1.jsonl").read_text().splitlines()) == 4


def test_images_write_a_subfolder_per_stream(tmp_path):
    from posegraph.nodes.sinks import ImageFolder

    streams = _two_streams(3)
    with NodeHarness(ImageFolder, {"path": str(tmp_path / "frames"), "pattern": "{seq:06d}.png", "quality": 90},
                     stream_names=TWO_CAMERAS) as node:
        for seq in range(3):
            for stream, frames in streams.items():
                node.process({"frame": {"image": read_only(frames[seq]), "pts_ms": 200.0 * seq, "index": seq}},
                             stream=stream, seq=seq)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["cam1", "cam2"]
    for stream, name in ((0, "cam1"), (1, "cam2")):
        names = sorted(p.name for p in (tmp_path / "frames" / name).iterdir())
        assert names == ["000000.png", "000001.png", "000002.png"]
        for seq in range(3):  # png: exactly the stream's own frame, not the other's with the same seq
            assert np.array_equal(cv2.imread(str(tmp_path / "frames" / name / f"{seq:06d}.png")), streams[stream][seq])
    # {source} in the path chooses the folder (no name added), and in the pattern too
    params = {"path": str(tmp_path / "by_source" / "{source}"), "pattern": "{source}_{seq:06d}.png", "quality": 90}
    with NodeHarness(ImageFolder, params, stream_names=TWO_CAMERAS) as named:
        named.process({"frame": read_only(streams[1][0])}, stream=1)
    assert sorted(p.name for p in (tmp_path / "by_source").iterdir()) == ["cam1", "cam2"]  # both made at open
    assert [p.name for p in (tmp_path / "by_source" / "cam2").iterdir()] == ["cam2_000000.png"]


def test_render_keeps_bar_classes_per_stream():
    """One camera's classes do not add bars to another's panel: stream 1's frame is drawn
    exactly as by a render that only ever saw stream 1."""
    from posegraph.nodes.render import Render

    params = dict(RENDER_PARAMS, show_fps=False)
    (image,) = source_frames(30)
    px = np.concatenate([REFERENCE[30], np.ones((33, 1), np.float32)], axis=1)
    frame = {"image": read_only(image), "pts_ms": 6000.0, "index": 30}
    mine = {"frame": frame, "landmarks": {"px": read_only(px), "width": WIDTH, "height": HEIGHT},
            "scores": {"scores": {"squats_down": 7.0, "squats_up": 3.0}}}
    others = dict(mine, scores={"scores": {"pushups_down": 9.0, "pushups_up": 1.0, "jumping_jack": 0.0}})
    with NodeHarness(Render, params, stream_names=TWO_CAMERAS) as shared, NodeHarness(Render, params) as alone:
        shared.process(others, stream=0)
        got = shared.process(mine, stream=1)["frame"]["image"].copy()
        want = alone.process(mine, stream=1)["frame"]["image"]
        assert np.array_equal(got, want)
        assert shared.node.overlay.classes == {0: ["jumping_jack", "pushups_down", "pushups_up"],
                                               1: ["squats_down", "squats_up"]}


def test_two_cameras_into_the_sinks_give_one_video_folder_and_records_file_each(graph_run, tmp_path):
    """Two sources (the clip twice; cam2's first three frame packets empty) into the video,
    images and jsonl sinks of one graph, paths without placeholders: each sink writes one
    output per camera, named after its source node."""
    run = graph_run(f"""
name: two-cameras
nodes:
  - id: cam1
    {CLIP}
  - id: cam2
    {CLIP}
    params: {{empty_frames: [0, 1, 2], no_person: [30]}}
  - id: video
    uses: video
    params: {{path: TMP/out/demo.mp4}}
    inputs: {{frame: [cam1/frame, cam2/frame]}}
  - id: jpegs
    uses: images
    params: {{path: TMP/frames, pattern: "{{seq:06d}}.jpg"}}
    inputs: {{frame: [cam1/frame, cam2/frame]}}
  - id: records
    uses: jsonl
    params: {{path: TMP/out/records.jsonl}}
    inputs: {{landmarks: [cam1/landmarks, cam2/landmarks], frame: [cam1/frame, cam2/frame]}}
""")
    assert run.wait(timeout=90) == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "demo.cam1.mp4", "demo.cam2.mp4", "records.cam1.jsonl", "records.cam2.jsonl"]
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["cam1", "cam2"]
    for name, empty, nobody in (("cam1", [], []), ("cam2", [0, 1, 2], [30])):
        (count, fps), frames = read_video(tmp_path / "out" / f"demo.{name}.mp4")
        assert count == FRAMES and len(frames) == FRAMES and fps == pytest.approx(5.0)
        assert all(frames[i].max() <= 16 for i in empty)  # empty before any image: black, in its own file only
        jpegs = sorted(p.name for p in (tmp_path / "frames" / name).iterdir())
        assert jpegs == [f"{i:06d}.jpg" for i in range(FRAMES) if i not in empty]
        records = run.records(f"out/records.{name}.jsonl")
        assert [r["seq"] for r in records] == list(range(FRAMES)) and {r["source"] for r in records} == {name}
        assert [r["seq"] for r in records if r["landmarks"] is None] == nobody
        assert [r["seq"] for r in records if r["pts_ms"] is None] == empty
    assert frames[5].mean() > 16  # cam2 has images after its empty start


def test_a_render_with_two_consumers_drains(graph_run):
    """Render fanned out to two sinks, one slow: every release ack reaches it, so the graph ends
    (a release lost while a node waits for credit downstream would hang it)."""
    run = graph_run(f"""
name: fan-out
nodes:
  - id: clip
    {CLIP}
  - id: render
    uses: render
    {RENDER_INPUTS}
  - id: video
    uses: video
    params: {{path: TMP/fan.mp4}}
    inputs: {{frame: render/frame}}
  - id: pngs
    uses: images
    params: {{path: TMP/fan, pattern: "{{seq:06d}}.png"}}
    inputs: {{frame: render/frame}}
""")
    code = run.wait(timeout=60)
    assert code == 0, run.stderr


def test_an_image_too_small_is_said_to_be_too_small_not_of_the_wrong_shape():
    import numpy as np
    from posegraph.pose.drawing import image_problem

    assert image_problem(np.zeros((1, 1, 3), np.uint8)) == \
        "a frame image of 1x1 pixels (width x height) is too small: at least 2x2"
    assert "H x W" in image_problem(np.zeros((4, 4, 5), np.uint8)) and image_problem(np.zeros((2, 2, 3), np.uint8)) is None
