"""Shared helpers for the harness's own tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    import torch

    for item in items:
        if "slow" in item.keywords and not config.getoption("--run-slow"):
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow (make test-slow)"))
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def solution_path(exercise: str) -> Path:
    return ROOT / "solutions" / exercise / f"{exercise}.ipynb"


def student_path(exercise: str) -> Path:
    return ROOT / "assignments" / exercise / f"{exercise}.ipynb"


def mutate(path: Path, *edits: tuple[str, str]) -> bytes:
    """A notebook's bytes with each `old` replaced by `new` in code cells (validate's own `apply_edits`; an `old` no
    code cell has is an error: the test no longer matches the notebook)."""
    from autograder.answers import Edit, apply_edits

    return apply_edits(nbformat.read(path, as_version=4), [Edit(old=old, new=new) for old, new in edits], path.name)


def wrong_answers(exercise: str) -> dict[str, tuple[list[tuple[str, str]], set[str]]]:
    """An exercise's declared wrong answers (solutions/<ex>/answers.toml) as {name: ((old, new) edits, checks lost)},
    for tests that build submissions from them with `mutate`."""
    from autograder.answers import load_answers

    answers = load_answers(ROOT / "solutions" / exercise / "answers.toml")
    return {a.name: ([(e.old, e.new) for e in a.edit if e.old is not None], set(a.loses)) for a in answers.wrong}


def with_cells_appended(path: Path, *sources: str) -> bytes:
    """A notebook's bytes with extra code cells at the end (e.g. hostile or overriding code)."""
    nb = nbformat.read(path, as_version=4)
    for source in sources:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    return nbformat.writes(nb).encode()


def load_hidden_checks(exercise: str):
    """An exercise's hidden check module, to test the inputs it chooses without grading anything."""
    import importlib.util

    from autograder.paths import checks_dir

    spec = importlib.util.spec_from_file_location(f"{exercise}_hidden", checks_dir(exercise) / "test_hidden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def failed_checks(result) -> set[str]:
    return {c.id for c in result.checks if c.outcome in ("failed", "error")}


def points_lost(result) -> dict[str, float]:
    return {c.id: c.max_points - c.points for c in result.checks if c.outcome != "not_run" and c.points < c.max_points}


def to_json(result) -> str:
    return json.dumps(result.gradescope(), indent=2)


def copy_hidden_checks(exercise: str, course: Path) -> None:
    """The bundled hidden checks of `exercise` into another course folder, where that course keeps them."""
    shutil.copytree(ROOT / "hidden_checks" / exercise, course / "hidden_checks" / exercise,
                    ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    """A copy of the course folder the test may break (the real one stays intact)."""
    for part in ("assignments", "solutions", "rubrics"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copy(ROOT / "course.toml", tmp_path / "course.toml")
    for exercise in (ROOT / "assignments").iterdir():  # a course folder keeps its hidden checks in hidden_checks/
        copy_hidden_checks(exercise.name, tmp_path)
    monkeypatch.setenv("AUTOGRADER_COURSE_DIR", str(tmp_path))
    monkeypatch.setenv("AUTOGRADER_CACHE", str(ROOT / ".cache"))
    return tmp_path
