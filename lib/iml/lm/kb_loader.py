"""Loading a knowledge base by its name: :func:`load_kb`, the one entry point the dataset code calls.

It dispatches ``people``/``films`` to the shipped tables (:mod:`iml.lm.sources`), ``cvdb``/``triples``
to users' own files (:mod:`iml.lm.user_sources`) and ``synthetic`` to :func:`iml.lm.knowledge.synthetic_people`.
It is a module of its own so that imports point one way: the loaders import the plain data types of
:mod:`iml.lm.knowledge`, and only this module imports the loaders.
"""
from __future__ import annotations

from iml.core.config import ConfigError
from iml.lm import sources, user_sources
from iml.lm.knowledge import KB_NAMES, KnowledgeBase, synthetic_people

__all__ = ["load_kb"]


def load_kb(name: str, num_ents: int, path: str | None = None, seed: int = 0,
            balance_gender: bool = True) -> KnowledgeBase:
    """Load a knowledge base by name and keep its first `num_ents` entities (selection order).

    The entity set never depends on the experiment seed (only `synthetic` takes a seed, its own).
    """
    if name == "synthetic":
        return synthetic_people(num_ents, seed=seed)
    if name == "people":
        return sources.load_people(num_ents, path=path, balance_gender=balance_gender)
    if name == "films":
        return sources.load_films(num_ents, path=path)
    if name == "cvdb":
        if path is None:
            raise ConfigError("data.path", "the cvdb knowledge base needs the path of your CVDB CSV")
        return user_sources.load_cvdb_csv(path, num_ents, balance_gender=balance_gender)
    if name == "triples":
        if path is None:
            raise ConfigError("data.path", "the triples knowledge base needs the path of a JSON/JSONL file")
        return user_sources.load_triples(path, num_ents)
    raise ConfigError("data.kb", f"unknown knowledge base {name!r}; choose one of {list(KB_NAMES)}")
