"""Runs an exercise's check files with plain pytest, in the grader process, and collects outcomes.

The pytest plugin here provides the fixtures checks use (``submission``, ``reference``,
``exercise``), reports CUDA-marked checks as *not run* on CPU runners, and turns pytest's
reports into one ``CheckOutcome`` per check id (the test function's name; the cases of a
parametrised check are folded into one outcome).

A grader keeps one ``CheckSession``: pytest configures itself and collects the check files once,
then runs the collected checks again for every submission.
"""

from __future__ import annotations

import os
import queue
import random
import re
import shutil
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from .errors import UserError
from .exercise import Exercise
from .i18n import LANGUAGES, L_, Text, check_translations, render
from .models.provision import ModelStore
from .reference import Reference
from .results import CheckOutcome, CheckWords
from .submission import Missing, StudentFailure, Submission
from .text import clip

PYTEST_INI = Path(__file__).resolve().parent / "pytest.ini"
NO_CUDA = L_("this check needs a CUDA GPU and this runner has none")


@dataclass
class GradingContext:
    """What a check may know about the run (the ``exercise`` fixture)."""

    exercise: Exercise
    store: ModelStore
    device: str
    dtype: str
    parameters: dict[str, Any]

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


@dataclass
class _Case:
    outcome: str
    message: Text | str
    duration: float
    missing: bool = False  # failed only because what it judges was never made (an earlier cell stopped)


@dataclass
class _Check:
    id: str
    title: str
    public: bool
    needs_cuda: bool
    constant: str | None  # why the checked value cannot change with the grading parameters (the `constant` marker)
    step: str  # the step of the exercise it judges (the `step` marker; else the check alone)
    cases: list[_Case] = field(default_factory=list)


class _Plugin:
    def __init__(self, ctx: GradingContext | None, submission: Submission | None, public_files: set[Path],
                 locales: Path | None = None) -> None:
        self.ctx = ctx
        self._submission = submission
        self.public_files = public_files
        self.locales = locales  # the exercise's catalog of check sentences
        self.checks: dict[str, _Check] = {}
        self.collect_errors: list[str] = []
        self._reference: Reference | None = None

    # fixtures -------------------------------------------------------------------------
    @pytest.fixture(scope="session")
    def submission(self) -> Submission:
        assert self._submission is not None, "no submission in this run"
        return self._submission

    @pytest.fixture(scope="session")
    def reference(self) -> Reference:
        assert self.ctx is not None
        if self._reference is None:
            self._reference = Reference(self.ctx.store, self.ctx.device, self.ctx.dtype)
        return self._reference

    @pytest.fixture(scope="session")
    def exercise(self) -> GradingContext:
        assert self.ctx is not None
        return self.ctx

    # hooks ----------------------------------------------------------------------------
    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid}: {report.longreprtext.strip().splitlines()[-1]}")

    def pytest_collection_modifyitems(self, items) -> None:
        origins: dict[str, str] = {}
        for item in items:
            check_id = getattr(item, "originalname", item.name)
            origin = origins.setdefault(check_id, str(item.fspath))
            if origin != str(item.fspath):
                self.collect_errors.append(f"two check files define '{check_id}' ({origin}, {item.fspath}); "
                                           "every check needs a unique name")
            if check_id not in self.checks:
                title = check_title(getattr(item, "function", None).__doc__, check_id)
                constant = item.get_closest_marker("constant")
                step = item.get_closest_marker("step")
                self.checks[check_id] = _Check(check_id, title, Path(item.fspath).resolve() in self.public_files,
                                               item.get_closest_marker("cuda") is not None,
                                               (constant.args or ["(no reason given)"])[0] if constant else None,
                                               str(step.args[0]) if step and step.args else check_id)

    def pytest_runtest_setup(self, item) -> None:
        if item.get_closest_marker("cuda") and not (self.ctx and self.ctx.cuda):
            pytest.skip(str(NO_CUDA))
        # The grader's own random draws (a check that trains a model) repeat exactly, whatever ran before.
        seed = zlib.crc32(item.name.encode())
        random.seed(seed)
        if self.ctx and self.ctx.cuda:
            torch.manual_seed(seed)  # CPU and CUDA, now or when CUDA starts
        else:
            # CPU only: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding, formatting the whole
            # call stack each time (about 1 ms a check on pytest's deep stack).
            torch.default_generator.manual_seed(seed)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        check = self.checks[getattr(item, "originalname", item.name)]
        if call.when == "setup" and report.skipped:
            check.cases.append(_Case("not_run", NO_CUDA if item.get_closest_marker("cuda") else L_("skipped"), 0.0))
        elif call.when == "setup" and report.failed and isinstance(call.excinfo.value, StudentFailure):
            # A fixture that reads the student's work (e.g. their figures, once per submission) failed on it.
            check.cases.append(_Case("failed", _label(item, _failure_text(call.excinfo.value)), call.duration,
                                     isinstance(call.excinfo.value, Missing)))
        elif call.when == "setup" and report.failed:
            check.cases.append(_Case("error", L_("the check could not start: {error}").format(
                error=_exc_text(call.excinfo)), call.duration))
        elif call.when == "call":
            if report.passed:
                check.cases.append(_Case("passed", "", call.duration))
            elif isinstance(call.excinfo.value, AssertionError):
                message = _failure_text(call.excinfo.value) or L_("the check failed")
                check.cases.append(_Case("failed", _label(item, message), call.duration,
                                         isinstance(call.excinfo.value, Missing)))
            else:
                check.cases.append(_Case("error", _label(item, L_("the check crashed: {error}").format(
                    error=_exc_text(call.excinfo))), call.duration))

    def begin(self, ctx: GradingContext | None, submission: Submission) -> None:
        """Make the next round of checks about this submission."""
        self.ctx, self._submission = ctx, submission
        for check in self.checks.values():
            check.cases = []

    def outcomes(self) -> list[CheckOutcome]:
        return [_fold(check, self.locales) for check in self.checks.values()]


