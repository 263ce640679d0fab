"""SQuAD-style answer metrics: exact match and token F1.

Normalisation follows the SQuAD v1.1 evaluation script: lower-case, remove punctuation, remove the articles
``a/an/the`` (as whole words), collapse whitespace.

Differences from the authors' ``src/metrics.py`` (reference-notes §1.7):

* F1 is computed over token **multisets** (``collections.Counter``), as in SQuAD, not over sets. ``f1("the cat cat",
  "cat")`` is therefore ``2 * (1/2 * 1) / (1/2 + 1) = 0.667`` (precision 1/2: one of the two predicted ``cat``s
  matches), where the set version would give 1.0.
* Both metrics take the max over gold answers joined by ``";"`` (the authors do too, but their golds never contain it).
* Empty strings: EM compares normalised strings as usual; F1 is 1.0 if both normalise to no tokens and 0.0 if only
  one does (the SQuAD v2 convention), so an empty prediction never divides by zero.
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from typing import Iterable, Sequence

__all__ = ["normalize_answer", "gold_alternatives", "exact_match", "f1", "score"]

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", flags=re.UNICODE)
GOLD_SEP = ";"


def normalize_answer(s: str) -> str:
    """Lower-case, remove punctuation, remove articles, collapse whitespace (SQuAD order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def gold_alternatives(gold: str) -> list[str]:
    """The acceptable answers in a gold string: its ``";"``-separated parts (the whole string if it has none)."""
    parts = gold.split(GOLD_SEP)
    return parts if parts else [gold]


def _em_single(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def _f1_single(pred: str, gold: str) -> float:
    p = normalize_answer(pred).split()
    g = normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(p)
    recall = num_same / len(g)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str, gold: str) -> float:
    """1.0 if the normalised prediction equals any normalised ``";"``-alternative of ``gold``, else 0.0."""
    return max(_em_single(pred, g) for g in gold_alternatives(gold))


def f1(pred: str, gold: str) -> float:
    """Token-multiset F1 between normalised strings, max over ``";"``-alternatives of ``gold``."""
    return max(_f1_single(pred, g) for g in gold_alternatives(gold))


def score(preds: Sequence[str] | Iterable[str], golds: Sequence[str] | Iterable[str]) -> dict:
    """Mean EM and F1 over paired predictions and golds: ``{"EM": mean, "F1": mean, "n": n}``.

    With no pairs, EM and F1 are NaN and n is 0. Lengths must match.
    """
    preds = list(preds)
    golds = list(golds)
    if len(preds) != len(golds):
        raise ValueError(f"score: {len(preds)} predictions but {len(golds)} gold answers")
    n = len(preds)
    if n == 0:
        return {"EM": math.nan, "F1": math.nan, "n": 0}
    em = sum(exact_match(p, g) for p, g in zip(preds, golds)) / n
    f = sum(f1(p, g) for p, g in zip(preds, golds)) / n
    return {"EM": em, "F1": f, "n": n}
