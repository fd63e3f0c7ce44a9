"""Public checks of sft_lora: students run these with `autograder check`; they also count in grading."""

import math

import torch

from autograder.testing import expect

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


def test_lora_settings(submission, reference, exercise):
    """The wrapped model uses the lecture's LoRA settings: r=LORA_R, alpha=LORA_ALPHA, LoRA on every q_proj and
    v_proj, dropout 0.05, causal LM."""
    settings = submission.call("grading_lora_config")
    expect(isinstance(settings, dict), "`model.peft_config` could not be read as LoRA settings.")
    expected = {"r": exercise.parameters["LORA_R"], "lora_alpha": exercise.parameters["LORA_ALPHA"], **FIXED_SETTINGS}
    wrong = [f"{key}={settings.get(key)!r} (expected {value!r})" for key, value in expected.items()
             if settings.get(key) != value]
    # Judged by the modules LoRA was put on, so any spelling peft resolves to them (qualified names too) is right.
    base = reference.model(exercise.parameters["MODEL_ID"], "AutoModelForCausalLM")
    wanted = {name for name, _ in base.named_modules() if name.rsplit(".", 1)[-1] in TARGET_MODULES}
    parameters = submission.call("grading_parameters", "model")
    adapted = {n.removeprefix("base_model.model.").split(".lora_A.")[0] for n in parameters if ".lora_A." in n} \
        if isinstance(parameters, dict) else set()
    if adapted != wanted:
        wrong.append(f"LoRA sits on {len(adapted)} modules, expected the {len(wanted)} q_proj and v_proj modules "
                     f"(target_modules={settings.get('target_modules')!r})")
    expect(not wrong, "The LoRA settings of `model` differ from the lecture's: " + "; ".join(wrong) + ".")


def test_format_example(submission, reference, exercise):
    """format_example renders a conversation with the chat template, without a generation prompt."""
    tokenizer = reference.tokenizer(exercise.parameters["MODEL_ID"])
    for conversation in CONVERSATIONS:
        example = {"prompt": conversation[-2]["content"], "prompt_id": "grader", "messages": conversation}
        result = submission.call("format_example", example)
        expect(isinstance(result, dict) and isinstance(result.get("text"), str),
               f"format_example should return a dict {{'text': str}}, got {type(result).__name__} "
               f"{str(result)[:80]!r}.")
        text = result["text"]
        expected = tokenizer.apply_chat_template(conversation, tokenize=False)
        if text == expected:
            continue
        if text == tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True):
            raise AssertionError("format_example adds a generation prompt (an empty assistant turn) at the end; "
                                 "training conversations already end with the answer: leave add_generation_prompt off.")
        at = next((i for i, (a, b) in enumerate(zip(text, expected)) if a != b), min(len(text), len(expected)))
        raise AssertionError(f"format_example's text differs from tokenizer.apply_chat_template(messages, "
                             f"tokenize=False) from character {at}: got {text[at:at + 40]!r}, expected "
                             f"{expected[at:at + 40]!r}.")


def test_training_ran(submission, exercise):
    """The trainer ran exactly MAX_STEPS steps and logged a finite loss at every step."""
    max_steps = exercise.parameters["MAX_STEPS"]
    steps = submission.value("training_steps")
    expect(steps == max_steps, f"The trainer ran {steps} steps, but MAX_STEPS is {max_steps}: pass "
           "max_steps=MAX_STEPS to SFTConfig.")
    losses = submission.value("losses")
    expect(isinstance(losses, list) and all(type(x) in (int, float) for x in losses),
           f"`losses` should be a list of floats, got {type(losses).__name__}.")
    expect(len(losses) == max_steps, f"`losses` holds {len(losses)} values for {max_steps} steps: log every step "
           "(logging_steps=1) and keep the entries of trainer.state.log_history that have a 'loss'.")
    expect(all(math.isfinite(x) for x in losses), f"Some losses are not finite: {losses}.")


def test_adapter_saved(submission):
    """OUTPUT_DIR holds the adapter's config and weights and the tokenizer, and the saved weights are the trained
    ones."""
    saved = submission.call("grading_saved_adapter")
    expect(isinstance(saved, dict) and isinstance(saved.get("files"), list) and isinstance(saved.get("weights"), dict),
           "grading_saved_adapter() did not return the saved files; restore the grader's cell from the exercise.")
    files, weights = saved["files"], saved["weights"]
    missing = [f for f in ("adapter_config.json", "adapter_model.safetensors") if f not in files]
    expect(not missing, f"OUTPUT_DIR lacks {', '.join(missing)} (it holds {files}): save the adapter with "
           "trainer.model.save_pretrained(OUTPUT_DIR) after training.")
    expect("tokenizer_config.json" in files, f"OUTPUT_DIR holds no tokenizer (it holds {files}): save it beside the "
           "adapter with tokenizer.save_pretrained(OUTPUT_DIR), so the folder is all one needs to use the model.")
    trained = [n for n in submission.call("grading_parameters", "model") if ".lora_" in n]
    expect(trained, "`model` has no LoRA weights to compare the saved adapter with: keep `model` the wrapped model "
           "you trained (merge_and_unload() on it removes its LoRA layers).")
    # On disk peft leaves the adapter's name out: ...lora_A.default.weight is saved as ...lora_A.weight.
    expected_keys = {n.replace(".default.", "."): n for n in trained}
    expect(set(weights) == set(expected_keys), f"The saved adapter holds {sorted(weights)[:2]}..., not the LoRA "
           f"weights of `model` ({sorted(expected_keys)[:2]}...): save trainer.model, the model you trained.")
    stale = [key for key, name in expected_keys.items()
             if not torch.equal(weights[key], submission.call("grading_parameter", "model", name))]
    expect(not stale, f"{len(stale)} of {len(expected_keys)} saved LoRA weights differ from the trained ones "
           f"(e.g. {stale[:1]}): save the adapter after trainer.train().")
