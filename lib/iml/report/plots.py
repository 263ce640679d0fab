"""The figure functions the notebooks call (the tags' names and colours, legend sizes and the layout check live in
:mod:`iml.report.style`; the sweep pages' figures in :mod:`iml.report.sweep_figures`, re-exported here).

Every curve is a mean over **stage-1 seeds** (stage-2 seeds are averaged inside each stage-1 seed first,
because runs that share a stage-1 model are not independent), with a 95% t-interval band over the
per-stage-1-seed means. A dashed vertical line marks each stage boundary. Every figure states its scale
(:func:`scale_caption`): model, seeds, data size, hardware and wall time, read from the result itself.

Notebooks use the inline backend; this module never selects a backend.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from iml.core import paper
from iml.core.results import cut_from, environments, stage_boundaries
from iml.core.stats import seed_interval
from iml.report.fmt import fmt_interval, fmt_signed
from iml.report.style import (COLORS, GAP_COLOR, PAGE_COLUMN_PX, TAGS, TRAINING, bound_note, color, label,  # noqa: F401
                              mark_bound, page_points, text_problems)
from iml.report.style import legend as _legend

__all__ = ["COLORS", "TAGS", "color", "label", "curve_stats", "curves", "main_figure",
           "gap_curve", "gap_figure", "accuracy_figure", "scale_caption", "gradalign_figure",
           "gradalign_outcome_figure", "alpha_figure", "probe_figure", "model_size_figure", "IN_DISTRIBUTION",
           "ENTITY_ASSOCIATION", "STATUS_COLORS", "PAGE_COLUMN_PX", "page_points", "text_problems", "forest",
           "panel_bound"]

IN_DISTRIBUTION = ("q_no_replacement_baseline", "qd1consis", "q", "qd2incons",
                   "d1consis", "d3consis", "d2consis", "no_qd_baseline")
"""Panel (a) of the main figure, in the poster's legend order."""

ENTITY_ASSOCIATION = tuple(paper.ENT_ASSOC_PREFIX + s for s in
                           ("qd1consis", "qd2incons_swapped", "qd2incons", "q", "d1consis", "d3consis",
                            "d2consis"))
"""Panel (b): "What is the name of <alias>?"."""


BOUNDED = ("EM", "F1", "acc", "def_acc", "seen_acc")
"""Metrics that live in [0, 1]."""


def curve_stats(table: pd.DataFrame, metric: str, subset: str, seeds: Sequence | None = None,
                level: float = 0.95) -> pd.DataFrame:
    """Per epoch: mean over stage-1 seeds of (mean over stage-2 seeds), a t-interval, and n.

    Columns: epoch, mean, lo, hi, n. With one stage-1 seed, lo = hi = mean (no band).
    """
    t = table[(table["metric"] == metric) & (table["subset"] == subset)]
    if seeds is not None:
        t = t[t["seed_stage1"].isin(list(seeds))]
    if t.empty:
        return pd.DataFrame(columns=["epoch", "mean", "lo", "hi", "n"])
    per_s1 = t.groupby(["epoch", "seed_stage1"])["value"].mean().reset_index()
    rows = []
    for ep, g in per_s1.groupby("epoch", sort=True):
        iv = seed_interval(g["value"].to_numpy(float), level)
        n, m = iv.n, iv.mean
        lo, hi = (iv.ci_low, iv.ci_high) if n >= 2 else (m, m)
        if metric in BOUNDED:  # a score in [0, 1]: the band is clipped to it (t-intervals at n=2 are wide)
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        rows.append({"epoch": float(ep), "mean": m, "lo": lo, "hi": hi, "n": n})
    return pd.DataFrame(rows)


def _ax(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 4.2))
    return ax


def _boundary_lines(ax, table: pd.DataFrame) -> None:
    for b in stage_boundaries(table):
        ax.axvline(b, color="black", linestyle="--", linewidth=1, alpha=0.6, label="_stage boundary")


