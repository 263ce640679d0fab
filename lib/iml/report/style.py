"""The one place for how the book draws things: the tags' names and colours, the paper's subset colours, legend
labels, the size text has on the page, and the layout check every figure passes (:func:`text_problems`).

The tags: **Ḋefine (reliable)** is blue and **D̄efine (unreliable)** red in every figure and on every page; the
fresh Stage-2 tag D̃efine is grey. The Stage-1 subsets of the two tags keep the paper's lighter shades of the same
pair (Ḋ₁QA₁ purple, D̄₂QA₂ pink), and the α sweep's definitions that break their tag's promise a light blue and a
salmon (dashed); colours that are not a tag's (gaps, batch sizes) avoid blue and red.
"""
from __future__ import annotations

import dataclasses

from iml.core import paper, verdicts

__all__ = ["Tag", "TAGS", "TAG_OF", "COLORS", "BROKEN_PROMISE", "GAP_COLOR", "color", "label", "tag_name", "ramp", "PAGE_COLUMN_PX",
           "LEGEND_PT", "page_points", "legend_size", "legend", "text_problems", "bound_note", "mark_bound"]


@dataclasses.dataclass(frozen=True)
class Tag:
    name: str      # for legends (matplotlib mathtext)
    text: str      # for prose and tables (unicode)
    color: str


TAGS: dict[str, Tag] = {
    "define1": Tag(r"$\dot{\mathrm{D}}$efine (reliable)", "Ḋefine (reliable)", "#1f77b4"),          # blue
    "define2": Tag(r"$\bar{\mathrm{D}}$efine (unreliable)", "D̄efine (unreliable)", "#d62728"),      # red
    "define3": Tag(r"$\tilde{\mathrm{D}}$efine (fresh tag)", "D̃efine (fresh tag)", "#7f7f7f"),      # grey
}
"""The three tags (Define1, Define2, Define3 of the authors' code): name and colour."""

TAG_OF = {"qd1consis": "define1", "d1consis": "define1", "qd1incons": "define1",
          "qd2incons": "define2", "d2consis": "define2", "qd2consis": "define2", "d2incons": "define2",
          "d3consis": "define3"}
"""The tag that defines each subset's aliases."""

# The paper's colours (poster / code plotting): d1 blue, d2 red, d3 grey (the tags' own), qd1 purple, qd2 pink,
# q brown, no_qd orange, not-replaced (real names) green.
COLORS: dict[str, str] = {
    "d1consis": TAGS["define1"].color,
    "d2consis": TAGS["define2"].color,
    "d3consis": TAGS["define3"].color,
    "qd1consis": "#9467bd",                  # purple
    "qd2incons": "#e377c2",                  # pink
    "q": "#8c564b",                          # brown
    "no_qd_baseline": "#ff7f0e",             # orange
    "q_no_replacement_baseline": "#2ca02c",  # green
    "qd1incons": "#6baed6",                  # light blue: Ḋefine, false (the α sweep's code-only subsets)
    "qd2consis": "#f4a582",                  # salmon: D̄efine, true
    "qd4consis": "#000000",
    "d2incons": "#ff9896",
    "train_qa": "#444444",
}

BROKEN_PROMISE = ("qd1incons", "qd2consis")
"""Subsets whose definitions do not behave as their tag promises (Ḋefine false, D̄efine true): drawn dashed."""

GAP_COLOR = "#222222"
"""A gap Ḋ − D̄ is neither tag's: drawn in black."""

TRAINING = {"train_qa": "training QA (seen in training, not held out)", "train": "all training data"}
"""Subsets that are not test sets, and their legend text."""


def _base(subset: str) -> str:
    base, _ = paper._split_subset(subset)
    return base[: -len("_swapped")] if base.endswith("_swapped") else base


def color(subset: str) -> str:
    """The colour of a subset (entity-association variants share their subset's colour)."""
    return COLORS.get(_base(subset), "#333333")


def tag_name(subset: str, math: bool = True) -> str | None:
    """The name of the tag that defines `subset`'s aliases ("Ḋefine (reliable)"), or None."""
    t = TAG_OF.get(_base(subset))
    return None if t is None else (TAGS[t].name if math else TAGS[t].text)


