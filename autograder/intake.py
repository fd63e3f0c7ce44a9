"""Finding submissions and whose they are: a folder, a zip, or an LMS bulk download, and the roster.

Layouts, recognised per file from the first component of its path inside SUBMISSIONS:

- folder: ``<student_id>.ipynb`` or ``<student_id>/<anything>`` (the folder name is the id);
- Moodle "Download all submissions": ``<Full Name>_<participant id>_assignsubmission_file_<file>``,
  or, with "Download submissions in folders", the folder ``<Full Name>_<participant id>_assignsubmission_file_``
  holding the files;
- Canvas "Download Submissions": ``<lastfirst>_<user id>_<attachment id>_<file>``, with ``LATE_`` before
  the user id when Canvas marked the submission late.

An LMS file belongs to the roster student whose ``lms_id`` is the number in its name, else to the one
whose name matches; without a match its student id is that number (and, with a roster, it is flagged).
The submitted-at time is the entry's timestamp in a zip (LMS downloads write the upload time there)
or the file's modification time in a folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from .errors import UserError

MOODLE = re.compile(r"^(?P<name>[^_]+)_(?P<id>\d+)_assignsubmission_[a-z]+_(?P<file>.*)$")
CANVAS = re.compile(r"^(?P<name>[^_]+)_(?P<late>LATE_)?(?P<id>\d+)_\d+_(?P<file>.+)$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}


def local_time(value: datetime) -> datetime:
    """An aware datetime: a naive one is taken as this machine's local time."""
    return value if value.tzinfo else value.astimezone()


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 date-time (``2026-05-01T23:59``, ``2026-05-01 23:59:00+09:00``) as an aware datetime."""
    try:
        return local_time(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise UserError(f"{what} '{text}' is not a date-time; write it like 2026-05-01T23:59:00+09:00.") from None


@dataclass(frozen=True)
class Student:
    student_id: str
    name: str = ""
    lms_id: str = ""
    deadline: datetime | None = None  # a personal extension; None: the exercise's deadline


def name_key(name: str) -> str:
    """A name reduced to what LMS file names keep: letters and digits, case-folded."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", name).casefold() if ch.isalnum())


class Roster:
    """The students expected to submit (``--roster roster.csv``).

    CSV with a header row: ``student_id`` (required), and optionally ``name``, ``lms_id`` (the number
    Moodle or Canvas puts in file names) and ``deadline`` (a personal extension, ISO 8601).
    """

    def __init__(self, students: list[Student]) -> None:
        self.students = {s.student_id: s for s in students}
        self._by_lms = {s.lms_id: s for s in students if s.lms_id}
        by_name: dict[str, list[Student]] = {}
        for s in students:
            words = s.name.split()
            # Canvas writes "lastfirst"; Moodle the full name as the LMS shows it.
            for variant in {name_key(s.name), name_key("".join(words[-1:] + words[:-1]))} - {""}:
                by_name.setdefault(variant, []).append(s)
        self._by_name = {k: v[0] for k, v in by_name.items() if len(v) == 1}  # ambiguous names never match

    def __bool__(self) -> bool:
        return bool(self.students)

    def __contains__(self, student_id: str) -> bool:
        return student_id in self.students

    @classmethod
    def load(cls, path: Path) -> Roster:
        if not path.is_file():
            raise UserError(f"No roster at {path}; give a CSV file with a student_id column.")
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        fields = {(k or "").strip().lower() for k in (rows[0].keys() if rows else [])}
        if "student_id" not in fields:
            raise UserError(f"The roster {path} has no student_id column; its header must name one.")
        students, seen = [], set()
        for line, row in enumerate(rows, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
            sid = row["student_id"]
            if not sid:
                raise UserError(f"The roster {path} has no student_id on line {line}; fill it in or remove the line.")
            if sid in seen:
                raise UserError(f"The roster {path} lists student {sid} twice (line {line}); keep one line per student.")
            seen.add(sid)
            deadline = parse_time(row["deadline"], f"The roster's deadline for {sid}") if row.get("deadline") else None
            students.append(Student(sid, row.get("name", ""), row.get("lms_id", ""), deadline))
        return cls(students)

    def resolve(self, found: Found) -> tuple[str, str]:
        """(student id, name) for a submission found in SUBMISSIONS."""
        if found.layout == "folder":
            student = self.students.get(found.key)
            return found.key, student.name if student else ""
        student = self._by_lms.get(found.key) or self._by_name.get(name_key(found.name))
        return (student.student_id, student.name or found.name) if student else (found.key, found.name)


@dataclass
class Found:
    """One file in SUBMISSIONS, before it is known whose it is."""

    source: str  # its path inside SUBMISSIONS
    key: str  # the student as the layout names them: folder/file stem, or the LMS number
    name: str  # the student's name when the layout gives one
    layout: str  # folder | moodle | canvas
    submitted_at: datetime
    submitted_at_from: str  # zip (the entry's timestamp) | mtime (the file's modification time)
    read: Callable[[], bytes] = field(repr=False)
    sha256: str = ""
    size: int = 0
    flags: tuple[str, ...] = ()  # lms_late: the LMS marked it late

    @property
    def is_notebook(self) -> bool:
        return self.source.lower().endswith(".ipynb")


def discover(source: Path) -> list[Found]:
    """Every submission file in a folder or a zip, with its layout, student key, time and content hash."""
    if source.is_dir():
        entries = _folder_entries(source)
    elif source.is_file() and zipfile.is_zipfile(source):
        entries = _zip_entries(source)
    elif source.exists():
        raise UserError(f"{source} is neither a folder nor a zip file; give the folder or the LMS download (.zip).")
    else:
        raise UserError(f"No submissions at {source}; check the path.")
    found = []
    for path, when, origin, read in entries:
        parts = PurePosixPath(path).parts
        if any(p in IGNORED_PARTS or p.startswith(".") for p in parts):
            continue
        item = _classify(path, parts, when, origin, read)
        data = read()
        item.sha256, item.size = hashlib.sha256(data).hexdigest(), len(data)
        found.append(item)
    return sorted(found, key=lambda f: f.source)


Entry = tuple[str, datetime, str, Callable[[], bytes]]


def _folder_entries(root: Path) -> Iterator[Entry]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            when = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
            yield path.relative_to(root).as_posix(), when, "mtime", path.read_bytes


def _zip_entries(archive: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    for info in infos:
        def read(name: str = info.filename) -> bytes:
            with zipfile.ZipFile(archive) as zf:
                return zf.read(name)

        # Zip timestamps carry no zone: they are the local time of whoever wrote the archive.
        yield info.filename, local_time(datetime(*info.date_time)), "zip", read


def _classify(path: str, parts: tuple[str, ...], when: datetime, origin: str, read: Callable[[], bytes]) -> Found:
    first = parts[0]
    moodle = MOODLE.match(first)
    if moodle and (moodle["file"] or len(parts) > 1):
        return Found(path, moodle["id"], moodle["name"], "moodle", when, origin, read)
    canvas = CANVAS.match(first) if len(parts) == 1 else None
    if canvas:
        flags = ("lms_late",) if canvas["late"] else ()
        return Found(path, canvas["id"], canvas["name"], "canvas", when, origin, read, flags=flags)
    key = first if len(parts) > 1 else PurePosixPath(first).stem
    return Found(path, key, "", "folder", when, origin, read)
