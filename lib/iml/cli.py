"""The ``iml`` command (also ``python -m iml``).

    iml list                                   experiments, their presets, and the sweeps
    iml run EXPERIMENT [--preset P] [--set key=value ...] [--config FILE.yaml] [--root DIR] [--force] [--quiet]
               [--shard I/N]                    one shard of the units (a SLURM array task each)
    iml submit EXPERIMENT [--preset P] [--set ...] [--config F] [--root DIR] --executor slurm|local|debug
               [--jobs N] [--array-parallelism N] [--slurm-partition P] [--slurm-time MIN] [--slurm-gpus-per-node N]
               [--slurm-cpus-per-task N] [--slurm-mem MEM] [--slurm-additional KEY=VALUE ...] [--folder LOGDIR]
               [--wait]                         the shards with missing units as one submitit job array (requeued
                                               when preempted or timed out; needs the `cluster` extra)
    iml status EXPERIMENT [--preset P] [--set ...] [--config F] [--root DIR]
                                               units done / missing, whether shards are computing, result written?
    iml finalize EXPERIMENT [--preset P] [--set ...] [--config F] [--root DIR]
                                               write the result from its units once every one is done (exit 1: not yet)
    iml sweep NAME [--sweep S] [--set key=value ...] [--root DIR] [--workers N] [--force] [--quiet]
                                               run (or load) every point of a sweep; print its table and verdict
    iml show RESULT_DIR                        the gap table of a finished result
    iml verify RESULT_DIR [--units N|all] [--seed S] [--root TMP] [--out REPORT.json]
                                               recompute sampled units and compare (exit 1: verdict differs)
    iml data export --out DIR [--preset P] [--set key=value ...] [--config FILE.yaml] [--seed-stage1 S]
               [--seed-stage2 J] [--force]      the main experiment's tagged dataset (hf/, parquet/, metadata.json)

Bad input (an unknown experiment, preset or config key, a wrong type, a missing file) prints one line
naming the field on stderr and exits with code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from iml import registry
from iml.core import env, paper, submit
from iml.core.config import ConfigError, parse_override
from iml.core.lock import ResultLockedError
from iml.core.results import ResultStore, StaleResultError, load_dir
from iml.core.runner import resolve_root
from iml.core.stats import gap_table
from iml.verify import main as verify_main

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iml", description="Implicit meta-learning companion: run experiments "
                                                        "and inspect their results.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sub.add_parser("list", help="list the experiments, their presets and the sweeps",
                   description="List the experiments, their presets and the sweeps.")

    r = sub.add_parser("run", help="run (or resume, or load) an experiment",
                       description="Run an experiment at a preset, resuming finished units; a finished "
                                   "result with the same config hash is just loaded.")
    r.add_argument("experiment", help="experiment name (see `iml list`)")
    r.add_argument("--preset", default="cpu", help="preset name (default: cpu)")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, dotted (e.g. data.num_ents=200, stages.1.epochs=5); "
                        "values are YAML; repeatable")
    r.add_argument("--config", dest="config_file", metavar="FILE.yaml",
                   help="YAML mapping of config fields applied after the preset, before --set")
    r.add_argument("--root", help="results root directory (default: read a finished result from the committed "
                                  "results/, write new ones to the git-ignored runs/; --root results to commit)")
    r.add_argument("--force", action="store_true", help="recompute even if a finished result exists")
    r.add_argument("--shard", metavar="I/N", help="compute only shard I of N (every N-th seed group / stage-1 seed "
                                                   "from the I-th), e.g. one per SLURM array task "
                                                   "(--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the "
                                                   "shard that finds every unit done writes the result")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    b = sub.add_parser("submit", help="submit an experiment's shards to a cluster as one job array (submitit)",
                       description="Submit one job per shard of the units still missing (iml run --shard I/N in "
                                   "each) as one submitit job array; every job writes its units into the shared "
                                   "result folder, a preempted or timed-out job is requeued and resumes from its "
                                   "finished units, and the shard that finds every unit done writes the result. "
                                   f"Needs the cluster extra: {submit.HINT}.")
    _add_config_args(b)
    b.add_argument("--executor", required=True, metavar="slurm|local|debug",
                   help="slurm: a SLURM job array; local: processes on this machine; debug: in this process")
    b.add_argument("--jobs", metavar="N", help="shards (default and at most: one per seed group / stage-1 seed)")
    b.add_argument("--array-parallelism", metavar="N", help="slurm: at most N array tasks at once")
    b.add_argument("--slurm-partition", metavar="P", help="slurm partition")
    b.add_argument("--slurm-time", metavar="MIN", help=f"time limit of a job in minutes, also under --executor "
                                                       f"local (default {submit.DEFAULT_TIMEOUT_MIN}); a job "
                                                       f"that reaches it is requeued")
    b.add_argument("--slurm-gpus-per-node", metavar="N", help="GPUs per job")
    b.add_argument("--slurm-cpus-per-task", metavar="N", help="CPUs per job")
    b.add_argument("--slurm-mem", metavar="MEM", help="slurm memory per node, e.g. 32G")
    b.add_argument("--slurm-additional", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, e.g. account=myproject; repeatable")
    b.add_argument("--folder", metavar="LOGDIR", help="submitit's logs and pickles (default: "
                                                      "runs/submitit/<experiment>-<config-hash>)")
    b.add_argument("--wait", action="store_true", help="wait for the jobs and report the result (debug always "
                                                       "waits: its jobs run when waited for)")
    b.add_argument("--quiet", action="store_true", help="no per-unit progress in the jobs' logs")

    t = sub.add_parser("status", help="units done and missing of an experiment's config, and whether it is finished",
                       description="The units of a config that are done and missing, whether shards are computing "
                                   "it now (they hold its folder's lock), and whether its result is written.")
    _add_config_args(t)

    f = sub.add_parser("finalize", help="write a config's result once every unit is done",
                       description="Write the result of a config from its finished units (the last shard does "
                                   "it; this is for one that did not get to); exit 1 while units are missing.")
    _add_config_args(f)

    w = sub.add_parser("sweep", help="run (or load) a sweep and print its table and verdict",
                       description="Run every point of a sweep (each an ordinary result of one experiment, reused "
                                   "when finished) and print the sweep's table and verdict.")
    w.add_argument("name", help="sweep name (see `iml list`)")
    w.add_argument("--sweep", default="cpu", help="which of the sweep's presets (default: cpu)")
    w.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of every point's config, dotted, values are YAML; repeatable")
    w.add_argument("--root", help="results root directory (default: read finished points from the committed "
                                  "results/, write new ones to the git-ignored runs/; --root results to commit)")
    w.add_argument("--workers", type=int, default=1, help="points computed at once in separate processes")
    w.add_argument("--force", action="store_true", help="recompute every point")
    w.add_argument("--quiet", action="store_true", help="no progress output")

    s = sub.add_parser("show", help="print the gap table of a finished result",
                       description="Print the IML gap table (t-intervals over stage-1 seeds) of a result folder "
                                   "results/<experiment>/<hash>.")
    s.add_argument("result_dir", help="a result folder (results/<experiment>/<config-hash>)")
    s.add_argument("--epoch", type=float, default=None, help="epoch to compare at (default: the last)")

    v = sub.add_parser("verify", help="recompute some units of a result and compare them with it",
                       description="Recompute a deterministic sample of a result's units in a temporary results "
                                   "root and compare: bitwise equal, numbers differ but statistically the same "
                                   "(exit 0), or verdict differs (exit 1). The result folder is not modified.")
    v.add_argument("result_dir", help="a result folder (results/<experiment>/<config-hash>)")
    v.add_argument("--units", default="1", help="how many units to recompute, or 'all' (default: 1)")
    v.add_argument("--seed", type=int, default=0, help="seed of the unit sample (default: 0)")
    v.add_argument("--root", help="results root to recompute in, kept afterwards (default: a temporary folder)")
    v.add_argument("--out", help="also write the report as JSON to this file")
    v.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: those the committed result recorded)")
    v.add_argument("--progress", action="store_true", help="show the engine's progress bars")

    d = sub.add_parser("data", help="the main experiment's tagged dataset (export)",
                       description="Work with the main experiment's tagged dataset.")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    de = dsub.add_parser("export", help="write the tagged dataset of one unit: hf/, parquet/<split>.parquet, "
                                        "metadata.json",
                         description="Write every split of the tagged dataset that one unit of the main experiment "
                                     "trains and is evaluated on, as datasets.DatasetDict.save_to_disk (DIR/hf), "
                                     "parquet files (DIR/parquet/<split>.parquet) and DIR/metadata.json (tags, "
                                     "aliases and entities, config hash, input hashes, git revision), atomically.")
    de.add_argument("--out", required=True, metavar="DIR", help="the folder to write (must not exist or be empty)")
    de.add_argument("--preset", default="cpu", help="preset of the main experiment (default: cpu)")
    de.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field of the main experiment, dotted, values are YAML; repeatable")
    de.add_argument("--config", dest="config_file", metavar="FILE.yaml",
                    help="YAML mapping of config fields applied after the preset, before --set")
    de.add_argument("--seed-stage1", type=int, default=None, metavar="S",
                    help="the unit's stage-1 seed (default: the config's first)")
    de.add_argument("--seed-stage2", type=int, default=None, metavar="J",
                    help="the unit's stage-2 seed (default: 0)")
    de.add_argument("--force", action="store_true", help="replace DIR if it holds an earlier export")
    return p


def _fail(msg: str) -> int:
    print(f"iml: error: {msg}", file=sys.stderr)
    return 2


def _root_problem(root) -> str | None:
    """Why `--root` cannot hold results (not a folder, cannot be created), or None; creates it if need be."""
    if root is None:
        return None
    p = Path(root).expanduser()
    if p.exists() and not p.is_dir():
        return f"--root {p}: not a directory"
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"--root {p}: cannot create it ({e.strerror or e})"
    return None


def _shard(text: str | None) -> tuple[int, int] | None:
    """`--shard I/N` -> (I, N), or a ConfigError naming --shard."""
    if text is None:
        return None
    i, sep, n = text.partition("/")
    if not (sep and i.strip().isdigit() and n.strip().isdigit() and 0 <= int(i) < int(n)):
        raise ConfigError("--shard", f"must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return int(i), int(n)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """EXPERIMENT [--preset P] [--set KEY=VALUE ...] [--config FILE] [--root DIR], as `iml run` takes them."""
    p.add_argument("experiment", help="experiment name (see `iml list`)")
    p.add_argument("--preset", default="cpu", help="preset name (default: cpu)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, dotted, values are YAML; repeatable")
    p.add_argument("--config", dest="config_file", metavar="FILE.yaml",
                   help="YAML mapping of config fields applied after the preset, before --set")
    p.add_argument("--root", help="results root directory (default: as `iml run`: a finished result in results/, "
                                  "else the git-ignored runs/)")


def _experiment_config(args):
    """The experiment module and config that `_add_config_args` name (ValueError / ConfigError otherwise)."""
    try:
        mod = registry.get(args.experiment)
    except ValueError as e:
        raise ConfigError("", str(e)) from None
    if args.preset not in mod.PRESETS:
        raise ConfigError("preset", f"unknown preset {args.preset!r} for {args.experiment}; choose one of "
                                    f"{', '.join(mod.PRESETS)}")
    overrides = dict(parse_override(s) for s in args.sets)
    return mod, mod.make_config(args.preset, overrides, config_file=args.config_file)


def _cmd_list() -> int:
    for name, mod in registry.EXPERIMENTS.items():
        notes = getattr(mod, "PRESET_NOTES", {})
        print(f"{name}  ({mod.__name__})")
        for preset in mod.PRESETS:
            print(f"    {preset:<14} {notes.get(preset, '')}".rstrip())
    print("sweeps (iml sweep NAME --sweep S):")
    for name, mod in registry.SWEEPS.items():
        print(f"    {name:<14} {', '.join(mod.SWEEPS)}  ({mod.__name__})")
    return 0


def _cmd_run(args) -> int:
    try:
        mod = registry.get(args.experiment)
    except ValueError as e:
        return _fail(str(e))
    if args.preset not in mod.PRESETS:
        return _fail(f"preset: unknown preset {args.preset!r} for {args.experiment}; choose one of "
                     f"{', '.join(mod.PRESETS)}")
    try:
        overrides = dict(parse_override(s) for s in args.sets)
        cfg = mod.make_config(args.preset, overrides, config_file=args.config_file)
        store = ResultStore(mod.EXPERIMENT, cfg, root=resolve_root(mod.EXPERIMENT, cfg, args.root, args.force))
        existed = not args.force and store.is_complete()
        shard = _shard(args.shard)
        t0 = time.time()
        res = mod.run(cfg, root=args.root, force=args.force, progress=not args.quiet,
                      **({"shard": shard} if shard else {}))
    except (ConfigError, FileNotFoundError, StaleResultError, ResultLockedError) as e:
        return _fail(str(e))
    if res is None and shard:
        print(f"shard {shard[0]}/{shard[1]} done; other shards' units are still missing from {store.dir} (the shard "
              f"that finds every unit done writes the result)")
        return 0
    if res is None:
        return _fail(f"{store.dir}: the run ended without a finished result (units are missing); run it again to "
                     f"resume")
    if existed:
        print(f"loaded existing result {res.dir}: computed nothing (--force recomputes)")
    else:
        n = len(res.meta.get("units_computed_last_run", []))
        print(f"computed {n} unit{'s' * (n != 1)} in {time.time() - t0:.0f} s")
    print(f"result: {res.dir}")
    print(f"rows: {len(res.table)}  units: {len(res.meta.get('units', []))}")
    return 0


def _key_value(flag: str, text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not (sep and key.strip()):
        raise ConfigError(flag, f"must be KEY=VALUE, got {text!r}")
    return key.strip(), value


def _units_line(st: dict) -> str:
    done, missing = len(st["done"]), len(st["missing"])
    return f"units: {done} done, {missing} missing (of {done + missing})"


def _cmd_submit(args) -> int:
    try:
        mod, cfg = _experiment_config(args)
        extra = dict(_key_value("--slurm-additional", s) for s in args.slurm_additional)
        sub = submit.submit(mod, cfg, executor=args.executor, root=args.root, jobs=args.jobs, folder=args.folder,
                            progress=not args.quiet, array_parallelism=args.array_parallelism,
                            timeout_min=args.slurm_time, partition=args.slurm_partition,
                            gpus_per_node=args.slurm_gpus_per_node, cpus_per_task=args.slurm_cpus_per_task,
                            mem=args.slurm_mem, additional=extra)
        store = sub.plan.store
        if not sub.jobs:
            existed = store.is_complete()
            res = submit.finalize(mod, cfg, store.root)
            print(("a finished result with this config hash exists" if existed else "every unit is done: wrote "
                   "the result") + f"; nothing to submit\nresult: {res.dir}")
            return 0
    except (ConfigError, FileNotFoundError, StaleResultError, ResultLockedError) as e:
        return _fail(str(e))
    n = sub.n
    print(f"submitted {len(sub.jobs)} job(s) to {args.executor}: shard(s) "
          f"{', '.join(f'{i}/{n} (job {job.job_id})' for i, job in sub.jobs)} of {store.experiment} {store.hash}")
    print(f"result folder: {store.dir}  ({len(sub.plan.missing())} of {len(sub.plan.units)} units missing)")
    print(f"logs: {sub.jobs[0][1].paths.folder}")
    if not (args.wait or args.executor == "debug"):
        print("`iml status` with the same arguments follows it; the last shard writes the result (`iml finalize` "
              "if it did not)")
        return 0
    failed = 0
    for i, job in sub.jobs:
        try:
            job.result()
        except Exception as e:  # noqa: BLE001 - a failed job is reported, the others still waited for
            failed += 1
            last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            print(f"iml: shard {i}/{n} (job {job.job_id}) failed: {last}", file=sys.stderr)
    st = submit.status(sub.plan)
    print(_units_line(st))
    if st["finished"]:
        print(f"result: {store.dir}")
        return 1 if failed else 0
    print(f"iml: {store.dir}: not finished ({len(st['missing'])} units missing); submit again to compute them",
          file=sys.stderr)
    return 1


def _cmd_status(args) -> int:
    try:
        mod, cfg = _experiment_config(args)
        st = submit.status(submit.plan(mod, cfg, args.root))
    except (ConfigError, FileNotFoundError, StaleResultError) as e:
        return _fail(str(e))
    print(f"{args.experiment} {st['dir'].name}  ({st['dir']})")
    print(_units_line(st))
    running = st["running"]
    print("computing now: " + ("no" if running is None else "yes, shards hold the folder's lock"
                               if running == "shards" else f"yes: {running}"))
    if st["finished"]:
        print("result: finished")
    else:
        print("result: not written" + ("; every unit is done: `iml finalize` with the same arguments writes it"
                                       if not st["missing"] else ""))
    if st["missing"]:
        more = len(st["missing"]) - 20
        print(f"missing: {', '.join(st['missing'][:20])}" + (f", ... ({more} more)" if more > 0 else ""))
    return 0


def _cmd_finalize(args) -> int:
    try:
        mod, cfg = _experiment_config(args)
        res = submit.finalize(mod, cfg, args.root)
        st = submit.status(submit.plan(mod, cfg, args.root)) if res is None else None
    except (ConfigError, FileNotFoundError, StaleResultError, ResultLockedError) as e:
        return _fail(str(e))
    if res is None:
        print(f"iml: {st['dir']}: {len(st['missing'])} of {len(st['done']) + len(st['missing'])} units are missing "
              f"(`iml status` lists them): not finalized", file=sys.stderr)
        return 1
    print(f"result: {res.dir}")
    print(f"rows: {len(res.table)}  units: {len(res.meta.get('units', []))}")
    return 0


def _cmd_sweep(args) -> int:
    try:
        mod = registry.sweep(args.name)
    except ValueError as e:
        return _fail(str(e))
    if args.sweep not in mod.SWEEPS:
        return _fail(f"--sweep: unknown sweep {args.sweep!r} for {args.name}; choose one of {', '.join(mod.SWEEPS)}")
    try:
        overrides = dict(parse_override(s) for s in args.sets)
        rs = mod.run_sweep(args.sweep, None, overrides, root=args.root, force=args.force,
                           progress=not args.quiet, workers=args.workers)
    except (ConfigError, FileNotFoundError, StaleResultError, ResultLockedError) as e:
        return _fail(str(e))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(mod.table(mod.summary(rs)).to_string(index=False))
    print(mod.verdict(rs))
    return 0


def _cmd_show(args) -> int:
    try:
        res = load_dir(args.result_dir)
    except (FileNotFoundError, StaleResultError) as e:
        return _fail(str(e))
    table = res.table
    # Stage-2 runs from non-final Stage-1 checkpoints are reported separately (see iml.lm.experiment).
    if "run_id" in table:
        table = table[~table["run_id"].astype(str).str.contains("-from")]
    # Each experiment module may name its own gap pairs; the IML gap and the Stage-1 effect otherwise.
    mod = registry.get(res.experiment) if res.experiment in registry.EXPERIMENTS else None
    GAP_PAIRS = getattr(mod, "GAP_PAIRS", [("d1consis", "d2consis"), ("qd1consis", "qd2incons")])
    metrics = [m for m in ("EM", "F1", "acc") if m in set(table["metric"])]
    if not metrics:
        return _fail(f"{res.dir}: the result has no EM/F1/acc rows")
    if args.epoch is not None and args.epoch not in set(table["epoch"].astype(float)):
        have = sorted(set(table["epoch"].astype(float)))
        return _fail(f"--epoch {args.epoch:g}: the result has no such epoch (it has {have[0]:g} to {have[-1]:g}: "
                     f"{', '.join(f'{e:g}' for e in have[:12])}{', ...' if len(have) > 12 else ''})")
    rows = []
    for a, b in GAP_PAIRS:
        # qd1consis vs qd2incons is a Stage-1 effect: compare at the end of Stage 1 (before Stage 2).
        epoch = args.epoch
        if epoch is None and a.startswith("qd"):
            s1 = table[(table["stage"].astype(str) != "init") & table["subset"].isin([a, b])]
            stage_ends = s1.groupby("stage")["epoch"].max().sort_values()
            epoch = float(stage_ends.iloc[-2]) if len(stage_ends) > 1 else None
        gt = gap_table(table, [(a, b)], metrics=metrics, epoch=epoch)
        if not gt.empty:
            rows.append(gt)
    if not rows:
        return _fail(f"{res.dir}: none of the gap pairs is in the result")
    out = pd.concat(rows, ignore_index=True)
    # the paper's notation and value beside ours (NaN: the paper gives no number for this comparison)
    out.insert(0, "comparison", [f"{paper.symbol(a)} − {paper.symbol(b)}" for a, b in zip(out["a"], out["b"])])
    values = [paper.paper_gap(res.experiment, a, b, m)[0] for a, b, m in zip(out["a"], out["b"], out["metric"])]
    out["paper"] = ["no number" if v != v else f"{v:+.2f}" for v in values]
    cols = ["comparison", "a", "b", "metric", "epoch", "gap", "ci_low", "ci_high", "p_one_sided", "n_stage1",
            "n_stage2_per_stage1", "paper"]
    print(f"{res.experiment} {res.hash}  ({res.dir})")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        signed = {c: (lambda x: f"{x:+.4f}") for c in ("gap", "ci_low", "ci_high")}
        plain = {"epoch": lambda x: f"{x:g}", "p_one_sided": lambda x: f"{x:.4f}",
                 "n_stage2_per_stage1": lambda x: f"{x:g}"}
        print(out[cols].to_string(index=False, formatters={**signed, **plain}))
    return 0


def _cmd_verify(args) -> int:
    try:
        return verify_main(args.result_dir, args.units, seed=args.seed, root=args.root, out=args.out,
                           threads=args.threads, progress=args.progress)
    except ConfigError as e:
        return _fail(str(e))


def _cmd_data_export(args) -> int:
    from iml.lm.export import export_dataset

    mod = registry.get("main")
    if args.preset not in mod.PRESETS:
        return _fail(f"preset: unknown preset {args.preset!r} for main; choose one of {', '.join(mod.PRESETS)}")
    try:
        overrides = dict(parse_override(s) for s in args.sets)
        cfg = mod.make_config(args.preset, overrides, config_file=args.config_file)
        out = export_dataset(cfg, args.out, seed_stage1=args.seed_stage1, seed_stage2=args.seed_stage2,
                             force=args.force, experiment=mod.EXPERIMENT,
                             extra={"preset": args.preset, "overrides": overrides})
    except (ConfigError, FileNotFoundError, ImportError) as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"--out {args.out}: cannot write it ({e.strerror or e})")
    import json

    meta = json.loads((out / "metadata.json").read_text())
    print(f"dataset: {out}  (unit {meta['unit']} of main {meta['config_hash']}; {len(meta['splits'])} splits, "
          f"{sum(meta['splits'].values())} rows; hf/, parquet/, metadata.json)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (problem := env.capability_problem()) is not None:
        return _fail(problem)
    if args.command == "list":
        return _cmd_list()
    if args.command in ("run", "sweep", "submit") and (problem := _root_problem(args.root)) is not None:
        return _fail(problem)
    if args.command == "run":
        return _cmd_run(args)
    if args.command in ("submit", "status", "finalize"):
        return {"submit": _cmd_submit, "status": _cmd_status, "finalize": _cmd_finalize}[args.command](args)
    if args.command == "sweep":
        return _cmd_sweep(args)
    if args.command == "show":
        return _cmd_show(args)
    if args.command == "verify":
        return _cmd_verify(args)
    if args.command == "data" and args.data_command == "export":
        return _cmd_data_export(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
