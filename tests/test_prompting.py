"""The prompting exercise end to end (its declared wrong answers are graded by test_proofs.py)."""

from __future__ import annotations

import json

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


def test_hidden_cases_discriminate_on_the_model_in_use(hidden, llama):
    """On the model in use, the hidden inputs give non-trivial expected values that wrong answers would miss."""
    tokenizer = llama[0]
    for messages in hidden.CONVERSATIONS.values():
        assert hidden._reply(llama, messages, 12, do_sample=False), "a greedy case with an empty reply checks little"
    # fill_json_profile: in every case the token budget cuts some value short, and some values end
    # at a stop token before the budget.
    stopped_early = 0
    for prompt, budget in hidden.FILL_CASES:
        chat_text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)
        profile, cut_by_budget = {}, 0
        for key in hidden.PROFILE_KEYS:
            before = json.dumps({**profile, key: ""}, ensure_ascii=False)[:-2]
            profile[key] = hidden._greedy_value(llama, chat_text + before, budget)
            longer = hidden._greedy_value(llama, chat_text + before, budget + 8)
            cut_by_budget += longer != profile[key]
            stopped_early += longer == profile[key]
        assert cut_by_budget, f"max_value_tokens={budget} cuts no value short for {prompt[:40]!r}"
    assert stopped_early, "no hidden value ends at a stop token"
