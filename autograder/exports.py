"""Grades out of the gradebook: a CSV an LMS imports, and Gradescope ``results.json`` files.

The CSV has one line per student (their current submission), the student id first: Moodle's
"Import grades: CSV file" maps ``student_id`` to the user's ID number (or username) and ``total`` to
the assignment; any LMS that imports a CSV by column mapping takes it the same way.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path

from .build import write_atomic
from .gradebook import Gradebook
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


def export_gradescope(gradebook: Gradebook, exercise: str, out_dir: Path) -> list[Path]:
    """``DIR/<student_id>/results.json`` for each student with a graded submission."""
    _, entries = gradebook.results(exercise)
    written = []
    for row, result in entries:
        if result is None:
            continue
        target = out_dir / safe_name(row.student_id) / "results.json"
        write_atomic(target, json.dumps(result.gradescope(), indent=2, ensure_ascii=False))
        written.append(target)
    return written
