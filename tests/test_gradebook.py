"""Fast pieces of cohort grading, no notebook runs: late policy, LMS layouts, roster, gradebook schema and rows."""

from __future__ import annotations

import os
import sqlite3
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from autograder import gradebook as gradebook_module
from autograder.errors import UserError
from autograder.gradebook import SCHEMA_VERSION, Gradebook
from autograder.intake import Roster, Student, discover
from autograder.results import CheckOutcome, RunRecord
from autograder import scoring
from autograder.scoring import LatePolicy, Rubric
from cohort_data import EXERCISE, synthetic_gradebook
from conftest import ROOT

# late policy ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy, late_by, fraction, days", [
    (LatePolicy(), timedelta(days=3), 0.0, 3),
    (LatePolicy(policy="zero"), timedelta(seconds=1), 1.0, 1),
    (LatePolicy(policy="zero"), timedelta(seconds=-1), 0.0, 0),
    (LatePolicy(policy="zero", grace_minutes=15), timedelta(minutes=14), 0.0, 0),
    (LatePolicy(policy="zero", grace_minutes=15), timedelta(minutes=16), 1.0, 1),
    (LatePolicy(policy="percent_per_day", percent_per_day=10), timedelta(hours=25), 0.2, 2),
    (LatePolicy(policy="percent_per_day", percent_per_day=10, max_percent=30), timedelta(days=9), 0.3, 9),
    (LatePolicy(policy="percent_per_day", percent_per_day=10), None, 0.0, 0),
])
def test_late_policy(policy, late_by, fraction, days):
    assert policy.penalty_fraction(late_by) == pytest.approx(fraction)
    assert policy.days_late(late_by) == days


def test_rubric_late_table_scores_the_penalty_off_the_earned_points():
    rubric = Rubric.parse('[checks.a]\npoints = 3\n[checks.b]\npoints = 1\n'
                          '[late]\npolicy = "percent_per_day"\npercent_per_day = 25\ndeadline = 2026-05-01T23:59:00+09:00\n',
                          "test")
    assert rubric.late.deadline == datetime(2026, 5, 1, 14, 59, tzinfo=timezone.utc)
    record = RunRecord(exercise="x", submission="s", sha256="0", status="graded", outcomes=[
        CheckOutcome(id="a", title="a", outcome="passed"), CheckOutcome(id="b", title="b", outcome="failed")])
    assert rubric.score(record).score == 3
    late = rubric.score(record, timedelta(hours=30))
    assert (late.score, late.late_penalty, late.days_late, late.max_score) == (1.5, 1.5, 2, 4)
    assert "Submitted 2 day(s) after the deadline: 1.5 point(s) off." in late.gradescope()["output"]


def test_rate_policy_without_a_rate_is_refused():
    with pytest.raises(UserError, match="percent_per_day"):
        Rubric.parse('[checks.a]\npoints = 1\n[late]\npolicy = "percent_per_day"\n', "test")


# submissions and roster -------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def test_folder_layout_flat_and_nested_ignores_hidden_files(tmp_path):
    _write(tmp_path, {"alice.ipynb": b"{}", "bob/work v2.ipynb": b"{1}", "bob/.ipynb_checkpoints/x.ipynb": b"",
                      ".DS_Store": b"", "__MACOSX/alice.ipynb": b""})
    os.utime(tmp_path / "alice.ipynb", (1_700_000_000, 1_700_000_000))
    found = {f.source: f for f in discover(tmp_path)}
    assert set(found) == {"alice.ipynb", "bob/work v2.ipynb"}
    assert (found["alice.ipynb"].key, found["bob/work v2.ipynb"].key) == ("alice", "bob")
    assert found["alice.ipynb"].submitted_at == datetime.fromtimestamp(1_700_000_000, timezone.utc)
    assert found["alice.ipynb"].submitted_at_from == "mtime" and found["alice.ipynb"].size == 2


def test_moodle_download_flat_and_in_folders(tmp_path):
    archive = tmp_path / "moodle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("Jane Doe_1234567_assignsubmission_file_t5_decoding.ipynb", (2026, 5, 1, 22, 0, 0)), b"{}")
        zf.writestr("山田 太郎_7654321_assignsubmission_file_/my_t5.ipynb", b"{2}")
        zf.writestr("Jane Doe_1234567_assignsubmission_onlinetext_onlinetext.html", b"<p>hi</p>")
    found = {f.source: f for f in discover(archive)}
    jane = found["Jane Doe_1234567_assignsubmission_file_t5_decoding.ipynb"]
    assert (jane.layout, jane.key, jane.name, jane.submitted_at_from) == ("moodle", "1234567", "Jane Doe", "zip")
    assert jane.submitted_at == datetime(2026, 5, 1, 22, 0).astimezone()
    assert jane.read() == b"{}"
    taro = found["山田 太郎_7654321_assignsubmission_file_/my_t5.ipynb"]
    assert (taro.key, taro.name, taro.is_notebook) == ("7654321", "山田 太郎", True)
    assert not found["Jane Doe_1234567_assignsubmission_onlinetext_onlinetext.html"].is_notebook
    roster = Roster([Student("s1", "Jane Doe"), Student("s2", "Taro Yamada", lms_id="7654321")])
    assert roster.resolve(jane) == ("s1", "Jane Doe")  # by name
    assert roster.resolve(taro) == ("s2", "Taro Yamada")  # by the LMS number


