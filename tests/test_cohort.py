"""Cohort grading end to end: one generated cohort of 30+ submissions, graded once by the CLI (killed with
SIGKILL part-way and resumed), then every promise checked on that one gradebook: per-student scores,
statuses, duplicates, roster, idempotence, regrade without notebooks, exports, feedback, report."""

from __future__ import annotations

import csv
import fcntl
import html
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from autograder.gradebook import Gradebook
from cohort_data import ALL_CHECKS, EXERCISE, MISTAKES, NOTEBOOK_TIMEOUT, WRONG, Cohort, expected_score, make_cohort, points
from conftest import ROOT, mutate, solution_path

AUTOGRADER = [str(Path(sys.executable).parent / "autograder")]
VISIBILITIES = {"visible", "hidden", "after_due_date", "after_published"}


def _autograder(cohort, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([*AUTOGRADER, *args], env=cohort.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


def _rows(db_path: Path) -> list[dict]:
    if not db_path.exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM submissions ORDER BY id")]
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        db.close()


def _descendants(pid: int) -> set[int]:
    children = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            children[int(stat.read_text().rsplit(")", 1)[1].split()[1])].append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = set(), [pid]
    while todo:
        for child in children[todo.pop()]:
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The graded cohort, made once even when pytest-xdist spreads this module over several workers."""
    xdist = os.environ.get("PYTEST_XDIST_WORKER")
    root = (tmp_path_factory.getbasetemp().parent if xdist else tmp_path_factory.getbasetemp()) / "cohort-shared"
    root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state_file = root / "state.json"
        if not state_file.exists():
            state_file.write_text(json.dumps(_grade_cohort_killing_it_once(root)))
        state = json.loads(state_file.read_text())
    return SimpleNamespace(**{**state, "cohort": Cohort.from_json(state["cohort"]), "book": Path(state["book"])})


def _grade_cohort_killing_it_once(root: Path) -> dict:
    """Grade the cohort with the CLI; SIGKILL it once a few notebooks are committed; run it again to the end;
    run it a third time (nothing left to grade). Returns what the tests check, as JSON-able data."""
    deadline = (datetime.now(timezone.utc) + timedelta(days=7)).replace(microsecond=0)
    cohort = make_cohort(root, deadline)
    book = root / "gradebook.sqlite"
    command = ["grade", EXERCISE, str(cohort.folder), "--gradebook", str(book), "--roster", str(cohort.roster),
               "--deadline", deadline.isoformat(), "--jobs", "2", "--device", "cpu", "--no-sandbox"]

    started = time.monotonic()
    with open(root / "killed-run.log", "w") as log:
        first = subprocess.Popen([*AUTOGRADER, *command], env=cohort.env(), stdout=log, stderr=subprocess.STDOUT)
    while True:  # until three notebooks that really ran are committed
        ran = [r for r in _rows(book) if (r["wall_time"] or 0) > 1]
        if len(ran) >= 3:
            break
        assert first.poll() is None, f"the batch ended before it could be killed:\n{(root / 'killed-run.log').read_text()}"
        assert time.monotonic() - started < 900, "the batch committed nothing in 15 minutes"
        time.sleep(0.3)
    workers = _descendants(first.pid)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic() - started
    before = _rows(book)
    deadline_gone = time.monotonic() + 20
    while any(_alive(p) for p in workers) and time.monotonic() < deadline_gone:
        time.sleep(0.2)

    second = _autograder(cohort, *command)
    resumed_output, _ = second.communicate(timeout=1800)
    assert second.returncode == 0, resumed_output
    total = time.monotonic() - started

    rows = _rows(book)
    again_started = time.monotonic()
    third = _autograder(cohort, *command)
    again_output, _ = third.communicate(timeout=600)
    assert third.returncode == 0, again_output
    print(f"\ncohort of {cohort.files} files: killed after {killed_at:.0f} s, graded by {total:.0f} s; "
          f"re-run {time.monotonic() - again_started:.0f} s")
    return {"cohort": cohort.to_json(), "book": str(book), "command": command, "before_kill": before,
            "orphans": sorted(p for p in workers if _alive(p)), "resumed_output": resumed_output,
            "again_output": again_output, "rows": rows}


def _current(graded) -> dict[str, dict]:
    current = [r for r in graded.rows if r["current"]]
    assert len(current) == len({r["student_id"] for r in current})
    return {r["student_id"]: r for r in current}


def test_cohort_is_large_and_mixed(graded):
    expected = graded.cohort.expected
    assert graded.cohort.files >= 30
    kinds = Counter(e.status for e in expected.values())
    assert kinds["graded"] >= 15 and kinds["crashed"] >= 2 and kinds["timeout"] >= 1 and kinds["invalid"] >= 6
    assert set(MISTAKES) <= set(WRONG)


def test_every_student_gets_the_expected_status_score_and_failures(graded):
    check_points = points()
    current = _current(graded)
    assert set(current) == set(graded.cohort.expected)
    for sid, expect in graded.cohort.expected.items():
        row = current[sid]
        assert row["status"] == expect.status, (sid, row["message"])
        assert row["source"] == expect.source, sid
        if expect.status == "missing":
            assert row["record"] is None and row["score"] is None
            continue
        record = json.loads(row["record"])
        failing = {o["id"] for o in record["outcomes"] if o["outcome"] in ("failed", "error")}
        assert failing == expect.failing, sid
        # no [late] table in the exercise's rubric: lateness is recorded and costs nothing
        assert row["score"] == expected_score(expect, check_points), sid
        assert row["days_late"] == expect.late_days, sid
        assert row["graded_at"] and row["device"] == "cpu" and row["profile"] == "tiny" and row["runner"]
        if expect.status == "invalid":
            assert row["message"], f"{sid}: an invalid file must say why"


def test_hangs_are_stopped_and_crashes_contained(graded):
    current = _current(graded)
    hang = json.loads(current["s19"]["record"])
    assert [c["status"] for c in hang["diagnostics"]["problem_cells"]] == ["timeout"]
    assert "died" in current["s17"]["message"] and "died" in current["s20"]["message"]
    assert f"did not finish within {NOTEBOOK_TIMEOUT} s" in current["s21"]["message"]


def test_sigkill_then_resume_loses_nothing_and_grades_nothing_twice(graded):
    assert not graded.orphans, "workers or kernels outlived the killed batch"
    rows = graded.rows
    # one row per file (a changed file would be a second one), one per missing roster student
    assert len(rows) == graded.cohort.files + 2
    assert len({(r["student_id"], r["sha256"]) for r in rows if r["sha256"]}) == graded.cohort.files
    assert not [r for r in rows if r["status"] == "pending"]
    for old in graded.before_kill:
        if old["graded_at"]:  # committed before the kill: kept as it was, not graded again
            new = next(r for r in rows if r["id"] == old["id"])
            assert (new["graded_at"], new["record"]) == (old["graded_at"], old["record"])
    assert any(r["status"] == "pending" for r in graded.before_kill), "the kill came after the end"


def test_second_run_grades_nothing(graded):
    assert "graded 0 now" in graded.again_output
    assert _rows(graded.book) == graded.rows


def test_duplicates_latest_notebook_wins_and_history_is_kept(graded):
    by_source = {r["source"]: r for r in graded.rows}
    for source in graded.cohort.superseded:
        assert by_source[source]["status"] == "superseded" and not by_source[source]["current"]
        assert by_source[source]["record"] is None
    assert _current(graded)["s28"]["source"] == "s28/final.ipynb"
    assert _current(graded)["s29"]["source"] == "s29.ipynb"


def test_roster_missing_and_flagged(graded):
    with Gradebook(graded.book) as book:
        roster = book.roster()
    assert "visitor" not in roster and {"m01", "m02"} <= set(roster.students)
    assert "Not in the roster: visitor" in " ".join(graded.resumed_output.split())


def _late_rubric(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """The exercise's rubric with changed points and a late policy."""
    rubric = tomllib.loads((ROOT / "rubrics" / f"{EXERCISE}.toml").read_text())
    rubric["checks"]["test_translation"]["points"] = 3
    rubric["checks"]["test_next_token_argmax"]["points"] = 1
    lines = []
    for cid, rule in rubric["checks"].items():
        lines.append(f"[checks.{cid}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in rule.items()]
    lines += ["[late]", 'policy = "percent_per_day"', "percent_per_day = 10", "max_percent = 30", "grace_minutes = 60"]
    path = tmp_path / "changed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, {cid: rule["points"] for cid, rule in rubric["checks"].items()}


def _copy(book: Path, target: Path) -> Path:
    src, dst = sqlite3.connect(book), sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


def test_regrade_after_points_change_runs_no_notebook(graded, tmp_path, monkeypatch):
    from autograder import runners
    from autograder.cohort import regrade
    from autograder.grading import Grader

    def no_run(*args, **kwargs):
        raise AssertionError("regrade started a notebook")

    for runner in runners.RUNNERS.values():
        monkeypatch.setattr(runner, "start", no_run)
    monkeypatch.setattr(runners, "get_runner", no_run)
    monkeypatch.setattr(Grader, "__init__", no_run)
    rubric, new_points = _late_rubric(tmp_path)
    with Gradebook(_copy(graded.book, tmp_path / "book.sqlite")) as book:
        policy, changed, retired = regrade(book, EXERCISE, rubric)
        rows = {r.student_id: r for r in book.rows(EXERCISE)}
    assert policy.origin == str(rubric) and changed and retired == set()
    late = {"s02": 0.3, "s04": 0.2}  # 5 started days (capped at 30%), 2 days; s03 is within the grace period
    for sid, expect in graded.cohort.expected.items():
        if expect.status != "missing":
            assert rows[sid].score == expected_score(expect, new_points, late.get(sid, 0)), sid
    assert rows["s03"].late_penalty == 0 and rows["s02"].days_late == 5


def test_regrade_cli_with_unknown_check_in_rubric_fails_cleanly(graded, tmp_path):
    bad = tmp_path / "typo.toml"
    bad.write_text((ROOT / "rubrics" / f"{EXERCISE}.toml").read_text() + "\n[checks.test_nonexistent]\npoints = 1\n")
    out = subprocess.run([*AUTOGRADER, "regrade", EXERCISE, "--rubric", str(bad), "--gradebook",
                          str(_copy(graded.book, tmp_path / "b.sqlite"))], env=graded.cohort.env(),
                         capture_output=True, text=True)
    assert out.returncode == 2 and "test_nonexistent" in out.stderr and "Traceback" not in out.stderr


def test_csv_export_has_one_line_per_student_in_an_importable_layout(graded, tmp_path):
    target = tmp_path / "grades.csv"
    out = subprocess.run([*AUTOGRADER, "export", EXERCISE, "--csv", str(target), "--gradebook", str(graded.book)],
                         env=graded.cohort.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    with target.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        lines = list(reader)
    check_points = points()
    assert header[0] == "student_id" and {"total", "late_penalty", "status", "max_score"} <= set(header)
    assert set(check_points) <= set(header)
    assert sorted(r["student_id"] for r in lines) == sorted(graded.cohort.expected)
    for line in lines:
        expect = graded.cohort.expected[line["student_id"]]
        assert line["status"] == expect.status
        assert float(line["total"]) == (0 if expect.status == "missing" else expected_score(expect, check_points))
        for cid in ALL_CHECKS:
            value = line[cid]
            assert value == "" if expect.status == "missing" else 0 <= float(value) <= check_points[cid]
        assert line["test_half_precision_on_cuda"] == ""  # not run on CPU: no points either way
        assert ("not_in_roster" in line["flags"]) == (line["student_id"] in graded.cohort.not_in_roster)


def test_gradescope_export_matches_the_results_json_format(graded, tmp_path):
    out = subprocess.run([*AUTOGRADER, "export", EXERCISE, "--gradescope", str(tmp_path / "gs"), "--gradebook",
                          str(graded.book)], env=graded.cohort.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    files = sorted((tmp_path / "gs").glob("*/results.json"))
    graded_students = {sid for sid, e in graded.cohort.expected.items() if e.status != "missing"}
    assert {f.parent.name for f in files} == graded_students
    for path in files:
        results = json.loads(path.read_text())
        assert isinstance(results["score"], (int, float)) and isinstance(results["execution_time"], (int, float))
        assert results["output_format"] in {"text", "html", "simple_format", "md", "ansi"}
        assert results["stdout_visibility"] in VISIBILITIES
        assert isinstance(results["tests"], list) and results["tests"]
        for test in results["tests"]:
            assert {"name", "score", "max_score", "output", "visibility"} <= set(test)
            assert test["visibility"] in VISIBILITIES
            if test["output"].startswith("not run"):  # neither passed nor failed: no status, no points
                assert "status" not in test and test["max_score"] == 0 and test["output"].count("not run") == 1
            else:
                assert test["status"] in {"passed", "failed"}
            assert 0 <= test["score"] <= test["max_score"]
        assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))  # no late policy here
        expect = graded.cohort.expected[path.parent.name]
        assert results["score"] == expected_score(expect, points())


def test_feedback_hides_unreleased_checks_until_release(graded, tmp_path):
    env = graded.cohort.env()
    for flag, folder in (([], "held"), (["--release"], "released")):
        out = subprocess.run([*AUTOGRADER, "feedback", EXERCISE, "--out", str(tmp_path / folder), "--gradebook",
                              str(graded.book), *flag], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
    held = (tmp_path / "held" / "s07.html").read_text()
    released = (tmp_path / "released" / "s07.html").read_text()
    assert {p.stem for p in (tmp_path / "held").glob("*.html")} == set(graded.cohort.expected)
    assert (tmp_path / "held" / "s07.md").is_file()
    # s07 forgot the batch dimension: a visible shape check and hidden value checks fail; only the released
    # page shows the hidden ones (the deadline is a week away, so after_due_date checks are not yet released)
    messages = {o["id"]: o["message"] for o in json.loads(_current(graded)["s07"]["record"])["outcomes"]}
    shown, hidden = messages["test_encoder_output_shape"], messages["test_encoder_output_values"]
    assert shown and hidden and shown != hidden
    assert html.escape(shown) in held and html.escape(hidden) not in held and html.escape(hidden) in released
    assert held.count('class="word hidden"') == 9 and "your total is released later" in held
    assert 'class="word hidden"' not in released and "Score: 8 / 17" in released
    invalid = (tmp_path / "released" / "s22.html").read_text()
    assert "not valid JSON" in invalid
    assert "No submission was received." in (tmp_path / "released" / "m01.html").read_text()


def test_report_summarises_the_cohort(graded, tmp_path):
    out = subprocess.run([*AUTOGRADER, "report", EXERCISE, "--out", str(tmp_path), "--gradebook", str(graded.book)],
                         env=graded.cohort.env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert "http://" not in page and "https://" not in page  # self-contained
    for text in ("Pass rate per check", "Commonest failure messages", "Submissions that need a look", "visitor",
                 "m01", "s22"):
        assert text in page


def test_changed_file_is_graded_again_and_keeps_its_history(graded, tmp_path):
    """On a copy of the cohort and gradebook: s01 replaces a correct notebook with one whose cell raises."""
    folder = shutil.copytree(graded.cohort.folder, tmp_path / "submissions")  # keeps the files' times
    book = _copy(graded.book, tmp_path / "gradebook.sqlite")
    path = folder / "s01.ipynb"
    later = path.stat().st_mtime + 3600  # resubmitted an hour after the first version
    edits, lost = WRONG["a cell that raises"]
    path.write_bytes(mutate(solution_path(EXERCISE), *edits))
    os.utime(path, (later, later))
    command = [*graded.command]
    command[command.index(str(graded.cohort.folder))] = str(folder)
    command[command.index(str(graded.book))] = str(book)
    out = _autograder(graded.cohort, *command).communicate(timeout=600)[0]
    assert "graded 1 now" in out, out
    s01 = [r for r in _rows(book) if r["student_id"] == "s01"]
    assert [(r["status"], r["current"]) for r in s01] == [("graded", 0), ("graded", 1)]
    assert s01[0]["record"] == next(r for r in graded.rows if r["id"] == s01[0]["id"])["record"]
    assert s01[1]["score"] == 17 - sum(points()[c] for c in lost) and set(lost) < ALL_CHECKS


@pytest.mark.slow
def test_a_dying_or_stuck_grading_worker_never_takes_the_batch_down(tmp_path, monkeypatch):
    from autograder import cohort as cohort_module
    from autograder.exercise import Exercise
    from autograder.grading import GradeOptions
    from autograder.runners.base import RunLimits
    from cohort_data import FakeRunner
    from conftest import with_cells_appended

    folder = tmp_path / "subs"
    folder.mkdir()
    for name, marker in (("ok1", "pass"), ("die", "# DIE-NOW"), ("hang", "# HANG-NOW"), ("ok2", "x = 1")):
        (folder / f"{name}.ipynb").write_bytes(with_cells_appended(solution_path(EXERCISE), marker))
    monkeypatch.setattr(cohort_module, "BACKSTOP_MARGIN", 5.0)  # backstop: 2 * 2 s + 5 s
    options = GradeOptions(runner=FakeRunner(), device="cpu", limits=RunLimits(cell_timeout=1, notebook_timeout=2))
    with Gradebook(tmp_path / "g.sqlite") as book:
        summary = cohort_module.grade_cohort(Exercise(EXERCISE), folder, book, options, jobs=2)
        rows = {r.student_id: r for r in book.rows(EXERCISE)}
    assert summary.graded == 4
    assert rows["die"].status == "error" and "died twice" in rows["die"].message
    assert rows["hang"].status == "timeout" and "did not finish within 9 s" in rows["hang"].message
    for ok in ("ok1", "ok2"):
        assert rows[ok].status == "error" and "could not be started" in rows[ok].message


def test_parallel_jobs_on_a_gpu_follow_the_exercise_s_declared_memory(monkeypatch):
    import torch

    from autograder.exercise import Exercise
    from autograder.executors import capacity

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    monkeypatch.setattr(capacity, "slot_memory", lambda profile, exercise: 1)  # main memory never the limit here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (7 * capacity.GIB, 141 * capacity.GIB))
    t5, tokenizer = Exercise("t5_decoding"), Exercise("tokenizer")
    assert t5.spec.limits.gpu_memory("full") == 2 and tokenizer.spec.limits.gpu_memory("full") == 6
    assert capacity.default_jobs("full", t5) == 3  # 7 GiB free, 2 GiB each
    assert capacity.default_jobs("hub", t5) == 3  # real weights: the real-size figure
    assert capacity.default_jobs("full", tokenizer) == 1
    assert capacity.default_jobs("tiny", tokenizer) == 7
    assert capacity.default_jobs("full") == 1  # nothing declared: the cautious default (8 GiB) still gives one
