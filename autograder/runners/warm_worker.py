"""The student side of the warm runner: a pre-imported zygote that forks one child per submission.

This file runs as a program of its own (the runner starts ``python -c`` that loads it by path),
apart from the grader: it imports nothing of the grader's package except ``agent.py``, also
loaded by path. The zygote imports the heavy libraries once, warms them up on the offline store's
models (on one thread, never touching CUDA), then waits on its control socket. For each submission the runner passes
it one end of a fresh socket pair; the zygote forks, and the child, before any student code runs:
takes its own session (so the whole process group can be interrupted or killed), moves into the
submission's fresh folder, replaces its environment with the student environment, points every
module-level path the imports derived from the zygote's home at its own folder, sends its
output (Python, C libraries, subprocesses alike) into a capped per-cell capture, and creates its
own IPython shell. It then runs the cells it is sent one at a time and answers the grader's
requests with ``Agent``. Nothing a child does reaches the zygote or another child: memory is
copied on fork, and the child dies with the zygote (PR_SET_PDEATHSIG).

Frames on the child's socket: 1 byte kind + 8 bytes little-endian length + body.
"""

from __future__ import annotations

import builtins
import ctypes
import gc
import importlib
import importlib.util
import io
import json
import os
import select
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import PurePath

FRAME = struct.Struct("<cQ")
CELL, REQUEST, REPLY, ANSWER = b"C", b"Q", b"J", b"A"

# What every submission would otherwise import itself: the course's libraries and the model,
# tokenizer and training classes its notebooks use. None of these imports initialises CUDA.
PRELOAD = (
    "numpy",
    "torch",
    "safetensors.torch",
    "transformers",
    "peft",
    "trl",
    "datasets",
    "IPython.core.interactiveshell",
    "ipykernel.compiler",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "transformers.models.t5.modeling_t5",
    "transformers.models.llama.modeling_llama",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.tokenization_utils_tokenizers",
    "transformers.generation.utils",
    "transformers.trainer",
    "trl.trainer.sft_trainer",
    "peft.tuners.lora",
    "matplotlib.pyplot",  # the student environment names the Agg backend: no display is touched
)

WARM_UP_MAX_BYTES = 1 << 30  # models larger than this (e.g. a 1B model of the full profile) are not warmed up
PREFAULT_MAX_BYTES = 64 << 20  # of the zygote's memory a child copies before its notebook starts (see learn_prefault)
MADV_POPULATE_WRITE = 23  # Linux 5.14: fault pages in writable (copy on write done) without changing them

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
TRUNCATED = "\n[output truncated: over {cap} characters]\n"
ERROR_LINE = 10_000  # characters of an error's "name: message" line kept in the output


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, value: int) -> None:
    _libc.prctl(option, value, 0, 0, 0)


