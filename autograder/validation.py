"""`autograder validate`: prove an exercise sound.

Besides the basics (the solution earns full marks, the blank student notebook nothing, the
student notebook is what `build` makes, the same bytes get the same grade), three proofs:

1. **Copied outputs lose.** The solution runs with the notebook's own parameters; a notebook
   that assigns what that run computed as literals (and whose functions return their first
   result whatever they are asked) is graded with the grading parameters. Every check not
   marked ``@pytest.mark.constant(reason)`` must lose points on it: otherwise the grading
   inputs give the same answer as the notebook's defaults on the model in use, and a student
   who copies a printout passes.
2. **Declared wrong answers lose exactly their checks** (``solutions/<ex>/answers.toml``), and
   the kill matrix shows which answer kills which check: a check no wrong answer kills is a
   check that cannot be shown to fail.
3. **Declared correct variants keep full marks** (equivalent forms must not be punished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nbformat

from .answers import DeclaredAnswer, apply_edits, copied_outputs_notebook, load_answers
from .build import in_sync
from .check_catalog import catalog_problems
from .checking import check_steps, constant_checks
from .course import Environment, course_settings
from .exercise import Exercise
from .grading import GradeOptions, Grader
from .notebook import parameter_values
from .results import GradingResult
from .source import imported_modules
from .submission import Submission

# Parameters that say where and how the notebook runs, not what it computes: the copied-output run keeps them.
RUN_PARAMETERS = ("DEVICE", "DTYPE")


def lost(result: GradingResult) -> dict[str, float]:
    """The share of its points each check lost (checks that could not run here are left out)."""
    return {c.id: 1 - c.points / c.max_points for c in result.checks
            if c.outcome != "not_run" and c.max_points > 0 and c.points < c.max_points}


def answers_file(exercise: Exercise):
    return exercise.solution_notebook.parent / "answers.toml"


def judge_wrong(grader: Grader, solution: nbformat.NotebookNode, answer: DeclaredAnswer,
                steps: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    """Grade a declared wrong answer: the share each check lost, and what is wrong with the declaration."""
    result = grader.grade_bytes(apply_edits(solution, answer.edit, f"wrong answer {answer.name!r}"), answer.name)
    losses = lost(result)
    cascaded = {c.id for c in result.checks if c.missing}
    problems = one_step_problems(answer, {c: v for c, v in losses.items() if c not in cascaded}, steps)
    if result.status != "graded":
        problems.append(f"wrong answer {answer.name!r} ended as '{result.status}': {result.message}")
    if not losses:
        problems.append(f"wrong answer {answer.name!r} keeps full marks: some check must catch it")
    else:
        missed = sorted(set(answer.loses) - set(losses))
        extra = sorted(set(losses) - set(answer.loses))
        if missed:
            problems.append(f"wrong answer {answer.name!r} should lose points on {', '.join(missed)}, but does not")
        if extra:
            problems.append(f"wrong answer {answer.name!r} also loses points on {', '.join(extra)}; "
                            "if that is right, add them to its `loses`")
    for c in result.checks:
        if c.id in losses and not c.message:
            problems.append(f"{c.id} fails wrong answer {answer.name!r} without telling the student why")
    messages = [c.message for c in result.checks if c.id in losses]
    if answer.hint and not any(answer.hint in m for m in messages):
        problems.append(f"no message for wrong answer {answer.name!r} says {answer.hint!r}: {messages}")
    return losses, problems


def imports_outside(environment: Environment, what: str, sources: list[str]) -> list[str]:
    """A problem for every module the code imports that the course's environment does not provide: a notebook
    of the exercise could not run where its students work, and grading refuses the import."""
    if not environment.declared:
        return []
    allowed = environment.modules()
    outside = sorted({m for source in sources for m in imported_modules(source)} - allowed)
    return [f"{what} imports {module}, which is not in the course's environment (course.toml's [environment] "
            f"provides {environment.described()}): declare its package or use another" for module in outside]


def code_of(notebook_bytes: bytes) -> list[str]:
    return [c.source for c in nbformat.reads(notebook_bytes.decode(), as_version=4).cells if c.cell_type == "code"]


def one_step_problems(answer: DeclaredAnswer, losses: dict[str, float], steps: dict[str, str]) -> list[str]:
    """One mistake costs once: a wrong answer loses points only on the checks of the step it gets wrong (or, for
    several independent slips, of the `steps` it declares). A later step's check that loses too judges that step
    against the grader's version of the earlier one, instead of the student's own. (``losses`` leaves out the
    checks that lost only because an earlier cell stopped before making what they judge: nothing can judge those.)"""
    touched = {steps.get(check, check) for check in losses}
    if answer.steps:
        if touched != set(answer.steps):
            return [f"wrong answer {answer.name!r} declares the steps {', '.join(sorted(answer.steps))} but loses "
                    f"points in {', '.join(sorted(touched)) or 'none'}"]
        return []
    if len(touched) <= 1:
        return []
    by_step = "; ".join(f"{step}: {', '.join(sorted(c for c in losses if steps.get(c, c) == step))}"
                        for step in sorted(touched))
    return [f"wrong answer {answer.name!r} is charged in {len(touched)} steps ({by_step}): one mistake must cost "
            "once, so judge each later step on the student's own earlier result (autograder.testing.judged_on), or, "
            "if the answer is several independent slips, declare them as its `steps`"]


def judge_correct(grader: Grader, solution: nbformat.NotebookNode, answer: DeclaredAnswer) -> list[str]:
    """Grade a declared correct variant: it must keep full marks."""
    result = grader.grade_bytes(apply_edits(solution, answer.edit, f"correct answer {answer.name!r}"), answer.name)
    losses = lost(result)
    return [f"correct answer {answer.name!r} loses points on {c.id}: {c.message}" for c in result.checks if c.id in losses]


@dataclass
class CopyProof:
    lost: dict[str, float]  # check id -> share of points the copied-output notebook lost
    kept_parameters: list[str]  # grading parameters whose value the notebook's own equals (not varied)
    same_values: list[str]  # variables equal under the notebook's and the grading parameters
    left_out: list[str]  # values that have no literal form (not copied)
    problems: list[str]
    stand_ins: dict[str, Any] = field(default_factory=dict)  # the exercise's proof_parameters


def copied_output_proof(grader: Grader, solution_bytes: bytes, student: nbformat.NotebookNode,
                        graded_values: dict[str, Any], constant: dict[str, str], ran: set[str],
                        graded_first: dict[str, Any] | None = None) -> CopyProof:
    """Proof 1 of the module's docstring. ``graded_values`` and ``graded_first`` are what the solution's graded run
    read and its functions' first results: a copy of those equal under both parameter sets is why a check keeps
    its points, and the problem names it."""
    grading = grader.parameters()
    own = {**parameter_values(nbformat.reads(solution_bytes.decode(), as_version=4)),
           **grader.resolve(grader.exercise.spec.proof_parameters)}
    defaults = {k: v if k in RUN_PARAMETERS or k not in own else own[k] for k, v in grading.items()}
    seen: list[Submission] = []
    grader.run(solution_bytes, "the solution with its own parameters", parameters=defaults, observe=seen.append)
    values, first_results = seen[0].values_read, seen[0].first_results
    notebook, left_out = copied_outputs_notebook(student, values, first_results)
    losses = lost(grader.grade_bytes(notebook, "outputs copied from the notebook's own parameters"))
    same = sorted(n for n, v in values.items() if n in graded_values and _same(v, graded_values[n]))
    same_first = sorted(f for f, v in first_results.items()
                        if graded_first is not None and f in graded_first and _same(v, graded_first[f]))
    causes = []
    if same:
        causes.append(f"the values {', '.join(same)} are the same under both, so the grading inputs do not change "
                      "them on this model: choose grading inputs whose answer differs")
    if same_first:
        causes.append(f"the first call of {', '.join(f + '(...)' for f in same_first)} returns the same under both, "
                      "and a copy returns that first result whatever it is asked: call it first on an input the "
                      "grading parameters change, or judge more than one call")
    problems = [
        f"{check} keeps its points on outputs copied from a run with the notebook's own parameters: "
        + ("; ".join(causes) if causes else "choose grading inputs whose answer differs on this model")
        + ", or mark the check constant"
        for check in sorted(ran - set(losses) - set(constant))
    ]
    kept = sorted(k for k in grading if k not in RUN_PARAMETERS and k in own and defaults[k] == grading[k])
    spec = grader.exercise.spec
    stand_ins = dict(spec.proof_parameters)
    data = {k for k, v in {**stand_ins, **spec.grading_parameters}.items()
            if str(v).startswith("dataset:")}  # where the data lives: may equal
    problems += [f"grading parameter {k} keeps the notebook's own value, so a value typed in from the notebook passes "
                 "where it should be read from the parameters cell: give it another grading value, or declare it in "
                 "exercise.toml's [constant_parameters] with the reason it cannot vary"
                 for k in kept if k not in data and k not in spec.constant_parameters]
    problems += [f"proof parameter {k} equals its grading value, so copies of what it changes cannot be told apart"
                 for k, v in grader.resolve(stand_ins).items() if k not in data and grading.get(k) == v]
    return CopyProof(losses, kept, same, left_out, problems, stand_ins)


def _same(a: Any, b: Any) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and torch.equal(a, b)
    if type(a) in (list, tuple) and type(b) is type(a):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict and type(b) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@dataclass
class Validation:
    exercise: str
    checks: list[tuple[str, float]] = field(default_factory=list)  # (check id, points) in rubric order of outcomes
    not_run: list[str] = field(default_factory=list)  # checks that cannot run here (CUDA on a CPU runner)
    constant: dict[str, str] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)  # check id -> the step it judges
    copy: CopyProof | None = None
    kills: dict[str, dict[str, float]] = field(default_factory=dict)  # wrong answer -> check -> share lost
    correct: list[str] = field(default_factory=list)  # declared correct variants
    problems: list[str] = field(default_factory=list)


def validate_exercise(name: str, profile: str = "tiny", device: str | None = None) -> Validation:
    """Every proof of the module's docstring; ``problems`` is empty when the exercise is sound. Rubric/check
    mismatches raise UserError from the Grader."""
    exercise = Exercise(name)
    report = Validation(name)
    answers = load_answers(answers_file(exercise))
    environment = course_settings(exercise.root).environment
    with Grader(exercise, GradeOptions(profile=profile, device=device)) as grader:
        problems = report.problems
        problems += [f"the course's environment declares {name}, which is not installed here: install the course's "
                     "pinned packages" for name in environment.missing_packages()]
        problems += imports_outside(environment, "the solution", code_of(exercise.solution_notebook.read_bytes()))
        problems += imports_outside(environment, "the probes", [exercise.probes_source or ""])
        for answer in answers.wrong + answers.correct:
            edited = apply_edits(nbformat.read(exercise.solution_notebook, as_version=4), answer.edit,
                                 f"answer {answer.name!r}")
            problems += imports_outside(environment, f"answer {answer.name!r}", code_of(edited))
        if not exercise.public_check_files:
            problems.append(f"no public checks in {exercise.assignment_dir / 'checks'} (students need at least one)")
        problems += catalog_problems(exercise)
        if not in_sync(exercise):
            problems.append(f"{exercise.student_notebook} differs from what `autograder build {name}` generates; run it")
        solution_bytes = exercise.solution_notebook.read_bytes()
        seen: list[Submission] = []
        solution = grader.rubric.score(grader.run(solution_bytes, "solution", observe=seen.append))
        # a rubric's manual items are a TA's to score, not checks: nothing here can prove them
        report.checks = [(c.id, c.max_points) for c in solution.checks if c.outcome != "awaiting"]
        report.not_run = [c.id for c in solution.checks if c.outcome == "not_run"]
        if solution.status != "graded":
            problems.append(f"the solution notebook ended as '{solution.status}': {solution.message}")
        problems += [f"the solution fails {c.id}: {c.message}" for c in solution.checks if c.outcome in ("failed", "error")]
        again = grader.grade_bytes(solution_bytes, "solution, again")
        if _outcomes(again) != _outcomes(solution):
            problems.append("the solution graded twice got different outcomes: "
                            + "; ".join(f"{a} / {b}" for a, b in zip(_outcomes(solution), _outcomes(again)) if a != b))
        if not exercise.student_notebook.is_file():
            problems.append(f"there is no student notebook {exercise.student_notebook}; run `autograder build {name}`")
            return report
        student = nbformat.read(exercise.student_notebook, as_version=4)
        blank = grader.grade_file(exercise.student_notebook)
        problems += [f"the blank student notebook earns {c.points:g} points on {c.id}" for c in blank.checks if c.points > 0]

        ran = {c for c, _ in report.checks} - set(report.not_run)
        report.constant = constant_checks(exercise)
        report.copy = copied_output_proof(grader, solution_bytes, student, seen[0].values_read, report.constant, ran,
                                          seen[0].first_results)
        problems += report.copy.problems

        solution_nb = nbformat.reads(solution_bytes.decode(), as_version=4)
        if not answers.wrong:
            problems.append(f"no wrong answers are declared in {answers_file(exercise)}: declare the mistakes "
                            "students make, so each check is shown to catch one")
        report.steps = check_steps(exercise)
        for answer in answers.wrong:
            report.kills[answer.name], found = judge_wrong(grader, solution_nb, answer, report.steps)
            problems += found
        for answer in answers.correct:
            report.correct.append(answer.name)
            problems += judge_correct(grader, solution_nb, answer)
        killed = {check for losses in report.kills.values() for check in losses}
        problems += [f"no declared wrong answer loses points on {check}: declare one it catches"
                     for check in sorted(ran - killed)]
    return report


def _outcomes(result: GradingResult) -> list[tuple[str, str, str]]:
    return [(c.id, c.outcome, c.message) for c in result.checks]
