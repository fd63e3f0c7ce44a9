"""The `autograder` command line."""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Table

from .errors import UserError
from .i18n import L_, Language, Text, render, sentence_of, translations
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
LangOpt = Annotated[Optional[Literal["en", "ja"]], typer.Option("--lang", help="Language of what the command writes and says: ja or en; default: language in the exercise's exercise.toml, else in the course's course.toml, else en.")]

OUTCOME_STYLE = {"passed": "green", "failed": "red", "error": "magenta", "not_run": "yellow", "scored": "green",
                 "awaiting": "yellow"}


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

    sys.argv[1:] = _course_first(sys.argv[1:])
    try:
        app()
    except sqlite3.DatabaseError as exc:
        _fail(L_("The gradebook is damaged ({problem}); restore it from a backup, or grade into a new one with "
                 "--gradebook.").format(problem=str(exc)), _language(None, quiet=True))
        sys.exit(2)


def _course_first(args: list[str]) -> list[str]:
    """``--course DIR`` is the application's option; accept it after the command too (``autograder new x --course
    DIR``) by moving it in front."""
    for i, arg in enumerate(args):
        if arg == "--course" and i + 1 < len(args):
            return [arg, args[i + 1], *args[:i], *args[i + 2:]]
        if arg.startswith("--course="):
            return [arg, *args[:i], *args[i + 1:]]
    return args


def _language(chosen: Language | None, exercise: str | None = None, quiet: bool = False) -> Language:
    """The language a command speaks: --lang, else the exercise's, else the course's, else English. A setting
    that cannot be read ends the command with its sentence (in English); `quiet`: English, and nothing said."""
    from .course import course_settings
    from .exercise import language_of
    from .paths import course_dir

    try:
        return language_of(exercise, chosen) if exercise else chosen or course_settings(course_dir()).language or "en"
    except UserError as exc:
        if quiet:
            return chosen or "en"
        raise _fail(exc, chosen or "en") from None


_SPOKEN: contextvars.ContextVar[Language] = contextvars.ContextVar("language", default="en")


def spoken() -> Language:
    """The language the running command speaks (set by ``command``; ``speak`` changes it)."""
    return _SPOKEN.get()


def speak(chosen: Language | None, exercise: str | None = None, quiet: bool = False) -> Language:
    """Speak --lang, else the exercise's language, else the course's, for the rest of the command."""
    language = _language(chosen, exercise, quiet)
    _SPOKEN.set(language)
    return language


def command(group: typer.Typer, name: str | None = None) -> Callable[[Callable], Callable]:
    """A command of the command line: it speaks the language --lang, its exercise or the course names (``spoken``),
    and a problem it cannot get past (a UserError) ends it with that one sentence in that language, exit status 2.
    The one frame every command shares, as otter-grader's commands share theirs."""

    def register(function: Callable) -> Callable:
        takes_language = "lang" in inspect.signature(function).parameters

        @functools.wraps(function)
        def run(*args, **kwargs):
            exercise = kwargs.get("exercise") or next(iter(kwargs.get("exercises") or []), None)
            speak(kwargs.get("lang"), exercise if isinstance(exercise, str) else None, quiet=not takes_language)
            try:
                return function(*args, **kwargs)
            except UserError as exc:
                raise _fail(exc, spoken()) from None

        return group.command(name)(run)

    return register


def _refuse_damaged(book) -> None:
    """After writing what could be written: one sentence, and a non-zero exit, if a row could not be read."""
    if book.damaged:
        first, *rest = book.damaged.values()
        raise UserError(L_("{first} {count} other row(s) are damaged too.").format(first=first, count=len(rest))
                        if rest else first)


def _fail(problem: UserError | Text | str, language: Language) -> typer.Exit:
    """The one sentence a command ends with when it cannot do its work, in the command's language."""
    _ = translations(language).gettext
    sentence = render(sentence_of(problem) if isinstance(problem, BaseException) else problem, language)
    err.print("[red]" + escape(_("error:")) + f"[/red] {escape(sentence)}")
    return typer.Exit(2)


