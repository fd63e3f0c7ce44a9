"""Grading on a Ray cluster (`grade --executor ray`, `serve --executor ray`): a real two-node cluster on this
machine over loopback.

The same 12 submissions (solutions, blanks, wrong answers, a broken file, a hang) must end as the same
exported rows as local grading, when all goes well, when a worker node is killed mid-batch, and when the
driver is killed mid-batch and run again. The submission service grades 50 students' uploads on the cluster
while its worker node is killed and started again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("ray")

from cohort_data import EXERCISE, WRONG, Expect, expected_score, make_course, personal, points  # noqa: E402
from conftest import ROOT, mutate, solution_path  # noqa: E402
from raycluster import Cluster  # noqa: E402
from serving import make_service_course, start_server, submit, wait_graded  # noqa: E402
from test_cohort import _rows  # noqa: E402

pytestmark = pytest.mark.xdist_group("ray")  # one cluster for the module (make test runs --dist loadgroup)
AUTOGRADER = str(Path(sys.executable).parent / "autograder")
FILES = 12


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """12 submissions of t5_decoding, and their rows as the local executor exports them."""
    root = tmp_path_factory.mktemp("ray-cohort")
    course = make_course(root / "course")
    folder = root / "submissions"
    folder.mkdir()
    solution = solution_path(EXERCISE)
    blank = (ROOT / "assignments" / EXERCISE / "t5_decoding.ipynb").read_bytes()
    files = {f"sol{n}": personal(solution.read_bytes(), f"sol{n}") for n in range(4)}
    files |= {f"blank{n}": personal(blank, f"blank{n}") for n in range(2)}
    for n, mistake in enumerate(["forgot the batch dimension", "argmax over the wrong axis"] * 2):
        files[f"wrong{n}"] = personal(mutate(solution, *WRONG[mistake][0]), f"wrong{n}")
    files["broken"] = b'{"cells": [{"cell_type": "code", '
    files["hang"] = personal(mutate(solution, ("translation = tokenizer.decode(",
                                               "while True:\n    pass\ntranslation = tokenizer.decode(")), "hang")
    assert len(files) == FILES
    for sid, data in files.items():
        (folder / f"{sid}.ipynb").write_bytes(data)
    env = {**os.environ, "AUTOGRADER_COURSE_DIR": str(course), "AUTOGRADER_CACHE": str(ROOT / ".cache")}
    made = SimpleNamespace(root=root, folder=folder, env=env)
    made.local_csv = _grade_and_export(made, root / "local.sqlite", "--executor", "local", "--jobs", "2")[1]
    return made


@pytest.fixture(scope="module")
def cluster():
    made = Cluster(cpus_per_node=1).start(nodes=2)
    yield made
    assert made.stop() == [], "Ray processes outlived the cluster"


def _grade(cohort, book: Path, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([AUTOGRADER, "grade", EXERCISE, str(cohort.folder), "--gradebook", str(book),
                             "--device", "cpu", *args], env=cohort.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **popen)


def _export(cohort, book: Path) -> str:
    target = book.with_suffix(".csv")
    out = subprocess.run([AUTOGRADER, "export", EXERCISE, "--csv", str(target), "--gradebook", str(book)],
                         env=cohort.env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return target.read_text()


def _grade_and_export(cohort, book: Path, *args: str) -> tuple[str, str]:
    run = _grade(cohort, book, *args)
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    return output, _export(cohort, book)


def _per_node(output: str) -> dict[str, int]:
    line = next(line for line in output.splitlines() if line.startswith("per node:"))
    return {node: int(n) for node, n in (part.rsplit(" ", 1) for part in line.removeprefix("per node:").split(","))}


def _wait_for_graded(book: Path, count: int, run: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while sum(1 for r in _rows(book) if r["graded_at"]) < count:
        assert run.poll() is None, f"the batch ended before the kill:\n{run.stdout.read()}"
        assert time.monotonic() < deadline, "the batch graded nothing in 10 minutes"
        time.sleep(0.2)


def test_the_cluster_grades_the_same_rows_as_local_grading(cohort, cluster, tmp_path):
    output, exported = _grade_and_export(cohort, tmp_path / "ray.sqlite", "--executor", "ray",
                                         "--ray-address", cluster.address)
    assert exported == cohort.local_csv
    assert f"graded {FILES} now (2 at a time" in output, output
    per_node = _per_node(output)
    assert len(per_node) == 2 and all(per_node.values()), output  # both nodes worked
    assert sum(per_node.values()) <= FILES


def test_the_driver_killed_mid_batch_resumes_and_grades_nothing_twice(cohort, cluster, tmp_path):
    book = tmp_path / "ray.sqlite"
    first = _grade(cohort, book, "--executor", "ray", "--ray-address", cluster.address)
    _wait_for_graded(book, 3, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {r["id"]: r for r in _rows(book) if r["graded_at"]}
    assert len(before) < FILES, "the kill came after the end"
    output, exported = _grade_and_export(cohort, book, "--executor", "ray", "--ray-address", cluster.address)
    after = {r["id"]: r for r in _rows(book)}
    for row_id, row in before.items():  # committed before the kill: kept as it was, not graded again
        assert after[row_id] == row
    assert f"graded {FILES - len(before)} now" in output, output
    assert exported == cohort.local_csv


def test_a_node_killed_mid_batch_loses_no_row_and_grades_none_twice(cohort, cluster, tmp_path):
    book = tmp_path / "ray.sqlite"
    run = _grade(cohort, book, "--executor", "ray", "--ray-address", cluster.address)
    _wait_for_graded(book, 2, run)
    cluster.nodes[1].kill()  # the worker node: its actor and whatever it was grading go with it
    output, _ = run.communicate(timeout=900)
    assert run.returncode == 0, output
    rows = _rows(book)
    assert len(rows) == FILES and not [r for r in rows if r["status"] == "pending"], rows
    assert f"graded {FILES} now" in output, output  # each row finished once
    assert _export(cohort, book) == cohort.local_csv
    cluster.add_node()  # as it was, for whatever runs next


def test_the_service_grades_on_the_cluster_while_a_node_is_lost_and_comes_back(cluster, tmp_path):
    """50 students upload (solutions and two kinds of wrong answer) to `serve --executor ray`; the worker node is
    SIGKILLed mid-queue and started again: every upload ends graded once, scored as `grade` scores it."""
    course, roster = make_service_course(tmp_path, students=50, uploads_per_hour=3)
    server = start_server(tmp_path, course, roster, "--executor", "ray", "--ray-address", cluster.address, jobs=2)
    solution = solution_path(EXERCISE)
    mistakes = ["forgot the batch dimension", "argmax over the wrong axis"]
    expected, ids = {}, {}
    try:
        for n in range(1, 51):
            who = f"s{n}"
            mistake = mistakes[n % 2] if n % 3 == 0 else None
            data = solution.read_bytes() if mistake is None else mutate(solution, *WRONG[mistake][0])
            answer = submit(server, who, personal(data, who))
            assert answer.status_code == 202, answer.text
            ids[who] = answer.json()["id"]
            expected[who] = expected_score(Expect("graded", set(WRONG[mistake][1]) if mistake else set(), None),
                                           points())
        deadline = time.monotonic() + 300
        while sum(1 for r in _rows(server.book) if r["graded_at"]) < 5:
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.3)
        with server.client("s50") as client:  # the last upload waits: its estimate comes from the measured rate
            last = client.get(f"/api/submissions/{ids['s50']}").json()
        assert last["status"] == "queued" and last["estimate_seconds"] > 0, last
        cluster.kill_node(cluster.nodes[1])  # the worker node, mid-queue
        cluster.add_node()
        results = {who: wait_graded(server, who, public_id, timeout=900) for who, public_id in ids.items()}
        with server.browser_session("ta:ta1") as ta:
            dashboard = ta.get(f"/ta/{EXERCISE}").text
    finally:
        server.stop()
    assert "submissions a minute" in dashboard
    per_node = re.search(r"Graded per node: ([^<]+)<", dashboard).group(1)
    assert sum(int(part.rsplit(" ", 1)[1]) for part in per_node.split(", ")) >= 50  # retries count where they ran
    assert {r["status"] for r in results.values()} == {"graded"}
    rows = [r for r in _rows(server.book) if r["source"]]
    assert len(rows) == 50  # one row each, none graded twice into another, none left pending
    assert {r["student_id"]: (r["status"], r["score"]) for r in rows} == \
        {who: ("graded", score) for who, score in expected.items()}  # the scores `grade` gives the same notebooks
