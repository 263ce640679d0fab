"""Tag–consistency correlation α on the MNIST grid task (paper claim 10): how reliable must a tag be for IML?
The MNIST task runs at several α (qd1consis = m·α, qd1incons = m·(1 − α), qd2incons = m·α, qd2consis = m·(1 − α),
floor(fraction × n_aliases) aliases each), all else the preset's. Each point is an ordinary MNIST result, so the
α = 1 point of a sweep at the preset's seeds is that preset's result.
Design choices: book/design_notes.md (section `iml.mnist.alpha`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.core.config import ConfigError
from iml.core.stats import iml_gap, per_seed_gap
from iml.core import power
from iml.core.sweep import find_largest, finished_points, labelled, run_points, seed_paired_difference
from iml.core.verdicts import judge_gap, own_effect, seeds_note
from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid
from iml.mnist.batch_size import cost

__all__ = ["EXPERIMENT", "SWEEPS", "fractions_for", "configs", "alpha_of", "run_sweep", "finished", "find_sweep",
           "summary", "table", "verdict_status", "verdict", "POINTS", "point_label", "prepared"]

EXPERIMENT = mnist_grid.EXPERIMENT
"""Every point of an α sweep is an ordinary MNIST result."""

SWEEPS: dict[str, dict[str, Any]] = {
    "smoke": dict(preset="smoke", points=[0.5, 1.0]),
    # 43 seeds per point, sized in steps by the measured spread (claims page, seed counts): the 10-seed sweep
    # asked for 27 (SD 0.14 at α = 1); at 27 the α = 0.5 point's SD (0.125) asked for 35 to resolve a third of
    # the α = 1 gap (+0.130); at 35 it asked for 43 (α = 1 gap +0.118). 43 was fixed as the last step before it
    # ran. A point costs 1-2 min per 5 seeds on one thread.
    "cpu": dict(preset="cpu", overrides={"n_seeds": 43}, points=[0.5, 0.7, 0.9, 1.0]),
    "gpu": dict(preset="gpu", points=[0.5, 0.7, 0.8, 0.9, 0.95, 1.0]),
}
"""α sweeps: the MNIST preset at each α (the paper's Pythia-2.8B sweep used 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)."""

_TAGGED = ("qd1consis", "qd1incons", "qd2incons", "qd2consis")


def fractions_for(alpha: float, base: mnist_grid.GridFractions) -> dict[str, float]:
    """Fraction overrides for `alpha`: each tag keeps its share m of the aliases (m1 = qd1consis + qd1incons,
    m2 = qd2incons + qd2consis of `base`), split α : 1 − α between the subsets where the tag is right and
    wrong. Values are rounded to 12 digits, so that 0.35 × 0.5 is 0.175 and floor(0.175 × 60) is 10."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.5 <= alpha <= 1:
        raise ConfigError("points", f"each α must be a number in [0.5, 1], got {alpha!r}")
    m1, m2 = base.qd1consis + base.qd1incons, base.qd2incons + base.qd2consis
    r = lambda x: round(x, 12)  # noqa: E731
    return {"fractions.qd1consis": r(m1 * alpha), "fractions.qd1incons": r(m1 * (1 - alpha)),
            "fractions.qd2incons": r(m2 * alpha), "fractions.qd2consis": r(m2 * (1 - alpha))}


def configs(sweep: str = "cpu", points: Sequence[float] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[mnist_grid.Config]:
    """One MNIST config per α of `sweep` (or the given `points`), smallest α first."""
    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {sorted(SWEEPS)}, got {sweep!r}")
    spec = SWEEPS[sweep]
    pts = list(points if points is not None else spec["points"])
    if not pts:
        raise ConfigError("points", "needs at least one α")
    if len(set(pts)) != len(pts):
        raise ConfigError("points", f"α values must differ, got {pts}")
    for key in (overrides or {}):
        if key.startswith("fractions.q"):
            raise ConfigError(key, "is set by the sweep's α; change the points instead")
    fixed = {**spec.get("overrides", {}), **dict(overrides or {})}
    base = mnist_grid.make_config(spec["preset"], fixed)
    return [mnist_grid.make_config(spec["preset"], {**fixed, **fractions_for(a, base.fractions)})
            for a in sorted(pts)]


def alpha_of(result) -> float:
    """α of an MNIST result, from its fractions: the Ḋefine tag's share that is consistent."""
    f = result.config["fractions"]
    m1 = f["qd1consis"] + f.get("qd1incons", 0.0)
    return round(f["qd1consis"] / m1, 6) if m1 else math.nan


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every α of the sweep, smallest first (``workers`` > 1: in parallel processes)."""
    return run_points(mx.run, EXPERIMENT, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def finished(sweep: str = "gpu", root=None, points=None) -> list | None:
    """Every α of `sweep` under `root` if all are finished, else None (a sweep is shown whole)."""
    return finished_points(EXPERIMENT, configs(sweep, points), root)


def find_sweep(roots: Sequence) -> tuple[str, list] | None:
    """(sweep name, results) of the largest finished sweep under any of `roots`, or None."""
    return find_largest(finished, roots)


def summary(results: Sequence) -> pd.DataFrame:
    """One row per α: the IML gap Ḋ₅ − D̄₆ with its CI, the aliases per tagged subset, the held-out accuracy of
    every tagged X1 subset at the end of Stage 1, and the Stage-1 *tag reliance* Ḋ consistent − D̄ consistent
    (where both exist): two kinds of true definitions that differ only in their tag, so a positive value
    means the tag, not the definition's agreement with the alias's trained cells, decided how much a
    definition was used. (Held-out accuracy cannot show whether *false* definitions were followed: a false
    definition shows another alias's grid, which agrees with a held-out cell about half the time.)"""
    rows = []
    for r in sorted(results, key=alpha_of):
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc")
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        n = cfg["n_aliases"]
        row = {"alpha": alpha_of(r), "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high,
               "p_one_sided": g.p_one_sided, "n_seeds": g.n_stage1}
        for s in _TAGGED:
            row[f"n_{s}"] = int(math.floor(cfg["fractions"].get(s, 0.0) * n + 1e-9))
            row[f"stage1_acc_{s}"] = float(end1.get(s, np.nan))
        try:
            c = iml_gap(t, "qd1consis", "qd2consis", metric="acc", epoch=e1)
            row.update(reliance=c.gap, reliance_ci_low=c.ci_low, reliance_ci_high=c.ci_high)
        except ValueError:  # α = 1: no consistent D̄efine definitions
            row.update(reliance=np.nan, reliance_ci_low=np.nan, reliance_ci_high=np.nan)
        row["config"] = r.hash
        rows.append(row)
    return pd.DataFrame(rows)


def table(s: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it."""
    def ci(lo, hi):
        return ["" if np.isnan(a) else f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(s[lo], s[hi])]

    def acc(sub):
        return ["–" if np.isnan(v) else f"{v:.3f}" for v in s[f"stage1_acc_{sub}"]]

    return pd.DataFrame({
        "α": s["alpha"],
        "aliases Ḋ cons / incons, D̄ incons / cons": [f"{a} / {b}, {c} / {d}" for a, b, c, d in zip(
            s["n_qd1consis"], s["n_qd1incons"], s["n_qd2incons"], s["n_qd2consis"])],
        "IML gap Ḋ₅ − D̄₆": s["gap"].round(3),
        "IML 95% CI": ci("ci_low", "ci_high"),
        "p (one-sided)": [float(f"{p:.2g}") for p in s["p_one_sided"]],
        "stage-1 acc Ḋ cons": acc("qd1consis"), "Ḋ incons": acc("qd1incons"),
        "D̄ incons": acc("qd2incons"), "D̄ cons": acc("qd2consis"),
        "tag reliance Ḋ cons − D̄ cons": s["reliance"].round(3),
        "its 95% CI": ci("reliance_ci_low", "reliance_ci_high"),
        "seeds": s["n_seeds"], "config": s["config"],
        "paper": ["no IML (no number)" if a == 0.5 else "no number" for a in s["alpha"]],
    })


def verdict_status(results: Sequence) -> tuple[str, str]:
    """(status, evidence) for paper claim 10, "no IML at α = 0.5", from a finished sweep.

    *not reproduced* when the gap at α = 0.5 has a CI that excludes 0; *reproduced* when it includes 0 and the
    sweep has the power to see IML: the gap at the largest α has a CI above 0 and exceeds the α = 0.5 gap
    (seed-paired difference, CI above 0); otherwise *null at our scale* (a null at 0.5 that the sweep could
    not have told from no IML at all)."""

    rs = sorted(results, key=alpha_of)
    if not rs or alpha_of(rs[0]) != 0.5:
        return "not attempted", "the sweep has no point at α = 0.5"
    g0 = iml_gap(rs[0].table, "d1consis", "d2consis", metric="acc")
    text = (f"MNIST grid analogue: IML gap Ḋ₅ − D̄₆ at α = 0.5: {g0.gap:+.3f} [{g0.ci_low:+.3f}, {g0.ci_high:+.3f}] "
            f"({g0.n_stage1} seeds)")
    top = rs[-1] if len(rs) > 1 else None
    g1 = iml_gap(top.table, "d1consis", "d2consis", metric="acc") if top is not None else None
    ref = own_effect(g1) if g1 is not None else None
    s0, need0 = judge_gap(g0, ref)  # the null at 0.5 must be able to tell "none" from the top α's IML
    if s0 == "too few seeds":
        return "too few seeds", text + f": {seeds_note(g0.n_stage1, need0)}."
    if s0 != "null at our scale":
        return "not reproduced", text + ": a gap without a reliable tag."
    if top is None:
        return "null at our scale", text + "; no larger α to show that the sweep can detect IML."
    d = seed_paired_difference(per_seed_gap(top.table), per_seed_gap(rs[0].table))
    text += (f"; at α = {alpha_of(top):g}: {g1.gap:+.3f} [{g1.ci_low:+.3f}, {g1.ci_high:+.3f}]; α = {alpha_of(top):g} "
             f"minus α = 0.5, seed-paired: {d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]")
    s1, need1 = judge_gap(g1, ref)
    if s1 == "too few seeds":
        return "too few seeds", text + f"; at the top α: {seeds_note(g1.n_stage1, need1)}."
    if s1 == "reproduced" and d["ci_low"] > 0:
        return "reproduced", text + "."
    return "null at our scale", text + ": the sweep cannot tell the α = 0.5 null from no IML at all."


def verdict(results: Sequence) -> str:
    status, text = verdict_status(results)
    return (f"**Verdict** (3 planned comparisons: a CI including 0 at α = 0.5, with IML at the largest α and a "
            f"seed-paired rise from 0.5 to it, counts as reproduced) on the "
            f"paper's claim \"no IML at α = 0.5\": **{status}**. {text}")


POINTS = "values of α"
"""What the points of a sweep are, in the book's words."""


def point_label(result) -> str:
    """How the book names one point of a sweep."""
    return f"α = {alpha_of(result):g}"


def prepared(sweep: str) -> str:
    """What a sweep that has not been run yet would compute (the notebook's headline note)."""
    return f"MNIST {SWEEPS[sweep]['preset']} preset, α = " + ", ".join(f"{a:g}" for a in SWEEPS[sweep]["points"])


# ----------------------------------------------------------------------------------------------
# The study interface of the claims page (iml.core.study)
# ----------------------------------------------------------------------------------------------

name = "alpha"
domain = "vision"
tested_on = "MNIST grid (ConvNet)"
paper_note = None


def find(roots: Sequence) -> tuple[str, list] | None:
    return labelled(find_sweep(roots))


def judge_claim(claim, found: tuple[str, list]) -> tuple[str, str, str]:
    name, rs = found
    status, text = verdict_status(rs)
    return status, text, f"{name}, α = {', '.join(f'{alpha_of(r):g}' for r in rs)}"


def power_rows(found: tuple[str, list]) -> list[dict]:
    """The α = 0.5 null, sized against the largest α's gap, and that gap."""
    name, rs = found
    rs = sorted(rs, key=alpha_of)
    if len(rs) < 2 or alpha_of(rs[0]) != 0.5:
        return []
    top = per_seed_gap(rs[-1].table)
    label = f"α ({name})"
    return [power.row(f"{label}: IML gap at α = 0.5", per_seed_gap(rs[0].table), power.own(top),
                      f"IML gap at α = {alpha_of(rs[-1]):g}", power.seconds_per_seed(rs[0])),
            power.row(f"{label}: IML gap at α = {alpha_of(rs[-1]):g}", top, power.own(top), "this result",
                      power.seconds_per_seed(rs[-1]))]
