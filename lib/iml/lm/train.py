"""The training loop: one stage of causal-LM fine-tuning (:func:`train_stage`), written out (no HF ``Trainer``).
A row becomes ``tokens(prompt) + tokens(" " + answer + "\\n") + [EOS]`` (the prompt tokenised alone, as evaluation
does; exactly one EOS); pads are never in the loss, the mean over the real label tokens of an optimizer step.
:class:`StageConfig` defaults to the paper's recipe (Adafactor, linear decay to 0, no warmup, clipping at 1.0).
With ``train.checkpoint_every`` a stage writes a resume file and continues from it after a kill (:class:`Resume`);
under ``torchrun`` the ranks share every optimizer step (:mod:`iml.lm.distributed`).
Design choices: book/design_notes.md (section `iml.lm.train`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from iml.core.config import ConfigError, check_choice, check_positive, to_dict

__all__ = ["StageConfig", "TrainConfig", "StageLog", "EncodedDoc", "encode_rows", "collate",
           "make_optimizer", "lr_at", "train_stage", "Resume", "ResumeMismatch", "StageInterrupted"]


@dataclasses.dataclass
class StageConfig:
    """One training stage. Defaults = the paper's Stage 1 (20 epochs, batch 256, Adafactor 5e-5).

    name: label in the results (``stage1``, ``stage2``, ``knowledge``...).
    split: the training split of the dataset (``train_stage1``, ``train_stage2``, ``train_full``...).
    epochs: passes over the split.
    lr: peak learning rate (paper: 5e-5, the Hugging Face default; no config of the reference sets it).
    batch_size: documents per forward pass; the effective batch is ``batch_size * grad_accum``
        (paper: 256, e.g. 128 x 2).
    optimizer: "adafactor" (paper: ``Adafactor(lr, scale_parameter=False, relative_step=False,
        warmup_init=False, weight_decay=0.0)``) or "adamw".
    schedule: "linear" (paper: linear decay to 0 over the stage), "cosine" (to ``min_lr_ratio * lr``)
        or "constant". The schedule restarts at every stage (a fresh optimizer each stage, as the paper's
        fresh ``Trainer`` per stage).
    warmup: fraction of the stage's optimizer steps spent in linear warmup (paper: 0).
    loss_on: "all" tokens of each document (paper) or "answer" tokens (+ newline + EOS) only.
    eval_every: evaluate every k epochs of this stage (None: the experiment's ``eval.every``; 0: only
        at the stage's end). The end of a stage is always evaluated.
    """

    name: str = "stage1"
    split: str = "train_stage1"
    epochs: int = 20
    lr: float = 5e-5
    batch_size: int = 256
    grad_accum: int = 1
    optimizer: Literal["adafactor", "adamw"] = "adafactor"
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup: float = 0.0
    loss_on: Literal["all", "answer"] = "all"
    eval_every: int | None = None

    def __post_init__(self):
        if not self.name or any(c in self.name for c in "/\\ "):
            raise ConfigError("name", f"must be a non-empty word, got {self.name!r}")
        if self.name == "init":
            raise ConfigError("name", "'init' is reserved for the evaluation before any training; name the stage "
                                      "otherwise")
        check_positive("epochs", self.epochs)
        check_positive("lr", self.lr, integer=False)
        check_positive("batch_size", self.batch_size)
        check_positive("grad_accum", self.grad_accum)
        check_choice("optimizer", self.optimizer, {"adafactor", "adamw"})
        check_choice("schedule", self.schedule, {"linear", "cosine", "constant"})
        check_choice("loss_on", self.loss_on, {"all", "answer"})
        if not (0.0 <= self.warmup < 1.0):
            raise ConfigError("warmup", f"must be a fraction in [0, 1), got {self.warmup!r}")
        if self.eval_every is not None:
            check_positive("eval_every", self.eval_every, allow_zero=True)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


@dataclasses.dataclass
class TrainConfig:
    """Settings shared by all stages.

    weight_decay: 0 (paper; Hugging Face default). Applies to both optimizers.
    max_grad_norm: 1.0 (paper; Hugging Face default). 0 turns clipping off.
    adam_betas/adam_eps: AdamW only.
    min_lr_ratio: floor of the cosine schedule as a fraction of the peak lr.
    max_length: the longest training document in tokens; a stage with a longer one is a ConfigError (a cut
        document loses its answer). The reference padded/truncated to 48 tokens; our documents are far shorter.
    precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32".
    device: "auto", "cpu", "cuda", "cuda:1", ...
    threads: ``torch.set_num_threads`` for CPU runs (at most this machine's cores).
    fast_forward: run the training forward of Llama models with :func:`iml.lm.fastllama.llama_hidden`
        (the same operations as ``transformers``' forward without its per-call machinery; other models
        ignore it). Added after results were committed: at False it is left out of the config hash.
    compile: pad every batch to one shape (``batch_size`` rows of the stage's longest document, rounded up
        to 8 tokens) and run the training forward through ``torch.compile``. On an H200 a compiled
        SmolLM2-135M step on such batches took 44 ms against 86 ms eager (``bench_main_step.py``). The
        padding mask is dropped: in a right-padded batch a causal model's real tokens never see a pad, so
        the loss is the same up to float rounding (``tests/test_train.py``). Compiling costs about a minute
        per shape on a GPU; short runs are faster without it. At False it is left out of the config hash.
    checkpoint_every: write the stage's resume file (:class:`Resume`, when the caller names one) every this
        many optimizer steps, so a killed run continues from its last one with the same numbers; 0: never.
        Changes no result; at 0 it is left out of the config hash.
    """

    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    adam_betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1e-8
    min_lr_ratio: float = 0.0
    max_length: int = 64
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: str = "auto"
    threads: int = 1
    fast_forward: bool = False
    compile: bool = False
    checkpoint_every: int = 0

    def __post_init__(self):
        for name in ("fast_forward", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"must be true or false, got {getattr(self, name)!r}")
        check_positive("weight_decay", self.weight_decay, allow_zero=True, integer=False)
        check_positive("max_grad_norm", self.max_grad_norm, allow_zero=True, integer=False)
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError("adam_betas", f"must be two numbers in [0, 1), got {self.adam_betas!r}")
        check_positive("adam_eps", self.adam_eps, integer=False)
        if not (0.0 <= self.min_lr_ratio <= 1.0):
            raise ConfigError("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio!r}")
        check_positive("max_length", self.max_length)
        check_choice("precision", self.precision, {"auto", "bf16", "fp32"})
        check_positive("threads", self.threads)
        check_positive("checkpoint_every", self.checkpoint_every, allow_zero=True)
        if self.threads > (os.cpu_count() or 1):
            raise ConfigError("threads", f"must be at most the {os.cpu_count()} cores of this machine, got {self.threads}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclasses.dataclass
class StageLog:
    """What one stage did: per-epoch mean train loss, the lr of every optimizer step, throughput."""

    name: str
    epoch_losses: list[float] = dataclasses.field(default_factory=list)
    lrs: list[float] = dataclasses.field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    train_time_s: float = 0.0
    truncated: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_time_s if self.train_time_s > 0 else float("nan")

    def summary(self) -> dict:
        return {"steps": self.steps, "tokens": self.tokens, "train_time_s": round(self.train_time_s, 3),
                "tokens_per_s": round(self.tokens_per_s, 1), "truncated_docs": self.truncated,
                "final_loss": self.epoch_losses[-1] if self.epoch_losses else None}


# ----------------------------------------------------------------------------------------------
# Encoding and batching
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class EncodedDoc:
    input_ids: list[int]
    labels: list[int]  # -100 where no loss


def _encode_one(tokenizer, row: Mapping[str, Any], loss_on: str) -> tuple[list[int], list[int]]:
    prompt = row.get("prompt") or ""
    text = row["text"]
    eos = tokenizer.eos_token_id
    if prompt and text.startswith(prompt):
        p_ids = tokenizer(prompt).input_ids  # as evaluation tokenises the prompt (BOS if the model uses one)
        c_ids = tokenizer(text[len(prompt):], add_special_tokens=False).input_ids
    else:  # no prompt/answer split: the whole document is the continuation
        p_ids = tokenizer(text).input_ids
        c_ids = []
        if loss_on == "answer":
            raise ValueError(f"loss_on='answer' needs rows whose text starts with their prompt; got {row!r}")
    # Drop an EOS the tokenizer may have appended itself, so there is exactly one.
    while c_ids and c_ids[-1] == eos:
        c_ids.pop()
    if not c_ids:
        while p_ids and p_ids[-1] == eos:
            p_ids.pop()
    ids = p_ids + c_ids + [eos]
    if loss_on == "all":
        labels = list(ids)
    else:
        labels = [-100] * len(p_ids) + c_ids + [eos]
    return ids, labels


def encode_rows(rows: Sequence[Mapping[str, Any]], tokenizer, loss_on: str = "all",
                max_length: int | None = None) -> tuple[list[EncodedDoc], int]:
    """Encode training rows; returns (docs, number truncated to `max_length`)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token")
    docs, truncated = [], 0
    for row in rows:
        ids, labels = _encode_one(tokenizer, row, loss_on)
        if max_length is not None and len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
            truncated += 1
        docs.append(EncodedDoc(ids, labels))
    return docs, truncated


def collate(docs: Sequence[EncodedDoc], pad_id: int, shape: tuple[int, int] | None = None):
    """Right-pad to the longest document; pads get attention 0 and label -100.

    `shape` (rows, length) pads to that fixed shape instead (``train.compile``): extra rows are all pad.
    """
    import torch

    rows, n = shape if shape is not None else (len(docs), max(len(d.input_ids) for d in docs))
    if rows < len(docs) or n < max(len(d.input_ids) for d in docs):
        raise ValueError(f"collate: {len(docs)} documents of up to {max(len(d.input_ids) for d in docs)} tokens "
                         f"do not fit the shape {shape}")
    ids = torch.full((rows, n), pad_id, dtype=torch.long)
    labels = torch.full((rows, n), -100, dtype=torch.long)
    mask = torch.zeros((rows, n), dtype=torch.long)
    for i, d in enumerate(docs):
        k = len(d.input_ids)
        ids[i, :k] = torch.tensor(d.input_ids)
        labels[i, :k] = torch.tensor(d.labels)
        mask[i, :k] = 1
    return ids, mask, labels


# ----------------------------------------------------------------------------------------------
# Optimizer and schedule
# ----------------------------------------------------------------------------------------------

def make_optimizer(model, stage: StageConfig, train: TrainConfig):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    if stage.optimizer == "adafactor":
        # transformers' Adafactor(scale_parameter=False, relative_step=False, warmup_init=False), batched
        # over parameters of one shape (iml.lm.optim: same update, ~20x fewer GPU launches per step)
        from iml.lm.optim import Adafactor

        return Adafactor(params, lr=stage.lr, weight_decay=train.weight_decay)
    return torch.optim.AdamW(params, lr=stage.lr, betas=tuple(train.adam_betas), eps=train.adam_eps,
                             weight_decay=train.weight_decay)


def lr_at(step: int, total: int, stage: StageConfig, min_lr_ratio: float = 0.0) -> float:
    """The lr of optimizer step `step` (0-based) of `total` (Hugging Face's schedule formulas)."""
    warm = int(math.ceil(stage.warmup * total)) if stage.warmup > 0 else 0
    if step < warm:
        return stage.lr * (step + 1) / warm
    if stage.schedule == "constant":
        return stage.lr
    rest = max(1, total - warm)
    progress = (step - warm) / rest
    if stage.schedule == "linear":
        return stage.lr * max(0.0, 1.0 - progress)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return stage.lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cos)


# ----------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------

def loss_positions(labels):
    """Where the loss is, computed on the host: flat indices into the (batch*len) hidden states of the
    positions whose *next* token has a label, and those next tokens.

    Done on the CPU before the batch goes to the GPU, so that the step never waits for the device
    (boolean indexing on the GPU would synchronise every micro-batch and stop the host from queueing
    the next kernels while the GPU works).
    """
    n = labels.shape[1]
    tgt = labels[:, 1:]
    keep = tgt != -100
    rows, cols = keep.nonzero(as_tuple=True)
    return rows * n + cols, tgt[keep]


def _loss_sum(model, ids, mask, flat_idx, target, fast_forward: bool = False, hidden_fn=None):
    """Sum of next-token cross-entropy at the hidden states `flat_idx` (see :func:`loss_positions`).

    The output projection is applied only at the positions that have a label (answer-only loss on a
    49k-vocabulary model skips most of the logits). `hidden_fn(ids)` (:func:`compiled_hidden`) replaces
    the forward of the transformer body.
    """
    import torch.nn.functional as F

    from iml.lm import fastllama

    head = model.get_output_embeddings()
    base = getattr(model, "base_model", None)
    if hidden_fn is not None:
        hidden = hidden_fn(ids)
        logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_idx))
    elif head is not None and base is not None and base is not model:
        if fast_forward and fastllama.supports(base):
            hidden = fastllama.llama_hidden(base, ids, mask)
        else:  # no KV cache while training: bookkeeping only (same numbers), ~5% of a small model's step
            hidden = base(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat_idx))
    else:  # pragma: no cover - models without a separable head
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        logits = logits.reshape(-1, logits.shape[-1]).index_select(0, flat_idx)
    return F.cross_entropy(logits.float(), target, reduction="sum")


