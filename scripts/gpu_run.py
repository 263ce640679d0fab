"""The one prepared GPU script: runs the gpu presets on one H100/H200 and packs the result folders.

Usage on the GPU machine (it has torch, numpy, pandas but not `datasets`/papermill, so this calls the
experiment modules directly, never the notebooks)::

    IML_GIT_REVISION=<sha> PYTHONPATH=lib python scripts/gpu_run.py --out $OUT            # full run
    IML_GIT_REVISION=<sha> PYTHONPATH=lib python scripts/gpu_run.py --out $OUT --probe    # seconds-long probe
    ... --only main --workers 5 --deadline 470   # main: 5 processes share the GPU, stop by 470 s

The main experiment fine-tunes a small pretrained model (SmolLM2-135M) whose steps are too short to
keep an H100/H200 busy from one Python process, so ``--workers N`` splits its stage-1 seeds over N
processes (seed i goes to process i mod N) that share the GPU. ``--deadline S`` (seconds from the
script's start) stops every process from starting a seed it would not finish in time (judged by its
previous seed) and kills what still runs ``--grace`` seconds (60) past it; the result is then the first k stage-1 seeds
that finished, saved as the config with ``n_stage1 = k`` (``iml.lm.experiment.finalize_completed``; its
meta records the planned count), so a run cut short still returns a valid, smaller result.

Each job runs in its own try-block so one failure does not lose the others; every finished result folder
is packed into ``$OUT/results.tgz`` (unpack it at the repo root: it holds ``results/<experiment>/<hash>/``)
and a summary with wall times and throughput goes to ``$OUT/summary.json``. Test it on CPU first with
``--probe --device cpu``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from iml import registry  # noqa: E402
from iml.core.config import from_dict, to_dict  # noqa: E402

# (experiment, extra overrides on top of its gpu preset). Order = priority: the most important first.
JOBS: list[tuple[str, dict]] = [
    ("setinclusion", {"loss_on": "answer"}),
    ("mnist", {}),
    ("setinclusion", {"loss_on": "all"}),
    ("main", {}),  # needs the SmolLM2 GGUF there: IML_SMOLLM2_GGUF (scripts/gpu_prepare_smollm2.sh)
    ("batch_size", {}),  # the MNIST batch-size sweeps (iml.mnist.batch_size, both designs at `preset`): several results
    ("gradalign", {}),  # gradient alignment over the two-stage sweep's Stage 1 (iml.mnist.gradient_alignment): several results
    ("alpha", {}),  # the MNIST tag-consistency-correlation sweep (iml.mnist.alpha): one MNIST result per α
]
SWEEP_JOBS = ("batch_size", "gradalign", "alpha")
"""Jobs that are sweeps (one result per batch size); their overrides are MNIST task overrides."""

# Probe: the same code paths at a few seconds' scale, to measure throughput before the full run.
PROBE_OVERRIDES: dict[str, dict] = {
    "setinclusion": {"stage1_epochs": 2, "stage2_epochs": 1, "n_seeds": 10},
    "mnist": {"stage1_epochs": 1, "stage2_epochs": 1},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    ap.add_argument("--probe", action="store_true", help="tiny epochs: check the code path and time it")
    ap.add_argument("--preset", default="gpu", help="preset of every job (gpu; smoke to test this script on CPU)")
    ap.add_argument("--device", default=None, help="override the presets' device (e.g. cpu for a local test)")
    ap.add_argument("--only", default=None, help="comma-separated experiment names to run")
    ap.add_argument("--set", action="append", default=[], metavar="EXP:KEY=VALUE",
                    help="extra override for one experiment, e.g. setinclusion:n_seeds=12")
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the GPU for the main experiment")
    ap.add_argument("--deadline", type=float, default=None,
                    help="seconds from start: main-experiment processes start no seed they cannot finish by then")
    ap.add_argument("--grace", type=float, default=60.0,
                    help="seconds past the deadline after which main-experiment processes still running are killed")
    ap.add_argument("--resume-from", default=str(Path(__file__).resolve().parents[1] / "results"),
                    help="results folder whose finished units of the same config are reused (default: the repo's "
                         "committed results/)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: a JSON job spec
    args = ap.parse_args(argv)
    if args.worker:
        return _main_worker(args.worker)
    if args.workers < 1:
        ap.error(f"--workers must be >= 1, got {args.workers}")
    if args.deadline is not None and args.deadline <= 0:
        ap.error(f"--deadline must be > 0 seconds, got {args.deadline}")
    t_start = time.time()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "results"
    extra: dict[str, dict] = {}
    for item in args.set:
        exp, _, kv = item.partition(":")
        k, _, v = kv.partition("=")
        import yaml

        extra.setdefault(exp, {})[k] = yaml.safe_load(v)

    summary = {"probe": args.probe, "preset": args.preset, "jobs": [], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import torch

        summary["cuda"] = torch.cuda.is_available()
        summary["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        summary["torch"] = torch.__version__
    except Exception as e:  # noqa: BLE001
        summary["torch_error"] = repr(e)

    for name, overrides in JOBS:
        if args.only and name not in args.only.split(","):
            continue
        if name in SWEEP_JOBS and args.probe:
            continue  # a sweep's epochs are set by its points; its mnist job already probes the code path
        ov = dict(overrides)
        if args.probe and args.preset == "gpu":
            ov.update(PROBE_OVERRIDES.get(name, {}))
        if args.device:
            ov["train.device" if name == "main" else "device"] = args.device
        ov.update(extra.get(name, {}))
        job = {"experiment": name, "overrides": ov}
        t0 = time.time()
        try:
            if name in SWEEP_JOBS:
                _run_sweep(name, args.preset, ov, root, out, job)
            else:
                mod = registry.get(name)
                cfg = mod.make_config(args.preset, ov)
                job["resumed_from"] = _seed_from_committed(name, cfg, Path(args.resume_from), root)
                job["config"] = to_dict(cfg)
                if name == "main" and (args.workers > 1 or args.deadline is not None):
                    stop_by = None if args.deadline is None else t_start + args.deadline
                    res = _run_main_sharded(cfg, root, out, args.workers, stop_by, args.grace, job)
                else:
                    res = mod.run(cfg, root=root, progress=False)
                job["result_dir"] = str(Path(res.dir).relative_to(out))
                job["meta"] = {k: res.meta.get(k) for k in ("config_hash", "wall_time_s", "seed_epochs_per_s",
                                                             "git_revision", "environment")}
            job["ok"] = True
        except Exception:  # noqa: BLE001 - keep going; the traceback is in the summary
            job["ok"] = False
            job["error"] = traceback.format_exc()[-4000:]
            print(job["error"], file=sys.stderr)
        job["wall_s"] = round(time.time() - t0, 1)
        print(f"[gpu_run] {name} {ov} ok={job['ok']} wall={job['wall_s']}s", flush=True)
        summary["jobs"].append(job)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    if root.exists():
        with tarfile.open(out / "results.tgz", "w:gz") as tar:
            tar.add(root, arcname="results")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0 if all(j["ok"] for j in summary["jobs"]) else 1


def _run_sweep(name: str, preset: str, overrides: dict, root: Path, out: Path, job: dict) -> None:
    """A sweep job at `preset`: "batch_size" = the MNIST batch-size sweeps (iml.mnist.batch_size), two-stage then
    single-stage, one MNIST result per batch size and design; "gradalign" = the gradient-alignment sweep
    (iml.mnist.gradient_alignment), one result per batch size; "alpha" = the α sweep (iml.mnist.alpha), one MNIST result per α."""
    from iml.mnist import alpha
    from iml.mnist import batch_size
    from iml.mnist import gradient_alignment as gradalign

    if name == "gradalign":
        rs = gradalign.run_sweep(preset, overrides=overrides, root=root, progress=False)
    elif name == "alpha":
        rs = alpha.run_sweep(preset, overrides=overrides, root=root, progress=False)
    else:
        rs = [r for d in ("two-stage", "single-stage")
              for r in batch_size.run_sweep(batch_size.sweep_name(preset, d), overrides=overrides, root=root,
                                      progress=False)]
    job["result_dirs"] = [str(Path(r.dir).relative_to(out)) for r in rs]
    job["meta"] = {}
    for r in rs:
        task = r.config.get("task", r.config)
        job["meta"][r.hash] = {"batch_size": task["batch_size"], "joint": task.get("joint", False),
                               "alpha": alpha.alpha_of(r) if name == "alpha" else None,
                               "wall_time_s": r.meta.get("wall_time_s"), "git_revision": r.meta.get("git_revision")}


def _seed_from_committed(name: str, cfg, committed: Path, root: Path) -> str | None:
    """Copy the committed result folder of exactly this config (finished units, e.g. the seeds of a run
    cut short by its deadline) into this run's results root, so that only what is missing is computed."""
    import shutil

    from iml.core.config import config_hash

    h = config_hash(cfg)
    src, dst = committed / name / h, root / name / h
    if not src.is_dir() or dst.exists() or src.resolve() == dst.resolve():
        return None
    shutil.copytree(src, dst)
    return str(src)


