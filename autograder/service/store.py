"""What the submission service keeps in the gradebook: personal links, uploads, releases, closed uploads.

Every student and every TA has a link of their own. Its token is shown once (written to ``access.csv``,
its owner's alone, for the TA to mail out) and stored only as its SHA-256, so a copied gradebook opens
nothing; one person's link can be revoked and reissued. Each upload is written to disk (0600, in a
0700 folder) and synced, then registered as a gradebook row (pending) and an ``uploads`` entry in one
transaction, and only then acknowledged: an acknowledged upload survives a crash, and one that was not
acknowledged leaves at most a file without a row. The pending uploads are the service's queue. What a
TA does here (release, take it back, close uploads, grade again, revoke a link) is logged with who.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from .. import scoring
from ..paths import write_atomic
from ..errors import UserError
from ..gradebook import Gradebook, Row, now
from ..i18n import L_, Text
from ..intake import Roster
from ..text import spreadsheet_cell

ACCESS_COLUMNS = ["role", "id", "name", "token", "link"]


@dataclass(frozen=True)
class Person:
    """Whose link a request came with: a student, or one of the course's TAs."""

    role: Literal["student", "ta"]
    id: str
    name: str = ""

    @property
    def is_ta(self) -> bool:
        return self.role == "ta"

    @property
    def label(self) -> str:
        """How the record names them: "Sato Hanako (ta1)"."""
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


DEFAULT_TAS = [Person("ta", "ta", "TA")]


def load_tas(path: Path) -> list[Person]:
    """The TA roster: a CSV with ``ta_id`` and ``name`` columns; each TA gets a link of their own, so the record
    names who did what."""
    try:
        lines = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(L_("The TA roster {path} cannot be read ({problem}); give a CSV with ta_id and name "
                           "columns.").format(path=str(path), problem=str(exc))) from None
    tas = [Person("ta", (line.get("ta_id") or "").strip(), (line.get("name") or "").strip()) for line in lines]
    if not tas or any(not ta.id for ta in tas):
        raise UserError(L_("The TA roster {path} needs a ta_id on every line (and a name); add them and start "
                           "again.").format(path=str(path)))
    if len({ta.id for ta in tas}) != len(tas):
        raise UserError(L_("The TA roster {path} names a ta_id twice; give each TA their own.").format(path=str(path)))
    return tas


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(token: str) -> str:
    """The value a form of this session must send back: unguessable without the session's own token."""
    return hmac.new(token.encode("utf-8", "surrogatepass"), b"csrf", hashlib.sha256).hexdigest()


def holder(book: Gradebook, token: str | None) -> Person | None:
    """Whose link a token is, None when it is no one's (or was revoked)."""
    if not token or len(token) > 200:
        return None
    found = book.db.execute("SELECT role, person_id, name FROM people WHERE token_sha256 = ?",
                            (token_hash(token),)).fetchone()
    return Person(found[0], found[1], found[2]) if found else None


