"""The executors' decisions that need no cluster: how many actors fit, the GPU share, when nodes disagree, and
Ray staying optional (tests/test_ray.py drives a real cluster)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.executors.ray_cluster import Agreement, actors_that_fit, code_fingerprint, gpu_share
from autograder.exercise import Exercise
from autograder.i18n import render
from cohort_data import EXERCISE, make_course
from conftest import ROOT

AUTOGRADER = str(Path(sys.executable).parent / "autograder")
GIB = 2**30


def test_actors_fit_by_the_scarcest_resource_of_each_node():
    cpu_node = {"CPU": 16.0, "memory": 64 * GIB}
    gpu_node = {"CPU": 16.0, "memory": 128 * GIB, "GPU": 1.0}
    tiny = {"CPU": 1, "memory": 2 * GIB}
    assert actors_that_fit([cpu_node, {"CPU": 2.0, "memory": 24 * GIB}], tiny) == 16 + 2
    assert actors_that_fit([{"CPU": 8.0, "memory": 5 * GIB}], tiny) == 2  # memory is short
    share = gpu_share(16, 139.8)
    full = {"CPU": 1, "memory": 6 * GIB, "GPU": share}
    assert actors_that_fit([gpu_node, gpu_node], full) == 2 * 8  # 139.8 GiB holds 8 of 16 GiB
    assert actors_that_fit([cpu_node], full) == 0  # a CPU node takes no GPU actor


def test_the_gpu_share_covers_the_declared_need():
    assert gpu_share(16, 139.8) * 139.8 >= 16
    assert gpu_share(16, 139.8) < 16 / 139.8 + 1e-4
    assert gpu_share(200, 80) == 1.0


def test_a_node_with_other_code_or_models_stops_the_batch():
    agreement = Agreement(code="c0de", models="m0de1")
    assert agreement.check("10.0.0.5/aa", {"code": "c0de", "models": "m0de1"}) is None
    code = agreement.check("10.0.0.6/bb", {"code": "other", "models": "m0de1"})
    assert "10.0.0.6/bb" in render(code, "en") and "another version" in render(code, "en")
    models = agreement.check("10.0.0.7/cc", {"code": "c0de", "models": "stale"})
    assert "10.0.0.7/cc" in render(models, "en") and "stale" in render(models, "en")
    assert "this machine" in render(models, "en")
    # this machine has no models of the profile: the first node to answer sets them
    lacking = Agreement(code="c0de", models=None)
    assert lacking.check("n1", {"code": "c0de", "models": "m1"}) is None
    assert "n1" in render(lacking.check("n2", {"code": "c0de", "models": "m2"}), "en")


def test_the_code_fingerprint_follows_the_exercise_s_checks(tmp_path):
    course = make_course(tmp_path / "course")
    exercise = Exercise(EXERCISE, course)
    before = code_fingerprint(exercise)
    assert code_fingerprint(exercise) == before
    check = sorted((course / "hidden_checks" / EXERCISE).glob("test_*.py"))[0]
    check.write_text(check.read_text() + "\n# changed\n")
    assert code_fingerprint(exercise) != before


def test_the_model_fingerprint_follows_the_recorded_file_hashes(tmp_path, monkeypatch):
    from autograder.models.provision import store_for

    shutil.copytree(ROOT / ".cache" / "models" / "tiny", tmp_path / "models" / "tiny")
    monkeypatch.setenv("AUTOGRADER_CACHE", str(tmp_path))
    store = store_for("tiny").require()
    before = store.fingerprint()
    assert before == store_for("tiny").fingerprint()
    manifest = store.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"][sorted(data["files"])[0]] = "0" * 64  # one file built differently
    manifest.write_text(json.dumps(data))
    assert store.fingerprint() != before


@pytest.fixture
def without_ray(tmp_path):
    """An environment whose `import ray` fails, as where the extra is not installed."""
    fake = tmp_path / "no-ray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    return {**os.environ, "PYTHONPATH": str(fake.parent)}


def test_without_ray_the_cluster_option_says_how_to_install_it(tmp_path, without_ray):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "s1.ipynb").write_bytes((ROOT / "solutions" / EXERCISE / "t5_decoding.ipynb").read_bytes())
    out = subprocess.run([AUTOGRADER, "grade", EXERCISE, str(folder), "--gradebook", str(tmp_path / "g.sqlite"),
                          "--executor", "ray"], env=without_ray, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    said = " ".join((out.stdout + out.stderr).split())
    assert "needs Ray" in said and "pip install '.[ray]'" in said and "Traceback" not in said


def test_local_grading_never_imports_ray(tmp_path, without_ray):
    folder = tmp_path / "subs"
    (folder / "s1").mkdir(parents=True)
    (folder / "s1" / "report.pdf").write_bytes(b"%PDF-1.4\n")  # a row, without starting any worker
    out = subprocess.run([AUTOGRADER, "grade", EXERCISE, str(folder), "--gradebook", str(tmp_path / "g.sqlite")],
                         env=without_ray, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 students" in out.stdout
