"""A course's own settings (``course.toml`` in the course folder): its language, its time zone, and the Python
packages its notebooks may use.

```toml
language = "ja"
time_zone = "Asia/Tokyo"

[environment]
# What the lecture's setup cells install, and what Colab preinstalls that the course's code relies on.
packages = ["torch", "transformers", "scikit-learn", "matplotlib"]
```

The environment is what students have in Colab: the student process may import exactly these packages (and
Python's standard library), so a notebook graded here behaves as it did for its student, and ``validate`` refuses
an exercise whose solution or declared answers import anything else.
"""

from __future__ import annotations

import functools
import re
import sys
import tomllib
from datetime import datetime
from importlib import metadata
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import UserError
from .i18n import L_, LANGUAGES, Language
from .paths import course_dir

# Modules every notebook has whatever the course declares: Jupyter's own shell and its display helpers, and the
# student side of this tool (`from autograder import student`), which does nothing while the grader runs a notebook.
NOTEBOOK_MODULES = frozenset({"IPython", "ipykernel", "matplotlib_inline", "autograder"})


class Environment(BaseModel):
    """``[environment]``: the distributions (as pip names them) a notebook of the course may import."""

    model_config = ConfigDict(extra="forbid")
    packages: list[str] = []

    @field_validator("packages")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a package name")
        return names

    @property
    def declared(self) -> bool:
        return bool(self.packages)

    def modules(self) -> frozenset[str]:
        """The top-level modules a notebook may import: the declared packages', the standard library's and the
        notebook's own (empty when the course declares nothing: then nothing is refused)."""
        if not self.declared:
            return frozenset()
        return _modules_of(tuple(sorted(self.packages))) | sys.stdlib_module_names | NOTEBOOK_MODULES

    def missing_packages(self) -> list[str]:
        """Declared packages this machine does not have installed."""
        return [name for name in self.packages if _distribution_modules(name) is None]

    def described(self) -> str:
        return ", ".join(sorted(self.packages, key=str.lower))


@functools.cache
def _distribution_modules(name: str) -> frozenset[str] | None:
    """The top-level modules an installed distribution provides (None: not installed)."""
    wanted = _normal(name)
    found = {module for module, dists in metadata.packages_distributions().items()
             if any(_normal(d) == wanted for d in dists) and module.isidentifier()}
    if not found:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            return None
    return frozenset(found)


@functools.cache
def _modules_of(packages: tuple[str, ...]) -> frozenset[str]:
    return frozenset(m for name in packages for m in (_distribution_modules(name) or ()))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class CourseSettings(BaseModel):
    """``course.toml``."""

    model_config = ConfigDict(extra="forbid")
    language: str | None = None
    time_zone: str = "UTC"
    environment: Environment = Environment()

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> Language | None:
        if value is not None and value not in LANGUAGES:
            raise ValueError(f"language = {value!r}; use one of {', '.join(LANGUAGES)}")
        return value

    def moment(self, value: datetime | str | None) -> str:
        """A moment as the course's people read it: in its time zone, one format (``2026-05-01 23:59 JST``); a
        naive one is this machine's local time; "" for none."""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment is None:
            return ""
        local = (moment if moment.tzinfo else moment.astimezone()).astimezone(ZoneInfo(self.time_zone))
        zone = local.strftime("%Z")
        return local.strftime("%Y-%m-%d %H:%M ") + (zone if zone[:1].isalpha() else f"UTC{zone}")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{name!r} is not a time zone (use a name such as 'Asia/Tokyo')") from None
        return name


SETTINGS_FILE = "course.toml"


def course_settings(root: Path) -> CourseSettings:
    """The course folder's settings (defaults when it has no ``course.toml``); one sentence when the file is
    broken."""
    path = root / SETTINGS_FILE
    if not path.is_file():
        return CourseSettings()
    return _read(path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read(path: Path, _mtime: int) -> CourseSettings:
    try:
        return CourseSettings.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            detail = f"{'.'.join(map(str, first['loc']))}: {first['msg'].removeprefix('Value error, ')}"
        else:
            detail = str(exc).strip().splitlines()[0]
        raise UserError(L_("{path} is not a valid course file ({problem}); fix it and run again.").format(
            path=str(path), problem=detail)) from None


def moment(value: datetime | str | None) -> str:
    """A moment in the course folder's time zone (``CourseSettings.moment``)."""
    return course_settings(course_dir()).moment(value)


def settings_text(language: Language | None, time_zone: str) -> str:
    """A new course's ``course.toml``."""
    lines = ["# The course's own settings (see the README, 'Writing an exercise')."]
    if language:
        lines.append(f'language = "{language}"')
    lines += [f'time_zone = "{time_zone}"', "", "[environment]",
              "# The packages notebooks may import (as pip names them): what students have where they work.",
              'packages = ["torch", "transformers", "accelerate", "numpy", "matplotlib"]', ""]
    return "\n".join(lines)
