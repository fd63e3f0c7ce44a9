"""Hidden checks of t5_decoding. Expected values come from the grader's own copy of the model; each step of the
decoding pass is judged on the student's own earlier tensors where it is computed from them, so one slip costs one
step."""

import pytest
import torch

from autograder.testing import (Unusable, _, as_int, as_int_list, covering, expect, expect_by_hand, expect_close,
                                expect_equal, judged_on)

# Prompts greedy_decode may be graded on, and length limits: the graded cases are the first of these that tell the
# loop apart from each shortcut on the model in use (see decode_cases), padded to DECODE_CASES with the next ones.
DECODE_PROMPTS = [
    "translate English to French: The cat sleeps on the sofa.",
    "translate English to German: Thank you very much.",
    "question: What color is the sky?",
    "translate English to German: The children play in the garden.",
    "summarize: The weather was cold, so the match moved indoors and started an hour late.",
]
DECODE_LIMITS = (30, 3, 8)
DECODE_CASES = 4
# Calls that generate for you: greedy_decode is the loop written out by hand.
GENERATION_SHORTCUTS = {"generate", "greedy_search", "_greedy_search", "_sample", "pipeline"}
MAX_PROMPT_TOKENS = 512  # a student's encoder output longer than any prompt of the exercise is not computed on


@pytest.fixture(scope="module")
def t5(reference, exercise):
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForSeq2SeqLM")


@pytest.fixture(scope="module")
def one_step(exercise, t5):
    """The grader's own pass over PROMPT: input ids, start token, encoder output, decoder output, raw head scores,
    model logits."""
    tokenizer, model = t5
    input_ids = tokenizer(exercise.parameters["PROMPT"], return_tensors="pt").input_ids.to(model.device)
    start = torch.tensor([[model.config.decoder_start_token_id]], device=model.device)
    with torch.no_grad():
        encoder = model.encoder(input_ids=input_ids).last_hidden_state
        decoder = model.decoder(input_ids=start, encoder_hidden_states=encoder).last_hidden_state
        head = model.lm_head(decoder)
        logits = model(input_ids=input_ids, decoder_input_ids=start).logits
    return {"input_ids": input_ids, "start": start, "encoder": encoder, "decoder": decoder, "head": head,
            "logits": logits}


def usable(submission, name: str, shape, dtype_kind: str, model) -> torch.Tensor:
    """The student's tensor `name` on the model's device, when it has the shape a later step can be computed on
    (`None` in `shape`: any length up to MAX_PROMPT_TOKENS); Unusable otherwise (its own check says what is
    wrong with it)."""
    value = submission.tensor(name)
    fits = value.dim() == len(shape) and all(
        (want is None and 1 <= got <= MAX_PROMPT_TOKENS) or got == want for got, want in zip(value.shape, shape))
    kind_ok = value.is_floating_point() if dtype_kind == "float" else not value.is_floating_point()
    if not fits or not kind_ok or (dtype_kind == "int" and not bool(((value >= 0) & (value < model.config.vocab_size))
                                                                       .all())):
        raise Unusable()
    return value.to(model.device, model.dtype if dtype_kind == "float" else torch.long)


def on_start(submission, name: str, one_step, model, judge) -> None:
    """Judge `name` on the grader's start token, or on the student's own decoder_input_ids where it is made from
    them."""
    judged_on(submission, name, "decoder_input_ids",
              lambda: usable(submission, "decoder_input_ids", (1, None), "int", model), lambda: one_step["start"], judge)


def on_decoder(submission, name: str, one_step, model, judge) -> None:
    """Judge `name` on the grader's decoder output, or on the student's own decoder_hidden where it is made from
    it."""
    judged_on(submission, name, "decoder_hidden",
              lambda: usable(submission, "decoder_hidden", (1, None, model.config.d_model), "float", model),
              lambda: one_step["decoder"], judge)


@pytest.mark.step("encoder")
def test_encoder_output_values(submission, one_step):
    """The encoder output equals the encoder's last hidden state for PROMPT."""
    expect_close(submission.tensor("encoder_hidden"), one_step["encoder"], "`encoder_hidden`",
                 _("Tokenize PROMPT with return_tensors='pt' and take model.encoder(...).last_hidden_state."))


