"""The grader's view of a finished student process: data only (the ``submission`` fixture)."""

from __future__ import annotations

from typing import Any

from . import agent
from .runners.base import CellRecord, RunLimits, SessionError, StudentSession
from .source import Definition, definitions


class StudentFailure(AssertionError):
    """A check failed because of the student's work; the message is shown to the student."""


class StudentRaised(StudentFailure):
    """A student function raised when the grader called it."""

    def __init__(self, function: str, type_name: str, message: str) -> None:
        super().__init__(f"`{function}(...)` raised {type_name}: {message}")
        self.type_name = type_name
        self.error_message = message


_MISSING = object()


class Submission:
    """Read student variables and call student functions; everything comes back as plain data.

    Values are rebuilt from bytes in the grader (tensors as plain ``torch.Tensor``, containers
    as list/tuple/dict), never as the student's own objects, so no student method ever runs here.
    """

    def __init__(self, session: StudentSession, limits: RunLimits, parameters: dict[str, Any],
                 probes: frozenset[str] = frozenset()) -> None:
        self._session = session
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
        return self._session.cells

    def _ask(self, request: dict, what: str) -> dict:
        if self._session.died:
            failed = next((c for c in self.cells if c.status == "died"), None)
            where = f" in {failed.label}" if failed else ""
            raise StudentFailure(f"The notebook's process died{where}, so {what} could not be read.")
        try:
            blob = self._session.request(agent.encode(request), timeout=self._limits.call_timeout)
            answer = agent.decode(blob, max_bytes=self._limits.answer_bytes)
        except SessionError as exc:
            raise StudentFailure(f"{what}: {exc}.") from None
        except agent.WireError as exc:
            raise StudentFailure(f"{what} sent something the grader cannot read ({exc}).") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
            raise StudentFailure(f"{what} sent something the grader cannot read.")
        return answer

    def value(self, name: str) -> Any:
        """The value of a global variable, as data. Fails (for the student) if it is missing or not data."""
        cached = self._values.get(name, _MISSING)
        if cached is not _MISSING:
            return cached
        answer = self._ask({"op": "get", "name": name}, f"`{name}`")
        status = answer["status"]
        if status == "undefined":
            raise StudentFailure(f"`{name}` is not defined: write the code that sets it and run every cell from the top."
                                 + self._failed_cell_hint(name))
        if status == "unsendable":
            raise StudentFailure(f"`{name}` could not be read: {answer.get('message')}.")
        if status != "ok":
            raise StudentFailure(f"`{name}` could not be read.")
        value = answer.get("value")
        if isinstance(value, agent.Unsupported):
            if value.type_name == "ellipsis":
                raise StudentFailure(f"`{name}` is still `...`: replace it with your answer.")
            raise StudentFailure(f"`{name}` is a {value.type_name} object; the grader reads tensors, numbers, "
                                 "strings, lists and dicts only.")
        self._values[name] = value
        return value

    def _failed_cell_hint(self, name: str, anywhere: bool = False) -> str:
        """Where the trouble began: the first cell that stopped with an error, up to the one that sets ``name``
        (``anywhere``: in the whole notebook, for a function that raised NameError).

        A later cell's NameError is only the echo of that first error, so it is the one named."""
        setters = [c for c in self.cells if c.number and name in c.source]
        last = setters[-1].index if setters and not anywhere else None
        failed = next((c for c in self.cells if c.failed and c.number and (last is None or c.index <= last)), None)
        if failed is None:
            return ""
        if setters and failed is setters[-1]:
            return f" The cell that sets it ({failed.label}) stopped with: {failed.error}"
        return f" {failed.label.capitalize()} stopped earlier with {failed.error}; fix that first."

    def tensor(self, name: str) -> Any:
        """A variable that must be a tensor (or NumPy array), returned as a plain torch.Tensor."""
        import torch

        value = self.value(name)
        if not isinstance(value, torch.Tensor):
            raise StudentFailure(f"`{name}` should be a tensor, but it is a {type(value).__name__}.")
        return value

    def has(self, name: str) -> bool:
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
        answer = self._ask(request, f"{len(calls)} calls of `{name}(...)`")
        answers = answer.get("answers") if answer["status"] == "ok" else [answer]
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise StudentFailure(f"`{name}(...)` sent something the grader cannot read.")
        results = [self._result(name, a) for a in answers]
        if len(results) != len(calls):
            raise StudentFailure(f"`{name}(...)` answered {len(results)} of {len(calls)} calls.")
        return results

    def _result(self, name: str, answer: dict) -> Any:
        seconds = answer.get("seconds")
        if type(seconds) is float and 0 <= seconds < 1e6 and name not in self._probes:
            self.student_seconds += seconds
        status = answer.get("status")
        if status == "undefined":
            raise StudentFailure(f"The function `{name}` is not defined: write it and run its cell.")
        if status == "not_callable":
            raise StudentFailure(f"`{name}` should be a function, but it is a {answer.get('type')}.")
        if status == "raised":
            type_name = str(answer.get("type"))
            hint = self._failed_cell_hint(name, anywhere=True) if type_name == "NameError" else ""
            raise StudentRaised(name, type_name, str(answer.get("message")) + hint)
        if status == "unsendable":
            raise StudentFailure(f"`{name}(...)` returned something the grader cannot read: {answer.get('message')}.")
        if status != "ok":
            raise StudentFailure(f"`{name}(...)` sent something the grader cannot read.")
        value = answer.get("value")
        if isinstance(value, agent.Unsupported):
            raise StudentFailure(f"`{name}(...)` returned a {value.type_name} object; return tensors, numbers, "
                                 "strings, lists or dicts.")
        self.first_results.setdefault(name, value)
        return value

    def output_of(self, tag: str) -> str:
        """The text output of the cell carrying a tag."""
        for cell in self.cells:
            if tag in cell.tags:
                return cell.output
        raise StudentFailure(f"No cell is tagged '{tag}'; do not delete the exercise's cells.")
