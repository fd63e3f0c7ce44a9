"""Tokenizers trained locally on the project's corpus, one per model family.

Each carries the special tokens and conventions of its family (T5: pad/eos/unk and
sentinels, Unigram with metaspace; Llama 3: byte-level BPE, begin/end-of-text, header
and end-of-turn tokens, a Llama-3-style chat template; GPT-2: byte-level BPE with
<|endoftext|>), so that notebook code written for the real tokenizer runs unchanged.
Token ids differ from the real ones, which is why no check may hard-code an id.
"""

from __future__ import annotations

import math

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, T5Tokenizer

from .corpus import all_text

# The split pattern Llama 3 and GPT-4 tokenizers use before byte-level BPE.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

LLAMA3_SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
]

# Same rendering as the Llama 3.x instruct template: a system block with the knowledge
# cut-off and date lines, then one header + content + <|eot_id|> block per message.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}"
    "{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}\n"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}\n"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}\n"
)


def t5_tokenizer(vocab_size: int = 600) -> T5Tokenizer:
    """Unigram tokenizer with T5's layout: <pad>=0, </s>=1, <unk>=2, then pieces, then sentinels.

    The pieces come from a BPE trainer, scored by the order it learned them (earlier: more frequent): the Unigram
    trainer's choice of pieces depends on hash-map order, which changes from process to process, so every build
    gave another tokenizer, other trained weights, and other answers to the same grading inputs."""
    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tok.train_from_iterator(all_text(), trainer=trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials))
    learned = [piece for piece, _ in sorted(tok.get_vocab().items(), key=lambda item: item[1]) if piece not in specials]
    vocab = [(piece, 0.0) for piece in specials] + [(piece, -math.log(2 + rank)) for rank, piece in enumerate(learned)]
    return T5Tokenizer(vocab=vocab, extra_ids=100, model_max_length=512)


def _byte_level_bpe(vocab_size: int, special_tokens: list[str], split_pattern: str | None) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    if split_pattern:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(all_text(), trainer=trainer)
    return tok


def llama3_tokenizer(vocab_size: int = 1200) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Llama 3's special tokens; prepends <|begin_of_text|> like the real one."""
    # Special tokens go last, as in Llama 3 where they follow the regular vocabulary.
    tok = _byte_level_bpe(vocab_size, [], _LLAMA3_SPLIT)
    tok.add_special_tokens(LLAMA3_SPECIAL)
    bos = "<|begin_of_text|>"
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token="<|eot_id|>",
        chat_template=LLAMA3_CHAT_TEMPLATE,
        model_max_length=131072,
    )


def gpt2_tokenizer(vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """Byte-level BPE with GPT-2's single special token."""
    tok = _byte_level_bpe(vocab_size, ["<|endoftext|>"], None)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=1024,
    )
