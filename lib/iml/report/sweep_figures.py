"""The sweep pages' figures (batch size, model size, α, gradient alignment, probes); :mod:`iml.report.plots`
re-exports them. Legends sit under their panels at :data:`iml.report.style.LEGEND_PT` on the page, so they cover
no data; every figure passes :func:`iml.report.style.text_problems` (no text overlaps or is cut off)."""
from __future__ import annotations

from iml.report.style import BROKEN_PROMISE, GAP_COLOR, color, label, legend, ramp

__all__ = ["batch_size_figure", "model_size_figure", "gradalign_figure", "gradalign_outcome_figure", "alpha_figure",
           "probe_figure"]

GAP = "Ḋ₅ − D̄₆"
_EXTRA = ("#1b9e77", "#8c564b")
"""Lines that are neither tag's (the gradient-alignment gaps): teal and brown, never the tags' blue or red."""


def _ordered(ax, first: str = "ours"):
    """The panel's legend entries, those whose label holds `first` first (matplotlib lists lines before error bars)."""
    pairs = list(zip(*ax.get_legend_handles_labels()))
    pairs = [p for p in pairs if first in p[1]] + [p for p in pairs if first not in p[1]]
    return [h for h, _ in pairs], [lab for _, lab in pairs]


def _below(ax, ncol: int = 1):
    """The panel's legend, centred under its x label (placed after the figure's layout)."""
    handles, labels = _ordered(ax)
    if not handles:
        return
    fig = ax.figure
    fig.canvas.draw()
    box = ax.xaxis.get_tightbbox(fig.canvas.get_renderer())
    y = ax.transAxes.inverted().transform((0, box.y0))[1] - 0.02
    legend(ax, handles=handles, labels=labels, loc="upper center", bbox_to_anchor=(0.5, y), ncol=ncol)


def _gap_panel(a, x, s, title: str, paper: str):
    a.errorbar(x, s["gap"], yerr=[s["gap"] - s["ci_low"], s["ci_high"] - s["gap"]], fmt="o-", color=GAP_COLOR,
               capsize=4, label=f"ours: {GAP}, 95% CI over seeds")
    a.axhline(0, color="#888888", lw=0.8, ls="--")
    a.set_ylabel(f"{GAP} held-out accuracy")
    a.set_title(f"{title}\npaper: {paper}", fontsize=11)


def _two_panels(figsize):
    import matplotlib.pyplot as plt

    return plt.subplots(1, 2, figsize=figsize)


def _finish(fig, panels, xlabel, ncol=(1, 1)):
    for ax in panels:
        ax.set_xlabel(xlabel)
    fig.tight_layout(w_pad=2.5)
    for _ in range(3):  # the legends' place depends on the layout, and the layout on the legends
        for ax, n in zip(panels, ncol):
            _below(ax, n)
        fig.tight_layout(w_pad=2.5)
    return fig


def _stage1_panel(b, x, s, subsets, title):
    for sub in subsets:
        col = f"stage1_acc_{sub}"
        if col in s and s[col].notna().any():
            b.plot(x, s[col], "o--" if sub in BROKEN_PROMISE else "o-", color=color(sub), label=label(sub))
    b.set_ylabel("held-out acc., end of Stage 1")
    b.set_title(title, fontsize=11)


def batch_size_figure(summary, figsize=(10, 4.6)):
    """The batch-size sweep (:func:`iml.mnist.batch_size.summary`): (a) the IML gap Ḋ₅ − D̄₆ with its 95% CI per
    batch size, (b) the Stage-1 held-out accuracies per batch size, to judge whether each point converged."""
    s = summary.sort_values("batch_size")
    x = s["batch_size"].to_numpy()
    full = (s["stage1_steps"] == s["stage1_epochs"]).to_numpy()  # one step per epoch: full batch
    fig, (a, b) = _two_panels(figsize)
    _gap_panel(a, x, s, "(a) IML gap after Stage 2", "falls with batch size, none at full batch")
    _stage1_panel(b, x, s, ("qd1consis", "qd2incons"), "(b) Stage 1: did each batch size converge?")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [f"{v}\n(full)" if f else str(v) for v, f in zip(x, full)])
    return _finish(fig, (a, b), "batch size")


