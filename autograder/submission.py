"""The grader's view of a finished student process: data only (the ``submission`` fixture)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import wire
from .i18n import L_, Text, joined, sentence_of
from .results import cell_error
from .runners.base import CellRecord, RunLimits, SessionError, StudentSession
from .source import Definition, definitions


class StudentFailure(AssertionError):
    """A check failed because of the student's work; the message (a str or a Text) is shown to the student."""


class Missing(StudentFailure):
    """What a check asked for does not exist because an earlier cell stopped with an error: the loss of a step that
    never ran, caused by that cell, not a judgement of the step itself."""


class StudentRaised(StudentFailure):
    """A student function raised when the grader called it."""

    def __init__(self, function: str, type_name: str, message: str, hint: Text | str = "") -> None:
        super().__init__(joined(L_("`{function}(...)` raised {type}: {message}").format(
            function=function, type=type_name, message=message), hint))
        self.type_name = type_name
        self.error_message = message


class MissingRaised(StudentRaised, Missing):
    """A student function raised NameError because a name it uses was never made: an earlier cell stopped."""


_MISSING = object()

# What turns a value the grader cannot read into one it can, by the type the student process reported.
_CONVERSIONS = {
    ("builtins.set", "builtins.frozenset"): "sorted(...)",
    ("builtins.range", "builtins.map", "builtins.filter", "builtins.zip", "builtins.generator", "builtins.dict_keys",
     "builtins.dict_values", "builtins.dict_items", "builtins.enumerate"): "list(...)",
    ("pandas.core.frame.DataFrame", "pandas.core.series.Series"): ".to_numpy()",
    ("builtins.complex",): "abs(...)",
    ("builtins.bytes", "builtins.bytearray"): ".decode()",
}


def conversion(type_name: str) -> Text:
    """A sentence saying how to make a value of that type plain data."""
    for names, call in _CONVERSIONS.items():
        if type_name in names:
            return L_("Convert it with {call}.").format(call=call)
    return L_("Convert it to one of those: tensor.detach(), float(x), int(x), str(x), list(x), dict(x).")


