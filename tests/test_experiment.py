"""iml.lm.experiment: a tiny two-stage run end to end, resume, hashing, checkpoint naming."""
import dataclasses
import json

import pandas as pd
import pytest

import iml.lm.train
from iml.core import results
from iml.core.results import ResultStore
from iml.core.config import ConfigError, config_hash
from iml.lm.experiment import (PRESETS, completed_stage1, derive_seed, finalize_completed, make_config, run,
                            unit_id)

OVERRIDES = {
    "data.num_ents": 24,
    "stages.0.epochs": 8,
    "stages.1.epochs": 3,
    "seeds.n_stage1": 2,
    "seeds.n_stage2": 2,
    "stage2_from_epochs": [8, 2],
    "eval.every": 4,
    "eval.sets": ["test_qd1consis", "test_d1consis", "test_d2consis", "ent_assoc_name_d1consis"],
    "eval.train_sets": ["train_stage1"],
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    cfg = make_config("smoke", OVERRIDES)
    res = run(cfg, root=root, progress=False)
    return cfg, root, res


def test_result_files_are_complete_and_reload(finished):
    cfg, root, res = finished
    d = res.dir
    assert d.name == config_hash(cfg)
    for f in ("results.csv", "config.json", "meta.json"):
        assert (d / f).exists()
    meta = json.loads((d / "meta.json").read_text())
    assert meta["git_revision"] and meta["units"] == [unit_id(s, j) for s in (0, 1) for j in (0, 1)]
    again = results.load("main", cfg, root=root)
    pd.testing.assert_frame_equal(again.table, res.table)
    extra = json.loads((d / "units" / "s0-0.json").read_text())
    assert extra["wall_time_s"] > 0 and extra["stages"]["stage1"]["tokens_per_s"] > 0


def test_tidy_rows_epochs_and_subsets(finished):
    _, _, res = finished
    t = res.table
    assert set(t.metric) == {"EM", "F1", "loss"}
    assert {"qd1consis", "d1consis", "d2consis", "ent_assoc_name_d1consis", "train_stage1", "train"} == set(t.subset)
    main = t[t.run_id == "s0-0"]
    ev = main[main.metric == "EM"]
    assert sorted(ev[ev.stage == "stage1"].epoch.unique()) == [4, 8]
    assert sorted(ev[ev.stage == "stage2"].epoch.unique()) == [11]
    assert sorted(ev[ev.stage == "init"].epoch.unique()) == [0]
    assert sorted(main[main.metric == "loss"].epoch.unique()) == list(range(1, 12))
    # the Stage-2 run from the epoch-2 checkpoint, named by its integer epoch
    early = t[t.run_id == "s0-0-from2"]
    assert set(early.stage) == {"stage2_from2"} and sorted(early[early.metric == "loss"].epoch) == [3, 4, 5]


def test_losses_fall(finished):
    _, _, res = finished
    t = res.table
    for rid, g in t[(t.metric == "loss") & (t.stage == "stage1")].groupby("run_id"):
        g = g.sort_values("epoch")
        assert g.value.iloc[-1] < 0.7 * g.value.iloc[0], rid


def test_resume_recomputes_only_the_missing_unit(finished, monkeypatch):
    cfg, root, res = finished
    calls = []
    real = iml.lm.train.train_stage

    def counting(*a, **k):
        calls.append(a[3].name)
        return real(*a, **k)

    monkeypatch.setattr(iml.lm.train, "train_stage", counting)
    run(cfg, root=root, progress=False)  # finished: just loads
    assert calls == []
    store = results.ResultStore("main", cfg, root=root)
    old = store.load_unit("s1-1")
    store.unit_path("s1-1").unlink()
    (store.dir / "results.csv").unlink()
    run(cfg, root=root, progress=False)
    assert calls == ["stage1", "stage2", "stage2"]  # stage 1 once, stage 2 from epochs 2 and 8
    pd.testing.assert_frame_equal(store.load_unit("s1-1"), old)  # deterministic


def test_time_limited_and_sharded_runs_give_the_same_result(finished, tmp_path):
    """A run stopped by its deadline keeps its finished stage-1 seeds; they finalize as the config with
    that many seeds; the other seeds computed by another call (another process) complete the result."""
    import time

    cfg, _, res = finished
    assert run(cfg, root=tmp_path, progress=False, stop_by=time.time()) is None  # first seed only
    assert completed_stage1(cfg, tmp_path) == 1
    part = finalize_completed(cfg, tmp_path, meta={"note": "deadline"})
    assert part.config["seeds"]["n_stage1"] == 1 and part.meta["planned_n_stage1"] == 2
    assert part.meta["planned_config_hash"] == config_hash(cfg) and part.meta["note"] == "deadline"
    pd.testing.assert_frame_equal(part.table, res.table[res.table.seed_stage1 == 0].reset_index(drop=True))
    full = run(cfg, root=tmp_path, progress=False, stage1_seeds=[1])
    pd.testing.assert_frame_equal(full.table, res.table)
    with pytest.raises(ConfigError, match="stage1_seeds"):
        run(cfg, root=tmp_path, stage1_seeds=[7])
    empty = make_config("smoke", {**OVERRIDES, "seeds.start_seed": 50})
    with pytest.raises(RuntimeError, match="nothing to finalize"):
        finalize_completed(empty, tmp_path)


def test_changed_config_gets_a_new_hash():
    a = make_config("smoke", OVERRIDES)
    b = make_config("smoke", {**OVERRIDES, "stages.1.lr": 2e-3})
    assert config_hash(a) != config_hash(b)
    assert b.stages[1].lr == 2e-3


def test_checkpoint_epochs_are_numeric_and_validated():
    cfg = make_config("smoke", {"stage2_from_epochs": [10, 2, 9]})
    assert cfg.from_epochs() == [2, 9, 10]
    with pytest.raises(ConfigError, match=r"stage2_from_epochs\[0\]"):
        make_config("smoke", {"stage2_from_epochs": [99]})


def test_stage2_shuffle_seed_differs_across_stage1_seeds():
    assert derive_seed(600, 0, "shuffle", "stage2", 20) != derive_seed(601, 0, "shuffle", "stage2", 20)


def test_presets_build_and_overrides_are_checked():
    for p in PRESETS:
        make_config(p)
    assert {"smoke", "cpu", "gpu", "paper"} <= set(PRESETS)
    gpu = make_config("gpu")
    assert gpu.stages[0].optimizer == "adafactor" and gpu.stages[0].effective_batch == 256
    assert gpu.seeds.n_stage1 >= 10 and gpu.model.name == "smollm2-135m"
    cpu = make_config("cpu")
    assert cpu.stages[0].split == "train_knowledge" and cpu.seeds.n_stage1 >= 5
    assert all(s.loss_on == "answer" for s in cpu.stages)
    with pytest.raises(ConfigError, match=r"stages\[1\]\.bogus"):
        make_config("smoke", {"stages.1.bogus": 1})
    with pytest.raises(ConfigError, match=r"^stages\.7"):
        make_config("smoke", {"stages.7.epochs": 1})
    with pytest.raises(ConfigError, match="data.knowledge_stage"):
        make_config("cpu", {"data.knowledge_stage": False})
    with pytest.raises(ConfigError, match="^preset"):
        make_config("nope")


def test_disk_checkpoints_of_a_killed_run_are_not_left_behind(finished, tmp_path):
    """checkpoints=disk: a killed run's stale Stage-1 checkpoints are cleared when the seed starts again, and
    nothing is left under the result folder once the result is done; the numbers equal the in-memory run's."""
    cfg, _, res = finished
    disk = dataclasses.replace(cfg, checkpoints="disk")
    stale = ResultStore("main", disk, root=tmp_path).dir / "checkpoints" / "s0"
    stale.mkdir(parents=True)
    (stale / "epoch0008.safetensors").write_bytes(b"left by a killed run")
    out = run(disk, root=tmp_path, progress=False)
    assert not (out.dir / "checkpoints").exists()
    pd.testing.assert_frame_equal(out.table, res.table)
