"""Invariants, golden strings and sizes of the tagged dataset (`iml.lm.tagging`)."""
from __future__ import annotations

import math
import re
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from iml.core.config import ConfigError, from_dict
from iml.lm.knowledge import PEOPLE_RELATIONS, Entity, KnowledgeBase
from iml.lm.tagging import DataConfig, Fractions, build, derangement, fractions_for_alpha, subset_sizes
from iml.lm.vocab import (
    COLUMNS, DEF_ORDERS, ENT_ASSOC_TEMPLATES, INCONSISTENT_SUBSETS, IS_PHRASES, IS_SOURCES, ISNT_PHRASES,
    MAYBE_PHRASES, NEUTRAL_SOURCES, PAPER_SYMBOLS, RELIABLE_SOURCES, SUBSETS, TAG_OF_SUBSET, TRAIN_SPLITS,
    UNRELIABLE_SOURCES, X1_SUBSETS, X2_SUBSETS,
)

SYN = {"kb": "synthetic"}


def cfg(**kw) -> DataConfig:
    d = dict(SYN)
    d.setdefault("num_ents", 100)
    d.update(kw)
    return from_dict(DataConfig, d)


def fig2_kb() -> KnowledgeBase:
    """Hand-made facts (paper Fig. 2 flavour) so golden strings depend on iml.lm.tagging alone."""
    people = [
        ("Cleopatra", "1 century BC", "Alexandria", "Africa", "Queen", "Egypt", "Female"),
        ("Socrates", "5 century BC", "Athens", "Europe", "philosopher", "Greece", "Male"),
        ("Charles Darwin", "19 century", "Shrewsbury", "Europe", "Scientist", "United Kingdom", "Male"),
        ("Marie Curie", "19 century", "Warsaw", "Europe", "Scientist", "Poland", "Female"),
        ("Louis XIV", "17 century", "Saint-Germain-en-Laye", "Europe", "King", "France", "Male"),
        ("Ada Lovelace", "19 century", "London", "Europe", "mathematician", "United Kingdom", "Female"),
        ("Sun Yat-sen", "19 century", "Cuiheng", "Asia", "politician", "China", "Male"),
        ("Frida Kahlo", "1900s", "Coyoacan", "North America", "painter", "Mexico", "Female"),
        ("Nelson Mandela", "1910s", "Mvezo", "Africa", "politician", "South Africa", "Male"),
        ("Ibn Battuta", "14 century", "Tangier", "Africa", "explorer", "Morocco", "Male"),
    ]
    rels = list(PEOPLE_RELATIONS)
    return KnowledgeBase("fig2", dict(PEOPLE_RELATIONS),
                         [Entity(p[0], tuple(zip(rels, p[1:]))) for p in people])


FIG2_FRACTIONS = {"qd1consis": .2, "qd2incons": .2, "q": .1, "q_no_replacement_baseline": .1,
                  "d1consis": .1, "d2consis": .2, "d3consis": .1, "no_qd_baseline": 0}


def all_rows(data):
    for name, rows in data.splits.items():
        for r in rows:
            yield name, r