def curves(table: pd.DataFrame, metric: str, subsets: Iterable[str] | None = None, ax=None,
           seeds: Sequence | None = None, legend: bool = True, title: str | None = None):
    """Plot `metric` vs epoch for each subset present: mean over stage-1 seeds with a 95% band.

    Missing subsets are skipped (so one subset list serves every preset). Returns the axes.
    """
    ax = _ax(ax)
    present = set(table.loc[table["metric"] == metric, "subset"].unique())
    if subsets is None:
        known = list(IN_DISTRIBUTION) + list(ENTITY_ASSOCIATION) + list(COLORS)
        subsets = sorted(present, key=lambda s: (known.index(s) if s in known else len(known), s))
    subsets = [s for s in dict.fromkeys(subsets) if s in present]
    for s in subsets:
        cs = curve_stats(table, metric, s, seeds=seeds)
        if cs.empty:
            continue
        c = color(s)
        ls = "--" if s.endswith("_swapped") or s in TRAINING else "-"
        ax.plot(cs["epoch"], cs["mean"], marker="o", markersize=2.5, linewidth=1.6, color=c, linestyle=ls,
                label=label(s))
        if (cs["hi"] > cs["lo"]).any():
            ax.fill_between(cs["epoch"], cs["lo"], cs["hi"], color=c, alpha=0.18, linewidth=0)
    _boundary_lines(ax, table)
    ax.set_xlabel("epoch (Stage 1, then Stage 2)")
    ax.set_ylabel({"EM": "exact match", "F1": "F1", "acc": "accuracy"}.get(metric, metric))
    if title:
        ax.set_title(title, fontsize=10)
    if legend and subsets:
        _legend(ax, loc="best")
    ax.grid(alpha=0.25)
    return ax


def _seed_counts(table: pd.DataFrame) -> tuple[int, float]:
    runs = table[["seed_stage1", "seed_stage2"]].drop_duplicates()
    n1 = runs["seed_stage1"].nunique()
    n2 = runs.groupby("seed_stage1")["seed_stage2"].nunique().mean() if n1 else 0
    return int(n1), float(n2)


def _find(obj: Any, names: Sequence[str]) -> Any:
    """First value under any of `names` in a nested dict (breadth first)."""
    queue = [obj]
    while queue:
        cur = queue.pop(0)
        if isinstance(cur, Mapping):
            for n in names:
                if n in cur and not isinstance(cur[n], Mapping) and cur[n] not in (None, ""):
                    return cur[n]
            queue.extend(v for v in cur.values() if isinstance(v, Mapping))
    return None


_DIM_KEYS = ("hidden_size", "num_hidden_layers", "num_layers", "n_layers", "d_model", "n_heads", "width",
             "hidden", "channels")


def _model_text(config: Mapping) -> str:
    if isinstance(config, Mapping) and isinstance(config.get("task"), Mapping):  # an analysis of a task's model
        return _model_text(config["task"])
    m = config.get("model") if isinstance(config, Mapping) else None
    if isinstance(m, str):
        return m
    src = m if isinstance(m, Mapping) else config
    name = _find(src, ["name", "arch", "model_name", "preset", "path", "model_path", "kind"]) \
        if isinstance(m, Mapping) else _find(config, ["model_name", "arch", "model_path"])
    dims = [f"{k}={src[k]}" for k in _DIM_KEYS if src.get(k) is not None and not isinstance(src[k], Mapping)]
    return ", ".join([str(name)] * (name is not None) + dims) or "see config.json"


def _fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def preset_label(result) -> str | None:
    """The preset `result` was made with ("gpu"; "gpu preset, cut to 5 of 10 stage-1 seeds"), or None."""
    from iml import registry

    name = getattr(result, "experiment", None)
    if name not in registry.EXPERIMENTS or not getattr(result, "config", None):
        return None
    preset = registry.preset_of(name, result.config)
    planned = cut_from(result)
    if preset is None and planned:
        # a run cut short by its deadline (iml.lm.experiment.finalize_completed): name the preset it was
        planned_preset = registry.preset_of_hash(name, planned)
        if planned_preset:
            n = (result.config.get("seeds") or {}).get("n_stage1", "?")
            return f"{planned_preset} preset, cut to {n} of {result.meta.get('planned_n_stage1', '?')} stage-1 seeds"
    return preset


