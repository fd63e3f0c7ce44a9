"""A real `autograder serve` for tests and bench/bench_service.py: a t5_decoding course with short limits and
a few uploads an hour, started on a free port, and the HTTP calls students make."""

from __future__ import annotations

import csv
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from cohort_data import EXERCISE, SOLUTION, make_course, personal
from conftest import ROOT, mutate, wrong_answers

AUTOGRADER = str(Path(sys.executable).parent / "autograder")
UPLOADS_PER_HOUR = 3
MAX_MIB = 0.25
HOSTILE_NAME = '<script>alert("x")</script> Ōno'
TAS = {"ta1": "Sato Hanako", "ta2": "=HYPERLINK(\"http://x\")"}  # the second name is a spreadsheet formula
VISIBLE = {"test_translation", "test_encoder_output_shape", "test_decoder_start_token", "test_lm_head_output_shape"}


@dataclass
class Server:
    process: subprocess.Popen
    course: Path
    url: str
    tokens: dict[str, str]  # student id (or ta:<ta id>) -> token
    book: Path
    log: Path

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    @contextmanager
    def browser_session(self, who: str) -> Iterator[httpx.Client]:
        """A client that opened its personal link (the session cookie set)."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            answer = client.get(f"/login/{self.tokens[who]}")
            assert answer.status_code == 303, answer.text
            yield client

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MANUAL_ITEM = "explain_decoding"


def make_service_course(root: Path, students: int = 6, uploads_per_hour: int = UPLOADS_PER_HOUR,
                        manual: bool = False) -> tuple[Path, Path]:
    """The course, and a roster of ``students`` plus one whose name is markup; ``manual``: its rubric has an item
    TAs score by hand (MANUAL_ITEM, 2 points)."""
    course = make_course(root / "course")
    spec = course / "assignments" / EXERCISE / "exercise.toml"
    spec.write_text(spec.read_text() + f"\n[service]\nuploads_per_hour = {uploads_per_hour}\n")
    if manual:
        rubric = course / "rubrics" / f"{EXERCISE}.toml"
        item = ('points = 2\nmanual = true\ntitle = "Explain greedy decoding in two sentences"\n'
                'titles = { ja = "貪欲法のデコードを二文で説明する" }\n')
        rubric.write_text(rubric.read_text() + f"\n[checks.{MANUAL_ITEM}]\n" + item)
    roster = root / "roster.csv"
    with roster.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["student_id", "name"])
        for n in range(1, students + 1):
            writer.writerow([f"s{n}", f"Student {n}"])
        writer.writerow([f"s{students + 1}", HOSTILE_NAME])
    return course, roster


def start_server(root: Path, course: Path, roster: Path, *extra: str, jobs: int = 1) -> Server:
    port = _free_port()
    book = root / "out" / "gradebook.sqlite"
    tas = root / "tas.csv"
    with tas.open("w", newline="") as out:
        csv.writer(out).writerows([("ta_id", "name"), *TAS.items()])
    log = root / "serve.log"
    env = {**os.environ, "AUTOGRADER_COURSE_DIR": str(course), "AUTOGRADER_CACHE": str(ROOT / ".cache")}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [AUTOGRADER, "serve", EXERCISE, "--roster", str(roster), "--gradebook", str(book), "--port", str(port),
             "--jobs", str(jobs), "--max-file-mib", str(MAX_MIB), "--tas", str(tas), *extra],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, f"the service ended: {log.read_text()}"
        assert time.monotonic() < deadline, f"the service did not start: {log.read_text()}"
        try:
            if httpx.get(f"{url}/", timeout=5).status_code == 401:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    with (book.parent / "access.csv").open() as links:
        tokens = {("ta:" if line["role"] == "ta" else "") + line["id"]: line["token"] for line in csv.DictReader(links)}
    return Server(process, course, url, tokens, book, log)


def wait_graded(server: Server, who: str, public_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    with server.client(who) as client:
        while True:
            answer = client.get(f"/api/submissions/{public_id}")
            assert answer.status_code == 200, answer.text
            body = answer.json()
            if body["status"] not in ("queued", "running"):
                return body
            assert time.monotonic() < deadline, f"still {body['status']} after {timeout} s: {server.log.read_text()}"
            time.sleep(0.3)


def submit(server: Server, who: str, data: bytes, name: str = "t5_decoding.ipynb") -> httpx.Response:
    with server.client(who) as client:
        return client.post("/api/submissions", data={"exercise": EXERCISE}, files={"file": (name, data)})


def burst(root: Path, students: int, each: int, jobs: int | None, spread: float, *serve_args: str) -> dict:
    """Run the burst (``serve_args``: more options of `serve`, e.g. its executor); returns the measurements (raises
    AssertionError if anything is lost)."""
    course, roster = make_service_course(root, students=students, uploads_per_hour=each)
    server = start_server(root, course, roster, *serve_args, jobs=jobs or 2)
    wrong = mutate(SOLUTION, *wrong_answers(EXERCISE)["forgot the batch dimension"][0])
    plan = [(f"s{n}", personal(SOLUTION.read_bytes() if k % 2 == 0 else wrong, f"s{n} attempt {k}"))
            for n in range(1, students + 1) for k in range(each)]
    random.Random(0).shuffle(plan)
    pause = spread / len(plan)
    try:
        started = time.monotonic()

        def send(item: tuple[int, tuple[str, bytes]]) -> tuple[str, str, float]:
            index, (who, data) = item
            time.sleep(max(0.0, started + index * pause - time.monotonic()))
            sent = time.monotonic()
            answer = submit(server, who, data)
            assert answer.status_code == 202, answer.text
            return who, answer.json()["id"], time.monotonic() - sent

        with ThreadPoolExecutor(8) as pool:
            acknowledged = list(pool.map(send, enumerate(plan)))
        sent_all = time.monotonic() - started
        results = [wait_graded(server, who, public_id, timeout=900) for who, public_id, _ in acknowledged]
        last = time.monotonic() - started
    finally:
        server.stop()
    with sqlite3.connect(server.book) as db:
        graded_rows = db.execute("SELECT COUNT(*) FROM submissions WHERE status = 'graded'").fetchone()[0]
    latency = sorted(seconds for _, _, seconds in acknowledged)
    return {"uploads": len(plan), "students": students, "jobs": jobs or 2, "sent_in": sent_all, "last_result": last,
            "after_last_upload": last - sent_all,
            "upload_median": statistics.median(latency), "upload_max": latency[-1], "rate": len(plan) / last * 60,
            "statuses": dict(Counter(r["status"] for r in results)), "graded_rows": graded_rows}
