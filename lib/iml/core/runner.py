"""The one unit runner: every experiment computes its result as units (seed groups, or a stage-1 seed's stage-2
runs), saves each unit atomically as it finishes, resumes from the finished ones, and writes the result
when all are there. Experiments only say which units exist and how to compute them."""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from iml.core import files
from iml.core.config import ConfigError, from_dict
from iml.core.lock import result_lock
from iml.core.results import Result, ResultStore, load

__all__ = ["Job", "run_units", "as_config", "resolve_root", "planning", "Planned"]

Computed = Iterable[tuple[str, pd.DataFrame, Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Job:
    """Units computed together. ``compute(todo)`` gets the job's units still to do (in order) and yields
    ``(unit id, table, extra)`` for each as it finishes; `key` names the job for ``run_units(only=...)``."""
    units: tuple[str, ...]
    compute: Callable[[list[str]], Computed]
    key: Any = None


class Planned(Exception):
    """Raised by :func:`run_units` inside :func:`planning`: the folder (`store`) and `jobs` a run would compute."""

    def __init__(self, store: ResultStore, jobs: Sequence[Job]):
        super().__init__(f"planned {store.dir}")
        self.store, self.jobs = store, tuple(jobs)


_PLANNING = contextvars.ContextVar("iml_runner_planning", default=False)


@contextlib.contextmanager
def planning():
    """Within it, :func:`run_units` computes, locks and writes nothing: it raises :class:`Planned` with the folder
    and jobs it was handed (``iml submit`` / ``iml status`` learn a run's units through the experiment's own run)."""
    token = _PLANNING.set(True)
    try:
        yield
    finally:
        _PLANNING.reset(token)


def as_config(cls, config, experiment: str):
    """`config` as a `cls` instance: an instance passes, a mapping is read with ``from_dict``; anything else is a
    TypeError naming what was expected."""
    if isinstance(config, cls):
        return config
    if isinstance(config, Mapping):
        return from_dict(cls, config)
    raise TypeError(f"{experiment}: config must be a {cls.__module__}.{cls.__name__} or a mapping, "
                    f"got {type(config).__name__}")


def resolve_root(experiment: str, config, root=None, force: bool = False) -> Path:
    """The results root a run of `config` uses: `root` when given; else the committed results/ when the result is
    finished there (it is only read), else the git-ignored runs/ (:data:`iml.core.files.RUNS_DIR`)."""
    if root is not None:
        return Path(root)
    if not force and ResultStore(experiment, config, root=files.RESULTS_DIR).is_complete():
        return files.RESULTS_DIR
    return files.RUNS_DIR


def run_units(experiment: str, config, jobs: Sequence[Job], *, root=None, force: bool = False,
              progress: bool = True, meta: Callable[[ResultStore, list[str]], Mapping[str, Any]] | None = None,
              only: Iterable | None = None, stop_by: float | None = None,
              shard: tuple[int, int] | None = None) -> Result | None:
    """The finished result of `config`: loaded when it exists (unless `force`), else the missing units of
    `jobs` are computed and the result written.

    Without `root`, a result finished in the committed results/ is loaded from there and anything computed goes
    to the git-ignored runs/ (:func:`resolve_root`). `force` recomputes every unit (each overwritten atomically;
    nothing is deleted first). `only` restricts
    this call to the jobs with those keys, and `stop_by` (a ``time.time()`` value) stops it before a job that
    the previous job's duration says would end later: such a call returns None unless every unit is then
    done. `shard` ``(i, n)`` computes only the jobs whose position in `jobs` is i modulo n (one process or array
    task per shard, ``iml run --shard I/N``); the shard that finds every unit done writes the result.
    `meta(store, unit_ids)` adds experiment-specific fields to meta.json.

    Computing holds the folder's lock (:func:`iml.core.lock.result_lock`; shared by `only` and `shard` runs): a
    run of the same config already computing makes this one raise ResultLockedError. Loading a finished result
    takes none.
    """
    root = resolve_root(experiment, config, root, force)
    store = ResultStore(experiment, config, root=root)
    if _PLANNING.get():
        raise Planned(store, jobs)
    if store.is_complete() and not force:
        return load(experiment, config, root=root)
    if shard is not None:
        i, n = shard
        if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
            raise ConfigError("shard", f"must be I/N with 0 <= I < N, got {i}/{n}")
    with result_lock(store.dir, shared=only is not None or shard is not None) as alone:
        if store.is_complete() and not force:  # finished by the run that held the lock until just now
            return load(experiment, config, root=root)
        if alone:
            _remove_leftovers(store)
        keys = None if only is None else set(only)
        t0, computed, last = time.time(), [], None
        for k, job in enumerate(jobs):
            if keys is not None and job.key not in keys:
                continue
            if shard is not None and k % shard[1] != shard[0]:
                continue
            todo = [u for u in job.units if force or not store.unit_done(u)]
            if not todo:
                continue
            if stop_by is not None and last is not None and time.time() + last > stop_by:
                break
            t1 = time.time()
            for uid, table, extra in job.compute(todo):
                store.save_unit(uid, table, extra)
                computed.append(uid)
                if progress:
                    print(f"[{experiment}] unit {uid} done ({time.time() - t1:.1f}s)", file=sys.stderr, flush=True)
            last = time.time() - t1
        unit_ids = [u for job in jobs for u in job.units]
        if not all(store.unit_done(u) for u in unit_ids):
            return None
        store.finalize(unit_ids, meta={"units_computed_last_run": computed,
                                       "last_run_wall_time_s": round(time.time() - t0, 2),
                                       **(dict(meta(store, unit_ids)) if meta else {})})
        return load(experiment, config, root=root)


def _remove_leftovers(store: ResultStore) -> None:
    """Delete the atomic writes' temporary files (``.<name>.XXXX.tmp``) in the folder and its units/: with the
    lock held by this run alone, they are what a killed run left."""
    for d in (store.dir, store.units_dir):
        for p in d.glob(".*.tmp"):
            p.unlink(missing_ok=True)
