"""The app in a real browser: Playwright drives Debian's headless Chromium (no downloaded browser)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_app import query_file, served  # noqa: F401  (the served app fixture, shared)

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.is_file():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                                              "(pip install playwright; no `playwright install` needed)")


@pytest.fixture
def page(served):  # noqa: F811
    _, _, url = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)  # a cap on a shared 2-core machine, not a speed assertion
            page.goto(url)
            page.wait_for_selector("#search")
            yield page
        finally:
            browser.close()


def upload(page, path):
    page.locator("#query input[type=file]").set_input_files(str(path))


def test_upload_search_and_see_results(page, served):  # noqa: F811
    _, tmp, _ = served
    upload(page, query_file(tmp, "browser.png", "RGBA", (60, 45)))
    page.wait_for_selector("#query img")  # the preview: the upload went through
    page.click("#search")
    results = page.locator("#results img")
    results.nth(7).wait_for()  # default k is 8
    assert results.count() >= 8
    assert "Top 8 of 12" in page.locator("#status").inner_text()
    assert "·" in page.locator("#results").inner_text()  # captions: label · score


def test_a_non_image_upload_shows_a_message(page, served):  # noqa: F811
    _, tmp, _ = served
    bad = tmp / "letter.png"
    bad.write_text("Dear reader, this is not a picture.")
    upload(page, bad)
    page.click("#search")
    page.wait_for_selector("#status:has-text('not a readable image')")
    assert page.locator("#results img").count() == 0
