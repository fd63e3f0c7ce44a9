"""An exercise on disk: metadata, notebooks, check files, rubric."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, PositiveFloat, PositiveInt, ValidationError

from .course import course_settings
from .errors import UserError
from .i18n import L_, Language
from .paths import checks_dir, course_dir


PerProfile = PositiveFloat | dict[str, PositiveFloat]


class Limits(BaseModel):
    """``[limits]``: what a submission may take. A limit tuned on ``tiny`` can fail every student at real sizes, so
    each is one number or a table per model profile (``cell_timeout = { tiny = 120, full = 600 }``); ``hub`` (real
    weights) takes ``full``'s (real sizes), and a profile the table leaves out takes the default."""

    model_config = ConfigDict(extra="forbid")
    cell_timeout: PerProfile = 120
    notebook_timeout: PerProfile = 600
    call_timeout: PerProfile = 60
    memory_gib: PerProfile = 8  # the student's process (RLIMIT_DATA; with a cgroup, the whole run's, plus its disk)
    answer_mib: PerProfile = 256  # the largest answer the student process may hand over
    # Copies of the exercise's models the grader's checks hold at once (a reference, and one fresh to train): the
    # grader's memory budget is counted on top of them.
    grader_model_copies: PositiveInt = 1
    # GPU memory one submission takes while graded (the student's process and the grader's
    # reference copies), in GiB, per model profile: how many submissions share a GPU.
    gpu_memory_gib: dict[str, PositiveFloat] = {}

    def of(self, name: str, profile: str) -> float:
        """The limit ``name`` for a profile."""
        value = getattr(self, name)
        if not isinstance(value, dict):
            return value
        found = value.get(profile) or (value.get("full") if profile == "hub" else None)
        return found if found is not None else type(self).model_fields[name].default

    def gpu_memory(self, profile: str) -> float | None:
        """The declared need for a profile; ``hub`` (real weights) takes ``full``'s (real sizes)."""
        return self.gpu_memory_gib.get(profile) or (self.gpu_memory_gib.get("full") if profile == "hub" else None)


class Lms(BaseModel):
    """How the LMS knows the exercise (``[lms]``): the defaults of ``export --format canvas|moodle``."""

    model_config = ConfigDict(extra="forbid")
    assignment_name: str | None = None  # default: the exercise's title
    canvas_assignment_id: str | None = None  # the number in the assignment's Canvas address


class ServiceSpec(BaseModel):
    """How the submission service (``autograder serve``) takes this exercise (``[service]``)."""

    model_config = ConfigDict(extra="forbid")
    # Uploads a student may make in any hour: enough to fix and resubmit, too few to probe the hidden checks.
    uploads_per_hour: PositiveInt = 6
    # Check-only requests (the public checks, not an attempt) a student may make in any hour.
    checks_per_hour: PositiveInt = 20
    # Students may ask a TA about a check (a regrade request) until this many days after the feedback's release.
    regrade_request_days: PositiveFloat = 7


class ExerciseSpec(BaseModel):
    """``assignments/<name>/exercise.toml``."""

    model_config = ConfigDict(extra="forbid")
    title: str
    notebook: str
    limits: Limits = Limits()
    # Values the grader writes into the notebook's `parameters` cell, on top of DEVICE and
    # DTYPE. A string "dataset:<hub id>" becomes the local path of that dataset's stand-in.
    grading_parameters: dict[str, bool | int | float | str | list[str]] = {}
    # Values `validate`'s copied-output proof runs the solution with in place of the notebook's own, where those
    # cannot run here (the hub's dataset, a 13-minute training budget); same forms as grading_parameters.
    # They must differ from the grading values, as the notebook's own do. validate names them.
    proof_parameters: dict[str, bool | int | float | str | list[str]] = {}
    # Grading parameters that keep the notebook's own value, each with the reason (the course's model: no other one
    # of its family is provisioned). validate refuses any other parameter the grader does not vary: a value typed in
    # from the notebook would pass where it should have been read from the parameters cell.
    constant_parameters: dict[str, str] = {}
    # A Python file beside exercise.toml whose functions the grader appends as the notebook's last cell, for checks
    # that need to look at objects (a model's parameters, files on disk) through plain data. Students may read it.
    probes: str | None = None
    lms: Lms = Lms()
    service: ServiceSpec = ServiceSpec()
    # The language of the pages written for this exercise (feedback, report); default: course.toml's, else English.
    language: Literal["en", "ja"] | None = None


class Exercise:
    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        self.root = root or course_dir()
        meta = self.assignment_dir / "exercise.toml"
        if not meta.is_file():
            known = ", ".join(available(self.root)) or "none"
            raise UserError(L_("Unknown exercise '{name}' (no {file}); known exercises: {known}.").format(
                name=name, file=str(meta), known=known))
        try:
            self.spec = ExerciseSpec.model_validate(tomllib.loads(meta.read_text()))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise UserError(L_("{file} is not a valid exercise file: {problem}; fix it and run again.").format(
                file=str(meta), problem=_first_line(exc))) from exc

    @property
    def assignment_dir(self) -> Path:
        return self.root / "assignments" / self.name

    @property
    def student_notebook(self) -> Path:
        return self.assignment_dir / self.spec.notebook

    @property
    def solution_notebook(self) -> Path:
        return self.root / "solutions" / self.name / self.spec.notebook

    @property
    def rubric_file(self) -> Path:
        return self.root / "rubrics" / f"{self.name}.toml"

    @property
    def probes_source(self) -> str | None:
        """The source of the exercise's probe functions, if it has any."""
        if self.spec.probes is None:
            return None
        path = self.assignment_dir / self.spec.probes
        if not path.is_file():
            raise UserError(L_("{file} names probes {probes}, but there is no {path}; add the file or remove the "
                               "setting.").format(file=str(self.assignment_dir / "exercise.toml"),
                                                  probes=repr(self.spec.probes), path=str(path)))
        return path.read_text(encoding="utf-8")

    @property
    def public_check_files(self) -> list[Path]:
        return sorted((self.assignment_dir / "checks").glob("test_*.py"))

    @property
    def hidden_check_files(self) -> list[Path]:
        return sorted(checks_dir(self.name, self.root).glob("test_*.py"))

    @property
    def catalog_dir(self) -> Path:
        """The translations of the check files' sentences and titles (``autograder catalog`` writes them)."""
        return checks_dir(self.name, self.root) / "locales"

    def check_files(self, public_only: bool = False) -> list[Path]:
        return self.public_check_files if public_only else self.public_check_files + self.hidden_check_files


def language_of(exercise: str, chosen: Language | None = None) -> Language:
    """The language pages of an exercise are written in: ``--lang``, else the exercise's ``language``, else the
    course's, else English."""
    if chosen:
        return chosen
    root = course_dir()
    try:
        spec_language = Exercise(exercise, root).spec.language
    except UserError:  # graded earlier, no longer in this course folder
        spec_language = None
    return spec_language or course_settings(root).language or "en"


def available(root: Path | None = None) -> list[str]:
    base = (root or course_dir()) / "assignments"
    return sorted(p.parent.name for p in base.glob("*/exercise.toml"))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
