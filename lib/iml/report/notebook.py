"""What the figure notebooks call: where results live, the committed headline lookup, tables, the explorer, verdicts.

The notebooks in ``notebooks/`` only wire these helpers together (``iml.report.notebook.headline(...)``,
``.comparison(...)``, ``.explorer(...)``, ``.verdict(...)``), so tests reach every line of logic. It also holds the
names the other report modules share: the $IML_RESULTS_ROOT / $IML_HEADLINE_ROOT switches, the preset order and
the folder the executed notebooks go to. :func:`fake_result` makes synthetic results for tests and previews.
"""
from __future__ import annotations

import base64
import html
import io as _io
import os
import re
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from iml import registry
from iml.core import files, paper, results, stats, verdicts
from iml.core.config import ConfigError, config_hash
from iml.core.study import find_result, gap_claim
from iml.lm import tagging
from iml.report import plots
from iml.report.fmt import unsigned_zeros

__all__ = ["RESULTS_ENV", "HEADLINE_ENV", "EXECUTED_DIR", "EXPERIMENT_TITLES", "parameters", "overrides_parameter",
           "results_root", "headline_dir", "headline", "headline_note", "comparison", "Table", "table", "unsigned_zeros",
           "subset_table",
           "explorer_seeds", "explorer_views", "explorer", "fake_result", "verdict"]

EXECUTED_DIR = files.ROOT / "book" / "executed"
"""Where papermill writes the executed notebooks and the claims page (git-ignored; :mod:`iml.report.build`)."""

RESULTS_ENV = "IML_RESULTS_ROOT"
"""If set, where notebooks write (and look for) the reader's own run; tests point it at a temp folder."""
HEADLINE_ENV = "IML_HEADLINE_ROOT"
"""If set, where committed gpu-preset results are looked up (default: the repository's results/);
``none`` disables the lookup (test reference notebooks, so their outputs don't depend on results/)."""

EXPERIMENT_TITLES = {"main": "main result (Pythia-2.8B, CVDB in the paper)",
                     "setinclusion": "set inclusion (trained from scratch)",
                     "mnist": "MNIST grid (vision)",
                     "gradalign": "gradient alignment (MNIST grid, Stage 1)",
                     "probe": "linear probes for the tag (MNIST grid)"}


# ------------------------------------------------------------------------------------------------
# Notebook parameters as readers give them (papermill's -p passes text)
# ------------------------------------------------------------------------------------------------

_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def overrides_parameter(value, field: str = "overrides") -> dict:
    """A notebook's config overrides as a dict: a mapping, or text holding a JSON or YAML mapping
    (``-p overrides '{"n_seeds": 3}'``); None or empty text -> {}. Anything else: ConfigError naming `field`."""
    if isinstance(value, str):
        import yaml

        try:
            value = yaml.safe_load(value)  # JSON is YAML
        except yaml.YAMLError as e:
            raise ConfigError(field, f"not a JSON or YAML mapping: {' '.join(str(e).split())}") from None
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(field, f'must be a mapping such as {{"n_seeds": 3}} (or one as JSON/YAML text), '
                                 f'got {value!r}')
    return dict(value)


def parameters(preset, overrides=None, force=False) -> tuple[str, dict, bool]:
    """The parameters cell's ``preset``, ``overrides``, ``force`` as the notebook needs them, whether they came
    as Python values or as papermill's text (``-p overrides '{...}'``, ``-p force false``).

    `force`: a bool, 0/1, or true/false/yes/no/1/0 in any case. Bad values: ConfigError naming the parameter.
    """
    if not isinstance(preset, str) or not preset.strip():
        raise ConfigError("preset", f"must be a preset name such as 'cpu', got {preset!r}")
    if isinstance(force, str) and force.strip().lower() in _TRUE | _FALSE:
        force = force.strip().lower() in _TRUE
    elif not isinstance(force, bool) and isinstance(force, int) and force in (0, 1):
        force = bool(force)
    if not isinstance(force, bool):
        raise ConfigError("force", f"must be true or false (or yes/no, 1/0), got {force!r}")
    return preset.strip(), overrides_parameter(overrides), force


# ------------------------------------------------------------------------------------------------
# Where results live
# ------------------------------------------------------------------------------------------------

def results_root(value: str | os.PathLike | None = None) -> Path | None:
    """The results root a notebook passes to ``run(..., root=)``.

    ``None`` -> $IML_RESULTS_ROOT if set, else None (the repository's results/); ``"tmp"`` -> a fresh
    temporary folder (the nbval reference notebooks use it, so re-running them recomputes the smoke run
    and never writes into results/); anything else -> that path.
    """
    if value is None:
        env = os.environ.get(RESULTS_ENV)
        return Path(env) if env else None
    if str(value) == "tmp":
        return Path(tempfile.mkdtemp(prefix="iml-results-"))
    return Path(value)


