"""Hidden checks of tokenizer. Expected values come from the grader's own copy of the model; the student's
functions are called on inputs chosen here. A later step is judged on the student's own earlier result where it
is computed from it, so that one slip costs one step's checks."""

import pytest
import torch

from autograder.submission import StudentRaised
from autograder.testing import (Unusable, _, as_int, as_int_list, expect, expect_close, expect_derived,
                                expect_equal, judged_on, tokenization_of, tolerance)

# Words for embed_words: one-token and multi-token words, with and without a capital, and Japanese.
HIDDEN_WORDS = ["pirate", "treasure", "king", "queen", "fast", "Hello", "東京"]
# Ways to turn ids back into text: a round trip the notebook states in advance must be made with one of them.
DECODERS = ("decode", "batch_decode", "convert_tokens_to_string")


def distribution(head: list[float], size: int, seed: int) -> torch.Tensor:
    """`head` probabilities on shuffled positions, the remaining mass spread evenly over the other ids.

    Shuffling makes the sorted order differ from the id order, so a sampler that returns ranks fails.
    """
    probs = torch.full((size,), (1.0 - sum(head)) / (size - len(head)))
    probs[torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: len(head)]] = torch.tensor(head)
    return probs


# Hidden distributions for sample_next_token. Cumulative masses stay at least 0.05 away from every
# top_p below, so "keep while the mass before is below p" has one answer however it is rounded,
# and every kept token keeps at least 17% of the kept mass, so 80 seeds all but surely draw each one.
DISTRIBUTIONS = {
    "peaked": distribution([0.30, 0.22, 0.16, 0.12, 0.08], size=50, seed=7),
    "flat": distribution([0.20, 0.19, 0.18, 0.17, 0.16], size=30, seed=8),
}
TOP_K_CASES = [("peaked", 3), ("flat", 4)]
# peaked/0.2: only the most probable token; peaked/0.6: three tokens (0.30 + 0.22 + 0.16);
# flat/0.85: five tokens (the fifth takes the total from 0.74 to 0.90).
TOP_P_CASES = [("peaked", 0.2), ("peaked", 0.6), ("flat", 0.85)]
SEEDS = range(80)


def synthetic_logits() -> torch.Tensor:
    """A (3, 40) batch whose rows each have one logit at least 1.0 above the rest."""
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(1234)) * 4
    top = logits.argmax(-1)
    logits[torch.arange(3), top] = logits.max(-1).values + 1.0
    return logits


@pytest.fixture(scope="module")
def llama(reference, exercise):
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForCausalLM")


@pytest.fixture(scope="module")
def last_logits(reference, exercise, llama) -> torch.Tensor:
    """The grader's logits at the last position of PROMPT, as float32 on the CPU."""
    tokenizer, model = llama
    prompt = exercise.parameters["PROMPT"]

    def compute() -> torch.Tensor:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
        with torch.no_grad():
            return model(ids).logits[0, -1].float().cpu()
    return reference.memo(("last logits", exercise.parameters["MODEL_ID"], prompt), compute)


@pytest.fixture(scope="module")
def prob_tolerance(llama) -> float:
    """How far the student's probabilities may drift from the grader's at the model's precision."""
    return tolerance(llama[1].dtype)[1]


def pipeline_ids(submission, exercise, llama) -> list[int]:
    """The ids the later steps are judged on: the student's input_ids if they tokenize PROMPT, else the grader's."""
    got = submission.value("input_ids") if submission.has("input_ids") else None
    return tokenization_of(llama[0], exercise.parameters["PROMPT"], got)


def grader_last_logits(submission, reference, exercise, llama) -> torch.Tensor:
    """The model's logits at the last position of the ids the pipeline is judged on, float64 on the CPU."""
    tokenizer, model = llama
    ids = pipeline_ids(submission, exercise, llama)

    def compute() -> torch.Tensor:
        with torch.no_grad():
            return model(torch.tensor([ids], device=model.device)).logits[0, -1].double().cpu()
    return reference.memo(("logits of ids", exercise.parameters["MODEL_ID"], tuple(ids)), compute)


def student_last_logits(submission, vocab_size: int) -> torch.Tensor:
    logits = submission.tensor("logits")
    expect(logits.dim() == 3 and logits.shape[0] == 1 and logits.shape[-1] == vocab_size,
           _("`logits` has shape {shape}, not (1, n_tokens, vocab_size).").format(shape=tuple(logits.shape)))
    return logits[0, -1].double()


