"""The verdict rules (iml.core.verdicts) and the seed-count table (iml.core.power), as the Method page states them."""
import math

import numpy as np
import pandas as pd
import pytest

from iml.report import notebook
from iml.core import power
from iml.report import claims
from iml.core import verdicts
from iml.core.results import COLUMNS
from iml.core.stats import half_width


def _table(per_seed_gaps, base=0.4, metric="acc"):
    rows = []
    for s, g in enumerate(per_seed_gaps):
        rows += [(f"s{s}", s, 0, 2, 9, "d1consis", metric, base + g), (f"s{s}", s, 0, 2, 9, "d2consis", metric, base)]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_a_verdict_needs_ten_stage1_seeds():
    assert verdicts.interval_status(0.1, 0.3, 9) == "too few seeds"
    assert verdicts.interval_status(0.1, 0.3, 10) == "reproduced"
    assert verdicts.interval_status(-0.3, -0.1, 10) == "not reproduced"
    assert verdicts.interval_status(-0.1, 0.1, 10) == "null at our scale"
    assert verdicts.interval_status(-0.1, 0.1, 10, paper_scale=True) == "not reproduced"


def test_a_clear_gap_from_a_noisy_design_is_too_few_seeds():
    # 10 seeds, gap 0.2, SD 0.15: the interval excludes 0, but its half-width is not a third of the gap
    rng = np.random.default_rng(0)
    x = 0.2 + 0.15 * (rng.standard_normal(10))
    status, g, need = verdicts.gap_status(_table(x), "d1consis", "d2consis", "acc")
    assert g.ci_low > 0 and half_width(g.sd_stage1, 10) > g.gap / 3
    assert status == "too few seeds" and need > 10
    assert half_width(g.sd_stage1, need) <= abs(g.gap) / 3


def test_the_paper_value_sizes_the_study_when_there_is_one():
    x = np.full(10, 0.05) + np.linspace(-0.01, 0.01, 10)
    own = verdicts.gap_status(_table(x), "d1consis", "d2consis", "acc")
    small_paper_effect = verdicts.gap_status(_table(x), "d1consis", "d2consis", "acc", paper_value=0.005)
    assert own[0] == "reproduced" and small_paper_effect[0] == "too few seeds"


def test_a_null_with_no_reference_is_reported_as_null_not_too_few_seeds():
    x = np.linspace(-0.02, 0.02, 12)
    status, g, need = verdicts.gap_status(_table(x), "d1consis", "d2consis", "acc")
    assert status == "null at our scale" and need == verdicts.MIN_SEEDS and g.ci_low < 0 < g.ci_high


@pytest.mark.parametrize("base, bound", [(0.0, "floor"), (1.0, "ceiling")])
def test_both_sides_at_a_bound_are_uninformative(base, bound):
    t = _table(np.zeros(12), base=base)
    assert verdicts.at_bound(t, "d1consis", "d2consis", "acc", 9) == bound
    assert verdicts.gap_status(t, "d1consis", "d2consis", "acc")[0] == "uninformative (floor/ceiling)"
    assert verdicts.at_bound(_table(np.zeros(12), base=0.5), "d1consis", "d2consis", "acc", 9) is None


def test_a_claim_is_as_good_as_its_weakest_comparison_and_analogues_are_marked():
    assert verdicts.worst(["reproduced", "null at our scale"]) == "null at our scale"
    assert verdicts.worst(["reproduced", "too few seeds", "not reproduced"]) == "not reproduced"
    assert verdicts.worst([]) == "not attempted"
    assert verdicts.for_domain("reproduced", analogue=True) == "reproduced (analogue)"
    assert verdicts.for_domain("too few seeds", analogue=True) == "too few seeds"
    assert set(verdicts.STATUSES) >= {verdicts.for_domain(s, a) for s in verdicts._ORDER for a in (True, False)}


def test_power_table_sizes_each_comparison_like_the_verdict():
    r = notebook.fake_result("main", gap=0.1, n_stage1=10)
    t = claims.power_table({"main": ("cpu", r)})
    assert len(t) == 4  # the main result's four planned comparisons
    row = t.iloc[0]
    assert row["effect_from"] == "paper" and row["effect"] == pytest.approx(0.034, abs=1e-3)
    assert row["needed"] == verdicts.needed(row["sd"], row["effect"]) and row["seeds"] == 10
    md = power.markdown(t)
    assert md.count("\n| main (cpu)") == 4


def test_power_table_marks_floors_and_nulls():
    r = notebook.fake_result("main", gap=0.1, n_stage1=10)
    r.table.loc[r.table["subset"].str.startswith("ent_assoc"), "value"] = 0.0
    md = power.markdown(claims.power_table({"main": ("cpu", r)}))
    assert "at the floor: uninformative" in md
    null = power.row("a null", np.linspace(-0.01, 0.01, 10), None, "this result", 12.0)
    assert null["needed"] is None and "bounded by its interval" in null["effect_from"]
    assert math.isclose(null["mean"], 0.0, abs_tol=1e-12)