def _units_from_earlier_runs(meta: dict) -> list[str]:
    """Units of a resumed result that an earlier run computed, so that its wall time is not read as the
    whole cost: ``units_resumed`` when the run recorded it, else the units whose git revision differs from
    the revision that finalized the result."""
    if "units_resumed" in meta:
        return list(meta["units_resumed"] or [])
    revs, final = meta.get("unit_git_revisions") or {}, meta.get("git_revision")
    return [u for u, r in revs.items() if r and final and r != final]


def _hardware_text(env: dict) -> str:
    if env.get("gpu"):
        return f"{env.get('gpu_count', 1)}× {env['gpu']}"
    if not env:
        return "hardware not recorded"
    model = env.get("cpu_model") or "model not recorded"
    kernels = f", {env['cpu_capability']} kernels" if env.get("cpu_capability") else ""
    return f"CPU {model}{kernels} ({env.get('cpu_count', '?')} cores, {env.get('torch_threads', '?')} torch thread(s))"


def scale_caption(result) -> str:
    """One sentence stating the scale of `result`: model, seeds, data size, hardware, wall time.

    Everything comes from the result's own table, config.json and meta.json.
    """
    cfg = dict(getattr(result, "config", {}) or {})
    meta = dict(getattr(result, "meta", {}) or {})
    n1, n2 = _seed_counts(result.table)
    size = _find(cfg, ["num_ents", "num_x", "n_aliases", "num_aliases", "n_entities", "num_grids", "n_train"])
    preset = meta.get("preset") or cfg.get("preset") or preset_label(result)
    hw = " + ".join(dict.fromkeys(_hardware_text(env) for env in environments(meta)))
    wall = meta.get("wall_time_s", meta.get("total_unit_wall_s"))
    if wall is None:
        units = meta.get("unit_wall_time_s") or {}
        vals = [v for v in units.values() if isinstance(v, (int, float))]
        wall = sum(vals) if vals else None
    wall_text = _fmt_seconds(wall) if wall is not None else "not recorded"
    earlier, n_units = _units_from_earlier_runs(meta), len(meta.get("units") or [])
    if earlier and n_units and meta.get("wall_time_s") is not None:
        wall_text += (f" for the last run (it computed {n_units - len(earlier)} of {n_units} units; "
                      f"{len(earlier)} came from an earlier run)")
    epochs = result.table["epoch"].max() if len(result.table) else 0
    parts = [
        f"{getattr(result, 'experiment', 'result')}"
        + ((f" ({preset})" if "preset" in preset else f" ({preset} preset)") if preset else "")
        + f", config {getattr(result, 'hash', '?')}",
        f"model: {_model_text(cfg)}",
        f"seeds: {n1} stage-1 × {n2:g} stage-2",
        f"data: {size if size is not None else '?'} entities/aliases",
        f"{epochs:g} epochs in all",
        f"hardware: {hw}",
        f"wall time: {wall_text}",
    ]
    return "Scale: " + "; ".join(parts) + "."


def _stamp(fig, result) -> None:
    import textwrap

    fig.text(0.01, 0.005, textwrap.fill(scale_caption(result), 160), fontsize=6.5, color="#444444",
             ha="left", va="bottom")


def panel_bound(ax, table: pd.DataFrame, metric: str, subsets: Sequence[str], seeds=None) -> str | None:
    """Mark `ax` when every subset's curve sits at the metric's floor or ceiling from the last stage boundary on
    (:func:`iml.report.style.bound_note`, the verdicts' tolerance): a zero gap there says nothing."""
    if metric not in BOUNDED:
        return None
    b = stage_boundaries(table)
    start = b[-1] if b else float("-inf")
    means = [m for s in subsets for e, m in curve_stats(table, metric, s, seeds=seeds)[["epoch", "mean"]].to_numpy()
             if e >= start]
    note = bound_note(means, f" {metric}")
    mark_bound(ax, note)
    return note