_LAST_COMPILED: list = [None]  # weak reference to the body compiled last (see compiled_hidden)


def compiled_hidden(model, fast_forward: bool = False):
    """``torch.compile``'d hidden states ``f(ids)`` of `model`'s transformer body for right-padded batches
    of one shape, without a padding mask (causal attention alone: exact at every real position).

    The model object is not changed (its state_dict keys stay as they are for checkpoints and results).
    Dynamo keeps compiled code per model object; a pretrained model is reused across seeds (same object,
    no recompilation), while a model built from scratch per seed would pile up entries until dynamo's
    recompile limit silently falls back to eager, so the caches are reset when the model changes.
    """
    import weakref

    import torch

    from iml.lm import fastllama
    from iml.core import env

    env.separate_compile_cache()
    base = getattr(model, "base_model", None)
    if base is None or base is model or model.get_output_embeddings() is None:
        raise ValueError(f"train.compile needs a model with a separate transformer body and output head; "
                         f"{type(model).__name__} has none")
    last = _LAST_COMPILED[0]() if _LAST_COMPILED[0] is not None else None
    if last is not None and last is not base:
        torch._dynamo.reset()
    _LAST_COMPILED[0] = weakref.ref(base)
    if fast_forward and fastllama.supports(base):
        def hidden(ids):
            return fastllama.llama_hidden(base, ids, None)
    else:
        def hidden(ids):
            return base(input_ids=ids, use_cache=False).last_hidden_state
    return torch.compile(hidden, dynamic=False)


