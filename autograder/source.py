"""How a step was done: the student's cell sources, parsed in the grader (data the grader itself sent to run).

Where an exercise says "by hand", a value comparison cannot tell a hand-written loop from the
library call it reproduces. The grader has the source of every cell it ran, so it can read the
definition of a function or variable with ``ast`` and see what it calls. Nothing here asks the
student process anything: what the student process says about its own code could be forged.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from .runners.base import CellRecord

# Code that runs text the grader cannot read: a definition that uses these cannot be judged.
OPAQUE = frozenset({"exec", "eval", "compile", "__import__"})


def _parse(source: str) -> ast.Module | None:
    """A cell's code as Python (IPython's %magics and !commands turned into calls first); None if unparsable."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except (SyntaxError, ValueError):
        return None


def _top_level(tree: ast.AST):
    """Statements that run at cell level: inside if/for/with/try blocks, not inside functions or classes."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.stmt):
            yield node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from _top_level(node)


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == name
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((a.asname or a.name.split(".")[0]) == name for a in node.names)
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    elif isinstance(node, (ast.For, ast.With)):
        targets = [node.target] if isinstance(node, ast.For) else [i.optional_vars for i in node.items if i.optional_vars]
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))


@dataclass
class Definition:
    """The statement that last binds a name in the cells that ran, and the code it reaches."""

    name: str
    node: ast.stmt
    cell: CellRecord
    previous: Definition | None = None  # the binding this one replaced (``x = f(x)`` goes on from there)

    def reach(self, definitions: dict[str, Definition]) -> list[ast.AST]:
        """The definition's code and that of every notebook function and variable it uses, transitively."""
        seen, bodies, todo = set(), [], [self]
        while todo:
            current = todo.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            function = isinstance(current.node, (ast.FunctionDef, ast.AsyncFunctionDef))
            body = current.node if function else getattr(current.node, "value", current.node)
            bodies.append(body)
            local = _locals(current.node) if function else set()
            used = {n.id for n in ast.walk(body) if isinstance(n, ast.Name) and n.id not in local}
            todo += [definitions[name] for name in used if name in definitions and name != current.name]
            if current.name in used and current.previous is not None and not function:
                todo.append(current.previous)
        return bodies

    def words(self, definitions: dict[str, Definition]) -> tuple[set[str], set[str]]:
        """(every name, attribute and identifier-like string constant; the plain names alone) in ``reach``."""
        words, names = set(), set()
        for body in self.reach(definitions):
            for node in ast.walk(body):
                if isinstance(node, ast.Name):
                    names.add(node.id)
                elif isinstance(node, ast.Attribute):
                    words.add(node.attr)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                    words.add(node.value)
        return words | names, names


def _locals(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """A function's parameters and the names it assigns: they are not the notebook's globals."""
    args = function.args
    names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
    names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
    names |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def definitions(cells: list[CellRecord]) -> dict[str, Definition]:
    """Each name's last cell-level binding in the student's cells that ran without a syntax error."""
    found: dict[str, Definition] = {}
    for cell in cells:
        if not cell.number or cell.status == "skipped":
            continue
        tree = _parse(cell.source)
        if tree is None:
            continue
        for node in _top_level(tree):
            for name in _bound_names(node):
                found[name] = Definition(name, node, cell, found.get(name))
    return found


def imported_modules(source: str) -> set[str]:
    """The top-level modules a piece of code imports anywhere (relative imports left out)."""
    tree = _parse(source)
    if tree is None:
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
    return found


def bound_names(source: str) -> set[str]:
    """The names a piece of code binds at cell level (e.g. the probe functions the grader injects)."""
    tree = _parse(source)
    return set() if tree is None else {name for node in _top_level(tree) for name in _bound_names(node)}


def _bound_names(node: ast.stmt) -> set[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    candidates = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        candidates = {a.asname or a.name.split(".")[0] for a in node.names}
    return {n for n in candidates if _binds(node, n)}
