"""Points and visibility per check (``rubrics/<exercise>.toml``); scores from outcomes."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UserError
from .results import CheckOutcome, CheckResult, GradingResult, RunRecord

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class CheckRubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    visibility: Visibility = "visible"
    # A parametrised check scores the share of its cases that passed instead of all-or-nothing.
    partial: bool = False


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: dict[str, CheckRubric]

    @classmethod
    def load(cls, path: Path) -> Rubric:
        if not path.is_file():
            raise UserError(f"The rubric {path} does not exist; create it with a [checks.<id>] table per check.")
        try:
            return cls.model_validate(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"The rubric {path} is not valid TOML ({exc}); fix the syntax and run again.") from exc
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UserError(f"The rubric {path} is invalid at '{where}': {err['msg']}; fix it and run again.") from exc

    def verify(self, check_ids: list[str], path: Path) -> None:
        """Every check has points and every rubric entry names a real check (typos are caught here)."""
        unknown = sorted(set(self.checks) - set(check_ids))
        unpriced = [c for c in check_ids if c not in self.checks]
        if unknown:
            raise UserError(f"The rubric {path} names checks that do not exist: {', '.join(unknown)}; "
                            f"the checks are: {', '.join(check_ids)}.")
        if unpriced:
            raise UserError(f"The rubric {path} gives no points to: {', '.join(unpriced)}; add a [checks.<id>] "
                            "table for each.")

    def score(self, record: RunRecord) -> GradingResult:
        """Points from stored outcomes: pure and fast, so a rubric change never re-runs a notebook."""
        checks = [self._score_check(o) for o in record.outcomes]
        ran = [c for c in checks if c.outcome != "not_run"]
        return GradingResult(
            **record.model_dump(),
            checks=checks,
            score=round(sum(c.points for c in ran), 6),
            max_score=round(sum(c.max_points for c in ran), 6),
        )

    def _score_check(self, outcome: CheckOutcome) -> CheckResult:
        rule = self.checks.get(outcome.id)
        if rule is None:
            raise UserError(f"The rubric has no entry for check '{outcome.id}'; run `autograder validate`.")
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
