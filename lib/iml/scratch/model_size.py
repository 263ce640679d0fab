"""Model-size sweeps of the set-inclusion transformer (paper claim 3 in a language model): the set-inclusion cpu
preset at several sizes (``d_model``, ``n_layers``; ``d_mlp`` = 4 x ``d_model``, 4 heads), the same data and
stage-1 seeds at every size, each point an ordinary ``setinclusion`` result. The comparisons are those of the MNIST
sweep (:mod:`iml.core.scaling`), over non-embedding parameters.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from iml.core import scaling
from iml.core.scaling import fmt_params
from iml.core.sweep import find_largest, finished_points, labelled, run_points
from iml.scratch import multiseed as ms
from iml.scratch import search
from iml.scratch import set_inclusion as si

__all__ = ["EXPERIMENT", "SWEEPS", "configs", "n_params", "describe", "SIZE_NAME", "cost", "run_sweep", "finished",
           "find_sweep", "summary", "table", "verdict", "verdict_status", "POINTS", "point_label", "prepared"]

EXPERIMENT = si.EXPERIMENT

CONFIRMATION_SEEDS = {"start_seed": 5000, "n_seeds": 20, "seeds_per_unit": 10}
"""The pre-registered confirmation's seeds (:data:`iml.scratch.search.PREREGISTERED`): its d_model 128 result is
the cpu sweep's largest point, so that point is reused, not recomputed."""

SWEEPS: dict[str, dict[str, Any]] = {
    # points are (d_model, n_layers)
    "smoke": dict(preset="smoke", overrides={}, points=[(16, 1), (32, 1)]),
    "cpu": dict(preset="cpu", overrides=CONFIRMATION_SEEDS, points=[(32, 1), (48, 2), (64, 2), (128, 2)]),
}
"""Sweep presets. cpu: 12k to 397k non-embedding parameters per seed (32x); (64, 2) is the cpu preset's size and
(128, 2) the pre-registered confirmation's config, on its 20 seeds. Every size trains the preset's 40 + 30 epochs
at its learning rate (not tuned per size)."""

SIZE_KEYS = ("d_model", "n_layers", "d_mlp")
SIZE_NAME = "d_model / layers"


def _config(cfg) -> si.Config:
    if isinstance(cfg, si.Config):
        return cfg
    return si.Config(**{k: v for k, v in cfg.items() if k in si.Config.__dataclass_fields__})


def n_params(cfg) -> int:
    """Non-embedding parameters of one seed's transformer (a config or its dict): the count sizes are ordered by."""
    return ms.n_params(si.model_shape(_config(cfg)), non_embedding=True)


def describe(cfg: Mapping[str, Any]) -> dict:
    """The size columns of one point's summary row (:func:`iml.core.scaling.summary`)."""
    shape = si.model_shape(_config(cfg))
    return {"d_model": shape.d_model, "n_layers": shape.n_layers, "size": f"{shape.d_model} / {shape.n_layers}",
            "params": ms.n_params(shape), "params_non_embedding": ms.n_params(shape, non_embedding=True)}


def configs(sweep: str = "cpu", points: Sequence[Sequence[int]] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[si.Config]:
    """One set-inclusion config per (d_model, n_layers) point of `sweep` (or the given `points`), smallest first."""
    spec, pts, fixed = scaling.check_points(SWEEPS, sweep, points, overrides, SIZE_KEYS, "(d_model, n_layers)")
    out = [si.make_config(spec["preset"], {**fixed, "d_model": d, "n_layers": n, "d_mlp": 4 * d}) for d, n in pts]
    return sorted(out, key=n_params)


def cost(cfg: si.Config) -> float:
    """Non-embedding parameters x stage-1 work, the order in which parallel workers take the points."""
    return n_params(cfg) * search.cost(cfg)


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every point of the sweep; returns their results, smallest model first."""
    return run_points(si.run, EXPERIMENT, configs(sweep, points, overrides), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def finished(sweep: str = "cpu", root=None, points=None) -> list | None:
    """The finished results of every point of `sweep` under `root`, or None if any point is missing."""
    return finished_points(EXPERIMENT, configs(sweep, points), root)


def find_sweep(roots: Sequence) -> tuple[str, list] | None:
    return find_largest(finished, roots, names=("cpu",))


def summary(results: Sequence) -> pd.DataFrame:
    """One row per model size (:func:`iml.core.scaling.summary`); :func:`table` formats it."""
    return scaling.summary(results, n_params, describe)


def table(summary_frame: pd.DataFrame) -> pd.DataFrame:
    return scaling.table(summary_frame, SIZE_NAME)


UNIT = "non-embedding parameters"


def verdict(results: Sequence) -> str:
    return scaling.verdict(results, n_params, UNIT)


def verdict_status(results: Sequence) -> tuple[str, str]:
    return scaling.verdict_status(results, n_params, UNIT)


POINTS = "model sizes"


def point_label(result) -> str:
    d = describe(result.config)
    return f"d_model {d['d_model']}, {d['n_layers']} layer(s) ({d['params_non_embedding']:,} non-embedding parameters)"


def prepared(sweep: str) -> str:
    cfgs = configs(sweep)
    return (f"set-inclusion {SWEEPS[sweep]['preset']} preset, d_model / layers "
            + ", ".join(f"{c.d_model} / {c.n_layers}" for c in cfgs)
            + f" ({fmt_params(n_params(cfgs[0]))} to {fmt_params(n_params(cfgs[-1]))} non-embedding parameters)")


# ----------------------------------------------------------------------------------------------
# The study interface of the claims page (iml.core.study)
# ----------------------------------------------------------------------------------------------

name = "setinclusion_size"
domain = "language"
tested_on = "transformer trained from scratch (set inclusion)"
paper_note = None


def find(roots: Sequence) -> tuple[str, list] | None:
    return labelled(find_sweep(roots))


def judge_claim(claim, found: tuple[str, list]) -> tuple[str, str, str]:
    return scaling.judge_claim(found, n_params, "set-inclusion transformer", UNIT)


def power_rows(found: tuple[str, list]) -> list[dict]:
    return scaling.power_rows(f"set inclusion, {found[0]}", found[1], n_params)

