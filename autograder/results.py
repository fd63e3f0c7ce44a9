"""What grading produces: outcomes first (stored), scores second (derived), and exports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from .i18n import N_, Language, translations

Outcome = Literal["passed", "failed", "error", "not_run"]
OUTCOME_TEXT = {"passed": N_("passed"), "failed": N_("failed"), "error": N_("error in the check"),
                "not_run": N_("not run")}
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

    def words(self, language: str) -> CheckWords:
        """The title and message in a language (English where the check has no translation)."""
        return self.translations.get(language) or CheckWords(title=self.title, message=self.message)


class CellDiagnostic(BaseModel):
    index: int  # position in the notebook as run (grader cells included)
    number: int = 0  # the student's "code cell N"
    status: str
    error: str | None = None
    duration: float = 0.0

    @property
    def label(self) -> str:
        return f"code cell {self.number}" if self.number else f"cell {self.index + 1}"  # records older than numbers


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
    message: str = ""
    outcomes: list[CheckOutcome] = []
    diagnostics: Diagnostics = Diagnostics()


class CheckResult(CheckOutcome):
    points: float
    max_points: float
    visibility: str


class GradingResult(RunRecord):
    checks: list[CheckResult]
    score: float  # after the late penalty
    max_score: float
    late_penalty: float = 0.0  # points taken off for lateness (the rubric's [late] policy)
    days_late: int = 0  # started days after the deadline, beyond the grace period

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
            # Gradescope knows only passed / failed; a check that did not run is neither, so it has no status.
            if c.outcome != "not_run":
                test["status"] = "passed" if c.outcome == "passed" else "failed"
            tests.append(test)
        overview = f"Status: {self.status}." + (f" {self.message}" if self.message else "")
        if self.days_late:
            overview += f" Submitted {self.days_late} day(s) late: {self.late_penalty:g} point(s) off."
        return {
            "score": self.score,
            "execution_time": round(self.diagnostics.wall_time, 3),
            "output": overview,
            "output_format": "text",
            "stdout_visibility": "hidden",
            "tests": tests,
            "extra_data": {"status": self.status, "sha256": self.sha256, "diagnostics": self.diagnostics.model_dump()},
        }
