"""The check authors' helpers of autograder.testing, on their own (no notebook runs)."""

from __future__ import annotations

import pytest
import torch

from autograder.i18n import render
from autograder.runners.base import CellRecord
from autograder.source import definitions
from autograder.submission import StudentFailure
from autograder.testing import as_int, covering, derived_from, difference, discriminating, expect_equal, judged_on


def test_a_difference_is_shown_where_it_is_not_at_the_start():
    """Two long strings that differ after their first 120 characters: both sides around the first difference."""
    head = "You are a pirate chatbot who always responds in pirate speak! " * 3
    got, expected = head + "Let's think step-by-step.", head + "Let's think step by step."
    text = render(difference(got, expected), "en")
    assert f"character {len(head) + 16}" in text
    assert "think step-by-step." in text and "think step by step." in text and "…" in text
    assert "文字目" in render(difference(got, expected), "ja")
    lists = render(difference(list(range(30)), [*range(20), 99, *range(21, 30)]), "en")
    assert "item 20" in lists and "99" in lists
    tensors = render(difference(torch.zeros(2, 3), torch.tensor([[0.0, 0, 0], [0, 5, 0]])), "en")
    assert "[1, 1]" in tensors and "5" in tensors
    with pytest.raises(StudentFailure) as failure:
        expect_equal(got, expected, "`x`")
    assert "step-by-step" in str(failure.value)
    expect_equal([1, 2], [1, 2], "`x`")
    with pytest.raises(StudentFailure):
        expect_equal(1.0, 1, "`x`")  # the same number, but not the int asked for


def test_one_id_may_be_an_int_or_a_one_element_integer_tensor():
    """The lecture's `torch.argmax(probs, dim=-1)[0]` is an id as much as `int(...)` is; a float is not."""
    assert as_int(7, "x") == 7
    assert as_int(torch.tensor(7), "x") == 7 and as_int(torch.tensor([[7]]), "x") == 7
    for wrong in (7.0, torch.tensor([7, 8]), torch.tensor(7.0), True, "7"):
        with pytest.raises(StudentFailure):
            as_int(wrong, "x")


class _Cells:
    """Just enough of a submission for derived_from: cell sources parsed in the grader."""

    def __init__(self, *sources: str) -> None:
        self.cells = [CellRecord(i, source, [], status="ok", number=i + 1) for i, source in enumerate(sources)]
        self._definitions = definitions(self.cells)

    def words_of(self, name: str):
        found = self._definitions.get(name)
        return None if found is None else found.words(self._definitions)


def test_a_later_step_is_judged_on_the_students_own_earlier_result_only_when_made_from_it():
    cells = _Cells("probs = softmax(logits[0, -1])", "dataset = rows.map(fmt)\ntexts = list(dataset['text'])\n"
                   "dataset = dataset.select_columns(['text'])", "greedy = int(probs.argmax())", "copied = 1234",
                   "sneaky = eval('probs.argmax()')")
    assert derived_from(cells, "greedy", "probs") and derived_from(cells, "greedy", "logits")
    assert derived_from(cells, "texts", "fmt") and derived_from(cells, "dataset", "fmt")  # through `x = f(x)`
    assert not derived_from(cells, "copied", "probs") and not derived_from(cells, "missing", "probs")
    assert not derived_from(cells, "sneaky", "probs")  # what eval runs cannot be read
    judged = []

    def judge(base):
        judged.append(base)
        if base != "right":
            raise StudentFailure(f"not right on {base}")

    judged_on(cells, "greedy", "probs", lambda: "right", lambda: "grader", judge)  # right on the student's own base
    assert judged == ["grader", "right"]
    judged_on(cells, "copied", "probs", lambda: "own", lambda: "right", judge)  # right on the grader's: no need of more
    with pytest.raises(StudentFailure, match="not right on grader"):  # a literal is judged on the grader's base alone
        judged_on(cells, "copied", "probs", lambda: "right", lambda: "grader", judge)
    with pytest.raises(StudentFailure, match="not right on own"):  # the failure shown is on the student's own base
        judged_on(cells, "greedy", "probs", lambda: "own", lambda: "grader", judge)

    def unusable():
        raise StudentFailure("wrong shape")
    with pytest.raises(StudentFailure, match="not right on grader"):
        judged_on(cells, "greedy", "probs", unusable, lambda: "grader", judge)


def test_grading_inputs_are_chosen_to_tell_each_shortcut_apart():
    right = {1: "a", 2: "bb", 3: "ccc", 4: "dddd"}.get
    shortcuts = {"length 2": lambda n: right(2), "at most 3": lambda n: right(min(n, 3))}
    assert discriminating([2, 3, 4, 1], right, shortcuts) == 4
    assert discriminating([2, 3], right, shortcuts) == 2  # none tells them apart: the first candidate
    assert covering([2, 3, 4, 1], right, shortcuts) == [3, 4]
