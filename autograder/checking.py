"""Runs an exercise's check files with plain pytest, in the grader process, and collects outcomes.

The pytest plugin here provides the fixtures checks use (``submission``, ``reference``,
``exercise``), reports CUDA-marked checks as *not run* on CPU runners, and turns pytest's
reports into one ``CheckOutcome`` per check id (the test function's name; the cases of a
parametrised check are folded into one outcome).
"""

from __future__ import annotations

import random
import re
import zlib
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
from .submission import StudentFailure, Submission
from .text import clip

PYTEST_INI = Path(__file__).resolve().parent / "checks" / "pytest.ini"
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


@dataclass
class _Check:
    id: str
    title: str
    public: bool
    needs_cuda: bool
    constant: str | None  # why the checked value cannot change with the grading parameters (the `constant` marker)
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
                self.checks[check_id] = _Check(check_id, title, Path(item.fspath).resolve() in self.public_files,
                                               item.get_closest_marker("cuda") is not None,
                                               (constant.args or ["(no reason given)"])[0] if constant else None)

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
            check.cases.append(_Case("failed", _label(item, _failure_text(call.excinfo.value)), call.duration))
        elif call.when == "setup" and report.failed:
            check.cases.append(_Case("error", L_("the check could not start: {error}").format(
                error=_exc_text(call.excinfo)), call.duration))
        elif call.when == "call":
            if report.passed:
                check.cases.append(_Case("passed", "", call.duration))
            elif isinstance(call.excinfo.value, AssertionError):
                message = _failure_text(call.excinfo.value) or L_("the check failed")
                check.cases.append(_Case("failed", _label(item, message), call.duration))
            else:
                check.cases.append(_Case("error", _label(item, L_("the check crashed: {error}").format(
                    error=_exc_text(call.excinfo))), call.duration))

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
    )


def _run_pytest(files: list[Path], plugin: _Plugin, extra: list[str]) -> None:
    if not files:
        return
    args = [str(f) for f in files] + [
        "-c", str(PYTEST_INI), "--rootdir", str(PYTEST_INI.parent),
        "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:randomly", "-p", "no:xdist",
        # No log capture: it re-attaches handlers to every logger for every phase of every check (tens of ms
        # a submission with transformers' loggers), and outcomes never use it.
        "-p", "no:logging",
        "--assert=plain", "--import-mode=importlib", *extra,
    ]
    pytest.main(args, plugins=[plugin])
    if plugin.collect_errors:
        raise UserError(L_("The check files are broken ({problem}); fix them and run again.").format(
            problem=str(plugin.collect_errors[0])))


def _collect(exercise: Exercise, public_only: bool) -> _Plugin:
    plugin = _Plugin(None, None, {f.resolve() for f in exercise.public_check_files}, exercise.catalog_dir)
    _run_pytest(exercise.check_files(public_only), plugin, ["--collect-only"])
    return plugin


def constant_checks(exercise: Exercise) -> dict[str, str]:
    """The checks marked ``@pytest.mark.constant(reason)``, with their reasons."""
    return {c.id: c.constant for c in _collect(exercise, False).checks.values() if c.constant is not None}


def collect_checks(exercise: Exercise, public_only: bool = False, cuda: bool = False) -> list[CheckOutcome]:
    """The exercise's checks without running anything: each as *failed* (a placeholder), or *not run* when it
    needs CUDA and ``cuda`` is false."""
    plugin = _collect(exercise, public_only)
    return [
        CheckOutcome(id=c.id, public=c.public, outcome="not_run" if c.needs_cuda and not cuda else "failed",
                     **worded(c.title, [NO_CUDA] if c.needs_cuda and not cuda else [], plugin.locales))
        for c in plugin.checks.values()
    ]


def run_checks(ctx: GradingContext, submission: Submission, public_only: bool = False) -> list[CheckOutcome]:
    """Run the checks against a finished student process; one outcome per check id."""
    files = ctx.exercise.check_files(public_only)
    plugin = _Plugin(ctx, submission, {f.resolve() for f in ctx.exercise.public_check_files}, ctx.exercise.catalog_dir)
    _run_pytest(files, plugin, [])
    return plugin.outcomes()
