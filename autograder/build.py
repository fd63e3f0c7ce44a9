"""Student notebooks from solution notebooks, with otter-grader's solution markers.

In code cells, ``# BEGIN SOLUTION`` / ``# END SOLUTION`` blocks become ``...`` and a line
ending in ``# SOLUTION`` keeps its assignment target (``x = ...``); this is otter-grader's
own ``replace_solutions``. Cells tagged ``solution`` are dropped, outputs and execution
counts are cleared, and only tags survive in cell metadata, so the student notebook is a
pure function of the solution and can be checked for drift.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
from otter.assign.solutions import replace_solutions

from .errors import UserError
from .exercise import Exercise
from .i18n import L_

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


def render_student(exercise: Exercise) -> str:
    """The student notebook's exact text, as `build` writes it."""
    path = exercise.solution_notebook
    if not path.is_file():
        raise UserError(L_("The solution notebook {path} does not exist; write it first (see `autograder new`).")
                        .format(path=str(path)))
    return nbformat.writes(student_notebook(nbformat.read(path, as_version=4))) + "\n"


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file. ``mode``: the file's
    permissions (default: an ordinary file's); a secret's file is never readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(exercise: Exercise) -> Path:
    write_atomic(exercise.student_notebook, render_student(exercise))
    return exercise.student_notebook


def in_sync(exercise: Exercise) -> bool:
    path = exercise.student_notebook
    return path.is_file() and path.read_text(encoding="utf-8") == render_student(exercise)