def as_distribution(value, vocab_size: int) -> torch.Tensor:
    """A next-token distribution as a (vocab_size,) tensor: the (1, vocab_size) batch of one that the lecture's
    `F.softmax(logits[:, -1, :], dim=-1)` gives is the same distribution."""
    expect(isinstance(value, torch.Tensor) and value.is_floating_point()
           and tuple(value.shape) in ((vocab_size,), (1, vocab_size)),
           _("`next_token_probs` should be a float tensor of shape ({vocab_size},), one probability per vocabulary "
             "entry; got {value}.").format(vocab_size=vocab_size, value=f"{type(value).__name__} of shape "
                                           f"{tuple(getattr(value, 'shape', ()))}"))
    return value.reshape(-1)


def grader_probs(submission, reference, exercise, llama) -> torch.Tensor:
    """The model's next-token distribution (float64, CPU) on the ids the pipeline is judged on."""
    return torch.softmax(grader_last_logits(submission, reference, exercise, llama), dim=-1)


def judged_on_probs(submission, reference, exercise, llama, name: str, judge) -> None:
    """Judge `name` on the model's distribution, or on the student's own next_token_probs where `name` is computed
    from it (so a slip there is charged once, by its own check)."""
    vocab_size = llama[1].config.vocab_size
    judged_on(submission, name, "next_token_probs",
              lambda: as_distribution(submission.value("next_token_probs"), vocab_size).double(),
              lambda: grader_probs(submission, reference, exercise, llama), judge)


@pytest.mark.step("tokenize")
def test_token_table(submission, exercise, llama):
    """token_table pairs every id of PROMPT's tokenization with its decoded text, in order."""
    ids = pipeline_ids(submission, exercise, llama)
    table = submission.value("token_table")
    expect(isinstance(table, (list, tuple)) and all(isinstance(row, (list, tuple)) and len(row) == 2 for row in table),
           _("`token_table` should be a list of (id, text) pairs."))
    expect(len(table) == len(ids), _("`token_table` has {n_table} rows but PROMPT has {n_ids} tokens: one "
                                     "row per id of input_ids, the BOS token included.").format(
                                       n_table=len(table), n_ids=len(ids)))
    for position, ((token_id, text), expected_id) in enumerate(zip(table, ids)):
        token_id = as_int(token_id, _("The id in row {position} of `token_table`").format(position=position))
        expected = (expected_id, llama[0].decode([expected_id]))
        expect(isinstance(text, str) and (token_id, text) == expected,
               _("row {position} of `token_table` is {value!r}, expected {expected!r}: pair each id of input_ids "
                 "with tokenizer.decode([id]).").format(position=position, value=(token_id, text), expected=expected))


@pytest.mark.step("tokenize")
def test_prompt_round_trip(submission, exercise):
    """Decoding input_ids without special tokens gives PROMPT back."""
    prompt = exercise.parameters["PROMPT"]
    got = submission.value("prompt_round_trip")
    expect(isinstance(got, str), _("`prompt_round_trip` should be a string, got {type}.").format(
                                     type=type(got).__name__))
    expect_derived(submission, "prompt_round_trip", *DECODERS,
                   hint=_("Decode input_ids with tokenizer.decode; assigning PROMPT shows nothing."))
    expect_equal(got, prompt, "`prompt_round_trip`", _("Decode input_ids[0] with skip_special_tokens=True."))


@pytest.mark.step("embed")
def test_embeddings_are_table_rows(submission, exercise, llama):
    """Each row of embeddings is the embedding-table row of the matching id of PROMPT's tokenization."""
    ids = pipeline_ids(submission, exercise, llama)
    table = llama[1].get_input_embeddings().weight.detach()
    expect(all(0 <= i < len(table) for i in ids), _("`input_ids` holds ids outside the vocabulary."))
    embeddings = submission.tensor("embeddings")
    expect(embeddings.dim() == 3 and embeddings.shape[0] == 1, _("`embeddings` has shape {shape}, not (1, "
                                                                 "n_tokens, hidden_size).").format(
                                                                   shape=tuple(embeddings.shape)))
    expect_close(embeddings[0], table[ids], "`embeddings[0]`",
                 _("Look input_ids up in model.get_input_embeddings(); nothing else is applied at this "
                   "step."))


