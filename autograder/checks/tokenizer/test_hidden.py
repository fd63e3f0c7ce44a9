"""Hidden checks of tokenizer. Expected values come from the grader's own copy of the model;
the student's functions are called on inputs chosen here."""

import pytest
import torch

from autograder.submission import StudentRaised
from autograder.testing import _, as_int_list, expect, expect_close, tokenization_of, tolerance

# Words for embed_words: one-token and multi-token words, with and without a capital, and Japanese.
HIDDEN_WORDS = ["pirate", "treasure", "king", "queen", "fast", "Hello", "東京"]


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
def next_probs(last_logits) -> torch.Tensor:
    return torch.softmax(last_logits, dim=-1)


@pytest.fixture(scope="module")
def prob_tolerance(llama) -> float:
    """How far the student's probabilities may drift from the grader's at the model's precision."""
    return tolerance(llama[1].dtype)[1]


def pipeline_ids(submission, exercise, llama) -> list[int]:
    """The ids the later steps are judged on: the student's input_ids if they tokenize PROMPT, else the grader's."""
    got = submission.value("input_ids") if submission.has("input_ids") else None
    return tokenization_of(llama[0], exercise.parameters["PROMPT"], got)


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
        expect(type(token_id) is int, _("row {position} of `token_table` starts with a {type}; use Python "
                                        "ints (input_ids[0].tolist()).").format(
                                          position=position, type=type(token_id).__name__))
        expected = (expected_id, llama[0].decode([expected_id]))
        expect(isinstance(text, str) and (token_id, text) == expected,
               _("row {position} of `token_table` is {value!r}, expected {expected!r}: pair each id of input_ids "
                 "with tokenizer.decode([id]).").format(position=position, value=(token_id, text), expected=expected))


def test_prompt_round_trip(submission, exercise):
    """Decoding input_ids without special tokens gives PROMPT back."""
    prompt = exercise.parameters["PROMPT"]
    got = submission.value("prompt_round_trip")
    expect(isinstance(got, str), _("`prompt_round_trip` should be a string, got {type}.").format(
                                     type=type(got).__name__))
    expect(got == prompt, _("`prompt_round_trip` starts {got!r}, PROMPT starts {prompt!r}: decode "
                            "input_ids[0] with skip_special_tokens=True.").format(got=got[:40], prompt=prompt[:40]))


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


def test_top10_matches_reference(submission, next_probs, prob_tolerance, llama):
    """top10_ids and top10_probs are the model's ten most probable next tokens after PROMPT, in order."""
    expected_probs, expected_ids = next_probs.topk(10)
    ids = as_int_list(submission.value("top10_ids"), "`top10_ids`")
    expect(len(ids) == 10 and all(0 <= i < len(next_probs) for i in ids),
           _("`top10_ids` should hold 10 ids of the vocabulary, it holds {ids}.").format(ids=ids))
    # Compared through probabilities, so tokens with equal probability may come in either order.
    expect(torch.allclose(next_probs[ids], expected_probs, atol=prob_tolerance),
           _("`top10_ids` is {ids}, but the ten most probable next tokens are {expected_ids} ({value}): "
             "take the softmax of the last position's logits (logits[0, -1]) and the ten largest values, "
             "most probable first.").format(
               ids=ids, expected_ids=expected_ids.tolist(),
               value=[llama[0].decode([i]) for i in expected_ids.tolist()]))
    # In the model's dtype, so the tolerance is that of the precision the notebook runs at.
    expect_close(submission.tensor("top10_probs"), expected_probs.to(llama[1].dtype), "`top10_probs`",
                 _("They are the probabilities of top10_ids after the softmax, most probable first."))


def test_top10_consistent_with_logits(submission, exercise, llama):
    """logits are the model's scores for input_ids (PROMPT), and top10_probs is the softmax of their last position
    at top10_ids."""
    logits = submission.tensor("logits")
    expect(logits.dim() == 3 and logits.shape[0] == 1, _("`logits` has shape {shape}, not (1, n_tokens, "
                                                         "vocab_size).").format(shape=tuple(logits.shape)))
    model = llama[1]
    with torch.no_grad():
        ids = torch.tensor([pipeline_ids(submission, exercise, llama)], device=model.device)
        expected_last = model(ids).logits[0, -1].float().cpu()
    expect_close(logits[0, -1], expected_last, "`logits[0, -1]`", _("Run the model on input_ids and keep "
                                                                    ".logits."))
    ids = as_int_list(submission.value("top10_ids"), "`top10_ids`")
    expect(all(0 <= i < logits.shape[-1] for i in ids), _("`top10_ids` holds ids outside the vocabulary: "
                                                          "{ids}.").format(ids=ids))
    expected = torch.softmax(logits[0, -1].double(), dim=-1)[ids]
    expect_close(submission.tensor("top10_probs"), expected, "`top10_probs`",
                 _("They should equal softmax(logits[0, -1]) over the vocabulary axis, read at top10_ids."))