def _run_main_sharded(cfg, root: Path, out: Path, workers: int, stop_by: float | None, grace: float, job: dict):
    """The main experiment's stage-1 seeds over `workers` processes; the result of those that finished."""
    from iml.lm import experiment
    from iml.core import results

    store = results.ResultStore(experiment.EXPERIMENT, cfg, root=root)
    if store.is_complete():
        return results.load(experiment.EXPERIMENT, cfg, root=root)  # finished before: keep its meta as it is
    # units finished before this run (resumed): wall_time_s below covers only the others
    resumed = [experiment.unit_id(s1, j) for s1 in cfg.seeds.stage1 for j in cfg.seeds.stage2
               if store.unit_done(experiment.unit_id(s1, j))]
    t0 = time.time()
    cfg_path = out / "main_config.json"
    cfg_path.write_text(json.dumps(to_dict(cfg)))
    procs = []
    for i in range(workers):
        log = open(out / f"main_worker{i}.log", "w")
        spec = json.dumps({"config": str(cfg_path), "shard": [i, workers], "stop_by": stop_by, "root": str(root)})
        procs.append((subprocess.Popen([sys.executable, __file__, "--worker", spec], stdout=log,
                                       stderr=subprocess.STDOUT), log))
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=None if stop_by is None else max(1.0, stop_by + grace - time.time())))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append("killed")
        log.close()
    job["workers"] = workers
    job["worker_exit_codes"] = codes
    job["planned_n_stage1"] = cfg.seeds.n_stage1
    return experiment.finalize_completed(cfg, root, meta={
        "wall_time_s": round(time.time() - t0, 2), "units_resumed": resumed, "workers": workers,
        "worker_exit_codes": codes,
        "deadline_s": None if stop_by is None else round(stop_by - t0, 1)})


def _main_worker(spec: str) -> int:
    from iml.lm import experiment

    job = json.loads(spec)
    i, n = job["shard"]
    cfg = from_dict(experiment.Config, json.loads(Path(job["config"]).read_text()))
    seeds = cfg.seeds.stage1[i::n]
    print(f"[worker {i}/{n}] stage-1 seeds {seeds}", flush=True)
    experiment.run(cfg, root=job["root"], progress=False, stage1_seeds=seeds, stop_by=job["stop_by"])
    print(f"[worker {i}/{n}] done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
