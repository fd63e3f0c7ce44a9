"""Warm runner: each submission runs in a fresh process forked from a pre-imported zygote.

Importing torch, transformers, peft, trl and datasets takes seconds; a small notebook on the
tiny models runs in well under one. A ``WarmRunner`` starts one zygote process per grader (the
batch), in the background as soon as the grader is made: it imports the libraries once, runs
their first-use paths on the offline models (one thread, no CUDA), and forks a child per
submission (``warm_worker.py`` is the student side). A child is a copy of the zygote, so nothing
of one submission is visible to the next; what a child changes stays in its own copy, and the
zygote is not dumpable, so a process of the same (non-root) user cannot write into its memory
either. A child can only kill it, and the next submission then gets a new zygote. While one
submission runs and is checked, a thread of the runner forks and cages the next child and
reaps the last one (pipelining).

Otherwise the isolation is that of separate processes of one user, as with the kernel runner:
without a sandbox this is not a cage (no network, file or memory confinement); with one, each child
confines itself right after the fork, before any student code runs (see ``confine.py``).

The session behaves like the kernel runner's: cells run one by one in an IPython shell, each
recorded (status, captured output under the same cap, duration, error line); a failing cell
does not stop the next; per-cell and whole-notebook time limits interrupt the cell with SIGINT
(as a Jupyter kernel is interrupted), and a process that ignores the interrupt is killed. After
the cells, the child answers the checks' wire requests with ``autograder.agent.Agent``.

On a CUDA machine the same design holds: the zygote never touches CUDA (PyTorch's NVML-based
availability check keeps even an accidental ``torch.cuda.is_available()`` from initialising it),
each child initialises CUDA itself, and model weights come from the memory-mapped safetensors
files of the local cache, shared through the page cache.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


from ..i18n import L_, Text
from .base import AGENT_FILE, CellRecord, CellRun, Runner, RunJob, SessionError, StudentSession, student_env
from .clock import INTERRUPT_GRACE, REINTERRUPT_SECONDS, Budget, RunClock, classify_limits, run_meter
from .confine import Lease, Sandbox
from .warm_worker import ANSWER, CELL, FRAME, REPLY, REQUEST

WORKER_FILE = Path(__file__).resolve().with_name("warm_worker.py")
ZYGOTE_READY_TIMEOUT = 300.0  # importing the libraries on a busy 2-core machine
CHILD_READY_TIMEOUT = 60.0
SEND_TIMEOUT = 30.0
POLL_SECONDS = 0.25  # how often a waiting runner reads the run's CPU clock
_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('autograder_warm_worker', sys.argv[1])\n"
    "worker = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(worker)\n"
    "worker.zygote_main(int(sys.argv[3]), sys.argv[2])\n"
)
DIED = "the notebook's process died (out of memory, or it exited)"


class _Died(Exception):
    """The child process ended (or closed its channel)."""


class _Timeout(Exception):
    pass


class _Malformed(Exception):
    """The child sent a frame that breaks the protocol (only student code tampering does that)."""


class _Child:
    """A forked student process as the grader sees it: its pid (as a pidfd), its channel, its folder."""

    def __init__(self, pid: int, pidfd: int, sock: socket.socket, workdir: Path, lease: Lease | None) -> None:
        self.pid, self.pidfd, self.sock, self.workdir, self.lease = pid, pidfd, sock, workdir, lease
        sock.setblocking(False)

    def ready(self, timeout: float) -> bool:
        """Whether a frame has started arriving (or the process ended) within `timeout` seconds."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        poller.register(self.pidfd, select.POLLIN)
        return bool(poller.poll(timeout * 1000))

    # --- channel ----------------------------------------------------------------------
    def send(self, kind: bytes, body: bytes) -> None:
        deadline = time.monotonic() + SEND_TIMEOUT
        header = FRAME.pack(kind, len(body))
        for part in ((header + body,) if len(body) < 1 << 16 else (header, body)):
            view = memoryview(part)
            while view:
                try:
                    view = view[self.sock.send(view):]
                except BlockingIOError:
                    self._wait(select.POLLOUT, deadline)
                except OSError as exc:
                    raise _Died() from exc

    def recv(self, timeout: float, kinds: tuple[bytes, ...], max_size: int) -> tuple[bytes, bytes]:
        """One frame; a frame over max_size is read and dropped, then reported as _Malformed."""
        deadline = time.monotonic() + timeout
        kind, size = FRAME.unpack(self._read(FRAME.size, deadline))
        if kind not in kinds:
            raise _Malformed(f"unexpected frame {kind!r}")
        if size > max_size:
            self._discard(size, deadline)
            raise _Malformed(f"{size} bytes")
        return kind, self._read(size, deadline)

    def _read(self, size: int, deadline: float) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            try:
                n = self.sock.recv_into(view[got:])
            except BlockingIOError:
                self._wait(select.POLLIN, deadline)
                continue
            except OSError as exc:
                raise _Died() from exc
            if n == 0:
                raise _Died()
            got += n
        return bytes(buffer)

    def _discard(self, size: int, deadline: float) -> None:
        while size > 0:
            size -= len(self._read(min(size, 1 << 20), deadline))

    def _wait(self, event: int, deadline: float) -> None:
        """Until the socket is ready for `event`; _Died if the process ends first, _Timeout at the deadline."""
        poller = select.poll()
        poller.register(self.sock, event)
        poller.register(self.pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            ready = dict(poller.poll(min(remaining, 1.0) * 1000))
            if ready.get(self.sock.fileno(), 0) & (event | select.POLLHUP | select.POLLERR):
                return
            if self.pidfd in ready:
                raise _Died()

    # --- process ----------------------------------------------------------------------
    def alive(self) -> bool:
        return not select.select([self.pidfd], [], [], 0)[0]

    def signal_group(self, signum: int) -> None:
        """Signal the child and everything it started (its own process group), like a kernel interrupt; the
        child alone when its group cannot be signalled (before its setsid). Once only: a second SIGINT would
        break into the child's handling of the first."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            try:
                signal.pidfd_send_signal(self.pidfd, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        self.signal_group(signal.SIGKILL)
        select.select([self.pidfd], [], [], 2.0)  # let it go before its folder is removed
        self.sock.close()
        os.close(self.pidfd)
        if self.lease is not None:
            self.lease.release()  # every process of the run's uid and cgroup ends here
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _Zygote:
    """The pre-imported parent process; it only forks, and never runs student code."""

    def __init__(self, env: dict[str, str], python: Path | str = sys.executable) -> None:
        self.env = dict(env)
        self.home = Path(tempfile.mkdtemp(prefix="autograder-zygote-"))
        (self.home / "tmp").mkdir()
        self.cage_root = self.home / "cage"  # each caged child mounts its own root here, in its own namespace
        self.cage_root.mkdir()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = ours
        self.log = self.home / "zygote.log"
        zygote_env = {**student_env(env, self.home), "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
        try:
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [str(python), "-c", _BOOT, str(WORKER_FILE), str(AGENT_FILE), str(theirs.fileno())],
                    cwd=self.home, env=zygote_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    pass_fds=(theirs.fileno(),), start_new_session=True,
                )
        except OSError:
            ours.close()
            shutil.rmtree(self.home, ignore_errors=True)
            raise
        finally:
            theirs.close()
        try:
            self.info = self._receive(ZYGOTE_READY_TIMEOUT)[0]
            if self.info.get("cuda_initialized"):
                raise RuntimeError("the warm runner's libraries initialised CUDA while importing, so its processes "
                                   "cannot fork; use --runner kernel")
        except BaseException:
            self.close()
            raise

    def _receive(self, timeout: float) -> tuple[dict, list[int]]:
        if not select.select([self.sock], [], [], timeout)[0]:
            raise RuntimeError(f"the warm runner's zygote did not answer within {timeout:.0f} s{self.log_tail()}")
        message, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 1)
        if not message:
            raise RuntimeError(f"the warm runner's zygote exited{self.log_tail()}")
        return json.loads(message), fds

    def log_tail(self) -> str:
        try:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            return ""
        return ": " + " / ".join(tail) if tail else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fork(self, env: dict[str, str], readable: tuple[Path, ...], sandbox: Sandbox | None,
             gpu_memory_bytes: int | None, memory_bytes: int | None) -> _Child:
        lease = None
        if sandbox is None:
            workdir = Path(tempfile.mkdtemp(prefix="autograder-run-"))
            (workdir / "tmp").mkdir()
        else:  # only inside the cage, on its private /tmp
            workdir = Path("/tmp") / f"autograder-run-{os.urandom(6).hex()}"
        ours, theirs = socket.socketpair()
        try:
            order = {"op": "fork", "workdir": str(workdir), "env": student_env(env, workdir),
                     "gpu_memory_bytes": gpu_memory_bytes}
            if sandbox is not None:
                lease = sandbox.lease(memory_bytes)
                order["cage"] = sandbox.cage_order(sandbox.mounts(workdir, list(readable)), lease, self.cage_root)
                order["thread_stack_bytes"] = sandbox.limits.thread_stack_bytes
            socket.send_fds(self.sock, [json.dumps(order).encode()], [theirs.fileno()])
            reply, fds = self._receive(30.0)
            if len(fds) != 1:
                raise RuntimeError("the warm runner's zygote did not fork")
            return _Child(int(reply["pid"]), fds[0], ours, workdir, lease)
        except BaseException:
            ours.close()
            if lease is not None:
                lease.release()
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            theirs.close()

    def close(self) -> None:
        self.sock.close()  # the zygote leaves when its control socket closes; its children die with it
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass(frozen=True)
class _Recipe:
    """What a prepared child was made for: a spare fits the next job only if the job needs the same."""

    env: tuple[tuple[str, str], ...]
    readable: tuple[Path, ...]
    gpu_memory_bytes: int | None
    memory_bytes: int | None

    @classmethod
    def of(cls, job: RunJob) -> _Recipe:
        return cls(tuple(sorted(job.env.items())), tuple(job.readable), job.limits.gpu_memory_bytes,
                   job.limits.memory_bytes)


class _Pool:
    """The zygote and the next child, shared by a runner and its finalizer (not by the runner itself).

    Its chores (forking and caging the next child, ending a finished run: waiting for its processes to
    go, removing its cgroup and folder) run on one thread of their own, in order, off the grading path:
    a submission neither waits for the next one's process nor for the last one's teardown."""

    def __init__(self, sandbox: Sandbox | None) -> None:
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.zygote: _Zygote | None = None
        self.spare: tuple[_Recipe, _Child] | None = None
        self.closed = False
        self._chores_name = f"autograder-runner-{id(self):x}"
        self._chores = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._chores_name)

    def later(self, chore: Callable[..., None], *args: object) -> None:
        """Run ``chore(*args)`` on the chores thread, after the chores before it (here and now once closed)."""
        try:
            self._chores.submit(chore, *args)
        except RuntimeError:  # the pool was closed: nothing runs on its thread any more
            chore(*args)

    def take(self, recipe: _Recipe) -> _Child:
        """A child for this recipe: the spare forked during the last submission, or a new one."""
        with self.lock:
            spare, self.spare = self.spare, None
            if spare is not None and spare[0] == recipe and self._zygote_fits(recipe) and spare[1].alive():
                return spare[1]
            if spare is not None:
                spare[1].close()
            return self._fork(recipe)

    def prefork(self, recipe: _Recipe) -> None:
        with self.lock:
            if self.spare is None and not self.closed:
                try:
                    self.spare = (recipe, self._fork(recipe))
                except (RuntimeError, OSError):
                    pass  # take() tries again, and reports the error if there is one

    def _zygote_fits(self, recipe: _Recipe) -> bool:
        return self.zygote is not None and self.zygote.env == dict(recipe.env) and self.zygote.alive()

    def _fork(self, recipe: _Recipe) -> _Child:
        if self.zygote is not None and not self._zygote_fits(recipe):
            self.zygote.close()
            self.zygote = None
        if self.zygote is None:
            self.zygote = self._new_zygote(recipe)
        fork = lambda: self.zygote.fork(dict(recipe.env), recipe.readable, self.sandbox, recipe.gpu_memory_bytes,  # noqa: E731
                                        recipe.memory_bytes)
        try:
            return fork()
        except (RuntimeError, OSError):
            # The zygote may have died meanwhile (only an unconfined child of the same user can kill it): once more.
            self.zygote.close()
            self.zygote = self._new_zygote(recipe)
            return fork()

    def _new_zygote(self, recipe: _Recipe) -> _Zygote:
        return _Zygote(dict(recipe.env), self.sandbox.python if self.sandbox else sys.executable)

    def close(self) -> None:
        with self.lock:
            self.closed = True
        # Wait for the runs still being ended and a fork under way; not on the chores thread itself (a finalizer
        # may run there), which would wait for itself.
        self._chores.shutdown(wait=not threading.current_thread().name.startswith(self._chores_name))
        with self.lock:
            if self.spare is not None:
                self.spare[1].close()
                self.spare = None
            if self.zygote is not None:
                self.zygote.close()
                self.zygote = None


class WarmSession(StudentSession):
    def __init__(self, child: _Child, job: RunJob, sandbox: Sandbox | None,
                 end_later: Callable[[Callable[[], None]], None]) -> None:
        self.limits = job.limits
        self.sandbox = sandbox
        self._child = child
        self._end_later = end_later
        self._clock = RunClock(run_meter(child.lease, child.pid))
        self.cpu_time_limits = self._clock.counts_cpu
        self._stuck: Text | None = None
        self.cells = []
        try:
            self.cells = self.run_cells(job.notebook)
            if self.sandbox is not None:
                self.limit_breach = classify_limits(self.cells, child.lease.limits)
                if self.died and child.lease is not None:
                    self.limit_breach = child.lease.breach() or self.limit_breach
        except BaseException:
            self.close()
            raise

    def _run_cell(self, record: CellRecord, budget: Budget) -> CellRun:
        reply_size = 8 * self.limits.output_bytes + (1 << 20)  # JSON may escape every character; error lines
        stop_bytes = self.sandbox.limits.output_stop_bytes if self.sandbox else 0
        job = {"source": record.source, "output_bytes": self.limits.output_bytes, "stop_bytes": stop_bytes}
        try:
            self._child.send(CELL, json.dumps(job).encode())
            timed_out = not self._wait_for_reply(budget)
            try:
                if timed_out and not self._interrupt_until_reply():
                    raise _Timeout()
                reply = self._child.recv(SEND_TIMEOUT, (REPLY,), reply_size)
            except _Timeout:  # the cell ignores interrupts (or stopped halfway through its reply)
                self._child.signal_group(signal.SIGKILL)
                return CellRun("timeout", answers=False)
        except (_Died, _Malformed):
            self._child.signal_group(signal.SIGKILL)
            return CellRun("died", error=DIED)
        result = _cell_result(reply[1])
        if timed_out:
            return CellRun("timeout", result["output"])
        if result["status"] == "output_limit":
            return CellRun("output_limit", result["output"])  # classify_limits words it
        if result["status"] == "error":
            return CellRun("error", result["output"], result["error"])
        return CellRun("ok", result["output"])

    def _wait_for_reply(self, budget: Budget) -> bool:
        """Until the child starts replying (True) or the budget is spent (False)."""
        while not self._child.ready(min(POLL_SECONDS, max(0.0, budget.remaining_wall()))):
            if budget.remaining() <= 0:
                return False
        return True

    def _interrupt_until_reply(self) -> bool:
        """Interrupt the child, again every second (one that lands just before its code starts is ignored),
        until it starts replying (True) or INTERRUPT_GRACE of the run's time is spent (False)."""
        grace = self._clock.budget(INTERRUPT_GRACE)
        while grace.remaining() > 0:
            self._child.signal_group(signal.SIGINT)
            if self._wait_for_reply(self._clock.budget(min(REINTERRUPT_SECONDS, grace.remaining()))):
                return True
        return False

    def request(self, payload: bytes, timeout: float) -> bytes:
        if self.died:
            raise SessionError(L_("the notebook's process is no longer running"))
        if self._stuck:
            raise SessionError(self._stuck)
        limit = self.limits.answer_bytes
        try:
            self._child.send(REQUEST, payload)
            try:
                if not self._wait_for_reply(self._clock.budget(timeout)):
                    raise _Timeout()
                return self._child.recv(SEND_TIMEOUT, (ANSWER,), limit)[1]
            except _Timeout:
                try:
                    if not self._interrupt_until_reply():
                        raise _Timeout()
                    self._child.recv(SEND_TIMEOUT, (ANSWER,), limit)  # the interrupted answer: dropped
                except _Timeout:
                    self._child.signal_group(signal.SIGKILL)
                    self._stuck = L_("it stopped answering after a call ran past {seconds} s").format(
                        seconds=f"{timeout:.0f}")
                except _Malformed:
                    pass
                raise SessionError(self._clock.did_not_finish(timeout)) from None
        except _Malformed:
            raise SessionError(L_("the answer is larger than {limit} bytes").format(limit=limit)) from None
        except _Died:
            self.died = True
            raise SessionError(L_("the notebook's process died")) from None

    def close(self) -> None:
        """Kill every process of the run now; waiting for them to go and removing what the run left (its cgroup,
        uid, folder) is the runner's chore (``_Pool.later``). A run's processes all die with the group: a caged
        run's init is in it, and the kernel kills its whole pid namespace when init dies."""
        self._child.signal_group(signal.SIGKILL)
        self._end_later(self._child.close)


def _cell_result(body: bytes) -> dict:
    """The child's report of one cell, with only the fields and types the grader expects."""
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    status = data.get("status") if data.get("status") in ("ok", "error", "output_limit") else "error"
    output = data.get("output") if isinstance(data.get("output"), str) else ""
    error = data.get("error") if isinstance(data.get("error"), str) else "the cell's report could not be read"
    return {"status": status, "output": output, "error": error[:2000]}


class WarmRunner(Runner):
    """Fresh process per submission, forked from a pre-imported zygote kept for the grader's lifetime;
    with a sandbox, each child confines itself before any student code runs (``confine.py``)."""

    name = "warm"

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.confined = sandbox is not None
        self._pool = _Pool(sandbox)
        # Closed with the runner, and at exit at the latest.
        self._finalizer = weakref.finalize(self, self._pool.close)

    def prepare(self, job: RunJob) -> None:
        """Start the zygote and fork the first child in the background; start() waits for them."""
        self._pool.later(self._pool.prefork, _Recipe.of(job))

    def start(self, job: RunJob) -> StudentSession:
        if self.sandbox is not None:
            self.sandbox.require_reachable(list(job.readable), whole_tree=True)
        recipe = _Recipe.of(job)
        child = self._ready_child(recipe)
        self._pool.later(self._pool.prefork, recipe)  # the next submission's process gets ready while this one runs
        return WarmSession(child, job, self.sandbox, self._pool.later)

    def _ready_child(self, recipe: _Recipe) -> _Child:
        for _ in range(2):
            child = self._pool.take(recipe)
            try:
                ready = json.loads(child.recv(CHILD_READY_TIMEOUT, (REPLY,), 1 << 16)[1])
                if isinstance(ready, dict) and ready.get("ready"):
                    return child
            except (_Died, _Timeout, _Malformed, ValueError):
                pass
            # The prepared child was killed meanwhile (e.g. by the previous submission): fork another.
            child.close()
        zygote = self._pool.zygote
        raise RuntimeError("the warm runner could not prepare a process for the notebook"
                           f"{zygote.log_tail() if zygote else ''}")

    @property
    def zygote_info(self) -> dict | None:
        """What the zygote reported when it became ready (pid, seconds spent importing and warming up)."""
        zygote = self._pool.zygote
        return dict(zygote.info) if zygote else None

    def close(self) -> None:
        """End the zygote and the prepared child (also done when the runner is collected, or at exit)."""
        self._finalizer()