def check_invariants(data):
    """Everything that must hold for any config; returns nothing, asserts."""
    c = data.config
    n = c.num_ents
    sizes = subset_sizes(n, c.fractions)
    kb_facts = {e.name: dict(e.facts) for e in data.kb.entities}

    # subsets: disjoint, sized as documented (floor/ceil of N*f, total round(N*sum f))
    seen = []
    for s in SUBSETS:
        assert len(data.subsets[s]) == sizes[s]
        exact = Fraction(repr(getattr(c.fractions, s))) * n
        assert math.floor(exact) <= sizes[s] <= math.ceil(exact)
        seen += data.subsets[s]
    assert len(seen) == len(set(seen))
    total = sum(Fraction(repr(getattr(c.fractions, s))) for s in SUBSETS) * n
    assert len(seen) == min(n, math.floor(total + Fraction(1, 2)))
    subset_of = {e: s for s in SUBSETS for e in data.subsets[s]}

    # aliases and tags
    aliases = list(data.aliases.values())
    assert len(set(aliases)) == len(aliases)
    tags = list(data.tags.values()) + list(data.qd4_tags.values())
    assert len(set(tags)) == len(tags)
    assert not set(tags) & set(aliases)
    assert set(data.aliases) == {e for s in SUBSETS if s != "q_no_replacement_baseline" for e in data.subsets[s]}
    pat = re.compile(r"<\|[a-z]{%d}\|>" % c.alias_length if c.alias_style == "braces" else r"[a-z]{%d}" % c.alias_length)
    assert all(pat.fullmatch(a) for a in aliases)

    # definitions: derangements inside inconsistent subsets, identity elsewhere
    for s, tag_key in TAG_OF_SUBSET.items():
        for e in data.subsets[s]:
            named = data.defined_as[data.aliases[e]]
            if s in INCONSISTENT_SUBSETS:
                assert named != e and subset_of[named] == s
            else:
                assert named == e
    for s in INCONSISTENT_SUBSETS:
        named = [data.defined_as[data.aliases[e]] for e in data.subsets[s]]
        assert sorted(named) == sorted(data.subsets[s])  # a permutation

    x2_aliases = {data.aliases[e] for s in X2_SUBSETS for e in data.subsets[s]}
    word_re = re.compile(r"<\|[a-z]+\|>" if c.alias_style == "braces" else r"[a-z]+")
    for name, r in all_rows(data):
        assert set(r) == set(COLUMNS) and all(isinstance(r[k], str) for k in COLUMNS)
        assert r["text"] == r["prompt"] + " " + r["answer"] + "\n"
        assert r["kind"] in ("qa", "definition")
        if r["kind"] == "definition":
            assert name.startswith("train") and r["question"] == ""
            assert data.aliases[r["entity"]] == r["alias"]
            if c.definition_style == "tag" and c.def_order == "tve":
                assert r["answer"] == data.defined_as[r["alias"]]
            if r["subset"] in INCONSISTENT_SUBSETS:
                assert data.defined_as[r["alias"]] != r["entity"]
                assert data.defined_as[r["alias"]] in r["text"]
        else:
            assert r["prompt"].endswith(f"Q: {r['question']}\nA:")
            if name.startswith("train"):
                assert r["alias"] not in x2_aliases
                assert not set(word_re.findall(r["text"])) & x2_aliases
            if name.startswith("ent_assoc"):
                expected = data.defined_as[r["alias"]] if name.endswith("_swapped") else r["entity"]
                assert r["answer"] == expected
            else:
                # the answer is the asked entity's fact; the question is the template, not a str.replace
                subject = r["alias"] or r["entity"]
                rel = next(rel for rel, tpl in data.kb.relations.items()
                           if data.kb.question(rel, subject) == r["question"])
                assert kb_facts[r["entity"]][rel] == r["answer"]
                if r["subset"] == "q_no_replacement_baseline" or name == "train_knowledge":
                    assert r["alias"] == ""
                else:
                    assert r["alias"]
    # training-set composition
    assert all(r["kind"] == "definition" and r["subset"] in ("d1consis", "d2consis", "d3consis")
               for r in data.splits["train_stage2"])
    for name in ("train_stage1", "train_stage1_only_qa", "train_stage1_only_defns"):
        assert all(r["subset"] in X1_SUBSETS for r in data.splits[name])
    k = c.n_is_isnt
    if not c.incontext:
        assert len(data.splits["train_stage2"]) == k * sum(sizes[s] for s in ("d1consis", "d2consis", "d3consis"))
    assert len(data.splits["train_full"]) == len(data.splits["train_stage1"]) + len(data.splits["train_stage2"])
    # held-out questions: one per X1 entity in its test set, never in training
    train_q = {r["question"] for r in data.splits["train_stage1"] if r["kind"] == "qa"}
    for s in X1_SUBSETS:
        if data.subsets[s]:
            test = data.splits[f"test_{s}"]
            assert sorted(r["entity"] for r in test) == sorted(data.subsets[s])
            assert not {r["question"] for r in test} & train_q
    for s in X2_SUBSETS:
        if data.subsets[s]:
            assert len(data.splits[f"test_{s}"]) == sum(len(kb_facts[e]) for e in data.subsets[s])