@pytest.mark.step("forward")
def test_logits_values(submission, reference, exercise, llama):
    """logits are the model's scores for input_ids (PROMPT): the last position's equal the grader's forward pass."""
    got = student_last_logits(submission, llama[1].config.vocab_size)
    expect_close(got.float(), grader_last_logits(submission, reference, exercise, llama).float(), "`logits[0, -1]`",
                 _("Run the model on input_ids and keep .logits."))


@pytest.mark.step("probabilities")
def test_next_token_probs(submission, reference, exercise, llama):
    """next_token_probs is the softmax, over the vocabulary, of the logits at the last position."""
    vocab_size = llama[1].config.vocab_size
    got = as_distribution(submission.value("next_token_probs"), vocab_size)
    expect(bool(torch.isfinite(got).all()) and abs(float(got.double().sum()) - 1) < 1e-2,
           _("`next_token_probs` sums to {total:.4g}, not 1: take the softmax over the vocabulary axis (dim=-1) of "
             "the last position's logits.").format(total=float(got.double().sum())))
    judged_on(submission, "next_token_probs", "logits", lambda: student_last_logits(submission, vocab_size),
              lambda: grader_last_logits(submission, reference, exercise, llama),
              lambda logits: expect_close(got, torch.softmax(logits.double(), dim=-1), "`next_token_probs`",
                                          _("Take logits[0, -1], the scores after the last token of PROMPT (not the "
                                            "first position), and its softmax over the vocabulary.")))


@pytest.mark.step("top10")
def test_top10_matches_reference(submission, reference, exercise, prob_tolerance, llama):
    """top10_ids and top10_probs are the ten most probable next tokens after PROMPT, in order."""
    ids = as_int_list(submission.value("top10_ids"), "`top10_ids`")
    expect(len(ids) == 10 and all(0 <= i < llama[1].config.vocab_size for i in ids),
           _("`top10_ids` should hold 10 ids of the vocabulary, it holds {ids}.").format(ids=ids))

    def judge_ids(probs: torch.Tensor) -> None:
        expected_probs, expected_ids = probs.topk(10)
        # Compared through probabilities, so tokens with equal probability may come in either order.
        expect(torch.allclose(probs[ids], expected_probs, atol=prob_tolerance),
               _("`top10_ids` is {ids}, but the ten most probable next tokens are {expected_ids} ({value}): "
                 "take the softmax of the last position's logits (logits[0, -1]) and the ten largest values, "
                 "most probable first.").format(
                   ids=ids, expected_ids=expected_ids.tolist(),
                   value=[llama[0].decode([i]) for i in expected_ids.tolist()]))

    judged_on_probs(submission, reference, exercise, llama, "top10_ids", judge_ids)
    got = submission.tensor("top10_probs")
    # In the model's dtype, so the tolerance is that of the precision the notebook runs at.
    judged_on_probs(submission, reference, exercise, llama, "top10_probs", lambda probs: expect_close(
        got, probs.topk(10).values.to(llama[1].dtype), "`top10_probs`",
        _("They are the probabilities of top10_ids after the softmax, most probable first.")))


@pytest.mark.step("greedy")
def test_greedy_next_token(submission, reference, exercise, prob_tolerance, llama):
    """greedy_token_id is the argmax of the next-token distribution; greedy_token_text is its decoded text."""
    got = as_int(submission.value("greedy_token_id"), "`greedy_token_id`")

    def judge(probs: torch.Tensor) -> None:
        expected = int(probs.argmax())
        expect(0 <= got < len(probs) and float(probs[got]) >= float(probs[expected]) - prob_tolerance,
               _("`greedy_token_id` is {got}, but the most probable next token is {expected} ({value!r}): take "
                 "the argmax over the vocabulary at the last position.").format(
                   got=got, expected=expected, value=llama[0].decode([expected])))

    judged_on_probs(submission, reference, exercise, llama, "greedy_token_id", judge)
    # The text is judged on the student's own id: a wrong id is this check's one loss, not two.
    expect_equal(submission.value("greedy_token_text"), llama[0].decode([got]), "`greedy_token_text`",
                 _("Decode greedy_token_id: tokenizer.decode([greedy_token_id])."))


