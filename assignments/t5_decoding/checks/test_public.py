"""Public checks of t5_decoding: students run these with `autograder check`; they also count in grading."""

import pytest

from autograder.testing import _, as_int_list, expect, expect_equal, expect_shape


@pytest.fixture
def t5(reference, exercise):
    """The grader's own tokenizer and model for the exercise's MODEL_ID."""
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForSeq2SeqLM")


@pytest.mark.step("translation")
def test_translation(submission, exercise, reference, t5):
    """The translation is the model's greedy output for TRANSLATION_PROMPT."""
    tokenizer, model = t5
    prompt, max_new_tokens = exercise.parameters["TRANSLATION_PROMPT"], exercise.parameters["MAX_NEW_TOKENS"]

    def translate() -> str:
        inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
        ids = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
        return tokenizer.decode(ids[0], skip_special_tokens=True)

    expected = reference.memo(("translate", model.name_or_path, prompt, max_new_tokens), translate)
    translation = submission.value("translation")
    expect(isinstance(translation, str), _("`translation` should be a string, got {type}.").format(
        type=type(translation).__name__))
    expect_equal(translation, expected, "`translation`", _("Decode greedily: do_sample=False, "
                                                           "max_new_tokens=MAX_NEW_TOKENS and skip_special_tokens=True."))


@pytest.mark.step("encoder")
def test_encoder_output_shape(submission, exercise, t5):
    """The encoder output has shape (batch, prompt tokens, d_model)."""
    tokenizer, model = t5
    n_tokens = len(tokenizer(exercise.parameters["PROMPT"]).input_ids)
    expect_shape(submission.tensor("encoder_hidden"), (1, n_tokens, model.config.d_model), "`encoder_hidden`",
                 _("Keep the batch dimension and use the encoder's last_hidden_state."))


@pytest.mark.step("start token")
@pytest.mark.constant("decoder_start_token_id is the model's own, whatever the prompt")
def test_decoder_start_token(submission, t5):
    """The decoder starts from the model's decoder_start_token_id, as a (1, 1) tensor."""
    start = t5[1].config.decoder_start_token_id
    ids = submission.tensor("decoder_input_ids")
    expect_shape(ids, (1, 1), "`decoder_input_ids`", _("It holds one token for a batch of one: [[start_id]]."))
    expect(as_int_list(ids, "`decoder_input_ids`") == [start],
           _("`decoder_input_ids` holds {got}, but the decoder starts from decoder_start_token_id ({start}).").format(
               got=ids.tolist(), start=start))


@pytest.mark.step("lm_head")
@pytest.mark.constant("one score per vocabulary entry for one start token, whatever the prompt")
def test_lm_head_output_shape(submission, t5):
    """lm_head gives one score per vocabulary entry: shape (1, 1, vocab_size)."""
    expect_shape(submission.tensor("lm_logits"), (1, 1, t5[1].config.vocab_size), "`lm_logits`")
