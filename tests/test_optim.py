"""iml.lm.optim.Adafactor is the paper's Hugging Face Adafactor, batched over parameters of one shape."""
import copy

import pytest
import torch

from iml.lm.optim import Adafactor


def _model(seed=0):
    torch.manual_seed(seed)
    # shapes repeat, as in a transformer: two "layers" of (matrix, matrix, vector) plus odd ones out
    return torch.nn.ModuleList([torch.nn.Linear(12, 7), torch.nn.Linear(12, 7), torch.nn.Linear(7, 5),
                                torch.nn.LayerNorm(7), torch.nn.LayerNorm(7), torch.nn.Embedding(9, 12)])


def _loss(m, x, ids):
    h = m[5](ids).mean(1) + x
    a = m[3](m[0](h)) + m[4](m[1](h))
    return (m[2](a) ** 2).mean()


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_same_update_as_transformers_adafactor(weight_decay):
    from transformers.optimization import Adafactor as HFAdafactor

    ours_m, ref_m = _model(), _model()
    ref_m.load_state_dict(ours_m.state_dict())
    ours = Adafactor(ours_m.parameters(), lr=3e-2, weight_decay=weight_decay)
    ref = HFAdafactor(ref_m.parameters(), lr=3e-2, scale_parameter=False, relative_step=False,
                      warmup_init=False, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(1)
    for step in range(6):
        x = torch.randn(4, 12, generator=g) * (10 if step == 2 else 1)  # a big step: update clipping acts
        ids = torch.randint(0, 9, (4, 3), generator=g)
        for m, opt in ((ours_m, ours), (ref_m, ref)):
            opt.param_groups[0]["lr"] = 3e-2 * (1 - step / 6)  # the loop's linear schedule
            opt.zero_grad()
            _loss(m, x, ids).backward()
            opt.step()
    for (name, a), b in zip(ours_m.named_parameters(), ref_m.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name
    moved = sum(float((a - b).detach().abs().sum()) for a, b in zip(ours_m.parameters(), _model().parameters()))
    assert moved > 0.1  # the comparison is not between two untouched models


def test_refuses_what_it_does_not_implement():
    m = _model()
    with pytest.raises(ValueError, match="lr"):
        Adafactor(m.parameters(), lr=None)
    with pytest.raises(ValueError, match="fp32"):
        Adafactor(copy.deepcopy(m).to(torch.bfloat16).parameters(), lr=1e-3)


def test_skips_parameters_without_gradients():
    m = _model()
    before = m[2].weight.detach().clone()
    opt = Adafactor(m.parameters(), lr=1e-2)
    (m[0].weight.sum()).backward()
    opt.step()
    assert torch.equal(m[2].weight, before)
    assert not torch.equal(m[0].weight, _model()[0].weight)


def test_state_dict_resumes_bit_for_bit():
    """A run stopped after 3 steps and resumed from torch.save'd model and optimizer states (in a fresh model and
    optimizer) ends with exactly the weights of the run that never stopped."""
    import io

    g = torch.Generator().manual_seed(0)
    xs = [(torch.randn(8, 12, generator=g), torch.randint(0, 9, (8, 3), generator=g)) for _ in range(6)]

    def steps(m, opt, batch):
        for x, ids in batch:
            opt.zero_grad()
            _loss(m, x, ids).backward()
            opt.step()

    whole = _model()
    opt = Adafactor(whole.parameters(), lr=1e-2, weight_decay=0.1)
    steps(whole, opt, xs)
    first = _model()
    opt1 = Adafactor(first.parameters(), lr=1e-2, weight_decay=0.1)
    steps(first, opt1, xs[:3])
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, buf)
    assert opt1.state_dict()["buckets"] and all(b["step"] == 3 for b in opt1.state_dict()["buckets"])
    buf.seek(0)
    saved = torch.load(buf)
    resumed = _model()
    resumed.load_state_dict(saved["model"])
    opt2 = Adafactor(resumed.parameters(), lr=1e-2, weight_decay=0.1)
    opt2.load_state_dict(saved["opt"])
    steps(resumed, opt2, xs[3:])
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    fresh = _model()  # without the optimizer state the run differs: the test can fail
    fresh.load_state_dict(saved["model"])
    steps(fresh, Adafactor(fresh.parameters(), lr=1e-2, weight_decay=0.1), xs[3:])
    assert not all(torch.equal(a, b) for a, b in zip(whole.parameters(), fresh.parameters()))
