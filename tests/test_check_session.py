"""A grader's check session: configured and collected once, yet every submission is checked as if it were the first."""

from __future__ import annotations

import threading

import pytest

from autograder import wire
from autograder.checking import CheckSession
from autograder.errors import UserError
from autograder.runners.base import RunLimits
from autograder.submission import Submission
from test_wire import InProcessSession

# A session-scoped fixture reads the student's answer: if a round reused the fixtures of the round before, the
# second submission would be judged on the first one's answer.
CHECKS = """
import pytest

@pytest.fixture(scope="session")
def answer(submission):
    return submission.value("answer")

def test_answer(answer):
    assert answer == 3, f"`answer` is {answer!r}, expected 3"

def test_scratch_space_is_fresh(tmp_path, tmp_path_factory):
    (tmp_path / "scratch.txt").write_text("left behind")
    left = [p.name for p in tmp_path_factory.getbasetemp().iterdir() if not p.is_symlink()]  # pytest links the newest
    assert left == [tmp_path.name], f"{left} next to {tmp_path.name}"
"""


def submission(answer: object) -> Submission:
    return Submission(InProcessSession({"answer": answer}), RunLimits(), {})


@pytest.fixture()
def check_file(tmp_path):
    path = tmp_path / "test_checks.py"
    path.write_text(CHECKS)
    return path


def outcomes(checks: CheckSession, answer: object) -> dict[str, str]:
    return {o.id: o.outcome for o in checks.run(None, submission(answer))}


def test_each_submission_is_checked_on_its_own_answer(check_file):
    with CheckSession([check_file]) as checks:
        rounds = [outcomes(checks, answer) for answer in (4, 3, 4, 3)]
    assert [r["test_answer"] for r in rounds] == ["failed", "passed", "failed", "passed"]
    assert all(r["test_scratch_space_is_fresh"] == "passed" for r in rounds)


def test_options_from_the_environment_do_not_change_the_checks(check_file, monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k nothing_matches -x")
    monkeypatch.setenv("PYTEST_PLUGINS", "a_plugin_that_is_not_installed")
    with CheckSession([check_file]) as checks:
        assert outcomes(checks, 3) == {"test_answer": "passed", "test_scratch_space_is_fresh": "passed"}


def test_broken_check_files_stop_before_any_submission(tmp_path):
    broken = tmp_path / "test_broken.py"
    broken.write_text("def test_x(submission):\n    return (\n")
    before = set(threading.enumerate())
    with pytest.raises(UserError, match="The check files are broken"):
        CheckSession([broken])
    assert set(threading.enumerate()) <= before


def test_closing_ends_the_session_and_removes_its_scratch_space(check_file):
    before = set(threading.enumerate())
    checks = CheckSession([check_file])
    outcomes(checks, 3)
    [thread] = set(threading.enumerate()) - before
    scratch = checks._tmp
    checks.close()
    assert not scratch.exists() and not thread.is_alive()
    with pytest.raises(RuntimeError, match="has ended"):
        checks.run(None, submission(3))


def test_the_checks_ask_from_their_own_thread_and_the_kernel_runner_carries_it_to_its_session(check_file):
    """The checks' thread sends its requests itself (no hop for runners that do not need one); a Jupyter kernel
    client belongs to its thread, so the kernel runner carries every call to the one thread its session owns."""
    from concurrent.futures import ThreadPoolExecutor

    from autograder.runners.kernel import _OwnThread

    askers = set()

    class RecordingSession(InProcessSession):
        def request(self, payload: bytes, timeout: float) -> bytes:
            askers.add(threading.current_thread())
            return super().request(payload, timeout)

    with CheckSession([check_file]) as checks:
        graded = checks.run(None, Submission(RecordingSession({"answer": 3}), RunLimits(), {}))
    assert {o.outcome for o in graded} == {"passed"} and askers and threading.current_thread() not in askers

    askers.clear()
    started_on = []

    def start() -> RecordingSession:
        started_on.append(threading.current_thread())
        return RecordingSession({"answer": 3})

    carried = _OwnThread(start)
    with ThreadPoolExecutor(2) as others:
        list(others.map(lambda _: carried.request(wire.encode({"op": "get", "name": "answer"}), 5), range(4)))
    assert askers == set(started_on) and started_on[0] is not threading.current_thread()
    assert carried.cells == [] and carried.died is False
    carried.close()
