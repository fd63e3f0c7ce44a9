"""The tokenizer exercise end to end: right answers score, realistic wrong ones lose exactly their points."""

from __future__ import annotations


import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from conftest import load_hidden_checks, failed_checks, mutate, points_lost, solution_path, student_path

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
    assert result.score == result.max_score == 33


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("tokenizer"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed"}


def test_other_correct_answers_keep_full_marks(grader):
    """The checks judge results, not the solution's wording: different correct code scores the same."""
    other = mutate(
        SOLUTION,
        ("tokenizer(PROMPT, return_tensors=\"pt\").input_ids", "tokenizer.encode(PROMPT, return_tensors=\"pt\")"),
        ("model.get_input_embeddings()(input_ids)", "model.model.embed_tokens(input_ids)"),
        ("torch.topk(next_token_probs, k=10).indices.tolist()",
         "next_token_probs.sort(descending=True).indices[:10].tolist()"),
        ("    return torch.softmax(logits.float() / temperature, dim=-1)",
         "    scaled = logits.float() / temperature\n"
         "    scaled = scaled - scaled.max(dim=-1, keepdim=True).values\n"
         "    return scaled.exp() / scaled.exp().sum(dim=-1, keepdim=True)"),
        ("    return int(torch.multinomial(filtered / filtered.sum(), num_samples=1, generator=generator))",
         "    rank = torch.multinomial(filtered[order], num_samples=1, generator=generator)\n"
         "    return int(order[rank])"),
        ("    unit = vectors.float() / vectors.float().norm(dim=-1, keepdim=True)\n    return unit @ unit.T",
         "    v = vectors.float()\n"
         "    return torch.nn.functional.cosine_similarity(v.unsqueeze(1), v.unsqueeze(0), dim=-1)"),
    )
    result = grader.grade_bytes(other, "other correct answers")
    assert failed_checks(result) == set()
    assert result.score == result.max_score


# Each case: edits to the solution, and the points it must lose per check (partial checks lose
# their share of failed cases).
WRONG = {
    "probabilities from the first position instead of the last": (
        [("torch.softmax(logits[0, -1].float(), dim=-1)  # SOLUTION", "torch.softmax(logits[0, 0].float(), dim=-1)")],
        {"test_top10_matches_reference": 2, "test_top10_consistent_with_logits": 1, "test_greedy_next_token": 2},
    ),
    "top-10 in increasing order (argsort, last ten)": (
        [("torch.topk(next_token_probs, k=10).indices.tolist()", "next_token_probs.argsort()[-10:].tolist()")],
        {"test_top10_format": 1, "test_top10_matches_reference": 2},
    ),
    "BOS missing from the prompt": (
        [("tokenizer(PROMPT, return_tensors=\"pt\")",
          "tokenizer(PROMPT, return_tensors=\"pt\", add_special_tokens=False)")],
        # Without BOS the distribution shifts; on the tiny model its argmax happens to stay the same.
        {"test_prompt_token_ids": 1, "test_top10_matches_reference": 2},
    ),
    "softmax without the temperature": (
        [("torch.softmax(logits.float() / temperature, dim=-1)", "torch.softmax(logits.float(), dim=-1)")],
        # t=1 still passes: two of the three value cases fail, and both limits.
        {"test_softmax_with_temperature_values": 2, "test_softmax_with_temperature_limits": 2},
    ),
    "top-p drops the token that takes the total past p": (
        [("mass_before >= top_p", "mass_before + sorted_probs > top_p")],
        {"test_sampler_top_p_support": 3},
    ),
    "cosine similarity without normalisation": (
        [("unit = vectors.float() / vectors.float().norm(dim=-1, keepdim=True)", "unit = vectors.float()")],
        {"test_cosine_similarity_structure": 1, "test_cosine_similarity_values": 2},
    ),
    "Japanese decoded without skipping the BOS token": (
        [("tokenizer.decode(japanese_ids, skip_special_tokens=True)", "tokenizer.decode(japanese_ids)")],
        {"test_japanese_round_trip": 1},
    ),
    "three independent slips: no ValueError, BOS in word vectors, sampler returns the rank": (
        [("    if temperature <= 0:\n"
          "        raise ValueError(f\"temperature must be positive, got {temperature}\")\n", ""),
         ("tokenizer(word, add_special_tokens=False).input_ids", "tokenizer(word).input_ids"),
         ("torch.multinomial(filtered / filtered.sum(),", "torch.multinomial(filtered[order] / filtered.sum(),")],
        {"test_softmax_with_temperature_rejects_nonpositive": 1, "test_word_vectors": 2,
         "test_sampler_top_k_support": 2, "test_sampler_top_p_support": 3},
    ),
}


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_submission_loses_exactly_its_points(grader, case):
    edits, expected_loss = WRONG[case]
    result = grader.grade_bytes(mutate(SOLUTION, *edits), case)
    assert result.status == "graded"
    assert failed_checks(result) == set(expected_loss)
    assert points_lost(result) == pytest.approx(expected_loss)
    assert result.score == pytest.approx(result.max_score - sum(expected_loss.values()))
    for check in result.checks:
        if check.id in expected_loss:
            assert check.message, f"{check.id} failed without telling the student why"


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
