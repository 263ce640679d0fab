"""iml.mnist.alpha: the tag-consistency correlation α on the MNIST grid task (paper claim 10: no IML at α = 0.5)."""
import math

import numpy as np
import pytest

from iml.mnist import alpha
from iml.report import claims, notebook
from iml.mnist import grid as mnist_grid
from iml.core.config import ConfigError, config_hash
from iml import cli


def test_each_tag_keeps_its_share_split_alpha_to_one_minus_alpha():
    base = mnist_grid.GridFractions()  # qd1consis = qd2incons = 0.35
    f = alpha.fractions_for(0.7, base)
    assert f == {"fractions.qd1consis": 0.245, "fractions.qd1incons": 0.105,
                 "fractions.qd2incons": 0.245, "fractions.qd2consis": 0.105}
    assert alpha.fractions_for(1, base)["fractions.qd1incons"] == 0.0


def test_cpu_sweep_points_and_the_alpha_1_point_is_the_mnist_preset():
    cfgs = alpha.configs("cpu")
    counts = [mnist_grid.subset_counts(c.n_aliases, c.fractions) for c in cfgs]
    assert [(n["qd1consis"], n["qd1incons"], n["qd2incons"], n["qd2consis"]) for n in counts] == [
        (10, 10, 10, 10), (14, 6, 14, 6), (18, 2, 18, 2), (21, 0, 21, 0)]
    assert all(c.n_seeds == 43 for c in cfgs)  # the count the measured spread asks for (lib/iml/mnist/alpha.py)
    # at the preset's own seeds, α = 1 is the MNIST cpu preset result (hash-neutral new subsets)
    assert config_hash(alpha.configs("cpu", [1.0], {"n_seeds": 20})[0]) == config_hash(mnist_grid.make_config("cpu"))
    assert [alpha.alpha_of(_Result(c)) for c in cfgs] == [0.5, 0.7, 0.9, 1.0]


class _Result:
    def __init__(self, cfg):
        from iml.core.config import to_dict

        self.config = to_dict(cfg)


@pytest.mark.parametrize("kwargs, key", [
    (dict(sweep="huge"), "sweep"),
    (dict(points=[]), "points"),
    (dict(points=[0.4]), "points"),
    (dict(points=[1.2]), "points"),
    (dict(points=[True]), "points"),
    (dict(points=[0.5, 0.5]), "points"),
    (dict(overrides={"fractions.qd1consis": 0.2}), "fractions.qd1consis"),
    (dict(overrides={"no_such_key": 1}), "no_such_key"),
])
def test_bad_sweeps_name_the_problem(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        alpha.configs(**kwargs)


def _fake(a, gap, n_seeds=10, seed=0):
    fr = {k.split(".")[1]: v for k, v in alpha.fractions_for(a, mnist_grid.GridFractions()).items()}
    return notebook.fake_result("mnist", n_stage1=n_seeds, n_stage2=1, gap=gap, seed=seed,
                            config={"fractions": fr, "stage1_epochs": 4, "n_aliases": 60})


@pytest.mark.parametrize("gaps, status", [
    ((0.0, 0.2), "reproduced"),            # none at 0.5, IML at 1, and more at 1 than at 0.5
    ((0.15, 0.2), "not reproduced"),       # IML without a reliable tag
    ((0.0, 0.0), "null at our scale"),     # a null at 0.5 that the sweep could not tell from no IML at all
])
def test_the_verdict_needs_a_null_at_one_half_and_the_power_to_see_iml(gaps, status):
    rs = [_fake(1.0, gaps[1], seed=2), _fake(0.5, gaps[0], seed=1)]
    got, text = alpha.verdict_status(rs)
    assert got == status and "at α = 0.5" in text
    assert alpha.verdict_status([_fake(0.7, 0.1)])[0] == "not attempted"
    assert alpha.verdict_status([_fake(0.5, 0.0, n_seeds=9)])[0] == "too few seeds"


def test_smoke_sweep_runs_and_the_claims_page_reads_it(tmp_path):
    rs = alpha.run_sweep("smoke", root=tmp_path, progress=False)
    assert [alpha.alpha_of(r) for r in rs] == [0.5, 1.0]
    s = alpha.summary(rs)
    assert list(s["alpha"]) == [0.5, 1.0] and list(s["n_qd1incons"]) == [7, 0]
    assert not math.isnan(s["stage1_acc_qd1incons"][0]) and math.isnan(s["stage1_acc_qd1incons"][1])
    assert not math.isnan(s["reliance"][0]) and math.isnan(s["reliance"][1])
    shown = alpha.table(s)
    assert list(shown["paper"]) == ["no IML (no number)", "no number"] and shown["Ḋ incons"][1] == "–"
    assert [r.hash for r in alpha.finished("smoke", root=tmp_path)] == [r.hash for r in rs]
    assert alpha.find_sweep([tmp_path]) is None  # smoke sweeps are never the book's evidence
    row = claims.claims_table({"alpha": ("cpu sweep", [_fake(0.5, 0.0, seed=1), _fake(1.0, 0.2, seed=2)])})
    row = row.set_index("#").loc[10]
    assert row["status"] == "reproduced (analogue)" and row["scale"] == "cpu sweep, α = 0.5, 1"
    import matplotlib

    matplotlib.use("Agg")
    from iml.report import plots

    assert len(plots.alpha_figure(s).axes) == 2


def test_cli_reports_bad_input(tmp_path, capsys):
    assert cli.main(["sweep", "alpha", "--sweep", "smoke", "--root", str(tmp_path), "--set", "fractions.qd2consis=0.1"]) == 2
    assert "fractions.qd2consis" in capsys.readouterr().err
    assert np.isnan(alpha.alpha_of(_Result(mnist_grid.make_config("smoke", {"fractions.qd1consis": 0.0}))))
