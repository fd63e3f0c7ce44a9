"""Public checks of tokenizer: students run these with `autograder check`; they also count in grading."""

import pytest
import torch

from autograder.testing import _, as_int_list, expect, expect_derived, expect_equal, expect_shape, judged_on, \
    tokenization_of


# Ways to turn ids back into text: a round trip the notebook states in advance must be made with one of them.
DECODERS = ("decode", "batch_decode", "convert_tokens_to_string")


@pytest.fixture
def llama(reference, exercise):
    """The grader's own tokenizer and model for the exercise's MODEL_ID."""
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForCausalLM")


def prompt_ids(submission) -> list[int]:
    """The student's `input_ids` as plain ints, after checking it is a (1, n_tokens) tensor."""
    ids = submission.tensor("input_ids")
    expect(ids.dim() == 2 and ids.shape[0] == 1, _("`input_ids` has shape {shape}; it should be (1, "
                                                   "n_tokens): tokenize with return_tensors='pt' and keep "
                                                   "the batch dimension.").format(shape=tuple(ids.shape)))
    return as_int_list(ids, "`input_ids`")


@pytest.mark.step("tokenize")
def test_prompt_token_ids(submission, exercise, llama):
    """input_ids is the tokenization of PROMPT, starting with the BOS token."""
    tokenizer = llama[0]
    expected = tokenizer(exercise.parameters["PROMPT"]).input_ids
    ids = prompt_ids(submission)
    bos = tokenizer.bos_token_id
    expect(ids[:1] == [bos], _("`input_ids` starts with {ids}, not with the BOS id {bos} ({bos_token}): "
                               "leave add_special_tokens at its default so the tokenizer puts it first.").format(
                                 ids=ids[:1], bos=bos, bos_token=tokenizer.bos_token))
    expect_equal(ids, expected, "`input_ids`", _("Tokenize PROMPT itself, not a copy of the text you see in the "
                                                 "notebook."))


def prompt_length(submission, exercise, llama) -> int:
    """How many tokens PROMPT has: the student's input_ids if they tokenize PROMPT, else the grader's."""
    got = submission.value("input_ids") if submission.has("input_ids") else None
    return len(tokenization_of(llama[0], exercise.parameters["PROMPT"], got))


@pytest.mark.step("embed")
def test_embeddings_shape(submission, exercise, llama):
    """embeddings has shape (1, n_tokens, hidden_size) for PROMPT."""
    n_tokens = prompt_length(submission, exercise, llama)
    expect_shape(submission.tensor("embeddings"), (1, n_tokens, llama[1].config.hidden_size), "`embeddings`",
                 _("Pass the whole (1, n_tokens) input_ids through model.get_input_embeddings()."))


@pytest.mark.step("forward")
def test_logits_shape(submission, exercise, llama):
    """logits has shape (1, n_tokens, vocab_size) for PROMPT: one score per vocabulary entry at every position."""
    n_tokens = prompt_length(submission, exercise, llama)
    expect_shape(submission.tensor("logits"), (1, n_tokens, llama[1].config.vocab_size), "`logits`",
                 _("Keep the model output's .logits as it is, for every position."))


def as_distribution(value, vocab_size: int) -> torch.Tensor:
    """A next-token distribution as a (vocab_size,) float64 tensor: the (1, vocab_size) batch of one the lecture's
    `F.softmax(logits[:, -1, :], dim=-1)` gives is the same distribution."""
    expect(isinstance(value, torch.Tensor) and value.is_floating_point()
           and tuple(value.shape) in ((vocab_size,), (1, vocab_size)),
           _("`next_token_probs` should be a float tensor of shape ({vocab_size},), one probability per vocabulary "
             "entry; got {value}.").format(vocab_size=vocab_size, value=f"{type(value).__name__} of shape "
                                           f"{tuple(getattr(value, 'shape', ()))}"))
    return value.reshape(-1).double()


