"""What students may install holds nothing of any course's grading: the wheel and sdist of this repository, and
the student side's own small wheel."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile

from conftest import ROOT

# Nothing under these may ship: a course's hidden checks, solutions, declared answers and rubrics.
FORBIDDEN = ("hidden_checks/", "solutions/", "rubrics/", "answers.toml", "test_hidden.py", "checks.po")


def _forbidden(names: list[str]) -> list[str]:
    return [n for n in names if any(part in n for part in FORBIDDEN)]


def test_the_wheel_and_sdist_hold_no_hidden_check_solution_answers_or_rubric(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                    "build_meta.build_sdist(sys.argv[1])", str(tmp_path)], cwd=ROOT, check=True, capture_output=True)
    [wheel] = tmp_path.glob("*.whl")
    [sdist] = tmp_path.glob("*.tar.gz")
    wheel_names = zipfile.ZipFile(wheel).namelist()
    sdist_names = tarfile.open(sdist).getnames()
    assert "autograder/grading.py" in wheel_names and any(n.endswith("autograder/student.py") for n in sdist_names)
    assert _forbidden(wheel_names) == [] and _forbidden(sdist_names) == []


def test_the_student_wheel_holds_the_student_side_alone_and_pins_nothing(tmp_path):
    from autograder.build import build_student_wheel

    wheel = build_student_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if not n.startswith(wheel.name.split("-")[0])) == [
        "autograder/__init__.py", "autograder/student.py"]
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("METADATA"))
    assert "Requires-Dist" not in metadata  # nothing of Colab's torch or transformers is replaced
    # Standard library only: it imports in a bare interpreter.
    subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "from autograder import student", str(wheel)], check=True)
