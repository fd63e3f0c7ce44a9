"""The tokenizer exercise end to end (its declared answers are graded by test_proofs.py)."""

from __future__ import annotations


import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from conftest import failed_checks, load_hidden_checks, solution_path, student_path

SOLUTION = solution_path("tokenizer")


@pytest.fixture(scope="module")
def grader():
    return Grader(Exercise("tokenizer"))


@pytest.fixture(scope="module")
def hidden():
    return load_hidden_checks("tokenizer")


def test_solution_gets_full_marks(grader):
    result = grader.grade_file(SOLUTION)
    assert result.status == "graded"
    assert failed_checks(result) == set()
    assert result.score == result.max_score == 40


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("tokenizer"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed"}


def test_hidden_sampler_cases_are_unambiguous(hidden):
    """Each top-p boundary is far from a cumulative mass, every allowed id is likely, and ranks are not ids."""
    for name, p in hidden.TOP_P_CASES:
        probs = hidden.DISTRIBUTIONS[name]
        cumulative = probs.sort(descending=True).values.cumsum(0)
        assert (cumulative - p).abs().min() >= 0.05 - 1e-6
    cases = [(n, hidden.top_k_set(hidden.DISTRIBUTIONS[n], k)) for n, k in hidden.TOP_K_CASES]
    cases += [(n, hidden.nucleus(hidden.DISTRIBUTIONS[n], p)) for n, p in hidden.TOP_P_CASES]
    assert sorted(len(allowed) for _, allowed in cases) == [1, 3, 3, 4, 5]
    for name, allowed in cases:
        probs = hidden.DISTRIBUTIONS[name]
        kept = probs[sorted(allowed)]
        assert (kept / kept.sum()).min() >= 0.17
        assert allowed != set(range(len(allowed))), "ranks 0..n-1 would pass as ids"


def test_hidden_words_mix_one_token_and_multi_token_words(grader, hidden):
    """On the model in use, averaging over a word's tokens matters for some hidden words and not for others."""
    from autograder.reference import Reference

    tokenizer = Reference(grader.store, "cpu", "float32").tokenizer("meta-llama/Llama-3.2-1B-Instruct")
    lengths = [len(tokenizer(w, add_special_tokens=False).input_ids) for w in hidden.HIDDEN_WORDS]
    assert min(lengths) == 1 and max(lengths) > 1
