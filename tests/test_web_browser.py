"""The web pages in a real browser: Debian's Chromium driven by Playwright (tests/browser.py).

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
