"""The submission service as students, TAs and scripts use it: a real `autograder serve` over HTTP.

One server (a t5_decoding course with short limits, three uploads an hour) serves the module's tests;
the durability test runs servers of its own and kills one mid-queue.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autograder.gradebook import Gradebook
from autograder.i18n import render
from autograder.intake import Roster, Student
from autograder.service.store import DEFAULT_TAS, Person, holder, issue_links
from browser import CHROMIUM, Browser
from cohort_data import EXERCISE, SOLUTION, Expect, expected_score, personal, points
from conftest import ROOT, mutate, wrong_answers
from serving import (AUTOGRADER, MAX_MIB, UPLOADS_PER_HOUR, VISIBLE, burst, make_service_course, start_server, submit,
                     wait_graded)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server shared by the tests that do not change what students see (nothing is released)."""
    root = tmp_path_factory.mktemp("service")
    course, roster = make_service_course(root)
    running = start_server(root, course, roster)
    yield running
    running.stop()


@pytest.fixture
def own_server(tmp_path):
    course, roster = make_service_course(tmp_path)
    running = start_server(tmp_path, course, roster)
    yield running
    running.stop()


def test_students_see_the_visible_checks_until_the_ta_releases_the_rest(own_server):
    server = own_server
    edits, lost = wrong_answers(EXERCISE)["forgot the batch dimension"]
    sent = {"s1": (personal(SOLUTION.read_bytes(), "s1"), set()),
            "s2": (personal(mutate(SOLUTION, *edits), "s2"), set(lost))}
    ids = {}
    for who, (data, _) in sent.items():
        answer = submit(server, who, data)
        assert answer.status_code == 202 and answer.json()["status"] == "queued", answer.text
        ids[who] = answer.json()["id"]
    check_points = points()
    for who, (_, failing) in sent.items():
        result = wait_graded(server, who, ids[who])
        assert result["status"] == "graded" and result["released"] is False
        tests = {t["number"]: t for t in result["results"]["tests"]}
        assert {n for n, t in tests.items() if t.get("status") == "failed"} == failing & VISIBLE
        assert result["max_score"] == sum(check_points[c] for c in VISIBLE)
        assert result["score"] == sum(check_points[c] for c in VISIBLE - failing)
        hidden = [t for number, t in tests.items() if number not in VISIBLE]
        assert hidden and all(t["output"] == "hidden" and "score" not in t and "status" not in t for t in hidden)
        assert "extra_data" not in result["results"]  # the run's diagnostics are the TA's

    with server.browser_session("ta:ta1") as ta:
        page = ta.get(f"/ta/{EXERCISE}")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
        refused = ta.post(f"/ta/{EXERCISE}/release", data={"csrf": csrf, "confirm": "yes"})
        assert refused.status_code == 400 and "Close the uploads" in refused.text  # uploads are open
        assert ta.post(f"/ta/{EXERCISE}/uploads", data={"csrf": csrf, "open": "no"}).status_code == 303
        assert "Yes, release" in ta.get(f"/ta/{EXERCISE}/release").text  # the release asks first
        assert ta.post(f"/ta/{EXERCISE}/release", data={"csrf": csrf, "confirm": "yes"}).status_code == 303
    closed = submit(server, "s3", personal(SOLUTION.read_bytes(), "s3"))
    assert closed.status_code == 409 and "closed" in closed.json()["error"]
    for who, (_, failing) in sent.items():
        released = wait_graded(server, who, ids[who])
        assert released["released"] is True
        assert {t["number"] for t in released["results"]["tests"] if t.get("status") == "failed"} == failing
        # the score `autograder grade` gives the same notebook
        assert released["score"] == expected_score(Expect("graded", failing, None), check_points)

    # a rubric change, then the dashboard's rescore: stored outcomes, new points
    rubric = server.course / "rubrics" / f"{EXERCISE}.toml"
    text = rubric.read_text()
    with server.browser_session("ta:ta1") as ta:
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', ta.get(f"/ta/{EXERCISE}").text).group(1)
        rubric.write_text(text + "\n[checks.test_no_such_check]\npoints = 1\n")  # a typo: refused, nothing changes
        refused = ta.post(f"/ta/{EXERCISE}/regrade", data={"csrf": csrf})
        assert refused.status_code == 400 and "test_no_such_check" in refused.text
        rubric.write_text(text.replace("[checks.test_translation]\npoints = 1",
                                       "[checks.test_translation]\npoints = 3"))
        assert ta.post(f"/ta/{EXERCISE}/regrade", data={"csrf": csrf}).status_code == 303
    rescored = wait_graded(server, "s1", ids["s1"])
    assert rescored["score"] == expected_score(Expect("graded", set(), None), check_points) + 2


