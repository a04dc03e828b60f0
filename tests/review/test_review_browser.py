"""The review page in a real headless Chromium (Debian's /usr/bin/chromium driven by pip playwright).

Set DISTILL_REVIEW_SCREENSHOT=/some/file.png to keep a screenshot of the page.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
from pseudo_fixtures import TWENTY_WORDS, make_pseudo, make_pseudo_for_words

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


@pytest.fixture(scope="module")
def browser():
    # one Chromium for the module (its start is most of a test's time), a fresh page per test
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def browser_page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
    finally:
        context.close()


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


def test_more_classes_than_keys_relabel_through_the_search_list(tmp_path, browser_page):
    page = browser_page
    pseudo = make_pseudo_for_words(tmp_path, TWENTY_WORDS)  # 20 classes: more than the twelve keys
    review = tmp_path / "pseudo.review.csv"
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    with ReviewServer(make_app(pseudo=pseudo), port=0).start() as server:
        page.goto(server.url)
        items = page.locator("#clip-list li")
        sync_api.expect(items).to_have_count(8)
        names = items.locator(".name").all_text_contents()
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[0])
        sync_api.expect(page.locator("#relabel-choose")).to_be_hidden()
        sync_api.expect(page.locator("#relabel-keys")).to_be_hidden()
        matches = page.locator("#relabel-matches li")
        sync_api.expect(matches).to_have_count(20)  # every class, the ones past the twelfth too

        page.keyboard.press("1")  # no number keys here: "1" relabels nothing ...
        page.keyboard.press("a")  # ... so the first decision saved is this accept
        sync_api.expect(page.locator("#decided-count")).to_have_text("1")
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[1])

        page.keyboard.press("/")  # into the search box; part of a word leaves its class alone
        sync_api.expect(page.locator("#relabel-search")).to_be_focused()
        page.keyboard.type("hei")
        sync_api.expect(matches).to_have_text(["sheila"])
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#decided-count")).to_have_text("2")
        sync_api.expect(page.locator("#clip-name")).to_have_text(names[2])
        sync_api.expect(page.locator("#relabel-search")).to_have_value("")

        page.keyboard.press("/")
        page.keyboard.type("e")  # names starting with it first: eight, then the rest in class order
        sync_api.expect(matches.first).to_have_text("eight")
        sync_api.expect(matches.first).to_have_class("active")
        page.keyboard.press("ArrowDown")  # the second match instead
        second = matches.nth(1).inner_text()
        assert second == "silence"
        page.keyboard.press("Enter")
        sync_api.expect(page.locator("#decided-count")).to_have_text("3")

        rows = review_rows(review, count=3)
        assert rows[names[0]][0] == "accept" and len(rows) == 3
        assert rows[names[1]] == ("relabel", "sheila") and rows[names[2]] == ("relabel", "silence")
        page.keyboard.press("k")
        page.keyboard.press("k")  # back to the clip relabelled as sheila: its choice is marked in the list
        sync_api.expect(page.locator("#clip-decision")).to_have_text("→ sheila")
        sync_api.expect(page.locator("#relabel-matches li.chosen")).to_have_text("sheila")

    assert errors == []
