"""The TA's workbench in a real `autograder serve`: the latest upload counts everywhere, a TA walks every task in
Chromium (find a student, open and download their attempt, correct and explain a check, grant an extension, answer
a question, score a manual item across students, release and take it back), the student's page and the CSVs show
each change, the log names the TA, and every page fits 1000- and 390-pixel windows in both languages.

One server (four students and a manual item) serves the module; its tests run in the order written."""

from __future__ import annotations

import base64
import csv
import io
import re
import time
from pathlib import Path

import httpx
import pytest

from browser import CHROMIUM, Browser
from cohort_data import EXERCISE, SOLUTION, Expect, expected_score, personal, points
from serving import MANUAL_ITEM, TAS, make_service_course, start_server, submit, wait_graded

pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)"),
              pytest.mark.xdist_group("workbench")]
TA = "ta:ta1"
TA_LABEL = f"{TAS['ta1']} (ta1)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("workbench")
    course, roster = make_service_course(root, students=4, uploads_per_hour=10, manual=True)
    running = start_server(root, course, roster)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _csrf(text: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)


def _grades(server) -> dict[str, dict]:
    with server.browser_session(TA) as ta:
        return {line["student_id"]: line for line in csv.DictReader(io.StringIO(ta.get(f"/ta/{EXERCISE}/grades.csv")
                                                                                .text))}


def test_the_latest_upload_counts_in_the_export_the_dashboard_and_the_student_page(server):
    good = personal(SOLUTION.read_bytes(), "s1")
    sent = [submit(server, "s1", good, "first.ipynb"), submit(server, "s1", b"{broken", "broken.ipynb"),
            submit(server, "s1", good, "again.ipynb")]
    ids = [answer.json()["id"] for answer in sent]
    results = [wait_graded(server, "s1", public_id) for public_id in ids]
    assert [r["status"] for r in results] == ["graded", "invalid", "graded"]
    assert [r["counts"] for r in results] == [False, False, True]
    line = _grades(server)["s1"]
    assert (line["status"], line["source"]) == ("graded", "again.ipynb")  # the latest attempt's own name
    full = expected_score(Expect("graded", set(), None), points())
    assert (float(line["total"]), line["awaiting_ta"]) == (full, MANUAL_ITEM)  # the manual item: still to score
    with server.browser_session("s1") as s1:
        home = s1.get("/").text
        counted = re.findall(r'<tr class="counts"><td[^>]*><a href="/attempts/(\w+)"', home)
        assert counted == [ids[2]]
    with server.browser_session(TA) as ta:
        listed = ta.get(f"/ta/{EXERCISE}/students", params={"q": "student 1"}).text
        assert "s1" in listed and "s2" not in listed and "graded" in listed
        page = ta.get(f"/ta/{EXERCISE}/students/s1").text
        assert page.count('class="badge"') == 1 and "again.ipynb" in page.split('class="badge"')[0].rsplit(
            "<section", 1)[1]


def _submit_form(browser: Browser, form: str, fields: dict[str, str]) -> None:
    """Fill a form's fields (by name) as a person would and send it; wait for the next page."""
    script = "".join(f"f.querySelector('[name={name}]').value = {value!r};" for name, value in fields.items())
    browser.events.clear()
    browser.evaluate(f"(() => {{ const f = document.querySelector({form!r}); {script} f.requestSubmit(); "
                     "return true; })()")
    browser.wait_for("Page.loadEventFired")
    browser.settle()
    assert browser.problems() == [], browser.problems()


def _text(browser: Browser) -> str:
    return browser.evaluate("document.body.innerText")


