"""Result files with provenance: one tidy long table per experiment and config.

Layout::

    results/<experiment>/<config-hash>/
        config.json      the resolved config that made these numbers (its hash is the folder name)
        results.csv      tidy table, columns COLUMNS, one row per (run, stage, epoch, subset, metric)
        meta.json        git revision, package versions, hardware, wall time, units finished, and the
                         sha256 of results.csv, config.json and every unit file
        units/<id>.csv   per-unit tables written as each unit (a stage-1 x stage-2 seed pair, or a
                         seed group) finishes; a killed sweep resumes from these.
        units/<id>.json  its git revision, wall time and the sha256 of its .csv (written after the .csv:
                         a unit counts as done only once both are there)

All files are written atomically. :func:`load` refuses a result whose stored config does not hash to
the requested one, so a figure can never show numbers from a different config by accident, and a file
whose bytes do not match the checksum recorded for it (an edited or truncated table).
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from iml.core import env, files
from iml.core.config import config_hash, to_dict

COLUMNS = ["run_id", "seed_stage1", "seed_stage2", "stage", "epoch", "subset", "metric", "value"]

__all__ = ["COLUMNS", "ResultStore", "Result", "load", "load_dir", "StaleResultError", "CorruptResultError",
           "check_table", "stage_boundaries", "pool_seeds", "environments", "add_checksums", "cut_from"]


class StaleResultError(RuntimeError):
    """The stored result was made by a different config than the one asked for."""


class CorruptResultError(StaleResultError):
    """A result file's bytes do not match the sha256 recorded for it (edited, truncated or replaced)."""


def _check_sha(path: Path, recorded: str | None, where: str) -> None:
    if not recorded:
        raise CorruptResultError(f"{path}: {where} records no sha256 for it (a result written before checksums, "
                                 f"2026-12-02, or a damaged one); delete the folder and rerun")
    got = files.sha256_file(path)
    if got != recorded:
        raise CorruptResultError(f"{path}: its sha256 {got[:12]}… is not the {recorded[:12]}… that {where} "
                                 f"records: the file was edited or truncated after it was written; delete the "
                                 f"folder and rerun")


