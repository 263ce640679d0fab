"""Gradient alignment (paper claim 5) on the MNIST grid task: do Ḋefine definitions get gradients that point
where the QA gradients about the same alias point, more than D̄efine ones? Training is exactly the MNIST task's
Stage 1 (same data, weights, order and digit draws, Stage 2 not run) at the batch sizes of ``iml.mnist.batch_size``.
Imports torch/numpy/pandas and iml only, so it runs on a bare GPU box.
Design choices: book/design_notes.md (section `iml.mnist.gradient_alignment`).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from iml.core.env import resolve_device
from iml.mnist import experiment as mx
from iml.mnist import grid as mg
from iml.core.config import ConfigError, build, check_positive, from_dict, to_dict
from iml.core.results import COLUMNS, Result
from iml.core.runner import as_config, run_units
from iml.core import power
from iml.core.sweep import find_largest, finished_points, labelled, run_points, seed_paired_difference

__all__ = ["EXPERIMENT", "SUBSETS", "METRICS", "PAPER_COSINES", "PAPER_NOTE", "Config", "PRESETS", "SWEEPS", "make_config",
           "configs", "Probe", "build_probe", "alignment", "measure_group", "run", "run_sweep", "finished",
           "find_sweep", "with_derived", "GAPS", "summary", "table", "gap_curve", "curves", "outcome_link",
           "outcome_note", "trend", "verdict_status",
           "verdict", "POINTS", "point_label", "prepared"]

EXPERIMENT = "gradalign"
SUBSETS = ("d1consis", "d2consis", "d3consis")
METRICS = ("grad_cos", "grad_cos_other")
"""grad_cos: cos(definition gradient, QA gradient of the same alias); grad_cos_other: cos(definition
gradient, QA gradient of another alias of the same subset), the alias-unspecific baseline."""
ANALYSIS_VERSION = 1
PAPER_COSINES = {128: {"d1consis": 0.231, "d2consis": 0.217}, 256: {"d1consis": 0.227, "d2consis": 0.213},
         512: {"d1consis": 0.226, "d2consis": 0.213}}
"""The paper's cos(definition grad, QA grad) after Stage 1 (Pythia-1B, CVDB, poster reading, ±0.005;
paper-brief.md 3.9) at the batch sizes where its error bars are tight. Not comparable in absolute value
to a ConvNet's; the sign and size of Ḋ₅ − D̄₆ (≈ +0.014) are what the analogue can check."""
PAPER_NOTE = "cos Ḋ₅ ≈ 0.231 vs D̄₆ ≈ 0.217 at batch 128 (gap ≈ +0.014, Pythia-1B)"


@dataclasses.dataclass
class Config:
    task: mg.Config = dataclasses.field(default_factory=mg.Config)  # the MNIST task whose Stage 1 is trained
    draws: int = 2                     # renderings of each X2 alias (each: 1 definition + 9 questions)
    analysis_version: int = ANALYSIS_VERSION  # bumped when the measurement changes, so old results go stale

    def __post_init__(self):
        if self.analysis_version != ANALYSIS_VERSION:
            raise ConfigError("analysis_version",
                              f"this code measures version {ANALYSIS_VERSION} only, got {self.analysis_version!r}")
        check_positive("draws", self.draws)
        t = self.task
        if t.joint:
            raise ConfigError("task.joint", "must be false: the alignment is measured for X2 definitions that "
                                            "Stage 1 has not trained, and joint training trains them")
        if t.stage1_epochs < 1:
            raise ConfigError("task.stage1_epochs", f"must be >= 1 (the alignment is measured during Stage 1), "
                                                    f"got {t.stage1_epochs}")
        counts = mg.subset_counts(t.n_aliases, t.fractions)
        for name in ("d1consis", "d2consis"):
            if counts[name] < 2:
                raise ConfigError(f"task.fractions.{name}", f"gives {counts[name]} of {t.n_aliases} aliases; the "
                                                            "alignment and its other-alias baseline need >= 2")
        if counts["d3consis"] == 1:
            raise ConfigError("task.fractions.d3consis", "gives 1 alias; the other-alias baseline needs >= 2 (or 0)")