# ----------------------------------------------------------------------------------------------
# Resuming a stage
# ----------------------------------------------------------------------------------------------

class ResumeMismatch(ValueError):
    """A resume file written by another stage, data, model, seed or caller key: refused, never continued."""


class StageInterrupted(RuntimeError):
    """:func:`train_stage` stopped at its `max_steps` (what a preemption looks like, for tests)."""


@dataclasses.dataclass
class Resume:
    """Where a stage keeps its resume file (:func:`train_stage`'s `resume`), and the caller's progress kept in it.

    path: the file; rank 0 writes it atomically every ``train.checkpoint_every`` optimizer steps (model,
        optimizer, schedule position, data order and position in the epoch, RNG states, the log so far);
        a stage that finds it continues from it, bit for bit; one written by another run is refused
        (:class:`ResumeMismatch`). Deleting it is the caller's job.
    state: returns what the caller needs to continue as well (e.g. its result rows so far), saved with the file;
    restore: receives that when the stage resumes, before training continues.
    key: anything else the file must match (part of its fingerprint, e.g. the units being computed).
    at_end: also write the file when the stage finishes (so that a caller's next stage can find it done).
    """

    path: str | Path
    state: Callable[[], Any] | None = None
    restore: Callable[[Any], None] | None = None
    key: Any = None
    at_end: bool = False


