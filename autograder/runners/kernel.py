"""Reference runner: a fresh Jupyter kernel per submission, driven by nbclient; with a sandbox, the
kernel is started inside the bubblewrap form of the cage (``confine.py``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from queue import Empty

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async, run_sync

from ..i18n import L_, Text
from .base import (
    AGENT_FILE,
    WIRE_FILE,
    CellRecord,
    CellRun,
    Runner,
    RunJob,
    SessionError,
    StudentSession,
    cell_text_output,
    student_env,
)
from .clock import INTERRUPT_GRACE, REINTERRUPT_SECONDS, Budget, ProcessTree, RunClock, classify_limits, run_meter
from .confine import Lease, Sandbox

TIMEOUT_ENAME = "CellTimeout"
_MONITOR_NUMBERS = itertools.count()


class _LimitedClient(NotebookClient):
    """nbclient with a cap on captured output and a record of which cells timed out."""

    def __init__(self, nb, output_cap: int, **kw) -> None:
        super().__init__(nb, **kw)
        self.output_cap = output_cap
        self.output_used: dict[int, int] = {}
        self.timed_out: set[int] = set()
        self.current_index = -1

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + len(str(content.get("data", "")))
        used = self.output_used.get(cell_index, 0)
        self.output_used[cell_index] = used + size
        if used + size > self.output_cap:
            if used <= self.output_cap:  # first overflow: keep what fits, leave one marker, drop the rest
                kept = str(content.get("text", ""))[: max(0, self.output_cap - used)]
                outs.append(_stream(f"{kept}\n[output truncated: over {self.output_cap} characters]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        self.timed_out.add(self.current_index)
        return await super()._async_handle_timeout(timeout, cell)

    # A cell's limit is on the run's clock (CPU time where it can be measured, so a busy machine never times a
    # student out) and the watcher below is its only interrupter: two interrupters (it and nbclient's own
    # timeout) would interrupt the kernel again while it formats the first one's traceback. nbclient's timeout
    # comes INTERRUPT_GRACE seconds after the watcher's first interrupt, for a kernel that ignores them all.
    cell_budget: Budget | None = None  # set per cell by the session

    async def _watch_limit(self, cell_index: int, budget: Budget) -> None:
        await _sleep_on(budget)
        self.timed_out.add(cell_index)
        while True:  # until the cell ends (this task is cancelled then): an interrupt can be lost
            await self.km.interrupt_kernel()
            await _sleep_on(budget.clock.budget(REINTERRUPT_SECONDS))

    async def async_execute_cell(self, cell, cell_index, *args, **kw):
        budget, self.cell_budget = self.cell_budget, None
        watcher = asyncio.ensure_future(self._watch_limit(cell_index, budget)) if budget else None
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kw)
        finally:
            if watcher is not None:
                watcher.cancel()

    execute_cell = run_sync(async_execute_cell)


async def _sleep_on(budget: Budget) -> None:
    while budget.remaining() > 0:
        await asyncio.sleep(0.2)


def _stream(text: str):
    from nbformat.v4 import new_output

    return new_output("stream", name="stderr", text=text)


def _with_agent(agent_path: Path, statement: str) -> str:
    """Kernel code that runs `statement`, in which ``__autograder_load()`` is the agent module loaded
    by path; it leaves no name behind but what `statement` binds."""
    return (
        "def __autograder_load():\n"
        "    import importlib.util\n"
        f"    spec = importlib.util.spec_from_file_location('autograder_agent', {str(agent_path)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return module\n"
        f"{statement}\n"
        "del __autograder_load\n"
    )


class KernelSession(StudentSession):
    client_class = _LimitedClient

    def __init__(self, job: RunJob) -> None:
        self.limits = job.limits
        self.workdir = Path(tempfile.mkdtemp(prefix="autograder-run-"))
        (self.workdir / "tmp").mkdir()
        self.channel = self.workdir / ".grader"
        self.channel.mkdir()
        for student_side in (AGENT_FILE, WIRE_FILE):  # the agent, and the wire format it loads from beside it
            shutil.copy(student_side, self.channel / student_side.name)
        self._requests = 0
        self._stack = ExitStack()
        self.client = self.client_class(
            job.notebook,
            km=self._kernel_manager(),
            output_cap=job.limits.output_bytes,
            kernel_name="python3",  # whatever kernel the notebook's metadata names
            timeout=int(job.limits.cell_timeout),
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={"ename": TIMEOUT_ENAME, "evalue": "the cell ran past its time limit", "traceback": []},
            shutdown_kernel="immediate",
            # The agent's order_kernel_output captures descriptors 1 and 2 instead (see there).
            extra_arguments=["--IPKernelApp.capture_fd_output=False"],
            resources={"metadata": {"path": str(self.workdir)}},
        )
        try:
            # cleanup_kc: shut the kernel down on close even though we own its manager, not nbclient.
            self._stack.enter_context(self.client.setup_kernel(**self._launch_options(job), cleanup_kc=True))
            self._kernel_started()
            self._clock = RunClock(self._meter())
            self.cpu_time_limits = self._clock.counts_cpu
            agent = self.channel / "agent.py"
            self._execute(_with_agent(agent, "__autograder_load().prepare_kernel()"), self._clock.budget(60))
            self.cells = self._execute_cells()
            if not self.died:
                self._execute(_with_agent(agent, "__autograder_agent = __autograder_load().Agent(globals())"),
                              self._clock.budget(60))
        except BaseException:
            self.close()
            raise

    # Launch hooks: a runner that starts the kernel differently (e.g. inside a sandbox) overrides these.
    def _kernel_manager(self) -> AsyncKernelManager:
        # IPC sockets inside the run's own folder rather than TCP ports on loopback.
        return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(self.channel / "kernel"))

    def _launch_options(self, job: RunJob) -> dict:
        """Keyword arguments for starting the kernel process (its environment, Popen options)."""
        return {"env": student_env(job.env, self.workdir)}

    def _kernel_started(self) -> None:
        """Called once the kernel answers, before any notebook code runs."""

    def _prepare_exchange(self, request: Path, answer: Path) -> None:
        """Called once a request file is written, before the kernel is asked to answer it."""

    def _execute_cells(self) -> list[CellRecord]:
        return self.run_cells(self.client.nb)

    def _run_cell(self, record: CellRecord, budget: Budget) -> CellRun:
        self.client.timeout = int(budget.wall_seconds + INTERRUPT_GRACE) + 1  # past the watcher's interrupts
        self.client.cell_budget = budget
        self.client.current_index = record.index
        try:
            cell = self.client.execute_cell(self.client.nb.cells[record.index], record.index)
        except DeadKernelError:
            return CellRun("died", error="the notebook's process died (out of memory, or it exited)")
        output = cell_text_output(cell.outputs)
        errors = [o for o in cell.outputs if o.get("output_type") == "error"]
        if record.index in self.client.timed_out:
            return CellRun("timeout", output, answers=self._still_responsive())
        if errors:
            return CellRun("error", output, f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}")
        return CellRun("ok", output)

    def _meter(self) -> Lease | ProcessTree:
        """What counts the run's CPU time for its limits: without a cage, the kernel's process tree."""
        return ProcessTree(self.client.km.provisioner.process.pid)

    def _still_responsive(self) -> bool:
        """After an interrupted cell: does the kernel answer again, or does its code ignore interrupts?"""
        try:
            # After a second, interrupted again and again until it answers: the cell's own interrupt may
            # have been lost (ipykernel ignores one that lands outside its handlers).
            self._execute("pass", self._clock.budget(REINTERRUPT_SECONDS))
            return True
        except SessionError:
            return False

    def _execute(self, code: str, budget: Budget) -> tuple[dict, bool]:
        return run_sync(self._async_execute)(code, budget)

    async def _async_execute(self, code: str, budget: Budget) -> tuple[dict, bool]:
        """The kernel's reply to `code`, and whether it had to be interrupted first. Past the budget the
        kernel is interrupted every second of the run's time until it answers, for INTERRUPT_GRACE more."""
        kc = self.client.kc
        if kc is None:
            raise SessionError(L_("the notebook's process is no longer running"))
        msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        grace: Budget | None = None
        pause: Budget | None = None  # until the next interrupt
        while True:
            try:
                msg = await kc.get_shell_msg(timeout=0.2)
                if msg["parent_header"].get("msg_id") == msg_id:
                    return msg["content"], grace is not None
            except Empty:
                if not await kc.is_alive():
                    self.died = True
                    raise SessionError(L_("the notebook's process died")) from None
            # Past the budget's start, the clock is read only while waiting: a quick answer costs one reading.
            if grace is None and budget.remaining() <= 0:
                grace = self._clock.budget(INTERRUPT_GRACE)
            if grace is not None:
                if grace.remaining() <= 0:
                    raise SessionError(L_("it kept running after being interrupted"))
                if pause is None or pause.remaining() <= 0:
                    await self.client.km.interrupt_kernel()
                    pause = self._clock.budget(REINTERRUPT_SECONDS)

    def request(self, payload: bytes, timeout: float) -> bytes:
        if self.died:
            raise SessionError(L_("the notebook's process is no longer running"))
        self._requests += 1
        req = self.channel / f"request-{self._requests}.bin"
        resp = self.channel / f"answer-{self._requests}.bin"
        req.write_bytes(payload)
        self._prepare_exchange(req, resp)
        reply, interrupted = self._execute(f"__autograder_agent.serve_file({str(req)!r}, {str(resp)!r})",
                                           self._clock.budget(timeout))
        try:
            if interrupted:
                raise SessionError(self._clock.did_not_finish(timeout))
            if reply.get("status") != "ok" or not resp.is_file():
                raise SessionError(L_("the notebook's process did not answer"))
            with resp.open("rb") as f:  # read at most the limit: the file may still be growing
                blob = f.read(self.limits.answer_bytes + 1)
            if len(blob) > self.limits.answer_bytes:
                raise SessionError(L_("the answer is larger than {limit} bytes").format(limit=self.limits.answer_bytes))
            return blob
        finally:
            req.unlink(missing_ok=True)
            resp.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class _OneSpec(KernelSpecManager):
    """Whatever kernel a notebook's metadata names, this spec is what starts."""

    def __init__(self, spec: KernelSpec) -> None:
        super().__init__()
        self.spec = spec

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:  # noqa: ARG002
        return self.spec