def call_softmax(submission, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    probs = submission.call("softmax_with_temperature", logits, temperature)
    expect(isinstance(probs, torch.Tensor), _("softmax_with_temperature(logits, {temperature}) returned a "
                                              "{type}; return a tensor.").format(
                                                temperature=temperature, type=type(probs).__name__))
    expect(tuple(probs.shape) == tuple(logits.shape), _("softmax_with_temperature(logits, {temperature}) "
                                                        "has shape {shape} for logits of shape {shape2}; "
                                                        "keep the input's shape.").format(
                                                          temperature=temperature, shape=tuple(probs.shape),
                                                          shape2=tuple(logits.shape)))
    expect(probs.is_floating_point() and bool(torch.isfinite(probs).all()),
           _("softmax_with_temperature(logits, {temperature}) returned NaN, infinite or non-float values: "
             "divide first, then use torch.softmax, which is stable for large inputs.").format(
               temperature=temperature))
    return probs


@pytest.mark.step("temperature")
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0], ids=lambda t: f"t={t}")
def test_softmax_with_temperature_values(submission, last_logits, temperature):
    """softmax_with_temperature(logits, t) equals softmax(logits / t) on the model's logits and on a batch."""
    for logits in (last_logits, synthetic_logits()):
        expect_close(call_softmax(submission, logits, temperature), torch.softmax(logits.double() / temperature, -1),
                     _("softmax_with_temperature(logits of shape {shape}, {temperature})").format(
                         shape=tuple(logits.shape), temperature=temperature),
                     _("Divide the logits by the temperature, then take the softmax over the last axis."))


@pytest.mark.step("temperature")
@pytest.mark.parametrize("temperature", [1e-3, 1e4], ids=["t=0.001 is nearly one-hot", "t=10000 is nearly uniform"])
def test_softmax_with_temperature_limits(submission, last_logits, temperature):
    """A temperature near 0 gives (almost) the one-hot argmax; a very large one (almost) the uniform distribution."""
    if temperature < 1:
        logits = synthetic_logits()
        probs = call_softmax(submission, logits, temperature).double()
        expect(bool((probs.argmax(-1) == logits.argmax(-1)).all()) and bool((probs.max(-1).values > 0.99).all()),
               _("At temperature 0.001 the largest probabilities are {values}; they should be almost 1 at "
                 "the argmax: divide the logits by the temperature before the softmax.").format(
                   values=probs.max(-1).values.tolist()))
        return
    for logits in (last_logits, synthetic_logits()):
        probs = call_softmax(submission, logits, temperature).double()
        spread = (probs.max(-1).values / probs.min(-1).values).max().item()
        expect(spread < 1.05, _("At temperature 10000 the most probable token is {spread:.3g} times as "
                                "probable as the least probable one; the distribution should be almost "
                                "uniform: divide the logits by the temperature before the softmax.").format(
                                  spread=spread))


@pytest.mark.step("temperature")
def test_softmax_with_temperature_rejects_nonpositive(submission):
    """softmax_with_temperature raises ValueError, with a message, for a temperature <= 0."""
    for temperature in (0.0, -1.0):
        try:
            submission.call("softmax_with_temperature", synthetic_logits(), temperature)
        except StudentRaised as exc:
            expect(exc.type_name == "ValueError", _("softmax_with_temperature(logits, {temperature}) "
                                                    "raised {type_name}; check the temperature first and "
                                                    "raise ValueError.").format(
                                                      temperature=temperature, type_name=exc.type_name))
            expect(bool(exc.error_message.strip()), _("The ValueError for a temperature <= 0 has no "
                                                      "message; say what is wrong, e.g. 'temperature must "
                                                      "be positive'."))
            continue
        raise AssertionError(_("softmax_with_temperature(logits, {temperature}) returned a value; a "
                               "temperature <= 0 has no meaning: raise ValueError.").format(temperature=temperature))


def top_k_set(probs: torch.Tensor, k: int) -> set[int]:
    return set(probs.topk(k).indices.tolist())


def nucleus(probs: torch.Tensor, p: float) -> set[int]:
    """The smallest set of most probable ids whose total reaches p."""
    sorted_probs, order = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(0) - sorted_probs
    return set(order[mass_before < p].tolist())


