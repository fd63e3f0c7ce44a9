"""Public checks of prompting: students run these with `autograder check`; they also count in grading."""

import json

import pytest

from autograder.testing import expect

PROFILE_KEYS = ["description", "name", "armor", "weapon"]


@pytest.fixture
def tokenizer(reference, exercise):
    return reference.tokenizer(exercise.parameters["MODEL_ID"])


def test_chat_prompt(submission, exercise, tokenizer):
    """`chat_prompt` is USER_REQUEST rendered with the chat template, ending with the assistant header."""
    messages = [{"role": "user", "content": exercise.parameters["USER_REQUEST"]}]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    got = submission.value("chat_prompt")
    expect(isinstance(got, str), f"`chat_prompt` should be a string, got {type(got).__name__}: use tokenize=False.")
    without_header = tokenizer.apply_chat_template(messages, tokenize=False)
    expect(got != without_header, "`chat_prompt` stops after the user's turn: pass add_generation_prompt=True so that "
           "it ends with the assistant header.")
    expect(got == expected, f"`chat_prompt` should be the chat template's text for one user message holding "
           f"USER_REQUEST, {expected[-80:]!r} at the end; it ends with {got[-80:]!r}.")


def test_build_prompt_example(submission):
    """build_prompt joins all seven parts with newlines, in the fixed order."""
    parts = {"persona": "You are a chef.", "instruction": "Suggest a dinner.", "context": "It is a rainy Monday.",
             "data_format": "Answer with a list.", "audience": "The reader is a student.", "tone": "Be cheerful.",
             "data": "Fridge: eggs, rice, leeks."}
    expected = "\n".join(parts.values())
    got = submission.call("build_prompt", **parts)
    expect(got == expected, f"build_prompt(...) returned {got!r}; with all seven parts it should return {expected!r}.")


def test_json_prompts(submission):
    """The zero-shot request shows no example; the one-shot request shows the four keys in order."""
    for name in ("zero_shot_messages", "one_shot_messages"):
        value = submission.value(name)
        expect(isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
               and value[0].get("role") == "user" and isinstance(value[0].get("content"), str),
               f"`{name}` should be a list with one user message {{'role': 'user', 'content': ...}}.")
    zero = submission.value("zero_shot_messages")[0]["content"]
    expect("json" in zero.lower() and "{" not in zero,
           "The zero-shot request should ask for JSON without showing an example (no `{`).")
    one = submission.value("one_shot_messages")[0]["content"]
    positions = [one.find(f'"{key}"') for key in PROFILE_KEYS]
    expect("{" in one and -1 not in positions and positions == sorted(positions),
           'The one-shot request should show the JSON shape with the keys "description", "name", "armor", "weapon" '
           "in that order: use ONE_SHOT_TEMPLATE.")


def test_profile_json(submission):
    """`profile_json` is JSON on its own: an object with exactly the four keys and string values."""
    text = submission.value("profile_json")
    expect(isinstance(text, str), f"`profile_json` should be a string, got {type(text).__name__}.")
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise AssertionError(f"`profile_json` is not valid JSON on its own ({exc}): return only the JSON text, "
                             f"without prose or a code fence. It starts with {text[:60]!r}.") from None
    expect(isinstance(profile, dict) and list(profile) == PROFILE_KEYS,
           f"`profile_json` should hold an object with the keys {PROFILE_KEYS} in that order.")
    expect(all(isinstance(v, str) for v in profile.values()), "Every value of the profile should be a string.")
