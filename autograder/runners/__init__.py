"""Runners execute a student notebook in a process of its own; ``get_runner`` picks one.

Two independent choices: how the notebook executes (``warm``: a child forked from a pre-imported
zygote, the fast default; ``kernel``: a fresh Jupyter kernel, the reference behaviour) and whether
its process is confined (``confine.Sandbox``: the default for grading).
"""

from __future__ import annotations

import os

from ..errors import UserError
from ..i18n import L_
from .base import Runner
from .confine import Sandbox, SandboxLimits, SandboxUnavailable
from .kernel import KernelRunner
from .warm import WarmRunner

RUNNERS: dict[str, type[Runner]] = {"warm": WarmRunner, "kernel": KernelRunner}

# AUTOGRADER_RUNNER overrides the default, e.g. to run the whole test suite on the kernel runner:
#   AUTOGRADER_RUNNER=kernel make test
DEFAULT_RUNNER = os.environ.get("AUTOGRADER_RUNNER") or "warm"


def get_runner(name: str | None = None, confined: bool = True, limits: SandboxLimits | None = None) -> Runner:
    """A new runner of that name (default: the warm one), confined unless told otherwise.

    Raises SandboxUnavailable (one sentence: what is wrong, what to do) where this machine cannot confine it."""
    name = name or DEFAULT_RUNNER
    if name not in RUNNERS:
        raise UserError(L_("Unknown runner '{name}'; choose one of: {runners}.").format(
            name=name, runners=", ".join(sorted(RUNNERS))))
    return RUNNERS[name](Sandbox(limits=limits) if confined else None)


__all__ = ["DEFAULT_RUNNER", "RUNNERS", "KernelRunner", "Runner", "Sandbox", "SandboxLimits", "SandboxUnavailable",
           "WarmRunner", "get_runner"]
