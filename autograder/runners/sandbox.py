"""Sandboxed runner: the kernel runner's notebook execution, with the kernel process caged by bubblewrap.

The student's kernel is started through one command line::

    [sh -c 'join the run's cgroup'] setpriv (a uid of the run's own) prlimit (limits) bwrap (namespaces, mounts) python -m ipykernel_launcher

- its own unprivileged user: root drops to a uid reserved for this run *before* bubblewrap starts,
  so nothing inside maps back to root, and a uid per concurrent run keeps RLIMIT_NPROC per run;
- no network (``--unshare-all``: an empty network namespace), its own pid, ipc and uts namespaces;
  ``--die-with-parent`` and the pid namespace end every process of the run with the kernel;
- a read-only system (``/usr`` and a few files of ``/etc``), the Python environment read-only, the
  model and dataset stand-ins read-only, a small private ``/tmp`` holding its home and working
  directory; home directories, the repository, hidden checks, rubrics, solutions, other
  submissions and the gradebook are simply not mounted;
- limits: memory (RLIMIT_DATA per process; a cgroup v2 ``memory.max`` for the whole run where
  one can be made), processes and threads (cgroup ``pids.max``, else RLIMIT_NPROC of the run's
  uid), file size (RLIMIT_FSIZE), disk (the size of the private tmpfs), open files (RLIMIT_NOFILE),
  printed output (the cell is stopped past a hard cap), and the kernel runner's time limits.

The grader and the kernel share one folder, the run's channel: the kernel's IPC sockets, its
connection file, the agent, and one request and one answer file at a time. Once the kernel
answers, the folder is handed back to root, so the student can read what it is sent and
overwrite its answer file, nothing more.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async, run_sync

from ..errors import UserError
from .base import CellRecord, Runner, RunJob, StudentSession, student_env
from .kernel import KernelSession, _LimitedClient

GiB = 1 << 30
MiB = 1 << 20
PYTHON_SETTING = "AUTOGRADER_SANDBOX_PYTHON"  # the interpreter notebooks run with; default: the grader's own
UID_BASE = 2_000_000_000  # run uids: far above any account or container uid range
UID_SLOTS = 1000
# Files of /etc a Python process reads; the rest of /etc (and everything it may hold) stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "passwd", "group", "nsswitch.conf",
             "localtime", "hosts", "mime.types", "ssl", "fonts")
MEMORY_ERRORS = ("MemoryError", "OutOfMemoryError")


class SandboxUnavailable(UserError):
    """The sandbox cannot run here; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 8 * GiB  # RLIMIT_DATA per process; with a cgroup, memory.max = this + disk_bytes for the run
    processes: int = 1024  # processes *and threads* of the run (cgroup pids.max, else RLIMIT_NPROC)
    file_bytes: int = 1 * GiB  # largest file it may write (at least RunLimits.answer_bytes)
    disk_bytes: int = 2 * GiB  # private /tmp (home, working directory) and /dev/shm, each
    open_files: int = 1024
    output_stop_bytes: int = 20 * MiB  # printed output of one cell past which the cell is stopped
    # Stack of each thread Python's threading module starts. RLIMIT_DATA counts thread stacks, so with the default
    # 8 MiB a thread bomb used up the memory budget before the process limit stopped it, and the session then
    # could not even load the agent to answer (MemoryError): processes x this stays well under memory_bytes.
    thread_stack_bytes: int = 512 * 1024


def _reachable_problem(path: Path) -> str | None:
    """Why a user that is neither owner nor group could not open `path` (None: it can)."""
    for candidate in dict.fromkeys([path, path.resolve()]):
        chain = [*reversed(candidate.parents), candidate]
        for i, part in enumerate(chain):
            try:
                st = part.lstat()
            except OSError:
                return f"{part} does not exist"
            if part.is_symlink():
                continue
            last = i == len(chain) - 1
            need = (0o5 if part.is_dir() else 0o4) if last else 0o1
            if st.st_mode & need != need:
                via = f"it leads to {candidate}, and " if candidate != path else ""
                return f"{via}{part} is mode {st.st_mode & 0o777:o}"
    return None


def _unreadable(path: Path) -> str | None:
    """Why others could not read this file or list this folder (None: they can)."""
    try:
        st = path.lstat()
    except OSError:
        return None  # gone meanwhile
    need = 0o5 if path.is_dir() and not path.is_symlink() else 0o4
    if path.is_symlink() or st.st_mode & need == need:
        return None
    return f"{path} is mode {st.st_mode & 0o777:o}"


