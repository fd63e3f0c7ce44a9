"""The similarity report: disguised copies are found, independent solutions and starter code are not pairs, earlier
cohorts count against this one but never against each other, and what a TA opens is escaped."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import scoring
from autograder.gradebook import Gradebook
from autograder.intake import Roster, Student
from autograder.results import CheckOutcome, RunRecord
from autograder.similarity import Work, code_text, compare, earlier_code
from similarity_data import STARTER, notebook_cells, planted

pytest.importorskip("copydetect")


def _works(cohort: dict[str, list[str]]) -> list[Work]:
    return [Work(who, code_text(cells)) for who, cells in cohort.items()]


def _flagged(pairs) -> set[frozenset[str]]:
    return {frozenset((p.first.who, p.second.who)) for p in pairs}


def test_every_disguised_copy_is_found_and_no_independent_pair_is_flagged():
    cohort, copies = planted()
    flagged = _flagged(compare(STARTER, _works(cohort)))
    assert copies <= flagged  # renamed, recommented, reordered, padded, and all four at once
    assert flagged - copies == set()  # 40 independent solutions that share up to half their functions


def test_the_starter_alone_and_blank_notebooks_are_no_pair():
    blank = list(STARTER)
    solved = notebook_cells((0,) * 8)
    works = _works({"blank1": blank, "blank2": blank, "solved": solved, "starter-only": STARTER[:3]})
    assert compare(STARTER, works) == []


def test_earlier_cohorts_count_against_this_one_and_never_against_each_other(tmp_path):
    cohort, _ = planted(copies_of=0)
    earlier = tmp_path / "2025"
    earlier.mkdir()
    for name, cells in {"old1": cohort["ind05"], "old2": cohort["ind05"], "old3": cohort["ind07"]}.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        (earlier / f"{name}.ipynb").write_text(nbformat.writes(nb))
    (earlier / "broken.ipynb").write_text("{not json")
    references = earlier_code(earlier, "anything")
    current = _works({"now": cohort["ind05"], "other": cohort["ind11"]})
    pairs = compare(STARTER, current, references)
    assert {(p.first.who, p.second.who, p.second.cohort) for p in pairs} == {("now", "old1.ipynb", "2025"),
                                                                          ("now", "old2.ipynb", "2025")}


def test_a_cohort_in_a_gradebook_gives_the_report_a_ta_opens(tmp_path):
    """From stored records (the code the grader kept), through `autograder similarity`: the CSV, the index and the
    pages, every student text escaped; a record graded before code was kept is named, not compared."""
    from autograder.exercise import Exercise

    exercise = Exercise("t5_decoding")
    starter = nbformat.read(exercise.student_notebook, as_version=4)
    given = [c.source for c in starter.cells if c.cell_type == "code"]
    mine = given + ["hostile = '</pre><script>alert(1)</script>'\nfor 変数 in range(3):\n    print(変数 * 2)\n"
                    "def helper(a, b):\n    total = 0\n    for x in range(a):\n        total += x * b\n    return total"]
    book_path = tmp_path / "book.sqlite"
    with Gradebook(book_path) as book:
        roster = Roster([Student("=evil", "=cmd|' /C calc'!A0"), Student("twin"), Student("solo"), Student("old")])
        book.set_roster(roster)
        scoring.put_in_force(book, exercise.name, "[checks.test_x]\npoints = 1\n", "r.toml", None, ["test_x"])
        book.register(exercise.name, [{"student_id": sid, "student_name": "", "source": f"{sid}.ipynb",
                                       "sha256": sid, "size": 1, "layout": "folder", "flags": "", "submitted_at": None,
                                       "submitted_at_from": "mtime"} for sid in ("=evil", "twin", "solo", "old")],
                      roster)
        code = {"=evil": mine, "twin": mine, "solo": given, "old": []}
        for row in book.to_grade(exercise.name):
            record = RunRecord(exercise=exercise.name, submission=row.source, sha256=row.sha256, status="graded",
                               outcomes=[CheckOutcome(id="test_x", title="x", outcome="passed")],
                               code=code[row.student_id])
            book.save(row.id, record, scoring.Scorer(book, exercise.name).score(row, record))
    out = tmp_path / "report"
    done = subprocess.run([str(Path(sys.executable).parent / "autograder"), "similarity", exercise.name,
                           "--gradebook", str(book_path), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "1 pair(s) flagged among 3 notebooks" in " ".join(done.stdout.split())
    lines = list(csv.DictReader((out / "similarity.csv").open()))
    assert [(line["student"], line["other"]) for line in lines] == [("'=evil", "twin")]  # never a formula
    page = (out / lines[0]["page"]).read_text()
    assert "<script>alert" not in page and "&lt;/pre&gt;&lt;script&gt;" in page and "変数" in page
    assert "<mark>" in page and "never proof of copying" in page
    index = (out / "index.html").read_text()
    assert "old" in index and "grade them again" in index  # graded before its code was kept: named


def test_one_cohort_gives_one_report_whatever_the_process():
    """copydetect's own k-gram hash is Python's hash(), salted per process: the report's is fixed."""
    script = ("import sys; sys.path.insert(0, 'tests'); from similarity_data import STARTER, planted; "
              "from autograder.similarity import Work, code_text, compare; cohort, _ = planted(copies_of=2); "
              "print([(p.first.who, p.second.who, p.score) for p in compare(STARTER, "
              "[Work(w, code_text(c)) for w, c in cohort.items()], threshold=0.5)])")
    root = Path(__file__).resolve().parents[1]
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(runs) == 1 and "copy00" in runs.pop()
