"""The verdict rules every page and the claims page apply (the Method page explains them).

A comparison gets a verdict only from at least ``MIN_SEEDS`` stage-1 seeds, and from at least as many as its
power asks for (:func:`needed`: a 95% half-width of a third of the effect it is about); with fewer it is *too
few seeds*, whatever its interval says. When both sides of a comparison sit at the metric's floor or ceiling
it is *uninformative (floor/ceiling)*: a zero gap there is no evidence either way. Otherwise the 95%
t-interval decides: above 0 *reproduced*, below 0 *not reproduced*, across 0 *null at our scale* (or
*not reproduced* at the paper's own scale). A claim the paper makes for language models that this book
tests only on the MNIST analogue carries the suffix " (analogue)" and is counted apart.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from iml.core.stats import GapResult, iml_gap, seeds_needed

__all__ = ["MIN_SEEDS", "BOUND_TOL", "STATUSES", "ANALOGUE", "reference_effect", "own_effect", "needed",
           "interval_status", "judge", "judge_gap", "at_bound", "gap_status", "worst", "for_domain", "seeds_note"]

MIN_SEEDS = 10
"""Stage-1 seeds a verdict needs (the brief's rule; power analyses choose more where the spread asks)."""
BOUND_TOL = 0.01
"""A side whose mean is within this of 0 (or 1) sits at the floor (ceiling) of a [0, 1] metric."""
ANALOGUE = " (analogue)"

STATUSES = ("reproduced", "reproduced (analogue)", "not reproduced", "not reproduced (analogue)",
            "null at our scale", "null at our scale (analogue)", "uninformative (floor/ceiling)",
            "too few seeds", "not attempted")
"""Every status a claim can get, in the order the claims page counts them."""

_ORDER = ("not reproduced", "not attempted", "too few seeds", "uninformative (floor/ceiling)",
          "null at our scale", "reproduced")


def reference_effect(paper_value: float, gap: float, ci_low: float, ci_high: float) -> float | None:
    """The effect a comparison's seeds are sized for: the paper's value where it has one, else the gap itself
    when its interval excludes 0; None for a null with no reference (it is reported with the interval that
    bounds it: no study can be sized for an effect nobody has seen)."""
    if paper_value == paper_value and paper_value is not None:
        return float(paper_value)
    if ci_low > 0 or ci_high < 0:
        return float(gap)
    return None


def own_effect(g: GapResult) -> float | None:
    """:func:`reference_effect` of a gap the paper gives no number for: the gap itself when its interval excludes 0."""
    return reference_effect(math.nan, g.gap, g.ci_low, g.ci_high)


def needed(sd: float, effect: float | None) -> int:
    """Stage-1 seeds a verdict on this comparison needs: MIN_SEEDS, or more when the between-seed SD asks for
    them to reach a half-width of a third of `effect` (``iml.core.stats.seeds_needed``)."""
    if effect is None or not (sd == sd) or effect == 0:
        return MIN_SEEDS
    return max(MIN_SEEDS, seeds_needed(sd, effect))


def seeds_note(n_seeds: int, need: int) -> str:
    """Why a comparison is *too few seeds*, in words."""
    if need > MIN_SEEDS:
        more = "more than 400" if need > 400 else str(need)
        return (f"{n_seeds} stage-1 seeds; its between-seed spread needs {more} for a 95% half-width of a third of "
                f"the effect (seed counts on the claims page)")
    return f"{n_seeds} stage-1 seeds; a verdict needs at least {MIN_SEEDS}"


def interval_status(ci_low: float, ci_high: float, n_seeds: int, paper_scale: bool = False,
                    need: int = MIN_SEEDS) -> str:
    """The status of one planned comparison from its 95% interval, its stage-1 seeds and the seeds it needs."""
    if n_seeds < max(MIN_SEEDS, need) or math.isnan(ci_low):
        return "too few seeds"
    if ci_low > 0:
        return "reproduced"
    if ci_high < 0 or paper_scale:
        return "not reproduced"
    return "null at our scale"


def judge(ci_low: float, ci_high: float, n_seeds: int, sd: float, effect: float | None,
          paper_scale: bool = False) -> tuple[str, int]:
    """(status, seeds needed) of one planned comparison whose seeds are sized for `effect` (None: a null with
    no reference, which needs MIN_SEEDS)."""
    need = needed(sd, effect)
    return interval_status(ci_low, ci_high, n_seeds, paper_scale, need), need


_OWN = object()


def judge_gap(g: GapResult, effect=_OWN, paper_scale: bool = False) -> tuple[str, int]:
    """:func:`judge` for an :func:`iml.core.stats.iml_gap` result, sized for `effect` (default: :func:`own_effect`)."""
    effect = own_effect(g) if effect is _OWN else effect
    return judge(g.ci_low, g.ci_high, g.n_stage1, g.sd_stage1, effect, paper_scale)


def at_bound(table: pd.DataFrame, a: str, b: str, metric: str, epoch: float) -> str | None:
    """"floor" / "ceiling" when both subsets' mean `metric` at `epoch` is within BOUND_TOL of 0 / 1, else None."""
    t = table[(table["metric"] == metric) & table["subset"].isin([a, b])
              & np.isclose(table["epoch"].astype(float), float(epoch))]
    means = t.groupby("subset")["value"].mean()
    if len(means) < 2:
        return None
    if (means <= BOUND_TOL).all():
        return "floor"
    if (means >= 1 - BOUND_TOL).all():
        return "ceiling"
    return None


def gap_status(table: pd.DataFrame, a: str, b: str, metric: str, epoch=None, paper_scale: bool = False,
               paper_value: float = math.nan) -> tuple[str, GapResult, int]:
    """(status, gap, seeds needed) for the planned comparison a − b; ValueError when the table lacks it.
    A floor or ceiling is uninformative however many seeds it has (more seeds cannot lift it)."""
    g = iml_gap(table, a, b, metric, epoch)
    if g.n_stage1 >= 2 and at_bound(table, a, b, metric, g.epoch):
        return "uninformative (floor/ceiling)", g, MIN_SEEDS
    status, need = judge_gap(g, reference_effect(paper_value, g.gap, g.ci_low, g.ci_high), paper_scale)
    return status, g, need


def worst(statuses) -> str:
    """The status of a claim made of several comparisons: the least favourable one."""
    statuses = [s.replace(ANALOGUE, "") for s in statuses]
    return min(statuses, key=_ORDER.index) if statuses else "not attempted"


def for_domain(status: str, analogue: bool) -> str:
    """Mark a verdict reached on the MNIST analogue for a claim the paper makes about language models."""
    base = status.replace(ANALOGUE, "")
    if analogue and base in ("reproduced", "not reproduced", "null at our scale"):
        return base + ANALOGUE
    return base
