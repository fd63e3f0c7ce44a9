"""Hostile submissions against every confined runner: each one is graded and its exact outcome asserted.

Every test runs on both ways of executing a notebook (the warm runner's forked child, the default,
and the fresh kernel started by bubblewrap), each inside the same cage (``autograder/runners/confine.py``).
A hostile notebook is the t5_decoding solution (or the blank student notebook) with hostile
cells appended. Where an attack could only show itself from inside (a file it managed to
read, a connection that went through), the hostile cell ends with ``assert not <what it got>``,
so a successful attack becomes a failed cell in the diagnostics, and the test requires the
appended cells to end exactly as listed. Where the host can see the effect (a file written, a
process left behind, a connection accepted), the test looks on the host as well.

The cage needs root or unprivileged user namespaces, the kernel runner's also bubblewrap, and a
Python environment the run's unprivileged user can execute (``AUTOGRADER_SANDBOX_PYTHON``,
default: this interpreter); without them these tests skip with the reason.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from autograder.exercise import Exercise
from autograder.grading import GradeOptions, Grader
from autograder.paths import checks_dir
from autograder.runners import RUNNERS, Sandbox, SandboxLimits, SandboxUnavailable
from autograder.runners.base import RunLimits
from autograder.runners.confine import GiB, MiB
from conftest import ROOT, failed_checks, solution_path, student_path, with_cells_appended

SOLUTION = solution_path("t5_decoding")
BLANK = student_path("t5_decoding")
FULL = 17  # the solution's score on CPU (the CUDA-only check is not run)
# Small limits so that hogs hit them fast; the solution needs about 0.5 GiB.
LIMITS = SandboxLimits(memory_bytes=int(1.5 * GiB), processes=512, file_bytes=128 * MiB, disk_bytes=256 * MiB,
                       output_stop_bytes=20 * MiB)
RUN_LIMITS = RunLimits(cell_timeout=60, notebook_timeout=400, answer_bytes=64 * MiB)


@pytest.fixture(scope="module", params=sorted(RUNNERS))
def runner(request):
    try:
        made = RUNNERS[request.param](Sandbox(limits=LIMITS))
    except SandboxUnavailable as exc:
        pytest.skip(f"the sandbox cannot run here: {exc}")
    yield made
    made.close()


@pytest.fixture(scope="module")
def grader(runner):
    return Grader(Exercise("t5_decoding"), GradeOptions(runner=runner, limits=RUN_LIMITS))


@pytest.fixture(scope="module")
def quick_grader(runner):
    """Short cell time limit, for cells that never end."""
    return Grader(Exercise("t5_decoding"), GradeOptions(runner=runner, limits=RunLimits(cell_timeout=10,
                                                                                          notebook_timeout=300)))


def hostile(base: Path, *cells: str, metadata: dict | None = None) -> bytes:
    data = with_cells_appended(base, *(textwrap.dedent(c).strip() for c in cells))
    if not metadata:
        return data
    nb = nbformat.reads(data, as_version=4)
    nb.metadata.update(metadata)
    return nbformat.writes(nb).encode()


def appended(result, base: Path) -> list[tuple[str, str]]:
    """(status, error) of the appended cells that did not end well (numbered as the student counts)."""
    own = sum(c.cell_type == "code" for c in nbformat.read(base, as_version=4).cells)
    return [(c.status, c.error or "") for c in result.diagnostics.problem_cells if c.number > own]


def no_process_with(marker: str, within: float = 10.0) -> bool:
    """No process's command line holds `marker` (within a few seconds: a run's processes are killed when its
    session closes, and reaped by the runner's chores thread right after)."""
    deadline = time.monotonic() + within
    while any(_cmdline_has(entry, marker) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _cmdline_has(process: Path, marker: str) -> bool:
    try:
        return marker.encode() in (process / "cmdline").read_bytes()
    except OSError:
        return False


def graded_normally(grader) -> None:
    """The grader is alive and the next submission gets its full score."""
    result = grader.grade_file(SOLUTION)
    assert (result.status, result.score, failed_checks(result)) == ("graded", FULL, set())


# --- the grader's files ------------------------------------------------------------------


def test_reading_grader_files_by_path(grader, tmp_path):
    other = tmp_path / "submissions" / "s0002.ipynb"
    other.parent.mkdir()
    other.write_bytes(SOLUTION.read_bytes())
    gradebook = tmp_path / "gradebook.sqlite"
    gradebook.write_bytes(b"SQLite format 3\0")
    targets = [checks_dir("t5_decoding") / "test_hidden.py", ROOT / "rubrics" / "t5_decoding.toml", SOLUTION,
               ROOT / "assignments" / "t5_decoding" / "checks" / "test_public.py", ROOT / "autograder" / "grading.py",
               ROOT / ".git" / "config", other, gradebook, Path.home(), Path("/etc/shadow")]
    assert all(t.exists() for t in targets)
    result = grader.grade_bytes(hostile(BLANK, f"""
        import os
        leaks = []
        for target in {[str(t) for t in targets]!r}:
            for path in (target, '/proc/1/root' + target, '/proc/self/cwd/../../..' + target):
                try:
                    if os.path.isdir(path):
                        os.listdir(path)
                    else:
                        open(path, 'rb').read(1)
                    leaks.append(path)
                except OSError:
                    pass
        assert not leaks, leaks
        """), "read-by-path")
    assert (result.status, result.score) == ("graded", 0)
    assert appended(result, BLANK) == []


def test_walking_the_filesystem_finds_nothing_of_the_grader(grader):
    result = grader.grade_bytes(hostile(BLANK, """
        import os
        wanted = {'test_hidden.py', 'test_public.py', 't5_decoding.toml', 't5_decoding.ipynb', 'exercise.toml',
                  'gradebook.sqlite', 'results.json', 'grading.py', 'checking.py'}
        found, seen = [], 0
        for top, dirs, files in os.walk('/'):
            if top in ('/proc', '/sys', '/dev'):
                dirs[:] = []
                continue
            seen += len(files)
            found += [os.path.join(top, f) for f in files if f in wanted or f.endswith('.sqlite')]
            found += [top for d in ('rubrics', 'solutions', 'assignments', '.git') if top.endswith('/' + d)]
        assert seen > 1000 and not found, (seen, found)
        """), "walk")
    assert (result.status, result.score) == ("graded", 0)
    assert appended(result, BLANK) == []


def test_fake_results_and_gradebook_writes_change_nothing(grader, tmp_path):
    out = tmp_path / "out" / "results.json"
    out.parent.mkdir()
    gradebook = tmp_path / "gradebook.sqlite"
    gradebook.write_bytes(b"SQLite format 3\0rows")
    fake = '{"score": 100, "tests": []}'
    result = grader.grade_bytes(hostile(SOLUTION, f"""
        import os
        next_token_id = next_token_id + 1  # a wrong answer, and a forged score to hide it
        print({fake!r})
        for path in ('results.json', os.path.expanduser('~/results.json'), '/tmp/results.json'):
            open(path, 'w').write({fake!r})  # its own scratch space: allowed, and never read
        escaped = []
        for path in ({str(out)!r}, {str(gradebook)!r}, '/autograder/results/results.json'):
            try:
                open(path, 'a').write({fake!r})
                escaped.append(path)
            except OSError:
                pass
        assert not escaped, escaped
        """), "forge")
    assert (result.status, result.score, failed_checks(result)) == ("graded", FULL - 2, {"test_next_token_argmax"})
    assert appended(result, SOLUTION) == []
    assert not out.exists() and gradebook.read_bytes() == b"SQLite format 3\0rows"


# --- its own process ----------------------------------------------------------------------


def test_monkeypatching_its_own_process_does_not_reach_the_checks(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        import sys, types, builtins, numpy, torch
        always = lambda *a, **k: True
        torch.allclose = torch.equal = always
        torch.testing.assert_close = numpy.testing.assert_allclose = lambda *a, **k: None
        numpy.allclose = numpy.array_equal = always
        torch.Tensor.__eq__ = torch.Tensor.__ne__ = always
        builtins.AssertionError = type('AssertionError', (Exception,), {})
        sys.modules['pytest'] = types.ModuleType('pytest')
        fake = types.ModuleType('autograder.testing')
        fake.expect = fake.expect_close = fake.expect_shape = lambda *a, **k: None
        sys.modules['autograder'] = types.ModuleType('autograder')
        sys.modules['autograder.testing'] = fake
        encoder_hidden = encoder_hidden * 1.5  # a wrong answer the patches hope to hide
        """), "monkeypatch")
    assert (result.status, failed_checks(result)) == ("graded", {"test_encoder_output_values"})
    assert result.score == FULL - 1 and appended(result, SOLUTION) == []


def test_objects_equal_to_everything_score_nothing(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        class Anything:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        class SneakyInt(int):
            __eq__ = Anything.__eq__
            __hash__ = int.__hash__
        class SneakyStr(str):
            __eq__ = Anything.__eq__
            __hash__ = str.__hash__
        translation = SneakyStr('whatever')
        next_token_id = SneakyInt(-1)
        def greedy_decode(prompt, max_new_tokens):
            return Anything()
        """), "eq")
    assert failed_checks(result) == {"test_translation", "test_next_token_argmax", "test_greedy_decode_matches_generate"}
    assert (result.status, result.score) == ("graded", FULL - 1 - 2 - 4)
    # subclasses of int and str cross as their plain selves: the __eq__ that says yes to everything stays behind
    messages = {c.id: c.message for c in result.checks}
    assert "is -1" in messages["test_next_token_argmax"] and "whatever" in messages["test_translation"]


