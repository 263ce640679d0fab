"""Throughput of the batched-seed set-inclusion trainer, and an estimate of a full preset's wall time.

CPU (default: the cpu preset's shape, 5 seeds, 2 epochs)::

    OMP_NUM_THREADS=1 PYTHONPATH=lib .venv/bin/python benchmarks/bench_setinclusion.py --preset cpu --epochs 2

GPU (the paper-scale gpu preset; no changes needed)::

    PYTHONPATH=lib python benchmarks/bench_setinclusion.py --preset gpu --device cuda --seeds 10 --epochs 2

It trains S seeds together for E stage-1 and E stage-2 epochs (one evaluation per stage), prints the
measured seed-epochs/s (seeds x epochs / wall s, data generation and evaluation included, and stage-1
training alone), and extrapolates to the preset's full epochs, evaluations and units. On CUDA a short
warm-up run goes first so that one-time costs (context, kernel loading, compilation) are not billed to
the estimate; their time is printed separately.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import torch  # noqa: E402

from iml.scratch import set_inclusion as si  # noqa: E402
from iml.core.config import to_dict  # noqa: E402


def _parse_set(items):
    out = {}
    for it in items or []:
        k, v = it.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default=None, help="config preset (default: gpu on CUDA, cpu otherwise)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, default=None, help="seeds trained together (default: the preset's group)")
    ap.add_argument("--epochs", type=int, default=2, help="stage-1 epochs to time")
    ap.add_argument("--stage2-epochs", type=int, default=None, help="stage-2 epochs to time (default: --epochs)")
    ap.add_argument("--loss-on", choices=["answer", "all"], default=None)
    ap.add_argument("--compile", dest="compile", action="store_const", const=True, default=None,
                    help="torch.compile the loss/forward (the gpu preset already does)")
    ap.add_argument("--no-compile", dest="compile", action="store_const", const=False)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--set", action="append", help="extra config override key=value (JSON value)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    dev = "cuda" if (args.device == "auto" and torch.cuda.is_available()) else args.device
    dev = "cpu" if dev == "auto" else dev
    preset = args.preset or ("gpu" if dev.startswith("cuda") else "cpu")
    full = si.make_config(preset, dict({"device": dev}, **({"loss_on": args.loss_on} if args.loss_on else {}),
                                       **({"compile": args.compile} if args.compile is not None else {}), **_parse_set(args.set)))
    S = args.seeds or (full.seeds_per_unit or full.n_seeds)
    E1 = args.epochs
    E2 = args.stage2_epochs if args.stage2_epochs is not None else E1
    bench = si.make_config(preset, dict(to_dict(full), stage1_epochs=E1, stage2_epochs=E2,
                                        eval_every=max(E1, E2, 1), n_seeds=S, seeds_per_unit=0))
    print(f"device {dev}" + (f" ({torch.cuda.get_device_name(0)})" if dev.startswith("cuda") else
                             f" (threads {torch.get_num_threads()}, load {os.getloadavg()})"), flush=True)
    print(f"preset {preset}: {full.n_aliases} aliases, numbers 0..{full.n_numbers - 1}, {full.n_per_question}/question, "
          f"d{full.d_model} L{full.n_layers} H{full.n_heads} mlp{full.d_mlp}, bs {full.batch_size}, "
          f"loss_on {full.loss_on}, compile {full.compile}; timing {S} seeds x ({E1} + {E2}) epochs", flush=True)

    warm_s = 0.0
    # the first optimizer of a process imports torch's compiler stack (seconds): pay it outside the timing
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1, device=dev))], fused=True)
    if dev.startswith("cuda") and not args.no_warmup:
        t = time.perf_counter()
        # same vocabulary and batch shapes as the timed run (so compiled graphs are reused), few documents
        w = si.make_config(preset, dict(to_dict(bench), frac_qd1consis=0.02, frac_qd2incons=0.02,
                                         frac_d1consis=0.02, frac_d2consis=0.02, frac_d3consis=0.0,
                                         stage1_epochs=1, stage2_epochs=1, eval_every=1))
        si.train_seed_group(w, list(range(S)), progress=False)
        warm_s = time.perf_counter() - t
        print(f"warm-up run: {warm_s:.1f}s", flush=True)

    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    table, ex = si.train_seed_group(bench, list(range(S)), progress=True)
    n_ev1, n_ev2 = ex["n_evals"]["1"], ex["n_evals"]["2"]
    ev1 = ex["eval_s"]["1"] / max(1, n_ev1)
    ev2 = ex["eval_s"]["2"] / max(1, n_ev2)
    data_per_seed = ex["data_s"] / S
    # both stages evaluate the same sets; the first evaluation can include one-time costs (compilation
    # of the fixed-shape eval graphs), so bill every evaluation at the cheaper stage's average
    if n_ev1 and n_ev2:
        ev1 = ev2 = min(ev1, ev2)
    # extrapolate to the full preset, unit by unit (each unit of size <= S trains at the measured rate)
    units = full.units()
    full_evals1 = 1 + len([e for e in range(1, full.stage1_epochs + 1)
                           if e % full.eval_every == 0 or e == full.stage1_epochs])
    full_evals2 = len([e for e in range(1, full.stage2_epochs + 1)
                       if e % full.eval_every == 0 or e == full.stage2_epochs])
    n2 = full.n_stage2_seeds
    per_unit = []
    for u in units:
        scale = max(1.0, len(u) / S)  # a bigger unit than timed: assume linear cost in seeds
        t = (len(u) * data_per_seed + scale * (full.stage1_epochs * ex["stage1_epoch_s"]
                                               + n2 * full.stage2_epochs * (ex["stage2_epoch_s"] or 0)
                                               + full_evals1 * ev1 + n2 * full_evals2 * ev2))
        per_unit.append(t)
    est = sum(per_unit)
    seed_epochs_full = full.n_seeds * (full.stage1_epochs + n2 * full.stage2_epochs)
    out = {
        "device": ex["device"],
        "seeds": S,
        "epochs": [E1, E2],
        "wall_s": ex["wall_time_s"],
        "seed_epochs_per_s": ex["seed_epochs_per_s"],
        "stage1_train_seed_epochs_per_s": S / ex["stage1_epoch_s"],
        "stage1_epoch_s": ex["stage1_epoch_s"],
        "stage2_epoch_s": ex["stage2_epoch_s"],
        "eval_s": [ev1, ev2],
        "data_s_per_seed": data_per_seed,
        "warmup_s": warm_s,
        "full_preset": preset,
        "full_preset_est_wall_s": est,
        "full_preset_est_seed_epochs_per_s": seed_epochs_full / est,
        "full_preset_units": len(units),
        "peak_gpu_mem_gib": (torch.cuda.max_memory_allocated() / 2 ** 30) if dev.startswith("cuda") else None,
        "n_params_per_seed": ex["n_params_per_seed"],
    }
    print(f"\nmeasured: {out['seed_epochs_per_s']:.3f} seed-epochs/s overall ({S} seeds, wall {ex['wall_time_s']:.1f}s), "
          f"stage-1 training {out['stage1_train_seed_epochs_per_s']:.3f} seed-epochs/s "
          f"({ex['stage1_epoch_s']:.2f}s per epoch for {S} seeds), eval {ev1:.2f}s, data {data_per_seed:.2f}s/seed")
    print(f"estimate for the full '{preset}' preset ({full.n_seeds} seeds x ({full.stage1_epochs} + "
          f"{n2}x{full.stage2_epochs}) epochs, {len(units)} unit(s), {full_evals1}+{full_evals2} evals): "
          f"{est:.0f}s = {est / 60:.1f} min ({out['full_preset_est_seed_epochs_per_s']:.2f} seed-epochs/s)"
          + (f" + one-time warm-up ~{warm_s:.0f}s" if warm_s else ""))
    if out["peak_gpu_mem_gib"] is not None:
        print(f"peak GPU memory {out['peak_gpu_mem_gib']:.1f} GiB")
    print(json.dumps(out))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
