"""Hidden checks of t5_decoding. Expected values come from the grader's own copy of the model."""

import pytest
import torch

from autograder.testing import _, as_int_list, expect, expect_by_hand, expect_close

# Grader-chosen prompts for greedy_decode, with the length limit for each. The short limit
# catches loops that ignore max_new_tokens; the others catch loops that ignore EOS.
DECODE_CASES = [
    ("translate English to French: The cat sleeps on the sofa.", 30),
    ("translate English to German: Thank you very much.", 30),
    ("question: What color is the sky?", 30),
    ("translate English to German: The children play in the garden.", 3),
]
# Calls that generate for you: greedy_decode is the loop written out by hand.
GENERATION_SHORTCUTS = {"generate", "greedy_search", "_greedy_search", "_sample", "pipeline"}


@pytest.fixture(scope="module")
def t5(reference, exercise):
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForSeq2SeqLM")


@pytest.fixture(scope="module")
def one_step(exercise, t5):
    """The grader's own pass over PROMPT: encoder output, decoder output, raw head scores, model logits."""
    tokenizer, model = t5
    input_ids = tokenizer(exercise.parameters["PROMPT"], return_tensors="pt").input_ids.to(model.device)
    start = torch.tensor([[model.config.decoder_start_token_id]], device=model.device)
    with torch.no_grad():
        encoder = model.encoder(input_ids=input_ids).last_hidden_state
        decoder = model.decoder(input_ids=start, encoder_hidden_states=encoder).last_hidden_state
        head = model.lm_head(decoder)
        logits = model(input_ids=input_ids, decoder_input_ids=start).logits
    return {"encoder": encoder, "head": head, "logits": logits}


def test_encoder_output_values(submission, one_step):
    """The encoder output equals the encoder's last hidden state for PROMPT."""
    expect_close(submission.tensor("encoder_hidden"), one_step["encoder"], "`encoder_hidden`",
                 _("Tokenize PROMPT with return_tensors='pt' and take model.encoder(...).last_hidden_state."))


def test_lm_head_output_values(submission, one_step):
    """lm_logits are the raw lm_head scores of the decoder output (no scaling)."""
    expect_close(submission.tensor("lm_logits"), one_step["head"], "`lm_logits`",
                 _("Pass decoder_hidden straight to model.lm_head, as in the lecture."))


def test_next_token_argmax(submission, one_step, t5):
    """The next token is the argmax over the vocabulary at the last position."""
    expected = int(one_step["head"][0, -1].argmax(-1))
    got = submission.value("next_token_id")
    expect(type(got) is int, _("`next_token_id` should be an int, got {type}: use int(...).").format(
        type=type(got).__name__))
    expect(got == expected, _("`next_token_id` is {got}, but the highest-scoring token is {expected}: take argmax "
                              "over the last (vocabulary) axis at position [0, -1].").format(got=got,
                                                                                            expected=expected))
    text = t5[0].decode(expected)
    expect(submission.value("next_token") == text, _("`next_token` should be the decoded text {text!r}.").format(
        text=text))


@pytest.mark.parametrize(("prompt", "max_new_tokens"), DECODE_CASES, ids=lambda v: str(v)[:40])
def test_greedy_decode_matches_generate(submission, reference, t5, prompt, max_new_tokens):
    """greedy_decode returns the same ids as model.generate(do_sample=False) on hidden prompts."""
    tokenizer, model = t5

    def generate() -> list[int]:
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        return model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)[0].tolist()

    expected = reference.memo(("generate", model.name_or_path, prompt, max_new_tokens), generate)
    expect_by_hand(submission, "greedy_decode", without=GENERATION_SHORTCUTS,
                   hint=_("Write the loop yourself: run the encoder once, then the decoder and lm_head one token at a "
                          "time."))
    got = as_int_list(submission.call("greedy_decode", prompt, max_new_tokens), _("greedy_decode's result"))
    if got == expected:
        return
    expect(len(got) - 1 <= max_new_tokens, _("greedy_decode({prompt!r}..., max_new_tokens={limit}) returned {count} "
                                             "new tokens: stop after max_new_tokens even without EOS.").format(
        prompt=prompt[:30], limit=max_new_tokens, count=len(got) - 1))
    expect(got[: len(expected)] != expected, _("greedy_decode kept going after EOS ({got} ids instead of {expected}): "
                                               "stop once eos_token_id is appended.").format(
        got=len(got), expected=len(expected)))
    expect(False, _("greedy_decode returned {got}..., generate gives {expected}...: start from "
                    "decoder_start_token_id and append the argmax at the last position each step.").format(
        got=got[:12], expected=expected[:12]))


def test_model_logits(submission, one_step):
    """model_logits are the logits of one full forward pass, model(input_ids, decoder_input_ids)."""
    expect_close(submission.tensor("model_logits"), one_step["logits"], "`model_logits`",
                 _("Call model(input_ids=input_ids, decoder_input_ids=decoder_input_ids) and take .logits."))


def test_scaled_logits_match_model(submission, one_step):
    """Scaling the decoder output by d_model**-0.5 before lm_head reproduces model(...).logits."""
    expect_by_hand(submission, "scaled_logits", without={"model_logits", "logits"}, using={"lm_head"},
                   hint=_("Scale decoder_hidden by model.config.d_model ** -0.5 yourself and pass it to "
                          "model.lm_head."))
    expect_close(submission.tensor("scaled_logits"), one_step["logits"], "`scaled_logits`",
                 _("Multiply decoder_hidden by model.config.d_model ** -0.5 before lm_head."))


@pytest.mark.cuda
def test_half_precision_on_cuda(submission):
    """On a GPU the notebook computes in float16, as in the lecture."""
    dtype = submission.tensor("encoder_hidden").dtype
    expect(dtype == torch.float16, _("`encoder_hidden` is {dtype}; load the model with dtype=getattr(torch, DTYPE).")
           .format(dtype=dtype))


def test_flan_answer(submission, reference, exercise):
    """flan_answer is Flan-T5's greedy answer to FLAN_PROMPT."""
    model_id, prompt = exercise.parameters["FLAN_MODEL_ID"], exercise.parameters["FLAN_PROMPT"]
    tokenizer, model = reference.tokenizer(model_id), reference.model(model_id, "AutoModelForSeq2SeqLM")
    max_new_tokens = exercise.parameters["MAX_NEW_TOKENS"]

    def answer() -> str:
        ids = model.generate(**tokenizer(prompt, return_tensors="pt").to(model.device), do_sample=False,
                             max_new_tokens=max_new_tokens)
        return tokenizer.decode(ids[0], skip_special_tokens=True)

    expected = reference.memo(("flan answer", model_id, prompt, max_new_tokens), answer)
    got = submission.value("flan_answer")
    expect(isinstance(got, str), _("`flan_answer` should be a string, got {type}.").format(type=type(got).__name__))
    expect(got == expected, _("`flan_answer` is {got!r}, but Flan-T5's greedy answer to FLAN_PROMPT is {expected!r}: "
                              "load FLAN_MODEL_ID (not T5-small) and generate with do_sample=False and "
                              "max_new_tokens=MAX_NEW_TOKENS.").format(got=got, expected=expected))
