"""Grades in the LMS's own import formats, byte for byte, and rosters as the LMS exports them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from autograder.cli import app
from autograder.exports import export_canvas, export_moodle, lms_points
from autograder import scoring
from autograder.gradebook import Gradebook
from autograder.intake import Roster
from autograder.results import CheckOutcome, Diagnostics, RunRecord

EXERCISE = "t5_decoding"
# Two checks, 2 + 3 points, 15% per started day late.
RUBRIC = """
[checks.test_shape]
points = 2

[checks.test_values]
points = 3

[late]
policy = "percent_per_day"
percent_per_day = 15
deadline = 2026-05-01T23:59:00+00:00
"""
ROSTER = """student_id,name,lms_id,sis_user_id,sis_login_id,section,email
s1,Taro Yamada,101,S-001,yamada,Sec A,yamada@example.ac.jp
s2,Hanako Sato,102,S-002,sato,Sec A,sato@example.ac.jp
s3,=Mallory,103,S-003,mallory,Sec B,
s4,Jiro Suzuki,,,,Sec B,suzuki@example.ac.jp
s5,No Show,105,S-005,noshow,Sec B,noshow@example.ac.jp
"""


def _record(sid: str, status: str, shape: str, values: str, message: str = "") -> RunRecord:
    return RunRecord(exercise=EXERCISE, submission=f"{sid}.ipynb", sha256=sid * 8, status=status, message=message,
                     outcomes=[CheckOutcome(id="test_shape", title="shape of the output", outcome=shape),
                               CheckOutcome(id="test_values", title="values of the output", outcome=values)],
                     diagnostics=Diagnostics(runner="warm", device="cpu", profile="tiny"))


def make_gradebook(tmp_path: Path) -> Path:
    roster_file = tmp_path / "roster.csv"
    roster_file.write_text(ROSTER)
    roster = Roster.load(roster_file)
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(RUBRIC)
    path = tmp_path / "book.sqlite"
    on_time, two_days_late = "2026-05-01T12:00:00+00:00", "2026-05-03T12:00:00+00:00"
    with Gradebook(path) as book:
        book.set_roster(roster)
        scoring.put_in_force(book, EXERCISE, RUBRIC, str(rubric), None, list(scoring.Rubric.parse(RUBRIC, "").checks))
        book.register(EXERCISE, [
            {"student_id": sid, "student_name": "", "source": f"{sid}.ipynb", "sha256": sid * 8, "size": 10,
             "layout": "folder", "flags": "", "submitted_at": when, "submitted_at_from": "mtime"}
            for sid, when in (("s1", on_time), ("s2", two_days_late), ("s3", on_time), ("s4", on_time))], roster)
        records = {"s1": _record("s1", "graded", "passed", "passed"),
                   "s2": _record("s2", "graded", "passed", "passed"),  # 5 - 30% = 3.5
                   "s3": _record("s3", "graded", "passed", "failed"),
                   "s4": _record("s4", "invalid", "failed", "failed", "The file is empty; submit the .ipynb file.")}
        for row in book.to_grade(EXERCISE):
            book.save(row.id, records[row.student_id], scoring.Scorer(book, EXERCISE).score(row, records[row.student_id]))
    return path


def test_canvas_gradebook_import_bytes(tmp_path):
    # Canvas "Import scores in the Gradebook" takes the CSV of its own gradebook export: the columns
    # Student, ID, SIS User ID, SIS Login ID, Section, then one column per assignment headed
    # "<assignment name> (<assignment id>)"; the second row is "Points Possible" with each assignment's
    # maximum. Canvas matches a row to its user by ID (then SIS User ID, SIS Login ID); names are for people.
    book = make_gradebook(tmp_path)
    with Gradebook(book) as gb:
        written, left_out = export_canvas(gb, EXERCISE, tmp_path / "canvas.csv", "T5 decoding", "4242")
    assert (written, left_out) == (4, ["s4"])  # s4 has no Canvas ID: named, not silently dropped
    assert (tmp_path / "canvas.csv").read_bytes() == (
        b"Student,ID,SIS User ID,SIS Login ID,Section,T5 decoding (4242)\n"
        b"Points Possible,,,,,5\n"
        b"Taro Yamada,101,S-001,yamada,Sec A,5\n"
        b"Hanako Sato,102,S-002,sato,Sec A,3.5\n"
        b"'=Mallory,103,S-003,mallory,Sec B,2\n"
        b"No Show,105,S-005,noshow,Sec B,\n"
    )
    with Gradebook(book) as gb:
        export_canvas(gb, EXERCISE, tmp_path / "zero.csv", "T5 decoding", None, missing="zero")
    lines = (tmp_path / "zero.csv").read_text().splitlines()
    assert lines[0].endswith(",T5 decoding") and lines[-1] == "No Show,105,S-005,noshow,Sec B,0"


def test_moodle_grade_import_bytes(tmp_path):
    # Moodle "Import grades: CSV file": a CSV with a header row; on import the teacher maps one column
    # to the user identifier ("Map from" the column, "Map to" ID number, email address, username or
    # user id), the grade column to the grade item and a text column to its feedback. Only the current
    # submission per student; a student without the identifier cannot be matched and is named instead.
    book = make_gradebook(tmp_path)
    with Gradebook(book) as gb:
        written, left_out = export_moodle(gb, EXERCISE, tmp_path / "moodle.csv", "T5 decoding", "email")
    assert (written, left_out) == (4, ["s3"])
    assert (tmp_path / "moodle.csv").read_bytes() == (
        b"Email address,T5 decoding,Feedback\n"
        b"yamada@example.ac.jp,5,All checks passed.\n"
        b"sato@example.ac.jp,3.5,All checks passed. 1.5 point(s) off for lateness.\n"
        b"suzuki@example.ac.jp,0,The file is empty; submit the .ipynb file.\n"
        b"noshow@example.ac.jp,,No submission was received.\n"
    )
    with Gradebook(book) as gb:
        export_moodle(gb, EXERCISE, tmp_path / "ids.csv", "T5 decoding", "idnumber", missing="zero")
    assert (tmp_path / "ids.csv").read_text().splitlines()[1:4] == [
        "s1,5,All checks passed.", "s2,3.5,All checks passed. 1.5 point(s) off for lateness.",
        "s3,2,1 check(s) failed: values of the output."]
    with Gradebook(book) as gb:  # the feedback column in the course's language
        export_moodle(gb, EXERCISE, tmp_path / "ja.csv", "T5 decoding", "idnumber", language="ja")
    assert (tmp_path / "ja.csv").read_text().splitlines()[1:4] == [
        "s1,5,すべてのチェックに合格しました。", "s2,3.5,すべてのチェックに合格しました。 提出の遅れにより 1.5 点減点されました。",
        "s3,2,1 件のチェックが不合格でした: values of the output。"]


def test_lms_points_are_rounded_and_never_in_exponent_form():
    assert [lms_points(x) for x in (5, 3.5, 2 / 3, 1e6, 0.004, -0.0)] == ["5", "3.5", "0.67", "1000000", "0", "0"]


def test_export_command_names_the_left_out_students(tmp_path):
    book = make_gradebook(tmp_path)
    out = tmp_path / "canvas.csv"
    result = CliRunner().invoke(app, ["export", EXERCISE, "--csv", str(out), "--format", "canvas",
                                      "--assignment-id", "4242", "--gradebook", str(book)])
    assert result.exit_code == 0, result.output
    assert "no Canvas ID" in result.output and "s4" in result.output and "rounded to 2 decimals" in result.output
    assert out.read_text().splitlines()[0].endswith("(4242)")


def test_rosters_as_canvas_and_moodle_export_them(tmp_path):
    canvas = tmp_path / "canvas.csv"
    canvas.write_text("Student,ID,SIS User ID,SIS Login ID,Section,Quiz 1 (77)\n"
                      "    Points Possible,,,,,10\n"
                      '"Yamada, Taro",101,S-001,yamada,Sec A,9\n'
                      '"Sato, Hanako",102,,sato,Sec A,\n', encoding="utf-8-sig")
    students = Roster.load(canvas).students
    assert sorted(students) == ["102", "S-001"]  # the SIS User ID, else Canvas's ID
    assert students["S-001"].name == "Taro Yamada" and students["S-001"].lms_id == "101"
    assert students["S-001"].sis_login_id == "yamada" and students["102"].section == "Sec A"
    moodle = tmp_path / "moodle.csv"
    moodle.write_text("First name,Surname,ID number,Email address,Groups\n"
                      "Taro,Yamada,S-001,yamada@example.ac.jp,A\n"
                      "Hanako,Sato,,sato@example.ac.jp,A\n")
    students = Roster.load(moodle).students
    assert sorted(students) == ["S-001", "sato@example.ac.jp"]
    assert students["S-001"].name == "Taro Yamada" and students["S-001"].email == "yamada@example.ac.jp"


def test_an_older_gradebook_gains_the_roster_columns(tmp_path):
    import sqlite3

    from autograder.gradebook import MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # a version 1 file, as the first schema wrote it
    db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.close()
    with Gradebook(path) as book:
        assert book.version == SCHEMA_VERSION
        assert book.roster().students == {}
