"""`autograder new NAME`: a complete, valid exercise to start from."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from pydantic import ValidationError

from .build import build, write_atomic
from .course import SETTINGS_FILE, CourseSettings, settings_text
from .errors import UserError
from .exercise import Exercise
from .i18n import CHECKS_DOMAIN, L_, Language, catalog_path
from .paths import COURSE_SETTING, checks_dir, course_dir

EXERCISE_TOML = '''title = "{name}"
notebook = "{name}.ipynb"

[limits]
cell_timeout = 60
notebook_timeout = 300

# Values the grader writes into the `parameters` cell (besides DEVICE and DTYPE).
[grading_parameters]
N = 7
'''

PUBLIC_CHECKS = '''"""Public checks of {name}: students run them with `autograder check`; they count in grading too."""

import pytest

from autograder.testing import expect_shape


# Checks of one step of the exercise share a step: validate proves that one wrong answer costs one step only.
@pytest.mark.step("squares")
def test_squares_shape(submission, exercise):
    """`squares` holds one value per number below N."""
    expect_shape(submission.tensor("squares"), (exercise.parameters["N"],), "`squares`")
'''

HIDDEN_CHECKS = '''"""Hidden checks of {name}: expected values are computed here, never copied from the solution."""

import pytest
import torch

from autograder.testing import _, expect, expect_close


@pytest.mark.step("squares")
def test_squares_values(submission, exercise):
    """`squares` holds 0², 1², ..., (N-1)²."""
    expected = torch.arange(exercise.parameters["N"]) ** 2
    expect(submission.tensor("squares").tolist() == expected.tolist(), _("`squares` should hold k**2 for k below N."))


@pytest.mark.parametrize("factor", [0.5, -2.0, 3.0])
def test_scale_on_hidden_inputs(submission, factor):
    """`scale(values, factor)` multiplies every value (called on inputs the grader chooses)."""
    values = torch.linspace(-1, 1, 5)
    expect_close(submission.call("scale", values, factor), values * factor, f"scale(values, {{factor}})")
'''

# The Japanese of the check sentences and titles above; `autograder catalog NAME` adds new ones to translate.
CATALOG_JA = '''msgid "`squares` holds one value per number below N."
msgstr "`squares` が N 未満の数 1 つにつき値を 1 つ持っている。"

msgid "`squares` holds 0², 1², ..., (N-1)²."
msgstr "`squares` が 0², 1², ..., (N-1)² を持っている。"

msgid "`squares` should hold k**2 for k below N."
msgstr "`squares` には N 未満の k について k**2 を入れてください。"

msgid "`scale(values, factor)` multiplies every value (called on inputs the grader chooses)."
msgstr "`scale(values, factor)` がすべての値を掛け算している（採点側が選んだ入力で呼び出す）。"
'''

RUBRIC = '''# Points per check id (test function name); see README "Writing an exercise".
[checks.test_squares_shape]
points = 1

[checks.test_squares_values]
points = 1
visibility = "after_due_date"

[checks.test_scale_on_hidden_inputs]
points = 3
visibility = "after_due_date"
partial = true
'''


ANSWERS = """# Answers students write, graded by `autograder validate`: each wrong one must lose exactly the checks in `loses`
# (and every check must be caught by at least one), each correct one must keep full marks.

[[wrong]]
name = "squares counted from 1"
loses = ["test_squares_values"]
[[wrong.edit]]
old = "squares = torch.arange(N) ** 2  # SOLUTION"
new = "squares = torch.arange(1, N + 1) ** 2  # SOLUTION"

[[wrong]]
name = "N written as the number the notebook shows"
loses = ["test_squares_shape", "test_squares_values"]
[[wrong.edit]]
old = "squares = torch.arange(N) ** 2  # SOLUTION"
new = "squares = torch.arange(5) ** 2  # SOLUTION"

[[wrong]]
name = "scale adds the factor"
loses = ["test_scale_on_hidden_inputs"]
[[wrong.edit]]
old = "    return values * factor"
new = "    return values + factor"

[[correct]]
name = "squares as a product"
[[correct.edit]]
old = "squares = torch.arange(N) ** 2  # SOLUTION"
new = "squares = torch.arange(N) * torch.arange(N)  # SOLUTION"
"""


def _solution_notebook(name: str) -> nbformat.NotebookNode:
    v4 = nbformat.v4
    nb = v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "autograder": {"exercise": name},
    })
    cells = [
        v4.new_markdown_cell(f"# {name}\n\n課題の説明 / Describe the exercise here. Replace every `...` with your code."),
        v4.new_code_cell('# parameters\nDEVICE = "cpu"\nDTYPE = "float32"\nN = 5', metadata={"tags": ["parameters"]}),
        v4.new_code_cell("import torch\n\nsquares = torch.arange(N) ** 2  # SOLUTION\nprint(squares)"),
        v4.new_code_cell(
            "def scale(values, factor):\n    # BEGIN SOLUTION\n    return values * factor\n    # END SOLUTION\n\n\n"
            "print(scale(torch.ones(3), 2.0))"
        ),
    ]
    for i, cell in enumerate(cells):
        cell.id = f"{name[:20]}-{i:02d}"
    nb.cells = cells
    return nb


def scaffold(name: str, language: Language | None = None, time_zone: str = "UTC") -> list[Path]:
    """The files of a new exercise; a course folder named by --course or $AUTOGRADER_COURSE_DIR that does not exist
    yet is started with them (the folder, and a course.toml with ``language`` and ``time_zone``)."""
    if not name.isidentifier():
        raise UserError(L_("'{name}' is not a valid exercise name; use letters, digits and underscores.").format(
            name=name))
    try:  # one sentence for a time zone that does not exist, before anything is written
        CourseSettings(language=language, time_zone=time_zone)
    except ValidationError as exc:
        raise UserError(L_("{problem}; pass --time-zone with a zone's name.").format(
            problem=exc.errors()[0]["msg"].removeprefix("Value error, "))) from None
    started = os.environ.get(COURSE_SETTING)
    if started and not Path(started).exists():
        Path(started).mkdir(parents=True)
    root = course_dir()
    settings = root / SETTINGS_FILE
    course_files = {settings: settings_text(language, time_zone)} if not settings.exists() else {}
    files = {
        root / "assignments" / name / "exercise.toml": EXERCISE_TOML.format(name=name),
        root / "assignments" / name / "checks" / "test_public.py": PUBLIC_CHECKS.format(name=name),
        checks_dir(name, root) / "test_hidden.py": HIDDEN_CHECKS.format(name=name),
        catalog_path(checks_dir(name, root) / "locales", "ja", CHECKS_DOMAIN): CATALOG_JA,
        root / "rubrics" / f"{name}.toml": RUBRIC,
        root / "solutions" / name / f"{name}.ipynb": nbformat.writes(_solution_notebook(name)) + "\n",
        root / "solutions" / name / "answers.toml": ANSWERS,
    }
    existing = [str(p) for p in files if p.exists()]
    if existing:
        raise UserError(L_("Exercise '{name}' already exists ({path}); pick another name or edit it.").format(
            name=name, path=str(existing[0])))
    for path, text in {**course_files, **files}.items():
        write_atomic(path, text)
    return [*course_files, *files, build(Exercise(name))]
