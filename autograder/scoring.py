"""Where every score comes from: stored outcomes, the rubric in force, the late policy and the TAs' decisions,
put together by one function (``score``), so a score is always a pure function of stored data.

- ``Rubric`` (``rubrics/<exercise>.toml``): points and visibility per check, the manual items TAs score, the
  ``[late]`` policy;
- ``Policy``: the rubric and deadline in force for an exercise, as a gradebook stores them;
- TA decisions (``gradebook.Decision``): a check's points set by a TA, a bonus or penalty, a manual item's score,
  an extension. Stored beside the outcomes, never over them; undone by marking them so, which restores the score
  before them;
- ``Scorer``: everything needed to score one exercise's rows, read once; ``results``: every student's current row
  scored; ``put_in_force`` and ``decide``/``undo`` change what scores are made of and store the scores again in the
  same transaction.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import UserError
from .gradebook import Decision, Gradebook, Row, from_iso, iso
from .i18n import L_
from .intake import Roster, local_time
from .results import CheckOutcome, CheckResult, CheckWords, GradingResult, RunRecord, TaNote

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class CheckRubric(BaseModel):
    """One ``[checks.<id>]`` table: a check's points, or (``manual = true``) an item a TA scores by hand."""

    model_config = ConfigDict(extra="forbid")
    points: float = Field(ge=0)
    visibility: Visibility = "visible"
    # A parametrised check scores the share of its cases that passed instead of all-or-nothing.
    partial: bool = False
    # Scored by a TA (an open answer, a plot's quality): counts as awaiting a TA until one scores it.
    manual: bool = False
    title: str = ""  # a manual item's title (a check's comes from its docstring)
    titles: dict[str, str] = {}  # by language, where it reads differently from ``title``

    @model_validator(mode="after")
    def _manual_has_a_title(self) -> CheckRubric:
        if self.manual and not self.title:
            raise ValueError('a manual item needs a title (title = "...")')
        if self.manual and self.partial:
            raise ValueError("a manual item is scored by a TA; partial is for checks")
        return self

    def words(self, item: str) -> tuple[str, dict[str, CheckWords]]:
        """A manual item's English title and its translations."""
        return self.title or item, {lang: CheckWords(title=title) for lang, title in self.titles.items()}


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

    @property
    def manual(self) -> dict[str, CheckRubric]:
        """The items TAs score by hand."""
        return {item: rule for item, rule in self.checks.items() if rule.manual}

    def verify(self, check_ids: list[str], path: Path, retired: Iterable[str] = frozenset()) -> None:
        """Every check has points and every rubric entry names a real check or a manual item (typos are caught
        here).

        ``retired``: checks removed from the exercise that stored outcomes still hold; a rubric may name them
        or not (unnamed, they score nothing)."""
        clashing = sorted(set(self.manual) & set(check_ids))
        if clashing:
            raise UserError(L_("The rubric {path} marks checks as manual items: {items}; a manual item needs a name "
                               "of its own.").format(path=str(path), items=", ".join(clashing)))
        unknown = sorted(set(self.checks) - set(check_ids) - set(retired) - set(self.manual))
        unpriced = [c for c in check_ids if c not in self.checks and c not in retired]
        if unknown:
            raise UserError(L_("The rubric {path} names checks that do not exist: {unknown}; the checks are: "
                               "{checks}.").format(path=str(path), unknown=", ".join(unknown),
                                                   checks=", ".join(check_ids)))
        if unpriced:
            raise UserError(L_("The rubric {path} gives no points to: {checks}; add a [checks.<id>] table for "
                               "each.").format(path=str(path), checks=", ".join(unpriced)))

    def score(self, record: RunRecord, late_by: timedelta | None = None,
              decisions: Iterable[Decision] = ()) -> GradingResult:
        """The score of one submission: its stored outcomes, this rubric, how late it came (``late_by``: None or
        negative is on time) and the TAs' decisions on it. Pure and fast, so a change of any of them never re-runs
        a notebook; every score in the project is made here.

        A TA's points for a check replace what its outcome earned; a manual item earns what a TA gave it and is
        awaiting a TA until then; the late penalty is taken off the earned points; bonuses and penalties are added
        last (a score never goes below 0)."""
        latest = _latest_per_item(decisions)
        checks = [self._score_check(o, latest.get(("points", o.id))) for o in record.outcomes
                  if o.id in self.checks and not self.checks[o.id].manual]
        checks += [self._score_manual(item, rule, latest.get(("manual", item))) for item, rule in self.manual.items()]
        counted = [c for c in checks if c.outcome != "not_run"]
        earned = sum(c.points for c in counted)
        penalty = earned * self.late.penalty_fraction(late_by)
        adjustments = [d for d in decisions if d.kind == "adjust" and d.active]
        adjustment = sum(d.points or 0.0 for d in adjustments)
        return GradingResult(
            **record.model_dump(),
            checks=checks,
            score=round(max(0.0, earned - penalty + adjustment), 6),
            max_score=round(sum(c.max_points for c in counted), 6),
            late_penalty=round(penalty, 6),
            days_late=self.late.days_late(late_by),
            adjustment=round(adjustment, 6),
            notes=[_note(d) for d in adjustments],
            awaiting=[c.id for c in checks if c.outcome == "awaiting"],
        )

    def _score_check(self, outcome: CheckOutcome, decision: Decision | None) -> CheckResult:
        rule = self.checks[outcome.id]
        if outcome.outcome == "passed":
            earned = rule.points
        elif rule.partial and outcome.cases_total:
            earned = rule.points * outcome.cases_passed / outcome.cases_total
        else:
            earned = 0.0
        result = CheckResult(**outcome.model_dump(), points=round(earned, 6), max_points=rule.points,
                             visibility=rule.visibility)
        if decision is not None and outcome.outcome != "not_run":
            result.ta = _note(decision)
            result.points_before_ta = result.points
            result.points = round(decision.points or 0.0, 6)
        return result

    @staticmethod
    def _score_manual(item: str, rule: CheckRubric, decision: Decision | None) -> CheckResult:
        title, translations = rule.words(item)
        return CheckResult(id=item, title=title, translations=translations,
                           outcome="scored" if decision else "awaiting",
                           points=round(decision.points or 0.0, 6) if decision else 0.0, max_points=rule.points,
                           visibility=rule.visibility, ta=_note(decision) if decision else None)


