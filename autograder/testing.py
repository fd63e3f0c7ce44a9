"""Assertions for check authors: each failure is a sentence a student can act on, in the course's languages.

Write a check's sentences with ``_("...")`` (fields as ``{name}``, filled with ``.format(name=...)``, never an
f-string): ``autograder catalog EXERCISE`` collects them, with each check's title, into the exercise's catalog
for translating, and ``autograder validate`` reports a sentence that is not marked or not translated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch

from .i18n import CHECKS_DOMAIN, L_, Text, joined  # noqa: F401 - joined is for check files too
from .source import OPAQUE
from .submission import StudentFailure, StudentRaised

Message = Text | str  # a str is shown as written, in every language
T = TypeVar("T")


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
    """Fail the check with ``message`` (a sentence for the student, ``_("...")``) unless ``condition`` holds."""
    if not condition:
        raise StudentFailure(message)


def expect_shape(tensor: torch.Tensor, shape: tuple[int, ...], what: Message, hint: Message = "") -> None:
    """``tensor`` has exactly ``shape``; the message names ``what`` (e.g. "`embeddings`"), both shapes and the
    ``hint``."""
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


WINDOW = 24  # characters (or items) shown on each side of the first difference


def _excerpt(text: str, at: int) -> str:
    """``text`` around position ``at``, as Python writes it, with … where it was cut."""
    start, end = max(0, at - WINDOW), at + WINDOW
    return ("…" if start else "") + repr(text[start:end]) + ("…" if end < len(text) else "")


def difference(got: Any, expected: Any) -> Text | str:
    """Where two values first differ, with both sides shown around that place (not their first N characters, which
    may end before it): strings by character, sequences by item, tensors by their largest difference."""
    if isinstance(got, str) and isinstance(expected, str):
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        if at == len(got) == len(expected):
            return ""
        return L_("first difference at character {at} of {n_got} (expected {n_expected} characters): {got} "
                  "where {expected} is expected").format(at=at, n_got=len(got), n_expected=len(expected),
                                                         got=_excerpt(got, at), expected=_excerpt(expected, at))
    if isinstance(got, torch.Tensor) and isinstance(expected, torch.Tensor) and got.shape == expected.shape \
            and got.numel():
        gap = (got.double() - expected.to(got.device).double()).abs()
        where = tuple(int(i) for i in torch.unravel_index(gap.argmax(), gap.shape))
        return L_("the largest difference is at index {index}: {got} where {expected} is expected").format(
            index=list(where), got=f"{got[where].item():.6g}", expected=f"{expected[where].item():.6g}")
    if isinstance(got, (list, tuple)) and isinstance(expected, (list, tuple)):
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if not _same(a, b)), min(len(got), len(expected)))
        if at == len(got) == len(expected):
            return ""
        shown = slice(max(0, at - 3), at + 4)
        return L_("first difference at item {at} of {n_got} (expected {n_expected} items): {got} where {expected} "
                  "is expected").format(at=at, n_got=len(got), n_expected=len(expected),
                                        got=_items(got, shown), expected=_items(expected, shown))
    return L_("{got} where {expected} is expected").format(got=_short(got), expected=_short(expected))


def _items(values: Sequence, shown: slice) -> str:
    body = ", ".join(_short(v) for v in values[shown])
    return ("[…, " if shown.start else "[") + body + (", …]" if shown.stop < len(values) else "]")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 3 * WINDOW else text[: 3 * WINDOW] + "…"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
            torch.equal(a.cpu(), b.cpu()))
    return type(a) is type(b) and a == b if not isinstance(a, (list, tuple)) else (
        isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b)))


def expect_equal(got: Any, expected: Any, what: Message, hint: Message = "") -> None:
    """``got`` is exactly ``expected`` (strings, numbers, lists, dicts; same types); otherwise the message shows both
    around their first difference."""
    if _same(got, expected) if isinstance(expected, (list, tuple, torch.Tensor)) else (
            type(got) is type(expected) and got == expected):
        return
    raise StudentFailure(joined(L_("{what} is not what was asked: {difference}.").format(
        what=what, difference=difference(got, expected) or L_("{got} where {expected} is expected").format(
            got=_short(got), expected=_short(expected))), hint))


def as_int(value: Any, what: Message) -> int:
    """A single id or count, however the step produced it: a Python int, or a tensor holding one integer (what
    ``torch.argmax(probs, dim=-1)[0]`` or ``torch.multinomial(...)[0][0]`` gives, as in the lecture)."""
    if type(value) is int:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() \
            and not value.is_complex() and value.dtype != torch.bool:
        return int(value.reshape(()).item())
    raise StudentFailure(L_("{what} should be one whole number (an int, or a tensor holding one), got {value}.")
                         .format(what=what, value=_short(value) if not isinstance(value, torch.Tensor) else
                                 f"a {value.dtype} tensor of shape {tuple(value.shape)}"))


def derived_from(submission: Any, name: str, *sources: str) -> bool:
    """Whether the notebook computes ``name`` from one of ``sources`` (a variable or function of the notebook, or an
    attribute such as ``decode``): its definition, or a notebook variable or function it uses, mentions one.

    What a later step is judged on: its student's own earlier result when the step was computed from it (so one
    mistake costs one check), the grader's right one otherwise. A value typed in as a literal (a copied output)
    is derived from nothing, so it is judged on the grader's value and loses."""
    found = submission.words_of(name)
    return found is not None and not (found[1] & OPAQUE) and bool(set(sources) & found[0])


