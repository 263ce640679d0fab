"""The batched-seed trainer against an earlier version of itself, side by side: the trainer at git revision
``--baseline`` (default: the last one before the answer-only path, 2026-12-01), today's full forward (every
position, ``at_targets=False``), today's default (last layer and head at each document's one target, tokens
after it cut) and that default under ``torch.compile`` (``--set compile=true``: the same math, fused; float
rounding differs, so it is a config of its own). Compile time is printed separately.

    OMP_NUM_THREADS=1 PYTHONPATH=lib .venv/bin/python benchmarks/bench_lane_trainer.py [--preset cpu] [--steps 40]

On the preset's data and model shape, for S seeds batched (the preset's unit), it times Stage-1 steps, Stage-2
steps and one evaluation with each, alternating them `--rounds` times so all see the same machine load (each path's
best round counts: on a shared machine noise only adds time), and
prints ms per step, the speed-ups over the baseline, and the speed-up of a whole unit of the preset (each phase
weighted by how many steps / evaluations the preset runs). Numbers, not assertions: ``tests/test_multiseed.py`` checks that both paths
train the same model.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from iml.core.env import cpu_info  # noqa: E402
from iml.scratch import multiseed as ms  # noqa: E402
from iml.scratch import set_inclusion as si  # noqa: E402


BASELINE = "ad7d50a"
"""The trainer before the answer-only path (2026-12-01)."""


def _module_at(rev: str) -> types.ModuleType:
    """iml.scratch.multiseed as it was at git revision `rev`."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:lib/iml/scratch/multiseed.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"multiseed_{rev}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, f"multiseed@{rev}", "exec"), mod.__dict__)
    return mod


def _time_phases(c, datas, mod, kwargs: dict, steps: int) -> dict:
    """ms per Stage-1 step, per Stage-2 step, and per evaluation (test + training QA scored) with one trainer."""
    S, v = len(datas), datas[0].vocab
    model = mod.BatchedGPT(si.model_shape(c), list(range(S)))
    tr = mod.LaneTrainer(model, mod.OptimConfig(lr=c.lr), device=torch.device("cpu"), amp=False, **kwargs)
    out = {"first_calls": 0.0, "eval": 0.0}  # the warm-up calls: torch.compile's compile time when compiling
    for phase, key in (("stage1", "stage1_docs"), ("stage2", "stage2_docs")):
        docs = torch.from_numpy(np.stack([getattr(d, key) for d in datas]))
        w = torch.from_numpy(np.stack([si.loss_weights(getattr(d, key), v, c.loss_on) for d in datas]))
        n = min(docs.shape[1], steps * c.batch_size)
        docs, w = docs[:, :n], w[:, :n]
        rngs = [np.random.default_rng(s) for s in range(S)]
        t = time.perf_counter()
        tr.train(docs[:, :c.batch_size], w[:, :c.batch_size], epochs=1, batch_size=c.batch_size, lr=c.lr,
                 order_rngs=rngs)  # warm-up
        out["first_calls"] += time.perf_counter() - t
        t = time.perf_counter()
        info = tr.train(docs, w, epochs=1, batch_size=c.batch_size, lr=c.lr, order_rngs=rngs)
        out[phase] = (time.perf_counter() - t) / info["steps"] * 1e3
    test = torch.from_numpy(np.stack([d.test_docs for d in datas]))
    qa = torch.from_numpy(np.stack([d.train_qa_docs[:c.eval_train_qa_max] for d in datas]))
    for timed in ("first_calls", "eval"):
        t = time.perf_counter()
        for docs, cand in ((test, torch.tensor([v.TRUE, v.FALSE])), (qa, torch.arange(v.n_out))):
            tr.answer_scores(docs, torch.full(docs.shape[:2], c.seq_len - 2), cand)
        dt = time.perf_counter() - t
        out[timed] += dt if timed == "first_calls" else dt * 1e3
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--seeds", type=int, default=None, help="seeds batched (default: the preset's unit)")
    ap.add_argument("--steps", type=int, default=40, help="Stage-1 steps timed per path and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE, help="git revision of the trainer to compare with")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache = tempfile.TemporaryDirectory(prefix="bench_inductor_")  # cold: compile time as a fresh machine sees it
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    c = si.make_config(args.preset)
    S = args.seeds or c.seeds_per_unit or c.n_seeds
    datas = [si.make_data(c, s) for s in range(S)]
    print(f"preset {args.preset}: d_model {c.d_model}, {c.n_layers} layers, {S} seeds batched, batch {c.batch_size}, "
          f"loss_on {c.loss_on}; CPU {cpu_info().get('cpu_model', '?')}, 1 thread, load {os.getloadavg()[0]:.1f}")
    trainers = {f"at {args.baseline}": (_module_at(args.baseline), {}), "full forward": (ms, {"at_targets": False}),
                "at targets": (ms, {"at_targets": True}), "compiled": (ms, {"at_targets": True, "compile": True})}
    runs = {k: [] for k in trainers}
    for _ in range(args.rounds):
        for k, (mod, kw) in trainers.items():
            if kw.get("compile"):
                torch._dynamo.reset()  # round 1 compiles into the empty code cache; later rounds reuse it from disk
            runs[k].append(_time_phases(c, datas, mod, kw, args.steps))
    best = {k: {p: float(np.min([r[p] for r in rs])) for p in rs[0]} for k, rs in runs.items()}  # the best round
    first = [r["first_calls"] for r in runs["compiled"]]
    compile_s = first[0] - best["at targets"]["first_calls"]  # cold: round 1 compiled into the empty cache
    warm_s = float(np.min(first[1:])) - best["at targets"]["first_calls"] if len(first) > 1 else float("nan")
    n1, n2 = datas[0].stage1_docs.shape[0], datas[0].stage2_docs.shape[0]
    steps1, steps2 = c.stage1_epochs * -(-n1 // c.batch_size), c.stage2_epochs * -(-n2 // c.batch_size)
    evals = 1 + c.stage1_epochs // c.eval_every + c.stage2_epochs // c.eval_every
    for m in best.values():
        m["unit"] = (m["stage1"] * steps1 + m["stage2"] * steps2 + m["eval"] * evals) / 1e3
    base = best[f"at {args.baseline}"]
    print(f"{'':<30}" + "".join(f"{k:>16}" for k in best) + "   (speed-up over the baseline)")
    for p, what in (("stage1", "Stage-1 step (ms)"), ("stage2", "Stage-2 step (ms)"), ("eval", "one evaluation (ms)"),
                    ("unit", "one unit of the preset (s)")):
        print(f"{what:<30}" + "".join(f"{m[p]:>9.1f} {base[p] / m[p]:>4.2f}x" for m in best.values()))
    units = -(-c.n_seeds // S)
    unit_c = best["compiled"]["unit"]
    for what, extra in (("  + compiling, cold cache", compile_s), (f"  + cold compile / {units} units", compile_s / units),
                        ("  + compiling, warm cache", warm_s)):
        print(f"{what:<30}{'':>{16 * (len(best) - 1)}}{unit_c + extra:>9.1f} {base['unit'] / (unit_c + extra):>4.2f}x")
    print(f"compiling took {compile_s:.0f} s into an empty code cache and {warm_s:.0f} s from a warm one (a later process "
          f"on this machine); a process running the preset's {c.n_seeds} seeds ({units} units) compiles once")
    for k in ("at targets", "compiled"):
        print(f"a unit: {steps1} + {steps2} steps and {evals} evaluations; {k} "
              f"{S * (c.stage1_epochs + c.stage2_epochs) / best[k]['unit']:.2f} seed-epochs/s")


if __name__ == "__main__":
    main()
