"""Many seeds on a cluster through submitit (``iml submit / status / finalize``; the optional ``cluster`` extra).

A submitted job is one shard of an experiment's units, ``run(config, root=, shard=(i, n))`` of the experiment's
module: the one unit runner (:func:`iml.core.runner.run_units`) computes it, skips the units already on disk and,
in the shard that finds every unit done, writes the result. The shards go out as one job array, each job a
:class:`ShardJob` that submitit checkpoints and requeues when it is preempted or reaches its time limit: the
requeued job runs the same shard again and resumes from its last finished unit. Nothing here knows a task: the
caller passes the experiment's module (:mod:`iml.registry`).
"""
from __future__ import annotations

import dataclasses
import importlib
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from iml.core import files, runner
from iml.core.config import ConfigError, to_dict
from iml.core.lock import holder
from iml.core.results import Result, ResultStore, load

try:
    from submitit.helpers import Checkpointable
except ImportError:  # the `cluster` extra is not installed: submit() says so; plan, status and finalize need none
    Checkpointable = object

__all__ = ["EXECUTORS", "HINT", "Plan", "plan", "status", "finalize", "ShardJob", "Submission", "executor_parameters",
           "submit"]

EXECUTORS = ("slurm", "local", "debug")
"""submitit's executors: a SLURM job array; processes on this machine; in this process, one job after another."""
HINT = "pip install 'iml-companion[cluster]'"
DEFAULT_TIMEOUT_MIN = 24 * 60


@dataclasses.dataclass(frozen=True)
class Plan:
    """The result folder a config's run writes and its runner jobs' unit ids, in the runner's order (a shard
    ``(i, n)`` holds the jobs whose position is i modulo n)."""
    store: ResultStore
    jobs: tuple[tuple[str, ...], ...]

    @property
    def units(self) -> list[str]:
        return [u for job in self.jobs for u in job]

    def missing(self) -> list[str]:
        return [u for u in self.units if not self.store.unit_done(u)]

    def shards_missing(self, n: int) -> list[int]:
        """The shards of `n` that still have a unit to compute."""
        return sorted({k % n for k, job in enumerate(self.jobs) if any(not self.store.unit_done(u) for u in job)})


def plan(mod: ModuleType, config, root=None) -> Plan:
    """What ``mod.run(config, root=root)`` would compute, computing nothing: its run is called inside
    :func:`iml.core.runner.planning`, where the runner hands back its folder and jobs instead of computing them."""
    try:
        with runner.planning():
            res = mod.run(config, root=root, progress=False)
    except runner.Planned as p:
        return Plan(p.store, tuple(tuple(j.units) for j in p.jobs))
    if res is None:
        raise RuntimeError(f"{mod.__name__}.run returned without handing its units to run_units: cannot plan it")
    # the run loaded a finished result without asking the runner (iml.lm.experiment does)
    return Plan(ResultStore(res.experiment, res.config, root=res.dir.parent.parent),
                tuple((u,) for u in res.meta.get("units", [])))


def status(p: Plan) -> dict[str, Any]:
    """Units done and missing, who computes now (:func:`iml.core.lock.holder`: None, "shards" or a whole run; read
    only), and whether the result is written."""
    done, missing = [u for u in p.units if p.store.unit_done(u)], p.missing()
    running = None if p.store.is_complete() else holder(p.store.dir)
    return {"dir": p.store.dir, "done": done, "missing": missing, "running": running,
            "finished": p.store.is_complete()}


def finalize(mod: ModuleType, config, root=None) -> Result | None:
    """The finished result: loaded, or written now from the units on disk through the experiment's own run (a
    shard past its last job, which computes nothing: the runner writes the result, with the experiment's meta,
    when every unit is done); None while units are missing."""
    p = plan(mod, config, root)
    if p.store.is_complete():
        return load(p.store.experiment, p.store.config, root=p.store.root)
    if p.missing():
        return None
    n = len(p.jobs)
    return mod.run(config, root=p.store.root, progress=False, shard=(n, n + 1))


