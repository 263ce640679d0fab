"""The MNIST grid experiment: many seeds trained at once through Stage 1 (X1 definitions + QA) and Stage 2 (X2
definitions only), evaluated on the held-out cells; the registry's ``mnist`` entry (``iml run mnist``).

The task itself (config, construction, rendering, ConvNet) is :mod:`iml.mnist.grid`; ``book/mnist_design.md``
explains the choices. The batched run equals S separate runs (tested): parameters carry a seed dimension, Adam is
elementwise and each seed has its own generators.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


from iml.core.env import resolve_device
from iml.core.results import COLUMNS, Result
from iml.core.runner import Job, as_config, run_units
from iml.mnist.grid import (EXPERIMENT, METRICS, N_CELLS, NO_CELL, PRESET_NOTES, PRESETS, SUBSETS, Config, Layout,
                            build_construction, forward, init_params, load_digits, make_config, render)

__all__ = ["EXPERIMENT", "Config", "PRESETS", "make_config", "GroupData", "build_group_data", "Adam",
           "train_stage1", "train_group", "seed_groups", "unit_id", "group_jobs", "run"]


# ----------------------------------------------------------------------------------------------
# Device-side data for a group of seeds
# ----------------------------------------------------------------------------------------------

def _stack_tables(tables: Sequence[dict], device, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Stack per-seed tables (equal lengths) to (S, n(+1), ...); one extra all-masked dummy row at the end."""
    out = {}
    for k in ("alias", "tag", "cell", "labels", "mask", "subset"):
        arrs = []
        for t in tables:
            a = t[k]
            dummy = np.zeros((1,) + a.shape[1:], a.dtype)
            if k == "cell":
                dummy[:] = NO_CELL
            arrs.append(np.concatenate([a, dummy]))
        out[k] = torch.as_tensor(np.stack(arrs), device=device)
    return out


@dataclasses.dataclass
class GroupData:
    layout: Layout
    constructions: list
    codes: torch.Tensor          # (S, n_aliases, 9)
    strips: torch.Tensor         # (S, 4, strip, W)
    boxes: torch.Tensor          # (10, 3p, 3p)
    train_pool: torch.Tensor     # (n, s, s)
    train_off: torch.Tensor
    train_cnt: torch.Tensor
    stage1: dict
    stage2: dict
    tests: dict                  # metric -> stacked table with fixed "digits" (S, n*draws, 9) test-pool indices
    test_pool: torch.Tensor


def draw_images(codes_sel: torch.Tensor, u: torch.Tensor, off: torch.Tensor, cnt: torch.Tensor) -> torch.Tensor:
    """Pool indices of images of the digit classes `codes_sel` from uniforms `u` (same shape)."""
    c = cnt[codes_sel]
    return off[codes_sel] + torch.minimum((u * c).long(), c - 1)


def build_group_data(cfg: Config, seeds: Sequence[int], device: torch.device) -> GroupData:
    layout = Layout(cfg.image_scale)
    train, test = load_digits(cfg.image_scale)
    cons = [build_construction(cfg, s) for s in seeds]
    codes = torch.as_tensor(np.stack([c.codes for c in cons]), device=device)
    strips = torch.as_tensor(np.stack([np.stack([layout.strip_image(p) for p in c.tag_patterns]) for c in cons]),
                             device=device)
    boxes = torch.as_tensor(layout.box_images(), device=device)
    tests = {}
    for m in METRICS:
        tabs = []
        for s, c in zip(seeds, cons):
            t = c.tests[m]
            rep = {k: np.repeat(v, cfg.test_draws, axis=0) for k, v in t.items()}
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(s), 0x7E57, METRICS.index(m)])
                                                  .generate_state(1)[0]))
            u = torch.rand((len(rep["alias"]), N_CELLS), generator=g)
            rep["digits"] = draw_images(torch.as_tensor(c.codes[rep["alias"]]), u, torch.as_tensor(test.offset),
                                  torch.as_tensor(test.count)).numpy()
            tabs.append(rep)
        st = _stack_tables(tabs, device)
        st["digits"] = torch.as_tensor(np.stack([np.concatenate([t["digits"], np.zeros((1, 9), np.int64)])
                                                 for t in tabs]), device=device)
        tests[m] = st
    return GroupData(layout=layout, constructions=cons, codes=codes, strips=strips, boxes=boxes,
                     train_pool=torch.as_tensor(train.images, device=device),
                     train_off=torch.as_tensor(train.offset, device=device),
                     train_cnt=torch.as_tensor(train.count, device=device),
                     stage1=_stack_tables([c.stage1 for c in cons], device),
                     stage2=_stack_tables([c.stage2 for c in cons], device),
                     tests=tests, test_pool=torch.as_tensor(test.images, device=device))


