"""Result files: atomic, complete, hash-checked, resumable."""
import json

import pandas as pd
import pytest

from iml.core import files
from iml.core import results
from iml.core.results import COLUMNS, ResultStore, StaleResultError


def _unit_table(seed, value=0.5):
    return pd.DataFrame([[f"s{seed}", seed, 0, 1, 1, "d1consis", "EM", value]], columns=COLUMNS)


def test_store_roundtrip(results_root):
    cfg = {"a": 1, "b": {"c": [1, 2]}}
    st = ResultStore("exp", cfg, root=results_root)
    assert not st.unit_done("u0")
    st.save_unit("u0", _unit_table(0), extra={"wall_time_s": 1.5})
    st.save_unit("u1", _unit_table(1, 0.7))
    assert st.done_units() == ["u0", "u1"]
    st.finalize(["u0", "u1"], meta={"note": "test"})
    r = results.load("exp", cfg, root=results_root)
    assert list(r.table.columns) == COLUMNS
    assert r.table["value"].tolist() == [0.5, 0.7]
    assert r.meta["note"] == "test" and r.meta["config_hash"] == st.hash
    assert "git_revision" in r.meta and "environment" in r.meta
    assert r.meta["unit_wall_time_s"]["u0"] == 1.5
    # no temp files left behind
    assert not [p for p in st.dir.rglob("*.tmp")]


def test_load_refuses_other_config(results_root):
    st = ResultStore("exp", {"a": 1}, root=results_root)
    st.save_unit("u0", _unit_table(0))
    st.finalize(["u0"])
    with pytest.raises(FileNotFoundError, match="config hash"):
        results.load("exp", {"a": 2}, root=results_root)


def test_units_record_the_revision_that_computed_them(results_root, monkeypatch):
    st = ResultStore("exp", {"a": 5}, root=results_root)
    monkeypatch.setenv("IML_GIT_REVISION", "rev-a")
    st.save_unit("u0", _unit_table(0))
    monkeypatch.setenv("IML_GIT_REVISION", "rev-b")
    st.save_unit("u1", _unit_table(1), {"git_revision": "rev-kept", "wall_time_s": 2.0})
    st.save_unit("u2", _unit_table(2))
    assert st.unit_extra("u0")["git_revision"] == "rev-a"
    r = results.load_dir(st.finalize(["u0", "u1", "u2"]))
    assert r.meta["unit_git_revisions"] == {"u0": "rev-a", "u1": "rev-kept", "u2": "rev-b"}
    assert r.meta["git_revision"] == "rev-b"


def test_load_of_an_unfinished_run_says_it_can_resume(results_root):
    st = ResultStore("exp", {"a": 3}, root=results_root)
    st.save_unit("u0", _unit_table(0))
    with pytest.raises(FileNotFoundError, match=r"holds 1 finished unit\(s\) of an unfinished run"):
        results.load("exp", {"a": 3}, root=results_root)
    with pytest.raises(FileNotFoundError, match="run it first"):
        results.load("exp", {"a": 4}, root=results_root)


def test_load_refuses_stale_config(results_root):
    st = ResultStore("exp", {"a": 1}, root=results_root)
    st.save_unit("u0", _unit_table(0))
    st.finalize(["u0"])
    # someone edits the stored config by hand: the folder no longer matches its content
    (st.dir / "config.json").write_text(json.dumps({"a": 3}))
    with pytest.raises(StaleResultError):
        results.load("exp", {"a": 1}, root=results_root)


def test_finalize_needs_all_units(results_root):
    st = ResultStore("exp", {"a": 1}, root=results_root)
    st.save_unit("u0", _unit_table(0))
    with pytest.raises(RuntimeError, match="u1"):
        st.finalize(["u0", "u1"])
    assert not (st.dir / "results.csv").exists()


def test_bad_table_is_rejected(results_root):
    st = ResultStore("exp", {"a": 1}, root=results_root)
    with pytest.raises(ValueError, match="lacks columns"):
        st.save_unit("u0", pd.DataFrame({"value": [1.0]}))
    assert not st.unit_done("u0")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    files.write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(p.read_text()) == {"v": 1}
    assert list(tmp_path.iterdir()) == [p]


def test_bad_unit_ids(results_root):
    st = ResultStore("exp", {"a": 1}, root=results_root)
    for bad in ["", "../x", "a/b", ".hidden"]:
        with pytest.raises(ValueError):
            st.unit_path(bad)


# -- tamper evidence: every file's sha256 is recorded when it is written and checked when it is read -------------

def _finished(results_root, a=7):
    st = ResultStore("exp", {"a": a}, root=results_root)
    for i in range(3):
        st.save_unit(f"u{i}", _unit_table(i))
    st.finalize(["u0", "u1", "u2"])
    return st


def test_an_edited_results_csv_is_refused(results_root):
    st = _finished(results_root)
    p = st.dir / "results.csv"
    p.write_text(p.read_text().replace("0.5", "1.0", 1))
    with pytest.raises(results.CorruptResultError, match="results.csv: its sha256 .* edited or truncated"):
        results.load("exp", {"a": 7}, root=results_root)
    with pytest.raises(results.CorruptResultError):
        results.load_dir(st.dir)


def test_a_truncated_unit_is_not_finalized(results_root):
    st = ResultStore("exp", {"a": 8}, root=results_root)
    for i in range(2):
        st.save_unit(f"u{i}", _unit_table(i))
    p = st.unit_path("u1")
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")  # one row lost
    with pytest.raises(results.CorruptResultError, match=r"u1.csv: its sha256"):
        st.finalize(["u0", "u1"])
    assert not (st.dir / "results.csv").exists()


def test_a_unit_whose_json_was_never_written_is_not_done(results_root):
    """A kill between the unit's table and its .json: the unit is computed again, not finalized unchecked."""
    st = ResultStore("exp", {"a": 9}, root=results_root)
    st.save_unit("u0", _unit_table(0))
    st.unit_path("u0").with_suffix(".json").unlink()
    assert not st.unit_done("u0") and st.done_units() == []


def test_results_csv_without_meta_is_named(results_root):
    st = _finished(results_root, a=10)
    (st.dir / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="has results.csv but no meta.json"):
        results.load("exp", {"a": 10}, root=results_root)


def test_meta_records_every_file_checksum(results_root):
    st = _finished(results_root, a=11)
    sums = json.loads((st.dir / "meta.json").read_text())["sha256"]
    assert set(sums) == {"results.csv", "config.json", "units/u0.csv", "units/u1.csv", "units/u2.csv"}
    assert sums["units/u1.csv"] == files.sha256_file(st.unit_path("u1")) == st.unit_extra("u1")["sha256"]


def test_every_committed_result_carries_checksums_that_hold():
    found = sorted(files.RESULTS_DIR.glob("*/*/meta.json"))
    assert len(found) > 40
    for meta in found:
        r = results.load_dir(meta.parent)  # verifies results.csv and config.json
        for u in r.meta["units"]:
            assert r.meta["sha256"][f"units/{u}.csv"] == files.sha256_file(meta.parent / "units" / f"{u}.csv"), u
