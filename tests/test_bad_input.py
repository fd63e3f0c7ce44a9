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
        assert result.score == 0 and result.max_score == 17  # the CUDA-only check is "not run" on CPU
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


def test_an_import_outside_the_course_environment_is_one_sentence_and_costs_only_its_cell():
    """The student process has exactly the course's packages: a module the course does not provide is refused,
    whether or not this machine has it (pytest is installed here, for the grader), in a sentence naming the module
    and what the course provides; the checks of the other cells still judge their steps."""
    from autograder.results import CellDiagnostic
    from conftest import with_cells_appended

    grader = Grader(Exercise("t5_decoding"))
    data = with_cells_appended(SOLUTION, "import seaborn", "import pytest", "import sklearn.decomposition, scipy, json")
    result = grader.grade_bytes(data, "imports")
    assert result.status == "graded" and result.score == result.max_score
    problems = result.diagnostics.problem_cells
    assert [p.number for p in problems] == [10, 11]  # the last cell, of course packages and the standard library, ran
    english = [p.sentence("en") for p in problems]
    assert "the course's environment has no module `seaborn`" in english[0] and "scikit-learn" in english[0]
    assert "no module `pytest`" in english[1]
    assert "`seaborn`" in CellDiagnostic.model_validate(problems[0].model_dump()).sentence("ja")
    assert "コースの環境" in problems[0].sentence("ja")


def test_validate_refuses_an_import_outside_the_course_environment(course_copy):
    """validate's static check: the solution and every declared answer import only what course.toml declares."""
    from autograder.course import course_settings
    from autograder.validation import code_of, imports_outside

    environment = course_settings(course_copy).environment
    solution = (course_copy / "solutions" / "t5_decoding" / "t5_decoding.ipynb").read_bytes()
    assert imports_outside(environment, "the solution", code_of(solution)) == []
    problems = imports_outside(environment, "answer 'x'", ["import json\nfrom seaborn import heatmap\n%pip install x"])
    assert len(problems) == 1 and "answer 'x' imports seaborn" in problems[0] and "scikit-learn" in problems[0]
    (course_copy / "course.toml").write_text('[environment]\npackages = ["torch", "no-such-package-here"]\n')
    settings = course_settings(course_copy)
    assert settings.environment.missing_packages() == ["no-such-package-here"]
    (course_copy / "course.toml").write_text("[environment]\npackages = 3\n")
    with pytest.raises(UserError, match="not a valid course file"):
        course_settings(course_copy)
