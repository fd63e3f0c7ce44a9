"""The run's clock: time charged to a run (the CPU time its processes used where a cage can count it, so a busy
neighbour costs it nothing; else wall-clock time), budgets on it, and what the cage's limits did to a run, in
words. Every run has a clock, confined or not; ``confine`` only says which meter counts it (``Lease``)."""

from __future__ import annotations

import time
from typing import Protocol

import psutil

from ..i18n import L_, Text
from .confine import GiB, MiB, SandboxLimits

MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError")


class Meter(Protocol):
    def cpu_seconds(self) -> float | None:
        """CPU time the run has used so far (None where it cannot be told apart)."""


WALL_BACKSTOP = 3.0  # a run counted in CPU time is still stopped after this many times its limit in wall-clock time
# After an interrupt: the run time (on the run's clock) a cell or call has to stop and answer, and how often
# the interrupt is sent again meanwhile (one that lands between the kernel's handlers is ignored by it).
INTERRUPT_GRACE = 10.0
REINTERRUPT_SECONDS = 1.0


class ProcessTree:
    """CPU time of a process and its descendants (the live ones, and those they waited for): what a run
    without a cgroup or a uid of its own is charged."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        try:
            root = psutil.Process(self.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # it ended while we counted
            total += times.user + times.system + times.children_user + times.children_system
        return total


def run_meter(lease: Meter | None, pid: int) -> Meter:
    """What counts a run's CPU time: its cage's cgroup or uid where they can, else its process tree."""
    return lease if lease is not None and lease.cpu_seconds() is not None else ProcessTree(pid)


class RunClock:
    """Time charged to a run: the CPU time its processes used where that can be measured (so a busy
    neighbour costs it nothing), else wall-clock time."""

    def __init__(self, meter: Meter | None) -> None:
        self.meter = meter
        self.counts_cpu = meter is not None and meter.cpu_seconds() is not None

    def now(self) -> float:
        used = self.meter.cpu_seconds() if self.counts_cpu else None
        return used if used is not None else time.monotonic()

    def budget(self, seconds: float) -> Budget:
        return Budget(self, seconds)

    def did_not_finish(self, seconds: float) -> Text:
        return (L_("did not finish within {seconds} s of CPU time") if self.counts_cpu
                else L_("did not finish within {seconds} s")).format(seconds=f"{seconds:.0f}")

    def stopped_after(self, limit: float) -> str:
        spent = "of CPU time " if self.counts_cpu else ""
        return f"stopped after {limit:g} s {spent}(cell time limit)"


class Budget:
    """A time limit on a run's clock, with a wall-clock backstop when the clock counts CPU time."""

    def __init__(self, clock: RunClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds
        self.start, self.wall_start = clock.now(), time.monotonic()
        self.wall_seconds = seconds * WALL_BACKSTOP if clock.counts_cpu else seconds

    def remaining_wall(self) -> float:
        return self.wall_seconds - (time.monotonic() - self.wall_start)

    def remaining(self) -> float:
        if not self.clock.counts_cpu:
            return self.remaining_wall()
        return min(self.seconds - (self.clock.now() - self.start), self.remaining_wall())


def _is_memory_error(error: str | None) -> bool:
    text = error or ""
    return text.split(":")[0] in MEMORY_ERRORS or "can't allocate memory" in text or "not enough memory" in text


def classify_limits(records: list, limits: SandboxLimits) -> Text | None:
    """Mark cells a limit of the cage stopped (memory errors become "memory"); the first such stop, in words."""
    breach = None
    for record in records:
        if record.status == "output_limit":
            what = L_("printed more than {mib} MiB; the cell was stopped").format(mib=limits.output_stop_bytes // MiB)
            record.error = record.error or str(what)
        elif record.status == "error" and _is_memory_error(record.error):
            record.status = "memory"
            what = L_("ran out of memory (a process may use {gib} GiB): {error}").format(
                gib=f"{limits.memory_bytes / GiB:g}", error=record.error)
            record.error = str(what)
        else:
            continue
        breach = breach or L_("{cell} {what}").format(cell=record.name(), what=what)  # "code cell 3 ran out of ..."
    return breach
