"""Knowledge bases: entities and the facts that QA pairs ask about. Holds the schema (:class:`Entity`,
:class:`KnowledgeBase`), the paper's year bucketing, the synthetic generator and the base names (:data:`KB_NAMES`).
Questions format a relation's ``{x}`` template with the name or an alias; names are never substituted into text.
It imports no loader: those are :mod:`iml.lm.sources`, :mod:`iml.lm.user_sources` and :mod:`iml.lm.kb_loader`.
Design choices: book/design_notes.md (section `iml.lm.knowledge`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Entity",
    "KnowledgeBase",
    "PEOPLE_RELATIONS",
    "bucket_year",
    "synthetic_people",
    "KB_NAMES",
]

# The paper's six CVDB questions, with "When did X die?" replaced by the birthplace (Pantheon has no
# death year; the book says so).
PEOPLE_RELATIONS: dict[str, str] = {
    "birth": "When was {x} born?",
    "birthplace": "Where was {x} born?",
    "region": "In which region did {x} live?",
    "occupation": "What did {x} do?",
    "nationality": "What was the nationality of {x}?",
    "gender": "What was the gender of {x}?",
}


@dataclasses.dataclass(frozen=True)
class Entity:
    """A named entity and its facts (relation -> answer), in the knowledge base's relation order."""

    name: str
    facts: tuple[tuple[str, str], ...]

    def answer(self, relation: str) -> str:
        for r, a in self.facts:
            if r == relation:
                return a
        raise KeyError(f"{self.name!r} has no fact for relation {relation!r}")

    @property
    def relations(self) -> tuple[str, ...]:
        return tuple(r for r, _ in self.facts)


@dataclasses.dataclass
class KnowledgeBase:
    """Entities plus question templates. `entities` are in selection order (most popular first)."""

    name: str
    relations: dict[str, str]
    entities: list[Entity]
    source: str = ""

    def __post_init__(self):
        for rel, tpl in self.relations.items():
            if tpl.count("{x}") != 1:
                raise ValueError(f"template for relation {rel!r} must contain '{{x}}' exactly once: {tpl!r}")
        names = [e.name for e in self.entities]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})[:3]
            raise ValueError(f"knowledge base {self.name!r} has duplicate entity names, e.g. {dup}")
        for e in self.entities:
            for r, a in e.facts:
                if r not in self.relations:
                    raise ValueError(f"entity {e.name!r} has a fact for unknown relation {r!r}")
                if not str(a).strip():
                    raise ValueError(f"entity {e.name!r} has an empty answer for {r!r}")

    def __len__(self) -> int:
        return len(self.entities)

    def question(self, relation: str, subject: str) -> str:
        """The question about `subject` (a real name or an alias) for `relation`."""
        return self.relations[relation].format(x=subject)

    def head(self, n: int) -> "KnowledgeBase":
        if n > len(self.entities):
            raise ValueError(f"knowledge base {self.name!r} has {len(self.entities)} entities, {n} requested")
        return dataclasses.replace(self, entities=list(self.entities[:n]))


def bucket_year(year: int) -> str:
    """The paper's anonymised years: <=1900 -> century ("19 century", "1 century BC"),
    1901-1999 -> decade ("1950s"), >=2000 -> the year itself.

    Century numbering follows the paper's convention: year y>0 is in century (y+99)//100 (so 1900 is
    "19 century"); year -y (BC) is in century (y+99)//100 BC.
    """
    year = int(year)
    if year <= 1900:
        c = (abs(year) + 99) // 100
        return f"{c} century" + (" BC" if year < 0 else "")
    if year < 2000:
        return f"{year // 10 * 10}s"
    return str(year)


# ------------------------------------------------------------------------------------------------
# Synthetic people: fictional names, realistic-looking attribute marginals, fully seeded.
# ------------------------------------------------------------------------------------------------

_CONSONANTS = "bcdfghjklmnprstvz"
_VOWELS = "aeiou"
_REGIONS = ["Europe", "Asia", "North America", "South America", "Africa", "Oceania"]
_COUNTRIES = {
    "Europe": ["France", "Germany", "Italy", "Spain", "Poland", "Sweden"],
    "Asia": ["China", "India", "Japan", "Iran", "Korea", "Turkey"],
    "North America": ["United States", "Canada", "Mexico", "Cuba"],
    "South America": ["Brazil", "Argentina", "Chile", "Peru"],
    "Africa": ["Egypt", "Nigeria", "Kenya", "Morocco"],
    "Oceania": ["Australia", "New Zealand", "Fiji"],
}
_OCCUPATIONS = ["politician", "actor", "writer", "singer", "painter", "physicist", "footballer",
                "philosopher", "composer", "military", "chemist", "explorer", "architect", "athlete"]


def _fake_word(rng: np.random.Generator, syllables: int) -> str:
    s = "".join(rng.choice(list(_CONSONANTS)) + rng.choice(list(_VOWELS)) for _ in range(syllables))
    return s.capitalize()


def synthetic_people(n: int, seed: int = 0) -> KnowledgeBase:
    """`n` fictional people with the people schema; the same (n, seed) always gives the same base.

    The first `n` entities of a larger base are the same as the base with `n` (entities are drawn one
    at a time from one generator), so growing `n` never reshuffles existing entities.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    rng = np.random.default_rng([seed, 7919])
    ents: list[Entity] = []
    seen: set[str] = set()
    cities = [_fake_word(rng, 3) for _ in range(200)]
    while len(ents) < n:
        name = f"{_fake_word(rng, int(rng.integers(2, 4)))} {_fake_word(rng, int(rng.integers(2, 4)))}"
        region = _REGIONS[int(rng.integers(len(_REGIONS)))]
        country = _COUNTRIES[region][int(rng.integers(len(_COUNTRIES[region])))]
        year = int(np.clip(rng.normal(1850, 180), -500, 2005))
        gender = "Female" if rng.random() < 0.5 else "Male"
        occupation = _OCCUPATIONS[int(rng.integers(len(_OCCUPATIONS)))]
        city = cities[int(rng.integers(len(cities)))]
        if name in seen:
            continue
        seen.add(name)
        ents.append(Entity(name, (
            ("birth", bucket_year(year)),
            ("birthplace", city),
            ("region", region),
            ("occupation", occupation),
            ("nationality", country),
            ("gender", gender),
        )))
    return KnowledgeBase("synthetic", dict(PEOPLE_RELATIONS), ents, source=f"synthetic_people(n={n}, seed={seed})")


KB_NAMES = ("people", "films", "cvdb", "triples", "synthetic")
