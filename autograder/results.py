"""What grading produces: outcomes first (stored), scores second (derived), and exports."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from .agent import NOT_IN_COURSE
from .i18n import L_, LANGUAGES, N_, Language, Text, render, translations

# scored, awaiting: a rubric's manual item, which a TA scores (scoring.py)
Outcome = Literal["passed", "failed", "error", "not_run", "scored", "awaiting"]
OUTCOME_TEXT = {"passed": N_("passed"), "failed": N_("failed"), "error": N_("error in the check"),
                "not_run": N_("not run"), "scored": N_("scored by a TA"), "awaiting": N_("awaiting a TA")}
CELL_ENDING = {"error": N_("an error"), "timeout": N_("its time limit"), "died": N_("its process dying"),
               "memory": N_("running out of memory"), "output_limit": N_("too much output")}
STATUS_WORDS = {  # a row's status in a word, for TAs' tables and lists
    "graded": N_("graded"), "timeout": N_("timeout"), "crashed": N_("crashed"), "invalid": N_("invalid"),
    "error": N_("error"), "missing": N_("missing"), "pending": N_("pending"), "superseded": N_("superseded")}
STATUS_TEXT = {  # a row's status as a sentence for its student
    "graded": N_("graded"),
    "timeout": N_("graded, but the notebook hit its time limit"),
    "crashed": N_("graded, but the notebook's process died"),
    "invalid": N_("not gradable"),
    "error": N_("the grader could not run it"),
    "missing": N_("no submission received"),
}
# graded: the notebook ran to its end; timeout: it hit the notebook time limit; crashed: its
# process died; invalid: not a gradable notebook; error: the grader could not run it.
Status = Literal["graded", "timeout", "crashed", "invalid", "error"]


class CheckWords(BaseModel):
    title: str
    message: str = ""


class CheckOutcome(BaseModel):
    id: str
    title: str  # English; other languages in `translations`
    outcome: Outcome
    message: str = ""
    duration: float = 0.0
    public: bool = False
    cases_passed: int = 0
    cases_total: int = 0
    translations: dict[str, CheckWords] = {}  # by language, where it reads differently from the English
    # Failed only because what it judges was never made: an earlier cell stopped before making it. validate's
    # one-mistake rule counts these apart (no check can judge what a stopped cell never computed).
    missing: bool = False

    def words(self, language: str) -> CheckWords:
        """The title and message in a language (English where the check has no translation)."""
        return self.translations.get(language) or CheckWords(title=self.title, message=self.message)


def cell_name(number: int, start: bool = False) -> Text:
    """How a sentence names a cell (`start`: at the sentence's start): the student's "code cell N" (0: a cell the
    grader added)."""
    if number:
        return (L_("Code cell {number}") if start else L_("code cell {number}")).format(number=number)
    return L_("A cell the grader added") if start else L_("a cell the grader added")


_NOT_IN_COURSE = re.compile("ModuleNotFoundError: " + re.escape(NOT_IN_COURSE).replace(
    re.escape("{module!r}"), "'(?P<module>[^']+)'").replace(re.escape("{packages}"), "(?P<packages>.*)"))


def cell_error(error: str) -> Text | str:
    """A cell's error as its student should read it: Python's own words, but for an import the course's
    environment does not provide, which is a sentence in every language."""
    found = _NOT_IN_COURSE.fullmatch(error)
    if not found:
        return error
    return L_("ModuleNotFoundError: the course's environment has no module `{module}`; it provides {packages}, "
              "so import only from those").format(module=found["module"], packages=found["packages"])


class CellDiagnostic(BaseModel):
    index: int  # position in the notebook as run (grader cells included)
    number: int = 0  # the student's "code cell N"
    status: str
    error: str | None = None
    duration: float = 0.0

    def sentence(self, language: Language) -> str:
        """How the cell ended, for its student: "Code cell 3 ended with an error: NameError: ..."."""
        _ = translations(language).gettext
        ending = _(CELL_ENDING[self.status]) if self.status in CELL_ENDING else self.status
        return _("{cell} ended with {ending}: {error}").format(cell=render(cell_name(self.number, start=True), language),
                                                               ending=ending,
                                                               error=render(cell_error(self.error), language)
                                                               if self.error else _("no message"))


class Diagnostics(BaseModel):
    runner: str = ""
    device: str = ""
    profile: str = ""
    wall_time: float = 0.0
    notebook_time: float = 0.0
    checks_time: float = 0.0  # the grader's checks, including the student functions they called
    student_call_time: float = 0.0  # of checks_time: inside student functions, as the student process timed them
    problem_cells: list[CellDiagnostic] = []


class RunRecord(BaseModel):
    """Everything a grading run established, before any points are attached."""

    exercise: str
    submission: str
    sha256: str
    status: Status
    message: str = ""  # English; other languages in `message_translations`
    message_translations: dict[str, str] = {}  # by language, where it reads differently from the English
    outcomes: list[CheckOutcome] = []
    diagnostics: Diagnostics = Diagnostics()
    code: list[str] = []  # the notebook's code cells as submitted: what the similarity report compares

    def say(self, status: Status, message: Text | str) -> None:
        """End as `status` with a sentence for the student, rendered now in every language (as outcomes are)."""
        self.status, self.message = status, render(message, "en")
        self.message_translations = {language: text for language in LANGUAGES if language != "en"
                                     if (text := render(message, language)) != self.message}

    def message_in(self, language: str) -> str:
        return self.message_translations.get(language, self.message)


class TaNote(BaseModel):
    """A TA's decision as its student reads it (``gradebook.Decision``, scored by ``scoring``)."""

    id: int
    kind: Literal["points", "adjust", "manual", "extension"]
    item: str = ""
    points: float | None = None
    comment: str = ""
    by: str = ""
    at: str = ""


class CheckResult(CheckOutcome):
    points: float
    max_points: float
    visibility: str
    ta: TaNote | None = None  # a TA set these points (or scored this manual item), with their comment
    points_before_ta: float | None = None  # what the outcome earned before a TA set the points


class GradingResult(RunRecord):
    checks: list[CheckResult]
    score: float  # after the late penalty and the TAs' adjustments
    max_score: float
    late_penalty: float = 0.0  # points taken off for lateness (the rubric's [late] policy)
    days_late: int = 0  # started days after the deadline, beyond the grace period
    adjustment: float = 0.0  # the TAs' bonuses and penalties, added last
    notes: list[TaNote] = []  # the extension and the adjustments behind this score
    deadline: str | None = None  # the deadline this submission was held to (the student's own, if any)
    awaiting: list[str] = []  # manual items no TA has scored yet

    @property
    def comments(self) -> list[TaNote]:
        """Every TA decision on this result that carries a comment: checks' first, then the others."""
        return [c.ta for c in self.checks if c.ta and c.ta.comment] + [n for n in self.notes if n.comment]

    def gradescope(self, language: Language = "en") -> dict:
        """Gradescope's results.json layout, the checks' words in ``language``."""
        _ = translations(language).gettext
        tests = []
        for c in self.checks:
            status_text = _(OUTCOME_TEXT[c.outcome])
            words = c.words(language)
            test = {
                "name": words.title,
                "name_format": "text",
                "number": c.id,
                "score": c.points if c.outcome != "not_run" else 0,
                "max_score": c.max_points if c.outcome != "not_run" else 0,
                "output": f"{status_text}: {words.message}" if words.message else status_text,
                "visibility": c.visibility,
            }
            if c.ta is not None and c.ta.comment:
                test["output"] += "\n" + _("TA: {comment}").format(comment=c.ta.comment)
            # Gradescope knows only passed / failed; a check that did not run, or a TA scored, is neither.
            if c.outcome in ("passed", "failed", "error"):
                test["status"] = "passed" if c.outcome == "passed" else "failed"
            tests.append(test)
        for note in self.notes:
            if note.kind == "adjust":
                tests.append({"name": _("Adjustment by a TA"), "name_format": "text", "number": f"ta-{note.id}",
                              "score": note.points, "max_score": 0, "output": note.comment, "visibility": "visible"})
        overview = " ".join(part for part in (
            _("Status: {status}.").format(status=_(STATUS_TEXT[self.status])),
            self.message_in(language),
            _("Submitted {days} day(s) after the deadline: {points} point(s) off.").format(
                days=self.days_late, points=f"{self.late_penalty:g}") if self.days_late else "",
            _("Manual items not scored yet: {items}.").format(items=", ".join(self.awaiting)) if self.awaiting else "",
        ) if part)
        return {
            "score": self.score,
            "execution_time": round(self.diagnostics.wall_time, 3),
            "output": overview,
            "output_format": "text",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": {"status": self.status, "sha256": self.sha256, "diagnostics": self.diagnostics.model_dump()},
        }