def test_tensor_subclasses_lying_about_shape_and_dtype(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        real_encoder, real_logits = tuple(encoder_hidden.shape), tuple(lm_logits.shape)
        class Liar(torch.Tensor):
            @property
            def shape(self):
                return torch.Size(real_encoder if self.numel() == 3 else real_logits)
            @property
            def dtype(self):
                return torch.float32
            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                return encoder_hidden if func is torch.Tensor.clone else super().__torch_function__(func, types, args, kwargs or {})
        encoder_hidden = torch.zeros(3).as_subclass(Liar)
        lm_logits = torch.zeros(5, dtype=torch.int64).as_subclass(Liar)
        """), "liar")
    assert failed_checks(result) == {"test_encoder_output_shape", "test_encoder_output_values",
                                     "test_lm_head_output_shape", "test_lm_head_output_values"}
    assert (result.status, result.score) == ("graded", FULL - 4)
    messages = {c.id: c.message for c in result.checks}
    assert "(3,)" in messages["test_encoder_output_shape"] and "(5,)" in messages["test_lm_head_output_shape"]


def test_huge_and_deeply_nested_values(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        translation = 'x' * 20_000_000  # over the grader's string limit
        nested = []
        for _ in range(10_000):
            nested = [nested]
        next_token = nested  # deeper than the wire format allows
        encoder_hidden = torch.zeros(20_000_000)  # 80 MB, over the answer size limit
        """), "huge")
    assert failed_checks(result) == {"test_translation", "test_next_token_argmax", "test_encoder_output_shape",
                                     "test_encoder_output_values"}
    assert (result.status, result.score) == ("graded", FULL - 1 - 2 - 1 - 1)
    messages = {c.id: c.message for c in result.checks}
    assert "larger than" in messages["test_encoder_output_shape"] and "nested" in messages["test_next_token_argmax"]


