"""The TAs' side of the service: every student at a glance, one student's work and history, grades a TA corrects
and explains (stored as decisions beside the outcomes, applied by ``scoring``), manual items scored one item
across all students, extensions, regrade requests, and releases and uploads a TA opens and closes. Every action
is logged with the TA who took it (each TA has their own link)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from .. import scoring
from ..cohort import FAILED, regrade
from ..errors import UserError
from ..exports import export_csv, export_history, safe_name
from ..feedback import Visibility, feedback_body, feedback_page, who as who_of
from ..gradebook import Gradebook, Row, row_message
from ..i18n import L_, LANGUAGES, Language, sentence_of
from ..report import build_report
from ..results import OUTCOME_TEXT, GradingResult
from ..similarity import similarity, write_report
from . import store
from .students import read_form
from .web import Refusal, Served, Service, check_csrf, served_of, service_of, session, state

GRADED = ("graded", "timeout", "crashed")  # rows whose notebook ran: the ones a score distribution counts
# the students table's filters: a status (or queued, running), or one of these
STATE_FILTERS = ("graded", "timeout", "crashed", "invalid", "error", "missing", "queued", "running")
FILTERS = ("all", *STATE_FILTERS, "late", "awaiting", "asked", "adjusted")
NOTEBOOK_TEXT_LIMIT = 20_000  # characters of one cell or output shown to a TA
IMAGE_TYPES = ("image/png", "image/jpeg")
SIMILAR_SHOWN = 5  # pairs of the similarity report on the dashboard
SIMILARITY_PAGE = re.compile(r"index\.html|pair-[0-9a-f]{16}\.html")
_FILE_NAME_UNSAFE = re.compile(r"[^\w.-]")


def _ta(request: Request) -> tuple[str, store.Person]:
    token, who = session(request)
    if not who.is_ta:
        raise Refusal(403, L_("This page is for the course's TAs; open your TA link."))
    return token, who


def dashboard(request: Request) -> Response:
    service = service_of(request)
    _ta(request)
    return RedirectResponse(f"/ta/{next(iter(service.served))}", status_code=303)


def _common(service: Service, served: Served, token: str, who: store.Person, book: Gradebook) -> dict:
    """What every TA page of an exercise shows around its content."""
    return {"exercises": list(service.served), "exercise": served.name, "title": served.exercise.spec.title,
            "csrf": store.csrf_token(token), "ta": who.label, "released": store.released(book, served.name),
            "uploads_open": store.uploads_open(book, served.name),
            "open_requests": sum(1 for r in book.requests(served.name) if r.answer is None)}


def exercise_dashboard(request: Request) -> Response:
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    language = service.language_of(request)
    with service.book() as book:
        in_force, entries = scoring.results(book, served.name)  # a damaged record shows as an error row
        uploads = book.db.execute("SELECT COUNT(*) FROM uploads WHERE exercise = ?", (served.name,)).fetchone()[0]
        stored = {a.row.id: a.public_id for sid in {row.student_id for row, _ in entries}
                  for a in store.attempts(book, served.name, sid)}
        common = _common(service, served, token, who, book)
    counts = Counter(state(served, row) for row, _ in entries)
    ran = [result for row, result in entries if result is not None and row.status in GRADED]
    top = max((r.max_score for r in ran), default=sum(c.points for c in in_force.rubric.checks.values()))
    manual = [{"id": item, "title": rule.title, "left": sum(1 for _, r in entries if r and item in r.awaiting)}
              for item, rule in in_force.rubric.manual.items()]
    failed = [{"student": who_of(row), "student_id": row.student_id, "file": row.source or "", "status": row.status,
               "message": row_message(row, result, language), "attempt": stored.get(row.id, "")}
              for row, result in entries if row.status in FAILED]
    rate = served.queue.rate()
    return service.page(request, "ta_dashboard.html", **common, counts=sorted(counts.items()), uploads=uploads,
                        similar=_similar(service, served),
                        rate=f"{rate:.1f}" if rate is not None else "",
                        nodes=", ".join(f"{node} {n}" for node, n in sorted(served.queue.nodes().items())),
                        queued=counts.get("queued", 0),
                        histogram=_histogram([r.score for r in ran], top), failed=failed, manual=manual,
                        failure=service.say(request, served.queue.failure) if served.queue.failure else "")


def _similar(service: Service, served: Served) -> list[dict]:
    """The best pairs of the last similarity report of the exercise (made from the dashboard), if there is one."""
    table = _similarity_dir(service, served, service.language) / "similarity.csv"
    if not table.is_file():
        return []
    lines = list(csv.DictReader(io.StringIO(table.read_text(encoding="utf-8"))))[:SIMILAR_SHOWN]
    return [{"score": f"{float(line['score']):.0%}", "student": line["student"],
             "other": line["other"] + (f" ({line['other_cohort']})" if line["other_cohort"] else ""),
             "page": line["page"]} for line in lines]


def _similarity_dir(service: Service, served: Served, language: Language) -> Path:
    """Where the last similarity report of the exercise is, in one language (it is written in each)."""
    return service.book_path.parent / "similarity" / served.name / language


def similarity_page(request: Request) -> Response:
    """A page of the last similarity report (its index, or one pair side by side)."""
    service = service_of(request)
    _ta(request)
    served = served_of(service, request.path_params["exercise"])
    name = request.path_params["page"]
    path = _similarity_dir(service, served, service.language_of(request)) / name
    if not SIMILARITY_PAGE.fullmatch(name) or not path.is_file():
        raise Refusal(404, L_("There is no such file here."))
    return HTMLResponse(path.read_text(encoding="utf-8"))


def _histogram(scores: list[float], top: float, count: int = 10) -> dict | None:
    """Bins of equal width from 0 to the maximum score over the notebooks that ran, for an SVG with labelled axes
    (the plot area is 300 x 100 units, placed at x 40, y 10)."""
    if not scores or top <= 0:
        return None
    width = top / count
    tally = Counter(min(int(score / width), count - 1) for score in scores)
    tallest = max(tally.values())
    bins = [{"low": f"{i * width:g}", "high": f"{(i + 1) * width:g}", "n": tally.get(i, 0),
             "height": round(100 * tally.get(i, 0) / tallest), "x": 40 + i * 30} for i in range(count)]
    return {"bins": bins, "top": f"{top:g}", "tallest": tallest, "n": len(scores)}


def students(request: Request) -> Response:
    """Every roster student's current row (missing ones included), searched by name or id and filtered."""
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    query = request.query_params.get("q", "").strip()
    chosen = request.query_params.get("show", "all")
    chosen = chosen if chosen in FILTERS else "all"
    with service.book() as book:
        _, entries = scoring.results(book, served.name)
        uploads = store.upload_counts(book, served.name)
        asked = Counter(r.student_id for r in book.requests(served.name) if r.answer is None)
        adjusted = Counter(d.student_id for d in book.decisions(served.name) if d.active)
        common = _common(service, served, token, who, book)
    lines = []
    for row, result in entries:
        line = {"id": row.student_id, "name": row.student_name, "status": state(served, row),
                "score": f"{result.score:g} / {result.max_score:g}" if result else "",
                "late": f"{result.days_late} ({result.late_penalty:g})" if result and result.days_late else "",
                "attempts": uploads.get(row.student_id, 0), "asked": asked.get(row.student_id, 0),
                "decisions": adjusted.get(row.student_id, 0), "awaiting": len(result.awaiting) if result else 0}
        if _matches(line, row, result, query, chosen):
            lines.append(line)
    return service.page(request, "ta_students.html", **common, lines=lines, query=query, chosen=chosen,
                        filters=FILTERS, total=len(entries))


