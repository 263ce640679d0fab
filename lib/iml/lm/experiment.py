"""The paper's main experiment, two-stage fine-tuning on tagged definitions and QA (section 3.1), with the registry
interface (``EXPERIMENT``, ``Config``, ``PRESETS``, ``make_config``, ``run``). A unit is a (stage-1 seed ``s``, stage-2
seed ``j``) pair, ``run_id = "s<s>-<j>"`` (plus ``"-from<e>"``, and ``stage`` ``"<name>_from<e>"``, for a Stage 2 from
Stage-1 epoch ``e``); ``s`` seeds data, init and Stage-1 order, ``j`` the X2 reassignment and (with ``s``) Stage 2.
Design choices: book/design_notes.md (section `iml.lm.experiment`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import shutil
import time
import zlib
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from iml.core.env import resolve_device
from iml.core import results as results_mod
from iml.core.runner import Job, as_config, resolve_root
from iml.core.config import (ConfigError, apply_overrides, build, check_choice, check_positive, content_address,
                             to_dict)
from iml.lm.models import ModelConfig
from iml.lm.tagging import DataConfig
from iml.lm.tokenizer import TokenizerConfig
from iml.lm.train import StageConfig, TrainConfig

__all__ = ["EXPERIMENT", "Config", "SeedConfig", "EvalConfig", "PRESETS", "PRESET_NOTES", "make_config",
           "run", "completed_stage1", "finalize_completed", "derive_seed", "unit_id", "load_presets", "GAP_PAIRS"]

EXPERIMENT = "main"

GAP_PAIRS: list[tuple[str, str]] = (
    [("d1consis", "d2consis")]
    + [(f"ent_assoc_{t}_d1consis", f"ent_assoc_{t}_d2consis") for t in ("who", "meaning", "standFor", "name")]
    + [("qd1consis", "qd2incons")]
)
"""The gaps ``iml show`` reports: the IML gap (Stage 2), its entity-association versions, and the
Stage-1 effect of consistent vs inconsistent definitions."""


@dataclasses.dataclass
class SeedConfig:
    """n_stage1 stage-1 seeds ``start_seed, start_seed+1, ...`` x n_stage2 stage-2 seeds ``0..n_stage2-1``.
    Paper (main 2.8B CVDB config): 20 x 5 from 600."""

    n_stage1: int = 20
    n_stage2: int = 5
    start_seed: int = 600

    def __post_init__(self):
        check_positive("n_stage1", self.n_stage1)
        check_positive("n_stage2", self.n_stage2)
        check_positive("start_seed", self.start_seed, allow_zero=True)

    @property
    def stage1(self) -> list[int]:
        return [self.start_seed + i for i in range(self.n_stage1)]

    @property
    def stage2(self) -> list[int]:
        return list(range(self.n_stage2))


@dataclasses.dataclass
class EvalConfig:
    """When and on what to evaluate (greedy decoding, EM/F1 from :mod:`iml.lm.metrics`).

    every: evaluate every k epochs of each stage (a stage's ``eval_every`` overrides it; 0 = stage
        ends only). Stage ends are always evaluated; ``at_start`` adds epoch 0 (before training).
    sets: glob patterns of the evaluation sets (default: every ``test_*`` and ``ent_assoc_*`` set).
    train_sets: training splits also evaluated at stage ends (a memorisation check; e.g. ``train_stage1``).
    max_new_tokens: 8 (paper, CVDB).
    limit: evaluate a fixed random subsample of at most this many rows per set (None: all).
    set_limits: per-set limits (set name -> rows), overriding ``limit``.
    """

    every: int = 1
    at_start: bool = True
    sets: list[str] = dataclasses.field(default_factory=lambda: ["test_*", "ent_assoc_*"])
    train_sets: list[str] = dataclasses.field(default_factory=list)
    max_new_tokens: int = 8
    batch_size: int = 64
    limit: int | None = None
    set_limits: dict[str, int] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        check_positive("every", self.every, allow_zero=True)
        check_positive("max_new_tokens", self.max_new_tokens)
        check_positive("batch_size", self.batch_size)
        if self.limit is not None:
            check_positive("limit", self.limit)
        for k, v in self.set_limits.items():
            check_positive(f"set_limits.{k}", v)
        if not self.sets:
            raise ConfigError("sets", "needs at least one pattern")


def _default_stages() -> list[StageConfig]:
    return [StageConfig(name="stage1", split="train_stage1", epochs=20),
            StageConfig(name="stage2", split="train_stage2", epochs=10)]


@dataclasses.dataclass
class Config:
    """The main experiment. Defaults are the paper's main run (Pythia-2.8B on CVDB, section 3.1), except
    the knowledge base (the shipped Pantheon people table stands in for CVDB) and the model, which has
    to be a local checkpoint (``model.path``)."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    stages: list[StageConfig] = dataclasses.field(default_factory=_default_stages)
    branch_stage: int | None = None
    """Index of the first stage run per stage-2 seed (None: the last stage)."""
    stage2_from_epochs: list[int] | None = None
    """Epochs of the stage before ``branch_stage`` to start the branch from (None: its final epoch)."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    seeds: SeedConfig = dataclasses.field(default_factory=SeedConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoints: str = "memory"
    """Where Stage-1 checkpoints wait for their Stage-2 runs: "memory" (CPU RAM) or "disk" (under the
    result folder, deleted when the stage-1 seed is done; always, with ``train.checkpoint_every``: the shared
    stages' resume files there name them)."""
    save_models: bool = False
    """Also save every Stage-1 model a branch starts from and every branch-stage model (``save_pretrained`` with
    tokenizer and model card, :mod:`iml.lm.export`) under ``<result folder>/models/``; changes no result."""
    code_version: int = 1
    """Part of the config hash: bump it when a code change alters results, so stored results go stale."""
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    """sha256 of the files :data:`INPUT_FIELDS` name, filled by make_config and run (``iml.core.config.content_address``):
    the result's identity follows the files' content, not their paths."""

    def __post_init__(self):
        if not self.stages:
            raise ConfigError("stages", "needs at least one stage")
        names = [s.name for s in self.stages]
        for i, n in enumerate(names):
            if names.count(n) > 1:
                raise ConfigError(f"stages[{i}].name", f"stage names must be unique, {n!r} repeats")
        b = self.branch
        if not (0 <= b < len(self.stages)):
            raise ConfigError("branch_stage", f"must be in 0..{len(self.stages) - 1}, got {self.branch_stage}")
        if self.stage2_from_epochs is not None:
            if b == 0:
                raise ConfigError("stage2_from_epochs", "needs a stage before branch_stage to take checkpoints of")
            prev = self.stages[b - 1]
            if not self.stage2_from_epochs:
                raise ConfigError("stage2_from_epochs", "must list at least one epoch (or be null for the final one)")
            for i, e in enumerate(self.stage2_from_epochs):
                if not (1 <= e <= prev.epochs):
                    raise ConfigError(f"stage2_from_epochs[{i}]",
                                      f"must be an epoch of stage {prev.name!r} (1..{prev.epochs}), got {e}")
        for i, s in enumerate(self.stages):
            if s.split == "train_knowledge" and not self.data.knowledge_stage:
                raise ConfigError("data.knowledge_stage", f"stage {s.name!r} trains on train_knowledge, "
                                                          f"so data.knowledge_stage must be true")
        check_choice("checkpoints", self.checkpoints, {"memory", "disk"})

    @property
    def branch(self) -> int:
        return len(self.stages) - 1 if self.branch_stage is None else self.branch_stage

    def from_epochs(self) -> list[int]:
        """The stage-1 epochs the branch starts from (integers, ascending; final epoch last)."""
        b = self.branch
        if b == 0:
            return [0]
        final = self.stages[b - 1].epochs
        return sorted(set(self.stage2_from_epochs or [final]))


# ----------------------------------------------------------------------------------------------
# Presets and config building
# ----------------------------------------------------------------------------------------------

_PRESET_DIR = Path(__file__).resolve().parent / "presets"


def load_presets(path: Path | None = None) -> tuple[dict[str, dict], dict[str, str]]:
    """Read presets/main.yaml -> ({preset: overrides}, {preset: one-line note}); ``_base`` inherits."""
    import yaml

    raw = yaml.safe_load((path or _PRESET_DIR / "main.yaml").read_text())
    presets, notes = {}, {}

    def resolve(name, seen=()):
        if name in seen:
            raise ValueError(f"preset inheritance loop at {name!r}")
        entry = dict(raw[name])
        base = entry.pop("_base", None)
        notes.setdefault(name, entry.pop("_note", ""))
        if base is None:
            return entry
        return apply_overrides(resolve(base, seen + (name,)), entry)

    for name in raw:
        if not name.startswith("."):
            presets[name] = resolve(name)
    return presets, notes


PRESETS, PRESET_NOTES = load_presets()


def make_config(preset: str | None = "cpu", overrides: Mapping[str, Any] | None = None,
                config_file: str | Path | None = None) -> Config:
    """The config of `preset` (None: the paper defaults of :class:`Config`), then the mapping of a YAML
    `config_file`, then dotted-key `overrides` (``{"stages.1.epochs": 5, "data.num_ents": 200}``); with the
    content hashes of the files it names."""
    return content_address(build(Config, PRESETS, preset, overrides, config_file), INPUT_FIELDS)


INPUT_FIELDS = ("data.path", "model.path", "model.gguf_file")
"""The config fields that name input files (a knowledge table, a checkpoint folder, a GGUF file)."""


# ----------------------------------------------------------------------------------------------
# Seeds and ids
# ----------------------------------------------------------------------------------------------

def derive_seed(*parts: Any) -> int:
    """A 31-bit seed that is a stable function of `parts` (sha256 of their text)."""
    h = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def unit_id(seed_stage1: int, seed_stage2: int) -> str:
    return f"s{seed_stage1}-{seed_stage2}"


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------

def _set_key(rows) -> int:
    h = zlib.crc32(b"")
    for r in rows:
        h = zlib.crc32((r["prompt"] + "\x00" + r["answer"] + "\x01").encode(), h)
    return h ^ (len(rows) << 32)


def _eval_names(cfg: Config, splits: Mapping[str, list]) -> list[str]:
    names = []
    for name in splits:
        if name.startswith("train"):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in cfg.eval.sets) and splits[name]:
            names.append(name)
    return names


