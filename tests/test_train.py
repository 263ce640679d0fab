"""iml.lm.train: encoding (labels, EOS, pads), the schedules, and that a tiny model actually learns."""
import math

import pytest

from iml.lm.models import ModelConfig, load_model
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
from iml.lm.train import StageConfig, TrainConfig, collate, encode_rows, lr_at, train_stage


def _rows(n=24, seed=0):
    import random

    r = random.Random(seed)
    rows = []
    for i in range(n):
        alias = "<|" + "".join(r.choice("abcdefghij") for _ in range(5)) + "|>"
        ans = r.choice(["physicist", "actor", "writer", "singer", "painter"])
        p = f"Q: What did {alias} do?\nA:"
        rows.append({"prompt": p, "answer": ans, "text": f"{p} {ans}\n"})
    return rows


@pytest.fixture(scope="module")
def setup():
    rows = _rows()
    tok = train_tokenizer([x["text"] for x in rows], TokenizerConfig(vocab_size=320))
    return rows, tok


def test_answer_only_labels_mask_the_prompt_and_keep_one_eos(setup):
    rows, tok = setup
    docs, trunc = encode_rows(rows[:3], tok, loss_on="answer")
    assert trunc == 0
    for row, d in zip(rows, docs):
        n_prompt = len(tok(row["prompt"]).input_ids)
        assert d.labels[:n_prompt] == [-100] * n_prompt
        assert all(x != -100 for x in d.labels[n_prompt:])
        assert d.input_ids[-1] == tok.eos_token_id and d.input_ids.count(tok.eos_token_id) == 1
        assert tok.decode(d.input_ids[n_prompt:-1]) == " " + row["answer"] + "\n"
    docs_all, _ = encode_rows(rows[:3], tok, loss_on="all")
    assert all(x != -100 for x in docs_all[0].labels)
    assert docs_all[0].input_ids == docs[0].input_ids


def test_pads_are_never_in_the_loss(setup):
    rows, tok = setup
    short = {"prompt": "Q: x?\nA:", "answer": "y", "text": "Q: x?\nA: y\n"}
    docs, _ = encode_rows([short, rows[0]], tok, loss_on="all")
    ids, mask, labels = collate(docs, tok.pad_token_id)
    assert ids.shape[1] == max(len(d.input_ids) for d in docs)  # dynamic padding
    assert (labels[mask == 0] == -100).all()
    assert (ids[mask == 0] == tok.pad_token_id).all()
    assert int((labels != -100).sum()) == sum(len(d.input_ids) for d in docs)


def test_adafactor_default_is_linear_decay_without_warmup(setup):
    rows, tok = setup
    model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=0)
    st = StageConfig(epochs=3, batch_size=8)  # paper defaults: adafactor, lr 5e-5, linear, warmup 0
    assert (st.optimizer, st.lr, st.schedule, st.warmup, st.loss_on) == ("adafactor", 5e-5, "linear", 0.0, "all")
    log = train_stage(model, tok, rows, st, seed=0, progress=False)
    total = 3 * math.ceil(len(rows) / 8)
    assert log.steps == total == len(log.lrs)
    assert log.lrs[0] == pytest.approx(5e-5)
    diffs = [a - b for a, b in zip(log.lrs, log.lrs[1:])]
    assert all(d == pytest.approx(5e-5 / total) for d in diffs)
    assert log.lrs[-1] == pytest.approx(5e-5 / total)


def test_cosine_warmup_schedule():
    st = StageConfig(lr=1.0, schedule="cosine", warmup=0.1, optimizer="adamw")
    lrs = [lr_at(s, 100, st, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1, abs=1e-3) and max(lrs) == pytest.approx(1.0)


def test_loss_falls_and_tiny_model_memorises(setup):
    rows, tok = setup
    from iml.lm.evaluate import evaluate_sets

    model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=1)
    seen = []
    st = StageConfig(epochs=25, lr=5e-3, batch_size=8, optimizer="adamw", schedule="cosine", loss_on="answer")
    log = train_stage(model, tok, rows, st, TrainConfig(weight_decay=0.0), seed=0, progress=False,
                      on_epoch_end=lambda e, m, lg: seen.append(e))
    assert seen == list(range(1, 26))
    assert log.epoch_losses[-1] < 0.2 * log.epoch_losses[0]
    table = evaluate_sets(model, tok, {"train": {"prompt": [r["prompt"] for r in rows],
                                                 "answer": [r["answer"] for r in rows]}}, ["train"])
    em = float(table[(table.metric == "EM")].value.iloc[0])
    assert em >= 0.9, em
    assert log.tokens > 0 and log.tokens_per_s > 0


def test_shuffling_is_seeded(setup):
    rows, tok = setup
    out = []
    for seed in (0, 0, 1):
        model, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=0)
        log = train_stage(model, tok, rows, StageConfig(epochs=1, batch_size=5, lr=1e-3, optimizer="adamw"),
                          seed=seed, progress=False)
        out.append(log.epoch_losses[0])
    assert out[0] == out[1] and out[0] != out[2]
