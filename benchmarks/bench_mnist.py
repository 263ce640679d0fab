"""Throughput of the MNIST grid task and an estimate of each preset's wall time.

For every preset it trains a shortened copy (a few epochs per stage, all the preset's seeds of one group
batched) with ``iml.mnist.grid.train_group``, measures seconds per stage-1 epoch, per stage-2 epoch and
per evaluation, and extrapolates to the preset's full epochs and number of seed groups. Prints
seed-epochs/s (stage 1 and stage 2).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_mnist.py                  # CPU, one thread
    PYTHONPATH=lib python benchmarks/bench_mnist.py --device cuda                   # on the GPU box
    PYTHONPATH=lib python benchmarks/bench_mnist.py --device cuda --presets gpu --epochs 5

The first timed epoch includes warm-up (cuDNN autotuning, allocator); ``--epochs`` > 2 dilutes it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402

from iml.mnist import experiment as mx
from iml.mnist import grid as M  # noqa: E402
from iml.core.config import parse_override  # noqa: E402


def bench(preset: str, device: str, epochs: int, overrides: dict) -> dict:
    full = M.make_config(preset, {**overrides, "device": device})
    short = M.make_config(preset, {**overrides, "device": device, "stage1_epochs": epochs,
                                   "stage2_epochs": epochs, "evals_per_stage": 1})
    groups = mx.seed_groups(full)
    seeds = groups[0]
    # warm-up call (cuDNN autotune, lazy init), then the timed one
    mx.train_group(M.make_config(preset, {**overrides, "device": device, "stage1_epochs": 1, "stage2_epochs": 1,
                                         "evals_per_stage": 1}), seeds)
    t0 = time.perf_counter()
    r = mx.train_group(short, seeds)
    wall = time.perf_counter() - t0
    ep1 = r["t_stage1"] / max(1, epochs)
    ep2 = r["t_stage2"] / max(1, epochs)
    per_eval = r["t_eval"] / max(1, r["n_evals"])
    setup = max(0.0, wall - r["t_stage1"] - r["t_stage2"] - r["t_eval"])
    n_evals_full = 1 + len(mx.eval_epochs(full.stage1_epochs, full.evals_per_stage)) + \
        len(mx.eval_epochs(full.stage2_epochs, full.evals_per_stage))
    per_group = setup + ep1 * full.stage1_epochs + ep2 * full.stage2_epochs + per_eval * n_evals_full
    # later groups may be smaller; scale by seeds (conservative for batched runs)
    est = sum(per_group * len(g) / len(seeds) for g in groups)
    return {
        "preset": preset, "device": r["device"], "seeds_batched": len(seeds), "groups": len(groups),
        "stage1_examples_per_seed_epoch": r["stage1_examples"], "stage2_examples_per_seed_epoch": r["stage2_examples"],
        "stage1_s_per_epoch": round(ep1, 4), "stage2_s_per_epoch": round(ep2, 4), "s_per_eval": round(per_eval, 4),
        "setup_s": round(setup, 2),
        "stage1_seed_epochs_per_s": round(len(seeds) / ep1, 2) if ep1 else None,
        "stage2_seed_epochs_per_s": round(len(seeds) * full.n_seeds_stage2 / ep2, 2) if ep2 else None,
        "stage1_examples_per_s": round(len(seeds) * r["stage1_examples"] / ep1) if ep1 else None,
        "estimated_preset_wall_s": round(est, 1),
        "estimated_preset_wall_min": round(est / 60, 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    ap.add_argument("--presets", default="smoke,cpu,gpu", help="comma-separated preset names")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per stage in the timed short run")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override (JSON value), e.g. --set n_seeds=10")
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    overrides = dict(parse_override(kv) for kv in args.set)
    rows = []
    for p in args.presets.split(","):
        row = bench(p, args.device, args.epochs, overrides)
        rows.append(row)
        print(json.dumps(row), flush=True)
        print(f"  {p}: {row['stage1_seed_epochs_per_s']} stage-1 seed-epochs/s, "
              f"{row['stage2_seed_epochs_per_s']} stage-2 seed-epochs/s -> full preset ~{row['estimated_preset_wall_min']} min "
              f"on {row['device']}", flush=True)
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(0)}; max memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
