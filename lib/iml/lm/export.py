"""Artefacts for reuse outside this library: trained models and the tagged dataset, each written as one folder,
atomically (built in a temporary folder beside the target, then renamed into place), so a killed run never leaves
a half-written one.

* :func:`save_model`: ``save_pretrained`` (safetensors) of a model and its tokenizer, plus a model card
  ``README.md`` (YAML front matter) and ``iml_model.json`` naming the experiment, config hash, unit, stage, epoch
  and git revision. The main experiment calls it through :func:`save_run_model` when ``save_models`` is set:
  ``<result_dir>/models/s<seed1>/<stage>`` (the Stage-1 model each Stage 2 starts from) and
  ``<result_dir>/models/s<seed1>_<seed2>/<stage>`` (each Stage-2 model). Reload with
  ``AutoModelForCausalLM.from_pretrained(folder)`` and ``AutoTokenizer.from_pretrained(folder)``.
* :func:`export_dataset` (``iml data export``): the main experiment's tagged dataset, every split, as
  ``hf/`` (``datasets.DatasetDict.save_to_disk``), ``parquet/<split>.parquet`` and ``metadata.json`` (tags,
  aliases <-> entities, config hash, input hashes, git revision, file checksums). Needs the ``hf`` extra
  (``datasets``, ``pyarrow``); saving models does not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from iml.core import env
from iml.core.config import ConfigError, config_hash, to_dict
from iml.core.files import sha256_file

__all__ = ["save_model", "save_run_model", "model_dir", "export_dataset", "require_hf", "atomic_dir",
           "EXPORT_KIND", "MODEL_CARD_JSON"]

EXPORT_KIND = "iml-tagged-dataset"
"""The ``kind`` of an export's metadata.json; ``--force`` replaces only a folder holding one."""
MODEL_CARD_JSON = "iml_model.json"


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `dest`; on success it replaces `dest` (an existing `dest` is moved
    aside first and deleted after the rename), on failure it is deleted and `dest` is left as it was."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