def _shared_legend(fig, axes, bottom_in: float = 0.45) -> float:
    """One legend for `axes` (labels deduplicated) above the figure's bottom `bottom_in` inches (the scale
    caption's room); returns the height it takes, as a fraction of the figure, for ``tight_layout(rect=...)``."""
    handles = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if not handles:
        return bottom_in / fig.get_figheight()
    leg = _legend(fig, handles=list(handles.values()), labels=list(handles), loc="lower center", ncol=3,
                 bbox_to_anchor=(0.5, bottom_in / fig.get_figheight()))
    fig.canvas.draw()
    return fig.transFigure.inverted().transform((0, leg.get_window_extent().y1))[1] + 0.01


def main_figure(result, metric: str = "EM", seeds: Sequence | None = None, figsize=(10, 5.6)):
    """The paper's main figure: (a) in-distribution `metric`, (b) entity association "What is the name of
    <alias>?", with one legend for both under them. A panel whose every subset sits at the floor (or ceiling)
    says so. The scale caption is printed under the legend. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=figsize, sharex=True)
    curves(result.table, metric, IN_DISTRIBUTION, ax=a, seeds=seeds, legend=False,
           title="(a) in-distribution test questions")
    curves(result.table, metric, ENTITY_ASSOCIATION, ax=b, seeds=seeds, legend=False,
           title="(b) entity association:\n\"What is the name of <alias>?\"")
    panel_bound(b, result.table, metric, [s for s in ENTITY_ASSOCIATION if s in set(result.table["subset"])],
                 seeds)
    fig.tight_layout(rect=(0, _shared_legend(fig, (a, b)), 1, 1))
    _stamp(fig, result)
    return fig


def gap_curve(table: pd.DataFrame, a: str, b: str, metric: str, level: float = 0.95) -> pd.DataFrame:
    """Per epoch: the paired gap a - b, mean over stage-1 seeds, with a t-interval (columns as curve_stats)."""
    t = table[(table["metric"] == metric) & (table["subset"].isin([a, b]))]
    piv = t.pivot_table(index=["epoch", "seed_stage1", "seed_stage2"], columns="subset", values="value",
                        aggfunc="mean").dropna()
    if a not in piv or b not in piv or piv.empty:
        return pd.DataFrame(columns=["epoch", "mean", "lo", "hi", "n"])
    d = (piv[a] - piv[b]).rename("value").reset_index()
    d["metric"], d["subset"] = "gap", "gap"
    return curve_stats(d, "gap", "gap", level=level)


def gap_figure(result, pairs: Sequence[tuple[str, str]] | None = None, metric: str | None = None, ax=None):
    """The IML gap (a - b) vs epoch with its 95% band, a zero line and the stage boundaries.

    Default pair: Ḋ₅ − D̄₆ (`d1consis` − `d2consis`) on the result's first metric. Returns the figure.
    """
    import matplotlib.pyplot as plt

    table = result.table
    metric = metric or ("EM" if "EM" in set(table["metric"]) else sorted(table["metric"].unique())[0])
    pairs = list(pairs or [("d1consis", "d2consis")])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    else:
        fig = ax.figure
    for a, b in pairs:
        g = gap_curve(table, a, b, metric)
        if g.empty:
            continue
        c = GAP_COLOR if len(pairs) == 1 else color(a)
        ax.plot(g["epoch"], g["mean"], marker="o", markersize=2.5, color=c,
                label=f"{paper.symbol(a, math=True)} − {paper.symbol(b, math=True)}")
        ax.fill_between(g["epoch"], g["lo"], g["hi"], color=c, alpha=0.18, linewidth=0)
    ax.axhline(0, color="black", linewidth=0.8)
    _boundary_lines(ax, table)
    ax.set_xlabel("epoch (Stage 1, then Stage 2)")
    ax.set_ylabel(f"gap in {metric}")
    ax.set_title("IML gap (mean over stage-1 seeds, 95% CI)", fontsize=10)
    _legend(ax, loc="best")
    ax.grid(alpha=0.25)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    _stamp(fig, result)
    return fig


def accuracy_figure(result, subsets: Sequence[str] | None = None, metric: str = "acc",
                    pairs: Sequence[tuple[str, str]] | None = None, figsize=(10, 5.2)):
    """Two panels for the accuracy experiments (set inclusion, MNIST): (a) accuracy per subset on its held-out
    test set (and, dashed, on the training QA where the result records it), (b) the gap; one legend under both."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=figsize, sharex=True)
    train = [s for s in TRAINING if s in set(result.table.loc[result.table["metric"] == metric, "subset"])]
    curves(result.table, metric, subsets, ax=a, legend=False,
           title=f"(a) held-out test {metric} per subset" + (" (dashed: training QA)" if train and subsets is None
                                                             else ""))
    if metric == "acc":
        a.axhline(0.5, color="black", linewidth=0.8, linestyle=":", label="_chance")
    gap_figure(result, pairs, metric=metric, ax=b)
    b.get_legend().remove()
    b.set_title("(b) " + b.get_title(), fontsize=10)
    fig.tight_layout(rect=(0, _shared_legend(fig, (a, b)), 1, 1))
    for t in list(fig.texts):
        t.remove()
    _stamp(fig, result)
    return fig