def _grader(exercise: str, profile: str, device: str | None, public_only: bool = False, runner: str | None = None,
            untrusted: bool = False, no_sandbox: bool = False, language: Language = "en"):
    from .exercise import Exercise
    from .grading import GradeOptions, Grader
    from .models.provision import store_for

    ex = Exercise(exercise)
    store_for(profile).require()  # say so before anything starts processes
    options = GradeOptions(profile=profile, device=device, public_only=public_only,
                           runner=_runner(runner, untrusted, no_sandbox, language))
    return Grader(ex, options)


def _runner(name: str | None, untrusted: bool, no_sandbox: bool, language: Language = "en"):
    """The runner to use: confined for untrusted work unless the user explicitly gives that up."""
    import getpass

    from .runners import get_runner

    if untrusted and no_sandbox:
        _ = translations(language).gettext
        err.print("[bold red]" + escape(_(
            "WARNING: --no-sandbox: submissions run unconfined as user {user} with this machine's network: a "
            "notebook can read the hidden checks, rubrics, solutions, other submissions and the gradebook, "
            "overwrite result files, and kill the grader. Use it only for notebooks you trust.").format(
                user=getpass.getuser())) + "[/bold red]")
    return get_runner(name, confined=untrusted and not no_sandbox)


def _print_result(result, language: Language, student_view: bool = False) -> None:
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
        console.print(f"  {escape(cell.sentence(language))}")


@command(app)
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
    from .paths import write_atomic
    from .grading import limit_grader_memory
    from .results import STATUS_WORDS

    language = spoken()
    _ = translations(language).gettext
    if json_out and len(submissions) != 1:
        raise UserError(L_("--json takes one submission; use --out-dir for several."))
    missing = [str(p) for p in submissions if not p.is_file()]
    if missing:
        raise UserError(L_("No submission at {path}; check the path.").format(path=", ".join(missing)))
    grader = _grader(exercise, profile, device, runner=runner, untrusted=True, no_sandbox=no_sandbox,
                     language=language)
    limit_grader_memory(grader.device, grader.models_bytes())
    for path in submissions:
        result = grader.grade_file(path)
        _print_result(result, language)
        console.print(f"[bold]{escape(path.name)}: {result.score:g} / {result.max_score:g}[/bold] "
                      + escape(_("(status: {status})").format(status=_(STATUS_WORDS[result.status]))) + "\n")
        target = json_out or (out_dir / f"{path.stem}.results.json" if out_dir else None)
        if target:
            write_atomic(target, json.dumps(result.gradescope(language), indent=2, ensure_ascii=False))


@command(app)
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

    language = spoken()
    if not notebook.is_file():
        raise UserError(L_("No notebook at {path}; check the path.").format(path=str(notebook)))
    if exercise is None:
        try:
            exercise = exercise_of(read_notebook(notebook.read_bytes()))
        except InvalidNotebook as exc:
            raise UserError(sentence_of(exc)) from None
        if not exercise:
            raise UserError(L_("The notebook does not say which exercise it belongs to; pass --exercise NAME."))
        language = speak(lang, exercise)
    result = _grader(exercise, profile, device, public_only=True, runner=runner).grade_file(notebook)
    _print_result(result, language, student_view=True)
    passed = sum(c.outcome == "passed" for c in result.checks)
    ran = sum(c.outcome != "not_run" for c in result.checks)
    _ = translations(language).gettext
    console.print("[bold]" + escape(_("{passed} of {ran} public checks pass.").format(passed=passed, ran=ran))
                  + "[/bold]")
    from .checking import hidden_only_steps
    from .exercise import Exercise

    steps = hidden_only_steps(Exercise(exercise))
    if steps:
        console.print(escape(_("These steps have no public check: only the hidden checks judge them, when your work "
                               "is graded.")))
        for step in steps:
            console.print(escape("  - " + " ".join(step[language])))
    raise typer.Exit(0 if passed == ran and result.status == "graded" else 1)