def test_the_api_refuses_with_one_sentence(server):
    with server.client() as anonymous:
        no_token = anonymous.post("/api/submissions", data={"exercise": EXERCISE}, files={"file": ("a.ipynb", b"{}")})
        assert no_token.status_code == 401 and "Bearer" in no_token.json()["error"]
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer not-a-token"}) as forged:
        assert forged.get("/api/submissions/abc").status_code == 401
    mine = submit(server, "s3", b"not a notebook", "junk.ipynb")
    assert mine.status_code == 202
    # another student's submission does not exist for you
    with server.client("s4") as other:
        answer = other.get(f"/api/submissions/{mine.json()['id']}")
        assert answer.status_code == 404 and answer.json()["error"]
    # every file is a row: the junk ends invalid, with a sentence
    junk = wait_graded(server, "s3", mine.json()["id"])
    assert junk["status"] == "invalid" and junk["results"]["output"]
    too_big = submit(server, "s4", b"x" * int(MAX_MIB * 2**20 + 4096))
    assert too_big.status_code == 413 and "MiB" in too_big.json()["error"]
    with server.client("s4") as client:  # the same without a length (chunked): stopped where it passes the cap
        endless = client.post("/api/submissions", content=_endless_form(),
                              headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert endless.status_code == 413
    # beyond the exercise's uploads per hour: 429, and nothing is stored
    for n in range(UPLOADS_PER_HOUR - 1):
        assert submit(server, "s3", f"junk {n}".encode()).status_code == 202
    refused = submit(server, "s3", b"one more")
    assert refused.status_code == 429 and "hour" in refused.json()["error"]
    with sqlite3.connect(server.book) as db:
        assert db.execute("SELECT COUNT(*) FROM uploads WHERE student_id = 's3'").fetchone()[0] == UPLOADS_PER_HOUR
        stored = {Path(path) for (path,) in db.execute("SELECT path FROM uploads")}
    assert set((server.book.parent / "uploads").rglob("*.*")) == stored  # no file of a refused upload either
    unknown = submit(server, "s5", b"{}", "a.ipynb")
    assert unknown.status_code == 202
    with server.client("s5") as client:
        answer = client.post("/api/submissions", data={"exercise": "nope"}, files={"file": ("a.ipynb", b"{}")})
        assert answer.status_code == 404 and EXERCISE in answer.json()["error"]


def _endless_form() -> Iterator[bytes]:
    yield (f'--b\r\nContent-Disposition: form-data; name="exercise"\r\n\r\n{EXERCISE}\r\n--b\r\n'
           'Content-Disposition: form-data; name="file"; filename="big.ipynb"\r\n\r\n').encode()
    for _ in range(64):
        yield b"x" * (1 << 16)


def test_links_are_kept_across_restarts_and_stored_only_as_hashes(tmp_path):
    roster = Roster([Student("a", "Ann"), Student("b", "Bo")])
    links = tmp_path / "access.csv"
    with Gradebook(tmp_path / "book.sqlite") as book:
        notes = issue_links(book, roster, DEFAULT_TAS, links, "http://127.0.0.1:8000")
        first = {line["id"]: line for line in csv.DictReader(links.open())}
        assert set(first) == {"ta", "a", "b"} and len(notes) == 1
        assert first["a"]["link"] == f"http://127.0.0.1:8000/login/{first['a']['token']}"
        assert oct(links.stat().st_mode & 0o777) == "0o600"
        assert issue_links(book, roster, DEFAULT_TAS, links, "http://127.0.0.1:8000") == []  # a restart: the same
        assert {line["id"]: line for line in csv.DictReader(links.open())} == first
        assert holder(book, first["b"]["token"]) == Person("student", "b", "Bo") and holder(book, "b") is None
        assert holder(book, first["ta"]["token"]).is_ta
        links.unlink()  # lost: the links still work, and the TA is told how to make new ones
        notes = issue_links(book, roster, DEFAULT_TAS, links, "http://127.0.0.1:8000")
        assert "--reissue-links" in render(notes[0], "en") and holder(book, first["a"]["token"]).id == "a"
        issue_links(book, Roster([*roster.students.values(), Student("c")]), DEFAULT_TAS, links, "http://x",
                    reissue=True)
        fresh = {line["id"]: line["token"] for line in csv.DictReader(links.open())}
        assert set(fresh) == {"ta", "a", "b", "c"} and holder(book, first["a"]["token"]) is None
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("book.sqlite*"))
    assert not any(token.encode() in stored for token in [*fresh.values(), *(line["token"] for line in first.values())])


