"""Fast batched greedy evaluation of Hugging Face causal LMs, replacing the authors' ``pipeline("text-generation")``:
length-sorted batches, left padding with position ids, a KV cache and a per-sequence stop string.
bf16 autocast on CUDA can flip near-tied argmaxes: pass ``bf16=False`` where predictions must match an fp32
reference. The caller's tokenizer is never mutated (prompts are tokenised without padding and padded here).
Design choices and measurements: book/design_notes.md (section `iml.lm.evaluate`).
"""
from __future__ import annotations

import contextlib
import inspect
import weakref
import zlib
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from iml.core.config import ConfigError
from iml.lm.metrics import score

__all__ = ["greedy_generate", "evaluate_sets", "answer_logprob", "set_columns"]


# ----------------------------------------------------------------------------------------------
# Model / tokenizer plumbing
# ----------------------------------------------------------------------------------------------

def _forward_params(model) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()


def _cache_kwarg(params: set[str]) -> str:
    """Name of the KV-cache argument: ``cache`` (transformers >= 5) or ``past_key_values``."""
    if "cache" in params:
        return "cache"
    return "past_key_values"


def _get_cache(out) -> Any:
    for name in ("cache", "past_key_values"):
        c = getattr(out, name, None)
        if c is not None:
            return c
    return None


def _model_device(model, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _pad_id(tokenizer) -> int:
    """The tokenizer's pad id, falling back to EOS (Pythia/Llama have no pad token), then 0."""
    for pid in (getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if pid is not None:
            return int(pid)
    return 0


def _encode(tokenizer, texts: Sequence[str], add_special_tokens: bool) -> list[list[int]]:
    """Token ids per text, unpadded and untruncated (does not touch the tokenizer's padding settings)."""
    if len(texts) == 0:
        return []
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, padding=False, truncation=False)
    return [list(ids) for ids in enc["input_ids"]]


def _left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: ``cumsum(mask) - 1``, with pads parked at position 0."""
    pos = mask.long().cumsum(-1) - 1
    return pos.clamp_min(0)


def _autocast(device: torch.device, bf16: bool | None):
    use = (device.type == "cuda") if bf16 is None else bool(bf16)
    if use and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _EvalMode:
    """Put the model in eval mode (no dropout) and restore its training flag afterwards."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.was_training = getattr(self.model, "training", False)
        self.model.eval()

    def __exit__(self, *exc):
        self.model.train(self.was_training)
        return False


_STOP_TABLES: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _stop_token_table(tokenizer, stop: str, vocab: int) -> torch.Tensor:
    """Bool lookup over the model's vocabulary: does token ``i`` decode to text containing ``stop``?

    Exact for a one-character stop string (a decoded sequence contains it iff one of its tokens does);
    longer stop strings are checked on the decoded text instead.
    """
    key = (stop, vocab, len(tokenizer))
    try:
        per_tok = _STOP_TABLES.setdefault(tokenizer, {})
    except TypeError:  # pragma: no cover - tokenizer not weak-referenceable
        per_tok = {}
    if key not in per_tok:
        n = min(vocab, len(tokenizer))
        texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=True)
        table = torch.zeros(vocab, dtype=torch.bool)
        table[:n] = torch.tensor([stop in t for t in texts], dtype=torch.bool)
        per_tok[key] = table
    return per_tok[key]


def _finish(tokenizer, ids: Sequence[int], stop: str | None) -> str:
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    if stop:
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text.strip()


# ----------------------------------------------------------------------------------------------
# Greedy decoding
# ----------------------------------------------------------------------------------------------

