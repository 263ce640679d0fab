"""Seed counts chosen by power: for every planned comparison a verdict rests on, the measured between-seed SD,
the effect the verdict is about, and the stage-1 seeds that give a 95% half-width of a third of it.

The rule is :func:`iml.core.verdicts.needed` with :func:`iml.core.verdicts.reference_effect` (the paper's value where it
has one, else the effect measured here when its interval excludes 0); a trend or the α = 0.5 null is set
against the IML gap it would have to erase (the smallest batch's, the largest α's). A null with no reference
is bounded by its interval instead. The table is part of the claims page (:func:`iml.report.claims.seed_counts_markdown`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iml.core.stats import half_width, seed_interval
from iml.core.verdicts import needed, reference_effect

__all__ = ["row", "own", "seconds_per_seed", "markdown"]


def row(what: str, per_seed, effect: float | None, effect_from: str, seconds_per_seed: float | None,
        floor: str | None = None) -> dict:
    """One line of the table from the per-stage-1-seed values of a comparison."""
    iv = seed_interval(np.asarray(per_seed, float))
    need = None if floor or effect is None else needed(iv.sd, effect)
    cost = (need * seconds_per_seed / 60) if need and need <= 400 and seconds_per_seed else None
    return {"comparison": what, "seeds": iv.n, "mean": iv.mean, "ci_low": iv.ci_low, "ci_high": iv.ci_high,
            "sd": iv.sd, "half_width": half_width(iv.sd, iv.n) if iv.n > 1 else math.nan, "effect": effect,
            "effect_from": effect_from if effect is not None else "none: a null, bounded by its interval",
            "needed": need, "floor": floor, "enough": need is not None and iv.n >= need,
            "minutes_needed": None if cost is None else round(cost, 1)}


def seconds_per_seed(result) -> float | None:
    """Compute time per stage-1 seed: the units' own wall times (a resumed run's last wall time omits the units
    it took over), else the result's wall time."""
    m = result.meta or {}
    units = [v for v in (m.get("unit_wall_time_s") or {}).values() if v]
    wall = sum(units) if units else (m.get("wall_time_s") or m.get("total_unit_wall_s"))
    n = result.table["seed_stage1"].nunique()
    return float(wall) / n if wall and n else None


def own(x: pd.Series, paper_value: float = math.nan) -> float | None:
    iv = seed_interval(x.to_numpy())
    return reference_effect(paper_value, iv.mean, iv.ci_low, iv.ci_high)


def markdown(t: pd.DataFrame) -> str:
    """The table as the claims page shows it."""
    if t.empty:
        return "*No results to size.*"

    def f(v, fmt):
        return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = ["| comparison | seeds | mean [95% CI] | SD between seeds | effect sized for (from) | seeds needed | "
             "enough? | minutes for them |", "|---|---|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        if isinstance(r["floor"], str):
            need_s, enough = f"– (at the {r['floor']}: uninformative)", "–"
        elif r["needed"] is None or r["needed"] != r["needed"]:
            need_s, enough = "– (a null)", "–"
        else:
            need_s = "> 400" if r["needed"] > 400 else str(int(r["needed"]))
            enough = "yes" if r["enough"] else "**no**"
        eff = "–" if r["effect"] is None or r["effect"] != r["effect"] else f"{r['effect']:+.4f}"
        lines.append(f"| {r['comparison']} | {r['seeds']} | {r['mean']:+.4f} [{f(r['ci_low'], '+.4f')}, "
                     f"{f(r['ci_high'], '+.4f')}] | {f(r['sd'], '.4f')} | {eff} ({r['effect_from']}) | {need_s} | "
                     f"{enough} | {f(r['minutes_needed'], '')} |")
    return "\n".join(lines)
