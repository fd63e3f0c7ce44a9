"""The `autograder` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import UserError

app = typer.Typer(
    help="Grade LLM-course notebooks: the student's code runs in its own process, hidden pytest checks judge what it computed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Offline stand-ins for the course's hub models and datasets.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()
err = Console(stderr=True)

ProfileOpt = Annotated[str, typer.Option("--profile", help="Model profile: tiny (CPU, tests), full (random weights, real sizes), hub (real cached weights).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cpu or cuda; default: cuda when available.")]

OUTCOME_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "not_run": "yellow"}


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _grader(exercise: str, profile: str, device: str | None, public_only: bool = False):
    from .exercise import Exercise
    from .grading import GradeOptions, Grader

    return Grader(Exercise(exercise), GradeOptions(profile=profile, device=device, public_only=public_only))


def _print_result(result, student_view: bool = False) -> None:
    if result.status == "invalid":
        console.print(f"[red]{escape(Path(result.submission).name)} could not be graded:[/red] {escape(result.message)}")
        return
    table = Table(title=f"{result.exercise} — {Path(result.submission).name}", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    if not student_view:
        table.add_column("points", justify="right")
    table.add_column("message", overflow="fold")
    for c in result.checks:
        style = OUTCOME_STYLE[c.outcome]
        outcome = "not run" if c.outcome == "not_run" else c.outcome
        row = [escape(c.title), f"[{style}]{outcome}[/{style}]"]
        if not student_view:
            row.append(f"{c.points:g}/{c.max_points:g}")
        table.add_row(*row, escape(c.message))
    console.print(table)
    if result.message:
        console.print(f"[yellow]{escape(result.message)}[/yellow]")
    for cell in result.diagnostics.problem_cells:
        console.print(f"  cell {cell.index + 1}: {cell.status} — {escape(cell.error or '')}")


@app.command()
def run(
    exercise: Annotated[str, typer.Argument(help="Exercise name, e.g. t5_decoding.")],
    submissions: Annotated[list[Path], typer.Argument(help="Notebook file(s) to grade.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write Gradescope results.json here (one submission).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write <name>.results.json per submission here.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
) -> None:
    """Grade submissions of one exercise: each check's outcome, the student's message, points, total."""
    from .build import write_atomic

    if json_out and len(submissions) != 1:
        raise _fail("--json takes one submission; use --out-dir for several.")
    try:
        grader = _grader(exercise, profile, device)
        missing = [str(p) for p in submissions if not p.is_file()]
        if missing:
            raise UserError(f"No submission at {', '.join(missing)}; check the path.")
        for path in submissions:
            result = grader.grade_file(path)
            _print_result(result)
            console.print(f"[bold]{escape(path.name)}: {result.score:g} / {result.max_score:g}[/bold] (status: {result.status})\n")
            target = json_out or (out_dir / f"{path.stem}.results.json" if out_dir else None)
            if target:
                write_atomic(target, json.dumps(result.gradescope(), indent=2, ensure_ascii=False))
    except UserError as exc:
        raise _fail(str(exc)) from None


@app.command()
def check(
    notebook: Annotated[Path, typer.Argument(help="Your notebook (.ipynb).")],
    exercise: Annotated[Optional[str], typer.Option("--exercise", help="Exercise name; default: read from the notebook.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
) -> None:
    """Before you submit: run your notebook and the public checks, with hints for what fails."""
    from .notebook import InvalidNotebook, exercise_of, read_notebook

    try:
        if not notebook.is_file():
            raise UserError(f"No notebook at {notebook}; check the path.")
        if exercise is None:
            try:
                exercise = exercise_of(read_notebook(notebook.read_bytes()))
            except InvalidNotebook as exc:
                raise UserError(str(exc)) from None
            if not exercise:
                raise UserError("The notebook does not say which exercise it belongs to; pass --exercise NAME.")
        result = _grader(exercise, profile, device, public_only=True).grade_file(notebook)
    except UserError as exc:
        raise _fail(str(exc)) from None
    _print_result(result, student_view=True)
    passed = sum(c.outcome == "passed" for c in result.checks)
    ran = sum(c.outcome != "not_run" for c in result.checks)
    console.print(f"[bold]{passed} of {ran} public checks pass.[/bold] Hidden checks run when your work is graded.")
    raise typer.Exit(0 if passed == ran and result.status == "graded" else 1)


@app.command()
def build(exercises: Annotated[Optional[list[str]], typer.Argument(help="Exercises to build; default: all.")] = None) -> None:
    """Generate assignments/<exercise>/ student notebooks from solutions/<exercise>."""
    from .build import build as build_one
    from .exercise import Exercise, available

    try:
        for name in exercises or available():
            console.print(f"built {build_one(Exercise(name))}")
    except UserError as exc:
        raise _fail(str(exc)) from None


@app.command()
def new(name: Annotated[str, typer.Argument(help="Name of the new exercise (a Python identifier).")]) -> None:
    """Scaffold a new exercise that `validate` accepts at once: solution, checks, rubric, student notebook."""
    from .scaffold import scaffold

    try:
        for path in scaffold(name):
            console.print(f"created {path}")
    except UserError as exc:
        raise _fail(str(exc)) from None
    console.print(f"Next: edit the solution notebook and checks, then `autograder build {name}` and `autograder validate {name}`.")


@app.command()
def validate(
    exercises: Annotated[Optional[list[str]], typer.Argument(help="Exercises to validate; default: all.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
) -> None:
    """Prove exercises sound: solution gets full marks, blank student notebook zero, student notebook in sync."""
    from .exercise import available
    from .validation import validate_exercise

    try:
        problems = 0
        for name in exercises or available():
            findings = validate_exercise(name, profile, device)
            for line in findings:
                console.print(f"[red]✗ {name}:[/red] {escape(line)}")
            if not findings:
                console.print(f"[green]✓ {name}[/green]: solution full marks, student notebook zero and in sync, rubric complete")
            problems += len(findings)
    except UserError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(1 if problems else 0)


@models_app.command("prepare")
def models_prepare(profile: ProfileOpt = "tiny", force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False) -> None:
    """Build the offline stand-ins of a profile (or, for hub, check the local cache has the models)."""
    from .models.provision import prepare

    try:
        prepare(profile, force=force, log=lambda m: console.print(escape(m)))
    except UserError as exc:
        raise _fail(str(exc)) from None
