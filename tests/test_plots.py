"""The figure functions on fake result tables: colours, CIs, stage boundary lines, scale captions."""
import math

import matplotlib

matplotlib.use("Agg")  # tests only; notebooks keep the inline backend

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from iml.report import notebook
from iml.core import paper, results
from iml.report import plots  # noqa: E402


@pytest.fixture
def res():
    return notebook.fake_result("main", n_stage1=3, n_stage2=2, epochs=(4, 3), gap=0.1)


def _line_for(ax, text):
    for line in ax.get_lines():
        if line.get_label() == text:
            return line
    raise AssertionError(f"no line labelled {text!r}; have {[l.get_label() for l in ax.get_lines()]}")


def test_paper_colours():
    want = {"d1consis": "blue", "d2consis": "red", "d3consis": "grey", "qd1consis": "purple",
            "qd2incons": "pink", "q": "brown", "no_qd_baseline": "orange", "q_no_replacement_baseline": "green"}
    tab = {"blue": "tab:blue", "red": "tab:red", "grey": "tab:gray", "purple": "tab:purple", "pink": "tab:pink",
           "brown": "tab:brown", "orange": "tab:orange", "green": "tab:green"}
    for subset, name in want.items():
        assert mcolors.same_color(plots.color(subset), tab[name]), subset
    assert plots.color("ent_assoc_name_d1consis") == plots.color("d1consis")
    assert plots.color("ent_assoc_name_qd2incons_swapped") == plots.color("qd2incons")


