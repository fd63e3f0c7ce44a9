"""Runners execute a student notebook in a process of its own; ``get_runner`` picks one by name."""

from __future__ import annotations

import os
import sys

from ..errors import UserError
from .base import Runner
from .kernel import KernelRunner
from .sandbox import SandboxRunner
from .warm import WarmRunner

RUNNERS: dict[str, type[Runner]] = {"kernel": KernelRunner, "warm": WarmRunner, "sandbox": SandboxRunner}

# The warm runner forks pre-imported processes and watches them through pidfds (Linux >= 5.3);
# elsewhere the fresh-kernel runner, which works wherever Jupyter does. AUTOGRADER_RUNNER
# overrides it, e.g. to run the whole test suite on the kernel runner:
#   AUTOGRADER_RUNNER=kernel make test
DEFAULT_RUNNER = os.environ.get("AUTOGRADER_RUNNER") or (
    "warm" if sys.platform == "linux" and hasattr(os, "pidfd_open") else "kernel")


def get_runner(name: str | None = None) -> Runner:
    """A new runner of that name (default: the fastest one this machine supports)."""
    name = name or DEFAULT_RUNNER
    if name not in RUNNERS:
        raise UserError(f"Unknown runner '{name}'; choose one of: {', '.join(sorted(RUNNERS))}.")
    return RUNNERS[name]()