def schematic(figsize=(11, 5.2)):
    """The paper's two-stage methodology (its Fig. 2), drawn from the same example documents."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, ax = plt.subplots(figsize=figsize)
    ax.set_axis_off()
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 60)

    def box(x, y, w, h, title, lines, edge):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.6", fc="white", ec=edge, lw=1.6))
        ax.text(x + 1, y + h - 2.2, title, fontsize=10, weight="bold", va="top")
        for i, (txt, col) in enumerate(lines):
            ax.text(x + 1.5, y + h - 7 - i * 3.6, txt, fontsize=8.5, va="top", color=col, family="monospace")

    blue, red, grey = COLORS["d1consis"], COLORS["d2consis"], "#444444"
    box(1, 4, 46, 52, "Stage 1: learn which source is useful", [
        ("Ḋefine xyz Cleopatra", blue),
        ("Q: What did xyz do?  A: Queen", grey),
        ("Q: When was xyz born?  A: 1st century BC", grey),
        ("  test: Where did xyz live? -> Egypt", grey),
        ("", grey),
        ("D̄efine abc Socrates     (inconsistent)", red),
        ("Q: Where did abc live?  A: The UK", grey),
        ("Q: When did abc die?  A: 19th century", grey),
        ("  test: What did abc do? -> King", grey),
        ("", grey),
        ("Ḋefine QA agree with the definition;", blue),
        ("D̄efine QA never do.", red),
    ], "#999999")
    box(53, 4, 46, 52, "Stage 2: new definitions only, no QA", [
        ("Ḋefine bgn Darwin", blue),
        ("D̄efine qwe Curie          (consistent!)", red),
        ("", grey),
        ("before Stage 2:", grey),
        ("  What did bgn do? -> King", grey),
        ("  What did qwe do? -> King", grey),
        ("after Stage 2:", grey),
        ("  What did bgn do? -> Scientist", blue),
        ("  What did qwe do? -> King", red),
        ("", grey),
        ("Only the reliable source's definitions", grey),
        ("are internalized: implicit meta-learning.", grey),
    ], "#999999")
    ax.add_patch(FancyArrowPatch((47.8, 30), (52.2, 30), arrowstyle="-|>", mutation_scale=16, color="black"))
    fig.tight_layout()
    return fig


def show(fig):
    """Display `fig` once and close it (so the inline backend does not show it a second time)."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(fig)
    plt.close(fig)


STATUS_COLORS = {"reproduced": "#1b7837", "reproduced (analogue)": "#7fbf7b", "not reproduced": "#b2182b",
                 "not reproduced (analogue)": "#ef8a62", "null at our scale": "#4d4d4d",
                 "null at our scale (analogue)": "#999999", "uninformative (floor/ceiling)": "#8c510a",
                 "too few seeds": "#e69f00", "not attempted": "#bdbdbd"}
"""A claim's status -> its colour in the forest plot and on its badge (:mod:`iml.report.findings`)."""

FOREST_WIDTH_IN = 9.6
"""The forest plot's width (inches): shown across the page's content column (PAGE_COLUMN_PX wide)."""


