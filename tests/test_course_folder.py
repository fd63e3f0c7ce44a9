"""A course of one's own, as an instructor has it: the tool installed from its wheel into a fresh virtual
environment outside this repository, the course in a folder of its own, every command reading and writing there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(autograder command, its site-packages) of a wheel built from this checkout, in a fresh environment.

    The environment borrows this one's third-party packages through a .pth line (nothing is downloaded),
    but not this checkout: `autograder` comes from the wheel alone."""
    base = Path(tempfile.mkdtemp(prefix="autograder-course-"))
    base.chmod(0o755)  # the sandbox's unprivileged user must reach the environment and the course
    source = base / "source"
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "autograder"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                           if (ROOT / part).is_dir() else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(base / "dist"), str(source)], check=True, cwd=base)
    [wheel] = (base / "dist").glob("*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
                   check=True)
    yield venv / "bin" / "autograder", site, base
    shutil.rmtree(base, ignore_errors=True)


def test_new_build_validate_run_grade_in_a_course_folder_of_ones_own(installed):
    autograder, site, base = installed
    course = base / "my-course"
    course.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("AUTOGRADER_COURSE_DIR", "PYTHONPATH")}
    env["AUTOGRADER_CACHE"] = str(ROOT / ".cache")  # the prepared model stand-ins

    def run(*args: str, expect: int = 0) -> str:
        done = subprocess.run([str(autograder), *args], cwd=base, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == expect, (args, done.stdout[-3000:], done.stderr[-3000:])
        return done.stdout + done.stderr

    # Without a course the installed tool names what it needs instead of using site-packages.
    assert "No course folder" in run("new", "stray", expect=2)
    run("--course", str(course), "new", "squares_course")
    assert (course / "hidden_checks" / "squares_course" / "test_hidden.py").is_file()
    assert {p.name for p in course.iterdir()} == {"assignments", "solutions", "rubrics", "hidden_checks", "course.toml"}
    assert not list((site / "autograder").rglob("test_hidden.py"))  # nothing written into the installed package
    # Edit: a grading value of the exercise and the solution's comment, then regenerate the student notebook.
    spec = course / "assignments" / "squares_course" / "exercise.toml"
    spec.write_text(spec.read_text().replace("N = 7", "N = 9"))
    solution = course / "solutions" / "squares_course" / "squares_course.ipynb"
    nb = nbformat.read(solution, as_version=4)
    nb.cells[0].source += "\n\nSquares of the numbers below N."
    nbformat.write(nb, solution)
    run("--course", str(course), "build", "squares_course")
    assert "✓ squares_course" in run("--course", str(course), "validate", "squares_course")
    out = run("--course", str(course), "run", "squares_course", str(solution))
    assert "5 / 5" in out
    submissions = base / "submissions"
    submissions.mkdir()
    shutil.copy(solution, submissions / "alice.ipynb")
    shutil.copy(course / "assignments" / "squares_course" / "squares_course.ipynb", submissions / "bob.ipynb")
    out = run("--course", str(course), "grade", "squares_course", str(submissions), "--gradebook",
              str(base / "book.sqlite"), "--jobs", "1")
    assert "graded" in out and "max 5" in out
    assert not any((site / "autograder").rglob("squares_course*"))  # nothing of the course in the package
