"""`iml verify`: recompute sampled units of a result and compare (smoke-scale MNIST results in a tmp root)."""
import hashlib
import json
import shutil

import pandas as pd
import pytest

from iml import cli
from iml.mnist import experiment as mx
from iml.mnist import grid as M
from iml import verify as V
from iml.core.config import ConfigError
from iml.core.results import add_checksums


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Two finished smoke results: one unit of two seeds, and two units of one seed each."""
    root = tmp_path_factory.mktemp("committed")
    one = mx.run(M.make_config("smoke", {"device": "cpu"}), root=root, progress=False).dir
    two = mx.run(M.make_config("smoke", {"device": "cpu", "group_size": 1}), root=root, progress=False).dir
    return one, two


@pytest.fixture
def result(built, tmp_path):
    """A private copy of the one-unit result (tests tamper with it)."""
    dst = tmp_path / "results" / "mnist" / built[0].name
    shutil.copytree(built[0], dst)
    return dst


def _digest(d):
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


def _tamper(d, select, change):
    """Apply `change` to the value of the rows `select` picks, in results.csv and the unit file alike, and record
    the new files' checksums (as if other code had computed them: an unrecorded edit is refused on load)."""
    hit = 0
    for p in [d / "results.csv", *sorted((d / "units").glob("*.csv"))]:
        t = pd.read_csv(p)
        m = select(t)
        if m.any():
            hit += 1
            t.loc[m, "value"] = change(t.loc[m, "value"])
            t.to_csv(p, index=False)
    assert hit >= 2  # results.csv and a unit
    add_checksums(d)