def _load_sibling(name: str):
    """A module of this folder, loaded by path (this file is loaded so too: nothing of the package is imported)."""
    spec = importlib.util.spec_from_file_location(f"autograder_{name}", os.path.join(os.path.dirname(__file__),
                                                                                     f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cage = _load_sibling("cage")  # the confinement a caged child enters (runners/cage.py)


# --- zygote ---------------------------------------------------------------------------


def zygote_main(control_fd: int, agent_path: str) -> None:
    """Import once, then fork a prepared child for every socket the runner sends."""
    started = time.monotonic()
    # Other processes of the same user may not ptrace the zygote or read its memory; its
    # children inherit this, so one submission's process cannot reach into the next one's.
    _prctl(PR_SET_DUMPABLE, 0)
    control = socket.socket(fileno=control_fd)
    control.set_inheritable(False)
    for name in PRELOAD:
        importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("autograder_agent", agent_path)
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    imported = time.monotonic()
    _warm_up()
    zygote, home = os.getpid(), os.getcwd()
    moved = _paths_under(home)
    # Children neither collect nor touch the zygote's objects' GC headers: fewer pages copied on write.
    gc.collect()
    gc.freeze()
    warmed = time.monotonic()
    prefault_ranges = learn_prefault()
    import torch

    _send_control(control, {
        "ready": True,
        "pid": zygote,
        "import_seconds": round(imported - started, 3),
        "warm_up_seconds": round(warmed - imported, 3),
        "prefault_seconds": round(time.monotonic() - warmed, 3),
        "prefault_bytes": sum(end - start for start, end in prefault_ranges),
        "cuda_initialized": bool(torch.cuda.is_initialized()),
    })
    children: dict[int, str] = {}  # pid -> its working folder, removed once the child has exited
    try:
        while True:
            _reap(children)
            if not select.select([control], [], [], 1.0)[0]:
                continue
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
            if not message:
                return  # the runner closed its end, or died without cleaning up
            order = json.loads(message)
            if order.get("op") != "fork" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                return
            pid = os.fork()
            if pid == 0:
                control.close()
                status = 0
                try:
                    parent = zygote
                    if order.get("cage"):
                        parent = cage.enter_cage(order["cage"], keep=fds[0])  # returns only in the caged worker
                    _child_main(fds[0], order, parent, home, moved, agent, prefault_ranges)
                except BaseException:  # noqa: BLE001 - a child never returns into the zygote's loop
                    traceback.print_exc()
                    status = 1
                os._exit(status)
            children[pid] = order["workdir"]
            os.close(fds[0])
            pidfd = os.pidfd_open(pid)  # before any reap, so it names this child and no other
            socket.send_fds(control, [json.dumps({"pid": pid}).encode()], [pidfd])
            os.close(pidfd)
    finally:
        _end_children(children)
        shutil.rmtree(home, ignore_errors=True)


def _warm_up() -> None:
    """Pay the libraries' first-use costs once, here, instead of in every child.

    For each model of the offline store (the hub cache the environment names) up to
    WARM_UP_MAX_BYTES: load its tokenizer and model and generate two tokens. That runs the lazy
    imports, compiles the regular expressions weight loading uses, and sets up generation, which a
    fresh process otherwise spends a few hundred milliseconds on. Nothing of a submission or an
    exercise is involved, only the store's public models. It runs on one thread, so that no OpenMP
    thread pool exists when the zygote forks, without tokenizers' thread pool, and it leaves the
    libraries' warn-once records as a fresh process has them (children reseed their random state).
    """
    import logging
    import warnings

    import torch
    import transformers

    hub = os.environ.get("HF_HUB_CACHE", "")
    models = [entry for entry in sorted(os.listdir(hub)) if entry.startswith("models--")] if os.path.isdir(hub) else []
    threads = torch.get_num_threads()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    torch.set_num_threads(1)
    try:
        _draw_a_figure()
        for entry in models:
            if _folder_bytes(os.path.join(hub, entry)) > WARM_UP_MAX_BYTES:
                continue
            hub_id = entry.removeprefix("models--").replace("--", "/")
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(hub_id)
                config = transformers.AutoConfig.from_pretrained(hub_id)
                model = getattr(transformers, config.architectures[0]).from_pretrained(hub_id)
                with torch.no_grad():
                    model.generate(**tokenizer("Hello world", return_tensors="pt"), max_new_tokens=2, do_sample=False)
            except Exception as exc:  # noqa: BLE001 - a warm-up that fails only costs the children time
                print(f"warm-up skipped {hub_id}: {exc!r}", file=sys.stderr)
    finally:
        torch.set_num_threads(threads)  # only the setting: the pool is made at a child's first parallel operation
        del os.environ["TOKENIZERS_PARALLELISM"]
        for once in ("warning_once", "info_once"):
            getattr(getattr(logging.Logger, once, None), "cache_clear", lambda: None)()
        warnings.onceregistry.clear()
        warnings._filters_mutated()  # forget every "warned already here" record


def learn_prefault() -> list[tuple[int, int]]:
    """The zygote's pages a child will most likely write to, as (start, end) address ranges, learned once.

    A forked child shares the zygote's memory until it writes to it; then each page it touches (a
    reference count, a cache entry) costs a fault and a copy. A notebook on the tiny models takes about
    5,000 such faults spread over all its code, a third of its own time. A probe child runs the warm-up
    again and reports which pages of the zygote's writable memory it then holds alone (present and
    exclusively mapped in /proc/self/pagemap, readable by any process for itself); each child copies
    those pages in bulk (``prefault``) while it waits for its notebook, off the grading path. Only the
    zygote's own warm-up decides the set: nothing a submission does. [] where the kernel cannot tell.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            with os.fdopen(write, "wb") as pipe:  # writes it all, however large
                pipe.write(json.dumps(_pages_written_by(_warm_up)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    try:
        return [(int(start), int(end)) for start, end in json.loads(said)]
    except (ValueError, TypeError):
        return []


def _pages_written_by(work) -> list[list[int]]:
    """Run ``work`` in this (freshly forked) process; the ranges of the parent's writable private memory that
    this process then holds alone, at most PREFAULT_MAX_BYTES in all."""
    import numpy

    regions = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if fields[1] == "rw-p":
                start, end = (int(x, 16) for x in fields[0].split("-"))
                regions.append((start, end))
    work()
    wanted = numpy.uint64((1 << 63) | (1 << 56))  # present, exclusively mapped
    page, ranges, total = os.sysconf("SC_PAGE_SIZE"), [], 0
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        for start, end in regions:
            entries = numpy.frombuffer(os.pread(pagemap.fileno(), 8 * ((end - start) // page), 8 * (start // page)),
                                       dtype=numpy.uint64)
            held = numpy.flatnonzero((entries & wanted) == wanted)
            if not len(held):
                continue
            gaps = numpy.flatnonzero(numpy.diff(held) != 1)
            for first, last in zip(held[numpy.r_[0, gaps + 1]], held[numpy.r_[gaps, len(held) - 1]]):
                size = (int(last) + 1 - int(first)) * page
                if total + size > PREFAULT_MAX_BYTES:
                    return ranges
                ranges.append([start + int(first) * page, start + int(first) * page + size])
                total += size
    return ranges


def prefault(ranges: list[tuple[int, int]]) -> None:
    """Copy these ranges of the zygote's memory into this process now (see learn_prefault). A range that is
    not mapped here, or a kernel without MADV_POPULATE_WRITE, only leaves those pages to be faulted later."""
    for start, end in ranges:
        _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_POPULATE_WRITE)


def _draw_a_figure() -> None:
    """Matplotlib's first figure loads fonts and sets up the renderer: pay that here, then leave no figure open."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots()
    axes.bar(["a", "b"], [1, 2])
    axes.scatter([0, 1], [1, 0])
    axes.set_title("warm-up")
    figure.canvas.draw()
    plt.close("all")


def _folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def _send_control(control: socket.socket, message: dict) -> None:
    control.sendall(json.dumps(message).encode())


def _reap(children: dict[int, str]) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            shutil.rmtree(children.pop(pid), ignore_errors=True)


def _end_children(children: dict[int, str]) -> None:
    """Kill what is left of the children (each leads its own process group) and remove their folders.

    The runner does this for every child it closes; this covers a runner that died without closing."""
    for pid in children:
        for kill in (os.killpg, os.kill):  # the group, and the child itself if it has not made its group yet
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for pid, workdir in children.items():
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        shutil.rmtree(workdir, ignore_errors=True)


def _paths_under(home: str) -> list[tuple[str, str]]:
    """(module, attribute) pairs whose value is a path inside the zygote's home or working folder.

    Libraries compute cache and config paths from HOME, TMPDIR or the working folder when they
    are imported (Hugging Face caches, datasets' cache, tempfile.tempdir...). A child rewrites
    these to its own folder, so that nothing is shared between submissions through the zygote's.
    """
    found = []
    for module_name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            kind = type(value)
            if (kind is str or issubclass(kind, PurePath)) and _is_under(os.fspath(value), home):
                found.append((module_name, attr))
    return found


def _is_under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _moved(path: str, old: str, new: str) -> str:
    return new + path[len(old):] if _is_under(path, old) else path


# --- child ----------------------------------------------------------------------------


def _child_main(fd: int, order: dict, parent: int, home: str, moved: list[tuple[str, str]], agent,
                prefault_ranges: list[tuple[int, int]]) -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above: nothing would end this child
        return
    if not order.get("cage"):
        os.setsid()  # a caged child is already in its keeper's session (see cage.enter_cage)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, _late_interrupt)
    channel = _Channel(socket.socket(fileno=fd))
    workdir = order["workdir"]
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(order["env"])
    for module_name, attr in moved:
        module = sys.modules.get(module_name)
        value = getattr(module, attr, None)
        if isinstance(value, (str, PurePath)):
            setattr(module, attr, type(value)(_moved(os.fspath(value), home, workdir)))
    sys.path[:] = [_moved(p, home, workdir) for p in sys.path]
    importlib.invalidate_caches()
    _reseed()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    capture = _Capture(agent)
    sys.stdout = sys.__stdout__ = _text_stream(1)
    sys.stderr = sys.__stderr__ = _text_stream(2)
    sys.argv = [""]
    threading.stack_size(int(order.get("thread_stack_bytes", 0)))
    agent.cap_gpu_memory(order.get("gpu_memory_bytes"))
    agent.guard_course_imports()
    shell = _new_shell(capture)
    answerer = agent.Agent(shell.user_ns)
    prefault(prefault_ranges)  # inside the cage: the copies are the run's memory, freed with it
    channel.send(REPLY, json.dumps({"ready": True, "pid": os.getpid()}).encode())
    while True:
        kind, body = channel.recv()
        if kind == CELL:
            job = json.loads(body)
            reply = _run_cell(shell, capture, job["source"], int(job["output_bytes"]), int(job.get("stop_bytes", 0)))
            if shell.exit_now:  # quit() / exit(): the process ends, as a kernel does
                os._exit(0)
            channel.send(REPLY, json.dumps(reply).encode())
        elif kind == REQUEST:
            channel.send(ANSWER, _interruptible(answerer.handle, body))
        else:
            return


def _reseed() -> None:
    """Fresh random seeds, as a new process has (Python's random module reseeds itself after fork)."""
    import numpy
    import torch

    torch.seed()  # CUDA's seed is only queued: CUDA stays uninitialised
    numpy.random.seed()


def _late_interrupt(signum, frame) -> None:
    """SIGINT outside student code: an interrupt that arrived after its cell or call ended."""


def _interruptible(function, *args):
    """Run student code with SIGINT raising KeyboardInterrupt, as a Jupyter kernel does."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return function(*args)
    finally:
        signal.signal(signal.SIGINT, _late_interrupt)


def _run_cell(shell, capture: _Capture, source: str, cap: int, stop: int) -> dict:
    capture.start(cap, stop)
    shell.errors = []
    try:
        _interruptible(shell.run_cell, source, True)
    except KeyboardInterrupt:  # landed in IPython's own code around the cell
        shell.errors.append(("KeyboardInterrupt", ""))
        capture.add("KeyboardInterrupt: ")
    flooded = capture.flooded
    text = capture.finish()
    if flooded:
        return {"status": "output_limit", "output": text, "error": None}
    if shell.errors:
        ename, evalue = shell.errors[-1]
        return {"status": "error", "output": text, "error": f"{ename}: {evalue}"}
    return {"status": "ok", "output": text, "error": None}


def _text_stream(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True, write_through=True)


def _new_shell(capture: _Capture):
    """An IPython shell that prints results as plain text and records errors like ipykernel."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.error import StdinNotImplementedError, UsageError
    from IPython.core.interactiveshell import InteractiveShell
    from ipykernel.compiler import XCachingCompiler
    from traitlets import Type
    from traitlets.config import Config

    class PlainDisplayHook(DisplayHook):
        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict, md_dict=None) -> None:
            if text := format_dict.get("text/plain"):
                sys.stdout.write(capture.block(text))

    class ClearingPublisher(DisplayPublisher):
        def publish(self, data, metadata=None, *args, **kwargs) -> None:
            if text := data.get("text/plain"):
                sys.stdout.write(capture.block(text))

        def clear_output(self, wait: bool = False) -> None:
            capture.clear(wait)

    class Shell(InteractiveShell):
        compiler_class = Type(XCachingCompiler)  # ipykernel's: the same cell file names in error messages
        displayhook_class = Type(PlainDisplayHook)
        display_pub_class = Type(ClearingPublisher)

        # The grader keeps "name: message" of an error, as it does from a kernel's error output;
        # formatting the whole traceback (IPython's slowest step on a first error) is skipped.
        def showtraceback(self, exc_tuple=None, *args, **kwargs) -> None:
            etype, evalue, _ = self._get_exc_info(exc_tuple)
            if issubclass(etype, UsageError):  # a magic's usage message, printed but not an error output
                self.show_usage_error(evalue)
            else:
                self.errors.append((etype.__name__, str(evalue)))
                capture.add(f"{etype.__name__}: {evalue}")  # where a kernel's error output would be

        def ask_exit(self) -> None:  # quit() / exit(), as ipykernel's shell has it
            self.exit_now = True

        def showsyntaxerror(self, filename=None, running_compiled_code=False) -> None:
            self.showtraceback()

        def _format_exception_for_storage(self, exception, filename=None, running_compiled_code=False) -> dict:
            return {"ename": type(exception).__name__, "evalue": str(exception), "traceback": []}

    def no_input(prompt: str = "") -> str:
        raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = Shell.instance(config=config)
    shell.errors = []  # (name, message) of each error shown while the current cell ran
    builtins.input = no_input
    return shell


class _Capture:
    """All output to file descriptors 1 and 2, in write order (agent.OutputPipe), kept per cell up to
    a cap; a chatty process never blocks."""

    def __init__(self, agent) -> None:  # the agent module, loaded by path
        self._kept = bytearray()
        self._total = 0
        self._cap = 0
        self._stop = 0  # printed bytes past which the cell is interrupted (0: never)
        self.flooded = False
        self._clear_at: int | None = None
        self._as_block = agent.as_block
        self._pipe = agent.OutputPipe(self._keep)
        self._cond = self._pipe.lock

    def _keep(self, data: bytes) -> None:
        if self._stop and not self.flooded and self._total + len(data) > self._stop:
            self.flooded = True  # past the hard cap: interrupt the cell (the rest is drained and dropped)
            os.kill(os.getpid(), signal.SIGINT)
        if self._clear_at is not None:  # clear_output(wait=True): cleared when new output arrives
            del self._kept[: self._clear_at]
            self._clear_at = None
        room = self._cap - self._total
        self._kept += data[: max(0, room)]
        self._total += len(data)

    def _sync(self) -> None:
        """Wait until everything written so far has been drained."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the student may have replaced or closed the streams
                pass
        self._pipe.sync()

    def start(self, cap: int, stop: int = 0) -> None:
        self._sync()
        with self._cond:
            self._kept.clear()
            self._total, self._cap, self._clear_at = 0, cap, None
            self._stop, self.flooded = stop, False

    def clear(self, wait: bool) -> None:
        self._sync()
        with self._cond:
            if wait:
                self._clear_at = len(self._kept)
            else:
                self._kept.clear()

    def block(self, text: str) -> str:
        """`text` laid out to follow what the cell has written so far (agent.as_block)."""
        self._sync()
        with self._cond:
            tail = self._kept[self._clear_at or 0:]
            return self._as_block(text, at_line_start=not tail or tail.endswith(b"\n"))

    def add(self, text: str) -> None:
        """An error line, after everything the cell wrote so far; like a kernel's error output, it
        is kept unless the cap was already passed, and does not count towards it."""
        text = self.block(text[:ERROR_LINE])
        with self._cond:
            if self._total <= self._cap:
                self._kept += text.encode("utf-8", errors="backslashreplace")

    def finish(self) -> str:
        self._sync()
        with self._cond:
            text = self._kept.decode("utf-8", errors="replace")
            cap, truncated = self._cap, self._total > self._cap
            self._kept.clear()
            self._cap = self._total = self._stop = 0
        if truncated:
            return text + TRUNCATED.format(cap=cap)
        return text if text.endswith("\n") or not text else text + "\n"  # as a kernel's text ends


class _Channel:
    """Length-prefixed frames on the child's socket (blocking: the child only ever waits here)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.set_inheritable(False)
        self.sock = sock

    def send(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(FRAME.pack(kind, len(body)))
        self.sock.sendall(body)

    def recv(self) -> tuple[bytes, bytes]:
        header = self._exactly(FRAME.size)
        kind, size = FRAME.unpack(header)
        return kind, self._exactly(size)

    def _exactly(self, size: int) -> bytes:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self.sock.recv_into(view[got:])
            if n == 0:
                os._exit(0)  # the runner closed the channel
            got += n
        return bytes(buffer)
