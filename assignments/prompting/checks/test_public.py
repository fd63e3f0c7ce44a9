"""Public checks of prompting: students run these with `autograder check`; they also count in grading."""

import json

import pytest

from autograder.testing import Unusable, _, expect, expect_equal, judged_on

PROFILE_KEYS = ["description", "name", "armor", "weapon"]


@pytest.fixture
def tokenizer(reference, exercise):
    return reference.tokenizer(exercise.parameters["MODEL_ID"])


def _own_render(submission, messages: list[dict]) -> str:
    text = submission.call("render_chat", messages)
    if not isinstance(text, str):
        raise Unusable()  # render_chat's own check says what is wrong
    return text


@pytest.mark.step("chat prompt")
def test_chat_prompt(submission, exercise, tokenizer):
    """`chat_prompt` is USER_REQUEST rendered with the chat template, ending with the assistant header."""
    messages = [{"role": "user", "content": exercise.parameters["USER_REQUEST"]}]
    got = submission.value("chat_prompt")
    expect(isinstance(got, str), _("`chat_prompt` should be a string, got {type}: use tokenize=False.").format(
                                     type=type(got).__name__))
    without_header = tokenizer.apply_chat_template(messages, tokenize=False)

    def judge(expected: str) -> None:
        expect(got != without_header or got == expected, _("`chat_prompt` stops after the user's turn: pass "
                                                           "add_generation_prompt=True so that it ends with the "
                                                           "assistant header."))
        expect_equal(got, expected, "`chat_prompt`", _("It is render_chat(messages) for one user message holding "
                                                       "USER_REQUEST."))

    # On the student's own render_chat where chat_prompt is made with it: a render_chat slip is its own loss.
    judged_on(submission, "chat_prompt", "render_chat", lambda: _own_render(submission, messages),
              lambda: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), judge)


# Two requests of the grader's own: the functions must use their argument.
JSON_REQUESTS = ["Create a character profile for a detective novel.", "Invent a villain for a fantasy RPG."]


@pytest.mark.step("build_prompt")
def test_build_prompt_example(submission):
    """build_prompt joins all seven parts with newlines, in the fixed order."""
    examples = [
        {"persona": "You are a chef.", "instruction": "Suggest a dinner.", "context": "It is a rainy Monday.",
         "data_format": "Answer with a list.", "audience": "The reader is a student.", "tone": "Be cheerful.",
         "data": "Fridge: eggs, rice, leeks."},
        {"persona": "You are a coach.", "instruction": "Plan a run.", "context": "Race in May.",
         "data_format": "A table.", "audience": "A beginner.", "tone": "Be kind.", "data": "Runs 5 km now."},
    ]
    for parts in examples:
        expected = "\n".join(parts.values())
        got = submission.call("build_prompt", **parts)
        expect(got != "".join(parts.values()), _("build_prompt(...) adds the parts together with nothing between "
                                                 "them, as the lecture's `persona + instruction + ...` does with "
                                                 "parts that end in a newline; these parts do not, so put one "
                                                 "newline between them."))
        expect_equal(got, expected, "build_prompt(...)", _("With all seven parts, it is the parts in order, one "
                                                           "newline between them."))


def _messages(value, what: str) -> list[dict]:
    expect(isinstance(value, list) and value and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                                     and isinstance(m.get("content"), str) for m in value),
           _("{what} should return a list of {{'role': ..., 'content': ...}} messages, got {value}.").format(
               what=what, value=str(value)[:80]))
    return value


@pytest.mark.step("json prompts")
def test_json_prompts(submission):
    """Zero-shot: one user message asking for JSON with the four keys, no example. One-shot: one finished example
    profile as the assistant's answer, then the request."""
    for request in JSON_REQUESTS:
        zero = _messages(submission.call("zero_shot_json_messages", request), "zero_shot_json_messages(...)")
        expect(len(zero) == 1 and zero[0]["role"] == "user", _("zero_shot_json_messages(...) should return "
                                                               "one user message, got the roles {value}.").format(
                                                                 value=[m['role'] for m in zero]))
        content = zero[0]["content"]
        expect(request in content, _("The zero-shot message should contain the request {request!r} itself.").format(
                                       request=request))
        expect("json" in content.lower() and all(f'"{key}"' in content for key in PROFILE_KEYS),
               _('The zero-shot message should ask for a JSON object with the keys "description", "name", '
                 '"armor" and "weapon" (JSON_RULE).'))
        expect("{" not in content, _("A zero-shot request shows no example: leave the JSON (`{{`) out; the format "
                                     "sample with placeholders (the lecture's one-shot template) is FORMAT_PROMPT, "
                                     "for section 6."))

        one = _messages(submission.call("one_shot_json_messages", request), "one_shot_json_messages(...)")
        roles = [m["role"] for m in one]
        expect(roles == ["user", "assistant", "user"], _("one_shot_json_messages(...) should be an example "
                                                         "request (user), its answer (assistant) and the "
                                                         "request (user); the roles are {roles}. A single message "
                                                         "with a format sample, as the lecture's one-shot template "
                                                         "is, shows no finished example: this exercise asks for "
                                                         "one.").format(roles=roles))
        expect(request in one[-1]["content"], _("The last message should contain the request {request!r}.").format(
                                                  request=request))
        try:
            example = json.loads(one[1]["content"])
        except ValueError:
            raise AssertionError(_("The assistant's example answer should be the example profile as JSON "
                                   "(json.dumps(EXAMPLE_PROFILE)); it is {answer!r}.").format(
                answer=one[1]["content"][:60])) from None
        expect(isinstance(example, dict) and list(example) == PROFILE_KEYS
               and all(isinstance(v, str) and v.strip() and v != v.upper() for v in example.values()),
               _("The example answer should be one finished profile: the four keys in order, each with a "
                 "real value (not a placeholder such as \"THE CHARACTER'S NAME\")."))
