"""Build the book: run the figure notebooks, write the claims page, check the static HTML.

Command line (what ``make notebooks`` / ``make check-html`` call)::

    python -m iml.report.book run --preset cpu        # papermill every notebooks/*.ipynb -> book/executed/*.ipynb,
                                               # then write book/executed/claims.md
    python -m iml.report.book claims                  # only the "paper vs this book" page
    python -m iml.report.book check-html [_build/html]  # offline check (+ headless chromium screenshots)

Design: the notebooks in ``notebooks/`` are committed *without outputs*. papermill executes them with the
chosen preset into ``book/executed/`` (git-ignored), and Jupyter Book renders those executed copies with
``execute_notebooks: "off"``, so the book shows exactly the run papermill made and git stays clean.

The helpers the notebooks call (:func:`headline`, :func:`comparison`, :func:`explorer`, ...) live here so
that tests reach every line of logic; a notebook only wires them together.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io as _io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.core import files
from iml.core import paper
from iml.report import plots
from iml.report import power
from iml import registry
from iml.core import stats
from iml.core import verdicts
from iml.core.config import parse_override

__all__ = ["NOTEBOOKS_DIR", "EXECUTED_DIR", "PRESET_ORDER", "results_root", "headline", "headline_note",
           "comparison", "explorer", "subset_table", "fake_result", "run_notebooks", "best_results",
           "claims_table", "claims_markdown", "write_claims", "external_refs", "check_html", "stage_book"]

NOTEBOOKS_DIR = files.ROOT / "notebooks"
EXECUTED_DIR = files.ROOT / "book" / "executed"
PRESET_ORDER = ("paper", "gpu", "cpu", "smoke")
"""Presets from largest to smallest scale: the claims page uses the largest finished one."""

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
    from iml import registry

    r = _headline_root(root)
    if r is None:
        return None
    try:
        exp = registry.get(name)
        cfg = exp.make_config(preset)
    except (ImportError, KeyError, ValueError):
        return None
    return find_result(name, cfg, root=r)


def find_result(name: str, cfg, root) -> Any:
    """The finished result of `cfg` under `root`, else the one of a run of `cfg` cut short by its deadline
    (its finished seeds saved as a smaller config whose meta names `cfg`'s hash, see
    :func:`iml.lm.experiment.finalize_completed`; the one with most rows), else None."""
    from iml.core import results
    from iml.core.config import config_hash

    try:
        return results.load(name, cfg, root=root)
    except (FileNotFoundError, results.StaleResultError):
        pass
    want, found = config_hash(cfg), []
    for meta_path in sorted((Path(root) / name).glob("*/meta.json")):
        try:
            if json.loads(meta_path.read_text()).get("planned_config_hash") == want:
                found.append(results.load_dir(meta_path.parent))
        except (OSError, ValueError, FileNotFoundError, results.StaleResultError):
            continue
    return max(found, key=lambda res: len(res.table)) if found else None


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
    from iml.core import config as _config
    from iml import registry

    try:
        h = _config.config_hash(registry.get(name).make_config(preset))
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
    b = plots.stage_boundaries(result.table)
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
    return paper.with_paper(gaps, experiment)


def subset_table(num_ents: int = 400) -> tuple[pd.DataFrame, str]:
    """The dataset's subset table with the paper's notation, built by :mod:`iml.lm.tagging` at a small size.

    Returns (table, where it came from). Falls back to :func:`iml.core.paper.subset_notation` if the dataset
    module cannot build (e.g. a checkout without it).
    """
    try:
        from iml.lm import tagging

        data = tagging.build({"num_ents": num_ents})
        df = data.summary()
        return df, f"built by `iml.lm.tagging.build(num_ents={num_ents})` with the paper's default fractions"
    except Exception as e:  # noqa: BLE001 - the page still shows the notation
        return paper.subset_notation(), f"paper notation only (iml.lm.tagging unavailable: {type(e).__name__})"


# ------------------------------------------------------------------------------------------------
# The explorer: precomputed views, switched client-side (works in the static HTML, no kernel)
# ------------------------------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def explorer_views(result, max_seeds: int = 5) -> tuple[list[str], list[tuple[str, list[str]]], list[str]]:
    """(metrics, [(view name, subsets)], seed labels) the explorer precomputes."""
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
    seeds = sorted(t["seed_stage1"].unique())[:max_seeds]
    return metrics, views, ["mean over stage-1 seeds (95% CI)"] + [f"stage-1 seed {s}" for s in seeds]


def explorer(result, max_seeds: int = 5, figsize=(6.4, 3.6)):
    """An ipywidgets explorer over `result`: metric x subset group x seed.

    Every combination is rendered to a PNG now; three selectors are `jslink`ed to nested `Stack`s, so
    switching happens in the browser and works in the static book (no Python callbacks).
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    metrics, views, seed_labels = explorer_views(result, max_seeds)
    seeds = sorted(result.table["seed_stage1"].unique())[:max_seeds]
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
    from iml.core import results

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
    from iml.core.config import config_hash

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
            status, txt = _gap_status(result, a, b_, m, plots.gap_epoch(result.table, a, b_, m), str(preset))
            out.append(f"- {paper.gap_label(experiment, a, b_, m)}: **{status}** ({scale}): {txt}.")
    if not out:
        return "No claim of the paper is tested by this result."
    return (f"**Verdict on this run** ({len(out)} planned comparison{'s' if len(out) != 1 else ''}, the paper's; "
            f"95% interval above 0 with at least {verdicts.MIN_SEEDS} stage-1 seeds counts as reproduced):\n\n"
            + "\n".join(out))