def test_greedy_next_token(submission, next_probs, prob_tolerance, llama):
    """greedy_token_id is the argmax of the next-token distribution; greedy_token_text is its decoded text."""
    got = submission.value("greedy_token_id")
    expect(type(got) is int, _("`greedy_token_id` should be an int, got {type}: use int(...).").format(
                                 type=type(got).__name__))
    expected = int(next_probs.argmax())
    expect(0 <= got < len(next_probs) and float(next_probs[got]) >= float(next_probs[expected]) - prob_tolerance,
           _("`greedy_token_id` is {got}, but the most probable next token is {expected} ({value!r}): take "
             "the argmax over the vocabulary at the last position.").format(
               got=got, expected=expected, value=llama[0].decode([expected])))
    text = llama[0].decode([got])
    got_text = submission.value("greedy_token_text")
    expect(isinstance(got_text, str) and got_text == text,
           _("`greedy_token_text` should be {text!r}, the decoded greedy_token_id: "
             "tokenizer.decode([greedy_token_id]).").format(text=text))


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


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0], ids=lambda t: f"t={t}")
def test_softmax_with_temperature_values(submission, last_logits, temperature):
    """softmax_with_temperature(logits, t) equals softmax(logits / t) on the model's logits and on a batch."""
    for logits in (last_logits, synthetic_logits()):
        expect_close(call_softmax(submission, logits, temperature), torch.softmax(logits.double() / temperature, -1),
                     _("softmax_with_temperature(logits of shape {shape}, {temperature})").format(
                         shape=tuple(logits.shape), temperature=temperature),
                     _("Divide the logits by the temperature, then take the softmax over the last axis."))


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


@pytest.mark.parametrize(("name", "k"), TOP_K_CASES, ids=[f"{n}, top_k={k}" for n, k in TOP_K_CASES])
def test_sampler_top_k_support(submission, name, k):
    """With top_k, sample_next_token draws from the k most probable ids of a hidden distribution, and all of them."""
    probs = DISTRIBUTIONS[name]
    expect_draws_cover(submission, probs, top_k_set(probs, k), f"top_k={k}", top_k=k)


@pytest.mark.parametrize(("name", "p"), TOP_P_CASES, ids=[f"{n}, top_p={p}" for n, p in TOP_P_CASES])
def test_sampler_top_p_support(submission, name, p):
    """With top_p, sample_next_token draws from the nucleus of a hidden distribution, and all of it."""
    probs = DISTRIBUTIONS[name]
    expect_draws_cover(submission, probs, nucleus(probs, p), f"top_p={p}", top_p=p)


def test_word_vectors(submission, llama):
    """embed_words gives, per word, the mean embedding row of its tokens (tokenized alone, no BOS)."""
    tokenizer, model = llama
    table = model.get_input_embeddings().weight.detach()
    expected = torch.stack([table[tokenizer(w, add_special_tokens=False).input_ids].float().mean(0)
                            for w in HIDDEN_WORDS]).to(table.dtype)
    # Two word lists, so an embed_words that ignores its argument cannot pass.
    for words in (HIDDEN_WORDS, HIDDEN_WORDS[:2:-1]):
        rows = [HIDDEN_WORDS.index(w) for w in words]
        expect_close(submission.call("embed_words", words), expected[rows], f"embed_words({words})",
                     _("Tokenize each word on its own with add_special_tokens=False (no BOS) and average "
                       "the embedding rows of its tokens."))


def test_cosine_similarity_values(submission, llama):
    """cosine_similarity_matrix equals the grader's cosine similarities on hidden vectors and word embeddings."""
    tokenizer, model = llama
    table = model.get_input_embeddings().weight.detach().float().cpu()
    lengths = torch.linspace(0.2, 5.0, 6).unsqueeze(1)
    cases = {
        "random vectors of different lengths": torch.randn(6, 24, generator=torch.Generator().manual_seed(5)) * lengths,
        "embedding rows of the hidden words": torch.stack(
            [table[tokenizer(w, add_special_tokens=False).input_ids].mean(0) for w in HIDDEN_WORDS]),
    }
    for what, vectors in cases.items():
        expected = torch.nn.functional.cosine_similarity(vectors.unsqueeze(1), vectors.unsqueeze(0), dim=-1)
        expect_close(submission.call("cosine_similarity_matrix", vectors), expected,
                     f"cosine_similarity_matrix({what})",
                     _("Entry [i, j] is vectors[i] · vectors[j] / (|vectors[i]| |vectors[j]|)."))


