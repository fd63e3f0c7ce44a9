"""The seam every executor implements: a ``WorkerJob`` (what a worker grades with), the ``GraderHost`` every worker
holds, and the ``Worker`` and ``Executor`` interfaces (see the package's docstring)."""

from __future__ import annotations

import signal
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..grading import GradeOptions

Message = tuple[str, Any]
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class WorkerJob:
    """What every worker of a batch is started with (picklable: it travels to the worker)."""

    exercise: str
    root: Path  # the course folder
    options: GradeOptions  # with the device chosen; ``runner`` unset (each worker builds its own)
    runner: tuple[str, bool] | None  # (runner name, confined); None: the Grader's default


class GraderHost:
    """The worker side: one Grader (rubric, checks, reference models) and its runner, for many submissions."""

    def __init__(self, job: WorkerJob) -> None:
        from ..exercise import Exercise
        from ..grading import Grader, limit_grader_memory
        from ..runners import get_runner

        # Every signal unblocked in the thread that starts the runner's processes, which inherit its mask: a Ray
        # worker's thread blocks SIGINT, and a student process started from it could not be interrupted.
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        self.runner = get_runner(*job.runner) if job.runner else None
        try:
            options = replace(job.options, runner=self.runner) if self.runner else job.options
            self.grader = Grader(Exercise(job.exercise, job.root), options)
        except BaseException:
            if self.runner is not None:
                self.runner.close()
            raise
        limit_grader_memory(self.grader.device, self.grader.models_bytes())

    def grade(self, label: str, data: bytes) -> Message:
        try:
            return ("done", self.grader.run(data, label).model_dump_json())
        except Exception as exc:  # a grader bug must not end the batch; the row records it
            return ("failed", traceback.format_exception_only(exc)[-1].strip())

    def close(self) -> None:
        self.grader.close()
        if self.runner is not None:
            self.runner.close()


class Worker(ABC):
    """One grading worker as the batch sees it: the submission it holds, and a way to talk to it."""

    def __init__(self) -> None:
        self.ready = False  # it has said "ready"
        self.row = None  # the gradebook Row it is grading, if any
        self.started = 0.0  # when it got that row
        self.created = time.monotonic()
        self.node = ""  # where it runs (the per-node counts of a cluster run)

    @abstractmethod
    def send(self, label: str, data: bytes) -> None:
        """Hand it one submission."""

    @abstractmethod
    def receive(self) -> list[Message]:
        """What it has sent since last asked (never blocks)."""

    @abstractmethod
    def alive(self) -> bool:
        ...

    @abstractmethod
    def kill(self) -> None:
        """End it now, whatever it is doing."""

    @abstractmethod
    def stop(self) -> None:
        """Ask it to finish and end (killing it when it does not, or when it holds a submission)."""


class Executor(ABC):
    """Starts workers for a batch and waits for any of them to have something to say."""

    name: str

    def choose_device(self, requested: str | None) -> str | None:
        """The device the workers grade on (None: the batch's machine decides)."""
        return requested

    @abstractmethod
    def capacity(self, profile: str, exercise: Any, device: str | None) -> int:
        """Workers that fit where this executor runs them (the default ``--jobs``)."""

    @abstractmethod
    def threads(self, profile: str, jobs: int) -> int:
        """Intra-op threads for each worker's grader and student process."""

    @abstractmethod
    def start(self, job: WorkerJob) -> Worker:
        ...

    @abstractmethod
    def wait(self, workers: list[Worker], wake: Connection | None, timeout: float) -> None:
        """Return when a worker may have something to say, ``wake`` has data, or ``timeout`` passed."""

    def close(self) -> None:
        """Let go of what the executor holds (its cluster connection)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
