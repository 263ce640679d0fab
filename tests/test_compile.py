"""train.compile: fixed-shape batches without a padding mask train the same model as dynamic padding,
and the compiled forward is really compiled."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from iml.core.config import ConfigError
from iml.lm.fastllama import llama_hidden
from iml.lm.models import ModelConfig, load_model
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer
from iml.lm.train import StageConfig, TrainConfig, collate, encode_rows, train_stage


def _rows(n):
    """QA rows whose answers have 1 to 4 words, so that batches need padding."""
    import random

    r = random.Random(0)
    words = ["physicist", "actor", "writer", "singer", "painter", "of", "films", "famous"]
    rows = []
    for i in range(n):
        alias = "<|" + "".join(r.choice("abcdefghij") for _ in range(5)) + "|>"
        ans = " ".join(r.choice(words) for _ in range(1 + i % 4))
        p = f"Q: What did {alias} do?\nA:"
        rows.append({"prompt": p, "answer": ans, "text": f"{p} {ans}\n"})
    return rows


@pytest.fixture(scope="module")
def data():
    rows = _rows(23)  # 23 rows in batches of 5: the last batch has 3 rows, padded to 5 when compiling
    tok = train_tokenizer([x["text"] for x in rows], TokenizerConfig(vocab_size=320))
    return rows, tok


def _llama(tok, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tok.pad_token_id)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def _models(tok):
    return {"llama": lambda: _llama(tok),
            "gptneox": lambda: load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=1)[0]}


def _train(model, rows, tok, **train_kw):
    st = StageConfig(epochs=3, lr=3e-3, batch_size=5, optimizer="adamw", loss_on="all")
    log = train_stage(model, tok, rows, st, TrainConfig(**train_kw), seed=0, progress=False)
    return log, {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("arch", ["llama", "gptneox"])
@pytest.mark.parametrize("fast", [False, True])
def test_fixed_shape_batches_without_mask_train_the_same_model(data, arch, fast, monkeypatch):
    """The padding of train.compile (one shape, all-pad rows, no padding mask) changes no loss and no
    update beyond float rounding; torch.compile is replaced by the identity to test that alone."""
    rows, tok = data
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)
    ref_log, ref = _train(_models(tok)[arch](), rows, tok, fast_forward=fast)
    log, got = _train(_models(tok)[arch](), rows, tok, fast_forward=fast, compile=True)
    assert log.epoch_losses == pytest.approx(ref_log.epoch_losses, rel=1e-5)
    assert log.epoch_losses[-1] < log.epoch_losses[0]  # it trained
    assert log.tokens == ref_log.tokens  # throughput counts real tokens, not padding
    for n in ref:  # AdamW at lr 3e-3 on weights of size ~1: rounding differences stay ~1e-5
        assert torch.allclose(got[n], ref[n], rtol=0, atol=1e-4), n


def test_llama_hidden_without_mask_is_exact_at_real_positions(data):
    rows, tok = data
    m = _llama(tok)
    docs, _ = encode_rows(rows[:6], tok, "all", 64)
    ids, mask, _ = collate(docs, tok.pad_token_id)
    assert (mask == 0).any()  # there is padding
    with_mask = llama_hidden(m.base_model, ids, mask)
    causal_only = llama_hidden(m.base_model, ids, None)
    real = mask.bool()
    assert torch.allclose(with_mask[real], causal_only[real], rtol=1e-5, atol=1e-6)


@pytest.fixture
def fresh_inductor_cache(tmp_path, monkeypatch):
    """Inductor's on-disk cache (default /tmp/torchinductor_<user>) reuses kernels generated under another
    CPU kernel level: code vectorised for AVX2 then fails to build under ATEN_CPU_CAPABILITY=default (C++
    compile error) and aborts the process under avx512. Each run compiles into its own folder."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


def test_compiled_training_matches_eager(data, fresh_inductor_cache):
    """The real thing: torch.compile (inductor on the CPU) trains the same model as eager."""
    rows, tok = data
    counters = torch._dynamo.utils.counters
    counters.clear()
    ref_log, ref = _train(_llama(tok), rows, tok, fast_forward=True)
    log, got = _train(_llama(tok), rows, tok, fast_forward=True, compile=True)
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo did compile a graph
    assert log.epoch_losses == pytest.approx(ref_log.epoch_losses, rel=1e-4)
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=0, atol=1e-4), n


def test_collate_to_a_fixed_shape_and_bad_values(data):
    rows, tok = data
    docs, _ = encode_rows(rows[:3], tok, "all", 64)
    ids, mask, labels = collate(docs, tok.pad_token_id, shape=(5, 40))
    assert ids.shape == mask.shape == labels.shape == (5, 40)
    assert mask[3:].sum() == 0 and (labels[3:] == -100).all() and (ids[3:] == tok.pad_token_id).all()
    with pytest.raises(ValueError, match="do not fit the shape"):
        collate(docs, tok.pad_token_id, shape=(2, 40))
    with pytest.raises(ConfigError, match="compile"):
        TrainConfig(compile="yes")


def test_the_option_leaves_the_committed_gpu_result_in_place():
    """train.compile came after the H200 results: off, the gpu preset still hashes to its committed
    folder; on, it is another config (its numbers may differ in the last bits)."""
    from iml.core.config import config_hash
    from iml.lm.experiment import make_config

    assert config_hash(make_config("gpu")) == "48307769fd7a"
    assert config_hash(make_config("gpu", {"train.compile": True})) != "48307769fd7a"
