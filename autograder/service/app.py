"""The submission service's web side: a Starlette app (served by uvicorn) over the gradebook.

Students open their personal link (``/login/<token>``: the token becomes an HttpOnly cookie and the
address bar loses it), upload a notebook per exercise, watch its place in the queue and read its
feedback, the same page ``autograder feedback`` writes (hidden checks hidden until released). The TA
link opens a dashboard per exercise. Scripts use the JSON API with ``Authorization: Bearer <token>``.
Nothing is graded in this process: ``queue.ExerciseQueue`` hands uploads to worker processes.

Every page is a Jinja template with autoescaping, served with a strict Content-Security-Policy (no
script at all; styles from this server only); forms carry a token derived from the session's own
(CSRF); bodies beyond the upload limit are refused before they are read; access lines are logged
without tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..cohort import FAILED, Setup, regrade
from ..errors import UserError
from ..exercise import Exercise
from ..exports import export_csv
from ..feedback import TEMPLATES, Visibility, feedback_body, feedback_page, who
from ..gradebook import Gradebook, Policy, Row, from_iso, row_message
from ..i18n import LANGUAGES, L_, Language, Text, render, sentence_of, translations
from ..intake import Roster, local_time, too_large
from ..report import build_report
from ..results import STATUS_WORDS, GradingResult
from . import store
from .checks import CheckQueue
from .queue import ExerciseQueue

log = logging.getLogger("autograder.service")
COOKIE = "autograder_session"
LANGUAGE_COOKIE = "autograder_language"
MULTIPART_SLACK = 1 << 20  # what a form adds around the file it carries


@dataclass
class Served:
    """One exercise the service takes uploads for."""

    exercise: Exercise
    setup: Setup
    queue: ExerciseQueue
    checks: CheckQueue  # check-only requests: public checks, not attempts
    hidden_only: list[dict[str, list[str]]]  # the steps only hidden checks judge, titles by language

    @property
    def policy(self) -> Policy:
        return self.setup.policy


@dataclass
class Service:
    """What the app serves (built by ``autograder serve``)."""

    book_path: Path
    uploads: Path
    roster: Roster
    served: dict[str, Served]
    language: Language
    max_bytes: int
    base_url: str = ""  # the address students use (links, the student wheel)
    student_wheel: Path | None = None  # what `pip install` takes in Colab (see autograder/student.py)
    secure_cookies: bool = False
    environments: dict[Language, jinja2.Environment] = field(default_factory=dict)

    def book(self) -> Gradebook:
        return Gradebook(self.book_path)  # one connection per call: requests run on many threads

    def page(self, request: Request, name: str, status: int = 200, **values) -> HTMLResponse:
        language = self.language_of(request)
        env = self.environments.get(language)
        if env is None:
            env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES / "service"), autoescape=True,
                                     extensions=["jinja2.ext.i18n"], undefined=jinja2.StrictUndefined)
            env.install_gettext_translations(translations(language), newstyle=False)
            self.environments[language] = env
        html = env.get_template(name).render(lang=language, languages=LANGUAGES, **values)
        return HTMLResponse(html, status_code=status)

    def language_of(self, request: Request) -> Language:
        chosen = request.cookies.get(LANGUAGE_COOKIE)
        return chosen if chosen in LANGUAGES else self.language

    def say(self, request: Request, sentence: Text | str) -> str:
        return render(sentence, self.language_of(request))


class Refusal(Exception):
    """A request refused with a status and one sentence (a page for browsers, JSON for the API)."""

    def __init__(self, status: int, sentence: Text | str) -> None:
        super().__init__(sentence)
        self.status, self.sentence = status, sentence


NOT_SIGNED_IN = L_("This link is not valid, or you are not signed in; open the personal link the course sent you.")


def _service(request: Request) -> Service:
    return request.app.state.service


def _holder(service: Service, token: str | None) -> str | None:
    with service.book() as book:
        return store.holder(book, token)


def _session(request: Request) -> tuple[str, str]:
    """(token, whose) of a page request's session cookie."""
    token = request.cookies.get(COOKIE)
    whose = _holder(_service(request), token)
    if whose is None:
        raise Refusal(401, NOT_SIGNED_IN)
    return token, whose