def check_title(doc: str | None, check_id: str) -> str:
    """A check's title: its docstring's first paragraph on one line, else its id."""
    return " ".join(re.split(r"\n\s*\n", (doc or "").strip(), maxsplit=1)[0].split()) or check_id


def _label(item, message: Text | str) -> Text | str:
    """A parametrised check's message names the case it is about."""
    return Text("[{case}] {message}", None).format(case=item.callspec.id, message=message) \
        if hasattr(item, "callspec") else message


def _failure_text(exc: AssertionError) -> Text | str:
    """What a failed assertion says: its Text (a sentence in every language), else its plain message."""
    message = exc.args[0] if exc.args else ""
    return message if isinstance(message, Text) else str(exc).strip()


def _exc_text(excinfo) -> str:
    return f"{type(excinfo.value).__name__}: {excinfo.value}"


def worded(title: str, messages: list[Text | str], locales: Path | None) -> dict[str, Any]:
    """A check's title and messages in every language: English as ``title`` and ``message``, each other language
    in ``translations`` where it reads differently. A message may echo a student's value: each is clipped, so that
    a 10 MB string stays out of every output."""
    words = {}
    for language in LANGUAGES:
        catalog = check_translations(locales, language)
        rendered = (render(m, language, catalog) for m in messages)
        words[language] = CheckWords(title=catalog.gettext(title),
                                     message=clip("\n".join(dict.fromkeys(rendered))))
    english = words.pop("en")
    return {"title": english.title, "message": english.message,
            "translations": {language: w for language, w in words.items() if w != english}}


