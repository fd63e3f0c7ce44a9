"""The sft_lora exercise end to end: right answers score, realistic wrong ones lose exactly their points."""

from __future__ import annotations


import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from autograder.reference import Reference
from conftest import load_hidden_checks, failed_checks, mutate, solution_path, student_path

SOLUTION = solution_path("sft_lora")
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"


@pytest.fixture(scope="module")
def grader():
    return Grader(Exercise("sft_lora"))


def test_solution_gets_full_marks(grader):
    result = grader.grade_file(SOLUTION)
    assert result.status == "graded"
    assert failed_checks(result) == set()
    assert result.score == result.max_score == 19


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("sft_lora"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed"}


# case: (edits to the solution, the checks it must fail, a phrase the named check's message must contain)
WRONG = {
    "ratio in percent": (
        [("trainable_fraction = trainable_params / total_params",
          "trainable_fraction = 100 * trainable_params / total_params")],
        {"test_trainable_fraction"},
        ("test_trainable_fraction", "percentage"),
    ),
    "total counted without the LoRA parameters": (
        [("total_params = sum(p.numel() for p in model.parameters())",
          "total_params = sum(p.numel() for p in model.parameters() if not p.requires_grad)")],
        {"test_trainable_fraction"},
        ("test_trainable_fraction", "base model's parameters"),
    ),
    "LoRA on every attention projection": (
        [('target_modules=["q_proj", "v_proj"]', 'target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]')],
        {"test_lora_settings", "test_trainable_parameter_count", "test_trainable_fraction",
         "test_only_lora_parameters_require_grad"},
        ("test_only_lora_parameters_require_grad", "outside q_proj/v_proj"),
    ),
    "shuffled without the seed": (
        [(".shuffle(seed=42)", ".shuffle()")],
        {"test_rows_are_seed_42_shuffle"},
        ("test_rows_are_seed_42_shuffle", "seed-42"),
    ),
    "formatted without the chat template": (
        [('return {"text": tokenizer.apply_chat_template(example["messages"], tokenize=False)}',
          'return {"text": "\\n".join(f"{m[\'role\']}: {m[\'content\']}" for m in example["messages"])}')],
        {"test_format_example", "test_training_texts_use_chat_template"},
        ("test_training_texts_use_chat_template", "apply_chat_template"),
    ),
    "trained for an epoch instead of MAX_STEPS": (
        [("    max_steps=MAX_STEPS,\n", "")],
        {"test_training_ran"},
        ("test_training_ran", "MAX_STEPS"),
    ),
    "adapter never saved": (
        [("trainer.model.save_pretrained(OUTPUT_DIR)\ntokenizer.save_pretrained(OUTPUT_DIR)\n", "")],
        {"test_adapter_saved", "test_reloaded_logits_match_trained", "test_merged_logits_match_trained"},
        ("test_adapter_saved", "save_pretrained"),
    ),
    "merged into the trained model in place": (
        [("merged_model = PeftModel.from_pretrained(load_base_model(), OUTPUT_DIR).merge_and_unload().eval()",
          "merged_model = model.merge_and_unload().eval()")],
        # `model` loses its LoRA layers: its base weights now hold W + BA, and the adapter it trained is gone.
        {"test_base_weights_unchanged", "test_only_lora_parameters_require_grad", "test_lora_b_matrices_trained",
         "test_adapter_saved", "test_next_token_logits_match_grader", "test_answers_before_and_after"},
        ("test_base_weights_unchanged", "merge"),
    ),
    "answer decoded with the prompt": (
        [('new_tokens = output[0, inputs["input_ids"].shape[1]:]', "new_tokens = output[0]")],
        {"test_answers_before_and_after"},
        ("test_answers_before_and_after", "repeats the prompt"),
    ),
    "logits of the first position": (
        [("return lm(**inputs).logits[0, -1]", "return lm(**inputs).logits[0, 0]")],
        {"test_next_token_logits_match_grader"},
        ("test_next_token_logits_match_grader", "last position"),
    ),
}


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_submission_loses_exactly_its_points(grader, case):
    edits, expected_failures, (check_id, phrase) = WRONG[case]
    result = grader.grade_bytes(mutate(SOLUTION, *edits), case)
    assert result.status == "graded"
    assert failed_checks(result) == expected_failures
    lost = sum(c.max_points - c.points for c in result.checks)
    assert result.score == result.max_score - lost
    messages = {c.id: c.message for c in result.checks}
    assert all(messages[c] for c in expected_failures), "a check failed without telling the student why"
    assert phrase in messages[check_id]


@pytest.fixture(scope="module")
def hidden():
    return load_hidden_checks("sft_lora")


@pytest.fixture(scope="module")
def tiny_llama(grader):
    reference = Reference(grader.store, "cpu", "float32")
    return reference.tokenizer(LLAMA), reference.model(LLAMA), reference.fresh_model(LLAMA)


def test_lora_count_from_config_matches_peft(hidden, tiny_llama):
    """The grader's formula agrees with peft on the stand-in, whose v_proj is narrower than q_proj (GQA)."""
    from peft import LoraConfig, get_peft_model

    config = tiny_llama[1].config
    assert config.num_key_value_heads < config.num_attention_heads
    wrapped = get_peft_model(tiny_llama[2], LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                       task_type="CAUSAL_LM"))
    assert hidden.lora_parameter_count(config) == wrapped.get_nb_trainable_parameters()[0]


class Values:
    """A stand-in for the `submission` fixture that only holds variables."""

    def __init__(self, **values):
        self.values = values

    def value(self, name):
        return self.values[name]


FRACTIONS = {  # (ratio from the trainable and total counts, phrase the failure message must contain; None: passes)
    "right": (lambda t, n: t / n, None),
    "percent": (lambda t, n: 100 * t / n, "percentage"),
    "upside down": (lambda t, n: n / t, "upside down"),
    "base model as denominator": (lambda t, n: t / (n - t), "base model's parameters"),
    "base model as denominator, in percent": (lambda t, n: 100 * t / (n - t), "base model's parameters"),
    "trainable as denominator": (lambda t, n: t / t, "trainable parameters themselves"),
    "something else": (lambda t, n: 0.5 * t / n, "expected"),
    "not a number": (lambda t, n: float("nan"), "finite float"),
}


@pytest.mark.parametrize("case", list(FRACTIONS), ids=list(FRACTIONS))
def test_fraction_message_names_the_mistake(hidden, tiny_llama, case):
    ratio, phrase = FRACTIONS[case]
    trainable = hidden.lora_parameter_count(tiny_llama[1].config)
    total = trainable + sum(p.numel() for p in tiny_llama[1].parameters())
    submission = Values(trainable_fraction=ratio(trainable, total))
    if phrase is None:
        hidden.test_trainable_fraction(submission, tiny_llama[:2])
        return
    with pytest.raises(AssertionError) as failure:
        hidden.test_trainable_fraction(submission, tiny_llama[:2])
    assert phrase in str(failure.value)
