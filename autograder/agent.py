"""The only grader code that runs inside the student's process.

The student process loads this file (by path: it imports nothing else of the grader, but ``wire.py`` beside it)
and answers requests: read a variable, call a function on arguments the grader chose. Every answer is *data* in
the wire format (``wire.py``), which the grader decodes trusting nothing. Student code may tamper with this module
inside its own process; the worst it can do is send wrong data about its own answers. It also keeps the
process's output in order and guards the course's imports (see below).
"""

from __future__ import annotations

import codecs
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable

try:
    from . import wire  # part of the package: the grader, its tests
except ImportError:  # loaded by path in the student's process: the file beside this one
    import importlib.util

    _spec = importlib.util.spec_from_file_location("autograder_wire", os.path.join(os.path.dirname(__file__),
                                                                                  "wire.py"))
    wire = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(wire)

encode, decode, WireError = wire.encode, wire.decode, wire.WireError


# --- the student-side server ----------------------------------------------------------


def _ok(value: Any) -> dict:
    return {"status": "ok", "value": value}


def _raised(exc: BaseException) -> dict:
    return {
        "status": "raised",
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def _call(function: Any, args: Any, kwargs: Any) -> dict:
    started = time.perf_counter()
    try:
        answer = _ok(function(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even KeyboardInterrupt
        answer = _raised(exc)
    answer["seconds"] = time.perf_counter() - started
    return answer


def cap_gpu_memory(limit: int | None) -> None:
    """Cap this process's share of the GPU at `limit` bytes, applied when (if ever) it first uses CUDA.

    PyTorch's caching allocator enforces it: a greedy notebook gets an out-of-memory error instead of
    starving the runs next to it (code that calls CUDA's allocator directly is not held by it)."""
    if not limit:
        return
    import torch

    def cap() -> None:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), 0)

    torch.cuda._lazy_call(cap)  # runs at CUDA's initialisation, as torch.cuda.manual_seed does


# The course's environment (course.toml's [environment]) as the grader hands it to the student process: JSON with the
# top-level modules notebook code may import and the packages they come from, for the refusal's sentence.
COURSE_MODULES_SETTING = "AUTOGRADER_COURSE_MODULES"
# How a refused or missing import ends its message; the grader finds the module and the packages in it.
NOT_IN_COURSE = "No module named {module!r} in the course's environment, which provides: {packages}"


def guard_course_imports() -> None:
    """Let the notebook's own code import only what the course's environment provides (and the standard
    library), as students have it where they work; a library's own imports are not concerned.

    Notebook code runs in the namespace ``__main__``: an import statement there (or in a function the notebook
    defines) of any other top-level module raises ModuleNotFoundError naming the module and what the course
    provides, whether or not this machine happens to have it. Not a barrier (the process is the student's own):
    it keeps grading to the environment the notebook was written for."""
    import builtins

    setting = os.environ.pop(COURSE_MODULES_SETTING, "")
    if not setting:
        return
    course = json.loads(setting)
    allowed, packages = frozenset(course["modules"]), course["packages"]
    real_import = builtins.__import__

    def refusal(module: str) -> ModuleNotFoundError:
        return ModuleNotFoundError(NOT_IN_COURSE.format(module=module, packages=packages), name=module)

    def course_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level or not globals or globals.get("__name__") != "__main__":
            return real_import(name, globals, locals, fromlist, level)
        top = name.partition(".")[0]
        if top not in allowed:
            raise refusal(top)
        try:
            return real_import(name, globals, locals, fromlist, level)
        except ModuleNotFoundError as exc:
            if exc.name != top:  # a submodule, or something the package itself lacks: Python's own words
                raise
            raise refusal(top) from None

    builtins.__import__ = course_import


def as_block(block: str, at_line_start: bool) -> str:
    """A result, a display or an error line as a cell's text shows it: on lines of its own, while
    streams run on as written. Both runners lay out a cell's text by this rule."""
    return ("" if at_line_start else "\n") + block + ("" if block.endswith("\n") else "\n")


class OutputPipe:
    """Descriptors 1 and 2 pointed at one pipe that a thread drains: whatever reaches them (print()
    once it writes there, C libraries, subprocesses) comes out in the order it was written.

    ``receive(data)`` gets each piece, with ``lock`` held (the owner guards its own state with it).
    ``sync()`` returns once everything written before it has been received: a random marker sent
    through the pipe tells. A process that diverts descriptor 1 loses only the wait (5 s, once).
    """

    SYNC_SECONDS = 5

    def __init__(self, receive: Callable[[bytes], None]) -> None:
        read_end, write_end = os.pipe()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self._receive = receive
        self._marker = b"\0autograder-" + os.urandom(8).hex().encode() + b"\0"
        self.lock = threading.Condition()
        self._pending = b""  # a tail that may be the start of a marker
        self._markers_sent = self._markers_seen = 0
        self._diverted = False
        self._owner = os.getpid()  # a forked child has no drain thread to wait for
        self.thread = threading.Thread(target=self._drain, name="autograder-output", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        keep_back = len(self._marker) - 1
        while True:
            try:
                chunk = os.read(self._read_end, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                data = self._pending + chunk
                while (at := data.find(self._marker)) >= 0:
                    if at:
                        self._receive(data[:at])
                    data = data[at + len(self._marker):]
                    self._markers_seen += 1
                    self.lock.notify_all()
                split = max(0, len(data) - keep_back)
                if split:
                    self._receive(data[:split])
                self._pending = data[split:]

    def sync(self) -> None:
        if self._diverted or os.getpid() != self._owner or threading.current_thread() is self.thread:
            return
        with self.lock:
            self._markers_sent += 1
            target = self._markers_sent
        try:
            os.write(1, self._marker)
        except OSError:  # descriptor 1 closed or replaced
            return
        with self.lock:
            if not self.lock.wait_for(lambda: self._markers_seen >= target, timeout=self.SYNC_SECONDS):
                self._diverted = True


def prepare_kernel() -> None:
    """A Jupyter kernel's setup before the notebook's first cell: its output in written order, the course's
    imports (the warm runner's child does the same steps itself)."""
    order_kernel_output()
    guard_course_imports()


def order_kernel_output() -> None:
    """In an ipykernel kernel started with ``capture_fd_output`` off: make what a cell shows follow
    the order it was written in.

    ipykernel's own capture reads descriptors 1 and 2 on threads of their own, so a subprocess's
    output can reach the grader after the cell's result, or after the cell has ended. Here print()
    to either stream writes to its descriptor, both descriptors feed one ``OutputPipe`` forwarded
    to the stdout stream, and every flush (ipykernel flushes before it sends a result, a display,
    an error or the cell's end) first syncs the pipe.
    """
    stdout, stderr = sys.stdout, sys.stderr
    if not all(hasattr(s, "set_parent") for s in (stdout, stderr)):  # not ipykernel's streams
        return
    for stream in (stdout, stderr):
        stream.echo = None  # an echo to the terminal would write into the pipe it is read from
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    base = type(stdout)

    def received(data: bytes) -> None:
        if text := decoder.decode(data):
            base.write(stdout, text)

    pipe = OutputPipe(received)

    class PipedStream(base):
        def _write(self, text: str) -> int:
            if not isinstance(text, str):
                raise TypeError(f"write() argument must be str, not {type(text).__name__}")
            fd = 1 if self is stdout else 2
            data = memoryview(text.encode("utf-8", errors="backslashreplace"))
            while data:
                data = data[os.write(fd, data):]
            return len(text)

        # IPython wraps write() around each cell by setting it on the stream, and puts back the one it
        # found: after this cell, ipykernel's. So write is a property, and that one is not let back in.
        def _set_write(self, value: Callable[[str], int]) -> None:
            if getattr(value, "__func__", None) is not base.write:
                self.__dict__["write"] = value

        write = property(lambda self: self.__dict__.get("write") or self._write, _set_write)

        def flush(self) -> None:
            pipe.sync()
            base.flush(stdout)  # everything is forwarded to stdout; stderr's own buffer stays empty

    for stream in (stdout, stderr):
        stream.__dict__.pop("write", None)  # IPython's wrapper for this cell, around ipykernel's write()
        stream.__class__ = PipedStream

class Agent:
    """Answers the grader's requests against the notebook's global namespace.

    Requests: ``get`` a variable; ``call`` a function once; ``call_each``: call it on a list of
    argument sets in one round trip, stopping at the first call that does not answer "ok", so the
    grader sees the same answers as from one ``call`` after another. Each call's answer carries
    ``seconds``, the time spent in the student function (a diagnostic: the student could fake it).
    """

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace

    def handle(self, request: bytes) -> bytes:
        try:
            req = decode(request, max_bytes=1 << 30, private_copies=True)
            op, name = req["op"], req["name"]
            if name not in self.namespace:
                return encode({"status": "undefined"})
            target = self.namespace[name]
            if op == "get":
                return self._send(_ok(target))
            if not callable(target):
                return encode({"status": "not_callable", "type": type(target).__name__})
            if op == "call":
                return self._send(_call(target, req.get("args", ()), req.get("kwargs", {})))
            answers = []
            for call in req["calls"]:
                answers.append(_call(target, call.get("args", ()), call.get("kwargs", {})))
                if answers[-1]["status"] != "ok":
                    break
            return self._send_each(answers)
        except BaseException as exc:  # noqa: BLE001 - student code may raise anything, even KeyboardInterrupt
            return encode(_raised(exc))

    @staticmethod
    def _send(answer: dict) -> bytes:
        try:
            return encode(answer)
        except WireError as exc:
            return encode({"status": "unsendable", "message": str(exc)})

    @staticmethod
    def _send_each(answers: list[dict]) -> bytes:
        try:
            return encode({"status": "ok", "answers": answers})
        except WireError:  # find the first value that cannot be sent; it ends the list, as it would end a check
            for i, answer in enumerate(answers):
                try:
                    encode(answer)
                except WireError as exc:
                    answers[i:] = [{"status": "unsendable", "message": str(exc)}]
                    break
            return encode({"status": "ok", "answers": answers})

    def serve_file(self, request_path: str, response_path: str) -> None:
        with open(request_path, "rb") as f:
            request = f.read()
        with open(response_path, "wb") as f:
            f.write(self.handle(request))
