"""Hidden checks of prompting: grader-chosen inputs; expected replies come from the grader's copy of the model."""

from __future__ import annotations

import json
import re

import pytest
import torch

from autograder.submission import StudentRaised
from autograder.testing import (Unusable, _, call_watching_model, covering, discriminating, expect, expect_equal,
                                expect_fed_once, judged_on)

PROFILE_KEYS = ["description", "name", "armor", "weapon"]
# The zero-shot trigger, in any of its common spellings (the lecture writes "step-by-step"): what is judged is the
# sentence, not its punctuation or case.
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

# (temperature, top_p, first seed) for sample_reply; each case takes the first seed from there on whose sample tells
# sampling apart from greedy decoding and from the same draw with one of the arguments ignored, on the model in use.
SAMPLING = [(1.0, 1.0, 3), (0.7, 0.9, 11), (1.3, 0.6, 2024)]
SEED_CANDIDATES = 12

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

# Prompts and budgets fill_json_profile may be graded with: the cases are the first of these (prompt x budget) that
# tell the notebook's rule apart from each shortcut on the model in use (see test_fill_json_profile_is_greedy).
FILL_PROMPTS = [
    "Create a short character profile for a fantasy RPG. Use this format only:\n"
    '{\n  "description": "...",\n  "name": "...",\n  "armor": "...",\n  "weapon": "..."\n}',
    "Create a character profile for an RPG game in JSON format.",
    "Invent a pirate captain for a video game. Reply with JSON only.",
]
FILL_BUDGETS = (2, 6, 1, 12)

CALCULATION = re.compile(r"(-?\d+(?:\.\d+)?)\s*([-+*×/])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)")
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "×": lambda a, b: a * b,
              "/": lambda a, b: a / b if b else float("nan")}
FINAL_ANSWER = re.compile(r"The answer is (-?\d+(?:\.\d+)?)\.$")


@pytest.fixture
def llama(reference, exercise):
    model_id = exercise.parameters["MODEL_ID"]
    return reference.tokenizer(model_id), reference.model(model_id, "AutoModelForCausalLM")


def _reply(reference, llama, messages: list[dict], max_new_tokens: int, seed: int | None = None, **options) -> str:
    """The grader's own reply (new tokens only, special tokens skipped), computed once per grader; with a `seed`,
    torch.manual_seed(seed) right before generate, as the notebook asks."""
    ids = _reply_ids(reference, llama, messages, max_new_tokens, seed, **options)
    return llama[0].decode(ids, skip_special_tokens=True)


def _reply_ids(reference, llama, messages: list[dict], max_new_tokens: int, seed: int | None = None,
               **options) -> list[int]:
    tokenizer, model = llama
    if seed is None and options == {"do_sample": False}:  # greedy: every budget is a prefix of one generation
        return _greedy_ids(llama, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                           max_new_tokens)

    def compute() -> list[int]:
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(model.device)
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id,
                                    **options)
        return output[0, inputs["input_ids"].shape[1]:].tolist()

    key = ("reply", model.name_or_path, json.dumps(messages), max_new_tokens, seed, tuple(sorted(options.items())))
    return reference.memo(key, compute)


def _longer_budget(reference, llama, messages: list[dict], max_new_tokens: int, seed: int | None = None,
                   **options) -> str:
    """What generate gives with a longer max_new_tokens than `max_new_tokens` (the argument ignored), told apart
    without generating it: with the same seed, greedy and sampled decoding alike draw the same first tokens, so the
    longer reply is the same one where this one ended of itself (an end-of-sequence token), and a longer one (which
    differs, whatever it says) where the budget cut it off."""
    ids = _reply_ids(reference, llama, messages, max_new_tokens, seed, **options)
    reply = llama[0].decode(ids, skip_special_tokens=True)
    ended = len(ids) < max_new_tokens or (ids and ids[-1] in _eos_ids(llama))
    return reply if ended else reply + "\0(continued past the budget)"


def _eos_ids(llama) -> set[int]:
    eos = llama[1].generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos]) | {llama[0].eos_token_id}


# A value's stop rule as the notebook gives it (a quote, a newline, a special token), and the shortcuts a
# fill_json_profile may take instead.
STOP_RULES = {"notebook": ('"', "\n", "special"), "none": (), "quote only": ('"',), "no special token": ('"', "\n")}


