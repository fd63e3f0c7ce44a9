"""The wire format: plain data round-trips; anything malformed or oversized is refused, never unpickled."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

from autograder import agent


def roundtrip(value):
    return agent.decode(agent.encode(value), max_bytes=1 << 30)


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

    out = roundtrip([AlwaysEqual(), MyStr("x"), ..., print])
    assert all(isinstance(v, agent.Unsupported) for v in out)
    assert out[2].type_name == "ellipsis"


def test_tensor_subclass_cannot_lie_about_its_shape():
    class Liar(torch.Tensor):
        @property
        def shape(self):
            return torch.Size([1, 2, 3])

    out = roundtrip(torch.zeros(4).as_subclass(Liar))
    assert type(out) is torch.Tensor and tuple(out.shape) == (4,)


def test_deep_nesting_is_refused():
    value = []
    for _ in range(agent.MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(agent.WireError):
        agent.encode(value)


def _blob(metadata: dict) -> bytes:
    header = json.dumps({"__metadata__": metadata}).encode()
    return struct.pack("<Q", len(header)) + header


@pytest.mark.parametrize("blob", [
    b"",
    b"\x00" * 4,
    struct.pack("<Q", 10**9) + b"{}",
    struct.pack("<Q", 5) + b"notjs",
    _blob({"format": "other", "value": "1"}),
    _blob({"format": agent.FORMAT, "value": json.dumps({"$tensor": "t9"})}),
    _blob({"format": agent.FORMAT, "value": json.dumps({"$pickle": "gASV"})}),
    _blob({"format": agent.FORMAT, "value": json.dumps({"$dict": [[[1], 2]]})}),
], ids=["empty", "short", "header-too-big", "header-not-json", "wrong-format", "missing-tensor", "unknown-node",
        "unhashable-key"])
def test_malformed_answers_are_refused(blob):
    with pytest.raises(agent.WireError):
        agent.decode(blob, max_bytes=1 << 20)


def test_oversized_answer_is_refused_before_parsing():
    with pytest.raises(agent.WireError, match="over the limit"):
        agent.decode(agent.encode(torch.zeros(1000)), max_bytes=100)


def test_agent_reports_raises_and_missing_names():
    def boom(x):
        raise ValueError(f"bad {x}")

    server = agent.Agent({"boom": boom, "x": 3})
    ask = lambda **req: agent.decode(server.handle(agent.encode(req)), max_bytes=1 << 20)  # noqa: E731
    assert ask(op="get", name="x") == {"status": "ok", "value": 3}
    assert ask(op="get", name="y") == {"status": "undefined"}
    raised = ask(op="call", name="boom", args=[1])
    assert raised["status"] == "raised" and raised["type"] == "ValueError" and raised["message"] == "bad 1"
    assert ask(op="call", name="x")["status"] == "not_callable"