def _matches(line: dict, row: Row, result: GradingResult | None, query: str, chosen: str) -> bool:
    if query and query.casefold() not in f"{row.student_id} {row.student_name}".casefold():
        return False
    if chosen in STATE_FILTERS:
        return line["status"] == chosen
    return {"all": True, "late": bool(result and result.days_late), "awaiting": bool(line["awaiting"]),
            "asked": bool(line["asked"]), "adjusted": bool(line["decisions"])}[chosen]


def student_page(request: Request) -> Response:
    """One student's work for a TA: every attempt with all its checks, the notebook, the decisions on it (with
    their undo), the extension, the questions they asked, and the history of every action about them."""
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    student_id = request.path_params["student_id"]
    language = service.language_of(request)
    with service.book() as book:
        rows = book.rows(served.name, student_id=student_id)
        if not rows:
            raise Refusal(404, L_("{student} has no row in {exercise}.").format(student=student_id,
                                                                                exercise=served.name))
        row = rows[0]
        scorer = scoring.Scorer(book, served.name)
        result = scorer.result(row)
        everything = Visibility(True, None)
        attempts = []
        for attempt in store.attempts(book, served.name, student_id):
            attempt_result = scorer.result(attempt.row)
            attempts.append({"id": attempt.public_id, "when": service.when(attempt.uploaded_at),
                             "file": attempt.filename, "state": state(served, attempt.row), "counts": attempt.counts,
                             "score": f"{attempt_result.score:g} / {attempt_result.max_score:g}"
                             if attempt_result else "",
                             "feedback": feedback_body(feedback_page(served.exercise.spec.title, attempt.row,
                                                                     attempt_result, everything, language))})
        current = None if attempts else (feedback_body(feedback_page(served.exercise.spec.title, row, result,
                                                                     everything, language)) if result else "")
        rubric = scorer.policy.rubric
        checks = [{"id": c.id, "title": c.words(language).title, "outcome": c.outcome,
                   "result": OUTCOME_TEXT[c.outcome], "points": f"{c.points:g}", "max": f"{c.max_points:g}",
                   "manual": c.outcome in ("scored", "awaiting"), "set_by_ta": c.ta is not None,
                   "before": "" if c.points_before_ta is None else f"{c.points_before_ta:g}"}
                  for c in (result.checks if result else []) if c.outcome != "not_run"]
        decisions = [_decision_line(service, d, rubric) for d in reversed(book.decisions(served.name, student_id))]
        requests = [_request_line(service, r) for r in reversed(book.requests(served.name, student_id))]
        history = [{"when": service.when(a.at), "by": a.made_by, "action": a.action, "detail": a.detail}
                   for a in reversed(book.actions(served.name, student_id))]
        common = _common(service, served, token, who, book)
        extension = scorer.extensions.get(student_id)
    return service.page(request, "ta_student.html", **common, student_id=student_id, name=row.student_name,
                        row_status=state(served, row), row_id=row.id,
                        score=f"{result.score:g} / {result.max_score:g}" if result else "",
                        deadline=service.when(scorer.deadline_for(student_id)),
                        extension=extension.id if extension else None, attempts=attempts, current=current,
                        checks=checks, decisions=decisions, requests=requests, history=history,
                        can_decide=result is not None)