def test_canvas_download_with_late_marker(tmp_path):
    _write(tmp_path, {"doejane_12345_998877_t5_decoding.ipynb": b"{}",
                      "smithbob_LATE_23456_998878_t5_decoding-1.ipynb": b"{}"})
    found = {f.key: f for f in discover(tmp_path)}
    assert (found["12345"].layout, found["12345"].name, found["12345"].flags) == ("canvas", "doejane", ())
    assert found["23456"].flags == ("lms_late",)
    roster = Roster([Student("s1", "Jane Doe"), Student("s2", "Bob Smith"), Student("s3", "Bob Smith")])
    assert roster.resolve(found["12345"]) == ("s1", "Jane Doe")  # Canvas writes "lastfirst"
    assert roster.resolve(found["23456"]) == ("23456", "smithbob")  # two Bob Smiths: no guess


def test_roster_csv(tmp_path):
    good = tmp_path / "roster.csv"
    good.write_text("\ufeffStudent_ID,Name,lms_id,deadline\ns1,Jane Doe,123,2026-05-08T23:59+09:00\ns2,Bob,,\n",
                    encoding="utf-8")
    roster = Roster.load(good)
    assert roster.students["s1"] == Student("s1", "Jane Doe", "123", datetime(2026, 5, 8, 14, 59, tzinfo=timezone.utc))
    assert roster.students["s2"].deadline is None
    for text, message in (("name\nx\n", "no student_id column"), ("student_id\ns1\ns1\n", "twice"),
                          ("student_id,deadline\ns1,soon\n", "not a date-time")):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(UserError, match=message):
            Roster.load(tmp_path / "bad.csv")


def test_submissions_must_be_a_folder_or_zip(tmp_path):
    (tmp_path / "one.ipynb").write_text("{}")
    with pytest.raises(UserError, match="neither a folder nor a zip"):
        discover(tmp_path / "one.ipynb")
    with pytest.raises(UserError, match="No submissions at"):
        discover(tmp_path / "nothing")


# gradebook -------------------------------------------------------------------------------------------


def _found(student: str, source: str, sha: str, when: str) -> dict:
    return {"student_id": student, "student_name": "", "source": source, "sha256": sha, "size": 1,
            "layout": "folder", "flags": "", "submitted_at": when, "submitted_at_from": "mtime"}


def test_register_chooses_one_current_row_per_student(tmp_path):
    with Gradebook(tmp_path / "g.sqlite") as book:
        roster = Roster([Student("a"), Student("b"), Student("c")])
        subs = [_found("a", "a/old.ipynb", "1", "2026-05-01T10:00:00+00:00"),
                _found("a", "a/new.ipynb", "2", "2026-05-01T11:00:00+00:00"),
                _found("a", "a/zz.txt", "3", "2026-05-01T12:00:00+00:00"),
                _found("b", "b.ipynb", "4", "2026-05-01T10:00:00+00:00")]
        assert book.register(EXERCISE, subs, roster) == 5  # four files and c's 'missing' row
        assert book.register(EXERCISE, subs, roster) == 0  # idempotent
        rows = {r.source: r for r in book.rows(EXERCISE, current_only=False)}
        assert [r.source for r in book.rows(EXERCISE)] == ["a/new.ipynb", "b.ipynb", None]
        assert rows["a/old.ipynb"].status == rows["a/zz.txt"].status == "superseded"
        assert [r.source for r in book.to_grade(EXERCISE)] == ["a/new.ipynb", "b.ipynb"]
        # c submits later: the new file becomes current, the 'missing' row stays as history
        book.register(EXERCISE, [_found("c", "c.ipynb", "5", "2026-05-02T10:00:00+00:00")], roster)
        c_rows = [r for r in book.rows(EXERCISE, current_only=False) if r.student_id == "c"]
        assert [(r.status, r.current) for r in c_rows] == [("missing", 0), ("pending", 1)]
        with pytest.raises(sqlite3.IntegrityError):  # the schema itself forbids two current rows
            book.db.execute("UPDATE submissions SET current = 1 WHERE student_id = 'a'")


def test_schema_version_and_migrations(tmp_path, monkeypatch):
    path = tmp_path / "g.sqlite"
    with Gradebook(path) as book:
        assert book.version == SCHEMA_VERSION
        assert book.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        book.register(EXERCISE, [_found("a", "a.ipynb", "1", "2026-05-01T10:00:00+00:00")], Roster([]))
    # a later schema: opening the old file upgrades it and keeps the rows
    monkeypatch.setattr(gradebook_module, "MIGRATIONS",
                        [*gradebook_module.MIGRATIONS, "ALTER TABLE submissions ADD COLUMN note TEXT DEFAULT 'x'"])
    monkeypatch.setattr(gradebook_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    db = Gradebook(path).db
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    assert [tuple(r) for r in db.execute("SELECT student_id, note FROM submissions")] == [("a", "x")]
    db.close()
    monkeypatch.setattr(gradebook_module, "SCHEMA_VERSION", SCHEMA_VERSION)
    with pytest.raises(UserError, match="newer than this autograder"):
        Gradebook(path)


def test_one_batch_at_a_time(tmp_path):
    with Gradebook(tmp_path / "g.sqlite") as book, book.batch_lock():
        with pytest.raises(UserError, match="Another batch"):
            with Gradebook(tmp_path / "g.sqlite").batch_lock():
                pass


def test_a_new_rubric_rescores_a_synthetic_cohort_from_its_stored_outcomes(tmp_path):
    path = synthetic_gradebook(tmp_path / "g.sqlite", students=200)
    rubric = ROOT / "rubrics" / f"{EXERCISE}.toml"
    with Gradebook(path) as book:
        text = rubric.read_text().replace("points = 4", "points = 8")
        _, changed, _ = scoring.put_in_force(book, EXERCISE, text, "changed", None, list(Rubric.parse(text, "").checks))
        assert changed
        late = [r for r in book.rows(EXERCISE) if r.days_late]
        assert not late  # the deadline was cleared: nobody is late