def headline_dir(root=None) -> Path | None:
    """Where committed headline results are looked up: `root`, else $IML_HEADLINE_ROOT, else results/;
    ``"none"`` -> None (the nbval reference notebooks skip the lookup)."""
    return _headline_root(root)


def _headline_root(root) -> Path | None:
    if root is None:
        root = os.environ.get(HEADLINE_ENV) or files.RESULTS_DIR
    if str(root) == "none":
        return None
    return Path(root)


def headline(name: str, preset: str = "gpu", root: str | os.PathLike | None = None):
    """The committed result of experiment `name` at `preset` (default gpu), or None if there is none.

    Looked up by the preset's config hash (:func:`iml.core.results.load`), so only a result made by exactly the
    current gpu config is shown.
    """
    r = _headline_root(root)
    if r is None:
        return None
    try:
        exp = registry.get(name)
        cfg = exp.make_config(preset)
    except (ImportError, KeyError, ValueError):
        return None
    return find_result(name, cfg, root=r)


def headline_note(result, name: str, preset: str = "gpu", root=None) -> str:
    """Markdown saying what the headline figure is, or plainly that no committed result exists."""
    if result is not None:
        planned = result.meta.get("planned_n_stage1")
        cut = (f" **Cut short:** {result.config['seeds']['n_stage1']} of the {planned} planned stage-1 seeds "
               f"finished within the GPU time (the others were not started); the numbers below are those seeds'."
               if planned else "")
        return (f"**Headline: committed `{preset}`-preset result** (`results/{name}/{result.hash}`).{cut} "
                f"{plots.scale_caption(result)}")
    if _headline_root(root) is None:
        return f"*The committed `{preset}`-preset lookup is disabled in this run (test reference notebook).*"
    try:
        h = config_hash(registry.get(name).make_config(preset))
        where = f"`results/{name}/{h}/`"
    except Exception:  # noqa: BLE001 - only used in the message
        where = f"`results/{name}/<gpu config hash>/`"
    return (f"**No committed `{preset}`-preset result for this experiment exists yet** (looked for {where}). "
            f"The figures below show only the run made while building this book; its scale is printed "
            f"under each figure. See *Reproduce* for how to make the `{preset}` run.")


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

def _metrics_of(result, experiment: str) -> list[str]:
    have = set(result.table["metric"].unique())
    want = [g.metric for g in paper.GAPS if g.experiment == experiment]
    out = [m for m in dict.fromkeys(want) if m in have]
    return out or sorted(have)


def comparison(result, experiment: str | None = None) -> pd.DataFrame:
    """Our gaps (:func:`iml.core.stats.gap_table`, t-intervals over stage-1 seeds) beside the paper's values.

    Stage-2 gaps are taken at the last epoch, stage-1 gaps at the last stage-1 epoch.
    """
    experiment = experiment or result.experiment
    frames = []
    ends = {"stage2_end": None}
    b = results.stage_boundaries(result.table)
    ends["stage1_end"] = b[-1] if b else None
    for when, epoch in ends.items():
        prs = [(g.a, g.b) for g in paper.GAPS if g.experiment == experiment and g.when == when]
        if not prs or (when == "stage1_end" and epoch is None):
            continue
        frames.append(stats.gap_table(result.table, prs, _metrics_of(result, experiment), epoch=epoch))
    gaps = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame(columns=["a", "b", "metric", "epoch", "gap", "ci_low",
                                                                "ci_high", "p_one_sided", "n_stage1",
                                                                "n_stage2_per_stage1"])
    # Only the pairs the paper shows, on the paper's metric.
    wanted = {(g.a, g.b, g.metric) for g in paper.GAPS if g.experiment == experiment}
    if not gaps.empty:
        mask = [(a, b_, m) in wanted for a, b_, m in zip(gaps["a"], gaps["b"], gaps["metric"])]
        gaps = gaps[mask]
    out = paper.with_paper(gaps, experiment)
    reading = (f"poster reading (±{paper.POSTER_ACCURACY:g} per value read, so ±{2 * paper.POSTER_ACCURACY:g} "
               f"for this difference of two)")
    out["paper source"] = [reading if str(v).startswith("poster reading ±") else v for v in out["paper source"]]
    return out


# ------------------------------------------------------------------------------------------------
# Tables as the pages show them
# ------------------------------------------------------------------------------------------------