PRESETS: dict[str, dict[str, Any]] = {"smoke": {}, "cpu": {"task.n_seeds": 10}, "gpu": {}}
"""Overrides on the MNIST preset of the same name: one point each, that preset's Stage 1 at its own batch size
(the cpu preset with the cpu sweep's 10 seeds, so it is that sweep's batch-32 point). The book's figure is a
sweep (SWEEPS)."""

PRESET_NOTES = {"smoke": "the MNIST smoke preset's Stage 1, alignment measured; seconds",
                "cpu": "the MNIST cpu preset's Stage 1 at batch 32 with 10 seeds (the cpu sweep's batch-32 point)",
                "gpu": "the MNIST gpu preset's Stage 1; prepared, not run yet"}
"""One line per preset for ``iml list``; the book's figure is the sweep (``iml sweep gradalign``)."""

SWEEPS = ("smoke", "cpu", "gpu")
"""Batch-size sweeps: the two-stage sweeps of ``iml.mnist.batch_size`` of the same names (their Stage 1)."""
SWEEP_OVERRIDES: dict[str, dict[str, Any]] = {"cpu": {"n_seeds": 10}}
"""MNIST overrides of a sweep, under the caller's: the cpu sweep measures 10 seeds (the batch-size sweep's 5 and 5
more; seeds 0-4 train exactly as there), because the batch-size trend of the alignment needs them."""


def make_config(preset: str | None = "cpu", overrides: Mapping[str, Any] | None = None,
                config_file: str | Path | None = None) -> Config:
    """The preset's config with dotted-key overrides (e.g. ``{"draws": 4, "task.n_seeds": 3}``)."""
    base = to_dict(Config()) if preset is None else {**to_dict(Config()), "task": to_dict(mg.make_config(preset))}
    return build(Config, PRESETS, preset, overrides, config_file, base=base)


def configs(sweep: str = "cpu", points=None, overrides: Mapping[str, Any] | None = None,
            draws: int | None = None) -> list[Config]:
    """One config per batch size of the two-stage batch-size sweep `sweep`: its MNIST config as the task.
    `overrides` are MNIST overrides (as in ``iml.mnist.batch_size.configs``)."""
    from iml.mnist import batch_size

    if sweep not in SWEEPS:
        raise ConfigError("sweep", f"must be one of {list(SWEEPS)}, got {sweep!r}")
    extra = {} if draws is None else {"draws": draws}
    task_overrides = {**SWEEP_OVERRIDES.get(sweep, {}), **dict(overrides or {})}
    return [from_dict(Config, {"task": to_dict(t), **extra})
            for t in batch_size.configs(sweep, points, task_overrides)]


# ----------------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Probe:
    """The fixed examples of one seed group: per subset present, aliases (S, A), their digit images
    (S, A, draws, 9) as training-pool indices, their true label grids (S, A, 9) and the subset's tag."""

    subsets: list
    alias: dict
    digits: dict
    labels: dict
    tag: dict


def build_probe(cfg: Config, data: mx.GroupData, seeds: Sequence[int]) -> Probe:
    """The X2 aliases of every seed and `cfg.draws` renderings of each (own generator per seed, so the
    training's random streams are untouched)."""
    train, _ = mg.load_digits(cfg.task.image_scale)
    dev = data.codes.device
    out = Probe([], {}, {}, {}, {})
    for name in SUBSETS:
        k = mg.SUBSETS.index(name)
        per = [np.flatnonzero(c.subset == k) for c in data.constructions]
        if not len(per[0]):
            continue
        al, dg, lb = [], [], []
        for seed, c, members in zip(seeds, data.constructions, per):
            g = torch.Generator().manual_seed(mx.seed32(seed, 0x6A, k))
            u = torch.rand((len(members), cfg.draws, mg.N_CELLS), generator=g)
            cls = torch.as_tensor(c.codes[members])[:, None, :].expand(-1, cfg.draws, -1)
            dg.append(mx.draw_images(cls, u, torch.as_tensor(train.offset), torch.as_tensor(train.count)))
            al.append(torch.as_tensor(members))
            lb.append(torch.as_tensor(c.grids[members]))
        out.subsets.append(name)
        out.alias[name] = torch.stack(al).to(dev)
        out.digits[name] = torch.stack(dg).to(dev)
        out.labels[name] = torch.stack(lb).to(dev)
        out.tag[name] = mg.TAG_OF[name]
    return out


