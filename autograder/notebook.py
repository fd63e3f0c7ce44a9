"""Reading submitted notebooks strictly, and papermill-style parameter injection."""

from __future__ import annotations

import ast
import hashlib
import json
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell

from .i18n import L_

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
SEED_TAG = "injected-seed"
PROBES_TAG = "injected-probes"
GRADER_CELL_TAGS = frozenset({INJECTED_TAG, SEED_TAG, PROBES_TAG})  # cells the grader adds: not the student's to count
MAX_JSON_DEPTH = 100  # a real notebook nests about 6 levels; outputs of JSON data a few more
EXERCISE_KEY = "autograder"  # notebook metadata: {"autograder": {"exercise": "<name>"}}


class InvalidNotebook(Exception):
    """The file is not a gradable notebook; its one argument, a Text, says what to do about it."""


def read_notebook(data: bytes) -> nbformat.NotebookNode:
    """Parse and validate a submission. Every failure is an InvalidNotebook with a student-readable message."""
    if not data.strip():
        raise InvalidNotebook(L_("The file is empty; submit the .ipynb file saved from Jupyter or Colab."))
    try:
        text = data.decode("utf-8")
        raw = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise InvalidNotebook(L_(
            "The file is not a notebook (not valid JSON); submit the .ipynb file itself, not a copy of its text."
        )) from None
    except RecursionError:
        raw = None
    if raw is None or _depth(raw) > MAX_JSON_DEPTH:
        raise InvalidNotebook(L_("The file's JSON is nested more than {levels} levels deep, which no notebook is; "
                                 "submit the .ipynb file saved from Jupyter or Colab.").format(levels=MAX_JSON_DEPTH))
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise InvalidNotebook(L_("The file is JSON but not a Jupyter notebook; submit the .ipynb file of the "
                                 "exercise."))
    version = raw.get("nbformat")
    if version != 4:
        raise InvalidNotebook(L_(
            "The notebook is in nbformat {version}, and only nbformat 4 is graded; "
            "open it in a current Jupyter or Colab, save it, and submit again."
        ).format(version=version))
    try:
        nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several validation error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidNotebook(L_("The notebook file is damaged ({problem}); re-download the exercise and copy your "
                                 "answers in.").format(problem=first)) from None
    return nb


def code_cells(nb: nbformat.NotebookNode) -> list[str]:
    """The notebook's own code cells, in order (cells the grader adds are left out)."""
    return [cell.source for cell in nb.cells if cell.cell_type == "code"
            and not GRADER_CELL_TAGS.intersection(cell.metadata.get("tags", []))]


def _depth(value: object) -> int:
    """How deeply JSON containers nest in value (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parameters_cell_index(nb: nbformat.NotebookNode) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return i
    raise InvalidNotebook(L_(
        "The notebook has no cell tagged 'parameters' (it was deleted or its tag removed); "
        "re-download the exercise notebook and copy your answers into it."
    ))


def parameter_names(nb: nbformat.NotebookNode) -> set[str]:
    """Names assigned in the parameters cell."""
    source = nb.cells[parameters_cell_index(nb)].source
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InvalidNotebook(L_("The 'parameters' cell is not valid Python ({problem}); restore it from the "
                                 "exercise.").format(problem=exc.msg)) from None
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def parameter_values(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The notebook's own values of its parameters (the literals its `parameters` cell assigns)."""
    tree = ast.parse(nb.cells[parameters_cell_index(nb)].source)
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = ast.literal_eval(node.value)
    return values


def inject_parameters(nb: nbformat.NotebookNode, values: dict[str, Any]) -> nbformat.NotebookNode:
    """A copy of nb with a cell after the `parameters` cell that overrides the given values."""
    index = parameters_cell_index(nb)
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # deep copy, plain types
    lines = ["# Parameters injected by the grader"] + [f"{k} = {v!r}" for k, v in values.items()]
    cell = new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    nb.cells.insert(index + 1, cell)
    return nb


def submission_seed(data: bytes) -> int:
    """The random seed of one submission: derived from its bytes, so the same file always draws the same numbers."""
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big") >> 1  # 31 bits: NumPy takes < 2**32


def inject_seed(nb: nbformat.NotebookNode, seed: int) -> nbformat.NotebookNode:
    """A copy of nb that first seeds Python's, NumPy's and PyTorch's generators (binding no names of its own).

    Student code that seeds a generator itself (``torch.manual_seed(seed)``) still controls it from there on."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    source = ("# Seeded by the grader: the same notebook always draws the same random numbers\n"
              f'__import__("random").seed({seed}); __import__("numpy").random.seed({seed}); '
              f'__import__("torch").manual_seed({seed})')
    nb.cells.insert(0, new_code_cell(source, metadata={"tags": [SEED_TAG]}))
    return nb


def inject_probes(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """A copy of nb whose last cell defines the probe functions (the harness's and the exercise's, see
    ``ExerciseSpec.probes``): after every student cell, so a student cell cannot replace them."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    nb.cells.append(new_code_cell(source, metadata={"tags": [PROBES_TAG]}))
    return nb


def exercise_of(nb: nbformat.NotebookNode) -> str | None:
    meta = nb.metadata.get(EXERCISE_KEY, {})
    return meta.get("exercise") if isinstance(meta, dict) else None