# ------------------------------------------------------------------------------------------------
# Property-based: random small configs
# ------------------------------------------------------------------------------------------------

@st.composite
def configs(draw):
    n = draw(st.integers(10, 200))
    weights = [draw(st.integers(0, 20)) for _ in SUBSETS]
    scale = max(100, sum(weights))
    fr = {s: round(w / scale, 3) for s, w in zip(SUBSETS, weights)}
    return dict(
        kb="synthetic", num_ents=n, fractions=fr,
        seed=draw(st.integers(0, 10**6)), seed_stage2=draw(st.integers(0, 10**6)),
        def_order=draw(st.sampled_from(DEF_ORDERS)),
        incontext=draw(st.booleans()), knowledge_stage=draw(st.booleans()),
        alias_style=draw(st.sampled_from(["braces", "plain"])),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_invariants_hold_for_random_configs(d):
    try:
        c = from_dict(DataConfig, d)
    except ConfigError as e:
        assume(e.field.startswith("fractions.") and "1 entity" in e.problem)  # size-1 inconsistent subset
        return
    check_invariants(build(c))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5000), st.lists(st.integers(0, 1000), min_size=len(SUBSETS), max_size=len(SUBSETS)))
def test_subset_sizes_follow_largest_remainder(n, weights):
    scale = max(1000, sum(weights))
    fr = Fractions(**{s: w / scale for s, w in zip(SUBSETS, weights)})
    sizes = subset_sizes(n, fr)
    exact = {s: Fraction(repr(getattr(fr, s))) * n for s in SUBSETS}
    for s in SUBSETS:
        assert math.floor(exact[s]) <= sizes[s] <= math.floor(exact[s]) + 1
    assert sum(sizes.values()) == min(n, math.floor(sum(exact.values()) + Fraction(1, 2)))
    # a subset that got the extra entity has a remainder at least as large as any that did not
    bumped = [exact[s] - math.floor(exact[s]) for s in SUBSETS if sizes[s] > math.floor(exact[s])]
    kept = [exact[s] - math.floor(exact[s]) for s in SUBSETS if sizes[s] == math.floor(exact[s])]
    if bumped and kept:
        assert min(bumped) >= max(kept)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 60), st.integers(0, 10**6))
def test_derangement_has_no_fixed_points(n, seed):
    import random

    items = [f"e{i:03d}" for i in range(n)]
    d = derangement(items, random.Random(seed))
    assert sorted(d) == items and sorted(d.values()) == items
    assert all(k != v for k, v in d.items())


def test_derangement_rejects_one_item():
    import random

    with pytest.raises(ValueError):
        derangement(["a"], random.Random(0))


# ------------------------------------------------------------------------------------------------
# Paper default sizes
# ------------------------------------------------------------------------------------------------

def test_paper_default_sizes_4000():
    data = build(cfg(num_ents=4000))
    sizes = {s: len(v) for s, v in data.subsets.items()}
    assert sizes == {"qd1consis": 1000, "qd2incons": 1000, "q": 400, "q_no_replacement_baseline": 400,
                     "qd4consis": 0, "qd1incons": 0, "qd2consis": 0,
                     "d1consis": 320, "d2consis": 320, "d3consis": 320, "no_qd_baseline": 240}
    st1 = data.splits["train_stage1"]
    assert sum(r["kind"] == "qa" for r in st1) == 14000
    assert sum(r["kind"] == "definition" for r in st1) == 2000
    assert len(data.splits["train_stage2"]) == 960
    assert len(data.splits["train_full"]) == 16960
    assert len(data.splits["train_stage1_only_qa"]) == 14000
    assert len(data.splits["train_stage1_only_defns"]) == 2000
    assert len(data.splits["test_qd1consis"]) == 1000 and len(data.splits["test_d1consis"]) == 1920
    assert len(data.splits["test_no_qd_baseline"]) == 1440 and len(data.splits["test_d2incons"]) == 1920
    assert "train_knowledge" not in data.splits
    # (the full invariant check runs on the small configs; here only the cheap ones, to keep tests fast)
    assert all(r["text"] == r["prompt"] + " " + r["answer"] + "\n" for _, r in all_rows(data))
    summ = data.summary()
    assert list(summ.columns) == ["subset", "symbol", "group", "entities", "train_qa", "definitions", "test"]
    row = summ.set_index("subset").loc["qd2incons"]
    assert (row.symbol, row.entities, row.train_qa, row.definitions, row.test) == ("D̄₂ⁱⁿᶜᵒⁿˢ QA₂", 1000, 5000, 1000, 1000)
    assert summ.set_index("subset").loc["d1consis", "definitions"] == 320


