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

import pandas as pd

from iml.core import scaling
from iml.core.results import pool_seeds
from iml.core.scaling import fmt_params
from iml.core.sweep import find_largest, finished_points, labelled, run_points
from iml.mnist import experiment as mx
from iml.mnist import grid as mnist_grid

__all__ = ["EXPERIMENT", "SWEEPS", "point_configs", "configs", "n_params", "cost", "run_sweep", "finished", "find_sweep", "describe", "SIZE_NAME", "summary",
           "table", "verdict", "verdict_status", "POINTS", "point_label", "prepared"]

EXPERIMENT = mnist_grid.EXPERIMENT
"""Every point of a model-size sweep is an ordinary MNIST result."""

SWEEPS: dict[str, dict[str, Any]] = {
    # points are (width, hidden): the ConvNet conv3x3(w)-conv3x3(2w)-conv3x3(2w)-fc(hidden)-fc(18) of
    # iml.mnist.grid; each step doubles both, about 4x the parameters. The preset's own size is one point.
    "smoke": dict(preset="smoke", points=[(4, 32), (8, 64)]),
    "cpu-10": dict(preset="cpu", overrides={"n_seeds": 10}, points=[(4, 64), (8, 128), (16, 256), (32, 512)]),
    "cpu-20": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)]),
    "cpu-30": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)],
                   seed_blocks=[{}, {"start_seed": 20, "n_seeds": 10}]),
    "cpu-49": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)],
                   seed_blocks=[{}, {"start_seed": 20, "n_seeds": 10}, {"start_seed": 30, "n_seeds": 19}]),
    "cpu": dict(preset="cpu", points=[(4, 64), (8, 128), (16, 256), (32, 512)],
                seed_blocks=[{}, {"start_seed": 20, "n_seeds": 10}, {"start_seed": 30, "n_seeds": 19},
                             {"start_seed": 49, "n_seeds": 8}]),
    "gpu": dict(preset="gpu", points=[(8, 128), (16, 256), (32, 512), (64, 1024)]),
}
"""Sweep presets. ``cpu-10`` (10 seeds a point, the fewest a verdict takes) ran first; its between-seed spread asked
for 18 seeds, so ``cpu-20`` has the preset's 20 (its (8, 128) point *is* the MNIST cpu preset); the 20-seed
spread asked for 29, so ``cpu-30`` adds seeds 20-29 to every point of ``cpu-20`` (a second result per point, pooled by
:func:`iml.core.results.pool_seeds`; the first 20 seeds are ``cpu-20``'s own results); the 30-seed spread asked for 49,
so ``cpu-49`` adds a third result on seeds 30-48 to every point of ``cpu-30``; the 49-seed spread asked for 57, so ``cpu``
(57 seeds) adds a fourth on seeds 49-56. The gpu sweep's
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


def point_configs(sweep: str = "cpu", points: Sequence[Sequence[int]] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> list[list[mnist_grid.Config]]:
    """Per (width, hidden) point of `sweep` (or the given `points`), fewest parameters first: its configs, one per
    seed block of the sweep (one config unless the sweep adds seeds in ``seed_blocks``)."""
    spec, pts, fixed = scaling.check_points(SWEEPS, sweep, points, overrides, SIZE_KEYS, "(width, hidden)")
    out = [[mnist_grid.make_config(spec["preset"], {**fixed, **block, "width": w, "hidden": h})
            for block in spec.get("seed_blocks", [{}])] for w, h in pts]
    return sorted(out, key=lambda cs: (n_params(cs[0]), cs[0].width))


def configs(sweep: str = "cpu", points: Sequence[Sequence[int]] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[mnist_grid.Config]:
    """Every config `sweep` computes (each point's seed blocks in turn), fewest parameters first."""
    return [c for cs in point_configs(sweep, points, overrides) for c in cs]


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list:
    """Run (or load) every point of the sweep; returns one result per point (its seed blocks pooled), smallest
    model first.

    ``workers > 1`` computes unfinished results in that many processes at once (one torch thread each on a
    CPU; each is an independent result, written atomically), costliest first."""
    groups = point_configs(sweep, points, overrides)
    rs = run_points(mx.run, EXPERIMENT, [c for cs in groups for c in cs], root=root, force=force,
                    progress=progress, workers=workers, cost=cost)
    return _pooled(groups, rs)


def _pooled(groups: list[list], results: list) -> list:
    """One result per point from the results of its seed blocks, in order."""
    it = iter(results)
    return [pool_seeds([next(it) for _ in cs]) for cs in groups]


def cost(cfg: mnist_grid.Config) -> int:
    """Rough compute of a point (parameters x epochs), the order in which parallel workers take them."""
    return n_params(cfg) * (cfg.stage1_epochs + cfg.stage2_epochs)


def finished(sweep: str = "gpu", root=None, points=None) -> list | None:
    """The finished results of every point of `sweep` under `root`, or None if any point is missing
    (a sweep is shown whole or not at all). `root` None: results/; a book's "none" is handled by the caller."""
    groups = point_configs(sweep, points)
    rs = finished_points(EXPERIMENT, [c for cs in groups for c in cs], root)
    return None if rs is None else _pooled(groups, rs)


def find_sweep(roots: Sequence) -> tuple[str, list] | None:
    """(sweep name, results) of the largest finished sweep under any of `roots`, or None."""
    return find_largest(finished, roots, names=("gpu", "cpu", "cpu-49", "cpu-30", "cpu-20", "cpu-10"))


def describe(cfg: Mapping[str, Any]) -> dict:
    """The size columns of one point's summary row (:func:`iml.core.scaling.summary`)."""
    n = n_params(cfg)
    return {"width": cfg.get("width"), "hidden": cfg.get("hidden"), "size": f"{cfg.get('width')}/{cfg.get('hidden')}",
            "params": n, "params_non_embedding": n}


SIZE_NAME = "width/hidden"
"""What :func:`describe`'s ``size`` says, as a table header."""


def summary(results: Sequence) -> pd.DataFrame:
    """One row per model size (:func:`iml.core.scaling.summary`); :func:`table` formats it."""
    return scaling.summary(results, n_params, describe)


def table(summary_frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it (:func:`iml.core.scaling.table`)."""
    return scaling.table(summary_frame, SIZE_NAME)


def verdict(results: Sequence) -> str:
    """Markdown: claim 3's two planned comparisons on this sweep (:func:`iml.core.scaling.verdict`)."""
    return scaling.verdict(results, n_params)


def verdict_status(results: Sequence) -> tuple[str, str]:
    """(status, evidence) for paper claim 3 from a finished sweep (:func:`iml.core.scaling.verdict_status`)."""
    return scaling.verdict_status(results, n_params)


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
            + f" ({fmt_params(n_params(cfgs[0]))} to {fmt_params(n_params(cfgs[-1]))} parameters per seed)")


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
    return scaling.judge_claim(found, n_params, "MNIST grid analogue")


def power_rows(found: tuple[str, list]) -> list[dict]:
    """The two planned comparisons' seed counts (:func:`iml.core.scaling.power_rows`)."""
    return scaling.power_rows(f"MNIST, {found[0]}", found[1], n_params)
