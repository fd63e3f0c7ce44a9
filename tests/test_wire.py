"""The wire format: plain data round-trips; anything malformed or oversized is refused, never unpickled."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from autograder import agent, wire
from autograder.runners.base import RunLimits, StudentSession
from autograder.submission import StudentFailure, StudentRaised, Submission


def roundtrip(value):
    return wire.decode(wire.encode(value), max_bytes=1 << 30)


def test_plain_values_roundtrip():
    value = {"a": [1, 2.5, None, True, "x"], 3: (4, "five"), "t": torch.arange(6).reshape(2, 3),
             "n": np.ones((2,), dtype=np.float32), "big": 2**70, "f": np.float64(0.25)}
    out = roundtrip(value)
    assert out["a"] == [1, 2.5, None, True, "x"] and out[3] == (4, "five") and out["big"] == 2**70
    assert torch.equal(out["t"], torch.arange(6).reshape(2, 3))
    assert out["n"].dtype == torch.float32 and out["f"] == 0.25


def test_non_finite_floats_survive():
    out = roundtrip([math.nan, math.inf, -math.inf])
    assert math.isnan(out[0]) and out[1] == math.inf and out[2] == -math.inf


def test_objects_become_unsupported_markers():
    class AlwaysEqual:
        def __eq__(self, other):
            return True

    class MyStr(str):
        pass

    out = roundtrip([AlwaysEqual(), ..., print, MyStr("x")])
    assert all(isinstance(v, wire.Unsupported) for v in out[:3]) and out[1].type_name == "ellipsis"
    assert type(out[3]) is str and out[3] == "x"  # a str subclass crosses as the plain str it holds


def test_tensor_subclass_cannot_lie_about_its_shape():
    class Liar(torch.Tensor):
        @property
        def shape(self):
            return torch.Size([1, 2, 3])

    out = roundtrip(torch.zeros(4).as_subclass(Liar))
    assert type(out) is torch.Tensor and tuple(out.shape) == (4,)


def test_deep_nesting_is_refused():
    value = []
    for _ in range(wire.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(wire.WireError):
        wire.encode(value)


def _blob(metadata: dict) -> bytes:
    header = json.dumps({"__metadata__": metadata}).encode()
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("blob", [
    b"",
    b"\x00" * 4,
    struct.pack("<Q", 10**9) + b"{}",
    struct.pack("<Q", 5) + b"notjs",
    _blob({"format": "other", "value": "1"}),
    _blob({"format": wire.FORMAT, "value": json.dumps({"$tensor": "t9"})}),
    _blob({"format": wire.FORMAT, "value": json.dumps({"$pickle": "gASV"})}),
    _blob({"format": wire.FORMAT, "value": json.dumps({"$dict": [[[1], 2]]})}),
], ids=["empty", "short", "header-too-big", "header-not-json", "wrong-format", "missing-tensor", "unknown-node",
        "unhashable-key"])
def test_malformed_answers_are_refused(blob):
    with pytest.raises(wire.WireError):
        wire.decode(blob, max_bytes=1 << 20)


def test_oversized_answer_is_refused_before_parsing():
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.decode(wire.encode(torch.zeros(1000)), max_bytes=100)


# In a process of its own, so that its peak memory is the decoding's: the largest answers the limits let through,
# decoded as the grader decodes them (the most containers a header may hold, the most numbers a tensor may hold),
# and the tensor widened to float64 as a check may widen it. Prints the peak memory beyond the process's start.
PEAK = """
import json, resource, struct, sys, torch
from autograder import agent, wire
start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "containers":
    items = (wire.MAX_HEADER_NODES - 64) // 3  # a tuple is two containers for json, {"$tuple": []}, and a comma
    header = json.dumps({"__metadata__": {"format": wire.FORMAT,
                                          "value": "[" + ",".join(['{"$tuple":[]}'] * items) + "]"}}).encode()
    value = wire.decode(struct.pack("<Q", len(header)) + header, max_bytes=256 << 20)
    assert len(value) == items