def _fold(check: _Check, locales: Path | None) -> CheckOutcome:
    cases = check.cases
    kinds = {c.outcome for c in cases}
    if not cases:
        outcome = "error"
    elif kinds == {"passed"}:
        outcome = "passed"
    elif "error" in kinds:
        outcome = "error"
    elif "failed" in kinds:
        outcome = "failed"
    elif kinds == {"not_run"}:
        outcome = "not_run"
    else:  # some passed, the rest could not run here
        outcome = "not_run"
    messages = [c.message for c in cases if c.outcome != "passed" and c.message] if cases \
        else [L_("the check did not run")]
    return CheckOutcome(
        id=check.id,
        outcome=outcome,
        **worded(check.title, messages, locales),
        duration=round(sum(c.duration for c in cases), 4),
        public=check.public,
        cases_passed=sum(c.outcome == "passed" for c in cases),
        cases_total=len(cases),
        missing=outcome == "failed" and all(c.missing for c in cases if c.outcome == "failed"),
    )


# Environment variables through which pytest takes options and plugins from outside (a TA's shell, a CI job):
# they would change what the checks do, so the grader's sessions never see them.
_PYTEST_ENVIRONMENT = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


@contextmanager
def _without_pytest_environment() -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in _PYTEST_ENVIRONMENT if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _pytest_args(files: list[Path], extra: list[str]) -> list[str]:
    return [str(f) for f in files] + [
        "-c", str(PYTEST_INI), "--rootdir", str(PYTEST_INI.parent),
        # Only pytest's own plugins and the grader's: a plugin installed next to the grader (a rerunner,
        # a randomiser, a timeout) would change outcomes.
        "--disable-plugin-autoload", "-p", "no:cacheprovider", "-p", "no:terminal",
        # No log capture: it re-attaches handlers to every logger for every phase of every check (tens of ms
        # a submission with transformers' loggers), and outcomes never use it.
        "-p", "no:logging",
        # These three install process-wide hooks (sys.unraisablehook, threading.excepthook, faulthandler) for
        # a session's whole life, which for a grader's session is the grader's; they only ever add warnings.
        "-p", "no:unraisableexception", "-p", "no:threadexception", "-p", "no:faulthandler",
        "--assert=plain", "--import-mode=importlib", *extra,
    ]


def _broken(problem: str) -> UserError:
    return UserError(L_("The check files are broken ({problem}); fix them and run again.").format(problem=problem))


def _run_pytest(files: list[Path], plugin: _Plugin, extra: list[str]) -> None:
    if not files:
        return
    with _without_pytest_environment():
        pytest.main(_pytest_args(files, extra), plugins=[plugin])
    if plugin.collect_errors:
        raise _broken(plugin.collect_errors[0])


_ENDED = object()  # the session's thread has left pytest.main


