"""iml.mnist.model_size: the MNIST grid task at several ConvNet sizes (paper claim 3: larger models, more IML)."""
import math

import pytest

from iml import cli, registry
from iml.core import paper, scaling
from iml.core.config import ConfigError, config_hash, to_dict
from iml.mnist import grid as mnist_grid
from iml.mnist import model_size
from iml.report import claims, notebook, sweeps


def _by_hand(w, h, scale=7):
    """Parameters of conv3x3(w)-conv3x3(2w)-conv3x3(2w)-fc(h)-fc(18) on the grid image, counted by hand."""
    height, width = (scale + 2) // 2 + 3 * (scale + 2), 3 * (scale + 2)  # tag strip above a 3x3 grid
    for _ in range(3):
        height, width = height // 2, width // 2
    feat = 2 * w * height * width
    return (9 * w + w) + (9 * w * 2 * w + 2 * w) + (9 * 2 * w * 2 * w + 2 * w) + (feat * h + h) + (h * 18 + 18)


def test_points_share_seeds_and_differ_only_in_width_and_hidden():
    for sweep, n_points in (("smoke", 2), ("cpu-20", 4), ("gpu", 4)):
        cfgs = model_size.configs(sweep)
        assert len(cfgs) == n_points
        rest = [{k: v for k, v in to_dict(c).items() if k not in ("width", "hidden")} for c in cfgs]
        assert all(r == rest[0] for r in rest), sweep  # same seeds, data, epochs, optimiser at every size
        assert len({(c.width, c.hidden) for c in cfgs}) == n_points
    cpu = model_size.configs("cpu-20")
    assert [(c.width, c.hidden) for c in cpu] == [(4, 64), (8, 128), (16, 256), (32, 512)]
    assert {(c.n_seeds, c.start_seed) for c in cpu} == {(20, 0)}  # the seeds the 10-seed sweep's spread asked for
    assert config_hash(cpu[1]) == config_hash(mnist_grid.make_config("cpu"))  # the cpu preset itself: reused
    ten = model_size.configs("cpu-10")  # the first pass, at the fewest seeds a verdict takes
    assert {c.n_seeds for c in ten} == {10}
    assert config_hash(ten[1]) == config_hash(mnist_grid.make_config("cpu", {"n_seeds": 10}))
    assert config_hash(model_size.configs("gpu")[1]) == config_hash(mnist_grid.make_config("gpu"))


def test_the_cpu_sweeps_add_seed_blocks_to_every_point_of_the_20_seed_sweep():
    """Power asked for 29 seeds, then 49, then 57: each point of ``cpu-30`` is ``cpu-20``'s result plus a result on
    seeds 20-29 of the same config, ``cpu-49`` adds seeds 30-48 and ``cpu`` seeds 49-56; nothing else differs."""
    assert model_size.point_configs("cpu-30") == [cs[:2] for cs in model_size.point_configs("cpu")]
    assert model_size.point_configs("cpu-49") == [cs[:3] for cs in model_size.point_configs("cpu")]
    groups = model_size.point_configs("cpu")
    assert [cs[0] for cs in groups] == model_size.configs("cpu-20")
    for first, *extra in groups:
        assert [(c.start_seed, c.n_seeds) for c in extra] == [(20, 10), (30, 19), (49, 8)]
        for c in extra:
            assert to_dict(first) | {"start_seed": c.start_seed, "n_seeds": c.n_seeds} == to_dict(c)


def test_pooled_points_hold_every_seed_once_and_refuse_mixed_configs():
    from iml.core.results import pool_seeds

    a = notebook.fake_result("mnist", n_stage1=3, n_stage2=1, gap=0.1, seed=1,
                             config={"width": 4, "hidden": 64, "start_seed": 0, "n_seeds": 3})
    b = notebook.fake_result("mnist", n_stage1=3, n_stage2=1, gap=0.1, seed=2,
                             config={"width": 4, "hidden": 64, "start_seed": 0, "n_seeds": 3})
    with pytest.raises(ValueError, match="share stage-1 seeds"):
        pool_seeds([a, b])
    b.table["seed_stage1"] += 3
    b.config = {**b.config, "start_seed": 3}
    p = pool_seeds([a, b])
    assert sorted(p.table["seed_stage1"].unique()) == list(range(a.table["seed_stage1"].min(), 6))
    assert (p.config["start_seed"], p.config["n_seeds"], p.hash) == (0, 6, f"{a.hash}+{b.hash}")
    c = notebook.fake_result("mnist", n_stage1=3, n_stage2=1, gap=0.1, seed=3,
                             config={"width": 8, "hidden": 64, "start_seed": 6, "n_seeds": 3})
    c.table["seed_stage1"] += 6
    with pytest.raises(ValueError, match="differ beyond the seeds"):
        pool_seeds([a, c])


