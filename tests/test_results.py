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
    assert st.unit_extra("u0") == {"git_revision": "rev-a"}
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