def _bearer(request: Request) -> str:
    """Whose token an API request carries."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    whose = _holder(_service(request), token.strip()) if scheme.lower() == "bearer" else None
    if whose is None:
        raise Refusal(401, L_("Send your personal token as `Authorization: Bearer <token>`; this one is not valid."))
    return whose


def _student(service: Service, whose: str) -> str:
    if whose == store.TA:
        raise Refusal(403, L_("The TA link cannot submit; open a student's link to submit as that student."))
    return whose


def _served(service: Service, name: str) -> Served:
    if name not in service.served:
        raise Refusal(404, L_("{exercise} is not open for submissions here; open ones: {open}.").format(
            exercise=name, open=", ".join(service.served)))
    return service.served[name]


def _check_csrf(token: str, form) -> None:
    if not hmac.compare_digest(str(form.get("csrf", "")), store.csrf_token(token)):
        raise Refusal(403, L_("This form has expired or did not come from this site; reload the page and try again."))


def _deadline(service: Service, served: Served, student_id: str) -> datetime | None:
    student = service.roster.students.get(student_id)
    deadline = (student.deadline if student else None) or served.policy.deadline
    return local_time(deadline) if deadline else None


def _when(value: datetime | str | None) -> str:
    """A moment as this machine's local time (the course's, where it runs)."""
    moment = from_iso(value) if isinstance(value, str) else value
    return moment.astimezone().strftime("%Y-%m-%d %H:%M %Z") if moment else ""  # a naive one is local already


def _result(service: Service, book: Gradebook, served: Served, row: Row) -> GradingResult | None:
    record = book.record_of(row)  # a damaged record reads as none: the page says "error", not a server error
    return served.policy.score(record, row, service.roster) if record else None


def _visibility(book: Gradebook, served: Served) -> Visibility:
    return Visibility(store.released(book, served.exercise.name), served.policy.deadline)


def _state(served: Served, row: Row) -> str:
    """queued | running | the row's status."""
    if row.status == "pending":
        return "running" if row.id in served.queue.running() else "queued"
    return row.status


def _place(book: Gradebook, served: Served, row: Row) -> int:
    """How many uploads of the exercise are waiting ahead of this one."""
    waiting = [r.id for r, _ in store.queued(book, served.exercise.name) if r.id not in served.queue.running()]
    return waiting.index(row.id) if row.id in waiting else 0


async def _upload(request: Request, service: Service) -> tuple[str, UploadFile, object]:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > service.max_bytes + MULTIPART_SLACK:  # refused unread
        raise Refusal(413, too_large("upload", service.max_bytes)[1])
    form = await request.form(max_files=1, max_fields=8)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Refusal(400, L_("Send the notebook as the form field `file` (and the exercise's name as `exercise`)."))
    if upload.size is not None and upload.size > service.max_bytes:
        raise Refusal(413, too_large(upload.filename or "upload", service.max_bytes)[1])
    return str(form.get("exercise", "")), upload, form


def _too_many(refused: store.TooMany, checks: bool = False) -> Refusal:
    sentence = (L_("You have checked {count} times in the last hour, the most this exercise allows; check again after "
                   "{time}.") if checks else
                L_("You have uploaded {count} times in the last hour, the most this exercise allows; upload again "
                   "after {time}."))
    return Refusal(429, sentence.format(count=refused.count, time=_when(refused.again)))


def _accept(service: Service, served: Served, student_id: str, filename: str, data: bytes) -> str:
    student = service.roster.students.get(student_id)
    try:
        with service.book() as book:
            public_id = store.store_upload(book, service.uploads, served.exercise.name, student_id,
                                           student.name if student else "", filename, data,
                                           served.exercise.spec.service.uploads_per_hour)
    except store.TooMany as refused:
        raise _too_many(refused) from None
    served.queue.wake()
    return public_id


