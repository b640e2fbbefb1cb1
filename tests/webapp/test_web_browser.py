"""The web pages in a real browser: Debian's Chromium driven by Playwright (tests/support/browser.py).

Screenshots of each page are saved in out/test-artifacts/.
"""
import subprocess
import sys
import time

from browser import ARTIFACTS, page  # noqa: F401  (the fixture)
from conftest import ROOT
from test_web_live import free_port


def test_live_view_of_the_running_demo_graph_shows_frames_arriving(page, tmp_path):  # noqa: F811
    port = free_port()
    runner = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), str(ROOT / "graphs/live_web.yaml"), "--no-live",
                               "--set", f"web.port={port}", "--duration", "60"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "runner.log", "w"))
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:  # the pose model takes a few seconds to open
            try:
                page.goto(url, timeout=2000)
                break
            except Exception:
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()
                assert time.monotonic() < deadline, "the live view never answered"
                time.sleep(0.5)
        image = page.locator("#streams img[data-stream=camera]")
        image.wait_for(timeout=30000)
        page.wait_for_function("document.querySelector('#streams img[data-stream=camera]').naturalWidth > 0", timeout=30000)
        first = int(page.locator("#frames").get_attribute("data-total") or 0)
        page.wait_for_function(f"Number(document.querySelector('#frames').dataset.total) >= {first + 5}", timeout=30000)
        assert page.evaluate("document.querySelector('#streams img[data-stream=camera]').naturalWidth") == 720
        page.wait_for_selector("#metrics tr[data-node=pose]", timeout=15000)
        in_column = page.evaluate("[...document.querySelectorAll('#metrics th')].findIndex(th => th.textContent.trim() == 'in')")
        page.wait_for_function(f"Number(document.querySelector('#metrics tr[data-node=pose]').cells[{in_column}].textContent) > 0",
                               timeout=15000)  # the live table counts the frames pose took
        assert page.locator("#metrics tr[data-node]").count() == 8  # every node of graphs/live_web.yaml
        assert page.evaluate("document.querySelector('#graph img').naturalWidth") > 0  # the graph as a picture
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live_view_running.png"), full_page=True)
    finally:
        runner.terminate()
        runner.wait(timeout=15)


def _serve(tmp_path):
    from test_webapp import Server

    jobs = tmp_path / "jobs"
    jobs.mkdir()
    return Server(jobs)


def test_upload_in_the_browser_plays_the_annotated_video_with_a_squat_timeline(page, tmp_path):  # noqa: F811
    import json

    from test_webapp import CLIP

    server = _serve(tmp_path)
    try:
        page.goto(server.url + "/")
        page.set_input_files("#file", str(CLIP))
        page.select_option("#graph", "knn")
        page.click("#upload")
        page.wait_for_url("**/jobs/*", timeout=60000)
        page.wait_for_function("document.querySelector('#progress') && document.querySelector('#progress').textContent.trim() == '100%'",
                               timeout=180000)
        page.wait_for_selector("#result-video", timeout=30000)
        page.screenshot(path=str(ARTIFACTS / "upload_result.png"), full_page=True)
        page.wait_for_function("document.querySelector('#result-video').readyState >= 1", timeout=30000)
        duration = page.evaluate("document.querySelector('#result-video').duration")
        assert 12.0 < duration < 14.0  # 65 frames at the clip's 5 frames/s
        page.evaluate("document.querySelector('#result-video').muted = true; document.querySelector('#result-video').play()")
        page.wait_for_function("document.querySelector('#result-video').currentTime > 0.5", timeout=20000)  # it plays
        assert "squat" in page.text_content("#timeline")
        job_id = page.url.rstrip("/").rsplit("/", 1)[1]
        records = [json.loads(line) for line in (server.jobs_dir / job_id / "records.jsonl").read_text().splitlines()]
        shown = {cell.get_attribute("data-class"): int(cell.inner_text()) for cell in page.locator("td.reps-count").all()}
        assert shown == records[-1]["reps"] and shown["squat"] == 2
    finally:
        server.stop()


def test_the_browser_page_refuses_a_text_file_renamed_mp4(page, tmp_path):  # noqa: F811
    fake = tmp_path / "holiday.mp4"
    fake.write_text("these are not the frames you are looking for\n" * 100)
    server = _serve(tmp_path)
    try:
        page.goto(server.url + "/")
        page.set_input_files("#file", str(fake))
        page.click("#upload")
        page.wait_for_function("document.querySelector('#error').textContent.trim().length > 0", timeout=30000)
        message = page.inner_text("#error")
        page.screenshot(path=str(ARTIFACTS / "upload_refused.png"), full_page=True)
        assert "not a video" in message.lower()
        assert list((server.jobs_dir).iterdir()) == []  # nothing kept
        assert page.url.rstrip("/") == server.url  # still on the upload page
    finally:
        server.stop()


def test_the_video_sinks_mp4_plays_in_chromium_for_the_clips_13_seconds(page, tmp_path):  # noqa: F811
    """The real `video` sink (default codec: H.264 MP4) on the bundled clip, served over
    HTTP without byte ranges (its index comes first, so it plays while downloading): Chromium
    says it can play the file's own codec string, plays it and gives it 65 frames / 5 fps."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    graph = tmp_path / "clip_to_video.yaml"
    graph.write_text(f"""
name: clip-to-video
nodes:
  - id: camera
    uses: capture
    params: {{source: {json_string(ROOT / "data/google_pose_reference/pose_squats.mp4")}}}
  - id: video
    uses: video
    params: {{path: {json_string(tmp_path / "site" / "clip.mp4")}}}
    inputs: {{frame: camera/frame}}
""")
    run = subprocess.run([sys.executable, str(ROOT / "runner.py"), str(graph), "--no-live"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    data = (tmp_path / "site" / "clip.mp4").read_bytes()
    avcc = data.find(b"avcC")  # the decoder record: version, profile, compatibility, level
    assert avcc > 0 and data.find(b"moov") < data.find(b"mdat"), "not H.264, or its index is not first"
    codecs = f"avc1.{data[avcc + 5:avcc + 8].hex().upper()}"
    (tmp_path / "site" / "index.html").write_text('<video id="v" muted preload="auto" src="clip.mp4"></video>')

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path / "site")))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/index.html")
        for codec in (codecs, "avc1.42E01E"):  # the file's own profile, and Constrained Baseline
            assert page.evaluate(f"""document.getElementById('v').canPlayType('video/mp4; codecs="{codec}"')"""), codec
        page.wait_for_function("document.getElementById('v').readyState >= 1 || document.getElementById('v').error",
                               timeout=30000)
        assert page.evaluate("document.getElementById('v').error") is None
        assert abs(page.evaluate("document.getElementById('v').duration") - 13.0) < 0.05  # 65 frames at 5 fps
        assert page.evaluate("[document.getElementById('v').videoWidth, document.getElementById('v').videoHeight]") == [720, 1280]
        page.evaluate("document.getElementById('v').play()")
        page.wait_for_function("document.getElementById('v').currentTime > 1.0", timeout=20000)  # it plays
        assert page.evaluate("document.getElementById('v').error") is None
    finally:
        httpd.shutdown()
        httpd.server_close()


def json_string(path) -> str:
    """A path as a YAML (JSON) string."""
    import json

    return json.dumps(str(path))
