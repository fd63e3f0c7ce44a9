"""Check and submit a notebook from inside it (Google Colab, Jupyter, VS Code) to the course's submission service.

In a cell of your notebook::

    from autograder import student
    student.login()     # asks once for the personal link the course sent you; it is not written into the notebook
    student.check()     # the public checks, now; not an attempt
    student.submit()    # hand in this notebook: waits for its result and shows the feedback here

The link can also come from the environment variable ``AUTOGRADER_LINK`` (in Colab: a secret of that name).
This module needs only Python's standard library (and IPython, where a notebook shows its output), so installing
it changes nothing else of the environment (``pip install`` of the course's small ``llm-course-student`` wheel).
It holds nothing of the grader: checks run on the service, never here.
"""

from __future__ import annotations

import getpass
import html
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

LINK_SETTING = "AUTOGRADER_LINK"
GRADING_SETTING = "AUTOGRADER_GRADING"  # set by the grader in the process that runs a submitted notebook
POLL_SECONDS = 1.0
WAIT_SECONDS = 1800.0  # how long submit() and check() wait for a result before they say how to look later
TIMEOUT = 60.0  # one request to the service


class StudentError(Exception):
    """One sentence saying what went wrong and what to do."""


# What this module says itself, in the course's languages (the service's own sentences come in its language).
SENTENCES = {
    "signed_in": ("Signed in as {name} ({student_id}).", "{name} さん ({student_id}) としてログインしました。"),
    "not_a_link": ("This is not a personal link of the course (it looks like https://…/login/…); copy the whole link "
                   "from the course's message.",
                   "コースの個人用リンクではありません (https://…/login/… の形です)。コースからのメッセージのリンクを全部コピーしてください。"),
    "no_file": ("There is no notebook at {path}; check the path.", "{path} にノートブックがありません。パスを確かめてください。"),
    "not_found": ("The open notebook could not be found (not Colab, Jupyter or VS Code); pass its path: "
                  "submit('my_notebook.ipynb').",
                  "開いているノートブックが見つかりません (Colab・Jupyter・VS Code 以外)。パスを渡してください: "
                  "submit('my_notebook.ipynb')"),
    "colab_refused": ("Colab did not hand over the notebook; save it (Ctrl+S) and run the cell again.",
                      "Colab からノートブックを受け取れませんでした。保存 (Ctrl+S) してから、もう一度セルを実行してください。"),
    "not_json": ("This file is not a notebook (not valid JSON); open the exercise's .ipynb.",
                 "このファイルはノートブックではありません (JSON として読めません)。課題の .ipynb を開いてください。"),
    "no_exercise": ("The notebook does not say which exercise it is; pass exercise='name'.",
                    "ノートブックにどの課題かが書かれていません。exercise='課題名' を渡してください。"),
    "link_inside": ("Your personal link is written in this notebook (in a cell or an output): delete it, and call "
                    "student.login() without the link, which asks for it.",
                    "このノートブックの中 (セルか出力) に個人用リンクが書かれています。削除して、リンクを渡さずに "
                    "student.login() を呼んでください (入力を求められます)。"),
    "checking": ("Checking {source} …", "{source} をチェックしています…"),
    "submitting": ("Submitting {source} …", "{source} を提出しています…"),
    "as_saved": ("{name} as last saved (save first if you changed it since)",
                 "最後に保存した {name} (その後に変更したなら先に保存してください)"),
    "colab": ("the notebook open in Colab", "Colab で開いているノートブック"),
    "waiting": ("Waiting: {place} ahead of you in the queue.", "順番待ち: 前に {place} 件あります。"),
    "running": ("Running …", "実行中…"),
    "still": ("Still {state} after {minutes} minutes; look for the result later on the course's page.",
              "{minutes} 分たってもまだ {state} です。あとでコースのページで結果を見てください。"),
    "unreachable": ("The course's service at {base} cannot be reached ({reason}); check your connection and the link, "
                    "and try again in a while.",
                    "{base} のコースのサービスにつながりません ({reason})。接続とリンクを確かめて、しばらくしてから試してください。"),
    "not_service": ("The answer from {base} is not the course's service; check the link.",
                    "{base} からの応答はコースのサービスのものではありません。リンクを確かめてください。"),
    "refused": ("The course's service answered {code}; try again in a while.",
                "コースのサービスが {code} を返しました。しばらくしてから試してください。"),
    "public_checks": ("Public checks", "公開チェック"),
    "feedback": ("Feedback", "フィードバック"),
    "could_not_run": ("the grader could not run it: {problem}", "採点できませんでした: {problem}"),
    "hidden_only": ("These steps have no public check: only the hidden checks judge them, when your work is graded.",
                    "次のステップには公開チェックがありません。採点のときに非公開チェックだけが確かめます。"),
    "columns": (("check", "points", "result"), ("チェック", "点数", "結果")),
    "grading": ("The grader is running this notebook: nothing is checked or submitted from here.",
                "採点者がこのノートブックを実行しています。ここからはチェックも提出もしません。"),
}
_language: int | None = None  # 0 English, 1 Japanese: the service's; None before signing in (then both)