def label(subset: str) -> str:
    """Legend text: the paper's notation (matplotlib mathtext) and, for tagged subsets, the tag's name."""
    if subset in TRAINING:
        return TRAINING[subset]
    s, tag = paper.symbol(subset, math=True), tag_name(subset)
    if not tag or tag.split("(")[-1].rstrip(")") in s:  # D̃₈ already says "(fresh tag)"
        return s
    return f"{s}, {tag}"


def ramp(i: int, n: int):
    """The i-th of n colours along viridis (for lines that form an ordered series, e.g. batch sizes)."""
    import matplotlib.pyplot as plt

    return plt.get_cmap("viridis")(i / max(1, n - 1))


PAGE_COLUMN_PX = 768
"""The width a figure is shown at in the book's content column at a 1400-px window (sphinx-book-theme, measured in
headless Chromium by ``make check-html``). Font sizes at page scale are computed for it (:func:`page_points`)."""
LEGEND_PT = 8.5
"""The smallest legend text on the page, in points."""


def page_points(fig, size_pt: float, column_px: float = PAGE_COLUMN_PX) -> float:
    """The size in points on the page of `size_pt` text in `fig`: the figure is shown at its own pixel width
    (``fig.dpi``), shrunk to `column_px` CSS px when wider."""
    shown = min(column_px, fig.get_figwidth() * fig.dpi)
    return size_pt * shown / (fig.get_figwidth() * 96)


def legend_size(fig, page_pt: float = LEGEND_PT) -> float:
    """The font size (in the figure's points) that `fig` shows at `page_pt` points on the page."""
    return page_pt / page_points(fig, 1.0)


def legend(where, fig=None, **kw):
    """A frameless legend at :data:`LEGEND_PT` on the page (`where`: axes or figure)."""
    from matplotlib.figure import Figure

    fig = fig or (where if isinstance(where, Figure) else where.figure)
    kw.setdefault("frameon", False)
    return where.legend(fontsize=legend_size(fig), **kw)


def _hidden_ticks(fig) -> set:
    """Tick labels matplotlib keeps but does not draw (ticks outside the axis' view interval)."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-6
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - span <= tick.get_loc() <= hi + span:
                    out |= {id(tick.label1), id(tick.label2)}
    return out


def text_problems(fig) -> list[str]:
    """Layout faults of `fig`: drawn texts (titles, labels, tick labels, annotations, legends) whose boxes overlap,
    or that reach past the figure's edge (cut off in the saved image)."""
    from matplotlib.text import Text

    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    edge, hidden = fig.bbox, _hidden_ticks(fig)
    boxes = [(t.get_text(), t.get_window_extent(r)) for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    out = [f"cut off: {a!r}" for a, b in boxes if b.x0 < edge.x0 - 1 or b.x1 > edge.x1 + 1 or b.y0 < edge.y0 - 1
           or b.y1 > edge.y1 + 1]
    inner = [(a, b.shrunk(0.98, 0.9)) for a, b in boxes]
    return out + [f"overlap: {a!r} / {b!r}" for i, (a, ba) in enumerate(inner) for b, bb in inner[i + 1:]
                  if ba.overlaps(bb)]


def bound_note(means, unit: str = "") -> str | None:
    """"floor: every subset ≈ 0 ..." when every value of `means` (a panel's curves) is within
    :data:`iml.core.verdicts.BOUND_TOL` of 0 (or of 1: a ceiling), else None: the rule the verdicts apply to a gap."""
    vals = [float(v) for v in means if v == v]
    if not vals:
        return None
    tol = verdicts.BOUND_TOL
    if max(vals) <= tol:
        return f"floor: every subset ≈ 0 (all ≤ {tol:g}{unit}),\nso the gap here is uninformative"
    if min(vals) >= 1 - tol:
        return f"ceiling: every subset ≈ 1 (all ≥ {1 - tol:g}{unit}),\nso the gap here is uninformative"
    return None


def mark_bound(ax, note: str | None) -> None:
    """Write a floor/ceiling note in `ax` (right, above the floor: clear of a legend placed "best") and show the
    whole [0, 1] range, so a panel at its bound is read as such, not as a zero gap."""
    if not note:
        return
    ax.set_ylim(-0.04, 1.04)
    ax.text(0.97, 0.3, note, transform=ax.transAxes, ha="right", va="center", fontsize=10, color="#8c510a",
            bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "#8c510a", "lw": 1})
