"""The IML gap statistics: t-intervals over stage-1 seeds (stage-2 seeds averaged inside each)."""
import math

import numpy as np
import pandas as pd
import pytest

from iml.core.results import COLUMNS
from iml.core.stats import (correlation, half_width, iml_gap, paired_differences, seed_interval, seeds_needed)


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
    r = iml_gap(t)
    assert r.gap == pytest.approx(0.2)
    assert r.n_stage1 == 2 and r.n_runs == 4 and r.epoch == 30


def test_interval_is_students_t_on_per_seed_means():
    t = _table([[0.1, 0.3], [0.0], [0.05, 0.05, 0.2]])
    r = iml_gap(t)
    means = np.array([0.2, 0.0, 0.1])
    se = means.std(ddof=1) / math.sqrt(3)
    assert r.ci_high - r.gap == pytest.approx(4.302653 * se, rel=1e-5)  # t_{0.975, df=2}
    assert r.sd_stage1 == pytest.approx(means.std(ddof=1))


def test_clear_positive_gap_is_significant():
    rng = np.random.default_rng(0)
    t = _table([list(0.05 + 0.01 * rng.standard_normal(3)) for _ in range(10)])
    r = iml_gap(t)
    assert r.ci_low > 0 and r.p_one_sided < 0.01


def test_null_gap_is_not_significant():
    rng = np.random.default_rng(1)
    t = _table([list(0.02 * rng.standard_normal(3)) for _ in range(10)])
    r = iml_gap(t)
    assert r.ci_low < 0 < r.ci_high and r.p_one_sided > 0.05


def test_nested_runs_are_not_pseudo_replicates():
    # one stage-1 seed with a huge positive gap, repeated in many stage-2 runs, and others near zero:
    # pooling runs would call this significant; the seed-level interval must not.
    t = _table([[0.3] * 20, [0.0], [-0.02], [0.01], [-0.01]])
    r = iml_gap(t)
    assert r.ci_low <= 0.0
    pooled = paired_differences(t, "d1consis", "d2consis", "EM")["diff"]
    pooled_se = pooled.std(ddof=1) / np.sqrt(len(pooled))
    assert pooled.mean() - 1.96 * pooled_se > 0  # the naive analysis would have claimed an effect


def test_missing_subset_is_an_error():
    t = _table([[0.1]])
    with pytest.raises(ValueError):
        iml_gap(t, "d1consis", "d3consis")


def test_one_stage1_seed_gives_no_interval_and_no_test():
    # many stage-2 seeds of ONE stage-1 model: still a single replicate
    r = iml_gap(_table([[0.2, 0.21, 0.19, 0.2]]))
    assert r.gap == pytest.approx(0.2)
    assert np.isnan(r.ci_low) and np.isnan(r.ci_high) and np.isnan(r.p_one_sided)
    assert r.n_stage1 == 1


# ---- coverage: the interval must be a 95% interval at the seed counts the book uses -------------------

def _nested(rng, reps, k, n_s2=2, sd_between=0.05, sd_within=0.03, gap=0.0):
    """Per-run gaps of `reps` synthetic experiments: k stage-1 seeds x n_s2 stage-2 seeds (nested)."""
    seed_effect = gap + sd_between * rng.standard_normal((reps, k, 1))
    return seed_effect + sd_within * rng.standard_normal((reps, k, n_s2))


def _percentile_bootstrap(runs, rng, n_boot=1000):
    """The method the book used before: resample stage-1 seeds, then stage-2 seeds inside; percentiles."""
    k, n_s2 = runs.shape
    pick = rng.integers(0, k, (n_boot, k))
    inner = rng.integers(0, n_s2, (n_boot, k, n_s2))
    means = runs[pick[..., None], inner].mean(axis=(1, 2))
    return np.quantile(means, [0.025, 0.975])


@pytest.mark.parametrize("k", [5, 10, 20])
def test_interval_covers_the_true_gap_95_percent_of_the_time(k):
    rng = np.random.default_rng(k)
    sims = _nested(rng, 2000, k, gap=0.02)
    hits = 0
    for runs in sims:
        iv = seed_interval(runs.mean(axis=1))
        hits += iv.ci_low <= 0.02 <= iv.ci_high
    assert 0.93 <= hits / 2000 <= 0.97


def test_the_percentile_bootstrap_fails_the_coverage_test_at_5_seeds():
    # why the book changed method: the same test fails for what it used before
    rng = np.random.default_rng(5)
    sims = _nested(rng, 2000, 5)
    hits = sum(lo <= 0.0 <= hi for lo, hi in (_percentile_bootstrap(r, rng) for r in sims))
    assert hits / 2000 < 0.93


def test_iml_gap_matches_the_coverage_tested_interval_on_a_table():
    rng = np.random.default_rng(3)
    runs = _nested(rng, 1, 6, n_s2=3)[0]
    r = iml_gap(_table([list(row) for row in runs]))
    iv = seed_interval(runs.mean(axis=1))
    assert (r.gap, r.ci_low, r.ci_high, r.p_one_sided) == pytest.approx((iv.mean, iv.ci_low, iv.ci_high,
                                                                         iv.p_one_sided))


def test_false_positive_rate_of_the_one_sided_test_is_at_most_5_percent():
    rng = np.random.default_rng(11)
    ps = np.array([seed_interval(r.mean(axis=1)).p_one_sided for r in _nested(rng, 2000, 10)])
    assert 0.03 <= (ps < 0.05).mean() <= 0.07


# ---- power: seeds chosen from the measured spread ---------------------------------------------------

def test_seeds_needed_gives_a_half_width_of_a_third_of_the_effect():
    k = seeds_needed(sd=0.1, effect=0.1)
    assert half_width(0.1, k) <= 0.1 / 3 < half_width(0.1, k - 1)
    assert seeds_needed(sd=0.001, effect=0.1) == 10  # never fewer than a verdict needs
    assert seeds_needed(sd=0.1, effect=0.0, k_max=50) == 51  # no effect: no count suffices


def test_zero_spread_gives_a_zero_width_interval():
    iv = seed_interval([0.0, 0.0, 0.0])
    assert iv.ci_low == iv.ci_high == 0.0 and iv.p_one_sided == 1.0


def test_correlation_interval():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200)
    c = correlation(x, x + rng.standard_normal(200))
    assert c["ci_low"] < 1 / math.sqrt(2) < c["ci_high"] and c["n"] == 200
    assert math.isnan(correlation([1, 2, 3], [1, 2, 3])["r"])