def _decision_line(service: Service, decision, rubric: scoring.Rubric) -> dict:
    return {"id": decision.id, "kind": decision.kind, "item": decision.item, "what": scoring.describe(decision),
            "by": decision.made_by, "when": service.when(decision.made_at), "active": decision.active,
            "undone": f"{decision.undone_by}, {service.when(decision.undone_at)}" if not decision.active else ""}


def _request_line(service: Service, request_) -> dict:
    return {"id": request_.id, "student_id": request_.student_id, "item": request_.item,
            "question": request_.question, "asked": service.when(request_.asked_at), "answer": request_.answer or "",
            "by": request_.answered_by or "", "answered": service.when(request_.answered_at)}


def requests_queue(request: Request) -> Response:
    """Every regrade request of the exercise, unanswered ones first."""
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    with service.book() as book:
        lines = [_request_line(service, r) for r in book.requests(served.name)]
        common = _common(service, served, token, who, book)
    lines.sort(key=lambda line: (bool(line["answer"]), line["id"]))
    return service.page(request, "ta_requests.html", **common, lines=lines)


def grade_item(request: Request) -> Response:
    """One manual item across every student (grade by question): the list of students with what the item gave
    them, and one student's notebook beside the form that scores it."""
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    item = request.path_params["item"]
    with service.book() as book:
        in_force, entries = scoring.results(book, served.name)
        rule = in_force.rubric.manual.get(item)
        if rule is None:
            raise Refusal(404, L_("{item} is not a manual item of {exercise}.").format(item=item,
                                                                                       exercise=served.name))
        scored = [(row, result, next(c for c in result.checks if c.id == item))
                  for row, result in entries if result is not None]
        chosen_id = request.query_params.get("student") or next(
            (row.student_id for row, _, c in scored if c.outcome == "awaiting"), scored[0][0].student_id if scored
            else "")
        chosen = next(((row, c) for row, _, c in scored if row.student_id == chosen_id), None)
        cells = _notebook(book, chosen[0]) if chosen else []
        comments = sorted({d.comment for d in book.decisions(served.name) if d.kind == "manual" and d.item == item
                           and d.comment})
        common = _common(service, served, token, who, book)
    lines = [{"id": row.student_id, "name": row.student_name, "points": f"{c.points:g}" if c.outcome == "scored"
              else "", "chosen": row.student_id == chosen_id} for row, _, c in scored]
    return service.page(request, "ta_item.html", **common, item=item, item_title=rule.title,
                        max=f"{rule.points:g}", lines=lines, left=sum(1 for line in lines if not line["points"]),
                        chosen=chosen_id if chosen else "", row_id=chosen[0].id if chosen else 0,
                        points=f"{chosen[1].points:g}" if chosen and chosen[1].outcome == "scored" else "",
                        comment=chosen[1].ta.comment if chosen and chosen[1].ta else "", cells=cells,
                        comments=comments)