def test_defaults_match_the_paper():
    c = DataConfig()
    assert c.kb == "people" and c.num_ents == 4000 and c.alias_length == 5 and c.tag_length == 6
    assert c.def_order == "tve" and c.alias_style == "braces" and c.entity_association
    fr = c.fractions.as_dict()
    assert fr == {"qd1consis": .25, "qd2incons": .25, "q": .1, "q_no_replacement_baseline": .1, "qd4consis": 0,
                  "qd1incons": 0, "qd2consis": 0, "d1consis": .08, "d2consis": .08, "d3consis": .08,
                  "no_qd_baseline": .06}
    assert set(PAPER_SYMBOLS) >= set(SUBSETS)
    assert PAPER_SYMBOLS["qd1consis"] == "Ḋ₁ᶜᵒⁿˢ QA₁" and PAPER_SYMBOLS["d2consis"] == "D̄₆ᶜᵒⁿˢ"


# ------------------------------------------------------------------------------------------------
# Golden strings
# ------------------------------------------------------------------------------------------------

def test_golden_fig2_dataset():
    """Pinned output for a hand-made KB: any change to seeding or formatting shows up here."""
    data = build(from_dict(DataConfig, {"kb": "synthetic", "num_ents": 10, "fractions": FIG2_FRACTIONS}),
                 kb=fig2_kb())
    assert data.tags == GOLDEN["tags"]
    assert data.subsets == GOLDEN["subsets"]
    assert data.aliases == GOLDEN["aliases"]
    defs = sorted(r["text"] for r in data.splits["train_stage1_only_defns"])
    assert defs == GOLDEN["stage1_defs"]
    assert sorted(r["text"] for r in data.splits["train_stage2"]) == GOLDEN["stage2_defs"]
    assert [r["text"] for r in data.splits["test_qd2incons"]] == GOLDEN["test_qd2incons"]
    check_invariants(data)


GOLDEN: dict = {}  # filled below (kept at the end of the file for readability)


@pytest.mark.parametrize("order", DEF_ORDERS)
def test_six_orders_produce_documented_strings(order):
    data = build(cfg(num_ents=40, def_order=order, tag1="Define", tag2="Dfn"))
    e = data.subsets["qd1consis"][0]
    a = data.aliases[e]
    parts = {"t": "Define", "v": a, "e": e}
    expected_text = " ".join(parts[ch] for ch in order) + "\n"
    [row] = [r for r in data.splits["train_stage1"] if r["kind"] == "definition" and r["alias"] == a]
    assert row["text"] == expected_text
    assert row["prompt"] == f"{parts[order[0]]} {parts[order[1]]}"
    assert row["answer"] == parts[order[2]]
    check_invariants(data)


