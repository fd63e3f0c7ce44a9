"""Grade one submission: run the notebook apart, run the checks here, score from outcomes."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_notebook

from . import agent
from .checking import CheckSession, GradingContext, collect_checks
from .course import course_settings
from .errors import UserError
from .exercise import Exercise
from .i18n import L_, Text, joined, sentence_of
from .models.provision import ModelStore, store_for
from .notebook import (InvalidNotebook, code_cells, inject_parameters, inject_probes, inject_seed, parameter_names,
                       read_notebook, submission_seed)
from .results import CellDiagnostic, CheckOutcome, CheckWords, Diagnostics, GradingResult, RunRecord, Status
from .scoring import Rubric
from .runners.base import Runner, RunJob, RunLimits, SessionError
from .source import bound_names
from .submission import Submission
from .text import clip


@dataclass
class GradeOptions:
    profile: str = "tiny"
    device: str | None = None  # None: CUDA when present, else CPU
    runner: Runner | None = None  # None: the default runner
    public_only: bool = False  # what `autograder check` runs
    limits: RunLimits | None = None  # None: the exercise's own limits
    extra_parameters: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # intra-op threads of the grader and of each student process; None: default_threads


def default_threads(profile: str, jobs: int = 1) -> int:
    """Intra-op threads for the grader process and for each student process (they take turns, so each gets
    the same share): OMP_NUM_THREADS when it is set; one on the tiny stand-ins, whose operations are too
    small to split (on 2 cores a tokenizer submission took 0.45 s with one thread, 0.53-0.60 s with two);
    else the cores' share of each of ``jobs`` graders."""
    setting = os.environ.get("OMP_NUM_THREADS", "")
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    if profile == "tiny":
        return 1
    return max(1, len(os.sched_getaffinity(0)) // jobs)


STANDARD_PROBES = Path(__file__).resolve().parent / "probes.py"
GRADING_SETTING = "AUTOGRADER_GRADING"  # set in every student process: autograder.student does nothing there
GRADER_MEMORY_SETTING = "AUTOGRADER_GRADER_MEMORY_GIB"
GRADER_MEMORY_HEADROOM_GIB = 4.0


def limit_grader_memory(device: str, models_bytes: int = 0) -> int | None:
    """Give this grader process a memory budget of its own: what it holds now, plus the reference models its
    checks will load (``models_bytes``, from ``Grader.models_bytes``: a real-size model always fits), plus a
    headroom ($AUTOGRADER_GRADER_MEMORY_GIB, default 4 GiB). A check whose work on a student's answer would go
    past it gets a MemoryError, which is that check's error outcome: the submission's row is still written, and
    the machine keeps its memory. Not on CUDA, whose driver maps memory this limit would count. Returns the
    limit."""
    if device.startswith("cuda"):
        return None
    import resource

    from .runners.cage import vm_data_bytes

    headroom = float(os.environ.get(GRADER_MEMORY_SETTING) or GRADER_MEMORY_HEADROOM_GIB) * 2**30
    limit = vm_data_bytes() + models_bytes + int(headroom)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    return limit


def torch_dtype_size(dtype: str) -> int:
    import torch

    return getattr(torch, dtype).itemsize


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def unrun_outcomes(checks: list[CheckOutcome], record: RunRecord) -> list[CheckOutcome]:
    """The outcomes of a submission that never ran: every check that could run here failed, with the record's
    reason in each language.

    ``checks`` are ``collect_checks`` placeholders (failed, or not run when they need CUDA)."""
    def failed(c: CheckOutcome) -> CheckOutcome:
        words = {language: CheckWords(title=c.words(language).title, message=record.message_in(language))
                 for language in {*c.translations, *record.message_translations}}
        return c.model_copy(update={"message": record.message, "translations": words})

    return [failed(c) if c.outcome == "failed" else c for c in checks]


def _settle_heap() -> None:
    """Collect one submission's garbage, then freeze what survived (libraries, reference models).

    pytest runs several full garbage collections per check session; with the grader's large,
    long-lived heap frozen, they walk only what the next submission creates (about 0.5 s less
    per submission on a small CPU)."""
    gc.collect()
    gc.freeze()


def run_limits(exercise: Exercise, profile: str, device: str) -> RunLimits:
    """What one run of the exercise's notebook may take at a profile's sizes (``[limits]`` in exercise.toml)."""
    limits = exercise.spec.limits
    gpu_gib = limits.gpu_memory(profile) if device.startswith("cuda") else None
    return RunLimits(
        cell_timeout=limits.of("cell_timeout", profile),
        notebook_timeout=limits.of("notebook_timeout", profile),
        call_timeout=limits.of("call_timeout", profile),
        answer_bytes=int(limits.of("answer_mib", profile) * 2**20),
        gpu_memory_bytes=int(gpu_gib * 2**30) if gpu_gib else None,
        memory_bytes=int(limits.of("memory_gib", profile) * 2**30),
    )


class Grader:
    """Grades submissions of one exercise; loads rubric, checks and models once for many submissions."""

    def __init__(self, exercise: Exercise, options: GradeOptions | None = None) -> None:
        self.exercise = exercise
        self.options = options or GradeOptions()
        self.rubric = Rubric.load(exercise.rubric_file)
        self.store: ModelStore = store_for(self.options.profile).require()
        self._owns_runner = self.options.runner is None
        if self.options.runner is None:
            from .runners import get_runner

            self.options.runner = get_runner()  # the fastest one here: warm (pre-imported, forked) on Linux
        self.rubric.verify([c.id for c in collect_checks(exercise)], exercise.rubric_file)
        self.device = self.options.device or default_device()
        self.checks = collect_checks(exercise, self.options.public_only, cuda=self.device.startswith("cuda"))
        self.dtype = "float16" if self.device.startswith("cuda") else "float32"
        # The harness's own probes, then the exercise's: the notebook's last cell (see autograder/probes.py).
        self.probes = "\n\n".join(p for p in (STANDARD_PROBES.read_text(encoding="utf-8"), exercise.probes_source) if p)
        self.probe_names = frozenset(bound_names(self.probes))
        self.limits = self.options.limits or run_limits(exercise, self.store.profile, self.device)
        self._check_session: CheckSession | None = None  # started at the first submission
        self.environment = course_settings(exercise.root).environment
        self.readable = tuple(p for p in (self.store.hub_cache, self.store.datasets_dir) if p.is_dir())
        self.threads = self.options.threads or default_threads(self.store.profile)
        import torch

        torch.set_num_threads(self.threads)
        # e.g. the warm runner's imports and first process, while the checks load here
        self.options.runner.prepare(self._job(new_notebook()))

    def _job(self, notebook: nbformat.NotebookNode) -> RunJob:
        threads = str(self.threads)
        env = {**self.store.env(), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, GRADING_SETTING: "1"}
        if self.environment.declared:
            env[agent.COURSE_MODULES_SETTING] = json.dumps({"modules": sorted(self.environment.modules()),
                                                            "packages": self.environment.described()})
        return RunJob(notebook, env=env, limits=self.limits, readable=self.readable)

    def close(self) -> None:
        """End the check session and the long-lived processes of the runner this grader made (also done at exit)."""
        if self._check_session is not None:
            self._check_session.close()
            self._check_session = None
        if self._owns_runner:
            self.options.runner.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def parameters(self) -> dict[str, Any]:
        """Values injected into the notebook's `parameters` cell."""
        values = {**self.exercise.spec.grading_parameters, **self.options.extra_parameters}
        return {"DEVICE": self.device, "DTYPE": self.dtype, **self.resolve(values)}

    def models_bytes(self) -> int:
        """What the reference models the checks load take in this process: every model of the store that the
        exercise's parameters name, at the grader's dtype, times the copies its checks hold at once
        (``[limits] grader_model_copies``), plus the largest weights file (mapped while a copy loads)."""
        named = {value for value in {**self.exercise.spec.grading_parameters, **self.options.extra_parameters}.values()
                 if isinstance(value, str)}
        models = {hub_id: count for hub_id, count in self.store.parameters().items() if hub_id in named}
        if not models:
            return 0
        held = sum(models.values()) * torch_dtype_size(self.dtype) * self.exercise.spec.limits.grader_model_copies
        return held + max(self.store.weights_bytes(hub_id) for hub_id in models)

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Parameter values as the notebook gets them: ``"dataset:<hub id>"`` becomes the stand-in's local path."""
        return {name: str(self.store.dataset_path(value.removeprefix("dataset:")))
                if isinstance(value, str) and value.startswith("dataset:") else value for name, value in values.items()}

    def grade_file(self, path: Path) -> GradingResult:
        if not path.is_file():
            raise UserError(L_("No submission at {path}; check the path.").format(path=str(path)))
        return self.grade_bytes(path.read_bytes(), str(path))

    def grade_bytes(self, data: bytes, label: str) -> GradingResult:
        return self.rubric.score(self.run(data, label))

    def run(self, data: bytes, label: str, parameters: dict[str, Any] | None = None,
            observe: Callable[[Submission], None] | None = None) -> RunRecord:
        """Execute and check one submission; always returns a record, whatever the notebook does.

        ``parameters`` replaces the injected values (``validate`` runs notebooks with their own), and
        ``observe`` sees the submission after the checks (what they read and called)."""
        started = time.monotonic()
        record = RunRecord(exercise=self.exercise.name, submission=label, sha256=hashlib.sha256(data).hexdigest(),
                           status="graded")
        diagnostics = Diagnostics(runner=self.options.runner.name, device=self.device, profile=self.store.profile)
        try:
            nb = read_notebook(data)
            record.code = code_cells(nb)
            parameters = self.parameters() if parameters is None else parameters
            missing = sorted(set(parameters) - parameter_names(nb))
            if missing:
                raise InvalidNotebook(L_("The 'parameters' cell no longer sets {names}; restore it from the exercise "
                                         "notebook.").format(names=", ".join(missing)))
            notebook = inject_seed(inject_parameters(nb, parameters), submission_seed(data))
            notebook = inject_probes(notebook, self.probes)
            job = self._job(notebook)
        except InvalidNotebook as exc:
            return self._without_run(record, diagnostics, "invalid", sentence_of(exc), started)
        try:
            session = self.options.runner.start(job)
        except (SessionError, RuntimeError, OSError) as exc:
            problem = L_("The notebook could not be started: {problem}").format(problem=sentence_of(exc))
            return self._without_run(record, diagnostics, "error", problem, started)
        with session:
            diagnostics.notebook_time = round(sum(c.duration for c in session.cells), 3)
            checks_started = time.monotonic()
            ctx = GradingContext(self.exercise, self.store, self.device, self.dtype, parameters)
            submission = Submission(session, self.limits, parameters, self.probe_names)
            if self._check_session is None:
                self._check_session = CheckSession.for_exercise(self.exercise, self.options.public_only)
            record.outcomes = self._check_session.run(ctx, submission)
            if observe is not None:
                observe(submission)
            diagnostics.checks_time = round(time.monotonic() - checks_started, 3)
            diagnostics.student_call_time = round(submission.student_seconds, 3)
            diagnostics.problem_cells = [
                CellDiagnostic(index=c.index, number=c.number, status=c.status, error=c.error and clip(c.error),
                               duration=round(c.duration, 3))
                for c in session.cells if c.failed
            ]
            ending: Text | str = ""
            if session.died:
                record.status, ending = "crashed", L_("The notebook's process died before it finished.")
            elif session.notebook_timed_out:
                record.status = "timeout"
                ending = (L_("The notebook did not finish within {seconds} s of CPU time.") if session.cpu_time_limits
                          else L_("The notebook did not finish within {seconds} s.")).format(
                              seconds=f"{self.limits.notebook_timeout:.0f}")
            if session.limit_breach:  # which sandbox limit stopped it: memory, processes, output
                ending = joined(ending, L_("Limit reached: {limit}.").format(limit=session.limit_breach))
            record.say(record.status, ending)
        _settle_heap()
        diagnostics.wall_time = round(time.monotonic() - started, 3)
        record.diagnostics = diagnostics
        return record

    def _without_run(self, record: RunRecord, diagnostics: Diagnostics, status: Status, message: Text | str,
                     started: float) -> RunRecord:
        """A record for a submission that never ran: every check that could run here failed, with the reason."""
        record.say(status, message)
        record.outcomes = unrun_outcomes(self.checks, record)
        diagnostics.wall_time = round(time.monotonic() - started, 3)
        record.diagnostics = diagnostics
        return record
