"""Grading the uploads as they come: per exercise, one cohort ``Batch`` that never ends.

The batch runs on a thread of the service's process with a gradebook connection of its own; its
worker processes hold the Grader (checks, rubric, reference models loaded once) and their confined
runner, exactly as ``autograder grade`` does, so a submission graded here gets the row, outcome and
score a batch would give it. The web side wakes the thread when an upload is committed; the thread
also looks for pending uploads every second, which is how a restarted service takes up what was
queued or running when it stopped (nothing of a run is stored until its result is, so a run cut
short is simply graded again). Where the workers run is the executor's (local processes, or Ray
actors on a cluster for a deadline night that outgrows one machine): the batch decides everything
else either way. The queue measures its own rate, for the students' estimates and the TA's page.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from collections import deque
from pathlib import Path

from ..cohort import Batch, Progress, Setup
from ..errors import UserError
from ..executors import Executor
from ..exercise import Exercise
from ..gradebook import Gradebook, Row, from_iso
from ..i18n import Text, sentence_of
from ..intake import Found
from . import store


RATE_WINDOW = 600.0  # seconds of finished submissions the rate is measured over


class ExerciseQueue(threading.Thread):
    def __init__(self, exercise: Exercise, book_path: Path, setup: Setup, runner: tuple[str, bool] | None,
                 jobs: int, max_bytes: int, executor: Executor) -> None:
        super().__init__(name=f"grading {exercise.name}", daemon=True)
        self.exercise, self.book_path, self.setup, self.runner = exercise, book_path, setup, runner
        self.jobs, self.max_bytes, self.executor = jobs, max_bytes, executor
        self._finished: deque[float] = deque()  # when each submission of the last RATE_WINDOW finished
        self._wake_r, self._wake_w = multiprocessing.Pipe(duplex=False)
        self._wake_lock = threading.Lock()
        self._stopping = threading.Event()
        self.batch: Batch | None = None
        self.failure: Text | str | None = None  # why grading stopped, when it did by itself

    def run(self) -> None:
        try:
            with Gradebook(self.book_path) as book:
                self.batch = Batch(self.exercise, self.setup, self.runner, book, self.jobs, self._progressed,
                                   self.executor)

                def feed(in_hand: set[int]) -> list[tuple[Row, Found]] | None:
                    if self._stopping.is_set():
                        return None
                    return [(row, self._found(row, path)) for row, path in store.queued(book, self.exercise.name)
                            if row.id not in in_hand]

                self.batch.run([], feed, self._wake_r)
        except UserError as exc:
            self.failure = sentence_of(exc)
        except Exception as exc:  # a bug here must say so on the dashboard, not vanish with the thread
            self.failure = "".join(traceback.format_exception_only(exc)).strip()

    def _found(self, row: Row, path: Path) -> Found:
        return Found(source=row.source or "", key=row.student_id, name=row.student_name, layout="upload",
                     submitted_at=from_iso(row.submitted_at), submitted_at_from="upload",
                     opener=lambda: open(path, "rb"), sha256=row.sha256 or "", size=row.size or 0,
                     max_bytes=self.max_bytes)

    def _progressed(self, progress: Progress) -> None:
        if progress.row is not None:
            now = time.monotonic()
            self._finished.append(now)
            while self._finished and self._finished[0] < now - RATE_WINDOW:
                self._finished.popleft()

    def rate(self) -> float | None:
        """Submissions graded per minute over the last RATE_WINDOW (None before three have finished)."""
        now = time.monotonic()
        recent = [t for t in list(self._finished) if t >= now - RATE_WINDOW]
        if len(recent) < 3:
            return None
        return (len(recent) - 1) / max(now - recent[0], recent[-1] - recent[0], 1.0) * 60

    def nodes(self) -> dict[str, int]:
        """Submissions graded per node since the service started (the cluster's nodes, or this machine)."""
        return dict(self.batch.nodes) if self.batch else {}

    def wake(self) -> None:
        """Look for new uploads now (called from the web side once an upload is committed)."""
        with self._wake_lock:
            self._wake_w.send_bytes(b"!")

    def running(self) -> frozenset[int]:
        """The rows being graded now."""
        return self.batch.busy if self.batch else frozenset()

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        self.join(timeout=60)
