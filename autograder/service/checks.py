"""Check-only requests (``autograder.student.check()``): the public checks on a notebook, for its student alone.

A check is not an attempt: nothing of it is written to the gradebook or to disk. The notebook waits in memory, a
worker that holds the exercise's public checks alone (the hidden ones are not even loaded in it) runs it, and its
result is kept in memory for an hour, for the student who sent it. Each student may ask
``[service] checks_per_hour`` times an hour, counted apart from uploads. The worker starts with the first request,
so a course that never checks pays nothing; a service restarted meanwhile forgets the requests (the student asks
again).
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from ..cohort import Setup
from ..exercise import Exercise
from ..executors import WorkerJob
from ..executors.local import LocalExecutor, LocalWorker
from ..results import RunRecord
from .store import TooMany

KEEP_SECONDS = 3600.0  # how long a result waits for its student
WINDOW = timedelta(hours=1)


@dataclass
class CheckRequest:
    public_id: str
    student_id: str
    data: bytes
    filename: str
    state: str = "queued"  # queued | running | done | error
    record: RunRecord | None = None
    problem: str = ""  # why the grader could not check it (state "error")
    finished: float = 0.0  # monotonic time it ended


class CheckQueue(threading.Thread):
    """One exercise's check-only requests, run one at a time by a worker of public checks."""

    def __init__(self, exercise: Exercise, setup: Setup, runner: tuple[str, bool] | None) -> None:
        super().__init__(name=f"checking {exercise.name}", daemon=True)
        self.exercise, self.setup, self.runner = exercise, setup, runner
        self.per_hour = exercise.spec.service.checks_per_hour
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._waiting: deque[CheckRequest] = deque()
        self._requests: dict[str, CheckRequest] = {}
        self._asked: dict[str, deque[datetime]] = {}  # student -> when they asked, within the window
        self._worker: LocalWorker | None = None
        self._inbox: deque[tuple] = deque()  # the worker's messages not yet read
        self._executor = LocalExecutor()

    def ask(self, student_id: str, filename: str, data: bytes) -> str:
        """Queue a check of ``data`` for its student; returns its public id. ``TooMany`` past the hour's allowance."""
        now = datetime.now(timezone.utc)
        with self._lock:
            asked = self._asked.setdefault(student_id, deque())
            while asked and asked[0] <= now - WINDOW:
                asked.popleft()
            if len(asked) >= self.per_hour:
                raise TooMany(len(asked), asked[0] + WINDOW)
            asked.append(now)
            request = CheckRequest(secrets.token_hex(12), student_id, data, filename)
            self._requests[request.public_id] = request
            self._waiting.append(request)
        self._wake.set()
        return request.public_id

    def find(self, public_id: str, student_id: str) -> CheckRequest | None:
        """The request, if it is that student's (another's is indistinguishable from none)."""
        with self._lock:
            request = self._requests.get(public_id)
        return request if request is not None and request.student_id == student_id else None

    def place(self, request: CheckRequest) -> int:
        """How many checks wait ahead of this one."""
        with self._lock:
            return next((i for i, r in enumerate(self._waiting) if r is request), 0)

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=5)
            self._wake.clear()
            self._forget_old()
            while not self._stopping.is_set():
                with self._lock:
                    if not self._waiting:
                        break
                    request = self._waiting[0]
                self._check(request)
                with self._lock:
                    self._waiting.popleft()
        if self._worker is not None:
            self._worker.stop()

    def _check(self, request: CheckRequest) -> None:
        request.state = "running"
        try:
            worker = self._ready_worker()
            worker.send(f"check {request.public_id}", request.data)
            message = self._next_message(worker)
            if message[0] == "done":
                request.record, request.state = RunRecord.model_validate_json(message[1]), "done"
            else:
                request.problem, request.state = str(message[1]), "error"
        except Exception as exc:  # a broken worker must not end the queue: this request says why
            request.problem, request.state = "".join(traceback.format_exception_only(exc)).strip(), "error"
            if self._worker is not None:
                self._worker.kill()
                self._worker = None
                self._inbox.clear()
        request.data, request.finished = b"", time.monotonic()

    def _ready_worker(self) -> LocalWorker:
        if self._worker is not None and self._worker.alive():
            return self._worker
        options = replace(self.setup.options, public_only=True)  # the hidden checks never load in it
        self._worker = self._executor.start(WorkerJob(self.exercise.name, self.exercise.root, options, self.runner))
        message = self._next_message(self._worker)
        if message[0] != "ready":
            raise RuntimeError(f"the checking worker could not start: {message[1]}")
        return self._worker

    def _next_message(self, worker: LocalWorker) -> tuple:
        while True:
            self._inbox.extend(worker.receive())
            if self._inbox:
                return self._inbox.popleft()
            if not worker.alive():
                raise RuntimeError("the checking worker ended")
            if self._stopping.is_set():
                raise RuntimeError("the service is stopping")
            self._executor.wait([worker], None, timeout=1.0)

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - KEEP_SECONDS
        with self._lock:
            for key in [k for k, r in self._requests.items() if r.finished and r.finished < cutoff]:
                del self._requests[key]

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=30)