def _card_text(info: Mapping[str, Any]) -> str:
    import yaml

    front = {"library_name": "transformers", "tags": ["iml-companion", "implicit-meta-learning"], "iml": dict(info)}
    unit = info.get("unit") or info.get("units")
    return (f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
            f"# {info.get('experiment', 'iml')} {info.get('config_hash', '')}: {info.get('stage', '')}, "
            f"{unit}\n\n"
            f"A model trained by the companion to Krasheninnikov et al., *Implicit meta-learning may lead language "
            f"models to trust more reliable sources* (ICML 2024, arXiv:2310.15047): experiment "
            f"`{info.get('experiment')}`, config hash `{info.get('config_hash')}` (its result folder holds the full "
            f"config.json), unit `{unit}`, stage `{info.get('stage')}` at epoch {info.get('epoch')} (epochs count "
            f"across stages), git revision `{info.get('git_revision')}`.\n\n"
            f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"model = AutoModelForCausalLM.from_pretrained(\"path/to/this/folder\")\n"
            f"tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")\n```\n\n"
            f"A research artefact of a small-scale reproduction, not a model for any use beyond studying it.\n")


def save_model(model, tokenizer, dest: str | Path, info: Mapping[str, Any] | None = None) -> Path:
    """Write `model` (``save_pretrained``, safetensors) and `tokenizer` to the folder `dest`, atomically, with a
    model card ``README.md`` and ``iml_model.json`` holding `info` (plus ``git_revision`` and ``saved_at`` unless
    given). An existing `dest` is replaced. The model is not modified (weights, mode and device stay)."""
    info = {**dict(info or {})}
    info.setdefault("git_revision", env.git_revision())
    info.setdefault("saved_at", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar per save would break the logs
    try:
        with atomic_dir(dest) as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
            (tmp / "README.md").write_text(_card_text(info))
            (tmp / MODEL_CARD_JSON).write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return Path(dest)


def model_dir(result_dir: str | Path, seed_stage1: int, seed_stage2: int | None, stage: str) -> Path:
    """``<result_dir>/models/s<seed1>/<stage>`` (a shared Stage-1 model) or ``.../s<seed1>_<seed2>/<stage>``."""
    unit = f"s{seed_stage1}" if seed_stage2 is None else f"s{seed_stage1}_{seed_stage2}"
    return Path(result_dir) / "models" / unit / stage


def save_run_model(cfg, result_dir: str | Path, model, tokenizer, seed_stage1: int, seed_stage2: int | None,
                   stage: str, epoch: int, experiment: str = "main") -> Path:
    """The main experiment's hook (``save_models``): save the model of stage `stage` (its label, e.g. ``stage1``,
    ``stage1_epoch8``, ``stage2_from8``) after global epoch `epoch` under :func:`model_dir`. A Stage-1 model
    (`seed_stage2` None) is shared by the units of every stage-2 seed of `seed_stage1`."""
    stage2 = list(cfg.seeds.stage2)
    units = ([f"s{seed_stage1}-{j}" for j in stage2] if seed_stage2 is None else [f"s{seed_stage1}-{seed_stage2}"])
    info = {"experiment": experiment, "config_hash": config_hash(cfg), "unit": units[0] if len(units) == 1 else None,
            "units": units, "seed_stage1": seed_stage1, "seed_stage2": seed_stage2, "stage": stage,
            "epoch": int(epoch), "model": cfg.model.name, "inputs": dict(getattr(cfg, "inputs", {}) or {})}
    if info["unit"] is None:
        del info["unit"]
    return save_model(model, tokenizer, model_dir(result_dir, seed_stage1, seed_stage2, stage), info)


# ----------------------------------------------------------------------------------------------
# The tagged dataset
# ----------------------------------------------------------------------------------------------

def require_hf(what: str = "this") -> None:
    """Raise a one-line ImportError when the ``hf`` extra (``datasets``, ``pyarrow``) is missing."""
    import importlib.util

    missing = [m for m in ("datasets", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{what} needs the package{'s' if len(missing) > 1 else ''} {', '.join(missing)}: "
                          f"pip install 'iml-companion[hf]' (or pip install {' '.join(missing)})")


def _out_problem(out: Path, force: bool) -> str | None:
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a directory"
    if out.is_dir() and any(out.iterdir()):
        if not force:
            return f"{out} exists and is not empty; choose another folder or pass --force to replace it"
        try:
            kind = json.loads((out / "metadata.json").read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind != EXPORT_KIND:
            return f"{out} is not an earlier `iml data export` folder (no metadata.json of kind {EXPORT_KIND!r}); " \
                   f"--force only replaces those"
    return None


def export_dataset(cfg, out: str | Path, *, seed_stage1: int | None = None, seed_stage2: int | None = None,
                   force: bool = False, experiment: str = "main", extra: Mapping[str, Any] | None = None) -> Path:
    """Write the tagged dataset that unit ``s<seed_stage1>-<seed_stage2>`` of the main-experiment config `cfg`
    trains and is evaluated on (default: its first unit) to the folder `out`: ``hf/`` (``save_to_disk``),
    ``parquet/<split>.parquet`` and ``metadata.json``. Bad input (an existing non-empty `out` without `force`,
    seeds the config lacks) is a ConfigError naming the option; a missing ``datasets`` an ImportError."""
    require_hf("exporting the dataset")
    s1 = cfg.seeds.stage1[0] if seed_stage1 is None else seed_stage1
    j = cfg.seeds.stage2[0] if seed_stage2 is None else seed_stage2
    if s1 not in cfg.seeds.stage1:
        raise ConfigError("--seed-stage1", f"{s1} is not a stage-1 seed of this config ({cfg.seeds.stage1[0]}.."
                                           f"{cfg.seeds.stage1[-1]}); set seeds.start_seed / seeds.n_stage1")
    if j not in cfg.seeds.stage2:
        raise ConfigError("--seed-stage2", f"{j} is not a stage-2 seed of this config (0..{cfg.seeds.stage2[-1]}); "
                                           f"set seeds.n_stage2")
    out = Path(out).expanduser()
    if (problem := _out_problem(out, force)) is not None:
        raise ConfigError("--out", problem)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("--out", f"cannot create {out.parent} ({e.strerror or e})") from None

    import datasets

    from iml.lm.tagging import build

    dc = dataclasses.replace(cfg.data, seed=s1, seed_stage2=j)  # what iml.lm.experiment trains unit s1-j on
    data = build(dc)
    dsd = data.to_datasetdict()
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one "Saving the dataset" bar per split otherwise
    try:
        with atomic_dir(out) as tmp:
            dsd.save_to_disk(str(tmp / "hf"))
            _write_parquet_and_meta(tmp, cfg, dc, data, dsd, experiment, extra)
    finally:
        if bars:
            datasets.enable_progress_bars()
    return out


def _write_parquet_and_meta(tmp: Path, cfg, dc, data, dsd, experiment: str, extra: Mapping[str, Any] | None) -> None:
    """The parquet files and metadata.json of :func:`export_dataset`, into its temporary folder `tmp`."""
    import datasets
    import pyarrow
    import pyarrow.parquet as pq

    from iml.lm.vocab import COLUMNS

    (tmp / "parquet").mkdir()
    sums = {}
    for name, ds in dsd.items():
        p = tmp / "parquet" / f"{name}.parquet"
        pq.write_table(ds.data.table, str(p))  # the same Arrow table save_to_disk wrote
        sums[f"parquet/{name}.parquet"] = sha256_file(p)
    meta = {
        "kind": EXPORT_KIND,
        "experiment": experiment,
        "config_hash": config_hash(cfg),
        "unit": f"s{dc.seed}-{dc.seed_stage2}",
        "seed_stage1": dc.seed,
        "seed_stage2": dc.seed_stage2,
        "inputs": dict(getattr(cfg, "inputs", {}) or {}),
        "git_revision": env.git_revision(),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "packages": {"datasets": datasets.__version__, "pyarrow": pyarrow.__version__},
        **dict(extra or {}),
        "columns": list(COLUMNS),
        "splits": {name: len(rows) for name, rows in data.splits.items()},
        "tags": dict(data.tags),
        "qd4_tags": dict(data.qd4_tags),
        "aliases": dict(data.aliases),
        "entities": {a: e for e, a in data.aliases.items()},
        "defined_as": dict(data.defined_as),
        "subsets": {k: list(v) for k, v in data.subsets.items()},
        "heldout": dict(data.heldout),
        "data_config": to_dict(dc),
        "config": to_dict(cfg),
        "sha256": sums,
    }
    (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
