"""The paper's tagged dataset: :func:`build` turns a :class:`DataConfig` into a :class:`TaggedData` (rows of strings,
``text == prompt + " " + answer + "\\n"``); names and wording are in :mod:`iml.lm.vocab`. Each random choice has its
own ``random.Random`` seeded by a string naming seed and purpose (``"iml.tagging|<seed>|aliases"``, ...); these
strings (named after the flat layout) seed the data and must not change. No set is ever iterated.
Design choices and the row format: book/design_notes.md (section `iml.lm.tagging`).
"""
from __future__ import annotations

import math
import random
import string
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

from iml.core.config import (ConfigError, check_choice, check_file, check_fraction, check_positive,
                             check_text_codec, from_dict)
from iml.lm.knowledge import KB_NAMES, Entity, KnowledgeBase, synthetic_people
from iml.lm.vocab import (
    _ALIASED, _IS_ISNT_PHRASES, _NATURAL_SOURCES, _STAGE1_DEFINED, _STAGE2_DEFINED, COLUMNS, DEF_ORDERS,
    DEFINED_SUBSETS, ENT_ASSOC_TEMPLATES, INCONSISTENT_SUBSETS, IS_SOURCES, PAPER_SYMBOLS, SUBSETS,
    TAG_OF_SUBSET, X1_SUBSETS, X2_SUBSETS,
)

__all__ = [
    "Fractions",
    "DataConfig",
    "TaggedData",
    "build",
    "build_dataset",
    "fractions_for_alpha",
    "subset_sizes",
    "derangement",
]

_LETTERS = string.ascii_lowercase
_MAX_STRING_LENGTH = 32


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------

def _exact(value: float) -> Fraction:
    """The decimal a float was written as (0.1 -> 1/10), so N*f has no binary rounding error."""
    return Fraction(repr(float(value)))


@dataclass
class Fractions:
    """Fraction of ALL entities in each subset (paper defaults: .25/.25/.1/.1 | .08/.08/.08/.06)."""

    qd1consis: float = 0.25
    qd2incons: float = 0.25
    q: float = 0.1
    q_no_replacement_baseline: float = 0.1
    qd4consis: float = 0.0
    qd1incons: float = 0.0
    qd2consis: float = 0.0
    d1consis: float = 0.08
    d2consis: float = 0.08
    d3consis: float = 0.08
    no_qd_baseline: float = 0.06

    def __post_init__(self):
        for name in SUBSETS:
            setattr(self, name, check_fraction(name, getattr(self, name)))
        total = sum(_exact(getattr(self, name)) for name in SUBSETS)
        if total > 1 + Fraction(1, 10**9):
            raise ConfigError("", f"fractions must sum to at most 1, got {float(total):.6g}")

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SUBSETS}


def fractions_for_alpha(alpha: float, base: Fractions | None = None) -> Fractions:
    """The tag-consistency-correlation experiment: with probability-like ``alpha`` the tag predicts
    consistency. Define1 mass m1 = base.qd1consis + base.qd1incons, Define2 mass m2 = base.qd2incons +
    base.qd2consis (both .25 by default): qd1consis = m1*alpha, qd1incons = m1*(1-alpha),
    qd2incons = m2*alpha, qd2consis = m2*(1-alpha); the other subsets are copied from ``base``.
    alpha = 1 is the paper's main setup, alpha = .5 makes the tags uninformative."""
    alpha = check_fraction("alpha", alpha)
    base = base if base is not None else Fractions()
    m1 = _exact(base.qd1consis) + _exact(base.qd1incons)
    m2 = _exact(base.qd2incons) + _exact(base.qd2consis)
    a = _exact(alpha)
    vals = base.as_dict()
    vals.update(
        qd1consis=float(m1 * a), qd1incons=float(m1 * (1 - a)),
        qd2incons=float(m2 * a), qd2consis=float(m2 * (1 - a)),
    )
    return Fractions(**vals)


