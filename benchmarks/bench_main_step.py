"""Benchmark: one training step of the main experiment's gpu preset (SmolLM2-135M shape, batch 256, people data).

Where does a step's time go, and do several processes sharing one GPU add throughput? The first H200 run of the
gpu preset (5 processes) trained at ~16k tokens/s per process (~80k together, ~6% MFU); this script separates:

* ``host_ms``: building one batch on the CPU (collate, loss positions);
* ``fwdbwd_ms``: forward + backward of one batch (bf16 autocast, all-token loss), synchronised;
  ``fwdbwd_fast_ms`` the same with :mod:`iml.lm.fastllama`'s forward (``train.fast_forward``);
* ``opt_iml_ms`` / ``opt_hf_ms``: one Adafactor step, ``iml.lm.optim`` (batched by shape) vs ``transformers``;
* with ``--compile``: the same with every batch padded to one length, eager and with the transformer body
  ``torch.compile``'d (``compile_s`` is the one-time compilation);
* ``loop_tok_s``: the real loop (:func:`iml.lm.train.train_stage`) over ``--steps`` batches; with ``--procs N``
  N such loops run at once in separate processes and ``sum_tok_s`` is their total; ``--loop-compile`` runs
  them with ``train.compile`` (compilation happens in an untimed warm-up epoch).

The weights are random (speed does not depend on them), so only the shape and the tokenizer are needed: a
folder with SmolLM2's ``config.json`` and tokenizer files (``--shape``; written from the GGUF by
``load_model`` + ``save_pretrained``).

    python benchmarks/bench_main_step.py --shape DIR --device cuda [--procs 1,3] [--fast] [--compile] [--loop-compile]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import torch  # noqa: E402


def _setup(args):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from iml.lm.tagging import DataConfig, build

    tok = AutoTokenizer.from_pretrained(args.shape)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.shape)).to(args.device)
    rows = build(DataConfig(kb="people", num_ents=args.num_ents, seed=600)).splits["train_stage1"]
    return model, tok, rows


def _sync(dev):
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def _ms(fn, n, dev):
    for _ in range(2):
        fn()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(dev)
    return 1000 * (time.perf_counter() - t) / n


def parts(args):
    from transformers.optimization import Adafactor as HFAdafactor

    from iml.lm.optim import Adafactor
    from iml.lm.train import _loss_sum, collate, encode_rows, loss_positions

    model, tok, rows = _setup(args)
    docs, _ = encode_rows(rows[: args.batch * 8], tok, "all")
    batches = [docs[i:i + args.batch] for i in range(0, len(docs), args.batch)]
    k = [0]

    def host():
        ids, mask, labels = collate(batches[k[0] % len(batches)], tok.pad_token_id)
        k[0] += 1
        return ids, mask, loss_positions(labels)

    dev = args.device
    out = {"host_ms": _ms(host, 20, "cpu")}
    prepared = []
    for b in batches:
        ids, mask, (fi, tg) = host()
        prepared.append(tuple(t.to(dev) for t in (ids, mask, fi, tg)))

    fast = [False]

    def fwdbwd():
        ids, mask, fi, tg = prepared[k[0] % len(prepared)]
        k[0] += 1
        with torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16, enabled=dev.startswith("cuda")):
            loss = _loss_sum(model, ids, mask, fi, tg, fast_forward=fast[0])
        (loss / max(1, tg.numel())).backward()

    out["fwdbwd_ms"] = _ms(fwdbwd, 20, dev)
    fast[0] = True
    out["fwdbwd_fast_ms"] = _ms(fwdbwd, 20, dev)  # iml.lm.fastllama: the same forward without HF's machinery
    fast[0] = False
    out["tokens_per_batch"] = int(sum(int(p[1].sum()) for p in prepared) / len(prepared))
    params = [p for p in model.parameters() if p.requires_grad]
    for name, opt in (("opt_iml_ms", Adafactor(params, lr=5e-5)),
                      ("opt_hf_ms", HFAdafactor(params, lr=5e-5, scale_parameter=False, relative_step=False,
                                                warmup_init=False))):
        out[name] = _ms(opt.step, 20, dev)
    if args.compile:
        # every batch padded to one length, so that the compiled transformer body sees one shape
        import torch.nn.functional as F

        L = max(len(d.input_ids) for d in docs)
        fixed = []
        for b in batches:
            ids, mask, labels = collate(b, tok.pad_token_id)
            pad = L - ids.shape[1]
            ids = F.pad(ids, (0, pad), value=tok.pad_token_id)
            mask, labels = F.pad(mask, (0, pad)), F.pad(labels, (0, pad), value=-100)
            fixed.append(tuple(t.to(dev) for t in (ids, mask, *loss_positions(labels))))
        prepared[:] = fixed
        out["fixed_len"] = L
        out["fwdbwd_fixed_eager_ms"] = _ms(fwdbwd, 20, dev)
        t = time.perf_counter()
        model.model = torch.compile(model.model, dynamic=False)
        fwdbwd()
        _sync(dev)
        out["compile_s"] = time.perf_counter() - t
        out["fwdbwd_fixed_compiled_ms"] = _ms(fwdbwd, 20, dev)
    return out


def loop(args):
    from iml.lm.train import StageConfig, TrainConfig, train_stage

    model, tok, rows = _setup(args)
    sub = rows[: args.batch * args.steps]
    tc = TrainConfig(fast_forward=args.fast, compile=args.loop_compile)
    # warm-up (with --loop-compile: compiles the one batch shape of `sub`, so it warms up on all of it)
    warm = sub if args.loop_compile else sub[:args.batch * 3]
    train_stage(model, tok, warm, StageConfig(epochs=1, batch_size=args.batch), tc, progress=False)
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    log = train_stage(model, tok, sub, StageConfig(epochs=1, batch_size=args.batch), tc, progress=False)
    return {"loop_tok_s": log.tokens_per_s, "loop_ms_per_step": 1000 * log.train_time_s / log.steps,
            "steps": log.steps}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default=".gpucarry/smolshape",
                    help="folder with config.json and the tokenizer files (scripts/gpu_prepare_smollm2.sh shape)")
    ap.add_argument("--device", default=None, help="default: cuda if there is one, else the benchmark is skipped")
    ap.add_argument("--num-ents", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--procs", default="1", help="comma-separated process counts for the loop measurement")
    ap.add_argument("--fast", action="store_true", help="the loop measurements use train.fast_forward")
    ap.add_argument("--compile", action="store_true",
                    help="also time forward+backward with fixed-length batches, eager and torch.compile'd")
    ap.add_argument("--loop-compile", action="store_true",
                    help="the loop measurements use train.compile (fixed-shape batches, torch.compile'd forward)")
    ap.add_argument("--mode", default="all", choices=["all", "parts", "loop"])
    ap.add_argument("--load-s", type=float, default=25.0, help="seconds the loop processes get to load first")
    ap.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.device is None:
        if not torch.cuda.is_available():
            print("bench_main_step: a GPU benchmark (SmolLM2 shape, batch 256); no CUDA here, skipped "
                  "(pass --device cpu with a small --batch/--num-ents to try it on a CPU)")
            return 0
        args.device = "cuda"
    if not os.path.isfile(os.path.join(args.shape, "config.json")):
        print(f"bench_main_step: no model shape at {args.shape}; make it with "
              f"`bash scripts/gpu_prepare_smollm2.sh shape FILE.gguf` (or pass --shape DIR)")
        return 2
    torch.set_num_threads(1)
    if args.mode == "parts":
        print(json.dumps(parts(args)), flush=True)
        return 0
    if args.mode == "loop":
        print(json.dumps(loop(args)), flush=True)
        return 0
    res = parts(args)
    for k, v in res.items():
        print(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}", flush=True)
    for n in [int(x) for x in args.procs.split(",")]:
        start = time.time() + args.load_s  # all processes load first, then start together
        cmd = [sys.executable, __file__, "--mode", "loop", "--shape", args.shape, "--device", args.device,
               "--num-ents", str(args.num_ents), "--steps", str(args.steps), "--batch", str(args.batch),
               "--start-at", repr(start)] + (["--fast"] if args.fast else []) \
            + (["--loop-compile"] if args.loop_compile else [])
        ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
        per = [o["loop_tok_s"] for o in outs]
        print(f"fast_forward={args.fast} compile={args.loop_compile} procs={n} per_proc_tok_s={[round(x) for x in per]} sum_tok_s={sum(per):.0f} "
              f"ms_per_step={[round(o['loop_ms_per_step'], 1) for o in outs]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