def _greedy_value(llama, text: str, max_value_tokens: int, stops: tuple = STOP_RULES["notebook"]) -> str:
    """The notebook's rule for one JSON value: greedy tokens after `text`, up to the first stop token."""
    tokenizer = llama[0]
    kept = []
    for token_id in _greedy_ids(llama, text, max_value_tokens):
        piece = tokenizer.decode([token_id])
        if ("special" in stops and token_id in tokenizer.all_special_ids) or any(
                stop in piece for stop in stops if stop != "special"):
            break
        kept.append(token_id)
    return tokenizer.decode(kept)


_GREEDY: dict[tuple, tuple[list[int], bool]] = {}  # (model, device, dtype, text) -> (greedy ids, generation ended)


def _greedy_ids(llama, text: str, max_new_tokens: int) -> list[int]:
    """The grader model's greedy token ids after `text`, as generate(do_sample=False, max_new_tokens) gives them.
    Greedy decoding grows by prefix, so one generation per text serves every shorter budget: the profiles of
    every budget and stop rule a shortcut may take share it (at real sizes on a CPU, the difference between
    minutes and a quarter of an hour)."""
    tokenizer, model = llama
    key = (model.name_or_path, str(model.device), str(model.dtype), text)
    ids, ended = _GREEDY.get(key, ([], False))
    if len(ids) < max_new_tokens and not ended:
        inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(model.device)
        with torch.no_grad():
            output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.eos_token_id)
        ids = output[0, inputs["input_ids"].shape[1]:].tolist()
        if len(_GREEDY) > 4096:  # the student's own earlier values make new texts: a long batch keeps no more
            _GREEDY.clear()
        _GREEDY[key] = ids, len(ids) < max_new_tokens  # fewer: generation ended at an end-of-sequence token
    return ids[:max_new_tokens]


def _expect_messages(value, what: str) -> list[dict]:
    expect(isinstance(value, list) and value and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value),
        _("{what} should return a list of {{'role': ..., 'content': ...}} messages, got {value}.").format(
            what=what, value=str(value)[:80]))
    return value


def _one_bos(submission, llama, starts: list, what: str) -> None:
    tokenizer = llama[0]
    expect_fed_once(starts, tokenizer.bos_token_id, tokenizer.bos_token, what,
                    _("apply_chat_template's text already starts with it."))


@pytest.mark.step("render_chat")
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
           _("render_chat(...) ends after the last message, as the lecture's printed template does: here the text "
             "is sent to the model for an answer, so pass add_generation_prompt=True."))
    expect_equal(got, expected, "render_chat(...)", _("Return apply_chat_template(messages, tokenize=False, "
                                                      "add_generation_prompt=True)."))


def _prompt_from_parts(kwargs: dict) -> str:
    return "\n".join(kwargs[p].strip() for p in PROMPT_PARTS if kwargs.get(p, "").strip())


@pytest.mark.step("build_prompt")
@pytest.mark.parametrize("name", list(BUILD_CASES))
def test_build_prompt_hidden_components(submission, name):
    """build_prompt strips each part, leaves out empty ones, and joins the rest with newlines in the fixed order."""
    kwargs = BUILD_CASES[name]
    expected = _prompt_from_parts(kwargs)
    got = submission.call("build_prompt", **kwargs)
    expect(isinstance(got, str), _("build_prompt(...) should return a string, got {type}.").format(
                                     type=type(got).__name__))
    lecture = "".join(kwargs.get(p, "") for p in PROMPT_PARTS)
    if got == lecture != expected:
        raise AssertionError(_("build_prompt(...) returned the parts added together as they are ({got!r}), as the "
                               "lecture's `persona + instruction + ...` does with parts that end in a newline. This "
                               "exercise asks for more: strip every part, leave out the empty ones and put one "
                               "newline between the others.").format(got=got))
    if "\n\n" in got or got != got.strip():
        raise AssertionError(_("build_prompt(...) returned {got!r}: strip every part and leave out the "
                               "empty ones, so that there are no empty lines and no newline at either end.").format(
                                 got=got))
    expect_equal(got, expected, "build_prompt(...)", _("Keep the order persona, instruction, context, data_format, "
                                                       "audience, tone, data, one newline between parts."))


@pytest.mark.step("cot")
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
    expect_equal(messages[-1]["content"], question, _("The last message of cot_messages(...)"),
                 _("It should be the question itself."))
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


def _sentence(text: str) -> str:
    """A sentence as the model reads its meaning: case, apostrophes, hyphens between words and the closing stop
    aside ("Let's think step-by-step." and "let’s think step by step" are the same trigger)."""
    text = text.replace("\u2019", "'").replace("-", " ").lower()
    return " ".join(text.split()).rstrip(".!")


