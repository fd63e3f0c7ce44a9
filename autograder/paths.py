"""Where the course lives on disk (exercises, solutions, rubrics, hidden checks, caches), and files written whole
or not at all.

A course is a folder of its own (``--course DIR`` or ``$AUTOGRADER_COURSE_DIR``) holding
``assignments/``, ``solutions/``, ``rubrics/`` and ``hidden_checks/<exercise>/``; every command
reads and writes there, and nothing is written into the installed package. Without one, the course
is this repository (the bundled course). Hidden checks live in the course folder, never in the package students
may install.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import UserError
from .i18n import L_

COURSE_SETTING = "AUTOGRADER_COURSE_DIR"
PACKAGE = Path(__file__).resolve().parent
BUNDLED_COURSE = PACKAGE.parent  # a checkout of this repository; in an installed package, site-packages


def course_dir() -> Path:
    """The course folder; one sentence if there is none."""
    env = os.environ.get(COURSE_SETTING)
    if env:
        root = Path(env).resolve()
        if not root.is_dir():
            raise UserError(L_("The course folder {root} does not exist; create it (`autograder --course {root} new "
                               "NAME` starts one) or fix --course / $AUTOGRADER_COURSE_DIR.").format(root=str(root)))
        return root
    if not (BUNDLED_COURSE / "assignments").is_dir():  # installed: site-packages is no course
        raise UserError(L_("No course folder: pass --course DIR (or set $AUTOGRADER_COURSE_DIR) to the folder "
                           "holding assignments/, solutions/ and rubrics/; `autograder --course DIR new NAME` starts "
                           "one."))
    return BUNDLED_COURSE


def cache_dir() -> Path:
    """Generated, never committed artefacts: model stand-ins, datasets."""
    env = os.environ.get("AUTOGRADER_CACHE")
    return Path(env).resolve() if env else course_dir() / ".cache"


def checks_dir(exercise: str, root: Path | None = None) -> Path:
    """Hidden checks of one exercise (never in what students get): ``hidden_checks/<exercise>/`` of the course
    folder."""
    return (root or course_dir()).resolve() / "hidden_checks" / exercise


def course_relative(path: str | Path) -> str:
    """A course file as a student or TA should read it: relative to the course folder (``rubrics/t5.toml``), or
    just its name when it lies elsewhere; never an absolute path of the grading machine."""
    path = Path(path)
    try:
        return path.resolve().relative_to(course_dir()).as_posix()
    except (ValueError, UserError):
        return path.name


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file. ``mode``: the file's
    permissions (default: an ordinary file's); a secret's file is never readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
