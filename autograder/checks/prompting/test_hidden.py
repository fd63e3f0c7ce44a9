"""Hidden checks of prompting: grader-chosen inputs; expected replies come from the grader's copy of the model."""

from __future__ import annotations

import json
import re

import pytest
import torch

from autograder.submission import StudentRaised
from autograder.testing import _, expect

PROFILE_KEYS = ["description", "name", "armor", "weapon"]
STEP_BY_STEP = "Let's think step by step."

# Conversations for render_chat, greedy_reply and sample_reply: a system prompt, several turns,
# and content with whitespace around it (the template trims it).
CONVERSATIONS = {
    "system+user": [
        {"role": "system", "content": "You are a grumpy pirate who answers in one sentence."},
        {"role": "user", "content": "What is the capital of Japan?"},
    ],
    "multi-turn": [
        {"role": "user", "content": "Name three primary colours."},
        {"role": "assistant", "content": "Red, yellow and blue."},
        {"role": "user", "content": "Now name three fruits that have those colours."},
    ],
    "padded": [{"role": "user", "content": "\n  Tell me a short story about a dragon.  "}],
}

# (temperature, top_p, seed) for sample_reply.
SAMPLING = [(1.0, 1.0, 3), (0.7, 0.9, 11), (1.3, 0.6, 2024)]

PROMPT_PARTS = ["persona", "instruction", "context", "data_format", "audience", "tone", "data"]
# Keyword arguments for build_prompt, passed in a scrambled order; course-style trailing newlines,
# parts left out by omission, by "" and by whitespace only.
BUILD_CASES = {
    "all parts": {"data": "Text: ducks can sleep with one eye open.\n", "tone": "Be playful.\n",
                  "persona": "You are a zoologist.\n", "audience": "Readers are ten years old.\n",
                  "instruction": "Explain the text.\n", "context": "This is for a school newsletter.\n",
                  "data_format": "Use two short paragraphs.\n"},
    "parts not passed": {"instruction": "Translate the data into French.", "persona": "You are a translator.",
                         "data": "Data: good morning"},
    "empty and blank parts": {"persona": "", "instruction": " List three risks. ", "context": "\n",
                              "data_format": "Numbered list.", "audience": "   ", "tone": "Stay neutral.",
                              "data": ""},
}

COT_QUESTIONS = [
    "A farmer has 17 sheep and buys 5 more, then sells 8. How many sheep does the farmer have?",
    "Tom reads 12 pages a day for 6 days. How many pages has he read?",
]

# (text, expected): a number, or ValueError.
ANSWER_CASES = [
    ("The baker made 4 trays of 6 muffins, so 4 × 6 = 24. After selling 9, 24 - 9 = 15 are left. The answer is 15.",
     15),
    ("Step 1: 23 - 20 = 3 apples remain. Step 2: 3 + 6 = 9. So they have 9 apples.", 9),
    ("One ticket costs 1,250 yen, so 3 tickets cost 3,750 yen.", 3750),
    ("The 7 pizzas are shared by 2 friends: 7 / 2 = 3.5 pizzas each.", 3.5),
    ("It was 5 degrees at noon and fell 8 degrees, so it is now -3.", -3),
    ("42", 42),
    ("I am not sure how to solve this problem.", ValueError),
]

# (model-style output, expected): a dict, or ValueError.
JSON_CASES = {
    "code fence": ('```json\n{"description": "A quiet archer", "name": "Lyra", "armor": "leather vest", '
                   '"weapon": "longbow"}\n```',
                   {"description": "A quiet archer", "name": "Lyra", "armor": "leather vest", "weapon": "longbow"}),
    "prose around": ('Sure! Here is your character:\n{"name": "Borin", "weapon": "war hammer"}\n'
                     "Let me know if you want another one.", {"name": "Borin", "weapon": "war hammer"}),
    "nested braces": ('Profile: {"name": "Zed", "stats": {"hp": 30, "mp": 12}, "weapon": "axe"} Enjoy!',
                      {"name": "Zed", "stats": {"hp": 30, "mp": 12}, "weapon": "axe"}),
    "two objects": ('{"name": "Ann"} or, if you prefer, {"name": "Bob"}', {"name": "Ann"}),
    "braces in a string": ('{"description": "Wears a {cursed} ring", "name": "Mor"}',
                           {"description": "Wears a {cursed} ring", "name": "Mor"}),
    "unbalanced brace in a string": ('Here: {"description": "Grins like a }", "name": "Pip"} Bye.',
                                     {"description": "Grins like a }", "name": "Pip"}),
    "brace in trailing prose": ('{"name": "Kai", "armor": "none"}\nTip: {} is an empty object.',
                                {"name": "Kai", "armor": "none"}),
    "pretty printed": ('Here it is:\n{\n  "description": "A tired wizard",\n  "name": "Odo",\n  "armor": "robe",\n'
                       '  "weapon": "staff"\n}',
                       {"description": "A tired wizard", "name": "Odo", "armor": "robe", "weapon": "staff"}),
    "single quotes": ("{'description': 'A sneaky rogue', 'name': 'Vex'}", ValueError),
    "truncated": ('```json\n{"description": "A brave knight", "name": "Sir', ValueError),
    "no JSON": ("I'm sorry, I can't create that character.", ValueError),
}