# pages ------------------------------------------------------------------------------------------

def login(request: Request) -> Response:
    token = request.path_params["token"]
    whose = _holder(_service(request), token)
    if whose is None:
        raise Refusal(401, NOT_SIGNED_IN)
    response = RedirectResponse("/ta" if whose == store.TA else "/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=_service(request).secure_cookies,
                        max_age=180 * 86400)
    return response


def choose_language(request: Request) -> Response:
    language = request.path_params["language"]
    response = RedirectResponse("/", status_code=303)
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, samesite="lax", max_age=365 * 86400)
    return response


def home(request: Request) -> Response:
    service = _service(request)
    token, whose = _session(request)
    if whose == store.TA:
        return RedirectResponse("/ta", status_code=303)
    language = service.language_of(request)
    exercises = []
    with service.book() as book:
        visibility = {name: _visibility(book, served) for name, served in service.served.items()}
        for name, served in service.served.items():
            lines = []
            for attempt in store.attempts(book, name, whose):
                result = _result(service, book, served, attempt.row)
                page = feedback_page("", attempt.row, result, visibility[name], language)
                lines.append({"id": attempt.public_id, "when": _when(attempt.uploaded_at),
                              "file": attempt.row.source or "", "state": _state(served, attempt.row),
                              "score": page.score or ""})
            recent = store.uploads_since(book, name, whose, timedelta(hours=1))
            exercises.append({"name": name, "title": served.exercise.spec.title,
                              "deadline": _when(_deadline(service, served, whose)), "attempts": lines,
                              "left": max(0, served.exercise.spec.service.uploads_per_hour - len(recent))})
    student = service.roster.students.get(whose)
    wheel = f"{service.base_url}/student/{service.student_wheel.name}" if service.student_wheel else ""
    return service.page(request, "home.html", student=student.name if student else whose, student_id=whose,
                        exercises=exercises, csrf=store.csrf_token(token), max_mib=f"{service.max_bytes / 2**20:g}",
                        status_words=_status_words(language), wheel=wheel)


async def submit(request: Request) -> Response:
    service = _service(request)
    token, whose = await run_in_threadpool(_session, request)
    served = _served(service, request.path_params["exercise"])
    student_id = _student(service, whose)
    _, upload, form = await _upload(request, service)
    _check_csrf(token, form)
    data = await upload.read()
    public_id = await run_in_threadpool(_accept, service, served, student_id, upload.filename or "", data)
    return RedirectResponse(f"/attempts/{public_id}", status_code=303)


def attempt_page(request: Request) -> Response:
    service = _service(request)
    _, whose = _session(request)
    language = service.language_of(request)
    with service.book() as book:
        attempt = _own_attempt(service, book, request.path_params["public_id"], whose)
        served = service.served[attempt.row.exercise]
        state = _state(served, attempt.row)
        result = _result(service, book, served, attempt.row)
        place = _place(book, served, attempt.row) if state == "queued" else 0
        body = "" if state in ("queued", "running") else feedback_body(feedback_page(
            served.exercise.spec.title, attempt.row, result, _visibility(book, served), language))
    return service.page(request, "attempt.html", title=served.exercise.spec.title, state=state, place=place,
                        when=_when(attempt.uploaded_at), file=attempt.row.source or "", feedback=body,
                        status_words=_status_words(language))


def _own_attempt(service: Service, book: Gradebook, public_id: str, whose: str) -> store.Attempt:
    """The attempt, when ``whose`` may see it (its student, or the TA) and the service serves its exercise."""
    attempt = store.attempt(book, public_id)
    if attempt is None or whose not in (attempt.row.student_id, store.TA) or attempt.row.exercise not in service.served:
        raise Refusal(404, L_("There is no such submission of yours."))
    return attempt


def _status_words(language: Language) -> dict[str, str]:
    _ = translations(language).gettext
    return {**{status: _(word) for status, word in STATUS_WORDS.items()},
            "queued": _("queued"), "running": _("being graded")}


