"""How a student process is confined: one policy, applied either by bubblewrap or in a forked process.

Every run, whichever way its notebook executes, gets the same cage:

- its own unprivileged user: as root, a uid reserved for this run (a file lock holds it), so
  nothing inside maps back to root and RLIMIT_NPROC counts this run alone; as an ordinary user
  (where unprivileged user namespaces are allowed), that user inside a user namespace of its own;
  no capabilities, ``no_new_privs``, and no further user namespaces;
- no network (an empty network namespace), its own pid, ipc, uts and mount namespaces; every
  process of the run ends with it (the pid namespace's init ends when the notebook's process does);
- a read-only system (``/usr`` and a few files of ``/etc``), the Python environment read-only, the
  model and dataset stand-ins read-only, a small private ``/tmp`` holding its home and working
  folder; home directories, the repository, hidden checks, rubrics, solutions, other submissions
  and the gradebook are simply not mounted;
- limits: memory (RLIMIT_DATA per process; a cgroup memory limit for the whole run where one can be
  made), processes and threads (cgroup ``pids.max``, else RLIMIT_NPROC of the run's uid), file size,
  disk (the size of the private tmpfs), open files, printed output (the cell is stopped past a hard
  cap); a CPU share of its own (cgroup ``cpu.weight`` / ``cpu.shares``), and time limits counted in
  the CPU time the run used (``Lease.cpu_seconds``; its process tree where the cage has no cgroup
  or uid to count), so a busy neighbour never times it out.

``Sandbox.mounts`` is the view of the filesystem as a list of operations; ``bwrap_command`` turns
it into a bubblewrap command line (the fresh-kernel runner execs one), ``cage_order`` into the
instructions the warm runner's forked child carries out itself (``cage.enter_cage``). This module is the
policy and each run's resources (its uid, cgroup and limits: ``Lease``); it imports nothing of execution.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from ..i18n import L_, Text

GiB = 1 << 30
MiB = 1 << 20
CAGE_FILE = Path(__file__).with_name("cage.py")  # loaded by path in the process it confines
PYTHON_SETTING = "AUTOGRADER_SANDBOX_PYTHON"  # the interpreter notebooks run with; default: the grader's own
UID_BASE = 2_000_000_000  # run uids: far above any account or container uid range
UID_SLOTS = 1000
# Files of /etc a Python process reads; the rest of /etc (and everything it may hold) stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "passwd", "group", "nsswitch.conf",
             "localtime", "hosts", "mime.types", "ssl", "fonts")


class SandboxUnavailable(UserError):
    """The sandbox cannot run here; the message says what is wrong and what to do."""


PROBE_TIMED_OUT = L_("The sandbox's test run did not finish within 120 s; check the machine's load, or pass "
                     "--no-sandbox.")


@dataclass(frozen=True)
class SandboxLimits:
    # RLIMIT_DATA per process (a forked run: on top of what the pre-imported libraries hold); with a cgroup,
    # the run's memory limit is this + disk_bytes.
    memory_bytes: int = 8 * GiB
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


def _kill_uid(uid: int) -> None:
    """SIGKILL every process running as `uid` (a run uid: nothing else ever uses it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue


CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_NAME = "autograder-sandbox"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def _cgroup_parents() -> dict[str, Path]:
    """Per controller, a cgroup folder where per-run groups can be made (cgroup v2, else v1); {} if none."""
    try:
        controllers = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    except OSError:
        controllers = None
    if controllers is not None:  # v2: one tree
        wanted = {"memory", "pids", "cpu"} & controllers
        if not {"memory", "pids"} <= wanted:
            return {}
        enable = " ".join(f"+{c}" for c in sorted(wanted))
        parent = CGROUP_ROOT / CGROUP_NAME
        try:
            if not wanted <= set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split()):
                (CGROUP_ROOT / "cgroup.subtree_control").write_text(enable)
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text(enable)
        except OSError:  # read-only, not delegated, or processes in the way
            return {}
        return {c: parent for c in (*wanted, "cpuacct")} if "cpu" in wanted else dict.fromkeys(wanted, parent)
    parents = {}
    for controller in V1_CONTROLLERS:  # v1: one tree per controller
        tree = CGROUP_ROOT / controller
        if (tree / "cgroup.procs").is_file():
            try:
                (tree / CGROUP_NAME).mkdir(exist_ok=True)
                parents[controller] = tree / CGROUP_NAME
            except OSError:
                continue
    return parents if {"memory", "pids"} <= set(parents) else {}