def _example_loss(params, x, labels, mask):
    """One example per seed: x (S, 1, 1, H, W) -> the sum over seeds of each seed's training loss, so that
    the gradient of seed s's parameters is the gradient of seed s's own loss."""
    return mx.masked_ce(mg.forward(params, x), labels, mask).sum()


def _unit_grads(params, x, labels, mask) -> torch.Tensor:
    """Per-example gradients, flattened and normalised: x (n, S, 1, 1, H, W) -> (n, S, P) unit vectors."""
    from torch.func import grad, vmap

    g = vmap(grad(_example_loss), in_dims=(None, 0, 0, 0))(params, x, labels, mask)
    n, S = x.shape[:2]
    flat = torch.cat([g[k].reshape(n, S, -1).float() for k in params], -1)
    return F.normalize(flat, dim=-1)


@torch.no_grad()
def _examples(data: mx.GroupData, digits, labels, tag: int, rows: torch.Tensor):
    """The definition and 9 questions of each rendering: digits (S, a, D, 9) -> images (a*D*10, S, 1, 1, H, W),
    labels and masks (a*D*10, S, 1, 9), ordered (alias, draw, [definition, cell 0..8])."""
    S, a, D, _ = digits.shape
    n = a * D * (1 + mg.N_CELLS)
    dev = digits.device
    dig = digits[:, :, :, None, :].expand(S, a, D, 1 + mg.N_CELLS, mg.N_CELLS).reshape(S, n, mg.N_CELLS)
    kind = torch.arange(1 + mg.N_CELLS, device=dev)  # 0: definition, 1..9: question about cell kind-1
    cell = torch.where(kind == 0, mg.NO_CELL, kind - 1).repeat(a * D).expand(S, n)
    tags = torch.where(kind == 0, tag, 0).repeat(a * D).expand(S, n)
    lab = labels[:, :, None, None, :].expand(S, a, D, 1 + mg.N_CELLS, mg.N_CELLS).reshape(S, n, mg.N_CELLS)
    eye = torch.eye(mg.N_CELLS, dtype=torch.bool, device=dev)
    mask = torch.cat([torch.ones(1, mg.N_CELLS, dtype=torch.bool, device=dev), eye]).repeat(a * D, 1).expand(S, n, -1)
    x = mg.render(data.train_pool[dig], tags, cell, data.strips[rows], data.boxes, data.layout)  # (S, n, 1, H, W)
    return x.transpose(0, 1).unsqueeze(2), lab.transpose(0, 1).unsqueeze(2), mask.transpose(0, 1).unsqueeze(2)


