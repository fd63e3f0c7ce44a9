"""The wire format: how values cross from the student's process to the grader, as data.

An answer is a safetensors blob whose tensors are the arrays and whose metadata holds the JSON structure around
them. ``encode`` runs on both sides; ``decode`` is the trust boundary, the one place where bytes from the student
become values: it trusts nothing (sizes, depth, types and counts are checked against the limits below before
anything is built, and nothing is unpickled or evaluated). Standard library and torch only, and loaded by path in
the student's process beside ``agent.py``.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 1_000_000
MAX_STRING = 10_000_000
# The answer's header (JSON structure and safetensors index) is parsed only below these: a small
# header of many tiny nodes would otherwise cost the grader gigabytes before any other check (json
# builds every container it reads, and decoding builds them again).
MAX_HEADER_BYTES = 32 << 20
MAX_HEADER_NODES = MAX_ITEMS + 1024
# At most this many numbers in an answer's tensors, counted from the header before any is loaded: a check may
# widen what it receives to float64 (8 bytes a number), so a quarter-GiB int8 tensor would cost it 2 GiB.
MAX_ELEMENTS = 64 << 20
FORMAT = "autograder-wire-1"


class WireError(ValueError):
    """The bytes are not a well-formed answer (or the value cannot be sent)."""


class Unsupported:
    """Grader-side stand-in for a student value that is not plain data (an object, a function...)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


# --- encoding (both sides) ------------------------------------------------------------


def _tensor_module():
    import torch

    return torch


def encode(value: Any) -> bytes:
    """Turn a value into wire bytes: JSON structure + raw tensors (safetensors)."""
    from safetensors.torch import save

    tensors: dict = {}
    keys: dict[int, str] = {}  # one copy of a tensor sent many times (e.g. the same input to 400 calls)
    count = [0]

    def walk(v: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("value is too deeply nested or has too many items")
        # Subclasses of the plain types (torch.Size and named tuples, an IntEnum, a str subclass) travel as the plain
        # value they hold.
        if v is None or isinstance(v, bool):
            return None if v is None else bool(v)
        if isinstance(v, str):
            return str(v)
        if isinstance(v, int):
            v = int(v)
            return v if abs(v) < 2**63 else {"$int": str(v)}
        if isinstance(v, float):
            v = float(v)
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, (list, tuple)):
            items = [walk(x, depth + 1) for x in v]
            return items if isinstance(v, list) else {"$tuple": items}
        if type(v) is dict or _is_mapping(v):
            return {"$dict": [[walk(k, depth + 1), walk(x, depth + 1)] for k, x in dict(v.items()).items()]}
        if id(v) in keys:
            return {"$tensor": keys[id(v)]}
        array = _as_plain_tensor(v)
        if array is not None:
            key = keys[id(v)] = f"t{len(tensors)}"
            tensors[key] = array
            return {"$tensor": key}
        if v is Ellipsis:
            return {"$unsupported": "ellipsis"}
        scalar = _as_python_scalar(v)
        if scalar is not None:
            return walk(scalar, depth)
        return {"$unsupported": f"{type(v).__module__}.{type(v).__qualname__}"}

    structure = walk(value, 0)
    return save(tensors, metadata={"format": FORMAT, "value": json.dumps(structure)})


def _is_mapping(v: Any) -> bool:
    from collections.abc import Mapping

    return isinstance(v, Mapping)


def _as_plain_tensor(v: Any):
    """A plain, contiguous CPU torch tensor with v's real data, or None if v is no array."""
    torch = _tensor_module()
    if isinstance(v, torch.Tensor):
        # as_subclass strips a subclass that lies about its shape or dtype: what is sent
        # is the real storage, whatever the Python object claims.
        plain = torch.Tensor.as_subclass(v, torch.Tensor)
        if plain.is_sparse or plain.is_complex() or plain.device.type == "meta":
            return None
        return plain.detach().to("cpu").contiguous().clone()
    numpy = _numpy()
    if numpy is not None and type(v) is numpy.ndarray and v.ndim and v.dtype.kind in "biuf":
        return torch.from_numpy(numpy.ascontiguousarray(v)).clone()
    return None


