"""Batch-size sweeps on the MNIST grid task (paper claim (ii): do smaller batches give more IML?), in the two-stage
design and the authors' single-stage ``*-joint`` one. All but the batch size and epochs is the MNIST preset, seeds
are the same at every batch size (compared seed by seed), and each point is an ordinary MNIST result
(``results/mnist/<hash>``), so finished points are reused.
Design choices: book/design_notes.md (section `iml.mnist.batch_size`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid
from iml.core.config import ConfigError
from iml.core import power
from iml.core.sweep import finished_points, run_points, seed_paired_difference
from iml.core.stats import iml_gap, per_seed_gap
from iml.core.verdicts import MIN_SEEDS, judge, judge_gap, own_effect, seeds_note

__all__ = ["EXPERIMENT", "JOINT", "SWEEPS", "DESIGNS", "configs", "cost", "run_sweep", "finished", "sweep_name",
           "find_sweeps", "summary", "table", "trend", "is_full_batch", "verdict", "verdict_status", "claim_status",
           "POINTS", "point_label", "prepared"]

EXPERIMENT = mnist_grid.EXPERIMENT
"""Every point of a batch-size sweep is an ordinary MNIST result."""

JOINT = {"joint": True, "stage2_epochs": 0}
"""MNIST overrides of the single-stage sweeps (``iml.mnist.grid.Config.joint``)."""

SWEEPS: dict[str, dict[str, Any]] = {
    # (batch size, epoch factor): the MNIST preset's stage epochs times the factor. The last point is
    # full-batch training (a batch larger than the data is all of it: 336 stage-1 examples at the cpu scale,
    # ~670 at the gpu scale). The authors gave their full-batch runs 7-8x the epochs of their smallest
    # batches (Pythia-1B: 240 vs 30); we give 4x.
    "smoke": dict(preset="smoke", points=[(8, 1.0), (32, 1.0)]),
    "cpu": dict(preset="cpu", overrides={"n_seeds": 10}, points=[(8, 1.0), (32, 1.0), (128, 2.0), (512, 4.0)]),
    "gpu": dict(preset="gpu", points=[(8, 1.0), (32, 1.0), (128, 2.0), (1024, 4.0)]),
    # single stage, as in the authors' sweep: the X2 definitions train together with the X1 data
    "smoke-joint": dict(preset="smoke", overrides=JOINT, points=[(8, 1.0), (32, 1.0)]),
    "cpu-joint": dict(preset="cpu", overrides={**JOINT, "n_seeds": 10},
                      points=[(8, 1.0), (32, 1.0), (128, 2.0), (512, 4.0)]),
    "gpu-joint": dict(preset="gpu", overrides=JOINT, points=[(8, 1.0), (32, 1.0), (128, 2.0), (1024, 4.0)]),
}
"""Sweep presets. The cpu sweeps have 10 seeds a point, the fewest a verdict takes (the seed-count table on the
Reproduce page shows what a third of the effect would need); their batch-32 point is the MNIST cpu preset at
10 seeds, which is also the α sweep's α = 1 point. With the results committed the book only loads them."""


