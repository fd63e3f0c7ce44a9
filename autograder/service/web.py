"""What every page and API answer of the submission service shares: the service's state, who is asking (their
link's session), refusals in one sentence, forms' CSRF tokens, templates and times in the course's time zone."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import scoring
from ..course import CourseSettings
from ..exercise import Exercise
from ..feedback import TEMPLATES, Visibility
from ..gradebook import Gradebook, Row
from ..i18n import LANGUAGES, L_, Language, Text, render, translations
from ..intake import Roster
from ..results import STATUS_WORDS, GradingResult
from . import store
from .checks import CheckQueue
from .queue import ExerciseQueue

COOKIE = "autograder_session"
LANGUAGE_COOKIE = "autograder_language"


@dataclass
class Served:
    """One exercise the service takes uploads for."""

    exercise: Exercise
    queue: ExerciseQueue
    checks: CheckQueue  # check-only requests: public checks, not attempts
    hidden_only: list[dict[str, list[str]]]  # the steps only hidden checks judge, titles by language

    @property
    def name(self) -> str:
        return self.exercise.name


@dataclass
class Service:
    """What the app serves (built by ``autograder serve``)."""

    book_path: Path
    uploads: Path
    roster: Roster
    served: dict[str, Served]
    language: Language
    max_bytes: int
    settings: CourseSettings = field(default_factory=CourseSettings)  # the course's time zone
    base_url: str = ""  # the address students use (links, the student wheel)
    access_csv: Path | None = None  # where links are written (a reissued one too)
    student_wheel: Path | None = None  # what `pip install` takes in Colab (see autograder/student.py)
    secure_cookies: bool = False
    environments: dict[Language, jinja2.Environment] = field(default_factory=dict)

    def book(self) -> Gradebook:
        return Gradebook(self.book_path)  # one connection per call: requests run on many threads

    def page(self, request: Request, template: str, status: int = 200, **values) -> HTMLResponse:
        language = self.language_of(request)
        env = self.environments.get(language)
        if env is None:
            env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "service"), autoescape=True,
                                     extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
            env.install_gettext_translations(translations(language), newstyle=False)
            self.environments[language] = env
        html = env.get_template(template).render(lang=language, languages=LANGUAGES, status_words=status_words(language),
                                             **values)
        return HTMLResponse(html, status_code=status)

    def language_of(self, request: Request) -> Language:
        chosen = request.cookies.get(LANGUAGE_COOKIE)
        return chosen if chosen in LANGUAGES else self.language

    def say(self, request: Request, sentence: Text | str) -> str:
        return render(sentence, self.language_of(request))

    def when(self, value: datetime | str | None) -> str:
        """A moment in the course's time zone, in the one format every page uses."""
        return self.settings.moment(value)

    def local_input(self, text: str) -> datetime:
        """A date-time a TA typed (a ``datetime-local`` field: no zone) as the course's time zone's."""
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise Refusal(400, L_("'{text}' is not a date and time; give one like 2026-05-08 23:59.").format(
                text=text)) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(self.settings.time_zone))


class Refusal(Exception):
    """A request refused with a status and one sentence (a page for browsers, JSON for the API)."""

    def __init__(self, status: int, sentence: Text | str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


NOT_SIGNED_IN = L_("This link is not valid, or you are not signed in; open the personal link the course sent you.")


def service_of(request: Request) -> Service:
    return request.app.state.service


def holder(service: Service, token: str | None) -> store.Person | None:
    with service.book() as book:
        return store.holder(book, token)


def session(request: Request) -> tuple[str, store.Person]:
    """(token, who) of a page request's session cookie."""
    token = request.cookies.get(COOKIE)
    who = holder(service_of(request), token)
    if who is None:
        raise Refusal(401, NOT_SIGNED_IN)
    return token, who


def bearer(request: Request) -> store.Person:
    """Whose token an API request carries."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    who = holder(service_of(request), token.strip()) if scheme.lower() == "bearer" else None
    if who is None:
        raise Refusal(401, L_("Send your personal token as `Authorization: Bearer <token>`; this one is not valid."))
    return who


def served_of(service: Service, name: str) -> Served:
    if name not in service.served:
        raise Refusal(404, L_("{exercise} is not open for submissions here; open ones: {open}.").format(
            exercise=name, open=", ".join(service.served)))
    return service.served[name]


def check_csrf(token: str, form) -> None:
    if not hmac.compare_digest(str(form.get("csrf", "")), store.csrf_token(token)):
        raise Refusal(403, L_("This form has expired or did not come from this site; reload the page and try again."))


def visibility(book: Gradebook, served: Served, result: GradingResult | None) -> Visibility:
    """What the student sees of a result now: everything once released, else by the rubric and their deadline."""
    return Visibility.of(store.released(book, served.name), scoring.policy_in_force(book, served.name), result)


def state(served: Served, row: Row) -> str:
    """queued | running | the row's status."""
    if row.status == "pending":
        return "running" if row.id in served.queue.running() else "queued"
    return row.status


def place(book: Gradebook, served: Served, row: Row) -> int:
    """How many uploads of the exercise are waiting ahead of this one."""
    waiting = [r.id for r, _ in store.queued(book, served.name) if r.id not in served.queue.running()]
    return waiting.index(row.id) if row.id in waiting else 0


def estimate(served: Served, ahead: int) -> int | None:
    """Seconds until a queued upload's result, from the rate the queue measured (None until it has one)."""
    rate = served.queue.rate()
    return None if rate is None else round((ahead + 1) / rate * 60)


def status_words(language: Language) -> dict[str, str]:
    _ = translations(language).gettext
    return {**{status: _(word) for status, word in STATUS_WORDS.items()},
            "queued": _("queued"), "running": _("being graded")}


def requests_open_until(book: Gradebook, served: Served) -> datetime | None:
    """Until when students may ask about a check: the exercise's days after the release (None: not released yet,
    so open)."""
    found = book.db.execute("SELECT released_at FROM releases WHERE exercise = ?", (served.name,)).fetchone()
    if found is None:
        return None
    return datetime.fromisoformat(found[0]) + timedelta(days=served.exercise.spec.service.regrade_request_days)


def requests_open(book: Gradebook, served: Served) -> bool:
    until = requests_open_until(book, served)
    return until is None or datetime.now(timezone.utc) < until
