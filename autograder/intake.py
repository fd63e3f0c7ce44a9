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

Every file becomes a ``Found``, however broken: one that cannot be taken as a submission carries a
``problem`` (the row's status and a sentence) and is never read further. The grader never follows a
symbolic link (it could point at another student's file or at the course's solutions), reads each
file through a size cap while hashing it (a zip bomb stops at the cap, in constant memory), and
takes names as NFC (a macOS NFD ``josé`` is the roster's ``josé``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from .errors import UserError
from .i18n import L_, Text

MOODLE = re.compile(r"^(?P<name>[^_]+)_(?P<id>\d+)_assignsubmission_[a-z]+_(?P<file>.*)$")
CANVAS = re.compile(r"^(?P<name>[^_]+)_(?P<late>LATE_)?(?P<id>\d+)_\d+_(?P<file>.+)$")
IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints", "__pycache__"}
MiB = 1 << 20
# The largest file taken as a submission (``grade --max-file-mib``): far above any notebook of the
# course, far below what would strain the grader.
DEFAULT_MAX_BYTES = 64 * MiB
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
CHUNK = 1 << 20


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def local_time(value: datetime) -> datetime:
    """An aware datetime: a naive one is taken as this machine's local time."""
    return value if value.tzinfo else value.astimezone()


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 date-time (``2026-05-01T23:59``, ``2026-05-01 23:59:00+09:00``) as an aware datetime."""
    try:
        return local_time(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise UserError(L_("{what} '{text}' is not a date-time; write it like 2026-05-01T23:59:00+09:00.").format(
            what=what, text=text)) from None


@dataclass(frozen=True)
class Student:
    student_id: str
    name: str = ""
    lms_id: str = ""  # the number Moodle or Canvas puts in bulk-download file names (Canvas: the user's ID)
    deadline: datetime | None = None  # a personal extension; None: the exercise's deadline
    sis_user_id: str = ""  # Canvas's SIS User ID
    sis_login_id: str = ""  # Canvas's SIS Login ID
    section: str = ""
    email: str = ""


# The roster's own columns, and the headers of the LMS files a roster may be given as:
# Canvas's gradebook export (Student, ID, SIS User ID, SIS Login ID, Section, then a Points Possible
# row) and Moodle's participants or grades export (First name, Last name or Surname, ID number,
# Email address). Each value is the list of headers (case-folded) a roster field is read from.
ROSTER_COLUMNS = {
    "student_id": ["student_id"],
    "name": ["name", "student", "full name"],
    "lms_id": ["lms_id", "id"],
    "deadline": ["deadline"],
    "sis_user_id": ["sis_user_id", "sis user id"],
    "sis_login_id": ["sis_login_id", "sis login id"],
    "section": ["section", "sections"],
    "email": ["email", "email address"],
    "idnumber": ["id number", "idnumber"],
    "first": ["first name", "firstname"],
    "last": ["last name", "surname", "lastname"],
}


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

    def name_of(self, student_id: str) -> str:
        student = self.students.get(student_id)
        return student.name if student else ""

    @classmethod
    def load(cls, path: Path) -> Roster:
        """A roster CSV: this project's columns (``student_id`` required), or Canvas's gradebook export or
        Moodle's participants export as downloaded (see ROSTER_COLUMNS); whose id is the student id: our
        ``student_id``, else Canvas's SIS User ID (or its ID), else Moodle's ID number (or email address)."""
        if not path.is_file():
            raise UserError(L_("No roster at {path}; give a CSV file with a student_id column.").format(path=str(path)))
        reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig")))
        headers = {(h or "").strip().casefold(): h for h in reader.fieldnames or []}
        column = {f: next((headers[n] for n in names if n in headers), None) for f, names in ROSTER_COLUMNS.items()}
        id_columns = [c for c in (column["student_id"], column["sis_user_id"], column["idnumber"], column["lms_id"],
                                  column["email"]) if c]
        if not id_columns:
            raise UserError(L_("The roster {path} has no student_id column (nor a Canvas or Moodle export's ID "
                               "columns); its header must name one.").format(path=str(path)))
        students, seen = [], set()
        for line, raw in enumerate(reader, start=2):
            row = {f: nfc((raw.get(c) or "").strip()) if c else "" for f, c in column.items()}
            if "points possible" in row["name"].casefold() and not row["lms_id"]:
                continue  # the second row of a Canvas export
            sid = next((nfc((raw.get(c) or "").strip()) for c in id_columns if (raw.get(c) or "").strip()), "")
            if not sid:
                raise UserError(L_("The roster {path} has no student id on line {line}; fill it in or remove the "
                                   "line.").format(path=str(path), line=line))
            if sid in seen:
                raise UserError(L_("The roster {path} lists student {student} twice (line {line}); keep one line per "
                                   "student.").format(path=str(path), student=sid, line=line))
            seen.add(sid)
            deadline = parse_time(row["deadline"], f"The roster's deadline for {sid}") if row["deadline"] else None
            name = row["name"] or " ".join(p for p in (row["first"], row["last"]) if p)
            if "," in name and column["name"] == headers.get("student"):  # Canvas writes "Last, First"
                last, _, first = name.partition(",")
                name = f"{first.strip()} {last.strip()}"
            students.append(Student(sid, name, row["lms_id"], deadline, row["sis_user_id"], row["sis_login_id"],
                                    row["section"], row["email"]))
        return cls(students)

    def resolve(self, found: Found) -> tuple[str, str]:
        """(student id, name) for a submission found in SUBMISSIONS."""
        student = self._student_of(found)
        if found.layout == "folder":
            return found.key, student.name if student else ""
        return (student.student_id, student.name or found.name) if student else (found.key, found.name)

    def _student_of(self, found: Found) -> Student | None:
        if found.layout == "folder":
            return self.students.get(found.key)
        student = self._by_lms.get(found.key)
        if student is None:
            # By name only a student the roster gives no LMS number: two LMS users are two students.
            by_name = self._by_name.get(name_key(found.name))
            student = by_name if by_name is not None and not by_name.lms_id else None
        return student

    def resolve_all(self, found: list[Found]) -> tuple[list[tuple[str, str, tuple[str, ...]]], list[Text]]:
        """(student id, name, flags) for each submission, and a sentence for the TA per name two LMS users share.

        A roster student without an LMS number is matched by name; when files of two different LMS users carry
        that name, neither is given to the student (they are never merged into one, and neither supersedes the
        other): each stays under its own LMS number, flagged ``name_shared``, and the TA is told which."""
        by_name: dict[str, set[str]] = {}
        for item in found:
            student = self._student_of(item)
            if item.layout != "folder" and student is not None and item.key != student.lms_id:
                by_name.setdefault(student.student_id, set()).add(item.key)
        shared = {sid: numbers for sid, numbers in by_name.items() if len(numbers) > 1}
        resolved = []
        for item in found:
            student = self._student_of(item)
            if student is not None and student.student_id in shared and item.layout != "folder":
                resolved.append((item.key, item.name, (*item.flags, "name_shared")))
            else:
                resolved.append((*self.resolve(item), item.flags))
        notes = [L_("LMS users {numbers} both carry the name of roster student {student} ({name}), whose roster line "
                    "has no lms_id: neither was given to {student}; add the LMS number in an lms_id column and grade "
                    "again.").format(numbers=", ".join(sorted(numbers)), student=sid, name=self.students[sid].name)
                 for sid, numbers in sorted(shared.items())]
        return resolved, notes


@dataclass
class Found:
    """One file in SUBMISSIONS, before it is known whose it is."""

    source: str  # its path inside SUBMISSIONS
    key: str  # the student as the layout names them: folder/file stem, or the LMS number
    name: str  # the student's name when the layout gives one
    layout: str  # folder | moodle | canvas
    submitted_at: datetime
    submitted_at_from: str  # zip (the entry's timestamp) | mtime (the file's modification time)
    opener: Callable[[], io.BufferedIOBase] | None = field(default=None, repr=False)
    sha256: str = ""
    size: int = 0
    flags: tuple[str, ...] = ()  # lms_late: the LMS marked it late
    max_bytes: int = DEFAULT_MAX_BYTES
    problem: tuple[str, Text] | None = None  # (row status, sentence): not a submission the grader can take

    @property
    def is_notebook(self) -> bool:
        return self.source.lower().endswith(".ipynb")

    def read(self) -> bytes:
        """The file's bytes, at most max_bytes (TooLarge beyond); OSError and zip errors pass through."""
        assert self.opener is not None and self.problem is None
        return _read_capped(self.opener, self.max_bytes, hashlib.sha256())[0]


class TooLarge(Exception):
    pass


def discover(source: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Found]:
    """Every submission file in a folder or a zip, with its layout, student key, time and content hash;
    a file that cannot be a submission is listed with its problem (see the module docstring)."""
    if source.is_dir():
        entries = _folder_entries(source)
    elif source.is_file() and zipfile.is_zipfile(source):
        entries = _zip_entries(source, max_bytes)
    elif source.exists():
        raise UserError(L_("{path} is neither a folder nor a zip file; give the folder or the LMS download (.zip).")
                        .format(path=str(source)))
    else:
        raise UserError(L_("No submissions at {path}; check the path.").format(path=str(source)))
    found = []
    for entry in entries:
        parts = PurePosixPath(entry.path).parts
        if any(p in IGNORED_PARTS or p.startswith(".") and p != ".." for p in parts):  # ".." is refused below
            continue
        item = _classify(entry.path, parts, entry.when, entry.origin)
        item.opener, item.max_bytes, item.problem = entry.opener, max_bytes, entry.problem
        if item.problem is None:
            item.problem = _digest(item)
        if item.problem is not None:  # a content hash of its own, so that each such file is one row
            item.sha256 = hashlib.sha256(f"{item.source}\0{item.problem[1]}".encode()).hexdigest()
        found.append(item)
    return sorted(found, key=lambda f: f.source)


def _digest(item: Found) -> tuple[str, Text] | None:
    """Hash the file as it streams through the cap; the problem, if reading it fails."""
    try:
        item.sha256, item.size = _read_capped(item.opener, item.max_bytes, hashlib.sha256(), keep=False)[1:]
    except TooLarge:
        return too_large(item.source, item.max_bytes)
    except NotImplementedError:
        return "invalid", L_("The file {file} is compressed with a method Python cannot read (e.g. Deflate64); make "
                             "the zip again with ordinary Deflate compression.").format(file=item.source)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        return "invalid", L_("The file {file} is damaged in the zip ({problem}); download the submissions "
                             "again.").format(file=item.source, problem=str(exc))
    except RuntimeError as exc:  # zipfile: an encrypted entry
        return "invalid", L_("The file {file} cannot be read from the zip ({problem}); make the zip again without a "
                             "password.").format(file=item.source, problem=str(exc))
    except OSError as exc:
        return "error", L_("The file {file} could not be read ({problem}); check the disk and run the batch "
                           "again.").format(file=item.source, problem=str(exc.strerror or exc))
    return None


def too_large(source: str, max_bytes: int) -> tuple[str, Text]:
    return "invalid", L_("The file {file} is larger than {mib} MiB, far more than a notebook of this course; submit "
                         "the .ipynb file alone (clear large outputs first).").format(file=source,
                                                                                       mib=f"{max_bytes / MiB:g}")


def _read_capped(opener: Callable[[], io.BufferedIOBase], max_bytes: int, digest,
                 keep: bool = True) -> tuple[bytes, str, int]:
    """(the bytes if ``keep``, their sha256, their size), reading at most max_bytes + 1 of them."""
    chunks, size = [], 0
    with opener() as stream:
        while chunk := stream.read(min(CHUNK, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge()
            digest.update(chunk)
            if keep:
                chunks.append(chunk)
    return b"".join(chunks), digest.hexdigest(), size


@dataclass
class _Entry:
    path: str  # inside SUBMISSIONS, "/"-separated
    when: datetime
    origin: str  # zip | mtime
    opener: Callable[[], io.BufferedIOBase] | None
    problem: tuple[str, Text] | None = None


def _folder_entries(root: Path) -> Iterator[_Entry]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(folder) / name
            try:
                info = os.lstat(path)
            except OSError:
                continue  # gone since the listing
            if stat.S_ISDIR(info.st_mode):
                continue  # walked into next
            rel = path.relative_to(root).as_posix()
            when = datetime.fromtimestamp(info.st_mtime, tz=timezone.utc)
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                shown = os.fsencode(rel).decode("utf-8", "backslashreplace")
                yield _Entry(shown, when, "mtime", None, ("invalid", L_(
                    "The file name {file} is not UTF-8 (a zip made on Japanese Windows writes Shift-JIS names); "
                    "unpack the zip with its encoding (e.g. unzip -O cp932) or rename the file.").format(file=shown)))
                continue
            if stat.S_ISLNK(info.st_mode):
                yield _Entry(rel, when, "mtime", None, ("invalid", L_(
                    "{file} is a symbolic link, which the grader does not follow (it may point at someone else's "
                    "file); put the file itself in the submissions folder.").format(file=rel)))
            elif not stat.S_ISREG(info.st_mode):
                yield _Entry(rel, when, "mtime", None, ("invalid", L_("{file} is not a regular file; remove "
                                                                      "it.").format(file=rel)))
            else:
                yield _Entry(rel, when, "mtime", lambda path=path: _open_regular(path))


def _open_regular(path: Path) -> io.BufferedIOBase:
    """Open a file that must still be the regular file listed: never through a link, never blocking on a pipe."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path.name} is no longer a regular file")
    return os.fdopen(fd, "rb")


def _zip_entries(archive: Path, max_bytes: int) -> Iterator[_Entry]:
    with zipfile.ZipFile(archive) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
    for info in infos:
        # Zip timestamps carry no zone: they are the local time of whoever wrote the archive.
        when = local_time(datetime(*info.date_time))
        name = info.filename
        if name.startswith("/") or WINDOWS_DRIVE.match(name) or ".." in PurePosixPath(name).parts:
            yield _Entry(name, when, "zip", None, ("invalid", L_(
                "The zip entry {file} has an absolute path or leaves the archive, so whose it is cannot be told; "
                "zip the submissions folder itself.").format(file=name)))
            continue

        if info.file_size > max_bytes:  # as declared; _read_capped holds a lying declaration to the cap too
            yield _Entry(name, when, "zip", None, too_large(name, max_bytes))
            continue

        def opener(info: zipfile.ZipInfo = info) -> io.BufferedIOBase:
            zf = zipfile.ZipFile(archive)
            try:
                return _Closing(zf.open(info), zf)
            except BaseException:
                zf.close()
                raise

        yield _Entry(name, when, "zip", opener)


class _Closing(io.BufferedIOBase):
    """A zip member's stream that closes its archive with it."""

    def __init__(self, member: io.BufferedIOBase, archive: zipfile.ZipFile) -> None:
        self.member, self.archive = member, archive

    def read(self, size: int = -1) -> bytes:
        return self.member.read(size)

    def close(self) -> None:
        self.member.close()
        self.archive.close()
        super().close()


def _classify(path: str, parts: tuple[str, ...], when: datetime, origin: str) -> Found:
    first = nfc(parts[0])
    moodle = MOODLE.match(first)
    if moodle and (moodle["file"] or len(parts) > 1):
        return Found(path, moodle["id"], moodle["name"], "moodle", when, origin)
    canvas = CANVAS.match(first) if len(parts) == 1 else None
    if canvas:
        flags = ("lms_late",) if canvas["late"] else ()
        return Found(path, canvas["id"], canvas["name"], "canvas", when, origin, flags=flags)
    key = first if len(parts) > 1 else PurePosixPath(first).stem
    return Found(path, key, "", "folder", when, origin)