def model_size_figure(summary, size_name="width/hidden", figsize=(10, 4.6)):
    """A model-size sweep (:func:`iml.core.scaling.summary`; `size_name` says what its ``size`` column is): (a) the
    IML gap Ḋ₅ − D̄₆ with its 95% CI against the non-embedding parameters per seed (log axis), (b) the Stage-1
    held-out accuracies per size, to see whether a size is under-trained."""
    def short(n):
        for div, unit in ((1e6, "M"), (1e3, "k")):
            if n >= div:
                return f"{n / div:.1f}{unit}" if n / div < 10 else f"{n / div:.0f}{unit}"
        return str(int(n))

    s = summary.sort_values("params_non_embedding")
    x = s["params_non_embedding"].to_numpy()
    fig, (a, b) = _two_panels(figsize)
    _gap_panel(a, x, s, "(a) IML gap after Stage 2", "larger models more (no numbers)")
    _stage1_panel(b, x, s, ("qd1consis", "qd2incons"), "(b) Stage 1: did each size learn the task?")
    b.axhline(0.5, color="#888888", lw=0.8, ls=":")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(x, [f"{short(p)}\n{z}" for p, z in zip(x, s["size"])])
    return _finish(fig, (a, b), f"non-embedding parameters per seed\n({size_name})")


def alpha_figure(summary, figsize=(10, 4.9)):
    """The α sweep (:func:`iml.mnist.alpha.summary`): (a) the IML gap Ḋ₅ − D̄₆ with its 95% CI per α; (b) held-out
    accuracy at the end of Stage 1 for each tagged X1 subset (consistent and inconsistent, under either tag)."""
    s = summary.sort_values("alpha")
    x = s["alpha"].to_numpy()
    fig, (a, b) = _two_panels(figsize)
    _gap_panel(a, x, s, "(a) IML gap after Stage 2", "none at α = 0.5 (no numbers)")
    _stage1_panel(b, x, s, ("qd1consis", "qd1incons", "qd2incons", "qd2consis"),
                  "(b) Stage 1: which definitions were used?")
    b.axhline(0.5, color="#888888", lw=0.8, ls=":")
    for ax in (a, b):
        ax.set_xticks(x, [f"{v:g}" for v in x])
    return _finish(fig, (a, b), "α (share of each tag's definitions\nthat tell the truth about it)")


def gradalign_figure(summary, curves=None, figsize=(10, 8.6)):
    """Gradient alignment over batch sizes (:func:`iml.mnist.gradient_alignment.summary`): (a) cos(definition grad,
    QA grad) at the end of Stage 1 per subset, with 95% CIs and the paper's Pythia-1B values; (b) the gap Ḋ₅ − D̄₆,
    its change since epoch 0 and its alias-specific part, with 95% CIs; (c) optionally the change of the gap over
    Stage 1, one line per batch size (`curves`: batch size -> :func:`iml.mnist.gradient_alignment.gap_curve`
    frame), in a second row."""
    import matplotlib.pyplot as plt

    from iml.mnist.gradient_alignment import PAPER_COSINES, SUBSETS

    s = summary.sort_values("batch_size")
    x = s["batch_size"].to_numpy()
    if curves:  # (c) under (a); its legend where a fourth panel would be
        fig = plt.figure(figsize=figsize)
        grid = fig.add_gridspec(2, 2)
        a, b, c = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 0])
    else:
        fig, (a, b) = plt.subplots(1, 2, figsize=(figsize[0], figsize[1] / 2 + 0.6))
    for sub in SUBSETS:
        if f"grad_cos_{sub}" not in s:
            continue
        y = s[f"grad_cos_{sub}"]
        a.errorbar(x, y, yerr=[y - s[f"grad_cos_{sub}_lo"], s[f"grad_cos_{sub}_hi"] - y], fmt="o-", capsize=3,
                   color=color(sub), label=f"{label(sub)}: ours")
    pb = sorted(PAPER_COSINES)
    if any(v in pb for v in x):
        for sub in ("d1consis", "d2consis"):
            a.plot(pb, [PAPER_COSINES[v][sub] for v in pb], "x:", color=color(sub),
                   label=f"{label(sub)}: paper, Pythia-1B")
    styles = (("grad_cos", "o-", "gap (the paper's quantity)"), ("grad_cos_change", "s-", "change since epoch 0"),
              ("grad_cos_specific", "^--", "alias-specific"))
    for i, (m, fmt, lab) in enumerate(styles):
        y = s[f"{m}_gap"]
        xs = x * (1 + 0.06 * (i - 1))  # side by side on the log axis
        b.errorbar(xs, y, yerr=[y - s[f"{m}_gap_lo"], s[f"{m}_gap_hi"] - y], fmt=fmt, capsize=3, label=lab,
                   color=(GAP_COLOR, *_EXTRA)[i])
    b.axhline(0, color="#888888", lw=0.8, ls="--")
    for ax, ylabel, title in ((a, "cos(definition grad, QA grad)", "(a) alignment at the end of Stage 1"),
                              (b, f"{GAP} in cos", "(b) the gap, 95% CIs over seeds")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(v) for v in x])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=11)
        _below(ax)
    if curves:
        for i, (bs, cur) in enumerate(sorted(curves.items())):
            col = ramp(i, len(curves))
            c.plot(cur["epoch"], cur["gap"], "o-", color=col, label=f"batch {bs}", ms=3)
            c.fill_between(cur["epoch"], cur["ci_low"], cur["ci_high"], color=col, alpha=0.15, lw=0)
        c.axhline(0, color="#888888", lw=0.8, ls="--")
        c.set_xlabel("Stage-1 epoch")
        c.set_ylabel(f"change of the {GAP} gap\nsince epoch 0 (cos)")
        c.set_title("(c) during Stage 1", fontsize=11)
    fig.tight_layout(w_pad=2.5, h_pad=1.5)
    if curves:
        box = c.get_position()
        legend(fig, handles=c.get_legend_handles_labels()[0], loc="center left", ncol=2,
               bbox_to_anchor=(box.x1 + 0.1, (box.y0 + box.y1) / 2))
    return fig


