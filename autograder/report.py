"""The cohort report: one self-contained HTML page (plots embedded as PNG data URIs, no scripts).

Score distribution, pass rate per check, the commonest failure messages, runtime distribution, and
the submissions that need a person: errors, timeouts, crashes, invalid files, late, missing, not in
the roster, identical files from several students. Pass rates and failure messages count only the
submissions whose notebook ran (an invalid file fails every check and says nothing about a check).
"""

from __future__ import annotations

import base64
import functools
import html
import io
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean, median

from .paths import write_atomic
from .exercise import language_of
from .exports import flags_of
from .feedback import exercise_title, render_page
from .gradebook import Gradebook, Row, row_message
from .i18n import Language, translations
from .paths import course_relative
from .results import STATUS_WORDS
from .scoring import results

RAN = ("graded", "timeout", "crashed")
NEEDS_A_LOOK = ("error", "timeout", "crashed", "invalid")
TOP_MESSAGES = 15
JAPANESE_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "TakaoPGothic")


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _figure(alt: str, caption: str, draw, size: tuple[float, float] = (7, 3)) -> str:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": plot_fonts()}):
        fig = Figure(figsize=size, layout="constrained")
        draw(fig.subplots())
        png = _png(fig)
    e = html.escape
    return (f'<figure><img alt="{e(alt)}" src="data:image/png;base64,{png}">'
            f"<figcaption>{e(caption)}</figcaption></figure>")


def _table(head: list[str], rows: list[list[str]], numeric: set[int] = frozenset(), words: set[int] = frozenset(),
           none: str = "None.") -> str:
    """A table (``none`` when it has no rows); ``numeric`` columns are right-aligned, ``words`` columns (statuses)
    never break inside a word."""
    if not rows:
        return f"<p>{html.escape(none)}</p>"
    e = html.escape
    num = ' class="num"'
    cls = [num if i in numeric else ' class="word"' if i in words else "" for i in range(len(head))]
    th = "".join(f"<th{num if i in numeric else ''}>{e(h)}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls[i]}>{e(str(v))}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<div class="table"><table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


@functools.cache
def plot_fonts() -> list[str]:
    """Matplotlib's font list for the plots: its own, then a Japanese one where installed (glyph by glyph fallback),
    so a Japanese check title or label is drawn, not boxes. Matplotlib's font cache does not see fonts installed
    after it was written (`make system-deps` may come later), so the system's CJK font files are added here."""
    from matplotlib import font_manager

    def known() -> list[str]:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return [name for name in JAPANESE_FONTS if name in names]

    if not known():
        for path in font_manager.findSystemFonts():
            if any(mark in Path(path).name for mark in ("CJK", "JP", "Gothic")):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError):  # a font file matplotlib cannot read
                    continue
    return ["DejaVu Sans", *known()]


def _h2(text: str) -> str:
    return f"<h2>{html.escape(text)}</h2>"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _card(label: str, value: str) -> str:
    return f'<div class="card"><b>{html.escape(value)}</b>{html.escape(label)}</div>'


