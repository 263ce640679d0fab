"""iml.mnist.gradient_alignment: cos(definition gradient, QA gradient) for not-yet-trained X2 aliases after Stage 1 (claim 5)."""
import numpy as np
import pandas as pd
import pytest
import torch

from iml.mnist import batch_size
from iml.report import claims
from iml.mnist import gradient_alignment as gradalign
from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid
from iml.core.config import ConfigError, to_dict
from iml.core.results import COLUMNS, Result
from iml import cli


def test_presets_wrap_the_mnist_presets_and_sweeps_wrap_the_batch_size_sweeps():
    assert to_dict(gradalign.make_config("cpu").task) == to_dict(mnist_grid.make_config("cpu", {"n_seeds": 10}))
    assert to_dict(gradalign.make_config("smoke").task) == to_dict(mnist_grid.make_config("smoke"))
    cfgs = gradalign.configs("cpu")
    assert to_dict(cfgs[1]) == to_dict(gradalign.make_config("cpu"))  # the cpu preset is the sweep's batch-32 point
    # the batch-size sweep's tasks, with 10 seeds instead of 5 (SWEEP_OVERRIDES)
    assert [to_dict(c.task) for c in cfgs] == [to_dict(t) for t in batch_size.configs("cpu", overrides={"n_seeds": 10})]
    assert [c.task.batch_size for c in cfgs] == [8, 32, 128, 512] and all(c.draws == 2 for c in cfgs)
    assert [c.task.n_seeds for c in gradalign.configs("cpu", overrides={"n_seeds": 5})] == [5] * 4
    assert [to_dict(c.task) for c in gradalign.configs("smoke")] == [to_dict(t) for t in batch_size.configs("smoke")]
    assert gradalign.configs("smoke", draws=3)[0].draws == 3


@pytest.mark.parametrize("overrides, field", [
    ({"task.joint": True, "task.stage2_epochs": 0}, "task.joint"),
    ({"task.stage1_epochs": 0}, "task.stage1_epochs"),
    ({"task.fractions.d1consis": 0.0}, "task.fractions.d1consis"),
    ({"task.fractions.d2consis": 0.04}, "task.fractions.d2consis"),  # 1 of 40 aliases: no other-alias baseline
    ({"draws": 0}, "draws"),
    ({"analysis_version": 0}, "analysis_version"),
    ({"task.no_such_key": 1}, "task.no_such_key"),
])
def test_bad_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        gradalign.make_config("smoke", overrides)
    with pytest.raises(ConfigError, match="sweep"):
        gradalign.configs("huge")


def _direct_cosines(params, data, probe, name, lane):
    """The definition of the metric, written as plainly as possible: one example at a time, one autograd
    call each, for one seed (`lane`) of the stack."""
    p = {k: v.detach()[lane:lane + 1].clone().requires_grad_(True) for k, v in params.items()}

    def grad_of(tag, cell, labels, mask, digits):
        x = mnist_grid.render(data.train_pool[digits][None, None], torch.tensor([[tag]]), torch.tensor([[cell]]),
                              data.strips[lane:lane + 1], data.boxes, data.layout)
        loss = mx.masked_ce(mnist_grid.forward(p, x), labels[None, None], mask[None, None]).sum()
        g = torch.autograd.grad(loss, list(p.values()))
        return torch.cat([t.flatten() for t in g])

    same, other = [], []
    digits, labels = probe.digits[name][lane], probe.labels[name][lane]
    A, D = digits.shape[:2]
    qa = {}
    for a in range(A):
        for k in range(D):
            qa[a, k] = [grad_of(0, c, labels[a], torch.arange(9) == c, digits[a, k]) for c in range(9)]
    cos = torch.nn.functional.cosine_similarity
    for a in range(A):
        for k in range(D):
            d = grad_of(probe.tag[name], mnist_grid.NO_CELL, labels[a], torch.ones(9, dtype=torch.bool), digits[a, k])
            same += [cos(d, q, dim=0) for q in qa[a, k]]
            other += [cos(d, q, dim=0) for q in qa[(a - 1) % A, k]]
    return float(torch.stack(same).mean()), float(torch.stack(other).mean())