_HASH = re.compile(r"^[0-9a-f]{12}$")
_SIGNED_NAMES = ("gap", "−", "ours", "paper", "change", "difference", "reliance", "slope")


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _decimals(values) -> int:
    """3, or 4 when the column carries a 4th decimal (its producer rounded it to 4, e.g. cosine gaps)."""
    nums = [float(v) for v in values if _is_num(v) and v == v]
    return 4 if any(abs(v - round(v, 3)) > 1e-9 for v in nums) else 3


def _fmt_number(v, decimals: int, signed: bool) -> str:
    if v != v:
        return "–"
    if isinstance(v, (int, np.integer)):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    s = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    return f"{0:.{decimals}f}" if float(s) == 0 else s


def _fmt_column(name: str, values: list, first: bool) -> list[str]:
    if name.startswith("p ("):
        return [("<0.001" if v < 0.001 else f"{v:.3f}") if _is_num(v) and v == v else str(v) for v in values]
    if first:  # the row's label (α, batch size, layer): as given
        return [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values]
    nums = [v for v in values if _is_num(v)]
    d = _decimals(nums)
    big = [abs(float(v)) for v in nums if v == v and not isinstance(v, (int, np.integer))]
    if big and max(big) > 1.5:  # not a score or a gap (minutes, counts): the fewest decimals that show them all
        d = next((k for k in range(3) if all(abs(v - round(v, k)) < 1e-9 for v in big)), 2)
    signed = any(k in name for k in _SIGNED_NAMES) or any(v < 0 for v in nums if v == v)
    return [_fmt_number(v, d, signed) if _is_num(v) else ("–" if v is None else unsigned_zeros(str(v)))
            for v in values]