def test_forged_wire_answers_are_rejected(grader):
    """The student process owns its end of the channel: it can send anything, the grader reads data only."""
    result = grader.grade_bytes(hostile(SOLUTION, """
        import json, struct, safetensors.torch
        def forged(tensors, metadata=None):
            value = '[' * 200_000 + ']' * 200_000  # deeper than any JSON parser's recursion
            header = json.dumps({'__metadata__': {'format': 'autograder-wire-1', 'value': value}}).encode()
            return struct.pack('<Q', len(header)) + header
        safetensors.torch.save = forged
        """), "forged-wire")
    assert (result.status, result.score) == ("graded", 0)
    assert all("cannot read" in c.message for c in result.checks if c.outcome == "failed")


def test_nan_and_inf_where_numbers_are_expected(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        encoder_hidden = torch.full_like(encoder_hidden, float('nan'))
        lm_logits = torch.full_like(lm_logits, float('inf'))
        scaled_logits = torch.full_like(scaled_logits, float('-inf'))
        translation = float('nan')
        """), "nan")
    expected = {"test_encoder_output_values", "test_lm_head_output_values", "test_scaled_logits_match_model",
                "test_translation"}
    assert failed_checks(result) == expected
    assert all(c.outcome == "failed" for c in result.checks if c.id in expected)  # failed, not crashed checks
    assert (result.status, result.score) == ("graded", FULL - 1 - 1 - 2 - 1)


# --- network -------------------------------------------------------------------------------


def test_network_dns_public_ip_and_the_graders_own_ports(grader):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        result = grader.grade_bytes(hostile(BLANK, f"""
            import socket
            reached = []
            try:
                reached.append(socket.getaddrinfo('pypi.org', 443))
            except OSError:
                pass
            for address in [('1.1.1.1', 443), ('8.8.8.8', 53), ('127.0.0.1', {port})]:
                try:
                    socket.create_connection(address, timeout=3).close()
                    reached.append(address)
                except OSError:
                    pass
            assert not reached, reached
            """), "network")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert (result.status, result.score) == ("graded", 0)
    assert appended(result, BLANK) == []


# --- resources -----------------------------------------------------------------------------


def test_fork_bomb(grader):
    marker = f"{uuid.uuid4().int % 10**6}.25"
    result = grader.grade_bytes(hostile(SOLUTION, f"""
        import os
        while True:
            if os.fork() == 0:
                os.execv('/bin/sleep', ['sleep', '{marker}'])
        """), "fork-bomb")
    assert [status for status, _ in appended(result, SOLUTION)] == ["error"]
    assert "Resource temporarily unavailable" in appended(result, SOLUTION)[0][1]
    assert (result.status, result.score) == ("graded", FULL)
    assert no_process_with(marker)


def test_thread_bomb(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        import threading, time
        while True:
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        """), "thread-bomb")
    [(status, error)] = appended(result, SOLUTION)
    assert status == "error" and "can't start new thread" in error
    assert (result.status, result.score) == ("graded", FULL)


