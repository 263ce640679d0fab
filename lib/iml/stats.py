"""Statistics for the IML gap: hierarchical bootstrap over stage-1 seeds, stage-2 seeds nested.

Why hierarchical: stage-2 runs that start from the same stage-1 model share its randomness, so they
are not independent replicates (the reference code pooled them, which shrinks its error bars). The unit
of replication is the stage-1 seed. We resample stage-1 seeds with replacement, then stage-2 seeds
with replacement inside each, and average (two-stage cluster bootstrap).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

__all__ = ["GapResult", "paired_differences", "hierarchical_bootstrap", "iml_gap", "gap_table"]


@dataclasses.dataclass
class GapResult:
    """One gap (EM[a] - EM[b]) with its 95% CI and one-sided test of gap > 0."""

    a: str
    b: str
    metric: str
    epoch: float
    gap: float
    ci_low: float
    ci_high: float
    p_one_sided: float
    t_p_one_sided: float
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


def hierarchical_bootstrap(diffs: pd.DataFrame, n_boot: int = 10_000, seed: int = 0,
                           value: str = "diff") -> np.ndarray:
    """Bootstrap distribution of the grand mean: resample stage-1 seeds, then stage-2 seeds within."""
    rng = np.random.default_rng(seed)
    groups = [g[value].to_numpy(float) for _, g in diffs.groupby("seed_stage1", sort=True)]
    k = len(groups)
    if k == 0:
        raise ValueError("no runs to bootstrap")
    # Vectorised: for each bootstrap draw pick k groups, and inside each group draw len(group) members.
    sizes = np.array([len(g) for g in groups])
    maxn = sizes.max()
    padded = np.full((k, maxn), np.nan)
    for i, g in enumerate(groups):
        padded[i, : len(g)] = g
    pick = rng.integers(0, k, size=(n_boot, k))
    n_in = sizes[pick]  # (B, k)
    inner = (rng.random((n_boot, k, maxn)) * n_in[..., None]).astype(int)  # index < size of picked group
    vals = padded[pick[..., None], inner]  # (B, k, maxn)
    mask = np.arange(maxn)[None, None, :] < n_in[..., None]
    group_means = np.where(mask, vals, 0.0).sum(-1) / n_in
    return group_means.mean(-1)


def _t_one_sided_p(x: np.ndarray) -> float:
    """One-sided one-sample t-test p-value for mean(x) > 0 (x: per-stage-1-seed means)."""
    n = len(x)
    if n < 2:
        return float("nan")
    sd = x.std(ddof=1)
    if sd == 0:
        return 0.0 if x.mean() > 0 else 1.0
    t = x.mean() / (sd / math.sqrt(n))
    try:
        from scipy import stats as st

        return float(st.t.sf(t, df=n - 1))
    except ImportError:  # normal approximation
        return float(0.5 * math.erfc(t / math.sqrt(2)))


def iml_gap(table: pd.DataFrame, a: str = "d1consis", b: str = "d2consis", metric: str = "EM",
            epoch: float | None = None, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> GapResult:
    """The IML gap a - b with a hierarchical-bootstrap CI and two one-sided p-values.

    With fewer than two stage-1 seeds the CI and both p-values are NaN: one stage-1 seed cannot show an
    effect, however many stage-2 seeds or test questions it has.

    `p_one_sided` is the bootstrap p (share of resampled means <= 0); `t_p_one_sided` is a t-test on the
    per-stage-1-seed means (stage-2 seeds averaged first), which never pools nested runs.
    """
    d = paired_differences(table, a, b, metric, epoch)
    per_s1 = d.groupby("seed_stage1")["diff"].mean().to_numpy()
    if len(per_s1) < 2:
        # One stage-1 seed says nothing about seed-to-seed variation: no interval, no test.
        lo = hi = p = float("nan")
    else:
        boot = hierarchical_bootstrap(d, n_boot=n_boot, seed=seed)
        alpha = (1 - level) / 2
        lo, hi = np.quantile(boot, [alpha, 1 - alpha])
        p = (1 + np.sum(boot <= 0)) / (len(boot) + 1)
    n_s2 = d.groupby("seed_stage1").size().mean()
    return GapResult(a=a, b=b, metric=metric, epoch=d.attrs["epoch"], gap=float(per_s1.mean()),
                     ci_low=float(lo), ci_high=float(hi), p_one_sided=float(p),
                     t_p_one_sided=_t_one_sided_p(per_s1), n_stage1=int(len(per_s1)),
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