def alignment(params: Mapping[str, torch.Tensor], data: mx.GroupData, probe: Probe,
              max_bytes: float = 1e9) -> dict[str, dict[str, torch.Tensor]]:
    """metric -> subset -> (S,) mean cosine per seed, for the current `params` (S seeds stacked).

    Aliases are processed in chunks so that the per-example gradients stay under about `max_bytes`."""
    P = {k: v.detach() for k, v in params.items()}
    S = next(iter(P.values())).shape[0]
    rows = torch.arange(S, device=data.codes.device)
    n_par = sum(v[0].numel() for v in P.values())
    out = {m: {} for m in METRICS}
    for name in probe.subsets:
        digits, labels = probe.digits[name], probe.labels[name]
        A, D = digits.shape[1], digits.shape[2]
        per_alias = D * (1 + mg.N_CELLS) * S * n_par * 4 * 3  # gradients, flat copy, normalised copy
        step = max(1, int(max_bytes // per_alias))
        defs, qbars = [], []
        for a0 in range(0, A, step):
            x, lab, mask = _examples(data, digits[:, a0:a0 + step], labels[:, a0:a0 + step], probe.tag[name], rows)
            u = _unit_grads(P, x, lab, mask)
            u = u.view(-1, D, 1 + mg.N_CELLS, S, u.shape[-1])    # (a, D, 10, S, P)
            defs.append(u[:, :, 0])
            qbars.append(u[:, :, 1:].mean(2))                   # mean of unit vectors: cos averages linearly
        d, q = torch.cat(defs), torch.cat(qbars)                 # (A, D, S, P)
        out["grad_cos"][name] = (d * q).sum(-1).mean((0, 1))
        out["grad_cos_other"][name] = (d * q.roll(1, dims=0)).sum(-1).mean((0, 1))
    return out


def measure_group(cfg: Config, seeds: Sequence[int], device: torch.device | str | None = None,
                  progress: bool = False) -> dict:
    """Train Stage 1 of the MNIST task for `seeds` (batched, through ``iml.mnist.experiment.train_stage1``, as
    ``train_group`` does) and measure the alignment and the task's accuracies at epoch 0 and at each Stage-1
    evaluation epoch.

    Returns dict(table=tidy DataFrame, t_train, t_measure, t_eval, wall, device)."""
    task = cfg.task
    device = resolve_device(task.device if device is None else str(device), "task.device")
    autocast = device.type == "cuda"
    if autocast:
        torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    data = mx.build_group_data(task, seeds, device)
    probe = build_probe(cfg, data, seeds)
    params = mg.init_params(task, seeds, device)
    S = len(seeds)
    rows1 = torch.arange(S, device=device)
    records: list[tuple[int, dict, torch.Tensor]] = []
    timing = {"measure": 0.0, "eval": 0.0}

    def measure(epoch: int):
        mx.sync(device)
        t0 = time.perf_counter()
        acc = mx.evaluate(params, data, rows1, max(task.batch_size, 256), autocast)
        mx.sync(device)
        t1 = time.perf_counter()
        cos = alignment(params, data, probe)
        mx.sync(device)
        timing["eval"] += t1 - t0
        timing["measure"] += time.perf_counter() - t1
        records.append((epoch, cos, acc))
        if progress:
            c = {k: float(v.mean()) for k, v in cos["grad_cos"].items()}
            print(f"[gradalign seeds {seeds[0]}-{seeds[-1]} bs {task.batch_size}] epoch {epoch}: grad_cos "
                  + " ".join(f"{k}={v:.3f}" for k, v in c.items()), file=sys.stderr, flush=True)

    measure(0)
    _, t_train = mx.train_stage1(params, data, task, seeds, measure, autocast)
    out = []
    for epoch, cos, acc in records:
        a = acc.float().cpu().numpy()
        for i, seed in enumerate(seeds):
            rid = f"s{seed}_0"
            for m in METRICS:
                for name, v in cos[m].items():
                    out.append((rid, seed, 0, 1, epoch, name, m, float(v[i])))
            for mi, m in enumerate(mg.METRICS):
                for k, sub in enumerate(mg.SUBSETS):
                    if not np.isnan(a[i, mi, k]):
                        out.append((rid, seed, 0, 1, epoch, sub, m, float(a[i, mi, k])))
    return dict(table=pd.DataFrame(out, columns=COLUMNS), t_train=t_train, t_measure=timing["measure"],
                t_eval=timing["eval"], n_measures=len(records), wall=time.perf_counter() - t_start,
                device=str(device))


# ----------------------------------------------------------------------------------------------
# Results: one config, and sweeps over batch size
# ----------------------------------------------------------------------------------------------

def _unit(config: Config, seeds: list[int], progress: bool):
    r = measure_group(config, seeds, progress=progress)
    extra = {k: r[k] for k in ("t_train", "t_measure", "t_eval", "n_measures", "device")}
    return r["table"], extra | {"seeds": list(seeds), "wall_time_s": r["wall"]}


def run(config: Config, *, root=None, force: bool = False, progress: bool = True,
        shard: tuple[int, int] | None = None) -> Result | None:
    """Measure every seed group of the task (resuming finished ones unless `force`); the finished result, or None
    from a `shard` that leaves units to others."""
    config = as_config(Config, config, EXPERIMENT)
    return run_units(EXPERIMENT, config, mx.group_jobs(mx.seed_groups(config.task),
                                                       lambda s: _unit(config, s, progress)),
                     root=root, force=force, progress=progress, shard=shard)


def run_sweep(sweep: str = "cpu", points=None, overrides=None, *, root=None, force: bool = False,
              progress: bool = True, workers: int = 1) -> list[Result]:
    """Run (or load) every batch size of `sweep`, smallest first; `workers` > 1 computes unfinished points in
    that many processes. `overrides` are MNIST overrides, except ``draws`` (renderings per X2 alias)."""
    overrides = dict(overrides or {})
    draws = overrides.pop("draws", None)
    return run_points(run, EXPERIMENT, configs(sweep, points, overrides, draws), root=root, force=force,
                      progress=progress, workers=workers, cost=cost)


def cost(cfg: Config) -> int:
    """Epochs of a point (its Stage 1), the order in which parallel workers take them (longest first)."""
    return cfg.task.stage1_epochs


def finished(sweep: str = "gpu", root=None, points=None) -> list[Result] | None:
    """Every point of `sweep` under `root` if all are finished, else None (a sweep is shown whole)."""
    return finished_points(EXPERIMENT, configs(sweep, points), root)


def find_sweep(roots: Sequence) -> tuple[str, list[Result]] | None:
    """(sweep name, results) of the largest finished sweep under any of `roots`, or None."""
    return find_largest(finished, roots)


def _end(result) -> int:
    return int(result.config["task"]["stage1_epochs"])


def with_derived(table: pd.DataFrame) -> pd.DataFrame:
    """`table` plus two derived metrics per seed, subset and epoch:

    * ``grad_cos_specific`` = grad_cos − grad_cos_other: the alignment that is about the alias itself;
    * ``grad_cos_change`` = grad_cos − grad_cos at epoch 0 of the same seed and subset: what Stage 1 did.
      The tag patterns are pixels, so at initialisation Ḋ₅ and D̄₆ definitions already differ a little in
      their gradients (each seed draws its own patterns: zero in expectation over seeds, not per seed);
      the change since epoch 0 removes that seed's offset, so it is the quantity the claim is about
      ("Stage 1 makes Ḋefine gradients more similar to QA gradients")."""
    key = ["run_id", "seed_stage1", "seed_stage2", "stage", "epoch", "subset"]
    cos = table[table.metric == "grad_cos"].set_index(key).value
    other = table[table.metric == "grad_cos_other"].set_index(key).value
    spec = (cos - other).dropna().rename("value").reset_index().assign(metric="grad_cos_specific")
    c = cos.rename("value").reset_index()
    start = c[c.epoch == 0].set_index(["seed_stage1", "seed_stage2", "subset"]).value.rename("start")
    c = c.join(start, on=["seed_stage1", "seed_stage2", "subset"])
    change = c.assign(value=c.value - c.start, metric="grad_cos_change").drop(columns="start").dropna(subset=["value"])
    return pd.concat([table, spec[COLUMNS], change[COLUMNS]], ignore_index=True)


GAPS = {"grad_cos": "the paper's quantity", "grad_cos_change": "change since epoch 0 (the verdict)",
        "grad_cos_specific": "alias-specific (minus the other-alias baseline)"}
"""The gaps Ḋ₅ − D̄₆ the summary reports, in the metrics of :func:`with_derived`."""


def summary(results: Sequence[Result]) -> pd.DataFrame:
    """One row per batch size at the end of Stage 1: the mean cos(definition, QA) per subset with a
    t-interval over seeds, the gap Ḋ₅ − D̄₆ with its CI in each metric of :data:`GAPS`, and the Stage-1
    held-out accuracies."""
    from iml.core.stats import iml_gap, per_seed_means, seed_interval

    rows = []
    for r in sorted(results, key=lambda r: r.config["task"]["batch_size"]):
        e1 = _end(r)
        t = with_derived(r.table)
        end = t[t.epoch == e1]
        row = {"batch_size": r.config["task"]["batch_size"], "stage1_epochs": e1}
        for name in SUBSETS:
            sel = end[(end.metric == "grad_cos") & (end.subset == name)]
            if sel.empty:
                continue
            iv = seed_interval(per_seed_means(sel, "value"))
            row[f"grad_cos_{name}"], row[f"grad_cos_{name}_lo"], row[f"grad_cos_{name}_hi"] = iv.mean, iv.ci_low, iv.ci_high
        for m in GAPS:
            g = iml_gap(t, "d1consis", "d2consis", metric=m, epoch=e1)
            row[f"{m}_gap"], row[f"{m}_gap_lo"], row[f"{m}_gap_hi"] = g.gap, g.ci_low, g.ci_high
            row[f"{m}_gap_p"], row[f"{m}_gap_sd"] = g.p_one_sided, g.sd_stage1
        g0 = iml_gap(t, "d1consis", "d2consis", metric="grad_cos", epoch=0)
        row["grad_cos_gap_epoch0"] = g0.gap
        acc = end[end.metric == "acc"].groupby("subset").value.mean()
        row["stage1_acc_qd1consis"] = float(acc.get("qd1consis", np.nan))
        row["stage1_acc_qd2incons"] = float(acc.get("qd2incons", np.nan))
        row["n_seeds"] = int(t.seed_stage1.nunique())
        row["config"] = r.hash
        rows.append(row)
    return pd.DataFrame(rows)


_SYMBOL = {"d1consis": "Ḋ₅", "d2consis": "D̄₆", "d3consis": "D̃₇"}


def table(s: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it, with the paper's Pythia-1B values where it has them."""
    def ci(col):
        return [f"[{a:+.4f}, {b:+.4f}]" for a, b in zip(s[col + "_lo"], s[col + "_hi"])]

    def paper(bs):
        p = PAPER_COSINES.get(int(bs))
        return f"{p['d1consis']:.3f} vs {p['d2consis']:.3f}" if p else "no number"

    out = {"batch size": s["batch_size"], "epochs": s["stage1_epochs"]}
    for name in SUBSETS:
        if f"grad_cos_{name}" in s:
            out[f"cos {_SYMBOL[name]}"] = s[f"grad_cos_{name}"].round(3)
    out["gap Ḋ₅ − D̄₆"] = s["grad_cos_gap"].round(4)
    out["gap at epoch 0"] = s["grad_cos_gap_epoch0"].round(4)
    out["gap change since epoch 0"] = s["grad_cos_change_gap"].round(4)
    out["change 95% CI"] = ci("grad_cos_change_gap")
    out["p (one-sided)"] = [float(f"{p:.2g}") for p in s["grad_cos_change_gap_p"]]
    out["alias-specific gap"] = s["grad_cos_specific_gap"].round(4)
    out["alias-specific 95% CI"] = ci("grad_cos_specific_gap")
    out["stage-1 acc Ḋ₁QA₁ / D̄₂QA₂"] = [f"{a:.3f} / {b:.3f}" for a, b in
                                        zip(s["stage1_acc_qd1consis"], s["stage1_acc_qd2incons"])]
    out["seeds"] = s["n_seeds"]
    out["paper (Pythia-1B) Ḋ₅ vs D̄₆"] = [paper(b) for b in s["batch_size"]]
    out["config"] = s["config"]
    return pd.DataFrame(out)


def gap_curve(result: Result, metric: str = "grad_cos") -> pd.DataFrame:
    """The gap Ḋ₅ − D̄₆ in `metric` (any of :func:`with_derived`'s) at every measured epoch, with its CI:
    columns epoch, gap, ci_low, ci_high."""
    from iml.core.stats import iml_gap

    t = with_derived(result.table)
    rows = []
    for e in sorted(t[t.metric == metric].epoch.unique()):
        g = iml_gap(t, "d1consis", "d2consis", metric=metric, epoch=e)
        rows.append({"epoch": int(e), "gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high})
    return pd.DataFrame(rows)


def _per_seed_change(result: Result) -> pd.Series:
    from iml.core.stats import paired_differences

    d = paired_differences(with_derived(result.table), "d1consis", "d2consis", "grad_cos_change", _end(result))
    return d.groupby("seed_stage1")["diff"].mean()


def trend(small: Result, large: Result) -> dict:
    """The alignment gap's change since epoch 0 at the smaller batch minus at the larger one, paired by seed
    (the same seeds, aliases and initial weights at every batch size), with a t-interval over seeds."""

    return {"small": small.config["task"]["batch_size"], "large": large.config["task"]["batch_size"],
            **seed_paired_difference(_per_seed_change(small), _per_seed_change(large))}


def verdict_status(results: Sequence[Result]) -> tuple[str, str]:
    """(status, evidence) for paper claim 5, judged at the smallest batch on the change since epoch 0 of
    the gap Ḋ₅ − D̄₆ in cos(definition grad, QA grad) (:func:`with_derived`): *reproduced* when its 95% CI is
    above 0 with enough seeds (:mod:`iml.core.verdicts`). The evidence adds the raw gap (the paper's number), the
    alias-specific gap and the largest batch."""
    from iml.core.verdicts import judge, reference_effect, seeds_note

    if not results:
        return "not attempted", "no finished gradient-alignment sweep"
    s = summary(results)
    first, last = s.iloc[0], s.iloc[-1]
    gap, lo, hi = first["grad_cos_change_gap"], first["grad_cos_change_gap_lo"], first["grad_cos_change_gap_hi"]
    status, need = judge(lo, hi, int(first["n_seeds"]), first["grad_cos_change_gap_sd"],
                         reference_effect(math.nan, gap, lo, hi))

    def gap(row, m):
        return f"{row[m + '_gap']:+.4f} [{row[m + '_gap_lo']:+.4f}, {row[m + '_gap_hi']:+.4f}]"

    text = (f"MNIST grid analogue, end of Stage 1, batch {int(first['batch_size'])} ({int(first['n_seeds'])} seeds): "
            f"cos(definition grad, QA grad) Ḋ₅ {first['grad_cos_d1consis']:.3f} vs "
            f"D̄₆ {first['grad_cos_d2consis']:.3f}, "
            f"gap {gap(first, 'grad_cos')}; its change since epoch 0 {gap(first, 'grad_cos_change')}; "
            f"alias-specific {gap(first, 'grad_cos_specific')}")
    if len(s) > 1:
        text += f". At batch {int(last['batch_size'])}: change since epoch 0 {gap(last, 'grad_cos_change')}"
        rs = sorted(results, key=lambda r: r.config["task"]["batch_size"])
        try:
            t = trend(rs[0], rs[-1])
            text += (f"; batch {t['small']} minus batch {t['large']}: {t['diff']:+.4f} [{t['ci_low']:+.4f}, "
                     f"{t['ci_high']:+.4f}] ({t['n_seeds']} seeds paired)")
        except ValueError:  # fewer than 2 shared seeds
            pass
    if status == "too few seeds":
        text += f". Too few seeds for a verdict: {seeds_note(int(first['n_seeds']), need)}"
    return status, text + "."


def verdict(results: Sequence[Result]) -> str:
    status, text = verdict_status(results)
    from iml.core.verdicts import MIN_SEEDS

    return (f"**Verdict** (1 planned comparison, at the smallest batch; a 95% interval above 0 with at least "
            f"{MIN_SEEDS} seeds counts as reproduced) on the paper's claim \"cos(definition grad, QA grad) is "
            f"higher for Ḋ₅ than D̄₆ at small batch sizes\": **{status}**. {text}")


def _same_stage1(task: Mapping[str, Any], root=None) -> Result | None:
    """The MNIST result trained with `task`'s recipe: the exact config if it is there, else the one with the
    most seeds whose config differs only in the seed count (seed s of a group trains the same whatever the
    number of groups, so seeds pair up by number)."""
    import json
    from pathlib import Path

    from iml.core import files
    from iml.core import results as results_mod

    try:
        return results_mod.load(mg.EXPERIMENT, task, root=root)
    except (FileNotFoundError, results_mod.StaleResultError):
        pass
    want = {k: v for k, v in to_dict(task).items() if k != "n_seeds"}
    best = None
    for cfg_file in sorted((Path(root) if root is not None else files.RESULTS_DIR).glob(f"{mg.EXPERIMENT}/*/config.json")):
        try:  # fields added since a result was made are filled in at their defaults (hash-neutral values)
            full = to_dict(from_dict(mg.Config, json.loads(cfg_file.read_text())))
        except ConfigError:  # e.g. an older task_version
            continue
        if {k: v for k, v in full.items() if k != "n_seeds"} != want:
            continue
        try:
            res = results_mod.load_dir(cfg_file.parent)
        except (FileNotFoundError, results_mod.StaleResultError):
            continue
        if best is None or full["n_seeds"] > best.config["n_seeds"]:
            best = res
    return best


def outcome_link(results: Sequence[Result], root=None) -> tuple[pd.DataFrame, dict] | None:
    """Does the alignment predict IML? Each point's Stage 1 is exactly the Stage 1 of the MNIST result with the
    same task config (or the same recipe with another seed count, :func:`_same_stage1`) when that result exists
    under `root`, so seed by seed the alignment gap at the end of Stage 1 can be set beside the IML gap that the
    seed showed after Stage 2.

    Returns (per-seed frame: batch_size, seed_stage1, align = Ḋ₅ − D̄₆ change of grad_cos since epoch 0,
    iml = Ḋ₅ − D̄₆ held-out accuracy after Stage 2, mean over stage-2 seeds) and the Pearson correlation over
    all pairs with its Fisher-z interval, or None when no MNIST result is there. Seeds are shared
    across batch sizes, so the pairs are not independent; read the CI as descriptive."""
    from iml.core.stats import correlation, paired_differences

    rows = []
    for r in results:
        m = _same_stage1(r.config["task"], root)
        if m is None:
            continue
        a = paired_differences(with_derived(r.table), "d1consis", "d2consis", "grad_cos_change", _end(r))
        b = paired_differences(m.table, "d1consis", "d2consis", "acc").groupby("seed_stage1")["diff"].mean()
        a = a.groupby("seed_stage1")["diff"].mean()
        for seed in a.index.intersection(b.index):
            rows.append({"batch_size": r.config["task"]["batch_size"], "seed_stage1": int(seed),
                         "align": float(a[seed]), "iml": float(b[seed])})
    if len(rows) < 3:
        return None
    f = pd.DataFrame(rows)
    info = {"batch_sizes": sorted(f.batch_size.unique().tolist())}
    return f, {**correlation(f["align"], f["iml"]), **info}


def outcome_note(link: tuple[pd.DataFrame, dict] | None) -> str:
    if link is None:
        return ("*Alignment vs IML:* no MNIST result with these Stage-1 configs under the results root, so the "
                "per-seed link to the IML gap cannot be shown.")
    _, c = link
    if c["r"] != c["r"]:
        return (f"*Alignment vs IML:* {c['n']} seed × batch-size pairs, but one of the two gaps does not vary across "
                "them, so their correlation is undefined.")
    return (f"*Alignment vs IML, seed by seed:* Pearson r = {c['r']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] "
            f"between a seed's alignment gap at the end of Stage 1 (change since epoch 0) and the IML gap the same "
            f"seed showed after Stage 2 in the MNIST result with the same Stage 1 ({c['n']} seed × batch-size pairs, "
            f"batch sizes {', '.join(map(str, c['batch_sizes']))}; Fisher-z interval, but the seeds repeat across "
            f"batch sizes, so the pairs are not independent and the interval is descriptive).")


def curves(results: Sequence[Result]) -> dict[int, pd.DataFrame]:
    """batch size -> the change since epoch 0 of the gap over Stage 1 (:func:`gap_curve`), for the figure."""
    return {r.config["task"]["batch_size"]: gap_curve(r, "grad_cos_change") for r in results}


POINTS = "batch sizes"
"""What the points of a sweep are, in the book's words."""


def point_label(result) -> str:
    """How the book names one point of a sweep."""
    return f"batch {result.config['task']['batch_size']}"


def prepared(sweep: str) -> str:
    """What a sweep that has not been run yet would compute (the notebook's headline note)."""
    return f"the Stage 1 of the two-stage `{sweep}` batch-size sweep"


# ----------------------------------------------------------------------------------------------
# The study interface of the claims page (iml.core.study)
# ----------------------------------------------------------------------------------------------

name = "gradalign"
domain = "vision"
tested_on = "MNIST grid (ConvNet)"
paper_note = PAPER_NOTE


def find(roots: Sequence) -> tuple[str, list] | None:
    """Judged on a batch-size sweep of gradient-alignment results, never on a single point."""
    return labelled(find_sweep(roots))


def judge_claim(claim, found: tuple[str, list]) -> tuple[str, str, str]:
    name, rs = found
    status, text = verdict_status(rs)
    return status, text, f"{name}, batch sizes {', '.join(str(r.config['task']['batch_size']) for r in rs)}"


def power_rows(found: tuple[str, list]) -> list[dict]:
    name, rs = found
    rs = sorted(rs, key=lambda r: r.config["task"]["batch_size"])
    x = _per_seed_change(rs[0])
    return [power.row(f"gradient alignment ({name}): Ḋ₅ − D̄₆ change since epoch 0, batch "
                      f"{rs[0].config['task']['batch_size']}", x, power.own(x), "this result",
                      power.seconds_per_seed(rs[0]))]