def test_a_ta_walks_every_task_in_a_browser(server, browser, tmp_path):
    ids = {}
    for who in ("s2", "s3", "s4"):
        ids[who] = submit(server, who, personal(SOLUTION.read_bytes(), who)).json()["id"]
    for who, public_id in ids.items():
        assert wait_graded(server, who, public_id)["status"] == "graded"
    with server.browser_session("s2") as s2:  # a question from the student's feedback page
        page = s2.get(f"/attempts/{ids['s2']}").text
        asked = s2.post(f"/attempts/{ids['s2']}/ask", data={"csrf": _csrf(page), "item": "test_translation",
                                                             "question": "My translation reads fine; why 0?"})
        assert asked.status_code == 303

    browser.open(f"{server.url}/login/{server.tokens[TA]}")
    assert browser.evaluate("location.pathname") == f"/ta/{EXERCISE}"
    assert "Questions (1 open)" in _text(browser)
    # find a student by name, open their attempt, download the notebook
    browser.open(f"{server.url}/ta/{EXERCISE}/students")
    _submit_form(browser, "form.search", {"q": "Student 2"})
    assert browser.evaluate("document.querySelectorAll('tbody tr').length") == 1
    browser.open(browser.evaluate("document.querySelector('tbody a').href"))
    assert "Student 2" in _text(browser) and "My translation reads fine" in _text(browser)
    downloads = tmp_path / "downloads"
    browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
    browser.evaluate("document.querySelector('a[href$=\"/notebook\"]').click(), true")
    deadline = time.monotonic() + 30
    while not list(downloads.glob("*.ipynb")):
        assert time.monotonic() < deadline, "the notebook did not download"
        time.sleep(0.2)
    assert b"Submitted by s2" in next(downloads.glob("*.ipynb")).read_bytes()
    browser.settle()
    browser.events.clear()  # a download ends its request as "aborted" for the page: not a problem
    # correct a check with a comment, answer the question, grant an extension
    _submit_form(browser, "form.inline:has(input[value=test_translation])",
                 {"points": "0.5", "comment": "Half: the translation is right but printed, not assigned."})
    _submit_form(browser, "form.answer-form", {"answer": "See the comment on the check: half its points."})
    _submit_form(browser, "#deadline + form", {"until": "2030-01-31T23:59", "comment": "Illness."})
    page = _text(browser)
    assert "0.5 / 1" in page and "was 1" in page and "deadline 2030-01-31T14:59:00+00:00 (Illness.)" in page
    # score the manual item across three students, one after the other
    browser.open(f"{server.url}/ta/{EXERCISE}/items/{MANUAL_ITEM}")
    left = int(re.search(r"(\d+) student\(s\) still to score", _text(browser)).group(1))
    assert left >= 3
    scored = []
    for points_given in ("2", "1", "1.5"):
        scored.append(browser.evaluate("document.querySelector('.work h2').textContent"))
        _submit_form(browser, "form.adjust", {"points": points_given, "comment": "Clear and short."})
    assert f"{left - 3} student(s) still to score." in _text(browser)
    # compare the cohort's code: everyone handed in the one solution, so pairs, each side by side, marked
    browser.open(f"{server.url}/ta/{EXERCISE}")
    _submit_form(browser, "form[action$='/similarity']", {})
    assert "never proof of copying" in _text(browser)
    browser.open(browser.evaluate("document.querySelector('a[href*=\"/similarity/pair-\"]').href"))
    assert browser.evaluate("document.querySelectorAll('.side mark').length") > 0
    with server.browser_session(TA) as ta:
        assert ta.get(f"/ta/{EXERCISE}/similarity/..%2Fgradebook.sqlite").status_code == 404
    with server.browser_session("s3") as s3:
        assert s3.get(f"/ta/{EXERCISE}/similarity/index.html").status_code in (403, 404)
    # release (uploads must close first, and the release asks), then take it back
    browser.open(f"{server.url}/ta/{EXERCISE}/release")
    assert "Close them first" in _text(browser) or "close them first" in _text(browser)
    _submit_form(browser, "form[action$='/uploads']", {})
    browser.open(f"{server.url}/ta/{EXERCISE}/release")
    _submit_form(browser, "form[action$='/release']", {})
    assert "Feedback is released" in _text(browser)
    with server.browser_session("s2") as s2:
        released = s2.get(f"/attempts/{ids['s2']}").text
    _submit_form(browser, "form[action$='/unrelease']", {})
    assert "Feedback is not released" in _text(browser)

    # what the student saw while it was released: the TA's comment, the answer, their own deadline
    assert "Half: the translation is right but printed" in released and "See the comment on the check" in released
    assert "Sato Hanako (ta1)" in released
    with server.browser_session("s2") as s2:
        assert "2030-01-31 23:59 JST" in s2.get("/").text and "extended by a TA" in s2.get("/").text
        hidden_again = s2.get(f"/attempts/{ids['s2']}").text
    assert "Shown after the deadline, 2030-01-31 23:59 JST." in hidden_again  # taken back; held to their own deadline
    # the CSVs carry every change, and the history names the TA
    lines = _grades(server)
    full = expected_score(Expect("graded", set(), None), points())
    assert float(lines["s2"]["test_translation"]) == 0.5 and "Half: the translation" in lines["s2"]["ta_comments"]
    assert lines["s2"]["deadline"] == "2030-01-31T14:59:00+00:00"
    given = {sid.split()[-1]: float(p) for sid, p in zip(scored, ("2", "1", "1.5"))}
    for sid, value in given.items():
        assert float(lines[sid][MANUAL_ITEM]) == value
    assert float(lines["s2"]["total"]) == full - 0.5 + given["s2"]
    with server.browser_session(TA) as ta:
        history = list(csv.DictReader(io.StringIO(ta.get(f"/ta/{EXERCISE}/history.csv").text)))
    actions = [(h["by"], h["action"]) for h in history]
    for action in ("points", "answer", "extension", "manual", "close_uploads", "release", "unrelease"):
        assert (TA_LABEL, action) in actions, actions
    assert ("s2", "request") in actions


