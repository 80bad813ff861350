"""The run page in a real browser: headless Chromium, driven over the DevTools Protocol (tests/page/cdp.py).

Outside CI the test is skipped when no Chromium is installed; under CI (``CI=true``, as `.ci/run` sets) a missing
browser fails it: `.ci/run` installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from syngen.page import write_page
from tests.page.cdp import Browser, Page
from tests.page.fixtures import FAILURES, IMAGES, PAIRS, make_run

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VISIBLE_PAIRS = "[...document.querySelectorAll('.pair')].filter(e => e.offsetParent !== null).length"


def chromium() -> str:
    """The browser's path; skips the test (fails it under CI) when there is none."""
    found = next((path for name in NAMES if (path := shutil.which(name))), None)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("no Chromium under CI: `.ci/run` installs it with `apt-get install -y chromium chromium-driver`")
    pytest.skip("no Chromium installed (apt-get install -y chromium); CI runs this test")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    executable = chromium()
    html = write_page(make_run(tmp_path_factory.mktemp("out")), 16)
    with Browser.start(executable) as browser:
        yield browser.open(html.resolve().as_uri())


def test_renders_without_console_errors(page: Page) -> None:
    assert page.evaluate("document.title") == "syngen run demo"
    assert page.errors() == []
    broken = "[...document.images].filter(i => i.src && !(i.complete && i.naturalWidth > 0)).length"
    assert page.evaluate(broken) == 0  # every inline image decodes (the lightbox's is empty until opened)
    assert page.evaluate("document.querySelectorAll('svg').length") == 5


def test_statistics_and_failures_tables_with_the_counts(page: Page) -> None:
    stats = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#statistics-table tbody tr')]"
        ".map(r => [r.cells[0].innerText, r.cells[1].innerText]))"
    )
    assert stats["images"] == str(IMAGES) and stats["preference pairs"] == str(sum(PAIRS.values()))
    counts = page.evaluate(
        "[...document.querySelectorAll('#failures tbody tr')].map(r => [r.dataset.reason, +r.cells[2].innerText])"
    )
    assert counts == [["ground/no_phrases", 3], ["segment/timeout", 1], ["negatives/ValueError", 1]]
    assert sum(n for _, n in counts) == len(FAILURES)


def test_kind_filter_click_changes_the_visible_pairs(page: Page) -> None:
    assert page.evaluate(VISIBLE_PAIRS) == 8
    page.click("input.kind[value='semantic']")
    assert page.evaluate(VISIBLE_PAIRS) == PAIRS["boundary"]
    assert page.evaluate("document.getElementById('pairs-shown').innerText") == "4"
    assert page.evaluate(
        "[...document.querySelectorAll('.pair')].every(p => p.hidden === (p.dataset.kind === 'semantic'))"
    )
    page.click("input.kind[value='semantic']")
    assert page.evaluate(VISIBLE_PAIRS) == 8


def test_iou_range_filter(page: Page) -> None:
    page.evaluate("(() => {const e = document.getElementById('iou-min'); e.value = '0.3';"
                  " e.dispatchEvent(new Event('change'));})()")  # fmt: skip
    assert page.evaluate(VISIBLE_PAIRS) == PAIRS["boundary"]  # semantic pairs have IoU 0
    page.evaluate("(() => {const e = document.getElementById('iou-min'); e.value = '0';"
                  " e.dispatchEvent(new Event('change'));})()")  # fmt: skip
    assert page.evaluate(VISIBLE_PAIRS) == 8


def test_failure_reason_filter(page: Page) -> None:
    visible = "[...document.querySelectorAll('#failures tbody tr')].filter(r => !r.hidden).length"
    page.evaluate("(() => {const e = document.getElementById('reason'); e.value = 'segment/timeout';"
                  " e.dispatchEvent(new Event('change'));})()")  # fmt: skip
    assert page.evaluate(visible) == 1
    page.evaluate("(() => {const e = document.getElementById('reason'); e.value = '';"
                  " e.dispatchEvent(new Event('change'));})()")  # fmt: skip
    assert page.evaluate(visible) == 3


def test_click_enlarges_a_sample(page: Page) -> None:
    assert page.evaluate("getComputedStyle(document.getElementById('lightbox')).display") == "none"
    page.click("img.zoom[alt='sample 1']")
    assert page.evaluate("getComputedStyle(document.getElementById('lightbox')).display") == "flex"
    same = "document.querySelector('#lightbox img').src === document.querySelector(\"img[alt='sample 1']\").src"
    assert page.evaluate(same)
    page.click("#lightbox")
    assert page.evaluate("getComputedStyle(document.getElementById('lightbox')).display") == "none"
    assert page.errors() == []
