"""The batched-seed trainer: S seeds in one model must be exactly S independent runs."""
import numpy as np
import pytest
import torch

from iml.scratch import multiseed as ms


def _shape():
    return ms.ModelShape(vocab_size=30, n_out=20, max_len=6, d_model=16, n_layers=2, n_heads=2, d_mlp=32)


def _lane_data(seed, n=40, T=6):
    g = np.random.default_rng(seed)
    docs = g.integers(1, 30, size=(n, T))
    w = (g.random((n, T - 1)) < 0.6).astype(np.float32)
    return docs, w


def _run(seeds, *, epochs=3, clip=0.05):
    shape = _shape()
    model = ms.BatchedGPT(shape, [1000 + s for s in seeds])
    tr = ms.LaneTrainer(model, ms.OptimConfig(lr=3e-3, grad_clip=clip, warmup_frac=0.1), device=torch.device("cpu"),
                        amp=False)
    datas = [_lane_data(s) for s in seeds]
    docs = torch.from_numpy(np.stack([d for d, _ in datas]))
    w = torch.from_numpy(np.stack([x for _, x in datas]))
    losses = []
    # batch 16 over 40 docs -> a padded, weight-0 tail in the last batch of every epoch
    tr.train(docs, w, epochs=epochs, batch_size=16, lr=3e-3,
             order_rngs=[np.random.default_rng(s + 7) for s in seeds],
             on_epoch_end=lambda ep, l: losses.append(l.clone()))
    return model, torch.stack(losses, 1)  # (S, epochs)


def test_batched_equals_separate_runs():
    seeds = [0, 1, 2]
    model3, loss3 = _run(seeds)
    for i, s in enumerate(seeds):
        model1, loss1 = _run([s])
        torch.testing.assert_close(loss3[i], loss1[0], rtol=1e-5, atol=1e-6)
        for name in model3.names:
            torch.testing.assert_close(model3.p(name)[i], model1.p(name)[0], rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{name} lane {i}: {m}")
    # and the lanes really differ from each other (different init + data), so the test can fail
    assert not torch.allclose(model3.p("h0.qkv_w")[0], model3.p("h0.qkv_w")[1])


def test_clip_is_per_lane():
    """A lane with huge gradients must not shrink another lane's update."""
    shape = _shape()
    model = ms.BatchedGPT(shape, [1, 2])
    tr = ms.LaneTrainer(model, ms.OptimConfig(grad_clip=1.0), device=torch.device("cpu"), amp=False)
    for p in model.parameters():
        g = torch.full_like(p, 1e-4)
        g[0] = 10.0  # lane 0 far above the clip norm, lane 1 far below
        p.grad = g
    before = [p.grad[1].clone() for p in model.parameters()]
    tr._clip_per_lane()
    sq0 = sum(float(p.grad[0].pow(2).sum()) for p in model.parameters())
    assert abs(sq0 ** 0.5 - 1.0) < 1e-3
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.grad[1], b)


def test_init_is_per_seed_and_device_independent():
    a = ms.BatchedGPT(_shape(), [5, 6])
    b = ms.BatchedGPT(_shape(), [6])
    torch.testing.assert_close(a.p("tok_emb")[1], b.p("tok_emb")[0])
    assert not torch.allclose(a.p("tok_emb")[0], a.p("tok_emb")[1])


def test_lr_schedule_shape():
    f = ms.lr_lambda(100, 0.1, 0.1)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(99) == pytest.approx(0.1, abs=1e-3)
    vals = [f(i) for i in range(10, 100)]
    assert all(x >= y - 1e-12 for x, y in zip(vals, vals[1:]))  # monotone decay after warm-up


def test_causal_attention_ignores_future_tokens():
    model = ms.BatchedGPT(_shape(), [3])
    x = torch.tensor([[[1, 2, 3, 4, 5, 6]]])
    y = x.clone()
    y[..., 4:] = 9
    with torch.no_grad():
        la, lb = model(x), model(y)
    torch.testing.assert_close(la[..., :4, :], lb[..., :4, :])
    assert not torch.allclose(la[..., 5, :], lb[..., 5, :])


def _one_target_data(seed, n=40, T=6):
    """Documents with at most one weighted target each, at varied positions (as the answer-only loss makes)."""
    g = np.random.default_rng(seed)
    docs = g.integers(1, 30, size=(n, T))
    w = np.zeros((n, T - 1), dtype=np.float32)
    w[np.arange(n), g.integers(0, T - 1, size=n)] = 1.0
    w[::7] = 0.0  # some documents train nothing
    return docs, w