# the TA's dashboard ------------------------------------------------------------------------------

def _ta(request: Request) -> str:
    token, whose = _session(request)
    if whose != store.TA:
        raise Refusal(403, L_("This page is for the course's TAs; open the TA link."))
    return token


def dashboard(request: Request) -> Response:
    service = _service(request)
    _ta(request)
    return RedirectResponse(f"/ta/{next(iter(service.served))}", status_code=303)


def exercise_dashboard(request: Request) -> Response:
    service = _service(request)
    token = _ta(request)
    served = _served(service, request.path_params["exercise"])
    language = service.language_of(request)
    name = served.exercise.name
    with service.book() as book:
        _, entries = book.results(name)  # a damaged record shows as an error row
        released = store.released(book, name)
        uploads = book.db.execute("SELECT COUNT(*) FROM uploads WHERE exercise = ?", (name,)).fetchone()[0]
    counts = Counter(_state(served, row) for row, _ in entries)
    scored = [result for _, result in entries if result is not None]
    bins = _histogram([result.score for result in scored], max((r.max_score for r in scored), default=0.0))
    failed = [{"student": who(row), "file": row.source or "", "status": row.status,
               "message": row_message(row, result, language)}
              for row, result in entries if row.status in FAILED]
    return service.page(request, "dashboard.html", exercises=list(service.served), exercise=name,
                        title=served.exercise.spec.title, counts=sorted(counts.items()), uploads=uploads, bins=bins,
                        failed=failed, released=released, csrf=store.csrf_token(token),
                        failure=render(served.queue.failure, language) if served.queue.failure else "",
                        status_words=_status_words(language))


def _histogram(scores: list[float], top: float, count: int = 10) -> list[dict]:
    """Score bins of equal width from 0 to the maximum score, with their counts and bar heights (0-100)."""
    if not scores or top <= 0:
        return []
    width = top / count
    tally = Counter(min(int(score / width), count - 1) for score in scores)
    tallest = max(tally.values())
    return [{"low": f"{i * width:g}", "high": f"{(i + 1) * width:g}", "n": tally.get(i, 0),
             "height": round(100 * tally.get(i, 0) / tallest), "x": i * 30} for i in range(count)]


async def _ta_action(request: Request, act: Callable[[Service, Served], None]) -> Response:
    """A dashboard button: the TA's session, the form's CSRF token, then ``act`` off the event loop."""
    service = _service(request)
    token = await run_in_threadpool(_ta, request)
    served = _served(service, request.path_params["exercise"])
    _check_csrf(token, await request.form(max_files=0, max_fields=4))
    await run_in_threadpool(act, service, served)
    return RedirectResponse(f"/ta/{served.exercise.name}", status_code=303)


def _release(service: Service, served: Served) -> None:
    with service.book() as book:
        store.release(book, served.exercise.name)


def _rescore(service: Service, served: Served) -> None:
    """Rescore every stored submission with the exercise's rubric file as it is now (after a rubric change)."""
    try:
        with service.book() as book:
            policy, _, _ = regrade(book, served.exercise.name)
    except UserError as exc:  # a rubric that does not parse or does not match the checks: nothing changed
        raise Refusal(400, sentence_of(exc)) from None
    served.queue.use_policy(policy)


async def release_feedback(request: Request) -> Response:
    return await _ta_action(request, _release)


async def rescore(request: Request) -> Response:
    return await _ta_action(request, _rescore)


