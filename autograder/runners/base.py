"""The runner interface: execute a student notebook in a process of its own, then answer requests.

A runner starts a student process, executes the (parameter-injected) notebook cell by
cell under limits, and keeps the process alive as a ``StudentSession`` so the checks can
ask it for values and function calls. Only bytes cross: requests and answers in the wire
format of ``autograder.agent``. Kernel, warm-worker, sandboxed and remote runners all
implement this interface.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import nbformat

from .. import agent
from ..i18n import Text
from ..notebook import GRADER_CELL_TAGS
from ..results import cell_name
from .clock import Budget, RunClock

AGENT_FILE = Path(__file__).resolve().parent.parent / "agent.py"
WIRE_FILE = AGENT_FILE.with_name("wire.py")  # what the agent loads from beside it

# memory / output_limit: the cell was stopped by a limit of a confining runner (see runners/confine.py).
CellStatus = Literal["ok", "error", "timeout", "skipped", "died", "memory", "output_limit"]


@dataclass(frozen=True)
class RunLimits:
    cell_timeout: float = 120.0
    notebook_timeout: float = 600.0
    call_timeout: float = 60.0
    output_bytes: int = 200_000  # captured text per cell; the rest is dropped and marked
    answer_bytes: int = 256 * 1024 * 1024
    gpu_memory_bytes: int | None = None  # a confining runner caps the notebook's CUDA memory at this
    memory_bytes: int | None = None  # a confining runner's memory limit for this run (None: the sandbox's own)


@dataclass
class CellRecord:
    index: int
    source: str
    tags: list[str]
    status: CellStatus = "skipped"
    duration: float = 0.0
    output: str = ""
    error: str | None = None
    number: int = 0  # the student's own count, "code cell N" (as Jupyter's [N] after Run All); 0: a grader cell

    def name(self, start: bool = False) -> Text:
        return cell_name(self.number, start)

    @property
    def failed(self) -> bool:
        return self.status in ("error", "timeout", "died", "memory", "output_limit")

    @classmethod
    def for_code_cells(cls, nb: nbformat.NotebookNode) -> list[CellRecord]:
        """One record per code cell, in order, each *skipped* until a runner runs it."""
        records, number = [], 0
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            tags = list(cell.metadata.get("tags", []))
            student_cell = not GRADER_CELL_TAGS.intersection(tags)
            number += student_cell
            records.append(cls(i, cell.source, tags, number=number if student_cell else 0))
        return records


@dataclass
class RunJob:
    notebook: nbformat.NotebookNode
    env: dict[str, str]
    limits: RunLimits = field(default_factory=RunLimits)
    readable: tuple[Path, ...] = ()  # folders the notebook may read (models, datasets); a sandbox mounts only these


class SessionError(Exception):
    """The student process could not answer (dead, timed out, answer too large); its one argument, a Text,
    says so for the student."""


@dataclass
class CellRun:
    """What running one cell within its budget came to: a runner's whole part of the cell loop."""

    status: CellStatus  # ok | error | timeout | died | output_limit
    output: str = ""
    error: str | None = None
    answers: bool = True  # after a timeout: whether the process still answers (if not, the run ends as died)


class StudentSession(ABC):
    """A finished notebook run whose process still answers requests.

    The cell loop is this class's (``run_cells``): the notebook's and each cell's time budgets on the run's clock,
    time-outs, a process that died, and what ends the run. A runner only runs one cell within a budget
    (``_run_cell``) and says what happened, as nbgrader executes and then transforms."""

    cells: list[CellRecord]
    limits: RunLimits
    notebook_timed_out: bool = False
    died: bool = False
    limit_breach: Text | None = None  # e.g. "it ran out of memory": a run-wide limit a confining runner enforced
    cpu_time_limits: bool = False  # True: time limits were charged in CPU time the run used, not wall-clock time
    _clock: RunClock

    def run_cells(self, nb: nbformat.NotebookNode) -> list[CellRecord]:
        """Run the notebook's code cells in order, each within the cell time limit and what is left of the
        notebook's; stop at the first cell after which the process is gone."""
        records = CellRecord.for_code_cells(nb)
        notebook = self._clock.budget(self.limits.notebook_timeout)
        for record in records:
            remaining = notebook.remaining()
            if remaining <= 0:
                self.notebook_timed_out = True
                break
            if not record.source.strip():
                record.status = "ok"
                continue
            limit = max(1, int(min(self.limits.cell_timeout, remaining)))
            started = time.monotonic()
            try:
                ran = self._run_cell(record, self._clock.budget(limit))
            finally:
                record.duration = time.monotonic() - started
            record.status, record.output, record.error = ran.status, ran.output, ran.error
            if ran.status == "timeout":
                record.error = self._clock.stopped_after(limit)
                if remaining <= self.limits.cell_timeout:  # the notebook's budget, not the cell's, ran out
                    self.notebook_timed_out = True
            if ran.status == "died" or not ran.answers:
                self.died = True
                break
        return records

    def _run_cell(self, record: CellRecord, budget: Budget) -> CellRun:
        """Run one cell within ``budget`` (interrupting it past the budget) and say what happened: every runner's
        session implements it (a session that runs no cells, e.g. one answering in this process, needs not)."""
        raise NotImplementedError

    @abstractmethod
    def request(self, payload: bytes, timeout: float) -> bytes:
        """Send one wire request to the student process and return its wire answer."""

    @abstractmethod
    def close(self) -> None:
        """End the student process and remove its files."""

    def __enter__(self) -> StudentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Runner(ABC):
    name: str
    confined: bool = False  # True: untrusted notebooks are caged (no network, no grader files, limits)

    @property
    def label(self) -> str:
        """The runner's name and whether it confines, for people reading a report."""
        return f"{self.name}, {'confined' if self.confined else 'unconfined'}"

    @abstractmethod
    def start(self, job: RunJob) -> StudentSession:
        """Execute the job's notebook and return the live session."""

    def prepare(self, job: RunJob) -> None:
        """Get ready for jobs like this one before the first arrives (e.g. start processes in the background)."""

    def close(self) -> None:
        """Release what the runner keeps between submissions (e.g. pre-imported processes)."""


def student_env(extra: dict[str, str], workdir: Path) -> dict[str, str]:
    """A small environment for the student process: nothing of the grader's secrets leaks."""
    keep = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    # A fixed hash seed: set and dict orders of strings, and so the grade, do not vary between runs.
    env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
               PYTHONHASHSEED="0")
    env.update(extra)
    return env


def cell_text_output(outputs: list) -> str:
    """What a person would read under a cell: streams as written, then each result, display and error
    line on lines of its own."""
    text = ""
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            text += out.get("text", "")
            continue
        if kind in ("execute_result", "display_data"):
            block = out.get("data", {}).get("text/plain", "")
        elif kind == "error":
            block = f"{out.get('ename')}: {out.get('evalue')}"
        else:
            continue
        if block:
            text += agent.as_block(block, at_line_start=not text or text.endswith("\n"))
    return text if text.endswith("\n") or not text else text + "\n"

