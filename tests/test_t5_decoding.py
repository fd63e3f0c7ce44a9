"""The t5_decoding exercise end to end (its declared wrong answers are graded by test_proofs.py)."""

from __future__ import annotations

import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from conftest import failed_checks, load_hidden_checks, mutate, solution_path, student_path, with_cells_appended

SOLUTION = solution_path("t5_decoding")


@pytest.fixture(scope="module")
def grader():
    return Grader(Exercise("t5_decoding"))


def test_solution_gets_full_marks(grader):
    result = grader.grade_file(SOLUTION)
    assert result.status == "graded"
    assert failed_checks(result) == set()
    assert result.score == result.max_score == 17  # 18 in the rubric, minus the CUDA-only check
    cuda = next(c for c in result.checks if c.id == "test_half_precision_on_cuda")
    assert cuda.outcome == "not_run" and "CUDA" in cuda.message


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("t5_decoding"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed", "not_run"}


def test_eq_always_true_and_lying_tensor_score_zero_on_those_checks(grader):
    forged = with_cells_appended(
        SOLUTION,
        "class Anything:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
        "next_token_id = Anything()\ntranslation = Anything()",
        "class Liar(torch.Tensor):\n    @property\n    def shape(self):\n"
        "        return torch.Size([1, len(tokenizer(PROMPT).input_ids), model.config.d_model])\n"
        "encoder_hidden = torch.zeros(3).as_subclass(Liar)",
    )
    result = grader.grade_bytes(forged, "forged")
    assert failed_checks(result) == {"test_next_token_argmax", "test_translation", "test_encoder_output_shape",
                                     "test_encoder_output_values"}
    messages = {c.id: c.message for c in result.checks}
    assert "Anything object" in messages["test_next_token_argmax"]
    assert "(3,)" in messages["test_encoder_output_shape"]


def test_greedy_decode_cases_exercise_both_stopping_rules(grader):
    """On the model in use, the chosen hidden cases end at EOS and at the length limit, and each shortcut of the loop
    (no EOS stop, the notebook's length or prompt) gives other ids on one of them."""
    from types import SimpleNamespace

    from autograder.reference import Reference

    hidden = load_hidden_checks("t5_decoding")
    ref = Reference(grader.store, "cpu", "float32")
    t5 = ref.tokenizer("google-t5/t5-small"), ref.model("google-t5/t5-small", "AutoModelForSeq2SeqLM")
    exercise = SimpleNamespace(parameters=grader.parameters())
    cases = hidden.decode_cases(ref, exercise, t5)
    assert len(cases) == hidden.DECODE_CASES == len(set(cases))
    stopped_at_eos = []
    for prompt, limit in cases:
        ids = t5[1].generate(**t5[0](prompt, return_tensors="pt"), do_sample=False, max_new_tokens=limit)[0]
        stopped_at_eos.append(len(ids) - 1 < limit)
    assert any(stopped_at_eos) and not all(stopped_at_eos)
    assert len({prompt for prompt, _ in cases}) > 1 and len({limit for _, limit in cases}) > 1

def test_infinite_loop_is_stopped_by_the_cell_timeout():
    from autograder.grading import GradeOptions
    from autograder.runners.base import RunLimits

    grader = Grader(Exercise("t5_decoding"), GradeOptions(limits=RunLimits(cell_timeout=15, notebook_timeout=300)))
    result = grader.grade_bytes(mutate(SOLUTION, ("translation = tokenizer.decode(", "while True:\n    pass\ntranslation = tokenizer.decode(")), "loop")
    assert result.status == "graded"
    assert failed_checks(result) == {"test_translation"}
    [cell] = result.diagnostics.problem_cells
    assert cell.status == "timeout" and "time limit" in cell.error
    assert cell.number == _code_cell_number(SOLUTION, "translation = tokenizer.decode(")


def _code_cell_number(path, text: str) -> int:
    """The student's count ("code cell N") of the first code cell containing text."""
    import nbformat

    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return next(i for i, c in enumerate(code, 1) if text in c.source)


def test_feedback_names_the_first_error_in_the_students_own_cell_numbers(grader):
    """A later NameError is only an echo: the message points at the cell that raised first, counted as the student
    counts (the grader's injected cells are not counted)."""
    setter = 'input_ids = tokenizer(PROMPT, return_tensors="pt").input_ids.to(DEVICE)'
    result = grader.grade_bytes(mutate(SOLUTION, (setter, "raise RuntimeError('tokenizer broke')")), "early error")
    number = _code_cell_number(SOLUTION, setter)
    message = next(c.message for c in result.checks if c.id == "test_encoder_output_shape")
    assert f"Code cell {number} stopped earlier with RuntimeError: tokenizer broke" in message, message
    assert "NameError" not in message
    assert [c.number for c in result.diagnostics.problem_cells][0] == number


def test_a_check_that_cannot_run_here_is_reported_as_not_run_once(grader):
    result = grader.grade_file(SOLUTION)
    [cuda] = [t for t in result.gradescope()["tests"] if t["number"] == "test_half_precision_on_cuda"]
    assert "status" not in cuda and cuda["max_score"] == 0
    assert cuda["output"].startswith("not run: ") and cuda["output"].count("not run") == 1
