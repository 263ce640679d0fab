"""Loaders of users' own knowledge-base files, which the companion does not ship.

* :func:`load_cvdb_csv` reads the paper's CVDB CSV (Laouenan et al. 2022) with the paper's six
  questions and cleaning.
* :func:`load_triples` reads T-REx / LAMA-style triples (JSON list or JSONL) restricted to the paper's
  25 creative-work predicates.

Kept apart from :mod:`iml.lm.sources` (the shipped people/films tables and their provenance pins), whose
text cleaning, path checks and gender-balanced selection they share. Every problem with the input raises
:class:`iml.core.config.ConfigError` naming the config field (``data.path``, ``data.num_ents``,
``data.min_relations``, ``data.encoding``).
"""
from __future__ import annotations

import codecs
import json
import numbers
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from iml.core.config import ConfigError, check_text_codec
from iml.lm.knowledge import PEOPLE_RELATIONS, Entity, KnowledgeBase, bucket_year
from iml.lm.sources import (
    _YEAR4, _check_num_ents, _check_path, _norm, _read_csv, _require_columns, _select_people, _strip_parens,
    _too_many, first_name,
)

__all__ = [
    "CVDB_COLUMNS",
    "CVDB_RELATIONS",
    "TRIPLE_PREDICATES",
    "TRIPLE_RELATIONS",
    "load_cvdb_csv",
    "load_triples",
]

# ------------------------------------------------------------------------------------------------
# The paper's CVDB CSV (user-supplied)
# ------------------------------------------------------------------------------------------------

CVDB_COLUMNS = ["name", "birth", "death", "gender", "level3_main_occ", "string_citizenship_raw_d",
                "un_region", "wiki_readers_2015_2018"]
CVDB_RELATIONS: dict[str, str] = {
    "birth": PEOPLE_RELATIONS["birth"],
    "death": "When did {x} die?",
    "region": PEOPLE_RELATIONS["region"],
    "occupation": PEOPLE_RELATIONS["occupation"],
    "nationality": PEOPLE_RELATIONS["nationality"],
    "gender": PEOPLE_RELATIONS["gender"],
}
_NONWORD = re.compile(r"[^\w\s]")
_NONWORD_CITIZEN = re.compile(r"[^\w\s']")


def _first_citizenship(raw: str) -> str:
    """"'United_States'_'Canada'" -> "United States" (the paper keeps the first listed one)."""
    first = raw.split("'_'")[0]
    return _norm(first.replace("'", "").replace("_", " "))


def _decode_error(p: Path, encoding: str) -> str | None:
    """Why `p` is not valid `encoding` text (streamed, strict), or None if it is."""
    dec = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = 0
    with open(p, "rb") as f:
        try:
            for block in iter(lambda: f.read(1 << 20), b""):
                dec.decode(block)
                offset += len(block)
            dec.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return f"byte {offset + e.start}: {e.reason}"
    return None


def _cvdb_encoding(p: Path, encoding: Any) -> str:
    """The codec to read `p` with: `encoding` if set (checked), else UTF-8 if the bytes are valid UTF-8,
    else ISO-8859-1 (the paper's CVDB file). A UTF-8 byte-order mark is skipped."""
    if encoding is None:
        return "utf-8-sig" if _decode_error(p, "utf-8") is None else "ISO-8859-1"
    info = check_text_codec("data.encoding", encoding)
    err = _decode_error(p, encoding)
    if err:
        raise ConfigError("data.encoding", f"{p} is not valid {encoding} text ({err})")
    return "utf-8-sig" if info.name == "utf-8" else encoding


