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