def _latest_per_item(decisions: Iterable[Decision]) -> dict[tuple[str, str], Decision]:
    """The decision in force per (kind, item): the latest one not undone."""
    latest: dict[tuple[str, str], Decision] = {}
    for d in sorted(decisions, key=lambda d: d.id):
        if d.active and d.kind in ("points", "manual"):
            latest[d.kind, d.item] = d
    return latest


def _note(decision: Decision) -> TaNote:
    return TaNote(id=decision.id, kind=decision.kind, item=decision.item, points=decision.points,
                  comment=decision.comment, by=decision.made_by, at=decision.made_at)


@dataclass
class Policy:
    """What turns outcomes into scores for one exercise: the rubric in force and the deadline."""

    rubric: Rubric
    rubric_sha256: str
    origin: str
    cli_deadline: datetime | None  # given with --deadline; wins over the rubric's
    rubric_text: str = ""

    @property
    def deadline(self) -> datetime | None:
        return self.cli_deadline or self.rubric.late.deadline

    @classmethod
    def of(cls, rubric_text: str, origin: str, cli_deadline: datetime | None) -> Policy:
        return cls(Rubric.parse(rubric_text, origin), hashlib.sha256(rubric_text.encode()).hexdigest(), origin,
                   cli_deadline, rubric_text)


def policy(book: Gradebook, exercise: str) -> Policy | None:
    """The rubric and deadline in force, as the last grade/regrade set them."""
    stored = book.rubric_in_force(exercise)
    if stored is None:
        return None
    return Policy(Rubric.parse(stored.text, stored.origin), stored.sha256, stored.origin, stored.deadline,
                  stored.text)