def subset_sizes(num_ents: int, fractions: Fractions) -> dict[str, int]:
    """Number of entities per subset: floor(N*f) each, then one more for the subsets with the largest
    remainders (ties: earlier in :data:`~iml.lm.vocab.SUBSETS`) until the total is round(N * sum f) (halves
    round up), capped at N. Arithmetic is exact on the fractions' decimal representation."""
    exact = {name: _exact(getattr(fractions, name)) * num_ents for name in SUBSETS}
    sizes = {name: math.floor(x) for name, x in exact.items()}
    target = min(num_ents, math.floor(sum(exact.values()) + Fraction(1, 2)))
    extra = target - sum(sizes.values())
    by_remainder = sorted(SUBSETS, key=lambda n: (-(exact[n] - sizes[n]), SUBSETS.index(n)))
    for name in by_remainder[:max(extra, 0)]:
        sizes[name] += 1
    return sizes


@dataclass
class DataConfig:
    """Everything that determines the tagged dataset. Defaults are the paper's CVDB setup."""

    kb: str = "people"
    path: str | None = None
    encoding: str | None = None  # of a cvdb CSV: a Python codec name; None: UTF-8 if valid, else ISO-8859-1
    num_ents: int = 4000
    kb_seed: int = 0
    balance_gender: bool = True
    fractions: Fractions = field(default_factory=Fractions)
    seed: int = 0
    seed_stage2: int = 0
    alias_length: int = 5
    alias_style: str = "braces"
    tag_length: int = 6
    tag1: str | None = None
    tag2: str | None = None
    tag3: str | None = None
    def_order: str = "tve"
    definition_style: str = "tag"
    n_is_isnt: int = 1
    incontext: bool = False
    entity_association: bool = True
    knowledge_stage: bool = False

    def __post_init__(self):
        if isinstance(self.fractions, Mapping):
            self.fractions = from_dict(Fractions, self.fractions, prefix="fractions")
        if not isinstance(self.fractions, Fractions):
            raise ConfigError("fractions", f"must be a mapping of subset fractions, got {self.fractions!r}")
        check_choice("kb", self.kb, set(KB_NAMES))
        if self.path is not None:
            if self.kb == "synthetic":
                raise ConfigError("path", "the synthetic knowledge base takes no file; remove data.path")
            check_file("path", self.path)
        elif self.kb in ("cvdb", "triples"):
            raise ConfigError("path", f"the {self.kb} knowledge base needs the path of your file")
        if self.encoding is not None:
            if self.kb != "cvdb":
                raise ConfigError("encoding", f"only the cvdb knowledge base reads a CSV in a chosen encoding; "
                                              f"remove data.encoding for {self.kb!r}")
            check_text_codec("encoding", self.encoding)
        check_positive("num_ents", self.num_ents)
        for name in ("kb_seed", "seed", "seed_stage2"):
            check_positive(name, getattr(self, name), allow_zero=True)
        if self.kb_seed != 0 and self.kb != "synthetic":
            raise ConfigError("kb_seed", f"only the synthetic knowledge base takes a seed; {self.kb!r} is a fixed "
                                         f"table (the entity set never depends on a seed)")
        if not isinstance(self.balance_gender, bool):
            raise ConfigError("balance_gender", f"must be true or false, got {self.balance_gender!r}")
        for name in ("incontext", "entity_association", "knowledge_stage"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        check_choice("alias_style", self.alias_style, {"braces", "plain"})
        check_choice("definition_style", self.definition_style, {"tag", "natural", "is_isnt"})
        check_choice("def_order", self.def_order, set(DEF_ORDERS))
        for name in ("alias_length", "tag_length"):
            check_positive(name, getattr(self, name))
            if getattr(self, name) > _MAX_STRING_LENGTH:
                raise ConfigError(name, f"must be <= {_MAX_STRING_LENGTH}, got {getattr(self, name)}")
        check_positive("n_is_isnt", self.n_is_isnt)
        if self.n_is_isnt != 1 and self.definition_style != "is_isnt":
            raise ConfigError("n_is_isnt", "is only used with definition_style 'is_isnt'; leave it at 1")
        if self.def_order != "tve" and self.definition_style != "tag":
            raise ConfigError("def_order", f"only the 'tag' definition style has an order; "
                                           f"got {self.def_order!r} with style {self.definition_style!r}")

        literals = {}
        for name in ("tag1", "tag2", "tag3"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(name, f"must be a non-empty string or null, got {value!r}")
            if value != value.strip() or "\n" in value or "  " in value:
                raise ConfigError(name, f"must not start/end with whitespace, contain newlines or double "
                                        f"spaces, got {value!r}")
            for other, ovalue in literals.items():
                if ovalue == value:
                    raise ConfigError(name, f"must differ from {other} (both are {value!r})")
            literals[name] = value
        if literals and self.definition_style != "tag":
            raise ConfigError(next(iter(literals)), f"tag literals are only used with definition_style "
                                                    f"'tag', not {self.definition_style!r}")

        sizes = subset_sizes(self.num_ents, self.fractions)
        if sizes["qd4consis"] and self.definition_style != "tag":
            raise ConfigError("fractions.qd4consis", "random per-definition tags need definition_style 'tag'")
        for name in INCONSISTENT_SUBSETS:
            if sizes[name] == 1:
                raise ConfigError(f"fractions.{name}",
                                  f"gives 1 entity out of {self.num_ents}; an inconsistent subset needs 0 or "
                                  f"at least 2 entities (one entity cannot be paired with another)")
        n_random_same_length = sum(1 for t in ("tag1", "tag2", "tag3") if t not in literals) \
            if self.tag_length == self.alias_length else 0
        if self.tag_length == self.alias_length:
            n_random_same_length += sizes["qd4consis"]
        needed = self.num_ents + n_random_same_length + len(literals)
        if len(_LETTERS) ** self.alias_length < needed:
            raise ConfigError("alias_length", f"{self.alias_length} letters give {26 ** self.alias_length} "
                                              f"distinct strings, fewer than the {needed} needed for "
                                              f"{self.num_ents} aliases and the tags")
        n_tags = 3 - len(literals) + sizes["qd4consis"]
        if len(_LETTERS) ** self.tag_length < n_tags + (self.num_ents if self.tag_length == self.alias_length
                                                          else 0):
            raise ConfigError("tag_length", f"{self.tag_length} letters are too few for {n_tags} distinct tags")


# ------------------------------------------------------------------------------------------------
# Seeded helpers
# ------------------------------------------------------------------------------------------------

def _rng(*parts: Any) -> random.Random:
    """An independent generator per purpose; str seeds are hashed with sha512 (not hash())."""
    return random.Random("iml.tagging|" + "|".join(str(p) for p in parts))


def _wrap(s: str, style: str) -> str:
    return f"<|{s}|>" if style == "braces" else s


def _random_strings(rng: random.Random, n: int, length: int, style: str, taken: set[str]) -> list[str]:
    """`n` distinct random lowercase strings (wrapped in `style`) not in `taken`; adds them to `taken`.
    `taken` is only used for membership tests, never iterated."""
    out: list[str] = []
    if n <= 0:
        return out
    capacity = len(_LETTERS) ** length
    if capacity < 4 * (n + len(taken)):
        # Dense regime: sample integers without replacement, then drop the taken ones.
        pool = rng.sample(range(capacity), min(capacity, n + len(taken)))
        for k in pool:
            chars = []
            for _ in range(length):
                k, r = divmod(k, len(_LETTERS))
                chars.append(_LETTERS[r])
            s = _wrap("".join(chars), style)
            if s not in taken:
                taken.add(s)
                out.append(s)
                if len(out) == n:
                    break
        if len(out) < n:
            raise ConfigError("alias_length", f"cannot draw {n} distinct strings of length {length}")
        return out
    while len(out) < n:
        s = _wrap("".join(rng.choices(_LETTERS, k=length)), style)
        if s not in taken:
            taken.add(s)
            out.append(s)
    return out


def derangement(items: Sequence[str], rng: random.Random) -> dict[str, str]:
    """A uniformly random derangement of `items` (rejection sampling): item -> a different item."""
    items = list(items)
    if len(items) < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {len(items)}")
    if len(set(items)) != len(items):
        raise ValueError("derangement items must be distinct")
    while True:
        perm = list(items)
        rng.shuffle(perm)
        if all(a != b for a, b in zip(items, perm)):
            return dict(zip(items, perm))


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------

def _row(prompt: str, answer: str, *, question: str, subset: str, alias: str, entity: str, kind: str) -> dict:
    return {
        "text": f"{prompt} {answer}\n", "prompt": prompt, "answer": answer, "question": question,
        "subset": subset, "alias": alias, "entity": entity, "kind": kind,
    }


def _qa_row(question: str, answer: str, *, subset: str, alias: str, entity: str, context: str = "") -> dict:
    return _row(f"{context}Q: {question}\nA:", answer, question=question, subset=subset, alias=alias,
                entity=entity, kind="qa")


def _tag_definition(tag: str, alias: str, named: str, order: str) -> tuple[str, str]:
    parts = {"t": tag, "v": alias, "e": named}
    first, second, third = (parts[c] for c in order)
    return f"{first} {second}", third


# ------------------------------------------------------------------------------------------------
# The dataset
# ------------------------------------------------------------------------------------------------

@dataclass
class TaggedData:
    """The built dataset. `splits` maps split name -> list of row dicts (see module docstring)."""

    config: DataConfig
    kb: KnowledgeBase
    aliases: dict[str, str]
    """entity -> alias, for every entity of an aliased subset (not q_no_replacement_baseline)."""
    tags: dict[str, str]
    """"tag1"/"tag2"/"tag3" -> the tag string (Define1 reliable, Define2 unreliable, Define3 fresh)."""
    subsets: dict[str, list[str]]
    """subset -> entity names, for every subset in :data:`~iml.lm.vocab.SUBSETS` (possibly empty)."""
    splits: dict[str, list[dict]]
    defined_as: dict[str, str] = field(default_factory=dict)
    """alias -> the entity its definition names (differs from the true entity for inconsistent ones)."""
    heldout: dict[str, str] = field(default_factory=dict)
    """X1 entity -> the relation of its held-out test question."""
    qd4_tags: dict[str, str] = field(default_factory=dict)
    """qd4consis alias -> its own random tag."""

    def to_datasetdict(self):
        """A ``datasets.DatasetDict`` with one Dataset per split, every column a string."""
        import hashlib

        import datasets
        import pyarrow as pa
        from datasets.table import InMemoryTable

        features = datasets.Features({c: datasets.Value("string") for c in COLUMNS})
        out = {}
        for name, rows in self.splits.items():
            # Arrow arrays straight from the string columns (Dataset.from_dict would encode every cell
            # through `features`, ~10x slower), and a content fingerprint instead of a dill hash.
            cols = {c: [r[c] for r in rows] for c in COLUMNS}
            table = pa.table({c: pa.array(v, type=pa.string()) for c, v in cols.items()})
            h = hashlib.sha256(name.encode())
            for c in COLUMNS:
                h.update(b"\x01" + "\x00".join(cols[c]).encode())
            out[name] = datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features),
                                         split=datasets.NamedSplit(name), fingerprint=h.hexdigest()[:32])
        return datasets.DatasetDict(out)

    def summary(self):
        """One row per non-empty subset: its paper symbol, entities, training QA, definitions, test QA."""
        import pandas as pd

        train_qa: dict[str, int] = {}
        defs: dict[str, int] = {}
        for r in self.splits["train_full"]:
            d = train_qa if r["kind"] == "qa" else defs
            d[r["subset"]] = d.get(r["subset"], 0) + 1
        records = []
        for name in SUBSETS:
            if not self.subsets[name]:
                continue
            records.append({
                "subset": name,
                "symbol": PAPER_SYMBOLS[name],
                "group": "X1" if name in X1_SUBSETS else "X2",
                "entities": len(self.subsets[name]),
                "train_qa": train_qa.get(name, 0),
                "definitions": defs.get(name, 0),
                "test": len(self.splits.get(f"test_{name}", [])),
            })
        return pd.DataFrame.from_records(
            records, columns=["subset", "symbol", "group", "entities", "train_qa", "definitions", "test"])

    def split_sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.splits.items()}