LAYOUT = """(() => {
    const words = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
        const node = walker.currentNode;
        if (!node.parentElement.closest('td, th, li, p, h1, h2, label, summary') ||
            node.parentElement.closest('pre, svg, .msg')) continue;
        for (const m of node.textContent.matchAll(/[A-Za-z][A-Za-z0-9_'-]{1,23}/g)) {
            const r = document.createRange();
            r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
            const lines = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top)));
            if (lines.size > 1) words.push(m[0]);
        }
    }
    const cut = [...document.querySelectorAll('.table')].filter(t => t.scrollWidth > t.clientWidth + 1).length;
    return {fits: document.documentElement.scrollWidth <= window.innerWidth, broken: words, cut: cut};
})()"""


@pytest.mark.parametrize("language", ["en", "ja"])
def test_every_page_fits_a_desktop_and_a_phone_with_no_cut_column_and_no_broken_word(server, browser, language,
                                                                                      tmp_path_factory):
    shots = tmp_path_factory.mktemp(f"screenshots-{language}")
    with server.browser_session("s2") as s2:
        found = re.search(r'href="/attempts/(\w+)"', s2.get("/").text)
    # (xdist may run this module's tests in more than one server: this one needs an attempt of its own then)
    attempt = found.group(1) if found else submit(server, "s2", personal(SOLUTION.read_bytes(), "s2")).json()["id"]
    wait_graded(server, "s2", attempt)
    pages = {"student-home": ("s2", "/"), "student-attempt": ("s2", f"/attempts/{attempt}"),
             "ta-dashboard": (TA, f"/ta/{EXERCISE}"), "ta-students": (TA, f"/ta/{EXERCISE}/students"),
             "ta-student": (TA, f"/ta/{EXERCISE}/students/s2"), "ta-item": (TA, f"/ta/{EXERCISE}/items/{MANUAL_ITEM}"),
             "ta-requests": (TA, f"/ta/{EXERCISE}/requests"),
             "ta-similarity": (TA, f"/ta/{EXERCISE}/similarity/index.html")}
    with server.browser_session("s3") as s3:  # a pair's page too: two students with the same solution
        if 'href="/attempts/' not in s3.get("/").text:
            other = submit(server, "s3", personal(SOLUTION.read_bytes(), "s3")).json()["id"]
            wait_graded(server, "s3", other)
    with server.browser_session(TA) as ta:
        ta.post(f"/ta/{EXERCISE}/similarity", data={"csrf": _csrf(ta.get(f"/ta/{EXERCISE}").text)})
        pair = re.search(r'href="(/ta/[^"]+/similarity/pair-[0-9a-f]+\.html)"', ta.get(f"/ta/{EXERCISE}").text)
    pages["ta-similarity-pair"] = (TA, pair.group(1))
    for width in (1000, 390):
        browser.call("Emulation.setDeviceMetricsOverride", session=browser.session, width=width, height=900,
                     deviceScaleFactor=1, mobile=width < 500)
        try:
            for name, (who, path) in pages.items():
                browser.open(f"{server.url}/login/{server.tokens[who]}")
                browser.open(f"{server.url}/language/{language}")
                browser.open(f"{server.url}{path}")
                assert browser.problems() == [], (name, browser.problems())
                layout = browser.evaluate(LAYOUT)
                shot = browser.call("Page.captureScreenshot", session=browser.session, format="png")["data"]
                (shots / f"{name}-{width}.png").write_bytes(base64.b64decode(shot))
                assert layout["fits"], f"{name} is wider than a {width}-pixel window"
                assert layout["cut"] == 0, f"{name} at {width} px hides columns"
                assert layout["broken"] == [], f"{name} at {width} px breaks {layout['broken']}"
        finally:
            browser.call("Emulation.clearDeviceMetricsOverride", session=browser.session)
    browser.open(f"{server.url}/language/en")
    assert list(Path(shots).glob("*.png"))


def test_a_revoked_link_stops_at_once_and_the_new_one_works(server):
    with server.browser_session(TA) as ta:
        page = ta.get(f"/ta/{EXERCISE}/students/s4").text
        shown = ta.post(f"/ta/{EXERCISE}/students/s4/link", data={"csrf": _csrf(page)})
        assert shown.status_code == 200
        link = re.search(r'<pre class="link">([^<]+)</pre>', shown.text).group(1)
    with httpx.Client(base_url=server.url) as old:
        assert old.get(f"/login/{server.tokens['s4']}").status_code == 401
        assert old.get(link.removeprefix(server.url)).status_code == 303
    access = (server.book.parent / "access.csv").read_text()
    assert link in access and server.tokens["s4"] not in access
    assert "'=HYPERLINK" in access  # a TA name that is a formula stays text in the spreadsheet
