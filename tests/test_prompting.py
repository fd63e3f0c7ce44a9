"""The prompting exercise end to end (its declared wrong answers are graded by test_proofs.py)."""

from __future__ import annotations

import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from conftest import failed_checks, load_hidden_checks, solution_path, student_path

SOLUTION = solution_path("prompting")
MAX_SCORE = 27


@pytest.fixture(scope="module")
def grader():
    return Grader(Exercise("prompting"))


@pytest.fixture(scope="module")
def hidden():
    return load_hidden_checks("prompting")


@pytest.fixture(scope="module")
def llama(grader):
    from autograder.reference import Reference

    ref = Reference(grader.store, "cpu", "float32")
    model_id = grader.exercise.spec.grading_parameters["MODEL_ID"]
    return ref.tokenizer(model_id), ref.model(model_id, "AutoModelForCausalLM")


def test_solution_gets_full_marks(grader):
    result = grader.grade_file(SOLUTION)
    assert result.status == "graded"
    assert failed_checks(result) == set()
    assert result.score == result.max_score == MAX_SCORE


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("prompting"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed"}


def test_grading_inputs_tell_every_shortcut_apart_on_the_model_in_use(grader, hidden, llama):
    """The inputs the hidden checks choose on the model in use catch each shortcut by value: a greedy limit shorter
    than the reply (so an ignored max_new_tokens shows), seeds whose sample is not the greedy reply (so do_sample
    left out shows), and fill_json_profile cases for every shortcut of its budget and stop rule."""
    from types import SimpleNamespace

    from autograder.reference import Reference

    reference = Reference(grader.store, "cpu", "float32")
    exercise = SimpleNamespace(parameters=grader.parameters())
    notebook_limit = exercise.parameters["MAX_NEW_TOKENS"]
    for messages in hidden.CONVERSATIONS.values():
        limit = hidden._greedy_limit(reference, llama, exercise, messages)
        short = hidden._reply(reference, llama, messages, limit, do_sample=False)
        assert short and short != hidden._reply(reference, llama, messages, notebook_limit, do_sample=False)
    messages = hidden.CONVERSATIONS["system+user"]
    greedy = hidden._reply(reference, llama, messages, notebook_limit, do_sample=False)
    for temperature, top_p, first in hidden.SAMPLING:
        seed = hidden._sampling_seed(reference, llama, exercise, temperature, top_p, first)
        sample = hidden._reply(reference, llama, messages, notebook_limit, seed=seed, do_sample=True,
                               temperature=temperature, top_p=top_p)
        assert sample != greedy, (temperature, top_p, seed)
    cases = hidden._fill_cases(reference, llama, exercise)

    def profile(case, budget=None, stops=hidden.STOP_RULES["notebook"]):
        prompt, default = case
        return hidden._greedy_profile(llama, hidden._chat_text(llama, prompt), budget or default, stops)

    for name, stops in hidden.STOP_RULES.items():
        if name != "notebook":
            assert any(profile(c) != profile(c, stops=stops) for c in cases), f"no case reaches the stop rule: {name}"
    for budget in (exercise.parameters["MAX_VALUE_TOKENS"], 4 * max(hidden.FILL_BUDGETS)):
        assert any(profile(c) != profile(c, budget) for c in cases), f"every case gives the same with budget {budget}"
