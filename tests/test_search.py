"""The exploratory search (iml.scratch.search): every step on the exploratory seeds only, the table lists every step
tried (unfinished ones too), and a confirmation can only run on seeds the search never used."""
import pytest

from iml import cli
from iml.core.config import ConfigError
from iml.scratch import search
from iml.scratch import set_inclusion as si


def test_every_step_uses_the_exploratory_seeds_and_the_cpu_preset():
    for step, cfg in zip(search.TRIED, search.configs("search")):
        assert (cfg.start_seed, cfg.n_seeds) == (search.EXPLORATORY["start_seed"], search.EXPLORATORY["n_seeds"])
        base = si.make_config("cpu")
        changed = {k for k in vars(cfg) if getattr(cfg, k) != getattr(base, k)}
        assert changed <= set(step.overrides) | set(search.EXPLORATORY), step.label


def test_the_table_shows_every_step_tried_even_unfinished(tmp_path, monkeypatch):
    t = search.search_table(tmp_path)
    assert list(t["configuration"]) == [s.label for s in search.TRIED]
    assert set(t["IML gap [95% CI]"]) == {"not run yet"}
    monkeypatch.setattr(search, "BASE", "smoke")  # a two-step search at smoke scale, one step run
    monkeypatch.setattr(search, "EXPLORATORY", {"start_seed": 1000, "n_seeds": 2, "seeds_per_unit": 2})
    monkeypatch.setattr(search, "TRIED", [search.Step("a", {"n_train_true": 1}, "x"), search.Step("b", {}, "y")])
    search.run_sweep("search", points=[0], root=tmp_path, progress=False)
    t = search.search_table(tmp_path)
    assert list(t["seeds"]) == [2, ""] and t["IML gap [95% CI]"].iloc[1] == "not run yet"
    assert t["IML gap [95% CI]"].iloc[0].startswith(("+", "-"))


def test_a_confirmation_needs_a_preregistration_on_fresh_seeds(monkeypatch):
    monkeypatch.setattr(search, "PREREGISTERED", None)
    with pytest.raises(ConfigError, match="pre-registered"):
        search.configs("confirm")
    monkeypatch.setattr(search, "PREREGISTERED", {"step": search.TRIED[0].label, "hypothesis": "gap > 0",
                                                  "seeds": {"start_seed": 1005, "n_seeds": 20}})
    with pytest.raises(ConfigError, match="overlap"):
        search.configs("confirm")
    monkeypatch.setattr(search, "PREREGISTERED", {"step": search.TRIED[0].label, "hypothesis": "gap > 0",
                                                  "seeds": {"start_seed": 5000, "n_seeds": 20}})
    (cfg,) = search.configs("confirm")
    assert (cfg.start_seed, cfg.n_seeds) == (5000, 20)


def test_a_step_reads_stage1_and_the_gap_at_the_end_of_each_stage(tmp_path):
    res = si.run(si.make_config("smoke", {"n_train_true": 1, "n_train_false": 1}), root=tmp_path, progress=False)
    r = search.row(res)
    assert r["n_seeds"] == 2 and r["ci"][0] <= r["gap"] <= r["ci"][1]
    assert 0 <= r["d1consis"] <= 1 and 0 <= r["qd1consis"] <= 1
    # fewer training questions means fewer Stage-1 documents, and a different config
    full = si.make_config("smoke")
    assert search.cost(full) > search.cost(si.make_config("smoke", {"n_train_true": 1, "n_train_false": 1}))


def test_the_command_line_refuses_a_confirmation_before_preregistration(capsys, monkeypatch):
    monkeypatch.setattr(search, "PREREGISTERED", None)
    assert cli.main(["sweep", "search", "--sweep", "confirm"]) == 2
    assert "pre-registered" in capsys.readouterr().err


def test_claim_7_is_judged_on_the_confirmation_once_it_has_run(monkeypatch, tmp_path):
    from iml import registry
    from iml.report import claims

    res = si.run(si.make_config("smoke"), root=tmp_path, progress=False)
    study = registry.STUDIES["setinclusion"]
    monkeypatch.setattr(search, "PREREGISTERED", {"step": search.TRIED[0].label, "hypothesis": "gap > 0",
                                                  "seeds": {"start_seed": 5000, "n_seeds": 20}})
    monkeypatch.setattr(search, "finished", lambda sweep, root=None, points=None: [res] if sweep == "confirm" else None)
    found = study.find([tmp_path])
    assert found == ("pre-registered confirmation", res)
    row = claims.claims_table({"setinclusion": found}).set_index("#").loc[7]
    assert row["this book"].startswith("pre-registered confirmation") and "5000-5019" in row["this book"]
    assert row["status"] == "too few seeds"  # the smoke result has 2 seeds
    monkeypatch.setattr(search, "PREREGISTERED", None)
    assert study.find([tmp_path]) is None or study.find([tmp_path])[0] != "pre-registered confirmation"


def test_the_page_reports_the_confirmation_whatever_it_shows(monkeypatch, tmp_path):
    res = si.run(si.make_config("smoke", {"start_seed": 5000}), root=tmp_path, progress=False)
    monkeypatch.setattr(search, "PREREGISTERED", {"step": search.TRIED[0].label, "hypothesis": "gap > 0",
                                                  "seeds": {"start_seed": 5000, "n_seeds": 2}})
    monkeypatch.setattr(search, "finished", lambda sweep, root=None, points=None: None)
    assert "Not run yet" in search.confirmation_note(tmp_path)
    monkeypatch.setattr(search, "finished", lambda sweep, root=None, points=None: [res])
    note = search.confirmation_note(tmp_path)
    assert "Pre-registered confirmation" in note and "too few seeds" in note  # 2 seeds: no verdict
    assert "IML gap" in note and "[" in note
