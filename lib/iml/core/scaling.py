"""Model-size trends (paper claim 3: larger models, more IML) on any task whose sweep points are results of one
config at several sizes on the same stage-1 seeds. Two planned comparisons, both paired by seed: the largest
minus the smallest model's IML gap, and the slope of each seed's gap over log10(parameters). A task passes its
``n_params(config dict) -> int`` (the count its sizes are ordered and plotted by).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.core import power
from iml.core.config import ConfigError
from iml.core.stats import iml_gap, per_seed_gap, seed_interval
from iml.core.sweep import seed_paired_difference
from iml.core.verdicts import MIN_SEEDS, interval_status, judge, own_effect, seeds_note

__all__ = ["fmt_params", "check_points", "by_size", "trend", "slope", "summary", "table", "verdict_status", "verdict", "power_rows"]

Count = Callable[[dict], int]


def fmt_params(n: int) -> str:
    """A parameter count in short: 6.8k, 24k, 1.4M."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return str(n)


def check_points(sweeps: Mapping[str, Mapping], sweep: str, points, overrides, size_keys: Sequence[str],
                 what: str) -> tuple[Mapping, list[tuple[int, int]], dict]:
    """(spec, points, fixed overrides) of model-size sweep `sweep`: the sweep's (or the given) points, each two
    integer sizes >= 1 (`what` names them, e.g. "(width, hidden)"), all different; overrides may not set a size."""
    if sweep not in sweeps:
        raise ConfigError("sweep", f"must be one of {sorted(sweeps)}, got {sweep!r}")
    spec = sweeps[sweep]
    pts = [tuple(p) for p in (points if points is not None else spec["points"])]
    if not pts:
        raise ConfigError("points", f"needs at least one {what} point")
    for p in pts:
        if len(p) != 2 or not all(_is_size(v) for v in p):
            raise ConfigError("points", f"each point is {what}, integers >= 1, got {p!r}")
    pts = [(int(a), int(b)) for a, b in pts]
    if len(set(pts)) != len(pts):
        raise ConfigError("points", f"points must differ, got {pts}")
    for key in size_keys:
        if key in (overrides or {}):
            raise ConfigError(key, "is set by the sweep's points; change the points instead")
    return spec, pts, {**spec.get("overrides", {}), **dict(overrides or {})}


def _is_size(v) -> bool:
    try:
        return not isinstance(v, bool) and float(v).is_integer() and v >= 1
    except (TypeError, ValueError):
        return False


def by_size(results: Sequence, n_params: Count) -> list:
    """The results, fewest parameters first."""
    return sorted(results, key=lambda r: n_params(r.config))


def trend(small, large, n_params: Count, level: float = 0.95) -> dict:
    """Gap of the larger model minus gap of the smaller one, paired by stage-1 seed (same data and data order),
    with a t-interval over seeds and the one-sided p for "larger model, more IML"."""
    out = seed_paired_difference(per_seed_gap(large.table), per_seed_gap(small.table), level)
    return {"small": n_params(small.config), "large": n_params(large.config), **out}


def per_seed_slopes(results: Sequence, n_params: Count) -> tuple[pd.Series, float]:
    """(per stage-1 seed: the least-squares slope of its gap over log10(parameters) across the sizes, the
    decades of parameters the sizes span), over the seeds every size holds."""
    rs = by_size(results, n_params)
    x = np.log10([n_params(r.config) for r in rs])
    if len(rs) < 2 or np.ptp(x) == 0:
        raise ValueError("a slope needs at least two model sizes with different parameter counts")
    gaps = pd.concat([per_seed_gap(r.table) for r in rs], axis=1, join="inner")
    if len(gaps) < 2:
        raise ValueError(f"the sizes share {len(gaps)} stage-1 seed(s); a slope needs at least 2")
    xc = x - x.mean()
    slopes = (gaps.to_numpy() - gaps.to_numpy().mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    return pd.Series(slopes, index=gaps.index), float(np.ptp(x))


def slope(results: Sequence, n_params: Count, level: float = 0.95) -> dict:
    """The IML gap's change per decade of parameters: a least-squares slope per stage-1 seed across the sizes,
    then a t-interval over seeds (one-sided p for a slope > 0)."""
    s, decades = per_seed_slopes(results, n_params)
    iv = seed_interval(s.to_numpy(), level)
    return {"slope": iv.mean, "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_one_sided": iv.p_one_sided,
            "n_seeds": iv.n, "sd": iv.sd, "decades": decades, "n_sizes": len(results)}


def summary(results: Sequence, n_params: Count, describe: Callable[[dict], dict]) -> pd.DataFrame:
    """One row per model size, fewest parameters first: `describe`'s size columns (``size``, ``params``,
    ``params_non_embedding`` and the task's own), the Stage-1 held-out accuracies and effect Ḋ₁QA₁ − D̄₂QA₂ at
    the end of Stage 1 (so an under-trained size is visible), and the IML gap Ḋ₅ − D̄₆ at the end with its CI."""
    rows = []
    for r in by_size(results, n_params):
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc")
        s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1)
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        rows.append({
            **describe(cfg), "stage1_epochs": e1, "stage2_epochs": cfg["stage2_epochs"],
            "stage1_acc_qd1consis": float(end1.get("qd1consis", np.nan)),
            "stage1_acc_qd2incons": float(end1.get("qd2incons", np.nan)),
            "stage1_gap": s1.gap, "stage1_ci_low": s1.ci_low, "stage1_ci_high": s1.ci_high,
            "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high, "p_one_sided": g.p_one_sided,
            "n_seeds": g.n_stage1, "config": r.hash,
        })
    return pd.DataFrame(rows)


