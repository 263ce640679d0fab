"""One model across ranks (``torchrun``): who this process is, and the few collectives the trainer needs.

Under ``torchrun --nproc_per_node=N`` every rank runs the same program on the same data in the same order.
:func:`iml.lm.train.train_stage` deals each optimizer step's ``grad_accum`` micro-batches out to the ranks
and sums their gradients (:func:`all_reduce_grads`); the loss of a micro-batch is its token sum over the
label tokens of the whole step, so the sum is the step's gradient and N ranks take the steps of one process
with ``grad_accum`` micro-batches (the paper's 128 x 2 is 2 ranks x 128). Only rank 0 writes files
(:func:`is_main`); :func:`run_units` lets rank 0 run a result's units and the other ranks compute alongside.
Without torchrun (``WORLD_SIZE`` unset or 1) every function here is a no-op and nothing imports
``torch.distributed``.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["world_size", "rank", "is_main", "active", "init", "device", "broadcast_params", "all_reduce_",
           "all_reduce_grads", "from_main", "barrier", "run_units"]


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    d = _dist()
    return d.get_world_size() if d else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    d = _dist()
    return d.get_rank() if d else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or no torchrun): the process that writes files and logs."""
    return rank() == 0


def active() -> bool:
    return world_size() > 1


def init(device_type: str = "cpu") -> bool:
    """Join the process group torchrun describes (env ``WORLD_SIZE`` > 1) unless joined already: NCCL for CUDA
    (each rank on GPU ``LOCAL_RANK``), gloo otherwise. Returns whether this process is one of several ranks."""
    if not active():
        return False
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True


def device(dev):
    """`dev` (a ``torch.device``), with a bare ``cuda`` made this rank's GPU ``cuda:LOCAL_RANK`` under torchrun."""
    import torch

    if active() and dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def broadcast_params(model) -> None:
    """Rank 0's parameters and buffers to every rank (each stage starts from one model)."""
    if d := _dist():
        for t in model.state_dict().values():
            d.broadcast(t, 0)


def all_reduce_(tensors, bucket_numel: int = 1 << 24) -> None:
    """Sum `tensors` over the ranks in place, a few flattened buckets at a time (one collective each)."""
    import torch

    d = _dist()
    if d is None:
        return
    bucket: list = []

    def flush():
        flat = torch.cat([t.reshape(-1) for t in bucket])
        d.all_reduce(flat)
        off = 0
        for t in bucket:
            t.copy_(flat[off:off + t.numel()].view_as(t))
            off += t.numel()
        bucket.clear()

    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or t.device != bucket[0].device
                       or sum(b.numel() for b in bucket) + t.numel() > bucket_numel):
            flush()
        bucket.append(t)
    if bucket:
        flush()


def all_reduce_grads(params) -> None:
    """Sum the gradients of `params` over the ranks. A rank that had no micro-batch in a step (the last,
    short step of an epoch) adds zeros; a parameter with no gradient on any rank keeps none (as in one process,
    where the optimizer skips it)."""
    import torch

    d = _dist()
    if d is None:
        return
    params = list(params)
    had = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    d.all_reduce(had)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    all_reduce_([p.grad for p in params])
    for p, h in zip(params, had.tolist()):
        if h == 0:
            p.grad = None


def from_main(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable objects); `obj` itself without torchrun."""
    d = _dist()
    if d is None:
        return obj
    box = [obj if is_main() else None]
    d.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if d := _dist():
        d.barrier()


def run_units(experiment: str, config, jobs, **kw):
    """:func:`iml.core.runner.run_units` under torchrun: rank 0 runs it (the folder's lock, the unit files, the
    result, the logs) and tells the other ranks, before each job, which of its units to compute; they compute
    them alongside (their collectives meet rank 0's), write nothing, and return rank 0's result. Without
    torchrun it is ``run_units`` itself."""
    from iml.core import runner

    if not active():
        return runner.run_units(experiment, config, jobs, **kw)
    if not is_main():
        while (msg := from_main(None))[0] == "job":
            for _ in jobs[msg[1]].compute(msg[2]):
                pass
        return msg[1]
    inside = [False]  # an error inside a job leaves the other ranks in a collective: torchrun stops them

    def announced(k, job):
        def compute(todo):
            from_main(("job", k, list(todo)))
            inside[0] = True
            yield from job.compute(todo)
            inside[0] = False
        return runner.Job(job.units, compute, job.key)

    res = None
    try:
        res = runner.run_units(experiment, config, [announced(k, j) for k, j in enumerate(jobs)], **kw)
    finally:
        if not inside[0]:
            from_main(("end", res))
    return res