def policy_in_force(book: Gradebook, exercise: str) -> Policy:
    found = policy(book, exercise)
    if found is None:
        raise UserError(L_("Nothing of {exercise} is graded in {path}; run `autograder grade {exercise} "
                           "SUBMISSIONS` first.").format(exercise=exercise, path=str(book.path)))
    return found


class Scorer:
    """Everything one exercise's scores are made of, read from the gradebook once: the policy in force, the
    roster (students' own deadlines) and the TAs' decisions."""

    def __init__(self, book: Gradebook, exercise: str, in_force: Policy | None = None) -> None:
        self.book, self.exercise = book, exercise
        self.policy = in_force or policy_in_force(book, exercise)
        self.roster: Roster = book.roster()
        self.by_row: dict[int, list[Decision]] = defaultdict(list)
        self.extensions: dict[str, Decision] = {}
        for d in book.decisions(exercise):
            if d.kind == "extension":
                if d.active:
                    self.extensions[d.student_id] = d  # ids ascend: the latest wins
            elif d.submission_id is not None:
                self.by_row[d.submission_id].append(d)

    def deadline_for(self, student_id: str) -> datetime | None:
        """The student's deadline: a TA's extension, else the roster's own deadline, else the exercise's."""
        extension = self.extensions.get(student_id)
        if extension is not None:
            return from_iso(extension.until)
        student = self.roster.students.get(student_id)
        deadline = (student.deadline if student else None) or self.policy.deadline
        return local_time(deadline) if deadline else None

    def score(self, row: Row, record: RunRecord) -> GradingResult:
        deadline = self.deadline_for(row.student_id)
        submitted = from_iso(row.submitted_at)
        late_by = submitted - deadline if deadline and submitted else None
        result = self.policy.rubric.score(record, late_by, self.by_row.get(row.id, ()))
        result.deadline = iso(deadline)
        if row.student_id in self.extensions:
            result.notes.insert(0, _note(self.extensions[row.student_id]))
        return result

    def result(self, row: Row) -> GradingResult | None:
        """The row's score; None when it has no readable record (then ``book.damaged`` may say why)."""
        record = self.book.record_of(row)
        return self.score(row, record) if record else None


def results(book: Gradebook, exercise: str) -> tuple[Policy, list[tuple[Row, GradingResult | None]]]:
    """Every student's current row with its score under the policy and decisions in force."""
    scorer = Scorer(book, exercise)
    entries = []
    for row in book.rows(exercise):
        result = scorer.result(row)
        if row.id in book.damaged:  # shown as what it is; the command that reads it ends non-zero
            row = replace(row, status="error", message=book.damaged[row.id])
        entries.append((row, result))
    return scorer.policy, entries


def _store_scores(book: Gradebook, scorer: Scorer, student_id: str | None = None) -> list[tuple[Row, float | None]]:
    """Score every stored row (or ``student_id``'s) again and keep the scores; the rows whose score changed, with
    their old score. Inside the caller's transaction."""
    changed = []
    for row in book.rows(scorer.exercise, current_only=False, student_id=student_id):
        result = scorer.result(row)
        if result is None:
            continue
        book.set_score(row.id, result)
        if row.score != result.score:
            changed.append((row, row.score))
    return changed


def rescore(book: Gradebook, exercise: str, student_id: str | None = None) -> None:
    """Store the scores of an exercise's rows (or one student's) again, inside the caller's transaction: for a
    change of what they are made of that is not a rubric or a decision (a row's time). Nothing to do before a
    rubric is in force."""
    in_force = policy(book, exercise)
    if in_force is not None:
        _store_scores(book, Scorer(book, exercise, in_force), student_id)


