"""A real Chromium for the web tests: Debian's /usr/bin/chromium driven by Playwright.

`.ci/run` installs chromium (apt) and the test extra installs playwright; where either is
missing the browser tests skip with the reason. Screenshots are saved as test artefacts in
out/test-artifacts/.
"""
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM = os.environ.get("POSEGRAPH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "out" / "test-artifacts"


def chromium_unavailable_reason() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def page(request):
    """A fresh headless Chromium page; a screenshot of it is saved when the test ends."""
    reason = chromium_unavailable_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            yield page
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            except Exception:
                pass  # the page may be gone when the test failed; the assertion says why
        finally:
            browser.close()
