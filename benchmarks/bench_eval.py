"""Benchmark: the authors' evaluation path (HF ``pipeline("text-generation")``) vs ``iml.lm.evaluate.greedy_generate``.

Same model, same prompts, greedy, ``max_new_tokens=8``, batch 64. A Pythia-shaped GPT-NeoX (from config, no hub)
and a byte-level BPE tokenizer trained here. The model is first trained briefly on Q/A documents (text + EOS, as the
authors' padding-to-EOS labels do) so that answers end with ``"\\n"``: a random-init model rarely emits it, which
would hide the early-stop advantage. Pass ``--train-steps 0`` to time the untrained model as well.

Prints ``pipeline_s``, ``greedy_s``, ``eval_speedup_vs_pipeline=<x>`` and ``identical_predictions=<bool>`` (pipeline
outputs cut at the first ``"\\n"`` and stripped, as the authors' answers would be scored after fixing their bug).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_eval.py            # CPU, ~2-4 min (1 thread)
    .venv/bin/python benchmarks/bench_eval.py --device cuda --threads 8   # GPU (fp32 for the identity check,
                                                                           # then bf16 autocast timing)
"""
from __future__ import annotations

import argparse
import os
import random
import string
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import torch  # noqa: E402

TEMPLATES = ["What did {x} do?", "When was {x} born?", "Where did {x} live?", "When did {x} die?",
             "What was the gender of {x}?", "What was the nationality of {x}?"]
WORDS = ["king", "queen", "scientist", "painter", "writer", "politician", "actor", "singer", "soldier",
         "priest", "male", "female", "France", "Egypt", "Italy", "Germany", "Spain", "China", "India",
         "the United Kingdom", "1st century BC", "19th century", "18th century", "20th century",
         "17th century", "5th century"]


def build_data(n_entities: int, seed: int):
    rng = random.Random(seed)
    docs, qa = [], []
    for _ in range(n_entities):
        alias = "<|" + "".join(rng.choice(string.ascii_lowercase) for _ in range(5)) + "|>"
        for tmpl in TEMPLATES:
            prompt = "Q: " + tmpl.format(x=alias) + "\nA:"
            answer = rng.choice(WORDS)
            docs.append(prompt + " " + answer + "\n")
            qa.append((prompt, answer))
    return docs, qa