def table(s: pd.DataFrame, size_name: str) -> pd.DataFrame:
    """:func:`summary` as the book shows it: rounded, CIs as intervals, the paper's symbols; `size_name` heads
    the ``size`` column (e.g. "width/hidden")."""
    ci = lambda lo, hi: [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(s[lo], s[hi])]  # noqa: E731
    return pd.DataFrame({
        size_name: s["size"],
        "parameters per seed": s["params"],
        "non-embedding": s["params_non_embedding"],
        "epochs (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_epochs"], s["stage2_epochs"])],
        "end of stage 1: Ḋ₁QA₁ acc": s["stage1_acc_qd1consis"].round(3),
        "end of stage 1: D̄₂QA₂ acc": s["stage1_acc_qd2incons"].round(3),
        "stage-1 gap Ḋ₁QA₁ − D̄₂QA₂": s["stage1_gap"].round(3),
        "stage-1 95% CI": ci("stage1_ci_low", "stage1_ci_high"),
        "IML gap Ḋ₅ − D̄₆": s["gap"].round(3),
        "IML 95% CI": ci("ci_low", "ci_high"),
        "p (one-sided)": [float(f"{p:.2g}") for p in s["p_one_sided"]],
        "seeds": s["n_seeds"], "config": s["config"],
        "paper": "no number",
    })


def verdict_status(results: Sequence, n_params: Count, unit: str = "parameters") -> tuple[str, str]:
    """(status, evidence) for claim 3 by the rules of :mod:`iml.core.verdicts`: (a) the largest − smallest
    difference, sized against the largest model's own gap, decides; (b) a slope whose CI is below 0 (the gap
    falls with size across all the sizes) makes the claim not reproduced, whatever (a) says. `unit` names what
`n_params` counts (e.g. "non-embedding parameters")."""
    rs = by_size(results, n_params)
    if len(rs) < 2:
        return "not attempted", "a trend needs at least two model sizes"
    t, s = trend(rs[0], rs[-1], n_params), slope(rs, n_params)
    g_large = iml_gap(rs[-1].table, "d1consis", "d2consis", metric="acc")
    status, need = judge(t["ci_low"], t["ci_high"], t["n_seeds"], t["sd"], own_effect(g_large))
    text = (f"(a) IML gap of the largest model ({fmt_params(t['large'])} {unit}) minus that of the smallest "
            f"({fmt_params(t['small'])}) = {t['diff']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] (held-out "
            f"accuracy, {t['n_seeds']} seeds paired, one-sided p = {t['p_one_sided']:.2g}). (b) Slope of the gap over "
            f"log10(parameters): {s['slope']:+.3f} per decade [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}] "
            f"({s['n_seeds']} seeds, {s['n_sizes']} sizes over {s['decades']:.1f} decades).")
    text += {"reproduced": "", "not reproduced": " The smallest model gave more IML.",
             "null at our scale": " The difference's CI includes 0.",
             "too few seeds": f" Too few seeds: {seeds_note(t['n_seeds'], need)}; the difference is set against the "
                              f"largest model's IML gap, {g_large.gap:+.3f}."}[status]
    if status != "too few seeds" and interval_status(s["ci_low"], s["ci_high"], s["n_seeds"]) == "not reproduced":
        status, text = "not reproduced", text + " Across all the sizes the gap falls with size, against the claim."
    return status, text


def verdict(results: Sequence, n_params: Count, unit: str = "parameters") -> str:
    """Markdown: the claim's two tests on a finished sweep, with its status (:func:`verdict_status`)."""
    status, text = verdict_status(results, n_params, unit)
    return (f"**Verdict on this sweep** (2 planned comparisons, both seed-paired: (a) the largest minus the smallest "
            f"model, which decides the status, and (b) the slope of the gap over log10(parameters); a 95% interval "
            f"above 0 with at least {MIN_SEEDS} seeds counts as reproduced): the paper's claim \"larger models give "
            f"more IML\": **{status}**. {text}")


def judge_claim(found: tuple[str, list], n_params: Count, task: str, unit: str = "parameters"
                ) -> tuple[str, str, str]:
    """(status, evidence, scale) of claim 3 on a found sweep ("<name> sweep", results), for the claims page."""
    label, rs = found
    status, text = verdict_status(rs, n_params, unit)
    sizes = ", ".join(fmt_params(n_params(r.config)) for r in by_size(rs, n_params))
    return status, f"{task}: {text}", f"{label}, {unit} per seed {sizes}"


def power_rows(label: str, results: Sequence, n_params: Count) -> list[dict]:
    """The seed-count rows of the two planned comparisons: largest − smallest model (sized against the largest
    model's gap) and the slope per decade of parameters."""
    rs = by_size(results, n_params)
    if len(rs) < 2:
        return []
    a, b = per_seed_gap(rs[0].table), per_seed_gap(rs[-1].table)
    common = a.index.intersection(b.index)
    secs = sum(power.seconds_per_seed(r) or 0 for r in rs) or None
    slopes, _ = per_seed_slopes(rs, n_params)
    what = f"model size ({label})"
    return [power.row(f"{what}: IML gap, {fmt_params(n_params(rs[-1].config))} − {fmt_params(n_params(rs[0].config))} "
                      f"parameters", b[common] - a[common], power.own(b), "IML gap of the largest model", secs),
            power.row(f"{what}: slope of the IML gap per decade of parameters", slopes, power.own(slopes),
                      "this result", secs)]