def test_same_machine_is_bitwise_equal_and_leaves_the_result_alone(result, tmp_path, capsys):
    before = _digest(result)
    out = tmp_path / "report.json"
    assert cli.main(["verify", str(result), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith(f"mnist/{result.name}: BITWISE EQUAL")
    rep = json.loads(out.read_text())
    assert rep["outcome"] == V.BITWISE and rep["units_checked"] == ["seeds0-1"]
    assert rep["values"]["n"] > 0 and rep["values"]["n_differ"] == 0 and rep["values"]["max_abs_diff"] == 0
    assert rep["gaps"] and all(g["same_status"] and g["overlap"] for g in rep["gaps"])
    assert rep["committed"]["cpu_capability"] != "unknown" and rep["verify"]["cpu_capability"]
    assert _digest(result) == before  # nothing written into the committed folder


def test_small_change_is_statistically_the_same(result):
    # def_acc is in no verdict gap, so the gaps cannot move; the recomputed values differ from the committed.
    def sel(t):
        return (t.metric == "def_acc") & (t.seed_stage1 == 0) & (t.subset == "d1consis") & (t.epoch == 0)

    _tamper(result, sel, lambda v: v + 1e-3)
    rep = V.verify(result, units=1)
    assert rep["outcome"] == V.STATISTICAL and rep["exit_code"] == 0
    assert rep["values"]["n_differ"] == 1 and rep["values"]["max_abs_diff"] == pytest.approx(1e-3)
    assert rep["results_csv_matches_units"]


def test_a_flipped_gap_is_a_different_verdict(result, capsys):
    end = pd.read_csv(result / "results.csv").epoch.max()
    for subset, v in (("d1consis", 0.0), ("d2consis", 1.0)):
        _tamper(result, lambda t, s=subset: (t.metric == "acc") & (t.subset == s) & (t.epoch == end),
                lambda x, v=v: x * 0 + v)
    assert cli.main(["verify", str(result)]) == 1
    assert "VERDICT DIFFERS" in capsys.readouterr().out.splitlines()[0]
    rep = V.verify(result)
    g = rep["gaps"][0]
    assert g["committed"]["gap"] == -1 and g["committed"]["status"] == "below 0"
    assert g["recomputed"]["status"] != "below 0" and not g["overlap"]


def test_other_rows_are_reported(result):
    for p in [result / "results.csv", result / "units" / "seeds0-1.csv"]:
        t = pd.read_csv(p)
        t.iloc[:-1].to_csv(p, index=False)
    add_checksums(result)
    rep = V.verify(result)
    assert rep["outcome"] == V.ROWS and rep["exit_code"] == 1


def test_only_the_sampled_units_are_recomputed(built, tmp_path):
    src = built[1]
    units = json.loads((src / "meta.json").read_text())["units"]
    assert units == ["seeds0-0", "seeds1-1"]
    d = tmp_path / "results" / "mnist" / src.name
    shutil.copytree(src, d)
    pick = V.sample_units(units, 1, seed=0)
    assert pick == V.sample_units(units, 1, seed=0) and len(pick) == 1
    assert {tuple(V.sample_units(units, 1, seed=s)) for s in range(20)} == {(u,) for u in units}
    other = next(u for u in units if u not in pick)
    # a tampered unit that is not sampled is copied, not recomputed: no value differs in the sampled one
    _tamper(d, lambda t: (t.metric == "def_acc") & (t.run_id == f"s{other[-1]}_0"), lambda v: v + 1e-3)
    root = tmp_path / "work"
    rep = V.verify(d, units=1, seed=0, root=root)
    assert rep["units_checked"] == pick and rep["values"]["n_differ"] == 0
    assert rep["outcome"] == V.BITWISE
    kept = pd.read_csv(root / "mnist" / src.name / "units" / f"{other}.csv")
    assert kept.equals(pd.read_csv(d / "units" / f"{other}.csv"))
    assert V.verify(d, units=None)["units_checked"] == units  # all: the tampered one now differs
    with pytest.raises(ConfigError, match="already exists"):  # a used root is refused
        V.verify(d, units=1, root=root)


@pytest.mark.parametrize("units", ["0", "-1", "x", "1.5"])
def test_bad_units_exit_2(result, units, capsys):
    assert cli.main(["verify", str(result), "--units", units]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--units" in err


def test_bad_folders_exit_2(result, tmp_path, capsys):
    unknown = tmp_path / "elsewhere" / "nope" / result.name
    shutil.copytree(result, unknown)
    empty = tmp_path / "empty"
    empty.mkdir()
    for d, says in ((tmp_path / "missing", "no such folder"), (empty, "not a finished result folder"),
                    (unknown, "unknown experiment 'nope'")):
        assert cli.main(["verify", str(d)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def test_verdict_gaps_per_experiment():
    t = pd.DataFrame({"stage": ["init", "stage1", "stage1", "stage2"], "epoch": [0, 5, 10, 12]})
    main = V.verdict_gaps("main", {}, t)
    assert len(main) >= 4 and {g["epoch"] for g in main if g["a"] == "qd1consis"} == {10.0}
    assert all(g["epoch"] is None for g in main if g["a"] == "d1consis")
    ga = V.verdict_gaps("gradalign", {"task": {"stage1_epochs": 7}}, t)
    assert ga[0]["metric"] == "grad_cos_change" and ga[0]["epoch"] == 7 and ga[0]["view"] == "gradalign"
    pr = V.verdict_gaps("probe", {"task": {"stage1_epochs": 7}}, t)
    assert {g["b"] for g in pr} >= {f"probe_{layer}_shuffled" for layer in M.LAYERS}


@pytest.mark.parametrize("name,overrides", [
    ("gradalign", {"task.device": "cpu"}),
    ("setinclusion", {}),
    ("main", {"data.num_ents": 24, "stages.0.epochs": 2, "stages.1.epochs": 1, "seeds.n_stage1": 2,
              "eval.sets": ["test_d1consis", "test_d2consis", "test_qd1consis", "test_qd2incons"]}),
])
def test_other_engines_recompute_bitwise(name, overrides, results_root):
    from iml import registry

    mod = registry.get(name)
    res = mod.run(mod.make_config("smoke", overrides), root=results_root, progress=False)
    rep = V.verify(res.dir, units=1)
    assert rep["outcome"] == V.BITWISE and rep["values"]["n"] > 0 and len(rep["units_checked"]) == 1
    assert any("ci_low" in g["committed"] for g in rep["gaps"])  # at least one verdict gap was computed
