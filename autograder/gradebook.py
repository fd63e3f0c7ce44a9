"""The gradebook: one SQLite file (WAL) holding, per submission, what grading established.

Outcomes first, scores second: each row keeps the submission's RunRecord (every check's outcome,
message and duration, the run's diagnostics) as JSON; the score columns are what ``scoring`` makes of
it (the rubric in force, stored with its text, the deadline and the TAs' decisions), stored again
whenever any of them changes. One row per (exercise, student, content hash): a file graded once is
never graded again, a changed file is a new row and the old one stays as history. Exactly one row per
student and exercise is *current* (their latest upload; else the latest submitted, notebooks before
other files); a partial unique index guards it. Beside the rows: the TAs' decisions (never over the
outcomes), regrade requests and a log of what people did, who and when.

This module stores; ``scoring`` decides what scores are. The schema is the project's: ``PRAGMA
user_version`` says which version a file has, and opening an older file applies the missing
MIGRATIONS in order. The file is its owner's alone (0600): it holds every student's work and grade.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import UserError
from .i18n import L_, N_, Language, translations
from .intake import Roster, Student
from .paths import course_dir
from .results import GradingResult, RunRecord

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
    # 4: people in charge. TAs' decisions beside the outcomes (a check's points, a bonus or penalty, a manual item's
    # score, an extension; undone by marking, never deleted), students' regrade requests and their answers, a log
    # of every TA action (who, when), uploads a TA closed, and links per person: every TA has their own.
    """
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        exercise TEXT NOT NULL,
        student_id TEXT NOT NULL,
        submission_id INTEGER REFERENCES submissions(id),
        kind TEXT NOT NULL CHECK (kind IN ('points', 'adjust', 'manual', 'extension')),
        item TEXT NOT NULL DEFAULT '',
        points REAL,
        until TEXT,
        comment TEXT NOT NULL DEFAULT '',
        made_by TEXT NOT NULL,
        made_at TEXT NOT NULL,
        undone_by TEXT,
        undone_at TEXT
    );
    CREATE INDEX decisions_by_student ON decisions (exercise, student_id);
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY,
        exercise TEXT NOT NULL,
        student_id TEXT NOT NULL,
        submission_id INTEGER NOT NULL REFERENCES submissions(id),
        item TEXT NOT NULL,
        question TEXT NOT NULL,
        asked_at TEXT NOT NULL,
        answer TEXT,
        answered_by TEXT,
        answered_at TEXT
    );
    CREATE INDEX requests_by_student ON requests (exercise, student_id);
    CREATE TABLE actions (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        made_by TEXT NOT NULL,
        action TEXT NOT NULL,
        exercise TEXT NOT NULL DEFAULT '',
        student_id TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX actions_by_student ON actions (exercise, student_id);
    CREATE TABLE uploads_closed (
        exercise TEXT PRIMARY KEY,
        closed_at TEXT NOT NULL
    );
    CREATE TABLE people (
        role TEXT NOT NULL CHECK (role IN ('student', 'ta')),
        person_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (role, person_id)
    );
    INSERT INTO people SELECT CASE student_id WHEN '__ta__' THEN 'ta' ELSE 'student' END,
        CASE student_id WHEN '__ta__' THEN 'ta' ELSE student_id END, CASE student_id WHEN '__ta__' THEN 'TA' ELSE '' END,
        token_sha256, created_at FROM access;
    DROP TABLE access;
    ALTER TABLE uploads ADD COLUMN filename TEXT NOT NULL DEFAULT ''
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


@dataclass(frozen=True)
class Decision:
    """A TA's decision (see ``scoring``): stored beside the outcomes, undone by marking it, never deleted."""

    id: int
    exercise: str
    student_id: str
    submission_id: int | None  # None: about the student (an extension)
    kind: str  # points | adjust | manual | extension
    item: str  # points, manual: the check or manual item
    points: float | None  # points, manual: what the item scores; adjust: added to the total (negative: taken off)
    until: str | None  # extension: the student's own deadline
    comment: str
    made_by: str
    made_at: str
    undone_by: str | None
    undone_at: str | None

    @property
    def active(self) -> bool:
        return self.undone_at is None


@dataclass(frozen=True)
class Request:
    """A student's regrade request about one check of one submission, and the TA's answer."""

    id: int
    exercise: str
    student_id: str
    submission_id: int
    item: str
    question: str
    asked_at: str
    answer: str | None
    answered_by: str | None
    answered_at: str | None


@dataclass(frozen=True)
class Action:
    """One line of the log of what people did (who, when, what)."""

    id: int
    at: str
    made_by: str
    action: str
    exercise: str
    student_id: str
    detail: str


@dataclass(frozen=True)
class StoredRubric:
    sha256: str
    origin: str
    text: str
    deadline: datetime | None


def row_message(row: Row, record: RunRecord | None, language: Language) -> str:
    """A row's sentence in a language: its record's (rendered in every language when it was stored), else the
    gradebook's own, which the catalog translates where it is a fixed sentence."""
    if record is not None:
        return record.message_in(language)
    return translations(language).gettext(row.message) if row.message else ""


class Gradebook:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.damaged: dict[int, str] = {}  # row id -> why its stored record could not be read
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _make_private(path)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except (sqlite3.DatabaseError, OSError) as exc:
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
    def rows(self, exercise: str, current_only: bool = True, student_id: str | None = None) -> list[Row]:
        only, values = _of_student(exercise, student_id)
        where = "exercise = ?" + only + (" AND current = 1" if current_only else "")
        return [Row(**r) for r in self.db.execute(f"SELECT * FROM submissions WHERE {where} ORDER BY student_id, id",
                                                  values)]

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
        """Per student (every one, or ``student_id``'s alone): the row of their latest upload to the service is
        current; a student without uploads has the latest submitted notebook (other files only when there is no
        notebook; a 'missing' row only when there is nothing). Ungraded older rows become 'superseded', except
        uploads (each is an attempt its student waits for: graded, kept as history)."""
        only, values = _of_student(exercise, student_id)
        rows = [Row(**r) for r in db.execute(f"SELECT * FROM submissions WHERE exercise = ?{only}", values)]
        latest_upload: dict[str, int] = {}
        for sid, row_id in db.execute(f"SELECT student_id, submission_id FROM uploads WHERE exercise = ?{only}"
                                      " ORDER BY uploaded_at, rowid", values):
            latest_upload[sid] = row_id
        attempts = set(latest_upload.values()) | {r[0] for r in db.execute(
            f"SELECT submission_id FROM uploads WHERE exercise = ?{only}", values)}
        by_student: dict[str, list[Row]] = {}
        for row in rows:
            by_student.setdefault(row.student_id, []).append(row)
        for sid, student_rows in by_student.items():
            if sid in latest_upload:
                best = next(r for r in student_rows if r.id == latest_upload[sid])
            else:
                best = max(student_rows, key=lambda r: (r.sha256 is not None, r.is_notebook, r.submitted_at or "",
                                                        r.id))
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

    def set_score(self, row_id: int, result: GradingResult) -> None:
        """A row's score columns (what ``scoring`` made of its record), inside the caller's transaction."""
        self.db.execute("UPDATE submissions SET score = ?, max_score = ?, late_penalty = ?, days_late = ? WHERE id = ?",
                        (result.score, result.max_score, result.late_penalty, result.days_late, row_id))

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

    # the rubric in force ----------------------------------------------------------------
    def rubric_in_force(self, exercise: str) -> StoredRubric | None:
        """The rubric text and deadline the last grade/regrade put in force (``scoring.policy`` reads them)."""
        row = self.db.execute("SELECT e.deadline, r.sha256, r.origin, r.text FROM exercises e JOIN rubrics r"
                              " ON r.sha256 = e.rubric_sha256 WHERE e.name = ?", (exercise,)).fetchone()
        return StoredRubric(row["sha256"], row["origin"], row["text"], from_iso(row["deadline"])) if row else None

    def store_rubric_in_force(self, exercise: str, sha256: str, origin: str, text: str,
                              deadline: datetime | None) -> None:
        """Inside the caller's transaction (``scoring.put_in_force`` rescores in the same one)."""
        self.db.execute("INSERT OR IGNORE INTO rubrics VALUES (?, ?, ?, ?)", (sha256, origin, text, now()))
        self.db.execute("INSERT INTO exercises VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                        " rubric_sha256 = excluded.rubric_sha256, deadline = excluded.deadline,"
                        " updated_at = excluded.updated_at", (exercise, sha256, iso(deadline), now()))

    # what people decided and did ----------------------------------------------------------
    def decisions(self, exercise: str, student_id: str | None = None) -> list[Decision]:
        """The TAs' decisions on an exercise (or on one student's work), oldest first, undone ones included."""
        only, values = _of_student(exercise, student_id)
        return [Decision(**r) for r in self.db.execute(f"SELECT * FROM decisions WHERE exercise = ?{only} ORDER BY id",
                                                       values)]

    def decision(self, decision_id: int) -> Decision | None:
        found = self.db.execute("SELECT * FROM decisions WHERE id = ?", (decision_id,)).fetchone()
        return Decision(**found) if found else None

    def add_decision(self, exercise: str, student_id: str, submission_id: int | None, kind: str, item: str,
                     points: float | None, until: str | None, comment: str, by: str) -> Decision:
        """Inside the caller's transaction (``scoring.decide`` rescores in the same one)."""
        cursor = self.db.execute(
            "INSERT INTO decisions (exercise, student_id, submission_id, kind, item, points, until, comment, made_by,"
            " made_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (exercise, student_id, submission_id, kind, item, points, until, comment, by, now()))
        return self.decision(cursor.lastrowid)

    def mark_undone(self, decision_id: int, by: str) -> None:
        self.db.execute("UPDATE decisions SET undone_by = ?, undone_at = ? WHERE id = ?", (by, now(), decision_id))

    def record_action(self, by: str, action: str, exercise: str = "", student_id: str = "", detail: str = "") -> None:
        """One line of the log; inside the caller's transaction when there is one."""
        self.db.execute("INSERT INTO actions (at, made_by, action, exercise, student_id, detail) VALUES"
                        " (?, ?, ?, ?, ?, ?)", (now(), by, action, exercise, student_id, detail[:2000]))

    def log(self, by: str, action: str, exercise: str = "", student_id: str = "", detail: str = "") -> None:
        """``record_action`` in a transaction of its own."""
        with self.transaction():
            self.record_action(by, action, exercise, student_id, detail)

    def actions(self, exercise: str, student_id: str | None = None) -> list[Action]:
        """What people did on an exercise (or about one student), oldest first."""
        only, values = _of_student(exercise, student_id)
        return [Action(**r) for r in self.db.execute(f"SELECT * FROM actions WHERE exercise = ?{only} ORDER BY id",
                                                     values)]

    def ask(self, row: Row, item: str, question: str) -> Request:
        with self.transaction() as db:
            cursor = db.execute("INSERT INTO requests (exercise, student_id, submission_id, item, question, asked_at)"
                                " VALUES (?, ?, ?, ?, ?, ?)",
                                (row.exercise, row.student_id, row.id, item, question, now()))
            self.record_action(row.student_id, "request", row.exercise, row.student_id, f"{item}: {question}")
        return self.request(cursor.lastrowid)

    def answer(self, request_id: int, answer: str, by: str) -> Request:
        request = self.request(request_id)
        with self.transaction() as db:
            db.execute("UPDATE requests SET answer = ?, answered_by = ?, answered_at = ? WHERE id = ?",
                       (answer, by, now(), request_id))
            self.record_action(by, "answer", request.exercise, request.student_id, f"{request.item}: {answer}")
        return self.request(request_id)

    def request(self, request_id: int) -> Request | None:
        found = self.db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        return Request(**found) if found else None

    def requests(self, exercise: str, student_id: str | None = None) -> list[Request]:
        """Regrade requests on an exercise (or one student's), oldest first."""
        only, values = _of_student(exercise, student_id)
        return [Request(**r) for r in self.db.execute(f"SELECT * FROM requests WHERE exercise = ?{only} ORDER BY id",
                                                      values)]


def _make_private(path: Path) -> None:
    """Create the file readable by its owner alone, or take group and others' access away from one of ours (SQLite
    gives its -wal and -shm files the same mode)."""
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    elif path.stat().st_uid == os.getuid() and path.stat().st_mode & 0o077:
        path.chmod(0o600)


def _of_student(exercise: str, student_id: str | None) -> tuple[str, tuple[str, ...]]:
    """The SQL condition (after ``exercise = ?``) and values for one exercise, or one student's part of it."""
    return (" AND student_id = ?", (exercise, student_id)) if student_id is not None else ("", (exercise,))


def _statements(script: str) -> list[str]:
    """A migration script split into statements (executescript would commit the open transaction)."""
    return [s.strip() for s in script.split(";") if s.strip()]
