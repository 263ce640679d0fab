"""Batched greedy decoding, answer log-probs and set evaluation, on tiny local models (no hub access)."""
from types import SimpleNamespace

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import iml.lm.evaluate as ev  # noqa: E402
from iml.core.config import ConfigError  # noqa: E402
from iml.lm.evaluate import answer_logprob, evaluate_sets, greedy_generate  # noqa: E402

EOS = "<|endoftext|>"


@pytest.fixture(scope="module")
def tok():
    corpus = [f"Q: What did <|a{i}b|> do?\nA: king of {i}\n" for i in range(40)]
    corpus += [f"Q: When was <|z{i}q|> born?\nA: 1{i}th century\n" for i in range(40)]
    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t.train_from_iterator(corpus, trainer)
    # No pad token and right padding, like Pythia's tokenizer: the code must cope without mutating it.
    return PreTrainedTokenizerFast(tokenizer_object=t, eos_token=EOS, clean_up_tokenization_spaces=False)


def tiny_neox(tok, seed):
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.eos_token_id)
    return GPTNeoXForCausalLM(cfg).float().eval()


def tiny_llama(tok, seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, pad_token_id=None)
    return LlamaForCausalLM(cfg).float().eval()


PROMPTS = [
    "Q: What did <|a3b|> do?\nA:",
    "A",
    "Q: When was <|z12q|> born?\nA:",
    "king",
    "Q: What did <|a1b|> do? What did <|a2b|> do? When was <|z1q|> born?\nA:",
    "Q: x\nA:",
    "century 17th of",
    "Q: When was <|z7q|> born?\nA: 1",
    "<|a9b|>",
    "Q: What did <|a30b|> do?\nA: king",
]


def reference_greedy(model, tok, prompt, max_new_tokens, stop):
    """One prompt, no padding, no cache: re-run the full sequence at every step."""
    ids = tok(prompt)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == tok.eos_token_id:
                break
            out.append(nxt)
            if stop is not None and stop in tok.decode(out, skip_special_tokens=True):
                break
    text = tok.decode(out, skip_special_tokens=True)
    if stop is not None and stop in text:
        text = text[: text.index(stop)]
    return text.strip()


# ----------------------------------------------------------------------------------------------
# Real tiny models: batched + padded + cached == one at a time
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("stop", [None, "\n"])
def test_batched_greedy_equals_unpadded_single_neox(tok, seed, stop):
    model = tiny_neox(tok, seed)
    want = [reference_greedy(model, tok, p, 8, stop) for p in PROMPTS]
    got = greedy_generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, stop=stop)
    assert got == want
    # outputs are not trivially empty, and prompts differ in length (so padding really happened)
    assert sum(len(g) > 0 for g in got) >= len(got) // 2
    assert len({len(tok(p)["input_ids"]) for p in PROMPTS}) > 3


@pytest.mark.parametrize("seed", [0, 5])
def test_batched_greedy_equals_unpadded_single_llama(tok, seed):
    model = tiny_llama(tok, seed)
    want = [reference_greedy(model, tok, p, 8, None) for p in PROMPTS]
    assert greedy_generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=3, stop=None) == want


def tiny_gpt2(tok, seed):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                     eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    return GPT2LMHeadModel(cfg).float().eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_batched_greedy_equals_unpadded_single_gpt2(tok, seed):
    # GPT-2 has absolute position embeddings, so wrong position ids under left padding would show here
    # (RoPE models like GPT-NeoX/Llama are invariant to a constant position shift).
    model = tiny_gpt2(tok, seed)
    want = [reference_greedy(model, tok, p, 8, None) for p in PROMPTS]
    assert greedy_generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=4, stop=None) == want


def _padded_last_logits(model, tok, use_mask, use_pos):
    short, long_ = PROMPTS[1], PROMPTS[4]
    seqs = [tok(short)["input_ids"], tok(long_)["input_ids"]]
    ids, mask = ev._left_pad(seqs, tok.eos_token_id, "cpu")
    kw = {"input_ids": ids}
    if use_mask:
        kw["attention_mask"] = mask
    if use_pos:
        kw["position_ids"] = ev._positions(mask)
    with torch.no_grad():
        padded = model(**kw).logits[0, -1]
        alone = model(input_ids=torch.tensor([seqs[0]])).logits[0, -1]
    return padded, alone


