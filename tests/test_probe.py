"""iml.mnist.probes: linear probes for the alias's tag (claim 6's question) on the MNIST grid task."""
import numpy as np
import pytest
import torch

from iml.report import claims
from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid
from iml.mnist import probes as probe
from iml.core.config import ConfigError
from iml import cli


def test_fit_logistic_solves_the_regularised_objective():
    """At the optimum of 0.5||w||² + C Σ cᵢ logloss, the gradient vanishes: w = C Σ cᵢ (yᵢ − pᵢ) xᵢ and
    Σ cᵢ (yᵢ − pᵢ) = 0 (unpenalised intercept), with cᵢ the balanced class weights."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 7, generator=g, dtype=torch.float64)
    y = (X[:, 0] + 0.5 * torch.randn(120, generator=g, dtype=torch.float64) > 0.3).double()
    for C, balanced in ((0.01, True), (1.0, False)):
        w, b = probe.fit_logistic(X, y, C=C, balanced=balanced)
        p = torch.sigmoid(X @ w + b)
        n1 = y.sum()
        c = torch.where(y > 0, len(y) / (2 * n1), len(y) / (2 * (len(y) - n1))) if balanced else torch.ones_like(y)
        assert torch.allclose(w, C * ((c * (y - p))[:, None] * X).sum(0), atol=1e-5)
        assert abs(C * float((c * (y - p)).sum())) < 1e-5  # d objective / d b (gradients start at ~C n / 2)


def test_probe_accuracy_finds_a_linear_signal_and_not_a_null():
    g = torch.Generator().manual_seed(1)
    groups = torch.arange(40).repeat_interleave(6)            # 40 aliases, 6 questions each
    label_of = torch.arange(40) % 2
    y = label_of[groups]
    X = torch.randn(240, 30, generator=g)
    X[:, 3] += 3.0 * (2 * y - 1)                               # one feature carries the label
    assert probe.probe_accuracy(X, y, groups) > 0.95
    null = [probe.probe_accuracy(torch.randn(240, 30, generator=g), y, groups, seed=s) for s in range(12)]
    assert abs(np.mean(null) - 0.5) < 0.05                     # no bias below (or above) chance


def test_probe_folds_are_grouped_so_alias_identity_is_no_shortcut():
    """Each alias's questions share an alias-specific feature vector and the alias's tag is random: a probe
    could memorise alias -> tag if one alias's questions were split across folds. Grouped folds give chance."""
    g = torch.Generator().manual_seed(2)
    groups = torch.arange(30).repeat_interleave(8)
    y = (torch.randperm(30, generator=g) % 2)[groups]
    X = torch.randn(30, 50, generator=g)[groups] + 0.05 * torch.randn(240, 50, generator=g)
    accs = [probe.probe_accuracy(X, y, groups, seed=s, C=1.0) for s in range(5)]
    assert np.mean(accs) < 0.7
    with pytest.raises(ValueError, match="more than one label"):
        probe.probe_accuracy(X, 1 - y * (torch.arange(240) % 2), groups)
    with pytest.raises(ValueError, match="cannot fill"):
        probe.probe_accuracy(X[:16], y[:16], groups[:16])


@pytest.mark.parametrize("overrides, field", [
    ({"folds": 1}, "folds"), ({"C": 0.0}, "C"), ({"draws": 0}, "draws"), ({"probe_version": 2}, "probe_version"),
    ({"folds": 20}, "folds"), ({"task.no_such_key": 1}, "task.no_such_key"), ({"at": "some"}, "at"),
])
def test_bad_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        probe.make_config("smoke", overrides)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    return root, probe.run(probe.make_config("smoke"), root=root, progress=False)


def test_probing_leaves_training_untouched_and_covers_every_layer_and_evaluation(smoke):
    root, res = smoke
    mn = mx.run(probe.make_config("smoke").task, root=root, progress=False)
    key = ["run_id", "stage", "epoch", "subset", "metric"]
    a = res.table[res.table.metric.isin(mnist_grid.METRICS)].sort_values(key).reset_index(drop=True)
    b = mn.table.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key]) and np.array_equal(a.value.to_numpy(), b.value.to_numpy())
    pr = res.table[res.table.metric.str.startswith("probe_")]
    assert set(pr.metric) == {f"probe_{k}{s}" for k in mnist_grid.LAYERS for s in ("", "_shuffled")}
    assert set(pr.subset) == {probe.SUBSET} and pr.value.between(0, 1).all()
    e1, e2 = res.config["task"]["stage1_epochs"], res.config["task"]["stage2_epochs"]
    assert sorted(pr.epoch.unique()) == [0, e1, e1 + e2]  # at="ends": epoch 0 and the end of each stage
    s = probe.summary(res)
    assert len(s) == len(mnist_grid.LAYERS) * 3 and set(s["when"]) == {"epoch 0", "end of Stage 1", "end of Stage 2"}
    shown = probe.table(s)
    assert list(shown["layer"]) == list(mnist_grid.LAYERS) and "end of Stage 1: probe acc" in shown
    status, text = probe.verdict_status(res)
    assert status == "not attempted" and "MNIST grid analogue" in text


def test_claims_page_reports_the_probe_without_claiming_the_word_order_contrast(smoke):
    _, res = smoke
    row = claims.claims_table({"probe": ("smoke", res)}).set_index("#").loc[6]
    assert row["status"] == "not attempted" and "linear probe" in row["this book"] and "smoke" in row["scale"]
    assert claims.claims_table({}).set_index("#").loc[6, "this book"].startswith("no finished")


def test_cli(smoke, capsys):
    root, _ = smoke
    assert cli.main(["run", "probe", "--preset", "smoke", "--set", "folds=1"]) == 2
    assert "folds" in capsys.readouterr().err
    assert cli.main(["run", "probe", "--preset", "smoke", "--root", str(root), "--quiet"]) == 0
    assert "computed nothing" in capsys.readouterr().out  # the finished result is loaded, and it says so


def test_probing_at_every_evaluation(tmp_path):
    cfg = probe.make_config("smoke", {"at": "all", "task.evals_per_stage": 2, "task.n_seeds": 1,
                                      "task.group_size": 1, "folds": 2})
    res = probe.run(cfg, root=tmp_path, progress=False)
    acc = res.table[res.table.metric == "acc"]
    assert set(res.table[res.table.metric == "probe_f1"].epoch) == set(acc.epoch) and acc.epoch.nunique() == 5


def test_presets_are_the_mnist_presets_with_the_probes_overrides():
    from iml.core.config import to_dict

    cpu = to_dict(probe.make_config("cpu").task)
    assert cpu.pop("n_seeds") == 10
    mn = to_dict(mnist_grid.make_config("cpu"))
    mn.pop("n_seeds")
    assert cpu == mn
    assert to_dict(probe.make_config("smoke").task) == to_dict(mnist_grid.make_config("smoke"))