class _SandboxKernelManager(AsyncKernelManager):
    """Writes the connection file so the run's uid (only) can read it; its clients refuse huge messages."""

    def __init__(self, owner: tuple[int, int] | None, max_message: int, **kw) -> None:
        super().__init__(**kw)
        self._owner = owner
        # A flooding kernel sends whatever it printed in 0.2 s as one message: the grader's sockets
        # drop (disconnect) anything bigger than this instead of reading it into memory.
        self.client_context = zmq.asyncio.Context()
        self.client_context.setsockopt(zmq.MAXMSGSIZE, max_message)

    def write_connection_file(self, **kwargs) -> None:
        super().write_connection_file(**kwargs)
        if self._owner is not None:
            os.chown(self.connection_file, *self._owner)

    def client(self, **kwargs):
        return super().client(context=self.client_context, **kwargs)


class _FloodStoppingClient(_LimitedClient):
    """Stops a cell once its printed output passes a hard cap, or once it sends a message too big to read."""

    stop_bytes = 0  # set by the session before any cell runs

    def __init__(self, nb, **kw) -> None:
        super().__init__(nb, **kw)
        self.replies: dict[int, dict] = {}  # cell index -> the kernel's execute_reply content
        self.flooded: set[int] = set()
        self.iopub_lost = False
        self._monitor: zmq.Socket | None = None

    def watch_iopub(self) -> None:
        """Listen for the grader's output socket being disconnected (what an oversized message does)."""
        # A new address each time: after a flood the old channel's monitor endpoint may still be bound
        # (its socket closes in the background), and binding the same name again fails.
        address = f"inproc://iopub-monitor-{id(self)}-{next(_MONITOR_NUMBERS)}"
        self.kc.iopub_channel.socket.monitor(address, zmq.EVENT_DISCONNECTED)
        self._monitor = zmq.Context.shadow(self.kc.iopub_channel.socket.context.underlying).socket(zmq.PAIR)
        self._monitor.connect(address)

    async def _check_raise_for_error(self, cell, cell_index, exec_reply) -> None:
        # The reply says whether the cell failed even when its error output never arrived (a cut
        # connection, or a kernel too short of memory to format the traceback).
        if exec_reply is not None:
            self.replies[cell_index] = exec_reply.get("content", {})
        await super()._check_raise_for_error(cell, cell_index, exec_reply)

    def output(self, outs, msg, display_id, cell_index):
        kept = super().output(outs, msg, display_id, cell_index)
        if self.output_used.get(cell_index, 0) > self.stop_bytes:
            self._stop(cell_index)
        return kept

    def _stop(self, cell_index: int) -> None:
        if cell_index not in self.flooded:
            self.flooded.add(cell_index)
            asyncio.ensure_future(self.km.interrupt_kernel())

    async def _watch(self, cell_index: int) -> None:
        while self._monitor is not None:
            await asyncio.sleep(0.2)
            if self._monitor.poll(0):
                while self._monitor.poll(0):
                    self._monitor.recv_multipart()
                await asyncio.sleep(0.5)  # a kernel that exits disconnects too: that is not a flood
                if await self.km.is_alive():
                    self.iopub_lost = True
                    self._stop(cell_index)

    async def async_execute_cell(self, cell, cell_index, *args, **kw):
        watcher = asyncio.ensure_future(self._watch(cell_index))
        try:
            cell = await super().async_execute_cell(cell, cell_index, *args, **kw)
            if any(p.get("source") == "ask_exit" for p in self.replies.get(cell_index, {}).get("payload", [])):
                # quit() / exit(): the kernel ends a moment later; say so now rather than mid-checks.
                raise DeadKernelError("the notebook asked its kernel to exit")
            return cell
        finally:
            watcher.cancel()
            if self.iopub_lost:  # zmq does not reconnect after an oversized message: open fresh channels
                self.iopub_lost = False
                self.close_monitor()
                self.kc.stop_channels()
                self.kc = self.km.client()
                self.kc.allow_stdin = False
                await ensure_async(self.kc.start_channels())
                self.watch_iopub()
                await asyncio.sleep(0.5)  # let the new subscription reach the kernel before the next cell

    execute_cell = run_sync(async_execute_cell)

    def close_monitor(self) -> None:
        if self._monitor is not None:
            try:
                self.kc.iopub_channel.socket.disable_monitor()
            except (zmq.ZMQError, AttributeError):
                pass  # the channel is already closed
            self._monitor.close(linger=0)
            self._monitor = None