# (prompt, max_value_tokens) for fill_json_profile; the short budgets cut values short.
FILL_CASES = [
    ("Create a short character profile for a fantasy RPG. Use this format only:\n"
     '{\n  "description": "...",\n  "name": "...",\n  "armor": "...",\n  "weapon": "..."\n}', 2),
    ("Create a character profile for an RPG game in JSON format.", 6),
    ("Invent a pirate captain for a video game. Reply with JSON only.", 1),
]

CALCULATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*×/])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "×": lambda a, b: a * b,
              "/": lambda a, b: a / b if b else float("nan")}
FINAL_ANSWER = re.compile(r"The answer is (-?\d+(?:\.\d+)?)\.$")


@pytest.fixture
def llama(reference, exercise):
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForCausalLM")


def _reply(llama, messages: list[dict], max_new_tokens: int, **options) -> str:
    """The grader's own reply: new tokens only, special tokens skipped."""
    tokenizer, model = llama
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt").to(model.device)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id, **options)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _greedy_value(llama, text: str, max_value_tokens: int) -> str:
    """The notebook's rule for one JSON value: greedy tokens after `text`, up to the first stop token."""
    tokenizer, model = llama
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=max_value_tokens,
                                pad_token_id=tokenizer.eos_token_id)
    kept = []
    for token_id in output[0, inputs["input_ids"].shape[1]:].tolist():
        piece = tokenizer.decode([token_id])
        if token_id in tokenizer.all_special_ids or '"' in piece or "\n" in piece:
            break
        kept.append(token_id)
    return tokenizer.decode(kept)


def _expect_messages(value, what: str) -> list[dict]:
    expect(isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value),
        _("{what} should return a list of {{'role': ..., 'content': ...}} messages, got {value}.").format(
            what=what, value=str(value)[:80]))
    return value


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_chat_hidden_messages(submission, llama, name):
    """render_chat gives the template's text with the generation prompt, holding every message."""
    tokenizer = llama[0]
    messages = CONVERSATIONS[name]
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    got = submission.call("render_chat", messages)
    expect(isinstance(got, str), _("render_chat(...) should return a string, got {type}.").format(
                                     type=type(got).__name__))
    missing = [m["role"] for m in messages if m["content"].strip() not in got]
    expect(not missing, _("render_chat(...) leaves out the {value} message(s): pass the whole list to "
                          "apply_chat_template.").format(value=' and '.join(missing)))
    expect(got != tokenizer.apply_chat_template(messages, tokenize=False),
           _("render_chat(...) ends after the last message: pass add_generation_prompt=True."))
    expect(got == expected, _("render_chat(...) gives {got!r} at the end, the chat template gives "
                              "{expected!r}: return apply_chat_template(messages, tokenize=False, "
                              "add_generation_prompt=True).").format(got=got[-70:], expected=expected[-70:]))


@pytest.mark.parametrize("name", list(BUILD_CASES))
def test_build_prompt_hidden_components(submission, name):
    """build_prompt strips each part, leaves out empty ones, and joins the rest with newlines in the fixed order."""
    kwargs = BUILD_CASES[name]
    expected = "\n".join(kwargs[p].strip() for p in PROMPT_PARTS if kwargs.get(p, "").strip())
    got = submission.call("build_prompt", **kwargs)
    expect(isinstance(got, str), _("build_prompt(...) should return a string, got {type}.").format(
                                     type=type(got).__name__))
    if "\n\n" in got or got != got.strip():
        raise AssertionError(_("build_prompt(...) returned {got!r}: strip every part and leave out the "
                               "empty ones, so that there are no empty lines and no newline at either end.").format(
                                 got=got))
    expect(got == expected, _("build_prompt(...) returned {got!r}, expected {expected!r}: keep the order "
                              "persona, instruction, context, data_format, audience, tone, data, one "
                              "newline between parts.").format(got=got, expected=expected))