def _notebook(book: Gradebook, row: Row) -> list[dict]:
    """The row's notebook as a TA reads it: cells and outputs as text, PNG and JPEG images as data (nothing of it
    runs or is markup). Empty when the service does not keep the file (a batch's row)."""
    found = book.db.execute("SELECT path FROM uploads WHERE submission_id = ? ORDER BY rowid DESC LIMIT 1",
                            (row.id,)).fetchone()
    try:
        notebook = json.loads(Path(found[0]).read_bytes()) if found else None
        cells = notebook["cells"] if isinstance(notebook, dict) and isinstance(notebook.get("cells"), list) else []
    except (OSError, ValueError):
        cells = []
    return [view for cell in cells if isinstance(cell, dict) for view in _cell_views(cell)]


def _text(value) -> str:
    text = "".join(value) if isinstance(value, list) else value if isinstance(value, str) else ""
    return text[:NOTEBOOK_TEXT_LIMIT]


def _cell_views(cell: dict) -> list[dict]:
    views = [{"kind": "code" if cell.get("cell_type") == "code" else "text", "text": _text(cell.get("source"))}]
    for output in cell.get("outputs", []) if isinstance(cell.get("outputs"), list) else []:
        if not isinstance(output, dict):
            continue
        data = output.get("data") if isinstance(output.get("data"), dict) else {}
        image = next((kind for kind in IMAGE_TYPES if isinstance(data.get(kind), str)), None)
        if image is not None and _is_base64(data[image]):
            views.append({"kind": "image", "src": f"data:{image};base64,{data[image].strip()}"})
        elif "text" in output or "text/plain" in data:
            views.append({"kind": "output", "text": _text(output.get("text", data.get("text/plain")))})
    return views


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(text) < 4_000_000


def confirm_release(request: Request) -> Response:
    """Releasing asks first, and says what it does."""
    service = service_of(request)
    token, who = _ta(request)
    served = served_of(service, request.path_params["exercise"])
    with service.book() as book:
        common = _common(service, served, token, who, book)
        students_count = len(book.rows(served.name))
    return service.page(request, "ta_release.html", **common, students=students_count)