else:
    blob = wire.encode({"status": "ok", "value": torch.ones(wire.MAX_ELEMENTS, dtype=torch.int8)})
    wide = wire.decode(blob, max_bytes=256 << 20)["value"].double()
    assert wide.numel() == wire.MAX_ELEMENTS
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024)
"""


@pytest.mark.parametrize("answer", ["containers", "numbers"])
def test_an_answer_within_the_limits_costs_the_grader_under_a_gibibyte(answer):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PEAK, answer], capture_output=True, text=True, check=True)
    assert float(done.stdout.strip()) < 1024, done.stdout  # MiB beyond the start, widening included


def test_answers_that_would_amplify_in_the_grader_are_refused_before_they_are_built():
    """A header of more containers than an answer may hold, and a quarter-GiB int8 tensor a check would widen to
    2 GiB: refused from the header alone, with a sentence."""
    many = "[" + "[]," * (wire.MAX_HEADER_NODES // 2 + 1) + "[]]"
    with pytest.raises(wire.WireError, match="too many items"):
        wire.decode(_blob({"format": wire.FORMAT, "value": many}), max_bytes=1 << 30)
    header = json.dumps({"__metadata__": {"format": wire.FORMAT, "value": json.dumps({"$tensor": "t0"})},
                         "t0": {"dtype": "I8", "shape": [256 << 20], "data_offsets": [0, 256 << 20]}}).encode()
    with pytest.raises(wire.WireError, match="more than the"):  # refused before the 256 MiB of data are read
        wire.decode(struct.pack("<Q", len(header)) + header, max_bytes=1 << 30)
    assert torch.equal(roundtrip(torch.ones(1000, dtype=torch.int8)), torch.ones(1000, dtype=torch.int8))


def test_agent_reports_raises_and_missing_names():
    def boom(x):
        raise ValueError(f"bad {x}")

    server = agent.Agent({"boom": boom, "x": 3})
    ask = lambda **req: wire.decode(server.handle(wire.encode(req)), max_bytes=1 << 20)  # noqa: E731
    assert ask(op="get", name="x") == {"status": "ok", "value": 3}
    assert ask(op="get", name="y") == {"status": "undefined"}
    raised = ask(op="call", name="boom", args=[1])
    assert raised["status"] == "raised" and raised["type"] == "ValueError" and raised["message"] == "bad 1"
    assert ask(op="call", name="x")["status"] == "not_callable"


class InProcessSession(StudentSession):
    """The agent answering in this process: the wire protocol without a runner."""

    def __init__(self, namespace: dict) -> None:
        self.cells = []
        self.server = agent.Agent(namespace)
        self.requests = 0

    def request(self, payload: bytes, timeout: float) -> bytes:
        self.requests += 1
        return self.server.handle(payload)

    def close(self) -> None:
        pass


def test_call_each_answers_like_one_call_after_another_in_one_round_trip():
    session = InProcessSession({"square": lambda x, plus=0: x * x + plus})
    submission = Submission(session, RunLimits(), {})
    calls = [((x,), {"plus": 1}) for x in range(50)]
    assert submission.call_each("square", calls) == [submission.call("square", *a, **k) for a, k in calls]
    assert session.requests == 1 + len(calls)
    assert submission.student_seconds > 0


def test_call_each_fails_on_the_first_failing_call_and_runs_no_further():
    seen = []

    def picky(x):
        seen.append(x)
        if x == 3:
            raise ValueError("three")
        return object() if x == 5 else x

    submission = Submission(InProcessSession({"picky": picky, "n": 1}), RunLimits(), {})
    with pytest.raises(StudentRaised, match="ValueError: three"):
        submission.call_each("picky", [((x,), {}) for x in range(10)])
    assert seen == [0, 1, 2, 3]
    with pytest.raises(StudentFailure, match="returned a builtins.object object"):
        submission.call_each("picky", [((x,), {}) for x in (4, 5, 6)])
    with pytest.raises(StudentFailure, match="should be a function"):
        submission.call_each("n", [((), {})])
    with pytest.raises(StudentFailure, match="not defined"):
        submission.call_each("missing", [((), {})])


def test_call_each_reports_the_first_unsendable_result():
    huge = [[0]] * (wire.MAX_ITEMS + 1)
    submission = Submission(InProcessSession({"pick": lambda x: huge if x == 2 else x}), RunLimits(), {})
    with pytest.raises(StudentFailure, match="cannot read: value is too deeply nested or has too many items"):
        submission.call_each("pick", [((x,), {}) for x in range(5)])
    assert submission.call_each("pick", [((x,), {}) for x in (0, 1)]) == [0, 1]


def test_a_tensor_sent_to_many_calls_travels_once_and_each_call_gets_its_own_copy():
    """The grader's 400 sampler calls on one distribution send it once; a function that changes its argument in
    place (zeroing tokens outside the top k, say) cannot change the input of the calls after it."""
    probs = torch.softmax(torch.randn(64, generator=torch.Generator().manual_seed(0)), -1)
    calls = [{"args": [probs], "kwargs": {"seed": seed}} for seed in range(100)]
    request = wire.encode({"op": "call_each", "name": "f", "calls": calls})
    assert len(request) < 2 * probs.numel() * probs.element_size() + 20_000  # one copy of the tensor, not 100

    def zero_the_largest(p, seed):
        largest = float(p.max())
        p[p.argmax()] = 0.0
        return largest

    submission = Submission(InProcessSession({"f": zero_the_largest}), RunLimits(), {})
    answers = submission.call_each("f", [((probs,), {"seed": seed}) for seed in range(100)])
    assert answers == [float(probs.max())] * 100


def test_a_fixture_that_reads_the_student_fails_the_check_rather_than_crashing_it(tmp_path):
    """Checks may read a student value once per submission in a fixture (e.g. their figures); when the student's
    work is missing there, every check using it *fails* with the student's message, as in the check body."""
    from autograder.checking import CheckSession

    check_file = tmp_path / "test_fixture_reads.py"
    check_file.write_text(
        "import pytest\n\n"
        "@pytest.fixture(scope='module')\n"
        "def figures(submission):\n"
        "    return submission.value('figures')\n\n"
        "def test_one(figures):\n    assert figures\n\n"
        "def test_two(figures):\n    assert figures\n\n"
        "def test_other(submission):\n    raise RuntimeError('a bug in the check')\n")
    with CheckSession([check_file]) as checks:
        outcomes = {o.id: o for o in checks.run(None, Submission(InProcessSession({}), RunLimits(), {}))}
    assert {i: o.outcome for i, o in outcomes.items()} == {"test_one": "failed", "test_two": "failed",
                                                          "test_other": "error"}
    assert "`figures` is not defined" in outcomes["test_one"].message