@pytest.mark.parametrize("question", COT_QUESTIONS, ids=["sheep", "pages"])
def test_cot_messages_structure(submission, question):
    """Few-shot CoT alternates user/assistant, ends with the question, and the example answer shows its reasoning."""
    messages = _expect_messages(submission.call("cot_messages", question), "cot_messages(...)")
    roles = [m["role"] for m in messages]
    expect(len(messages) >= 3, _("cot_messages(...) has {n_messages} message(s): give at least one worked "
                                 "example (a user question and the assistant's answer) before the question.").format(
                                   n_messages=len(messages)))
    expect(roles[-1] == "user", _("The last message of cot_messages(...) has the role {roles!r}: it must "
                                  "be the user's question, so that the model answers it.").format(roles=roles[-1]))
    expected_roles = ["user", "assistant"] * (len(messages) // 2) + ["user"]
    expect(roles == expected_roles, _("The roles are {roles}: they should alternate user, assistant, ..., "
                                      "user.").format(roles=roles))
    expect(messages[-1]["content"] == question, _("The last message should be the question itself, got "
                                                  "{messages!r}.").format(messages=messages[-1]['content'][:80]))
    for example in messages[1::2]:
        answer = example["content"].strip()
        calculations = CALCULATION.findall(answer)
        expect(bool(calculations), _("The example answer {answer!r} shows no calculation: write each step "
                                     "as `a + b = c` before the result.").format(answer=answer[:80]))
        for a, op, b, c in calculations:
            expect(abs(OPERATIONS[op](float(a), float(b)) - float(c)) < 1e-9,
                   _("The example answer's step `{a} {op} {b} = {c}` is wrong.").format(a=a, op=op, b=b, c=c))
        final = FINAL_ANSWER.search(answer)
        expect(final is not None, _("The example answer should end with `The answer is N.`; it ends with "
                                    "{answer!r}.").format(answer=answer[-40:]))
        expect(float(final.group(1)) == float(calculations[-1][3]),
               _("The number in `The answer is N.` should be the result of the last calculation."))


def test_zero_shot_cot_messages(submission):
    """Zero-shot CoT: one user message, the question followed by the step-by-step trigger."""
    for question in COT_QUESTIONS:
        messages = _expect_messages(submission.call("zero_shot_cot_messages", question), "zero_shot_cot_messages(...)")
        expect(len(messages) == 1 and messages[0]["role"] == "user", _("zero_shot_cot_messages(...) should "
                                                                       "return one user message, got the "
                                                                       "roles {value}.").format(
                                                                         value=[m['role'] for m in messages]))
        content = messages[0]["content"]
        expect(content.startswith(question) and content.endswith(STEP_BY_STEP)
               and not content[len(question):-len(STEP_BY_STEP)].strip(),
               _("zero_shot_cot_messages(...) holds {content!r}; it should be the question, a space or "
                 "newline, and {STEP_BY_STEP!r}.").format(content=content[:120], STEP_BY_STEP=STEP_BY_STEP))


def test_detailed_prompt_messages(submission):
    """detailed_messages sends build_prompt's text as the one user message."""
    for name in ("all parts", "parts not passed"):
        kwargs = BUILD_CASES[name]
        expected = [{"role": "user", "content": "\n".join(kwargs[p].strip() for p in PROMPT_PARTS
                                                           if kwargs.get(p, "").strip())}]
        got = _expect_messages(submission.call("detailed_messages", **kwargs), "detailed_messages(...)")
        expect(got == expected, _("detailed_messages(...) returned {got}; it should be one user message "
                                  "whose content is build_prompt(...): {expected}.").format(
                                    got=str(got)[:120], expected=str(expected)[:120]))


def _profile_object(text, what: str) -> dict:
    """The profile in `text`, which must be JSON on its own: an object of the four keys, in order, with string values."""
    expect(isinstance(text, str), _("{what} should be a string, got {type}.").format(what=what,
                                                                                    type=type(text).__name__))
    try:
        profile = json.loads(text)
    except ValueError as exc:
        raise AssertionError(_("{what} is not valid JSON on its own ({exc}): return only the JSON text, "
                               "without prose or a code fence. It starts with {text!r}.").format(
                                 what=what, exc=exc, text=text[:60])) from None
    expect(isinstance(profile, dict) and list(profile) == PROFILE_KEYS,
           _("{what} should hold an object with exactly the keys {PROFILE_KEYS}, in that order.").format(
               what=what, PROFILE_KEYS=PROFILE_KEYS))
    expect(all(isinstance(v, str) for v in profile.values()), _("Every value of the profile should be a "
                                                                "string."))
    return profile


def _greedy_profile(llama, prompt: str, max_value_tokens: int) -> str:
    """The notebook's fill_json_profile, computed with the grader's model."""
    chat_text = llama[0].apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    profile: dict[str, str] = {}
    for key in PROFILE_KEYS:
        before = json.dumps({**profile, key: ""}, ensure_ascii=False)[:-2]
        profile[key] = _greedy_value(llama, chat_text + before, max_value_tokens)
    return json.dumps(profile, ensure_ascii=False)


def test_profile_json(submission, exercise, llama):
    """`profile_json` is JSON on its own: the profile fill_json_profile makes for FORMAT_PROMPT and MAX_VALUE_TOKENS."""
    text = submission.value("profile_json")
    _profile_object(text, "`profile_json`")
    prompt = submission.value("FORMAT_PROMPT")
    expect(isinstance(prompt, str), _("`FORMAT_PROMPT` should be the format-sample prompt (a string)."))
    expected = _greedy_profile(llama, prompt, exercise.parameters["MAX_VALUE_TOKENS"])
    expect(text == expected, _("`profile_json` is {text!r}, but fill_json_profile(FORMAT_PROMPT, "
                               "MAX_VALUE_TOKENS) gives {expected!r}: make it with fill_json_profile and "
                               "the parameters' budget.").format(text=text[:80], expected=expected[:80]))


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_greedy_reply_deterministic(submission, exercise, llama, name):
    """greedy_reply gives the same reply twice, equal to the model's greedy continuation."""
    messages = CONVERSATIONS[name]
    max_new_tokens = exercise.parameters["MAX_NEW_TOKENS"]
    first = submission.call("greedy_reply", messages, max_new_tokens)
    second = submission.call("greedy_reply", messages, max_new_tokens)
    expect(isinstance(first, str), _("greedy_reply(...) should return a string, got {type}.").format(
                                       type=type(first).__name__))
    expect(first == second, _("Two calls of greedy_reply(...) gave different replies ({first!r}, "
                              "{second!r}): greedy decoding uses do_sample=False.").format(
                                first=first[:40], second=str(second)[:40]))
    expected = _reply(llama, messages, max_new_tokens, do_sample=False)
    if first not in (expected, expected.strip()) and expected.strip() in first:
        raise AssertionError(_("greedy_reply(...) returns more than the reply: decode only the new tokens, "
                               "with skip_special_tokens=True."))
    # Stripping the surrounding whitespace is fine: the notebook does not ask to keep it.
    expect(first in (expected, expected.strip()), _("greedy_reply(...) returned {first!r}, but the model's "
                                                    "greedy reply is {expected!r}: render with "
                                                    "add_generation_prompt=True, generate with "
                                                    "do_sample=False and max_new_tokens, decode the new "
                                                    "tokens.").format(first=first[:60], expected=expected[:60]))


@pytest.mark.parametrize(("temperature", "top_p", "seed"), SAMPLING)
def test_sample_reply_replays_seed(submission, exercise, llama, temperature, top_p, seed):
    """sample_reply with a seed gives the same sample as the grader's seeded generate."""
    messages = CONVERSATIONS["system+user"]
    max_new_tokens = exercise.parameters["MAX_NEW_TOKENS"]
    got = submission.call("sample_reply", messages, temperature, top_p, seed, max_new_tokens)
    expect(isinstance(got, str), _("sample_reply(...) should return a string, got {type}.").format(
                                     type=type(got).__name__))
    torch.manual_seed(seed)
    expected = _reply(llama, messages, max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p)
    expect(got == expected, _("sample_reply(..., temperature={temperature}, top_p={top_p}, seed={seed}) "
                              "returned {got!r}, the seeded sample is {expected!r}: call "
                              "torch.manual_seed(seed) right before generate and pass do_sample=True, "
                              "temperature and top_p.").format(
                                temperature=temperature, top_p=top_p, seed=seed, got=got[:60], expected=expected[:60]))


@pytest.mark.parametrize(("text", "expected"), ANSWER_CASES, ids=[f"text{i}" for i in range(len(ANSWER_CASES))])
def test_extract_answer_hidden_texts(submission, text, expected):
    """extract_answer returns the final number of a reply, or raises ValueError when there is none."""
    try:
        got = submission.call("extract_answer", text)
    except StudentRaised as exc:
        expect(expected is ValueError and exc.type_name == "ValueError",
               f"extract_answer({text!r}) raised {exc.type_name}: {exc.error_message}")
        return
    expect(expected is not ValueError, _("extract_answer({text!r}) returned {got!r}; with no number in the "
                                         "text it should raise ValueError.").format(text=text, got=got))
    expect(type(got) in (int, float), _("extract_answer(...) should return a number, got {type} {got!r}.").format(
                                          type=type(got).__name__, got=got))
    # 15.0 == 15 in Python, but the notebook asks for an int when the number has no decimal part.
    expect(type(got) is type(expected), _("extract_answer({text!r}) returned the {type} {got!r}; it should "
                                          "be the {type2} {expected!r}: an int unless the number has a "
                                          "decimal part.").format(
                                            text=text, type=type(got).__name__, got=got,
                                            type2=type(expected).__name__, expected=expected))
    expect(got == expected, _("extract_answer({text!r}) returned {got!r}, expected {expected!r}: take the "
                              "last number (thousands commas, minus sign and decimal point included).").format(
                                text=text, got=got, expected=expected))


@pytest.mark.parametrize("name", list(JSON_CASES))
def test_extract_json_hidden_outputs(submission, name):
    """extract_json returns the first JSON object of a noisy reply, or raises ValueError as documented."""
    text, expected = JSON_CASES[name]
    try:
        got = submission.call("extract_json", text)
    except StudentRaised as exc:
        # json.JSONDecodeError is a ValueError; the error crosses over by its type name only.
        expect(expected is ValueError and exc.type_name in ("ValueError", "JSONDecodeError"),
               f"extract_json({text[:60]!r}...) raised {exc.type_name}: {exc.error_message}")
        return
    expect(expected is not ValueError, _("extract_json({text!r}) returned {got}; this text holds no valid "
                                         "JSON object (single quotes and truncated objects are not JSON), "
                                         "so it should raise ValueError.").format(text=text[:60], got=str(got)[:60]))
    expect(got == expected, _("extract_json({text!r}...) returned {got}, expected {expected}: decode one "
                              "object from the first '{{' with json.JSONDecoder().raw_decode and ignore "
                              "the text after it.").format(text=text[:60], got=str(got)[:80], expected=expected))


@pytest.mark.parametrize(("prompt", "max_value_tokens"), FILL_CASES, ids=["format-shown", "zero-shot", "pirate"])
def test_fill_json_profile_is_greedy(submission, llama, prompt, max_value_tokens):
    """fill_json_profile returns valid JSON whose every value is the model's greedy fill after the skeleton."""
    got = submission.call("fill_json_profile", prompt, max_value_tokens)
    profile = _profile_object(got, "fill_json_profile(...)")
    expect(got == json.dumps(profile, ensure_ascii=False), _("fill_json_profile(...) should be formatted "
                                                             "as json.dumps(profile, ensure_ascii=False) "
                                                             'writes it: one line, `{{"description": '
                                                             '"...", "name": ...}}`.'))
    chat_text = llama[0].apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    for i, key in enumerate(PROFILE_KEYS):
        # The reply up to this value's opening quote, built from the student's own earlier values.
        before = json.dumps({**{k: profile[k] for k in PROFILE_KEYS[:i]}, key: ""}, ensure_ascii=False)[:-2]
        expected = _greedy_value(llama, chat_text + before, max_value_tokens)
        expect(profile[key] == expected, _("The value of {key!r} is {profile!r}, but the model's greedy "
                                           "fill (at most {max_value_tokens} tokens, stopping before a "
                                           "quote, newline or special token) is {expected!r}. Tokenize "
                                           "render_chat(...) + the reply so far with "
                                           "add_special_tokens=False.").format(
                                             key=key, profile=profile[key], max_value_tokens=max_value_tokens,
                                             expected=expected))
