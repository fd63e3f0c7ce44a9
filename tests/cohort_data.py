"""A generated cohort of t5_decoding submissions with the result each must get (tests and bench/).

Correct, partly wrong (the realistic mistakes of tests/test_t5_decoding.py), crashing, hanging,
timing out and invalid notebooks, duplicates, a file from someone not in the roster and roster
students who submitted nothing. Every notebook gets a line of its own so that no two share a hash.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import nbformat

from autograder.runners.base import Runner, RunJob, SessionError, StudentSession
from conftest import ROOT, copy_hidden_checks, mutate, solution_path, with_cells_appended, wrong_answers

EXERCISE = "t5_decoding"
WRONG = wrong_answers("t5_decoding")
SOLUTION = solution_path(EXERCISE)
# Limits of the generated course: short, so hanging notebooks cost seconds, not minutes.
CELL_TIMEOUT = 20
NOTEBOOK_TIMEOUT = 60
ALL_CHECKS = {"test_translation", "test_encoder_output_shape", "test_decoder_start_token", "test_lm_head_output_shape",
              "test_encoder_output_values", "test_decoder_output_values", "test_lm_head_output_values",
              "test_next_token_argmax",
              "test_greedy_decode_matches_generate", "test_model_logits", "test_scaled_logits_match_model", "test_flan_answer"}  # all but the CUDA-only one
# WRONG cases whose lost checks are all-or-nothing (so the expected score is exact) and deterministic
# ("sampling instead of greedy" is left out: a sample can equal the greedy translation), and how many
# students make each mistake.
MISTAKES = {"forgot the batch dimension": 2, "argmax over the wrong axis": 2, "logits compared without the scale": 2,
            "a cell that raises": 4}


@dataclass
class Expect:
    status: str
    failing: set[str]  # checks failed or in error
    source: str | None  # the file that must be the student's current row
    late_days: int = 0


@dataclass
class Cohort:
    course: Path  # AUTOGRADER_COURSE_DIR of a course holding only t5_decoding, with short limits
    folder: Path  # SUBMISSIONS
    roster: Path
    deadline: datetime
    expected: dict[str, Expect] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)  # sources that are history, never graded
    not_in_roster: set[str] = field(default_factory=set)
    files: int = 0

    def env(self) -> dict[str, str]:
        return {**os.environ, "AUTOGRADER_COURSE_DIR": str(self.course), "AUTOGRADER_CACHE": str(ROOT / ".cache")}

    def to_json(self) -> dict:
        return {"course": str(self.course), "folder": str(self.folder), "roster": str(self.roster),
                "deadline": self.deadline.isoformat(), "files": self.files, "superseded": sorted(self.superseded),
                "not_in_roster": sorted(self.not_in_roster),
                "expected": {sid: {**asdict(e), "failing": sorted(e.failing)} for sid, e in self.expected.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Cohort:
        expected = {sid: Expect(**{**e, "failing": set(e["failing"])}) for sid, e in data["expected"].items()}
        return cls(Path(data["course"]), Path(data["folder"]), Path(data["roster"]),
                   datetime.fromisoformat(data["deadline"]), expected, set(data["superseded"]),
                   set(data["not_in_roster"]), data["files"])


def points() -> dict[str, float]:
    import tomllib

    rubric = tomllib.loads((ROOT / "rubrics" / f"{EXERCISE}.toml").read_text())
    return {cid: rule["points"] for cid, rule in rubric["checks"].items()}


def expected_score(expect: Expect, check_points: dict[str, float], late_fraction: float = 0.0) -> float:
    earned = sum(check_points[c] for c in ALL_CHECKS - expect.failing)
    return round(earned * (1 - late_fraction), 6)


def personal(data: bytes, who: str) -> bytes:
    """The notebook with a markdown cell of the student's own, as every real submission differs."""
    nb = nbformat.reads(data.decode(), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(f"Submitted by {who}."))
    return nbformat.writes(nb).encode()


def make_course(target: Path) -> Path:
    """A course folder with the t5_decoding exercise (its hidden checks included), the bundled course's settings and
    short limits."""
    shutil.copytree(ROOT / "assignments" / EXERCISE, target / "assignments" / EXERCISE)
    copy_hidden_checks(EXERCISE, target)
    shutil.copy(ROOT / "course.toml", target / "course.toml")  # its time zone and environment
    (target / "rubrics").mkdir(parents=True)
    shutil.copy(ROOT / "rubrics" / f"{EXERCISE}.toml", target / "rubrics" / f"{EXERCISE}.toml")
    spec = target / "assignments" / EXERCISE / "exercise.toml"
    text = spec.read_text()
    for key, value in (("cell_timeout", CELL_TIMEOUT), ("notebook_timeout", NOTEBOOK_TIMEOUT)):
        lines = [f"{key} = {value}" if line.startswith(f"{key} =") else line for line in text.splitlines()]
        text = "\n".join(lines) + "\n"
    spec.write_text(text)
    return target


