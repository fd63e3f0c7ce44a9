"""The submission service's web side: a Starlette app (served by uvicorn) over the gradebook.

Students open their personal link (``/login/<token>``: the token becomes an HttpOnly cookie and the
address bar loses it), upload a notebook per exercise, watch its place in the queue, read its feedback
(the same page ``autograder feedback`` writes; hidden checks hidden until released) and ask a TA about
a check (``students``). Each TA's own link opens the workbench (``ta``). Scripts use the JSON API with
``Authorization: Bearer <token>``. Nothing is graded in this process: ``queue.ExerciseQueue`` hands
uploads to worker processes.

Every page is a Jinja template with autoescaping, served with a strict Content-Security-Policy (no
script at all; styles from this server only); forms carry a token derived from the session's own
(CSRF); bodies beyond the upload limit are refused before they are read; a client that goes away
mid-upload is one log line; access lines are logged without tokens.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from uvicorn.protocols.http.h11_impl import H11Protocol

from ..feedback import TEMPLATES
from ..intake import too_large
from . import students, ta
from .students import MULTIPART_SLACK, Aborted
from .web import Refusal, Service, service_of

log = logging.getLogger("autograder.service")
# A client gets this long to send a request's headers (from connecting, or from its previous answer), and this long
# between two parts of a body: a slow or stalled connection is closed, not held open.
HEADER_SECONDS = 20.0
BODY_PAUSE_SECONDS = 30.0
KEEP_ALIVE_SECONDS = 15  # an idle connection between requests is closed after this long (uvicorn's own timer)
HEADER_BYTES = 32 * 1024  # request headers beyond this are refused


def style(request: Request) -> Response:
    css = (TEMPLATES / "style.css").read_text() + (TEMPLATES / "service" / "service.css").read_text()
    return Response(css, media_type="text/css")


def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    service = service_of(request)
    sentence = service.say(request, exc.sentence)
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": sentence}, status_code=exc.status)
    return service.page(request, "message.html", status=exc.status, sentence=sentence,
                        back="/ta" if request.url.path.startswith("/ta") else "/")


def _aborted(request: Request, exc: Exception) -> Response:
    """The client stopped sending its body: no one reads this answer, and the access line says 499."""
    return Response(status_code=499)


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
        body_done = False

        async def receive_capped():  # a body without a length (chunked) stops here too
            nonlocal received, body_done
            if body_done:  # after the body: only the disconnect comes, whenever it does
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_PAUSE_SECONDS)
            except TimeoutError:
                raise ClientDisconnect from None  # a stalled upload: the request ends as an aborted one
            received += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if received > self.max_body:
                raise Refusal(413, too_large("upload", self.service.max_bytes)[1])
            return message

        try:
            await self.app(scope, receive_capped, send_guarded)
        finally:
            path = self.TOKEN_IN_PATH.sub("/login/…", scope["path"])
            log.info("%s %s %s", scope["method"], path, status.get("code", "-"))


class SlowClientTimeouts(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a whole request's headers within
    HEADER_SECONDS of connecting or of its previous answer (uvicorn's own timer covers only idle connections
    between requests, so a client trickling its headers would otherwise hold a connection forever)."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete and self._header_timer is not None:
            self._header_timer.cancel()  # a whole request came: its headers were in time
            self._header_timer = None

    def connection_lost(self, exc) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(HEADER_SECONDS, self._too_slow)

    def _too_slow(self) -> None:
        if not self.transport.is_closing():
            log.info("a connection that sent no whole request in %.0f s was closed", HEADER_SECONDS)
            self.transport.close()


def serve(service: Service, host: str, port: int) -> None:
    """Serve the app until interrupted, with the connection limits above."""
    import uvicorn

    uvicorn.run(create_app(service), host=host, port=port, access_log=False, log_level="warning",
                http=SlowClientTimeouts, timeout_keep_alive=KEEP_ALIVE_SECONDS, h11_max_incomplete_event_size=HEADER_BYTES)


ROUTES = [
    Route("/", students.home), Route("/login/{token}", students.login),
    Route("/language/{language}", students.choose_language), Route("/static/style.css", style),
    Route("/student/{name}", students.student_wheel),
    Route("/submit/{exercise}", students.submit, methods=["POST"]),
    Route("/attempts/{public_id}", students.attempt_page),
    Route("/attempts/{public_id}/ask", students.ask, methods=["POST"]),
    Route("/api/submissions", students.api_submit, methods=["POST"]),
    Route("/api/submissions/{public_id}", students.api_submission), Route("/api/me", students.api_me),
    Route("/api/checks", students.api_check, methods=["POST"]),
    Route("/api/checks/{public_id}", students.api_check_result),
    Route("/ta", ta.dashboard), Route("/ta/{exercise}", ta.exercise_dashboard),
    Route("/ta/{exercise}/students", ta.students),
    Route("/ta/{exercise}/students/{student_id}", ta.student_page),
    Route("/ta/{exercise}/students/{student_id}/decide", ta.decide, methods=["POST"]),
    Route("/ta/{exercise}/students/{student_id}/link", ta.new_link, methods=["POST"]),
    Route("/ta/{exercise}/decisions/{decision_id}/undo", ta.undo, methods=["POST"]),
    Route("/ta/{exercise}/items/{item}", ta.grade_item),
    Route("/ta/{exercise}/requests", ta.requests_queue),
    Route("/ta/{exercise}/requests/{request_id}/answer", ta.answer, methods=["POST"]),
    Route("/ta/{exercise}/attempts/{public_id}/notebook", ta.download),
    Route("/ta/{exercise}/attempts/{public_id}/grade-again", ta.grade_again, methods=["POST"]),
    Route("/ta/{exercise}/release", ta.confirm_release),
    Route("/ta/{exercise}/release", ta.release, methods=["POST"]),
    Route("/ta/{exercise}/unrelease", ta.unrelease, methods=["POST"]),
    Route("/ta/{exercise}/uploads", ta.uploads, methods=["POST"]),
    Route("/ta/{exercise}/regrade", ta.rescore, methods=["POST"]),
    Route("/ta/{exercise}/grades.csv", ta.grades_csv), Route("/ta/{exercise}/history.csv", ta.history_csv),
    Route("/ta/{exercise}/report", ta.cohort_report),
    Route("/ta/{exercise}/similarity", ta.compare, methods=["POST"]),
    Route("/ta/{exercise}/similarity/{page}", ta.similarity_page),
]


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
        for served in service.served.values():  # once every queue has stopped: they may share a cluster
            served.queue.executor.close()

    app = Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={Refusal: _refused, Aborted: _aborted})
    app.state.service = service
    csp = (f"default-src 'none'; style-src 'self' {_inline_style_hash()}; img-src 'self' data:; form-action 'self'; "
           "frame-ancestors 'none'; base-uri 'none'")
    return Guard(app, service, csp)