def grader_probs(submission, exercise, llama) -> torch.Tensor:
    """The model's next-token distribution after PROMPT, on the student's own ids where they tokenize PROMPT."""
    tokenizer, model = llama
    got = submission.value("input_ids") if submission.has("input_ids") else None
    with torch.no_grad():
        inputs = torch.tensor([tokenization_of(tokenizer, exercise.parameters["PROMPT"], got)], device=model.device)
        return torch.softmax(model(inputs).logits[0, -1].double(), dim=-1).cpu()


def judged_on_probs(submission, exercise, llama, name: str, judge) -> None:
    """Judge `name` on the model's distribution, or on the student's own next_token_probs where `name` is computed
    from it (a slip there is charged once, by its own check)."""
    vocab_size = llama[1].config.vocab_size
    judged_on(submission, name, "next_token_probs",
              lambda: as_distribution(submission.value("next_token_probs"), vocab_size),
              lambda: grader_probs(submission, exercise, llama), judge)


@pytest.mark.step("top10")
def test_top10_format(submission, exercise, llama):
    """top10_ids, top10_probs and top10_tokens describe the ten most probable next tokens after PROMPT, most
    probable first."""
    ids = as_int_list(submission.value("top10_ids"), "`top10_ids`")
    expect(len(ids) == 10 and len(set(ids)) == 10, _("`top10_ids` should hold 10 distinct ids, it holds "
                                                     "{ids}.").format(ids=ids))
    judged_on_probs(submission, exercise, llama, "top10_ids", lambda probs: expect(
        len(set(ids) & set(probs.topk(10).indices.tolist())) >= 8,
        _("`top10_ids` ({ids}) are not the ten most probable next tokens after PROMPT: take the softmax of the "
          "logits at the last position, then the ten largest.").format(ids=ids)))
    top = submission.tensor("top10_probs")
    expect_shape(top, (10,), "`top10_probs`")
    expect(top.is_floating_point() and bool(((top >= 0) & (top <= 1)).all()),
           _("`top10_probs` should be probabilities in [0, 1], got {probs}: take them after the softmax.").format(
               probs=top.tolist()))
    expect(bool((top[:-1] >= top[1:]).all()), _("`top10_probs` is not in decreasing order ({probs}): "
                                                "list the most probable token first (torch.topk sorts "
                                                "for you).").format(probs=top.tolist()))
    expected_tokens = [llama[0].decode([i]) for i in ids]
    tokens = submission.value("top10_tokens")
    expect(isinstance(tokens, (list, tuple)), _("`top10_tokens` should be a list of strings, got {type}.").format(
        type=type(tokens).__name__))
    expect_equal(list(tokens), expected_tokens, "`top10_tokens`",
                 _("Decode each id of top10_ids on its own: tokenizer.decode([id])."))


@pytest.mark.step("temperature")
def test_softmax_with_temperature_is_a_distribution(submission):
    """softmax_with_temperature returns non-negative rows that sum to 1, with the input's shape."""
    for shape, temperature in (((2, 7), 1.0), ((3, 5), 0.7)):
        logits = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3
        probs = submission.call("softmax_with_temperature", logits, temperature)
        expect(isinstance(probs, torch.Tensor), _("softmax_with_temperature(logits, {temperature}) "
                                                  "returned a {type}; return a tensor.").format(
                                                    temperature=temperature, type=type(probs).__name__))
        expect_shape(probs, shape, _("softmax_with_temperature(logits of shape {shape}, {temperature})").format(
                                       shape=shape, temperature=temperature),
                     _("Return one probability per logit: the softmax over the last axis."))
        expect(probs.is_floating_point() and bool((probs >= 0).all()),
               _("softmax_with_temperature(logits, {temperature}) has negative or non-float values.").format(
                   temperature=temperature))
        sums = probs.double().sum(-1)
        expect(torch.allclose(sums, torch.ones(shape[0], dtype=torch.float64), atol=1e-3),
               _("The rows of softmax_with_temperature(logits, {temperature}) sum to {sums}, not 1: "
                 "normalise over the last axis (dim=-1).").format(temperature=temperature, sums=sums.tolist()))


