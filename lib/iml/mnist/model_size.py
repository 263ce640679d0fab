"""Model-size sweeps on the MNIST grid task (paper claim 3: do larger models give more IML?). All but the ConvNet's
size (``width``, the first conv layer's channels; ``hidden``, the fc units) is the MNIST preset, the seeds are the
same at every size (compared seed by seed), and each point is an ordinary MNIST result (``results/mnist/<hash>``),
so finished points are reused. Two planned comparisons: the largest minus the smallest model, and the slope of the
gap over log10(parameters), both seed-paired.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.core import power
from iml.core.config import ConfigError
from iml.core.results import pool_seeds
from iml.core.stats import iml_gap, per_seed_gap, seed_interval
from iml.core.sweep import find_largest, finished_points, labelled, run_points, seed_paired_difference
from iml.core.verdicts import MIN_SEEDS, interval_status, judge, own_effect, seeds_note
from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid

__all__ = ["EXPERIMENT", "SWEEPS", "point_configs", "configs", "n_params", "cost", "run_sweep", "finished", "find_sweep", "summary",
           "table", "trend", "slope", "verdict", "verdict_status", "POINTS", "point_label", "prepared"]

EXPERIMENT = mnist_grid.EXPERIMENT
"""Every point of a model-size sweep is an ordinary MNIST result."""

SWEEPS: dict[str, dict[str, Any]] = {
    # points are (width, hidden): the ConvNet conv3x3(w)-conv3x3(2w)-conv3x3(2w)-fc(hidden)-fc(18) of
    # iml.mnist.grid; each step doubles both, about 4x the parameters. The preset's own size is one point.
    "smoke": dict(preset="smoke", points=[(4, 32), (8, 64)]),
    "cpu-10": dict(preset="cpu", overrides={"n_seeds": 10}, points=[(4, 64), (8, 128), (16, 256), (32, 512)]),
    "cpu": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)]),
    "cpu-30": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)],
                   seed_blocks=[{}, {"start_seed": 20, "n_seeds": 10}]),
    "gpu": dict(preset="gpu", points=[(8, 128), (16, 256), (32, 512), (64, 1024)]),
}
"""Sweep presets. ``cpu-10`` (10 seeds a point, the fewest a verdict takes) ran first; its between-seed spread asked
for 18 seeds, so the ``cpu`` sweep has the preset's 20 (its (8, 128) point *is* the MNIST cpu preset); the 20-seed
spread asked for 29, so ``cpu-30`` adds seeds 20-29 to every point of ``cpu`` (a second result per point, pooled
by :func:`iml.core.results.pool_seeds`; the first 20 seeds are the ``cpu`` sweep's own results). The gpu sweep's
(16, 256) point is the gpu preset.
Parameters per seed: cpu 6.8k to 360k (53x), gpu 92k to 5.7M (62x)."""

SIZE_KEYS = ("width", "hidden")


def n_params(cfg) -> int:
    """Parameters of one seed's ConvNet (a config or its dict), from :func:`iml.mnist.grid.param_shapes`. A ConvNet
    has no embedding, so this is both its non-embedding and its total count."""
    if not isinstance(cfg, mnist_grid.Config):
        keys = ("width", "hidden", "image_scale", "norm")
        cfg = dataclasses.replace(mnist_grid.Config(), **{k: cfg[k] for k in keys if k in cfg})
    return int(sum(math.prod(s) for s in mnist_grid.param_shapes(cfg).values()))


def _fmt(n: int) -> str:
    """A parameter count in short: 6.8k, 24k, 1.4M."""
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return str(n)


def _is_size(v) -> bool:
    try:
        return not isinstance(v, bool) and float(v).is_integer() and v >= 1
    except (TypeError, ValueError):
        return False


def point_configs(sweep: str = "cpu", points: Sequence[Sequence[int]] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> list[list[mnist_grid.Config]]:
    """Per (width, hidden) point of `sweep` (or the given `points`), fewest parameters first: its configs, one per
    seed block of the sweep (one config unless the sweep adds seeds in ``seed_blocks``)."""
    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {sorted(SWEEPS)}, got {sweep!r}")
    spec = SWEEPS[sweep]
    pts = [tuple(p) for p in (points if points is not None else spec["points"])]
    if not pts:
        raise ConfigError("points", "needs at least one (width, hidden) point")
    for p in pts:
        if len(p) != 2 or not all(_is_size(v) for v in p):
            raise ConfigError("points", f"each point is (width >= 1, hidden >= 1), integers, got {p!r}")
    pts = [(int(w), int(h)) for w, h in pts]
    if len(set(pts)) != len(pts):
        raise ConfigError("points", f"points must differ, got {pts}")
    for key in SIZE_KEYS:
        if key in (overrides or {}):
            raise ConfigError(key, "is set by the sweep's points; change the points instead")
    fixed = {**spec.get("overrides", {}), **dict(overrides or {})}
    out = [[mnist_grid.make_config(spec["preset"], {**fixed, **block, "width": w, "hidden": h})
            for block in spec.get("seed_blocks", [{}])] for w, h in pts]
    return sorted(out, key=lambda cs: (n_params(cs[0]), cs[0].width))


def configs(sweep: str = "cpu", points: Sequence[Sequence[int]] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[mnist_grid.Config]:
    """Every config `sweep` computes (each point's seed blocks in turn), fewest parameters first."""
    return [c for cs in point_configs(sweep, points, overrides) for c in cs]


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every point of the sweep; returns their results, smallest model first.

    ``workers > 1`` computes unfinished points in that many processes at once (one torch thread each on a
    CPU; the points are independent results, each written atomically), costliest first."""
    return run_points(mx.run, EXPERIMENT, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def cost(cfg: mnist_grid.Config) -> int:
    """Rough compute of a point (parameters x epochs), the order in which parallel workers take them."""
    return n_params(cfg) * (cfg.stage1_epochs + cfg.stage2_epochs)


def finished(sweep: str = "gpu", root=None, points=None) -> list | None:
    """The finished results of every point of `sweep` under `root`, or None if any point is missing
    (a sweep is shown whole or not at all). `root` None: results/; a book's "none" is handled by the caller."""
    groups = point_configs(sweep, points)
    rs = finished_points(EXPERIMENT, [c for cs in groups for c in cs], root)
    if rs is None:
        return None
    it = iter(rs)
    return [pool_seeds([next(it) for _ in cs]) for cs in groups]


def find_sweep(roots: Sequence) -> tuple[str, list] | None:
    """(sweep name, results) of the largest finished sweep under any of `roots`, or None."""
    return find_largest(finished, roots, names=("gpu", "cpu-30", "cpu", "cpu-10"))


def _sorted(results: Sequence) -> list:
    return sorted(results, key=lambda r: (n_params(r.config), r.config.get("width", 0)))


def summary(results: Sequence) -> pd.DataFrame:
    """One row per model size (numbers): parameters per seed, the Stage-1 held-out accuracies and effect (so
    an under-trained size is visible), and the IML gap Ḋ₅ − D̄₆ with its CI. :func:`table` formats it."""
    rows = []
    for r in _sorted(results):
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc")
        s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1)
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        p = n_params(cfg)
        rows.append({
            "width": cfg.get("width"), "hidden": cfg.get("hidden"), "params": p, "params_non_embedding": p,
            "stage1_epochs": e1, "stage2_epochs": cfg["stage2_epochs"],
            "stage1_acc_qd1consis": float(end1.get("qd1consis", np.nan)),
            "stage1_acc_qd2incons": float(end1.get("qd2incons", np.nan)),
            "stage1_gap": s1.gap, "stage1_ci_low": s1.ci_low, "stage1_ci_high": s1.ci_high,
            "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high, "p_one_sided": g.p_one_sided,
            "n_seeds": g.n_stage1, "config": r.hash,
        })
    return pd.DataFrame(rows)


def table(summary_frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it: rounded, CIs as intervals, the paper's symbols."""
    s = summary_frame
    ci = lambda lo, hi: [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(s[lo], s[hi])]  # noqa: E731
    return pd.DataFrame({
        "width / hidden": [f"{w} / {h}" for w, h in zip(s["width"], s["hidden"])],
        "parameters per seed": s["params"],
        "non-embedding (all)": s["params_non_embedding"],
        "epochs (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_epochs"], s["stage2_epochs"])],
        "end of stage 1: Ḋ₁QA₁ acc": s["stage1_acc_qd1consis"].round(3),
        "end of stage 1: D̄₂QA₂ acc": s["stage1_acc_qd2incons"].round(3),
        "stage-1 gap Ḋ₁QA₁ − D̄₂QA₂": s["stage1_gap"].round(3),
        "stage-1 95% CI": ci("stage1_ci_low", "stage1_ci_high"),
        "IML gap Ḋ₅ − D̄₆": s["gap"].round(3),
        "IML 95% CI": ci("ci_low", "ci_high"),
        "p (one-sided)": [float(f"{p:.2g}") for p in s["p_one_sided"]],
        "seeds": s["n_seeds"], "config": s["config"],
        "paper": "no number",
    })