@pytest.mark.step("zero-shot cot")
def test_zero_shot_cot_messages(submission):
    """Zero-shot CoT: one user message, the question followed by the step-by-step trigger."""
    for question in COT_QUESTIONS:
        messages = _expect_messages(submission.call("zero_shot_cot_messages", question), "zero_shot_cot_messages(...)")
        expect(len(messages) == 1 and messages[0]["role"] == "user", _("zero_shot_cot_messages(...) should "
                                                                       "return one user message, got the "
                                                                       "roles {value}.").format(
                                                                         value=[m['role'] for m in messages]))
        content = messages[0]["content"]
        trigger = _sentence(content[len(question):]) if content.startswith(question) else None
        expect(trigger == _sentence(STEP_BY_STEP),
               _("zero_shot_cot_messages(...) holds {content!r}; it should be the question itself, then the "
                 "trigger sentence {STEP_BY_STEP!r} (any spelling of it: step-by-step, a curly apostrophe...) and "
                 "nothing else.").format(content=content[:160], STEP_BY_STEP=STEP_BY_STEP))


def _own_prompt(submission, kwargs: dict) -> str:
    got = submission.call("build_prompt", **kwargs)
    if not isinstance(got, str):
        raise Unusable()  # build_prompt's own checks say what is wrong
    return got


@pytest.mark.step("detailed messages")
def test_detailed_prompt_messages(submission):
    """detailed_messages sends build_prompt's text as the one user message."""
    cases = [BUILD_CASES["all parts"], BUILD_CASES["parts not passed"]]
    got = [_expect_messages(submission.call("detailed_messages", **kwargs), "detailed_messages(...)")
           for kwargs in cases]

    def own() -> list[str]:
        contents = [_own_prompt(submission, kwargs) for kwargs in cases]
        if contents[0] == contents[1]:  # a build_prompt that ignores its arguments cannot show they are used
            raise Unusable()
        return contents

    def judge(contents: list[str]) -> None:
        for messages, content in zip(got, contents):
            expect_equal(messages, [{"role": "user", "content": content}], "detailed_messages(...)",
                         _("It should be one user message whose content is build_prompt(...) of the same parts."))

    # On the student's own build_prompt where detailed_messages uses it: a build_prompt slip is its own loss.
    judged_on(submission, "detailed_messages", "build_prompt", own,
              lambda: [_prompt_from_parts(kwargs) for kwargs in cases], judge)


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


def _chat_text(llama, prompt: str) -> str:
    return llama[0].apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                        add_generation_prompt=True)


def _greedy_values(llama, chat_text: str, max_value_tokens: int, stops: tuple = STOP_RULES["notebook"],
                   after: dict | None = None) -> dict[str, str]:
    """The values the notebook's fill_json_profile makes after `chat_text`, with the grader's model. With `after`
    (the student's own profile), each value is the one that follows the student's own earlier values."""
    filled: dict[str, str] = {}
    values: dict[str, str] = {}
    for key in PROFILE_KEYS:
        before = json.dumps({**filled, key: ""}, ensure_ascii=False)[:-2]
        values[key] = _greedy_value(llama, chat_text + before, max_value_tokens, stops)
        filled[key] = after[key] if after is not None else values[key]
    return values


def _greedy_profile(llama, chat_text: str, max_value_tokens: int, stops: tuple = STOP_RULES["notebook"]) -> str:
    """The notebook's fill_json_profile, computed with the grader's model."""
    return json.dumps(_greedy_values(llama, chat_text, max_value_tokens, stops), ensure_ascii=False)


def _own_chat_text(submission, prompt: str) -> str:
    text = submission.call("render_chat", [{"role": "user", "content": prompt}])
    if not isinstance(text, str):
        raise Unusable()  # render_chat's own check says what is wrong
    return text


@pytest.mark.step("profile_json")
def test_profile_json(submission, reference, exercise, llama):
    """`profile_json` is JSON on its own: the profile fill_json_profile makes for FORMAT_PROMPT and MAX_VALUE_TOKENS."""
    text = submission.value("profile_json")
    prompt = submission.value("FORMAT_PROMPT")
    expect(isinstance(prompt, str), _("`FORMAT_PROMPT` should be the format-sample prompt (a string)."))
    budget = exercise.parameters["MAX_VALUE_TOKENS"]

    def own() -> str:
        made = submission.call("fill_json_profile", prompt, budget)
        if not isinstance(made, str):
            raise Unusable()
        return made

    def judge(expected: str) -> None:
        if text != expected:
            _profile_object(text, "`profile_json`")  # first, whether it is JSON at all
        expect_equal(text, expected, "`profile_json`", _("Make it with fill_json_profile(FORMAT_PROMPT, "
                                                         "MAX_VALUE_TOKENS), the budget from the parameters cell."))

    # On the student's own fill_json_profile where profile_json is made with it: its slips are its own check's.
    judged_on(submission, "profile_json", "fill_json_profile", own,
              lambda: _greedy_profile(llama, _chat_text(llama, prompt), budget), judge)