def configs(sweep: str = "cpu", points: Sequence[Sequence[float]] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[mnist_grid.Config]:
    """One MNIST config per (batch size, epoch factor) point of `sweep` (or the given `points`)."""
    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {sorted(SWEEPS)}, got {sweep!r}")
    spec = SWEEPS[sweep]
    pts = [tuple(p) for p in (points if points is not None else spec["points"])]
    if not pts:
        raise ConfigError("points", "needs at least one (batch size, epoch factor) point")
    for p in pts:
        if len(p) != 2 or not float(p[0]).is_integer() or p[0] < 1 or not (p[1] > 0 and math.isfinite(p[1])):
            raise ConfigError("points", f"each point is (batch size >= 1, epoch factor > 0), got {p!r}")
    if len({int(p[0]) for p in pts}) != len(pts):
        raise ConfigError("points", f"batch sizes must differ, got {[int(p[0]) for p in pts]}")
    for key in ("batch_size", "stage1_epochs", "stage2_epochs"):
        if key in (overrides or {}):
            raise ConfigError(key, "is set by the sweep's points; change the points instead")
    fixed = {**spec.get("overrides", {}), **dict(overrides or {})}
    base = mnist_grid.make_config(spec["preset"], fixed)
    out = []
    for bs, factor in sorted(pts):
        out.append(mnist_grid.make_config(spec["preset"], {
            **fixed, "batch_size": int(bs),
            "stage1_epochs": int(round(base.stage1_epochs * factor)),
            "stage2_epochs": int(round(base.stage2_epochs * factor))}))
    return out


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every point of the sweep; returns their results, smallest batch first.

    ``workers > 1`` computes unfinished points in that many processes at once (one torch thread each on a
    CPU; the points are independent results, each written atomically), longest first."""
    return run_points(mx.run, EXPERIMENT, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def cost(cfg: mnist_grid.Config) -> int:
    """Epochs of a point, the order in which parallel workers take them (longest first)."""
    return cfg.stage1_epochs + cfg.stage2_epochs


def finished(sweep: str = "gpu", root=None, points=None) -> list | None:
    """The finished results of every point of `sweep` under `root`, or None if any point is missing
    (a sweep is shown whole or not at all). `root` None: results/; a book's "none" is handled by the caller."""
    return finished_points(EXPERIMENT, configs(sweep, points), root)


def _steps(result, stage: int) -> int | None:
    """Optimizer steps of one seed in `stage` (1 or 2), from the examples per epoch the run recorded."""
    cfg = result.config
    key, ep = (("stage1_examples", "stage1_epochs") if stage == 1 else ("stage2_examples", "stage2_epochs"))
    units = result.meta.get("units") or []
    n = result.meta.get(key)
    if n is None and units:
        import json

        extra = result.dir / "units" / f"{units[0]}.json"
        if extra.exists():
            n = json.loads(extra.read_text()).get(key)
    if n is None:
        return None
    n = int(np.max(n)) if isinstance(n, (list, tuple)) else int(n)
    return math.ceil(n / cfg["batch_size"]) * cfg[ep]


def summary(results: Sequence) -> pd.DataFrame:
    """One row per batch size (numbers): the IML gap Ḋ₅ − D̄₆ with its CI, the Stage-1 effect with its CI,
    and what training did (epochs, optimizer steps per seed, Stage-1 held-out accuracies), so that
    convergence can be judged beside each gap. :func:`table` formats it for reading."""
    rows = []
    for r in results:
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc")
        s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1)
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        rows.append({
            "batch_size": cfg["batch_size"], "stage1_epochs": e1, "stage2_epochs": cfg["stage2_epochs"],
            "stage1_steps": _steps(r, 1), "stage2_steps": _steps(r, 2),
            "stage1_acc_qd1consis": float(end1.get("qd1consis", np.nan)),
            "stage1_acc_qd2incons": float(end1.get("qd2incons", np.nan)),
            "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high, "p_one_sided": g.p_one_sided,
            "stage1_gap": s1.gap, "stage1_ci_low": s1.ci_low, "stage1_ci_high": s1.ci_high,
            "n_seeds": g.n_stage1, "config": r.hash,
        })
    return pd.DataFrame(rows)


def table(summary_frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it: rounded, CIs as intervals, the paper's symbols."""
    s = summary_frame
    ci = lambda lo, hi: [f"[{a:+.3f}, {b:+.3f}]" for a, b in zip(s[lo], s[hi])]  # noqa: E731
    return pd.DataFrame({
        "batch size": s["batch_size"],
        "epochs (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_epochs"], s["stage2_epochs"])],
        "steps per seed (stage 1 + 2)": [f"{a} + {b}" for a, b in zip(s["stage1_steps"], s["stage2_steps"])],
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
    """Gap at the smaller batch minus gap at the larger one, paired by stage-1 seed (same aliases and
    initial weights), with a t-interval over seeds and the one-sided p for "smaller batch, more IML"."""
    out = seed_paired_difference(per_seed_gap(small.table), per_seed_gap(large.table), level)
    return {"small": small.config["batch_size"], "large": large.config["batch_size"], **out}


