"""Assertions for check authors: each failure is a sentence a student can act on, in the course's languages.

Write a check's sentences with ``_("...")`` (fields as ``{name}``, filled with ``.format(name=...)``, never an
f-string): ``autograder catalog EXERCISE`` collects them, with each check's title, into the exercise's catalog
for translating, and ``autograder validate`` reports a sentence that is not marked or not translated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .i18n import CHECKS_DOMAIN, L_, Text, joined  # noqa: F401 - joined is for check files too
from .source import OPAQUE
from .submission import StudentFailure

Message = Text | str  # a str is shown as written, in every language


def _(message: str) -> Text:
    """A check file's sentence, translated from the exercise's catalog."""
    return Text(message, CHECKS_DOMAIN)

# (rtol, atol) per dtype: half precision on a GPU differs from a float32 reference far more
# than float32 runs differ from each other.
TOLERANCES = {
    torch.float64: (1e-6, 1e-8),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (3e-2, 3e-2),
}


def tolerance(*dtypes: torch.dtype) -> tuple[float, float]:
    """The loosest tolerance among the dtypes involved."""
    pairs = [TOLERANCES.get(d, TOLERANCES[torch.float32]) for d in dtypes]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def expect(condition: bool, message: Message) -> None:
    if not condition:
        raise StudentFailure(message)


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: Message, hint: Message = "") -> None:
    actual = tuple(tensor.shape)
    if actual != tuple(shape):
        raise StudentFailure(joined(L_("{what} has shape {actual}, expected {expected}.").format(
            what=what, actual=actual, expected=tuple(shape)), hint))


def expect_close(actual: Any, expected: torch.Tensor, what: Message, hint: Message = "") -> None:
    """Same shape, finite, and equal within the tolerance of the dtypes involved."""
    if not isinstance(actual, torch.Tensor):
        raise StudentFailure(L_("{what} should be a tensor, but it is a {type}.").format(
            what=what, type=type(actual).__name__))
    expect_shape(actual, tuple(expected.shape), what, hint)
    if not actual.is_floating_point():
        raise StudentFailure(L_("{what} holds {dtype} values, expected floating-point values.").format(
            what=what, dtype=actual.dtype))
    if not torch.isfinite(actual).all():
        raise StudentFailure(L_("{what} contains NaN or infinite values.").format(what=what))
    rtol, atol = tolerance(actual.dtype, expected.dtype)
    a, e = actual.double(), expected.to("cpu").double()
    if not torch.allclose(a, e, rtol=rtol, atol=atol):
        worst = (a - e).abs().max().item()
        raise StudentFailure(joined(L_("{what} differs from the expected values (largest difference {worst}, "
                                       "tolerance {atol} + {rtol}·|expected|).").format(
            what=what, worst=f"{worst:.3g}", atol=f"{atol:g}", rtol=f"{rtol:g}"), hint))


MAX_IDS = 100_000  # far longer than any token sequence of the course; a longer one is not turned into a list


def as_int_list(value: Any, what: Message) -> list[int]:
    """A token-id sequence sent as a list or a 1-D / (1, n) tensor, as plain ints."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.dim() > 2 or (value.dim() == 2 and value.shape[0] != 1):
            raise StudentFailure(L_("{what} should be a 1-D sequence of token ids, got a tensor of shape {shape} "
                                    "and dtype {dtype}.").format(what=what, shape=tuple(value.shape), dtype=value.dtype))
        if value.numel() > MAX_IDS:
            raise StudentFailure(L_("{what} holds {count} token ids, more than any sequence of this exercise "
                                    "({limit}); return only the ids of the text asked for.").format(
                what=what, count=f"{value.numel():,}", limit=f"{MAX_IDS:,}"))
        return [int(x) for x in value.reshape(-1).tolist()]
    if isinstance(value, (list, tuple)) and all(type(x) is int for x in value):
        return list(value)
    raise StudentFailure(L_("{what} should be a list of token ids (ints), got {type}.").format(
        what=what, type=type(value).__name__))


def tokenization_of(tokenizer: Any, text: str, got: Any) -> list[int]:
    """The ids a student's later steps should be judged on: their own ids when those tokenize ``text`` (with or
    without the special tokens the tokenizer adds), else the tokenizer's own tokenization of ``text``.

    So one slip in tokenizing costs the tokenizing check, not every step after it, while ids of another text
    (a copy of the notebook's own prompt) are never accepted."""
    accepted = [tokenizer(text).input_ids, tokenizer(text, add_special_tokens=False).input_ids]
    try:
        ids = as_int_list(got, "the ids")
    except StudentFailure:
        return accepted[0]
    return ids if ids in accepted else accepted[0]


def expect_by_hand(submission: Any, name: str, *, without: Iterable[str] = (), using: Iterable[str] = (),
                   hint: Message = "") -> None:
    """Where the exercise says "by hand": ``name``'s definition in the notebook (and the notebook functions and
    variables it reaches) never mentions a word of ``without`` (a library call, a variable it must not be copied
    from) and mentions every word of ``using``. Judged from the cell sources the grader ran, not by asking the
    student process."""
    found = submission.words_of(name)
    if found is None:
        raise StudentFailure(joined(L_("The grader finds no definition of `{name}` in your cells: write it in the "
                                       "notebook (not through exec or an import) and run its cell.").format(name=name),
                                    hint))
    words, names = found
    opaque = sorted(names & OPAQUE)
    if opaque:
        raise StudentFailure(joined(L_("`{name}` uses {calls}, so the grader cannot see how it is computed; write the "
                                       "steps out.").format(name=name, calls=", ".join(opaque)), hint))
    used = sorted(set(without) & words)
    if used:
        raise StudentFailure(joined(L_("`{name}` uses {words}, but this step is to be done by hand.").format(
            name=name, words=", ".join(f"`{w}`" for w in used)), hint))
    missing = sorted(set(using) - words)
    if missing:
        raise StudentFailure(joined(L_("`{name}` does not use {words}, which this step is built from.").format(
            name=name, words=", ".join(f"`{w}`" for w in missing)), hint))
