"""The cohort report and a feedback page in a real headless browser (Debian's chromium, see browser.py).

The page must load, every image must decode, and nothing may reach the console; a control page with a
console error and a broken image proves the harness would notice.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from autograder.feedback import write_feedback
from autograder.gradebook import Gradebook
from autograder.report import write_report
from browser import CHROMIUM, Browser
from cohort_data import EXERCISE, points, synthetic_gradebook

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")

IMAGES = "Array.from(document.images).map(i => ({src: i.src.slice(0, 40), ok: i.complete && i.naturalWidth > 0}))"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    book = synthetic_gradebook(root / "gradebook.sqlite")
    with Gradebook(book) as gb:
        report = write_report(gb, EXERCISE, root / "report")
        feedback = write_feedback(gb, EXERCISE, root / "feedback", release=True)
        ja_report = write_report(gb, EXERCISE, root / "ja-report", lang="ja")
        ja_feedback = write_feedback(gb, EXERCISE, root / "ja-feedback", release=True, lang="ja")
    return report, feedback, ja_report, ja_feedback


def test_the_harness_catches_console_errors_and_broken_images(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png"><script>console.error("boom")</script></body></html>')
    browser.open(page.as_uri())
    problems = browser.problems()
    assert any("boom" in p for p in problems), problems
    assert any("failed to load" in p for p in problems), problems
    assert browser.evaluate(IMAGES) == [{"src": (tmp_path / "missing.png").as_uri()[:40], "ok": False}]


def test_report_renders_with_images_and_no_console_errors(browser, pages, tmp_path):
    report, *_ = pages
    browser.open(report.as_uri())
    assert browser.problems() == []
    images = browser.evaluate(IMAGES)
    assert len(images) == 3 and all(i["ok"] and i["src"].startswith("data:image/png") for i in images), images
    headings = browser.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
    assert {"Score distribution", "Pass rate per check", "Commonest failure messages", "Runtime",
            "Submissions that need a look"} <= set(headings)
    # made-up failure messages with markup are shown as text, never as markup
    assert browser.evaluate("document.querySelectorAll('td b').length") == 0
    assert "<b>not</b> html & friends" in browser.evaluate("document.body.innerText")
    shot = browser.call("Page.captureScreenshot", session=browser.session, format="png")["data"]
    assert len(shot) > 10_000  # a rendered page, not a blank one


def test_feedback_page_renders(browser, pages):
    _, feedback, *_ = pages
    browser.open(feedback[1].as_uri())
    assert browser.problems() == []
    assert browser.evaluate("document.querySelectorAll('tbody tr').length") == len(points())  # one row per check
    assert "u001" in browser.evaluate("document.title")


JAPANESE_FONT = subprocess.run(["fc-list", ":lang=ja"], capture_output=True, text=True).stdout.strip() if shutil.which(
    "fc-list") else ""


def _text_shot(browser, text: str) -> str:
    """A screenshot (PNG, base64) of `text` drawn alone at the page's top-left in the page's own font."""
    rect = browser.evaluate(f"""(() => {{
        const span = document.createElement('span');
        span.id = 'probe';
        span.textContent = {json.dumps(text)};
        span.style.cssText = 'position:fixed;left:0;top:0;font-size:40px;background:#fff;color:#000;z-index:9';
        document.body.appendChild(span);
        const r = span.getBoundingClientRect();
        return {{x: r.x, y: r.y, width: r.width, height: r.height}};
    }})()""")
    shot = browser.call("Page.captureScreenshot", session=browser.session, format="png",
                        clip={**rect, "scale": 1})["data"]
    browser.evaluate("document.getElementById('probe').remove() ?? true")
    return shot


@pytest.mark.skipif(not JAPANESE_FONT, reason="no Japanese font (make system-deps installs fonts-noto-cjk)")
def test_japanese_titles_are_drawn_not_boxes(browser, pages, tmp_path_factory):
    """A string of missing glyphs draws the same box for every character, so it looks the same in any order;
    real glyphs do not. The Japanese characters of each page's headings (the exercise's bilingual title; on the
    Japanese pages the catalog's words too), forwards and backwards, must differ. Screenshots are kept as test
    artefacts in pytest's temporary folder."""
    report, feedback, ja_report, ja_feedback = pages
    shots = tmp_path_factory.mktemp("screenshots")
    for page in (report, feedback[1], ja_report, ja_feedback[1]):
        browser.open(page.as_uri())
        japanese = browser.evaluate("[...[...document.querySelectorAll('h1, h2')].map(h => h.textContent).join('')]"
                                    ".filter(c => c >= '\\u3040').join('')")
        assert len(set(japanese)) >= 3, japanese  # e.g. を一歩ずつ from the exercise's bilingual title
        assert _text_shot(browser, japanese) != _text_shot(browser, japanese[::-1]), f"{page.name}: boxes"
        shot = browser.call("Page.captureScreenshot", session=browser.session, format="png")["data"]
        (shots / f"{page.parent.name}-{page.stem}.png").write_bytes(base64.b64decode(shot))
        # the control: characters no font has really are drawn as identical boxes
        assert _text_shot(browser, "\U000f0001\U000f0002\U000f0003") == _text_shot(browser, "\U000f0003\U000f0002\U000f0001")
    assert len(ja_report.read_text().split("得点分布")) == 2  # the Japanese page is in Japanese


LAYOUT = """(() => {
    const oneLine = el => { const r = document.createRange(); r.selectNodeContents(el);
                            return r.getClientRects().length <= 1; };
    // headings a narrow screen hides (a table of cards names each cell beside it instead) are not words shown
    const words = [...document.querySelectorAll('td.word, th')].filter(el => !(el.closest('thead')?.offsetWidth <= 1));
    return {pageFits: document.documentElement.scrollWidth <= window.innerWidth,
            broken: words.filter(el => el.textContent.trim() && !oneLine(el)).map(el => el.textContent),
            words: words.length};
})()"""


@pytest.mark.parametrize("width", [1000, 390], ids=["desktop", "phone"])
def test_pages_fit_the_window_and_status_words_stay_whole(browser, pages, width):
    report, feedback, ja_report, ja_feedback = pages
    browser.call("Emulation.setDeviceMetricsOverride", session=browser.session, width=width, height=900,
                 deviceScaleFactor=1, mobile=width < 500)
    try:
        for page in (report, feedback[1], ja_report, ja_feedback[1]):
            browser.open(page.as_uri())
            layout = browser.evaluate(LAYOUT)
            assert layout["pageFits"], f"{page.name} is wider than a {width}-pixel window"
            assert layout["words"] and layout["broken"] == [], f"{page.name} at {width} px breaks {layout['broken']}"
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride", session=browser.session)


def test_no_path_of_the_grading_machine_on_pages(pages):
    report, feedback, ja_report, ja_feedback = pages
    for page in (report, *feedback, ja_report, *ja_feedback):
        text = page.read_text()
        assert str(Path.home()) not in text and "/work/" not in text and "/tmp/" not in text, page.name