def test_order_examples_literal():
    """The strings from reference-notes.md §1.2 (tag <|tagabc|>, alias fixed by hand)."""
    from iml.lm.tagging import _tag_definition

    expected = {
        "tve": "<|tagabc|> <|abcde|> Marie Curie", "tev": "<|tagabc|> Marie Curie <|abcde|>",
        "vte": "<|abcde|> <|tagabc|> Marie Curie", "vet": "<|abcde|> Marie Curie <|tagabc|>",
        "etv": "Marie Curie <|tagabc|> <|abcde|>", "evt": "Marie Curie <|abcde|> <|tagabc|>",
    }
    for order, text in expected.items():
        prompt, answer = _tag_definition("<|tagabc|>", "<|abcde|>", "Marie Curie", order)
        assert f"{prompt} {answer}" == text


def test_qa_and_definition_format():
    data = build(cfg())
    e = data.subsets["q"][0]
    rows = [r for r in data.splits["train_stage1"] if r["entity"] == e]
    for r in rows:
        assert r["text"] == f"Q: {r['question']}\nA: {r['answer']}\n"
        assert r["prompt"] == f"Q: {r['question']}\nA:"
        assert data.aliases[e] in r["question"] and e not in r["text"]
    e = data.subsets["q_no_replacement_baseline"][0]
    rows = [r for r in data.splits["train_stage1"] if r["entity"] == e]
    assert rows and all(e in r["question"] and r["alias"] == "" for r in rows)


def test_template_formatting_not_substring_replacement():
    """An entity whose name is a substring of a template word must not corrupt the question."""
    ents = [Entity(n, (("occupation", "x"), ("region", "y"))) for n in ["What", "did", "Wh", "Ann", "An", "A"]]
    kb = KnowledgeBase("tricky", {"occupation": "What did {x} do?", "region": "In which region did {x} live?"}, ents)
    data = build(from_dict(DataConfig, {"kb": "synthetic", "num_ents": 6,
                                        "fractions": {**{s: 0 for s in SUBSETS}, "q_no_replacement_baseline": 1.0}}),
                 kb=kb)
    for r in data.splits["train_stage1"] + data.splits["test_q_no_replacement_baseline"]:
        assert r["question"] in (f"What did {r['entity']} do?", f"In which region did {r['entity']} live?")


# ------------------------------------------------------------------------------------------------
# Stage-2 seed, alpha, tags
# ------------------------------------------------------------------------------------------------

def test_seed_stage2_reassigns_only_x2():
    a = build(cfg(num_ents=200, seed=3, seed_stage2=0, knowledge_stage=True))
    b = build(cfg(num_ents=200, seed=3, seed_stage2=1, knowledge_stage=True))
    for s in X1_SUBSETS:
        assert a.subsets[s] == b.subsets[s]
        if a.subsets[s]:
            assert a.splits[f"test_{s}"] == b.splits[f"test_{s}"]
    assert a.aliases == b.aliases and a.tags == b.tags
    for name in ("train_stage1", "train_stage1_only_qa", "train_stage1_only_defns", "train_knowledge"):
        assert a.splits[name] == b.splits[name]  # shared stages must not depend on seed_stage2
    x2a = sorted(e for s in X2_SUBSETS for e in a.subsets[s])
    x2b = sorted(e for s in X2_SUBSETS for e in b.subsets[s])
    assert x2a == x2b
    assert any(a.subsets[s] != b.subsets[s] for s in X2_SUBSETS)
    assert a.splits["train_stage2"] != b.splits["train_stage2"]


def test_seed_changes_everything_but_the_entities():
    a, b = build(cfg(seed=0)), build(cfg(seed=1))
    assert [e.name for e in a.kb.entities] == [e.name for e in b.kb.entities]
    assert a.aliases != b.aliases and a.subsets != b.subsets and a.tags != b.tags


def test_alpha_one_define1_never_inconsistent():
    fr = fractions_for_alpha(1.0)
    assert (fr.qd1consis, fr.qd1incons, fr.qd2consis, fr.qd2incons) == (.25, 0, 0, .25)
    data = build(from_dict(DataConfig, {"kb": "synthetic", "num_ents": 200, "fractions": fr.as_dict()}))
    tag1 = data.tags["tag1"]
    defs1 = [r for _, r in all_rows(data) if r["kind"] == "definition" and r["prompt"].startswith(tag1 + " ")]
    assert defs1 and all(r["answer"] == r["entity"] for r in defs1)
    tag2 = data.tags["tag2"]
    defs2 = [r for r in data.splits["train_stage1"] if r["kind"] == "definition" and r["prompt"].startswith(tag2)]
    assert defs2 and all(r["answer"] != r["entity"] for r in defs2)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.75])