@pytest.mark.step("decoder")
def test_decoder_output_values(submission, one_step, t5):
    """decoder_hidden is the decoder's last hidden state for decoder_input_ids, attending to encoder_hidden."""
    model = t5[1]
    got = submission.tensor("decoder_hidden")

    def judge(start: torch.Tensor, memory: torch.Tensor) -> None:
        with torch.no_grad():
            expected = model.decoder(input_ids=start, encoder_hidden_states=memory).last_hidden_state
        expect_close(got, expected, "`decoder_hidden`",
                     _("Run model.decoder(input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden) and keep "
                       "its last_hidden_state."))

    # On the student's own start token and encoder output where decoder_hidden is made from them.
    on_start(submission, "decoder_hidden", one_step, model, lambda start: judged_on(
        submission, "decoder_hidden", "encoder_hidden",
        lambda: usable(submission, "encoder_hidden", (1, None, model.config.d_model), "float", model),
        lambda: one_step["encoder"], lambda memory: judge(start, memory)))


@pytest.mark.step("lm_head")
def test_lm_head_output_values(submission, one_step, t5):
    """lm_logits are the raw lm_head scores of the decoder output (no scaling)."""
    model = t5[1]
    got = submission.tensor("lm_logits")

    def judge(decoder: torch.Tensor) -> None:
        with torch.no_grad():
            expected = model.lm_head(decoder)
        expect_close(got, expected, "`lm_logits`", _("Pass decoder_hidden straight to model.lm_head, as in the "
                                                     "lecture."))

    on_decoder(submission, "lm_logits", one_step, model, judge)


@pytest.mark.step("next token")
def test_next_token_argmax(submission, one_step, t5):
    """The next token is the argmax over the vocabulary at the last position."""
    model = t5[1]
    got = as_int(submission.value("next_token_id"), "`next_token_id`")

    def judge(head: torch.Tensor) -> None:
        expected = int(head[0, -1].argmax(-1))
        expect(got == expected, _("`next_token_id` is {got}, but the highest-scoring token is {expected}: take "
                                  "argmax over the last (vocabulary) axis at position [0, -1].").format(
                                    got=got, expected=expected))

    judged_on(submission, "next_token_id", "lm_logits",
              lambda: usable(submission, "lm_logits", (1, None, model.config.vocab_size), "float", model),
              lambda: one_step["head"], judge)
    # The text is judged on the student's own id: a wrong id is this check's one loss, not two.
    expect_equal(submission.value("next_token"), t5[0].decode(got), "`next_token`",
                 _("Decode next_token_id with the tokenizer."))


def decode_cases(reference, exercise, t5) -> list[tuple[str, int]]:
    """The (prompt, max_new_tokens) cases greedy_decode is graded on: for each shortcut a loop may take (no stop at
    EOS, the notebook's own length or prompt instead of the arguments), the first candidate on which generate's ids
    differ from the shortcut's on the model in use; then the next candidates, up to DECODE_CASES."""
    tokenizer, model = t5

    def generate(prompt: str, limit: int) -> list[int]:
        return reference.memo(("generate", model.name_or_path, prompt, limit), lambda: model.generate(
            **tokenizer(prompt, return_tensors="pt").to(model.device), do_sample=False,
            max_new_tokens=limit)[0].tolist())

    def without_eos_stop(prompt: str, limit: int) -> list[int]:
        ids = [model.config.decoder_start_token_id]
        with torch.no_grad():
            memory = model.encoder(**tokenizer(prompt, return_tensors="pt").to(model.device)).last_hidden_state
            for _step in range(limit):
                prefix = torch.tensor([ids], device=model.device)
                ids.append(int(model(encoder_outputs=(memory,), decoder_input_ids=prefix).logits[0, -1].argmax(-1)))
        return ids

    notebook = exercise.parameters
    shortcuts = {"no stop at EOS": lambda case: without_eos_stop(*case),
                 "the notebook's MAX_NEW_TOKENS": lambda case: generate(case[0], notebook["MAX_NEW_TOKENS"]),
                 "a longer limit": lambda case: generate(case[0], 4 * max(DECODE_LIMITS)),
                 "the notebook's PROMPT": lambda case: generate(notebook["PROMPT"], case[1])}
    candidates = [(prompt, limit) for limit in DECODE_LIMITS for prompt in DECODE_PROMPTS]

    def compute() -> list[tuple[str, int]]:
        chosen = covering(candidates, lambda case: generate(*case), shortcuts)
        return (chosen + [c for c in candidates if c not in chosen])[:DECODE_CASES]
    return reference.memo(("decode cases", model.name_or_path, notebook["MAX_NEW_TOKENS"], notebook["PROMPT"]),
                          compute)