class _RunGroup:
    """The cgroup(s) of one run: its memory, process and CPU limits, its CPU clock, and its kill switch."""

    def __init__(self, parents: dict[str, Path], name: str, limits: SandboxLimits) -> None:
        self.folders = {c: p / name for c, p in parents.items()}
        self.v2 = (CGROUP_ROOT / "cgroup.controllers").is_file()
        for folder in dict.fromkeys(self.folders.values()):
            if folder.exists():
                self._kill(folder)
                folder.rmdir()
            folder.mkdir()
        memory, pids = self.folders["memory"], self.folders["pids"]
        run_memory = str(limits.memory_bytes + limits.disk_bytes)
        if self.v2:
            self._write(memory / "memory.max", run_memory)
            self._write(memory / "memory.swap.max", "0", optional=True)
        else:
            self._write(memory / "memory.limit_in_bytes", run_memory)
            self._write(memory / "memory.memsw.limit_in_bytes", run_memory, optional=True)
        self._write(pids / "pids.max", str(limits.processes))
        if "cpu" in self.folders:  # the same share for every run, however many processes it starts
            self._write(self.folders["cpu"] / ("cpu.weight" if self.v2 else "cpu.shares"),
                        "100" if self.v2 else "1024", optional=True)
        self._cpu_clock = self._open_cpu_clock()

    @staticmethod
    def _write(path: Path, value: str, optional: bool = False) -> None:
        try:
            path.write_text(value)
        except OSError:
            if not optional:
                raise

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to, to join the run."""
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.folders.values())]

    def _open_cpu_clock(self) -> int | None:
        """The group's CPU counter, kept open: the runner reads it at every cell and call, and a pread of an open
        descriptor costs a twentieth of opening the file each time."""
        if self.v2 and "cpu" in self.folders:
            path = self.folders["cpu"] / "cpu.stat"
        elif not self.v2 and "cpuacct" in self.folders:
            path = self.folders["cpuacct"] / "cpuacct.usage"
        else:
            return None
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def cpu_seconds(self) -> float | None:
        if self._cpu_clock is None:
            return None
        try:
            text = os.pread(self._cpu_clock, 4096, 0).decode()
            if self.v2:  # cpu.stat: "usage_usec N" among other lines
                return int(dict(line.split() for line in text.splitlines())["usage_usec"]) / 1e6
            return int(text) / 1e9  # cpuacct.usage, in nanoseconds
        except (OSError, ValueError, KeyError):
            return None

    def breach(self) -> Text | None:
        """Which limit was hit, if any, as words for the student."""
        memory_events = "memory.events" if self.v2 else "memory.oom_control"
        try:
            memory = dict(line.split() for line in (self.folders["memory"] / memory_events).read_text().splitlines())
            pids = dict(line.split() for line in (self.folders["pids"] / "pids.events").read_text().splitlines())
        except (OSError, ValueError):
            return None
        if int(memory.get("oom_kill", 0)):
            return L_("it ran out of memory")
        if int(pids.get("max", 0)):
            return L_("it started too many processes or threads")
        return None

    def _kill(self, folder: Path) -> None:
        if self.v2:
            self._write(folder / "cgroup.kill", "1", optional=True)
            return
        for _ in range(50):  # v1 has no kill switch: until the group is empty (new forks are caught next round)
            try:
                pids = (folder / "cgroup.procs").read_text().split()
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass

    def remove(self) -> None:
        if self._cpu_clock is not None:
            os.close(self._cpu_clock)
            self._cpu_clock = None
        for folder in dict.fromkeys(self.folders.values()):
            self._kill(folder)
            pause = 0.001
            while True:  # its last processes are still exiting: usually a few ms, so wait in short, growing steps
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if pause > 0.5:  # about 1 s in all: leave it (the next run of this slot removes it first)
                        break
                    time.sleep(pause)
                    pause *= 2


def _uid_cpu_seconds(uid: int) -> float:
    """CPU time of every process running as `uid`, with that of its children it has waited for."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / tick


