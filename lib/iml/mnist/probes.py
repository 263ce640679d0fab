"""Linear probes (paper claim 6, "Mechanism 1: selective retrieval"), and their MNIST grid analogue: the probe
(:func:`fit_logistic`, :func:`probe_accuracy`; torch only, any features) and an experiment that, during the MNIST
task's own training, probes each ConvNet layer's activations for question images for the alias's tag. Folds
are grouped by alias, or a probe could learn alias identity -> tag.
Design choices: book/design_notes.md (section `iml.mnist.probes`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from iml.core.env import resolve_device
from iml.mnist import experiment as mx
from iml.mnist import grid as mg
from iml.core.config import ConfigError, build, check_choice, check_positive, to_dict
from iml.core.results import Result
from iml.core.runner import as_config, run_units

__all__ = ["EXPERIMENT", "SUBSET", "Config", "PRESETS", "make_config", "fit_logistic", "probe_accuracy",
           "QuestionSet", "question_set", "make_observer", "run", "summary", "table", "verdict_status"]

EXPERIMENT = "probe"
SUBSET = "tag"
"""The `subset` column of probe rows: the probed label is the tag of the alias's Stage-1 definition."""
PROBE_VERSION = 1


def fit_logistic(X: torch.Tensor, y: torch.Tensor, C: float = 0.01, max_iter: int = 200, balanced: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-regularised logistic regression, sklearn's ``LogisticRegression(C=C)`` objective
    ``0.5 ||w||² + C Σᵢ cᵢ logloss(yᵢ, σ(w·xᵢ + b))`` (intercept not penalised), minimised by L-BFGS in float64.
    ``balanced``: class weights cᵢ = n / (2 n_{yᵢ}) (sklearn's ``class_weight="balanced"``), so that the
    intercept does not follow the training folds' label imbalance, which on a null would push held-out
    accuracy below chance; else cᵢ = 1. X (n, f), y (n,) in {0, 1}. Returns (w (f,), b ())."""
    X, y = X.double(), y.double()
    n1 = float(y.sum())
    if balanced and 0 < n1 < len(y):
        weight = torch.where(y > 0, len(y) / (2 * n1), len(y) / (2 * (len(y) - n1)))
    else:
        weight = torch.ones_like(y)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = X @ w + b
        bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, weight=weight, reduction="sum")
        loss = 0.5 * (w * w).sum() + C * bce
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe_accuracy(X: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, folds: int = 5, C: float = 0.01,
                   seed: int = 0) -> float:
    """Cross-validated accuracy of :func:`fit_logistic` predicting y from X, with folds grouped by `groups`
    (all rows of a group are held out together) and stratified: each label's groups are shuffled with `seed`
    and dealt to the folds in turn, so every fold holds both labels in the data's proportion. (Unstratified
    folds bias CV accuracy *below* chance on balanced data: a fold with more of one label leaves the training
    folds with more of the other; the class-balanced fit removes what rounding leaves.) Features are standardised with the training folds' mean and std. A group
    must have one label."""
    X, y, groups = X.double().cpu(), y.cpu().long(), groups.cpu().long()
    fold_of = torch.full((int(groups.max()) + 1,), -1, dtype=torch.long)
    rng = np.random.default_rng(seed)
    start = 0
    for label in torch.unique(y).tolist():
        g = torch.unique(groups[y == label])
        if (fold_of[g] >= 0).any():
            raise ValueError("a group has rows of more than one label")
        if len(g) < folds:
            raise ValueError(f"label {label}: {len(g)} groups cannot fill {folds} folds")
        g = g[torch.from_numpy(rng.permutation(len(g)))]
        fold_of[g] = (torch.arange(len(g)) + start) % folds
        start += len(g)
    f = fold_of[groups]
    correct = 0
    for k in range(folds):
        tr, te = f != k, f == k
        mu, sd = X[tr].mean(0), X[tr].std(0).clamp_min(1e-6)
        w, b = fit_logistic((X[tr] - mu) / sd, y[tr], C)
        pred = (((X[te] - mu) / sd) @ w + b) > 0
        correct += int((pred == y[te].bool()).sum())
    return correct / len(y)


# ----------------------------------------------------------------------------------------------
# The MNIST grid analogue
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Config:
    task: mg.Config = dataclasses.field(default_factory=mg.Config)  # the MNIST task that is trained and probed
    draws: int = 2          # renderings of every cell of every probed alias (test digit pool)
    C: float = 0.01         # inverse L2 strength (the paper's probe)
    folds: int = 5          # cross-validation folds, grouped by alias
    at: str = "ends"        # "ends": epoch 0 and the end of each stage; "all": every evaluation of the task
    probe_version: int = PROBE_VERSION

    def __post_init__(self):
        if self.probe_version != PROBE_VERSION:
            raise ConfigError("probe_version", f"this code probes version {PROBE_VERSION} only, "
                                               f"got {self.probe_version!r}")
        check_positive("draws", self.draws)
        check_choice("at", self.at, {"ends", "all"})
        check_positive("C", self.C, integer=False)
        check_positive("folds", self.folds)
        if self.folds < 2:
            raise ConfigError("folds", f"must be >= 2, got {self.folds}")
        counts = mg.subset_counts(self.task.n_aliases, self.task.fractions)
        for tag in (1, 2):
            n = sum(counts[s] for s in mg.X1_SUBSETS if mg.TAG_OF[s] == tag)
            if n < self.folds:  # each label's aliases are dealt over the folds
                raise ConfigError("folds", f"{n} Stage-1 aliases have tag {tag}: too few for {self.folds} folds "
                                           f"(raise task.n_aliases or lower folds)")


PRESETS: dict[str, dict[str, Any]] = {"smoke": {}, "cpu": {"task.n_seeds": 10}, "gpu": {}}
"""Overrides on top of the MNIST preset of the same name (trained exactly as in the MNIST experiment). The cpu
preset has 10 seeds (about 6 min on one thread; seeds 0-4 train like the MNIST cpu run), because a null probe
needs the narrower CI."""

PRESET_NOTES = {"smoke": "the MNIST smoke preset, probed; seconds",
                "cpu": "the MNIST cpu preset with 10 seeds, linear probes for the tag at the stage ends (~6 min)",
                "gpu": "the MNIST gpu preset, probed; prepared, no gpu run yet"}
"""One line per preset for ``iml list``."""


def make_config(preset: str | None = "cpu", overrides: Mapping[str, Any] | None = None,
                config_file: str | Path | None = None) -> Config:
    """The MNIST preset `preset` as the task, the probe preset's overrides, then `overrides` (dotted keys, e.g.
    ``{"draws": 4, "task.n_seeds": 3}``)."""
    base = to_dict(Config()) if preset is None else {**to_dict(Config()), "task": to_dict(mg.make_config(preset))}
    return build(Config, PRESETS, preset, overrides, config_file, base=base)


@dataclasses.dataclass
class QuestionSet:
    """Per seed (stacked): question images' digits (S, N, 9) as test-pool indices, their cells (S, N), the
    alias of each (S, N) and its label (S, N): 1 = Ḋefine tag, 0 = D̄efine. The same N for every seed."""

    digits: torch.Tensor
    cell: torch.Tensor
    alias: torch.Tensor
    label: torch.Tensor


def question_set(cfg: Config, data: mx.GroupData, seeds: Sequence[int]) -> QuestionSet:
    """Every cell of every tagged Stage-1 alias, `cfg.draws` renderings each, drawn from the test pool with a
    generator of each seed's own (the training's random streams are untouched)."""
    _, test = mg.load_digits(cfg.task.image_scale)
    out = {k: [] for k in ("digits", "cell", "alias", "label")}
    tagged = [mg.SUBSETS.index(s) for s in mg.X1_SUBSETS if mg.TAG_OF[s] in (1, 2)]
    for seed, c in zip(seeds, data.constructions):
        members = np.flatnonzero(np.isin(c.subset, tagged))
        alias = np.repeat(members, mg.N_CELLS * cfg.draws)
        cell = np.tile(np.arange(mg.N_CELLS), len(members) * cfg.draws)
        g = torch.Generator().manual_seed(mx.seed32(seed, 0x9B0E))
        u = torch.rand((len(alias), mg.N_CELLS), generator=g)
        out["digits"].append(mx.draw_images(torch.as_tensor(c.codes[alias]), u, torch.as_tensor(test.offset),
                                      torch.as_tensor(test.count)))
        out["cell"].append(torch.as_tensor(cell))
        out["alias"].append(torch.as_tensor(alias))
        tags = np.array([mg.TAG_OF[mg.SUBSETS[k]] for k in c.subset[alias]])
        out["label"].append(torch.as_tensor((tags == 1).astype(np.int64)))
    dev = data.codes.device
    return QuestionSet(**{k: torch.stack(v).to(dev) for k, v in out.items()})


@torch.no_grad()
def _features(params, data: mx.GroupData, q: QuestionSet, rows: torch.Tensor, chunk: int = 512) -> dict:
    """layer -> (S', N, features) float32 on the CPU, for the models stacked in `params`."""
    N = q.digits.shape[1]
    feats = {k: [] for k in mg.LAYERS}
    for a in range(0, N, chunk):
        sl = slice(a, a + chunk)
        digits = q.digits[rows, sl]
        x = mg.render(data.test_pool[digits], torch.zeros_like(q.cell[rows, sl]), q.cell[rows, sl],
                      data.strips[rows], data.boxes, data.layout)
        hidden = {}
        mg.forward({k: v.detach().float() for k, v in params.items()}, x, hidden)
        for k in mg.LAYERS:
            feats[k].append(hidden[k].float().cpu())
    return {k: torch.cat(v, 1) for k, v in feats.items()}


def _shuffled_labels(q: QuestionSet, seeds: Sequence[int]) -> torch.Tensor:
    """The control's labels: each seed's aliases get a random relabelling (a permutation of the aliases'
    tags, so still balanced), fixed for the whole run."""
    out = []
    for i, seed in enumerate(seeds):
        alias, label = q.alias[i].cpu(), q.label[i].cpu()
        uniq = torch.unique(alias)
        lab_of = torch.zeros(int(alias.max()) + 1, dtype=torch.long)
        lab_of[alias] = label
        perm = torch.from_numpy(np.random.default_rng(mx.seed32(seed, 0x5F)).permutation(len(uniq)))
        new = torch.zeros_like(lab_of)
        new[uniq] = lab_of[uniq[perm]]
        out.append(new[alias])
    return torch.stack(out)


def make_observer(cfg: Config, seeds: Sequence[int], timing: dict):
    """The `observe` hook of ``iml.mnist.experiment.train_group``: probe accuracy per layer, and its shuffled-label
    control, for every model in the stack ({"probe_<layer>[_shuffled]": {"tag": (S',)}}), at the evaluations
    `cfg.at` names (each probe costs 5 logistic fits per model and layer, more than the evaluation itself)."""
    state = {}

    t = cfg.task
    ends = {0, t.stage1_epochs, t.stage1_epochs + t.stage2_epochs}

    def observe(params, data, rows, stage, epoch):
        if cfg.at == "ends" and not (epoch in ends and (epoch > 0 or stage == 1)):
            return {}
        t0 = time.perf_counter()
        if not state:
            state["q"] = q = question_set(cfg, data, seeds)
            state["labels"] = {"": q.label.cpu(), "_shuffled": _shuffled_labels(q, seeds)}
        q = state["q"]
        feats = _features(params, data, q, rows)
        alias = q.alias.cpu()
        out = {}
        for layer, X in feats.items():
            for suffix, labels in state["labels"].items():
                acc = [probe_accuracy(X[m], labels[int(rows[m])], alias[int(rows[m])], cfg.folds, cfg.C)
                       for m in range(rows.shape[0])]
                out[f"probe_{layer}{suffix}"] = {SUBSET: torch.tensor(acc)}
        timing["probe"] = timing.get("probe", 0.0) + time.perf_counter() - t0
        return out

    return observe


def _unit(config: Config, seeds: list[int], device, progress: bool):
    timing: dict = {}
    r = mx.train_group(config.task, seeds, device=device, progress=progress,
                       observe=make_observer(config, seeds, timing))
    return r["table"], {"wall_time_s": r["wall"], "t_probe": timing.get("probe"), "t_stage1": r["t_stage1"],
                        "t_stage2": r["t_stage2"], "seeds": list(seeds), "device": r["device"]}


def run(config: Config, *, root=None, force: bool = False, progress: bool = True,
        shard: tuple[int, int] | None = None) -> Result | None:
    """Train and probe every seed group of the task (resuming finished ones unless `force`); None from a `shard`
    that leaves units to others."""
    config = as_config(Config, config, EXPERIMENT)
    device = resolve_device(config.task.device, "task.device")
    return run_units(EXPERIMENT, config, mx.group_jobs(mx.seed_groups(config.task),
                                                       lambda s: _unit(config, s, device, progress)),
                     root=root, force=force, progress=progress, shard=shard)


def _stage_ends(result: Result) -> dict[str, int]:
    t = result.config["task"]
    return {"epoch 0": 0, "end of Stage 1": int(t["stage1_epochs"]),
            "end of Stage 2": int(t["stage1_epochs"] + t["stage2_epochs"])}


def summary(result: Result) -> pd.DataFrame:
    """One row per layer and moment (epoch 0, end of Stage 1, end of Stage 2): the probe's accuracy (mean over
    stage-1 seeds, stage-2 seeds averaged inside) with its 95% t-interval, and the shuffled-label control."""
    from iml.core.stats import per_seed_means, seed_interval

    t = result.table
    rows = []
    for layer in mg.LAYERS:
        for when, epoch in _stage_ends(result).items():
            row = {"layer": layer, "when": when, "epoch": epoch}
            for suffix, key in (("", "acc"), ("_shuffled", "control")):
                sel = t[(t.metric == f"probe_{layer}{suffix}") & (t.epoch == epoch)]
                if sel.empty:
                    row.update({key: np.nan, f"{key}_lo": np.nan, f"{key}_hi": np.nan})
                    continue
                iv = seed_interval(per_seed_means(sel, "value"))
                row.update({key: iv.mean, f"{key}_lo": iv.ci_low, f"{key}_hi": iv.ci_high})
            row["n_seeds"] = int(t[t.metric == f"probe_{layer}"].seed_stage1.nunique())
            rows.append(row)
    return pd.DataFrame(rows)


def table(s: pd.DataFrame) -> pd.DataFrame:
    """:func:`summary` as the book shows it: one row per layer, a column pair per moment."""
    out = {"layer": list(mg.LAYERS)}
    for when in s["when"].unique():
        part = s[s["when"] == when].set_index("layer").loc[list(mg.LAYERS)]
        out[f"{when}: probe acc"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in
                                     zip(part["acc"], part["acc_lo"], part["acc_hi"])]
        out[f"{when}: shuffled tags"] = [f"{a:.3f}" for a in part["control"]]
    out["seeds"] = list(s.set_index("layer").loc[list(mg.LAYERS)].groupby(level=0, sort=False)["n_seeds"].first())
    out["paper (Pythia-1B, after Stage 1)"] = ["tag-alias-entity order: ≈ 0.5 everywhere; alias-tag-entity: up to ≈ 1.0"
                                               ] * len(mg.LAYERS)
    return pd.DataFrame(out)


def verdict_status(result: Result) -> tuple[str, str]:
    """(status, evidence) for the claims page, claim 6. The MNIST task has no word order, so it cannot test
    the claim's contrast (decodable for one definition order, not the other); the status is *not attempted*
    and the evidence states what the analogue found at the end of Stage 1 (the paper's checkpoint): the best
    layer's probe, called decodable when its 95% CI is above 0.5, above its shuffled-tag control and above
    the same layer's probe at epoch 0, and beside it the IML gap of the same runs."""
    from iml.core.stats import iml_gap

    s = summary(result)
    end1 = s[s["when"] == "end of Stage 1"].set_index("layer")
    start = s[s["when"] == "epoch 0"].set_index("layer")
    best = end1["acc"].idxmax()
    b = end1.loc[best]
    above = bool(b["acc_lo"] > max(0.5, b["control"], start.loc[best, "acc"]))
    text = (f"MNIST grid analogue (no word order, so only the question behind the claim): after Stage 1 the alias's "
            f"tag is {'decodable' if above else 'not decodable'} from question images by a linear probe; best layer "
            f"{best}: {b['acc']:.3f} [{b['acc_lo']:.3f}, {b['acc_hi']:.3f}] (epoch 0: {start.loc[best, 'acc']:.3f}; "
            f"shuffled-tag control {b['control']:.3f}; {int(b['n_seeds'])} seeds)")
    try:
        g = iml_gap(result.table, "d1consis", "d2consis", metric="acc")
        text += (f"; the same runs' IML gap Ḋ₅ − D̄₆ after Stage 2: {g.gap:+.3f} [{g.ci_low:+.3f}, "
                 f"{g.ci_high:+.3f}]")
    except ValueError:
        pass
    return "not attempted", text + "."
