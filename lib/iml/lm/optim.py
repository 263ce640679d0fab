"""Adafactor as the paper ran it, with the parameters of one shape updated together.

The paper's optimizer is ``transformers.optimization.Adafactor(lr, scale_parameter=False,
relative_step=False, warmup_init=False)`` (no first moment, factored second moment for matrices,
update clipping at RMS 1, ``beta2_t = 1 - t^-0.8``). Hugging Face's implementation loops over the
parameters in Python and launches about twenty small GPU kernels per parameter: for SmolLM2-135M
(272 tensors) that is about 6,000 launches per optimizer step, several times the work of the forward
and backward passes of a small batch. A transformer's parameters come in a few shapes repeated once per
layer, so :class:`Adafactor` stacks the gradients of each shape, runs the same arithmetic on the stack
(about thirty launches per shape) and writes the updates back with one multi-tensor op. The update is
the Hugging Face one, operation for operation (``tests/test_optim.py`` checks them against each other).

Only that configuration is implemented (fp32 parameters, no ``beta1``, no relative step, no parameter
scaling); anything else is refused rather than silently changed.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch

__all__ = ["Adafactor"]


class Adafactor(torch.optim.Optimizer):
    """``transformers`` Adafactor with ``scale_parameter=False, relative_step=False, warmup_init=False,
    beta1=None``, batched over parameters of equal shape. ``lr`` is read from the param group at every
    step (the training loop sets it for its schedule)."""

    def __init__(self, params, lr: float, eps: tuple[float, float] = (1e-30, 1e-3),
                 clip_threshold: float = 1.0, decay_rate: float = -0.8, weight_decay: float = 0.0):
        if lr is None or lr <= 0:
            raise ValueError(f"Adafactor needs an explicit lr > 0 (no relative step), got {lr!r}")
        super().__init__(params, dict(lr=lr, eps=tuple(eps), clip_threshold=clip_threshold,
                                      decay_rate=decay_rate, weight_decay=weight_decay))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dtype != torch.float32:
                    raise ValueError(f"Adafactor here keeps fp32 master weights; got a {p.dtype} parameter "
                                     f"of shape {tuple(p.shape)}")
        self._buckets: dict[tuple, dict] = {}

    def _bucket(self, gi: int, params: list[torch.Tensor]) -> dict:
        key = (gi, tuple(id(p) for p in params))
        b = self._buckets.get(key)
        if b is None:
            shape = params[0].shape
            k = len(params)
            opts = dict(dtype=torch.float32, device=params[0].device)
            b = {"step": 0, "factored": len(shape) >= 2}
            if b["factored"]:
                b["row"] = torch.zeros((k, *shape[:-1]), **opts)
                b["col"] = torch.zeros((k, *shape[:-2], shape[-1]), **opts)
            else:
                b["sq"] = torch.zeros((k, *shape), **opts)
            self._buckets[key] = b
        return b

    def state_dict(self) -> dict:
        """torch's state dict plus the per-shape second moments and step counts (``buckets``), with parameters
        named by their position in their group, so a run resumed from it continues bit for bit."""
        sd = super().state_dict()
        pos = {id(p): i for g in self.param_groups for i, p in enumerate(g["params"])}
        sd["buckets"] = [{"group": gi, "params": [pos[i] for i in ids],
                          **{k: v.detach().clone() if torch.is_tensor(v) else v for k, v in b.items()}}
                         for (gi, ids), b in self._buckets.items()]
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        sd = dict(state_dict)
        buckets = sd.pop("buckets", [])
        super().load_state_dict(sd)
        self._buckets = {}
        for b in buckets:
            params = [self.param_groups[b["group"]]["params"][i] for i in b["params"]]
            self._buckets[(b["group"], tuple(id(p) for p in params))] = {
                k: v.to(params[0].device).clone() if torch.is_tensor(v) else v
                for k, v in b.items() if k not in ("group", "params")}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for gi, group in enumerate(self.param_groups):
            by_shape: OrderedDict[tuple, list[torch.Tensor]] = OrderedDict()
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Adafactor does not support sparse gradients.")
                by_shape.setdefault((tuple(p.shape), p.device), []).append(p)
            lr, eps1 = group["lr"], group["eps"][0]
            for params in by_shape.values():
                b = self._bucket(gi, params)
                b["step"] += 1
                beta2t = 1.0 - math.pow(b["step"], group["decay_rate"])
                grad = torch.stack([p.grad.float() for p in params])
                update = grad ** 2 + eps1
                if b["factored"]:
                    row, col = b["row"], b["col"]
                    row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
                    col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
                    r = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
                    c = col.unsqueeze(-2).rsqrt()
                    update = torch.mul(r, c)
                    update.mul_(grad)
                else:
                    sq = b["sq"]
                    sq.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
                    update = sq.rsqrt().mul_(grad)
                k = len(params)
                numel = update[0].numel()
                rms = update.reshape(k, -1).norm(2, dim=1) / (numel ** 0.5)
                update.div_((rms / group["clip_threshold"]).clamp_(min=1.0).view(k, *([1] * (update.dim() - 1))))
                update.mul_(lr)
                if group["weight_decay"] != 0:
                    torch._foreach_add_(params, params, alpha=-group["weight_decay"] * lr)
                torch._foreach_sub_(params, list(update.unbind(0)))
        return loss
