"""Points and visibility per check (``rubrics/<exercise>.toml``); scores from outcomes."""

from __future__ import annotations

import math
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import UserError
from .i18n import L_
from .results import CheckOutcome, CheckResult, GradingResult, RunRecord

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class CheckRubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    visibility: Visibility = "visible"
    # A parametrised check scores the share of its cases that passed instead of all-or-nothing.
    partial: bool = False


class LatePolicy(BaseModel):
    """The rubric's ``[late]`` table: what a submission after the deadline costs.

    policy: "none" (lateness is recorded, costs nothing), "zero" (a late submission scores 0), or
    "percent_per_day" (each started day after the deadline costs ``percent_per_day`` percent of the
    earned score, at most ``max_percent``). A submission at most ``grace_minutes`` after the deadline
    counts as on time; days are counted from the deadline itself. ``deadline`` is a TOML date-time
    (``2026-05-01T23:59:00+09:00``; without an offset it is the grading machine's local time); the
    `--deadline` option of `autograder grade`/`regrade` overrides it.
    """

    model_config = ConfigDict(extra="forbid")
    policy: Literal["none", "zero", "percent_per_day"] = "none"
    deadline: datetime | None = None
    grace_minutes: float = Field(0, ge=0)
    percent_per_day: float = Field(0, ge=0, le=100)
    max_percent: float = Field(100, ge=0, le=100)

    @model_validator(mode="after")
    def _rate_given(self) -> LatePolicy:
        if self.policy == "percent_per_day" and not self.percent_per_day:
            raise ValueError('policy "percent_per_day" needs percent_per_day (e.g. 10)')
        return self

    def days_late(self, late_by: timedelta | None) -> int:
        """Started days after the deadline; 0 when on time or within the grace period."""
        if late_by is None or late_by <= timedelta(minutes=self.grace_minutes):
            return 0
        return math.ceil(late_by / timedelta(days=1))

    def penalty_fraction(self, late_by: timedelta | None) -> float:
        """The share of the earned score a submission this late loses."""
        days = self.days_late(late_by)
        if not days or self.policy == "none":
            return 0.0
        if self.policy == "zero":
            return 1.0
        return min(self.max_percent, self.percent_per_day * days) / 100


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: dict[str, CheckRubric]
    late: LatePolicy = LatePolicy()

    @classmethod
    def load(cls, path: Path) -> Rubric:
        if not path.is_file():
            raise UserError(L_("The rubric {path} does not exist; create it with a [checks.<id>] table per check.")
                            .format(path=str(path)))
        return cls.parse(path.read_text(), str(path))

    @classmethod
    def parse(cls, text: str, origin: str) -> Rubric:
        """A rubric from its TOML text; ``origin`` names it in error messages."""
        try:
            return cls.model_validate(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise UserError(L_("The rubric {path} is not valid TOML ({problem}); fix the syntax and run again.")
                            .format(path=origin, problem=str(exc))) from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UserError(L_("The rubric {path} is invalid at '{where}': {problem}; fix it and run again.").format(
                path=origin, where=where, problem=err["msg"])) from exc

    def verify(self, check_ids: list[str], path: Path, retired: set[str] = frozenset()) -> None:
        """Every check has points and every rubric entry names a real check (typos are caught here).

        ``retired``: checks removed from the exercise that stored outcomes still hold; a rubric may name them
        or not (unnamed, they score nothing)."""
        unknown = sorted(set(self.checks) - set(check_ids) - set(retired))
        unpriced = [c for c in check_ids if c not in self.checks and c not in retired]
        if unknown:
            raise UserError(L_("The rubric {path} names checks that do not exist: {unknown}; the checks are: "
                               "{checks}.").format(path=str(path), unknown=", ".join(unknown),
                                                   checks=", ".join(check_ids)))
        if unpriced:
            raise UserError(L_("The rubric {path} gives no points to: {checks}; add a [checks.<id>] table for "
                               "each.").format(path=str(path), checks=", ".join(unpriced)))

    def score(self, record: RunRecord, late_by: timedelta | None = None) -> GradingResult:
        """Points from stored outcomes: pure and fast, so a rubric change never re-runs a notebook.

        ``late_by`` is how long after the deadline the submission came (None or negative: on time);
        the ``[late]`` policy turns it into a penalty taken off the earned points.
        """
        # A stored outcome of a check this rubric does not name (removed from the exercise) scores nothing.
        checks = [self._score_check(o) for o in record.outcomes if o.id in self.checks]
        ran = [c for c in checks if c.outcome != "not_run"]
        earned = sum(c.points for c in ran)
        penalty = earned * self.late.penalty_fraction(late_by)
        return GradingResult(
            **record.model_dump(),
            checks=checks,
            score=round(earned - penalty, 6),
            max_score=round(sum(c.max_points for c in ran), 6),
            late_penalty=round(penalty, 6),
            days_late=self.late.days_late(late_by),
        )

    def _score_check(self, outcome: CheckOutcome) -> CheckResult:
        rule = self.checks[outcome.id]
        if outcome.outcome == "passed":
            earned = rule.points
        elif rule.partial and outcome.cases_total:
            earned = rule.points * outcome.cases_passed / outcome.cases_total
        else:
            earned = 0.0
        return CheckResult(
            **outcome.model_dump(),
            points=round(earned, 6),
            max_points=rule.points,
            visibility=rule.visibility,
        )