def test_memory_hog(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        huge = torch.zeros(100_000, 100_000)  # 40 GB at once
        """, """
        hog = []
        while True:
            hog.append(torch.ones(2**24))  # 64 MB more each time, really used
        """), "memory-hog")
    assert [status for status, _ in appended(result, SOLUTION)] == ["memory", "memory"]
    assert "1.5 GiB" in appended(result, SOLUTION)[0][1]
    assert (result.status, result.score) == ("graded", FULL)
    assert "Limit reached" in result.message and "out of memory" in result.message


def test_disk_fill(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        with open('/dev/shm/one-big-file', 'wb') as f:
            while True:
                f.write(b'0' * 2**20)
        """, """
        import itertools, os
        for i in itertools.count():
            with open(os.path.expanduser(f'~/fill-{i}'), 'wb') as f:
                f.write(b'0' * 2**25)
        """, """
        for i in itertools.count():
            with open(f'/dev/shm/fill-{i}', 'wb') as f:
                f.write(b'0' * 2**25)
        """, """
        written = []
        for path in ('/fill', '/usr/fill', '/dev/fill', '.grader/fill', '/var/tmp/fill'):
            try:
                open(path, 'wb').write(b'0')
                written.append(path)
            except OSError:
                pass
        assert not written, written
        """), "disk-fill")
    problems = appended(result, SOLUTION)
    assert [status for status, _ in problems] == ["error", "error", "error"]
    assert "File too large" in problems[0][1]
    assert all("No space left on device" in error for _, error in problems[1:])
    assert (result.status, result.score) == ("graded", FULL)