def test_mask_and_positions_are_what_make_padding_harmless(tok):
    """Guards that the equality tests can fail: drop the mask (NeoX) or the position ids (GPT-2) and outputs move."""
    neox, gpt2 = tiny_neox(tok, 0), tiny_gpt2(tok, 0)
    for model in (neox, gpt2):
        padded, alone = _padded_last_logits(model, tok, True, True)
        assert torch.allclose(padded, alone, atol=1e-5)
    padded, alone = _padded_last_logits(neox, tok, False, True)
    assert not torch.allclose(padded, alone, atol=1e-3)
    padded, alone = _padded_last_logits(gpt2, tok, True, False)
    assert not torch.allclose(padded, alone, atol=1e-3)


def test_tokenizer_and_model_state_untouched(tok):
    model = tiny_neox(tok, 0)
    model.train()
    assert tok.pad_token is None and tok.padding_side == "right"
    greedy_generate(model, tok, PROMPTS[:3], max_new_tokens=2, batch_size=2)
    answer_logprob(model, tok, PROMPTS[:3], [" king", " 1", ""], batch_size=2)
    assert tok.pad_token is None and tok.padding_side == "right"
    assert model.training  # training flag restored


def test_dropout_model_is_evaluated_in_eval_mode(tok):
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout=0.5,
                        attention_dropout=0.5)
    model = GPTNeoXForCausalLM(cfg)
    model.train()
    a = greedy_generate(model, tok, PROMPTS, max_new_tokens=6, stop=None)
    b = greedy_generate(model, tok, PROMPTS, max_new_tokens=6, stop=None)
    assert a == b


# ----------------------------------------------------------------------------------------------
# answer_logprob
# ----------------------------------------------------------------------------------------------

def test_answer_logprob_matches_one_at_a_time(tok):
    model = tiny_neox(tok, 1)
    answers = [" king", " 17th century", "", " of 3\n", " x", " When was <|a1b|> born", " 1", "k", " A", " q"]
    got = answer_logprob(model, tok, PROMPTS, answers, batch_size=3)
    want = []
    with torch.no_grad():
        for p, a in zip(PROMPTS, answers):
            p_ids = tok(p)["input_ids"]
            a_ids = tok(a, add_special_tokens=False)["input_ids"]
            if not a_ids:
                want.append(0.0)
                continue
            logp = torch.log_softmax(model(input_ids=torch.tensor([p_ids + a_ids])).logits[0].float(), -1)
            want.append(sum(float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(a_ids)))
    assert got == pytest.approx(want, abs=1e-4)
    assert got[2] == 0.0 and all(v < 0 for i, v in enumerate(got) if i != 2)


def test_answer_logprob_rejects_mismatch(tok):
    with pytest.raises(ConfigError):
        answer_logprob(tiny_neox(tok, 0), tok, ["a", "b"], ["x"])


# ----------------------------------------------------------------------------------------------
# A stub model whose continuations we control: next token is a fixed function of the last token
# ----------------------------------------------------------------------------------------------

class BigramStub(torch.nn.Module):
    """Logits put all mass on ``table[last input token]``; records every call."""

    def __init__(self, vocab, table, default):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        nxt = torch.full((vocab,), default, dtype=torch.long)
        for k, v in table.items():
            nxt[k] = v
        self.register_buffer("nxt", nxt)
        self.vocab = vocab
        self.calls = []

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None):
        self.calls.append(SimpleNamespace(ids=input_ids.clone(), mask=attention_mask.clone(),
                                          pos=position_ids.clone(), cache=past_key_values))
        logits = torch.nn.functional.one_hot(self.nxt[input_ids], self.vocab).float() * 10.0
        return SimpleNamespace(logits=logits, past_key_values=("cache", len(self.calls)))


@pytest.fixture
def stub(tok):
    def t(ch):  # byte-level token of one character
        i = tok.convert_tokens_to_ids(ch if ch != "\n" else "Ċ")
        assert i is not None and i != tok.unk_token_id
        return i

    eos = tok.eos_token_id
    m = t("m")
    table = {
        t("1"): t("a"), t("a"): t("b"), t("b"): t("\n"), t("\n"): t("c"), t("c"): t("d"), t("d"): eos,  # "ab\ncd"
        t("2"): t("x"), t("x"): t("y"), t("y"): eos,  # "xy" then EOS
        t("3"): m, m: m,  # "mmmm..." never stops
        t("4"): t("Ġ"), t("Ġ"): t("k"), t("k"): t("\n"),  # " k\n" -> "k"
    }
    return BigramStub(len(tok), table, default=eos)