def _train_with(at_targets, seeds=(0, 1), epochs=3, compile=False, graphs=None):
    """Train two phases as Stage 1 and Stage 2 do: documents with targets anywhere, then documents whose targets all
    come early (a shorter cut). `graphs`: a list to which the number of graphs compiled so far is appended after
    each phase."""
    from torch._dynamo.utils import counters

    model = ms.BatchedGPT(_shape(), [1000 + s for s in seeds])
    tr = ms.LaneTrainer(model, ms.OptimConfig(lr=3e-3, grad_clip=0.05, warmup_frac=0.1), device=torch.device("cpu"),
                        amp=False, at_targets=at_targets, compile=compile)
    losses = []
    for phase in (0, 1):
        datas = [_one_target_data(s + 50 * phase) for s in seeds]
        docs = torch.from_numpy(np.stack([d for d, _ in datas]))
        w = torch.from_numpy(np.stack([x for _, x in datas]))
        if phase:
            w[..., 3:] = 0.0  # Stage 2's short definitions: no target after position 2
        tr.train(docs, w, epochs=epochs, batch_size=16, lr=3e-3,
                 order_rngs=[np.random.default_rng(s + 7 + phase) for s in seeds],
                 on_epoch_end=lambda ep, l: losses.append(l.clone()))
        if graphs is not None:
            graphs.append(counters["stats"]["unique_graphs"])
    pos = torch.full(docs.shape[:2], 3)
    return model, torch.stack(losses, 1), tr.answer_scores(docs, pos, torch.arange(5))


def test_training_at_the_targets_only_trains_the_same_model():
    """The fast path (last layer and head at each document's one target, tokens after it cut) is the same function
    as the full forward: same losses, weights and scores up to float rounding; and training does move the weights."""
    dense, loss_d, score_d = _train_with(False)
    fast, loss_f, score_f = _train_with(True)
    torch.testing.assert_close(loss_f, loss_d, rtol=1e-5, atol=1e-6)
    for name in dense.names:
        torch.testing.assert_close(fast.p(name), dense.p(name), rtol=1e-4, atol=5e-5, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(score_f, score_d, rtol=1e-4, atol=1e-5)
    init = ms.BatchedGPT(_shape(), [1000, 1001])
    assert not torch.allclose(fast.p("h1.fc_w"), init.p("h1.fc_w"), atol=1e-4)


def test_the_compiled_trainer_trains_the_same_model(tmp_path, monkeypatch):
    """torch.compile (``compile=true``, the benchmark's fastest column) is the same math fused: the same losses,
    weights and scores as eager up to float rounding. Its own code cache: kernels of another CPU level must not
    be reused (test_compile.py)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    eager, loss_e, score_e = _train_with(True, epochs=2)
    torch._dynamo.reset()
    graphs = []
    comp, loss_c, score_c = _train_with(True, epochs=2, compile=True, graphs=graphs)
    assert graphs[0] > 0 and graphs[1] == graphs[0], f"the shorter second phase compiled again: {graphs}"
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    for name in eager.names:
        torch.testing.assert_close(comp.p(name), eager.p(name), rtol=1e-3, atol=1e-4, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(score_c, score_e, rtol=1e-3, atol=1e-4)


def test_scores_do_not_depend_on_the_chunk():
    """Evaluation runs `chunk` documents at a time (256 on the CPU, to stay in cache): every chunking, the padded
    last chunk included, gives bitwise the same scores as one chunk of all documents."""
    model = ms.BatchedGPT(_shape(), [3, 4])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.3)
    tr = ms.LaneTrainer(model, ms.OptimConfig(), device=torch.device("cpu"), amp=False)
    docs = torch.from_numpy(np.stack([_lane_data(s, n=600)[0] for s in (3, 4)]))
    pos = torch.from_numpy(np.random.default_rng(1).integers(0, 5, size=docs.shape[:2]))
    whole = tr.answer_scores(docs, pos, torch.arange(20), chunk=600)
    for chunk in (None, 97):
        assert torch.equal(tr.answer_scores(docs, pos, torch.arange(20), chunk=chunk), whole), chunk


def test_logits_at_equal_the_full_forward_at_those_positions():
    model = ms.BatchedGPT(_shape(), [3, 4])
    docs = torch.from_numpy(np.stack([_one_target_data(s)[0] for s in (3, 4)]))
    pos = torch.from_numpy(np.random.default_rng(0).integers(0, 5, size=docs.shape[:2]))
    full = model(docs)
    want = torch.gather(full, 2, pos[:, :, None, None].expand(*pos.shape, 1, full.shape[-1])).squeeze(2)
    torch.testing.assert_close(model.logits_at(docs, pos), want, rtol=1e-5, atol=1e-6)


def test_one_target_only_when_every_document_has_at_most_one():
    docs = torch.arange(12).view(1, 2, 6)
    w = torch.zeros(1, 2, 5)
    w[0, 0, 3] = 1.0
    inputs, pos, tgt, tw = ms.LaneTrainer.one_target(docs, w)
    assert inputs.shape == (1, 2, 4)  # cut after the last position a target is predicted from
    assert pos.tolist() == [[3, 0]] and tgt.tolist() == [[4, 7]] and tw.tolist() == [[1.0, 0.0]]
    w[0, 1, 1:3] = 1.0  # a document with two targets (the all-token loss): the full forward is used
    assert ms.LaneTrainer.one_target(docs, w) is None