def _greedy_limit(reference, llama, exercise, messages: list[dict]) -> int:
    """A max_new_tokens that changes the greedy reply on the model in use: shorter than the reply the notebook's
    MAX_NEW_TOKENS allows, so a greedy_reply that ignores its argument (the notebook's MAX_NEW_TOKENS, the
    pipeline's 500...) gives a longer reply. Greedy replies grow by prefix, so any longer limit differs too."""
    notebook_limit = exercise.parameters["MAX_NEW_TOKENS"]

    def compute() -> int:
        tokenizer = llama[0]
        full = _reply(reference, llama, messages, notebook_limit, do_sample=False)
        n = len(tokenizer(full, add_special_tokens=False).input_ids)
        candidates = [k for k in (n - 1, n // 2, 2, 1) if 1 <= k < notebook_limit] or [notebook_limit]
        return discriminating(dict.fromkeys(candidates), lambda k: _reply(reference, llama, messages, k, do_sample=False),
                              {"the notebook's MAX_NEW_TOKENS": lambda k: full})
    return reference.memo(("greedy limit", llama[1].name_or_path, json.dumps(messages), notebook_limit), compute)


@pytest.mark.step("greedy_reply")
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_greedy_reply_deterministic(submission, reference, exercise, llama, name):
    """greedy_reply gives the same reply twice, equal to the model's greedy continuation within max_new_tokens."""
    messages = CONVERSATIONS[name]
    limit = _greedy_limit(reference, llama, exercise, messages)
    first, starts = call_watching_model(submission, "greedy_reply", messages, limit)
    second = submission.call("greedy_reply", messages, limit)
    expect(isinstance(first, str), _("greedy_reply(...) should return a string, got {type}.").format(
                                       type=type(first).__name__))
    expect(first == second, _("Two calls of greedy_reply(...) gave different replies ({first!r}, "
                              "{second!r}): greedy decoding uses do_sample=False.").format(
                                first=first[:40], second=str(second)[:40]))
    _one_bos(submission, llama, starts, "greedy_reply(...)")
    expected = _reply(reference, llama, messages, limit, do_sample=False)
    if first not in (expected, expected.strip()) and expected.strip() in first:
        raise AssertionError(_("greedy_reply(messages, {limit}) returns more than its reply: decode only the new "
                               "tokens, with skip_special_tokens=True, and stop after max_new_tokens (the "
                               "argument, not MAX_NEW_TOKENS or a number of your own).").format(limit=limit))
    # Stripping the surrounding whitespace is fine: the notebook does not ask to keep it.
    if first != expected.strip():
        expect_equal(first, expected, _("greedy_reply(messages, {limit})").format(limit=limit),
                     _("Render with add_generation_prompt=True, generate with do_sample=False and max_new_tokens "
                       "(the argument), and decode only the new tokens."))


def _sampling_seed(reference, llama, exercise, temperature: float, top_p: float, first_seed: int) -> int:
    """The first seed from `first_seed` on whose sample (at the notebook's MAX_NEW_TOKENS) differs, on the model in
    use, from greedy decoding and from the same seeded draw with the temperature, top_p or length ignored."""
    messages = CONVERSATIONS["system+user"]
    limit = exercise.parameters["MAX_NEW_TOKENS"]

    def sample(seed: int, t: float = temperature, p: float = top_p, n: int = limit) -> str:
        return _reply(reference, llama, messages, n, seed=seed, do_sample=True, temperature=t, top_p=p)

    shortcuts = {"greedy decoding": lambda seed: _reply(reference, llama, messages, limit, do_sample=False),
                 "max_new_tokens ignored": lambda seed: _longer_budget(reference, llama, messages, limit, seed=seed,
                                                                       do_sample=True, temperature=temperature,
                                                                       top_p=top_p)}
    if temperature != 1.0:
        shortcuts["temperature ignored"] = lambda seed: sample(seed, t=1.0)
    if top_p != 1.0:
        shortcuts["top_p ignored"] = lambda seed: sample(seed, p=1.0)
    return reference.memo(("sampling seed", llama[1].name_or_path, temperature, top_p, first_seed, limit),
                          lambda: discriminating(range(first_seed, first_seed + SEED_CANDIDATES), sample, shortcuts))


@pytest.mark.step("sample_reply")
@pytest.mark.parametrize(("temperature", "top_p", "seed"), SAMPLING)
def test_sample_reply_replays_seed(submission, reference, exercise, llama, temperature, top_p, seed):
    """sample_reply with a seed gives the same sample as the grader's seeded generate."""
    messages = CONVERSATIONS["system+user"]
    max_new_tokens = exercise.parameters["MAX_NEW_TOKENS"]
    seed = _sampling_seed(reference, llama, exercise, temperature, top_p, seed)
    got, starts = call_watching_model(submission, "sample_reply", messages, temperature, top_p, seed, max_new_tokens)
    expect(isinstance(got, str), _("sample_reply(...) should return a string, got {type}.").format(
                                     type=type(got).__name__))
    _one_bos(submission, llama, starts, "sample_reply(...)")
    expected = _reply(reference, llama, messages, max_new_tokens, seed=seed, do_sample=True, temperature=temperature,
                      top_p=top_p)
    if got != expected.strip():
        expect_equal(got, expected, _("sample_reply(..., temperature={temperature}, top_p={top_p}, seed={seed})")
                     .format(temperature=temperature, top_p=top_p, seed=seed),
                     _("Call torch.manual_seed(seed) right before generate and pass do_sample=True, temperature, top_p "
                       "and max_new_tokens, all from the arguments."))


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




def _fill_cases(reference, llama, exercise) -> list[tuple[str, int]]:
    """The (prompt, max_value_tokens) cases fill_json_profile is graded on: for each shortcut a fill_json_profile
    may take (its budget ignored, part of the stop rule left out), the first candidate on which it gives another
    profile than the notebook's rule on the model in use; so each shortcut loses, whatever the model."""
    notebook_budget = exercise.parameters["MAX_VALUE_TOKENS"]

    made: dict[tuple, str] = {}  # each profile is computed once, however many shortcuts compare with it

    def profile(case: tuple[str, int], budget: int | None = None, stops: tuple = STOP_RULES["notebook"]) -> str:
        prompt, default = case
        key = (prompt, default if budget is None else budget, stops)
        if key not in made:
            made[key] = _greedy_profile(llama, _chat_text(llama, prompt), key[1], stops)
        return made[key]

    shortcuts = {"the notebook's MAX_VALUE_TOKENS": lambda case: profile(case, notebook_budget),
                 "a longer budget": lambda case: profile(case, 4 * max(FILL_BUDGETS))}
    shortcuts.update({f"the stop rule: {name}": (lambda case, stops=stops: profile(case, stops=stops))
                      for name, stops in STOP_RULES.items() if name != "notebook"})
    candidates = [(prompt, budget) for budget in FILL_BUDGETS for prompt in FILL_PROMPTS]

    return reference.memo(("fill cases", llama[1].name_or_path, notebook_budget),
                          lambda: covering(candidates, profile, shortcuts))


@pytest.mark.step("fill_json_profile")
def test_fill_json_profile_is_greedy(submission, reference, exercise, llama):
    """fill_json_profile returns valid JSON whose every value is the model's greedy fill after the skeleton."""
    for prompt, max_value_tokens in _fill_cases(reference, llama, exercise):
        got, starts = call_watching_model(submission, "fill_json_profile", prompt, max_value_tokens)
        profile = _profile_object(got, "fill_json_profile(...)")
        expect(got == json.dumps(profile, ensure_ascii=False), _("fill_json_profile(...) should be formatted "
                                                                 "as json.dumps(profile, ensure_ascii=False) "
                                                                 'writes it: one line, `{{"description": '
                                                                 '"...", "name": ...}}`.'))
        _one_bos(submission, llama, starts, "fill_json_profile(...)")
        def judge(chat_text: str) -> None:
            expected = _greedy_values(llama, chat_text, max_value_tokens, after=profile)
            for key in PROFILE_KEYS:
                expect(profile[key] == expected[key], _(
                    "With max_value_tokens={max_value_tokens}, the value of {key!r} is {profile!r}, but the model's "
                    "greedy fill (at most max_value_tokens tokens, stopping before a quote, newline or special token) "
                    "is {expected!r}. Tokenize render_chat(...) + the reply so far with add_special_tokens=False."
                ).format(key=key, profile=profile[key], expected=expected[key], max_value_tokens=max_value_tokens))

        # After the student's own render_chat where fill_json_profile uses it, and each value after the student's
        # own earlier values: one slip is one loss.
        judged_on(submission, "fill_json_profile", "render_chat", lambda: _own_chat_text(submission, prompt),
                  lambda: _chat_text(llama, prompt), judge)
