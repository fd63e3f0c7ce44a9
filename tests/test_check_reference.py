"""docs/checks.md, the check author's reference, is what its generator writes from the docstrings now, and it
lists every public helper of autograder.testing, every fixture method and every marker."""

from __future__ import annotations

import ast
import inspect

from autograder import testing
from autograder.check_reference import DOCS, TESTING_HELPERS, reference_text
from autograder.reference import Reference
from autograder.submission import Submission
from conftest import ROOT


def test_the_reference_is_what_the_docstrings_say_now():
    assert DOCS.read_text(encoding="utf-8") == reference_text(), "run `make docs` and commit docs/checks.md"


def test_every_public_helper_fixture_method_and_marker_is_listed():
    tree = ast.parse(inspect.getsource(testing))
    public = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")}
    assert public <= set(TESTING_HELPERS), sorted(public - set(TESTING_HELPERS))
    text = DOCS.read_text(encoding="utf-8")
    for name in TESTING_HELPERS:
        assert f"### `{name}(" in text, name
    for fixture, cls in (("submission", Submission), ("reference", Reference)):
        for name in (n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))):
            assert f"`{fixture}.{name}" in text, (fixture, name)
    markers = (ROOT / "autograder" / "pytest.ini").read_text()
    for marker in ("cuda", "constant", "step"):
        assert marker in markers and f"`@pytest.mark.{marker}" in text