def test_ten_gigabytes_of_printed_output(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        for _ in range(10_000):
            print('x' * 1_000_000)
        """), "output-flood")
    [(status, error)] = appended(result, SOLUTION)
    assert status == "output_limit" and "20 MiB" in error
    assert (result.status, result.score) == ("graded", FULL)
    assert "Limit reached" in result.message


def test_a_cpu_hog_next_door_does_not_time_out_a_correct_notebook(runner):
    """A neighbour keeping 50 processes busy leaves the next run its own CPU share, and a cell's limit
    counts the CPU time its own run used: the correct notebook finishes as it would alone."""
    import threading
    import time

    from autograder.runners.base import RunJob

    marker = f"hog-{uuid.uuid4().hex[:8]}"
    hog = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(f"""
        import subprocess, time
        for _ in range(50):  # each in a session of its own, as a scheduler's autogroups would count them
            subprocess.Popen(['sh', '-c', 'while :; do :; done', '{marker}'], start_new_session=True)
        time.sleep(3600)  # until its own time limit stops it
        """))])
    work = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("total = sum(i * i for i in range(20_000_000))")])
    neighbour_runner = type(runner)(runner.sandbox)
    hog_job = RunJob(hog, env={}, limits=RunLimits(cell_timeout=60))
    neighbour = threading.Thread(target=lambda: neighbour_runner.start(hog_job).close())
    try:
        neighbour.start()
        deadline = time.monotonic() + 180
        while _processes_with(marker) < 50:  # however long the neighbour took to start
            assert neighbour.is_alive() and time.monotonic() < deadline, "the neighbour's processes never all ran"
            time.sleep(0.5)
        with runner.start(RunJob(work, env={}, limits=RunLimits(cell_timeout=8))) as session:
            [cell] = session.cells
        assert _processes_with(marker) >= 50, "the neighbour stopped before the notebook next to it finished"
    finally:
        neighbour.join()
        neighbour_runner.close()
    assert (cell.status, cell.error) == ("ok", None)


def _processes_with(marker: str) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            count += entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes()
        except OSError:
            continue
    return count


def test_a_cell_that_sleeps_forever(quick_grader):
    result = quick_grader.grade_bytes(hostile(SOLUTION, "import time\ntime.sleep(10**9)"), "sleep")
    [(status, error)] = appended(result, SOLUTION)
    assert status == "timeout" and "time limit" in error
    assert (result.status, result.score) == ("graded", FULL)


def test_a_lost_interrupt_is_sent_again(quick_grader):
    # As when an interrupt lands between the kernel's handlers (where it is ignored): the first one does
    # nothing, and the runner must keep interrupting, not call the notebook dead.
    result = quick_grader.grade_bytes(hostile(SOLUTION, """
        import signal, time
        signal.signal(signal.SIGINT, lambda *_: signal.signal(signal.SIGINT, signal.default_int_handler))
        time.sleep(10**9)
        """), "lost-interrupt")
    [(status, error)] = appended(result, SOLUTION)
    assert status == "timeout" and "time limit" in error
    assert (result.status, result.score) == ("graded", FULL)


@pytest.mark.slow
def test_a_cell_that_ignores_interrupts(quick_grader):
    result = quick_grader.grade_bytes(hostile(SOLUTION, """
        import signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        while True:
            pass
        """), "unstoppable")
    assert (result.status, result.score) == ("crashed", 0)
    graded_normally(quick_grader)


# --- its process and its parents ------------------------------------------------------------


@pytest.mark.parametrize("ending", ["import os\nos._exit(0)", "quit()"], ids=["os._exit", "quit"])
def test_exiting_the_process(grader, ending):
    result = grader.grade_bytes(hostile(BLANK, ending), ending)
    assert (result.status, result.score) == ("crashed", 0)
    assert [status for status, _ in appended(result, BLANK)] == ["died"]
    if ending == "quit()":
        graded_normally(grader)


def test_sys_exit_is_just_an_error(grader):
    result = grader.grade_bytes(hostile(SOLUTION, "import sys\nsys.exit(1)", "raise SystemExit(0)"), "sys-exit")
    assert [status for status, _ in appended(result, SOLUTION)] == ["error", "error"]
    assert (result.status, result.score) == ("graded", FULL)


def test_killing_its_parent_and_everyone_it_can_see(grader):
    result = grader.grade_bytes(hostile(SOLUTION, """
        import os, signal
        for pid in (os.getppid(), 1):
            os.kill(pid, signal.SIGKILL)  # its parent is the sandbox's init: ignored
        try:
            os.kill(-1, signal.SIGKILL)  # everything it may signal: nothing outside the sandbox
        except ProcessLookupError:
            pass
        """), "kill-parent")
    assert (result.status, result.score) == ("graded", FULL)
    assert appended(result, SOLUTION) == []
    os.kill(os.getppid(), 0)  # the grader and its own parent are alive


def test_killing_its_own_launcher_ends_only_itself(grader):
    result = grader.grade_bytes(hostile(BLANK, "import os, signal\nos.killpg(0, signal.SIGKILL)"), "killpg")
    assert (result.status, result.score) == ("crashed", 0)
    assert [status for status, _ in appended(result, BLANK)] == ["died"]


def test_a_setsid_process_does_not_survive_the_run(grader):
    marker = f"{uuid.uuid4().int % 10**6}.75"
    result = grader.grade_bytes(hostile(SOLUTION, f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv('/bin/sleep', ['sleep', '{marker}'])
            os._exit(0)
        os.wait()
        """), "setsid")
    assert (result.status, result.score) == ("graded", FULL)
    assert no_process_with(marker)


