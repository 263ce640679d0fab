"""The knowledge-base schema, the paper's year bucketing, the synthetic generator and load_kb."""
import pytest

from iml.core.config import ConfigError
from iml.lm.kb_loader import load_kb
from iml.lm.knowledge import (
    KB_NAMES,
    PEOPLE_RELATIONS,
    Entity,
    KnowledgeBase,
    bucket_year,
    synthetic_people,
)


@pytest.mark.parametrize("year, expected", [
    (2020, "2020"),
    (1923, "1920s"),
    (1222, "13 century"),
    (-122, "2 century BC"),
    (2000, "2000"),
    (1900, "19 century"),
    (1901, "1900s"),
    (1999, "1990s"),
    (-1, "1 century BC"),
    (-100, "1 century BC"),
    (-101, "2 century BC"),
    (1, "1 century"),
    (100, "1 century"),
    (101, "2 century"),
    ("1850", "19 century"),
])
def test_bucket_year(year, expected):
    assert bucket_year(year) == expected


def test_people_relations_are_the_six_questions():
    assert list(PEOPLE_RELATIONS) == ["birth", "birthplace", "region", "occupation", "nationality", "gender"]
    assert all(t.count("{x}") == 1 for t in PEOPLE_RELATIONS.values())


def test_synthetic_is_deterministic_and_seeded():
    a, b = synthetic_people(50, seed=3), synthetic_people(50, seed=3)
    assert a.entities == b.entities
    assert synthetic_people(50, seed=4).entities != a.entities


def test_synthetic_is_prefix_stable():
    small, big = synthetic_people(30, seed=1), synthetic_people(120, seed=1)
    assert big.entities[:30] == small.entities


def test_synthetic_schema():
    kb = synthetic_people(200, seed=0)
    assert len(kb) == 200 and kb.relations == PEOPLE_RELATIONS
    assert len({e.name for e in kb.entities}) == 200
    for e in kb.entities:
        assert e.relations == tuple(PEOPLE_RELATIONS)
        assert e.answer("gender") in ("Male", "Female")
        assert all(a.strip() for _, a in e.facts)
    assert kb.question("birth", "<|abcde|>") == "When was <|abcde|> born?"


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10"])
def test_synthetic_rejects_bad_n(n):
    with pytest.raises(ValueError):
        synthetic_people(n)


def test_knowledge_base_validation():
    e = Entity("Ada", (("r", "x"),))
    with pytest.raises(ValueError, match="exactly once"):
        KnowledgeBase("t", {"r": "no slot"}, [e])
    with pytest.raises(ValueError, match="duplicate"):
        KnowledgeBase("t", {"r": "Q {x}?"}, [e, e])
    with pytest.raises(ValueError, match="unknown relation"):
        KnowledgeBase("t", {"s": "Q {x}?"}, [e])
    with pytest.raises(ValueError, match="empty answer"):
        KnowledgeBase("t", {"r": "Q {x}?"}, [Entity("Bo", (("r", " "),))])
    with pytest.raises(KeyError):
        e.answer("s")
    kb = KnowledgeBase("t", {"r": "Q {x}?"}, [e, Entity("Bo", (("r", "y"),))])
    assert [x.name for x in kb.head(1).entities] == ["Ada"]
    with pytest.raises(ValueError):
        kb.head(3)


def test_load_kb_dispatch():
    assert load_kb("synthetic", 10, seed=2).entities == synthetic_people(10, seed=2).entities
    people = load_kb("people", 20)
    assert people.name == "people" and len(people) == 20
    films = load_kb("films", 20)
    assert films.name == "films" and len(films) == 20
    # The entity set of the shipped bases does not depend on the experiment seed.
    assert load_kb("people", 20, seed=5).entities == people.entities
    assert load_kb("films", 20, seed=5).entities == films.entities


@pytest.mark.parametrize("name", ["cvdb", "triples"])
def test_load_kb_user_files_need_a_path(name):
    with pytest.raises(ValueError, match="data.path"):
        load_kb(name, 10)


def test_load_kb_unknown_name():
    with pytest.raises(ValueError, match="unknown knowledge base"):
        load_kb("wikipedia", 10)
    assert set(KB_NAMES) == {"people", "films", "cvdb", "triples", "synthetic"}


def test_load_kb_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError) as ei:
        load_kb("cvdb", 10, path=str(tmp_path / "missing.csv"))
    assert ei.value.field == "data.path"