def _cgroup_parent() -> Path | None:
    """A cgroup v2 folder where per-run groups with memory and pids limits can be made, if this machine has one."""
    root = Path("/sys/fs/cgroup")
    parent = root / "autograder-sandbox"
    try:
        if not {"memory", "pids"} <= set((root / "cgroup.controllers").read_text().split()):
            return None
        if not {"memory", "pids"} <= set((root / "cgroup.subtree_control").read_text().split()):
            (root / "cgroup.subtree_control").write_text("+memory +pids")
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+memory +pids")
        return parent
    except OSError:  # cgroup v1, read-only, not delegated, or processes in the way: rlimits only
        return None


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as `uid` (a run uid: nothing else ever uses it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue


class _Lease:
    """One run's identity: a uid no other run uses meanwhile (held by a file lock) and its cgroup."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.cgroup: Path | None = None
        self._lock = None
        if not sandbox.as_root:
            self.uid, self.gid = os.getuid(), os.getgid()
            return
        lock_dir = Path(tempfile.gettempdir()) / "autograder-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        if lock_dir.stat().st_uid != 0 or lock_dir.is_symlink():
            raise SandboxUnavailable(f"{lock_dir} is not root's own folder; remove it and run again.")
        for slot in range(UID_SLOTS):
            handle = open(lock_dir / f"{slot}.lock", "w")  # noqa: SIM115 - held for the run's lifetime
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._lock, self.uid = handle, UID_BASE + slot
            break
        else:
            raise SandboxUnavailable(f"All {UID_SLOTS} sandbox uids are in use; grade fewer submissions at once.")
        self.gid = self.uid
        _kill_uid(self.uid)  # leftovers of a grader that was killed itself
        if sandbox.cgroup_parent is not None:
            self.cgroup = self._make_cgroup(sandbox.cgroup_parent / f"run-{self.uid}", sandbox.limits)

    @staticmethod
    def _make_cgroup(path: Path, limits: SandboxLimits) -> Path | None:
        try:
            if path.exists():
                (path / "cgroup.kill").write_text("1")
                path.rmdir()
            path.mkdir()
            (path / "memory.max").write_text(str(limits.memory_bytes + limits.disk_bytes))
            (path / "pids.max").write_text(str(limits.processes))
            if (path / "memory.swap.max").exists():
                (path / "memory.swap.max").write_text("0")
            return path
        except OSError:
            return None

    def breach(self) -> str | None:
        """Which cgroup limit was hit, if any, as words for the student."""
        if self.cgroup is None:
            return None
        try:
            memory = dict(line.split() for line in (self.cgroup / "memory.events").read_text().splitlines())
            pids = dict(line.split() for line in (self.cgroup / "pids.events").read_text().splitlines())
        except (OSError, ValueError):
            return None
        if int(memory.get("oom_kill", 0)):
            return "it ran out of memory"
        if int(pids.get("max", 0)):
            return "it started too many processes or threads"
        return None

    def __enter__(self) -> _Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._lock is None:
            return
        if self.cgroup is not None:
            try:
                (self.cgroup / "cgroup.kill").write_text("1")
            except OSError:
                pass
        _kill_uid(self.uid)
        if self.cgroup is not None:
            try:
                self.cgroup.rmdir()
            except OSError:
                pass
        self._lock.close()
        self._lock = None


class Sandbox:
    """How a student process is caged: the launch command line, its limits, and the up-front check.

    Constructing one checks that the sandbox works on this machine with this interpreter and
    raises SandboxUnavailable with one sentence (what is wrong, what to do) if it does not.
    """

    def __init__(self, python: Path | str | None = None, limits: SandboxLimits | None = None) -> None:
        self.python = Path(python or os.environ.get(PYTHON_SETTING) or sys.executable).absolute()
        self.limits = limits or SandboxLimits()
        self.as_root = os.geteuid() == 0
        tools = ["bwrap", "prlimit"] + (["setpriv"] if self.as_root else [])
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            package = "bubblewrap" if "bwrap" in missing else "util-linux"
            raise SandboxUnavailable(f"The sandbox needs {' and '.join(missing)}, which this machine lacks: install "
                                     f"the Debian package {package} (`make system-deps`), or pass --no-sandbox.")
        self.roots = self._interpreter_roots()
        self.require_reachable([self.python, *self.roots, Path(tempfile.gettempdir())])
        self.cgroup_parent = _cgroup_parent() if self.as_root else None
        self._probe()

    # --- checks ----------------------------------------------------------------------

    def require_reachable(self, paths: list[Path], whole_tree: bool = False) -> None:
        """Refuse, with the reason, if the sandbox's unprivileged user could not open one of `paths`
        (with `whole_tree`, or any file or folder inside them)."""
        for path in paths:
            problem = _reachable_problem(path)
            if problem is None and whole_tree:
                problem = next(filter(None, map(_unreadable, path.rglob("*"))), None)
            if problem:
                raise SandboxUnavailable(
                    f"The sandbox's unprivileged user cannot open {path} ({problem}): keep the grading Python "
                    f"environment, the model cache and the temporary folder in directories every user may enter "
                    f"(e.g. a venv made from /usr/bin/python3 outside /root, or set {PYTHON_SETTING} to one), "
                    "or pass --no-sandbox.")

    def _interpreter_roots(self) -> list[Path]:
        """The folders the interpreter needs (its environment and the installation it was made from)."""
        code = "import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
        try:
            out = subprocess.run([str(self.python), "-I", "-c", code], capture_output=True, text=True, timeout=60,
                                 check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"The sandbox's Python {self.python} does not run ({exc}); set {PYTHON_SETTING} "
                                     "to a Python with ipykernel installed, or pass --no-sandbox.") from None
        return list(dict.fromkeys(Path(p) for p in json.loads(out)))

    def _probe(self) -> None:
        """Start the interpreter inside a throwaway sandbox and import ipykernel, as a run would."""
        with _Lease(self) as lease, tempfile.TemporaryDirectory(prefix="autograder-probe-") as scratch:
            channel = Path(scratch) / ".grader"
            channel.mkdir()
            os.chmod(scratch, 0o711)
            if self.as_root:
                os.chown(channel, lease.uid, lease.gid)
            cmd = self.command([str(self.python), "-c", "import ipykernel.kernelapp"], channel, {}, [], lease)
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=self.launcher_env())
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable("The sandbox's test run did not finish within 120 s; check the machine's "
                                         "load, or pass --no-sandbox.") from None
        if done.returncode == 0:
            return
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        if last.startswith(("bwrap:", "setpriv:", "prlimit:")):
            raise SandboxUnavailable(f"bubblewrap cannot create the sandbox on this machine ({last}): allow "
                                     "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 and "
                                     "user.max_user_namespaces > 0; in a container, a seccomp/AppArmor profile "
                                     "that permits them), or pass --no-sandbox.")
        raise SandboxUnavailable(f"The Python {self.python} cannot start a Jupyter kernel inside the sandbox "
                                 f"({last}): install ipykernel in that environment and make it readable to all "
                                 f"users, or set {PYTHON_SETTING} to one that has it, or pass --no-sandbox.")

    # --- the command line --------------------------------------------------------------

    @staticmethod
    def launcher_env() -> dict[str, str]:
        """Environment of the launcher chain itself (bubblewrap clears it for the student process)."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def command(self, argv: list[str], channel: Path, env: dict[str, str], readable: list[Path],
                lease: _Lease) -> list[str]:
        """The full launch command running `argv` caged, with `channel` as its one shared writable folder."""
        lim = self.limits
        cmd: list[str] = []
        if lease.cgroup is not None:
            # Join the run's cgroup, then become the rest of the command line (rlimits still hold if joining fails).
            cmd += ["/bin/sh", "-c", 'echo $$ 2>/dev/null > "$0"; exec "$@"', str(lease.cgroup / "cgroup.procs")]
        if self.as_root:
            cmd += ["setpriv", f"--reuid={lease.uid}", f"--regid={lease.gid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
        cmd += ["prlimit", f"--data={lim.memory_bytes}", f"--fsize={lim.file_bytes}", f"--nofile={lim.open_files}",
                f"--nproc={lim.processes}", "--core=0", "--"]
        cmd += ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--hostname", "sandbox", "--clearenv"]
        for name, value in env.items():
            cmd += ["--setenv", name, value]
        cmd += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            top = Path("/") / name
            if top.is_symlink():
                cmd += ["--symlink", os.readlink(top), str(top)]
            elif top.is_dir():
                cmd += ["--ro-bind", str(top), str(top)]
        for name in ETC_FILES:
            cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(lim.disk_bytes), "--tmpfs", "/dev/shm"]
        cmd += self._gpu_binds()
        cmd += ["--remount-ro", "/dev", "--size", str(lim.disk_bytes), "--tmpfs", "/tmp"]
        home = channel.parent
        cmd += ["--dir", str(home), "--dir", str(home / "tmp"), "--bind", str(channel), str(channel)]
        for root in self.roots:
            for path in dict.fromkeys([root, root.resolve()]):
                cmd += ["--ro-bind", str(path), str(path)]
        cmd += self._masks()
        for path in readable:
            cmd += ["--ro-bind", str(path), str(path)]
        cmd += ["--remount-ro", "/", "--chdir", str(home), "--", *argv]
        return cmd

    @staticmethod
    def _gpu_binds() -> list[str]:
        """NVIDIA device nodes and /sys, which CUDA needs (untested without a GPU machine)."""
        nodes = sorted(Path("/dev").glob("nvidia*"))
        if not nodes:
            return []
        binds: list[str] = []
        for node in nodes:
            binds += ["--dev-bind", str(node), str(node)]
        return binds + ["--ro-bind", "/sys", "/sys"]

    def _masks(self) -> list[str]:
        """Empty folders over grader code that a non-editable install puts inside the interpreter's environment."""
        package = Path(__file__).resolve().parents[1]
        covered = any(package.is_relative_to(root.resolve()) for root in self.roots)
        return ["--tmpfs", str(package)] if covered else []

    def kernel_spec(self, channel: Path, env: dict[str, str], readable: list[Path], lease: _Lease) -> KernelSpec:
        # ipykernel_launcher's own two lines, after setting the thread stack size (see SandboxLimits).
        launcher = (f"import threading; threading.stack_size({self.limits.thread_stack_bytes}); "
                    "from ipykernel import kernelapp; kernelapp.launch_new_instance()")
        argv = [str(self.python), "-c", launcher, "-f", "{connection_file}"]
        # interrupt by message: a SIGINT to the launcher would end bubblewrap, not interrupt the cell.
        return KernelSpec(argv=self.command(argv, channel, env, readable, lease), display_name="Python 3 (sandbox)",
                          language="python", interrupt_mode="message")


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
        address = f"inproc://iopub-monitor-{id(self)}"
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
            self._monitor.close(linger=0)
            self._monitor = None


