"""Public checks of sft_lora: students run these with `autograder check`; they also count in grading."""

import math

import torch

import pytest

from autograder.submission import Missing
from autograder.testing import _, expect, joined

# The lecture's settings; the rank and alpha come from the parameters (the grader injects other ones).
FIXED_SETTINGS = {"lora_dropout": 0.05, "bias": "none", "task_type": "CAUSAL_LM"}
TARGET_MODULES = ("q_proj", "v_proj")

# Conversations of the grader's choosing: a system turn and two exchanges, and a single exchange.
CONVERSATIONS = [
    [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "What does a LoRA adapter change?"},
        {"role": "assistant", "content": "It adds a small low-rank update to some weight matrices."},
        {"role": "user", "content": "And the original weights?"},
        {"role": "assistant", "content": "They stay frozen."},
    ],
    [
        {"role": "user", "content": "Name a colour of the sky at dusk."},
        {"role": "assistant", "content": "Orange."},
    ],
]


KEEP_WRAPPED = _("keep `model` the get_peft_model-wrapped model you trained (merge_and_unload() on it removes its "
                 "LoRA layers)")


def lora_weights(submission) -> list[str]:
    """The LoRA weights of the student's `model`; none left (merged, replaced) is Missing: what the earlier steps made
    is gone, so they cannot be judged (the hidden check that keeps the base weights frozen judges the merge)."""
    parameters = submission.call("grading_parameters", "model")
    names = [n for n in parameters if ".lora_" in n] if isinstance(parameters, dict) else []
    if not names:
        raise Missing(_("`model` has no LoRA weights left, so the grader cannot see what training made: "
                        "{KEEP_WRAPPED}.").format(KEEP_WRAPPED=KEEP_WRAPPED))
    return names


@pytest.mark.step("lora")
def test_lora_settings(submission, reference, exercise):
    """The wrapped model uses the lecture's LoRA settings: r=LORA_R, alpha=LORA_ALPHA, LoRA on every q_proj and
    v_proj, dropout 0.05, causal LM."""
    lora_weights(submission)
    settings = submission.call("grading_lora_config")
    expect(isinstance(settings, dict), _("`model.peft_config` could not be read as LoRA settings."))
    expected = {"r": exercise.parameters["LORA_R"], "lora_alpha": exercise.parameters["LORA_ALPHA"], **FIXED_SETTINGS}
    wrong = [_("{key}={got!r} (expected {expected!r})").format(key=key, got=settings.get(key), expected=value)
             for key, value in expected.items() if settings.get(key) != value]
    # Judged by the modules LoRA was put on, so any spelling peft resolves to them (qualified names too) is right.
    base = reference.model(exercise.parameters["MODEL_ID"], "AutoModelForCausalLM")
    wanted = {name for name, _module in base.named_modules() if name.rsplit(".", 1)[-1] in TARGET_MODULES}
    parameters = submission.call("grading_parameters", "model")
    adapted = {n.removeprefix("base_model.model.").split(".lora_A.")[0] for n in parameters if ".lora_A." in n} \
        if isinstance(parameters, dict) else set()
    if adapted != wanted:
        wrong.append(_("LoRA sits on {n_adapted} modules, expected the {n_wanted} q_proj and v_proj modules "
                       "(target_modules={targets!r})").format(n_adapted=len(adapted), n_wanted=len(wanted),
                                                              targets=settings.get("target_modules")))
    expect(not wrong, _("The LoRA settings of `model` differ from the lecture's: {problems}.").format(
        problems=joined(*wrong, sep="; ")))


