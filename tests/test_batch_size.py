"""iml.mnist.batch_size: the MNIST grid task at several batch sizes (paper claim (ii): smaller batches, more IML)."""
import math

import pytest

from iml.mnist import batch_size
from iml.report import claims, notebook
from iml.mnist import grid as mnist_grid
from iml.core.config import ConfigError, config_hash
from iml import cli
from iml.report import sweeps


def test_points_scale_the_epochs_and_the_cpu_point_at_32_is_the_mnist_cpu_preset():
    cfgs = batch_size.configs("cpu")
    base = mnist_grid.make_config("cpu", {"n_seeds": 10})
    assert [c.batch_size for c in cfgs] == [8, 32, 128, 512]
    assert [(c.stage1_epochs, c.stage2_epochs) for c in cfgs] == [(350, 200), (350, 200), (700, 400), (1400, 800)]
    # everything but batch size and epochs is the preset's (at the sweep's 10 seeds, the fewest for a verdict)
    for c in cfgs:
        assert (c.n_aliases, c.lr, c.n_seeds, c.width) == (base.n_aliases, base.lr, 10, base.width)
    # so the MNIST cpu preset at 10 seeds (also the α sweep's α = 1 point) is this sweep's batch-32 point
    assert config_hash(cfgs[1]) == config_hash(base)