@command(app)
def build(exercises: Annotated[Optional[list[str]], typer.Argument(help="Exercises to build; default: all.")] = None) -> None:
    """Generate assignments/<exercise>/ student notebooks from solutions/<exercise>."""
    from .build import build as build_one
    from .exercise import Exercise, available

    for name in exercises or available():
        console.print(f"built {build_one(Exercise(name))}")


@command(app)
def new(
    name: Annotated[str, typer.Argument(help="Name of the new exercise (a Python identifier).")],
    lang: Annotated[Optional[Literal["en", "ja"]], typer.Option("--lang", help="A new course folder's language (course.toml).")] = None,
    time_zone: Annotated[str, typer.Option("--time-zone", help="A new course folder's time zone (course.toml), e.g. Asia/Tokyo.")] = "UTC",
) -> None:
    """Scaffold a new exercise that `validate` accepts at once: solution, checks, rubric, student notebook. In a
    course folder that does not exist yet, start the course: the folder and its course.toml."""
    from .scaffold import scaffold

    for path in scaffold(name, lang, time_zone):
        console.print(f"created {path}")
    console.print(f"Next: edit the solution notebook and checks, then `autograder build {name}` and `autograder validate {name}`.")


@command(app)
def validate(
    exercises: Annotated[Optional[list[str]], typer.Argument(help="Exercises to validate; default: all.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
) -> None:
    """Prove exercises sound: solution full marks (twice, the same), blank zero, copied outputs and every declared
    wrong answer lose points, declared correct variants keep them (prints the kill matrix)."""
    from .exercise import available
    from .validation import validate_exercise

    problems = 0
    for name in exercises or available():
        report = validate_exercise(name, profile, device)
        _print_validation(report)
        problems += len(report.problems)
    raise typer.Exit(1 if problems else 0)


@command(app)
def catalog(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
) -> None:
    """Collect the check files' sentences (_("...")) and titles into the exercise's catalog for translating; existing
    translations are kept, sentences no longer used are dropped."""
    from .check_catalog import write_catalogs
    from .exercise import Exercise

    for language, (path, untranslated) in write_catalogs(Exercise(exercise)).items():
        todo = f"{untranslated} to translate" if untranslated else "all translated"
        console.print(f"{escape(course_relative(path))} ({language}): {todo}")


def _share(lost: float | None) -> str:
    """A kill-matrix cell: ✗ all points lost, a fraction for part of them, · none."""
    if not lost:
        return "[dim]·[/dim]"
    return "[red]✗[/red]" if lost >= 1 - 1e-9 else f"[red]{lost:.2f}[/red]".replace("0.", ".")


def _pts(points: float) -> str:
    return f"{points:g} pt" + ("" if points == 1 else "s")


def _print_validation(report) -> None:
    """The kill matrix: a table where the terminal is wide enough for it, else a line per check (readable at 80
    columns with any number of declared answers)."""
    wrong = list(report.kills)
    copy = report.copy.lost if report.copy else {}

    def status(check: str) -> str:
        killed = any(report.kills[w].get(check) for w in wrong)
        if not killed:
            return "[red]no wrong answer catches it[/red]"
        return "[green]ok[/green]" if check in copy or check in report.constant else "[red]copied outputs pass[/red]"

    def copied(check: str) -> str:
        return _share(copy.get(check)) if check in copy or check not in report.constant else "[cyan]const[/cyan]"

    needed = 40 + max((len(c) for c, _ in report.checks), default=0) + 5 * len(wrong)
    console.print(f"{escape(report.exercise)}: what each check catches")
    if needed <= console.width:
        table = Table(title_justify="left")
        for column in ("check", "pts", "copy", *(f"W{i}" for i in range(1, len(wrong) + 1)), "status"):
            table.add_column(column, justify="left" if column in ("check", "status") else "center", no_wrap=True)
        for check, points in report.checks:
            if check in report.not_run:
                table.add_row(escape(check), f"{points:g}", "", *([""] * len(wrong)), "[yellow]not run here[/yellow]")
                continue
            table.add_row(escape(check), f"{points:g}", copied(check),
                          *(_share(report.kills[w].get(check)) for w in wrong), status(check))
        console.print(table)
    else:
        for check, points in report.checks:
            if check in report.not_run:
                console.print(f"  {escape(check)} ({_pts(points)}): [yellow]not run here[/yellow]")
                continue
            caught = [f"W{i}" + ("" if report.kills[w][check] >= 1 - 1e-9 else f" ({_share(report.kills[w][check])})")
                      for i, w in enumerate(wrong, 1) if report.kills[w].get(check)]
            step = report.steps.get(check, check)
            console.print(f"  {escape(check)} ({_pts(points)}{', step ' + escape(step) if step != check else ''}): "
                          f"copy {copied(check)}; caught by {', '.join(caught) or '-'}; {status(check)}")
    console.print("  copy: outputs copied from a run with the notebook's own parameters; ✗ all points lost, "
                  ".50 half of them, · none")
    for i, name in enumerate(wrong, 1):
        console.print(f"  W{i}: {escape(name)}")
    if report.correct:
        console.print(f"  correct variants (full marks required): {escape(', '.join(report.correct))}")
    for check, reason in report.constant.items():
        console.print(f"  constant: {escape(check)} — {escape(reason)}")
    if report.copy and report.copy.kept_parameters:
        from .exercise import Exercise

        constant = Exercise(report.exercise).spec.constant_parameters
        for name in report.copy.kept_parameters:
            console.print(f"  not varied in grading: {escape(name)}"
                          + (f" — {escape(constant[name])}" if name in constant else ""))
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


@command(models_app, "prepare")
def models_prepare(profile: ProfileOpt = "tiny", force: Annotated[bool, typer.Option(help="Rebuild even if present.")] = False) -> None:
    """Build the offline stand-ins of a profile (or, for hub, check the local cache has the models)."""
    from .models.provision import prepare

    prepare(profile, force=force, log=lambda m: console.print(escape(m)))


# cohort grading: a batch into the gradebook, and what comes out of it -----------------------------

GradebookOpt = Annotated[Optional[Path], typer.Option("--gradebook", help="The gradebook (SQLite file); default: $AUTOGRADER_GRADEBOOK, else out/gradebook.sqlite in the course folder.")]
DeadlineOpt = Annotated[Optional[str], typer.Option("--deadline", help="Deadline, ISO 8601 (2026-05-01T23:59:00+09:00; no offset: local time); 'none' clears it. Default: the last one given, else the rubric's [late] deadline.")]


def _gradebook(path: Optional[Path], create: bool = False):
    from .gradebook import Gradebook, default_path

    path = path or default_path()
    if not create and not path.is_file():
        raise UserError(L_("No gradebook at {path}; grade a cohort first (`autograder grade`) or pass --gradebook.")
                        .format(path=str(path)))
    return Gradebook(path)


@command(app)
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
    executor: Annotated[Literal["local", "ray"], typer.Option("--executor", help="Where the grading workers run: local (processes of this machine) or ray (actors on a Ray cluster; needs the ray extra).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster's head, HOST:PORT; default: $RAY_ADDRESS, else the cluster this machine belongs to.")] = None,
    lang: LangOpt = None,
) -> None:
    """Grade a cohort into the gradebook: resumable (run it again after any interruption), never grading a file twice.

    Every file in SUBMISSIONS ends as a row with a status, however broken; the exit status is 0 once the batch
    has run (failed rows included), 2 when it could not run at all."""
    from contextlib import closing

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .cohort import FAILED, grade_cohort
    from .exercise import Exercise
    from .gradebook import row_message
    from .grading import GradeOptions
    from .intake import Roster
    from .models.provision import store_for
    from .results import STATUS_WORDS

    language = spoken()
    _ = translations(language).gettext
    # Rich fills {task...} itself: the translated text keeps those fields as they are.
    counts = _("done {done} · [red]failed {failed}[/red] · remaining {remaining} · ETA").format(
        done="{task.completed}/{task.total}", failed="{task.fields[failed]}", remaining="{task.fields[remaining]}")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn(counts), TimeRemainingColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[nodes]}"))
    ex = Exercise(exercise)
    if executor == "local":  # say so now, not from every worker (a cluster's nodes use their own models)
        store_for(profile).require()
    with closing(_runner(runner, untrusted=True, no_sandbox=no_sandbox, language=language)) as chosen:
        runner, confined = chosen.name, chosen.confined  # checked here, built per worker
    with _gradebook(gradebook, create=True) as book:
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(escape(_("grading {exercise}").format(exercise=exercise)), total=None, failed=0,
                                remaining="?", nodes="")

            def show(p) -> None:
                bar.update(task, total=p.total, completed=p.done, failed=p.failed, remaining=p.remaining,
                           nodes=escape(_per_node(p.nodes)) if executor == "ray" else "")
                if p.row is not None and p.status in FAILED:
                    row = book.row(p.row.id)
                    bar.console.print(f"  [red]{escape(_(STATUS_WORDS[p.status]))}[/red] {escape(row.student_id)} "
                                      f"({escape(row.source or '')}): "
                                      f"{escape(row_message(row, row.run_record(), language))}")

            summary = grade_cohort(ex, submissions, book, GradeOptions(profile=profile, device=device),
                                   roster=Roster.load(roster) if roster else None, deadline=deadline,
                                   jobs=jobs, force=force, on_progress=show, runner=runner, confined=confined,
                                   max_bytes=int(max_file_mib * 2**20), executor=executor,
                                   ray_address=ray_address)
        _print_summary(summary, book.path, language)