@dataclasses.dataclass
class ShardJob(Checkpointable):
    """One submitted job: shard `shard` of `config` of the experiment module named `module`, into results root
    `root`. Picklable (plain fields); it imports the experiment when it runs."""
    module: str
    config: dict
    root: str
    shard: tuple[int, int]
    progress: bool = True

    def __call__(self) -> dict:
        mod = importlib.import_module(self.module)
        res = mod.run(self.config, root=self.root, progress=self.progress, shard=tuple(self.shard))
        return {"shard": f"{self.shard[0]}/{self.shard[1]}", "result": None if res is None else str(res.dir)}

    def checkpoint(self, *args, **kwargs):
        """Preempted or timed out: requeue this same shard; its finished units are on disk and are skipped."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("--executor", f"iml submit needs submitit: {HINT}") from None
    return submitit


def _count(flag: str, value, minimum: int = 1) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if not (text.isdigit() and int(text) >= minimum):
        raise ConfigError(flag, f"must be an integer >= {minimum}, got {value!r}")
    return int(text)


def executor_parameters(*, array_parallelism=None, timeout_min=None, partition=None, gpus_per_node=None,
                        cpus_per_task=None, mem=None, additional: Mapping[str, str] | None = None) -> dict[str, Any]:
    """submitit's ``update_parameters`` arguments from the command line's (validated; ConfigError names the flag)."""
    extra = dict(additional or {})
    for k in extra:
        if not k or k.startswith("-"):
            raise ConfigError("--slurm-additional", f"must be KEY=VALUE with an sbatch option name, got {k!r}")
    out = {"timeout_min": _count("--slurm-time", timeout_min) or DEFAULT_TIMEOUT_MIN,
           "gpus_per_node": _count("--slurm-gpus-per-node", gpus_per_node, 0),
           "cpus_per_task": _count("--slurm-cpus-per-task", cpus_per_task),
           "slurm_array_parallelism": _count("--array-parallelism", array_parallelism),
           "slurm_partition": partition, "slurm_mem": mem, "slurm_additional_parameters": extra or None}
    return {k: v for k, v in out.items() if v is not None}


@dataclasses.dataclass
class Submission:
    plan: Plan
    n: int
    """the shards the units are split into"""
    jobs: list[tuple[int, Any]]
    """(shard index, submitit job) for every shard submitted"""


def submit(mod: ModuleType, config, *, executor: str, root=None, jobs=None, folder=None, progress: bool = True,
           **parameters) -> Submission:
    """Submit one :class:`ShardJob` per shard of `config` that still has a unit to compute, as one job array.

    `jobs` shards (default and at most: one per runner job, i.e. per seed group / stage-1 seed); `folder`:
    submitit's logs and pickles (default ``runs/submitit/<experiment>-<hash>``); `parameters`: those of
    :func:`executor_parameters`. No job is submitted when the result is finished or every unit is done (then
    :func:`finalize` writes it). Bad input raises ConfigError before anything is submitted."""
    if executor not in EXECUTORS:
        raise ConfigError("--executor", f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    n = _count("--jobs", jobs)
    params = executor_parameters(**parameters)
    submitit = _submitit()
    p = plan(mod, config, None if root is None else Path(root).expanduser().resolve())
    n = max(1, min(n or len(p.jobs), len(p.jobs)))
    shards = [] if p.store.is_complete() else p.shards_missing(n)
    if not shards:
        return Submission(p, n, [])
    folder = Path(folder) if folder else files.RUNS_DIR / "submitit" / f"{p.store.experiment}-{p.store.hash}"
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    except RuntimeError as e:  # e.g. no srun here
        raise ConfigError("--executor", f"{executor}: {e} (--executor local runs the jobs on this machine)") from None
    ex.update_parameters(**{"name": f"iml-{p.store.experiment}-{p.store.hash}", **params})
    cfg = to_dict(config)
    fns = [ShardJob(mod.__name__, cfg, str(p.store.root), (i, n), progress) for i in shards]
    return Submission(p, n, list(zip(shards, ex.submit_array(fns))))
