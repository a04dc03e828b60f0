"""The review page in a real headless Chromium (Debian's /usr/bin/chromium driven by pip playwright).

Set DISTILL_REVIEW_SCREENSHOT=/some/file.png to keep a screenshot of the page.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
from pseudo_fixtures import make_pseudo

from distill.review import ReviewServer, make_app

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (install it with: apt-get install -y chromium chromium-driver)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright module is missing (install it with: pip install playwright)")

ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--mute-audio",
]


def review_rows(path: Path, *, count: int, timeout: float = 10.0) -> dict[str, tuple[str, str]]:
    """The review CSV's rows once it holds ``count`` of them (the page saves asynchronously)."""
    deadline = time.monotonic() + timeout
    rows: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        if path.exists():
            with open(path, newline="") as fh:
                rows = {r["fname"]: (r["decision"], r["label"]) for r in csv.DictReader(fh)}
            if len(rows) >= count:
                return rows
        time.sleep(0.05)
    return rows


@pytest.fixture()
def browser_page():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def test_review_page_in_chromium(tmp_path, browser_page):
    page = browser_page
    pseudo = make_pseudo(tmp_path)
    review = tmp_path / "pseudo.review.csv"
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    outside: list[str] = []

    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as server:
        page.on("request", lambda req: None if req.url.startswith(server.url) else outside.append(req.url))
        page.goto(server.url)
        items = page.locator("#clip-list li")
        sync_api.expect(items).to_have_count(8)
        sync_api.expect(page.locator("#total-count")).to_have_text("8")
        sync_api.expect(page.locator("#decided-count")).to_have_text("0")
        names = items.locator(".name").all_text_contents()
        assert names[0] == "clip_001.wav"  # least confident first
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[0])
        sync_api.expect(page.locator("#spectrogram")).to_have_js_property("naturalWidth", 392)
        assert "silence" in page.locator("#relabel-keys").inner_text()  # the relabel keys are documented

        page.keyboard.press("a")  # accept the first clip; the page moves on to the next
        sync_api.expect(page.locator("#decided-count")).to_have_text("1")
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[1])
        page.keyboard.press("=")  # relabel the second clip as "go" (keys 1..9, 0, -, = are the 12 classes)
        sync_api.expect(page.locator("#decided-count")).to_have_text("2")
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[2])
        page.select_option("#relabel", "no")  # relabel the third with the select box
        sync_api.expect(page.locator("#decided-count")).to_have_text("3")
        page.keyboard.press("k")  # back to the third clip, which shows its decision
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[2])
        sync_api.expect(page.locator("#clip-decision")).to_have_text("→ no")

        rows = review_rows(review, count=3)
        assert rows == {names[0]: ("accept", "no"), names[1]: ("relabel", "go"), names[2]: ("relabel", "no")}

        page.check("#filter-disagree")  # only the clip the teachers disagree on
        sync_api.expect(items).to_have_count(1)
        sync_api.expect(items.locator(".name")).to_have_text("clip_002.wav")
        page.uncheck("#filter-disagree")
        page.select_option("#filter-class", "unknown")
        sync_api.expect(items).to_have_count(2)
        page.select_option("#filter-class", "")
        sync_api.expect(items).to_have_count(8)

        page.reload()  # decisions come back from the server
        sync_api.expect(page.locator("#decided-count")).to_have_text("3")
        sync_api.expect(page.locator("#clip-list li .badge.relabel")).to_have_count(2)
        page.locator("#clip-list li").nth(1).click()  # the clip the teachers disagree on
        shot = os.environ.get("DISTILL_REVIEW_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=False)

    assert errors == [] and outside == []