def test_pages_are_escaped_guarded_and_private(server):
    with httpx.Client(base_url=server.url) as stranger:
        assert stranger.get("/").status_code == 401
        assert stranger.get("/login/forged").status_code == 401
    with server.browser_session("s7") as s7:
        login = s7.cookies
        assert login.get("autograder_session") == server.tokens["s7"]
        home = s7.get("/")
        assert home.status_code == 200
        assert "<script>" not in home.text and "&lt;script&gt;" in home.text
        headers = home.headers
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none': no script at all
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"
        # a form without its CSRF token is refused, and stores nothing
        forged = s7.post(f"/submit/{EXERCISE}", files={"file": ("x.ipynb", b"{}")})
        assert forged.status_code == 403
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', home.text).group(1)
        sent = s7.post(f"/submit/{EXERCISE}", data={"csrf": csrf},
                       files={"file": ('<img src=x onerror=alert(1)>.ipynb', b"{}")})
        assert sent.status_code == 303 and sent.headers["location"].startswith("/attempts/")
        assert "&lt;img" in s7.get("/").text
        assert s7.get("/ta/" + EXERCISE).status_code == 403
    with server.browser_session("s6") as s6:
        assert s6.get(sent.headers["location"]).status_code == 404  # s7's attempt
    with server.browser_session("ta:ta1") as ta:
        dashboard = ta.get(f"/ta/{EXERCISE}")
        assert dashboard.status_code == 200 and "<script>alert" not in dashboard.text
        grades = ta.get(f"/ta/{EXERCISE}/grades.csv")
        assert grades.status_code == 200 and "student_id" in grades.text
        assert ta.get(f"/ta/{EXERCISE}/report").status_code == 200
    log = server.log.read_text()
    assert "/login/" in log and not any(token in log for token in server.tokens.values())