def build_report(gradebook: Gradebook, exercise: str, lang: Language = "en") -> str:
    _ = translations(lang).gettext
    policy, entries = results(gradebook, exercise)
    roster = gradebook.roster()
    scored = [(row, result) for row, result in entries if result is not None]
    ran = [(row, result) for row, result in scored if row.status in RAN]
    statuses = Counter(row.status for row, _result in entries)
    scores = [result.score for _row, result in scored]
    full = sum(r.points for r in policy.rubric.checks.values())
    max_score = max((result.max_score for _row, result in scored), default=full)
    e = html.escape
    meta = _("{students} students · rubric {rubric}").format(students=len(entries),
                                                             rubric=course_relative(policy.origin))
    if policy.deadline:
        meta += " · " + _("deadline {when}").format(when=policy.deadline.isoformat())
    heading = _("{title}: cohort report").format(title=exercise_title(exercise))
    parts = [f"<h1>{e(heading)}</h1>", f'<p class="meta">{e(meta)}</p>']

    cards = [_card(_("students"), str(len(entries)))]
    cards += [_card(_(STATUS_WORDS.get(status, status)), str(n)) for status, n in sorted(statuses.items())]
    if scores:
        cards += [_card(_("mean score"), f"{mean(scores):.2f} / {max_score:g}"), _card(_("median"), f"{median(scores):g}")]
    parts.append('<div class="cards">' + "".join(cards) + "</div>")

    parts.append(_h2(_("Score distribution")))
    if scores:
        def draw_scores(ax):
            ax.hist(scores, bins=[b - 0.5 for b in range(int(max_score) + 2)], color="#4c78a8", edgecolor="white")
            ax.set_xlabel(_("score (after late penalties)"))
            ax.set_ylabel(_("students"))
        parts.append(_figure(_("Histogram of scores"),
                             _("{n} scored submissions; maximum {max}.").format(n=len(scores), max=f"{max_score:g}"),
                             draw_scores))
    else:
        parts.append(_p(_("No scored submissions yet.")))

    parts.append(_h2(_("Pass rate per check")))
    per_check: dict[str, Counter] = defaultdict(Counter)
    titles: dict[str, str] = {}
    for _row, result in ran:
        for c in result.checks:
            if c.outcome in ("scored", "awaiting"):  # a manual item: a TA's, not a check's
                continue
            per_check[c.id][c.outcome] += 1
            titles[c.id] = c.words(lang).title
    rates = {cid: n["passed"] / (n["passed"] + n["failed"] + n["error"])
             for cid, n in per_check.items() if n["passed"] + n["failed"] + n["error"]}
    if rates:
        def draw_rates(ax):
            ids = list(rates)[::-1]
            ax.barh(ids, [100 * rates[i] for i in ids], color="#54a24b")
            ax.set_xlim(0, 100)
            ax.set_xlabel(_("% of submissions that ran"))
        parts.append(_figure(_("Bar chart of the pass rate of each check"),
                             _("Over {n} submissions that ran.").format(n=len(ran)),
                             draw_rates, size=(7, 0.45 * len(rates) + 1)))
    parts.append(_table(
        [_("check"), _("title"), _("points"), _("passed"), _("failed"), _("error"), _("not run"), _("pass rate")],
        [[cid, titles[cid], f"{policy.rubric.checks[cid].points:g}" if cid in policy.rubric.checks else "",
          n["passed"], n["failed"], n["error"], n["not_run"], f"{100 * rates[cid]:.0f}%" if cid in rates else "—"]
         for cid, n in per_check.items()], numeric={2, 3, 4, 5, 6, 7}, none=_("None.")))

    parts.append(_h2(_("Commonest failure messages")))
    messages = Counter((c.id, (c.words(lang).message.strip().splitlines() or [""])[0][:200])
                       for _row, result in ran for c in result.checks if c.outcome in ("failed", "error"))
    parts.append(_table([_("check"), _("message"), _("submissions")],
                        [[cid, msg, n] for (cid, msg), n in messages.most_common(TOP_MESSAGES)], numeric={2},
                        none=_("None.")))

    parts.append(_h2(_("Runtime")))
    walls = [result.diagnostics.wall_time for _row, result in ran]
    notebook = [result.diagnostics.notebook_time for _row, result in ran]
    if walls:
        def draw_runtime(ax):
            ax.hist([walls, notebook], bins=15, label=[_("whole grading"), _("notebook cells")],
                    color=["#4c78a8", "#f58518"])
            ax.set_xlabel(_("seconds per submission"))
            ax.set_ylabel(_("submissions"))
            ax.legend()
        parts.append(_figure(_("Histogram of grading time per submission"),
                             _("Median {median} s per submission, of which {notebook} s in the notebook's own cells; "
                               "slowest {slowest} s.").format(median=f"{median(walls):.1f}",
                                                              notebook=f"{median(notebook):.1f}",
                                                              slowest=f"{max(walls):.1f}"), draw_runtime))

    parts.append(_h2(_("Submissions that need a look")))
    parts.append(_table([_("student"), _("status"), _("message"), _("file")],
                        [[row.student_id, _(STATUS_WORDS.get(row.status, row.status)), row_message(row, result, lang),
                          row.source or ""] for row, result in entries if row.status in NEEDS_A_LOOK],
                        words={1}, none=_("None.")))
    parts.append(_h2(_("Late submissions")))
    parts.append(_table([_("student"), _("submitted at"), _("days late"), _("points off")],
                        [[row.student_id, row.submitted_at, result.days_late, f"{result.late_penalty:g}"]
                         for row, result in scored if result.days_late], numeric={2, 3}, none=_("None.")))
    parts.append(_h2(_("Roster")))
    missing = ", ".join(r.student_id for r, _result in entries if r.status == "missing") or _("none")
    outsiders = ", ".join(r.student_id for r, _result in entries if "not_in_roster" in flags_of(r, roster)) or _("none")
    parts.append(_p(_("Missing (in the roster, no submission): {ids}").format(ids=missing)))
    parts.append(_p(_("Not in the roster: {ids}").format(ids=outsiders)))
    parts.append(_h2(_("Identical files from several students")))
    parts.append(_table([_("students"), "sha256"], _identical([row for row, _result in entries]), none=_("None.")))
    return render_page(_("{exercise} cohort report").format(exercise=exercise), "\n".join(parts), lang)


def _identical(rows: list[Row]) -> list[list[str]]:
    by_hash: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.sha256:
            by_hash[row.sha256].append(row.student_id)
    return [[", ".join(students), sha[:16]] for sha, students in by_hash.items() if len(students) > 1]


def write_report(gradebook: Gradebook, exercise: str, out_dir: Path, lang: Language | None = None) -> Path:
    """``DIR/report.html`` in ``lang`` (default: the exercise's or course's language)."""
    target = out_dir / "report.html"
    write_atomic(target, build_report(gradebook, exercise, language_of(exercise, lang)))
    return target