def _load_kb(cfg: DataConfig) -> KnowledgeBase:
    if cfg.kb == "synthetic":
        # Same call load_kb makes; done here so the synthetic base needs no file loaders.
        kb = synthetic_people(cfg.num_ents, seed=cfg.kb_seed)
    else:
        from iml.lm.kb_loader import load_kb  # the file loaders (pandas), only for the file-backed bases

        try:
            if cfg.kb == "cvdb":  # the one loader with an encoding (load_kb takes none)
                from iml.lm.user_sources import load_cvdb_csv

                kb = load_cvdb_csv(cfg.path, cfg.num_ents, balance_gender=cfg.balance_gender, encoding=cfg.encoding)
            else:
                kb = load_kb(cfg.kb, cfg.num_ents, path=cfg.path, seed=cfg.kb_seed,
                             balance_gender=cfg.balance_gender)
        except ConfigError:
            raise  # the loaders name the field themselves ("data.path", "data.num_ents")
        except FileNotFoundError as e:
            raise ConfigError("data.path" if cfg.path else "data.kb",
                              f"cannot load knowledge base {cfg.kb!r}: {e}") from None
        except ValueError as e:
            msg = str(e)
            if msg.startswith("data.path"):
                raise ConfigError("data.path", msg.removeprefix("data.path: ")) from None
            raise ConfigError("data.num_ents" if "requested" in msg else "data.kb", msg) from None
    if len(kb) < cfg.num_ents:
        raise ConfigError("data.num_ents",
                          f"knowledge base {cfg.kb!r} has {len(kb)} entities, {cfg.num_ents} requested")
    if len(kb) > cfg.num_ents:
        kb = kb.head(cfg.num_ents)
    _check_kb(kb)
    return kb


