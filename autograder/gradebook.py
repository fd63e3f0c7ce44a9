"""The gradebook: one SQLite file (WAL) holding, per submission, what grading established.

Outcomes first, scores second: each row keeps the submission's RunRecord (every check's outcome,
message and duration, the run's diagnostics) as JSON; the score columns are what the rubric in force
(stored with its text) and the deadline make of it, recomputed whenever either changes. One row per
(exercise, student, content hash): a file graded once is never graded again, a changed file is a new
row and the old one stays as history. Exactly one row per student and exercise is *current* (the
latest submitted, notebooks before other files); a partial unique index guards it.

The schema is the project's: ``PRAGMA user_version`` says which version a file has, and opening an
older file applies the missing MIGRATIONS in order. Only the batch process writes (single writer).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from .errors import UserError
from .i18n import L_, N_, Language, translations
from .intake import Roster, Student, local_time
from .paths import course_dir
from .results import GradingResult, RunRecord
from .rubric import Rubric

# Row statuses: the RunRecord's (graded, timeout, crashed, invalid, error) plus pending (registered,
# not graded yet), superseded (never graded: a later submission of the student is the current one)
# and missing (a roster student without any submission).
STATUSES = ("pending", "graded", "timeout", "crashed", "invalid", "error", "superseded", "missing")

MIGRATIONS = [
    # 1: the first schema.
    f"""
    CREATE TABLE roster (
        student_id TEXT PRIMARY KEY,
        name TEXT NOT NULL DEFAULT '',
        lms_id TEXT NOT NULL DEFAULT '',
        deadline TEXT
    );
    CREATE TABLE rubrics (
        sha256 TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        text TEXT NOT NULL,
        stored_at TEXT NOT NULL
    );
    CREATE TABLE exercises (
        name TEXT PRIMARY KEY,
        rubric_sha256 TEXT REFERENCES rubrics(sha256),
        deadline TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        exercise TEXT NOT NULL,
        student_id TEXT NOT NULL,
        student_name TEXT NOT NULL DEFAULT '',
        source TEXT,
        sha256 TEXT,
        size INTEGER,
        layout TEXT,
        flags TEXT NOT NULL DEFAULT '',
        submitted_at TEXT,
        submitted_at_from TEXT,
        registered_at TEXT NOT NULL,
        current INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
        message TEXT NOT NULL DEFAULT '',
        graded_at TEXT,
        runner TEXT,
        device TEXT,
        profile TEXT,
        wall_time REAL,
        record TEXT,
        score REAL,
        max_score REAL,
        late_penalty REAL,
        days_late INTEGER,
        UNIQUE (exercise, student_id, sha256)
    );
    CREATE UNIQUE INDEX one_current_row ON submissions (exercise, student_id) WHERE current = 1;
    CREATE INDEX by_status ON submissions (exercise, status);
    """,
    # 2: the roster's LMS columns (for the Canvas and Moodle exports).
    """
    ALTER TABLE roster ADD COLUMN sis_user_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE roster ADD COLUMN sis_login_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE roster ADD COLUMN section TEXT NOT NULL DEFAULT '';
    ALTER TABLE roster ADD COLUMN email TEXT NOT NULL DEFAULT '';
    """,
    # 3: the submission service (autograder/service/): personal links (only their hashes), uploads (each an
    # attempt the student waits for; the service's queue is the pending ones) and released feedback.
    """
    CREATE TABLE access (
        student_id TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE uploads (
        public_id TEXT PRIMARY KEY,
        submission_id INTEGER NOT NULL REFERENCES submissions(id),
        exercise TEXT NOT NULL,
        student_id TEXT NOT NULL,
        path TEXT NOT NULL,
        uploaded_at TEXT NOT NULL
    );
    CREATE INDEX uploads_by_student ON uploads (exercise, student_id, uploaded_at);
    CREATE TABLE releases (
        exercise TEXT PRIMARY KEY,
        released_at TEXT NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
NO_SUBMISSION = N_("No submission was received.")  # stored in English; pages show it in their language


def default_path() -> Path:
    """Where the gradebook lives unless --gradebook says otherwise: $AUTOGRADER_GRADEBOOK, else
    out/gradebook.sqlite in the course folder (ignored by git: it holds student data)."""
    env = os.environ.get("AUTOGRADER_GRADEBOOK")
    return Path(env) if env else course_dir() / "out" / "gradebook.sqlite"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value else None


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class Row:
    """One submission's row."""

    id: int
    exercise: str
    student_id: str
    student_name: str
    source: str | None
    sha256: str | None
    size: int | None
    layout: str | None
    flags: str
    submitted_at: str | None
    submitted_at_from: str | None
    registered_at: str
    current: int
    status: str
    message: str
    graded_at: str | None
    runner: str | None
    device: str | None
    profile: str | None
    wall_time: float | None
    record: str | None
    score: float | None
    max_score: float | None
    late_penalty: float | None
    days_late: int | None

    def run_record(self) -> RunRecord | None:
        return RunRecord.model_validate_json(self.record) if self.record else None

    @property
    def is_notebook(self) -> bool:
        return bool(self.source) and self.source.lower().endswith(".ipynb")


def row_message(row: Row, record: RunRecord | None, language: Language) -> str:
    """A row's sentence in a language: its record's (rendered in every language when it was stored), else the
    gradebook's own, which the catalog translates where it is a fixed sentence."""
    if record is not None:
        return record.message_in(language)
    return translations(language).gettext(row.message) if row.message else ""


@dataclass
class Policy:
    """What turns outcomes into scores for one exercise: the rubric in force and the deadline."""

    rubric: Rubric
    rubric_sha256: str
    origin: str
    cli_deadline: datetime | None  # given with --deadline; wins over the rubric's
    rubric_text: str = ""

    @property
    def deadline(self) -> datetime | None:
        return self.cli_deadline or self.rubric.late.deadline

    def late_by(self, row: Row, roster: Roster) -> timedelta | None:
        """How long after the deadline (the student's own extension, else the exercise's) the row came."""
        student = roster.students.get(row.student_id)
        deadline = (student.deadline if student else None) or self.deadline
        submitted = from_iso(row.submitted_at)
        if deadline is None or submitted is None:
            return None
        return submitted - local_time(deadline)

    def score(self, record: RunRecord, row: Row, roster: Roster) -> GradingResult:
        return self.rubric.score(record, self.late_by(row, roster))



class Gradebook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.damaged: dict[int, str] = {}  # row id -> why its stored record could not be read
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise UserError(L_("{path} is not a gradebook this tool can open ({problem}).").format(
                path=str(path), problem=str(exc))) from None

    def __enter__(self) -> Gradebook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.version
        if version > SCHEMA_VERSION:
            raise UserError(L_("The gradebook {path} has schema version {version}, newer than this autograder's "
                               "({supported}); update the autograder.").format(
                                   path=str(self.path), version=version, supported=SCHEMA_VERSION))
        for number in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in _statements(MIGRATIONS[number - 1]):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it lands, or none of it (a killed process leaves no half)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @contextmanager
    def batch_lock(self) -> Iterator[None]:
        """Only one batch grades into a gradebook at a time (released by the OS if the batch is killed)."""
        # On the database file itself: the same gradebook reached through a link or another path is one lock.
        with open(self.path, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(L_("Another batch is grading into {path}; wait for it to finish.").format(
                    path=str(self.path))) from None
            yield

    # roster -----------------------------------------------------------------------------
    def set_roster(self, roster: Roster) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM roster")
            db.executemany("INSERT INTO roster (student_id, name, lms_id, deadline, sis_user_id, sis_login_id, section,"
                           " email) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(s.student_id, s.name, s.lms_id, iso(s.deadline), s.sis_user_id, s.sis_login_id, s.section,
                             s.email) for s in roster.students.values()])

    def roster(self) -> Roster:
        return Roster([Student(r["student_id"], r["name"], r["lms_id"], from_iso(r["deadline"]), r["sis_user_id"],
                               r["sis_login_id"], r["section"], r["email"])
                       for r in self.db.execute("SELECT * FROM roster ORDER BY student_id")])

    # rows -------------------------------------------------------------------------------
    def rows(self, exercise: str, current_only: bool = True) -> list[Row]:
        where = "exercise = ?" + (" AND current = 1" if current_only else "")
        return [Row(**r) for r in self.db.execute(f"SELECT * FROM submissions WHERE {where} ORDER BY student_id, id",
                                                  (exercise,))]

    def row(self, row_id: int) -> Row:
        return Row(**self.db.execute("SELECT * FROM submissions WHERE id = ?", (row_id,)).fetchone())

    def exercises(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT exercise FROM submissions ORDER BY exercise")]

    def register(self, exercise: str, submissions: list[dict], roster: Roster) -> int:
        """Record newly found submissions (dicts of column values) and roster students without any, then
        choose each student's current row. One transaction; returns how many rows are new."""
        stamp = now()
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO submissions (exercise, student_id, student_name, source, sha256, size, layout,"
                " flags, submitted_at, submitted_at_from, registered_at, status) VALUES (:exercise, :student_id,"
                " :student_name, :source, :sha256, :size, :layout, :flags, :submitted_at, :submitted_at_from,"
                " :registered_at, 'pending')",
                [{**s, "exercise": exercise, "registered_at": stamp} for s in submissions])
            known = {r[0] for r in db.execute("SELECT DISTINCT student_id FROM submissions WHERE exercise = ?",
                                              (exercise,))}
            db.executemany(
                "INSERT INTO submissions (exercise, student_id, student_name, registered_at, status, message)"
                " VALUES (?, ?, ?, ?, 'missing', ?)",
                [(exercise, s.student_id, s.name, stamp, NO_SUBMISSION) for s in roster.students.values()
                 if s.student_id not in known])
            added = db.total_changes - before
            self.choose_current(db, exercise)
        return added

    def choose_current(self, db: sqlite3.Connection, exercise: str, student_id: str | None = None) -> None:
        """Per student (every one, or ``student_id``'s alone): the latest submitted notebook is current (other
        files only when there is no notebook; a 'missing' row only when there is nothing); ungraded older ones
        become 'superseded', except uploads to the service (each is an attempt its student waits for: graded,
        kept as history)."""
        only = " AND student_id = ?" if student_id is not None else ""
        values = (exercise, student_id) if student_id is not None else (exercise,)
        rows = [Row(**r) for r in db.execute(f"SELECT * FROM submissions WHERE exercise = ?{only}", values)]
        attempts = {r[0] for r in db.execute(f"SELECT submission_id FROM uploads WHERE exercise = ?{only}", values)}
        by_student: dict[str, list[Row]] = {}
        for row in rows:
            by_student.setdefault(row.student_id, []).append(row)
        for student_rows in by_student.values():
            best = max(student_rows, key=lambda r: (r.sha256 is not None, r.is_notebook, r.submitted_at or "", r.id))
            if not best.current:
                db.execute("UPDATE submissions SET current = 0 WHERE exercise = ? AND student_id = ? AND current = 1",
                           (exercise, best.student_id))
                db.execute("UPDATE submissions SET current = 1 WHERE id = ?", (best.id,))
                if best.status == "superseded":
                    db.execute("UPDATE submissions SET status = 'pending', message = '' WHERE id = ?", (best.id,))
            for row in student_rows:
                if row is not best and row.status == "pending" and row.id not in attempts:
                    db.execute("UPDATE submissions SET status = 'superseded', message = ? WHERE id = ?",
                               (f"Not graded: the later submission {best.source} is the one graded.", row.id))

    def to_grade(self, exercise: str, retry: tuple[str, ...] = ("pending", "error")) -> list[Row]:
        """Current rows still to grade: never graded, or the grader failed on them (retried)."""
        marks = ", ".join("?" * len(retry))
        return [Row(**r) for r in self.db.execute(
            f"SELECT * FROM submissions WHERE exercise = ? AND current = 1 AND status IN ({marks}) ORDER BY source",
            (exercise, *retry))]

    def mark_for_regrading(self, exercise: str) -> None:
        """`--force`: every current submission is graded again."""
        with self.transaction() as db:
            db.execute("UPDATE submissions SET status = 'pending' WHERE exercise = ? AND current = 1"
                       " AND sha256 IS NOT NULL", (exercise,))

    def save(self, row_id: int, record: RunRecord, result: GradingResult) -> None:
        """A graded submission, in one transaction: its record and its score."""
        d = record.diagnostics
        with self.transaction() as db:
            db.execute(
                "UPDATE submissions SET status = ?, message = ?, graded_at = ?, runner = ?, device = ?, profile = ?,"
                " wall_time = ?, record = ?, score = ?, max_score = ?, late_penalty = ?, days_late = ? WHERE id = ?",
                (record.status, record.message, now(), d.runner, d.device, d.profile, d.wall_time,
                 record.model_dump_json(), result.score, result.max_score, result.late_penalty, result.days_late,
                 row_id))

    # scoring policy ---------------------------------------------------------------------
    def policy(self, exercise: str) -> Policy | None:
        """The rubric and deadline in force, as the last grade/regrade set them."""
        row = self.db.execute("SELECT e.deadline, r.sha256, r.origin, r.text FROM exercises e JOIN rubrics r"
                              " ON r.sha256 = e.rubric_sha256 WHERE e.name = ?", (exercise,)).fetchone()
        if row is None:
            return None
        return Policy(Rubric.parse(row["text"], row["origin"]), row["sha256"], row["origin"], from_iso(row["deadline"]),
                      row["text"])

    def results(self, exercise: str) -> tuple[Policy, list[tuple[Row, GradingResult | None]]]:
        """Every student's current row with its scored result under the policy in force."""
        policy = self.policy(exercise)
        if policy is None:
            raise UserError(L_("Nothing of {exercise} is graded in {path}; run `autograder grade {exercise} "
                               "SUBMISSIONS` first.").format(exercise=exercise, path=str(self.path)))
        roster = self.roster()
        entries = []
        for row in self.rows(exercise):
            record = self.record_of(row)
            if row.id in self.damaged:  # shown as what it is; the command that reads it ends non-zero
                row = replace(row, status="error", message=self.damaged[row.id])
            entries.append((row, policy.score(record, row, roster) if record else None))
        return policy, entries

    def record_of(self, row: Row) -> RunRecord | None:
        """The row's stored record; None when it has none (pending, missing, superseded) or when it cannot be
        read (then ``damaged`` says so)."""
        try:
            return row.run_record()
        except ValueError as exc:  # pydantic's ValidationError, invalid JSON
            first = str(exc).strip().splitlines()[0][:200]
            self.damaged[row.id] = (f"The stored record of {row.student_id}'s {row.source or 'submission'} in "
                                    f"{self.path} is damaged ({first}); grade it again with `autograder grade --force`.")
            return None

    def set_policy(self, exercise: str, rubric_text: str, origin: str, cli_deadline: datetime | None,
                   ) -> tuple[Policy, list[tuple[Row, float | None]]]:
        """Put a rubric and deadline in force and rescore every row with them, in one transaction.
        Returns the policy and the rows whose score changed, with their old score."""
        policy = Policy(Rubric.parse(rubric_text, origin), hashlib.sha256(rubric_text.encode()).hexdigest(), origin,
                        cli_deadline, rubric_text)
        roster = self.roster()
        changed = []
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO rubrics VALUES (?, ?, ?, ?)",
                       (policy.rubric_sha256, origin, rubric_text, now()))
            db.execute("INSERT INTO exercises VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                       " rubric_sha256 = excluded.rubric_sha256, deadline = excluded.deadline,"
                       " updated_at = excluded.updated_at", (exercise, policy.rubric_sha256, iso(cli_deadline), now()))
            for row in self.rows(exercise, current_only=False):
                record = self.record_of(row)
                if record is None:
                    continue
                result = policy.score(record, row, roster)
                db.execute("UPDATE submissions SET score = ?, max_score = ?, late_penalty = ?, days_late = ?"
                           " WHERE id = ?", (result.score, result.max_score, result.late_penalty, result.days_late,
                                             row.id))
                if row.score != result.score:
                    changed.append((row, row.score))
        return policy, changed


def _statements(script: str) -> list[str]:
    """A migration script split into statements (executescript would commit the open transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
