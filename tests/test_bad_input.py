"""Broken submissions end as a result row with a clear message; user mistakes end in one sentence and exit 2."""

from __future__ import annotations

import json

import nbformat
import pytest
from typer.testing import CliRunner

from autograder.cli import app
from autograder.errors import UserError
from autograder.exercise import Exercise
from autograder.grading import Grader
from autograder.notebook import InvalidNotebook, read_notebook
from conftest import solution_path

SOLUTION = solution_path("t5_decoding")


def _no_parameters_tag() -> bytes:
    nb = nbformat.read(SOLUTION, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("tags", None)
    return nbformat.writes(nb).encode()


def _nbformat3() -> bytes:
    return json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": []}]}).encode()


BROKEN = {
    "not JSON": (b"print('hello')\n", "not valid JSON"),
    "empty file": (b"", "empty"),
    "nbformat 3": (_nbformat3(), "nbformat 3"),
    "JSON but not a notebook": (b'{"name": "Alice"}', "not a Jupyter notebook"),
    "no parameters cell": (_no_parameters_tag(), "no cell tagged 'parameters'"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_notebook_is_rejected_with_a_clear_message(case):
    data, phrase = BROKEN[case]
    with pytest.raises(InvalidNotebook, match=phrase):
        if case == "no parameters cell":
            from autograder.notebook import parameter_names

            parameter_names(read_notebook(data))
        else:
            read_notebook(data)


def test_every_broken_submission_gets_a_row_and_the_grader_keeps_going():
    grader = Grader(Exercise("t5_decoding"))
    for case, (data, phrase) in BROKEN.items():
        result = grader.grade_bytes(data, case)
        assert result.status == "invalid", case
        assert phrase in result.message, case
        assert result.score == 0 and result.max_score == 16  # the CUDA-only check is "not run" on CPU
        assert {c.outcome for c in result.checks} == {"failed", "not_run"}
        assert all(c.message == result.message for c in result.checks if c.outcome == "failed")
        assert json.dumps(result.gradescope())  # exportable like any other row


runner = CliRunner()


def _cli(*args: str):
    return runner.invoke(app, list(args))


def test_cli_unknown_exercise(tmp_path):
    result = _cli("run", "no_such_exercise", str(SOLUTION))
    assert result.exit_code == 2
    assert "Unknown exercise 'no_such_exercise'" in result.output and "t5_decoding" in result.output


def test_cli_wrong_path_writes_nothing(tmp_path):
    out = tmp_path / "results.json"
    result = _cli("run", "t5_decoding", str(tmp_path / "missing.ipynb"), "--json", str(out))
    assert result.exit_code == 2 and "No submission at" in result.output
    assert not out.exists()


def test_cli_missing_model_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_CACHE", str(tmp_path / "empty-cache"))
    result = _cli("run", "t5_decoding", str(SOLUTION))
    assert result.exit_code == 2
    assert "autograder models prepare --profile tiny" in result.output


def test_cli_unknown_profile():
    result = _cli("run", "t5_decoding", str(SOLUTION), "--profile", "huge")
    assert result.exit_code == 2 and "Unknown model profile 'huge'" in result.output


def test_rubric_typo_is_named(course_copy):
    rubric = course_copy / "rubrics" / "t5_decoding.toml"
    rubric.write_text(rubric.read_text().replace("[checks.test_translation]", "[checks.test_translaton]"))
    with pytest.raises(UserError, match="names checks that do not exist: test_translaton"):
        Grader(Exercise("t5_decoding"))
    result = _cli("validate", "t5_decoding")
    assert result.exit_code == 2 and "test_translaton" in result.output


def test_rubric_syntax_error(course_copy):
    (course_copy / "rubrics" / "t5_decoding.toml").write_text("[checks.test_translation\npoints = 1\n")
    result = _cli("validate", "t5_decoding")
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_validate_catches_a_student_notebook_out_of_sync(course_copy):
    from autograder.build import in_sync

    student = course_copy / "assignments" / "t5_decoding" / "t5_decoding.ipynb"
    student.write_text(student.read_text().replace("Replace every", "Please replace every"))
    assert not in_sync(Exercise("t5_decoding"))