def issue_links(book: Gradebook, roster: Roster, tas: list[Person], access_csv: Path, base_url: str,
                reissue: bool = False) -> list[Text]:
    """A link for every roster student and every TA without one, written with the links made earlier to
    ``access_csv`` (readable by its owner only). ``reissue`` replaces every link. Returns notes for the TA."""
    wanted = [*tas, *(Person("student", s.student_id, s.name) for s in roster.students.values())]
    known = {} if reissue else _tokens_in(access_csv)
    stored = {(r[0], r[1]): r[2] for r in book.db.execute("SELECT role, person_id, token_sha256 FROM people")}
    known = {key: token for key, token in known.items() if stored.get(key) == token_hash(token)}
    fresh = {(p.role, p.id): secrets.token_urlsafe(24) for p in wanted if reissue or (p.role, p.id) not in stored}
    lost = sorted(p.id for p in wanted if (p.role, p.id) in stored and (p.role, p.id) not in known
                  and (p.role, p.id) not in fresh)
    with book.transaction() as db:
        if reissue:
            db.execute("DELETE FROM people")
        db.executemany("INSERT INTO people (role, person_id, name, token_sha256, created_at) VALUES (?, ?, ?, ?, ?)"
                       " ON CONFLICT (role, person_id) DO UPDATE SET token_sha256 = excluded.token_sha256,"
                       " name = excluded.name, created_at = excluded.created_at",
                       [(p.role, p.id, p.name, token_hash(fresh[p.role, p.id]), now()) for p in wanted
                        if (p.role, p.id) in fresh])
        db.executemany("UPDATE people SET name = ? WHERE role = ? AND person_id = ?",
                       [(p.name, p.role, p.id) for p in wanted])
    _write_access(access_csv, wanted, {**known, **fresh}, base_url)
    notes = []
    if fresh:
        notes.append(L_("{count} new link(s) written to {path}.").format(count=len(fresh), path=str(access_csv)))
    if lost:
        notes.append(L_("{count} link(s) made earlier are not in {path} any more ({students}); those links still "
                        "work, and `--reissue-links` replaces every link.").format(
                            count=len(lost), path=str(access_csv), students=", ".join(lost[:10])))
    return notes


def reissue_link(book: Gradebook, person: Person, access_csv: Path, base_url: str, by: Person) -> str:
    """Revoke one person's link and make them a new one (shown once to ``by``, and written to ``access_csv``);
    the old link stops working at once. Returns the new link."""
    token = secrets.token_urlsafe(24)
    with book.transaction() as db:
        changed = db.execute("UPDATE people SET token_sha256 = ?, created_at = ? WHERE role = ? AND person_id = ?",
                             (token_hash(token), now(), person.role, person.id)).rowcount
        if not changed:
            raise UserError(L_("{person} has no link to replace.").format(person=person.label))
        book.record_action(by.label, "revoke", "", person.id if person.role == "student" else "",
                           f"{person.role} {person.id}: link revoked, a new one issued")
    tokens = _tokens_in(access_csv)
    tokens[person.role, person.id] = token
    people = [Person(r[0], r[1], r[2]) for r in book.db.execute("SELECT role, person_id, name FROM people"
                                                                " ORDER BY role DESC, rowid")]
    _write_access(access_csv, people, tokens, base_url)
    return link_of(base_url, token)


