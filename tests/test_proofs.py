"""Every bundled exercise passes validate's proofs, one test per declared answer (so they run in parallel).

The same functions `autograder validate` uses judge each answer: a wrong answer loses exactly the checks its
`solutions/<ex>/answers.toml` entry names, a correct variant keeps full marks, outputs copied from a run with the
notebook's own parameters lose every check not marked constant, and the same bytes always get the same grade.
"""

from __future__ import annotations

import nbformat
import pytest

from autograder.answers import load_answers
from autograder.checking import constant_checks
from autograder.exercise import Exercise, available
from autograder.grading import Grader
from autograder.validation import answers_file, copied_output_proof, judge_correct, judge_wrong
from conftest import failed_checks, solution_path, student_path

EXERCISES = available()
ANSWERS = {name: load_answers(answers_file(Exercise(name))) for name in EXERCISES}
_GRADERS: dict[str, Grader] = {}


def grader_for(exercise: str) -> Grader:
    if exercise not in _GRADERS:
        _GRADERS[exercise] = Grader(Exercise(exercise))
    return _GRADERS[exercise]


def _solution(exercise: str) -> nbformat.NotebookNode:
    return nbformat.read(solution_path(exercise), as_version=4)


def _cases(kind: str) -> list:
    return [pytest.param(ex, a, id=f"{ex}: {a.name}") for ex in EXERCISES for a in getattr(ANSWERS[ex], kind)]


def test_every_exercise_declares_wrong_answers():
    assert all(ANSWERS[ex].wrong for ex in EXERCISES), {ex: len(ANSWERS[ex].wrong) for ex in EXERCISES}


@pytest.mark.parametrize(("exercise", "answer"), _cases("wrong"))
def test_declared_wrong_answer_loses_exactly_its_checks(exercise, answer):
    losses, problems = judge_wrong(grader_for(exercise), _solution(exercise), answer)
    assert problems == []
    assert set(losses) == set(answer.loses)


@pytest.mark.parametrize(("exercise", "answer"), _cases("correct"))
def test_declared_correct_answer_keeps_full_marks(exercise, answer):
    assert judge_correct(grader_for(exercise), _solution(exercise), answer) == []


@pytest.mark.parametrize("exercise", EXERCISES)
def test_copied_outputs_lose_every_check_not_declared_constant(exercise):
    grader = grader_for(exercise)
    seen = []
    solution = grader.rubric.score(grader.run(solution_path(exercise).read_bytes(), "solution", observe=seen.append))
    assert failed_checks(solution) == set()
    ran = {c.id for c in solution.checks if c.outcome != "not_run"}
    constant = constant_checks(Exercise(exercise))
    proof = copied_output_proof(grader, solution_path(exercise).read_bytes(),
                                nbformat.read(student_path(exercise), as_version=4), seen[0].values_read, constant, ran)
    assert proof.problems == []
    assert set(proof.lost) == ran - set(constant) | (set(proof.lost) & set(constant))
    assert not proof.left_out, "every value the checks read has a literal form, so the copy is complete"


def _random_cases() -> list:
    return [pytest.param(ex, a, id=f"{ex}: {a.name}") for ex in EXERCISES for a in ANSWERS[ex].wrong if a.random]


@pytest.mark.parametrize(("exercise", "answer"), _random_cases())
def test_randomness_sensitive_answer_gets_the_same_grade_every_time(exercise, answer):
    """Seeded from the notebook's bytes: three gradings of the same file, three identical outcomes."""
    from autograder.answers import apply_edits

    grader = grader_for(exercise)
    data = apply_edits(_solution(exercise), answer.edit, answer.name)
    runs = [[(c.id, c.outcome, c.message) for c in grader.grade_bytes(data, answer.name).checks] for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]
    assert {c for c, outcome, _ in runs[0] if outcome == "failed"} == set(answer.loses)


def test_every_exercise_has_a_randomness_sensitive_answer_where_it_samples():
    sampling = {"tokenizer", "prompting", "sft_lora"}
    assert sampling <= {ex for ex in EXERCISES if any(a.random for a in ANSWERS[ex].wrong)}
