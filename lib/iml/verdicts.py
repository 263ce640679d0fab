"""The verdict rules every page and the claims page apply (the Method page explains them).

A comparison gets a verdict only from at least ``MIN_SEEDS`` stage-1 seeds; with fewer it is *too few
seeds*, whatever its interval says. When both sides of a comparison sit at the metric's floor or ceiling
it is *uninformative (floor/ceiling)*: a zero gap there is no evidence either way. Otherwise the 95%
t-interval decides: above 0 *reproduced*, below 0 *not reproduced*, across 0 *null at our scale* (or
*not reproduced* at the paper's own scale). A claim the paper makes for language models that this book
tests only on the MNIST analogue carries the suffix " (analogue)" and is counted apart.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import GapResult, iml_gap

__all__ = ["MIN_SEEDS", "BOUND_TOL", "STATUSES", "ANALOGUE", "interval_status", "at_bound", "gap_status",
           "worst", "for_domain"]

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


def interval_status(ci_low: float, ci_high: float, n_seeds: int, paper_scale: bool = False) -> str:
    """The status of one planned comparison from its 95% interval and its number of stage-1 seeds."""
    if n_seeds < MIN_SEEDS or math.isnan(ci_low):
        return "too few seeds"
    if ci_low > 0:
        return "reproduced"
    if ci_high < 0 or paper_scale:
        return "not reproduced"
    return "null at our scale"


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


def gap_status(table: pd.DataFrame, a: str, b: str, metric: str, epoch=None,
               paper_scale: bool = False) -> tuple[str, GapResult]:
    """(status, gap) for the planned comparison a − b; raises ValueError when the table lacks it."""
    g = iml_gap(table, a, b, metric, epoch)
    status = interval_status(g.ci_low, g.ci_high, g.n_stage1, paper_scale)
    if status != "too few seeds" and at_bound(table, a, b, metric, g.epoch):
        status = "uninformative (floor/ceiling)"
    return status, g


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