def expect_draws_cover(submission, probs: torch.Tensor, allowed: set[int], what: str, **options) -> None:
    """Over SEEDS, sample_next_token returns only ids in `allowed`, and each of them at least once."""
    draws = submission.call_each("sample_next_token", [((probs,), {"seed": seed, **options}) for seed in SEEDS])
    for token_id in draws:
        expect(type(token_id) is int, _("sample_next_token(...) returned a {type}; return the token id as "
                                        "a Python int (int(...)).").format(type=type(token_id).__name__))
    outside = sorted(set(draws) - allowed)
    expect(not outside, _("With {what}, sample_next_token returned ids {outside}, outside the allowed ids "
                          "{allowed}: return the id in the vocabulary (not the rank after sorting) and "
                          "zero every other token before drawing.").format(
                            what=what, outside=outside[:5], allowed=sorted(allowed)))
    missing = sorted(allowed - set(draws))
    expect(not missing, _("With {what}, sample_next_token never returned {missing} in {n_draws} seeds, "
                          "though they are among the allowed ids {allowed}: keep all of them (for top_p, "
                          "also the token that takes the total past p) and renormalise.").format(
                            what=what, missing=missing, n_draws=len(draws), allowed=sorted(allowed)))


@pytest.mark.step("sampler")
@pytest.mark.parametrize(("name", "k"), TOP_K_CASES, ids=[f"{n}, top_k={k}" for n, k in TOP_K_CASES])
def test_sampler_top_k_support(submission, name, k):
    """With top_k, sample_next_token draws from the k most probable ids of a hidden distribution, and all of them."""
    probs = DISTRIBUTIONS[name]
    expect_draws_cover(submission, probs, top_k_set(probs, k), f"top_k={k}", top_k=k)


@pytest.mark.step("sampler")
@pytest.mark.parametrize(("name", "p"), TOP_P_CASES, ids=[f"{n}, top_p={p}" for n, p in TOP_P_CASES])
def test_sampler_top_p_support(submission, name, p):
    """With top_p, sample_next_token draws from the nucleus of a hidden distribution, and all of it."""
    probs = DISTRIBUTIONS[name]
    expect_draws_cover(submission, probs, nucleus(probs, p), f"top_p={p}", top_p=p)


def word_vectors_of(llama, words: list[str]) -> torch.Tensor:
    """The exercise's word vectors: each word tokenized on its own without special tokens, its rows averaged."""
    tokenizer, model = llama
    table = model.get_input_embeddings().weight.detach().float().cpu()
    return torch.stack([table[tokenizer(w, add_special_tokens=False).input_ids].mean(0) for w in words])


def lecture_word_vectors(llama, words: list[str]) -> torch.Tensor:
    """The lecture's word vectors: the words tokenized as one padded batch (BOS added, padded with EOS), each row
    averaged over the whole padded length."""
    tokenizer, model = llama
    table = model.get_input_embeddings().weight.detach().float().cpu()
    rows = [tokenizer(w).input_ids for w in words]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return torch.stack([table[ids + [pad] * (width - len(ids))].mean(0) for ids in rows])


@pytest.mark.step("word vectors")
def test_word_vectors(submission, llama):
    """embed_words gives, per word, the mean embedding row of its tokens (tokenized alone, no BOS)."""
    dtype = llama[1].get_input_embeddings().weight.dtype
    expected = word_vectors_of(llama, HIDDEN_WORDS).to(dtype)
    # Two word lists, so an embed_words that ignores its argument cannot pass.
    for words in (HIDDEN_WORDS, HIDDEN_WORDS[:2:-1]):
        rows = [HIDDEN_WORDS.index(w) for w in words]
        got = submission.call("embed_words", words)
        if isinstance(got, torch.Tensor) and got.shape == expected[rows].shape and torch.allclose(
                got.double(), lecture_word_vectors(llama, words).double(), rtol=1e-3, atol=1e-4):
            raise AssertionError(_("embed_words({words}) averages the BOS and padding rows too, as the lecture's "
                                   "batch code (tokenizer(words, padding=True), then .mean(dim=1)) does. This "
                                   "exercise asks for each word's own tokens only: tokenize every word on its own "
                                   "with add_special_tokens=False.").format(words=words))
        expect_close(got, expected[rows], f"embed_words({words})",
                     _("Tokenize each word on its own with add_special_tokens=False (no BOS) and average "
                       "the embedding rows of its tokens."))