def _gather(table: dict, idx: torch.Tensor) -> dict:
    """Rows `idx` (S, B) of a stacked table (S, n, ...)."""
    out = {}
    for k, v in table.items():
        if v.dim() == 2:
            out[k] = torch.gather(v, 1, idx)
        else:
            out[k] = torch.gather(v, 1, idx[..., None].expand(*idx.shape, v.shape[-1]))
    return out


def masked_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-seed mean CE over supervised cells: (S,)."""
    ce = F.cross_entropy(logits.float().reshape(-1, 2), labels.reshape(-1), reduction="none").reshape(labels.shape)
    m = mask.float()
    return (ce * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def seed32(*parts: int) -> int:
    """A 32-bit generator seed from integer parts (numpy SeedSequence); scratch/set_inclusion has a 63-bit one."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def eval_epochs(n_epochs: int, n_evals: int) -> list[int]:
    if n_epochs == 0:
        return []
    pts = {int(math.ceil(n_epochs * (i + 1) / n_evals)) for i in range(min(n_evals, n_epochs))}
    return sorted(pts | {n_epochs})


@torch.no_grad()
def evaluate(params, data: GroupData, seed_rows: torch.Tensor, chunk: int, autocast: bool) -> torch.Tensor:
    """Accuracy (S', len(METRICS), len(SUBSETS)) on the fixed test sets; `seed_rows` maps each model in
    the stack to its construction row. NaN where a subset has no queries."""
    S = seed_rows.shape[0]
    res = []
    for m in METRICS:
        t = data.tests[m]
        n = t["alias"].shape[1] - 1  # without the dummy row
        chunk_m = min(chunk, max(n, 1))
        num = torch.zeros(S, len(SUBSETS), device=seed_rows.device)
        den = torch.zeros(S, len(SUBSETS), device=seed_rows.device)
        rows = {k: v[seed_rows] for k, v in t.items()}
        for i0 in range(0, n, chunk_m):
            idx = torch.arange(i0, i0 + chunk_m, device=seed_rows.device).clamp_max(n)  # pad: dummy row
            idx = idx.unsqueeze(0).expand(S, chunk_m)
            b = _gather(rows, idx)
            x = render(data.test_pool[b["digits"]], b["tag"], b["cell"], data.strips[seed_rows], data.boxes,
                       data.layout)
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = forward(params, x)
            correct = ((logits.argmax(-1) == b["labels"]) & b["mask"]).sum(-1).float()  # (S, chunk)
            cells = b["mask"].sum(-1).float()
            num.scatter_add_(1, b["subset"], correct)
            den.scatter_add_(1, b["subset"], cells)
        res.append(num / den)  # 0/0 = NaN for absent subsets
    return torch.stack(res, 1)


def _train_stage(params, data: GroupData, table: dict, seed_rows: torch.Tensor, gens: Sequence[torch.Generator],
                 cfg: Config, n_epochs: int, eval_at: set, evaluate, autocast: bool, log) -> tuple[torch.Tensor, float]:
    """Train every model in the stack for `n_epochs` on `table` (rows of seed_rows). Returns per-step losses
    (S', steps) and the training time (s, evaluations excluded)."""
    device = seed_rows.device
    S = seed_rows.shape[0]
    table = {k: v[seed_rows] for k, v in table.items()}
    n = table["alias"].shape[1] - 1
    # a batch larger than the data is full-batch training: one batch of all n rows, not n rows padded to B
    B = min(cfg.batch_size, n) if n else cfg.batch_size
    steps = max(1, math.ceil(n / B)) if n else 0
    total = steps * n_epochs
    losses = torch.zeros(S, total, device=device)
    if total == 0:
        for e in sorted(eval_at):
            evaluate(e)
        return losses, 0.0
    opt = Adam(list(params.values()))
    codes = data.codes[seed_rows]
    strips = data.strips[seed_rows]
    pad = torch.full((S, steps * B - n), n, dtype=torch.long, device=device)
    t_train = 0.0
    step = 0
    for epoch in range(1, n_epochs + 1):
        sync(device)
        t0 = time.perf_counter()
        perm = torch.stack([torch.randperm(n, generator=g, device=device) for g in gens])
        perm = torch.cat([perm, pad], 1)
        u = torch.stack([torch.rand((steps * B, N_CELLS), generator=g, device=device) for g in gens])
        for i in range(steps):
            lr = cfg.lr * (1 - step / total) if cfg.lr_schedule == "linear" else cfg.lr
            sl = slice(i * B, (i + 1) * B)
            b = _gather(table, perm[:, sl])
            cls = torch.gather(codes, 1, b["alias"][..., None].expand(S, B, N_CELLS))
            img_idx = draw_images(cls, u[:, sl], data.train_off, data.train_cnt)
            x = render(data.train_pool[img_idx], b["tag"], b["cell"], strips, data.boxes, data.layout)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = forward(params, x)
            loss_s = masked_ce(logits, b["labels"], b["mask"])
            opt.zero_grad()
            loss_s.sum().backward()
            opt.step(lr)
            losses[:, step] = loss_s.detach()
            step += 1
        sync(device)
        t_train += time.perf_counter() - t0
        if epoch in eval_at:
            evaluate(epoch)
            log(epoch)
    return losses, t_train


