"""What the submission service keeps in the gradebook: personal links, uploads, released feedback.

A link's token is shown once (written to ``access.csv`` for the TA to mail out) and stored only as its
SHA-256, so a copied gradebook opens nothing. Each upload is written to disk and synced, then registered
as a gradebook row (pending) and an ``uploads`` entry in one transaction, and only then acknowledged:
an acknowledged upload survives a crash, and one that was not acknowledged leaves at most a file
without a row. The pending uploads are the service's queue.
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

from ..build import write_atomic
from ..gradebook import Gradebook, Row, now
from ..i18n import L_, Text
from ..intake import Roster

TA = "__ta__"  # the access row (and access.csv line) of the TA link
ACCESS_COLUMNS = ["student_id", "name", "token", "link"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(token: str) -> str:
    """The value a form of this session must send back: unguessable without the session's own token."""
    return hmac.new(token.encode("utf-8", "surrogatepass"), b"csrf", hashlib.sha256).hexdigest()


def holder(book: Gradebook, token: str | None) -> str | None:
    """Whose link a token is (a student id, or TA), None when it is no one's."""
    if not token or len(token) > 200:
        return None
    found = book.db.execute("SELECT student_id FROM access WHERE token_sha256 = ?", (token_hash(token),)).fetchone()
    return found[0] if found else None


def issue_links(book: Gradebook, roster: Roster, access_csv: Path, base_url: str, reissue: bool = False) -> list[Text]:
    """A link for every roster student (and the TA) without one, written with the links made earlier to
    ``access_csv`` (readable by its owner only). ``reissue`` replaces every link. Returns notes for the TA."""
    known: dict[str, str] = {}  # student id -> token, for the tokens access.csv still holds correctly
    if access_csv.is_file() and not reissue:
        for line in csv.DictReader(io.StringIO(access_csv.read_text(encoding="utf-8"))):
            known[line.get("student_id") or ""] = line.get("token") or ""
    stored = {r[0]: r[1] for r in book.db.execute("SELECT student_id, token_sha256 FROM access")}
    known = {sid: token for sid, token in known.items() if stored.get(sid) == token_hash(token)}
    wanted = [TA, *roster.students]
    fresh = {sid: secrets.token_urlsafe(24) for sid in wanted if reissue or sid not in stored}
    lost = sorted(sid for sid in wanted if sid in stored and sid not in known and sid not in fresh)
    with book.transaction() as db:
        if reissue:
            db.execute("DELETE FROM access")
        db.executemany("INSERT INTO access (student_id, token_sha256, created_at) VALUES (?, ?, ?) ON CONFLICT"
                       " (student_id) DO UPDATE SET token_sha256 = excluded.token_sha256,"
                       " created_at = excluded.created_at", [(sid, token_hash(t), now()) for sid, t in fresh.items()])
    tokens = {**known, **fresh}
    out = io.StringIO()
    writer = csv.DictWriter(out, ACCESS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for sid in wanted:
        if sid in tokens:
            name = "TA" if sid == TA else roster.students[sid].name
            writer.writerow({"student_id": sid, "name": name, "token": tokens[sid],
                             "link": f"{base_url.rstrip('/')}/login/{tokens[sid]}"})
    write_atomic(access_csv, out.getvalue(), mode=0o600)  # it holds every link
    notes = []
    if fresh:
        notes.append(L_("{count} new link(s) written to {path}.").format(count=len(fresh), path=str(access_csv)))
    if lost:
        notes.append(L_("{count} link(s) made earlier are not in {path} any more ({students}); those links still "
                        "work, and `--reissue-links` replaces every link.").format(
                            count=len(lost), path=str(access_csv), students=", ".join(lost[:10])))
    return notes


@dataclass
class Attempt:
    public_id: str
    uploaded_at: str
    row: Row


class TooMany(Exception):
    """The student has used the exercise's uploads of the window; ``again`` is when one frees up."""

    def __init__(self, count: int, again: datetime) -> None:
        super().__init__(count, again)
        self.count, self.again = count, again


def store_upload(book: Gradebook, uploads: Path, exercise: str, student_id: str, name: str, filename: str,
                 data: bytes, allowed: int, window: timedelta = timedelta(hours=1)) -> str:
    """Keep an upload durably and queue it (see the module docstring); returns its public id. Refused with
    ``TooMany``, storing nothing, when the student already made ``allowed`` uploads within ``window``: counted
    in the same write transaction, so two uploads at once cannot both take the last one."""
    public_id = secrets.token_hex(12)
    sha256 = hashlib.sha256(data).hexdigest()
    stamp = now()
    with book.transaction() as db:
        recent = uploads_since(book, exercise, student_id, window)
        if len(recent) >= allowed:
            raise TooMany(len(recent), recent[0] + window)
        path = _write_synced(uploads / exercise, f"{public_id}.upload", data)
        # The same bytes again are the same row (a file is graded once); the attempt is still counted.
        db.execute("INSERT OR IGNORE INTO submissions (exercise, student_id, student_name, source, sha256, size,"
                   " layout, submitted_at, submitted_at_from, registered_at, status)"
                   " VALUES (?, ?, ?, ?, ?, ?, 'upload', ?, 'upload', ?, 'pending')",
                   (exercise, student_id, name, display_name(filename), sha256, len(data), stamp, stamp))
        row_id = db.execute("SELECT id FROM submissions WHERE exercise = ? AND student_id = ? AND sha256 = ?",
                            (exercise, student_id, sha256)).fetchone()[0]
        db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                   (public_id, row_id, exercise, student_id, str(path), stamp))
        book.choose_current(db, exercise, student_id)
    return public_id