@pytest.mark.step("cosine")
def test_cosine_similarity_values(submission, llama):
    """cosine_similarity_matrix equals the grader's cosine similarities on hidden vectors and word embeddings."""
    lengths = torch.linspace(0.2, 5.0, 6).unsqueeze(1)
    cases = {
        "random vectors of different lengths": torch.randn(6, 24, generator=torch.Generator().manual_seed(5)) * lengths,
        "embedding rows of the hidden words": word_vectors_of(llama, HIDDEN_WORDS),
    }
    for what, vectors in cases.items():
        expected = torch.nn.functional.cosine_similarity(vectors.unsqueeze(1), vectors.unsqueeze(0), dim=-1)
        expect_close(submission.call("cosine_similarity_matrix", vectors), expected,
                     f"cosine_similarity_matrix({what})",
                     _("Entry [i, j] is vectors[i] · vectors[j] / (|vectors[i]| |vectors[j]|)."))


def own_words_result(submission, function: str, words: list[str]) -> torch.Tensor:
    """`function`(embed_words(words)) computed by the student's own functions, as a float64 tensor."""
    vectors = submission.call("embed_words", words)
    expect(isinstance(vectors, torch.Tensor), _("embed_words returned a {type}.").format(type=type(vectors).__name__))
    result = submission.call(function, vectors)
    expect(isinstance(result, torch.Tensor), _("{function} returned a {type}.").format(
        function=function, type=type(result).__name__))
    return result.double()


@pytest.mark.step("similarity")
def test_word_similarity(submission, exercise, llama):
    """similarity is cosine_similarity_matrix(embed_words(WORDS)), for the WORDS of the parameters cell."""
    words = exercise.parameters["WORDS"]

    def grader() -> torch.Tensor:
        vectors = word_vectors_of(llama, words)
        return torch.nn.functional.cosine_similarity(vectors.unsqueeze(1), vectors.unsqueeze(0), dim=-1).double()

    got = submission.tensor("similarity")
    # The student's own functions where `similarity` is made with them: a slip inside them is their checks' loss.
    judged_on(submission, "similarity", "cosine_similarity_matrix",
              lambda: own_words_result(submission, "cosine_similarity_matrix", words), grader,
              lambda expected: expect_close(got, expected, "`similarity`",
                                            _("It is cosine_similarity_matrix(embed_words(WORDS)), with WORDS from "
                                              "the parameters cell.")))


def principal_coordinates(vectors: torch.Tensor) -> torch.Tensor:
    centered = vectors.double() - vectors.double().mean(0)
    return centered @ torch.linalg.svd(centered, full_matrices=False).Vh[:2].T


def expect_same_up_to_sign(got, expected: torch.Tensor, what: str, hint) -> None:
    """The coordinates equal, each axis up to its sign (a principal component's direction is arbitrary; scikit-
    learn's PCA and an SVD may pick either)."""
    expect(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(expected.shape),
           _("{what} should be a tensor or array of shape {shape}, got {value}.").format(
               what=what, shape=tuple(expected.shape),
               value=f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__))
    signs = torch.where((got.double() * expected).sum(0) < 0, -1.0, 1.0)
    scale = float(expected.abs().max())
    expect_close(got / scale, expected * signs / scale,
                 _("{what} (scaled to the largest coordinate)").format(what=what), hint)


@pytest.mark.step("pca")
def test_pca_2d(submission, llama):
    """pca_2d projects hidden vectors on their two principal components (each axis up to its sign)."""
    cases = {"the hidden words' vectors": word_vectors_of(llama, HIDDEN_WORDS),
             "random vectors": torch.randn(8, 24, generator=torch.Generator().manual_seed(11))
             * torch.linspace(3.0, 0.5, 24)}
    for what, vectors in cases.items():
        expect_same_up_to_sign(submission.call("pca_2d", vectors), principal_coordinates(vectors),
                               f"pca_2d({what})",
                               _("Centre the vectors (subtract their mean) and project them on the top two "
                                 "principal directions: scikit-learn's PCA(n_components=2).fit_transform, or the top "
                                 "two right singular vectors of torch.linalg.svd."))