def test_format_example(submission, reference, exercise):
    """format_example renders a conversation with the chat template, without a generation prompt."""
    tokenizer = reference.tokenizer(exercise.parameters["MODEL_ID"])
    for conversation in CONVERSATIONS:
        example = {"prompt": conversation[-2]["content"], "prompt_id": "grader", "messages": conversation}
        result = submission.call("format_example", example)
        expect(isinstance(result, dict) and isinstance(result.get("text"), str),
               _("format_example should return a dict {{'text': str}}, got {type} {result!r}.").format(
                   type=type(result).__name__, result=str(result)[:80]))
        text = result["text"]
        expected = tokenizer.apply_chat_template(conversation, tokenize=False)
        if text == expected:
            continue
        if text == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True):
            raise AssertionError(_("format_example adds a generation prompt (an empty assistant turn) at "
                                   "the end; training conversations already end with the answer: leave "
                                   "add_generation_prompt off."))
        at = next((i for i, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
        raise AssertionError(_("format_example's text differs from tokenizer.apply_chat_template(messages, "
                               "tokenize=False) from character {at}: got {text!r}, expected {expected!r}.").format(
                                 at=at, text=text[at:at + 40], expected=expected[at:at + 40]))


@pytest.mark.step("training")
def test_training_ran(submission, exercise):
    """The trainer ran exactly MAX_STEPS steps and logged a finite loss at every step."""
    max_steps = exercise.parameters["MAX_STEPS"]
    steps = submission.value("training_steps")
    expect(steps == max_steps, _("The trainer ran {steps} steps, but MAX_STEPS is {max_steps}: pass "
                                 "max_steps=MAX_STEPS to SFTConfig.").format(steps=steps, max_steps=max_steps))
    losses = submission.value("losses")
    expect(isinstance(losses, list) and all(type(x) in (int, float) for x in losses),
           _("`losses` should be a list of floats, got {type}.").format(type=type(losses).__name__))
    expect(len(losses) == max_steps, _("`losses` holds {n_losses} values for {max_steps} steps: log every "
                                       "step (logging_steps=1) and keep the entries of "
                                       "trainer.state.log_history that have a 'loss'.").format(
                                         n_losses=len(losses), max_steps=max_steps))
    expect(all(math.isfinite(x) for x in losses), _("Some losses are not finite: {losses}.").format(losses=losses))


def test_adapter_saved(submission):
    """OUTPUT_DIR holds the adapter's config and weights and the tokenizer, and the saved weights are the trained
    ones."""
    saved = submission.call("grading_saved_adapter")
    expect(isinstance(saved, dict) and isinstance(saved.get("files"), list) and isinstance(saved.get("weights"), dict),
           _("grading_saved_adapter() did not return the saved files; restore the grader's cell from the "
             "exercise."))
    files, weights = saved["files"], saved["weights"]
    missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if f not in files]
    expect(not missing, _("OUTPUT_DIR lacks {value} (it holds {files}): save the adapter with "
                          "trainer.model.save_pretrained(OUTPUT_DIR) after training.").format(
                            value=', '.join(missing), files=files))
    expect("tokenizer_config.json" in files, _("OUTPUT_DIR holds no tokenizer (it holds {files}): save it "
                                               "beside the adapter with "
                                               "tokenizer.save_pretrained(OUTPUT_DIR), so the folder is "
                                               "all one needs to use the model.").format(files=files))
    trained = lora_weights(submission)
    # On disk peft leaves the adapter's name out: ...lora_A.default.weight is saved as ...lora_A.weight.
    expected_keys = {n.replace(".default.", "."): n for n in trained}
    expect(set(weights) == set(expected_keys), _("The saved adapter holds {weights}..., not the LoRA "
                                                 "weights of `model` ({expected_keys}...): save "
                                                 "trainer.model, the model you trained.").format(
                                                   weights=sorted(weights)[:2],
                                                   expected_keys=sorted(expected_keys)[:2]))
    stale = [key for key, name in expected_keys.items()
             if not torch.equal(weights[key], submission.call("grading_parameter", "model", name))]
    expect(not stale, _("{n_stale} of {n_expected_keys} saved LoRA weights differ from the trained ones "
                        "(e.g. {stale}): save the adapter after trainer.train().").format(
                          n_stale=len(stale), n_expected_keys=len(expected_keys), stale=stale[:1]))
