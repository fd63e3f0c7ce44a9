"""One feedback page per student, in HTML and Markdown, from the gradebook.

Each check shows its result, points and message, and a TA's comment where a TA set its points; manual
items show what a TA gave them (or that they await a TA); a TA's bonus or penalty and an extended
deadline are shown with their reason. A check whose rubric visibility is not "visible" is listed as
hidden, without its result, until it is released (and says when that will be): ``after_due_date``
checks are released once the deadline in force has passed, and ``autograder feedback --release``
releases every check (what a course does when it publishes grades). While anything is hidden the
page shows the points of the visible checks only, since the total would reveal the rest. Times are
in the course's time zone (``course.toml``).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from string import Template

from .paths import write_atomic
from .course import moment
from .errors import UserError
from .exercise import Exercise, language_of
from .exports import safe_name
from .gradebook import Gradebook, Row, row_message
from .i18n import Language, translations
from .results import OUTCOME_TEXT, STATUS_TEXT, CheckResult, GradingResult, TaNote
from .scoring import Policy, results
from .text import markdown_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
def render_page(title: str, body: str, lang: Language = "en") -> str:
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
        self.deadline = deadline
        self.released = {"visible"} | ({"after_due_date"} if passed else set())
        if release:
            self.released |= {"after_due_date", "after_published", "hidden"}

    @classmethod
    def of(cls, release: bool, in_force: Policy, result: GradingResult | None) -> Visibility:
        """What a student sees of their result: held to their own deadline (an extension's) where they have one."""
        own = datetime.fromisoformat(result.deadline) if result is not None and result.deadline else None
        return cls(release, own or in_force.deadline)

    def shows(self, check: CheckResult) -> bool:
        return check.visibility in self.released

    def when_shown(self, check: CheckResult, _) -> str:
        """For a check not shown yet: when it will be."""
        if check.visibility == "after_due_date" and self.deadline is not None:
            return _("Shown after the deadline, {when}.").format(when=moment(self.deadline))
        return _("Shown when the course releases grades.")

    def score(self, result: GradingResult) -> tuple[float, float, bool]:
        """(score, out of, whether everything is shown): while any check is withheld, only the visible checks'
        points (the total would tell what the hidden ones gave)."""
        if all(self.shows(c) for c in result.checks):
            return result.score, result.max_score, True
        visible = [c for c in result.checks if self.shows(c) and c.outcome != "not_run"]
        return sum(c.points for c in visible), sum(c.max_points for c in visible), False


def who(row: Row) -> str:
    return f"{row.student_name} ({row.student_id})" if row.student_name else row.student_id


@dataclass
class CheckLine:
    title: str
    outcome: str  # passed | failed | error | not_run | scored | awaiting | hidden (the CSS class)
    result: str  # the outcome in words
    points: str
    message: str
    comment: str = ""  # a TA's, with their name: "TA (Sato): ..."


@dataclass
class FeedbackPage:
    """What one student's page says, in its language, before it is written as HTML or Markdown."""

    lang: Language
    title: str
    student: str
    submitted: str  # "submitted <when> · <file>", or ""
    status: str  # the row's status (the CSS class)
    status_text: str
    score: str | None  # None: nothing was scored
    headers: list[str]
    checks: list[CheckLine] = field(default_factory=list)
    adjustments: list[str] = field(default_factory=list)  # a TA's bonus or penalty, with its reason
    hints: list[str] = field(default_factory=list)
    words: dict[str, str] = field(default_factory=dict)  # headings and labels


def ta_comment(note: TaNote | None, _) -> str:
    return _("TA ({name}): {comment}").format(name=note.by, comment=note.comment) if note and note.comment else ""


def feedback_page(title: str, row: Row, result: GradingResult | None, visibility: Visibility,
                  lang: Language = "en") -> FeedbackPage:
    _ = translations(lang).gettext
    submitted = _("submitted {when} · {file}").format(when=moment(row.submitted_at), file=row.source or "") \
        if row.submitted_at else ""
    page = FeedbackPage(lang, title, who(row), submitted, row.status, _(STATUS_TEXT.get(row.status, row.status)),
                        None, [_("check"), _("result"), _("points"), _("message")],
                        words={"status": _("Status"), "checks": _("Checks"), "hints": _("What to look at"),
                               "adjustments": _("Adjustments by a TA")})
    if result is not None:
        page.score = _score_line(result, visibility, _)
        said = result.message_in(lang)  # an unrun notebook's reason: said once, in the hints, not per check
        for c in result.checks:
            words = c.words(lang)
            if visibility.shows(c):
                points = "" if c.outcome == "not_run" else f"{c.points:g} / {c.max_points:g}"
                page.checks.append(CheckLine(words.title, c.outcome, _(OUTCOME_TEXT[c.outcome]), points,
                                             "" if words.message == said else words.message, ta_comment(c.ta, _)))
            else:
                page.checks.append(CheckLine(words.title, "hidden", _("hidden"), "", visibility.when_shown(c, _)))
        if visibility.score(result)[2]:  # the adjustments' points only where the total is shown
            page.adjustments = [_("{points} points: {comment} ({name})").format(
                points=f"{note.points:+g}", comment=note.comment, name=note.by)
                for note in result.notes if note.kind == "adjust"]
    page.hints = hints(row, result, lang)
    return page


def hints(row: Row, result: GradingResult | None, lang: Language = "en") -> list[str]:
    """What to look at, in the order a student should."""
    _ = translations(lang).gettext
    out = []
    message = row_message(row, result, lang)
    if row.status in ("invalid", "error", "missing") or result is None:
        out.append(message or _(STATUS_TEXT.get(row.status, row.status)))
        return out
    if message:
        out.append(message)
    out += [cell.sentence(lang) for cell in result.diagnostics.problem_cells]
    if any(c.public and c.outcome in ("failed", "error") for c in result.checks):
        out.append(_("Public checks failed: run `autograder check` on your notebook to see them before resubmitting."))
    extension = next((note for note in result.notes if note.kind == "extension"), None)
    if extension is not None:
        out.append(_("A TA extended your deadline to {when}.").format(when=moment(result.deadline))
                   + (" " + extension.comment if extension.comment else ""))
    if result.awaiting:
        out.append(_("A TA has yet to score part of this exercise by hand; your score can still go up."))
    if result.days_late:
        if result.late_penalty:
            out.append(_("Submitted {days} day(s) after the deadline: {points} point(s) off.").format(
                days=result.days_late, points=f"{result.late_penalty:g}"))
        else:
            out.append(_("Submitted {days} day(s) after the deadline.").format(days=result.days_late))
    return out


def _score_line(result: GradingResult, visibility: Visibility, _) -> str:
    got, of, everything = visibility.score(result)
    if not everything:
        return _("Visible checks: {got} / {of} points; your total is released later.").format(got=f"{got:g}",
                                                                                              of=f"{of:g}")
    if result.late_penalty:
        return _("Score: {score} / {max} (after {penalty} point(s) off for lateness)").format(
            score=f"{result.score:g}", max=f"{result.max_score:g}", penalty=f"{result.late_penalty:g}")
    return _("Score: {score} / {max}").format(score=f"{result.score:g}", max=f"{result.max_score:g}")


def feedback_html(page: FeedbackPage) -> str:
    return render_page(f"{page.title} — {page.student}", feedback_body(page), page.lang)


def feedback_body(page: FeedbackPage) -> str:
    """The page's content as HTML, every text escaped (also the submission service's attempt page)."""
    e = html.escape
    parts = [f"<h1>{e(page.title)}</h1>",
             f'<p class="meta">{e(page.student)}' + (f" · {e(page.submitted)}" if page.submitted else "") + "</p>",
             f'<p>{e(page.words["status"])}: <span class="{e(page.status)}">{e(page.status_text)}</span></p>']
    if page.score is not None:
        parts.append(f'<p class="score">{e(page.score)}</p>')
        label = [f' data-label="{e(h)}"' for h in page.headers]  # shown beside each cell where tables stack
        rows = "".join(f'<tr><td{label[0]}>{e(c.title)}</td><td{label[1]} class="word {c.outcome}">{e(c.result)}</td>'
                       f'<td{label[2]} class="num">{e(c.points)}</td><td{label[3]} class="msg">{e(c.message)}'
                       + (f'<p class="ta">{e(c.comment)}</p>' if c.comment else "") + "</td></tr>"
                       for c in page.checks)
        cls = ['', '', ' class="num"', '']  # the points column
        head = "".join(f"<th{cls[i]}>{e(h)}</th>" for i, h in enumerate(page.headers))
        parts.append(f'<h2>{e(page.words["checks"])}</h2><div class="table"><table class="stack"><thead><tr>{head}'
                     f"</tr></thead><tbody>{rows}</tbody></table></div>")
    if page.adjustments:
        parts.append(f'<h2>{e(page.words["adjustments"])}</h2><ul class="adjustments">'
                     + "".join(f"<li>{e(a)}</li>" for a in page.adjustments) + "</ul>")
    if page.hints:
        parts.append(f'<h2>{e(page.words["hints"])}</h2><ul class="hints">'
                     + "".join(f"<li>{e(h)}</li>" for h in page.hints) + "</ul>")
    return "\n".join(parts)


def feedback_markdown(page: FeedbackPage) -> str:
    md = markdown_text  # every interpolated text, the student's and ours alike
    lines = [f"# {md(page.title)}", "", md(page.student) + (f" · {md(page.submitted)}" if page.submitted else ""), "",
             f"{md(page.words['status'])}: {md(page.status_text)}", ""]
    if page.score is not None:
        lines += [f"**{md(page.score)}**", "", "| " + " | ".join(md(h) for h in page.headers) + " |", "|---|---|---|---|"]
        lines += [f"| {md(c.title)} | {md(c.result)} | {md(c.points)} | "
                  f"{md(c.message + (chr(10) + c.comment if c.comment else ''))} |" for c in page.checks]
        lines.append("")
    if page.adjustments:
        lines += [f"## {md(page.words['adjustments'])}", ""] + [f"- {md(a)}" for a in page.adjustments] + [""]
    if page.hints:
        lines += [f"## {md(page.words['hints'])}", ""] + [f"- {md(h)}" for h in page.hints] + [""]
    return "\n".join(lines)


def write_feedback(gradebook: Gradebook, exercise: str, out_dir: Path, release: bool = False,
                   lang: Language | None = None) -> list[Path]:
    """``DIR/<student_id>.html`` and ``.md`` for every student of the exercise, in ``lang`` (default: the
    exercise's or course's language); returns the HTML pages."""
    policy, entries = results(gradebook, exercise)
    title = exercise_title(exercise)
    language = language_of(exercise, lang)
    pages = []
    for row, result in entries:
        target = out_dir / f"{safe_name(row.student_id)}.html"
        page = feedback_page(title, row, result, Visibility.of(release, policy, result), language)
        write_atomic(target, feedback_html(page))
        write_atomic(target.with_suffix(".md"), feedback_markdown(page))
        pages.append(target)
    return pages