@pytest.fixture(scope="module")
def axes(submission) -> list[dict]:
    """Every axes of every figure the notebook left open, as data (read once per submission)."""
    figures = submission.call("grading_figures")
    expect(isinstance(figures, list), _("The grader could not read your figures; leave them open (no "
                                        "plt.close())."))
    return [ax for figure in figures if isinstance(figure, list) for ax in figure if isinstance(ax, dict)]


@pytest.mark.step("pca")
def test_pca_of_word_vectors(submission, exercise, llama, axes):
    """pca_coords are pca_2d(embed_words(WORDS)), drawn as a scatter plot labelled with the words."""
    words = exercise.parameters["WORDS"]
    got = submission.tensor("pca_coords")
    judged_on(submission, "pca_coords", "pca_2d", lambda: own_words_result(submission, "pca_2d", words),
              lambda: principal_coordinates(word_vectors_of(llama, words)),
              lambda expected: expect_same_up_to_sign(got, expected, "`pca_coords`", _(
                  "It is pca_2d(embed_words(WORDS)), with WORDS from the parameters cell.")))
    scale = float(got.double().abs().max()) or 1.0
    plotted = [ax for ax in axes if len(ax.get("points", [])) == len(words)]
    expect(any(torch.allclose(torch.tensor(ax["points"], dtype=torch.float64), got.double(), atol=1e-3 * scale)
               for ax in plotted), _("No scatter plot shows the points of pca_coords: draw them with "
                                     "ax.scatter (or plt.scatter)."))
    expect(any(sorted(t.strip() for t in ax.get("texts", [])) == sorted(words) for ax in plotted),
           _("Label every point of the scatter plot with its word (ax.text or plt.text)."))


@pytest.mark.step("japanese")
def test_japanese_token_ids(submission, exercise, llama):
    """japanese_ids is the tokenization of JAPANESE_TEXT (BOS included), with the grader's token count."""
    expected = llama[0](exercise.parameters["JAPANESE_TEXT"]).input_ids
    ids = as_int_list(submission.value("japanese_ids"), "`japanese_ids`")
    expect_equal(ids, expected, "`japanese_ids`", _("Encode JAPANESE_TEXT with the default special tokens, so the "
                                                    "BOS id comes first."))


@pytest.mark.step("special tokens")
def test_special_tokens(submission, exercise, llama):
    """SPECIAL_TEXT encodes without BOS, each marker as one id; decoding keeps or drops the markers as asked."""
    tokenizer = llama[0]
    text = exercise.parameters["SPECIAL_TEXT"]
    expected = tokenizer(text, add_special_tokens=False).input_ids
    ids = as_int_list(submission.value("special_ids"), "`special_ids`")
    expect_equal(ids, expected, "`special_ids`", _("Encode SPECIAL_TEXT with add_special_tokens=False, so that "
                                                   "only the markers written in the text become special ids."))
    decoded = submission.value("special_decoded")
    expect_derived(submission, "special_decoded", *DECODERS,
                   hint=_("Decode special_ids with tokenizer.decode; assigning SPECIAL_TEXT shows nothing."))
    expect_equal(decoded, text, "`special_decoded`", _("Decoding special_ids without options gives SPECIAL_TEXT "
                                                       "back, markers included."))
    expect_equal(submission.value("special_stripped"), tokenizer.decode(expected, skip_special_tokens=True),
                 "`special_stripped`", _("Decode special_ids with skip_special_tokens=True."))


@pytest.fixture(scope="module")
def device_probs(reference, exercise, llama) -> torch.Tensor:
    """The next-token distribution after PROMPT on the model's own device, as the notebook draws from it."""
    tokenizer, model = llama
    prompt = exercise.parameters["PROMPT"]

    def compute() -> torch.Tensor:
        ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
        with torch.no_grad():
            return torch.softmax(model(ids).logits[0, -1].float(), dim=-1)
    return reference.memo(("device probs", exercise.parameters["MODEL_ID"], prompt), compute)