# ------------------------------------------------------------------------------------------------
# Running the notebooks
# ------------------------------------------------------------------------------------------------

def notebook_paths(names: Iterable[str] | None = None) -> list[Path]:
    nbs = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    if names:
        want = set(names)
        nbs = [p for p in nbs if p.stem in want]
    return nbs


def run_notebooks(preset: str = "cpu", out_dir: str | os.PathLike = EXECUTED_DIR,
                  names: Iterable[str] | None = None, parameters: Mapping[str, Any] | None = None,
                  results_dir: str | os.PathLike | None = None, headline_dir: str | os.PathLike | None = None,
                  timeout: int | None = None, progress: bool = True) -> list[Path]:
    """papermill-execute notebooks/*.ipynb with ``preset`` (plus `parameters`) into `out_dir`.

    `results_dir` / `headline_dir` set $IML_RESULTS_ROOT / $IML_HEADLINE_ROOT for the kernels.
    Returns the executed notebook paths. Raises papermill's PapermillExecutionError on a failing cell.
    """
    import papermill as pm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_backup = {k: os.environ.get(k) for k in (RESULTS_ENV, HEADLINE_ENV, "OMP_NUM_THREADS")}
    if results_dir is not None:
        os.environ[RESULTS_ENV] = str(results_dir)
    if headline_dir is not None:
        os.environ[HEADLINE_ENV] = str(headline_dir)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    done = []
    try:
        for nb in notebook_paths(names):
            target = out / nb.name
            if progress:
                print(f"[iml.report.book] running {nb.relative_to(files.ROOT)} (preset={preset}) -> {target}", flush=True)
            pm.execute_notebook(str(nb), str(target), parameters={"preset": preset, **dict(parameters or {})},
                                kernel_name="python3", cwd=str(files.ROOT), progress_bar=False,
                                execution_timeout=timeout)
            done.append(target)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return done


REFS_DIR = files.ROOT / "tests" / "notebooks"
REF_PARAMETERS = {"results_root": "tmp", "headline_root": "none"}
"""Reference notebooks recompute the smoke run in a fresh temp folder and skip the committed-result lookup,
so re-running them under nbval gives the same outputs whatever results/ holds."""


def make_refs(out_dir: str | os.PathLike = REFS_DIR, names: Iterable[str] | None = None) -> list[Path]:
    """papermill the notebooks at the smoke preset into tests/notebooks/ (what `make refs` calls)."""
    paths = run_notebooks("smoke", out_dir, names, REF_PARAMETERS)
    for p in paths:
        slim_reference(p)
    return paths