def _fingerprint(stage: StageConfig, train: TrainConfig, seed: int, docs, model, key) -> dict:
    """What a resume file must match: the stage and training settings (not how often it is written, threads
    or device), the seed, the encoded documents, the model's parameter names and shapes, the caller's key."""
    data = hashlib.sha256()
    for d in docs:
        data.update(json.dumps([d.input_ids, d.labels]).encode())
    shapes = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    return {"stage": to_dict(stage),
            "train": {k: v for k, v in to_dict(train).items() if k not in ("checkpoint_every", "threads", "device")},
            "seed": int(seed), "data": data.hexdigest(),
            "model": [type(model).__name__, hashlib.sha256(json.dumps(shapes).encode()).hexdigest()],
            "key": json.loads(json.dumps(key, default=str))}


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _rng_states() -> dict:
    import random

    import numpy as np
    import torch

    out = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()  # this rank's GPU
    return out


def _set_rng_states(states: dict) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def _save_resume(resume: Resume, fingerprint: dict, position: dict, model, opt, gen, log: StageLog) -> None:
    import torch

    from iml.core.files import atomic_path

    ckpt = {"format": 1, "fingerprint": fingerprint, **position, "gen": gen.get_state(),
            "log": dataclasses.asdict(log), "model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": _rng_states(), "caller": resume.state() if resume.state is not None else None}
    with atomic_path(resume.path) as tmp:
        torch.save(ckpt, tmp)


