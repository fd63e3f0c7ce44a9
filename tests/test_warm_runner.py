"""The warm runner: the kernel runner's outcomes, nothing shared between submissions, limits enforced."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import nbformat
import pytest

from autograder import agent
from autograder.errors import UserError
from autograder.exercise import Exercise
from autograder.grading import GradeOptions, Grader
from autograder.models.provision import store_for
from autograder.runners import DEFAULT_RUNNER, RUNNERS, KernelRunner, WarmRunner, get_runner
from autograder.notebook import inject_parameters
from autograder.runners.base import RunJob, RunLimits, SessionError
from autograder.runners.warm import WORKER_FILE
from autograder.runners.warm_worker import PREFAULT_MAX_BYTES
from conftest import failed_checks, mutate, solution_path, student_path, with_cells_appended, wrong_answers

WRONG = wrong_answers("t5_decoding")
SOLUTION = solution_path("t5_decoding")


# --- same outcomes as the kernel runner -----------------------------------------------

SUBMISSIONS = {
    "solution": lambda: SOLUTION.read_bytes(),
    "blank student notebook": lambda: student_path("t5_decoding").read_bytes(),
    **{f"wrong: {case}": (lambda case=case: mutate(SOLUTION, *WRONG[case][0]))
       for case in ("forgot the batch dimension", "argmax over the wrong axis", "a cell that raises")},
    "process exits at the end": lambda: with_cells_appended(SOLUTION, "import os\nos._exit(3)"),
}


@pytest.fixture(scope="module")
def graders():
    made = {name: Grader(Exercise("t5_decoding"), GradeOptions(runner=RUNNERS[name]())) for name in ("kernel", "warm")}
    yield made
    for grader in made.values():
        grader.close()
        grader.options.runner.close()


def _essentials(result) -> dict:
    return {
        "status": result.status,
        "message": result.message,
        "score": result.score,
        "checks": [(c.id, c.outcome, c.message) for c in result.checks],
        "problem cells": [(c.index, c.status, c.error) for c in result.diagnostics.problem_cells],
    }


@pytest.mark.parametrize("case", list(SUBMISSIONS))
def test_warm_and_kernel_runners_grade_alike(graders, case):
    data = SUBMISSIONS[case]()
    kernel, warm = (graders[name].grade_bytes(data, case) for name in ("kernel", "warm"))
    assert warm.diagnostics.runner == "warm" and kernel.diagnostics.runner == "kernel"
    assert _essentials(warm) == _essentials(kernel)


def test_a_crash_ends_one_submission_and_the_next_is_graded_normally(graders):
    grader = graders["warm"]
    crashed = grader.grade_bytes(with_cells_appended(SOLUTION, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
                                 "killed")
    assert crashed.status == "crashed" and crashed.score == 0
    [cell] = crashed.diagnostics.problem_cells
    assert cell.status == "died"
    after = grader.grade_file(SOLUTION)
    assert after.status == "graded" and failed_checks(after) == set() and after.score == after.max_score


# --- the runner itself, on small notebooks --------------------------------------------

STORE_ENV = store_for("tiny").require().env()


@pytest.fixture(scope="module")
def warm():
    runner = WarmRunner()
    yield runner
    runner.close()


def _job(*sources: str, **limits) -> RunJob:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return RunJob(nb, env=STORE_ENV, limits=RunLimits(**limits))


def _value(session, name: str):
    answer = agent.decode(session.request(agent.encode({"op": "get", "name": name}), timeout=30), max_bytes=1 << 20)
    assert answer["status"] == "ok", answer
    return answer["value"]


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


CELL_KINDS = (
    "x = 1\nprint('hello')\nx",
    "1/0",
    "def broken(:\n    pass",
    "print('x' * 500)",
    "from IPython.display import display\ndisplay('shown')\n[1, 2];",
    # Python, C-level and subprocess output on both streams: recorded in the order it was written.
    "import os, sys\nprint('first')\nos.system('echo from a subprocess')\n"
    "print('then stderr', file=sys.stderr)\nos.system('echo late >&2')",
    # Streams run on; a result, a display or an error starts a line of its own; the text ends a line.
    "from IPython.display import display\nprint('no newline', end='')\ndisplay(1)\nprint('x', end='')\n2",
    "print('half a line', end='')\n1/0",
    "print('the end', end='')",
    "%not_a_magic",
    "input('name?')",
    "import time\nwhile True:\n    time.sleep(0.01)",
    "print('still running after the timeout')",
    "raise SystemExit(3)",
)


def test_cells_are_recorded_as_the_kernel_runner_records_them(warm):
    job = _job(*CELL_KINDS, cell_timeout=3, output_bytes=200)
    records = {}
    for name, runner in (("warm", warm), ("kernel", KernelRunner())):
        with runner.start(job) as session:
            records[name] = [(c.status, c.output, c.error) for c in session.cells]
    assert records["warm"] == records["kernel"]
    statuses = [status for status, _, _ in records["warm"]]
    assert statuses == ["ok", "error", "error", "ok", "ok", "ok", "ok", "error", "ok", "ok", "error", "timeout", "ok", "error"]
    assert records["warm"][3][1].endswith("[output truncated: over 200 characters]\n")
    assert records["warm"][5][1] == "first\nfrom a subprocess\nthen stderr\nlate\n0\n"
    assert [output for _, output, _ in records["warm"][6:9]] == [
        "no newline\n1\nx\n2\n", "half a line\nZeroDivisionError: division by zero\n", "the end\n"]


def test_a_cell_past_its_limit_is_interrupted_once_when_it_stops(warm):
    # The cell takes a second to stop (as a traceback takes on a loaded machine); an interrupt sent meanwhile
    # would break into that and change what the cell shows. Only a cell still running is interrupted again.
    job = _job("import signal, time\n"
               "hits = []\n"
               "def stop_slowly(*_):\n"
               "    hits.append(1)\n"
               "    if len(hits) == 1:\n"
               "        time.sleep(1)\n"
               "        raise KeyboardInterrupt\n"
               "signal.signal(signal.SIGINT, stop_slowly)\n"
               "while True:\n"
               "    time.sleep(0.01)",
               "hits_seen = len(hits)", cell_timeout=1)
    for runner in (warm, KernelRunner()):
        with runner.start(job) as session:
            assert session.cells[0].status == "timeout"
            assert _value(session, "hits_seen") == 1, type(runner).__name__


def test_nothing_of_one_submission_reaches_the_next(warm):
    first = warm.start(_job(
        "import os, torch, transformers\n"
        "secret = 42\n"
        "torch.leaked = True\n"
        "torch.nn.functional.softmax = lambda *a, **k: 'patched'\n"
        "transformers.AutoTokenizer = None\n"
        "os.environ['LEAKED'] = '1'\n"
        "open(os.path.expanduser('~/left-behind.txt'), 'w').write('x')\n"
        "where = os.getcwd()",
    ))
    second = warm.start(_job(  # while the first is still alive
        "import os, torch, transformers\n"
        "seen = {'secret': 'secret' in globals(), 'torch': hasattr(torch, 'leaked'),\n"
        "        'softmax': torch.nn.functional.softmax.__module__, 'tokenizer': transformers.AutoTokenizer is None,\n"
        "        'env': os.environ.get('LEAKED'), 'file': os.path.exists(os.path.expanduser('~/left-behind.txt'))}\n"
        "where = os.getcwd()",
    ))
    try:
        assert [c.status for c in first.cells + second.cells] == ["ok", "ok"]
        assert _value(second, "seen") == {"secret": False, "torch": False, "softmax": "torch.nn.functional",
                                          "tokenizer": False, "env": None, "file": False}
        first_dir = _value(first, "where")
        assert first_dir != _value(second, "where")
    finally:
        first.close()
        second.close()
    assert _gone_path(first_dir), "the first submission's folder outlived its session"


def test_student_environment_and_folders_are_the_submissions_own(warm):
    with warm.start(_job(
        "import os, tempfile, datasets.config, huggingface_hub.constants as hub\n"
        "paths = [os.getcwd(), os.environ['HOME'], tempfile.gettempdir(), hub.HF_HOME, str(datasets.config.HF_DATASETS_CACHE)]\n"
        "env = dict(os.environ)",
    )) as session:
        cwd, home, tmp, hf_home, datasets_cache = _value(session, "paths")
        env = _value(session, "env")
    assert home == cwd and tmp == os.path.join(cwd, "tmp")
    assert hf_home.startswith(cwd + "/") and datasets_cache.startswith(cwd + "/")
    assert env["HF_HUB_CACHE"] == STORE_ENV["HF_HUB_CACHE"] and env["HF_HUB_OFFLINE"] == "1"
    assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in env  # the zygote's own setting stays there


def test_one_zygote_serves_every_submission_and_ends_with_the_runner():
    runner = WarmRunner()
    seen = []
    for _ in range(2):
        with runner.start(_job("import os, random, numpy, torch\n"
                               "seen = [os.getppid(), random.random(), float(numpy.random.rand()), float(torch.rand(1))]")) as session:
            seen.append(_value(session, "seen"))
    runner.close()
    (zygote, *draws), (same_zygote, *other_draws) = seen
    assert zygote == same_zygote
    assert all(a != b for a, b in zip(draws, other_draws)), "each submission gets fresh random seeds"
    assert _gone(zygote)


def _gone_path(path: str, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not os.path.exists(path)


def test_a_grader_that_dies_without_closing_leaves_no_process_or_folder_behind():
    script = (
        "import json, os, sys, nbformat\n"
        "from autograder import agent\n"
        "from autograder.runners import WarmRunner\n"
        "from autograder.runners.base import RunJob\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('import os\\nwhere = (os.getcwd(), os.getppid(), os.getpid())')])\n"
        "runner = WarmRunner()\n"
        f"session = runner.start(RunJob(nb, env={STORE_ENV!r}))\n"
        "blob = session.request(agent.encode({'op': 'get', 'name': 'where'}), timeout=30)\n"
        "where = agent.decode(blob, max_bytes=1 << 20)['value']\n"
        "print(json.dumps([*where, str(runner._pool.zygote.home)]), flush=True)\n"
        "os._exit(0)  # no close, no finalizer: as if the grader were killed\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    workdir, zygote, child, zygote_home = json.loads(proc.stdout.strip().splitlines()[-1])
    assert _gone(child) and _gone(zygote)
    assert _gone_path(workdir), "the submission's folder outlived its grader"
    assert _gone_path(zygote_home), "the zygote's folder outlived its grader"


def test_a_submission_that_kills_the_zygote_only_ends_itself(warm):
    # The child dies through PR_SET_PDEATHSIG once the zygote is gone; that is asynchronous, so the
    # hostile cell waits for it rather than racing the next cell.
    killer = "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(30)"
    with warm.start(_job(killer, "print('unreachable')")) as session:
        assert session.died and [c.status for c in session.cells] == ["died", "skipped"]
    with warm.start(_job("ok = 1")) as session:
        assert _value(session, "ok") == 1


def test_a_cell_past_its_time_limit_is_interrupted_and_the_notebook_goes_on(warm):
    with warm.start(_job("while True:\n    pass", "after = 'ran'", cell_timeout=2)) as session:
        first, second = session.cells
        assert (first.status, first.error) == ("timeout", "stopped after 2 s of CPU time (cell time limit)")
        assert second.status == "ok" and not session.died and _value(session, "after") == "ran"


def test_a_cell_that_ignores_the_interrupt_is_killed(warm):
    with warm.start(_job("import os\nprint(os.getpid())",
                         "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                         "print('unreachable')", cell_timeout=2)) as session:
        assert [c.status for c in session.cells] == ["ok", "timeout", "skipped"]
        assert session.died
        assert _gone(int(session.cells[0].output))


def test_the_notebook_time_limit_cuts_the_cell_that_runs_past_it(warm):
    # Limits count the run's CPU time, also unconfined (its process tree): the spinning cell is cut at
    # what is left of the notebook's 4 s, not at its own 60 s.
    with warm.start(_job("sum(range(10**6))", "while True:\n    pass", notebook_timeout=4)) as session:
        assert [c.status for c in session.cells] == ["ok", "timeout"]
        assert session.notebook_timed_out and not session.died
        assert re.fullmatch(r"stopped after [1-4] s of CPU time \(cell time limit\)", session.cells[1].error)


def test_a_call_past_its_time_limit_fails_and_the_process_keeps_answering(warm):
    with warm.start(_job("def spin():\n    while True:\n        pass", "ok = 1")) as session:
        with pytest.raises(SessionError, match="did not finish within 1 s"):
            session.request(agent.encode({"op": "call", "name": "spin"}), timeout=1)
        assert _value(session, "ok") == 1


def test_a_call_that_ignores_the_interrupt_is_killed(warm):
    with warm.start(_job("import os, signal\npid = os.getpid()\n"
                         "def spin():\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True:\n        pass")) as session:
        pid = _value(session, "pid")
        with pytest.raises(SessionError, match="did not finish"):
            session.request(agent.encode({"op": "call", "name": "spin"}), timeout=1)
        assert _gone(pid)
        with pytest.raises(SessionError, match="stopped answering"):
            _value(session, "pid")


PREFAULT_PROBE = r"""
import gc, importlib, importlib.util, json, os, resource, sys
import nbformat
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
for name in worker.PRELOAD:
    importlib.import_module(name)
