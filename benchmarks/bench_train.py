"""Training throughput: iml.lm.train's own loop vs a Hugging Face ``Trainer`` on the same model and data.

Same from-scratch model (``mini`` shape, the experiment's own tokenizer), same documents (Stage-1 rows of
200 synthetic people), same number of optimizer steps, Adafactor at lr 5e-5, loss on all tokens, one
CPU thread. Three runs:

* ``iml``: :func:`iml.lm.train.train_stage` (dynamic padding, pads masked, output head only where labels are);
* ``trainer_dynamic``: ``Trainer`` + ``DataCollatorForLanguageModeling(mlm=False)`` (pads per batch);
* ``trainer_maxlen48``: ``Trainer`` on documents padded to 48 tokens like the reference code;
* ``hf_loop_dynamic`` / ``hf_loop_maxlen48``: Trainer's inner loop written out (DataLoader, collator,
  ``model(**batch).loss`` on full logits, Adafactor, linear schedule, clipping) - the comparison that
  still runs where ``Trainer`` cannot (it needs ``accelerate``, which this project does not install).

Throughput counts real (non-pad) document tokens per second of training. Prints one line per run and
``train_speedup_vs_trainer=<x>`` (iml vs the dynamic-padding Trainer) at the end. Not a test.
Usage: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train.py [--steps 30] [--batch 32]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", default="mini")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many timed runs each")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from iml.lm.models import ModelConfig, count_params, load_model
    from iml.lm.tagging import DataConfig, build
    from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
    from iml.lm.train import StageConfig, TrainConfig, encode_rows, train_stage

    data = build(DataConfig(kb="synthetic", num_ents=200, seed=0))
    rows = data.splits["train_stage1"]
    n_docs = args.steps * args.batch
    rows = (rows * (n_docs // len(rows) + 1))[:n_docs]  # exactly `steps` full batches, one epoch
    tok = train_tokenizer([r["text"] for rs in data.splits.values() for r in rs], TokenizerConfig(vocab_size=1000))
    docs, _ = encode_rows(rows, tok, loss_on="all")
    real_tokens = sum(len(d.input_ids) for d in docs)
    model0, _ = load_model(ModelConfig(name=args.model, pretrained=False), tok, seed=0)
    init = {k: v.clone() for k, v in model0.state_dict().items()}
    print(f"model={args.model} params={count_params(model0)} docs={n_docs} steps={args.steps} batch={args.batch} "
          f"real_tokens={real_tokens} mean_doc_len={real_tokens / n_docs:.1f}")

    def fresh():
        model0.load_state_dict(init)
        model0.train()
        return model0

    results = {}

    # --- our loop ---
    best = float("inf")
    for _ in range(args.repeats):
        m = fresh()
        st = StageConfig(epochs=1, batch_size=args.batch, lr=5e-5, optimizer="adafactor", loss_on="all")
        log = train_stage(m, tok, rows, st, TrainConfig(), seed=0, progress=False)
        assert log.steps == args.steps
        best = min(best, log.train_time_s)
    results["iml"] = real_tokens / best

    # --- HF Trainer ---
    import datasets
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    eos = tok.eos_token
    texts = [r["text"] + eos for r in rows]  # one EOS per document, like ours

    def trainer_run(pad_to_48: bool) -> float:
        if pad_to_48:
            enc = tok(texts, padding="max_length", max_length=48, truncation=True)
            ds = datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                                             "labels": enc["input_ids"]})  # reference: labels = input_ids, pads too
            collator = None
        else:
            enc = tok(texts, truncation=True, max_length=64)
            ds = datasets.Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
            collator = DataCollatorForLanguageModeling(tok, mlm=False)
        best_t = float("inf")
        for _ in range(args.repeats):
            m = fresh()
            with tempfile.TemporaryDirectory() as out:
                targs = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch, num_train_epochs=1,
                                          learning_rate=5e-5, optim="adafactor", report_to=[], save_strategy="no",
                                          logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
                                          disable_tqdm=True, seed=0)
                tr = Trainer(model=m, args=targs, train_dataset=ds, data_collator=collator)
                t = time.perf_counter()
                tr.train()
                best_t = min(best_t, time.perf_counter() - t)
                assert tr.state.global_step == args.steps, tr.state.global_step
        return real_tokens / best_t

    def plain_hf_run(pad_to_48: bool) -> float:
        """What Trainer's inner loop does, without Trainer: DataLoader + collator + model(**batch).loss
        (full logits) + Adafactor + linear schedule. Used when Trainer cannot run (no accelerate)."""
        from torch.utils.data import DataLoader
        from transformers.optimization import Adafactor, get_linear_schedule_with_warmup

        if pad_to_48:
            enc = tok(texts, padding="max_length", max_length=48, truncation=True)
            feats = [{"input_ids": torch.tensor(i), "attention_mask": torch.tensor(a), "labels": torch.tensor(i)}
                     for i, a in zip(enc["input_ids"], enc["attention_mask"])]
            collate = None
        else:
            enc = tok(texts, truncation=True, max_length=64)
            feats = [{"input_ids": i, "attention_mask": a} for i, a in zip(enc["input_ids"], enc["attention_mask"])]
            collate = DataCollatorForLanguageModeling(tok, mlm=False)
        best_t = float("inf")
        for _ in range(args.repeats):
            m = fresh()
            g = torch.Generator().manual_seed(0)
            dl = DataLoader(feats, batch_size=args.batch, shuffle=True, generator=g, collate_fn=collate)
            opt = Adafactor(m.parameters(), lr=5e-5, scale_parameter=False, relative_step=False)
            sch = get_linear_schedule_with_warmup(opt, 0, args.steps)
            t = time.perf_counter()
            for batch in dl:
                loss = m(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
                opt.step()
                sch.step()
                opt.zero_grad(set_to_none=True)
            best_t = min(best_t, time.perf_counter() - t)
        return real_tokens / best_t

    trainer_ok = True
    try:
        results["trainer_dynamic"] = trainer_run(False)
        results["trainer_maxlen48"] = trainer_run(True)
    except ImportError as e:  # transformers' Trainer needs `accelerate`
        trainer_ok = False
        print(f"# Trainer unavailable here ({str(e).splitlines()[0][:120]}); timing its inner loop without it")
    results["hf_loop_dynamic"] = plain_hf_run(False)
    results["hf_loop_maxlen48"] = plain_hf_run(True)
    for k, v in results.items():
        print(f"{k}_tokens_per_s={v:.0f}")
    if trainer_ok:
        print(f"train_speedup_vs_trainer={results['iml'] / results['trainer_dynamic']:.2f}")
        print(f"train_speedup_vs_trainer_maxlen48={results['iml'] / results['trainer_maxlen48']:.2f}")
    else:
        print("train_speedup_vs_trainer=unavailable (install accelerate to time the Trainer itself)")
    print(f"train_speedup_vs_hf_loop={results['iml'] / results['hf_loop_dynamic']:.2f}")
    print(f"train_speedup_vs_hf_loop_maxlen48={results['iml'] / results['hf_loop_maxlen48']:.2f}")

if __name__ == "__main__":
    main()
