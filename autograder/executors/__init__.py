"""Where a batch's grading workers run: local processes (the default) or Ray actors on a cluster.

The cohort ``Batch`` (``cohort.py``) is the gradebook's only writer and decides everything: what to grade
next, retries, backstops, scores. An executor only starts workers and carries messages: a submission's bytes
to a worker, its ``RunRecord`` back. Every worker holds one ``GraderHost`` (a ``Grader`` with its confined
runner, loaded once for many submissions), so a worker is the same thing wherever it runs.

Messages from a worker: ``("ready", node)``, ``("fatal", sentence)`` (the worker cannot grade: the batch stops
with that sentence), ``("done", record JSON)`` and ``("failed", problem)`` (the grader itself failed on that
submission; the row records it).
"""

from __future__ import annotations

from .base import EXECUTORS, Executor, GraderHost, Message, Worker, WorkerJob

__all__ = ["EXECUTORS", "Executor", "GraderHost", "Message", "Worker", "WorkerJob", "make_executor"]


def make_executor(name: str = "local", address: str | None = None) -> Executor:
    """The executor of that name; ``address`` is the Ray cluster's (default: the one this machine belongs to)."""
    from ..errors import UserError
    from ..i18n import L_

    if name == "local":
        from .local import LocalExecutor

        if address:
            raise UserError(L_("--ray-address needs --executor ray; add it, or leave out the address."))
        return LocalExecutor()
    if name == "ray":
        from .ray_cluster import RayExecutor

        return RayExecutor(address)
    raise UserError(L_("Unknown executor '{name}'; choose one of: {executors}.").format(
        name=name, executors=", ".join(EXECUTORS)))
