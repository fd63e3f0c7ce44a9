"""Where the course lives on disk: exercises, solutions, rubrics, caches."""

from __future__ import annotations

import os
from pathlib import Path


def course_dir() -> Path:
    """The folder holding assignments/, solutions/, rubrics/ (the repository root by default)."""
    env = os.environ.get("AUTOGRADER_COURSE_DIR")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Generated, never committed artefacts: model stand-ins, datasets."""
    env = os.environ.get("AUTOGRADER_CACHE")
    return Path(env).resolve() if env else course_dir() / ".cache"


def checks_dir(exercise: str) -> Path:
    """Hidden checks of one exercise (they ship with the grader, never with the student)."""
    return Path(__file__).resolve().parent / "checks" / exercise