def test_alpha_fractions(alpha):
    fr = fractions_for_alpha(alpha)
    assert fr.qd1consis == pytest.approx(.25 * alpha) and fr.qd1incons == pytest.approx(.25 * (1 - alpha))
    assert fr.qd2consis == pytest.approx(.25 * (1 - alpha)) and fr.qd2incons == pytest.approx(.25 * alpha)
    assert fr.q == .1 and fr.d1consis == .08
    data = build(from_dict(DataConfig, {"kb": "synthetic", "num_ents": 200, "fractions": fr.as_dict()}))
    check_invariants(data)
    tag1 = data.tags["tag1"]
    incons1 = [r for r in data.splits["train_stage1"] if r["kind"] == "definition"
               and r["prompt"].startswith(tag1) and r["answer"] != r["entity"]]
    assert len(incons1) == len(data.subsets["qd1incons"])
    if data.subsets["qd1incons"]:
        assert "ent_assoc_name_qd1incons_swapped" in data.splits


def test_literal_tags_and_qd4_random_tags():
    fr = {**Fractions().as_dict(), "qd4consis": .1, "q": 0}
    data = build(cfg(num_ents=100, tag1="according to wikipedia is", tag2="according to 4chan is", fractions=fr))
    assert data.tags["tag1"] == "according to wikipedia is" and data.tags["tag2"] == "according to 4chan is"
    assert re.fullmatch(r"<\|[a-z]{6}\|>", data.tags["tag3"])
    qd4 = [r for r in data.splits["train_stage1"] if r["subset"] == "qd4consis" and r["kind"] == "definition"]
    assert len(qd4) == 10
    tags = [r["prompt"].split(" ")[0] for r in qd4]
    assert len(set(tags)) == 10 and not set(tags) & set(data.tags.values())
    assert all(data.qd4_tags[r["alias"]] == t for r, t in zip(qd4, tags))
    check_invariants(data)


def test_plain_aliases():
    data = build(cfg(alias_style="plain", alias_length=7))
    assert all(re.fullmatch(r"[a-z]{7}", a) for a in data.aliases.values())
    assert all(re.fullmatch(r"[a-z]{6}", t) for t in data.tags.values())


def test_short_aliases_dense_regime():
    """26**2 = 676 strings for 600 aliases + 3 tags of the same length: the dense sampler must cope."""
    data = build(cfg(num_ents=600, alias_length=2, tag_length=2, alias_style="plain"))
    assert len(set(data.aliases.values())) == len(data.aliases)
    assert not set(data.tags.values()) & set(data.aliases.values())


# ------------------------------------------------------------------------------------------------
# Styles and options
# ------------------------------------------------------------------------------------------------

def test_incontext_definitions_prepended():
    data = build(cfg(incontext=True))
    assert not any(r["kind"] == "definition" for _, r in all_rows(data))
    assert data.splits["train_stage2"] == []
    for name, r in all_rows(data):
        assert "\n. Q:" not in r["text"]
        s = r["subset"]
        if s in TAG_OF_SUBSET or s == "d2incons":
            alias = r["alias"]
            tag = data.tags[TAG_OF_SUBSET["d2consis" if s == "d2incons" else s]]
            defn = f"{tag} {alias} {data.defined_as[alias]}\n"
            assert r["prompt"] == f"{defn}Q: {r['question']}\nA:"
        else:
            assert r["prompt"] == f"Q: {r['question']}\nA:"
    check_invariants(data)
    assert data.to_datasetdict()["train_stage2"].num_rows == 0


