"""The `autograder` command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table

from .errors import UserError
from .i18n import Language, language_of
from .paths import course_relative
from .text import printable

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
RunnerOpt = Annotated[Optional[str], typer.Option("--runner", help="How notebooks execute: warm (a process forked from a pre-imported one; the default) or kernel (a fresh Jupyter kernel, the reference). Either is confined unless --no-sandbox.")]
NoSandboxOpt = Annotated[bool, typer.Option("--no-sandbox", help="Run notebooks unconfined (where the sandbox cannot run): only for notebooks you trust.")]
LangOpt = Annotated[Optional[Literal["en", "ja"]], typer.Option("--lang", help="Language of the pages and results.json: ja or en; default: language in the exercise's exercise.toml, else in the course's course.toml, else en.")]

OUTCOME_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "not_run": "yellow"}


def escape(text: str) -> str:
    """Text for the terminal: no rich markup, no control characters (a file name may hold ESC sequences)."""
    return escape_markup(printable(text))


@app.callback()
def _course(course: Annotated[Optional[Path], typer.Option("--course", help="The course folder (assignments/, solutions/, rubrics/, hidden_checks/): every command reads and writes there. Default: $AUTOGRADER_COURSE_DIR, else this repository's bundled course.")] = None) -> None:
    if course is not None:
        from .paths import COURSE_SETTING

        os.environ[COURSE_SETTING] = str(course.resolve())  # the option form of the variable, for workers too


def main() -> None:
    """The `autograder` command: a gradebook damaged below the level of a row ends in one sentence."""
    import sqlite3
    import sys

    try:
        app()
    except sqlite3.DatabaseError as exc:
        err.print(f"[red]error:[/red] The gradebook is damaged ({escape(str(exc))}); restore it from a backup, or "
                  "grade into a new one with --gradebook.")
        sys.exit(2)


def _refuse_damaged(book) -> None:
    """After writing what could be written: one sentence, and a non-zero exit, if a row could not be read."""
    if book.damaged:
        first, *rest = book.damaged.values()
        raise UserError(first + (f" {len(rest)} other row(s) are damaged too." if rest else ""))


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(2)


def _grader(exercise: str, profile: str, device: str | None, public_only: bool = False, runner: str | None = None,
            untrusted: bool = False, no_sandbox: bool = False):
    from .exercise import Exercise
    from .grading import GradeOptions, Grader
    from .models.provision import store_for

    ex = Exercise(exercise)
    store_for(profile).require()  # say so before anything starts processes
    options = GradeOptions(profile=profile, device=device, public_only=public_only,
                           runner=_runner(runner, untrusted, no_sandbox))
    return Grader(ex, options)


def _runner(name: str | None, untrusted: bool, no_sandbox: bool):
    """The runner to use: confined for untrusted work unless the user explicitly gives that up."""
    import getpass

    from .runners import get_runner

    if untrusted and no_sandbox:
        err.print(f"[bold red]WARNING: --no-sandbox: submissions run unconfined as user {escape(getpass.getuser())} "
                  "with this machine's network: a notebook can read the hidden checks, rubrics, solutions, other "
                  "submissions and the gradebook, overwrite result files, and kill the grader. Use it only for "
                  "notebooks you trust.[/bold red]")
    return get_runner(name, confined=untrusted and not no_sandbox)


def _print_result(result, language: Language, student_view: bool = False) -> None:
    from .i18n import translations
    from .results import OUTCOME_TEXT

    _ = translations(language).gettext
    if result.status == "invalid":
        console.print("[red]" + escape(_("{file} could not be graded:").format(file=Path(result.submission).name))
                      + f"[/red] {escape(result.message_in(language))}")
        return
    table = Table(title=escape(f"{result.exercise} — {Path(result.submission).name}"), show_lines=False)
    table.add_column(_("check"))
    table.add_column(_("result"))
    if not student_view:
        table.add_column(_("points"), justify="right")
    table.add_column(_("message"), overflow="fold")
    for c in result.checks:
        style = OUTCOME_STYLE[c.outcome]
        words = c.words(language)
        row = [escape(words.title), f"[{style}]{escape(_(OUTCOME_TEXT[c.outcome]))}[/{style}]"]
        if not student_view:
            row.append(f"{c.points:g}/{c.max_points:g}")
        table.add_row(*row, escape(words.message))
    console.print(table)
    if result.message:
        console.print(f"[yellow]{escape(result.message_in(language))}[/yellow]")
    for cell in result.diagnostics.problem_cells:
        console.print(f"  {cell.label}: {cell.status} — {escape(cell.error or '')}")


@app.command()
def run(
    exercise: Annotated[str, typer.Argument(help="Exercise name, e.g. t5_decoding.")],
    submissions: Annotated[list[Path], typer.Argument(help="Notebook file(s) to grade.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write Gradescope results.json here (one submission).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write <name>.results.json per submission here.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
    runner: RunnerOpt = None,
    no_sandbox: NoSandboxOpt = False,
    lang: LangOpt = None,
) -> None:
    """Grade submissions of one exercise: each check's outcome, the student's message, points, total."""
    from .build import write_atomic
    from .grading import limit_grader_memory

    if json_out and len(submissions) != 1:
        raise _fail("--json takes one submission; use --out-dir for several.")
    try:
        missing = [str(p) for p in submissions if not p.is_file()]
        if missing:
            raise UserError(f"No submission at {', '.join(missing)}; check the path.")
        grader = _grader(exercise, profile, device, runner=runner, untrusted=True, no_sandbox=no_sandbox)
        limit_grader_memory(grader.device)
        language = language_of(exercise, lang)
        for path in submissions:
            result = grader.grade_file(path)
            _print_result(result, language)
            console.print(f"[bold]{escape(path.name)}: {result.score:g} / {result.max_score:g}[/bold] (status: {result.status})\n")
            target = json_out or (out_dir / f"{path.stem}.results.json" if out_dir else None)
            if target:
                write_atomic(target, json.dumps(result.gradescope(language), indent=2, ensure_ascii=False))
    except UserError as exc:
        raise _fail(str(exc)) from None


@app.command()
def check(
    notebook: Annotated[Path, typer.Argument(help="Your notebook (.ipynb).")],
    exercise: Annotated[Optional[str], typer.Option("--exercise", help="Exercise name; default: read from the notebook.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
    runner: RunnerOpt = None,
    lang: LangOpt = None,
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
        result = _grader(exercise, profile, device, public_only=True, runner=runner).grade_file(notebook)
    except UserError as exc:
        raise _fail(str(exc)) from None
    from .i18n import translations

    language = language_of(exercise, lang)
    _print_result(result, language, student_view=True)
    passed = sum(c.outcome == "passed" for c in result.checks)
    ran = sum(c.outcome != "not_run" for c in result.checks)
    _ = translations(language).gettext
    console.print("[bold]" + escape(_("{passed} of {ran} public checks pass.").format(passed=passed, ran=ran))
                  + "[/bold] " + escape(_("Hidden checks run when your work is graded.")))
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
    """Prove exercises sound: solution full marks (twice, the same), blank zero, copied outputs and every declared
    wrong answer lose points, declared correct variants keep them (prints the kill matrix)."""
    from .exercise import available
    from .validation import validate_exercise

    try:
        problems = 0
        for name in exercises or available():
            report = validate_exercise(name, profile, device)
            _print_validation(report)
            problems += len(report.problems)
    except UserError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(1 if problems else 0)


@app.command()
def catalog(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
) -> None:
    """Collect the check files' sentences (_("...")) and titles into the exercise's catalog for translating; existing
    translations are kept, sentences no longer used are dropped."""
    from .check_catalog import write_catalogs
    from .exercise import Exercise

    try:
        for language, (path, untranslated) in write_catalogs(Exercise(exercise)).items():
            todo = f"{untranslated} to translate" if untranslated else "all translated"
            console.print(f"{escape(course_relative(path))} ({language}): {todo}")
    except UserError as exc:
        raise _fail(str(exc)) from None


def _share(lost: float | None) -> str:
    """A kill-matrix cell: ✗ all points lost, a fraction for part of them, · none."""
    if not lost:
        return "[dim]·[/dim]"
    return "[red]✗[/red]" if lost >= 1 - 1e-9 else f"[red]{lost:.2f}[/red]".replace("0.", ".")


def _print_validation(report) -> None:
    wrong = list(report.kills)
    table = Table(title=f"{report.exercise}: what each check catches", title_justify="left")
    for column in ("check", "pts", "copy", *(f"W{i}" for i in range(1, len(wrong) + 1)), "status"):
        table.add_column(column, justify="left" if column in ("check", "status") else "center", no_wrap=True)
    copy = report.copy.lost if report.copy else {}
    for check, points in report.checks:
        if check in report.not_run:
            table.add_row(escape(check), f"{points:g}", "", *([""] * len(wrong)), "[yellow]not run here[/yellow]")
            continue
        killed = any(report.kills[w].get(check) for w in wrong)
        copied = _share(copy.get(check)) if check in copy or check not in report.constant else "[cyan]const[/cyan]"
        status = "[green]ok[/green]" if killed and (check in copy or check in report.constant) else (
            "[red]no wrong answer catches it[/red]" if not killed else "[red]copied outputs pass[/red]")
        table.add_row(escape(check), f"{points:g}", copied, *(_share(report.kills[w].get(check)) for w in wrong), status)
    # As wide as the matrix needs: a kill matrix folded into 80 columns cannot be read.
    needed = 40 + max((len(c) for c, _ in report.checks), default=0) + 5 * len(wrong)
    Console(width=max(console.width, needed)).print(table)
    console.print("  copy: outputs copied from a run with the notebook's own parameters; ✗ all points lost, "
                  ".50 half of them, · none")
    for i, name in enumerate(wrong, 1):
        console.print(f"  W{i}: {escape(name)}")
    if report.correct:
        console.print(f"  correct variants (full marks required): {escape(', '.join(report.correct))}")
    for check, reason in report.constant.items():
        console.print(f"  constant: {escape(check)} — {escape(reason)}")
    if report.copy and report.copy.kept_parameters:
        console.print(f"  same in the notebook and in grading (not varied): {escape(', '.join(report.copy.kept_parameters))}")
    if report.copy and report.copy.stand_ins:
        console.print("  copied-output run used, in place of the notebook's own: "
                      + escape(", ".join(f"{k}={v!r}" for k, v in report.copy.stand_ins.items())))
    if report.copy and report.copy.left_out:
        console.print(f"  not copied (no literal form): {escape(', '.join(report.copy.left_out))}")
    for line in report.problems:
        console.print(f"[red]✗ {report.exercise}:[/red] {escape(line)}")
    if not report.problems:
        console.print(f"[green]✓ {report.exercise}[/green]: solution full marks (same outcomes twice), blank notebook "
                      "zero and in sync, copied outputs and every wrong answer lose points, correct variants keep them")


@models_app.command("prepare")
def models_prepare(profile: ProfileOpt = "tiny", force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False) -> None:
    """Build the offline stand-ins of a profile (or, for hub, check the local cache has the models)."""
    from .models.provision import prepare

    try:
        prepare(profile, force=force, log=lambda m: console.print(escape(m)))
    except UserError as exc:
        raise _fail(str(exc)) from None


# cohort grading: a batch into the gradebook, and what comes out of it -----------------------------

GradebookOpt = Annotated[Optional[Path], typer.Option("--gradebook", help="The gradebook (SQLite file); default: $AUTOGRADER_GRADEBOOK, else out/gradebook.sqlite in the course folder.")]
DeadlineOpt = Annotated[Optional[str], typer.Option("--deadline", help="Deadline, ISO 8601 (2026-05-01T23:59:00+09:00; no offset: local time); 'none' clears it. Default: the last one given, else the rubric's [late] deadline.")]


def _gradebook(path: Optional[Path], create: bool = False):
    from .gradebook import Gradebook, default_path

    path = path or default_path()
    if not create and not path.is_file():
        raise UserError(f"No gradebook at {path}; grade a cohort first (`autograder grade`) or pass --gradebook.")
    return Gradebook(path)


@app.command()
def grade(
    exercise: Annotated[str, typer.Argument(help="Exercise name, e.g. t5_decoding.")],
    submissions: Annotated[Path, typer.Argument(help="A folder (<student_id>.ipynb or <student_id>/<file>.ipynb), a zip of one, or a Moodle or Canvas bulk download (.zip or unpacked).")],
    gradebook: GradebookOpt = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Submissions graded at once; default: from the cores, memory and GPU memory.")] = None,
    roster: Annotated[Optional[Path], typer.Option("--roster", help="CSV with student_id (and optionally name, lms_id, deadline); kept in the gradebook for later runs.")] = None,
    deadline: DeadlineOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Grade every current submission again, even if graded before.")] = False,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
    runner: RunnerOpt = None,
    no_sandbox: NoSandboxOpt = False,
    max_file_mib: Annotated[float, typer.Option("--max-file-mib", min=0.001, help="Files larger than this are rows marked invalid, never read whole (zip bombs stop here).")] = 64,
) -> None:
    """Grade a cohort into the gradebook: resumable (run it again after any interruption), never grading a file twice.

    Every file in SUBMISSIONS ends as a row with a status, however broken; the exit status is 0 once the batch
    has run (failed rows included), 2 when it could not run at all."""
    from contextlib import closing

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .cohort import FAILED, grade_cohort
    from .exercise import Exercise
    from .grading import GradeOptions
    from .intake import Roster
    from .models.provision import store_for

    columns = (TextColumn("[bold]{task.description}"), BarColumn(),
               TextColumn("done {task.completed}/{task.total} · [red]failed {task.fields[failed]}[/red] · "
                          "remaining {task.fields[remaining]} · ETA"), TimeRemainingColumn(), TimeElapsedColumn())
    try:
        ex = Exercise(exercise)
        store_for(profile).require()  # say so now, not from every worker
        with closing(_runner(runner, untrusted=True, no_sandbox=no_sandbox)) as chosen:  # checked here, built per worker
            runner, confined = chosen.name, chosen.confined
        with _gradebook(gradebook, create=True) as book:
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(f"grading {exercise}", total=None, failed=0, remaining="?")

                def show(p) -> None:
                    bar.update(task, total=p.total, completed=p.done, failed=p.failed, remaining=p.remaining)
                    if p.row is not None and p.status in FAILED:
                        bar.console.print(f"  [red]{escape(p.status)}[/red] {escape(p.row.student_id)} "
                                          f"({escape(p.row.source or '')}): {escape(book.row(p.row.id).message)}")

                summary = grade_cohort(ex, submissions, book, GradeOptions(profile=profile, device=device),
                                       roster=Roster.load(roster) if roster else None, deadline=deadline,
                                       jobs=jobs, force=force, on_progress=show, runner=runner, confined=confined,
                                       max_bytes=int(max_file_mib * 2**20))
            _print_summary(summary, book.path)
    except UserError as exc:
        raise _fail(str(exc)) from None


def _print_summary(summary, path: Path) -> None:
    console.print(f"[bold]{summary.exercise}[/bold]: {len(summary.rows)} students in {escape(str(path))}")
    table = Table()
    table.add_column("status")
    table.add_column("students", justify="right")
    for status, n in sorted(summary.statuses.items()):
        table.add_row(status, str(n))
    console.print(table)
    rate = summary.graded / summary.elapsed * 60 if summary.elapsed else 0
    console.print(f"{summary.found} files found, {summary.new} new rows; graded {summary.graded} now "
                  f"({summary.jobs} at a time, {summary.elapsed:.0f} s, {rate:.1f}/min), "
                  f"{summary.skipped} already graded, {summary.superseded} older duplicates kept as history.")
    console.print(summary.score_line())
    for note in summary.notes:
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if summary.not_in_roster:
        console.print("[yellow]Not in the roster:[/yellow] " + escape(", ".join(r.student_id for r in summary.not_in_roster)))
    if summary.not_found:
        console.print(f"[yellow]{len(summary.not_found)} submission(s) still to grade are not in this folder[/yellow]: "
                      + escape(", ".join(r.source or "" for r in summary.not_found)) + "; grade the folder they came from.")


@app.command()
def regrade(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    rubric: Annotated[Optional[Path], typer.Option("--rubric", help="Rubric to score with; default: the exercise's rubrics/<exercise>.toml.")] = None,
    deadline: DeadlineOpt = None,
    gradebook: GradebookOpt = None,
) -> None:
    """Rescore every stored submission after a rubric or deadline change, from stored outcomes: no notebook runs."""
    from .cohort import regrade as rescore

    try:
        with _gradebook(gradebook) as book:
            policy, changed, retired = rescore(book, exercise, rubric, deadline)
            table = Table(title=f"{len(changed)} score(s) changed")
            for column in ("student", "file", "before", "now"):
                table.add_column(column, justify="right" if column in ("before", "now") else "left")
            for row, old in changed:
                table.add_row(escape(row.student_id), escape(row.source or ""), "—" if old is None else f"{old:g}",
                              f"{book.row(row.id).score:g}")
            console.print(table)
            console.print(f"Scored with {escape(course_relative(policy.origin))}"
                          + (f", deadline {policy.deadline.isoformat()}" if policy.deadline else ", no deadline") + ".")
            if retired:
                console.print(f"Stored outcomes of checks the exercise no longer has ({escape(', '.join(sorted(retired)))})"
                              " are kept; they score only what the rubric gives them.")
            _refuse_damaged(book)
    except UserError as exc:
        raise _fail(str(exc)) from None


@app.command()
def export(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    csv_path: Annotated[Optional[Path], typer.Option("--csv", help="Write the grades CSV here, in the layout --format names.")] = None,
    gradescope: Annotated[Optional[Path], typer.Option("--gradescope", help="Write <DIR>/<student_id>/results.json (Gradescope's format).")] = None,
    layout: Annotated[Literal["generic", "canvas", "moodle"], typer.Option("--format", help="generic: id, per-check points, penalty, total, status; canvas: Canvas's gradebook import (needs the roster's Canvas IDs); moodle: Moodle's grade import with a feedback text.")] = "generic",
    assignment_name: Annotated[Optional[str], typer.Option("--assignment-name", help="The assignment's name in the LMS; default: [lms] assignment_name in exercise.toml, else the exercise's title.")] = None,
    assignment_id: Annotated[Optional[str], typer.Option("--assignment-id", help="Canvas's assignment id (the number in its address), so the import fills that assignment; default: [lms] canvas_assignment_id.")] = None,
    match_on: Annotated[Literal["idnumber", "email"], typer.Option("--match-on", help="moodle: the identifier Moodle matches users on (the roster's student id as ID number, or its email).")] = "idnumber",
    missing: Annotated[Literal["empty", "zero"], typer.Option("--missing", help="canvas, moodle: what a student with nothing graded gets.")] = "empty",
    gradebook: GradebookOpt = None,
    lang: LangOpt = None,
) -> None:
    """Export grades from the gradebook for the LMS (CSV) or Gradescope (results.json per student)."""
    from .exercise import Exercise
    from .exports import LMS_DECIMALS, export_canvas, export_csv, export_gradescope, export_moodle

    if not csv_path and not gradescope:
        raise _fail("Say what to export: --csv grades.csv and/or --gradescope DIR.")
    try:
        with _gradebook(gradebook) as book:
            if csv_path and layout == "generic":
                console.print(f"{export_csv(book, exercise, csv_path)} students written to {csv_path}")
            elif csv_path:
                lms = Exercise(exercise).spec.lms
                name = assignment_name or lms.assignment_name or Exercise(exercise).spec.title
                if layout == "canvas":
                    written, left_out = export_canvas(book, exercise, csv_path, name,
                                                      assignment_id or lms.canvas_assignment_id, missing)
                    why = "they have no Canvas ID (lms_id) in the roster"
                else:
                    written, left_out = export_moodle(book, exercise, csv_path, name, match_on, missing,
                                                      language_of(exercise, lang))
                    why = "they have no email in the roster" if match_on == "email" else "they have no student id"
                console.print(f"{written} students written to {csv_path} ({layout}; scores after the late penalty, "
                              f"rounded to {LMS_DECIMALS} decimals)")
                if left_out:
                    console.print(f"[yellow]Not in the file, as {why}:[/yellow] {escape(', '.join(left_out))}")
            if gradescope:
                console.print(f"{len(export_gradescope(book, exercise, gradescope, language_of(exercise, lang)))} results.json files written under {gradescope}")
            console.print(f"Scored with the rubric in force: {escape(course_relative(book.policy(exercise).origin))}")
            _refuse_damaged(book)
    except UserError as exc:
        raise _fail(str(exc)) from None


@app.command()
def feedback(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <student_id>.html and .md.")],
    release: Annotated[bool, typer.Option("--release", help="Show every check; otherwise checks not 'visible' in the rubric stay hidden (after_due_date ones show once the deadline has passed).")] = False,
    lang: LangOpt = None,
    gradebook: GradebookOpt = None,
) -> None:
    """Write one feedback page per student (HTML and Markdown): each check, points, message, what to look at."""
    from .feedback import write_feedback

    try:
        with _gradebook(gradebook) as book:
            pages = write_feedback(book, exercise, out, release=release, lang=lang)
            _refuse_damaged(book)
    except UserError as exc:
        raise _fail(str(exc)) from None
    console.print(f"{len(pages)} feedback pages written to {out}" + ("" if release else " (checks not yet released show as hidden)"))


@app.command()
def report(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html.")],
    lang: LangOpt = None,
    gradebook: GradebookOpt = None,
) -> None:
    """Write the cohort report: one self-contained HTML page with score, pass-rate and runtime plots."""
    from .report import write_report

    try:
        with _gradebook(gradebook) as book:
            target = write_report(book, exercise, out, lang=lang)
            _refuse_damaged(book)
    except UserError as exc:
        raise _fail(str(exc)) from None
    console.print(f"report written to {target}")
