"""Run by tests/test_ddp.py under ``torchrun --nproc_per_node=2`` (gloo), and imported by it for the one-process
runs it is compared with. ``python tests/ddp_worker.py OUT_DIR``, on every rank:

1. one small stage of :func:`iml.lm.train.train_stage` (grad_accum 2: one micro-batch per rank); rank 0 saves
   the weights and the log as ``OUT_DIR/stage.pt``;
2. the same stage stopped after 3 steps with a resume file written every 2, then continued from it
   (``OUT_DIR/resumed.pt``);
3. ``iml run main`` (:data:`RUN_ARGS`, the smoke preset scaled down) with ``--root OUT_DIR/results``; the exit
   status of every rank is the process's.
"""
import sys
from pathlib import Path

import torch

from iml.lm import distributed
from iml.lm.models import ModelConfig, load_model
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
from iml.lm.train import StageConfig, StageInterrupted, TrainConfig, train_stage
from test_train import _rows  # tests/ is on sys.path: the script's own folder, or pytest's

STAGE = StageConfig(epochs=2, batch_size=5, grad_accum=2, lr=3e-3, optimizer="adamw", warmup=0.2)
"""23 documents: 5 micro-batches, so 3 steps an epoch and in the last one rank 1 has nothing to do."""
TRAIN = TrainConfig(weight_decay=0.01, max_grad_norm=0.5, threads=1)

RUN_SETS = {"data.num_ents": 24, "seeds.n_stage1": 1, "seeds.n_stage2": 1, "stages.0.epochs": 3,
            "stages.1.epochs": 2, "stages.0.batch_size": 8, "stages.0.grad_accum": 2, "stages.1.batch_size": 8,
            "stages.1.grad_accum": 2, "eval.every": 3, "eval.sets": ["test_qd1consis", "test_d2consis"]}
RUN_ARGS = ["run", "main", "--preset", "smoke", "--quiet"] + [a for k, v in RUN_SETS.items()
                                                              for a in ("--set", f"{k}={v}")]


def stage(resume=None, max_steps=None) -> dict | None:
    """Train the tiny model; its final weights and log (None when stopped at `max_steps`)."""
    data = _rows(23)
    tok = train_tokenizer([x["text"] for x in data], TokenizerConfig(vocab_size=320))
    model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=1)
    train = TrainConfig(**{**TRAIN.__dict__, "checkpoint_every": 2})
    try:
        log = train_stage(model, tok, data, STAGE, train, seed=5, progress=False, resume=resume, max_steps=max_steps)
    except StageInterrupted:
        return None
    return {"state": model.state_dict(), "losses": log.epoch_losses, "lrs": log.lrs, "steps": log.steps,
            "tokens": log.tokens, "world_size": distributed.world_size()}


def main(out: str) -> int:
    from iml.cli import main as iml

    out = Path(out)
    full = stage()
    assert stage(resume=out / "stage.resume.pt", max_steps=3) is None
    resumed = stage(resume=out / "stage.resume.pt")
    if distributed.is_main():
        torch.save(full, out / "stage.pt")
        torch.save(resumed, out / "resumed.pt")
    return iml(RUN_ARGS + ["--root", str(out / "results")])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