def make_cohort(root: Path, deadline: datetime) -> Cohort:
    cohort = Cohort(make_course(root / "course"), root / "submissions", root / "roster.csv", deadline)
    folder = cohort.folder
    folder.mkdir(parents=True)
    on_time = (deadline - timedelta(hours=2)).timestamp()

    def put(source: str, data: bytes, when: float = on_time) -> None:
        path = folder / source
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (when, when))
        cohort.files += 1

    def student(sid: str, source: str, data: bytes, status: str, failing: set[str], when: float = on_time,
                late_days: int = 0) -> None:
        put(source, data, when)
        cohort.expected[sid] = Expect(status, failing, source, late_days)

    solution = SOLUTION.read_bytes()
    # correct: flat files and a folder per student; three of them late (one within the grace period)
    for n in range(1, 7):
        sid = f"s{n:02d}"
        source = f"{sid}.ipynb" if n <= 3 else f"{sid}/t5_decoding.ipynb"
        late = {2: timedelta(days=4, hours=3), 3: timedelta(minutes=30), 4: timedelta(hours=26)}.get(n)
        when = (deadline + late).timestamp() if late else on_time
        days = {2: 5, 3: 1, 4: 2}.get(n, 0)
        student(sid, source, personal(solution, sid), "graded", set(), when, days)
    # partly wrong: realistic mistakes
    n = 7
    for mistake, students in MISTAKES.items():
        edits, lost = WRONG[mistake]
        for _ in range(students):
            sid = f"s{n:02d}"
            student(sid, f"{sid}.ipynb", personal(mutate(SOLUTION, *edits), sid), "graded", set(lost))
            n += 1
    # crashing: the process killed (as the OOM killer would), or exiting, once its work is done
    student("s17", "s17.ipynb", personal(with_cells_appended(SOLUTION, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"), "s17"),
            "crashed", set(ALL_CHECKS))
    student("s18", "s18.ipynb", personal(with_cells_appended(SOLUTION, "import os\nos._exit(3)"), "s18"),
            "crashed", set(ALL_CHECKS))
    # hanging: a loop the cell timeout interrupts; a loop that ignores interrupts (the process is given up)
    loop = ("translation = tokenizer.decode(", "while True:\n    pass\ntranslation = tokenizer.decode(")
    student("s19", "s19.ipynb", personal(mutate(SOLUTION, loop), "s19"), "graded", {"test_translation"})
    deaf = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
    student("s20", "s20.ipynb", personal(with_cells_appended(SOLUTION, deaf), "s20"), "crashed", set(ALL_CHECKS))
    # past the notebook's time limit after its answers exist: checks still judge what it computed
    # (busy cells: limits count the run's CPU time, so sleeping cells would only meet the wall backstop)
    busy = "import time\nstart = time.process_time()\nwhile time.process_time() - start < 9:\n    pass"
    slow = with_cells_appended(SOLUTION, *[busy] * (NOTEBOOK_TIMEOUT // 9 + 1))
    student("s21", "s21.ipynb", personal(slow, "s21"), "timeout", set())
    # invalid
    nb3 = json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}).encode()
    no_parameters = nbformat.reads(solution.decode(), as_version=4)
    for cell in no_parameters.cells:
        cell.metadata.pop("tags", None)
    invalid = {"s22": ("s22.ipynb", b'{"cells": [{"cell_type": "code", '), "s23": ("s23.ipynb", nb3),
               "s24": ("s24.ipynb", b""), "s25": ("s25/report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
               "s26": ("s26.ipynb", b'{"answer": 42}'),
               "s27": ("s27.ipynb", personal(nbformat.writes(no_parameters).encode(), "s27"))}
    for sid, (source, data) in invalid.items():
        student(sid, source, data, "invalid", set(ALL_CHECKS))
    # duplicates: the later notebook wins; a notebook wins over a later non-notebook file
    draft = personal(mutate(SOLUTION, *WRONG["argmax over the wrong axis"][0]), "s28")
    put("s28/draft.ipynb", draft, on_time - 3600)
    student("s28", "s28/final.ipynb", personal(solution, "s28"), "graded", set())
    student("s29", "s29.ipynb", personal(solution, "s29"), "graded", set())
    put("s29/notes.txt", b"I also tried beam search.\n", on_time + 60)
    cohort.superseded = {"s28/draft.ipynb", "s29/notes.txt"}
    # someone not in the roster
    student("visitor", "visitor.ipynb", b"not a notebook at all", "invalid", set(ALL_CHECKS))
    cohort.not_in_roster = {"visitor"}
    # roster students who never submitted
    for sid in ("m01", "m02"):
        cohort.expected[sid] = Expect("missing", set(), None)
    lines = ["student_id,name"] + [f"{sid},Student {sid.upper()}" for sid in cohort.expected if sid != "visitor"]
    cohort.roster.write_text("\n".join(lines) + "\n")
    return cohort


def synthetic_gradebook(path: Path, students: int = 24) -> Path:
    """A gradebook of made-up records (no notebook runs): a quick cohort for exports, feedback and the report."""
    import random
    from datetime import timezone

    from autograder import scoring
    from autograder.gradebook import Gradebook
    from autograder.intake import Roster, Student
    from autograder.results import CellDiagnostic, CheckOutcome, Diagnostics, RunRecord

    rng = random.Random(7)
    rubric_file = ROOT / "rubrics" / f"{EXERCISE}.toml"
    check_ids = list(points())
    deadline = datetime(2026, 5, 1, 23, 59, tzinfo=timezone.utc)
    statuses = ["graded"] * 6 + ["timeout", "crashed", "invalid", "error"]
    with Gradebook(path) as book:
        roster = Roster([Student(f"u{n:03d}", f"生徒 {n}") for n in range(students + 1)])
        book.set_roster(roster)
        scoring.put_in_force(book, EXERCISE, rubric_file.read_text(), str(rubric_file), deadline, check_ids)
        book.register(EXERCISE, [{
            "student_id": f"u{n:03d}", "student_name": "", "source": f"u{n:03d}.ipynb", "sha256": f"{n:064x}",
            "size": 1000, "layout": "folder", "flags": "",
            "submitted_at": (deadline + timedelta(hours=rng.choice([-30, -2, 5, 50]))).isoformat(),
            "submitted_at_from": "mtime"} for n in range(1, students + 1)], roster)
        for row in book.to_grade(EXERCISE):
            status = rng.choice(statuses)
            outcomes = []
            for cid in check_ids:
                if cid == "test_half_precision_on_cuda":
                    outcomes.append(CheckOutcome(id=cid, title=cid, outcome="not_run", message="needs CUDA"))
                    continue
                ok = status == "graded" and rng.random() < 0.7
                outcomes.append(CheckOutcome(id=cid, title=cid.removeprefix("test_").replace("_", " "),
                                             outcome="passed" if ok else "failed", duration=0.1,
                                             message="" if ok else rng.choice([
                                                 "`encoder_hidden` has shape (8, 512); expected (1, 8, 512).",
                                                 "The notebook's process died, so `translation` could not be read.",
                                                 "<b>not</b> html & friends<img src=x onerror=console.error('xss')>"])))
            wall = rng.uniform(6, 20)
            record = RunRecord(exercise=EXERCISE, submission=row.source, sha256=row.sha256, status=status,
                               message="" if status == "graded" else f"made-up {status}", outcomes=outcomes,
                               diagnostics=Diagnostics(runner="kernel", device="cpu", profile="tiny",
                                                       wall_time=wall, notebook_time=wall * 0.4, checks_time=2,
                                                       problem_cells=[CellDiagnostic(index=4, status="error",
                                                                                     error="NameError: x")]))
            book.save(row.id, record, scoring.Scorer(book, EXERCISE).score(row, record))
    return path


class FakeRunner(Runner):
    """A runner for batch-robustness tests (spawned workers import it from here): a notebook holding DIE-NOW
    kills the grading worker itself, HANG-NOW hangs it; any other cannot start (status error), quickly."""

    name = "fake"

    def start(self, job: RunJob) -> StudentSession:
        source = "\n".join(cell.source for cell in job.notebook.cells)
        if "DIE-NOW" in source:
            os._exit(1)
        if "HANG-NOW" in source:
            import time

            time.sleep(3600)
        raise SessionError("the fake runner runs nothing")
