"""The batched-seed trainer's two paths side by side: the full forward (every position, ``at_targets=False``) and
the answer-only path (last layer and head at each document's one target, tokens after it cut; the default).

    OMP_NUM_THREADS=1 PYTHONPATH=lib .venv/bin/python benchmarks/bench_lane_trainer.py [--preset cpu] [--steps 40]

On the preset's data and model shape, for S seeds batched (the preset's unit), it times Stage-1 steps, Stage-2
steps and one evaluation with each path, alternating the paths `--rounds` times so both see the same machine load,
and prints ms per step, the ratios, and the ratio for a whole unit of the preset (each phase weighted by how many
steps / evaluations the preset runs). Numbers, not assertions: ``tests/test_multiseed.py`` checks that both paths
train the same model.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from iml.core.env import cpu_info  # noqa: E402
from iml.scratch import multiseed as ms  # noqa: E402
from iml.scratch import set_inclusion as si  # noqa: E402


def _time_phases(c, datas, at_targets: bool, steps: int) -> dict:
    """ms per Stage-1 step, per Stage-2 step, and per evaluation (test + training QA scored) with one path."""
    S, v = len(datas), datas[0].vocab
    model = ms.BatchedGPT(si.model_shape(c), list(range(S)))
    tr = ms.LaneTrainer(model, ms.OptimConfig(lr=c.lr), device=torch.device("cpu"), amp=False, at_targets=at_targets)
    out = {}
    for phase, key in (("stage1", "stage1_docs"), ("stage2", "stage2_docs")):
        docs = torch.from_numpy(np.stack([getattr(d, key) for d in datas]))
        w = torch.from_numpy(np.stack([si.loss_weights(getattr(d, key), v, c.loss_on) for d in datas]))
        n = min(docs.shape[1], steps * c.batch_size)
        docs, w = docs[:, :n], w[:, :n]
        rngs = [np.random.default_rng(s) for s in range(S)]
        tr.train(docs[:, :c.batch_size], w[:, :c.batch_size], epochs=1, batch_size=c.batch_size, lr=c.lr,
                 order_rngs=rngs)  # warm-up
        t = time.perf_counter()
        info = tr.train(docs, w, epochs=1, batch_size=c.batch_size, lr=c.lr, order_rngs=rngs)
        out[phase] = (time.perf_counter() - t) / info["steps"] * 1e3
    test = torch.from_numpy(np.stack([d.test_docs for d in datas]))
    qa = torch.from_numpy(np.stack([d.train_qa_docs[:c.eval_train_qa_max] for d in datas]))
    t = time.perf_counter()
    for docs, cand in ((test, torch.tensor([v.TRUE, v.FALSE])), (qa, torch.arange(v.n_out))):
        tr.answer_scores(docs, torch.full(docs.shape[:2], c.seq_len - 2), cand)
    out["eval"] = (time.perf_counter() - t) * 1e3
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, default=None, help="seeds batched (default: the preset's unit)")
    ap.add_argument("--steps", type=int, default=40, help="Stage-1 steps timed per path and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    c = si.make_config(args.preset)
    S = args.seeds or c.seeds_per_unit or c.n_seeds
    datas = [si.make_data(c, s) for s in range(S)]
    print(f"preset {args.preset}: d_model {c.d_model}, {c.n_layers} layers, {S} seeds batched, batch {c.batch_size}, "
          f"loss_on {c.loss_on}; CPU {cpu_info().get('cpu_model', '?')}, 1 thread, load {os.getloadavg()[0]:.1f}")
    runs = {False: [], True: []}
    for _ in range(args.rounds):
        for at in (False, True):
            runs[at].append(_time_phases(c, datas, at, args.steps))
    med = {at: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for at, rs in runs.items()}
    n1, n2 = datas[0].stage1_docs.shape[0], datas[0].stage2_docs.shape[0]
    steps1, steps2 = c.stage1_epochs * -(-n1 // c.batch_size), c.stage2_epochs * -(-n2 // c.batch_size)
    evals = 1 + c.stage1_epochs // c.eval_every + c.stage2_epochs // c.eval_every
    unit = {at: (m["stage1"] * steps1 + m["stage2"] * steps2 + m["eval"] * evals) / 1e3 for at, m in med.items()}
    print(f"{'phase':<28}{'full forward':>14}{'at targets':>12}{'speed-up':>10}")
    for k, what in (("stage1", "Stage-1 step (ms)"), ("stage2", "Stage-2 step (ms)"), ("eval", "one evaluation (ms)")):
        print(f"{what:<28}{med[False][k]:>14.1f}{med[True][k]:>12.1f}{med[False][k] / med[True][k]:>9.2f}x")
    print(f"{'one unit of the preset (s)':<28}{unit[False]:>14.0f}{unit[True]:>12.0f}{unit[False] / unit[True]:>9.2f}x"
          f"   ({steps1} + {steps2} steps, {evals} evaluations; {S * (c.stage1_epochs + c.stage2_epochs) / unit[True]:.2f}"
          f" seed-epochs/s at targets)")


if __name__ == "__main__":
    main()