def download(request: Request) -> Response:
    """An attempt's notebook, as its student uploaded it."""
    service = service_of(request)
    _ta(request)
    served = served_of(service, request.path_params["exercise"])
    with service.book() as book:
        attempt = store.attempt(book, request.path_params["public_id"])
        path = store.stored_file(book, attempt.public_id) if attempt and attempt.row.exercise == served.name else None
    if path is None or not path.is_file():
        raise Refusal(404, L_("There is no such file here."))
    name = f"{safe_name(attempt.row.student_id)}-{_FILE_NAME_UNSAFE.sub('_', attempt.filename)}"
    return FileResponse(path, media_type="application/x-ipynb+json", filename=name)


def grades_csv(request: Request) -> Response:
    return _csv(request, "grades", export_csv)


def history_csv(request: Request) -> Response:
    return _csv(request, "history", export_history)


def _csv(request: Request, what: str, write: Callable[[Gradebook, str, Path], int]) -> Response:
    service = service_of(request)
    _ta(request)
    served = served_of(service, request.path_params["exercise"])
    folder = Path(tempfile.mkdtemp(prefix="autograder-export-"))
    path = folder / f"{served.name}-{what}.csv"
    with service.book() as book:
        write(book, served.name, path)
    return FileResponse(path, media_type="text/csv", filename=path.name,
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


def cohort_report(request: Request) -> Response:
    service = service_of(request)
    _ta(request)
    served = served_of(service, request.path_params["exercise"])
    with service.book() as book:
        return HTMLResponse(build_report(book, served.name, service.language_of(request)))


# what a TA does ---------------------------------------------------------------------------------

# An action returns where to go next (None: the exercise's dashboard), or a page to show: (template, values).
Act = Callable[[Service, Served, Gradebook, dict, store.Person], str | tuple[str, dict] | None]


def action(act: Act) -> Callable[[Request], object]:
    """The endpoint of a TA's form: their session, the form's CSRF token, then ``act`` off the event loop in a
    gradebook connection. A rule it breaks is one sentence."""

    async def endpoint(request: Request) -> Response:
        service = service_of(request)
        token, who = await run_in_threadpool(_ta, request)
        served = served_of(service, request.path_params["exercise"])
        form = await read_form(request, max_files=0, max_fields=12)
        check_csrf(token, form)
        values = {key: str(value) for key, value in form.items()} | dict(request.path_params)

        def run() -> str | tuple[str, dict] | None:
            try:
                with service.book() as book:
                    after = act(service, served, book, values, who)
                    if isinstance(after, tuple):
                        return after[0], _common(service, served, token, who, book) | after[1]
                    return after
            except UserError as exc:
                raise Refusal(400, sentence_of(exc)) from None

        after = await run_in_threadpool(run)
        if isinstance(after, tuple):
            return service.page(request, after[0], **after[1])
        return RedirectResponse(after or f"/ta/{served.name}", status_code=303)

    return endpoint


def _student_url(served: Served, student_id: str, anchor: str = "") -> str:
    return f"/ta/{served.name}/students/{student_id}" + (f"#{anchor}" if anchor else "")


def _row_of(book: Gradebook, served: Served, values: dict) -> Row:
    try:
        row = book.row(int(values.get("row", "")))
    except (TypeError, ValueError):
        row = None
    if row is None or row.exercise != served.name:
        raise Refusal(404, L_("There is no such submission in {exercise}.").format(exercise=served.name))
    return row


def _points(values: dict) -> float:
    try:
        return float(values.get("points", "").strip())
    except ValueError:
        raise Refusal(400, L_("Give the points as a number.")) from None


def _decide(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> str:
    kind = values.get("kind", "")
    student_id = values["student_id"]
    if kind == "extension":
        scoring.decide(book, served.name, student_id, "extension", who.label,
                       until=service.local_input(values.get("until", "")), comment=values.get("comment", ""))
        return _student_url(served, student_id)
    if kind not in ("points", "adjust", "manual"):
        raise Refusal(400, L_("Choose what to decide: points, adjust, manual or extension."))
    row = _row_of(book, served, values)
    scoring.decide(book, served.name, student_id, kind, who.label, row=row, item=values.get("item", ""),
                   points=_points(values), comment=values.get("comment", ""))
    if values.get("next") == "item":  # grading one item across students: on to the next who still awaits it
        return f"/ta/{served.name}/items/{values.get('item', '')}"
    return _student_url(served, student_id, "decisions")


def _undo(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> str:
    try:
        decision_id = int(values["decision_id"])
    except ValueError:
        raise Refusal(404, L_("There is no such decision in {exercise}.").format(exercise=served.name)) from None
    decision = scoring.undo(book, served.name, decision_id, who.label)
    return _student_url(served, decision.student_id, "decisions")


def _answer(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> str:
    try:
        found = book.request(int(values["request_id"]))
    except ValueError:
        found = None
    if found is None or found.exercise != served.name:
        raise Refusal(404, L_("There is no such question in {exercise}.").format(exercise=served.name))
    text = values.get("answer", "").strip()
    if not text:
        raise Refusal(400, L_("Write the answer the student will read."))
    book.answer(found.id, text[:2000], who.label)
    if values.get("points", "").strip():  # the answer corrects the check's points too
        scoring.decide(book, served.name, found.student_id, "points", who.label, row=book.row(found.submission_id),
                       item=found.item, points=_points(values), comment=text)
    if values.get("back") == "queue":
        return f"/ta/{served.name}/requests"
    return _student_url(served, found.student_id, "questions")


def _release(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> None:
    if values.get("confirm") != "yes":
        raise Refusal(400, L_("Confirm the release on its page first."))
    store.set_released(book, served.name, True, who)


def _unrelease(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> None:
    store.set_released(book, served.name, False, who)


def _uploads(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> None:
    store.set_uploads_open(book, served.name, values.get("open") == "yes", who)
    served.queue.wake()


def _rescore(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> None:
    """Rescore every stored submission with the exercise's rubric file as it is now (after a rubric change)."""
    regrade(book, served.name)
    book.log(who.label, "rescore", served.name)


def _compare(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> None:
    """The similarity report of the cohort's code, made now (leads for a person; it touches no score)."""
    report = similarity(book, served.exercise)
    for language in LANGUAGES:  # each TA reads it in the language they chose
        write_report(report, _similarity_dir(service, served, language), language)
    book.log(who.label, "similarity", served.name, detail=f"{len(report.pairs)} pair(s) of {report.compared}")


def _grade_again(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> str:
    attempt = store.attempt(book, values["public_id"])
    if attempt is None or attempt.row.exercise != served.name:
        raise Refusal(404, L_("There is no such submission in {exercise}.").format(exercise=served.name))
    if attempt.row.status == "pending":
        raise Refusal(409, L_("This submission is being graded already."))
    store.grade_again(book, attempt.row, who)
    served.queue.wake()
    return _student_url(served, attempt.row.student_id) if values.get("back") == "student" else None


def _new_link(service: Service, served: Served, book: Gradebook, values: dict, who: store.Person) -> tuple[str, dict]:
    """Revoke a student's link and show the new one, once."""
    student_id = values["student_id"]
    student = service.roster.students.get(student_id)
    if student is None or service.access_csv is None:
        raise Refusal(404, L_("{student} is not in the roster.").format(student=student_id))
    link = store.reissue_link(book, store.Person("student", student_id, student.name), service.access_csv,
                              service.base_url, who)
    return "ta_link.html", {"student_id": student_id, "name": student.name, "link": link}


decide = action(_decide)
undo = action(_undo)
answer = action(_answer)
release = action(_release)
unrelease = action(_unrelease)
uploads = action(_uploads)
rescore = action(_rescore)
grade_again = action(_grade_again)
compare = action(_compare)
new_link = action(_new_link)
