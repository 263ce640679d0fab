"""Short GPU throughput probe for the set-inclusion gpu preset (one call on the GPU box, ~2-4 min).

    PYTHONPATH=lib python scripts/gpu_setinclusion_check.py --out "$OUT" [--budget-s 300] [--compile]

Runs ``benchmarks/bench_setinclusion.py`` at the paper scale (10 seeds trained together, 2 + 2 epochs)
for answer-only and whole-sequence loss (the gpu preset compiles; ``--compile`` adds an uncompiled run), and writes each run's numbers
(seed-epochs/s, estimated wall time of the full gpu preset) to ``<out>/bench_*.json``. Stops starting
new variants once ``--budget-s`` is used up.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import bench_setinclusion as bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_check")
    ap.add_argument("--budget-s", type=float, default=300)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="also time the uncompiled variant")
    ap.add_argument("--variants", default=None, help="comma list of answer,all,answer_compile,answer_nocompile")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ap2 = {"answer": [], "all": ["--loss-on", "all"], "answer_compile": ["--compile"],
           "answer_nocompile": ["--no-compile"]}
    names = args.variants.split(",") if args.variants else (["answer", "all"] + (["answer_nocompile"] if args.compile else []))
    variants = [(n, ap2[n]) for n in names]
    summary = {}
    for name, extra in variants:
        used = time.time() - t0
        if used > args.budget_s:
            print(f"budget used ({used:.0f}s); skipping {name}", flush=True)
            continue
        print(f"\n=== {name} ===", flush=True)
        try:
            summary[name] = bench.main(["--device", "cuda", "--seeds", str(args.seeds), "--epochs", str(args.epochs),
                                        "--json", str(out / f"bench_{name}.json")] + extra)
        except Exception as e:  # noqa: BLE001 - report and go on to the next variant
            print(f"{name} failed: {type(e).__name__}: {e}", flush=True)
            summary[name] = {"error": f"{type(e).__name__}: {e}"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: {kk: v.get(kk) for kk in ("seed_epochs_per_s", "stage1_train_seed_epochs_per_s",
                                                   "full_preset_est_wall_s", "peak_gpu_mem_gib", "error")}
                      for k, v in summary.items()}, indent=1))


def profile(out: Path, seeds: int = 10, steps: int = 12):
    """Kernel-level profile of training steps at the paper scale (uncompiled), and attention variants."""
    import numpy as np
    import torch

    from iml.scratch import multiseed as ms
    from iml.scratch import set_inclusion as si

    c = si.make_config("gpu", {"device": "cuda"})
    d = si.make_data(c, 0)
    v = d.vocab
    shape = ms.ModelShape(vocab_size=v.size, n_out=v.n_out, max_len=c.seq_len)
    model = ms.BatchedGPT(shape, list(range(seeds)), device="cuda")
    tr = ms.LaneTrainer(model, ms.OptimConfig(), device=torch.device("cuda"), amp=True)
    n = 512 * steps
    docs = torch.from_numpy(np.stack([d.stage1_docs[:n]] * seeds)).cuda()
    w = torch.from_numpy(np.stack([si.loss_weights(d.stage1_docs[:n], v, "answer")] * seeds)).cuda()
    rngs = [np.random.default_rng(i) for i in range(seeds)]
    tr.train(docs, w, epochs=1, batch_size=512, lr=1e-4, order_rngs=rngs)
    from torch.profiler import ProfilerActivity, profile as prof

    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        info = tr.train(docs, w, epochs=1, batch_size=512, lr=1e-4, order_rngs=rngs)
    print(f"{steps} steps: {info['wall_s'] * 1000 / steps:.1f} ms/step (profiled)")
    tab = p.key_averages().table(sort_by="cuda_time_total", row_limit=25)
    print(tab)
    (out / "profile.txt").write_text(tab)
    info = tr.train(docs, w, epochs=1, batch_size=512, lr=1e-4, order_rngs=rngs)
    print(f"{steps} steps: {info['wall_s'] * 1000 / steps:.1f} ms/step (unprofiled)")


if __name__ == "__main__" and "--profile" in sys.argv:
    profile(Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else Path("gpu_check"))
    sys.exit(0)


if __name__ == "__main__":
    main()