def test_japanese_token_ids(submission, exercise, llama):
    """japanese_ids is the tokenization of JAPANESE_TEXT (BOS included), with the grader's token count."""
    expected = llama[0](exercise.parameters["JAPANESE_TEXT"]).input_ids
    ids = as_int_list(submission.value("japanese_ids"), "`japanese_ids`")
    expect(ids == expected, _("`japanese_ids` holds {n_ids} ids; the tokenization of JAPANESE_TEXT has "
                              "{n_expected} ({expected}...): encode JAPANESE_TEXT with the default special "
                              "tokens.").format(n_ids=len(ids), n_expected=len(expected), expected=expected[:6]))


def test_special_tokens(submission, exercise, llama):
    """SPECIAL_TEXT encodes without BOS, each marker as one id; decoding keeps or drops the markers as asked."""
    tokenizer = llama[0]
    text = exercise.parameters["SPECIAL_TEXT"]
    expected = tokenizer(text, add_special_tokens=False).input_ids
    ids = as_int_list(submission.value("special_ids"), "`special_ids`")
    expect(ids == expected, _("`special_ids` is {ids}..., expected {expected}...: encode SPECIAL_TEXT with "
                              "add_special_tokens=False, so that only the markers written in the text "
                              "become special ids.").format(ids=ids[:8], expected=expected[:8]))
    decoded = submission.value("special_decoded")
    expect(isinstance(decoded, str) and decoded == text, _("`special_decoded` is {decoded!r}; decoding "
                                                           "special_ids without options gives SPECIAL_TEXT "
                                                           "back, markers included.").format(decoded=decoded))
    stripped = tokenizer.decode(expected, skip_special_tokens=True)
    got = submission.value("special_stripped")
    expect(isinstance(got, str) and got == stripped, _("`special_stripped` is {got!r}, expected "
                                                       "{stripped!r}: decode special_ids with "
                                                       "skip_special_tokens=True.").format(got=got, stripped=stripped))


@pytest.fixture(scope="module")
def axes(submission) -> list[dict]:
    """Every axes of every figure the notebook left open, as data (read once per submission)."""
    figures = submission.call("grading_figures")
    expect(isinstance(figures, list), _("The grader could not read your figures; leave them open (no "
                                        "plt.close())."))
    return [ax for figure in figures if isinstance(figure, list) for ax in figure if isinstance(ax, dict)]


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


def test_seeded_sample(submission, exercise, device_probs):
    """sampled_token_id is the draw of torch.multinomial from the next-token distribution with a generator seeded
    with SAMPLE_SEED."""
    generator = torch.Generator(device=device_probs.device).manual_seed(exercise.parameters["SAMPLE_SEED"])
    expected = int(torch.multinomial(device_probs, num_samples=1, generator=generator))
    got = submission.value("sampled_token_id")
    expect(type(got) is int, _("`sampled_token_id` should be an int, got {type}: use int(...).").format(
                                 type=type(got).__name__))
    greedy = int(device_probs.argmax())
    expect(not (got == greedy != expected), _("`sampled_token_id` is the most probable token: draw it at "
                                              "random with torch.multinomial instead of taking the argmax."))
    expect(got == expected, _("`sampled_token_id` is {got}, but torch.multinomial(next_token_probs, 1, "
                              "generator=...) with the generator seeded with SAMPLE_SEED draws {expected}: "
                              "seed a torch.Generator on the device of the probabilities with SAMPLE_SEED.").format(
                                got=got, expected=expected))