class Table:
    """A table as a page shows it (:func:`table`): no index column, one number format per column, signed zeros
    printed as 0.000, config hashes as hover text and a footnote, columns that say the same in every row as a
    footnote. Renders as HTML in the book and as plain text elsewhere."""

    def __init__(self, columns: list[str], rows: list[list[str]], titles: list[str], notes: list[str]):
        self.columns, self.rows, self.titles, self.notes = columns, rows, titles, notes

    MAX_COLUMNS = 9
    """A table with more columns is shown as several, each led by the label column (they fit the page's column)."""

    def _html(self, cols: list[int]) -> str:
        head = "".join(f"<th>{html.escape(self.columns[j])}</th>" for j in cols)
        body = []
        for row, title in zip(self.rows, self.titles):
            cells = [(f'<td title="{html.escape(title)}">' if j == 0 and title else "<td>") + html.escape(row[j]) +
                     "</td>" for j in cols]
            body.append("<tr>" + "".join(cells) + "</tr>")
        return f'<table class="dataframe iml-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'

    def _repr_html_(self) -> str:
        rest = list(range(1, len(self.columns)))
        parts = max(1, -(-len(rest) // (self.MAX_COLUMNS - 1)))
        size = -(-len(rest) // parts) if rest else 0
        chunks = [[0] + rest[i:i + size] for i in range(0, len(rest), size)] if rest else [[0]]
        notes = "".join(f"<p class=\"iml-table-note\">{html.escape(n)}</p>" for n in self.notes)
        return f'<div class="iml-table">{"".join(self._html(c) for c in chunks)}{notes}</div>'

    def __repr__(self) -> str:
        text = pd.DataFrame(self.rows, columns=self.columns).to_string(index=False)
        return "\n".join([text, *self.notes])


def table(df: pd.DataFrame, hash_columns: tuple[str, ...] = ("config",), fold_constant: bool = True) -> Table:
    """`df` as a page shows it (:class:`Table`): what every comparison and sweep table goes through."""
    df = df.reset_index(drop=True)
    notes, titles = [], [""] * len(df)
    hashes = [c for c in df.columns if c in hash_columns and df[c].astype(str).str.match(_HASH).all()]
    for c in hashes:
        labels = _fmt_column(str(df.columns[0]), list(df.iloc[:, 0]), True)
        titles = [f"{c} {h}" for h in df[c].astype(str)]
        notes.append(f"{c}: " + "; ".join(f"{lab} → {h}" for lab, h in zip(labels, df[c].astype(str))))
    keep = [c for c in df.columns if c not in hashes]
    if fold_constant and len(df) > 1:
        const = [c for c in keep[1:] if df[c].astype(str).nunique(dropna=False) == 1]
        notes = [f"{c} (every row): {_fmt_column(c, [df[c].iloc[0]], False)[0]}" for c in const] + notes
        keep = [c for c in keep if c not in const]
    cols = {c: _fmt_column(str(c), list(df[c]), i == 0) for i, c in enumerate(keep)}
    rows = [[cols[c][i] for c in keep] for i in range(len(df))]
    return Table([str(c) for c in keep], rows, titles, notes)


def subset_table(num_ents: int = 400) -> tuple[pd.DataFrame, str]:
    """The dataset's subset table with the paper's notation, built by :mod:`iml.lm.tagging` at a small size.

    Returns (table, where it came from). Falls back to :func:`iml.core.paper.subset_notation` if the dataset
    module cannot build the table.
    """
    try:
        data = tagging.build({"num_ents": num_ents})
        df = data.summary()
        return df, f"built by `iml.lm.tagging.build(num_ents={num_ents})` with the paper's default fractions"
    except Exception as e:  # noqa: BLE001 - the page still shows the notation
        return paper.subset_notation(), f"paper notation only (iml.lm.tagging unavailable: {type(e).__name__})"


# ------------------------------------------------------------------------------------------------
# The explorer: precomputed views, switched client-side (works in the static HTML, no kernel)
# ------------------------------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt  # here, not at the top: matplotlib is heavy and only the explorer draws

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def explorer_seeds(result, max_seeds: int | None = None) -> list:
    """The stage-1 seeds the explorer offers: those in the result's own table (all of them unless `max_seeds`)."""
    seeds = sorted(result.table["seed_stage1"].unique())
    return seeds[:max_seeds] if max_seeds else seeds


def explorer_views(result, max_seeds: int | None = None) -> tuple[list[str], list[tuple[str, list[str]]], list[str]]:
    """(metrics, [(view name, subsets)], seed labels) the explorer precomputes; the seeds are the result's
    (:func:`explorer_seeds`)."""
    t = result.table
    metrics = [m for m in ("EM", "F1", "acc") if m in set(t["metric"])] or sorted(t["metric"].unique())
    present = set(t["subset"])
    x1 = [s for s in plots.IN_DISTRIBUTION[:4] if s in present]
    x2 = [s for s in plots.IN_DISTRIBUTION[4:] if s in present]
    ea = [s for s in plots.ENTITY_ASSOCIATION if s in present]
    views = [(n, s) for n, s in (("X1: Stage-1 subsets", x1), ("X2: Stage-2 subsets", x2),
                                 ("entity association", ea)) if s]
    other = sorted(present - set(x1) - set(x2) - set(ea))
    if not views:
        views = [("all subsets", other)]
    seeds, n = explorer_seeds(result, max_seeds), t["seed_stage1"].nunique()
    return metrics, views, [f"mean over the {n} stage-1 seeds (95% CI)"] + [f"stage-1 seed {s}" for s in seeds]


def explorer(result, max_seeds: int | None = None, figsize=(6.4, 3.6)):
    """An ipywidgets explorer over `result`: metric x subset group x seed (every stage-1 seed of the result's table
    unless `max_seeds`).

    Every combination is rendered to a PNG now; three selectors are `jslink`ed to nested `Stack`s, so
    switching happens in the browser and works in the static book (no Python callbacks).
    """
    # Imported here: ipywidgets is an optional (book) dependency, and matplotlib is only needed to draw.
    import ipywidgets as w
    import matplotlib.pyplot as plt

    metrics, views, seed_labels = explorer_views(result, max_seeds)
    seeds = explorer_seeds(result, max_seeds)
    metric_sel = w.ToggleButtons(options=metrics, description="metric")
    view_sel = w.Dropdown(options=[v for v, _ in views], description="subsets")
    seed_sel = w.Dropdown(options=seed_labels, description="seeds", layout=w.Layout(width="420px"))
    links = []
    metric_children = []
    for m in metrics:
        view_children = []
        for vname, subsets in views:
            seed_children = []
            for i, _ in enumerate(seed_labels):
                fig, ax = plt.subplots(figsize=figsize)
                sel = None if i == 0 else [seeds[i - 1]]
                plots.curves(result.table, m, subsets, ax=ax, seeds=sel, title=f"{vname}: {m}")
                plots.panel_bound(ax, result.table, m, subsets, seeds=sel)  # a floor says so, as in the figures
                fig.tight_layout()
                img = _png(fig)
                seed_children.append(w.HTML(
                    f'<img class="iml-explorer-view" alt="{html.escape(vname)}, {m}, {html.escape(seed_labels[i])}"'
                    f' src="data:image/png;base64,{img}"/>'))
            seed_stack = w.Stack(seed_children, selected_index=0)
            links.append(w.jslink((seed_sel, "index"), (seed_stack, "selected_index")))
            view_children.append(seed_stack)
        view_stack = w.Stack(view_children, selected_index=0)
        links.append(w.jslink((view_sel, "index"), (view_stack, "selected_index")))
        metric_children.append(view_stack)
    metric_stack = w.Stack(metric_children, selected_index=0)
    links.append(w.jslink((metric_sel, "index"), (metric_stack, "selected_index")))
    note = w.HTML(f'<p class="iml-explorer-caption" style="font-size:smaller">'
                  f'{html.escape(plots.scale_caption(result))}</p>')
    box = w.VBox([w.HBox([metric_sel]), w.HBox([view_sel, seed_sel]), metric_stack, note])
    box.add_class("iml-explorer")
    box._iml_links = links  # keep the links alive with the widget
    return box


# ------------------------------------------------------------------------------------------------
# Fake results (tests, previews)
# ------------------------------------------------------------------------------------------------

def fake_result(experiment: str = "main", n_stage1: int = 3, n_stage2: int = 2, epochs: tuple[int, int] = (4, 3),
                gap: float = 0.08, seed: int = 0, config: Mapping | None = None, meta: Mapping | None = None):
    """A synthetic :class:`iml.core.results.Result` with the real table layout, for tests and previews.

    Ḋ₅ (d1consis) beats D̄₆ (d2consis) by about `gap` after Stage 2 (use gap <= 0 for a null result).
    """
    rng = np.random.default_rng(seed)
    e1, e2 = epochs
    if experiment == "main":
        metrics = ["EM", "F1"]
        subsets = list(plots.IN_DISTRIBUTION) + list(plots.ENTITY_ASSOCIATION)
    else:
        metrics = ["acc"]
        subsets = ["qd1consis", "qd2incons", "d1consis", "d2consis"]
    base = {s: 0.25 + 0.05 * i / len(subsets) for i, s in enumerate(subsets)}
    for s in subsets:  # Ḋ₅ and D̄₆ start level, so `gap` alone decides the IML gap
        if paper._split_subset(s)[0] == "d2consis":
            base[s] = base[s.replace("d2consis", "d1consis")]
    rows = []
    for s1 in range(n_stage1):
        off1 = rng.normal(0, 0.01)
        for s2 in range(n_stage2):
            run = f"s{s1}_t{s2}"
            for ep in range(0, e1 + e2 + 1):
                stage = 1 if ep <= e1 else 2
                for sub in subsets:
                    v = base[sub] + off1 + rng.normal(0, 0.005)
                    base_sub = paper._split_subset(sub)[0]
                    if stage == 2 and base_sub == "d1consis":
                        v += gap * (ep - e1) / e2
                    if stage == 1 and base_sub == "qd1consis":
                        v += 0.1 * ep / e1
                    for m in metrics:
                        rows.append((run, s1, s2, stage, ep, sub, m, float(np.clip(v + (m == "F1") * 0.05, 0, 1))))
    table = pd.DataFrame(rows, columns=results.COLUMNS)
    cfg = dict(config or {"model": {"name": "fake-gptneox", "hidden_size": 64}, "data": {"num_ents": 120}})
    mt = dict(meta or {"environment": {"cpu_count": 2, "torch_threads": 1, "gpu": None}, "wall_time_s": 12.5,
                       "preset": "smoke"})
    h = config_hash(cfg)
    return results.Result(experiment, h, Path("/nonexistent") / experiment / h, table, cfg, mt)


def verdict(result, experiment: str | None = None) -> str:
    """A sentence or two, in words, on whether this result shows the paper's IML gap(s) at its scale."""
    experiment = experiment or result.experiment
    preset = (result.meta or {}).get("preset") or plots.preset_label(result)
    scale = (preset if "preset" in preset else f"the {preset} scale") if preset else "this run's scale"
    out = []
    for c in paper.CLAIMS:
        if c.experiment != experiment:
            continue
        for a, b_, m in c.gaps:
            status, txt = gap_claim(result, a, b_, m, paper.gap_epoch(result.table, a, b_, m), str(preset))  # as on the claims page
            txt = unsigned_zeros(txt)
            out.append(f"- {paper.gap_label(experiment, a, b_, m)}: **{status}** ({scale}): {txt}.")
    if not out:
        return "No claim of the paper is tested by this result."
    return (f"**Verdict on this run** ({len(out)} planned comparison{'s' if len(out) != 1 else ''}, the paper's; "
            f"95% interval above 0 with at least {verdicts.MIN_SEEDS} stage-1 seeds counts as reproduced):\n\n"
            + "\n".join(out))


