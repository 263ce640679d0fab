"""The IML gap statistics: hierarchical bootstrap over stage-1 seeds."""
import numpy as np
import pandas as pd
import pytest

from iml.results import COLUMNS
from iml.stats import hierarchical_bootstrap, iml_gap, paired_differences


def _table(gaps_by_s1, base=0.3, metric="EM", epoch=30):
    rows = []
    for s1, gaps in enumerate(gaps_by_s1):
        for s2, g in enumerate(gaps):
            rid = f"{s1}-{s2}"
            rows.append([rid, s1, s2, 2, epoch, "d1consis", metric, base + g])
            rows.append([rid, s1, s2, 2, epoch, "d2consis", metric, base])
            rows.append([rid, s1, s2, 1, 20, "d1consis", metric, 0.0])  # earlier epoch: ignored
            rows.append([rid, s1, s2, 1, 20, "d2consis", metric, 0.0])
    return pd.DataFrame(rows, columns=COLUMNS)


def test_gap_mean_weights_stage1_seeds_equally():
    # seed 0 has 3 stage-2 runs with gap 0.1, seed 1 one run with gap 0.3: mean of seed means = 0.2
    t = _table([[0.1, 0.1, 0.1], [0.3]])
    r = iml_gap(t, n_boot=2000)
    assert r.gap == pytest.approx(0.2)
    assert r.n_stage1 == 2 and r.n_runs == 4 and r.epoch == 30


def test_clear_positive_gap_is_significant():
    rng = np.random.default_rng(0)
    t = _table([list(0.05 + 0.01 * rng.standard_normal(3)) for _ in range(10)])
    r = iml_gap(t)
    assert r.ci_low > 0 and r.p_one_sided < 0.01 and r.t_p_one_sided < 0.01


def test_null_gap_is_not_significant():
    rng = np.random.default_rng(1)
    t = _table([list(0.02 * rng.standard_normal(3)) for _ in range(10)])
    r = iml_gap(t)
    assert r.ci_low < 0 < r.ci_high and r.p_one_sided > 0.05


def test_nested_runs_are_not_pseudo_replicates():
    # one stage-1 seed with a huge positive gap, repeated in many stage-2 runs, and others near zero:
    # pooling runs would call this significant; the hierarchical CI must not.
    t = _table([[0.3] * 20, [0.0], [-0.02], [0.01], [-0.01]])
    r = iml_gap(t)
    assert r.ci_low <= 0.0
    pooled = paired_differences(t, "d1consis", "d2consis", "EM")["diff"]
    pooled_se = pooled.std(ddof=1) / np.sqrt(len(pooled))
    assert pooled.mean() - 1.96 * pooled_se > 0  # the naive analysis would have claimed an effect


def test_bootstrap_is_seeded():
    d = paired_differences(_table([[0.1, 0.2], [0.0, 0.05], [0.3]]), "d1consis", "d2consis", "EM")
    a = hierarchical_bootstrap(d, n_boot=500, seed=3)
    b = hierarchical_bootstrap(d, n_boot=500, seed=3)
    assert np.array_equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 0.3


def test_missing_subset_is_an_error():
    t = _table([[0.1]])
    with pytest.raises(ValueError):
        iml_gap(t, "d1consis", "d3consis")


def test_one_stage1_seed_gives_no_interval_and_no_test():
    # many stage-2 seeds of ONE stage-1 model: still a single replicate
    r = iml_gap(_table([[0.2, 0.21, 0.19, 0.2]]))
    assert r.gap == pytest.approx(0.2)
    assert np.isnan(r.ci_low) and np.isnan(r.ci_high) and np.isnan(r.p_one_sided) and np.isnan(r.t_p_one_sided)
    assert r.n_stage1 == 1