@pytest.mark.step("greedy_decode")
@pytest.mark.parametrize("case", range(DECODE_CASES), ids=[f"case {i + 1}" for i in range(DECODE_CASES)])
def test_greedy_decode_matches_generate(submission, reference, exercise, t5, case):
    """greedy_decode returns the same ids as model.generate(do_sample=False) on hidden prompts."""
    tokenizer, model = t5
    prompt, max_new_tokens = decode_cases(reference, exercise, t5)[case]
    expected = reference.memo(("generate", model.name_or_path, prompt, max_new_tokens), lambda: model.generate(
        **tokenizer(prompt, return_tensors="pt").to(model.device), do_sample=False,
        max_new_tokens=max_new_tokens)[0].tolist())
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
    expect_equal(got, expected, _("greedy_decode({prompt!r}..., max_new_tokens={limit})").format(
        prompt=prompt[:30], limit=max_new_tokens),
        _("Start from decoder_start_token_id, append the argmax at the last position each step, and use the prompt "
          "and the limit you are given."))


@pytest.mark.step("model logits")
def test_model_logits(submission, one_step, t5):
    """model_logits are the logits of one full forward pass, model(input_ids, decoder_input_ids)."""
    model = t5[1]
    got = submission.tensor("model_logits")

    def judge(start: torch.Tensor) -> None:
        with torch.no_grad():
            expected = model(input_ids=one_step["input_ids"], decoder_input_ids=start).logits
        expect_close(got, expected, "`model_logits`",
                     _("Call model(input_ids=input_ids, decoder_input_ids=decoder_input_ids) and take .logits."))

    on_start(submission, "model_logits", one_step, model, judge)


@pytest.mark.step("scaled logits")
def test_scaled_logits_match_model(submission, one_step, t5):
    """Scaling the decoder output by d_model**-0.5 before lm_head reproduces model(...).logits."""
    model = t5[1]
    expect_by_hand(submission, "scaled_logits", without={"model_logits", "logits"}, using={"lm_head"},
                   hint=_("Scale decoder_hidden by model.config.d_model ** -0.5 yourself and pass it to "
                          "model.lm_head."))
    got = submission.tensor("scaled_logits")

    def judge(decoder: torch.Tensor) -> None:
        with torch.no_grad():
            expected = model.lm_head(decoder * model.config.d_model ** -0.5)
        expect_close(got, expected, "`scaled_logits`", _("Multiply decoder_hidden by model.config.d_model ** -0.5 "
                                                         "before lm_head."))

    on_decoder(submission, "scaled_logits", one_step, model, judge)


@pytest.mark.cuda
def test_half_precision_on_cuda(submission):
    """On a GPU the notebook computes in float16, as in the lecture."""
    dtype = submission.tensor("encoder_hidden").dtype
    expect(dtype == torch.float16, _("`encoder_hidden` is {dtype}; load the model with dtype=getattr(torch, DTYPE).")
           .format(dtype=dtype))


@pytest.mark.step("flan")
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
    expect_equal(got, expected, "`flan_answer`", _("Load FLAN_MODEL_ID (not T5-small) and generate with "
                                                   "do_sample=False and max_new_tokens=MAX_NEW_TOKENS."))
