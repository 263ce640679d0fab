"""The figure functions on fake result tables: colours, CIs, stage boundary lines, scale captions."""
import dataclasses
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


# ------------------------------------------------------------------------------------------------
# Figures read at page scale: tag names and colours, legends, floors, overlaps (issue 18)
# ------------------------------------------------------------------------------------------------

def _sweep_frames():
    rng = np.random.default_rng(0)
    bs = [8, 32, 128, 512]
    gap = pd.DataFrame({"gap": [0.18, 0.17, 0.13, 0.17], "ci_low": [0.09, 0.07, 0.06, 0.08],
                        "ci_high": [0.27, 0.27, 0.21, 0.26]})
    s1 = {f"stage1_acc_{s}": rng.uniform(0.45, 0.75, 4) for s in ("qd1consis", "qd2incons", "qd1incons",
                                                                   "qd2consis")}
    batch = pd.DataFrame({"batch_size": bs, "stage1_epochs": [20] * 4, "stage1_steps": [400, 100, 40, 20],
                          **gap, **s1})
    size = pd.DataFrame({"params_non_embedding": [13_000, 57_000, 100_000, 397_000],
                         "size": ["32 / 1", "48 / 2", "64 / 2", "128 / 2"], **gap, **s1})
    alpha = pd.DataFrame({"alpha": [0.5, 0.7, 0.9, 1.0], **gap, **s1})
    probe = pd.DataFrame([{"when": w, "layer": lay, "acc": 0.5 + 0.01 * i, "acc_lo": 0.46, "acc_hi": 0.55,
                           "control": 0.49} for w in ("epoch 0", "end of Stage 1", "end of Stage 2")
                          for i, lay in enumerate(("c1", "c2", "c3", "f1"))])
    ga = {"batch_size": bs}
    for sub, v in (("d1consis", 0.15), ("d2consis", 0.08), ("d3consis", 0.12)):
        ga |= {f"grad_cos_{sub}": [v] * 4, f"grad_cos_{sub}_lo": [v - 0.03] * 4, f"grad_cos_{sub}_hi": [v + 0.03] * 4}
    for m in ("grad_cos", "grad_cos_change", "grad_cos_specific"):
        ga |= {f"{m}_gap": [0.05] * 4, f"{m}_gap_lo": [0.01] * 4, f"{m}_gap_hi": [0.09] * 4}
    curves = {b: pd.DataFrame({"epoch": [0, 10, 20], "gap": [0, 0.03, 0.05], "ci_low": [0, 0.0, 0.01],
                               "ci_high": [0, 0.06, 0.09]}) for b in bs}
    outcome = pd.DataFrame({"batch_size": np.repeat(bs, 5), "align": rng.normal(0.05, 0.02, 20),
                            "iml": rng.normal(0.15, 0.05, 20)})
    return batch, size, alpha, probe, pd.DataFrame(ga), curves, outcome


def _figures():
    batch, size, alpha, probe, ga, curves, outcome = _sweep_frames()
    si = notebook.fake_result("setinclusion", gap=0.1)
    train = si.table[si.table["subset"] == "d1consis"].assign(subset="train_qa")
    si = dataclasses.replace(si, table=pd.concat([si.table, train], ignore_index=True))
    return {"main": lambda: plots.main_figure(notebook.fake_result("main", gap=0.1)),
            "accuracy": lambda: plots.accuracy_figure(si),
            "batch_size": lambda: plots.batch_size_figure(batch),
            "model_size": lambda: plots.model_size_figure(size, "d_model / layers"),
            "alpha": lambda: plots.alpha_figure(alpha),
            "probe": lambda: plots.probe_figure(probe),
            "gradalign": lambda: plots.gradalign_figure(ga, curves),
            "gradalign_outcome": lambda: plots.gradalign_outcome_figure(outcome)}


@pytest.mark.parametrize("name", ["accuracy", "alpha", "batch_size", "gradalign", "gradalign_outcome", "main",
                                  "model_size", "probe"])
def test_figure_is_readable_at_page_scale(name):
    """Every figure: legends at least LEGEND_PT on the page, no text overlapping another (a title running into
    the next panel's y label) or cut off, and every legend outside the axes (covering no error bars)."""
    from iml.report import style

    fig = _figures()[name]()
    legends = [leg for ax in fig.axes for leg in [ax.get_legend()] if leg is not None] + list(fig.legends)
    assert legends, "no legend"
    for leg in legends:
        for t in leg.get_texts():
            assert plots.page_points(fig, t.get_fontsize()) >= style.LEGEND_PT - 1e-9, (name, t.get_text())
    assert plots.text_problems(fig) == []
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        if ax.get_legend() is not None and ax.axison:
            assert not ax.get_legend().get_window_extent(r).overlaps(ax.get_window_extent(r)), name
    plt.close(fig)


def test_tags_are_named_and_coloured_in_one_place():
    from iml.report import style

    reliable, unreliable = style.TAGS["define1"], style.TAGS["define2"]
    assert reliable.text == "Ḋefine (reliable)" and unreliable.text == "D̄efine (unreliable)"
    assert mcolors.same_color(reliable.color, "tab:blue") and mcolors.same_color(unreliable.color, "tab:red")
    for sub in ("d1consis", "qd1consis", "ent_assoc_name_d1consis"):
        assert plots.label(sub).endswith(reliable.name), sub
    for sub in ("d2consis", "qd2incons", "ent_assoc_name_qd2incons_swapped"):
        assert plots.label(sub).endswith(unreliable.name), sub
    assert plots.color("d1consis") == reliable.color and plots.color("d2consis") == unreliable.color
    assert plots.label("d3consis").count("fresh tag") == 1
    fig = plots.batch_size_figure(_sweep_frames()[0])  # a gap is neither tag's: not drawn in blue or red
    gap_line = fig.axes[0].containers[0].lines[0]
    assert not any(mcolors.same_color(gap_line.get_color(), c) for c in (reliable.color, unreliable.color))
    plt.close(fig)


def test_accuracy_figure_labels_training_qa_as_training():
    fig = _figures()["accuracy"]()
    a = fig.axes[0]
    assert "held-out" in a.get_title() and "training QA" in a.get_title()
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any(t.startswith("training QA") for t in texts) and "train_qa" not in texts
    assert _line_for(a, plots.label("train_qa")).get_linestyle() == "--"
    plt.close(fig)


def test_main_figure_says_when_a_panel_is_at_the_floor():
    r = notebook.fake_result("main", gap=0.1, n_stage1=3)
    floor = r.table["subset"].str.startswith(paper.ENT_ASSOC_PREFIX)
    r.table.loc[floor, "value"] = 0.0
    fig = plots.main_figure(r)
    notes = [t.get_text() for t in fig.axes[1].texts]
    assert any(n.startswith("floor: every subset ≈ 0") and "uninformative" in n for n in notes)
    assert fig.axes[1].get_ylim()[1] > 1  # the whole [0, 1] range, so the floor reads as one
    assert not fig.axes[0].texts
    plt.close(fig)
    fig = plots.main_figure(notebook.fake_result("main", gap=0.1))
    assert not fig.axes[1].texts
    plt.close(fig)
