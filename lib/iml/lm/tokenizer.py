"""A tokenizer trained on the experiment's own text, for from-scratch models.

A byte-level BPE (the Pythia/GPT-2 family of tokenizers, so decoding is exact and ``"\\n"`` is a token)
or a word-level vocabulary, trained with the `tokenizers` library on the experiment's documents, then
wrapped in :class:`transformers.PreTrainedTokenizerFast`.

Every alias and tag (strings like ``<|abcde|>``) is added as its own token when ``atomic_aliases`` is
on (the default), so an alias is one embedding row and never shares sub-word pieces with other aliases.
This removes one confound of small from-scratch models (aliases that share pieces leak into each other);
pretrained models keep their own tokenizers, which split aliases as in the paper.

Training is deterministic: the same texts and config give the same vocabulary and ids.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Iterable, Literal, Sequence

from iml.core.config import ConfigError, check_positive

__all__ = ["TokenizerConfig", "train_tokenizer", "find_atomic_tokens", "EOS", "PAD", "ALIAS_RE"]

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ALIAS_RE = re.compile(r"<\|[^|\s<>]+\|>")
"""Aliases and tags are written ``<|abcde|>`` / ``<|abcdef|>`` (reference-notes.md section 1.3)."""


@dataclasses.dataclass
class TokenizerConfig:
    """kind: "bpe" (byte-level BPE) or "word" (whitespace/punctuation-split words, newline kept).
    vocab_size: BPE merges stop here (word level: the most frequent words up to this size).
    atomic_aliases: add every alias/tag as a single token.
    """

    kind: Literal["bpe", "word"] = "bpe"
    vocab_size: int = 2000
    atomic_aliases: bool = True
    min_frequency: int = 1

    def __post_init__(self):
        check_positive("vocab_size", self.vocab_size)
        check_positive("min_frequency", self.min_frequency)
        if self.vocab_size < 300 and self.kind == "bpe":
            raise ConfigError("vocab_size", f"a byte-level BPE needs at least 300 tokens, got {self.vocab_size}")


def find_atomic_tokens(texts: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """Every ``<|...|>`` string in `texts` plus `extra`, sorted (deterministic, no set iteration order)."""
    found: dict[str, None] = {}
    for t in texts:
        for m in ALIAS_RE.findall(t):
            found[m] = None
    for e in extra:
        if e:
            found[e] = None
    return sorted(found)


def train_tokenizer(texts: Sequence[str], cfg: TokenizerConfig | None = None,
                    atomic_tokens: Sequence[str] | None = None):
    """Train a tokenizer on `texts`; returns a ``PreTrainedTokenizerFast`` with eos/pad set.

    `atomic_tokens` (default: every ``<|...|>`` in the texts) become single tokens when
    ``cfg.atomic_aliases``; with it off they are left to the BPE like any other text.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    cfg = cfg or TokenizerConfig()
    texts = list(texts)
    if not texts:
        raise ValueError("cannot train a tokenizer on no text")
    atomic = list(atomic_tokens) if atomic_tokens is not None else find_atomic_tokens(texts)
    atomic = sorted(dict.fromkeys(a for a in atomic if a))
    specials = [EOS, PAD]
    if cfg.atomic_aliases and atomic:
        # The aliases are removed from the training text so the merges are learnt on the rest.
        pattern = re.compile("|".join(re.escape(a) for a in sorted(atomic, key=len, reverse=True)))
        train_texts = [pattern.sub(" ", t) for t in texts]
    else:
        train_texts = texts

    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                      special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.WordLevel(unk_token="<|unk|>"))
        # Words, single punctuation marks and each whitespace run are tokens, so decoding by plain
        # concatenation gives back the text exactly (for words in the vocabulary).
        tok.pre_tokenizer = pre_tokenizers.Split(pattern=Regex(r"\w+|[^\w\s]|\s"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                            special_tokens=specials + ["<|unk|>"], show_progress=False)
    tok.train_from_iterator(train_texts, trainer=trainer)
    if cfg.atomic_aliases and atomic:
        tok.add_tokens([AddedToken(a, single_word=False, normalized=False, special=False) for a in atomic])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   unk_token="<|unk|>" if cfg.kind == "word" else None)
    fast.padding_side = "right"
    return fast