# --- secrets and other kernels -----------------------------------------------------------------


def test_environment_and_credential_files(grader, tmp_path, monkeypatch):
    canary = f"hf_{uuid.uuid4().hex}"
    monkeypatch.setenv("HF_TOKEN", canary)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canary)
    secret_file = tmp_path / ".netrc"
    secret_file.write_text(f"machine huggingface.co login x password {canary}\n")
    result = grader.grade_bytes(hostile(BLANK, f"""
        import glob, os
        found = [k for k, v in os.environ.items() if {canary!r} in v or 'TOKEN' in k or 'SECRET' in k]
        for path in [{str(secret_file)!r}, os.path.expanduser('~/.netrc'), '/root/.netrc', '/root/.ssh/id_rsa',
                     '/root/.cache/huggingface/token', '/etc/shadow', *glob.glob('/proc/*/environ'),
                     *glob.glob('/home/*/.*')]:
            try:
                text = open(path, errors='replace').read()
            except OSError:
                continue
            if {canary!r} in text or 'PRIVATE KEY' in text or ':$' in text:
                found.append(path)
        assert not found, found
        """), "secrets")
    assert (result.status, result.score) == ("graded", 0)
    assert appended(result, BLANK) == []


def test_notebook_metadata_cannot_choose_the_kernel_or_python(grader, runner, tmp_path):
    pwned = tmp_path / "pwned"
    metadata = {
        "kernelspec": {"name": "evil", "display_name": "Evil", "language": "python",
                       "argv": ["/bin/sh", "-c", f"touch {pwned}"]},
        "language_info": {"name": "python", "version": "2.7"},
        "interpreter": {"path": "/tmp/evil/bin/python"},
    }
    result = grader.grade_bytes(hostile(SOLUTION, f"""
        import sys
        assert sys.executable == {str(runner.sandbox.python)!r}, sys.executable
        """, metadata=metadata), "other-kernel")
    assert (result.status, result.score) == ("graded", FULL)
    assert appended(result, SOLUTION) == [] and not pwned.exists()