class CheckSession:
    """One pytest session that runs the same check files for many submissions.

    pytest configures itself and collects once (on a tokenizer submission, that was about a tenth of
    the grader's time when done per submission). Then, for each submission, the collected items run
    again in order, the last one with no next item, so that every fixture (session scope included) is
    torn down and the next submission's checks set them up afresh, as pytest-xdist's workers run the
    items they are sent. Check modules stay imported either way (pytest caches them per process).

    pytest.main does not return between submissions, so it runs on a thread of its own, and the
    caller's thread waits while a round runs. The checks' requests go to the student process from the
    session's thread: a runner's session may be used from any thread (the kernel runner carries its
    calls to the one thread its Jupyter client works on). pytest's capture is active only while an item
    runs, as in a session per submission.
    """

    def __init__(self, files: list[Path], public_files: set[Path] | frozenset[Path] = frozenset(),
                 locales: Path | None = None) -> None:
        self._plugin = _Plugin(None, None, set(public_files), locales)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()  # each round's outcomes (or what ended it)
        self._closed = False
        self._tmp = Path(tempfile.mkdtemp(prefix="autograder-checks-"))  # tmp_path's base, emptied after each round
        # OpenMP's thread count is per thread: a new thread would run the checks' tensor work on every core.
        self._threads = torch.get_num_threads()
        self._thread: threading.Thread | None = None
        if not files:
            return
        self._thread = threading.Thread(target=self._main, args=(files,), name="autograder-checks", daemon=True)
        with _without_pytest_environment():  # pytest reads its environment while it configures, before this returns
            self._thread.start()
            started = self._results.get()
        if started is not None:
            self.close()
            raise started if isinstance(started, BaseException) else _broken("pytest stopped before running them")

    @classmethod
    def for_exercise(cls, exercise: Exercise, public_only: bool = False) -> CheckSession:
        return cls(exercise.check_files(public_only), {f.resolve() for f in exercise.public_check_files},
                   exercise.catalog_dir)

    def _main(self, files: list[Path]) -> None:
        torch.set_num_threads(self._threads)
        try:
            pytest.main(_pytest_args(files, ["--basetemp", str(self._tmp)]), plugins=[self._plugin, self])
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self._results.put(exc)
        self._results.put(_ENDED)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session) -> bool:
        if self._plugin.collect_errors:
            self._results.put(_broken(self._plugin.collect_errors[0]))
            return True
        self._results.put(None)  # configured and collected
        while (job := self._jobs.get()) is not None:
            try:
                self._results.put(self._round(session.items, *job))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                self._results.put(exc)
        return True

    def _round(self, items: list, ctx: GradingContext | None, submission: Submission) -> list[CheckOutcome]:
        self._plugin.begin(ctx, submission)
        try:
            for item, next_item in zip(items, [*items[1:], None]):
                item.ihook.pytest_runtest_protocol(item=item, nextitem=next_item)
        finally:
            for leftover in self._tmp.iterdir():
                shutil.rmtree(leftover, ignore_errors=True)
        return self._plugin.outcomes()

    def run(self, ctx: GradingContext | None, submission: Submission) -> list[CheckOutcome]:
        """Run every check against a finished student process; one outcome per check id."""
        if self._thread is None:
            return []
        if self._closed or not self._thread.is_alive():
            raise RuntimeError("the check session has ended")
        self._jobs.put((ctx, submission))
        result = self._results.get()
        if result is _ENDED:
            raise RuntimeError("the check session ended while it ran the checks")
        if isinstance(result, BaseException):
            raise result
        return result

    def close(self) -> None:
        """End the session (its fixtures are already torn down after each round)."""
        self._closed = True
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> CheckSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _collect(exercise: Exercise, public_only: bool) -> _Plugin:
    plugin = _Plugin(None, None, {f.resolve() for f in exercise.public_check_files}, exercise.catalog_dir)
    _run_pytest(exercise.check_files(public_only), plugin, ["--collect-only"])
    return plugin


def constant_checks(exercise: Exercise) -> dict[str, str]:
    """The checks marked ``@pytest.mark.constant(reason)``, with their reasons."""
    return {c.id: c.constant for c in _collect(exercise, False).checks.values() if c.constant is not None}


def check_steps(exercise: Exercise) -> dict[str, str]:
    """Each check's step (``@pytest.mark.step(name)``; a check without one is a step of its own)."""
    return {c.id: c.step for c in _collect(exercise, False).checks.values()}


def hidden_only_steps(exercise: Exercise) -> list[dict[str, list[str]]]:
    """The steps of the exercise that only hidden checks judge, each as its checks' titles by language: what a
    student's passing public checks say nothing about."""
    plugin = _collect(exercise, False)
    steps: dict[str, list[_Check]] = {}
    for check in plugin.checks.values():
        steps.setdefault(check.step, []).append(check)
    return [{language: [check_translations(plugin.locales, language).gettext(c.title) for c in checks]
             for language in LANGUAGES}
            for checks in steps.values() if not any(c.public for c in checks)]


def collect_checks(exercise: Exercise, public_only: bool = False, cuda: bool = False) -> list[CheckOutcome]:
    """The exercise's checks without running anything: each as *failed* (a placeholder), or *not run* when it
    needs CUDA and ``cuda`` is false."""
    plugin = _collect(exercise, public_only)
    return [
        CheckOutcome(id=c.id, public=c.public, outcome="not_run" if c.needs_cuda and not cuda else "failed",
                     **worded(c.title, [NO_CUDA] if c.needs_cuda and not cuda else [], plugin.locales))
        for c in plugin.checks.values()
    ]
