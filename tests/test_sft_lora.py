"""The sft_lora exercise end to end (its declared answers are graded by test_proofs.py)."""

from __future__ import annotations


import pytest

from autograder.exercise import Exercise
from autograder.grading import Grader
from autograder.reference import Reference
from conftest import failed_checks, load_hidden_checks, solution_path, student_path

SOLUTION = solution_path("sft_lora")
LLAMA = "meta-llama/Llama-3.2-1B-Instruct"


@pytest.fixture(scope="module")
def grader():
    return Grader(Exercise("sft_lora"))


def test_solution_gets_full_marks(grader):
    result = grader.grade_file(SOLUTION)
    assert result.status == "graded"
    assert failed_checks(result) == set()
    assert result.score == result.max_score == 23


def test_blank_student_notebook_gets_zero(grader):
    result = grader.grade_file(student_path("sft_lora"))
    assert result.score == 0
    assert {c.outcome for c in result.checks} == {"failed"}


@pytest.fixture(scope="module")
def hidden():
    return load_hidden_checks("sft_lora")


@pytest.fixture(scope="module")
def reference(grader):
    return Reference(grader.store, "cpu", "float32")


@pytest.fixture(scope="module")
def tiny_llama(reference):
    return reference.tokenizer(LLAMA), reference.model(LLAMA), reference.fresh_model(LLAMA)


@pytest.mark.parametrize("r", [4, 8])
def test_lora_count_on_the_meta_device_matches_peft_on_the_real_model(hidden, reference, tiny_llama, r):
    """The grader's count (peft on a meta-device copy) agrees with peft on the stand-in itself, whose v_proj is
    narrower than q_proj (grouped-query attention), and with the textbook's GPT-2 figure."""
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config

    config = tiny_llama[1].config
    assert config.num_key_value_heads < config.num_attention_heads
    wrapped = get_peft_model(reference.fresh_model(LLAMA), LoraConfig(r=r, target_modules=["q_proj", "v_proj"],
                                                                      task_type="CAUSAL_LM"))
    assert hidden.lora_parameter_count(reference, config, r) == wrapped.get_nb_trainable_parameters()[0]
    gpt2 = GPT2Config(n_layer=12, n_embd=768, n_head=12)
    assert hidden.peft_trainable(reference, gpt2, 8, ["c_attn"]) == 294_912


def test_a_wrappable_copy_shares_the_weights_and_leaves_the_shared_model_as_it_was(reference, tiny_llama):
    """The grader wraps the student's LoRA around its shared model's weights without copying them (at real sizes
    a second copy does not fit beside the student's process), and the shared model is untouched."""
    import torch
    from peft import LoraConfig, get_peft_model

    tokenizer, shared, _fresh = tiny_llama
    names = [name for name, _parameter in shared.named_parameters()]
    inputs = tokenizer("The weights stay where they are.", return_tensors="pt")
    with torch.no_grad():
        before = shared(**inputs).logits
    wrapped = get_peft_model(reference.wrappable(LLAMA), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                    task_type="CAUSAL_LM")).eval()
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if ".lora_B." in name:
                parameter.fill_(0.01)  # a trained adapter: the wrapped model's logits move
        moved = wrapped(**inputs).logits
        after = shared(**inputs).logits
    base_layer = wrapped.get_submodule("base_model.model.model.layers.0.self_attn.q_proj.base_layer")
    assert base_layer.weight is shared.get_submodule("model.layers.0.self_attn.q_proj").weight  # shared, not copied
    assert [name for name, _parameter in shared.named_parameters()] == names  # no LoRA layer in the shared model
    assert torch.equal(before, after) and not torch.allclose(moved, before)


class GradingParameters:
    """A stand-in for the `exercise` fixture: the grading parameters alone."""

    parameters = {"LORA_R": 4}


class Values:
    """A stand-in for the `submission` fixture that only holds variables."""

    def __init__(self, **values):
        self.values = values

    def value(self, name):
        return self.values[name]

    def words_of(self, name):
        return None  # no cells: every step is judged on the grader's own counts


FRACTIONS = {  # (ratio from the trainable and total counts, phrase the failure message must contain; None: passes)
    "right": (lambda t, n: t / n, None),
    "percent": (lambda t, n: 100 * t / n, "percentage"),
    "upside down": (lambda t, n: n / t, "upside down"),
    "base model as denominator": (lambda t, n: t / (n - t), "base model's parameters"),
    "base model as denominator, in percent": (lambda t, n: 100 * t / (n - t), "base model's parameters"),
    "trainable as denominator": (lambda t, n: t / t, "trainable parameters themselves"),
    "something else": (lambda t, n: 0.5 * t / n, "expected"),
    "not a number": (lambda t, n: float("nan"), "finite float"),
    "rounded for printing": (lambda t, n: round(t / n, 4), "rounded to 4 decimal places"),
    "rounded to two significant digits": (lambda t, n: float(f"{t / n:.2g}"), "rounded to"),
    "printed to six significant digits": (lambda t, n: float(f"{t / n:.6g}"), None),
}


@pytest.mark.parametrize("case", list(FRACTIONS), ids=list(FRACTIONS))
def test_fraction_message_names_the_mistake(hidden, reference, tiny_llama, case):
    ratio, phrase = FRACTIONS[case]
    trainable = hidden.lora_parameter_count(reference, tiny_llama[1].config, GradingParameters.parameters["LORA_R"])
    total = trainable + sum(p.numel() for p in tiny_llama[1].parameters())
    submission = Values(trainable_fraction=ratio(trainable, total))
    if phrase is None:
        hidden.test_trainable_fraction(submission, reference, GradingParameters, tiny_llama[:2])
        return
    with pytest.raises(AssertionError) as failure:
        hidden.test_trainable_fraction(submission, reference, GradingParameters, tiny_llama[:2])
    assert phrase in str(failure.value)