def _subset_label(name: str) -> str:
    return name[len("test_"):] if name.startswith("test_") else name


class _Evaluator:
    """Evaluates one model on the sets of several stage-2 seeds at once, once per distinct set."""

    def __init__(self, cfg: Config, datas: Mapping[int, Any]):
        self.cfg = cfg
        self.names = _eval_names(cfg, datas[next(iter(datas))].splits)
        self.datas = datas
        # A set is evaluated once if it is identical for every stage-2 seed (X1 test sets), else per seed.
        self.unique: dict[tuple[int, str], str] = {}
        self.rows: dict[str, list] = {}
        for name in self.names:
            keys = {j: _set_key(d.splits.get(name, [])) for j, d in datas.items()}
            same = len(set(keys.values())) == 1
            for j, d in datas.items():
                uname = name if same else f"{name}@{j}"
                self.unique[(j, name)] = uname
                self.rows[uname] = d.splits[name]

    def __call__(self, model, tokenizer, seeds2, train_sets: list[str] = ()) -> dict[int, list[dict]]:
        from iml.lm.evaluate import evaluate_sets

        ev = self.cfg.eval
        want = sorted({self.unique[(j, n)] for j in seeds2 for n in self.names})
        extra = {}
        for j in seeds2:
            for s in train_sets:
                extra[(j, s)] = f"{s}@{j}"
                self.rows.setdefault(f"{s}@{j}", self.datas[j].splits[s])
        want += sorted(set(extra.values()))
        by_limit: dict[int | None, list[str]] = {}
        for u in want:
            base = u.split("@")[0]
            by_limit.setdefault(ev.set_limits.get(base, ev.limit), []).append(u)
        scores: dict[str, dict[str, float]] = {}
        for limit, names in by_limit.items():
            table = evaluate_sets(model, tokenizer, {n: _Cols(self.rows[n]) for n in names}, names,
                                  max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, limit=limit,
                                  seed=ev.seed)
            for r in table.itertuples(index=False):
                scores.setdefault(r.subset, {})[r.metric] = float(r.value)
        out: dict[int, list[dict]] = {}
        for j in seeds2:
            rows = []
            for n in self.names:
                for m in ("EM", "F1"):
                    rows.append({"subset": _subset_label(n), "metric": m, "value": scores[self.unique[(j, n)]][m]})
            for s in train_sets:
                for m in ("EM", "F1"):
                    rows.append({"subset": s, "metric": m, "value": scores[extra[(j, s)]][m]})
            out[j] = rows
        return out