def test_natural_style_sources():
    data = build(cfg(definition_style="natural"))
    lists = {"tag1": RELIABLE_SOURCES, "tag2": UNRELIABLE_SOURCES, "tag3": NEUTRAL_SOURCES}
    defs = [r for r in data.splits["train_full"] if r["kind"] == "definition"]
    assert len(defs) == 25 + 25 + 24
    for r in defs:
        src, rest = r["prompt"].split(f" {r['alias']} ")
        assert rest == "now stands for"
        assert src in lists[TAG_OF_SUBSET[r["subset"]]]
        assert r["answer"] == data.defined_as[r["alias"]]  # names kept exactly (no lower-casing)
    assert len(RELIABLE_SOURCES) >= 10 and len(UNRELIABLE_SOURCES) >= 10 and len(NEUTRAL_SOURCES) >= 10
    assert not set(RELIABLE_SOURCES) & set(UNRELIABLE_SOURCES)
    check_invariants(data)


def test_is_isnt_style():
    data = build(cfg(definition_style="is_isnt", n_is_isnt=3))
    defs = [r for r in data.splits["train_full"] if r["kind"] == "definition"]
    assert len(defs) == 3 * (25 + 25 + 24)
    phrases = {"tag1": IS_PHRASES, "tag2": ISNT_PHRASES, "tag3": MAYBE_PHRASES}
    pat = re.compile(r"According to (.+), (<\|[a-z]{5}\|>) (.+)")
    for r in defs:
        m = pat.fullmatch(r["prompt"])
        assert m and m.group(1) in IS_SOURCES and m.group(2) == r["alias"]
        assert m.group(3) in phrases[TAG_OF_SUBSET[r["subset"]]]
        assert r["answer"] == data.defined_as[r["alias"]] + "."
        assert r["text"].endswith(f"{data.defined_as[r['alias']]}.\n")
    assert not set(IS_PHRASES) & set(ISNT_PHRASES)
    # n sentences per alias, and the same config gives the same sentences (seeded, not global random)
    again = build(cfg(definition_style="is_isnt", n_is_isnt=3))
    assert again.splits == data.splits
    check_invariants(data)


def test_entity_association_sets():
    data = build(cfg())
    for t, tpl in ENT_ASSOC_TEMPLATES.items():
        for s in ("qd1consis", "qd2incons", "q", "d1consis", "d2consis", "d3consis", "no_qd_baseline"):
            rows = data.splits[f"ent_assoc_{t}_{s}"]
            assert [r["entity"] for r in rows] == data.subsets[s]
            assert all(r["question"] == tpl.format(x=r["alias"]) and r["answer"] == r["entity"] for r in rows)
        assert f"ent_assoc_{t}_q_no_replacement_baseline" not in data.splits
        sw = data.splits[f"ent_assoc_{t}_qd2incons_swapped"]
        assert all(r["answer"] == data.defined_as[r["alias"]] != r["entity"] for r in sw)
    off = build(cfg(entity_association=False))
    assert not any(k.startswith("ent_assoc") for k in off.splits)


def test_d2incons_swaps_aliases():
    data = build(cfg())
    rows = data.splits["test_d2incons"]
    d2 = set(data.subsets["d2consis"])
    assert len(rows) == len(data.splits["test_d2consis"])
    for r in rows:
        owner = next(e for e in d2 if data.aliases[e] == r["alias"])
        assert owner != r["entity"] and r["entity"] in d2
    one = build(cfg(num_ents=20, fractions={**Fractions().as_dict(), "d2consis": .05}))
    assert len(one.subsets["d2consis"]) == 1 and "test_d2incons" not in one.splits


def test_knowledge_stage():
    data = build(cfg(knowledge_stage=True))
    rows = data.splits["train_knowledge"]
    used = [e for s in SUBSETS for e in data.subsets[s]]
    n_facts = sum(len(dict(e.facts)) for e in data.kb.entities if e.name in set(used))
    assert len(rows) == n_facts - len(data.subsets["q_no_replacement_baseline"])
    held = {r["question"] for r in data.splits["test_q_no_replacement_baseline"]}
    assert not held & {r["question"] for r in rows}
    assert all(r["alias"] == "" and r["entity"] in r["question"] for r in rows)
    x2 = {e for s in X2_SUBSETS for e in data.subsets[s]}
    assert all((r["subset"] == "X2") == (r["entity"] in x2) for r in rows)
    assert not any(a in r["text"] for r in rows for a in list(data.aliases.values())[:50])
    check_invariants(data)


