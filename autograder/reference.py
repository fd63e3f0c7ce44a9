"""The grader's own models and tokenizers (the ``reference`` fixture).

Loaded from the same offline store the student process uses, so expected values always
come from the model in use. Loaded once per grader process and shared by every check and
submission: checks must treat them as read-only (``wrappable`` to wrap one, e.g. in LoRA layers, without copying
its weights; ``fresh_model`` to train or modify one).
Expected values that depend only on grader-chosen inputs can be kept across submissions with
``memo``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

import torch

from .models.provision import ModelStore

T = TypeVar("T")
_MEMO: dict[tuple, Any] = {}


@lru_cache(maxsize=16)
def _load_tokenizer(hub_cache: str, hub_id: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hub_id, cache_dir=hub_cache, local_files_only=True)


@lru_cache(maxsize=16)
def _load_config(hub_cache: str, hub_id: str):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(hub_id, cache_dir=hub_cache, local_files_only=True)


@lru_cache(maxsize=8)
def _load_model(hub_cache: str, hub_id: str, auto_class: str, device: str, dtype: str, options: tuple):
    return _fresh(hub_cache, hub_id, auto_class, device, dtype, options).eval()


def _fresh(hub_cache: str, hub_id: str, auto_class: str, device: str, dtype: str, options: tuple = ()):
    import transformers

    cls = getattr(transformers, auto_class)
    loading = {"dtype": getattr(torch, dtype), **dict(options)}
    if isinstance(loading["dtype"], str):
        loading["dtype"] = getattr(torch, loading["dtype"])
    model = cls.from_pretrained(hub_id, cache_dir=hub_cache, local_files_only=True, **loading)
    return model.to(device)


class Reference:
    def __init__(self, store: ModelStore, device: str, dtype: str) -> None:
        self.store = store
        self.device = device
        self.dtype = dtype

    def tokenizer(self, hub_id: str) -> Any:
        return _load_tokenizer(str(self.store.hub_cache), hub_id)

    def config(self, hub_id: str) -> Any:
        """A model's configuration alone (no weights loaded)."""
        return _load_config(str(self.store.hub_cache), hub_id)

    def model(self, hub_id: str, auto_class: str = "AutoModelForCausalLM", **options: Any) -> Any:
        """A shared, eval-mode model on the grading device. Do not modify it. ``options`` are
        ``from_pretrained``'s (``attn_implementation="eager"`` for a model that returns attention weights,
        ``dtype="float32"``): each set of them is loaded once per grader."""
        return _load_model(str(self.store.hub_cache), hub_id, auto_class, self.device, self.dtype,
                           tuple(sorted(options.items())))

    def fresh_model(self, hub_id: str, auto_class: str = "AutoModelForCausalLM", **options: Any) -> Any:
        """A private copy a check may train or change (``options`` as for ``model``)."""
        return _fresh(str(self.store.hub_cache), hub_id, auto_class, self.device, self.dtype,
                      tuple(sorted(options.items())))

    def wrappable(self, hub_id: str, auto_class: str = "AutoModelForCausalLM", **options: Any) -> Any:
        """The shared model's modules copied, its weights not: a check may wrap it or add to it (get_peft_model puts
        LoRA layers around the shared weights) and leave the shared model as it was, at the memory of the added
        parts alone (at real sizes on a CPU, a second copy of a 1B model would not fit beside the student's). Its
        weights are the shared ones: never change them in place."""
        model = self.model(hub_id, auto_class, **options)
        shared = {id(tensor): tensor for tensor in (*model.parameters(), *model.buffers())}
        return copy.deepcopy(model, memo=shared)

    def memo(self, key: tuple, compute: Callable[[], T]) -> T:
        """``compute()``, computed once per grader process (for this store, device and dtype) and reused for
        every submission after: for expected values that depend only on grader-chosen inputs, such as
        ``generate`` on a hidden prompt. ``key`` must name everything the value depends on (model id,
        inputs, options). Each caller gets its own copy."""
        full_key = (str(self.store.hub_cache), self.device, self.dtype, *key)
        if full_key not in _MEMO:
            _MEMO[full_key] = compute()
        return copy.deepcopy(_MEMO[full_key])