import torch
from IPython.core.interactiveshell import InteractiveShell
torch.set_num_threads(1)
worker._warm_up()
gc.collect()
gc.freeze()
ranges = worker.learn_prefault()  # as the zygote does, after its warm-up
cells = [c.source for c in nbformat.read(sys.argv[2], as_version=4).cells if c.cell_type == "code"]

def faults_of_a_child(prefaulted):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        worker.prefault(ranges if prefaulted else [])
        shell = InteractiveShell.instance()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        ok = all(shell.run_cell(source, silent=True).success for source in cells)
        os.write(write, json.dumps([ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]).encode())
        os._exit(0)
    os.close(write)
    said = os.read(read, 100)
    os.waitpid(pid, 0)
    return json.loads(said)

print(json.dumps({"bytes": sum(end - start for start, end in ranges), "cold": faults_of_a_child(False),
                  "prefaulted": faults_of_a_child(True)}))
"""


def test_a_prefaulted_child_takes_a_fraction_of_the_page_faults(graders, tmp_path):
    """The pages the zygote learns from its own warm-up are the ones a notebook's child would copy one fault at a
    time: copied in bulk beforehand, the solution notebook runs with far fewer faults (counted, not timed)."""
    notebook = tmp_path / "solution.ipynb"
    nbformat.write(inject_parameters(nbformat.read(SOLUTION, as_version=4), graders["warm"].parameters()), notebook)
    proc = subprocess.run([sys.executable, "-c", PREFAULT_PROBE, str(WORKER_FILE), str(notebook)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **STORE_ENV}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    (cold_ok, cold), (prefaulted_ok, prefaulted) = found["cold"], found["prefaulted"]
    assert cold_ok and prefaulted_ok
    assert 0 < found["bytes"] <= PREFAULT_MAX_BYTES
    assert prefaulted < cold / 2, found


def test_runner_registry():
    assert set(RUNNERS) >= {"kernel", "warm"}
    assert isinstance(get_runner("kernel", confined=False), KernelRunner)
    assert not get_runner("warm", confined=False).confined
    assert type(get_runner()) is RUNNERS[DEFAULT_RUNNER]
    assert DEFAULT_RUNNER == (os.environ.get("AUTOGRADER_RUNNER") or "warm")  # on Linux
    with pytest.raises(UserError, match="Unknown runner 'fast'"):
        get_runner("fast")
