"""Grades out of the gradebook: CSV files an LMS imports, and Gradescope ``results.json`` files.

Three CSV layouts, one line per student (their current submission), scores after the late penalty:

- generic (``export_csv``): the student id first, per-check points, penalty, total, status;
- Canvas (``export_canvas``): the layout of Canvas's own gradebook export, which its gradebook import
  reads back, keyed by the Canvas user ID;
- Moodle (``export_moodle``): an identifier column Moodle's "Import grades: CSV file" maps to the
  users' ID number or email address, the grade, and a feedback text.

Scores are the ones ``scoring`` makes (late penalty, TAs' decisions); the TAs' comments travel with them (the
generic CSV's ``ta_comments``, Moodle's feedback, Gradescope's outputs). ``export_history`` writes the log of what
people did. Cells made from student or TA text never start a formula (``text.spreadsheet_cell``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

from .paths import write_atomic
from .gradebook import Gradebook, Row, row_message
from .i18n import Language, translations
from .results import GradingResult
from .scoring import policy_in_force, results
from .text import spreadsheet_cell

FIXED_COLUMNS = ["student_id", "name", "status", "submitted_at", "deadline", "days_late", "score_before_penalty",
                 "late_penalty", "adjustment", "total", "max_score", "awaiting_ta", "flags", "source", "message",
                 "ta_comments"]
CHECK_COLUMNS_AFTER = 6  # the per-check columns come after deadline
# from students' files and names, and TAs' comments: never a formula
TEXT_COLUMNS = {"student_id", "name", "source", "message", "ta_comments"}
HISTORY_COLUMNS = ["at", "by", "action", "student_id", "detail"]


def safe_name(student_id: str) -> str:
    """A student id usable as a file or folder name, distinct for distinct ids: an id that had to change
    (``tanaka~taro``, ``..``) gets a short hash of itself, so it cannot take ``tanaka_taro``'s file."""
    name = re.sub(r"[^\w.@-]", "_", student_id).lstrip(".") or "_"
    if name == student_id:
        return name
    return f"{name[:80]}-{hashlib.sha256(student_id.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def flags_of(row, roster) -> str:
    flags = [f for f in row.flags.split(",") if f]
    if roster and row.student_id not in roster:
        flags.append("not_in_roster")
    return ",".join(flags)


def export_csv(gradebook: Gradebook, exercise: str, path: Path) -> int:
    """Write the grades CSV; returns the number of students. Per-check columns hold points (empty: not run, or a
    manual item awaiting a TA)."""
    in_force, entries = results(gradebook, exercise)
    roster = gradebook.roster()
    check_ids = list(in_force.rubric.checks)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS[:CHECK_COLUMNS_AFTER] + check_ids + FIXED_COLUMNS[CHECK_COLUMNS_AFTER:])
    for row, result in entries:
        points = {c.id: ("" if c.outcome in ("not_run", "awaiting") else f"{c.points:g}") for c in result.checks} \
            if result else {}
        fixed = {
            "student_id": row.student_id, "name": row.student_name or roster.name_of(row.student_id),
            "status": row.status,
            "submitted_at": row.submitted_at or "", "deadline": result.deadline or "" if result else "",
            "days_late": result.days_late if result else "",
            "score_before_penalty": f"{result.score + result.late_penalty - result.adjustment:g}" if result else "",
            "late_penalty": f"{result.late_penalty:g}" if result else "",
            "adjustment": f"{result.adjustment:g}" if result else "",
            "total": f"{result.score:g}" if result else "0",
            "max_score": f"{result.max_score:g}" if result else "",
            "awaiting_ta": ",".join(result.awaiting) if result else "",
            "flags": flags_of(row, roster), "source": row.source or "", "message": row.message,
            "ta_comments": " | ".join(_comment_line(note) for note in result.comments) if result else "",
        }
        fixed = {c: spreadsheet_cell(v) if c in TEXT_COLUMNS else v for c, v in fixed.items()}
        writer.writerow([fixed[c] for c in FIXED_COLUMNS[:CHECK_COLUMNS_AFTER]] + [points.get(c, "") for c in check_ids]
                        + [fixed[c] for c in FIXED_COLUMNS[CHECK_COLUMNS_AFTER:]])
    write_atomic(path, out.getvalue())
    return len(entries)


def _comment_line(note) -> str:
    """A TA's comment as one cell's part: "test_x (Sato): the shape is right, the dtype was not asked for"."""
    return f"{note.item or note.kind} ({note.by}): {note.comment}"