class _Cols:
    """Column access over a list of row dicts (what evaluate_sets reads)."""

    def __init__(self, rows):
        self._rows = rows

    def __getitem__(self, col):
        return [r[col] for r in self._rows]


def _stage_schedule(cfg: Config, stage: StageConfig) -> set[int]:
    every = cfg.eval.every if stage.eval_every is None else stage.eval_every
    eps = {stage.epochs}
    if every:
        eps |= set(range(every, stage.epochs + 1, every))
    return eps


def _snapshot(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def run(config: Config, *, root: str | Path | None = None, force: bool = False, progress: bool = True,
        stage1_seeds: list[int] | None = None, stop_by: float | None = None,
        shard: tuple[int, int] | None = None) -> results_mod.Result | None:
    """Run (or resume, or just load) the experiment of `config`; returns the finished result.

    For several processes sharing one GPU (launch-bound small models) or several machines, each can
    compute a share: `stage1_seeds` restricts this call to those stage-1 seeds, and `stop_by` (a
    ``time.time()`` value) stops it from starting a stage-1 seed that the previous one's duration says
    would end later. Such a call writes its finished units and returns None unless every unit of the
    config is then done; :func:`finalize_completed` makes the result from what finished. `shard` ``(i, n)``:
    every n-th stage-1 seed from the i-th (``iml run --shard I/N``; the last shard to finish writes the result).
    Under ``torchrun`` the ranks train one model together (:mod:`iml.lm.distributed`): rank 0 writes the units
    and the result, the others compute alongside and return rank 0's result.
    """
    from iml.lm import distributed
    from iml.lm.models import check_model_config

    config = content_address(as_config(Config, config, EXPERIMENT), INPUT_FIELDS)  # the files as they are now
    if stage1_seeds is not None:
        unknown = sorted(set(stage1_seeds) - set(config.seeds.stage1))
        if unknown:
            raise ConfigError("stage1_seeds", f"{unknown} are not stage-1 seeds of this config "
                                              f"({config.seeds.stage1[0]}..{config.seeds.stage1[-1]})")
    if distributed.active() and distributed.init(resolve_device(config.train.device, "train.device").type):
        for i, st in enumerate(config.stages):
            if st.grad_accum % distributed.world_size():
                raise ConfigError(f"stages[{i}].grad_accum", f"must be a multiple of the {distributed.world_size()} "
                                  f"ranks, which share each step's micro-batches, got {st.grad_accum} (keep the "
                                  f"effective batch: e.g. batch_size {st.effective_batch // distributed.world_size()}"
                                  f" x grad_accum {distributed.world_size()})")
    root = distributed.from_main(resolve_root(EXPERIMENT, config, root, force))  # checkpoints go where the units do
    if not force and distributed.from_main(results_mod.ResultStore(EXPERIMENT, config, root=root).is_complete()):
        return results_mod.load(EXPERIMENT, config, root=root)  # reading it needs no model files
    check_model_config(config.model)
    result_dir = results_mod.ResultStore(EXPERIMENT, config, root=root).dir
    stage2 = list(config.seeds.stage2)

    def job(s1: int) -> Job:
        def compute(todo: list[str]):
            return _run_stage1_seed(config, result_dir, s1, [j for j in stage2 if unit_id(s1, j) in todo], progress)
        return Job(tuple(unit_id(s1, j) for j in stage2), compute, key=s1)

    return distributed.run_units(EXPERIMENT, config, [job(s1) for s1 in config.seeds.stage1], root=root, force=force,
                                 progress=progress, only=stage1_seeds, stop_by=stop_by, shard=shard)


def completed_stage1(config: Config, root: str | Path | None = None) -> int:
    """How many stage-1 seeds, counted from ``start_seed`` without gaps, have all their units done."""
    store = results_mod.ResultStore(EXPERIMENT, config, root=root)
    k = 0
    for s1 in config.seeds.stage1:
        if not all(store.unit_done(unit_id(s1, j)) for j in config.seeds.stage2):
            break
        k += 1
    return k


def finalize_completed(config: Config, root: str | Path | None = None,
                       meta: Mapping[str, Any] | None = None) -> results_mod.Result:
    """The result of the stage-1 seeds that finished, as the result of the config with that many seeds.

    After a time-limited (``stop_by``) or sharded run, the first k stage-1 seeds may be done and the
    rest not. Their units are exactly the units of the same config with ``seeds.n_stage1 = k`` (a unit
    depends only on its seeds and the config), so they are copied into that config's result folder and
    finalized there; its meta records the planned seed count. Raises if no stage-1 seed finished.
    """
    k = completed_stage1(config, root)
    if k == 0:
        raise RuntimeError(f"no stage-1 seed of {config.seeds.stage1[0]}.. finished all its units; nothing to "
                           f"finalize")
    extra = dict(meta or {})
    if k < config.seeds.n_stage1:
        src = results_mod.ResultStore(EXPERIMENT, config, root=root)
        config = dataclasses.replace(config, seeds=dataclasses.replace(config.seeds, n_stage1=k))
        dst = results_mod.ResultStore(EXPERIMENT, config, root=root)
        for s1 in config.seeds.stage1:
            for j in config.seeds.stage2:
                u = unit_id(s1, j)
                dst.save_unit(u, src.load_unit(u), src.unit_extra(u))
        extra.update({"planned_n_stage1": src.config["seeds"]["n_stage1"], "planned_config_hash": src.hash})
    store = results_mod.ResultStore(EXPERIMENT, config, root=root)
    units = [unit_id(s1, j) for s1 in config.seeds.stage1 for j in config.seeds.stage2]
    store.finalize(units, meta=extra)
    return results_mod.load(EXPERIMENT, config, root=root)


_INIT_CACHE: dict[str, tuple] = {}


def _run_stage1_seed(cfg: Config, result_dir: Path, s1: int, todo: list[int], progress: bool, fresh: bool = False):
    """Stage 1 of stage-1 seed `s1` once, then every stage-2 seed of `todo`: yields (unit id, table, extra) as
    each stage-2 unit finishes. Checkpoints go under `result_dir`/checkpoints; with ``train.checkpoint_every``
    the shared stages' resume files too, continued after a kill (`fresh`: ignore them)."""
    import sys

    import torch

    from iml.lm import distributed
    from iml.lm.export import save_run_model
    from iml.lm.models import load_model
    from iml.lm.tagging import build
    from iml.lm.tokenizer import find_atomic_tokens, train_tokenizer
    from iml.lm.train import Resume, ResumeMismatch, train_stage

    t_start = time.time()
    torch.set_num_threads(cfg.train.threads)
    device = distributed.device(resolve_device(cfg.train.device, "train.device"))  # this rank's GPU under torchrun

    # Data for every configured stage-2 seed (not only the missing ones), so that the tokenizer and
    # the set names never depend on what a previous, killed run had already finished.
    datas = {}
    for j in cfg.seeds.stage2:
        dc = dataclasses.replace(cfg.data, seed=s1, seed_stage2=j)
        datas[j] = build(dc)
    for i, st in enumerate(cfg.stages):
        if st.split not in datas[cfg.seeds.stage2[0]].splits:
            raise ConfigError(f"stages[{i}].split", f"unknown split {st.split!r}; the data has "
                                                    f"{', '.join(s for s in datas[cfg.seeds.stage2[0]].splits if s.startswith('train'))}")
        for j, d in datas.items():
            if not d.splits[st.split]:
                raise ConfigError(f"stages[{i}].split", f"split {st.split!r} has no rows at data.num_ents="
                                                        f"{cfg.data.num_ents} with these data.fractions (stage-2 seed "
                                                        f"{j}); raise data.num_ents or its subsets' fractions")
    shared, branch = cfg.stages[: cfg.branch], cfg.stages[cfg.branch:]
    for i, st in enumerate(shared):
        keys = {_set_key(d.splits[st.split]) for d in datas.values()}
        if len(keys) != 1:
            raise ConfigError(f"stages[{i}].split", f"split {st.split!r} differs between stage-2 seeds, so stage "
                                                    f"{st.name!r} cannot be shared; set branch_stage <= {i}")

    # Model and tokenizer
    if cfg.model.from_scratch:
        texts = [r["text"] for d in datas.values() for rows in d.splits.values() for r in rows]
        extra = [a for d in datas.values() for a in list(d.aliases.values()) + list(d.tags.values())
                 + list(getattr(d, "qd4_tags", {}).values())]
        tok = train_tokenizer(texts, cfg.tokenizer, atomic_tokens=find_atomic_tokens(texts, extra))
        model, tok = load_model(cfg.model, tok, seed=derive_seed(s1, "init"))
    else:
        # A pretrained model is loaded once per process; later stage-1 seeds reset it to its weights.
        key = repr(to_dict(cfg.model))
        if key in _INIT_CACHE:
            model, tok, init = _INIT_CACHE[key]
            model.load_state_dict(init)
        else:
            _INIT_CACHE.clear()
            model, tok = load_model(cfg.model, None)
            _INIT_CACHE[key] = (model, tok, _snapshot(model))
    model.to(device)
    evaluator = _Evaluator(cfg, datas)
    ev = cfg.eval

    tables: dict[int, list[dict]] = {j: [] for j in todo}
    extras: dict[int, dict] = {j: {"stages": {}} for j in todo}

    def add(js, stage_name, epoch, rows_by_j=None, loss=None, run_suffix=""):
        for j in js:
            base = {"run_id": unit_id(s1, j) + run_suffix, "seed_stage1": s1, "seed_stage2": j,
                    "stage": stage_name, "epoch": epoch}
            if rows_by_j is not None:
                tables[j] += [{**base, **r} for r in rows_by_j[j]]
            if loss is not None:
                tables[j].append({**base, "subset": "train", "metric": "loss", "value": float(loss)})

    # Resume files of the shared stages (train.checkpoint_every): the last one a killed run wrote is continued
    ckpt_dir = result_dir / "checkpoints" / f"s{s1}"
    resume_files = [ckpt_dir / f"{st.name}.resume.pt" for st in shared] if cfg.train.checkpoint_every else []
    found = [i for i, p in enumerate(resume_files) if p.exists() and not fresh]
    resume_at = found[-1] if found else None  # the stages before it are done, their rows are in its file
    if ckpt_dir.exists() and resume_at is None and distributed.is_main():
        shutil.rmtree(ckpt_dir)  # a killed run's: this seed's Stage 1 starts again, its checkpoints are stale
    distributed.barrier()  # under torchrun: no rank reads what rank 0 is deleting

    # Epoch 0
    if ev.at_start and resume_at is None:
        add(todo, "init", 0, evaluator(model, tok, todo))

    # Shared stages (trained once for all stage-2 seeds of s1)
    offset = 0
    checkpoints: dict[int, Any] = {}
    from_eps = cfg.from_epochs()
    eval_time = [0.0]

    def keep_ckpt(epoch: int):
        if cfg.checkpoints == "memory" and not resume_files:
            checkpoints[epoch] = _snapshot(model)
        else:  # on disk, also for resume files (they name these checkpoints)
            from safetensors.torch import save_file

            p = ckpt_dir / f"epoch{epoch:04d}.safetensors"
            if distributed.is_main():
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in _snapshot(model).items()}, str(p))
            distributed.barrier()  # under torchrun every rank reads rank 0's file
            checkpoints[epoch] = p

    def progress_state():  # what a resume file keeps of this seed besides the model (see train.Resume)
        return {"tables": tables, "extras": extras, "checkpoints": checkpoints, "eval_time": eval_time[0],
                "elapsed": time.time() - t_start}

    def restore_progress(state):
        nonlocal t_start
        for j in todo:
            tables[j][:] = state["tables"][j]
            extras[j]["stages"] = dict(state["extras"][j]["stages"])
        checkpoints.clear()
        checkpoints.update(state["checkpoints"])
        eval_time[0] = state["eval_time"]
        t_start = time.time() - state["elapsed"]

    if not shared:
        keep_ckpt(0)
    for si, st in enumerate(shared):
        sched = _stage_schedule(cfg, st)
        last_shared = si == len(shared) - 1
        if resume_at is not None and si < resume_at:  # finished by the killed run (a later stage's file)
            offset += st.epochs
            continue

        def cb(epoch, m, log, st=st, sched=sched, offset=offset, last_shared=last_shared):
            g = offset + epoch
            t = time.perf_counter()
            rows = evaluator(m, tok, todo, ev.train_sets if epoch == st.epochs else []) if epoch in sched else None
            eval_time[0] += time.perf_counter() - t
            add(todo, st.name, g, rows, loss=log.epoch_losses[-1])
            if last_shared and epoch in from_eps:
                keep_ckpt(epoch)
                if cfg.save_models and distributed.is_main():  # the model each Stage 2 starts from (iml.lm.export)
                    save_run_model(cfg, result_dir, m, tok, s1, None,
                                   st.name if epoch == from_eps[-1] else f"{st.name}_epoch{epoch}", g)

        resume = Resume(resume_files[si], progress_state, restore_progress, key=[s1, todo],
                        at_end=not last_shared) if resume_files else None
        try:
            log = train_stage(model, tok, datas[todo[0]].splits[st.split], st, cfg.train,
                              seed=derive_seed(s1, "shuffle", st.name), on_epoch_end=cb, progress=progress,
                              desc=f"s{s1} {st.name}", resume=resume)
        except ResumeMismatch as e:  # a stale file (other units to do, other code): the seed starts again
            if distributed.is_main():
                print(f"[{EXPERIMENT}] s{s1}: {e}", file=sys.stderr, flush=True)
            yield from _run_stage1_seed(cfg, result_dir, s1, todo, progress, fresh=True)
            return
        for j in todo:
            extras[j]["stages"][st.name] = log.summary()
        offset += st.epochs
        if distributed.is_main():  # a finished stage's file supersedes the earlier ones; after the last, none is kept
            for p in resume_files[:si + 1 if last_shared else si]:
                p.unlink(missing_ok=True)
    shared_time = time.time() - t_start
    last_offset = offset - (shared[-1].epochs if shared else 0)

    # Branch stages, per stage-2 seed and start checkpoint
    final = from_eps[-1]
    for j in todo:
        t_unit = time.time()
        for e in from_eps:
            ck = checkpoints[e]
            if isinstance(ck, Path):
                from safetensors.torch import load_file

                ck = load_file(str(ck))
            model.load_state_dict(ck)
            suffix = "" if e == final else f"-from{e}"
            off = last_offset + e
            for st in branch:
                sched = _stage_schedule(cfg, st)
                label = st.name if e == final else f"{st.name}_from{e}"

                def cb(epoch, m, log, st=st, sched=sched, off=off, label=label, suffix=suffix):
                    t = time.perf_counter()
                    rows = (evaluator(m, tok, [j], ev.train_sets if epoch == st.epochs else [])
                            if epoch in sched else None)
                    eval_time[0] += time.perf_counter() - t
                    add([j], label, off + epoch, rows, loss=log.epoch_losses[-1], run_suffix=suffix)

                log = train_stage(model, tok, datas[j].splits[st.split], st, cfg.train,
                                  seed=derive_seed(s1, j, "shuffle", st.name, e), on_epoch_end=cb,
                                  progress=progress, desc=f"s{s1}-{j} {label}")
                extras[j]["stages"][label] = log.summary()
                off += st.epochs
                if cfg.save_models and distributed.is_main():
                    save_run_model(cfg, result_dir, model, tok, s1, j, label, off)
        unit_time = time.time() - t_unit
        uid = unit_id(s1, j)
        table = pd.DataFrame(tables[j], columns=results_mod.COLUMNS)
        extra = {**extras[j], "wall_time_s": round(unit_time + shared_time / len(todo), 3),
                 "branch_wall_time_s": round(unit_time, 3), "shared_wall_time_s": round(shared_time, 3),
                 "shared_with_units": [unit_id(s1, k) for k in todo],
                 "eval_time_s_so_far": round(eval_time[0], 3), "device": str(device),
                 "n_params": int(sum(p.numel() for p in model.parameters())), "vocab_size": len(tok)}
        yield uid, table, extra
    if ckpt_dir.exists() and distributed.is_main():  # disk checkpoints, resume files
        shutil.rmtree(ckpt_dir)
        with contextlib.suppress(OSError):
            ckpt_dir.parent.rmdir()  # checkpoints/ once no seed has any