# --- where the sandbox cannot run ---------------------------------------------------------------


def test_an_unreachable_interpreter_is_refused_with_the_reason(runner, tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "python").symlink_to(runner.sandbox.python)
    with pytest.raises(SandboxUnavailable) as info:
        Sandbox(python=private / "python")
    message = str(info.value)
    assert "is mode 700" in message and "--no-sandbox" in message and "\n" not in message


def test_cli_grades_confined_unless_told_and_warns_when_told(tmp_path):
    from typer.testing import CliRunner

    from autograder.cli import _runner, app

    for name in ("warm", "kernel"):  # what `run` and `grade` build: confined unless --no-sandbox
        made, unconfined = _runner(name, untrusted=True, no_sandbox=False), _runner(name, untrusted=True, no_sandbox=True)
        assert made.confined and made.sandbox is not None and not unconfined.confined and unconfined.sandbox is None
        assert not _runner(name, untrusted=False, no_sandbox=False).confined  # `check`: a student's own notebook
        for runner in (made, unconfined):
            runner.close()
    bad = tmp_path / "not-a-notebook.ipynb"
    bad.write_text("{")
    confined = CliRunner().invoke(app, ["run", "t5_decoding", str(bad), "--runner", "kernel"])
    assert "WARNING" not in confined.output and "not a notebook" in confined.output
    allowed = CliRunner().invoke(app, ["run", "t5_decoding", str(bad), "--no-sandbox"])
    assert "WARNING: --no-sandbox" in allowed.output and "hidden checks" in allowed.output
    assert "not a notebook" in allowed.output


def test_the_cage_works_for_an_ordinary_user(tmp_path):
    """Not root: the run keeps the grader's uid inside a user namespace of its own, with the same cage."""
    import json
    import subprocess
    import sys

    if os.geteuid() != 0:
        pytest.skip("needs root to become an ordinary user for the test")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(ROOT)!r})
        import nbformat
        from autograder.runners import Sandbox, WarmRunner
        from autograder.runners.base import RunJob
        cell = nbformat.v4.new_code_cell(
            "import os, socket\\n"
            "seen = dict(uid=os.getuid(), pids=sorted(p for p in os.listdir('/proc') if p.isdigit()),\\n"
            "            nets=[n for _, n in socket.if_nameindex()], root=sorted(os.listdir('/')),\\n"
            "            home=os.path.expanduser('~'))")
        runner = WarmRunner(Sandbox())
        with runner.start(RunJob(nbformat.v4.new_notebook(cells=[cell]), env={{}})) as session:
            import autograder.agent as agent
            answer = agent.decode(session.request(agent.encode({{"op": "get", "name": "seen"}}), 30), 1 << 20)
            print(json.dumps([c.status for c in session.cells] + [answer.get("value")]))
        runner.close()
        """)
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": "/tmp"})
    if "cannot" in done.stderr and "SandboxUnavailable" in done.stderr:
        pytest.skip(f"user namespaces are not allowed here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    status, seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == "ok"
    assert seen["uid"] == 65534 and seen["pids"] == ["1", "2"] and seen["nets"] == ["lo"]
    assert set(seen["root"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "sys", "tmp",
                                 "usr", *{p.split("/")[1] for p in (str(ROOT), sys.prefix, sys.base_prefix)}}
