"""An exercise's declared answers and the notebooks `validate` builds from them.

``solutions/<exercise>/answers.toml`` lists, next to the solution, the answers an instructor
expects students to write:

```toml
[[wrong]]
name = "argmax over the wrong axis"
loses = ["test_next_token_argmax"]      # exactly the checks that must lose points, all of one step
hint = "last (vocabulary) axis"         # optional: a failing check's message says this
# steps = ["greedy", "sample"]          # optional: several independent slips, and the steps they touch
# random = true                         # optional: it draws random numbers (graded three times by the tests)
[[wrong.edit]]
old = "lm_logits[0, -1].argmax(-1)"     # text of the solution's code cells...
new = "lm_logits[0].argmax(0)[-1]"      # ...and what the student wrote instead
# or: append = "next_token_id = 42"     # a code cell added at the end

[[correct]]                             # another correct way: must keep full marks
name = "encode instead of __call__"
[[correct.edit]]
old = "..."
new = "..."
```

The copied-output notebook (``copied_outputs_notebook``) is the student notebook with one
last cell that assigns, as literals, every value the checks read from a run of the solution
with the notebook's own parameters, and replaces every function the checks call by one that
returns, whatever its arguments, what the solution's function returned first in that run.
"""

from __future__ import annotations

import base64
import math
import tomllib
from pathlib import Path
from typing import Any

import nbformat
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import wire
from .errors import UserError
from .i18n import L_


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old: str | None = None
    new: str = ""
    append: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Edit:
        if (self.old is None) == (self.append is None):
            raise ValueError("an edit has either old/new or append")
        return self


class DeclaredAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    edit: list[Edit] = Field(min_length=1)
    loses: list[str] = []  # wrong answers: the checks that must lose points
    # wrong answers made of several independent slips: the steps they touch (by default a wrong answer is one
    # mistake, so all it loses must be checks of one step: the checks' `step` markers)
    steps: list[str] = []
    hint: str | None = None  # wrong answers: a phrase some losing check's message must contain
    random: bool = False  # its grade depends on random draws: the tests grade it three times and compare


class DeclaredAnswers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    wrong: list[DeclaredAnswer] = []
    correct: list[DeclaredAnswer] = []

    @model_validator(mode="after")
    def _wrong_answers_lose(self) -> DeclaredAnswers:
        for answer in self.wrong:
            if not answer.loses:
                raise ValueError(f"wrong answer {answer.name!r} names no check in `loses`")
        names = [a.name for a in self.wrong + self.correct]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two answers are named {duplicates[0]!r}")
        return self


def load_answers(path: Path) -> DeclaredAnswers:
    """The declared answers of an exercise (none when the file does not exist)."""
    if not path.is_file():
        return DeclaredAnswers()
    try:
        return DeclaredAnswers.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (tomllib.TOMLDecodeError, ValidationError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0]
        detail = str(exc).strip().splitlines()[-1] if isinstance(exc, ValidationError) else ""
        raise UserError(L_("{path} is not a valid answers file: {problem}; fix it and run again.").format(
            path=str(path), problem=f"{first} {detail}".strip())) from None


def apply_edits(notebook: nbformat.NotebookNode, edits: list[Edit], what: str) -> bytes:
    """The notebook's bytes with each edit applied to its code cells; an ``old`` text that no code cell has is an
    error (the answer no longer matches the notebook)."""
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(notebook), as_version=4))
    for edit in edits:
        if edit.append is not None:
            nb.cells.append(nbformat.v4.new_code_cell(edit.append))
            continue
        hits = [c for c in nb.cells if c.cell_type == "code" and edit.old in c.source]
        if not hits:
            raise UserError(L_("{what}: no code cell of the solution contains {text}; update the answers file.")
                            .format(what=what, text=repr(edit.old[:60])))
        for cell in hits:
            cell.source = cell.source.replace(edit.old, edit.new)
    return nbformat.writes(nb).encode()


# --- the copied-output notebook ----------------------------------------------------------


def literal(value: Any) -> str | None:
    """Python source that rebuilds a value read from a student process (None: it has no literal form)."""
    if isinstance(value, wire.Unsupported):
        return None
    if value is None or type(value) in (bool, int, str):
        return repr(value)
    if type(value) is float:
        return repr(value) if math.isfinite(value) else f"float({repr(value)!r})"
    if type(value) in (list, tuple):
        items = [literal(v) for v in value]
        if any(i is None for i in items):
            return None
        body = ", ".join(items)
        return f"[{body}]" if type(value) is list else f"({body}{',' if len(items) == 1 else ''})"
    if type(value) is dict:
        pairs = [(literal(k), literal(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    import torch

    if isinstance(value, torch.Tensor):
        data = base64.b64encode(value.contiguous().cpu().numpy().tobytes() if value.dtype != torch.bfloat16
                                else value.contiguous().cpu().view(torch.int16).numpy().tobytes()).decode()
        dtype = str(value.dtype).removeprefix("torch.")
        return (f'__import__("torch").frombuffer(bytearray(__import__("base64").b64decode("{data}")), '
                f'dtype=__import__("torch").{dtype}).reshape({tuple(value.shape)!r}).clone()')
    return None


def copied_outputs_notebook(student: nbformat.NotebookNode, values: dict[str, Any],
                            first_results: dict[str, Any]) -> tuple[bytes, list[str]]:
    """The student notebook plus a last cell of literals (see the module's docstring), and the names that have no
    literal form (left out)."""
    lines = ["# Copied from a run with the notebook's own parameters"]
    left_out = []
    for name, value in values.items():
        source = literal(value)
        if source is None:
            left_out.append(name)
        else:
            lines.append(f"{name} = {source}")
    for name, result in first_results.items():
        source = literal(result)
        if source is None:
            left_out.append(f"{name}(...)")
        else:
            lines.append(f"def {name}(*args, **kwargs):\n    return {source}")
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(student), as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell("\n".join(lines)))
    return nbformat.writes(nb).encode(), left_out
