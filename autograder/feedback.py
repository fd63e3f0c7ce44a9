"""One feedback page per student, in HTML and Markdown, from the gradebook.

Each check shows its result, points and message. A check whose rubric visibility is not "visible"
is listed as hidden, without its result, until it is released: ``after_due_date`` checks are released
once the deadline in force has passed, and ``autograder feedback --release`` releases every check
(what a course does when it publishes grades). While anything is hidden the page shows the points
of the visible checks only, since the total would reveal the rest.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from string import Template

from .build import write_atomic
from .errors import UserError
from .exercise import Exercise
from .exports import safe_name
from .gradebook import Gradebook, Row
from .results import CheckResult, GradingResult
from .text import markdown_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
OUTCOME_TEXT = {"passed": "passed", "failed": "failed", "error": "error in the check", "not_run": "not run"}
STATUS_TEXT = {
    "graded": "graded",
    "timeout": "graded, but the notebook hit its time limit",
    "crashed": "graded, but the notebook's process died",
    "invalid": "not gradable",
    "error": "the grader could not run it",
    "missing": "no submission received",
}


def render_page(title: str, body: str, lang: str = "en") -> str:
    """A self-contained HTML page: the shared template and style sheet, no external resources."""
    page = Template((TEMPLATES / "page.html").read_text())
    return page.substitute(title=html.escape(title), body=body, lang=lang,
                           style=(TEMPLATES / "style.css").read_text())


def exercise_title(name: str) -> str:
    try:
        return Exercise(name).spec.title
    except UserError:  # the exercise may not exist in this course folder; its name will do
        return name


class Visibility:
    """Which checks a student may see now."""

    def __init__(self, release: bool, deadline: datetime | None) -> None:
        passed = deadline is not None and datetime.now(timezone.utc) > deadline.astimezone(timezone.utc)
        self.released = {"visible"} | ({"after_due_date"} if passed else set())
        if release:
            self.released |= {"after_due_date", "after_published", "hidden"}

    def shows(self, check: CheckResult) -> bool:
        return check.visibility in self.released


def who(row: Row) -> str:
    return f"{row.student_name} ({row.student_id})" if row.student_name else row.student_id


def hints(row: Row, result: GradingResult | None) -> list[str]:
    """What to look at, in the order a student should."""
    out = []
    if row.status in ("invalid", "error", "missing") or result is None:
        out.append(row.message or STATUS_TEXT.get(row.status, row.status))
        return out
    if result.message:
        out.append(result.message)
    for cell in result.diagnostics.problem_cells:
        out.append(f"{cell.label.capitalize()} ended with {cell.status}: {cell.error or 'no message'}.")
    if any(c.public and c.outcome in ("failed", "error") for c in result.checks):
        out.append("Public checks failed: run `autograder check` on your notebook to see them before resubmitting.")
    if result.days_late:
        cost = f": {result.late_penalty:g} point(s) off" if result.late_penalty else ""
        out.append(f"Submitted {result.days_late} day(s) after the deadline{cost}.")
    return out


def _score_line(result: GradingResult, visible: list[CheckResult], withheld: list[CheckResult]) -> str:
    if withheld:
        got = sum(c.points for c in visible if c.outcome != "not_run")
        of = sum(c.max_points for c in visible if c.outcome != "not_run")
        return f"Visible checks: {got:g} / {of:g} points; your total is released later."
    late = f" (after {result.late_penalty:g} point(s) off for lateness)" if result.late_penalty else ""
    return f"Score: {result.score:g} / {result.max_score:g}{late}"


def feedback_html(title: str, row: Row, result: GradingResult | None, visibility: Visibility) -> str:
    e = html.escape
    parts = [f"<h1>{e(title)}</h1>",
             f'<p class="meta">{e(who(row))}'
             + (f" · submitted {e(row.submitted_at)} · {e(row.source or '')}" if row.submitted_at else "") + "</p>",
             f'<p>Status: <span class="{e(row.status)}">{e(STATUS_TEXT.get(row.status, row.status))}</span></p>']
    if result is not None:
        visible = [c for c in result.checks if visibility.shows(c)]
        withheld = [c for c in result.checks if not visibility.shows(c)]
        parts.append(f'<p class="score">{e(_score_line(result, visible, withheld))}</p>')
        rows = []
        for c in result.checks:
            if visibility.shows(c):
                points = "" if c.outcome == "not_run" else f"{c.points:g} / {c.max_points:g}"
                rows.append(f'<tr><td>{e(c.title)}</td><td class="word {c.outcome}">{e(OUTCOME_TEXT[c.outcome])}</td>'
                            f'<td class="num">{points}</td><td class="msg">{e(c.message)}</td></tr>')
            else:
                rows.append(f'<tr><td>{e(c.title)}</td><td class="word hidden">hidden</td><td class="num"></td>'
                            '<td class="msg">Released after grading.</td></tr>')
        parts.append('<h2>Checks</h2><div class="table"><table><thead><tr><th>check</th><th>result</th>'
                     f'<th class="num">points</th><th>message</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')
    found = hints(row, result)
    if found:
        parts.append('<h2>What to look at</h2><ul class="hints">'
                     + "".join(f"<li>{e(h)}</li>" for h in found) + "</ul>")
    return render_page(f"{title} — {row.student_id}", "\n".join(parts))


def feedback_markdown(title: str, row: Row, result: GradingResult | None, visibility: Visibility) -> str:
    _md = markdown_text  # every interpolated text, the student's and ours alike
    lines = [f"# {_md(title)}", "", _md(who(row))
             + (f", submitted {_md(row.submitted_at)} ({_md(row.source or '')})" if row.submitted_at else ""), "",
             f"Status: {_md(STATUS_TEXT.get(row.status, row.status))}", ""]
    if result is not None:
        visible = [c for c in result.checks if visibility.shows(c)]
        withheld = [c for c in result.checks if not visibility.shows(c)]
        lines += [f"**{_md(_score_line(result, visible, withheld))}**", "", "| check | result | points | message |",
                  "|---|---|---|---|"]
        for c in result.checks:
            if visibility.shows(c):
                points = "" if c.outcome == "not_run" else f"{c.points:g} / {c.max_points:g}"
                lines.append(f"| {_md(c.title)} | {OUTCOME_TEXT[c.outcome]} | {points} | {_md(c.message)} |")
            else:
                lines.append(f"| {_md(c.title)} | hidden | | Released after grading. |")
        lines.append("")
    found = hints(row, result)
    if found:
        lines += ["## What to look at", ""] + [f"- {_md(h)}" for h in found] + [""]
    return "\n".join(lines)


def write_feedback(gradebook: Gradebook, exercise: str, out_dir: Path, release: bool = False) -> list[Path]:
    """``DIR/<student_id>.html`` and ``.md`` for every student of the exercise; returns the HTML pages."""
    policy, entries = gradebook.results(exercise)
    visibility = Visibility(release, policy.deadline)
    title = exercise_title(exercise)
    pages = []
    for row, result in entries:
        page = out_dir / f"{safe_name(row.student_id)}.html"
        write_atomic(page, feedback_html(title, row, result, visibility))
        write_atomic(page.with_suffix(".md"), feedback_markdown(title, row, result, visibility))
        pages.append(page)
    return pages
