"""Hidden checks of sft_lora. Expected values come from the model config, the grader's own copy of the base
model and data, and the grader's own rebuild of the student's adapter on that base model."""

from __future__ import annotations

import math
import re
import tempfile

import pytest
import torch

from autograder.submission import Missing, StudentFailure
from autograder.testing import (Unusable, _, call_watching_model, derived_from, expect, expect_by_hand, expect_close,
                                expect_fed_once, joined, judged_on)

TARGETS = ("q_proj", "v_proj")
# Ways to count parameters from a model instead of from its config: the counts below are to be worked out by hand.
COUNTING_SHORTCUTS = {"numel", "parameters", "named_parameters", "get_nb_trainable_parameters",
                      "print_trainable_parameters", "get_peft_model", "num_parameters", "LoraConfig"}
# Llama-style sizes for lora_params_per_layer: Llama-3.2-1B's own, and a config without head_dim.
LLAMA_SIZES = [{"hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64},
               {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 2}]
# GPT-2 sizes for gpt2_lora_params: the real GPT-2 (the textbook's 294,912 for r=8) and a smaller one.
GPT2_SIZES = [({"n_layer": 12, "n_embd": 768, "n_head": 12}, 8), ({"n_layer": 6, "n_embd": 512, "n_head": 8}, 4)]
# Grader-chosen texts for the logits comparisons.
PROBE_TEXTS = {"english": "Summarize the plot of a detective story in two sentences.",
               "japanese": "ファインチューニングとは何ですか?"}
KEEP_WRAPPED = _("keep `model` the get_peft_model-wrapped model you trained (merge_and_unload() on it removes its "
                 "LoRA layers)")
CHUNK_BYTES = 64 * 1024 * 1024  # base weights are fetched in slices of at most this size


@pytest.fixture(scope="module")
def llama(reference, exercise):
    """The grader's tokenizer and (read-only) base model for MODEL_ID."""
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForCausalLM")


@pytest.fixture(scope="module")
def train_split(exercise):
    """The train_sft split the notebook reads, loaded by the grader (in memory, with a throwaway cache)."""
    from datasets import load_dataset

    with tempfile.TemporaryDirectory(prefix="sft-lora-data-") as cache:
        yield load_dataset(exercise.parameters["DATASET"], split="train_sft", cache_dir=cache, keep_in_memory=True)


def peft_trainable(reference, config, r: int, targets) -> int:
    """The trainable parameters get_peft_model gives a model of this config: built on the meta device, so it costs
    neither memory nor weights, and the count is peft's own for the model in use (computed once per grader)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    def count() -> int:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        wrapped = get_peft_model(model, LoraConfig(r=r, target_modules=list(targets), task_type="CAUSAL_LM"))
        return wrapped.get_nb_trainable_parameters()[0]

    return reference.memo(("peft trainable", config.to_json_string(), r, tuple(targets)), count)


def lora_parameter_count(reference, config, r: int) -> int:
    """LoRA parameters of rank r on q_proj and v_proj (grouped-query attention makes v_proj narrower)."""
    return peft_trainable(reference, config, r, TARGETS)


def student_parameters(submission) -> dict[str, bool]:
    params = submission.call("grading_parameters", "model")
    expect(isinstance(params, dict) and params, _("`model` has no parameters the grader can read."))
    return params


def lora_weight_names(submission) -> list[str]:
    """The LoRA weights of the student's `model`. None left (merged into the base weights, or `model` replaced) is
    Missing: what the training steps made is gone, so those steps cannot be judged; the check that keeps the base
    weights frozen judges the merge itself."""
    names = [n for n in student_parameters(submission) if ".lora_" in n]
    if not names:
        raise Missing(_("`model` has no LoRA weights left, so the grader cannot see what training made: "
                        "{KEEP_WRAPPED}.").format(KEEP_WRAPPED=KEEP_WRAPPED))
    return names


def own_lora_settings(submission, reference, exercise) -> dict:
    """The LoRA settings of the student's own `model`, checked before anything is built from them."""
    settings = submission.call("grading_lora_config")
    expect(isinstance(settings, dict), _("`model.peft_config` could not be read as LoRA settings."))
    return checked_lora_settings(settings, reference.config(exercise.parameters["MODEL_ID"]))


def judged_on_lora_count(submission, reference, exercise, config, name: str, judge) -> None:
    """Judge `name` on the LoRA parameter count of the parameters' rank on q_proj and v_proj, or on that of the
    student's own LoRA settings (rank, targets) where `name` counts the wrapped model: a wrong rank or target is
    the settings check's loss alone."""
    def own() -> int:
        settings = own_lora_settings(submission, reference, exercise)
        try:
            return peft_trainable(reference, config, settings["r"], tuple(settings["target_modules"]))
        except (KeyError, TypeError, ValueError):  # targets this model does not have: the settings check says so
            raise Unusable() from None
    judged_on(submission, name, "get_peft_model", own,
              lambda: lora_parameter_count(reference, config, exercise.parameters["LORA_R"]), judge)


def fetch_parameter(submission, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """Rows start:stop of one parameter of the student's `model`, as a plain tensor."""
    value = submission.call("grading_parameter", "model", name, start, stop)
    expect(isinstance(value, torch.Tensor), _("grading_parameter('model', {name!r}) did not return a "
                                              "tensor.").format(name=name))
    return value


def fetch_base_weight(submission, name: str, like: torch.Tensor) -> torch.Tensor:
    """A base weight shaped like `like`, fetched in row slices so that no answer grows past CHUNK_BYTES."""
    if like.dim() < 2 or like.numel() * like.element_size() <= CHUNK_BYTES:
        return fetch_parameter(submission, name)
    rows = max(1, CHUNK_BYTES // (like[0].numel() * like.element_size()))
    return torch.cat([fetch_parameter(submission, name, start, start + rows) for start in range(0, len(like), rows)])


def checked_lora_settings(settings: dict, config) -> dict:
    """The student's LoRA settings, checked before the grader builds anything from them: a rank of 8,000,000
    would take the grader's memory, a target pattern its time."""
    r, alpha, targets = settings.get("r"), settings.get("lora_alpha"), settings.get("target_modules")
    width = config.hidden_size
    expect(type(r) is int and 1 <= r <= width, _("The LoRA rank of `model` is {r}; a rank is a whole "
                                                 "number from 1 to the model's hidden size ({width}): use "
                                                 "LORA_R.").format(r=str(r)[:40], width=width))
    expect(type(alpha) in (int, float) and 0 < alpha <= 1e6, _("The lora_alpha of `model` is {alpha}; it "
                                                               "should be a positive number: use "
                                                               "LORA_ALPHA.").format(alpha=str(alpha)[:40]))
    expect(isinstance(targets, list) and 0 < len(targets) <= 64
           and all(isinstance(t, str) and re.fullmatch(r"[A-Za-z_][\w.]{0,199}", t) for t in targets),
           _("The target_modules of `model` should be a list of module names, such as ['q_proj', 'v_proj']."))
    return settings


def rebuild(submission, reference, exercise):
    """The grader's base model with the student's LoRA settings and trained LoRA weights."""
    from peft import LoraConfig, get_peft_model

    lora_names = lora_weight_names(submission)
    settings = own_lora_settings(submission, reference, exercise)
    try:
        config = LoraConfig(r=settings["r"], lora_alpha=settings["lora_alpha"],
                            target_modules=settings["target_modules"], use_rslora=bool(settings.get("use_rslora")),
                            task_type="CAUSAL_LM")
        model = get_peft_model(reference.wrappable(exercise.parameters["MODEL_ID"]), config).eval()
    except (KeyError, TypeError, ValueError) as exc:  # e.g. a target module the model does not have
        raise StudentFailure(_("The LoRA settings of `model` could not be used to rebuild it: {exc}.").format(
            exc=exc)) from None
    expected = {n for n, _parameter in model.named_parameters() if ".lora_" in n}
    expect(expected == set(lora_names), _("The LoRA weights of `model` do not match its own LoRA settings."))
    with torch.no_grad():
        for name in lora_names:
            model.get_parameter(name).copy_(fetch_parameter(submission, name))
    return model


@pytest.fixture(scope="module")
def adapted(submission, reference, exercise):
    """The rebuilt fine-tuned model, or the reason it could not be built (raised by the checks that need it)."""
    try:
        return rebuild(submission, reference, exercise)
    except StudentFailure as exc:
        return exc


def adapted_model(adapted):
    if isinstance(adapted, StudentFailure):
        raise adapted
    return adapted


def greedy_answer(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True).to(model.device)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                pad_token_id=tokenizer.eos_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


@pytest.mark.step("counts")
def test_trainable_parameter_count(submission, reference, exercise, llama):
    """trainable_params equals the LoRA count for the model in use at rank LORA_R (grouped-query attention narrows
    v_proj)."""
    config, r = llama[1].config, exercise.parameters["LORA_R"]
    got = submission.value("trainable_params")
    expect(type(got) is int, _("`trainable_params` should be an int, got {type}.").format(type=type(got).__name__))
    judged_on_lora_count(submission, reference, exercise, config, "trainable_params", lambda expected: expect(
        got == expected, _("`trainable_params` is {got:,}, but r={r} on q_proj and v_proj of {num_hidden_layers} "
                           "layers gives {expected:,}: each adapted projection adds r·(in + out), and v_proj's "
                           "output is num_key_value_heads·head_dim wide. Count the parameters with requires_grad.")
        .format(got=got, r=r, num_hidden_layers=config.num_hidden_layers, expected=expected)))


@pytest.mark.step("counts")
def test_total_parameter_count(submission, reference, exercise, llama):
    """total_params counts every parameter of the wrapped model: the base model's and the LoRA ones."""
    base = sum(p.numel() for p in llama[1].parameters())
    got = submission.value("total_params")
    expect(type(got) is int, _("`total_params` should be an int, got {type}.").format(type=type(got).__name__))

    def judge(lora: int) -> None:
        expect(got != base, _("`total_params` is {got:,}, the base model's parameters alone: the wrapped model also "
                              "holds the {lora:,} LoRA parameters (the 'all params' of print_trainable_parameters)."
                              ).format(got=got, lora=lora))
        expect(got == base + lora, _("`total_params` is {got:,}, but the wrapped model has {base:,} base and {lora:,} "
                                     "LoRA parameters, {total:,} in all: count every parameter of "
                                     "model.parameters().").format(got=got, base=base, lora=lora, total=base + lora))

    judged_on_lora_count(submission, reference, exercise, llama[1].config, "total_params", judge)


def own_counts(submission) -> tuple[int, int]:
    counts = submission.value("trainable_params"), submission.value("total_params")
    if not all(type(c) is int and c > 0 for c in counts):
        raise Unusable()  # the count checks say what is wrong with them
    return counts


@pytest.mark.step("fraction")
def test_trainable_fraction(submission, reference, exercise, llama):
    """trainable_fraction = trainable / all parameters of the wrapped model, as a fraction (not a percentage)."""
    def grader() -> tuple[int, int]:
        trainable = lora_parameter_count(reference, llama[1].config, exercise.parameters["LORA_R"])
        return trainable, sum(p.numel() for p in llama[1].parameters()) + trainable

    got = submission.value("trainable_fraction")
    expect(type(got) in (int, float) and math.isfinite(got),
           _("`trainable_fraction` should be a finite float, got {got!r}.").format(got=got))

    def own() -> tuple[int, int]:
        if not derived_from(submission, "trainable_fraction", "total_params"):
            raise Unusable()
        return own_counts(submission)

    # On the student's own counts where the fraction is made from them: a counting slip is its own check's loss.
    judged_on(submission, "trainable_fraction", "trainable_params", own, grader,
              lambda counts: expect_fraction(got, *counts))


def expect_fraction(got: float, trainable: int, total: int) -> None:
    """`got` is trainable / total, or a failure that names the mistake (a percentage, a wrong denominator, rounding)."""
    base = total - trainable
    expected = trainable / total
    # A ratio rounded to 6 significant digits (as printed) is still the right ratio.
    if math.isclose(got, expected, rel_tol=1e-5):
        return
    denominator = ("the denominator is every parameter of the wrapped model, LoRA included "
                   f"({total:,}, the 'all params' of print_trainable_parameters)")
    known_mistakes = [
        (100 * expected, f"is a percentage; the notebook asks for a fraction between 0 and 1 ({expected:.6g}): do not "
                         "multiply by 100"),
        (total / trainable, "is upside down (total / trainable): divide the trainable count by the total"),
    ]
    for scale in (1, 100):  # wrong denominators, whether written as a fraction or as a percentage
        known_mistakes += [
            (scale * trainable / base, f"divides by the base model's parameters, without the LoRA ones ({base:,}); "
                                       f"{denominator}"),
            (scale * 1.0, f"divides by the trainable parameters themselves; {denominator}"),
        ]
    for value, mistake in known_mistakes:
        expect(not math.isclose(got, value, rel_tol=1e-5), f"`trainable_fraction` ({got:.6g}) {mistake}.")
    rounded = next((_("{places} decimal places").format(places=k) for k in range(1, 9) if got == round(expected, k)),
                   None) or next((_("{digits} significant digits").format(digits=k) for k in range(1, 6)
                                  if got == float(f"{expected:.{k}g}")), None)
    expect(rounded is None, _("`trainable_fraction` is {got!r}, the ratio {expected!r} rounded to {rounded}: keep the "
                              "whole value in the variable and round only where you print it.").format(
                                got=got, expected=expected, rounded=rounded))
    raise AssertionError(_("`trainable_fraction` is {got!r}, expected {trainable:,} / {total:,} = "
                           "{expected!r}.").format(got=got, trainable=trainable, total=total, expected=expected))


def test_lora_params_per_layer(submission, reference, exercise, llama):
    """lora_params_per_layer(config, r) works out one layer's LoRA count on q_proj and v_proj by hand, from the
    config alone."""
    from transformers import LlamaConfig

    expect_by_hand(submission, "lora_params_per_layer", without=COUNTING_SHORTCUTS,
                   hint=_("Compute r·(in + out) for q_proj and for v_proj from the config's sizes."))
    own = llama[1].config
    sizes = [{k: getattr(own, k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim")
              if getattr(own, k, None)}] + LLAMA_SIZES
    for size in sizes:
        for r in (exercise.parameters["LORA_R"], 16):
            config = LlamaConfig(num_hidden_layers=1, vocab_size=16, intermediate_size=16, **size)
            expected = peft_trainable(reference, config, r, TARGETS)
            got = submission.call("lora_params_per_layer", {**size, "num_hidden_layers": 1}, r)
            expect(got == expected, _("lora_params_per_layer({size}, r={r}) returned {got!r}, expected "
                                      "{expected:,}: q_proj maps hidden_size to "
                                      "num_attention_heads·head_dim, v_proj to "
                                      "num_key_value_heads·head_dim.").format(
                                        size=size, r=r, got=got, expected=expected))


def test_gpt2_lora_params(submission, reference):
    """gpt2_lora_params(config, r) counts LoRA on every c_attn of a GPT-2 by hand (the textbook's 294,912 at r=8)."""
    from transformers import GPT2Config

    expect_by_hand(submission, "gpt2_lora_params", without=COUNTING_SHORTCUTS,
                   hint=_("c_attn maps n_embd to 3·n_embd, in every one of the n_layer blocks."))
    own = reference.config("gpt2")
    for size, r in [({"n_layer": own.n_layer, "n_embd": own.n_embd, "n_head": own.n_head}, 4), *GPT2_SIZES]:
        expected = peft_trainable(reference, GPT2Config(vocab_size=16, n_positions=16, **size), r, ["c_attn"])
        got = submission.call("gpt2_lora_params", {"n_layer": size["n_layer"], "n_embd": size["n_embd"]}, r)
        expect(got == expected, _("gpt2_lora_params(n_layer={size}, n_embd={size2}, r={r}) returned "
                                  "{got!r}, expected {expected:,}.").format(
                                    size=size['n_layer'], size2=size['n_embd'], r=r, got=got, expected=expected))


@pytest.mark.step("training")
def test_training_arguments(submission, exercise):
    """The trainer trained with the parameters' batch size, accumulation, learning rate, epochs, steps, length and
    output folder."""
    args = submission.call("grading_training_arguments")
    p = exercise.parameters
    expected = {"per_device_train_batch_size": ("BATCH_SIZE", p["BATCH_SIZE"]),
                "gradient_accumulation_steps": ("GRAD_ACCUM", p["GRAD_ACCUM"]),
                "learning_rate": ("LEARNING_RATE", p["LEARNING_RATE"]), "num_train_epochs": ("EPOCHS", p["EPOCHS"]),
                "max_steps": ("MAX_STEPS", p["MAX_STEPS"]), "max_length": ("MAX_LENGTH", p["MAX_LENGTH"]),
                "output_dir": ("OUTPUT_DIR", p["OUTPUT_DIR"])}
    expect(isinstance(args, dict), _("The trainer's arguments could not be read: keep `trainer` the "
                                     "SFTTrainer you ran."))
    wrong = [_("{name}={got!r} (the parameter {param} is {value!r})").format(name=name, got=args.get(name),
                                                                              param=param, value=value)
             for name, (param, value) in expected.items() if args.get(name) != value]
    expect(not wrong, _("SFTConfig should take its settings from the parameters cell, which the grader changes: "
                        "{problems}.").format(problems=joined(*wrong, sep="; ")))


@pytest.mark.step("lora")
def test_only_lora_parameters_require_grad(submission, llama):
    """Exactly the LoRA A and B matrices of q_proj and v_proj require grad; every base weight is frozen."""
    lora_weight_names(submission)
    modules = [name for name, _module in llama[1].named_modules() if name.rsplit(".", 1)[-1] in TARGETS]
    expected = {f"base_model.model.{m}.lora_{ab}.default.weight" for m in modules for ab in "AB"}
    trainable = {name for name, grad in student_parameters(submission).items() if grad is True}
    base = sorted(n for n in trainable - expected if ".lora_" not in n)
    expect(not base, _("{n_base} base weights require grad (e.g. {base}): only the LoRA matrices may be "
                       "trained; get_peft_model freezes the rest, so do not unfreeze them.").format(
                         n_base=len(base), base=base[:2]))
    other = sorted(trainable - expected)
    expect(not other, _("LoRA weights outside q_proj/v_proj are trained (e.g. {other}): target q_proj and "
                        "v_proj only.").format(other=other[:2]))
    missing = sorted(expected - trainable)
    expect(not missing, _("{n_missing} LoRA weights of q_proj/v_proj are missing or frozen (e.g. "
                          "{missing}): {KEEP_WRAPPED}.").format(
                            n_missing=len(missing), missing=missing[:2], KEEP_WRAPPED=KEEP_WRAPPED))


def test_base_weights_unchanged(submission, llama):
    """Every base weight of the trained model is bit-identical to the original model's."""
    reference_params = dict(llama[1].named_parameters())
    names = {n: n.removeprefix("base_model.model.").replace(".base_layer.", ".")
             for n in student_parameters(submission) if ".lora_" not in n}
    missing = sorted(set(reference_params) - set(names.values()))
    expect(not missing, _("`model` lacks base weights of the original model (e.g. {missing}): "
                          "{KEEP_WRAPPED}.").format(missing=missing[:2], KEEP_WRAPPED=KEEP_WRAPPED))
    changed = [name for name, original in names.items()
               if original in reference_params and not torch.equal(
                   fetch_base_weight(submission, name, reference_params[original]),
                   reference_params[original].detach().cpu())]
    expect(not changed, _("{n_changed} base weights differ from the original model (e.g. {changed}): LoRA "
                          "training must leave them untouched. Did you merge the adapter into `model` or "
                          "unfreeze base weights?").format(n_changed=len(changed), changed=changed[:2]))


def test_rows_are_seed_42_shuffle(submission, exercise, train_split):
    """The training rows are the first N_ROWS of train_sft shuffled with seed 42."""
    n_rows = exercise.parameters["N_ROWS"]
    expected = list(train_split.shuffle(seed=42).select(range(n_rows))["prompt_id"])
    got = submission.value("selected_prompt_ids")
    expect(isinstance(got, list), _("`selected_prompt_ids` should be a list, got {type}.").format(
                                      type=type(got).__name__))
    expect(len(got) == n_rows, _("{n_got} rows were selected, but N_ROWS is {n_rows}: use "
                                 "select(range(N_ROWS)).").format(n_got=len(got), n_rows=n_rows))
    expect(got != list(train_split.select(range(n_rows))["prompt_id"]),
           _("The rows are the first N_ROWS of train_sft in file order: shuffle(seed=42) before selecting."))
    expect(got == expected, _("The rows are not the seed-42 shuffle of train_sft: call shuffle(seed=42) on "
                              "the whole split, then select(range(N_ROWS))."))


def own_formats(submission, conversations: list) -> list:
    """format_example's text for each conversation, by the student's own function (one round trip)."""
    results = submission.call_each("format_example", [(({"messages": m},), {}) for m in conversations])
    if not all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in results):
        raise Unusable()  # format_example's own check says what is wrong
    return [r["text"] for r in results]


@pytest.mark.step("training texts")
def test_training_texts_use_chat_template(submission, exercise, llama, train_split):
    """Each of the N_ROWS training texts is the chat-template rendering of its conversation (no generation prompt)."""
    tokenizer = llama[0]
    ids = submission.value("selected_prompt_ids")
    texts = submission.value("train_texts")
    expect(isinstance(ids, list) and isinstance(texts, list) and len(ids) == len(texts),
           _("`train_texts` should hold one text per selected row."))
    n_rows = exercise.parameters["N_ROWS"]
    expect(len(texts) == n_rows, _("`train_texts` holds {n_texts} texts, but N_ROWS is {n_rows}: format "
                                   "the rows you selected with select(range(N_ROWS)).").format(
                                     n_texts=len(texts), n_rows=n_rows))
    conversations = dict(zip(train_split["prompt_id"], train_split["messages"], strict=True))
    unknown = [(row, prompt_id) for row, prompt_id in enumerate(ids) if prompt_id not in conversations]
    expect(not unknown, _("Row {row} has prompt_id {prompt_id!r}, which is not in train_sft.").format(
        row=unknown[0][0] if unknown else 0, prompt_id=unknown[0][1] if unknown else None))
    chats = [conversations[prompt_id] for prompt_id in ids]
    # The student's own format_example where the texts are made with it: a formatting slip is its own check's loss.
    judged_on(submission, "train_texts", "format_example", lambda: own_formats(submission, chats),
              lambda: [tokenizer.apply_chat_template(m, tokenize=False) for m in chats],
              lambda formatted: expect_texts(tokenizer, chats, texts, formatted))


def expect_texts(tokenizer, chats: list, texts: list, formatted: list[str]) -> None:
    for row, (messages, text, expected) in enumerate(zip(chats, texts, formatted, strict=True)):
        if text == expected:
            continue
        expect(text != tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
               _("Training text {row} ends with a generation prompt; training conversations already end "
                 "with the answer: leave add_generation_prompt off.").format(row=row))
        raise AssertionError(_("Training text {row} is not format_example of its conversation "
                               "(tokenizer.apply_chat_template(messages, tokenize=False)); it starts {text!r}.").format(
                                 row=row, text=str(text)[:60]))


@pytest.mark.step("training")
def test_lora_b_matrices_trained(submission):
    """Training moved every LoRA B matrix away from its all-zero start."""
    b_names = [n for n in lora_weight_names(submission) if ".lora_B." in n]
    expect(b_names, _("`model` has no LoRA B matrices: {KEEP_WRAPPED}.").format(KEEP_WRAPPED=KEEP_WRAPPED))
    zero = [n for n in b_names if not fetch_parameter(submission, n).any()]
    expect(not zero, _("{n_zero} of {n_b_names} LoRA B matrices are still all zero (e.g. {zero}): B starts "
                       "at zero, so training has not reached them. Train the wrapped `model` with "
                       "trainer.train().").format(n_zero=len(zero), n_b_names=len(b_names), zero=zero[:1]))


@pytest.mark.parametrize("text", PROBE_TEXTS.values(), ids=PROBE_TEXTS.keys())
def test_reloaded_logits_match_trained(submission, text):
    """The adapter loaded back from OUTPUT_DIR gives the trained model's logits."""
    params = submission.call("grading_parameters", "reloaded_model")
    # A model loaded with PeftModel.from_pretrained is frozen; the trained `model` (or an alias of it) is not.
    expect(isinstance(params, dict) and params and not any(params.values()),
           _("`reloaded_model` has parameters that require grad, so it is not the adapter loaded back from disk: "
             "build it with PeftModel.from_pretrained(load_base_model(), OUTPUT_DIR)."))
    expect_close(submission.call("grading_logits", "reloaded_model", text),
                 submission.call("grading_logits", "model", text), _("The reloaded model's logits"),
                 _("Load the saved adapter onto a fresh base model with PeftModel.from_pretrained(base, "
                   "OUTPUT_DIR).eval(), and set fp16/bf16 from DTYPE in SFTConfig: after mixed-precision "
                   "training the trained model keeps computing in half precision."))


@pytest.mark.parametrize("text", PROBE_TEXTS.values(), ids=PROBE_TEXTS.keys())
def test_merged_logits_match_trained(submission, text):
    """merge_and_unload gives a plain model whose logits match the trained model's."""
    names = submission.call("grading_parameters", "merged_model")
    expect(isinstance(names, dict) and not any(".lora_" in n for n in names),
           _("`merged_model` still has LoRA layers: call merge_and_unload() and keep the model it returns."))
    expect_close(submission.call("grading_logits", "merged_model", text),
                 submission.call("grading_logits", "model", text), _("The merged model's logits"))


@pytest.mark.parametrize("text", PROBE_TEXTS.values(), ids=PROBE_TEXTS.keys())
def test_next_token_logits_match_grader(submission, llama, adapted, text):
    """next_token_logits(model, text) equals the grader's logits for the same adapter on its own base model."""
    model = adapted_model(adapted)
    inputs = llama[0](text, return_tensors="pt").to(model.device)
    with torch.no_grad():
        expected = model(**inputs).logits[0, -1]
    expect_close(submission.call("grading_logits", "model", text), expected, "next_token_logits(model, text)",
                 _("Tokenize with tokenizer(text, return_tensors='pt'), call model.eval() after training, "
                   "and return the logits at the last position, logits[0, -1]."))


@pytest.mark.parametrize("variable", ["before_answer", "after_answer"])
def test_answers_before_and_after(submission, exercise, llama, adapted, variable):
    """The greedy chat answers to COMPARE_PROMPT, before (base model) and after fine-tuning (base + adapter)."""
    tokenizer, base = llama
    model = base if variable == "before_answer" else adapted_model(adapted)
    prompt, max_new_tokens = exercise.parameters["COMPARE_PROMPT"], exercise.parameters["MAX_NEW_TOKENS"]
    expected = greedy_answer(model, tokenizer, prompt, max_new_tokens)
    if variable == "after_answer":  # the ids chat_answer feeds the model: a doubled BOS shows there on any model
        _reply, starts = call_watching_model(submission, "chat_answer", prompt, max_new_tokens, model_first=True)
        expect_fed_once(starts, tokenizer.bos_token_id, tokenizer.bos_token, "chat_answer(model, ...)",
                        _("apply_chat_template's text already starts with it."))
    got = submission.value(variable)
    expect(isinstance(got, str), _("`{variable}` should be a string, got {type}.").format(
                                     variable=variable, type=type(got).__name__))
    expect(prompt not in got, _("`{variable}` repeats the prompt: decode only the tokens after the input.").format(
                                  variable=variable))
    expect(got in (expected, expected.strip()), _("`{variable}` is {got!r}, but the greedy answer is "
                                                  "{expected!r}: apply the chat template with "
                                                  "add_generation_prompt=True, generate with "
                                                  "do_sample=False and max_new_tokens, and decode the new "
                                                  "tokens with skip_special_tokens=True.").format(
                                                    variable=variable, got=got[:60], expected=expected[:60]))
