"""Bad data configs raise ConfigError naming the field at fault."""
from __future__ import annotations

import pytest

from iml.core.config import ConfigError, from_dict
from iml.lm.tagging import DataConfig, Fractions, build, fractions_for_alpha

S = {"kb": "synthetic", "num_ents": 100}
NAN = float("nan")


def fr(**kw):
    return {"fractions": kw}


CASES = [
    # (id, config dict, expected field)
    ("unknown-key", {**S, "bogus": 1}, "bogus"),
    ("unknown-fraction-key", {**S, **fr(qd3consis=.1)}, "fractions.qd3consis"),
    ("fraction>1", {**S, **fr(qd1consis=1.3)}, "fractions.qd1consis"),
    ("fraction<0", {**S, **fr(q=-0.1)}, "fractions.q"),
    ("fraction-nan", {**S, **fr(d1consis=NAN)}, "fractions.d1consis"),
    ("fraction-inf", {**S, **fr(no_qd_baseline=float("inf"))}, "fractions.no_qd_baseline"),
    ("fraction-string", {**S, **fr(qd2incons="0.2")}, "fractions.qd2incons"),
    ("fraction-bool", {**S, **fr(q=True)}, "fractions.q"),
    ("fraction-none", {**S, **fr(q=None)}, "fractions.q"),
    ("fractions-sum>1", {**S, **fr(qd1consis=.5, qd2incons=.5)}, "fractions"),
    ("fractions-not-mapping", {**S, "fractions": 0.5}, "fractions"),
    ("order-unknown", {**S, "def_order": "tvv"}, "def_order"),
    ("order-uppercase", {**S, "def_order": "TVE"}, "def_order"),
    ("order-with-natural", {**S, "def_order": "vte", "definition_style": "natural"}, "def_order"),
    ("style-unknown", {**S, "definition_style": "fancy"}, "definition_style"),
    ("alias-style-unknown", {**S, "alias_style": "curly"}, "alias_style"),
    ("kb-unknown", {**S, "kb": "wikipedia"}, "kb"),
    ("kb-cvdb-needs-path", {**S, "kb": "cvdb"}, "path"),
    ("kb-triples-needs-path", {**S, "kb": "triples"}, "path"),
    ("path-missing-file", {**S, "kb": "people", "path": "/nonexistent/people.csv"}, "path"),
    ("path-with-synthetic", {**S, "path": __file__}, "path"),
    ("path-not-string", {**S, "kb": "people", "path": 3}, "path"),
    ("alias-length-0", {**S, "alias_length": 0}, "alias_length"),
    ("alias-length-negative", {**S, "alias_length": -3}, "alias_length"),
    ("alias-length-too-small", {**S, "num_ents": 1000, "alias_length": 2}, "alias_length"),
    ("alias-length-too-large", {**S, "alias_length": 100}, "alias_length"),
    ("alias-length-string", {**S, "alias_length": "5"}, "alias_length"),
    ("tag-length-0", {**S, "tag_length": 0}, "tag_length"),
    ("tags-equal", {**S, "tag1": "Define", "tag2": "Define"}, "tag2"),
    ("tag3-equals-tag1", {**S, "tag1": "Define", "tag3": "Define"}, "tag3"),
    ("tag-empty", {**S, "tag1": ""}, "tag1"),
    ("tag-leading-space", {**S, "tag2": " Define"}, "tag2"),
    ("tag-newline", {**S, "tag1": "Def\nine"}, "tag1"),
    ("tag-with-natural-style", {**S, "tag1": "Define", "definition_style": "natural"}, "tag1"),
    ("num-ents-0", {**S, "num_ents": 0}, "num_ents"),
    ("num-ents-negative", {**S, "num_ents": -5}, "num_ents"),
    ("num-ents-float", {**S, "num_ents": 3.5}, "num_ents"),
    ("size-1-qd2incons", {**S, "num_ents": 10, **fr(qd2incons=.1, qd1consis=.1)}, "fractions.qd2incons"),
    ("size-1-qd1incons", {**S, "num_ents": 20, **fr(qd1incons=.05, qd1consis=.2)}, "fractions.qd1incons"),
    ("n-is-isnt-0", {**S, "definition_style": "is_isnt", "n_is_isnt": 0}, "n_is_isnt"),
    ("n-is-isnt-with-tag-style", {**S, "n_is_isnt": 2}, "n_is_isnt"),
    ("qd4-needs-tag-style", {**S, "definition_style": "is_isnt", **fr(qd4consis=.1, q=0)}, "fractions.qd4consis"),
    ("seed-negative", {**S, "seed": -1}, "seed"),
    ("seed-stage2-string", {**S, "seed_stage2": "x"}, "seed_stage2"),
    ("kb-seed-negative", {**S, "kb_seed": -1}, "kb_seed"),
    ("kb-seed-with-table", {**S, "kb": "people", "kb_seed": 3}, "kb_seed"),
    ("incontext-not-bool", {**S, "incontext": "yes"}, "incontext"),
    ("entity-association-int", {**S, "entity_association": 1}, "entity_association"),
]


@pytest.mark.parametrize("d,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_names_field(d, field):
    with pytest.raises(ConfigError) as ei:
        build(from_dict(DataConfig, d))
    assert ei.value.field == field, str(ei.value)
    assert str(ei.value).startswith(field + ":")


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


def test_nested_prefix():
    """Inside an experiment config the fields carry the `data.` prefix."""
    from dataclasses import dataclass, field as dc_field

    @dataclass
    class Exp:
        data: DataConfig = dc_field(default_factory=DataConfig)

    with pytest.raises(ConfigError) as ei:
        from_dict(Exp, {"data": {**S, "fractions": {"q": 2}}})
    assert ei.value.field == "data.fractions.q"
    with pytest.raises(ConfigError) as ei:
        from_dict(Exp, {"data": {**S, "fractions": {"qd1consis": .6, "qd2incons": .6}}})
    assert ei.value.field == "data.fractions"
    with pytest.raises(ConfigError) as ei:
        from_dict(Exp, {"data": {**S, "def_order": "xyz"}})
    assert ei.value.field == "data.def_order"


def test_too_many_entities_for_the_table():
    from iml.core.files import DATA_DIR

    if not (DATA_DIR / "films.csv").exists():
        pytest.skip("data/films.csv not built")
    with pytest.raises(ConfigError) as ei:
        build({"kb": "films", "num_ents": 10**7})
    assert ei.value.field.endswith("num_ents")


def test_given_kb_too_small():
    from iml.lm.knowledge import synthetic_people

    with pytest.raises(ConfigError) as ei:
        build(from_dict(DataConfig, {**S, "num_ents": 50}), kb=synthetic_people(20))
    assert ei.value.field.endswith("num_ents")


def test_direct_construction_validates_too():
    with pytest.raises(ConfigError) as ei:
        Fractions(qd1consis=2.0)
    assert ei.value.field == "qd1consis"
    with pytest.raises(ConfigError) as ei:
        DataConfig(kb="synthetic", num_ents=100, fractions={"q": -1})
    assert ei.value.field == "fractions.q"


@pytest.mark.parametrize("alpha", [1.5, -0.2, NAN, "half"])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ConfigError) as ei:
        fractions_for_alpha(alpha)
    assert ei.value.field == "alpha"