def test_batched_per_example_cosines_equal_the_definition():
    """vmap'd per-example gradients over stacked seeds, in alias chunks, give the cosines that one autograd
    call per example gives, for every seed and subset (including a chunk size that splits the aliases)."""
    cfg = gradalign.make_config("smoke", {"draws": 2})
    seeds = [3, 4]
    data = mx.build_group_data(cfg.task, seeds, torch.device("cpu"))
    probe = gradalign.build_probe(cfg, data, seeds)
    assert probe.subsets == ["d1consis", "d2consis", "d3consis"] and probe.tag == {"d1consis": 1, "d2consis": 2,
                                                                                  "d3consis": 3}
    params = mnist_grid.init_params(cfg.task, seeds, torch.device("cpu"))
    with torch.no_grad():  # a little training-like perturbation, so that nothing is at its initial symmetry
        for v in params.values():
            v.add_(0.01 * torch.randn(v.shape, generator=torch.Generator().manual_seed(0)))
    whole = gradalign.alignment(params, data, probe)
    per_alias = 2 * 10 * 2 * sum(v[0].numel() for v in params.values()) * 4 * 3
    chunked = gradalign.alignment(params, data, probe, max_bytes=per_alias * 1.5)  # one alias per chunk
    for name in ("d1consis", "d3consis"):
        for lane in range(2):
            same, other = _direct_cosines(params, data, probe, name, lane)
            for res in (whole, chunked):
                assert res["grad_cos"][name][lane].item() == pytest.approx(same, abs=1e-5)
                assert res["grad_cos_other"][name][lane].item() == pytest.approx(other, abs=1e-5)


def test_stage1_is_exactly_the_mnist_tasks_stage1(tmp_path):
    """The measured model is the MNIST experiment's own Stage 1: the accuracies recorded beside the
    alignment equal the MNIST result's Stage-1 rows (same seeds, data, weights, order, digit draws)."""
    cfg = gradalign.make_config("smoke")
    res = gradalign.run(cfg, root=tmp_path, progress=False)
    mn = mx.run(cfg.task, root=tmp_path, progress=False)
    key = ["seed_stage1", "epoch", "subset", "metric"]
    a = res.table[res.table.metric.isin(mnist_grid.METRICS)].sort_values(key).reset_index(drop=True)
    b = mn.table[(mn.table.stage == 1) & (mn.table.seed_stage2 == 0)].sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) > 0
    assert (a[key].to_numpy() == b[key].to_numpy()).all() and np.array_equal(a.value.to_numpy(), b.value.to_numpy())
    # every seed, subset and measured epoch (0 and the evaluation epochs) has both cosines, in [-1, 1]
    cos = res.table[res.table.metric.isin(gradalign.METRICS)]
    assert sorted(cos.epoch.unique()) == [0] + mx.eval_epochs(cfg.task.stage1_epochs, cfg.task.evals_per_stage)
    assert set(cos.subset) == set(gradalign.SUBSETS) and cos.value.between(-1, 1).all()
    assert len(cos) == 2 * len(gradalign.SUBSETS) * cos.epoch.nunique() * cfg.task.n_seeds
    assert (res.dir / "meta.json").exists() and res.meta["git_revision"]
    assert gradalign.run(cfg, root=tmp_path, progress=False).table.equals(res.table)  # reloaded, not recomputed


