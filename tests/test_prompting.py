"""The prompting exercise end to end: right answers score, realistic wrong ones lose exactly their points."""

from __future__ import annotations

import json

import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from conftest import load_hidden_checks, failed_checks, mutate, points_lost, solution_path, student_path

SOLUTION = solution_path("prompting")
MAX_SCORE = 26


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


# Each case: edits to the solution, the points it must lose per check (partial checks lose the
# share of their cases that fail), and what the feedback must tell the student.
WRONG = {
    # The prompt then ends after the user's turn; fill_json_profile builds on render_chat, so the
    # model fills the JSON values from the wrong context too.
    "chat template without generation prompt": (
        [("apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
          "apply_chat_template(messages, tokenize=False)")],
        {"test_chat_prompt": 1, "test_render_chat_hidden_messages": 2, "test_fill_json_profile_is_greedy": 3},
        "add_generation_prompt=True",
    ),
    # A strict json.loads rejects it; a lax extractor in the check would have let it through.
    "JSON followed by trailing prose": (
        [("    return reply + '\"}'", "    return reply + '\"}\\nHope you like this character!'")],
        {"test_profile_json": 1, "test_fill_json_profile_is_greedy": 3},
        "JSON on its own",
    ),
    # Right on the example with all seven parts, wrong on the hidden cases that leave parts out.
    "build_prompt keeps empty components": (
        [("part.strip() for part in parts if part.strip())", "part.strip() for part in parts)")],
        {"test_build_prompt_hidden_components": 2},
        "leave out the empty ones",
    ),
    "CoT list ends with an assistant turn": (
        [('        {"role": "user", "content": question},\n',
          '        {"role": "user", "content": question},\n        {"role": "assistant", "content": ""},\n')],
        {"test_cot_messages_structure": 2},
        "must be the user's question",
    ),
    "CoT example gives the answer without reasoning": (
        [('{"role": "assistant", "content": COT_EXAMPLE_ANSWER}', '{"role": "assistant", "content": "15"}')],
        {"test_cot_messages_structure": 2},
        "shows no calculation",
    ),
    # Five of the seven hidden texts have an earlier number than the final one.
    "extract_answer takes the first number": (
        [("last = numbers[-1]", "last = numbers[0]")],
        {"test_extract_answer_hidden_texts": 2 * 5 / 7},
        "take the last number",
    ),
    # One of the ten hidden outputs is single-quoted pseudo-JSON.
    "extract_json repairs single quotes": (
        [('    except json.JSONDecodeError as exc:\n        raise ValueError(f"the JSON object is not valid: {exc}") '
          "from exc\n",
          "    except json.JSONDecodeError:\n        import ast\n"
          '        return ast.literal_eval(text[start:text.rindex("}") + 1])\n')],
        {"test_extract_json_hidden_outputs": 3 / 10},
        "should raise ValueError",
    ),
    "sampling where greedy is asked": (
        [("_chat_generate(messages, max_new_tokens, do_sample=False)",
          "_chat_generate(messages, max_new_tokens, do_sample=True)")],
        {"test_greedy_reply_deterministic": 3},
        "do_sample=False",
    ),
    "sample_reply without the seed": (
        [("    torch.manual_seed(seed)\n", "")],
        {"test_sample_reply_replays_seed": 3},
        "torch.manual_seed(seed)",
    ),
}


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_submission_loses_exactly_its_points(grader, case):
    edits, expected_loss, hint = WRONG[case]
    result = grader.grade_bytes(mutate(SOLUTION, *edits), case)
    assert result.status == "graded"
    assert points_lost(result) == pytest.approx(expected_loss, abs=1e-5)
    assert result.score == pytest.approx(MAX_SCORE - sum(expected_loss.values()), abs=1e-5)
    messages = [c.message for c in result.checks if c.id in expected_loss]
    assert all(messages), "a check failed without telling the student why"
    assert any(hint in m for m in messages), messages


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