def expect_derived(submission: Any, name: str, *sources: str, hint: Message = "") -> None:
    """``name`` is computed from one of ``sources`` (see ``derived_from``): for a value the notebook states in
    advance (a round trip gives its input back) or one the grading inputs cannot tell from a shortcut (a draw that
    happens to be the most probable token), where only how it was made shows that the step was done."""
    if derived_from(submission, name, *sources):
        return
    raise StudentFailure(joined(L_("`{name}` is not computed with {sources}: the value alone cannot show this step, "
                                   "so the grader reads how your cells make it.").format(
        name=name, sources=" / ".join(f"`{s}`" for s in sources)), hint))


class Unusable(StudentFailure):
    """Raised by ``judged_on``'s ``own``: the student's earlier result cannot be built on (wrong type or shape);
    the earlier step's own check says what is wrong with it."""

    def __init__(self) -> None:
        super().__init__("")


def judged_on(submission: Any, name: str, earlier: str, own: Callable[[], T], grader: Callable[[], T],
              judge: Callable[[T], None]) -> None:
    """Judge the later value ``name``: ``judge(base)`` must pass on the grader's base (``grader()``), or, where
    ``name`` is computed from the student's ``earlier`` result (``derived_from``), on that result (``own()``).

    So a slip in the earlier step is that step's loss alone (one mistake costs once), a later value that is right
    on the grader's terms passes whatever happened to the earlier variable since (rebound by a later cell), and a
    value typed in as a literal is judged on the grader's base alone, so a copied output still loses. The failure
    reported is the one on the student's own base where there is one. ``own`` raises ``Unusable`` (or any
    StudentFailure: the value is missing, a student function raised) where the earlier result cannot be used."""
    try:
        judge(grader())
        return
    except AssertionError as on_grader:  # a StudentFailure, or a check's own `raise AssertionError(...)`
        if not derived_from(submission, name, earlier):
            raise
        failure = on_grader
    try:
        base = own()
    except StudentFailure:
        raise failure from None
    judge(base)


def discriminating(candidates: Iterable[T], right: Callable[[T], Any], shortcuts: dict[str, Callable[[T], Any]]) -> T:
    """The first candidate input on which ``right`` gives another answer than every shortcut (a step left out, an
    argument ignored, the greedy choice where a draw is asked), computed by the grader on the model in use; the
    first candidate when none does.

    So a check whose inputs happen to give the same answer either way on one model (a tiny model that stops at
    EOS before every length limit) moves to inputs that tell them apart on it. Where no candidate does (random
    weights that never produce EOS), correct answers still pass and the shortcut is not caught there: validate's
    declared wrong answers show it on the profile it runs. Memoise the choice with ``reference.memo``: it depends
    only on grader-chosen inputs."""
    candidates = list(candidates)
    for candidate in candidates:
        answer = right(candidate)
        if all(answer != shortcut(candidate) for shortcut in shortcuts.values()):
            return candidate
    return candidates[0]


def covering(candidates: Iterable[T], right: Callable[[T], Any], shortcuts: dict[str, Callable[[T], Any]]) -> list[T]:
    """For each shortcut, the first candidate that tells it apart from ``right`` (see ``discriminating``), without
    repeats: the fewest cases that together catch every shortcut one of them can catch."""
    candidates = list(candidates)
    chosen = [discriminating(candidates, right, {name: shortcut}) for name, shortcut in shortcuts.items()]
    return list(dict.fromkeys(chosen))


def call_watching_model(submission: Any, function: str, *args: Any, model: str = "model", model_first: bool = False,
                        **kwargs: Any) -> tuple[Any, list[list[int]]]:
    """``function(*args, **kwargs)`` called in the student process while the harness's probe watches the notebook's
    ``model``: the result, and the first two token ids of every prompt the model was fed meanwhile (with
    ``model_first``, the model is passed as the function's first argument). For ``expect_fed_once``."""
    try:
        answer = submission.call("grading_model_feed", model, function, list(args), kwargs, model_first)
    except StudentRaised as exc:  # say it of the student's function, not of the probe that called it
        if exc.type_name == "KeyError" and exc.error_message.strip("'\"") in (model, function):
            raise StudentFailure(L_("`{name}` is not defined: write it and run its cell.").format(
                name=exc.error_message.strip("'\""))) from None
        raise StudentRaised(function, exc.type_name, exc.error_message) from None
    if not isinstance(answer, dict) or not isinstance(answer.get("starts"), list):
        raise StudentFailure(L_("{what} sent something the grader cannot read.").format(what=f"`{function}(...)`"))
    return answer.get("result"), [s for s in answer["starts"] if isinstance(s, list)]


def expect_fed_once(starts: list[list[int]], token_id: int, token: str, what: Message, hint: Message = "") -> None:
    """No prompt the model was fed (``call_watching_model``) begins with ``token`` twice: a text that already starts
    with it (a chat template's output) was tokenized with special tokens added again. Some models hardly react to
    the doubled token, so the ids are judged, not only the reply."""
    if any(start == [token_id, token_id] for start in starts):
        raise StudentFailure(joined(L_("{what} feeds the model {token} twice in a row: the text already begins with it, "
                                       "so tokenize it without adding special tokens (add_special_tokens=False), or "
                                       "let apply_chat_template tokenize.").format(what=what, token=token), hint))


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