def _per_node(counts) -> str:
    """Submissions graded per node: "10.0.0.5/3f2a9c01 12, 10.0.0.6/77b1e0d2 11"."""
    return ", ".join(f"{node} {n}" for node, n in sorted(counts.items()))


def _print_summary(summary, path: Path, language: Language) -> None:
    from statistics import mean, median

    from .results import STATUS_WORDS

    _ = translations(language).gettext
    console.print(f"[bold]{escape(summary.exercise)}[/bold]: "
                  + escape(_("{count} students in {path}").format(count=len(summary.rows), path=str(path))))
    table = Table()
    table.add_column(_("status"))
    table.add_column(_("students"), justify="right")
    for status, n in sorted(summary.statuses.items()):
        table.add_row(escape(_(STATUS_WORDS.get(status, status))), str(n))
    console.print(table)
    rate = summary.graded / summary.elapsed * 60 if summary.elapsed else 0
    console.print(escape(_(
        "{found} files found, {new} new rows; graded {graded} now ({jobs} at a time, {seconds} s, {rate}/min), "
        "{skipped} already graded, {superseded} older duplicates kept as history.").format(
            found=summary.found, new=summary.new, graded=summary.graded, jobs=summary.jobs,
            seconds=f"{summary.elapsed:.0f}", rate=f"{rate:.1f}", skipped=summary.skipped,
            superseded=summary.superseded)))
    if summary.executor == "ray":
        console.print(escape(_("per node: {counts}").format(counts=_per_node(summary.nodes))))
    s = summary.scores
    console.print(escape(_("scores: mean {mean}, median {median}, min {min}, max {max}").format(
        mean=f"{mean(s):.2f}", median=f"{median(s):g}", min=f"{min(s):g}", max=f"{max(s):g}") if s
        else _("no scores yet")))
    for note in summary.notes:
        console.print(f"[yellow]{escape(render(note, language))}[/yellow]")
    if summary.not_in_roster:
        console.print("[yellow]" + escape(_("Not in the roster:")) + "[/yellow] "
                      + escape(", ".join(r.student_id for r in summary.not_in_roster)))
    if summary.not_found:
        console.print("[yellow]" + escape(_(
            "{count} submission(s) still to grade are not in this folder: {files}; grade the folder they came "
            "from.").format(count=len(summary.not_found), files=", ".join(r.source or "" for r in summary.not_found)))
            + "[/yellow]")