def _fake(bs, change, n_seeds=10, seed=0, start_gap=0.01, e1=4):
    """A gradalign result whose Ḋ₅ − D̄₆ cosine gap starts at `start_gap` (a tag-pattern offset) and grows by
    `change` over Stage 1; the other-alias cosine is level."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        off = rng.normal(0, 0.004)
        for ep in range(e1 + 1):
            for sub, base in (("d1consis", 0.3 + start_gap), ("d2consis", 0.3), ("d3consis", 0.3)):
                v = base + (off if sub == "d1consis" else 0) + rng.normal(0, 0.002)
                if sub == "d1consis":
                    v += change * ep / e1
                rows.append((f"s{s}_0", s, 0, 1, ep, sub, "grad_cos", v))
                rows.append((f"s{s}_0", s, 0, 1, ep, sub, "grad_cos_other", 0.2 + rng.normal(0, 0.002)))
            for sub in ("qd1consis", "qd2incons"):
                rows.append((f"s{s}_0", s, 0, 1, ep, sub, "acc", 0.5 + 0.1 * ep / e1))
    cfg = {"task": {"batch_size": bs, "stage1_epochs": e1}, "draws": 2}
    return Result("gradalign", f"fake{bs}", None, pd.DataFrame(rows, columns=COLUMNS), cfg, {})


def test_derived_metrics_read_like_their_definitions():
    t = gradalign.with_derived(_fake(8, 0.05).table)
    t = t[t.subset.isin(gradalign.SUBSETS)]
    piv = t.pivot_table(index=["seed_stage1", "epoch", "subset"], columns="metric", values="value")
    assert np.allclose(piv.grad_cos_specific, piv.grad_cos - piv.grad_cos_other)
    start = piv.xs(0, level="epoch").grad_cos
    for ep in (0, 2, 4):
        assert np.allclose(piv.xs(ep, level="epoch").grad_cos_change, piv.xs(ep, level="epoch").grad_cos - start)
    assert (piv.xs(0, level="epoch").grad_cos_change == 0).all()


def test_the_verdict_is_the_change_since_epoch_0_not_the_raw_gap():
    """A gap that was there at initialisation (tag pixels) and did not grow is not the claim: raw gap +0.03,
    change 0 -> null. A gap that Stage 1 grew at the smallest batch -> reproduced; one that shrank -> not."""
    status, text = gradalign.verdict_status([_fake(8, 0.0, start_gap=0.03, seed=1), _fake(512, 0.0, seed=2)])
    assert status == "null at our scale" and "gap +0.03" in text and "At batch 512" in text
    assert gradalign.verdict_status([_fake(8, 0.04, seed=3), _fake(512, 0.0, seed=4)])[0] == "reproduced"
    assert gradalign.verdict_status([_fake(8, -0.04, seed=5)])[0] == "not reproduced"
    assert gradalign.verdict_status([_fake(8, 0.04, n_seeds=1)])[0] == "too few seeds"
    assert gradalign.verdict_status([])[0] == "not attempted"
    assert "**reproduced**" in gradalign.verdict([_fake(8, 0.04, seed=3)])


def test_summary_table_and_figure():
    rs = [_fake(32, 0.02, seed=1), _fake(8, 0.04, seed=2), _fake(128, 0.0, seed=3)]
    s = gradalign.summary(rs)
    assert list(s.batch_size) == [8, 32, 128] and (s.n_seeds == 10).all()
    assert s.grad_cos_change_gap.to_numpy() == pytest.approx([0.04, 0.02, 0.0], abs=0.006)
    assert s.grad_cos_gap_epoch0.to_numpy() == pytest.approx([0.01] * 3, abs=0.006)
    assert (s.grad_cos_d1consis_lo <= s.grad_cos_d1consis).all()
    assert (s.grad_cos_d1consis <= s.grad_cos_d1consis_hi).all()
    shown = gradalign.table(s)
    assert list(shown["paper (Pythia-1B) Ḋ₅ vs D̄₆"]) == ["no number", "no number", "0.231 vs 0.217"]
    for col in ("cos Ḋ₅", "cos D̄₆", "cos D̃₇", "gap change since epoch 0", "change 95% CI", "alias-specific gap"):
        assert col in shown
    import matplotlib

    matplotlib.use("Agg")
    from iml.report import plots

    fig = plots.gradalign_figure(s, gradalign.curves(rs))
    assert len(fig.axes) == 3
    assert len(plots.gradalign_figure(s).axes) == 2


def test_smoke_sweep_is_found_and_judges_claim_5(tmp_path):
    rs = gradalign.run_sweep("smoke", root=tmp_path, progress=False)
    assert [r.config["task"]["batch_size"] for r in rs] == [8, 32]
    assert gradalign.finished("smoke", root=tmp_path) is not None and gradalign.finished("cpu", root=tmp_path) is None
    assert gradalign.find_sweep([tmp_path]) is None  # smoke sweeps are never the book's evidence
    fake = [_fake(8, 0.04, seed=3), _fake(512, 0.0, seed=4)]
    row = claims.claims_table({"gradalign": ("cpu sweep", fake)}).set_index("#").loc[5]
    assert row["status"] == "reproduced (analogue)" and row["scale"] == "cpu sweep, batch sizes 8, 512"
    assert "0.231" in row["paper"] and "MNIST grid analogue" in row["this book"]
    assert claims.claims_table({}).set_index("#").loc[5, "status"] == "not attempted"


def test_cli_reports_bad_input(tmp_path, capsys):
    assert cli.main(["sweep", "gradalign", "--sweep", "smoke", "--root", str(tmp_path), "--set", "n_seeds=0", "--quiet"]) == 2
    assert "n_seeds" in capsys.readouterr().err


def test_outcome_link_pairs_each_seed_with_the_iml_gap_of_its_own_stage1(tmp_path):
    """Seed s of a point is paired with seed s of the MNIST result whose config is the point's task: an IML
    gap that is exactly 2x each seed's alignment change gives r = 1; no MNIST result gives None."""
    from iml.core.results import ResultStore
    from iml.core.stats import paired_differences

    rs = [_fake(8, 0.04, seed=1), _fake(32, 0.02, seed=2)]
    assert gradalign.outcome_link(rs, root=tmp_path) is None
    for r in rs:
        align = paired_differences(gradalign.with_derived(r.table), "d1consis", "d2consis", "grad_cos_change", 4)
        rows = []
        for seed, d in zip(align.seed_stage1, align["diff"]):
            rows += [(f"s{seed}_0", seed, 0, 2, 10, "d1consis", "acc", 0.5 + 2 * d),
                     (f"s{seed}_0", seed, 0, 2, 10, "d2consis", "acc", 0.5)]
        store = ResultStore("mnist", r.config["task"], root=tmp_path)
        store.save_unit("u0", pd.DataFrame(rows, columns=COLUMNS))
        store.finalize(["u0"])
    frame, c = gradalign.outcome_link(rs, root=tmp_path)
    assert len(frame) == 20 and c["n"] == 20 and c["batch_sizes"] == [8, 32]
    assert np.allclose(frame["iml"], 2 * frame["align"])
    assert c["r"] == pytest.approx(1.0) and c["ci_low"] == pytest.approx(1.0)
    assert "Pearson r = +1.00" in gradalign.outcome_note((frame, c))
    import matplotlib

    matplotlib.use("Agg")
    from iml.report import plots

    assert len(plots.gradalign_outcome_figure(frame).axes) == 1


