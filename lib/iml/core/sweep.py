"""The one sweep engine: a sweep is a list of ordinary experiment configs (its points), each its own result under
``results/<experiment>/<hash>``, computed in parallel processes when asked and compared seed by seed.

A study module (``iml.mnist.batch_size``, ``iml.mnist.alpha``, ``iml.mnist.gradient_alignment``) says which
points a sweep has (``configs``) and how to read them (``summary``, ``table``, ``verdict``); this module runs and
finds them, and ``iml sweep NAME`` drives any of them.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence

import pandas as pd

from iml.core.config import ConfigError
from iml.core.results import ResultStore, StaleResultError, load
from iml.core.stats import seed_interval

__all__ = ["run_points", "finished_points", "find_largest", "labelled", "seed_paired_difference"]


def run_points(run: Callable, experiment: str, cfgs: Sequence, *, root=None, force: bool = False,
               progress: bool = True, workers: int = 1, cost: Callable[[Any], float] | None = None) -> list:
    """``run(cfg, root=, force=, progress=)`` (an experiment's module-level run) for every config, in order.

    With ``workers > 1`` the unfinished points are first computed in that many spawned processes (one torch
    thread each), the costliest first by `cost(cfg)`; each point is an independent result, written atomically."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be an integer >= 1, got {workers!r}")
    todo = [c for c in cfgs if force or not ResultStore(experiment, c, root=root).is_complete()]
    if workers > 1 and len(todo) > 1:
        if cost is not None:
            todo.sort(key=lambda c: -cost(c))
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            for f in [pool.submit(_run_point, run, c, root, force) for c in todo]:
                f.result()  # re-raises a point's error here
        force = False  # computed just now
    return [run(c, root=root, force=force, progress=progress) for c in cfgs]


def _run_point(run: Callable, cfg, root, force: bool) -> str:
    import torch

    torch.set_num_threads(1)
    return run(cfg, root=root, force=force, progress=False).hash


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the sweep's process ends, even by ``kill -9`` (which runs no
    cleanup), instead of computing on as an orphan. On Linux the kernel sends SIGKILL (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread sees the parent pid change."""
    if not _kernel_kills_with_parent():
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="iml-watch-parent").start()
    if os.getppid() != parent_pid:  # it died before the above took effect
        os._exit(1)


def _kernel_kills_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (strictly: the thread that started it, here the one
    in run_points waiting for the pool); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, interval: float = 0.5) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval)
    os._exit(1)


def finished_points(experiment: str, cfgs: Sequence, root=None) -> list | None:
    """The finished results of `experiment` for every config, or None if any is missing or stale (a sweep is
    shown whole or not at all)."""
    out = []
    for c in cfgs:
        try:
            out.append(load(experiment, c, root=root))
        except (FileNotFoundError, StaleResultError):
            return None
    return out


def find_largest(finished_fn: Callable, roots: Sequence, names: Sequence[str] = ("gpu", "cpu")
                 ) -> tuple[str, list] | None:
    """(sweep name, results) of the first of `names` (largest scale first) that ``finished_fn(name, root)`` finds
    finished under any of `roots`, or None."""
    for name in names:
        for r in roots:
            rs = finished_fn(name, r)
            if rs is not None:
                return name, rs
    return None


def labelled(found: tuple[str, list] | None) -> tuple[str, list] | None:
    """:func:`find_largest`'s (sweep name, results) as the claims page names it: ("<name> sweep", results)."""
    return (found[0] + " sweep", found[1]) if found else None


def seed_paired_difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> dict:
    """mean(a − b) over the stage-1 seeds both series hold (index: seed), with a t-interval over seeds and
    the one-sided p for a − b > 0: dict(diff, ci_low, ci_high, p_one_sided, n_seeds, sd)."""
    common = a.index.intersection(b.index)
    if len(common) < 2:
        raise ValueError(f"the two results share {len(common)} stage-1 seed(s); a trend needs at least 2")
    iv = seed_interval((a[common] - b[common]).to_numpy(), level)
    return {"diff": iv.mean, "ci_low": iv.ci_low, "ci_high": iv.ci_high, "p_one_sided": iv.p_one_sided,
            "n_seeds": iv.n, "sd": iv.sd}
