"""Offline stand-ins for the hub ids the course uses, in an isolated Hugging Face cache.

Profiles:
- ``tiny``: the real model classes with tiny dimensions, briefly trained on the project's
  corpus so that they stop (emit EOS) like a real model; seconds on a CPU. Tests and CI.
- ``full``: real dimensions, random weights; for speed and memory measurements on a GPU.
- ``hub``: real weights already present in the runner's own Hugging Face cache (read only).

The stand-ins are written in the hub cache layout (``models--org--name/refs/main`` and
``snapshots/<rev>/``) so that ``from_pretrained("google-t5/t5-small")`` resolves to them
with ``HF_HUB_OFFLINE=1`` and an unmodified notebook. The user's own cache is never touched.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..i18n import L_
from ..paths import cache_dir

PROFILES = ("tiny", "full", "hub")
FORMAT_VERSION = "2"  # bump when what `prepare` writes changes, so old caches are rebuilt

T5_SMALL = "google-t5/t5-small"
FLAN_T5_SMALL = "google/flan-t5-small"
LLAMA_1B_INSTRUCT = "meta-llama/Llama-3.2-1B-Instruct"
GPT2 = "gpt2"
ULTRACHAT = "HuggingFaceH4/ultrachat_200k"


@dataclass(frozen=True)
class ModelStore:
    """Where one profile's models and datasets live, and the environment that finds them."""

    profile: str
    root: Path

    @property
    def hub_cache(self) -> Path:
        return self.root / "hub"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    def dataset_path(self, dataset_id: str) -> Path:
        """Local folder standing in for a hub dataset (``load_dataset(path, split=...)`` reads it)."""
        return self.datasets_dir / dataset_id

    def env(self) -> dict[str, str]:
        """Variables that make a process resolve hub ids to this store and never go online."""
        return {
            "HF_HUB_CACHE": str(self.hub_cache),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    def weights(self, hub_id: str) -> list[Path]:
        """The model's safetensors weights files (of every snapshot the store holds)."""
        repo = self.hub_cache / ("models--" + hub_id.replace("/", "--")) / "snapshots"
        return sorted(repo.glob("*/*.safetensors"))

    def weights_bytes(self, hub_id: str) -> int:
        return sum(path.stat().st_size for path in self.weights(hub_id))

    def parameters(self) -> dict[str, int]:
        """Parameters per model of the store, read from the headers of its weights files (nothing is loaded)."""
        counts = {}
        for repo in sorted(self.hub_cache.glob("models--*")):
            hub_id = repo.name.removeprefix("models--").replace("--", "/")
            counts[hub_id] = sum(_safetensors_parameters(path) for path in self.weights(hub_id))
        return counts

    def is_prepared(self) -> bool:
        marker = self.root / "manifest.json"
        if not marker.is_file():
            return False
        return json.loads(marker.read_text()).get("format") == FORMAT_VERSION

    def fingerprint(self) -> str:
        """What identifies the weights and data: for stand-ins, the hashes of their files recorded when they were
        built (deterministic: the same on every machine with the same libraries); for ``hub``, the snapshot
        revisions the hub ids resolve to (the hub names a snapshot by its content)."""
        if self.profile == "hub":
            repos = {m: self.hub_cache / ("models--" + m.replace("/", "--")) for m in MODEL_BUILDERS}
            recorded = json.dumps({m: (repo / "refs" / "main").read_text().strip() if (repo / "refs" / "main").is_file()
                                   else sorted(p.name for p in (repo / "snapshots").glob("*"))
                                   for m, repo in repos.items()}, sort_keys=True)
        else:
            recorded = json.dumps(json.loads((self.root / "manifest.json").read_text())["files"], sort_keys=True)
        return hashlib.sha256(recorded.encode()).hexdigest()[:16]

    def require(self) -> ModelStore:
        if not self.is_prepared():
            raise UserError(L_("The '{profile}' model profile is not prepared in {path}; run `autograder models "
                               "prepare --profile {profile}` first.").format(profile=self.profile, path=str(self.root)))
        return self


def _safetensors_parameters(path: Path) -> int:
    """Elements in a safetensors file: its header (an 8-byte length, then JSON) names every tensor's shape."""
    with open(path, "rb") as weights:
        length = int.from_bytes(weights.read(8), "little")
        header = json.loads(weights.read(length))
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


def store_for(profile: str) -> ModelStore:
    if profile not in PROFILES:
        raise UserError(L_("Unknown model profile '{profile}'; choose one of {profiles}.").format(
            profile=profile, profiles=", ".join(PROFILES)))
    if profile == "hub":
        hub = Path(os.environ.get("HF_HUB_CACHE", Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"))
        return ModelStore("hub", hub.parent if hub.name == "hub" else hub)
    return ModelStore(profile, cache_dir() / "models" / profile)


# --- building the stand-ins ----------------------------------------------------------


def _revision(profile: str, hub_id: str) -> str:
    return hashlib.sha1(f"autograder:{FORMAT_VERSION}:{profile}:{hub_id}".encode()).hexdigest()


def _snapshot_dir(hub_cache: Path, hub_id: str, revision: str) -> Path:
    repo = hub_cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


def _fit(model, batches: list[dict], steps: int, lr: float) -> None:
    """A few optimiser steps so a tiny model learns where sequences end."""
    import torch

    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()


def _t5(hub_id: str, full: bool):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from .corpus import flan_pairs, t5_pairs
    from .tokenizers import t5_tokenizer

    tokenizer = t5_tokenizer()
    flan = hub_id == FLAN_T5_SMALL
    dims = dict(d_model=512, d_kv=64, num_heads=8 if not flan else 6, num_layers=6 if not flan else 8)
    dims["d_ff"] = 2048 if not flan else 1024
    if not full:
        dims = dict(d_model=64, d_kv=16, num_heads=4, num_layers=2, d_ff=128)
    config = T5Config(
        vocab_size=32128 if full else len(tokenizer),
        num_decoder_layers=dims["num_layers"],
        # T5 v1.0 (t5-small) ties the head to the embeddings; Flan-T5 (v1.1) does not.
        feed_forward_proj="gated-gelu" if flan else "relu",
        tie_word_embeddings=not flan,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **dims,
    )
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config)
    if not full:
        pairs = flan_pairs() if flan else t5_pairs()
        sources, targets = [s for s, _ in pairs], [t for _, t in pairs]
        batches = []
        for i in range(0, len(pairs), 16):
            enc = tokenizer(sources[i : i + 16], padding=True, return_tensors="pt")
            labels = tokenizer(targets[i : i + 16], padding=True, return_tensors="pt").input_ids
            labels[labels == tokenizer.pad_token_id] = -100
            batches.append({**enc, "labels": labels})
        _fit(model, batches, steps=300, lr=3e-3)
    return model, tokenizer


def _llama(hub_id: str, full: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from .corpus import ENGLISH, JAPANESE
    from .tokenizers import llama3_tokenizer

    tokenizer = llama3_tokenizer()
    if full:
        dims = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=64, vocab_size=128256)
    else:
        # Grouped-query attention as in the real model (kv heads < heads), so v_proj is narrower than q_proj.
        dims = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, vocab_size=len(tokenizer))
    config = LlamaConfig(
        **dims,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if not full:
        texts = ENGLISH + JAPANESE
        chats = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": texts[i]}, {"role": "assistant", "content": texts[(i + 1) % len(texts)]}],
                tokenize=False,
            )
            for i in range(len(texts))
        ]
        # The real Llama 3 tokenizer has no pad token, so batches are padded by hand.
        batches = []
        for i in range(0, len(chats), 8):
            ids = [tokenizer(c, add_special_tokens=False).input_ids for c in chats[i : i + 8]]
            width = max(map(len, ids))
            input_ids = torch.tensor([x + [tokenizer.eos_token_id] * (width - len(x)) for x in ids])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
            labels = input_ids.masked_fill(mask == 0, -100)
            batches.append({"input_ids": input_ids, "attention_mask": mask, "labels": labels})
        _fit(model, batches, steps=150, lr=3e-3)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eot_id|>")]
    if full:  # stored as the real checkpoint is (2.5 GB, not 4.9), so what loading it takes matches too
        model = model.to(torch.bfloat16)
    return model, tokenizer