def export_history(gradebook: Gradebook, exercise: str, path: Path) -> int:
    """The log of what people did on the exercise (TAs' decisions and undos, releases, regrade requests and their
    answers), oldest first; returns the number of lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    actions = gradebook.actions(exercise)
    for action in actions:
        writer.writerow([action.at] + [spreadsheet_cell(v) for v in (action.made_by, action.action, action.student_id,
                                                                      action.detail)])
    write_atomic(path, out.getvalue())
    return len(actions)


def export_gradescope(gradebook: Gradebook, exercise: str, out_dir: Path, language: Language = "en") -> list[Path]:
    """``DIR/<student_id>/results.json`` for each student with a graded submission, its words in ``language``."""
    _, entries = results(gradebook, exercise)
    written = []
    for row, result in entries:
        if result is None:
            continue
        target = out_dir / safe_name(row.student_id) / "results.json"
        write_atomic(target, json.dumps(result.gradescope(language), indent=2, ensure_ascii=False))
        written.append(target)
    return written


# --- the LMS's own import formats ---------------------------------------------------------------------------------

LMS_DECIMALS = 2  # scores in the LMS files are rounded to 2 decimals (half to even, as Python rounds)
MOODLE_IDENTIFIERS = {"idnumber": "ID number", "email": "Email address"}


def lms_points(value: float) -> str:
    """A score as an LMS cell: at most LMS_DECIMALS decimals, no exponent, no trailing zeros."""
    text = f"{round(value, LMS_DECIMALS):.{LMS_DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _grade_cell(result: GradingResult | None, missing: str) -> str:
    if result is not None:
        return lms_points(result.score)
    return "0" if missing == "zero" else ""


def _points_possible(gradebook: Gradebook, exercise: str, entries: list[tuple[Row, GradingResult | None]]) -> float:
    """The assignment's maximum: what graded submissions could get here (CUDA-only checks left out on a CPU
    runner), else the rubric's total."""
    graded = [result.max_score for _, result in entries if result is not None]
    return max(graded) if graded else sum(c.points for c in policy_in_force(gradebook, exercise).rubric.checks.values())


def export_canvas(gradebook: Gradebook, exercise: str, path: Path, assignment: str,
                  assignment_id: str | None = None, missing: str = "empty") -> tuple[int, list[str]]:
    """Canvas's gradebook CSV; returns (students written, ids of students left out for want of a Canvas ID)."""
    _, entries = results(gradebook, exercise)
    roster = gradebook.roster()
    title = f"{assignment} ({assignment_id})" if assignment_id else assignment
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title])
    writer.writerow(["Points Possible", "", "", "", "", lms_points(_points_possible(gradebook, exercise, entries))])
    written, left_out = 0, []
    for row, result in entries:
        student = roster.students.get(row.student_id)
        if student is None or not student.lms_id:
            left_out.append(row.student_id)
            continue
        name = student.name or row.student_name or row.student_id  # Canvas matches on the ID, not the name
        writer.writerow([spreadsheet_cell(v) for v in (name, student.lms_id, student.sis_user_id,
                                                        student.sis_login_id, student.section)]
                        + [_grade_cell(result, missing)])
        written += 1
    write_atomic(path, out.getvalue())
    return written, left_out


def export_moodle(gradebook: Gradebook, exercise: str, path: Path, assignment: str, match_on: str = "idnumber",
                  missing: str = "empty", language: Language = "en") -> tuple[int, list[str]]:
    """Moodle's grade-import CSV, its feedback column in ``language``; returns (students written, ids of students
    left out for want of the identifier ``match_on``: the roster's student id as Moodle's ID number, or its
    email)."""
    _, entries = results(gradebook, exercise)
    roster = gradebook.roster()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([MOODLE_IDENTIFIERS[match_on], assignment, "Feedback"])
    written, left_out = 0, []
    for row, result in entries:
        student = roster.students.get(row.student_id)
        key = row.student_id if match_on == "idnumber" else (student.email if student else "")
        if not key:
            left_out.append(row.student_id)
            continue
        writer.writerow([spreadsheet_cell(key), _grade_cell(result, missing),
                         spreadsheet_cell(_summary(row, result, language))])
        written += 1
    write_atomic(path, out.getvalue())
    return written, left_out


def _summary(row: Row, result: GradingResult | None, language: Language) -> str:
    """A short feedback text: the failed checks, or why nothing was graded (the LMS export is the release)."""
    _ = translations(language).gettext
    message = row_message(row, result, language)
    if result is None:
        return message
    failed = [c.words(language).title for c in result.checks if c.outcome in ("failed", "error")]
    if row.status not in ("graded", "timeout", "crashed"):
        summary = message
    elif not failed:
        summary = _("All checks passed.")
    else:
        summary = _("{count} check(s) failed: {titles}.").format(count=len(failed), titles="; ".join(failed))
    late = _("{points} point(s) off for lateness.").format(points=lms_points(result.late_penalty)) \
        if result.late_penalty else ""
    comments = [_("TA: {comment}").format(comment=f"{note.comment} ({lms_points(note.points)})"
                                          if note.kind == "adjust" else note.comment) for note in result.comments]
    return " ".join(part for part in (summary, late, *comments) if part)[:1000]