class Adam:
    """Plain Adam (Kingma & Ba; no weight decay), elementwise, so stacked seeds stay independent.

    Written out (instead of torch.optim.Adam) because constructing a torch.optim optimizer imports
    torch._dynamo, which costs ~5 s per process on a small CPU box; the update is the same."""

    def __init__(self, params: Sequence[torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        grads = [p.grad for p in self.params]
        torch._foreach_mul_(self.m, self.b1)
        torch._foreach_add_(self.m, grads, alpha=1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1 - self.b2)
        bc1 = 1 - self.b1 ** self.t
        bc2 = 1 - self.b2 ** self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, math.sqrt(bc2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-lr / bc1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_stage1(params, data: GroupData, cfg: Config, seeds: Sequence[int], evaluate, autocast: bool,
                 log=lambda epoch: None) -> tuple[torch.Tensor, float]:
    """Stage 1 of every seed in `seeds` (models stacked in `params`, trained in place): the seeds' own data-order
    generators, ``evaluate(epoch)`` at the evaluation epochs. Shared by :func:`train_group` and the gradient-
    alignment study, so both see the same random streams by construction."""
    device = data.codes.device
    rows1 = torch.arange(len(seeds), device=device)
    gens1 = [torch.Generator(device=device).manual_seed(seed32(s, 1, 0)) for s in seeds]
    E1 = cfg.stage1_epochs
    return _train_stage(params, data, data.stage1, rows1, gens1, cfg, E1, set(eval_epochs(E1, cfg.evals_per_stage)),
                        evaluate, autocast, log)


def train_group(cfg: Config, seeds: Sequence[int], device: torch.device | str | None = None,
                progress: bool = False, observe=None) -> dict:
    """Train stage 1 for the stage-1 `seeds` (batched), then stage 2 for every (seed, stage-2 seed).

    `observe(params, data, rows, stage, epoch)`, if given, runs after every evaluation (models stacked like
    `params`; `rows` maps each to its seed's construction; `epoch` counts across stages) and returns
    {metric: {subset: (S',) tensor}}: extra rows of the table (e.g. ``iml.mnist.probes``). It must not touch the training's random generators. Its time counts as
    evaluation. Returns dict(table=tidy DataFrame, losses1 (S, steps1), losses2 (S*S2, steps2), timing...)."""
    device = resolve_device(cfg.device if device is None else str(device), "device")
    autocast = device.type == "cuda"
    if autocast:
        torch.backends.cudnn.benchmark = True  # fixed shapes: autotune each conv once
    t_start = time.perf_counter()
    data = build_group_data(cfg, seeds, device)
    S, S2 = len(seeds), cfg.n_seeds_stage2
    params = init_params(cfg, seeds, device)
    chunk = max(cfg.batch_size, 256)
    records: list[tuple[int, int, torch.Tensor, dict]] = []  # (stage, global epoch, acc (S', M, K), observed)
    t_eval = [0.0, 0]

    def make_eval(stage: int, offset: int, rows: torch.Tensor):
        def ev(epoch: int):
            sync(device)
            t0 = time.perf_counter()
            acc = evaluate(params, data, rows, chunk, autocast)
            seen = observe(params, data, rows, stage, offset + epoch) if observe else {}
            records.append((stage, offset + epoch, acc, seen))
            sync(device)
            t_eval[0] += time.perf_counter() - t0
            t_eval[1] += 1
        return ev

    def make_log(stage: int, offset: int, n_ep: int):
        def log(epoch: int):
            if progress:
                acc = records[-1][2].float().nanmean(0).cpu().numpy()
                parts = [f"{s}={acc[0, k]:.3f}" for k, s in enumerate(SUBSETS) if not np.isnan(acc[0, k])]
                print(f"[mnist seeds {seeds[0]}-{seeds[-1]}] stage {stage} epoch {epoch}/{n_ep} acc: "
                      + " ".join(parts), file=sys.stderr, flush=True)
        return log

    rows1 = torch.arange(S, device=device)
    make_eval(1, 0, rows1)(0)
    E1, E2 = cfg.stage1_epochs, cfg.stage2_epochs
    losses1, t1 = train_stage1(params, data, cfg, seeds, make_eval(1, 0, rows1), autocast, make_log(1, 0, E1))
    # Stage 2: replicate each stage-1 model S2 times (seed-major), fresh optimizer and schedule.
    with torch.no_grad():
        rep = {k: v.detach().repeat_interleave(S2, 0).clone().requires_grad_(True) for k, v in params.items()}
    params.clear()
    params.update(rep)
    rows2 = torch.arange(S, device=device).repeat_interleave(S2)
    gens2 = [torch.Generator(device=device).manual_seed(seed32(s, 2, j)) for s in seeds for j in range(S2)]
    losses2, t2 = _train_stage(params, data, data.stage2, rows2, gens2, cfg, E2,
                               set(eval_epochs(E2, cfg.evals_per_stage)), make_eval(2, E1, rows2), autocast,
                               make_log(2, E1, E2))
    # Tidy table: stage-1 rows are repeated for every stage-2 seed so each run has a full curve.
    out = []
    for stage, epoch, acc, observed in records:
        a = acc.float().cpu().numpy()
        extra = {(m, sub): v.float().cpu().numpy() for m, by_sub in observed.items() for sub, v in by_sub.items()}
        for r in range(S * S2):
            i, j = divmod(r, S2)
            src = i if stage == 1 else r
            for mi, m in enumerate(METRICS):
                for k, sub in enumerate(SUBSETS):
                    v = a[src, mi, k]
                    if not np.isnan(v):
                        out.append((f"s{seeds[i]}_{j}", seeds[i], j, stage, epoch, sub, m, float(v)))
            for (m, sub), v in extra.items():
                out.append((f"s{seeds[i]}_{j}", seeds[i], j, stage, epoch, sub, m, float(v[src])))
    table = pd.DataFrame(out, columns=COLUMNS)
    n1 = data.stage1["alias"].shape[1] - 1
    n2 = data.stage2["alias"].shape[1] - 1
    return dict(table=table, losses1=losses1.cpu(), losses2=losses2.cpu(), t_stage1=t1, t_stage2=t2,
                t_eval=t_eval[0], n_evals=t_eval[1], wall=time.perf_counter() - t_start,
                stage1_examples=n1, stage2_examples=n2, device=str(device),
                stage1_seed_epochs_per_s=(S * E1 / t1) if t1 else None,
                stage2_seed_epochs_per_s=(S * S2 * E2 / t2) if t2 else None)


# ----------------------------------------------------------------------------------------------
# Registry entry point
# ----------------------------------------------------------------------------------------------

def seed_groups(cfg: Config) -> list[list[int]]:
    seeds = list(range(cfg.start_seed, cfg.start_seed + cfg.n_seeds))
    return [seeds[i:i + cfg.group_size] for i in range(0, len(seeds), cfg.group_size)]


def _unit(config: Config, seeds: list[int], progress: bool):
    r = train_group(config, seeds, progress=progress)
    extra = {k: r[k] for k in ("t_stage1", "t_stage2", "t_eval", "n_evals", "stage1_examples",
                               "stage2_examples", "device", "stage1_seed_epochs_per_s",
                               "stage2_seed_epochs_per_s")}
    extra.update(wall_time_s=r["wall"], seeds=list(seeds), seed_epochs_per_s=r["stage1_seed_epochs_per_s"],
                 final_loss_stage1=r["losses1"][:, -1].tolist() if r["losses1"].numel() else None,
                 final_loss_stage2=r["losses2"][:, -1].tolist() if r["losses2"].numel() else None)
    return r["table"], extra


def unit_id(seeds: Sequence[int]) -> str:
    """A seed group's unit id, ``seeds<first>-<last>`` (the format committed results use)."""
    return f"seeds{seeds[0]}-{seeds[-1]}"


def group_jobs(seed_lists: Sequence[list[int]], compute) -> list[Job]:
    """One :class:`~iml.core.runner.Job` per seed group; ``compute(seeds)`` returns (table, extra)."""
    return [Job((unit_id(seeds),), lambda todo, seeds=seeds: [(unit_id(seeds), *compute(seeds))])
            for seeds in seed_lists]


def run(config: Config, *, root=None, force: bool = False, progress: bool = True,
        shard: tuple[int, int] | None = None) -> Result | None:
    """Train every seed group (resuming finished ones unless `force`) and return the finished result (None from a
    `shard` that leaves units to others, :func:`iml.core.runner.run_units`)."""
    config = as_config(Config, config, EXPERIMENT)

    def meta(store, units):
        rates = [x for x in (store.unit_extra(u).get("seed_epochs_per_s") for u in units) if x]
        return {"seed_epochs_per_s": float(np.mean(rates)) if rates else None}

    return run_units(EXPERIMENT, config, group_jobs(seed_groups(config), lambda s: _unit(config, s, progress)),
                     root=root, force=force, progress=progress, meta=meta, shard=shard)
