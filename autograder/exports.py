"""Grades out of the gradebook: CSV files an LMS imports, and Gradescope ``results.json`` files.

Three CSV layouts, one line per student (their current submission), scores after the late penalty:

- generic (``export_csv``): the student id first, per-check points, penalty, total, status;
- Canvas (``export_canvas``): the layout of Canvas's own gradebook export, which its gradebook import
  reads back, keyed by the Canvas user ID;
- Moodle (``export_moodle``): an identifier column Moodle's "Import grades: CSV file" maps to the
  users' ID number or email address, the grade, and a feedback text.

Cells made from student text never start a formula (``text.spreadsheet_cell``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

from .build import write_atomic
from .gradebook import Gradebook, Row, row_message
from .i18n import Language, translations
from .results import GradingResult
from .text import spreadsheet_cell

FIXED_COLUMNS = ["student_id", "name", "status", "submitted_at", "days_late", "score_before_penalty",
                 "late_penalty", "total", "max_score", "flags", "source", "message"]
TEXT_COLUMNS = {"student_id", "name", "source", "message"}  # from students' files and names: never a formula


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
    """Write the grades CSV; returns the number of students. Per-check columns hold points (empty: not run)."""
    policy, entries = gradebook.results(exercise)
    roster = gradebook.roster()
    check_ids = list(policy.rubric.checks)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS[:5] + check_ids + FIXED_COLUMNS[5:])
    for row, result in entries:
        points = {c.id: ("" if c.outcome == "not_run" else f"{c.points:g}") for c in result.checks} if result else {}
        fixed = {
            "student_id": row.student_id, "name": row.student_name, "status": row.status,
            "submitted_at": row.submitted_at or "", "days_late": result.days_late if result else "",
            "score_before_penalty": f"{result.score + result.late_penalty:g}" if result else "",
            "late_penalty": f"{result.late_penalty:g}" if result else "",
            "total": f"{result.score:g}" if result else "0",
            "max_score": f"{result.max_score:g}" if result else "",
            "flags": flags_of(row, roster), "source": row.source or "", "message": row.message,
        }
        fixed = {c: spreadsheet_cell(v) if c in TEXT_COLUMNS else v for c, v in fixed.items()}
        writer.writerow([fixed[c] for c in FIXED_COLUMNS[:5]] + [points.get(c, "") for c in check_ids]
                        + [fixed[c] for c in FIXED_COLUMNS[5:]])
    write_atomic(path, out.getvalue())
    return len(entries)


def export_gradescope(gradebook: Gradebook, exercise: str, out_dir: Path, language: Language = "en") -> list[Path]:
    """``DIR/<student_id>/results.json`` for each student with a graded submission, its words in ``language``."""
    _, entries = gradebook.results(exercise)
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
    return max(graded) if graded else sum(c.points for c in gradebook.policy(exercise).rubric.checks.values())


def export_canvas(gradebook: Gradebook, exercise: str, path: Path, assignment: str,
                  assignment_id: str | None = None, missing: str = "empty") -> tuple[int, list[str]]:
    """Canvas's gradebook CSV; returns (students written, ids of students left out for want of a Canvas ID)."""
    _, entries = gradebook.results(exercise)
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
    _, entries = gradebook.results(exercise)
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
    return " ".join(part for part in (summary, late) if part)[:1000]