def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 8,
    batch_size: int = 64,
    stop: str | None = "\n",
    device=None,
    *,
    add_special_tokens: bool = True,
    bf16: bool | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts``, cut at the first ``stop`` string and stripped, in input order.

    Args:
        model: a causal LM (``AutoModelForCausalLM`` or anything with the same forward contract).
        tokenizer: its tokenizer; used for encoding/decoding only, never mutated. Missing pad token -> EOS id.
        max_new_tokens: at most this many tokens per prompt.
        batch_size: prompts per forward pass (prompts are sorted by token length first).
        stop: a sequence stops once its generated text contains this string (``None``: only EOS / length).
        device: where to run; default the model's device (inputs are moved there, the model is not).
        add_special_tokens: passed to the tokenizer (True matches how training text is tokenised).
        bf16: autocast to bf16; ``None`` means on CUDA only. CPU always runs in the model's dtype.
    """
    prompts = list(prompts)
    if max_new_tokens < 0:
        raise ConfigError("max_new_tokens", f"must be >= 0, got {max_new_tokens}")
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
    if not prompts:
        return []
    if max_new_tokens == 0:
        return [""] * len(prompts)

    dev = _model_device(model, device)
    params = _forward_params(model)
    cache_kw = _cache_kwarg(params)
    keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    pad_id = _pad_id(tokenizer)
    eos_id = getattr(tokenizer, "eos_token_id", None)
    single_char_stop = stop is not None and len(stop) == 1

    encoded = _encode(tokenizer, prompts, add_special_tokens)
    # Longest first (an out-of-memory error shows up in the first batch); stable for equal lengths.
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    results: list[str] = [""] * len(prompts)

    with torch.inference_mode(), _EvalMode(model), _autocast(dev, bf16):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            ids, mask = _left_pad([encoded[i] for i in idx], pad_id, dev)
            pos = _positions(mask)
            b = ids.shape[0]
            done = torch.zeros(b, dtype=torch.bool, device=dev)
            gen = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=dev)
            n_gen = torch.zeros(b, dtype=torch.long, device=dev)  # tokens kept per row (EOS excluded)
            cache = None
            stop_table = None
            step_ids, step_mask, step_pos = ids, mask, pos
            for t in range(max_new_tokens):
                kwargs = {"input_ids": step_ids, "attention_mask": step_mask, "position_ids": step_pos,
                          "use_cache": True, cache_kw: cache}
                if keep_kw is not None:
                    kwargs[keep_kw] = 1
                out = model(**kwargs)
                cache = _get_cache(out)
                logits = out.logits[:, -1, :]
                nxt = logits.argmax(dim=-1)
                active = ~done
                is_eos = (nxt == eos_id) if eos_id is not None else torch.zeros_like(done)
                keep = active & ~is_eos
                gen[:, t] = torch.where(keep, nxt, torch.full_like(nxt, pad_id))
                n_gen += keep.long()
                finished_now = active & is_eos
                if stop is not None:
                    if single_char_stop:
                        if stop_table is None:
                            stop_table = _stop_token_table(tokenizer, stop, logits.shape[-1]).to(dev)
                        finished_now |= keep & stop_table[nxt]
                    else:
                        rows = keep.nonzero().flatten().tolist()
                        if rows:
                            gen_cpu = gen[rows, : t + 1].tolist()
                            lens = n_gen[rows].tolist()
                            texts = tokenizer.batch_decode([g[:n] for g, n in zip(gen_cpu, lens)],
                                                           skip_special_tokens=True)
                            hit = [r for r, txt in zip(rows, texts) if stop in txt]
                            if hit:
                                finished_now[hit] = True
                done |= finished_now
                if bool(done.all()) or t == max_new_tokens - 1:
                    break
                # Feed only the new token. Finished rows get the pad token; their outputs are ignored.
                new_tok = torch.where(done, torch.full_like(nxt, pad_id), nxt).unsqueeze(1)
                mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=dev)], dim=1)
                if cache is not None:
                    step_ids, step_pos, step_mask = new_tok, step_pos[:, -1:] + 1, mask
                else:  # a model that returns no cache: re-run the whole sequence (slow but correct)
                    ids = torch.cat([ids, new_tok], dim=1)
                    step_ids, step_pos, step_mask = ids, _positions(mask), mask
            gen_cpu = gen.tolist()
            lens = n_gen.tolist()
            for row, i in enumerate(idx):
                # kept tokens are contiguous: a row stops keeping tokens once it is done
                results[i] = _finish(tokenizer, gen_cpu[row][: lens[row]], stop)
    return results


# ----------------------------------------------------------------------------------------------
# Answer log-probabilities
# ----------------------------------------------------------------------------------------------

def answer_logprob(
    model,
    tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 64,
    device=None,
    *,
    add_special_tokens: bool = True,
    bf16: bool | None = None,
) -> list[float]:
    """Summed log-probability of each ``answers[i]`` as the continuation of ``prompts[i]``.

    The prompt is tokenised as usual (``add_special_tokens``), the answer on its own without special tokens, and the
    two id lists are concatenated, so the answer string is appended verbatim: include the leading space
    (``" Paris"``) if the training text has one. Log-softmax is taken in fp32. An empty answer scores 0.0.
    """
    prompts = list(prompts)
    answers = list(answers)
    if len(prompts) != len(answers):
        raise ConfigError("answers", f"{len(answers)} answers for {len(prompts)} prompts")
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
    if not prompts:
        return []
    dev = _model_device(model, device)
    params = _forward_params(model)
    keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
    pad_id = _pad_id(tokenizer)
    p_ids = _encode(tokenizer, prompts, add_special_tokens)
    a_ids = _encode(tokenizer, answers, False)
    full = [p + a for p, a in zip(p_ids, a_ids)]
    for i, p in enumerate(p_ids):
        if not p and a_ids[i]:
            raise ConfigError("prompts", f"prompt {i} tokenises to nothing; its first answer token has no context")
    order = sorted(range(len(prompts)), key=lambda i: -len(full[i]))
    out_vals = [0.0] * len(prompts)

    with torch.inference_mode(), _EvalMode(model), _autocast(dev, bf16):
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            a_max = max(len(a_ids[i]) for i in idx)
            if a_max == 0:
                continue
            ids, mask = _left_pad([full[i] for i in idx], pad_id, dev)
            kwargs = {"input_ids": ids, "attention_mask": mask, "position_ids": _positions(mask),
                      "use_cache": False}
            # Left padding puts every answer at the end: logits at the last a_max + 1 positions suffice.
            if keep_kw is not None:
                kwargs[keep_kw] = a_max + 1
            logits = model(**kwargs).logits[:, -(a_max + 1):-1, :].float()
            logp = torch.log_softmax(logits, dim=-1)  # (b, a_max, V): row j predicts token at -(a_max) + j
            targets = ids[:, -a_max:]
            tok_lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(idx):
                n = len(a_ids[i])
                out_vals[i] = float(tok_lp[row, a_max - n:].sum()) if n else 0.0
    return out_vals


# ----------------------------------------------------------------------------------------------
# Evaluation over named sets
# ----------------------------------------------------------------------------------------------

def set_columns(data, name: str) -> tuple[list[str], list[str]]:
    """``(prompts, answers)`` of one set: a ``datasets.Dataset``, a pandas DataFrame or a dict of lists."""
    try:
        ds = data[name]
    except KeyError:
        raise ConfigError("set_names", f"unknown evaluation set {name!r}") from None
    cols = {}
    for col in ("prompt", "answer"):
        try:
            cols[col] = [str(x) for x in ds[col]]
        except (KeyError, ValueError):
            raise ConfigError(f"set_names.{name}", f"evaluation set has no {col!r} column") from None
    if len(cols["prompt"]) != len(cols["answer"]):
        raise ConfigError(f"set_names.{name}", "prompt and answer columns differ in length")
    return cols["prompt"], cols["answer"]


def _subsample(n: int, limit: int | None, seed: int, name: str) -> np.ndarray:
    if limit is None or n <= limit:
        return np.arange(n)
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])
    return np.sort(rng.choice(n, size=int(limit), replace=False))


def evaluate_sets(
    model,
    tokenizer,
    dsd_or_dict: Mapping[str, Any],
    set_names: Sequence[str],
    max_new_tokens: int = 8,
    batch_size: int = 64,
    limit: int | None = None,
    seed: int = 0,
    *,
    stop: str | None = "\n",
    device=None,
    return_predictions: bool = False,
):
    """EM / F1 / n of greedy answers on each named set, as a long table with columns ``subset, metric, value``.

    Each set needs ``prompt`` and ``answer`` columns. The prompts of all sets are decoded together in one
    :func:`greedy_generate` call (identical prompts are generated once). ``limit`` evaluates a fixed subsample of at
    most ``limit`` rows per set, drawn from ``numpy.random.default_rng([seed, crc32(set name)])``, so the same rows
    are used at every epoch. With ``return_predictions=True`` also returns ``{set: DataFrame(prompt, answer,
    prediction)}``.
    """
    import pandas as pd

    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ConfigError("limit", f"must be a positive integer or None, got {limit!r}")
    names = list(set_names)
    if len(set(names)) != len(names):
        raise ConfigError("set_names", "duplicate set names")
    chosen: dict[str, tuple[list[str], list[str]]] = {}
    for name in names:
        prompts, answers = set_columns(dsd_or_dict, name)
        keep = _subsample(len(prompts), limit, seed, name)
        chosen[name] = ([prompts[i] for i in keep], [answers[i] for i in keep])

    unique: dict[str, int] = {}
    for prompts, _ in chosen.values():
        for p in prompts:
            unique.setdefault(p, len(unique))
    preds_unique = greedy_generate(model, tokenizer, list(unique), max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, stop=stop, device=device)

    rows = []
    per_set = {}
    for name, (prompts, answers) in chosen.items():
        preds = [preds_unique[unique[p]] for p in prompts]
        s = score(preds, answers)
        for metric in ("EM", "F1", "n"):
            rows.append({"subset": name, "metric": metric, "value": float(s[metric])})
        if return_predictions:
            per_set[name] = pd.DataFrame({"prompt": prompts, "answer": answers, "prediction": preds})
    table = pd.DataFrame(rows, columns=["subset", "metric", "value"])
    return (table, per_set) if return_predictions else table
