"""Mid-stage resume files (train.checkpoint_every): a stage killed after k steps and started again continues
from its last resume file with the numbers of an uninterrupted run, bit for bit; a file of another run is
refused; a stage-1 seed of the main experiment killed in Stage 1 continues instead of starting again."""
import dataclasses

import pandas as pd
import pytest
import torch

import iml.lm.train
from iml.core.config import config_hash
from iml.core.results import ResultStore
from iml.lm.experiment import make_config, run
from iml.lm.models import ModelConfig, load_model
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
from iml.lm.train import Resume, ResumeMismatch, StageConfig, StageInterrupted, TrainConfig, train_stage
from test_train import _rows


@pytest.fixture(scope="module")
def setup():
    rows = _rows(23)
    tok = train_tokenizer([x["text"] for x in rows], TokenizerConfig(vocab_size=320))
    return rows, tok


def _train(setup, stage, train, **kw):
    rows, tok = setup
    model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=0)
    seen = []
    kw.setdefault("on_epoch_end", lambda e, m, lg: seen.append((e, lg.epoch_losses[-1])))
    try:
        log = train_stage(model, tok, rows, stage, train, seed=3, progress=False, **kw)
    except StageInterrupted:
        log = None
    return model, log, seen


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("optimizer,grad_accum,every,stop", [
    ("adamw", 1, 3, 8),       # 5 steps an epoch: the file of step 6 is mid-epoch 2, steps 7-8 are redone
    ("adafactor", 2, 3, 3),   # 3 steps an epoch (the last one short): the file is at an epoch's end, callback due
])
def test_interrupted_stage_resumes_bit_for_bit(setup, tmp_path, optimizer, grad_accum, every, stop):
    stage = StageConfig(epochs=3, batch_size=5, grad_accum=grad_accum, lr=3e-3, optimizer=optimizer,
                        schedule="linear", warmup=0.2)
    train = TrainConfig(checkpoint_every=every, weight_decay=0.01)
    ref_model, ref_log, ref_seen = _train(setup, stage, TrainConfig(weight_decay=0.01))

    path = tmp_path / "stage.resume.pt"
    kept = []  # the caller's progress, saved with the file and given back on resume
    resume = Resume(path, state=lambda: list(kept), restore=lambda s: kept.__setitem__(slice(None), s))
    cb = lambda e, m, lg: kept.append((e, lg.epoch_losses[-1]))  # noqa: E731
    _, log, _ = _train(setup, stage, train, resume=resume, max_steps=stop, on_epoch_end=cb)
    assert log is None and path.exists()
    torch.manual_seed(123)  # the killed process's global RNG states come back from the file
    kept.append("from the killed process, after its last resume file")
    model, log, _ = _train(setup, stage, train, resume=resume, on_epoch_end=cb)
    assert _same_weights(model, ref_model)
    assert log.epoch_losses == ref_log.epoch_losses and log.lrs == ref_log.lrs
    assert (log.steps, log.tokens) == (ref_log.steps, ref_log.tokens)
    assert kept == ref_seen  # every epoch's callback exactly once, in order
    other, _, _ = _train(setup, stage, train)
    assert _same_weights(other, ref_model)  # checkpoint_every without a resume file changes nothing


def test_a_resume_file_of_another_run_is_refused(setup, tmp_path):
    stage = StageConfig(epochs=2, batch_size=6, lr=1e-3, optimizer="adamw")
    train = TrainConfig(checkpoint_every=2)
    path = tmp_path / "r.pt"
    _train(setup, stage, train, resume=path, max_steps=2)
    assert path.exists()
    with pytest.raises(ResumeMismatch, match=r"stage\.lr"):
        _train(setup, dataclasses.replace(stage, lr=2e-3), train, resume=path)
    with pytest.raises(ResumeMismatch, match="key"):
        _train(setup, stage, train, resume=Resume(path, key="another caller"))
    rows, tok = setup
    model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=0)
    with pytest.raises(ResumeMismatch, match="data"):
        train_stage(model, tok, rows[:-1], stage, train, seed=3, progress=False, resume=path)
    with pytest.raises(ResumeMismatch, match="seed"):
        train_stage(model, tok, rows, stage, train, seed=4, progress=False, resume=path)
    _, log, _ = _train(setup, stage, dataclasses.replace(train, checkpoint_every=5), resume=path)  # how often: free
    assert log.steps == 2 * 4


