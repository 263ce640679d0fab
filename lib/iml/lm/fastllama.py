"""A Llama forward pass for training, written out: the same operations on the same parameters as ``transformers``'
``LlamaModel.forward`` without its per-call machinery, so it gives the same hidden states (``tests/test_fastllama.py``;
the mask is always passed, so unpadded batches may differ in the last bits on a GPU). Used when ``train.fast_forward``
is set and the model is a ``LlamaModel`` with SDPA attention (:func:`supports`); else the HF forward runs.
Design choices and timings: book/design_notes.md (section `iml.lm.fastllama`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supports", "llama_hidden"]


def supports(base) -> bool:
    """Whether :func:`llama_hidden` computes exactly what `base` (a model's ``base_model``) would."""
    cfg = getattr(base, "config", None)
    if type(base).__name__ != "LlamaModel" or cfg is None:
        return False
    rope = (getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {})
    return (getattr(cfg, "_attn_implementation", None) == "sdpa"
            and rope.get("rope_type", "default") == "default"
            and getattr(cfg, "pretraining_tp", 1) == 1
            and not getattr(cfg, "attention_bias", False) and not getattr(cfg, "mlp_bias", False))


def _rms_norm(x: torch.Tensor, norm) -> torch.Tensor:
    # LlamaRMSNorm.forward, operation for operation
    xf = x.to(torch.float32)
    variance = xf.pow(2).mean(-1, keepdim=True)
    xf = xf * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * xf.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


def llama_hidden(base, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Final-norm hidden states (B, T, d) of `base` (a ``LlamaModel``) for right-padded `input_ids`.

    `attention_mask` None: causal attention alone (SDPA's causal kernel), which is exact at every real
    position of a right-padded batch (``train.compile`` uses it: no mask, one kernel, nothing to sync).
    """
    cfg = base.config
    B, T = input_ids.shape
    x = base.embed_tokens(input_ids)
    pos = torch.arange(T, device=input_ids.device)[None]
    cos, sin = base.rotary_emb(x, pos)
    cos, sin = cos[:, None], sin[:, None]
    # key j visible to query i iff j <= i and j is not padding (what create_causal_mask builds for SDPA)
    if attention_mask is None:
        mask = None
    else:
        causal = torch.ones(T, T, dtype=torch.bool, device=input_ids.device).tril()
        mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    for layer in base.layers[: cfg.num_hidden_layers]:
        att = layer.self_attn
        h = _rms_norm(x, layer.input_layernorm)
        q = F.linear(h, att.q_proj.weight).view(B, T, -1, head_dim).transpose(1, 2)
        k = F.linear(h, att.k_proj.weight).view(B, T, -1, head_dim).transpose(1, 2)
        v = F.linear(h, att.v_proj.weight).view(B, T, -1, head_dim).transpose(1, 2)
        q = (q * cos) + (_rotate_half(q) * sin)
        k = (k * cos) + (_rotate_half(k) * sin)
        k, v = _repeat_kv(k, n_heads // n_kv), _repeat_kv(v, n_heads // n_kv)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=att.scaling,
                                           is_causal=mask is None)
        o = o.transpose(1, 2).contiguous().reshape(B, T, -1).contiguous()
        x = x + F.linear(o, att.o_proj.weight)
        h = _rms_norm(x, layer.post_attention_layernorm)
        mlp = layer.mlp
        x = x + F.linear(mlp.act_fn(F.linear(h, mlp.gate_proj.weight)) * F.linear(h, mlp.up_proj.weight),
                         mlp.down_proj.weight)
    return _rms_norm(x, base.norm)
