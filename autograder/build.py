"""Student notebooks from solution notebooks, with otter-grader's solution markers.

In code cells, ``# BEGIN SOLUTION`` / ``# END SOLUTION`` blocks become ``...`` and a line
ending in ``# SOLUTION`` keeps its assignment target (``x = ...``); this is otter-grader's
own ``replace_solutions``. Cells tagged ``solution`` are dropped, outputs and execution
counts are cleared, and only tags survive in cell metadata; after the first cell, a note lists the
steps only hidden checks judge. The student notebook is a pure function of the solution and the
checks, and can be checked for drift.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from otter.assign.solutions import replace_solutions

from .errors import UserError
from .exercise import Exercise
from .i18n import L_
from .paths import write_atomic

SOLUTION_ONLY_TAG = "solution"


def student_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    student = nbformat.v4.new_notebook(metadata=solution.metadata)
    for cell in solution.cells:
        tags = list(cell.metadata.get("tags", []))
        if SOLUTION_ONLY_TAG in tags:
            continue
        metadata = {"tags": tags} if tags else {}
        if cell.cell_type == "code":
            try:
                source = "\n".join(replace_solutions(cell.source.split("\n"), "python"))
            except AssertionError as exc:  # otter reports unbalanced markers this way
                raise UserError(L_("Unbalanced solution markers in cell {cell}: {problem}; fix the solution "
                                   "notebook.").format(cell=str(cell.get("id")), problem=str(exc))) from None
            new = nbformat.v4.new_code_cell(source, metadata=metadata)
        else:
            new = nbformat.v4.new_markdown_cell(cell.source, metadata=metadata) if cell.cell_type == "markdown" \
                else nbformat.v4.new_raw_cell(cell.source, metadata=metadata)
        new.id = cell.get("id", new.id)
        student.cells.append(new)
    return student


HIDDEN_ONLY_CELL = "hidden-only-steps"


def hidden_only_cell(exercise: Exercise) -> nbformat.NotebookNode | None:
    """A note for the student, after the notebook's first cell: the steps only hidden checks judge, which the
    public checks they run before submitting say nothing about (None when every step has a public check)."""
    from .checking import hidden_only_steps

    steps = hidden_only_steps(exercise)
    if not steps:
        return None
    lines = ["**公開チェックのないステップ / Steps only the hidden checks judge.** "
             "`check()` や `autograder check` の公開チェックに合格しても、次のステップは採点のときに初めて確かめられます。"
             " Passing the public checks says nothing about these steps: they are judged when your work is graded.", ""]
    for step in steps:
        for japanese, english in zip(step["ja"], step["en"]):
            lines.append(f"- {english}" if japanese == english else f"- {japanese} / {english}")
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.id = HIDDEN_ONLY_CELL
    return cell


def render_student(exercise: Exercise) -> str:
    """The student notebook's exact text, as `build` writes it."""
    path = exercise.solution_notebook
    if not path.is_file():
        raise UserError(L_("The solution notebook {path} does not exist; write it first (see `autograder new`).")
                        .format(path=str(path)))
    student = student_notebook(nbformat.read(path, as_version=4))
    note = hidden_only_cell(exercise)
    if note is not None:
        student.cells.insert(1, note)
    return nbformat.writes(student) + "\n"


def build(exercise: Exercise) -> Path:
    write_atomic(exercise.student_notebook, render_student(exercise))
    return exercise.student_notebook


def in_sync(exercise: Exercise) -> bool:
    path = exercise.student_notebook
    return path.is_file() and path.read_text(encoding="utf-8") == render_student(exercise)


STUDENT_DISTRIBUTION = "llm-course-student"
STUDENT_FILES = ("__init__.py", "student.py")  # what a student installs: no checks, no pins


def build_student_wheel(out_dir: Path) -> Path:
    """The small wheel students install in Colab to check and submit from their notebook: ``autograder/__init__.py``
    and ``autograder/student.py`` of this package (standard library only), no dependencies, so nothing of Colab's
    torch or transformers is replaced. Built with setuptools; returns the wheel's path."""
    from importlib.metadata import version

    package = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory(prefix="autograder-student-") as work:
        project = Path(work)
        (project / "autograder").mkdir()
        for name in STUDENT_FILES:
            shutil.copy(package / name, project / "autograder" / name)
        (project / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{STUDENT_DISTRIBUTION}"\nversion = "{version("llm-course-autograder")}"\n'
            'description = "Check and submit an LLM-course notebook from inside it (Colab, Jupyter)."\n'
            'requires-python = ">=3.9"\ndependencies = []\n\n[tool.setuptools]\npackages = ["autograder"]\n')
        out_dir.mkdir(parents=True, exist_ok=True)
        built = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                                "print(build_meta.build_wheel(sys.argv[1]))", str(out_dir)],
                               cwd=project, capture_output=True, text=True)
        if built.returncode != 0:
            raise UserError(L_("The student wheel could not be built ({problem}).").format(
                problem=built.stderr.strip().splitlines()[-1] if built.stderr.strip() else built.returncode))
    return out_dir / built.stdout.strip().splitlines()[-1]