def gradalign_outcome_figure(frame, figsize=(6.4, 5.2)):
    """Seed by seed (:func:`iml.mnist.gradient_alignment.outcome_link`): the alignment gap at the end of Stage 1
    against the IML gap after Stage 2, one colour per batch size."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    sizes = sorted(frame["batch_size"].unique())
    for i, bs in enumerate(sizes):
        f = frame[frame["batch_size"] == bs]
        ax.scatter(f["align"], f["iml"], color=ramp(i, len(sizes)), label=f"batch {bs}", s=22)
    ax.axhline(0, color="#888888", lw=0.8, ls="--")
    ax.axvline(0, color="#888888", lw=0.8, ls="--")
    ax.set_xlabel(f"alignment gap {GAP}, end of Stage 1\n(change of cos since epoch 0)")
    ax.set_ylabel(f"IML gap {GAP} after Stage 2 (acc)")
    ax.set_title("Does alignment predict IML? (one dot per seed)", fontsize=11)
    ax.locator_params(axis="x", nbins=5)
    legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4)
    fig.tight_layout()
    return fig


def probe_figure(summary, figsize=(8, 5.6)):
    """Linear-probe accuracy for the alias's tag (:func:`iml.mnist.probes.summary`): one line per moment (epoch 0,
    end of Stage 1, end of Stage 2) across the layers, with 95% CIs, the shuffled-tag control dotted and
    chance at 0.5. The legend sits under the axes, clear of the error bars."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    whens = list(dict.fromkeys(summary["when"]))
    for i, when in enumerate(whens):
        s = summary[summary["when"] == when]
        x = [j + 0.08 * (i - (len(whens) - 1) / 2) for j in range(len(s))]  # side by side
        col = ramp(i, len(whens))
        ax.errorbar(x, s["acc"], yerr=[s["acc"] - s["acc_lo"], s["acc_hi"] - s["acc"]], fmt="o-", capsize=3,
                    color=col, label=f"{when} (95% CI)")
        ax.plot(x, s["control"], ":", color=col, lw=1.2, label=f"{when}, shuffled tags")
        ax.set_xticks(range(len(s)), list(s["layer"]))
    ax.axhline(0.5, color="#888888", lw=0.8, ls="--")
    ax.set_xlabel("layer (conv blocks c1-c3, fully connected f1)")
    ax.set_ylabel("probe accuracy for the alias's tag")
    ax.set_title("Is the source decodable from a question?\n(chance 0.5; paper, tag-alias-entity order: ≈ 0.5)",
                 fontsize=11)
    h, lab = _ordered(ax, "95% CI")  # the probes in one column, their controls in the other
    legend(ax, handles=h, labels=lab, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    return fig