def test_parameter_counts_grow_and_match_a_count_by_hand():
    cpu = model_size.configs("cpu-20")
    n = [model_size.n_params(c) for c in cpu]
    assert n == [_by_hand(c.width, c.hidden) for c in cpu] == [6762, 24450, 92658, 360402]
    assert n == sorted(n) and n[-1] / n[0] >= 10
    gpu = [model_size.n_params(c) for c in model_size.configs("gpu")]
    assert gpu == sorted(gpu) and gpu[-1] / gpu[0] >= 10 and gpu[1] == _by_hand(16, 256, scale=14)
    assert model_size.n_params(to_dict(cpu[2])) == n[2]  # a result's config dict counts the same
    # the points come out smallest first, whatever order they are given in
    assert [c.width for c in model_size.configs("cpu-20", points=[(16, 256), (4, 64)])] == [4, 16]


@pytest.mark.parametrize("kwargs, key", [
    (dict(sweep="huge"), "sweep"),
    (dict(points=[]), "points"),
    (dict(points=[(0, 64)]), "points"),
    (dict(points=[(4.5, 64)]), "points"),
    (dict(points=[(4, 64, 1)]), "points"),
    (dict(points=[(4, "wide")]), "points"),
    (dict(points=[(4, 64), (4, 64)]), "points"),
    (dict(overrides={"width": 16}), "width"),
    (dict(overrides={"hidden": 16}), "hidden"),
    (dict(overrides={"no_such_key": 3}), "no_such_key"),
])
def test_bad_sweeps_name_the_problem(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        model_size.configs(**kwargs)


def test_smoke_sweep_through_the_command_line(tmp_path, capsys):
    """The real code path at smoke scale: `iml sweep model_size` runs two sizes and prints the table and verdict;
    the finished sweep is found again and summarised with its parameter counts."""
    assert cli.main(["sweep", "model_size", "--sweep", "smoke", "--root", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "parameters per seed" in out and "Verdict on this sweep" in out and "too few seeds" in out
    rs = model_size.finished("smoke", root=tmp_path)
    assert rs is not None and len({r.hash for r in rs}) == 2
    assert all((tmp_path / "mnist" / r.hash / "results.csv").exists() for r in rs)
    assert model_size.finished("cpu-20", root=tmp_path) is None  # a sweep is shown whole or not at all
    s = model_size.summary(rs)
    assert list(s["params"]) == [3850, 14018] and list(s["params_non_embedding"]) == [3850, 14018]
    assert list(s["n_seeds"]) == [2, 2] and (s["ci_low"] <= s["gap"]).all() and (s["gap"] <= s["ci_high"]).all()
    assert s["stage1_acc_qd1consis"].between(0, 1).all() and s["stage1_acc_qd2incons"].between(0, 1).all()
    note = sweeps.scale_note(model_size, rs)
    assert "- width 4, hidden 32 (3,850 parameters): Scale:" in note and "width 8, hidden 64" in note
    assert model_size.find([tmp_path]) is None  # smoke sweeps are not shown on the claims page
    assert cli.main(["sweep", "model_size", "--sweep", "smoke", "--root", str(tmp_path), "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


def _fake(w, h, gap, n_seeds=10, seed=0):
    return notebook.fake_result("mnist", n_stage1=n_seeds, n_stage2=1, gap=gap, seed=seed,
                                config={"width": w, "hidden": h, "image_scale": 7, "stage1_epochs": 4,
                                        "stage2_epochs": 3})


SIZES = [(4, 64), (8, 128), (16, 256), (32, 512)]


def _sweep(gaps, n_seeds=10):
    return [_fake(w, h, g, n_seeds, seed=i + 1) for i, ((w, h), g) in enumerate(zip(SIZES, gaps))]


def test_trend_and_slope_are_paired_by_seed():
    rs = _sweep([0.05, 0.1, 0.2, 0.3])
    t = scaling.trend(rs[0], rs[-1], model_size.n_params)
    assert (t["small"], t["large"], t["n_seeds"]) == (6762, 360402, 10)
    assert t["diff"] == pytest.approx(0.25, abs=0.02) and t["ci_low"] > 0 and t["p_one_sided"] < 0.01
    two = scaling.slope([rs[0], rs[-1]], model_size.n_params)  # two sizes: the slope is the difference per decade
    assert two["slope"] == pytest.approx(t["diff"] / math.log10(360402 / 6762))
    s = scaling.slope(list(reversed(rs)), model_size.n_params)  # order-free: sorted by parameters
    assert s["n_sizes"] == 4 and s["decades"] == pytest.approx(math.log10(360402 / 6762))
    assert 0 < s["ci_low"] < s["slope"] < s["ci_high"]
    with pytest.raises(ValueError, match="share 1 stage-1 seed"):
        scaling.slope([_fake(4, 64, 0.1, n_seeds=1), _fake(8, 128, 0.1, n_seeds=3)], model_size.n_params)


def test_verdict_reproduced_too_few_seeds_null_or_opposite():
    status, text = model_size.verdict_status(_sweep([0.05, 0.1, 0.2, 0.3]))
    assert status == "reproduced" and "(a) IML gap of the largest model (360k parameters)" in text
    assert "(b) Slope of the gap over log10(parameters)" in text
    status, text = model_size.verdict_status(_sweep([0.05, 0.1, 0.2, 0.3], n_seeds=3))
    assert status == "too few seeds" and "3 stage-1 seeds" in text
    assert model_size.verdict_status(_sweep([0.3, 0.2, 0.1, 0.05]))[0] == "not reproduced"
    same = [_fake(w, h, 0.1, seed=5) for w, h in SIZES]
    assert model_size.verdict_status(same)[0] == "null at our scale"
    assert model_size.verdict_status(same[:1])[0] == "not attempted"
    md = model_size.verdict(_sweep([0.05, 0.1, 0.2, 0.3]))
    assert md.startswith("**Verdict on this sweep** (2 planned comparisons") and "**reproduced**" in md


def test_a_falling_slope_contradicts_a_rising_end_point(monkeypatch):
    """(b) overturns (a): largest above smallest, but the gap falls with size across all the sizes."""
    monkeypatch.setattr(scaling, "slope", lambda rs, n: {"slope": -0.1, "ci_low": -0.2, "ci_high": -0.05,
                                                          "p_one_sided": 1.0, "n_seeds": 10, "decades": 1.7,
                                                          "n_sizes": 4})
    status, text = model_size.verdict_status(_sweep([0.05, 0.1, 0.2, 0.3]))
    assert status == "not reproduced" and "falls with size" in text


def test_the_claims_page_judges_claim_3_by_the_sweep():
    assert next(c for c in paper.CLAIMS if c.rank == 3).experiment == "model_size"
    assert registry.SWEEPS["model_size"] is model_size and registry.STUDIES["model_size"] is model_size
    fakes = _sweep([0.05, 0.1, 0.2, 0.3])
    t = claims.claims_table({"model_size": ("cpu sweep", fakes)})
    row = t[t["#"] == 3].iloc[0]
    assert row["status"] == "reproduced (analogue)" and row["tested on"] == "MNIST grid (ConvNet) analogue"
    assert row["this book"].startswith("MNIST grid analogue: (a) IML gap of the largest model")
    assert row["scale"] == "cpu sweep, parameters per seed 6.8k, 24k, 93k, 360k"
    rows = model_size.power_rows(("cpu sweep", fakes))
    assert [r["seeds"] for r in rows] == [10, 10] and "360k − 6.8k parameters" in rows[0]["comparison"]
    assert rows[0]["effect"] == pytest.approx(0.3, abs=0.01)  # sized against the largest model's gap
    none = claims.claims_table({})
    assert none[none["#"] == 3].iloc[0]["status"] == "not attempted"


def test_figure_and_headline_note():
    import matplotlib

    matplotlib.use("Agg")
    from iml.report import plots

    fig = plots.model_size_figure(model_size.summary(_sweep([0.05, 0.1, 0.2, 0.3])))
    a, b = fig.axes
    assert a.get_xscale() == "log" and [t.get_text() for t in a.get_xticklabels()][0] == "6.8k\n4/64"
    assert len(b.get_lines()) == 3  # the two Stage-1 subsets and chance
    note = sweeps.headline_note(model_size, None)
    assert "No committed `gpu` sweep" in note and "python -m iml sweep model_size --sweep gpu`" in note
    assert "92k to 5.7M parameters per seed" in note


def test_run_sweep_returns_one_pooled_result_per_point(monkeypatch):
    """A sweep with seed blocks runs every block and hands back one result per size, holding all its seeds."""
    monkeypatch.setitem(model_size.SWEEPS, "blocks", dict(preset="smoke", points=[(4, 32)],
                                                          seed_blocks=[{}, {"start_seed": 2, "n_seeds": 2}]))
    seen = []

    def fake_run(cfg, root=None, force=False, progress=True):
        seen.append((cfg.start_seed, cfg.n_seeds))
        r = notebook.fake_result("mnist", n_stage1=cfg.n_seeds, n_stage2=1, config=to_dict(cfg))
        r.table["seed_stage1"] += cfg.start_seed
        return r

    monkeypatch.setattr(model_size.mx, "run", fake_run)
    rs = model_size.run_sweep("blocks", progress=False)
    assert seen == [(0, 2), (2, 2)] and len(rs) == 1
    assert sorted(rs[0].table["seed_stage1"].unique()) == [0, 1, 2, 3] and rs[0].config["n_seeds"] == 4