@command(app)
def regrade(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    rubric: Annotated[Optional[Path], typer.Option("--rubric", help="Rubric to score with; default: the exercise's rubrics/<exercise>.toml.")] = None,
    deadline: DeadlineOpt = None,
    gradebook: GradebookOpt = None,
    lang: LangOpt = None,
) -> None:
    """Rescore every stored submission after a rubric or deadline change, from stored outcomes: no notebook runs."""
    from .cohort import regrade as rescore

    language = spoken()
    _ = translations(language).gettext
    with _gradebook(gradebook) as book:
        policy, changed, retired = rescore(book, exercise, rubric, deadline)
        table = Table(title=escape(_("{count} score(s) changed").format(count=len(changed))))
        for column, right in ((_("student"), False), (_("file"), False), (_("before"), True), (_("now"), True)):
            table.add_column(column, justify="right" if right else "left")
        for row, old in changed:
            table.add_row(escape(row.student_id), escape(row.source or ""), "—" if old is None else f"{old:g}",
                          f"{book.row(row.id).score:g}")
        console.print(table)
        rubric_file = course_relative(policy.origin)
        console.print(escape(_("Scored with {rubric}, deadline {deadline}.").format(
            rubric=rubric_file, deadline=policy.deadline.isoformat()) if policy.deadline
            else _("Scored with {rubric}, no deadline.").format(rubric=rubric_file)))
        if retired:
            console.print(escape(_("Stored outcomes of checks the exercise no longer has ({checks}) are kept; "
                                   "they score only what the rubric gives them.").format(
                                       checks=", ".join(sorted(retired)))))
        _refuse_damaged(book)