def verdict(results: Sequence) -> str:
    """Markdown: the claim's test on these results (smallest vs largest batch, seed-paired), with a status
    like the claims page's: *reproduced* when the difference's 95% CI is above 0."""
    status, text = verdict_status(results)
    return (f"**Verdict on this sweep** (2 planned comparisons; a 95% interval above 0 with at least {MIN_SEEDS} "
            f"seeds counts as reproduced): the paper's claim \"smaller batches give "
            f"more IML; full-batch training gives none\": **{status}**. {text}")


def is_full_batch(result) -> bool:
    """Whether Stage 1 of `result` took one optimizer step per epoch (the batch held all its examples)."""
    steps = _steps(result, 1)
    return steps is not None and steps == result.config["stage1_epochs"]


def verdict_status(results: Sequence) -> tuple[str, str]:
    """(status, evidence) for paper claim 4 from a finished sweep (the claims page uses it too), by the
    rules of :mod:`iml.core.verdicts` (two planned comparisons: the trend and the full-batch gap).

    The claim has two parts. *Smaller batches, more IML*: the seed-paired gap difference between the
    smallest and the largest batch (:func:`trend`), reproduced when its 95% CI is above 0, not reproduced
    when below. *Full batch, none*: when the largest batch is full-batch training and its own IML gap has a
    CI above 0, that part is contradicted (not reproduced), whatever the trend.
    """
    rs = sorted(results, key=lambda r: r.config["batch_size"])
    if len(rs) < 2:
        return "not attempted", "a trend needs at least two batch sizes"
    t = trend(rs[0], rs[-1])
    text = (f"IML gap at batch {t['small']} minus gap at batch {t['large']} = {t['diff']:+.3f} "
            f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] (held-out accuracy, {t['n_seeds']} seeds paired, "
            f"one-sided p = {t['p_one_sided']:.2g}).")
    g_small = iml_gap(rs[0].table, "d1consis", "d2consis", metric="acc")
    status, need = judge(t["ci_low"], t["ci_high"], t["n_seeds"], t["sd"], own_effect(g_small))
    text += {"reproduced": "", "not reproduced": " The larger batch gave more IML.",
             "null at our scale": " The difference's CI includes 0.",
             "too few seeds": f" Too few seeds: {seeds_note(t['n_seeds'], need)}; the trend is set against the "
                              f"smallest batch's IML gap, {g_small.gap:+.3f}."}[status]
    if is_full_batch(rs[-1]) and status != "too few seeds":
        g = iml_gap(rs[-1].table, "d1consis", "d2consis", metric="acc")
        text += (f" Full-batch training (batch {t['large']}) gave an IML gap of {g.gap:+.3f} "
                 f"[{g.ci_low:+.3f}, {g.ci_high:+.3f}]")
        if judge_gap(g)[0] == "reproduced":
            status, text = "not reproduced", text + ": IML without minibatch noise, against the claim's second part."
        else:
            text += "."
    return status, text


DESIGNS = {"single-stage": ("gpu-joint", "cpu-joint"), "two-stage": ("gpu", "cpu")}
"""Sweep names per design, largest scale first (the claims page shows the largest finished one)."""


def sweep_name(preset: str, design: str) -> str:
    """The sweep of `design` ("two-stage" or "single-stage") at `preset` (smoke, cpu, gpu)."""
    if design not in DESIGNS:
        raise ConfigError("design", f"must be one of {sorted(DESIGNS)}, got {design!r}")
    name = preset + ("-joint" if design == "single-stage" else "")
    if name not in SWEEPS:
        raise ConfigError("preset", f"no {design} sweep at {preset!r}; sweeps: {sorted(SWEEPS)}")
    return name


def find_sweeps(roots: Sequence) -> dict[str, tuple[str, list]]:
    """design -> (sweep name, results) of the largest finished sweep of each design under any of `roots`."""
    out = {}
    for design, names in DESIGNS.items():
        for name in names:
            rs = next((rs for r in roots if (rs := finished(name, r)) is not None), None)
            if rs is not None:
                out[design] = (name, rs)
                break
    return out


