"""Reference runner: a fresh Jupyter kernel per submission, driven by nbclient."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from queue import Empty

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync

from .base import (
    AGENT_FILE,
    CellRecord,
    Runner,
    RunJob,
    SessionError,
    StudentSession,
    cell_text_output,
    student_env,
)

TIMEOUT_ENAME = "CellTimeout"


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


def _stream(text: str):
    from nbformat.v4 import new_output

    return new_output("stream", name="stderr", text=text)


def _bootstrap_code(agent_path: Path) -> str:
    return (
        "def __autograder_load():\n"
        "    import importlib.util\n"
        f"    spec = importlib.util.spec_from_file_location('autograder_agent', {str(agent_path)!r})\n"
        "    module = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(module)\n"
        "    return module.Agent(globals())\n"
        "__autograder_agent = __autograder_load()\n"
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
        shutil.copy(AGENT_FILE, self.channel / "agent.py")
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
            resources={"metadata": {"path": str(self.workdir)}},
        )
        try:
            # cleanup_kc: shut the kernel down on close even though we own its manager, not nbclient.
            self._stack.enter_context(self.client.setup_kernel(**self._launch_options(job), cleanup_kc=True))
            self._kernel_started()
            self.cells = self._execute_cells()
            if not self.died:
                self._execute(_bootstrap_code(self.channel / "agent.py"), timeout=60)
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
        records = CellRecord.for_code_cells(self.client.nb)
        deadline = time.monotonic() + self.limits.notebook_timeout
        for record in records:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.notebook_timed_out = True
                break
            if not record.source.strip():
                record.status = "ok"
                continue
            self.client.timeout = max(1, int(min(self.limits.cell_timeout, remaining)))
            self.client.current_index = record.index
            started = time.monotonic()
            try:
                cell = self.client.execute_cell(self.client.nb.cells[record.index], record.index)
            except DeadKernelError:
                record.status, record.error = "died", "the notebook's process died (out of memory, or it exited)"
                self.died = True
                break
            finally:
                record.duration = time.monotonic() - started
            record.output = cell_text_output(cell.outputs)
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            if record.index in self.client.timed_out:
                record.status = "timeout"
                record.error = f"stopped after {self.client.timeout} s (cell time limit)"
                if remaining <= self.limits.cell_timeout:  # the notebook's budget, not the cell's, ran out
                    self.notebook_timed_out = True
                if not self._still_responsive():
                    self.died = True
                    break
            elif errors:
                record.status = "error"
                record.error = f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}"
            else:
                record.status = "ok"
        return records

    def _still_responsive(self) -> bool:
        """After an interrupted cell: is the kernel idle again, or is the code ignoring interrupts?"""
        try:
            self._execute("pass", timeout=10)
            return True
        except SessionError:
            return False

    def _execute(self, code: str, timeout: float) -> dict:
        return run_sync(self._async_execute)(code, timeout)

    async def _async_execute(self, code: str, timeout: float) -> dict:
        kc = self.client.kc
        if kc is None:
            raise SessionError("the notebook's process is not running")
        msg_id = kc.execute(code, silent=True, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        interrupted = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if interrupted:
                    raise SessionError(f"did not finish within {timeout:.0f} s")
                await self.client.km.interrupt_kernel()
                interrupted, deadline = True, time.monotonic() + 5
                continue
            try:
                msg = await kc.get_shell_msg(timeout=min(remaining, 1.0))
            except Empty:
                if not await kc.is_alive():
                    self.died = True
                    raise SessionError("the notebook's process died") from None
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                if interrupted:
                    raise SessionError(f"did not finish within {timeout:.0f} s")
                return msg["content"]

    def request(self, payload: bytes, timeout: float) -> bytes:
        if self.died:
            raise SessionError("the notebook's process is no longer running")
        self._requests += 1
        req = self.channel / f"request-{self._requests}.bin"
        resp = self.channel / f"answer-{self._requests}.bin"
        req.write_bytes(payload)
        self._prepare_exchange(req, resp)
        reply = self._execute(f"__autograder_agent.serve_file({str(req)!r}, {str(resp)!r})", timeout)
        try:
            if reply.get("status") != "ok" or not resp.is_file():
                raise SessionError("the notebook's process did not answer")
            with resp.open("rb") as f:  # read at most the limit: the file may still be growing
                blob = f.read(self.limits.answer_bytes + 1)
            if len(blob) > self.limits.answer_bytes:
                raise SessionError(f"the answer is larger than {self.limits.answer_bytes} bytes")
            return blob
        finally:
            req.unlink(missing_ok=True)
            resp.unlink(missing_ok=True)

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class KernelRunner(Runner):
    """A fresh Jupyter kernel per submission: the simple, reference behaviour."""

    name = "kernel"

    def start(self, job: RunJob) -> StudentSession:
        return KernelSession(job)