def _text(key: str, **fields: object) -> str:
    english, japanese = SENTENCES[key]
    if _language is None:
        return english.format(**fields) + " / " + japanese.format(**fields)
    return (english, japanese)[_language].format(**fields)


@dataclass
class _Session:
    base: str  # the service's address, e.g. https://grader.example.edu
    token: str
    student_id: str = ""
    name: str = ""


_session: _Session | None = None


# --- signing in --------------------------------------------------------------------------------------------------

def login(link: str | None = None) -> None:
    """Remember the personal link for this session: from ``link``, else ``$AUTOGRADER_LINK`` (or the Colab secret of
    that name), else asked for without echo. Prefer leaving ``link`` out: a link written in a cell is saved with the
    notebook, and ``submit()`` refuses a notebook that holds it."""
    global _session
    if _being_graded():
        return
    link = (link or os.environ.get(LINK_SETTING) or _colab_secret() or getpass.getpass("Your personal link: ")).strip()
    parts = urllib.parse.urlsplit(link)
    prefix, found, token = parts.path.rpartition("/login/")
    if parts.scheme not in ("http", "https") or not parts.netloc or not found or not token or "/" in token:
        raise _say(_text("not_a_link"))
    global _language
    session = _Session(f"{parts.scheme}://{parts.netloc}{prefix}", token)
    me = _request(session, "GET", "/api/me")
    session.student_id, session.name = me.get("student_id", ""), me.get("name", "")
    _session, _language = session, 1 if me.get("language") == "ja" else 0
    _show_text(_text("signed_in", name=session.name or session.student_id, student_id=session.student_id))


def _colab_secret() -> str | None:
    try:
        from google.colab import userdata  # type: ignore[import-not-found]

        return userdata.get(LINK_SETTING)
    except Exception:  # not in Colab, or no such secret, or not allowed: ask instead
        return None


def _being_graded() -> bool:
    """In the grader's run of a submitted notebook, where these calls are part of what it runs, they say so and do
    nothing."""
    if os.environ.get(GRADING_SETTING):
        _show_text(_text("grading"))
        return True
    return False


def _signed_in() -> _Session:
    if _session is None:
        login()
    assert _session is not None
    return _session


# --- the notebook ------------------------------------------------------------------------------------------------

