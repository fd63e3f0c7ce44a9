"""The students' side of the service: their pages (upload, attempts, feedback, questions to a TA) and the JSON API
the student side of the package (``autograder.student``) and scripts use."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response

from .. import scoring
from ..feedback import feedback_body, feedback_page
from ..gradebook import Gradebook
from ..i18n import L_, LANGUAGES
from ..intake import too_large
from . import store
from .web import (COOKIE, LANGUAGE_COOKIE, NOT_SIGNED_IN, Refusal, Served, Service, check_csrf, estimate, holder,
                  place, requests_open, requests_open_until, served_of, service_of, session, state, visibility)
from .web import bearer as _bearer

MULTIPART_SLACK = 1 << 20  # what a form adds around the file it carries
QUESTION_LIMIT = 2000  # characters of a regrade request


class Aborted(Exception):
    """The client went away while sending its body: nothing to answer, one line to log."""


async def read_form(request: Request, max_files: int, max_fields: int):
    """The request's form; a client that stops sending is ``Aborted``, a malformed form one sentence."""
    try:
        return await request.form(max_files=max_files, max_fields=max_fields)
    except ClientDisconnect:
        raise Aborted from None
    except MultiPartException:
        raise Refusal(400, L_("The form could not be read; send it again from the page.")) from None


async def _upload(request: Request, service: Service) -> tuple[str, UploadFile, object]:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > service.max_bytes + MULTIPART_SLACK:  # refused unread
        raise Refusal(413, too_large("upload", service.max_bytes)[1])
    form = await read_form(request, max_files=1, max_fields=8)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Refusal(400, L_("Send the notebook as the form field `file` (and the exercise's name as `exercise`)."))
    if upload.size is not None and upload.size > service.max_bytes:
        raise Refusal(413, too_large(upload.filename or "upload", service.max_bytes)[1])
    return str(form.get("exercise", "")), upload, form


def _student(who: store.Person) -> str:
    if who.is_ta:
        raise Refusal(403, L_("A TA link cannot submit; open a student's link to submit as that student."))
    return who.id


def too_many(service: Service, refused: store.TooMany, checks: bool = False) -> Refusal:
    sentence = (L_("You have checked {count} times in the last hour, the most this exercise allows; check again after "
                   "{time}.") if checks else
                L_("You have uploaded {count} times in the last hour, the most this exercise allows; upload again "
                   "after {time}."))
    return Refusal(429, sentence.format(count=refused.count, time=service.when(refused.again)))


def _accept(service: Service, served: Served, student_id: str, filename: str, data: bytes) -> str:
    student = service.roster.students.get(student_id)
    try:
        with service.book() as book:
            public_id = store.store_upload(book, service.uploads, served.name, student_id,
                                           student.name if student else "", filename, data,
                                           served.exercise.spec.service.uploads_per_hour)
    except store.TooMany as refused:
        raise too_many(service, refused) from None
    except store.UploadsClosed:
        raise Refusal(409, L_("Uploads of {exercise} are closed; ask a TA if you need to hand in.").format(
            exercise=served.exercise.spec.title)) from None
    served.queue.wake()
    return public_id


# pages ------------------------------------------------------------------------------------------

def login(request: Request) -> Response:
    token = request.path_params["token"]
    who = holder(service_of(request), token)
    if who is None:
        raise Refusal(401, NOT_SIGNED_IN)
    response = RedirectResponse("/ta" if who.is_ta else "/", status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=service_of(request).secure_cookies,
                        max_age=180 * 86400)
    return response


def choose_language(request: Request) -> Response:
    language = request.path_params["language"]
    response = RedirectResponse("/", status_code=303)
    if language in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, language, samesite="lax", max_age=365 * 86400)
    return response


def home(request: Request) -> Response:
    service = service_of(request)
    token, who = session(request)
    if who.is_ta:
        return RedirectResponse("/ta", status_code=303)
    language = service.language_of(request)
    exercises = []
    with service.book() as book:
        for name, served in service.served.items():
            scorer = scoring.Scorer(book, name)
            lines = []
            for attempt in store.attempts(book, name, who.id):
                result = scorer.result(attempt.row)
                page = feedback_page("", attempt.row, result, visibility(book, served, result), language)
                lines.append({"id": attempt.public_id, "when": service.when(attempt.uploaded_at),
                              "file": attempt.filename, "state": state(served, attempt.row),
                              "score": page.score or "", "counts": attempt.counts})
            recent = store.uploads_since(book, name, who.id, timedelta(hours=1))
            exercises.append({"name": name, "title": served.exercise.spec.title,
                              "deadline": service.when(scorer.deadline_for(who.id)),
                              "extended": who.id in scorer.extensions, "attempts": lines,
                              "open": store.uploads_open(book, name),
                              "left": max(0, served.exercise.spec.service.uploads_per_hour - len(recent))})
    wheel = f"{service.base_url}/student/{service.student_wheel.name}" if service.student_wheel else ""
    return service.page(request, "home.html", student=who.name or who.id, student_id=who.id, exercises=exercises,
                        csrf=store.csrf_token(token), max_mib=f"{service.max_bytes / 2**20:g}", wheel=wheel)