P1, P2, P3, P4 = "Q: one\nA:1", "Q2", "Q: number three\nA:3", "4"


def test_stub_prompts_end_in_the_trigger_token(tok):
    for p in (P1, P2, P3, P4, "xx2", "Q: a much longer prompt here\nA:4"):
        assert tok.convert_ids_to_tokens(tok(p)["input_ids"])[-1] == p[-1]


def test_stub_stop_at_newline_and_eos(tok, stub):
    got = greedy_generate(stub, tok, [P1, P2, P3, P4], max_new_tokens=8, batch_size=8)
    assert got == ["ab", "xy", "m" * 8, "k"]


def test_stub_without_stop_runs_to_eos(tok, stub):
    got = greedy_generate(stub, tok, [P1, P2, P3, P4], max_new_tokens=8, batch_size=8, stop=None)
    assert got == ["ab\ncd", "xy", "m" * 8, "k\ncd"]


def test_stub_without_cache_falls_back_to_full_sequence(tok, stub):
    class NoCache(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            out = self.inner(**kw)
            return SimpleNamespace(logits=out.logits, past_key_values=None)

    got = greedy_generate(NoCache(stub), tok, [P1, P2, P4], max_new_tokens=8, batch_size=8)
    assert got == ["ab", "xy", "k"]
    assert stub.calls[1].ids.shape[1] == stub.calls[0].ids.shape[1] + 1  # whole sequence re-fed
    assert stub.calls[1].cache is None


def test_stub_multichar_stop(tok, stub):
    got = greedy_generate(stub, tok, [P1, P4], max_new_tokens=8, stop="\nc")
    assert got == ["ab", "k"]


def test_stub_early_exit_and_cache_feeding(tok, stub):
    got = greedy_generate(stub, tok, [P1, P2], max_new_tokens=8, batch_size=8)
    assert got == ["ab", "xy"]
    # both rows are done after 3 tokens ("a", "b", "\n" / "x", "y", EOS): exactly 3 forward passes
    assert len(stub.calls) == 3
    first, second, third = stub.calls
    n1, n2 = len(tok(P1)["input_ids"]), len(tok(P2)["input_ids"])
    width = max(n1, n2)
    assert first.ids.shape == (2, width) and first.cache is None
    # longest prompt first; the shorter one is left-padded, positions = cumsum(mask) - 1
    assert first.mask.tolist() == [[1] * n1, [0] * (n1 - n2) + [1] * n2]
    assert first.pos[1, -n2:].tolist() == list(range(n2))
    assert first.pos[0].tolist() == list(range(n1))
    # later steps feed only the new token, the previous cache, a growing mask and advancing positions
    assert second.ids.shape == (2, 1) and third.ids.shape == (2, 1)
    assert second.cache == ("cache", 1) and third.cache == ("cache", 2)
    assert second.mask.shape == (2, width + 1) and third.mask.shape == (2, width + 2)
    assert second.pos.tolist() == [[n1], [n2]] and third.pos.tolist() == [[n1 + 1], [n2 + 1]]


def test_stub_no_early_exit_when_one_row_runs_on(tok, stub):
    greedy_generate(stub, tok, [P1, P3], max_new_tokens=8, batch_size=8)
    assert len(stub.calls) == 8
    stub.calls.clear()
    greedy_generate(stub, tok, [P1, P3, P2], max_new_tokens=8, batch_size=1)
    assert len(stub.calls) == 3 + 8 + 3


def test_order_restored_with_mixed_lengths(tok, stub):
    prompts = [P4, P3, "xx2", P1, "Q: a much longer prompt here\nA:4", P2, "1"]
    want = ["k", "m" * 5, "xy", "ab", "k", "xy", "ab"]
    for bs in (1, 2, 3, 64):
        assert greedy_generate(stub, tok, prompts, max_new_tokens=5, batch_size=bs) == want


def test_greedy_edge_cases(tok, stub):
    assert greedy_generate(stub, tok, [], max_new_tokens=8) == []
    assert greedy_generate(stub, tok, [P1], max_new_tokens=0) == [""]
    with pytest.raises(ConfigError):
        greedy_generate(stub, tok, [P1], batch_size=0)


# ----------------------------------------------------------------------------------------------
# evaluate_sets
# ----------------------------------------------------------------------------------------------

def _value(df, subset, metric):
    v = df[(df.subset == subset) & (df.metric == metric)]["value"]
    assert len(v) == 1
    return float(v.iloc[0])


def test_evaluate_sets_hand_checked(tok, stub, monkeypatch):
    calls = []
    real = ev.greedy_generate

    def counting(*a, **k):
        calls.append(a[2])
        return real(*a, **k)

    monkeypatch.setattr(ev, "greedy_generate", counting)
    data = {
        # preds: "ab", "xy", "mmmmmmmm" -> EM 1, 1 (";" alternative), 0
        "s1": {"prompt": [P1, P2, P3], "answer": ["AB.", "zz;xy", "m"]},
        # preds: "ab" vs "ab ab" (F1 2/3, EM 0), "k" vs "q" (0)
        "s2": pd.DataFrame({"prompt": [P1, P4], "answer": ["ab ab", "q"]}),
        "unused": {"prompt": ["zzz"], "answer": ["zzz"]},
    }
    df = evaluate_sets(stub, tok, data, ["s1", "s2"], max_new_tokens=8, batch_size=2)
    assert list(df.columns) == ["subset", "metric", "value"]
    assert _value(df, "s1", "EM") == pytest.approx(2 / 3)
    assert _value(df, "s1", "F1") == pytest.approx(2 / 3)
    assert _value(df, "s1", "n") == 3
    assert _value(df, "s2", "EM") == 0.0
    assert _value(df, "s2", "F1") == pytest.approx((2 / 3 + 0) / 2)
    assert _value(df, "s2", "n") == 2
    assert set(df.subset) == {"s1", "s2"}
    # one generate call for all sets, the shared prompt generated once
    assert len(calls) == 1 and sorted(calls[0]) == sorted([P1, P2, P3, P4])


def test_evaluate_sets_datasetdict_and_limit(tok, stub):
    datasets = pytest.importorskip("datasets")
    prompts = [P1, P2, P3, P4] * 5
    answers = ["ab", "xy", "mmmmmmmm", "k"] * 5
    dsd = datasets.DatasetDict({"big": datasets.Dataset.from_dict({"prompt": prompts, "answer": answers}),
                                "small": datasets.Dataset.from_dict({"prompt": [P2], "answer": ["no"]})})
    full = evaluate_sets(stub, tok, dsd, ["big", "small"])
    assert _value(full, "big", "EM") == 1.0 and _value(full, "big", "n") == 20
    assert _value(full, "small", "EM") == 0.0 and _value(full, "small", "n") == 1
    a, pa = evaluate_sets(stub, tok, dsd, ["big", "small"], limit=6, seed=3, return_predictions=True)
    b, pb = evaluate_sets(stub, tok, dsd, ["big", "small"], limit=6, seed=3, return_predictions=True)
    assert _value(a, "big", "n") == 6 and _value(a, "small", "n") == 1
    pd.testing.assert_frame_equal(pa["big"], pb["big"])  # fixed subsample
    assert (pa["big"]["prediction"] == pa["big"]["answer"]).all()
    idx_3 = ev._subsample(20, 6, 3, "big")
    assert len(set(idx_3.tolist())) == 6 and list(idx_3) == sorted(idx_3)
    assert ev._subsample(20, 6, 4, "big").tolist() != idx_3.tolist()  # the seed matters


def test_evaluate_sets_bad_input(tok, stub):
    with pytest.raises(ConfigError, match="set_names"):
        evaluate_sets(stub, tok, {"a": {"prompt": ["x"], "answer": ["y"]}}, ["b"])
    with pytest.raises(ConfigError, match="answer"):
        evaluate_sets(stub, tok, {"a": {"prompt": ["x"]}}, ["a"])
    with pytest.raises(ConfigError, match="limit"):
        evaluate_sets(stub, tok, {"a": {"prompt": ["x"], "answer": ["y"]}}, ["a"], limit=0)
