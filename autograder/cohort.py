"""Cohort grading: a batch over a folder, zip or LMS download into the gradebook, resumable and parallel.

The parent process finds the submissions, records them in the gradebook, and is its only writer.
Grading happens in worker processes (``--jobs``), each holding one ``Grader`` (rubric, checks and
reference models loaded once) and grading many submissions, each in its own student process. A
submission whose grading kills its worker is retried once in a fresh worker, then recorded as an
error; a worker stuck past a generous backstop is killed and the submission recorded as a timeout.
Every graded submission is committed in its own transaction, so a batch killed at any moment
resumes where it stopped: the next run grades only what has no result yet.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path

from .checking import collect_checks
from .errors import UserError
from .exercise import Exercise
from .executors import Executor, Worker, WorkerJob, make_executor
from .executors.local import LocalExecutor
from . import scoring
from .gradebook import Gradebook, Row, iso
from .i18n import L_, Text
from .grading import GradeOptions, run_limits, unrun_outcomes
from .intake import DEFAULT_MAX_BYTES, Found, Roster, TooLarge, discover, parse_time
from .paths import course_relative
from .results import CheckOutcome, Diagnostics, RunRecord, Status

FAILED = ("error", "timeout", "crashed", "invalid")
# A worker still busy this long past twice the notebook time limit is stuck itself, and is killed.
BACKSTOP_MARGIN = 300.0
# A worker not ready this long after it was asked for never will be (on a cluster: no node has room for it).
START_BACKSTOP = 600.0


def resolve_deadline(gradebook: Gradebook, exercise: str, text: str | None):
    """--deadline: a date-time sets it, "none" clears it, absent keeps the one in force."""
    if text is None:
        in_force = scoring.policy(gradebook, exercise)
        return in_force.cli_deadline if in_force else None
    return None if text.strip().lower() == "none" else parse_time(text, "The deadline")


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    row: Row | None = None  # the submission just finished
    status: str = ""
    nodes: Counter = field(default_factory=Counter)  # submissions graded per node (cluster runs)

    @property
    def remaining(self) -> int:
        return self.total - self.done


@dataclass
class Summary:
    exercise: str
    found: int  # files in SUBMISSIONS
    new: int  # rows this batch added
    graded: int  # submissions this batch graded
    skipped: int  # current submissions already graded earlier
    elapsed: float
    jobs: int
    rows: list[Row]  # every student's current row, after the batch
    not_found: list[Row] = field(default_factory=list)  # still to grade, but not in SUBMISSIONS
    not_in_roster: list[Row] = field(default_factory=list)
    superseded: int = 0
    notes: list[Text] = field(default_factory=list)  # what the TA should know about this batch, one sentence each
    executor: str = "local"
    nodes: Counter = field(default_factory=Counter)  # submissions graded per node (cluster runs)
    dispatch: list[float] = field(default_factory=list)  # what carrying each submission cost (bench/bench_cohort.py)

    @property
    def statuses(self) -> Counter:
        return Counter(r.status for r in self.rows)

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.rows if r.score is not None]


def grade_cohort(
    exercise: Exercise,
    submissions: Path,
    gradebook: Gradebook,
    options: GradeOptions | None = None,
    roster: Roster | None = None,
    deadline: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    runner: str | None = None,
    confined: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    executor: str = "local",
    ray_address: str | None = None,
) -> Summary:
    """Grade every submission in SUBMISSIONS that has no result yet; see the module docstring.

    ``runner`` names the runner each worker builds (``autograder.runners.RUNNERS``), confined unless
    ``confined`` is False; without it a worker uses ``options.runner`` (which must then be picklable) or
    the Grader's default. ``executor`` says where the workers run (``autograder.executors``)."""
    started = time.monotonic()
    options = options or GradeOptions()
    with gradebook.batch_lock(), make_executor(executor, ray_address) as workers_at:
        options = replace(options, device=workers_at.choose_device(options.device))
        found = discover(submissions, max_bytes)
        if roster is not None:
            gradebook.set_roster(roster)
        roster = gradebook.roster()
        setup = prepare(exercise, gradebook, options, deadline)
        options = setup.options
        located: dict[tuple[str, str], Found] = {}
        registered = []
        resolved, name_notes = roster.resolve_all(found)
        for item, (student_id, name, flags) in zip(found, resolved):
            located.setdefault((student_id, item.sha256), item)
            registered.append({
                "student_id": student_id, "student_name": name, "source": item.source, "sha256": item.sha256,
                "size": item.size, "layout": item.layout, "flags": ",".join(flags),
                "submitted_at": iso(item.submitted_at), "submitted_at_from": item.submitted_at_from,
            })
        new = gradebook.register(exercise.name, registered, roster)
        if force:
            gradebook.mark_for_regrading(exercise.name)
        todo = gradebook.to_grade(exercise.name)
        tasks = [(row, located[row.student_id, row.sha256]) for row in todo if (row.student_id, row.sha256) in located]
        not_found = [row for row in todo if (row.student_id, row.sha256) not in located]
        current = gradebook.rows(exercise.name)
        skipped = sum(1 for r in current if r.status not in ("pending", "missing", "error")) if not force else 0
        jobs = max(1, min(jobs or workers_at.capacity(options.profile, exercise, options.device), len(tasks) or 1))
        batch = Batch(exercise, setup, (runner, confined) if runner else None, gradebook, jobs, on_progress,
                      workers_at)
        batch.run(tasks)
    rows = gradebook.rows(exercise.name)
    return Summary(
        exercise=exercise.name, found=len(found), new=new, graded=batch.progress.done, skipped=skipped,
        elapsed=time.monotonic() - started, jobs=jobs, rows=rows, not_found=not_found,
        not_in_roster=[r for r in rows if roster and r.student_id not in roster],
        superseded=sum(1 for r in gradebook.rows(exercise.name, current_only=False) if r.status == "superseded"),
        notes=setup.notes + name_notes, executor=executor, nodes=batch.nodes, dispatch=batch.dispatch,
    )


