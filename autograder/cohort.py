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
import multiprocessing
import os
import signal
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path

from .checking import collect_checks
from .errors import UserError
from .exercise import Exercise
from .gradebook import Gradebook, Policy, Row, iso
from .i18n import L_, Text, sentence_of
from .grading import GradeOptions, Grader, default_threads, limit_grader_memory, unrun_outcomes
from .intake import DEFAULT_MAX_BYTES, Found, Roster, TooLarge, discover, parse_time
from .paths import course_relative
from .results import CheckOutcome, Diagnostics, RunRecord, Status
from .rubric import Rubric
from .runners.base import RunLimits

FAILED = ("error", "timeout", "crashed", "invalid")
GIB = 1024 ** 3
# Memory one grading slot needs (grader process + student process); on the GPU, what the exercise
# declares (`[limits] gpu_memory_gib`), else these.
SLOT_MEMORY = {"tiny": 2 * GIB}
SLOT_MEMORY_DEFAULT = 6 * GIB
SLOT_GPU_MEMORY = {"tiny": 1 * GIB}
SLOT_GPU_MEMORY_DEFAULT = 8 * GIB
# A worker still busy this long past twice the notebook time limit is stuck itself, and is killed.
BACKSTOP_MARGIN = 300.0


def default_jobs(profile: str, exercise: Exercise | None = None) -> int:
    """Parallel submissions this machine can take: one per core, fewer when memory is short, and on a GPU
    as many as its free memory holds at the exercise's declared need per submission."""
    cores = len(os.sched_getaffinity(0))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    jobs = min(cores, memory // SLOT_MEMORY.get(profile, SLOT_MEMORY_DEFAULT))
    import torch

    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        declared = exercise.spec.limits.gpu_memory(profile) if exercise else None
        need = declared * GIB if declared else SLOT_GPU_MEMORY.get(profile, SLOT_GPU_MEMORY_DEFAULT)
        jobs = min(jobs, free // need)
    return max(1, int(jobs))


def resolve_deadline(gradebook: Gradebook, exercise: str, text: str | None):
    """--deadline: a date-time sets it, "none" clears it, absent keeps the one in force."""
    if text is None:
        policy = gradebook.policy(exercise)
        return policy.cli_deadline if policy else None
    return None if text.strip().lower() == "none" else parse_time(text, "The deadline")


@dataclass
class Progress:
    total: int
    done: int = 0
    failed: int = 0
    row: Row | None = None  # the submission just finished
    status: str = ""

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
) -> Summary:
    """Grade every submission in SUBMISSIONS that has no result yet; see the module docstring.

    ``runner`` names the runner each worker builds (``autograder.runners.RUNNERS``), confined unless
    ``confined`` is False; without it a worker uses ``options.runner`` (which must then be picklable) or
    the Grader's default."""
    started = time.monotonic()
    options = options or GradeOptions()
    with gradebook.batch_lock():
        found = discover(submissions, max_bytes)
        if roster is not None:
            gradebook.set_roster(roster)
        roster = gradebook.roster()
        setup = prepare(exercise, gradebook, options, deadline)
        options = setup.options
        located: dict[tuple[str, str], Found] = {}
        registered = []
        for item in found:
            student_id, name = roster.resolve(item)
            located.setdefault((student_id, item.sha256), item)
            registered.append({
                "student_id": student_id, "student_name": name, "source": item.source, "sha256": item.sha256,
                "size": item.size, "layout": item.layout, "flags": ",".join(item.flags),
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
        jobs = max(1, min(jobs or default_jobs(options.profile, exercise), len(tasks) or 1))
        batch = Batch(exercise, setup, (runner, confined) if runner else None, gradebook, roster, jobs, on_progress)
        batch.run(tasks)
    rows = gradebook.rows(exercise.name)
    return Summary(
        exercise=exercise.name, found=len(found), new=new, graded=batch.progress.done, skipped=skipped,
        elapsed=time.monotonic() - started, jobs=jobs, rows=rows, not_found=not_found,
        not_in_roster=[r for r in rows if roster and r.student_id not in roster],
        superseded=sum(1 for r in gradebook.rows(exercise.name, current_only=False) if r.status == "superseded"),
        notes=setup.notes,
    )


@dataclass
class Setup:
    """What a batch (or the submission service) grades with: the options with the device chosen, every check
    (the ones an unrun submission fails), and the rubric and deadline in force."""

    options: GradeOptions
    checks: list[CheckOutcome]
    policy: Policy
    notes: list[Text]  # what the TA should know about this rubric, one sentence each


def prepare(exercise: Exercise, gradebook: Gradebook, options: GradeOptions, deadline: str | None) -> Setup:
    """Put the exercise's rubric in force (or keep one set by `regrade --rubric`), verified against its checks,
    with the deadline (see ``resolve_deadline``), rescoring stored rows."""
    if options.device is None:
        from .grading import default_device

        options = replace(options, device=default_device())  # the same device in every worker
    checks = collect_checks(exercise, options.public_only, cuda=options.device.startswith("cuda"))
    notes = []
    in_force = gradebook.policy(exercise.name)
    if in_force is not None and in_force.origin != str(exercise.rubric_file):  # set by `regrade --rubric`
        rubric_text, origin = in_force.rubric_text, in_force.origin
        notes.append(L_("Scored with the rubric in force, {rubric} (from `regrade --rubric`); `autograder regrade "
                        "{exercise}` goes back to the exercise's own rubric.").format(
                            rubric=course_relative(origin), exercise=exercise.name))
    else:
        rubric_text, origin = exercise.rubric_file.read_text(), str(exercise.rubric_file)
    check_ids = [c.id for c in collect_checks(exercise)]
    retired = retired_checks(gradebook, exercise.name, check_ids)
    Rubric.parse(rubric_text, origin).verify(check_ids, Path(origin), retired)
    if retired:
        notes.append(L_("Stored outcomes of checks the exercise no longer has ({checks}) are kept and score "
                        "nothing.").format(checks=", ".join(sorted(retired))))
    policy, _ = gradebook.set_policy(exercise.name, rubric_text, origin,
                                     resolve_deadline(gradebook, exercise.name, deadline))
    return Setup(options, checks, policy, notes)


def retired_checks(gradebook: Gradebook, exercise: str, check_ids: list[str]) -> set[str]:
    """Checks that stored outcomes hold but the exercise (whose checks are ``check_ids``) no longer has."""
    stored = {o.id for row in gradebook.rows(exercise, current_only=False) if (record := gradebook.record_of(row))
              for o in record.outcomes}
    return stored - set(check_ids)


def regrade(gradebook: Gradebook, exercise: str, rubric: Path | None = None, deadline: str | None = None,
            ) -> tuple[Policy, list[tuple[Row, float | None]], set[str]]:
    """Rescore every stored submission with a rubric (default: the exercise's) and deadline; runs nothing.
    Also returns the retired checks (stored, no longer in the exercise): kept in the records, scoring nothing
    unless the rubric names them."""
    ex = Exercise(exercise)
    path = rubric or ex.rubric_file
    if not path.is_file():
        raise UserError(L_("No rubric at {path}; check the path.").format(path=str(path)))
    text = path.read_text()
    if not any(row.record for row in gradebook.rows(exercise, current_only=False)):
        raise UserError(L_("Nothing of {exercise} is graded in {path}; run `autograder grade {exercise} "
                           "SUBMISSIONS` first.").format(exercise=exercise, path=str(gradebook.path)))
    check_ids = [c.id for c in collect_checks(ex)]
    retired = retired_checks(gradebook, exercise, check_ids)
    Rubric.parse(text, str(path)).verify(check_ids, path, retired)
    policy, changed = gradebook.set_policy(exercise, text, str(path), resolve_deadline(gradebook, exercise, deadline))
    return policy, changed, retired


# the worker pool ------------------------------------------------------------------------------

@dataclass
class _Slot:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    row: Row | None = None
    started: float = 0.0


class Batch:
    """Hands submissions to worker processes and writes what comes back (the gradebook's single writer)."""

    def __init__(self, exercise: Exercise, setup: Setup, runner: tuple[str, bool] | None, gradebook: Gradebook,
                 roster: Roster, jobs: int, on_progress: Callable[[Progress], None] | None = None) -> None:
        self.exercise, self.setup, self.options, self.runner = exercise, setup, setup.options, runner
        self.checks = setup.checks
        self.gradebook, self.roster, self.jobs = gradebook, roster, jobs
        self.on_progress = on_progress or (lambda p: None)
        spec = exercise.spec.limits
        limits = self.options.limits or RunLimits(spec.cell_timeout, spec.notebook_timeout, spec.call_timeout)
        # The runner enforces the real limits; this only catches a grader process that hangs itself.
        self.backstop = 2 * limits.notebook_timeout + BACKSTOP_MARGIN
        self.worker_options = replace(self.options,
                                      threads=self.options.threads or default_threads(self.options.profile, jobs))
        self.context = multiprocessing.get_context("spawn")
        self.progress = Progress(total=0)
        self.deaths: Counter = Counter()  # worker deaths per submission
        self.start_failures = 0
        self.serving = False
        self.busy: frozenset[int] = frozenset()  # the rows being graded now

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
        slots = [self._start() for _ in range(self.jobs)]
        try:
            while True:
                if self.serving:
                    more = feed({row.id for row, _ in queue} | {s.row.id for s in slots if s.row})
                    if more is None:
                        break
                    self.progress.total += len(more)
                    take(more)
                elif not queue and not any(s.row for s in slots):
                    break
                for slot in slots:
                    if slot.ready and slot.row is None and queue:
                        row, item = queue.popleft()
                        self._assign(slot, row, item)
                self.busy = frozenset(s.row.id for s in slots if s.row)
                ready = wait([s.conn for s in slots] + [s.process.sentinel for s in slots] + ([wake] if wake else []),
                             timeout=1.0)
                if wake is not None and wake in ready:
                    while wake.poll():
                        wake.recv_bytes()
                for i, slot in enumerate(slots):
                    if not self._serve(slot):
                        slots[i] = self._replace(slot, queue, found)
                    elif slot.row and time.monotonic() - slot.started > self.backstop:
                        slot.process.kill()
                        self._finish_unrun(slot, "timeout", L_("Grading did not finish within {seconds} s.").format(
                            seconds=f"{self.backstop:.0f}"))
                        slots[i] = self._replace(slot, queue, found)
                slots = [s for s in slots if s is not None]
        finally:
            self.busy = frozenset()
            for slot in slots:
                self._stop(slot)

    def _start(self) -> _Slot:
        parent, child = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, daemon=True,
            args=(child, os.getpid(), self.exercise.name, self.exercise.root, self.worker_options, self.runner))
        process.start()
        child.close()
        return _Slot(process, parent)

    def _assign(self, slot: _Slot, row: Row, item: Found) -> None:
        slot.row, slot.started = row, time.monotonic()
        try:
            data = item.read()
        except (OSError, TooLarge) as exc:  # it was readable, and within the cap, when the batch listed it
            return self._finish_unrun(slot, "error", L_("The file could not be read again ({problem}); run the batch "
                                                        "again.").format(problem=str(exc)))
        if hashlib.sha256(data).hexdigest() != row.sha256:
            return self._finish_unrun(slot, "error", L_("The file changed while the batch ran; run the batch again."))
        slot.conn.send((row.source, data))

    def _serve(self, slot: _Slot) -> bool:
        """Handle what the worker sent; False when it has died."""
        try:
            while slot.conn.poll():
                kind, payload = slot.conn.recv()
                if kind == "ready":
                    slot.ready = True
                elif kind == "fatal":
                    raise UserError(payload)
                elif kind == "done":
                    self._finish_slot(slot, RunRecord.model_validate_json(payload))
                elif kind == "failed":
                    self._finish_unrun(slot, "error", L_("The grader failed on this submission: {problem}").format(
                        problem=payload))
        except (EOFError, OSError):
            return False
        return slot.process.is_alive()

    def _replace(self, dead: _Slot, queue: deque, found: dict[int, Found]) -> _Slot | None:
        """A new worker for a dead one (None when no work is left); its submission is retried once, then
        recorded as an error."""
        dead.process.join(timeout=5)
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
        return self._start() if queue or self.serving else None

    def _unrun(self, row: Row, status: Status, message: Text | str, wall_time: float) -> RunRecord:
        record = RunRecord(exercise=self.exercise.name, submission=row.source or "", sha256=row.sha256 or "",
                           status=status,
                           diagnostics=Diagnostics(runner=self.runner[0] if self.runner else "",
                                                   device=self.options.device or "", profile=self.options.profile,
                                                   wall_time=round(wall_time, 3)))
        record.say(status, message)
        record.outcomes = unrun_outcomes(self.checks, record)
        return record

    def _finish_unrun(self, slot: _Slot, status: Status, message: Text | str) -> None:
        assert slot.row is not None
        row, slot.row = slot.row, None
        self._finish(row, self._unrun(row, status, message, time.monotonic() - slot.started))

    def _finish_slot(self, slot: _Slot, record: RunRecord) -> None:
        assert slot.row is not None
        row, slot.row = slot.row, None
        self._finish(row, record)

    def _finish(self, row: Row, record: RunRecord) -> None:
        # the policy in force now (the submission service may put a new one in force while it grades)
        self.gradebook.save(row.id, record, self.setup.policy.score(record, row, self.roster))
        p = self.progress
        p.done += 1
        p.failed += record.status in FAILED
        p.row, p.status = row, record.status
        self.on_progress(p)

    def _stop(self, slot: _Slot) -> None:
        try:
            slot.conn.send(None)
        except OSError:
            pass
        slot.process.join(timeout=10 if slot.row is None else 0)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join(timeout=5)


def _worker_main(conn: Connection, parent_pid: int, exercise: str, root: Path, options: GradeOptions,
                 runner: tuple[str, bool] | None) -> None:
    """A grading worker: one Grader, many submissions, until the parent says stop (or dies)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    from .runners import get_runner

    try:
        made = get_runner(*runner) if runner else None
        grader = Grader(Exercise(exercise, root), replace(options, runner=made) if made else options)
    except UserError as exc:
        conn.send(("fatal", sentence_of(exc)))  # a Text travels as it is, to be said in the TA's language
        return
    limit_grader_memory(grader.device)
    try:
        with grader:
            _serve_tasks(conn, grader)
    finally:
        if made is not None:
            made.close()


def _serve_tasks(conn: Connection, grader: Grader) -> None:
    conn.send(("ready", None))
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        label, data = task
        try:
            conn.send(("done", grader.run(data, label).model_dump_json()))
        except Exception as exc:  # a grader bug must not end the batch; the row records it
            conn.send(("failed", traceback.format_exception_only(exc)[-1].strip()))


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker when the batch process dies, even by SIGKILL (the runners' student
    processes, a Jupyter kernel or a warm zygote, watch their own parent and end in turn)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