class Lease:
    """One run's identity: a uid no other run uses meanwhile (held by a file lock), its cgroup, and its limits."""

    def __init__(self, sandbox: Sandbox, limits: SandboxLimits) -> None:
        self.limits = limits
        self.group: _RunGroup | None = None
        self._lock = None
        self.as_root = sandbox.as_root
        if not sandbox.as_root:
            self.uid, self.gid = os.getuid(), os.getgid()
            return
        lock_dir = Path(tempfile.gettempdir()) / "autograder-sandbox-uids"
        lock_dir.mkdir(mode=0o700, exist_ok=True)
        if lock_dir.stat().st_uid != 0 or lock_dir.is_symlink():
            raise SandboxUnavailable(L_("{path} is not root's own folder; remove it and run again.").format(
                path=str(lock_dir)))
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
            raise SandboxUnavailable(L_("All {count} sandbox uids are in use; grade fewer submissions at once.").format(
                count=UID_SLOTS))
        self.gid = self.uid
        _kill_uid(self.uid)  # leftovers of a grader that was killed itself
        if sandbox.cgroup_parents:
            try:
                self.group = _RunGroup(sandbox.cgroup_parents, f"run-{self.uid}", limits)
            except OSError:
                self.group = None

    def cpu_seconds(self) -> float | None:
        """CPU time the run has used so far (None where it cannot be told apart from the grader's)."""
        if self.group is not None:
            used = self.group.cpu_seconds()
            if used is not None:
                return used
        return _uid_cpu_seconds(self.uid) if self.as_root else None

    def breach(self) -> Text | None:
        return self.group.breach() if self.group is not None else None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self._lock is None:
            return
        if self.group is not None:
            self.group.remove()
        _kill_uid(self.uid)
        self._lock.close()
        self._lock = None