@pytest.mark.step("sample")
def test_seeded_sample(submission, exercise, llama, device_probs):
    """sampled_token_id is the draw of torch.multinomial from the next-token distribution with a generator seeded
    with SAMPLE_SEED."""
    got = as_int(submission.value("sampled_token_id"), "`sampled_token_id`")
    # A draw can be the most probable token, so the value alone does not show that it was drawn.
    expect_derived(submission, "sampled_token_id", "multinomial",
                   hint=_("Draw it with torch.multinomial and the seeded generator; the argmax is greedy decoding, "
                          "not sampling."))
    def judge(probs: torch.Tensor) -> None:
        generator = torch.Generator(device=probs.device).manual_seed(exercise.parameters["SAMPLE_SEED"])
        expected = int(torch.multinomial(probs, num_samples=1, generator=generator))
        expect(got == expected, _("`sampled_token_id` is {got}, but torch.multinomial(next_token_probs, 1, "
                                  "generator=...) with the generator seeded with SAMPLE_SEED draws {expected}: "
                                  "seed a torch.Generator on the device of the probabilities with SAMPLE_SEED.")
               .format(got=got, expected=expected))

    # Replayed on the student's own next_token_probs (as sent, on the model's device) where the draw is made from it.
    judged_on(submission, "sampled_token_id", "next_token_probs",
              lambda: as_distribution(submission.value("next_token_probs"),
                                      llama[1].config.vocab_size).to(device_probs.device),
              lambda: device_probs, judge)


def own_chart_values(submission) -> tuple[list[float], list[str]]:
    """The student's own top10_probs and top10_tokens, as the bars should show them."""
    heights = submission.tensor("top10_probs")
    tokens = submission.value("top10_tokens")
    if heights.numel() != 10 or not isinstance(tokens, (list, tuple)) or len(tokens) != 10 \
            or not all(isinstance(t, str) for t in tokens):
        raise Unusable()  # not ten probabilities and ten texts: the top10 checks say what is wrong
    return heights.double().reshape(-1).tolist(), [t.strip() for t in tokens]


@pytest.mark.step("chart")
def test_top10_bar_chart(submission, reference, exercise, prob_tolerance, llama, axes):
    """A bar chart shows the ten probabilities of the most probable next tokens, labelled with their text."""
    charts = [ax for ax in axes if len(ax.get("bars", [])) == 10]
    expect(charts, _("No figure has a chart with ten bars: draw top10_probs with ax.bar (or plt.bar) and "
                     "leave the figure open."))

    def grader() -> tuple[list[float], list[str]]:
        values, ids = grader_probs(submission, reference, exercise, llama).topk(10)
        return values.tolist(), [llama[0].decode([i]).strip() for i in ids.tolist()]

    # The bars of the student's own top10_probs and top10_tokens where those are computed (from the logits).
    judged_on(submission, "top10_probs", "logits", lambda: own_chart_values(submission), grader,
              lambda values: expect_chart(charts, *values, prob_tolerance))


def expect_chart(charts: list[dict], heights: list[float], tokens: list[str], prob_tolerance: float) -> None:
    heights_ok = [ax for ax in charts if torch.allclose(torch.tensor(ax["bars"], dtype=torch.float64),
                                                        torch.tensor(heights, dtype=torch.float64),
                                                        atol=prob_tolerance)]
    expect(heights_ok, _("The ten bars are {value}, but the ten largest next-token probabilities are "
                         "{value2}: plot top10_probs, most probable first.").format(
                           value=[round(h, 4) for h in charts[0]['bars']], value2=[round(p, 4) for p in heights]))
    labelled = [ax for ax in heights_ok if [t.strip() for t in ax.get("xticklabels", [])] == tokens]
    expect(labelled, _("The bars are labelled {value}, not with top10_tokens {tokens}: set the x tick "
                       "labels to the decoded tokens.").format(value=heights_ok[0].get('xticklabels'), tokens=tokens))


@pytest.mark.step("other tokenizer")
def test_other_tokenizer(submission, exercise, reference):
    """other_prompt_ids and other_japanese_ids are PROMPT and JAPANESE_TEXT encoded by COMPARE_TOKENIZER_ID's
    tokenizer."""
    other = reference.tokenizer(exercise.parameters["COMPARE_TOKENIZER_ID"])
    for name, text in (("other_prompt_ids", "PROMPT"), ("other_japanese_ids", "JAPANESE_TEXT")):
        expected = other(exercise.parameters[text]).input_ids
        ids = as_int_list(submission.value(name), f"`{name}`")
        expect_equal(ids, expected, f"`{name}`",
                     _("Encode {text} with other_tokenizer, the tokenizer of COMPARE_TOKENIZER_ID ({model}), not "
                       "with Llama's tokenizer.").format(text=text, model=exercise.parameters["COMPARE_TOKENIZER_ID"]))