def trend(small, large, level: float = 0.95) -> dict:
    """Gap of the larger model minus gap of the smaller one, paired by stage-1 seed (same aliases, grids and
    data order), with a t-interval over seeds and the one-sided p for "larger model, more IML"."""
    out = seed_paired_difference(per_seed_gap(large.table), per_seed_gap(small.table), level)
    return {"small": n_params(small.config), "large": n_params(large.config), **out}


def _per_seed_slopes(results: Sequence) -> tuple[pd.Series, float]:
    """(per stage-1 seed: the least-squares slope of its gap over log10(parameters) across the sizes, the
    decades of parameters the sizes span), over the seeds every size holds."""
    rs = _sorted(results)
    x = np.log10([n_params(r.config) for r in rs])
    if len(rs) < 2 or np.ptp(x) == 0:
        raise ValueError("a slope needs at least two model sizes with different parameter counts")
    gaps = pd.concat([per_seed_gap(r.table) for r in rs], axis=1, join="inner")
    if len(gaps) < 2:
        raise ValueError(f"the sizes share {len(gaps)} stage-1 seed(s); a slope needs at least 2")
    xc = x - x.mean()
    slopes = (gaps.to_numpy() - gaps.to_numpy().mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    return pd.Series(slopes, index=gaps.index), float(np.ptp(x))


def slope(results: Sequence, level: float = 0.95) -> dict:
    """The IML gap's change per decade of parameters: a least-squares slope per stage-1 seed across the sizes,
    then a t-interval over seeds (one-sided p for a slope > 0)."""
    s, decades = _per_seed_slopes(results)
    iv = seed_interval(s.to_numpy(), level)
    return {"slope": iv.mean, "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_one_sided": iv.p_one_sided,
            "n_seeds": iv.n, "sd": iv.sd, "decades": decades, "n_sizes": len(results)}


def verdict(results: Sequence) -> str:
    """Markdown: the claim's tests on these results, with a status like the claims page's: *reproduced* when the
    largest − smallest difference's 95% CI is above 0."""
    status, text = verdict_status(results)
    return (f"**Verdict on this sweep** (2 planned comparisons, both seed-paired: (a) the largest minus the smallest "
            f"model, which decides the status, and (b) the slope of the gap over log10(parameters); a 95% interval "
            f"above 0 with at least {MIN_SEEDS} seeds counts as reproduced): the paper's claim \"larger models give "
            f"more IML\": **{status}**. {text}")


def verdict_status(results: Sequence) -> tuple[str, str]:
    """(status, evidence) for paper claim 3 from a finished sweep (the claims page uses it too), by the rules of
    :mod:`iml.core.verdicts` (two planned comparisons).

    (a) The seed-paired gap difference between the largest and the smallest model (:func:`trend`), sized
    against the largest model's own gap (the IML a size trend would have to make): reproduced when its 95% CI is above 0, not reproduced when below.
    (b) The slope over log10(parameters) (:func:`slope`): reported beside it; a slope whose CI is below 0
    (the gap falls with size across all the sizes) makes the claim not reproduced, whatever (a) says.
    """
    rs = _sorted(results)
    if len(rs) < 2:
        return "not attempted", "a trend needs at least two model sizes"
    t, s = trend(rs[0], rs[-1]), slope(rs)
    g_large = iml_gap(rs[-1].table, "d1consis", "d2consis", metric="acc")
    status, need = judge(t["ci_low"], t["ci_high"], t["n_seeds"], t["sd"], own_effect(g_large))
    text = (f"(a) IML gap of the largest model ({_fmt(t['large'])} parameters) minus that of the smallest "
            f"({_fmt(t['small'])}) = {t['diff']:+.3f} [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] (held-out accuracy, "
            f"{t['n_seeds']} seeds paired, one-sided p = {t['p_one_sided']:.2g}). (b) Slope of the gap over "
            f"log10(parameters): {s['slope']:+.3f} per decade [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}] "
            f"({s['n_seeds']} seeds, {s['n_sizes']} sizes over {s['decades']:.1f} decades).")
    text += {"reproduced": "", "not reproduced": " The smallest model gave more IML.",
             "null at our scale": " The difference's CI includes 0.",
             "too few seeds": f" Too few seeds: {seeds_note(t['n_seeds'], need)}; the difference is set against the "
                              f"largest model's IML gap, {g_large.gap:+.3f}."}[status]
    if status != "too few seeds" and interval_status(s["ci_low"], s["ci_high"], s["n_seeds"]) == "not reproduced":
        status, text = "not reproduced", text + " Across all the sizes the gap falls with size, against the claim."
    return status, text


POINTS = "model sizes"
"""What the points of a sweep are, in the book's words."""


def point_label(result) -> str:
    """How the book names one point of a sweep."""
    c = result.config
    return f"width {c['width']}, hidden {c['hidden']} ({n_params(c):,} parameters)"


def prepared(sweep: str) -> str:
    """What a sweep that has not been run yet would compute (the notebook's headline note)."""
    cfgs = [cs[0] for cs in point_configs(sweep)]
    return (f"MNIST {SWEEPS[sweep]['preset']} preset, ConvNet width / hidden "
            + ", ".join(f"{c.width} / {c.hidden}" for c in cfgs)
            + f" ({_fmt(n_params(cfgs[0]))} to {_fmt(n_params(cfgs[-1]))} parameters per seed)")


# ----------------------------------------------------------------------------------------------
# The study interface of the claims page (iml.core.study)
# ----------------------------------------------------------------------------------------------

name = "model_size"
domain = "vision"
tested_on = "MNIST grid (ConvNet)"
paper_note = None


def find(roots: Sequence) -> tuple[str, list] | None:
    """("<sweep> sweep", results) of the largest finished model-size sweep, or None."""
    return labelled(find_sweep(roots))


def judge_claim(claim, found: tuple[str, list]) -> tuple[str, str, str]:
    label, rs = found
    status, text = verdict_status(rs)
    return (status, f"MNIST grid analogue: {text}",
            f"{label}, parameters per seed {', '.join(_fmt(n_params(r.config)) for r in _sorted(rs))}")


def power_rows(found: tuple[str, list]) -> list[dict]:
    """The two planned comparisons: largest − smallest model (sized against the largest model's gap) and the
    slope per decade of parameters."""
    label, rs = found
    rs = _sorted(rs)
    if len(rs) < 2:
        return []
    a, b = per_seed_gap(rs[0].table), per_seed_gap(rs[-1].table)
    common = a.index.intersection(b.index)
    secs = sum(power.seconds_per_seed(r) or 0 for r in rs) or None
    slopes, _ = _per_seed_slopes(rs)
    what = f"model size ({label})"
    return [power.row(f"{what}: IML gap, {_fmt(n_params(rs[-1].config))} − {_fmt(n_params(rs[0].config))} "
                      f"parameters", b[common] - a[common], power.own(b), "IML gap of the largest model", secs),
            power.row(f"{what}: slope of the IML gap per decade of parameters", slopes, power.own(slopes),
                      "this result", secs)]