def _write_synced(folder: Path, name: str, data: bytes) -> Path:
    """The file on disk, synced with its folder entry, before the row that names it commits."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    partial = path.with_suffix(".part")
    with open(partial, "wb") as out:
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


def attempts(book: Gradebook, exercise: str, student_id: str) -> list[Attempt]:
    """A student's uploads of an exercise, newest first."""
    found = book.db.execute("SELECT u.public_id, u.uploaded_at, s.* FROM uploads u JOIN submissions s ON"
                            " s.id = u.submission_id WHERE u.exercise = ? AND u.student_id = ?"
                            " ORDER BY u.uploaded_at DESC, u.rowid DESC", (exercise, student_id)).fetchall()
    return [Attempt(r["public_id"], r["uploaded_at"], _row(r)) for r in found]


def attempt(book: Gradebook, public_id: str) -> Attempt | None:
    """The attempt with a public id (its row's student is the one who uploaded it)."""
    r = book.db.execute("SELECT u.public_id, u.uploaded_at, s.* FROM uploads u JOIN submissions s ON"
                        " s.id = u.submission_id WHERE u.public_id = ?", (public_id,)).fetchone()
    return Attempt(r["public_id"], r["uploaded_at"], _row(r)) if r else None


def uploads_since(book: Gradebook, exercise: str, student_id: str, window: timedelta) -> list[datetime]:
    """When the student uploaded to the exercise within the last ``window``, oldest first."""
    since = (datetime.now(timezone.utc) - window).isoformat(timespec="seconds")
    return [datetime.fromisoformat(r[0]) for r in book.db.execute(
        "SELECT uploaded_at FROM uploads WHERE exercise = ? AND student_id = ? AND uploaded_at > ?"
        " ORDER BY uploaded_at",
        (exercise, student_id, since))]


def queued(book: Gradebook, exercise: str) -> list[tuple[Row, Path]]:
    """The uploads still to grade, in the order they came, with where each is stored."""
    found = book.db.execute("SELECT s.*, MIN(u.rowid) AS first, u.path AS stored FROM submissions s JOIN uploads u ON"
                            " u.submission_id = s.id WHERE s.exercise = ? AND s.status = 'pending'"
                            " GROUP BY s.id ORDER BY first", (exercise,)).fetchall()
    return [(_row(r), Path(r["stored"])) for r in found]


def released(book: Gradebook, exercise: str) -> bool:
    return book.db.execute("SELECT 1 FROM releases WHERE exercise = ?", (exercise,)).fetchone() is not None


def release(book: Gradebook, exercise: str) -> None:
    with book.transaction() as db:
        db.execute("INSERT OR IGNORE INTO releases VALUES (?, ?)", (exercise, now()))


def _row(r) -> Row:
    return Row(**{k: r[k] for k in Row.__dataclass_fields__})