def test_curves_colours_legend_and_boundary(res):
    fig, ax = plt.subplots()
    plots.curves(res.table, "EM", ["d1consis", "d2consis", "not_a_subset"], ax=ax)
    blue = _line_for(ax, plots.label("d1consis"))
    red = _line_for(ax, plots.label("d2consis"))
    assert mcolors.same_color(blue.get_color(), plots.COLORS["d1consis"])
    assert mcolors.same_color(red.get_color(), plots.COLORS["d2consis"])
    # the stage boundary: a dashed vertical line at the last stage-1 epoch (4)
    vlines = [l for l in ax.get_lines() if l.get_linestyle() == "--" and len(set(l.get_xdata())) == 1]
    assert [float(l.get_xdata()[0]) for l in vlines] == [4.0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [plots.label("d1consis"), plots.label("d2consis")]
    assert r"\dot{D}_5" in legend[0] and r"\bar{D}_6" in legend[1]
    # CI bands are drawn (3 stage-1 seeds)
    assert len(ax.collections) == 2
    plt.close(fig)


def test_curve_stats_averages_stage2_within_stage1_first():
    rows = []
    # seed 0 has two stage-2 runs (0.0, 1.0) -> 0.5; seed 1 has one run at 0.1.
    for s1, s2, v in [(0, 0, 0.0), (0, 1, 1.0), (1, 0, 0.1)]:
        rows.append((f"{s1}-{s2}", s1, s2, 2, 5, "d1consis", "EM", v))
    t = pd.DataFrame(rows, columns=["run_id", "seed_stage1", "seed_stage2", "stage", "epoch", "subset", "metric",
                                    "value"])
    cs = plots.curve_stats(t, "EM", "d1consis")
    assert cs["mean"].iloc[0] == pytest.approx((0.5 + 0.1) / 2)  # not the pooled 1.1/3
    assert cs["n"].iloc[0] == 2
    from scipy import stats as st

    half = st.t.ppf(0.975, 1) * np.std([0.5, 0.1], ddof=1) / math.sqrt(2)
    assert cs["hi"].iloc[0] == pytest.approx(min(0.3 + half, 1.0))  # clipped to [0, 1] for EM
    assert cs["lo"].iloc[0] == pytest.approx(max(0.3 - half, 0.0))
    t2 = t.assign(metric="loss")
    cs2 = plots.curve_stats(t2, "loss", "d1consis")
    assert cs2["hi"].iloc[0] - cs2["mean"].iloc[0] == pytest.approx(half)  # unbounded metric: not clipped


def test_single_seed_has_no_band():
    r = notebook.fake_result("main", n_stage1=1, n_stage2=1)
    cs = plots.curve_stats(r.table, "EM", "d1consis")
    assert (cs["lo"] == cs["hi"]).all()


def test_stage_boundaries_three_stages():
    t = pd.DataFrame({"stage": [1, 1, 2, 2, 3], "epoch": [0, 5, 6, 10, 12]})
    assert results.stage_boundaries(t) == [5.0, 10.0]


def test_main_figure_two_panels_and_scale(res):
    fig = plots.main_figure(res)
    axes = fig.axes
    assert len(axes) == 2
    assert "in-distribution" in axes[0].get_title()
    assert "What is the name of" in axes[1].get_title()
    labels_b = [l.get_label() for l in axes[1].get_lines()]
    assert plots.label("ent_assoc_name_d1consis") in labels_b
    assert plots.label("ent_assoc_name_qd2incons_swapped") in labels_b
    text = " ".join(t.get_text() for t in fig.texts).replace("\n", " ")
    assert text.startswith("Scale:")
    assert "3 stage-1 × 2 stage-2" in text
    assert "fake-gptneox" in text and "120" in text and "12 s" in text
    plt.close(fig)


def test_scale_caption_fields(res):
    cap = plots.scale_caption(res)
    for bit in ("model: fake-gptneox", "seeds: 3 stage-1 × 2 stage-2", "data: 120", "hardware: CPU",
                "wall time: 12 s", "smoke preset", res.hash):
        assert bit in cap, bit
    gpu = notebook.fake_result("main", meta={"environment": {"gpu": "NVIDIA H100", "gpu_count": 1},
                                         "unit_wall_time_s": {"a": 3000.0, "b": 600.0}})
    cap = plots.scale_caption(gpu)
    assert "1× NVIDIA H100" in cap and "1.0 h" in cap


def test_scale_caption_says_when_units_came_from_an_earlier_run():
    """A resumed result's wall time is that of its last run only; the caption must not read it as the
    whole cost. Older metas lack units_resumed: units made at another git revision count as earlier."""
    units = ["s0-0", "s0-1", "s1-0", "s1-1"]
    resumed = notebook.fake_result("main", meta={"wall_time_s": 540.0, "units": units, "units_resumed": ["s0-0"]})
    assert "9.0 min for the last run (it computed 3 of 4 units; 1 came from an earlier run)" in \
        plots.scale_caption(resumed)
    old = notebook.fake_result("main", meta={"wall_time_s": 540.0, "units": units, "git_revision": "new",
                                         "unit_git_revisions": {"s0-0": "old", "s0-1": "old",
                                                                "s1-0": "new", "s1-1": "new"}})
    assert "computed 2 of 4 units; 2 came from an earlier run" in plots.scale_caption(old)
    fresh = notebook.fake_result("main", meta={"wall_time_s": 540.0, "units": units, "units_resumed": []})
    assert plots.scale_caption(fresh).endswith("wall time: 9.0 min.")


def test_scale_caption_flat_config():
    r = notebook.fake_result("setinclusion", config={"d_model": 32, "n_layers": 1, "n_aliases": 60},
                         meta={"total_unit_wall_s": 12.4})
    cap = plots.scale_caption(r)
    assert "d_model=32" in cap and "n_layers=1" in cap and "data: 60" in cap and "hardware not recorded" in cap


def test_gap_figure_and_accuracy_figure():
    r = notebook.fake_result("setinclusion", gap=0.1)
    fig = plots.gap_figure(r)
    ax = fig.axes[0]
    g = plots.gap_curve(r.table, "d1consis", "d2consis", "acc")
    assert g["mean"].iloc[-1] > 0.05
    assert any(l.get_linestyle() == "--" for l in ax.get_lines())  # stage boundary
    assert any("Scale:" in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = plots.accuracy_figure(r)
    assert len(fig.axes) == 2
    assert sum("Scale:" in t.get_text() for t in fig.texts) == 1
    plt.close(fig)


def test_symbols_match_tagging():
    vocab = pytest.importorskip("iml.lm.vocab")
    for k, v in paper.SYMBOLS.items():
        assert vocab.PAPER_SYMBOLS.get(k, v) == v, k


def test_schematic_draws():
    fig = plots.schematic()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("Stage 1" in t for t in texts) and any("Stage 2" in t for t in texts)
    plt.close(fig)


def test_stage_boundaries_named_stages():
    t = pd.DataFrame({"stage": ["init", "stage1", "stage1", "stage2", "stage2"], "epoch": [0, 4, 12, 13, 16]})
    assert results.stage_boundaries(t) == [12.0]


def _forest_rows(gap=0.1, n_stage1=10):
    from iml.report import claims, findings

    available = {"main": ("gpu", notebook.fake_result("main", gap=gap, n_stage1=n_stage1)),
                 "mnist": ("cpu", notebook.fake_result("mnist", gap=0.1, n_stage1=n_stage1))}
    return findings.forest_rows(available, claims.claims_table(available))


def test_forest_has_one_row_per_comparison_and_the_papers_value():
    import matplotlib.colors as mc

    rows = _forest_rows()
    assert len(rows) == len(paper.CLAIMS) + 1  # the main result's Stage-1 claim rests on two comparisons
    fig = plots.forest(rows)
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == len(rows)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rows["label"])
    # the paper's value: a hollow diamond at +0.034 on the in-distribution row; none where the paper has no number
    diamonds = [l for l in ax.get_lines() if l.get_marker() == "D"]
    assert len(diamonds) == rows["paper"].notna().sum() == 4
    y_in = ax.get_yticks()[0]
    assert any(math.isclose(l.get_xdata()[0], 0.034) and math.isclose(l.get_ydata()[0], y_in) for l in diamonds)
    # our gap: one error bar per comparison, in its status colour
    drawn = [c for c in ax.containers]
    assert len(drawn) == rows["gap"].notna().sum()
    mnist = rows[rows["study"] == "mnist"].iloc[0]
    assert mnist["status"] == "reproduced"
    assert any(mc.same_color(c.lines[0].get_color(), plots.STATUS_COLORS["reproduced"]) for c in drawn)
    texts = " ".join(t.get_text() for t in fig.axes[1].texts)
    assert "paper: no number" in texts and "not attempted: no experiment in the book" in texts
    plt.close(fig)


def test_forest_is_readable_at_page_scale():
    """At the book's content column, every text of the forest plot is at least 9 pt, and none overlaps another
    or runs off the figure."""
    from matplotlib.text import Text

    fig = plots.forest(_forest_rows())
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert min(plots.page_points(fig, s) for s in sizes) >= 9
    assert plots.text_problems(fig) == []
    plt.close(fig)


def test_text_problems_finds_overlaps_and_cut_text():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, "one label", transform=ax.transAxes)
    ax.text(0.52, 0.5, "another label", transform=ax.transAxes)
    fig.text(0.9, 0.5, "runs off the edge of the figure")
    problems = plots.text_problems(fig)
    assert any(p.startswith("overlap: 'one label'") for p in problems)
    assert any(p.startswith("cut off: 'runs off") for p in problems)
    plt.close(fig)
