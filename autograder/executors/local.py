"""Grading workers as processes of this machine (``--executor local``, the default).

Each worker is a spawned process with one ``GraderHost``, talking to the batch over a pipe; it dies with the
batch process, even when that is killed with SIGKILL.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection, wait

from ..errors import UserError
from ..i18n import sentence_of
from .base import Executor, GraderHost, Message, Worker, WorkerJob


class LocalWorker(Worker):
    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        super().__init__()
        self.process, self.conn = process, conn
        self.lost = False

    def send(self, label: str, data: bytes) -> None:
        self.conn.send((label, data))

    def receive(self) -> list[Message]:
        messages = []
        try:
            while self.conn.poll():
                messages.append(self.conn.recv())
        except (EOFError, OSError):
            self.lost = True
        return messages

    def alive(self) -> bool:
        return not self.lost and self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5)

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout=10 if self.row is None else 0)
        if self.process.is_alive():
            self.kill()


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")

    def capacity(self, profile: str, exercise, device: str | None = None) -> int:
        from .capacity import default_jobs

        return default_jobs(profile, exercise)

    def threads(self, profile: str, jobs: int) -> int:
        from ..grading import default_threads

        return default_threads(profile, jobs)

    def start(self, job: WorkerJob) -> LocalWorker:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, daemon=True, args=(child, os.getpid(), job))
        process.start()
        child.close()
        return LocalWorker(process, parent)

    def wait(self, workers: list[Worker], wake: Connection | None, timeout: float) -> None:
        waitables = [w.conn for w in workers] + [w.process.sentinel for w in workers]  # type: ignore[attr-defined]
        wait(waitables + ([wake] if wake else []), timeout=timeout)


def _worker_main(conn: Connection, parent_pid: int, job: WorkerJob) -> None:
    """A grading worker: one GraderHost, many submissions, until the parent says stop (or dies)."""
    _die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        host = GraderHost(job)
    except UserError as exc:
        conn.send(("fatal", sentence_of(exc)))  # a Text travels as it is, to be said in the TA's language
        return
    try:
        conn.send(("ready", ""))
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            conn.send(host.grade(*task))
    finally:
        host.close()


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
