"""The shape of the package, read from its imports: no import cycle, and no module importing one of a higher layer
(imports inside functions count too: they are what runs). A newcomer reads the layers bottom up."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autograder"

# Bottom to top: a module may import its own layer and those below it, never one above.
LAYERS = [
    # words, places, and what runs inside the student's process (loaded by path, standard library only)
    ("foundation", {"errors", "i18n", "text", "paths", "agent", "wire", "student", "probes", "runners.cage",
                    "runners.warm_worker", "models.corpus"}),
    # what a course is: its settings, exercises, notebooks, stand-in models, students' files, outcomes
    ("course", {"course", "exercise", "notebook", "intake", "results", "answers", "models", "models.tokenizers",
                "models.provision", "reference"}),
    # running a notebook confined, and reading what it ran
    ("execution", {"runners", "runners.base", "runners.confine", "runners.clock", "runners.kernel", "runners.warm",
                   "source"}),
    # judging it: the checks as pytest, their helpers, the student's values as data
    ("judging", {"submission", "testing", "checking", "check_reference", "build", "check_catalog", "scaffold"}),
    # what is stored, and where every score comes from
    ("record", {"gradebook", "scoring"}),
    # grading one submission, proving an exercise, grading a cohort wherever its workers run
    ("grading", {"grading", "validation", "executors", "executors.base", "executors.capacity", "executors.local",
                 "executors.ray_cluster", "cohort"}),
    # what people open
    ("outputs", {"exports", "feedback", "report", "similarity"}),
    # the submission service
    ("service", {"service", "service.store", "service.queue", "service.checks", "service.web", "service.students",
                 "service.ta", "service.app"}),
    ("command line", {"cli", "__main__"}),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            stem = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                full = f"{stem}.{alias.name}" if stem else alias.name
                targets.add(full if full in modules else stem)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autograder"):
            targets.add(node.module.removeprefix("autograder").lstrip(".") or "")
        elif isinstance(node, ast.Import):
            targets |= {a.name.removeprefix("autograder.") for a in node.names if a.name.startswith("autograder.")}
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    placed = set().union(*(members for _, members in LAYERS))
    assert set(_graph()) - {""} <= placed, sorted(set(_graph()) - {""} - placed)


def test_no_import_points_up_a_layer():
    layer = {module: i for i, (_, members) in enumerate(LAYERS) for module in members}
    upward = [f"{module} ({LAYERS[layer[module]][0]}) imports {target} ({LAYERS[layer[target]][0]})"
              for module, targets in _graph().items() if module in layer
              for target in targets if target in layer and layer[target] > layer[module]]
    assert upward == []


def test_there_is_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The control: a package with both faults is caught."""
    fake = tmp_path / "autograder"
    (fake / "service").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "errors.py").write_text("from .i18n import L_\n")
    (fake / "i18n.py").write_text("from .errors import UserError\n")
    (fake / "service" / "__init__.py").write_text("")
    (fake / "text.py").write_text("def f():\n    from .service import app\n")
    (fake / "service" / "app.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = _graph()
    assert graph["errors"] == {"i18n"} and graph["i18n"] == {"errors"} and "service.app" in graph["text"]
    with pytest.raises(AssertionError):
        test_there_is_no_import_cycle()
    with pytest.raises(AssertionError):
        test_no_import_points_up_a_layer()