def _notebook(path: str | os.PathLike | None) -> tuple[bytes, str, str]:
    """(the notebook's bytes, its file name, where they came from) of the open notebook, or of ``path``."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise _say(_text("no_file", path=file))
        return file.read_bytes(), file.name, f"{file} as saved"
    colab = _colab_notebook()
    if colab is not None:
        return colab
    found = _jupyter_notebook_path()
    if found is not None:
        return found.read_bytes(), found.name, _text("as_saved", name=found.name)
    raise _say(_text("not_found"))


def _colab_notebook() -> tuple[bytes, str, str] | None:
    """Colab's own way to read the notebook open in the browser, unsaved edits included."""
    try:
        from google.colab import _message  # type: ignore[import-not-found]
    except ImportError:
        return None
    reply = _message.blocking_request("get_ipynb", timeout_sec=60)
    if not isinstance(reply, dict) or "ipynb" not in reply:
        raise _say(_text("colab_refused"))
    return json.dumps(reply["ipynb"]).encode(), "colab.ipynb", _text("colab")


def _jupyter_notebook_path() -> Path | None:
    """The file of the notebook this kernel runs: VS Code says it; a Jupyter server knows it by the kernel's id."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return None
    if shell is None:
        return None
    vscode = shell.user_ns.get("__vsc_ipynb_file__")
    if vscode and Path(vscode).is_file():
        return Path(vscode)
    try:
        from ipykernel.connect import get_connection_file

        kernel_id = Path(get_connection_file()).stem.removeprefix("kernel-")
    except Exception:  # not an ipykernel
        return None
    for server in _jupyter_servers():
        url = server.get("url", "").rstrip("/") + "/api/sessions"
        request = urllib.request.Request(url, headers={"Authorization": f"token {server.get('token', '')}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                sessions = json.load(answer)
        except (OSError, ValueError):
            continue
        for session in sessions:
            if session.get("kernel", {}).get("id") == kernel_id:
                root = Path(server.get("root_dir") or server.get("notebook_dir") or ".")
                return root / session.get("path", session.get("notebook", {}).get("path", ""))
    return None


def _jupyter_servers() -> list[dict]:
    for module in ("jupyter_server.serverapp", "notebook.notebookapp"):
        try:
            return list(__import__(module, fromlist=["list_running_servers"]).list_running_servers())
        except Exception:  # not installed, or no server of that kind
            continue
    return []


def _exercise_of(data: bytes) -> str:
    try:
        meta = json.loads(data.decode("utf-8")).get("metadata", {}).get("autograder", {})
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise _say(_text("not_json")) from None
    name = meta.get("exercise") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise _say(_text("no_exercise"))
    return name


# --- check and submit --------------------------------------------------------------------------------------------

def check(path: str | os.PathLike | None = None, exercise: str | None = None) -> dict:
    """Run the public checks on the open notebook (or ``path``) on the course's service and show them here. Not an
    attempt: nothing is stored, and it has its own hourly allowance. Returns the service's answer."""
    if _being_graded():
        return {}
    session = _signed_in()
    data, filename, source = _notebook(path)
    _refuse_link_inside(data, session)
    exercise = exercise or _exercise_of(data)
    _show_text(_text("checking", source=source))
    started = _upload(session, "/api/checks", exercise, filename, data)
    answer = _wait(session, started["url"])
    _show_result(answer, check_only=True)
    return answer


def submit(path: str | os.PathLike | None = None, exercise: str | None = None) -> dict:
    """Hand in the open notebook (or ``path``): upload it with your link, wait for its grading (showing its place in
    the queue), then show its feedback here (hidden checks once they are released). Nothing is saved or changed in
    the notebook. Returns the service's answer."""
    if _being_graded():
        return {}
    session = _signed_in()
    data, filename, source = _notebook(path)
    _refuse_link_inside(data, session)
    exercise = exercise or _exercise_of(data)
    _show_text(_text("submitting", source=source))
    started = _upload(session, "/api/submissions", exercise, filename, data)
    answer = _wait(session, started["url"])
    _show_result(answer, check_only=False)
    return answer


def _refuse_link_inside(data: bytes, session: _Session) -> None:
    if session.token.encode() in data:
        raise _say(_text("link_inside"))


