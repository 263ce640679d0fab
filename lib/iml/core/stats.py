"""Statistics for the IML gap: t-intervals over stage-1 seeds, stage-2 seeds averaged inside them.

The unit of replication is the stage-1 seed: stage-2 runs that start from one stage-1 model share its
randomness, so they are averaged inside their stage-1 seed first, and the k per-seed means are the sample.
The interval is Student's t on those k means (df = k - 1), exact for normal per-seed means at any k >= 2;
the book's Method page shows why the percentile bootstrap used before is not (it under-covers at small k).
The same interval serves every mean over seeds: gaps, seed-paired differences, per-seed probe accuracies.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = ["Interval", "GapResult", "seed_interval", "paired_differences", "per_seed_means", "iml_gap",
           "gap_table", "correlation", "half_width", "seeds_needed", "METHOD"]

METHOD = "t-interval over stage-1 seeds (stage-2 seeds averaged inside each)"
"""How every interval in the book is made; captions and the claims page quote it."""


@dataclasses.dataclass
class Interval:
    """The mean of k per-stage-1-seed values with its t-interval and the one-sided t-test of mean > 0."""

    mean: float
    ci_low: float
    ci_high: float
    p_one_sided: float
    n: int
    sd: float


def seed_interval(values, level: float = 0.95) -> Interval:
    """t-interval and one-sided t-test (mean > 0) for independent per-stage-1-seed values.

    With fewer than two values the interval, p and SD are NaN: one seed says nothing about seed-to-seed
    variation. A zero SD gives a zero-width interval (every seed agrees exactly; e.g. a floor).
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    k = len(x)
    if k == 0:
        raise ValueError("no per-seed values")
    m = float(x.mean())
    if k < 2:
        return Interval(m, math.nan, math.nan, math.nan, 1, math.nan)
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(k)
    if se == 0:
        return Interval(m, m, m, 0.0 if m > 0 else 1.0, k, 0.0)
    q = float(_st.t.ppf(0.5 + level / 2, df=k - 1))
    p = float(_st.t.sf(m / se, df=k - 1))
    return Interval(m, m - q * se, m + q * se, p, k, sd)


def half_width(sd: float, k: int, level: float = 0.95) -> float:
    """The t-interval's half-width for k seeds of between-seed SD `sd`."""
    return float(_st.t.ppf(0.5 + level / 2, df=k - 1)) * sd / math.sqrt(k)


def seeds_needed(sd: float, effect: float, fraction: float = 1 / 3, level: float = 0.95,
                 k_min: int = 10, k_max: int = 400) -> int:
    """The fewest stage-1 seeds (at least `k_min`) whose interval half-width is <= fraction x |effect|.

    Returns k_max + 1 when even k_max seeds are not enough (e.g. an effect of 0).
    """
    target = fraction * abs(effect)
    for k in range(max(2, k_min), k_max + 1):
        if half_width(sd, k, level) <= target:
            return k
    return k_max + 1


@dataclasses.dataclass
class GapResult:
    """One gap (value[a] - value[b]) with its 95% t-interval over stage-1 seeds and one-sided t-test of gap > 0."""

    a: str
    b: str
    metric: str
    epoch: float
    gap: float
    ci_low: float
    ci_high: float
    p_one_sided: float
    sd_stage1: float
    n_stage1: int
    n_stage2_per_stage1: float
    n_runs: int

    def as_row(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return (f"{self.a} - {self.b} ({self.metric}, epoch {self.epoch:g}): {self.gap:+.4f} "
                f"[95% CI {self.ci_low:+.4f}, {self.ci_high:+.4f}], one-sided p={self.p_one_sided:.3g}, "
                f"n={self.n_stage1} stage-1 seeds x {self.n_stage2_per_stage1:g} stage-2 seeds")


def paired_differences(table: pd.DataFrame, a: str, b: str, metric: str, epoch: float | None = None
                       ) -> pd.DataFrame:
    """Per run: value[a] - value[b] at `epoch` (default: the last epoch present for both).

    Returns columns seed_stage1, seed_stage2, diff.
    """
    t = table[(table["metric"] == metric) & (table["subset"].isin([a, b]))]
    if t.empty:
        raise ValueError(f"no rows for metric {metric!r} and subsets {a!r}/{b!r}")
    if epoch is None:
        ea = t[t.subset == a].epoch.max()
        eb = t[t.subset == b].epoch.max()
        epoch = min(ea, eb)
    t = t[np.isclose(t["epoch"].astype(float), float(epoch))]
    piv = t.pivot_table(index=["seed_stage1", "seed_stage2"], columns="subset", values="value", aggfunc="mean")
    if a not in piv or b not in piv:
        raise ValueError(f"epoch {epoch}: need both {a!r} and {b!r}; have {list(piv.columns)}")
    piv = piv.dropna(subset=[a, b])
    out = (piv[a] - piv[b]).rename("diff").reset_index()
    out.attrs["epoch"] = float(epoch)
    return out


def per_seed_means(frame: pd.DataFrame, value: str = "diff") -> pd.Series:
    """`value` averaged over stage-2 seeds inside each stage-1 seed (index: seed_stage1)."""
    return frame.groupby("seed_stage1", sort=True)[value].mean()


def per_seed_gap(table: pd.DataFrame, a: str = "d1consis", b: str = "d2consis", metric: str = "acc",
                 epoch: float | None = None) -> pd.Series:
    """The gap a − b of each stage-1 seed (stage-2 seeds averaged inside it; index: seed_stage1): what seed-paired
    comparisons across the points of a sweep subtract."""
    return per_seed_means(paired_differences(table, a, b, metric, epoch))


def iml_gap(table: pd.DataFrame, a: str = "d1consis", b: str = "d2consis", metric: str = "EM",
            epoch: float | None = None, level: float = 0.95) -> GapResult:
    """The IML gap a - b: mean over stage-1 seeds, t-interval and one-sided t-test (see module doc)."""
    d = paired_differences(table, a, b, metric, epoch)
    iv = seed_interval(per_seed_means(d), level)
    n_s2 = d.groupby("seed_stage1").size().mean()
    return GapResult(a=a, b=b, metric=metric, epoch=d.attrs["epoch"], gap=iv.mean, ci_low=iv.ci_low,
                     ci_high=iv.ci_high, p_one_sided=iv.p_one_sided, sd_stage1=iv.sd, n_stage1=iv.n,
                     n_stage2_per_stage1=float(n_s2), n_runs=int(len(d)))


def gap_table(table: pd.DataFrame, pairs: list[tuple[str, str]], metrics: list[str] | None = None,
              epoch: float | None = None, **kw) -> pd.DataFrame:
    """Several gaps as a DataFrame (the table under every figure)."""
    metrics = metrics or sorted(table["metric"].unique())
    rows = []
    for m in metrics:
        for a, b in pairs:
            try:
                rows.append(iml_gap(table, a, b, m, epoch, **kw).as_row())
            except ValueError:
                continue
    return pd.DataFrame(rows)


def correlation(x, y, level: float = 0.95) -> dict:
    """Pearson r of paired per-seed values with the Fisher-z interval (n - 3 df): dict(r, ci_low, ci_high, n)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 4 or x.std() == 0 or y.std() == 0:
        return {"r": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    r = float(np.corrcoef(x, y)[0, 1])
    z, q = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12)), float(_st.norm.ppf(0.5 + level / 2))
    return {"r": r, "ci_low": math.tanh(z - q / math.sqrt(n - 3)), "ci_high": math.tanh(z + q / math.sqrt(n - 3)),
            "n": n}