@pytest.mark.step("sampler")
def test_sampler_reproducible(submission):
    """sample_next_token returns an int id; the same seed gives the same id, different seeds can differ."""
    probs = torch.softmax(torch.linspace(2.0, 0.0, 20), dim=0)
    repeated = [(seed, options) for options in ({}, {"top_k": 5}, {"top_p": 0.7}) for seed in (0, 1, 2)]
    # Each seeded call twice in a row, then 20 seeds: one round trip for all of them.
    calls = [((probs,), {"seed": seed, **options}) for seed, options in repeated for _twice in range(2)]
    calls += [((probs,), {"seed": seed}) for seed in range(20)]
    results = submission.call_each("sample_next_token", calls)
    for (seed, options), first, again in zip(repeated, results[0::2], results[1::2]):
        expect(type(first) is int, _("sample_next_token(...) returned a {type}; return the token id as "
                                     "a Python int (int(...)).").format(type=type(first).__name__))
        expect(0 <= first < len(probs), _("sample_next_token(...) returned {first}, which is not an id "
                                          "of a {n_probs}-token vocabulary.").format(
                                            first=first, n_probs=len(probs)))
        expect(again == first, _("sample_next_token(probs, seed={seed}, {options}) returned {first}, "
                                 "then {again}: draw with torch.multinomial(..., "
                                 "generator=torch.Generator(device=probs.device).manual_seed(seed)).").format(
                                   seed=seed, options=options, first=first, again=again))
    draws = set(results[2 * len(repeated):])
    expect(len(draws) > 1, _("sample_next_token returned {value} for 20 different seeds: it should draw at "
                             "random (torch.multinomial with the seeded generator), not take the argmax.").format(
                               value=draws.pop()))


@pytest.mark.step("cosine")
def test_cosine_similarity_structure(submission):
    """cosine_similarity_matrix gives an (n, n) symmetric matrix with ones on the diagonal, values in [-1, 1]."""
    for n in (5, 3):
        lengths = torch.tensor([[0.5], [1.0], [2.0], [4.0], [8.0]])[:n]
        vectors = torch.randn(n, 16, generator=torch.Generator().manual_seed(n)) * lengths
        sims = submission.call("cosine_similarity_matrix", vectors)
        expect(isinstance(sims, torch.Tensor), _("cosine_similarity_matrix returned a {type}; return a "
                                                 "tensor.").format(type=type(sims).__name__))
        expect_shape(sims, (n, n), f"cosine_similarity_matrix({n} vectors)", _("Compare every vector with "
                                                                               "every other one."))
        sims = sims.double()
        expect(bool(torch.isfinite(sims).all()), _("cosine_similarity_matrix returned NaN or infinite "
                                                   "values."))
        expect(torch.allclose(sims, sims.T, atol=1e-4), _("cosine_similarity_matrix is not symmetric."))
        diagonal = sims.diagonal()
        expect(torch.allclose(diagonal, torch.ones(n, dtype=torch.float64), atol=1e-3),
               _("The diagonal of cosine_similarity_matrix is {value}, not all 1: divide each dot product "
                 "by the lengths (norms) of both vectors.").format(value=[round(x, 3) for x in diagonal.tolist()]))
        expect(bool((sims.abs() <= 1 + 1e-3).all()), _("cosine_similarity_matrix has values outside [-1, "
                                                       "1]."))


@pytest.mark.step("japanese")
def test_japanese_round_trip(submission, exercise):
    """Decoding japanese_ids all at once, without special tokens, gives JAPANESE_TEXT back."""
    text = exercise.parameters["JAPANESE_TEXT"]
    got = submission.value("japanese_round_trip")
    expect(isinstance(got, str), _("`japanese_round_trip` should be a string, got {type}.").format(
                                     type=type(got).__name__))
    # The notebook says what the round trip gives, so the value alone cannot show the decoding was done.
    expect_derived(submission, "japanese_round_trip", *DECODERS,
                   hint=_("Decode japanese_ids with tokenizer.decode; assigning JAPANESE_TEXT shows nothing."))
    if "\ufffd" in got:
        raise AssertionError(_("`japanese_round_trip` contains '�': a token can hold part of a character's "
                               "bytes, so decode the whole id list in one call instead of token by token."))
    expect_equal(got, text, "`japanese_round_trip`", _("Decode japanese_ids with skip_special_tokens=True."))