@dataclass
class Setup:
    """What a batch (or the submission service) grades with: the options with the device chosen and every check
    (the ones an unrun submission fails); the rubric and deadline it put in force are in the gradebook."""

    options: GradeOptions
    checks: list[CheckOutcome]
    notes: list[Text]  # what the TA should know about this rubric, one sentence each


def prepare(exercise: Exercise, gradebook: Gradebook, options: GradeOptions, deadline: str | None) -> Setup:
    """Put the exercise's rubric in force (or keep one set by `regrade --rubric`), verified against its checks,
    with the deadline (see ``resolve_deadline``), rescoring stored rows."""
    if options.device is None:
        from .grading import default_device

        options = replace(options, device=default_device())  # the same device in every worker
    checks = collect_checks(exercise, options.public_only, cuda=options.device.startswith("cuda"))
    notes = []
    in_force = scoring.policy(gradebook, exercise.name)
    if in_force is not None and in_force.origin != str(exercise.rubric_file):  # set by `regrade --rubric`
        rubric_text, origin = in_force.rubric_text, in_force.origin
        notes.append(L_("Scored with the rubric in force, {rubric} (from `regrade --rubric`); `autograder regrade "
                        "{exercise}` goes back to the exercise's own rubric.").format(
                            rubric=course_relative(origin), exercise=exercise.name))
    else:
        rubric_text, origin = exercise.rubric_file.read_text(), str(exercise.rubric_file)
    _, _, retired = scoring.put_in_force(gradebook, exercise.name, rubric_text, origin,
                                              resolve_deadline(gradebook, exercise.name, deadline),
                                              [c.id for c in collect_checks(exercise)])
    if retired:
        notes.append(L_("Stored outcomes of checks the exercise no longer has ({checks}) are kept and score "
                        "nothing.").format(checks=", ".join(sorted(retired))))
    return Setup(options, checks, notes)