@command(app)
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
    from .scoring import policy_in_force

    language = spoken()
    _ = translations(language).gettext
    if not csv_path and not gradescope:
        raise UserError(L_("Say what to export: --csv grades.csv and/or --gradescope DIR."))
    with _gradebook(gradebook) as book:
        if csv_path and layout == "generic":
            console.print(escape(_("{count} students written to {path}").format(
                count=export_csv(book, exercise, csv_path), path=str(csv_path))))
        elif csv_path:
            lms = Exercise(exercise).spec.lms
            name = assignment_name or lms.assignment_name or Exercise(exercise).spec.title
            if layout == "canvas":
                written, left_out = export_canvas(book, exercise, csv_path, name,
                                                  assignment_id or lms.canvas_assignment_id, missing)
                why = _("Not in the file, as they have no Canvas ID (lms_id) in the roster:")
            else:
                written, left_out = export_moodle(book, exercise, csv_path, name, match_on, missing, language)
                why = (_("Not in the file, as they have no email in the roster:") if match_on == "email"
                       else _("Not in the file, as they have no student id:"))
            console.print(escape(_("{count} students written to {path} ({layout}; scores after the late penalty, "
                                   "rounded to {decimals} decimals)").format(
                                       count=written, path=str(csv_path), layout=layout, decimals=LMS_DECIMALS)))
            if left_out:
                console.print(f"[yellow]{escape(why)}[/yellow] {escape(', '.join(left_out))}")
        if gradescope:
            written = export_gradescope(book, exercise, gradescope, language)
            console.print(escape(_("{count} results.json files written under {path}").format(
                count=len(written), path=str(gradescope))))
        console.print(escape(_("Scored with the rubric in force: {rubric}").format(
            rubric=course_relative(policy_in_force(book, exercise).origin))))
        _refuse_damaged(book)


@command(app)
def feedback(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for <student_id>.html and .md.")],
    release: Annotated[bool, typer.Option("--release", help="Show every check; otherwise checks not 'visible' in the rubric stay hidden (after_due_date ones show once the deadline has passed).")] = False,
    lang: LangOpt = None,
    gradebook: GradebookOpt = None,
) -> None:
    """Write one feedback page per student (HTML and Markdown): each check, points, message, what to look at."""
    from .feedback import write_feedback

    language = spoken()
    _ = translations(language).gettext
    with _gradebook(gradebook) as book:
        pages = write_feedback(book, exercise, out, release=release, lang=language)
        _refuse_damaged(book)
    console.print(escape(_("{count} feedback pages written to {path}").format(count=len(pages), path=str(out)) if release
                         else _("{count} feedback pages written to {path} (checks not yet released show as hidden)")
                         .format(count=len(pages), path=str(out))))