async def submit(request: Request) -> Response:
    service = service_of(request)
    token, who = await run_in_threadpool(session, request)
    served = served_of(service, request.path_params["exercise"])
    student_id = _student(who)
    _, upload, form = await _upload(request, service)
    check_csrf(token, form)
    data = await upload.read()
    public_id = await run_in_threadpool(_accept, service, served, student_id, upload.filename or "", data)
    return RedirectResponse(f"/attempts/{public_id}", status_code=303)


def attempt_page(request: Request) -> Response:
    service = service_of(request)
    token, who = session(request)
    language = service.language_of(request)
    with service.book() as book:
        attempt = own_attempt(service, book, request.path_params["public_id"], who)
        served = service.served[attempt.row.exercise]
        now_state = state(served, attempt.row)
        result = scoring.Scorer(book, served.name).result(attempt.row)
        shown = visibility(book, served, result)
        waiting = place(book, served, attempt.row) if now_state == "queued" else 0
        body = "" if now_state in ("queued", "running") else feedback_body(feedback_page(
            served.exercise.spec.title, attempt.row, result, shown, language))
        thread = [r for r in book.requests(served.name, attempt.row.student_id) if r.submission_id == attempt.row.id]
        askable = [{"id": c.id, "title": c.words(language).title} for c in (result.checks if result else [])
                   if shown.shows(c)]
        until = requests_open_until(book, served)
        still_open = requests_open(book, served)
        can_ask = bool(askable) and still_open and not who.is_ta
    wait = estimate(served, waiting) if now_state == "queued" else None
    return service.page(request, "attempt.html", title=served.exercise.spec.title, state=now_state, place=waiting,
                        minutes=max(1, round(wait / 60)) if wait is not None else None,
                        when=service.when(attempt.uploaded_at), file=attempt.filename, counts=attempt.counts,
                        feedback=body, public_id=attempt.public_id, csrf=store.csrf_token(token),
                        thread=[_thread_line(service, r, result, language) for r in thread], askable=askable,
                        can_ask=can_ask, closed=not still_open, ask_until=service.when(until) if until else "",
                        limit=QUESTION_LIMIT)


def _thread_line(service: Service, request_, result, language) -> dict:
    title = next((c.words(language).title for c in result.checks if c.id == request_.item), request_.item) \
        if result else request_.item
    return {"item": title, "question": request_.question, "asked": service.when(request_.asked_at),
            "answer": request_.answer or "", "by": request_.answered_by or "",
            "answered": service.when(request_.answered_at)}


async def ask(request: Request) -> Response:
    """A student's question about one check of an attempt (a regrade request)."""
    service = service_of(request)
    token, who = await run_in_threadpool(session, request)
    form = await read_form(request, max_files=0, max_fields=4)
    check_csrf(token, form)
    item, question = str(form.get("item", "")), str(form.get("question", "")).strip()

    def store_question() -> str:
        with service.book() as book:
            attempt = own_attempt(service, book, request.path_params["public_id"], who)
            served = service.served[attempt.row.exercise]
            _student(who)
            if not requests_open(book, served):
                raise Refusal(409, L_("Questions about {exercise} closed on {when}.").format(
                    exercise=served.exercise.spec.title, when=service.when(requests_open_until(book, served))))
            result = scoring.Scorer(book, served.name).result(attempt.row)
            shown = visibility(book, served, result)
            if result is None or not any(c.id == item and shown.shows(c) for c in result.checks):
                raise Refusal(400, L_("Choose one of the checks on this page to ask about."))
            if not question or len(question) > QUESTION_LIMIT:
                raise Refusal(400, L_("Write your question in at most {count} characters.").format(
                    count=QUESTION_LIMIT))
            book.ask(attempt.row, item, question)
            return attempt.public_id

    public_id = await run_in_threadpool(store_question)
    return RedirectResponse(f"/attempts/{public_id}#questions", status_code=303)


def own_attempt(service: Service, book: Gradebook, public_id: str, who: store.Person) -> store.Attempt:
    """The attempt, when ``who`` may see it (its student, or a TA) and the service serves its exercise."""
    attempt = store.attempt(book, public_id)
    if attempt is None or not (who.is_ta or who.id == attempt.row.student_id) \
            or attempt.row.exercise not in service.served:
        raise Refusal(404, L_("There is no such submission of yours."))
    return attempt


def student_wheel(request: Request) -> Response:
    """The student side's wheel, for `pip install` in Colab (no sign-in: it holds nothing of the course)."""
    wheel = service_of(request).student_wheel
    if wheel is None or request.path_params["name"] != wheel.name:
        raise Refusal(404, L_("There is no such file here."))
    return FileResponse(wheel, media_type="application/octet-stream", filename=wheel.name)


