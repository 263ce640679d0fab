"""The from-scratch set-inclusion experiment (paper §3.6): QA ``<alias> % n1 ... nk = true|false`` and definitions
``define1 <alias> % x`` for a small GPT trained from scratch. Token ids: ``PAD % = true false define1 define2 define3``,
the numbers, then the aliases (last: never predicted). Seeds for stage-1 seed s, stage-2 seed j (any group size, device):
data ``SeedSequence([s, 101])``, init ``[s, 102]``, Stage-1 order ``[s, 103]``, Stage-2 order ``[s, 104, j]``.
Design choices: book/design_notes.md (section `iml.scratch.set_inclusion`).
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

from iml.core.env import resolve_device
from iml.core.config import ConfigError, build, check_choice, check_fraction, check_positive
from iml.core.results import COLUMNS, Result
from iml.core.runner import Job, as_config, run_units

__all__ = ["EXPERIMENT", "Config", "PRESETS", "make_config", "run", "Vocab", "SetInclusionData",
           "make_data", "model_shape", "SUBSETS", "train_seed_group"]

EXPERIMENT = "setinclusion"
SUBSETS = ("qd1consis", "qd2incons", "d1consis", "d2consis", "d3consis")
STAGE1_SUBSETS = ("qd1consis", "qd2incons")
STAGE2_SUBSETS = ("d1consis", "d2consis", "d3consis")
TAG_OF = {"qd1consis": "define1", "qd2incons": "define2", "d1consis": "define1", "d2consis": "define2",
          "d3consis": "define3"}
N_Q = 12  # training questions per alias (6 true + 6 false); the same number are held out
SPECIALS = ("<pad>", "%", "=", "true", "false", "define1", "define2", "define3")


@dataclasses.dataclass
class Config:
    """Set-inclusion experiment config; defaults are the paper's scale (see module docstring)."""

    # data
    n_aliases: int = 8000
    n_numbers: int = 100
    n_per_question: int = 8
    frac_qd1consis: float = 0.4
    frac_qd2incons: float = 0.4
    frac_d1consis: float = 0.1
    frac_d2consis: float = 0.1
    frac_d3consis: float = 0.0
    n_train_true: int = 6  # training questions per X1 alias that contain x (of the 6 drawn), and that do not
    n_train_false: int = 6  # (fewer true questions leave x ambiguous from QA alone, so a definition matters)
    # model (Pythia-70M shape)
    d_model: int = 512
    n_layers: int = 6
    n_heads: int = 8
    d_mlp: int = 2048
    # optimisation
    stage1_epochs: int = 100
    stage2_epochs: int = 40
    batch_size: int = 512
    lr: float = 5e-4
    stage2_lr: float | None = None  # None: same as lr
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    weight_decay: float = 0.1
    warmup_frac: float = 0.02
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    loss_on: str = "answer"  # "answer" | "all"
    # evaluation
    eval_every: int = 5
    eval_train_qa_max: int = 2048  # training QA docs per seed scored for the train_qa rows
    # seeds and hardware
    n_seeds: int = 20
    n_stage2_seeds: int = 1
    start_seed: int = 0
    seeds_per_unit: int = 0  # seeds trained together as one batched model (one result unit); 0 = all
    device: str = "auto"
    dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp32"
    compile: bool = False
    code_version: int = 1
    """Part of the config hash: bump it when a code change alters results, so stored results go stale."""

    def __post_init__(self):
        check_positive("n_aliases", self.n_aliases)
        check_positive("n_numbers", self.n_numbers)
        check_positive("n_per_question", self.n_per_question)
        k, n = self.n_per_question, self.n_numbers
        if k < 2:
            raise ConfigError("n_per_question", f"must be >= 2, got {k}")
        if n - 1 < k:
            raise ConfigError("n_per_question", f"must be < n_numbers ({n}) so false questions exist, got {k}")
        # 6 true + 6 false train + the same held out, all distinct: need >= 12 distinct sets of each kind
        if math.comb(n - 1, k - 1) < 2 * N_Q // 2 or math.comb(n - 1, k) < 2 * N_Q // 2:
            raise ConfigError("n_per_question", f"too few distinct questions with n_numbers={n}, k={k}")
        for f in ("n_train_true", "n_train_false"):
            check_positive(f, getattr(self, f), allow_zero=True)
            if getattr(self, f) > N_Q // 2:
                raise ConfigError(f, f"must be <= {N_Q // 2} (the questions drawn per alias), got {getattr(self, f)}")
        if self.n_train_true + self.n_train_false == 0:
            raise ConfigError("n_train_true", "n_train_true + n_train_false must be >= 1 (no training QA)")
        fr = {}
        for s in SUBSETS:
            fr[s] = check_fraction(f"frac_{s}", getattr(self, f"frac_{s}"))
        if sum(fr.values()) > 1 + 1e-9:
            raise ConfigError("frac_qd1consis", f"subset fractions sum to {sum(fr.values()):.3f} > 1")
        for s in ("qd1consis", "qd2incons", "d1consis", "d2consis"):
            if round(fr[s] * self.n_aliases) < 1:
                raise ConfigError(f"frac_{s}", f"gives no aliases with n_aliases={self.n_aliases}")
        for f in ("d_model", "n_layers", "n_heads", "d_mlp", "batch_size", "eval_every", "n_seeds",
                  "n_stage2_seeds", "eval_train_qa_max"):
            check_positive(f, getattr(self, f))
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"must divide d_model ({self.d_model}), got {self.n_heads}")
        check_positive("stage1_epochs", self.stage1_epochs, allow_zero=True)
        check_positive("stage2_epochs", self.stage2_epochs, allow_zero=True)
        check_positive("start_seed", self.start_seed, allow_zero=True)
        check_positive("seeds_per_unit", self.seeds_per_unit, allow_zero=True)
        check_positive("lr", self.lr, integer=False)
        if self.stage2_lr is not None:
            check_positive("stage2_lr", self.stage2_lr, integer=False)
        for f in ("adam_beta1", "adam_beta2", "warmup_frac", "min_lr_ratio"):
            v = check_fraction(f, getattr(self, f))
            if f.startswith("adam") and v >= 1:
                raise ConfigError(f, f"must be < 1, got {v}")
        check_positive("weight_decay", self.weight_decay, allow_zero=True, integer=False)
        check_positive("grad_clip", self.grad_clip, allow_zero=True, integer=False)
        check_choice("loss_on", self.loss_on, {"answer", "all"})
        check_choice("dtype", self.dtype, {"auto", "bf16", "fp32"})
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or self.device.startswith("cuda:")):
            raise ConfigError("device", f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not isinstance(self.compile, bool):
            raise ConfigError("compile", f"must be true or false, got {self.compile!r}")

    # derived
    @property
    def seq_len(self) -> int:
        return self.n_per_question + 4

    def subset_counts(self) -> dict[str, int]:
        return {s: int(round(getattr(self, f"frac_{s}") * self.n_aliases)) for s in SUBSETS}

    @property
    def seeds(self) -> list[int]:
        return list(range(self.start_seed, self.start_seed + self.n_seeds))

    def units(self) -> list[list[int]]:
        g = self.seeds_per_unit or self.n_seeds
        s = self.seeds
        return [s[i:i + g] for i in range(0, len(s), g)]


PRESETS: dict[str, dict[str, Any]] = {
    # CI: seconds on one CPU thread. Tiny everything; only checks the plumbing.
    "smoke": dict(n_aliases=60, n_numbers=12, n_per_question=3, d_model=32, n_layers=1, n_heads=2, d_mlp=64,
                  stage1_epochs=2, stage2_epochs=2, batch_size=32, lr=2e-3, eval_every=1, eval_train_qa_max=64,
                  n_seeds=2, device="cpu"),
    # <= 15 min on a shared 2-core CPU (one thread), 5 seeds batched. The paper's task (0..99, 8 numbers
    # per question) never left chance on CPU in minutes (feasibility.md §3.5); numbers 0..19 with 4 per
    # question, 1000 aliases, bs 32, lr 2e-3, answer-only loss, d 64 / 2 layers did learn Stage 1
    # (held-out qd1consis ~0.8, feasibility.md §3.1). Stage 2 here is the paper's (definitions only,
    # all weights), which on CPU gave gap ~0 in the feasibility study: expect no clear IML at this scale.
    # Measured (2026-11-26, 1 thread, shared 2-core box at load 1.7-3.5): 626 s wall; Stage 1 held-out
    # qd1consis 0.657 vs qd2incons 0.612 (+0.044, 95% CI [+0.029, +0.063]), train QA 0.947; after
    # Stage 2 d1consis 0.512 vs d2consis 0.503: gap +0.009 [-0.001, +0.016], 5 seeds (not a clear
    # IML effect). With 30 stage-1 epochs Stage 1 learned less (qd1 0.63) and the gap was -0.009.
    # 20 seeds since 2026-12-01: the 5-seed hint (+0.009) vanished with 20 other seeds (-0.002 [-0.008, +0.004]).
    "cpu": dict(n_aliases=1000, n_numbers=20, n_per_question=4, d_model=64, n_layers=2, n_heads=4, d_mlp=256,
                stage1_epochs=40, stage2_epochs=30, batch_size=32, lr=2e-3, eval_every=10,
                eval_train_qa_max=1024, n_seeds=20, seeds_per_unit=5, device="cpu"),
    # The paper's scale (8000 aliases, 0..99, 8 numbers, Pythia-70M shape, 100 + 40 epochs, bs 512),
    # 10 stage-1 seeds trained as one batched model, torch.compile on (measured on an H200, torch 2.11:
    # 5.5 s per stage-1 epoch for all 10 seeds compiled, vs 8.5 s uncompiled with SDPA attention; about
    # 60 s one-time compilation; estimated ~10 min for the whole preset). Choose the loss with an
    # override: make_config("gpu", {"loss_on": "all"}) (default "answer"); run both.
    "gpu": dict(n_seeds=10, eval_every=10, device="auto", compile=True),
    # the paper's seed counts (20 stage-1 x 3 stage-2 seeds)
    "paper": dict(n_seeds=20, n_stage2_seeds=3, eval_every=5, seeds_per_unit=10, device="auto", compile=True),
}

PRESET_NOTES = {
    "smoke": "seconds on CPU: 60 aliases, a 1-layer d32 transformer, 2+2 epochs, 2 seeds; checks the plumbing",
    "cpu": "~15 min a unit on one CPU thread: 1000 aliases, numbers 0..19, d64 x 2 layers, 40+30 epochs, 20 seeds "
           "in units of 5; Stage 1 learns, the IML gap is null at this scale (Set inclusion page)",
    "gpu": "one GPU: the paper's task (8000 aliases, numbers 0..99, Pythia-70M shape), 100+40 epochs, 10 seeds, "
           "compiled; not run yet",
    "paper": "the gpu preset at the paper's seed counts: 20 stage-1 x 3 stage-2 seeds",
}
"""One line per preset for ``iml list``."""


def make_config(preset: str | None = "cpu", overrides: Mapping[str, Any] | None = None,
                config_file: str | Path | None = None) -> Config:
    """The preset's config, a YAML `config_file`'s mapping, then key=value overrides."""
    return build(Config, PRESETS, preset, overrides, config_file)


# ----------------------------------------------------------------------------------------------
# Vocabulary and data
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Vocab:
    n_numbers: int
    n_aliases: int

    PAD, PCT, EQ, TRUE, FALSE, DEF1, DEF2, DEF3 = range(8)

    @property
    def num0(self) -> int:
        return len(SPECIALS)

    @property
    def alias0(self) -> int:
        return self.num0 + self.n_numbers

    @property
    def size(self) -> int:
        return self.alias0 + self.n_aliases

    @property
    def n_out(self) -> int:  # ids the model predicts: everything but the aliases
        return self.alias0

    def tag(self, name: str) -> int:
        return {"define1": self.DEF1, "define2": self.DEF2, "define3": self.DEF3}[name]

    def words(self) -> list[str]:
        return list(SPECIALS) + [str(i) for i in range(self.n_numbers)] + [f"a{i}" for i in range(self.n_aliases)]

    def decode(self, ids) -> str:
        w = self.words()
        return " ".join(w[int(i)] for i in ids if int(i) != self.PAD)


@dataclasses.dataclass
class SetInclusionData:
    """All documents of one stage-1 seed, as numpy arrays (token ids)."""

    seed: int
    vocab: Vocab
    subset: np.ndarray  # (A,) index into SUBSETS, -1 = unused alias
    x: np.ndarray  # (A,) the hidden number
    y: np.ndarray  # (A,) the fixed wrong number (!= x) used by qd2incons definitions
    questions: np.ndarray  # (A, 24, k) numbers; [:, :12] train, [:, 12:] held out
    labels: np.ndarray  # (A, 24) bool
    stage1_docs: np.ndarray  # (N1, T)
    stage2_docs: np.ndarray  # (N2, T)
    train_qa_docs: np.ndarray  # (Nq, T): the QA part of stage1_docs
    test_docs: np.ndarray  # (Ne, T)
    test_subset: np.ndarray  # (Ne,) index into SUBSETS
    test_labels: np.ndarray  # (Ne,) bool
    definitions: dict  # subset -> (n, T) definition docs

    @property
    def seq_len(self) -> int:
        return self.stage1_docs.shape[1]


def _sample_questions(rng: np.random.Generator, x: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, 24, k) questions and (A, 24) labels; per alias 6 true + 6 false train, then 6 + 6 held out.

    True questions contain x plus k-1 other numbers, false ones k numbers != x; the numbers of a
    question are distinct and shuffled, and no two questions of an alias are the same set.
    """
    A = len(x)
    n_q = 2 * N_Q
    truth = np.zeros(n_q, dtype=bool)
    truth[0:6] = True
    truth[12:18] = True
    labels = np.broadcast_to(truth, (A, n_q)).copy()
    q = np.empty((A, n_q, k), dtype=np.int64)
    todo = np.ones((A, n_q), dtype=bool)
    for _ in range(1000):
        ai, qi = np.nonzero(todo)
        if len(ai) == 0:
            break
        keys = rng.random((len(ai), n), dtype=np.float32)
        xs = x[ai]
        keys[np.arange(len(ai)), xs] = np.where(truth[qi], -1.0, 2.0)  # force x in (true) / out (false)
        # the k smallest keys (x forced in or out); sorted, so the result does not depend on how
        # argpartition orders its output
        picks = np.sort(np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)
        shuf = np.argsort(rng.random((len(ai), k)), axis=1, kind="stable")
        q[ai, qi] = np.take_along_axis(picks, shuf, axis=1)
        # duplicates (as sets) within an alias: redraw the later copies
        srt = np.sort(q, axis=2)
        key = srt @ (n ** np.arange(k, dtype=np.int64))  # exact for n**k < 2**62
        todo[:] = False
        order = np.argsort(key, axis=1, kind="stable")
        ks = np.take_along_axis(key, order, 1)
        dup = np.zeros_like(todo)
        dup_sorted = np.concatenate([np.zeros((A, 1), bool), ks[:, 1:] == ks[:, :-1]], 1)
        np.put_along_axis(dup, order, dup_sorted, 1)
        todo = dup
    else:  # pragma: no cover
        raise RuntimeError("could not draw distinct questions")
    return q, labels


def make_data(config: Config, seed: int) -> SetInclusionData:
    """The documents of stage-1 seed `seed` (deterministic in (config data fields, seed))."""
    c = config
    A, n, k = c.n_aliases, c.n_numbers, c.n_per_question
    if n ** k >= 2 ** 62:
        raise ConfigError("n_per_question", "n_numbers ** n_per_question too large")
    v = Vocab(n, A)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 101]))
    counts = c.subset_counts()
    perm = rng.permutation(A)
    subset = np.full(A, -1, dtype=np.int64)
    start = 0
    for i, s in enumerate(SUBSETS):
        subset[perm[start:start + counts[s]]] = i
        start += counts[s]
    x = rng.integers(0, n, size=A)
    y = (x + rng.integers(1, n, size=A)) % n
    questions, labels = _sample_questions(rng, x, n, k)
    T = k + 4
    alias_tok = v.alias0 + np.arange(A)

    def qa_docs(aliases: np.ndarray, cols) -> tuple[np.ndarray, np.ndarray]:
        qs = questions[aliases][:, cols]  # (a, m, k)
        lb = labels[aliases][:, cols]
        a, m = qs.shape[:2]
        d = np.empty((a, m, T), dtype=np.int64)
        d[:, :, 0] = alias_tok[aliases][:, None]
        d[:, :, 1] = v.PCT
        d[:, :, 2:2 + k] = v.num0 + qs
        d[:, :, 2 + k] = v.EQ
        d[:, :, 3 + k] = np.where(lb, v.TRUE, v.FALSE)
        return d.reshape(a * m, T), lb.reshape(a * m)

    def def_docs(aliases: np.ndarray, tag: str, numbers: np.ndarray) -> np.ndarray:
        d = np.full((len(aliases), T), v.PAD, dtype=np.int64)
        d[:, 0] = v.tag(tag)
        d[:, 1] = alias_tok[aliases]
        d[:, 2] = v.PCT
        d[:, 3] = v.num0 + numbers
        return d

    members = {s: np.sort(np.nonzero(subset == i)[0]) for i, s in enumerate(SUBSETS)}
    defs = {}
    for s in SUBSETS:
        al = members[s]
        defs[s] = def_docs(al, TAG_OF[s], y[al] if s == "qd2incons" else x[al])
    x1 = np.concatenate([members[s] for s in STAGE1_SUBSETS])
    # the first n_train_true of the 6 true and n_train_false of the 6 false training questions (all are drawn,
    # so the other questions and the held-out ones do not depend on how many are used)
    train_cols = list(range(c.n_train_true)) + list(range(N_Q // 2, N_Q // 2 + c.n_train_false))
    train_qa, _ = qa_docs(x1, train_cols)
    stage1 = np.concatenate([train_qa] + [defs[s] for s in STAGE1_SUBSETS])
    stage2 = np.concatenate([defs[s] for s in STAGE2_SUBSETS])
    test_parts, test_sub, test_lab = [], [], []
    for i, s in enumerate(SUBSETS):
        if len(members[s]) == 0:
            continue
        d, lb = qa_docs(members[s], slice(N_Q, 2 * N_Q))
        test_parts.append(d)
        test_lab.append(lb)
        test_sub.append(np.full(len(d), i))
    return SetInclusionData(seed=int(seed), vocab=v, subset=subset, x=x, y=y, questions=questions, labels=labels,
                            stage1_docs=stage1, stage2_docs=stage2, train_qa_docs=train_qa,
                            test_docs=np.concatenate(test_parts), test_subset=np.concatenate(test_sub),
                            test_labels=np.concatenate(test_lab), definitions=defs)


def loss_weights(docs: np.ndarray, vocab: Vocab, loss_on: str) -> np.ndarray:
    """(N, T) docs -> (N, T-1) float32 weights of the targets docs[:, 1:]."""
    N, T = docs.shape
    is_def = np.isin(docs[:, 0], [vocab.DEF1, vocab.DEF2, vocab.DEF3])
    w = np.zeros((N, T - 1), dtype=np.float32)
    if loss_on == "answer":
        w[~is_def, T - 2] = 1.0  # the true/false token
        w[is_def, 2] = 1.0  # the number of a definition
    else:
        tgt = docs[:, 1:]
        w[:] = (tgt != vocab.PAD) & (tgt < vocab.alias0)
    return w


# ----------------------------------------------------------------------------------------------
# Training one group of seeds
# ----------------------------------------------------------------------------------------------

def model_shape(config: Config) -> "ms.ModelShape":  # noqa: F821
    """The transformer a config trains (one lane of the batched model)."""
    from iml.scratch import multiseed as ms  # lazily, as in train_seed_group: it imports torch

    v = Vocab(config.n_numbers, config.n_aliases)
    return ms.ModelShape(vocab_size=v.size, n_out=v.n_out, max_len=config.seq_len, d_model=config.d_model,
                         n_layers=config.n_layers, n_heads=config.n_heads, d_mlp=config.d_mlp)


def _seed63(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] % (2 ** 63))


def _stack(arrs, device):
    import torch

    return torch.from_numpy(np.stack(arrs)).to(device)


def _amp(config: Config, device) -> bool:
    if config.dtype == "fp32":
        return False
    if config.dtype == "bf16" and device.type != "cuda":
        raise ConfigError("dtype", "bf16 needs a CUDA device here")
    return device.type == "cuda"


def train_seed_group(config: Config, seeds: list[int], *, progress: bool = True, log=None) -> tuple[pd.DataFrame, dict]:
    """Train the stage-1 seeds `seeds` together (Stage 1, then Stage 2 per stage-2 seed).

    Returns the tidy result table of these runs and an extra dict (timings, seed-epochs/s).
    """
    import torch  # lazily: the data side of this module needs only numpy

    from iml.scratch import multiseed as ms

    c = config
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    device = resolve_device(c.device, "device")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "CUDA was asked for but is not available")
    amp = _amp(c, device)
    t_start = time.perf_counter()
    datas = [make_data(c, s) for s in seeds]
    t_data = time.perf_counter() - t_start
    v = datas[0].vocab
    T = c.seq_len
    shape = model_shape(c)
    optim = ms.OptimConfig(lr=c.lr, betas=(c.adam_beta1, c.adam_beta2), weight_decay=c.weight_decay,
                           warmup_frac=c.warmup_frac, min_lr_ratio=c.min_lr_ratio, grad_clip=c.grad_clip)
    model = ms.BatchedGPT(shape, [_seed63(s, 102) for s in seeds], device=device)
    trainer = ms.LaneTrainer(model, optim, device=device, amp=amp, compile=c.compile)
    n2 = c.n_stage2_seeds

    # evaluation tensors, stage-1 lanes; repeated for stage-2 lanes later
    test_docs = _stack([d.test_docs for d in datas], device)
    test_sub = _stack([d.test_subset for d in datas], device)
    test_lab = _stack([d.test_labels for d in datas], device)
    m = min(c.eval_train_qa_max, len(datas[0].train_qa_docs))
    tq = []
    for d in datas:
        pick = np.random.default_rng(np.random.SeedSequence([d.seed, 105])).permutation(len(d.train_qa_docs))[:m]
        tq.append(d.train_qa_docs[np.sort(pick)])
    tq_docs = _stack(tq, device)
    tq_lab = tq_docs[:, :, -1] == v.TRUE
    cand = torch.tensor([v.TRUE, v.FALSE], device=device)
    present = [i for i, s in enumerate(SUBSETS) if c.subset_counts()[s] > 0]
    rows: list[tuple] = []

    eval_time = {1: 0.0, 2: 0.0}
    eval_count = {1: 0, 2: 0}

    def evaluate(stage: int, epoch: int, lanes_s1: list[int], lanes_s2: list[int], train_loss=None):
        """Append rows for every lane: lane i is (stage-1 seed lanes_s1[i], stage-2 seed lanes_s2[i])."""
        te = time.perf_counter()
        L = model.n_lanes
        rep = L // len(seeds)
        td, ts, tl = (t.repeat_interleave(rep, 0) for t in (test_docs, test_sub, test_lab))
        pos = torch.full(td.shape[:2], T - 2, device=device)
        sc = trainer.answer_scores(td, pos, cand)
        correct = ((sc[..., 0] > sc[..., 1]) == tl).float()
        acc = torch.zeros(L, len(SUBSETS), device=device).scatter_add_(1, ts, correct)
        cnt = torch.zeros(L, len(SUBSETS), device=device).scatter_add_(1, ts, torch.ones_like(correct))
        acc = (acc / cnt.clamp(min=1)).cpu().numpy()
        qd, ql = tq_docs.repeat_interleave(rep, 0), tq_lab.repeat_interleave(rep, 0)
        qpos = torch.full(qd.shape[:2], T - 2, device=device)
        full = trainer.answer_scores(qd, qpos, torch.arange(v.n_out, device=device))
        tgt = qd[:, :, -1]
        ce = torch.nn.functional.cross_entropy(full.reshape(-1, v.n_out), tgt.reshape(-1), reduction="none")
        tq_loss = ce.view(L, -1).mean(1).cpu().numpy()
        tq_acc = ((full[..., v.TRUE] > full[..., v.FALSE]) == ql).float().mean(1).cpu().numpy()
        tl_np = train_loss.cpu().numpy() if train_loss is not None else None
        for i in range(L):
            s1, s2 = lanes_s1[i], lanes_s2[i]
            s2_list = range(n2) if stage == 1 else [s2]  # stage-1 history is shared by its stage-2 runs
            for j in s2_list:
                rid = f"{s1}-{j}"
                for si in present:
                    rows.append((rid, s1, j, stage, epoch, SUBSETS[si], "acc", float(acc[i, si])))
                rows.append((rid, s1, j, stage, epoch, "train_qa", "acc", float(tq_acc[i])))
                rows.append((rid, s1, j, stage, epoch, "train_qa", "loss", float(tq_loss[i])))
                if tl_np is not None:
                    rows.append((rid, s1, j, stage, epoch, "train", "loss", float(tl_np[i])))
        eval_time[stage] += time.perf_counter() - te
        eval_count[stage] += 1
        if progress:
            means = {SUBSETS[si]: float(acc[:, si].mean()) for si in present}
            msg = " ".join(f"{k}={val:.3f}" for k, val in means.items())
            log(f"[setinclusion seeds {seeds[0]}..{seeds[-1]}] stage {stage} epoch {epoch}: {msg} "
                f"train_qa={float(tq_acc.mean()):.3f} ({time.perf_counter() - t_start:.0f}s)")

    # ---- Stage 1
    s1_lanes = list(seeds)
    s2_zero = [0] * len(seeds)
    evaluate(1, 0, s1_lanes, s2_zero)
    eval0_s = eval_time[1]
    docs1 = _stack([d.stage1_docs for d in datas], device)
    w1 = _stack([loss_weights(d.stage1_docs, v, c.loss_on) for d in datas], device)
    rngs1 = [np.random.default_rng(np.random.SeedSequence([s, 103])) for s in seeds]

    def ep_end_1(ep, loss):
        if ep % c.eval_every == 0 or ep == c.stage1_epochs:
            evaluate(1, ep, s1_lanes, s2_zero, loss)

    t1 = time.perf_counter()
    info1 = trainer.train(docs1, w1, epochs=c.stage1_epochs, batch_size=c.batch_size, lr=c.lr,
                          order_rngs=rngs1, on_epoch_end=ep_end_1) if c.stage1_epochs else {"wall_s": 0.0}
    t1 = time.perf_counter() - t1
    del docs1, w1

    # ---- Stage 2: lanes = stage-1 seeds x stage-2 seeds (lane s*n2 + j)
    if n2 > 1:
        st = model.state_for_lanes([i for i in range(len(seeds)) for _ in range(n2)])
        model.load_lanes(st)
        if c.compile:
            trainer = ms.LaneTrainer(model, optim, device=device, amp=amp, compile=True)
    lanes_s1 = [s for s in seeds for _ in range(n2)]
    lanes_s2 = [j for _ in seeds for j in range(n2)]
    docs2 = _stack([d.stage2_docs for d in datas], device).repeat_interleave(n2, 0)
    w2 = _stack([loss_weights(d.stage2_docs, v, c.loss_on) for d in datas], device).repeat_interleave(n2, 0)
    rngs2 = [np.random.default_rng(np.random.SeedSequence([s, 104, j])) for s, j in zip(lanes_s1, lanes_s2)]
    E1 = c.stage1_epochs

    def ep_end_2(ep, loss):
        if ep % c.eval_every == 0 or ep == c.stage2_epochs:
            evaluate(2, E1 + ep, lanes_s1, lanes_s2, loss)

    t2 = time.perf_counter()
    if c.stage2_epochs:
        trainer.train(docs2, w2, epochs=c.stage2_epochs, batch_size=c.batch_size, lr=c.stage2_lr or c.lr,
                      order_rngs=rngs2, on_epoch_end=ep_end_2)
    t2 = time.perf_counter() - t2
    wall = time.perf_counter() - t_start
    table = pd.DataFrame(rows, columns=COLUMNS)
    seed_epochs = len(seeds) * (c.stage1_epochs + n2 * c.stage2_epochs)
    extra = {
        "seeds": list(seeds),
        "wall_time_s": wall,
        "stage1_wall_s": t1,
        "stage2_wall_s": t2,
        "seed_epochs": seed_epochs,
        "seed_epochs_per_s": seed_epochs / wall if wall > 0 else None,
        "stage1_seed_epochs_per_s": len(seeds) * c.stage1_epochs / t1 if t1 > 0 else None,
        "stage1_train_only_s": info1["wall_s"],
        "data_s": t_data,
        "eval_s": {str(k): val for k, val in eval_time.items()},
        "n_evals": {str(k): val for k, val in eval_count.items()},
        # training time per epoch for the whole group, evaluation excluded
        "stage1_epoch_s": (t1 - (eval_time[1] - eval0_s)) / c.stage1_epochs if c.stage1_epochs else None,
        "stage2_epoch_s": (t2 - eval_time[2]) / c.stage2_epochs if c.stage2_epochs else None,
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "amp_bf16": amp,
        "torch_threads": torch.get_num_threads(),
        "n_params_per_seed": int(sum(p[0].numel() for p in model.parameters())),
    }
    if progress:
        log(f"[setinclusion seeds {seeds[0]}..{seeds[-1]}] done in {wall:.1f}s "
            f"({extra['seed_epochs_per_s']:.3f} seed-epochs/s)")
    return table, extra


# ----------------------------------------------------------------------------------------------
# Registry entry point
# ----------------------------------------------------------------------------------------------

def unit_id(seeds: list[int]) -> str:
    """A seed group's unit id, ``seeds<first:04d>-<last:04d>`` (the format committed results use)."""
    return f"seeds{seeds[0]:04d}-{seeds[-1]:04d}"


def _meta(store, unit_ids: list[str]) -> dict:
    extras = [store.unit_extra(u) for u in unit_ids]
    se = sum(e.get("seed_epochs") or 0 for e in extras)
    wall = sum(e.get("wall_time_s") or 0 for e in extras)
    return {"seed_epochs_per_s": se / wall if wall else None, "total_unit_wall_s": wall,
            "unit_seed_epochs_per_s": {u: e.get("seed_epochs_per_s") for u, e in zip(unit_ids, extras)},
            "devices": sorted({str(e.get("device")) for e in extras})}


def run(config: Config, *, root=None, force: bool = False, progress: bool = True,
        units: Sequence[str] | None = None, shard: tuple[int, int] | None = None) -> Result | None:
    """Compute (or reuse) the result of `config`; resumes finished seed groups. `units` (unit ids) restricts this
    call to those seed groups, e.g. one per process: it returns None until every unit is done."""
    config = as_config(Config, config, EXPERIMENT)
    jobs = [Job((unit_id(seeds),), lambda todo, seeds=seeds: [(unit_id(seeds), *train_seed_group(
        config, seeds, progress=progress))], key=unit_id(seeds)) for seeds in config.units()]
    return run_units(EXPERIMENT, config, jobs, root=root, force=force, progress=progress, meta=_meta, only=units,
                     shard=shard)
