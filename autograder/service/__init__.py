"""The submission service (``autograder serve``): students upload and read their feedback in seconds,
TAs watch the cohort live, all in the same gradebook as ``autograder grade``.

- ``store``: what the service keeps in the gradebook (links as hashes, uploads, releases, closed uploads);
- ``queue``: per exercise, a grading batch that never ends, fed by committed uploads; ``checks``: check-only
  requests (public checks, nothing stored);
- ``web``: what every page shares (sessions, refusals, templates, the course's time zone);
- ``students``: the students' pages and the JSON API; ``ta``: the TAs' workbench;
- ``app``: the routes and the guard around them (Starlette).

``open_service`` builds what ``app.create_app`` serves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..build import build_student_wheel
from ..checking import hidden_only_steps
from ..cohort import prepare
from ..course import course_settings
from ..errors import UserError
from ..exercise import Exercise, available
from ..executors import Executor
from ..executors.local import LocalExecutor
from ..gradebook import Gradebook
from ..grading import GradeOptions
from ..i18n import L_, Language, Text
from ..intake import Roster
from ..paths import course_dir
from . import store
from .checks import CheckQueue
from .queue import ExerciseQueue
from .web import Served, Service


def open_service(book: Gradebook, exercises: list[str], roster: Roster | None, base_url: str, language: Language,
                 options: GradeOptions, runner: tuple[str, bool] | None, max_bytes: int, jobs: int | None = None,
                 reissue_links: bool = False, deadline: str | None = None,
                 tas: list[store.Person] | None = None,
                 executors: Callable[[], Executor] = LocalExecutor) -> tuple[Service, list[Text]]:
    """The service over ``book`` for ``exercises`` (default: every exercise of the course): the rubric of each
    put in force with the deadline (``--deadline``, else the one in force, else the rubric's), a 'missing' row
    for every roster student without a submission and a link for each student and TA (``store.issue_links``;
    without a TA roster, one TA link). Each exercise grades on an executor of its own (``executors``: local
    processes, or actors of a Ray cluster). Returns it with notes for the TA."""
    if roster is not None:
        book.set_roster(roster)
    roster = book.roster()
    if not roster:
        raise UserError(L_("The service needs a roster to make the students' links; pass --roster roster.csv."))
    notes: list[Text] = []
    served = {}
    names = exercises or available()
    for name in names:
        exercise = Exercise(name)
        workers_at = executors()
        setup = prepare(exercise, book, replace(options, device=workers_at.choose_device(options.device)), deadline)
        notes += setup.notes
        book.register(name, [], roster)
        fit = workers_at.capacity(setup.options.profile, exercise, setup.options.device)
        queue = ExerciseQueue(exercise, book.path, setup, runner, jobs or max(1, fit // len(names)), max_bytes,
                              workers_at)
        served[name] = Served(exercise, queue, CheckQueue(exercise, setup, runner), hidden_only_steps(exercise))
    access = access_file(book.path)
    notes += store.issue_links(book, roster, tas or store.DEFAULT_TAS, access, base_url, reissue_links)
    wheel = build_student_wheel(book.path.parent / "student")
    service = Service(book.path, book.path.parent / "uploads", roster, served, language, max_bytes,
                      settings=course_settings(course_dir()), base_url=base_url.rstrip("/"), access_csv=access,
                      student_wheel=wheel, secure_cookies=base_url.startswith("https://"))
    return service, notes


def access_file(book_path: Path) -> Path:
    return book_path.parent / "access.csv"