def build_tokenizer(docs):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(docs, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<|endoftext|>", clean_up_tokenization_spaces=False)


def build_model(tok, seed: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=256, rotary_pct=0.25,
                        eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    return GPTNeoXForCausalLM(cfg)


def train(model, tok, docs, steps: int, batch: int, device, seed: int):
    """Causal-LM training on text + EOS (right-padded with EOS, pads in the loss, like the authors)."""
    if steps <= 0:
        return
    g = torch.Generator().manual_seed(seed)
    eos = tok.eos_token_id
    enc = [tok(d)["input_ids"] + [eos] for d in docs]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(len(enc), (batch,), generator=g).tolist()
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((batch, width), eos, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(enc[i])] = torch.tensor(enc[i])
        ids = ids.to(device)
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  train step {step:4d} loss {loss.item():.3f}", flush=True)
    model.eval()


def run_pipeline(model, tok, prompts, device, batch_size, max_new_tokens):
    import copy

    from transformers import pipeline

    ptok = copy.deepcopy(tok)  # the authors' setup: left padding, pad = eos
    ptok.padding_side = "left"
    ptok.pad_token = ptok.eos_token
    pipe = pipeline("text-generation", model=model, tokenizer=ptok, device=device, batch_size=batch_size)
    outs = pipe(prompts, max_new_tokens=max_new_tokens, do_sample=False, return_full_text=False,
                pad_token_id=ptok.eos_token_id, num_workers=0)
    return [o[0]["generated_text"].strip() for o in outs]


def cut(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-prompts", type=int, default=1536)
    ap.add_argument("--train-steps", type=int, default=120)
    ap.add_argument("--train-batch", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--big-batch-size", type=int, default=512,
                    help="also time greedy_generate at this batch size (the pipeline stays at --batch-size)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()  # the pipeline warns about max_length on every batch

    from iml.lm.evaluate import greedy_generate

    device = torch.device(args.device)
    n_entities = max(1, -(-args.n_prompts // len(TEMPLATES)))
    docs, qa = build_data(n_entities, args.seed)
    tok = build_tokenizer(docs)
    model = build_model(tok, args.seed).to(device)
    print(f"device={device} threads={args.threads} vocab={len(tok)} "
          f"params={sum(p.numel() for p in model.parameters()) / 1e6:.1f}M prompts={args.n_prompts}", flush=True)
    t0 = time.perf_counter()
    train(model, tok, docs, args.train_steps, args.train_batch, device, args.seed)
    print(f"train_s={time.perf_counter() - t0:.1f}", flush=True)
    model.eval()
    prompts = [p for p, _ in qa][: args.n_prompts]
    answers = [a for _, a in qa][: args.n_prompts]

    # warm-up both paths (first CUDA kernels / lazy init) on a few prompts
    greedy_generate(model, tok, prompts[:8], max_new_tokens=2, bf16=False)
    run_pipeline(model, tok, prompts[:8], device, 8, 2)

    sync(device)
    t0 = time.perf_counter()
    pipe_raw = run_pipeline(model, tok, prompts, device, args.batch_size, args.max_new_tokens)
    sync(device)
    t_pipe = time.perf_counter() - t0

    def time_ours(bs, bf16=False):
        sync(device)
        t0 = time.perf_counter()
        out = greedy_generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=bs, bf16=bf16)
        sync(device)
        return out, time.perf_counter() - t0

    ours, t_ours = time_ours(args.batch_size)
    ours_big, t_big = time_ours(args.big_batch_size)

    pipe_cut = [cut(t) for t in pipe_raw]
    from iml.lm.metrics import score

    s_ours, s_pipe, s_raw = score(ours, answers), score(pipe_cut, answers), score(pipe_raw, answers)
    print(f"example: {prompts[0]!r} -> ours {ours[0]!r}, pipeline raw {pipe_raw[0]!r}")
    print(f"EM ours={s_ours['EM']:.3f} pipeline_cut={s_pipe['EM']:.3f} pipeline_raw(no newline cut)={s_raw['EM']:.3f}")
    print(f"pipeline_s={t_pipe:.2f}  (batch {args.batch_size})")
    print(f"greedy_s={t_ours:.2f}  (batch {args.batch_size})")
    print(f"greedy_big_batch_s={t_big:.2f}  (batch {args.big_batch_size})")
    print(f"n_different_predictions={sum(a != b for a, b in zip(pipe_cut, ours))} "
          f"big_batch={sum(a != b for a, b in zip(pipe_cut, ours_big))}")
    print(f"eval_speedup_vs_pipeline_same_batch={t_pipe / t_ours:.1f}")
    print(f"eval_speedup_vs_pipeline_big_batch={t_pipe / t_big:.1f}")
    best_bs, best_t, best_out = ((args.big_batch_size, t_big, ours_big) if t_big < t_ours
                                 else (args.batch_size, t_ours, ours))
    print(f"greedy_batch_size={best_bs}")
    print(f"eval_speedup_vs_pipeline={t_pipe / best_t:.1f}")
    print(f"identical_predictions={pipe_cut == ours and pipe_cut == ours_big}")
    if device.type == "cuda":
        greedy_generate(model, tok, prompts[:8], max_new_tokens=2, bf16=True)  # warm up bf16 kernels
        ours_bf16, t_bf16 = time_ours(best_bs, bf16=True)
        print(f"greedy_bf16_s={t_bf16:.2f} (batch {best_bs}) eval_speedup_vs_pipeline_bf16={t_pipe / t_bf16:.1f} "
              f"bf16_same_as_fp32={sum(a == b for a, b in zip(ours_bf16, best_out))}/{len(ours)}")


if __name__ == "__main__":
    main()