class Submission:
    """Read student variables and call student functions; everything comes back as plain data.

    Values are rebuilt from bytes in the grader (tensors as plain ``torch.Tensor``, containers
    as list/tuple/dict), never as the student's own objects, so no student method ever runs here.
    """

    def __init__(self, session: StudentSession, limits: RunLimits, parameters: dict[str, Any],
                 probes: frozenset[str] = frozenset()) -> None:
        self._session = session
        self.send: Callable[[bytes, float], bytes] = session.request  # how a wire request reaches the process
        self._limits = limits
        self.parameters = parameters
        self._probes = probes  # the grader's own functions in the student process (not the student's time)
        self._values: dict[str, Any] = {}  # every variable read, as data
        self._definitions: dict[str, Definition] | None = None
        self.first_results: dict[str, Any] = {}  # each called function's first result (validate copies these)
        self.student_seconds = 0.0  # time spent inside student functions the checks called, as the student process timed it

    def definition(self, name: str) -> Definition | None:
        """The statement of the student's cells that last binds ``name`` (parsed here, from the cells the grader
        ran), or None."""
        if self._definitions is None:
            self._definitions = definitions(self.cells)
        return self._definitions.get(name)

    def words_of(self, name: str) -> tuple[set[str], set[str]] | None:
        """(every name, attribute and identifier-like string; the plain names alone) that ``name``'s definition
        reaches (see ``source.Definition.words``)."""
        found = self.definition(name)
        return None if found is None else found.words(self._definitions)

    @property
    def values_read(self) -> dict[str, Any]:
        """Every variable the checks read so far, by name, as data."""
        return dict(self._values)

    @property
    def cells(self) -> list[CellRecord]:
        """Every code cell as the runner recorded it: source, tags, status, output, error, the student's number."""
        return self._session.cells

    def _ask(self, request: dict, what: str) -> dict:
        if self._session.died:
            failed = next((c for c in self.cells if c.status == "died"), None)
            if failed:
                raise StudentFailure(L_("The notebook's process died in {cell}, so {what} could not be read.").format(
                    cell=failed.name(), what=what))
            raise StudentFailure(L_("The notebook's process died, so {what} could not be read.").format(what=what))
        try:
            blob = self.send(wire.encode(request), self._limits.call_timeout)
            answer = wire.decode(blob, max_bytes=self._limits.answer_bytes)
        except SessionError as exc:
            raise StudentFailure(L_("{what}: {problem}.").format(what=what, problem=sentence_of(exc))) from None
        except wire.WireError as exc:
            raise StudentFailure(L_("{what} sent something the grader cannot read ({problem}).").format(
                what=what, problem=str(exc))) from None
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            raise StudentFailure(L_("{what} sent something the grader cannot read.").format(what=what))
        return answer

    def value(self, name: str, hint: Text | str = "") -> Any:
        """The value of a global variable, as data. Fails (for the student) if it is missing or not data; ``hint``,
        a sentence of the exercise's, is added where it is missing (what the step needs, e.g. "load the model with
        attn_implementation='eager'")."""
        cached = self._values.get(name, _MISSING)
        if cached is not _MISSING:
            return cached
        answer = self._ask({"op": "get", "name": name}, f"`{name}`")
        status = answer["status"]
        if status == "undefined":
            cause = self._failed_cell_hint(name)
            raise (Missing if cause else StudentFailure)(joined(L_(
                "`{name}` is not defined: write the code that sets it and run every cell from the top.").format(
                name=name), cause, hint))
        if status == "unsendable":
            raise StudentFailure(L_("`{name}` could not be read: {problem}.").format(
                name=name, problem=str(answer.get("message"))))
        if status != "ok":
            raise StudentFailure(L_("`{name}` could not be read.").format(name=name))
        value = answer.get("value")
        if isinstance(value, wire.Unsupported):
            if value.type_name == "ellipsis":
                raise StudentFailure(L_("`{name}` is still `...`: replace it with your answer.").format(name=name))
            raise StudentFailure(joined(L_("`{name}` is a {type} object; the grader reads tensors, NumPy arrays, "
                                           "numbers, strings, lists, tuples and dicts only.").format(
                name=name, type=value.type_name), conversion(value.type_name)))
        self._values[name] = value
        return value

    def _failed_cell_hint(self, name: str, anywhere: bool = False) -> Text | str:
        """Where the trouble began: the first cell that stopped with an error, up to the one that sets ``name``
        (``anywhere``: in the whole notebook, for a function that raised NameError).

        A later cell's NameError is only the echo of that first error, so it is the one named."""
        setters = [c for c in self.cells if c.number and name in c.source]
        last = setters[-1].index if setters and not anywhere else None
        failed = next((c for c in self.cells if c.failed and c.number and (last is None or c.index <= last)), None)
        if failed is None:
            return ""
        if setters and failed is setters[-1]:
            return L_("The cell that sets it ({cell}) stopped with: {error}").format(cell=failed.name(),
                                                                                     error=cell_error(failed.error))
        return L_("{cell} stopped earlier with {error}; fix that first.").format(cell=failed.name(start=True),
                                                                                error=cell_error(failed.error))

    def tensor(self, name: str, hint: Text | str = "") -> Any:
        """A variable that must be a tensor (or NumPy array), returned as a plain torch.Tensor (``hint``: as for
        ``value``)."""
        import torch

        value = self.value(name, hint)
        if not isinstance(value, torch.Tensor):
            raise StudentFailure(L_("{what} should be a tensor, but it is a {type}.").format(
                what=f"`{name}`", type=type(value).__name__))
        return value

    def has(self, name: str) -> bool:
        """Whether ``name`` is defined and arrives as data (False too for a defined value that cannot cross: an
        object of the student's own class, a generator...)."""
        try:
            self.value(name)
        except StudentFailure:
            return False
        return True

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call a student function in the student process on grader-chosen arguments; the result comes back as data."""
        answer = self._ask({"op": "call", "name": name, "args": list(args), "kwargs": kwargs}, f"`{name}(...)`")
        return self._result(name, answer)

    def call_each(self, name: str, calls: list[tuple[tuple, dict]]) -> list[Any]:
        """``[call(name, *args, **kwargs) for args, kwargs in calls]`` in one round trip (one timeout for all).

        For checks that call a cheap function many times (e.g. a sampler over many seeds), where
        a round trip per call would cost far more than the function. Fails on the first call
        that fails, with the message ``call`` would give."""
        request = {"op": "call_each", "name": name, "calls": [{"args": list(a), "kwargs": k} for a, k in calls]}
        answer = self._ask(request, L_("{count} calls of `{name}(...)`").format(count=len(calls), name=name))
        answers = answer.get("answers") if answer["status"] == "ok" else [answer]
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise StudentFailure(L_("{what} sent something the grader cannot read.").format(what=f"`{name}(...)`"))
        results = [self._result(name, a) for a in answers]
        if len(results) != len(calls):
            raise StudentFailure(L_("`{name}(...)` answered {answered} of {count} calls.").format(
                name=name, answered=len(results), count=len(calls)))
        return results

    def _result(self, name: str, answer: dict) -> Any:
        seconds = answer.get("seconds")
        if type(seconds) is float and 0 <= seconds < 1e6 and name not in self._probes:
            self.student_seconds += seconds
        status = answer.get("status")
        if status == "undefined":
            cause = self._failed_cell_hint(name)
            raise (Missing if cause else StudentFailure)(joined(L_(
                "The function `{name}` is not defined: write it and run its cell.").format(name=name), cause))
        if status == "not_callable":
            raise StudentFailure(L_("`{name}` should be a function, but it is a {type}.").format(
                name=name, type=str(answer.get("type"))))
        if status == "raised":
            type_name = str(answer.get("type"))
            hint = self._failed_cell_hint(name, anywhere=True) if type_name == "NameError" else ""
            raise (MissingRaised if hint else StudentRaised)(name, type_name, str(answer.get("message")), hint)
        if status == "unsendable":
            raise StudentFailure(L_("`{name}(...)` returned something the grader cannot read: {problem}.").format(
                name=name, problem=str(answer.get("message"))))
        if status != "ok":
            raise StudentFailure(L_("{what} sent something the grader cannot read.").format(what=f"`{name}(...)`"))
        value = answer.get("value")
        if isinstance(value, wire.Unsupported):
            raise StudentFailure(joined(L_("`{name}(...)` returned a {type} object; return tensors, NumPy arrays, "
                                           "numbers, strings, lists, tuples or dicts.").format(
                name=name, type=value.type_name), conversion(value.type_name)))
        self.first_results.setdefault(name, value)
        return value

    def output_of(self, tag: str) -> str:
        """The text output of the cell carrying a tag."""
        for cell in self.cells:
            if tag in cell.tags:
                return cell.output
        raise StudentFailure(L_("No cell is tagged '{tag}'; do not delete the exercise's cells.").format(tag=tag))