def test_a_finished_stage_file_returns_at_once(setup, tmp_path):
    stage = StageConfig(epochs=2, batch_size=6, lr=1e-3, optimizer="adamw")
    train = TrainConfig(checkpoint_every=100)  # never due: only the end of the stage writes it
    path = tmp_path / "r.pt"
    ref, log, _ = _train(setup, stage, train, resume=Resume(path, at_end=True))
    again, log2, seen = _train(setup, stage, train, resume=Resume(path, at_end=True))
    assert seen == [] and log2 == log and _same_weights(again, ref)


_SMOKE_STAGE = {"split": "train_stage1", "lr": 0.003, "batch_size": 16, "optimizer": "adamw", "loss_on": "answer"}
OVERRIDES = {"data.num_ents": 24, "seeds.n_stage1": 1, "seeds.n_stage2": 2, "stage2_from_epochs": [4, 2],
             "stages": [{**_SMOKE_STAGE, "name": "pre", "epochs": 1, "eval_every": 0},  # two shared stages
                        {**_SMOKE_STAGE, "name": "stage1", "epochs": 4},
                        {**_SMOKE_STAGE, "name": "stage2", "split": "train_stage2", "epochs": 2}],
             "eval.every": 2, "eval.sets": ["test_qd1consis", "test_d2consis"], "eval.train_sets": ["train_stage1"]}


def test_a_killed_stage1_seed_continues_from_its_resume_file(setup, tmp_path, monkeypatch, capsys):
    """The main experiment, two shared stages: Stage 1 (6 steps an epoch) killed after 17 steps (files every 5)
    continues at step 15, with the rows of its epochs 1-2 and the epoch-2 checkpoint its Stage 2 starts from
    kept in its resume file; the finished first stage is not trained again; the result equals an uninterrupted
    run's, the config hash is that of a run without resume files, and no checkpoint is left behind. A resume file
    that does not match is set aside with a note: the seed starts again."""
    plain = make_config("smoke", OVERRIDES)
    cfg = make_config("smoke", {**OVERRIDES, "train.checkpoint_every": 5})
    assert config_hash(cfg) == config_hash(plain)  # execution only: a run with resume files shares the folder
    ref = run(plain, root=tmp_path / "a", progress=False)

    real, calls = iml.lm.train.train_stage, []

    def killed(*a, **k):
        calls.append((a[3].name, k.get("resume") is not None and k["resume"].path.exists()))
        return real(*a, **k, max_steps=17 if len(calls) == 2 else None)

    monkeypatch.setattr(iml.lm.train, "train_stage", killed)
    with pytest.raises(StageInterrupted):
        run(cfg, root=tmp_path / "b", progress=False)
    ckpt_dir = ResultStore("main", cfg, root=tmp_path / "b").dir / "checkpoints" / "s0"
    assert {p.name for p in ckpt_dir.iterdir()} == {"pre.resume.pt", "stage1.resume.pt", "epoch0002.safetensors"}
    out = run(cfg, root=tmp_path / "b", progress=False)
    assert calls == [("pre", False), ("stage1", False), ("stage1", True)] + [("stage2", False)] * 4
    pd.testing.assert_frame_equal(out.table, ref.table)
    assert not (out.dir / "checkpoints").exists()

    monkeypatch.setattr(iml.lm.train, "train_stage", real)
    foreign = ResultStore("main", cfg, root=tmp_path / "c").dir / "checkpoints" / "s0" / "stage1.resume.pt"
    foreign.parent.mkdir(parents=True)
    _train(setup, StageConfig(epochs=1, batch_size=8, optimizer="adamw"), TrainConfig(checkpoint_every=1),
           resume=foreign, max_steps=1)
    again = run(cfg, root=tmp_path / "c", progress=False)
    assert "was written by another run" in capsys.readouterr().err
    pd.testing.assert_frame_equal(again.table, ref.table)