# the JSON API -------------------------------------------------------------------------------------

async def _api_upload(request: Request) -> tuple[Service, Served, str, str, bytes]:
    """An API upload's service, exercise, student, file name and bytes (the bearer token's student's)."""
    service = service_of(request)
    student_id = _student(await run_in_threadpool(_bearer, request))
    exercise, upload, _ = await _upload(request, service)
    return service, served_of(service, exercise), student_id, upload.filename or "", await upload.read()


async def api_submit(request: Request) -> Response:
    service, served, student_id, filename, data = await _api_upload(request)
    public_id = await run_in_threadpool(_accept, service, served, student_id, filename, data)
    return JSONResponse({"id": public_id, "status": "queued", "url": f"/api/submissions/{public_id}"},
                        status_code=202)


def api_submission(request: Request) -> Response:
    service = service_of(request)
    who = _bearer(request)
    language = service.language_of(request)
    with service.book() as book:
        attempt = own_attempt(service, book, request.path_params["public_id"], who)
        row = attempt.row
        served = service.served[row.exercise]
        now_state = state(served, row)  # queued | running | graded | invalid | timeout | crashed | error
        result = scoring.Scorer(book, served.name).result(row)
        shown = visibility(book, served, result)
        waiting = place(book, served, row) if now_state == "queued" else 0
    answer: dict = {"id": attempt.public_id, "exercise": row.exercise, "status": now_state, "place": waiting,
                    "estimate_seconds": estimate(served, waiting) if now_state == "queued" else None,
                    "counts": attempt.counts, "score": None, "max_score": None, "released": True, "results": None}
    if result is not None:
        results = result.gradescope(language)
        score, max_score, released = shown.score(result)  # what the feedback page shows
        if not released:
            # one test per check, then the TAs' adjustments (shown with the total only)
            shows = [shown.shows(c) for c in result.checks] + [False] * (len(results["tests"]) - len(result.checks))
            results["tests"] = [test if visible else {"name": test["name"], "number": test["number"],
                                                      "visibility": test["visibility"], "output": "hidden"}
                                for test, visible in zip(results["tests"], shows)]
            results["score"] = score
        answer.update(score=score, max_score=max_score, released=released)
        results.pop("extra_data", None)  # the run's diagnostics are the TA's
        answer["results"] = results
    return JSONResponse(answer)


def api_me(request: Request) -> Response:
    """Whose token this is and what they may do: for the student side (``autograder.student.login``)."""
    service = service_of(request)
    who = _bearer(request)
    student_id = _student(who)
    exercises = []
    with service.book() as book:
        for name, served in service.served.items():
            spec = served.exercise.spec
            exercises.append({"name": name, "title": spec.title,
                              "deadline": service.when(scoring.Scorer(book, name).deadline_for(student_id)),
                              "uploads_open": store.uploads_open(book, name),
                              "uploads_left": max(0, spec.service.uploads_per_hour - len(store.uploads_since(
                                  book, name, student_id, timedelta(hours=1))))})
    return JSONResponse({"student_id": student_id, "name": who.name, "exercises": exercises,
                         "language": service.language_of(request)})


async def api_check(request: Request) -> Response:
    """A check-only request: the public checks on the notebook, not an attempt (see service/checks.py)."""
    service, served, student_id, filename, data = await _api_upload(request)
    try:
        public_id = served.checks.ask(student_id, filename, data)
    except store.TooMany as refused:
        raise too_many(service, refused, checks=True) from None
    return JSONResponse({"id": public_id, "status": "queued", "url": f"/api/checks/{public_id}"}, status_code=202)


def api_check_result(request: Request) -> Response:
    service = service_of(request)
    student_id = _student(_bearer(request))
    language = service.language_of(request)
    public_id = request.path_params["public_id"]
    found = next(((served, request_) for served in service.served.values()
                  if (request_ := served.checks.find(public_id, student_id)) is not None), None)
    if found is None:
        raise Refusal(404, L_("There is no check {id} of yours (a check's result is kept for an hour).").format(
            id=public_id))
    served, checked = found
    answer: dict = {"id": public_id, "exercise": served.name, "status": checked.state,
                    "place": served.checks.place(checked) if checked.state == "queued" else 0,
                    "score": None, "max_score": None, "results": None, "problem": checked.problem or None,
                    "hidden_only": [" ".join(step[language]) for step in served.hidden_only]}
    if checked.record is not None:
        with service.book() as book:
            rubric = scoring.policy_in_force(book, served.name).rubric
        result = rubric.score(checked.record)
        results = result.gradescope(language)
        results.pop("extra_data", None)  # the run's diagnostics are the TA's
        answer.update(score=result.score, max_score=result.max_score, results=results)
    return JSONResponse(answer)
