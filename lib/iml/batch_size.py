"""Batch-size sweep on the MNIST grid task: does a smaller batch give more IML?

The paper's claim (ii) (abstract): "larger models and smaller batch sizes tend to give more IML", and, as
others quote it, full-batch training eliminates it. The authors' sweep fine-tunes Pythia-1B/2.8B in a single
stage at batch sizes 16 to 32768 with epochs that grow with the batch so that training converges
(paper-brief.md 3.4); no numbers were published. A language-model sweep is beyond our CPU budget, but the
MNIST grid task shows IML on a CPU in minutes (``iml.mnist_grid``), so this module runs *that* task at
several batch sizes. Everything except the batch size and the epoch counts is the MNIST preset.

Design choices, because the paper leaves them open for a vision task:

* the batch size applies to both stages (the paper's sweep has one stage; our Stage 2 has only the X2
  definitions, e.g. 18 images at the cpu scale, so batches of 32 or more make Stage 2 full-batch);
* like the authors, larger batches get more epochs (``epoch_factor``) so that Stage 1 still converges;
  fewer optimizer steps remain for larger batches either way, so the summary reports the steps and the
  Stage-1 accuracies beside each gap: a gap that shrinks because Stage 1 did not converge is not the claim;
* the learning rate is the preset's at every batch size (the authors' sweep configs set none, so theirs
  was the Hugging Face default throughout);
* seeds are the same numbers at every batch size, so each seed's aliases, label grids and initial weights
  are shared and the batch sizes can be compared seed by seed (:func:`trend`).

Each point is an ordinary MNIST result (``results/mnist/<hash>``), so finished points are reused, and the
sweep's cpu point at batch 32 is the MNIST cpu preset itself.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import mnist_grid
from .config import ConfigError
from .stats import hierarchical_bootstrap, iml_gap, paired_differences

__all__ = ["SWEEPS", "configs", "run", "summary", "trend"]

SWEEPS: dict[str, dict[str, Any]] = {
    # (batch size, epoch factor): the MNIST preset's stage epochs times the factor. The last point is
    # full-batch training (a batch larger than the data is all of it: 336 stage-1 examples at the cpu scale,
    # ~670 at the gpu scale). The authors gave their full-batch runs 7-8x the epochs of their smallest
    # batches (Pythia-1B: 240 vs 30); we give 4x.
    "smoke": dict(preset="smoke", points=[(8, 1.0), (32, 1.0)]),
    "cpu": dict(preset="cpu", points=[(8, 1.0), (32, 1.0), (128, 2.0), (512, 4.0)]),
    "gpu": dict(preset="gpu", points=[(8, 1.0), (32, 1.0), (128, 2.0), (1024, 4.0)]),
}
"""Sweep presets. The cpu sweep takes about 21 minutes on one CPU thread from scratch (batch 8: 2.7 min,
32: 2.3 min, the MNIST cpu preset itself, 128: 5.5 min, full batch: ~11 min); with its results committed
the book only loads them."""


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
    base = mnist_grid.make_config(spec["preset"], overrides)
    out = []
    for bs, factor in sorted(pts):
        out.append(mnist_grid.make_config(spec["preset"], {
            **dict(overrides or {}), "batch_size": int(bs),
            "stage1_epochs": int(round(base.stage1_epochs * factor)),
            "stage2_epochs": int(round(base.stage2_epochs * factor))}))
    return out


def run(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
        progress: bool = True) -> list:
    """Run (or load) every point of the sweep; returns their results, smallest batch first."""
    return [mnist_grid.run(c, root=root, force=force, progress=progress) for c in configs(sweep, points, overrides)]


def _steps(result, stage: int) -> int | None:
    """Optimizer steps of one seed in `stage` (1 or 2), from the examples per epoch the run recorded."""
    cfg = result.config
    key, ep = (("stage1_examples", "stage1_epochs") if stage == 1 else ("stage2_examples", "stage2_epochs"))
    units = [u for u in (result.meta.get("units") or [])]
    n = result.meta.get(key)
    if n is None and units:
        import json

        extra = result.dir / "units" / f"{units[0]}.json"
        if extra.exists():
            n = json.loads(extra.read_text()).get(key)
    if not n:
        return None
    n = int(np.max(n)) if isinstance(n, (list, tuple)) else int(n)
    return math.ceil(n / cfg["batch_size"]) * cfg[ep]


def summary(results: Sequence, n_boot: int = 10_000) -> pd.DataFrame:
    """One row per batch size: the IML gap Ḋ₅ − D̄₆ with its CI, the Stage-1 effect, and what training did
    (epochs, optimizer steps, Stage-1 held-out accuracies), so convergence can be judged beside the gap."""
    rows = []
    for r in results:
        cfg, t = r.config, r.table
        e1 = cfg["stage1_epochs"]
        g = iml_gap(t, "d1consis", "d2consis", metric="acc", n_boot=n_boot)
        s1 = iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=e1, n_boot=n_boot)
        end1 = t[(t.metric == "acc") & (t.epoch == e1)].groupby("subset").value.mean()
        rows.append({
            "batch size": cfg["batch_size"], "epochs (stage 1 + 2)": f"{e1} + {cfg['stage2_epochs']}",
            "steps (stage 1 + 2)": f"{_steps(r, 1)} + {_steps(r, 2)}",
            "stage-1 acc Ḋ₁QA₁": round(float(end1.get("qd1consis", np.nan)), 3),
            "stage-1 acc D̄₂QA₂": round(float(end1.get("qd2incons", np.nan)), 3),
            "IML gap Ḋ₅ − D̄₆": round(g.gap, 3), "gap 95% CI": f"[{g.ci_low:+.3f}, {g.ci_high:+.3f}]",
            "gap p (one-sided)": float(f"{g.p_one_sided:.2g}"),
            "stage-1 gap Ḋ₁QA₁ − D̄₂QA₂": round(s1.gap, 3),
            "seeds": g.n_stage1, "config": r.hash,
            "_gap": g.gap, "_lo": g.ci_low, "_hi": g.ci_high, "_s1": s1.gap, "_s1_lo": s1.ci_low, "_s1_hi": s1.ci_high,
        })
    return pd.DataFrame(rows)


def _per_seed_gap(result) -> pd.Series:
    d = paired_differences(result.table, "d1consis", "d2consis", "acc")
    return d.groupby("seed_stage1")["diff"].mean()


def trend(small, large, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Gap at the smaller batch minus gap at the larger one, paired by stage-1 seed (same aliases and
    initial weights), with a bootstrap CI over seeds and the one-sided p for "smaller batch, more IML"."""
    a, b = _per_seed_gap(small), _per_seed_gap(large)
    common = a.index.intersection(b.index)
    if len(common) < 2:
        raise ValueError(f"the two results share {len(common)} stage-1 seed(s); a trend needs at least 2")
    diff = pd.DataFrame({"seed_stage1": common, "diff": (a[common] - b[common]).to_numpy()})
    boot = hierarchical_bootstrap(diff, n_boot=n_boot, seed=seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return {"small": small.config["batch_size"], "large": large.config["batch_size"],
            "diff": float(diff["diff"].mean()), "ci_low": float(lo), "ci_high": float(hi),
            "p_one_sided": float((1 + np.sum(boot <= 0)) / (len(boot) + 1)), "n_seeds": int(len(common))}