class Sandbox:
    """The cage of every run: its limits, its view of the filesystem, and the up-front checks.

    Constructing one checks that this machine can confine a forked process with this interpreter
    and raises SandboxUnavailable with one sentence (what is wrong, what to do) if it cannot;
    ``require_bwrap`` checks the same for the bubblewrap command line of the fresh-kernel runner.
    """

    def __init__(self, python: Path | str | None = None, limits: SandboxLimits | None = None) -> None:
        self.python = Path(python or os.environ.get(PYTHON_SETTING) or sys.executable).absolute()
        self.limits = limits or SandboxLimits()
        self.as_root = os.geteuid() == 0
        self.roots = self._interpreter_roots()
        self.require_reachable([self.python, *self.roots, Path(tempfile.gettempdir())])
        self.cgroup_parents = _cgroup_parents() if self.as_root else {}
        self._bwrap_checked = False
        self._probe_fork_cage()

    def lease(self, memory_bytes: int | None = None) -> Lease:
        """A run's identity and limits: the sandbox's, with the exercise's memory limit where it declares one."""
        return Lease(self, replace(self.limits, memory_bytes=memory_bytes) if memory_bytes else self.limits)

    # --- checks ----------------------------------------------------------------------

    def require_reachable(self, paths: list[Path], whole_tree: bool = False) -> None:
        """Refuse, with the reason, if the sandbox's unprivileged user could not open one of `paths`
        (with `whole_tree`, or any file or folder inside them)."""
        for path in paths:
            problem = _reachable_problem(path)
            if problem is None and whole_tree:
                problem = next(filter(None, map(_unreadable, path.rglob("*"))), None)
            if problem:
                raise SandboxUnavailable(L_(
                    "The sandbox's unprivileged user cannot open {path} ({problem}): keep the grading Python "
                    "environment, the model cache and the temporary folder in directories every user may enter "
                    "(e.g. a venv made from /usr/bin/python3 outside /root, or set {setting} to one), or pass "
                    "--no-sandbox.").format(path=str(path), problem=problem, setting=PYTHON_SETTING))

    def _interpreter_roots(self) -> list[Path]:
        """The folders the interpreter needs: its environment, the installation it was made from, and package
        folders a .pth file adds (only folders named site-packages or dist-packages: never a project's own tree)."""
        code = ("import json, sys; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]"
                " + [p for p in sys.path if p.endswith(('/site-packages', '/dist-packages'))]))")
        try:
            out = subprocess.run([str(self.python), "-I", "-c", code], capture_output=True, text=True, timeout=60,
                                 check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(L_("The sandbox's Python {python} does not run ({problem}); set {setting} to a "
                                        "Python with ipykernel installed, or pass --no-sandbox.").format(
                                            python=str(self.python), problem=str(exc), setting=PYTHON_SETTING)) from None
        roots = list(dict.fromkeys(Path(p) for p in json.loads(out)))
        return [r for r in roots if not any(r != o and r.is_relative_to(o) for o in roots)]  # no folder twice

    def _probe_fork_cage(self) -> None:
        """Enter the cage in a throwaway process exactly as a forked run does, and import ipykernel there."""
        probe = ("import importlib.util, json, os, sys\n"
                 "spec = importlib.util.spec_from_file_location('cage', sys.argv[1])\n"
                 "cage = importlib.util.module_from_spec(spec); spec.loader.exec_module(cage)\n"
                 "report = int(sys.argv[3])\n"
                 "cage.enter_cage(json.loads(sys.argv[2]), keep=report)\n"
                 "try:\n"
                 "    import ipykernel.compiler\n"
                 "    os.write(report, b'ok')\n"
                 "except BaseException as exc:\n"
                 "    os.write(report, repr(exc).encode())\n")
        with self.lease() as lease:
            cage = self.cage_order(self.mounts(Path("/tmp/autograder-probe"), []), lease,
                                   root=Path(tempfile.mkdtemp(prefix="autograder-probe-")))
            read, write = os.pipe()
            try:
                done = subprocess.run([str(self.python), "-I", "-c", probe, str(CAGE_FILE), json.dumps(cage),
                                       str(write)], pass_fds=(write,), capture_output=True, text=True, timeout=120,
                                      env=self.launcher_env())
                os.close(write)
                write = -1
                with os.fdopen(read, "rb") as pipe:
                    said = pipe.read().decode(errors="replace")
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable(PROBE_TIMED_OUT) from None
            finally:
                if write >= 0:
                    os.close(write)
                shutil.rmtree(cage["root"], ignore_errors=True)
        if said == "ok":
            return
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else said or f"exit status {done.returncode}"
        if not said:
            raise SandboxUnavailable(L_("This machine does not let the grader make the sandbox's namespaces "
                                        "({problem}): run as root, or allow unprivileged user namespaces "
                                        "(user.max_user_namespaces > 0; in a container, a seccomp/AppArmor profile "
                                        "that permits them), or pass --no-sandbox.").format(problem=last))
        raise SandboxUnavailable(L_("The Python {python} cannot load its libraries inside the sandbox ({problem}): "
                                    "install ipykernel in that environment and make it readable to all users, or set "
                                    "{setting} to one that has it, or pass --no-sandbox.").format(
                                        python=str(self.python), problem=last, setting=PYTHON_SETTING))

    def require_bwrap(self) -> None:
        """Refuse, with what to install, where bubblewrap cannot start the fresh-kernel runner's cage."""
        if self._bwrap_checked:
            return
        tools = ["bwrap", "prlimit"] + (["setpriv"] if self.as_root else [])
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            package = "bubblewrap" if "bwrap" in missing else "util-linux"
            raise SandboxUnavailable(L_("The fresh-kernel runner's sandbox needs {tools}, which this machine lacks: "
                                        "install the Debian package {package} (`make system-deps`), or use the "
                                        "default runner (--runner warm).").format(tools=" and ".join(missing),
                                                                                  package=package))
        with self.lease() as lease, tempfile.TemporaryDirectory(prefix="autograder-probe-") as scratch:
            channel = Path(scratch) / ".grader"
            channel.mkdir()
            os.chmod(scratch, 0o711)
            if self.as_root:
                os.chown(channel, lease.uid, lease.gid)
            cmd = self.bwrap_command([str(self.python), "-c", "import ipykernel.kernelapp"],
                                     self.mounts(Path(scratch), [], channel=channel), {}, lease)
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=self.launcher_env())
            except subprocess.TimeoutExpired:
                raise SandboxUnavailable(PROBE_TIMED_OUT) from None
        if done.returncode == 0:
            self._bwrap_checked = True
            return
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit status {done.returncode}"
        raise SandboxUnavailable(L_("bubblewrap cannot create the sandbox on this machine ({problem}): allow "
                                    "unprivileged user namespaces (user.max_user_namespaces > 0; in a container, a "
                                    "seccomp/AppArmor profile that permits them), or use the default runner (--runner "
                                    "warm).").format(problem=last))

    # --- the view of the filesystem ----------------------------------------------------

    def mounts(self, home: Path, readable: list[Path], channel: Path | None = None) -> list[tuple]:
        """The run's filesystem, in mount order. Operations: ("ro", src, dst) read-only bind, ("bind", src, dst)
        writable bind, ("dev", src, dst) device bind, ("tmpfs", size, mode, dst), ("dir", dst) a folder the run
        owns, ("symlink", target, dst), ("proc", dst), ("devfs", dst) a minimal /dev."""
        disk = self.limits.disk_bytes
        plan: list[tuple] = [("ro", "/usr", "/usr")]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            top = Path("/") / name
            if top.is_symlink():
                plan.append(("symlink", os.readlink(top), str(top)))
            elif top.is_dir():
                plan.append(("ro", str(top), str(top)))
        plan += [("ro", f"/etc/{name}", f"/etc/{name}") for name in ETC_FILES]
        plan += [("proc", "/proc"), ("devfs", "/dev"), ("tmpfs", disk, 0o1777, "/dev/shm")]
        plan += self._gpu_mounts()
        plan += [("tmpfs", disk, 0o1777, "/tmp"), ("dir", str(home)), ("dir", str(home / "tmp"))]
        if channel is not None:
            plan.append(("bind", str(channel), str(channel)))
        for root in self.roots:
            plan += [("ro", str(path), str(path)) for path in dict.fromkeys([root, root.resolve()])]
        plan += self._masks()
        plan += [("ro", str(path), str(path)) for path in readable]
        return plan

    @staticmethod
    def _gpu_mounts() -> list[tuple]:
        """What CUDA needs: the NVIDIA device nodes and /sys (/proc/driver/nvidia is in every /proc)."""
        nodes = sorted(Path("/dev").glob("nvidia*")) + sorted(Path("/dev/nvidia-caps").glob("*"))
        nodes = [node for node in nodes if not node.is_dir()]
        if not nodes:
            return []
        return [("dev", str(node), str(node)) for node in nodes] + [("ro", "/sys", "/sys")]

    def _masks(self) -> list[tuple]:
        """An empty folder over the grader's package where a non-editable install puts it inside the environment."""
        package = Path(__file__).resolve().parents[1]
        covered = any(package.is_relative_to(root.resolve()) for root in self.roots)
        return [("tmpfs", 4096, 0o755, str(package))] if covered else []

    # --- the two ways of applying it ---------------------------------------------------

    @staticmethod
    def launcher_env() -> dict[str, str]:
        """Environment of the launcher itself (the student process gets the run's own)."""
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

    def cage_order(self, mounts: list[tuple], lease: Lease, root: Path) -> dict:
        """What a forked child needs to confine itself (see cage.enter_cage); `root` is an empty folder."""
        lim = lease.limits
        return {
            "root": str(root),
            "mounts": mounts,
            "uid": lease.uid,
            "gid": lease.gid,
            "cgroup_procs": lease.group.procs_files if lease.group else [],
            "rlimits": {"data": lim.memory_bytes, "fsize": lim.file_bytes, "nofile": lim.open_files,
                        "nproc": lim.processes, "core": 0},
        }

    def bwrap_command(self, argv: list[str], mounts: list[tuple], env: dict[str, str], lease: Lease) -> list[str]:
        """The launch command running `argv` caged by bubblewrap, as the same policy (see require_bwrap)."""
        lim = lease.limits
        cmd: list[str] = []
        if lease.group is not None:
            # Join the run's cgroup(s), then become the rest of the command line (rlimits hold if joining fails).
            joins = " ".join(f"'{path}'" for path in lease.group.procs_files)
            cmd += ["/bin/sh", "-c", f'for f in {joins}; do echo $$ > "$f"; done 2>/dev/null; exec "$@"', "sh"]
        if self.as_root:
            cmd += ["setpriv", f"--reuid={lease.uid}", f"--regid={lease.gid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all"]
        cmd += ["prlimit", f"--data={lim.memory_bytes}", f"--fsize={lim.file_bytes}", f"--nofile={lim.open_files}",
                f"--nproc={lim.processes}", "--core=0", "--"]
        cmd += ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--hostname", "sandbox", "--clearenv"]
        for name, value in env.items():
            cmd += ["--setenv", name, value]
        for op in mounts:
            kind = op[0]
            if kind == "ro":
                cmd += ["--ro-bind-try", op[1], op[2]]
            elif kind == "bind":
                cmd += ["--bind", op[1], op[2]]
            elif kind == "dev":
                cmd += ["--dev-bind-try", op[1], op[2]]
            elif kind == "tmpfs":
                cmd += ["--perms", f"{op[2]:o}", "--size", str(op[1]), "--tmpfs", op[3]]
            elif kind == "dir":
                cmd += ["--dir", op[1]]
            elif kind == "symlink":
                cmd += ["--symlink", op[1], op[2]]
            elif kind == "proc":
                cmd += ["--proc", op[1]]
            elif kind == "devfs":
                cmd += ["--dev", op[1]]
        cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", mounts_home(mounts), "--", *argv]
        return cmd


def mounts_home(mounts: list[tuple]) -> str:
    """The run's home folder: the first folder the plan makes."""
    return next(op[1] for op in mounts if op[0] == "dir")