def link_of(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/login/{token}"


def _tokens_in(access_csv: Path) -> dict[tuple[str, str], str]:
    """The tokens ``access.csv`` holds, by (role, id)."""
    if not access_csv.is_file():
        return {}
    lines = csv.DictReader(io.StringIO(access_csv.read_text(encoding="utf-8")))
    return {(line.get("role") or "", _plain(line.get("id") or "")): line.get("token") or "" for line in lines}


def _plain(cell: str) -> str:
    """A cell as written before ``spreadsheet_cell`` guarded it."""
    return cell[1:] if cell.startswith("'") and spreadsheet_cell(cell[1:]) == cell else cell


def _write_access(access_csv: Path, people: list[Person], tokens: dict[tuple[str, str], str], base_url: str) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, ACCESS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for person in people:
        token = tokens.get((person.role, person.id))
        if token:
            writer.writerow({"role": person.role, "id": spreadsheet_cell(person.id),
                             "name": spreadsheet_cell(person.name), "token": token,
                             "link": link_of(base_url, token)})
    write_atomic(access_csv, out.getvalue(), mode=0o600)  # it holds every link


@dataclass
class Attempt:
    public_id: str
    uploaded_at: str
    filename: str  # the name this upload had (the same bytes may come again under another)
    row: Row
    counts: bool = False  # the attempt that counts: the student's latest upload


class TooMany(Exception):
    """The student has used the exercise's uploads of the window; ``again`` is when one frees up."""

    def __init__(self, count: int, again: datetime) -> None:
        super().__init__(count, again)
        self.count, self.again = count, again


class UploadsClosed(Exception):
    """A TA closed the exercise's uploads."""


def store_upload(book: Gradebook, uploads: Path, exercise: str, student_id: str, name: str, filename: str,
                 data: bytes, allowed: int, window: timedelta = timedelta(hours=1)) -> str:
    """Keep an upload durably and queue it (see the module docstring); returns its public id. Refused with
    ``TooMany``, storing nothing, when the student already made ``allowed`` uploads within ``window`` (counted in
    the same write transaction, so two uploads at once cannot both take the last one), and with ``UploadsClosed``
    when a TA closed them.

    Every upload is an attempt with its own time and file name, and the latest one counts. The same bytes again are
    the same row (a file is graded once), which then carries the latest upload's time and name."""
    public_id = secrets.token_hex(12)
    sha256 = hashlib.sha256(data).hexdigest()
    stamp = now()
    source = display_name(filename)
    with book.transaction() as db:
        if not uploads_open(book, exercise):
            raise UploadsClosed(exercise)
        recent = uploads_since(book, exercise, student_id, window)
        if len(recent) >= allowed:
            raise TooMany(len(recent), recent[0] + window)
        path = _write_synced(uploads / exercise, f"{public_id}.upload", data)
        db.execute("INSERT INTO submissions (exercise, student_id, student_name, source, sha256, size, layout,"
                   " submitted_at, submitted_at_from, registered_at, status)"
                   " VALUES (?, ?, ?, ?, ?, ?, 'upload', ?, 'upload', ?, 'pending') ON CONFLICT (exercise, student_id,"
                   " sha256) DO UPDATE SET source = excluded.source, submitted_at = excluded.submitted_at,"
                   " submitted_at_from = 'upload'",
                   (exercise, student_id, name, source, sha256, len(data), stamp, stamp))
        row_id = db.execute("SELECT id FROM submissions WHERE exercise = ? AND student_id = ? AND sha256 = ?",
                            (exercise, student_id, sha256)).fetchone()[0]
        db.execute("INSERT INTO uploads (public_id, submission_id, exercise, student_id, path, uploaded_at, filename)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (public_id, row_id, exercise, student_id, str(path), stamp, source))
        book.choose_current(db, exercise, student_id)
        scoring.rescore(book, exercise, student_id)  # the same bytes again: a new time, so perhaps a new lateness
    return public_id


def _write_synced(folder: Path, name: str, data: bytes) -> Path:
    """The file on disk (its owner's alone), synced with its folder entry, before the row that names it commits."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    folder.parent.chmod(0o700)
    path = folder / name
    partial = path.with_suffix(".part")
    with open(os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def display_name(filename: str) -> str:
    """The uploaded file's own name, as a row's source: its last path part, printable, at most 100 characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip() or "upload"
    return name[-100:]


_ATTEMPTS = ("SELECT u.public_id, u.uploaded_at, u.filename, u.path AS stored, s.* FROM uploads u JOIN submissions s"
             " ON s.id = u.submission_id")


def attempts(book: Gradebook, exercise: str, student_id: str) -> list[Attempt]:
    """A student's uploads of an exercise, newest first; the first one counts."""
    found = book.db.execute(f"{_ATTEMPTS} WHERE u.exercise = ? AND u.student_id = ?"
                            " ORDER BY u.uploaded_at DESC, u.rowid DESC", (exercise, student_id)).fetchall()
    return [Attempt(r["public_id"], r["uploaded_at"], r["filename"] or r["source"] or "", _row(r), counts=i == 0)
            for i, r in enumerate(found)]


def attempt(book: Gradebook, public_id: str) -> Attempt | None:
    """The attempt with a public id (its row's student is the one who uploaded it)."""
    r = book.db.execute(f"{_ATTEMPTS} WHERE u.public_id = ?", (public_id,)).fetchone()
    if r is None:
        return None
    latest = book.db.execute("SELECT public_id FROM uploads WHERE exercise = ? AND student_id = ?"
                             " ORDER BY uploaded_at DESC, rowid DESC LIMIT 1", (r["exercise"], r["student_id"])).fetchone()
    return Attempt(r["public_id"], r["uploaded_at"], r["filename"] or r["source"] or "", _row(r),
                   counts=latest[0] == public_id)


def stored_file(book: Gradebook, public_id: str) -> Path | None:
    """Where an upload's bytes are kept."""
    found = book.db.execute("SELECT path FROM uploads WHERE public_id = ?", (public_id,)).fetchone()
    return Path(found[0]) if found else None


def uploads_since(book: Gradebook, exercise: str, student_id: str, window: timedelta) -> list[datetime]:
    """When the student uploaded to the exercise within the last ``window``, oldest first."""
    since = (datetime.now(timezone.utc) - window).isoformat(timespec="seconds")
    return [datetime.fromisoformat(r[0]) for r in book.db.execute(
        "SELECT uploaded_at FROM uploads WHERE exercise = ? AND student_id = ? AND uploaded_at > ?"
        " ORDER BY uploaded_at",
        (exercise, student_id, since))]


def upload_counts(book: Gradebook, exercise: str) -> dict[str, int]:
    """Uploads per student."""
    return dict(book.db.execute("SELECT student_id, COUNT(*) FROM uploads WHERE exercise = ? GROUP BY student_id",
                                (exercise,)).fetchall())


def queued(book: Gradebook, exercise: str) -> list[tuple[Row, Path]]:
    """The uploads still to grade, in the order they came, with where each is stored."""
    found = book.db.execute("SELECT s.*, MIN(u.rowid) AS first, u.path AS stored FROM submissions s JOIN uploads u ON"
                            " u.submission_id = s.id WHERE s.exercise = ? AND s.status = 'pending'"
                            " GROUP BY s.id ORDER BY first", (exercise,)).fetchall()
    return [(_row(r), Path(r["stored"])) for r in found]


def grade_again(book: Gradebook, row: Row, by: Person) -> None:
    """Queue an uploaded submission to be graded again (its stored outcome is replaced; TAs' decisions stay)."""
    with book.transaction() as db:
        db.execute("UPDATE submissions SET status = 'pending' WHERE id = ?", (row.id,))
        book.record_action(by.label, "grade_again", row.exercise, row.student_id, row.source or "")


# what TAs control -----------------------------------------------------------------------------------

def released(book: Gradebook, exercise: str) -> bool:
    return book.db.execute("SELECT 1 FROM releases WHERE exercise = ?", (exercise,)).fetchone() is not None


def set_released(book: Gradebook, exercise: str, release: bool, by: Person) -> None:
    """Release an exercise's feedback (students then see every check and their total), or take the release back.
    A release is refused while uploads are open: every later attempt would show the hidden checks' results."""
    with book.transaction() as db:
        if release and uploads_open(book, exercise):
            raise UserError(L_("Close the uploads of {exercise} before releasing its feedback: while they are open, "
                               "every new attempt would show the hidden checks.").format(exercise=exercise))
        if release:
            db.execute("INSERT OR IGNORE INTO releases VALUES (?, ?)", (exercise, now()))
        else:
            db.execute("DELETE FROM releases WHERE exercise = ?", (exercise,))
        book.record_action(by.label, "release" if release else "unrelease", exercise)


def uploads_open(book: Gradebook, exercise: str) -> bool:
    return book.db.execute("SELECT 1 FROM uploads_closed WHERE exercise = ?", (exercise,)).fetchone() is None


def set_uploads_open(book: Gradebook, exercise: str, open_: bool, by: Person) -> None:
    with book.transaction() as db:
        if open_:
            db.execute("DELETE FROM uploads_closed WHERE exercise = ?", (exercise,))
        else:
            db.execute("INSERT OR IGNORE INTO uploads_closed VALUES (?, ?)", (exercise, now()))
        book.record_action(by.label, "open_uploads" if open_ else "close_uploads", exercise)


def _row(r) -> Row:
    return Row(**{k: r[k] for k in Row.__dataclass_fields__})
