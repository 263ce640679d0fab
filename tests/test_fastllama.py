"""iml.lm.fastllama computes what transformers' LlamaModel computes, on the same parameters, for training."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from iml.core.config import config_hash, to_dict
from iml.lm.fastllama import llama_hidden, supports
from iml.lm.train import StageConfig, TrainConfig, _loss_sum, loss_positions


def _llama(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=True, **kw)
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 6:] = 0  # right padding, as the training loop makes it
    mask[2, 4:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def test_same_hidden_states_and_gradients_as_transformers():
    m = _llama()
    assert supports(m.base_model)
    ids, mask, labels = _batch()
    ref = m.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    ours = llama_hidden(m.base_model, ids, mask)
    assert torch.equal(ours, ref)
    fi, tg = loss_positions(labels)
    grads = []
    for fast in (False, True):
        m.zero_grad()
        _loss_sum(m, ids, mask, fi, tg, fast_forward=fast).backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for n in grads[0]:
        assert torch.allclose(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-7), n
    assert any(g.abs().sum() > 0 for g in grads[1].values())


def test_unsupported_models_fall_back():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    neox = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=64))
    assert not supports(neox.base_model)
    eager = _llama()
    eager.config._attn_implementation = "eager"
    assert not supports(eager.base_model)
    ids, mask, labels = _batch()
    fi, tg = loss_positions(labels)
    a = _loss_sum(neox, ids % 50, mask, fi, tg % 50, fast_forward=True)
    b = _loss_sum(neox, ids % 50, mask, fi, tg % 50, fast_forward=False)
    assert torch.equal(a, b)


def test_training_stage_is_the_same_with_the_fast_forward():
    from iml.lm.train import train_stage

    class Tok:  # the loop needs EOS/pad ids and a __call__ that returns input_ids
        eos_token_id, pad_token_id = 2, 0

        def __call__(self, text, add_special_tokens=True):
            return type("E", (), {"input_ids": [3 + (ord(c) % 90) for c in text]})()

    rows = [{"prompt": f"Q{i}", "text": f"Q{i} a{i % 3}\n"} for i in range(12)]
    losses = []
    for fast in (False, True):
        m = _llama(seed=3)
        log = train_stage(m, Tok(), rows, StageConfig(epochs=2, batch_size=4, lr=1e-2), TrainConfig(fast_forward=fast),
                          progress=False)
        losses.append(log.epoch_losses)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert losses[0][-1] < losses[0][0]


def test_the_new_option_leaves_committed_config_hashes_alone():
    """train.fast_forward was added after results were committed: at False a config hashes as before
    (as its stored config.json without the field does); at True it is a different config."""
    from iml.lm.experiment import make_config

    cfg = make_config("gpu")
    d = to_dict(cfg)
    assert d["train"]["fast_forward"] is False
    del d["train"]["fast_forward"]
    assert config_hash(cfg) == config_hash(d)
    assert config_hash(make_config("gpu", {"train.fast_forward": True})) != config_hash(cfg)


def test_fast_forward_must_be_a_boolean():
    from iml.core.config import ConfigError

    with pytest.raises(ConfigError, match="fast_forward"):
        TrainConfig(fast_forward="yes")