def put_in_force(book: Gradebook, exercise: str, rubric_text: str, origin: str, cli_deadline: datetime | None,
                 check_ids: list[str]) -> tuple[Policy, list[tuple[Row, float | None]], set[str]]:
    """Put a rubric and deadline in force, verified against the exercise's checks (``check_ids``), and rescore every
    row with them, in one transaction. Returns the policy, the rows whose score changed (with their old score) and
    the retired checks: stored outcomes of checks the exercise no longer has, kept, scoring only what the rubric
    gives them."""
    in_force = Policy.of(rubric_text, origin, cli_deadline)
    retired = {o.id for row in book.rows(exercise, current_only=False) if (record := book.record_of(row))
               for o in record.outcomes} - set(check_ids)
    in_force.rubric.verify(check_ids, Path(origin), retired)
    with book.transaction():
        book.store_rubric_in_force(exercise, in_force.rubric_sha256, origin, rubric_text, cli_deadline)
        changed = _store_scores(book, Scorer(book, exercise, in_force))
    return in_force, changed, retired


DecisionKind = Literal["points", "adjust", "manual", "extension"]


def decide(book: Gradebook, exercise: str, student_id: str, kind: DecisionKind, by: str, *,
           row: Row | None = None, item: str = "", points: float | None = None, until: datetime | None = None,
           comment: str = "") -> Decision:
    """Store a TA's decision (``by`` names the TA), record it in the log and rescore the student's rows, in one
    transaction. Refused with a sentence when it does not fit the rubric or the row."""
    in_force = policy_in_force(book, exercise)
    comment = comment.strip()[:2000]
    if kind == "extension":
        if until is None:
            raise UserError(L_("An extension needs the new deadline (--until 2026-05-08T23:59+09:00)."))
        row = None
    else:
        if row is None or row.exercise != exercise or row.student_id != student_id:
            raise UserError(L_("There is no such submission of {student} in {exercise}.").format(
                student=student_id, exercise=exercise))
        _check_decision(book, in_force, kind, row, item, points, comment)
    with book.transaction():
        decision = book.add_decision(exercise, student_id, row.id if row else None, kind, item, points, iso(until),
                                     comment, by)
        book.record_action(by, kind, exercise, student_id, describe(decision))
        _store_scores(book, Scorer(book, exercise, in_force), student_id)
    return decision


def _check_decision(book: Gradebook, in_force: Policy, kind: str, row: Row, item: str, points: float | None,
                    comment: str) -> None:
    if points is None or not math.isfinite(points):
        raise UserError(L_("Give the points as a number."))
    if kind == "adjust":
        if not comment:
            raise UserError(L_("Say why in the comment: the student reads it beside the points."))
        return
    rule = in_force.rubric.checks.get(item)
    if rule is None or rule.manual != (kind == "manual"):
        raise UserError(L_("{item} is not a {what} of this exercise's rubric.").format(
            item=item, what=L_("manual item") if kind == "manual" else L_("check")))
    if not 0 <= points <= rule.points:
        raise UserError(L_("{item} is worth 0 to {points} points; give a score in that range.").format(
            item=item, points=f"{rule.points:g}"))
    if kind == "points":
        record = book.record_of(row)
        outcome = next((o for o in record.outcomes if o.id == item), None) if record else None
        if outcome is None or outcome.outcome == "not_run":
            raise UserError(L_("{item} did not run on this submission; there are no points to correct.").format(
                item=item))


def undo(book: Gradebook, exercise: str, decision_id: int, by: str) -> Decision:
    """Take a decision back (it stays in the log, marked undone) and rescore: the score is what it was before."""
    decision = book.decision(decision_id)
    if decision is None or decision.exercise != exercise:
        raise UserError(L_("There is no such decision in {exercise}.").format(exercise=exercise))
    if not decision.active:
        raise UserError(L_("This decision was undone already."))
    with book.transaction():
        book.mark_undone(decision_id, by)
        book.record_action(by, "undo", exercise, decision.student_id, describe(decision))
        _store_scores(book, Scorer(book, exercise), decision.student_id)
    return book.decision(decision_id)


def describe(decision: Decision) -> str:
    """A decision in one line of the log (English, as every log line): what, how much, why."""
    if decision.kind == "extension":
        what = f"deadline {decision.until}"
    elif decision.kind == "adjust":
        what = f"{decision.points:+g} points"
    else:
        what = f"{decision.item}: {decision.points:g} points"
    return f"{what} ({decision.comment})" if decision.comment else what