def _check_kb(kb: KnowledgeBase) -> None:
    for e in kb.entities:
        if not e.facts:
            raise ConfigError("data.kb", f"entity {e.name!r} has no facts")
        if "\n" in e.name or any("\n" in a for _, a in e.facts):
            raise ConfigError("data.kb", f"entity {e.name!r} has a newline in its name or answers")


def _sorted_shuffled(rows: list[dict], rng: random.Random) -> list[dict]:
    rows = sorted(rows, key=lambda r: tuple(r[c] for c in COLUMNS))
    rng.shuffle(rows)
    return rows


def build(cfg: DataConfig | Mapping[str, Any] | None = None, kb: KnowledgeBase | None = None) -> TaggedData:
    """Build the tagged dataset for `cfg` (a DataConfig or a dict for ``from_dict``).

    `kb` (optional) replaces the knowledge base named by the config (``cfg.kb``/``cfg.path`` are then
    ignored); its first ``cfg.num_ents`` entities are used. For notebooks and tests with hand-made facts.
    """
    if cfg is None:
        cfg = DataConfig()
    elif isinstance(cfg, Mapping):
        cfg = from_dict(DataConfig, cfg)
    elif not isinstance(cfg, DataConfig):
        raise ConfigError("data", f"must be a DataConfig or a mapping, got {type(cfg).__name__}")

    if kb is None:
        kb = _load_kb(cfg)
    else:
        if len(kb) < cfg.num_ents:
            raise ConfigError("data.num_ents", f"the given knowledge base has {len(kb)} entities, "
                                               f"{cfg.num_ents} requested")
        kb = kb.head(cfg.num_ents)
        _check_kb(kb)
    by_name: dict[str, Entity] = {e.name: e for e in kb.entities}
    names = sorted(by_name)
    seed, seed2 = cfg.seed, cfg.seed_stage2

    # --- subsets -------------------------------------------------------------------------------
    sizes = subset_sizes(cfg.num_ents, cfg.fractions)
    order = list(names)
    _rng(seed, "order").shuffle(order)
    subsets: dict[str, list[str]] = {}
    pos = 0
    for name in X1_SUBSETS:
        subsets[name] = order[pos:pos + sizes[name]]
        pos += sizes[name]
    n_x2 = sum(sizes[s] for s in X2_SUBSETS)
    x2 = sorted(order[pos:pos + n_x2])
    _rng("stage2", seed2, "x2split").shuffle(x2)
    pos2 = 0
    for name in X2_SUBSETS:
        subsets[name] = x2[pos2:pos2 + sizes[name]]
        pos2 += sizes[name]

    # --- aliases and tags ----------------------------------------------------------------------
    literals = {t: getattr(cfg, t) for t in ("tag1", "tag2", "tag3") if getattr(cfg, t) is not None}
    taken: set[str] = set(literals.values())
    all_aliases = _random_strings(_rng(seed, "aliases"), len(names), cfg.alias_length, cfg.alias_style, taken)
    alias_of_all = dict(zip(names, all_aliases))
    tag_rng = _rng(seed, "tags")
    tags: dict[str, str] = {}
    for t in ("tag1", "tag2", "tag3"):
        tags[t] = literals[t] if t in literals else \
            _random_strings(tag_rng, 1, cfg.tag_length, cfg.alias_style, taken)[0]
    aliases = {e: alias_of_all[e] for s in _ALIASED for e in subsets[s]}
    aliases = {e: aliases[e] for e in sorted(aliases)}
    qd4_list = _random_strings(_rng(seed, "qd4tags"), len(subsets["qd4consis"]), cfg.tag_length,
                               cfg.alias_style, taken)
    qd4_tags = {aliases[e]: t for e, t in zip(subsets["qd4consis"], qd4_list)}

    # --- definitions ---------------------------------------------------------------------------
    named_entity: dict[str, str] = {}  # true entity -> entity named in its definition
    for s in DEFINED_SUBSETS:
        if s in INCONSISTENT_SUBSETS and subsets[s]:
            named_entity.update(derangement(sorted(subsets[s]), _rng(seed, "derange", s)))
        else:
            named_entity.update({e: e for e in subsets[s]})

    def_rows: dict[str, list[dict]] = {}   # subset -> definition rows
    context_of: dict[str, str] = {}        # alias -> in-context definition text
    for s in DEFINED_SUBSETS:
        rows: list[dict] = []
        rng = _rng(seed, "defs", s) if s in X1_SUBSETS else _rng(seed, "stage2", seed2, "defs", s)
        tag_key = TAG_OF_SUBSET[s]
        for e in subsets[s]:
            alias, named = aliases[e], named_entity[e]
            if cfg.definition_style == "tag":
                tag = qd4_tags[alias] if tag_key == "random" else tags[tag_key]
                prompts = [_tag_definition(tag, alias, named, cfg.def_order)]
            elif cfg.definition_style == "natural":
                src = rng.choice(_NATURAL_SOURCES[tag_key])
                prompts = [(f"{src} {alias} now stands for", named)]
            else:  # is_isnt
                prompts = []
                for _ in range(cfg.n_is_isnt):
                    src = rng.choice(IS_SOURCES)
                    phrase = rng.choice(_IS_ISNT_PHRASES[tag_key])
                    prompts.append((f"According to {src}, {alias} {phrase}", f"{named}."))
            new = [_row(p, a, question="", subset=s, alias=alias, entity=e, kind="definition")
                   for p, a in prompts]
            context_of[alias] = "".join(r["text"] for r in new)
            rows.extend(new)
        def_rows[s] = rows
    defined_as = {aliases[e]: named_entity[e] for s in DEFINED_SUBSETS for e in subsets[s]}
    defined_as = {a: defined_as[a] for a in sorted(defined_as)}

    def ctx(alias: str) -> str:
        return context_of.get(alias, "") if cfg.incontext else ""

    # --- QA ------------------------------------------------------------------------------------
    heldout_rng = _rng(seed, "heldout")
    heldout_all = {}
    for e in names:
        rels = by_name[e].relations
        heldout_all[e] = rels[heldout_rng.randrange(len(rels))]
    heldout = {e: heldout_all[e] for s in X1_SUBSETS for e in subsets[s]}
    heldout = {e: heldout[e] for e in sorted(heldout)}

    train_qa: dict[str, list[dict]] = {}
    splits_test: dict[str, list[dict]] = {}
    for s in SUBSETS:
        tr: list[dict] = []
        te: list[dict] = []
        for e in subsets[s]:
            alias = aliases.get(e, "")
            subject = alias if alias else e
            for rel, ans in by_name[e].facts:
                row = _qa_row(kb.question(rel, subject), ans, subset=s, alias=alias, entity=e, context=ctx(alias))
                if s in X2_SUBSETS or rel == heldout[e]:
                    te.append(row)
                else:
                    tr.append(row)
        train_qa[s] = tr
        if subsets[s]:
            splits_test[f"test_{s}"] = te

    # test_d2incons: d2consis questions asked with another d2consis entity's alias.
    d2 = subsets["d2consis"]
    if len(d2) >= 2:
        swap = derangement(sorted(d2), _rng("stage2", seed, seed2, "d2incons"))
        rows = []
        for e in d2:
            alias = aliases[swap[e]]
            for rel, ans in by_name[e].facts:
                rows.append(_qa_row(kb.question(rel, alias), ans, subset="d2incons", alias=alias, entity=e,
                                    context=ctx(alias)))
        splits_test["test_d2incons"] = rows

    if cfg.entity_association:
        for t, tpl in ENT_ASSOC_TEMPLATES.items():
            for s in _ALIASED:
                if subsets[s]:
                    splits_test[f"ent_assoc_{t}_{s}"] = [
                        _qa_row(tpl.format(x=aliases[e]), e, subset=s, alias=aliases[e], entity=e,
                                context=ctx(aliases[e]))
                        for e in subsets[s]]
            for s in INCONSISTENT_SUBSETS:
                if subsets[s]:
                    splits_test[f"ent_assoc_{t}_{s}_swapped"] = [
                        _qa_row(tpl.format(x=aliases[e]), named_entity[e], subset=s, alias=aliases[e], entity=e,
                                context=ctx(aliases[e]))
                        for e in subsets[s]]

    # --- training sets -------------------------------------------------------------------------
    stage1_qa = [r for s in X1_SUBSETS for r in train_qa[s]]
    stage1_defs = [] if cfg.incontext else [r for s in _STAGE1_DEFINED for r in def_rows[s]]
    stage2_defs = [] if cfg.incontext else [r for s in _STAGE2_DEFINED for r in def_rows[s]]
    splits: dict[str, list[dict]] = {
        "train_stage1": _sorted_shuffled(stage1_qa + stage1_defs, _rng(seed, "shuffle", "train_stage1")),
        "train_stage2": _sorted_shuffled(stage2_defs, _rng("stage2", seed, seed2, "shuffle", "train_stage2")),
        "train_full": _sorted_shuffled(stage1_qa + stage1_defs + stage2_defs,
                                       _rng("stage2", seed, seed2, "shuffle", "train_full")),
        "train_stage1_only_defns": _sorted_shuffled(stage1_defs, _rng(seed, "shuffle", "train_stage1_only_defns")),
        "train_stage1_only_qa": _sorted_shuffled(stage1_qa, _rng(seed, "shuffle", "train_stage1_only_qa")),
    }
    if cfg.knowledge_stage:
        # A stage before Stage 1, shared by all stage-2 seeds: it must not depend on seed_stage2, so X2
        # entities are labelled "X2" (their d1/d2/d3/no_qd assignment is made later).
        rows = []
        for s in SUBSETS:
            label = s if s in X1_SUBSETS else "X2"
            for e in sorted(subsets[s]) if s in X2_SUBSETS else subsets[s]:
                for rel, ans in by_name[e].facts:
                    if s == "q_no_replacement_baseline" and rel == heldout[e]:
                        continue
                    rows.append(_qa_row(kb.question(rel, e), ans, subset=label, alias="", entity=e))
        splits["train_knowledge"] = _sorted_shuffled(rows, _rng(seed, "shuffle", "train_knowledge"))
    splits.update(splits_test)

    return TaggedData(config=cfg, kb=kb, aliases=aliases, tags=tags, subsets=subsets, splits=splits,
                      defined_as=defined_as, heldout=heldout, qd4_tags=qd4_tags)


def build_dataset(cfg: DataConfig | Mapping[str, Any] | None = None):
    """``build(cfg).to_datasetdict()``."""
    return build(cfg).to_datasetdict()