@command(app)
def report(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html.")],
    lang: LangOpt = None,
    gradebook: GradebookOpt = None,
) -> None:
    """Write the cohort report: one self-contained HTML page with score, pass-rate and runtime plots."""
    from .report import write_report

    language = spoken()
    with _gradebook(gradebook) as book:
        target = write_report(book, exercise, out, lang=language)
        _refuse_damaged(book)
    _ = translations(language).gettext
    console.print(escape(_("report written to {path}").format(path=str(target))))


@command(app)
def serve(
    exercises: Annotated[Optional[list[str]], typer.Argument(help="Exercises open for submissions; default: all.")] = None,
    roster: Annotated[Optional[Path], typer.Option("--roster", help="CSV of the students (as for grade); each gets a personal link. Default: the roster already in the gradebook.")] = None,
    gradebook: GradebookOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; put a TLS reverse proxy in front before opening it beyond this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="The address students reach the service at (the proxy's https://...), for the links; default: http://HOST:PORT.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Submissions graded at once per exercise; default: from the cores, memory and GPU memory, shared among the exercises.")] = None,
    profile: ProfileOpt = "tiny",
    device: DeviceOpt = None,
    runner: RunnerOpt = None,
    no_sandbox: NoSandboxOpt = False,
    max_file_mib: Annotated[float, typer.Option("--max-file-mib", min=0.001, help="The largest upload taken; larger ones are refused (413) unread.")] = 16,
    reissue_links: Annotated[bool, typer.Option("--reissue-links", help="Replace every link (the old ones stop working) and write them all to access.csv.")] = False,
    tas: Annotated[Optional[Path], typer.Option("--tas", help="CSV of the course's TAs (ta_id, name): each gets a link of their own, so the record names who did what. Default: one TA link.")] = None,
    executor: Annotated[Literal["local", "ray"], typer.Option("--executor", help="Where uploads are graded: local (processes of this machine) or ray (actors on a Ray cluster, for a deadline night that outgrows one machine; needs the ray extra).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="The Ray cluster's head, HOST:PORT; default: $RAY_ADDRESS, else the cluster this machine belongs to.")] = None,
    deadline: DeadlineOpt = None,
    lang: LangOpt = None,
) -> None:
    """Serve submissions: students upload through their personal link (or the JSON API) and see feedback in
    seconds; the TA link opens a live dashboard. Links are written to access.csv beside the gradebook."""
    import logging
    from contextlib import closing

    from .executors import make_executor
    from .exercise import Exercise
    from .grading import GradeOptions
    from .intake import Roster
    from .models.provision import store_for
    from .service import access_file, open_service
    from .service.app import serve as serve_app
    from .service.store import load_tas

    language = spoken()
    _ = translations(language).gettext
    for name in exercises or []:
        Exercise(name)
    store_for(profile).require()
    with closing(_runner(runner, untrusted=True, no_sandbox=no_sandbox, language=language)) as chosen:
        chosen_runner = (chosen.name, chosen.confined)  # checked here, built per worker
    url = (base_url or f"http://{host}:{port}").rstrip("/")
    _can_listen(host, port)
    with _gradebook(gradebook, create=True) as book, book.batch_lock():
        service, notes = open_service(book, exercises or [], Roster.load(roster) if roster else None, url,
                                      language, GradeOptions(profile=profile, device=device), chosen_runner,
                                      int(max_file_mib * 2**20), jobs, reissue_links, deadline,
                                      load_tas(tas) if tas else None, lambda: make_executor(executor, ray_address))
        for note in notes:
            console.print(f"[yellow]{escape(render(note, language))}[/yellow]")
        console.print(escape(_("Serving {exercises} at {url}; the students' links and the TA's are in {path}.")
                             .format(exercises=", ".join(service.served), url=url,
                                     path=str(access_file(book.path)))))
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        serve_app(service, host, port)


@command(app)
def similarity(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    against: Annotated[Optional[list[Path]], typer.Option("--against", help="An earlier cohort to compare with: a folder of notebooks or a gradebook (repeat for several). Earlier cohorts are never compared with each other.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for index.html, similarity.csv and a page per pair; default: out/similarity/<exercise> in the course folder.")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", min=0.05, max=1.0, help="Flag a pair when this share of either notebook's code is found in the other; default: the one measured on a planted cohort (README).")] = None,
    gradebook: Annotated[Optional[Path], typer.Option("--gradebook", help="The gradebook (SQLite file); default: $AUTOGRADER_GRADEBOOK, else out/gradebook.sqlite in the course folder.")] = None,
    lang: LangOpt = None,
) -> None:
    """Find pairs of students whose code is alike (renamed variables, changed comments, reordered cells and dead code
    included), beyond the starter notebook: leads for a person to judge, never a penalty. Runs on this machine."""
    from .exercise import Exercise
    from .paths import course_dir
    from .similarity import label, write_report
    from .similarity import similarity as find_pairs

    language = spoken()
    _ = translations(language).gettext
    target = out or course_dir() / "out" / "similarity" / exercise
    with _gradebook(gradebook) as book:
        report = find_pairs(book, Exercise(exercise), against or [], threshold)
    write_report(report, target, language)
    console.print(escape(_("{pairs} pair(s) flagged among {compared} notebooks (and {references} of earlier "
                           "cohorts); report in {path}").format(pairs=len(report.pairs), compared=report.compared,
                                                                references=report.references,
                                                                path=str(target / "index.html"))))
    for pair in report.pairs[:10]:
        console.print(f"  {pair.score:.0%}  {escape(label(pair.first))}  {escape(label(pair.second))}")


@command(app)
def extend(
    exercise: Annotated[str, typer.Argument(help="Exercise name.")],
    student: Annotated[str, typer.Argument(help="The student's id (as in the roster).")],
    until: Annotated[str, typer.Option("--until", help="The student's new deadline, e.g. 2026-05-08T23:59+09:00 (without an offset: the course's time zone).")],
    comment: Annotated[str, typer.Option("--comment", help="Why (the student reads it).")] = "",
    by: Annotated[Optional[str], typer.Option("--by", help="Who grants it, for the record; default: this machine's user name.")] = None,
    gradebook: GradebookOpt = None,
    lang: LangOpt = None,
) -> None:
    """Grant one student more time: recorded as a TA decision (who, when), applied at once to the late policy and
    every export, also while the service runs; the student sees their own deadline."""
    import getpass
    from zoneinfo import ZoneInfo

    from .course import course_settings
    from .intake import parse_time
    from .paths import course_dir
    from .scoring import Scorer, decide

    language = spoken()
    _ = translations(language).gettext
    settings = course_settings(course_dir())
    moment = parse_time(until, "--until") if _has_offset(until) else \
        parse_time(until, "--until").replace(tzinfo=ZoneInfo(settings.time_zone))
    with _gradebook(gradebook) as book:
        if not book.rows(exercise, student_id=student):
            raise UserError(L_("{student} has no row in {exercise}; check the id (as in the roster).").format(
                student=student, exercise=exercise))
        decide(book, exercise, student, "extension", by or getpass.getuser(), until=moment, comment=comment)
        deadline = Scorer(book, exercise).deadline_for(student)
    console.print(escape(_("{student}'s deadline for {exercise} is now {when}.").format(
        student=student, exercise=exercise, when=settings.moment(deadline))))


def _has_offset(text: str) -> bool:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.strip()).tzinfo is not None
    except ValueError:
        return True  # parse_time says what is wrong with it


def _can_listen(host: str, port: int) -> None:
    """Say so before any work when the address is taken or not this machine's."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UserError(L_("Cannot listen on {host}:{port} ({problem}); choose another --port or --host.").format(
            host=host, port=port, problem=os.strerror(exc.errno) if exc.errno else str(exc))) from None