def check_table(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` with exactly COLUMNS, in order; raise if any is missing."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"result table lacks columns {missing}; it has {list(df.columns)}")
    return df[COLUMNS].reset_index(drop=True)


def _config_dict(config: Any) -> dict:
    d = to_dict(config)
    if not isinstance(d, dict):
        raise TypeError(f"config must be a dataclass or a mapping, got {type(config).__name__}")
    return d


def _safe_id(unit_id: str) -> str:
    if not unit_id or any(c in unit_id for c in "/\\") or unit_id.startswith("."):
        raise ValueError(f"bad unit id {unit_id!r}")
    return unit_id


class ResultStore:
    """Where one experiment+config writes its results; supports resuming unit by unit."""

    def __init__(self, experiment: str, config: Any, root: str | Path | None = None):
        if not experiment or "/" in experiment:
            raise ValueError(f"bad experiment name {experiment!r}")
        self.experiment = experiment
        self.config = _config_dict(config)
        self.hash = config_hash(self.config)
        self.root = Path(root) if root is not None else files.RESULTS_DIR
        self.dir = self.root / experiment / self.hash
        self.units_dir = self.dir / "units"
        self._t0 = time.time()

    # -- units ------------------------------------------------------------------------------
    def unit_path(self, unit_id: str) -> Path:
        return self.units_dir / f"{_safe_id(unit_id)}.csv"

    def unit_done(self, unit_id: str) -> bool:
        """Both the unit's table and its .json (written second, with the table's checksum) are there."""
        path = self.unit_path(unit_id)
        return path.exists() and path.with_suffix(".json").exists()

    def done_units(self) -> list[str]:
        if not self.units_dir.exists():
            return []
        return sorted(p.stem for p in self.units_dir.glob("*.csv") if p.with_suffix(".json").exists())

    def save_unit(self, unit_id: str, table: pd.DataFrame, extra: Mapping[str, Any] | None = None) -> Path:
        """Write one finished unit (atomically). `extra` (e.g. its wall time) goes to a .json beside it,
        with the git revision that computed the unit."""
        self._write_config()
        path = self.unit_path(unit_id)
        table = check_table(table)
        with files.atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
            sha = files.sha256_file(tmp)
        # the revision that computed this unit: a resumed run's units may come from several
        extra = {k: v for k, v in dict(extra or {}).items() if k != "sha256"}
        extra.setdefault("git_revision", env.git_revision())
        files.write_json(path.with_suffix(".json"), {**extra, "sha256": sha})
        return path

    def load_unit(self, unit_id: str) -> pd.DataFrame:
        """A finished unit's table, refused (CorruptResultError) if its bytes are not those its .json records."""
        path = self.unit_path(unit_id)
        _check_sha(path, self.unit_extra(unit_id).get("sha256"), path.with_suffix(".json").name)
        return pd.read_csv(path)

    def unit_extra(self, unit_id: str) -> dict:
        p = self.unit_path(unit_id).with_suffix(".json")
        return json.loads(p.read_text()) if p.exists() else {}

    # -- finishing ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        cfg_path = self.dir / "config.json"
        if not cfg_path.exists():
            files.write_json(cfg_path, self.config)

    def finalize(self, unit_ids: Iterable[str], meta: Mapping[str, Any] | None = None) -> Path:
        """Concatenate the given finished units into results.csv and write meta.json."""
        unit_ids = list(unit_ids)
        missing = [u for u in unit_ids if not self.unit_done(u)]
        if missing:
            raise RuntimeError(f"cannot finalize {self.dir}: units not finished: {missing[:5]}")
        tables = [self.load_unit(u) for u in unit_ids]
        table = check_table(pd.concat(tables, ignore_index=True)) if tables else pd.DataFrame(columns=COLUMNS)
        self._write_config()
        with files.atomic_path(self.dir / "results.csv") as tmp:
            table.to_csv(tmp, index=False)
            sha = files.sha256_file(tmp)
        full_meta = {
            "experiment": self.experiment,
            "config_hash": self.hash,
            "git_revision": env.git_revision(),
            "environment": env.environment_info(),
            "units": unit_ids,
            "unit_wall_time_s": {u: self.unit_extra(u).get("wall_time_s") for u in unit_ids},
            "unit_git_revisions": {u: self.unit_extra(u).get("git_revision") for u in unit_ids},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        full_meta.update(dict(meta or {}))
        full_meta["sha256"] = {"results.csv": sha, "config.json": files.sha256_file(self.dir / "config.json"),
                               **{f"units/{u}.csv": self.unit_extra(u)["sha256"] for u in unit_ids}}
        files.write_json(self.dir / "meta.json", full_meta)
        return self.dir

    def is_complete(self) -> bool:
        return (self.dir / "results.csv").exists() and (self.dir / "meta.json").exists()


@dataclasses.dataclass
class Result:
    experiment: str
    hash: str
    dir: Path
    table: pd.DataFrame
    config: dict
    meta: dict


def load(experiment: str, config: Any = None, *, hash: str | None = None,
         root: str | Path | None = None) -> Result:
    """Load a finished result by config (preferred) or by hash, under `root` (None: results/, then runs/).

    Refuses (StaleResultError) if the stored config.json does not hash to the folder's name or to the
    requested config's hash; raises FileNotFoundError naming the folder if nothing was computed yet.
    """
    if config is None and hash is None:
        raise ValueError("load() needs a config or a hash")
    want = config_hash(_config_dict(config)) if config is not None else hash
    if hash is not None and config is not None and hash != want:
        raise StaleResultError(f"hash {hash} was asked for, but the given config hashes to {want}")
    if root is None:  # the committed results first, then a run made without an explicit root
        found = [r for r in (files.RESULTS_DIR, files.RUNS_DIR) if (r / experiment / want / "results.csv").exists()]
        root = found[0] if found else files.RESULTS_DIR
    d = Path(root) / experiment / want
    if not (d / "results.csv").exists():
        units = sorted((d / "units").glob("*.csv")) if (d / "units").is_dir() else []
        partial = (f"; it holds {len(units)} finished unit(s) of an unfinished run, which the same config "
                   f"resumes" if units else "; run it first")
        raise FileNotFoundError(f"no finished result for experiment {experiment!r} with config hash {want} "
                                f"(looked in {d}){partial}")
    for f in ("config.json", "meta.json"):
        if not (d / f).is_file():
            raise FileNotFoundError(f"{d} has results.csv but no {f}: not a finished result (copied in part, or "
                                    f"damaged); delete the folder and rerun")
    stored = json.loads((d / "config.json").read_text())
    got = config_hash(stored)
    if got != want:
        raise StaleResultError(f"{d}: stored config hashes to {got}, not {want}; the result is stale "
                               f"(delete the folder and rerun)")
    meta = json.loads((d / "meta.json").read_text())
    sums = meta.get("sha256") or {}
    for f in ("config.json", "results.csv"):
        _check_sha(d / f, sums.get(f), "meta.json")
    table = check_table(pd.read_csv(d / "results.csv"))
    return Result(experiment, want, d, table, stored, meta)


def load_dir(path: str | Path) -> Result:
    """Load a result folder directly (for `iml show`), checking its hash against its own config."""
    d = Path(path)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d} is not a result folder (no config.json)")
    return load(d.parent.name, hash=d.name, root=d.parent.parent)


def add_checksums(path: str | Path) -> None:
    """Record the sha256 of a finished result's files (results.csv, config.json, each unit) in its meta.json and
    unit .json files, as :meth:`ResultStore.finalize` does: once, for results finished before checksums existed
    (2026-12-02). Refuses a result whose results.csv is not its units' concatenation."""
    d = Path(path)
    meta = json.loads((d / "meta.json").read_text())
    units = list(meta.get("units") or [])
    if units:
        joined = pd.concat([pd.read_csv(d / "units" / f"{u}.csv") for u in units], ignore_index=True)
        try:  # to float-printing precision: some were joined on another machine
            pd.testing.assert_frame_equal(check_table(joined), check_table(pd.read_csv(d / "results.csv")),
                                          check_exact=False, rtol=1e-9, atol=0)
        except AssertionError:
            raise CorruptResultError(f"{d}: results.csv is not the concatenation of its units; not checksummed"
                                     ) from None
    sums = {"results.csv": files.sha256_file(d / "results.csv"), "config.json": files.sha256_file(d / "config.json")}
    for u in units:
        p = d / "units" / f"{u}.csv"
        extra = json.loads(p.with_suffix(".json").read_text()) if p.with_suffix(".json").exists() else {}
        extra["sha256"] = sums[f"units/{u}.csv"] = files.sha256_file(p)
        files.write_json(p.with_suffix(".json"), extra)
    files.write_json(d / "meta.json", {**meta, "sha256": sums})


def cut_from(result) -> str | None:
    """The config hash of the run `result` was cut from (``iml.lm.experiment.finalize_completed``: the first k of
    ``planned_n_stage1`` stage-1 seeds), recomputed from its own config, or None when it is no cut or its meta's
    ``planned_config_hash`` claims a plan its config is not a cut of (an edited meta.json)."""
    meta, cfg = getattr(result, "meta", None) or {}, getattr(result, "config", None) or {}
    planned, n = meta.get("planned_config_hash"), meta.get("planned_n_stage1")
    seeds = cfg.get("seeds") if isinstance(cfg.get("seeds"), dict) else None
    if not planned or not isinstance(n, int) or seeds is None or not isinstance(seeds.get("n_stage1"), int):
        return None
    if not seeds["n_stage1"] < n or config_hash({**cfg, "seeds": {**seeds, "n_stage1": n}}) != planned:
        return None
    return planned


SEED_FIELDS = ("start_seed", "n_seeds")
"""The config fields that say only which stage-1 seeds a result holds."""


def pool_seeds(results: Iterable[Result]) -> Result:
    """One result from results of the same config on disjoint stage-1 seeds (e.g. seeds 0-19, then 20-29 added
    when a power analysis asked for more): the tables stacked, ``n_seeds`` summed, ``start_seed`` the lowest,
    the parts' hashes in ``pooled_from``. Refuses parts that differ in anything but :data:`SEED_FIELDS` or share a
    seed, so pooling never mixes two configs."""
    rs = list(results)
    if not rs:
        raise ValueError("pool_seeds needs at least one result")
    if len(rs) == 1:
        return rs[0]
    strip = lambda c: {k: v for k, v in c.items() if k not in SEED_FIELDS}  # noqa: E731
    for r in rs[1:]:
        if r.experiment != rs[0].experiment or strip(r.config) != strip(rs[0].config):
            raise ValueError(f"cannot pool {r.hash} with {rs[0].hash}: their configs differ beyond the seeds")
    seeds = [set(r.table["seed_stage1"].unique()) for r in rs]
    if sum(map(len, seeds)) != len(set().union(*seeds)):
        raise ValueError(f"cannot pool {[r.hash for r in rs]}: they share stage-1 seeds")
    config = {**rs[0].config, "start_seed": min(r.config["start_seed"] for r in rs),
              "n_seeds": sum(r.config["n_seeds"] for r in rs), "pooled_from": [r.hash for r in rs]}
    walls = {f"{r.hash}/{u}": w for r in rs for u, w in (r.meta.get("unit_wall_time_s") or {}).items()}
    meta = {"pooled_from": {r.hash: r.meta for r in rs}, "unit_wall_time_s": walls,
            "environment": rs[-1].meta.get("environment"), "git_revision": rs[-1].meta.get("git_revision")}
    table = pd.concat([r.table for r in rs], ignore_index=True)
    return Result(rs[0].experiment, "+".join(r.hash for r in rs), rs[0].dir, table, config, meta)


def environments(meta: Mapping[str, Any]) -> list[dict]:
    """The machines a result was computed on (meta.json's ``environment``): each pooled part's
    (:func:`pool_seeds`), else its own."""
    parts = [m.get("environment") for m in (meta.get("pooled_from") or {}).values() if isinstance(m, Mapping)]
    return [dict(e or {}) for e in parts] or [dict(meta.get("environment") or {})]


def stage_boundaries(table: pd.DataFrame) -> list[float]:
    """The epochs at which a stage ends and the next begins (the last epoch of every stage but the last).

    Stages are ordered by their first epoch, so names ('init', 'knowledge', 'stage1', ...) and numbers both
    work; a pseudo-stage evaluated only at one epoch before any training ('init') is no boundary.
    """
    if "stage" not in table or table.empty:
        return []
    span = table.groupby("stage")["epoch"].agg(["min", "max"])
    span = span[~((span["min"] == span["max"]) & (span["max"] <= table["epoch"].min()))]
    span = span.sort_values(["min", "max"])
    return [float(e) for e in span["max"].iloc[:-1]]
