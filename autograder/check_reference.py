"""The check author's reference, ``docs/checks.md``, written from the docstrings of what a check uses.

    python -m autograder.check_reference > docs/checks.md      # (make docs)

``tests/test_check_reference.py`` fails while the file differs from what this writes, or while a public helper of
``autograder.testing`` is missing from it, so the reference stays true as the code changes.
"""

from __future__ import annotations

import configparser
import inspect
from pathlib import Path

from . import testing, wire
from .checking import PYTEST_INI, GradingContext
from .reference import Reference
from .submission import Missing, StudentFailure, StudentRaised, Submission

# The helpers a check file imports from autograder.testing, in the order the reference presents them.
TESTING_HELPERS = ("_", "joined", "expect", "expect_equal", "expect_shape", "expect_close", "tolerance", "difference",
                   "as_int", "as_int_list", "tokenization_of", "judged_on", "Unusable", "derived_from",
                   "expect_derived", "expect_by_hand", "discriminating", "covering", "call_watching_model",
                   "expect_fed_once")


def _doc(thing: object) -> str:
    return inspect.cleandoc(inspect.getdoc(thing) or "(no description)")


def _signature(name: str, thing: object) -> str:
    """``name(arg: type = default, ...)`` as a reader writes it (the annotations are strings in this package)."""
    if isinstance(thing, property):
        return name
    try:
        signature = inspect.signature(thing)
    except (TypeError, ValueError):
        return name
    parts = []
    for p in signature.parameters.values():
        if p.name == "self":
            continue
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        if p.kind == p.KEYWORD_ONLY and not any(q.startswith("*") for q in parts):
            parts.append("*")
        parts.append(text)
    return f"{name}({', '.join(parts)})"


def _entry(name: str, thing: object) -> list[str]:
    return [f"### `{_signature(name, thing)}`", "", _doc(thing.fget if isinstance(thing, property) else thing), ""]


def _methods(cls: type) -> list[tuple[str, object]]:
    return [(n, m) for n, m in cls.__dict__.items() if not n.startswith("_") and (callable(m) or isinstance(m, property))]


def reference_text() -> str:
    lines = [
        "# Writing checks: the reference",
        "",
        "<!-- Written by `python -m autograder.check_reference` from the docstrings (`make docs`); do not edit. -->",
        "",
        "A check is a pytest test function in `assignments/<ex>/checks/test_*.py` (public) or",
        "`hidden_checks/<ex>/test_*.py` (hidden). Its name is its id in the rubric; its docstring's first paragraph is",
        "the title students read. It asks for the fixtures below, reads the student's work as data, computes what to",
        "expect from the grader's own model on inputs it chooses, and fails with a sentence for the student.",
        "",
        "## Fixtures",
        "",
        "### `submission`: the finished student process, as data",
        "",
        _doc(Submission),
        "",
    ]
    for name, method in _methods(Submission):
        lines += _entry(f"submission.{name}", method)
    lines += ["### `reference`: the grader's own models and tokenizers", "", _doc(Reference), ""]
    for name, method in _methods(Reference):
        lines += _entry(f"reference.{name}", method)
    lines += ["### `exercise`: the run's context", "", _doc(GradingContext), "",
              "Fields: " + ", ".join(f"`exercise.{f}`" for f in GradingContext.__dataclass_fields__) + ".", ""]
    lines += ["## Markers", ""]
    ini = configparser.ConfigParser()
    ini.read(PYTEST_INI)
    for marker in filter(None, (m.strip() for m in ini["pytest"]["markers"].splitlines())):
        name, _, meaning = marker.partition(":")
        lines.append(f"- `@pytest.mark.{name.strip()}`: {meaning.strip()}")
    lines += ["", "## `autograder.testing`", ""]
    for name in TESTING_HELPERS:
        lines += _entry(name, getattr(testing, name))
    lines += ["## What a failing check raises", ""]
    for cls in (StudentFailure, StudentRaised, Missing):
        lines += [f"- `{cls.__name__}`: {' '.join(_doc(cls).split())}"]
    lines += ["", "A check that raises anything else is reported as *error in the check*: a fault of the check, not "
              "the student's.", "", "## What crosses from the student process", "", _doc(wire.encode), "",
              "- Plain data: `None`, `bool`, `int`, `float` (NaN and infinities too), `str`, `list`, `tuple`, `dict`; "
              "a subclass of these (`torch.Size`, a named tuple, an `IntEnum`, a `Counter`) arrives as the plain "
              "value it holds.",
              "- Tensors and NumPy arrays (of numbers) arrive as plain CPU `torch.Tensor`s with their real storage "
              "(a subclass that lies about its shape cannot); NumPy scalars and 0-d arrays as Python numbers.",
              "- Anything else arrives as a marker the check reports with the conversion to use (`submission.value` "
              "does it for you); no method of a student object ever runs in the grader.",
              f"- Limits: nesting {wire.MAX_DEPTH} deep, {wire.MAX_ITEMS:,} items, strings of "
              f"{wire.MAX_STRING:,} characters, {wire.MAX_ELEMENTS:,} numbers in all tensors of one answer (a check "
              "may widen them to float64), a header of at most "
              f"{wire.MAX_HEADER_BYTES >> 20} MiB; an answer past them is refused with a sentence.", "",
              "## What `validate` enforces, and why", "",
              "- The solution gets full marks, twice with the same outcomes; the blank student notebook gets nothing.",
              "- Copied outputs lose: a notebook of literals copied from a run with the notebook's own parameters "
              "loses every check not marked `constant` (so grading inputs must change the answer on the model in "
              "use), and every grading parameter differs from the notebook's unless `[constant_parameters]` says "
              "why.",
              "- Each declared wrong answer loses exactly its `loses`, with a message, all in one step (the `step` "
              "markers) unless it declares the `steps` of several slips: one mistake costs once. Checks that lose "
              "only because an earlier cell stopped (`Missing`) are counted apart.",
              "- Every check is caught by some declared wrong answer: a check nobody has seen fail may never fail.",
              "- Declared correct answers (the lecture's own code among them) keep full marks.",
              "- The solution, the answers and the probes import only the course's environment (`course.toml`).",
              "- Every sentence is marked `_(...)` and translated in the exercise's catalog.", ""]
    return "\n".join(lines)


DOCS = Path(__file__).resolve().parent.parent / "docs" / "checks.md"

if __name__ == "__main__":
    print(reference_text(), end="")