def test_an_acknowledged_upload_survives_a_killed_service_and_is_graded_once(tmp_path):
    course, roster = make_service_course(tmp_path)
    first = start_server(tmp_path, course, roster)
    solution = SOLUTION.read_bytes()
    ids = {}
    try:
        for n in range(1, 7):
            answer = submit(first, f"s{n}", personal(solution, f"s{n}"))
            assert answer.status_code == 202
            ids[f"s{n}"] = answer.json()["id"]
        wait_graded(first, "s1", ids["s1"])
    finally:
        first.stop(kill=True)  # SIGKILL: the rest queued or running
    with sqlite3.connect(first.book) as db:
        before = dict(db.execute("SELECT u.public_id, s.graded_at FROM uploads u JOIN submissions s ON"
                                 " s.id = u.submission_id"))
    assert sum(graded_at is None for graded_at in before.values()) >= 2  # killed mid-queue, not after it
    second = start_server(tmp_path, course, roster)
    try:
        results = {who: wait_graded(second, who, public_id) for who, public_id in ids.items()}
    finally:
        second.stop()
    assert {r["status"] for r in results.values()} == {"graded"}
    with sqlite3.connect(second.book) as db:
        after = dict(db.execute("SELECT u.public_id, s.graded_at FROM uploads u JOIN submissions s ON"
                                " s.id = u.submission_id"))
        rows = db.execute("SELECT COUNT(*) FROM submissions WHERE sha256 IS NOT NULL").fetchone()[0]
    assert rows == len(ids)  # one row per acknowledged upload
    for public_id, graded_at in before.items():  # graded before the kill: not graded again
        if graded_at is not None:
            assert after[public_id] == graded_at


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_a_student_submits_through_the_upload_page_in_a_real_browser(server, tmp_path):
    notebook = tmp_path / "t5_decoding.ipynb"
    notebook.write_bytes(personal(SOLUTION.read_bytes(), "s6"))
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.open(f"{server.url}/login/{server.tokens['s6']}")
        assert browser.evaluate("location.pathname") == "/"  # the token left the address bar
        assert browser.problems() == []
        document = browser.call("DOM.getDocument", session=browser.session)["root"]["nodeId"]
        field = browser.call("DOM.querySelector", session=browser.session, nodeId=document,
                             selector="input[type=file]")["nodeId"]
        browser.call("DOM.setFileInputFiles", session=browser.session, nodeId=field, files=[str(notebook)])
        browser.events.clear()
        browser.evaluate("document.querySelector('form').requestSubmit(), true")
        deadline = time.monotonic() + 180
        while not browser.evaluate("document.getElementById('feedback') !== null"):
            assert time.monotonic() < deadline, browser.evaluate("document.body.innerText")
            time.sleep(0.5)  # the page refreshes itself while the submission waits
        browser.settle()
        assert browser.problems() == []  # nothing blocked by the page's own policy, nothing broken
        text = browser.evaluate("document.body.innerText")
        visible_points = sum(points()[c] for c in VISIBLE)
        assert f"{visible_points} / {visible_points}" in text
        hidden = browser.evaluate("document.querySelectorAll('td.word.hidden').length")
        assert hidden == len(points()) - len(VISIBLE)  # every check not visible yet, listed without its result
        browser.open(f"{server.url}/login/{server.tokens['ta:ta1']}")
        assert browser.evaluate("location.pathname") == f"/ta/{EXERCISE}"
        assert browser.problems() == []
        assert browser.evaluate("document.body.innerText").count("graded") >= 1
    finally:
        browser.close()


def test_a_burst_of_a_hundred_uploads_from_fifty_students_all_end_graded(tmp_path):
    measured = burst(tmp_path, students=50, each=2, jobs=2, spread=30)
    assert measured["statuses"] == {"graded": 100}
    assert measured["graded_rows"] == 100  # one graded gradebook row per upload: none lost, none merged