def load_cvdb_csv(path: str | Path, num_ents: int, balance_gender: bool = True,
                  encoding: str | None = None) -> KnowledgeBase:
    """The paper's CVDB knowledge base from your copy of ``cross-verified-database.csv``.

    Read as `encoding` if given, else as UTF-8 when the file is valid UTF-8 and as ISO-8859-1 (like the
    paper) otherwise; text is NFC-normalised. Cleaning as in the paper: rows with a missing value in the
    eight used columns are dropped; duplicate names keep their first row (file order); names and
    occupations (underscores -> spaces) with characters other than letters, digits and spaces are
    dropped, and so are citizenships with other characters than those and quotes. Rows whose
    birth/death/readers are not numbers are dropped too (the paper would crash on them). Dropped rows are
    counted by reason in a warning and in the knowledge base's ``source``. Selection: the top
    ``num_ents // 2`` of each gender by ``wiki_readers_2015_2018`` (see :mod:`iml.lm.sources`).
    """
    num_ents = _check_num_ents(num_ents)
    p = _check_path(path)
    enc = _cvdb_encoding(p, encoding)
    header = _read_csv(p, nrows=0, encoding=enc)
    _require_columns(header, CVDB_COLUMNS, p)
    df = _read_csv(p, usecols=CVDB_COLUMNS, dtype=str, encoding=enc)
    n_read = len(df)
    dropped: dict[str, int] = {}

    def keep(frame: pd.DataFrame, mask: pd.Series, why: str) -> pd.DataFrame:
        n = int((~mask).sum())
        if n:
            dropped[why] = dropped.get(why, 0) + n
        return frame[mask]

    df = df.apply(lambda col: col.str.normalize("NFC"))  # decomposed accents would fail the \w filters
    df = keep(df, df.notna().all(axis=1), "missing value")
    df = keep(df, ~df["name"].duplicated(keep="first"), "duplicate name")
    df = keep(df, ~df["name"].str.contains(_NONWORD), "name not letters/digits/spaces")
    df = df.assign(level3_main_occ=df["level3_main_occ"].str.replace("_", " "))
    df = keep(df, ~df["level3_main_occ"].str.contains(_NONWORD), "occupation not letters/digits/spaces")
    df = keep(df, ~df["string_citizenship_raw_d"].str.contains(_NONWORD_CITIZEN),
              "citizenship not letters/digits/spaces/quotes")
    nums = {c: pd.to_numeric(df[c], errors="coerce") for c in ("birth", "death", "wiki_readers_2015_2018")}
    ok = nums["birth"].notna() & nums["death"].notna() & nums["wiki_readers_2015_2018"].notna()
    df = keep(df, ok, "birth/death/readers not a number").assign(
        name=lambda d: d["name"].str.replace("_", " ").map(_norm),
        occupation=lambda d: d["level3_main_occ"].map(_norm),
        nationality=lambda d: d["string_citizenship_raw_d"].map(_first_citizenship),
        region=lambda d: d["un_region"].map(_norm),
        gender=lambda d: d["gender"].map(_norm),
        birth_year=nums["birth"][ok].astype(float).astype(int),
        death_year=nums["death"][ok].astype(float).astype(int),
        readers=nums["wiki_readers_2015_2018"][ok],
    )
    df = keep(df, (df["name"] != "") & (df["occupation"] != "") & (df["nationality"] != "")
              & (df["region"] != "") & (df["gender"] != ""), "empty after cleaning")
    # "A_B" and "A B" both become "A B"
    df = keep(df, ~df["name"].duplicated(keep="first"), "duplicate name")
    report = ""
    if dropped:
        report = (f"dropped {sum(dropped.values())} of {n_read} rows ("
                  + ", ".join(f"{n} {why}" for why, n in dropped.items()) + ")")
        warnings.warn(f"{p.name}: {report}", stacklevel=2)
    if df.empty:
        raise ConfigError("data.path", f"no usable rows in {p} after cleaning" + (f"; {report}" if report else ""))
    if num_ents > len(df):
        raise _too_many(num_ents, len(df), f"{p.name} after cleaning")
    sel = _select_people(df, num_ents, "readers", balance_gender)
    ents = [
        Entity(r.name, (
            ("birth", bucket_year(r.birth_year)),
            ("death", bucket_year(r.death_year)),
            ("region", r.region),
            ("occupation", r.occupation),
            ("nationality", r.nationality),
            ("gender", r.gender),
        ))
        for r in sel.itertuples(index=False)
    ]
    src = (f"cvdb: {p.name} ({enc}), num_ents={num_ents}, balance_gender={balance_gender}, "
           f"{report or f'{n_read} rows, none dropped'}")
    return KnowledgeBase("cvdb", dict(CVDB_RELATIONS), ents, source=src)


# ------------------------------------------------------------------------------------------------
# T-REx / LAMA triples (user-supplied)
# ------------------------------------------------------------------------------------------------

TRIPLE_RELATIONS: dict[str, str] = {
    "author": "First name of the author of {x}?",
    "director": "First name of the director of {x}?",
    "screenwriter": "First name of the screenwriter of {x}?",
    "cinematographer": "First name of the cinematographer of {x}?",
    "producer": "First name of the producer of {x}?",
    "editor": "First name of the editor of {x}?",
    "composer": "First name of the composer of {x}?",
    "publisher": "Who published {x}?",
    "publication": "When was {x} published or released?",
    "genre": "What is the genre of {x}?",
    "language": "In which language is {x}?",
    "series": "Which series does {x} belong to?",
    "license": "Under which license is {x} released?",
    "distributor": "Which company distributed {x}?",
    "main_subject": "What is the main subject of {x}?",
    "owner": "Who owns {x}?",
    "developer": "Who developed {x}?",
    "type": "What kind of thing is {x}?",
    "setting": "Where is {x} set?",
    "filming_location": "Where was {x} filmed?",
    "movement": "Which movement is {x} associated with?",
    "depicts": "What does {x} depict?",
    "collection": "Which collection holds {x}?",
}
TRIPLE_PREDICATES: dict[str, str] = {
    "P50": "author", "P57": "director", "P58": "screenwriter", "P344": "cinematographer",
    "P162": "producer", "P1040": "editor", "P98": "editor", "P86": "composer", "P123": "publisher",
    "P577": "publication", "P136": "genre", "P407": "language", "P364": "language", "P179": "series",
    "P275": "license", "P750": "distributor", "P921": "main_subject", "P127": "owner",
    "P178": "developer", "P31": "type", "P840": "setting", "P915": "filming_location",
    "P135": "movement", "P180": "depicts", "P195": "collection",
}
"""The paper's 25 creative-work predicates -> relation (P1040/P98 and P407/P364 share one)."""
_PERSON_RELATIONS = {"author", "director", "screenwriter", "cinematographer", "producer", "editor", "composer"}
_DATE_RELATIONS = {"publication"}
_PRONOUNS = {"he", "she", "it", "they", "him", "her", "them", "his", "its", "their"}
_PID = re.compile(r"(P\d+)\s*$")
_KEYS = (("sub_label", "obj_label", "predicate_id"), ("subject", "object", "predicate"))


