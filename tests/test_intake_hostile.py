"""Hostile and broken cohort input, and outputs a person opens: each attack reproduced, each answered by a row
with a sentence (never a stopped batch, a borrowed grade, a script in a browser or a formula in a spreadsheet)."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from autograder import intake, wire
from autograder.cli import app
from autograder.exports import export_csv, safe_name
from autograder import scoring
from autograder.gradebook import Gradebook
from autograder.intake import Found, Roster, Student, discover
from autograder.notebook import InvalidNotebook, read_notebook
from autograder.submission import StudentFailure
from autograder.testing import MAX_IDS, as_int_list
from cohort_data import EXERCISE, synthetic_gradebook
from conftest import ROOT, load_hidden_checks, solution_path

SOLUTION = solution_path(EXERCISE)
GOOD = SOLUTION.read_bytes()


def by_source(found: list[Found]) -> dict[str, Found]:
    return {f.source: f for f in found}


# --- intake: links, unreadable entries, bombs ------------------------------------------------------------------

def test_links_are_rows_with_a_reason_and_their_targets_are_never_read(tmp_path):
    folder = tmp_path / "submissions"
    (folder / "eve").mkdir(parents=True)
    (folder / "alice.ipynb").write_bytes(GOOD)
    (folder / "mallory.ipynb").symlink_to(SOLUTION)  # the course's own solution: 14/14 before
    (folder / "eve" / "work.ipynb").symlink_to("../alice.ipynb")  # Alice's bytes under Eve's name
    (folder / "trudy").symlink_to(SOLUTION.parent, target_is_directory=True)
    found = by_source(discover(folder))
    assert found["alice.ipynb"].problem is None
    for source in ("mallory.ipynb", "eve/work.ipynb", "trudy"):
        status, sentence = found[source].problem
        assert status == "invalid" and "symbolic link" in str(sentence)
        assert found[source].sha256 != found["alice.ipynb"].sha256
    assert found["eve/work.ipynb"].key == "eve"


def test_one_unreadable_file_is_one_error_row(tmp_path, monkeypatch):
    folder = tmp_path / "submissions"
    folder.mkdir()
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        (folder / name).write_bytes(GOOD + name.encode())
    opened = intake._open_regular

    def failing(path: Path):
        if path.name == "b.ipynb":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return opened(path)

    monkeypatch.setattr(intake, "_open_regular", failing)
    found = by_source(discover(folder))
    assert found["a.ipynb"].problem is None and found["c.ipynb"].problem is None
    status, sentence = found["b.ipynb"].problem
    assert status == "error" and "Input/output error" in str(sentence) and "run the batch again" in str(sentence)


def test_a_non_utf8_file_name_and_a_pipe_are_rows(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "ok.ipynb").write_bytes(GOOD)
    os.close(os.open(os.fsencode(folder) + b"/" + "課題.ipynb".encode("cp932"), os.O_CREAT | os.O_WRONLY))
    os.mkfifo(folder / "pipe.ipynb")  # reading it would block the batch forever
    found = discover(folder)
    problems = sorted((status, str(sentence)) for status, sentence in (f.problem for f in found if f.problem))
    assert [p[0] for p in problems] == ["invalid", "invalid"]
    assert any("not UTF-8" in p[1] for p in problems) and any("not a regular file" in p[1] for p in problems)
    assert all(f.source.encode("utf-8") for f in found)  # every row's text can be stored and shown


def _patch_method(archive: Path, name: str, method: int) -> None:
    """Mark one entry as compressed with `method` in its local header and the central directory."""
    data = bytearray(archive.read_bytes())
    encoded = name.encode()
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at != -1:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(encoded)] == encoded:
                data[at + offset:at + offset + 2] = struct.pack("<H", method)
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))


def test_bad_zip_entries_are_rows_and_the_rest_is_read(tmp_path):
    archive = tmp_path / "cohort.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("good.ipynb", GOOD)
        zf.writestr("crc.ipynb", GOOD + b" ")
        zf.writestr("deflate64.ipynb", b"x" * 100, compress_type=zipfile.ZIP_STORED)
        zf.writestr("/etc/absolute.ipynb", GOOD)
        zf.writestr("C:\\Users\\bob\\work.ipynb", GOOD)
        zf.writestr("../outside.ipynb", GOOD)
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("crc.ipynb")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 40] ^= 0xFF  # one byte of the compressed data: the CRC no longer matches
    archive.write_bytes(bytes(data))
    _patch_method(archive, "deflate64.ipynb", 9)
    found = by_source(discover(archive))
    assert found["good.ipynb"].problem is None
    expected = {"crc.ipynb": "damaged", "deflate64.ipynb": "Deflate64", "/etc/absolute.ipynb": "absolute path",
                "C:\\Users\\bob\\work.ipynb": "absolute path", "../outside.ipynb": "leaves the archive"}
    for source, words in expected.items():
        status, sentence = found[source].problem
        assert status == "invalid" and words in str(sentence), (source, sentence)


def test_a_zip_bomb_stops_at_the_cap_in_constant_memory(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("bomb.ipynb", "w", force_zip64=True) as entry:
            for _ in range(1024):
                entry.write(bytes(1 << 20))  # 1 GiB of zeros: a 1 MB zip
        zf.writestr("ok.ipynb", GOOD)
    script = ("import json, resource, sys; from pathlib import Path; from autograder.intake import discover;"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
              "found = {f.source: f.problem and (f.problem[0], str(f.problem[1])) for f in discover(Path(sys.argv[1]))};"
              "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before;"
              "print(json.dumps({'found': found, 'grown_kib': grown}))")
    out = json.loads(subprocess.run([sys.executable, "-c", script, str(archive)], capture_output=True, text=True,
                                    check=True, cwd=ROOT).stdout)
    assert out["found"]["ok.ipynb"] is None
    status, sentence = out["found"]["bomb.ipynb"]
    assert status == "invalid" and "larger than 64 MiB" in sentence
    assert out["grown_kib"] < 64 * 1024, "the bomb was held in memory"


def test_a_file_over_the_cap_is_refused_while_streaming_and_a_lying_zip_size_as_damaged(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "big.ipynb").write_bytes(bytes(3 << 20))  # no declared size: the stream stops at the cap
    [found] = discover(folder, max_bytes=1 << 20)
    assert found.problem[0] == "invalid" and "larger than 1 MiB" in str(found.problem[1])
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.ipynb", bytes(3 << 20))
    data = bytearray(archive.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[central + 24:central + 28] = struct.pack("<I", 1000)  # declares 1,000 bytes
    archive.write_bytes(bytes(data))
    [found] = discover(archive, max_bytes=1 << 20)
    assert found.problem[0] == "invalid" and "damaged" in str(found.problem[1])


# --- intake: identity ------------------------------------------------------------------------------------------

def test_ids_are_nfc_so_a_macos_name_is_the_roster_student(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "jose\u0301.ipynb").write_bytes(GOOD)  # NFD, as macOS writes it
    roster_file = tmp_path / "roster.csv"
    roster_file.write_text("student_id,name\njos\u00e9,José\n", encoding="utf-8")
    [found] = discover(folder)
    assert Roster.load(roster_file).resolve(found) == ("jos\u00e9", "José")


def test_ids_that_sanitise_alike_get_distinct_output_files():
    ids = ["tanaka_taro", "tanaka~taro", "tanaka taro", ".", "..", "_", "a/b", "a_b", "C:", "C_"]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert safe_name("tanaka_taro") == "tanaka_taro"  # an id that needs no change keeps its plain name
    assert all("/" not in n and not n.startswith(".") for n in names)


def test_two_lms_users_are_never_one_student_by_name():
    roster = Roster([Student("s1", "Taro Tanaka", "111")])
    same_name_other_user = Found("tanakataro_222_9_work.ipynb", "222", "tanakataro", "canvas", None, "zip")
    assert roster.resolve(same_name_other_user) == ("222", "tanakataro")
    known_user = Found("tanakataro_111_9_work.ipynb", "111", "tanakataro", "canvas", None, "zip")
    assert roster.resolve(known_user)[0] == "s1"
    unnumbered = Roster([Student("s2", "Hanako Sato")])
    assert unnumbered.resolve(Found("satohanako_333_9_x.ipynb", "333", "satohanako", "canvas", None, "zip"))[0] == "s2"
    # Two LMS users with the name of a roster student who has no lms_id: neither is given to that student.
    two = [Found("satohanako_333_9_x.ipynb", "333", "satohanako", "canvas", None, "zip"),
           Found("satohanako_444_9_x.ipynb", "444", "satohanako", "canvas", None, "zip"),
           Found("satohanako_333_10_y.ipynb", "333", "satohanako", "canvas", None, "zip")]
    resolved, notes = unnumbered.resolve_all(two)
    assert [r[0] for r in resolved] == ["333", "444", "333"] and all("name_shared" in r[2] for r in resolved)
    assert len(notes) == 1 and "333, 444" in str(notes[0]) and "s2" in str(notes[0]) and "lms_id" in str(notes[0])
    assert unnumbered.resolve_all(two[::2]) == ([("s2", "Hanako Sato", ())] * 2, [])  # one user: the student


def test_deeply_nested_json_is_invalid_with_a_sentence(tmp_path):
    deep = b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b', "nbformat": 4, "nbformat_minor": 5, "metadata": {}}'
    with pytest.raises(InvalidNotebook, match="nested more than 100 levels"):
        read_notebook(deep)
    path = tmp_path / "deep.ipynb"
    path.write_bytes(deep)
    result = CliRunner().invoke(app, ["run", EXERCISE, str(path), "--no-sandbox"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "nested more than 100 levels" in result.output and "Traceback" not in result.output


# --- outputs a person opens ------------------------------------------------------------------------------------

PAYLOADS = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[click](javascript:alert(3))",
            "<javascript:alert(4)>", "![x](javascript:alert(5))", "`code`</td><script>alert(6)</script>"]


def test_markdown_feedback_shows_student_text_as_text_in_common_renderers(tmp_path):
    import mistune
    from markdown_it import MarkdownIt

    from autograder.feedback import Visibility, feedback_markdown, feedback_page

    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=2)
    with Gradebook(book_path) as book:
        _, entries = scoring.results(book, EXERCISE)
    row, result = next((r, res) for r, res in entries if res is not None)
    row.student_name = PAYLOADS[0]
    result.checks[0].message = "\n".join(PAYLOADS)
    text = feedback_markdown(feedback_page("T5 <b>", row, result, Visibility(True, None)))
    for rendered in (MarkdownIt("commonmark", {"html": True}).render(text), mistune.html(text)):
        lowered = rendered.lower()
        assert "<script" not in lowered and "<img" not in lowered and "<b>" not in lowered
        assert 'href="javascript' not in lowered and 'src="javascript' not in lowered
        assert "alert(3)" in lowered  # shown, as text


def test_csv_cells_from_students_never_start_a_formula(tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=3)
    with Gradebook(book_path) as book:
        book.db.execute("UPDATE submissions SET student_id = '=HYPERLINK(\"http://x\",\"y\")', "
                        "student_name = '@SUM(1)', source = '+cmd.ipynb', message = '-2+3' WHERE id = 1")
        export_csv(book, EXERCISE, tmp_path / "grades.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "grades.csv").read_text())))
    bad = next(r for r in rows if "HYPERLINK" in r["student_id"])
    for column in ("student_id", "name", "source", "message"):
        assert bad[column].startswith("'"), (column, bad[column])
    assert all(not r[c].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for c in ("student_id", "name"))


def test_terminal_output_has_no_control_characters(tmp_path):
    path = tmp_path / "\x1b[2J\x1b]0;owned\x07evil\u202e.ipynb"
    path.write_bytes(b"not a notebook")
    result = CliRunner().invoke(app, ["run", EXERCISE, str(path), "--no-sandbox"])
    assert "could not be graded" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\u202e" not in result.output


def test_long_values_in_messages_are_clipped(tmp_path):
    from autograder.checking import CheckSession
    from autograder.runners.base import RunLimits
    from autograder.submission import Submission
    from test_wire import InProcessSession

    check_file = tmp_path / "test_long.py"
    check_file.write_text("def test_echo(submission):\n"
                          "    value = submission.value('answer')\n"
                          "    assert False, f'`answer` is {value!r}, expected 3'\n")
    with CheckSession([check_file]) as checks:
        [outcome] = checks.run(None, Submission(InProcessSession({"answer": "x" * 10_000_000}), RunLimits(), {}))
    assert outcome.outcome == "failed" and len(outcome.message) < 2100 and "more characters not shown" in outcome.message


# --- the gradebook keeps what was decided ----------------------------------------------------------------------

def test_a_regrade_rubric_stays_in_force_for_the_next_grade(tmp_path):
    from autograder.cohort import grade_cohort, regrade
    from autograder.exercise import Exercise

    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=3)
    custom = tmp_path / "custom.toml"
    custom.write_text((ROOT / "rubrics" / f"{EXERCISE}.toml").read_text().replace("points = 1\n", "points = 3\n", 1))
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "u001.ipynb").symlink_to(SOLUTION)  # a row that needs no worker
    with Gradebook(book_path) as book:
        regrade(book, EXERCISE, custom)
        summary = grade_cohort(Exercise(EXERCISE), folder, book)
        assert scoring.policy(book, EXERCISE).origin == str(custom)
        notes = [str(note) for note in summary.notes]
        assert any("rubric in force" in note and "custom.toml" in note and str(tmp_path) not in note for note in notes)
        regrade(book, EXERCISE)  # the way back
        assert scoring.policy(book, EXERCISE).origin == str(Exercise(EXERCISE).rubric_file)


def test_stored_outcomes_of_a_removed_check_do_not_lock_the_gradebook(tmp_path):
    from autograder.cohort import regrade

    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=3)
    with Gradebook(book_path) as book:
        before = {r.id: r.score for r in book.rows(EXERCISE)}
        for row in book.rows(EXERCISE):
            record = row.run_record()
            if record is None:
                continue
            gone = record.outcomes[0].model_copy(update={"id": "test_removed_since", "outcome": "passed"})
            record.outcomes.append(gone)
            book.db.execute("UPDATE submissions SET record = ? WHERE id = ?", (record.model_dump_json(), row.id))
        policy, _, retired = regrade(book, EXERCISE)
        assert retired == {"test_removed_since"}
        assert {r.id: r.score for r in book.rows(EXERCISE)} == before  # it scores nothing
        _, entries = scoring.results(book, EXERCISE)
        assert all("test_removed_since" not in {c.id for c in res.checks} for _, res in entries if res)


def test_the_batch_lock_holds_through_a_link_to_the_gradebook(tmp_path):
    from autograder.errors import UserError

    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=1)
    link = tmp_path / "other-name.sqlite"
    link.symlink_to(book_path)
    with Gradebook(book_path) as first, first.batch_lock():
        with Gradebook(link) as second, pytest.raises(UserError, match="Another batch"):
            with second.batch_lock():
                pass


def test_a_damaged_row_is_one_sentence_and_the_others_still_export(tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=4)
    with Gradebook(book_path) as book:
        book.db.execute("UPDATE submissions SET record = '{\"status\": 7}' WHERE student_id = 'u002'")
    out = tmp_path / "grades.csv"
    result = CliRunner().invoke(app, ["export", EXERCISE, "--csv", str(out), "--gradebook", str(book_path)])
    assert result.exit_code != 0 and "stored record of u002" in result.output and "Traceback" not in result.output
    rows = {r["student_id"]: r for r in csv.DictReader(io.StringIO(out.read_text()))}
    assert rows["u002"]["status"] == "error" and len(rows) == 5
    feedback = CliRunner().invoke(app, ["feedback", EXERCISE, "--out", str(tmp_path / "fb"), "--gradebook",
                                        str(book_path)])
    assert feedback.exit_code != 0 and (tmp_path / "fb" / "u001.html").is_file()


def test_a_damaged_database_file_is_one_sentence(tmp_path):
    book_path = synthetic_gradebook(tmp_path / "book.sqlite", students=30)
    data = bytearray(book_path.read_bytes())
    page = 4096
    data[2 * page:len(data) - page] = bytes([0xA5]) * (len(data) - 3 * page)
    book_path.write_bytes(bytes(data))
    done = subprocess.run([str(Path(sys.executable).parent / "autograder"), "export", EXERCISE, "--csv",
                           str(tmp_path / "g.csv"), "--gradebook", str(book_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert "damaged" in done.stderr or "not a gradebook" in done.stderr


# --- the grader side of the wire stays bounded -----------------------------------------------------------------

def _blob(structure_json: str) -> bytes:
    header = json.dumps({"__metadata__": {"format": wire.FORMAT, "value": structure_json}}).encode()
    return struct.pack("<Q", len(header)) + header


def test_an_answer_header_of_millions_of_tiny_nodes_is_refused_before_parsing():
    many = "[" + "{}," * (wire.MAX_HEADER_NODES // 2) + "{}]"
    with pytest.raises(wire.WireError, match="too many items"):
        wire.decode(_blob(many), max_bytes=1 << 30)
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.decode(_blob('"' + "a" * (wire.MAX_HEADER_BYTES + 1) + '"'), max_bytes=1 << 30)
    with pytest.raises(wire.WireError):
        wire.decode(_blob("[" * 200_000 + "]" * 200_000), max_bytes=1 << 30)


def test_an_overlong_id_tensor_is_not_turned_into_a_list():
    with pytest.raises(StudentFailure, match="more than any sequence"):
        as_int_list(torch.zeros(1, MAX_IDS + 1, dtype=torch.int8), "greedy_decode's result")
    assert as_int_list(torch.tensor([[1, 2, 3]]), "ids") == [1, 2, 3]


def test_student_lora_settings_are_checked_before_anything_is_built():
    from types import SimpleNamespace

    hidden = load_hidden_checks("sft_lora")
    config = SimpleNamespace(hidden_size=64)
    good = {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    assert hidden.checked_lora_settings(good, config) == good
    for bad in ({**good, "r": 8_000_000}, {**good, "r": 0}, {**good, "r": "8"}, {**good, "lora_alpha": float("inf")},
                {**good, "target_modules": "(a+)+$"}, {**good, "target_modules": ["q_proj"] * 65},
                {**good, "target_modules": [".*"]}):
        with pytest.raises(StudentFailure):
            hidden.checked_lora_settings(bad, config)


def test_the_grader_process_has_a_memory_budget_of_its_own_on_top_of_its_models():
    # models of 1.5 GiB against a headroom of 0.25 GiB: a 1 GiB model loads, a 1 GiB answer's work is refused
    script = ("import os; os.environ['AUTOGRADER_GRADER_MEMORY_GIB'] = '0.25';"
              "from autograder.grading import limit_grader_memory; limit_grader_memory('cpu', int(1.5 * 2**30));"
              "import torch\n"
              "model = torch.ones(2**28)\nprint('model', model.numel())\n"
              "try:\n    torch.ones(2**28)\nexcept (MemoryError, RuntimeError) as exc:\n    print('refused', type(exc).__name__)\n"
              "print('small', float(torch.ones(1000).sum()))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert f"model {2**28}" in done.stdout, done.stdout + done.stderr
    assert "refused" in done.stdout and "small 1000.0" in done.stdout, done.stdout + done.stderr


def test_the_grader_counts_the_models_its_checks_load_at_the_profile_in_use():
    from autograder.exercise import Exercise
    from autograder.grading import Grader, GradeOptions
    from autograder.models.provision import store_for

    store = store_for("tiny")
    parameters = store.parameters()
    with Grader(Exercise("sft_lora"), GradeOptions(profile="tiny", device="cpu")) as grader:
        llama = "meta-llama/Llama-3.2-1B-Instruct"  # named by MODEL_ID; once (the LoRA check wraps its weights)
        assert grader.models_bytes() == parameters[llama] * 4 + store.weights_bytes(llama)
        grader.exercise.spec.limits.grader_model_copies = 2  # checks that keep a fresh_model beside the shared one
        assert grader.models_bytes() == parameters[llama] * 4 * 2 + store.weights_bytes(llama)
    with Grader(Exercise("t5_decoding"), GradeOptions(profile="tiny", device="cpu")) as grader:
        named = ["google-t5/t5-small", "google/flan-t5-small"]  # MODEL_ID and FLAN_MODEL_ID, once each
        assert grader.models_bytes() == sum(parameters[m] for m in named) * 4 + max(map(store.weights_bytes, named))


# --- all of it at once -----------------------------------------------------------------------------------------

def test_grade_on_a_folder_mixing_every_bad_input_grades_every_good_one(tmp_path):
    from cohort_data import personal

    folder = tmp_path / "submissions"
    (folder / "eve").mkdir(parents=True)
    good = [f"good{n:02d}" for n in range(10)]
    for sid in good:
        (folder / f"{sid}.ipynb").write_bytes(personal(GOOD, sid))
    (folder / "mallory.ipynb").symlink_to(SOLUTION)
    (folder / "eve" / "work.ipynb").symlink_to("../good00.ipynb")
    os.close(os.open(os.fsencode(folder) + b"/" + "課題.ipynb".encode("cp932"), os.O_CREAT | os.O_WRONLY))
    os.mkfifo(folder / "pipe.ipynb")
    (folder / "deep.ipynb").write_bytes(b'{"cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    with open(folder / "huge.ipynb", "wb") as huge:
        huge.truncate(65 << 20)  # sparse: over the 64 MiB cap without using the disk
    (folder / "empty.ipynb").write_bytes(b"")
    (folder / "\x1b[31mred.ipynb").write_bytes(b"not json")
    (folder / "=cmd.ipynb").write_bytes(b"{}")
    # Two Canvas users, two user numbers, one display name; the roster names that student without an lms_id.
    for number in ("222", "333"):
        (folder / f"tanakataro_{number}_9_work.ipynb").write_bytes(personal(GOOD, number))
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name\n" + "".join(f"{sid},{sid}\n" for sid in good) + "s-tanaka,Taro Tanaka\n")
    book_path = tmp_path / "book.sqlite"
    done = subprocess.run([str(Path(sys.executable).parent / "autograder"), "grade", EXERCISE, str(folder),
                           "--gradebook", str(book_path), "--jobs", "2", "--roster", str(roster)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr and "\x1b[31mred" not in done.stdout
    with Gradebook(book_path) as book:
        rows = {r.source: r for r in book.rows(EXERCISE)}
    full = {r.max_score for r in rows.values() if r.source and r.source.startswith("good")}
    assert all(rows[f"{sid}.ipynb"].status == "graded" and rows[f"{sid}.ipynb"].score in full for sid in good)
    assert len(full) == 1 and full.pop() > 0
    shared = {r.student_id: r for r in rows.values() if (r.source or "").startswith("tanakataro")}
    assert set(shared) == {"222", "333"}, rows  # never one student, never one superseding the other
    assert all(r.status == "graded" and "name_shared" in r.flags for r in shared.values())
    summary = " ".join(done.stdout.split())
    assert "222, 333" in summary and "s-tanaka" in summary and "lms_id" in summary
    assert rows[None].student_id == "s-tanaka" and rows[None].status == "missing"  # the roster's, under no file
    bad = {s: r for s, r in rows.items() if s is not None and not s.startswith(("good", "tanakataro"))}
    assert len(bad) == 9, sorted(bad)
    for source, row in bad.items():
        assert row.status == "invalid" and row.message.endswith("."), (source, row.status, row.message)
        assert not row.score