class ConfinedKernelSession(KernelSession):
    """A fresh kernel started inside the bubblewrap form of the cage (see confine.py).

    The grader and the kernel share one folder, the run's channel: the kernel's IPC sockets, its
    connection file, the agent, and one request and one answer file at a time. Once the kernel
    answers, the folder is handed back to root, so the student can read what it is sent and
    overwrite its answer file, nothing more.
    """

    client_class = _FloodStoppingClient

    def __init__(self, job: RunJob, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.readable = [Path(p) for p in job.readable]
        sandbox.require_reachable(self.readable, whole_tree=True)
        self._job_env = job.env
        self.lease = sandbox.lease(job.limits.memory_bytes)
        self.limit_breach: Text | None = None
        super().__init__(job)  # on failure it calls close(), which releases the lease

    def _owner(self) -> tuple[int, int] | None:
        return (self.lease.uid, self.lease.gid) if self.sandbox.as_root else None

    def _meter(self) -> Lease | ProcessTree:
        return run_meter(self.lease, self._km.provisioner.process.pid)

    def _kernel_manager(self) -> AsyncKernelManager:
        os.chmod(self.workdir, 0o711)  # the run's uid may pass through to the channel, not list or write
        if self._owner():
            os.chown(self.channel, *self._owner())
        env = student_env(self._job_env, self.workdir)
        env.update(PATH=f"{self.sandbox.python.parent}:/usr/local/bin:/usr/bin:/bin", USER="student", LOGNAME="student")
        # ipykernel_launcher's own two lines, after setting the thread stack size (see SandboxLimits).
        launcher = f"import threading; threading.stack_size({self.sandbox.limits.thread_stack_bytes}); "
        if self.limits.gpu_memory_bytes:  # the agent's GPU cap, set before any notebook code runs
            launcher += ("import importlib.util as u; s = u.spec_from_file_location('autograder_agent', "
                         f"{str(self.channel / 'agent.py')!r}); a = u.module_from_spec(s); s.loader.exec_module(a); "
                         f"a.cap_gpu_memory({self.limits.gpu_memory_bytes}); ")
        launcher += "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
        argv = [str(self.sandbox.python), "-c", launcher, "-f", "{connection_file}"]
        mounts = self.sandbox.mounts(self.workdir, self.readable, channel=self.channel)
        # interrupt by message: a SIGINT to the launcher would end bubblewrap, not interrupt the cell.
        spec = KernelSpec(argv=self.sandbox.bwrap_command(argv, mounts, env, self.lease),
                          display_name="Python 3 (sandbox)", language="python", interrupt_mode="message")
        self._km = _SandboxKernelManager(self._owner(), 2 * self.sandbox.limits.output_stop_bytes,
                                         kernel_spec_manager=_OneSpec(spec), kernel_name="python3",
                                         transport="ipc", ip=str(self.channel / "kernel"),
                                         connection_file=str(self.channel / "kernel.json"))
        return self._km

    def _launch_options(self, job: RunJob) -> dict:
        # The kernel's own stdout/stderr (not the notebook's output) would otherwise reach the grader's.
        return {"env": Sandbox.launcher_env(), "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}

    def _kernel_started(self) -> None:
        self.client.stop_bytes = self.sandbox.limits.output_stop_bytes
        self.client.watch_iopub()
        if self._owner():  # from now on the student may read the channel and overwrite its answer file only
            os.chown(self.channel, 0, self.lease.gid)
            os.chmod(self.channel, 0o750)

    def _execute_cells(self) -> list[CellRecord]:
        records = super()._execute_cells()
        for record in records:
            reply = self.client.replies.get(record.index, {})
            if record.status == "ok" and reply.get("status") == "error":
                record.status, record.error = "error", f"{reply.get('ename')}: {reply.get('evalue')}"
            if record.index in self.client.flooded and record.status != "died":  # its output was cut off
                record.status, record.error = "output_limit", None
        self.limit_breach = classify_limits(records, self.lease.limits)
        if self.died:
            self.limit_breach = self.lease.breach() or self.limit_breach
        return records

    def _prepare_exchange(self, request: Path, answer: Path) -> None:
        if not self._owner():
            return
        os.chown(request, 0, self.lease.gid)
        os.chmod(request, 0o640)
        # Every answer is the same file (one inode, emptied each time): whatever the student keeps
        # open and writes to, the run's files outside its tmpfs stay within one file-size limit.
        inode = self.workdir / "answer.bin"
        if not inode.exists():
            os.close(os.open(inode, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chown(inode, *self._owner())
        os.truncate(inode, 0)
        os.link(inode, answer)

    def close(self) -> None:
        client = getattr(self, "client", None)
        try:
            if client is not None:
                client.close_monitor()
            super().close()
        finally:
            if getattr(self, "_km", None) is not None:
                self._km.client_context.destroy(linger=0)
            self.limit_breach = self.limit_breach or self.lease.breach()
            self.lease.release()



class KernelRunner(Runner):
    """A fresh Jupyter kernel per submission: the simple, reference behaviour (caged by bubblewrap with a sandbox)."""

    name = "kernel"

    def __init__(self, sandbox: Sandbox | None = None) -> None:
        self.sandbox = sandbox
        self.confined = sandbox is not None
        if sandbox is not None:
            sandbox.require_bwrap()

    def start(self, job: RunJob) -> StudentSession:
        if self.sandbox is None:
            return _OwnThread(lambda: KernelSession(job))
        return _OwnThread(lambda: ConfinedKernelSession(job, self.sandbox))


class _OwnThread(StudentSession):
    """A kernel session usable from any thread: nbclient's client works only on the thread (and event loop) that
    started it, so every call is carried to one thread the session owns. The hop is this runner's alone; the
    warm runner's sessions are used directly."""

    def __init__(self, start: Callable[[], KernelSession]) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="autograder-kernel")
        try:
            self._session = self._thread.submit(start).result()
        except BaseException:
            self._thread.shutdown(wait=True)
            raise

    cells = property(lambda self: self._session.cells)
    limits = property(lambda self: self._session.limits)
    notebook_timed_out = property(lambda self: self._session.notebook_timed_out)
    died = property(lambda self: self._session.died)
    limit_breach = property(lambda self: self._session.limit_breach)
    cpu_time_limits = property(lambda self: self._session.cpu_time_limits)

    def request(self, payload: bytes, timeout: float) -> bytes:
        return self._thread.submit(self._session.request, payload, timeout).result()

    def close(self) -> None:
        try:
            self._thread.submit(self._session.close).result()
        finally:
            self._thread.shutdown(wait=True)