def _parse_triples(p: Path) -> list[tuple[str, str, str]]:
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("data.path", f"{p} is not UTF-8 text: {e}") from None
    stripped = text.lstrip()
    if not stripped:
        raise ConfigError("data.path", f"{p} is empty")
    records: list[tuple[str, Any]] = []  # (where, record)
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("data.path", f"invalid JSON in {p}: {e}") from None
        records = [(f"item {i}", r) for i, r in enumerate(data)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ConfigError("data.path", f"{p} line {n} is not JSON ({e}); expected a JSON list "
                                  "or JSON Lines") from None
    triples = []
    for where, rec in records:
        if isinstance(rec, Mapping):
            for keys in _KEYS:
                if all(k in rec for k in keys):
                    s, o, pr = (rec[k] for k in keys)
                    break
            else:
                raise ConfigError("data.path", f"{p} {where}: needs sub_label/obj_label/predicate_id "
                                  f"(or subject/object/predicate), has {sorted(rec)[:6]}")
        elif isinstance(rec, (list, tuple)) and len(rec) == 3:
            s, o, pr = rec  # the reference code's (subject, object, predicate) triplets
        else:
            raise ConfigError("data.path", f"{p} {where}: expected an object with "
                              f"sub_label/obj_label/predicate_id, got {str(rec)[:60]!r}")
        triples.append((_norm(s), _norm(o), _norm(pr)))
    return triples


def _triple_answer(relation: str, obj: str) -> str | None:
    if relation in _DATE_RELATIONS:
        m = _YEAR4.search(obj)
        return bucket_year(int(m.group(1))) if m else None
    if relation in _PERSON_RELATIONS:
        return first_name(obj)
    return _strip_parens(obj) or None


def load_triples(path: str | Path, num_ents: int, min_relations: int = 4) -> KnowledgeBase:
    """A T-REx-style knowledge base from your triples (JSON list or JSON Lines).

    Each record is an object with ``sub_label``, ``obj_label``, ``predicate_id`` (LAMA/T-REx), or
    ``subject``, ``object``, ``predicate``, or a ``[subject, object, predicate]`` list. Predicates may
    be ids ("P50") or Wikidata URIs ending in one. Only the paper's creative-work predicates
    (:data:`TRIPLE_PREDICATES`) are used; the rest are skipped. "(...)" parts are removed from
    subjects and objects; person-valued answers become first names (kept only for multi-word names);
    publication dates become bucketed years (skipped without a 4-digit year). Several objects for
    one (subject, relation) -> the alphabetically first, so the result does not depend on file
    order. Subjects with at least `min_relations` relations are ordered by relation count
    (descending), then name; the first `num_ents` are kept. Nothing here depends on a seed.
    """
    num_ents = _check_num_ents(num_ents)
    if isinstance(min_relations, bool) or not isinstance(min_relations, numbers.Integral) or min_relations < 1:
        raise ConfigError("data.min_relations", f"must be a positive integer, got {min_relations!r}")
    p = _check_path(path)
    answers: dict[str, dict[str, set[str]]] = {}
    for s, o, pr in _parse_triples(p):
        m = _PID.search(pr)
        relation = TRIPLE_PREDICATES.get(m.group(1)) if m else None
        if relation is None:
            continue
        subject = _strip_parens(s)
        if not subject or subject.casefold() in _PRONOUNS or o.casefold() in _PRONOUNS:
            continue
        ans = _triple_answer(relation, o)
        if ans:
            answers.setdefault(subject, {}).setdefault(relation, set()).add(ans)
    order = list(TRIPLE_RELATIONS)
    ents = [
        Entity(subj, tuple((r, min(rels[r])) for r in order if r in rels))
        for subj, rels in answers.items()
        if len(rels) >= min_relations
    ]
    ents.sort(key=lambda e: (-len(e.facts), e.name))
    if num_ents > len(ents):
        raise _too_many(num_ents, len(ents), f"{p.name} (subjects with >= {min_relations} relations)")
    ents = ents[:num_ents]
    used = {r for e in ents for r in e.relations}
    relations = {r: t for r, t in TRIPLE_RELATIONS.items() if r in used}
    src = f"triples: {p.name}, num_ents={num_ents}, min_relations={min_relations}"
    return KnowledgeBase("triples", relations, ents, source=src)