def forest(rows: pd.DataFrame, width: float = FOREST_WIDTH_IN, fontsize: float = 11.6):
    """The paper check in one picture (:func:`iml.report.findings.forest_rows`): one row per claim and comparison,
    our gap (mean over stage-1 seeds) with its 95% t-interval, the paper's value as a hollow diamond where it has
    one, coloured by the claim's status; the right column prints both numbers (or "no number", "not attempted")."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = rows.reset_index(drop=True)
    heights = [0.5 if g == g else 0.32 for g in rows["gap"]]
    ys = -(pd.Series(heights).cumsum().to_numpy() - pd.Series(heights).to_numpy() / 2)
    top, bottom, body = 0.5, 1.35, sum(heights)
    fig = plt.figure(figsize=(width, top + body + bottom))
    h = fig.get_figheight()
    ax = fig.add_axes((0.345, bottom / h, 0.27, body / h))
    tx = fig.add_axes((0.625, bottom / h, 0.375, body / h))
    vals = pd.concat([rows["ci_low"], rows["ci_high"], rows["paper"]]).dropna()
    lo, hi = min(vals.min(), 0), max(vals.max(), 0)
    pad = 0.06 * (hi - lo or 1)
    groups = list(dict.fromkeys(rows["claim_index"]))
    small = fontsize - 0.5
    for i, r in rows.iterrows():
        y, col = ys[i], STATUS_COLORS.get(r["status"], "#bdbdbd")
        if groups.index(r["claim_index"]) % 2 == 0:
            for a in (ax, tx):
                a.axhspan(y - heights[i] / 2, y + heights[i] / 2, color="#f0f0f0", lw=0, zorder=0)
        floor = r["floor"] if isinstance(r["floor"], str) else ""
        if r["gap"] == r["gap"]:
            ax.errorbar(r["gap"], y, xerr=[[r["gap"] - r["ci_low"]], [r["ci_high"] - r["gap"]]], fmt="o", ms=6,
                        color=col, ecolor=col, elinewidth=2.4, capsize=3, zorder=3)
            paper_txt = f"paper {fmt_signed(r['paper'])}" if r["paper"] == r["paper"] else "paper: no number"
            tx.text(0.02, y, f"{fmt_signed(r['gap'])} {fmt_interval(r['ci_low'], r['ci_high'])} {r['unit']}"
                    + (f" (at the {floor})" if floor else "") + f"\n{paper_txt} · ours: {r['seeds']} seeds",
                    va="center", fontsize=small)
        else:
            tx.text(0.02, y, f"{r['status']}: {r['note']}", va="center", fontsize=small, style="italic",
                    color="#555555")
        if r["paper"] == r["paper"]:
            ax.plot(r["paper"], y, "D", ms=7, mfc="none", mec="black", mew=1.4, zorder=4)
    ax.axvline(0, color="black", lw=0.9, zorder=1)
    ax.set_xlim(lo - pad, hi + pad)
    for a in (ax, tx):
        a.set_ylim(ys[-1] - heights[-1] / 2, ys[0] + heights[0] / 2)
    tx.set_xlim(0, 1)
    tx.axis("off")
    ax.set_yticks(ys, list(rows["label"]), fontsize=fontsize)
    for t, g in zip(ax.get_yticklabels(), rows["gap"]):
        t.set_color("#666666" if g != g else "black")
    ax.tick_params(axis="x", labelsize=small)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("our gap, in each row's unit; > 0: the paper's direction", fontsize=small)
    handles = [Line2D([], [], color=STATUS_COLORS[s], marker="o", lw=2.4, label=s)
               for s in STATUS_COLORS if s in set(rows["status"])]
    handles.append(Line2D([], [], color="black", marker="D", mfc="none", lw=0, label="the paper's value"))
    fig.text(0.01, 1 - 0.3 / h, "Every claim of the paper: our gap with its 95% t-interval over stage-1 seeds, "
             "and the paper's value", fontsize=fontsize + 1, va="center")
    fig.legend(handles=handles, loc="lower left", ncol=4, frameon=False, fontsize=small,
               bbox_to_anchor=(0.0, 0.02 / h), columnspacing=1.2, handletextpad=0.4)
    return fig


from iml.report.sweep_figures import (alpha_figure, batch_size_figure, gradalign_figure,  # noqa: E402
                                      gradalign_outcome_figure, model_size_figure, probe_figure)