@pytest.mark.parametrize("kwargs, key", [
    (dict(sweep="huge"), "sweep"),
    (dict(points=[]), "points"),
    (dict(points=[(0, 1.0)]), "points"),
    (dict(points=[(8.5, 1.0)]), "points"),
    (dict(points=[(8, -1.0)]), "points"),
    (dict(points=[(8, float("nan"))]), "points"),
    (dict(points=[(8, 1.0), (8, 2.0)]), "points"),
    (dict(overrides={"batch_size": 16}), "batch_size"),
    (dict(overrides={"stage1_epochs": 3}), "stage1_epochs"),
    (dict(overrides={"no_such_key": 3}), "no_such_key"),
])
def test_bad_sweeps_name_the_problem(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        batch_size.configs(**kwargs)


def _fake(bs, gap, n_seeds=10, seed=0):
    return notebook.fake_result("mnist", n_stage1=n_seeds, n_stage2=1, gap=gap, seed=seed,
                            config={"batch_size": bs, "stage1_epochs": 4, "stage2_epochs": 3})


def test_trend_is_paired_by_seed_and_signed_small_minus_large():
    small, large = _fake(8, 0.20, seed=1), _fake(128, 0.0, seed=2)
    t = batch_size.trend(small, large)
    assert (t["small"], t["large"], t["n_seeds"]) == (8, 128, 10)
    assert t["diff"] == pytest.approx(0.20, abs=0.02)
    assert 0 < t["ci_low"] < t["diff"] < t["ci_high"] and t["p_one_sided"] < 0.01
    back = batch_size.trend(large, small)
    assert back["diff"] == pytest.approx(-t["diff"]) and back["p_one_sided"] > 0.99
    null = batch_size.trend(_fake(8, 0.0, seed=3), _fake(128, 0.0, seed=4))
    assert null["ci_low"] < 0 < null["ci_high"]


def test_trend_needs_shared_seeds():
    with pytest.raises(ValueError, match="share 1 stage-1 seed"):
        batch_size.trend(_fake(8, 0.1, n_seeds=1), _fake(32, 0.0, n_seeds=3))


def test_smoke_sweep_runs_summarises_and_is_found_again(tmp_path):
    """The real code path at smoke scale: two batch sizes, one MNIST result each, a summary row each with the
    optimizer steps that the batch size implies; the finished sweep is found again by its configs."""
    import json

    rs = batch_size.run_sweep("smoke", root=tmp_path, progress=False)
    assert [r.config["batch_size"] for r in rs] == [8, 32]
    assert len({r.hash for r in rs}) == 2 and all((tmp_path / "mnist" / r.hash / "results.csv").exists() for r in rs)
    s = batch_size.summary(rs)
    assert list(s["batch_size"]) == [8, 32] and list(s["n_seeds"]) == [2, 2]
    n1 = json.loads((rs[0].dir / "units" / f"{rs[0].meta['units'][0]}.json").read_text())["stage1_examples"]
    e1 = rs[0].config["stage1_epochs"]
    assert list(s["stage1_steps"]) == [math.ceil(n1 / 8) * e1, math.ceil(n1 / 32) * e1]
    assert (s["ci_low"] <= s["gap"]).all() and (s["gap"] <= s["ci_high"]).all()
    shown = batch_size.table(s)
    for col in ("batch size", "steps per seed (stage 1 + 2)", "IML gap Ḋ₅ − D̄₆", "IML 95% CI", "paper"):
        assert col in shown
    assert shown["steps per seed (stage 1 + 2)"][0] == f"{s['stage1_steps'][0]} + {s['stage2_steps'][0]}"
    again = batch_size.finished("smoke", root=tmp_path)
    assert [r.hash for r in again] == [r.hash for r in rs]
    assert batch_size.finished("cpu", root=tmp_path) is None  # a sweep is shown whole or not at all
    assert "batch 8:" in sweeps.scale_note(batch_size, rs) and "batch 32:" in sweeps.scale_note(batch_size, rs)
    assert "Verdict on this sweep" in batch_size.verdict(rs)


def test_verdict_states_reproduced_null_or_opposite():
    def sweep(g_small, g_large, seeds=(1, 2)):
        return [_fake(8, g_small, seed=seeds[0]), _fake(512, g_large, seed=seeds[1])]

    assert batch_size.verdict_status(sweep(0.3, 0.0))[0] == "reproduced"
    assert batch_size.verdict_status(sweep(0.0, 0.3))[0] == "not reproduced"
    assert batch_size.verdict_status(sweep(0.1, 0.1, seeds=(5, 5)))[0] == "null at our scale"
    assert batch_size.verdict_status(sweep(0.1, 0.1)[:1])[0] == "not attempted"
    status, text = batch_size.verdict_status(sweep(0.3, 0.0))
    assert "batch 8 minus gap at batch 512" in text and "Full-batch" not in text  # fakes record no steps


def test_full_batch_iml_contradicts_the_claims_second_part(monkeypatch):
    """'Full-batch training gives none': a full-batch point whose own gap has a CI above 0 makes the claim
    not reproduced, even when smaller batches gave more IML."""
    monkeypatch.setattr(batch_size, "is_full_batch", lambda r: r.config["batch_size"] == 512)
    status, text = batch_size.verdict_status([_fake(8, 0.5, seed=1), _fake(512, 0.2, seed=2)])
    assert status == "not reproduced" and "Full-batch training (batch 512) gave an IML gap of +0.20" in text
    status, text = batch_size.verdict_status([_fake(8, 0.3, seed=1), _fake(512, 0.0, seed=2)])
    assert status == "reproduced" and "Full-batch training" in text


def test_points_in_parallel_processes_give_the_same_results(tmp_path):
    serial = batch_size.run_sweep("smoke", root=tmp_path / "a", progress=False)
    parallel = batch_size.run_sweep("smoke", root=tmp_path / "b", progress=False, workers=2)
    assert [r.hash for r in parallel] == [r.hash for r in serial]
    for a, b in zip(serial, parallel):
        assert a.table.equals(b.table)
    with pytest.raises(ConfigError, match="workers"):
        batch_size.run_sweep("smoke", root=tmp_path / "c", workers=0)


def test_full_batch_is_one_step_per_epoch(tmp_path):
    rs = batch_size.run_sweep("smoke", points=[(8, 1.0), (100_000, 1.0)], root=tmp_path, progress=False)
    assert [batch_size.is_full_batch(r) for r in rs] == [False, True]


def test_the_claims_page_judges_claims_4_and_12_by_the_sweeps():
    """Claim 4 takes the single-stage sweep's verdict when there is one (the authors' sweep is single-stage)
    and lists the two-stage one beside it; claim 12 (single-stage training works) reads the single-stage
    sweep's point at the preset's batch size."""
    two = [_fake(8, 0.3, seed=1), _fake(512, 0.0, seed=2)]
    t = claims.claims_table({"batch_size": ("sweeps", {"two-stage": ("cpu", two)})})
    row = t[t["#"] == 4].iloc[0]
    assert row["status"] == "reproduced (analogue)" and "MNIST grid analogue, two-stage (reproduced)" in row["this book"]
    assert row["scale"] == "cpu sweep, batch sizes 8, 512"
    assert t[t["#"] == 12].iloc[0]["status"] == "not attempted"
    one = [_fake(8, 0.0, seed=3), _fake(32, 0.25, seed=4), _fake(512, 0.3, seed=5)]
    t = claims.claims_table({"batch_size": ("sweeps", {"two-stage": ("cpu", two), "single-stage": ("cpu-joint", one)})})
    row = t[t["#"] == 4].iloc[0]
    assert row["status"] == "not reproduced (analogue)"  # the single-stage sweep: the larger batch gave more IML
    assert row["this book"].index("single-stage (not reproduced)") < row["this book"].index("two-stage (reproduced)")
    row12 = t[t["#"] == 12].iloc[0]
    assert row12["status"] == "reproduced (analogue)" and "batch 32" in row12["this book"] and "+0.2" in row12["this book"]
    none = claims.claims_table({})
    assert set(none[none["#"].isin([4, 12])]["status"]) == {"not attempted"}


def test_sweep_names_and_finding_the_largest_finished_sweep(tmp_path):
    assert batch_size.sweep_name("cpu", "single-stage") == "cpu-joint"
    assert batch_size.sweep_name("gpu", "two-stage") == "gpu"
    with pytest.raises(ConfigError, match="design"):
        batch_size.sweep_name("cpu", "three-stage")
    with pytest.raises(ConfigError, match="preset"):
        batch_size.sweep_name("paper", "two-stage")
    assert batch_size.find_sweeps([tmp_path]) == {}
    batch_size.run_sweep("smoke", root=tmp_path, progress=False)
    assert batch_size.find_sweeps([tmp_path]) == {}  # smoke sweeps are not shown on the claims page
    with pytest.raises(ValueError, match="claims 4 and 12"):
        batch_size.claim_status(7, {})


def test_figure_and_headline_note():
    import matplotlib

    matplotlib.use("Agg")
    from iml.report import plots

    s = batch_size.summary([_fake(8, 0.2, seed=1), _fake(32, 0.1, seed=2), _fake(128, 0.0, seed=3)])
    s.loc[2, ["stage1_steps", "stage1_epochs"]] = 4  # the last point: one step per epoch
    fig = plots.batch_size_figure(s)
    a, b = fig.axes
    assert [t.get_text() for t in a.get_xticklabels()] == ["8", "32", "128\n(full)"]
    assert len(b.get_lines()) == 2  # the two Stage-1 subsets
    assert "No committed `gpu` sweep" in sweeps.headline_note(batch_size, None)
    assert "python -m iml sweep batch_size --sweep gpu-joint`" in sweeps.headline_note(batch_size, None, "gpu-joint")


def test_command_line(tmp_path, capsys):
    assert cli.main(["sweep", "batch_size", "--sweep", "smoke", "--root", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "batch size" in out and "Verdict on this sweep" in out
    assert cli.main(["sweep", "batch_size", "--sweep", "smoke", "--root", str(tmp_path), "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def test_joint_sweeps_train_one_stage_with_every_definition(tmp_path):
    """The single-stage sweeps (the authors' sweep design): no Stage 2, the X2 definitions are trained
    together with the X1 data, and the IML gap is read at the end of that one stage."""
    cfgs = batch_size.configs("cpu-joint")
    assert all(c.joint and c.stage2_epochs == 0 for c in cfgs)
    assert [c.stage1_epochs for c in cfgs] == [350, 350, 700, 1400]
    rs = batch_size.run_sweep("smoke-joint", root=tmp_path, progress=False)
    two = batch_size.run_sweep("smoke", root=tmp_path, progress=False)
    s, s_two = batch_size.summary(rs), batch_size.summary(two)
    assert list(s["stage2_steps"]) == [0, 0]
    assert (s["stage1_steps"] > s_two["stage1_steps"]).all()  # Stage 1 also holds the X2 definitions
    assert set(rs[0].table["stage"]) == {1}
    with pytest.raises(ConfigError, match="stage2_epochs"):
        mnist_grid.make_config("smoke", {"joint": True})
    # off, the new field leaves the committed MNIST results' hashes alone
    assert config_hash(mnist_grid.make_config("cpu", {"n_seeds": 5})) == "851451edccb6"  # the old cpu preset