def _is_memory_error(error: str | None) -> bool:
    text = error or ""
    return text.split(":")[0] in MEMORY_ERRORS or "can't allocate memory" in text or "not enough memory" in text


class SandboxSession(KernelSession):
    client_class = _FloodStoppingClient

    def __init__(self, job: RunJob, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.readable = [Path(p) for p in job.readable]
        sandbox.require_reachable(self.readable, whole_tree=True)
        self._job_env = job.env
        self.lease = _Lease(sandbox)
        self.limit_breach: str | None = None
        super().__init__(job)  # on failure it calls close(), which releases the lease

    def _owner(self) -> tuple[int, int] | None:
        return (self.lease.uid, self.lease.gid) if self.sandbox.as_root else None

    def _kernel_manager(self) -> AsyncKernelManager:
        os.chmod(self.workdir, 0o711)  # the run's uid may pass through to the channel, not list or write
        if self._owner():
            os.chown(self.channel, *self._owner())
        env = student_env(self._job_env, self.workdir)
        env.update(PATH=f"{self.sandbox.python.parent}:/usr/local/bin:/usr/bin:/bin", USER="student", LOGNAME="student")
        spec = self.sandbox.kernel_spec(self.channel, env, self.readable, self.lease)
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
        limits = self.sandbox.limits
        for record in records:
            reply = self.client.replies.get(record.index, {})
            if record.status == "ok" and reply.get("status") == "error":
                record.status, record.error = "error", f"{reply.get('ename')}: {reply.get('evalue')}"
            if record.index in self.client.flooded and record.status != "died":  # its output was cut off
                record.status = "output_limit"
                record.error = f"printed more than {limits.output_stop_bytes // MiB} MiB; the cell was stopped"
            elif record.status == "error" and _is_memory_error(record.error):
                record.status = "memory"
                record.error = f"ran out of memory (a process may use {limits.memory_bytes / GiB:g} GiB): {record.error}"
            else:
                continue
            self.limit_breach = self.limit_breach or f"{record.label} {record.error}"
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


class SandboxRunner(Runner):
    """Each submission in a fresh kernel inside a bubblewrap sandbox (see the module docstring)."""

    name = "sandbox"
    confined = True

    def __init__(self, python: Path | str | None = None, limits: SandboxLimits | None = None) -> None:
        self.sandbox = Sandbox(python, limits)

    def start(self, job: RunJob) -> StudentSession:
        return SandboxSession(job, self.sandbox)