def _wait(session: _Session, url: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    said = ""
    while True:
        answer = _request(session, "GET", url)
        state = answer.get("status")
        if state not in ("queued", "running"):
            return answer
        line = _text("waiting", place=answer.get("place", 0)) if state == "queued" else _text("running")
        if line != said:
            _show_text(line)
            said = line
        if time.monotonic() > deadline:
            raise _say(_text("still", state=state, minutes=f"{WAIT_SECONDS / 60:.0f}"))
        time.sleep(POLL_SECONDS)


# --- talking to the service --------------------------------------------------------------------------------------

def _upload(session: _Session, path: str, exercise: str, filename: str, data: bytes) -> dict:
    boundary = uuid.uuid4().hex
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "") or "notebook.ipynb"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="exercise"\r\n\r\n{exercise}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            "Content-Type: application/x-ipynb+json\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return _request(session, "POST", path, body, f"multipart/form-data; boundary={boundary}")


def _request(session: _Session, method: str, path: str, body: bytes | None = None,
             content_type: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {session.token}", "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(session.base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:
        raise _say(_refusal(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _say(_text("unreachable", base=session.base, reason=reason)) from None
    except ValueError:
        raise _say(_text("not_service", base=session.base)) from None


def _refusal(exc: urllib.error.HTTPError) -> str:
    """The service's own sentence for a refusal (it says what to do), else one for the status."""
    try:
        sentence = json.loads(exc.read().decode("utf-8")).get("error")
    except (ValueError, OSError, AttributeError, UnicodeDecodeError):
        sentence = None
    if isinstance(sentence, str) and sentence:
        return sentence
    return _text("refused", code=exc.code)


def _say(sentence: str) -> StudentError:
    return StudentError(sentence)


# --- showing it --------------------------------------------------------------------------------------------------

def _show_text(line: str) -> None:
    print(line, flush=True)


def _show_result(answer: dict, check_only: bool) -> None:
    """The feedback in the cell's output: an HTML table in a notebook, lines of text elsewhere. Every text of it
    is escaped: messages quote what the notebook returned."""
    state = answer.get("status")
    results = answer.get("results") or {}
    tests = results.get("tests") or []
    score = answer.get("score")
    heading = _text("public_checks" if check_only else "feedback") + (
        f": {score:g} / {answer.get('max_score'):g}" if isinstance(score, (int, float)) else "")
    if state == "error" and answer.get("problem"):
        heading += " — " + _text("could_not_run", problem=answer["problem"])
    elif state not in ("done", "graded"):
        heading += f" — {state}"
    overview = results.get("output") or ""
    hidden_only = answer.get("hidden_only") or []
    try:
        from IPython.display import HTML, display
    except ImportError:
        print(heading)
        print(overview)
        for test in tests:
            print(f"- {test.get('name')}: {test.get('output')}")
        if hidden_only:
            print(_text("hidden_only"))
        for title in hidden_only:
            print(f"  - {title}")
        return
    rows = "".join(
        f"<tr><td>{html.escape(str(t.get('name', '')))}</td><td>{html.escape(_points(t))}</td>"
        f"<td style='white-space:pre-wrap'>{html.escape(str(t.get('output', '')))}</td></tr>" for t in tests)
    note = ""
    if hidden_only:
        items = "".join(f"<li>{html.escape(title)}</li>" for title in hidden_only)
        note = f"<p>{html.escape(_text('hidden_only'))}</p><ul>{items}</ul>"
    columns = "".join(f"<th>{html.escape(c)}</th>" for c in SENTENCES["columns"][_language or 0])
    display(HTML(f"<h4>{html.escape(heading)}</h4><p>{html.escape(overview)}</p>"
                 f"<table><tr>{columns}</tr>{rows}</table>{note}"))


def _points(test: dict) -> str:
    if test.get("output") == "hidden":
        return "hidden"
    score, maximum = test.get("score"), test.get("max_score")
    return f"{score:g} / {maximum:g}" if isinstance(score, (int, float)) and isinstance(maximum, (int, float)) else ""
