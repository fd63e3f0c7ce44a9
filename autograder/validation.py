"""`autograder validate`: an exercise is sound when its own solution and blank notebook grade as they must."""

from __future__ import annotations

from .build import in_sync
from .exercise import Exercise
from .grading import GradeOptions, Grader


def validate_exercise(name: str, profile: str = "tiny", device: str | None = None) -> list[str]:
    """Problems found (empty when sound). Rubric/check mismatches raise UserError from the Grader."""
    exercise = Exercise(name)
    grader = Grader(exercise, GradeOptions(profile=profile, device=device))
    problems = []
    if not exercise.public_check_files:
        problems.append(f"no public checks in {exercise.assignment_dir / 'checks'} (students need at least one)")
    if not in_sync(exercise):
        problems.append(f"{exercise.student_notebook} differs from what `autograder build {name}` generates; run it")
    solution = grader.grade_file(exercise.solution_notebook)
    if solution.status != "graded":
        problems.append(f"the solution notebook ended as '{solution.status}': {solution.message}")
    for c in solution.checks:
        if c.outcome in ("failed", "error"):
            problems.append(f"the solution fails {c.id}: {c.message}")
    if exercise.student_notebook.is_file():
        blank = grader.grade_file(exercise.student_notebook)
        for c in blank.checks:
            if c.points > 0:
                problems.append(f"the blank student notebook earns {c.points:g} points on {c.id}")
    return problems