def claim_status(rank: int, sweeps: Mapping[str, tuple[str, list]]) -> tuple[str, str, str]:
    """(status, evidence, scale) on the claims page for paper claim 4 (batch size) or 12 (single-stage
    training), from :func:`find_sweeps`. Claim 4's status is the single-stage sweep's when there is one,
    because the authors' sweep is single-stage; the two-stage sweep's verdict is listed beside it."""
    def scale_of(name, rs):
        return f"{name} sweep, batch sizes {', '.join(str(r.config['batch_size']) for r in rs)}"

    if rank == 4:
        parts = [(d, *sweeps[d]) for d in ("single-stage", "two-stage") if d in sweeps]
        if not parts:
            return "not attempted", "no finished batch-size sweep", ""
        verdicts = [(d, name, rs, *verdict_status(rs)) for d, name, rs in parts]
        evidence = " ".join(f"MNIST grid analogue, {d} ({st}): {ev}" for d, _, _, st, ev in verdicts)
        return verdicts[0][3], evidence, "; ".join(scale_of(name, rs) for _, name, rs, _, _ in verdicts)
    if rank == 12:
        if "single-stage" not in sweeps:
            return "not attempted", "no finished single-stage sweep", ""
        name, rs = sweeps["single-stage"]
        bs = mnist_grid.make_config(SWEEPS[name]["preset"]).batch_size
        r = next((r for r in rs if r.config["batch_size"] == bs), rs[0])
        g = iml_gap(r.table, "d1consis", "d2consis", metric="acc")
        return (judge_gap(g)[0],
                f"MNIST grid analogue, one stage at the preset's batch {r.config['batch_size']}: Ḋ₅ − D̄₆ = "
                f"{g.gap:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}] (held-out accuracy, {g.n_stage1} seeds)",
                f"{name} sweep, config {r.hash}")
    raise ValueError(f"the batch-size sweeps test claims 4 and 12, not {rank}")


POINTS = "batch sizes"
"""What the points of a sweep are, in the book's words."""


def point_label(result) -> str:
    """How the book names one point of a sweep."""
    return f"batch {result.config['batch_size']}"


def prepared(sweep: str) -> str:
    """What a sweep that has not been run yet would compute (the notebook's headline note)."""
    return (f"MNIST {SWEEPS[sweep]['preset']} preset, batch sizes "
            + ", ".join(str(p[0]) for p in SWEEPS[sweep]["points"]))


# ----------------------------------------------------------------------------------------------
# The study interface of the claims page (iml.core.study)
# ----------------------------------------------------------------------------------------------

name = "batch_size"
domain = "vision"
tested_on = "MNIST grid (ConvNet)"
paper_note = None


def find(roots: Sequence) -> tuple[str, dict] | None:
    """("sweeps", design -> (sweep name, results)) of the largest finished sweep of each design, or None."""
    found = find_sweeps(roots)
    return ("sweeps", found) if found else None


def judge_claim(claim, found: tuple[str, dict]) -> tuple[str, str, str]:
    return claim_status(claim.rank, found[1])


def power_rows(found: tuple[str, dict]) -> list[dict]:
    """The trend, the largest batch's gap and (single-stage) claim 12's point, per design."""
    rows = []
    for design, (sweep, rs) in found[1].items():
        rs = sorted(rs, key=lambda r: r.config["batch_size"])
        if len(rs) < 2:
            continue
        a, b = per_seed_gap(rs[0].table), per_seed_gap(rs[-1].table)
        common = a.index.intersection(b.index)
        label = f"batch size, {design} ({sweep} sweep)"
        rows.append(power.row(f"{label}: IML gap, batch {rs[0].config['batch_size']} − batch "
                              f"{rs[-1].config['batch_size']}", a[common] - b[common], power.own(a),
                              "IML gap at the smallest batch", sum(power.seconds_per_seed(r) or 0 for r in rs) or None))
        rows.append(power.row(f"{label}: IML gap at batch {rs[-1].config['batch_size']}", b, power.own(b),
                              "this result", power.seconds_per_seed(rs[-1])))
        if design == "single-stage":  # claim 12 reads the point at the MNIST preset's batch size
            bs = mnist_grid.make_config(SWEEPS[sweep]["preset"]).batch_size
            p = next((r for r in rs if r.config["batch_size"] == bs), None)
            if p is not None:
                x = per_seed_gap(p.table)
                rows.append(power.row(f"{label}: IML gap at batch {bs} (claim 12)", x, power.own(x), "this result",
                                      power.seconds_per_seed(p)))
    return rows