def test_trend_is_seed_paired_smaller_minus_larger_batch():
    small, large = _fake(8, 0.06, seed=1), _fake(512, 0.02, seed=2)
    t = gradalign.trend(small, large)
    assert (t["small"], t["large"], t["n_seeds"]) == (8, 512, 10)
    assert t["diff"] == pytest.approx(0.04, abs=0.006) and 0 < t["ci_low"] < t["diff"] < t["ci_high"]
    assert f"batch 8 minus batch 512: {t['diff']:+.4f}" in gradalign.verdict_status([large, small])[1]


def test_outcome_link_finds_the_mnist_result_of_the_same_recipe_with_other_seed_counts(tmp_path):
    """A 10-seed point pairs with the 5-seed MNIST result of the same Stage-1 recipe (seeds pair by number)."""
    from iml.core.results import ResultStore

    r = _fake(8, 0.04, seed=1)
    task = to_dict(mnist_grid.make_config("smoke", {"batch_size": 8, "stage1_epochs": 4, "n_seeds": 10}))
    r = Result("gradalign", "fake", None, r.table, {"task": task, "draws": 2}, {})
    assert gradalign.outcome_link([r], root=tmp_path) is None
    rows = [(f"s{s}_0", s, 0, 2, 10, sub, "acc", 0.5 + (0.1 * s if sub == "d1consis" else 0))
            for s in range(5) for sub in ("d1consis", "d2consis")]
    store = ResultStore("mnist", {**task, "n_seeds": 5}, root=tmp_path)
    store.save_unit("u0", pd.DataFrame(rows, columns=COLUMNS))
    store.finalize(["u0"])
    other = ResultStore("mnist", {**task, "n_seeds": 5, "lr": 0.5}, root=tmp_path)  # another recipe: ignored
    other.save_unit("u0", pd.DataFrame(rows, columns=COLUMNS))
    other.finalize(["u0"])
    frame, c = gradalign.outcome_link([r], root=tmp_path)
    assert sorted(frame.seed_stage1) == [0, 1, 2, 3, 4] and np.allclose(frame.sort_values("seed_stage1").iml,
                                                                         [0.0, 0.1, 0.2, 0.3, 0.4])