def test_a_port_in_use_or_no_roster_is_one_sentence_before_any_work(tmp_path):
    course, roster = make_service_course(tmp_path)
    env = {**os.environ, "AUTOGRADER_COURSE_DIR": str(course), "AUTOGRADER_CACHE": str(ROOT / ".cache")}
    book = str(tmp_path / "book.sqlite")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        busy = subprocess.run([AUTOGRADER, "serve", EXERCISE, "--roster", str(roster), "--gradebook", book,
                               "--port", port], env=env, capture_output=True, text=True, timeout=120)
    said = " ".join(busy.stderr.split())  # the terminal wraps the sentence
    assert busy.returncode == 2 and "Cannot listen on" in said and "choose another --port" in said
    alone = subprocess.run([AUTOGRADER, "serve", EXERCISE, "--gradebook", str(tmp_path / "empty.sqlite")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 2 and "pass --roster" in " ".join(alone.stderr.split())


def test_a_student_checks_and_submits_from_inside_a_notebook(server, tmp_path, monkeypatch):
    """In a real Jupyter kernel (nbclient), as in Colab: install nothing but the student wheel's module, log in from
    the environment (the link never written in the notebook), check() then submit(). check() shows the public checks
    and stores no attempt; submit() uploads the notebook unchanged and shows its feedback in the cell's output."""
    import nbformat
    from nbclient import NotebookClient

    who = "s5"
    mine = tmp_path / "mine.ipynb"
    mine.write_bytes(personal(SOLUTION.read_bytes(), who))
    before = mine.read_bytes()

    def uploads() -> int:
        with sqlite3.connect(server.book) as db:
            return db.execute("SELECT COUNT(*) FROM uploads WHERE student_id = ?", (who,)).fetchone()[0]

    earlier = uploads()
    monkeypatch.setenv("AUTOGRADER_LINK", f"{server.url}/login/{server.tokens[who]}")
    monkeypatch.delenv("AUTOGRADER_GRADING", raising=False)
    runner = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from autograder import student\nstudent.login()"),
        nbformat.v4.new_code_cell(f"checked = student.check({str(mine)!r})\nprint(checked['status'], checked['score'])"),
        nbformat.v4.new_code_cell(f"answer = student.submit({str(mine)!r})\nprint(answer['status'], answer['score'])"),
    ])
    NotebookClient(runner, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    signed_in, checked, submitted = ("".join(o.get("text", "") + str(o.get("data", {}).get("text/html", ""))
                                             for o in cell.outputs) for cell in runner.cells)
    assert "Student 5" in signed_in and server.tokens[who] not in signed_in
    assert "done 4.0" in checked and "Public checks" in checked and "4 / 4" in checked  # the four visible checks
    assert "test_translation" not in checked or "greedy_decode returns" in checked  # titles, not only ids
    assert "only the hidden checks judge them" in checked
    assert "graded" in submitted and "Feedback" in submitted
    assert mine.read_bytes() == before  # nothing saved or changed in the notebook
    assert uploads() == earlier + 1  # the check was no attempt; the submission one


def test_the_student_side_says_what_went_wrong_in_one_sentence(server, tmp_path, monkeypatch):
    """A wrong link, a link written in the notebook, an unreachable service, a notebook of no exercise."""
    from autograder import student

    monkeypatch.delenv("AUTOGRADER_GRADING", raising=False)
    with pytest.raises(student.StudentError, match="not a personal link"):
        student.login("https://example.invalid/not-a-link")
    with pytest.raises(student.StudentError, match="not valid"):
        student.login(f"{server.url}/login/wrong-token")
    student.login(f"{server.url}/login/{server.tokens['s6']}")
    leaked = tmp_path / "leaked.ipynb"
    leaked.write_bytes(personal(SOLUTION.read_bytes(), f"my link {server.tokens['s6']}"))
    with pytest.raises(student.StudentError, match="personal link is written in this notebook"):
        student.submit(leaked)
    nameless = tmp_path / "nameless.ipynb"
    nameless.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(student.StudentError, match="which exercise"):
        student.check(nameless)
    with pytest.raises(student.StudentError, match="no notebook at"):
        student.submit(tmp_path / "absent.ipynb")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    student._session.base = f"http://127.0.0.1:{port}"  # nothing listens there now
    with pytest.raises(student.StudentError, match="cannot be reached"):
        student.check(SOLUTION)
