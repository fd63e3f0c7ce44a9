"""The cage a forked run enters itself: namespaces, the mount view, privileges dropped, resource limits.

The grader computes the plan (``runners/confine.py``: the same plan also becomes a bubblewrap command line for
the fresh-kernel runner); the warm runner's forked child carries it out here, before any student code runs.
Standard library only, and loaded by path (as ``agent.py`` is) by the warm runner's zygote and by the sandbox's
up-front probe: nothing of the grader's package is imported into the process that becomes the student's.

    python cage.py --can-confine      # the Makefile's check, before any long work
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, CAP_LAST = 38, 24, 63
# statvfs flags a remount must keep: the kernel refuses to drop them inside a user namespace.
KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
              (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
RLIMITS = {"data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "core": "RLIMIT_CORE"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda text: text.encode() if text is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def _map_own_ids(uid: int, gid: int) -> None:
    """In a user namespace just made: be the same uid and gid as outside (the one mapping anyone may write)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def enter_cage(cage: dict, keep: int) -> int:
    """Confine this freshly forked child; returns (in the caged worker only) the pid of its parent.

    Three processes: this one (the *keeper*, still the zygote's user, in the host's pid namespace)
    joins the run's cgroup and makes the namespaces; its child becomes *init* of the new pid
    namespace, builds the mount view, drops every privilege and sets the limits; init's child is
    the worker that runs the notebook. When the worker ends, init ends, and with it (the kernel
    sees to that) every process of the run; the keeper then exits too. Keeper and init never run
    student code.
    """
    uid, gid = os.getuid(), os.getgid()
    os.setsid()  # the run's process group: the runner interrupts and kills it as a whole
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts are for the worker
    for path in cage.get("cgroup_procs", []):
        try:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass  # the limits of the rlimits still hold
    as_user = uid != 0
    _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | (CLONE_NEWUSER * as_user))
    if as_user:
        _prctl(PR_SET_DUMPABLE, 1)  # a non-dumpable process may not write its own id maps
        _map_own_ids(uid, gid)
        _prctl(PR_SET_DUMPABLE, 0)
    init = os.fork()
    if init:
        _wait_and_exit(init)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _build_root(cage)
    _libc.sethostname(b"sandbox", 7)
    _set_limits(cage["rlimits"])
    _drop_privileges(cage, as_user)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a change of credentials cleared it
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 16)
    os.environ.clear()
    worker = os.fork()
    if worker == 0:
        return 1  # the worker: its parent is init, pid 1 of the run's namespace
    os.close(keep)
    _init_loop(worker)


def _wait_and_exit(pid: int) -> None:
    """The keeper's life: wait for init, then leave with its status."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)


def _init_loop(worker: int) -> None:
    """Init of the run: reap whatever ends; leave (ending the namespace) when the worker does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(0)
        if pid == worker:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _build_root(cage: dict) -> None:
    """Mount the run's view of the filesystem (the plan's operations, in order) and make it the root."""
    root = cage["root"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    readonly: list[str] = []
    for op in cage["mounts"]:
        kind, target = op[0], root + op[-1]
        if kind == "symlink":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(op[1], target)
            continue
        binds = kind in ("ro", "bind", "dev")
        if binds and not os.path.exists(op[1]):
            continue  # an optional file (e.g. /etc/hosts) this machine lacks
        if not binds or os.path.isdir(op[1]):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        if binds:
            _mount(op[1], target, None, MS_BIND)
            if kind == "ro":
                readonly.append(target)
        elif kind == "dir":
            os.chown(target, cage["uid"], cage["gid"])
        elif kind == "tmpfs":
            _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=0{op[2]:o},size={op[1]}")
        elif kind == "proc":
            _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "devfs":
            _devfs(target)
            readonly.append(target)
    for target in reversed(readonly):  # after everything beneath them is mounted
        _remount_readonly(target)
    os.chdir(root)
    _check(_libc.pivot_root(b".", b"."), "pivot_root")  # the old root now lies under the new one
    _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _remount_readonly("/")


def _devfs(target: str) -> None:
    """A minimal /dev, like bubblewrap's --dev: the harmless devices and the usual links."""
    _mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=0755,size=64k")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{target}/{name}", "a").close()
            _mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                       ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{target}/{name}")


def _remount_readonly(target: str) -> None:
    flags = os.statvfs(target).f_flag
    kept = sum(ms for st, ms in KEPT_FLAGS if flags & st)
    _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)


def _set_limits(limits: dict) -> None:
    import resource

    for name, value in limits.items():
        if name == "data":  # on top of what the pre-imported libraries already hold (shared with the zygote)
            value += vm_data_bytes()
        which = getattr(resource, RLIMITS[name])
        resource.setrlimit(which, (int(value), int(value)))


def vm_data_bytes() -> int:
    """What this process holds of the memory RLIMIT_DATA counts."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _drop_privileges(cage: dict, as_user: bool) -> None:
    """Become the run's own unprivileged user with no capabilities anywhere, unable to gain any."""
    _drop_bounding_set()
    if not as_user:
        os.setgroups([])
        os.setresgid(cage["gid"], cage["gid"], cage["gid"])
        os.setresuid(cage["uid"], cage["uid"], cage["uid"])  # from root to a uid of the run: capabilities go
    uid, gid = os.getuid(), os.getgid()
    # The run's processes may write their own /proc files (thread names, as CUDA does; the id maps below):
    # no process outside the run has this uid or can see into its pid namespace.
    _prctl(PR_SET_DUMPABLE, 1)
    # No user namespaces beneath this one (as bubblewrap's --disable-userns): a namespace of our own
    # where at most one more may be made, then that one. Where the first is refused, so is any.
    try:
        _unshare(CLONE_NEWUSER)
        _map_own_ids(uid, gid)
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("1")
        _unshare(CLONE_NEWUSER)
        _map_own_ids(uid, gid)
    except OSError:
        if as_user:
            raise
    _drop_bounding_set()
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    _check(_libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _drop_bounding_set() -> None:
    for cap in range(CAP_LAST + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails quietly past the kernel's last, or without CAP_SETPCAP


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def can_confine() -> str | None:
    """Why this machine cannot make the cage's namespaces (None: it can), found in a throwaway child."""
    pid = os.fork()
    if pid == 0:
        try:
            as_user = os.getuid() != 0
            _unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | CLONE_NEWUSER * as_user)
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return ("This machine does not let the grader make the sandbox's namespaces: run as root, or allow unprivileged "
            "user namespaces (user.max_user_namespaces > 0; in a container, a seccomp/AppArmor profile that permits "
            "them), or grade only trusted notebooks with --no-sandbox.")


if __name__ == "__main__":  # `python cage.py --can-confine`: the Makefile's check before any long work
    problem = can_confine() if sys.argv[1:] == ["--can-confine"] else "usage: cage.py --can-confine"
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