def test_values_a_student_naturally_returns_arrive_as_their_plain_selves():
    """`shape = tensor.shape` (a torch.Size), named tuples, list and dict subclasses, an IntEnum, NumPy scalars and
    0-d arrays reach the check as the tuple, list, dict or number they hold, so `x.shape` where a shape is asked gets
    the point; what cannot cross gets a sentence with the conversion to use."""
    import collections
    import enum

    from autograder.testing import expect_equal

    class Colour(enum.IntEnum):
        RED = 3

    class Rows(list):
        pass

    namespace = {"shape": torch.zeros(2, 3).shape, "pair": collections.namedtuple("Pair", "a b")(1, 2),
                 "rows": Rows([1, 2]), "colour": Colour.RED, "mean": np.float32(1.5), "total": np.array(7),
                 "counts": collections.Counter("aab"), "seen": {3, 1, 2}, "steps": range(3)}
    submission = Submission(InProcessSession(namespace), RunLimits(), {})
    expect_equal(submission.value("shape"), (2, 3), "`shape`")  # the point a shape check gives
    assert submission.value("pair") == (1, 2) and type(submission.value("pair")) is tuple
    assert submission.value("rows") == [1, 2] and type(submission.value("rows")) is list
    assert submission.value("colour") == 3 and type(submission.value("colour")) is int
    assert submission.value("mean") == 1.5 and submission.value("total") == 7 and type(submission.value("total")) is int
    assert submission.value("counts") == {"a": 2, "b": 1} and type(submission.value("counts")) is dict
    with pytest.raises(StudentFailure, match=r"builtins.set object.*sorted\(\.\.\.\)"):
        submission.value("seen")
    with pytest.raises(StudentFailure, match=r"builtins.range object.*list\(\.\.\.\)"):
        submission.value("steps")
    assert not submission.has("seen") and submission.has("shape")
    with pytest.raises(StudentFailure, match="Load it with attn_implementation"):
        submission.value("attentions", hint="Load it with attn_implementation='eager'.")