def test_top10_bar_chart(next_probs, prob_tolerance, llama, axes):
    """A bar chart shows the ten probabilities of the most probable next tokens, labelled with their text."""
    expected_probs, expected_ids = next_probs.topk(10)
    tokens = [llama[0].decode([i]).strip() for i in expected_ids.tolist()]
    charts = [ax for ax in axes if len(ax.get("bars", [])) == 10]
    expect(charts, _("No figure has a chart with ten bars: draw top10_probs with ax.bar (or plt.bar) and "
                     "leave the figure open."))
    heights_ok = [ax for ax in charts if torch.allclose(torch.tensor(ax["bars"], dtype=torch.float64),
                                                        expected_probs.double(), atol=prob_tolerance)]
    expect(heights_ok, _("The ten bars are {value}, but the ten largest next-token probabilities are "
                         "{value2}: plot top10_probs, most probable first.").format(
                           value=[round(h, 4) for h in charts[0]['bars']],
                           value2=[round(p, 4) for p in expected_probs.tolist()]))
    labelled = [ax for ax in heights_ok if [t.strip() for t in ax.get("xticklabels", [])] == tokens]
    expect(labelled, _("The bars are labelled {value}, not with top10_tokens {tokens}: set the x tick "
                       "labels to the decoded tokens.").format(value=heights_ok[0].get('xticklabels'), tokens=tokens))


@pytest.fixture(scope="module")
def word_vectors(exercise, llama) -> torch.Tensor:
    """The grader's vectors of WORDS: the mean embedding row of each word's tokens, as float32 on the CPU."""
    tokenizer, model = llama
    table = model.get_input_embeddings().weight.detach().float().cpu()
    return torch.stack([table[tokenizer(w, add_special_tokens=False).input_ids].mean(0)
                        for w in exercise.parameters["WORDS"]])


def test_word_similarity(submission, word_vectors):
    """similarity is the cosine-similarity matrix of WORDS' vectors."""
    expected = torch.nn.functional.cosine_similarity(word_vectors.unsqueeze(1), word_vectors.unsqueeze(0), dim=-1)
    expect_close(submission.tensor("similarity"), expected, "`similarity`",
                 _("It is cosine_similarity_matrix(embed_words(WORDS)), with WORDS from the parameters "
                   "cell."))


def test_pca_of_word_vectors(submission, exercise, word_vectors, axes):
    """pca_coords are WORDS' vectors on their two principal components (each axis up to its sign), drawn as a
    scatter plot labelled with the words."""
    centered = word_vectors.double() - word_vectors.double().mean(0)
    expected = centered @ torch.linalg.svd(centered, full_matrices=False).Vh[:2].T
    got = submission.tensor("pca_coords")
    expect(tuple(got.shape) == tuple(expected.shape), _("`pca_coords` has shape {shape}, expected "
                                                        "{shape2}: one (x, y) per word of WORDS.").format(
                                                          shape=tuple(got.shape), shape2=tuple(expected.shape)))
    signs = torch.where((got.double() * expected).sum(0) < 0, -1.0, 1.0)  # the sign of a component is arbitrary
    scale = expected.abs().max()
    expect_close(got / float(scale), expected * signs / scale, _("`pca_coords` (scaled to the largest "
                                                                 "coordinate)"),
                 _("Centre the vectors (subtract their mean) and project them on the top two right "
                   "singular vectors."))
    words = exercise.parameters["WORDS"]
    plotted = [ax for ax in axes if len(ax.get("points", [])) == len(words)]
    expect(any(torch.allclose(torch.tensor(ax["points"], dtype=torch.float64), got.double(), atol=1e-3 * float(scale))
               for ax in plotted), _("No scatter plot shows the points of pca_coords: draw them with "
                                     "ax.scatter."))
    expect(any(sorted(t.strip() for t in ax.get("texts", [])) == sorted(words) for ax in plotted),
           _("Label every point of the scatter plot with its word (ax.text)."))


def test_other_tokenizer(submission, exercise, reference):
    """other_prompt_ids and other_japanese_ids are PROMPT and JAPANESE_TEXT encoded by COMPARE_TOKENIZER_ID's
    tokenizer."""
    other = reference.tokenizer(exercise.parameters["COMPARE_TOKENIZER_ID"])
    for name, text in (("other_prompt_ids", "PROMPT"), ("other_japanese_ids", "JAPANESE_TEXT")):
        expected = other(exercise.parameters[text]).input_ids
        ids = as_int_list(submission.value(name), f"`{name}`")
        expect(ids == expected, _("`{name}` holds {n_ids} ids; {parameters}'s tokenizer encodes {text} "
                                  "into {n_expected} ({expected}...): encode it with other_tokenizer, not "
                                  "with Llama's tokenizer.").format(
                                    name=name, n_ids=len(ids),
                                    parameters=exercise.parameters['COMPARE_TOKENIZER_ID'], text=text,
                                    n_expected=len(expected), expected=expected[:6]))