def _gpt2(hub_id: str, full: bool):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from .tokenizers import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    dims = dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257) if full else dict(
        n_embd=32, n_layer=2, n_head=2, vocab_size=len(tokenizer))
    config = GPT2Config(**dims, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    return GPT2LMHeadModel(config), tokenizer


MODEL_BUILDERS: dict[str, Callable] = {
    T5_SMALL: _t5,
    FLAN_T5_SMALL: _t5,
    LLAMA_1B_INSTRUCT: _llama,
    GPT2: _gpt2,
}


def _ultrachat(target: Path) -> None:
    """A small local dataset with ultrachat_200k's schema and split names."""
    import pandas as pd

    from .corpus import ENGLISH, JAPANESE, PARALLEL

    questions = [f"How do you say '{en}' in German?" for en, _, _ in PARALLEL] + ENGLISH
    answers = [f"In German you say: {de}" for _, de, _ in PARALLEL] + ENGLISH[1:] + ENGLISH[:1]
    rows = []
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        follow_up = JAPANESE[i % len(JAPANESE)]
        messages = [
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
            {"role": "user", "content": f"Thanks. {follow_up}"},
            {"role": "assistant", "content": "You are welcome."},
        ]
        rows.append({"prompt": q, "prompt_id": hashlib.sha256(q.encode()).hexdigest(), "messages": messages})
    data = target / "data"
    data.mkdir(parents=True)
    split_at = len(rows) - 8
    for split, part in (("train_sft", rows[:split_at]), ("test_sft", rows[split_at:])):
        pd.DataFrame(part).to_parquet(data / f"{split}-00000-of-00001.parquet", index=False)


DATASET_BUILDERS: dict[str, Callable[[Path], None]] = {ULTRACHAT: _ultrachat}


def prepare(profile: str, force: bool = False, log: Callable[[str], None] = print) -> ModelStore:
    """Build (or check, for ``hub``) every stand-in of a profile. Atomic: a half-built store never appears."""
    store = store_for(profile)
    if profile == "hub":
        missing = [m for m in MODEL_BUILDERS if not (store.hub_cache / ("models--" + m.replace("/", "--"))).is_dir()]
        if missing:
            raise UserError(L_("The hub profile needs these models in {path}: {models}; download them on a machine "
                               "with access, or use --profile tiny.").format(path=str(store.hub_cache),
                                                                            models=", ".join(missing)))
        return store
    if store.is_prepared() and not force:
        log(f"'{profile}' models already prepared in {store.root}")
        return store
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    store.root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{profile}-", dir=store.root.parent))
    try:
        staged = ModelStore(profile, staging)
        manifest = {"format": FORMAT_VERSION, "profile": profile, "transformers": transformers.__version__,
                    "torch": torch.__version__, "models": {}, "datasets": {}}
        for hub_id, build in MODEL_BUILDERS.items():
            log(f"building {profile} stand-in for {hub_id}")
            model, tokenizer = build(hub_id, profile == "full")
            revision = _revision(profile, hub_id)
            snapshot = _snapshot_dir(staged.hub_cache, hub_id, revision)
            model.save_pretrained(snapshot)
            tokenizer.save_pretrained(snapshot)
            manifest["models"][hub_id] = {
                "revision": revision,
                "class": type(model).__name__,
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        for dataset_id, build in DATASET_BUILDERS.items():
            log(f"building {profile} stand-in for dataset {dataset_id}")
            build(staged.dataset_path(dataset_id))
            manifest["datasets"][dataset_id] = str(staged.dataset_path(dataset_id).relative_to(staging))
        manifest["files"] = {path.relative_to(staging).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
                             for path in sorted(staging.rglob("*")) if path.is_file()}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2))
        # Readable by every user: the sandbox runs notebooks as an unprivileged one (mkdtemp and
        # safetensors create owner-only files).
        for path in [staging, *staging.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        if store.root.exists():
            shutil.rmtree(store.root)
        staging.rename(store.root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"'{profile}' models ready in {store.root}")
    return store