def _as_python_scalar(v: Any):
    """A NumPy scalar or 0-d array (what indexing or reducing an array gives) as the Python number it holds."""
    numpy = _numpy()
    if numpy is not None and isinstance(v, (numpy.generic, numpy.ndarray)) and not getattr(v, "ndim", 0) \
            and v.dtype.kind in "biuf":
        return v.item()
    return None


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy ships with torch here
        return None
    return numpy


# --- decoding (grader side: trusts nothing) -------------------------------------------


def read_header(blob: bytes) -> dict:
    if len(blob) < 8:
        raise WireError("answer is truncated")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise WireError("answer header is larger than the answer")
    if size > MAX_HEADER_BYTES:
        raise WireError(f"answer header is {size} bytes, over the limit of {MAX_HEADER_BYTES}")
    nodes = sum(blob.count(mark, 8, 8 + size) for mark in (b"{", b"[", b","))
    if nodes > MAX_HEADER_NODES:
        raise WireError("answer header has too many items")
    try:
        header = json.loads(blob[8 : 8 + size])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError("answer header is not JSON") from exc
    if not isinstance(header, dict):
        raise WireError("answer header is not a JSON object")
    return header


def decode(blob: bytes, max_bytes: int, private_copies: bool = False) -> Any:
    """Rebuild a value from wire bytes; raises WireError on anything malformed.

    A tensor sent once and named many times comes back as one shared object, or with
    ``private_copies`` (the student side, for the grader's requests) as a copy per use, so that a
    student function changing its argument in place cannot change the next call's input."""
    from safetensors.torch import load

    if len(blob) > max_bytes:
        raise WireError(f"answer is {len(blob)} bytes, over the limit of {max_bytes}")
    header = read_header(blob)
    metadata = header.get("__metadata__")
    elements = 0
    for name, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) and name != "__metadata__" else None
        if shape is not None:
            if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
                raise WireError("answer has a malformed tensor entry")
            elements += math.prod(shape)
    if elements > MAX_ELEMENTS:
        raise WireError(f"answer holds {elements:,} numbers, more than the {MAX_ELEMENTS:,} a check may work on")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT or not isinstance(metadata.get("value"), str):
        raise WireError("answer is not in the grader's wire format")
    try:
        tensors = load(blob)
        structure = json.loads(metadata["value"])
    except Exception as exc:  # safetensors raises its own error types; RecursionError is one too
        raise WireError(f"answer could not be read: {exc}") from exc
    count = [0]
    used: set[str] = set()

    def build(node: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise WireError("answer is too deeply nested or has too many items")
        if node is None or type(node) in (bool, int, float):
            return node
        if type(node) is str:
            if len(node) > MAX_STRING:
                raise WireError("answer holds an over-long string")
            return node
        if type(node) is list:
            return [build(x, depth + 1) for x in node]
        if type(node) is not dict or len(node) != 1:
            raise WireError("answer has a malformed node")
        ((tag, body),) = node.items()
        if tag == "$tuple" and type(body) is list:
            return tuple(build(x, depth + 1) for x in body)
        if tag == "$dict" and type(body) is list:
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("answer has a malformed mapping")
                key = build(pair[0], depth + 1)
                if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                    raise WireError("answer has a mapping key that is not plain data")
                out[key] = build(pair[1], depth + 1)
            return out
        if tag == "$tensor" and body in tensors:
            if private_copies and body in used:
                return tensors[body].clone()
            used.add(body)
            return tensors[body]
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$int" and type(body) is str and len(body) < 4000:
            return int(body)
        if tag == "$unsupported" and type(body) is str:
            return Unsupported(body[:200])
        raise WireError(f"answer has an unknown node {tag!r}")

    return build(structure, 0)