def grades_csv(request: Request) -> Response:
    service = _service(request)
    _ta(request)
    served = _served(service, request.path_params["exercise"])
    folder = Path(tempfile.mkdtemp(prefix="autograder-export-"))
    path = folder / f"{served.exercise.name}-grades.csv"
    with service.book() as book:
        export_csv(book, served.exercise.name, path)
    return FileResponse(path, media_type="text/csv", filename=path.name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


def cohort_report(request: Request) -> Response:
    service = _service(request)
    _ta(request)
    served = _served(service, request.path_params["exercise"])
    with service.book() as book:
        return HTMLResponse(build_report(book, served.exercise.name, service.language_of(request)))


def student_wheel(request: Request) -> Response:
    """The student side's wheel, for `pip install` in Colab (no sign-in: it holds nothing of the course)."""
    wheel = _service(request).student_wheel
    if wheel is None or request.path_params["name"] != wheel.name:
        raise Refusal(404, L_("There is no such file here."))
    return FileResponse(wheel, media_type="application/octet-stream", filename=wheel.name)


def style(request: Request) -> Response:
    css = (TEMPLATES / "style.css").read_text() + (TEMPLATES / "service" / "service.css").read_text()
    return Response(css, media_type="text/css")


# the JSON API -------------------------------------------------------------------------------------

async def api_submit(request: Request) -> Response:
    service = _service(request)
    student_id = _student(service, await run_in_threadpool(_bearer, request))
    exercise, upload, _ = await _upload(request, service)
    served = _served(service, exercise)
    data = await upload.read()
    public_id = await run_in_threadpool(_accept, service, served, student_id, upload.filename or "", data)
    return JSONResponse({"id": public_id, "status": "queued", "url": f"/api/submissions/{public_id}"},
                        status_code=202)


def api_submission(request: Request) -> Response:
    service = _service(request)
    whose = _bearer(request)
    language = service.language_of(request)
    with service.book() as book:
        attempt = _own_attempt(service, book, request.path_params["public_id"], whose)
        row = attempt.row
        served = service.served[row.exercise]
        state = _state(served, row)  # queued | running | graded | invalid | timeout | crashed | error
        result = _result(service, book, served, row)
        visibility = _visibility(book, served)
        place = _place(book, served, row) if state == "queued" else 0
    answer: dict = {"id": attempt.public_id, "exercise": row.exercise, "status": state, "place": place,
                    "score": None, "max_score": None, "released": True, "results": None}
    if result is not None:
        results = result.gradescope(language)
        score, max_score, released = visibility.score(result)  # what the feedback page shows
        if not released:
            results["tests"] = [test if visibility.shows(c) else {"name": test["name"], "number": test["number"],
                                                                  "visibility": test["visibility"], "output": "hidden"}
                                for test, c in zip(results["tests"], result.checks)]
            results["score"] = score
        answer.update(score=score, max_score=max_score, released=released)
        results.pop("extra_data", None)  # the run's diagnostics are the TA's
        answer["results"] = results
    return JSONResponse(answer)


def api_me(request: Request) -> Response:
    """Whose token this is and what they may do: for the student side (``autograder.student.login``)."""
    service = _service(request)
    student_id = _student(service, _bearer(request))
    student = service.roster.students.get(student_id)
    exercises = []
    with service.book() as book:
        for name, served in service.served.items():
            spec = served.exercise.spec
            exercises.append({"name": name, "title": spec.title, "deadline": _when(_deadline(service, served,
                                                                                            student_id)),
                              "uploads_left": max(0, spec.service.uploads_per_hour - len(store.uploads_since(
                                  book, name, student_id, timedelta(hours=1))))})
    return JSONResponse({"student_id": student_id, "name": student.name if student else "", "exercises": exercises,
                         "language": service.language_of(request)})


async def api_check(request: Request) -> Response:
    """A check-only request: the public checks on the notebook, not an attempt (see service/checks.py)."""
    service = _service(request)
    student_id = _student(service, await run_in_threadpool(_bearer, request))
    exercise, upload, _ = await _upload(request, service)
    served = _served(service, exercise)
    data = await upload.read()
    try:
        public_id = served.checks.ask(student_id, upload.filename or "", data)
    except store.TooMany as refused:
        raise _too_many(refused, checks=True) from None
    return JSONResponse({"id": public_id, "status": "queued", "url": f"/api/checks/{public_id}"}, status_code=202)


def api_check_result(request: Request) -> Response:
    service = _service(request)
    student_id = _student(service, _bearer(request))
    language = service.language_of(request)
    public_id = request.path_params["public_id"]
    found = next(((served, request_) for served in service.served.values()
                  if (request_ := served.checks.find(public_id, student_id)) is not None), None)
    if found is None:
        raise Refusal(404, L_("There is no check {id} of yours (a check's result is kept for an hour).").format(
            id=public_id))
    served, checked = found
    answer: dict = {"id": public_id, "exercise": served.exercise.name, "status": checked.state,
                    "place": served.checks.place(checked) if checked.state == "queued" else 0,
                    "score": None, "max_score": None, "results": None, "problem": checked.problem or None,
                    "hidden_only": [" ".join(step[language]) for step in served.hidden_only]}
    if checked.record is not None:
        result = served.policy.rubric.score(checked.record)
        results = result.gradescope(language)
        results.pop("extra_data", None)  # the run's diagnostics are the TA's
        answer.update(score=result.score, max_score=result.max_score, results=results)
    return JSONResponse(answer)


# the app ------------------------------------------------------------------------------------------

def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    service = _service(request)
    sentence = service.say(request, exc.sentence)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": sentence}, status_code=exc.status)
    return service.page(request, "message.html", status=exc.status, sentence=sentence)


def _inline_style_hash() -> str:
    """The CSP source of the one inline style the report page has (the shared page template's)."""
    style_css = (TEMPLATES / "style.css").read_text()
    return "'sha256-" + base64.b64encode(hashlib.sha256(f"\n{style_css}\n".encode()).digest()).decode() + "'"


class Guard:
    """ASGI middleware: security headers on every answer, a body stopped where it passes the limit (413), access
    lines logged with tokens left out."""

    TOKEN_IN_PATH = re.compile(r"^/login/.*")

    def __init__(self, app, service: Service, csp: str) -> None:
        self.app, self.service = app, service
        self.max_body = service.max_bytes + MULTIPART_SLACK
        self.headers = [(b"content-security-policy", csp.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                        (b"cache-control", b"no-store"), (b"cross-origin-opener-policy", b"same-origin")]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {}

        async def send_guarded(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        received = 0

        async def receive_capped():  # a body without a length (chunked) stops here too
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:
                raise Refusal(413, too_large("upload", self.service.max_bytes)[1])
            return message

        try:
            await self.app(scope, receive_capped, send_guarded)
        finally:
            path = self.TOKEN_IN_PATH.sub("/login/…", scope["path"])
            log.info("%s %s %s", scope["method"], path, status.get("code", "-"))


def create_app(service: Service) -> Guard:
    """The ASGI app; its lifespan starts each exercise's grading queue and stops it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        for served in service.served.values():
            served.queue.start()
            served.checks.start()
        yield
        for served in service.served.values():
            served.queue.stop()
            served.checks.stop()

    routes = [
        Route("/", home), Route("/login/{token}", login), Route("/language/{language}", choose_language),
        Route("/static/style.css", style), Route("/student/{name}", student_wheel),
        Route("/submit/{exercise}", submit, methods=["POST"]),
        Route("/attempts/{public_id}", attempt_page), Route("/ta", dashboard),
        Route("/ta/{exercise}", exercise_dashboard),
        Route("/ta/{exercise}/release", release_feedback, methods=["POST"]),
        Route("/ta/{exercise}/regrade", rescore, methods=["POST"]), Route("/ta/{exercise}/grades.csv", grades_csv),
        Route("/ta/{exercise}/report", cohort_report),
        Route("/api/submissions", api_submit, methods=["POST"]),
        Route("/api/submissions/{public_id}", api_submission), Route("/api/me", api_me),
        Route("/api/checks", api_check, methods=["POST"]), Route("/api/checks/{public_id}", api_check_result),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={Refusal: _refused})
    app.state.service = service
    csp = (f"default-src 'none'; style-src 'self' {_inline_style_hash()}; img-src 'self' data:; form-action 'self'; "
           "frame-ancestors 'none'; base-uri 'none'")
    return Guard(app, service, csp)