def regrade(gradebook: Gradebook, exercise: str, rubric: Path | None = None, deadline: str | None = None,
            ) -> tuple[scoring.Policy, list[tuple[Row, float | None]], set[str]]:
    """Rescore every stored submission with a rubric (default: the exercise's) and deadline; runs nothing. Also
    returns the retired checks (stored, no longer in the exercise): kept in the records, scoring nothing unless the
    rubric names them. The TAs' decisions stay in force."""
    ex = Exercise(exercise)
    path = rubric or ex.rubric_file
    if not path.is_file():
        raise UserError(L_("No rubric at {path}; check the path.").format(path=str(path)))
    if not any(row.record for row in gradebook.rows(exercise, current_only=False)):
        raise UserError(L_("Nothing of {exercise} is graded in {path}; run `autograder grade {exercise} "
                           "SUBMISSIONS` first.").format(exercise=exercise, path=str(gradebook.path)))
    return scoring.put_in_force(gradebook, exercise, path.read_text(), str(path),
                                resolve_deadline(gradebook, exercise, deadline), [c.id for c in collect_checks(ex)])


# the batch ------------------------------------------------------------------------------------

class Batch:
    """Hands submissions to grading workers and writes what comes back (the gradebook's single writer).

    The workers are the executor's (local processes, or Ray actors on a cluster); everything decided about a
    submission (retry, backstop, score, its row) is decided here."""

    def __init__(self, exercise: Exercise, setup: Setup, runner: tuple[str, bool] | None, gradebook: Gradebook,
                 jobs: int, on_progress: Callable[[Progress], None] | None = None,
                 executor: Executor | None = None) -> None:
        self.exercise, self.setup, self.options, self.runner = exercise, setup, setup.options, runner
        self.checks = setup.checks
        self.gradebook, self.jobs = gradebook, jobs
        self.on_progress = on_progress or (lambda p: None)
        self.executor = executor or LocalExecutor()
        limits = self.options.limits or run_limits(exercise, self.options.profile, self.options.device or "cpu")
        # The runner enforces the real limits; this only catches a grader process that hangs itself.
        self.backstop = 2 * limits.notebook_timeout + BACKSTOP_MARGIN
        threads = self.options.threads or self.executor.threads(self.options.profile, jobs)
        self.job = WorkerJob(exercise.name, exercise.root, replace(self.options, threads=threads), runner)
        self.progress = Progress(total=0)
        self.deaths: Counter = Counter()  # worker deaths per submission
        self.start_failures = 0
        self.serving = False
        self.busy: frozenset[int] = frozenset()  # the rows being graded now
        self.nodes: Counter = Counter()  # submissions graded per node (cluster runs)
        self.dispatch: list[float] = []  # per submission, seconds from handing it out to its record, beyond grading

    def run(self, tasks: list[tuple[Row, Found]],
            feed: Callable[[set[int]], list[tuple[Row, Found]] | None] | None = None,
            wake: Connection | None = None) -> None:
        """Grade ``tasks``. With ``feed`` (the submission service) keep the workers and go on: each round
        ``feed(rows in hand)`` gives the tasks that arrived since (None: stop), and anything received on ``wake``
        starts a round at once."""
        self.serving = feed is not None
        self.progress = Progress(total=len(tasks))
        self.on_progress(self.progress)
        queue: deque[tuple[Row, Found]] = deque()
        found: dict[int, Found] = {}

        def take(more: list[tuple[Row, Found]]) -> None:
            for row, item in more:
                if item.problem is not None:  # found unusable while listing: its row says why, nothing runs
                    self._finish(row, self._unrun(row, *item.problem, 0.0))
                else:
                    queue.append((row, item))
                    found[row.id] = item

        take(tasks)
        if not queue and not self.serving:
            return
        workers = [self.executor.start(self.job) for _ in range(self.jobs)]
        try:
            while True:
                if self.serving:
                    more = feed({row.id for row, _ in queue} | {w.row.id for w in workers if w.row})
                    if more is None:
                        break
                    self.progress.total += len(more)
                    take(more)
                elif not queue and not any(w.row for w in workers):
                    break
                for worker in workers:
                    if worker.ready and worker.row is None and queue:
                        row, item = queue.popleft()
                        self._assign(worker, row, item)
                self.busy = frozenset(w.row.id for w in workers if w.row)
                self.executor.wait(workers, wake, timeout=1.0)
                if wake is not None:
                    while wake.poll():
                        wake.recv_bytes()
                for i, worker in enumerate(workers):
                    now = time.monotonic()
                    if not self._serve(worker):
                        workers[i] = self._replace(worker, queue, found)
                    elif worker.row and now - worker.started > self.backstop:
                        worker.kill()
                        self._finish_unrun(worker, "timeout", L_("Grading did not finish within {seconds} s.").format(
                            seconds=f"{self.backstop:.0f}"))
                        workers[i] = self._replace(worker, queue, found)
                    elif not worker.ready and now - worker.created > START_BACKSTOP:  # e.g. no room on a cluster
                        worker.kill()
                        workers[i] = self._replace(worker, queue, found)
                workers = [w for w in workers if w is not None]
        finally:
            self.busy = frozenset()
            for worker in workers:
                worker.stop()

    def _assign(self, worker: Worker, row: Row, item: Found) -> None:
        worker.row, worker.started = row, time.monotonic()
        try:
            data = item.read()
        except (OSError, TooLarge) as exc:  # it was readable, and within the cap, when the batch listed it
            return self._finish_unrun(worker, "error", L_("The file could not be read again ({problem}); run the "
                                                          "batch again.").format(problem=str(exc)))
        if hashlib.sha256(data).hexdigest() != row.sha256:
            return self._finish_unrun(worker, "error", L_("The file changed while the batch ran; run the batch again."))
        worker.send(row.source, data)

    def _serve(self, worker: Worker) -> bool:
        """Handle what the worker sent; False when it has died."""
        for kind, payload in worker.receive():
            if kind == "ready":
                worker.ready = True
            elif kind == "fatal":
                raise UserError(payload)
            elif kind == "done":
                self._finish_worker(worker, RunRecord.model_validate_json(payload))
            elif kind == "failed":
                self._finish_unrun(worker, "error", L_("The grader failed on this submission: {problem}").format(
                    problem=payload))
        return worker.alive()

    def _replace(self, dead: Worker, queue: deque, found: dict[int, Found]) -> Worker | None:
        """A new worker for a dead one (None when no work is left); its submission is retried once, then
        recorded as an error."""
        if dead.row is not None:
            self.deaths[dead.row.id] += 1
            if self.deaths[dead.row.id] < 2:
                queue.appendleft((dead.row, found[dead.row.id]))
                dead.row = None
            else:
                self._finish_unrun(dead, "error", L_("The grader's process died twice while grading this submission "
                                                     "(out of memory?); grade it alone to see why."))
        elif not dead.ready:
            self.start_failures += 1
            if self.start_failures > 2 * self.jobs:
                raise UserError(L_("The grading workers keep dying as they start; run `autograder run` on one "
                                   "submission to see why."))
        dead.kill()
        return self.executor.start(self.job) if queue or self.serving else None

    def _unrun(self, row: Row, status: Status, message: Text | str, wall_time: float) -> RunRecord:
        record = RunRecord(exercise=self.exercise.name, submission=row.source or "", sha256=row.sha256 or "",
                           status=status,
                           diagnostics=Diagnostics(runner=self.runner[0] if self.runner else "",
                                                   device=self.options.device or "", profile=self.options.profile,
                                                   wall_time=round(wall_time, 3)))
        record.say(status, message)
        record.outcomes = unrun_outcomes(self.checks, record)
        return record

    def _finish_unrun(self, worker: Worker, status: Status, message: Text | str) -> None:
        assert worker.row is not None
        row, worker.row = worker.row, None
        self._finish(row, self._unrun(row, status, message, time.monotonic() - worker.started))

    def _finish_worker(self, worker: Worker, record: RunRecord) -> None:
        assert worker.row is not None
        row, worker.row = worker.row, None
        self.nodes[worker.node] += 1
        self.dispatch.append(time.monotonic() - worker.started - record.diagnostics.wall_time)
        self._finish(row, record)

    def _finish(self, row: Row, record: RunRecord) -> None:
        # the rubric and decisions in force now (a TA may change either while the submission service grades)
        self.gradebook.save(row.id, record, scoring.Scorer(self.gradebook, self.exercise.name).score(row, record))
        p = self.progress
        p.done += 1
        p.failed += record.status in FAILED
        p.row, p.status = row, record.status
        p.nodes = self.nodes
        self.on_progress(p)