def _load_resume(path: Path, fingerprint: dict) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)  # our own file, with Python RNG states
    if not isinstance(ckpt, dict) or ckpt.get("format") != 1:
        raise ResumeMismatch(f"{path} is not a resume file of iml.lm.train.train_stage")
    diff = _differences(ckpt["fingerprint"], fingerprint)
    if diff:
        raise ResumeMismatch(f"{path} was written by another run (it differs in {', '.join(diff)}); it is not "
                             f"continued: delete it to train the stage from its start")
    return ckpt


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

EpochCallback = Callable[[int, Any, StageLog], None]


def train_stage(model, tokenizer, rows: Sequence[Mapping[str, Any]], stage: StageConfig,
                train: TrainConfig | None = None, *, seed: int = 0,
                on_epoch_end: EpochCallback | None = None, progress: bool = True,
                desc: str | None = None, resume: Resume | str | Path | None = None,
                max_steps: int | None = None) -> StageLog:
    """Train `model` in place on `rows` for one stage; returns its :class:`StageLog`.

    The model must already be on its device. `seed` seeds the shuffling generator of this stage.
    `resume` (a :class:`Resume` or its path): continue from that file when it exists, and write it every
    ``train.checkpoint_every`` steps. `max_steps`: raise :class:`StageInterrupted` after that many optimizer
    steps of the stage (restored ones included), once the resume file of that step, if due, is written.

    Under ``torchrun`` (env ``WORLD_SIZE`` > 1; the process group is joined if it is not yet) every rank
    takes ``grad_accum / world_size`` of each step's micro-batches and the gradients are summed over the ranks
    (:mod:`iml.lm.distributed`): the same steps as one process, up to float rounding. Only rank 0 shows
    progress and writes the resume file; `on_epoch_end` runs on every rank.
    """
    import torch

    from iml.lm import distributed

    train = train or TrainConfig()
    if not rows:
        raise ValueError(f"stage {stage.name!r}: split {stage.split!r} has no rows")
    device = next(model.parameters()).device
    if device.type == "cpu":
        torch.set_num_threads(train.threads)
    use_bf16 = device.type == "cuda" and train.precision in ("auto", "bf16")
    if train.precision == "bf16" and device.type != "cuda":
        use_bf16 = False  # CPU bf16 autocast is slow and not what the paper did; stay in fp32
    ddp = distributed.init(device.type)
    world, rank = distributed.world_size(), distributed.rank()
    if ddp and stage.grad_accum % world:
        raise ConfigError("grad_accum", f"stage {stage.name!r}: under torchrun the {world} ranks share each "
                                        f"step's micro-batches, so grad_accum ({stage.grad_accum}) must be a multiple "
                                        f"of {world} (keep the effective batch: batch_size "
                                        f"{stage.effective_batch // world} x grad_accum {world})")
    pin = device.type == "cuda"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    docs, _ = encode_rows(rows, tokenizer, stage.loss_on)  # whole: a document cut at max_length is refused
    lengths = [len(d.input_ids) for d in docs]
    too_long = sum(n > train.max_length for n in lengths)
    if too_long:
        raise ConfigError("train.max_length", f"{too_long} of {len(rows)} documents of stage {stage.name!r} are "
                                              f"longer than {train.max_length} tokens and would lose their answers; "
                                              f"set it to at least {max(lengths)}")
    log = StageLog(stage.name)  # truncated_docs stays 0: nothing is cut any more
    n = len(docs)
    micro = stage.batch_size
    n_micro = math.ceil(n / micro)
    steps_per_epoch = math.ceil(n_micro / stage.grad_accum)
    total = steps_per_epoch * stage.epochs

    shape, hidden_fn = None, None
    if train.compile:  # one batch shape for the whole stage, so the compiled forward is compiled once
        shape = (micro, 8 * math.ceil(max(len(d.input_ids) for d in docs) / 8))
        hidden_fn = compiled_hidden(model, train.fast_forward)
    gen = torch.Generator().manual_seed(int(seed))
    opt = make_optimizer(model, stage, train)
    params = [p for p in model.parameters() if p.requires_grad]
    step, first_epoch, ckpt, fingerprint = 0, 1, None, None
    if resume is not None:
        resume = resume if isinstance(resume, Resume) else Resume(resume)
        fingerprint = _fingerprint(stage, train, seed, docs, model, resume.key)
        if Path(resume.path).exists():
            ckpt = _load_resume(Path(resume.path), fingerprint)
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["gen"])
            _set_rng_states(ckpt["rng"])
            log = StageLog(**ckpt["log"])
            step, first_epoch = ckpt["step"], ckpt["epoch"]
            if resume.restore is not None:
                resume.restore(ckpt["caller"])
    every = train.checkpoint_every if resume is not None else 0

    def save(position: dict) -> None:
        if distributed.is_main():
            _save_resume(resume, fingerprint, {"step": step, **position}, model, opt, gen, log)

    if ddp:
        distributed.broadcast_params(model)
    model.train()
    bar = None
    if progress and distributed.is_main():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=step, desc=desc or stage.name, leave=False, dynamic_ncols=True)
    try:
        for epoch in range(first_epoch, stage.epochs + 1):
            t0 = time.perf_counter()
            if ckpt is not None and epoch == ckpt["epoch"]:  # the epoch the resume file stopped in
                order, skip, acc = ckpt["order"], ckpt["group"], ckpt["acc"]
                t0 -= ckpt["epoch_time"]
                ep_loss_t, ep_tok, ep_in_tok = acc["loss"].to(device), acc["tok"], acc["in_tok"]
            else:
                order, skip = torch.randperm(n, generator=gen).tolist(), 0
                ep_loss_t = torch.zeros((), dtype=torch.float64, device=device)
                ep_tok, ep_in_tok = 0, 0
            batches = [order[i:i + micro] for i in range(0, n, micro)]
            for k, g in enumerate(range(0, len(batches), stage.grad_accum)):
                if k < skip:
                    continue
                group = batches[g:g + stage.grad_accum]
                lr = lr_at(step, total, stage, train.min_lr_ratio)
                for pg in opt.param_groups:
                    pg["lr"] = lr
                # normalise by the label tokens of the whole optimizer step (all ranks' micro-batches)
                n_lab = sum(sum(1 for x in docs[i].labels[1:] if x != -100) for b in group for i in b)
                ep_tok += n_lab  # the positions the loss is summed over
                ep_in_tok += sum(len(docs[i].input_ids) for b in group for i in b)
                step_loss = torch.zeros((), dtype=torch.float64, device=device) if ddp else ep_loss_t
                for b in (group[rank::world] if ddp else group):
                    ids, mask, labels = collate([docs[i] for i in b], pad_id, shape)
                    flat_idx, target = loss_positions(labels)
                    if pin:
                        ids, mask, flat_idx, target = (t.pin_memory() for t in (ids, mask, flat_idx, target))
                    ids, mask, flat_idx, target = (t.to(device, non_blocking=pin)
                                                   for t in (ids, mask, flat_idx, target))
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                        loss_sum = _loss_sum(model, ids, mask, flat_idx, target, train.fast_forward, hidden_fn)
                    (loss_sum / max(1, n_lab)).backward()
                    # summed on the device in float64 (as Python floats were): no host sync per step
                    step_loss += loss_sum.detach().double()
                if ddp:  # the step's gradient and loss: the sums over the ranks' micro-batches
                    distributed.all_reduce_grads(params)
                    distributed.all_reduce_([step_loss])
                    ep_loss_t += step_loss
                if train.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), train.max_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
                log.lrs.append(lr)
                step += 1
                if bar is not None:
                    bar.update(1)
                if every and step % every == 0:
                    save({"epoch": epoch, "group": k + 1, "order": order, "epoch_time": time.perf_counter() - t0,
                          "acc": {"loss": ep_loss_t.detach().cpu(), "tok": ep_tok, "in_tok": ep_in_tok}})
                if max_steps is not None and step >= max_steps:
                    raise StageInterrupted(f"stage {stage.name!r} stopped after {step} of {total} steps (max_steps)")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            log.train_time_s += dt
            log.tokens += ep_in_tok
            log.steps = step
            log.epoch_losses.append(float(ep_loss_t) / max(1, ep_tok))
            if bar is not None:
                bar.set_postfix(epoch=epoch, loss=f"{log.epoch_losses[-1]:.3f}", tok_s=f"{log.tokens_per_s:.0f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, model, log)
                model.train()
        if every and resume.at_end and first_epoch <= stage.epochs:  # finished: a resume finds it done
            save({"epoch": stage.epochs + 1, "group": 0, "order": [], "epoch_time": 0.0, "acc": None})
    finally:
        if bar is not None:
            bar.close()
    return log
