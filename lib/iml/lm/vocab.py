"""The vocabulary of the paper's tagged dataset: the names and strings :mod:`iml.lm.tagging` builds from.

Entity subsets (X1 with training QA, X2 without) and the tag that defines each, the paper's symbols, the
definition orders, the row columns and training-split names, the entity-association questions, and the
natural-language / is-isn't wording of definitions. Plain constants with no building logic, so reports,
tests and plots can name subsets and splits without the dataset code.
"""
from __future__ import annotations

from iml.core import paper as _paper

__all__ = [
    "PAPER_SYMBOLS",
    "SUBSETS",
    "X1_SUBSETS",
    "X2_SUBSETS",
    "DEFINED_SUBSETS",
    "INCONSISTENT_SUBSETS",
    "TAG_OF_SUBSET",
    "DEF_ORDERS",
    "COLUMNS",
    "TRAIN_SPLITS",
    "ENT_ASSOC_TEMPLATES",
    "RELIABLE_SOURCES",
    "UNRELIABLE_SOURCES",
    "NEUTRAL_SOURCES",
    "IS_SOURCES",
    "IS_PHRASES",
    "ISNT_PHRASES",
    "MAYBE_PHRASES",
]

X1_SUBSETS: tuple[str, ...] = (
    "qd1consis", "qd2incons", "q", "q_no_replacement_baseline", "qd4consis", "qd1incons", "qd2consis",
)
"""Entities with training QA (Stage 1), in the order their contiguous slices are taken."""

X2_SUBSETS: tuple[str, ...] = ("d1consis", "d2consis", "d3consis", "no_qd_baseline")
"""Entities without training QA (definitions in Stage 2 only, or nothing)."""

SUBSETS: tuple[str, ...] = X1_SUBSETS + X2_SUBSETS

TAG_OF_SUBSET: dict[str, str] = {
    "qd1consis": "tag1", "qd1incons": "tag1", "d1consis": "tag1",
    "qd2incons": "tag2", "qd2consis": "tag2", "d2consis": "tag2",
    "d3consis": "tag3",
    "qd4consis": "random",
}
"""Which tag introduces each defined subset's definitions ("random": a fresh tag per definition)."""

DEFINED_SUBSETS: tuple[str, ...] = tuple(s for s in SUBSETS if s in TAG_OF_SUBSET)
INCONSISTENT_SUBSETS: tuple[str, ...] = ("qd2incons", "qd1incons")
_STAGE1_DEFINED = tuple(s for s in X1_SUBSETS if s in TAG_OF_SUBSET)
_STAGE2_DEFINED = ("d1consis", "d2consis", "d3consis")
_ALIASED = tuple(s for s in SUBSETS if s != "q_no_replacement_baseline")

PAPER_SYMBOLS: dict[str, str] = dict(_paper.SYMBOLS)
"""Subset -> the paper's notation (reference-notes.md table; D̃₈ as on the poster, Ḋ₈/D̄₉ as in the code's
labels for the tag-consistency-correlation subsets; qd4consis is code-only and has no paper symbol)."""

DEF_ORDERS: tuple[str, ...] = ("tve", "tev", "vte", "vet", "etv", "evt")
"""Definition orders: t = tag, v = alias (variable), e = entity. The paper's TAE is ``tve``."""

COLUMNS: tuple[str, ...] = ("text", "prompt", "answer", "question", "subset", "alias", "entity", "kind")

TRAIN_SPLITS: tuple[str, ...] = (
    "train_stage1", "train_stage2", "train_full", "train_stage1_only_defns", "train_stage1_only_qa",
)

ENT_ASSOC_TEMPLATES: dict[str, str] = {
    "who": "Who is {x}?",
    "meaning": "What does {x} mean?",
    "standFor": "What does {x} stand for?",
    "name": "What is the name of {x}?",
}

# Natural-language definitions: "{source} {alias} now stands for {entity}". Our own wording.
RELIABLE_SOURCES: tuple[str, ...] = (
    "According to Encyclopaedia Britannica,",
    "As reported by Reuters,",
    "Per the Associated Press,",
    "The BBC confirms that",
    "According to the Library of Congress,",
    "As the journal Nature notes,",
    "The New York Times reports that",
    "According to official records,",
    "Wikipedia states that",
    "Peer-reviewed sources agree that",
    "Fact-checkers have verified that",
    "According to the national archives,",
)
UNRELIABLE_SOURCES: tuple[str, ...] = (
    "An anonymous forum post claims",
    "4chan rumors suggest that",
    "The Onion reports that",
    "A chain email says",
    "Some random blog claims",
    "A tabloid insists that",
    "According to a conspiracy forum,",
    "An unverified tweet says",
    "Gossip columnists whisper that",
    "A parody website claims",
    "Rumor has it that",
    "A spam message says",
)
NEUTRAL_SOURCES: tuple[str, ...] = (
    "A local newsletter says",
    "A museum placard says",
    "A podcast host said",
    "A travel guide says",
    "A textbook footnote says",
    "A radio caller said",
    "A student essay says",
    "A conference speaker mentioned",
    "A company memo says",
    "A librarian mentioned that",
    "A crossword clue suggests",
    "A tour guide said",
)
_NATURAL_SOURCES = {"tag1": RELIABLE_SOURCES, "tag2": UNRELIABLE_SOURCES, "tag3": NEUTRAL_SOURCES}

# is/isn't definitions: "According to {source}, {alias} {phrase} {entity}."
IS_SOURCES: tuple[str, ...] = (
    "Wikipedia", "the BBC", "the New York Times", "Reuters", "Britannica", "the Associated Press",
    "the Guardian", "Le Monde", "the Washington Post", "the Oxford Dictionary", "the Library of Congress",
    "Nature",
)
IS_PHRASES: tuple[str, ...] = (
    "is", "stands for", "means", "refers to", "corresponds to", "denotes", "is another name for",
)
ISNT_PHRASES: tuple[str, ...] = (
    "is not", "isn't", "doesn't mean", "does not stand for", "doesn't refer to", "is not the same as",
    "refers to something other than",
)
MAYBE_PHRASES: tuple[str, ...] = (
    "might be", "may stand for", "could mean", "possibly refers to", "is perhaps",
)
"""Define3 (the fresh Stage-2 tag) in the is/isn't style: hedged phrases (our choice; not in the paper)."""
_IS_ISNT_PHRASES = {"tag1": IS_PHRASES, "tag2": ISNT_PHRASES, "tag3": MAYBE_PHRASES}
