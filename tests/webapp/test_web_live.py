"""The `web` sink in real graphs run through the CLI, read with a real HTTP client (urllib):
the page, /graph.png, /metrics.json, /frames.json, MJPEG streams (one per stream), the
max_fps limit, a taken port, and a prompt exit on SIGTERM with a browser still attached.
"""
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from conftest import ROOT, GraphRun

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"  # 65 frames, 720 wide, 1280 high
WIDTH, HEIGHT = 720, 1280


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def get_json(url):
    return json.loads(get(url)[2])


def wait_until(run, check, timeout=40, what="condition"):
    """Poll `check()` until it returns something truthy; fail early if the runner exits."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if run.proc.poll() is not None:
            raise AssertionError(f"runner exited ({run.proc.returncode}) while waiting for {what}: {run.proc.stderr.read()}")
        try:
            value = check()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout} s (last: {last!r})")


def mjpeg_frames(url, count, timeout=20):
    """The first `count` JPEGs of an MJPEG (multipart/x-mixed-replace) stream."""
    frames = []
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        ctype = resp.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace"), ctype
        boundary = b"--" + ctype.split("boundary=")[1].strip().encode()
        while len(frames) < count:
            line = resp.readline()
            assert line, "the MJPEG stream ended early"
            if line.strip() != boundary:
                continue
            headers = {}
            while (line := resp.readline().strip()):
                key, value = line.split(b":", 1)
                headers[key.strip().lower()] = value.strip()
            assert headers[b"content-type"] == b"image/jpeg"
            frames.append(resp.read(int(headers[b"content-length"])))
    return frames


def decode(jpeg):
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


class PageParser(HTMLParser):
    """Element ids and the data-stream of every <img> inside #streams."""

    def __init__(self):
        super().__init__()
        self.ids, self.stream_imgs, self.graph_imgs, self.stack = set(), [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "img" and "streams" in self.stack and "data-stream" in attrs:
            self.stream_imgs.append((attrs["data-stream"], attrs["src"]))
        if tag == "img" and "graph" in self.stack:
            self.graph_imgs.append(attrs["src"])
        if tag not in ("img", "meta", "br", "input", "link"):
            self.stack.append(attrs.get("id", tag))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()


def parse_page(body: bytes) -> PageParser:
    parser = PageParser()
    parser.feed(body.decode("utf-8"))
    return parser


def port_is_free(port) -> bool:
    """Nothing listens there any more and a new server can bind it (as the web node does:
    SO_REUSEADDR, since the closed connections linger in TIME_WAIT)."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# ----- one stream: the bundled clip, looping, through render ---------------------------------------
@pytest.fixture(scope="module")
def live(tmp_path_factory):
    port = free_port()
    run = GraphRun(tmp_path_factory.mktemp("web"), f"""
name: web-live
nodes:
  - id: cam
    uses: capture
    params: {{source: {CLIP}, loop: true, fps: 10}}
  - id: render
    uses: render
    inputs: {{frame: cam/frame}}
  - id: web
    uses: web
    params: {{port: {port}}}
    inputs: {{frame: render/frame}}
""", ("--duration", "90"))
    run.url = f"http://127.0.0.1:{port}"
    wait_until(run, lambda: get(run.url + "/")[0] == 200, what="page")
    yield run
    run.kill()


def test_page_serves_with_testable_ids(live):
    status, ctype, body = get(live.url + "/")
    assert status == 200 and ctype.startswith("text/html")
    page = parse_page(body)
    assert {"streams", "metrics", "graph", "frames"} <= page.ids
    assert page.stream_imgs == [("cam", "/stream/cam.mjpg")]
    assert page.graph_imgs == ["/graph.png"]
    text = body.decode()
    assert "http://" not in text and "https://" not in text  # no external assets: works offline
    assert "/frames.json" in text and "/metrics.json" in text


def test_graph_png_is_a_picture_of_the_graph(live):
    status, ctype, body = get(live.url + "/graph.png")
    assert status == 200 and ctype == "image/png"
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 300


def test_metrics_json_lists_every_node_with_fps_once_running(live):
    def ready():
        metrics = get_json(live.url + "/metrics.json")
        nodes = metrics.get("nodes", {})
        return metrics if set(nodes) == {"cam", "render", "web"} and all(n["fps"] > 0 for n in nodes.values()) else None

    metrics = wait_until(live, ready, what="metrics with fps")
    assert metrics["graph"] == "web-live"
    assert metrics["kinds"] == {"cam": "capture", "render": "render", "web": "web"}
    for node in metrics["nodes"].values():
        for key in ("fps", "frames_in", "frames_out", "proc_ms_p50", "proc_ms_p95", "latency_ms_p50", "drops", "restarts", "rss_mb"):
            assert key in node


def test_frames_json_counts_frames_as_they_arrive(live):
    first = wait_until(live, lambda: (f := get_json(live.url + "/frames.json"))["cam"]["frames"] > 0 and f, what="frames")
    assert set(first) == {"cam"}
    assert (first["cam"]["width"], first["cam"]["height"]) == (WIDTH, HEIGHT)
    later = wait_until(live, lambda: (f := get_json(live.url + "/frames.json"))["cam"]["frames"] > first["cam"]["frames"] and f,
                       what="more frames")
    assert later["cam"]["seq"] > first["cam"]["seq"]


def test_mjpeg_gives_distinct_jpegs_of_the_render_size(live):
    frames = mjpeg_frames(live.url + "/stream/cam.mjpg", 4)
    images = [decode(jpeg) for jpeg in frames]
    assert all(image.shape == (HEIGHT, WIDTH, 3) for image in images)
    assert len(set(frames)) >= 3  # new frames, not one frame sent again
    assert not np.array_equal(images[0], images[-1])
    status, ctype, body = get(live.url + "/snapshot/cam.jpg")
    assert status == 200 and ctype == "image/jpeg" and decode(body).shape == (HEIGHT, WIDTH, 3)


def test_unknown_stream_and_path_are_404(live):
    for path in ("/stream/nope.mjpg", "/nope"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get(live.url + path)
        assert err.value.code == 404


# ----- two streams into one web node ---------------------------------------------------------------
def test_two_streams_give_two_images_max_fps_and_sigterm_with_a_client_attached(tmp_path):
    port = free_port()
    run = GraphRun(tmp_path, f"""
name: web-two
nodes:
  - id: cam_a
    uses: synthetic
    params: {{width: 320, height: 240, count: 0, fps: 30}}
  - id: cam_b
    uses: synthetic
    params: {{width: 160, height: 96, count: 0, fps: 30}}
  - id: web
    uses: web
    params: {{port: {port}, max_fps: 5, quality: 60}}
    inputs: {{frame: [cam_a/frame, cam_b/frame]}}
""", ("--duration", "60"))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(run, lambda: all(v["frames"] > 0 for v in get_json(url + "/frames.json").values()), what="both streams")
        page = parse_page(get(url + "/")[2])
        assert sorted(page.stream_imgs) == [("cam_a", "/stream/cam_a.mjpg"), ("cam_b", "/stream/cam_b.mjpg")]
        assert decode(mjpeg_frames(url + "/stream/cam_a.mjpg", 1)[0]).shape == (240, 320, 3)
        assert decode(mjpeg_frames(url + "/stream/cam_b.mjpg", 1)[0]).shape == (96, 160, 3)

        # max_fps 5: the sources bring 30 frames a second, the view encodes at most 5 of them
        before = get_json(url + "/frames.json")
        time.sleep(2.0)
        after = get_json(url + "/frames.json")
        for name in ("cam_a", "cam_b"):
            made = after[name]["frames"] - before[name]["frames"]
            came = after[name]["received"] - before[name]["received"]
            assert 3 <= made <= 13 and came >= 30, (name, made, came)

        # a browser stays attached; SIGTERM still ends the runner promptly and the stream ends
        ended = threading.Event()

        def watch():
            try:
                with urllib.request.urlopen(url + "/stream/cam_a.mjpg", timeout=10) as resp:
                    while resp.read(4096):
                        pass
            except OSError:
                pass
            ended.set()

        threading.Thread(target=watch, daemon=True).start()
        time.sleep(0.5)
        start = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.wait(timeout=10) == 0, run.stderr
        assert time.monotonic() - start < 5
        assert ended.wait(5), "the MJPEG response did not end after the graph stopped"
        assert port_is_free(port)
    finally:
        run.kill()


# ----- a port already taken --------------------------------------------------------------------------
def test_taken_port_is_a_one_line_error_naming_params_port(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = GraphRun(tmp_path, f"""
name: web-taken
nodes:
  - id: cam
    uses: synthetic
    params: {{width: 64, height: 48, count: 0, fps: 10}}
  - id: web
    uses: web
    params: {{port: {port}}}
    inputs: {{frame: cam/frame}}
""")
        try:
            assert run.wait(timeout=60) == 1
        finally:
            run.kill()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith("error: node 'web' field 'params.port': "), errors[0]
    assert f"127.0.0.1:{port}" in errors[0] and "already in use" in errors[0]