def slim_reference(path: str | os.PathLike) -> Path:
    """Drop what nbval never compares from a reference notebook (images, widget state, outputs of
    `nbval-ignore-output` cells), so the committed references stay small."""
    path = Path(path)
    nb = json.loads(path.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        if "nbval-ignore-output" in c.get("metadata", {}).get("tags", []):
            c["outputs"] = []
            continue
        for o in c.get("outputs", []):
            for k in ("image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"):
                o.get("data", {}).pop(k, None)
    files.write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return path


# ------------------------------------------------------------------------------------------------
# Claims page
# ------------------------------------------------------------------------------------------------

def best_results(root: str | os.PathLike | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """experiment -> (preset, Result) for the largest-scale finished result of each registered experiment.

    Looks up each preset's config hash under `root` (default results/, or $IML_RESULTS_ROOT). `extra`
    maps experiment -> (preset, Result) to use instead (e.g. a result just computed elsewhere).
    """
    from iml import registry

    roots = []
    for r in (root, os.environ.get(RESULTS_ENV), files.RESULTS_DIR):
        if r is not None and Path(r) not in roots:
            roots.append(Path(r))
    out: dict[str, tuple[str, Any]] = {}
    for name in registry.EXPERIMENTS:
        try:
            exp = registry.get(name)
        except ImportError:
            continue
        for preset in PRESET_ORDER:
            try:
                cfg = exp.make_config(preset)
            except Exception:  # noqa: BLE001 - a preset this experiment lacks
                continue
            for r in roots:
                found = find_result(name, cfg, r)
                if found is not None:
                    out[name] = (preset, found)
                    break
            if name in out:
                break
    if "batch_size" not in dict(extra or {}):  # the batch-size sweeps: design -> (sweep, MNIST results)
        from iml.mnist import batch_size

        found = batch_size.find_sweeps(roots)
        if found:
            out["batch_size"] = ("sweeps", found)
    if "alpha" not in dict(extra or {}):  # the α sweeps of the MNIST task (iml.mnist.alpha)
        from iml.mnist import alpha

        sweep = alpha.find_sweep(roots)
        if sweep:
            out["alpha"] = (sweep[0] + " sweep", sweep[1])
    out.pop("gradalign", None)  # judged on its batch-size sweep, never on a single point
    if "gradalign" not in dict(extra or {}):
        from iml.mnist import gradient_alignment as gradalign

        sweep = gradalign.find_sweep(roots)
        if sweep:
            out["gradalign"] = (sweep[0] + " sweep", sweep[1])
    out.update(dict(extra or {}))
    return out


def _gap_status(result, a: str, b: str, metric: str, epoch, preset: str) -> tuple[str, str]:
    try:
        status, g, need = verdicts.gap_status(result.table, a, b, metric, epoch, paper_scale=preset == "paper",
                                              paper_value=paper.paper_gap(result.experiment, a, b, metric)[0])
    except ValueError as e:
        return "not attempted", f"no {metric} rows for {a}/{b} ({e})"
    txt = (f"{paper.symbol(a)} − {paper.symbol(b)} = {g.gap:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] "
           f"({metric}, epoch {g.epoch:g}, {g.n_stage1}×{g.n_stage2_per_stage1:g} seeds)")
    if status == "too few seeds":
        txt += f" ({verdicts.seeds_note(g.n_stage1, need)})"
    elif status == "uninformative (floor/ceiling)":
        txt += f" (both sides at the metric's {verdicts.at_bound(result.table, a, b, metric, g.epoch)})"
    return status, txt


EXPERIMENT_DOMAIN = {"main": "language", "setinclusion": "language", "mnist": "vision", "batch_size": "vision",
                     "alpha": "vision", "gradalign": "vision", "probe": "vision"}
"""What kind of model each experiment trains: a language-model claim judged on a vision result is an analogue."""


def claims_table(available: Mapping[str, tuple[str, Any]]) -> pd.DataFrame:
    """One row per claim of paper-brief §4's figure list with its status, computed from `available`.

    `available`: experiment -> (preset, Result), e.g. from :func:`best_results`. A numeric claim is
    *reproduced* when every gap it names has a 95% CI above 0; *not reproduced* when a CI is below 0, or
    includes 0 at the paper preset; *null at our scale* when a CI includes 0 at a smaller preset;
    *not attempted* when no result exists (or the book has no experiment for it).
    """
    rows = []
    for c in paper.CLAIMS:
        status, evidence, scale = "not attempted", "", ""
        if c.experiment is None:
            evidence = "no experiment for this in the book"
        elif c.experiment not in available:
            evidence = f"no finished `{c.experiment}` result"
        elif c.experiment == "batch_size":  # sweeps of MNIST results (iml.mnist.batch_size), judged there
            from iml.mnist import batch_size

            status, evidence, scale = batch_size.claim_status(c.rank, available[c.experiment][1])
        elif c.experiment == "probe":  # the MNIST probe cannot test the claim's word-order contrast
            from iml.mnist import probes as probe

            preset, res = available[c.experiment]
            status, evidence = probe.verdict_status(res)
            scale = f"{plots.preset_label(res) or preset + ' preset'}, config {res.hash}"
        elif c.experiment == "alpha":  # an α sweep of MNIST results, judged there
            from iml.mnist import alpha

            name, rs = available[c.experiment]
            status, evidence = alpha.verdict_status(rs)
            scale = f"{name}, α = {', '.join(f'{alpha.alpha_of(r):g}' for r in rs)}"
        elif c.experiment == "gradalign":  # a sweep of gradient-alignment results, judged there
            from iml.mnist import gradient_alignment as gradalign

            name, rs = available[c.experiment]
            status, evidence = gradalign.verdict_status(rs)
            scale = f"{name}, batch sizes {', '.join(str(r.config['task']['batch_size']) for r in rs)}"
        else:
            preset, res = available[c.experiment]
            scale = f"{plots.preset_label(res) or preset + ' preset'}, config {res.hash}"
            sts, evs = [], []
            for a, b_, m in c.gaps:
                s, e = _gap_status(res, a, b_, m, plots.gap_epoch(res.table, a, b_, m), preset)
                sts.append(s)
                evs.append(e)
            status = verdicts.worst(sts)
            evidence = "; ".join(evs)
        analogue = c.domain == "language" and EXPERIMENT_DOMAIN.get(c.experiment) == "vision"
        status = verdicts.for_domain(status, analogue)
        paper_vals = "; ".join(
            f"{paper.symbol(a)} − {paper.symbol(b_)} ≈ {paper.paper_gap(c.experiment, a, b_, m)[0]:+.3f}"
            for a, b_, m in c.gaps
            if not math.isnan(paper.paper_gap(c.experiment, a, b_, m)[0])) if c.gaps else ""
        if c.experiment == "gradalign":  # cosines, not a gap of paper.GAPS
            from iml.mnist.gradient_alignment import PAPER_NOTE as paper_vals
        rows.append({"#": c.rank, "figure": c.figure, "claim": c.claim, "paper": paper_vals or "no number",
                     "status": status, "tested on": _tested_on(c), "this book": evidence, "scale": scale, "source": c.source})
    return pd.DataFrame(rows)


def _tested_on(claim) -> str:
    dom = EXPERIMENT_DOMAIN.get(claim.experiment)
    if dom is None:
        return "–"
    if dom == "vision":
        return "MNIST grid (ConvNet)" + (" analogue" if claim.domain == "language" else "")
    return {"main": "pretrained language model", "setinclusion": "transformer trained from scratch"}[claim.experiment]


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def claims_markdown(table: pd.DataFrame) -> str:
    counts = table["status"].value_counts()
    lines = [
        "# Paper vs this book",
        "",
        "*This page is generated by `python -m iml.report.book claims` from the results available when the book "
        "was built; nothing on it is typed in by hand. Rerun `make book` after new results land.*",
        "",
        f"Status rules (`iml.core.verdicts`, Method page): only the comparisons the paper makes are tested (each row "
        f"names them; nothing found by looking at other numbers counts). **too few seeds** = fewer than "
        f"{verdicts.MIN_SEEDS} stage-1 seeds; **uninformative (floor/ceiling)** = both sides of a comparison at "
        f"the metric's floor or ceiling, where a zero gap is no evidence; otherwise the 95% interval "
        f"({stats.METHOD}) decides: **reproduced** = every comparison the claim names above 0; "
        f"**not reproduced** = one below 0, or including 0 at the paper's scale; **null at our scale** = "
        f"including 0 at a smaller scale. **(analogue)** = a claim the paper makes for language models, "
        f"tested here only on the MNIST grid task: counted apart from a reproduction in a language model. "
        f"**not attempted** = no result. Paper values are poster readings (±0.005 EM each, so ±0.01 for a "
        f"difference of two; see `iml.core.paper`). The methodology schematic (Fig. 2) is the design, drawn on "
        f"the Method page, not a claim.",
        "",
        "Summary: " + ", ".join(f"{s}: {int(counts.get(s, 0))}" for s in verdicts.STATUSES) + ".",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    for _, r in table.iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in table.columns) + " |")
    lines += ["", "Sources: " + "; ".join(f"**{k}**: {v}" for k, v in paper.PROVENANCE.items()) + ".", ""]
    return "\n".join(lines)


def seed_counts_markdown(available) -> str:
    """The claims page's section on seed counts: :mod:`iml.report.power` for every comparison a verdict rests on."""
    return "\n".join([
        "## Seed counts by power", "",
        f"For every comparison a verdict rests on: the between-seed SD measured in the result, and the stage-1 seeds "
        f"a 95% t-interval needs for a half-width of a third of the effect the verdict is about (`iml.report.power`: the "
        f"paper's value where it has one, else the effect measured here; a trend or the α = 0.5 null is set against "
        f"the IML gap it would have to erase). Fewer than {verdicts.MIN_SEEDS} seeds never give a verdict; a result "
        f"with fewer seeds than needed here is *too few seeds*. Minutes: the result's units' summed wall time per "
        f"seed times the seeds needed, on the result's own hardware (one CPU thread a unit, or its GPU).", "",
        power.markdown(power.table(available)), ""])


def write_claims(path: str | os.PathLike = EXECUTED_DIR / "claims.md", available=None) -> Path:
    available = best_results() if available is None else available
    return files.write_text(path, claims_markdown(claims_table(available)) + "\n" + seed_counts_markdown(available))


# ------------------------------------------------------------------------------------------------
# Static HTML checks
# ------------------------------------------------------------------------------------------------

_EXT = re.compile(r"""<(script|link|img|iframe)\b[^>]*?\b(src|href)\s*=\s*["'](https?:)?//[^"']+["']""", re.I)


def external_refs(html_dir: str | os.PathLike) -> dict[str, list[str]]:
    """page -> external (http/https/protocol-relative) script/link/img/iframe tags it loads.

    Plain hyperlinks (<a href>) are fine offline and not listed.
    """
    out: dict[str, list[str]] = {}
    for p in sorted(Path(html_dir).rglob("*.html")):
        text = p.read_text(errors="replace")
        hits = [m.group(0) for m in _EXT.finditer(text)]
        # <link rel="canonical"/"prev"> etc. are not loads; keep stylesheets, scripts, preloads, icons.
        hits = [h for h in hits if not re.search(r"""rel\s*=\s*["'](canonical|next|prev|search)""", h)]
        if hits:
            out[str(p.relative_to(html_dir))] = hits
    return out


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium_flags(profile: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=15000", "--hide-scrollbars"]


def render_page(page: Path, screenshot: Path | None = None, timeout: int = 120) -> str:
    """The DOM of `page` after its scripts ran (headless chromium); optionally save a screenshot."""
    exe = chromium_binary()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (make check-html installs it)")
    with tempfile.TemporaryDirectory(prefix="iml-chromium-") as prof:
        url = page.resolve().as_uri()
        dom = subprocess.run([exe, *chromium_flags(prof), "--dump-dom", url], capture_output=True, text=True,
                             timeout=timeout).stdout
        if screenshot is not None:
            subprocess.run([exe, *chromium_flags(prof), f"--screenshot={screenshot}", "--window-size=1280,2400",
                            url], capture_output=True, text=True, timeout=timeout)
    return dom


@dataclasses.dataclass
class PageCheck:
    page: str
    problems: list[str]
    screenshot: str | None = None


def check_page_dom(dom: str, expect_widgets: bool, expect_figures: int = 1) -> list[str]:
    problems = []
    imgs = len(re.findall(r"<img\b[^>]*src=\"(data:image/png|[^\"]*\.png)", dom))
    if imgs < expect_figures:
        problems.append(f"expected at least {expect_figures} figure(s), found {imgs} <img>")
    if expect_widgets:
        if "iml-explorer" not in dom or "widget-toggle-buttons" not in dom:
            problems.append("the widget explorer did not render (no rendered ipywidgets in the DOM)")
        if "iml-explorer-view" not in dom:
            problems.append("the explorer's precomputed views are missing")
    return problems


def check_html(html_dir: str | os.PathLike = files.ROOT / "_build" / "html", screenshots: str | os.PathLike | None = None,
               browser: bool = True) -> list[PageCheck]:
    """Check the built book: no external script/style loads anywhere; with chromium, every notebook
    page renders its figures and the main-result page its widget explorer. Returns one PageCheck per
    checked page (problems empty = fine)."""
    html_dir = Path(html_dir)
    checks = []
    ext = external_refs(html_dir)
    checks.append(PageCheck("(all pages: offline)", [f"{p}: {h}" for p, hs in ext.items() for h in hs]))
    if not browser:
        return checks
    shots = Path(screenshots) if screenshots else html_dir.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted((html_dir / "book" / "executed").glob("*.html"))
    pages = [p for p in pages if p.stem != "claims"]
    if not pages:
        checks.append(PageCheck("book/executed/*.html", ["no notebook pages were built"]))
    for p in pages:
        shot = shots / f"{p.stem}.png"
        dom = render_page(p, shot)
        expect_w = p.stem == "main_result"
        checks.append(PageCheck(str(p.relative_to(html_dir)), check_page_dom(dom, expect_w), str(shot)))
    return checks


def stage_book(dest: str | os.PathLike) -> Path:
    """Copy the book's sources (config, toc, pages, notebooks, vendored JS) into `dest` for a test build."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(files.ROOT / f, dest / f)
    shutil.copytree(files.ROOT / "book", dest / "book", ignore=shutil.ignore_patterns("executed"),
                    dirs_exist_ok=True)
    shutil.copytree(files.ROOT / "notebooks", dest / "notebooks", dirs_exist_ok=True)
    if (files.ROOT / "_vendor").exists():
        shutil.copytree(files.ROOT / "_vendor", dest / "_vendor", dirs_exist_ok=True)
    return dest


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m iml.report.book", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="papermill-execute every notebook, then write the claims page")
    r.add_argument("--preset", default="cpu")
    r.add_argument("--out", default=str(EXECUTED_DIR))
    r.add_argument("--only", nargs="*", help="notebook names (stems) to run")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                   help="extra notebook parameter, e.g. -p force=true")
    c = sub.add_parser("claims", help="write the 'paper vs this book' page")
    c.add_argument("--out", default=str(EXECUTED_DIR / "claims.md"))
    rf = sub.add_parser("refs", help="regenerate the nbval reference notebooks (tests/notebooks/, smoke preset)")
    rf.add_argument("--out", default=str(REFS_DIR))
    h = sub.add_parser("check-html", help="offline + headless-chromium checks of the built HTML")
    h.add_argument("html_dir", nargs="?", default=str(files.ROOT / "_build" / "html"))
    h.add_argument("--no-browser", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        params = dict(parse_override(kv) for kv in args.param)
        run_notebooks(args.preset, args.out, args.only, params)
        path = write_claims(Path(args.out) / "claims.md")
        print(f"[iml.report.book] wrote {path}")
        return 0
    if args.cmd == "refs":
        for p in make_refs(args.out):
            print(f"[iml.report.book] wrote {p}")
        return 0
    if args.cmd == "claims":
        print(f"[iml.report.book] wrote {write_claims(args.out)}")
        return 0
    if args.cmd == "check-html":
        bad = 0
        for chk in check_html(args.html_dir, browser=not args.no_browser):
            state = "ok" if not chk.problems else "FAIL"
            print(f"[{state}] {chk.page}" + (f"  (screenshot {chk.screenshot})" if chk.screenshot else ""))
            for pr in chk.problems:
                print(f"    - {pr}")
            bad += bool(chk.problems)
        return 1 if bad else 0
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
