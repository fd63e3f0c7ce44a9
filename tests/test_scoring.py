"""Where scores come from, without running a notebook: the rubric (manual items included), the late policy and the
TAs' decisions, applied by the one scoring function, kept through regrades, undone to the score before them, and
carried into every export."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from autograder import scoring
from autograder.errors import UserError
from autograder.exports import export_csv, export_gradescope, export_history, export_moodle
from autograder.feedback import Visibility, feedback_page
from autograder.gradebook import Gradebook
from autograder.intake import Roster, Student
from autograder.results import CheckOutcome, RunRecord
from conftest import ROOT

EXERCISE = "t5_decoding"
RUBRIC = """
[checks.test_shape]
points = 2

[checks.test_values]
points = 3
visibility = "hidden"

[checks.explain]
points = 4
manual = true
title = "Explain greedy decoding"
titles = { ja = "貪欲法の説明" }

[late]
policy = "percent_per_day"
percent_per_day = 50
deadline = 2026-05-01T23:59:00+00:00
"""
CHECKS = ["test_shape", "test_values"]
LATE = "2026-05-02T12:00:00+00:00"  # one started day late: half off


def _record(sid: str, shape: str = "passed", values: str = "passed", status: str = "graded") -> RunRecord:
    return RunRecord(exercise=EXERCISE, submission=f"{sid}.ipynb", sha256=sid * 8, status=status,
                     outcomes=[CheckOutcome(id="test_shape", title="shape", outcome=shape),
                               CheckOutcome(id="test_values", title="values", outcome=values)])


@pytest.fixture
def book(tmp_path):
    """Three students: s1 on time with both checks passed, s2 a day late with the values wrong, s3 missing."""
    path = tmp_path / "book.sqlite"
    with Gradebook(path) as gradebook:
        roster = Roster([Student("s1", "Ann"), Student("s2", "=Bo"), Student("s3", "Cy")])
        gradebook.set_roster(roster)
        scoring.put_in_force(gradebook, EXERCISE, RUBRIC, "rubric.toml", None, CHECKS)
        gradebook.register(EXERCISE, [
            {"student_id": sid, "student_name": "", "source": f"{sid}.ipynb", "sha256": sid * 8, "size": 1,
             "layout": "folder", "flags": "", "submitted_at": when, "submitted_at_from": "mtime"}
            for sid, when in (("s1", "2026-05-01T12:00:00+00:00"), ("s2", LATE))], roster)
        records = {"s1": _record("s1"), "s2": _record("s2", values="failed")}
        for row in gradebook.to_grade(EXERCISE):
            gradebook.save(row.id, records[row.student_id],
                           scoring.Scorer(gradebook, EXERCISE).score(row, records[row.student_id]))
        yield gradebook


def _result(book: Gradebook, sid: str):
    _, entries = scoring.results(book, EXERCISE)
    return next(result for row, result in entries if row.student_id == sid)


def _row(book: Gradebook, sid: str):
    return book.rows(EXERCISE, student_id=sid)[0]


def test_a_manual_item_awaits_a_ta_and_counts_in_the_maximum(book):
    result = _result(book, "s1")
    assert (result.score, result.max_score, result.awaiting) == (5, 9, ["explain"])
    item = next(c for c in result.checks if c.id == "explain")
    assert (item.outcome, item.words("ja").title) == ("awaiting", "貪欲法の説明")
    scoring.decide(book, EXERCISE, "s1", "manual", "Sato (ta1)", row=_row(book, "s1"), item="explain", points=3,
                   comment="Clear, but say why the argmax is taken at the last position.")
    result = _result(book, "s1")
    assert (result.score, result.max_score, result.awaiting) == (8, 9, [])
    assert _row(book, "s1").score == 8  # the stored score column follows at once


def test_ta_decisions_are_applied_kept_by_a_regrade_and_undone_to_the_score_before(book):
    row = _row(book, "s2")
    before = _result(book, "s2")
    assert (before.score, before.late_penalty, before.days_late) == (1, 1, 1)  # 2 earned, half off
    points = scoring.decide(book, EXERCISE, "s2", "points", "Sato (ta1)", row=row, item="test_values", points=3,
                            comment="Your values are right; the check compared the wrong dtype.")
    bonus = scoring.decide(book, EXERCISE, "s2", "adjust", "Sato (ta1)", row=row, points=0.5,
                           comment="Thorough comments.")
    after = _result(book, "s2")
    values = next(c for c in after.checks if c.id == "test_values")
    assert (values.points, values.points_before_ta, values.outcome) == (3, 0, "failed")  # the outcome stays
    assert (after.score, after.adjustment) == (3.0, 0.5)  # (2 + 3) halved, plus the bonus
    # a regrade with a changed rubric keeps both decisions
    scoring.put_in_force(book, EXERCISE, RUBRIC.replace("points = 2", "points = 4"), "changed.toml", None, CHECKS)
    assert _result(book, "s2").score == 4.0
    scoring.put_in_force(book, EXERCISE, RUBRIC, "rubric.toml", None, CHECKS)
    scoring.undo(book, EXERCISE, bonus.id, "Suzuki (ta2)")
    scoring.undo(book, EXERCISE, points.id, "Suzuki (ta2)")
    assert _result(book, "s2").score == before.score and _row(book, "s2").score == before.score
    with pytest.raises(UserError, match="undone already"):
        scoring.undo(book, EXERCISE, points.id, "Suzuki (ta2)")
    log = [(a.made_by, a.action) for a in book.actions(EXERCISE, "s2")]
    assert log == [("Sato (ta1)", "points"), ("Sato (ta1)", "adjust"), ("Suzuki (ta2)", "undo"),
                   ("Suzuki (ta2)", "undo")]
    assert all(d.undone_by == "Suzuki (ta2)" for d in book.decisions(EXERCISE, "s2"))  # kept, marked


def test_an_extension_moves_the_late_policy_and_the_student_sees_their_deadline(book):
    scoring.decide(book, EXERCISE, "s2", "extension", "Sato (ta1)",
                   until=datetime(2026, 5, 3, 0, 0, tzinfo=timezone.utc), comment="Medical certificate.")
    result = _result(book, "s2")
    assert (result.score, result.late_penalty, result.days_late) == (2, 0, 0)
    assert result.deadline == "2026-05-03T00:00:00+00:00"
    page = feedback_page("t", _row(book, "s2"), result, Visibility(False, None), "en")
    assert any("extended your deadline" in hint and "Medical certificate." in hint for hint in page.hints)
    assert _result(book, "s1").deadline == "2026-05-01T23:59:00+00:00"  # nobody else's


@pytest.mark.parametrize("kind, item, points, comment, sentence", [
    ("points", "test_shape", 7, "", "worth 0 to 2 points"),
    ("points", "explain", 1, "", "not a check"),
    ("manual", "test_shape", 1, "", "not a manual item"),
    ("points", "test_nope", 1, "", "not a check"),
    ("adjust", "", 1, "", "Say why"),
    ("adjust", "", float("nan"), "x", "as a number"),
])
def test_a_decision_that_does_not_fit_is_one_sentence_and_stores_nothing(book, kind, item, points, comment,
                                                                         sentence):
    with pytest.raises(UserError, match=sentence):
        scoring.decide(book, EXERCISE, "s1", kind, "ta", row=_row(book, "s1"), item=item, points=points,
                       comment=comment)
    assert book.decisions(EXERCISE) == [] and book.actions(EXERCISE) == []


def test_a_rubric_manual_item_needs_a_title_and_a_name_of_its_own():
    with pytest.raises(UserError, match="needs a title"):
        scoring.Rubric.parse("[checks.x]\npoints = 1\nmanual = true\n", "r")
    rubric = scoring.Rubric.parse('[checks.test_shape]\npoints = 1\nmanual = true\ntitle = "t"\n', "r")
    with pytest.raises(UserError, match="manual items"):
        rubric.verify(["test_shape"], Path("r"))


def test_every_export_carries_the_ta_decisions_and_the_history_names_the_ta(book, tmp_path):
    row = _row(book, "s2")
    scoring.decide(book, EXERCISE, "s2", "points", "Sato (ta1)", row=row, item="test_values", points=3,
                   comment="=cmd|' /C calc'!A0 right values after all")
    scoring.decide(book, EXERCISE, "s2", "adjust", "Sato (ta1)", row=row, points=-1, comment="Late header.")
    book.ask(row, "test_values", "Why did my values fail?")
    book.answer(book.requests(EXERCISE)[0].id, "The dtype; corrected.", "Sato (ta1)")
    export_csv(book, EXERCISE, tmp_path / "grades.csv")
    lines = {line["student_id"]: line for line in csv.DictReader((tmp_path / "grades.csv").open())}
    assert (lines["s2"]["total"], lines["s2"]["adjustment"], lines["s2"]["test_values"]) == ("1.5", "-1", "3")
    assert lines["s2"]["ta_comments"].startswith("test_values (Sato (ta1)): =cmd")  # not a cell's first character
    assert lines["s2"]["name"] == "'=Bo" and lines["s1"]["awaiting_ta"] == "explain"
    export_moodle(book, EXERCISE, tmp_path / "moodle.csv", "T5")
    moodle = (tmp_path / "moodle.csv").read_text()
    assert "right values after all" in moodle and "Late header. (-1)" in moodle
    export_gradescope(book, EXERCISE, tmp_path / "gs")
    tests = json.loads((tmp_path / "gs" / "s2" / "results.json").read_text())["tests"]
    assert any(t["name"] == "Adjustment by a TA" and t["score"] == -1 for t in tests)
    assert any("TA: =cmd" in t["output"] for t in tests if t["number"] == "test_values")
    assert export_history(book, EXERCISE, tmp_path / "history.csv") == 4
    history = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [h["action"] for h in history] == ["points", "adjust", "request", "answer"]
    assert history[0]["by"] == "Sato (ta1)" and history[2]["by"] == "s2"
    assert history[0]["detail"].startswith("test_values: 3 points (")


def test_extend_on_the_command_line_is_one_decision_or_one_sentence(book, tmp_path):
    autograder = str(Path(sys.executable).parent / "autograder")
    env_args = ["--gradebook", str(book.path)]
    done = subprocess.run([autograder, "extend", EXERCISE, "s2", "--until", "2026-05-03 09:00", "--by", "Sato",
                           *env_args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "s2's deadline for t5_decoding is now 2026-05-03 09:00" in " ".join(done.stdout.split())
    assert _result(book, "s2").days_late == 0
    assert [(a.made_by, a.action) for a in book.actions(EXERCISE, "s2")] == [("Sato", "extension")]
    for args, sentence in ((["s9", "--until", "2026-05-03"], "s9 has no row"),
                           (["s2", "--until", "soon"], "is not a date-time")):
        refused = subprocess.run([autograder, "extend", EXERCISE, *args, *env_args], capture_output=True,
                                 text=True, cwd=ROOT)
        assert refused.returncode == 2 and sentence in refused.stderr and "Traceback" not in refused.stderr
    assert len(book.decisions(EXERCISE)) == 1


def test_an_older_gradebook_gains_the_decision_tables_and_keeps_its_links(tmp_path):
    import sqlite3

    from autograder.gradebook import MIGRATIONS, SCHEMA_VERSION, _statements

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        for number, script in enumerate(MIGRATIONS[:3], start=1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
        db.execute("INSERT INTO access VALUES ('__ta__', 'hash-ta', '2026-01-01')")
        db.execute("INSERT INTO access VALUES ('s1', 'hash-s1', '2026-01-01')")
    path.chmod(0o644)
    with Gradebook(path) as book:
        assert book.version == SCHEMA_VERSION
        people = book.db.execute("SELECT role, person_id, token_sha256 FROM people ORDER BY role").fetchall()
        assert [tuple(p) for p in people] == [("student", "s1", "hash-s1"), ("ta", "ta", "hash-ta")]
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # every student's work: its owner's alone


def test_hidden_checks_say_when_they_will_be_shown(book):
    result = _result(book, "s1")
    page = feedback_page("t", _row(book, "s1"), result, Visibility(False, None), "en")
    hidden = [line for line in page.checks if line.outcome == "hidden"]
    assert hidden and all(line.message == "Shown when the course releases grades." for line in hidden)
    ja = feedback_page("t", _row(book, "s1"), result, Visibility(False, None), "ja")
    assert all(line.message != hidden[0].message for line in ja.checks if line.outcome == "hidden")