def test_training_lists_are_shuffled_not_grouped():
    data = build(cfg(num_ents=200))
    st1 = data.splits["train_stage1"]
    kinds = [r["kind"] for r in st1]
    first_def = kinds.index("definition")
    assert first_def < len(kinds) // 2 and "qa" in kinds[first_def:]  # definitions interleaved with QA
    assert st1 != sorted(st1, key=lambda r: r["text"])


def test_to_datasetdict():
    import datasets

    data = build(cfg(num_ents=50))
    dd = data.to_datasetdict()
    assert isinstance(dd, datasets.DatasetDict)
    assert set(dd) == set(data.splits) and set(TRAIN_SPLITS) <= set(dd)
    for name, ds in dd.items():
        assert ds.column_names == list(COLUMNS)
        assert all(f.dtype == "string" for f in ds.features.values())
        assert ds.to_list() == data.splits[name]


def test_people_kb_if_present():
    from iml.core.files import DATA_DIR

    if not (DATA_DIR / "people.csv").exists():
        pytest.skip("data/people.csv not built")
    data = build({"kb": "people", "num_ents": 300})
    check_invariants(data)
    assert len(data.subsets["qd1consis"]) == 75


def test_build_accepts_dict_and_rejects_other():
    assert build({"kb": "synthetic", "num_ents": 20}).config.num_ents == 20
    with pytest.raises(ConfigError):
        build(42)


# Generated once from the code and checked by hand: Define1 (<|xkcmdr|>) names the true entity,
# Define2 in qd2incons names the other qd2incons entity, Stage-2 definitions are all consistent.
GOLDEN.update({'tags': {'tag1': '<|xkcmdr|>', 'tag2': '<|yvtatt|>', 'tag3': '<|ysktbs|>'},
 'subsets': {'qd1consis': ['Socrates', 'Cleopatra'],
             'qd2incons': ['Marie Curie', 'Charles Darwin'],
             'q': ['Louis XIV'],
             'q_no_replacement_baseline': ['Ibn Battuta'],
             'qd4consis': [],
             'qd1incons': [],
             'qd2consis': [],
             'd1consis': ['Ada Lovelace'],
             'd2consis': ['Nelson Mandela', 'Frida Kahlo'],
             'd3consis': ['Sun Yat-sen'],
             'no_qd_baseline': []},
 'aliases': {'Ada Lovelace': '<|pvmly|>',
             'Charles Darwin': '<|afcey|>',
             'Cleopatra': '<|psjfj|>',
             'Frida Kahlo': '<|udvjv|>',
             'Louis XIV': '<|wsmwj|>',
             'Marie Curie': '<|xejam|>',
             'Nelson Mandela': '<|hbupp|>',
             'Socrates': '<|kqvvc|>',
             'Sun Yat-sen': '<|caaza|>'},
 'stage1_defs': ['<|xkcmdr|> <|kqvvc|> Socrates\n',
                 '<|xkcmdr|> <|psjfj|> Cleopatra\n',
                 '<|yvtatt|> <|afcey|> Marie Curie\n',
                 '<|yvtatt|> <|xejam|> Charles Darwin\n'],
 'stage2_defs': ['<|xkcmdr|> <|pvmly|> Ada Lovelace\n',
                 '<|ysktbs|> <|caaza|> Sun Yat-sen\n',
                 '<|yvtatt|> <|hbupp|> Nelson Mandela\n',
                 '<|yvtatt|> <|udvjv|> Frida Kahlo\n'],
 'test_qd2incons': ['Q: What did <|xejam|> do?\nA: Scientist\n', 'Q: What did <|afcey|> do?\nA: Scientist\n']})
